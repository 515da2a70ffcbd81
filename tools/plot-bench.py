#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turns one `make bench` run (the JSON tools/run-bench.sh writes) into PNG
plots with gnuplot (Debian: gnuplot-nox).

    python3 tools/plot-bench.py docs/bench/runs/RUN.json [OUT_DIR]

Writes into OUT_DIR (default docs/bench): hotpath.png (ns per pair by size,
every allocator), hotpath-ratio.png (rcl / baseline with min..max, the 1.10
goal), hotpath-scaling.png (pairs per second by threads, when the run had
several thread counts), scope.png, pressure.png (8 threads; pressure-N.png
for N threads, and so on for the three below), pressure-cdf.png (allocation
latency CDF per variant), pressure-timeline.png (usage, watermarks and stalls
from a cold start), pressure-knee.png (stalls against the allocation rate),
memory.png, patterns.png (bench_patterns: rcl / raw against the live-set
depth per size, free order and thread count), patterns-rss.png (the same for
peak RSS) and patterns-other.png (producer/consumer, larson, glibc's
simple). Each title says
the machine, the backend and the date, since figures from different machines
must not be compared. Only the standard library and gnuplot are used.
"""
import json
import os
import subprocess
import sys
import tempfile

ORDER = ["rcl", "libc", "mimalloc", "jemalloc", "tcmalloc"]


def q(s):
    """A gnuplot double-quoted string; a newline in s stays a line break."""
    s = str(s).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    return '"' + s + '"'


def gnuplot(script, tmp):
    path = os.path.join(tmp, "plot.gp")
    with open(path, "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", path], check=True)


def write(tmp, name, rows):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        for r in rows:
            f.write(" ".join(str(x) for x in r) + "\n")
    return path


def head(out, title, w=1000, h=600):
    return (f"set terminal pngcairo size {w},{h} font 'sans,11'\n"
            f"set output {q(out)}\nset title {q(title)} noenhanced\n"
            "set grid\nset key outside right top noenhanced\n")


def hotpath(run, b, out, tmp, sub):
    res = b["results"]
    threads = sorted({int(r["threads"]) for r in res})
    base = b.get("baseline", "libc")
    # ns per pair, one panel per thread count (first and last)
    shown = threads[:1] + (threads[-1:] if len(threads) > 1 else [])
    gp = head(os.path.join(out, "hotpath.png"),
              f"alloc+free pair, ns (median, rcl with min..max) - {sub}", 1100, 450 * len(shown))
    gp += f"set multiplot layout {len(shown)},1\nset logscale x 2\nset xlabel 'block size, bytes'\n"
    gp += "set ylabel 'ns per pair (log)'\nset logscale y\nset yrange [*:*]\n"
    for t in shown:
        rows = [r for r in res if int(r["threads"]) == t]
        plots = []
        for a in ORDER:
            if a not in rows[0]["ns_per_pair"]:
                continue
            data = [(int(r["size"]), r["ns_per_pair"][a]["median"], r["ns_per_pair"][a]["min"],
                     r["ns_per_pair"][a]["max"]) for r in rows]
            f = write(tmp, f"hp-{t}-{a}.dat", data)
            label = a + (" (baseline)" if a == base else "") + (" over " + run.get("backend", base) if a == "rcl" else "")
            if a == "rcl":
                plots.append(f"{q(f)} u 1:2:3:4 w yerrorlines lw 3 pt 7 t {q(label)}")
            else:
                lw = 2 if a == base else 1
                plots.append(f"{q(f)} u 1:2 w linespoints lw {lw} t {q(label)}")
        gp += f"set title {q(f'{t} thread' + ('s' if t > 1 else '') + ' - ' + sub)} noenhanced\n"
        gp += "plot " + ", ".join(plots) + "\n"
    gp += "unset multiplot\n"
    gnuplot(gp, tmp)

    # ratio
    gp = head(os.path.join(out, "hotpath-ratio.png"),
              f"rcl / {base} raw, per round: median and min..max\n{sub}")
    gp += "set logscale x 2\nset xlabel 'block size, bytes'\nset ylabel 'time ratio'\n"
    gp += "set logscale y\nset yrange [0.2:*]\nset ytics (0.25, 0.5, 0.75, 1, 1.1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100)\n"
    gp += "set ylabel 'time ratio (log)'\n"
    plots = ["1.10 w l dt 2 lw 2 lc rgb 'red' t 'goal 1.10'"]
    for i, t in enumerate(threads):
        rows = [r for r in res if int(r["threads"]) == t]
        data = [(int(r["size"]) * (1 + 0.04 * i), r["ratio_rcl_baseline"]["median"],
                 r["ratio_rcl_baseline"]["min"], r["ratio_rcl_baseline"]["max"]) for r in rows]
        f = write(tmp, f"ratio-{t}.dat", data)
        plots.append(f"{q(f)} u 1:2:3:4 w yerrorlines lw 2 lc {i + 1} t {q(str(t) + ' thread' + ('s' if t > 1 else '') + ': median of rounds')}")
        if "ratio_of_minimums" in rows[0]:
            f = write(tmp, f"ratiomin-{t}.dat", [(int(r["size"]) * (1 + 0.04 * i), r["ratio_of_minimums"]) for r in rows])
            plots.append(f"{q(f)} u 1:2 w points pt 6 ps 2 lc {i + 1} t {q(str(t) + ' thread' + ('s' if t > 1 else '') + ': fastest/fastest')}")
    gp += "plot " + ", ".join(plots) + "\n"
    gnuplot(gp, tmp)

    if len(threads) > 1:
        gp = head(os.path.join(out, "hotpath-scaling.png"),
                  f"64-byte pairs, millions per second, all threads together - {sub}")
        gp += "set xlabel 'threads'\nset ylabel 'Mpairs/s'\nset logscale x 2\nset yrange [0:*]\n"
        plots = []
        for a in ORDER:
            rows = [r for r in res if int(r["size"]) == 64 and a in r["mpairs_per_s"]]
            if not rows:
                continue
            f = write(tmp, f"scal-{a}.dat", [(int(r["threads"]), r["mpairs_per_s"][a]) for r in rows])
            plots.append(f"{q(f)} u 1:2 w linespoints lw {3 if a == 'rcl' else 1} t {q(a)}")
        gp += "plot " + ", ".join(plots) + "\n"
        gnuplot(gp, tmp)


def scope(b, out, tmp, sub):
    rows = b["results"]
    data = [(i, r["op"], r["ns"]["median"], r["ns"]["min"], r["ns"]["max"]) for i, r in enumerate(rows)]
    f = write(tmp, "scope.dat", [(i, q(op), m, lo, hi) for i, op, m, lo, hi in data])
    g = b.get("goals", {})
    floor = rows[0]["ns"]["median"]
    gp = head(os.path.join(out, "scope.png"),
              f"scope operations, ns (median, min..max); floor = TLS increment pair - {sub}", 1100, 600)
    gp += "set style fill solid 0.6\nset boxwidth 0.7\nset xtics rotate by -35 noenhanced\n"
    gp += "set ylabel 'ns per operation'\nset logscale y\nset yrange [0.5:*]\nset key inside left top\n"
    gp += "set bmargin 9\n"
    gp += (f"plot {q(f)} u 1:3:xtic(2) w boxes t 'median', '' u 1:3:4:5 w yerrorbars lc rgb 'black' t 'min..max', "
           f"2 w l dt 2 lc rgb 'red' t 'goal: scope pair <= 2 ns', {2 * floor} w l dt 3 lc rgb 'blue' t '2x floor'\n")
    gnuplot(gp, tmp)


def pressure(b, out, tmp, sub, sfx=""):
    r = b["results"]
    lim_mb = b["limit"] / 1048576.0
    gp = head(os.path.join(out, f"pressure{sfx}.png"),
              f"cache 4x its budget, {b['threads']} threads - {sub}", 1200, 1000)
    gp += (f"set multiplot layout 2,2 title {q('cache 4x its budget, ' + str(b['threads']) + ' threads: libreclaim vs PSI event + malloc_trim - ' + sub)} noenhanced\n"
           "set style fill solid 0.6\nset key noenhanced\n")
    # throughput
    rows = [(0, q("rcl"), r["ops_per_s"]["rcl"]["median"] / 1e6, r["ops_per_s"]["rcl"]["min"] / 1e6, r["ops_per_s"]["rcl"]["max"] / 1e6),
            (1, q("psi+trim"), r["ops_per_s"]["psi_trim"]["median"] / 1e6, r["ops_per_s"]["psi_trim"]["min"] / 1e6, r["ops_per_s"]["psi_trim"]["max"] / 1e6)]
    f = write(tmp, "thr.dat", rows)
    gp += "set title 'throughput, million ops/s (median, min..max)'\nset boxwidth 0.6\nset yrange [0:*]\nset xrange [-0.6:1.6]\n"
    gp += (f"plot {q(f)} u 1:3:($1+1):xtic(2) w boxes lc variable notitle, "
           "'' u 1:3:4:5 w yerrorbars lc rgb 'black' notitle\n")
    # latencies
    keys = [("a50", "alloc p50"), ("a99", "alloc p99"), ("a999", "alloc p99.9"), ("amax", "alloc max"),
            ("o999", "op p99.9")]
    rows = [(i, q(lbl), r[k]["rcl"]["median"] / 1e3, r[k]["psi_trim"]["median"] / 1e3) for i, (k, lbl) in enumerate(keys)]
    f = write(tmp, "lat.dat", rows)
    gp += "set title 'latency, microseconds (median of runs), log scale'\nset logscale y\nset yrange [*:*]\nset xrange [-0.6:4.6]\n"
    gp += "set boxwidth 0.35\nset key inside left top\n"
    gp += (f"plot {q(f)} u ($1-0.18):3:xtic(2) w boxes t 'rcl', '' u ($1+0.18):4 w boxes t 'psi+trim', "
           "100 w l dt 2 lc rgb 'red' t 'goal p99.9 <= 100 us'\n")
    gp += "unset logscale y\n"
    # usage timeline
    tl = b.get("timeline", {})
    plots = []
    for m, lbl in (("rcl", "rcl usage"), ("psi_trim", "psi+trim usage")):
        if m in tl:
            f = write(tmp, f"tl-{m}.dat", zip(tl[m]["t_ms"], tl[m]["usage_mb"]))
            plots.append(f"{q(f)} u 1:2 w l lw 2 t {q(lbl)}")
    plots.append(f"{lim_mb} w l dt 2 lw 2 lc rgb 'red' t 'limit'")
    gp += "set title 'usage from a cold start, MiB (sampled every 5 ms)'\nset xrange [*:*]\nset yrange [0:*]\n"
    gp += "set xlabel 'ms'\nset key inside right bottom\n"
    gp += "plot " + ", ".join(plots) + "\n"
    gp += "unset xlabel\n"
    # stall and peak
    rows = [(0, q("stalled %"),
             100 * r["stall_frac"]["rcl"]["median"],
             100 * (r["handler_ms"]["psi_trim"]["median"] / 1e3) / (b["run_ms"] / 1e3)),
            (1, q("peak usage % of limit"), 100 * r["peak_exact"]["rcl"]["max"] / b["limit"],
             100 * r["max_usage"]["psi_trim"]["max"] / b["limit"]),
            (2, q("hit ratio %"), 100 * r["hit_ratio"]["rcl"]["median"], 100 * r["hit_ratio"]["psi_trim"]["median"])]
    f = write(tmp, "misc.dat", rows)
    gp += "set title 'stalled %: rcl threads in direct reclaim or throttled; psi: handler busy'\nset xrange [-0.6:2.6]\nset yrange [0:*]\nset key inside left top\n"
    gp += "set xtics noenhanced\n"
    gp += f"plot {q(f)} u ($1-0.18):3:xtic(2) w boxes t 'rcl', '' u ($1+0.18):4 w boxes t 'psi+trim', 100 w l dt 2 lc rgb 'red' t '100 %'\n"
    gp += "unset multiplot\n"
    gnuplot(gp, tmp)
    pressure_cdf(b, out, tmp, sub, sfx)
    pressure_timeline(b, out, tmp, sub, sfx)
    pressure_knee(b, out, tmp, sub, sfx)


def pressure_cdf(b, out, tmp, sub, sfx=""):
    cdf = b.get("cdf")
    if not cdf:
        return
    gp = head(os.path.join(out, f"pressure-cdf{sfx}.png"),
              f"allocation latency CDF under pressure (last run of each), {b['threads']} threads - {sub}", 1000, 600)
    gp += ("set logscale x\nset xlabel 'allocation latency, microseconds (log)'\n"
           "set ylabel 'fraction of allocations slower (1 - CDF, log)'\n"
           "set logscale y\nset yrange [1e-5:1]\nset key inside right top\n")
    plots = []
    for m, lbl in (("rcl", "rcl"), ("psi_trim", "psi+trim")):
        if m in cdf and cdf[m]["ns"]:
            f = write(tmp, f"cdf-{m}.dat", ((ns / 1e3, max(1e-6, 1 - fr)) for ns, fr in zip(cdf[m]["ns"], cdf[m]["frac"])))
            plots.append(f"{q(f)} u 1:2 w steps lw 2 t {q(lbl + ': 1 - CDF')}")
    plots.append("'+' u (100):(1e-3) w p pt 7 ps 1.5 lc rgb 'red' t 'goal p99.9 <= 100 us'")
    gp += "set xrange [0.05:*]\nplot " + ", ".join(plots) + "\n"
    gnuplot(gp, tmp)


def pressure_timeline(b, out, tmp, sub, sfx=""):
    tl = b.get("timeline", {}).get("rcl")
    if not tl or "direct" not in tl:
        return
    lim_mb = b["limit"] / 1048576.0
    gp = head(os.path.join(out, f"pressure-timeline{sfx}.png"),
              f"rcl from a cold start: usage, watermarks, stalls per 5 ms, {b['threads']} threads - {sub}", 1100, 600)
    f = write(tmp, "tl.dat", zip(tl["t_ms"], tl["usage_mb"], tl["direct"], tl["throttled"]))
    gp += ("set xlabel 'ms'\nset ylabel 'MiB'\nset y2label 'events per 5 ms'\nset y2tics\nset ytics nomirror\n"
           f"set yrange [0:{lim_mb * 1.1}]\nset y2range [0:*]\nset key outside right top\n")
    gp += (f"plot {q(f)} u 1:2 w l lw 2 t 'usage', "
           f"{lim_mb} w l dt 2 lw 2 lc rgb 'red' t 'limit', "
           f"{tl['min_mb']} w l dt 3 lc rgb 'orange' t 'min wmark', "
           f"{tl['low_mb']} w l dt 3 lc rgb 'dark-green' t 'low wmark', "
           f"{tl['high_mb']} w l dt 3 lc rgb 'blue' t 'high wmark', "
           f"'' u 1:3 axes x1y2 w impulses lc rgb 'purple' t 'direct reclaims', "
           f"'' u 1:4 axes x1y2 w impulses lw 2 lc rgb 'black' t 'throttled waits'\n")
    gnuplot(gp, tmp)


def pressure_knee(b, out, tmp, sub, sfx=""):
    k = b.get("knee")
    if not k:
        return
    gp = head(os.path.join(out, f"pressure-knee{sfx}.png"),
              f"the knee: stalls against the allocation rate (rcl, paced), {b['threads']} threads - {sub}", 1000, 600)
    f = write(tmp, "knee.dat", ((r["alloc_mib_s"], 100 * r["stall_frac"], r["bg_mib_s"], 100 * r["bg_cpu_frac"], r["a999"] / 1e3) for r in k))
    gp += ("set xlabel 'allocated MiB/s'\nset ylabel 'stalled % of thread time, background CPU %'\n"
           "set y2label 'alloc p99.9, us'\nset y2tics\nset ytics nomirror\nset yrange [0:*]\nset y2range [0:*]\n"
           "set key inside left top\n")
    gp += (f"plot {q(f)} u 1:2 w lp lw 2 pt 7 t 'stalled %', '' u 1:4 w lp pt 5 t 'background CPU %', "
           "'' u 1:5 axes x1y2 w lp dt 2 pt 6 t 'p99.9 us', 2 w l dt 3 lc rgb 'red' t 'goal: stalled <= 2 %'\n")
    gnuplot(gp, tmp)


def memory(b, out, tmp, sub):
    rows = b["per_allocation"]
    # overhead_heap is null where glibc's heap holds the blocks of neither
    # variant or of one (bench_memory's heap_seen()).
    def heap(r):
        return "NaN" if r.get("overhead_heap") is None else r["overhead_heap"]
    f = write(tmp, "mem.dat", [(i, q(int(r["size"])), r["overhead_rss"], heap(r)) for i, r in enumerate(rows)])
    pt = b.get("per_thread", {})
    # A figure of bench_memory's is median [min..max] since 2026-12-07;
    # the runs before it kept the median alone.
    stock = pt.get("stock_budget", 0)
    stock = stock.get("median") if isinstance(stock, dict) else stock
    gp = head(os.path.join(out, "memory.png"),
              f"memory overhead per live allocation, bytes (rcl - raw) - {sub}\n"
              f"per thread: {pt.get('static_tls', 0):.0f} B static TLS, heap {pt.get('overhead_heap', 0):.0f} B, "
              f"stock {stock or 0:.0f} B of budget", 1000, 550)
    gp += "set style fill solid 0.6\nset boxwidth 0.35\nset xlabel 'block size, bytes'\nset ylabel 'bytes per block'\n"
    top = max([1.0] + [v for r in rows for v in (r["overhead_rss"], r.get("overhead_heap"))
                       if v is not None]) * 1.4
    gp += f"set yrange [0:{top}]\nset key inside left top horizontal\n"
    gp += f"plot {q(f)} u ($1-0.18):3:xtic(2) w boxes t 'resident set', '' u ($1+0.18):4 w boxes t 'heap in use (glibc)'\n"
    gnuplot(gp, tmp)


SIZE_ORDER = ["16", "64", "256", "1K", "4K", "mix"]


def patterns(b, out, tmp, sub):
    """bench_patterns: ratio rcl/raw against the live-set depth, one panel per
    thread count and free order, one line per size; the same for the peak
    RSS; and the other families as bars."""
    res = b["results"]
    base = b.get("baseline", "raw")
    goal = b.get("goal_ratio", 1.10)
    goal_rss = b.get("goal_rss_ratio", 1.05)
    live = [r for r in res if r["family"] == "live"]
    panels = sorted({(int(r["threads"]), r["order"]) for r in live})
    sizes = [z for z in SIZE_ORDER if any(r["size"] == z for r in live)]
    sizes += sorted({r["size"] for r in live} - set(sizes))
    rows = (len(panels) + 1) // 2
    for what, key, g, fname in (("CPU time", "ratio", goal, "patterns.png"),
                                ("peak RSS growth", "rss_ratio", goal_rss, "patterns-rss.png")):
        if not panels:
            break
        gp = head(os.path.join(out, fname),
                  f"{what}, rcl / {base} raw, against blocks alive - {sub}", 1200, 430 * rows)
        gp += (f"set multiplot layout {rows},2 title {q(what + ', rcl / ' + base + ' raw, against live-set depth K - ' + sub)} noenhanced\n"
               "set logscale x 2\nset xrange [0.7:6000]\nset xlabel 'K, blocks alive'\n"
               "set logscale y\nset ytics (0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)\n"
               "set key outside right top noenhanced\n")
        gp += "set ylabel 'ratio (log)" + (": median, min..max of rounds'\n" if key == "ratio" else "'\n")
        vals = [v for r in live for v in ((r["ratio"]["min"], r["ratio"]["max"]) if key == "ratio"
                                          else (r.get("rss_ratio"),)) if v]
        if vals:
            gp += f"set yrange [{min(vals + [g]) / 1.2}:{max(vals + [g]) * 1.2}]\n"
        for n, (t, order) in enumerate(panels):
            if n == 1:
                gp += "unset key\n"
            plots = [f"{g} w l dt 2 lw 2 lc rgb 'red' t 'goal {g:.2f}'"]
            for i, z in enumerate(sizes):
                rr = sorted((r for r in live if int(r["threads"]) == t and r["order"] == order
                             and r["size"] == z), key=lambda r: r["depth"])
                shift = 1 + 0.03 * (i - len(sizes) / 2)
                if key == "ratio":
                    data = [(r["depth"] * shift, r["ratio"]["median"], r["ratio"]["min"], r["ratio"]["max"])
                            for r in rr]
                    style = "u 1:2:3:4 w yerrorlines"
                else:
                    data = [(r["depth"] * shift, r["rss_ratio"]) for r in rr
                            if r.get("rss_ratio") is not None and r.get("rss_ratio_counts")]
                    style = "u 1:2 w linespoints"
                if not data:
                    continue
                f = write(tmp, f"pat-{key}-{t}-{order}-{z}.dat", data)
                label = z + (" B" if z[0].isdigit() else "")
                plots.append(f"{q(f)} {style} lw 2 pt 7 lc {i + 1} t {q(label)}")
            title = f"{t} thread{'s' if t > 1 else ''}, {order.upper()} free order"
            if key == "rss_ratio":
                title += f" (where {base} grew >= {b.get('rss_goal_min_kib', 256):.0f} KiB)"
            gp += f"set title {q(title)} noenhanced\n"
            gp += "plot " + ", ".join(plots) + "\n"
        gp += "unset multiplot\n"
        gnuplot(gp, tmp)

    other = [r for r in res if r["family"] != "live"]
    if other:
        def short(r):
            f = r["family"]
            return {"pc": f"prod/cons {r['size']}", "larson": f"larson {r['threads']}t",
                    "simple": f"simple {r['size']}x{r['depth']}"}.get(f, r["name"])
        data = [(i, q(short(r)), r["ratio"]["median"], r["ratio"]["min"], r["ratio"]["max"],
                 r["rss_ratio"] if r.get("rss_ratio") is not None and r.get("rss_ratio_counts") else "NaN")
                for i, r in enumerate(other)]
        f = write(tmp, "pat-other.dat", data)
        gp = head(os.path.join(out, "patterns-other.png"),
                  f"producer/consumer, larson, glibc's simple: rcl / {base} raw - {sub}", 1200, 600)
        gp += ("set style fill solid 0.6\nset boxwidth 0.35\nset xtics rotate by -35 noenhanced\n"
               "set ylabel 'ratio (log)'\nset logscale y\nset yrange [0.25:*]\nset bmargin 6\n"
               f"set xrange [-0.6:{len(other) - 0.4}]\nset key outside right top\n"
               "set ytics (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20)\n")
        gp += (f"plot {q(f)} u ($1-0.18):3:xtic(2) w boxes t 'CPU time (median)', "
               "'' u ($1-0.18):3:4:5 w yerrorbars lc rgb 'black' t 'min..max', "
               "'' u ($1+0.18):6 w boxes t 'peak RSS growth', "
               f"{goal} w l dt 2 lw 2 lc rgb 'red' t 'goal {goal:.2f}', "
               f"{goal_rss} w l dt 3 lw 2 lc rgb 'blue' t 'RSS goal {goal_rss:.2f}'\n")
        gnuplot(gp, tmp)


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        if len(sys.argv) > 1:
            print(f"plot-bench.py: rejected '{sys.argv[1]}': give a run's JSON file", file=sys.stderr)
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        run = json.load(f)
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/bench"
    os.makedirs(out, exist_ok=True)
    sub = f"{run.get('host', '?')}, {run.get('cpus', '?')} cpus, backend {run.get('backend', '?')}, {run.get('date', '?')}"
    benches = run.get("benchmarks", {})
    made = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("alloc", lambda b: hotpath(run, b, out, tmp, sub)),
                         ("scope", lambda b: scope(b, out, tmp, sub)),
                         ("pressure", lambda b: pressure(b, out, tmp, sub)),
                         ("memory", lambda b: memory(b, out, tmp, sub)),
                         ("patterns", lambda b: patterns(b, out, tmp, sub))) + tuple(
                        (k, lambda b, k=k: pressure(b, out, tmp, sub, k[len("pressure"):]))
                        for k in sorted(benches) if k.startswith("pressure-")):
            b = benches.get(name)
            if not b or "text" in b:
                continue
            try:
                fn(b)
                made.append(name)
            except (KeyError, IndexError, ZeroDivisionError, subprocess.CalledProcessError) as e:
                print(f"plot-bench: {name}: {e!r}", file=sys.stderr)
    print(f"plots ({', '.join(made) or 'none'}) in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
