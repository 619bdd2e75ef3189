#!/usr/bin/env bash
# Daemon figures against a real (fake-hardware) Ironic on this machine:
#  1. executor throughput against its configured rate while enrolling N nodes: Ironic
#     requests/s (every request the daemon sent, observation included, from its debug
#     log) and actions/s,
#  2. latency from a commit touching one node to Ironic showing the change,
#  3. daemon RSS with BIG nodes in the repository.
# Prints figures; never pass/fail.  usage: bench/bench_daemon.sh [BUILD_DIR] [BIG]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
big=${2:-10000}
bin=$build/metalsync
T=$(mktemp -d /tmp/metalsync-benchd-XXXXXX)
daemon=""
cleanup() { [ -n "$daemon" ] && kill "$daemon" 2>/dev/null; wait 2>/dev/null; "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic")

make_repo() {  # make_repo DIR N
    /usr/bin/python3 "$src/bench/generate_repo.py" "$1" "$2" >/dev/null
    sed -i 's/driver: ipmi/driver: fake-hardware/; s/driver: redfish/driver: fake-hardware/' "$1"/classes/*.yaml
    /usr/bin/python3 - "$1" <<'PY'
import pathlib, re, sys
for f in pathlib.Path(sys.argv[1]).rglob("*.yaml"):
    t = f.read_text()
    t = re.sub(r"(?m)^  interfaces:.*\n(    .*\n)*", "  interfaces: {boot: fake, deploy: fake, power: fake, management: fake, inspect: fake}\n", t)
    t = re.sub(r"(?m)^  cleanSteps:.*\n(    .*\n)+", "", t)
    f.write_text(t)
PY
    git -C "$1" -c user.name=b -c user.email=b@example.invalid commit -qam "fake-hardware"
}
config() {  # config NAME REPO QPS [LOG_LEVEL]
    mkdir -p "$T/$1/state" "$T/creds"
    for c in dell-bmc hpe-bmc; do printf 'username: u\npassword: p\n' > "$T/creds/$c"; chmod 600 "$T/creds/$c"; done
    cat > "$T/$1/metalsync.yaml" <<CFG
stateDir: $T/$1/state
socket: $T/$1/sock
socketGroup: ""
credentialsDir: $T/creds
git: {url: "file://$2", branch: main, pollInterval: 1s}
ironic: {endpoint: "$endpoint"}
limits: {ironicQPS: $3, maxProvisioning: 20, workers: 8}
metrics: {listen: ""}
log: {level: ${4:-info}}
CFG
}
# Requests the daemon sent to Ironic: one debug line each ("ironic: GET /v1/nodes -> 200",
# or "ironic: ... failed: ..." when no answer came).
requests() { grep -cE "ironic: [A-Z]+ /[^ ]* (-> [0-9]+|failed: )" "$1" || true; }
rss() { awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }

# 1 + 3: a BIG-node repository; the daemon enrolls as fast as its limits allow.
make_repo "$T/big" "$big"
qps=15
config big "$T/big" "$qps" debug
start=$(date +%s.%N)
"$bin" daemon --config "$T/big/metalsync.yaml" >"$T/big/log" 2>&1 & daemon=$!
until grep -q "accepted" "$T/big/log"; do sleep 0.1; done
echo "daemon start to revision accepted ($big nodes): $(/usr/bin/python3 -c "print(round(($(date +%s.%N)-$start)*1000))") ms"
sleep 20
c1=$(grep -c "requested" "$T/big/log" || true); r1=$(requests "$T/big/log"); t1=$(date +%s.%N)
sleep 30
c2=$(grep -c "requested" "$T/big/log" || true); r2=$(requests "$T/big/log"); t2=$(date +%s.%N)
echo "Ironic requests while enrolling: $(/usr/bin/python3 -c "print(round(($r2-$r1)/($t2-$t1),1))") requests/s against the configured ironicQPS $qps (all requests: actions and observation)"
echo "executor throughput while enrolling: $(/usr/bin/python3 -c "print(round(($c2-$c1)/($t2-$t1),1))") actions/s (each action is 1-3 Ironic requests; Ironic itself creates ~20 nodes/s here)"
echo "daemon peak RSS with $big nodes in the repository: $(rss "$daemon")"
kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=""

# 2: latency from a commit to Ironic, on a small converged fleet.
make_repo "$T/small" 40
config small "$T/small" 50
"$bin" daemon --config "$T/small/metalsync.yaml" >"$T/small/log" 2>&1 & daemon=$!
"$bin" status -s "$T/small/sock" --watch --until-converged --timeout 300s >/dev/null 2>&1 || true
node=$(grep -rh "^  name: " "$T/small/nodes" | head -1 | awk '{print $2}')
f=$(grep -rl "name: $node\$" "$T/small/nodes" | head -1)
/usr/bin/python3 - "$f" "$node" <<'PY'
import re, sys
path, node = sys.argv[1], sys.argv[2]
t = open(path).read()
i = t.index("name: " + node)
j = t.find("\nspec:\n", i) + len("\nspec:\n")
t = t[:j] + "  properties: {bench_marker: \"1\"}\n" + t[j:] if "properties:" not in t[j:t.find("---", j) if "---" in t[j:] else len(t)] else t
open(path, "w").write(t)
PY
git -C "$T/small" -c user.name=b -c user.email=b@example.invalid commit -qam "touch $node"
start=$(date +%s.%N)
until /usr/bin/python3 -c "
import json, sys, urllib.request
r = urllib.request.Request('$endpoint/v1/nodes/$node', headers={'X-OpenStack-Ironic-API-Version': '1.82'})
sys.exit(0 if json.load(urllib.request.urlopen(r))['properties'].get('bench_marker') == '1' else 1)" 2>/dev/null; do sleep 0.05; done
echo "commit touching one node to the change visible in Ironic: $(/usr/bin/python3 -c "print(round(($(date +%s.%N)-$start)*1000))") ms (pollInterval 1s; includes the poll wait)"
