#!/usr/bin/env bash
# Secrets, end to end: a full rollout with known, distinctive secrets — a Git
# token (HTTPS remote with a private CA, HTTP basic auth), one BMC password per
# node, Ironic's http_basic password (clouds.yaml), a Kubernetes bearer token —
# then the error paths where a secret is most likely to slip out: the Git token
# refused and rotated, a BMC password changed (re-applied), a credentials file
# that is not valid YAML around its password, a broken commit, the management
# cluster refusing the token. Then every log line, every file metalsync owns
# (the SQLite database, -wal, -shm, the local clone), every socket reply and
# every CLI output and error is searched for each secret in clear, base64 (at
# any alignment, and as "user:secret" basic-auth), URL-encoded, JSON-escaped,
# hex and unsalted SHA-256. Zero hits. A planted file proves the search finds.
# The HTTPS remote's certificate names 127.0.0.1 as an iPAddress entry only;
# one for another address and one from another CA are refused.
# Ironic's own directory is not searched: it stores the BMC passwords by design.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-secrets-XXXXXX)
PY=/usr/bin/python3
pass=0; fail=0; daemon=""; url_daemon=""; gitsrv=""; main_srv=""; fake=""
out="$T/out"   # every captured reply and CLI output: searched
stop_pid() { [ -n "$1" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true; }
cleanup() {
    stop_pid "$daemon"; stop_pid "$url_daemon"; stop_pid "$gitsrv"; stop_pid "$fake"; [ "$main_srv" = "$gitsrv" ] || stop_pid "$main_srv"
    "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true
    if [ "$fail" -eq 0 ] && [ "${METALSYNC_KEEP_TMP:-0}" != 1 ]; then rm -rf "$T"; else echo "kept $T"; tail -40 "$out/daemon.log" 2>/dev/null || true; fi
}
trap cleanup EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
sock="$T/metalsync.sock"
n_out=0
# cap NAME CMD...: runs CMD, keeps its stdout and stderr under $out (searched later)
cap() { local name=$1; shift; n_out=$((n_out+1)); last="$out/$n_out-$name"; "$@" >"$last.out" 2>"$last.err" || true; }
# saw PATTERN DESCRIPTION: the last cap's output or error holds PATTERN (the error path really ran)
saw() { if grep -qiE -- "$1" "$last.out" "$last.err"; then ok "$2"; else bad "$2: $(head -c 600 "$last.out" "$last.err")"; fi; }
ms() { "$bin" "$@" -s "$sock"; }
wait_json() {  # wait_json DESCRIPTION SECONDS PYTHON-EXPR-ON-j -- COMMAND...
    local what=$1 seconds=$2 expr=$3; shift 3
    local deadline=$(( $(date +%s) + seconds ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if "$@" >"$out/last.json" 2>/dev/null || [ -s "$out/last.json" ]; then
            if "$PY" -c "import json,sys; j=json.load(open('$out/last.json')); sys.exit(0 if ($expr) else 1)" 2>/dev/null; then
                ok "$what"; return 0
            fi
        fi
        sleep 0.3
    done
    bad "$what (last: $(head -c 1500 "$out/last.json" 2>/dev/null))"  # counted; the search still runs
}
status_json() { ms status -o json; }
rnd() { "$PY" -c 'import secrets; print(secrets.token_hex(8))'; }
gitc() { git -C "$T/work" -c user.name="Ada Operator" -c user.email=ada@example.invalid "$@"; }
commit_push() { gitc add -A && gitc commit -qm "$1" && gitc push -q origin main; }
mkdir -p "$out" "$T/state" "$T/credentials" "$T/srv" "$T/work/nodes" "$T/tls"

# --- the secrets: each carries a random core and characters that URL-encoding changes
git_token="gtk-$(rnd)+/="
git_token2="gtk2-$(rnd)+/="
kube_token="kbt-$(rnd)+/="
ironic_pw="ipw-$(rnd)+/!"
ironic_pw_wrong="ipw-wrong-$(rnd)+/!"
declare -A bmc_pw
for n in n1 n2 n3 n4; do bmc_pw[$n]="bmc-$n-$(rnd)+/!"; done
bmc_pw_rotated="bmc-n2b-$(rnd)+/!"
secrets=("$git_token" "$git_token2" "$kube_token" "$ironic_pw" "$ironic_pw_wrong" "${bmc_pw[n1]}" "${bmc_pw[n2]}" "${bmc_pw[n3]}" "${bmc_pw[n4]}" "$bmc_pw_rotated")

# --- a private CA and a server certificate for 127.0.0.1 (Git remote and Kubernetes API)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls/ca.key" -out "$T/tls/ca.pem" -days 2 \
    -subj "/CN=metalsync secrets test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -keyout "$T/tls/server.key" -out "$T/tls/server.csr" -subj "/CN=127.0.0.1" >/dev/null 2>&1
sign() {  # sign NAME SUBJECT-ALT-NAME [CA]: NAME.pem, NAME.key for 127.0.0.1
    openssl req -newkey rsa:2048 -nodes -keyout "$T/tls/$1.key" -out "$T/tls/$1.csr" -subj "/CN=127.0.0.1" >/dev/null 2>&1
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$2" >"$T/tls/$1.cnf"
    openssl x509 -req -in "$T/tls/$1.csr" -CA "$T/tls/${3:-ca}.pem" -CAkey "$T/tls/${3:-ca}.key" -CAcreateserial \
        -out "$T/tls/$1.pem" -days 2 -extfile "$T/tls/$1.cnf" >/dev/null 2>&1
}
# The address only as an iPAddress entry, the standard form (mbedTLS 2.28 alone would refuse it).
sign server IP:127.0.0.1
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls/other-ca.key" -out "$T/tls/other-ca.pem" -days 2 \
    -subj "/CN=another CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1
sign wrong-ip IP:192.0.2.77        # our CA, another address
sign foreign IP:127.0.0.1 other-ca   # the right address, another CA
openssl verify -CAfile "$T/tls/ca.pem" "$T/tls/server.pem" >/dev/null && ok "private CA and server certificate" || bad "openssl certificates"

# --- the Git remote: `git http-backend` over HTTPS, basic auth git:<token>
# (tests/support/git_http_server.py); the token file is read on every request,
# so the test can rotate it.
printf '%s\n' "$git_token" >"$T/srv-token"
git init -q --bare -b main "$T/srv/fleet.git"
start_gitsrv() {  # start_gitsrv CERT-NAME PORT-FILE: sets $gitsrv
    "$PY" "$src/tests/support/git_http_server.py" --root "$T/srv" --port-file "$2" --token-file "$T/srv-token" \
        --tls-cert "$T/tls/$1.pem" --tls-key "$T/tls/$1.key" --request-log "$T/git-requests.log" >>"$T/gitsrv.log" 2>&1 &
    gitsrv=$!
    for _ in $(seq 100); do [ -s "$2" ] && break; sleep 0.1; done
}
start_gitsrv server "$T/git-port"
git_url="https://127.0.0.1:$(cat "$T/git-port")/fleet.git"
printf '%s\n' "$git_token" >"$T/git-token"; chmod 600 "$T/git-token"

# --- Ironic with http_basic, reached through clouds.yaml
endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic" --basic "metalsync:$ironic_pw")
cat >"$T/clouds.yaml" <<Y
clouds:
  lab:
    auth_type: http_basic
    auth: {username: metalsync, password: '$ironic_pw'}
    baremetal_endpoint_override: $endpoint
Y
chmod 600 "$T/clouds.yaml"
ironic_get() {  # ironic_get PATH -> JSON body
    IPW=$ironic_pw "$PY" - "$endpoint" "$1" <<'PY'
import base64, os, sys, urllib.request
auth = base64.b64encode(("metalsync:" + os.environ["IPW"]).encode()).decode()
req = urllib.request.Request(sys.argv[1] + sys.argv[2], headers={"X-OpenStack-Ironic-API-Version": "1.82", "Authorization": "Basic " + auth})
print(urllib.request.urlopen(req).read().decode())
PY
}
ironic_driver_info() {  # what Ironic stored (its own database: the API masks passwords)
    "$PY" -c "import sqlite3,sys; c=sqlite3.connect('file:$T/ironic/ironic.db?mode=ro', uri=True); r=c.execute('select driver_info from nodes where name=?', (sys.argv[1],)).fetchone(); print(r[0] if r else '')" "$1"
}

# --- the Kubernetes management cluster: the fake API server over TLS with a bearer token
start_fake() {  # start_fake TOKEN [PORT]
    rm -f "$T/kube-port"
    "$PY" "$src/tests/fake_kube/fake_apiserver.py" --listen "127.0.0.1:${2:-0}" --port-file "$T/kube-port" \
        --tls-cert "$T/tls/server.pem" --tls-key "$T/tls/server.key" --token "$1" >>"$T/fake.log" 2>&1 &
    fake=$!
    for _ in $(seq 200); do [ -s "$T/kube-port" ] && break; sleep 0.05; done
}
start_fake "$kube_token"
kube_port=$(cat "$T/kube-port")
cat >"$T/kubeconfig" <<K
apiVersion: v1
kind: Config
clusters:
- name: management
  cluster: {server: "https://127.0.0.1:$kube_port", certificate-authority: "$T/tls/ca.pem"}
users:
- name: metalsync
  user: {token: "$kube_token"}
contexts:
- name: management
  context: {cluster: management, user: metalsync, namespace: default}
current-context: management
K
chmod 600 "$T/kubeconfig"

# --- BMC credentials: one file, one distinctive password per node
write_creds() {  # write_creds FILE PASSWORD
    printf "username: admin\npassword: '%s'\n" "$2" >"$T/credentials/$1"; chmod 600 "$T/credentials/$1"
}
for n in n1 n2 n3; do write_creds "bmc-$n" "${bmc_pw[$n]}"; done

# --- the repository: three nodes to roll out to active (image + config drive), two Kubernetes objects
cat >"$T/work/class.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: NodeClass
metadata: {name: lab}
spec:
  bmc: {driver: fake-hardware}
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
---
apiVersion: v1
kind: Namespace
metadata: {name: fleet}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: fleet-info, namespace: fleet}
data: {owner: bare-metal team}
Y
node_yaml() {  # node_yaml NAME INDEX
    cat >"$T/work/nodes/$1.yaml" <<Y
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata: {name: $1}
spec:
  class: lab
  bmc: {address: 192.0.2.$2, credentials: bmc-$1}
  ports: [{mac: "52:54:00:00:01:0$2"}]
  provisionState: active
  configDrive:
    userData: "#!/bin/sh\necho hello from $1\n"
Y
}
node_yaml n1 1; node_yaml n2 2; node_yaml n3 3
git -C "$T/work" init -q -b main
gitc remote add origin "$T/srv/fleet.git"
commit_push "three lab nodes and the fleet namespace"
good1=$(git -C "$T/work" rev-parse HEAD)

cat >"$T/metalsync.yaml" <<CFG
instance: secrets-lab
stateDir: $T/state
socket: $sock
socketGroup: ""
credentialsDir: $T/credentials
git:
  url: "$git_url"
  branch: main
  tokenFile: $T/git-token
  caFile: $T/tls/ca.pem
  pollInterval: 1s
  retryInterval: 1s
  connectTimeout: 5s
  fetchTimeout: 20s
ironic:
  cloud: lab
  cloudsFile: $T/clouds.yaml
  timeout: 10s
kubernetes:
  kubeconfig: $T/kubeconfig
  namespace: default
  resyncInterval: 2s
limits: {ironicQPS: 50, workers: 4}
log: {level: debug}
metrics:
  listen: 127.0.0.1:$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CFG
metrics_addr=$(sed -n 's/^  listen: //p' "$T/metalsync.yaml")

# --- before the daemon: validate, --check-config, and a plan that fetches over HTTPS and reads Ironic
cap validate "$bin" validate "$T/work" -o json
cap validate-text "$bin" validate "$T/work"
cap check-config "$bin" daemon --check-config --config "$T/metalsync.yaml"
saw "configuration is valid" "daemon --check-config"
cap plan-before "$bin" plan -c "$T/metalsync.yaml" --state-dir "$T/plan-state" -o json
saw '"create' "plan over HTTPS + Ironic http_basic lists the enrollments"

# Certificates that must be refused: the private CA's for another address, another CA's for this one.
for bad_cert in wrong-ip foreign; do
    main_srv=$gitsrv
    start_gitsrv "$bad_cert" "$T/git-port-$bad_cert"
    sed "s|$git_url|https://127.0.0.1:$(cat "$T/git-port-$bad_cert")/fleet.git|" "$T/metalsync.yaml" >"$T/metalsync-$bad_cert.yaml"
    cap "plan-$bad_cert" "$bin" plan -c "$T/metalsync-$bad_cert.yaml" --state-dir "$T/plan-state-$bad_cert" -o json
    saw "not trusted" "HTTPS remote with a certificate from $bad_cert: refused"
    stop_pid "$gitsrv"; gitsrv=$main_srv; main_srv=""
done

# --- the rollout
"$bin" daemon --config "$T/metalsync.yaml" >"$out/daemon.log" 2>&1 &
daemon=$!
wait_json "HTTPS remote with a token and a private CA: revision accepted" 60 \
    "j['revision']=='$good1' and not j['gitError']" status_json
wait_json "three nodes active (image + config drive) through Ironic with http_basic" 150 \
    "j['nodes']['total']==3 and j['nodes']['atGoal']==3 and j['nodes']['byState'].get('active')==3" status_json
wait_json "Kubernetes objects applied over TLS with the bearer token" 60 \
    "len(j['objects'])==2 and all(o['state']=='in-sync' for o in j['objects'])" ms objects -o json
"$PY" -c "import json,sys; sys.exit(0 if json.loads(sys.stdin.read())['provision_state']=='active' else 1)" <<<"$(ironic_get /v1/nodes/n1)" &&
    ok "n1 active in Ironic" || bad "n1 not active in Ironic"
ironic_driver_info n1 | grep -qF -- "${bmc_pw[n1]}" && ok "n1's BMC password reached Ironic" || bad "n1's password not in Ironic's driver_info"

# --- error path: the Git token is refused (the server's token rotated), then the new one installed
printf '%s\n' "$git_token2" >"$T/srv-token"
wait_json "token refused: status shows the Git authentication error" 30 "j['gitError'] and 'refused' in j['gitError']" status_json
cap status-git-error ms status
saw "refused" "status text names the refused token"
cap status-git-error-json ms status -o json
cap events-git-error ms events --limit 30
cap plan-wrong-token "$bin" plan -c "$T/metalsync.yaml" --state-dir "$T/plan-state" -o json
saw "refused" "plan reports the refused token"
cap plan-wrong-token-text "$bin" plan -c "$T/metalsync.yaml" --state-dir "$T/plan-state"
printf '%s\n' "$git_token2" >"$T/git-token"
echo "# rotated" >>"$T/work/class.yaml"; commit_push "after the token rotation"
good2=$(git -C "$T/work" rev-parse HEAD)
wait_json "rotated token installed: error cleared, new revision followed" 30 \
    "not j['gitError'] and j['revision']=='$good2'" status_json

# --- error path: n2's BMC password changed on the bastion: drift, written again
write_creds bmc-n2 "$bmc_pw_rotated"
deadline=$(( $(date +%s) + 40 ))
until ironic_driver_info n2 | grep -qF -- "$bmc_pw_rotated"; do
    [ "$(date +%s)" -lt "$deadline" ] || break; sleep 0.5
done
ironic_driver_info n2 | grep -qF -- "$bmc_pw_rotated" && ok "n2's changed BMC password written to Ironic again" || bad "n2's new password never reached Ironic"
cap node-n2 ms node n2 -o json
cap node-n2-text ms node n2

# --- error path: n4's credentials file is not valid YAML around its password
printf "password: [%s\nusername: admin\n" "${bmc_pw[n4]}" >"$T/credentials/bmc-n4"; chmod 600 "$T/credentials/bmc-n4"
node_yaml n4 4; commit_push "n4"
wait_json "n4: the broken credentials file is reported on the node" 40 \
    "'credentials' in (j['node'].get('lastError') or '') + j['node'].get('message','')" ms node n4 -o json
cap node-n4 ms node n4 -o json
saw "not valid YAML" "node n4 names the credentials file's YAML error"
# A failing step waits out its backoff: not read again every second, logged once.
sleep 5
[ "$(grep -c 'node n4: .* failed (' "$out/daemon.log")" -eq 1 ] &&
    ok "n4's failure is retried with backoff and logged once" ||
    bad "n4's failure logged $(grep -c 'node n4: .* failed (' "$out/daemon.log") times in 5 s"
ms node n4 -o json | grep -q "retrying in" && ok "n4 shows when it is retried" || bad "n4 view: $(ms node n4 -o json)"
cap node-n4-text ms node n4
cap nodes-n4 ms nodes
# readable by others: refused before it is read
write_creds bmc-n4 "${bmc_pw[n4]}"; chmod 644 "$T/credentials/bmc-n4"
ms sync >/dev/null 2>&1 || true   # retry now, not at the end of the backoff
wait_json "n4: a credentials file readable by others is refused" 40 \
    "'chmod 600' in (j['node'].get('lastError') or '') + j['node'].get('message','')" ms node n4 -o json
cap node-n4-mode ms node n4 -o json
chmod 600 "$T/credentials/bmc-n4"
ms sync >/dev/null 2>&1 || true
wait_json "n4: credentials fixed, active" 90 "j['node']['condition']=='at-goal' and j['node']['provisionState']=='active'" ms node n4 -o json

# --- error path: Ironic refuses the password (another clouds.yaml): plan reports it
sed "s|^    auth: .*|    auth: {username: metalsync, password: '$ironic_pw_wrong'}|" "$T/clouds.yaml" >"$T/clouds-wrong.yaml"
chmod 600 "$T/clouds-wrong.yaml"
sed "s|$T/clouds.yaml|$T/clouds-wrong.yaml|" "$T/metalsync.yaml" >"$T/metalsync-wrong-ironic.yaml"
cap plan-wrong-ironic "$bin" plan -c "$T/metalsync-wrong-ironic.yaml" --state-dir "$T/plan-state" -o json
saw "401|unauthori" "plan reports Ironic's refusal of the password"
cap check-config-wrong-ironic "$bin" daemon --check-config --config "$T/metalsync-wrong-ironic.yaml"

# --- a token written into the URL instead of tokenFile (a common shortcut): never shown as written.
# A second daemon, state and socket of its own, follows the remote with it; plan and check-config too.
url_token=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$git_token2")
git_url_token="https://git:$url_token@${git_url#https://}"
cat >"$T/metalsync-url-token.yaml" <<CFG
stateDir: $T/state-url
socket: $T/url.sock
socketGroup: ""
credentialsDir: $T/credentials
git: {url: "$git_url_token", branch: main, caFile: $T/tls/ca.pem, pollInterval: 1s, retryInterval: 1s}
ironic: {cloud: lab, cloudsFile: $T/clouds.yaml}
log: {level: debug}
metrics: {listen: ""}
CFG
cap check-config-url-token "$bin" daemon --check-config --config "$T/metalsync-url-token.yaml"
cap plan-url-token "$bin" plan -c "$T/metalsync-url-token.yaml" --state-dir "$T/plan-state-url" -o json
"$bin" daemon --config "$T/metalsync-url-token.yaml" --log-format json >"$out/daemon-url-token.log" 2>&1 &
url_daemon=$!
wait_json "a token in the URL: the second daemon follows the remote" 30 \
    "j['revision']=='$(git -C "$T/work" rev-parse HEAD)' and not j['gitError']" "$bin" status -o json -s "$T/url.sock"
# the remote refuses for a moment: the failed poll is an event about the remote, in the store
printf 'not-the-token\n' >"$T/srv-token"
wait_json "a token in the URL refused: Git error shown" 30 "j['gitError']" "$bin" status -o json -s "$T/url.sock"
"$PY" -c "import json,sys; e=json.load(open('$out/last.json'))['gitError']; sys.exit(0 if 'token in the URL was refused' in e else 1)" &&
    ok "the Git error says the URL's token was refused" || bad "the Git error: $(cat "$out/last.json")"
cap status-url-token "$bin" status -s "$T/url.sock"
cap status-url-token-json "$bin" status -o json -s "$T/url.sock"
cap events-url-token "$bin" events -o json -s "$T/url.sock"
cap events-url-token-text "$bin" events -s "$T/url.sock"
printf '%s\n' "$git_token2" >"$T/srv-token"
wait_json "the remote accepts the token again" 30 "not j['gitError']" "$bin" status -o json -s "$T/url.sock"
cp -a "$T/state-url" "$out/state-url-live"
stop_pid "$url_daemon"; url_daemon=""
sed -i "s|$url_token|wrong-$url_token|" "$T/metalsync-url-token.yaml"
cap plan-url-token-wrong "$bin" plan -c "$T/metalsync-url-token.yaml" --state-dir "$T/plan-state-url" -o json
saw "the token in the URL was refused" "a wrong token in the URL: plan says the URL's token was refused"

# --- error path: a commit with broken YAML
printf 'apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: n5\nspec:\n  bmc: [\n' >"$T/work/nodes/n5.yaml"
commit_push "broken yaml"
broken=$(git -C "$T/work" rev-parse HEAD)
wait_json "broken YAML rejected, last good revision kept" 30 "j['rejected'] and j['rejected']['commit']=='$broken'" status_json
cap status-rejected ms status
cap validate-broken "$bin" validate "$T/work" -o json

# --- error path: the management cluster refuses the token (restarted with another), then accepts it again
stop_pid "$fake"; fake=""
start_fake "not-the-daemons-token" "$kube_port"
wait_json "Kubernetes 401 shown in status" 40 "'401' in (j['kubernetes']['error'] or '')" status_json
cap status-kube-error ms status
saw "401|unauthori" "status text shows the Kubernetes refusal"
cap status-kube-error-json ms status -o json
cap objects-kube-error ms objects -o json
cap kubeconfig-kube-error "$bin" kubeconfig no-such-cluster -c "$T/metalsync.yaml"
saw "401|unauthori" "kubeconfig reports the refusal"
stop_pid "$fake"; fake=""
start_fake "$kube_token" "$kube_port"
wait_json "Kubernetes token accepted again, objects applied again" 60 \
    "len(j['objects'])==2 and all(o['state']=='in-sync' for o in j['objects'])" ms objects -o json
cap kubeconfig-missing "$bin" kubeconfig no-such-cluster -c "$T/metalsync.yaml"

# --- every reader: CLI (text and JSON), raw socket commands, metrics
for fmt in text json; do
    cap "status-$fmt" ms status -o "$fmt"
    cap "nodes-$fmt" ms nodes -o "$fmt"
    cap "events-$fmt" ms events --limit 500 -o "$fmt"
    cap "objects-$fmt" ms objects -o "$fmt"
    cap "clusters-$fmt" ms clusters -o "$fmt"
    cap "plan-daemon-$fmt" "$bin" plan --daemon -s "$sock" -o "$fmt"
    for n in n1 n2 n3 n4 nope; do cap "node-$n-$fmt" ms node "$n" -o "$fmt"; done
done
cap plan-after "$bin" plan -c "$T/metalsync.yaml" --state-dir "$T/plan-state" -o json
cap version ms version
cap sync ms sync
cap metrics curl -sS "http://$metrics_addr/metrics"
"$PY" - "$sock" "$out/socket" <<'PY' && ok "every command of list-commands answered over the raw socket" || bad "raw socket commands"
import json, socket, sys, os
path, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest, exist_ok=True)
def ask(raw):
    s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(path)
    s.sendall(raw); s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data
listing = ask(b'{"command": "list-commands"}')
open(os.path.join(dest, "list-commands.json"), "wb").write(listing)
commands = json.loads(listing)["arguments"]
commands = commands if isinstance(commands, list) else commands.get("commands", list(commands))
names = [c if isinstance(c, str) else c["name"] for c in commands]
assert "status-get" in names and "node-get" in names, names
for name in names:
    if name == "shutdown":
        continue
    for i, args in enumerate([{}, {"name": "n2"}, {"name": "n4", "object": "n4", "limit": 500}, {"name": "fleet-info"}]):
        reply = ask(json.dumps({"command": name, "arguments": args}).encode())
        json.loads(reply)
        open(os.path.join(dest, "%s-%d.json" % (name, i)), "wb").write(reply)
        if name in ("suspend",):
            ask(json.dumps({"command": "resume", "arguments": args}).encode())
for i, raw in enumerate([b'{"command": "no-such-command"}', b'{not json', b'', b'{"command": "node-get", "arguments": 7}']):
    open(os.path.join(dest, "odd-%d.json" % i), "wb").write(ask(raw))
PY
kill -0 "$daemon" 2>/dev/null && ok "daemon still running" || bad "daemon exited"
# the state directory as it is while the daemon runs: the -wal and -shm exist only now
cp -a "$T/state" "$out/state-live"
ls "$out/state-live/metalsync.db-wal" "$out/state-live/metalsync.db-shm" >/dev/null 2>&1 &&
    ok "copied the live database with its -wal and -shm" || bad "no -wal/-shm beside the live database: $(ls "$out/state-live")"

# shutdown over the socket, so the log, the database and its -wal are final
cap shutdown "$PY" -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'{\"command\": \"shutdown\"}'); s.shutdown(socket.SHUT_WR); print(s.recv(65536).decode())" "$sock"
rc=0; wait "$daemon" || rc=$?; daemon=""
[ "$rc" -eq 0 ] && ok "shutdown: clean exit" || bad "shutdown exit code $rc"
grep -q "Segmentation\|terminate called\|Aborted" "$out/daemon.log" && bad "daemon log shows a crash" || ok "no crash in the daemon log"

# --- the search
cat >"$T/search.py" <<'PY'
# search.py SECRETS_FILE PATH...: every needle of every secret in every file
# (recursively) under PATH, as bytes. Prints "path: form of secret #i" per hit.
import base64, hashlib, json, os, sys, urllib.parse
secrets = [s for s in open(sys.argv[1]).read().split("\n") if s]
def b64_inner(data):
    """The base64 text any encoding of a string holding `data` must contain, per alignment."""
    out = []
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + data)
        first = (k + 2) // 3            # first 3-byte group lying wholly inside data
        last = (k + len(data)) // 3     # groups [first, last) lie wholly inside data
        if last > first:
            out.append(enc[4 * first:4 * last])
            out.append(out[-1].replace(b"+", b"-").replace(b"/", b"_"))  # base64url
    return out
needles = []
for i, s in enumerate(secrets):
    raw = s.encode()
    core = s.split("-")[-1].rstrip("+/=!")  # the random hex part on its own
    forms = {
        "raw": raw,
        "random core": core.encode(),
        "url-encoded": urllib.parse.quote(s, safe="").encode(),
        "form-encoded": urllib.parse.quote_plus(s).encode(),
        "json-escaped": json.dumps(s)[1:-1].encode(),
        "hex": raw.hex().encode(),
        "sha256": hashlib.sha256(raw).hexdigest().encode(),
    }
    for user in ("git", "admin", "metalsync"):
        forms["basic auth " + user] = base64.b64encode((user + ":" + s).encode())
    for j, b in enumerate(b64_inner(raw)):
        forms["base64 #%d" % j] = b
    for name, needle in forms.items():
        needles.append((i, name, needle))
files = []
for p in sys.argv[2:]:
    if os.path.isdir(p):
        for d, _, names in os.walk(p):
            files += [os.path.join(d, n) for n in names]
    elif os.path.exists(p):
        files.append(p)
hits = 0
for f in files:
    try:
        data = open(f, "rb").read()
    except OSError as e:
        print("%s: unreadable (%s)" % (f, e)); hits += 1; continue
    for i, name, needle in needles:
        if needle in data:
            print("%s: %s of secret #%d" % (f, name, i)); hits += 1
print("searched %d files, %d bytes, %d needles: %d hits" % (len(files), sum(os.path.getsize(f) for f in files), len(needles), hits), file=sys.stderr)
sys.exit(1 if hits else 0)
PY
printf '%s\n' "${secrets[@]}" >"$T/secrets.list"
# The search must be able to fail: plant each kind of leak in a scratch file.
mkdir -p "$T/planted"
for form in raw basic url; do
    "$PY" - "$git_token" "${bmc_pw[n3]}" "$form" >"$T/planted/$form" <<'PY'
import base64, sys, urllib.parse
token, pw, form = sys.argv[1:4]
print("noise\0\x01" + {"raw": "x" + pw + "y",
                      "basic": "Authorization: Basic " + base64.b64encode(("git:" + token).encode()).decode(),
                      "url": "https://git:" + urllib.parse.quote(token, safe="") + "@host/"}[form])
PY
done
printf 'password was %s in a blob\n' "${bmc_pw[n1]}" | base64 -w0 >"$T/planted/base64-blob"
for f in "$T"/planted/*; do
    if "$PY" "$T/search.py" "$T/secrets.list" "$f" >/dev/null 2>&1; then bad "self-check: the search missed a secret planted in $(basename "$f")"
    else ok "self-check: the search finds the secret planted in $(basename "$f")"; fi
done
# Enough was captured to mean something.
[ "$(ls "$out/socket" | wc -l)" -ge 20 ] && [ -s "$T/state/metalsync.db" ] && [ "$(wc -l <"$out/daemon.log")" -ge 50 ] &&
    ok "captured: $(ls "$out" "$out/socket" | wc -l) outputs, $(wc -l <"$out/daemon.log") log lines, $(ls "$T/state" | tr '\n' ' ')" ||
    bad "too little captured to search"

if "$PY" "$T/search.py" "$T/secrets.list" "$out" "$T/state"* "$T/plan-state"* >"$T/hits.txt" 2>"$T/search.log"; then
    ok "no secret in any form in the log, the state directory (SQLite db, -wal, -shm, clone) or any reply ($(cat "$T/search.log"))"
else
    bad "secrets found: $(head -40 "$T/hits.txt") ($(cat "$T/search.log"))"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
