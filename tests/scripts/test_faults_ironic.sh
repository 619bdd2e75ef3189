#!/usr/bin/env bash
# Ironic faults during a rollout, with the real daemon and a real (slow,
# fake-hardware) Ironic:
#  (a) Ironic's API and conductor stopped mid-rollout and started again on
#      the same database: `metalsync status` reports the outage, nothing is
#      planned while it lasts, the rollout converges after the restart, and
#      Ironic's log shows no step started twice unless Ironic itself failed it
#      (a conductor restart fails the steps it was running).
#  (b) Ironic's database wiped mid-rollout (stop, recreate empty, start): every
#      node comes back by enrolment; the nodes that were active are adopted,
#      never deployed again, and end active.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
nodes=${FAULT_NODES:-8}
extra=${FAULT_EXTRA_NODES:-3}
T=$(mktemp -d /tmp/metalsync-faults-ironic-XXXXXX)
pass=0; fail=0; daemon=""
PY=/usr/bin/python3
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -40 "$T/daemon.log" 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
sock="$T/metalsync.sock"
ms() { "$bin" "$@" -s "$sock"; }
wait_for() {
    local what=$1 expr=$2 deadline=$(( $(date +%s) + ${3:-120} ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ms status -o json >"$T/status.json" 2>/dev/null &&
           "$PY" -c "import json,sys; s=json.load(open('$T/status.json')); sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
            ok "$what"; return 0
        fi
        sleep 0.5
    done
    bad "$what (last status: $(head -c 3000 "$T/status.json" 2>/dev/null))"; return 1
}
# ironic_states: "name state" lines for every node Ironic knows.
ironic_states() {
    "$PY" - "$endpoint" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/nodes?fields=name,provision_state&limit=1000", headers={"X-OpenStack-Ironic-API-Version": "1.82"})
for n in json.load(urllib.request.urlopen(req, timeout=10))["nodes"]:
    print(n["name"], n["provision_state"])
PY
}
# wait_ironic DESCRIPTION AWK-CONDITION-ON-"name state"-LINES [SECONDS]
wait_ironic() {
    local what=$1 cond=$2 deadline=$(( $(date +%s) + ${3:-120} ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ironic_states >"$T/ironic-states.txt" 2>/dev/null && awk "$cond" "$T/ironic-states.txt"; then
            ok "$what"; return 0
        fi
        sleep 0.3
    done
    bad "$what (Ironic: $(tr '\n' ' ' <"$T/ironic-states.txt" 2>/dev/null))"; return 1
}

endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic" --slow)
mkdir -p "$T/repo/nodes" "$T/state"
cat > "$T/repo/class.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: NodeClass
metadata: {name: lab}
spec:
  bmc: {driver: fake-hardware}
  interfaces: {boot: fake, deploy: fake, power: fake, management: fake, inspect: fake}
  provisionState: active
  image:
    source: http://127.0.0.1:9/image.qcow2
    checksum: sha256:0000000000000000000000000000000000000000000000000000000000000000
Y
add_node() {
    printf 'apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: f%02d}\nspec:\n  class: lab\n  bmc: {address: 198.51.100.%d}\n  ports: [{mac: "52:54:00:00:02:%02x"}]\n' "$1" "$1" "$1" > "$T/repo/nodes/f$1.yaml"
}
for i in $(seq 1 "$nodes"); do add_node "$i"; done
gitc() { git -C "$T/repo" -c user.name="Ada Operator" -c user.email=ada@example.invalid "$@"; }
gitc init -q -b main
gitc add -A && gitc commit -qm rollout
cat > "$T/metalsync.yaml" <<CFG
stateDir: $T/state
socket: $sock
socketGroup: ""
credentialsDir: $T/state
git: {url: "file://$T/repo", branch: main, pollInterval: 1s, retryInterval: 1s}
ironic: {endpoint: "$endpoint", timeout: 10s}
limits: {ironicQPS: 50, maxProvisioning: 4, workers: 4}
metrics: {listen: ""}
CFG
"$bin" daemon --config "$T/metalsync.yaml" >>"$T/daemon.log" 2>&1 &
daemon=$!

# --- (a) Ironic stopped mid-rollout, then started on the same database -----------
wait_ironic "rollout under way (some nodes past enroll, not all active)" \
    "\$2 != \"enroll\" {p++} \$2 == \"active\" {a++} END {exit !(p >= 2 && a < $nodes)}" 180
echo "--- ironic stopping" >>"$T/daemon.log"
"$src/scripts/ironic-testbed" stop "$T/ironic"
stopped_at=$(date +%s)
wait_for "outage reported: status shows ironicError" "s['ironicError'] and 'unreachable' in s['ironicError']" 60
ms status >"$T/out.txt" 2>&1 || true
grep -q "ironic:" "$T/out.txt" && ok "status text names the Ironic error" || bad "status text: $(cat "$T/out.txt")"
# While Ironic is down nothing is planned (the loop never plans on a failed
# observation); in-flight actions fail and get a retry time.
wait_for "nothing runs in the executor during the outage" "s['executor']['running']==0" 60
kill -0 "$daemon" && ok "daemon alive during the outage" || bad "daemon died during the outage"
# The daemon backs off: observations 1 s, 2 s, 4 s, 8 s... apart (at most
# 30 s, ±20%), not one a second. After 20 s down that is 5 attempts (6 with
# the jitter's worst case); one a second would be about 20.
while [ $(( $(date +%s) - stopped_at )) -lt 20 ]; do sleep 1; done
ms status -o json >"$T/status.json"
failures=$("$PY" -c "import json; o=json.load(open('$T/status.json'))['ironicOutage']; print(o['failedObservations'] if o else -1)")
[ "$failures" -ge 3 ] && [ "$failures" -le 7 ] && ok "observation backs off during the outage ($failures attempts in 20 s)" ||
    bad "observation attempts in 20 s of outage: $failures (want 3 to 7: backing off)"
ms status >"$T/out.txt" 2>&1 || true
grep -q "Ironic outage.*failed observations, next in" "$T/out.txt" && ok "status text shows the outage and the next attempt" ||
    bad "status text lacks the outage line: $(cat "$T/out.txt")"
# `metalsync sync` tries now, backoff or not.
ms sync >/dev/null
wait_for "sync observes at once during the backoff" "s['ironicOutage'] and s['ironicOutage']['failedObservations'] > $failures" 5
"$src/scripts/ironic-testbed" restart "$T/ironic" >/dev/null
echo "--- ironic restarted" >>"$T/daemon.log"
wait_for "Ironic back: ironicError cleared" "not s['ironicError']" 60
wait_for "rollout converges after the restart: $nodes nodes at goal" "s['nodes']['total']==$nodes and s['nodes']['atGoal']==$nodes" 420
awk '/--- ironic stopping/,/--- ironic restarted/' "$T/daemon.log" | grep -c "cannot observe" >"$T/observe-warnings" || true
[ "$(cat "$T/observe-warnings")" -ge 1 ] && [ "$(cat "$T/observe-warnings")" -le 3 ] && ok "the outage is logged once, not every tick ($(cat "$T/observe-warnings") warnings)" ||
    bad "the outage logged $(cat "$T/observe-warnings") 'cannot observe' warnings (want 1 to 3)"

# Every step started at most once per node, plus once per time Ironic failed it.
/usr/bin/python3 - "$T/ironic/log/ironic.log" "$endpoint" "$nodes" <<'PY' && ok "Ironic's log: no step repeated except after Ironic failed it" || bad "a step was repeated (see above)"
import collections, json, re, sys, urllib.request
log, endpoint, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
req = urllib.request.Request(endpoint + "/v1/nodes?fields=uuid,name,provision_state", headers={"X-OpenStack-Ironic-API-Version": "1.82"})
nodes = json.load(urllib.request.urlopen(req))["nodes"]
assert len(nodes) == want, f"{len(nodes)} nodes in Ironic, expected {want} (a duplicate create?)"
assert all(n["provision_state"] == "active" for n in nodes), nodes
moves = collections.Counter()
pattern = re.compile(r'Node (\S+) moved to provision state "([^"]+)" from state "([^"]+)"')
for line in open(log, errors="replace"):
    m = pattern.search(line)
    if m:
        moves[(m.group(1), m.group(3), m.group(2))] += 1
bad = []
restarted = []
for n in nodes:
    u = n["uuid"]
    def into(state):
        return sum(c for (uu, frm, to), c in moves.items() if uu == u and to == state)
    def out_of(state, to):
        return sum(c for (uu, frm, t), c in moves.items() if uu == u and frm == state and t == to)
    for step, failed in [("verifying", out_of("verifying", "enroll")),
                         ("cleaning", out_of("cleaning", "clean failed")),
                         ("deploying", out_of("deploying", "deploy failed") + out_of("wait call-back", "deploy failed"))]:
        started = into(step)
        if started != 1 + failed:
            bad.append(f'{n["name"]}: {step} started {started} times, Ironic failed it {failed} times')
        elif failed:
            restarted.append(f'{n["name"]}: {step} again after Ironic failed it')
print("\n".join(bad))
print("\n".join(restarted) or "no step had to be redone")
sys.exit(1 if bad else 0)
PY

# --- (b) Ironic's database wiped mid-rollout ----------------------------------------
was_active=$(ironic_states | awk '$2 == "active" {print $1}' | sort)
for i in $(seq $((nodes + 1)) $((nodes + extra))); do add_node "$i"; done
gitc add -A && gitc commit -qm "more nodes"
wait_ironic "second rollout under way" "\$2 != \"active\" {p++} END {exit !(p >= 1)}" 120
was_active=$(ironic_states | awk '$2 == "active" {print $1}' | sort)
[ "$(echo "$was_active" | wc -w)" -ge "$nodes" ] && ok "$(echo "$was_active" | wc -w) nodes active before the wipe" || bad "active before the wipe: $was_active"
log_mark=$(wc -l <"$T/ironic/log/ironic.log")
"$src/scripts/ironic-testbed" restart "$T/ironic" --wipe-db >/dev/null
echo "--- ironic database wiped" >>"$T/daemon.log"
[ "$(ironic_states | wc -l)" -le "$nodes" ] && ok "Ironic's database wiped" || ok "Ironic's database wiped (the daemon already enrolled $(ironic_states | wc -l) nodes again)"
total=$((nodes + extra))
wait_for "after the wipe: all $total nodes back and at goal" "s['nodes']['total']==$total and s['nodes']['atGoal']==$total" 420
/usr/bin/python3 - "$T/ironic/log/ironic.log" "$log_mark" "$endpoint" "$total" $was_active <<'PY' && ok "the nodes active before the wipe were adopted, never deployed again" || bad "adoption after the wipe (see above)"
import json, re, sys, urllib.request
log, mark, endpoint, want, was_active = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), set(sys.argv[5:])
req = urllib.request.Request(endpoint + "/v1/nodes?fields=uuid,name,provision_state", headers={"X-OpenStack-Ironic-API-Version": "1.82"})
nodes = {n["uuid"]: n for n in json.load(urllib.request.urlopen(req))["nodes"]}
assert len(nodes) == want, f"{len(nodes)} nodes in Ironic, expected {want}"
assert all(n["provision_state"] == "active" for n in nodes.values()), nodes
pattern = re.compile(r'Node (\S+) moved to provision state "([^"]+)" from state "([^"]+)"')
seen = {}
for i, line in enumerate(open(log, errors="replace")):
    if i < mark:
        continue
    m = pattern.search(line)
    if m and m.group(1) in nodes:
        seen.setdefault(nodes[m.group(1)]["name"], []).append(m.group(2))
bad = []
for name in sorted(was_active):
    moves = seen.get(name, [])
    if "deploying" in moves:
        bad.append(f"{name}: deployed again after the wipe: {moves}")
    elif "adopting" not in moves:
        bad.append(f"{name}: not adopted after the wipe: {moves}")
for name in sorted(set(n["name"] for n in nodes.values()) - was_active):
    if "deploying" not in seen.get(name, []) and "adopting" not in seen.get(name, []):
        bad.append(f"{name}: neither deployed nor adopted: {seen.get(name)}")
print("\n".join(bad) or f"{len(was_active)} adopted, {want - len(was_active)} deployed")
sys.exit(1 if bad else 0)
PY
kill -TERM "$daemon"; rc=0; wait "$daemon" || rc=$?; daemon=""
[ "$rc" -eq 0 ] && ok "daemon exits cleanly" || bad "daemon exit code $rc"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
