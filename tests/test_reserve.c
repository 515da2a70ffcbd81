/* SPDX-License-Identifier: MIT */
/*
 * test_reserve.c - the reserve below the min watermark, tier by tier.
 *
 * Kernel rule (mm/page_alloc.c, __zone_watermark_ok and
 * gfp_pfmemalloc_allowed): ordinary allocations stop at the min watermark;
 * __GFP_HIGH may go part of the way below it; PF_MEMALLOC (a thread that is
 * reclaiming) and __GFP_MEMALLOC may use all of it; __GFP_NOMEMALLOC never
 * any, whatever else says so. PR_SET_IO_FLUSHER threads get the reserve in
 * libreclaim too, since reclaim may be waiting on them.
 *
 * Each test starts with a 16 MiB budget whose reserve is 1 MiB, filled with
 * unreclaimable memory down to the min watermark: exactly the reserve is
 * left.
 */
#include "helpers.h"

#define LIMIT   (16 * MiB)
#define RESERVE (1 * MiB)

static void *fill;

static int reserve_setup(void **state)
{
    (void)state;
    struct rcl_config cfg = test_config(LIMIT);
    cfg.reserve = RESERVE;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    if (rcl_init(&cfg) != 0)
        return -1;
    struct rcl_stats st;
    rcl_stats_get(&st);
    if (st.wmark_min != RESERVE)
        return -1;
    rcl_usage_sync();
    fill = rcl_alloc(test_fitting(LIMIT - RESERVE - rcl_usage()), RCL_NOWAIT);
    rcl_usage_sync();
    return fill ? 0 : -1;
}

static int reserve_teardown(void **state)
{
    rcl_free(fill);
    fill = NULL;
    return test_teardown(state);
}


static size_t headroom(void)
{
    rcl_usage_sync();
    return rcl_limit() - rcl_usage();
}

TEST_WITH(test_budget_is_filled_to_the_min_watermark, reserve_setup, reserve_teardown)
{
    assert_int_equal(headroom(), RESERVE);
}

TEST_WITH(test_ordinary_allocation_stops_at_the_min_watermark, reserve_setup, reserve_teardown)
{
    assert_fails_with(rcl_alloc(1024, RCL_DEFAULT | RCL__NOWARN), ENOMEM);
    assert_null(rcl_alloc(1024, RCL_NOWAIT));
    assert_null(rcl_alloc(1024, RCL_NOIO | RCL__NOWARN));
    assert_int_equal(headroom(), RESERVE);
}

/* PF_MEMALLOC: reclaim itself may use all of the reserve, and no more. */
TEST_WITH(test_noreclaim_scope_may_use_the_whole_reserve, reserve_setup, reserve_teardown)
{
    unsigned saved = rcl_noreclaim_save();
    void *p = rcl_alloc(test_fitting(RESERVE), RCL_NOIO);
    assert_non_null(p);
    assert_null(rcl_alloc(16, RCL_NOIO | RCL__NOWARN));   /* the limit is the limit */
    rcl_noreclaim_restore(saved);
    rcl_free(p);
    assert_int_equal(headroom(), RESERVE);
}

/* The shrinker side: a cache whose write-back needs a request structure
 * before it can free anything. */
struct writeback {
    void     *dirty;           /* the cached block; freed once written back */
    rcl_gfp_t req_gfp;         /* how the request is allocated */
    int       req_ok, req_failed;
};
static struct writeback wb;

static unsigned long wb_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return wb.dirty ? 1 : RCL_SHRINK_EMPTY;
}

static unsigned long wb_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    if (!wb.dirty)
        return RCL_SHRINK_STOP;
    char *req = rcl_alloc(64 * KiB, wb.req_gfp);
    if (!req) {
        wb.req_failed++;
        return RCL_SHRINK_STOP;
    }
    wb.req_ok++;
    memset(req, 0, 64 * KiB);           /* "submit the write" */
    rcl_free(wb.dirty);
    wb.dirty = NULL;
    rcl_free(req);
    return 1;
}

static struct rcl_shrinker *wb_register(rcl_gfp_t req_gfp)
{
    static const struct rcl_shrinker_ops ops = { wb_count, wb_scan };
    memset(&wb, 0, sizeof(wb));
    wb.dirty = fill;                    /* the whole budget is this one block */
    fill = NULL;
    wb.req_gfp = req_gfp;
    return rcl_shrinker_register("writeback", &ops, NULL, NULL);
}

/* Shrinker callbacks run in NORECLAIM scope, so write-back that needs a
 * request structure proceeds when the budget is otherwise full. */
TEST_WITH(test_shrinker_allocation_may_dip_into_the_reserve, reserve_setup, reserve_teardown)
{
    struct rcl_shrinker *s = wb_register(RCL_NOIO);
    assert_non_null(s);
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(wb.req_ok, 1);
    assert_null(wb.dirty);
    rcl_free(p);
    rcl_shrinker_unregister(s);
}

/* __GFP_NOMEMALLOC beats PF_MEMALLOC: the same shrinker, asking not to use
 * the reserve, cannot write back, so nothing is freed. */
TEST_WITH(test_nomemalloc_shrinker_allocation_gets_no_reserve, reserve_setup, reserve_teardown)
{
    struct rcl_shrinker *s = wb_register(RCL_NOIO | RCL__NOMEMALLOC | RCL__NOWARN);
    assert_non_null(s);
    assert_null(rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NOWARN));
    assert_int_equal(wb.req_ok, 0);
    assert_true(wb.req_failed >= 1);
    rcl_shrinker_unregister(s);
    fill = wb.dirty;                    /* teardown frees it */
}

TEST_WITH(test_nomemalloc_wins_over_every_grant, reserve_setup, reserve_teardown)
{
    rcl_gfp_t no = RCL__NOMEMALLOC | RCL__NOWARN;
    assert_null(rcl_alloc(16, RCL_NOIO | RCL__MEMALLOC | no));
    assert_null(rcl_alloc(16, RCL_ATOMIC | no));
    unsigned saved = rcl_noreclaim_save();
    assert_null(rcl_alloc(16, RCL_NOIO | no));
    rcl_noreclaim_restore(saved);
    int rc = test_io_flusher_on();
    assert_true(rc == 0 || rc == -EPERM);
    assert_null(rcl_alloc(16, RCL_NOIO | no));
    rcl_io_flusher_set(0);
    assert_int_equal(headroom(), RESERVE);
}

/* __GFP_HIGH (GFP_ATOMIC) may use part of the reserve: half of it. */
TEST_WITH(test_high_may_use_half_of_the_reserve, reserve_setup, reserve_teardown)
{
    void *half = rcl_alloc(test_fitting(RESERVE / 2), RCL_ATOMIC);
    assert_non_null(half);
    assert_null(rcl_alloc(16, RCL_ATOMIC | RCL__NOWARN));
    /* What is left below that is reclaim's. */
    void *rest = rcl_alloc(test_fitting(RESERVE / 2), RCL_NOIO | RCL__MEMALLOC);
    assert_non_null(rest);
    rcl_free(rest);
    rcl_free(half);
    assert_int_equal(headroom(), RESERVE);
}

TEST_WITH(test_memalloc_flag_may_use_the_whole_reserve, reserve_setup, reserve_teardown)
{
    void *p = rcl_alloc(test_fitting(RESERVE), RCL_NOIO | RCL__MEMALLOC);
    assert_non_null(p);
    assert_null(rcl_alloc(16, RCL_NOIO | RCL__MEMALLOC | RCL__NOWARN));
    rcl_free(p);
}

/* An I/O flusher may be what reclaim waits on: it gets the reserve, and
 * loses it when it stops being one. */
TEST_WITH(test_io_flusher_may_use_the_whole_reserve, reserve_setup, reserve_teardown)
{
    int rc = test_io_flusher_on();
    assert_true(rc == 0 || rc == -EPERM);
    void *p = rcl_alloc(test_fitting(RESERVE), RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    rcl_io_flusher_set(0);
    /* The freed bytes went to this thread's stock; return them so the
     * budget, not the stock, decides the next allocation. */
    rcl_usage_sync();
    assert_null(rcl_alloc(1024, RCL_DEFAULT | RCL__NOWARN));
}

TEST_MAIN();
