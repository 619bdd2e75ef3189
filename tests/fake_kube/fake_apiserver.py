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
      [--discovery-lag SECONDS] [--conversion-fail GROUP/KIND]...

Test-only endpoints (never authenticated): GET /_fake/requests,
POST /_fake/reset-requests, GET /_fake/objects; and fault injection:
POST /_fake/inject {"method": "PATCH", "path": "/apis/...", "code": 429|500|503|504,
"retryAfterSeconds": 1, "delaySeconds": 2.5, "count": 1 (-1: until reset)}, where
"path" is a prefix, code 0 only delays; "verb": "list" matches one Kubernetes verb only;
code 403 answers the authorizer's Forbidden for "user"; {"conversionFail": "GROUP/KIND"}
fails that kind's conversion webhook; POST /_fake/reset-injections. README.md has it all.
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

# webhooks.py beside this file (conversion, defaulting and validating webhooks of the providers), imported
# by main(); without it a CRD's conversion strategy Webhook behaves like None and nothing is admitted.
WEBHOOKS = None


def go_json(v):
    """encoding/json.Marshal of unstructured content: sorted keys, compact, HTML characters escaped."""
    return json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False) \
        .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message}
        if self.reason:  # StatusReasonUnknown ("") is omitted, as errors that are not a Status get it
            s["reason"] = self.reason
        s["code"] = self.code
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
        self.discoverable_at = {}  # version -> time it shows in discovery (absent: at once)

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
    Resource("", ["v1"], "resourcequotas", "resourcequota", "ResourceQuota", True, has_status=True,
             short_names=["quota"], builtin=True, uses_generation=False),
    Resource("apiextensions.k8s.io", ["v1"], "customresourcedefinitions", "customresourcedefinition",
             "CustomResourceDefinition", False, has_status=True, short_names=["crd", "crds"], builtin=True,
             categories=["api-extensions"]),
]


# --------------------------------------------------------------------------
# Schemas. Every kind has a structural schema (OpenAPI v3, as in a CRD's
# openAPIV3Schema): a CRD version's own, or the ones below for the built-in
# kinds. metadata is always ObjectMeta (apiextensions-apiserver prunes and
# coerces it to ObjectMeta whatever the CRD says). None stands for an untyped
# node (under x-kubernetes-preserve-unknown-fields): anything goes, maps are
# granular and lists atomic, as structured-merge-diff's "deduced" type.

STR = {"type": "string"}
INT = {"type": "integer", "format": "int64"}
STR_MAP = {"type": "object", "additionalProperties": STR}
OBJECT_META_SCHEMA = {"type": "object", "properties": {
    "name": STR, "generateName": STR, "namespace": STR, "selfLink": STR, "uid": STR, "resourceVersion": STR,
    "generation": INT, "creationTimestamp": dict(STR, nullable=True), "deletionTimestamp": dict(STR, nullable=True),
    "deletionGracePeriodSeconds": INT, "labels": STR_MAP, "annotations": STR_MAP,
    "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"],
                        "items": {"type": "object", "properties": {
                            "apiVersion": STR, "kind": STR, "name": STR, "uid": STR,
                            "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"}}}},
    "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": STR},
    "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
}}
QUANTITY = {"x-kubernetes-int-or-string": True}
QUANTITY_MAP = {"type": "object", "additionalProperties": QUANTITY}
PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
# The built-in kinds' list types follow k8s.io/api's OpenAPI (+listType/+listMapKey markers).
BUILTIN_SCHEMAS = {
    "namespaces": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"finalizers": {"type": "array", "items": STR}}},
        "status": PRESERVE}},
    "secrets": {"type": "object", "properties": {
        "data": STR_MAP, "stringData": STR_MAP, "type": STR, "immutable": {"type": "boolean"}}},
    "configmaps": {"type": "object", "properties": {
        "data": STR_MAP, "binaryData": STR_MAP, "immutable": {"type": "boolean"}}},
    "services": {"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["port", "protocol"],
                      "items": {"type": "object", "properties": {
                          "name": STR, "protocol": dict(STR, default="TCP"), "appProtocol": STR,
                          "port": {"type": "integer", "format": "int32"},
                          "targetPort": {"x-kubernetes-int-or-string": True},
                          "nodePort": {"type": "integer", "format": "int32"}}}},
            "selector": dict(STR_MAP, **{"x-kubernetes-map-type": "atomic"})}},
        "status": PRESERVE}},
    "resourcequotas": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "hard": QUANTITY_MAP,
            "scopes": {"type": "array", "x-kubernetes-list-type": "atomic", "items": STR},
            "scopeSelector": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {
                "matchExpressions": {"type": "array", "x-kubernetes-list-type": "atomic", "items": {
                    "type": "object", "properties": {"scopeName": STR, "operator": STR,
                                                     "values": {"type": "array", "items": STR}}}}}}}},
        "status": {"type": "object", "properties": {"hard": QUANTITY_MAP, "used": QUANTITY_MAP}}}},
    "customresourcedefinitions": {"type": "object", "properties": {"spec": PRESERVE, "status": PRESERVE}},
}


def root_schema(base):
    """A kind's schema with apiVersion, kind and ObjectMeta at the root."""
    root = dict(base) if isinstance(base, dict) else dict(PRESERVE)
    props = dict(root.get("properties") or {})
    props.update(apiVersion=STR, kind=STR, metadata=OBJECT_META_SCHEMA)
    root["properties"] = props
    root.setdefault("type", "object")
    return root


def s_prop(s, k):
    """(schema of key k in map schema s, whether k is allowed there). None: untyped."""
    if s is None:
        return None, True
    props = s.get("properties") or {}
    if k in props:
        return props[k], True
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        return ap, True
    if ap is True or s.get("x-kubernetes-preserve-unknown-fields"):
        return None, True
    if s.get("x-kubernetes-embedded-resource") and k in ("apiVersion", "kind", "metadata"):
        return (OBJECT_META_SCHEMA if k == "metadata" else STR), True
    return None, False


def s_items(s):
    return None if s is None else s.get("items")


def list_type(s):
    """x-kubernetes-list-type: atomic (the default), set or map."""
    return (s or {}).get("x-kubernetes-list-type") or "atomic"


def map_atomic(s):
    return (s or {}).get("x-kubernetes-map-type") == "atomic"


def list_keys(s):
    return list((s or {}).get("x-kubernetes-list-map-keys") or [])


def key_of(s, item):
    """The key fields of a map-list item, defaulted from the item schema (structured-merge-diff does)."""
    props = (s_items(s) or {}).get("properties") or {}
    out = {}
    for k in list_keys(s):
        if k in item:
            out[k] = item[k]
        elif "default" in (props.get(k) or {}):
            out[k] = props[k]["default"]
        else:
            out[k] = None
    return out


def go_type(v):
    """%T of an unstructured value in Go."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    return "<nil>"


def json_type(v):
    """The OpenAPI type name kube-openapi's validator reports for a value."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    return "null"


def apply_defaults(x, s):
    """structuraldefaulting.Default: a missing property (or a null one that is not nullable) gets a deep
    copy of the schema's default, recursively through properties, additionalProperties and items."""
    if s is None:
        return
    if isinstance(x, dict):
        for k, ps in (s.get("properties") or {}).items():
            if isinstance(ps, dict) and "default" in ps and (k not in x or (x[k] is None and not ps.get("nullable"))):
                x[k] = copy.deepcopy(ps["default"])
        for k, v in x.items():
            cs, known = s_prop(s, k)
            if known and cs is not None:
                apply_defaults(v, cs)
    elif isinstance(x, list):
        for v in x:
            apply_defaults(v, s_items(s))


def prune(x, s, path, out, root=False):
    """structuralpruning.PruneWithOptions: drop fields the schema does not declare, adding their paths
    ("spec.a[0].b") to out; also drop nulls of non-nullable fields (PruneNonNullableNullsWithoutDefaults)."""
    if s is None:
        return
    preserve = s.get("x-kubernetes-preserve-unknown-fields")
    if isinstance(x, dict):
        if map_atomic(s) and not s.get("properties") and not isinstance(s.get("additionalProperties"), dict):
            return
        for k in list(x):
            if root and k in ("apiVersion", "kind", "metadata"):
                continue
            cs, known = s_prop(s, k)
            if not known:
                del x[k]
                out.append(k if not path else path + "." + k)
                continue
            if preserve and cs is None:
                continue
            if x[k] is None and cs is not None and not cs.get("nullable") and "default" not in cs \
                    and not cs.get("x-kubernetes-preserve-unknown-fields"):
                del x[k]
                continue
            prune(x[k], cs, k if not path else path + "." + k, out)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            prune(v, s_items(s), "%s[%d]" % (path, i), out)


def smd_errors(x, s, path, errs):
    """structured-merge-diff's typed conversion of an apply patch (typed/validate.go): fields the schema
    does not declare, values of the wrong type, map-list items without their keys."""
    if x is None or s is None:
        return
    t = s.get("type")
    if s.get("x-kubernetes-int-or-string"):  # an untyped scalar to structured-merge-diff
        if isinstance(x, (dict, list)):
            errs.append((path, "expected any scalar, got &{%s}" % json.dumps(x)))
        return
    if isinstance(x, dict) and t in (None, "object"):
        for k in sorted(x):
            cs, known = s_prop(s, k)
            if not known:
                errs.append((path + "." + k, "field not declared in schema"))
                break  # visitMapItems stops at the first undeclared field of a map
            smd_errors(x[k], cs, path + "." + k, errs)
        return
    if isinstance(x, list) and t in (None, "array"):
        lt, its = list_type(s), s_items(s)
        seen = set()
        for i, item in enumerate(x):
            if lt == "map":
                if not isinstance(item, dict):
                    errs.append((path, "element %d: associative list with keys may not have non-map elements" % i))
                    return
                props = (its or {}).get("properties") or {}
                for k in list_keys(s):
                    if k not in item and "default" not in (props.get(k) or {}):
                        errs.append((path, 'element %d: associative list with keys has an element that omits key '
                                           'field "%s" (and doesn\'t have default value)' % (i, k)))
                        return
                kv = key_of(s, item)
                pe = "[" + ",".join("%s=%s" % (k, json.dumps(kv[k])) for k in sorted(kv)) + "]"
            elif lt == "set":
                if isinstance(item, (dict, list)) or item is None:
                    errs.append((path, "element %d: associative list without keys has an element that's a %s"
                                 % (i, "map type" if isinstance(item, dict) else "list" if isinstance(item, list)
                                    else "an explicit null")))
                    return
                pe = "[=%s]" % json.dumps(item)
            else:
                pe = "[%d]" % i
            if lt != "atomic":
                if pe in seen:
                    errs.append((path, "duplicate entries for key %s" % pe))
                seen.add(pe)
            smd_errors(item, its, path + pe, errs)
        return
    if isinstance(x, dict):
        errs.append((path, "expected %s, got &value.valueUnstructured{Value:%s}" % (t, json.dumps(x))))
    elif isinstance(x, list):
        errs.append((path, "expected %s, got &{%s}" % ("map" if t == "object" else t, json.dumps(x))))
    elif t in ("integer", "number") and (isinstance(x, bool) or not isinstance(x, (int, float))):
        errs.append((path, "expected numeric (int or float), got %s" % go_type(x)))
    elif t == "string" and not isinstance(x, str):
        errs.append((path, "expected string, got &value.valueUnstructured{Value:%s}" % json.dumps(x)))
    elif t == "boolean" and not isinstance(x, bool):
        errs.append((path, "expected boolean, got &{%s}" % json.dumps(x)))
    elif t in ("object", "array"):
        errs.append((path, "expected %s, got &{%s}" % ("map" if t == "object" else "list", json.dumps(x))))


def smd_message(errs):
    """typed.ValidationErrors.Error()."""
    msgs = ["%s: %s" % (p, m) if p else m for p, m in errs]
    return msgs[0] if len(msgs) == 1 else "\n".join(["errors:"] + ["  " + m for m in msgs])


def type_errors(x, s, path, errs):
    """The schema's type checks as apiextensions' ValidateCustomResource reports them (kube-openapi's
    "<path> in body must be of type <type>: \"<actual>\"")."""
    if s is None or x is None:
        return
    t = s.get("type")
    got = json_type(x)
    if s.get("x-kubernetes-int-or-string"):
        if got not in ("integer", "string"):
            errs.append((path, "FieldValueInvalid", 'Invalid value: "%s": %s in body must be of type '
                         'integer,string: "%s"' % (got, path, got)))
        return
    if t and got != t and not (t == "number" and got == "integer"):
        errs.append((path, "FieldValueInvalid",
                     'Invalid value: "%s": %s in body must be of type %s: "%s"' % (got, path, t, got)))
        return
    if isinstance(x, dict):
        for k in sorted(x):
            if not path and k in ("apiVersion", "kind", "metadata"):
                continue
            cs, known = s_prop(s, k)
            if known and cs is not None:
                type_errors(x[k], cs, k if not path else path + "." + k, errs)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            type_errors(v, s_items(s), "%s[%d]" % (path, i), errs)


# --------------------------------------------------------------------------
# Quantities (k8s.io/apimachinery/pkg/api/resource: ParseQuantity, Quantity.String, CanonicalizeBytes).

_QTY_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")
_DEC_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BIN_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
QUANTITY_FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def parse_quantity(v):
    """(value as a Fraction, format); raises ValueError with the real message."""
    from fractions import Fraction
    if isinstance(v, bool) or v is None:
        raise ValueError(QUANTITY_FORMAT_ERROR)
    if isinstance(v, int):
        v = str(v)
    elif isinstance(v, float):
        v = repr(v)
    m = _QTY_NUMBER.match(v)
    if not v or not m or not (m.group(2) or m.group(3)):
        raise ValueError(QUANTITY_FORMAT_ERROR)
    sign, whole, frac = m.group(1), m.group(2) or "0", m.group(3) or ""
    suffix = v[m.end():]
    value = Fraction(int(whole + frac), 10 ** len(frac))
    if suffix in _DEC_SUFFIX:
        fmt, value = "DecimalSI", value * Fraction(10) ** _DEC_SUFFIX[suffix]
    elif suffix in _BIN_SUFFIX:
        fmt, value = "BinarySI", value * 2 ** _BIN_SUFFIX[suffix]
    elif re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
        fmt, value = "DecimalExponent", value * Fraction(10) ** int(suffix[1:])
    else:
        raise ValueError("unable to parse quantity's suffix")
    if sign == "-":
        value = -value
    # Precision beyond nano is rounded up (away from zero); values are capped at 2^63-1.
    scaled = value * 10 ** 9
    if scaled.denominator != 1:
        n = -(-abs(scaled.numerator) // scaled.denominator)
        value = Fraction(n if value > 0 else -n, 10 ** 9)
    cap = Fraction(2 ** 63 - 1)
    value = max(-cap, min(cap, value))
    return value, fmt


def _kept_quantity_text(text):
    """ParseQuantity's fast path keeps the string as written when it is already canonical enough
    (MarshalJSON then returns it): int64 values, decimal scale a multiple of 3 with no trailing 000
    and no leading 0; binary values not a multiple of 8."""
    m = re.fullmatch(r"[+-]?0*([0-9]*)(?:\.([0-9]*))?(.*)", text)
    if not m:
        return None
    num, denom, suf = m.group(1) or "0", m.group(2) or "", m.group(3)
    if suf in _BIN_SUFFIX:
        exp = _BIN_SUFFIX[suf]
        if denom or 15 - len(num) - int(exp * 3 / 10) - 1 < 0 or int(num) << exp >= 2 ** 63:
            return None
        return text if int(num) & 7 else None
    if suf in _DEC_SUFFIX:
        scale = _DEC_SUFFIX[suf]
    elif re.fullmatch(r"[eE][-+]?[0-9]+", suf):
        scale = int(suf[1:])
    else:
        return None
    if 18 - len(num) - len(denom) < 0:
        return None
    scale -= len(denom)
    shifted = num + denom
    if scale < -9 or scale % 3 or shifted.endswith("000") or shifted[0] == "0":
        return None
    return text


def canonical_quantity(v):
    """The form the API server stores and returns: Quantity.MarshalJSON, i.e. the string as written when
    ParseQuantity kept it, else Quantity.String() (CanonicalizeBytes)."""
    value, fmt = parse_quantity(v)
    text = v if isinstance(v, str) else (str(v) if isinstance(v, int) else repr(v))
    if text == "0":
        return "0"
    kept = _kept_quantity_text(text)
    if kept is not None:
        return kept
    if value == 0:
        return "0"
    if fmt == "BinarySI" and (-1024 < value < 1024 or value.denominator != 1):
        fmt = "DecimalSI"
    if fmt == "BinarySI":
        n, e = int(value), 0
        while n % 1024 == 0 and e < 6:
            n, e = n // 1024, e + 1
        return str(n) + ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][e]
    m, e = int(value * 10 ** 9), -9
    while m % 10 == 0:
        m, e = m // 10, e + 1
    r = e % 3
    if r:
        m, e = m * 10 ** r, e - r
    while e > 18:
        m, e = m * 1000, e - 3
    if fmt == "DecimalExponent":
        return str(m) + ("e%d" % e if e else "")
    return str(m) + {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}[e]


# --------------------------------------------------------------------------
# Warnings (k8s.io/apiserver/pkg/warning, net.NewWarningHeader): per request,
# deduplicated, sent as one `Warning: 299 - "text"` header each.

_request = threading.local()


def add_warning(text):
    ws = getattr(_request, "warnings", None)
    if ws is not None and text and text not in ws:
        ws.append(text)


def warning_header(text):
    return '299 - "%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


# --------------------------------------------------------------------------
# Field paths (structured-merge-diff in miniature). A path is a tuple of
# FieldsV1 keys: ("f:spec", "f:replicas"), ("f:metadata", "f:finalizers", 'v:"x"').
# The schema decides: maps are granular unless x-kubernetes-map-type: atomic;
# lists are atomic unless x-kubernetes-list-type is set (v: items) or map
# (k: items keyed by x-kubernetes-list-map-keys).

STRIPPED = {("f:apiVersion",), ("f:kind",), ("f:metadata", "f:name"), ("f:metadata", "f:namespace"),
            ("f:metadata", "f:uid"), ("f:metadata", "f:resourceVersion"), ("f:metadata", "f:generation"),
            ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:managedFields"),
            ("f:metadata", "f:selfLink"), ("f:metadata", "f:deletionTimestamp"),
            ("f:metadata", "f:deletionGracePeriodSeconds"), ("f:metadata", "f:generateName")}


def _jkey(v):
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


def item_key(s, item):
    return "k:" + json.dumps(key_of(s, item), separators=(",", ":"), sort_keys=True)


def _walk(value, schema, prefix, out, containers):
    """Add leaf paths of `value` (a map) under prefix; with containers, also map/list nodes."""
    for k, v in value.items():
        p = prefix + ("f:" + k,)
        if p in STRIPPED:
            continue
        cs, _ = s_prop(schema, k)
        lt = list_type(cs) if isinstance(v, list) else None
        if isinstance(v, dict) and v and not map_atomic(cs):
            if containers:
                out.add(p)
            _walk(v, cs, p, out, containers)
        elif lt == "set":
            if containers or not v:
                out.add(p)
            for item in v:
                out.add(p + ("v:" + _jkey(item),))
        elif lt == "map" and all(isinstance(i, dict) for i in v):
            if containers or not v:
                out.add(p)
            for item in v:
                ip = p + (item_key(cs, item),)
                out.add(ip)
                _walk(item, s_items(cs), ip, out, containers)
        else:
            out.add(p)


def field_set(obj, containers=False, status_only=None, schema=None):
    """Paths of obj; status_only True keeps only .status, False drops .status, None keeps all."""
    out = set()
    _walk(obj, schema if schema is not None else root_schema(None), (), out, containers)
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
    def __init__(self, establish_delay, discovery_lag=0.0):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 0
        self.establish_delay = establish_delay
        self.discovery_lag = discovery_lag
        self.conversion_failures = []  # rules {"conversionFail": "GROUP/KIND", "count", "message"}
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

    def groups(self, discoverable=False):
        """Served versions per group; discoverable: only those the discovery controller has published."""
        out = {}
        now = time.monotonic()
        for r in self.resources.values():
            for v in r.versions:
                if discoverable and r.discoverable_at.get(v, 0) > now:
                    continue
                out.setdefault(r.group, set()).add(v)
        return {g: sorted(vs, key=version_priority) for g, vs in out.items()}

    def crd_of(self, res):
        if res.builtin:
            return None
        return self.objects[("apiextensions.k8s.io", "customresourcedefinitions")].get(
            (None, "%s.%s" % (res.resource, res.group)))

    def crd_for(self, group, kind):
        """For webhooks.py: the stored CRD of a group and kind, or None."""
        for crd in self.objects[("apiextensions.k8s.io", "customresourcedefinitions")].values():
            spec = crd.get("spec") or {}
            if spec.get("group") == group and (spec.get("names") or {}).get("kind") == kind:
                return crd
        return None

    def schema(self, res, version):
        """The structural schema of `version` (root with apiVersion, kind and ObjectMeta)."""
        if res.builtin:
            return root_schema(BUILTIN_SCHEMAS.get(res.resource))
        crd = self.crd_of(res)
        base = None
        for v in ((crd or {}).get("spec") or {}).get("versions") or []:
            if v.get("name") == version:
                base = (v.get("schema") or {}).get("openAPIV3Schema")
        return root_schema(base)

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
        """obj (as stored) converted to `version` for an answer."""
        out = self.convert(res, obj, version)
        out["kind"] = res.kind
        if not res.builtin:
            apply_defaults(out, self.schema(res, version))  # reads are defaulted too
        return dict([("apiVersion", out.pop("apiVersion")), ("kind", out.pop("kind"))] + list(out.items()))

    # --- conversion (apiextensions-apiserver/pkg/apiserver/conversion) -------
    def convert(self, res, obj, version):
        """A copy of obj at `version`, pruned to that version's schema as crd_handler.go's
        schemaCoercingConverter does after every conversion (so a field only one version declares is lost
        going through the other)."""
        out = self._convert(res, obj, version)
        if not res.builtin:
            prune(out, self.schema(res, version), "", [], root=True)
        return out

    def _convert(self, res, obj, version):
        """Strategy None only rewrites apiVersion; Webhook calls webhooks.convert (in-process), and fails
        as the real webhook converter words it."""
        target = res.api_version(version)
        out = copy.deepcopy(obj)
        if obj.get("apiVersion") == target or res.builtin:
            out["apiVersion"] = target
            return out
        crd = self.crd_of(res) or {}
        conv = (crd.get("spec") or {}).get("conversion") or {}
        if conv.get("strategy") == "Webhook":
            gvk = "%s, Kind=%s" % (obj.get("apiVersion"), res.kind)  # schema.GroupVersionKind.String()
            failure = self.injected_conversion_failure(res, conv)
            if failure is not None:
                raise ApiError(500, "", "conversion webhook for %s failed: %s" % (gvk, failure))
            if WEBHOOKS is not None:
                try:
                    converted = WEBHOOKS.convert(out, target, self.crd_for)
                except getattr(WEBHOOKS, "ConversionError", Exception) as e:
                    raise ApiError(500, "", "conversion webhook for %s failed: %s" % (gvk, e))
                if not isinstance(converted, dict) or converted.get("apiVersion") != target:
                    raise ApiError(500, "", "conversion webhook for %s returned invalid object at index 0: invalid "
                                   "groupVersion (expected %s, received %s)"
                                   % (gvk, target, (converted or {}).get("apiVersion") if isinstance(converted, dict)
                                      else None))
                # restoreObjectMeta: only labels and annotations may change.
                md = copy.deepcopy(obj.get("metadata") or {})
                cmd = converted.get("metadata") or {}
                for k in ("labels", "annotations"):
                    if cmd.get(k):
                        md[k] = cmd[k]
                    else:
                        md.pop(k, None)
                converted["metadata"] = md
                return converted
        out["apiVersion"] = target
        return out

    def injected_conversion_failure(self, res, conv):
        for rule in self.conversion_failures:
            if rule["conversionFail"] != "%s/%s" % (res.group, res.kind):
                continue
            if rule["count"] > 0:
                rule["count"] -= 1
                if rule["count"] == 0:
                    self.conversion_failures.remove(rule)
            if rule.get("message"):
                return rule["message"]
            cc = (conv.get("webhook") or {}).get("clientConfig") or conv.get("webhookClientConfig") or {}
            svc = cc.get("service") or {}
            url = cc.get("url") or "https://%s.%s.svc:%s%s" % (svc.get("name", "webhook-service"),
                                                                svc.get("namespace", "default"),
                                                                svc.get("port", 443), svc.get("path", "/convert"))
            return 'Post "%s?timeout=30s": dial tcp 10.96.0.10:443: connect: connection refused' % url
        return None

    # --- decoding: pruning and field validation -----------------------------
    def decode(self, res, version, obj, field_validation):
        """Prune obj (in place) to ObjectMeta and the schema of `version`; unknown field paths.
        Warn adds a warning per field; the caller refuses Strict (its error depends on the verb)."""
        unknown = []
        if isinstance(obj.get("metadata"), dict):
            prune(obj["metadata"], OBJECT_META_SCHEMA, "metadata", unknown)
        body = []
        schema = self.schema(res, version)
        prune(obj, schema, "", body, root=True)
        apply_defaults(obj, schema)  # the CR decoder's unstructuredDefaulter
        unknown += sorted(body)
        if field_validation == "Warn":
            for p in unknown:
                add_warning('unknown field "%s"' % p)
        return unknown

    @staticmethod
    def strict_decoding_error(unknown):
        return "strict decoding error: " + ", ".join('unknown field "%s"' % p for p in unknown)

    # --- admission ----------------------------------------------------------
    def admit(self, res, obj, old, subresource=""):
        """The admission chain after the field manager: mutating (webhooks.default, warnings), the
        schema's type checks, validating (webhooks.validate). obj is at the storage version. Writes to
        /status skip the webhooks: a provider's webhook configurations name the main resource only."""
        hooks = WEBHOOKS is not None and not res.builtin and subresource != "status" and \
            getattr(WEBHOOKS, "handles", lambda g, k: False)(res.group, res.kind)
        if hooks and hasattr(WEBHOOKS, "default"):
            for w in WEBHOOKS.default(obj, self.crd_for) or []:
                add_warning(w)
        name = obj["metadata"].get("name", "")
        if not res.builtin:
            errs = []
            version = (obj.get("apiVersion") or "").rpartition("/")[2]
            type_errors(obj, self.schema(res, version), "", errs)
            if errs:
                raise err_invalid(res, name, errs)
        if hooks and hasattr(WEBHOOKS, "validate"):
            causes = WEBHOOKS.validate(obj, old, self.crd_for) or []
            if causes:
                raise err_invalid(res, name, [tuple(c) for c in causes])

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
        elif res.resource == "services":
            for port in ((obj.get("spec") or {}).get("ports") or []):
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
                    if "targetPort" not in port and "port" in port:
                        port["targetPort"] = port["port"]
        elif res.resource == "resourcequotas":
            self.prepare_quota(obj, old)
        elif res.resource == "customresourcedefinitions":
            self.validate_crd(res, obj)

    @staticmethod
    def prepare_quota(obj, old):
        """ResourceQuota: quantities in canonical form, empty omitempty fields dropped, spec and status
        always present; status starts empty on create (the quota controller fills it in)."""
        if old is None:
            obj["status"] = {}
        for part, keys in (("spec", ("hard",)), ("status", ("hard", "used"))):
            sec = obj.get(part)
            if not isinstance(sec, dict):
                sec = {}
            obj[part] = sec
            for k in keys:
                if isinstance(sec.get(k), dict):
                    try:
                        sec[k] = {n: canonical_quantity(v) for n, v in sec[k].items()}
                    except ValueError as e:
                        raise err_bad_request('ResourceQuota in version "v1" cannot be handled as a ResourceQuota: '
                                              '%s' % e)
                if not sec.get(k):
                    sec.pop(k, None)
        spec = obj["spec"]
        if not spec.get("scopes"):
            spec.pop("scopes", None)
        if spec.get("scopeSelector") is None:
            spec.pop("scopeSelector", None)

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
        schema = self.schema(res, version)
        before = field_set(old, True, status_only, schema) if old is not None else set()
        after = field_set(new, True, status_only, schema)
        conts = after - field_set(new, False, status_only, schema)

        def container(p):
            return p[-1].startswith("k:") or p in conts
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
    # Objects are stored at the CRD's storage version. A write at version V is
    # decoded (pruned) and merged at V, converted to the storage version, then
    # goes through admission; answers are converted back to V by the handler.

    def _create(self, res, version, ns, obj, manager, record=True, dry_run=False, managed=None):
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
        obj["apiVersion"], obj["kind"] = res.api_version(version), res.kind
        if res.has_status and not res.builtin:
            obj.pop("status", None)
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            md.pop(k, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if res.uses_generation:
            md["generation"] = 1
        self.prepare(res, obj)
        if managed is not None:
            md["managedFields"] = managed
        elif record and "managedFields" not in md:
            self.record_update(res, version, None, obj, manager, "")
        for k in ("labels", "annotations", "finalizers", "ownerReferences", "managedFields"):
            if k in md and not md[k]:
                md.pop(k)
        obj = self.convert(res, obj, res.storage_version)
        self.admit(res, obj, None)
        if dry_run:  # DryRunnableStorage.Create: everything but the resourceVersion
            return obj
        obj["metadata"]["resourceVersion"] = self.next_rv()
        self.bucket(res)[key] = obj
        self.emit(res, "ADDED", obj)
        self.after_change(res, obj)
        return obj

    def strict_create_error(self, res, version, body, unknown):
        """create.go/update.go transformDecodeError of the strict decoder's error: 400."""
        av = body.get("apiVersion") or res.api_version(version)
        return err_bad_request('%s in version "%s" cannot be handled as a %s: %s'
                               % (body.get("kind") or res.kind, av.rpartition("/")[2], res.kind,
                                  self.strict_decoding_error(unknown)))

    def create(self, res, version, ns, body, manager, dry_run=False, field_validation="Warn"):
        with self.lock:
            body = copy.deepcopy(body)
            unknown = self.decode(res, version, body, field_validation)
            if unknown and field_validation == "Strict":
                raise self.strict_create_error(res, version, body, unknown)
            return self._create(res, version, ns, body, manager, dry_run=dry_run)

    def commit(self, res, old_s, new, dry_run, subresource=""):
        """new (at the request version) to the storage version, admission, then stored."""
        new_s = self.convert(res, new, res.storage_version)
        self.admit(res, new_s, old_s, subresource)
        stored, _ = self.finish_update(res, old_s, new_s, dry_run)
        return stored

    def update(self, res, version, ns, name, body, manager, subresource="", dry_run=False, require_rv=None,
               field_validation="Warn", decoded=False):
        with self.lock:
            old_s = self.get(res, ns, name)
            old = self.convert(res, old_s, version)
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
            if not decoded:
                body = copy.deepcopy(body)
                unknown = self.decode(res, version, body, field_validation)
                if unknown and field_validation == "Strict":
                    raise self.strict_create_error(res, version, body, unknown)
            new = self.apply_subresource_rules(res, old, body, subresource)
            self.prepare(res, new, old)
            self.record_update(res, version, old, new, manager, subresource)
            return self.commit(res, old_s, new, dry_run, subresource)

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


    def patch(self, res, version, ns, name, ptype, patch, manager, subresource="", dry_run=False,
              field_validation="Warn"):
        with self.lock:
            old = self.convert(res, self.get(res, ns, name), version)
            if ptype == "json":
                body = json_patch(old, patch)
            else:
                if not isinstance(patch, dict):
                    raise err_bad_request("json: cannot unmarshal %s into Go value of type map[string]interface {}"
                                          % type(patch).__name__)
                body = merge_patch(old, patch)
            if not isinstance(body, dict):
                raise err_bad_request("the body of the request was in an unknown format")
            patched_js = go_json(body)
            unknown = self.decode(res, version, body, field_validation)
            if unknown and field_validation == "Strict":
                # patch.go jsonPatcher: errors.NewInvalid(schema.GroupKind{}, "", field.Invalid("patch", ...))
                value = "Invalid value: %s: %s" % (json.dumps(patched_js, ensure_ascii=False),
                                                   self.strict_decoding_error(unknown))
                raise ApiError(422, "Invalid", ' "" is invalid: patch: ' + value,
                               {"causes": [{"reason": "FieldValueInvalid", "message": value, "field": "patch"}]})
            return self.update(res, version, ns, name, body, manager, subresource, dry_run, require_rv=False,
                               field_validation=field_validation, decoded=True)

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
        schema = self.schema(res, version)
        # structuredmerge.go Apply: the patch's typed conversion. Not a Status error, so a 500 with no reason
        # whatever fieldValidation says (kubernetes/kubernetes#122480).
        errs = []
        smd_errors(applied, schema, "", errs)
        if errs:
            raise ApiError(500, "", "failed to create typed patch object (%s/%s; %s/%s, Kind=%s): %s"
                           % (amd.get("namespace") or "", amd.get("name") or "", res.group, version, kind,
                              smd_message(errs)))
        status_only = True if subresource == "status" else (False if res.has_status else None)
        applied = copy.deepcopy(applied)
        if status_only is True:
            applied = {k: v for k, v in applied.items() if k in ("apiVersion", "kind", "metadata", "status")}
            applied["metadata"] = {k: v for k, v in amd.items() if k in ("name", "namespace")}
        elif status_only is False:
            applied.pop("status", None)
        aset = field_set(applied, status_only=status_only, schema=schema)
        me = {"manager": manager, "operation": "Apply"}
        if subresource:
            me["subresource"] = subresource
        with self.lock:
            self.check_namespace(res, ns)
            key = (ns if res.namespaced else None, name)
            old_s = self.bucket(res).get(key)
            if old_s is None:
                if subresource:
                    raise err_not_found(res, name)
                body = copy.deepcopy(applied)
                body.setdefault("metadata", {})["name"] = name
                body["metadata"].pop("managedFields", None)
                apply_defaults(body, schema)
                me.update({"apiVersion": res.api_version(version), "time": now_rfc3339(),
                           "fieldsType": "FieldsV1", "fieldsV1": set_to_fieldsv1(aset)})
                return self._create(res, version, ns, body, manager, dry_run=dry_run, managed=[me]), True
            old = self.convert(res, old_s, version)  # the field manager merges at the request version
            if amd.get("resourceVersion") and amd["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise err_conflict(res, name)
            entries = [copy.deepcopy(e) for e in self._entries(old)]
            sets = [(e, fieldsv1_to_set(e.get("fieldsV1"))) for e in entries]
            mine = [s for e, s in sets if self._entry_id(e) == self._entry_id(me)]
            prev = mine[0] if mine else set()
            # Merge the applied configuration into the live object.
            new = self._merge(old, applied, (), schema)
            # Fields this manager stopped applying, that nobody else owns, go away; a map or item
            # something of another manager's is in stays, and so do the key fields of a kept item.
            others_all = set()
            for e, s in sets:
                if self._entry_id(e) != self._entry_id(me):
                    others_all |= s
            done = set()
            for p in sorted(prev - aset - others_all, key=lambda p: (len(p), p)):
                if any(p[:i] in done for i in range(1, len(p))):
                    continue
                if any(len(o) > len(p) and o[:len(p)] == p for o in others_all):
                    continue
                parent = p[:-1]
                if parent and parent[-1].startswith("k:") and p[-1].startswith("f:") and \
                        p[-1][2:] in json.loads(parent[-1][2:]):
                    continue
                remove_at(new, p)
                done.add(p)
                q = p[:-1]
                while len(q) > 1 and q not in others_all and get_at(applied, q) is MISSING:
                    v = get_at(new, q)
                    if isinstance(v, dict) and not v:
                        remove_at(new, q)
                        q = q[:-1]
                    else:
                        break
            apply_defaults(new, schema)  # structuredmerge.go Apply: objectDefaulter.Default after the merge
            new = self.apply_subresource_rules(res, old, new, subresource)
            self.prepare(res, new, old)
            # Conflicts: fields whose value this apply changes and that another manager owns.
            conflicts = []
            for e, s in sets:
                if self._entry_id(e) == self._entry_id(me):
                    continue
                for p in sorted(aset & s):
                    if not p[-1].startswith("k:") and get_at(old, p) != get_at(new, p):
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
            return self.commit(res, old_s, new, dry_run, subresource), False

    def _merge(self, live, applied, path, schema):
        """Merge an applied configuration into the live object as the schema says: granular maps per key,
        set lists as a union, map lists per key (items merged), everything else replaced."""
        if isinstance(live, dict) and isinstance(applied, dict) and not map_atomic(schema):
            out = copy.deepcopy(live)
            for k, v in applied.items():
                p = path + ("f:" + k,)
                if p in STRIPPED:
                    continue
                if v is None:
                    out.pop(k, None)
                    continue
                cs, _ = s_prop(schema, k)
                lt = list_type(cs)
                if lt == "set" and isinstance(v, list) and isinstance(out.get(k), list):
                    out[k] = out[k] + [i for i in v if i not in out[k]]
                elif lt == "map" and isinstance(v, list) and isinstance(out.get(k), list):
                    merged = copy.deepcopy(out[k])
                    for item in v:
                        idx = [i for i, x in enumerate(merged)
                               if isinstance(x, dict) and isinstance(item, dict) and key_of(cs, x) == key_of(cs, item)]
                        if idx:
                            merged[idx[0]] = self._merge(merged[idx[0]], item, p + (item_key(cs, item),),
                                                         s_items(cs))
                        else:
                            merged.append(copy.deepcopy(item))
                    out[k] = merged
                else:
                    out[k] = self._merge(out.get(k), v, p, cs)
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
            # The discovery controller publishes a group/version asynchronously (customresource_discovery_
            # controller.go): a version new to discovery shows there only --discovery-lag seconds later.
            now = time.monotonic()
            for v in res.versions:
                if old is not None and v in old.versions:
                    res.discoverable_at[v] = old.discoverable_at.get(v, 0)
                elif self.discovery_lag > 0:
                    res.discoverable_at[v] = now + self.discovery_lag
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
    for g, vs in store.groups(discoverable=True).items():
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

def request_info(method, path, query):
    """k8s.io/apiserver/pkg/endpoints/request RequestInfoFactory: verb, group, resource, namespace, name."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
    info = {"resource_request": False, "verb": method.lower(), "path": path, "group": "", "version": "",
            "resource": "", "subresource": "", "namespace": "", "name": ""}
    if parts[:1] == ["api"] and len(parts) >= 3:
        info["version"], rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        info["group"], info["version"], rest = parts[1], parts[2], parts[3:]
    else:
        return info
    info["resource_request"] = True
    if rest[0] == "namespaces" and len(rest) > 1:
        info["namespace"] = rest[1]  # also for the namespace object itself, as requestinfo.go does
        if len(rest) > 2 and rest[2] not in ("status", "finalize"):
            rest = rest[2:]
    info["resource"] = rest[0]
    if len(rest) >= 2:
        info["name"] = rest[1]
    if len(rest) >= 3:
        info["subresource"] = rest[2]
    watching = (query.get("watch") or [""])[0] in ("true", "1")
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if method in ("GET", "HEAD"):
        info["verb"] = "watch" if watching else ("get" if info["name"] else "list")
    else:
        info["verb"] = verbs.get(method, method.lower())
        if method == "DELETE" and not info["name"]:
            info["verb"] = "deletecollection"
    return info


def forbidden(info, user, reason=""):
    """An authorizer's refusal (responsewriters.Forbidden, forbiddenMessage, apierrors.NewForbidden)."""
    if not info["resource_request"]:
        msg = 'User "%s" cannot %s path "%s"' % (user, info["verb"], info["path"])
    else:
        resource = info["resource"] + ("/" + info["subresource"] if info["subresource"] else "")
        if info["namespace"]:
            msg = 'User "%s" cannot %s resource "%s" in API group "%s" in the namespace "%s"' % (
                user, info["verb"], resource, info["group"], info["namespace"])
        else:
            msg = 'User "%s" cannot %s resource "%s" in API group "%s" at the cluster scope' % (
                user, info["verb"], resource, info["group"])
    if reason:
        msg += ": " + reason
    if not info["resource_request"]:
        return ApiError(403, "Forbidden", "forbidden: " + msg, {})
    gr = info["resource"] + ("." + info["group"] if info["group"] else "")
    details = {}
    if info["name"]:
        details["name"] = info["name"]
    if info["group"]:
        details["group"] = info["group"]
    details["kind"] = info["resource"]
    text = ('%s "%s" is forbidden: %s' % (gr, info["name"], msg)) if info["name"] else "%s is forbidden: %s" % (gr, msg)
    return ApiError(403, "Forbidden", text, details)


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
        for w in getattr(_request, "warnings", None) or []:
            self.send_header("Warning", warning_header(w))
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
        _request.warnings = []
        try:
            info = request_info(self.command, path, query)
            rule = self.injected(path, info)
            if rule is not None and self.apply_injection(rule, info):
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
        finally:
            _request.warnings = None

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
            if rule.get("conversionFail"):
                with self.server.store.lock:
                    self.server.store.conversion_failures.append(rule)
                return self.send_json(200, {"ok": True})
            with self.server.requests_lock:
                self.server.injections.append(rule)
            return self.send_json(200, {"ok": True})
        if path == "/_fake/reset-injections" and self.command == "POST":
            with self.server.requests_lock:
                self.server.injections.clear()
            with self.server.store.lock:
                self.server.store.conversion_failures[:] = [
                    r for r in self.server.store.conversion_failures if r.get("fromCommandLine")]
            return self.send_json(200, {"ok": True})
        return self.send_json(404, {"error": "unknown test endpoint"})

    def injected(self, path, info):
        """The first matching fault rule, used up by one (count -1: forever)."""
        with self.server.requests_lock:
            for rule in self.server.injections:
                if rule.get("method") and rule["method"] != self.command:
                    continue
                if rule.get("path") and not path.startswith(rule["path"]):
                    continue
                verbs = rule.get("verb") or (["list"] if rule.get("list") else None)
                if verbs and info["verb"] not in ([verbs] if isinstance(verbs, str) else verbs):
                    continue
                if rule["count"] > 0:
                    rule["count"] -= 1
                    if rule["count"] == 0:
                        self.server.injections.remove(rule)
                return dict(rule)
        return None

    def apply_injection(self, rule, info):
        """Delay, then answer with the rule's error like a real server would, or go on (code 0)."""
        if rule.get("delaySeconds"):
            time.sleep(float(rule["delaySeconds"]))
        code = int(rule.get("code", 0))
        if not code:
            return False
        if code == 403:
            self.send_error_status(forbidden(info, rule.get("user", "system:serviceaccount:metalsync:metalsync"),
                                             rule.get("reason", "")))
            return True
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
                if parts[2] not in st.groups(discoverable=True).get(parts[1], []):
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
            groups = st.groups(discoverable=True)
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
        now = time.monotonic()
        with st.lock:
            for r in sorted(st.resources.values(), key=lambda r: r.resource):
                if r.group != group or version not in r.versions or r.discoverable_at.get(version, 0) > now:
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
            if parts[:3] == ["openapi", "v3", "apis"] and len(parts) == 5 and \
                    parts[4] in st.groups(discoverable=True).get(parts[3], []):
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
        # fieldValidation absent means Warn (handlers' fieldValidation(): the default since 1.27).
        fv = q("fieldValidation") or "Warn"
        method = self.command
        if method in ("POST", "PUT", "PATCH") and fv not in ("Ignore", "Warn", "Strict"):
            # ValidateCreateOptions/UpdateOptions/PatchOptions: ValidateFieldValidation
            opts = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}[method]
            m = 'Unsupported value: "%s": supported values: "", "Ignore", "Strict", "Warn"' % fv
            raise ApiError(422, "Invalid", '%s.meta.k8s.io "" is invalid: fieldValidation: %s' % (opts, m),
                           {"group": "meta.k8s.io", "kind": opts,
                            "causes": [{"reason": "FieldValueNotSupported", "message": m,
                                        "field": "fieldValidation"}]})
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
                obj = st.create(res, version, ns, body, self.field_manager(query), dry_run=dry, field_validation=fv)
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
            obj = st.update(res, version, ns, name, body, self.field_manager(query), sub, dry, field_validation=fv)
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
            obj = st.patch(res, version, ns, name, kinds[ct], patch, self.field_manager(query), sub, dry,
                           field_validation=fv)
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
            try:
                out = obj if etype == "BOOKMARK" else st.output(res, version, obj)
            except ApiError as e:
                etype, out = "ERROR", e.status()
            if table and etype not in ("BOOKMARK", "ERROR"):
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
    ap.add_argument("--discovery-lag", type=float, default=0.0,
                    help="seconds between a CRD version being served and its showing in discovery")
    ap.add_argument("--conversion-fail", action="append", default=[], metavar="GROUP/KIND",
                    help="conversion of this kind fails as a webhook that cannot be reached")
    args = ap.parse_args()
    global WEBHOOKS
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        import webhooks
        WEBHOOKS = webhooks
    except ImportError as e:
        sys.stderr.write("fake-apiserver: warning: no webhooks module beside the server (%s): conversion "
                         "strategy Webhook behaves like None, no admission webhooks\n" % e)
    host, _, port = args.listen.rpartition(":")
    if (args.tls_cert is None) != (args.tls_key is None):
        ap.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        ap.error("--client-ca needs --tls-cert and --tls-key")

    store = Store(args.crd_establish_delay, args.discovery_lag)
    for gk in args.conversion_fail:
        store.conversion_failures.append({"conversionFail": gk, "count": -1, "fromCommandLine": True})
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
