"""In-process stand-in for Cluster API's conversion, defaulting and validating webhooks.

The fake API server (fake_apiserver.py) imports this module and calls:

    convert(obj, to_api_version, crd_for) -> dict      # a NEW object at to_api_version
    default(obj, crd_for) -> list[str]                  # mutates obj (storage version) in place; warnings
    validate(obj, old, crd_for) -> list[(path, reason, message)]   # empty: allowed
    handles(group, kind) -> bool

`crd_for(group, kind)` returns the CRD object (a dict) the server holds, or None.

This follows Cluster API v1.11+ (hub/storage v1beta2, spoke v1beta1) line by line
for the fields metalsync's examples and capi_sim.py use; see tests/fake_kube/README.md,
"Cluster API stand-ins", for the cluster-api source files each part follows and
for what is not modelled. It is not Cluster API.
"""

import copy
import json
import re

__all__ = ["ConversionError", "convert", "default", "validate", "handles"]


class ConversionError(Exception):
    """A conversion the real webhook would refuse (the API server answers 500 with this text)."""


CAPI_GROUP = "cluster.x-k8s.io"
CP_GROUP = "controlplane.cluster.x-k8s.io"
BOOTSTRAP_GROUP = "bootstrap.cluster.x-k8s.io"
INFRA_GROUP = "infrastructure.cluster.x-k8s.io"
HUB = "v1beta2"
SPOKE = "v1beta1"
# util/conversion/conversion.go: DataAnnotation
CONVERSION_DATA = "cluster.x-k8s.io/conversion-data"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"
# internal/contract/version.go: Version (= clusterv1.GroupVersion.Version) and GetCompatibleVersions
CONTRACT = "v1beta2"
COMPATIBLE_CONTRACTS = ["v1beta2", "v1beta1"]  # kube-aware order, newest first

CONVERTED = {
    (CAPI_GROUP, "Cluster"), (CAPI_GROUP, "Machine"), (CAPI_GROUP, "MachineSet"), (CAPI_GROUP, "MachineDeployment"),
    (CP_GROUP, "KubeadmControlPlane"), (BOOTSTRAP_GROUP, "KubeadmConfig"), (BOOTSTRAP_GROUP, "KubeadmConfigTemplate"),
}
DEFAULTED = {(CAPI_GROUP, "Machine"), (CAPI_GROUP, "MachineSet"), (CAPI_GROUP, "MachineDeployment"),
             (CP_GROUP, "KubeadmControlPlane")}
VALIDATED = DEFAULTED


def handles(group, kind):
    """Kinds whose CRD sends conversion, defaulting or validation to one of these webhooks."""
    return (group, kind) in CONVERTED or (group, kind) in VALIDATED or group == INFRA_GROUP


# --------------------------------------------------------------------------------------------
# small helpers: Go's encoding/json omitempty, durations, versions
# --------------------------------------------------------------------------------------------

def _empty(v):
    return v is None or v == "" or v == {} or v == []


def _put(d, key, value):
    """Set d[key] as Go's `json:",omitempty"` would emit it (nil, "", empty map/slice left out)."""
    if _empty(value):
        d.pop(key, None)
    else:
        d[key] = value


def _put_nz(d, key, value):
    """omitempty on a non-pointer bool/int: false and 0 are left out too."""
    if _empty(value) or value is False or (not isinstance(value, bool) and value == 0):
        d.pop(key, None)
    else:
        d[key] = value


def _obj(d):
    return d if isinstance(d, dict) else {}


def split_api_version(api_version):
    if "/" in (api_version or ""):
        g, v = api_version.rsplit("/", 1)
        return g, v
    return "", api_version or ""


_KUBE_VERSION = re.compile(r"^v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?$")


def _kube_version_key(v):
    """k8s.io/apimachinery/pkg/version CompareKubeAwareVersionStrings as a sort key (ascending)."""
    m = _KUBE_VERSION.match(v)
    if not m:
        return (0, 0, 0, 0, v)
    stage = {"alpha": 0, "beta": 1, None: 2}[m.group(2)]
    return (1, int(m.group(1)), stage, int(m.group(3) or 0), "")


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _parse_duration(s):
    """Go time.ParseDuration (the forms a metav1.Duration carries), in seconds."""
    if s in ("0", ""):
        return 0.0
    sign = -1 if s.startswith("-") else 1
    body = s.lstrip("+-")
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos:
            raise ConversionError("time: invalid duration %s" % json.dumps(s))
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(body) or pos == 0:
        raise ConversionError("time: invalid duration %s" % json.dumps(s))
    return sign * total


def _to_seconds(duration):
    """api/core/v1beta2 ConvertToSeconds: *metav1.Duration -> *int32 (truncated, capped)."""
    if duration is None:
        return None
    secs = int(_parse_duration(duration))
    return min(secs, 2**31 - 1)


def _from_seconds(secs):
    """api/core/v1beta2 ConvertFromSeconds, printed as Go's Duration.String() (10s, 1m0s, 1h0m0s)."""
    if secs is None:
        return None
    n = int(secs)
    if n == 0:
        return "0s"
    neg, n = n < 0, abs(n)
    h, rem = divmod(n, 3600)
    m, s = divmod(rem, 60)
    out = ("%dh%dm%ds" % (h, m, s)) if h else ("%dm%ds" % (m, s)) if m else "%ds" % s
    return ("-" if neg else "") + out


def _bool_to_ptr(value, has_restored, restored):
    """api/core/v1beta2 Convert_bool_To_Pointer_bool: false stays nil unless it was *false before."""
    if not value:
        if has_restored and restored is False:
            return False
        return None
    return True


def _int32_to_ptr(value, has_restored, restored):
    """api/core/v1beta2 Convert_int32_To_Pointer_int32: 0 stays nil unless it was *0 before."""
    if not value:
        if has_restored and restored == 0:
            return 0
        return None
    return value


def _dig(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _go_json(value):
    """json.Marshal of an unstructured map: keys sorted, compact, HTML-escaped like Go."""
    s = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# --------------------------------------------------------------------------------------------
# references and contract versions (internal/contract/version.go; api/core/v1beta1/conversion.go)
# --------------------------------------------------------------------------------------------

def _crd_name(group, kind):
    # util/contract CalculateCRDName: flect.Pluralize(strings.ToLower(kind)) + "." + group
    k = kind.lower()
    plural = k + "es" if k.endswith(("s", "x", "ch", "sh")) else (k[:-1] + "ies" if k.endswith("y") and
                                                                     k[-2:-1] not in "aeiou" else k + "s")
    return "%s.%s" % (plural, group)


def latest_api_version_for_contract(crd, current_contract=CONTRACT):
    """internal/contract/version.go GetLatestContractAndAPIVersionFromContract: (contract, version)."""
    labels = _obj(_obj(crd.get("metadata")).get("labels"))
    compatible = sorted({current_contract} | ({"v1beta1"} if current_contract == "v1beta2" else set()),
                        key=_kube_version_key, reverse=True)
    for contract in compatible:
        supported = labels.get("%s/%s" % (CAPI_GROUP, contract))
        if not supported:
            continue
        versions = sorted(supported.split("_"), key=_kube_version_key)
        return contract, versions[-1]
    raise ConversionError(
        "cannot find any versions matching contract versions [%s] for CRD %s as contract version label(s) are "
        "either missing or empty (see https://cluster-api.sigs.k8s.io/developer/providers/contracts/overview.html"
        "#api-version-labels)" % (" ".join('"%s"' % c for c in compatible), _obj(crd.get("metadata")).get("name", "")))


def contract_api_version(group, kind, crd_for):
    """internal/contract/version.go GetAPIVersion: group/version the CRD's contract label names as latest."""
    crd = crd_for(group, kind) if crd_for else None
    if crd is None:
        raise ConversionError(
            "failed to convert object: failed to get apiVersion for kind %s: failed to get CustomResourceDefinition "
            "metadata: customresourcedefinitions.apiextensions.k8s.io \"%s\" not found" % (kind, _crd_name(group, kind)))
    try:
        _, version = latest_api_version_for_contract(crd)
    except ConversionError as e:
        raise ConversionError("failed to convert object: failed to get apiVersion for kind %s: %s" % (kind, e))
    return "%s/%s" % (group, version) if group else version


def _ref_to_hub(ref):
    """convertToContractVersionedObjectReference: corev1.ObjectReference -> {apiGroup, kind, name}."""
    ref = _obj(ref)
    api = ref.get("apiVersion") or ""
    group = ""
    if api:
        if api.count("/") > 1:
            raise ConversionError("failed to convert object: failed to parse apiVersion: "
                                  "unexpected GroupVersion string: %s" % api)
        group = api.split("/")[0] if "/" in api else ""
    out = {}
    _put(out, "apiGroup", group)
    _put(out, "kind", ref.get("kind"))
    _put(out, "name", ref.get("name"))
    return out


def _ref_from_hub(ref, namespace, crd_for):
    """convertToObjectReference: {apiGroup, kind, name} -> {apiVersion (contract), kind, namespace, name}."""
    ref = _obj(ref)
    out = {}
    _put(out, "apiVersion", contract_api_version(ref.get("apiGroup", ""), ref.get("kind", ""), crd_for))
    _put(out, "kind", ref.get("kind"))
    _put(out, "namespace", namespace)
    _put(out, "name", ref.get("name"))
    return out


def _defined(ref):
    """ContractVersionedObjectReference.IsDefined: not the zero value."""
    return bool(_obj(ref).get("apiGroup") or _obj(ref).get("kind") or _obj(ref).get("name"))


# --------------------------------------------------------------------------------------------
# object envelope: metadata, conversion-data annotation
# --------------------------------------------------------------------------------------------

def _restore(src):
    """utilconversion.UnmarshalData: take the hub saved in the annotation off the spoke (and out of its metadata)."""
    md = src.setdefault("metadata", {})
    ann = md.get("annotations") or {}
    data = ann.pop(CONVERSION_DATA, None)
    if not ann:
        md.pop("annotations", None)
    if data is None:
        return False, {}
    try:
        return True, json.loads(data)
    except ValueError as e:
        raise ConversionError("failed to convert object: %s" % e)


def _marshal(hub, spoke):
    """utilconversion.MarshalData: the hub, without metadata, as JSON in the spoke's annotation."""
    data = {k: v for k, v in hub.items() if k != "metadata"}
    spoke.setdefault("metadata", {}).setdefault("annotations", {})[CONVERSION_DATA] = _go_json(data)


def _envelope(obj, api_version):
    out = {"apiVersion": api_version, "kind": obj.get("kind")}
    out["metadata"] = copy.deepcopy(obj.get("metadata") or {})
    return out


# --------------------------------------------------------------------------------------------
# conditions (v1beta1 Condition <-> deprecated.v1beta1.conditions are the same struct)
# --------------------------------------------------------------------------------------------

def _status_up(src_status, out, extra_deprecated=()):
    """The common part of Convert_v1beta1_XStatus_To_v1beta2_XStatus: conditions and deprecated fields."""
    v1beta2 = _obj(src_status.get("v1beta2"))
    _put(out, "conditions", copy.deepcopy(v1beta2.get("conditions")))
    dep = {}
    _put(dep, "conditions", copy.deepcopy(src_status.get("conditions")))
    for k in extra_deprecated:
        if k in src_status:
            dep[k] = copy.deepcopy(src_status[k])
    return v1beta2, dep


def _status_down(hub_status, out, extra_deprecated=()):
    dep = _obj(_dig(hub_status, "deprecated", "v1beta1"))
    _put(out, "conditions", copy.deepcopy(dep.get("conditions")))
    for k in extra_deprecated:
        if k in dep:
            out[k] = copy.deepcopy(dep[k])
    return dep


# --------------------------------------------------------------------------------------------
# kubeadm bootstrap spec (api/bootstrap/kubeadm/v1beta1/conversion.go)
# --------------------------------------------------------------------------------------------

def _args_to_list(m):
    """bootstrapv1.ConvertToArgs: map -> [{name, value}] sorted by name, then value."""
    if m is None:
        return None
    return [{"name": k, "value": v} for k, v in sorted(m.items(), key=lambda kv: (kv[0], kv[1]))]


def _args_from_list(lst):
    """bootstrapv1.ConvertFromArgs: later duplicates win."""
    if lst is None:
        return None
    out = {}
    for a in lst:
        out[a.get("name", "")] = a.get("value", "")
    return out


def _map_args(node, key, to_list):
    if isinstance(node, dict) and key in node:
        v = node[key]
        if to_list and isinstance(v, dict):
            _put(node, key, _args_to_list(v))
        elif not to_list and isinstance(v, list):
            _put(node, key, _args_from_list(v))


def _kubeadm_spec(spec, up, restored_spec=None):
    """KubeadmConfigSpec v1beta1 <-> v1beta2 for the modelled fields; everything else is copied."""
    s = copy.deepcopy(_obj(spec))
    for cfg in ("initConfiguration", "joinConfiguration"):
        c = s.get(cfg)
        if isinstance(c, dict):
            _map_args(c.get("nodeRegistration"), "kubeletExtraArgs", up)
            if isinstance(c.get("nodeRegistration"), dict) and not c["nodeRegistration"]:
                c.pop("nodeRegistration")
    cc = s.get("clusterConfiguration")
    if isinstance(cc, dict):
        for comp in ("apiServer", "controllerManager", "scheduler"):
            _map_args(cc.get(comp), "extraArgs", up)
        _map_args(_dig(cc, "etcd", "local"), "extraArgs", up)
    if up:
        s.pop("useExperimentalRetryJoin", None)  # gone in v1beta2
        # KubeadmConfigSpec.ConvertTo: timeouts moved from one struct to another.
        init_cp = None
        tfcp = _dig(s, "clusterConfiguration", "apiServer", "timeoutForControlPlane")
        if tfcp is not None:
            del s["clusterConfiguration"]["apiServer"]["timeoutForControlPlane"]
            init_cp = _to_seconds(tfcp)
            s.setdefault("initConfiguration", {}).setdefault("timeouts", {})[
                "controlPlaneComponentHealthCheckSeconds"] = init_cp
        disc_to = _dig(s, "joinConfiguration", "discovery", "timeout")
        if disc_to is not None:
            del s["joinConfiguration"]["discovery"]["timeout"]
        if disc_to is not None or init_cp is not None:
            t = s.setdefault("joinConfiguration", {}).setdefault("timeouts", {})
            if init_cp is not None:
                t["controlPlaneComponentHealthCheckSeconds"] = init_cp
            if disc_to is not None:
                t["tlsBootstrapSeconds"] = _to_seconds(disc_to)
        # RestoreKubeadmConfigSpec: v1beta2-only timeouts come back from the annotation.
        for cfg in ("initConfiguration", "joinConfiguration"):
            rt = _dig(restored_spec, cfg, "timeouts")
            if rt is not None:
                t = s.setdefault(cfg, {}).setdefault("timeouts", {})
                for k, v in rt.items():
                    t.setdefault(k, v)
    else:
        # KubeadmConfigSpec.ConvertFrom
        cp = _dig(s, "initConfiguration", "timeouts", "controlPlaneComponentHealthCheckSeconds")
        tls = _dig(s, "joinConfiguration", "timeouts", "tlsBootstrapSeconds")
        for cfg in ("initConfiguration", "joinConfiguration"):
            if isinstance(s.get(cfg), dict):
                s[cfg].pop("timeouts", None)
        if cp is not None:
            s.setdefault("clusterConfiguration", {}).setdefault("apiServer", {})["timeoutForControlPlane"] = \
                _from_seconds(cp)
        if tls is not None:
            s.setdefault("joinConfiguration", {}).setdefault("discovery", {})["timeout"] = _from_seconds(tls)
    for k in ("initConfiguration", "joinConfiguration", "clusterConfiguration"):
        _put(s, k, s.get(k))
    return s


# --------------------------------------------------------------------------------------------
# MachineSpec (shared by Machine, MachineSet and MachineDeployment templates)
# --------------------------------------------------------------------------------------------

_DELETION_TIMEOUTS = (("nodeDrainTimeout", "nodeDrainTimeoutSeconds"),
                      ("nodeVolumeDetachTimeout", "nodeVolumeDetachTimeoutSeconds"),
                      ("nodeDeletionTimeout", "nodeDeletionTimeoutSeconds"))


def _machine_spec_up(spec):
    s = copy.deepcopy(_obj(spec))
    # convertMachineSpecToContractVersionedObjectReference
    s["infrastructureRef"] = _ref_to_hub(s.get("infrastructureRef"))
    _put(s, "infrastructureRef", s["infrastructureRef"])
    b = _obj(s.get("bootstrap"))
    if "configRef" in b:
        _put(b, "configRef", _ref_to_hub(b["configRef"]) if b["configRef"] is not None else None)
    _put(s, "bootstrap", b)
    deletion = {}
    for old, new in _DELETION_TIMEOUTS:
        if old in s:
            _put(deletion, new, _to_seconds(s.pop(old)))
    _put(s, "deletion", deletion)
    for k in ("version", "providerID", "failureDomain"):  # *string -> string,omitempty
        _put(s, k, s.get(k))
    return s


def _machine_spec_down(spec, namespace, crd_for):
    s = copy.deepcopy(_obj(spec))
    if _defined(s.get("infrastructureRef")):
        s["infrastructureRef"] = _ref_from_hub(s["infrastructureRef"], namespace, crd_for)
    else:
        s["infrastructureRef"] = {}  # corev1.ObjectReference is a non-pointer struct in v1beta1
    b = _obj(s.get("bootstrap"))
    if _defined(b.get("configRef")):
        b["configRef"] = _ref_from_hub(b["configRef"], namespace, crd_for)
    else:
        b.pop("configRef", None)
    s["bootstrap"] = b  # Bootstrap is a non-pointer struct without omitempty content
    deletion = _obj(s.pop("deletion", None))
    for old, new in _DELETION_TIMEOUTS:
        _put(s, old, _from_seconds(deletion.get(new)))
    s.pop("minReadySeconds", None)
    s.pop("taints", None)
    for k in ("version", "providerID", "failureDomain"):  # dropEmptyStringsMachineSpec
        _put(s, k, s.get(k))
    return s


def _template_up(tmpl):
    t = copy.deepcopy(_obj(tmpl))
    t["spec"] = _machine_spec_up(t.get("spec"))
    return t


def _template_down(tmpl, namespace, crd_for):
    t = copy.deepcopy(_obj(tmpl))
    t["spec"] = _machine_spec_down(t.get("spec"), namespace, crd_for)
    return t


# --------------------------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------------------------

def _cluster_up(src, ok, restored):
    dst = _envelope(src, "%s/%s" % (CAPI_GROUP, HUB))
    spec = copy.deepcopy(_obj(src.get("spec")))
    for k in ("infrastructureRef", "controlPlaneRef"):
        if spec.get(k) is not None:
            spec[k] = _ref_to_hub(spec[k])
        _put(spec, k, spec.get(k))
    _put(spec, "paused", _bool_to_ptr(spec.get("paused", False), ok, _dig(restored, "spec", "paused")))
    cn = _obj(spec.get("clusterNetwork"))
    if cn:
        for r in ("services", "pods"):
            _put(cn, r, cn.get(r))
        _put_nz(cn, "apiServerPort", cn.get("apiServerPort"))
        _put(cn, "serviceDomain", cn.get("serviceDomain"))
    _put(spec, "clusterNetwork", cn)
    ep = _obj(spec.get("controlPlaneEndpoint"))
    ep = {k: v for k, v in ep.items() if v not in ("", 0, None)}
    _put(spec, "controlPlaneEndpoint", ep)
    topo = spec.get("topology")
    if isinstance(topo, dict):
        class_ref = {}
        _put(class_ref, "name", topo.pop("class", None))
        _put(class_ref, "namespace", topo.pop("classNamespace", None))
        _put(topo, "classRef", class_ref)
    _put(spec, "topology", topo)
    dst["spec"] = spec

    st = _obj(src.get("status"))
    out = {}
    v1beta2, dep = _status_up(st, out, ("failureReason", "failureMessage"))
    if v1beta2.get("controlPlane") is not None:
        out["controlPlane"] = copy.deepcopy(v1beta2["controlPlane"])
    if v1beta2.get("workers") is not None:
        out["workers"] = copy.deepcopy(v1beta2["workers"])
    init = {}
    _put(init, "controlPlaneInitialized",
         _bool_to_ptr(st.get("controlPlaneReady", False), ok, _dig(restored, "status", "initialization",
                                                                   "controlPlaneInitialized")))
    _put(init, "infrastructureProvisioned",
         _bool_to_ptr(st.get("infrastructureReady", False), ok, _dig(restored, "status", "initialization",
                                                                     "infrastructureProvisioned")))
    _put(out, "initialization", init)
    if st.get("failureDomains") is not None:
        out["failureDomains"] = [dict({"name": n, "controlPlane": bool(_obj(fd).get("controlPlane", False))},
                                      **({"attributes": fd["attributes"]} if _obj(fd).get("attributes") else {}))
                                 for n, fd in sorted(st["failureDomains"].items())]
    for k in ("phase", "observedGeneration"):
        _put(out, k, st.get(k))
    if dep:
        out["deprecated"] = {"v1beta1": dep}
    _put(dst, "status", out)
    return dst


def _cluster_down(hub, crd_for):
    ns = _obj(hub.get("metadata")).get("namespace", "")
    dst = _envelope(hub, "%s/%s" % (CAPI_GROUP, SPOKE))
    spec = copy.deepcopy(_obj(hub.get("spec")))
    for k in ("infrastructureRef", "controlPlaneRef"):
        if _defined(spec.get(k)):
            spec[k] = _ref_from_hub(spec[k], ns, crd_for)
        else:
            spec.pop(k, None)
    _put_nz(spec, "paused", spec.get("paused"))  # *bool -> bool,omitempty
    # v1beta1 APIEndpoint has host and port without omitempty, and the struct is always there.
    ep = _obj(spec.get("controlPlaneEndpoint"))
    spec["controlPlaneEndpoint"] = {"host": ep.get("host", ""), "port": ep.get("port", 0)}
    cn = _obj(spec.get("clusterNetwork"))
    if cn and not cn.get("apiServerPort"):
        cn.pop("apiServerPort", None)
    _put(spec, "clusterNetwork", cn)
    topo = spec.get("topology")
    if isinstance(topo, dict):
        cr = _obj(topo.pop("classRef", None))
        _put(topo, "class", cr.get("name"))
        _put(topo, "classNamespace", cr.get("namespace"))
    _put(spec, "topology", topo)
    dst["spec"] = spec

    st = _obj(hub.get("status"))
    out = {}
    _status_down(st, out, ("failureReason", "failureMessage"))
    init = _obj(st.get("initialization"))
    # v1beta1 ClusterStatus: infrastructureReady and controlPlaneReady carry no omitempty.
    out["infrastructureReady"] = bool(init.get("infrastructureProvisioned", False))
    out["controlPlaneReady"] = bool(init.get("controlPlaneInitialized", False))
    if st.get("failureDomains") is not None:
        out["failureDomains"] = {fd.get("name", ""): dict({"controlPlane": bool(fd.get("controlPlane", False))},
                                                          **({"attributes": fd["attributes"]}
                                                             if fd.get("attributes") else {}))
                                 for fd in st["failureDomains"]}
    for k in ("phase", "observedGeneration"):
        _put(out, k, st.get(k))
    if st.get("conditions") is not None or st.get("controlPlane") is not None or st.get("workers") is not None:
        v1b2 = {}
        _put(v1b2, "conditions", copy.deepcopy(st.get("conditions")))
        if st.get("controlPlane") is not None:
            v1b2["controlPlane"] = copy.deepcopy(st["controlPlane"])
        if st.get("workers") is not None:
            v1b2["workers"] = copy.deepcopy(st["workers"])
        out["v1beta2"] = v1b2
    dst["status"] = out
    _marshal(hub, dst)
    return dst


# --------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------

def _machine_up(src, ok, restored):
    dst = _envelope(src, "%s/%s" % (CAPI_GROUP, HUB))
    spec = _machine_spec_up(src.get("spec"))
    if ok:
        _put(spec, "minReadySeconds", _dig(restored, "spec", "minReadySeconds"))
        _put(spec, "taints", _dig(restored, "spec", "taints"))
    dst["spec"] = spec
    st = _obj(src.get("status"))
    out = {}
    _, dep = _status_up(st, out, ("failureReason", "failureMessage"))
    for k in ("lastUpdated", "certificatesExpiryDate", "addresses", "nodeInfo", "phase", "observedGeneration",
              "deletion"):
        _put(out, k, copy.deepcopy(st.get(k)))
    if st.get("nodeRef"):
        _put(out, "nodeRef", {"name": st["nodeRef"].get("name")} if st["nodeRef"].get("name") else None)
    init = {}
    _put(init, "bootstrapDataSecretCreated",
         _bool_to_ptr(st.get("bootstrapReady", False), ok, _dig(restored, "status", "initialization",
                                                                "bootstrapDataSecretCreated")))
    _put(init, "infrastructureProvisioned",
         _bool_to_ptr(st.get("infrastructureReady", False), ok, _dig(restored, "status", "initialization",
                                                                     "infrastructureProvisioned")))
    _put(out, "initialization", init)
    if ok:  # the phase is the Machine controller's; a v1beta1 writer cannot change it
        _put(out, "phase", _dig(restored, "status", "phase"))
    if dep:
        out["deprecated"] = {"v1beta1": dep}
    _put(dst, "status", out)
    return dst


def _machine_down(hub, crd_for):
    ns = _obj(hub.get("metadata")).get("namespace", "")
    dst = _envelope(hub, "%s/%s" % (CAPI_GROUP, SPOKE))
    dst["spec"] = _machine_spec_down(hub.get("spec"), ns, crd_for)
    st = _obj(hub.get("status"))
    out = {}
    _status_down(st, out, ("failureReason", "failureMessage"))
    for k in ("lastUpdated", "certificatesExpiryDate", "addresses", "nodeInfo", "phase", "observedGeneration",
              "deletion"):
        _put(out, k, copy.deepcopy(st.get(k)))
    if out.get("phase") == "Updating":
        out["phase"] = "Running"
    if _obj(st.get("nodeRef")).get("name"):
        out["nodeRef"] = {"apiVersion": "v1", "kind": "Node", "name": st["nodeRef"]["name"]}
    init = _obj(st.get("initialization"))
    # v1beta1 MachineStatus: bootstrapReady and infrastructureReady carry no omitempty.
    out["bootstrapReady"] = bool(init.get("bootstrapDataSecretCreated", False))
    out["infrastructureReady"] = bool(init.get("infrastructureProvisioned", False))
    if st.get("conditions") is not None:
        out["v1beta2"] = {"conditions": copy.deepcopy(st["conditions"])}
    dst["status"] = out
    _marshal(hub, dst)
    return dst


# --------------------------------------------------------------------------------------------
# MachineSet and MachineDeployment
# --------------------------------------------------------------------------------------------

def _replica_status_up(st, out, dep, extra_dep):
    """Convert_v1beta1_Machine{Set,Deployment}Status_To_v1beta2: new counters from v1beta2, old ones deprecated."""
    v1b2 = _obj(st.get("v1beta2"))
    for k in ("readyReplicas", "availableReplicas", "upToDateReplicas"):
        if v1b2.get(k) is not None:
            out[k] = v1b2[k]
    for k in extra_dep:
        dep[k] = st.get(k, 0)


def _replica_status_down(st, out, extra_dep):
    dep = _obj(_dig(st, "deprecated", "v1beta1"))
    for k in extra_dep:
        out[k] = dep.get(k, 0)
    if (st.get("conditions") is not None or st.get("readyReplicas") is not None or
            st.get("availableReplicas") is not None or st.get("upToDateReplicas") is not None):
        v1b2 = {}
        _put(v1b2, "conditions", copy.deepcopy(st.get("conditions")))
        for k in ("readyReplicas", "availableReplicas", "upToDateReplicas"):
            if st.get(k) is not None:
                v1b2[k] = st[k]
        out["v1beta2"] = v1b2


def _machineset_up(src, ok, restored):
    dst = _envelope(src, "%s/%s" % (CAPI_GROUP, HUB))
    spec = copy.deepcopy(_obj(src.get("spec")))
    spec["template"] = _template_up(spec.get("template"))
    msr = spec.pop("minReadySeconds", 0)
    _put(spec["template"]["spec"], "minReadySeconds", msr or None)
    if "deletePolicy" in spec:
        _put(spec, "deletion", {"order": spec.pop("deletePolicy")} if spec.get("deletePolicy") else None)
    mns = spec.pop("machineNamingStrategy", None)
    if mns is not None:
        _put(spec, "machineNaming", {"template": mns.get("template")} if mns.get("template") else None)
    if ok:
        _put(spec["template"]["spec"], "taints", _dig(restored, "spec", "template", "spec", "taints"))
    dst["spec"] = spec
    st = _obj(src.get("status"))
    out = {}
    _, dep = _status_up(st, out, ("failureReason", "failureMessage"))
    _replica_status_up(st, out, dep, ("availableReplicas", "fullyLabeledReplicas", "readyReplicas"))
    for k in ("selector", "replicas", "observedGeneration"):
        if st.get(k) is not None:
            out[k] = st[k]
    _put(out, "deprecated", {"v1beta1": dep} if dep else None)
    _put(dst, "status", out)
    return dst


def _machineset_down(hub, crd_for):
    ns = _obj(hub.get("metadata")).get("namespace", "")
    dst = _envelope(hub, "%s/%s" % (CAPI_GROUP, SPOKE))
    spec = copy.deepcopy(_obj(hub.get("spec")))
    tspec = _obj(_dig(spec, "template", "spec"))
    msr = tspec.get("minReadySeconds")
    spec["template"] = _template_down(spec.get("template"), ns, crd_for)
    _put_nz(spec, "minReadySeconds", msr or 0)
    order = _obj(spec.pop("deletion", None)).get("order")
    _put(spec, "deletePolicy", order)
    mn = _obj(spec.pop("machineNaming", None))
    _put(spec, "machineNamingStrategy", {"template": mn["template"]} if mn.get("template") else None)
    dst["spec"] = spec
    st = _obj(hub.get("status"))
    out = {}
    _status_down(st, out, ("failureReason", "failureMessage"))
    # v1beta1 MachineSetStatus: the counters carry no omitempty.
    out["replicas"] = st.get("replicas", 0) or 0
    _replica_status_down(st, out, ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"))
    for k in ("selector", "observedGeneration"):
        _put(out, k, st.get(k))
    dst["status"] = out
    _marshal(hub, dst)
    return dst


def _machinedeployment_up(src, ok, restored):
    dst = _envelope(src, "%s/%s" % (CAPI_GROUP, HUB))
    spec = copy.deepcopy(_obj(src.get("spec")))
    spec["template"] = _template_up(spec.get("template"))
    msr = spec.pop("minReadySeconds", None)
    _put(spec["template"]["spec"], "minReadySeconds", msr)
    # Convert_v1beta1_MachineDeploymentSpec_To_v1beta2_MachineDeploymentSpec
    spec.pop("progressDeadlineSeconds", None)
    spec.pop("revisionHistoryLimit", None)
    rollout = {}
    strategy = spec.pop("strategy", None)
    deletion, remediation = {}, {}
    if isinstance(strategy, dict):
        rs = {}
        _put(rs, "type", strategy.get("type"))
        ru = _obj(strategy.get("rollingUpdate"))
        if ru:
            rru = {}
            _put(rru, "maxUnavailable", ru.get("maxUnavailable"))
            _put(rru, "maxSurge", ru.get("maxSurge"))
            _put(rs, "rollingUpdate", rru)
            _put(deletion, "order", ru.get("deletePolicy"))
        _put(remediation, "maxInFlight", _dig(strategy, "remediation", "maxInFlight"))
        _put(rollout, "strategy", rs)
    _put(rollout, "after", spec.pop("rolloutAfter", None))
    _put(spec, "rollout", rollout)
    _put(spec, "deletion", deletion)
    _put(spec, "remediation", remediation)
    mns = spec.pop("machineNamingStrategy", None)
    if mns is not None:
        _put(spec, "machineNaming", {"template": mns.get("template")} if mns.get("template") else None)
    _put(spec, "paused", _bool_to_ptr(spec.get("paused", False), ok, _dig(restored, "spec", "paused")))
    if ok:
        _put(spec["template"]["spec"], "taints", _dig(restored, "spec", "template", "spec", "taints"))
    dst["spec"] = spec
    st = _obj(src.get("status"))
    out = {}
    _, dep = _status_up(st, out)
    _replica_status_up(st, out, dep, ("availableReplicas", "unavailableReplicas", "updatedReplicas",
                                      "readyReplicas"))
    for k in ("selector", "replicas", "observedGeneration", "phase"):
        if st.get(k) is not None:
            out[k] = st[k]
    _put(out, "deprecated", {"v1beta1": dep} if dep else None)
    _put(dst, "status", out)
    return dst


def _machinedeployment_down(hub, crd_for):
    ns = _obj(hub.get("metadata")).get("namespace", "")
    dst = _envelope(hub, "%s/%s" % (CAPI_GROUP, SPOKE))
    spec = copy.deepcopy(_obj(hub.get("spec")))
    msr = _dig(spec, "template", "spec", "minReadySeconds")
    spec["template"] = _template_down(spec.get("template"), ns, crd_for)
    _put(spec, "minReadySeconds", msr)
    rollout = _obj(spec.pop("rollout", None))
    deletion = _obj(spec.pop("deletion", None))
    remediation = _obj(spec.pop("remediation", None))
    strategy = None
    rs = _obj(rollout.get("strategy"))
    if rs:
        strategy = {}
        _put(strategy, "type", rs.get("type"))
        ru = _obj(rs.get("rollingUpdate"))
        if ru:
            strategy["rollingUpdate"] = {}
            _put(strategy["rollingUpdate"], "maxUnavailable", ru.get("maxUnavailable"))
            _put(strategy["rollingUpdate"], "maxSurge", ru.get("maxSurge"))
    if deletion.get("order"):
        strategy = strategy if strategy is not None else {}
        strategy.setdefault("rollingUpdate", {})["deletePolicy"] = deletion["order"]
    if remediation.get("maxInFlight") is not None:
        strategy = strategy if strategy is not None else {}
        strategy.setdefault("remediation", {})["maxInFlight"] = remediation["maxInFlight"]
    if strategy is not None:
        spec["strategy"] = strategy
    _put(spec, "rolloutAfter", rollout.get("after"))
    mn = _obj(spec.pop("machineNaming", None))
    _put(spec, "machineNamingStrategy", {"template": mn["template"]} if mn.get("template") else None)
    _put_nz(spec, "paused", spec.get("paused"))
    dst["spec"] = spec
    st = _obj(hub.get("status"))
    out = {}
    _status_down(st, out)
    out["replicas"] = st.get("replicas", 0) or 0
    _replica_status_down(st, out, ("updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"))
    for k in ("selector", "observedGeneration", "phase"):
        _put(out, k, st.get(k))
    dst["status"] = out
    _marshal(hub, dst)
    return dst


# --------------------------------------------------------------------------------------------
# KubeadmControlPlane (api/controlplane/kubeadm/v1beta1/conversion.go)
# --------------------------------------------------------------------------------------------

def _kcp_up(src, ok, restored):
    dst = _envelope(src, "%s/%s" % (CP_GROUP, HUB))
    spec = copy.deepcopy(_obj(src.get("spec")))
    mt = _obj(spec.pop("machineTemplate", None))
    new_mt = {}
    _put(new_mt, "metadata", mt.get("metadata"))
    mts = {}
    _put(mts, "infrastructureRef", _ref_to_hub(mt.get("infrastructureRef")))
    _put(mts, "readinessGates", mt.get("readinessGates"))
    deletion = {}
    for old, new in _DELETION_TIMEOUTS:
        _put(deletion, new, _to_seconds(mt.get(old)))
    _put(mts, "deletion", deletion)
    _put(new_mt, "spec", mts)
    _put(spec, "machineTemplate", new_mt)
    rollout = {}
    rb = spec.pop("rolloutBefore", None)
    if isinstance(rb, dict) and rb.get("certificatesExpiryDays") is not None:
        rollout["before"] = {"certificatesExpiryDays": rb["certificatesExpiryDays"]}
    _put(rollout, "after", spec.pop("rolloutAfter", None))
    rs = spec.pop("rolloutStrategy", None)
    if isinstance(rs, dict):
        strategy = {}
        _put(strategy, "type", rs.get("type"))
        ms = _dig(rs, "rollingUpdate", "maxSurge")
        if ms is not None:
            strategy["rollingUpdate"] = {"maxSurge": ms}
        _put(rollout, "strategy", strategy)
    _put(spec, "rollout", rollout)
    rem = spec.pop("remediationStrategy", None)
    if isinstance(rem, dict):
        r = {}
        _put(r, "maxRetry", rem.get("maxRetry"))
        _put(r, "minHealthyPeriodSeconds", _to_seconds(rem.get("minHealthyPeriod")))
        _put(r, "retryPeriodSeconds", _int32_to_ptr(_to_seconds(rem.get("retryPeriod", "0s")) or 0, ok,
                                                   _dig(restored, "spec", "remediation", "retryPeriodSeconds")))
        _put(spec, "remediation", r)
    mns = spec.pop("machineNamingStrategy", None)
    if isinstance(mns, dict):
        _put(spec, "machineNaming", {"template": mns["template"]} if mns.get("template") else None)
    _put(spec, "kubeadmConfigSpec", _kubeadm_spec(spec.get("kubeadmConfigSpec"), True,
                                                  _dig(restored, "spec", "kubeadmConfigSpec") if ok else None))
    dst["spec"] = spec

    st = _obj(src.get("status"))
    out = {}
    _, dep = _status_up(st, out, ("failureReason", "failureMessage"))
    v1b2 = _obj(st.get("v1beta2"))
    for k in ("readyReplicas", "availableReplicas", "upToDateReplicas"):
        if v1b2.get(k) is not None:
            out[k] = v1b2[k]
    for k in ("updatedReplicas", "readyReplicas", "unavailableReplicas"):
        dep[k] = st.get(k, 0)
    for k in ("selector", "version", "observedGeneration"):
        _put(out, k, st.get(k))
    if "replicas" in st:
        out["replicas"] = st["replicas"]
    lr = st.get("lastRemediation")
    if isinstance(lr, dict):
        lr = dict(lr)
        if "timestamp" in lr:
            lr["time"] = lr.pop("timestamp")
        _put(out, "lastRemediation", lr)
    init = {}
    _put(init, "controlPlaneInitialized",
         _bool_to_ptr(st.get("initialized", False), ok, _dig(restored, "status", "initialization",
                                                             "controlPlaneInitialized")))
    _put(out, "initialization", init)
    out["deprecated"] = {"v1beta1": dep}
    dst["status"] = out
    return dst


def _kcp_down(hub, crd_for):
    ns = _obj(hub.get("metadata")).get("namespace", "")
    dst = _envelope(hub, "%s/%s" % (CP_GROUP, SPOKE))
    spec = copy.deepcopy(_obj(hub.get("spec")))
    mt = _obj(spec.pop("machineTemplate", None))
    mts = _obj(mt.get("spec"))
    old_mt = {}
    _put(old_mt, "metadata", mt.get("metadata"))
    # KubeadmControlPlaneMachineTemplate.InfrastructureRef is a non-pointer corev1.ObjectReference.
    old_mt["infrastructureRef"] = _ref_from_hub(mts.get("infrastructureRef"), ns, crd_for) \
        if _defined(mts.get("infrastructureRef")) else {}
    _put(old_mt, "readinessGates", mts.get("readinessGates"))
    deletion = _obj(mts.get("deletion"))
    for old, new in _DELETION_TIMEOUTS:
        _put(old_mt, old, _from_seconds(deletion.get(new)))
    spec["machineTemplate"] = old_mt
    rollout = _obj(spec.pop("rollout", None))
    if _obj(rollout.get("before")):
        spec["rolloutBefore"] = {"certificatesExpiryDays": rollout["before"].get("certificatesExpiryDays", 0)}
    _put(spec, "rolloutAfter", rollout.get("after"))
    rs = _obj(rollout.get("strategy"))
    if rs:
        strategy = {}
        _put(strategy, "type", rs.get("type"))
        ms = _dig(rs, "rollingUpdate", "maxSurge")
        if ms is not None:
            strategy["rollingUpdate"] = {"maxSurge": ms}
        spec["rolloutStrategy"] = strategy
    rem = _obj(spec.pop("remediation", None))
    if rem:
        r = {}
        _put(r, "maxRetry", rem.get("maxRetry"))
        _put(r, "minHealthyPeriod", _from_seconds(rem.get("minHealthyPeriodSeconds")))
        r["retryPeriod"] = _from_seconds(rem.get("retryPeriodSeconds")) or "0s"
        spec["remediationStrategy"] = r
    mn = _obj(spec.pop("machineNaming", None))
    _put(spec, "machineNamingStrategy", {"template": mn["template"]} if mn.get("template") else None)
    # v1beta1 KubeadmConfigSpec is a non-pointer struct: always there.
    spec["kubeadmConfigSpec"] = _kubeadm_spec(spec.get("kubeadmConfigSpec"), False)
    dst["spec"] = spec

    st = _obj(hub.get("status"))
    out = {}
    dep = _status_down(st, out, ("failureReason", "failureMessage"))
    # v1beta1 KubeadmControlPlaneStatus: replicas, the counters, initialized and ready carry no omitempty.
    out["replicas"] = st.get("replicas", 0) or 0
    for k in ("updatedReplicas", "readyReplicas", "unavailableReplicas"):
        out[k] = dep.get(k, 0)
    out["initialized"] = bool(_dig(st, "initialization", "controlPlaneInitialized"))
    out["ready"] = out["readyReplicas"] > 0
    for k in ("selector", "version", "observedGeneration"):  # dropEmptyStringsKubeadmControlPlaneStatus
        _put(out, k, st.get(k))
    lr = st.get("lastRemediation")
    if isinstance(lr, dict) and lr:
        lr = dict(lr)
        if "time" in lr:
            lr["timestamp"] = lr.pop("time")
        out["lastRemediation"] = lr
    if (st.get("conditions") is not None or st.get("readyReplicas") is not None or
            st.get("availableReplicas") is not None or st.get("upToDateReplicas") is not None):
        v1b2 = {}
        _put(v1b2, "conditions", copy.deepcopy(st.get("conditions")))
        for k in ("readyReplicas", "availableReplicas", "upToDateReplicas"):
            if st.get(k) is not None:
                v1b2[k] = st[k]
        out["v1beta2"] = v1b2
    dst["status"] = out
    _marshal(hub, dst)
    return dst


# --------------------------------------------------------------------------------------------
# KubeadmConfig and KubeadmConfigTemplate
# --------------------------------------------------------------------------------------------

def _kubeadmconfig_up(src, ok, restored):
    dst = _envelope(src, "%s/%s" % (BOOTSTRAP_GROUP, HUB))
    _put(dst, "spec", _kubeadm_spec(src.get("spec"), True, _dig(restored, "spec") if ok else None))
    st = _obj(src.get("status"))
    out = {}
    _, dep = _status_up(st, out, ("failureReason", "failureMessage"))
    for k in ("dataSecretName", "observedGeneration"):
        _put(out, k, st.get(k))
    init = {}
    _put(init, "dataSecretCreated", _bool_to_ptr(st.get("ready", False), ok,
                                                 _dig(restored, "status", "initialization", "dataSecretCreated")))
    _put(out, "initialization", init)
    _put(out, "deprecated", {"v1beta1": dep} if dep else None)
    _put(dst, "status", out)
    return dst


def _kubeadmconfig_down(hub, crd_for):
    dst = _envelope(hub, "%s/%s" % (BOOTSTRAP_GROUP, SPOKE))
    dst["spec"] = _kubeadm_spec(hub.get("spec"), False)
    st = _obj(hub.get("status"))
    out = {}
    _status_down(st, out, ("failureReason", "failureMessage"))
    out["ready"] = bool(_dig(st, "initialization", "dataSecretCreated"))  # no omitempty
    for k in ("dataSecretName", "observedGeneration"):
        _put(out, k, st.get(k))
    if st.get("conditions") is not None:
        out["v1beta2"] = {"conditions": copy.deepcopy(st["conditions"])}
    dst["status"] = out
    _marshal(hub, dst)
    return dst


def _kct_up(src, ok, restored):
    dst = _envelope(src, "%s/%s" % (BOOTSTRAP_GROUP, HUB))
    spec = copy.deepcopy(_obj(src.get("spec")))
    tmpl = _obj(spec.get("template"))
    tmpl["spec"] = _kubeadm_spec(tmpl.get("spec"), True,
                                 _dig(restored, "spec", "template", "spec") if ok else None)
    _put(tmpl, "spec", tmpl["spec"])
    spec["template"] = tmpl
    dst["spec"] = spec
    return dst


def _kct_down(hub, crd_for):
    dst = _envelope(hub, "%s/%s" % (BOOTSTRAP_GROUP, SPOKE))
    spec = copy.deepcopy(_obj(hub.get("spec")))
    tmpl = _obj(spec.get("template"))
    tmpl["spec"] = _kubeadm_spec(tmpl.get("spec"), False)
    spec["template"] = tmpl
    dst["spec"] = spec
    _marshal(hub, dst)
    return dst


_UP = {"Cluster": _cluster_up, "Machine": _machine_up, "MachineSet": _machineset_up,
       "MachineDeployment": _machinedeployment_up, "KubeadmControlPlane": _kcp_up,
       "KubeadmConfig": _kubeadmconfig_up, "KubeadmConfigTemplate": _kct_up}
_DOWN = {"Cluster": _cluster_down, "Machine": _machine_down, "MachineSet": _machineset_down,
         "MachineDeployment": _machinedeployment_down, "KubeadmControlPlane": _kcp_down,
         "KubeadmConfig": _kubeadmconfig_down, "KubeadmConfigTemplate": _kct_down}


def _served_versions(crd):
    return [v.get("name") for v in _obj(crd.get("spec")).get("versions") or [] if v.get("served")]


def convert(obj, to_api_version, crd_for):
    """A new object at to_api_version (the conversion webhook's answer for one object)."""
    group, from_version = split_api_version(obj.get("apiVersion"))
    to_group, to_version = split_api_version(to_api_version)
    kind = obj.get("kind")
    if to_group != group:
        raise ConversionError("conversion from %s to %s: the groups differ" % (obj.get("apiVersion"), to_api_version))
    if (group, kind) in CONVERTED:
        known = (SPOKE, HUB)
        if from_version not in known or to_version not in known:
            raise ConversionError("failed to convert %s %s from %s to %s: no conversion for this version"
                                  % (kind, _obj(obj.get("metadata")).get("name", ""), from_version, to_version))
        if from_version == to_version:
            out = copy.deepcopy(obj)
            out["apiVersion"] = to_api_version
            return out
        src = copy.deepcopy(obj)
        if from_version == SPOKE:  # spoke -> hub (ConvertTo)
            ok, restored = _restore(src)
            return _UP[kind](src, ok, restored)
        return _DOWN[kind](src, crd_for)  # hub -> spoke (ConvertFrom)
    if group == INFRA_GROUP:
        # Infrastructure providers (CAPO here): NOT modelled. The answer keeps every field and only rewrites
        # apiVersion, for the versions the CRD serves; CAPO's real v1alpha7 <-> v1beta1 conversion renames and
        # restructures fields (and keeps lossy data in its own annotation).
        crd = crd_for(group, kind) if crd_for else None
        served = _served_versions(crd) if crd else [from_version, to_version]
        if to_version not in served:
            raise ConversionError("failed to convert %s to %s: version %s is not served"
                                  % (kind, to_api_version, to_version))
        out = copy.deepcopy(obj)
        out["apiVersion"] = to_api_version
        return out
    raise ConversionError("no conversion webhook for %s, Kind=%s" % (obj.get("apiVersion"), kind))


# --------------------------------------------------------------------------------------------
# defaulting webhooks (obj at the storage version, v1beta2)
# --------------------------------------------------------------------------------------------

def _v_prefix(d, key):
    v = d.get(key)
    if isinstance(v, str) and v != "" and not v.startswith("v"):
        d[key] = "v" + v


def _default_kcp(obj):
    # controlplane/kubeadm/internal/webhooks/kubeadm_control_plane.go defaultKubeadmControlPlaneSpec
    s = obj.setdefault("spec", {})
    if s.get("replicas") is None:
        s["replicas"] = 1
    v = s.get("version", "")
    if not isinstance(v, str) or not v.startswith("v"):
        s["version"] = "v" + (v or "")
    strategy = s.setdefault("rollout", {}).setdefault("strategy", {})
    strategy["type"] = "RollingUpdate"
    ru = strategy.setdefault("rollingUpdate", {})
    if ru.get("maxSurge") is None:
        ru["maxSurge"] = 1


def _default_md(obj, old):
    # internal/webhooks/machinedeployment.go Default
    md = obj.setdefault("metadata", {})
    s = obj.setdefault("spec", {})
    cluster = s.get("clusterName", "")
    md.setdefault("labels", {})[CLUSTER_NAME_LABEL] = cluster
    if s.get("replicas") is None:
        ann = md.get("annotations") or {}
        mn = ann.get("cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size")
        mx = ann.get("cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size")
        replicas = 1
        if mn is not None and mx is not None:
            try:
                lo, hi = int(mn), int(mx)
            except ValueError:
                raise ValueError("failed to caculate MachineDeployment replicas value: could not parse the value of "
                                 "the annotation")
            prev = _dig(old, "spec", "replicas") if old else None
            replicas = lo if old is None or prev is None or prev < lo else hi if prev > hi else prev
        s["replicas"] = replicas
    sel = s.setdefault("selector", {})
    sel.setdefault("matchLabels", {})
    strategy = s.setdefault("rollout", {}).setdefault("strategy", {})
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    tmpl = s.setdefault("template", {})
    tlabels = tmpl.setdefault("metadata", {}).setdefault("labels", {})
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = 1
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 0
    if not sel["matchLabels"] and not sel.get("matchExpressions"):
        sel["matchLabels"][DEPLOYMENT_NAME_LABEL] = md.get("name", "")
        tlabels[DEPLOYMENT_NAME_LABEL] = md.get("name", "")
    sel["matchLabels"][CLUSTER_NAME_LABEL] = cluster
    tlabels[CLUSTER_NAME_LABEL] = cluster
    _v_prefix(tmpl.setdefault("spec", {}), "version")


def _default_ms(obj, old):
    # internal/webhooks/machineset.go Default
    md = obj.setdefault("metadata", {})
    s = obj.setdefault("spec", {})
    cluster = s.get("clusterName", "")
    md.setdefault("labels", {})[CLUSTER_NAME_LABEL] = cluster
    if s.get("replicas") is None:
        s["replicas"] = 1
    if not _obj(s.get("deletion")).get("order"):
        s.setdefault("deletion", {})["order"] = "Random"
    sel = s.setdefault("selector", {})
    sel.setdefault("matchLabels", {})
    tmpl = s.setdefault("template", {})
    tlabels = tmpl.setdefault("metadata", {}).setdefault("labels", {})
    if not sel["matchLabels"] and not sel.get("matchExpressions"):
        sel["matchLabels"]["cluster.x-k8s.io/set-name"] = md.get("name", "")
        tlabels["cluster.x-k8s.io/set-name"] = md.get("name", "")
    _v_prefix(tmpl.setdefault("spec", {}), "version")


def _default_machine(obj):
    # internal/webhooks/machine.go Default
    s = obj.setdefault("spec", {})
    obj.setdefault("metadata", {}).setdefault("labels", {})[CLUSTER_NAME_LABEL] = s.get("clusterName", "")
    _v_prefix(s, "version")
    deletion = s.setdefault("deletion", {})
    if deletion.get("nodeDeletionTimeoutSeconds") is None:
        deletion["nodeDeletionTimeoutSeconds"] = 10  # defaultNodeDeletionTimeoutSeconds


def default(obj, crd_for, old=None):
    """The defaulting webhook of obj's kind, on obj (at v1beta2) in place. Returns warnings (none here)."""
    group, _ = split_api_version(obj.get("apiVersion"))
    kind = obj.get("kind")
    if (group, kind) == (CP_GROUP, "KubeadmControlPlane"):
        _default_kcp(obj)
    elif (group, kind) == (CAPI_GROUP, "MachineDeployment"):
        _default_md(obj, old)
    elif (group, kind) == (CAPI_GROUP, "MachineSet"):
        _default_ms(obj, old)
    elif (group, kind) == (CAPI_GROUP, "Machine"):
        _default_machine(obj)
    return []


# --------------------------------------------------------------------------------------------
# validating webhooks (obj and old at v1beta2)
# --------------------------------------------------------------------------------------------

# util/version KubeSemver
_KUBE_SEMVER = re.compile(r"^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-0-9a-zA-Z_\.+]*)?$")
_SEMVER_TOLERANT = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?([-+].*)?$")


def _parse_tolerant(v):
    """blang/semver ParseTolerant, enough for Kubernetes versions: (major, minor, patch) or None."""
    m = _SEMVER_TOLERANT.match((v or "").strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def _json_merge_diff_paths(old, new, prefix=()):
    """The paths jsonpatch.CreateMergePatch(old, new) touches (as the KCP webhook's paths() lists them)."""
    out = []
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [list(prefix)] if old != new else []
    for k in set(old) | set(new):
        if k not in new or k not in old:
            if k in new and isinstance(new[k], dict):
                out.extend(_json_merge_diff_paths({}, new[k], prefix + (k,)) or [list(prefix + (k,))])
            else:
                out.append(list(prefix + (k,)))
        elif old[k] != new[k]:
            if isinstance(old[k], dict) and isinstance(new[k], dict):
                out.extend(_json_merge_diff_paths(old[k], new[k], prefix + (k,)))
            else:
                out.append(list(prefix + (k,)))
    return out


_KCP_ALLOWED = [p.split(".") for p in (
    "metadata.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.etcd", "spec.kubeadmConfigSpec.clusterConfiguration.etcd.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.etcd.local", "spec.kubeadmConfigSpec.clusterConfiguration.etcd.local.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.etcd.external.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.dns", "spec.kubeadmConfigSpec.clusterConfiguration.dns.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.imageRepository",
    "spec.kubeadmConfigSpec.clusterConfiguration.featureGates",
    "spec.kubeadmConfigSpec.clusterConfiguration.featureGates.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.apiServer", "spec.kubeadmConfigSpec.clusterConfiguration.apiServer.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.controllerManager",
    "spec.kubeadmConfigSpec.clusterConfiguration.controllerManager.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.scheduler", "spec.kubeadmConfigSpec.clusterConfiguration.scheduler.*",
    "spec.kubeadmConfigSpec.clusterConfiguration.certificateValidityPeriodDays",
    "spec.kubeadmConfigSpec.initConfiguration.nodeRegistration",
    "spec.kubeadmConfigSpec.initConfiguration.nodeRegistration.*",
    "spec.kubeadmConfigSpec.initConfiguration.patches.directory", "spec.kubeadmConfigSpec.initConfiguration.patches",
    "spec.kubeadmConfigSpec.initConfiguration.skipPhases", "spec.kubeadmConfigSpec.initConfiguration.bootstrapTokens",
    "spec.kubeadmConfigSpec.initConfiguration.localAPIEndpoint",
    "spec.kubeadmConfigSpec.initConfiguration.localAPIEndpoint.*",
    "spec.kubeadmConfigSpec.initConfiguration.timeouts", "spec.kubeadmConfigSpec.initConfiguration.timeouts.*",
    "spec.kubeadmConfigSpec.joinConfiguration.nodeRegistration",
    "spec.kubeadmConfigSpec.joinConfiguration.nodeRegistration.*",
    "spec.kubeadmConfigSpec.joinConfiguration.patches.directory", "spec.kubeadmConfigSpec.joinConfiguration.patches",
    "spec.kubeadmConfigSpec.joinConfiguration.skipPhases", "spec.kubeadmConfigSpec.joinConfiguration.caCertPath",
    "spec.kubeadmConfigSpec.joinConfiguration.controlPlane", "spec.kubeadmConfigSpec.joinConfiguration.controlPlane.*",
    "spec.kubeadmConfigSpec.joinConfiguration.discovery", "spec.kubeadmConfigSpec.joinConfiguration.discovery.*",
    "spec.kubeadmConfigSpec.joinConfiguration.timeouts", "spec.kubeadmConfigSpec.joinConfiguration.timeouts.*",
    "spec.kubeadmConfigSpec.bootCommands", "spec.kubeadmConfigSpec.preKubeadmCommands",
    "spec.kubeadmConfigSpec.postKubeadmCommands", "spec.kubeadmConfigSpec.files", "spec.kubeadmConfigSpec.verbosity",
    "spec.kubeadmConfigSpec.users", "spec.kubeadmConfigSpec.ntp", "spec.kubeadmConfigSpec.ntp.*",
    "spec.kubeadmConfigSpec.ignition", "spec.kubeadmConfigSpec.ignition.*", "spec.kubeadmConfigSpec.diskSetup",
    "spec.kubeadmConfigSpec.diskSetup.*", "spec.kubeadmConfigSpec.format", "spec.kubeadmConfigSpec.mounts",
    "spec.machineTemplate.metadata", "spec.machineTemplate.metadata.*",
    "spec.machineTemplate.spec", "spec.machineTemplate.spec.*",
    "spec.replicas", "spec.version", "spec.remediation", "spec.remediation.*", "spec.machineNaming",
    "spec.machineNaming.*", "spec.rollout", "spec.rollout.*")]


def _paths_match(allowed, path):
    # kubeadm_control_plane.go pathsMatch
    if not allowed or not path:
        return False
    i = 0
    for i in range(len(path)):
        if i > len(allowed) - 1:
            return False
        if allowed[i] == "*":
            return True
        if path[i] != allowed[i]:
            return False
    return i >= len(allowed) - 1


def _validate_kcp(obj, old):
    errs = []
    s = _obj(obj.get("spec"))
    replicas = s.get("replicas")
    if replicas is None:
        errs.append(("spec.replicas", "FieldValueRequired", "Required value: is required"))
    elif replicas <= 0:
        errs.append(("spec.replicas", "FieldValueForbidden", "Forbidden: cannot be less than or equal to 0"))
    external_etcd = _dig(s, "kubeadmConfigSpec", "clusterConfiguration", "etcd", "external") is not None
    if not external_etcd and replicas is not None and replicas % 2 == 0:
        errs.append(("spec.replicas", "FieldValueForbidden", "Forbidden: cannot be an even number when etcd is stacked"))
    ref = _obj(_dig(s, "machineTemplate", "spec", "infrastructureRef"))
    for f in ("apiGroup", "kind", "name"):
        if not ref.get(f):
            errs.append(("spec.machineTemplate.infrastructure." + f, "FieldValueInvalid",
                         'Invalid value: "": cannot be empty'))
    version = s.get("version", "")
    if not _KUBE_SEMVER.match(version or ""):
        errs.append(("spec.version", "FieldValueInvalid",
                     "Invalid value: %s: must be a valid semantic version" % json.dumps(version)))
    strategy = _obj(_dig(s, "rollout", "strategy"))
    if strategy:
        if strategy.get("type") != "RollingUpdate":
            errs.append(("spec.rollout.strategy.type", "FieldValueRequired",
                         "Required value: only RollingUpdate is supported"))
        ms = _dig(strategy, "rollingUpdate", "maxSurge")
        if ms is not None:
            iv = ms if isinstance(ms, int) else 0  # intstr IntValue() of a string is its integer parse or 0
            if isinstance(ms, str):
                try:
                    iv = int(ms)
                except ValueError:
                    iv = 0
            if iv == 0 and replicas is not None and replicas < 3:
                errs.append(("spec.rollout.strategy.rollingUpdate", "FieldValueRequired",
                             "Required value: when KubeadmControlPlane is configured to scale-in, replica count needs "
                             "to be at least 3"))
            if iv not in (0, 1):
                errs.append(("spec.rollout.strategy.rollingUpdate.maxSurge", "FieldValueRequired",
                             "Required value: value must be 1 or 0"))
    if old is not None:
        for path in _json_merge_diff_paths(old, obj):
            if not path or path[0] in ("apiVersion", "kind", "status"):
                continue
            if not any(_paths_match(a, path) for a in _KCP_ALLOWED):
                errs.append((".".join(path), "FieldValueForbidden", "Forbidden: cannot be modified"))
        prev, new = _dig(old, "spec", "version") or "", version or ""
        frm, to = _parse_tolerant(prev), _parse_tolerant(new)
        if frm is None:
            errs.append(("spec.version", "InternalError",
                         "Internal error: failed to parse current kubeadmcontrolplane version: %s" % prev))
        elif to is None:
            errs.append(("spec.version", "InternalError",
                         "Internal error: failed to parse updated kubeadmcontrolplane version: %s" % new))
        elif to >= (frm[0], frm[1] + 2, 0):
            # validateVersion: upgrading at most one minor version (ceil = major.minor+2.0)
            errs.append(("spec.version", "FieldValueForbidden",
                         "Forbidden: cannot update Kubernetes version from %s to %s" % (prev, new)))
    return errs


def _validate_machine_common(spec, path, old_spec):
    errs = []
    if old_spec is not None and old_spec.get("clusterName") != spec.get("clusterName"):
        errs.append((path + "clusterName", "FieldValueForbidden", "Forbidden: field is immutable"))
    return errs


def _validate_md(obj, old):
    errs = []
    s = _obj(obj.get("spec"))
    tspec = _obj(_dig(s, "template", "spec"))
    boot = _obj(tspec.get("bootstrap"))
    if not _defined(boot.get("configRef")) and boot.get("dataSecretName") is None:
        errs.append(("spec.template.spec.bootstrap", "FieldValueRequired",
                     "Required value: expected either spec.template.spec.bootstrap.dataSecretName or "
                     "spec.template.spec.bootstrap.configRef to be populated"))
    sel = _obj(_dig(s, "selector", "matchLabels"))
    tlabels = _obj(_dig(s, "template", "metadata", "labels"))
    if any(tlabels.get(k) != v for k, v in sel.items()):
        selector = ",".join("%s=%s" % kv for kv in sorted(sel.items()))
        errs.append(("spec.template.metadata.labels", "FieldValueForbidden",
                     "Forbidden: must match spec.selector %s" % json.dumps(selector)))
    errs += _validate_machine_common(s, "spec.", _obj(old.get("spec")) if old else None)
    if s.get("clusterName") != tspec.get("clusterName"):
        errs.append(("spec.clusterName", "FieldValueInvalid",
                     "Invalid value: %s: spec.clusterName and spec.template.spec.clusterName must be set to the same "
                     "value" % json.dumps(s.get("clusterName", ""))))
    v = tspec.get("version")
    if v and not _KUBE_SEMVER.match(v):
        errs.append(("spec.template.spec.version", "FieldValueInvalid",
                     "Invalid value: %s: must be a valid semantic version" % json.dumps(v)))
    return errs


def _validate_ms(obj, old):
    errs = []
    s = _obj(obj.get("spec"))
    tspec = _obj(_dig(s, "template", "spec"))
    errs += _validate_machine_common(s, "spec.", _obj(old.get("spec")) if old else None)
    v = tspec.get("version")
    if v and not _KUBE_SEMVER.match(v):
        errs.append(("spec.template.spec.version", "FieldValueInvalid",
                     "Invalid value: %s: must be a valid semantic version" % json.dumps(v)))
    return errs


def _validate_machine(obj, old):
    errs = []
    s = _obj(obj.get("spec"))
    boot = _obj(s.get("bootstrap"))
    if not _defined(boot.get("configRef")) and boot.get("dataSecretName") is None:
        errs.append(("spec.bootstrap", "FieldValueRequired",
                     "Required value: expected either spec.bootstrap.dataSecretName or spec.bootstrap.configRef to "
                     "be populated"))
    errs += _validate_machine_common(s, "spec.", _obj(old.get("spec")) if old else None)
    v = s.get("version")
    if v and not _KUBE_SEMVER.match(v):
        errs.append(("spec.version", "FieldValueInvalid",
                     "Invalid value: %s: must be a valid semantic version" % json.dumps(v)))
    return errs


def validate(obj, old, crd_for):
    """The validating webhook of obj's kind (create: old is None). [(field path, reason type, message)]."""
    group, _ = split_api_version(obj.get("apiVersion"))
    kind = obj.get("kind")
    if (group, kind) == (CP_GROUP, "KubeadmControlPlane"):
        return _validate_kcp(obj, old)
    if (group, kind) == (CAPI_GROUP, "MachineDeployment"):
        return _validate_md(obj, old)
    if (group, kind) == (CAPI_GROUP, "MachineSet"):
        return _validate_ms(obj, old)
    if (group, kind) == (CAPI_GROUP, "Machine"):
        return _validate_machine(obj, old)
    return []
