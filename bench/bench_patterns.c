/* SPDX-License-Identifier: MIT */
/*
 * bench_patterns - the hot path on allocation patterns where blocks stay
 * alive, rcl_alloc/rcl_free beside the build's backend raw, in one process.
 *
 * bench_alloc measures a block allocated and freed at once, which a small
 * per-thread cache serves whole. Real programs keep blocks alive; these
 * patterns do (a "pair" is one allocation and the free of that block):
 *
 *   live set   K = 1, 8, 64, 512, 4096 blocks allocated, then all freed,
 *              again and again; in FIFO (first allocated, first freed) or
 *              LIFO order; 16 B, 64 B, 256 B, 1 KiB, 4 KiB, or a mix of
 *              8 B - 4 KiB (log-uniform: each power of two as likely as the
 *              next, sizes uniform within it); 1 and 2 threads, each thread
 *              running its own independent loop.
 *   producer/  one thread allocates and passes each block through a bounded
 *   consumer   lock-free ring (256 slots) to another, which frees it; 64 B,
 *              1 KiB and the mix. The faster side spins while it waits, and
 *              that counts; a long wait (the other preempted) does not (see
 *              struct ring).
 *   larson     after the well-known server benchmark: each of 2 threads owns
 *              an array of 1024 blocks of 257 B - 1 KiB (uniform) and
 *              replaces a random one with a new block of a random size; every
 *              16384 replacements the threads pass their arrays on, so each
 *              frees blocks another thread allocated.
 *   simple     an equivalent of glibc's "simple" malloc benchmark: 25, 100,
 *              400 or 1600 blocks of 16, 32 or 64 B allocated, then freed in
 *              the same order, in the main thread (glibc's main arena).
 *
 * The sizes come from one table filled by a fixed-seed generator (and the
 * larson slots from fixed-seed generators), so both variants see the same
 * sequence. In the timed runs each block gets one byte written; in the
 * memory children every byte, as a program fills what it allocates (only
 * written pages are resident, so one byte would hide most of a large
 * block, and of its rounding).
 *
 * Threads on CPUs of their own: the threads of a pattern of more than one
 * are pinned, the i-th to the i-th CPU the process may run on, where it
 * may run on that many (BENCH_PIN=0 leaves them to the scheduler). Left
 * to it, the two threads of producer/consumer ran at times in turn on one
 * CPU, where no block crosses caches and a pair took a quarter of the
 * time it takes on two, and the raw rounds landed there several times as
 * often as the library's: a ratio then compared two placements, not two
 * allocators (docs/bench/patterns.md, "Figures, 2026-12-03, 11:00").
 *
 * CPU time, not wall time: every thread reads CLOCK_THREAD_CPUTIME_ID around
 * its measured loop, and a figure is the CPU time of all threads over all
 * pairs - what a loaded machine does not inflate by preempting. Rounds
 * interleave the variants (rcl first in even rounds, raw first in odd ones);
 * the ratio rcl/raw is taken per round and shown as median [min..max],
 * beside the ratio of the fastest rounds (min/min).
 *
 * Raw baseline, as in bench_alloc: glibc's malloc/free looked up in
 * libc.so.6 (libc build), mi_malloc/mi_free (mimalloc build), jemalloc's
 * malloc/free (jemalloc build), each called through a pointer, and
 * rcl_alloc/rcl_free through pointers looked up the same way
 * (bench_rcl_calls(), bench.h says why).
 *
 * Memory: before any of that, each pattern runs once per variant in its own
 * forked child (the parent has touched neither the library nor the heap), a
 * shorter run that still reaches the pattern's peak; nine times, the
 * highest taken, where two threads pass blocks to each other (measure_rss()
 * says why). The child trims the backend, reads its resident set, runs,
 * and reads it again at every point where the pattern holds the most (all
 * of a live set's threads have allocated their K blocks; the ring is
 * full; a larson hand-over): the growth is the highest of those over the
 * start (a run of one block per thread comes first, so that thread stacks
 * and arenas are not counted; bench_memory measures the per-thread cost,
 * and the harness's rows of pointers and ring are written before the start
 * is read, so that they are not counted either).
 * The ratio rcl/raw counts towards the goal where the raw growth is at
 * least 128 KiB; below that a page or two of arena bookkeeping decides
 * it, and it is shown in parentheses. Both children start the library, so
 * its fixed cost cancels.
 * At each higher reading the library's child also reads rcl_stats_get()'s
 * thread_cached and depot_held - of what it grew, how much was free blocks
 * it held for reuse then - and usage, the blocks it had handed out as
 * they are charged: their classes' largest sizes, their headers and the
 * backend's own overhead, which is where the headers and the class
 * rounding show (over glibc a slab's slot is also charged the 16 bytes
 * that the size word of the chunk it replaces takes, which it does not
 * hold). The summary lists the three for every pattern over the goal;
 * the rest of the excess is the slabs' free slots and what the backend
 * keeps.
 *
 * Goals: CPU time ratio <= 1.10 and peak RSS ratio <= 1.05 for every
 * pattern, on every backend (docs/bench/patterns.md).
 *
 * Knobs: BENCH_REPS (rounds, default 5), BENCH_QUICK=1 (fewer pairs and 3
 * rounds: a smoke test), BENCH_THREADS (live-set thread counts, default
 * 1,2), BENCH_PAIRS (at most this many pairs per thread per measurement,
 * default 1048576; each pattern is sized to about 10 ms of CPU per thread
 * in its slower variant), BENCH_PATTERNS=live,pc,larson,simple (families
 * to run), BENCH_SIZES and BENCH_DEPTHS (the live-set sizes, bytes or
 * "mix", and depths, at most 4096; default 16,64,256,1024,4096,mix and
 * 1,8,64,512,4096),
 * BENCH_PIN=0 (threads not pinned), BENCH_JSON.
 */
#include "bench.h"
#include "reclaim.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define MAX_REPS    64
#define MAX_THREADS 16
#define MAX_SLOTS   4096
#define SZ_TAB      8192            /* sizes table, a power of two */
#define RING_CAP    256             /* producer/consumer ring, a power of two */
#define LARSON_SLOTS 1024
#define LARSON_EPOCHS 16
#define RSS_GOAL_MIN_KIB 128.0
#define RSS_CHILDREN 9              /* per variant, where threads pass blocks on (measure_rss) */
#define GOAL_RATIO  1.10
#define GOAL_RSS    1.05

#define NOINLINE static __attribute__((noinline, aligned(64)))
#define ALWAYS   static inline __attribute__((always_inline))

/* A variant: the allocator, and whether each block is written whole (the
 * memory children: a program fills what it allocates, and only written
 * pages are resident) or only its first byte (the timed runs). */
enum { V_RCL, V_RAW, NVAR, V_TOUCH = 2 };
enum family { F_LIVE, F_PC, F_LARSON, F_SIMPLE, NFAM };
static const char *const fam_key[NFAM] = { "live", "pc", "larson", "simple" };
static const char *const fam_title[NFAM] = {
    "live set: K blocks allocated, then freed",
    "producer/consumer: one thread allocates, another frees",
    "larson-style: random replacement, arrays passed between threads",
    "glibc's simple malloc benchmark: N blocks of 16-64 B, main thread",
};

/* Size specifications: a fixed size, or one of these ranges. */
#define SIZE_MIX    0u      /* 8 B - 4 KiB, log-uniform */
#define SIZE_LARSON 1u      /* 257 B - 1 KiB, uniform */

/* What the library held at its child's peak, in KiB: the blocks it had
 * handed out, as they are charged (their growth from the start), and the
 * free blocks it kept for reuse. */
struct held {
    double in_use;          /* rcl_stats' usage: the classes' sizes, headers and
                               the backend's own overhead */
    double cached, depot;   /* the threads' caches, the depot */
};

struct pat {
    enum family fam;
    int threads;
    int depth;              /* K (live, simple); slots (larson); ring (pc) */
    int lifo;
    unsigned size;          /* bytes, or SIZE_MIX / SIZE_LARSON */
    char name[96];
    /* results */
    struct bench_stat ns[NVAR], ratio;
    double min_ratio;
    double rss_peak[NVAR], rss_growth[NVAR];   /* KiB */
    struct held held;                           /* rcl's, at its peak */
    double rss_children[NVAR][RSS_CHILDREN];    /* KiB: each child's growth */
    int rss_n;              /* children per variant; the figures are the highest's */
    long pairs;             /* per thread per measurement */
    double rss_ratio;       /* NaN when not measured */
    int rss_counts;         /* the RSS ratio counts towards the goal */
};

/* ------------------------------------------------------------------------ */
/* The raw baseline                                                          */
/* ------------------------------------------------------------------------ */

#if defined(RCL_BACKEND_MIMALLOC)
#define RAW_NAME "mimalloc"
#define RAW_LIB "libmimalloc.so.2"
#define RAW_ALLOC "mi_malloc"
#define RAW_FREE "mi_free"
#elif defined(RCL_BACKEND_JEMALLOC)
#define RAW_NAME "jemalloc"
#define RAW_LIB "libjemalloc.so.2"
#define RAW_ALLOC "malloc"
#define RAW_FREE "free"
#else
#define RAW_NAME "libc"
#define RAW_LIB "libc.so.6"
#define RAW_ALLOC "malloc"
#define RAW_FREE "free"
#endif

static void *(*raw_alloc)(size_t) = malloc;
static void (*raw_free)(void *) = free;
static struct bench_rcl_calls lib;

static void load_raw(void)
{
#ifndef SANITIZED
    /* dlsym on the library's handle finds its own symbol first: glibc's
     * malloc even where mimalloc or jemalloc replaces the process's. In a
     * mimalloc or jemalloc build the library is loaded already (libreclaim
     * needs it), so this is the very allocator behind rcl_alloc. */
    void *h = dlopen(RAW_LIB, RTLD_NOW | RTLD_LOCAL);
    void *a = h ? dlsym(h, RAW_ALLOC) : NULL, *f = h ? dlsym(h, RAW_FREE) : NULL;

    if (!a || !f) {
        fprintf(stderr, "bench_patterns: cannot find %s/%s in %s: %s\n", RAW_ALLOC, RAW_FREE,
                RAW_LIB, h ? "missing symbols" : dlerror());
        exit(1);
    }
    *(void **)&raw_alloc = a;
    *(void **)&raw_free = f;
#endif
}

/* Gives the backend's free pages back to the system, as its own trim does
 * (malloc_trim, mi_collect, a jemalloc purge). Pages the backend freed but
 * kept - the parent's, or the start-up run's - are resident when the
 * pattern starts, and a block written there adds nothing to the resident
 * set (raw mimalloc's 64 B x 64 grew by nothing without the trim): how
 * much of them a variant happens to reuse is not what it holds. Both
 * variants start from a trimmed heap. */
static void trim_backend(void)
{
#ifndef SANITIZED
    void *h = dlopen(RAW_LIB, RTLD_NOW | RTLD_LOCAL);

    if (!h)
        return;
#if defined(RCL_BACKEND_MIMALLOC)
    void (*collect)(_Bool) = (void (*)(_Bool))dlsym(h, "mi_collect");

    if (collect)
        collect(1);
#elif defined(RCL_BACKEND_JEMALLOC)
    int (*ctl)(const char *, void *, size_t *, void *, size_t) =
        (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(h, "mallctl");

    if (ctl) {
        ctl("thread.tcache.flush", NULL, NULL, NULL, 0);
        ctl("arena.4096.purge", NULL, NULL, NULL, 0);      /* MALLCTL_ARENAS_ALL */
    }
#else
    int (*trim)(size_t) = (int (*)(size_t))dlsym(h, "malloc_trim");

    if (trim)
        trim(0);
#endif
#endif
}

static void start_library(void)
{
    struct rcl_config cfg;
    int ret;

    /* The defaults a user gets, without the pressure follower: the hot
     * path is measured, not the machine's memory pressure. */
    rcl_config_default(&cfg);
    cfg.pressure = 0;
    ret = rcl_init(&cfg);
    if (ret) {
        fprintf(stderr, "bench_patterns: rcl_init: %s\n", strerror(-ret));
        exit(1);
    }
}

/* ------------------------------------------------------------------------ */
/* Sizes and random numbers                                                  */
/* ------------------------------------------------------------------------ */

/* Page-aligned, as are the pointer arrays, and the loops aligned to a
 * cache line (NOINLINE): where the loops and the data they touch at every
 * pair sit should not move with unrelated edits to this file, since runs
 * of different versions of it are compared. */
static _Alignas(4096) uint32_t size_tab[SZ_TAB];

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: a full-period 64-bit generator, good enough to pick
     * sizes and slots, and the same sequence on every run. */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill_sizes(unsigned spec)
{
    uint64_t seed = 20261129;

    for (int i = 0; i < SZ_TAB; i++) {
        uint64_t x = rng_next(&seed);
        if (spec == SIZE_MIX) {
            unsigned e = 3 + (unsigned)(x % 9);             /* 8 .. 2048 */
            size_tab[i] = (1u << e) + (uint32_t)((x >> 8) % (1u << e));
        } else if (spec == SIZE_LARSON) {
            size_tab[i] = 257 + (uint32_t)(x % (1024 - 257 + 1));
        } else {
            size_tab[i] = spec;
        }
    }
}

static void size_label(unsigned spec, char *buf, size_t len)
{
    if (spec == SIZE_MIX)
        snprintf(buf, len, "mix");
    else if (spec == SIZE_LARSON)
        snprintf(buf, len, "257-1K");
    else if (spec >= 1024 && spec % 1024 == 0)
        snprintf(buf, len, "%uK", spec / 1024);
    else
        snprintf(buf, len, "%u", spec);
}

static double cpu_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* The loops: one body each, instantiated for rcl and for the raw backend    */
/* ------------------------------------------------------------------------ */

static __attribute__((noreturn, cold)) void out_of_memory(void)
{
    fprintf(stderr, "bench_patterns: allocation failed\n");
    abort();
}

/* The memory children's peak: the resident set read at each point where the
 * pattern holds the most (peak_point()), not VmHWM. The kernel keeps the
 * high-water mark from its approximate per-CPU counters, refreshed when
 * pages are unmapped, so it may miss a peak by as much as the counters'
 * batches (32 pages a CPU): raw jemalloc writing 64 blocks of 4 KiB, which
 * it purges between passes, showed a peak 136 KiB above its start where
 * the resident set read at the peak was 276 KiB above it. smaps_rollup
 * counts the resident set page by page. */
static struct {
    pthread_barrier_t all;  /* the pattern's threads: at the peak together */
    int threads;
    double kib;             /* the highest resident set read */
    int rcl;                /* the library's child: what it held at the peak */
    struct held held;       /* in_use as read, not yet less the start's */
} peak;

static double rss_now_kib(void);

/* What the library holds free, read at its child's peak. Its first call
 * comes before the start is read, so the pages it touches are not
 * counted as the pattern's. */
static void peak_held(void)
{
    static struct rcl_stats st;

    rcl_stats_get(&st);
    peak.held.in_use = (double)st.usage / 1024;
    peak.held.cached = (double)st.thread_cached / 1024;
    peak.held.depot = (double)st.depot_held / 1024;
}

static void peak_sample(void)
{
    double kib = rss_now_kib();

    if (kib > peak.kib) {
        peak.kib = kib;
        if (peak.rcl)
            peak_held();
    }
}

/* Every thread of a live set has allocated its K blocks: one reads the
 * resident set while none frees. */
static __attribute__((noinline)) void peak_point(void)
{
    if (peak.threads > 1 && pthread_barrier_wait(&peak.all) != PTHREAD_BARRIER_SERIAL_THREAD) {
        pthread_barrier_wait(&peak.all);
        return;
    }
    peak_sample();
    if (peak.threads > 1)
        pthread_barrier_wait(&peak.all);
}

ALWAYS void *b_alloc(int v, size_t n)
{
    char *p = (v & V_RAW) ? raw_alloc(n) : lib.alloc(n, RCL_DEFAULT);

    if (__builtin_expect(!p, 0))
        out_of_memory();
    if (v & V_TOUCH)
        memset(p, 1, n);
    else
        *(volatile char *)p = 1;
    return p;
}

ALWAYS void b_free(int v, void *p)
{
    if (v & V_RAW)
        raw_free(p);
    else
        lib.free(p);
}

ALWAYS void live_body(int v, void **slot, int k, int lifo, long passes)
{
    unsigned j = 0;

    for (long r = 0; r < passes; r++) {
        for (int i = 0; i < k; i++)
            slot[i] = b_alloc(v, size_tab[j++ & (SZ_TAB - 1)]);
        /* Every pass of the last 16 and one in 64 before: a peak reached
         * late (a backend that fails to reuse what it freed) is seen. */
        if ((v & V_TOUCH) && (r % 64 == 0 || passes - r <= 16))
            peak_point();
        bench_barrier();
        if (lifo)
            for (int i = k; i-- > 0;)
                b_free(v, slot[i]);
        else
            for (int i = 0; i < k; i++)
                b_free(v, slot[i]);
    }
}

ALWAYS void larson_body(int v, void **slot, long reps, uint64_t *rng)
{
    for (long i = 0; i < reps; i++) {
        uint64_t x = rng_next(rng);
        uint32_t k = (uint32_t)(((x >> 32) * LARSON_SLOTS) >> 32);

        b_free(v, slot[k]);
        slot[k] = b_alloc(v, size_tab[x & (SZ_TAB - 1)]);
    }
}

/*
 * A single-producer single-consumer ring. Whichever side is faster waits for
 * the other by spinning, which keeps its core and its caches, and that
 * spinning is counted: the figure is the CPU time the pair of threads takes
 * to pass the blocks, so it follows the slower side. What is not counted is
 * a long wait - the other thread preempted by another process on a loaded
 * machine: after RING_SPINS spins a side yields the processor, and the CPU
 * time from then to the end of the wait (waited_ns) is left out.
 */
struct ring {
    _Alignas(64) _Atomic unsigned long head;    /* written by the producer */
    double prod_waited_ns;
    _Alignas(64) _Atomic unsigned long tail;    /* written by the consumer */
    double cons_waited_ns;
    _Alignas(64) void *slot[RING_CAP];
};

#define RING_SPINS 256

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* One step of a wait: a spin, or from RING_SPINS on a yield; the CPU time
 * from the first yield to the end of the wait is the long wait. */
static void ring_wait(unsigned *spins, double *long_since)
{
    if (++*spins < RING_SPINS) {
        cpu_relax();
        return;
    }
    if (*spins == RING_SPINS)
        *long_since = cpu_now_ns();
    sched_yield();
}

static void ring_waited(unsigned spins, double long_since, double *waited_ns)
{
    if (spins >= RING_SPINS)
        *waited_ns += cpu_now_ns() - long_since;
}

ALWAYS void produce_body(int v, struct ring *r, long n)
{
    unsigned long head = atomic_load_explicit(&r->head, memory_order_relaxed);
    unsigned long tail = atomic_load_explicit(&r->tail, memory_order_acquire);

    for (long i = 0; i < n; i++) {
        void *p = b_alloc(v, size_tab[i & (SZ_TAB - 1)]);
        unsigned spins = 0;
        double since = 0;

        /* Once a ring's worth: the peak is whenever the consumer lags
         * the most, which no point in the loop tells. */
        if ((v & V_TOUCH) && i % RING_CAP == 0)
            peak_sample();
        if (head - tail >= RING_CAP) {
            while (head - tail >= RING_CAP) {
                tail = atomic_load_explicit(&r->tail, memory_order_acquire);
                if (head - tail >= RING_CAP)
                    ring_wait(&spins, &since);
            }
            ring_waited(spins, since, &r->prod_waited_ns);
        }
        r->slot[head & (RING_CAP - 1)] = p;
        atomic_store_explicit(&r->head, ++head, memory_order_release);
    }
}

ALWAYS void consume_body(int v, struct ring *r, long n)
{
    unsigned long tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    unsigned long head = atomic_load_explicit(&r->head, memory_order_acquire);

    for (long i = 0; i < n; i++) {
        unsigned spins = 0;
        double since = 0;
        void *p;

        if (tail == head) {
            while (tail == head) {
                head = atomic_load_explicit(&r->head, memory_order_acquire);
                if (tail == head)
                    ring_wait(&spins, &since);
            }
            ring_waited(spins, since, &r->cons_waited_ns);
        }
        p = r->slot[tail & (RING_CAP - 1)];
        atomic_store_explicit(&r->tail, ++tail, memory_order_release);
        b_free(v, p);
    }
}

/* An out-of-line copy of each body per variant, so that no variant pays for
 * choosing its allocator inside the loop, and run_NAME(v, ...) to call the
 * copy for variant v. */
#define VARIANTS(name, params, ...)                                                  \
    NOINLINE void name##_0 params { name##_body(V_RCL, __VA_ARGS__); }               \
    NOINLINE void name##_1 params { name##_body(V_RAW, __VA_ARGS__); }               \
    NOINLINE void name##_2 params { name##_body(V_RCL | V_TOUCH, __VA_ARGS__); }     \
    NOINLINE void name##_3 params { name##_body(V_RAW | V_TOUCH, __VA_ARGS__); }     \
    static void (*const name##_v[4]) params = { name##_0, name##_1, name##_2, name##_3 };

VARIANTS(live, (void **s, int k, int lifo, long passes), s, k, lifo, passes)
VARIANTS(larson, (void **s, long reps, uint64_t *rng), s, reps, rng)
VARIANTS(produce, (struct ring *r, long n), r, n)
VARIANTS(consume, (struct ring *r, long n), r, n)

#define run_live(v, ...)    live_v[(v) & 3](__VA_ARGS__)
#define run_larson(v, ...)  larson_v[(v) & 3](__VA_ARGS__)
#define run_produce(v, ...) produce_v[(v) & 3](__VA_ARGS__)
#define run_consume(v, ...) consume_v[(v) & 3](__VA_ARGS__)

/* ------------------------------------------------------------------------ */
/* One measurement: threads, CPU time                                        */
/* ------------------------------------------------------------------------ */

/* Pointer arrays live outside every heap measured (untouched BSS pages are
 * not resident), the same for both variants. */
static _Alignas(4096) void *slots[MAX_THREADS][MAX_SLOTS];
static struct ring the_ring;

struct run {
    const struct pat *p;
    int v;
    long pairs;                 /* per thread (producer/consumer: in all) */
    pthread_barrier_t go, epoch;
    double cpu_ns[MAX_THREADS];
    long done[MAX_THREADS];     /* pairs a thread's time is for */
};

struct worker {
    struct run *run;
    int idx;
};

static void live_worker(struct run *r, int idx)
{
    int k = r->p->depth;
    long passes = r->pairs / k > 0 ? r->pairs / k : 1;
    double t0;

    /* The warm-up registers the thread with the library and gives it its
     * arena or heap in the backend, outside the time. */
    run_live(r->v, slots[idx], k, r->p->lifo, passes / 8 > 0 ? passes / 8 : 1);
    if (r->p->fam != F_SIMPLE)
        pthread_barrier_wait(&r->go);
    t0 = cpu_now_ns();
    run_live(r->v, slots[idx], k, r->p->lifo, passes);
    r->cpu_ns[idx] = cpu_now_ns() - t0;
    r->done[idx] = passes * k;
}

static void larson_worker(struct run *r, int idx)
{
    int n = r->p->threads;
    long reps = r->pairs / LARSON_EPOCHS > 0 ? r->pairs / LARSON_EPOCHS : 1;
    uint64_t rng = 0x5eed0000u + (uint64_t)idx;
    double t0, t = 0;

    for (int i = 0; i < LARSON_SLOTS; i++)
        slots[idx][i] = b_alloc(r->v, size_tab[(unsigned)(idx * LARSON_SLOTS + i) & (SZ_TAB - 1)]);
    pthread_barrier_wait(&r->go);
    for (int e = 0; e < LARSON_EPOCHS; e++) {
        t0 = cpu_now_ns();
        run_larson(r->v, slots[(idx + e) % n], reps, &rng);
        t += cpu_now_ns() - t0;
        /* The hand-over: after it, the thread works on the array the
         * previous thread filled, and frees that thread's blocks. */
        if (pthread_barrier_wait(&r->epoch) == PTHREAD_BARRIER_SERIAL_THREAD && (r->v & V_TOUCH))
            peak_sample();
    }
    r->cpu_ns[idx] = t;
    r->done[idx] = reps * LARSON_EPOCHS;
    for (int i = 0; i < LARSON_SLOTS; i++)
        b_free(r->v, slots[(idx + LARSON_EPOCHS) % n][i]);
}

static void pc_worker(struct run *r, int idx)
{
    long warm = r->pairs / 8 > 0 ? r->pairs / 8 : 1;
    double t0;

    double *waited = idx == 0 ? &the_ring.prod_waited_ns : &the_ring.cons_waited_ns;

    if (idx == 0) {
        run_produce(r->v, &the_ring, warm);
        pthread_barrier_wait(&r->go);
        *waited = 0;
        t0 = cpu_now_ns();
        run_produce(r->v, &the_ring, r->pairs);
    } else {
        run_consume(r->v, &the_ring, warm);
        pthread_barrier_wait(&r->go);
        *waited = 0;
        t0 = cpu_now_ns();
        run_consume(r->v, &the_ring, r->pairs);
    }
    r->cpu_ns[idx] = cpu_now_ns() - t0 - *waited;
    /* Both threads' time is for the same pairs. */
    r->done[idx] = idx == 0 ? r->pairs : 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;

    switch (r->p->fam) {
    case F_LIVE:
    case F_SIMPLE:
        live_worker(r, w->idx);
        break;
    case F_LARSON:
        larson_worker(r, w->idx);
        break;
    case F_PC:
        pc_worker(r, w->idx);
        break;
    default:
        break;
    }
    return NULL;
}

/* CPU nanoseconds per pair, all threads together. */
static double measure(const struct pat *p, int v, long pairs)
{
    static struct run r;
    struct worker w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    double cpu = 0;
    long done = 0;

    memset(&r, 0, sizeof(r));
    r.p = p;
    r.v = v;
    r.pairs = pairs;
    if (p->fam == F_SIMPLE) {
        /* glibc's benchmark runs in the main thread: its main arena. */
        peak.threads = 1;
        live_worker(&r, 0);
        return r.cpu_ns[0] / (double)r.done[0];
    }
    pthread_barrier_init(&r.go, NULL, (unsigned)p->threads);
    pthread_barrier_init(&r.epoch, NULL, (unsigned)p->threads);
    peak.threads = p->threads;
    if (peak.threads > 1)
        pthread_barrier_init(&peak.all, NULL, (unsigned)p->threads);
    for (int i = 0; i < p->threads; i++) {
        pthread_attr_t attr;

        w[i].run = &r;
        w[i].idx = i;
        pthread_attr_init(&attr);
        bench_pin_attr(&attr, i, p->threads);
        if (pthread_create(&tid[i], &attr, worker_main, &w[i]) != 0) {
            perror("bench_patterns: pthread_create");
            exit(1);
        }
        pthread_attr_destroy(&attr);
    }
    for (int i = 0; i < p->threads; i++)
        pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&r.go);
    pthread_barrier_destroy(&r.epoch);
    if (peak.threads > 1)
        pthread_barrier_destroy(&peak.all);
    for (int i = 0; i < p->threads; i++) {
        cpu += r.cpu_ns[i];
        done += r.done[i];
    }
    return cpu / (double)done;
}

/* Pairs per thread for about target_ms of CPU time per thread in the slower
 * variant, from a pilot run of each (which also warms the pattern up); at
 * least four passes over a live set, at most max_pairs. The time a pair
 * takes ranges from 10 ns to several microseconds (glibc trimming its heap
 * after each pass of 4 KiB blocks; jemalloc refaulting pages in some
 * classes), so a fixed count would make the run either too short to
 * measure or far too long. */
static long calibrate(const struct pat *p, long max_pairs, double target_ms)
{
    long lo = p->fam == F_LIVE || p->fam == F_SIMPLE ? 4L * p->depth : 1024;
    long pilot = lo > 4096 ? lo : 4096, pairs;
    double ns;

    if (pilot > max_pairs)
        pilot = max_pairs;
    ns = measure(p, V_RAW, pilot);
    ns = fmax(ns, measure(p, V_RCL, pilot)) * (p->fam == F_PC ? 0.5 : 1.0);
    pairs = ns > 0 ? (long)(target_ms * 1e6 / ns) : max_pairs;
    if (pairs > max_pairs)
        pairs = max_pairs;
    return pairs < lo ? lo : pairs;
}

/* ------------------------------------------------------------------------ */
/* Peak RSS, in children of their own                                        */
/* ------------------------------------------------------------------------ */

/* The value of a "Field:   N kB" line of a /proc file, read with no stdio:
 * fopen() would allocate from the heap being measured. -1 if absent. */
static double proc_kib(const char *file, const char *field)
{
    char buf[4096];
    size_t n = strlen(field);
    ssize_t len;
    int fd = open(file, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
        return -1;
    buf[len] = '\0';
    for (char *line = buf; line; line = strchr(line, '\n')) {
        line += *line == '\n';
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            return strtod(line + n + 1, NULL);
    }
    return -1;
}

/* The resident set, counted page by page (smaps_rollup, Linux 4.14+); on
 * a kernel without it, the status file's VmRSS, which may be approximate. */
static double rss_now_kib(void)
{
    double kib = proc_kib("/proc/self/smaps_rollup", "Rss");

    return kib >= 0 ? kib : proc_kib("/proc/self/status", "VmRSS");
}

struct rss {
    double peak, growth;    /* KiB; peak < 0: failed */
    struct held held;       /* the library's child's */
};

static struct rss rss_child(const struct pat *p, int v, long pairs)
{
    struct rss m = { -1, -1, { 0, 0, 0 } };
    int fd[2];
    pid_t pid;

    if (pipe(fd) != 0) {
        perror("bench_patterns: pipe");
        exit(1);
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("bench_patterns: fork");
        exit(1);
    }
    if (pid == 0) {
        double base, usage = 0;

        struct pat setup = *p;

        close(fd[0]);
        start_library();
        /* The threads' own start-up - stacks, a glibc arena, a mimalloc
         * heap, the library's registration - in a run of one 16-byte block
         * per thread before the peak is reset: exited threads' stacks and
         * arenas are reused, so what grows after is the pattern's. */
        setup.fam = p->fam == F_SIMPLE ? F_SIMPLE : F_LIVE;
        setup.depth = 1;
        fill_sizes(16);
        measure(&setup, v | V_TOUCH, 64);
        fill_sizes(p->size);
        /* The rows of pointers and the ring are the harness's, the same
         * for both variants, and only written pages are resident: written
         * now, they are in the start, and the growth is the blocks' alone
         * (4096 blocks of 16 B on one thread grew by 28 KiB of their row
         * beside raw glibc's 128 KiB of blocks, a ratio pulled towards 1). */
        for (int t = 0; t < p->threads; t++)
            memset(slots[t], 0, (size_t)p->depth * sizeof(slots[t][0]));
        memset(&the_ring, 0, sizeof(the_ring));
        trim_backend();
        peak.rcl = v == V_RCL;
        if (peak.rcl) {
            peak_held();
            usage = peak.held.in_use;
        }
        base = rss_now_kib();
        peak.kib = base;
        measure(p, v | V_TOUCH, pairs);
        peak_sample();
        m.peak = peak.kib;
        m.growth = m.peak - base;
        if (peak.rcl) {
            m.held = peak.held;
            m.held.in_use -= usage;
        }
        if (write(fd[1], &m, sizeof(m)) != (ssize_t)sizeof(m))
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    if (read(fd[0], &m, sizeof(m)) != (ssize_t)sizeof(m))
        fprintf(stderr, "bench_patterns: child for %s failed\n", p->name);
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return m;
}

/* A live set's first pass, the first fill of the larson arrays or a full
 * ring make most of the peak, but not all of it: an allocator may fail to
 * reuse what the last pass freed (jemalloc's 1280- and 5120-byte classes
 * grow for tens of passes), so the peak is taken over at least 16 passes
 * and 32768 pairs per thread.
 *
 * Where two threads pass blocks to each other (producer/consumer,
 * larson), what is in flight at the peak is what the scheduler made it:
 * raw mimalloc's producer/consumer of 1 KiB blocks read anywhere from 48
 * to 404 KiB, and the library's from 84 to 592, from one child to the
 * next, so one child's ratio told little about either allocator (0.47 -
 * 2.32x over four processes of the same code). What a child reads is
 * capped by the most the pattern can hold - a full ring and what the
 * allocator keeps aside while it is full - and the highest of several
 * children comes near that cap: those patterns run RSS_CHILDREN children
 * per variant, the variants in turn, and each variant's figure is its
 * highest child, the peak of a longer watch. Over glibc that reads the
 * same from one process to the next within a page or two, over jemalloc
 * within a few tens of KiB; over mimalloc, whose own cap moves between
 * processes (204 - 404 KiB), it does not (docs/bench/patterns.md,
 * "Figures, 2026-12-03, 18:25"). The JSON keeps every child's growth. A
 * live set's threads meet at its peak, and one child tells it, the same
 * in every run. */
static int rss_children(const struct pat *p)
{
    return p->fam == F_PC || p->fam == F_LARSON ? RSS_CHILDREN : 1;
}

static void measure_rss(struct pat *p)
{
    long pairs = p->fam == F_LIVE || p->fam == F_SIMPLE ? 16L * p->depth : 0;
    int n = rss_children(p);
    struct rss m[NVAR][RSS_CHILDREN];

    if (pairs < 32768)
        pairs = 32768;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < NVAR; k++) {
            int v = (k + i) % NVAR;
            m[v][i] = rss_child(p, v, pairs);
        }
    for (int v = 0; v < NVAR; v++) {
        struct rss top = { -1, -1, { 0, 0, 0 } };

        for (int i = 0; i < n; i++) {
            p->rss_children[v][i] = m[v][i].growth;
            if (m[v][i].peak >= 0 && m[v][i].growth > top.growth)
                top = m[v][i];
        }
        p->rss_peak[v] = top.peak;
        p->rss_growth[v] = top.growth;
        if (v == V_RCL)
            p->held = top.held;
    }
    p->rss_n = n;
    p->rss_ratio = NAN;
    p->rss_counts = 0;
    if (p->rss_peak[V_RCL] >= 0 && p->rss_peak[V_RAW] >= 0 && p->rss_growth[V_RAW] > 0) {
        p->rss_ratio = p->rss_growth[V_RCL] / p->rss_growth[V_RAW];
        p->rss_counts = p->rss_growth[V_RAW] >= RSS_GOAL_MIN_KIB;
    }
}

/* ------------------------------------------------------------------------ */
/* The patterns                                                              */
/* ------------------------------------------------------------------------ */

static struct pat *pats;
static int npats;

static void add(enum family fam, int threads, int depth, int lifo, unsigned size)
{
    struct pat *p;
    char sz[16];

    pats = realloc(pats, (size_t)(npats + 1) * sizeof(*pats));
    if (!pats)
        exit(1);
    p = &pats[npats++];
    memset(p, 0, sizeof(*p));
    p->fam = fam;
    p->threads = threads;
    p->depth = depth;
    p->lifo = lifo;
    p->size = size;
    size_label(size, sz, sizeof(sz));
    switch (fam) {
    case F_LIVE:
        snprintf(p->name, sizeof(p->name), "live set %s %s B K=%d, %d thread%s",
                 lifo ? "LIFO" : "FIFO", sz, depth, threads, threads > 1 ? "s" : "");
        break;
    case F_PC:
        snprintf(p->name, sizeof(p->name), "producer/consumer %s B", sz);
        break;
    case F_LARSON:
        snprintf(p->name, sizeof(p->name), "larson %s B, %d slots, %d threads", sz, depth,
                 threads);
        break;
    case F_SIMPLE:
        snprintf(p->name, sizeof(p->name), "simple %s B x %d", sz, depth);
        break;
    default:
        break;
    }
}

static int family_on(enum family f)
{
    const char *s = getenv("BENCH_PATTERNS");
    char key[32], list[256];

    if (!s || !*s)
        return 1;
    snprintf(key, sizeof(key), ",%s,", fam_key[f]);
    snprintf(list, sizeof(list), ",%s,", s);
    return strstr(list, key) != NULL;
}

/*
 * A comma-separated list from the environment variable `env` (default
 * `dflt`): numbers from 1 to `max`, and "mix" for SIZE_MIX where
 * `mix_ok`. A run by hand may ask for other live-set sizes and depths (a
 * backend's size classes, say); a bad list is said and the run stops.
 */
static int env_list(const char *env, const char *dflt, unsigned *out, int cap, unsigned max,
                    int mix_ok)
{
    const char *s = getenv(env);
    int n = 0;

    if (!s || !*s)
        s = dflt;
    for (const char *q = s; *q;) {
        char *end;
        unsigned long v;
        if (mix_ok && !strncmp(q, "mix", 3)) {
            v = SIZE_MIX;
            end = (char *)q + 3;
        } else {
            v = strtoul(q, &end, 10);
            if (end == q || v < 1 || v > max)
                goto bad;
        }
        if ((*end && *end != ',') || n == cap)
            goto bad;
        out[n++] = (unsigned)v;
        q = *end ? end + 1 : end;
    }
    if (n > 0)
        return n;
bad:
    fprintf(stderr, "bench_patterns: %s: bad list '%s' (at most %d numbers from 1 to %u%s, "
                    "separated by commas)\n", env, s, cap, max, mix_ok ? ", or mix" : "");
    exit(2);
}

static void build_patterns(void)
{
    unsigned depths[16], sizes[16];
    /* A thread's live set is its row of slots[]: a deeper one would run
     * into the next thread's row, and the two threads free each other's
     * blocks. */
    int ndepths = env_list("BENCH_DEPTHS", "1,8,64,512,4096", depths, 16, MAX_SLOTS, 0);
    int nsizes = env_list("BENCH_SIZES", "16,64,256,1024,4096,mix", sizes, 16, 1u << 20, 1);
    static const unsigned pc_sizes[] = { 64, 1024, SIZE_MIX };
    static const unsigned simple_sizes[] = { 16, 32, 64 };
    static const int simple_counts[] = { 25, 100, 400, 1600 };
    int threads[8], nthr = bench_threads("1,2", threads, 8);

    if (family_on(F_LIVE))
        for (int t = 0; t < nthr; t++)
            for (int lifo = 0; lifo < 2; lifo++)
                for (int s = 0; s < nsizes; s++)
                    for (int d = 0; d < ndepths; d++)
                        add(F_LIVE, threads[t] > MAX_THREADS ? MAX_THREADS : threads[t],
                            (int)depths[d], lifo, sizes[s]);
    if (family_on(F_PC))
        for (size_t s = 0; s < sizeof(pc_sizes) / sizeof(pc_sizes[0]); s++)
            add(F_PC, 2, RING_CAP, 0, pc_sizes[s]);
    if (family_on(F_LARSON))
        add(F_LARSON, 2, LARSON_SLOTS, 0, SIZE_LARSON);
    if (family_on(F_SIMPLE))
        for (size_t s = 0; s < sizeof(simple_sizes) / sizeof(simple_sizes[0]); s++)
            for (size_t c = 0; c < sizeof(simple_counts) / sizeof(simple_counts[0]); c++)
                add(F_SIMPLE, 1, simple_counts[c], 0, simple_sizes[s]);
}

/* ------------------------------------------------------------------------ */
/* Output                                                                    */
/* ------------------------------------------------------------------------ */

static void print_family_header(enum family f, int reps)
{
    printf("\n-- %s; CPU ns per pair, median [min..max] of %d rounds --\n", fam_title[f], reps);
    printf("%-4s %-5s %-6s %5s %22s %22s %21s %7s  %17s %6s\n", "thr", "order", "size", "K",
           "rcl", RAW_NAME, "rcl/" RAW_NAME, "min/min", "peak RSS KiB", "ratio");
    printf("%-4s %-5s %-6s %5s %22s %22s %21s %7s  %8s %8s %6s\n", "", "", "", "", "", "", "",
           "", "rcl", RAW_NAME, "");
}

static void print_row(const struct pat *p)
{
    char sz[16], rss[16];
    const char *order = p->fam == F_LIVE ? (p->lifo ? "LIFO" : "FIFO") : p->fam == F_SIMPLE ? "FIFO" : "-";

    size_label(p->size, sz, sizeof(sz));
    if (p->rss_ratio != p->rss_ratio)
        snprintf(rss, sizeof(rss), "-");
    else if (p->rss_counts)
        snprintf(rss, sizeof(rss), "%.2f%c", p->rss_ratio, p->rss_ratio <= GOAL_RSS ? ' ' : '*');
    else
        snprintf(rss, sizeof(rss), "(%.2f)", p->rss_ratio);
    printf("%-4d %-5s %-6s %5d %6.1f [%5.1f..%6.1f] %6.1f [%5.1f..%6.1f] %4.2f [%4.2f..%5.2f]%c %7.2f  %8.0f %8.0f %6s\n",
           p->threads, order, sz, p->depth, p->ns[V_RCL].med, p->ns[V_RCL].min, p->ns[V_RCL].max,
           p->ns[V_RAW].med, p->ns[V_RAW].min, p->ns[V_RAW].max, p->ratio.med, p->ratio.min,
           p->ratio.max, p->ratio.med <= GOAL_RATIO ? ' ' : '*', p->min_ratio,
           p->rss_growth[V_RCL], p->rss_growth[V_RAW], rss);
    fflush(stdout);
}

static void json_row(const struct pat *p)
{
    char sz[16];

    size_label(p->size, sz, sizeof(sz));
    bj_obj(NULL);
    bj_str("family", fam_key[p->fam]);
    bj_str("name", p->name);
    bj_num("threads", p->threads);
    bj_num("depth", p->depth);
    bj_str("order", p->fam == F_LIVE || p->fam == F_SIMPLE ? (p->lifo ? "lifo" : "fifo") : "-");
    bj_str("size", sz);
    bj_num("pairs_per_thread", (double)p->pairs);
    bj_obj("cpu_ns_per_pair");
    bj_stat("rcl", p->ns[V_RCL]);
    bj_stat(RAW_NAME, p->ns[V_RAW]);
    bj_end_obj();
    bj_stat("ratio", p->ratio);
    bj_num("ratio_of_minimums", p->min_ratio);
    bj_bool("goal_met", p->ratio.med <= GOAL_RATIO);
    bj_obj("peak_rss_kib");
    bj_num("rcl", p->rss_peak[V_RCL]);
    bj_num(RAW_NAME, p->rss_peak[V_RAW]);
    bj_end_obj();
    bj_obj("rss_growth_kib");
    bj_num("rcl", p->rss_growth[V_RCL]);
    bj_num(RAW_NAME, p->rss_growth[V_RAW]);
    bj_end_obj();
    if (p->rss_n > 1) {
        bj_obj("rss_growth_kib_children");
        for (int v = 0; v < NVAR; v++) {
            bj_arr(v == V_RCL ? "rcl" : RAW_NAME);
            for (int i = 0; i < p->rss_n; i++)
                bj_num(NULL, p->rss_children[v][i]);
            bj_end_arr();
        }
        bj_end_obj();
    }
    bj_obj("rcl_peak_free_kib");
    bj_num("thread_cached", p->held.cached);
    bj_num("depot", p->held.depot);
    bj_end_obj();
    bj_num("rcl_peak_in_use_kib", p->held.in_use);
    bj_num("rss_ratio", p->rss_ratio);
    bj_bool("rss_ratio_counts", p->rss_counts);
    bj_bool("rss_goal_met", !p->rss_counts || p->rss_ratio <= GOAL_RSS);
    bj_end_obj();
}

static int cmp_ratio(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Every child's growth, as it was read. */
static void print_rss_children(const struct pat *p)
{
    for (int v = 0; v < NVAR; v++) {
        printf("       %-8s children:", v == V_RCL ? "rcl" : RAW_NAME);
        for (int i = 0; i < p->rss_n; i++)
            printf(" %.0f", p->rss_children[v][i]);
        printf("\n");
    }
}

/* The patterns over the peak RSS goal: by how much, and what rcl held at
 * its peak - the blocks it had handed out, as charged, and the free blocks
 * it kept for reuse. */
static void print_rss_over(void)
{
    printf("   over the peak RSS goal: growth in KiB, rcl beside %s; the blocks rcl handed\n"
           "   out, as charged (their classes' sizes and headers), and the free blocks it held\n"
           "   (the threads' caches, the depot), at its peak:\n", RAW_NAME);
    for (int i = 0; i < npats; i++) {
        const struct pat *p = &pats[i];

        if (!p->rss_counts || p->rss_ratio <= GOAL_RSS)
            continue;
        printf("     %-44s %7.0f %7.0f  (+%.0f)  in use %.0f, caches %.0f, depot %.0f\n",
               p->name, p->rss_growth[V_RCL], p->rss_growth[V_RAW],
               p->rss_growth[V_RCL] - p->rss_growth[V_RAW], p->held.in_use, p->held.cached,
               p->held.depot);
        if (p->rss_n > 1)
            print_rss_children(p);
    }
}

/* Per family: the typical (median) and worst of the median ratios. */
static void summary(void)
{
    const struct pat *worst = NULL, *worst_rss = NULL;
    int met = 0, rss_met = 0, rss_n = 0;

    printf("\n-- summary, backend %s (goals: CPU ratio <= %.2f, peak RSS ratio <= %.2f) --\n",
           BENCH_BACKEND, GOAL_RATIO, GOAL_RSS);
    bj_obj("summary");
    for (int f = 0; f < NFAM; f++) {
        double *r = malloc((size_t)npats * sizeof(*r));
        const struct pat *w = NULL;
        int n = 0;

        if (!r)
            exit(1);
        for (int i = 0; i < npats; i++)
            if (pats[i].fam == (enum family)f) {
                r[n++] = pats[i].ratio.med;
                if (!w || pats[i].ratio.med > w->ratio.med)
                    w = &pats[i];
            }
        if (n) {
            qsort(r, (size_t)n, sizeof(*r), cmp_ratio);
            printf("   %-7s %3d patterns: CPU ratio typical %.2f, best %.2f, worst %.2f (%s)\n",
                   fam_key[f], n, n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2, r[0],
                   r[n - 1], w->name);
            bj_obj(fam_key[f]);
            bj_num("patterns", n);
            bj_num("typical_ratio", n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2);
            bj_num("best_ratio", r[0]);
            bj_num("worst_ratio", r[n - 1]);
            bj_str("worst_pattern", w->name);
            bj_end_obj();
        }
        free(r);
    }
    for (int i = 0; i < npats; i++) {
        const struct pat *p = &pats[i];
        met += p->ratio.med <= GOAL_RATIO;
        if (!worst || p->ratio.med > worst->ratio.med)
            worst = p;
        if (p->rss_counts) {
            rss_n++;
            rss_met += p->rss_ratio <= GOAL_RSS;
            if (!worst_rss || p->rss_ratio > worst_rss->rss_ratio)
                worst_rss = p;
        }
    }
    if (worst)
        printf("%s: worst CPU ratio %.2f (%s); %d of %d patterns <= %.2f\n", BENCH_BACKEND,
               worst->ratio.med, worst->name, met, npats, GOAL_RATIO);
    if (worst_rss)
        printf("%s: worst peak RSS ratio %.2f (%s); %d of %d patterns <= %.2f\n", BENCH_BACKEND,
               worst_rss->rss_ratio, worst_rss->name, rss_met, rss_n, GOAL_RSS);
    if (rss_met < rss_n)
        print_rss_over();
    if (worst) {
        bj_num("worst_ratio", worst->ratio.med);
        bj_str("worst_pattern", worst->name);
        bj_num("patterns_meeting_goal", met);
    }
    if (worst_rss) {
        bj_num("worst_rss_ratio", worst_rss->rss_ratio);
        bj_str("worst_rss_pattern", worst_rss->name);
        bj_num("rss_patterns_meeting_goal", rss_met);
        bj_num("rss_patterns_counted", rss_n);
    }
    bj_num("patterns", npats);
    bj_end_obj();
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    bench_args(argc, argv, "bench_patterns", "The hot path where blocks stay alive: live sets by depth, size and free order, producer/consumer, larson-style and glibc's simple benchmark, beside the raw allocator, with peak RSS.");
    int quick = bench_quick();
    int reps = bench_reps(3, 5, MAX_REPS);
    long max_pairs = bench_env_long("BENCH_PAIRS", quick ? 65536 : 1048576);
    double target_ms = quick ? 2.0 : 10.0;
    uint64_t t_start = bench_now_ns();
    enum family cur = NFAM;

    build_patterns();
    bench_pin_init();
    load_raw();
    lib = bench_rcl_calls();

    bench_print_header("allocation patterns: rcl_alloc/rcl_free beside the backend raw");
    printf("   rcl = rcl_alloc/rcl_free over %s; baseline = %s raw (%s/%s); %d interleaved rounds,\n"
           "   about %.0f ms of CPU per thread each (at most %ld pairs); CPU time of all threads\n"
           "   per pair. Goals: ratio <= %.2f, peak RSS ratio <= %.2f. Peak RSS: one child\n"
           "   process per pattern and variant; the highest of %d where threads pass blocks on.\n",
           BENCH_BACKEND, RAW_NAME, RAW_ALLOC, RAW_FREE, reps, target_ms, max_pairs, GOAL_RATIO,
           GOAL_RSS, RSS_CHILDREN);
    bench_pin_print("of a pattern");
    bench_sanitized_note();
    fflush(stdout);

    /* Memory first, while this process has touched neither the library nor
     * the heap: a child then starts from the same clean state each time. */
    for (int i = 0; i < npats; i++)
        measure_rss(&pats[i]);
    printf("   (peak RSS of %d patterns x 2 variants: %.1f s)\n", npats,
           (double)(bench_now_ns() - t_start) / 1e9);

    start_library();
    bench_json_begin("patterns");
    bj_str("baseline", RAW_NAME);
    bj_str("baseline_calls", RAW_ALLOC "/" RAW_FREE);
    bj_num("reps", reps);
    bj_num("max_pairs_per_thread", (double)max_pairs);
    bj_num("target_cpu_ms", target_ms);
    bj_num("goal_ratio", GOAL_RATIO);
    bj_num("goal_rss_ratio", GOAL_RSS);
    bj_num("rss_goal_min_kib", RSS_GOAL_MIN_KIB);
    bj_num("pinned_cpus", bench_pin.n);
    bj_arr("results");

    for (int i = 0; i < npats; i++) {
        struct pat *p = &pats[i];
        double v[NVAR][MAX_REPS], ratio[MAX_REPS];

        if (p->fam != cur) {
            cur = p->fam;
            print_family_header(cur, reps);
        }
        fill_sizes(p->size);
        p->pairs = calibrate(p, max_pairs, target_ms);
        for (int r = 0; r < reps; r++) {
            for (int k = 0; k < NVAR; k++) {
                int var = (k + r) % NVAR;
                v[var][r] = measure(p, var, p->pairs);
            }
            ratio[r] = v[V_RCL][r] / v[V_RAW][r];
        }
        for (int k = 0; k < NVAR; k++)
            p->ns[k] = bench_stat_of(v[k], reps);
        p->ratio = bench_stat_of(ratio, reps);
        p->min_ratio = p->ns[V_RCL].min / p->ns[V_RAW].min;
        print_row(p);
        json_row(p);
    }
    bj_end_arr();
    printf("\n   * = above the goal. min/min = fastest rcl round over fastest %s round. Peak RSS:\n"
           "   growth during the pattern; its ratio in parentheses where %s grew by less than\n"
           "   %.0f KiB (page granularity decides it), not counted towards the goal.\n",
           RAW_NAME, RAW_NAME, RSS_GOAL_MIN_KIB);
    summary();
    printf("   (%.1f s in all)\n", (double)(bench_now_ns() - t_start) / 1e9);
    bj_num("seconds", (double)(bench_now_ns() - t_start) / 1e9);
    bench_json_end();
    rcl_shutdown();
    return 0;
}
