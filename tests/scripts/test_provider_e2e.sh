#!/usr/bin/env bash
# End to end, metalsync as the Cluster API infrastructure provider of its own
# fleet: a real Ironic (fake-hardware) with a pool of six Git nodes, the fake
# Kubernetes API server, capi_sim.py standing in for Cluster API core and the
# kubeadm providers, and the real `metalsync daemon` with provider.enabled.
# A cluster of 1 control-plane and 2 worker machines is committed; workers
# scale to 3; the version is upgraded (every machine replaced, each old node
# cleaned and back in the pool) while the daemon is killed -9 at random
# moments; the cluster is deleted. Everything is checked through Ironic's own
# API (and its database for the config drive, which its API masks), never
# through metalsync's word alone.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-provider-e2e-XXXXXX)
pass=0; fail=0; daemon=""; fake=""; sim=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    [ -n "$sim" ] && kill "$sim" 2>/dev/null || true
    [ -n "$fake" ] && kill "$fake" 2>/dev/null || true
    "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -40 "$T/daemon.log" 2>/dev/null || true; tail -20 "$T/sim.log" 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
sock="$T/metalsync.sock"
ms() { "$bin" "$@" -s "$sock"; }
token="kube-token-$(date +%s%N)"
commit() { git -C "$T/repo" add -A && git -C "$T/repo" -c user.name="Ada Operator" -c user.email=ada@example.invalid commit -qm "$1"; }
api() { curl -s -H "Authorization: Bearer $token" "$server$1"; }

# wait_py DESCRIPTION SECONDS PYTHON-FILE-ARGS...: runs the check until it exits 0.
wait_check() {
    local what=$1 seconds=$2; shift 2
    local deadline=$(( $(date +%s) + seconds ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if "$@" >"$T/check.out" 2>&1; then ok "$what"; return 0; fi
        kill -0 "$sim" 2>/dev/null || { bad "$what: capi_sim.py died"; return 1; }
        kill -0 "$daemon" 2>/dev/null || { bad "$what: the daemon died"; return 1; }
        sleep 1
    done
    bad "$what (last: $(tail -c 1500 "$T/check.out"))"; return 1
}

# The world as Ironic and the API server see it, checked by one script.
cat > "$T/world.py" <<'PY'
import json, sys, urllib.request
ironic, server, token, want = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def ir(path):
    req = urllib.request.Request(ironic + path, headers={"X-OpenStack-Ironic-API-Version": "1.82"})
    return json.load(urllib.request.urlopen(req))
def kube(path):
    req = urllib.request.Request(server + path, headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))
nodes = ir("/v1/nodes?fields=name,provision_state,instance_uuid,instance_info,maintenance&limit=100")["nodes"]
by_name = {n["name"]: n for n in nodes}
mms = kube("/apis/infrastructure.cluster.x-k8s.io/v1alpha1/metalsyncmachines")["items"]
machines = kube("/apis/cluster.x-k8s.io/v1beta2/machines")["items"]
uids = {m["metadata"]["uid"]: m for m in mms}
# Never one node for two machines, never a machine on two nodes.
claimed = [n["instance_uuid"] for n in nodes if n["instance_uuid"]]
assert len(claimed) == len(set(claimed)), ("a machine on two nodes", claimed)
if want.startswith("running:"):
    cp, workers, version = want.split(":")[1:]
    cp, workers = int(cp), int(workers)
    running = [m for m in machines if m.get("status", {}).get("phase") == "Running"]
    cps = [m for m in running if "cluster.x-k8s.io/control-plane" in m["metadata"].get("labels", {})]
    wks = [m for m in running if "cluster.x-k8s.io/deployment-name" in m["metadata"].get("labels", {})]
    assert len(machines) == cp + workers, ("machines", [m["metadata"]["name"] for m in machines])
    assert len(cps) == cp and len(wks) == workers, ("running", len(cps), len(wks))
    assert all(m["spec"].get("version") == version for m in machines), [m["spec"].get("version") for m in machines]
    assert len(mms) == cp + workers, ("metalsyncmachines", len(mms))
    for mm in mms:
        node = mm.get("status", {}).get("node")
        pid = mm["spec"].get("providerID", "")
        assert node and pid == "metalsync://lab-bastion/" + node, (mm["metadata"]["name"], node, pid)
        n = by_name[node]
        assert n["provision_state"] == "active", (node, n["provision_state"])
        assert n["instance_uuid"] == mm["metadata"]["uid"], (node, n["instance_uuid"], mm["metadata"]["uid"])
        assert n["instance_info"].get("image_source") == "http://127.0.0.1:9/metal.qcow2", n["instance_info"]
        owner = [m for m in machines if m["metadata"]["name"] == mm["metadata"]["name"]]
        assert owner and owner[0]["spec"].get("providerID") == pid, ("Machine providerID", owner and owner[0]["spec"])
    active = [n for n in nodes if n["provision_state"] == "active"]
    assert len(active) == cp + workers, ("active nodes", [n["name"] for n in active])
    free = [n for n in nodes if n["provision_state"] == "available"]
    assert all(not n["instance_uuid"] for n in free), [(n["name"], n["instance_uuid"]) for n in free]
    assert len(free) == 6 - cp - workers, ("available nodes", [(n["name"], n["provision_state"]) for n in nodes])
elif want == "empty":
    assert not mms and not machines, (len(mms), len(machines))
    assert all(n["provision_state"] == "available" and not n["instance_uuid"] for n in nodes), \
        [(n["name"], n["provision_state"], n["instance_uuid"]) for n in nodes]
print("ok")
PY

# --- Ironic, the fake management cluster, the simulated Cluster API controllers
endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic")
python3 "$src/tests/fake_kube/fake_apiserver.py" --listen 127.0.0.1:0 --port-file "$T/port" \
    --crds "$src/tests/fake_kube/crds" --token "$token" >"$T/fake.log" 2>&1 &
fake=$!
for _ in $(seq 200); do [ -s "$T/port" ] && break; sleep 0.05; done
server="http://127.0.0.1:$(cat "$T/port")"
curl -sf "$server/healthz" >/dev/null && ok "fake API server up" || bad "fake API server up"
start_sim() {
    python3 "$src/tests/fake_kube/capi_sim.py" --server "$server" --token "$token" --interval 0.4 >>"$T/sim.log" 2>&1 &
    sim=$!
}
start_sim
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

# --- the repository: a pool of six nodes, and the metal cluster
mkdir -p "$T/repo/nodes" "$T/repo/clusters/metal" "$T/state" "$T/credentials"
printf 'username: admin\npassword: pool-secret\n' > "$T/credentials/lab-bmc"
chmod 600 "$T/credentials/lab-bmc"
cat > "$T/repo/class.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: NodeClass
metadata: {name: lab}
spec:
  bmc: {driver: fake-hardware, credentials: lab-bmc}
  interfaces: {boot: fake, deploy: fake, power: fake, management: fake, inspect: fake}
  properties: {cpu_arch: x86_64}
---
apiVersion: metalsync.dev/v1alpha1
kind: Policy
metadata: {name: lab}
spec:
  prune: true
Y
for i in 1 2 3 4 5 6; do
cat > "$T/repo/nodes/p$i.yaml" <<Y
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata:
  name: p$i
  labels: {metalsync.dev/pool: metal-cluster, rack: r1}
spec:
  class: lab
  bmc: {address: 192.0.2.$((40 + i))}
  ports: [{mac: "52:54:00:00:04:0$i"}]
  provisionState: available
Y
done
# The example's metal cluster, its image served (not fetched: fake deploy) from the test's loopback.
cp "$src"/examples/repo/clusters/metal-cluster/*.yaml "$T/repo/clusters/metal/"
sed -i 's|url: http://images.example/.*|url: http://127.0.0.1:9/metal.qcow2|' "$T/repo/clusters/metal/"*.yaml
grep -q "replicas: 2" "$T/repo/clusters/metal/workers.yaml" || bad "workers.yaml: the example changed?"
git -C "$T/repo" init -q -b main
commit "a pool of six, and the metal cluster: 1 control plane, 2 workers"
"$bin" validate "$T/repo" >"$T/validate.out" 2>&1 && ok "metalsync validate accepts the pool and the cluster" ||
    bad "validate: $(cat "$T/validate.out")"

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
  endpoint: $endpoint
kubernetes:
  kubeconfig: $T/kubeconfig
  namespace: default
  resyncInterval: 3s
provider:
  enabled: true
limits:
  ironicQPS: 50
  maxProvisioning: 4
  workers: 4
  kubernetesQPS: 200
metrics:
  listen: ""
CFG
start_daemon() {
    "$bin" daemon --config "$T/metalsync.yaml" >>"$T/daemon.log" 2>&1 &
    daemon=$!
}
start_daemon

# --- create
wait_check "1 control-plane and 2 worker machines Running on three pool nodes, checked in Ironic" 240 \
    python3 "$T/world.py" "$endpoint" "$server" "$token" running:1:2:v1.29.0

# The config drive Ironic holds (its API masks it: read its database).
python3 - "$T/ironic/ironic.db" "$endpoint" <<'PY' && ok "each active node's config drive carries its machine's bootstrap data and providerID" || bad "config drives"
import json, sqlite3, sys, urllib.request
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT name, instance_uuid, instance_info FROM nodes WHERE provision_state = 'active'").fetchall()
assert len(rows) == 3, rows
for name, uuid, info in rows:
    cd = json.loads(info)["configdrive"]
    assert cd["meta_data"]["providerid"] == "metalsync://lab-bastion/" + name, cd["meta_data"]
    assert cd["meta_data"]["uuid"] == uuid, (cd["meta_data"], uuid)
    machine = cd["meta_data"]["local-hostname"]
    assert machine in cd["user_data"], (machine, cd["user_data"][:200])
PY
ms nodes >"$T/nodes.out" 2>&1
grep -E "^p[1-6] .*claimed" "$T/nodes.out" | grep -q "MetalsyncMachine default/" &&
    [ "$(grep -cE 'claimed' "$T/nodes.out")" -eq 3 ] && ok "metalsync nodes names the machine holding each claimed node" ||
    bad "nodes view: $(cat "$T/nodes.out")"
ms cluster metal-cluster >"$T/cluster.out" 2>&1 || true
[ -n "${PROVIDER_E2E_SHOW:-}" ] && cat "$T/cluster.out" "$T/nodes.out"
[ "$(grep -cE 'Machine/metal-cluster-.*Ironic p[1-6] \(active\)' "$T/cluster.out")" -eq 3 ] &&
    ok "metalsync cluster shows each machine's Ironic node and its state" || bad "cluster view: $(cat "$T/cluster.out")"
ms events --limit 200 >"$T/events.out" 2>&1 || true
grep -q "provider.machine.claimed" "$T/events.out" && grep -q "provider.machine.provisioned" "$T/events.out" &&
    ok "claims and deploys are events" || bad "events: $(tail -20 "$T/events.out")"
python3 - "$T/state" "$T/daemon.log" <<'PY' && ok "bootstrap data never reaches metalsync's database or log" || bad "bootstrap data leaked"
import glob, sys
# capi_sim's bootstrap data carries this marker (a stand-in for a join token).
for f in glob.glob(sys.argv[1] + "/*.db*") + [sys.argv[2]]:
    data = open(f, "rb").read()
    assert b"#cloud-config" not in data, f
PY

# --- scale workers 2 -> 3
sed -i 's/^  replicas: 2$/  replicas: 3/' "$T/repo/clusters/metal/workers.yaml"
commit "metal: 3 workers"
wait_check "workers scaled to 3: a fourth pool node deployed" 180 \
    python3 "$T/world.py" "$endpoint" "$server" "$token" running:1:3:v1.29.0

# --- upgrade, with kill -9 at random moments
sed -i 's/v1.29.0/v1.30.0/' "$T/repo/clusters/metal/control-plane.yaml" "$T/repo/clusters/metal/workers.yaml"
commit "metal: v1.30.0"
for k in 1 2 3 4; do
    sleep "$(python3 -c 'import random; print(round(random.uniform(2, 7), 1))')"
    kill -9 "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    echo "killed the daemon ($k)" >>"$T/daemon.log"
    start_daemon
done
wait_check "upgraded: every machine replaced, old nodes cleaned back to available without instance_uuid" 300 \
    python3 "$T/world.py" "$endpoint" "$server" "$token" running:1:3:v1.30.0

# No deploy repeated: per node and machine, one deploy in the journal.
python3 - "$T/state" <<'PY' && ok "never a deploy repeated for one machine, across four kill -9" || bad "repeated deploys"
import glob, json, sqlite3, sys, collections
db = sqlite3.connect(glob.glob(sys.argv[1] + "/*.db")[0])
count = collections.Counter()
for node, params, state in db.execute("SELECT object_name, params, state FROM journal WHERE verb = 'deploy'"):
    p = json.loads(params)
    if state in ("done", "running"):
        count[(node, p["configdrive"]["meta_data"]["uuid"])] += 1
repeated = {k: v for k, v in count.items() if v > 1}
assert not repeated, repeated
assert len(count) >= 8, count   # 3 + 1 + 4 replacements
PY

# --- delete the cluster
git -C "$T/repo" rm -rq clusters/metal
commit "metal: delete"
wait_check "cluster deleted: every machine gone, every node back to available" 300 \
    python3 "$T/world.py" "$endpoint" "$server" "$token" empty

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
