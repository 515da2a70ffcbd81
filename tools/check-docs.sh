#!/bin/sh
# SPDX-License-Identifier: MIT
# docs/design.md's file map names every file in src/ and no file that is
# not there, and the documentation points at nothing outside the
# repository (../shared, DESIGN.md).
. "$(dirname "$0")/no-args.sh"
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
