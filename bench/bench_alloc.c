/* SPDX-License-Identifier: MIT */
/*
 * bench_alloc - the hot path: alloc/free pairs, libreclaim beside the raw
 * allocators, in one process.
 *
 * For each thread count and each size (16 B .. 64 KiB) every allocator runs
 * the same loop (allocate, write one byte, free) for the same number of
 * pairs; a round measures each of them once, in an order that rotates from
 * round to round so that none always runs first on a warm or a cold cache.
 * The figure is the wall time of the slowest thread divided by the pairs a
 * thread did: nanoseconds per pair while all threads run at once. The
 * threads are pinned, the i-th to the i-th CPU the process may run on,
 * where it may run on as many (bench.h, bench_pin_init(); BENCH_PIN=0
 * leaves them to the scheduler): two threads that took turns on one CPU
 * took twice the wall time, in some rounds of one allocator and not of
 * another.
 *
 *   rcl        rcl_alloc(n, RCL_DEFAULT) / rcl_free in the shared library,
 *              over the build's backend;
 *   libc       glibc's malloc/free, looked up in libc.so.6 itself: glibc
 *              even in a mimalloc or jemalloc build, where the backend
 *              library (linked in, as libreclaim needs it) replaces malloc
 *              and free, and even glibc's __libc_malloc;
 *   mimalloc   mi_malloc/mi_free, jemalloc and tcmalloc malloc/free, each
 *              dlopen()ed (RTLD_LOCAL) and looked up in that library;
 *   rcl-plt    rcl's calls made through the PLT, as a program linked
 *              against the library makes them.
 * Each but rcl-plt is called through a pointer looked up with dlsym(), rcl
 * too (bench_rcl_calls(), bench.h says why): rcl-plt beside rcl is what
 * the PLT adds. Missing libraries are skipped and said so.
 *
 * The baseline of `rcl` is the build's backend raw (libc, or mimalloc /
 * jemalloc for BACKEND=mimalloc|jemalloc); its ratio is computed per round
 * (rcl / baseline of the same round) and reported as median [min..max],
 * beside the ratio of the two minimums (the least disturbed rounds: on a
 * shared machine, load only ever adds time).
 * The goal is a ratio <= 1.10 at every size on 1 and 16 threads.
 */
#include "bench.h"
#include "reclaim.h"

#include <dlfcn.h>
#include <pthread.h>

#define MAX_REPS    64
#define MAX_THREADS 256

static const size_t sizes[] = { 16, 64, 256, 1024, 4096, 16384, 65536 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

enum { A_RCL, A_RCL_PLT, A_LIBC, A_MIMALLOC, A_JEMALLOC, A_TCMALLOC, NALLOC };

struct allocator {
    const char *name;
    const char *lib;        /* dlopen()ed library, NULL for rcl and libc */
    const char *sym_alloc, *sym_free;
    void *(*alloc)(size_t);
    void (*free)(void *);
    int ok;
    char why[160];          /* why it is missing */
};

static struct allocator allocs[NALLOC] = {
    [A_RCL]      = { "rcl", NULL, NULL, NULL, NULL, NULL, 1, "" },
    [A_RCL_PLT]  = { "rcl-plt", NULL, NULL, NULL, NULL, NULL, 1, "" },
    [A_LIBC]     = { "libc", "libc.so.6", "malloc", "free", malloc, free, 1, "" },
    [A_MIMALLOC] = { "mimalloc", "libmimalloc.so.2", "mi_malloc", "mi_free", NULL, NULL, 0, "" },
    [A_JEMALLOC] = { "jemalloc", "libjemalloc.so.2", "malloc", "free", NULL, NULL, 0, "" },
    [A_TCMALLOC] = { "tcmalloc", "libtcmalloc_minimal.so.4", "tc_malloc", "tc_free", NULL, NULL, 0, "" },
};

#if defined(RCL_BACKEND_MIMALLOC)
#define BASELINE A_MIMALLOC
#elif defined(RCL_BACKEND_JEMALLOC)
#define BASELINE A_JEMALLOC
#else
#define BASELINE A_LIBC
#endif

static void load_allocators(void)
{
    for (int i = 0; i < NALLOC; i++) {
        struct allocator *a = &allocs[i];
        void *h;

        if (!a->lib)
            continue;
#ifdef SANITIZED
        /* A sanitizer's own malloc would be timed against allocators it
         * does not instrument, and they leak on purpose. */
        snprintf(a->why, sizeof(a->why), "skipped in a sanitizer build");
        if (i != BASELINE || i == A_LIBC)   /* libc: the sanitizer's malloc */
            continue;
#endif
        h = dlopen(a->lib, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(a->why, sizeof(a->why), "%s", dlerror());
            continue;
        }
        /* dlsym on the handle searches that library first, so "malloc"
         * here is jemalloc's (or glibc's) whatever the process's is. */
        *(void **)&a->alloc = dlsym(h, a->sym_alloc);
        *(void **)&a->free = dlsym(h, a->sym_free);
        if (!a->alloc || !a->free) {
            snprintf(a->why, sizeof(a->why), "%s lacks %s/%s", a->lib, a->sym_alloc, a->sym_free);
            continue;
        }
        a->ok = 1;
    }
}

/* ------------------------------------------------------------------------ */
/* The loops                                                                 */
/* ------------------------------------------------------------------------ */

static struct bench_rcl_calls lib;

/* One loop per way of calling, so that no loop chooses inside: `alloc`
 * is an expression of n, `release` a function. */
#define PAIR_LOOP(alloc, release)                  \
    for (long i = 0; i < iters; i++) {             \
        char *p = alloc;                           \
        if (!p)                                    \
            abort();                               \
        *(volatile char *)p = 1;                   \
        bench_escape(p);                           \
        release(p);                                \
    }

static __attribute__((noinline)) void loop_rcl(size_t n, long iters)
{
    void *(*al)(size_t, rcl_gfp_t) = lib.alloc;
    void (*fr)(void *) = lib.free;

    PAIR_LOOP(al(n, RCL_DEFAULT), fr)
}

static __attribute__((noinline)) void loop_ptr(const struct allocator *a, size_t n, long iters)
{
    void *(*al)(size_t) = a->alloc;
    void (*fr)(void *) = a->free;

    PAIR_LOOP(al(n), fr)
}

static __attribute__((noinline)) void loop_rcl_plt(size_t n, long iters)
{
    PAIR_LOOP(rcl_alloc(n, RCL_DEFAULT), rcl_free)
}

static void run_loop(int which, size_t n, long iters)
{
    if (which == A_RCL)
        loop_rcl(n, iters);
    else if (which == A_RCL_PLT)
        loop_rcl_plt(n, iters);
    else
        loop_ptr(&allocs[which], n, iters);
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

struct job {
    int which;
    size_t size;
    long iters;
    pthread_barrier_t start;
    uint64_t t0[MAX_THREADS], t1[MAX_THREADS];
};

struct worker {
    struct job *job;
    int idx;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct job *j = w->job;

    /* Warm up outside the timing: the first calls register the thread
     * with libreclaim and give it an arena in the other allocators. */
    run_loop(j->which, j->size, 256);
    pthread_barrier_wait(&j->start);
    j->t0[w->idx] = bench_now_ns();
    run_loop(j->which, j->size, j->iters);
    j->t1[w->idx] = bench_now_ns();
    return NULL;
}

/* Nanoseconds per pair: wall time from the first start to the last end,
 * over the pairs one thread did. */
static double measure(int which, size_t size, long iters, int nthreads)
{
    static struct job j;
    struct worker w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    uint64_t lo = UINT64_MAX, hi = 0;

    if (nthreads == 1) {
        uint64_t t0;
        run_loop(which, size, 256);
        t0 = bench_now_ns();
        run_loop(which, size, iters);
        return (double)(bench_now_ns() - t0) / (double)iters;
    }
    j.which = which;
    j.size = size;
    j.iters = iters;
    pthread_barrier_init(&j.start, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
        pthread_attr_t attr;

        w[i].job = &j;
        w[i].idx = i;
        pthread_attr_init(&attr);
        bench_pin_attr(&attr, i, nthreads);
        if (pthread_create(&tid[i], &attr, worker_main, &w[i]) != 0) {
            perror("pthread_create");
            exit(1);
        }
        pthread_attr_destroy(&attr);
    }
    for (int i = 0; i < nthreads; i++)
        pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&j.start);
    for (int i = 0; i < nthreads; i++) {
        lo = j.t0[i] < lo ? j.t0[i] : lo;
        hi = j.t1[i] > hi ? j.t1[i] : hi;
    }
    return (double)(hi - lo) / (double)iters;
}

/* Pairs for about target_ms of one thread's time on the baseline. */
/* The baseline, one thread: what calibrates the pairs of a size. */
static double baseline_ns(long iters, void *size)
{
    return measure(BASELINE, *(size_t *)size, iters, 1);
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

/* jemalloc (and tcmalloc) use initial-exec TLS, which a dlopen()ed
 * library can only get from the surplus glibc reserves at start-up (512
 * bytes by default, too few for jemalloc). Run again with a larger surplus;
 * it changes nothing else. */
static void reexec_with_tls_surplus(char **argv)
{
    char buf[512];
    const char *old = getenv("GLIBC_TUNABLES");

    if (getenv("BENCH_ALLOC_REEXEC"))
        return;
    snprintf(buf, sizeof(buf), "%s%sglibc.rtld.optional_static_tls=65536",
             old ? old : "", old ? ":" : "");
    setenv("GLIBC_TUNABLES", buf, 1);
    setenv("BENCH_ALLOC_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* No re-exec: jemalloc is then reported as not measured. */
}

int main(int argc, char **argv)
{
    int quick = bench_quick();
    int reps = bench_reps(3, 11, MAX_REPS);
    double target_ms = quick ? 2.0 : 8.0;
    int threads[16], nthr;
    char dflt_threads[64];
    struct rcl_config cfg;
    int ret;

    bench_args(argc, argv, "bench_alloc", "The hot path: rcl_alloc/rcl_free pairs beside the raw allocator, by size and thread count.");
    reexec_with_tls_surplus(argv);
    /* 1 and 2 threads everywhere; with 16 cores or more also 4..16, the
     * same binary giving the 16-thread figure. */
    snprintf(dflt_threads, sizeof(dflt_threads), "%s",
             bench_ncpu() >= 16 ? "1,2,4,8,16" : "1,2");
    nthr = bench_threads(dflt_threads, threads, 16);
    for (int i = 0; i < nthr; i++)
        if (threads[i] > MAX_THREADS)
            threads[i] = MAX_THREADS;

    /* The defaults a user gets, except the pressure follower: the hot path
     * is what is measured, and no memory pressure is wanted here. */
    rcl_config_default(&cfg);
    cfg.pressure = 0;
    ret = rcl_init(&cfg);
    if (ret) {
        fprintf(stderr, "bench_alloc: rcl_init: %s\n", strerror(-ret));
        return 1;
    }
    load_allocators();
    lib = bench_rcl_calls();
    bench_pin_init();

    bench_print_header("hot path: alloc+free pairs, ns per pair, median [min..max]");
    printf("   rcl = rcl_alloc/rcl_free over %s; baseline = %s raw; %d rounds\n",
           BENCH_BACKEND, allocs[BASELINE].name, reps);
    bench_pin_print("of a measurement");
    bench_sanitized_note();
    for (int i = 0; i < NALLOC; i++)
        if (!allocs[i].ok)
            printf("   %s: not measured (%s)\n", allocs[i].name, allocs[i].why);

    bench_json_begin("alloc");
    bj_str("baseline", allocs[BASELINE].name);
    bj_num("reps", reps);
    bj_num("pinned_cpus", bench_pin.n);
    bj_num("goal_ratio", 1.10);
    bj_obj("allocators");
    for (int i = 0; i < NALLOC; i++)
        bj_str(allocs[i].name, allocs[i].ok ? (allocs[i].lib ? allocs[i].lib : "linked")
                                           : allocs[i].why);
    bj_end_obj();
    bj_arr("results");

    for (int t = 0; t < nthr; t++) {
        int nt = threads[t];

        printf("\n-- %d thread%s --\n", nt, nt > 1 ? "s" : "");
        printf("%7s %22s %22s %20s %8s", "size", "rcl", allocs[BASELINE].name, "rcl/baseline",
               "min/min");
        for (int i = 1; i < NALLOC; i++)
            if (i != BASELINE && allocs[i].ok)
                printf(" %10s", allocs[i].name);
        printf("\n");
        for (size_t s = 0; s < NSIZES; s++) {
            double v[NALLOC][MAX_REPS], ratio[MAX_REPS];
            struct bench_stat st[NALLOC], rs;
            long iters = bench_calibrate(baseline_ns, (void *)&sizes[s], target_ms);

            for (int r = 0; r < reps; r++) {
                for (int k = 0; k < NALLOC; k++) {
                    int i = (k + r) % NALLOC;
                    if (allocs[i].ok)
                        v[i][r] = measure(i, sizes[s], iters, nt);
                }
                ratio[r] = v[A_RCL][r] / v[BASELINE][r];
            }
            for (int i = 0; i < NALLOC; i++)
                if (allocs[i].ok)
                    st[i] = bench_stat_of(v[i], reps);
            rs = bench_stat_of(ratio, reps);

            printf("%7zu %6.1f [%5.1f..%5.1f] %6.1f [%5.1f..%5.1f] %4.2f [%4.2f..%4.2f]%s",
                   sizes[s], st[A_RCL].med, st[A_RCL].min, st[A_RCL].max,
                   st[BASELINE].med, st[BASELINE].min, st[BASELINE].max,
                   rs.med, rs.min, rs.max, rs.med <= 1.10 ? " " : "*");
            printf(" %8.2f", st[A_RCL].min / st[BASELINE].min);
            for (int i = 1; i < NALLOC; i++)
                if (i != BASELINE && allocs[i].ok)
                    printf(" %10.1f", st[i].med);
            printf("\n");

            bj_obj(NULL);
            bj_num("threads", nt);
            bj_num("size", (double)sizes[s]);
            bj_num("iters_per_thread", (double)iters);
            bj_obj("ns_per_pair");
            for (int i = 0; i < NALLOC; i++)
                if (allocs[i].ok)
                    bj_stat(allocs[i].name, st[i]);
            bj_end_obj();
            bj_obj("mpairs_per_s");
            for (int i = 0; i < NALLOC; i++)
                if (allocs[i].ok)
                    bj_num(allocs[i].name, 1e3 * nt / st[i].med);
            bj_end_obj();
            bj_stat("ratio_rcl_baseline", rs);
            bj_num("ratio_of_minimums", st[A_RCL].min / st[BASELINE].min);
            bj_obj("ratio_rcl_vs");
            for (int i = 1; i < NALLOC; i++)
                if (allocs[i].ok)
                    bj_num(allocs[i].name, st[A_RCL].med / st[i].med);
            bj_end_obj();
            bj_bool("goal_met", rs.med <= 1.10);
            bj_end_obj();
            fflush(stdout);
        }
    }
    bj_end_arr();
    printf("\n   * = median ratio above the 1.10 goal. min/min = the fastest rcl round over the fastest\n"
           "   baseline round: on a loaded machine the least disturbed figures. Other columns: raw\n"
           "   allocators, and rcl called through the PLT (rcl-plt), ns/pair median.\n");
    bench_json_end();
    rcl_shutdown();
    return 0;
}
