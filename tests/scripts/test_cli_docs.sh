#!/usr/bin/env bash
# The README's command-line reference and `metalsync --help` cannot drift:
# every subcommand the binary has is documented in the README, and every
# option the README shows for a subcommand exists in that subcommand's --help.
# (The man page is generated from --help; test_package.sh checks it.)
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
readme="$src/README.md"
fail=0; pass=0
failures=$(mktemp); trap 'rm -f "$failures"' EXIT
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }

mapfile -t subcommands < <("$bin" --help | sed -n '/^Subcommands:/,$p' | awk 'NR>1 && /^  [a-z]/ {print $1}')
[ "${#subcommands[@]}" -ge 10 ] && ok "--help lists ${#subcommands[@]} subcommands" || bad "--help subcommands: ${subcommands[*]}"
for sub in "${subcommands[@]}"; do
    if grep -qE "(^|[^a-z-])metalsync $sub( |$|\`)" "$readme"; then ok "README documents 'metalsync $sub'"; else bad "README lacks 'metalsync $sub'"; fi
done

# Options shown in the README's command lines exist in the subcommand's --help.
grep -hE '^ *metalsync [a-z]+' "$readme" | while read -r line; do
    sub=$(awk '{print $2}' <<<"$line")
    printf '%s\n' "${subcommands[@]}" | grep -qx "$sub" || continue
    help=$("$bin" "$sub" --help 2>&1 || true)
    for opt in $(grep -oE -- '--[a-z][a-z-]+' <<<"${line%%#*}" | sort -u); do
        if grep -qE -- "(^|[ ,])$opt([ =,{]|$)" <<<"$help"; then
            echo "ok   metalsync $sub $opt"
        else
            echo "FAIL README shows 'metalsync $sub $opt', which --help does not have"
            echo x >> "$failures"
        fi
    done
done
fail=$((fail + $(wc -l < "$failures")))
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
