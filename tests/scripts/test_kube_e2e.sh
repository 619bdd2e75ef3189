#!/usr/bin/env bash
# End to end, the cluster half of the seed: the real `metalsync daemon`
# applies the seed's Cluster API objects from a real Git repository to the
# fake Kubernetes API server (tests/fake_kube, proven faithful with kubectl by
# test_fake_kube_kubectl.sh), while capi_sim.py stands in for the Cluster API
# controllers. The cluster is created, scaled 3 -> 5 workers, upgraded
# v1.28.0 -> v1.29.0, drifted by hand, and deleted, all by Git commits; at each
# step we check what the fake received and what `metalsync cluster` shows.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-kube-e2e-XXXXXX)
pass=0; fail=0; daemon=""; fake=""; sim=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    [ -n "$sim" ] && kill "$sim" 2>/dev/null || true
    [ -n "$fake" ] && kill "$fake" 2>/dev/null || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -60 "$T/daemon.log" 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
sock="$T/metalsync.sock"
ms() { "$bin" "$@" -s "$sock"; }
token="kube-token-$(date +%s%N)"
commit() { git -C "$T/repo" add -A && git -C "$T/repo" -c user.name="Ada Operator" -c user.email=ada@example.invalid commit -qm "$1"; }

# wait_cmd DESCRIPTION SECONDS PYTHON-EXPR -- COMMAND...: runs COMMAND -o json
# until the expression over its output `j` holds.
wait_json() {
    local what=$1 seconds=$2 expr=$3; shift 3
    local deadline=$(( $(date +%s) + seconds ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if "$@" >"$T/out.json" 2>/dev/null || [ -s "$T/out.json" ]; then
            if /usr/bin/python3 -c "import json,sys; j=json.load(open('$T/out.json')); sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
                ok "$what"; return 0
            fi
        fi
        sleep 0.3
    done
    bad "$what (last: $(head -c 1500 "$T/out.json" 2>/dev/null))"; return 1
}
api() {  # api METHOD PATH [BODY [CONTENT-TYPE]] -> the response body
    local method=$1 path=$2 body=${3:-} type=${4:-application/json}
    if [ -n "$body" ]; then
        curl -s -X "$method" -H "Authorization: Bearer $token" -H "Content-Type: $type" --data "$body" "$server$path"
    else
        curl -s -X "$method" -H "Authorization: Bearer $token" "$server$path"
    fi
}
fake_get() { api GET "$1"; }

# --- the fake management cluster, with Cluster API's CRDs installed, and the simulated controllers
python3 "$src/tests/fake_kube/fake_apiserver.py" --listen 127.0.0.1:0 --port-file "$T/port" \
    --crds "$src/tests/fake_kube/crds" --token "$token" >"$T/fake.log" 2>&1 &
fake=$!
for _ in $(seq 200); do [ -s "$T/port" ] && break; sleep 0.05; done
server="http://127.0.0.1:$(cat "$T/port")"
curl -sf "$server/healthz" >/dev/null && ok "fake API server up" || bad "fake API server up"
python3 "$src/tests/fake_kube/capi_sim.py" --server "$server" --token "$token" --interval 0.4 >"$T/sim.log" 2>&1 &
sim=$!

cat > "$T/kubeconfig" <<K
apiVersion: v1
kind: Config
clusters:
- name: management
  cluster: {server: "$server"}
users:
- name: metalsync
  user: {token: "$token"}
contexts:
- name: management
  context: {cluster: management, user: metalsync, namespace: default}
current-context: management
K

# --- the repository: the seed's cluster, 3 workers, prune on
mkdir -p "$T/repo/clusters" "$T/state" "$T/credentials"
cp -r "$src/examples/repo/clusters/baremetal-cluster" "$T/repo/clusters/"
sed -i 's/^  replicas: 2$/  replicas: 3/' "$T/repo/clusters/baremetal-cluster/workers.yaml"
grep -q "replicas: 3" "$T/repo/clusters/baremetal-cluster/workers.yaml" || bad "workers.yaml edit (the example changed?)"
cat > "$T/repo/policy.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: Policy
metadata: {name: lab}
spec:
  prune: true
Y
git -C "$T/repo" init -q -b main
commit "baremetal-cluster: 3 control-plane machines, 3 workers"
first_commit=$(git -C "$T/repo" rev-parse HEAD)

cat > "$T/metalsync.yaml" <<CFG
instance: lab-bastion
stateDir: $T/state
socket: $sock
socketGroup: ""
credentialsDir: $T/credentials
git:
  url: file://$T/repo
  branch: main
  pollInterval: 1s
  retryInterval: 1s
ironic:
  endpoint: http://127.0.0.1:9
kubernetes:
  kubeconfig: $T/kubeconfig
  namespace: default
  resyncInterval: 3s
limits:
  kubernetesQPS: 200
metrics:
  listen: ""
CFG
"$bin" daemon --check-config --config "$T/metalsync.yaml" >/dev/null && ok "daemon --check-config" || bad "daemon --check-config"
"$bin" daemon --config "$T/metalsync.yaml" >"$T/daemon.log" 2>&1 &
daemon=$!

# --- create
wait_json "the cluster is created and converges: 3/3 control plane, 3/3 workers" 120 \
  "any(c['name']=='baremetal-cluster' and c['phase']=='Provisioned' and c['ready']=='True' and c['controlPlane']['ready']==3 and c['workers']['ready']==3 and c['workers']['desired']==3 for c in j['clusters'])" \
  ms clusters -o json

fake_get /_fake/requests > "$T/requests.json"
python3 - "$T/requests.json" <<'PY' && ok "every write was a server-side apply by field manager metalsync, forced" || bad "applies as server-side apply"
import json, sys
reqs = [r for r in json.load(open(sys.argv[1])) if r["method"] == "PATCH" and r["user_agent"].startswith("metalsync")]
assert len(reqs) >= 7, len(reqs)
for r in reqs:
    assert r["content_type"].startswith("application/apply-patch+yaml"), r
    assert r["query"].get("fieldManager") == ["metalsync"], r
    assert r["query"].get("force") == ["true"], r
PY
fake_get /apis/cluster.x-k8s.io/v1beta1/namespaces/default/clusters/baremetal-cluster > "$T/cluster.json"
python3 - "$T/cluster.json" "$first_commit" <<'PY' && ok "the Cluster carries the instance label, its source file:line and the commit" || bad "label and annotations on the Cluster: $(cat "$T/cluster.json")"
import json, sys
o = json.load(open(sys.argv[1]))
m = o["metadata"]
assert m["labels"]["metalsync.dev/instance"] == "lab-bastion", m
assert m["annotations"]["metalsync.dev/source"].startswith("clusters/baremetal-cluster/cluster.yaml:"), m
assert m["annotations"]["metalsync.dev/revision"] == sys.argv[2], m
PY
fake_get /api/v1/namespaces/default/secrets/baremetal-cluster-cloud-config > "$T/secret.json"
python3 -c "import json,base64,sys; o=json.load(open('$T/secret.json')); sys.exit(0 if 'bifrost' in base64.b64decode(o['data']['clouds.yaml']).decode() else 1)" \
  && ok "the identity Secret (stringData) is stored as data" || bad "identity Secret: $(head -c 400 "$T/secret.json")"

ms cluster baremetal-cluster > "$T/tree.txt" || true
grep -q "ControlPlane - KubeadmControlPlane/baremetal-cluster-control-plane" "$T/tree.txt" &&
grep -q "MachineDeployment/baremetal-cluster-workers" "$T/tree.txt" &&
grep -q "ClusterInfrastructure - OpenStackCluster/baremetal-cluster" "$T/tree.txt" &&
grep -qE "3 Machines\.\.\." "$T/tree.txt" && ok "metalsync cluster draws the clusterctl tree with grouped machines" || bad "cluster tree: $(cat "$T/tree.txt")"
ms cluster baremetal-cluster --no-grouping | grep -c "Machine/" > "$T/count" || true
[ "$(cat "$T/count")" = 6 ] && ok "--no-grouping lists all 6 machines" || bad "--no-grouping machine lines: $(cat "$T/count")"
sleep 0.1
# a pass with nothing to do applies nothing
fake_get /_fake/requests | python3 -c "import json,sys; print(sum(1 for r in json.load(sys.stdin) if r['method']=='PATCH' and '/status' not in r['path'] and r['user_agent'].startswith('metalsync')))" > "$T/patches_before"
sleep 4   # longer than resyncInterval: at least one more pass runs (not a synchronisation: the count must not move)
fake_get /_fake/requests | python3 -c "import json,sys; print(sum(1 for r in json.load(sys.stdin) if r['method']=='PATCH' and '/status' not in r['path'] and r['user_agent'].startswith('metalsync')))" > "$T/patches_after"
[ "$(cat "$T/patches_before")" = "$(cat "$T/patches_after")" ] && ok "a resync with nothing changed applies nothing" ||
  bad "resync re-applied: $(cat "$T/patches_before") -> $(cat "$T/patches_after") patches"

# --- scale 3 -> 5 workers
sed -i 's/^  replicas: 3$/  replicas: 5/' "$T/repo/clusters/baremetal-cluster/workers.yaml"
commit "scale workers to 5"
wait_json "scaled: the MachineDeployment asks for 5 and 5 workers are ready" 120 \
  "any(c['name']=='baremetal-cluster' and c['workers']['desired']==5 and c['workers']['ready']==5 for c in j['clusters'])" \
  ms clusters -o json
fake_get /apis/cluster.x-k8s.io/v1beta1/namespaces/default/machinedeployments/baremetal-cluster-workers |
  python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)['spec']['replicas']==5 else 1)" &&
  ok "the fake holds spec.replicas 5" || bad "MachineDeployment replicas in the fake"

# --- upgrade v1.28.0 -> v1.29.0, control plane and workers
sed -i 's/v1\.28\.0/v1.29.0/' "$T/repo/clusters/baremetal-cluster/control-plane.yaml" "$T/repo/clusters/baremetal-cluster/workers.yaml"
commit "upgrade to Kubernetes v1.29.0"
wait_json "upgraded: every machine runs v1.29.0, 3/3 and 5/5 ready" 180 \
  "j['cluster']['controlPlane']['version']=='v1.29.0' and all(m['version']=='v1.29.0' for m in j['cluster']['controlPlane']['machines']) and len(j['cluster']['controlPlane']['machines'])==3 and all(m['version']=='v1.29.0' for m in j['cluster']['machineDeployments'][0]['machines']) and len(j['cluster']['machineDeployments'][0]['machines'])==5 and j['cluster']['machineDeployments'][0]['replicas']['ready']==5" \
  ms cluster baremetal-cluster -o json
ms clusters > "$T/clusters.txt" || true
grep -q "v1.29.0" "$T/clusters.txt" && grep -q "3/3" "$T/clusters.txt" && grep -q "5/5" "$T/clusters.txt" &&
  ok "metalsync clusters shows 3/3, 5/5 at v1.29.0" || bad "clusters table: $(cat "$T/clusters.txt")"

# --- drift: someone scales by hand; metalsync puts Git's value back and says who changed it
api PATCH "/apis/cluster.x-k8s.io/v1beta1/namespaces/default/machinedeployments/baremetal-cluster-workers?fieldManager=kubectl-edit" \
  '{"spec":{"replicas":9}}' application/merge-patch+json >/dev/null
wait_json "drift corrected: replicas back to 5" 60 "j['spec']['replicas']==5" \
  fake_get /apis/cluster.x-k8s.io/v1beta1/namespaces/default/machinedeployments/baremetal-cluster-workers
wait_json "the drift is an event naming the field and the manager that changed it" 30 \
  "any(e['name']=='kube.object.drift-corrected' and '.spec.replicas' in e['message'] and 'kubectl-edit' in e['message'] for e in j['events'])" \
  ms events --limit 200 -o json

# --- the workload cluster's kubeconfig: printed, never logged
marker="workload-kubeconfig-$(date +%s%N)"
value=$(printf 'apiVersion: v1\nkind: Config\n# %s\n' "$marker" | base64 -w0)
api POST /api/v1/namespaces/default/secrets \
  "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"baremetal-cluster-kubeconfig\",\"namespace\":\"default\"},\"data\":{\"value\":\"$value\"}}" >/dev/null
"$bin" kubeconfig baremetal-cluster -c "$T/metalsync.yaml" > "$T/workload.kubeconfig" 2>"$T/kubeconfig.err" || true
grep -q "$marker" "$T/workload.kubeconfig" && grep -q "kind: Config" "$T/workload.kubeconfig" &&
  ok "metalsync kubeconfig prints the workload cluster's kubeconfig" || bad "kubeconfig: $(cat "$T/kubeconfig.err")"
"$bin" kubeconfig no-such-cluster -c "$T/metalsync.yaml" >/dev/null 2>"$T/kubeconfig.err" && bad "kubeconfig of an unknown cluster fails" ||
  { grep -q "no Secret default/no-such-cluster-kubeconfig" "$T/kubeconfig.err" && ok "kubeconfig of an unknown cluster: a clear error" || bad "kubeconfig error: $(cat "$T/kubeconfig.err")"; }

# --- a CRD, a Namespace and an object of the new kind in one commit: the CRD
# is applied first, the object once the CRD is Established (the fake takes 0.3 s)
mkdir -p "$T/repo/extra"
cat > "$T/repo/extra/widgets.yaml" <<'Y'
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: team-a}
spec: {size: 3}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
Y
commit "widgets: a CRD, its namespace and one widget"
wait_json "a CRD of the revision, then its Namespace, then its object" 60 \
  "j['spec']['size']==3" fake_get /apis/example.com/v1/namespaces/team-a/widgets/w1
fake_get /_fake/requests > "$T/requests.json"
python3 - "$T/requests.json" <<'PY' && ok "apply order: CRD, Namespace, Widget" || bad "apply order"
import json, sys
paths = [r["path"] for r in json.load(open(sys.argv[1])) if r["method"] == "PATCH" and r["user_agent"].startswith("metalsync")]
crd = paths.index("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
ns = paths.index("/api/v1/namespaces/team-a")
w = paths.index("/apis/example.com/v1/namespaces/team-a/widgets/w1")
assert crd < ns < w, paths
PY
# The pass that applied the Widget publishes its verdicts when it ends.
wait_json "metalsync objects: 11 objects in sync" 30 \
  "len(j['objects'])==11 and all(x['state']=='in-sync' for x in j['objects'])" ms objects -o json

# --- delete: the cluster leaves Git; the Cluster goes first, the rest after it is gone
git -C "$T/repo" rm -rq clusters extra
commit "retire baremetal-cluster"
wait_json "deleting: metalsync cluster reports the teardown in progress" 60 \
  "j['cluster']['deleting']==True" ms cluster baremetal-cluster -o json
wait_json "deleted: no cluster left" 180 "len(j.get('clusters', []))==0" ms clusters -o json
wait_json "pruned: templates and the identity Secret are gone after the Cluster" 60 \
  "not [o for o in j if o.get('metadata',{}).get('labels',{}).get('metalsync.dev/instance')=='lab-bastion']" \
  fake_get /_fake/objects
fake_get /_fake/requests > "$T/requests.json"
python3 - "$T/requests.json" <<'PY' && ok "the Cluster was deleted before its templates and Secret" || bad "delete order"
import json, sys
deletes = [r["path"] for r in json.load(open(sys.argv[1])) if r["method"] == "DELETE" and r["user_agent"].startswith("metalsync")]
first_cluster = min(i for i, p in enumerate(deletes) if "/clusters/baremetal-cluster" in p)
later = [i for i, p in enumerate(deletes) if "openstackmachinetemplates" in p or "/secrets/" in p]
assert later and all(i > first_cluster for i in later), deletes
PY
ms events --limit 300 -o json > "$T/events.json" || true
python3 - "$T/events.json" <<'PY' && ok "events: applied, pruned, cluster status" || bad "events: $(head -c 800 "$T/events.json")"
import json, sys
names = {e["name"] for e in json.load(open(sys.argv[1]))["events"]}
for n in ("kube.object.applied", "kube.object.pruned", "kube.object.deleted", "kube.cluster.status"):
    assert n in names, (n, names)
PY

# --- secrets: the API token and the workload kubeconfig never leave their place
ms status -o json > "$T/status.json" || true
for f in "$T/daemon.log" "$T/status.json" "$T/events.json" "$T/state/metalsync.db" "$T/state/metalsync.db-wal"; do
    [ -f "$f" ] || continue
    if grep -aq -e "$token" -e "$marker" "$f"; then bad "a secret leaked into $(basename "$f")"; else ok "no secret in $(basename "$f")"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
