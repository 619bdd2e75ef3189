#!/usr/bin/env bash
# The fake Kubernetes API server (tests/fake_kube/fake_apiserver.py) proven
# faithful with a real client: stock kubectl drives the seed's Cluster API
# objects through it, and its outputs, exit codes and the server messages it
# passes through are compared with what a real cluster prints.
#
# Two runs: plain HTTP, then HTTPS with a CA, a bearer token and a client
# certificate made here with openssl. kubectl sends user credentials only over
# TLS (kubernetes/kubectl#744), so the HTTP run's server asks for none.
set -euo pipefail
src=${METALSYNC_SOURCE_DIR:?}
fake="$src/tests/fake_kube/fake_apiserver.py"
crds="$src/tests/fake_kube/crds"
seed="$src/examples/repo/clusters/baremetal-cluster"
T=$(mktemp -d /tmp/metalsync-fakekube-XXXXXX)
pass=0; fail=0; skipped=0; pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -20 "$T"/server-*.log 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
skip() { echo "skip $1"; skipped=$((skipped+1)); }
# check DESCRIPTION COMMAND...: the command's success is the check.
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

command -v kubectl >/dev/null 2>&1 || { echo "skip: no kubectl on this machine"; exit 0; }
command -v openssl >/dev/null 2>&1 || { echo "skip: no openssl on this machine"; exit 0; }
python=/usr/bin/python3
[ -x "$python" ] || python=python3
export HOME="$T/home"   # kubectl's discovery cache and config stay in the temp dir
mkdir -p "$HOME"
minor=$(kubectl version --client -o json 2>/dev/null | "$python" -c 'import json,sys,re; print(re.sub(r"\D","",json.load(sys.stdin)["clientVersion"]["minor"]))' || echo 0)
echo "kubectl client minor version: $minor"

# k ARGS...: kubectl against the current kubeconfig; stdout+stderr in $T/out, exit code in $rc.
rc=0
k() { rc=0; timeout 120 kubectl "$@" >"$T/out" 2>&1 || rc=$?; }
out() { sed 's/\x1b\[[0-9;]*m//g' "$T/out"; }  # kubectl before 1.28 colours cluster-info even into a file
# expect DESCRIPTION EXPECTED-EXIT EXPECTED-OUTPUT kubectl-args...: exact output and exit code.
expect() {
    local what=$1 code=$2 want=$3; shift 3
    k "$@"
    if [ "$rc" -eq "$code" ] && [ "$(out)" = "$want" ]; then ok "$what"
    else bad "$what: exit $rc, output:"; out | sed 's/^/     | /'; echo "     expected exit $code:"; echo "$want" | sed 's/^/     | /'; fi
}
# wait_until DESCRIPTION SECONDS COMMAND...: a condition with a deadline.
wait_until() {
    local what=$1 deadline=$(( $(date +%s) + $2 )); shift 2
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if "$@" >/dev/null 2>&1; then ok "$what"; return 0; fi
        sleep 0.2
    done
    bad "$what"; return 0
}
# jp KIND/NAME JSONPATH [-n NS]: prints one field.
jp() { local obj=$1 path=$2; shift 2; timeout 60 kubectl get "$obj" "$@" -o "jsonpath=$path" 2>/dev/null; }
is_gone() { ! timeout 60 kubectl get "$@" >/dev/null 2>&1; }
# watchers_at_least N BASE: kubectl has opened N watches on the cluster baremetal-cluster.
watchers_at_least() {
    "$python" - "$@" <<'PY'
import json, ssl, sys, urllib.request
reqs = json.load(urllib.request.urlopen(sys.argv[2] + "/_fake/requests", context=ssl._create_unverified_context()))
n = sum(1 for r in reqs if r["method"] == "GET" and r["path"].endswith("/clusters")
        and r["query"].get("watch") == ["true"] and r["query"].get("fieldSelector") == ["metadata.name=baremetal-cluster"])
sys.exit(0 if n >= int(sys.argv[1]) else 1)
PY
}
being_deleted() { [ -n "$(jp "$1" '{.metadata.deletionTimestamp}')" ]; }

# start_server NAME ARGS...: the fake on a free port; sets $port.
start_server() {
    local name=$1; shift
    rm -f "$T/port-$name"
    "$python" "$fake" --listen 127.0.0.1:0 --port-file "$T/port-$name" --crds "$crds" "$@" \
        >"$T/server-$name.log" 2>&1 &
    pids+=($!)
    local deadline=$(( $(date +%s) + 30 ))
    while [ ! -s "$T/port-$name" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$T/port-$name" ] || { bad "fake server $name started"; cat "$T/server-$name.log"; exit 1; }
    port=$(cat "$T/port-$name")
    ok "fake server $name listening on 127.0.0.1:$port"
}

# ---------------------------------------------------------------------------
# The checks, run once per transport.
run_suite() {
    local run=$1 base=$2
    echo "== $run"
    rm -rf "$HOME/.kube/cache"

    # Server-side apply creates the seed's objects, in file order, as kubectl prints them.
    expect "$run: apply --server-side creates the seed's cluster objects" 0 \
"secret/baremetal-cluster-cloud-config serverside-applied
cluster.cluster.x-k8s.io/baremetal-cluster serverside-applied
openstackcluster.infrastructure.cluster.x-k8s.io/baremetal-cluster serverside-applied
kubeadmcontrolplane.controlplane.cluster.x-k8s.io/baremetal-cluster-control-plane serverside-applied
openstackmachinetemplate.infrastructure.cluster.x-k8s.io/baremetal-cluster-control-plane serverside-applied
machinedeployment.cluster.x-k8s.io/baremetal-cluster-workers serverside-applied
kubeadmconfigtemplate.bootstrap.cluster.x-k8s.io/baremetal-cluster-worker serverside-applied
openstackmachinetemplate.infrastructure.cluster.x-k8s.io/baremetal-cluster-worker serverside-applied" \
        apply --server-side -f "$seed"

    # The stored object carries the metadata the server owns.
    if [ "$minor" -ge 21 ]; then k get cluster baremetal-cluster -o yaml --show-managed-fields
    else k get cluster baremetal-cluster -o yaml; fi
    out >"$T/cluster.yaml"
    check "$run: get -o yaml shows uid, resourceVersion, creationTimestamp, generation 1, managedFields" \
        "$python" - "$T/cluster.yaml" "$minor" <<'PY'
import re, sys, yaml
o = yaml.safe_load(open(sys.argv[1]))
md = o["metadata"]
assert o["apiVersion"] == "cluster.x-k8s.io/v1beta2" and o["kind"] == "Cluster", o
assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", md["uid"]), md
assert re.fullmatch(r"[1-9][0-9]*", md["resourceVersion"]), md
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(md["creationTimestamp"])), md
assert md["generation"] == 1 and md["namespace"] == "default", md
assert o["spec"]["controlPlaneRef"]["name"] == "baremetal-cluster-control-plane", o
if int(sys.argv[2]) >= 21:
    [mf] = md["managedFields"]
    assert mf["manager"] == "kubectl" and mf["operation"] == "Apply" and mf["fieldsType"] == "FieldsV1", mf
    assert mf["apiVersion"] == "cluster.x-k8s.io/v1beta2", mf
    f = mf["fieldsV1"]["f:spec"]
    assert f["f:clusterNetwork"]["f:pods"]["f:cidrBlocks"] == {}, f   # lists are atomic
    assert f["f:infrastructureRef"] == {"f:apiGroup": {}, "f:kind": {}, "f:name": {}}, f
PY
    [ "$(jp secret/baremetal-cluster-cloud-config '{.type}')" = Opaque ] &&
        jp secret/baremetal-cluster-cloud-config '{.data.clouds\.yaml}' | base64 -d | grep -q "auth_type: none" &&
        ok "$run: the Secret's stringData is stored as base64 data, type Opaque" ||
        bad "$run: Secret data: $(jp secret/baremetal-cluster-cloud-config '{.data}')"

    # Re-applying the same files changes nothing: no resourceVersion moves.
    local kinds=secret,cluster,openstackcluster,kubeadmcontrolplane,openstackmachinetemplate,machinedeployment,kubeadmconfigtemplate
    local before after
    before=$(kubectl get "$kinds" -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}')
    k apply --server-side -f "$seed"
    after=$(kubectl get "$kinds" -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}')
    [ "$rc" -eq 0 ] && [ "$before" = "$after" ] && [ -n "$before" ] &&
        ok "$run: re-apply is a no-op (resourceVersions unchanged)" ||
        bad "$run: re-apply: exit $rc, before '$before', after '$after'"

    # Another field manager takes spec.replicas; a plain apply then conflicts.
    local kcp=kubeadmcontrolplane/baremetal-cluster-control-plane
    expect "$run: patch --field-manager other" 0 \
        "kubeadmcontrolplane.controlplane.cluster.x-k8s.io/baremetal-cluster-control-plane patched" \
        patch "$kcp" --type merge -p '{"spec":{"replicas":5}}' --field-manager other
    [ "$(jp "$kcp" '{.spec.replicas} {.metadata.generation}')" = "5 2" ] &&
        ok "$run: the spec change bumped generation to 2" || bad "$run: replicas/generation: $(jp "$kcp" '{.spec.replicas} {.metadata.generation}')"
    k apply --server-side -f "$seed/control-plane.yaml"
    [ "$rc" -eq 1 ] && out | grep -qxF 'error: Apply failed with 1 conflict: conflict with "other" using controlplane.cluster.x-k8s.io/v1beta2: .spec.replicas' &&
        out | grep -qF 're-run the apply' && out | grep -qF -- '--force-conflicts' &&
        ok "$run: apply reports the conflict with the Update manager, naming the field" ||
        { bad "$run: apply conflict: exit $rc"; out | sed 's/^/     | /'; }
    [ "$(jp "$kcp" '{.spec.replicas}')" = 5 ] && ok "$run: a conflicting apply changes nothing" || bad "$run: replicas after conflict: $(jp "$kcp" '{.spec.replicas}')"
    k apply --server-side --force-conflicts -f "$seed/control-plane.yaml"
    [ "$rc" -eq 0 ] && [ "$(jp "$kcp" '{.spec.replicas}')" = 3 ] &&
        ok "$run: --force-conflicts takes spec.replicas back" || { bad "$run: force: exit $rc"; out; }
    [ "$minor" -lt 21 ] || { [ "$(jp "$kcp" '{.metadata.managedFields[*].manager}')" = kubectl ] &&
        ok "$run: the other manager lost its only field and its managedFields entry" ||
        bad "$run: managers after force: $(jp "$kcp" '{.metadata.managedFields[*].manager}')"; }
    # A conflict with another *applier* names it without an API version.
    sed 's/replicas: 3/replicas: 4/' "$seed/control-plane.yaml" >"$T/cp4.yaml"
    k apply --server-side --field-manager ops -f "$T/cp4.yaml"
    [ "$rc" -eq 1 ] && out | grep -qxF 'error: Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' &&
        ok "$run: conflict with another applier" || { bad "$run: applier conflict: exit $rc"; out | sed 's/^/     | /'; }
    # The same value is no conflict: the field becomes co-owned.
    k apply --server-side --field-manager ops -f "$seed/control-plane.yaml"
    [ "$rc" -eq 0 ] && ok "$run: applying an equal value is no conflict" || { bad "$run: co-own: exit $rc"; out; }

    # Status subresource: only .status through /status, never through the object.
    local cl=cluster/baremetal-cluster
    if [ "$minor" -ge 24 ]; then
        expect "$run: patch --subresource=status" 0 "cluster.cluster.x-k8s.io/baremetal-cluster patched" \
            patch "$cl" --subresource=status --type merge -p '{"status":{"phase":"Provisioned"},"spec":{"paused":true}}'
        [ "$(jp "$cl" '{.status.phase}|{.spec.paused}|{.metadata.generation}')" = "Provisioned||1" ] &&
            ok "$run: the status write changed status only (no spec, no generation bump)" ||
            bad "$run: after status patch: $(jp "$cl" '{.status.phase}|{.spec.paused}|{.metadata.generation}')"
        expect "$run: a status change through the main resource is ignored" 0 \
            "cluster.cluster.x-k8s.io/baremetal-cluster patched (no change)" \
            patch "$cl" --type merge -p '{"status":{"phase":"Bogus"}}'
        expect "$run: the printer columns show the phase" 0 \
            "baremetal-cluster   Provisioned" \
            get "$cl" --no-headers -o custom-columns=NAME:.metadata.name,PHASE:.status.phase
        k get "$cl"
        # v1beta2's printer columns (cluster-api api/core/v1beta2/cluster_types.go): empty
        # availability columns here, as only the phase was written.
        out | head -1 | grep -qE '^NAME +AVAILABLE +CP AVAILABLE +CP UP-TO-DATE +W AVAILABLE +W UP-TO-DATE +PHASE +AGE +VERSION$' &&
            out | tail -1 | grep -qE '^baremetal-cluster +Provisioned +[0-9]+[smh]' &&
            ok "$run: kubectl get prints the server's table (v1beta2 printer columns)" || { bad "$run: table"; out; }
    else
        skip "$run: kubectl $minor has no patch --subresource (1.24+)"
    fi

    # Label selectors are evaluated by the server.
    local i
    for i in a b c d; do
        printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%s\n  namespace: default\n' "$i"
        case $i in
            a) printf '  labels: {tier: web, env: prod}\n' ;;
            b) printf '  labels: {tier: db, env: prod}\n' ;;
            c) printf '  labels: {tier: web, env: dev}\n' ;;
            d) printf '  labels: {owner: ops}\n' ;;
        esac
        printf 'data: {num: "%s"}\n---\n' "$i"
    done >"$T/cms.yaml"
    k apply --server-side -f "$T/cms.yaml"
    [ "$rc" -eq 0 ] || { bad "$run: apply configmaps"; out; }
    sel() { local want=$1 s=$2; local got
        got=$(timeout 60 kubectl get configmaps -l "$s" -o name 2>&1 | sed 's#configmap/##' | grep '^cm-' | tr '\n' ' ')
        [ "$got" = "$want" ] && ok "$run: -l '$s' -> $want" || bad "$run: -l '$s' -> '$got', expected '$want'"; }
    sel "cm-a cm-c " "tier=web"
    sel "cm-a cm-c " "tier==web"
    sel "cm-b cm-d " "tier!=web"
    sel "cm-a cm-b cm-c " "env"
    sel "cm-d " "!env"
    sel "cm-a cm-b " "tier in (web,db),env=prod"
    sel "cm-b cm-d " "tier notin (web)"
    sel "cm-c " "tier=web,env!=prod"
    k get configmaps -l 'tier in (web' -o name
    [ "$rc" -ne 0 ] && out | grep -q "unable to parse requirement" && ok "$run: a malformed selector is a client or server error" ||
        { [ "$rc" -ne 0 ] && ok "$run: a malformed selector is refused"; } || bad "$run: malformed selector accepted: $(out)"
    # Pagination: kubectl follows `continue` with --chunk-size.
    expect "$run: --chunk-size=1 pages through every object" 0 "$(printf 'configmap/cm-a\nconfigmap/cm-b\nconfigmap/cm-c\nconfigmap/cm-d')" \
        get configmaps --chunk-size=1 -o name
    expect "$run: json patch" 0 "configmap/cm-a patched" \
        patch configmap cm-a --type json -p '[{"op":"replace","path":"/data/num","value":"A"},{"op":"add","path":"/data/more","value":"1"}]'
    # Strategic merge patches (kubectl patch's default) work on built-in kinds;
    # custom resources have no patch strategies and a real server refuses them.
    expect "$run: strategic merge patch of a ConfigMap" 0 "configmap/cm-d patched" \
        patch configmap cm-d -p '{"data":{"extra":"1"}}'
    expect "$run: strategic merge patch of a custom resource is refused (415)" 1 \
        "error: application/strategic-merge-patch+json is not supported by cluster.x-k8s.io/v1beta2, Kind=Cluster: the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml" \
        patch cluster/baremetal-cluster -p '{"spec":{"paused":true}}'
    [ "$(jp configmap/cm-a '{.data.num}{.data.more}')" = A1 ] && ok "$run: json patch applied" || bad "$run: json patch: $(jp configmap/cm-a '{.data}')"
    # Field validation (kubectl sends fieldValidation=Strict unless --validate says otherwise): an
    # unknown field fails server-side apply in structured-merge-diff's typed conversion (a reason-less
    # 500) and create in the strict decoder (400); with --validate=warn it is dropped with a Warning.
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-unknown\nspec:\n  x: 1\ndata:\n  a: b\n' >"$T/cm-unknown.yaml"
    expect "$run: apply --server-side of an unknown field fails" 1 \
        "Error from server: failed to create typed patch object (default/cm-unknown; /v1, Kind=ConfigMap): .spec: field not declared in schema" \
        apply --server-side -f "$T/cm-unknown.yaml"
    expect "$run: create of an unknown field fails (Strict)" 1 \
        "Error from server (BadRequest): error when creating \"$T/cm-unknown.yaml\": ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\"" \
        create -f "$T/cm-unknown.yaml"
    k create -f "$T/cm-unknown.yaml" --validate=warn
    if [ "$rc" -eq 0 ] && out | grep -qx 'Warning: unknown field "spec"' && [ -n "$(jp configmap/cm-unknown '{.data.a}')" ] &&
        [ -z "$(jp configmap/cm-unknown '{.spec}')" ]; then ok "$run: create --validate=warn drops it with kubectl's Warning line"
    else bad "$run: create --validate=warn: exit $rc: $(out)"; fi
    kubectl delete configmap cm-unknown >/dev/null 2>&1 || true
    # An update with a stale resourceVersion conflicts, with the real message.
    kubectl get configmap cm-b -o yaml >"$T/cm-b.yaml"
    kubectl patch configmap cm-b --type merge -p '{"data":{"num":"B"}}' >/dev/null
    expect "$run: replace with a stale resourceVersion is a Conflict" 1 \
        "Error from server (Conflict): error when replacing \"$T/cm-b.yaml\": Operation cannot be fulfilled on configmaps \"cm-b\": the object has been modified; please apply your changes to the latest version and try again" \
        replace -f "$T/cm-b.yaml"
    expect "$run: create of an existing object is AlreadyExists" 1 \
        "Error from server (AlreadyExists): error when creating \"$seed/cluster.yaml\": clusters.cluster.x-k8s.io \"baremetal-cluster\" already exists
Error from server (AlreadyExists): error when creating \"$seed/cluster.yaml\": openstackclusters.infrastructure.cluster.x-k8s.io \"baremetal-cluster\" already exists" \
        create -f "$seed/cluster.yaml"

    # Watch: kubectl get -w sees a change made after it started.
    timeout 60 kubectl get configmaps -w >"$T/watch-$run.txt" 2>&1 &
    local watcher=$!; pids+=("$watcher")
    wait_until "$run: get -w lists the existing objects" 30 grep -q '^cm-a ' "$T/watch-$run.txt"
    kubectl create configmap cm-watched --from-literal=x=y >/dev/null
    wait_until "$run: get -w streams a new object" 30 grep -q '^cm-watched ' "$T/watch-$run.txt"
    kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true

    # Delete without finalizers: gone at once, and the NotFound text is the server's.
    local osmt=openstackmachinetemplate/baremetal-cluster-worker
    expect "$run: delete without finalizers" 0 \
        'openstackmachinetemplate.infrastructure.cluster.x-k8s.io "baremetal-cluster-worker" deleted' delete "$osmt"
    expect "$run: get after delete is NotFound" 1 \
        'Error from server (NotFound): openstackmachinetemplates.infrastructure.cluster.x-k8s.io "baremetal-cluster-worker" not found' get "$osmt"
    expect "$run: delete of an absent object is NotFound" 1 \
        'Error from server (NotFound): openstackmachinetemplates.infrastructure.cluster.x-k8s.io "baremetal-cluster-worker" not found' delete "$osmt"

    # Delete with a finalizer: the object lingers with a deletionTimestamp
    # until the finalizer goes; kubectl delete and kubectl wait --for=delete block until then.
    expect "$run: add a finalizer" 0 "cluster.cluster.x-k8s.io/baremetal-cluster patched" \
        patch "$cl" --type merge -p '{"metadata":{"finalizers":["cluster.cluster.x-k8s.io"]}}'
    "$python" -c "import sys,ssl,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/_fake/reset-requests', method='POST'), context=ssl._create_unverified_context())" "$base"
    timeout 120 kubectl delete "$cl" >"$T/delete-$run.txt" 2>&1 &
    local deleter=$!; pids+=("$deleter")
    wait_until "$run: the deleted object lingers with a deletionTimestamp" 30 \
        being_deleted "$cl"
    timeout 120 kubectl wait --for=delete "$cl" --timeout=100s >"$T/wait-$run.txt" 2>&1 &
    local waiter=$!; pids+=("$waiter")
    [ "$(jp "$cl" '{.metadata.finalizers[0]} {.metadata.generation}')" = "cluster.cluster.x-k8s.io 2" ] &&
        ok "$run: finalizer kept, generation bumped by the deletion" || bad "$run: lingering object: $(jp "$cl" '{.metadata}')"
    kill -0 "$deleter" 2>/dev/null && ok "$run: kubectl delete is still waiting" || bad "$run: kubectl delete returned early: $(cat "$T/delete-$run.txt")"
    k patch "$cl" --type merge -p '{"metadata":{"finalizers":["other.example.com/x"]}}'
    [ "$rc" -eq 1 ] && out | grep -qF 'no new finalizers can be added if the object is being deleted' &&
        ok "$run: no new finalizers on an object being deleted" || { bad "$run: new finalizer while deleting: exit $rc"; out; }
    # Both kubectl delete and kubectl wait watch the object; remove the finalizer once both do.
    wait_until "$run: kubectl delete and kubectl wait --for=delete are watching" 30 watchers_at_least 2 "$base"
    expect "$run: removing the finalizer" 0 "cluster.cluster.x-k8s.io/baremetal-cluster patched" \
        patch "$cl" --type merge -p '{"metadata":{"finalizers":null}}'
    local drc=0 wrc=0
    wait "$deleter" || drc=$?
    wait "$waiter" || wrc=$?
    [ "$drc" -eq 0 ] && [ "$(cat "$T/delete-$run.txt")" = 'cluster.cluster.x-k8s.io "baremetal-cluster" deleted' ] &&
        ok "$run: kubectl delete returned once the finalizer was removed" || bad "$run: delete: exit $drc $(cat "$T/delete-$run.txt")"
    [ "$wrc" -eq 0 ] && [ "$(cat "$T/wait-$run.txt")" = 'cluster.cluster.x-k8s.io/baremetal-cluster condition met' ] &&
        ok "$run: kubectl wait --for=delete returned" || bad "$run: wait: exit $wrc $(cat "$T/wait-$run.txt")"
    check "$run: the cluster is gone" is_gone "$cl"

    # Namespaces: creation is needed before content; deleting one deletes its content.
    sed 's/namespace: default/namespace: team-a/' "$seed/cluster.yaml" >"$T/cluster-team-a.yaml"
    expect "$run: apply into a missing namespace is NotFound" 1 \
        'Error from server (NotFound): namespaces "team-a" not found
Error from server (NotFound): namespaces "team-a" not found' \
        apply --server-side -f "$T/cluster-team-a.yaml"
    expect "$run: create namespace" 0 "namespace/team-a created" create namespace team-a
    expect "$run: apply into the new namespace" 0 \
        "cluster.cluster.x-k8s.io/baremetal-cluster serverside-applied
openstackcluster.infrastructure.cluster.x-k8s.io/baremetal-cluster serverside-applied" \
        apply --server-side -f "$T/cluster-team-a.yaml"
    expect "$run: list across namespaces" 0 "team-a   baremetal-cluster" \
        get clusters -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name
    expect "$run: delete namespace" 0 'namespace "team-a" deleted' delete namespace team-a
    expect "$run: its content went with it" 0 "No resources found in team-a namespace." get clusters -n team-a
    check "$run: the namespace is gone" is_gone namespace team-a

    # A CRD created through the API is served once it is Established, not before.
    cat >"$T/widget-crd.yaml" <<'Y'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
      subresources: {status: {}}
Y
    printf 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3}\n' >"$T/widget.yaml"
    local t0; t0=$(date +%s)
    expect "$run: apply a CRD" 0 "customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied" \
        apply --server-side -f "$T/widget-crd.yaml"
    k apply --server-side -f "$T/widget.yaml"
    if [ "$rc" -eq 1 ] && [ "$(out)" = "error: resource mapping not found for name: \"w1\" namespace: \"default\" from \"$T/widget.yaml\": no matches for kind \"Widget\" in version \"example.com/v1\"
ensure CRDs are installed first" ]; then ok "$run: a CRD is not served before it is Established"
    elif [ "$rc" -eq 0 ] && [ $(( $(date +%s) - t0 )) -ge 4 ]; then
        skip "$run: the machine was too slow to observe the CRD before it was Established"
    else bad "$run: CR before Established: exit $rc"; out | sed 's/^/     | /'; fi
    expect "$run: kubectl wait --for=condition=Established" 0 \
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com condition met" \
        wait --for=condition=Established crd/widgets.example.com --timeout=60s
    expect "$run: the CRD's kind is served once Established" 0 "widget.example.com/w1 serverside-applied" \
        apply --server-side -f "$T/widget.yaml"
    expect "$run: and listed" 0 "w1" get widgets --no-headers -o custom-columns=N:.metadata.name
    expect "$run: deleting the CRD" 0 'customresourcedefinition.apiextensions.k8s.io "widgets.example.com" deleted' \
        delete crd widgets.example.com
    k get widgets
    # kubectl may still hold the kind in its discovery cache; either way the server says no.
    [ "$rc" -eq 1 ] && { out | grep -qxF "error: the server doesn't have a resource type \"widgets\"" ||
        out | grep -qxF 'Error from server (NotFound): Unable to list "example.com/v1, Resource=widgets": the server could not find the requested resource (get widgets.example.com)'; } &&
        ok "$run: its kind is no longer served" || { bad "$run: widgets after CRD deletion: exit $rc"; out; }

    # The fake's request log saw kubectl's server-side apply as real servers do.
    check "$run: /_fake/requests records kubectl's apply PATCHes" "$python" - "$base" <<'PY'
import json, ssl, sys, urllib.request
reqs = json.load(urllib.request.urlopen(sys.argv[1] + "/_fake/requests", context=ssl._create_unverified_context()))
applies = [r for r in reqs if r["method"] == "PATCH" and r["content_type"] == "application/apply-patch+yaml"]
assert applies, "no apply requests"
a = [r for r in applies if r["path"] == "/apis/cluster.x-k8s.io/v1beta2/namespaces/team-a/clusters/baremetal-cluster"][0]
assert a["query"]["fieldManager"] == ["kubectl"] and a["query"]["force"] == ["false"], a["query"]
assert a["body"]["kind"] == "Cluster" and a["user_agent"].startswith("kubectl"), a
PY
}

# ---------------------------------------------------------------------------
# Run 1: plain HTTP. The kubeconfig carries a token, which kubectl keeps to
# itself over http://, so this server requires none.
start_server http --crd-establish-delay 5
base="http://127.0.0.1:$port"
cat >"$T/kubeconfig-http" <<Y
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: "$base"}
users:
- name: admin
  user: {token: not-sent-over-http}
contexts:
- name: fake
  context: {cluster: fake, user: admin, namespace: default}
current-context: fake
Y
export KUBECONFIG="$T/kubeconfig-http"
expect "http: kubectl reaches the fake" 0 "Kubernetes control plane is running at $base

To further debug and diagnose cluster problems, use 'kubectl cluster-info dump'." cluster-info
run_suite http "$base"

# Injected faults look like a real server's: client-go waits out a 429's
# Retry-After and retries; a 500 reaches the user as the server's message.
inject() { "$python" -c "import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/_fake/inject', data=sys.argv[2].encode(), method='POST'))" "$base" "$1"; }
inject '{"method": "GET", "path": "/api/v1/namespaces/default/configmaps", "code": 429, "retryAfterSeconds": 1}'
expect "http: kubectl retries after a 429 with Retry-After" 0 "configmap/cm-a" get configmap cm-a -o name
inject '{"method": "GET", "path": "/api/v1/namespaces/default/configmaps", "code": 500}'
expect "http: a 500 shows the server's Status message" 1 \
    "Error from server (InternalError): Internal error occurred: injected by the fake" get configmap cm-a -o name
# An injected RBAC refusal of one kind's list only: kubectl shows the real Forbidden message; gets work.
inject '{"path": "/apis/cluster.x-k8s.io/", "verb": "list", "code": 403, "count": -1}'
expect "http: an injected 403 on list shows the authorizer's message" 1 \
    'Error from server (Forbidden): clusters.cluster.x-k8s.io is forbidden: User "system:serviceaccount:metalsync:metalsync" cannot list resource "clusters" in API group "cluster.x-k8s.io" in the namespace "default"' \
    get clusters
expect "http: ... while a get of that kind passes the authorizer (NotFound, not Forbidden)" 1 \
    'Error from server (NotFound): clusters.cluster.x-k8s.io "baremetal-cluster" not found' \
    get cluster baremetal-cluster -o name
"$python" -c "import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/_fake/reset-injections', data=b'', method='POST'))" "$base"

# ---------------------------------------------------------------------------
# The Cluster API simulation (capi_sim.py) against the same server: the seed
# converges, a version change rolls the control plane one machine at a time,
# workers scale down, and deleting the Cluster takes its machines first.
count_machines() {  # count_machines SELECTOR JSONPATH-FILTERED-VALUE...: lines printed per machine
    timeout 60 kubectl get machines -l "$1" --no-headers \
        -o custom-columns=V:.spec.version,P:.status.phase,N:.status.nodeRef.name 2>/dev/null
}
converged() {  # converged CP-VERSION CP-COUNT WORKER-COUNT
    local cp wk
    cp=$(count_machines 'cluster.x-k8s.io/control-plane' | awk -v v="$1" '$1==v && $2=="Running" && $3!="<none>"' | wc -l)
    wk=$(count_machines 'cluster.x-k8s.io/deployment-name=baremetal-cluster-workers' | awk '$2=="Running"' | wc -l)
    [ "$(count_machines 'cluster.x-k8s.io/control-plane' | wc -l)" -eq "$2" ] && [ "$cp" -eq "$2" ] && [ "$wk" -eq "$3" ] &&
        [ "$(jp kubeadmcontrolplane/baremetal-cluster-control-plane '{.status.readyReplicas}/{.status.upToDateReplicas}/{.status.version}')" = "$2/$2/$1" ] &&
        [ "$(jp machinedeployment/baremetal-cluster-workers '{.status.readyReplicas}')" = "$3" ]
}
k apply --server-side -f "$seed"
"$python" "$src/tests/fake_kube/capi_sim.py" --server "$base" --interval 0.2 >"$T/capi-sim.log" 2>&1 &
sim=$!; pids+=("$sim")
wait_until "capi-sim: 3 control-plane and 2 worker machines Running" 120 converged v1.28.0 3 2
[ "$(jp cluster/baremetal-cluster '{.status.phase} {.metadata.finalizers[0]}')" = "Provisioned cluster.cluster.x-k8s.io" ] &&
    [ "$(jp cluster/baremetal-cluster '{.status.conditions[?(@.type=="Available")].status}')" = True ] &&
    ok "capi-sim: Cluster Provisioned, Available, with its finalizer" || bad "capi-sim: cluster status: $(jp cluster/baremetal-cluster '{.status}')"
"$python" -c "import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/_fake/reset-requests', method='POST'))" "$base"
sed 's/version: v1.28.0/version: v1.29.0/' "$seed/control-plane.yaml" >"$T/cp-v129.yaml"
sed 's/replicas: 2/replicas: 1/' "$seed/workers.yaml" >"$T/workers-1.yaml"
# The suite left "ops" co-owning the control plane's fields; take them, as metalsync does (force).
k apply --server-side --force-conflicts -f "$T/cp-v129.yaml" -f "$T/workers-1.yaml"
[ "$rc" -eq 0 ] || { bad "capi-sim: apply the upgrade"; out; }
wait_until "capi-sim: control plane rolled to v1.29.0, workers scaled to 1" 120 converged v1.29.0 3 1
check "capi-sim: the rollout created each new control-plane machine before deleting an old one" \
    "$python" - "$base" <<'PY'
import json, sys, urllib.request
reqs = json.load(urllib.request.urlopen(sys.argv[1] + "/_fake/requests"))
steps = [r["method"] for r in reqs if r["method"] in ("POST", "DELETE") and "/machines" in r["path"]
         and ("baremetal-cluster-control-plane" in r["path"] or
              (r["body"] or {}).get("metadata", {}).get("labels", {}).get("cluster.x-k8s.io/control-plane") == "")]
assert steps == ["POST", "DELETE"] * 3, steps
PY
"$python" -c "import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/_fake/reset-requests', method='POST'))" "$base"
k delete cluster baremetal-cluster
[ "$rc" -eq 0 ] && ok "capi-sim: kubectl delete cluster returned once the simulated controllers let it go" || { bad "capi-sim: delete cluster: exit $rc"; out; }
[ -z "$(count_machines 'cluster.x-k8s.io/cluster-name=baremetal-cluster')" ] && is_gone kubeadmcontrolplane/baremetal-cluster-control-plane &&
    ok "capi-sim: machines and control plane went before the Cluster" || bad "capi-sim: leftovers: $(count_machines 'cluster.x-k8s.io/cluster-name=baremetal-cluster')"
check "capi-sim: each machine was marked Deleting before it was deleted" "$python" - "$base" <<'PY'
import json, sys, urllib.request
reqs = json.load(urllib.request.urlopen(sys.argv[1] + "/_fake/requests"))
marked, deleted = set(), []
for r in reqs:
    parts = r["path"].split("/")
    if r["method"] == "PATCH" and parts[-1] == "status" and parts[-3] == "machines" and \
            (r["body"] or {}).get("status", {}).get("phase") == "Deleting":
        marked.add(parts[-2])
    elif r["method"] == "DELETE" and parts[-2] == "machines":
        assert parts[-1] in marked, (parts[-1], marked)
        deleted.append(parts[-1])
assert len(deleted) == 4, deleted
PY
kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true

# ---------------------------------------------------------------------------
# Run 2: HTTPS, a bearer token or a client certificate signed by the client CA.
pki="$T/pki"; mkdir -p "$pki"
(
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj "/CN=fake-kube-ca"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=kube-apiserver"
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile server.ext
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/O=system:masters/CN=metalsync-test"
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 1 -extfile client.ext
) >"$T/openssl.log" 2>&1 && ok "openssl made a CA, a server and a client certificate" || { bad "openssl"; cat "$T/openssl.log"; exit 1; }
token="t0k-$(date +%s%N)"
start_server https --tls-cert "$pki/server.crt" --tls-key "$pki/server.key" --client-ca "$pki/ca.crt" \
    --token "$token" --crd-establish-delay 5
base="https://127.0.0.1:$port"
cat >"$T/kubeconfig-https" <<Y
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: "$base", certificate-authority: "$pki/ca.crt"}
users:
- name: token
  user: {token: "$token"}
- name: cert
  user: {client-certificate: "$pki/client.crt", client-key: "$pki/client.key"}
- name: wrong
  user: {token: wrong-token}
contexts:
- name: token
  context: {cluster: fake, user: token, namespace: default}
- name: cert
  context: {cluster: fake, user: cert, namespace: default}
- name: wrong
  context: {cluster: fake, user: wrong, namespace: default}
current-context: token
Y
export KUBECONFIG="$T/kubeconfig-https"
# Without cached discovery kubectl fails on discovery first, and prints what it prints for a real server.
rm -rf "$HOME/.kube/cache"
k --context wrong get namespaces
[ "$rc" -eq 1 ] && [ "$(out | tail -1)" = "error: You must be logged in to the server (the server has asked for the client to provide credentials)" ] &&
    ok "https: a wrong token is refused" || { bad "https: wrong token: exit $rc"; out | sed 's/^/     | /'; }
check "https: no credentials: 401 with a Status body" "$python" - "$base" "$pki/ca.crt" <<'PY'
import json, ssl, sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/api/v1/namespaces", context=ssl.create_default_context(cafile=sys.argv[2]))
    sys.exit("no error")
except urllib.error.HTTPError as e:
    body = json.load(e)
    assert e.code == 401 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                      "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, body
PY
expect "https: the client certificate is accepted" 0 "default" \
    --context cert get namespace default --no-headers -o custom-columns=N:.metadata.name
run_suite https "$base"

echo "$pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ]
