#!/bin/sh
# SPDX-License-Identifier: MIT
# The closing line of make check: adds up the "LABEL PASSED FAILED SKIPPED"
# lines each run wrote to the summary file given as $1. Fails when a run
# failed a test or when no run reported at all.
case "${1:-}" in
-h|--help) sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
f=$1
if [ ! -s "$f" ]; then
    echo "check: no run reported; 0 passed, 1 failed, 0 skipped"
    exit 1
fi
awk '{ p += $2; x += $3; s += $4; runs = runs (runs ? ", " : "") $1 }
     END { printf "check (%s): %d passed, %d failed, %d skipped\n", runs, p, x, s; exit x != 0 }' "$f"
