#!/bin/sh
# SPDX-License-Identifier: MIT
# The lists of RECLAIM_* variables in README.md and docs/man/reclaim.7.scd
# are the library's table (src/options.c) as printed by the options_doc
# program; they sit between the lines "<!-- options begin -->" /
# "<!-- options end -->" (README) and "; options begin" / "; options end"
# (scdoc comments). Fails when either differs, when the source reads a
# RECLAIM_* variable the table lacks, or reads one with getenv() rather
# than through the table. --update writes the lists in.
case "${1:-}" in
-h|--help) sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
"") ;;
--update) ;;
*) echo "$(basename "$0"): rejected '$1': the only option is --update (see --help)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
prog=$BUILD/tests/progs/options_doc
[ -x "$prog" ] || { echo "check-options: $prog not built (make tests)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
rc=0

# splice FILE BEGIN END BODY: FILE with the lines between BEGIN and END
# replaced by BODY's content.
splice() {
    awk -v b="$2" -v e="$3" -v body="$4" '
        $0 == b { print; while ((getline l < body) > 0) print l; skip = 1; next }
        $0 == e { skip = 0 }
        !skip { print }' "$1"
}

{ echo "| variable | default | applies to | what it does |"; echo "|---|---|---|---|"; "$prog" --markdown; } > "$tmp/md"
"$prog" --scdoc > "$tmp/scd"
for spec in "README.md|<!-- options begin -->|<!-- options end -->|$tmp/md" \
            "docs/man/reclaim.7.scd|; options begin|; options end|$tmp/scd"; do
    IFS='|' read -r file b e body <<EOT
$spec
EOT
    if ! grep -qxF "$b" "$file" || ! grep -qxF "$e" "$file"; then
        echo "check-options: $file lacks the lines '$b' and '$e'"; rc=1; continue
    fi
    splice "$file" "$b" "$e" "$body" > "$tmp/new"
    if [ "${1:-}" = --update ]; then
        cp "$tmp/new" "$file"; echo "check-options: $file rewritten"
    elif ! cmp -s "$tmp/new" "$file"; then
        echo "check-options: $file's list differs from src/options.c (tools/check-options.sh --update):"
        diff -u "$file" "$tmp/new" | sed -n '3,$p' | grep '^[-+]' | head -20
        rc=1
    fi
done

# Every RECLAIM_ variable the library reads has its entry, and none is
# read past the table (rcl__option_env).
for v in $(grep -ho '\(getenv\|rcl__option_env\|rcl__option_find\)("RECLAIM_[A-Z_]*")' src/*.c |
           sed 's/.*("\(.*\)")/\1/' | sort -u); do
    grep -q "{ \"$v\"" src/options.c || { echo "check-options: src/ reads $v, which src/options.c's table lacks"; rc=1; }
done
if grep -n 'getenv("RECLAIM_' src/*.c; then
    echo "check-options: the lines above read a RECLAIM_* variable past the table (use rcl__option_env)"; rc=1
fi
[ $rc -eq 0 ] && echo "check-options: the README and reclaim(7) list the table's $("$prog" --markdown | wc -l) variables"
exit $rc
