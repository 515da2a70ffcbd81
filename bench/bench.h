/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what the benchmarks share: a clock, medians over repeats, the
 * machine description, the environment knobs, and a small JSON writer.
 *
 * A benchmark prints a table for people and, when BENCH_JSON names a file,
 * writes one JSON object there for tools/run-bench.sh to gather and
 * tools/plot-bench.py to draw. Benchmarks never pass or fail on time: they
 * measure every figure beside its baseline in the same process and report
 * both, and their ratio, as median [min..max] over the repeats.
 *
 * Knobs (environment, so that `make bench` can pass them through):
 *   BENCH_REPS=N        repeats per figure (default per benchmark)
 *   BENCH_QUICK=1       shorter runs: a smoke test, not a measurement
 *   BENCH_THREADS=1,2   thread counts for the multi-threaded figures
 *   BENCH_JSON=FILE     where to write the JSON object
 */
#ifndef BENCH_H
#define BENCH_H

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "reclaim.h"

#define BENCH_FN static __attribute__((unused))

/* A sanitizer build: its allocator stands in for the backend's, so a raw
 * allocator's figures would not be the backend's (the benchmarks say so,
 * bench_sanitized_note(), and bench_alloc skips the other allocators). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

#if defined(RCL_BACKEND_MIMALLOC)
#define BENCH_BACKEND "mimalloc"
#elif defined(RCL_BACKEND_JEMALLOC)
#define BENCH_BACKEND "jemalloc"
#else
#define BENCH_BACKEND "libc"
#endif

/* Keeps the compiler from proving a value or a block unused (and so from
 * deleting a malloc/free pair, which GCC and Clang both do). */
#define bench_escape(p)   __asm__ volatile("" : : "g"(p) : "memory")
#define bench_barrier()   __asm__ volatile("" : : : "memory")

BENCH_FN uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* The library, called as the raw allocators are                            */
/* ------------------------------------------------------------------------ */

/*
 * The benchmarks call every raw allocator through a pointer looked up with
 * dlsym(), and the library the same way, so that a ratio compares the
 * allocators and not the calls: a call through the PLT is a direct call
 * and an indirect jump, one more branch than a call through a pointer,
 * and on the machine of docs/bench a pair made that way took up to 1.6 ns
 * more (bench_alloc's rcl-plt column beside its rcl column shows it in
 * every run; docs/bench/patterns.md has the figures). The lookup is in
 * the library's own handle, so that the pointer is the function itself,
 * never a PLT entry of the program's; where the library is not a loaded
 * shared object, the function's address serves.
 */
struct bench_rcl_calls {
    void *(*alloc)(size_t, rcl_gfp_t);
    void (*free)(void *);
};

BENCH_FN struct bench_rcl_calls bench_rcl_calls(void)
{
    struct bench_rcl_calls c = { rcl_alloc, rcl_free };
    void *h = dlopen("libreclaim.so.0", RTLD_NOW | RTLD_NOLOAD);
    void *a = h ? dlsym(h, "rcl_alloc") : NULL, *f = h ? dlsym(h, "rcl_free") : NULL;

    if (a && f) {
        *(void **)&c.alloc = a;
        *(void **)&c.free = f;
    }
    return c;
}

/* ------------------------------------------------------------------------ */
/* Environment knobs                                                         */
/* ------------------------------------------------------------------------ */

BENCH_FN long bench_env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    char *end;
    long v;

    if (!s || !*s)
        return dflt;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v <= 0) {
        fprintf(stderr, "bench: ignoring %s=%s (want a positive number)\n", name, s);
        return dflt;
    }
    return v;
}

BENCH_FN int bench_quick(void)
{
    return bench_env_long("BENCH_QUICK", 0) > 0;
}

/* BENCH_REPS, else dflt (quick_dflt under BENCH_QUICK=1), at most max. */
BENCH_FN int bench_reps(int quick_dflt, int dflt, int max)
{
    long reps = bench_env_long("BENCH_REPS", bench_quick() ? quick_dflt : dflt);
    return reps > max ? max : (int)reps;
}

/* One noinline loop per measured operation, so that no row pays for
 * choosing its body; the barrier keeps iterations from being merged. */
#define BENCH_LOOP(name, body)                                               \
    static __attribute__((noinline)) void name(long iters)                   \
    {                                                                        \
        for (long i = 0; i < iters; i++) {                                   \
            body;                                                            \
            bench_barrier();                                                 \
        }                                                                    \
    }

/* Parses "1,2,4" from BENCH_THREADS (or dflt) into out[]; returns how many. */
/* How many iterations make a measurement of about target_ms: grows a trial
 * run fourfold until it takes 2 ms, then scales. ns_per_iter(iters, arg)
 * runs `iters` iterations and returns ns per iteration. */
BENCH_FN long bench_calibrate(double (*ns_per_iter)(long iters, void *arg), void *arg,
                              double target_ms)
{
    long iters = 1000;
    double ns;

    for (;;) {
        ns = ns_per_iter(iters, arg) * (double)iters;
        if (ns > 2e6 || iters > (1L << 30))
            break;
        iters *= 4;
    }
    iters = (long)((double)iters * target_ms * 1e6 / ns);
    return iters < 1000 ? 1000 : iters;
}

BENCH_FN int bench_threads(const char *dflt, int *out, int max)
{
    const char *s = getenv("BENCH_THREADS");
    int n = 0;

    if (!s || !*s)
        s = dflt;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1024) {
            fprintf(stderr, "bench: bad thread list '%s'\n", s);
            break;
        }
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            break;
    }
    if (n == 0)
        out[n++] = 1;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Medians                                                                   */
/* ------------------------------------------------------------------------ */

struct bench_stat {
    double med, min, max;
};

/* Every benchmark answers --help with what it measures and the environment
 * it reads, and names an argument it does not take. */
BENCH_FN void bench_args(int argc, char **argv, const char *name, const char *what)
{
    if (argc < 2)
        return;
    int help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
    if (!help)
        fprintf(stderr, "%s: rejected '%s': benchmarks take no arguments\n", name, argv[1]);
    fprintf(help ? stdout : stderr,
            "usage: %s\n%s\n"
            "Environment: BENCH_QUICK=1 shortens the rounds, BENCH_REPS=N sets them,\n"
            "BENCH_THREADS=1,2,4 the thread counts, BENCH_JSON=FILE writes the results as\n"
            "JSON; `make bench` runs every benchmark and keeps the results in docs/bench/.\n",
            name, what);
    exit(help ? 0 : 2);
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

BENCH_FN struct bench_stat bench_stat_of(const double *v, int n)
{
    struct bench_stat s = { 0, 0, 0 };
    double tmp[256];

    if (n <= 0)
        return s;
    if (n > 256)
        n = 256;
    memcpy(tmp, v, (size_t)n * sizeof(*v));
    qsort(tmp, (size_t)n, sizeof(*tmp), bench_cmp_double);
    s.min = tmp[0];
    s.max = tmp[n - 1];
    s.med = n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
    return s;
}

/* ------------------------------------------------------------------------ */
/* The machine                                                               */
/* ------------------------------------------------------------------------ */

BENCH_FN void bench_loadavg(char *buf, size_t len)
{
    FILE *f = fopen("/proc/loadavg", "r");

    snprintf(buf, len, "unknown");
    if (f) {
        if (fgets(buf, (int)len, f))
            buf[strcspn(buf, "\n")] = 0;
        fclose(f);
    }
}

/* The CPU's name, and its family and model where the name alone does not
 * tell machines apart (a virtual machine's "AMD EPYC" is any generation,
 * and they differ by 1.5x in the time a pair takes). */
BENCH_FN void bench_cpu_model(char *buf, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512], name[256] = "unknown";
    int family = -1, model = -1, named = 0;

    snprintf(buf, len, "unknown");
    if (!f)
        return;
    /* The first processor's lines only. */
    while (!(named && family >= 0 && model >= 0) && fgets(line, sizeof(line), f)) {
        char *c = strchr(line, ':');
        if (!c)
            continue;
        if (strncmp(line, "model name", 10) == 0) {
            named = 1;
            c += 1 + (c[1] == ' ');
            c[strcspn(c, "\n")] = 0;
            snprintf(name, sizeof(name), "%s", c);
        } else if (strncmp(line, "cpu family", 10) == 0) {
            family = atoi(c + 1);
        } else if (strncmp(line, "model\t", 6) == 0) {
            model = atoi(c + 1);
        }
    }
    fclose(f);
    if (family >= 0 && model >= 0)
        snprintf(buf, len, "%s (family %d, model %d)", name, family, model);
    else
        snprintf(buf, len, "%s", name);
}

BENCH_FN long bench_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */
/* ------------------------------------------------------------------------ */

/*
 * A writer for exactly what the benchmarks need: nested objects and arrays,
 * numbers and strings. `first[depth]` says whether the next member of the
 * innermost container needs a comma. With no BENCH_JSON every call is a
 * no-op, so the benchmarks write their JSON unconditionally.
 */
struct bench_json {
    FILE *f;
    int depth;
    int first[32];
};
static struct bench_json bench_js;

BENCH_FN void bj_str_raw(const char *s)
{
    FILE *f = bench_js.f;

    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* Member separator and key (key NULL inside arrays). */
static void bj_key(const char *key)
{
    if (!bench_js.first[bench_js.depth])
        fputc(',', bench_js.f);
    bench_js.first[bench_js.depth] = 0;
    if (bench_js.depth > 0)
        fprintf(bench_js.f, "\n%*s", 2 * bench_js.depth, "");
    if (key) {
        bj_str_raw(key);
        fputs(": ", bench_js.f);
    }
}

BENCH_FN void bj_open(const char *key, char bracket)
{
    if (!bench_js.f)
        return;
    bj_key(key);
    fputc(bracket, bench_js.f);
    bench_js.first[++bench_js.depth] = 1;
}
#define bj_obj(key) bj_open((key), '{')
#define bj_arr(key) bj_open((key), '[')

BENCH_FN void bj_close(char bracket)
{
    if (!bench_js.f)
        return;
    bench_js.depth--;
    fprintf(bench_js.f, "\n%*s%c", 2 * bench_js.depth, "", bracket);
}
#define bj_end_obj() bj_close('}')
#define bj_end_arr() bj_close(']')

BENCH_FN void bj_num(const char *key, double v)
{
    if (!bench_js.f)
        return;
    bj_key(key);
    if (v != v)
        fputs("null", bench_js.f);
    else
        fprintf(bench_js.f, "%.6g", v);
}

BENCH_FN void bj_str(const char *key, const char *s)
{
    if (!bench_js.f)
        return;
    bj_key(key);
    bj_str_raw(s);
}

BENCH_FN void bj_bool(const char *key, int v)
{
    if (!bench_js.f)
        return;
    bj_key(key);
    fputs(v ? "true" : "false", bench_js.f);
}

BENCH_FN void bj_stat(const char *key, struct bench_stat s)
{
    bj_obj(key);
    bj_num("median", s.med);
    bj_num("min", s.min);
    bj_num("max", s.max);
    bj_end_obj();
}

/* Opens BENCH_JSON and writes the members every benchmark has: its name,
 * the machine, the build's backend, the date and the load when it began. */
BENCH_FN void bench_json_begin(const char *bench)
{
    const char *path = getenv("BENCH_JSON");
    char buf[256], host[128] = "unknown";
    struct utsname u;
    time_t now = time(NULL);

    if (!path || !*path)
        return;
    bench_js.f = fopen(path, "w");
    if (!bench_js.f) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    bench_js.depth = 0;
    bench_js.first[0] = 1;
    fputc('{', bench_js.f);
    bench_js.first[++bench_js.depth] = 1;
    bj_str("bench", bench);
    bj_str("backend", BENCH_BACKEND);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    bj_str("date", buf);
    gethostname(host, sizeof(host) - 1);
    bj_obj("machine");
    bj_str("host", host);
    bench_cpu_model(buf, sizeof(buf));
    bj_str("cpu", buf);
    bj_num("cpus", (double)bench_ncpu());
    if (uname(&u) == 0) {
        snprintf(buf, sizeof(buf), "%s %s", u.sysname, u.release);
        bj_str("kernel", buf);
    }
    bj_str("compiler", __VERSION__);
    bench_loadavg(buf, sizeof(buf));
    bj_str("loadavg_begin", buf);
    bj_end_obj();
    bj_bool("quick", bench_quick());
#ifdef SANITIZED
    bj_bool("sanitized", 1);
#else
    bj_bool("sanitized", 0);
#endif
}

BENCH_FN void bench_json_end(void)
{
    char buf[128];

    if (!bench_js.f)
        return;
    bench_loadavg(buf, sizeof(buf));
    bj_str("loadavg_end", buf);
    bj_end_obj();
    fputc('\n', bench_js.f);
    fclose(bench_js.f);
    bench_js.f = NULL;
}

/*
 * The threads of a multi-threaded measurement, pinned: the i-th to the
 * i-th CPU the process may run on, where there are as many. Left to the
 * scheduler on a guest of two CPUs, two threads sometimes took turns on
 * one, where a pair of the producer/consumer pattern costs a quarter of
 * what it costs on two, and two independent loops twice the wall time;
 * and which rounds landed there differed between the variants, so that a
 * ratio compared placements (docs/bench/patterns.md, "Figures,
 * 2026-12-03, 11:00"). BENCH_PIN=0 leaves them to the scheduler.
 */
#define BENCH_PIN_MAX 256

static struct {
    int         n;              /* CPUs to pin to; 0: threads not pinned */
    int         cpu[BENCH_PIN_MAX];
    const char *off;            /* why they are not, if they are not */
} bench_pin;

BENCH_FN void bench_pin_init(void)
{
    const char *env = getenv("BENCH_PIN");
    cpu_set_t set;

    if (env && *env && strcmp(env, "1") != 0) {
        if (strcmp(env, "0") != 0)
            fprintf(stderr, "bench: ignoring BENCH_PIN=%s (want 0 or 1)\n", env);
        else {
            bench_pin.off = "BENCH_PIN=0";
            return;
        }
    }
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
        bench_pin.off = "sched_getaffinity failed";
        return;
    }
    for (int c = 0; c < CPU_SETSIZE && bench_pin.n < BENCH_PIN_MAX; c++)
        if (CPU_ISSET(c, &set))
            bench_pin.cpu[bench_pin.n++] = c;
    if (bench_pin.n < 2) {
        bench_pin.n = 0;
        bench_pin.off = "one CPU";
    }
}

/* Thread i of `threads` on its own CPU, if there are enough. */
BENCH_FN void bench_pin_attr(pthread_attr_t *attr, int i, int threads)
{
    cpu_set_t set;

    if (threads < 2 || bench_pin.n < threads)
        return;
    CPU_ZERO(&set);
    CPU_SET(bench_pin.cpu[i], &set);
    if (pthread_attr_setaffinity_np(attr, sizeof(set), &set) != 0) {
        fprintf(stderr, "bench: cannot pin a thread to CPU %d\n", bench_pin.cpu[i]);
        exit(1);
    }
}

/* The line under the header that says whether, and where, the threads
 * `of_what` are pinned. */
BENCH_FN void bench_pin_print(const char *of_what)
{
    if (bench_pin.n)
        printf("   Threads pinned: the i-th %s to CPU %d, %d, ... (BENCH_PIN=0: not).\n", of_what,
               bench_pin.cpu[0], bench_pin.cpu[1]);
    else
        printf("   Threads not pinned (%s).\n", bench_pin.off);
}

/* Under a sanitizer the raw baseline is the sanitizer's allocator (its
 * quarantine held 8 MiB where the library's slabs held 216 KiB), and every
 * figure is the instrumented code's: said under the header, and in the
 * JSON, so that no such run is read as the backend's. */
BENCH_FN void bench_sanitized_note(void)
{
#ifdef SANITIZED
    printf("   Sanitizer build: the raw baseline is the sanitizer's allocator, not %s's,\n"
           "   and the code is instrumented: a smoke test, no figure of the backend's.\n",
           BENCH_BACKEND);
#endif
}

/* Prints the same header line on the table. */
BENCH_FN void bench_print_header(const char *what)
{
    char la[128], cpu[128];

    bench_loadavg(la, sizeof(la));
    bench_cpu_model(cpu, sizeof(cpu));
    printf("== %s  (backend %s; %ld cpus, %s; load %s)\n", what, BENCH_BACKEND,
           bench_ncpu(), cpu, la);
}

#endif /* BENCH_H */
