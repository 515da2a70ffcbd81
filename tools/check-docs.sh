#!/bin/sh
# SPDX-License-Identifier: MIT
# docs/design.md's file map names every file in src/ and no file that is
# not there, and the documentation points at nothing outside the
# repository (../shared, DESIGN.md).
case "${1:-}" in
-h|--help) sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
"") ;;
*) echo "$(basename "$0"): rejected '$1': this script takes no arguments (see --help)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.." || exit 2
rc=0
mapped=$(sed -n 's/^| `\(src\/[^`]*\)` |.*/\1/p' docs/design.md | sort)
present=$(ls src/* | sort)
for f in $present; do
    echo "$mapped" | grep -qx "$f" || { echo "check-docs: docs/design.md's file map lacks $f"; rc=1; }
done
for f in $mapped; do
    [ -e "$f" ] || { echo "check-docs: docs/design.md's file map names $f, which does not exist"; rc=1; }
done
if grep -n '\.\./shared\|DESIGN\.md' README.md docs/design.md docs/man/*.scd include/reclaim.h; then
    echo "check-docs: the lines above point outside the repository"; rc=1
fi
[ $rc -eq 0 ] && echo "check-docs: the file map matches src/ ($(echo "$present" | wc -l) files)"
exit $rc
