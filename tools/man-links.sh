#!/bin/sh
# SPDX-License-Identifier: MIT
# Prints "NAME PAGE" for every function a section-3 page documents (the
# names before " - " in its NAME section, docs/man/*.3.scd), so that
# make install can link each function's name to its page and `man rcl_free`
# finds rcl_alloc(3).
. "$(dirname "$0")/no-args.sh"
for src in docs/man/*.3.scd; do
    page=$(basename "$src" .scd)
    awk '/^# NAME/ { on = 1; next } on && /^$/ && text != "" { exit } on { text = text " " $0 }
         END { sub(/ - .*/, "", text); gsub(/,/, " ", text); print text }' "$src" |
        tr ' ' '\n' | sed '/^$/d' | while read -r name; do
            [ "$name.3" = "$page" ] || echo "$name $page"
        done
done
