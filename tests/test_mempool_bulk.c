/* SPDX-License-Identifier: MIT */
/*
 * test_mempool_bulk.c - rcl_mempool_alloc_bulk / rcl_mempool_free_bulk:
 * all or nothing, never holding part of the reserve while waiting.
 *
 * Kernel rule: mempool_alloc_bulk ("mempool: add mempool_{alloc,free}_bulk",
 * linux-mm, the 6.19 cycle) exists because a loop of single mempool_alloc()
 * calls from several threads can deadlock, each holding part of the reserve
 * and waiting for the rest.
 */
#include "helpers.h"
#include "internal.h"
#include "scripted_clock.h"

#include <stdatomic.h>

#define RESERVE 8

/* A backing allocator that fails on demand (memory pressure), counts what
 * is live, and records the flags it was asked with. */
static struct {
    atomic_int  fail_all;       /* every call fails... */
    atomic_int  grant;          /* ...but the next this many */
    atomic_int  fail_every;     /* every call but each n-th fails (0: none fail) */
    atomic_long calls, live;
    atomic_uint gfp_or;         /* every flag seen */
    atomic_long exit_at;        /* the call that ends its thread (0: none) */
    atomic_int  free_exits;     /* the next free ends its thread */
} back;

static void *back_alloc(rcl_gfp_t gfp, void *data)
{
    (void)data;
    long call = atomic_fetch_add(&back.calls, 1);
    atomic_fetch_or(&back.gfp_or, gfp);
    if (call + 1 == atomic_load(&back.exit_at))
        pthread_exit(NULL);             /* as a program's allocator may */
    int every = atomic_load(&back.fail_every);
    if ((atomic_load(&back.fail_all) && atomic_fetch_sub(&back.grant, 1) <= 0) ||
        (every && call % every != 0))
        return NULL;
    void *p = malloc(64);
    if (p)
        atomic_fetch_add(&back.live, 1);
    return p;
}

static void back_free(void *elem, void *data)
{
    (void)data;
    atomic_fetch_sub(&back.live, 1);
    free(elem);
    if (atomic_exchange(&back.free_exits, 0))
        pthread_exit(NULL);             /* as a program's free may */
}

static int bulk_setup(void **state)
{
    atomic_store(&back.fail_all, 0);
    atomic_store(&back.grant, 0);
    atomic_store(&back.fail_every, 0);
    atomic_store(&back.calls, 0);
    atomic_store(&back.live, 0);
    atomic_store(&back.gfp_or, 0);
    atomic_store(&back.exit_at, 0);
    atomic_store(&back.free_exits, 0);
    return test_setup(state);
}

static struct rcl_mempool *pool_make(void)
{
    struct rcl_mempool *p = rcl_mempool_create_ops(RESERVE, back_alloc, back_free, NULL);
    assert_non_null(p);
    return p;
}

/* Everything came back: destroy has nothing outstanding to report, and
 * the backing allocator has nothing live. */
static void pool_done(struct rcl_mempool *p)
{
    unsigned reports = test_report_count();
    rcl_mempool_destroy(p);
    assert_int_equal(test_report_count(), reports);
    assert_int_equal(atomic_load(&back.live), 0);
}

TEST_WITH(test_bulk_gets_all_from_the_allocator_when_it_can, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    void *e[RESERVE];
    long before = atomic_load(&back.calls);
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, RESERVE), 0);
    assert_int_equal(atomic_load(&back.calls) - before, RESERVE);
    for (int i = 0; i < RESERVE; i++)
        assert_non_null(e[i]);
    rcl_mempool_free_bulk(p, e, RESERVE);
    pool_done(p);
}

/* Under pressure the whole request comes from the reserve, at once. */
TEST_WITH(test_bulk_takes_the_whole_reserve_under_pressure, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    atomic_store(&back.fail_all, 1);
    void *e[RESERVE];
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, RESERVE), 0);
    for (int i = 0; i < RESERVE; i++)
        for (int j = 0; j < i; j++)
            assert_ptr_not_equal(e[i], e[j]);
    rcl_mempool_free_bulk(p, e, RESERVE);
    atomic_store(&back.fail_all, 0);
    pool_done(p);
}

static unsigned long reserve_hits(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    return st.mempool_reserve_hits;
}

/* Each element the reserve hands out counts once, as a single call's does:
 * a bulk call served by the reserve is as many hits as it took elements
 * from it. (It counted one, whatever it took.) */
TEST_WITH(test_bulk_counts_each_element_from_the_reserve_as_a_hit, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    atomic_store(&back.fail_all, 1);
    atomic_store(&back.grant, 2);               /* two from the allocator, the rest not */
    void *e[RESERVE];
    unsigned long before = reserve_hits();
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, RESERVE), 0);
    assert_int_equal(reserve_hits() - before, RESERVE - 2);
    rcl_mempool_free_bulk(p, e, RESERVE);
    atomic_store(&back.fail_all, 0);
    pool_done(p);
}

/* More than the reserve could ever serve alone: refused at once. */
TEST_WITH(test_bulk_larger_than_the_reserve_is_e2big_at_once, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    void *e[RESERVE + 1];
    long before = atomic_load(&back.calls);
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, RESERVE + 1), -E2BIG);
    assert_int_equal(atomic_load(&back.calls), before);
    pool_done(p);
}

TEST_WITH(test_bulk_zero_elements_is_a_no_op, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    assert_int_equal(rcl_mempool_alloc_bulk(p, NULL, 0), 0);
    rcl_mempool_free_bulk(p, NULL, 0);
    assert_int_equal(test_report_count(), 0);
    pool_done(p);
}

TEST_WITH(test_bulk_null_arguments_are_einval_and_reported, bulk_setup, test_teardown)
{
    void *e[2];
    assert_int_equal(rcl_mempool_alloc_bulk(NULL, e, 2), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(rcl_mempool_alloc_bulk(NULL, NULL, 0), -EINVAL);
    assert_int_equal(test_report_count(), 2);
    struct rcl_mempool *p = pool_make();
    assert_int_equal(rcl_mempool_alloc_bulk(p, NULL, 2), -EINVAL);
    assert_int_equal(test_report_count(), 3);
    rcl_mempool_free_bulk(NULL, e, 2);
    rcl_mempool_free_bulk(p, NULL, 2);
    assert_int_equal(test_report_count(), 5);
    pool_done(p);
}

/* All or nothing: with the reserve short of n and too little from the
 * allocator, a call that may not wait (NOWAIT scope) fails holding
 * nothing: the reserve is intact afterwards, and what the allocator gave
 * is back in the pool (the reserve, which it refills). */
TEST_WITH(test_bulk_fails_holding_nothing, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    atomic_store(&back.fail_all, 1);
    void *out[3];
    for (int i = 0; i < 3; i++)
        assert_non_null(out[i] = rcl_mempool_alloc(p, RCL_NOWAIT));
    void *e[RESERVE];                          /* RESERVE - 3 left */
    unsigned saved = rcl_nowait_save();
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, RESERVE), -ENOMEM);
    atomic_store(&back.grant, 1);              /* one from the allocator, 2 short */
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, RESERVE), -ENOMEM);
    assert_int_equal(atomic_load(&back.live), RESERVE + 1);
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, RESERVE - 2), 0);   /* the rest and its one */
    rcl_mempool_free_bulk(p, e, RESERVE - 2);
    rcl_nowait_restore(saved);
    for (int i = 0; i < 3; i++)
        rcl_mempool_free(out[i], p);
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, RESERVE), 0);   /* all there */
    rcl_mempool_free_bulk(p, e, RESERVE);
    atomic_store(&back.fail_all, 0);
    pool_done(p);
}

/* No flags of its own: the scope's NOFS/NOIO reach the backing allocator. */
TEST_WITH(test_bulk_takes_its_flags_from_the_scope, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    void *e[4];
    atomic_store(&back.gfp_or, 0);
    unsigned saved = rcl_noio_save();
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, 4), 0);
    rcl_noio_restore(saved);
    assert_int_equal(atomic_load(&back.gfp_or) & (RCL__FS | RCL__IO), 0);
    rcl_mempool_free_bulk(p, e, 4);

    atomic_store(&back.gfp_or, 0);
    saved = rcl_nofs_save();
    assert_int_equal(rcl_mempool_alloc_bulk(p, e, 4), 0);
    rcl_nofs_restore(saved);
    assert_int_equal(atomic_load(&back.gfp_or) & RCL__FS, 0);
    rcl_mempool_free_bulk(p, e, 4);
    pool_done(p);
}

/* A thread's call for the whole reserve, and what it returned once done
 * is set. */
struct bulk_call {
    struct rcl_mempool *pool;
    void *elems[RESERVE];
    int ret;
    atomic_int done;
};

static void *bulk_call_main(void *arg)
{
    struct bulk_call *c = arg;
    c->ret = rcl_mempool_alloc_bulk(c->pool, c->elems, RESERVE);
    atomic_store(&c->done, 1);
    return NULL;
}

/* Half the reserve taken into mine, then a thread's call for all of it,
 * which the backend's failures leave waiting: returns once the pool counts
 * it, under its lock, in the critical section in which it first sleeps,
 * so that whatever wakes it finds it asleep. */
static pthread_t bulk_waiter_start_in(struct rcl_mempool *p, void **mine, struct bulk_call *c,
                                      void *(*main)(void *))
{
    pthread_t th;

    atomic_store(&back.fail_all, 1);
    assert_int_equal(rcl_mempool_alloc_bulk(p, mine, RESERVE / 2), 0);
    *c = (struct bulk_call){ .pool = p, .ret = 1 };
    assert_int_equal(pthread_create(&th, NULL, main, c), 0);
    for (int ms = 0; ms < 20000 && rcl__mempool_waiters(p) < 1; ms++)
        test_sleep_ms(1);
    assert_int_equal(rcl__mempool_waiters(p), 1);
    return th;
}

static pthread_t bulk_waiter_start(struct rcl_mempool *p, void **mine, struct bulk_call *c)
{
    return bulk_waiter_start_in(p, mine, c, bulk_call_main);
}

/* The waiter has ended within s seconds. */
static void bulk_waiter_joined_within(pthread_t th, int s)
{
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += s;
    assert_int_equal(pthread_timedjoin_np(th, NULL, &limit), 0);
}

/* A waiter is served as soon as the elements it misses come back. */

TEST_WITH(test_bulk_waits_until_the_elements_come_back, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    void *mine[RESERVE / 2];
    struct bulk_call c;
    pthread_t th = bulk_waiter_start(p, mine, &c);   /* counted asleep in the pool */
    assert_int_equal(atomic_load(&c.done), 0);       /* half the reserve is out */
    rcl_mempool_free_bulk(p, mine, RESERVE / 2);
    pthread_join(th, NULL);
    assert_int_equal(c.ret, 0);
    rcl_mempool_free_bulk(p, c.elems, RESERVE);
    atomic_store(&back.fail_all, 0);
    pool_done(p);
}

/* Misuse, as for the single call (test_mempool.c): a pool destroyed while
 * a thread waits in it for all it asked, then its elements returned. The
 * destroy reports it and wakes the waiter, which fails at once with
 * -ESHUTDOWN, as a bulk call after the destroy does, and reports that; the
 * pool goes when the last of the waiter and the elements has left it. */
TEST_WITH(test_bulk_waiter_woken_by_destroy_fails_with_eshutdown, bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    void *mine[RESERVE / 2];
    struct bulk_call c;
    pthread_t th = bulk_waiter_start(p, mine, &c);

    rcl_mempool_destroy(p);
    rcl_mempool_free_bulk(p, mine, RESERVE / 2);    /* the last: may go first */
    bulk_waiter_joined_within(th, 20);
    assert_int_equal(c.ret, -ESHUTDOWN);
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("1 thread(s) still waiting to allocate");
    assert_reports_have("rcl_mempool_alloc_bulk(");
    assert_int_equal(atomic_load(&back.live), 0);   /* the pool is gone, reserve and all */
    atomic_store(&back.fail_all, 0);
}

static void *bulk_call_ending_in_its_report(void *arg)
{
    test_reports_end_this_thread();
    return bulk_call_main(arg);
}

/* The woken waiter reports its failure once it has left the pool: a
 * report function that ends its thread there leaves the pool freed when
 * its last elements are back. (The gone waiter stayed counted: the pool
 * and its reserve were never freed.) */
TEST_WITH(test_a_woken_bulk_waiter_whose_report_ends_its_thread_still_lets_the_pool_go,
          bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    void *mine[RESERVE / 2];
    struct bulk_call c;
    rcl_set_report_fn(test_report_catch_then_end, NULL);
    pthread_t th = bulk_waiter_start_in(p, mine, &c, bulk_call_ending_in_its_report);

    rcl_mempool_destroy(p);
    bulk_waiter_joined_within(th, 20);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(c.ret, 1);                     /* it never returned */
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("1 thread(s) still waiting to allocate");
    assert_reports_have("rcl_mempool_alloc_bulk(");

    rcl_mempool_free_bulk(p, mine, RESERVE / 2);    /* the last: the pool goes */
    assert_int_equal(atomic_load(&back.live), 0);
    atomic_store(&back.fail_all, 0);
}

/* The thread whose monotonic clock, as the library reads it, runs an hour
 * ahead (scripted_clock.h): a bounded wait it takes ends an hour on, so
 * that it ends sooner only if it is woken. */
static void *bulk_call_an_hour_ahead(void *arg)
{
    scripted_clock_shift(CLOCK_MONOTONIC, false, 3600 * 1000000000ll);
    return bulk_call_main(arg);
}

/* A resize that lowers the reserve below what a waiter asks for ends its
 * wait at once with -E2BIG, as a call made after it fails: the reserve
 * alone can never serve it now, and no element returned would wake it.
 * The waiter's bounded wait would end an hour on: it ends now only if the
 * resize woke it, and the bound below only catches a hang. */
TEST_WITH(test_bulk_waiter_fails_at_once_when_a_resize_lowers_the_reserve_below_it,
          bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    void *mine[RESERVE / 2];
    struct bulk_call c;
    pthread_t th = bulk_waiter_start_in(p, mine, &c, bulk_call_an_hour_ahead);

    assert_int_equal(rcl_mempool_resize(p, RESERVE / 2), 0);
    bulk_waiter_joined_within(th, 60);
    scripted_clock_stop();
    assert_int_equal(c.ret, -E2BIG);
    rcl_mempool_free_bulk(p, mine, RESERVE / 2);
    atomic_store(&back.fail_all, 0);
    pool_done(p);
}

/* ------------------------------------------------------------------------ */
/* A backing allocator or free that ends its thread (pthread_exit())         */
/* ------------------------------------------------------------------------ */

/* fn(arg) on a thread of its own, which it may end, joined. */
static void on_a_thread_of_its_own(void *(*fn)(void *), void *arg)
{
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

static void *bulk_alloc_main(void *arg)
{
    struct bulk_call *c = arg;
    c->ret = rcl_mempool_alloc_bulk(c->pool, c->elems, 4);
    return NULL;
}

/* A bulk allocation whose allocator ends the thread ends the call as a
 * failure would: the elements it had are given back. (They were held by
 * nobody: the program's elements, or the budget's, lost for good.) */
TEST_WITH(test_a_thread_ending_in_the_allocator_of_a_bulk_gives_back_what_it_had,
          bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    struct bulk_call c = { .pool = p };

    atomic_store(&back.exit_at, atomic_load(&back.calls) + 3);    /* two, then the end */
    on_a_thread_of_its_own(bulk_alloc_main, &c);
    atomic_store(&back.exit_at, 0);
    assert_int_equal(atomic_load(&back.live), RESERVE);
    pool_done(p);
}

/* The same for a waiter, whose allocator ends the thread in a retry: it
 * gives back what it had and leaves the pool's waiters. (The element it
 * had was lost, and never came back to the backing free.) */
TEST_WITH(test_a_waiter_ending_in_the_allocator_of_a_bulk_retry_gives_back_what_it_had,
          bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    void *mine[RESERVE / 2];
    struct bulk_call c;
    pthread_t th = bulk_waiter_start(p, mine, &c);

    atomic_store(&back.exit_at, atomic_load(&back.calls) + 2);    /* one, then the end */
    atomic_store(&back.fail_all, 0);
    rcl_mempool_free(mine[0], p);                 /* wakes it */
    bulk_waiter_joined_within(th, 10);
    atomic_store(&back.exit_at, 0);
    assert_int_equal(rcl__mempool_waiters(p), 0);
    rcl_mempool_free_bulk(p, mine + 1, RESERVE / 2 - 1);
    pool_done(p);                       /* the one it had went to the reserve */
}

static void *bulk_free_main(void *arg)
{
    struct bulk_call *c = arg;
    rcl_mempool_free_bulk(c->pool, c->elems, 3);
    return NULL;
}

/* A bulk free whose backing free ends the thread returns the elements
 * after that one too: they were the pool's from the call on. (They stayed
 * counted as out, and the destroy waited for them for ever.) */
TEST_WITH(test_a_thread_ending_in_a_backing_free_of_a_bulk_free_returns_the_rest,
          bulk_setup, test_teardown)
{
    struct rcl_mempool *p = pool_make();
    struct bulk_call c = { .pool = p };

    assert_int_equal(rcl_mempool_alloc_bulk(p, c.elems, 3), 0);  /* the reserve stays full */
    atomic_store(&back.free_exits, 1);
    on_a_thread_of_its_own(bulk_free_main, &c);
    assert_int_equal(atomic_load(&back.live), RESERVE);
    pool_done(p);
}

/* ------------------------------------------------------------------------ */
/* The deadlock the bulk call exists for                                     */
/* ------------------------------------------------------------------------ */

/* Callers that each need more than half the reserve, so it serves them one
 * at a time, under pressure (the allocator fails all calls, or all but a
 * few), for several seconds: no deadlock, every element returned, and the
 * elements one caller holds are never another's. */
#define NCALLERS 6
static struct {
    struct rcl_mempool *pool;
    unsigned long long  until_ns;
    atomic_long         rounds;
    atomic_int          errors;
} race;

static unsigned long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void *racer(void *arg)
{
    int me = (int)(intptr_t)arg;
    unsigned n = RESERVE / 2 + 1 + (unsigned)me % (RESERVE / 2);   /* 5..8 */
    void *e[RESERVE];

    while (mono_ns() < race.until_ns) {
        if (rcl_mempool_alloc_bulk(race.pool, e, n) != 0) {
            atomic_fetch_add(&race.errors, 1);
            continue;
        }
        for (unsigned i = 0; i < n; i++) {
            *(volatile int *)e[i] = me;      /* ours alone while we hold it */
            sched_yield();
            if (*(volatile int *)e[i] != me)
                atomic_fetch_add(&race.errors, 1);
        }
        rcl_mempool_free_bulk(race.pool, e, n);
        atomic_fetch_add(&race.rounds, 1);
    }
    return NULL;
}

static void bulk_race(int fail_every, int fail_all)
{
    race.pool = rcl_mempool_create_ops(RESERVE, back_alloc, back_free, NULL);
    assert_non_null(race.pool);
    atomic_store(&back.fail_every, fail_every);
    atomic_store(&back.fail_all, fail_all);
    atomic_store(&race.rounds, 0);
    atomic_store(&race.errors, 0);
    race.until_ns = mono_ns() + (unsigned long long)test_scale(3000) * 1000000ull;

    pthread_t th[NCALLERS];
    for (int i = 0; i < NCALLERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, racer, (void *)(intptr_t)i), 0);
    /* A deadlock would hang here; the bound is generous for a loaded
     * machine, and far below cmocka's patience. */
    for (int i = 0; i < NCALLERS; i++) {
        struct timespec limit;
        clock_gettime(CLOCK_REALTIME, &limit);
        limit.tv_sec += 120;
        assert_int_equal(pthread_timedjoin_np(th[i], NULL, &limit), 0);
    }
    assert_int_equal(atomic_load(&race.errors), 0);
    assert_true(atomic_load(&race.rounds) >= NCALLERS);
    atomic_store(&back.fail_all, 0);
    atomic_store(&back.fail_every, 0);
    pool_done(race.pool);
}

TEST_WITH(test_bulk_callers_under_total_pressure_never_deadlock, bulk_setup, test_teardown)
{
    bulk_race(0, 1);
}

TEST_WITH(test_bulk_callers_under_partial_pressure_never_deadlock, bulk_setup, test_teardown)
{
    bulk_race(3, 0);
}

TEST_MAIN();
