#!/usr/bin/env bash
# Control socket abuse against the real daemon: malformed JSON, oversized
# requests, a slow client holding its connection, 200 connections at once,
# and an unprivileged peer (uid nobody). Every reply is well-formed JSON, the
# daemon never dies, and another `metalsync status` answers throughout.
# No Ironic is needed: the repository holds no nodes.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-socket-abuse-XXXXXX)
pass=0; fail=0; daemon=""; bg=()
PY=/usr/bin/python3
cleanup() {
    for p in "${bg[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; tail -30 "$T/daemon.log" 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
chmod 0755 "$T"  # the unprivileged peer must reach the socket's directory
sock="$T/metalsync.sock"
ms() { "$bin" "$@" -s "$sock"; }
still_answers() {  # still_answers WHEN: another client gets a status while the abuse goes on
    if ms status -o json >"$T/st.json" 2>"$T/st.err" && "$PY" -c "import json; json.load(open('$T/st.json'))"; then
        ok "status answers $1"
    else
        bad "status did not answer $1: $(cat "$T/st.err")"
    fi
}

mkdir -p "$T/repo" "$T/state"
printf 'apiVersion: metalsync.dev/v1alpha1\nkind: Policy\nmetadata: {name: lab}\nspec: {prune: false}\n' > "$T/repo/policy.yaml"
git -C "$T/repo" init -q -b main
git -C "$T/repo" add -A
git -C "$T/repo" -c user.name=t -c user.email=t@example.invalid commit -qm good
cat > "$T/metalsync.yaml" <<CFG
stateDir: $T/state
socket: $sock
socketGroup: ""
credentialsDir: $T
git: {url: "file://$T/repo", branch: main, pollInterval: 1s, retryInterval: 1s}
ironic: {endpoint: "http://127.0.0.1:9", timeout: 2s}
metrics: {listen: ""}
CFG
"$bin" daemon --config "$T/metalsync.yaml" >"$T/daemon.log" 2>&1 &
daemon=$!
deadline=$(( $(date +%s) + 60 ))
until ms status >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { bad "daemon did not answer"; exit 1; }
    sleep 0.2
done
ok "daemon answers"

# The raw client: one request per connection, the reply parsed strictly.
cat > "$T/client.py" <<'PY'
import json, socket, sys, time, threading

path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    return s

def read_reply(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    reply = json.loads(data.decode())  # must be well-formed JSON
    assert isinstance(reply, dict) and isinstance(reply.get("result"), int) and isinstance(reply.get("text"), str), reply
    return reply

def ask(payload, shut=True):
    s = conn()
    try:
        s.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    if shut:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    r = read_reply(s)
    s.close()
    return r

def expect(name, payload, result, text, shut=True):
    r = ask(payload, shut)
    assert r["result"] == result and text in r["text"], f"{name}: {r}"
    print(f"{name}: result {r['result']}, {r['text'][:100]}")

mode = sys.argv[2]
if mode == "malformed":
    expect("not JSON", b"hello daemon\n", 1, "malformed")
    expect("truncated JSON", b'{"command": "status-get"', 1, "")
    expect("JSON array", b'[1, 2, 3]', 1, "malformed")
    expect("bad JSON inside", b'{"command": ]}', 1, "")
    expect("command not a string", b'{"command": 5}', 1, "string")
    expect("no command", b'{"arguments": {}}', 1, "command")
    expect("arguments not an object", b'{"command": "node-get", "arguments": [1]}', 1, "arguments")
    expect("unknown command", b'{"command": "format-disks"}', 2, "not supported")
    expect("invalid UTF-8", b'{"command": "status-\xff\xfe"}', 1, "")
    expect("NUL bytes", b'{"command": "status-get\x00"}', 1, "")
    expect("deep JSON", b'{"command": "status-get", "arguments": ' + b'[' * 100000 + b']' * 100000 + b'}', 1, "")
    expect("empty", b"", 1, "")
elif mode == "oversized":
    expect("1 MiB request", b'{"command": "status-get", "arguments": {"x": "' + b"A" * (1 << 20) + b'"}}', 1, "larger than")
    # 20 MiB streamed without end: the daemon answers and stops reading.
    s = conn()
    s.settimeout(60)
    sent = 0
    try:
        s.sendall(b'{"command": "status-get", "arguments": {"x": "')
        while sent < 20 << 20:
            s.sendall(b"B" * 65536)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    r = read_reply(s)
    assert r["result"] == 1 and "larger than" in r["text"], r
    print(f"endless request: stopped after {sent} bytes sent, result {r['result']}, {r['text']}")
elif mode == "slow":
    # Sends half a request, then holds the connection; prints the reply it
    # gets when the daemon gives up on it.
    s = conn()
    s.sendall(b'{"comm')
    print("holding", flush=True)
    r = read_reply(s)
    assert r["result"] == 1 and "not complete within" in r["text"], r
    print(f"slow client: result {r['result']}, {r['text']}", flush=True)
elif mode == "trickle":
    # One byte at a time, a whole valid request, slower than a normal client.
    s = conn()
    for b in b'{"command": "version-get"}':
        s.send(bytes([b]))
        time.sleep(0.02)
    s.shutdown(socket.SHUT_WR)
    r = read_reply(s)
    assert r["result"] == 0, r
    print(f"trickle: {r['text']}")
elif mode == "many":
    n = int(sys.argv[3])
    results, errors = [], []
    def one(i):
        try:
            results.append(ask(json.dumps({"command": "status-get" if i % 2 else "version-get"}).encode()))
        except Exception as e:
            errors.append(repr(e))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors, errors[:5]
    assert len(results) == n and all(r["result"] == 0 for r in results), [r for r in results if r["result"] != 0][:3]
    print(f"{n} concurrent requests: {len(results)} well-formed replies, all result 0")
elif mode == "hold":
    # n idle connections opened at once and held open, sending nothing.
    n = int(sys.argv[3])
    held = [conn() for _ in range(n)]
    print(f"holding {n}", flush=True)
    time.sleep(600)
elif mode == "mutate":
    # As an unprivileged peer: a read-only command answers, mutating ones are refused.
    r = ask(b'{"command": "status-get"}')
    assert r["result"] == 0, r
    print("status-get: result 0")
    for cmd in ["shutdown", "reconcile-now", "suspend", "config-reload"]:
        r = ask(json.dumps({"command": cmd}).encode())
        assert r["result"] == 1 and "needs" in r["text"] and "uid 65534" in r["text"], r
        print(f"{cmd}: refused: {r['text']}")
else:
    sys.exit("unknown mode " + mode)
PY

"$PY" "$T/client.py" "$sock" malformed >"$T/malformed.out" 2>&1 && ok "malformed requests: well-formed error replies" || bad "malformed: $(tail -5 "$T/malformed.out")"
sed 's/^/     /' "$T/malformed.out"
still_answers "after malformed requests"
"$PY" "$T/client.py" "$sock" oversized >"$T/oversized.out" 2>&1 && ok "oversized requests refused with a reply" || bad "oversized: $(tail -5 "$T/oversized.out")"
sed 's/^/     /' "$T/oversized.out"
still_answers "after oversized requests"

# A slow client: half a request, held. Others are served meanwhile; the slow
# one gets a timeout reply in the end.
"$PY" "$T/client.py" "$sock" slow >"$T/slow.out" 2>&1 &
slow=$!; bg+=("$slow")
deadline=$(( $(date +%s) + 10 ))
until grep -q holding "$T/slow.out"; do [ "$(date +%s)" -lt "$deadline" ] || break; sleep 0.1; done
still_answers "while a slow client holds a connection"
"$PY" "$T/client.py" "$sock" trickle >"$T/trickle.out" 2>&1 && ok "a byte-at-a-time client is served" || bad "trickle: $(cat "$T/trickle.out")"
rc=0; wait "$slow" || rc=$?
[ "$rc" -eq 0 ] && ok "slow client got a timeout reply: $(tail -1 "$T/slow.out")" || bad "slow client: $(cat "$T/slow.out")"

# 200 requests at once.
"$PY" "$T/client.py" "$sock" many 200 >"$T/many.out" 2>&1 && ok "$(cat "$T/many.out")" || bad "200 at once: $(tail -5 "$T/many.out")"
still_answers "after 200 requests at once"

# 200 idle connections opened at once and held: the daemon must keep serving others.
"$PY" "$T/client.py" "$sock" hold 200 >"$T/hold.out" 2>&1 &
hold=$!; bg+=("$hold")
deadline=$(( $(date +%s) + 20 ))
until grep -q holding "$T/hold.out"; do [ "$(date +%s)" -lt "$deadline" ] || break; sleep 0.1; done
grep -q holding "$T/hold.out" && ok "200 idle connections open" || bad "could not open 200 connections: $(cat "$T/hold.out")"
still_answers "while 200 idle connections are held"
kill "$hold" 2>/dev/null || true; wait "$hold" 2>/dev/null || true

# --- an unprivileged peer ---------------------------------------------------------
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
mode=$(stat -c %a "$sock")
[ "$mode" = 660 ] && ok "socket mode 0660" || bad "socket mode $mode"
rc=0; as_nobody "$bin" status -s "$sock" >"$T/nobody.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -qi "permission denied" "$T/nobody.out" && ok "nobody cannot connect to a 0660 socket: $(head -1 "$T/nobody.out" | cut -c1-150)" ||
    bad "nobody on a 0660 socket: exit $rc: $(cat "$T/nobody.out")"
# An operator who opens the socket to everyone (0666) for monitoring: read-only
# commands answer, mutating ones are refused by the daemon.
chmod 0666 "$sock"
cp "$T/client.py" "$T/client-nobody.py"; chmod 0644 "$T/client-nobody.py"
as_nobody "$bin" status -s "$sock" >"$T/nobody.out" 2>&1 && ok "nobody reads status through a 0666 socket" || bad "nobody status: $(cat "$T/nobody.out")"
as_nobody "$PY" "$T/client-nobody.py" "$sock" mutate >"$T/mutate.out" 2>&1 && ok "nobody's mutating commands refused" || bad "nobody mutate: $(cat "$T/mutate.out")"
sed 's/^/     /' "$T/mutate.out"
rc=0; as_nobody "$bin" sync -s "$sock" >"$T/nobody-cli.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && ok "metalsync sync as nobody fails (exit $rc): $(head -1 "$T/nobody-cli.out" | cut -c1-150)" || bad "sync as nobody: exit $rc: $(cat "$T/nobody-cli.out")"
chmod 0660 "$sock"
kill -0 "$daemon" 2>/dev/null && ok "daemon alive after the abuse" || bad "daemon died"
still_answers "at the end"
grep -q "refused to uid 65534" "$T/daemon.log" && ok "refusals logged with the peer's uid" || bad "no refusal in the daemon log"
kill -TERM "$daemon"; rc=0; wait "$daemon" || rc=$?; daemon=""
[ "$rc" -eq 0 ] && ok "daemon exits cleanly" || bad "daemon exit code $rc"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
