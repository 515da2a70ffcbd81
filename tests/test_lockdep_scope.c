/* SPDX-License-Identifier: MIT */
/*
 * The lock checker's misuse reports of checking mode: scopes restored out
 * of order or by another thread, sleeping allocations in a NOWAIT scope,
 * and a shrinker too slow for the background reclaimer. Lock order itself:
 * test_lockdep.c.
 */
#include "helpers.h"

#include <stdatomic.h>

#include "checker.h"

/* ------------------------------------------------------------------------ */
/* Scopes, NOWAIT, slow shrinkers                                            */
/* ------------------------------------------------------------------------ */

TEST_WITH(scopes_restored_in_order_are_quiet, ld_setup, ld_teardown)
{
    unsigned a = rcl_nofs_save();
    unsigned b = rcl_noio_save();
    unsigned c = rcl_nofs_save();          /* 0: a no-op */
    rcl_nofs_restore(c);
    rcl_noio_restore(b);
    rcl_nofs_restore(a);
    {
        RCL_NOWAIT_SCOPE();
        RCL_NOFS_SCOPE();
    }
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(test_report_count(), 0);
}

TEST_WITH(scope_restored_out_of_order_is_reported, ld_setup, ld_teardown)
{
    unsigned a = rcl_nofs_save();
    unsigned b = rcl_noio_save();
    rcl_nofs_restore(a);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("out of order");
    rcl_noio_restore(b);                  /* the rest unwinds quietly */
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(rcl_scope_current(), 0);
}

/* An I/O flusher's NOIO is a scope opened by rcl_io_flusher_set(1); the
 * off that closes it while a scope opened since is still open is not a
 * restore the program made, and the report says what it was: the inner
 * code runs on without the NOIO it was entered under. */
TEST_WITH(io_flusher_off_inside_a_later_scope_is_reported_as_the_flushers_end, ld_setup,
          ld_teardown)
{
    rcl_io_flusher_set(1);
    unsigned inner = rcl_nofs_save();
    rcl_io_flusher_set(0);
    rcl_nofs_restore(inner);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("rcl_io_flusher_set(0)");
    assert_false(test_reports_contain("restored out of order"));
    assert_false(test_reports_contain("token"));
    test_reports_seen_matching("rcl_io_flusher_set: prctl");   /* unprivileged: the kernel half */
}

/* Turned off with no scope opened since, it is the in-order end. */
TEST_WITH(io_flusher_off_outside_later_scopes_is_quiet, ld_setup, ld_teardown)
{
    rcl_io_flusher_set(1);
    unsigned inner = rcl_nofs_save();
    rcl_nofs_restore(inner);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(rcl_lockdep_reports(), 0);
    test_reports_seen_matching("rcl_io_flusher_set: prctl");
}

/* The scope calls are inline; a thread's reach the checker from its first
 * call into the library (here an allocation) once the checker is on. */
static void *out_of_order_in_new_thread(void *arg)
{
    (void)arg;
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    unsigned a = rcl_nofs_save();
    unsigned b = rcl_noio_save();
    rcl_nofs_restore(a);
    rcl_noio_restore(b);
    return NULL;
}

TEST_WITH(scope_misuse_in_another_thread_is_reported, ld_setup, ld_teardown)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, out_of_order_in_new_thread, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("out of order");
}

/* Turning the checker off reaches every thread, not only the one that
 * restarts the library: at its next call into the library a thread that
 * was watched goes back to the inline scope calls. */
struct watched_peer {
    pthread_barrier_t step;
    unsigned          checked_on, checked_off;
};

static void *watched_peer_main(void *arg)
{
    struct watched_peer *w = arg;
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    w->checked_on = rcl_scope_tls.checked;
    pthread_barrier_wait(&w->step);     /* the library restarts, checker off */
    pthread_barrier_wait(&w->step);
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    w->checked_off = rcl_scope_tls.checked;
    return NULL;
}

TEST_WITH(checker_off_unwatches_every_thread, ld_setup, ld_teardown)
{
    struct watched_peer w = { .checked_on = 0, .checked_off = 1 };
    pthread_t th;
    pthread_barrier_init(&w.step, NULL, 2);
    assert_int_equal(pthread_create(&th, NULL, watched_peer_main, &w), 0);
    pthread_barrier_wait(&w.step);
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_OFF, 0, 64 * MiB), 0);
    pthread_barrier_wait(&w.step);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&w.step);
    assert_int_equal(w.checked_on, 1);
    assert_int_equal(w.checked_off, 0);
}

/* A report function that takes its time, as one writing to a log does:
 * it stays in the call until the test has looked at the count from
 * another thread, then puts the report where the test finds it. */
static atomic_int in_report_fn, count_looked_at;

static void held_report_fn(const char *report, void *arg)
{
    atomic_store(&in_report_fn, 1);
    while (!atomic_load(&count_looked_at))
        test_sleep_ms(1);
    test_report_catch(report, arg);
}

/* A report is counted once the report function has returned from it: a
 * thread that sees rcl_lockdep_reports() go up finds the report where that
 * function put it, whichever thread made it. */
TEST_WITH(a_report_is_counted_once_the_report_function_returns, ld_setup, ld_teardown)
{
    pthread_t th;

    atomic_store(&in_report_fn, 0);
    atomic_store(&count_looked_at, 0);
    rcl_set_report_fn(held_report_fn, NULL);
    assert_int_equal(pthread_create(&th, NULL, out_of_order_in_new_thread, NULL), 0);
    while (!atomic_load(&in_report_fn))
        test_sleep_ms(1);
    unsigned long while_in_the_function = rcl_lockdep_reports();
    atomic_store(&count_looked_at, 1);
    while (rcl_lockdep_reports() == 0)
        test_sleep_ms(1);
    assert_true(test_reports_contain("out of order"));
    pthread_join(th, NULL);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(while_in_the_function, 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

/* rcl_context_restore() puts back the whole scope word: saves a piece of
 * work left open under an adopted context end there, for the checker too.
 * Many such leaks (a worker thread running many work items) must not fill
 * its record of open saves and turn the scope checks off. */
TEST_WITH(context_restore_closes_the_saves_it_undoes, ld_setup, ld_teardown)
{
    struct rcl_context ctx, saved;
    rcl_context_capture(&ctx);
    for (int i = 0; i < 40; i++) {
        rcl_context_adopt(&ctx, &saved);
        (void)rcl_nofs_save();             /* a work item's leaked save */
        rcl_context_restore(&saved);
    }
    assert_int_equal(rcl_scope_current(), 0);
    unsigned a = rcl_nofs_save();
    unsigned b = rcl_noio_save();
    rcl_nofs_restore(a);                   /* still checked: reported */
    rcl_noio_restore(b);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("out of order");
}

/* A token no save returned: bits that are not set, or bits that are set
 * but are other saves' (two saves restored with one token). */
TEST_WITH(scope_restored_with_foreign_token_is_reported, ld_setup, ld_teardown)
{
    unsigned a = rcl_nofs_save();
    rcl_scope_restore(RCL_SCOPE_NOWAIT);   /* never saved */
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("did not return");
    rcl_scope_restore(a | RCL_SCOPE_NOIO);
    assert_int_equal(rcl_lockdep_reports(), 2);

    unsigned fs = rcl_nofs_save();
    unsigned io = rcl_noio_save();
    rcl_scope_restore(fs | io);
    assert_int_equal(rcl_lockdep_reports(), 3);
    assert_last_report_has("did not return");
    assert_int_equal(rcl_scope_current(), 0);
}

/* The proposed memalloc_nowait scope: nothing inside may sleep. */
TEST_WITH(sleeping_allocation_in_nowait_scope_is_reported, ld_setup, ld_teardown)
{
    unsigned saved = rcl_nowait_save();
    void *p = rcl_alloc(64, RCL_DEFAULT);
    rcl_nowait_restore(saved);
    rcl_free(p);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("NOWAIT scope");
}

/* The same NOWAIT scope, carried over by a context. */
TEST_WITH(sleeping_allocation_in_adopted_nowait_context_is_reported, ld_setup, ld_teardown)
{
    struct rcl_context ctx, saved;
    rcl_free(rcl_alloc(64, RCL_DEFAULT));  /* a stock: the next one could be fast */
    unsigned nw = rcl_nowait_save();
    rcl_context_capture(&ctx);
    rcl_nowait_restore(nw);
    rcl_context_adopt(&ctx, &saved);
    void *p = rcl_alloc(64, RCL_DEFAULT);
    rcl_context_restore(&saved);
    rcl_free(p);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("NOWAIT scope");
}

/* The report names the flags whole, the longest set included: bits that
 * contradict each other are what a reader most needs to see. */
TEST_WITH(sleeping_allocation_in_nowait_scope_names_all_its_flags, ld_setup, ld_teardown)
{
    const rcl_gfp_t gfp = RCL__IO | RCL__FS | RCL__DIRECT_RECLAIM | RCL__HIGH | RCL__MEMALLOC |
                          RCL__NOMEMALLOC | RCL__NORETRY | RCL__NOWARN | RCL__ZERO;
    unsigned saved = rcl_nowait_save();
    void *p = rcl_alloc(64, gfp);
    rcl_nowait_restore(saved);
    rcl_free(p);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("(IO|FS|DIRECT_RECLAIM|HIGH|MEMALLOC|NOMEMALLOC|NORETRY|NOWARN|ZERO) "
                        "in thread");
}

TEST_WITH(nowait_allocation_in_nowait_scope_is_quiet, ld_setup, ld_teardown)
{
    unsigned saved = rcl_nowait_save();
    rcl_free(rcl_alloc(64, RCL_NOWAIT));
    rcl_free(rcl_alloc(64, RCL_ATOMIC));
    rcl_nowait_restore(saved);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

struct slow_cache {
    pthread_mutex_t lock;
    void *blocks[1100];
    int n;
    atomic_int scans;           /* slow scans finished */
};

static unsigned long slow_count(void *priv, struct rcl_shrink_control *sc)
{
    struct slow_cache *c = priv;
    (void)sc;
    pthread_mutex_lock(&c->lock);
    unsigned long n = (unsigned long)c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static unsigned long slow_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct slow_cache *c = priv;
    /* A shrinker that blocks: the slowness the checker measures is the
     * subject, and a loaded machine only makes the scan slower still, so
     * this sleep can neither fail the test nor let it pass without a slow
     * scan. */
    test_sleep_ms(60);
    unsigned long freed = 0;
    pthread_mutex_lock(&c->lock);
    while (c->n && freed < sc->nr_to_scan) {
        rcl_free(c->blocks[--c->n]);
        freed++;
    }
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&c->scans, 1);
    return freed;
}

static const struct rcl_shrinker_ops slow_ops = { slow_count, slow_scan };

/* A 1 MiB budget, lockdep on and the background reclaimer running, where
 * a shrinker's scan is slow past 20 ms (the test's own slow_scan() takes
 * 60). */
static void restart_with_slow_shrinkers_reported_past_20_ms(void)
{
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 1, 1 * MiB), 0);
    rcl_lockdep_set_slow_shrinker_ms(20);
}

/* Fills the cache to above the low watermark without direct reclaim, for
 * the background reclaimer to call its shrinker. */
static void slow_cache_fill(struct slow_cache *c)
{
    for (int i = 0; i < 1100; i++) {
        void *p = rcl_alloc(1000, RCL_NOWAIT);
        if (!p)
            break;
        pthread_mutex_lock(&c->lock);
        c->blocks[c->n++] = p;
        pthread_mutex_unlock(&c->lock);
    }
}

static void slow_cache_empty(struct slow_cache *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->n)
        rcl_free(c->blocks[--c->n]);
    pthread_mutex_unlock(&c->lock);
}

static void wait_for_a_lockdep_report(void)
{
    for (int i = 0; i < 500 && rcl_lockdep_reports() == 0; i++)
        test_sleep_ms(10);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020) ("you should not
 * block kswapd"): a shrinker the background reclaimer waits on for longer
 * than the bound is reported. */
TEST_WITH(slow_shrinker_under_background_reclaimer_is_reported, ld_setup, ld_teardown)
{
    restart_with_slow_shrinkers_reported_past_20_ms();
    static struct slow_cache c = { .lock = PTHREAD_MUTEX_INITIALIZER };
    c.n = 0;
    struct rcl_shrinker_opts o = { .batch = 16 };
    struct rcl_shrinker *s = rcl_shrinker_register("slow-cache", &slow_ops, &c, &o);
    slow_cache_fill(&c);
    wait_for_a_lockdep_report();
    if (getenv("SHOW_REPORTS")) {
        printf("n=%d\n", c.n);
        rcl_stats_print(stdout, 0);
        print_reports();
    }
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("slow-cache");
    assert_reports_have("background reclaimer");
    rcl_shrinker_unregister(s);
    slow_cache_empty(&c);
    rcl_lockdep_set_slow_shrinker_ms(1000);
}

/* A slow shrinker is told once: the background reclaimer's later slow
 * passes over it add no report. */
TEST_WITH(slow_shrinker_is_reported_once_however_many_slow_passes, ld_setup, ld_teardown)
{
    restart_with_slow_shrinkers_reported_past_20_ms();
    static struct slow_cache c = { .lock = PTHREAD_MUTEX_INITIALIZER };
    c.n = 0;
    atomic_store(&c.scans, 0);
    /* One block a pass: the reclaimer makes many slow passes to reach its
     * high watermark. */
    struct rcl_shrinker_opts o = { .batch = 1 };
    struct rcl_shrinker *s = rcl_shrinker_register("slow-once", &slow_ops, &c, &o);
    slow_cache_fill(&c);
    wait_for_a_lockdep_report();
    assert_int_equal(rcl_lockdep_reports(), 1);
    int first = atomic_load(&c.scans);
    for (int i = 0; i < 500 && atomic_load(&c.scans) < first + 3; i++)
        test_sleep_ms(10);
    assert_true(atomic_load(&c.scans) >= first + 3);
    rcl_shrinker_unregister(s);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("slow-once");
    slow_cache_empty(&c);
    rcl_lockdep_set_slow_shrinker_ms(1000);
}

TEST_MAIN();
