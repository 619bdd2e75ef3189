#!/usr/bin/env python3
"""SIMULATION of the Cluster API controllers, for tests only.

This is not Cluster API. It is a tiny stand-in that tests run against the
fake API server (fake_apiserver.py) over HTTP, so that Cluster API objects
applied by metalsync appear to converge the way they would on a management
cluster with CAPI, KCP and CAPO installed. It provisions nothing. Each tick:

1. Every Cluster gets the finalizer `cluster.cluster.x-k8s.io` and a status
   of phase Provisioned with Ready, ControlPlaneReady and InfrastructureReady
   conditions True (written through the status subresource).
2. For every KubeadmControlPlane and MachineDeployment of a live Cluster,
   Machines are created or deleted to match spec.replicas, one machine change
   per owner per tick; a new spec.version rolls the machines one at a time,
   new first then old (maxSurge 1). Owner status (replicas, updatedReplicas,
   readyReplicas, and for KCP version, ready, initialized) is written through
   the status subresource.
3. A Cluster with a deletionTimestamp loses its Machines one per tick (each is
   marked phase Deleting first, deleted on a later tick), then its
   control plane, MachineDeployments and infrastructure cluster; then the
   finalizer is removed and the Cluster goes away.

Usage: python3 capi_sim.py --server http://127.0.0.1:PORT [--interval 0.2] [--once]
       [--token TOKEN] [--ca PEM]
"""

import argparse
import datetime
import json
import random
import signal
import ssl
import string
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CAPI = "cluster.x-k8s.io/v1beta1"
KCP_API = "controlplane.cluster.x-k8s.io/v1beta1"
FINALIZER = "cluster.cluster.x-k8s.io"
CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"
CP_LABEL = "cluster.x-k8s.io/control-plane"
MD_LABEL = "cluster.x-k8s.io/deployment-name"
MANAGER = "manager"  # the field manager name controller-runtime gives CAPI's controllers


class Api:
    def __init__(self, server, token=None, ca=None):
        self.server = server.rstrip("/")
        self.token = token
        self.tls = ssl.create_default_context(cafile=ca) if ca else None

    def call(self, method, path, body=None, content_type="application/json", query=None):
        q = dict(query or {})
        if method in ("POST", "PUT", "PATCH"):
            q.setdefault("fieldManager", MANAGER)
        url = self.server + path + ("?" + urllib.parse.urlencode(q) if q else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", "capi-sim/0.1 (simulation)")
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


def conditions(old, wanted):
    """Condition list with lastTransitionTime kept when a condition's status is unchanged."""
    prev = {c.get("type"): c for c in old or []}
    out = []
    for t in wanted:
        c = {"type": t, "status": "True"}
        p = prev.get(t)
        c["lastTransitionTime"] = p["lastTransitionTime"] if p and p.get("status") == "True" else now()
        out.append(c)
    return out


def differs(current, wanted):
    """True when some key of `wanted` has another value in `current` (conditions compared without times)."""
    strip = lambda cs: [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in cs or []]
    for k, v in wanted.items():
        if k == "conditions":
            if strip(current.get(k)) != strip(v):
                return True
        elif current.get(k) != v:
            return True
    return False


def suffix():
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))


class Simulator:
    def __init__(self, api):
        self.api = api

    def tick(self):
        clusters = self.api.list(CAPI, "clusters")
        live = {}
        for c in clusters:
            md = c["metadata"]
            if md.get("deletionTimestamp"):
                self.delete_cluster(c)
            else:
                self.provision_cluster(c)
                live[(md["namespace"], md["name"])] = c
        for kcp in self.api.list(KCP_API, "kubeadmcontrolplanes"):
            owner = self.cluster_of_kcp(kcp, clusters)
            if owner is not None and (kcp["metadata"]["namespace"], owner) in live:
                self.scale(kcp, owner, control_plane=True)
        for mdp in self.api.list(CAPI, "machinedeployments"):
            owner = (mdp.get("spec") or {}).get("clusterName")
            if owner and (mdp["metadata"]["namespace"], owner) in live and not mdp["metadata"].get("deletionTimestamp"):
                self.scale(mdp, owner, control_plane=False)

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
    def provision_cluster(self, c):
        md = c["metadata"]
        ns, name = md["namespace"], md["name"]
        fins = md.get("finalizers") or []
        if FINALIZER not in fins:
            self.api.merge(CAPI, "clusters", ns, name,
                           {"metadata": {"finalizers": fins + [FINALIZER], "resourceVersion": md["resourceVersion"]}})
        # As the Cluster controller does for its control plane and infrastructure
        # cluster: the cluster-name label and a controller reference to the Cluster.
        for ref in ((c.get("spec") or {}).get("controlPlaneRef"), (c.get("spec") or {}).get("infrastructureRef")):
            if not ref or not ref.get("apiVersion") or not ref.get("name") or not ref.get("kind"):
                continue
            plural = ref["kind"].lower() + "s"
            obj = self.api.call("GET", Api.path(ref["apiVersion"], plural, ns, ref["name"]))
            if obj is None:
                continue
            omd = obj["metadata"]
            refs = omd.get("ownerReferences") or []
            labelled = (omd.get("labels") or {}).get(CLUSTER_LABEL) == name
            if labelled and any(r.get("uid") == md["uid"] for r in refs):
                continue
            owner = {"apiVersion": CAPI, "kind": "Cluster", "name": name, "uid": md["uid"], "controller": True,
                     "blockOwnerDeletion": True}
            self.api.merge(ref["apiVersion"], plural, ns, ref["name"],
                           {"metadata": {"labels": {CLUSTER_LABEL: name},
                                         "ownerReferences": [r for r in refs if r.get("uid") != md["uid"]] + [owner],
                                         "resourceVersion": omd["resourceVersion"]}})
        status = c.get("status") or {}
        wanted = {"phase": "Provisioned", "controlPlaneReady": True, "infrastructureReady": True,
                  "observedGeneration": md.get("generation", 1),
                  "conditions": conditions(status.get("conditions"),
                                           ["Ready", "ControlPlaneReady", "InfrastructureReady"])}
        if differs(status, wanted):
            self.api.merge(CAPI, "clusters", ns, name, {"status": wanted}, sub="status")

    # --- 2. machines for KubeadmControlPlanes and MachineDeployments ---------
    def machines_of(self, owner, cluster, control_plane):
        md = owner["metadata"]
        sel = "%s=%s,%s" % (CLUSTER_LABEL, cluster, CP_LABEL) if control_plane else \
            "%s=%s,%s=%s" % (CLUSTER_LABEL, cluster, MD_LABEL, md["name"])
        ms = self.api.list(CAPI, "machines", md["namespace"], sel)
        return sorted([m for m in ms if any(r.get("uid") == md["uid"] for r in m["metadata"].get("ownerReferences") or [])],
                      key=lambda m: (m["metadata"]["creationTimestamp"], m["metadata"]["name"]))

    def scale(self, owner, cluster, control_plane):
        md, spec = owner["metadata"], owner.get("spec") or {}
        ns = md["namespace"]
        replicas = spec.get("replicas", 1)
        version = spec.get("version") if control_plane else ((spec.get("template") or {}).get("spec") or {}).get("version")
        machines = [m for m in self.machines_of(owner, cluster, control_plane) if not m["metadata"].get("deletionTimestamp")]
        outdated = [m for m in machines if (m.get("spec") or {}).get("version") != version]
        # One machine change per tick: create (scale up, or surge a replacement), else delete.
        if len(machines) < replicas or (outdated and len(machines) == replicas):
            created = self.create_machine(owner, cluster, control_plane, version)
            if created is not None:
                machines.append(created)
        elif len(machines) > replicas:
            victim = outdated[0] if outdated else machines[-1]
            self.api.delete(CAPI, "machines", ns, victim["metadata"]["name"])
            machines = [m for m in machines if m is not victim]
        updated = [m for m in machines if (m.get("spec") or {}).get("version") == version]
        ready = [m for m in machines if (m.get("status") or {}).get("phase") == "Running"]
        wanted = {"replicas": len(machines), "updatedReplicas": len(updated), "readyReplicas": len(ready),
                  "availableReplicas": len(ready), "unavailableReplicas": max(replicas - len(ready), 0),
                  "observedGeneration": md.get("generation", 1)}
        if control_plane:
            versions = sorted({(m.get("spec") or {}).get("version") for m in machines} - {None})
            wanted.update({"ready": bool(ready), "initialized": bool(ready),
                           "selector": "%s=%s,%s" % (CLUSTER_LABEL, cluster, CP_LABEL),
                           "conditions": conditions((owner.get("status") or {}).get("conditions"),
                                                    ["Ready", "Available", "MachinesReady"])})
            if versions:
                wanted["version"] = versions[0]  # the oldest running, as KCP reports during an upgrade
            api, resource = KCP_API, "kubeadmcontrolplanes"
        else:
            done = len(machines) == replicas and len(updated) == replicas and len(ready) == replicas
            wanted.update({"phase": "Running" if done else ("ScalingUp" if len(machines) < replicas else "ScalingDown"
                                                            if len(machines) > replicas else "Running"),
                           "selector": "%s=%s,%s=%s" % (CLUSTER_LABEL, cluster, MD_LABEL, md["name"])})
            api, resource = CAPI, "machinedeployments"
        if differs(owner.get("status") or {}, wanted):
            self.api.merge(api, resource, ns, md["name"], {"status": wanted}, sub="status")

    def create_machine(self, owner, cluster, control_plane, version):
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
                     "infrastructureRef": {"apiVersion": "infrastructure.cluster.x-k8s.io/v1alpha7",
                                           "kind": "OpenStackMachine", "name": name},
                     "providerID": "openstack:///" + name},
        }
        created = self.api.call("POST", "/apis/%s/namespaces/%s/machines" % (CAPI, md["namespace"]), machine)
        if created is None:
            return None
        status = {"phase": "Running", "bootstrapReady": True, "infrastructureReady": True,
                  "nodeRef": {"apiVersion": "v1", "kind": "Node", "name": name},
                  "conditions": conditions([], ["Ready", "BootstrapReady", "InfrastructureReady", "NodeHealthy"])}
        return self.api.merge(CAPI, "machines", md["namespace"], name, {"status": status}, sub="status") or created

    # --- 3. cluster deletion --------------------------------------------------
    def delete_cluster(self, c):
        md = c["metadata"]
        ns, name = md["namespace"], md["name"]
        if (c.get("status") or {}).get("phase") != "Deleting":
            self.api.merge(CAPI, "clusters", ns, name, {"status": {"phase": "Deleting"}}, sub="status")
        machines = self.api.list(CAPI, "machines", ns, "%s=%s" % (CLUSTER_LABEL, name))
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
        for mdp in self.api.list(CAPI, "machinedeployments", ns):
            if (mdp.get("spec") or {}).get("clusterName") == name:
                self.api.delete(CAPI, "machinedeployments", ns, mdp["metadata"]["name"])
        for ref in (spec.get("controlPlaneRef"), spec.get("infrastructureRef")):
            if ref and ref.get("apiVersion") and ref.get("name"):
                plural = ref["kind"].lower() + "s"
                self.api.delete(ref["apiVersion"], plural, ns, ref["name"])
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
