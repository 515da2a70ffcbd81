/* SPDX-License-Identifier: MIT */
/*
 * test_domain_context.c - reclaim domains and the journal cookie carried
 * to other threads (rcl_context, the library's workqueue), and the domains
 * under many threads at once (the rules themselves: test_domain.c).
 */
#include "helpers.h"

#include <stdatomic.h>

#include "domain.h"

/* ------------------------------------------------------------------------ */
/* Context that travels                                                      */
/* ------------------------------------------------------------------------ */

/* The "mm: add PF_MEMALLOC_NOFS" thread (linux-kernel, April 2016): the
 * context must be conveyed to APIs that hand work to other threads. A worker
 * that adopts a captured context is inside the same domains, with the same
 * journal cookie, and after restore is back to its own state exactly. */
struct handoff {
    struct rcl_context ctx;
    struct test_cache *cache;
    size_t freed_adopted, freed_after;
    void *journal_adopted, *journal_after;
    unsigned entered_adopted, entered_after;
};

static void *worker(void *arg)
{
    struct handoff *h = arg;
    struct rcl_context saved;
    rcl_context_adopt(&h->ctx, &saved);
    h->entered_adopted = rcl__domain_entered(NULL, 0);
    h->journal_adopted = rcl_journal_info();
    h->freed_adopted = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_context_restore(&saved);
    h->entered_after = rcl__domain_entered(NULL, 0);
    h->journal_after = rcl_journal_info();
    h->freed_after = rcl_reclaim(WANT, RCL_DEFAULT);
    return NULL;
}

TEST_WITH(context_carries_domains_and_journal_to_another_thread, domain_setup, domain_teardown)
{
    int txn;
    struct rcl_domain *d = rcl_domain_create("fs", 0, NULL, NULL);
    struct handoff h = { .cache = cache_new("fs-cache", d, 0) };

    unsigned tok = rcl_domain_enter(d);
    rcl_journal_info_set(&txn);
    rcl_context_capture(&h.ctx);
    rcl_journal_info_set(NULL);
    rcl_domain_exit(tok);

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, worker, &h), 0);
    pthread_join(th, NULL);

    assert_int_equal(h.entered_adopted, 1);
    assert_ptr_equal(h.journal_adopted, &txn);
    assert_int_equal(h.freed_adopted, 0);        /* inside fs: its cache skipped */
    assert_int_equal(h.entered_after, 0);
    assert_null(h.journal_after);
    assert_true(h.freed_after > 0);              /* outside again */
    test_cache_free(h.cache);
    rcl_domain_destroy(d);                       /* no entry left behind */
    assert_int_equal(test_report_count(), 0);
}

/* The library's workqueue captures the context at queue time (the "mm: add
 * PF_MEMALLOC_NOFS" thread (linux-kernel, April 2016)): a work item queued
 * from inside a domain runs inside it, with the queuer's journal cookie, and
 * the worker is left as it was. */
struct domain_work {
    struct rcl_work work;
    struct rcl_domain *seen[RCL_MAX_DOMAINS];
    unsigned nseen;
    void *journal;
};

static void record_context(struct rcl_work *w)
{
    struct domain_work *dw = (struct domain_work *)w;
    dw->nseen = rcl__domain_entered(dw->seen, RCL_MAX_DOMAINS);
    dw->journal = rcl_journal_info();
}

TEST_WITH(work_item_runs_inside_queuers_domains, domain_setup, domain_teardown)
{
    int txn;
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 1, NULL, NULL);
    struct rcl_workqueue *wq = rcl_workqueue_create("domain-test", 1, 0);
    assert_non_null(wq);
    struct domain_work dw = { .nseen = 99 };
    rcl_work_init(&dw.work, record_context);

    unsigned ta = rcl_domain_enter(a);
    unsigned tb = rcl_domain_enter(b);
    rcl_journal_info_set(&txn);
    assert_int_equal(rcl_queue_work(wq, &dw.work), 0);
    rcl_journal_info_set(NULL);
    rcl_domain_exit(tb);
    rcl_domain_exit(ta);
    rcl_flush_workqueue(wq);

    assert_int_equal(dw.nseen, 2);
    assert_ptr_equal(dw.seen[0], a);
    assert_ptr_equal(dw.seen[1], b);
    assert_ptr_equal(dw.journal, &txn);
    rcl_workqueue_destroy(wq);
    rcl_domain_destroy(a);                       /* the worker left them */
    rcl_domain_destroy(b);
    assert_int_equal(test_report_count(), 0);
}

/* The queuer's domains are not the work item's to take off: a restore of
 * a context captured outside them, from the item, is refused and said, and
 * the item goes on inside them. (They were popped, the rest of the item
 * ran outside them, and the worker's own restore found them gone.) */
static struct rcl_context outside_every_domain;

static void restore_outside_and_record(struct rcl_work *w)
{
    rcl_context_restore(&outside_every_domain);
    record_context(w);
}

TEST_WITH(work_item_cannot_restore_away_the_queuers_domains, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_workqueue *wq = rcl_workqueue_create("domain-test", 1, 0);
    assert_non_null(wq);
    struct domain_work dw = { .nseen = 99 };
    rcl_work_init(&dw.work, restore_outside_and_record);

    rcl_context_capture(&outside_every_domain);
    unsigned ta = rcl_domain_enter(a);
    assert_int_equal(rcl_queue_work(wq, &dw.work), 0);
    rcl_domain_exit(ta);
    rcl_flush_workqueue(wq);

    assert_int_equal(dw.nseen, 1);
    assert_ptr_equal(dw.seen[0], a);
    assert_int_equal(test_reports_seen_matching("rcl_context_restore: from a may_reclaim "
                                                "callback, a shrinker's or a work item"), 1);
    assert_int_equal(test_reports_unread(), 0);
    rcl_workqueue_destroy(wq);
    rcl_domain_destroy(a);                       /* the worker left it */
}

/* A work item that adopts a context and returns without its restore is
 * said, and the adopt ended with the item: the next item runs in its own
 * queuer's context alone. (The adopt stayed outstanding, the worker's
 * restore after the item became one out of order, kept for ever, and the
 * worker ran every later item inside the first queuer's domains and the
 * item's, which could no longer be destroyed.) */
static struct rcl_context inside_b;

static void adopt_and_keep(struct rcl_work *w)
{
    struct rcl_context saved;

    (void)w;
    rcl_context_adopt(&inside_b, &saved);
}

TEST_WITH(work_item_that_returns_with_a_context_adopted_is_reported_and_it_ended, domain_setup,
          domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 1, NULL, NULL);
    struct rcl_workqueue *wq = rcl_workqueue_create("domain-test", 1, 0);
    assert_non_null(wq);
    struct rcl_work keeps;
    struct domain_work dw = { .nseen = 99 };
    rcl_work_init(&keeps, adopt_and_keep);
    rcl_work_init(&dw.work, record_context);

    unsigned tb = rcl_domain_enter(b);
    rcl_context_capture(&inside_b);
    rcl_domain_exit(tb);
    unsigned ta = rcl_domain_enter(a);
    assert_int_equal(rcl_queue_work(wq, &keeps), 0);
    rcl_domain_exit(ta);
    rcl_flush_workqueue(wq);
    assert_int_equal(rcl_queue_work(wq, &dw.work), 0);
    rcl_flush_workqueue(wq);

    assert_int_equal(dw.nseen, 0);
    assert_int_equal(test_reports_seen_matching("returned with 1 context adopt(s) never "
                                                "restored"), 1);
    assert_int_equal(test_reports_unread(), 0);
    rcl_workqueue_destroy(wq);
    rcl_domain_destroy(a);                       /* the worker left them */
    rcl_domain_destroy(b);
}

/* Adopting adds the context's domains on top of the thread's own; restore
 * returns exactly to what was there, journal included, and nests. */
TEST_WITH(adopt_stacks_on_own_domains_and_restore_is_exact, domain_setup, domain_teardown)
{
    struct rcl_domain *own = rcl_domain_create("own", 0, NULL, NULL);
    struct rcl_domain *x = rcl_domain_create("x", 1, NULL, NULL);
    struct rcl_domain *y = rcl_domain_create("y", 2, NULL, NULL);
    struct rcl_domain *list[4];
    int j1, j2, j3;
    struct rcl_context cx, cy, s1, s2;

    unsigned tx = rcl_domain_enter(x);
    rcl_journal_info_set(&j2);
    rcl_context_capture(&cx);
    unsigned ty = rcl_domain_enter(y);
    rcl_journal_info_set(&j3);
    rcl_context_capture(&cy);
    rcl_domain_exit(ty);
    rcl_domain_exit(tx);

    unsigned to = rcl_domain_enter(own);
    rcl_journal_info_set(&j1);
    rcl_context_adopt(&cx, &s1);
    assert_int_equal(entered(list, 4), 2);
    assert_ptr_equal(list[0], own);
    assert_ptr_equal(list[1], x);
    assert_ptr_equal(rcl_journal_info(), &j2);
    rcl_context_adopt(&cy, &s2);
    assert_int_equal(entered(list, 4), 4);
    assert_ptr_equal(list[3], y);
    assert_ptr_equal(rcl_journal_info(), &j3);

    /* the thread's own token cannot reach under adopted entries */
    rcl_domain_exit(to);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(entered(NULL, 0), 4);

    rcl_context_restore(&s2);
    assert_int_equal(entered(list, 4), 2);
    assert_ptr_equal(rcl_journal_info(), &j2);
    rcl_context_restore(&s1);
    assert_int_equal(entered(list, 4), 1);
    assert_ptr_equal(list[0], own);
    assert_ptr_equal(rcl_journal_info(), &j1);

    rcl_domain_exit(to);
    rcl_journal_info_set(NULL);
    rcl_domain_destroy(own);
    rcl_domain_destroy(x);
    rcl_domain_destroy(y);
    assert_int_equal(test_report_count(), 1);
}

/* The outer of two adopts restored first: the inner one, still open, keeps
 * its domains (the outer's under them stay too: a stack has no middle to
 * take out, and staying in a domain only restricts), and its restore leaves
 * the thread in its own domains alone, with nothing reported. */
TEST_WITH(adopts_restored_out_of_order_leave_the_inner_domains_until_its_restore,
          domain_setup, domain_teardown)
{
    struct rcl_domain *own = rcl_domain_create("own", 0, NULL, NULL);
    struct rcl_domain *x = rcl_domain_create("x", 1, NULL, NULL);
    struct rcl_domain *y = rcl_domain_create("y", 2, NULL, NULL);
    struct rcl_domain *list[4];
    struct rcl_context cx, cy, s1, s2;

    unsigned t = rcl_domain_enter(x);
    rcl_context_capture(&cx);
    rcl_domain_exit(t);
    t = rcl_domain_enter(y);
    rcl_context_capture(&cy);
    rcl_domain_exit(t);

    unsigned to = rcl_domain_enter(own);
    rcl_context_adopt(&cx, &s1);
    rcl_context_adopt(&cy, &s2);
    rcl_context_restore(&s1);
    assert_int_equal(entered(list, 4), 3);
    assert_ptr_equal(list[2], y);
    rcl_context_restore(&s2);
    assert_int_equal(entered(list, 4), 1);
    assert_ptr_equal(list[0], own);
    assert_int_equal(test_report_count(), 0);

    rcl_domain_exit(to);
    rcl_domain_destroy(own);
    rcl_domain_destroy(x);
    rcl_domain_destroy(y);
    assert_int_equal(test_report_count(), 0);
}

/* A context that does not fit on top of the thread's domains is reported;
 * since the dropped domain could be any shrinker's own, every domain's
 * shrinkers are skipped until the restore - never less restrictive. */
TEST_WITH(adopt_overflow_is_reported_and_stays_strict, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 0, NULL, NULL);
    struct test_cache *cb = cache_new("b-cache", b, 0);
    unsigned tok[RCL_MAX_DOMAINS];
    struct rcl_context cx, saved;

    unsigned t = rcl_domain_enter(b);
    rcl_context_capture(&cx);                    /* a context inside b */
    rcl_domain_exit(t);
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        tok[i] = rcl_domain_enter(a);            /* full of a's */

    rcl_context_adopt(&cx, &saved);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(rcl_reclaim(WANT, RCL_DEFAULT), 0);   /* b is skipped */
    assert_int_equal(atomic_load(&cb->calls), 0);
    rcl_context_restore(&saved);

    assert_true(rcl_reclaim(WANT, RCL_DEFAULT) > 0);       /* a's siblings again */
    for (unsigned i = RCL_MAX_DOMAINS; i-- > 0;)
        rcl_domain_exit(tok[i]);
    test_cache_free(cb);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
    assert_int_equal(test_report_count(), 1);
}

/* ------------------------------------------------------------------------ */
/* Stress                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Many threads, each entering and leaving random domains (seeded, so a
 * failure replays) and reclaiming while other threads refill the caches.
 * Each shrinker checks, in the thread that called it, that the rules held
 * for that thread's own stack: never called inside its own domain (no
 * callback), never with FS when the thread is in a domain of another depth.
 * At the end every domain's enter count is back to zero: all destroy.
 */
#define ST_DOMAINS 6
#define ST_THREADS 8

static struct rcl_domain *st_dom[ST_DOMAINS];
static struct test_cache *st_cache[ST_DOMAINS];
static _Atomic unsigned long st_violations, st_scans;
static __thread unsigned st_inside[ST_DOMAINS];     /* this thread's depth count */

static unsigned long st_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct test_cache *c = priv;
    unsigned me = 0;
    while (me < ST_DOMAINS && st_cache[me] != c)
        me++;
    if (me == ST_DOMAINS || sc->domain != st_dom[me] || st_inside[me] > 0)
        atomic_fetch_add(&st_violations, 1);
    for (unsigned i = 0; i < ST_DOMAINS; i++)
        if (st_inside[i] && rcl_domain_depth(st_dom[i]) != rcl_domain_depth(st_dom[me]) &&
            (sc->gfp & RCL__FS))
            atomic_fetch_add(&st_violations, 1);
    atomic_fetch_add(&st_scans, 1);
    return test_cache_scan(priv, sc);
}

static const struct rcl_shrinker_ops st_ops = { test_cache_count, st_scan };

static void *st_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    unsigned tok[RCL_MAX_DOMAINS], which[RCL_MAX_DOMAINS], n = 0;
    int iters = test_scale(3000);
    for (int it = 0; it < iters; it++) {
        unsigned r = (unsigned)rand_r(&seed);
        if (n < 6 && (r & 1)) {
            unsigned k = (r >> 1) % ST_DOMAINS;
            tok[n] = rcl_domain_enter(st_dom[k]);
            which[n++] = k;
            st_inside[k]++;
        } else if (n > 0) {
            n--;
            st_inside[which[n]]--;
            rcl_domain_exit(tok[n]);
        }
        if ((r >> 8) % 4 == 0) {
            rcl_reclaim(64 * KiB, RCL_DEFAULT);
        } else {
            test_cache_add(st_cache[(r >> 12) % ST_DOMAINS], RCL_DEFAULT);
        }
    }
    while (n > 0) {
        n--;
        st_inside[which[n]]--;
        rcl_domain_exit(tok[n]);
    }
    return NULL;
}

TEST_WITH(stress_domains_and_reclaim_many_threads, domain_setup, domain_teardown)
{
    char name[16];
    atomic_store(&st_violations, 0);
    atomic_store(&st_scans, 0);
    for (unsigned i = 0; i < ST_DOMAINS; i++) {
        snprintf(name, sizeof(name), "st%u", i);
        st_dom[i] = rcl_domain_create(name, i % 3, NULL, NULL);
        struct rcl_shrinker_opts o = { .domain = st_dom[i] };
        st_cache[i] = test_cache_new_ops(name, CACHE_MAX, OBJ_SIZE, &st_ops, &o);
        test_cache_fill(st_cache[i], CACHE_MAX / 2);
    }
    pthread_t th[ST_THREADS];
    for (unsigned i = 0; i < ST_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, st_thread,
                                        (void *)(uintptr_t)(0x5eed + i)), 0);
    for (unsigned i = 0; i < ST_THREADS; i++)
        pthread_join(th[i], NULL);

    assert_int_equal(atomic_load(&st_violations), 0);
    assert_true(atomic_load(&st_scans) > 0);
    for (unsigned i = 0; i < ST_DOMAINS; i++) {
        test_cache_free(st_cache[i]);
        rcl_domain_destroy(st_dom[i]);
    }
    assert_int_equal(test_report_count(), 0);
}

/*
 * Domains created, entered, given shrinkers and destroyed by many threads at
 * once, while all of them also go in and out of one shared domain: the
 * counters that guard destroy must never let a domain go while in use, nor
 * keep one that is not (TSan checks the rest).
 */
static struct rcl_domain *churn_shared;
static _Atomic unsigned long churn_failures;

static unsigned long nothing_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    return 0;
}

static const struct rcl_shrinker_ops nothing_ops = { nothing_count, nothing_count };

static void *churn_thread(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    int iters = test_scale(1000);
    for (int i = 0; i < iters; i++) {
        unsigned r = (unsigned)rand_r(&seed);
        struct rcl_domain *own = rcl_domain_create("own", r % 4, NULL, NULL);
        if (!own) {
            atomic_fetch_add(&churn_failures, 1);
            continue;
        }
        unsigned ts = rcl_domain_enter(churn_shared);
        unsigned to = rcl_domain_enter(own);
        struct rcl_shrinker *s = NULL;
        if (r & 1) {
            struct rcl_shrinker_opts o = { .domain = own };
            s = rcl_shrinker_register("own", &nothing_ops, NULL, &o);
        }
        if (r & 2)
            rcl_reclaim(4 * KiB, RCL_DEFAULT);
        rcl_domain_exit(to);
        rcl_domain_exit(ts);
        if (s)
            rcl_shrinker_unregister(s);
        rcl_domain_destroy(own);
    }
    return NULL;
}

TEST_WITH(stress_create_enter_destroy_many_threads, domain_setup, domain_teardown)
{
    churn_shared = rcl_domain_create("shared", 0, NULL, NULL);
    atomic_store(&churn_failures, 0);
    pthread_t th[ST_THREADS];
    for (unsigned i = 0; i < ST_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn_thread,
                                        (void *)(uintptr_t)(0xc0de + i)), 0);
    for (unsigned i = 0; i < ST_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&churn_failures), 0);
    assert_int_equal(test_report_count(), 0);
    rcl_domain_destroy(churn_shared);
    assert_int_equal(test_report_count(), 0);
}

TEST_MAIN();
