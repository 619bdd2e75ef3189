#!/usr/bin/env bash
# Inspection end to end: the real `metalsync daemon`, a real Ironic (fake
# inspect interface) and a local Git repository. The fake interface stores no
# inventory, so the daemon reads the node's properties (where in-band and
# out-of-band inspection both write); the spec's `properties` stand for what
# an inspector found. A node meeting `expect` goes on to available; one that
# does not is held at manageable with an inspection-mismatch error and an
# event naming the fields and the commit; a commit fixing `expect` inspects
# again and lets it go on.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-inspect-XXXXXX)
pass=0; fail=0; daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -50 "$T/daemon.log" 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
sock="$T/metalsync.sock"
ms() { "$bin" "$@" -s "$sock"; }
# wait_node DESCRIPTION NODE PYTHON-EXPR-ON-node-get-JSON(d) [SECONDS]
wait_node() {
    local what=$1 node=$2 expr=$3 deadline=$(( $(date +%s) + ${4:-120} ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ms node "$node" -o json >"$T/$node.json" 2>/dev/null &&
           /usr/bin/python3 -c "import json,sys; d=json.load(open('$T/$node.json')); n=d['node']; sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
            ok "$what"; return 0
        fi
        sleep 0.5
    done
    bad "$what (last: $(cat "$T/$node.json" 2>/dev/null))"; return 1
}
ironic_state() {
    /usr/bin/python3 - "$endpoint" "$1" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/nodes/" + sys.argv[2], headers={"X-OpenStack-Ironic-API-Version": "1.82"})
print(json.load(urllib.request.urlopen(req))["provision_state"])
PY
}
commit() { git -C "$T/repo" add -A && git -C "$T/repo" -c user.name="Ada Operator" -c user.email=ada@example.invalid commit -qm "$1"; }

endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic")
mkdir -p "$T/repo/nodes" "$T/state" "$T/credentials"
printf 'username: admin\npassword: inspect-secret\n' > "$T/credentials/lab-bmc"
chmod 600 "$T/credentials/lab-bmc"
cat > "$T/repo/class.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: NodeClass
metadata: {name: lab}
spec:
  bmc: {driver: fake-hardware, credentials: lab-bmc}
  interfaces: {boot: fake, deploy: fake, power: fake, management: fake, inspect: fake}
  inspect: true
  expect: {cpus: 8, memoryMiB: 16000, disks: 1, cpuArch: x86_64}
Y
cat > "$T/repo/nodes/big.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata: {name: big}
spec:
  class: lab
  bmc: {address: 192.0.2.1}
  ports: [{mac: "52:54:00:00:01:01"}]
  properties: {cpu_arch: x86_64, cpus: 16, memory_mb: 65536}
Y
cat > "$T/repo/nodes/small.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata: {name: small}
spec:
  class: lab
  bmc: {address: 192.0.2.2}
  ports: [{mac: "52:54:00:00:01:02"}]
  properties: {cpu_arch: x86_64, cpus: 4, memory_mb: 8192}
Y
git -C "$T/repo" init -q -b main
commit "two inspected nodes"
first=$(git -C "$T/repo" rev-parse HEAD)
cat > "$T/metalsync.yaml" <<CFG
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
CFG
"$bin" daemon --config "$T/metalsync.yaml" >"$T/daemon.log" 2>&1 &
daemon=$!

wait_node "big meets expect and goes on to available" big "n['provisionState']=='available' and n['condition']=='at-goal'" 180
/usr/bin/python3 - "$T/big.json" <<'PY' && ok "big: inspection shown, matched, disks not checkable; event inspection.matched" || bad "big: $(cat "$T/big.json")"
import json, sys
d = json.load(open(sys.argv[1])); i = d["node"]["inspection"]
assert i["source"] == "properties" and i["cpus"] == 16 and i["memoryMiB"] == 65536, i
assert i["matches"] is True and any(u.startswith("expect.disks: not checkable") for u in i["unchecked"]), i
assert any(e["name"] == "node.inspection.matched" for e in d["events"]), d["events"]
assert sum(a["verb"] == "inspection-collect" for a in d["actions"]) == 1, d["actions"]
PY

wait_node "small is held at manageable with an inspection-mismatch error" small \
    "n['provisionState']=='manageable' and n['condition']=='failed' and n.get('lastErrorType')=='inspection-mismatch'" 180
/usr/bin/python3 - "$T/small.json" "$first" <<'PY' && ok "small: error and event name each field and the commit" || bad "small: $(cat "$T/small.json")"
import json, sys
d = json.load(open(sys.argv[1])); n = d["node"]; commit = sys.argv[2]
assert "expect.cpus: 8, inspected 4" in n["lastError"] and "expect.memoryMiB: 16000, inspected 8192" in n["lastError"], n
assert "disks" not in n["lastError"], n
ev = [e for e in d["events"] if e["name"] == "node.inspection.mismatch"]
assert len(ev) == 1 and ev[0]["revision"] == commit and "expect.cpus: 8, inspected 4" in ev[0]["message"], d["events"]
assert commit[:12] in ev[0]["message"], ev
assert n["inspection"]["matches"] is False, n
assert not any(a["verb"] == "provide" for a in d["actions"]), d["actions"]
PY
ms node small >"$T/small.txt" 2>&1 && grep -q "MISMATCH: expect.cpus: 8, inspected 4" "$T/small.txt" && grep -q "Inspected: *4 CPUs, 8192 MiB" "$T/small.txt" \
    && ok "metalsync node small shows the inspected hardware and the mismatch" || bad "node small text: $(cat "$T/small.txt")"
[ "$(ironic_state small)" = manageable ] && ok "small manageable in Ironic" || bad "small in Ironic: $(ironic_state small)"
sleep 3  # several ticks: the result is read once, not per tick
ms node small -o json >"$T/small2.json"
/usr/bin/python3 - "$T/small2.json" <<'PY' && ok "small: the result was read once" || bad "small reads: $(cat "$T/small2.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert sum(a["verb"] == "inspection-collect" for a in d["actions"]) == 1, d["actions"]
assert d["node"]["condition"] == "failed", d["node"]
PY
# `metalsync plan` (no daemon involved: the store and a live observation)
# knows what was inspected too: small is held, nobody inspects it again.
"$bin" plan -c "$T/metalsync.yaml" -o json >"$T/plan.json" 2>"$T/plan.err" || true
/usr/bin/python3 - "$T/plan.json" <<'PY' && ok "metalsync plan: small held for the mismatch, no inspect or provide" || bad "plan: $(cat "$T/plan.json" "$T/plan.err")"
import json, sys
d = json.load(open(sys.argv[1]))
small = [n for n in d["nodes"] if n["node"] == "small"]
assert small and small[0]["condition"] == "failed" and "expect.cpus" in small[0]["message"], d["nodes"]
assert not [a for a in d["actions"] if a["node"] == "small"], d["actions"]
PY
/usr/bin/python3 - "$T/state/metalsync.db" <<'PY' && ok "inspection stored with its source" || bad "inspection table"
import json, sqlite3, sys
rows = dict(sqlite3.connect(sys.argv[1]).execute("SELECT name, inventory FROM inspection").fetchall())
small = json.loads(rows["small"])
assert small["source"] == "properties" and small["data"] == {"cpu_arch": "x86_64", "cpus": 4, "memory_mb": 8192}, small
PY

# The fix: expect as the hardware is. A new expect inspects again, then goes on.
sed -i 's/^  properties: {cpu_arch: x86_64, cpus: 4, memory_mb: 8192}$/&\n  expect: {cpus: 4, memoryMiB: 8000}/' "$T/repo/nodes/small.yaml"
commit "small: expect what it has"
wait_node "small goes on to available after the expect fix" small "n['provisionState']=='available' and n['condition']=='at-goal' and not n.get('lastErrorType')" 180
/usr/bin/python3 - "$T/small.json" <<'PY' && ok "small: inspected again, matched" || bad "small after fix: $(cat "$T/small.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert sum(a["verb"] == "inspect" for a in d["actions"]) == 2, d["actions"]
assert any(e["name"] == "node.inspection.matched" for e in d["events"]), d["events"]
assert d["node"]["inspection"]["matches"] is True, d["node"]
PY

kill -TERM "$daemon"; rc=0; wait "$daemon" || rc=$?; daemon=""
[ "$rc" -eq 0 ] && ok "SIGTERM: clean exit" || bad "SIGTERM exit code $rc"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
