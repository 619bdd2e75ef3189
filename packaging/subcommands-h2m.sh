#!/bin/sh
# subcommands-h2m.sh METALSYNC OUT: a help2man include file with a COMMANDS
# section holding `METALSYNC SUBCOMMAND --help` for every subcommand listed by
# `METALSYNC --help`, so the man page carries each subcommand's help verbatim
# (help2man itself only reads the top-level --help).
set -eu
bin=$1
out=$2
tmp=$out.tmp
subcommands=$("$bin" --help | awk '/^[A-Za-z]+:$/ { section = $0; next } section == "Subcommands:" && /^  [a-z]/ { print $1 }')
if [ -z "$subcommands" ]; then
    echo "subcommands-h2m.sh: no subcommands found in '$bin --help'" >&2
    exit 1
fi
{
    echo "[COMMANDS]"
    for sub in $subcommands; do
        printf '.SS "metalsync %s"\n.nf\n' "$sub"
        # roff: backslashes escaped, - as \- (a minus, what options are), and a
        # leading . or ' would be a request.
        "$bin" "$sub" --help | sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
        printf '.fi\n'
    done
} >"$tmp"
mv "$tmp" "$out"
