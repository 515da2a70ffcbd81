#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs each test program and adds up cmocka's summaries into one closing
# line: "N passed, N failed, N skipped".
# Environment: SAN (asan|tsan|empty) selects the sanitizer options, and
# BACKEND (libc|mimalloc|jemalloc) the few that depend on the backend;
# RUN_LABEL names the run in the counts (default: SAN, or "plain");
# RCL_SUMMARY, when set, names a file this run's counts are added to as one
# line "LABEL PASSED FAILED SKIPPED" (tools/summary.sh adds those up).
# Every skipped test is listed at the end with the reason it printed.
case "${1:-}" in
-h|--help) sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
export ASAN_OPTIONS="abort_on_error=0:halt_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
# jemalloc's fork handler takes every one of its arenas' and bins' locks,
# more than the 64 ThreadSanitizer's lock-order checker can track a
# thread holding: every fork() of a test would end in the checker's own
# assertion. Over jemalloc that checker is off; the race detector stays,
# and the glibc and mimalloc runs keep the checker.
[ "${SAN:-}" = tsan ] && [ "${BACKEND:-}" = jemalloc ] &&
    TSAN_OPTIONS="$TSAN_OPTIONS:detect_deadlocks=0"
export CMOCKA_MESSAGE_OUTPUT=STDOUT
# No RECLAIM_* variable from the caller's environment changes what a test sees.
for v in $(env | sed -n 's/^\(RECLAIM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
passed=0; failed=0; skipped=0; broken=""; skips=""
label=${RUN_LABEL:-${SAN:-plain}}
for t in "$@"; do
    out=$(mktemp)
    start=$(date +%s)
    timeout -k 10 600 "$t" >"$out" 2>&1
    rc=$?
    end=$(date +%s)
    cat "$out"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    # A test whose setup or teardown failed (the teardown's clean-state
    # check, tests/helpers/fixture.h) is an error in cmocka's words, left
    # out of its FAILED count: it is a failed test here.
    e=$(grep -c '^\[  ERROR   \] [^-]' "$out")
    [ "$e" -gt 0 ] && f=$((${f:-0} + e))
    # A skipped test's reason is what it printed just before cmocka's
    # "[  SKIPPED ]" line.
    why=$(awk -v prog="$(basename "$t")" '
        /^\[ RUN +\] / { run = $4; last = ""; next }
        /^\[  SKIPPED \] / && run != "" && $4 == run {
            printf "  %s/%s: %s\n", prog, run, (last != "" ? last : "(no reason printed)"); run = ""; next }
        /^\[ *(OK|PASSED|FAILED|SKIPPED|ERROR|LINE|=+|-+) *\]/ { run = ""; last = ""; next }
        { last = $0 }' "$out")
    [ -n "$why" ] && skips="$skips
$why"
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
    if [ $rc -ne 0 ] && [ -z "$f" -o "${f:-0}" = 0 ]; then
        failed=$((failed + 1)); broken="$broken $(basename "$t")(rc=$rc)"
    fi
    echo "== $(basename "$t") [$label]: rc=$rc, $((end - start)) s"
    rm -f "$out"
done
[ -n "$broken" ] && echo "programs that died:$broken"
[ -n "$skips" ] && echo "skipped [$label]:$skips"
echo "$label: $passed passed, $failed failed, $skipped skipped"
[ -n "${RCL_SUMMARY:-}" ] && echo "$label $passed $failed $skipped" >> "$RCL_SUMMARY"
[ $failed -eq 0 ]
