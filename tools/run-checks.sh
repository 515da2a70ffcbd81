#!/bin/sh
# SPDX-License-Identifier: MIT
# The repository's own checks (license lines, exported ABI, the public
# header built as C and C++ under strict warnings, man pages, the options
# table against the README and reclaim(7), an install into a staging
# tree, the shared library loaded with dlopen(), the benchmarks built, no
# slow bit-test instruction in the fast paths), each one test in
# make check's count. BUILD names the build directory whose library and
# man pages are checked.
. "$(dirname "$0")/no-args.sh"
BUILD=${BUILD:-build}
export BUILD
passed=0; failed=0; skipped=0
for c in check-spdx check-docs check-abi check-header check-man check-options check-install check-dlopen check-benches check-fastpath; do
    out=$(sh "tools/$c.sh" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    case $rc in
    0) passed=$((passed + 1)); echo "== $c: passed" ;;
    77) skipped=$((skipped + 1)); echo "== $c: skipped (reason above)" ;;
    *) failed=$((failed + 1)); echo "== $c: FAILED (rc=$rc)" ;;
    esac
done
echo "repository checks: $passed passed, $failed failed, $skipped skipped"
[ -n "${RCL_SUMMARY:-}" ] && echo "repo $passed $failed $skipped" >> "$RCL_SUMMARY"
[ $failed -eq 0 ]
