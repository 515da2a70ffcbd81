/* SPDX-License-Identifier: MIT */
/*
 * bench_pressure - a cache under memory pressure: libreclaim's shrinker and
 * budget beside what a program can do today, a cache trimmed from a PSI
 * callback.
 *
 * The workload: many threads look up random keys (uniform) in a sharded
 * cache; a miss allocates the object (256 B .. 4 KiB, fixed per key), fills
 * it (the "read from disk") and inserts it. The working set is
 * BENCH_WS_FACTOR (default 4) times the budget, so the cache can never hold
 * it and must give memory back all the time. Only the cached objects are
 * counted, in both variants; the cache's tables are plain malloc.
 *
 *   rcl   objects come from rcl_alloc(size, RCL_DEFAULT) under a budget of
 *         BENCH_LIMIT_MB; the cache registers a shrinker that evicts from
 *         the LRU tails. Direct reclaim and the background reclaimer call
 *         it; nothing else trims the cache.
 *   psi_trim  objects come from malloc. A monitor thread stands in for a PSI
 *         trigger as systemd's sd_event_add_memory_pressure() delivers it: a
 *         single event that says nothing of how much to free, after which
 *         the handler drops cache and calls malloc_trim(0), as
 *         sd_event_trim_memory() does. Real PSI cannot be triggered
 *         deterministically, so the event is simulated: every
 *         BENCH_PSI_POLL_MS (10) the monitor reads the cache's usage and
 *         fires when it is at or above BENCH_PSI_THRESHOLD_PCT (90) % of the
 *         same budget; the handler evicts LRU objects down to
 *         BENCH_PSI_TARGET_PCT (50) % of it, then trims. Both defaults favour
 *         the baseline: a real PSI trigger has a window of at least 500 ms
 *         (systemd's default is 200 ms of stall per 2 s), and only fires once
 *         tasks already stall, i.e. past the limit, not before it.
 *
 * Measured over BENCH_SECONDS after a warm-up, per variant, BENCH_REPS
 * times alternately: operations per second, hit ratio, the latency of the
 * allocation call alone and of a whole operation (p50/p99/p99.9/max; the
 * percentiles from a log-linear histogram whose buckets are 1/64 - 1/32
 * of their values wide, placed within their bucket by rank; max exact),
 * the time threads stalled in direct reclaim (rcl_stats) or in the trim
 * handler, and the usage, sampled every millisecond (and for rcl also the
 * exact peak the library keeps) against the limit.
 *
 * psi_trim does not keep the limit (it only acts after it has gone past),
 * so its throughput is partly bought with memory. A last set of runs gives
 * rcl the budget psi_trim really used, on the same working set: the
 * comparison at equal memory, printed after the goals and apart from them.
 *
 * Also measured: the stalled fraction counts direct reclaim and throttled
 * waits (an allocation waiting for the background reclaimer); the hit
 * ratio is held against an exact LRU replaying the threads' own key trace,
 * with the limit's memory and with what the cache held on average;
 * BENCH_SKEW=s (> 1) makes the keys power-law (key = n * u^s) so that
 * what is evicted matters; the knee: rcl paced to shares of its unpaced
 * rate (BENCH_KNEE=0 leaves it out); the library threads' CPU once nothing
 * allocates; and each variant as a child in a real 128 MiB cgroup v1
 * memory group (BENCH_CGROUP=0 leaves it out; skipped without one).
 * BENCH_FOOTPRINT=0 runs rcl with the footprint off (the budget counts
 * charges only, and reclaim never trims the backend), to tell what the
 * trims cost the allocations. BENCH_VERBOSE=1 prints the library's
 * reports.
 */
#include "bench.h"
#include "reclaim.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NSHARDS     64
#define MAX_THREADS 128
#define MAX_REPS    16
#define OBJ_MIN     256
#define OBJ_SPAN    3841          /* sizes OBJ_MIN .. OBJ_MIN + OBJ_SPAN - 1 */
#define EVICT_STEP  32            /* objects evicted per shard visit */
#define BENCH_SHRINK_BATCH 32     /* objects per shrinker call (rcl) */
#define TIMELINE    2048          /* usage samples kept for the plot */
#define TRACE_KEYS  (4u << 20)    /* keys of the trace the ideal LRU replays */
#define CDF_POINTS  160

enum mode { M_RCL, M_PSI, NMODES };
static const char *const mode_name[NMODES] = { "rcl", "psi_trim" };

/* ------------------------------------------------------------------------ */
/* Latency histogram: log-linear, 32 steps per power of two                 */
/* ------------------------------------------------------------------------ */

#define H_LIN   64
#define H_SUB   32
#define H_NB    (H_LIN + 40 * H_SUB)

struct hist {
    uint64_t n[H_NB];
    uint64_t count, max;
};

static unsigned h_bucket(uint64_t v)
{
    unsigned e;

    if (v < H_LIN)
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v);          /* >= 6 */
    if (e > 45)
        return H_NB - 1;
    return H_LIN + (e - 6) * H_SUB + (unsigned)((v >> (e - 5)) & (H_SUB - 1));
}

/* A bucket's lowest value, and how many values it holds. */
static uint64_t h_value(unsigned b)
{
    unsigned e;

    if (b < H_LIN)
        return b;
    e = (b - H_LIN) / H_SUB + 6;
    return ((uint64_t)1 << e) + (uint64_t)((b - H_LIN) % H_SUB) * ((uint64_t)1 << (e - 5));
}

static uint64_t h_width(unsigned b)
{
    return b < H_LIN ? 1 : (uint64_t)1 << ((b - H_LIN) / H_SUB + 1);
}

static inline void h_add(struct hist *h, uint64_t v)
{
    h->n[h_bucket(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

static void h_merge(struct hist *to, const struct hist *from)
{
    for (unsigned i = 0; i < H_NB; i++)
        to->n[i] += from->n[i];
    to->count += from->count;
    if (from->max > to->max)
        to->max = from->max;
}

/*
 * The sample of rank count * pct / 100. Its bucket's lowest value would
 * read low by up to the bucket's width, 1/64 - 1/32 of the value, and by
 * half of it on average; so the bucket's samples are taken as spread
 * evenly over its values, and the one wanted placed by its rank among
 * them (in a bucket of one value, that value).
 */
static double h_pct(const struct hist *h, double pct)
{
    uint64_t want = (uint64_t)((double)h->count * pct / 100.0), seen = 0;

    for (unsigned i = 0; i < H_NB; i++) {
        if (seen + h->n[i] > want) {
            double at = ((double)(want - seen) + 0.5) / (double)h->n[i];
            double v = (double)h_value(i) + at * (double)(h_width(i) - 1);

            return v < (double)h->max ? v : (double)h->max;
        }
        seen += h->n[i];
    }
    return (double)h->max;
}

/* ------------------------------------------------------------------------ */
/* The cache                                                                 */
/* ------------------------------------------------------------------------ */

struct lnode {
    struct lnode *prev, *next;     /* LRU: shard.lru.next is the newest */
};

struct obj {
    struct lnode lru;              /* first: an lnode pointer is the object's */
    struct obj *hnext;             /* hash chain */
    uint64_t key;
    uint32_t size;                 /* bytes allocated, header included */
    unsigned char data[];
};

struct shard {
    pthread_mutex_t lock;
    struct obj **tab;
    size_t nbuckets;
    struct lnode lru;              /* sentinel */
    /* Written under the lock, read without it by the monitor and count(). */
    _Atomic size_t bytes, nobj;
} __attribute__((aligned(64)));

static struct shard shards[NSHARDS];
static enum mode cur_mode;
static _Atomic unsigned evict_cursor;

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static inline size_t obj_size(uint64_t key)
{
    return sizeof(struct obj) + OBJ_MIN + mix(key ^ 0x9e3779b97f4a7c15ULL) % OBJ_SPAN;
}

static void *obj_alloc(size_t n)
{
    return cur_mode == M_RCL ? rcl_alloc(n, RCL_DEFAULT) : malloc(n);
}

static void obj_free(void *p)
{
    if (cur_mode == M_RCL)
        rcl_free(p);
    else
        free(p);
}

static void lru_del(struct obj *o)
{
    o->lru.prev->next = o->lru.next;
    o->lru.next->prev = o->lru.prev;
}

static void lru_add_head(struct shard *s, struct obj *o)
{
    o->lru.next = s->lru.next;
    o->lru.prev = &s->lru;
    s->lru.next->prev = &o->lru;
    s->lru.next = &o->lru;
}

static void hash_del(struct shard *s, struct obj *o)
{
    struct obj **pp = &s->tab[mix(o->key) / NSHARDS % s->nbuckets];

    while (*pp != o)
        pp = &(*pp)->hnext;
    *pp = o->hnext;
}

static void cache_setup(size_t nkeys)
{
    for (int i = 0; i < NSHARDS; i++) {
        struct shard *s = &shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->nbuckets = nkeys / NSHARDS + 1;
        s->tab = calloc(s->nbuckets, sizeof(*s->tab));
        if (!s->tab) {
            perror("calloc");
            exit(1);
        }
        s->lru.next = s->lru.prev = &s->lru;
    }
}

/* Evicts up to max objects from the cold end of one shard; returns how
 * many, and adds their bytes to *bytes. Frees outside the lock. */
static unsigned long shard_evict(struct shard *s, unsigned long max, size_t *bytes)
{
    struct obj *victims = NULL;
    unsigned long n = 0;
    size_t b = 0;

    pthread_mutex_lock(&s->lock);
    while (n < max && s->lru.prev != &s->lru) {
        struct obj *o = (struct obj *)s->lru.prev;
        lru_del(o);
        hash_del(s, o);
        b += o->size;
        o->hnext = victims;
        victims = o;
        n++;
    }
    atomic_store_explicit(&s->bytes, atomic_load_explicit(&s->bytes, memory_order_relaxed) - b,
                          memory_order_relaxed);
    atomic_store_explicit(&s->nobj, atomic_load_explicit(&s->nobj, memory_order_relaxed) - n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    while (victims) {
        struct obj *o = victims;
        victims = o->hnext;
        obj_free(o);
    }
    if (bytes)
        *bytes += b;
    return n;
}

static size_t cache_bytes(void)
{
    size_t b = 0;

    for (int i = 0; i < NSHARDS; i++)
        b += atomic_load_explicit(&shards[i].bytes, memory_order_relaxed);
    return b;
}

static unsigned long cache_objects(void)
{
    unsigned long n = 0;

    for (int i = 0; i < NSHARDS; i++)
        n += atomic_load_explicit(&shards[i].nobj, memory_order_relaxed);
    return n;
}

/* Evicts round-robin over the shards, EVICT_STEP at a time, until `want`
 * objects or `want_bytes` bytes are gone, or a whole round found nothing. */
static unsigned long cache_evict(unsigned long want, size_t want_bytes)
{
    unsigned long freed = 0, idle = 0;
    size_t bytes = 0;

    while (freed < want && bytes < want_bytes && idle < NSHARDS) {
        unsigned i = atomic_fetch_add_explicit(&evict_cursor, 1, memory_order_relaxed) % NSHARDS;
        unsigned long step = want - freed < EVICT_STEP ? want - freed : EVICT_STEP;
        unsigned long n = shard_evict(&shards[i], step, &bytes);

        freed += n;
        idle = n ? 0 : idle + 1;
    }
    return freed;
}

static void cache_drain(void)
{
    for (int i = 0; i < NSHARDS; i++)
        shard_evict(&shards[i], ~0UL, NULL);
}

/* The shrinker libreclaim calls. */
static unsigned long shrink_count(void *priv, struct rcl_shrink_control *sc)
{
    unsigned long n = cache_objects();

    (void)priv;
    (void)sc;
    return n ? n : RCL_SHRINK_EMPTY;
}

static unsigned long shrink_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    return cache_evict(sc->nr_to_scan, SIZE_MAX);
}

/* ------------------------------------------------------------------------ */
/* Workers, sampler, PSI monitor                                             */
/* ------------------------------------------------------------------------ */

struct wstate {
    pthread_t tid;
    uint64_t rng;
    uint64_t ops, hits, misses, fails;
    uint64_t paced_from, paced_ops;    /* pacing: since when, how many */
    uint32_t *trace;                   /* keys asked while measuring */
    size_t ntrace, trace_cap;
    struct hist alloc_lat, op_lat;
} __attribute__((aligned(64)));

static struct wstate *ws;
static int nthreads;
static uint64_t nkeys;
static double key_skew = 1.0;          /* BENCH_SKEW: 1 uniform, > 1 skewed */
static double thread_rate;             /* ops/s per thread; 0 = as fast as it goes */
static _Atomic int stop, measuring;
static _Atomic unsigned long nreports;

/* BENCH_KNEE=0, BENCH_CGROUP=0, BENCH_FOOTPRINT=0: leave that part out. */
static int env_off(const char *name)
{
    const char *v = getenv(name);
    return v && !strcmp(v, "0");
}

static inline uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    return mix(*s);
}

/* Uniform keys, or with BENCH_SKEW = s > 1 a power law (key = nkeys *
 * u^s): low keys are hot, which is what makes the choice of what to evict
 * matter. */
static inline uint64_t next_key(struct wstate *w)
{
    uint64_t r = rng_next(&w->rng);

    if (key_skew == 1.0)
        return r % nkeys;
    double u = (double)(r >> 11) * (1.0 / 9007199254740992.0);
    uint64_t k = (uint64_t)((double)nkeys * pow(u, key_skew));
    return k < nkeys ? k : nkeys - 1;
}

/* Holds a measuring thread to its share of the rate, sleeping off any
 * lead; the warm-up runs free, so the cache is full when pacing starts. */
static void pace(struct wstate *w, int rec)
{
    if (thread_rate <= 0 || !rec)
        return;
    if (!w->paced_from)
        w->paced_from = bench_now_ns();
    if (++w->paced_ops % 16)
        return;
    uint64_t due = w->paced_from + (uint64_t)((double)w->paced_ops * 1e9 / thread_rate);
    uint64_t now = bench_now_ns();
    if (due > now + 20000) {
        struct timespec ts = { 0, (long)(due - now) };
        if (due - now >= 1000000000u)
            ts = (struct timespec){ 0, 999999999L };
        nanosleep(&ts, NULL);
    }
}

static void cache_op(struct wstate *w, int rec)
{
    uint64_t key = next_key(w), t0 = 0, ta, tb;
    struct shard *s = &shards[mix(key) % NSHARDS];
    size_t b = mix(key) / NSHARDS % s->nbuckets;
    struct obj *o;
    size_t n;

    if (rec) {
        t0 = bench_now_ns();
        if (w->ntrace < w->trace_cap)
            w->trace[w->ntrace++] = (uint32_t)key;
    }
    pthread_mutex_lock(&s->lock);
    for (o = s->tab[b]; o && o->key != key; o = o->hnext)
        ;
    if (o) {
        uint32_t sum = 0;
        lru_del(o);
        lru_add_head(s, o);
        for (int i = 0; i < 64; i++)
            sum += o->data[i];
        pthread_mutex_unlock(&s->lock);
        bench_escape(sum);
        w->hits += rec;
        goto out;
    }
    pthread_mutex_unlock(&s->lock);

    n = obj_size(key);
    ta = rec ? bench_now_ns() : 0;
    o = obj_alloc(n);
    if (rec) {
        tb = bench_now_ns();
        h_add(&w->alloc_lat, tb - ta);
        w->misses++;
    }
    if (!o) {
        w->fails += rec;
        goto out;
    }
    o->key = key;
    o->size = (uint32_t)n;
    memset(o->data, (int)(key & 0xff), n - sizeof(*o));
    pthread_mutex_lock(&s->lock);
    {
        struct obj *x;
        for (x = s->tab[b]; x && x->key != key; x = x->hnext)
            ;
        if (x) {                       /* another thread filled it first */
            pthread_mutex_unlock(&s->lock);
            obj_free(o);
            goto out;
        }
    }
    o->hnext = s->tab[b];
    s->tab[b] = o;
    lru_add_head(s, o);
    atomic_store_explicit(&s->bytes, atomic_load_explicit(&s->bytes, memory_order_relaxed) + n,
                          memory_order_relaxed);
    atomic_store_explicit(&s->nobj, atomic_load_explicit(&s->nobj, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
out:
    if (rec) {
        h_add(&w->op_lat, bench_now_ns() - t0);
        w->ops++;
    }
}

static void *worker_main(void *arg)
{
    struct wstate *w = arg;

    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int rec = atomic_load_explicit(&measuring, memory_order_relaxed);
        cache_op(w, rec);
        pace(w, rec);
    }
    return NULL;
}

struct sampler {
    size_t limit;
    size_t max_usage;
    double held_sum;                 /* cache bytes summed over the samples */
    unsigned long samples, over;
    unsigned npoints;
    float t_ms[TIMELINE], usage_mb[TIMELINE];
    /* rcl: direct reclaims and throttled waits since the previous point */
    float direct[TIMELINE], throttled[TIMELINE];
    /* PSI monitor */
    unsigned poll_ms, threshold_pct, target_pct;
    unsigned long events;
    uint64_t handler_ns, trim_ns;
};

static size_t usage_now(void)
{
    return cur_mode == M_RCL ? rcl_usage() : cache_bytes();
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Samples usage every millisecond while measuring; keeps every 5th sample
 * (and all of them around the max) for the timeline. */
static void *sampler_main(void *arg)
{
    struct sampler *sp = arg;
    uint64_t t0 = bench_now_ns();
    unsigned long k = 0, prev_direct = 0, prev_throttled = 0;

    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        size_t u = usage_now();
        if (atomic_load_explicit(&measuring, memory_order_relaxed)) {
            sp->samples++;
            sp->held_sum += (double)cache_bytes();
            sp->over += u > sp->limit;
            if (u > sp->max_usage)
                sp->max_usage = u;
        }
        if (k++ % 5 == 0 && sp->npoints < TIMELINE) {
            unsigned i = sp->npoints++;
            sp->t_ms[i] = (float)((double)(bench_now_ns() - t0) / 1e6);
            sp->usage_mb[i] = (float)((double)u / 1048576.0);
            if (cur_mode == M_RCL) {
                struct rcl_stats st;
                rcl_stats_get(&st);
                sp->direct[i] = (float)(st.direct_reclaims - prev_direct);
                sp->throttled[i] = (float)(st.throttled - prev_throttled);
                prev_direct = st.direct_reclaims;
                prev_throttled = st.throttled;
            }
        }
        sleep_ms(1);
    }
    return NULL;
}

/* The baseline's pressure handling: poll, fire one untyped event, evict
 * what is above the target at that moment, malloc_trim(0). */
static void *psi_main(void *arg)
{
    struct sampler *sp = arg;
    size_t threshold = sp->limit / 100 * sp->threshold_pct;
    size_t target = sp->limit / 100 * sp->target_pct;

    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        sleep_ms(sp->poll_ms);
        size_t usage = cache_bytes();
        if (usage >= threshold) {
            uint64_t t0 = bench_now_ns(), t1;
            /* The amount is fixed when the event arrives: a handler that
             * chased a target while 8 threads refill the cache would never
             * finish. */
            cache_evict(~0UL, usage - target);
            t1 = bench_now_ns();
            malloc_trim(0);
            if (atomic_load_explicit(&measuring, memory_order_relaxed)) {
                sp->events++;
                sp->handler_ns += bench_now_ns() - t0;
                sp->trim_ns += bench_now_ns() - t1;
            }
        }
    }
    return NULL;
}

/* Reports are counted; BENCH_VERBOSE=1 prints them too. */
static void count_report(const char *report, void *arg)
{
    (void)arg;
    if (getenv("BENCH_VERBOSE"))
        fprintf(stderr, "report: %s\n", report);
    atomic_fetch_add(&nreports, 1);
}

/* ------------------------------------------------------------------------ */
/* One run                                                                   */
/* ------------------------------------------------------------------------ */

struct result {
    double ops_per_s, hit_ratio, alloc_per_s, fails;
    double a50, a99, a999, amax;      /* allocation latency, ns */
    double o50, o99, o999, omax;      /* operation latency, ns */
    double stall_ms, stall_frac, direct_reclaims, bg_wakeups;
    double throttled, throttle_ms, bounded, slow, bg_cpu_frac, alloc_mib_s, bg_mib_s;
    double stall_cpu_ms, stall_cpu_frac;  /* of the direct reclaim time, on CPU */
    double lru_hit_ratio, hit_vs_lru, held_frac, lru_held_hit_ratio, hit_vs_lru_held;
    double max_usage, peak_exact, over_samples, samples, events, handler_ms, trim_ms;
    double reports;
    double idle_bg_cpu_frac;          /* library threads' CPU with nothing allocating */
};

static struct sampler samp;
static struct hist last_alloc_hist[NMODES];   /* the CDF plot's, last run each */

/* ------------------------------------------------------------------------ */
/* The ideal LRU the hit ratio is held against                              */
/* ------------------------------------------------------------------------ */

/* Replays the keys the threads asked for (interleaved round-robin, as
 * they ran side by side) through one exact LRU holding `capacity` bytes of
 * the same objects: what an eviction order that is always right gets from
 * the same memory. Counted from its first eviction on: the real cache was
 * warm when its trace began, the replay starts cold. */
static double ideal_lru_hit_ratio(size_t capacity)
{
    uint32_t *prev = malloc(nkeys * sizeof(*prev)), *next = malloc(nkeys * sizeof(*next));
    unsigned char *in = calloc(nkeys, 1);
    const uint32_t NIL = UINT32_MAX;
    uint32_t head = NIL, tail = NIL;
    size_t used = 0, pos = 0;
    uint64_t hits = 0, total = 0;
    int more = 1, full = 0;

    if (!prev || !next || !in) {
        perror("ideal LRU");
        exit(1);
    }
    while (more) {
        more = 0;
        for (int i = 0; i < nthreads; i++) {
            if (pos >= ws[i].ntrace)
                continue;
            more = 1;
            uint32_t k = ws[i].trace[pos];
            total += full;
            if (in[k]) {
                hits += full;
                if (head == k)
                    continue;
                next[prev[k]] = next[k];            /* unlink */
                if (next[k] != NIL)
                    prev[next[k]] = prev[k];
                else
                    tail = prev[k];
            } else {
                in[k] = 1;
                used += obj_size(k);
                while (used > capacity && tail != NIL) {
                    uint32_t v = tail;
                    full = 1;
                    tail = prev[v];
                    if (tail != NIL)
                        next[tail] = NIL;
                    else
                        head = NIL;
                    in[v] = 0;
                    used -= obj_size(v);
                }
            }
            prev[k] = NIL;                          /* to the head */
            next[k] = head;
            if (head != NIL)
                prev[head] = k;
            head = k;
            if (tail == NIL)
                tail = k;
        }
        pos++;
    }
    free(prev);
    free(next);
    free(in);
    if (!full)          /* never filled: it held every key, missing only once each */
        return 1.0;
    return total ? (double)hits / (double)total : 0;
}

/* CPU time of the library's threads (rcl-*), from /proc: background
 * reclaim's cost with nothing allocating. */
static double library_threads_cpu_s(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    double ticks = 0;

    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char path[300], comm[64] = "", buf[1024];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof(comm), f))
            comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, "rcl-", 4))
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof(buf), f)) {
            char *p = strrchr(buf, ')');
            unsigned long ut = 0, st = 0;
            /* after ")": state and 10 more fields, then utime stime */
            if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                            &ut, &st) == 2)
                ticks += (double)(ut + st);
        }
        fclose(f);
    }
    closedir(d);
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

static unsigned idle_ms;   /* > 0: measure the library's idle cost this long */
static int in_cgroup;      /* a child in the cgroup comparison: automatic budget */

static struct result run_once(enum mode mode, size_t limit, unsigned warm_ms, unsigned run_ms,
                              unsigned poll_ms, unsigned thr_pct, unsigned tgt_pct)
{
    struct result r;
    struct rcl_shrinker *sh = NULL;
    struct rcl_stats st0, st1;
    struct hist ha, ho;
    pthread_t samp_tid, psi_tid;
    uint64_t t0, t1;

    memset(&r, 0, sizeof(r));
    memset(&samp, 0, sizeof(samp));
    memset(&st0, 0, sizeof(st0));
    memset(&st1, 0, sizeof(st1));
    samp.limit = limit;
    samp.poll_ms = poll_ms;
    samp.threshold_pct = thr_pct;
    samp.target_pct = tgt_pct;
    cur_mode = mode;
    atomic_store(&stop, 0);
    atomic_store(&measuring, 0);
    atomic_store(&nreports, 0);
    for (int i = 0; i < nthreads; i++) {
        uint32_t *tr = ws[i].trace;
        memset(&ws[i], 0, sizeof(ws[i]));
        ws[i].trace = tr;
        ws[i].trace_cap = TRACE_KEYS / (in_cgroup ? 4 : 1) / (size_t)nthreads;
        /* The trace is the benchmark's memory, not the cache's: resident
         * before the library starts, the footprint counts it in the
         * program's baseline instead of taking it from the cache's budget
         * as it fills (16 MiB against a 32 MiB budget). */
        memset(ws[i].trace, 0, ws[i].trace_cap * sizeof(*ws[i].trace));
    }

    if (mode == M_RCL) {
        static const struct rcl_shrinker_ops ops = { shrink_count, shrink_scan };
        struct rcl_config cfg;
        int ret;

        rcl_config_default(&cfg);
        cfg.limit = in_cgroup ? 0 : limit;       /* in a cgroup: what a user gets */
        cfg.pressure = in_cgroup;
        cfg.background = 1;
        if (env_off("BENCH_FOOTPRINT"))
            cfg.footprint = RCL_FOOTPRINT_OFF;
        ret = rcl_init(&cfg);
        if (ret) {
            fprintf(stderr, "bench_pressure: rcl_init: %s\n", strerror(-ret));
            exit(1);
        }
        rcl_set_report_fn(count_report, NULL);
        /* Objects average 2 KiB and each eviction is a free: the default
         * batch of 128 would make every shrinker call free 256 KiB, and an
         * allocation that reclaims wait for all of it. A latency-minded
         * cache sets a smaller batch (the kernel's shrinkers set theirs). */
        static const struct rcl_shrinker_opts opts = { .batch = BENCH_SHRINK_BATCH };
        sh = rcl_shrinker_register("bench-cache", &ops, NULL, &opts);
        if (!sh) {
            perror("rcl_shrinker_register");
            exit(1);
        }
    }
    pthread_create(&samp_tid, NULL, sampler_main, &samp);
    if (mode == M_PSI)
        pthread_create(&psi_tid, NULL, psi_main, &samp);
    for (int i = 0; i < nthreads; i++) {
        ws[i].rng = mix((uint64_t)i * 7919 + 1);
        pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
    }
    sleep_ms(warm_ms);
    if (mode == M_RCL)
        rcl_stats_get(&st0);
    t0 = bench_now_ns();
    atomic_store(&measuring, 1);
    sleep_ms(run_ms);
    atomic_store(&measuring, 0);
    t1 = bench_now_ns();
    if (mode == M_RCL)
        rcl_stats_get(&st1);
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads; i++)
        pthread_join(ws[i].tid, NULL);
    pthread_join(samp_tid, NULL);
    if (mode == M_PSI)
        pthread_join(psi_tid, NULL);
    if (mode == M_RCL && idle_ms) {
        /* The cache stays full and nothing allocates: what do the
         * library's threads cost now? */
        sleep_ms(200);   /* keeping ahead stops 100 ms after the last work */
        double c0 = library_threads_cpu_s();
        uint64_t i0 = bench_now_ns();
        sleep_ms(idle_ms);
        r.idle_bg_cpu_frac = (library_threads_cpu_s() - c0) / ((double)(bench_now_ns() - i0) / 1e9);
    }

    memset(&ha, 0, sizeof(ha));
    memset(&ho, 0, sizeof(ho));
    {
        double secs = (double)(t1 - t0) / 1e9;
        uint64_t ops = 0, hits = 0, misses = 0, fails = 0;

        for (int i = 0; i < nthreads; i++) {
            ops += ws[i].ops;
            hits += ws[i].hits;
            misses += ws[i].misses;
            fails += ws[i].fails;
            h_merge(&ha, &ws[i].alloc_lat);
            h_merge(&ho, &ws[i].op_lat);
        }
        r.ops_per_s = (double)ops / secs;
        r.hit_ratio = ops ? (double)hits / (double)ops : 0;
        r.alloc_per_s = (double)misses / secs;
        r.fails = (double)fails;
        r.stall_ms = (double)(st1.direct_stall_ns - st0.direct_stall_ns) / 1e6;
        r.throttle_ms = (double)(st1.throttle_ns - st0.throttle_ns) / 1e6;
        r.stall_cpu_ms = (double)(st1.direct_cpu_ns - st0.direct_cpu_ns) / 1e6;
        r.stall_cpu_frac = r.stall_cpu_ms / 1e3 / (secs * nthreads);
        /* Throttled waits are stalls too: the thread could not allocate. */
        r.stall_frac = (r.stall_ms + r.throttle_ms) / 1e3 / (secs * nthreads);
        r.direct_reclaims = (double)(st1.direct_reclaims - st0.direct_reclaims);
        r.bg_wakeups = (double)(st1.background_wakeups - st0.background_wakeups);
        r.throttled = (double)(st1.throttled - st0.throttled);
        r.bounded = (double)(st1.direct_bounded - st0.direct_bounded);
        r.slow = (double)(st1.slow_reclaims - st0.slow_reclaims);
        r.bg_cpu_frac = (double)(st1.background_cpu_ns - st0.background_cpu_ns) / 1e9 / secs;
        r.bg_mib_s = (double)(st1.background_reclaimed - st0.background_reclaimed) / 1048576.0 / secs;
        {
            double bytes = 0;
            for (int i = 0; i < nthreads; i++)
                bytes += (double)ws[i].misses * (sizeof(struct obj) + OBJ_MIN + OBJ_SPAN / 2);
            r.alloc_mib_s = bytes / 1048576.0 / secs;
        }
        r.lru_hit_ratio = ideal_lru_hit_ratio(limit);
        r.hit_vs_lru = r.lru_hit_ratio > 0 ? r.hit_ratio / r.lru_hit_ratio : 0;
        /* The same LRU holding what the cache really held on average
         * tells apart evicting the wrong things from holding less. */
        double held = samp.samples ? samp.held_sum / (double)samp.samples : 0;
        r.held_frac = held / (double)limit;
        r.lru_held_hit_ratio = ideal_lru_hit_ratio((size_t)held);
        r.hit_vs_lru_held = r.lru_held_hit_ratio > 0 ? r.hit_ratio / r.lru_held_hit_ratio : 0;
    }
    last_alloc_hist[mode] = ha;
    r.a50 = h_pct(&ha, 50);
    r.a99 = h_pct(&ha, 99);
    r.a999 = h_pct(&ha, 99.9);
    r.amax = (double)ha.max;
    r.o50 = h_pct(&ho, 50);
    r.o99 = h_pct(&ho, 99);
    r.o999 = h_pct(&ho, 99.9);
    r.omax = (double)ho.max;
    r.max_usage = (double)samp.max_usage;
    r.peak_exact = mode == M_RCL ? (double)st1.peak : (double)samp.max_usage;
    r.over_samples = (double)samp.over;
    r.samples = (double)samp.samples;
    r.events = (double)samp.events;
    r.handler_ms = (double)samp.handler_ns / 1e6;
    r.trim_ms = (double)samp.trim_ns / 1e6;
    r.reports = (double)atomic_load(&nreports);

    cache_drain();
    if (mode == M_RCL) {
        rcl_shrinker_unregister(sh);
        rcl_shutdown();
    } else {
        malloc_trim(0);
    }
    return r;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

#define FIELDS(X)                                                                   \
    X(ops_per_s, "ops/s")                  X(hit_ratio, "hit ratio")                  \
    X(alloc_per_s, "allocations/s")        X(fails, "failed allocations")            \
    X(a50, "alloc p50 ns")                 X(a99, "alloc p99 ns")                     \
    X(a999, "alloc p99.9 ns")              X(amax, "alloc max ns")                    \
    X(o50, "op p50 ns")                    X(o99, "op p99 ns")                        \
    X(o999, "op p99.9 ns")                 X(omax, "op max ns")                       \
    X(stall_ms, "direct reclaim stall ms") X(throttle_ms, "throttled ms")             \
    X(stall_frac, "stalled fraction")      X(throttled, "throttled waits")            \
    X(stall_cpu_ms, "direct reclaim CPU ms") X(stall_cpu_frac, "stalled on CPU fraction") \
    X(direct_reclaims, "direct reclaims")  X(bounded, "direct stopped at bound")      \
    X(slow, "direct reclaims > 1 ms")      X(bg_wakeups, "background wake-ups")       \
    X(bg_cpu_frac, "background CPU share") X(alloc_mib_s, "allocated MiB/s")          \
    X(bg_mib_s, "background freed MiB/s")  X(lru_hit_ratio, "ideal LRU hit ratio")    \
    X(hit_vs_lru, "hit ratio / ideal LRU")  X(held_frac, "cache held / limit (mean)")   \
    X(lru_held_hit_ratio, "ideal LRU of held, hit") X(hit_vs_lru_held, "hit / ideal LRU of held") \
    X(events, "pressure events")           X(handler_ms, "event handler ms")          \
    X(trim_ms, "malloc_trim ms")           X(max_usage, "usage max (sampled) B")      \
    X(peak_exact, "usage peak (exact) B")  X(over_samples, "samples over limit")      \
    X(samples, "samples")                  X(reports, "library reports")

/*
 * Not a goal's measure, an explanation of one: psi_trim does not keep the
 * limit, so its throughput is bought with memory. Here rcl gets the budget
 * psi_trim really used (its median sampled peak, whole MiB) on the same
 * working set, once per run, beside that run's psi_trim figures.
 */
static void equal_memory(struct result (*res)[MAX_REPS], int reps, unsigned warm_ms,
                         unsigned run_ms, unsigned poll_ms, unsigned thr_pct, unsigned tgt_pct)
{
    double v[MAX_REPS], ops[MAX_REPS], hit[MAX_REPS], p999[MAX_REPS], peak[MAX_REPS];

    for (int r = 0; r < reps; r++)
        v[r] = res[M_PSI][r].max_usage;
    size_t eq = ((size_t)bench_stat_of(v, reps).med + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
    for (int r = 0; r < reps; r++) {
        struct result e = run_once(M_RCL, eq, warm_ms, run_ms, poll_ms, thr_pct, tgt_pct);
        v[r] = e.ops_per_s / res[M_PSI][r].ops_per_s;
        ops[r] = e.ops_per_s;
        hit[r] = e.hit_ratio;
        p999[r] = e.a999;
        peak[r] = e.peak_exact / (double)eq;
    }
    struct bench_stat rs = bench_stat_of(v, reps), so = bench_stat_of(ops, reps),
                      sh = bench_stat_of(hit, reps), sp = bench_stat_of(p999, reps),
                      sk = bench_stat_of(peak, reps);
    printf("\nat equal memory: rcl with a %zu MiB budget (psi_trim's peak), same working set\n",
           eq >> 20);
    printf("   ops/s %.4g [%.3g..%.3g], hit ratio %.4f, alloc p99.9 %.4g us, usage peak / "
           "budget %.4f\n", so.med, so.min, so.max, sh.med, sp.med / 1e3, sk.max);
    printf("throughput rcl / psi_trim at equal memory: %5.2f [%4.2f..%4.2f]\n",
           rs.med, rs.min, rs.max);
    bj_obj("equal_memory");
    bj_num("limit", (double)eq);
    bj_stat("ops_per_s", so);
    bj_stat("hit_ratio", sh);
    bj_stat("alloc_p999_ns", sp);
    bj_stat("peak_over_limit", sk);
    bj_stat("throughput_ratio", rs);
    bj_end_obj();
}

/* The allocation latency CDF of each variant's last run, thinned to about
 * CDF_POINTS points (every bucket in the tail above p99 kept). A point is
 * a bucket's highest value and the share of samples up to and including
 * the bucket, which all lie at or below it: at the bucket's lowest value,
 * as it was, every point stood up to a bucket's width to the left of the
 * curve. */
static void cdf_json(void)
{
    bj_obj("cdf");
    for (int m = 0; m < NMODES; m++) {
        const struct hist *h = &last_alloc_hist[m];
        uint64_t seen = 0, step = h->count / CDF_POINTS + 1, last = 0;
        bj_obj(mode_name[m]);
        bj_arr("ns");
        for (unsigned i = 0; i < H_NB; i++) {
            seen += h->n[i];
            if (h->n[i] && (seen - last >= step || (double)seen >= 0.99 * (double)h->count)) {
                uint64_t top = h_value(i) + h_width(i) - 1;

                bj_num(NULL, (double)(top < h->max ? top : h->max));
                last = seen;
            }
        }
        bj_end_arr();
        bj_arr("frac");
        seen = last = 0;
        for (unsigned i = 0; i < H_NB; i++) {
            seen += h->n[i];
            if (h->n[i] && (seen - last >= step || (double)seen >= 0.99 * (double)h->count)) {
                bj_num(NULL, (double)seen / (double)(h->count ? h->count : 1));
                last = seen;
            }
        }
        bj_end_arr();
        bj_end_obj();
    }
    bj_end_obj();
}

/*
 * The knee: rcl alone, its threads held to a share of the unpaced
 * throughput. Below the knee the background reclaimer frees as fast as
 * the threads allocate and they rarely stall; above it they are throttled.
 * One background CPU-second frees bg_mib_s / bg_cpu_frac MiB: that rate is
 * where the knee should be, given a CPU for the background reclaimer.
 * Beside each share, psi_trim held to the same rate: the same allocations
 * without the library, whose slowest ones (page faults, the backend's own
 * locks and system calls, a thread preempted between its two clock reads)
 * are the floor any allocation's maximum here stands on.
 */
static void knee(size_t limit, double unpaced_ops, unsigned warm_ms, unsigned run_ms)
{
    static const double share[] = { 0.05, 0.1, 0.25, 0.5, 0.75 };

    printf("\nthe knee: rcl held to a share of its unpaced %.3g ops/s; psi_trim at the same "
           "rate beside it\n", unpaced_ops);
    printf("%8s %12s %12s %12s %10s %10s %10s %12s %10s %14s %12s\n", "share", "ops/s",
           "alloc MiB/s", "bg MiB/s", "bg CPU %", "stalled %", "thr/s", "p99.9 us", "max us",
           "psi p99.9 us", "psi max us");
    bj_arr("knee");
    for (unsigned i = 0; i < sizeof(share) / sizeof(share[0]); i++) {
        thread_rate = unpaced_ops * share[i] / nthreads;
        struct result r = run_once(M_RCL, limit, warm_ms, run_ms, 10, 90, 50);
        struct result b = run_once(M_PSI, limit, warm_ms, run_ms, 10, 90, 50);
        thread_rate = 0;
        printf("%8.2f %12.4g %12.1f %12.1f %10.2f %10.3f %10.1f %12.1f %10.1f %14.1f %12.1f\n",
               share[i], r.ops_per_s, r.alloc_mib_s, r.bg_mib_s, 100 * r.bg_cpu_frac,
               100 * r.stall_frac, r.throttled / ((double)run_ms / 1e3), r.a999 / 1e3,
               r.amax / 1e3, b.a999 / 1e3, b.amax / 1e3);
        bj_obj(NULL);
        bj_num("share", share[i]);
        bj_num("ops_per_s", r.ops_per_s);
        bj_num("alloc_mib_s", r.alloc_mib_s);
        bj_num("bg_mib_s", r.bg_mib_s);
        bj_num("bg_cpu_frac", r.bg_cpu_frac);
        bj_num("stall_frac", r.stall_frac);
        bj_num("throttled", r.throttled);
        bj_num("a999", r.a999);
        bj_num("amax", r.amax);
        bj_num("bg_mib_per_cpu_s", r.bg_cpu_frac > 0 ? r.bg_mib_s / r.bg_cpu_frac : 0);
        bj_num("psi_ops_per_s", b.ops_per_s);
        bj_num("psi_a999", b.a999);
        bj_num("psi_amax", b.amax);
        bj_end_obj();
    }
    bj_end_arr();
}

/* ------------------------------------------------------------------------ */
/* The comparison inside a real memory cgroup                                */
/* ------------------------------------------------------------------------ */

/*
 * Each variant runs as a child process in one fresh 128 MiB cgroup v1
 * memory group (no swap), the same workload as above: rcl with the budget
 * a user gets by default there (automatic: the cgroup's limit less a
 * margin, pressure followed), psi_trim with that same figure as its cache
 * size, and psi_trim with a quarter of it (a cache sized so that its
 * overshoot fits). Per variant: killed or not (exit status, the group's
 * oom_kill count and failcnt), the group's peak usage, throughput and hit
 * ratio. The group is removed after each.
 */
#define CG_LIMIT ((size_t)128 << 20)

static int cg_write(const char *dir, const char *name, const char *val)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, val, strlen(val));
    int err = n < 0 ? -errno : 0;
    close(fd);
    return err;
}

static long long cg_read(const char *dir, const char *name, const char *key)
{
    char path[512], line[256];
    long long v = -1;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        size_t kl = key ? strlen(key) : 0;
        if (!key) {
            v = atoll(line);
            break;
        }
        if (!strncmp(line, key, kl) && line[kl] == ' ') {
            v = atoll(line + kl + 1);
            break;
        }
    }
    fclose(f);
    return v;
}

/* The child: already in the group; runs one variant and prints its
 * figures on one line. */
static int cg_child(const char *mode, size_t budget, unsigned run_ms)
{
    enum mode m = strcmp(mode, "rcl") ? M_PSI : M_RCL;
    struct result r = run_once(m, budget, 1000, run_ms, 10, 90, 50);
    printf("RESULT %zu %.6g %.6g %.6g %.6g %.6g %.6g\n", budget, r.ops_per_s, r.hit_ratio,
           r.hit_vs_lru, r.a999, r.amax, r.fails);
    return 0;
}

struct cg_result {
    const char *name;
    size_t budget;
    int ran, killed, status;
    long long oom_kills, failcnt, peak;
    double ops, hit, hit_vs_lru, a999, amax, fails;
};

static void cg_variant(const char *exe, struct cg_result *cr, const char *mode, size_t budget,
                       unsigned run_ms)
{
    char dir[256], val[64];
    int fds[2];

    snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory/bench-pressure-%d-%s-%zu",
             (int)getpid(), mode, budget >> 20);
    if (mkdir(dir, 0755) != 0)
        return;
    snprintf(val, sizeof(val), "%zu", CG_LIMIT);
    cg_write(dir, "memory.limit_in_bytes", val);
    cg_write(dir, "memory.memsw.limit_in_bytes", val);   /* only with swap accounting */
    if (pipe(fds) != 0) {
        rmdir(dir);
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char me[32], b[32], ms[32];
        close(fds[0]);
        dup2(fds[1], 1);
        snprintf(me, sizeof(me), "%d", (int)getpid());
        if (cg_write(dir, "cgroup.procs", me) != 0)
            _exit(3);
        snprintf(b, sizeof(b), "%zu", budget);
        snprintf(ms, sizeof(ms), "%u", run_ms);
        execl(exe, exe, "--cgroup-child", mode, b, ms, (char *)NULL);
        _exit(4);
    }
    close(fds[1]);
    char buf[512] = "";
    size_t len = 0;
    ssize_t n;
    while (pid > 0 && len < sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(fds[0]);
    int st = 0;
    if (pid > 0)
        waitpid(pid, &st, 0);
    cr->ran = pid > 0;
    cr->status = st;
    cr->killed = WIFSIGNALED(st);
    cr->oom_kills = cg_read(dir, "memory.oom_control", "oom_kill");
    cr->failcnt = cg_read(dir, "memory.failcnt", NULL);
    cr->peak = cg_read(dir, "memory.max_usage_in_bytes", NULL);
    char *line = strstr(buf, "RESULT ");
    if (line)
        sscanf(line, "RESULT %zu %lf %lf %lf %lf %lf %lf", &cr->budget, &cr->ops, &cr->hit,
               &cr->hit_vs_lru, &cr->a999, &cr->amax, &cr->fails);
    for (int t = 0; t < 100 && rmdir(dir) != 0 && errno == EBUSY; t++)
        sleep_ms(20);
}

static void cgroup_comparison(const char *exe, unsigned run_ms)
{
    struct cg_result res[3];
    size_t base;

    if (access("/sys/fs/cgroup/memory/cgroup.procs", W_OK) != 0) {
        printf("\nin a 128 MiB memory cgroup: skipped (no writable cgroup v1 memory hierarchy at "
               "/sys/fs/cgroup/memory; needs root)\n");
        return;
    }
    /* The automatic budget a 128 MiB group gives (the child computes it
     * the same way, inside the group). */
    {
        char dir[256], me[32];
        snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory/bench-pressure-%d-probe", (int)getpid());
        base = CG_LIMIT / 8 * 7;
        if (mkdir(dir, 0755) == 0) {
            char val[64];
            snprintf(val, sizeof(val), "%zu", CG_LIMIT);
            cg_write(dir, "memory.limit_in_bytes", val);
            fflush(NULL);
            pid_t pid = fork();
            if (pid == 0) {
                snprintf(me, sizeof(me), "%d", (int)getpid());
                cg_write(dir, "cgroup.procs", me);
                _exit((int)(rcl_auto_limit() >> 20) & 0xff);
            }
            int st = 0;
            if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st))
                base = (size_t)WEXITSTATUS(st) << 20;
            for (int t = 0; t < 100 && rmdir(dir) != 0 && errno == EBUSY; t++)
                sleep_ms(20);
        }
    }
    memset(res, 0, sizeof(res));
    res[0].name = "rcl (automatic budget)";
    res[1].name = "psi_trim (same cache size)";
    res[2].name = "psi_trim (a quarter of it)";
    cg_variant(exe, &res[0], "rcl", base, run_ms);
    cg_variant(exe, &res[1], "psi_trim", base, run_ms);
    cg_variant(exe, &res[2], "psi_trim", base / 4, run_ms);

    printf("\nin a real 128 MiB cgroup v1 memory group, %d threads, working set %s the cache "
           "size, %u ms each\n", nthreads, "4x", run_ms);
    printf("%-28s %8s %7s %6s %8s %9s %10s %7s %9s %10s %9s\n", "variant", "cache MiB", "killed",
           "ooms", "failcnt", "peak MiB", "ops/s", "hit", "hit/LRU", "p99.9 us", "max us");
    bj_arr("cgroup");
    for (int i = 0; i < 3; i++) {
        struct cg_result *c = &res[i];
        if (!c->ran)
            continue;
        printf("%-28s %8zu %7s %6lld %8lld %9.1f %10.4g %7.4f %9.4f %10.1f %9.1f\n", c->name,
               (c->budget ? c->budget : (i == 2 ? base / 4 : base)) >> 20,
               c->killed ? (WTERMSIG(c->status) == SIGKILL ? "KILLED" : "signal") : "no",
               c->oom_kills, c->failcnt, (double)c->peak / 1048576.0, c->ops, c->hit,
               c->hit_vs_lru, c->a999 / 1e3, c->amax / 1e3);
        bj_obj(NULL);
        bj_str("variant", c->name);
        bj_num("cache_bytes", (double)(c->budget ? c->budget : (i == 2 ? base / 4 : base)));
        bj_bool("killed", c->killed);
        bj_num("exit_status", c->status);
        bj_num("oom_kills", (double)c->oom_kills);
        bj_num("failcnt", (double)c->failcnt);
        bj_num("peak_bytes", (double)c->peak);
        bj_num("ops_per_s", c->ops);
        bj_num("hit_ratio", c->hit);
        bj_num("hit_vs_lru", c->hit_vs_lru);
        bj_num("a999_ns", c->a999);
        bj_num("amax_ns", c->amax);
        bj_end_obj();
    }
    bj_end_arr();
}

int main(int argc, char **argv)
{
    /* "--cgroup-child MODE BYTES MS" is this program re-run by itself
     * inside the cgroup (cg_variant); anything else is the user's. */
    if (!(argc == 5 && !strcmp(argv[1], "--cgroup-child")))
        bench_args(argc, argv, "bench_pressure", "A cache under memory pressure: a shrinker and budget beside a cache trimmed from a PSI signal.");
    int quick = bench_quick();
    int reps = bench_reps(1, 3, MAX_REPS);
    size_t limit = (size_t)bench_env_long("BENCH_LIMIT_MB", 32) << 20;
    unsigned factor = (unsigned)bench_env_long("BENCH_WS_FACTOR", 4);
    unsigned run_ms = (unsigned)bench_env_long("BENCH_SECONDS", 2) * 1000;
    unsigned warm_ms = quick ? 200 : 500;
    unsigned poll_ms = (unsigned)bench_env_long("BENCH_PSI_POLL_MS", 10);
    unsigned thr_pct = (unsigned)bench_env_long("BENCH_PSI_THRESHOLD_PCT", 90);
    unsigned tgt_pct = (unsigned)bench_env_long("BENCH_PSI_TARGET_PCT", 50);
    static struct result res[NMODES][MAX_REPS];
    struct bench_stat st[NMODES];
    double v[MAX_REPS], ratio[MAX_REPS];

    if (quick)
        run_ms = 300;
    const char *child_mode = NULL;
    if (argc == 5 && !strcmp(argv[1], "--cgroup-child")) {
        /* One variant inside the cgroup (cgroup_comparison runs it). */
        child_mode = argv[2];
        in_cgroup = 1;
        limit = strcmp(child_mode, "rcl") ? (size_t)atoll(argv[3]) : rcl_auto_limit();
        run_ms = (unsigned)atoi(argv[4]);
    }
    nthreads = (int)bench_env_long("BENCH_PRESSURE_THREADS", 8);
    if (nthreads > MAX_THREADS)
        nthreads = MAX_THREADS;
    if (nthreads < 1)
        nthreads = 1;
    {
        const char *sk = getenv("BENCH_SKEW");
        if (sk && atof(sk) >= 1.0)
            key_skew = atof(sk);
    }
    nkeys = (uint64_t)limit * factor / (sizeof(struct obj) + OBJ_MIN + OBJ_SPAN / 2);
    ws = aligned_alloc(64, sizeof(*ws) * (size_t)nthreads);
    if (!ws) {
        perror("aligned_alloc");
        return 1;
    }
    cache_setup(nkeys);
    for (int i = 0; i < nthreads; i++) {
        ws[i].trace = malloc(TRACE_KEYS / (size_t)nthreads * sizeof(uint32_t));
        if (!ws[i].trace) {
            perror("malloc");
            return 1;
        }
    }
    if (child_mode)
        return cg_child(child_mode, limit, run_ms);

    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < NMODES; k++) {
            int m = (k + r) % NMODES;
            res[m][r] = run_once((enum mode)m, limit, warm_ms, run_ms, poll_ms, thr_pct, tgt_pct);
        }
        ratio[r] = res[M_RCL][r].ops_per_s / res[M_PSI][r].ops_per_s;
    }

    bench_print_header("reclaim under pressure: a cache 4x its budget");
    printf("   limit %zu MiB, working set %ux (%llu keys, 256 B..4 KiB, %s), %d threads, "
           "%u ms x %d runs per variant\n", limit >> 20, factor, (unsigned long long)nkeys,
           key_skew == 1.0 ? "uniform" : "skewed (BENCH_SKEW)", nthreads, run_ms, reps);
    printf("   psi_trim: event when usage >= %u%% of the limit (polled every %u ms), "
           "evict to %u%%, malloc_trim(0)\n", thr_pct, poll_ms, tgt_pct);
    /* The backend library, linked in for libreclaim, replaces malloc for the
     * whole process: both variants then allocate from it. */
    printf("   both variants allocate from %s%s\n", BENCH_BACKEND,
           strcmp(BENCH_BACKEND, "libc") ? " (it replaces malloc; malloc_trim then frees "
                                           "nothing of it)" : "");
    printf("   latency percentiles: interpolated by rank within a histogram bucket "
           "(1.6 - 3.1 %% wide); max exact\n\n");
    printf("%-26s %30s %30s\n", "median [min..max]", mode_name[M_RCL], mode_name[M_PSI]);

    bench_json_begin("pressure");
    bj_num("limit", (double)limit);
    bj_num("ws_factor", factor);
    bj_num("skew", key_skew);
    bj_num("keys", (double)nkeys);
    bj_num("threads", nthreads);
    bj_num("run_ms", run_ms);
    bj_num("reps", reps);
    bj_str("percentiles", "interpolated within a histogram bucket");
    bj_str("cdf_ns", "a bucket's highest value");
    bj_obj("psi");
    bj_num("poll_ms", poll_ms);
    bj_num("threshold_pct", thr_pct);
    bj_num("target_pct", tgt_pct);
    bj_end_obj();
    bj_obj("results");
#define X(f, label)                                                                 \
    for (int m = 0; m < NMODES; m++) {                                              \
        for (int r = 0; r < reps; r++)                                              \
            v[r] = res[m][r].f;                                                     \
        st[m] = bench_stat_of(v, reps);                                             \
    }                                                                               \
    printf("%-26s %12.4g [%7.3g..%7.3g] %12.4g [%7.3g..%7.3g]\n", label,            \
           st[0].med, st[0].min, st[0].max, st[1].med, st[1].min, st[1].max);       \
    bj_obj(#f);                                                                     \
    bj_stat(mode_name[0], st[0]);                                                   \
    bj_stat(mode_name[1], st[1]);                                                   \
    bj_end_obj();
    FIELDS(X)
#undef X
    bj_end_obj();
    {
        struct bench_stat rs = bench_stat_of(ratio, reps);
        double worst_p999 = 0, worst_max = 0, worst_peak = 0, worst_psi_peak = 0;
        double worst_stall = 0, worst_lru = 1e9;

        for (int r = 0; r < reps; r++) {
            const struct result *x = &res[M_RCL][r];
            worst_p999 = x->a999 > worst_p999 ? x->a999 : worst_p999;
            worst_max = x->amax > worst_max ? x->amax : worst_max;
            worst_peak = x->peak_exact > worst_peak ? x->peak_exact : worst_peak;
            worst_stall = x->stall_frac > worst_stall ? x->stall_frac : worst_stall;
            worst_lru = x->hit_vs_lru < worst_lru ? x->hit_vs_lru : worst_lru;
            if (res[M_PSI][r].max_usage > worst_psi_peak)
                worst_psi_peak = res[M_PSI][r].max_usage;
        }
        printf("\nrcl stalled fraction (worst): %7.4f                goal <= 0.02     %s\n",
               worst_stall, worst_stall <= 0.02 ? "met" : "MISSED");
        printf("rcl alloc p99.9 (worst)   : %8.1f us               goal <= 100 us   %s\n",
               worst_p999 / 1e3, worst_p999 <= 100e3 ? "met" : "MISSED");
        printf("rcl alloc max (worst)     : %8.1f us               goal <= 2000 us  %s\n",
               worst_max / 1e3, worst_max <= 2e6 ? "met" : "MISSED");
        printf("rcl usage peak / limit    : %8.4f                  goal <= 1        %s\n",
               worst_peak / (double)limit, worst_peak <= (double)limit ? "met" : "MISSED");
        printf("rcl hit ratio / ideal LRU : %8.4f (worst)          goal >= 0.95     %s\n",
               worst_lru, worst_lru >= 0.95 ? "met" : "MISSED");
        printf("throughput rcl / psi_trim : %5.2f [%4.2f..%4.2f]   (psi_trim does not keep the "
               "limit: see equal memory)\n", rs.med, rs.min, rs.max);
        printf("psi_trim usage max / limit: %8.4f (sampled every ms)\n",
               worst_psi_peak / (double)limit);
        bj_obj("goals");
        bj_stat("throughput_ratio", rs);
        bj_num("rcl_stall_frac_worst", worst_stall);
        bj_bool("stall_met", worst_stall <= 0.02);
        bj_num("rcl_alloc_p999_ns_worst", worst_p999);
        bj_bool("p999_met", worst_p999 <= 100e3);
        bj_num("rcl_alloc_max_ns_worst", worst_max);
        bj_bool("max_met", worst_max <= 2e6);
        bj_num("rcl_peak_over_limit", worst_peak / (double)limit);
        bj_bool("limit_met", worst_peak <= (double)limit);
        bj_num("rcl_hit_vs_lru_worst", worst_lru);
        bj_bool("hit_vs_lru_met", worst_lru >= 0.95);
        bj_num("psi_peak_over_limit", worst_psi_peak / (double)limit);
        bj_end_obj();
    }
    cdf_json();
    equal_memory(res, reps, warm_ms, run_ms, poll_ms, thr_pct, tgt_pct);
    if (!env_off("BENCH_KNEE")) {
        for (int r = 0; r < reps; r++)
            v[r] = res[M_RCL][r].ops_per_s;
        knee(limit, bench_stat_of(v, reps).med, warm_ms, quick ? 300 : run_ms);
    }
    if (!env_off("BENCH_CGROUP"))
        cgroup_comparison("/proc/self/exe", quick ? 1000 : 5000);
    /* A timeline per variant, from one more run of each from a cold start
     * (no warm-up): how usage climbs to the limit and is held there; then,
     * for rcl, what the library's threads cost once nothing allocates. */
    bj_obj("timeline");
    for (int m = 0; m < NMODES; m++) {
        idle_ms = m == M_RCL ? (quick ? 300 : 1000) : 0;
        struct result t = run_once((enum mode)m, limit, 0, quick ? 200 : 1000, poll_ms, thr_pct,
                                   tgt_pct);
        idle_ms = 0;
        bj_obj(mode_name[m]);
        bj_arr("t_ms");
        for (unsigned i = 0; i < samp.npoints; i++)
            bj_num(NULL, samp.t_ms[i]);
        bj_end_arr();
        bj_arr("usage_mb");
        for (unsigned i = 0; i < samp.npoints; i++)
            bj_num(NULL, samp.usage_mb[i]);
        bj_end_arr();
        if (m == M_RCL) {
            struct rcl_config cfg;
            rcl_config_default(&cfg);
            bj_arr("direct");
            for (unsigned i = 0; i < samp.npoints; i++)
                bj_num(NULL, samp.direct[i]);
            bj_end_arr();
            bj_arr("throttled");
            for (unsigned i = 0; i < samp.npoints; i++)
                bj_num(NULL, samp.throttled[i]);
            bj_end_arr();
            /* The watermarks as usage levels: limit less their headroom. */
            bj_num("min_mb", (double)(limit - limit / 100 * cfg.min_pct) / 1048576.0);
            bj_num("low_mb", (double)(limit - limit / 100 * cfg.low_pct) / 1048576.0);
            bj_num("high_mb", (double)(limit - limit / 100 * cfg.high_pct) / 1048576.0);
            bj_num("idle_bg_cpu_frac", t.idle_bg_cpu_frac);
            printf("\nlibrary threads' CPU with nothing allocating: %.2f %% of one CPU   "
                   "goal <= 2 %%   %s\n", 100 * t.idle_bg_cpu_frac,
                   t.idle_bg_cpu_frac <= 0.02 ? "met" : "MISSED");
        }
        bj_end_obj();
    }
    bj_end_obj();
    bench_json_end();
    return 0;
}
