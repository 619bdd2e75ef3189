#!/usr/bin/env bash
# Enroll, manage and provide N fake-hardware nodes into a local Ironic three
# ways, and compare wall times:
#   metalsync  the real `metalsync daemon` following a Git repository of N
#              Nodes (goal: available), from daemon start to `metalsync
#              status` showing all N at their goal;
#   bulk       python-ironicclient's `baremetal create FILE` (nodes and ports
#              from one generated JSON file), then, since the CLI has no
#              multi-node form of `manage`/`provide`, every `node manage` fed
#              to ONE `baremetal` process on stdin (cliff's interactive mode:
#              no start-up per command), a wait until all are manageable, the
#              same for `node provide`, and a wait until all are available;
#   loop       the seed's way: per node one CLI call per step, `baremetal node
#              create`, `baremetal port create`, `baremetal node manage`,
#              `baremetal node provide` (no --wait, as in the seed; verification
#              of a fake node is over before the next process has started),
#              then a wait until all are available.
# Every node is the same in all three: fake-hardware with fake boot, deploy,
# power, management and inspect interfaces, properties cpu_arch=x86_64 and one
# port. Each method starts from an empty Ironic database (`ironic-testbed
# restart --wipe-db`: same process configuration, same endpoint), and has its
# own node names (ms-N, bulk-N, loop-N).
#
# usage: bench/bench_ironic.sh [--nodes N] [--loop-sample K] [--build DIR]
#            [--qps Q] [--workers W] [--max-provisioning P] [--methods LIST] [--keep]
#   --nodes N             nodes per method (default 500)
#   --methods LIST        comma-separated subset of metalsync,bulk,loop (default
#                         all three; the ratios need metalsync)
#   --loop-sample K       time the loop on K nodes only and extrapolate to N
#                         (printed as such); default: the whole loop (about
#                         4 x 1.2 s per node: ~40 minutes for 500)
#   --build DIR           where the metalsync binary is (default build-runner,
#                         else build)
#   --qps, --workers, --max-provisioning
#                         the daemon's limits.ironicQPS (default 100),
#                         limits.workers (8) and limits.maxProvisioning (50)
# Prints figures; never pass/fail (CONVENTIONS.md, Tests).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
nodes=500 sample=0 build="" qps=100 workers=8 maxprov=50 keep=0 methods=metalsync,bulk,loop
while [ $# -gt 0 ]; do
    case $1 in
        --nodes) nodes=$2; shift ;;
        --loop-sample) sample=$2; shift ;;
        --build) build=$2; shift ;;
        --qps) qps=$2; shift ;;
        --workers) workers=$2; shift ;;
        --max-provisioning) maxprov=$2; shift ;;
        --methods) methods=$2; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
        *) echo "bench_ironic: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$build" ]; then
    for d in "$src/build-runner" "$src/build"; do [ -x "$d/metalsync" ] && { build=$d; break; }; done
fi
bin=$build/metalsync
[ -x "$bin" ] || { echo "bench_ironic: no metalsync binary in '$build' (build it, or give --build DIR)" >&2; exit 1; }
command -v baremetal >/dev/null || { echo "bench_ironic: 'baremetal' not found (apt-get install python3-ironicclient)" >&2; exit 1; }
[ "$sample" -gt 0 ] && [ "$sample" -lt "$nodes" ] || sample=$nodes
PY=/usr/bin/python3  # Debian's, which has the OpenStack modules

T=$(mktemp -d /tmp/metalsync-bench-ironic-XXXXXX)
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true
    if [ "$keep" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
now() { date +%s.%N; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic")
export OS_AUTH_TYPE=none OS_ENDPOINT=$endpoint
fresh_ironic() { "$src/scripts/ironic-testbed" restart "$T/ironic" --wipe-db >/dev/null; }

# wait_all PREFIX COUNT STATE: until COUNT nodes named PREFIX-* are in STATE
# (one paginated list per half second); gives up after an hour.
wait_all() {
    "$PY" - "$endpoint" "$1" "$2" "$3" <<'PY'
import json, sys, time, urllib.request
endpoint, prefix, count, state = sys.argv[1], sys.argv[2] + "-", int(sys.argv[3]), sys.argv[4]
deadline = time.time() + 3600
while time.time() < deadline:
    url, states = endpoint + "/v1/nodes?fields=name,provision_state&limit=1000", {}
    while url:
        req = urllib.request.Request(url, headers={"X-OpenStack-Ironic-API-Version": "1.82"})
        body = json.load(urllib.request.urlopen(req, timeout=30))
        for n in body["nodes"]:
            if (n["name"] or "").startswith(prefix):
                states[n["provision_state"]] = states.get(n["provision_state"], 0) + 1
        url = body.get("next")
    if states.get(state, 0) >= count:
        sys.exit(0)
    bad = {s: c for s, c in states.items() if s.endswith("failed") or s == "error"}
    if bad:
        sys.exit(f"{prefix}*: {bad} (all: {states})")
    time.sleep(0.5)
sys.exit(f"{prefix}*: not all {state} after an hour: {states}")
PY
}
mac() { printf '52:54:%02x:%02x:%02x:%02x' "$1" $(( $2 >> 16 & 255 )) $(( $2 >> 8 & 255 )) $(( $2 & 255 )); }
declare -A wall count

# --- metalsync -------------------------------------------------------------
run_metalsync() {
    local repo=$T/repo i f
    mkdir -p "$repo/nodes" "$T/ms/state"
    cat > "$repo/class.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: NodeClass
metadata: {name: bench}
spec:
  bmc: {driver: fake-hardware}
  interfaces: {boot: fake, deploy: fake, power: fake, management: fake, inspect: fake}
  properties: {cpu_arch: x86_64}
Y
    for i in $(seq 1 "$nodes"); do
        f=$repo/nodes/batch-$(( (i - 1) / 50 )).yaml
        printf -- '---\napiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: ms-%d}\nspec:\n  class: bench\n  bmc: {address: 10.1.%d.%d}\n  ports: [{mac: "%s"}]\n  provisionState: available\n' \
            "$i" $(( i >> 8 & 255 )) $(( i & 255 )) "$(mac 1 "$i")" >> "$f"
    done
    git -C "$repo" init -q -b main
    git -C "$repo" add -A
    git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm "$nodes nodes"
    cat > "$T/ms/metalsync.yaml" <<CFG
stateDir: $T/ms/state
socket: $T/ms/sock
socketGroup: ""
credentialsDir: $T/ms
git: {url: "file://$repo", branch: main, pollInterval: 1s}
ironic: {endpoint: "$endpoint"}
limits: {ironicQPS: $qps, maxProvisioning: $maxprov, workers: $workers}
metrics: {listen: ""}
CFG
    log "metalsync: daemon start, $nodes nodes (ironicQPS $qps, workers $workers, maxProvisioning $maxprov)"
    local t0 t1
    t0=$(now)
    "$bin" daemon --config "$T/ms/metalsync.yaml" >"$T/ms/daemon.log" 2>&1 &
    daemon=$!
    while :; do
        if "$bin" status -o json -s "$T/ms/sock" >"$T/ms/status.json" 2>/dev/null &&
           "$PY" -c "import json,sys; n=json.load(open('$T/ms/status.json'))['nodes']; sys.exit(0 if n['total']==$nodes and n['atGoal']==$nodes else 1)"; then
            break
        fi
        kill -0 "$daemon" 2>/dev/null || { echo "bench_ironic: the daemon exited; see $T/ms/daemon.log" >&2; keep=1; exit 1; }
        if "$PY" -c "import json,sys; sys.exit(0 if json.load(open('$T/ms/status.json'))['nodes']['byCondition'].get('failed') else 1)" 2>/dev/null; then
            echo "bench_ironic: metalsync reports failed nodes; no figure (see $T/ms/daemon.log):" >&2
            grep -m 3 "failed" "$T/ms/daemon.log" >&2 || true; keep=1; exit 1
        fi
        if grep -q '"rejected": {' "$T/ms/status.json" 2>/dev/null; then
            echo "bench_ironic: the daemon rejected the generated repository:" >&2; grep -m 3 yaml "$T/ms/status.json" >&2; keep=1; exit 1
        fi
        sleep 0.25
    done
    t1=$(now)
    wait_all ms "$nodes" available  # Ironic agrees
    # Where the time went: when the daemon logged the first and the last of
    # each step, from daemon start.
    "$PY" - "$T/ms/daemon.log" "$t0" <<'PY' >&2 || true
import datetime, re, sys
t0, first, last = float(sys.argv[2]), {}, {}
for line in open(sys.argv[1]):
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) info: node ms-\d+: (enrolled|manage requested|provide requested)", line)
    if m:
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() - t0
        first.setdefault(m.group(2), t)
        last[m.group(2)] = t
for step in ("enrolled", "manage requested", "provide requested"):
    if step in first:
        print(f"  metalsync: {step:<18} first at {first[step]:6.1f} s, last at {last[step]:6.1f} s")
PY
    kill -TERM "$daemon"; wait "$daemon" || true; daemon=""
    wall[metalsync]=$("$PY" -c "print($t1 - $t0)"); count[metalsync]=$nodes
}

# --- bulk: baremetal create FILE + one CLI process for manage, one for provide
run_bulk() {
    "$PY" - "$nodes" "$T/bulk.json" <<'PY'
import json, sys
n = int(sys.argv[1])
fake = {f"{i}_interface": "fake" for i in ("boot", "deploy", "power", "management", "inspect")}
nodes = [dict(name=f"bulk-{i}", driver="fake-hardware", properties={"cpu_arch": "x86_64"},
              ports=[{"address": "52:54:02:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255)}], **fake)
         for i in range(1, n + 1)]
json.dump({"nodes": nodes}, open(sys.argv[2], "w"))
PY
    local i t0 t1
    for i in $(seq 1 "$nodes"); do echo "node manage bulk-$i"; done > "$T/bulk-manage.txt"
    for i in $(seq 1 "$nodes"); do echo "node provide bulk-$i"; done > "$T/bulk-provide.txt"
    log "bulk: baremetal create of $nodes nodes, then manage and provide through one baremetal process each"
    t0=$(now)
    baremetal create "$T/bulk.json" >"$T/bulk-create.log" 2>&1
    baremetal <"$T/bulk-manage.txt" >"$T/bulk-manage.log" 2>&1
    wait_all bulk "$nodes" manageable
    baremetal <"$T/bulk-provide.txt" >"$T/bulk-provide.log" 2>&1
    wait_all bulk "$nodes" available
    t1=$(now)
    wall[bulk]=$("$PY" -c "print($t1 - $t0)"); count[bulk]=$nodes
}

# --- loop: one CLI call per step and node (the seed's way) ----------------
run_loop() {
    local i uuid t0 t1
    log "loop: $sample nodes x (node create, port create, node manage, node provide), one baremetal process each$([ "$sample" -lt "$nodes" ] && echo " (a sample; extrapolated to $nodes)")"
    t0=$(now)
    for i in $(seq 1 "$sample"); do
        uuid=$(baremetal node create --driver fake-hardware --name "loop-$i" \
            --boot-interface fake --deploy-interface fake --power-interface fake \
            --management-interface fake --inspect-interface fake \
            --property cpu_arch=x86_64 -f value -c uuid)
        baremetal port create "$(mac 3 "$i")" --node "$uuid" >/dev/null
        baremetal node manage "loop-$i"
        baremetal node provide "loop-$i"
        [ $(( i % 50 )) -eq 0 ] && log "loop: $i of $sample"
    done
    wait_all loop "$sample" available
    t1=$(now)
    wall[loop]=$("$PY" -c "print($t1 - $t0)"); count[loop]=$sample
}

wall[metalsync]=0 count[metalsync]=0 wall[bulk]=0 count[bulk]=0 wall[loop]=0 count[loop]=0
first=1
for m in ${methods//,/ }; do
    case $m in metalsync|bulk|loop) ;; *) echo "bench_ironic: unknown method $m" >&2; exit 2 ;; esac
    [ "$first" = 1 ] || fresh_ironic
    first=0
    "run_$m"
done

# --- table -------------------------------------------------------------------
echo
echo "Enroll + manage + provide of $nodes fake-hardware nodes (one port each), $(nproc) cores, Ironic $(dpkg-query -W -f='${Version}' ironic-common 2>/dev/null || echo '?'), python-ironicclient $(baremetal --version 2>&1 | awk '{print $2}')"
echo "metalsync limits: ironicQPS $qps, workers $workers, maxProvisioning $maxprov; binary $bin"
"$PY" - "$nodes" "${wall[metalsync]}" "${count[metalsync]}" "${wall[bulk]}" "${count[bulk]}" "${wall[loop]}" "${count[loop]}" <<'PY'
import sys
n = int(sys.argv[1])
rows = []
for name, w, c in (("metalsync", *sys.argv[2:4]), ("bulk create + 1-process manage/provide", *sys.argv[4:6]),
                   ("per-step CLI loop (seed)", *sys.argv[6:8])):
    w, c = float(w), int(c)
    rate = c / w if c else 0.0
    rows.append((name, c, w, rate, w * n / c if c else 0.0, 0 < c < n))
ms_rate = rows[0][3]
# ratio: time per node relative to metalsync's (2.0 = takes twice as long)
ratio = lambda rate: f"{ms_rate / rate:.2f}" if ms_rate else "-"
print(f"{'method':<40} {'nodes':>6} {'wall s':>9} {'nodes/s':>8} {'time ratio vs metalsync':>24}")
for name, c, w, rate, full, extra in rows:
    if not c:
        continue
    print(f"{name:<40} {c:>6} {w:>9.1f} {rate:>8.2f} {ratio(rate):>24}")
    if extra:
        print(f"{'  extrapolated to ' + str(n) + ' nodes':<40} {n:>6} {full:>9.1f} {rate:>8.2f} {ratio(rate):>24}   (extrapolated)")
PY
