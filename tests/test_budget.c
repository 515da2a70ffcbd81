/* SPDX-License-Identifier: MIT */
/*
 * The budget: life cycle, configuration, watermarks, direct reclaim, the
 * background reclaimer, and the invariant that accounted usage never
 * exceeds the limit.
 */
#include "helpers.h"
#include "internal.h"
#include "scripted_clock.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The caches here are the shared shrinkable test cache (helpers/cache.h):
 * equal blocks, what a user's cache looks like. */

static size_t usage_now(void)
{
    rcl_usage_sync();
    return rcl_usage();
}

/* ---------------------------------------------------------------------- */

TEST(init_twice_is_ebusy_and_shutdown_allows_again)
{
    struct rcl_config cfg = test_config(8 * MiB);
    assert_int_equal(rcl_init(&cfg), -EBUSY);
    rcl_shutdown();
    rcl_shutdown();                       /* twice: harmless */
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_limit(), 8 * MiB);
}

/* Each refusal says which field is wrong. */
TEST(invalid_configurations_are_einval)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(8 * MiB);
    cfg.min_pct = 10;
    cfg.low_pct = 5;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("min_pct 10, low_pct 5");
    cfg = test_config(8 * MiB);
    cfg.high_pct = 100;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("high_pct 100");
    cfg = test_config(8 * MiB);
    cfg.reserve = 8 * MiB;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("reserve of 8388608 bytes");
    cfg = test_config(8 * MiB);
    cfg.lockdep = 7;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("lockdep 7");
    cfg = test_config(8 * MiB);
    cfg.footprint = 9;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("footprint 9");
    assert_int_equal(test_reports_take(), 5);
    cfg = test_config(8 * MiB);
    assert_int_equal(rcl_init(&cfg), 0);   /* and nothing was left half-started */
}

/* background and pressure are 0 or 1, as RECLAIM_BACKGROUND and
 * RECLAIM_PRESSURE are: another value is refused as an unknown lockdep
 * mode is, not taken as "on" - a later version may give it a meaning. */
TEST(background_or_pressure_other_than_0_or_1_is_einval)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(8 * MiB);
    cfg.background = 2;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("background 2");
    cfg = test_config(8 * MiB);
    cfg.pressure = -1;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("pressure -1");
    assert_int_equal(test_reports_take(), 2);
    cfg = test_config(8 * MiB);
    assert_int_equal(rcl_init(&cfg), 0);
}

/* First use initialises from the environment. */
TEST(first_use_initialises_from_the_environment)
{
    rcl_shutdown();
    setenv("RECLAIM_LIMIT", "3M", 1);
    setenv("RECLAIM_BACKGROUND", "0", 1);
    setenv("RECLAIM_PRESSURE", "0", 1);
    void *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(rcl_limit(), 3 * MiB);
    rcl_free(p);
    unsetenv("RECLAIM_LIMIT");
    unsetenv("RECLAIM_BACKGROUND");
    unsetenv("RECLAIM_PRESSURE");
}

TEST(malformed_environment_is_reported_and_ignored)
{
    struct rcl_config cfg;
    setenv("RECLAIM_LIMIT", "lots", 1);
    setenv("RECLAIM_LOW_PCT", "400", 1);
    rcl_config_default(&cfg);
    assert_int_equal(rcl_config_from_env(&cfg), -EINVAL);
    unsetenv("RECLAIM_LIMIT");
    unsetenv("RECLAIM_LOW_PCT");
    assert_int_equal(cfg.limit, 0);
    assert_int_equal(cfg.low_pct, 5);
    assert_int_equal(test_report_count(), 1);   /* one report names both */
    assert_last_report_has("RECLAIM_LIMIT=\"lots\"");
    assert_last_report_has("RECLAIM_LOW_PCT=\"400\"");
}

/* Watermarks are headroom: min 2 %, low 5 %, high 10 % by default, and a
 * reserve larger than min raises min. */
TEST(watermarks_are_headroom_percentages)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.limit, 64 * MiB);
    assert_int_equal(st.wmark_min, 64 * MiB * 2 / 100);
    assert_int_equal(st.wmark_low, 64 * MiB * 5 / 100);
    assert_int_equal(st.wmark_high, 64 * MiB * 10 / 100);

    rcl_shutdown();
    struct rcl_config cfg = test_config(100 * MiB);
    cfg.reserve = 4 * MiB;
    assert_int_equal(rcl_init(&cfg), 0);
    rcl_stats_get(&st);
    assert_int_equal(st.wmark_min, 4 * MiB);
    assert_int_equal(rcl_set_limit(200 * MiB), 0);
    rcl_stats_get(&st);
    assert_int_equal(st.wmark_low, 10 * MiB);
}

/* A limit no larger than the reserve leaves ordinary allocations nothing:
 * refused and reported, as rcl_init() refuses it, the limit unchanged. */
TEST(a_limit_within_the_reserve_is_einval)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(64 * MiB);
    cfg.reserve = 4 * MiB;
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_set_limit(4 * MiB), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("reserve");
    assert_int_equal(rcl_limit(), 64 * MiB);
    void *p = rcl_alloc(1 * MiB, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    assert_int_equal(rcl_set_limit(4 * MiB + 1), 0);
}

TEST(setting_a_limit_of_zero_is_refused_and_reported)
{
    size_t limit = rcl_limit();
    assert_int_equal(rcl_set_limit(0), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_set_limit(0)");
    assert_int_equal(rcl_limit(), limit);
}

/* Before the library starts there is no limit to keep: the refusal names
 * none (the limit the first use then takes is another), and starts
 * nothing, so the program's own rcl_init() still configures it. */
TEST(setting_a_limit_of_zero_before_the_start_names_no_limit_and_starts_nothing)
{
    rcl_shutdown();
    assert_int_equal(rcl_set_limit(0), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_set_limit(0)");
    assert_int_equal(test_reports_contain("stays"), 0);
    struct rcl_config cfg = test_config(8 * MiB);
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_limit(), 8 * MiB);
}

/* A limit above LONG_MAX is taken as LONG_MAX: a reserve at or past that
 * leaves ordinary allocations nothing of it, and is refused as a reserve
 * not below a smaller limit is, not set aside for min_pct's. */
TEST(a_reserve_not_below_the_limit_as_taken_is_einval)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(SIZE_MAX);
    cfg.reserve = (size_t)LONG_MAX;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_last_report_has("leaves nothing of a limit of 9223372036854775807");
    cfg.reserve = (size_t)LONG_MAX + 4096;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_int_equal(test_reports_take(), 2);
    cfg.reserve = (size_t)LONG_MAX - 4096;
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_limit(), (size_t)LONG_MAX);
    rcl_shutdown();
    assert_int_equal(test_init(64 * MiB), 0);
}

/* Fill the cache until the budget is at the min watermark. */
static void fill_to_min(struct test_cache *c)
{
    while (test_cache_add(c, RCL_NOWAIT))
        ;
}

/* Kernel rule (__alloc_pages_slowpath): below min, an allocation without
 * __GFP_DIRECT_RECLAIM fails; one with it reclaims directly and succeeds. */
TEST(below_min_only_reclaiming_allocations_succeed)
{
    struct test_cache *c = test_cache_new("cache", 100000, 4096, NULL);
    fill_to_min(c);
    assert_fails_with(rcl_alloc(64 * KiB, RCL_NOWAIT), ENOMEM);
    assert_int_equal(atomic_load(&c->calls), 0);
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT);
    assert_non_null(p);
    assert_true(atomic_load(&c->calls) > 0);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_true(st.direct_reclaims >= 1);
    assert_true(st.direct_reclaimed >= 64 * KiB);
    rcl_free(p);
    test_cache_free(c);
}

/* NORECLAIM scope (PF_MEMALLOC): never enters reclaim itself. */
TEST(noreclaim_scope_never_reclaims)
{
    struct test_cache *c = test_cache_new("cache", 100000, 4096, NULL);
    fill_to_min(c);
    unsigned t = rcl_noreclaim_save();
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NOMEMALLOC | RCL__NOWARN);
    rcl_noreclaim_restore(t);
    assert_null(p);
    assert_int_equal(atomic_load(&c->calls), 0);
    test_cache_free(c);
}

/* Direct reclaim walks priorities 12 -> 0 and stops once its target is met:
 * it frees what it needs, not the whole cache. */
TEST(direct_reclaim_stops_when_the_target_is_met)
{
    struct test_cache *c = test_cache_new("cache", 100000, 4096, NULL);
    fill_to_min(c);
    size_t before = c->n;
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT);
    assert_non_null(p);
    assert_true(c->n < before);
    assert_true(c->n > before / 2);
    rcl_free(p);
    test_cache_free(c);
}

/* Progress is accounted bytes, not what the shrinker says it freed. */
static unsigned long liar_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 100000;
}
static unsigned long liar_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    return sc->nr_to_scan;   /* claims everything, frees nothing */
}

TEST(progress_is_measured_in_accounted_bytes)
{
    static const struct rcl_shrinker_ops ops = { liar_count, liar_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("liar", &ops, NULL, NULL);
    assert_int_equal(rcl_reclaim(1 * MiB, RCL_DEFAULT), 0);
    struct test_cache *c = test_cache_new("cache", 1000, 4096, NULL);
    for (int i = 0; i < 1000; i++)
        assert_true(test_cache_add(c, RCL_DEFAULT));
    size_t freed = rcl_reclaim(100 * KiB, RCL_DEFAULT);
    assert_true(freed >= 100 * KiB);
    assert_int_equal(freed, (1000 - c->n) * rcl_alloc_charge(4096));
    assert_int_equal(usage_now(), c->n * rcl_alloc_charge(4096));
    test_cache_free(c);
    rcl_shrinker_unregister(s);
}

/* A shrinker that must charge to free (a compaction that copies what
 * it keeps) charges 150000 bytes for the 100000 it gives back: its pass
 * took budget rather than freed it. */
static atomic_int swap_scans;
static unsigned long swap_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 1;
}
static unsigned long swap_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    if (atomic_fetch_add(&swap_scans, 1) == 0) {
        rcl_uncharge(100000);
        assert_int_equal(rcl_charge(150000, RCL_DEFAULT), 0);
    }
    return 1;
}

TEST(a_pass_that_charged_more_than_it_freed_made_no_progress)
{
    static const struct rcl_shrinker_ops ops = { swap_count, swap_scan };
    atomic_store(&swap_scans, 0);
    assert_int_equal(rcl_charge(100000, RCL_DEFAULT), 0);
    struct rcl_shrinker *s = rcl_shrinker_register("swap", &ops, NULL, NULL);
    assert_int_equal(rcl_reclaim(SIZE_MAX, RCL_DEFAULT), 0);
    assert_true(atomic_load(&swap_scans) > 0);
    rcl_shrinker_unregister(s);
    assert_int_equal(usage_now(), 150000);
    rcl_uncharge(150000);
}

/* What a pass frees stays in its thread's stock, for the allocation
 * that reclaimed, until the pass ends: a shrinker's own charge in the
 * middle of it does not hand the rest to the budget, where another
 * thread's charge takes it first. The budget is full down to its
 * reserve; the shrinker frees 1 MiB, charges 100 bytes, and another
 * thread asks for 512 KiB meanwhile. */
static bool keep_taken;

static void *charge_beside_the_pass(void *arg)
{
    (void)arg;
    keep_taken = rcl_charge(512 * KiB, RCL_NOWAIT) == 0;
    return NULL;
}

static unsigned long keep_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 1;
}

static unsigned long keep_scan(void *priv, struct rcl_shrink_control *sc)
{
    pthread_t th;

    (void)sc;
    if (atomic_fetch_add((atomic_int *)priv, 1) == 0) {
        rcl_uncharge(1 * MiB);
        assert_int_equal(rcl_charge(100, RCL_DEFAULT), 0);
        assert_int_equal(pthread_create(&th, NULL, charge_beside_the_pass, NULL), 0);
        pthread_join(th, NULL);
    }
    return 1;
}

TEST(a_pass_keeps_what_it_freed_across_its_shrinkers_charges)
{
    static const struct rcl_shrinker_ops ops = { keep_count, keep_scan };
    struct rcl_stats st;
    atomic_int scans = 0;

    rcl_stats_get(&st);
    size_t fill = rcl_limit() - st.wmark_min - 1 * MiB;
    assert_int_equal(rcl_charge(fill, RCL__MEMALLOC | RCL__NOWARN), 0);
    assert_int_equal(rcl_charge(1 * MiB, RCL__MEMALLOC | RCL__NOWARN), 0);
    rcl_usage_sync();
    keep_taken = true;
    struct rcl_shrinker *s = rcl_shrinker_register("keep", &ops, &scans, NULL);
    size_t freed = rcl_reclaim(SIZE_MAX, RCL_DEFAULT);
    rcl_shrinker_unregister(s);
    assert_true(atomic_load(&scans) > 0);
    assert_false(keep_taken);
    assert_int_equal(freed, 1 * MiB - 100);
    rcl_uncharge(fill + 100);
}

/* An allocation whose reclaim lowered the limit (a shrinker's call)
 * then charges against the new limit and the new limit's reserve: with
 * the reserve of the old one (2 % of 1 GiB, against 64 MiB) it found no
 * room where 11 MiB were free, and failed. The shrinker gives back all
 * but 52 MiB of the budget, then lowers the limit to 64 MiB. */
static size_t lowering_gives_back;

static unsigned long lowering_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 1;
}

static unsigned long lowering_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)sc;
    if (atomic_fetch_add((atomic_int *)priv, 1) == 0) {
        rcl_uncharge(lowering_gives_back);
        assert_int_equal(rcl_set_limit(64 * MiB), 0);
    }
    return 1;
}

TEST(a_charge_after_its_reclaim_lowered_the_limit_takes_the_new_reserve)
{
    static const struct rcl_shrinker_ops ops = { lowering_count, lowering_scan };
    struct rcl_config cfg = test_config(1024 * MiB);
    struct rcl_stats st;
    atomic_int scans = 0;

    rcl_shutdown();
    cfg.footprint = RCL_FOOTPRINT_OFF;
    assert_int_equal(rcl_init(&cfg), 0);
    rcl_stats_get(&st);
    size_t fill = st.limit - st.wmark_min;
    assert_int_equal(rcl_charge(fill, RCL__MEMALLOC | RCL__NOWARN), 0);
    lowering_gives_back = fill - 52 * MiB;
    struct rcl_shrinker *s = rcl_shrinker_register("lowering", &ops, &scans, NULL);
    int err = rcl_charge(1 * MiB, RCL_DEFAULT | RCL__NOWARN);
    rcl_shrinker_unregister(s);
    assert_int_equal(atomic_load(&scans) > 0, 1);
    assert_int_equal(rcl_limit(), 64 * MiB);
    assert_int_equal(err, 0);
    rcl_uncharge(52 * MiB + 1 * MiB);
}

/* rcl_reclaim acts as an allocation would: nothing without DIRECT_RECLAIM
 * or inside NORECLAIM. */
TEST(reclaim_obeys_flags_and_scope)
{
    struct test_cache *c = test_cache_new("cache", 100, 4096, NULL);
    for (int i = 0; i < 100; i++)
        test_cache_add(c, RCL_DEFAULT);
    assert_int_equal(rcl_reclaim(64 * KiB, RCL_NOWAIT), 0);
    unsigned t = rcl_nowait_save();
    assert_int_equal(rcl_reclaim(64 * KiB, RCL_DEFAULT), 0);
    rcl_nowait_restore(t);
    t = rcl_noreclaim_save();
    assert_int_equal(rcl_reclaim(64 * KiB, RCL_DEFAULT), 0);
    rcl_noreclaim_restore(t);
    assert_int_equal(c->n, 100);
    assert_int_equal(rcl_reclaim(0, RCL_DEFAULT), 0);
    assert_true(rcl_reclaim(64 * KiB, RCL_DEFAULT) >= 64 * KiB);
    test_cache_free(c);
}

/* "As much as there is" is a target like any other: SIZE_MAX, which a
 * signed compare read as met before anything was freed, runs every
 * priority as a target too large to meet does. */
TEST(reclaim_of_size_max_runs_every_priority)
{
    struct test_cache *c = test_cache_new("cache", 1000, 1000, NULL);
    test_cache_fill(c, 1000);
    size_t freed = rcl_reclaim(SIZE_MAX, RCL_DEFAULT);
    assert_int_equal(test_cache_len(c), 0);
    assert_int_equal(freed, 1000 * rcl_alloc_charge(1000));
    test_cache_free(c);
}

static void *allocates_nowait(void *arg)
{
    return rcl_alloc(*(size_t *)arg, RCL_NOWAIT);
}

/* rcl_reclaim() makes room in the budget, not in the calling thread's
 * stock: another thread's allocation that may not reclaim finds it. The
 * charges alone are measured, so that the room left is exact. */
TEST(an_explicit_reclaim_leaves_the_room_it_made_to_every_thread)
{
    struct rcl_config cfg = test_config(64 * MiB);
    struct rcl_stats st;
    size_t want = 256 * KiB;
    pthread_t th;
    void *p;

    rcl_shutdown();
    cfg.footprint = RCL_FOOTPRINT_OFF;
    assert_int_equal(rcl_init(&cfg), 0);
    struct test_cache *c = test_cache_new("cache", 1000, 1000, NULL);
    test_cache_fill(c, 1000);
    rcl_usage_sync();
    rcl_stats_get(&st);
    /* All the room but 64 KiB, less than the other thread asks. */
    size_t fill = st.limit - rcl_usage() - st.wmark_min - 64 * KiB;
    assert_int_equal(rcl_charge(fill, RCL_NOWAIT), 0);
    rcl_usage_sync();
    assert_true(rcl_reclaim(2 * want, RCL_DEFAULT) >= 2 * want);
    assert_int_equal(pthread_create(&th, NULL, allocates_nowait, &want), 0);
    assert_int_equal(pthread_join(th, &p), 0);
    rcl_uncharge(fill);
    test_cache_free(c);
    assert_non_null(p);
    rcl_free(p);
}

/* NOFAIL needs DIRECT_RECLAIM (EINVAL), and what can never fit is E2BIG at
 * once with a report (the "remove PF_MEMALLOC_NORECLAIM" thread (linux-mm,
 * September 2024): fail only when impossible). */
TEST(nofail_that_can_never_succeed_fails_at_once)
{
    assert_fails_with(rcl_alloc(100, RCL__KSWAPD_RECLAIM | RCL__NOFAIL), EINVAL);
    assert_fails_with(rcl_alloc(64 * MiB, RCL_DEFAULT | RCL__NOFAIL), E2BIG);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("can never succeed");
    assert_fails_with(rcl_alloc(64 * MiB, RCL_DEFAULT | RCL__NOFAIL | RCL__NOWARN), E2BIG);
    assert_int_equal(test_report_count(), 2);
}

/* NOFAIL under pressure: reclaims, and gets its memory. */
TEST(nofail_reclaims_until_it_succeeds)
{
    struct test_cache *c = test_cache_new("cache", 100000, 4096, NULL);
    fill_to_min(c);
    void *p = rcl_alloc(4 * MiB, RCL_DEFAULT | RCL__NOFAIL);
    assert_non_null(p);
    rcl_free(p);
    test_cache_free(c);
}

/* Threads named rcl-reclaimd in this process. A joined thread can linger
 * in /proc for a moment, so callers wait for the count they expect. */
static int count_reclaimd(void)
{
    int n;
    test_thread_named("rcl-reclaimd", &n);
    return n;
}

static int reclaimd_settles_at(int want)
{
    for (int i = 0; i < 400 && count_reclaimd() != want; i++)
        test_sleep_ms(5);
    return count_reclaimd();
}

static bool wait_for(bool (*cond)(void *), void *arg, int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        if (cond(arg))
            return true;
        test_sleep_ms(5);
    }
    return cond(arg);
}

/* Headroom back above high, and the reclaimer's pass accounted for (its
 * freed bytes show as headroom while still in its stock, a moment before
 * it counts them). */
static bool headroom_at_least_high(void *arg)
{
    (void)arg;
    struct rcl_stats st;
    rcl_stats_get(&st);
    return st.limit - st.usage >= st.wmark_high && st.background_reclaimed > 0;
}

/* kswapd: woken below low, works until headroom is back above high; no
 * thread until first needed. */
TEST(background_reclaimer_restores_high_watermark)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(16 * MiB);
    cfg.background = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(reclaimd_settles_at(0), 0);
    struct test_cache *c = test_cache_new("cache", 100000, 4096, NULL);
    /* fill to just below low, with flags that may not wake it */
    while (test_cache_add(c, RCL__DIRECT_RECLAIM | RCL__IO | RCL__FS)) {
        struct rcl_stats st;
        rcl_stats_get(&st);
        if (st.limit - st.usage < st.wmark_low)
            break;
    }
    assert_int_equal(reclaimd_settles_at(0), 0);         /* not started yet */
    rcl_usage_sync();             /* no stock left: the next allocation charges */
    assert_true(test_cache_add(c, RCL_DEFAULT));             /* KSWAPD_RECLAIM wakes it */
    assert_true(wait_for(headroom_at_least_high, NULL, 10000));
    assert_int_equal(reclaimd_settles_at(1), 1);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_true(st.background_wakeups >= 1);
    assert_true(st.background_reclaimed > 0);
    test_cache_free(c);
    rcl_shutdown();
    assert_int_equal(reclaimd_settles_at(0), 0);         /* stopped and joined */
}

/* Woken, its pass over, and in the pause after it: a timed wait. */
static bool reclaimd_pausing(void *arg)
{
    (void)arg;
    struct rcl_stats st;
    rcl_stats_get(&st);
    pid_t tid = test_thread_named("rcl-reclaimd", NULL);
    return st.background_wakeups > 0 && tid && test_thread_waits_timed(tid);
}

/* A test that failed with every thread's clock shifted leaves it so. */
static int clock_teardown(void **state)
{
    scripted_clock_stop();
    return test_teardown(state);
}

/* The pause after a pass that found nothing to free ends on time however
 * the wall clock moves: taken by it, a pause begun just before the clock
 * was set back an hour lasted an hour, with no background reclaim. */
TEST_WITH(the_background_reclaimers_pause_ignores_a_wall_clock_set_back, test_setup,
          clock_teardown)
{
    test_skip_unless_syscalls_read();
    rcl_shutdown();
    struct rcl_config cfg = test_config(16 * MiB);
    cfg.background = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    /* The wall clock as every thread reads it an hour ahead of the
     * kernel's: a deadline taken by it lies an hour further off, as one
     * taken just before the clock was set back an hour. */
    scripted_clock_shift(CLOCK_REALTIME, true, 3600 * 1000000000ll);
    struct rcl_stats st;
    rcl_stats_get(&st);
    /* Below low with nothing a shrinker could free: a fruitless pass. */
    size_t fixed = st.limit - (st.wmark_low + st.wmark_min) / 2;
    assert_int_equal(rcl_charge(fixed, RCL_DEFAULT), 0);
    assert_true(wait_for(reclaimd_pausing, NULL, 10000));   /* its pause begun */
    rcl_uncharge(fixed);
    struct test_cache *c = test_cache_new("cache", 100000, 4096, NULL);
    while (test_cache_add(c, RCL__DIRECT_RECLAIM | RCL__IO | RCL__FS)) {
        rcl_stats_get(&st);
        if (st.limit - st.usage < st.wmark_low)
            break;
    }
    rcl_usage_sync();
    assert_true(test_cache_add(c, RCL_DEFAULT));         /* wakes it again */
    bool restored = wait_for(headroom_at_least_high, NULL, 5000);
    scripted_clock_stop();
    assert_true(restored);
    test_cache_free(c);
}

static bool no_longer_over_low(void *arg)
{
    (void)arg;
    struct rcl_stats st;
    rcl_stats_get(&st);
    return st.usage <= st.limit && st.limit - st.usage >= st.wmark_low;
}

/* Lowering the limit below usage wakes the reclaimer to get back under. */
TEST(lowering_the_limit_wakes_the_background_reclaimer)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(16 * MiB);
    cfg.background = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    struct test_cache *c = test_cache_new("cache", 2048, 4096, NULL);
    for (int i = 0; i < 2048; i++)
        assert_true(test_cache_add(c, RCL_DEFAULT));
    assert_int_equal(rcl_set_limit(4 * MiB), 0);
    assert_true(wait_for(no_longer_over_low, NULL, 10000));
    test_cache_free(c);
}

/* Reclaimer passes left to end their thread in this shrinker. */
static atomic_int reclaimd_endings;

static bool on_reclaimd(void)
{
    char name[16] = "";

    pthread_getname_np(pthread_self(), name, sizeof(name));
    return !strcmp(name, "rcl-reclaimd");
}

static unsigned long always_some(void *p, struct rcl_shrink_control *sc)
{
    (void)p;
    (void)sc;
    return 1000;
}

static unsigned long ends_reclaimd(void *p, struct rcl_shrink_control *sc)
{
    (void)p;
    (void)sc;
    if (on_reclaimd() && atomic_fetch_sub(&reclaimd_endings, 1) > 0)
        pthread_exit(NULL);
    return 0;
}

static bool reclaimd_ended(void *arg)
{
    (void)arg;
    return atomic_load(&reclaimd_endings) <= 0 && count_reclaimd() == 0;
}

/* Below low with flags that may not wake the reclaimer, then one
 * allocation that does. */
static void wake_reclaimd_below_low(struct test_cache *c)
{
    struct rcl_stats st;

    while (test_cache_add(c, RCL__DIRECT_RECLAIM | RCL__IO | RCL__FS)) {
        rcl_stats_get(&st);
        if (st.limit - st.usage < st.wmark_low)
            break;
    }
    rcl_usage_sync();
    assert_true(test_cache_add(c, RCL_DEFAULT));
}

/* A shrinker that ends the reclaimer's thread (pthread_exit()) ends the
 * reclaimer, which says so, and the next wake-up starts another. (It
 * stayed counted as running with a wake-up pending: no wake-up ever
 * reached a reclaimer again, and the budget stayed short.) */
TEST(a_reclaimer_ended_in_a_shrinker_is_started_again_at_the_next_wake_up)
{
    static const struct rcl_shrinker_ops ops = { .count = always_some, .scan = ends_reclaimd };

    rcl_shutdown();
    struct rcl_config cfg = test_config(16 * MiB);
    cfg.background = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    alarm(30);
    atomic_store(&reclaimd_endings, 1);
    struct rcl_shrinker *s = rcl_shrinker_register("ends-reclaimd", &ops, NULL, NULL);
    assert_non_null(s);
    struct test_cache *c = test_cache_new("cache", 100000, 4096, NULL);

    wake_reclaimd_below_low(c);
    assert_true(wait_for(reclaimd_ended, NULL, 10000));

    wake_reclaimd_below_low(c);
    assert_true(wait_for(headroom_at_least_high, NULL, 10000));
    assert_int_equal(reclaimd_settles_at(1), 1);
    assert_int_equal(test_reports_seen_matching("background reclaimer's thread was ended"), 1);
    rcl_shrinker_unregister(s);
    test_cache_free(c);
    rcl_shutdown();
    assert_int_equal(reclaimd_settles_at(0), 0);
    alarm(0);
}

/* Starts of the background reclaimer's thread. */
static atomic_int reclaimer_starts;

static int counting_start(pthread_t *th, void *(*fn)(void *), void *arg, const char *what)
{
    if (strcmp(what, "reclaimer") == 0)
        atomic_fetch_add(&reclaimer_starts, 1);
    return pthread_create(th, NULL, fn, arg);
}

/* background = 0 runs no thread, ever. The reclaimer is started in the
 * call that wakes it: counted by the time that call returns, where the
 * thread itself may not show in /proc yet. */
TEST(background_off_runs_no_thread)
{
    assert_int_equal(reclaimd_settles_at(0), 0);
    atomic_store(&reclaimer_starts, 0);
    atomic_store_explicit(&rcl__thread_create_hook, counting_start, memory_order_relaxed);
    struct test_cache *c = test_cache_new("cache", 100000, 4096, NULL);
    fill_to_min(c);
    for (int i = 0; i < 100; i++)
        test_cache_add(c, RCL_DEFAULT);
    atomic_store_explicit(&rcl__thread_create_hook, NULL, memory_order_relaxed);
    assert_int_equal(atomic_load(&reclaimer_starts), 0);
    assert_int_equal(count_reclaimd(), 0);
    test_cache_free(c);
}

/* The invariant: accounted usage never exceeds the limit, whatever many
 * threads do at once. The peak is sampled at every charge. */
struct hammer_arg {
    struct test_cache *cache;
    unsigned seed;
    int rounds;
};

static void *hammer(void *p)
{
    struct hammer_arg *a = p;
    void *mine[64] = { 0 };
    for (int i = 0; i < a->rounds; i++) {
        unsigned r = rand_r(&a->seed);
        unsigned slot = r % 64;
        if (mine[slot]) {
            rcl_free(mine[slot]);
            mine[slot] = NULL;
        } else {
            static const rcl_gfp_t flags[] = { RCL_DEFAULT, RCL_NOFS, RCL_NOIO, RCL_NOWAIT,
                                              RCL_ATOMIC };
            mine[slot] = rcl_alloc(1 + (r >> 8) % 16384, flags[(r >> 4) % 5] | RCL__NOWARN);
        }
        if (r % 3 == 0)
            test_cache_add(a->cache, RCL_DEFAULT);
    }
    for (int i = 0; i < 64; i++)
        rcl_free(mine[i]);
    return NULL;
}

TEST(usage_never_exceeds_the_limit_under_many_threads)
{
    enum { N = 16 };
    rcl_shutdown();
    struct rcl_config cfg = test_config(4 * MiB);
    cfg.background = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    struct test_cache *c = test_cache_new("cache", 1 << 20, 2048, NULL);
    pthread_t th[N];
    struct hammer_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct hammer_arg){ c, 1234u + (unsigned)i, test_scale(20000) };
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_true(st.peak <= st.limit);
    assert_true(st.peak > st.limit / 2);                /* the test did press */
    /* Exact once quiet: each block charges its class, 2 KiB's or, over
     * glibc, one up to half as large again whose cached block served it
     * (src/block_cache.h); and nothing once they are freed (below). */
    assert_in_range(usage_now(), c->n * rcl_alloc_charge(2048), c->n * rcl_alloc_charge(3072));
    test_cache_free(c);
    assert_int_equal(usage_now(), 0);
}

/* A test and its thread take turns through a phase each sets for the
 * other. */
static void phase_wait(atomic_int *phase, int n)
{
    while (atomic_load(phase) != n)
        test_sleep_ms(1);
}

static void phase_step(atomic_int *phase, int set, int wait)
{
    atomic_store(phase, set);
    phase_wait(phase, wait);
}

/* Starts fn, which takes phase through 1 and 3 and ends at 4, and waits
 * for its 1. */
static pthread_t phase_thread_start(atomic_int *phase, void *(*fn)(void *))
{
    pthread_t th;

    atomic_store(phase, 0);
    assert_int_equal(pthread_create(&th, NULL, fn, NULL), 0);
    phase_wait(phase, 1);
    return th;
}

/* Lets the thread end, which gives back what it held. */
static void phase_thread_end(atomic_int *phase, pthread_t th)
{
    atomic_store(phase, 4);
    pthread_join(th, NULL);
    assert_int_equal(usage_now(), 0);
}

/* Stocks: what a thread holds pre-charged is folded back by sync, its own
 * at once, the others' at their next call; a thread's stock returns when
 * it exits. */
static atomic_int stock_phase;
static void *stock_holder(void *arg)
{
    (void)arg;
    void *p = rcl_alloc(100, RCL_DEFAULT);     /* takes a stock */
    rcl_free(p);
    phase_step(&stock_phase, 1, 2);
    p = rcl_alloc(100, RCL_DEFAULT);           /* meets the drain request */
    rcl_free(p);
    phase_step(&stock_phase, 3, 4);
    return NULL;
}

TEST(usage_sync_folds_every_threads_stock)
{
    pthread_t th = phase_thread_start(&stock_phase, stock_holder);
    assert_int_equal(rcl_usage(), 0);              /* exact while it is quiet */
    rcl_usage_sync();
    phase_step(&stock_phase, 2, 3);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.usage, 0);
    phase_thread_end(&stock_phase, th);
}

/* A thread that only allocates after a sync: its next allocation, served
 * from its cache, meets the request too. */
static atomic_int alloc_phase;
static void *cache_holder(void *arg)
{
    (void)arg;
    void *a = rcl_alloc(100, RCL_DEFAULT), *b = rcl_alloc(100, RCL_DEFAULT);
    rcl_free(a);
    rcl_free(b);                                /* two cached blocks */
    phase_step(&alloc_phase, 1, 2);
    a = rcl_alloc(100, RCL_DEFAULT);            /* its next call: no free */
    phase_step(&alloc_phase, 3, 4);
    rcl_free(a);
    return NULL;
}

/* rcl_usage_sync() asks every other thread for its stock and cached
 * blocks at its next allocation or free, an allocation its cache could
 * serve among them. (Only a free or an allocation that missed met it:
 * one that allocates and frees nothing for a while kept its blocks.) */
TEST(usage_sync_is_met_at_another_threads_next_allocation)
{
    pthread_t th = phase_thread_start(&alloc_phase, cache_holder);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_true(st.thread_cached > 0);
    rcl_usage_sync();
    phase_step(&alloc_phase, 2, 3);
    rcl_stats_get(&st);
    assert_int_equal(st.thread_cached, 0);
    phase_thread_end(&alloc_phase, th);
}

/* A charge held between its read of the limit and its compare-and-swap
 * on the budget (rcl__charge_hook), once, on the thread that charges,
 * while the test changes the limit under it. */
static atomic_int race_phase;
static _Thread_local bool race_holder;
static size_t race_bytes;
static int race_err;

static void hold_the_charge(void)
{
    if (!race_holder)
        return;
    race_holder = false;
    phase_step(&race_phase, 1, 2);
}

static void *charges_across_a_new_limit(void *arg)
{
    (void)arg;
    race_holder = true;
    race_err = rcl_charge(race_bytes, RCL_NOWAIT | RCL__NOWARN);
    phase_step(&race_phase, 3, 4);
    if (!race_err)
        rcl_uncharge(race_bytes);
    return NULL;
}

/* Charges `bytes` on another thread with the limit set to `limit` while
 * the charge is held between its read of the limit and its charge:
 * its answer, and the usage once it answered. */
static int charge_across_a_new_limit(size_t bytes, size_t limit, size_t *usage)
{
    race_bytes = bytes;
    atomic_store_explicit(&rcl__charge_hook, hold_the_charge, memory_order_relaxed);
    pthread_t th = phase_thread_start(&race_phase, charges_across_a_new_limit);
    assert_int_equal(rcl_set_limit(limit), 0);
    phase_step(&race_phase, 2, 3);
    *usage = usage_now();
    phase_thread_end(&race_phase, th);
    return race_err;
}

static int charge_hook_teardown(void **state)
{
    atomic_store_explicit(&rcl__charge_hook, NULL, memory_order_relaxed);
    return test_teardown(state);
}

/* The kernel's charge reads memory.max after its add, and one that finds
 * a new one it no longer fits is taken back: once rcl_set_limit() has
 * returned, no charge passes the new limit, one that read the old limit
 * before the call included. It landed, the usage over the new limit
 * after the call, and the background reclaimer, which the call found no
 * reason to wake, was never told. */
TEST_WITH(a_charge_that_read_the_limit_before_it_was_lowered_is_held_to_the_new_one,
          test_setup, charge_hook_teardown)
{
    size_t usage;

    assert_int_equal(charge_across_a_new_limit(8 * MiB, 4 * MiB, &usage), -ENOMEM);
    assert_int_equal(usage, 0);
    assert_true(usage <= rcl_limit());
}

/* And one that still fits the new limit is charged under it. */
TEST_WITH(a_charge_that_read_the_limit_before_it_was_lowered_and_fits_the_new_one_is_charged,
          test_setup, charge_hook_teardown)
{
    size_t usage;

    assert_int_equal(charge_across_a_new_limit(1 * MiB, 32 * MiB, &usage), 0);
    assert_int_equal(usage, 1 * MiB);
}

/* A charge held between its read of the limit and its charge, each time
 * it reaches there, while another thread raises the limit: up to
 * RAISES times, one raise a time. */
#define RAISES 20
static _Thread_local bool raise_holder;
static int raises;

static void *raises_the_limit(void *arg)
{
    (void)arg;
    assert_int_equal(rcl_set_limit(rcl_limit() + 1 * MiB), 0);
    return NULL;
}

static void raise_under_the_charge(void)
{
    pthread_t th;

    if (!raise_holder || raises == RAISES)
        return;
    raises++;
    assert_int_equal(pthread_create(&th, NULL, raises_the_limit, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

/* The kernel's charge compares its sum with the memory.max it reads
 * after its add: one that fits stands, however often the limit moved.
 * A charge that read the limit before another thread raised it is made
 * once. It was made again for every new limit, and so for as long as
 * another thread kept setting one. */
TEST_WITH(a_charge_that_fits_a_limit_set_while_it_charges_is_made_once, test_setup,
          charge_hook_teardown)
{
    size_t limit = rcl_limit();

    raises = 0;
    raise_holder = true;
    atomic_store_explicit(&rcl__charge_hook, raise_under_the_charge, memory_order_relaxed);
    assert_int_equal(rcl_charge(1 * MiB, RCL_NOWAIT), 0);
    atomic_store_explicit(&rcl__charge_hook, NULL, memory_order_relaxed);
    raise_holder = false;
    size_t usage = usage_now();
    rcl_uncharge(1 * MiB);
    assert_int_equal(rcl_set_limit(limit), 0);
    assert_int_equal(raises, 1);
    assert_int_equal(usage, 1 * MiB);
}

/* RECLAIM_STATS=1 prints the statistics at exit. */
TEST(stats_are_printed_at_exit_when_asked)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        setenv("RECLAIM_STATS", "1", 1);
        rcl_shutdown();
        rcl_init(NULL);
        rcl_free(rcl_alloc(10, RCL_DEFAULT));
        exit(0);
    }
    close(fd[1]);
    char buf[4096] = { 0 };
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)n;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(buf, "libreclaim statistics"));
    assert_non_null(strstr(buf, "allocations 1, frees 1"));
}

/* RECLAIM_STATS takes 0 or 1: another value is reported, and ignored. */
TEST(a_bad_stats_variable_is_reported_at_the_start)
{
    rcl_shutdown();
    setenv("RECLAIM_STATS", "maybe", 1);
    setenv("RECLAIM_LIMIT", "8M", 1);
    setenv("RECLAIM_BACKGROUND", "0", 1);
    setenv("RECLAIM_PRESSURE", "0", 1);
    int err = rcl_init(NULL);
    unsetenv("RECLAIM_STATS");
    unsetenv("RECLAIM_LIMIT");
    unsetenv("RECLAIM_BACKGROUND");
    unsetenv("RECLAIM_PRESSURE");
    assert_int_equal(err, 0);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("RECLAIM_STATS=\"maybe\"");
}

static void *allocates_three_frees_two(void *arg)
{
    void **kept = arg;
    void *a = rcl_alloc(100, RCL_DEFAULT), *b = rcl_alloc(200, RCL_DEFAULT);

    *kept = rcl_alloc(300, RCL_DEFAULT);
    rcl_free(a);
    rcl_free(b);
    return NULL;
}

/* A thread's allocations and frees stay in the statistics after it exits. */
TEST(stats_count_the_allocations_and_frees_of_a_thread_that_exited)
{
    struct rcl_stats before, after;
    void *kept = NULL;
    pthread_t th;

    rcl_stats_get(&before);
    assert_int_equal(pthread_create(&th, NULL, allocates_three_frees_two, &kept), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_stats_get(&after);
    assert_non_null(kept);
    rcl_free(kept);
    assert_int_equal(after.allocations - before.allocations, 3);
    assert_int_equal(after.frees - before.frees, 2);
}

TEST(stats_print_text_and_json)
{
    struct test_cache *c = test_cache_new("cache", 10, 100, NULL);
    for (int i = 0; i < 10; i++)
        test_cache_add(c, RCL_DEFAULT);
    rcl_reclaim(1, RCL_DEFAULT);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(rcl_stats_print(f, 1), 0);
    fclose(f);
    assert_true(buf[0] == '{' && buf[len - 2] == '}');
    assert_non_null(strstr(buf, "\"allocations\":10"));
    assert_non_null(strstr(buf, "\"name\":\"cache\""));
    free(buf);
    f = open_memstream(&buf, &len);
    assert_int_equal(rcl_stats_print(f, 0), 0);
    fclose(f);
    assert_non_null(strstr(buf, "shrinkers: 1"));
    free(buf);
    test_cache_free(c);
}

/* The statistics in JSON while a shrinker of that name is registered. */
static char *stats_json_naming_a_shrinker(const char *name)
{
    static const struct rcl_shrinker_ops ops = { test_cache_count, test_cache_scan };
    struct rcl_shrinker *s = rcl_shrinker_register(name, &ops, NULL, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(s);
    assert_int_equal(rcl_stats_print(f, 1), 0);
    fclose(f);
    rcl_shrinker_unregister(s);
    return buf;
}

/* JSON text is UTF-8 (RFC 8259): a shrinker's name is the program's, and
 * a byte of it that is no UTF-8 goes out as U+FFFD, the rest as it is. */
TEST(stats_json_carries_a_name_that_is_no_utf8_as_valid_text)
{
    char *buf = stats_json_naming_a_shrinker("caf\xc3\xa9 \xff\xc3 \xed\xa0\x80\"");

    assert_non_null(strstr(buf, "\"name\":\"caf\xc3\xa9 \\ufffd\\ufffd "
                                "\\ufffd\\ufffd\\ufffd\\\"\""));
    free(buf);
}

/* RFC 3629 UTF-8 has no overlong form, nothing past U+10FFFF and no lead
 * byte C0, C1 or F5 and above: each byte of such a sequence goes out as
 * U+FFFD. */
TEST(stats_json_carries_overlong_and_too_large_utf8_as_replacements)
{
    static const char name[] = "a\xe0\x80\x80" "b\xf4\x90\x80\x80" "c\xc1\x81"
                               "d\xf0\x80\x80\x80" "e\xf5\x80\x80\x80" "f";
    char *buf = stats_json_naming_a_shrinker(name);

    assert_non_null(strstr(buf, "\"name\":\"a\\ufffd\\ufffd\\ufffd"
                                "b\\ufffd\\ufffd\\ufffd\\ufffdc\\ufffd\\ufffd"
                                "d\\ufffd\\ufffd\\ufffd\\ufffd"
                                "e\\ufffd\\ufffd\\ufffd\\ufffdf\""));
    free(buf);
}

/* JSON cannot carry a control character raw: a name's tab goes out as
 * \u0009. */
TEST(stats_json_escapes_a_control_character_in_a_name)
{
    char *buf = stats_json_naming_a_shrinker("tab\there");

    assert_non_null(strstr(buf, "\"name\":\"tab\\u0009here\""));
    free(buf);
}

/* A stream that cannot take the text says so: -EIO, not a silent loss. */
TEST(stats_print_to_a_full_device_is_eio)
{
    FILE *f = fopen("/dev/full", "w");
    if (!f)
        skip();   /* no /dev/full in this environment */
    assert_int_equal(rcl_stats_print(f, 0), -EIO);
    clearerr(f);
    assert_int_equal(rcl_stats_print(f, 1), -EIO);
    fclose(f);
}

/* json is a truth value: any nonzero one asks for the JSON form. */
TEST(printing_statistics_with_any_nonzero_json_writes_json)
{
    char buf[4096];
    FILE *f = fmemopen(buf, sizeof(buf), "w");
    assert_non_null(f);
    assert_int_equal(rcl_stats_print(f, 7), 0);
    fclose(f);
    assert_int_equal(buf[0], '{');
}

TEST(printing_statistics_to_no_file_is_refused_and_reported)
{
    assert_int_equal(rcl_stats_print(NULL, 1), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_stats_print(NULL, 1): NULL file");
}

/* A NULL where the counters should go is the caller's bug, reported as
 * every NULL object is; it went by unseen. */
TEST(reading_statistics_into_no_structure_is_reported)
{
    rcl_stats_get(NULL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_stats_get(NULL): NULL structure; nothing read");
}

/* The same for shrinkers' counters asked for with no array to put them
 * in; the count is the answer a max of 0 gets. */
TEST(reading_shrinker_statistics_into_no_array_is_reported_and_counts_them)
{
    struct test_cache *c = test_cache_new("stats-null", 1, 64, NULL);
    assert_int_equal(rcl_stats_shrinkers(NULL, 4), 1);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_stats_shrinkers(NULL, 4): NULL array; nothing read");
    assert_int_equal(rcl_stats_shrinkers(NULL, 0), 1);
    assert_int_equal(test_report_count(), 1);
    test_cache_free(c);
}

TEST_MAIN();
