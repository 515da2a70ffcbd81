/* SPDX-License-Identifier: MIT */
/*
 * Shrinkers: registration, the kernel's do_shrink_slab() arithmetic, the
 * `needs` deferral, and unregister's guarantee.
 */
#include "helpers.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sched.h>

/* A shrinker that records every call and frees nothing. */
#define MAX_CALLS 4096
struct recorder {
    unsigned long freeable;       /* what count() says */
    unsigned long free_per_scan;  /* what scan() claims */
    unsigned long stop_after;     /* return STOP from this call on (1-based); 0 never */
    unsigned ncount, nscan;
    int prio[MAX_CALLS];
    unsigned long to_scan[MAX_CALLS];
    rcl_gfp_t gfp[MAX_CALLS];
    unsigned scope[MAX_CALLS];
};

static unsigned long rec_count(void *priv, struct rcl_shrink_control *sc)
{
    struct recorder *r = priv;
    (void)sc;
    r->ncount++;
    return r->freeable;
}

static unsigned long rec_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct recorder *r = priv;
    unsigned i = r->nscan++;
    if (i < MAX_CALLS) {
        r->prio[i] = sc->priority;
        r->to_scan[i] = sc->nr_to_scan;
        r->gfp[i] = sc->gfp;
        r->scope[i] = rcl_scope_current();
    }
    if (r->stop_after && r->nscan >= r->stop_after)
        return RCL_SHRINK_STOP;
    return r->free_per_scan;
}

static const struct rcl_shrinker_ops rec_ops = { rec_count, rec_scan };

/* The reference: the formulas of include/reclaim.h and rcl_shrinker(3), which
 * are do_shrink_slab()'s. */
struct model { unsigned long deferred; };
static unsigned model_pass(struct model *m, unsigned long freeable, unsigned seeks,
                           unsigned long batch, int prio, unsigned long *to_scan, unsigned max)
{
    unsigned long nr = m->deferred, scanned = 0;
    unsigned long delta = (freeable >> prio) * 4 / seeks;
    unsigned long total = (nr >> prio) + delta;
    unsigned n = 0;
    if (total > 2 * freeable)
        total = 2 * freeable;
    while (total >= batch || total >= freeable) {
        unsigned long k = total < batch ? total : batch;
        if (n < max)
            to_scan[n] = k;
        n++;
        total -= k;
        scanned += k;
    }
    long next = (long)(nr + delta) - (long)scanned;
    if (next < 0)
        next = 0;
    if ((unsigned long)next > 2 * freeable)
        next = (long)(2 * freeable);
    m->deferred = (unsigned long)next;
    return n;
}

static void check_against_model(unsigned long freeable, unsigned seeks, unsigned long batch)
{
    static struct recorder r;
    memset(&r, 0, sizeof(r));
    r.freeable = freeable;
    struct rcl_shrinker_opts opts = { .seeks = seeks, .batch = batch };
    struct rcl_shrinker *s = rcl_shrinker_register("rec", &rec_ops, &r, &opts);

    /* Nothing is really freed, so the walk runs all priorities 12..0. */
    assert_int_equal(rcl_reclaim(1, RCL_DEFAULT), 0);

    struct model m = { 0 };
    unsigned long want[MAX_CALLS];
    unsigned calls = 0;
    for (int prio = 12; prio >= 0; prio--) {
        unsigned n = model_pass(&m, freeable, seeks ? seeks : 2, batch ? batch : 128, prio,
                                want + calls, MAX_CALLS - calls);
        for (unsigned i = 0; i < n && calls + i < r.nscan; i++)
            assert_int_equal(r.prio[calls + i], prio);
        calls += n;
    }
    assert_int_equal(r.ncount, 13);
    assert_int_equal(r.nscan, calls);
    for (unsigned i = 0; i < calls && i < MAX_CALLS; i++)
        assert_int_equal(r.to_scan[i], want[i]);

    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.shrinkers[0].deferred, m.deferred);
    rcl_shrinker_unregister(s);
}

/* Kernel rule (do_shrink_slab): delta = (freeable >> priority) * 4 / seeks;
 * total = min((deferred >> priority) + delta, 2 * freeable); batches while
 * total >= batch || total >= freeable; deferred carried as
 * clamp(deferred + delta - scanned, 0, 2 * freeable). */
TEST(scan_amounts_follow_do_shrink_slab)
{
    check_against_model(10000, 2, 128);     /* the defaults */
    check_against_model(100000, 2, 128);
    check_against_model(5000, 8, 128);      /* expensive objects: scanned less */
    check_against_model(5000, 1, 512);
    check_against_model(50, 2, 128);        /* smaller than a batch: whole-cache scans */
    check_against_model(3, 2, 128);
}

/* The name is copied up to RCL_NAME_MAX - 1 bytes, the statistics' room. */
TEST(a_long_name_is_copied_up_to_31_bytes)
{
    struct test_counter *c =
        test_counter_new("a-name-longer-than-the-statistics-give-room-for", 1, NULL);
    struct rcl_shrinker_stats st[1];

    assert_int_equal(rcl_stats_shrinkers(st, 1), 1);
    assert_string_equal(st[0].name, "a-name-longer-than-the-statisti");
    test_counter_free(c);
}

TEST(defaults_are_seeks_2_and_batch_128)
{
    check_against_model(20000, 0, 0);
}

TEST(stop_ends_the_shrinkers_turn_in_the_pass)
{
    static struct recorder r;
    memset(&r, 0, sizeof(r));
    r.freeable = 1000000;
    r.stop_after = 1;
    struct rcl_shrinker *s = rcl_shrinker_register("stops", &rec_ops, &r, NULL);
    rcl_reclaim(1, RCL_DEFAULT);
    /* one scan per priority that asked for a batch, each ending the turn */
    for (unsigned i = 1; i < r.nscan; i++)
        assert_true(r.prio[i] < r.prio[i - 1]);
    rcl_shrinker_unregister(s);
}

TEST(empty_cache_is_never_scanned)
{
    static struct recorder r;
    memset(&r, 0, sizeof(r));
    r.freeable = RCL_SHRINK_EMPTY;
    struct rcl_shrinker *s = rcl_shrinker_register("empty", &rec_ops, &r, NULL);
    rcl_reclaim(1, RCL_DEFAULT);
    assert_int_equal(r.ncount, 13);
    assert_int_equal(r.nscan, 0);
    r.freeable = 0;
    rcl_reclaim(1, RCL_DEFAULT);
    assert_int_equal(r.nscan, 0);
    rcl_shrinker_unregister(s);
}

/* A count above LONG_MAX is a negative number come back unsigned (-1,
 * RCL_SHRINK_STOP, an -errno): taken for that many objects, it had a
 * reclaim call scan() some 2^46 times and left the deferred work at
 * garbage. The kernel once reported it the same way ("negative objects
 * to delete"). Reported once, never scanned, nothing deferred. */
TEST(a_count_above_long_max_is_reported_and_never_scanned)
{
    static const unsigned long bad[] = { RCL_SHRINK_STOP, (unsigned long)-12,
                                         (unsigned long)LONG_MAX + 1 };
    static struct recorder r;
    struct rcl_stats st;

    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&r, 0, sizeof(r));
        r.freeable = bad[i];
        r.stop_after = 1;       /* the old code's every turn ends at once */
        struct rcl_shrinker *s = rcl_shrinker_register("negative", &rec_ops, &r, NULL);
        rcl_reclaim(1, RCL_DEFAULT);
        rcl_reclaim(1, RCL_DEFAULT);
        assert_int_equal(r.ncount, 26);
        assert_int_equal(r.nscan, 0);
        rcl_stats_get(&st);
        assert_int_equal(st.shrinkers[0].deferred, 0);
        assert_int_equal(test_report_count(), 1);
        assert_last_report_has("count() returned");
        test_reports_take();
        rcl_shrinker_unregister(s);
    }
}

/* A scan() that returns above LONG_MAX returned an -errno: counted as
 * freed, it wrapped the shrinker's statistics. Reported once, and its turn
 * ends as with RCL_SHRINK_STOP. */
static unsigned long errno_scan(void *priv, struct rcl_shrink_control *sc)
{
    rec_scan(priv, sc);
    return (unsigned long)-EAGAIN;
}

TEST(a_scan_returning_above_long_max_is_reported_and_ends_its_turn)
{
    static const struct rcl_shrinker_ops ops = { rec_count, errno_scan };
    static struct recorder r;
    struct rcl_stats st;

    memset(&r, 0, sizeof(r));
    r.freeable = 1000;
    struct rcl_shrinker *s = rcl_shrinker_register("errno", &ops, &r, NULL);
    rcl_reclaim(1, RCL_DEFAULT);
    rcl_reclaim(1, RCL_DEFAULT);
    rcl_stats_get(&st);
    assert_int_equal(st.shrinkers[0].freed, 0);
    assert_int_equal(st.shrinkers[0].calls, r.nscan);
    assert_true(r.nscan > 2);
    for (unsigned i = 1; i < r.nscan && i < MAX_CALLS; i++)
        assert_true(r.prio[i] != r.prio[i - 1]);    /* one call a turn */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("scan() returned");
    rcl_shrinker_unregister(s);
}

/* The deferred work of a count up to LONG_MAX, worked out exactly: the
 * products and sums that pass 2^64 saturate where they wrapped, and a
 * sum past LONG_MAX is not taken for a negative one (both left it 0). */
TEST(a_count_up_to_long_max_defers_without_wrapping)
{
    static const unsigned seeks[] = { 1, 2, 3 };
    static struct recorder r;
    struct rcl_stats st;

    for (unsigned i = 0; i < sizeof(seeks) / sizeof(seeks[0]); i++) {
        memset(&r, 0, sizeof(r));
        r.freeable = LONG_MAX;
        r.stop_after = 1;       /* nothing scanned: the deferred work is all there is */
        struct rcl_shrinker_opts opts = { .seeks = seeks[i] };
        struct rcl_shrinker *s = rcl_shrinker_register("huge", &rec_ops, &r, &opts);
        rcl_reclaim(1, RCL_DEFAULT);
        unsigned __int128 nr = 0, cap = 2 * (unsigned __int128)r.freeable;
        for (int prio = 12; prio >= 0; prio--) {
            nr += ((unsigned __int128)(r.freeable >> prio) * 4) / seeks[i];
            if (nr > cap)
                nr = cap;
        }
        rcl_stats_get(&st);
        assert_true(st.shrinkers[0].deferred == (unsigned long)nr);
        assert_int_equal(r.nscan, 13);
        rcl_shrinker_unregister(s);
    }
}

/* A shrinker that needs FS is not called (not even count) under NOFS; its
 * share is deferred (nr_deferred) and done by the next context that may. */
TEST(work_is_deferred_to_a_context_with_the_needed_flags)
{
    static struct recorder r;
    memset(&r, 0, sizeof(r));
    r.freeable = 100000;
    struct rcl_shrinker_opts opts = { .needs = RCL__FS };
    struct rcl_shrinker *s = rcl_shrinker_register("fs", &rec_ops, &r, &opts);
    struct rcl_stats st;

    rcl_reclaim(1, RCL_DEFAULT);           /* learns its size */
    unsigned count_before = r.ncount, scans_before = r.nscan;
    rcl_stats_get(&st);
    unsigned long deferred0 = st.shrinkers[0].deferred;

    unsigned t = rcl_nofs_save();
    rcl_reclaim(1, RCL_DEFAULT);
    rcl_nofs_restore(t);
    assert_int_equal(r.ncount, count_before);
    assert_int_equal(r.nscan, scans_before);
    rcl_stats_get(&st);
    assert_int_equal(st.shrinkers[0].skipped, 13);
    assert_true(st.shrinkers[0].deferred > deferred0);
    assert_true(st.shrinkers[0].deferred <= 2 * r.freeable);

    /* A context with FS now scans more than a fresh pass would have. */
    unsigned long scanned_before;
    rcl_stats_get(&st);
    scanned_before = st.shrinkers[0].scanned;
    rcl_reclaim(1, RCL_DEFAULT);
    rcl_stats_get(&st);
    unsigned long with_deferred = st.shrinkers[0].scanned - scanned_before;
    struct model m = { 0 };
    unsigned long sink[MAX_CALLS], fresh = 0;
    for (int prio = 12; prio >= 0; prio--) {
        unsigned long before = m.deferred;
        (void)before;
        unsigned n = model_pass(&m, r.freeable, 2, 128, prio, sink, MAX_CALLS);
        for (unsigned i = 0; i < n; i++)
            fresh += sink[i];
    }
    assert_true(with_deferred > fresh);
    rcl_shrinker_unregister(s);
}

/* Shrinkers see the allocating caller's masked flags, and run in
 * NORECLAIM scope (PF_MEMALLOC during reclaim). */
TEST(shrinker_sees_masked_flags_in_noreclaim_scope)
{
    static struct recorder r;
    memset(&r, 0, sizeof(r));
    r.freeable = 1000;
    struct rcl_shrinker *s = rcl_shrinker_register("sees", &rec_ops, &r, NULL);
    unsigned t = rcl_noio_save();
    rcl_reclaim(1, RCL_DEFAULT);
    rcl_noio_restore(t);
    assert_true(r.nscan > 0);
    assert_int_equal(r.gfp[0], RCL_NOIO);
    assert_int_equal(r.scope[0], RCL_SCOPE_NOIO | RCL_SCOPE_NORECLAIM);
    assert_int_equal(rcl_scope_current(), 0);
    rcl_shrinker_unregister(s);
}

/* No recursion: what a shrinker allocates never enters reclaim again. */
static unsigned nested_depth, nested_max;
static unsigned long nest_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 1000;
}
static unsigned long nest_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    nested_depth++;
    if (nested_depth > nested_max)
        nested_max = nested_depth;
    void *p = rcl_alloc(4096, RCL_DEFAULT | RCL__NOWARN);
    rcl_free(p);
    nested_depth--;
    return 0;
}

TEST(shrinker_allocations_never_recurse_into_reclaim)
{
    static const struct rcl_shrinker_ops ops = { nest_count, nest_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("nest", &ops, NULL, NULL);
    void *fill = rcl_alloc(63 * MiB, RCL__MEMALLOC | RCL_DEFAULT);  /* budget past min */
    assert_non_null(fill);
    nested_max = 0;
    void *p = rcl_alloc(4096, RCL_DEFAULT | RCL__NOWARN);
    assert_null(p);
    assert_int_equal(nested_max, 1);
    rcl_free(fill);
    rcl_shrinker_unregister(s);
}

TEST(register_with_bad_input_is_refused_and_reported)
{
    static const struct rcl_shrinker_ops no_scan = { rec_count, NULL };
    assert_fails_with(rcl_shrinker_register(NULL, &rec_ops, NULL, NULL), EINVAL);
    assert_last_report_has("NULL name");
    assert_fails_with(rcl_shrinker_register("x", NULL, NULL, NULL), EINVAL);
    assert_last_report_has("rcl_shrinker_register(x): NULL ops");
    assert_fails_with(rcl_shrinker_register("x", &no_scan, NULL, NULL), EINVAL);
    assert_last_report_has("NULL scan callback");
    assert_int_equal(test_report_count(), 3);
}

/* A need no scan's context carries would leave the shrinker registered and
 * never called: refused, with the flags named. */
TEST(needs_beyond_fs_and_io_are_refused)
{
    static struct recorder r;
    static const rcl_gfp_t bad[] = { RCL__DIRECT_RECLAIM, RCL__NOFAIL, RCL__ZERO,
                                     RCL__FS | 0x8000u };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rcl_shrinker_opts opts = { .needs = bad[i] };
        errno = 0;
        assert_null(rcl_shrinker_register("never", &rec_ops, &r, &opts));
        assert_int_equal(errno, EINVAL);
        assert_last_report_has("RCL__FS and RCL__IO");
    }
    assert_int_equal(test_reports_take(), 4);
    struct rcl_shrinker_opts both = { .needs = RCL__FS | RCL__IO };
    struct rcl_shrinker *s = rcl_shrinker_register("both", &rec_ops, &r, &both);
    assert_non_null(s);
    rcl_shrinker_unregister(s);
}

/* A refused registration whose report function ends the thread leaves
 * nothing behind: the refusal is made before anything is allocated (the
 * ASan pass's leak check sees a shrinker left allocated). */
static struct rcl_domain *gone_domain;

static void *registers_refused_and_ends(void *arg)
{
    static struct recorder r;
    const struct rcl_shrinker_opts *opts = arg;

    test_reports_end_this_thread();
    rcl_shrinker_register("refused", &rec_ops, &r, opts);
    return NULL;                                /* not reached */
}

TEST(a_refused_registration_whose_report_ends_its_thread_leaves_nothing)
{
    gone_domain = rcl_domain_create("gone", 1, NULL, NULL);
    assert_non_null(gone_domain);
    rcl_domain_destroy(gone_domain);
    const struct rcl_shrinker_opts refused[] = { { .needs = RCL__NOFAIL },
                                                 { .domain = gone_domain } };
    const char *why[] = { "RCL__FS and RCL__IO", "not a live domain" };

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        pthread_t th;
        rcl_set_report_fn(test_report_catch_then_end, NULL);
        assert_int_equal(pthread_create(&th, NULL, registers_refused_and_ends,
                                        (void *)&refused[i]), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        rcl_set_report_fn(test_report_catch, NULL);
        assert_last_report_has(why[i]);
    }
    assert_int_equal(test_reports_take(), 2);
}

TEST(unregister_twice_or_null_is_reported)
{
    struct recorder *r = calloc(1, sizeof(*r));
    struct rcl_shrinker *s = rcl_shrinker_register("twice", &rec_ops, r, NULL);
    rcl_shrinker_unregister(s);
    assert_int_equal(test_report_count(), 0);
    rcl_shrinker_unregister(s);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("not a registered shrinker");
    rcl_shrinker_unregister(NULL);
    assert_int_equal(test_report_count(), 2);
    free(r);
}

/* A second unregister after other shrinkers were registered: the memory
 * of the first may have been handed out again, and the unregister took
 * the new shrinker that lived there, silently. Each of these is caught,
 * and every shrinker registered since is left alone. */
#define REREGISTERED 32
TEST(unregister_twice_after_new_registrations_leaves_them_alone)
{
    struct rcl_shrinker *old[REREGISTERED], *fresh[REREGISTERED];
    struct rcl_shrinker_stats st[REREGISTERED];

    for (unsigned i = 0; i < REREGISTERED; i++)
        old[i] = rcl_shrinker_register("old", &rec_ops, NULL, NULL);
    for (unsigned i = 0; i < REREGISTERED; i++)
        rcl_shrinker_unregister(old[i]);
    for (unsigned i = 0; i < REREGISTERED; i++)
        fresh[i] = rcl_shrinker_register("fresh", &rec_ops, NULL, NULL);
    for (unsigned i = 0; i < REREGISTERED; i++)
        rcl_shrinker_unregister(old[i]);
    assert_int_equal(test_reports_take(), REREGISTERED);
    assert_int_equal(rcl_stats_shrinkers(st, REREGISTERED), REREGISTERED);
    for (unsigned i = 0; i < REREGISTERED; i++)
        assert_string_equal(st[i].name, "fresh");
    for (unsigned i = 0; i < REREGISTERED; i++)
        rcl_shrinker_unregister(fresh[i]);
    assert_int_equal(test_report_count(), 0);
}

static struct rcl_shrinker *self_shrinker;
static unsigned long self_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    rcl_shrinker_unregister(self_shrinker);
    return 0;
}

TEST(unregister_from_own_callback_is_refused)
{
    static const struct rcl_shrinker_ops ops = { nest_count, self_scan };
    self_shrinker = rcl_shrinker_register("self", &ops, NULL, NULL);
    rcl_reclaim(1, RCL_DEFAULT);
    assert_true(test_report_count() >= 1);
    assert_last_report_has("from its own callback");
    rcl_shrinker_unregister(self_shrinker);    /* from outside: fine */
}

/* rcl_shutdown() from a callback would wait for its own pass: refused, and
 * the library goes on. */
static unsigned long shutdown_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    rcl_shutdown();
    return 0;
}

TEST(shutdown_from_a_callback_is_refused)
{
    static const struct rcl_shrinker_ops ops = { nest_count, shutdown_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("stopper", &ops, NULL, NULL);
    size_t limit = rcl_limit();
    rcl_reclaim(1, RCL_DEFAULT);
    assert_true(test_report_count() >= 1);
    assert_last_report_has("rcl_shutdown() from a shrinker's callback");
    assert_int_equal(rcl_limit(), limit);
    void *p = rcl_alloc(4096, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    rcl_shrinker_unregister(s);
}

/* A callback that forgets to restore a scope is reported and repaired. */
static unsigned long leaky_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    rcl_nofs_save();
    return 0;
}

TEST(scope_left_by_a_callback_is_reported_and_repaired)
{
    static const struct rcl_shrinker_ops ops = { nest_count, leaky_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("leaky", &ops, NULL, NULL);
    rcl_reclaim(1, RCL_DEFAULT);
    assert_true(test_report_count() >= 1);
    assert_last_report_has("scope changed");
    assert_int_equal(rcl_scope_current(), 0);
    rcl_shrinker_unregister(s);
}

/* Kernel rule (unregister_shrinker + synchronize_srcu): unregister waits
 * for scans in flight. The scan in flight stays until the unregister has
 * either gone to wait for it (rcl__unregister_waits moves) or returned:
 * whichever comes, what it then sees of the return is the verdict, with
 * no window a slow machine could close before the unregister is made. */
static atomic_int scan_entered, scan_release, unregister_returned, scan_saw_returned;
static unsigned long unregister_waits_before;

/* The seam is read relaxed: its count publishes nothing. It is counted
 * under the registry's lock, which the counting unregister lets go only
 * in its wait, and what a test does once it saw it move - a scan's
 * return, an unregister of its own - takes that lock and finds the
 * unregister waiting there. */
static unsigned long unregister_waits(void)
{
    return atomic_load_explicit(&rcl__unregister_waits, memory_order_relaxed);
}

static unsigned long slow_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    if (atomic_exchange(&scan_entered, 1) == 0) {
        while (!atomic_load(&scan_release))
            test_sleep_ms(1);
        while (unregister_waits() == unregister_waits_before &&
               !atomic_load(&unregister_returned))
            test_sleep_ms(1);
        atomic_store(&scan_saw_returned, atomic_load(&unregister_returned));
    }
    return RCL_SHRINK_STOP;
}

static void *reclaim_once(void *arg)
{
    (void)arg;
    rcl_reclaim(1, RCL_DEFAULT);
    return NULL;
}

TEST(unregister_waits_for_scans_in_flight)
{
    static const struct rcl_shrinker_ops ops = { nest_count, slow_scan };
    pthread_t th;
    struct rcl_shrinker *s = rcl_shrinker_register("slow", &ops, NULL, NULL);
    atomic_store(&scan_entered, 0);
    atomic_store(&scan_release, 0);
    atomic_store(&unregister_returned, 0);
    unregister_waits_before = unregister_waits();
    assert_int_equal(pthread_create(&th, NULL, reclaim_once, NULL), 0);
    while (!atomic_load(&scan_entered))
        test_sleep_ms(1);
    atomic_store(&scan_release, 1);
    rcl_shrinker_unregister(s);
    atomic_store(&unregister_returned, 1);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&scan_saw_returned), 0);
}

/*
 * Two threads, each in a callback, each unregistering the shrinker the
 * other is scanning: A, in "one"'s scan, unregisters "two", which B is
 * scanning, and B, in "two"'s scan, unregisters "one". Each would wait
 * for the other's scan for ever; whichever closes the circle - the later
 * of the two - is refused, and the earlier goes through once the refused
 * scan returns. The two orders are no mirror images: "one" comes first in
 * the registry's walk. A's going through unlinks "two", the next shrinker
 * of A's own walk, while A is inside "one"; B's going through unlinks
 * "one", behind B's walk, and A, refused, walks on into "two", which B is
 * still inside, waiting. Each order is made on every run: the later
 * unregister is made only once the earlier one waits for its scan
 * (rcl__unregister_waits moved).
 */
static struct rcl_shrinker *crossed[2];
static __thread int crossed_me = -1;        /* 0: A, 1: B; -1: neither */
static int crossed_first;                   /* whose unregister is made first */
static atomic_int crossed_in[2];            /* A in "one"'s scan, B in "two"'s */
static unsigned long crossed_waits_before;

static unsigned long crossed_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 1 << 20;
}

static unsigned long crossed_scan(void *priv, struct rcl_shrink_control *sc)
{
    int me = crossed_me, other = 1 - me;
    (void)sc;

    if (me != (int)(uintptr_t)priv || atomic_exchange(&crossed_in[me], 1))
        return RCL_SHRINK_STOP;
    while (!atomic_load(&crossed_in[other]))
        test_sleep_ms(1);
    if (me != crossed_first)
        while (unregister_waits() == crossed_waits_before)
            test_sleep_ms(1);
    rcl_shrinker_unregister(crossed[other]);
    return RCL_SHRINK_STOP;
}

static void *crossed_reclaim(void *arg)
{
    crossed_me = (int)(uintptr_t)arg;
    rcl_reclaim(1, RCL_DEFAULT);
    return NULL;
}

/* Runs A and B with `first`'s unregister made first: the later one is
 * refused, so the shrinker `first` scanned is the one left. */
static void unregisters_crossed(int first)
{
    static const struct rcl_shrinker_ops ops = { crossed_count, crossed_scan };
    pthread_t a, b;

    crossed_first = first;
    atomic_store(&crossed_in[0], 0);
    atomic_store(&crossed_in[1], 0);
    crossed_waits_before = unregister_waits();
    crossed[0] = rcl_shrinker_register("one", &ops, (void *)0, NULL);
    crossed[1] = rcl_shrinker_register("two", &ops, (void *)1, NULL);
    assert_non_null(crossed[0]);
    assert_non_null(crossed[1]);
    assert_int_equal(pthread_create(&a, NULL, crossed_reclaim, (void *)0), 0);
    assert_int_equal(pthread_create(&b, NULL, crossed_reclaim, (void *)1), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);

    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("from a shrinker's callback: refused");
    struct rcl_shrinker_stats left[2];
    assert_int_equal(rcl_stats_shrinkers(left, 2), 1);
    assert_string_equal(left[0].name, first == 0 ? "one" : "two");
    rcl_shrinker_unregister(crossed[first]);
}

TEST(unregisters_crossed_between_two_callbacks_refuse_the_later_and_wait_for_neither)
{
    unregisters_crossed(0);
}

TEST(unregisters_crossed_the_other_way_round_refuse_the_later_and_wait_for_neither)
{
    unregisters_crossed(1);
}

/* Stress: shrinkers come and go while other threads reclaim; no callback
 * ever runs after its unregister returned (checked by the callback). */
struct churn {
    atomic_int gone;
    atomic_int late_calls;
};

static unsigned long churn_count(void *priv, struct rcl_shrink_control *sc)
{
    struct churn *c = priv;
    (void)sc;
    if (atomic_load(&c->gone))
        atomic_fetch_add(&c->late_calls, 1);
    return 500;
}

static unsigned long churn_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct churn *c = priv;
    if (atomic_load(&c->gone))
        atomic_fetch_add(&c->late_calls, 1);
    return sc->nr_to_scan / 2;
}

static atomic_int churn_stop;
static atomic_int churn_late;

static void *churn_reclaimer(void *arg)
{
    (void)arg;
    while (!atomic_load(&churn_stop))
        rcl_reclaim(1 << 20, RCL_DEFAULT);
    return NULL;
}

static void *churn_registrar(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    static const struct rcl_shrinker_ops ops = { churn_count, churn_scan };
    int rounds = test_scale(2000);
    for (int i = 0; i < rounds; i++) {
        struct churn *c = calloc(1, sizeof(*c));
        struct rcl_shrinker *s = rcl_shrinker_register("churn", &ops, c, NULL);
        if (rand_r(&seed) % 2)
            sched_yield();
        rcl_shrinker_unregister(s);
        atomic_store(&c->gone, 1);
        /* any call from now on would be counted; give them a chance */
        if (rand_r(&seed) % 8 == 0)
            sched_yield();
        atomic_fetch_add(&churn_late, atomic_load(&c->late_calls));
        free(c);   /* ASan: a late callback would be a use-after-free */
    }
    return NULL;
}

TEST(callbacks_never_run_after_unregister_returns)
{
    pthread_t rec[4], reg[4];
    atomic_store(&churn_stop, 0);
    atomic_store(&churn_late, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&rec[i], NULL, churn_reclaimer, NULL), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&reg[i], NULL, churn_registrar, (void *)(uintptr_t)(i + 1)), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(reg[i], NULL);
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(rec[i], NULL);
    assert_int_equal(atomic_load(&churn_late), 0);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.nr_shrinkers, 0);
}

TEST_MAIN();
