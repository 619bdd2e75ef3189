#!/usr/bin/env python3
"""A fake Kubernetes API server for metalsync's tests.

No kube-apiserver can run on the test machines, so this single file stands in
for one. It is NOT Kubernetes: it implements the REST shapes metalsync and
kubectl use (discovery, CRUD, merge/JSON patches, server-side apply with field
managers and conflicts, the status subresource, finalizers, watch, tables) as
faithfully as a test needs, and tests/scripts/test_fake_kube_kubectl.sh runs
stock kubectl against it to prove that. See README.md next to it for what is
knowingly different.

Usage:
  python3 fake_apiserver.py --listen 127.0.0.1:0 [--port-file FILE]
      [--crds FILE_OR_DIR]... [--tls-cert PEM --tls-key PEM] [--client-ca PEM]
      [--token TOKEN] [--crd-establish-delay SECONDS] [--request-log FILE]

Test-only endpoints (never authenticated): GET /_fake/requests,
POST /_fake/reset-requests, GET /_fake/objects; and fault injection:
POST /_fake/inject {"method": "PATCH", "path": "/apis/...", "code": 429|500|503|504,
"retryAfterSeconds": 1, "delaySeconds": 2.5, "count": 1 (-1: until reset)}, where
"path" is a prefix, code 0 only delays; POST /_fake/reset-injections.
"""

import argparse
import base64
import copy
import datetime
import json
import os
import random
import re
import select
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

SERVER_VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.4-fake", "gitCommit": "0" * 40,
    "gitTreeState": "clean", "buildDate": "2025-04-22T00:00:00Z", "goVersion": "go1.23.8",
    "compiler": "gc", "platform": "linux/amd64",
}

MISSING = object()


# --------------------------------------------------------------------------
# YAML as the API server reads it (sigs.k8s.io/yaml): no timestamp objects.

class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml_all(text):
    return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s):
    try:
        return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def human_duration(seconds):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm" % m if s % 60 == 0 else "%dm%ds" % (m, s % 60)
    if m < 180:
        return "%dm" % m
    h = s // 3600
    if h < 8:
        return "%dh" % h if m % 60 == 0 else "%dh%dm" % (h, m % 60)
    if h < 48:
        return "%dh" % h
    if h < 24 * 8:
        return "%dd" % (h // 24) if h % 24 == 0 else "%dd%dh" % (h // 24, h % 24)
    if h < 24 * 365 * 2:
        return "%dd" % (h // 24)
    if h < 24 * 365 * 8:
        dy = (h // 24) % 365
        return "%dy" % (h // 24 // 365) if dy == 0 else "%dy%dd" % (h // 24 // 365, dy)
    return "%dy" % (h // 24 // 365)


def age_of(obj):
    t = parse_rfc3339(obj.get("metadata", {}).get("creationTimestamp"))
    if t is None:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())


def version_priority(v):
    """Kubernetes version ordering: GA > beta > alpha > others, higher first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    if m.group(2) is None:
        return (0, -major, 0, v)
    return (1 if m.group(2) == "beta" else 2, -major, -int(m.group(3)), v)


# --------------------------------------------------------------------------
# Errors: metav1.Status bodies with the real reasons and messages.

class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            s["details"] = self.details
        return s


class PageNotFound(ApiError):
    """A path nothing serves: a real server's mux answers plain text, not a Status
    (kubectl shows it as "the server could not find the requested resource")."""

    def __init__(self):
        super().__init__(404, "NotFound", "404 page not found")


def qualified(res):
    return res.resource if not res.group else "%s.%s" % (res.resource, res.group)


def err_not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.resource} if res.group else
                    {"name": name, "kind": res.resource})


def err_namespace_not_found(ns):
    return ApiError(404, "NotFound", 'namespaces "%s" not found' % ns, {"name": ns, "kind": "namespaces"})


def err_already_exists(res, name):
    d = {"name": name, "kind": res.resource}
    if res.group:
        d["group"] = res.group
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (qualified(res), name), d)


def err_conflict(res, name):
    d = {"name": name, "kind": res.resource}
    if res.group:
        d["group"] = res.group
    return ApiError(409, "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    "please apply your changes to the latest version and try again" % (qualified(res), name), d)


def err_invalid(res, name, causes):
    """causes: list of (field, type, message-without-field)."""
    kind = res.kind if not res.group else "%s.%s" % (res.kind, res.group)
    msgs = ["%s: %s" % (f, m) for f, _, m in causes]
    text = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    d = {"name": name, "kind": res.kind,
         "causes": [{"reason": t, "message": m, "field": f} for f, t, m in causes]}
    if res.group:
        d["group"] = res.group
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s' % (kind, name, text), d)


def err_bad_request(message):
    return ApiError(400, "BadRequest", message)


# --------------------------------------------------------------------------
# Resources the server serves.

class Resource:
    def __init__(self, group, versions, resource, singular, kind, namespaced, has_status=False,
                 short_names=(), categories=(), builtin=False, uses_generation=True, printer_columns=None,
                 list_kind=None, storage_version=None, verbs=None):
        self.group = group
        self.versions = list(versions)
        self.resource = resource
        self.singular = singular
        self.kind = kind
        self.list_kind = list_kind or kind + "List"
        self.namespaced = namespaced
        self.has_status = has_status
        self.short_names = list(short_names)
        self.categories = list(categories)
        self.builtin = builtin
        self.uses_generation = uses_generation
        self.printer_columns = printer_columns  # None: Name, Age
        self.storage_version = storage_version or self.versions[0]
        self.verbs = verbs or ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    def api_version(self, version):
        return version if not self.group else "%s/%s" % (self.group, version)


BUILTINS = [
    Resource("", ["v1"], "namespaces", "namespace", "Namespace", False, has_status=True, short_names=["ns"],
             builtin=True, uses_generation=False,
             verbs=["create", "delete", "get", "list", "patch", "update", "watch"]),
    Resource("", ["v1"], "secrets", "secret", "Secret", True, builtin=True, uses_generation=False),
    Resource("", ["v1"], "services", "service", "Service", True, has_status=True, short_names=["svc"],
             categories=["all"], builtin=True, uses_generation=False),
    Resource("", ["v1"], "configmaps", "configmap", "ConfigMap", True, short_names=["cm"], builtin=True,
             uses_generation=False),
    Resource("apiextensions.k8s.io", ["v1"], "customresourcedefinitions", "customresourcedefinition",
             "CustomResourceDefinition", False, has_status=True, short_names=["crd", "crds"], builtin=True,
             categories=["api-extensions"]),
]


# --------------------------------------------------------------------------
# Field paths (structured-merge-diff in miniature). A path is a tuple of
# FieldsV1 keys: ("f:spec", "f:replicas"), ("f:metadata", "f:finalizers", 'v:"x"').
# Maps are granular, lists atomic, except metadata.finalizers (a set) and
# metadata.ownerReferences (keyed by uid), as in ObjectMeta's schema.

SET_LISTS = {("f:metadata", "f:finalizers")}
KEYED_LISTS = {("f:metadata", "f:ownerReferences"): ("uid",)}
STRIPPED = {("f:apiVersion",), ("f:kind",), ("f:metadata", "f:name"), ("f:metadata", "f:namespace"),
            ("f:metadata", "f:uid"), ("f:metadata", "f:resourceVersion"), ("f:metadata", "f:generation"),
            ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:managedFields"),
            ("f:metadata", "f:selfLink"), ("f:metadata", "f:deletionTimestamp"),
            ("f:metadata", "f:deletionGracePeriodSeconds"), ("f:metadata", "f:generateName")}


def _jkey(v):
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


def item_key(keys, item):
    return "k:" + json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"), sort_keys=True)


def _walk(value, prefix, out, containers):
    """Add leaf paths of `value` (a map) under prefix; with containers, also map/list nodes."""
    for k, v in value.items():
        p = prefix + ("f:" + k,)
        if p in STRIPPED:
            continue
        if isinstance(v, dict) and v:
            if containers:
                out.add(p)
            _walk(v, p, out, containers)
        elif isinstance(v, list) and p in SET_LISTS:
            if containers or not v:
                out.add(p)
            for item in v:
                out.add(p + ("v:" + _jkey(item),))
        elif isinstance(v, list) and p in KEYED_LISTS and all(isinstance(i, dict) for i in v):
            if containers or not v:
                out.add(p)
            for item in v:
                ip = p + (item_key(KEYED_LISTS[p], item),)
                out.add(ip)
                _walk(item, ip, out, containers)
        else:
            out.add(p)


def field_set(obj, containers=False, status_only=None):
    """Paths of obj; status_only True keeps only .status, False drops .status, None keeps all."""
    out = set()
    _walk(obj, (), out, containers)
    if status_only is True:
        out = {p for p in out if p[0] == "f:status"}
    elif status_only is False:
        out = {p for p in out if p[0] != "f:status"}
    return out


def get_at(obj, path):
    cur = obj
    for el in path:
        if el.startswith("f:"):
            if not isinstance(cur, dict) or el[2:] not in cur:
                return MISSING
            cur = cur[el[2:]]
        elif el.startswith("v:"):
            want = json.loads(el[2:])
            if not isinstance(cur, list) or want not in cur:
                return MISSING
            cur = want
        elif el.startswith("k:"):
            want = json.loads(el[2:])
            if not isinstance(cur, list):
                return MISSING
            found = [i for i in cur if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())]
            if not found:
                return MISSING
            cur = found[0]
        else:
            return MISSING
    return cur


def remove_at(obj, path):
    parent = get_at(obj, path[:-1])
    el = path[-1]
    if parent is MISSING:
        return
    if el.startswith("f:") and isinstance(parent, dict):
        parent.pop(el[2:], None)
    elif el.startswith("v:") and isinstance(parent, list):
        want = json.loads(el[2:])
        parent[:] = [i for i in parent if i != want]
    elif el.startswith("k:") and isinstance(parent, list):
        want = json.loads(el[2:])
        parent[:] = [i for i in parent
                     if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))]


def path_string(path):
    """fieldpath.Path.String(): .spec.replicas, .metadata.finalizers[="x"], [uid="..."]."""
    out = ""
    for el in path:
        if el.startswith("f:"):
            out += "." + el[2:]
        elif el.startswith("v:"):
            out += "[=" + el[2:] + "]"
        elif el.startswith("k:"):
            kv = json.loads(el[2:])
            out += "[" + ",".join("%s=%s" % (k, json.dumps(v)) for k, v in sorted(kv.items())) + "]"
    return out


def set_to_fieldsv1(paths):
    root = {}
    for p in sorted(paths):
        node = root
        for el in p:
            node = node.setdefault(el, {})
        node["."] = node.get(".", {})
    # A node that is in the set and has children keeps ".": {}; a leaf is {}.

    def fix(node):
        out = {}
        for k, v in node.items():
            if k == ".":
                continue
            children = {kk: vv for kk, vv in v.items() if kk != "."}
            if not children:
                out[k] = {}
            else:
                fixed = fix(v)
                if "." in v:
                    fixed = dict([(".", {})] + list(fixed.items()))
                out[k] = fixed
        return out

    return fix(root)


def fieldsv1_to_set(f, prefix=()):
    out = set()
    for k, v in (f or {}).items():
        if k == ".":
            out.add(prefix)
            continue
        p = prefix + (k,)
        if not v:
            out.add(p)
        else:
            out |= fieldsv1_to_set(v, p)
    return out


# --------------------------------------------------------------------------
# Selectors.

def parse_label_selector(text):
    """Returns a predicate on a labels dict; raises ApiError on syntax errors."""
    reqs = []
    parts, depth, cur = [], 0, ""
    for ch in text or "":
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip() or parts:
        parts.append(cur)
    key_rx = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
    for raw in parts:
        p = raw.strip()
        if not p:
            raise err_bad_request("unable to parse requirement: found '', expected: identifier")
        m = re.fullmatch(r"(%s)\s+(in|notin)\s*\(([^)]*)\)" % key_rx, p)
        if m:
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            if m.group(2) == "in":
                reqs.append(lambda l, k=m.group(1), vs=vals: k in l and l[k] in vs)
            else:
                reqs.append(lambda l, k=m.group(1), vs=vals: k not in l or l[k] not in vs)
            continue
        m = re.fullmatch(r"(%s)\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)" % key_rx, p)
        if m:
            k, op, v = m.groups()
            if op == "!=":
                reqs.append(lambda l, k=k, v=v: l.get(k) != v)
            else:
                reqs.append(lambda l, k=k, v=v: k in l and l[k] == v)
            continue
        m = re.fullmatch(r"!\s*(%s)" % key_rx, p)
        if m:
            reqs.append(lambda l, k=m.group(1): k not in l)
            continue
        m = re.fullmatch(r"(%s)" % key_rx, p)
        if m:
            reqs.append(lambda l, k=m.group(1): k in l)
            continue
        m = re.fullmatch(r"(%s)\s*(>|<)\s*(-?\d+)" % key_rx, p)
        if m:
            k, op, n = m.group(1), m.group(2), int(m.group(3))

            def gtlt(l, k=k, op=op, n=n):
                try:
                    x = int(l[k])
                except (KeyError, ValueError):
                    return False
                return x > n if op == ">" else x < n
            reqs.append(gtlt)
            continue
        raise err_bad_request("unable to parse requirement: %s" % p)
    return lambda labels: all(r(labels or {}) for r in reqs)


def parse_field_selector(text):
    reqs = []
    for p in [x for x in (text or "").split(",") if x.strip()]:
        m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*(.*?)\s*", p)
        if not m:
            raise err_bad_request("invalid selector: '%s'; can't understand '%s'" % (text, p))
        field, op, value = m.groups()
        if field not in ("metadata.name", "metadata.namespace"):
            raise err_bad_request('"%s" is not a known field selector: only "metadata.name", "metadata.namespace"'
                                  % field)
        key = field.split(".")[1]
        if op == "!=":
            reqs.append(lambda o, k=key, v=value: o["metadata"].get(k, "") != v)
        else:
            reqs.append(lambda o, k=key, v=value: o["metadata"].get(k, "") == v)
    return lambda obj: all(r(obj) for r in reqs)


# --------------------------------------------------------------------------
# Patches.

def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _ptr(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise err_bad_request("json patch path must start with /: %s" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise err_bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")

    def container(d, parts):
        cur = d
        for p in parts[:-1]:
            if isinstance(cur, list):
                try:
                    cur = cur[int(p)]
                except (ValueError, IndexError):
                    raise ApiError(422, "Invalid", "jsonpatch: path not found: %s" % "/".join(parts))
            elif isinstance(cur, dict) and p in cur:
                cur = cur[p]
            else:
                raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request")
        return cur

    def get(d, parts):
        c = container(d, parts)
        last = parts[-1]
        if isinstance(c, list):
            return c[int(last)]
        if last not in c:
            raise ApiError(422, "Invalid", "jsonpatch: missing value at %s" % "/".join(parts))
        return c[last]

    def add(d, parts, v):
        if not parts:
            return v
        c = container(d, parts)
        last = parts[-1]
        if isinstance(c, list):
            c.insert(len(c) if last == "-" else int(last), v)
        else:
            c[last] = v
        return d

    def remove(d, parts):
        c = container(d, parts)
        last = parts[-1]
        if isinstance(c, list):
            return c.pop(int(last))
        if last not in c:
            raise ApiError(422, "Invalid",
                           "the server rejected our request due to an error in our request")
        return c.pop(last)

    for op in ops:
        kind, parts = op.get("op"), _ptr(op.get("path", ""))
        if kind == "add":
            doc = add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            remove(doc, parts)
        elif kind == "replace":
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                get(doc, parts)
                c = container(doc, parts)
                if isinstance(c, list):
                    c[int(parts[-1])] = copy.deepcopy(op.get("value"))
                else:
                    c[parts[-1]] = copy.deepcopy(op.get("value"))
        elif kind == "move":
            v = remove(doc, _ptr(op.get("from", "")))
            doc = add(doc, parts, v)
        elif kind == "copy":
            doc = add(doc, parts, copy.deepcopy(get(doc, _ptr(op.get("from", "")))))
        elif kind == "test":
            if get(doc, parts) != op.get("value"):
                raise ApiError(422, "Invalid", "testing value %s failed" % op.get("path"))
        else:
            raise err_bad_request("Unexpected kind: %s" % kind)
    return doc


# --------------------------------------------------------------------------
# The store.

class Store:
    def __init__(self, establish_delay):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 0
        self.establish_delay = establish_delay
        self.resources = {}  # (group, resource) -> Resource
        self.objects = {}    # (group, resource) -> {(ns, name): obj}
        self.events = []     # (rv:int, group, resource, type, obj)
        for r in BUILTINS:
            self.register(r)
        with self.lock:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self._create(self.resources[("", "namespaces")], "v1", None, {"metadata": {"name": ns}}, "kube-apiserver",
                             record=False)

    # --- registry ---------------------------------------------------------
    def register(self, res):
        self.resources[(res.group, res.resource)] = res
        self.objects.setdefault((res.group, res.resource), {})

    def find(self, group, version, resource):
        res = self.resources.get((group, resource))
        if res is None or version not in res.versions:
            return None
        return res

    def groups(self):
        out = {}
        for r in self.resources.values():
            for v in r.versions:
                out.setdefault(r.group, set()).add(v)
        return {g: sorted(vs, key=version_priority) for g, vs in out.items()}

    # --- helpers ----------------------------------------------------------
    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def emit(self, res, etype, obj):
        self.events.append((int(obj["metadata"]["resourceVersion"]), res.group, res.resource, etype,
                            copy.deepcopy(obj)))
        self.changed.notify_all()

    def bucket(self, res):
        return self.objects[(res.group, res.resource)]

    def check_namespace(self, res, ns, creating=False, name=""):
        if not res.namespaced:
            return
        nsobj = self.objects[("", "namespaces")].get((None, ns))
        if nsobj is None:
            raise err_namespace_not_found(ns)
        if creating and nsobj["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden",
                           "%s \"%s\" is forbidden: unable to create new content in namespace %s because it is "
                           "being terminated" % (qualified(res), name, ns),
                           {"name": name, "kind": res.resource, "group": res.group,
                            "causes": [{"reason": "NamespaceTerminating",
                                        "message": "namespace %s is being terminated" % ns,
                                        "field": "metadata.namespace"}]})

    def get(self, res, ns, name):
        # Reads never check that the namespace exists: a real server answers
        # "<kind> not found" (and lists come back empty); only creation does.
        obj = self.bucket(res).get((ns if res.namespaced else None, name))
        if obj is None:
            raise err_not_found(res, name)
        return obj

    def output(self, res, version, obj):
        out = {"apiVersion": res.api_version(version), "kind": res.kind}
        out.update((k, copy.deepcopy(v)) for k, v in obj.items() if k not in ("apiVersion", "kind"))
        return out

    # --- defaulting and validation (the parts of built-in strategies that matter)
    def prepare(self, res, obj, old=None):
        md = obj["metadata"]
        if res.resource == "secrets":
            sd = obj.pop("stringData", None)
            if sd:
                data = obj.setdefault("data", {}) or {}
                obj["data"] = data
                for k, v in sd.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
            if not obj.get("type"):
                obj["type"] = "Opaque"
        elif res.resource == "namespaces":
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            if old is None:
                obj["status"] = {"phase": "Active"}
        elif res.resource == "customresourcedefinitions":
            self.validate_crd(res, obj)

    def validate_crd(self, res, obj):
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        name = obj["metadata"]["name"]
        causes = []
        if not spec.get("group"):
            causes.append(("spec.group", "FieldValueRequired", "Required value"))
        if not names.get("plural"):
            causes.append(("spec.names.plural", "FieldValueRequired", "Required value"))
        if not names.get("kind"):
            causes.append(("spec.names.kind", "FieldValueRequired", "Required value"))
        if spec.get("group") and names.get("plural") and name != "%s.%s" % (names["plural"], spec["group"]):
            causes.append(("metadata.name", "FieldValueInvalid",
                           'Invalid value: "%s": must be spec.names.plural+"."+spec.group' % name))
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            causes.append(("spec.scope", "FieldValueNotSupported",
                           'Unsupported value: "%s": supported values: "Cluster", "Namespaced"' % spec.get("scope")))
        vers = spec.get("versions") or []
        if not vers:
            causes.append(("spec.versions", "FieldValueInvalid", "Invalid value: null: must have exactly one version marked as storage version"))
        elif sum(1 for v in vers if v.get("storage")) != 1:
            causes.append(("spec.versions", "FieldValueInvalid",
                           "Invalid value: %s: must have exactly one version marked as storage version"
                           % json.dumps(vers)[:80]))
        if causes:
            raise err_invalid(res, name, causes)

    # --- generation and status --------------------------------------------
    @staticmethod
    def spec_part(res, obj):
        return {k: v for k, v in obj.items()
                if k not in ("metadata", "apiVersion", "kind") and not (res.has_status and k == "status")}

    def finish_update(self, res, old, new, dry_run=False):
        """Server-owned metadata, generation, no-op detection. Returns the stored object."""
        md = new["metadata"]
        omd = old["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                  "resourceVersion"):
            if k in omd:
                md[k] = omd[k]
            else:
                md.pop(k, None)
        md["name"] = omd["name"]
        md.pop("selfLink", None)
        if res.namespaced:
            md["namespace"] = omd["namespace"]
        if omd.get("deletionTimestamp"):
            added = set(md.get("finalizers") or []) - set(omd.get("finalizers") or [])
            if added:
                raise err_invalid(res, md["name"], [("metadata.finalizers", "FieldValueForbidden",
                                                     "Forbidden: no new finalizers can be added if the object is "
                                                     "being deleted, found new finalizers %s"
                                                     % json.dumps(sorted(added)).replace(",", " "))])
        if res.uses_generation and self.spec_part(res, old) != self.spec_part(res, new):
            md["generation"] = omd.get("generation", 1) + 1
        if not md.get("finalizers"):
            md.pop("finalizers", None)
        for k in ("labels", "annotations", "ownerReferences"):
            if k in md and not md[k]:
                md.pop(k)
        if not md.get("managedFields"):
            md.pop("managedFields", None)
        if new == old:
            return old, False
        if dry_run:
            return new, False
        md["resourceVersion"] = self.next_rv()
        key = (md.get("namespace") if res.namespaced else None, md["name"])
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            del self.bucket(res)[key]
            self.emit(res, "DELETED", new)
            self.after_removal(res, new)
            return new, True
        self.bucket(res)[key] = new
        self.emit(res, "MODIFIED", new)
        self.after_change(res, new)
        return new, True

    # --- managed fields -----------------------------------------------------
    @staticmethod
    def _entries(obj):
        return obj["metadata"].get("managedFields") or []

    @staticmethod
    def _entry_id(e):
        return (e.get("manager", ""), e.get("operation"), e.get("subresource", ""),
                e.get("apiVersion") if e.get("operation") == "Update" else "")

    def record_update(self, res, version, old, new, manager, subresource):
        """Fields an Update changed move to `manager`; removed fields leave every manager."""
        status_only = True if subresource == "status" else (False if res.has_status else None)
        before = field_set(old, containers=True, status_only=status_only) if old is not None else set()
        after = field_set(new, containers=True, status_only=status_only)
        def container(p):
            return p in SET_LISTS or p in KEYED_LISTS or p[-1].startswith("k:") or \
                (isinstance(get_at(new, p), dict) and get_at(new, p) != {})
        # Leaves whose value changed, and containers (maps, sets, keyed items) this write created.
        changed = {p for p in after
                   if ((p not in before) if container(p) else (old is None or get_at(old, p) != get_at(new, p)))}
        removed = before - after
        src = new if "managedFields" in new["metadata"] else (old or {"metadata": {}})
        entries = [copy.deepcopy(e) for e in self._entries(src)]
        me = {"manager": manager, "operation": "Update", "apiVersion": res.api_version(version)}
        if subresource:
            me["subresource"] = subresource
        out, mine = [], None
        for e in entries:
            s = fieldsv1_to_set(e.get("fieldsV1"))
            if self._entry_id(e) == self._entry_id(me):
                mine = (e, s)
                continue
            s2 = s - changed - removed
            if s2 != s:
                e["fieldsV1"] = set_to_fieldsv1(s2)
                if not s2:
                    continue
            out.append(e)
        mine_set = (mine[1] if mine else set()) - removed
        if changed:
            mine_set |= changed
            me.update({"time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": set_to_fieldsv1(mine_set)})
            out.append(me)
        elif mine and mine_set:
            e = mine[0]
            e["fieldsV1"] = set_to_fieldsv1(mine_set)
            out.append(e)
        new["metadata"]["managedFields"] = out

    # --- operations ---------------------------------------------------------
    def _create(self, res, version, ns, obj, manager, record=True, dry_run=False):
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = md
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        name = md.get("name")
        if not name:
            raise err_invalid(res, "", [("metadata.name", "FieldValueRequired",
                                         "Required value: name or generateName is required")])
        if res.namespaced:
            md["namespace"] = ns
            self.check_namespace(res, ns, creating=True, name=name)
        else:
            md.pop("namespace", None)
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
            raise err_invalid(res, name, [("metadata.name", "FieldValueInvalid",
                                           'Invalid value: "%s": a lowercase RFC 1123 subdomain must consist of '
                                           "lower case alphanumeric characters, '-' or '.', and must start and end "
                                           "with an alphanumeric character (e.g. 'example.com', regex used for "
                                           "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
                                           "[a-z0-9])?)*')" % name)])
        key = (ns if res.namespaced else None, name)
        if key in self.bucket(res):
            raise err_already_exists(res, name)
        obj["apiVersion"], obj["kind"] = res.api_version(res.storage_version), res.kind
        if res.has_status and not res.builtin:
            obj.pop("status", None)
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            md.pop(k, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if res.uses_generation:
            md["generation"] = 1
        self.prepare(res, obj)
        if record and "managedFields" not in md:
            self.record_update(res, version, None, obj, manager, "")
        for k in ("labels", "annotations", "finalizers", "ownerReferences", "managedFields"):
            if k in md and not md[k]:
                md.pop(k)
        if dry_run:
            return obj
        md["resourceVersion"] = self.next_rv()
        self.bucket(res)[key] = obj
        self.emit(res, "ADDED", obj)
        self.after_change(res, obj)
        return obj

    def create(self, res, version, ns, body, manager, dry_run=False):
        with self.lock:
            return self._create(res, version, ns, body, manager, dry_run=dry_run)

    def update(self, res, version, ns, name, body, manager, subresource="", dry_run=False, require_rv=None):
        with self.lock:
            old = self.get(res, ns, name)
            if not isinstance(body, dict):
                raise err_bad_request("the body of the request was in an unknown format - accepted media types "
                                      "include: application/json, application/yaml")
            bmd = body.get("metadata") or {}
            if bmd.get("name") and bmd["name"] != name:
                raise err_bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                      % (bmd["name"], name))
            if res.namespaced and bmd.get("namespace") and bmd["namespace"] != ns:
                raise err_bad_request("the namespace of the provided object does not match the namespace sent on "
                                      "the request")
            rv = bmd.get("resourceVersion")
            if require_rv is None:
                require_rv = not res.builtin and subresource == ""
            if rv:
                if rv != old["metadata"]["resourceVersion"]:
                    raise err_conflict(res, name)
            elif require_rv:
                raise err_invalid(res, name, [("metadata.resourceVersion", "FieldValueInvalid",
                                               "Invalid value: 0x0: must be specified for an update")])
            new = self.apply_subresource_rules(res, old, body, subresource)
            self.prepare(res, new, old)
            self.record_update(res, version, old, new, manager, subresource)
            stored, _ = self.finish_update(res, old, new, dry_run)
            return stored

    def apply_subresource_rules(self, res, old, body, subresource):
        """What part of `body` a write may change: only .status through /status; not .status otherwise."""
        new = copy.deepcopy(body)
        new.setdefault("metadata", {})
        if new["metadata"] is None:
            new["metadata"] = {}
        if "managedFields" not in new["metadata"] and "managedFields" in old["metadata"]:
            new["metadata"]["managedFields"] = copy.deepcopy(old["metadata"]["managedFields"])
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if subresource == "status":
            out = copy.deepcopy(old)
            if "status" in new:
                out["status"] = new["status"]
            else:
                out.pop("status", None)
            out["metadata"]["managedFields"] = new["metadata"].get("managedFields", [])
            return out
        if res.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    def patch(self, res, version, ns, name, ptype, patch, manager, subresource="", dry_run=False):
        with self.lock:
            old = self.get(res, ns, name)
            if ptype == "json":
                body = json_patch(old, patch)
            else:
                if not isinstance(patch, dict):
                    raise err_bad_request("json: cannot unmarshal %s into Go value of type map[string]interface {}"
                                          % type(patch).__name__)
                body = merge_patch(old, patch)
            if not isinstance(body, dict):
                raise err_bad_request("the body of the request was in an unknown format")
            return self.update(res, version, ns, name, body, manager, subresource, dry_run, require_rv=False)

    def apply(self, res, version, ns, name, applied, manager, force, subresource="", dry_run=False):
        if not isinstance(applied, dict):
            raise err_bad_request("error decoding YAML: the body is not an object")
        if not manager:
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                           "is required for apply patch",
                           {"group": "meta.k8s.io", "kind": "PatchOptions",
                            "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for "
                                        "apply patch", "field": "fieldManager"}]})
        amd = applied.get("metadata") or {}
        if amd.get("managedFields") is not None:
            raise err_bad_request("metadata.managedFields must be nil")
        av, kind = applied.get("apiVersion"), applied.get("kind")
        if not av or not kind:
            raise err_bad_request("%s" % ("invalid object type: " + json.dumps({"apiVersion": av, "kind": kind})))
        if av != res.api_version(version) or kind != res.kind:
            raise err_bad_request("the API version in the data (%s) does not match the expected API version (%s)"
                                  % (av, res.api_version(version)) if av != res.api_version(version) else
                                  "the kind in the data (%s) does not match the expected kind (%s)" % (kind, res.kind))
        if amd.get("name") and amd["name"] != name:
            raise err_bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                  % (amd["name"], name))
        if res.namespaced and amd.get("namespace") and amd["namespace"] != ns:
            raise err_bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
        status_only = True if subresource == "status" else (False if res.has_status else None)
        applied = copy.deepcopy(applied)
        if status_only is True:
            applied = {k: v for k, v in applied.items() if k in ("apiVersion", "kind", "metadata", "status")}
            applied["metadata"] = {k: v for k, v in amd.items() if k in ("name", "namespace")}
        elif status_only is False:
            applied.pop("status", None)
        aset = field_set(applied, status_only=status_only)
        me = {"manager": manager, "operation": "Apply"}
        if subresource:
            me["subresource"] = subresource
        with self.lock:
            self.check_namespace(res, ns)
            key = (ns if res.namespaced else None, name)
            old = self.bucket(res).get(key)
            if old is None:
                if subresource:
                    raise err_not_found(res, name)
                body = copy.deepcopy(applied)
                body.setdefault("metadata", {})["name"] = name
                body["metadata"].pop("managedFields", None)
                obj = self._create(res, version, ns, body, manager, record=False, dry_run=True)
                me.update({"apiVersion": res.api_version(version), "time": now_rfc3339(),
                           "fieldsType": "FieldsV1", "fieldsV1": set_to_fieldsv1(aset)})
                obj["metadata"]["managedFields"] = [me]
                if dry_run:
                    return obj, True
                obj["metadata"]["resourceVersion"] = self.next_rv()
                self.bucket(res)[key] = obj
                self.emit(res, "ADDED", obj)
                self.after_change(res, obj)
                return obj, True
            if amd.get("resourceVersion") and amd["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise err_conflict(res, name)
            entries = [copy.deepcopy(e) for e in self._entries(old)]
            sets = [(e, fieldsv1_to_set(e.get("fieldsV1"))) for e in entries]
            mine = [s for e, s in sets if self._entry_id(e) == self._entry_id(me)]
            prev = mine[0] if mine else set()
            # Merge the applied configuration into the live object.
            new = self._merge(old, applied, ())
            # Fields this manager stopped applying, that nobody else owns, go away.
            others_all = set()
            for e, s in sets:
                if self._entry_id(e) != self._entry_id(me):
                    others_all |= s
            for p in sorted(prev - aset - others_all, key=len, reverse=True):
                remove_at(new, p)
                q = p[:-1]
                while len(q) > 1 and q not in others_all and get_at(applied, q) is MISSING:
                    v = get_at(new, q)
                    if isinstance(v, dict) and not v:
                        remove_at(new, q)
                        q = q[:-1]
                    else:
                        break
            new = self.apply_subresource_rules(res, old, new, subresource)
            self.prepare(res, new, old)
            # Conflicts: fields whose value this apply changes and that another manager owns.
            conflicts = []
            for e, s in sets:
                if self._entry_id(e) == self._entry_id(me):
                    continue
                for p in sorted(aset & s):
                    if get_at(old, p) != get_at(new, p):
                        conflicts.append((e, p))
            if conflicts and not force:
                raise self._conflict_error(conflicts)
            out = []
            lost = {p for _, p in conflicts}
            for e, s in sets:
                if self._entry_id(e) == self._entry_id(me):
                    continue
                s2 = s - lost
                if s2 != s:
                    if not s2:
                        continue
                    e["fieldsV1"] = set_to_fieldsv1(s2)
                out.append(e)
            if mine and prev == aset:
                mine_entry = [e for e, s in sets if self._entry_id(e) == self._entry_id(me)][0]
                mine_entry["apiVersion"] = res.api_version(version)
            else:
                mine_entry = dict(me, apiVersion=res.api_version(version), time=now_rfc3339(),
                                  fieldsType="FieldsV1", fieldsV1=set_to_fieldsv1(aset))
            # Keep the applier's entry where it was, or first for a new one (as the real server lists it).
            pos = [i for i, (e, _) in enumerate(sets) if self._entry_id(e) == self._entry_id(me)]
            if aset:
                out.insert(pos[0] if pos else len(out), mine_entry)
            new["metadata"]["managedFields"] = out
            stored, _ = self.finish_update(res, old, new, dry_run)
            return stored, False

    def _merge(self, live, applied, path):
        if isinstance(live, dict) and isinstance(applied, dict):
            out = copy.deepcopy(live)
            for k, v in applied.items():
                p = path + ("f:" + k,)
                if p in STRIPPED:
                    continue
                if v is None:
                    out.pop(k, None)
                    continue
                if p in SET_LISTS and isinstance(v, list) and isinstance(out.get(k), list):
                    out[k] = out[k] + [i for i in v if i not in out[k]]
                elif p in KEYED_LISTS and isinstance(v, list) and isinstance(out.get(k), list):
                    keys = KEYED_LISTS[p]
                    merged = copy.deepcopy(out[k])
                    for item in v:
                        idx = [i for i, x in enumerate(merged)
                               if isinstance(x, dict) and all(x.get(kk) == item.get(kk) for kk in keys)]
                        if idx:
                            merged[idx[0]] = self._merge(merged[idx[0]], item, p + (item_key(keys, item),))
                        else:
                            merged.append(copy.deepcopy(item))
                    out[k] = merged
                else:
                    out[k] = self._merge(out.get(k), v, p)
            return out
        return copy.deepcopy(applied)

    @staticmethod
    def _conflict_error(conflicts):
        def who(e):
            m = '"%s"' % e.get("manager", "")
            if e.get("operation") == "Update":
                m += " using %s" % e.get("apiVersion")
            return m
        causes = [{"type": "FieldManagerConflict", "message": "conflict with %s" % who(e), "field": path_string(p)}
                  for e, p in conflicts]
        if len(conflicts) == 1:
            e, p = conflicts[0]
            msg = "Apply failed with 1 conflict: conflict with %s: %s" % (who(e), path_string(p))
        else:
            by = {}
            for e, p in conflicts:
                by.setdefault(json.dumps(Store._entry_id(e)), (e, []))[1].append(p)
            lines = []
            for _, (e, ps) in sorted(by.items(), key=lambda kv: kv[1][0].get("manager", "")):
                lines.append("conflicts with %s:" % who(e))
                lines += ["- %s" % path_string(p) for p in ps]
            msg = "Apply failed with %d conflicts: %s" % (len(conflicts), "\n".join(lines))
        return ApiError(409, "Conflict", msg, {"causes": causes})

    def delete(self, res, ns, name, propagation=None, preconditions=None, dry_run=False):
        with self.lock:
            obj = self.get(res, ns, name)
            if res.resource == "namespaces" and name in ("default", "kube-system", "kube-public"):
                raise ApiError(403, "Forbidden", 'namespaces "%s" is forbidden: this namespace may not be deleted'
                               % name, {"name": name, "kind": "namespaces"})
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
                raise ApiError(409, "Conflict",
                               "Operation cannot be fulfilled on %s \"%s\": Precondition failed: UID in precondition: "
                               "%s, UID in object meta: %s" % (qualified(res), name, pre["uid"],
                                                               obj["metadata"]["uid"]))
            if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               "Operation cannot be fulfilled on %s \"%s\": Precondition failed: ResourceVersion in "
                               "precondition: %s, ResourceVersion in object meta: %s"
                               % (qualified(res), name, pre["resourceVersion"], obj["metadata"]["resourceVersion"]))
            finalizers = list(obj["metadata"].get("finalizers") or [])
            if propagation == "Foreground" and not res.resource == "namespaces":
                if "foregroundDeletion" not in finalizers and self.dependents(obj):
                    finalizers.append("foregroundDeletion")
            elif propagation == "Orphan":
                if "orphan" not in finalizers and self.dependents(obj):
                    finalizers.append("orphan")
            if res.resource == "namespaces" or res.resource == "customresourcedefinitions":
                # Terminating first; the namespace and CRD "controllers" below finish the job.
                if not obj["metadata"].get("deletionTimestamp"):
                    new = copy.deepcopy(obj)
                    new["metadata"]["deletionTimestamp"] = now_rfc3339()
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    if res.resource == "namespaces":
                        new["status"] = {"phase": "Terminating"}
                    if dry_run:
                        return new, False
                    new["metadata"]["resourceVersion"] = self.next_rv()
                    if res.uses_generation:
                        new["metadata"]["generation"] = new["metadata"].get("generation", 1) + 1
                    self.bucket(res)[(None, name)] = new
                    self.emit(res, "MODIFIED", new)
                    threading.Thread(target=self._terminate, args=(res, name), daemon=True).start()
                    return new, False
                return obj, False
            if finalizers:
                if obj["metadata"].get("deletionTimestamp") and finalizers == obj["metadata"].get("finalizers"):
                    return obj, False
                new = copy.deepcopy(obj)
                new["metadata"]["finalizers"] = finalizers
                if not new["metadata"].get("deletionTimestamp"):
                    new["metadata"]["deletionTimestamp"] = now_rfc3339()
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    if res.uses_generation:
                        new["metadata"]["generation"] = new["metadata"].get("generation", 1) + 1
                if dry_run:
                    return new, False
                new["metadata"]["resourceVersion"] = self.next_rv()
                self.bucket(res)[(obj["metadata"].get("namespace") if res.namespaced else None, name)] = new
                self.emit(res, "MODIFIED", new)
                self.after_change(res, new)
                return new, False
            if dry_run:
                return obj, True
            self._remove(res, obj)
            return obj, True

    def _remove(self, res, obj):
        key = (obj["metadata"].get("namespace") if res.namespaced else None, obj["metadata"]["name"])
        if key not in self.bucket(res):
            return
        del self.bucket(res)[key]
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = self.next_rv()
        self.emit(res, "DELETED", gone)
        self.after_removal(res, gone)

    # --- controllers the real control plane runs ----------------------------
    def dependents(self, owner):
        uid = owner["metadata"]["uid"]
        out = []
        for (g, r), objs in self.objects.items():
            for o in objs.values():
                if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or []):
                    out.append((self.resources[(g, r)], o))
        return out

    def after_change(self, res, obj):
        """Foreground/orphan finalizers are processed at once (the garbage collector's job)."""
        md = obj["metadata"]
        if not md.get("deletionTimestamp"):
            return
        fin = md.get("finalizers") or []
        if "orphan" in fin:
            for dres, d in self.dependents(obj):
                nd = copy.deepcopy(d)
                nd["metadata"]["ownerReferences"] = [r for r in nd["metadata"]["ownerReferences"]
                                                     if r.get("uid") != md["uid"]]
                self.finish_update(dres, d, nd)
            self._drop_finalizer(res, obj, "orphan")
        elif "foregroundDeletion" in fin:
            deps = self.dependents(obj)
            for dres, d in deps:
                if not d["metadata"].get("deletionTimestamp"):
                    self.delete(dres, d["metadata"].get("namespace"), d["metadata"]["name"], "Foreground")
            if not self.dependents(obj):
                self._drop_finalizer(res, obj, "foregroundDeletion")

    def _drop_finalizer(self, res, obj, fin):
        cur = self.bucket(res).get((obj["metadata"].get("namespace") if res.namespaced else None,
                                    obj["metadata"]["name"]))
        if cur is None:
            return
        new = copy.deepcopy(cur)
        new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or [] if f != fin]
        self.finish_update(res, cur, new)

    def after_removal(self, res, obj):
        """Background garbage collection of dependents; namespaces and CRDs finishing."""
        uid = obj["metadata"]["uid"]
        for dres, d in self.dependents(obj):
            refs = [r for r in d["metadata"]["ownerReferences"] if r.get("uid") != uid]
            live_owner = any(self._uid_exists(r.get("uid")) for r in refs)
            if not live_owner and not d["metadata"].get("deletionTimestamp"):
                self.delete(dres, d["metadata"].get("namespace"), d["metadata"]["name"], "Background")
        # A foreground-deleting owner waits for its dependents.
        for (g, r), objs in list(self.objects.items()):
            for o in list(objs.values()):
                if "foregroundDeletion" in (o["metadata"].get("finalizers") or []):
                    if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                        self.after_change(self.resources[(g, r)], o)
        if res.namespaced:
            ns = self.objects[("", "namespaces")].get((None, obj["metadata"]["namespace"]))
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                self._finish_namespace(ns["metadata"]["name"])

    def _uid_exists(self, uid):
        return any(o["metadata"]["uid"] == uid for objs in self.objects.values() for o in objs.values())

    def _terminate(self, res, name):
        with self.lock:
            if res.resource == "namespaces":
                for (g, r), objs in list(self.objects.items()):
                    rr = self.resources[(g, r)]
                    if not rr.namespaced:
                        continue
                    for (ns, n), o in list(objs.items()):
                        if ns == name and not o["metadata"].get("deletionTimestamp"):
                            self.delete(rr, ns, n, "Background")
                self._finish_namespace(name)
            else:
                crd = self.bucket(res).get((None, name))
                if crd is None:
                    return
                spec = crd.get("spec") or {}
                target = self.resources.get((spec.get("group"), (spec.get("names") or {}).get("plural")))
                if target is not None and not target.builtin:
                    for o in list(self.bucket(target).values()):
                        self._remove(target, o)
                    del self.resources[(target.group, target.resource)]
                    del self.objects[(target.group, target.resource)]
                self._remove(res, crd)

    def _finish_namespace(self, name):
        for (g, r), objs in self.objects.items():
            if self.resources[(g, r)].namespaced and any(ns == name for ns, _ in objs):
                return
        nsres = self.resources[("", "namespaces")]
        ns = self.bucket(nsres).get((None, name))
        if ns is not None:
            self._remove(nsres, ns)

    # --- CustomResourceDefinitions -----------------------------------------
    def crd_changed(self, crd, delay):
        """A CRD was created or updated: establish (again) after `delay`."""
        if delay <= 0:
            self.establish(crd["metadata"]["name"], crd["metadata"]["uid"])
        else:
            t = threading.Timer(delay, self.establish, args=(crd["metadata"]["name"], crd["metadata"]["uid"]))
            t.daemon = True
            t.start()

    def establish(self, name, uid):
        with self.lock:
            crdres = self.resources[("apiextensions.k8s.io", "customresourcedefinitions")]
            crd = self.bucket(crdres).get((None, name))
            if crd is None or crd["metadata"]["uid"] != uid or crd["metadata"].get("deletionTimestamp"):
                return
            spec = crd["spec"]
            names = spec["names"]
            served = [v for v in spec["versions"] if v.get("served", True)]
            storage = [v["name"] for v in spec["versions"] if v.get("storage")][0]
            cols = None
            for v in served:
                if v.get("additionalPrinterColumns"):
                    cols = v["additionalPrinterColumns"]
            res = Resource(spec["group"], [v["name"] for v in served], names["plural"],
                           names.get("singular") or names["kind"].lower(), names["kind"],
                           spec["scope"] == "Namespaced",
                           has_status=any("status" in (v.get("subresources") or {}) for v in served),
                           short_names=names.get("shortNames") or [], categories=names.get("categories") or [],
                           list_kind=names.get("listKind"), storage_version=storage, printer_columns=cols)
            old = self.resources.get((res.group, res.resource))
            if old is not None and old.builtin:
                return
            self.register(res)
            new = copy.deepcopy(crd)
            ts = now_rfc3339()
            accepted = {"plural": names["plural"], "singular": res.singular, "kind": names["kind"],
                        "listKind": res.list_kind}
            for k in ("shortNames", "categories"):
                if names.get(k):
                    accepted[k] = names[k]
            conds = {c.get("type"): c for c in (new.get("status") or {}).get("conditions") or []}
            status = new.setdefault("status", {}) or {}
            new["status"] = status
            wanted = [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted"},
            ]
            status["conditions"] = []
            for c in wanted:
                prev = conds.get(c["type"])
                c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == "True" else ts
                status["conditions"].append(c)
            status["acceptedNames"] = accepted
            stored = set(status.get("storedVersions") or [])
            stored.add(storage)
            status["storedVersions"] = sorted(stored, key=version_priority)
            fin = new["metadata"].setdefault("finalizers", [])
            if "customresourcecleanup.apiextensions.k8s.io" not in fin:
                fin.append("customresourcecleanup.apiextensions.k8s.io")
            self.finish_update(crdres, crd, new)


# --------------------------------------------------------------------------
# OpenAPI: just enough for kubectl to find that the server does server-side
# field validation (a PATCH operation per kind with the fieldValidation query
# parameter), as a real server's OpenAPI v3 says.

def openapi_v3_paths(store):
    paths = {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=" + store_hash(store, "", "v1")}}
    for g, vs in store.groups().items():
        if not g:
            continue
        for v in vs:
            paths["apis/%s/%s" % (g, v)] = {"serverRelativeURL": "/openapi/v3/apis/%s/%s?hash=%s"
                                            % (g, v, store_hash(store, g, v))}
    return {"paths": paths}


def store_hash(store, group, version):
    items = sorted((r.resource, r.kind, r.namespaced) for r in store.resources.values()
                   if r.group == group and version in r.versions)
    return "%016X" % (abs(hash(json.dumps(items))) % (1 << 64))


def openapi_v3_doc(store, group, version):
    paths = {}
    schemas = {}
    field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                        "description": "fieldValidation instructs the server on how to handle objects in the request "
                                       "(POST/PUT/PATCH) containing unknown or duplicate fields."}
    for r in store.resources.values():
        if r.group != group or version not in r.versions:
            continue
        gvk = [{"group": group, "version": version, "kind": r.kind}]
        base = "/api/v1" if not group else "/apis/%s/%s" % (group, version)
        item = base + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.resource + "/{name}"
        coll = base + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.resource
        ref = "%s.%s.%s" % (group or "io.k8s.api.core", version, r.kind)
        schemas[ref] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                        "x-kubernetes-group-version-kind": gvk}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/" + ref}}}}}
        paths[item] = {
            "get": {"operationId": "read" + r.kind, "responses": ok, "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": gvk[0]},
            "put": {"operationId": "replace" + r.kind, "responses": ok, "x-kubernetes-action": "put",
                    "x-kubernetes-group-version-kind": gvk[0]},
            "patch": {"operationId": "patch" + r.kind, "responses": ok, "x-kubernetes-action": "patch",
                      "x-kubernetes-group-version-kind": gvk[0]},
            "delete": {"operationId": "delete" + r.kind, "responses": ok, "x-kubernetes-action": "delete",
                       "x-kubernetes-group-version-kind": gvk[0]},
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                field_validation,
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            ] + ([{"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}]
                 if r.namespaced else []),
        }
        paths[coll] = {
            "get": {"operationId": "list" + r.kind, "responses": ok, "x-kubernetes-action": "list",
                    "x-kubernetes-group-version-kind": gvk[0]},
            "post": {"operationId": "create" + r.kind, "responses": ok, "x-kubernetes-action": "post",
                     "x-kubernetes-group-version-kind": gvk[0]},
            "parameters": [field_validation] + ([{"name": "namespace", "in": "path", "required": True,
                                                  "schema": {"type": "string"}}] if r.namespaced else []),
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": schemas}}


def openapi_v2_protobuf():
    """gnostic openapi_v2.Document{swagger: "2.0", info: {title, version}} in protobuf."""
    def field(num, payload):
        return bytes([(num << 3) | 2]) + _varint(len(payload)) + payload
    info = field(1, b"Kubernetes") + field(2, SERVER_VERSION["gitVersion"].encode())
    return field(1, b"2.0") + field(2, info)


def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


# --------------------------------------------------------------------------
# Protobuf requests. kubectl's typed clients (kubectl create namespace, create
# secret, create configmap) send application/vnd.kubernetes.protobuf. Decoded
# here for the kinds the fake serves built in; answers are always JSON, which
# client-go accepts (it decodes by the response's Content-Type).

def _pb_fields(data):
    i, out = 0, []
    while i < len(data):
        key, i = _pb_varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _pb_varint(data, i)
        elif wt == 2:
            n, i = _pb_varint(data, i)
            v, i = data[i:i + n], i + n
        elif wt == 1:
            v, i = data[i:i + 8], i + 8
        elif wt == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        out.append((num, v))
    return out


def _pb_varint(data, i):
    shift = n = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _pb_map(entries, as_bytes=False):
    out = {}
    for e in entries:
        f = dict(_pb_fields(e))
        v = f.get(2, b"")
        out[f.get(1, b"").decode()] = base64.b64encode(v).decode() if as_bytes else v.decode()
    return out


def _pb_object_meta(data):
    md, labels, annotations, finalizers = {}, [], [], []
    for num, v in _pb_fields(data):
        if num in (1, 2, 3, 5, 6) and v:
            md[{1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}[num]] = v.decode()
        elif num == 11:
            labels.append(v)
        elif num == 12:
            annotations.append(v)
        elif num == 14:
            finalizers.append(v.decode())
    if labels:
        md["labels"] = _pb_map(labels)
    if annotations:
        md["annotations"] = _pb_map(annotations)
    if finalizers:
        md["finalizers"] = finalizers
    return md


def decode_protobuf(raw):
    if not raw.startswith(b"k8s\x00"):
        raise ValueError("missing the k8s protobuf envelope")
    unknown = dict(_pb_fields(raw[4:]))
    tm = dict(_pb_fields(unknown.get(1, b"")))
    api_version, kind = tm.get(1, b"").decode(), tm.get(2, b"").decode()
    obj = {"apiVersion": api_version, "kind": kind}
    fields = _pb_fields(unknown.get(2, b""))
    if kind in ("DeleteOptions",):
        for num, v in fields:
            if num == 6:
                obj["propagationPolicy"] = v.decode()
        return obj
    if kind not in ("Namespace", "ConfigMap", "Secret"):
        raise ValueError("the fake decodes protobuf only for Namespace, ConfigMap and Secret, not %s" % kind)
    data, binary, string_data = [], [], []
    for num, v in fields:
        if num == 1:
            obj["metadata"] = _pb_object_meta(v)
        elif kind == "Namespace" and num == 2:
            fins = [x.decode() for n, x in _pb_fields(v) if n == 1]
            obj["spec"] = {"finalizers": fins} if fins else {}
        elif kind == "ConfigMap" and num == 2 or kind == "Secret" and num == 2:
            data.append(v)
        elif kind == "ConfigMap" and num == 3:
            binary.append(v)
        elif kind == "Secret" and num == 3:
            obj["type"] = v.decode()
        elif kind == "Secret" and num == 4:
            string_data.append(v)
        elif num == 4 and kind == "ConfigMap" or num == 5 and kind == "Secret":
            obj["immutable"] = bool(v)
    if data:
        obj["data"] = _pb_map(data, as_bytes=(kind == "Secret"))
    if binary:
        obj["binaryData"] = _pb_map(binary, as_bytes=True)
    if string_data:
        obj["stringData"] = _pb_map(string_data)
    return obj


# --------------------------------------------------------------------------
# Tables.

def table_for(res, objs, list_rv, include_object):
    cols = [{"name": "Name", "type": "string", "format": "name", "description":
             "Name must be unique within a namespace. Is required when creating resources, although some resources "
             "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
             "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
             "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "priority": 0}]
    extract = [lambda o: o["metadata"]["name"]]
    if res.resource == "secrets":
        cols += [{"name": "Type", "type": "string", "format": "", "description": "", "priority": 0},
                 {"name": "Data", "type": "string", "format": "", "description": "", "priority": 0}]
        extract += [lambda o: o.get("type", ""), lambda o: len(o.get("data") or {})]
    elif res.resource == "configmaps":
        cols += [{"name": "Data", "type": "string", "format": "", "description": "", "priority": 0}]
        extract += [lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})]
    elif res.resource == "namespaces":
        cols += [{"name": "Status", "type": "string", "format": "", "description": "", "priority": 0}]
        extract += [lambda o: (o.get("status") or {}).get("phase", "")]
    elif res.resource == "customresourcedefinitions":
        cols += [{"name": "Created At", "type": "date", "format": "", "description": "", "priority": 0}]
        extract += [lambda o: o["metadata"].get("creationTimestamp", "")]
    if res.printer_columns and not res.builtin:
        for c in res.printer_columns:
            cols.append({"name": c.get("name", ""), "type": c.get("type", "string"), "format": c.get("format", ""),
                         "description": c.get("description", ""), "priority": c.get("priority", 0)})
            extract.append(lambda o, c=c: _jsonpath_cell(o, c))
    elif res.resource != "customresourcedefinitions":
        cols.append({"name": "Age", "type": "string", "format": "", "description":
                     "CreationTimestamp is a timestamp representing the server time when this object was created.",
                     "priority": 0})
        extract.append(age_of)
    rows = []
    for o in objs:
        row = {"cells": [f(o) for f in extract]}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": {k: v for k, v in o["metadata"].items() if k != "managedFields"}}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": list_rv},
            "columnDefinitions": cols, "rows": rows}


def _jsonpath_tokens(path):
    """.a.b, ['dotted\.key'], [0], [?(@.kind=="Machine")] -> steps."""
    steps, i = [], 0
    while i < len(path):
        if path[i] == ".":
            m = re.match(r"\.([A-Za-z0-9_-]+)", path[i:])
            if not m:
                return None
            steps.append(("key", m.group(1)))
            i += m.end()
        elif path.startswith("['", i):
            j = path.index("']", i)
            steps.append(("key", path[i + 2:j].replace("\\.", ".")))
            i = j + 2
        elif path.startswith("[?(", i):
            j = path.index(")]", i)
            m = re.fullmatch(r'@\.([A-Za-z0-9_]+)\s*==\s*["\'](.*)["\']', path[i + 3:j])
            if not m:
                return None
            steps.append(("filter", (m.group(1), m.group(2))))
            i = j + 2
        elif path[i] == "[":
            j = path.index("]", i)
            steps.append(("index", path[i + 1:j]))
            i = j + 1
        else:
            return None
    return steps


def _jsonpath_cell(obj, col):
    """A CRD's additionalPrinterColumns cell, as the server computes it (dates as ages)."""
    try:
        steps = _jsonpath_tokens(col.get("jsonPath", ""))
    except ValueError:
        steps = None
    if steps is None:
        return None
    vals = [obj]
    for kind, arg in steps:
        nxt = []
        for v in vals:
            if kind == "key" and isinstance(v, dict) and arg in v:
                nxt.append(v[arg])
            elif kind == "index" and isinstance(v, list):
                if arg == "*":
                    nxt += v
                elif arg.lstrip("-").isdigit() and -len(v) <= int(arg) < len(v):
                    nxt.append(v[int(arg)])
            elif kind == "filter" and isinstance(v, list):
                nxt += [x for x in v if isinstance(x, dict) and str(x.get(arg[0])) == arg[1]]
        vals = nxt
    if not vals:
        return None
    cur = vals[0]
    if col.get("type") == "date":
        t = parse_rfc3339(cur)
        return human_duration((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) if t else cur
    if col.get("type") == "integer" and isinstance(cur, bool):
        return None
    return cur


# --------------------------------------------------------------------------
# HTTP.

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, store, args, tls):
        super().__init__(addr, handler)
        self.store = store
        self.args = args
        self.tls = tls
        self.requests = []
        self.requests_lock = threading.Lock()
        self.injections = []  # fault rules from POST /_fake/inject, under requests_lock
        self.request_log = open(args.request_log, "a", buffering=1) if args.request_log else None

    def finish_request(self, request, client_address):
        if self.tls is not None:
            try:
                request.settimeout(30)
                request = self.tls.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                try:
                    request.close()
                except OSError:
                    pass
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    sys_version = ""

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_KUBE_VERBOSE"):
            sys.stderr.write("fake-apiserver: %s\n" % (fmt % args))

    # --- plumbing -------------------------------------------------------------
    def send_json(self, code, body, content_type="application/json"):
        data = json.dumps(body, separators=(",", ":")).encode() if not isinstance(body, bytes) else body
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_status(self, err):
        if isinstance(err, PageNotFound):
            return self.send_json(404, b"404 page not found\n", "text/plain; charset=utf-8")
        self.send_json(err.code, err.status())

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def authorized(self):
        args = self.server.args
        if not args.token and not args.client_ca:
            return True
        auth = self.headers.get("Authorization", "")
        if args.token and auth == "Bearer " + args.token:
            return True
        if args.client_ca and isinstance(self.connection, ssl.SSLSocket):
            try:
                if self.connection.getpeercert():
                    return True
            except (ValueError, ssl.SSLError):
                pass
        return False

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        raw = self.read_body()
        ctype = self.headers.get("Content-Type", "")
        if path.startswith("/_fake/"):
            self.fake_body = raw
            return self.fake_endpoint(path)
        self.record(path, query, ctype, raw)
        try:
            rule = self.injected(path)
            if rule is not None and self.apply_injection(rule):
                return
            if path in ("/healthz", "/readyz", "/livez") or path.startswith(("/healthz/", "/readyz/", "/livez/")):
                data = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if not self.authorized():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self.route(path, query, ctype, raw)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # a bug in the fake: answer like a server's internal error
            import traceback
            traceback.print_exc()
            self.send_error_status(ApiError(500, "InternalError", "Internal error occurred: %s" % e))

    def record(self, path, query, ctype, raw):
        body = None
        if raw and ctype.startswith("application/vnd.kubernetes.protobuf"):
            try:
                body = decode_protobuf(raw)
            except (ValueError, IndexError):
                body = None
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                try:
                    body = yaml.load(raw.decode(), Loader=_Loader)
                except Exception:
                    body = raw.decode(errors="replace")
        rec = {"method": self.command, "path": path, "query": query, "content_type": ctype, "body": body,
               "user_agent": self.headers.get("User-Agent", ""), "accept": self.headers.get("Accept", ""),
               "time": time.time()}
        with self.server.requests_lock:
            self.server.requests.append(rec)
            if self.server.request_log:
                self.server.request_log.write(json.dumps(rec) + "\n")

    def fake_endpoint(self, path):
        if path == "/_fake/requests" and self.command == "GET":
            with self.server.requests_lock:
                data = list(self.server.requests)
            return self.send_json(200, data)
        if path == "/_fake/reset-requests" and self.command == "POST":
            with self.server.requests_lock:
                self.server.requests.clear()
            return self.send_json(200, {"ok": True})
        if path == "/_fake/objects" and self.command == "GET":
            st = self.server.store
            with st.lock:
                out = [st.output(st.resources[k], st.resources[k].storage_version, o)
                       for k, objs in st.objects.items() for o in objs.values()]
            return self.send_json(200, out)
        if path == "/_fake/inject" and self.command == "POST":
            try:
                rule = json.loads(self.fake_body or b"{}")
                assert isinstance(rule, dict)
            except (ValueError, AssertionError):
                return self.send_json(400, {"error": "body: a JSON object"})
            rule.setdefault("count", 1)
            with self.server.requests_lock:
                self.server.injections.append(rule)
            return self.send_json(200, {"ok": True})
        if path == "/_fake/reset-injections" and self.command == "POST":
            with self.server.requests_lock:
                self.server.injections.clear()
            return self.send_json(200, {"ok": True})
        return self.send_json(404, {"error": "unknown test endpoint"})

    def injected(self, path):
        """The first matching fault rule, used up by one (count -1: forever)."""
        with self.server.requests_lock:
            for rule in self.server.injections:
                if rule.get("method") and rule["method"] != self.command:
                    continue
                if rule.get("path") and not path.startswith(rule["path"]):
                    continue
                if rule["count"] > 0:
                    rule["count"] -= 1
                    if rule["count"] == 0:
                        self.server.injections.remove(rule)
                return dict(rule)
        return None

    def apply_injection(self, rule):
        """Delay, then answer with the rule's error like a real server would, or go on (code 0)."""
        if rule.get("delaySeconds"):
            time.sleep(float(rule["delaySeconds"]))
        code = int(rule.get("code", 0))
        if not code:
            return False
        reasons = {429: ("TooManyRequests", "Too many requests, please try again later."),
                   500: ("InternalError", "Internal error occurred: injected by the fake"),
                   503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
                   504: ("Timeout", "the server was unable to return a response in the time allotted, but may "
                                    "still be processing the request")}
        reason, message = reasons.get(code, ("InternalError", "injected error %d" % code))
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": rule.get("message", message), "reason": reason, "code": code}
        if rule.get("retryAfterSeconds") is not None:
            body["details"] = {"retryAfterSeconds": int(rule["retryAfterSeconds"])}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if rule.get("retryAfterSeconds") is not None:
            self.send_header("Retry-After", str(int(rule["retryAfterSeconds"])))
        self.end_headers()
        self.wfile.write(data)
        return True

    # --- routing --------------------------------------------------------------
    def route(self, path, query, ctype, raw):
        st = self.server.store
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        if path == "/version" or path == "/version/":
            return self.send_json(200, SERVER_VERSION)
        if parts[:1] == ["openapi"]:
            return self.openapi(parts)
        if self.command != "GET" and len(parts) <= 3 and (parts[:1] == ["api"] and len(parts) <= 2 or
                                                          parts[:1] == ["apis"] and len(parts) <= 3):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if parts == ["api"]:
            host = self.server.server_address
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "%s:%d" % (host[0], host[1])}]})
        if parts == ["apis"]:
            return self.send_json(200, self.group_list())
        if parts == ["api", "v1"]:
            return self.send_json(200, self.resource_list("", "v1"))
        if len(parts) == 2 and parts[0] == "apis":
            g = self.group_list(parts[1])
            if g is None:
                raise PageNotFound()
            return self.send_json(200, g)
        if len(parts) == 3 and parts[0] == "apis":
            with st.lock:
                if parts[2] not in st.groups().get(parts[1], []):
                    raise PageNotFound()
            return self.send_json(200, self.resource_list(parts[1], parts[2]))
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise PageNotFound()
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise PageNotFound()
        with st.lock:
            res = st.find(group, version, resource)
        if res is None:
            raise PageNotFound()
        if ns is not None and not res.namespaced:
            raise PageNotFound()
        if sub and not (sub == "status" and res.has_status):
            raise PageNotFound()
        if res.namespaced and name is not None and ns is None:
            raise PageNotFound()
        self.resource_request(res, version, ns, name, sub, query, ctype, raw)

    def group_list(self, only=None):
        st = self.server.store
        with st.lock:
            groups = st.groups()
        out = []
        order = sorted((g for g in groups if g), key=lambda g: (g != "apiextensions.k8s.io", g))
        for g in order:
            vs = groups[g]
            entry = {"name": g, "versions": [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in vs],
                     "preferredVersion": {"groupVersion": "%s/%s" % (g, vs[0]), "version": vs[0]}}
            if only == g:
                return dict({"kind": "APIGroup", "apiVersion": "v1"}, **entry)
            out.append(entry)
        if only is not None:
            return None
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}

    def resource_list(self, group, version):
        st = self.server.store
        out = []
        with st.lock:
            for r in sorted(st.resources.values(), key=lambda r: r.resource):
                if r.group != group or version not in r.versions:
                    continue
                e = {"name": r.resource, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                     "verbs": r.verbs}
                if r.short_names:
                    e["shortNames"] = r.short_names
                if r.categories:
                    e["categories"] = r.categories
                e["storageVersionHash"] = base64.b64encode(
                    ("%s/%s/%s" % (r.group, r.storage_version, r.kind)).encode())[:12].decode()
                out.append(e)
                if r.has_status:
                    out.append({"name": r.resource + "/status", "singularName": "", "namespaced": r.namespaced,
                                "kind": r.kind, "verbs": ["get", "patch", "update"]})
        gv = version if not group else "%s/%s" % (group, version)
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}

    def openapi(self, parts):
        st = self.server.store
        if parts == ["openapi", "v2"]:
            # kubectl asks for protobuf; a minimal valid document with no definitions.
            accept = self.headers.get("Accept", "")
            if "protobuf" in accept:
                return self.send_json(200, openapi_v2_protobuf(),
                                      "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
            return self.send_json(200, {"swagger": "2.0", "info": {"title": "Kubernetes",
                                                                   "version": SERVER_VERSION["gitVersion"]},
                                        "paths": {}, "definitions": {}})
        with st.lock:
            if parts == ["openapi", "v3"]:
                return self.send_json(200, openapi_v3_paths(st))
            if parts[:3] == ["openapi", "v3", "api"] and parts[3:] == ["v1"]:
                return self.send_json(200, openapi_v3_doc(st, "", "v1"))
            if parts[:3] == ["openapi", "v3", "apis"] and len(parts) == 5 and parts[4] in st.groups().get(parts[3], []):
                return self.send_json(200, openapi_v3_doc(st, parts[3], parts[4]))
        raise PageNotFound()

    # --- resources ------------------------------------------------------------
    def parse_body(self, ctype, raw, allow_yaml=True):
        if ctype.split(";")[0].strip() == "application/vnd.kubernetes.protobuf" and raw:
            try:
                return decode_protobuf(raw)
            except (ValueError, IndexError) as e:
                raise ApiError(415, "UnsupportedMediaType", "fake apiserver: %s" % e)
        if not raw:
            raise err_bad_request("the body of the request was in an unknown format - accepted media types "
                                  "include: application/json, application/yaml, application/vnd.kubernetes.protobuf")
        try:
            return json.loads(raw)
        except ValueError:
            if not allow_yaml:
                raise err_bad_request("error decoding patch: invalid JSON")
        try:
            return yaml.load(raw.decode(), Loader=_Loader)
        except Exception as e:
            raise err_bad_request("error decoding YAML: %s" % e)

    def field_manager(self, query, default_from_agent=True):
        fm = (query.get("fieldManager") or [""])[0]
        if fm:
            return fm
        ua = self.headers.get("User-Agent", "")
        return ua.split("/")[0] if ua else "unknown"

    def resource_request(self, res, version, ns, name, sub, query, ctype, raw):
        st = self.server.store
        q = lambda k, d="": (query.get(k) or [d])[0]
        dry = q("dryRun") == "All"
        method = self.command
        if name is None:
            if method == "GET":
                if q("watch") in ("true", "1"):
                    return self.watch(res, version, ns, None, query)
                return self.list(res, version, ns, query)
            if method == "POST":
                if res.namespaced and ns is None:
                    raise ApiError(405, "MethodNotAllowed",
                                   "the server does not allow this method on the requested resource")
                body = self.parse_body(ctype, raw)
                if not isinstance(body, dict):
                    raise err_bad_request("the body of the request was in an unknown format")
                bmd = body.get("metadata") or {}
                if res.namespaced and bmd.get("namespace") and bmd["namespace"] != ns:
                    raise err_bad_request("the namespace of the provided object does not match the namespace "
                                          "sent on the request")
                av = body.get("apiVersion")
                if av and av != res.api_version(version):
                    raise err_bad_request("the API version in the data (%s) does not match the expected API "
                                          "version (%s)" % (av, res.api_version(version)))
                obj = st.create(res, version, ns, body, self.field_manager(query), dry_run=dry)
                if res.resource == "customresourcedefinitions" and not dry:
                    st.crd_changed(obj, self.server.args.crd_establish_delay)
                return self.send_json(201, st.output(res, version, obj))
            if method == "DELETE":
                return self.delete_collection(res, version, ns, query)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "GET":
            if q("watch") in ("true", "1"):
                return self.watch(res, version, ns, name, query)
            with st.lock:
                obj = st.get(res, ns, name)
                out = st.output(res, version, obj)
            if self.wants_table():
                return self.send_json(200, table_for(res, [out], out["metadata"]["resourceVersion"],
                                                     q("includeObject", "Metadata")))
            return self.send_json(200, out)
        if method == "PUT":
            body = self.parse_body(ctype, raw)
            obj = st.update(res, version, ns, name, body, self.field_manager(query), sub, dry)
            self.after_crd_write(res, obj, dry)
            return self.send_json(200, st.output(res, version, obj))
        if method == "PATCH":
            ct = ctype.split(";")[0].strip()
            if ct == "application/apply-patch+yaml":
                try:
                    applied = json.loads(raw) if raw else None
                except ValueError:
                    try:
                        applied = yaml.load(raw.decode(), Loader=_Loader)
                    except Exception as e:
                        raise err_bad_request("error decoding YAML: %s" % e)
                obj, created = st.apply(res, version, ns, name, applied, q("fieldManager"),
                                        q("force") in ("true", "1"), sub, dry)
                self.after_crd_write(res, obj, dry)
                return self.send_json(201 if created else 200, st.output(res, version, obj))
            kinds = {"application/merge-patch+json": "merge", "application/strategic-merge-patch+json": "merge",
                     "application/json-patch+json": "json"}
            if ct == "application/strategic-merge-patch+json" and not res.builtin:
                # Custom resources have no patch strategies: a real server refuses.
                ct = "unsupported"
            if ct not in kinds:
                raise ApiError(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")
            patch = self.parse_body(ctype, raw, allow_yaml=False)
            obj = st.patch(res, version, ns, name, kinds[ct], patch, self.field_manager(query), sub, dry)
            self.after_crd_write(res, obj, dry)
            return self.send_json(200, st.output(res, version, obj))
        if method == "DELETE":
            if sub:
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            opts = {}
            if raw:
                opts = self.parse_body(ctype, raw) or {}
                if not isinstance(opts, dict):
                    raise err_bad_request("error decoding DeleteOptions")
            prop = q("propagationPolicy") or opts.get("propagationPolicy")
            if prop and prop not in ("Background", "Foreground", "Orphan"):
                raise err_invalid(res, name, [("propagationPolicy", "FieldValueNotSupported",
                                               'Unsupported value: "%s": supported values: "Foreground", '
                                               '"Background", "Orphan", "nil"' % prop)])
            if opts.get("orphanDependents") is True and not prop:
                prop = "Orphan"
            dry = dry or opts.get("dryRun") == ["All"]
            obj, gone = st.delete(res, ns, name, prop, opts.get("preconditions"), dry)
            if gone and res.resource not in ("namespaces",):
                d = {"name": name, "kind": res.resource, "uid": obj["metadata"]["uid"]}
                if res.group:
                    d = {"name": name, "group": res.group, "kind": res.resource, "uid": obj["metadata"]["uid"]}
                return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                            "status": "Success", "details": d})
            return self.send_json(200, st.output(res, version, obj))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def after_crd_write(self, res, obj, dry):
        if res.resource == "customresourcedefinitions" and not dry and not obj["metadata"].get("deletionTimestamp"):
            self.server.store.crd_changed(obj, self.server.args.crd_establish_delay)

    def wants_table(self):
        return "as=Table" in self.headers.get("Accept", "")

    def select(self, res, ns, query):
        st = self.server.store
        q = lambda k, d="": (query.get(k) or [d])[0]
        lsel = parse_label_selector(q("labelSelector"))
        fsel = parse_field_selector(q("fieldSelector"))
        with st.lock:
            items = [o for (ons, _), o in st.bucket(res).items() if ns is None or ons == ns]
            items = [o for o in items if lsel(o["metadata"].get("labels")) and fsel(o)]
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            return items, str(st.rv), lsel, fsel

    def list(self, res, version, ns, query):
        st = self.server.store
        q = lambda k, d="": (query.get(k) or [d])[0]
        items, rv, _, _ = self.select(res, ns, query)
        cont = q("continue")
        if cont:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
                after = (tok["start"][0], tok["start"][1])
                rv = tok["rv"]
            except Exception:
                raise err_bad_request("continue key is not valid: illegal base64 data at input byte 0")
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
        md = {"resourceVersion": rv}
        limit = q("limit")
        if limit:
            try:
                n = int(limit)
            except ValueError:
                raise err_bad_request("limit must be an integer")
            if 0 < n < len(items):
                last = items[n - 1]["metadata"]
                md["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"v": "meta.k8s.io/v1", "rv": rv, "start": [last.get("namespace", ""), last["name"]]}).encode()
                ).decode()
                md["remainingItemCount"] = len(items) - n
                items = items[:n]
        outs = [st.output(res, version, o) for o in items]
        if self.wants_table():
            t = table_for(res, outs, rv, q("includeObject", "Metadata"))
            if "continue" in md:
                t["metadata"]["continue"] = md["continue"]
                t["metadata"]["remainingItemCount"] = md["remainingItemCount"]
            return self.send_json(200, t)
        if res.builtin:  # built-in lists carry no per-item kind/apiVersion, as from a real server
            for o in outs:
                o.pop("apiVersion", None)
                o.pop("kind", None)
        return self.send_json(200, {"apiVersion": res.api_version(version), "kind": res.list_kind,
                                    "metadata": md, "items": outs})

    def delete_collection(self, res, version, ns, query):
        st = self.server.store
        items, rv, _, _ = self.select(res, ns, query)
        deleted = []
        for o in items:
            try:
                obj, _ = st.delete(res, o["metadata"].get("namespace"), o["metadata"]["name"],
                                   (query.get("propagationPolicy") or [None])[0])
                deleted.append(st.output(res, version, obj))
            except ApiError:
                pass
        return self.send_json(200, {"apiVersion": res.api_version(version), "kind": res.list_kind,
                                    "metadata": {"resourceVersion": str(st.rv)}, "items": deleted})

    # --- watch ----------------------------------------------------------------
    def watch(self, res, version, ns, name, query):
        st = self.server.store
        q = lambda k, d="": (query.get(k) or [d])[0]
        if name is not None:  # GET .../name?watch=true is the same as a fieldSelector
            query = dict(query)
            fs = q("fieldSelector")
            query["fieldSelector"] = [("%s," % fs if fs else "") + "metadata.name=" + name]
        items, cur_rv, lsel, fsel = self.select(res, ns, query)
        since = q("resourceVersion")
        timeout = float(q("timeoutSeconds", "1800") or 1800)
        deadline = time.monotonic() + timeout
        table = self.wants_table()
        bookmarks = q("allowWatchBookmarks") == "true"
        send_initial = q("sendInitialEvents") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

        def send(etype, obj):
            out = obj if etype == "BOOKMARK" else st.output(res, version, obj)
            if table and etype != "BOOKMARK":
                out = table_for(res, [out], out["metadata"]["resourceVersion"], q("includeObject", "Metadata"))
            data = (json.dumps({"type": etype, "object": out}, separators=(",", ":")) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def in_scope(obj):
            md = obj["metadata"]
            return (ns is None or md.get("namespace") == ns) and lsel(md.get("labels")) and fsel(obj)

        try:
            if since in ("", "0") or send_initial:
                start = int(cur_rv)
                for o in items:
                    send("ADDED", o)
                if send_initial and bookmarks:
                    send("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version(version),
                                      "metadata": {"resourceVersion": cur_rv,
                                                   "annotations": {"k8s.io/initial-events-end": "true"}}})
            else:
                try:
                    start = int(since)
                except ValueError:
                    raise err_bad_request('invalid resource version: "%s"' % since)
            idx = 0
            while True:
                with st.lock:
                    while idx < len(st.events) and st.events[idx][0] <= start:
                        idx += 1
                    batch = st.events[idx:]
                    idx = len(st.events)
                    if not batch:
                        st.changed.wait(0.5)
                for rv, g, r, etype, obj in batch:
                    start = rv
                    if (g, r) == (res.group, res.resource) and in_scope(obj):
                        send(etype, obj)
                if time.monotonic() > deadline:
                    break
                if self.client_gone():
                    return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        self.close_connection = True

    def client_gone(self):
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
        except (ValueError, OSError):
            return True
        return bool(r)


# --------------------------------------------------------------------------

def load_crd_files(paths):
    docs = []
    for p in paths:
        files = sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith((".yaml", ".yml", ".json"))) \
            if os.path.isdir(p) else [p]
        for f in files:
            with open(f) as fh:
                for d in load_yaml_all(fh.read()):
                    if d.get("kind") == "CustomResourceDefinition":
                        docs.append(d)
                    elif d.get("kind") == "List":
                        docs += [i for i in d.get("items", []) if i.get("kind") == "CustomResourceDefinition"]
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT (port 0 picks a free one)")
    ap.add_argument("--port-file")
    ap.add_argument("--crds", action="append", default=[])
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--token")
    ap.add_argument("--crd-establish-delay", type=float, default=0.3)
    ap.add_argument("--request-log")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    if (args.tls_cert is None) != (args.tls_key is None):
        ap.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        ap.error("--client-ca needs --tls-cert and --tls-key")

    store = Store(args.crd_establish_delay)
    crdres = store.resources[("apiextensions.k8s.io", "customresourcedefinitions")]
    for crd in load_crd_files(args.crds):
        obj = store.create(crdres, "v1", None, crd, "clusterctl")
        store.crd_changed(obj, 0)

    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        tls.set_alpn_protocols(["http/1.1"])
        if args.client_ca:
            tls.load_verify_locations(args.client_ca)
            tls.verify_mode = ssl.CERT_OPTIONAL
    server = Server((host.strip("[]") or "127.0.0.1", int(port)), Handler, store, args, tls)
    if args.port_file:
        tmp = args.port_file + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write("fake-apiserver: listening on %s://%s:%d\n"
                     % ("https" if tls else "http", server.server_address[0], server.server_address[1]))
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
