#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compares builds on the allocation patterns over many processes.

    python3 tools/bench-ab.py [-n N] [-o DIR [--append]] LABEL=BUILD_DIR ...
    python3 tools/bench-ab.py -o DIR LABEL ...       (summarise DIR's runs again)

Runs BUILD_DIR/bench/bench_patterns N times (default 10) for each build, the
builds in turn (A B A B ...), so that whatever the machine does over the
minutes - a busy neighbour, a virtual CPU's clock or cache that changes
from one process to the next - falls on every build alike. Each run writes
its JSON into DIR (default: a new directory under /tmp, named at the end),
as LABEL_1.json, LABEL_2.json and so on. DIR must be empty, since the
summary reads every run of a label there: an older run left beside these
would be summed up with them. --append adds these runs to those DIR holds
already, numbered after them, and sums up all of them.
Then it prints, per pattern and per build, over the N runs:

    cpu    the median of the runs' ratios rcl/raw (each run's own median of
           its interleaved rounds), [min - max], and how many runs were over
           the CPU goal
    ns     the median of rcl's CPU ns per pair
    rss    the same for the peak RSS ratio, where it counts towards the goal
    held   the median of the free blocks rcl held at its peak, in the threads'
           caches and the depot (runs of a bench_patterns that reports them)

One run's ratio can be off by its whole spread on a machine whose speed
changes between processes; what a change does is told by many. The
environment passes through: BENCH_PATTERNS, BENCH_SIZES, BENCH_DEPTHS,
BENCH_THREADS, BENCH_REPS, BENCH_PAIRS (bench/bench_patterns.c). Build the
trees first, for instance `git worktree add /tmp/base HEAD~1` and `make
benches` (or `make BACKEND=mimalloc benches`) in each; a backend's build
directory is build-BACKEND. Only the standard library is used.
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile


def usage(msg=None):
    if msg:
        print("bench-ab: " + msg, file=sys.stderr)
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    sys.exit(2)


def parse(argv):
    n, out, append, builds = 10, None, False, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        if a == "--append":
            append = True
            i += 1
            continue
        if a in ("-n", "-o"):
            if i + 1 >= len(argv):
                usage(a + " needs a value")
            if a == "-n":
                try:
                    n = int(argv[i + 1])
                except ValueError:
                    usage("-n takes a number of runs")
                if n < 1:
                    usage("-n takes a number of runs, at least 1")
            else:
                out = argv[i + 1]
            i += 2
            continue
        label, sep, build = a.partition("=")
        if not label or not label.replace("-", "").replace("_", "").isalnum():
            usage("a build is LABEL=BUILD_DIR, LABEL letters, digits, - and _: " + a)
        builds.append((label, build if sep else None))
        i += 1
    if not builds:
        usage("no build named")
    if len({b[0] for b in builds}) != len(builds):
        usage("a label is named twice")
    if append and out is None:
        usage("--append adds to the runs of a directory: name it with -o DIR")
    return n, out, append, builds


def run(n, out, builds, append):
    for label, build in builds:
        prog = os.path.join(build, "bench", "bench_patterns")
        if not os.access(prog, os.X_OK):
            usage(prog + " is not there: build the benchmarks first")
    if os.listdir(out) and not append:
        usage(out + " is not empty: its runs would be summed up with these; "
              "name a new directory, or --append to add these to them")
    after = {label: max((k for k, _ in numbered(out, label)), default=0)
             for label, _ in builds}
    for i in range(1, n + 1):
        for label, build in builds:
            env = dict(os.environ)
            env["BENCH_JSON"] = os.path.join(out, "%s_%d.json" % (label, after[label] + i))
            prog = os.path.join(build, "bench", "bench_patterns")
            r = subprocess.run([prog], env=env, stdout=subprocess.DEVNULL)
            if r.returncode != 0:
                sys.exit("bench-ab: %s failed (exit status %d)" % (prog, r.returncode))
        print("bench-ab: run %d of %d done" % (i, n), file=sys.stderr)


def numbered(out, label):
    """(N, LABEL_N.json), N the run's number: a glob of LABEL_*.json would
    also take the runs of a label that begins with this one and an
    underscore (base and base_new), and count them as this build's."""
    pattern = re.compile(re.escape(label) + r"_([0-9]+)\.json")
    return [(int(m.group(1)), f) for f in os.listdir(out)
            for m in [pattern.fullmatch(f)] if m]


def load(out, label):
    runs = []
    if not os.path.isdir(out):
        sys.exit("bench-ab: no directory " + out)
    for _, f in sorted(numbered(out, label)):
        with open(os.path.join(out, f)) as fh:
            doc = json.load(fh)
        runs.append(doc)
    return runs


def summarise(out, labels):
    docs = {label: load(out, label) for label in labels}
    if not any(docs.values()):
        sys.exit("bench-ab: no runs in " + out)
    first = next(d for d in docs.values() if d)[0]
    goal, goal_rss = first["goal_ratio"], first["goal_rss_ratio"]
    names = [r["name"] for r in first["results"]]
    print("bench_patterns over %s, per build: %d - %d runs (goals: CPU <= %.2f, RSS <= %.2f)"
          % (first["baseline"], min(len(d) for d in docs.values()),
             max(len(d) for d in docs.values()), goal, goal_rss))
    for name in names:
        print(name)
        for label in labels:
            rows = [r for d in docs[label] for r in d["results"] if r["name"] == name]
            if not rows:
                continue
            cpu = [r["ratio"]["median"] for r in rows]
            ns = [r["cpu_ns_per_pair"]["rcl"]["median"] for r in rows]
            line = "  %-10s cpu %.2f [%.2f - %.2f] over %d/%d  ns %.1f" % (
                label, statistics.median(cpu), min(cpu), max(cpu),
                sum(c > goal for c in cpu), len(cpu), statistics.median(ns))
            rss = [r["rss_ratio"] for r in rows if r.get("rss_ratio_counts")]
            if rss:
                line += "  rss %.2f [%.2f - %.2f] over %d/%d" % (
                    statistics.median(rss), min(rss), max(rss),
                    sum(x > goal_rss for x in rss), len(rss))
                held = [r["rcl_peak_free_kib"]["thread_cached"] + r["rcl_peak_free_kib"]["depot"]
                        for r in rows if r.get("rss_ratio_counts") and "rcl_peak_free_kib" in r]
                if held:
                    line += "  held %.0f KiB" % statistics.median(held)
            print(line)


def main():
    # A reader that stops early (| head) ends this as it ends any other
    # command-line tool, quietly, where Python raises BrokenPipeError.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    n, out, append, builds = parse(sys.argv[1:])
    to_run = [b for b in builds if b[1] is not None]
    if to_run and len(to_run) != len(builds):
        usage("either every build names its directory (to run) or none does (to summarise)")
    if to_run:
        if out is None:
            out = tempfile.mkdtemp(prefix="bench-ab-")
        if os.path.exists(out) and not os.path.isdir(out):
            usage("-o %s: not a directory" % out)
        os.makedirs(out, exist_ok=True)
        run(n, out, builds, append)
    elif out is None:
        usage("summarising needs -o DIR")
    elif append:
        usage("--append adds runs: name each build's directory")
    summarise(out, [b[0] for b in builds])
    print("(the runs' JSON: %s)" % out)


if __name__ == "__main__":
    main()
