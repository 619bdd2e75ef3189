#!/usr/bin/env bash
# End to end through the real binary: `metalsync validate` exit codes and
# output format, and `metalsync plan` from a directory, from a Git remote
# (file://), and against a real Ironic started here.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
T=$(mktemp -d /tmp/metalsync-cli-XXXXXX)
pass=0; fail=0
cleanup() {
    "$src/scripts/ironic-testbed" stop "$T/ironic" >/dev/null 2>&1 || true
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; fi
}
trap cleanup EXIT

check() {  # check NAME EXPECTED_RC ACTUAL_RC
    if [ "$2" = "$3" ]; then echo "ok   $1"; pass=$((pass+1)); else echo "FAIL $1: exit $3, expected $2"; fail=$((fail+1)); fi
}
contains() {  # contains NAME FILE TEXT
    if grep -qF -- "$3" "$2"; then echo "ok   $1"; pass=$((pass+1)); else echo "FAIL $1: '$3' not in output:"; cat "$2"; fail=$((fail+1)); fi
}

# validate: 0 valid, 1 invalid with file:line:col: field: reason, 2 cannot run
set +e
"$bin" validate "$src/examples/repo" >"$T/out" 2>&1; check "validate example repo" 0 $?
mkdir -p "$T/bad"
cat > "$T/bad/n.yaml" <<'Y'
apiVersion: metalsync.dev/v1alpha1
kind: Node
metadata: {name: n1}
spec:
  bmc: {driver: ipmi, address: 192.0.2.1, credentials: c, port: 70000}
  ports:
    - mac: not-a-mac
Y
"$bin" validate "$T/bad" >"$T/out" 2>&1; check "validate invalid repo" 1 $?
contains "error names file, line, column, field" "$T/out" "$T/bad/n.yaml:5:"
contains "error names the port field" "$T/out" "spec.bmc.port: must be between 1 and 65535"
contains "every error reported" "$T/out" "n.yaml:7:12: spec.ports[0].mac:"
"$bin" validate "$T/does-not-exist" >"$T/out" 2>&1; check "validate missing path" 2 $?
"$bin" validate -o json "$T/bad" >"$T/out.json" 2>/dev/null; check "validate -o json invalid" 1 $?
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["valid"] is False and len(d["errors"])==2, d' "$T/out.json"
check "validate -o json is parseable" 0 $?
"$bin" frobnicate >"$T/out" 2>&1; check "unknown subcommand" 2 $?

# plan from a directory: every node is to be created
"$bin" plan --repo "$src/examples/repo" -o json >"$T/plan.json" 2>"$T/err"; check "plan --repo has changes" 1 $?
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=[a["verb"] for a in d["actions"]]; assert v.count("create")==10, v' "$T/plan.json"
check "plan --repo creates the 10 example nodes" 0 $?
set -e

# A real Ironic and a Git remote made from the example repository, switched to fake-hardware.
endpoint=$("$src/scripts/ironic-testbed" start "$T/ironic")
mkdir -p "$T/repo" "$T/state"
cp -r "$src/examples/repo/." "$T/repo/"
sed -i 's/driver: ipmi/driver: fake-hardware/; s/driver: redfish/driver: fake-hardware/' "$T/repo/classes/"*.yaml
git -C "$T/repo" init -q -b main
git -C "$T/repo" -c user.name=t -c user.email=t@example.invalid add -A
git -C "$T/repo" -c user.name=t -c user.email=t@example.invalid commit -qm init
cat > "$T/metalsync.yaml" <<CFG
stateDir: $T/state
git:
  url: file://$T/repo
  branch: main
ironic:
  endpoint: $endpoint
CFG
# One node already enrolled in Ironic (and left in enroll): plan must manage it, not create it.
/usr/bin/python3 - "$endpoint" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/nodes", method="POST",
    data=json.dumps({"name": "r1-node-03", "driver": "fake-hardware", "extra": {"metalsync": "metalsync"}}).encode(),
    headers={"Content-Type": "application/json", "X-OpenStack-Ironic-API-Version": "1.82"})
urllib.request.urlopen(req).read()
PY
set +e
"$bin" plan -c "$T/metalsync.yaml" -o json >"$T/plan2.json" 2>"$T/err"; check "plan from the Git remote against Ironic" 1 $?
cat "$T/err"
/usr/bin/python3 - "$T/plan2.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
acts = {(a["node"], a["verb"]) for a in d["actions"]}
assert ("r1-node-03", "manage") in acts, acts
assert ("r1-node-03", "create") not in acts, acts
assert sum(1 for a in d["actions"] if a["verb"] == "create") == 9, acts
assert d["observed"].startswith("Ironic at "), d["observed"]
PY
check "plan sees the enrolled node and plans manage for it" 0 $?
"$bin" plan -c "$T/metalsync.yaml" >"$T/plan.txt" 2>&1
contains "plan table names the node and the step" "$T/plan.txt" "r1-node-03"
# A broken commit: plan refuses with exit 2 and the error position.
printf 'apiVersion: metalsync.dev/v1alpha1\nkind: Node\nmetadata: {name: x}\nspec: {bmc: {driver: nope, address: 192.0.2.99}}\n' > "$T/repo/nodes/broken.yaml"
git -C "$T/repo" -c user.name=t -c user.email=t@example.invalid add -A
git -C "$T/repo" -c user.name=t -c user.email=t@example.invalid commit -qm broken
"$bin" plan -c "$T/metalsync.yaml" >"$T/out" 2>&1; check "plan on a broken revision" 2 $?
contains "plan names the broken field" "$T/out" "nodes/broken.yaml:4:"
"$bin" plan -c "$T/nope.yaml" >"$T/out" 2>&1; check "plan without a config" 2 $?
set -e

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
