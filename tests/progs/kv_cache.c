/* SPDX-License-Identifier: MIT */
/*
 * kv_cache.c - a key-value cache as a user writes one from reclaim.h alone,
 * for the real-memory tests (tests/test_cgroup_e2e.c): worker threads get
 * and put values over a working set several times the budget, every value
 * checked on every get; the cache is a hash table on a shrinkable LRU; one
 * more thread allocates inside a NOFS scope while holding a lock, as a
 * file system's transaction code does. The budget is the library's own
 * choice (automatic, or RECLAIM_LIMIT): the program never calls rcl_init.
 *
 *   kv_cache [--seconds S] [--threads N] [--values 4k|mix] [--ws X]
 *            [--outside MiB] [--no-cache] [--reaction USAGE_FILE]
 *
 *   --values 4k    every value 4 KiB; mix: 16 B to 64 KiB, log-uniform
 *   --ws X         the working set is X times the budget (default 4)
 *   --outside MiB  also malloc and touch MiB the library never sees
 *   --no-cache     make and check values but keep none: the program's
 *                  memory without its cache, the baseline the RSS goal
 *                  is measured against
 *   --reaction F   fill the cache to 70 % of the budget, then touch plain
 *                  memory until the cgroup usage in F crosses the point
 *                  where the budget's headroom is below its low watermark;
 *                  print how long until the shrinker was first called
 *
 * Prints one line of key=value figures; exit 0, or 5 when a value read
 * back was wrong, 3 on a usage error.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "reclaim.h"

#define STRIPES 256

struct entry {
    struct rcl_lru_node node;
    struct entry       *next;        /* hash chain, under the stripe lock */
    uint64_t            key;
    uint32_t            len;
    unsigned char       data[];
};

static struct {
    unsigned        threads, seconds, ws;
    int             mix, no_cache;
    size_t          outside_mib;
    const char     *reaction_file;
} opt = { .threads = 4, .seconds = 10, .ws = 4 };

static pthread_mutex_t stripe[STRIPES];
static struct entry  **table;
static uint64_t        nbuckets, nkeys;
static struct rcl_lru *lru;
static _Atomic unsigned long ops, hits, corrupt, failures, evicted, fs_allocs;
static _Atomic int     stop;
static _Atomic unsigned long long first_scan_ns;   /* --reaction */
static _Atomic int     watch_scan;

static unsigned long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* Plain memory written and never read is the pressure these runs are
 * about; clang drops such a malloc and its memset altogether (gcc does
 * not), so the block is made to look used. */
static void *pressure(size_t bytes, int byte)
{
    char *p = malloc(bytes);

    if (p)
        memset(p, byte, bytes);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* A value's length and bytes are functions of its key, so a get can tell
 * a right value from a wrong one without keeping a copy. */
static uint32_t value_len(uint64_t key)
{
    if (!opt.mix)
        return 4096;
    unsigned shift = 4 + (unsigned)(mix64(key ^ 0x5bd1e995) % 13);     /* 16 B .. 64 KiB */
    uint32_t base = 1u << shift;
    return base + (uint32_t)(mix64(key) % base);
}

static void value_fill(uint64_t key, unsigned char *p, uint32_t len)
{
    uint64_t w = mix64(key);
    for (uint32_t i = 0; i < len; i++) {
        if (!(i & 7))
            w = mix64(w + i);
        p[i] = (unsigned char)(w >> (8 * (i & 7)));
    }
}

static int value_ok(const struct entry *e)
{
    uint64_t w = mix64(e->key);
    if (e->len != value_len(e->key))
        return 0;
    for (uint32_t i = 0; i < e->len; i++) {
        if (!(i & 7))
            w = mix64(w + i);
        if (e->data[i] != (unsigned char)(w >> (8 * (i & 7))))
            return 0;
    }
    return 1;
}

static unsigned stripe_of(uint64_t bucket) { return (unsigned)(bucket % STRIPES); }

/* Under the stripe lock: unhash e from its bucket. */
static void unhash(struct entry *e)
{
    struct entry **pp = &table[mix64(e->key) & (nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
}

/* The shrinker's isolate: LRU lock held, so the stripe lock only by trylock
 * (the cache takes its stripe lock first, the LRU lock second). */
static enum rcl_lru_walk isolate(struct rcl_lru_node *n, void *arg)
{
    struct entry *e = RCL_LRU_ENTRY(n, struct entry, node);
    unsigned s = stripe_of(mix64(e->key) & (nbuckets - 1));
    (void)arg;
    if (atomic_load(&watch_scan) && !atomic_load(&first_scan_ns))
        atomic_store(&first_scan_ns, now_ns());
    if (pthread_mutex_trylock(&stripe[s]))
        return RCL_LRU_SKIP;
    unhash(e);
    pthread_mutex_unlock(&stripe[s]);
    return RCL_LRU_REMOVED;
}

static void entry_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    atomic_fetch_add(&evicted, 1);
    rcl_free(RCL_LRU_ENTRY(n, struct entry, node));
}

static void put(uint64_t key)
{
    uint32_t len = value_len(key);
    struct entry *e = rcl_alloc(sizeof(*e) + len, RCL_DEFAULT | RCL__NOWARN);
    if (!e) {
        atomic_fetch_add(&failures, 1);
        return;
    }
    e->key = key;
    e->len = len;
    value_fill(key, e->data, len);
    rcl_lru_node_init(&e->node);
    uint64_t b = mix64(key) & (nbuckets - 1);
    pthread_mutex_lock(&stripe[stripe_of(b)]);
    for (struct entry *o = table[b]; o; o = o->next)
        if (o->key == key) {            /* another thread put it first */
            pthread_mutex_unlock(&stripe[stripe_of(b)]);
            rcl_free(e);
            return;
        }
    e->next = table[b];
    table[b] = e;
    rcl_lru_add(lru, &e->node);
    pthread_mutex_unlock(&stripe[stripe_of(b)]);
}

static int get(uint64_t key)
{
    uint64_t b = mix64(key) & (nbuckets - 1);
    int found = 0;
    pthread_mutex_lock(&stripe[stripe_of(b)]);
    for (struct entry *e = table[b]; e; e = e->next)
        if (e->key == key) {
            if (!value_ok(e))
                atomic_fetch_add(&corrupt, 1);
            rcl_lru_touch(lru, &e->node);
            found = 1;
            break;
        }
    pthread_mutex_unlock(&stripe[stripe_of(b)]);
    return found;
}

static void *worker(void *arg)
{
    uint64_t seed = mix64((uint64_t)(uintptr_t)arg + 1);
    unsigned char *scratch = opt.no_cache ? malloc(65536 + 65536) : NULL;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        seed = mix64(seed);
        uint64_t key = seed % nkeys;
        if (opt.no_cache) {
            value_fill(key, scratch, value_len(key));
        } else if (get(key)) {
            atomic_fetch_add_explicit(&hits, 1, memory_order_relaxed);
        } else {
            put(key);
        }
        atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
    }
    free(scratch);
    return NULL;
}

/* A file system's transaction path: holding its lock, it allocates inside
 * a NOFS scope, so that reclaim never calls back into it. */
static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;
static void *fs_thread(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        pthread_mutex_lock(&fs_lock);
        unsigned saved = rcl_nofs_save();
        void *p = rcl_alloc(512 + (size_t)(now_ns() % 3584), RCL_DEFAULT | RCL__NOWARN);
        rcl_nofs_restore(saved);
        pthread_mutex_unlock(&fs_lock);
        if (p) {
            atomic_fetch_add(&fs_allocs, 1);
            rcl_free(p);
        }
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void drop_all(void)
{
    for (uint64_t b = 0; b < nbuckets; b++) {
        pthread_mutex_lock(&stripe[stripe_of(b)]);
        while (table[b]) {
            struct entry *e = table[b];
            table[b] = e->next;
            int mine = rcl_lru_del(lru, &e->node) == 1;
            pthread_mutex_unlock(&stripe[stripe_of(b)]);
            if (mine)
                rcl_free(e);
            pthread_mutex_lock(&stripe[stripe_of(b)]);
        }
        pthread_mutex_unlock(&stripe[stripe_of(b)]);
    }
}

/* The high-water mark of this program's own memory, VmHWM. getrusage()'s
 * ru_maxrss keeps, across the exec, the resident set the process had
 * before it, its parent's, copied by the fork: the baseline (--no-cache)
 * run by a larger program, a test or a benchmark, read as that program. */
static long peak_rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (f) {
        while (kib < 0 && fgets(line, sizeof(line), f))
            if (sscanf(line, "VmHWM: %ld kB", &kib) != 1)
                kib = -1;
        fclose(f);
    }
    if (kib < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kib = ru.ru_maxrss;
    }
    return kib;
}

static unsigned long long read_u64(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

/* The cgroup's inactive page cache (memory.stat beside the usage file),
 * which the library's footprint leaves out as the kernel drops it first. */
static unsigned long long inactive_file(void)
{
    char path[4096], line[256];
    snprintf(path, sizeof(path), "%s", opt.reaction_file);
    char *slash = strrchr(path, '/');
    if (!slash)
        return 0;
    snprintf(slash + 1, sizeof(path) - (size_t)(slash + 1 - path), "memory.stat");
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "total_inactive_file ", 20))
            v = strtoull(line + 20, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* --reaction: the cache at 70 % of its budget, then memory the library never
 * sees, 1 MiB at a time, until the cgroup's usage crosses the point where
 * the budget's headroom falls below its low watermark. */
static int reaction(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    unsigned long long cross = st.limit - st.wmark_low;
    uint64_t key = 0;
    while (rcl_usage() < st.limit / 10 * 7)
        put(key++ % nkeys);
    struct timespec settle = { 1, 0 };
    nanosleep(&settle, NULL);           /* let the library's samples settle */
    atomic_store(&watch_scan, 1);
    atomic_store(&first_scan_ns, 0);
    /* The crossing happened while the chunk that shows it was touched: its
     * start is the earliest the crossing can have been, so the figure
     * below errs long, never short. */
    unsigned long long t_cross = 0;
    for (size_t mib = 0; mib < 256 && !t_cross; mib++) {
        unsigned long long t0 = now_ns();
        if (!pressure(1 << 20, 1))
            break;
        if (read_u64(opt.reaction_file) - inactive_file() >= cross)
            t_cross = t0;
    }
    /* One more MiB past the crossing: the library reads the inactive page
     * cache at its own moments, and a crossing by less than its drift
     * since then (0.2 MiB seen) is one the library need not see. The
     * figure is still from the first crossing. */
    if (t_cross)
        pressure(1 << 20, 1);
    for (int i = 0; i < 5000 && !atomic_load(&first_scan_ns); i++) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    unsigned long long scan = atomic_load(&first_scan_ns);
    long long us = t_cross && scan ? ((long long)scan - (long long)t_cross) / 1000 : -1;
    rcl_stats_get(&st);
    printf("reaction crossed=%d scanned=%d reaction_us=%lld threshold=%llu footprint=%zu "
           "wakeups=%lu usage=%zu\n", t_cross != 0, scan != 0, us < 0 && scan ? 0 : us, cross,
           rcl_footprint(), st.background_wakeups, st.usage);
    return 0;
}

static int usage_error(const char *what)
{
    fprintf(stderr, "kv_cache: rejected %s (see the comment at the top of tests/progs/kv_cache.c)\n",
            what);
    return 3;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-cache")) {
            opt.no_cache = 1;
            continue;
        }
        if (!v)
            return usage_error(a);
        i++;
        if (!strcmp(a, "--seconds"))
            opt.seconds = (unsigned)atoi(v);
        else if (!strcmp(a, "--threads"))
            opt.threads = (unsigned)atoi(v);
        else if (!strcmp(a, "--ws"))
            opt.ws = (unsigned)atoi(v);
        else if (!strcmp(a, "--outside"))
            opt.outside_mib = (size_t)atol(v);
        else if (!strcmp(a, "--reaction"))
            opt.reaction_file = v;
        else if (!strcmp(a, "--values") && (!strcmp(v, "4k") || !strcmp(v, "mix")))
            opt.mix = !strcmp(v, "mix");
        else
            return usage_error(a);
    }
    if (!opt.threads || opt.threads > 64 || !opt.ws)
        return usage_error("--threads or --ws");

    size_t limit = rcl_limit();
    double mean = opt.mix ? 65536.0 / 13 * 1.5 : 4096;     /* rough, for sizing */
    nkeys = (uint64_t)((double)limit * opt.ws / mean);
    for (nbuckets = 1024; nbuckets < nkeys; nbuckets <<= 1)
        ;
    table = calloc(nbuckets, sizeof(*table));
    lru = rcl_lru_create();
    if (!table || !lru || !rcl_lru_shrinker(lru, "kv-cache", isolate, entry_free, NULL, NULL))
        return 4;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripe[i], NULL);

    char *outside = opt.outside_mib ? pressure(opt.outside_mib << 20, 7) : NULL;
    if (opt.reaction_file)
        return reaction();

    pthread_t th[65];
    for (unsigned i = 0; i < opt.threads; i++)
        pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i);
    pthread_create(&th[opt.threads], NULL, fs_thread, NULL);
    struct timespec run = { (time_t)opt.seconds, 0 };
    nanosleep(&run, NULL);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i <= opt.threads; i++)
        pthread_join(th[i], NULL);

    struct rcl_stats st;
    rcl_stats_get(&st);
    size_t footprint = rcl_footprint();
    printf("kv ops=%lu hits=%lu corrupt=%lu failures=%lu evicted=%lu fs_allocs=%lu "
           "peak_rss_kib=%ld limit=%zu peak_usage=%zu footprint=%zu keys=%llu\n",
           atomic_load(&ops), atomic_load(&hits), atomic_load(&corrupt), atomic_load(&failures),
           atomic_load(&evicted), atomic_load(&fs_allocs), peak_rss_kib(), st.limit, st.peak,
           footprint, (unsigned long long)nkeys);
    fflush(stdout);
    drop_all();
    free(outside);
    return atomic_load(&corrupt) ? 5 : 0;
}
