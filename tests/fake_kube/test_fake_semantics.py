#!/usr/bin/env python3
"""The fake API server's Kubernetes semantics, checked over HTTP with the real
messages, codes and headers (tests/fake_kube/README.md names the apiserver
source of each): storage version and conversion, pruning under each
fieldValidation mode, Warning headers, dryRun, schema-driven list merging in
server-side apply, ResourceQuota's canonical quantities, discovery lagging
Established, and an injected RBAC refusal of one kind's list.

It runs its own copy of fake_apiserver.py in a temporary directory beside a
stub webhooks.py (conversion renames spec.size <-> spec.replicas; defaulting
and validation for its own test group only), with its own small CRDs.
Prints ok/FAIL lines and "N passed, N failed"; exit 1 on any failure.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
GROUP = "fake.metalsync.test"

STUB_WEBHOOKS = '''
"""Test stub of webhooks.py: v1alpha1 spec.size is v1 spec.replicas."""
import copy


class ConversionError(Exception):
    pass


def convert(obj, to_api_version, crd_for):
    out = copy.deepcopy(obj)
    spec = out.get("spec") or {}
    if to_api_version.endswith("/v1alpha1") and "replicas" in spec:
        spec["size"] = spec.pop("replicas")
    elif to_api_version.endswith("/v1") and "size" in spec:
        spec["replicas"] = spec.pop("size")
    out["apiVersion"] = to_api_version
    return out


def handles(group, kind):
    return group == "fake.metalsync.test" and kind == "Widget"


def default(obj, crd_for):
    assert crd_for("fake.metalsync.test", "Widget") is not None
    spec = obj.setdefault("spec", {})
    if "mode" not in spec:
        spec["mode"] = "auto"
        return ["spec.mode defaulted to \\"auto\\""]
    return []


def validate(obj, old, crd_for):
    if (obj.get("status") or {}).get("phase") == "Bad":
        return [("status.phase", "FieldValueInvalid", 'Invalid value: "Bad": refused by the validating webhook')]
    if (obj.get("spec") or {}).get("replicas", 0) < 0:
        return [("spec.replicas", "FieldValueInvalid", "Invalid value: %d: must be >= 0" % obj["spec"]["replicas"])]
    return []
'''


def widget_schema(count_field):
    return {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            count_field: {"type": "integer"},
            "mode": {"type": "string"},
            "priority": {"type": "integer", "default": 5},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                                 "port": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "selector": {"type": "object", "additionalProperties": {"type": "string"},
                         "x-kubernetes-map-type": "atomic"}}},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets." + GROUP},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
             "conversion": {"strategy": "Webhook", "webhook": {
                 "conversionReviewVersions": ["v1"],
                 "clientConfig": {"service": {"name": "widget-webhook", "namespace": "widget-system",
                                              "path": "/convert"}}}},
             "versions": [
                 {"name": "v1alpha1", "served": True, "storage": False, "subresources": {"status": {}},
                  "schema": {"openAPIV3Schema": widget_schema("size")}},
                 {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                  "schema": {"openAPIV3Schema": widget_schema("replicas")}}]}}

GADGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.other.metalsync.test"},
    "spec": {"group": "other.metalsync.test", "scope": "Cluster",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]}}

passed = failed = 0


def check(what, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what + ("\n     " + str(detail).replace("\n", "\n     ") if detail else ""))


class Client:
    def __init__(self, base):
        self.base = base

    def req(self, method, path, body=None, ctype="application/json"):
        """(code, parsed body or text, list of Warning headers)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            r.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                code, raw, headers = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            code, raw, headers = e.code, e.read(), e.headers
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode()
        return code, parsed, headers.get_all("Warning") or []

    def apply(self, path, obj, manager, query=""):
        return self.req("PATCH", path + "?fieldManager=%s%s" % (manager, query), obj, "application/apply-patch+yaml")


def widget(version, name, spec):
    return {"apiVersion": "%s/%s" % (GROUP, version), "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def main():
    tmp = tempfile.mkdtemp(prefix="fake-semantics-")
    proc = None
    try:
        shutil.copy(os.path.join(HERE, "fake_apiserver.py"), tmp)
        with open(os.path.join(tmp, "webhooks.py"), "w") as f:
            f.write(STUB_WEBHOOKS)
        crds = os.path.join(tmp, "crds.json")
        with open(crds, "w") as f:
            json.dump(WIDGET_CRD, f)
        port_file = os.path.join(tmp, "port")
        proc = subprocess.Popen([sys.executable, os.path.join(tmp, "fake_apiserver.py"), "--listen", "127.0.0.1:0",
                                 "--port-file", port_file, "--crds", crds, "--crd-establish-delay", "0.2",
                                 "--discovery-lag", "1.5"], stderr=open(os.path.join(tmp, "server.log"), "w"))
        deadline = time.time() + 20
        while not os.path.exists(port_file) and time.time() < deadline:
            time.sleep(0.05)
        c = Client("http://127.0.0.1:%s" % open(port_file).read().strip())
        run(c)
        without_webhooks(tmp, crds)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        if failed:
            print("kept " + tmp)
            print(open(os.path.join(tmp, "server.log")).read()[-3000:])
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def without_webhooks(tmp, crds):
    """No webhooks.py beside the server: a warning on stderr, Webhook conversion only rewrites apiVersion."""
    bare = os.path.join(tmp, "bare")
    os.mkdir(bare)
    shutil.copy(os.path.join(HERE, "fake_apiserver.py"), bare)
    port_file = os.path.join(bare, "port")
    log = os.path.join(bare, "server.log")
    proc = subprocess.Popen([sys.executable, os.path.join(bare, "fake_apiserver.py"), "--listen", "127.0.0.1:0",
                             "--port-file", port_file, "--crds", crds], stderr=open(log, "w"))
    try:
        deadline = time.time() + 20
        while not os.path.exists(port_file) and time.time() < deadline:
            time.sleep(0.05)
        c = Client("http://127.0.0.1:%s" % open(port_file).read().strip())
        base = "/apis/%s/%%s/namespaces/default/widgets/nw" % GROUP
        code, body, _ = c.apply(base % "v1alpha1", widget("v1alpha1", "nw", {"size": 3}), "metalsync")
        code2, body2, _ = c.req("GET", base % "v1")
        check("without webhooks.py: strategy Webhook behaves like None (apiVersion only, no admission)",
              code == 201 and code2 == 200 and body2["apiVersion"] == GROUP + "/v1"
              and "replicas" not in body2["spec"] and "mode" not in body2["spec"], (body, body2))
        check("... and v1alpha1's spec.size, unknown to the storage version, is pruned on the way (as a real "
              "None conversion between different schemas loses it)", "size" not in body2["spec"]
              and "size" not in body["spec"], (body, body2))
    finally:
        proc.terminate()
        proc.wait(10)
    check("... and the server says so on stderr", "warning: no webhooks module" in open(log).read(),
          open(log).read())


def run(c):
    base1 = "/apis/%s/v1/namespaces/default/widgets" % GROUP
    base0 = "/apis/%s/v1alpha1/namespaces/default/widgets" % GROUP

    # --- discovery lag at startup: served before it is discoverable -----------------------
    code, _, _ = c.req("GET", base1)
    check("a new CRD's resource is served at its path at once", code == 200, code)
    code, body, _ = c.req("GET", "/apis")
    check("... but its group is not yet in /apis (discovery lags)",
          GROUP not in [g["name"] for g in body["groups"]], body)
    code, _, _ = c.req("GET", "/apis/%s/v1" % GROUP)
    check("... and /apis/GROUP/VERSION answers 404", code == 404, code)
    time.sleep(1.7)
    code, body, _ = c.req("GET", "/apis")
    check("after --discovery-lag the group is in /apis",
          GROUP in [g["name"] for g in body["groups"]], body)
    code, body, _ = c.req("GET", "/apis/%s/v1" % GROUP)
    check("... and its resources in /apis/GROUP/VERSION",
          code == 200 and "widgets" in [r["name"] for r in body["resources"]], body)

    # --- conversion on write and read; managedFields at the request version ---------------
    code, body, warns = c.apply(base0 + "/w1", widget("v1alpha1", "w1", {"size": 3, "mode": "manual"}), "metalsync")
    check("apply at a non-storage version creates (201) and answers at that version",
          code == 201 and body["apiVersion"] == GROUP + "/v1alpha1" and body["spec"].get("size") == 3, body)
    mf = body["metadata"].get("managedFields") or [{}]
    check("managedFields record the request version", mf[0].get("apiVersion") == GROUP + "/v1alpha1", mf)
    code, body, _ = c.req("GET", base1 + "/w1")
    check("read at the storage version: converted by the webhook (spec.replicas)",
          body["apiVersion"] == GROUP + "/v1" and body["spec"].get("replicas") == 3 and "size" not in body["spec"],
          body)
    code, objs, _ = c.req("GET", "/_fake/objects")
    stored = [o for o in objs if o.get("kind") == "Widget" and o["metadata"]["name"] == "w1"]
    check("stored at the CRD's storage version", stored and stored[0]["apiVersion"] == GROUP + "/v1"
          and stored[0]["spec"].get("replicas") == 3, stored)
    code, body, _ = c.req("GET", base0)
    check("list at the other version converts every item",
          code == 200 and body["apiVersion"] == GROUP + "/v1alpha1" and body["items"][0]["spec"].get("size") == 3,
          body)
    code, body, _ = c.apply(base0 + "/w1", widget("v1alpha1", "w1", {"size": 4, "mode": "manual"}), "metalsync")
    code2, body2, _ = c.req("GET", base1 + "/w1")
    check("apply at v1alpha1 merges at v1alpha1 and stores replicas 4",
          code == 200 and body["spec"]["size"] == 4 and body2["spec"]["replicas"] == 4, (body, body2))

    # --- conversion failure injected (a provider's webhook restarting) -------------------
    c.req("POST", "/_fake/inject", {"conversionFail": GROUP + "/Widget", "count": -1})
    code, body, _ = c.req("GET", base0 + "/w1")
    want = ('conversion webhook for %s/v1, Kind=Widget failed: Post "https://widget-webhook.widget-system.svc:443'
            '/convert?timeout=30s": dial tcp 10.96.0.10:443: connect: connection refused' % GROUP)
    check("injected conversion failure: 500 with no reason and the real wording",
          code == 500 and body.get("message") == want and "reason" not in body, body)
    code, _, _ = c.req("GET", base0)
    check("... a list at that version fails too", code == 500, code)
    code, _, _ = c.req("GET", base1 + "/w1")
    check("... a read at the storage version needs no conversion", code == 200, code)
    c.req("POST", "/_fake/reset-injections")
    code, _, _ = c.req("GET", base0 + "/w1")
    check("... and reset-injections ends it", code == 200, code)

    # --- pruning and fieldValidation on create --------------------------------------------
    w = widget("v1", "w2", {"replicas": 1, "mode": "m", "bogus": 1, "config": {"free": {"form": True}}})
    w["metadata"]["bogusMeta"] = "x"
    code, body, warns = c.req("POST", base1, w)
    check("create without fieldValidation (Warn): 201, unknown fields pruned, preserved subtree kept",
          code == 201 and "bogus" not in body["spec"] and "bogusMeta" not in body["metadata"]
          and body["spec"]["config"] == {"free": {"form": True}}, body)
    check("... one Warning header per unknown field, in the real format",
          warns == ['299 - "unknown field \\"metadata.bogusMeta\\""', '299 - "unknown field \\"spec.bogus\\""'], warns)
    w["metadata"]["name"] = "w3"
    code, body, warns = c.req("POST", base1 + "?fieldValidation=Ignore", w)
    check("fieldValidation=Ignore: pruned silently", code == 201 and not warns and "bogus" not in body["spec"],
          (code, warns))
    w["metadata"]["name"] = "w4"
    code, body, warns = c.req("POST", base1 + "?fieldValidation=Strict", w)
    check("fieldValidation=Strict on create: 400 BadRequest, strict decoder's message",
          code == 400 and body.get("reason") == "BadRequest" and body.get("message") ==
          'Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
          'unknown field "metadata.bogusMeta", unknown field "spec.bogus"', body)
    code, body, _ = c.req("GET", base1 + "/w4")
    check("... and nothing was stored", code == 404, code)
    code, body, _ = c.req("POST", base1 + "?fieldValidation=Loose", w)
    check("an unknown fieldValidation value: 422 from ValidateCreateOptions",
          code == 422 and body.get("message") == 'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: '
          'Unsupported value: "Loose": supported values: "", "Ignore", "Strict", "Warn"', body)
    code, cur, _ = c.req("GET", base1 + "/w2")
    cur["spec"]["bogus"] = 2
    code, body, _ = c.req("PUT", base1 + "/w2?fieldValidation=Strict", cur)
    check("fieldValidation=Strict on update: 400 with the same wording",
          code == 400 and body.get("message") == 'Widget in version "v1" cannot be handled as a Widget: strict '
          'decoding error: unknown field "spec.bogus"', body)
    code, body, _ = c.req("PATCH", base1 + "/w2?fieldValidation=Strict", {"spec": {"bogus": 1}},
                          "application/merge-patch+json")
    check("fieldValidation=Strict on a merge patch: 422 Invalid on field \"patch\"",
          code == 422 and body.get("message", "").startswith(' "" is invalid: patch: Invalid value: "{')
          and body["message"].endswith('": strict decoding error: unknown field "spec.bogus"')
          and body["details"]["causes"][0]["field"] == "patch", body)
    code, body, warns = c.req("PATCH", base1 + "/w2", {"spec": {"bogus": 1}}, "application/merge-patch+json")
    check("a merge patch with an unknown field (Warn): 200, warned, pruned",
          code == 200 and warns == ['299 - "unknown field \\"spec.bogus\\""'] and "bogus" not in body["spec"],
          (code, warns))

    # --- apply: typed conversion refuses unknown fields and wrong types whatever the mode -----
    a = widget("v1", "w5", {"replicas": 1, "bogus": True})
    for mode in ("", "&fieldValidation=Ignore", "&fieldValidation=Strict"):
        code, body, _ = c.apply(base1 + "/w5", a, "metalsync", mode)
        check("apply with an unknown field%s: 500, structured-merge-diff's message" % (mode or " (no mode)"),
              code == 500 and "reason" not in body and body.get("message") ==
              "failed to create typed patch object (default/w5; %s/v1, Kind=Widget): .spec.bogus: field not "
              "declared in schema" % GROUP, body)
    code, body, _ = c.apply(base1 + "/w5", widget("v1", "w5", {"replicas": "three"}), "metalsync")
    check("apply with a string for an integer: 500 typed-conversion error",
          code == 500 and body.get("message") == "failed to create typed patch object (default/w5; %s/v1, "
          "Kind=Widget): .spec.replicas: expected numeric (int or float), got string" % GROUP, body)
    code, body, _ = c.req("POST", base1, widget("v1", "w6", {"replicas": "three"}))
    check("create with a string for an integer: 422 with the field path",
          code == 422 and body.get("reason") == "Invalid" and body.get("message") ==
          'Widget.%s "w6" is invalid: spec.replicas: Invalid value: "string": spec.replicas in body must be of '
          'type integer: "string"' % GROUP and body["details"]["causes"][0]["field"] == "spec.replicas", body)

    # --- schema defaults ----------------------------------------------------------------------
    code, body, _ = c.req("POST", base1, widget("v1", "d1", {"replicas": 1}))
    fields = [e for e in body["metadata"]["managedFields"] if e["manager"] == "Python-urllib"]
    check("create: the schema's default is applied and owned by the creator (decoded before the field manager)",
          code == 201 and body["spec"].get("priority") == 5 and fields
          and "f:priority" in fields[0]["fieldsV1"]["f:spec"], body)
    code, body, _ = c.apply(base1 + "/d2", widget("v1", "d2", {"replicas": 1}), "metalsync")
    code, body, _ = c.apply(base1 + "/d2", widget("v1", "d2", {"replicas": 2}), "metalsync")
    mine = [e for e in body["metadata"]["managedFields"] if e["manager"] == "metalsync"][0]["fieldsV1"]
    check("apply: defaulted after the merge, not owned by the applier",
          body["spec"].get("priority") == 5 and "f:priority" not in mine["f:spec"], body)

    # --- admission: webhooks.default warnings, webhooks.validate refusals -----------------
    code, body, warns = c.req("POST", base1, widget("v1", "w7", {"replicas": 2}))
    check("mutating admission defaults (at the storage version) and its warning goes out as a header",
          code == 201 and body["spec"].get("mode") == "auto" and
          warns == ['299 - "spec.mode defaulted to \\"auto\\""'], (body, warns))
    code, body, _ = c.req("PATCH", base1 + "/w7/status", {"status": {"phase": "Bad"}},
                          "application/merge-patch+json")
    check("a /status write skips the webhooks (their configurations name the main resource)",
          code == 200 and body["status"] == {"phase": "Bad"}, body)
    code, body, _ = c.apply(base1 + "/w8", widget("v1", "w8", {"replicas": -1}), "metalsync")
    check("validating admission refuses with 422 Invalid",
          code == 422 and body.get("message") == 'Widget.%s "w8" is invalid: spec.replicas: Invalid value: -1: '
          'must be >= 0' % GROUP, body)

    # --- dryRun ---------------------------------------------------------------------------
    code, lst, _ = c.req("GET", base1)
    rv_before = lst["metadata"]["resourceVersion"]
    code, body, warns = c.req("POST", base1 + "?dryRun=All", widget("v1", "dry", {"replicas": 1}))
    md = body.get("metadata", {})
    check("dry-run create: 201 with uid, creationTimestamp, generation, managedFields, no resourceVersion",
          code == 201 and md.get("uid") and md.get("creationTimestamp") and md.get("generation") == 1
          and md.get("managedFields") and "resourceVersion" not in md, body)
    check("... through the whole chain (defaulting ran)", body["spec"].get("mode") == "auto", body)
    code, _, _ = c.req("GET", base1 + "/dry")
    check("... nothing stored", code == 404, code)
    code, live, _ = c.req("GET", base1 + "/w1")
    code, body, _ = c.apply(base1 + "/w1", widget("v1", "w1", {"replicas": 9, "mode": "manual"}), "metalsync",
                            "&dryRun=All")
    check("dry-run apply of an existing object: the merged result, generation bumped, resourceVersion unchanged",
          code == 200 and body["spec"]["replicas"] == 9
          and body["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
          and body["metadata"]["generation"] == live["metadata"]["generation"] + 1, body)
    code, after, _ = c.req("GET", base1 + "/w1")
    check("... live object untouched", after == live, after)
    code, body, _ = c.req("PATCH", base1 + "/w1?dryRun=All", {"spec": {"replicas": 7}}, "application/merge-patch+json")
    code2, after, _ = c.req("GET", base1 + "/w1")
    check("dry-run merge patch: answered, not stored", code == 200 and body["spec"]["replicas"] == 7
          and after["spec"]["replicas"] == 4, (body, after))
    code, lst, _ = c.req("GET", base1)
    check("... no resourceVersion spent by any dry run", lst["metadata"]["resourceVersion"] == rv_before,
          (rv_before, lst["metadata"]["resourceVersion"]))
    code, body, _ = c.req("GET", base1 + "?watch=true&timeoutSeconds=1&resourceVersion=" + rv_before)
    check("... and no watch event", isinstance(body, str) and body.strip() == "", body)

    # --- map-list, set-list and atomic map merging in server-side apply --------------------
    ports = lambda *ps: [{"name": n, "port": p} for n, p in ps]
    c.apply(base1 + "/m1", widget("v1", "m1", {"replicas": 1, "ports": ports(("http", 80)), "tags": ["a"],
                                               "selector": {"app": "x", "tier": "web"}}), "metalsync")
    code, body, _ = c.apply(base1 + "/m1", widget("v1", "m1", {"ports": ports(("metrics", 9090)), "tags": ["b"]}),
                            "other")
    check("a second manager's map-list item is merged in, not replacing the list",
          [p["name"] for p in body["spec"]["ports"]] == ["http", "metrics"], body["spec"])
    check("set-list: union of both managers' items", body["spec"]["tags"] == ["a", "b"], body["spec"])
    code, body, _ = c.apply(base1 + "/m1", widget("v1", "m1", {"replicas": 1, "ports": ports(("http", 8080)),
                                                               "tags": ["a"], "selector": {"app": "y"}}),
                            "metalsync")
    check("metalsync's re-apply changes its item and keeps the other manager's",
          code == 200 and body["spec"]["ports"] == ports(("http", 8080), ("metrics", 9090))
          and body["spec"]["tags"] == ["a", "b"], body)
    check("atomic map (x-kubernetes-map-type: atomic) is replaced whole", body["spec"]["selector"] == {"app": "y"},
          body["spec"])
    mine = [e for e in body["metadata"]["managedFields"] if e["manager"] == "metalsync"][0]["fieldsV1"]
    other = [e for e in body["metadata"]["managedFields"] if e["manager"] == "other"][0]["fieldsV1"]
    check("FieldsV1 keys map-list items k:{...} and set items v:...",
          'k:{"name":"http"}' in mine["f:spec"]["f:ports"] and 'v:"a"' in mine["f:spec"]["f:tags"]
          and 'k:{"name":"metrics"}' in other["f:spec"]["f:ports"] and "f:selector" in mine["f:spec"]
          and mine["f:spec"]["f:selector"] == {}, (mine, other))
    code, body, _ = c.apply(base1 + "/m1", widget("v1", "m1", {"replicas": 1, "tags": ["a"],
                                                               "selector": {"app": "y"}}), "metalsync")
    check("an item metalsync stops applying goes; the other manager's stays",
          body["spec"]["ports"] == ports(("metrics", 9090)), body["spec"])

    # --- built-in Service: ports keyed by port and protocol ----------------------------------
    svc = lambda ps: {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s1", "namespace": "default"},
                      "spec": {"ports": ps}}
    c.apply("/api/v1/namespaces/default/services/s1", svc([{"name": "http", "port": 80}]), "metalsync")
    c.apply("/api/v1/namespaces/default/services/s1", svc([{"name": "dns", "port": 53, "protocol": "UDP"}]), "other")
    code, body, _ = c.apply("/api/v1/namespaces/default/services/s1", svc([{"name": "http", "port": 80,
                                                                            "targetPort": 8080}]), "metalsync")
    check("Service spec.ports merge by (port, protocol); the other manager's port survives",
          code == 200 and [(p["port"], p["protocol"]) for p in body["spec"]["ports"]] == [(80, "TCP"), (53, "UDP")]
          and body["spec"]["ports"][0]["targetPort"] == 8080, body)
    mine = [e for e in body["metadata"]["managedFields"] if e["manager"] == "metalsync"][0]["fieldsV1"]
    check("... keyed k:{\"port\":80,\"protocol\":\"TCP\"}",
          'k:{"port":80,"protocol":"TCP"}' in mine["f:spec"]["f:ports"], mine)

    # --- ResourceQuota: canonical quantities ------------------------------------------------
    rq = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q1", "namespace": "default"},
          "spec": {"hard": {"cpu": "1000m", "memory": "1024Mi", "pods": 10, "requests.storage": "0.5",
                            "limits.memory": "1.5Gi", "count/secrets": "1000"}, "scopes": []}}
    code, body, _ = c.req("POST", "/api/v1/namespaces/default/resourcequotas", rq)
    check("ResourceQuota spec.hard stored and returned in canonical form",
          code == 201 and body["spec"]["hard"] == {"cpu": "1", "memory": "1Gi", "pods": "10",
                                                   "requests.storage": "500m", "limits.memory": "1536Mi",
                                                   "count/secrets": "1k"}, body)
    check("... scopes: [] dropped (omitempty), status present", "scopes" not in body["spec"]
          and body.get("status") == {}, body)
    rv = body["metadata"]["resourceVersion"]
    rq2 = dict(rq, metadata={"name": "q1", "namespace": "default"})
    code, body, _ = c.apply("/api/v1/namespaces/default/resourcequotas/q1", rq2, "metalsync")
    code, body, _ = c.apply("/api/v1/namespaces/default/resourcequotas/q1", rq2, "metalsync")
    code3, body3, _ = c.apply("/api/v1/namespaces/default/resourcequotas/q1", rq2, "metalsync")
    check("re-applying the same non-canonical quantities changes nothing the second time",
          code3 == 200 and body3["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"], body3)
    code, body, _ = c.req("POST", "/api/v1/namespaces/default/resourcequotas",
                          dict(rq, metadata={"name": "q2"}, spec={"hard": {"cpu": "lots"}}))
    check("an invalid quantity is refused with the real message", code == 400 and "quantities must match the "
          "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'" in body.get("message", ""), body)

    # --- discovery lags a CRD created at run time ------------------------------------------
    code, body, _ = c.req("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", GADGET_CRD)
    served = False
    for _ in range(40):
        code, _, _ = c.req("GET", "/apis/other.metalsync.test/v1/gadgets")
        if code == 200:
            served = True
            break
        time.sleep(0.05)
    code, body, _ = c.req("GET", "/apis/other.metalsync.test")
    check("a CRD created at run time is served once Established, before its group is discoverable",
          served and code == 404, (served, code))
    time.sleep(1.6)
    code, body, _ = c.req("GET", "/apis/other.metalsync.test")
    check("... and discoverable --discovery-lag seconds later", code == 200, (code, body))

    # --- RBAC refusal of one kind's list ------------------------------------------------------
    c.req("POST", "/_fake/inject", {"code": 403, "verb": "list", "path": "/apis/%s/" % GROUP, "count": -1,
                                    "user": "system:serviceaccount:metalsync:metalsync"})
    code, body, _ = c.req("GET", base1)
    check("injected 403 on list: the real Forbidden Status",
          code == 403 and body.get("reason") == "Forbidden" and body.get("message") ==
          'widgets.%s is forbidden: User "system:serviceaccount:metalsync:metalsync" cannot list resource '
          '"widgets" in API group "%s" in the namespace "default"' % (GROUP, GROUP)
          and body.get("details") == {"group": GROUP, "kind": "widgets"}, body)
    code, body, _ = c.req("GET", "/apis/%s/v1/widgets" % GROUP)
    check("... at the cluster scope", code == 403 and body["message"].endswith("at the cluster scope"), body)
    code, _, _ = c.req("GET", base1 + "/w1")
    check("... while a get of the same kind works", code == 200, code)
    code, _, _ = c.req("GET", "/apis/other.metalsync.test/v1/gadgets")
    check("... and other kinds' lists work", code == 200, code)
    c.req("POST", "/_fake/reset-injections")
    code, _, _ = c.req("GET", base1)
    check("... until reset-injections", code == 200, code)


if __name__ == "__main__":
    sys.exit(main())
