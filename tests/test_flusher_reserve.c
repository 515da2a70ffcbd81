/* SPDX-License-Identifier: MIT */
/*
 * test_flusher_reserve.c - the unprivileged I/O-flusher mode: when the
 * kernel refuses PR_SET_IO_FLUSHER, a flusher thread's allocations come
 * from a reserve faulted in beforehand, and fail rather than take a new
 * page when it is exhausted.
 */
#include "helpers.h"

#include <stdatomic.h>
#include <sys/prctl.h>

#define RESV (1 * MiB)

/* The mode is the fallback for a refused prctl; where the process may set
 * the kernel flag (CAP_SYS_RESOURCE), there is nothing to fall back from. */
static int flusher_on_refused(void)
{
    int rc = test_io_flusher_on();
    if (rc == 0) {
        rcl_io_flusher_set(0);
        return 0;
    }
    return 1;
}

#define NEED_REFUSAL()                                                              \
    do {                                                                            \
        if (!flusher_on_refused()) {                                                \
            rcl_io_flusher_reserve(0, 0);                                           \
            skip();   /* the kernel granted PR_SET_IO_FLUSHER: no fallback needed */ \
        }                                                                           \
    } while (0)

static struct rcl_flusher_reserve_stats stats(void)
{
    struct rcl_flusher_reserve_stats s;
    rcl_io_flusher_reserve_stats(&s);
    return s;
}

/* No reserve: a refused flusher keeps the library half only. */
TEST(test_without_a_reserve_the_thread_allocates_as_before)
{
    flusher_on_refused();
    assert_int_equal(rcl_io_flusher_reserved(), 0);
    void *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(stats().allocs, 0);
    rcl_free(p);
    rcl_io_flusher_set(0);
}

/* The whole reserve is charged when made, and given back when released. */
TEST(test_reserve_is_charged_at_once_and_uncharged_on_release)
{
    size_t before = rcl_usage();
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    assert_true(rcl_usage() >= before + RESV);
    assert_int_equal(stats().size, RESV);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
    assert_int_equal(rcl_usage(), before);
    assert_int_equal(stats().size, 0);
}

/* A flusher's allocations come from the reserve and charge nothing more. */
TEST(test_flusher_allocations_come_from_the_reserve)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    assert_int_equal(rcl_io_flusher_reserved(), 1);
    size_t usage = rcl_usage();
    char *p = rcl_alloc(64 * KiB, RCL_DEFAULT);
    assert_non_null(p);
    memset(p, 0x5a, 64 * KiB);
    assert_int_equal(rcl_usage(), usage);
    assert_int_equal(stats().allocs, 1);
    assert_true(stats().used >= 64 * KiB);
    char *z = rcl_calloc(10, 100, RCL_DEFAULT);
    assert_non_null(z);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(z[i], 0);
    rcl_free(z);
    rcl_free(p);
    assert_int_equal(stats().used, 0);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserved(), 0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* Exhausted: ENOMEM at once, counted, never a fallback to the backend. */
TEST(test_exhausted_reserve_fails_like_nowait)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    void *big = rcl_alloc(RESV - 4 * KiB, RCL_DEFAULT);
    assert_non_null(big);
    assert_fails_with(rcl_alloc(8 * KiB, RCL_DEFAULT), ENOMEM);
    assert_null(rcl_alloc(2 * RESV, RCL_DEFAULT));
    assert_int_equal(stats().failures, 2);
    rcl_free(big);
    void *again = rcl_alloc(8 * KiB, RCL_DEFAULT);
    assert_non_null(again);
    rcl_free(again);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* NOFAIL never fails for want of room, on a flusher as anywhere: one the
 * reserve cannot hold is served as outside the mode, from the backend and
 * charged as any block, the reserve untouched. A realloc that would move
 * a block into the reserve, too large for it, moves it there too. */
TEST(test_a_flushers_nofail_too_large_for_the_reserve_is_served_outside_it)
{
    char *old = rcl_alloc(100, RCL_DEFAULT);

    assert_non_null(old);
    memset(old, 7, 100);
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    size_t usage = rcl_usage();
    test_reports_reset();
    char *p = rcl_alloc(2 * RESV, RCL_NOIO | RCL__NOFAIL);
    assert_non_null(p);
    memset(p, 0x5a, 2 * RESV);
    assert_int_equal(rcl_usage(), usage + rcl_alloc_charge(2 * RESV));
    char *q = rcl_realloc(old, 2 * RESV, RCL_NOIO | RCL__NOFAIL);
    assert_non_null(q);
    for (int i = 0; i < 100; i++)
        assert_int_equal(q[i], 7);
    assert_int_equal(rcl_usage(),
                     usage + 2 * rcl_alloc_charge(2 * RESV) - rcl_alloc_charge(100));
    assert_int_equal(stats().used, 0);
    assert_int_equal(test_report_count(), 0);
    rcl_free(q);
    rcl_free(p);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* NOFAIL without DIRECT_RECLAIM contradicts itself on a flusher as on
 * any thread: refused with EINVAL and reported, the reserve untouched,
 * for an allocation and for a realloc that would move a block into it. */
TEST(test_a_flushers_nofail_that_may_not_wait_is_refused_and_reported)
{
    const rcl_gfp_t nowait = RCL__KSWAPD_RECLAIM | RCL__NOFAIL;   /* not NOWARN */
    char *p = rcl_alloc(100, RCL_DEFAULT);

    assert_non_null(p);
    memset(p, 7, 100);
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    test_reports_reset();
    assert_fails_with(rcl_alloc(64, nowait), EINVAL);
    assert_fails_with(rcl_calloc(1, 64, nowait), EINVAL);
    assert_fails_with(rcl_realloc(p, 200, nowait), EINVAL);
    assert_int_equal(test_report_count(), 3);
    assert_last_report_has("NOFAIL needs DIRECT_RECLAIM");
    assert_int_equal(stats().allocs, 0);
    assert_int_equal(stats().used, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], 7);
    rcl_free(p);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* Freed neighbours merge: after many small blocks, one nearly whole-size
 * block fits again, freed in any order. */
TEST(test_freed_blocks_merge_back)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    enum { N = 256 };
    void *p[N];
    for (int i = 0; i < N; i++)
        assert_non_null(p[i] = rcl_alloc(1000 + (size_t)i * 7, RCL_DEFAULT));
    for (int i = 0; i < N; i += 2)
        rcl_free(p[i]);
    for (int i = N - 1; i > 0; i -= 2)
        rcl_free(p[i]);
    assert_int_equal(stats().used, 0);
    void *big = rcl_alloc(RESV - 4 * KiB, RCL_DEFAULT);
    assert_non_null(big);
    rcl_free(big);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

static void *free_main(void *arg)
{
    rcl_free(arg);
    return NULL;
}

/* A cache block a flusher allocated is often freed by the shrinker on
 * another thread: it goes back to the reserve, not to the backend. */
TEST(test_reserve_block_freed_on_another_thread)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    void *p = rcl_alloc(4 * KiB, RCL_DEFAULT);
    assert_non_null(p);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, free_main, p), 0);
    pthread_join(th, NULL);
    assert_int_equal(stats().used, 0);
    assert_int_equal(test_report_count() > 1, 0);   /* only the refusal report */
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* realloc moves a reserve block, contents kept, within the reserve. */
TEST(test_realloc_of_a_reserve_block)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    char *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);
    memset(p, 7, 100);
    char *q = rcl_realloc(p, 5000, RCL_DEFAULT);
    assert_non_null(q);
    for (int i = 0; i < 100; i++)
        assert_int_equal(q[i], 7);
    assert_int_equal(stats().allocs, 2);
    rcl_free(q);
    assert_int_equal(stats().used, 0);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* A block from the backend that a flusher resizes moves into the reserve,
 * its bytes kept, whether it grows or shrinks: the backend's resize may
 * fault a new page in, and a grow's charge may reclaim. Too large for
 * the reserve, it fails at once, the block kept. */
TEST(test_realloc_of_a_backend_block_moves_it_into_the_reserve)
{
    static const size_t from[] = { 100, 100, 200 * KiB }, to[] = { 200 * KiB, 50, 1000 };
    char *p[3];

    for (int i = 0; i < 3; i++) {
        assert_non_null(p[i] = rcl_alloc(from[i], RCL_DEFAULT));
        memset(p[i], 7, from[i]);
    }
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    size_t usage = rcl_usage();
    for (int i = 0; i < 3; i++) {
        char *q = rcl_realloc(p[i], to[i], RCL_DEFAULT);
        assert_non_null(q);
        size_t kept = from[i] < to[i] ? from[i] : to[i];
        for (size_t j = 0; j < kept; j++)
            assert_int_equal(q[j], 7);
        assert_int_equal(stats().allocs, i + 1);
        usage -= rcl_alloc_charge(from[i]);
        assert_int_equal(rcl_usage(), usage);
        p[i] = q;
    }
    assert_fails_with(rcl_realloc(p[0], 2 * RESV, RCL_DEFAULT), ENOMEM);
    for (int i = 0; i < 3; i++)
        rcl_free(p[i]);
    assert_int_equal(stats().used, 0);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* The reserve's charge is the library's, not the program's: an
 * rcl_uncharge() of more than the program charged is reported and takes
 * nothing from it, and the release gives back the whole reserve. (The
 * program's uncharge took the reserve's charge unreported, and the
 * release was reported as uncharging more than was charged.) */
TEST(test_the_programs_uncharge_never_takes_the_reserves_charge)
{
    rcl_usage_sync();
    size_t before = rcl_usage();
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    rcl_usage_sync();
    size_t with = rcl_usage();
    test_reports_reset();
    rcl_uncharge(4 * KiB);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_uncharge(4096)");
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), with);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
    assert_int_equal(test_report_count(), 1);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), before);
}

static size_t usage_now(void)
{
    rcl_usage_sync();
    return rcl_usage();
}

static void assert_no_reserve_and_nothing_charged(size_t before)
{
    assert_int_equal(stats().size, 0);
    assert_int_equal(usage_now(), before);
}

TEST(test_a_reserve_with_unknown_flags_is_refused_and_reported)
{
    size_t before = usage_now();
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0x100), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("unknown flags");
    assert_no_reserve_and_nothing_charged(before);
}

/* A release looks at its flags only for the unknown ones: with
 * RCL_FLUSHER_MLOCK it releases as without; with no reserve it has
 * nothing to do and says nothing. */
TEST(test_a_release_takes_mlock_as_no_flag_and_refuses_unknown_ones)
{
    size_t before = usage_now();
    assert_int_equal(rcl_io_flusher_reserve(0, RCL_FLUSHER_MLOCK), 0);
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0x100), -EINVAL);
    assert_int_equal(test_reports_take(), 1);
    assert_int_equal(stats().size, RESV);
    assert_int_equal(rcl_io_flusher_reserve(0, RCL_FLUSHER_MLOCK), 0);
    assert_int_equal(test_report_count(), 0);
    assert_no_reserve_and_nothing_charged(before);
}

TEST(test_a_reserve_under_256_bytes_is_refused_and_reported)
{
    size_t before = usage_now();
    assert_int_equal(rcl_io_flusher_reserve(255, 0), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("fewer than 256 bytes");
    assert_no_reserve_and_nothing_charged(before);
}

/* A size whose rounding to whole pages would wrap is one no mapping could
 * have: refused as too small a one is, never charged or mapped as the
 * nothing it wraps to. */
TEST(test_a_reserve_larger_than_any_mapping_is_refused_and_reported)
{
    size_t before = usage_now();
    assert_int_equal(rcl_io_flusher_reserve(SIZE_MAX, 0), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("larger than any mapping");
    assert_int_equal(rcl_io_flusher_reserve((size_t)PTRDIFF_MAX + 1, 0), -EINVAL);
    assert_int_equal(test_report_count(), 2);
    assert_no_reserve_and_nothing_charged(before);
}

/* The counters are the last reserve's: its release leaves them to be read
 * (what it served, its peak), and the next reserve starts them again. */
TEST(test_a_released_reserves_counters_stay_until_the_next_reserve)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    void *p = rcl_alloc(1000, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);

    struct rcl_flusher_reserve_stats s = stats();
    assert_int_equal(s.size, 0);
    assert_int_equal(s.used, 0);
    assert_int_equal(s.allocs, 1);
    assert_true(s.peak >= 1000);
    assert_int_equal(s.threads, 0);

    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    s = stats();
    assert_int_equal(s.allocs, 0);
    assert_int_equal(s.peak, 0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* Misuse: a second reserve, releasing one still in use. */
TEST(test_misuse_is_refused_and_reported)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    test_reports_reset();
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), -EBUSY);
    assert_int_equal(test_report_count(), 1);
    if (flusher_on_refused()) {
        assert_int_equal(rcl_io_flusher_reserve(0, 0), -EBUSY);
        assert_last_report_has("threads using it");
        rcl_io_flusher_set(0);
    }
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);   /* none: nothing to do */
}

/* One reserve a process: a second is -EBUSY whatever its size, even one
 * the budget could not charge. */
TEST(test_a_second_reserve_larger_than_the_budget_is_ebusy)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    test_reports_reset();
    assert_int_equal(rcl_io_flusher_reserve(2 * rcl_limit(), 0), -EBUSY);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("exists");
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* A report function that allocates, as a daemon's logger may: on a
 * flusher thread its allocation comes from the reserve. */
static atomic_int logged_from_reserve;

static void logging_from_the_reserve(const char *report, void *arg)
{
    unsigned long served = stats().allocs;
    void *line = rcl_alloc(strlen(report) + 1, RCL_DEFAULT);

    if (line && stats().allocs == served + 1)
        atomic_fetch_add(&logged_from_reserve, 1);
    rcl_free(line);
    test_report_catch(report, arg);
}

/* The reserve's refusals are reported with its lock let go: a flusher
 * thread's report function allocates from the reserve, which takes that
 * lock. */
TEST(test_a_flusher_thread_hears_the_reserves_refusal_through_its_reserve)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    NEED_REFUSAL();
    assert_int_equal(test_io_flusher_on(), -EPERM);
    atomic_store(&logged_from_reserve, 0);
    rcl_set_report_fn(logging_from_the_reserve, NULL);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), -EBUSY);
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), -EBUSY);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(atomic_load(&logged_from_reserve), 2);
    assert_last_report_has("exists");
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* A flusher thread that ends in the mode - it never turned it off - stops
 * using the reserve as it ends, so that the reserve can be released. */
static void *flusher_that_returns(void *arg)
{
    (void)arg;
    (void)rcl_io_flusher_set(1);
    return (void *)(uintptr_t)rcl_io_flusher_reserved();
}

TEST(test_a_flusher_that_ends_in_the_mode_leaves_the_reserve)
{
    NEED_REFUSAL();
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    pthread_t th;
    void *was;
    assert_int_equal(pthread_create(&th, NULL, flusher_that_returns, NULL), 0);
    assert_int_equal(pthread_join(th, &was), 0);
    assert_true(was != NULL);                   /* it served from the reserve */

    assert_int_equal(stats().threads, 0);
    test_reports_reset();                       /* the refused prctl, said once */
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
    assert_int_equal(test_report_count(), 0);
}

/* A reserve outlives rcl_shutdown(); its charge does not, and releasing
 * it afterwards leaves the new budget alone. */
TEST(test_reserve_released_after_a_restart_uncharges_nothing)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    rcl_shutdown();
    assert_int_equal(test_init(64 * MiB), 0);
    size_t before = rcl_usage();
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
    assert_int_equal(rcl_usage(), before);
    assert_int_equal(test_report_count(), 0);
}

/* The old budget took the reserve's charge with it: the release leaves
 * what the new one holds for the program. */
TEST(test_reserve_released_after_a_restart_leaves_the_new_budgets_charges)
{
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    rcl_shutdown();
    assert_int_equal(test_init(64 * MiB), 0);
    assert_int_equal(rcl_charge(4 * RESV, RCL_DEFAULT), 0);
    size_t before = rcl_usage();
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
    assert_int_equal(rcl_usage(), before);
    rcl_uncharge(4 * RESV);
    assert_int_equal(test_report_count(), 0);
}

/* A NULL where the counters should go is the caller's bug, reported as
 * rcl_stats_get(NULL) is, with or without a reserve. */
TEST(test_reserve_statistics_into_no_structure_are_reported)
{
    rcl_io_flusher_reserve_stats(NULL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_io_flusher_reserve_stats(NULL): NULL structure; nothing read");
    assert_int_equal(rcl_io_flusher_reserve(RESV, 0), 0);
    rcl_io_flusher_reserve_stats(NULL);
    assert_int_equal(test_report_count(), 2);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* mlock is best effort: refused, it is reported and the reserve is kept. */
TEST(test_mlock_is_an_option)
{
    test_reports_reset();
    assert_int_equal(rcl_io_flusher_reserve(RESV, RCL_FLUSHER_MLOCK), 0);
    struct rcl_flusher_reserve_stats s = stats();
    assert_int_equal(s.size, RESV);
    assert_int_equal(s.locked ? 0u : 1u, test_report_count());
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

TEST_MAIN();
