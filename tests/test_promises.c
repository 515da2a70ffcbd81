/* SPDX-License-Identifier: MIT */
/*
 * test_promises.c - what the header promises about the budget, held under
 * the conditions that used to break it: a limit lowered while other
 * threads hold stock, rcl_usage() read while frees flush stocks or move
 * cached blocks' charge to the stock, a
 * background reclaimer whose first start fails, and an alignment so large
 * that its size arithmetic wraps.
 */
#include "helpers.h"
#include "internal.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* 16 MiB: below the budgets that measure resident memory, so every figure
 * is the test's own charges. */
static int setup16(void **state)
{
    (void)state;
    return test_init(16 * MiB) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* A lowered limit binds the stock charged under the old one                 */
/* ------------------------------------------------------------------------ */

#define WORKERS   4
#define SMALL     64
#define MAX_HELD  8192

struct worker {
    pthread_t th;
    void *held[MAX_HELD];
    unsigned n;
    size_t charged;             /* what the blocks it holds charge */
};
static struct worker workers[WORKERS];
static pthread_barrier_t stocked, lowered;

/* Builds a stock under the old limit, waits for the new one, then takes
 * all it can get without reclaim. */
static void *spend_stock(void *arg)
{
    struct worker *w = arg;
    void *p = rcl_alloc(SMALL, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    pthread_barrier_wait(&stocked);
    pthread_barrier_wait(&lowered);
    while (w->n < MAX_HELD && (p = rcl_alloc(SMALL, RCL_NOWAIT)) != NULL) {
        w->held[w->n++] = p;
        w->charged += rcl_alloc_charge(SMALL);
    }
    return NULL;
}

/*
 * The promise, precisely: once rcl_set_limit(L) has returned, what is
 * allocated from then on fits in L less what was in use when it returned,
 * with every thread's stock taken under the old limit given back rather
 * than spent; the budget's own counter, stocks included, stays <= L.
 */
TEST_WITH(test_lowered_limit_binds_stock_other_threads_hold, setup16, test_teardown)
{
    const size_t low_limit = 256 * KiB;
    pthread_barrier_init(&stocked, NULL, WORKERS + 1);
    pthread_barrier_init(&lowered, NULL, WORKERS + 1);
    memset(workers, 0, sizeof(workers));
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(pthread_create(&workers[i].th, NULL, spend_stock, &workers[i]), 0);
    pthread_barrier_wait(&stocked);
    size_t before = rcl_usage();
    assert_int_equal(rcl_set_limit(low_limit), 0);
    pthread_barrier_wait(&lowered);

    size_t spent = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(workers[i].th, NULL);
        spent += workers[i].charged;
    }
    assert_true(before + spent <= low_limit);
    assert_true(atomic_load(&rcl__acct.charged) <= low_limit);
    rcl_usage_sync();
    assert_true(rcl_usage() <= low_limit);

    for (int i = 0; i < WORKERS; i++)
        for (unsigned j = 0; j < workers[i].n; j++)
            rcl_free(workers[i].held[j]);
    pthread_barrier_destroy(&stocked);
    pthread_barrier_destroy(&lowered);
}

/* What a shrinker that lowers the limit saw: the usage when
 * rcl_set_limit() returned, and what it could allocate after. */
#define CB_HELD 4096
static void *cb_held[CB_HELD];
static unsigned cb_n;
static size_t cb_usage, cb_spent;
static int cb_lowered, cb_rc;

static unsigned long one_object(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    return 1;
}

/* Lowers the limit below what the program holds, then takes all it can
 * get: nothing, since every byte must be charged against the new limit. */
static unsigned long lowers_the_limit(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    if (cb_lowered++)
        return RCL_SHRINK_STOP;
    cb_rc = rcl_set_limit(256 * KiB);
    cb_usage = rcl_usage();
    void *q;
    while (cb_n < CB_HELD && (q = rcl_alloc(SMALL, RCL_NOWAIT | RCL__NOWARN)) != NULL) {
        cb_held[cb_n++] = q;
        cb_spent += rcl_alloc_charge(SMALL);
    }
    return RCL_SHRINK_STOP;
}

/* The promise holds for a shrinker's own rcl_set_limit(): its thread's
 * stock goes back at once, in the reclaim as anywhere, and what the
 * callback allocates next fits the new limit less what was in use.
 * (Kept while the thread reclaimed, the stock served the callback's
 * allocations unchecked, past a limit already below usage.) */
TEST_WITH(test_lowered_limit_binds_the_stock_of_a_shrinker_that_lowers_it, setup16,
          test_teardown)
{
    static const struct rcl_shrinker_ops ops = { .count = one_object, .scan = lowers_the_limit };
    void *big = rcl_alloc(1 * MiB, RCL_DEFAULT);
    void *small = rcl_alloc(SMALL, RCL_DEFAULT);     /* refills the stock */
    assert_non_null(big);
    assert_non_null(small);
    assert_true(rd(rcl__self.stock) > 0);
    cb_n = 0;
    cb_spent = 0;
    cb_lowered = 0;
    cb_rc = -1;
    struct rcl_shrinker *s = rcl_shrinker_register("lowers-the-limit", &ops, NULL, NULL);
    assert_non_null(s);

    rcl_reclaim(1, RCL_DEFAULT);
    assert_int_equal(cb_lowered, 1);
    assert_int_equal(cb_rc, 0);
    assert_true(cb_usage > 256 * KiB);
    assert_int_equal(cb_spent, 0);
    test_reports_reset();                            /* the failed allocation's, if any */

    rcl_shrinker_unregister(s);
    while (cb_n)
        rcl_free(cb_held[--cb_n]);
    rcl_free(small);
    rcl_free(big);
}

/* ------------------------------------------------------------------------ */
/* rcl_usage() never over-reports                                            */
/* ------------------------------------------------------------------------ */

#define FREERS  2
#define BIG     (100 * KiB)        /* above the block cache: each free flushes */
#define BIGS    24

static void *freer_blocks[FREERS][BIGS];
static pthread_barrier_t filled, go, done;
static atomic_bool stop;

static atomic_int freeing;

/* Each round: blocks allocated and a stock built up to its ceiling (an
 * uncharge is a free too), then, once the reading starts, every block
 * freed: the first free pushes the stock over its ceiling, and the flush
 * returns more than that free alone. */
static void *free_all(void *arg)
{
    void **blocks = arg;
    while (!atomic_load(&stop)) {
        for (int i = 0; i < BIGS; i++) {
            blocks[i] = rcl_alloc(BIG, RCL_DEFAULT);
            assert_non_null(blocks[i]);
        }
        assert_int_equal(rcl_charge(120 * KiB, RCL_DEFAULT), 0);
        rcl_uncharge(120 * KiB);
        pthread_barrier_wait(&filled);
        pthread_barrier_wait(&go);
        for (int i = 0; i < BIGS; i++)
            rcl_free(blocks[i]);
        atomic_fetch_sub(&freeing, 1);
        pthread_barrier_wait(&done);
    }
    return NULL;
}

/* Threads registered after the freers: rcl_usage() walks them first, so
 * a reading takes long enough for a flush to land inside it. */
#define PARKED 64
static atomic_int parked_in;
static atomic_bool parked_go;

static void *parked(void *arg)
{
    (void)arg;
    rcl_free(rcl_alloc(SMALL, RCL_DEFAULT));
    atomic_fetch_add(&parked_in, 1);
    while (!atomic_load(&parked_go))
        test_sleep_ms(5);
    return NULL;
}

/* Lets the freers go and reads rcl_usage() until they are done: how far
 * the highest reading went above start. */
static size_t highest_reading_over(size_t start)
{
    size_t worst = 0;

    atomic_store(&freeing, FREERS);
    pthread_barrier_wait(&go);
    while (atomic_load(&freeing) > 0) {
        size_t u = rcl_usage();
        if (u > start && u - start > worst)
            worst = u - start;
    }
    pthread_barrier_wait(&done);
    return worst;
}

/* While only frees happen, no reading of rcl_usage() exceeds what was in
 * use when they began: a thread flushing its stock back to the budget
 * must never leave the bytes counted twice. */
TEST_WITH(test_usage_never_over_reports_while_only_frees_happen, setup16, test_teardown)
{
    pthread_t th[FREERS];
    unsigned long long until = rcl__now_ns() + (unsigned long long)test_scale(2000) * 1000000ull;
    size_t worst = 0;

    pthread_barrier_init(&filled, NULL, FREERS + 1);
    pthread_barrier_init(&go, NULL, FREERS + 1);
    pthread_barrier_init(&done, NULL, FREERS + 1);
    atomic_store(&stop, false);
    pthread_t park[PARKED];
    atomic_store(&parked_in, 0);
    atomic_store(&parked_go, false);
    for (int i = 0; i < FREERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, free_all, freer_blocks[i]), 0);
    for (int round = 0;; round++) {
        pthread_barrier_wait(&filled);
        if (round == 0) {
            for (int i = 0; i < PARKED; i++)
                assert_int_equal(pthread_create(&park[i], NULL, parked, NULL), 0);
            while (atomic_load(&parked_in) < PARKED)
                test_sleep_ms(1);
        }
        size_t start = rcl_usage();
        bool last = rcl__now_ns() >= until;
        if (last)
            atomic_store(&stop, true);
        size_t over = highest_reading_over(start);
        if (over > worst)
            worst = over;
        if (last)
            break;
    }
    for (int i = 0; i < FREERS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&parked_go, true);
    for (int i = 0; i < PARKED; i++)
        pthread_join(park[i], NULL);
    assert_int_equal(worst, 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    pthread_barrier_destroy(&filled);
    pthread_barrier_destroy(&go);
    pthread_barrier_destroy(&done);
}

/* The same while a thread's cached blocks go back: a thread that frees
 * blocks another thread allocated keeps some in its cache (the rest go to
 * the depot and the backend); once the reading starts it empties its
 * cache (rcl_usage_sync), each block's charge leaving the cache count for
 * the stock and the stock for the budget. No reading may see a charge
 * gone from the cache before it is in the stock. */
#define SMALLS 512

static void *small_blocks[FREERS][SMALLS];
static pthread_barrier_t ready;

static void *free_small(void *arg)
{
    void **blocks = arg;
    for (;;) {
        pthread_barrier_wait(&ready);
        if (atomic_load(&stop))
            return NULL;
        for (int i = 0; i < SMALLS; i++)
            rcl_free(blocks[i]);
        pthread_barrier_wait(&filled);
        pthread_barrier_wait(&go);
        rcl_usage_sync();
        atomic_fetch_sub(&freeing, 1);
        pthread_barrier_wait(&done);
    }
}

TEST_WITH(test_usage_never_over_reports_while_cached_charge_moves, setup16, test_teardown)
{
    pthread_t th[FREERS];
    unsigned long long until = rcl__now_ns() + (unsigned long long)test_scale(2000) * 1000000ull;
    size_t worst = 0;
    unsigned rounds = 0;

    pthread_barrier_init(&ready, NULL, FREERS + 1);
    pthread_barrier_init(&filled, NULL, FREERS + 1);
    pthread_barrier_init(&go, NULL, FREERS + 1);
    pthread_barrier_init(&done, NULL, FREERS + 1);
    atomic_store(&stop, false);
    for (int i = 0; i < FREERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, free_small, small_blocks[i]), 0);
    for (;; rounds++) {
        if (rcl__now_ns() >= until) {
            atomic_store(&stop, true);
            pthread_barrier_wait(&ready);
            break;
        }
        for (int i = 0; i < FREERS; i++)
            for (int j = 0; j < SMALLS; j++)
                assert_non_null(small_blocks[i][j] = rcl_alloc(64, RCL_DEFAULT));
        pthread_barrier_wait(&ready);
        pthread_barrier_wait(&filled);
        size_t over = highest_reading_over(rcl_usage());
        if (over > worst)
            worst = over;
    }
    for (int i = 0; i < FREERS; i++)
        pthread_join(th[i], NULL);
    assert_true(rounds > 0);
    assert_int_equal(worst, 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&filled);
    pthread_barrier_destroy(&go);
    pthread_barrier_destroy(&done);
}

/* ------------------------------------------------------------------------ */
/* A failed start of the background reclaimer is tried again                 */
/* ------------------------------------------------------------------------ */

static atomic_int reclaimer_attempts;

/* The first attempt at the reclaimer fails as a process at its thread
 * limit would; later ones succeed. */
static int first_reclaimer_fails(pthread_t *th, void *(*fn)(void *), void *arg, const char *what)
{
    if (strcmp(what, "reclaimer") == 0 && atomic_fetch_add(&reclaimer_attempts, 1) == 0)
        return EAGAIN;
    return pthread_create(th, NULL, fn, arg);
}

static int bg_setup(void **state)
{
    (void)state;
    struct rcl_config cfg = test_config(16 * MiB);
    cfg.background = 1;
    atomic_store(&reclaimer_attempts, 0);
    atomic_store_explicit(&rcl__thread_create_hook, first_reclaimer_fails, memory_order_relaxed);
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    return rcl_init(&cfg) == 0 ? 0 : -1;
}

static int bg_teardown(void **state)
{
    int r = test_teardown(state);
    atomic_store_explicit(&rcl__thread_create_hook, NULL, memory_order_relaxed);
    return r;
}

TEST_WITH(test_failed_background_start_is_retried_later, bg_setup, bg_teardown)
{
    void *held[32];
    unsigned n = 0;
    /* Into the low watermark: the allocations wake the reclaimer. */
    while (n < 32 && atomic_load(&reclaimer_attempts) == 0)
        held[n++] = rcl_alloc(512 * KiB, RCL_NOWAIT);
    assert_int_equal(atomic_load(&reclaimer_attempts), 1);
    assert_int_equal(test_reports_seen_matching("cannot start the background reclaimer: "
                                                "Resource temporarily unavailable"), 1);

    /* The library tries a failed start again no sooner than 100 ms after
     * it (reclaim.c): the sleep lets that time go by between wake-ups. The
     * loop ends on the state, a wake-up the new reclaimer counted; 200
     * rounds (4 s at least) only turn a retry that never comes into a
     * failure. */
    struct rcl_stats st;
    for (int t = 0; t < 200; t++) {
        test_sleep_ms(20);
        rcl_free(held[--n]);
        held[n] = rcl_alloc(512 * KiB, RCL_NOWAIT);
        n++;
        rcl_stats_get(&st);
        if (st.background_wakeups)
            break;
    }
    assert_true(atomic_load(&reclaimer_attempts) >= 2);
    assert_true(st.background_wakeups >= 1);
    while (n)
        rcl_free(held[--n]);
}

/* A report function that forks, as a daemon's logger may to hand a line
 * to a helper: the report of a failed start is made with the reclaimer's
 * lock let go, since fork() takes that lock. */
static atomic_int forks_done;

static void forking_report(const char *report, void *arg)
{
    if (strstr(report, "background reclaimer")) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid > 0 && waitpid(pid, NULL, 0) == pid)
            atomic_fetch_add(&forks_done, 1);
    }
    test_report_catch(report, arg);
}

TEST_WITH(test_failed_background_start_is_reported_to_a_function_that_forks, bg_setup,
          bg_teardown)
{
    void *held[32];
    unsigned n = 0;

    atomic_store(&forks_done, 0);
    rcl_set_report_fn(forking_report, NULL);
    while (n < 32 && atomic_load(&reclaimer_attempts) == 0)
        held[n++] = rcl_alloc(512 * KiB, RCL_NOWAIT);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(atomic_load(&reclaimer_attempts), 1);
    assert_int_equal(atomic_load(&forks_done), 1);
    assert_int_equal(test_reports_seen_matching("cannot start the background reclaimer"), 1);
    while (n)
        rcl_free(held[--n]);
}

/* ------------------------------------------------------------------------ */
/* An impossible alignment is refused before anything is charged             */
/* ------------------------------------------------------------------------ */

TEST_WITH(test_half_address_space_alignment_charges_nothing, setup16, test_teardown)
{
    struct rcl_stats st;
    assert_int_equal(rcl_set_limit(SIZE_MAX - 1), 0);
    assert_fails_with(rcl_aligned_alloc((size_t)1 << 63, 16, RCL_DEFAULT), EOVERFLOW);
    rcl_stats_get(&st);
    assert_true(st.peak < 1 * MiB);
    assert_int_equal(test_report_count(), 0);
}

TEST_MAIN();
