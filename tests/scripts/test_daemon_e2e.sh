#!/usr/bin/env bash
# End to end: the real `metalsync daemon` against a real Ironic and a local
# Git repository. Nodes are committed and reach their goal; a goal change, a
# removal (prune) and a broken commit follow; the socket and CLI answer
# throughout; known secrets never appear in logs, the database or replies.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-e2e-XXXXXX)
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
# wait_for DESCRIPTION PYTHON-EXPR-ON-STATUS-JSON [SECONDS]
wait_for() {
    local what=$1 expr=$2 deadline=$(( $(date +%s) + ${3:-120} ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ms status -o json >"$T/status.json" 2>/dev/null &&
           /usr/bin/python3 -c "import json,sys; s=json.load(open('$T/status.json')); sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
            ok "$what"; return 0
        fi
        sleep 0.5
    done
    bad "$what (last status: $(cat "$T/status.json" 2>/dev/null))"; return 1
}
ironic_has() {  # ironic_has NAME -> prints provision_state or "absent"
    /usr/bin/python3 - "$endpoint" "$1" <<'PY'
import json, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1] + "/v1/nodes/" + sys.argv[2], headers={"X-OpenStack-Ironic-API-Version": "1.82"})
try:
    print(json.load(urllib.request.urlopen(req))["provision_state"])
except urllib.error.HTTPError:
    print("absent")
PY
}
commit() { git -C "$T/repo" add -A && git -C "$T/repo" -c user.name="Ada Operator" -c user.email=ada@example.invalid commit -qm "$1"; }

endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic")
metrics_port=$(/usr/bin/python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
secret="s3cret-BMC-$(date +%s%N)"
mkdir -p "$T/repo/nodes" "$T/state" "$T/credentials"
printf 'username: admin\npassword: %s\n' "$secret" > "$T/credentials/lab-bmc"
chmod 600 "$T/credentials/lab-bmc"
cat > "$T/repo/class.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: NodeClass
metadata: {name: lab}
spec:
  bmc: {driver: fake-hardware, credentials: lab-bmc}
  interfaces: {boot: fake, deploy: fake, power: fake, management: fake, inspect: fake}
  properties: {cpu_arch: x86_64}
  image:
    source: http://127.0.0.1:9/image.qcow2
    checksum: sha256:0000000000000000000000000000000000000000000000000000000000000000
---
apiVersion: metalsync.dev/v1alpha1
kind: Policy
metadata: {name: lab}
spec:
  prune: true
  massDeletion: {maxPercent: 50}
Y
for i in 1 2 3 4 5; do
cat > "$T/repo/nodes/n$i.yaml" <<Y
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata: {name: n$i}
spec:
  class: lab
  bmc: {address: 192.0.2.$i}
  ports: [{mac: "52:54:00:00:00:0$i"}]
  provisionState: $([ "$i" -le 3 ] && echo active || echo available)
  configDrive:
    userData: "#!/bin/sh\necho hello from n$i\n"
Y
done
git -C "$T/repo" init -q -b main
commit "five lab nodes"
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
limits:
  ironicQPS: 50
  maxProvisioning: 3
  workers: 4
metrics:
  listen: 127.0.0.1:$metrics_port
CFG

"$bin" daemon --check-config --config "$T/metalsync.yaml" >/dev/null && ok "daemon --check-config" || bad "daemon --check-config"
"$bin" daemon --config "$T/metalsync.yaml" >"$T/daemon.log" 2>&1 &
daemon=$!

wait_for "five nodes reach their goal" "s['nodes']['total']==5 and s['nodes']['atGoal']==5" 180
[ "$(ironic_has n1)" = active ] && ok "n1 active in Ironic" || bad "n1 active in Ironic: $(ironic_has n1)"
[ "$(ironic_has n4)" = available ] && ok "n4 available in Ironic" || bad "n4 available in Ironic: $(ironic_has n4)"

# A goal change and a removal, in one commit.
sed -i 's/provisionState: active/provisionState: available/' "$T/repo/nodes/n1.yaml"
git -C "$T/repo" rm -q nodes/n5.yaml
commit "retire n5, free n1"
wait_for "n1 undeployed and n5 retired" "s['nodes']['total']==4 and s['nodes']['atGoal']==4" 180
[ "$(ironic_has n1)" = available ] && ok "n1 available in Ironic" || bad "n1 available: $(ironic_has n1)"
[ "$(ironic_has n5)" = absent ] && ok "n5 deleted from Ironic" || bad "n5 deleted: $(ironic_has n5)"

# A broken commit: rejected whole, visible in status, nothing changes.
printf 'apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: n6}\nspec: {bmc: {address: 192.0.2.6}, ports: [{mac: zz}]}\n' > "$T/repo/nodes/n6.yaml"
commit "broken"
wait_for "broken revision shown as rejected" "s.get('rejected') and any('nodes/n6.yaml' in e for e in s['rejected']['errors'])" 60
ms status >"$T/out" 2>&1 && grep -q "rejected" "$T/out" && ok "status text names the rejection" || bad "status text: $(cat "$T/out")"
[ "$(ironic_has n2)" = active ] && ok "n2 untouched by the broken revision" || bad "n2: $(ironic_has n2)"

# The node view names the commit and its author.
ms node n2 -o json >"$T/node.json" 2>&1 || true
/usr/bin/python3 - "$T/node.json" <<'PY' && ok "node n2 shows events with commit and author" || bad "node n2: $(cat "$T/node.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["node"]["condition"] == "at-goal", d["node"]
assert any(e["author"] == "Ada Operator" and len(e["revision"]) == 40 for e in d["events"]), d["events"]
assert any(a["verb"] == "deploy" and a["state"] == "done" for a in d["actions"]), d["actions"]
PY
ms nodes >"$T/nodes.txt" 2>&1 && grep -q "n2" "$T/nodes.txt" && ok "nodes table" || bad "nodes: $(cat "$T/nodes.txt")"
ms events --limit 5 >"$T/events.txt" 2>&1 && ok "events" || bad "events: $(cat "$T/events.txt")"

# A suspended node shows as such everywhere; suspending a node that does not exist is an error.
rc=0; ms suspend no-such-node >"$T/out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "no node no-such-node" "$T/out" && ok "suspend of an unknown node is an error" || bad "suspend no-such-node: exit $rc: $(cat "$T/out")"
ms suspend n2 >/dev/null 2>&1 || bad "suspend n2"
ms nodes -o json >"$T/nodes.json" 2>&1 || true
ms node n2 >"$T/node.txt" 2>&1 || true
ms status >"$T/status.txt" 2>&1 || true
ms status -o json >"$T/status.json" 2>&1 || true
/usr/bin/python3 - "$T/nodes.json" "$T/status.json" <<'PY' && grep -q "Suspended" "$T/node.txt" && grep -q "1 node suspended" "$T/status.txt" &&
import json, sys
nodes = {n["name"]: n for n in json.load(open(sys.argv[1]))["nodes"]}
assert nodes["n2"]["suspended"] is True and nodes["n2"]["suspendedBy"] == "node", nodes["n2"]
assert nodes["n1"]["suspended"] is False, nodes["n1"]
assert json.load(open(sys.argv[2]))["suspendedNodes"] == ["n2"]
PY
  ok "a suspended node shows in nodes, node and status" || bad "suspended n2 not shown: $(cat "$T/node.txt" "$T/status.txt")"
ms resume n2 >/dev/null 2>&1 || bad "resume n2"
ms nodes -o json >"$T/nodes.json" 2>&1 || true
/usr/bin/python3 -c "import json,sys; sys.exit(0 if all(not n['suspended'] for n in json.load(open('$T/nodes.json'))['nodes']) else 1)" &&
  ok "resumed: no node suspended" || bad "after resume: $(cat "$T/nodes.json")"
rc=0; "$bin" status -s "$T/nope.sock" >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] && ok "status without a daemon exits 2" || bad "status without daemon: exit $rc"

# Prometheus: scrape the daemon and parse every line strictly.
curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$T/metrics.txt" && ok "metrics scraped" || bad "metrics scrape"
/usr/bin/python3 - "$T/metrics.txt" <<'PY' && ok "every metrics line parses; nodes, actions, git, revisions present" || bad "metrics: $(head -40 "$T/metrics.txt")"
import re, sys
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
sample = re.compile(rf"^({name})(\{{(?:{label}(?:,{label})*)?\}})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$")
types = {}
samples = {}
for line in open(sys.argv[1]).read().splitlines():
    if line.startswith("# HELP "):
        continue
    if line.startswith("# TYPE "):
        _, _, n, t = line.split(" ", 3)
        assert t in ("counter", "gauge", "histogram", "summary", "untyped"), line
        types[n] = t
        continue
    m = sample.match(line)
    assert m, "unparseable line: " + line
    family = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
    assert m.group(1) in types or family in types, "sample without TYPE: " + line
    samples.setdefault(family, []).append((m.group(2) or "", float(m.group(3))))
nodes = sum(v for labels, v in samples["metalsync_nodes"])
assert nodes == 4, samples["metalsync_nodes"]
actions = dict((l, v) for l, v in samples["metalsync_actions_total"])
assert any('verb="deploy"' in l and 'outcome="success"' in l and v >= 1 for l, v in actions.items()), actions
assert samples["metalsync_git_last_poll_success_timestamp_seconds"][0][1] > 1.7e9
rev = dict(samples["metalsync_revisions_total"])
assert rev['{status="rejected"}'] == 1 and rev['{status="accepted"}'] == 2, rev
PY

# One CLI grammar: an empty listing is exit 0; a bad filter value and an
# unknown command are usage errors (2); errors name the command typed.
rc=0; ms objects --state drifted >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -eq 0 ] && ok "an empty listing exits 0" || bad "objects --state drifted: exit $rc $(cat "$T/err")"
rc=0; ms objects --state bogus >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "in-sync" "$T/err" && ok "a bad filter value is refused, listing the valid ones" ||
    bad "objects --state bogus: exit $rc $(cat "$T/err")"
rc=0; "$bin" bogus >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "unknown command 'bogus'" "$T/err" && ok "an unknown command is named" ||
    bad "metalsync bogus: exit $rc $(cat "$T/err")"
rc=0; ms node no-such-node >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] && grep -qx "metalsync node: no node 'no-such-node'" "$T/err" && ok "errors name the command typed" ||
    bad "node no-such-node: exit $rc $(cat "$T/err")"

# A second daemon on the same state directory refuses to start.
"$bin" daemon --config "$T/metalsync.yaml" >"$T/second.log" 2>&1 && bad "second daemon refused" || { grep -q "another metalsync" "$T/second.log" && ok "second daemon refused" || bad "second daemon: $(cat "$T/second.log")"; }

# Secrets: none in the log, the database, or any reply.
for f in "$T/daemon.log" "$T/state/metalsync.db"* "$T/status.json" "$T/node.json" "$T/nodes.txt" "$T/events.txt"; do
    if grep -qF "$secret" "$f"; then bad "secret found in $f"; else ok "no secret in $(basename "$f")"; fi
done

kill -TERM "$daemon"
rc=0; wait "$daemon" || rc=$?
[ "$rc" -eq 0 ] && ok "SIGTERM: clean exit" || bad "SIGTERM exit code $rc"
daemon=""
[ ! -S "$sock" ] && ok "socket removed at exit" || bad "socket left behind"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
