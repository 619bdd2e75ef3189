#!/usr/bin/env bash
# The real BMC path: the real `metalsync daemon` against a real Ironic whose
# nodes are powered over IPMI (ipmitool) at two OpenIPMI `ipmi_sim` BMCs on
# 127.0.0.1. Each BMC's chassis_control program keeps power and boot device
# in files and logs every call, so the test sees exactly what reached the BMC:
#   - manage verifies over IPMI, and both nodes reach their goal (one active
#     through a fake deploy with real IPMI power, one `ipmi`-driver node
#     available); `cipherSuite: 3` from the credentials file reaches
#     driver_info (without suite 3 each ipmitool call takes 10 s here);
#   - a commit setting `power: off`, then `power: on`, arrives at the BMC as
#     `set power 0`, then `set power 1`;
#   - a power change made at the BMC behind Ironic's back shows in
#     `metalsync node` as a power action, and metalsync puts Git's `on` back.
# The real BMC path: docs/ironic-testbed.md.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
for tool in ipmi_sim ipmitool; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "FAIL $tool is not installed: this test needs OpenIPMI's simulator and ipmitool" >&2
        echo "     (scripts/install-deps installs them: apt-get install openipmi ipmitool)" >&2
        exit 1
    fi
done
T=$(mktemp -d /tmp/metalsync-ipmi-XXXXXX)
pass=0; fail=0; daemon=""; sims=()
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    local pid
    for pid in "${sims[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
    "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true
    if [ "$fail" -eq 0 ]; then
        rm -rf "$T"
    else
        echo "kept $T"
        tail -40 "$T/daemon.log" 2>/dev/null || true
        for b in bmc1 bmc2; do echo "--- $b calls"; tail -20 "$T/$b/calls.log" 2>/dev/null || true; done
    fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
sock="$T/metalsync.sock"
ms() { "$bin" "$@" -s "$sock"; }
py() { /usr/bin/python3 "$@"; }
# until_true DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds.
until_true() {
    local what=$1 deadline=$(( $(date +%s) + $2 )); shift 2
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if "$@" >/dev/null 2>&1; then ok "$what"; return 0; fi
        sleep 0.5
    done
    bad "$what"; return 1
}
status_is() {  # status_is PYTHON-EXPR-ON-STATUS-JSON
    ms status -o json >"$T/status.json" 2>/dev/null &&
        py -c "import json,sys; s=json.load(open('$T/status.json')); sys.exit(0 if ($1) else 1)"
}
ironic_node() {  # ironic_node NAME -> the node's JSON from Ironic
    py - "$endpoint" "$1" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/nodes/" + sys.argv[2], headers={"X-OpenStack-Ironic-API-Version": "1.82"})
print(json.dumps(json.load(urllib.request.urlopen(req, timeout=10))))
PY
}
ironic_field() { ironic_node "$1" | py -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
ironic_field_is() { [ "$(ironic_field "$1" "$2")" = "$3" ]; }
# BMC call log lines after line N that match a pattern
calls_after() { tail -n "+$(( $2 + 1 ))" "$T/$1/calls.log" | grep -E -- "$3"; }
calls_count() { wc -l < "$T/$1/calls.log"; }
commit() { git -C "$T/repo" add -A && git -C "$T/repo" -c user.name="Ada Operator" -c user.email=ada@example.invalid commit -qm "$1"; }
free_udp_port() { py -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

# An IPMI password is at most 16 bytes (IPMI 1.5 user records).
secret="Ms$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# start_bmc NAME PORT: one ipmi_sim with its chassis program and call log.
start_bmc() {
    local name=$1 port=$2 dir=$T/$1
    mkdir -p "$dir/state"
    echo 0 > "$dir/power"; echo default > "$dir/boot"; : > "$dir/calls.log"
    cat > "$dir/chassis.sh" <<'SH'
#!/bin/sh
# chassis.sh MC get PARM... | chassis.sh MC set PARM VALUE [PARM VALUE...]
dir=$(dirname "$0")
echo "$(date +%s.%N) $*" >> "$dir/calls.log"
shift
op=$1; shift
case $op in
get) for p in "$@"; do
         case $p in
         power) echo "power:$(cat "$dir/power")" ;;
         boot) echo "boot:$(cat "$dir/boot")" ;;
         esac
     done ;;
set) while [ $# -ge 2 ]; do
         case $1 in
         power) echo "$2" > "$dir/power" ;;
         boot) echo "$2" > "$dir/boot" ;;
         esac
         shift 2
     done ;;
esac
SH
    chmod 755 "$dir/chassis.sh"
    cat > "$dir/lan.conf" <<CONF
name "$name"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $port
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a1b2c3d4e5f60718293a4b5c6d7e8f9${name: -1}
  endlan
  chassis_control "$dir/chassis.sh 0x20"
  user 1 false ""      "test"     user  10 none md2 md5 straight
  user 2 true  "admin" "$secret" admin 10 none md2 md5 straight
CONF
    cat > "$dir/sim.emu" <<'EMU'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 0x09 0x08 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
EMU
    setsid ipmi_sim -c "$dir/lan.conf" -f "$dir/sim.emu" -s "$dir/state" -n </dev/null >"$dir/sim.log" 2>&1 &
    sims+=("$!")
}
bmc_ipmitool() {  # bmc_ipmitool PORT ARGS...
    local port=$1; shift
    timeout 30 ipmitool -I lanplus -C 3 -H 127.0.0.1 -p "$port" -U admin -P "$secret" "$@"
}

port1=$(free_udp_port); port2=$(free_udp_port)
while [ "$port2" = "$port1" ]; do port2=$(free_udp_port); done
start_bmc bmc1 "$port1"
start_bmc bmc2 "$port2"
until_true "bmc1 answers ipmitool (cipher suite 3)" 30 bmc_ipmitool "$port1" power status
until_true "bmc2 answers ipmitool (cipher suite 3)" 30 bmc_ipmitool "$port2" power status
[ "$(calls_count bmc1)" -ge 1 ] && grep -q "get power" "$T/bmc1/calls.log" &&
    ok "bmc1's chassis program logs the calls" || bad "bmc1 call log: $(cat "$T/bmc1/calls.log")"
: > "$T/bmc1/calls.log"; : > "$T/bmc2/calls.log"

# A real Ironic (fake-hardware + ipmi enabled). Its power sync must not put
# back a change made at the BMC (force_power_state_during_sync, docs/ironic-testbed.md 13),
# so that Ironic records the change and metalsync sees it; and it runs every
# 3 s instead of 30 to keep the test short. Both edits are to this test's own
# copy of the configuration, then Ironic is restarted on the same endpoint.
endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic")
sed -i 's/^sync_power_state_interval = .*/sync_power_state_interval = 3\nforce_power_state_during_sync = false/' "$T/ironic/ironic.conf"
grep -q "^force_power_state_during_sync = false" "$T/ironic/ironic.conf" || { bad "ironic.conf edit"; exit 1; }
endpoint=$("$src/scripts/ironic-testbed" restart "$T/ironic")

mkdir -p "$T/repo/nodes" "$T/state" "$T/credentials"
printf 'username: admin\npassword: "%s"\ncipherSuite: 3\n' "$secret" > "$T/credentials/sim-bmc"
chmod 600 "$T/credentials/sim-bmc"
# n-active: fake-hardware with real IPMI power and management, fake boot and
# deploy ("Real power, fake deploy"). n-ipmi: the ipmi hardware type, pxe
# boot and its default direct deploy, which needs automated cleaning off.
node_active() {  # node_active POWER
cat > "$T/repo/nodes/n-active.yaml" <<Y
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata: {name: n-active}
spec:
  bmc: {driver: fake-hardware, address: 127.0.0.1, port: $port1, credentials: sim-bmc}
  interfaces: {power: ipmitool, management: ipmitool, boot: fake, deploy: fake, inspect: fake}
  ports: [{mac: "52:54:00:00:01:01"}]
  properties: {cpu_arch: x86_64}
  provisionState: active
  power: $1
  image:
    source: http://127.0.0.1:9/image.qcow2
    checksum: sha256:0000000000000000000000000000000000000000000000000000000000000000
Y
}
node_active on
cat > "$T/repo/nodes/n-ipmi.yaml" <<Y
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata: {name: n-ipmi}
spec:
  bmc: {driver: ipmi, address: 127.0.0.1, port: $port2, credentials: sim-bmc}
  interfaces: {boot: pxe}
  automatedClean: false
  ports: [{mac: "52:54:00:00:01:02"}]
  properties: {cpu_arch: x86_64}
  provisionState: available
Y
git -C "$T/repo" init -q -b main
commit "two nodes behind simulated BMCs"
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
  ironicQPS: 20
  maxProvisioning: 2
  workers: 2
metrics:
  listen: ""
CFG

"$bin" daemon --config "$T/metalsync.yaml" >"$T/daemon.log" 2>&1 &
daemon=$!

until_true "both nodes reach their goal (n-active active, n-ipmi available)" 150 \
    status_is "s['nodes']['total']==2 and s['nodes']['atGoal']==2"
ironic_field_is n-active provision_state active && ok "n-active is active in Ironic" || bad "n-active: $(ironic_field n-active provision_state)"
ironic_field_is n-ipmi provision_state available && ok "n-ipmi is available in Ironic" || bad "n-ipmi: $(ironic_field n-ipmi provision_state)"
ironic_node n-active >"$T/n-active.json"
ironic_node n-ipmi >"$T/n-ipmi.json"
py - "$T/n-active.json" "$T/n-ipmi.json" "$port1" "$port2" <<'PY' && ok "driver_info: address, port, user and cipher suite 3 from the credentials file; ipmitool power" || bad "driver_info: $(cat "$T/n-active.json" "$T/n-ipmi.json")"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for node, port in ((a, sys.argv[3]), (b, sys.argv[4])):
    di = node["driver_info"]
    assert di["ipmi_address"] == "127.0.0.1" and int(di["ipmi_port"]) == int(port), di
    assert di["ipmi_username"] == "admin" and di["ipmi_password"] == "******", di
    assert int(di["ipmi_cipher_suite"]) == 3, di
    assert node["power_interface"] == "ipmitool" and node["management_interface"] == "ipmitool", node
assert a["driver"] == "fake-hardware" and a["deploy_interface"] == "fake", a
assert b["driver"] == "ipmi" and b["boot_interface"] == "pxe", b
PY
# Nothing talks to a BMC while its node is in enroll; manage's verification
# is the first to. So the first call in each log must come before metalsync
# asked for provide (the daemon logs in local time, as `date -d` reads it).
verified_before_provide() {  # verified_before_provide BMC NODE
    local first provide
    first=$(head -n 1 "$T/$1/calls.log" | cut -d' ' -f1)
    provide=$(grep -m 1 "node $2: provide requested" "$T/daemon.log" | cut -d' ' -f1,2)
    [ -n "$first" ] && [ -n "$provide" ] &&
        py -c "import sys; sys.exit(0 if float('$first') < float('$(date -d "$provide" +%s.%N)') else 1)"
}
verified_before_provide bmc1 n-active && grep -q " get power" "$T/bmc1/calls.log" &&
    ok "manage verified n-active over IPMI (bmc1 asked its power state before provide)" || bad "bmc1 calls: $(cat "$T/bmc1/calls.log")"
verified_before_provide bmc2 n-ipmi && grep -q " get power" "$T/bmc2/calls.log" &&
    ok "manage verified n-ipmi over IPMI (bmc2, ipmi driver)" || bad "bmc2 calls: $(cat "$T/bmc2/calls.log")"
# The simulated server starts off and the fake deploy leaves power alone: the
# `set power 1` is Git's `power: on`, sent through ipmitool.
grep -q " set power 1" "$T/bmc1/calls.log" && [ "$(cat "$T/bmc1/power")" = 1 ] &&
    ok "Git's 'power: on' powered n-active on at bmc1" || bad "bmc1 power $(cat "$T/bmc1/power"); calls: $(cat "$T/bmc1/calls.log")"
ironic_field_is n-active power_state "power on" && ok "Ironic reads n-active as power on" || bad "n-active power: $(ironic_field n-active power_state)"

# Git asks for power off, then on again.
mark=$(calls_count bmc1)
node_active off
commit "power n-active off"
until_true "commit 'power: off' reaches bmc1 as 'set power 0'" 60 calls_after bmc1 "$mark" " set power 0$"
until_true "Ironic reads n-active as power off" 30 ironic_field_is n-active power_state "power off"
[ "$(cat "$T/bmc1/power")" = 0 ] && ok "bmc1 holds power 0" || bad "bmc1 power: $(cat "$T/bmc1/power")"
node_power_is() { ms node n-active -o json >"$T/node.json" 2>/dev/null &&
    py -c "import json,sys; n=json.load(open('$T/node.json'))['node']; sys.exit(0 if (n.get('powerState'), n.get('powerGoal')) == ('$1', '$2') else 1)"; }
until_true "metalsync node n-active shows powerState 'power off', powerGoal 'off'" 15 node_power_is "power off" off
until_true "n-active at its goal again" 30 status_is "s['nodes']['atGoal']==2"
[ "$(calls_count bmc2)" -ge 1 ] && ! calls_after bmc2 0 " set power" >/dev/null && ok "bmc2 got no power change (one BMC per node)" || bad "bmc2 calls: $(cat "$T/bmc2/calls.log")"

mark=$(calls_count bmc1)
node_active on
commit "power n-active on"
until_true "commit 'power: on' reaches bmc1 as 'set power 1'" 60 calls_after bmc1 "$mark" " set power 1$"
until_true "Ironic reads n-active as power on" 30 ironic_field_is n-active power_state "power on"
until_true "n-active at its goal again" 30 status_is "s['nodes']['atGoal']==2"

# Out of band: someone powers the server off at its BMC. Ironic's power sync
# records it, metalsync sees it and, Git asking for `on`, powers it back on.
power_actions() {
    ms node n-active -o json >"$T/node.json" 2>/dev/null &&
        py -c "import json; d=json.load(open('$T/node.json')); print(sum(1 for a in d['actions'] if a['verb']=='power' and a['state']=='done'))"
}
before=$(power_actions)
mark=$(calls_count bmc1)
bmc_ipmitool "$port1" chassis power off >/dev/null && ok "out-of-band 'chassis power off' at bmc1" || bad "ipmitool chassis power off"
new_power_action() { [ "$(power_actions)" -gt "$before" ]; }
until_true "metalsync node n-active shows the repair: a new power action" 60 new_power_action
py - "$T/node.json" <<'PY' && ok "the power action names power on" || bad "node n-active: $(cat "$T/node.json")"
import json, sys
d = json.load(open(sys.argv[1]))
powers = [a for a in d["actions"] if a["verb"] == "power"]
assert powers and "on" in json.dumps(powers[0]), powers
PY
until_true "bmc1 is powered on again ('set power 1' after the out-of-band off)" 60 calls_after bmc1 "$mark" " set power 1$"
[ "$(cat "$T/bmc1/power")" = 1 ] && ok "bmc1 holds power 1" || bad "bmc1 power: $(cat "$T/bmc1/power")"
ms node n-active >"$T/node.txt" 2>&1 && grep -qi "power" "$T/node.txt" && ok "metalsync node (text) shows the power action" || bad "node text: $(cat "$T/node.txt")"

for f in "$T/daemon.log" "$T/state/metalsync.db"* "$T/status.json" "$T/node.json" "$T/node.txt"; do
    [ -e "$f" ] || continue
    if grep -qF "$secret" "$f"; then bad "BMC password found in $f"; else ok "no BMC password in $(basename "$f")"; fi
done

kill -TERM "$daemon"
rc=0; wait "$daemon" || rc=$?
daemon=""
[ "$rc" -eq 0 ] && ok "SIGTERM: clean exit" || bad "SIGTERM exit code $rc"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
