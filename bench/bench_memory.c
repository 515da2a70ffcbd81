/* SPDX-License-Identifier: MIT */
/*
 * bench_memory - what libreclaim costs in memory: bytes of overhead per live
 * allocation and per thread, beside the raw backend.
 *
 * Each figure is measured in a fresh child process (fork before the library
 * or the heap is touched), so that neither variant reuses memory the other
 * freed:
 *   per allocation  N live blocks of one size, from the backend raw and from
 *                   rcl_alloc; the growth of the resident set (RSS, from
 *                   /proc/self/statm) and, for glibc, of mallinfo2's
 *                   in-use bytes, divided by N, the array that holds the
 *                   blocks written before the start. Overhead = rcl - raw.
 *   per thread      T threads, each alive with one 64-byte block, from
 *                   malloc and from rcl_alloc; overhead = (rcl - raw) / T.
 *                   Also the library's static TLS (the PT_TLS segment of
 *                   libreclaim.so, which every thread gets whether it uses
 *                   the library or not) and the budget a thread holds
 *                   pre-charged in its stock (rcl_stats usage minus
 *                   rcl_usage, which excludes stocks, where they differ).
 */
#include "bench.h"
#include "reclaim.h"

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <sys/wait.h>

#define NBLOCKS  100000
#define NTHREADS 64
#define NREPS_MAX 16

/* Powers of two, and sizes between classes: blocks up to 64 KiB are asked of
 * the backend rounded up to their class (100 -> 112, 1100 -> 1152,
 * 5000 -> 5120), and that rounding is part of the overhead. */
static const size_t sizes[] = { 16, 64, 100, 256, 1024, 1100, 4096, 5000 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

struct mem {
    double rss, heap;      /* bytes */
    double stock;          /* per-thread figure only */
};

static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;

    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static double heap_bytes(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    return (double)mallinfo2().uordblks;
#else
    return 0;
#endif
}

/* mallinfo2 sees glibc's heap alone: blocks the library keeps in regions
 * it maps itself (over glibc, up to 256 B), and every block of a mimalloc
 * or jemalloc build, leave it as it was. A block in the heap takes at
 * least its size, so a figure below that says the blocks are elsewhere,
 * and it is no figure of theirs (NaN: "-" in the table, null in the JSON);
 * an overhead taken from it read as bytes saved (-32 B at 16 B). */
static double heap_seen(double per_block, size_t size)
{
    return per_block >= (double)size ? per_block : NAN;
}

static void print_heap(double v)
{
    if (isnan(v))
        printf(" %12s", "-");
    else
        printf(" %12.1f", v);
}

/* Measurements whose child failed: their figures are NaN, never a 0 that
 * would read as a block costing nothing, and the run fails at its end. */
static int failed;

/* Runs fn in a child and returns what it wrote, or NaN figures when the
 * child did not end well (it has said why). */
static struct mem in_child(struct mem (*fn)(int rcl, size_t arg), int rcl, size_t arg)
{
    struct mem m = { NAN, NAN, NAN }, got;
    int fd[2], status = 0;
    pid_t pid;

    if (pipe(fd) != 0) {
        perror("pipe");
        exit(1);
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        close(fd[0]);
        got = fn(rcl, arg);
        if (write(fd[1], &got, sizeof(got)) != (ssize_t)sizeof(got))
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    ssize_t n = read(fd[0], &got, sizeof(got));
    close(fd[0]);
    if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status) &&
        n == (ssize_t)sizeof(got)) {
        m = got;
    } else {
        fprintf(stderr, "bench_memory: the %s child for %zu failed\n", rcl ? "rcl" : "raw", arg);
        failed++;
    }
    return m;
}

/* The repeats' statistics, or NaN throughout when one of them failed. */
static struct bench_stat stat_of(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        if (isnan(v[i]))
            return (struct bench_stat){ NAN, NAN, NAN };
    return bench_stat_of(v, n);
}

/* A per-thread figure in bytes, into buf. */
static const char *bytes_text(char *buf, size_t len, double v)
{
    if (isnan(v))
        return "failed";
    snprintf(buf, len, "%.0f B", v);
    return buf;
}

static void print_rss(double v)
{
    if (isnan(v))
        printf(" %12s", "failed");
    else
        printf(" %12.1f", v);
}

static void start_library(void)
{
    struct rcl_config cfg;

    rcl_config_default(&cfg);
    cfg.pressure = 0;
    cfg.background = 0;
    if (rcl_init(&cfg) != 0) {
        fprintf(stderr, "bench_memory: rcl_init failed\n");
        _exit(1);
    }
}

/* ------------------------------------------------------------------------ */
/* Per allocation                                                            */
/* ------------------------------------------------------------------------ */

static struct mem blocks_child(int rcl, size_t size)
{
    static void *blk[NBLOCKS];
    struct mem m = { 0, 0, 0 };
    double r0, h0;

    if (rcl) {
        start_library();
        rcl_free(rcl_alloc(size, RCL_DEFAULT));    /* thread registered */
    } else {
        free(malloc(size));
    }
    /* The array is the harness's, 8 bytes a block for both variants, and
     * only written pages are resident: written now, it is in the start,
     * and a block's figure is the block's alone. */
    memset(blk, 0, sizeof(blk));
    bench_escape(blk);
    r0 = rss_bytes();
    h0 = heap_bytes();
    for (int i = 0; i < NBLOCKS; i++) {
        blk[i] = rcl ? rcl_alloc(size, RCL_DEFAULT) : malloc(size);
        if (!blk[i]) {
            fprintf(stderr, "bench_memory: %s block %d of %d, %zu bytes: %s\n",
                    rcl ? "rcl_alloc" : "malloc", i + 1, NBLOCKS, size, strerror(errno));
            _exit(1);
        }
        memset(blk[i], 1, size);
    }
    m.rss = (rss_bytes() - r0) / NBLOCKS;
    m.heap = (heap_bytes() - h0) / NBLOCKS;
    bench_escape(blk);
    return m;
}

/* ------------------------------------------------------------------------ */
/* Per thread                                                                */
/* ------------------------------------------------------------------------ */

static pthread_barrier_t hold, done;
static int thread_rcl;

static void *thread_main(void *arg)
{
    void *p = thread_rcl ? rcl_alloc(64, RCL_DEFAULT) : malloc(64);

    (void)arg;
    bench_escape(p);
    pthread_barrier_wait(&hold);     /* alive while the parent measures */
    pthread_barrier_wait(&done);
    if (thread_rcl)
        rcl_free(p);
    else
        free(p);
    return NULL;
}

static struct mem threads_child(int rcl, size_t nthreads)
{
    static pthread_t tid[NTHREADS];
    struct mem m = { 0, 0, 0 };
    double r0, h0;

    thread_rcl = rcl;
    if (rcl) {
        start_library();
        rcl_free(rcl_alloc(64, RCL_DEFAULT));
    }
    pthread_barrier_init(&hold, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&done, NULL, (unsigned)nthreads + 1);
    r0 = rss_bytes();
    h0 = heap_bytes();
    for (size_t i = 0; i < nthreads; i++)
        if (pthread_create(&tid[i], NULL, thread_main, NULL) != 0) {
            fprintf(stderr, "bench_memory: thread %zu of %zu could not start\n", i + 1, nthreads);
            _exit(1);
        }
    pthread_barrier_wait(&hold);
    m.rss = (rss_bytes() - r0) / (double)nthreads;
    m.heap = (heap_bytes() - h0) / (double)nthreads;
    if (rcl) {
        struct rcl_stats st;
        size_t exact = rcl_usage();

        rcl_stats_get(&st);
        m.stock = st.usage > exact ? (double)(st.usage - exact) / (double)nthreads : 0;
    }
    pthread_barrier_wait(&done);
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(tid[i], NULL);
    return m;
}

/* The size of libreclaim.so's thread-local segment. */
static int tls_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libreclaim"))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS)
            *(size_t *)arg = info->dlpi_phdr[i].p_memsz;
    return 1;
}

int main(int argc, char **argv)
{
    bench_args(argc, argv, "bench_memory", "What libreclaim costs in memory: overhead per live allocation and per thread, beside the raw backend.");
    int reps = bench_reps(1, 3, NREPS_MAX);
    double v[2][NREPS_MAX], h[2][NREPS_MAX];
    size_t tls = 0;
    struct bench_stat s_raw, s_rcl, hs_raw, hs_rcl;

    dl_iterate_phdr(tls_cb, &tls);
    bench_print_header("memory: overhead per live allocation and per thread");
    bench_sanitized_note();
    printf("   %d live blocks per size; RSS growth per block (heap = glibc mallinfo2 in-use,\n"
           "   - where the blocks are not in glibc's heap%s); %d runs, median\n\n", NBLOCKS,
           strcmp(BENCH_BACKEND, "libc") ? ": none here, " BENCH_BACKEND " replaces glibc's malloc"
                                         : ": the library's own regions",
           reps);
    printf("%7s %12s %12s %12s %12s %12s %12s\n", "size", "raw RSS", "rcl RSS", "overhead",
           "raw heap", "rcl heap", "overhead");

    bench_json_begin("memory");
    bj_num("blocks", NBLOCKS);
    bj_num("reps", reps);
    bj_arr("per_allocation");
    for (size_t s = 0; s < NSIZES; s++) {
        for (int r = 0; r < reps; r++) {
            struct mem a = in_child(blocks_child, 0, sizes[s]);
            struct mem b = in_child(blocks_child, 1, sizes[s]);
            v[0][r] = a.rss;
            v[1][r] = b.rss;
            h[0][r] = a.heap;
            h[1][r] = b.heap;
        }
        s_raw = stat_of(v[0], reps);
        s_rcl = stat_of(v[1], reps);
        hs_raw = stat_of(h[0], reps);
        hs_rcl = stat_of(h[1], reps);
        printf("%7zu", sizes[s]);
        print_rss(s_raw.med);
        print_rss(s_rcl.med);
        print_heap(s_rcl.med - s_raw.med);
        hs_raw.med = heap_seen(hs_raw.med, sizes[s]);
        hs_rcl.med = heap_seen(hs_rcl.med, sizes[s]);
        if (isnan(s_raw.med))
            printf(" %12s", "failed");
        else
            print_heap(hs_raw.med);
        if (isnan(s_rcl.med))
            printf(" %12s", "failed");
        else
            print_heap(hs_rcl.med);
        print_heap(hs_rcl.med - hs_raw.med);
        printf("\n");
        bj_obj(NULL);
        bj_num("size", (double)sizes[s]);
        bj_stat("raw_rss_per_block", s_raw);
        bj_stat("rcl_rss_per_block", s_rcl);
        bj_num("overhead_rss", s_rcl.med - s_raw.med);
        bj_num("raw_heap_per_block", hs_raw.med);
        bj_num("rcl_heap_per_block", hs_rcl.med);
        bj_num("overhead_heap", hs_rcl.med - hs_raw.med);
        bj_end_obj();
    }
    bj_end_arr();

    {
        double st[NREPS_MAX];
        for (int r = 0; r < reps; r++) {
            struct mem a = in_child(threads_child, 0, NTHREADS);
            struct mem b = in_child(threads_child, 1, NTHREADS);
            v[0][r] = a.rss;
            v[1][r] = b.rss;
            h[0][r] = a.heap;
            h[1][r] = b.heap;
            st[r] = b.stock;
        }
        s_raw = stat_of(v[0], reps);
        s_rcl = stat_of(v[1], reps);
        hs_raw = stat_of(h[0], reps);
        hs_rcl = stat_of(h[1], reps);
        printf("\nper thread (%d threads, one 64 B block each):\n", NTHREADS);
        char b[3][32];
        printf("   RSS  raw %s, rcl %s, overhead %s\n", bytes_text(b[0], 32, s_raw.med),
               bytes_text(b[1], 32, s_rcl.med), bytes_text(b[2], 32, s_rcl.med - s_raw.med));
        printf("   heap raw %s, rcl %s, overhead %s\n", bytes_text(b[0], 32, hs_raw.med),
               bytes_text(b[1], 32, hs_rcl.med), bytes_text(b[2], 32, hs_rcl.med - hs_raw.med));
        printf("   libreclaim static TLS: %zu B per thread (every thread)\n", tls);
        printf("   budget pre-charged in the stock: %s per thread\n",
               bytes_text(b[0], 32, stat_of(st, reps).med));
        bj_obj("per_thread");
        bj_num("threads", NTHREADS);
        bj_stat("raw_rss", s_raw);
        bj_stat("rcl_rss", s_rcl);
        bj_num("overhead_rss", s_rcl.med - s_raw.med);
        bj_num("raw_heap", hs_raw.med);
        bj_num("rcl_heap", hs_rcl.med);
        bj_num("overhead_heap", hs_rcl.med - hs_raw.med);
        bj_num("static_tls", (double)tls);
        bj_num("stock_budget", stat_of(st, reps).med);
        bj_end_obj();
    }
    bench_json_end();
    if (failed) {
        fprintf(stderr, "bench_memory: %d measurement%s failed (above); their figures read "
                "\"failed\"\n", failed, failed == 1 ? "" : "s");
        return 1;
    }
    return 0;
}
