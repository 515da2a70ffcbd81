#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Sums up whole `make bench` runs, per backend and machine, as the README
and docs/bench/patterns.md report them.

    python3 tools/bench-misses.py docs/bench/runs/RUN.json [RUN.json ...]

For each backend and machine among the runs (figures from different machines
must not be compared), in the order of their dates, prints:

    alloc      bench_alloc's rcl / raw per block size and thread count: the
               lowest and highest of the runs' medians
    cpu        how many of bench_patterns' patterns were within the CPU goal
               in each run, and the median over the patterns of their
               ratios, run by run
    rss        the same for peak RSS, over the patterns whose raw RSS grew
               enough to count towards the goal
    misses     a Markdown table: every pattern that missed a goal in any of
               the runs, with its ratio in each run ("-" where it was met),
               CPU rows first, in the order they first missed

A run may also be one benchmark's own JSON (bench_patterns run by hand, or
the runs tools/bench-ab.py keeps); a run without one of the two benchmarks
leaves its lines out, as does one kept as its text (it failed, or wrote
no JSON). Only the standard library is used.
"""
import json
import signal
import statistics
import sys

# The two goals of bench_patterns: a pattern's verdict and its ratio.
GOALS = (("CPU", "goal_met", lambda r: r["ratio"]["median"]),
         ("RSS", "rss_goal_met", lambda r: r["rss_ratio"]))


def usage(msg=None):
    if msg:
        print("bench-misses: %s (see --help)" % msg, file=sys.stderr)
        sys.exit(2)
    print(__doc__.strip())
    sys.exit(0)


def label(name):
    """A pattern's name as the documents write it: "1 KiB", not "1K B"."""
    for short, long in (("1K B", "1 KiB"), ("4K B", "4 KiB"), ("mix B", "mix")):
        name = name.replace(short, long)
    return name


def load(path):
    """A make bench run, or one benchmark's own JSON (bench_patterns run by
    hand or by tools/bench-ab.py) as a run of that benchmark alone."""
    try:
        with open(path) as f:
            run = json.load(f)
        if "bench" in run:
            run = {"benchmarks": {run["bench"]: run}, "backend": run["backend"],
                   "date": run["date"], "cpu": run.get("machine", {}).get("cpu", "?")}
        missing = [k for k in ("benchmarks", "backend", "date") if k not in run]
        if missing:
            raise KeyError(", ".join(missing))
        # A program that failed or wrote no JSON is kept as its text
        # (tools/run-bench.sh): it has no figures to sum up.
        run["benchmarks"] = {k: b for k, b in run["benchmarks"].items()
                             if isinstance(b, dict) and "text" not in b}
        run["date"] = run["date"].replace("-", "").replace(":", "")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        usage("%s is neither a make bench run nor a benchmark's JSON: %s" % (path, e))
    return run


def clock(run):
    """HH:MM of the run's date, 20261204T132839Z."""
    d = run["date"]
    return "%s:%s" % (d[9:11], d[11:13])


def alloc_lines(runs):
    ranges = {}
    for run in runs:
        for r in run["benchmarks"].get("alloc", {}).get("results", []):
            key = (r["threads"], r["size"])
            ranges.setdefault(key, []).append(r["ratio_rcl_baseline"]["median"])
    for threads in sorted({t for t, _ in ranges}):
        cells = ["%s B %.2f-%.2fx" % (size, min(v), max(v))
                 for (t, size), v in sorted(ranges.items()) if t == threads]
        print("  alloc, %d thread%s: %s" % (threads, "" if threads == 1 else "s", ", ".join(cells)))


def pattern_lines(runs):
    cpu, cpu_med, rss, rss_med = [], [], [], []
    for run in runs:
        p = run["benchmarks"].get("patterns")
        if not p:
            continue
        res = p["results"]
        counted = [r for r in res if r.get("rss_ratio_counts")]
        cpu.append("%d of %d" % (sum(1 for r in res if r["goal_met"]), len(res)))
        cpu_med.append("%.3f" % statistics.median(r["ratio"]["median"] for r in res))
        rss.append("%d of %d" % (sum(1 for r in counted if r["rss_goal_met"]), len(counted)))
        if counted:
            rss_med.append("%.3f" % statistics.median(r["rss_ratio"] for r in counted))
    if cpu:
        print("  cpu: within the goal %s; median ratio %s" % (", ".join(cpu), ", ".join(cpu_med)))
        print("  rss: within the goal %s; median ratio %s" % (", ".join(rss), ", ".join(rss_med)))


def miss_table(runs):
    runs = [r for r in runs if "patterns" in r["benchmarks"]]
    if not runs:
        return
    by_run = [{r["name"]: r for r in run["benchmarks"]["patterns"]["results"]} for run in runs]
    rows = []
    for goal in GOALS:
        for res in by_run:
            for name, r in res.items():
                if not r[goal[1]] and (goal, name) not in rows:
                    rows.append((goal, name))
    if not rows:
        print("  misses: none")
        return
    print()
    print("| goal | pattern | " + " | ".join(clock(r) for r in runs) + " |")
    print("|---|---|" + "---|" * len(runs))
    for (goal, met, ratio), name in rows:
        cells = []
        for res in by_run:
            r = res.get(name)
            if r is None:
                cells.append("(not run)")
            else:
                cells.append("-" if r[met] else "%.2fx" % ratio(r))
        print("| %s | %s | %s |" % (goal, label(name), " | ".join(cells)))
    print()


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        usage(None if argv else "no run given")
    runs = sorted((load(a) for a in argv), key=lambda r: r["date"])
    groups = []
    for run in runs:
        key = (run["backend"], run.get("cpu", "?"))
        if key not in groups:
            groups.append(key)
    for backend, cpu in groups:
        mine = [r for r in runs if (r["backend"], r.get("cpu", "?")) == (backend, cpu)]
        print("%s on %s: %d run%s, %s" % (backend, cpu, len(mine), "" if len(mine) == 1 else "s",
                                          ", ".join(r["date"] for r in mine)))
        alloc_lines(mine)
        pattern_lines(mine)
        miss_table(mine)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # quietly, into head or less
    main(sys.argv[1:])
