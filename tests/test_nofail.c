/* SPDX-License-Identifier: MIT */
/*
 * test_nofail.c - the NOFAIL retry policy.
 *
 * Kernel rule (__GFP_NOFAIL, mm/page_alloc.c): the allocator retries until
 * it succeeds, and warn_alloc() reports a stall ("page allocation stalls
 * for %ums") every 10 s while it does. libreclaim adds the point of the
 * "remove PF_MEMALLOC_NORECLAIM" thread (linux-mm, September 2024): a
 * request that can never succeed fails at once, loudly, instead of hanging.
 */
#include "helpers.h"
#include "scripted_clock.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#define LIMIT (8 * MiB)

/*
 * The allocating thread's clock, for the test of how often a stall is
 * reported: while scripted, every read of CLOCK_MONOTONIC on that thread
 * moves it on by a millisecond, however fast the machine runs, and the
 * stall reports note the time it reads. Every retry reads it, so retries
 * are never fewer than the milliseconds it counts, and a report at every
 * retry shows as reports too close together. Other threads and clocks
 * read the kernel's (scripted_clock.h).
 */
#define SCRIPT_STEP_NS 1000000ull
enum { STALLS_NOTED = 8 };
static unsigned long long stall_at_ns[STALLS_NOTED];
static unsigned stalls_noted;

static void script_the_clock(void)
{
    stalls_noted = 0;
    scripted_clock_stop_here(CLOCK_MONOTONIC, SCRIPT_STEP_NS);
}

/* Reports are caught as usual and also announced, so a test can wait for
 * "the allocation has been reported as stalled" instead of sleeping. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t seen_cond = PTHREAD_COND_INITIALIZER;
static unsigned stalls_seen;

static void catch_and_announce(const char *report, void *arg)
{
    test_report_catch(report, arg);
    if (strstr(report, "stall") && scripted_clock_on_this_thread() &&
        stalls_noted < STALLS_NOTED)
        stall_at_ns[stalls_noted++] = scripted_clock_now_ns();
    pthread_mutex_lock(&seen_lock);
    if (strstr(report, "stall"))
        stalls_seen++;
    pthread_cond_broadcast(&seen_cond);
    pthread_mutex_unlock(&seen_lock);
}

static int nofail_init(unsigned stall_ms)
{
    struct rcl_config cfg = test_config(LIMIT);
    cfg.stall_ms = stall_ms;
    test_reports_reset();
    pthread_mutex_lock(&seen_lock);
    stalls_seen = 0;
    pthread_mutex_unlock(&seen_lock);
    rcl_set_report_fn(catch_and_announce, NULL);
    return rcl_init(&cfg);
}

static int nofail_setup(void **state)
{
    (void)state;
    return nofail_init(0);              /* the default: 10 s */
}

static int nofail_setup_fast_stall(void **state)
{
    (void)state;
    return nofail_init(20);
}


/* All of the budget that ordinary allocations may use, in one block. */
static void *fill_budget(void)
{
    rcl_usage_sync();
    struct rcl_stats st;
    rcl_stats_get(&st);
    void *p = rcl_alloc(test_fitting(st.limit - rcl_usage() - st.wmark_min), RCL_NOWAIT);
    assert_non_null(p);
    rcl_usage_sync();
    return p;
}

/*
 * The thread that frees the block a NOFAIL call waits for. Its state is
 * the file's, not the test's frame: a failed assertion leaves that frame
 * while the freer may still run, and the teardown stops it (freer_stop()).
 */
static struct freer {
    pthread_t   thread;
    bool        started;
    void       *block;
    unsigned    after_stalls;      /* free after this many stall reports, */
    atomic_int  waiter;            /* or once this thread sleeps in its call */
    atomic_bool freed, gave_up, stop;
} freer;

/* The allocating thread, about to make the call the freer is to end: the
 * call waits for memory in bounded sleeps, nanosleep() (glibc makes it as
 * clock_nanosleep), which nothing else in the call sleeps in. */
static void freer_waits_for_me(void)
{
    atomic_store(&freer.waiter, (int)gettid());
}

static bool freer_may_free(void)
{
    if (freer.after_stalls) {
        pthread_mutex_lock(&seen_lock);
        bool seen = stalls_seen >= freer.after_stalls;
        pthread_mutex_unlock(&seen_lock);
        return seen;
    }
    pid_t tid = atomic_load(&freer.waiter);
    return tid && test_thread_in_syscall(tid, SYS_clock_nanosleep);
}

/* It polls, so that a stop ends it whatever it waits for. The bound only
 * catches a hang, a call that waits elsewhere or never reports its stall,
 * and for good: the block freed then ends it, and the test fails on
 * gave_up. */
static void *freer_main(void *arg)
{
    (void)arg;
    for (long ms = 0; !freer_may_free(); ms++) {
        if (atomic_load(&freer.stop))
            return NULL;
        if (ms == 60000) {
            atomic_store(&freer.gave_up, true);
            break;
        }
        test_sleep_ms(1);
    }
    atomic_store(&freer.freed, true);
    rcl_free(freer.block);
    return NULL;
}

static void freer_start(void *block, unsigned after_stalls)
{
    freer.block = block;
    freer.after_stalls = after_stalls;
    atomic_store(&freer.waiter, 0);
    atomic_store(&freer.freed, false);
    atomic_store(&freer.gave_up, false);
    atomic_store(&freer.stop, false);
    assert_int_equal(pthread_create(&freer.thread, NULL, freer_main, NULL), 0);
    freer.started = true;
}

/* Whether the freer has freed the block on its cue (not at its bound). */
static bool freer_freed(void)
{
    return atomic_load(&freer.freed) && !atomic_load(&freer.gave_up);
}

/* The call the freer was to end has returned, or the test failed: the
 * freer stops looking and is joined; a block it did not free is freed
 * here. */
static void freer_stop(void)
{
    if (!freer.started)
        return;
    atomic_store(&freer.stop, true);
    pthread_join(freer.thread, NULL);
    freer.started = false;
    if (!atomic_load(&freer.freed))
        rcl_free(freer.block);
}

static int nofail_teardown(void **state)
{
    freer_stop();
    return test_teardown(state);
}

/* A NOFAIL request that can succeed blocks until it does: here, until
 * another thread frees memory after a delay. Never NULL. */
TEST_WITH(test_nofail_waits_until_another_thread_frees, nofail_setup, nofail_teardown)
{
    test_skip_unless_syscalls_read();
    void *block = fill_budget();
    assert_null(rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NOWARN));
    freer_start(block, 0);
    freer_waits_for_me();
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NOFAIL);
    bool freed_first = freer_freed();
    freer_stop();
    assert_non_null(p);
    assert_true(freed_first);                       /* it could not have before */
    rcl_free(p);
}

/* Kernel rule (__alloc_pages_slowpath(): NORETRY gives up only where the
 * request may fail): NOFAIL with NORETRY still waits, where NORETRY alone
 * gives up after its one round of reclaim. */
TEST_WITH(test_nofail_with_noretry_still_never_fails, nofail_setup, nofail_teardown)
{
    test_skip_unless_syscalls_read();
    void *block = fill_budget();
    assert_null(rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NORETRY | RCL__NOWARN));
    freer_start(block, 0);
    freer_waits_for_me();
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NOFAIL | RCL__NORETRY);
    bool freed_first = freer_freed();
    freer_stop();
    assert_non_null(p);
    assert_true(freed_first);
    rcl_free(p);
}

/* Kernel rule (warn_alloc "allocation stalls"): a stalled NOFAIL request is
 * reported after stall_ms and again every stall_ms, with its size, flags
 * and how long it has waited — never a silent hang. */
TEST_WITH(test_nofail_stall_is_reported_with_size_flags_and_time, nofail_setup_fast_stall,
          nofail_teardown)
{
    freer_start(fill_budget(), 2);
    void *p = rcl_alloc(65536, RCL_NOFS | RCL__NOFAIL);
    bool freed_first = freer_freed();
    freer_stop();
    assert_non_null(p);
    assert_true(freed_first);

    char charge[64];    /* the report gives the bytes charged, header included */
    snprintf(charge, sizeof(charge), "%zu bytes", rcl_alloc_charge(65536));
    pthread_mutex_lock(&test_reports.lock);
    const char *all = test_reports_all();
    assert_non_null(strstr(all, "stall"));
    assert_non_null(strstr(all, charge));
    assert_non_null(strstr(all, "NOFAIL"));
    assert_non_null(strstr(all, " ms"));
    pthread_mutex_unlock(&test_reports.lock);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_true(st.nofail_stalls >= 2);
    rcl_free(p);
}

/* The stall report repeats every stall_ms, not at every retry in between:
 * three reports of a 20 ms stall_ms, each 20 ms of the library's clock
 * after the one before, the retries that read it in between counted on
 * the scripted clock rather than on the machine's speed. */
TEST_WITH(test_nofail_stall_is_reported_again_only_after_stall_ms, nofail_setup_fast_stall,
          nofail_teardown)
{
    freer_start(fill_budget(), 3);
    script_the_clock();
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NOFAIL);
    scripted_clock_stop();
    bool freed_first = freer_freed();
    freer_stop();
    assert_non_null(p);
    assert_true(freed_first);
    assert_true(stalls_noted >= 3);
    for (unsigned i = 1; i < stalls_noted; i++)
        assert_true(stall_at_ns[i] - stall_at_ns[i - 1] >= 20 * 1000000ull);
    rcl_free(p);
}

/* A report function runs inside the call that made the report, and that
 * call goes on once it returns: a shutdown there is refused. A NOFAIL
 * allocation went on to take a block from the library shut down under it,
 * one rcl_free() did not take back. This function shuts down at every
 * report, the refusal's own included, which must not recurse. */
static void *stalled_on;
static atomic_int shutdown_tries;

static void shut_down_at_every_report(const char *report, void *arg)
{
    catch_and_announce(report, arg);
    rcl_shutdown();
    if (strstr(report, "stall") && atomic_fetch_add(&shutdown_tries, 1) == 0)
        rcl_free(stalled_on);               /* room for the allocation */
}

TEST_WITH(test_shutdown_from_the_report_function_is_refused, nofail_setup_fast_stall,
          test_teardown)
{
    atomic_store(&shutdown_tries, 0);
    stalled_on = fill_budget();
    rcl_set_report_fn(shut_down_at_every_report, NULL);
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NOFAIL);
    rcl_set_report_fn(catch_and_announce, NULL);
    assert_non_null(p);
    assert_true(test_reports_seen_matching("rcl_shutdown() from the report function: "
                                           "refused") >= 1);
    assert_true(rcl_usage() > 0);                   /* still accounted */
    rcl_free(p);
    test_reports_reset();
}

/* A shrinker that frees nothing for its first calls, then gives its
 * objects back: an ordinary allocation gives up; NOFAIL keeps reclaiming
 * until it succeeds. */
struct stubborn {
    atomic_int calls;
    int        refuse;             /* calls that free nothing */
    void      *obj[16];
    int        nobj;
};
static struct stubborn sb;
static struct rcl_shrinker *sb_shrinker;

static unsigned long sb_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return sb.nobj ? (unsigned long)sb.nobj : RCL_SHRINK_EMPTY;
}

static unsigned long sb_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    if (atomic_fetch_add(&sb.calls, 1) < sb.refuse)
        return 0;
    unsigned long freed = 0;
    while (sb.nobj && freed < sc->nr_to_scan) {
        rcl_free(sb.obj[--sb.nobj]);
        freed++;
    }
    return freed;
}

/* A failed test's shrinker and objects go here, before the checks, not
 * with the shutdown's drop of every shrinker; on the test's own path they
 * are gone already. */
static int sb_teardown(void **state)
{
    if (sb_shrinker)
        rcl_shrinker_unregister(sb_shrinker);
    sb_shrinker = NULL;
    while (sb.nobj)
        rcl_free(sb.obj[--sb.nobj]);
    return test_teardown(state);
}

TEST_WITH(test_nofail_keeps_reclaiming_until_it_succeeds, nofail_setup, sb_teardown)
{
    static const struct rcl_shrinker_ops ops = { sb_count, sb_scan };
    struct rcl_shrinker_opts opts = { .batch = 1 };
    memset(&sb, 0, sizeof(sb));
    /* The budget, in 16 reclaimable objects. */
    rcl_usage_sync();
    struct rcl_stats st;
    rcl_stats_get(&st);
    size_t each = test_fitting((st.limit - rcl_usage() - st.wmark_min) / 16);
    for (sb.nobj = 0; sb.nobj < 16; sb.nobj++)
        assert_non_null(sb.obj[sb.nobj] = rcl_alloc(each, RCL_NOWAIT));
    sb_shrinker = rcl_shrinker_register("stubborn", &ops, NULL, &opts);
    assert_non_null(sb_shrinker);

    sb.refuse = 1 << 30;
    assert_null(rcl_alloc(each, RCL_DEFAULT | RCL__NOWARN));  /* gives up */
    int after_plain = atomic_load(&sb.calls);
    assert_true(after_plain > 0);

    sb.refuse = after_plain + 200;      /* 200 more fruitless calls, then frees */
    void *p = rcl_alloc(each, RCL_DEFAULT | RCL__NOFAIL);
    assert_non_null(p);
    assert_true(atomic_load(&sb.calls) > sb.refuse);

    rcl_free(p);
    rcl_shrinker_unregister(sb_shrinker);
    sb_shrinker = NULL;
    while (sb.nobj)
        rcl_free(sb.obj[--sb.nobj]);
}

/* The "remove PF_MEMALLOC_NORECLAIM" thread (linux-mm, September 2024):
 * requests that can never succeed fail at once, with a clear errno and a
 * report (unless NOWARN), NOFAIL or not. */
TEST_WITH(test_impossible_nofail_requests_fail_at_once, nofail_setup, test_teardown)
{
    assert_fails_with(rcl_alloc(2 * LIMIT, RCL_DEFAULT | RCL__NOFAIL), E2BIG);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("never succeed");

    assert_fails_with(rcl_alloc(2 * LIMIT, RCL_DEFAULT | RCL__NOFAIL | RCL__NOWARN), E2BIG);
    assert_int_equal(test_report_count(), 1);

    assert_fails_with(rcl_calloc(SIZE_MAX / 2, 4, RCL_DEFAULT | RCL__NOFAIL), EOVERFLOW);
    assert_fails_with(rcl_alloc(SIZE_MAX, RCL_DEFAULT | RCL__NOFAIL), EOVERFLOW);
    assert_int_equal(test_reports_take(), 3);

    /* Too large for the most this context may ever get is still E2BIG, at
     * once, in a scope that removes direct reclaim too. */
    unsigned saved = rcl_nowait_save();
    errno = 0;
    void *p = rcl_alloc(LIMIT, RCL_DEFAULT | RCL__NOFAIL | RCL__NOWARN);
    rcl_nowait_restore(saved);
    assert_null(p);
    assert_int_equal(errno, E2BIG);

    /* NOFAIL must be able to wait: asked without direct reclaim in its own
     * flags, it contradicts itself, and the contradiction is visible at the
     * call. (A scope that removes direct reclaim never fails it:
     * test_nofail_scope.c.) */
    assert_fails_with(rcl_alloc(64, RCL_NOWAIT | RCL__NOFAIL), EINVAL);
    saved = rcl_nowait_save();
    errno = 0;
    assert_null(rcl_alloc(64, RCL_NOWAIT | RCL__NOFAIL));
    rcl_nowait_restore(saved);
    assert_int_equal(errno, EINVAL);
}

/* The contradiction is refused whatever the thread holds: a block of the
 * size cached, a stock that covers the charge. Served from them, it
 * passed unseen until a cold cache or an empty stock sent the same call
 * to the slow path. */
TEST_WITH(test_nofail_that_may_not_wait_is_einval_with_a_warm_cache_and_stock, nofail_setup,
          test_teardown)
{
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    assert_int_equal(rcl_charge(64, RCL_DEFAULT), 0);
    rcl_uncharge(64);

    /* Not RCL_NOWAIT, whose NOWARN would keep the report back. */
    const rcl_gfp_t nowait = RCL__KSWAPD_RECLAIM | RCL__NOFAIL;
    assert_fails_with(rcl_alloc(64, nowait), EINVAL);
    assert_fails_with(rcl_calloc(1, 64, RCL_ATOMIC | RCL__NOFAIL), EINVAL);
    assert_int_equal(rcl_charge(64, nowait), -EINVAL);
    assert_int_equal(test_report_count(), 3);
    assert_last_report_has("NOFAIL needs DIRECT_RECLAIM");
}

/* Charging nothing checks its flags as every call does: NOFAIL that may
 * not wait is refused, and reported, at 0 bytes too. (It returned 0,
 * unseen, until a charge of some size made the same call fail.) */
TEST_WITH(test_nofail_that_may_not_wait_is_einval_from_a_charge_of_0_bytes, nofail_setup,
          test_teardown)
{
    const rcl_gfp_t nowait = RCL__KSWAPD_RECLAIM | RCL__NOFAIL;
    struct rcl_stats before, after;

    rcl_stats_get(&before);
    assert_int_equal(rcl_charge(0, nowait), -EINVAL);
    assert_last_report_has("NOFAIL allocation of 0 bytes (KSWAPD_RECLAIM|NOFAIL) can never "
                           "succeed: NOFAIL needs DIRECT_RECLAIM");
    assert_int_equal(test_reports_take(), 1);
    assert_int_equal(rcl_charge(0, nowait | RCL__NOWARN), -EINVAL);
    assert_int_equal(test_report_count(), 0);
    rcl_stats_get(&after);
    assert_int_equal(after.failures - before.failures, 2);

    /* NOFAIL that may wait has nothing to wait for. */
    assert_int_equal(rcl_charge(0, RCL_DEFAULT | RCL__NOFAIL), 0);
    assert_int_equal(rcl_usage(), 0);
}

/* A reclaim asked for with NOFAIL that may not wait is refused, as every
 * call that takes flags refuses the contradiction: reported unless
 * NOWARN, errno EINVAL, nothing reclaimed, at 0 bytes too. It was taken
 * as a reclaim without direct reclaim, unseen. */
TEST_WITH(test_nofail_that_may_not_wait_is_einval_from_a_reclaim, nofail_setup, test_teardown)
{
    const rcl_gfp_t nowait = RCL__KSWAPD_RECLAIM | RCL__NOFAIL;

    errno = 0;
    assert_int_equal(rcl_reclaim(4096, nowait), 0);
    assert_int_equal(errno, EINVAL);
    assert_last_report_has("rcl_reclaim(4096, KSWAPD_RECLAIM|NOFAIL): NOFAIL needs "
                           "DIRECT_RECLAIM");
    assert_int_equal(test_reports_take(), 1);
    errno = 0;
    assert_int_equal(rcl_reclaim(0, nowait), 0);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_reports_take(), 1);
    errno = 0;
    assert_int_equal(rcl_reclaim(4096, nowait | RCL__NOWARN), 0);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 0);
}

/* rcl_might_alloc() says the path may allocate with these flags: with
 * NOFAIL that may not wait, every such allocation is refused, and the
 * annotation reports it where the allocation has not happened yet. */
TEST_WITH(test_nofail_that_may_not_wait_is_reported_by_might_alloc, nofail_setup,
          test_teardown)
{
    const rcl_gfp_t nowait = RCL__KSWAPD_RECLAIM | RCL__NOFAIL;

    rcl_might_alloc(nowait);
    assert_last_report_has("rcl_might_alloc(KSWAPD_RECLAIM|NOFAIL): NOFAIL needs "
                           "DIRECT_RECLAIM");
    assert_int_equal(test_reports_take(), 1);
    rcl_might_alloc(nowait | RCL__NOWARN);
    rcl_might_alloc(RCL_DEFAULT | RCL__NOFAIL);
    assert_int_equal(test_report_count(), 0);
}

/* realloc() of p to size with flags that contradict themselves: refused
 * as rcl_alloc() refuses them, reported, and p left as it was. */
static void realloc_refused(char *p, size_t size, rcl_gfp_t gfp, size_t had)
{
    size_t before = rcl_usage();

    memset(p, 0x5a, had);
    assert_fails_with(rcl_realloc(p, size, gfp), EINVAL);
    assert_int_equal(test_reports_take(), 1);
    assert_int_equal(rcl_usage(), before);
    for (size_t i = 0; i < had; i++)
        assert_int_equal((unsigned char)p[i], 0x5a);
}

/* NOFAIL that may not wait gets EINVAL and a report from rcl_realloc()
 * whichever way the call would go: a grow that charges more, a grow
 * within the block's class and a shrink in place, which charge nothing
 * (the shrink passed unrefused, and unreported), a move, and a NULL
 * pointer. The block stays, as after any failed realloc. */
TEST_WITH(test_nofail_that_may_not_wait_is_einval_from_realloc_on_every_path, nofail_setup,
          test_teardown)
{
    const rcl_gfp_t nowait = RCL__KSWAPD_RECLAIM | RCL__NOFAIL;
    char *small = rcl_alloc(60, RCL_DEFAULT);
    char *large = rcl_alloc(100000, RCL_DEFAULT);
    char *aligned = rcl_aligned_alloc(256, 100, RCL_DEFAULT);
    assert_non_null(small);
    assert_non_null(large);
    assert_non_null(aligned);

    realloc_refused(small, 20000, nowait, 60);          /* grows, charging more */
    realloc_refused(small, 64, nowait, 60);             /* grows within its class */
    realloc_refused(small, 50, nowait, 60);             /* shrinks in place */
    realloc_refused(large, 99000, nowait, 100000);      /* shrinks in place */
    realloc_refused(large, 99000, RCL_ATOMIC | RCL__NOFAIL, 100000);
    realloc_refused(aligned, 50, nowait, 100);          /* moves */
    assert_fails_with(rcl_realloc(NULL, 64, nowait), EINVAL);
    assert_last_report_has("NOFAIL needs DIRECT_RECLAIM");
    assert_int_equal(test_reports_take(), 1);

    /* NOWARN keeps the refusal quiet, as everywhere. */
    assert_fails_with(rcl_realloc(small, 50, nowait | RCL__NOWARN), EINVAL);
    assert_int_equal(test_report_count(), 0);
    rcl_free(small);
    rcl_free(large);
    rcl_free(aligned);
}

/* A NOFAIL request no block can ever meet - size 0, an alignment that is
 * not a power of two, a size that overflows - fails at once as one larger
 * than the budget does, and is reported as that one is: its caller does
 * not look for NULL. NOWARN keeps it quiet. */
TEST_WITH(test_nofail_requests_no_block_can_meet_are_reported, nofail_setup, test_teardown)
{
    const rcl_gfp_t nofail = RCL_DEFAULT | RCL__NOFAIL;
    char *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);

    assert_fails_with(rcl_alloc(0, nofail), EINVAL);
    assert_last_report_has("NOFAIL allocation (DEFAULT|NOFAIL) can never succeed: size 0");
    assert_fails_with(rcl_alloc(SIZE_MAX - 8, nofail), EOVERFLOW);
    assert_last_report_has("overflow");
    assert_fails_with(rcl_calloc(SIZE_MAX / 2, 4, nofail), EOVERFLOW);
    assert_last_report_has("x 4 bytes overflows");
    assert_fails_with(rcl_aligned_alloc(48, 64, nofail), EINVAL);
    assert_last_report_has("alignment 48 is not a power of two");
    assert_fails_with(rcl_aligned_alloc(64, SIZE_MAX - 64, nofail), EOVERFLOW);
    assert_last_report_has("aligned to 64 overflow");
    assert_fails_with(rcl_valloc(SIZE_MAX - 10, nofail), EOVERFLOW);
    assert_last_report_has("in whole pages overflow");
    assert_fails_with(rcl_realloc(p, 0, nofail), EINVAL);
    assert_fails_with(rcl_realloc(p, SIZE_MAX, nofail), EOVERFLOW);
    assert_int_equal(test_reports_take(), 8);

    assert_fails_with(rcl_alloc(0, nofail | RCL__NOWARN), EINVAL);
    assert_fails_with(rcl_calloc(SIZE_MAX / 2, 4, nofail | RCL__NOWARN), EOVERFLOW);
    assert_fails_with(rcl_realloc(p, SIZE_MAX, nofail | RCL__NOWARN), EOVERFLOW);
    assert_int_equal(test_report_count(), 0);
    rcl_free(p);
}

/* The stall interval defaults to 10 s; RECLAIM_STALL_MS sets it for a
 * program that reads the environment. */
TEST_WITH(test_stall_interval_is_configurable, nofail_setup, test_teardown)
{
    struct rcl_config cfg;
    unsetenv("RECLAIM_STALL_MS");
    rcl_config_default(&cfg);
    assert_int_equal(cfg.stall_ms, 10000);
    setenv("RECLAIM_STALL_MS", "1234", 1);
    rcl_config_default(&cfg);
    assert_int_equal(cfg.stall_ms, 10000);   /* the defaults alone ignore it */
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    unsetenv("RECLAIM_STALL_MS");
    assert_int_equal(cfg.stall_ms, 1234);
}

/* A configuration's stall_ms of 0 is the default, 10 s: a NOFAIL request
 * that waits a fraction of that is not reported as stalled. */
TEST_WITH(test_stall_ms_of_0_reports_no_short_wait, nofail_setup, nofail_teardown)
{
    test_skip_unless_syscalls_read();
    freer_start(fill_budget(), 0);
    freer_waits_for_me();
    void *p = rcl_alloc(64 * KiB, RCL_DEFAULT | RCL__NOFAIL);
    bool freed_first = freer_freed();
    freer_stop();
    assert_non_null(p);
    assert_true(freed_first);
    rcl_free(p);
    pthread_mutex_lock(&seen_lock);
    unsigned seen = stalls_seen;
    pthread_mutex_unlock(&seen_lock);
    assert_int_equal(seen, 0);
    assert_int_equal(test_report_count(), 0);
}

/* The contending threads. Their state is the file's, not the test's
 * frame: a failed assertion (a thread that could not start) leaves that
 * frame while the ones started run on, and the teardown joins them. */
enum { CONTENDERS = 8 };
static struct contenders {
    pthread_t  thread[CONTENDERS];
    int        started, iterations;
    atomic_int nulls;
    void      *fill;               /* the test's block, freed by whoever ends first */
} contenders;

static void *contender_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < contenders.iterations; i++) {
        char *p = rcl_alloc(512 * KiB, RCL_DEFAULT | RCL__NOFAIL);
        if (!p) {
            atomic_fetch_add(&contenders.nulls, 1);
            continue;
        }
        p[0] = p[512 * KiB - 1] = 1;
        sched_yield();
        rcl_free(p);
    }
    return NULL;
}

static void contenders_join(void)
{
    while (contenders.started > 0)
        pthread_join(contenders.thread[--contenders.started], NULL);
}

/* The block freed first: room for any contender the test left waiting. */
static int contenders_teardown(void **state)
{
    rcl_free(contenders.fill);
    contenders.fill = NULL;
    contenders_join();
    return test_teardown(state);
}

/* Eight threads whose NOFAIL requests together need twice the budget: they
 * take turns, and none ever gets NULL. */
TEST_WITH(test_contending_nofail_requests_all_succeed, nofail_setup, contenders_teardown)
{
    /* 8 x 512 KiB live at once at most = 4 MiB, in a budget that allows
     * about 2 MiB after this block. */
    rcl_usage_sync();
    struct rcl_stats st;
    rcl_stats_get(&st);
    contenders.fill = rcl_alloc(st.limit - st.wmark_min - 2 * MiB, RCL_NOWAIT);
    assert_non_null(contenders.fill);
    contenders.iterations = test_scale(200);
    atomic_store(&contenders.nulls, 0);
    for (int i = 0; i < CONTENDERS; i++) {
        int err = pthread_create(&contenders.thread[i], NULL, contender_main, NULL);
        if (!err)
            contenders.started++;
        assert_int_equal(err, 0);
    }
    contenders_join();
    assert_int_equal(atomic_load(&contenders.nulls), 0);
    rcl_free(contenders.fill);
    contenders.fill = NULL;
}

/* A limit raised or lowered while a NOFAIL charge starts never makes it
 * fail: 256 KiB fits every limit here, so no interleaving of the new
 * limit with the old watermarks (a reserve of 2 % of 1 GiB against a
 * limit of 8 MiB) may be taken for a request that can never succeed. */
static atomic_bool moving;
static atomic_long moves_refused;       /* asserted by the test's thread, not here */

static void *move_the_limit(void *arg)
{
    (void)arg;
    while (atomic_load(&moving)) {
        if (rcl_set_limit(LIMIT) != 0)
            atomic_fetch_add(&moves_refused, 1);
        if (rcl_set_limit(128 * LIMIT) != 0)
            atomic_fetch_add(&moves_refused, 1);
    }
    return NULL;
}

TEST_WITH(test_nofail_charge_never_fails_while_the_limit_moves, nofail_setup, test_teardown)
{
    pthread_t th;
    long failed = 0;

    atomic_store(&moving, true);
    atomic_store(&moves_refused, 0);
    assert_int_equal(pthread_create(&th, NULL, move_the_limit, NULL), 0);
    for (int i = 0; i < test_scale(200000); i++) {
        int err = rcl_charge(256 * KiB, RCL_DEFAULT | RCL__NOFAIL);
        if (err)
            failed++;
        else
            rcl_uncharge(256 * KiB);
    }
    atomic_store(&moving, false);
    pthread_join(th, NULL);
    assert_int_equal(failed, 0);
    assert_int_equal(atomic_load(&moves_refused), 0);
    assert_int_equal(rcl_set_limit(LIMIT), 0);
}

/*
 * The bound on a NOFAIL call that waits for room, not an alarm, which
 * would end the whole program and every later test with it: a thread
 * waits for the call to return, and at the bound, which only catches a
 * hang, makes the room the call waits for (the test's unhang()) and says
 * so. The call then returns, and only its test fails.
 */
#define HANG_BOUND_S 30
static struct hang_watch {
    pthread_t   thread;
    bool        started, returned;  /* returned: under seen_lock */
    void      (*unhang)(void);
    atomic_bool hung;
} hang_watch;

static void *hang_watch_main(void *arg)
{
    struct timespec bound;
    int err = 0;

    (void)arg;
    clock_gettime(CLOCK_REALTIME, &bound);
    bound.tv_sec += HANG_BOUND_S;
    pthread_mutex_lock(&seen_lock);
    while (!hang_watch.returned && err != ETIMEDOUT)
        err = pthread_cond_timedwait(&seen_cond, &seen_lock, &bound);
    bool hung = !hang_watch.returned;
    pthread_mutex_unlock(&seen_lock);
    if (hung) {
        atomic_store(&hang_watch.hung, true);
        hang_watch.unhang();
    }
    return NULL;
}

static void hang_watch_start(void (*unhang)(void))
{
    hang_watch.returned = false;
    hang_watch.unhang = unhang;
    atomic_store(&hang_watch.hung, false);
    assert_int_equal(pthread_create(&hang_watch.thread, NULL, hang_watch_main, NULL), 0);
    hang_watch.started = true;
}

/* The call returned (or the test failed): joined. Whether the bound had
 * to end the call. */
static bool hang_watch_stop(void)
{
    if (!hang_watch.started)
        return false;
    pthread_mutex_lock(&seen_lock);
    hang_watch.returned = true;
    pthread_cond_broadcast(&seen_cond);
    pthread_mutex_unlock(&seen_lock);
    pthread_join(hang_watch.thread, NULL);
    hang_watch.started = false;
    return atomic_load(&hang_watch.hung);
}

/* Lowers the limit to 2 MiB once a NOFAIL request has been reported as
 * stalled: waiting for room, past the test it made at its start. Its
 * state is the file's, as the freer's, and the teardown stops it. */
static struct lowerer {
    pthread_t thread;
    bool      started, stop;       /* stop: under seen_lock */
    int       err;                 /* rcl_set_limit()'s, or 1 if never lowered */
    void     *_Atomic fill;        /* the budget, freed by the test or the bound */
} lowerer;

static void *lower_after_a_stall(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&seen_lock);
    while (!stalls_seen && !lowerer.stop)
        pthread_cond_wait(&seen_cond, &seen_lock);
    bool stalled = stalls_seen > 0;
    pthread_mutex_unlock(&seen_lock);
    if (stalled)
        lowerer.err = rcl_set_limit(2 * MiB);
    return NULL;
}

static void lowerer_start(void)
{
    lowerer.stop = false;
    lowerer.err = 1;
    assert_int_equal(pthread_create(&lowerer.thread, NULL, lower_after_a_stall, NULL), 0);
    lowerer.started = true;
}

/* Joined; the limit lowered or not. rcl_set_limit()'s answer, 1 if it
 * never lowered it. */
static int lowerer_stop(void)
{
    if (!lowerer.started)
        return 1;
    pthread_mutex_lock(&seen_lock);
    lowerer.stop = true;
    pthread_cond_broadcast(&seen_cond);
    pthread_mutex_unlock(&seen_lock);
    pthread_join(lowerer.thread, NULL);
    lowerer.started = false;
    return lowerer.err;
}

static void lowerer_free_fill(void)
{
    rcl_free(atomic_exchange(&lowerer.fill, NULL));
}

/* A charge that waits on a lowered limit for good: the limit back and the
 * budget freed, it fits. */
static void lowerer_unhang(void)
{
    (void)rcl_set_limit(LIMIT);
    lowerer_free_fill();
}

static int lowerer_teardown(void **state)
{
    (void)hang_watch_stop();
    (void)lowerer_stop();
    lowerer_free_fill();
    return test_teardown(state);
}

/* A NOFAIL charge that waits for room, its limit then lowered below all
 * it may ever get, is a request that can never succeed: it fails as it
 * would have at its start, with E2BIG, the same report and one failure
 * counted. It waited for good, reporting stalls, until the limit rose. */
TEST_WITH(test_waiting_nofail_charge_fails_with_e2big_once_a_lowered_limit_leaves_it_no_room,
          nofail_setup_fast_stall, lowerer_teardown)
{
    const rcl_gfp_t nofail = RCL_DEFAULT | RCL__NOFAIL;
    struct rcl_stats before, after;
    char waited[256];

    atomic_store(&lowerer.fill, fill_budget());
    lowerer_start();
    hang_watch_start(lowerer_unhang);
    rcl_stats_get(&before);
    int err = rcl_charge(4 * MiB, nofail);
    bool hung = hang_watch_stop();
    int lowering = lowerer_stop();
    if (err == 0)
        rcl_uncharge(4 * MiB);      /* only where the bound ended a hang */
    assert_false(hung);
    assert_int_equal(err, -E2BIG);
    assert_int_equal(lowering, 0);
    rcl_stats_get(&after);
    assert_int_equal(after.failures - before.failures, 1);
    assert_true(after.nofail_stalls > before.nofail_stalls);     /* it waited */
    assert_int_equal(test_reports_unread(), 1);                 /* the stalls aside */
    assert_last_report_has("NOFAIL allocation of 4194304 bytes (DEFAULT|NOFAIL) can never "
                           "succeed: larger than the budget this context may use");
    snprintf(waited, sizeof(waited), "%s", test_report_last());
    test_reports_reset();

    /* The same request made now, under the lowered limit. */
    assert_int_equal(rcl_charge(4 * MiB, nofail), -E2BIG);
    assert_string_equal(test_report_last(), waited);
    assert_int_equal(test_reports_take(), 1);
    rcl_stats_get(&before);
    assert_int_equal(before.failures - after.failures, 1);

    lowerer_free_fill();
    assert_int_equal(rcl_set_limit(LIMIT), 0);
}

/* A shrinker the waiting charge's own reclaim calls: the first call
 * lowers the limit below all the charge may ever get and raises it back,
 * between two of the charge's tries; a later one frees the budget. */
static void *_Atomic dip_fill;         /* freed by the shrinker, the bound or the teardown */
static atomic_int dip_calls;
static int dip_err;                     /* the limit's moves; asserted by the test */
static struct rcl_shrinker *dip_shrinker;

static unsigned long dip_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return atomic_load(&dip_fill) ? 1 : RCL_SHRINK_EMPTY;
}

static unsigned long dip_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    if (atomic_fetch_add(&dip_calls, 1) == 0) {
        dip_err = rcl_set_limit(2 * MiB);
        if (!dip_err)
            dip_err = rcl_set_limit(LIMIT);
        return 0;
    }
    void *fill = atomic_exchange(&dip_fill, NULL);
    rcl_free(fill);
    return fill ? 1 : 0;
}

/* A charge that waits for good (the shrinker never called again): the
 * budget freed, it fits. */
static void dip_unhang(void)
{
    (void)rcl_set_limit(LIMIT);
    rcl_free(atomic_exchange(&dip_fill, NULL));
}

/* As sb_teardown(): a failed test's shrinker and block go here; on the
 * test's own path they are gone already. */
static int dip_teardown(void **state)
{
    (void)hang_watch_stop();
    if (dip_shrinker)
        rcl_shrinker_unregister(dip_shrinker);
    dip_shrinker = NULL;
    rcl_free(atomic_exchange(&dip_fill, NULL));
    return test_teardown(state);
}

/* Only a try decides: a limit that dips below what a waiting NOFAIL
 * charge may ever get and comes back before its next try leaves it
 * waiting, and it succeeds once there is room. */
TEST_WITH(test_waiting_nofail_charge_outlives_a_limit_that_dips_between_its_tries, nofail_setup,
          dip_teardown)
{
    static const struct rcl_shrinker_ops ops = { dip_count, dip_scan };
    struct rcl_shrinker_opts opts = { .batch = 1 };
    struct rcl_stats before, after;

    atomic_store(&dip_calls, 0);
    dip_err = 0;
    atomic_store(&dip_fill, fill_budget());
    dip_shrinker = rcl_shrinker_register("dips-the-limit", &ops, NULL, &opts);
    assert_non_null(dip_shrinker);
    rcl_stats_get(&before);
    hang_watch_start(dip_unhang);
    int err = rcl_charge(4 * MiB, RCL_DEFAULT | RCL__NOFAIL);
    bool hung = hang_watch_stop();
    if (err == 0)
        rcl_uncharge(4 * MiB);
    assert_false(hung);
    assert_int_equal(err, 0);
    rcl_stats_get(&after);
    assert_true(atomic_load(&dip_calls) >= 2);
    assert_int_equal(dip_err, 0);
    assert_null(atomic_load(&dip_fill));
    assert_int_equal(after.failures - before.failures, 0);
    assert_int_equal(rcl_limit(), LIMIT);
    rcl_shrinker_unregister(dip_shrinker);
    dip_shrinker = NULL;
}

TEST_MAIN();
