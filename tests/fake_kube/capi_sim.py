#!/usr/bin/env python3
"""SIMULATION of the Cluster API controllers (v1.11+), and of cert-manager's cainjector, for tests only.

This is not Cluster API. It is a tiny stand-in that tests run against the
fake API server (fake_apiserver.py) over HTTP, so that Cluster API objects
applied by metalsync appear to converge the way they would on a management
cluster with CAPI, KCP and CAPO installed. It provisions nothing. Like the
real controllers it reads and writes v1beta2 (the storage version), status
through the status subresource. Each tick:

0. cainjector: every CRD annotated cert-manager.io/inject-ca-from whose
   conversion webhook's caBundle is not the CA gets it, with an Update (PUT)
   as field manager `cainjector` (cert-manager's reconciler Updates unless its
   alpha ServerSideApply gate is on).
1. Every Cluster gets the finalizer `cluster.cluster.x-k8s.io`, its control
   plane and infrastructure cluster get the cluster-name label and a
   controller reference, and its status: phase, initialization
   (infrastructureProvisioned, controlPlaneInitialized), controlPlane and
   workers replica summaries, metav1 conditions (Available,
   InfrastructureReady, ControlPlaneInitialized, ControlPlaneAvailable,
   WorkersAvailable, MachinesReady, MachinesUpToDate, RemoteConnectionProbe,
   ScalingUp, ScalingDown, Remediating, RollingOut, Deleting, Paused) and
   deprecated.v1beta1.conditions (Ready, InfrastructureReady,
   ControlPlaneInitialized, ControlPlaneReady).
2. For every KubeadmControlPlane and MachineDeployment of a live Cluster,
   Machines are created or deleted to match spec.replicas, one machine change
   per owner per tick; a new version rolls the machines one at a time, new
   first then old (maxSurge 1). Owner status: replicas, readyReplicas
   (Machines whose Ready condition is True), availableReplicas,
   upToDateReplicas, (KCP) version and initialization.controlPlaneInitialized,
   (MD) phase, conditions, and deprecated.v1beta1 {updatedReplicas,
   readyReplicas, (MD) availableReplicas, unavailableReplicas, conditions}.
   Machines (no MachineSets are simulated) get spec.providerID, and status
   phase Running, nodeRef {name}, initialization, conditions (Ready,
   Available, UpToDate, BootstrapConfigReady, InfrastructureReady, NodeReady,
   NodeHealthy, Deleting, Paused) and deprecated.v1beta1.conditions.
   For metalsync's own kinds (MetalsyncCluster, MetalsyncMachineTemplate) the
   provisioning is metalsync's: MetalsyncMachines and bootstrap Secrets are
   created with the Machines, which run only once metalsync reports them
   provisioned, and are removed only after their MetalsyncMachine is gone
   (README.md, "metalsync's own provider kinds").
3. A Cluster with a deletionTimestamp loses its Machines one per tick (each is
   marked phase Deleting first, deleted on a later tick), then its
   control plane, MachineDeployments and infrastructure cluster; then the
   finalizer is removed and the Cluster goes away.

Against a server that does not convert between versions (one stored object
for all versions), the simulation notices (a v1beta1 and a v1beta2 read of a
Cluster are the same object), reads objects applied at either version by
converting them itself (webhooks.py), and writes status in the v1beta1 shape,
which is what a v1beta1 reader would see from a real server.

Usage: python3 capi_sim.py --server http://127.0.0.1:PORT [--interval 0.2] [--once]
       [--token TOKEN] [--ca PEM]
"""

import argparse
import base64
import copy
import datetime
import json
import os
import random
import signal
import ssl
import string
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import webhooks  # noqa: E402

CAPI = "cluster.x-k8s.io/v1beta2"
CAPI_V1BETA1 = "cluster.x-k8s.io/v1beta1"
KCP_API = "controlplane.cluster.x-k8s.io/v1beta2"
KCP_V1BETA1 = "controlplane.cluster.x-k8s.io/v1beta1"
FINALIZER = "cluster.cluster.x-k8s.io"
CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"
CP_LABEL = "cluster.x-k8s.io/control-plane"
MD_LABEL = "cluster.x-k8s.io/deployment-name"
MANAGER = "manager"  # the field manager name controller-runtime gives CAPI's controllers
CAINJECTOR = "cainjector"
# metalsync's own infrastructure provider (schemas/crds): its machines are provisioned by metalsync, not here.
METAL_API = "infrastructure.cluster.x-k8s.io/v1alpha1"
METAL_GROUP = "infrastructure.cluster.x-k8s.io"
METAL_MACHINE = "MetalsyncMachine"
METAL_TEMPLATE = "MetalsyncMachineTemplate"
METAL_CLUSTER = "MetalsyncCluster"
INJECT_CA_FROM = "cert-manager.io/inject-ca-from"
# A self-signed CA certificate (PEM, base64) standing in for the one cert-manager issues for the webhooks.
CA_BUNDLE = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJpRENDQVMrZ0F3SUJBZ0lVUDFyM1dWZWNwdUpsbjFrN3l1bWVGY01IV1Bjd0NnWUlLb1pJemowRUF3SXcKR2pFWU1CWUdBMVVFQXd3UFkyRndhUzEzWldKb2IyOXJMV05oTUI0WERUSTJNVEl3TWpFM05EY3dOVm9YRFRNMgpNVEV5T1RFM05EY3dOVm93R2pFWU1CWUdBMVVFQXd3UFkyRndhUzEzWldKb2IyOXJMV05oTUZrd0V3WUhLb1pJCnpqMENBUVlJS29aSXpqMERBUWNEUWdBRW1peWt1Q1lIUkx2TzZ6UmRkZm4zWDBhYlpZYXh5MkhKOTh4d2FndmMKVDZVSGFHNW9nOXpFMVZ4dC9pcXlYWlNCTkpHNFJlK0J0SHFYN3Y0YVpKL3VIcU5UTUZFd0hRWURWUjBPQkJZRQpGTVRhYllzMGlMRHRFZVRoaVM2NWpybkhtVUYxTUI4R0ExVWRJd1FZTUJhQUZNVGFiWXMwaUxEdEVlVGhpUzY1CmpybkhtVUYxTUE4R0ExVWRFd0VCL3dRRk1BTUJBZjh3Q2dZSUtvWkl6ajBFQXdJRFJ3QXdSQUlnRHh5QmRJL3gKb2RUQnpZMnVqSUQyb0t0ZkVNU2pmSWVqWkIvQXEyK0s2bjBDSUVUR1ZpQk8vdVhGRGpzeDBGS1dhbm96dVlYbQo0TmtIZVNFcTg5d1dYY0JlCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"


class Api:
    def __init__(self, server, token=None, ca=None):
        self.server = server.rstrip("/")
        self.token = token
        self.tls = ssl.create_default_context(cafile=ca) if ca else None

    def call(self, method, path, body=None, content_type="application/json", query=None, manager=MANAGER,
             user_agent="manager/v1.11.0 (linux/amd64) cluster-api/simulation"):
        q = dict(query or {})
        if method in ("POST", "PUT", "PATCH"):
            q.setdefault("fieldManager", manager)
        url = self.server + path + ("?" + urllib.parse.urlencode(q) if q else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", user_agent)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.tls) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code in (404, 409):  # gone meanwhile, or raced with another writer: next tick
                return None
            if e.code in (400, 422, 500):  # refused (a webhook, a schema) or a conversion failure: say so, go on
                print("capi-sim: %s %s: %s %s" % (method, path, e.code, e.read()[:500].decode(errors="replace")),
                      file=sys.stderr)
                return None
            raise

    def list(self, api_version, resource, namespace=None, selector=None):
        base = "/apis/" + api_version
        path = base + ("/namespaces/%s/%s" % (namespace, resource) if namespace else "/" + resource)
        out = self.call("GET", path, query={"labelSelector": selector} if selector else None)
        return (out or {}).get("items", [])

    @staticmethod
    def path(api_version, resource, namespace, name, sub=""):
        return "/apis/%s/namespaces/%s/%s/%s%s" % (api_version, namespace, resource, name, "/" + sub if sub else "")

    def merge(self, api_version, resource, namespace, name, patch, sub=""):
        return self.call("PATCH", self.path(api_version, resource, namespace, name, sub), patch,
                         "application/merge-patch+json")

    def delete(self, api_version, resource, namespace, name):
        return self.call("DELETE", self.path(api_version, resource, namespace, name),
                         {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(ctype, status, reason, message="", generation=None):
    c = {"type": ctype, "status": "True" if status is True else "False" if status is False else status,
         "reason": reason, "message": message}
    if generation is not None:
        c["observedGeneration"] = generation
    return c


def conditions(old, wanted):
    """metav1 Conditions: lastTransitionTime kept while a condition's status is unchanged (meta.SetStatusCondition)."""
    prev = {c.get("type"): c for c in old or []}
    out = []
    for c in wanted:
        c = dict(c)
        p = prev.get(c["type"])
        c["lastTransitionTime"] = p["lastTransitionTime"] if p and p.get("status") == c["status"] and \
            p.get("lastTransitionTime") else now()
        out.append(c)
    return out


def v1beta1_conditions(old, wanted):
    """Cluster API v1beta1 conditions (type, status, lastTransitionTime; reason/severity when not True)."""
    prev = {c.get("type"): c for c in old or []}
    out = []
    for t, ok in wanted:
        c = {"type": t, "status": "True" if ok else "False"}
        if not ok:
            c.update({"reason": "WaitingForReplicas", "severity": "Info"})
        p = prev.get(t)
        c["lastTransitionTime"] = p["lastTransitionTime"] if p and p.get("status") == c["status"] and \
            p.get("lastTransitionTime") else now()
        out.append(c)
    return out


def _strip_times(v):
    if isinstance(v, dict):
        return {k: _strip_times(x) for k, x in v.items() if k != "lastTransitionTime"}
    if isinstance(v, list):
        return [_strip_times(x) for x in v]
    return v


def differs(current, wanted):
    """True when some key of `wanted` has another value in `current` (conditions compared without times)."""
    return any(_strip_times(current.get(k)) != _strip_times(v) for k, v in wanted.items())


def suffix():
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))


def is_true(obj, ctype):
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in ((obj.get("status") or {}).get("conditions") or []))


class Simulator:
    def __init__(self, api):
        self.api = api
        self.crds = {}            # (group, kind) -> CRD
        self.converting = None    # does the server convert between versions? None: not known yet

    # --- CRDs, cainjector, contract versions ---------------------------------
    def crd_for(self, group, kind):
        return self.crds.get((group, kind))

    def refresh_crds(self):
        self.crds = {}
        for crd in self.api.list("apiextensions.k8s.io/v1", "customresourcedefinitions"):
            spec = crd.get("spec") or {}
            self.crds[(spec.get("group"), (spec.get("names") or {}).get("kind"))] = crd
            self.inject_ca(crd)

    def inject_ca(self, crd):
        md, spec = crd["metadata"], crd.get("spec") or {}
        conv = spec.get("conversion") or {}
        if not (md.get("annotations") or {}).get(INJECT_CA_FROM) or md.get("deletionTimestamp") or \
                conv.get("strategy") != "Webhook":
            return
        cc = (conv.get("webhook") or {}).get("clientConfig")
        if cc is None or cc.get("caBundle") == CA_BUNDLE:
            return
        new = copy.deepcopy(crd)
        new["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"] = CA_BUNDLE
        new.pop("status", None)
        self.api.call("PUT", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + md["name"], new,
                      manager=CAINJECTOR, user_agent="cainjector/v1.17.2 (linux/amd64) cert-manager/simulation")

    def ref_target(self, ref):
        """(apiVersion, plural) of a v1beta2 reference, its version chosen from the CRD's contract label."""
        group, kind = ref.get("apiGroup", ""), ref.get("kind", "")
        try:
            api_version = webhooks.contract_api_version(group, kind, self.crd_for)
        except webhooks.ConversionError:
            return None, None
        plural = ((self.crd_for(group, kind) or {}).get("spec", {}).get("names") or {}).get("plural") or \
            kind.lower() + "s"
        return api_version, plural

    # --- reading and writing at v1beta2, whether or not the server converts --
    def detect_conversion(self, cluster):
        if self.converting is not None:
            return
        md = cluster["metadata"]
        a = self.api.call("GET", Api.path(CAPI, "clusters", md["namespace"], md["name"]))
        b = self.api.call("GET", Api.path(CAPI_V1BETA1, "clusters", md["namespace"], md["name"]))
        if a is None or b is None:
            return
        # A converting server's v1beta1 answer always carries the hub in Cluster API's conversion-data
        # annotation (MarshalData); a server that stores one object for all versions answers the same object.
        ann = lambda o: webhooks.CONVERSION_DATA in ((o.get("metadata") or {}).get("annotations") or {})
        self.converting = ann(b) and not ann(a)
        if not self.converting:
            print("capi-sim: the server does not convert between versions; converting here, status in the "
                  "v1beta1 shape", file=sys.stderr)

    def normalize(self, obj):
        """obj as a v1beta2 object. On a non-converting server it may be (partly) in the v1beta1 shape."""
        if self.converting is not False:
            return obj
        kind = obj.get("kind")
        group = obj["apiVersion"].split("/")[0]
        v1 = "%s/v1beta1" % group
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        spec_old = {
            "Cluster": lambda: any("apiVersion" in (spec.get(r) or {}) for r in ("infrastructureRef", "controlPlaneRef")),
            "Machine": lambda: "apiVersion" in (spec.get("infrastructureRef") or {}),
            "MachineDeployment": lambda: "strategy" in spec or "apiVersion" in (
                ((spec.get("template") or {}).get("spec") or {}).get("infrastructureRef") or {}),
            "KubeadmControlPlane": lambda: "infrastructureRef" in (spec.get("machineTemplate") or {}) or
            "rolloutStrategy" in spec,
        }[kind]()
        status_old = any(k in status for k in ("infrastructureReady", "controlPlaneReady", "bootstrapReady",
                                                "updatedReplicas", "unavailableReplicas", "initialized", "v1beta2"))
        out = copy.deepcopy(obj)
        if spec_old:
            up = webhooks.convert(dict(copy.deepcopy(obj), apiVersion=v1, status={}), obj["apiVersion"], self.crd_for)
            out["spec"] = up.get("spec", {})
        if status_old:
            up = webhooks.convert({"apiVersion": v1, "kind": kind, "metadata": {"name": obj["metadata"]["name"]},
                                   "spec": {}, "status": status}, obj["apiVersion"], self.crd_for)
            out["status"] = up.get("status", {})
        return out

    def list(self, api_version, resource, namespace=None, selector=None):
        return [self.normalize(o) for o in self.api.list(api_version, resource, namespace, selector)]

    def write_status(self, obj, resource, wanted):
        """Merge-patch status (v1beta2 `wanted`) through /status when it changed; v1beta1-shaped on a
        non-converting server."""
        md = obj["metadata"]
        current = obj.get("status") or {}
        if not differs(current, wanted):
            return None
        body = wanted
        if self.converting is False:
            hub = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                   "metadata": {"name": md["name"], "namespace": md["namespace"]}, "spec": {},
                   "status": dict(copy.deepcopy(current), **copy.deepcopy(wanted))}
            group = obj["apiVersion"].split("/")[0]
            body = webhooks.convert(hub, group + "/v1beta1", self.crd_for)["status"]
        return self.api.merge(obj["apiVersion"], resource, md["namespace"], md["name"], {"status": body},
                              sub="status")

    # --- the tick -------------------------------------------------------------
    def tick(self):
        self.refresh_crds()
        clusters = self.api.list(CAPI, "clusters")
        if clusters:
            self.detect_conversion(clusters[0])
        clusters = [self.normalize(c) for c in clusters]
        kcps = self.list(KCP_API, "kubeadmcontrolplanes")
        mds = self.list(CAPI, "machinedeployments")
        live = {}
        for c in clusters:
            md = c["metadata"]
            if md.get("deletionTimestamp"):
                self.delete_cluster(c)
            else:
                live[(md["namespace"], md["name"])] = c
        for kcp in kcps:
            owner = self.cluster_of_kcp(kcp, clusters)
            if owner is not None and (kcp["metadata"]["namespace"], owner) in live:
                self.scale(kcp, owner, control_plane=True)
        for mdp in mds:
            owner = (mdp.get("spec") or {}).get("clusterName")
            if owner and (mdp["metadata"]["namespace"], owner) in live and not mdp["metadata"].get("deletionTimestamp"):
                self.scale(mdp, owner, control_plane=False)
        if live:  # the Cluster's summary of what the owners now report
            kcps = self.list(KCP_API, "kubeadmcontrolplanes")
            mds = self.list(CAPI, "machinedeployments")
        for c in live.values():
            self.provision_cluster(c, kcps, mds)

    @staticmethod
    def cluster_of_kcp(kcp, clusters):
        md = kcp["metadata"]
        if kcp["metadata"].get("deletionTimestamp"):
            return None
        if (md.get("labels") or {}).get(CLUSTER_LABEL):
            return md["labels"][CLUSTER_LABEL]
        for c in clusters:
            ref = (c.get("spec") or {}).get("controlPlaneRef") or {}
            if c["metadata"]["namespace"] == md["namespace"] and ref.get("kind") == "KubeadmControlPlane" \
                    and ref.get("name") == md["name"]:
                return c["metadata"]["name"]
        return None

    # --- 1. clusters --------------------------------------------------------
    def provision_cluster(self, c, kcps, mds):
        md = c["metadata"]
        ns, name = md["namespace"], md["name"]
        fins = md.get("finalizers") or []
        if FINALIZER not in fins:
            self.api.merge(CAPI, "clusters", ns, name,
                           {"metadata": {"finalizers": fins + [FINALIZER], "resourceVersion": md["resourceVersion"]}})
        spec = c.get("spec") or {}
        # As the Cluster controller does for its control plane and infrastructure
        # cluster: the cluster-name label and a controller reference to the Cluster.
        infra = None
        for key in ("controlPlaneRef", "infrastructureRef"):
            ref = spec.get(key)
            if not ref or not ref.get("kind") or not ref.get("name"):
                continue
            api_version, plural = self.ref_target(ref)
            if api_version is None:
                continue
            obj = self.api.call("GET", Api.path(api_version, plural, ns, ref["name"]))
            if obj is None:
                continue
            if key == "infrastructureRef":
                infra = obj
            omd = obj["metadata"]
            refs = omd.get("ownerReferences") or []
            labelled = (omd.get("labels") or {}).get(CLUSTER_LABEL) == name
            if labelled and any(r.get("uid") == md["uid"] for r in refs):
                continue
            owner = {"apiVersion": CAPI, "kind": "Cluster", "name": name, "uid": md["uid"], "controller": True,
                     "blockOwnerDeletion": True}
            self.api.merge(api_version, plural, ns, ref["name"],
                           {"metadata": {"labels": {CLUSTER_LABEL: name},
                                         "ownerReferences": [r for r in refs if r.get("uid") != md["uid"]] + [owner],
                                         "resourceVersion": omd["resourceVersion"]}})
        gen = md.get("generation", 1)
        kcp = next((k for k in kcps if (spec.get("controlPlaneRef") or {}).get("name") == k["metadata"]["name"]
                    and k["metadata"]["namespace"] == ns), None)
        ks = (kcp or {}).get("status") or {}
        cp = {"desiredReplicas": ((kcp or {}).get("spec") or {}).get("replicas", 1) if kcp else 0,
              "replicas": ks.get("replicas", 0), "upToDateReplicas": ks.get("upToDateReplicas", 0),
              "readyReplicas": ks.get("readyReplicas", 0), "availableReplicas": ks.get("availableReplicas", 0)}
        workers = {"desiredReplicas": 0, "replicas": 0, "upToDateReplicas": 0, "readyReplicas": 0,
                   "availableReplicas": 0}
        for d in mds:
            if (d.get("spec") or {}).get("clusterName") != name or d["metadata"]["namespace"] != ns:
                continue
            ds = d.get("status") or {}
            workers["desiredReplicas"] += (d.get("spec") or {}).get("replicas", 1)
            for k in ("replicas", "upToDateReplicas", "readyReplicas", "availableReplicas"):
                workers[k] += ds.get(k, 0) or 0
        infra_ok = True  # the infrastructure cluster provisions at once (nothing is simulated there)
        metal_infra = infra is not None and infra.get("kind") == METAL_CLUSTER
        if metal_infra:
            # metalsync provisions it: Cluster API waits for initialization.provisioned (v1beta2
            # contract) or ready, and copies spec.controlPlaneEndpoint to the Cluster.
            ist = infra.get("status") or {}
            infra_ok = bool((ist.get("initialization") or {}).get("provisioned") or ist.get("ready"))
            endpoint = (infra.get("spec") or {}).get("controlPlaneEndpoint") or {}
            if endpoint.get("host") and (spec.get("controlPlaneEndpoint") or {}) != endpoint:
                self.api.merge(CAPI, "clusters", ns, name, {"spec": {"controlPlaneEndpoint": endpoint}})
        cp_init = bool(((ks.get("initialization") or {}).get("controlPlaneInitialized")))
        cp_avail = is_true(kcp or {}, "Available")
        w_avail = all(is_true(d, "Available") for d in mds if (d.get("spec") or {}).get("clusterName") == name)
        total = {k: cp[k] + workers[k] for k in cp}
        scaling_up = total["replicas"] < total["desiredReplicas"]
        scaling_down = total["replicas"] > total["desiredReplicas"]
        rolling = total["upToDateReplicas"] < total["replicas"]
        available = infra_ok and cp_avail and w_avail
        conds = [
            cond("Available", available, "Available" if available else "NotAvailable",
                 "" if available else "* ControlPlaneAvailable: waiting for the control plane" if not cp_avail
                 else "* WorkersAvailable: waiting for the workers", gen),
            cond("InfrastructureReady", infra_ok, "Ready", "", gen),
            cond("ControlPlaneInitialized", cp_init, "Initialized" if cp_init else "NotInitialized",
                 "" if cp_init else "Control plane not yet initialized", gen),
            cond("ControlPlaneAvailable", cp_avail, "Available" if cp_avail else "NotAvailable", "", gen),
            cond("WorkersAvailable", w_avail, "Available" if w_avail else "NotAvailable", "", gen),
            cond("MachinesReady", total["readyReplicas"] == total["replicas"], "Ready"
                 if total["readyReplicas"] == total["replicas"] else "NotReady", "", gen),
            cond("MachinesUpToDate", not rolling, "UpToDate" if not rolling else "NotUpToDate", "", gen),
            cond("RemoteConnectionProbe", cp_init, "ProbeSucceeded" if cp_init else "ProbeFailed", "", gen),
            cond("RollingOut", rolling, "RollingOut" if rolling else "NotRollingOut", "", gen),
            cond("ScalingUp", scaling_up, "ScalingUp" if scaling_up else "NotScalingUp", "", gen),
            cond("ScalingDown", scaling_down, "ScalingDown" if scaling_down else "NotScalingDown", "", gen),
            cond("Remediating", False, "NotRemediating", "", gen),
            cond("Deleting", False, "NotDeleting", "", gen),
            cond("Paused", False, "NotPaused", "", gen),
        ]
        status = c.get("status") or {}
        old_dep = ((status.get("deprecated") or {}).get("v1beta1") or {}).get("conditions")
        wanted = {
            "phase": "Provisioned" if infra_ok else "Provisioning",
            "observedGeneration": gen,
            "initialization": {"infrastructureProvisioned": infra_ok, "controlPlaneInitialized": cp_init},
            "controlPlane": cp, "workers": workers,
            "conditions": conditions(status.get("conditions"), conds),
            "deprecated": {"v1beta1": {"conditions": v1beta1_conditions(old_dep, [
                ("Ready", infra_ok and cp_init), ("ControlPlaneInitialized", cp_init),
                ("ControlPlaneReady", cp_init), ("InfrastructureReady", infra_ok)])}},
        }
        self.write_status(c, "clusters", wanted)
        if infra is not None and not metal_infra:  # the infrastructure provider's contract: status.ready (v1beta1 contract)
            ist = infra.get("status") or {}
            if ist.get("ready") is not True:
                _, plural = self.ref_target(spec["infrastructureRef"])
                self.api.merge(infra["apiVersion"], plural, ns, infra["metadata"]["name"],
                               {"status": {"ready": True}}, sub="status")

    # --- 2. machines for KubeadmControlPlanes and MachineDeployments ---------
    def machines_of(self, owner, cluster, control_plane):
        md = owner["metadata"]
        sel = "%s=%s,%s" % (CLUSTER_LABEL, cluster, CP_LABEL) if control_plane else \
            "%s=%s,%s=%s" % (CLUSTER_LABEL, cluster, MD_LABEL, md["name"])
        ms = self.list(CAPI, "machines", md["namespace"], sel)
        return sorted([m for m in ms if any(r.get("uid") == md["uid"] for r in m["metadata"].get("ownerReferences") or [])],
                      key=lambda m: (m["metadata"]["creationTimestamp"], m["metadata"]["name"]))

    def scale(self, owner, cluster, control_plane):
        md, spec = owner["metadata"], owner.get("spec") or {}
        ns = md["namespace"]
        gen = md.get("generation", 1)
        replicas = spec.get("replicas", 1)
        version = spec.get("version") if control_plane else ((spec.get("template") or {}).get("spec") or {}).get("version")
        machines = [m for m in self.machines_of(owner, cluster, control_plane) if not m["metadata"].get("deletionTimestamp")]
        for m in machines:
            self.sync_metal_machine(m)
        machines = [self.normalize(m) for m in self.machines_of(owner, cluster, control_plane)
                    if not m["metadata"].get("deletionTimestamp")]
        outdated = [m for m in machines if (m.get("spec") or {}).get("version") != version]
        template = (spec.get("machineTemplate") or {}).get("spec", {}).get("infrastructureRef") if control_plane else \
            ((spec.get("template") or {}).get("spec") or {}).get("infrastructureRef")
        # One machine change per tick: create (scale up, or surge a replacement), else delete.
        # A machine being released (metalsync's finalizer on its MetalsyncMachine) does not count as
        # a replacement yet, as Cluster API waits for a deleted Machine before the next step.
        releasing = [m for m in machines if (m.get("status") or {}).get("phase") == "Deleting"]
        if len(machines) - len(releasing) < replicas or (outdated and len(machines) == replicas and not releasing):
            created = self.create_machine(owner, cluster, control_plane, version, template)
            if created is not None:
                machines.append(created)
        elif len(machines) > replicas:
            victim = releasing[0] if releasing else outdated[0] if outdated else machines[-1]
            if self.remove_machine(victim):
                machines = [m for m in machines if m is not victim]
        uptodate = [m for m in machines if (m.get("spec") or {}).get("version") == version]
        ready = [m for m in machines if is_true(m, "Ready")]
        available = [m for m in machines if is_true(m, "Available")]
        n, r, a, u = len(machines), len(ready), len(available), len(uptodate)
        scaling_up, scaling_down, rolling = n < replicas, n > replicas, u < n
        status = owner.get("status") or {}
        old_dep = ((status.get("deprecated") or {}).get("v1beta1") or {}).get("conditions")
        selector = "%s=%s,%s" % (CLUSTER_LABEL, cluster, CP_LABEL) if control_plane else \
            "%s=%s,%s=%s" % (CLUSTER_LABEL, cluster, MD_LABEL, md["name"])
        wanted = {"replicas": n, "readyReplicas": r, "availableReplicas": a, "upToDateReplicas": u,
                  "selector": selector, "observedGeneration": gen}
        common = [
            cond("MachinesReady", r == n, "Ready" if r == n else "NotReady", "", gen),
            cond("MachinesUpToDate", u == n, "UpToDate" if u == n else "NotUpToDate", "", gen),
            cond("RollingOut", rolling, "RollingOut" if rolling else "NotRollingOut",
                 "Rolling out %d not up-to-date replicas" % (n - u) if rolling else "", gen),
            cond("ScalingUp", scaling_up, "ScalingUp" if scaling_up else "NotScalingUp",
                 "Scaling up from %d to %d replicas" % (n, replicas) if scaling_up else "", gen),
            cond("ScalingDown", scaling_down, "ScalingDown" if scaling_down else "NotScalingDown",
                 "Scaling down from %d to %d replicas" % (n, replicas) if scaling_down else "", gen),
            cond("Remediating", False, "NotRemediating", "", gen),
            cond("Deleting", False, "NotDeleting", "", gen),
            cond("Paused", False, "NotPaused", "", gen),
        ]
        if control_plane:
            versions = sorted({(m.get("spec") or {}).get("version") for m in machines} - {None},
                              key=lambda v: webhooks._parse_tolerant(v) or (0, 0, 0))
            initialized = r > 0 or bool(((status.get("initialization") or {}).get("controlPlaneInitialized")))
            avail = initialized and a > 0
            wanted["initialization"] = {"controlPlaneInitialized": initialized}
            if versions:
                wanted["version"] = versions[0]  # the oldest running, as KCP reports during an upgrade
            wanted["conditions"] = conditions(status.get("conditions"), [
                cond("Available", avail, "Available" if avail else "NotAvailable",
                     "" if avail else "Control plane not yet initialized", gen),
                cond("CertificatesAvailable", True, "Available", "", gen),
                cond("Initialized", initialized, "Initialized" if initialized else "NotInitialized", "", gen),
                cond("EtcdClusterHealthy", avail, "Healthy" if avail else "HealthUnknown", "", gen),
                cond("ControlPlaneComponentsHealthy", avail, "Healthy" if avail else "HealthUnknown", "", gen),
            ] + common)
            wanted["deprecated"] = {"v1beta1": {
                "updatedReplicas": u, "readyReplicas": r, "unavailableReplicas": max(replicas - r, 0),
                "conditions": v1beta1_conditions(old_dep, [("Ready", r == replicas and u == replicas),
                                                           ("Available", initialized),
                                                           ("CertificatesAvailable", True),
                                                           ("MachinesReady", r == n),
                                                           ("MachinesSpecUpToDate", u == n),
                                                           ("Resized", n == replicas)])}}
            api, resource = KCP_API, "kubeadmcontrolplanes"
        else:
            # MachineDeployment Available: at least desired - maxUnavailable (default 0) machines are Available.
            avail = a >= replicas
            wanted["phase"] = "ScalingUp" if scaling_up else "ScalingDown" if scaling_down else "Running"
            wanted["conditions"] = conditions(status.get("conditions"), [
                cond("Available", avail, "Available" if avail else "NotAvailable",
                     "" if avail else "%d available replicas, at least %d required (spec.strategy.rollout.maxUnavailable "
                     "is 0, spec.replicas is %d)" % (a, replicas, replicas), gen)] + common)
            wanted["deprecated"] = {"v1beta1": {
                "updatedReplicas": u, "readyReplicas": r, "availableReplicas": a,
                "unavailableReplicas": max(replicas - a, 0),
                "conditions": v1beta1_conditions(old_dep, [("Ready", avail), ("Available", avail)])}}
            api, resource = CAPI, "machinedeployments"
        owner = dict(owner, apiVersion=api)
        self.write_status(owner, resource, wanted)

    # --- metalsync's provider kinds -------------------------------------------
    @staticmethod
    def is_metal(machine):
        return ((machine.get("spec") or {}).get("infrastructureRef") or {}).get("kind") == METAL_MACHINE

    def core(self, method, path, body=None):
        return self.api.call(method, "/api/v1" + path, body)

    def create_metal_machine(self, owner, cluster, control_plane, version, template_ref):
        """As KCP and the MachineSet controller do (cloneConfigsAndGenerateMachine, MachineSet
        syncReplicas): the infrastructure machine cloned from the template, named like the Machine and
        owned by it; the bootstrap data Secret the kubeadm bootstrap provider would write; the Machine
        naming both. The Machine stays Provisioning until metalsync reports the MetalsyncMachine
        provisioned with a providerID (sync_metal_machine)."""
        md = owner["metadata"]
        ns = md["namespace"]
        tmpl = self.api.call("GET", Api.path(METAL_API, "metalsyncmachinetemplates", ns, template_ref.get("name", "")))
        if tmpl is None:
            print("capi-sim: MetalsyncMachineTemplate %s/%s not found" % (ns, template_ref.get("name")), file=sys.stderr)
            return None
        labels = {CLUSTER_LABEL: cluster}
        if control_plane:
            labels[CP_LABEL] = ""
        else:
            labels[MD_LABEL] = md["name"]
        name = "%s-%s" % (md["name"], suffix())
        machine = {
            "apiVersion": CAPI, "kind": "Machine",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                              "name": md["name"], "uid": md["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"clusterName": cluster, "version": version,
                     "bootstrap": {"dataSecretName": name},
                     "infrastructureRef": {"apiGroup": METAL_GROUP, "kind": METAL_MACHINE, "name": name}},
        }
        if not version:
            del machine["spec"]["version"]
        created = self.api.call("POST", "/apis/%s/namespaces/%s/machines" % (CAPI, ns), machine)
        if created is None:
            return None
        owner_ref = {"apiVersion": CAPI, "kind": "Machine", "name": name, "uid": created["metadata"]["uid"],
                     "controller": True, "blockOwnerDeletion": True}
        infra = {
            "apiVersion": METAL_API, "kind": METAL_MACHINE,
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels),
                         "annotations": {"cluster.x-k8s.io/cloned-from-name": tmpl["metadata"]["name"],
                                         "cluster.x-k8s.io/cloned-from-groupkind": METAL_TEMPLATE + "." + METAL_GROUP},
                         "ownerReferences": [owner_ref]},
            "spec": copy.deepcopy(((tmpl.get("spec") or {}).get("template") or {}).get("spec") or {}),
        }
        self.api.call("POST", "/apis/%s/namespaces/%s/metalsyncmachines" % (METAL_API, ns), infra)
        # The kubeadm bootstrap provider's data Secret. Real kubeadm data carries a bootstrap token; this
        # stand-in names the machine and passes the providerID from the config drive to the kubelet.
        role = "init" if control_plane else "join"
        cloud_config = ("#cloud-config\n# kubeadm %s for machine %s (simulated bootstrap data)\n"
                        "runcmd:\n  - kubeadm %s --config /run/kubeadm/kubeadm.yaml\n"
                        "write_files:\n  - path: /run/kubeadm/kubeadm.yaml\n    content: |\n"
                        "      nodeRegistration:\n        kubeletExtraArgs:\n"
                        "          - {name: provider-id, value: \"{{ ds.meta_data.providerid }}\"}\n") % (role, name, role)
        b64 = lambda t: base64.b64encode(t.encode()).decode()
        self.core("POST", "/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "type": "cluster.x-k8s.io/secret",
            "metadata": {"name": name, "namespace": ns, "labels": {CLUSTER_LABEL: cluster},
                         "ownerReferences": [owner_ref]},
            "data": {"value": b64(cloud_config), "format": b64("cloud-config")}})
        out = self.write_status(self.normalize(created), "machines", self.metal_machine_status(created, None))
        return self.normalize(out) if out else created

    def metal_machine_status(self, machine, infra):
        gen = machine["metadata"].get("generation", 1)
        ist = (infra or {}).get("status") or {}
        provisioned = bool((ist.get("initialization") or {}).get("provisioned") or ist.get("ready")) and \
            bool(((infra or {}).get("spec") or {}).get("providerID"))
        deleting = ((machine.get("status") or {}).get("phase") == "Deleting")
        ready_cond = next((c for c in ist.get("conditions") or [] if c.get("type") == "Ready"), {})
        status = {
            "phase": "Deleting" if deleting else "Running" if provisioned else "Provisioning",
            "observedGeneration": gen,
            "initialization": {"bootstrapDataSecretCreated": True, "infrastructureProvisioned": provisioned},
            "conditions": conditions((machine.get("status") or {}).get("conditions"), [
                cond("Available", provisioned, "Available" if provisioned else "NotAvailable", "", gen),
                cond("Ready", provisioned, "Ready" if provisioned else "NotReady", "", gen),
                cond("UpToDate", True, "UpToDate", "", gen),
                cond("BootstrapConfigReady", True, "Ready", "", gen),
                # Mirrored from the MetalsyncMachine's Ready condition, as the Machine controller does.
                cond("InfrastructureReady", provisioned, ready_cond.get("reason") or
                     ("Ready" if provisioned else "NotReady"), ready_cond.get("message", ""), gen),
                cond("NodeReady", provisioned, "NodeReady" if provisioned else "NodeNotReady", "", gen),
                cond("NodeHealthy", provisioned, "NodeHealthy" if provisioned else "NodeNotHealthy", "", gen),
                cond("Deleting", deleting, "Deleting" if deleting else "NotDeleting", "", gen),
                cond("Paused", False, "NotPaused", "", gen),
            ]),
        }
        if provisioned:
            status["nodeRef"] = {"name": machine["metadata"]["name"]}
            if ist.get("addresses"):
                status["addresses"] = ist["addresses"]
        return status

    def sync_metal_machine(self, m):
        """The Machine controller for a MetalsyncMachine: providerID, addresses and readiness copied
        back once metalsync reports it provisioned (reconcileInfrastructure)."""
        if not self.is_metal(m) or m["metadata"].get("deletionTimestamp"):
            return
        md = m["metadata"]
        infra = self.api.call("GET", Api.path(METAL_API, "metalsyncmachines", md["namespace"],
                                              m["spec"]["infrastructureRef"]["name"]))
        pid = ((infra or {}).get("spec") or {}).get("providerID")
        if pid and (m.get("spec") or {}).get("providerID") != pid:
            self.api.merge(CAPI, "machines", md["namespace"], md["name"], {"spec": {"providerID": pid}})
        self.write_status(m, "machines", self.metal_machine_status(m, infra))

    def remove_machine(self, m):
        """Deletes a Machine; for a MetalsyncMachine's, the infrastructure machine first, and the Machine
        only once it is gone (metalsync's finalizer holds it until the node is released), as the Machine
        controller's reconcileDelete waits for it. True once the Machine is deleted."""
        md = m["metadata"]
        ns, name = md["namespace"], md["name"]
        if not self.is_metal(m):
            self.api.delete(CAPI, "machines", ns, name)
            return True
        if (m.get("status") or {}).get("phase") != "Deleting":
            self.api.merge(CAPI, "machines", ns, name, {"status": {"phase": "Deleting"}}, sub="status")
        infra_name = m["spec"]["infrastructureRef"]["name"]
        infra = self.api.call("GET", Api.path(METAL_API, "metalsyncmachines", ns, infra_name))
        if infra is not None:
            if not infra["metadata"].get("deletionTimestamp"):
                self.api.delete(METAL_API, "metalsyncmachines", ns, infra_name)
            return False
        secret = ((m.get("spec") or {}).get("bootstrap") or {}).get("dataSecretName")
        if secret:
            self.core("DELETE", "/namespaces/%s/secrets/%s" % (ns, secret))
        self.api.delete(CAPI, "machines", ns, name)
        return True

    def create_machine(self, owner, cluster, control_plane, version, template=None):
        if (template or {}).get("kind") == METAL_TEMPLATE:
            return self.create_metal_machine(owner, cluster, control_plane, version, template)
        md = owner["metadata"]
        labels = {CLUSTER_LABEL: cluster}
        if control_plane:
            labels[CP_LABEL] = ""
        else:
            labels[MD_LABEL] = md["name"]
        name = "%s-%s" % (md["name"], suffix())
        machine = {
            "apiVersion": CAPI, "kind": "Machine",
            "metadata": {"name": name, "namespace": md["namespace"], "labels": labels,
                         "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                              "name": md["name"], "uid": md["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"clusterName": cluster, "version": version,
                     "bootstrap": {"dataSecretName": name},
                     "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io",
                                           "kind": "OpenStackMachine", "name": name},
                     "providerID": "openstack:///" + name},
        }
        if not version:
            del machine["spec"]["version"]
        created = self.api.call("POST", "/apis/%s/namespaces/%s/machines" % (CAPI, md["namespace"]), machine)
        if created is None:
            return None
        created = self.normalize(created)
        gen = created["metadata"].get("generation", 1)
        status = {
            "phase": "Running", "observedGeneration": gen,
            "nodeRef": {"name": name},
            "initialization": {"bootstrapDataSecretCreated": True, "infrastructureProvisioned": True},
            "conditions": conditions([], [
                cond("Available", True, "Available", "", gen),
                cond("Ready", True, "Ready", "", gen),
                cond("UpToDate", True, "UpToDate", "", gen),
                cond("BootstrapConfigReady", True, "Ready", "", gen),
                cond("InfrastructureReady", True, "Ready", "", gen),
                cond("NodeReady", True, "NodeReady", "", gen),
                cond("NodeHealthy", True, "NodeHealthy", "", gen),
                cond("Deleting", False, "NotDeleting", "", gen),
                cond("Paused", False, "NotPaused", "", gen),
            ]),
            "deprecated": {"v1beta1": {"conditions": v1beta1_conditions([], [
                ("Ready", True), ("BootstrapReady", True), ("InfrastructureReady", True), ("NodeHealthy", True)])}},
        }
        out = self.write_status(created, "machines", status)
        return self.normalize(out) if out else dict(created, status=status)

    # --- 3. cluster deletion --------------------------------------------------
    def delete_cluster(self, c):
        md = c["metadata"]
        ns, name = md["namespace"], md["name"]
        if (c.get("status") or {}).get("phase") != "Deleting":
            self.api.merge(CAPI, "clusters", ns, name, {"status": {"phase": "Deleting"}}, sub="status")
        machines = self.list(CAPI, "machines", ns, "%s=%s" % (CLUSTER_LABEL, name))
        metal = [m for m in machines if self.is_metal(m)]
        if metal:
            # Cluster deletion deletes every Machine at once; each waits for its MetalsyncMachine.
            for m in metal:
                self.remove_machine(m)
            return
        if machines:
            deleting = [m for m in machines if (m.get("status") or {}).get("phase") == "Deleting"]
            if deleting:
                self.api.delete(CAPI, "machines", ns, deleting[0]["metadata"]["name"])
            else:
                self.api.merge(CAPI, "machines", ns, machines[0]["metadata"]["name"],
                               {"status": {"phase": "Deleting"}}, sub="status")
            return
        # Machines gone: the cluster's descendants, then the finalizer.
        spec = c.get("spec") or {}
        for mdp in self.list(CAPI, "machinedeployments", ns):
            if (mdp.get("spec") or {}).get("clusterName") == name:
                self.api.delete(CAPI, "machinedeployments", ns, mdp["metadata"]["name"])
        for ref in (spec.get("controlPlaneRef"), spec.get("infrastructureRef")):
            if ref and ref.get("name") and ref.get("kind"):
                api_version, plural = self.ref_target(ref)
                if api_version:
                    self.api.delete(api_version, plural, ns, ref["name"])
        fins = [f for f in md.get("finalizers") or [] if f != FINALIZER]
        self.api.merge(CAPI, "clusters", ns, name,
                       {"metadata": {"finalizers": fins or None, "resourceVersion": md["resourceVersion"]}})


def main():
    ap = argparse.ArgumentParser(description="SIMULATION of the Cluster API controllers (tests only)")
    ap.add_argument("--server", required=True)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--token")
    ap.add_argument("--ca", help="CA certificate (PEM) for an https:// server")
    args = ap.parse_args()
    sim = Simulator(Api(args.server, args.token, args.ca))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while True:
        try:
            sim.tick()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            if args.once:
                print("capi-sim: %s" % e, file=sys.stderr)
                sys.exit(1)
            print("capi-sim: %s (retrying)" % e, file=sys.stderr)
        if args.once or stopping:
            return
        deadline = time.monotonic() + args.interval
        while time.monotonic() < deadline and not stopping:
            time.sleep(min(0.05, args.interval))


if __name__ == "__main__":
    main()
