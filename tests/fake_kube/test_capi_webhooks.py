#!/usr/bin/env python3
"""Checks of webhooks.py (Cluster API conversion, defaulting, validation), the CRDs in crds/ and capi_sim.py.

Plain python, no server: capi_sim.py runs against a small in-process store that converts
through webhooks.py the way an API server calls a conversion webhook. Prints ok/FAIL lines
and exits 1 on a failure.
"""

import copy
import glob
import json
import os
import re
import sys
import uuid

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import webhooks  # noqa: E402
import capi_sim  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(ROOT, "examples", "repo", "clusters", "baremetal-cluster")
failures = []
passes = []


def check(name, cond, detail=""):
    if cond:
        passes.append(name)
        print("ok   %s" % name)
    else:
        failures.append(name)
        print("FAIL %s%s" % (name, (": " + str(detail)[:2000]) if detail else ""))


# ------------------------------------------------------------------------------------------
# CRDs and a structural-schema checker (what the fake server prunes and refuses)
# ------------------------------------------------------------------------------------------
CRDS = {}
for f in sorted(glob.glob(os.path.join(HERE, "crds", "*.yaml"))):
    for d in yaml.safe_load_all(open(f)):
        if d:
            CRDS[(d["spec"]["group"], d["spec"]["names"]["kind"])] = d


def crd_for(group, kind):
    return CRDS.get((group, kind))


def schema_of(api_version, kind):
    group, version = webhooks.split_api_version(api_version)
    for v in CRDS[(group, kind)]["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(api_version)


def schema_problems(value, schema, path="", out=None):
    """Fields the schema does not know (would be pruned / refused by Strict), required, types, enums."""
    out = [] if out is None else out
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)):
            out.append("%s: not int-or-string" % path)
        return out
    t = schema.get("type")
    if t == "object":
        if not isinstance(value, dict):
            return out + ["%s: not an object" % path]
        props = schema.get("properties")
        for r in schema.get("required") or []:
            if r not in value:
                out.append("%s.%s: required" % (path, r))
        for k, v in value.items():
            if props and k in props:
                schema_problems(v, props[k], "%s.%s" % (path, k), out)
            elif "additionalProperties" in schema:
                schema_problems(v, schema["additionalProperties"], "%s.%s" % (path, k), out)
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and not (path == "" and k == "metadata"):
                if props is not None or path != ".metadata":
                    out.append("%s.%s: unknown field" % (path, k))
    elif t == "array":
        if not isinstance(value, list):
            return out + ["%s: not an array" % path]
        for i, v in enumerate(value):
            schema_problems(v, schema["items"], "%s[%d]" % (path, i), out)
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [tuple(v.get(k) for k in schema["x-kubernetes-list-map-keys"]) for v in value]
            if len(keys) != len(set(keys)):
                out.append("%s: duplicate list-map keys" % path)
    elif t == "string":
        if not isinstance(value, str):
            out.append("%s: not a string: %r" % (path, value))
        elif "enum" in schema and value not in schema["enum"]:
            out.append("%s: %r not in %s" % (path, value, schema["enum"]))
        elif "pattern" in schema and not re.search(schema["pattern"], value):
            out.append("%s: %r does not match %s" % (path, value, schema["pattern"]))
        elif "minLength" in schema and len(value) < schema["minLength"]:
            out.append("%s: shorter than %d" % (path, schema["minLength"]))
    elif t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            out.append("%s: not an integer: %r" % (path, value))
    elif t == "boolean":
        if not isinstance(value, bool):
            out.append("%s: not a boolean: %r" % (path, value))
    return out


def fits(obj):
    return schema_problems({k: v for k, v in obj.items() if k != "metadata"}, schema_of(obj["apiVersion"], obj["kind"]))


# ------------------------------------------------------------------------------------------
# the objects: today's example (v1beta2) and the same cluster as it was written at v1beta1
# ------------------------------------------------------------------------------------------
def load(name):
    return [d for d in yaml.safe_load_all(open(os.path.join(EXAMPLE, name))) if d]


EX = {d["kind"] + "/" + d["metadata"]["name"]: d
      for f in ("cluster.yaml", "control-plane.yaml", "workers.yaml", "cloud-config.yaml") for d in load(f)}
V1BETA1 = {d["kind"]: d for d in yaml.safe_load_all("""
apiVersion: cluster.x-k8s.io/v1beta1
kind: Cluster
metadata: {name: baremetal-cluster, namespace: default}
spec:
  clusterNetwork:
    pods: {cidrBlocks: [192.168.0.0/16]}
    services: {cidrBlocks: [10.96.0.0/12]}
  infrastructureRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1alpha7, kind: OpenStackCluster, name: baremetal-cluster}
  controlPlaneRef: {apiVersion: controlplane.cluster.x-k8s.io/v1beta1, kind: KubeadmControlPlane, name: baremetal-cluster-control-plane}
---
apiVersion: controlplane.cluster.x-k8s.io/v1beta1
kind: KubeadmControlPlane
metadata: {name: baremetal-cluster-control-plane, namespace: default}
spec:
  version: v1.28.0
  replicas: 3
  rolloutStrategy: {rollingUpdate: {maxSurge: 1}}
  machineTemplate:
    infrastructureRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1alpha7, kind: OpenStackMachineTemplate, name: baremetal-cluster-control-plane}
  kubeadmConfigSpec:
    initConfiguration:
      nodeRegistration: {name: "{{ local_hostname }}", kubeletExtraArgs: {cloud-provider: external, node-labels: a=b}}
    joinConfiguration:
      nodeRegistration: {name: "{{ local_hostname }}", kubeletExtraArgs: {cloud-provider: external}}
---
apiVersion: cluster.x-k8s.io/v1beta1
kind: MachineDeployment
metadata: {name: baremetal-cluster-workers, namespace: default}
spec:
  clusterName: baremetal-cluster
  replicas: 2
  selector: {matchLabels: {cluster.x-k8s.io/cluster-name: baremetal-cluster}}
  template:
    metadata: {labels: {cluster.x-k8s.io/cluster-name: baremetal-cluster}}
    spec:
      clusterName: baremetal-cluster
      version: v1.28.0
      bootstrap:
        configRef: {apiVersion: bootstrap.cluster.x-k8s.io/v1beta1, kind: KubeadmConfigTemplate, name: baremetal-cluster-worker}
      infrastructureRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1alpha7, kind: OpenStackMachineTemplate, name: baremetal-cluster-worker}
---
apiVersion: bootstrap.cluster.x-k8s.io/v1beta1
kind: KubeadmConfigTemplate
metadata: {name: baremetal-cluster-worker, namespace: default}
spec:
  template:
    spec:
      joinConfiguration:
        nodeRegistration: {name: "{{ local_hostname }}", kubeletExtraArgs: {cloud-provider: external}}
---
apiVersion: cluster.x-k8s.io/v1beta1
kind: MachineSet
metadata: {name: baremetal-cluster-workers-abc, namespace: default}
spec:
  clusterName: baremetal-cluster
  replicas: 2
  minReadySeconds: 5
  deletePolicy: Oldest
  selector: {matchLabels: {cluster.x-k8s.io/cluster-name: baremetal-cluster}}
  template:
    metadata: {labels: {cluster.x-k8s.io/cluster-name: baremetal-cluster}}
    spec:
      clusterName: baremetal-cluster
      version: v1.28.0
      nodeDrainTimeout: 1m30s
      bootstrap: {dataSecretName: boot}
      infrastructureRef: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachine, name: m}
---
apiVersion: bootstrap.cluster.x-k8s.io/v1beta1
kind: KubeadmConfig
metadata: {name: baremetal-cluster-control-plane-x1, namespace: default}
spec:
  clusterConfiguration:
    apiServer: {extraArgs: {cloud-provider: external}, timeoutForControlPlane: 20m0s}
  joinConfiguration:
    nodeRegistration: {kubeletExtraArgs: {cloud-provider: external}}
    discovery: {timeout: 5m0s}
status:
  ready: true
  dataSecretName: baremetal-cluster-control-plane-x1
  conditions: [{type: Ready, status: "True", lastTransitionTime: "2026-01-01T00:00:00Z"}]
""")}

ANN = webhooks.CONVERSION_DATA


def without_ann(o):
    o = copy.deepcopy(o)
    ann = o.get("metadata", {}).get("annotations") or {}
    ann.pop(ANN, None)
    if not ann:
        o.get("metadata", {}).pop("annotations", None)
    return o


def down(o):
    return webhooks.convert(o, o["apiVersion"].rsplit("/", 1)[0] + "/v1beta1", crd_for)


def up(o):
    return webhooks.convert(o, o["apiVersion"].rsplit("/", 1)[0] + "/v1beta2", crd_for)


# ------------------------------------------------------------------------------------------
# 1. the example objects
# ------------------------------------------------------------------------------------------
for key, obj in EX.items():
    if obj["apiVersion"] == "v1":
        continue
    check("example %s fits the %s schema" % (key, obj["apiVersion"]), not fits(obj), fits(obj))

for key, obj in EX.items():
    group = obj["apiVersion"].split("/")[0]
    if (group, obj["kind"]) not in webhooks.CONVERTED:
        continue
    spoke = down(obj)
    check("%s v1beta2 -> v1beta1 fits the v1beta1 schema" % key, not fits(spoke), fits(spoke))
    back = up(spoke)
    if "status" not in obj:
        # The v1beta1 status counters carry no omitempty, so a status-less object comes back with zero
        # counters (replicas: 0, deprecated.v1beta1 zeros), as through the real webhook; spec and metadata
        # must come back unchanged.
        zeros = json.dumps(back.pop("status", {}))
        check("%s: a status-less object comes back with at most zero counters" % key,
              re.sub(r'"[a-zA-Z]+": 0|[{},: ]|"v1beta1"|"deprecated"', "", zeros) == "", zeros)
    check("%s v1beta2 -> v1beta1 -> v1beta2 gives the object back" % key, back == obj,
          json.dumps({"want": obj, "got": back}))
    check("%s: the v1beta1 view carries %s" % (key, ANN), ANN in spoke["metadata"].get("annotations", {}))

cl = down(EX["Cluster/baremetal-cluster"])
check("Cluster v1beta1 view: references get the contract's apiVersion and the namespace",
      cl["spec"]["infrastructureRef"] == {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
                                          "kind": "OpenStackCluster", "namespace": "default",
                                          "name": "baremetal-cluster"} and
      cl["spec"]["controlPlaneRef"]["apiVersion"] == "controlplane.cluster.x-k8s.io/v1beta1".replace("v1beta1", "v1beta2"),
      cl["spec"])
check("Cluster v1beta1 view: controlPlaneEndpoint and the ready booleans are there (no omitempty in v1beta1)",
      cl["spec"]["controlPlaneEndpoint"] == {"host": "", "port": 0} and
      cl["status"] == {"infrastructureReady": False, "controlPlaneReady": False}, cl)
kcp1 = down(EX["KubeadmControlPlane/baremetal-cluster-control-plane"])
check("KCP v1beta1 view: rolloutStrategy, machineTemplate.infrastructureRef, kubeletExtraArgs map",
      kcp1["spec"]["rolloutStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}} and
      kcp1["spec"]["machineTemplate"]["infrastructureRef"]["apiVersion"] == "infrastructure.cluster.x-k8s.io/v1beta1" and
      kcp1["spec"]["kubeadmConfigSpec"]["joinConfiguration"]["nodeRegistration"]["kubeletExtraArgs"] ==
      {"cloud-provider": "external"}, kcp1["spec"])
md1 = down(EX["MachineDeployment/baremetal-cluster-workers"])
check("MachineDeployment v1beta1 view: configRef apiVersion from the bootstrap CRD's contract label",
      md1["spec"]["template"]["spec"]["bootstrap"]["configRef"]["apiVersion"] == "bootstrap.cluster.x-k8s.io/v1beta2",
      md1["spec"]["template"]["spec"])

# ------------------------------------------------------------------------------------------
# 2. v1beta1 objects (the example as it was): round trips and what the hub looks like
# ------------------------------------------------------------------------------------------
for kind, obj in V1BETA1.items():
    hub = up(obj)
    # the API server defaults (mutating webhook) after converting to the storage version, then validates
    hub_d = copy.deepcopy(hub)
    webhooks.default(hub_d, crd_for)
    check("%s v1beta1 -> v1beta2 (defaulted) fits the v1beta2 schema" % kind, not fits(hub_d), fits(hub_d))
    check("%s v1beta1 -> v1beta2 carries no %s" % (kind, ANN), ANN not in json.dumps(hub.get("metadata")))
    again = down(hub)
    want = copy.deepcopy(obj)
    # what the real round trip adds: namespaces on references, v1beta1 fields without omitempty,
    # apiVersions moved to the contract's latest version
    got = without_ann(again)

    def normal(o):
        s = json.dumps(o, sort_keys=True)
        s = s.replace('"infrastructure.cluster.x-k8s.io/v1alpha7"', '"infrastructure.cluster.x-k8s.io/v1beta1"')
        s = s.replace('"controlplane.cluster.x-k8s.io/v1beta1"', '"controlplane.cluster.x-k8s.io/v1beta2"')
        s = s.replace('"bootstrap.cluster.x-k8s.io/v1beta1", "kind": "KubeadmConfigTemplate"',
                      '"bootstrap.cluster.x-k8s.io/v1beta2", "kind": "KubeadmConfigTemplate"')
        o = json.loads(s)
        for ref in _refs(o):
            ref.pop("namespace", None)
        st = o.get("status")
        if isinstance(st, dict):
            for k in ("infrastructureReady", "controlPlaneReady", "bootstrapReady", "ready", "initialized",
                      "replicas", "updatedReplicas", "readyReplicas", "unavailableReplicas", "availableReplicas",
                      "fullyLabeledReplicas"):
                if st.get(k) in (False, 0):
                    st.pop(k)
            if not st:
                o.pop("status")
        if o.get("spec", {}).get("controlPlaneEndpoint") == {"host": "", "port": 0}:
            o["spec"].pop("controlPlaneEndpoint")
        return o

    def _refs(o):
        if isinstance(o, dict):
            if "kind" in o and "name" in o and "apiVersion" in o and set(o) <= {"apiVersion", "kind", "name", "namespace"}:
                yield o
            for v in o.values():
                yield from _refs(v)
        elif isinstance(o, list):
            for v in o:
                yield from _refs(v)

    check("%s v1beta1 -> v1beta2 -> v1beta1 gives the object back (refs at the contract version)" % kind,
          normal(got) == normal(want), json.dumps({"want": normal(want), "got": normal(got)}))
    check("%s v1beta1 -> v1beta2 -> v1beta1 fits the v1beta1 schema" % kind, not fits(again), fits(again))
    again2 = up(again)
    if "status" not in obj:  # zero v1beta1 counters come back as zeros (see above)
        hub, again2 = dict(hub, status=None), dict(again2, status=None)
    check("%s: a second hub round trip is stable" % kind, again2 == hub, json.dumps({"a": hub, "b": again2}))

hub_kcp = up(V1BETA1["KubeadmControlPlane"])
check("KCP v1beta1 -> v1beta2: machineTemplate.spec.infrastructureRef {apiGroup, kind, name}, rollout, args list",
      hub_kcp["spec"]["machineTemplate"] == {"spec": {"infrastructureRef": {
          "apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "OpenStackMachineTemplate",
          "name": "baremetal-cluster-control-plane"}}} and
      hub_kcp["spec"]["rollout"] == {"strategy": {"rollingUpdate": {"maxSurge": 1}}} and
      hub_kcp["spec"]["kubeadmConfigSpec"]["initConfiguration"]["nodeRegistration"]["kubeletExtraArgs"] ==
      [{"name": "cloud-provider", "value": "external"}, {"name": "node-labels", "value": "a=b"}], hub_kcp["spec"])
d1 = webhooks.default(copy.deepcopy(hub_kcp), crd_for)
ex_kcp = copy.deepcopy(EX["KubeadmControlPlane/baremetal-cluster-control-plane"])
webhooks.default(ex_kcp, crd_for)
hub_kcp_d = copy.deepcopy(hub_kcp)
webhooks.default(hub_kcp_d, crd_for)
check("KCP: defaulted v1beta1 (converted) and defaulted v1beta2 example agree on rollout",
      hub_kcp_d["spec"]["rollout"] == ex_kcp["spec"]["rollout"] ==
      {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}, (hub_kcp_d["spec"]["rollout"],
                                                                                 ex_kcp["spec"]["rollout"]))
kc = up(V1BETA1["KubeadmConfig"])
check("KubeadmConfig: timeouts move (timeoutForControlPlane -> initConfiguration.timeouts, discovery.timeout -> "
      "joinConfiguration.timeouts), status.ready -> initialization.dataSecretCreated, conditions -> deprecated",
      kc["spec"]["initConfiguration"] == {"timeouts": {"controlPlaneComponentHealthCheckSeconds": 1200}} and
      kc["spec"]["joinConfiguration"]["timeouts"] == {"controlPlaneComponentHealthCheckSeconds": 1200,
                                                      "tlsBootstrapSeconds": 300} and
      kc["status"]["initialization"] == {"dataSecretCreated": True} and
      kc["status"]["deprecated"]["v1beta1"]["conditions"][0]["type"] == "Ready" and "conditions" not in kc["status"],
      kc)
ms = up(V1BETA1["MachineSet"])
check("MachineSet v1beta1 -> v1beta2: minReadySeconds into the template, deletePolicy -> deletion.order, "
      "nodeDrainTimeout -> deletion.nodeDrainTimeoutSeconds",
      ms["spec"]["template"]["spec"]["minReadySeconds"] == 5 and ms["spec"]["deletion"] == {"order": "Oldest"} and
      ms["spec"]["template"]["spec"]["deletion"] == {"nodeDrainTimeoutSeconds": 90}, ms["spec"])
check("durations print like Go's time.Duration", [webhooks._from_seconds(s) for s in (0, 10, 90, 3600, 3661)] ==
      ["0s", "10s", "1m30s", "1h0m0s", "1h1m1s"])

# ------------------------------------------------------------------------------------------
# 3. reference apiVersions from the contract labels
# ------------------------------------------------------------------------------------------
crds2 = copy.deepcopy(CRDS)
crds2[("infrastructure.cluster.x-k8s.io", "OpenStackCluster")]["metadata"]["labels"] = {
    "cluster.x-k8s.io/v1beta1": "v1alpha6_v1alpha7", "cluster.x-k8s.io/v1beta2": "v1alpha7_v1beta1_v1beta2"}
c = webhooks.convert(EX["Cluster/baremetal-cluster"], "cluster.x-k8s.io/v1beta1", lambda g, k: crds2.get((g, k)))
check("the v1beta2 contract label wins over v1beta1, and its newest version (kube-aware order) is chosen",
      c["spec"]["infrastructureRef"]["apiVersion"] == "infrastructure.cluster.x-k8s.io/v1beta2",
      c["spec"]["infrastructureRef"])
crds2[("infrastructure.cluster.x-k8s.io", "OpenStackCluster")]["metadata"]["labels"] = {
    "cluster.x-k8s.io/v1beta1": "v1alpha7_v1alpha10_v1alpha9"}
c = webhooks.convert(EX["Cluster/baremetal-cluster"], "cluster.x-k8s.io/v1beta1", lambda g, k: crds2.get((g, k)))
check("only the compatible v1beta1 contract: its newest version, v1alpha10 after v1alpha9",
      c["spec"]["infrastructureRef"]["apiVersion"] == "infrastructure.cluster.x-k8s.io/v1alpha10")
crds2[("infrastructure.cluster.x-k8s.io", "OpenStackCluster")]["metadata"]["labels"] = {}
try:
    webhooks.convert(EX["Cluster/baremetal-cluster"], "cluster.x-k8s.io/v1beta1", lambda g, k: crds2.get((g, k)))
    check("no contract label: the conversion fails", False)
except webhooks.ConversionError as e:
    check("no contract label: the conversion fails with cluster-api's message",
          'cannot find any versions matching contract versions ["v1beta2" "v1beta1"] for CRD '
          'openstackclusters.infrastructure.cluster.x-k8s.io' in str(e), e)
try:
    webhooks.convert(EX["Cluster/baremetal-cluster"], "cluster.x-k8s.io/v1beta1",
                     lambda g, k: None if k == "OpenStackCluster" else CRDS.get((g, k)))
    check("no CRD for a referenced kind: the conversion fails", False)
except webhooks.ConversionError as e:
    check("no CRD for a referenced kind: the conversion fails", "failed to get apiVersion for kind OpenStackCluster" in
          str(e) and 'openstackclusters.infrastructure.cluster.x-k8s.io" not found' in str(e), e)
osc7 = {"apiVersion": "infrastructure.cluster.x-k8s.io/v1alpha7", "kind": "OpenStackCluster",
        "metadata": {"name": "x"}, "spec": {"cloudName": "bifrost"}}
osc = webhooks.convert(osc7, "infrastructure.cluster.x-k8s.io/v1beta1", crd_for)
check("CAPO kinds: apiVersion rewritten, fields kept (no CAPO conversion is modelled)",
      osc["apiVersion"] == "infrastructure.cluster.x-k8s.io/v1beta1" and osc["spec"] == osc7["spec"])

# ------------------------------------------------------------------------------------------
# 4. defaulting and validation
# ------------------------------------------------------------------------------------------
k = copy.deepcopy(EX["KubeadmControlPlane/baremetal-cluster-control-plane"])
k["spec"]["version"] = "1.29.0"
del k["spec"]["rollout"]
del k["spec"]["replicas"]
webhooks.default(k, crd_for)
check("KCP defaulting: version gets its v, replicas 1, rollout RollingUpdate with maxSurge 1",
      k["spec"]["version"] == "v1.29.0" and k["spec"]["replicas"] == 1 and
      k["spec"]["rollout"] == {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}, k["spec"])
m = copy.deepcopy(EX["MachineDeployment/baremetal-cluster-workers"])
m["spec"]["template"]["spec"]["version"] = "1.28.0"
del m["spec"]["replicas"]
m["spec"]["selector"] = {}
webhooks.default(m, crd_for)
check("MachineDeployment defaulting: template version v, replicas 1, cluster-name and deployment-name labels, "
      "rollout strategy",
      m["spec"]["template"]["spec"]["version"] == "v1.28.0" and m["spec"]["replicas"] == 1 and
      m["spec"]["selector"]["matchLabels"] == {"cluster.x-k8s.io/deployment-name": "baremetal-cluster-workers",
                                               "cluster.x-k8s.io/cluster-name": "baremetal-cluster"} and
      m["metadata"]["labels"] == {"cluster.x-k8s.io/cluster-name": "baremetal-cluster"} and
      m["spec"]["rollout"] == {"strategy": {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}, m)
check("the defaulted MachineDeployment fits its schema", not fits(m), fits(m))
mach = {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine", "metadata": {"name": "m"},
        "spec": {"clusterName": "c", "version": "1.30.1", "bootstrap": {"dataSecretName": "s"},
                 "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "OpenStackMachine",
                                       "name": "m"}}}
webhooks.default(mach, crd_for)
check("Machine defaulting: version v, cluster-name label, nodeDeletionTimeoutSeconds 10",
      mach["spec"]["version"] == "v1.30.1" and mach["metadata"]["labels"] == {"cluster.x-k8s.io/cluster-name": "c"}
      and mach["spec"]["deletion"] == {"nodeDeletionTimeoutSeconds": 10}, mach)

old = copy.deepcopy(EX["KubeadmControlPlane/baremetal-cluster-control-plane"])
webhooks.default(old, crd_for)
check("KCP validation: the example is valid", webhooks.validate(old, None, crd_for) == [],
      webhooks.validate(old, None, crd_for))
new = copy.deepcopy(old)
new["spec"]["version"] = "v1.30.0"
errs = webhooks.validate(new, old, crd_for)
check("KCP validation: v1.28.0 -> v1.30.0 refused (a minor version skipped)",
      errs == [("spec.version", "FieldValueForbidden",
                "Forbidden: cannot update Kubernetes version from v1.28.0 to v1.30.0")], errs)
new["spec"]["version"] = "v1.29.7"
check("KCP validation: v1.28.0 -> v1.29.7 allowed", webhooks.validate(new, old, crd_for) == [],
      webhooks.validate(new, old, crd_for))
new["spec"]["replicas"] = 4
check("KCP validation: an even replica count refused with stacked etcd",
      ("spec.replicas", "FieldValueForbidden", "Forbidden: cannot be an even number when etcd is stacked")
      in webhooks.validate(new, old, crd_for))
new = copy.deepcopy(old)
new["spec"]["kubeadmConfigSpec"]["clusterConfiguration"] = {"controlPlaneEndpoint": "x:6443"}
errs = webhooks.validate(new, old, crd_for)
check("KCP validation: a field outside the allowed update paths 'cannot be modified'",
      errs == [("spec.kubeadmConfigSpec.clusterConfiguration.controlPlaneEndpoint", "FieldValueForbidden",
                "Forbidden: cannot be modified")], errs)
mo = copy.deepcopy(m)
mn = copy.deepcopy(m)
mn["spec"]["clusterName"] = mn["spec"]["template"]["spec"]["clusterName"] = "other"
mn["spec"]["selector"]["matchLabels"]["cluster.x-k8s.io/cluster-name"] = "other"
mn["spec"]["template"]["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] = "other"
errs = webhooks.validate(mn, mo, crd_for)
check("MachineDeployment validation: spec.clusterName is immutable",
      errs == [("spec.clusterName", "FieldValueForbidden", "Forbidden: field is immutable")], errs)


# ------------------------------------------------------------------------------------------
# 5. capi_sim.py against an in-process converting store
# ------------------------------------------------------------------------------------------
class Refused(Exception):
    pass


class Store:
    """Just enough of an API server for capi_sim: storage at the CRD's storage version, conversion through
    webhooks.convert, defaulting and validation, status subresource, finalizers, merge patches."""

    def __init__(self):
        self.objs = {}   # (group, plural, ns, name) -> stored object
        self.rv = 0
        self.crds = {d["metadata"]["name"]: copy.deepcopy(d) for d in CRDS.values()}
        self.writes = []  # (method, path, manager)

    def crd_for(self, group, kind):
        for d in self.crds.values():
            if d["spec"]["group"] == group and d["spec"]["names"]["kind"] == kind:
                return d
        return None

    def res(self, group, plural):
        d = self.crds["%s.%s" % (plural, group)]
        storage = [v["name"] for v in d["spec"]["versions"] if v["storage"]][0]
        return d["spec"]["names"]["kind"], storage

    def out(self, obj, api_version):
        return webhooks.convert(obj, api_version, self.crd_for)

    def parse(self, path):
        p = path.strip("/").split("/")
        if p[1] == "apiextensions.k8s.io":
            return ("crd", p[4] if len(p) > 4 else None)
        group, version = p[1], p[2]
        ns = p[4] if len(p) > 4 and p[3] == "namespaces" else None
        rest = p[5:] if ns else p[3:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        return group, version, ns, plural, name, sub

    def bump(self, o):
        self.rv += 1
        o["metadata"]["resourceVersion"] = str(self.rv)

    def call(self, method, path, body=None, content_type="application/json", query=None, manager="manager",
             user_agent=""):
        if method != "GET":
            self.writes.append((method, path, manager))
        parsed = self.parse(path)
        if parsed[0] == "crd":
            if method == "GET":
                return copy.deepcopy(self.crds[parsed[1]]) if parsed[1] else \
                    {"items": copy.deepcopy(list(self.crds.values()))}
            if method == "PUT":
                body = copy.deepcopy(body)
                mf = body["metadata"].setdefault("managedFields", [])
                mf.append({"manager": manager, "operation": "Update", "apiVersion": "apiextensions.k8s.io/v1"})
                self.crds[parsed[1]] = body
                return body
        group, version, ns, plural, name, sub = parsed
        kind, storage = self.res(group, plural)
        av = "%s/%s" % (group, version)
        key = (group, plural, ns, name)
        if method == "GET":
            if name is None:
                items = [self.out(o, av) for (g, pl, n, _), o in sorted(self.objs.items())
                         if g == group and pl == plural and (ns is None or n == ns)]
                sel = (query or {}).get("labelSelector")
                if sel:
                    for term in sel.split(","):
                        k_, _, v_ = term.partition("=")
                        items = [i for i in items if k_ in (i["metadata"].get("labels") or {}) and
                                 (not v_ or i["metadata"]["labels"][k_] == v_)]
                return {"items": items}
            return self.out(self.objs[key], av) if key in self.objs else None
        if method == "POST":
            obj = copy.deepcopy(body)
            obj["metadata"]["namespace"] = ns
            key = (group, plural, ns, obj["metadata"]["name"])
            if key in self.objs:
                return None
            hub = self.out(obj, "%s/%s" % (group, storage))
            hub.pop("status", None)
            webhooks.default(hub, self.crd_for)
            errs = webhooks.validate(hub, None, self.crd_for)
            if errs:
                raise Refused(errs)
            hub["metadata"].update({"uid": str(uuid.uuid4()), "generation": 1,
                                    "creationTimestamp": "2026-01-01T00:00:%02dZ" % (len(self.objs) % 60)})
            self.bump(hub)
            self.objs[key] = hub
            return self.out(hub, av)
        if key not in self.objs:
            return None
        cur = self.objs[key]
        if method == "DELETE":
            if cur["metadata"].get("finalizers"):
                cur["metadata"]["deletionTimestamp"] = "2026-01-01T01:00:00Z"
                self.bump(cur)
                return self.out(cur, av)
            del self.objs[key]
            # garbage collection of dependents (ownerReferences), as the real collector does in the background
            for k2, o2 in list(self.objs.items()):
                if any(r.get("uid") == cur["metadata"]["uid"] for r in o2["metadata"].get("ownerReferences") or []):
                    self.call("DELETE", "/apis/%s/%s/namespaces/%s/%s/%s" % (k2[0], "v1beta2" if k2[0] != webhooks.INFRA_GROUP else "v1beta1", k2[2], k2[1], k2[3]))
            return {"kind": "Status"}
        if method == "PATCH":
            view = self.out(cur, av)
            patched = merge_patch(copy.deepcopy(view), body)
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                return None
            hub = self.out(patched, "%s/%s" % (group, storage))
            new = copy.deepcopy(cur)
            if sub == "status":
                new["status"] = hub.get("status", {})
            else:
                new["spec"] = hub.get("spec", {})
                new["metadata"] = hub["metadata"]
                webhooks.default(new, self.crd_for)
                errs = webhooks.validate(new, cur, self.crd_for)
                if errs:
                    raise Refused(errs)
                if new["spec"] != cur["spec"]:
                    new["metadata"]["generation"] = cur["metadata"]["generation"] + 1
            if not new["metadata"].get("finalizers") and new["metadata"].get("deletionTimestamp"):
                del self.objs[key]
                return self.out(new, av)
            self.bump(new)
            self.objs[key] = new
            return self.out(new, av)
        raise AssertionError(method)

    def list(self, api_version, resource, namespace=None, selector=None):
        base = "/apis/" + api_version
        path = base + ("/namespaces/%s/%s" % (namespace, resource) if namespace else "/" + resource)
        return (self.call("GET", path, query={"labelSelector": selector} if selector else None) or {}).get("items", [])

    path = staticmethod(capi_sim.Api.path)

    def merge(self, api_version, resource, namespace, name, patch, sub=""):
        return self.call("PATCH", self.path(api_version, resource, namespace, name, sub), patch,
                         "application/merge-patch+json")

    def delete(self, api_version, resource, namespace, name):
        return self.call("DELETE", self.path(api_version, resource, namespace, name))


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


store = Store()
for key, obj in EX.items():
    if obj["apiVersion"] == "v1":
        continue
    g, v = obj["apiVersion"].split("/")
    plural = obj["kind"].lower() + "s"
    store.call("POST", "/apis/%s/%s/namespaces/default/%s" % (g, v, plural), obj)
sim = capi_sim.Simulator(store)


def tick(n=1):
    for _ in range(n):
        sim.tick()


def get(api_version, plural, name, ns="default"):
    return store.call("GET", capi_sim.Api.path(api_version, plural, ns, name))


def machines(sel=""):
    return store.list("cluster.x-k8s.io/v1beta2", "machines", "default", sel)


tick(8)
check("capi_sim: the server converts, so the simulation writes v1beta2", sim.converting is True, sim.converting)
check("capi_sim: 3 control-plane and 2 worker Machines", len(machines("cluster.x-k8s.io/control-plane")) == 3 and
      len(machines("cluster.x-k8s.io/deployment-name=baremetal-cluster-workers")) == 2, len(machines()))
crd = store.crds["clusters.cluster.x-k8s.io"]
check("cainjector: the conversion webhook's caBundle is a PEM CA, written by an Update as cainjector",
      crd["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"] == capi_sim.CA_BUNDLE and
      __import__("base64").b64decode(capi_sim.CA_BUNDLE).startswith(b"-----BEGIN CERTIFICATE-----") and
      ("PUT", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusters.cluster.x-k8s.io", "cainjector")
      in store.writes and all(c["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"] == capi_sim.CA_BUNDLE
                              for c in store.crds.values()))
n_puts = len([w for w in store.writes if w[0] == "PUT"])
tick()
check("cainjector: nothing written once injected", len([w for w in store.writes if w[0] == "PUT"]) == n_puts)

C = get("cluster.x-k8s.io/v1beta2", "clusters", "baremetal-cluster")
K = get("controlplane.cluster.x-k8s.io/v1beta2", "kubeadmcontrolplanes", "baremetal-cluster-control-plane")
D = get("cluster.x-k8s.io/v1beta2", "machinedeployments", "baremetal-cluster-workers")
M = machines("cluster.x-k8s.io/control-plane")[0]
for o in (C, K, D, M):
    check("capi_sim: the %s status it writes fits the v1beta2 schema" % o["kind"], not fits(o), fits(o))
    sp = down(o)
    check("capi_sim: the v1beta1 view of the %s fits the v1beta1 schema" % o["kind"], not fits(sp), fits(sp))
    check("capi_sim: %s v1beta2 -> v1beta1 -> v1beta2 gives the object back" % o["kind"], up(sp) == o,
          json.dumps({"want": o, "got": up(sp)}))
types = lambda o: [c["type"] for c in o["status"].get("conditions", [])]
cs = C["status"]
check("Cluster v1beta2 status: phase, initialization, controlPlane/workers summaries, Available and friends",
      cs["phase"] == "Provisioned" and cs["initialization"] == {"infrastructureProvisioned": True,
                                                                "controlPlaneInitialized": True} and
      cs["controlPlane"] == {"desiredReplicas": 3, "replicas": 3, "upToDateReplicas": 3, "readyReplicas": 3,
                             "availableReplicas": 3} and cs["workers"]["readyReplicas"] == 2 and
      {"Available", "InfrastructureReady", "ControlPlaneAvailable", "ControlPlaneInitialized",
       "WorkersAvailable"} <= set(types(C)) and capi_sim.is_true(C, "Available") and
      all(set(c) >= {"type", "status", "reason", "message", "lastTransitionTime"} for c in cs["conditions"]), cs)
c1 = down(C)
check("Cluster v1beta1 view: Ready condition, controlPlaneReady/infrastructureReady, v1beta2 conditions",
      any(c["type"] == "Ready" and c["status"] == "True" for c in c1["status"]["conditions"]) and
      c1["status"]["controlPlaneReady"] is True and c1["status"]["infrastructureReady"] is True and
      c1["status"]["v1beta2"]["controlPlane"]["readyReplicas"] == 3 and
      "Available" in [c["type"] for c in c1["status"]["v1beta2"]["conditions"]], c1["status"])
ks = K["status"]
check("KCP v1beta2 status: replicas, readyReplicas, availableReplicas, upToDateReplicas, version, initialization",
      (ks["replicas"], ks["readyReplicas"], ks["availableReplicas"], ks["upToDateReplicas"], ks["version"]) ==
      (3, 3, 3, 3, "v1.28.0") and ks["initialization"] == {"controlPlaneInitialized": True} and
      ks["deprecated"]["v1beta1"]["updatedReplicas"] == 3 and capi_sim.is_true(K, "Available"), ks)
k1 = down(K)["status"]
check("KCP v1beta1 view: updatedReplicas, readyReplicas, unavailableReplicas, initialized, ready, v1beta2 counters",
      (k1["replicas"], k1["updatedReplicas"], k1["readyReplicas"], k1["unavailableReplicas"], k1["initialized"],
       k1["ready"], k1["version"]) == (3, 3, 3, 0, True, True, "v1.28.0") and
      k1["v1beta2"]["upToDateReplicas"] == 3 and "availableReplicas" not in k1, k1)
ds = D["status"]
check("MachineDeployment v1beta2 status: counters, phase, Available",
      (ds["replicas"], ds["readyReplicas"], ds["availableReplicas"], ds["upToDateReplicas"], ds["phase"]) ==
      (2, 2, 2, 2, "Running") and capi_sim.is_true(D, "Available"), ds)
d1s = down(D)["status"]
check("MachineDeployment v1beta1 view: updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas",
      (d1s["replicas"], d1s["updatedReplicas"], d1s["readyReplicas"], d1s["availableReplicas"],
       d1s["unavailableReplicas"]) == (2, 2, 2, 2, 0), d1s)
mst = M["status"]
check("Machine v1beta2 status: phase, nodeRef {name}, initialization, Ready/Available/UpToDate; spec.providerID",
      mst["phase"] == "Running" and mst["nodeRef"] == {"name": M["metadata"]["name"]} and
      mst["initialization"] == {"bootstrapDataSecretCreated": True, "infrastructureProvisioned": True} and
      {"Ready", "Available", "UpToDate"} <= set(types(M)) and M["spec"]["providerID"].startswith("openstack:///"),
      M)
m1 = down(M)["status"]
check("Machine v1beta1 view: nodeRef {apiVersion v1, kind Node, name}, bootstrapReady, Ready condition",
      m1["nodeRef"] == {"apiVersion": "v1", "kind": "Node", "name": M["metadata"]["name"]} and
      m1["bootstrapReady"] is True and any(c["type"] == "Ready" for c in m1["conditions"]), m1)
osc = get("infrastructure.cluster.x-k8s.io/v1beta1", "openstackclusters", "baremetal-cluster")
check("capi_sim: the infrastructure cluster is labelled and owned by the Cluster",
      osc["metadata"]["labels"] == {"cluster.x-k8s.io/cluster-name": "baremetal-cluster"} and
      osc["metadata"]["ownerReferences"][0]["apiVersion"] == "cluster.x-k8s.io/v1beta2")

# An upgrade written at v1beta1 (the annotation carries the hub through the spoke).
K1 = down(K)
store.merge("controlplane.cluster.x-k8s.io/v1beta1", "kubeadmcontrolplanes", "default",
            "baremetal-cluster-control-plane", {"spec": {"version": "1.29.0"}})
K = get("controlplane.cluster.x-k8s.io/v1beta2", "kubeadmcontrolplanes", "baremetal-cluster-control-plane")
check("a v1beta1 write of spec.version is defaulted to v1.29.0 and keeps the v1beta2 fields",
      K["spec"]["version"] == "v1.29.0" and K["spec"]["rollout"]["strategy"]["type"] == "RollingUpdate" and
      K["status"]["initialization"] == {"controlPlaneInitialized": True} and ANN not in json.dumps(K["metadata"]), K)
try:
    store.merge("controlplane.cluster.x-k8s.io/v1beta2", "kubeadmcontrolplanes", "default",
                "baremetal-cluster-control-plane", {"spec": {"version": "v1.31.0"}})
    check("a v1.29.0 -> v1.31.0 update is refused", False)
except Refused as e:
    check("a v1.29.0 -> v1.31.0 update is refused", "cannot update Kubernetes version from v1.29.0 to v1.31.0"
          in str(e), e)
seen_four = False
for _ in range(20):
    tick()
    cps = [m for m in machines("cluster.x-k8s.io/control-plane") if not m["metadata"].get("deletionTimestamp")]
    seen_four = seen_four or len(cps) == 4
    if len(cps) == 3 and all(m["spec"]["version"] == "v1.29.0" for m in cps):
        break
K = get("controlplane.cluster.x-k8s.io/v1beta2", "kubeadmcontrolplanes", "baremetal-cluster-control-plane")
check("capi_sim: the control plane rolls to v1.29.0 one surge machine at a time",
      seen_four and len(cps) == 3 and all(m["spec"]["version"] == "v1.29.0" for m in cps) and
      K["status"]["version"] == "v1.29.0" and K["status"]["upToDateReplicas"] == 3, [m["spec"]["version"] for m in cps])

# Deletion: machines first, then the rest, then the finalizer.
store.delete("cluster.x-k8s.io/v1beta2", "clusters", "default", "baremetal-cluster")
for _ in range(30):
    tick()
    if get("cluster.x-k8s.io/v1beta2", "clusters", "baremetal-cluster") is None:
        break
check("capi_sim: a deleted Cluster loses its machines, control plane and infrastructure, then goes",
      get("cluster.x-k8s.io/v1beta2", "clusters", "baremetal-cluster") is None and not machines() and
      get("controlplane.cluster.x-k8s.io/v1beta2", "kubeadmcontrolplanes", "baremetal-cluster-control-plane") is None)

print("%d passed, %d failed" % (len(passes), len(failures)))
sys.exit(1 if failures else 0)
