#!/bin/sh
# SPDX-License-Identifier: MIT
# rcl_alloc and rcl_free start on a 64-byte boundary, and use no bit-test
# instruction on memory (bts, btc, btr with a memory operand).
#
# The boundary (FAST_ENTRY, src/alloc.c): where the hit paths lie decides
# a pair's cost as much as any instruction in them, and the same code
# moved 16 bytes on by a change elsewhere in the file cost the FIFO live
# sets up to 0.3 more of raw mimalloc's CPU time on an Intel Xeon
# (docs/bench/patterns.md, "Figures, 2026-12-03, 18:55"). A compiler that
# ignored the attribute, or a change that dropped it, would show nowhere
# else but in the benchmarks.
#
# The bit-test instructions: AMD's recent cores run them slowly. With the
# busy mark's bit-test-and-set and the cached mark's bit-complement (a
# mark now kept in the header's size word), a cached allocation and free
# took 6.5 - 7.5 ns on a Zen 5, 4.5 - 5 ns without (docs/bench/patterns.md).
# The compilers choose them for a constant bit set, cleared or flipped in
# memory, so a new `x ^= BIT` could bring one back unseen: an empty asm
# that hides the bit's value keeps them out. x86-64 only.
. "$(dirname "$0")/no-args.sh"
BUILD=${BUILD:-build}
lib=$(readlink -f "$BUILD/libreclaim.so") || { echo "check-fastpath: no $BUILD/libreclaim.so (make lib)"; exit 1; }
[ -f "$lib" ] || { echo "check-fastpath: no $BUILD/libreclaim.so (make lib)"; exit 1; }
command -v objdump >/dev/null 2>&1 || { echo "check-fastpath: skipped: objdump (binutils) is not installed"; exit 77; }
case $(uname -m) in
x86_64) ;;
*) echo "check-fastpath: skipped: the instructions checked are x86-64's"; exit 77 ;;
esac
bad=$(objdump -d --no-show-raw-insn "$lib" | awk '
    /^[0-9a-f]+ <.*>:$/ { fn = $2; sub(/^</, "", fn); sub(/>:$/, "", fn); next }
    (fn == "rcl_alloc" || fn == "rcl_free") && $2 ~ /^bt[scr][lqw]?$/ && $3 ~ /\(/ { print fn ": " $0 }')
if [ -n "$bad" ]; then
    printf '%s\n' "$bad"
    echo "check-fastpath: a bit-test instruction on memory in the fast paths (above)"
    exit 1
fi
starts=$(objdump -d --no-show-raw-insn "$lib" | awk '/^[0-9a-f]+ <rcl_(alloc|free)>:$/ { print $1, $2 }')
for fn in rcl_alloc rcl_free; do
    addr=$(printf '%s\n' "$starts" | awk -v fn="<$fn>:" '$2 == fn { print $1 }')
    [ -n "$addr" ] || { echo "check-fastpath: $fn not found in $lib"; exit 1; }
    if [ $((0x$addr % 64)) -ne 0 ]; then
        echo "check-fastpath: $fn starts at 0x$addr, not on a 64-byte boundary (FAST_ENTRY, src/alloc.c)"
        exit 1
    fi
done
echo "check-fastpath: rcl_alloc and rcl_free on a 64-byte boundary, no bit-test instruction on memory in them"
