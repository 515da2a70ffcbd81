/* SPDX-License-Identifier: MIT */
/*
 * test_mempool.c - mempools: the kernel's allocation order, a reserve that
 * is charged when the pool is made, waiting that never loses a wake-up,
 * resizing under load, and destroy that cannot pull memory from under its
 * users.
 */
#include "helpers.h"
#include "internal.h"

#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

/* What the budget has charged, every thread's stock folded back first:
 * a figure two moments of a test can be compared by. */
static size_t usage_now(void)
{
    rcl_usage_sync();
    return rcl_usage();
}

/* Fills the budget down to its min watermark with memory no shrinker can
 * give back, so that ordinary allocations fail and only reserves help. */
static void *fill_budget(void)
{
    rcl_usage_sync();
    struct rcl_stats st;
    rcl_stats_get(&st);
    size_t room = st.limit - rcl_usage() - st.wmark_min;
    void *p = rcl_alloc(test_fitting(room), RCL_NOWAIT);
    assert_non_null(p);
    rcl_usage_sync();
    return p;
}

/* ------------------------------------------------------------------------ */
/* A backing allocator that records the flags it is called with              */
/* ------------------------------------------------------------------------ */

#define MAX_CALLS 64
struct recorder {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             fail;             /* allocations fail while set */
    unsigned        ncalls;
    rcl_gfp_t       calls[MAX_CALLS];
    unsigned        frees;
    int             full_seen;        /* called with DIRECT_RECLAIM once */
};

static void *rec_alloc(rcl_gfp_t gfp, void *data)
{
    struct recorder *r = data;
    pthread_mutex_lock(&r->lock);
    if (r->ncalls < MAX_CALLS)
        r->calls[r->ncalls] = gfp;
    r->ncalls++;
    if (gfp & RCL__DIRECT_RECLAIM) {
        r->full_seen = 1;
        pthread_cond_broadcast(&r->cond);
    }
    int fail = r->fail;
    pthread_mutex_unlock(&r->lock);
    return fail ? NULL : malloc(64);
}

static void rec_free(void *elem, void *data)
{
    struct recorder *r = data;
    pthread_mutex_lock(&r->lock);
    r->frees++;
    pthread_mutex_unlock(&r->lock);
    free(elem);
}

static void rec_init(struct recorder *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
}

static void rec_set_fail(struct recorder *r, int fail)
{
    pthread_mutex_lock(&r->lock);
    r->fail = fail;
    r->ncalls = 0;
    r->full_seen = 0;
    pthread_mutex_unlock(&r->lock);
}

/* A pool over the recorder, its reserve of min_nr filled. */
static struct rcl_mempool *ops_pool(struct recorder *r, unsigned min_nr)
{
    rec_init(r);
    struct rcl_mempool *pool = rcl_mempool_create_ops(min_nr, rec_alloc, rec_free, r);
    assert_non_null(pool);
    return pool;
}

static void rec_wait_full(struct recorder *r)
{
    pthread_mutex_lock(&r->lock);
    while (!r->full_seen)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */
/* ------------------------------------------------------------------------ */

/* Kernel rule (mempool_init): the reserve is allocated when the pool is
 * made, so it is there when memory is short later. */
TEST(test_create_charges_the_reserve)
{
    size_t before = usage_now();
    struct rcl_mempool *pool = rcl_mempool_create(8, 4096);
    assert_non_null(pool);
    assert_true(usage_now() >= before + 8 * 4096);
    rcl_mempool_destroy(pool);
    assert_int_equal(usage_now(), before);
}

TEST(test_create_fails_cleanly_when_reserve_cannot_be_filled)
{
    rcl_shutdown();
    assert_int_equal(test_init(1 * MiB), 0);
    size_t before = usage_now();
    assert_fails_with(rcl_mempool_create(64, 64 * KiB), ENOMEM);
    assert_int_equal(usage_now(), before);
}

TEST(test_create_with_bad_arguments_is_refused_and_reported)
{
    struct recorder r;
    rec_init(&r);
    assert_fails_with(rcl_mempool_create(4, 0), EINVAL);
    assert_last_report_has("rcl_mempool_create(4, 0)");
    assert_fails_with(rcl_mempool_create_ops(4, NULL, rec_free, &r), EINVAL);
    assert_last_report_has("NULL alloc");
    assert_fails_with(rcl_mempool_create_ops(4, rec_alloc, NULL, &r), EINVAL);
    assert_last_report_has("NULL free");
    assert_int_equal(test_report_count(), 3);
}

/* An element no block can hold (the tag ahead of it included) is refused
 * when the pool is made: a pool with min_nr 0 would be made, and its
 * blocking allocations would wait for an element that can never exist. */
TEST(test_create_refuses_an_element_size_no_block_can_hold)
{
    assert_fails_with(rcl_mempool_create(0, SIZE_MAX), EINVAL);
    assert_fails_with(rcl_mempool_create(0, PTRDIFF_MAX), EINVAL);
    assert_fails_with(rcl_mempool_create(2, SIZE_MAX - 8), EINVAL);
    assert_int_equal(test_report_count(), 3);
    assert_last_report_has("no block can hold");
}

TEST(test_bad_pool_arguments_are_errors)
{
    assert_fails_with(rcl_mempool_alloc(NULL, RCL_DEFAULT), EINVAL);
    rcl_mempool_destroy(NULL);                  /* no-op, as free(NULL) */

    struct rcl_mempool *pool = rcl_mempool_create(2, 32);
    assert_non_null(pool);
    unsigned n = test_report_count();
    rcl_mempool_free(NULL, pool);               /* no-op */
    assert_int_equal(test_report_count(), n);
    int x;
    rcl_mempool_free(&x, NULL);                 /* reported, not freed */
    assert_int_equal(test_report_count(), n + 1);
    rcl_mempool_destroy(pool);
}

/* An allocation from a NULL pool is refused with EINVAL either way; its
 * report is one that RCL__NOWARN keeps back, as it keeps back every
 * report of a call that takes flags (the header's conventions). */
TEST(test_alloc_from_a_null_pool_with_nowarn_is_refused_unreported)
{
    assert_fails_with(rcl_mempool_alloc(NULL, RCL_DEFAULT | RCL__NOWARN), EINVAL);
    assert_fails_with(rcl_mempool_alloc(NULL, RCL_NOWAIT), EINVAL);
    assert_int_equal(test_report_count(), 0);
    assert_fails_with(rcl_mempool_alloc(NULL, RCL_DEFAULT), EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_mempool_alloc: NULL pool");
}

TEST(test_resizing_a_null_pool_is_refused_and_reported)
{
    assert_int_equal(rcl_mempool_resize(NULL, 4), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_mempool_resize(NULL, 4): NULL pool");
}

/* NOFAIL that may not wait is the contradiction rcl_alloc() refuses: the
 * pool refuses it too, before it takes an element from the reserve or
 * asks its allocator, rather than drop NOFAIL and hand a caller that will
 * not look for it a NULL. */
TEST(test_nofail_without_direct_reclaim_is_refused_and_reported)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 2);
    assert_fails_with(rcl_mempool_alloc(pool, RCL_ATOMIC | RCL__NOFAIL), EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("NOFAIL needs DIRECT_RECLAIM");

    /* The whole reserve is still there, and nothing was asked of the
     * allocator that could be handed out. */
    rec_set_fail(&r, 1);
    void *a = rcl_mempool_alloc(pool, RCL_NOWAIT);
    void *b = rcl_mempool_alloc(pool, RCL_NOWAIT);
    assert_non_null(a);
    assert_non_null(b);
    assert_fails_with(rcl_mempool_alloc(pool, RCL_NOWAIT), ENOMEM);
    rcl_mempool_free(a, pool);
    rcl_mempool_free(b, pool);
    rcl_mempool_destroy(pool);
}

TEST(test_nofail_without_direct_reclaim_and_with_nowarn_is_refused_quietly)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 2);
    assert_fails_with(rcl_mempool_alloc(pool, RCL_ATOMIC | RCL__NOFAIL | RCL__NOWARN), EINVAL);
    assert_int_equal(test_report_count(), 0);
    rcl_mempool_destroy(pool);
}

/* ------------------------------------------------------------------------ */
/* The allocation order                                                      */
/* ------------------------------------------------------------------------ */

/* Kernel rule (mempool_alloc): the allocator first, with the light flags;
 * the reserve only when it fails. */
TEST(test_alloc_prefers_the_allocator_to_the_reserve)
{
    struct rcl_mempool *pool = rcl_mempool_create(4, 128);
    assert_non_null(pool);
    struct rcl_stats st;
    void *p[16];
    for (int i = 0; i < 16; i++)
        assert_non_null(p[i] = rcl_mempool_alloc(pool, RCL_DEFAULT));
    rcl_stats_get(&st);
    assert_int_equal(st.mempool_reserve_hits, 0);
    for (int i = 0; i < 16; i++)
        rcl_mempool_free(p[i], pool);
    rcl_mempool_destroy(pool);
}

struct taker {
    struct rcl_mempool *pool;
    rcl_gfp_t gfp;
    void *got;
    int err;                            /* errno, when got is NULL */
};

static void *taker_main(void *arg)
{
    struct taker *t = arg;
    t->got = rcl_mempool_alloc(t->pool, t->gfp);
    t->err = t->got ? 0 : errno;
    return NULL;
}

/* Kernel rule (mempool_alloc): light flags are gfp & ~(DIRECT_RECLAIM|IO)
 * plus NOMEMALLOC|NORETRY|NOWARN; then the reserve; then the full flags;
 * then wait for an element to be returned. */
TEST(test_alloc_follows_the_kernel_order)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 1);

    rcl_gfp_t extra = RCL__NOMEMALLOC | RCL__NORETRY | RCL__NOWARN;
    rcl_gfp_t light = (RCL_DEFAULT & ~(RCL__DIRECT_RECLAIM | RCL__IO)) | extra;
    rcl_gfp_t full = RCL_DEFAULT | extra;

    rec_set_fail(&r, 1);
    void *e1 = rcl_mempool_alloc(pool, RCL_DEFAULT);   /* light, then the reserve */
    assert_non_null(e1);
    assert_int_equal(r.ncalls, 1);
    assert_int_equal(r.calls[0], light);

    /* Reserve empty: light, full, then the wait. */
    rec_set_fail(&r, 1);
    struct taker t = { pool, RCL_DEFAULT, NULL, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, taker_main, &t), 0);
    rec_wait_full(&r);
    rcl_mempool_free(e1, pool);        /* into the reserve: it is below min_nr */
    pthread_join(th, NULL);
    assert_ptr_equal(t.got, e1);
    assert_true(r.ncalls >= 2);
    assert_int_equal(r.calls[0], light);
    assert_int_equal(r.calls[1], full);

    rcl_mempool_free(t.got, pool);
    rcl_mempool_destroy(pool);
    assert_int_equal(r.frees, 1);
}

/* Kernel rule: the pool, not the budget's reserve, is this path's reserve
 * (NOMEMALLOC), and with the budget full the pool still hands out its
 * elements. RCL_ATOMIC callers too, whom the budget would otherwise let
 * into half its reserve. */
TEST(test_alloc_uses_the_reserve_when_the_budget_is_full)
{
    struct rcl_mempool *pool = rcl_mempool_create(4, 256);
    assert_non_null(pool);
    void *fill = fill_budget();
    void *p[4];
    for (int i = 0; i < 4; i++)
        assert_non_null(p[i] = rcl_mempool_alloc(pool, i % 2 ? RCL_ATOMIC : RCL_NOWAIT));
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.mempool_reserve_hits, 4);
    for (int i = 0; i < 4; i++)
        rcl_mempool_free(p[i], pool);
    rcl_free(fill);
    rcl_mempool_destroy(pool);
}

/* Kernel rule: without __GFP_DIRECT_RECLAIM mempool_alloc never sleeps;
 * an empty reserve is NULL. */
TEST(test_nonblocking_alloc_fails_when_reserve_is_empty)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 2);
    rec_set_fail(&r, 1);
    void *a = rcl_mempool_alloc(pool, RCL_NOWAIT);
    void *b = rcl_mempool_alloc(pool, RCL_ATOMIC);
    assert_non_null(a);
    assert_non_null(b);
    assert_fails_with(rcl_mempool_alloc(pool, RCL_NOWAIT), ENOMEM);
    rcl_mempool_free(a, pool);
    rcl_mempool_free(b, pool);
    rcl_mempool_destroy(pool);
}

/* A NOWAIT scope takes DIRECT_RECLAIM away, so even an RCL_DEFAULT
 * allocation inside it must not sleep on the pool. */
TEST(test_nowait_scope_makes_alloc_nonblocking)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 1);
    rec_set_fail(&r, 1);
    void *a = rcl_mempool_alloc(pool, RCL_DEFAULT);
    assert_non_null(a);
    unsigned saved = rcl_nowait_save();
    assert_fails_with(rcl_mempool_alloc(pool, RCL_DEFAULT), ENOMEM);
    rcl_nowait_restore(saved);
    rcl_mempool_free(a, pool);
    rcl_mempool_destroy(pool);
}

/* Kernel rule (mempool_free): a freed element refills the reserve while it
 * is below min_nr; above it, the element goes back to the allocator. */
TEST(test_free_refills_the_reserve_then_releases)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 2);
    rec_set_fail(&r, 1);
    void *a = rcl_mempool_alloc(pool, RCL_NOWAIT);
    void *b = rcl_mempool_alloc(pool, RCL_NOWAIT);
    rec_set_fail(&r, 0);
    void *c = rcl_mempool_alloc(pool, RCL_NOWAIT);     /* from the allocator */
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    rcl_mempool_free(a, pool);
    rcl_mempool_free(b, pool);
    assert_int_equal(r.frees, 0);                       /* both refilled the reserve */
    rcl_mempool_free(c, pool);
    assert_int_equal(r.frees, 1);                       /* reserve full: released */
    rec_set_fail(&r, 1);
    a = rcl_mempool_alloc(pool, RCL_NOWAIT);
    b = rcl_mempool_alloc(pool, RCL_NOWAIT);
    assert_non_null(a);
    assert_non_null(b);
    rcl_mempool_free(a, pool);
    rcl_mempool_free(b, pool);
    rcl_mempool_destroy(pool);
    assert_int_equal(r.frees, 3);
}

/* A pool with min_nr 0 has no reserve, yet a blocked allocation is still
 * handed the next element freed (the kernel keeps one in that case). */
TEST(test_zero_reserve_pool_still_hands_over_freed_elements)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 0);
    void *a = rcl_mempool_alloc(pool, RCL_DEFAULT);
    assert_non_null(a);
    rec_set_fail(&r, 1);
    assert_null(rcl_mempool_alloc(pool, RCL_NOWAIT));
    struct taker t = { pool, RCL_DEFAULT, NULL, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, taker_main, &t), 0);
    rec_wait_full(&r);
    rcl_mempool_free(a, pool);
    pthread_join(th, NULL);
    assert_ptr_equal(t.got, a);
    rcl_mempool_free(t.got, pool);
    rcl_mempool_destroy(pool);
}

/* ------------------------------------------------------------------------ */
/* Resizing                                                                  */
/* ------------------------------------------------------------------------ */

TEST(test_resize_grows_and_shrinks_the_charged_reserve)
{
    struct rcl_mempool *pool = rcl_mempool_create(2, 8 * KiB);
    assert_non_null(pool);
    size_t at2 = usage_now();
    assert_int_equal(rcl_mempool_resize(pool, 10), 0);
    assert_true(usage_now() >= at2 + 8 * 8 * KiB);
    assert_int_equal(rcl_mempool_resize(pool, 1), 0);
    assert_true(usage_now() < at2);

    /* All ten? No: one now. The budget full, exactly one element is left. */
    void *fill = fill_budget();
    void *a = rcl_mempool_alloc(pool, RCL_NOWAIT);
    assert_non_null(a);
    assert_null(rcl_mempool_alloc(pool, RCL_NOWAIT));
    rcl_mempool_free(a, pool);
    rcl_free(fill);
    rcl_mempool_destroy(pool);
}

/* The reserve is filled, when the pool is made and when it grows, with the
 * flags the thread's scope leaves, as each allocation from it is: in a NOIO
 * scope the backing allocator sees no FS or I/O, in a NOWAIT scope no
 * direct reclaim (it may not sleep there). */
TEST(test_reserve_is_filled_with_the_flags_the_scope_leaves)
{
    struct recorder r;
    unsigned saved = rcl_noio_save();
    struct rcl_mempool *pool = ops_pool(&r, 2);
    assert_int_equal(rcl_mempool_resize(pool, 4), 0);
    rcl_noio_restore(saved);
    assert_int_equal(r.ncalls, 4);
    for (unsigned i = 0; i < r.ncalls; i++)
        assert_int_equal(r.calls[i] & (RCL__FS | RCL__IO), 0);

    rec_set_fail(&r, 0);
    saved = rcl_nowait_save();
    assert_int_equal(rcl_mempool_resize(pool, 6), 0);
    rcl_nowait_restore(saved);
    assert_int_equal(r.ncalls, 2);
    for (unsigned i = 0; i < r.ncalls; i++)
        assert_int_equal(r.calls[i] & RCL__DIRECT_RECLAIM, 0);
    rcl_mempool_destroy(pool);
}

TEST(test_resize_that_cannot_grow_leaves_the_pool_unchanged)
{
    struct rcl_mempool *pool = rcl_mempool_create(2, 8 * KiB);
    assert_non_null(pool);
    void *fill = fill_budget();
    size_t before = rcl_usage();
    assert_int_equal(rcl_mempool_resize(pool, 64), -ENOMEM);
    assert_int_equal(usage_now(), before);
    void *a = rcl_mempool_alloc(pool, RCL_NOWAIT);
    void *b = rcl_mempool_alloc(pool, RCL_NOWAIT);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(rcl_mempool_alloc(pool, RCL_NOWAIT));
    rcl_mempool_free(a, pool);
    rcl_mempool_free(b, pool);
    rcl_free(fill);
    rcl_mempool_destroy(pool);
}

/* A shrinker that gives back a pool's reserve under pressure, and the
 * memory that fills the budget. */
static struct rcl_mempool *shrunk_pool;
static _Atomic(void *) shrinker_fill;
static atomic_int shrinker_resizes;

static unsigned long resizing_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    return atomic_load(&shrinker_fill) ? 1 : 0;
}

static unsigned long resizing_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    void *fill = atomic_exchange(&shrinker_fill, NULL);
    if (!fill)
        return RCL_SHRINK_STOP;
    if (rcl_mempool_resize(shrunk_pool, 1) == 0)
        atomic_fetch_add(&shrinker_resizes, 1);
    rcl_free(fill);
    return 1;
}

/* A grow's allocations may reclaim, and reclaim runs the program's
 * shrinkers, one of which may resize the very pool that grows: the grow
 * holds no lock of the pool meanwhile, and goes on after the shrinker's
 * resize. (It held a resize lock across them: the shrinker's resize
 * waited for ever for its own thread, which the alarm turns into a
 * failure.) */
TEST(test_a_shrinker_may_resize_the_pool_whose_grow_reclaims)
{
    static const struct rcl_shrinker_ops ops = { resizing_count, resizing_scan };
    shrunk_pool = rcl_mempool_create(1, 64 * KiB);
    assert_non_null(shrunk_pool);
    struct rcl_shrinker *s = rcl_shrinker_register("resizes-a-pool", &ops, NULL, NULL);
    assert_non_null(s);
    atomic_store(&shrinker_resizes, 0);
    atomic_store(&shrinker_fill, fill_budget());

    alarm(10);
    assert_int_equal(rcl_mempool_resize(shrunk_pool, 4), 0);
    alarm(0);
    rcl_shrinker_unregister(s);
    assert_int_equal(atomic_load(&shrinker_resizes), 1);

    /* The grow came after the shrinker's resize: four in reserve. */
    void *fill = fill_budget();
    void *e[4];
    for (int i = 0; i < 4; i++)
        assert_non_null(e[i] = rcl_mempool_alloc(shrunk_pool, RCL_NOWAIT));
    assert_null(rcl_mempool_alloc(shrunk_pool, RCL_NOWAIT));
    for (int i = 0; i < 4; i++)
        rcl_mempool_free(e[i], shrunk_pool);
    rcl_free(fill);
    rcl_mempool_destroy(shrunk_pool);
}

/* A backing allocator that, at its first call once armed, resizes its own
 * pool to nested_min (as a shrinker its reclaim ran would). */
static struct rcl_mempool *nesting_pool;
static atomic_int nesting_armed;
static unsigned nested_min;
static atomic_int nested_result = 1;

static void *nesting_alloc(rcl_gfp_t gfp, void *data)
{
    if (atomic_exchange(&nesting_armed, 0))
        atomic_store(&nested_result, rcl_mempool_resize(nesting_pool, nested_min));
    return rec_alloc(gfp, data);
}

/* Grows a pool of 2 to 4 while its allocator resizes it to inner; then,
 * the allocator failing, exactly 4 elements are in reserve, and every
 * element the allocator made is freed by the destroy. (The grow held a
 * resize lock across its allocations: the inner resize waited for ever
 * for its own thread, which the alarm turns into a failure.) */
static void grow_around_a_nested_resize(unsigned inner)
{
    struct recorder r;
    rec_init(&r);
    nesting_pool = rcl_mempool_create_ops(2, nesting_alloc, rec_free, &r);
    assert_non_null(nesting_pool);
    nested_min = inner;
    atomic_store(&nested_result, 1);
    atomic_store(&nesting_armed, 1);

    alarm(10);
    assert_int_equal(rcl_mempool_resize(nesting_pool, 4), 0);
    alarm(0);
    assert_int_equal(atomic_load(&nested_result), 0);

    unsigned made = r.ncalls;           /* each succeeded */
    rec_set_fail(&r, 1);
    void *e[4];
    for (int i = 0; i < 4; i++)
        assert_non_null(e[i] = rcl_mempool_alloc(nesting_pool, RCL_NOWAIT));
    assert_null(rcl_mempool_alloc(nesting_pool, RCL_NOWAIT));
    for (int i = 0; i < 4; i++)
        rcl_mempool_free(e[i], nesting_pool);
    rcl_mempool_destroy(nesting_pool);
    assert_int_equal(r.frees, made);
}

/* The inner resize empties the reserve the grow had counted on: the grow
 * allocates again for what it lost, and fills the reserve to 4. */
TEST(test_a_grow_whose_allocator_shrinks_the_pool_fills_the_reserve_whole)
{
    grow_around_a_nested_resize(0);
}

/* The inner resize grows past the outer one, which comes after it and
 * leaves its own min_nr. */
TEST(test_a_grow_whose_allocator_grows_the_pool_further_comes_after_it)
{
    grow_around_a_nested_resize(10);
}

/* The backing allocator's calls after the first allocs_before_exit end
 * the calling thread, as a program's may (pthread_exit()). */
static atomic_int allocs_before_exit;

static void *exiting_alloc(rcl_gfp_t gfp, void *data)
{
    if (atomic_fetch_sub(&allocs_before_exit, 1) <= 0)
        pthread_exit(NULL);
    return rec_alloc(gfp, data);
}

static void *resizes_and_ends(void *pool)
{
    rcl_mempool_resize(pool, 4);
    return NULL;
}

/* A resize whose allocator ends the thread ends the resize as a failed
 * allocation would: the element it had is freed, its arrays are given
 * back, and the next resize goes through. (The resize lock stayed held by
 * the gone thread: the next resize waited for ever, which the alarm turns
 * into a failure.) */
TEST(test_a_thread_ending_in_the_allocator_of_a_resize_lets_go_of_the_pool)
{
    struct recorder r;
    pthread_t th;

    rec_init(&r);
    atomic_store(&allocs_before_exit, 2);     /* the reserve's one, the grow's first */
    struct rcl_mempool *pool = rcl_mempool_create_ops(1, exiting_alloc, rec_free, &r);
    assert_non_null(pool);
    alarm(10);
    size_t before = usage_now();

    assert_int_equal(pthread_create(&th, NULL, resizes_and_ends, pool), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(usage_now(), before);
    assert_int_equal(r.frees, 1);

    atomic_store(&allocs_before_exit, INT_MAX);
    assert_int_equal(rcl_mempool_resize(pool, 2), 0);
    rcl_mempool_destroy(pool);
    alarm(0);
}

static void *creates_and_ends(void *r)
{
    rcl_mempool_create_ops(4, exiting_alloc, rec_free, r);
    return NULL;
}

/* A create whose allocator ends the thread while the reserve is filled
 * leaves no pool, as a failed fill does not: the elements it had are
 * freed and the pool's own memory given back. */
TEST(test_a_thread_ending_in_the_allocator_of_a_create_leaves_no_pool)
{
    struct recorder r;
    pthread_t th;

    rec_init(&r);
    atomic_store(&allocs_before_exit, 2);
    size_t before = usage_now();

    assert_int_equal(pthread_create(&th, NULL, creates_and_ends, &r), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(usage_now(), before);
    assert_int_equal(r.frees, 2);
}

/* rcl_shutdown() from an ops pool's backing allocator or free goes
 * through, and an rcl_init() after it there too: the pool holds none of
 * its locks across them, and nothing of the library's that a shutdown
 * drops, so the allocation or free that called them goes on, and the
 * pool works on in the library started again. The limits tell each
 * restart. */
static atomic_int restarts_left;
static atomic_size_t restart_limit;

static void restart_here(void)
{
    if (atomic_load(&restarts_left) <= 0)
        return;
    atomic_fetch_sub(&restarts_left, 1);
    rcl_shutdown();
    struct rcl_config cfg = test_config(atomic_fetch_add(&restart_limit, MiB));
    assert_int_equal(rcl_init(&cfg), 0);
}

static void *restarting_alloc(rcl_gfp_t gfp, void *data)
{
    restart_here();
    return rec_alloc(gfp, data);
}

static void restarting_free(void *elem, void *data)
{
    restart_here();
    rec_free(elem, data);
}

TEST(test_shutdown_from_a_backing_allocator_or_free_goes_through)
{
    struct recorder r;

    rec_init(&r);
    struct rcl_mempool *pool = rcl_mempool_create_ops(0, restarting_alloc, restarting_free, &r);
    assert_non_null(pool);
    atomic_store(&restart_limit, 8 * MiB);
    atomic_store(&restarts_left, 1);
    void *elem = rcl_mempool_alloc(pool, RCL_DEFAULT);
    assert_non_null(elem);
    assert_int_equal(rcl_limit(), 8 * MiB);
    void *more = rcl_mempool_alloc(pool, RCL_DEFAULT);
    assert_non_null(more);
    rcl_mempool_free(elem, pool);               /* kept: the reserve is empty */
    atomic_store(&restarts_left, 1);
    rcl_mempool_free(more, pool);               /* to the backing free */
    assert_int_equal(rcl_limit(), 9 * MiB);
    rcl_mempool_destroy(pool);
    assert_int_equal(r.frees, 2);
    assert_int_equal(test_report_count(), 0);
}

/* A shrinker that ends the thread whose reclaim runs it, on the test's
 * thread only, as a program's may (pthread_exit()). */
static __thread bool ends_in_reclaim;
static atomic_int reclaim_ends;

static unsigned long ending_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    return ends_in_reclaim ? 1000 : 0;
}

static unsigned long ending_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    if (ends_in_reclaim) {
        atomic_fetch_add(&reclaim_ends, 1);
        pthread_exit(NULL);
    }
    return RCL_SHRINK_STOP;
}

/* A reserve of 64 Ki elements: its array of pointers is half a megabyte,
 * which a budget with 64 KiB of room allocates only after reclaim, while
 * the pool's own struct takes no reclaim. */
static void *creates_and_ends_in_reclaim(void *r)
{
    ends_in_reclaim = true;
    rcl_mempool_create_ops(64 * 1024, rec_alloc, rec_free, r);
    return NULL;
}

/* A create that ends its thread in the reclaim of its own allocation
 * leaves no pool either. (The pool's struct, allocated first, was lost
 * when the thread ended in the allocation of its reserve's array.) */
TEST(test_a_thread_ending_in_the_reclaim_of_a_create_leaves_no_pool)
{
    static const struct rcl_shrinker_ops ops = { ending_count, ending_scan };
    struct recorder r;
    pthread_t th;

    rec_init(&r);
    struct rcl_shrinker *s = rcl_shrinker_register("ends-the-create", &ops, NULL, NULL);
    assert_non_null(s);
    atomic_store(&reclaim_ends, 0);
    rcl_usage_sync();
    struct rcl_stats st;
    rcl_stats_get(&st);
    void *fill = rcl_alloc(test_fitting(st.limit - rcl_usage() - st.wmark_min - 64 * KiB),
                           RCL_NOWAIT);
    assert_non_null(fill);
    size_t before = usage_now();

    assert_int_equal(pthread_create(&th, NULL, creates_and_ends_in_reclaim, &r), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&reclaim_ends), 1);
    assert_int_equal(usage_now(), before);
    assert_int_equal(r.ncalls, 0);
    rcl_shrinker_unregister(s);
    rcl_free(fill);
}

/* While set, the backing free's next call ends the calling thread once
 * it has freed the element, as a program's may (pthread_exit()). */
static atomic_int free_ends_thread;

static void exiting_free(void *elem, void *data)
{
    rec_free(elem, data);
    if (atomic_exchange(&free_ends_thread, 0))
        pthread_exit(NULL);
}

/* Runs fn(arg) on a thread of its own that the backing free's next call
 * ends, and waits for that thread to be gone. */
static void run_on_a_thread_ended_in_the_backing_free(void *(*fn)(void *), void *arg)
{
    pthread_t th;

    atomic_store(&free_ends_thread, 1);
    assert_int_equal(pthread_create(&th, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

/* ops_pool()'s, its backing free the one that may end the calling thread. */
static struct rcl_mempool *exiting_ops_pool(struct recorder *r, unsigned min_nr)
{
    rec_init(r);
    struct rcl_mempool *pool = rcl_mempool_create_ops(min_nr, rec_alloc, exiting_free, r);
    assert_non_null(pool);
    return pool;
}

struct free_and_end {
    struct rcl_mempool *pool;
    void *elem;
};

static void *frees_and_ends(void *arg)
{
    struct free_and_end *f = arg;
    rcl_mempool_free(f->elem, f->pool);
    return NULL;
}

/* A free whose backing free ends the thread counts the element as
 * returned, as the free's return would. (It stayed counted as out: the
 * destroy reported an element still allocated, and the pool, waiting
 * for it, was never freed.) */
TEST(test_a_thread_ending_in_the_backing_free_returns_the_element)
{
    struct recorder r;

    size_t base = usage_now();
    struct rcl_mempool *pool = exiting_ops_pool(&r, 1);
    struct free_and_end f = { pool, rcl_mempool_alloc(pool, RCL_DEFAULT) };
    assert_non_null(f.elem);               /* the allocator's: the reserve stays full */

    run_on_a_thread_ended_in_the_backing_free(frees_and_ends, &f);
    assert_int_equal(r.frees, 1);

    test_reports_reset();
    rcl_mempool_destroy(pool);
    assert_int_equal(test_report_count(), 0);
    assert_int_equal(r.frees, 2);
    assert_int_equal(usage_now(), base);
}

static void *shrinks_to_one(void *pool)
{
    rcl_mempool_resize(pool, 1);
    return NULL;
}

/* A shrink whose backing free ends the thread still gives back what the
 * reserve holds above the new size, as the shrink's return would have.
 * (The rest stayed in the reserve, above min_nr, with nothing to give it
 * back.) */
TEST(test_a_thread_ending_in_a_backing_free_of_a_shrink_still_shrinks_the_reserve)
{
    struct recorder r;

    struct rcl_mempool *pool = exiting_ops_pool(&r, 4);

    run_on_a_thread_ended_in_the_backing_free(shrinks_to_one, pool);
    assert_int_equal(r.frees, 3);

    rec_set_fail(&r, 1);
    void *e = rcl_mempool_alloc(pool, RCL_NOWAIT);          /* the one left */
    assert_non_null(e);
    assert_null(rcl_mempool_alloc(pool, RCL_NOWAIT));
    rcl_mempool_free(e, pool);
    rcl_mempool_destroy(pool);
    assert_int_equal(r.frees, 4);
    assert_int_equal(test_report_count(), 0);
}

static void *destroys(void *pool)
{
    rcl_mempool_destroy(pool);
    return NULL;
}

/* A destroy whose backing free ends the thread still frees the rest of
 * the reserve and the pool, as the destroy's return would have. (The
 * elements after that one and the pool's own memory were lost.) */
TEST(test_a_thread_ending_in_a_backing_free_of_a_destroy_still_frees_the_pool)
{
    struct recorder r;

    size_t base = usage_now();
    struct rcl_mempool *pool = exiting_ops_pool(&r, 3);

    run_on_a_thread_ended_in_the_backing_free(destroys, pool);
    assert_int_equal(r.frees, 3);
    assert_int_equal(usage_now(), base);
}

struct churn {
    struct rcl_mempool *pool;
    atomic_int stop;
    atomic_uint next_seed;
    atomic_ulong done, failed;
};

/* Worker threads count failures rather than assert: cmocka's asserts
 * belong to the thread running the test. */
static void *churn_main(void *arg)
{
    struct churn *c = arg;
    unsigned seed = 1234u + atomic_fetch_add(&c->next_seed, 1);
    while (!atomic_load(&c->stop)) {
        void *held[4];
        int n = 1 + (int)(rand_r(&seed) % 4);
        for (int i = 0; i < n; i++) {
            held[i] = rcl_mempool_alloc(c->pool, RCL_DEFAULT);
            if (!held[i]) {
                atomic_fetch_add(&c->failed, 1);
                n = i;
                break;
            }
            memset(held[i], 0xa5, 512);
        }
        for (int i = 0; i < n; i++)
            rcl_mempool_free(held[i], c->pool);
        atomic_fetch_add(&c->done, 1);
    }
    return NULL;
}

/* The pool the churners share, 4 elements of 512 bytes; returns the
 * usage before it, which churn_end() finds again once the pool is gone,
 * with no report made. */
static size_t churn_begin(struct churn *c)
{
    size_t base = usage_now();
    memset(c, 0, sizeof(*c));
    c->pool = rcl_mempool_create(4, 512);
    assert_non_null(c->pool);
    return base;
}

static void churn_end(struct churn *c, size_t base)
{
    rcl_mempool_destroy(c->pool);
    assert_int_equal(test_report_count(), 0);
    assert_int_equal(usage_now(), base);
}

/* Resizing while other threads allocate and free: no element is lost,
 * none counted twice, nobody fails, and the budget balances at the end. */
TEST(test_resize_while_other_threads_allocate)
{
    static struct churn c;
    size_t base = churn_begin(&c);
    enum { NT = 4 };
    pthread_t th[NT];
    for (int i = 0; i < NT; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn_main, &c), 0);
    unsigned seed = 42;
    int rounds = test_scale(400);
    /* Until both sides have done a fair share, however they are scheduled. */
    for (int i = 0; i < rounds || atomic_load(&c.done) < 100; i++)
        assert_int_equal(rcl_mempool_resize(c.pool, rand_r(&seed) % 12), 0);
    atomic_store(&c.stop, 1);
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&c.failed), 0);
    assert_true(atomic_load(&c.done) > 0);
    churn_end(&c, base);
}

struct resizer {
    struct churn *c;
    unsigned seed;
    atomic_ulong *failed;
};

static void *resizer_main(void *arg)
{
    struct resizer *r = arg;
    unsigned seed = r->seed;
    for (int i = 0; i < test_scale(400); i++)
        if (rcl_mempool_resize(r->c->pool, rand_r(&seed) % 12) != 0)
            atomic_fetch_add(r->failed, 1);
    return NULL;
}

/* Resizes from several threads at once, while others allocate and free,
 * each take effect whole: when they are done, one more resize leaves
 * exactly its min_nr in reserve, and the budget balances at the end. */
TEST(test_concurrent_resizes_leave_the_last_ones_reserve)
{
    static struct churn c;
    size_t base = churn_begin(&c);
    enum { NC = 2, NR = 3 };
    pthread_t churners[NC], resizers[NR];
    atomic_ulong failed = 0;
    struct resizer r[NR];
    for (int i = 0; i < NC; i++)
        assert_int_equal(pthread_create(&churners[i], NULL, churn_main, &c), 0);
    for (int i = 0; i < NR; i++) {
        r[i] = (struct resizer){ &c, 77u * (unsigned)(i + 1), &failed };
        assert_int_equal(pthread_create(&resizers[i], NULL, resizer_main, &r[i]), 0);
    }
    for (int i = 0; i < NR; i++)
        pthread_join(resizers[i], NULL);
    atomic_store(&c.stop, 1);
    for (int i = 0; i < NC; i++)
        pthread_join(churners[i], NULL);
    assert_int_equal(atomic_load(&failed), 0);
    assert_int_equal(atomic_load(&c.failed), 0);

    assert_int_equal(rcl_mempool_resize(c.pool, 5), 0);
    void *fill = fill_budget();
    void *e[5];
    for (int i = 0; i < 5; i++)
        assert_non_null(e[i] = rcl_mempool_alloc(c.pool, RCL_NOWAIT));
    assert_null(rcl_mempool_alloc(c.pool, RCL_NOWAIT));
    for (int i = 0; i < 5; i++)
        rcl_mempool_free(e[i], c.pool);
    rcl_free(fill);
    churn_end(&c, base);
}

/* ------------------------------------------------------------------------ */
/* Destroy                                                                   */
/* ------------------------------------------------------------------------ */

/* Elements still out at destroy: reported; the pool lives on until the
 * last one is returned, then goes (ASan's leak check holds the "goes"). */
TEST(test_destroy_with_elements_out_is_reported_not_a_crash)
{
    size_t base = usage_now();
    struct rcl_mempool *pool = rcl_mempool_create(2, 1024);
    assert_non_null(pool);
    void *a = rcl_mempool_alloc(pool, RCL_DEFAULT);
    void *b = rcl_mempool_alloc(pool, RCL_DEFAULT);
    test_reports_reset();
    rcl_mempool_destroy(pool);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("still allocated");

    /* Use after destroy, while the pool still exists, is caught too. */
    assert_fails_with(rcl_mempool_alloc(pool, RCL_DEFAULT), ESHUTDOWN);
    assert_int_equal(rcl_mempool_resize(pool, 4), -ESHUTDOWN);
    rcl_mempool_destroy(pool);
    assert_last_report_has("not a live pool");

    memset(a, 1, 1024);                 /* still the caller's */
    rcl_mempool_free(a, pool);
    rcl_mempool_free(b, pool);          /* the last: the pool goes now */
    assert_int_equal(usage_now(), base);
}

/* A destroy of a pool that is gone finds none: reported (EINVAL), and the
 * memory the pool had, which may be a block the program uses by now, is
 * not written. */
TEST(test_destroy_of_a_destroyed_pool_is_reported)
{
    struct rcl_mempool *pool = rcl_mempool_create(2, 64);
    assert_non_null(pool);
    rcl_mempool_destroy(pool);
    test_reports_reset();
    errno = 0;
    rcl_mempool_destroy(pool);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("not a live pool");
}

TEST(test_destroy_of_what_never_was_a_pool_writes_nothing)
{
    void *fake = test_fake_object();
    test_reports_reset();
    errno = 0;
    rcl_mempool_destroy(fake);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_true(test_fake_untouched(fake));
}

/* Until n threads are counted waiting in the pool. A thread is counted
 * under the pool's lock, in the critical section in which it first sleeps,
 * so a destroy from now on, which takes the lock to wake the waiters,
 * finds it asleep. */
static void wait_for_waiters(struct rcl_mempool *pool, unsigned n)
{
    for (int ms = 0; ms < 20000 && rcl__mempool_waiters(pool) < n; ms++)
        test_sleep_ms(1);
    assert_int_equal(rcl__mempool_waiters(pool), n);
}

/* A waiter the destroy did not wake would hang the test: failed instead. */
static void join_in_time(pthread_t th)
{
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 20;
    assert_int_equal(pthread_timedjoin_np(th, NULL, &limit), 0);
}

/* Misuse: a pool destroyed while a thread waits in it for an element, and
 * the element then returned (the header: destroy must not race a call
 * still allocating). The destroy reports it and wakes the waiter, which
 * fails at once with ESHUTDOWN, as an allocation after the destroy does,
 * and reports that; the pool goes when the last of the waiter and the
 * element has left it, never under either (ASan and the teardown's usage
 * check hold both). Freed under the waiter, its wake-up hung in glibc. */
/* A pool of one element, *a, whose backing allocator fails, and a thread
 * th waiting in it for a second, with t to say how its wait ended. */
static struct rcl_mempool *pool_with_a_waiter(struct recorder *r, void **a, struct taker *t,
                                              pthread_t *th)
{
    struct rcl_mempool *pool = ops_pool(r, 1);
    rec_set_fail(r, 1);
    *a = rcl_mempool_alloc(pool, RCL_DEFAULT);          /* the reserve's one */
    assert_non_null(*a);
    *t = (struct taker){ pool, RCL_DEFAULT, NULL, 0 };
    assert_int_equal(pthread_create(th, NULL, taker_main, t), 0);
    wait_for_waiters(pool, 1);
    return pool;
}

TEST(test_destroy_wakes_a_waiter_which_fails_with_eshutdown)
{
    struct recorder r;
    struct taker t;
    pthread_t th;
    void *a;
    struct rcl_mempool *pool = pool_with_a_waiter(&r, &a, &t, &th);

    rcl_mempool_destroy(pool);
    rcl_mempool_free(a, pool);          /* the last element: may go first */
    join_in_time(th);
    assert_null(t.got);
    assert_int_equal(t.err, ESHUTDOWN);
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("1 thread(s) still waiting to allocate");
    assert_reports_have("rcl_mempool_alloc(");
    assert_int_equal(r.frees, 1);       /* the pool is gone: a went with it */
}

static void *destroys_and_ends(void *pool)
{
    test_reports_end_this_thread();
    rcl_mempool_destroy(pool);
    return NULL;                                /* not reached */
}

/* The destroy reports once it is done: a report function that ends its
 * thread there leaves the waiter woken to fail, and the pool freed when
 * its last element is back. (The gone destroy stayed counted as one of
 * the waiters: the pool was never freed, and the waiter slept until its
 * next retry.) */
TEST(test_a_destroy_whose_report_ends_its_thread_still_frees_the_pool)
{
    struct recorder r;
    struct taker t;
    pthread_t th, destroyer;
    void *a;
    struct rcl_mempool *pool = pool_with_a_waiter(&r, &a, &t, &th);

    rcl_set_report_fn(test_report_catch_then_end, NULL);
    assert_int_equal(pthread_create(&destroyer, NULL, destroys_and_ends, pool), 0);
    join_in_time(destroyer);
    join_in_time(th);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_null(t.got);
    assert_int_equal(t.err, ESHUTDOWN);

    rcl_mempool_free(a, pool);          /* the last element: the pool goes */
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("1 thread(s) still waiting to allocate");
    assert_int_equal(r.frees, 1);
}

/* A backing allocator that forks once when asked, as a program's may
 * (a helper process started where memory is needed), and otherwise is the
 * recorder's. */
static atomic_int fork_in_alloc;
static pid_t forked_child;
static bool in_forked_child;

static void *forking_alloc(rcl_gfp_t gfp, void *data)
{
    if (atomic_exchange(&fork_in_alloc, 0)) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            test_forked_child_dies_of_its_crashes();
            in_forked_child = true;
        } else {
            forked_child = pid;
        }
    }
    return rec_alloc(gfp, data);
}

/* In the child: the thread that forked goes on in its allocation, and
 * once it has its element the pool counts no waiter and is alive. */
static void *takes_and_checks_the_child(void *arg)
{
    struct taker *t = arg;
    taker_main(t);
    if (in_forked_child) {
        int code = !t->got ? 1 : rcl__mempool_waiters(t->pool) != 0 ? 2 : 0;
        void *e = code ? NULL : rcl_mempool_alloc(t->pool, RCL_NOWAIT);
        _exit(code ? code : e ? 0 : 3);
    }
    return NULL;
}

/* The child's exit status, or -1 (after killing it) if it has not ended
 * within 20 s. */
static int child_status(pid_t pid)
{
    int status;
    for (int ms = 0; ms < 20000; ms++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        test_sleep_ms(1);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* A waiter whose backing allocator forks, in a retry after a wait, goes on
 * in the child as a waiter of the pool: the child forgets the other
 * threads' waits, not its own. (It forgot its own too: its leave then took
 * the count below zero, and the pool read as being destroyed.) */
TEST(test_a_waiter_that_forks_in_the_backing_allocator_is_still_one_in_the_child)
{
    struct recorder r;
    rec_init(&r);
    struct rcl_mempool *pool = rcl_mempool_create_ops(1, forking_alloc, rec_free, &r);
    assert_non_null(pool);
    rec_set_fail(&r, 1);
    void *a = rcl_mempool_alloc(pool, RCL_DEFAULT);     /* the reserve's one */
    assert_non_null(a);
    struct taker t = { pool, RCL_DEFAULT, NULL, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, takes_and_checks_the_child, &t), 0);
    wait_for_waiters(pool, 1);

    atomic_store(&fork_in_alloc, 1);
    rec_set_fail(&r, 0);
    rcl_mempool_free(a, pool);          /* wakes it: it tries the allocator first */
    join_in_time(th);
    assert_non_null(t.got);
    assert_int_equal(child_status(forked_child), 0);

    rcl_mempool_free(t.got, pool);
    rcl_mempool_destroy(pool);
    assert_int_equal(test_report_count(), 0);
}

static void *takes_and_ends_in_its_report(void *arg)
{
    test_reports_end_this_thread();
    return taker_main(arg);
}

/* The woken waiter reports its failure once it has left the pool: a
 * report function that ends its thread there leaves the pool freed when
 * its last element is back. (The gone waiter stayed counted: the pool and
 * its reserve were never freed.) */
TEST(test_a_woken_waiter_whose_report_ends_its_thread_still_lets_the_pool_go)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 1);
    rec_set_fail(&r, 1);
    void *a = rcl_mempool_alloc(pool, RCL_DEFAULT);     /* the reserve's one */
    assert_non_null(a);
    struct taker t = { pool, RCL_DEFAULT, NULL, 0 };
    pthread_t th;
    rcl_set_report_fn(test_report_catch_then_end, NULL);
    assert_int_equal(pthread_create(&th, NULL, takes_and_ends_in_its_report, &t), 0);
    wait_for_waiters(pool, 1);

    rcl_mempool_destroy(pool);
    join_in_time(th);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("1 thread(s) still waiting to allocate");
    assert_reports_have("rcl_mempool_alloc(");

    rcl_mempool_free(a, pool);          /* the last element: the pool goes */
    assert_int_equal(r.frees, 1);
}

/* A pool with min_nr 0 and a failing allocator has a waiter with no
 * element out: destroyed then, it is freed by whichever of the destroy
 * and the woken waiter leaves it last, not at once under the waiter. */
TEST(test_destroy_with_only_a_waiter_frees_the_pool_once_it_has_left)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 0);
    rec_set_fail(&r, 1);
    struct taker t = { pool, RCL_DEFAULT, NULL, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, taker_main, &t), 0);
    wait_for_waiters(pool, 1);

    rcl_mempool_destroy(pool);
    join_in_time(th);
    assert_null(t.got);
    assert_int_equal(t.err, ESHUTDOWN);
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("1 thread(s) still waiting to allocate, woken to fail (ESHUTDOWN), "
                        "and 0 element(s) still allocated");
    assert_reports_have("rcl_mempool_alloc(");
}

TEST(test_a_block_from_outside_the_pool_freed_to_it_is_reported_and_left_to_its_owner)
{
    struct rcl_mempool *pool = rcl_mempool_create(1, 64);
    assert_non_null(pool);
    void *stray = rcl_alloc(64, RCL_DEFAULT);
    test_reports_reset();
    /* A pool backed by the budget knows its elements: the stray is caught
     * as foreign before it can be counted, and left to its owner. */
    rcl_mempool_free(stray, pool);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("not from this pool");
    rcl_free(stray);
    rcl_mempool_destroy(pool);
}

/* An element freed twice while the first free put it in the reserve would
 * be in the reserve twice, and handed to two owners; or, with the reserve
 * full by then, freed to the backend while the reserve still holds it.
 * A budget-backed pool's element says where it is: the second free is
 * refused whether or not the reserve has room. */
TEST(test_second_free_of_a_reserved_element_is_refused)
{
    struct rcl_mempool *pool = rcl_mempool_create(2, 64);
    assert_non_null(pool);
    void *fill = fill_budget();
    void *a = rcl_mempool_alloc(pool, RCL_NOWAIT);
    void *b = rcl_mempool_alloc(pool, RCL_NOWAIT);
    assert_non_null(a);
    assert_non_null(b);
    test_reports_reset();
    rcl_mempool_free(a, pool);              /* into the reserve */
    rcl_mempool_free(a, pool);              /* room for it again: refused */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("freed twice");
    rcl_mempool_free(b, pool);              /* the reserve is full now */
    rcl_mempool_free(a, pool);              /* would go to the backend */
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("freed twice");

    void *x = rcl_mempool_alloc(pool, RCL_NOWAIT);
    void *y = rcl_mempool_alloc(pool, RCL_NOWAIT);
    assert_non_null(x);
    assert_non_null(y);
    assert_ptr_not_equal(x, y);
    rcl_mempool_free(x, pool);
    rcl_mempool_free(y, pool);
    rcl_free(fill);
    rcl_mempool_destroy(pool);
    assert_int_equal(test_report_count(), 2);
}

/* A pool with its own alloc/free has no tag to read: the reserve is looked
 * through before an element enters it, so it never holds one twice. */
TEST(test_second_free_into_an_ops_pools_reserve_is_refused)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 2);
    rec_set_fail(&r, 1);
    void *a = rcl_mempool_alloc(pool, RCL_NOWAIT);
    void *b = rcl_mempool_alloc(pool, RCL_NOWAIT);
    assert_non_null(a);
    assert_non_null(b);
    test_reports_reset();
    rcl_mempool_free(a, pool);
    rcl_mempool_free(a, pool);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("freed twice");
    assert_int_equal(r.frees, 0);

    void *x = rcl_mempool_alloc(pool, RCL_NOWAIT);
    assert_ptr_equal(x, a);
    assert_null(rcl_mempool_alloc(pool, RCL_NOWAIT));  /* one, not two */
    rcl_mempool_free(x, pool);
    rcl_mempool_free(b, pool);
    rcl_mempool_destroy(pool);
    assert_int_equal(r.frees, 2);
    assert_int_equal(test_report_count(), 1);
}

/* A pool on the program's own allocator cannot tell its elements, but it
 * knows when none is out: one freed then, its reserve full, is reported
 * and left to its owner. (It went to the free callback first: an element
 * freed twice, the first free having given it to the callback, was freed
 * there twice.) */
TEST(test_freeing_more_than_allocated_to_an_ops_pool_is_reported)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 1);
    void *stray = malloc(64);
    assert_non_null(stray);
    test_reports_reset();
    rcl_mempool_free(stray, pool);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("more elements freed than allocated");
    assert_int_equal(r.frees, 0);
    free(stray);
    void *e = rcl_mempool_alloc(pool, RCL_DEFAULT);   /* the count still works */
    assert_non_null(e);
    rcl_mempool_free(e, pool);
    rcl_mempool_destroy(pool);
    assert_int_equal(test_report_count(), 1);
}

/* The same with room in the reserve: the element is refused before it can
 * enter it. (It was kept there, and handed to the next allocation the
 * allocator failed.) */
TEST(test_an_element_freed_to_an_ops_pool_with_none_out_never_enters_its_reserve)
{
    struct recorder r;
    struct rcl_mempool *pool = ops_pool(&r, 0);
    rec_set_fail(&r, 1);
    void *stray = malloc(64);
    assert_non_null(stray);
    test_reports_reset();
    rcl_mempool_free(stray, pool);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("more elements freed than allocated");
    assert_null(rcl_mempool_alloc(pool, RCL_NOWAIT));
    free(stray);
    rcl_mempool_destroy(pool);
    assert_int_equal(r.frees, 0);
    assert_int_equal(test_report_count(), 1);
}

/* ------------------------------------------------------------------------ */
/* Stress                                                                    */
/* ------------------------------------------------------------------------ */

struct stress {
    struct rcl_mempool *pool;
    int iterations;
    unsigned seed;
    atomic_int *finished, *failed;
};

static void *stress_main(void *arg)
{
    struct stress *s = arg;
    unsigned seed = s->seed;
    unsigned char pat = (unsigned char)s->seed;
    for (int i = 0; i < s->iterations; i++) {
        unsigned char *e = rcl_mempool_alloc(s->pool, RCL_DEFAULT);
        if (!e) {
            atomic_fetch_add(s->failed, 1);
            continue;
        }
        /* Own it: a pattern no other thread may be writing meanwhile. */
        memset(e, pat, 256);
        if (rand_r(&seed) % 4 == 0)
            sched_yield();
        for (int j = 0; j < 256; j++)
            if (e[j] != pat) {
                atomic_fetch_add(s->failed, 1);
                break;
            }
        rcl_mempool_free(e, s->pool);
    }
    atomic_fetch_add(s->finished, 1);
    return NULL;
}

/* The stress test: 16 threads, a budget full of memory nothing can
 * reclaim, a pool of 3 elements. A blocking mempool allocation never fails,
 * so every thread finishes every iteration. */
TEST(test_stress_many_threads_full_budget_small_pool)
{
    enum { NT = 16 };
    struct rcl_mempool *pool = rcl_mempool_create(3, 256);
    assert_non_null(pool);
    void *fill = fill_budget();
    /* Nothing but the reserve can serve them. */
    assert_null(rcl_alloc(256, RCL_DEFAULT | RCL__NOWARN));

    atomic_int finished = 0, failed = 0;
    pthread_t th[NT];
    struct stress s[NT];
    for (int i = 0; i < NT; i++) {
        /* Seeded: the low byte (the pattern) differs for every thread. */
        s[i] = (struct stress){ pool, test_scale(2000), (0x9e3779b9u * (unsigned)(i + 1) & ~0xffu) | (unsigned)i,
                                &finished, &failed };
        assert_int_equal(pthread_create(&th[i], NULL, stress_main, &s[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&finished), NT);
    assert_int_equal(atomic_load(&failed), 0);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_true(st.mempool_reserve_hits >= (unsigned long)(NT * test_scale(2000)));
    rcl_free(fill);
    rcl_mempool_destroy(pool);
    assert_int_equal(test_report_count(), 0);
}

TEST_MAIN();
