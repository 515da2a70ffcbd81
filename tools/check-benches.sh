#!/bin/sh
# SPDX-License-Identifier: MIT
# The benchmarks (bench/) build, warnings as errors like everything else,
# plain and under AddressSanitizer, and each answers --help. make check
# times none of them (their figures come from make bench, beside their
# baselines, and are never asserted), so without this a change to the
# library's header or to bench/bench.h could leave make bench broken
# until someone ran it. bench_memory must give each figure as median
# [min..max] beside its ratio to the raw backend's and, under a budget too
# small for it, say that its figures failed; bench_domains must give no figure
# where it had no sample, and make bench must refuse a BENCH_ONLY that
# names no benchmark and record the environment of a run in its file. Where python3 is
# installed, tools/bench-misses.py also reads every run kept in
# docs/bench/runs/ and refuses a file that is none, and tools/bench-ab.py
# runs a stand-in for bench_patterns (bench_ab_check, below).
. "$(dirname "$0")/no-args.sh"
BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
log=$(mktemp); ab=$(mktemp -d); trap 'rm -f "$log"; rm -rf "$ab"' EXIT

# tools/bench-ab.py over a stand-in for bench_patterns whose patterns'
# ratio, AB_RATIO, tells which invocation wrote a run. A second invocation
# into a directory that holds runs is refused, as its summary would sum
# the older runs up with its own, unless --append, which sums up both;
# and a reader that stops early (| head) ends it without a traceback,
# which takes a summary longer than the pipe holds (AB_PATTERNS).
bench_ab_check() {
    mkdir -p "$ab/build/bench" || return 1
    cat >"$ab/build/bench/bench_patterns" <<'EOF'
#!/bin/sh
i=0
{
    printf '{"baseline": "stand-in", "goal_ratio": 1.1, "goal_rss_ratio": 1.05, "results": ['
    while [ $i -lt "${AB_PATTERNS:-1}" ]; do
        [ $i -gt 0 ] && printf ','
        printf '{"name": "a pattern with a name as long as most, %d", "ratio": {"median": %s}, "cpu_ns_per_pair": {"rcl": {"median": 1}}}' $i "$AB_RATIO"
        i=$((i + 1))
    done
    printf ']}\n'
} >"$BENCH_JSON"
EOF
    chmod +x "$ab/build/bench/bench_patterns"
    AB_RATIO=2 python3 tools/bench-ab.py -n 3 -o "$ab/runs" a="$ab/build" >/dev/null 2>&1 ||
        { echo "check-benches: tools/bench-ab.py failed"; return 1; }
    if AB_RATIO=1 python3 tools/bench-ab.py -n 1 -o "$ab/runs" a="$ab/build" >/dev/null 2>&1; then
        echo "check-benches: tools/bench-ab.py ran into a directory that held runs"
        return 1
    fi
    AB_RATIO=1 python3 tools/bench-ab.py -n 1 -o "$ab/runs" --append a="$ab/build" 2>/dev/null |
        grep -q 'cpu 2.00 \[1.00 - 2.00\] over 3/4 ' ||
        { echo "check-benches: tools/bench-ab.py --append did not sum up all 4 runs"; return 1; }
    : >"$ab/file"
    AB_RATIO=1 python3 tools/bench-ab.py -n 1 -o "$ab/file" a="$ab/build" 2>"$ab/err"
    if [ $? -ne 2 ] || grep -q Traceback "$ab/err"; then
        cat "$ab/err"
        echo "check-benches: tools/bench-ab.py -o FILE did not end with a usage error"
        return 1
    fi
    { AB_PATTERNS=2000 AB_RATIO=1 python3 tools/bench-ab.py -n 1 -o "$ab/pipe" a="$ab/build" \
        2>"$ab/err"; } | head -n 1 >/dev/null
    if grep -q Traceback "$ab/err"; then
        cat "$ab/err"
        echo "check-benches: tools/bench-ab.py | head gave a traceback"
        return 1
    fi
}

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
# Every figure beside its baseline: bench_memory's rows give raw and rcl
# as median [min..max] over the runs and their ratio the same way, in the
# table and in the JSON; it printed medians alone, and no ratio.
fig='[0-9.-]+ \[[0-9.-]+\.\.[0-9.-]+\]'
if ! BENCH_REPS=1 BENCH_JSON="$ab/memory.json" "$BUILD/bench/bench_memory" >"$log" 2>&1 ||
   ! grep -Eq "^ *4096 +$fig +$fig +$fig +[0-9.-]+\$" "$log" ||
   ! grep -Eq "^ *RSS +$fig +$fig +$fig +[0-9.-]+\$" "$log" ||
   ! grep -q '"ratio_rss": {' "$ab/memory.json"; then
    cat "$log"
    echo "check-benches: bench_memory gave a figure without its spread or its ratio"
    rc=1
fi
# A figure whose measurement failed is no figure: under an automatic
# budget too small for bench_memory's blocks (half of the 8 MiB the fake
# /proc/meminfo gives), its library children fail, and the table must say
# "failed" and the run fail; it printed 0 bytes a block and exited 0.
mkdir -p "$ab/tiny/proc" && printf 'MemTotal: 8000 kB\n' >"$ab/tiny/proc/meminfo"
if RECLAIM_CGROUP_ROOT="$ab/tiny" BENCH_REPS=1 "$BUILD/bench/bench_memory" >"$log" 2>&1 ||
   ! grep -q '^ *4096 .* failed ' "$log"; then
    cat "$log"
    echo "check-benches: bench_memory took a failed measurement for a figure"
    rc=1
fi
# Nor is a figure no sample gave: in a run of bench_domains too short to
# reclaim much, a mode with no direct reclaim attempt has no KiB per
# attempt ("-"); it read 0.0, and its ratio to another mode 0.000.
if ! BENCH_DOMAINS_ALLOCS=1 BENCH_REPS=1 "$BUILD/bench/bench_domains" >"$log" 2>&1 ||
   awk '/^(domains|nofs|unrestricted) / && $3 == "0" && $2 != "-" { bad = 1 } END { exit !bad }' "$log"; then
    cat "$log"
    echo "check-benches: bench_domains gave a figure for a mode that made no attempt"
    rc=1
fi
# make bench with BENCH_ONLY naming no benchmark (a typo) stops before it
# starts: it ran nothing and wrote a run with no benchmark in it.
if BENCH_OUT="$ab/only" BENCH_PLOTS="$ab/only" BENCH_ONLY=scopes \
       sh tools/run-bench.sh "$BUILD" "$BUILD/bench/bench_scope" >"$log" 2>&1 ||
   [ -n "$(ls -A "$ab/only" 2>/dev/null)" ]; then
    cat "$log"
    echo "check-benches: make bench ran with BENCH_ONLY naming no benchmark"
    rc=1
fi
# A run's file says how to run it again: its command carries the
# environment the figures depend on (BENCH_ONLY, BENCH_REPS, the library's
# RECLAIM_* ...), quoted for the shell, and "environment" each of them; it
# said "make bench BUILD=... BACKEND=..." alone. The environment is
# emptied first, so that what the caller's sets is not in the file.
if ! env -i PATH="$PATH" BENCH_OUT="$ab/again" BENCH_PLOTS="$ab/again/plots" BENCH_ONLY=scope \
       BENCH_QUICK=1 BENCH_REPS=1 RECLAIM_TEST_NOTE="it's 0" BACKEND=libc \
       sh tools/run-bench.sh "$BUILD" "$BUILD/bench/bench_scope" >"$log" 2>&1 ||
   ! grep -qF '"command": "BENCH_ONLY=scope BENCH_QUICK=1 BENCH_REPS=1 RECLAIM_TEST_NOTE='"'it'\\\\''s 0'"' make bench BUILD='"$BUILD"' BACKEND=libc",' \
       "$ab"/again/*.json ||
   ! grep -qF '"environment": {"BENCH_ONLY": "scope", "BENCH_QUICK": "1", "BENCH_REPS": "1", "RECLAIM_TEST_NOTE": "it'"'"'s 0"},' \
       "$ab"/again/*.json; then
    cat "$log" "$ab"/again/*.json 2>/dev/null | grep -v '^ '
    echo "check-benches: a run's file does not say the environment it ran in"
    rc=1
fi
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
    bench_ab_check || rc=1
    python3 tools/bench-misses.py README.md >/dev/null 2>&1
    [ $? -eq 2 ] || { echo "check-benches: tools/bench-misses.py took README.md for a run"; rc=1; }
else
    echo "check-benches: no python3: tools/bench-misses.py not tried"
fi
exit $rc
