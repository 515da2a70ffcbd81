# SPDX-License-Identifier: MIT
# Drops the empty paragraph macros scdoc emits around headings and indented
# blocks (".P" right after .TH/.SH/.SS/.P, or right before .SH/.SS/.RE/.P
# or the end), which mandoc -Tlint reports as warnings. Nothing else changes.
function flush(next_line) {
    if (pending && next_line !~ /^\.(SH|SS|RE|P)( |$)/ && prev !~ /^\.(TH|SH|SS|P)( |$)/) {
        print ".P"; prev = ".P"
    }
    pending = 0
}
/^\.P$/ { if (pending) next; pending = 1; next }
{ flush($0); print; prev = $0 }
END { pending = 0 }
