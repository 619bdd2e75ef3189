#!/usr/bin/env bash
# Bash completion (packaging/metalsync.bash-completion) against the real
# binary: the subcommands it offers are exactly those of `metalsync --help`,
# every subcommand's options are those of its --help, option values come from
# the help, and `node`/`suspend`/`resume` complete the node names of a real
# daemon (real Ironic, real Git repository) — and nothing, quietly, without one.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-completion-XXXXXX)
pass=0; fail=0; daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -30 "$T/daemon.log" 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
sock="$T/metalsync.sock"

# shellcheck source=/dev/null
source "$src/packaging/metalsync.bash-completion"
# complete WORD... : COMPREPLY for a command line whose last word is being
# completed, sorted, on one line.
complete_line() {
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _metalsync
    printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
expect() {  # expect DESCRIPTION EXPECTED WORD...
    local what=$1 want=$2; shift 2
    local got
    got=$(complete_line "$@")
    if [ "$got" = "$want" ]; then ok "$what"; else bad "$what: got '$got', want '$want'"; fi
}
sorted() { tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ $//'; }

# The subcommands, as --help lists them (whatever they are today).
help_subcommands=$("$bin" --help | awk '/^[A-Za-z]+:$/ { s = $0; next } s == "Subcommands:" && /^  [a-z]/ { print $1 }' | tr '\n' ' ' | sorted)
[ -n "$help_subcommands" ] && ok "metalsync --help lists subcommands: $help_subcommands" || bad "no subcommands in metalsync --help"
expect "subcommands completed = metalsync --help's" "$help_subcommands" "$bin" ""
for must in validate plan daemon status nodes node events sync suspend resume version; do
    case " $help_subcommands " in *" $must "*) ;; *) bad "subcommand $must missing from --help" ;; esac
done
expect "prefix st -> status" "status" "$bin" st
expect "top-level options" "--help --version" "$bin" -

# Every subcommand's options: exactly the long and short names in its --help.
for sub in $help_subcommands; do
    want=$("$bin" "$sub" --help | awk '/^[A-Za-z]+:$/ { s = $0; next } s == "Options:" && /^  -/ { n = split($1, p, ","); for (i = 1; i <= n; i++) print p[i] }' | tr '\n' ' ' | sorted)
    expect "$sub: options = its --help's" "$want" "$bin" "$sub" -
done
expect "status --w -> --watch" "--watch" "$bin" status --w
expect "status -o: values from the help" "json text" "$bin" status -o ""
expect "status --output=j" "json" "$bin" status --output=j
expect "daemon --log-format values" "json text" "$bin" daemon --log-format ""
mkdir -p "$T/dirs/alpha" "$T/dirs/beta"
expect "plan --repo completes directories" "$T/dirs/alpha $T/dirs/beta" "$bin" plan --repo "$T/dirs/"
expect "an option's value is not a subcommand" "" "$bin" events --since ""

# The same through bash-completion's _init_completion, as in an interactive shell.
if [ -f /usr/share/bash-completion/bash_completion ]; then
    got=$(bash -c 'source /usr/share/bash-completion/bash_completion; source "$1/packaging/metalsync.bash-completion"
        c() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _metalsync; echo "${COMPREPLY[*]}"; }
        c "$2" st; c "$2" status --output=j; c "$2" daemon --log-format t' _ "$src" "$bin" | tr '\n' '/')
    [ "$got" = "status/json/text/" ] && ok "with bash-completion's _init_completion" || bad "with _init_completion: $got"
else
    echo "skip _init_completion variant: bash-completion is not installed"
fi

# No daemon: no node names, no error, no hang.
start=$(date +%s)
expect "node NAME without a daemon: nothing" "" "$bin" node -s "$sock" ""
[ $(( $(date +%s) - start )) -lt 10 ] && ok "no daemon: completion returns at once" || bad "no daemon: completion hung"
out=$(complete_line "$bin" node -s "$sock" "" 2>&1)
[ -z "$out" ] && ok "no daemon: nothing printed" || bad "no daemon: printed '$out'"

# A real daemon with three nodes: their names complete.
endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic")
mkdir -p "$T/repo" "$T/state" "$T/credentials"
printf 'username: admin\npassword: completion-test\n' > "$T/credentials/lab-bmc"
chmod 600 "$T/credentials/lab-bmc"
for n in rack1-node01 rack1-node02 rack2-node01; do
    last=${n: -1}; rack=${n:4:1}
    cat > "$T/repo/$n.yaml" <<Y
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata: {name: $n}
spec:
  bmc: {driver: fake-hardware, address: 192.0.2.$rack$last, credentials: lab-bmc}
  interfaces: {boot: fake, deploy: fake, power: fake, management: fake, inspect: fake}
  ports: [{mac: "52:54:00:00:0$rack:0$last"}]
  provisionState: manageable
Y
done
git -C "$T/repo" init -q -b main
git -C "$T/repo" add -A
git -C "$T/repo" -c user.name=Test -c user.email=test@example.invalid commit -qm "three nodes"
cat > "$T/metalsync.yaml" <<CFG
stateDir: $T/state
socket: $sock
socketGroup: ""
credentialsDir: $T/credentials
git: {url: "file://$T/repo", branch: main, pollInterval: 1s, retryInterval: 1s}
ironic: {endpoint: "$endpoint"}
metrics: {listen: ""}
CFG
"$bin" daemon --config "$T/metalsync.yaml" >"$T/daemon.log" 2>&1 &
daemon=$!
deadline=$(( $(date +%s) + 120 ))
until [ "$(complete_line "$bin" node -s "$sock" "")" = "rack1-node01 rack1-node02 rack2-node01" ] || [ "$(date +%s)" -ge "$deadline" ]; do
    sleep 0.5
done
expect "node NAME from the daemon" "rack1-node01 rack1-node02 rack2-node01" "$bin" node -s "$sock" ""
expect "node rack1 prefix" "rack1-node01 rack1-node02" "$bin" node --socket "$sock" rack1
expect "suspend NAME" "rack2-node01" "$bin" suspend "--socket=$sock" rack2
expect "resume NAME" "rack1-node01 rack1-node02 rack2-node01" "$bin" resume -s "$sock" ""
METALSYNC_SOCKET=$sock expect "node NAME via \$METALSYNC_SOCKET" "rack1-node02" "$bin" node rack1-node02

echo "passed $pass, failed $fail"
[ "$fail" -eq 0 ]
