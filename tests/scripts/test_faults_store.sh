#!/usr/bin/env bash
# State database faults, against the real daemon and real SQLite: a database
# from a newer schema is refused at start with a clear message; a database
# held locked by another process gives a clear error; a full disk under the
# state directory is survived (errors reported, no crash) and the database
# passes `PRAGMA integrity_check` afterwards. No Ironic is needed: the
# repository holds no nodes and the endpoint is one nobody listens on.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-faults-store-XXXXXX)
pass=0; fail=0; daemon=""; holder=""; mounted=""
PY=/usr/bin/python3
stop_daemon() {
    if [ -n "$daemon" ]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; daemon=""; fi
}
cleanup() {
    stop_daemon
    [ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null || true
    [ -n "$mounted" ] && umount "$mounted" 2>/dev/null || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -40 "$T"/daemon*.log 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
skip() { echo "skip $1"; }
sock="$T/metalsync.sock"
ms() { "$bin" "$@" -s "$sock"; }
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
gitc() { git -C "$T/repo" -c user.name="Ada Operator" -c user.email=ada@example.invalid "$@"; }
commit_change() {  # commit_change MESSAGE: a small change, prints the new commit id
    echo "# $1" >> "$T/repo/policy.yaml"
    gitc commit -qam "$1"
    gitc rev-parse HEAD
}

mkdir -p "$T/repo" "$T/state"
cat > "$T/repo/policy.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: Policy
metadata: {name: lab}
spec:
  prune: false
Y
gitc init -q -b main
gitc add -A && gitc commit -qm "policy only"
write_config() {  # write_config STATE_DIR
    cat > "$T/metalsync.yaml" <<CFG
stateDir: $1
socket: $sock
socketGroup: ""
credentialsDir: $T
git: {url: "file://$T/repo", branch: main, pollInterval: 1s, retryInterval: 1s}
ironic: {endpoint: "http://127.0.0.1:9", timeout: 2s}
metrics: {listen: ""}
CFG
}
write_config "$T/state"
start_daemon() { "$bin" daemon --config "$T/metalsync.yaml" >>"$T/daemon.log" 2>&1 & daemon=$!; }
db="$T/state/metalsync.db"

start_daemon
wait_for "daemon started and accepted the first revision" "s['revision']==\"$(gitc rev-parse HEAD)\"" 60
stop_daemon
known=$(sqlite3 "$db" 'SELECT max(version) FROM schema_migrations')
[ -n "$known" ] && ok "schema version $known recorded" || bad "no schema version in $db"

# --- a database from a newer schema ------------------------------------------
newer=$((known + 1))
sqlite3 "$db" "INSERT INTO schema_migrations (version, applied_at) VALUES ($newer, 'from the future')"
cp "$db" "$T/newer-before.db"
rc=0
timeout 60 "$bin" daemon --config "$T/metalsync.yaml" >"$T/daemon-newer.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && ok "newer schema: daemon exits 1" || bad "newer schema: exit code $rc"
grep -q "schema version $newer, this metalsync knows up to $known; upgrade metalsync or restore a backup" "$T/daemon-newer.log" &&
    ok "newer schema: the message names both versions and what to do" || bad "newer schema message: $(cat "$T/daemon-newer.log")"
grep -q "$db" "$T/daemon-newer.log" && ok "newer schema: the message names the file" || bad "newer schema: file not named"
[ "$(sqlite3 "$db" 'SELECT max(version) FROM schema_migrations')" = "$newer" ] && ok "newer schema: database left as it was" || bad "newer schema: database changed"
[ ! -S "$sock" ] && ok "newer schema: no socket left behind" || bad "newer schema: socket left"
sqlite3 "$db" "DELETE FROM schema_migrations WHERE version = $newer"

# --- a database locked by another process ---------------------------------
"$PY" - "$db" >"$T/holder.log" 2>&1 <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
PY
holder=$!
deadline=$(( $(date +%s) + 20 ))
until grep -q locked "$T/holder.log" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { bad "lock holder did not start: $(cat "$T/holder.log")"; break; }
    sleep 0.1
done
rc=0
timeout 120 "$bin" daemon --config "$T/metalsync.yaml" >"$T/daemon-locked.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && ok "locked: daemon exits 1" || bad "locked: exit code $rc"
grep -q "is locked by another writer" "$T/daemon-locked.log" && grep -q "$db" "$T/daemon-locked.log" &&
    ok "locked: clear message naming the file" || bad "locked message: $(cat "$T/daemon-locked.log")"
kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true; holder=""
start_daemon
wait_for "lock released: the daemon starts again on the same database" "s['revision']==\"$(gitc rev-parse HEAD)\"" 60

# The lock taken while the daemon runs: a new revision cannot be recorded
# while it is held; the daemon keeps answering and records it afterwards.
"$PY" - "$db" >"$T/holder.log" 2>&1 <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
PY
holder=$!
deadline=$(( $(date +%s) + 40 ))
until grep -q locked "$T/holder.log" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { bad "lock holder did not start: $(cat "$T/holder.log")"; break; }
    sleep 0.1
done
locked_commit=$(commit_change "committed while the database is locked")
wait_for "locked while running: the revision is not taken and status says why" \
    "s['gitError'] and 'cannot be recorded' in s['gitError'] and 'locked' in s['gitError'] and s['revision']!='$locked_commit'" 60
answered=0
for i in 1 2 3 4 5; do ms status -o json >/dev/null 2>&1 && answered=$((answered+1)); done
[ "$answered" -eq 5 ] && ok "locked while running: status answers" || bad "locked while running: status answered $answered/5"
kill -0 "$daemon" 2>/dev/null && ok "locked while running: daemon alive" || bad "locked while running: daemon died"
kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true; holder=""
wait_for "lock released: the revision is taken" "s['revision']=='$locked_commit' and not s['gitError']" 60
stop_daemon
[ "$(sqlite3 "$db" "SELECT count(*) FROM revisions WHERE commit_id = '$locked_commit'" 2>/dev/null)" -ge 1 ] 2>/dev/null &&
    ok "locked while running: the revision is recorded afterwards" || bad "locked while running: revision $locked_commit not in the revisions table"

# --- the disk full --------------------------------------------------------------
full="$T/full"
mkdir -p "$full"
if mount -t tmpfs -o size=8m tmpfs "$full" 2>"$T/mount.err"; then
    mounted="$full"
    write_config "$full/state"
    mkdir -p "$full/state"
    db="$full/state/metalsync.db"
    start_daemon
    wait_for "disk full: daemon started on a small file system" "s['revision']==\"$(gitc rev-parse HEAD)\"" 60
    dd if=/dev/zero of="$full/filler" bs=16k >/dev/null 2>&1 || true
    [ "$(df --output=avail -k "$full" | tail -1 | tr -d ' ')" -lt 16 ] && ok "disk full: file system filled" || bad "disk full: could not fill $(df -k "$full")"
    # New revisions while full: the clone cannot grow, the store cannot write.
    for i in 1 2 3; do full_commit=$(commit_change "while the disk is full $i"); done
    wait_for "disk full: the failure is reported in status" "s['gitError'] or s['rejected']" 60
    for i in 1 2 3 4 5; do ms status -o json >/dev/null 2>&1 || bad "disk full: status did not answer"; done
    kill -0 "$daemon" 2>/dev/null && ok "disk full: daemon alive" || bad "disk full: daemon died (see daemon.log)"
    rm -f "$full/filler"
    wait_for "space back: the new revision is taken" "s['revision']=='$full_commit' and not s['gitError'] and not s['rejected']" 60
    stop_daemon
    [ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] && ok "disk full: integrity_check ok" || bad "disk full: integrity_check: $(sqlite3 "$db" 'PRAGMA integrity_check' 2>&1 | head -5)"
    # And the database still opens for a daemon.
    start_daemon
    wait_for "disk full: the daemon starts again on it" "s['revision']=='$full_commit'" 60
    stop_daemon
    umount "$full" && mounted=""
else
    skip "disk full: cannot mount a tmpfs here ($(cat "$T/mount.err")); not tested"
fi
grep -q "Segmentation\|terminate called\|Aborted" "$T/daemon.log" && bad "daemon log shows a crash" || ok "no crash in the daemon log"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
