#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the benchmarks and gathers their results into one JSON file per run.
#
#   sh tools/run-bench.sh BUILD_DIR BENCH_PROGRAM...      (what `make bench` does)
#
# Each program prints its table (shown as it runs) and, given BENCH_JSON,
# writes one JSON object; a program that writes none, or that fails, is
# kept as its text and its exit status (and the run then fails).
# The run's file, BENCH_OUT/DATE-HOST-BACKEND.json (BENCH_OUT defaults to
# docs/bench/runs), holds the machine, the date, the load before and after,
# the command that runs it again, with the environment that matters to the
# figures ("environment": every BENCH_*, RECLAIM_*, MEMORY_PRESSURE_*,
# MALLOC_*, MIMALLOC_*, GLIBC_TUNABLES and LD_PRELOAD set), and every
# program's object. Then, when python3 and gnuplot are there,
# tools/plot-bench.py draws the PNG plots into docs/bench/ (docs/bench/BACKEND/
# for mimalloc and jemalloc builds).
#
# BACKEND names the build's backend (make passes it; default libc).
# Environment passed through to the programs: BENCH_REPS, BENCH_QUICK=1,
# BENCH_THREADS=1,2,4 (hot path, and the live-set patterns), BENCH_PATTERNS,
# BENCH_PAIRS (allocation patterns), BENCH_PRESSURE_THREADS=2,8 (one pressure run each;
# the 8-thread one is "pressure", others "pressure-N"), BENCH_LIMIT_MB,
# BENCH_SECONDS, BENCH_PSI_* (see bench/*.c). BENCH_ONLY=alloc,scope runs
# the named programs only (BENCH_ONLY=patterns: the allocation patterns);
# a name that is no program's stops the run before it starts.
case "${1:-}" in
-h|--help) sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
set -u
build=${1:?usage: run-bench.sh BUILD_DIR PROGRAM...}
shift
out_dir=${BENCH_OUT:-docs/bench/runs}
mkdir -p "$out_dir" || exit 1

# The backend the programs were built with (make passes it).
backend=${BACKEND:-libc}
# libc's plots in docs/bench, another backend's in docs/bench/BACKEND
if [ "$backend" = libc ]; then
    plot_dir=${BENCH_PLOTS:-docs/bench}
else
    plot_dir=${BENCH_PLOTS:-docs/bench/$backend}
fi
# Each name BENCH_ONLY gives must be one of the programs: a name that is
# none (a typo) would run nothing, and leave a run with no benchmark in it.
if [ -n "${BENCH_ONLY:-}" ]; then
    [ -n "$(echo "$BENCH_ONLY" | tr -d ', ')" ] ||
        { echo "run-bench: BENCH_ONLY='$BENCH_ONLY' names no benchmark" >&2; exit 2; }
    for want in $(echo "$BENCH_ONLY" | tr ',' ' '); do
        found=""
        for prog in "$@"; do
            name=$(basename "$prog")
            [ "$want" = "$name" ] || [ "$want" = "${name#bench_}" ] && found=1
        done
        if [ -z "$found" ]; then
            echo "run-bench: BENCH_ONLY names '$want', which is no benchmark here; there are:" \
                $(for prog in "$@"; do n=$(basename "$prog"); echo "${n#bench_}"; done) >&2
            exit 2
        fi
    done
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
host=$(hostname 2>/dev/null || echo unknown)
out="$out_dir/$stamp-$host-$backend.json"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

# JSON string from stdin: escapes \ and ", turns tabs and newlines into \t, \n.
json_text() {
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | awk '{ printf "%s\\n", $0 }'
}

# The CPU's name, with its family and model where /proc/cpuinfo gives them
# (as bench_cpu_model() in bench/bench.h writes it): "AMD EPYC" alone
# names several generations of a virtual machine's CPU.
cpu_model() {
    awk -F': *' '/^model name/ && n == "" { n = $2 } /^cpu family/ && f == "" { f = $2 }
        /^model\t/ && m == "" { m = $2 }
        END { printf "%s", n; if (f != "" && m != "") printf " (family %s, model %s)", f, m; print "" }' \
        /proc/cpuinfo 2>/dev/null
}

# Single-quoted for the shell where it is more than a plain word.
sh_quote() {
    case $1 in
    ''|*[!A-Za-z0-9_.,:/=+@%-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
    esac
}

# What the figures depend on beside the build, so that a run's file says
# how to run it again: the variables the programs, the library and the
# backend read (BENCH_ONLY, BENCH_REPS, RECLAIM_LIMIT, GLIBC_TUNABLES,
# MALLOC_CONF, ...), and make's that chose the build (make passes them as
# BENCH_MAKE_ARGS). BENCH_JSON, BENCH_OUT and BENCH_PLOTS say where the
# results go, not what they are.
env | LC_ALL=C grep -E '^(BENCH_[A-Z0-9_]+|RECLAIM_[A-Z0-9_]+|MEMORY_PRESSURE_[A-Z0-9_]+|GLIBC_TUNABLES|MALLOC_[A-Z0-9_]+|MIMALLOC_[A-Z0-9_]+|LD_PRELOAD)=' |
    LC_ALL=C grep -Ev '^BENCH_(JSON|OUT|PLOTS|MAKE_ARGS)=' | LC_ALL=C sort > "$tmp/env"
command=""
while IFS= read -r var; do
    command="$command${var%%=*}=$(sh_quote "${var#*=}") "
done < "$tmp/env"
command="${command}make bench ${BENCH_MAKE_ARGS:-BUILD=$build BACKEND=$backend}"

load_begin=$(cat /proc/loadavg 2>/dev/null)
failed=""
for prog in "$@"; do
    name=$(basename "$prog")
    short=${name#bench_}
    if [ -n "${BENCH_ONLY:-}" ]; then
        case ",$BENCH_ONLY," in *",$short,"*|*",$name,"*) ;; *) continue ;; esac
    fi
    # bench_pressure runs once per thread count (BENCH_PRESSURE_THREADS,
    # default 2,8); the 8-thread result keeps the name "pressure".
    runs=$name
    if [ "$name" = bench_pressure ]; then
        runs=""
        for th in $(echo "${BENCH_PRESSURE_THREADS:-2,8}" | tr ',' ' '); do
            [ "$th" = 8 ] && runs="$runs $name" || runs="$runs $name-$th"
        done
    fi
    for run in $runs; do
        th=${run#bench_pressure-}
        [ "$run" = bench_pressure ] && th=8
        echo
        # The status is kept aside, as tee would hide it: a program writes
        # its JSON's opening when it starts, and one that died after that
        # left part of it, which would make the whole run's file unreadable.
        { BENCH_PRESSURE_THREADS=$th BENCH_JSON="$tmp/$run.json" "$prog" 2>&1
          echo $? > "$tmp/$run.status"; } | tee "$tmp/$run.txt"
        status=$(cat "$tmp/$run.status" 2>/dev/null || echo 1)
        if [ "$status" = 0 ] && [ -s "$tmp/$run.json" ] &&
            head -c 1 "$tmp/$run.json" | grep -q '{'; then
            cp "$tmp/$run.json" "$tmp/$run.part"
        else
            { printf '{"bench": "%s", "status": %s, "text": "' "${run#bench_}" "$status"
              json_text < "$tmp/$run.txt"; printf '"}\n'; } > "$tmp/$run.part"
            [ "$status" = 0 ] && [ -s "$tmp/$run.txt" ] || failed="$failed $run"
        fi
    done
done
load_end=$(cat /proc/loadavg 2>/dev/null)

{
    printf '{\n"date": "%s",\n"host": "%s",\n"backend": "%s",\n' "$stamp" "$host" "$backend"
    printf '"cpus": %s,\n' "$(nproc 2>/dev/null || echo 0)"
    printf '"cpu": "%s",\n' "$(cpu_model | json_text | sed 's/\\n$//')"
    printf '"kernel": "%s",\n' "$(uname -sr)"
    printf '"loadavg_begin": "%s",\n"loadavg_end": "%s",\n' "$load_begin" "$load_end"
    printf '"command": "%s",\n' "$(printf '%s' "$command" | json_text | sed 's/\\n$//')"
    printf '"environment": {'
    sep=""
    while IFS= read -r var; do
        printf '%s"%s": "%s"' "$sep" "${var%%=*}" "$(printf '%s' "${var#*=}" | json_text | sed 's/\\n$//')"
        sep=", "
    done < "$tmp/env"
    printf '},\n'
    printf '"benchmarks": {'
    sep=""
    for part in "$tmp"/*.part; do
        [ -e "$part" ] || continue
        n=$(basename "$part" .part)
        printf '%s\n"%s": ' "$sep" "${n#bench_}"
        cat "$part"
        sep=","
    done
    printf '}\n}\n'
} > "$out"

echo
echo "results: $out"
[ -n "$failed" ] && echo "programs that failed or printed nothing (their text kept):$failed"
if command -v python3 >/dev/null 2>&1 && command -v gnuplot >/dev/null 2>&1; then
    python3 tools/plot-bench.py "$out" "$plot_dir" || echo "plotting failed (the JSON is kept)"
else
    echo "no python3 or gnuplot: no plots (apt-get install gnuplot-nox)"
fi
[ -z "$failed" ]
