#!/usr/bin/env bash
# The Debian package: built with cpack from the build directory of the binary
# under test, inspected (file name, control fields, dependencies from
# dpkg-shlibdeps, conffiles, maintainer scripts, contents, the man page), then
# — as root — installed with dpkg on this machine, checked where it landed
# (binary, unit, user, directories, man page, completion, systemd-analyze
# verify), upgraded in place, removed and purged. The machine is shared: the
# package (and a metalsync user this test created) is removed on every exit.
set -euo pipefail
bin=${METALSYNC_BINARY:?}
src=${METALSYNC_SOURCE_DIR:?}
build=$(cd "$(dirname "$bin")" && pwd)
T=$(mktemp -d /tmp/metalsync-package-XXXXXX)
pass=0; fail=0; installed_by_us=0; user_created_by_us=0
cleanup() {
    if [ "$installed_by_us" -eq 1 ] && dpkg-query -W -f='${db:Status-Status}' metalsync 2>/dev/null | grep -qv '^not-installed$'; then
        dpkg_retry -P metalsync >"$T/cleanup-purge.log" 2>&1 || echo "cleanup: dpkg -P metalsync failed (see $T/cleanup-purge.log)"
    fi
    if [ "$user_created_by_us" -eq 1 ]; then
        userdel metalsync 2>/dev/null || true
        groupdel metalsync 2>/dev/null || true
    fi
    if [ "$fail" -eq 0 ]; then rm -rf "$T"; else echo "kept $T"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP  # a ctest timeout too: the EXIT trap removes the package
ok() { echo "ok   $1"; pass=$((pass+1)); }
bad() { echo "FAIL $1"; fail=$((fail+1)); }
check() {  # check DESCRIPTION COMMAND...: ok when COMMAND succeeds
    local what=$1; shift
    if "$@" >"$T/check.out" 2>&1; then ok "$what"; else bad "$what: $(head -c 600 "$T/check.out")"; fi
}
# dpkg refuses to run while apt or another dpkg holds its lock; wait for it.
dpkg_retry() {
    local deadline=$(( $(date +%s) + 300 )) rc
    while true; do
        rc=0; dpkg "$@" >"$T/dpkg.out" 2>&1 || rc=$?
        if [ "$rc" -ne 0 ] && grep -q 'lock' "$T/dpkg.out" && [ "$(date +%s)" -lt "$deadline" ]; then
            sleep 2; continue
        fi
        cat "$T/dpkg.out"; return "$rc"
    done
}

# Tools this test needs beyond the build's: dpkg-dev (dpkg-shlibdeps, for
# cpack), help2man (the build), man-db and groff-base (render the page, and
# systemd-analyze verify runs `man` for Documentation=), binutils (objdump).
for tool in dpkg-shlibdeps help2man man groff objdump systemd-analyze; do
    command -v "$tool" >/dev/null || { bad "$tool not found (scripts/install-deps: dpkg-dev help2man man-db groff-base binutils systemd)"; exit 1; }
done
# col (bsdextrautils) strips overstrike; without it, do the same with sed.
plain() { if command -v col >/dev/null; then col -bx; else sed 's/.\x08//g'; fi; }

# Two runs of this test must not install and purge under each other.
exec 9>/tmp/metalsync-test-package.lock
flock -w 900 9

version=$(sed -n 's/^project(metalsync VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
arch=$(dpkg --print-architecture)
deb="metalsync_${version}_${arch}.deb"
[ -n "$version" ] && ok "version $version from the root CMakeLists.txt" || bad "no project() version in $src/CMakeLists.txt"

# --- build -------------------------------------------------------------------
[ -f "$build/CPackConfig.cmake" ] || { bad "$build/CPackConfig.cmake missing (is packaging/ in the build?)"; exit 1; }
cmake --build "$build" --target metalsync metalsync-man >"$T/build.log" 2>&1 || { bad "build metalsync and its man page: $(tail -20 "$T/build.log")"; exit 1; }
if (cd "$T" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$T/out") >"$T/cpack.log" 2>&1; then
    ok "cpack -G DEB"
else
    bad "cpack -G DEB: $(tail -30 "$T/cpack.log")"; exit 1
fi
pkg="$T/out/$deb"
[ -f "$pkg" ] && ok "package file is named $deb" || { bad "no $deb in $T/out: $(ls "$T/out")"; exit 1; }

# --- control fields ------------------------------------------------------------
field() { dpkg-deb -f "$pkg" "$1"; }
[ "$(field Package)" = metalsync ] && ok "Package: metalsync" || bad "Package: $(field Package)"
[ "$(field Version)" = "$version" ] && ok "Version: $version" || bad "Version: $(field Version)"
[ "$(field Architecture)" = "$arch" ] && ok "Architecture: $arch" || bad "Architecture: $(field Architecture)"
[ "$(field Section)" = admin ] && ok "Section: admin" || bad "Section: $(field Section)"
[ -n "$(field Maintainer)" ] && ok "Maintainer: $(field Maintainer)" || bad "no Maintainer"
desc=$(field Description)
[ "$(printf '%s\n' "$desc" | wc -l)" -ge 3 ] && printf '%s\n' "$desc" | head -1 | grep -q 'Git repository of YAML' &&
    ok "Description: a synopsis and an extended description" || bad "Description: $desc"
depends=$(field Depends)
echo "     Depends: $depends"
dep_has() { printf '%s' "$depends" | tr ',' '\n' | sed 's/^ *//; s/[ (|].*//' | grep -qx "$1"; }
dep_has systemd && ok "Depends: systemd" || bad "Depends lacks systemd"
# Every shared library the binary needs comes from a package in Depends.
missing=""
for lib in $(objdump -p "$bin" | awk '/NEEDED/ { print $2 }'); do
    path=$(ldd "$bin" | awk -v l="$lib" '$1 == l { print $3 }')
    owner=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) ||
        owner=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$owner" ] || { missing+=" $lib(no package)"; continue; }
    # Satisfied by the owning package, or by a name it provides (the shlibs
    # file of libspdlog1.10 asks for libspdlog1.10-fmt9, which it provides).
    found=0
    for name in "$owner" $(dpkg-query -W -f='${Provides}' "$owner" 2>/dev/null | tr ',' '\n' | sed 's/^ *//; s/[ (].*//'); do
        dep_has "$name" && found=1
    done
    [ "$found" -eq 1 ] || missing+=" $lib($owner)"
done
[ -z "$missing" ] && ok "Depends covers every NEEDED library's package" || bad "Depends misses:$missing"

mkdir -p "$T/control"
dpkg-deb -e "$pkg" "$T/control"
[ "$(cat "$T/control/conffiles")" = /etc/metalsync/metalsync.yaml ] && ok "conffiles: /etc/metalsync/metalsync.yaml" ||
    bad "conffiles: $(cat "$T/control/conffiles" 2>/dev/null)"
for script in postinst prerm postrm; do
    [ -x "$T/control/$script" ] && sh -n "$T/control/$script" && ok "$script present, executable, valid sh" || bad "$script"
done

# --- contents ------------------------------------------------------------------
# (Outputs go to files first: grep -q closing a pipe early fails the pipeline under pipefail.)
dpkg-deb -c "$pkg" > "$T/listing"
awk '{ print $6 }' "$T/listing" | sed 's|/$||' > "$T/contents"
for path in ./usr/bin/metalsync ./lib/systemd/system/metalsync.service ./usr/lib/sysusers.d/metalsync.conf \
            ./usr/lib/tmpfiles.d/metalsync.conf ./etc/metalsync/metalsync.yaml \
            ./usr/share/metalsync/schemas/node.schema.json ./usr/share/metalsync/schemas/nodeclass.schema.json \
            ./usr/share/metalsync/schemas/policy.schema.json ./usr/share/man/man1/metalsync.1.gz \
            ./usr/share/bash-completion/completions/metalsync ./usr/share/doc/metalsync/README.md \
            ./usr/share/doc/metalsync/examples/metalsync-credentials.conf.example; do
    grep -qx "$path" "$T/contents" && ok "contains $path" || bad "does not contain $path"
done
stray=$(grep -v -e '^\./usr/bin\(/metalsync\)\{0,1\}$' -e '^\./usr/share' -e '^\./usr/lib/\(sysusers\|tmpfiles\)\.d' \
            -e '^\./lib/systemd/system' -e '^\./etc/metalsync' -e '^\.$' -e '^\./\(usr\|lib\|etc\|usr/lib\|lib/systemd\)\{0,1\}$' "$T/contents" || true)
[ -z "$stray" ] && ok "nothing else (no test or bench binaries, nothing under /usr/local)" || bad "unexpected files: $stray"
grep ' \./usr/bin/metalsync$' "$T/listing" | grep -q '^-rwxr-xr-x root/root ' &&
    ok "/usr/bin/metalsync -rwxr-xr-x root/root" || bad "/usr/bin/metalsync mode: $(grep 'usr/bin/metalsync' "$T/listing")"

# --- what is inside: the man page and --help agree -----------------------------
mkdir -p "$T/root"
dpkg-deb -x "$pkg" "$T/root"
zcat "$T/root/usr/share/man/man1/metalsync.1.gz" > "$T/man.roff"
subs=$("$bin" --help | awk '/^[A-Za-z]+:$/ { s = $0; next } s == "Subcommands:" && /^  [a-z]/ { print $1 }')
missing=""
for sub in $subs; do
    grep -qx ".SS \"metalsync $sub\"" "$T/man.roff" || missing+=" $sub"
done
[ -z "$missing" ] && ok "man page has a section for every subcommand of --help" || bad "man page lacks:$missing"
missing=""
for section in NAME SYNOPSIS DESCRIPTION COMMANDS FILES ENVIRONMENT "SEE ALSO"; do
    grep -q "^\.SH \"\{0,1\}$section\"\{0,1\}$" "$T/man.roff" || missing+=" $section"
done
[ -z "$missing" ] && ok "man page sections NAME ... SEE ALSO" || bad "man page lacks sections:$missing"
MANWIDTH=100 man -l "$T/root/usr/share/man/man1/metalsync.1.gz" 2>"$T/man.err" | plain > "$T/man.rendered" || true
grep -q 'Control socket of the daemon (env METALSYNC_SOCKET)' "$T/man.rendered" &&
    grep -q '/run/metalsync/metalsync.sock' "$T/man.rendered" &&
    ok "man -l renders, with the subcommands' option help" || bad "man -l output: $(head -20 "$T/man.rendered")"
warnings=$(zcat "$T/root/usr/share/man/man1/metalsync.1.gz" | groff -man -ww -z -Tutf8 2>&1 || true)
[ -z "$warnings" ] && ok "groff -ww: no warnings" || bad "groff warnings: $warnings"
# Every line of every subcommand's --help is in the rendered man page, as the
# binary prints it (run as `metalsync`, so Usage: lines name it so).
bindir=$(dirname "$bin")
sed 's/^[[:space:]]*//' "$T/man.rendered" > "$T/man.txt"
missing=""
for sub in $subs; do
    while IFS= read -r line; do
        line=$(printf '%s' "$line" | sed 's/^[[:space:]]*//')
        [ -z "$line" ] && continue
        grep -qxF -- "$line" "$T/man.txt" || missing+=" [$sub: $line]"
    done < <(env -u METALSYNC_SOCKET PATH="$bindir:$PATH" metalsync "$sub" --help)
done
[ -z "$missing" ] && ok "every line of each subcommand's --help is in the man page" || bad "man page lacks:$missing"
cmp -s "$T/root/usr/share/bash-completion/completions/metalsync" "$src/packaging/metalsync.bash-completion" &&
    ok "completion file is packaging/metalsync.bash-completion" || bad "completion file differs"
cmp -s "$T/root/etc/metalsync/metalsync.yaml" "$src/examples/metalsync.yaml" &&
    ok "default config is examples/metalsync.yaml" || bad "default config differs from examples/metalsync.yaml"

# --- install on this machine (root only) ---------------------------------------
if [ "$(id -u)" -ne 0 ]; then
    echo "skip install, upgrade, remove and purge: dpkg -i needs root (CI runs this test as root)"
    echo "passed $pass, failed $fail"
    [ "$fail" -eq 0 ]; exit
fi
if dpkg-query -W -f='${db:Status-Status}' metalsync 2>/dev/null | grep -qv '^not-installed$'; then
    bad "a metalsync package is already installed on this machine; not replacing or removing it"
    echo "passed $pass, failed $fail"; exit 1
fi
getent passwd metalsync >/dev/null || user_created_by_us=1
[ -d /run/systemd/system ] && echo "     systemd is PID 1 here" || echo "     systemd is not running here: the maintainer scripts must cope"

installed_by_us=1
check "dpkg -i $deb" dpkg_retry -i "$pkg"
[ "$(dpkg-query -W -f='${db:Status-Status}' metalsync)" = installed ] && ok "dpkg: metalsync installed" || bad "dpkg status: $(dpkg-query -W -f='${db:Status-Status}' metalsync)"
[ "$(/usr/bin/metalsync version -s "$T/no.sock")" = "metalsync $version" ] && ok "/usr/bin/metalsync version: metalsync $version" ||
    bad "metalsync version: $(/usr/bin/metalsync version -s "$T/no.sock" 2>&1)"
check "/usr/bin/metalsync --help" /usr/bin/metalsync --help
check "the installed default config is valid (daemon --check-config)" \
    /usr/bin/metalsync daemon --check-config --config /etc/metalsync/metalsync.yaml
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd metalsync) || true
[ -n "${uid:-}" ] && [ "$uid" -lt 1000 ] && ok "system user metalsync (uid $uid)" || bad "user metalsync: $(getent passwd metalsync)"
[ "${home:-}" = /var/lib/metalsync ] && ok "its home is /var/lib/metalsync" || bad "home: ${home:-}"
[ "${shell:-}" = /usr/sbin/nologin ] && ok "no login shell" || bad "shell: ${shell:-}"
[ "$(getent group metalsync | cut -d: -f3)" = "${gid:-x}" ] && ok "group metalsync is its primary group" || bad "group: $(getent group metalsync)"
[ "$(stat -c '%a %U %G' /etc/metalsync/credentials 2>&1)" = "750 root metalsync" ] &&
    ok "/etc/metalsync/credentials 0750 root:metalsync (tmpfiles.d)" || bad "/etc/metalsync/credentials: $(stat -c '%a %U %G' /etc/metalsync/credentials 2>&1)"
dpkg-query -W -f='${Conffiles}\n' metalsync | grep -q '^ /etc/metalsync/metalsync.yaml [0-9a-f]\{32\}$' &&
    ok "dpkg records /etc/metalsync/metalsync.yaml as a conffile" || bad "conffiles: $(dpkg-query -W -f='${Conffiles}' metalsync)"
[ "$(man -w metalsync 2>/dev/null)" = /usr/share/man/man1/metalsync.1.gz ] && ok "man -w metalsync finds the page" ||
    bad "man -w metalsync: $(man -w metalsync 2>&1)"
MANWIDTH=100 man metalsync 2>"$T/man.err" | plain > "$T/man.installed" || true
grep -q 'metalsync node' "$T/man.installed" && ok "man metalsync renders" || bad "man metalsync: $(head -c 300 "$T/man.err")"
[ "$(bash -c 'source /usr/share/bash-completion/completions/metalsync; COMP_WORDS=(metalsync sta); COMP_CWORD=1; _metalsync; echo "${COMPREPLY[*]}"')" = status ] &&
    ok "installed completion completes 'metalsync sta' with the installed binary" || bad "installed completion"

# systemd-analyze verify: exit 0 and not one line about our unit.
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify /lib/systemd/system/metalsync.service >"$T/verify.log" 2>&1 && verify_rc=0 || verify_rc=$?
if [ "$verify_rc" -eq 0 ] && ! grep -q 'metalsync' "$T/verify.log"; then
    ok "systemd-analyze verify metalsync.service: clean"
else
    bad "systemd-analyze verify (exit $verify_rc): $(cat "$T/verify.log")"
fi
[ -s "$T/verify.log" ] && echo "     (verify also printed, about other units: $(tr '\n' ' ' < "$T/verify.log" | head -c 400))"
score=$(systemd-analyze security --offline=true /lib/systemd/system/metalsync.service 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \(.*\)$/\1/p' || true)
echo "     systemd-analyze security: overall exposure ${score:-unknown}"

# Upgrade in place (same version again): postinst configure with the old
# version set; an operator's edit of the conffile survives.
echo "# edited by the operator" >> /etc/metalsync/metalsync.yaml
mkdir -p /var/lib/metalsync && echo state > /var/lib/metalsync/metalsync.db
check "dpkg -i again (upgrade path)" dpkg_retry -i "$pkg"
tail -1 /etc/metalsync/metalsync.yaml | grep -q '^# edited by the operator$' && ok "the edited conffile is kept" || bad "conffile edit lost"

# Remove: the program goes, conffiles and state stay.
check "dpkg -r metalsync" dpkg_retry -r metalsync
[ ! -e /usr/bin/metalsync ] && [ ! -e /lib/systemd/system/metalsync.service ] && [ ! -e /usr/share/man/man1/metalsync.1.gz ] &&
    ok "dpkg -r: binary, unit and man page gone" || bad "dpkg -r left files: $(ls /usr/bin/metalsync /lib/systemd/system/metalsync.service 2>&1)"
[ -f /etc/metalsync/metalsync.yaml ] && [ -f /var/lib/metalsync/metalsync.db ] && ok "dpkg -r: config and state stay" || bad "dpkg -r removed config or state"
[ "$(dpkg-query -W -f='${db:Status-Status}' metalsync)" = config-files ] && ok "dpkg: config-files after remove" || bad "after remove: $(dpkg-query -W -f='${db:Status-Status}' metalsync)"

# Purge: config and state go; the user stays (Debian policy).
check "dpkg -P metalsync" dpkg_retry -P metalsync
[ ! -e /etc/metalsync ] && ok "dpkg -P: /etc/metalsync gone" || bad "dpkg -P left $(find /etc/metalsync 2>&1)"
[ ! -e /var/lib/metalsync ] && ok "dpkg -P: /var/lib/metalsync gone" || bad "dpkg -P left /var/lib/metalsync"
dpkg-query -W metalsync >/dev/null 2>&1 && st=$(dpkg-query -W -f='${db:Status-Status}' metalsync) || st=not-installed
[ "$st" = not-installed ] && ok "dpkg: not installed after purge" || bad "after purge: $st"
getent passwd metalsync >/dev/null && ok "dpkg -P keeps the metalsync user (Debian policy; this test removes it)" || bad "purge removed the user"
installed_by_us=0

echo "passed $pass, failed $fail"
[ "$fail" -eq 0 ]
