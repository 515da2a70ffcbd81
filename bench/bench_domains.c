/* SPDX-License-Identifier: MIT */
/*
 * bench_domains - what fine-grained reclaim domains buy direct reclaim
 * (Dave Chinner on dm-devel, "Re: [PATCH 0/6] Overhaul memalloc_no*",
 * 2020-06-29: direct reclaim is much more likely to make progress when it is
 * much less restricted in what it can reclaim).
 *
 * The workload: K file systems mounted side by side (depth 0), each with its
 * own cache of 1 KiB objects (allocated with rcl_alloc) and a shrinker that
 * is a file-system shrinker: it declares needs = RCL__FS, as the kernel's
 * super_cache_scan() bails out of a !__GFP_FS context. The caches want far
 * more than the budget. One thread at a time works inside one file system:
 * for a round it "runs a transaction" in file system k (k round-robin) and
 * allocates new objects into k's cache; once the budget is full, every
 * allocation has to reclaim. The same workload runs three ways:
 *
 *   domains    the transaction is rcl_domain_enter(fs k) with journal_info
 *              set; k's may_reclaim refuses while the thread is inside one
 *              of k's transactions, so k's own cache is skipped and the
 *              K-1 others are reclaimed with full flags;
 *   nofs       the transaction is a plain NOFS scope (what a file system
 *              does without domains): no FS shrinker may run in direct
 *              reclaim;
 *   unrestricted  no scope at all: the reference for what direct reclaim
 *              could recover (not safe in a real file system).
 *
 * An allocation is rcl_alloc(1 KiB, RCL_DEFAULT|RCL__NOWARN) (an in-memory
 * inode, roughly; shrinkers keep the default batch of 128 objects). When it
 * fails the file system falls back (see transaction()). Each setting runs
 * twice: direct reclaim only (background reclaimer off) and with the
 * background reclaimer on (as kswapd always is in the kernel). The lock
 * checker and pressure following are off.
 *
 * Printed per setting, K and mode, the median over BENCH_REPS runs
 * (BENCH_JSON has median, min and max of each):
 *   KiB/att     bytes direct reclaim freed per attempt made in the
 *               transaction's own context (fallbacks' attempts excluded)
 *   attempts    how many such attempts
 *   fallbk%     allocations that failed in context and had to fall back
 *   p50us p99us maxus   latency of every allocation, fallback included
 *   bgMiB       what the background reclaimer freed meanwhile
 *   recl% recl-p50 recl-p99   share and latency of the allocations that
 *               entered direct reclaim (read from the counters, untimed)
 *   reachable   at the end, the share of the cached bytes that direct
 *               reclaim from inside a transaction can free at all
 * then the ratios the issue sets goals for. A figure no allocation gave
 * (no attempt, none that reclaimed) is "-" in the table, null in the JSON,
 * and left out of the median, min and max, which then say over how many
 * repeats; a ratio with none is "n/a". A benchmark reports; it never
 * passes or fails.
 *
 * Knobs: BENCH_REPS (default 5), BENCH_QUICK=1, BENCH_JSON=FILE,
 *        BENCH_DOMAINS_ALLOCS=N allocations measured per run (default 200000).
 */
#include "bench.h"
#include "reclaim.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#define OBJ_SIZE   1024                    /* an in-memory inode, roughly */
#define LIMIT      (32u * 1024 * 1024)     /* the budget */
#define ROUND      32                      /* allocations per transaction */
#define MAX_REPS   16

enum mode { MODE_DOMAINS, MODE_NOFS, MODE_UNRESTRICTED, NMODES };
static const char *const mode_name[NMODES] = { "domains", "nofs", "unrestricted" };

/* ------------------------------------------------------------------------ */
/* A file system: a FIFO cache and its shrinker                              */
/* ------------------------------------------------------------------------ */

struct fs {
    pthread_mutex_t lock;             /* the cache's own lock, never held
                                         across an allocation */
    void **ring;                      /* oldest at head */
    size_t cap, head, n;
    struct rcl_domain *domain;
    struct rcl_shrinker *shrinker;
    int txn;                          /* journal_info points here inside a
                                         transaction of this fs */
};

static unsigned long fs_count(void *priv, struct rcl_shrink_control *sc)
{
    struct fs *f = priv;
    (void)sc;
    pthread_mutex_lock(&f->lock);
    size_t n = f->n;
    pthread_mutex_unlock(&f->lock);
    return n ? n : RCL_SHRINK_EMPTY;
}

static unsigned long fs_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct fs *f = priv;
    unsigned long freed = 0;

    /* A file-system shrinker (needs = RCL__FS): reclaim calls it only in
     * contexts that allow FS. */
    pthread_mutex_lock(&f->lock);
    while (f->n && freed < sc->nr_to_scan) {
        void *p = f->ring[f->head];
        f->head = (f->head + 1) % f->cap;
        f->n--;
        rcl_free(p);
        freed++;
    }
    pthread_mutex_unlock(&f->lock);
    return freed;
}

static const struct rcl_shrinker_ops fs_ops = { fs_count, fs_scan };

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): "superblock the
 * same, pass context to filesystem to decide if reclaim from the superblock
 * is safe" - not while this thread is inside one of this file system's
 * transactions. */
static int fs_may_reclaim(struct rcl_domain *d, void *arg)
{
    struct fs *f = arg;
    (void)d;
    return rcl_journal_info() != &f->txn;
}

static int fs_insert(struct fs *f, void *p)
{
    pthread_mutex_lock(&f->lock);
    int ok = f->n < f->cap;
    if (ok) {
        f->ring[(f->head + f->n) % f->cap] = p;
        f->n++;
    }
    pthread_mutex_unlock(&f->lock);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* One run                                                                   */
/* ------------------------------------------------------------------------ */

/* What one run measures, by field; the names are the JSON keys. */
enum field {
    F_KIB_PER_ATTEMPT, F_ATTEMPTS, F_FALLBACK, F_P50, F_P99, F_MAX, F_BG,
    F_SLOW, F_SLOW_P50, F_SLOW_P99, F_RECOVERABLE, FIELDS
};
static const char *const field_name[FIELDS] = {
    "direct_kib_per_attempt", "direct_attempts", "fallback_pct",
    "p50_us", "p99_us", "max_us", "background_mib",
    "reclaiming_pct",       /* allocations that entered direct reclaim */
    "reclaiming_p50_us", "reclaiming_p99_us",   /* their latency */
    "recoverable_share",    /* share of the caches direct reclaim reaches */
};

struct result {
    double v[FIELDS];
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n, sz);
    if (!p) {
        perror("bench_domains: calloc");
        exit(2);
    }
    return p;
}

/* Direct reclaim made by fallbacks, kept apart so that "per attempt"
 * means attempts made in the transaction's own context. */
struct fallback_acct {
    unsigned long fallbacks, attempts;
    size_t bytes;
};

static void txn_begin(struct fs *f, enum mode m, unsigned *tok, unsigned *nofs, void **old)
{
    if (m == MODE_DOMAINS) {
        *tok = rcl_domain_enter(f->domain);
        *old = rcl_journal_info_set(&f->txn);
    } else if (m == MODE_NOFS) {
        *nofs = rcl_nofs_save();
    }
}

static void txn_end(enum mode m, unsigned tok, unsigned nofs, void *old)
{
    if (m == MODE_DOMAINS) {
        rcl_journal_info_set(old);
        rcl_domain_exit(tok);
    } else if (m == MODE_NOFS) {
        rcl_nofs_restore(nofs);
    }
}

/*
 * One transaction's worth of allocations in file system f; lat (NULL in
 * the warm-up) gets each allocation's latency, fallback included.
 *
 * When an allocation inside the transaction fails, the file system falls
 * back. With a background reclaimer it does what a small GFP_NOFS
 * allocation does in the kernel: retries in the same context until it
 * succeeds (RCL__NOFAIL: reclaim again, wait with a bound for the
 * background reclaimer, which runs in the widest context). Without one,
 * nothing else could ever free the file-system caches for it, so it backs
 * out of the transaction (leaving the domain or the NOFS scope, so nothing
 * it holds is at risk), allocates unrestricted and starts again.
 */
static void transaction(struct fs *f, enum mode m, uint64_t *lat, uint8_t *slow,
                        struct fallback_acct *fa, int background)
{
    unsigned tok = 0, nofs = 0;
    void *old = NULL;
    struct rcl_stats s0, s1, s2;

    txn_begin(f, m, &tok, &nofs, &old);
    for (int i = 0; i < ROUND; i++) {
        /* Whether this allocation entered direct reclaim is read from the
         * counters outside the timed region. */
        if (lat)
            rcl_stats_get(&s0);
        uint64_t t0 = bench_now_ns();
        void *p = rcl_alloc(OBJ_SIZE, RCL_DEFAULT | RCL__NOWARN);
        uint64_t t1 = bench_now_ns(), extra = 0;
        if (!p) {
            if (lat)
                rcl_stats_get(&s1);
            uint64_t t2 = bench_now_ns();
            if (background) {
                p = rcl_alloc(OBJ_SIZE, RCL_DEFAULT | RCL__NOFAIL);
            } else {
                txn_end(m, tok, nofs, old);
                p = rcl_alloc(OBJ_SIZE, RCL_DEFAULT | RCL__NOFAIL);
                txn_begin(f, m, &tok, &nofs, &old);
            }
            extra = bench_now_ns() - t2;
            if (lat) {
                rcl_stats_get(&s2);
                fa->fallbacks++;
                fa->attempts += s2.direct_reclaims - s1.direct_reclaims;
                fa->bytes += s2.direct_reclaimed - s1.direct_reclaimed;
            }
        } else if (lat) {
            rcl_stats_get(&s2);
        }
        if (lat) {
            lat[i] = t1 - t0 + extra;
            slow[i] = s2.direct_reclaims != s0.direct_reclaims;
        }
        if (!p || !fs_insert(f, p))
            rcl_free(p);
    }
    txn_end(m, tok, nofs, old);
}

/* What direct reclaim can reach from inside the context of a transaction
 * in f, as a share of what the caches hold: reclaim everything it may. */
static double recoverable_share(struct fs *f, enum mode m)
{
    unsigned tok = 0, nofs = 0;
    void *old = NULL;
    rcl_usage_sync();
    size_t usage = rcl_usage();
    txn_begin(f, m, &tok, &nofs, &old);
    size_t freed = rcl_reclaim(2 * (size_t)LIMIT, RCL_DEFAULT);
    txn_end(m, tok, nofs, old);
    return usage ? (double)freed / (double)usage : NAN;
}

static struct result run(unsigned K, enum mode m, long allocs, int background)
{
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    cfg.limit = LIMIT;
    cfg.background = background;
    cfg.pressure = 0;
    cfg.lockdep = RCL_LOCKDEP_OFF;
    if (rcl_init(&cfg) != 0) {
        fprintf(stderr, "bench_domains: rcl_init failed\n");
        exit(2);
    }

    struct fs *fs = xcalloc(K, sizeof(*fs));
    for (unsigned k = 0; k < K; k++) {
        char name[32];
        snprintf(name, sizeof(name), "fs%u", k);
        pthread_mutex_init(&fs[k].lock, NULL);
        fs[k].cap = LIMIT / OBJ_SIZE;
        fs[k].ring = xcalloc(fs[k].cap, sizeof(void *));
        fs[k].domain = rcl_domain_create(name, 0, fs_may_reclaim, &fs[k]);
        struct rcl_shrinker_opts o = { .needs = RCL__FS, .domain = fs[k].domain };
        fs[k].shrinker = rcl_shrinker_register(name, &fs_ops, &fs[k], &o);
        if (!fs[k].domain || !fs[k].shrinker) {
            fprintf(stderr, "bench_domains: setup failed\n");
            exit(2);
        }
    }

    /* Warm-up, not measured: fill the budget, so that what follows is the
     * steady state where every allocation must reclaim. */
    unsigned r = 0;
    for (size_t filled = 0; filled < 2 * (size_t)LIMIT; filled += ROUND * OBJ_SIZE, r++)
        transaction(&fs[r % K], m, NULL, NULL, NULL, background);

    long rounds = allocs / ROUND;
    uint64_t *lat = xcalloc((size_t)rounds * ROUND, sizeof(uint64_t));
    uint8_t *slow = xcalloc((size_t)rounds * ROUND, 1);
    struct rcl_stats before, after;
    struct fallback_acct fa = { 0, 0, 0 };
    rcl_stats_get(&before);
    for (long i = 0; i < rounds; i++, r++)
        transaction(&fs[r % K], m, lat + i * ROUND, slow + i * ROUND, &fa, background);
    rcl_stats_get(&after);

    size_t n = (size_t)rounds * ROUND, nslow = 0;
    uint64_t *slat = xcalloc(n, sizeof(uint64_t));
    for (size_t i = 0; i < n; i++)
        if (slow[i])
            slat[nslow++] = lat[i];
    qsort(lat, n, sizeof(*lat), cmp_u64);
    qsort(slat, nslow, sizeof(*slat), cmp_u64);
    struct result res;
    res.v[F_SLOW] = 100.0 * (double)nslow / (double)n;
    res.v[F_SLOW_P50] = nslow ? (double)slat[nslow / 2] / 1e3 : NAN;
    res.v[F_SLOW_P99] = nslow ? (double)slat[nslow * 99 / 100] / 1e3 : NAN;
    res.v[F_RECOVERABLE] = recoverable_share(&fs[r % K], m);
    free(slat);
    free(slow);
    unsigned long attempts = after.direct_reclaims - before.direct_reclaims - fa.attempts;
    size_t direct = after.direct_reclaimed - before.direct_reclaimed - fa.bytes;
    res.v[F_ATTEMPTS] = (double)attempts;
    /* A figure with no sample is NaN, never 0: a run with no attempt, or no
     * allocation that reclaimed, says nothing of what one would have done. */
    res.v[F_KIB_PER_ATTEMPT] = attempts ? (double)direct / attempts / 1024.0 : NAN;
    res.v[F_FALLBACK] = 100.0 * (double)fa.fallbacks / (double)n;
    res.v[F_P50] = (double)lat[n / 2] / 1e3;
    res.v[F_P99] = (double)lat[n * 99 / 100] / 1e3;
    res.v[F_MAX] = (double)lat[n - 1] / 1e3;
    res.v[F_BG] = (double)(after.background_reclaimed - before.background_reclaimed) /
                 (1024.0 * 1024.0);
    free(lat);

    for (unsigned k = 0; k < K; k++) {
        rcl_shrinker_unregister(fs[k].shrinker);
        while (fs[k].n) {
            rcl_free(fs[k].ring[fs[k].head]);
            fs[k].head = (fs[k].head + 1) % fs[k].cap;
            fs[k].n--;
        }
        rcl_domain_destroy(fs[k].domain);
        free(fs[k].ring);
        pthread_mutex_destroy(&fs[k].lock);
    }
    free(fs);
    rcl_shutdown();
    return res;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                    */
/* ------------------------------------------------------------------------ */

/* Over the repeats that measured the figure (*n of them, where n is given);
 * NaN throughout when none did. */
static struct bench_stat stat_over(const double *all, int reps, int *n)
{
    double v[MAX_REPS];
    int k = 0;
    for (int i = 0; i < reps; i++)
        if (!isnan(all[i]))
            v[k++] = all[i];
    if (n)
        *n = k;
    return k ? bench_stat_of(v, k) : (struct bench_stat){ NAN, NAN, NAN };
}

static struct bench_stat stat_of(const struct result *res, int reps, int f)
{
    double v[MAX_REPS];
    for (int i = 0; i < reps; i++)
        v[i] = res[i].v[f];
    return stat_over(v, reps, NULL);
}

/* A repeat whose denominator is 0 or unmeasured has no ratio. */
static struct bench_stat ratio_of(const struct result *num, const struct result *den,
                                  int reps, int f, int *n)
{
    double v[MAX_REPS];
    for (int i = 0; i < reps; i++) {
        double d = den[i].v[f];
        v[i] = d > 0 ? num[i].v[f] / d : NAN;
    }
    return stat_over(v, reps, n);
}

/* A ratio line's figures, or why there are none; and how many repeats
 * gave them when some did not. */
static void print_ratio(const char *what, const char *fmt, struct bench_stat s, int n, int reps,
                        const char *goal)
{
    printf("%s", what);
    if (isnan(s.med)) {
        printf("n/a: no repeat measured both");
    } else {
        printf(fmt, s.med, s.min, s.max);
        if (n < reps)
            printf(" (%d of %d repeats)", n, reps);
    }
    printf("%s\n", goal);
}

static void report(int bg, unsigned K, struct result res[NMODES][MAX_REPS], int reps)
{
    printf("\n%s, K = %u file systems\n",
           bg ? "background reclaimer on" : "direct reclaim only (background reclaimer off)", K);
    printf("%-13s %-9s %-9s %-9s %-8s %-8s %-8s %-8s | %-7s %-9s %-9s | %-9s\n", "mode",
           "KiB/att", "attempts", "fallbk%", "p50us", "p99us", "maxus", "bgMiB",
           "recl%", "recl-p50", "recl-p99", "reachable");
    for (int m = 0; m < NMODES; m++) {
        static const int col[] = { F_KIB_PER_ATTEMPT, F_ATTEMPTS, F_FALLBACK, F_P50, F_P99,
                                   F_MAX, F_BG, F_SLOW, F_SLOW_P50, F_SLOW_P99,
                                   F_RECOVERABLE };
        static const char *const fmt[] = { "%-9.1f", "%-9.0f", "%-9.2f", "%-8.2f", "%-8.2f",
                                           "%-8.0f", "%-8.1f", "%-7.2f", "%-9.1f", "%-9.1f",
                                           "%-9.3f" };
        static const int width[] = { 9, 9, 9, 8, 8, 8, 8, 7, 9, 9, 9 };
        printf("%-13s", mode_name[m]);
        for (unsigned c = 0; c < sizeof(col) / sizeof(col[0]); c++) {
            double v = stat_of(res[m], reps, col[c]).med;
            printf(c == 7 || c == 10 ? " | " : " ");
            if (isnan(v))
                printf("%-*s", width[c], "-");
            else
                printf(fmt[c], v);
        }
        printf("\n");

        bj_obj(NULL);
        bj_num("background", bg);
        bj_num("K", K);
        bj_str("mode", mode_name[m]);
        for (int f = 0; f < FIELDS; f++)
            bj_stat(field_name[f], stat_of(res[m], reps, f));
        bj_end_obj();
    }
    int n_rec, n_reach, n_p99, n_sp99;
    struct bench_stat rec = ratio_of(res[MODE_DOMAINS], res[MODE_UNRESTRICTED], reps,
                                     F_KIB_PER_ATTEMPT, &n_rec);
    struct bench_stat reach = ratio_of(res[MODE_DOMAINS], res[MODE_UNRESTRICTED], reps,
                                       F_RECOVERABLE, &n_reach);
    struct bench_stat p99 = ratio_of(res[MODE_NOFS], res[MODE_DOMAINS], reps, F_P99, &n_p99);
    struct bench_stat sp99 = ratio_of(res[MODE_NOFS], res[MODE_DOMAINS], reps, F_SLOW_P99,
                                      &n_sp99);
    char goal[64];
    snprintf(goal, sizeof(goal), "  (goal >= (K-1)/K = %.3f)", (double)(K - 1) / K);
    print_ratio("domains / unrestricted, direct KiB per attempt:   ", "%.3f [%.3f..%.3f]", rec,
                n_rec, reps, goal);
    print_ratio("domains / unrestricted, share of caches reachable: ", "%.3f [%.3f..%.3f]",
                reach, n_reach, reps, "");
    print_ratio("nofs / domains, p99 latency of all allocations:   ", "%.2fx [%.2f..%.2f]", p99,
                n_p99, reps, "  (goal >= 3x)");
    print_ratio("nofs / domains, p99 latency of reclaiming ones:   ", "%.2fx [%.2f..%.2f]", sp99,
                n_sp99, reps, "");
    bj_obj(NULL);
    bj_num("background", bg);
    bj_num("K", K);
    bj_stat("recovery_domains_over_unrestricted", rec);
    bj_stat("reachable_domains_over_unrestricted", reach);
    bj_num("recovery_goal", (double)(K - 1) / K);
    bj_stat("p99_nofs_over_domains", p99);
    bj_stat("reclaiming_p99_nofs_over_domains", sp99);
    bj_end_obj();
}

int main(int argc, char **argv)
{
    bench_args(argc, argv, "bench_domains", "What reclaim domains buy direct reclaim: bytes freed per pass inside a domain, beside a NOFS scope.");
    int reps = bench_reps(5, 5, MAX_REPS);
    long allocs = bench_env_long("BENCH_DOMAINS_ALLOCS", bench_quick() ? 8000 : 200000);
    static const unsigned Ks[] = { 4, 16 };
    static struct result res[2][2][NMODES][MAX_REPS];

    if (allocs < ROUND)
        allocs = ROUND;

    bench_json_begin("domains");
    bench_print_header("bench_domains: direct reclaim inside K file systems");
    printf("budget %u MiB, %d-byte objects, %d allocations per transaction, "
           "%ld measured allocations per run, %d reps; median [min..max] over reps\n",
           LIMIT >> 20, OBJ_SIZE, ROUND, allocs / ROUND * ROUND, reps);

    /* Interleave everything within each repeat, so that a change in the
     * machine's load touches all modes alike. */
    for (int rep = 0; rep < reps; rep++)
        for (int bg = 0; bg < 2; bg++)
            for (unsigned ki = 0; ki < 2; ki++)
                for (int m = 0; m < NMODES; m++)
                    res[bg][ki][m][rep] = run(Ks[ki], (enum mode)m, allocs, bg);

    bj_arr("results");
    for (int bg = 0; bg < 2; bg++)
        for (unsigned ki = 0; ki < 2; ki++)
            report(bg, Ks[ki], res[bg][ki], reps);
    bj_end_arr();
    bench_json_end();
    return 0;
}
