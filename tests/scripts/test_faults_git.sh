#!/usr/bin/env bash
# Git faults, end to end against the real daemon: the remote (a `git daemon`
# on 127.0.0.1) goes away and comes back; a remote that accepts and never
# answers; a force-push; a commit with broken YAML. Each time the last good
# revision stays in force, `metalsync status` shows the condition, and the
# daemon recovers. The repositories hold no nodes, so no Ironic is needed: the
# daemon gets an endpoint nobody listens on, warns and keeps going.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-faults-git-XXXXXX)
pass=0; fail=0; daemon=""; gitd=""; staller=""
PY=/usr/bin/python3
stop_daemon() {
    if [ -n "$daemon" ]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; daemon=""; fi
}
cleanup() {
    stop_daemon
    [ -n "$gitd" ] && kill "$gitd" 2>/dev/null && wait "$gitd" 2>/dev/null || true
    [ -n "$staller" ] && kill "$staller" 2>/dev/null && wait "$staller" 2>/dev/null || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -40 "$T/daemon.log" 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
sock="$T/metalsync.sock"
ms() { "$bin" "$@" -s "$sock"; }
# wait_for DESCRIPTION PYTHON-EXPR-ON-STATUS-JSON [SECONDS]
wait_for() {
    local what=$1 expr=$2 deadline=$(( $(date +%s) + ${3:-60} ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if ms status -o json >"$T/status.json" 2>/dev/null &&
           "$PY" -c "import json,sys; s=json.load(open('$T/status.json')); sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
            ok "$what"; return 0
        fi
        sleep 0.3
    done
    bad "$what (last status: $(cat "$T/status.json" 2>/dev/null))"; return 1
}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
gitc() { git -C "$T/work" -c user.name="Ada Operator" -c user.email=ada@example.invalid "$@"; }
head_of() { git -C "$T/work" rev-parse HEAD; }
events() { ms events --limit 50 -o json 2>/dev/null || true; }

# The working copy pushes to a bare repository that `git daemon` serves.
mkdir -p "$T/work" "$T/srv" "$T/state"
git init -q --bare -b main "$T/srv/fleet.git"
touch "$T/srv/fleet.git/git-daemon-export-ok"
git -C "$T/work" init -q -b main
cat > "$T/work/policy.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: Policy
metadata: {name: lab}
spec:
  prune: false
Y
gitc add -A && gitc commit -qm "policy only"
gitc remote add origin "$T/srv/fleet.git"
gitc push -q origin main
good1=$(head_of)

git_port=$(free_port)
start_git_daemon() {
    git daemon --reuseaddr --listen=127.0.0.1 --port="$git_port" --base-path="$T/srv" --export-all "$T/srv" \
        >>"$T/git-daemon.log" 2>&1 &
    gitd=$!
    local deadline=$(( $(date +%s) + 20 ))
    until git ls-remote "git://127.0.0.1:$git_port/fleet.git" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { bad "git daemon did not start"; return 1; }
        sleep 0.2
    done
}
stop_git_daemon() { kill "$gitd" 2>/dev/null || true; wait "$gitd" 2>/dev/null || true; gitd=""; }
start_git_daemon

write_config() {  # write_config URL [CONNECT-TIMEOUT]
    cat > "$T/metalsync.yaml" <<CFG
stateDir: $T/state
socket: $sock
socketGroup: ""
credentialsDir: $T/state
git:
  url: "$1"
  branch: main
  pollInterval: 1s
  retryInterval: 1s
  connectTimeout: ${2:-2s}
  fetchTimeout: 3s
ironic: {endpoint: "http://127.0.0.1:9", timeout: 2s}
metrics: {listen: ""}
CFG
}
write_config "git://127.0.0.1:$git_port/fleet.git"
start_daemon() { "$bin" daemon --config "$T/metalsync.yaml" >>"$T/daemon.log" 2>&1 & daemon=$!; }
start_daemon

wait_for "first revision accepted over git://" "s['revision']=='$good1' and not s['gitError']" 60
wait_for "an unreachable Ironic is reported, not fatal" "s['ironicError']" 30
kill -0 "$daemon" 2>/dev/null && ok "daemon runs with no Ironic" || bad "daemon exited without an Ironic"

# --- (a) the remote goes away --------------------------------------------
stop_git_daemon
wait_for "remote down: status shows the Git error" "s['gitError'] and s['revision']=='$good1'" 30
ms status >"$T/out.txt" 2>&1 || true
grep -qi "git" "$T/out.txt" && ok "status text mentions git" || bad "status text: $(cat "$T/out.txt")"
# A commit pushed while the daemon cannot see it; the remote then returns.
echo "# touched" >> "$T/work/policy.yaml"
gitc commit -qam "while the remote was down"
gitc push -q origin main
good2=$(head_of)
start_git_daemon
wait_for "remote back: error cleared, new revision followed" "not s['gitError'] and s['revision']=='$good2'" 60
events | grep -q '"git.poll.failed"' && ok "event git.poll.failed recorded" || bad "no git.poll.failed event"

# The same with a file:// remote moved away (the repository directory gone).
stop_daemon
write_config "file://$T/srv/fleet.git"
start_daemon
wait_for "file:// remote: revision still in force after restart" "s['revision']=='$good2' and not s['gitError']" 60
mv "$T/srv/fleet.git" "$T/srv/moved.git"
wait_for "file:// remote moved away: Git error, revision kept" "s['gitError'] and s['revision']=='$good2'" 30
mv "$T/srv/moved.git" "$T/srv/fleet.git"
wait_for "file:// remote back: error cleared" "not s['gitError'] and s['revision']=='$good2'" 30

# --- (b) a stalled connection ----------------------------------------------
# The git daemon's port is taken over by a listener that accepts and never
# answers: the daemon keeps its URL and sees the remote hang.
stop_daemon
write_config "git://127.0.0.1:$git_port/fleet.git" 12s
start_daemon
wait_for "git:// remote polled again after a restart" "s['revision']=='$good2' and not s['gitError']" 60
stop_git_daemon
"$PY" - "$git_port" >"$T/staller.log" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
print("listening", flush=True)
held = []
while True:
    c, _ = s.accept()
    held.append(c)  # accepted, never answered, never closed
PY
staller=$!
deadline=$(( $(date +%s) + 10 ))
until grep -q listening "$T/staller.log" 2>/dev/null; do [ "$(date +%s)" -lt "$deadline" ] || break; sleep 0.1; done
# The poll hangs on a thread of its own: the loop goes on meanwhile. A sync
# makes it observe (Ironic, unreachable here, counts one more failure) while
# the poll is still hanging; a loop blocked in the poll could not.
wait_for "a poll hangs on the stalled remote (status shows it running)" "s['gitPollingSince']" 20
before=$("$PY" -c "import json; print(json.load(open('$T/status.json'))['ironicOutage']['failedObservations'])")
ms sync >/dev/null
wait_for "the loop observes while the poll hangs" "s['gitPollingSince'] and s['ironicOutage']['failedObservations'] > $before" 5
wait_for "stalled remote: poll times out, status shows it, revision kept" \
    "s['gitError'] and ('no answer within' in s['gitError'] or 'timed out' in s['gitError']) and s['revision']=='$good2'" 60
# The socket answers while polls hang (each retry hangs for connectTimeout).
answered=0
for i in 1 2 3 4 5; do ms status -o json >/dev/null 2>&1 && answered=$((answered+1)); done
[ "$answered" -eq 5 ] && ok "status answers while polls hang" || bad "status answered $answered/5 while polls hang"
ms version >/dev/null 2>&1 && ok "version answers while polls hang" || bad "version during a hanging poll"
# SIGTERM during a hanging poll: the fetch worker is killed, the daemon stops
# at once rather than at the 12 s connect deadline.
wait_for "a poll hangs again" "s['gitPollingSince']" 20
term_at=$(date +%s%N)
kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=""
term_ms=$(( ($(date +%s%N) - term_at) / 1000000 ))
[ "$term_ms" -lt 5000 ] && ok "SIGTERM during a hanging poll stops the daemon in ${term_ms} ms" ||
    bad "SIGTERM during a hanging poll took ${term_ms} ms (the fetch held the stop)"
start_daemon
kill "$staller" 2>/dev/null || true; wait "$staller" 2>/dev/null || true; staller=""
start_git_daemon
wait_for "remote answers again: error cleared" "not s['gitError'] and s['revision']=='$good2'" 60
stop_daemon

# --- (c) force-push rewriting history --------------------------------------
write_config "file://$T/srv/fleet.git"
start_daemon
wait_for "back on the good remote" "s['revision']=='$good2' and not s['gitError']" 60
gitc reset -q --hard "$good1"
echo "# rewritten" >> "$T/work/policy.yaml"
gitc commit -qam "rewritten history"
gitc push -q -f origin main
rewritten=$(head_of)
wait_for "force-push followed" "s['revision']=='$rewritten' and not s['gitError']" 30
events | grep -q '"git.history.rewritten"' && ok "event git.history.rewritten recorded" || bad "no git.history.rewritten event: $(events | head -c 2000)"

# --- (d) a commit with broken YAML ----------------------------------------
mkdir -p "$T/work/nodes"
printf 'apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: lab\nspec:\n  bmc: [\n' > "$T/work/nodes/broken.yaml"
gitc add -A && gitc commit -qm "broken yaml"
gitc push -q origin main
broken=$(head_of)
wait_for "broken YAML rejected with file:line, previous revision in force" \
    "s['rejected'] and s['rejected']['commit']=='$broken' and any('nodes/broken.yaml:' in e for e in s['rejected']['errors']) and s['revision']=='$rewritten'" 30
"$PY" -c "
import json,re,sys; s=json.load(open('$T/status.json'))
sys.exit(0 if any(re.search(r'nodes/broken\.yaml:\d+', e) for e in s['rejected']['errors']) else 1)" &&
    ok "the error names file:line" || bad "no file:line in $(cat "$T/status.json")"
ms status >"$T/out.txt" 2>&1 || true
grep -q "rejected" "$T/out.txt" && ok "status text shows the rejection" || bad "status text: $(cat "$T/out.txt")"
printf 'apiVersion: metalsync.dev/v1alpha1\nkind: NodeClass\nmetadata: {name: lab}\nspec:\n  bmc: {driver: fake-hardware}\n' > "$T/work/nodes/broken.yaml"
gitc commit -qam "fix yaml"
gitc push -q origin main
fixed=$(head_of)
wait_for "fix commit accepted, rejection cleared" "s['revision']=='$fixed' and not s['rejected']" 30

stop_daemon
grep -q "Segmentation\|terminate called\|Aborted" "$T/daemon.log" && bad "daemon log shows a crash" || ok "no crash in the daemon log"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
