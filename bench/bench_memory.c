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

/* A figure as every benchmark prints one, median [min..max] over the
 * repeats, or why there is none: its child failed, or (heap figures) the
 * blocks were not where mallinfo2 looks. */
static const char *stat_text(char *buf, size_t len, struct bench_stat s, const char *none)
{
    if (isnan(s.med))
        return none;
    snprintf(buf, len, "%.1f [%.1f..%.1f]", s.med, s.min, s.max);
    return buf;
}

static void print_stat(struct bench_stat s, const char *none)
{
    char buf[64];

    printf(" %26s", stat_text(buf, sizeof(buf), s, none));
}

static void print_ratio(struct bench_stat s, const char *none)
{
    char buf[48];

    if (isnan(s.med))
        snprintf(buf, sizeof(buf), "%s", none);
    else
        snprintf(buf, sizeof(buf), "%.2f [%.2f..%.2f]", s.med, s.min, s.max);
    printf(" %18s", buf);
}

static void print_overhead(double v)
{
    if (isnan(v))
        printf(" %9s", "-");
    else
        printf(" %9.1f", v);
}

/*
 * One figure of the two variants: each's repeats, their ratio taken round
 * by round (as bench_alloc and bench_patterns take theirs: the rounds of a
 * pair ran one after the other, under the same load), and the overhead,
 * the difference of the medians. NaN where a round had no figure.
 */
struct pair {
    struct bench_stat raw, rcl, ratio;
    double overhead;
};

static struct pair pair_of(const double *raw, const double *rcl, int n)
{
    double ratio[NREPS_MAX];
    struct pair p;

    for (int i = 0; i < n; i++)
        ratio[i] = raw[i] > 0 ? rcl[i] / raw[i] : NAN;
    p.raw = stat_of(raw, n);
    p.rcl = stat_of(rcl, n);
    p.ratio = stat_of(ratio, n);
    p.overhead = p.rcl.med - p.raw.med;
    return p;
}

/* A row's figures, the variants' failures told from the heap's blind spot:
 * a figure whose child failed reads "failed", never "-". */
static void print_pair(const struct pair *p, int raw_failed, int rcl_failed)
{
    print_stat(p->raw, raw_failed ? "failed" : "-");
    print_stat(p->rcl, rcl_failed ? "failed" : "-");
    print_ratio(p->ratio, raw_failed || rcl_failed ? "failed" : "-");
    print_overhead(p->overhead);
}

static void json_pair(const char *raw, const char *rcl, const char *ratio, const char *overhead,
                      const struct pair *p)
{
    bj_stat(raw, p->raw);
    bj_stat(rcl, p->rcl);
    bj_stat(ratio, p->ratio);
    bj_num(overhead, p->overhead);
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

/* The per-allocation figures of one block size, a row of each table. */
struct size_row {
    struct pair rss, heap;
};

static struct size_row measure_size(size_t size, int reps)
{
    double v[2][NREPS_MAX], h[2][NREPS_MAX];
    struct size_row row;

    for (int r = 0; r < reps; r++) {
        struct mem a = in_child(blocks_child, 0, size);
        struct mem b = in_child(blocks_child, 1, size);
        v[0][r] = a.rss;
        v[1][r] = b.rss;
        h[0][r] = heap_seen(a.heap, size);
        h[1][r] = heap_seen(b.heap, size);
    }
    row.rss = pair_of(v[0], v[1], reps);
    row.heap = pair_of(h[0], h[1], reps);
    return row;
}

static void print_table_head(const char *what)
{
    printf("\n-- %s, bytes a block, median [min..max] --\n", what);
    printf("%7s %26s %26s %18s %9s\n", "size", "raw", "rcl", "rcl/raw", "overhead");
}

int main(int argc, char **argv)
{
    bench_args(argc, argv, "bench_memory", "What libreclaim costs in memory: overhead per live allocation and per thread, beside the raw backend.");
    int reps = bench_reps(1, 3, NREPS_MAX);
    struct size_row rows[NSIZES];
    size_t tls = 0;

    dl_iterate_phdr(tls_cb, &tls);
    bench_print_header("memory: overhead per live allocation and per thread");
    bench_sanitized_note();
    printf("   %d live blocks per size, %d runs; RSS growth per block, and heap in use per\n"
           "   block (glibc mallinfo2; - where the blocks are not in glibc's heap%s);\n"
           "   rcl/raw taken run by run, overhead = rcl - raw of the medians\n", NBLOCKS, reps,
           strcmp(BENCH_BACKEND, "libc") ? ": none here, " BENCH_BACKEND " replaces glibc's malloc"
                                         : ": the library's own regions");

    bench_json_begin("memory");
    bj_num("blocks", NBLOCKS);
    bj_num("reps", reps);
    for (size_t s = 0; s < NSIZES; s++)
        rows[s] = measure_size(sizes[s], reps);
    print_table_head("resident set growth");
    for (size_t s = 0; s < NSIZES; s++) {
        printf("%7zu", sizes[s]);
        print_pair(&rows[s].rss, isnan(rows[s].rss.raw.med), isnan(rows[s].rss.rcl.med));
        printf("\n");
    }
    print_table_head("heap in use (glibc mallinfo2)");
    for (size_t s = 0; s < NSIZES; s++) {
        printf("%7zu", sizes[s]);
        print_pair(&rows[s].heap, isnan(rows[s].rss.raw.med), isnan(rows[s].rss.rcl.med));
        printf("\n");
    }

    bj_arr("per_allocation");
    for (size_t s = 0; s < NSIZES; s++) {
        bj_obj(NULL);
        bj_num("size", (double)sizes[s]);
        json_pair("raw_rss_per_block", "rcl_rss_per_block", "ratio_rss", "overhead_rss",
                  &rows[s].rss);
        json_pair("raw_heap_per_block", "rcl_heap_per_block", "ratio_heap", "overhead_heap",
                  &rows[s].heap);
        bj_end_obj();
    }
    bj_end_arr();

    {
        double v[2][NREPS_MAX], h[2][NREPS_MAX], st[NREPS_MAX];
        struct pair rss, heap;
        struct bench_stat stock;
        char buf[64];

        for (int r = 0; r < reps; r++) {
            struct mem a = in_child(threads_child, 0, NTHREADS);
            struct mem b = in_child(threads_child, 1, NTHREADS);
            v[0][r] = a.rss;
            v[1][r] = b.rss;
            h[0][r] = a.heap;
            h[1][r] = b.heap;
            st[r] = b.stock;
        }
        rss = pair_of(v[0], v[1], reps);
        heap = pair_of(h[0], h[1], reps);
        stock = stat_of(st, reps);
        printf("\n-- per thread (%d threads, one 64 B block each), bytes a thread --\n", NTHREADS);
        printf("%7s %26s %26s %18s %9s\n", "", "raw", "rcl", "rcl/raw", "overhead");
        printf("%7s", "RSS");
        print_pair(&rss, isnan(rss.raw.med), isnan(rss.rcl.med));
        printf("\n%7s", "heap");
        print_pair(&heap, isnan(rss.raw.med), isnan(rss.rcl.med));
        printf("\n   libreclaim static TLS: %zu B per thread (every thread)\n", tls);
        printf("   budget pre-charged in the stock: %s B per thread\n",
               stat_text(buf, sizeof(buf), stock, "failed"));
        bj_obj("per_thread");
        bj_num("threads", NTHREADS);
        json_pair("raw_rss", "rcl_rss", "ratio_rss", "overhead_rss", &rss);
        json_pair("raw_heap", "rcl_heap", "ratio_heap", "overhead_heap", &heap);
        bj_num("static_tls", (double)tls);
        bj_stat("stock_budget", stock);
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
