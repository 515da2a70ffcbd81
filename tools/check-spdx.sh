#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails when a tracked source file (C, header, script, Makefile, linker map,
# man-page source) lacks its SPDX-License-Identifier line, which must be the
# first line, or the second after a #! line or (scdoc, whose first line must
# be the page's title) after the title.
. "$(dirname "$0")/no-args.sh"
missing=0
files=$(git ls-files 2>/dev/null) || files=$(find . -type f ! -path './.git/*' ! -path './build*' | sed 's|^\./||')
for f in $files; do
    case "$f" in
    *.c|*.h|*.sh|*.py|*.map|*.in|*.scd|Makefile|.ci/run) ;;
    *) continue ;;
    esac
    [ -f "$f" ] || continue
    if head -n 1 "$f" | grep -q '^#!' || case "$f" in *.scd) true ;; *) false ;; esac; then
        line=$(sed -n 2p "$f")
    else
        line=$(sed -n 1p "$f")
    fi
    case "$line" in
    *"SPDX-License-Identifier: MIT"*) ;;
    *) echo "check-spdx: $f: no 'SPDX-License-Identifier: MIT' on its first line (second after #!)"; missing=$((missing + 1)) ;;
    esac
done
[ $missing -eq 0 ] && echo "check-spdx: every source file carries its license line"
[ $missing -eq 0 ]
