/* SPDX-License-Identifier: MIT */
/*
 * test_reclaim_bound - an allocation's direct reclaim is bounded, the
 * background reclaimer does the rest, and an allocation it cannot keep up
 * with is throttled (counted and reported) rather than stalled.
 *
 * The objects are plain charges of OBJ bytes that a test shrinker gives
 * back with rcl_uncharge(); which threads the shrinker may free from, and
 * how slow each scan call is, are the test's to choose. No assertion
 * depends on how fast the machine is: bounds are counted in scan calls,
 * and waits have seconds of margin.
 */
#include "helpers.h"
#include "internal.h"
#include "scripted_clock.h"

#include <stdatomic.h>
#include <sys/wait.h>

#define OBJ        (4 * KiB)
#define LIMIT      (8 * MiB)
#define SCAN_BATCH 8

struct objs {
    _Atomic unsigned long count;       /* charged objects left */
    _Atomic unsigned long calls;       /* scan calls that freed */
    long scan_sleep_us;                /* each scan call takes this long */
    pthread_t owner;                   /* the test's thread */
    _Atomic int direct_frees;          /* the owner's scans may free */
    _Atomic int background_frees;      /* other threads' scans may free */
    _Atomic int frees_once_throttled;  /* ... once an allocation was throttled */
};

/*
 * The time scan calls take, for the tests that compare shrinkers by it:
 * while the clock is scripted, the test's thread reads CLOCK_MONOTONIC as
 * the moment the script began plus what its scan calls said they took.
 * A preemption on a loaded machine, which lengthens whatever call it
 * lands in, then cannot make a fast shrinker the slowest, nor end a
 * charge's wait for a pass in flight early. Other threads and other
 * clocks read the kernel's (scripted_clock.h).
 */
static void script_the_clock(void)
{
    scripted_clock_stop_here(CLOCK_MONOTONIC, 0);
}

/* A scan call that takes `us` microseconds: told to the script, or slept. */
static void scan_takes_us(long us)
{
    if (scripted_clock_on_this_thread()) {
        scripted_clock_advance((unsigned long long)us * 1000ull);
        return;
    }
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000L };
    nanosleep(&ts, NULL);
}

/* What a count callback says for n objects. */
static unsigned long count_of(unsigned long n)
{
    return n ? n : RCL_SHRINK_EMPTY;
}

static unsigned long objs_count(void *priv, struct rcl_shrink_control *sc)
{
    struct objs *o = priv;
    (void)sc;
    return count_of(atomic_load(&o->count));
}

static unsigned long objs_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct objs *o = priv;
    bool own = pthread_equal(pthread_self(), o->owner);

    if (!atomic_load(own ? &o->direct_frees : &o->background_frees) &&
        (own || !atomic_load(&o->frees_once_throttled) || !rd(rcl__stats.throttled)))
        return 0;
    if (o->scan_sleep_us)
        scan_takes_us(o->scan_sleep_us);
    unsigned long freed = 0, n = atomic_load(&o->count);
    while (freed < sc->nr_to_scan && n) {
        if (atomic_compare_exchange_weak(&o->count, &n, n - 1)) {
            rcl_uncharge(OBJ);
            freed++;
            n--;
        }
    }
    atomic_fetch_add(&o->calls, 1);
    return freed;
}

/*
 * The objects are the file's, not the test's frame: a failed assertion
 * leaves that frame with the shrinker still registered, and the
 * background reclaimer may scan it until the teardown stops the
 * reclaimer and the shutdown drops the shrinker. The owner is the
 * calling test's thread.
 */
static struct objs the_objs;

static struct objs *objs_fresh(struct objs init)
{
    the_objs = init;
    the_objs.owner = pthread_self();
    return &the_objs;
}

static const struct rcl_shrinker_ops objs_ops = { objs_count, objs_scan };
static const struct rcl_shrinker_opts objs_opts = { .batch = SCAN_BATCH };

static int init_with_background(void)
{
    struct rcl_config cfg = test_config(LIMIT);
    cfg.background = 1;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    rcl_config_from_env(&cfg);      /* the tests set RECLAIM_DIRECT_US */
    return rcl_init(&cfg);
}

/* Charges objects without reclaiming until the budget refuses one: the
 * headroom is then below the min watermark. */
static void fill(struct objs *o)
{
    while (rcl_charge(OBJ, RCL_NOWAIT) == 0)
        atomic_fetch_add(&o->count, 1);
}

static void drop_all(struct objs *o)
{
    unsigned long n = atomic_exchange(&o->count, 0);
    while (n--)
        rcl_uncharge(OBJ);
}

static struct rcl_stats stats(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    return st;
}

static int teardown(void **state);

TEST_WITH(direct_reclaim_with_a_slow_shrinker_stops_after_one_scan_call, NULL, teardown)
{
    unsetenv("RECLAIM_DIRECT_US");
    assert_int_equal(init_with_background(), 0);
    struct objs *o = objs_fresh((struct objs){ .scan_sleep_us = 2000, .direct_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("slow", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    fill(o);

    /* 1 MiB is 256 objects, 32 scan calls of 2 ms each unbounded; the
     * bound (50 us) stops the pass after the first call, which always
     * runs. */
    size_t freed = rcl__direct_reclaim(&rcl__self, MiB, RCL_DEFAULT);
    assert_int_equal(atomic_load(&o->calls), 1);
    assert_int_equal(freed, SCAN_BATCH * OBJ);
    struct rcl_stats st = stats();
    assert_int_equal(st.direct_bounded, 1);
    /* The scan slept 2 ms: the stall was not CPU, and the counters say so. */
    assert_true(st.direct_stall_ns >= 2000000ull);
    assert_true(st.direct_cpu_ns < st.direct_stall_ns);

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

/*
 * A reclaim inside a bounded one: a callback that lifts its NORECLAIM
 * scope and reclaims (a misuse the scope's own save/restore cannot see,
 * if it puts the scope back) makes a pass inside the pass. The nester's
 * first scan call, on the test's thread, does that once, then sleeps
 * past the outer reclaim's bound; the objects' scan calls are counted
 * apart, outside the nested reclaim and inside it.
 */
struct nest {
    struct objs objs;
    pthread_t owner;
    _Atomic int inside;                     /* the nested reclaim runs */
    _Atomic unsigned long nester_calls;     /* outside it, by the owner */
    _Atomic unsigned long objs_calls;       /* the same */
};

static unsigned long nester_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return count_of(1ul << 20);
}

static unsigned long nester_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct nest *n = priv;
    (void)sc;
    if (!pthread_equal(pthread_self(), n->owner) || atomic_load(&n->inside))
        return 0;
    if (atomic_fetch_add(&n->nester_calls, 1) == 0) {
        atomic_store(&n->inside, 1);
        rcl_scope_restore(RCL_SCOPE_NORECLAIM);
        rcl_reclaim(1, RCL_DEFAULT);
        rcl_scope_save(RCL_SCOPE_NORECLAIM);
        atomic_store(&n->inside, 0);
        test_sleep_ms(2);
    }
    return 0;
}

static unsigned long nested_objs_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct nest *n = priv;
    if (pthread_equal(pthread_self(), n->owner) && !atomic_load(&n->inside))
        atomic_fetch_add(&n->objs_calls, 1);
    return objs_scan(&n->objs, sc);
}

static unsigned long nested_objs_count(void *priv, struct rcl_shrink_control *sc)
{
    struct nest *n = priv;
    return objs_count(&n->objs, sc);
}

/* The file's, as the_objs is; its objects freed by the test's thread. */
static struct nest the_nest;

static struct nest *nest_fresh(void)
{
    memset(&the_nest, 0, sizeof(the_nest));
    the_nest.owner = the_nest.objs.owner = pthread_self();
    atomic_store(&the_nest.objs.direct_frees, 1);
    return &the_nest;
}

static const struct rcl_shrinker_ops nester_ops = { nester_count, nester_scan };
static const struct rcl_shrinker_ops nested_objs_ops = { nested_objs_count, nested_objs_scan };

TEST_WITH(a_reclaim_nested_in_a_callback_leaves_the_outer_reclaims_bound, NULL, teardown)
{
    unsetenv("RECLAIM_DIRECT_US");
    assert_int_equal(init_with_background(), 0);
    struct nest *n = nest_fresh();
    struct rcl_shrinker *nester = rcl_shrinker_register("nester", &nester_ops, n, NULL);
    assert_non_null(nester);
    struct rcl_shrinker *s = rcl_shrinker_register("objects", &nested_objs_ops, n,
                                                   &objs_opts);
    assert_non_null(s);
    fill(&n->objs);

    /* The bound (50 us) has passed when the nester's first call returns:
     * the outer reclaim stops there, as after any slow call. */
    rcl__direct_reclaim(&rcl__self, 64 * KiB, RCL_DEFAULT);
    assert_int_equal(atomic_load(&n->nester_calls), 1);
    assert_int_equal(atomic_load(&n->objs_calls), 0);
    assert_int_equal(stats().direct_bounded, 1);

    rcl_shrinker_unregister(nester);
    rcl_shrinker_unregister(s);
    drop_all(&n->objs);
    rcl_shutdown();
}

TEST_WITH(direct_reclaim_without_a_bound_does_all_the_work, NULL, teardown)
{
    setenv("RECLAIM_DIRECT_US", "0", 1);
    assert_int_equal(init_with_background(), 0);
    unsetenv("RECLAIM_DIRECT_US");
    struct objs *o = objs_fresh((struct objs){ .scan_sleep_us = 2000, .direct_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("slow", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    fill(o);

    size_t freed = rcl__direct_reclaim(&rcl__self, 256 * KiB, RCL_DEFAULT);
    assert_true(freed >= 256 * KiB);
    assert_true(atomic_load(&o->calls) >= 256 * KiB / (SCAN_BATCH * OBJ));
    assert_int_equal(stats().direct_bounded, 0);

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

TEST_WITH(explicit_reclaim_is_not_bounded, NULL, teardown)
{
    unsetenv("RECLAIM_DIRECT_US");
    assert_int_equal(init_with_background(), 0);
    struct objs *o = objs_fresh((struct objs){ .scan_sleep_us = 1000, .direct_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("slow", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    fill(o);

    /* The caller of rcl_reclaim() asked for these bytes, not for an
     * allocation's worth. */
    assert_true(rcl_reclaim(128 * KiB, RCL_DEFAULT) >= 128 * KiB);
    assert_int_equal(stats().direct_bounded, 0);

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

TEST_WITH(the_background_reclaimer_restores_headroom_to_high, NULL, teardown)
{
    assert_int_equal(init_with_background(), 0);
    struct objs *o = objs_fresh((struct objs){ .background_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("objs", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    fill(o);   /* passing low woke the background reclaimer */

    /* The bound only catches a reclaimer that never restores high (a
     * 10 s bound failed once under TSan beside a CI run). */
    struct rcl_stats st = stats();
    for (int ms = 0; ms < 60000 && st.limit - st.usage < st.wmark_high; ms += 10) {
        test_sleep_ms(10);
        st = stats();
    }
    assert_true(st.limit - st.usage >= st.wmark_high);
    assert_true(st.background_reclaimed > 0);
    assert_int_equal(st.direct_reclaims, 0);

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

TEST_WITH(with_nothing_left_to_free_the_background_reclaimer_goes_quiet, NULL, teardown)
{
    test_skip_unless_syscalls_read();
    assert_int_equal(init_with_background(), 0);
    struct objs *o = objs_fresh((struct objs){ .background_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("objs", &objs_ops, o, &objs_opts);
    assert_non_null(s);

    /* Two fills back to back: sustained pressure, if the machine is fast
     * enough for the second to come within 20 ms of the first pass. */
    for (int round = 0; round < 2; round++) {
        fill(o);
        struct rcl_stats st = stats();
        for (int ms = 0; ms < 10000 && st.limit - st.usage < st.wmark_high; ms++) {
            test_sleep_ms(1);
            st = stats();
        }
    }
    /* The cache is gone (its charges stay), and headroom sits between low
     * and high: keeping ahead finds nothing and must not poll on. */
    unsigned long held = atomic_exchange(&o->count, 0);
    struct rcl_stats st = stats();
    size_t mid = (st.wmark_low + st.wmark_high) / 2;
    while (st.limit - st.usage > mid && rcl_charge(OBJ, RCL_NOWAIT) == 0) {
        held++;
        st = stats();
    }
    /* Quiet: it waits to be woken, with no deadline to poll by. */
    pid_t tid = test_thread_named("rcl-reclaimd", NULL);
    assert_true(tid > 0);
    assert_true(test_thread_settles(tid));
    unsigned long before = stats().background_wakeups;
    /* Nothing is to wake it: a slow machine cannot fail the test here, and
     * the settled wait, not this window, is what shows it quiet. */
    test_sleep_ms(100);
    assert_int_equal(stats().background_wakeups, before);

    rcl_shrinker_unregister(s);
    while (held--)
        rcl_uncharge(OBJ);
    rcl_shutdown();
}

/* The voluntary context switches of the background reclaimer's thread,
 * -1 while it has none. */
static long reclaimd_switches(void)
{
    pid_t tid = test_thread_named("rcl-reclaimd", NULL);
    char path[64], line[128];
    long n = -1;

    snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
    FILE *f = tid ? fopen(path, "r") : NULL;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "voluntary_ctxt_switches:", 24))
            n = atol(line + 24);
    fclose(f);
    return n;
}

/* A pass that freed less than a trim's worth owes a trim that no interval
 * makes due: the reclaimer sleeps until woken, not one interval at a time. */
TEST_WITH(after_a_pass_that_freed_less_than_a_trims_worth_the_reclaimer_sleeps, NULL, teardown)
{
    test_skip_unless_syscalls_read();
    assert_int_equal(init_with_background(), 0);
    struct objs *o = objs_fresh((struct objs){ .background_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("objs", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    /* Filled without waking the reclaimer, then woken once: one pass,
     * whose first priority with work to do finds the budget full. */
    while (rcl_charge(OBJ, RCL__NOWARN) == 0)
        atomic_fetch_add(&o->count, 1);
    assert_int_equal(rcl_charge(OBJ, RCL_NOWAIT), -ENOMEM);

    /* The bound only catches a reclaimer that never restores high (a
     * 10 s bound failed once under TSan beside a CI run). */
    struct rcl_stats st = stats();
    for (int ms = 0; ms < 60000 && st.limit - st.usage < st.wmark_high; ms += 10) {
        test_sleep_ms(10);
        st = stats();
    }
    /* Headroom back at high in batches of 8 objects: under 1 MiB freed. */
    assert_true(st.background_reclaimed > 0 && st.background_reclaimed < MiB);
    /* It sleeps until woken: a wait with no deadline, where one trim
     * interval at a time would be a timed one. */
    pid_t tid = test_thread_named("rcl-reclaimd", NULL);
    assert_true(tid > 0);
    assert_true(test_thread_settles(tid));
    long before = reclaimd_switches();
    assert_true(before >= 0);
    /* Five trim intervals of the libc backend, ten of jemalloc's: nothing
     * is to wake it meanwhile, so a slow machine cannot fail the test. */
    test_sleep_ms(500);
    assert_int_equal(reclaimd_switches(), before);

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

/* The trim an rcl_reclaim() owes once the rate limit put it off is the
 * background reclaimer's, which sleeps until woken while less than a
 * trim's worth is owed: the reclaim that owes it wakes the reclaimer. */
TEST_WITH(a_trim_an_explicit_reclaim_put_off_is_made_by_the_background_reclaimer, NULL,
          teardown)
{
    assert_int_equal(init_with_background(), 0);
    struct objs *o = objs_fresh((struct objs){ .direct_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("objs", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    /* 1 MiB charged and freed each time, a trim's worth, well above the
     * low watermark: the first trims, and one soon after is put off by
     * the rate limit. */
    bool put_off = false;
    for (int i = 0; i < 64 && !put_off; i++) {
        for (unsigned long n = 0; n < MiB / OBJ; n++) {
            assert_int_equal(rcl_charge(OBJ, RCL_NOWAIT), 0);
            atomic_fetch_add(&o->count, 1);
        }
        unsigned long trims = rd(rcl__stats.trims);
        assert_int_equal(rcl_reclaim(MiB, RCL_DEFAULT), MiB);
        put_off = rd(rcl__stats.trims) == trims;
    }
    assert_true(put_off);
    unsigned long trims = rd(rcl__stats.trims);
    /* The bound only catches a reclaimer that never trims. */
    for (int ms = 0; ms < 60000 && rd(rcl__stats.trims) == trims; ms += 10)
        test_sleep_ms(10);
    assert_true(rd(rcl__stats.trims) > trims);

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

/* Starts the library with a background reclaimer, and has an allocation
 * that only it can serve wait for it: throttled, counted and reported. */
static void throttled_by_the_background(void)
{
    assert_int_equal(init_with_background(), 0);
    /* Direct reclaim finds nothing it may free: only the background
     * reclaimer can make room, so the allocation must wait for it. */
    struct objs *o = objs_fresh((struct objs){ .direct_frees = 0 });
    struct rcl_shrinker *s = rcl_shrinker_register("background-only", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    /* The reclaimer frees only once an allocation has waited for it: were
     * it free to before, it could be ahead of the allocation below,
     * which would then find the room made and wait for nothing. (Catching
     * it in its back-off after a fruitless pass, which ignores wake-ups,
     * was a 100 ms window that a loaded machine missed.) */
    atomic_store(&o->frees_once_throttled, 1);
    fill(o);

    int ret = -1;
    for (int i = 0; i < 1000 && ret; i++) {
        ret = rcl_charge(64 * KiB, RCL_DEFAULT | RCL__NOWARN);
        if (ret)
            test_sleep_ms(10);
    }
    assert_int_equal(ret, 0);
    rcl_uncharge(64 * KiB);

    struct rcl_stats st = stats();
    assert_true(st.throttled >= 1);
    assert_true(st.throttle_ns > 0);
    assert_reports_have("allocations throttled");

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

TEST_WITH(an_allocation_the_background_must_serve_is_throttled_and_counted, NULL, teardown)
{
    throttled_by_the_background();
}

/* Throttling is news again to each new budget, as the other once-only
 * reports of the reclaimer are. */
TEST_WITH(throttling_is_reported_again_after_a_restart, NULL, teardown)
{
    throttled_by_the_background();
    throttled_by_the_background();
}

TEST_WITH(without_a_background_reclaimer_nothing_is_throttled, NULL, teardown)
{
    assert_int_equal(test_init(LIMIT), 0);
    struct objs *o = objs_fresh((struct objs){ .direct_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("objs", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    fill(o);

    assert_int_equal(rcl_charge(64 * KiB, RCL_DEFAULT), 0);
    rcl_uncharge(64 * KiB);
    struct rcl_stats st = stats();
    assert_true(st.direct_reclaims >= 1);
    assert_int_equal(st.throttled, 0);
    assert_int_equal(st.direct_bounded, 0);

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

TEST_WITH(a_malformed_direct_bound_is_reported_and_the_default_kept, NULL, teardown)
{
    setenv("RECLAIM_DIRECT_US", "fast", 1);
    assert_int_equal(init_with_background(), 0);
    unsetenv("RECLAIM_DIRECT_US");
    assert_true(test_report_count() >= 1);
    assert_reports_have("RECLAIM_DIRECT_US");
    assert_int_equal(atomic_load(&rcl__direct_bound_ns), 50 * 1000);
    rcl_shutdown();
}

TEST_WITH(a_bounded_reclaim_that_overruns_is_reported_with_its_shrinkers, NULL, teardown)
{
    unsetenv("RECLAIM_DIRECT_US");
    assert_int_equal(init_with_background(), 0);
    /* One scan call of 5 ms overruns the 50 us bound, and the 2 ms a
     * bounded reclaim may take before it is reported. */
    struct objs *o = objs_fresh((struct objs){ .scan_sleep_us = 5000, .direct_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("slow-disk", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    fill(o);

    rcl__direct_reclaim(&rcl__self, 64 * KiB, RCL_DEFAULT);
    assert_int_equal(stats().slow_reclaims, 1);
    assert_reports_have("slow direct reclaim");
    assert_reports_have("\"slow-disk\"");
    assert_reports_have("MiB/s");

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

/* Names as long as a shrinker's may be (RCL_NAME_MAX - 1 characters). */
#define LONG_NAME "a-cache-whose-name-runs-long%03u"
#define FAST_CACHES 8

static unsigned long none_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return RCL_SHRINK_EMPTY;
}

static const struct rcl_shrinker_ops none_ops = { none_count, objs_scan };

TEST_WITH(a_slow_reclaim_report_names_its_slowest_shrinker_among_many, NULL, teardown)
{
    /* A bound of a second: every shrinker runs in the first pass, and
     * the one slow scan call still makes the reclaim a slow one. */
    setenv("RECLAIM_DIRECT_US", "1000000", 1);
    assert_int_equal(init_with_background(), 0);
    unsetenv("RECLAIM_DIRECT_US");
    struct rcl_shrinker *fast[FAST_CACHES];
    char name[RCL_NAME_MAX];
    for (unsigned i = 0; i < FAST_CACHES; i++) {
        snprintf(name, sizeof(name), LONG_NAME, i);
        fast[i] = rcl_shrinker_register(name, &none_ops, NULL, NULL);
        assert_non_null(fast[i]);
    }
    /* Registered last, so the last to run: the trace is full by then. */
    struct objs *o = objs_fresh((struct objs){ .scan_sleep_us = 5000, .direct_frees = 1 });
    snprintf(name, sizeof(name), LONG_NAME, 999u);
    assert_int_equal(strlen(name), RCL_NAME_MAX - 1);
    struct rcl_shrinker *slow = rcl_shrinker_register(name, &objs_ops, o, &objs_opts);
    assert_non_null(slow);
    fill(o);

    script_the_clock();
    rcl__direct_reclaim(&rcl__self, 64 * KiB, RCL_DEFAULT);
    scripted_clock_stop();
    assert_int_equal(stats().slow_reclaims, 1);
    assert_reports_have("\"a-cache-whose-name-runs-long999\" ");
    /* The shrinker it leaves out to name that one is summed, not lost. */
    assert_reports_have("; others ");

    rcl_shrinker_unregister(slow);
    for (unsigned i = 0; i < FAST_CACHES; i++)
        rcl_shrinker_unregister(fast[i]);
    drop_all(o);
    rcl_shutdown();
}

/* Shrinkers that take 10 ms at their first scan call and no time after
 * it, and one that takes 3 ms at each of its calls: one a pass, 13 in
 * all, the most of any. Each scan stops its shrinker's pass. */
static _Atomic unsigned once_calls[FAST_CACHES];

static unsigned long many_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 1ul << 20;
}

static unsigned long slow_once_scan(void *priv, struct rcl_shrink_control *sc)
{
    _Atomic unsigned *calls = priv;

    (void)sc;
    if (atomic_fetch_add(calls, 1) == 0)
        scan_takes_us(10000);
    return RCL_SHRINK_STOP;
}

static unsigned long steady_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    scan_takes_us(3000);
    return RCL_SHRINK_STOP;
}

static const struct rcl_shrinker_ops slow_once_ops = { many_count, slow_once_scan };
static const struct rcl_shrinker_ops steady_ops = { many_count, steady_scan };

/* Each call of "steady" takes less than any of the others' one slow
 * call, and all of them together more: the report names it, by what it
 * took in the whole reclaim. */
TEST_WITH(a_slow_reclaim_report_names_the_shrinker_whose_calls_took_longest_in_all, NULL,
          teardown)
{
    setenv("RECLAIM_DIRECT_US", "1000000", 1);
    assert_int_equal(init_with_background(), 0);
    unsetenv("RECLAIM_DIRECT_US");
    struct rcl_shrinker *once[FAST_CACHES];
    char name[RCL_NAME_MAX];
    for (unsigned i = 0; i < FAST_CACHES; i++) {
        atomic_store(&once_calls[i], 0);
        snprintf(name, sizeof(name), "once-%u", i);
        once[i] = rcl_shrinker_register(name, &slow_once_ops, &once_calls[i], &objs_opts);
        assert_non_null(once[i]);
    }
    /* Registered last, so the last to run: the trace is full by then. */
    struct rcl_shrinker *steady = rcl_shrinker_register("steady", &steady_ops, NULL,
                                                        &objs_opts);
    assert_non_null(steady);

    script_the_clock();
    rcl__direct_reclaim(&rcl__self, 64 * KiB, RCL_DEFAULT);
    scripted_clock_stop();
    assert_int_equal(stats().slow_reclaims, 1);
    assert_reports_have("\"steady\" ");
    assert_reports_have("; others ");

    rcl_shrinker_unregister(steady);
    for (unsigned i = 0; i < FAST_CACHES; i++)
        rcl_shrinker_unregister(once[i]);
    rcl_shutdown();
}

TEST_WITH(an_unbounded_reclaim_is_not_reported_however_slow, NULL, teardown)
{
    assert_int_equal(test_init(LIMIT), 0);   /* no background: no bound */
    struct objs *o = objs_fresh((struct objs){ .scan_sleep_us = 5000, .direct_frees = 1 });
    struct rcl_shrinker *s = rcl_shrinker_register("slow-disk", &objs_ops, o, &objs_opts);
    assert_non_null(s);
    fill(o);

    rcl__direct_reclaim(&rcl__self, 64 * KiB, RCL_DEFAULT);
    assert_int_equal(stats().slow_reclaims, 0);
    assert_int_equal(test_report_count(), 0);

    rcl_shrinker_unregister(s);
    drop_all(o);
    rcl_shutdown();
}

/*
 * Another thread's pass in flight. A "holder" shrinker, called by the
 * reclaiming thread R, takes every object off its list at once (the
 * list is then empty for anyone else) and keeps them until released:
 * R is a reclaimer that isolated a batch and lost its CPU before
 * freeing it. The allocating thread's own reclaim then finds nothing.
 */
struct holder {
    _Atomic unsigned long listed, held;   /* objects on the list, taken off it */
    _Atomic unsigned long release_at;     /* direct reclaims that release them */
    _Atomic int waiter_done;              /* the allocation returned: release */
    _Atomic int released;                 /* the held objects were uncharged */
};

/* The held objects go back once, by whichever side comes first. */
static void holder_uncharge(struct holder *h)
{
    if (!atomic_exchange(&h->released, 1))
        for (unsigned long i = atomic_load(&h->held); i > 0; i--)
            rcl_uncharge(OBJ);
}

static unsigned long holder_count(void *priv, struct rcl_shrink_control *sc)
{
    struct holder *h = priv;
    (void)sc;
    return count_of(atomic_load(&h->listed));
}

static unsigned long holder_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct holder *h = priv;
    (void)sc;
    unsigned long n = atomic_exchange(&h->listed, 0);
    atomic_store(&h->held, n);
    while (!atomic_load(&h->waiter_done))
        test_sleep_ms(0);
    holder_uncharge(h);
    return n;
}

static const struct rcl_shrinker_ops holder_ops = { holder_count, holder_scan };

/* R's release at the waiter's release_at-th direct reclaim, made from
 * the waiter's own pass (a shrinker that frees nothing of its own), so
 * that it does not depend on when R next gets a CPU: a loaded machine
 * kept R off one for longer than the waiter's bounded wait. */
static unsigned long releaser_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return count_of(1024);
}

static unsigned long releaser_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct holder *h = priv;
    (void)sc;
    if (stats().direct_reclaims >= atomic_load(&h->release_at))
        holder_uncharge(h);
    return 0;
}

static const struct rcl_shrinker_ops releaser_ops = { releaser_count, releaser_scan };

static void *holder_reclaim(void *arg)
{
    (void)arg;
    rcl_reclaim(LIMIT, RCL_DEFAULT);
    return NULL;
}

/*
 * The holder and R are the file's, not the test's frame: a failed
 * assertion leaves that frame while R waits in the holder's scan for the
 * allocation to return, and the teardown releases and joins R.
 */
static struct holder holder;
static pthread_t holder_thread;
static bool holder_started;

/* A fresh library whose budget the holder's objects fill, and R's pass
 * started; returns the holder's shrinker once R holds them all. */
static struct rcl_shrinker *holder_start(void)
{
    memset(&holder, 0, sizeof(holder));
    atomic_store(&holder.release_at, ~0ul);
    assert_int_equal(test_init(LIMIT), 0);
    struct rcl_shrinker *s = rcl_shrinker_register("holder", &holder_ops, &holder, NULL);
    assert_non_null(s);
    while (rcl_charge(OBJ, RCL_NOWAIT) == 0)
        atomic_fetch_add(&holder.listed, 1);
    assert_true(atomic_load(&holder.listed) > 0);
    int err = pthread_create(&holder_thread, NULL, holder_reclaim, NULL);
    holder_started = !err;
    assert_int_equal(err, 0);
    while (!atomic_load(&holder.held))
        test_sleep_ms(0);
    return s;
}

/* The allocation returned, or the test failed: R releases what it holds,
 * and ends. */
static void holder_release(void)
{
    if (!holder_started)
        return;
    atomic_store(&holder.waiter_done, 1);
    pthread_join(holder_thread, NULL);
    holder_started = false;
}

/* The allocation gave up after 3 rounds without progress, then drained
 * the other threads' stocks and gave up after 3 more: 6 reclaims. It
 * must outlast that while the pass it waits for is in flight. */
#define ROUNDS_BEFORE_FAILING 6

TEST_WITH(an_allocation_waits_for_another_threads_pass_that_holds_objects, NULL, teardown)
{
    struct rcl_shrinker *s = holder_start();

    /* Released one round after a charge that did not wait would have
     * failed. The wait is bounded by 20 ms of the charging thread's clock
     * (IN_FLIGHT_WAIT_NS), stopped here and moved on a microsecond a read:
     * a loaded machine that kept the thread off a CPU for 20 ms ended the
     * wait before the release (1 of 60 runs beside a CI run), and 20 000
     * reads are hundreds of rounds, yet still an end. The bound itself is
     * the next test's, on the kernel's clock. */
    atomic_store(&holder.release_at, stats().direct_reclaims + ROUNDS_BEFORE_FAILING + 1);
    struct rcl_shrinker *rel = rcl_shrinker_register("releaser", &releaser_ops, &holder, NULL);
    assert_non_null(rel);
    scripted_clock_stop_here(CLOCK_MONOTONIC, 1000);
    int ret = rcl_charge(OBJ, RCL_DEFAULT | RCL__NOWARN);
    scripted_clock_stop();
    holder_release();
    assert_int_equal(ret, 0);
    assert_true(stats().direct_reclaims >= atomic_load(&holder.release_at));

    rcl_uncharge(OBJ);
    rcl_shrinker_unregister(rel);
    rcl_shrinker_unregister(s);
    rcl_shutdown();
}

TEST_WITH(the_wait_for_a_pass_in_flight_is_bounded, NULL, teardown)
{
    struct rcl_shrinker *s = holder_start();

    /* R never frees while the allocation waits: it fails, it does not hang. */
    unsigned long long t0 = rcl__now_ns();
    int ret = rcl_charge(OBJ, RCL_DEFAULT | RCL__NOWARN);
    unsigned long long waited = rcl__now_ns() - t0;
    holder_release();
    assert_int_equal(ret, -ENOMEM);
    assert_true(waited >= 20000000ull);    /* IN_FLIGHT_WAIT_NS */
    assert_true(stats().direct_reclaims > ROUNDS_BEFORE_FAILING);

    rcl_shrinker_unregister(s);
    rcl_shutdown();
}

/* The kernel's rule: a NOFS allocation never waits for file-system
 * reclaim, which may need the lock its caller holds. R's pass, in the
 * default context, may enter the file system. */
TEST_WITH(a_nofs_allocation_does_not_wait_for_a_pass_that_may_enter_the_fs, NULL, teardown)
{
    struct rcl_shrinker *s = holder_start();

    unsigned long before = stats().direct_reclaims;
    unsigned scope = rcl_nofs_save();
    int ret = rcl_charge(OBJ, RCL_DEFAULT | RCL__NOWARN);
    rcl_nofs_restore(scope);
    unsigned long rounds = stats().direct_reclaims - before;
    holder_release();
    assert_int_equal(ret, -ENOMEM);
    assert_int_equal(rounds, ROUNDS_BEFORE_FAILING);

    rcl_shrinker_unregister(s);
    rcl_shutdown();
}

/* A child forked while another thread's pass holds objects: that pass is
 * gone with its thread, so the child's allocation does not wait for it -
 * it gives up after the same rounds as with no pass in flight. */
TEST_WITH(a_forked_child_does_not_wait_for_a_pass_left_in_its_parent, NULL, teardown)
{
    if (test_under_sanitizer("asan")) {
        print_message("skipped: ASan's allocator hangs in a child forked during malloc\n");
        skip();
    }
    struct rcl_shrinker *s = holder_start();

    pid_t pid = fork();
    if (pid == 0) {
        unsigned long before = stats().direct_reclaims;
        int ret = rcl_charge(OBJ, RCL_DEFAULT | RCL__NOWARN);
        unsigned long rounds = stats().direct_reclaims - before;
        _exit(ret == -ENOMEM && rounds == ROUNDS_BEFORE_FAILING ? 0 : 1);
    }
    assert_true(pid > 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    holder_release();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    rcl_shrinker_unregister(s);
    rcl_shutdown();
}

/* A failed test leaves the library initialised, and R perhaps held in
 * its pass; the next one starts clean all the same. */
static int teardown(void **state)
{
    /* A test that failed with its clock scripted leaves it so. */
    scripted_clock_stop();
    holder_release();
    int clean = test_teardown(state);
    unsetenv("RECLAIM_DIRECT_US");
    return clean;
}

TEST_MAIN();
