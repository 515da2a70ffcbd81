#!/bin/sh
# SPDX-License-Identifier: MIT
# The exported ABI of $BUILD/libreclaim.so against what the repository
# says it is:
#   1. its dynamic symbols, with their versions, equal abi/symbols.txt;
#   2. every public rcl_ name the library defines is exported (a call added
#      to the header but not to src/reclaim.map would be missing from the
#      shared library while the tests, linked statically, pass);
#   3. with abidiff (Debian abigail-tools) and a plain build: no change in
#      the types and functions against abi/libreclaim.abi, the baseline
#      written by `tools/check-abi.sh --update` (abidw);
#   4. the shared library defines no dynamic symbol but rcl_ names and its
#      version nodes (1. compares the rcl_ names alone);
#   5. every global name $BUILD/libreclaim.a defines begins with rcl_: a
#      program linked with it shares its namespace, and a helper left
#      global, which the version script hides from the shared library,
#      would clash with the program's own of that name.
# An intended change: update src/reclaim.map, then run with --update and
# commit abi/ with it.
case "${1:-}" in
-h|--help) sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
"") ;;
--update) ;;
*) echo "$(basename "$0"): rejected '$1': the only option is --update (see --help)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
so=$BUILD/libreclaim.so
[ -e "$so" ] || { echo "check-abi: $so not built (make lib)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

readelf --dyn-syms -W "$so" |
    awk '$7 != "UND" && $8 ~ /^rcl_/ { print $8 " " $4 }' | sort > "$tmp/now"
nm -g --defined-only "$BUILD/libreclaim.a" 2>/dev/null |
    awk '$3 ~ /^rcl_[a-z]/ { print $3 }' | sort -u > "$tmp/defined"

if [ "${1:-}" = --update ]; then
    cp "$tmp/now" abi/symbols.txt
    abidw --no-corpus-path --no-comp-dir-path --no-show-locs --headers-dir include --drop-private-types "$so" > abi/libreclaim.abi
    echo "check-abi: abi/symbols.txt and abi/libreclaim.abi rewritten from $so"
    exit 0
fi

rc=0
if ! diff -u abi/symbols.txt "$tmp/now" > "$tmp/diff"; then
    echo "check-abi: the exported symbols differ from abi/symbols.txt (- expected, + built):"
    sed -n '3,$p' "$tmp/diff" | grep '^[-+]'
    echo "check-abi: if intended, add a version node in src/reclaim.map and run tools/check-abi.sh --update"
    rc=1
fi
sed 's/@.*//' "$tmp/now" | sort -u > "$tmp/exported"
missing=$(comm -23 "$tmp/defined" "$tmp/exported")
if [ -n "$missing" ]; then
    echo "check-abi: defined by the library but not exported (add to src/reclaim.map):" $missing
    rc=1
fi
stray=$(readelf --dyn-syms -W "$so" |
    awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && NF >= 8 && $8 !~ /^rcl_/ && !($7 == "ABS" && $8 ~ /^RECLAIM_/) { print $8 }')
if [ -n "$stray" ]; then
    echo "check-abi: the shared library exports names outside rcl_:" $stray
    rc=1
fi
# gcc's AddressSanitizer gives each global an ODR indicator named after it.
stray=$(nm -g --defined-only "$BUILD/libreclaim.a" |
    awk 'NF == 3 && $3 !~ /^rcl_/ && $3 !~ /^__odr_asan[._]rcl_/ { print $3 }' | sort -u)
if [ -n "$stray" ]; then
    echo "check-abi: $BUILD/libreclaim.a defines global names outside rcl_ (make them static, or prefix them rcl__):" $stray
    rc=1
fi
if command -v abidiff >/dev/null 2>&1 && [ -s abi/libreclaim.abi ]; then
    case "$BUILD" in
    build)
        if ! abidiff --no-added-syms --headers-dir2 include --drop-private-types abi/libreclaim.abi "$so" > "$tmp/abidiff" 2>&1; then
            cat "$tmp/abidiff"
            echo "check-abi: abidiff found a change against abi/libreclaim.abi"
            rc=1
        fi ;;
    *) echo "check-abi: abidiff only compares the plain build (this is $BUILD)" ;;
    esac
else
    echo "check-abi: abidiff not installed (abigail-tools); symbol list checked only"
fi
[ $rc -eq 0 ] && echo "check-abi: $(wc -l < "$tmp/now") exported symbols as abi/symbols.txt says"
exit $rc
