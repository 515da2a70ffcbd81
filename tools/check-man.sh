#!/bin/sh
# SPDX-License-Identifier: MIT
# Every man page built from docs/man/*.scd is clean for mandoc -Tlint at
# warning level and for groff -ww (what man -l runs), every page the
# SEE ALSO sections name exists, and every exported call is named by one.
. "$(dirname "$0")/no-args.sh"
BUILD=${BUILD:-build}
command -v mandoc >/dev/null 2>&1 || { echo "check-man: skipped: mandoc is not installed (Debian package mandoc)"; exit 77; }
rc=0; n=0
for src in docs/man/*.scd; do
    page=$BUILD/man/$(basename "$src" .scd)
    [ -f "$page" ] || { echo "check-man: $page not built (make man)"; rc=1; continue; }
    mandoc -Tlint -W warning "$page" || rc=1
    # man -l formats with groff: it must have nothing to say either.
    if command -v groff >/dev/null 2>&1; then
        w=$(groff -ww -man -z -Tutf8 "$page" 2>&1)
        [ -z "$w" ] || { printf '%s\n' "$w"; rc=1; }
    fi
    n=$((n + 1))
done
for ref in $(grep -ho '\*rcl_[a-z_]*\*([37])\|\*reclaim\*(7)' docs/man/*.scd | tr -d '*' | sort -u); do
    name=${ref%(*}; sec=$(echo "$ref" | sed 's/.*(\(.\))/\1/')
    [ -f "docs/man/$name.$sec.scd" ] || { echo "check-man: a page refers to $ref, which does not exist"; rc=1; }
done
# Every exported call has a page `man` finds it by: its own, or a name
# in a page's NAME section (man-links.sh). rcl_scope_tls is a variable.
named=$(sh tools/man-links.sh | awk '{ print $1 }'; for src in docs/man/*.3.scd; do basename "$src" .3.scd; done)
for sym in $(sed -n 's/^ *\(rcl_[a-z0-9_]*\);$/\1/p' src/reclaim.map | grep -vx rcl_scope_tls); do
    printf '%s\n' "$named" | grep -qx "$sym" ||
        { echo "check-man: $sym is exported (src/reclaim.map) but no page's NAME names it"; rc=1; }
done
[ $rc -eq 0 ] && echo "check-man: $n pages clean for mandoc -Tlint and groff -ww, every reference resolves, every exported call has a page"
exit $rc
