#!/bin/sh
# Runs each test program and adds up cmocka's summaries into one closing
# line: "N passed, N failed, N skipped".
# Environment: SAN (asan|tsan|empty) selects the sanitizer options.
export ASAN_OPTIONS="abort_on_error=0:halt_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
export RCL_TEST_SAN="${SAN:-}"
export CMOCKA_MESSAGE_OUTPUT=STDOUT
unset RECLAIM_LIMIT RECLAIM_STATS RECLAIM_LOCKDEP RECLAIM_BACKGROUND RECLAIM_PRESSURE RECLAIM_DIRECT_US
passed=0; failed=0; skipped=0; broken=""
label=${SAN:-plain}
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
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
    if [ $rc -ne 0 ] && [ -z "$f" -o "${f:-0}" = 0 ]; then
        failed=$((failed + 1)); broken="$broken $(basename "$t")(rc=$rc)"
    fi
    echo "== $(basename "$t") [$label]: rc=$rc, $((end - start)) s"
    rm -f "$out"
done
[ -n "$broken" ] && echo "programs that died:$broken"
echo "$label: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
