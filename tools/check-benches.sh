#!/bin/sh
# SPDX-License-Identifier: MIT
# The benchmarks (bench/) build, warnings as errors like everything else,
# plain and under AddressSanitizer, and each answers --help. make check
# times none of them (their figures come from make bench, beside their
# baselines, and are never asserted), so without this a change to the
# library's header or to bench/bench.h could leave make bench broken
# until someone ran it. Where python3 is
# installed, tools/bench-misses.py also reads every run kept in
# docs/bench/runs/ and refuses a file that is none.
. "$(dirname "$0")/no-args.sh"
BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
log=$(mktemp); trap 'rm -f "$log"' EXIT
$MAKE --no-print-directory -s benches BUILD="$BUILD" BACKEND="${BACKEND:-libc}" >"$log" 2>&1 ||
    { cat "$log"; echo "check-benches: make benches failed"; exit 1; }
rc=0; n=0
for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    n=$((n + 1))
    "$b" --help >/dev/null 2>&1 || { echo "check-benches: $b --help failed"; rc=1; }
done
[ $n -gt 0 ] || { echo "check-benches: no benchmark in $BUILD/bench"; exit 1; }
echo "check-benches: $n benchmarks built, each answers --help"
# And under AddressSanitizer, where they skip the raw allocators (bench.h):
# its instrumentation gives gcc's warnings other paths to follow. The
# build directory is the Makefile's own for SAN=asan, the one make check's
# asan run made, so only the benchmarks are compiled here.
env -u BUILD $MAKE --no-print-directory -s benches SAN=asan BACKEND="${BACKEND:-libc}" >"$log" 2>&1 ||
    { cat "$log"; echo "check-benches: make benches SAN=asan failed"; exit 1; }
echo "check-benches: the benchmarks build under AddressSanitizer too"
if command -v python3 >/dev/null 2>&1; then
    python3 tools/bench-misses.py docs/bench/runs/*.json >/dev/null ||
        { echo "check-benches: tools/bench-misses.py failed on docs/bench/runs/"; rc=1; }
    python3 tools/bench-misses.py README.md >/dev/null 2>&1
    [ $? -eq 2 ] || { echo "check-benches: tools/bench-misses.py took README.md for a run"; rc=1; }
else
    echo "check-benches: no python3: tools/bench-misses.py not tried"
fi
exit $rc
