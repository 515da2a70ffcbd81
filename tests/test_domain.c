/* SPDX-License-Identifier: MIT */
/*
 * test_domain.c - fine-grained reclaim domains (Dave Chinner's proposal in
 * the "Overhaul memalloc_no*" thread, dm-devel, June 2020; docs/design.md,
 * "Reclaim domains") and the journal cookie.
 *
 * The rules under test, for a thread inside domain D (depth d) reclaiming
 * from a shrinker of domain S (depth s):
 *   S == D   ask D's may_reclaim (NULL: skip)
 *   s != d   as NOFS
 *   else     unrestricted
 * Several domains: the most restrictive answer wins. A scope applies on top.
 *
 * Every rule is checked through real shrinkers and rcl_reclaim(), the way a
 * program meets it, not by calling the decision function.
 */
#include "helpers.h"

#include <malloc.h>
#include <stdatomic.h>

#include "domain.h"

/* ------------------------------------------------------------------------ */
/* Creation and accessors                                                    */
/* ------------------------------------------------------------------------ */

TEST_WITH(create_without_name_is_refused_and_reported, domain_setup, domain_teardown)
{
    assert_fails_with(rcl_domain_create(NULL, 0, NULL, NULL), EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_domain_create(NULL, 0): NULL name");
}

TEST_WITH(create_copies_name_and_keeps_depth, domain_setup, domain_teardown)
{
    char name[] = "xfs-sda1";
    struct rcl_domain *d = rcl_domain_create(name, 2, NULL, NULL);
    assert_non_null(d);
    name[0] = '?';
    assert_string_equal(rcl_domain_name(d), "xfs-sda1");
    assert_int_equal(rcl_domain_depth(d), 2);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 0);
}

/* ------------------------------------------------------------------------ */
/* The three rules                                                           */
/* ------------------------------------------------------------------------ */

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): "superblock the
 * same, pass context to filesystem to decide if reclaim from the superblock
 * is safe" - with no callback it never is. */
TEST_WITH(same_domain_without_callback_skips_its_shrinker, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("fs", 0, NULL, NULL);
    struct test_cache *c = cache_new("fs-cache", d, 0);

    unsigned tok = rcl_domain_enter(d);
    assert_int_not_equal(tok, 0);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_int_equal(freed, 0);
    assert_int_equal(atomic_load(&c->calls), 0);
    assert_int_equal(c->n, CACHE_MAX);
    test_cache_free(c);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 0);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020), same superblock:
 * the file system decides. A yes lets reclaim in with the caller's flags
 * unchanged. */
TEST_WITH(same_domain_reclaims_when_may_reclaim_allows, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("fs", 0, allow, NULL);
    struct test_cache *c = cache_new("fs-cache", d, 0);

    unsigned tok = rcl_domain_enter(d);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_true(freed > 0);
    assert_true(atomic_load(&c->calls) > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & (RCL__FS | RCL__IO), RCL__FS | RCL__IO);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020), same superblock:
 * a no from the file system skips the shrinker. */
TEST_WITH(same_domain_is_skipped_when_may_reclaim_refuses, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("fs", 0, refuse, NULL);
    struct test_cache *c = cache_new("fs-cache", d, 0);

    unsigned tok = rcl_domain_enter(d);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_int_equal(freed, 0);
    assert_int_equal(atomic_load(&c->calls), 0);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): "superblock
 * nesting depth is different, apply GFP_NOFS reclaim unconditionally" - a
 * loop device may stack one file system on the other. */
TEST_WITH(other_depth_reclaims_as_nofs, domain_setup, domain_teardown)
{
    struct rcl_domain *upper = rcl_domain_create("upper", 1, NULL, NULL);
    struct rcl_domain *lower = rcl_domain_create("lower", 0, NULL, NULL);
    struct test_cache *c = cache_new("lower-cache", lower, 0);

    unsigned tok = rcl_domain_enter(upper);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_true(freed > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__FS, 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__IO, RCL__IO);
    test_cache_free(c);
    rcl_domain_destroy(upper);
    rcl_domain_destroy(lower);
}

/* The same rule for a shrinker that declares it needs FS: as under a NOFS
 * scope, it is not called at all. */
TEST_WITH(other_depth_skips_shrinker_that_needs_fs, domain_setup, domain_teardown)
{
    struct rcl_domain *upper = rcl_domain_create("upper", 1, NULL, NULL);
    struct rcl_domain *lower = rcl_domain_create("lower", 0, NULL, NULL);
    struct test_cache *c = cache_new("lower-cache", lower, RCL__FS);

    unsigned tok = rcl_domain_enter(upper);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_int_equal(freed, 0);
    assert_int_equal(atomic_load(&c->calls), 0);
    test_cache_free(c);
    rcl_domain_destroy(upper);
    rcl_domain_destroy(lower);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): "superblock
 * different apply GFP_KERNEL reclaim" - a sibling file system at the same
 * depth cannot recurse into ours, so it gets full flags, even a file-system
 * shrinker that would stop without FS. */
TEST_WITH(other_domain_same_depth_is_unrestricted, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 0, NULL, NULL);
    struct test_cache *c = cache_new("b-cache", b, RCL__FS);
    c->fs = true;

    unsigned tok = rcl_domain_enter(a);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_true(freed > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & (RCL__FS | RCL__IO), RCL__FS | RCL__IO);
    test_cache_free(c);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* Only a domain's own shrinkers are affected: a shrinker that belongs to no
 * domain (a plain cache) sees the caller's flags unchanged. */
TEST_WITH(shrinker_without_domain_is_unaffected, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("d", 3, NULL, NULL);
    struct test_cache *c = cache_new("plain", NULL, 0);

    unsigned tok = rcl_domain_enter(d);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_true(freed > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__FS, RCL__FS);
    assert_null(atomic_load(&c->last_domain));
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/* A thread in no domain reclaims from every domain's shrinkers as before. */
TEST_WITH(thread_outside_domains_is_unaffected, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("d", 0, NULL, NULL);
    struct test_cache *c = cache_new("d-cache", d, RCL__FS);

    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);

    assert_true(freed > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__FS, RCL__FS);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/* ------------------------------------------------------------------------ */
/* Combining rules and scopes                                                */
/* ------------------------------------------------------------------------ */

/* docs/design.md: "Several entered domains: the most restrictive answer wins."
 * Inside A (depth 0, reclaim from itself allowed) and B (depth 1): A's own
 * cache is asked (yes) but B's depth differs, so it is reclaimed as NOFS;
 * a sibling C of A at depth 0 is NOFS too, for the same reason. */
TEST_WITH(most_restrictive_domain_wins_nofs, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, allow, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 1, allow, NULL);
    struct rcl_domain *cdom = rcl_domain_create("c", 0, allow, NULL);
    struct test_cache *ca = cache_new("a-cache", a, 0);
    struct test_cache *cc = cache_new("c-cache", cdom, 0);

    unsigned ta = rcl_domain_enter(a);
    unsigned tb = rcl_domain_enter(b);
    size_t freed = rcl_reclaim(2 * WANT, RCL_DEFAULT);
    rcl_domain_exit(tb);
    rcl_domain_exit(ta);

    assert_true(freed > 0);
    assert_true(atomic_load(&ca->calls) > 0);
    assert_int_equal(atomic_load(&ca->last_gfp) & RCL__FS, 0);
    assert_true(atomic_load(&cc->calls) > 0);
    assert_int_equal(atomic_load(&cc->last_gfp) & RCL__FS, 0);
    test_cache_free(ca);
    test_cache_free(cc);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
    rcl_domain_destroy(cdom);
    assert_int_equal(test_report_count(), 0);
}

/* Most restrictive wins: skipping beats NOFS beats unrestricted. Inside A
 * (refuses) and a sibling B at the same depth (allows): A's cache is skipped
 * although B alone would have let reclaim in unrestricted. */
TEST_WITH(most_restrictive_domain_wins_skip, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, refuse, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 0, allow, NULL);
    struct test_cache *ca = cache_new("a-cache", a, 0);
    struct test_cache *cb = cache_new("b-cache", b, 0);

    unsigned tb = rcl_domain_enter(b);
    unsigned ta = rcl_domain_enter(a);
    rcl_reclaim(2 * WANT, RCL_DEFAULT);
    rcl_domain_exit(ta);
    rcl_domain_exit(tb);

    assert_int_equal(atomic_load(&ca->calls), 0);
    assert_true(atomic_load(&cb->calls) > 0);
    assert_int_equal(atomic_load(&cb->last_gfp) & RCL__FS, RCL__FS);
    test_cache_free(ca);
    test_cache_free(cb);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* docs/design.md: a domain never widens what a scope forbids. A sibling at the
 * same depth would be unrestricted, but the thread is also in NOFS scope
 * (memalloc_nofs_save), so the shrinker still sees no FS. */
TEST_WITH(nofs_scope_still_applies_inside_domain, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 0, NULL, NULL);
    struct test_cache *c = cache_new("b-cache", b, 0);

    unsigned tok = rcl_domain_enter(a);
    unsigned nofs = rcl_nofs_save();
    rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_nofs_restore(nofs);
    rcl_domain_exit(tok);

    assert_true(atomic_load(&c->calls) > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__FS, 0);
    test_cache_free(c);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* The same for NOIO (memalloc_noio_save clears IO and FS): even a domain
 * whose own callback allows reclaim gets neither. */
TEST_WITH(noio_scope_still_applies_inside_domain, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, allow, NULL);
    struct test_cache *c = cache_new("a-cache", a, 0);

    unsigned tok = rcl_domain_enter(a);
    unsigned noio = rcl_noio_save();
    rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_noio_restore(noio);
    rcl_domain_exit(tok);

    assert_true(atomic_load(&c->calls) > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & (RCL__FS | RCL__IO), 0);
    test_cache_free(c);
    rcl_domain_destroy(a);
}

/* include/reclaim.h, struct rcl_shrink_control: the shrinker sees the domain
 * it belongs to and the flags left after the domain rules. */
TEST_WITH(control_shows_domain_and_narrowed_flags, domain_setup, domain_teardown)
{
    struct rcl_domain *upper = rcl_domain_create("upper", 1, NULL, NULL);
    struct rcl_domain *lower = rcl_domain_create("lower", 0, NULL, NULL);
    struct test_cache *c = cache_new("lower-cache", lower, 0);

    unsigned tok = rcl_domain_enter(upper);
    rcl_reclaim(WANT, RCL_DEFAULT | RCL__NOWARN);
    rcl_domain_exit(tok);

    assert_ptr_equal(atomic_load(&c->last_domain), lower);
    rcl_gfp_t g = atomic_load(&c->last_gfp);
    assert_int_equal(g & RCL__FS, 0);
    /* narrowed, not replaced: everything else the caller gave is still there */
    assert_int_equal(g & (RCL__IO | RCL__DIRECT_RECLAIM | RCL__NOWARN),
                     RCL__IO | RCL__DIRECT_RECLAIM | RCL__NOWARN);
    test_cache_free(c);
    rcl_domain_destroy(upper);
    rcl_domain_destroy(lower);
}

/* ------------------------------------------------------------------------ */
/* may_reclaim and the journal cookie                                        */
/* ------------------------------------------------------------------------ */

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): XFS needed
 * transaction tracking a NOFS bit cannot carry (current->journal_info). A
 * file system that answers "safe unless this thread is inside one of my
 * transactions" sees the thread's cookie. */
struct txn_fs {
    int transactions;            /* the cookie points here while in one */
    _Atomic unsigned asked;
    void *_Atomic seen;
};

static int txn_may_reclaim(struct rcl_domain *d, void *arg)
{
    struct txn_fs *fs = arg;
    (void)d;
    atomic_fetch_add(&fs->asked, 1);
    atomic_store(&fs->seen, rcl_journal_info());
    return rcl_journal_info() != &fs->transactions;
}

TEST_WITH(may_reclaim_sees_journal_info, domain_setup, domain_teardown)
{
    struct txn_fs fs = { 0 };
    struct rcl_domain *d = rcl_domain_create("txn-fs", 0, txn_may_reclaim, &fs);
    struct test_cache *c = cache_new("txn-cache", d, 0);
    unsigned tok = rcl_domain_enter(d);

    /* inside a transaction: refused */
    void *old = rcl_journal_info_set(&fs.transactions);
    assert_null(old);
    assert_int_equal(rcl_reclaim(WANT, RCL_DEFAULT), 0);
    assert_true(atomic_load(&fs.asked) > 0);
    assert_ptr_equal(atomic_load(&fs.seen), &fs.transactions);
    assert_int_equal(atomic_load(&c->calls), 0);

    /* transaction committed: allowed */
    assert_ptr_equal(rcl_journal_info_set(NULL), &fs.transactions);
    assert_true(rcl_reclaim(WANT, RCL_DEFAULT) > 0);
    assert_null(atomic_load(&fs.seen));
    assert_true(atomic_load(&c->calls) > 0);

    rcl_domain_exit(tok);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/* include/reclaim.h: may_reclaim runs in the reclaiming thread in NORECLAIM
 * scope, as shrinkers do (the kernel's PF_MEMALLOC), so an allocation it
 * makes cannot recurse into reclaim. */
static pthread_t asker_thread;
static _Atomic int asker_ok;

static int check_context(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    bool noreclaim = (rcl_scope_current() & RCL_SCOPE_NORECLAIM) != 0;
    bool same = pthread_equal(pthread_self(), asker_thread);
    atomic_store(&asker_ok, noreclaim && same ? 1 : -1);
    return 1;
}

TEST_WITH(may_reclaim_runs_in_reclaiming_thread_without_reclaim, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("d", 0, check_context, NULL);
    struct test_cache *c = cache_new("d-cache", d, 0);
    asker_thread = pthread_self();
    atomic_store(&asker_ok, 0);

    unsigned tok = rcl_domain_enter(d);
    rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_int_equal(atomic_load(&asker_ok), 1);
    assert_int_equal(rcl_scope_current() & RCL_SCOPE_NORECLAIM, 0);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/*
 * Both paths that ask a domain's may_reclaim, in one run: another
 * thread's reclaim pass held inside d's shrinker, the budget full, and an
 * allocation inside d that reclaim leaves short, which weighs waiting for
 * that pass. The allocation fails: the callbacks here all refuse.
 */
static void ask_beside_a_held_pass(struct rcl_domain *d)
{
    struct held_pass h;

    held_pass_start(&h, d);
    size_t full = charge_until_full();
    unsigned tok = rcl_domain_enter(d);
    void *p = rcl_alloc(OBJ_SIZE, RCL_DEFAULT | RCL__NOWARN);
    rcl_domain_exit(tok);
    rcl_uncharge(full);
    assert_true(held_pass_end(&h));
    assert_null(p);
}

/*
 * include/reclaim.h: may_reclaim runs in NORECLAIM scope on every path
 * that asks it - a reclaim pass, and an allocation that reclaim left short
 * deciding whether another thread's pass inside one of the domain's
 * shrinkers is worth waiting for (as the kernel's reclaimers wait for each
 * other's isolated pages, too_many_isolated()). The callback refuses, as
 * a file system inside a transaction does, so that only the other thread
 * is ever inside the shrinker.
 */
static _Atomic unsigned asked_in_pass, asked_outside_pass, asked_with_reclaim;

static int note_scope_and_refuse(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    atomic_fetch_add(rcl__shrinking_here() ? &asked_in_pass : &asked_outside_pass, 1);
    if (!(rcl_scope_current() & RCL_SCOPE_NORECLAIM))
        atomic_fetch_add(&asked_with_reclaim, 1);
    return 0;
}

TEST_WITH(may_reclaim_runs_without_reclaim_on_every_path, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("txn-fs", 0, note_scope_and_refuse, NULL);
    atomic_store(&asked_in_pass, 0);
    atomic_store(&asked_outside_pass, 0);
    atomic_store(&asked_with_reclaim, 0);
    ask_beside_a_held_pass(d);
    assert_true(atomic_load(&asked_in_pass) > 0);
    assert_true(atomic_load(&asked_outside_pass) > 0);
    assert_int_equal(atomic_load(&asked_with_reclaim), 0);
    rcl_domain_destroy(d);
}

/*
 * rcl_shutdown() from may_reclaim is refused on both paths, as from a
 * report function: the call that asked goes on after it - a pass with
 * the shrinker it asked about, an allocation weighing the wait - over
 * what a shutdown tears down.
 */
static _Atomic unsigned shutdowns_in_pass, shutdowns_outside_pass;

static int shut_down_and_refuse(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    atomic_fetch_add(rcl__shrinking_here() ? &shutdowns_in_pass : &shutdowns_outside_pass, 1);
    rcl_shutdown();
    return 0;
}

TEST_WITH(shutdown_from_may_reclaim_is_refused_on_every_path, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("txn-fs", 0, shut_down_and_refuse, NULL);
    atomic_store(&shutdowns_in_pass, 0);
    atomic_store(&shutdowns_outside_pass, 0);
    ask_beside_a_held_pass(d);
    unsigned in_pass = atomic_load(&shutdowns_in_pass);
    unsigned outside = atomic_load(&shutdowns_outside_pass);
    assert_true(in_pass > 0);
    assert_true(outside > 0);
    assert_int_equal(test_report_count(), in_pass + outside);
    assert_last_report_has("rcl_shutdown() from a domain's may_reclaim: refused");
    assert_int_equal(test_reports_contain("shrinker's callback"), 0);
    assert_int_equal(rcl_limit(), 64 * MiB);        /* the fixture's budget, never dropped */
    rcl_domain_destroy(d);
}

/*
 * A may_reclaim asked inside an LRU's isolate callback - an allocation
 * the callback makes, which reclaim leaves short - refuses the shutdown
 * as may_reclaim's on both paths, and hands the callback back marked as
 * the walk left it: a shutdown in the callback after the question is
 * refused as the isolate callback's. The marks nest as the walks inside
 * walks do (test_lru), whichever callback runs inside which.
 */
static _Atomic unsigned refused_in_isolate_after;

/* The last report caught is the refusal `what` names, and it is new. */
static bool refused_as(unsigned before, const char *what)
{
    return test_report_count() == before + 1 && strstr(test_report_last(), what) != NULL;
}

static enum rcl_lru_walk asks_then_shuts_down(struct rcl_lru_node *n, void *arg)
{
    (void)n;
    ask_beside_a_held_pass(arg);
    unsigned before = test_report_count();
    rcl_shutdown();
    if (refused_as(before, "rcl_shutdown() from an LRU's isolate callback: refused"))
        atomic_fetch_add(&refused_in_isolate_after, 1);
    return RCL_LRU_SKIP;
}

/* An LRU of one item, walked once with isolate; emptied and destroyed. */
static void walk_one(enum rcl_lru_walk (*isolate)(struct rcl_lru_node *, void *), void *arg)
{
    struct rcl_lru *l = rcl_lru_create();
    struct rcl_lru_node item, dispose;

    assert_non_null(l);
    rcl_lru_node_init(&item);
    assert_int_equal(rcl_lru_add(l, &item), 1);
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, isolate, arg, 1, &dispose), 0);
    assert_int_equal(rcl_lru_del(l, &item), 1);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

TEST_WITH(shutdown_from_may_reclaim_in_an_isolate_callback_is_refused_as_its_then_as_the_callbacks,
          domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("txn-fs", 0, shut_down_and_refuse, NULL);
    atomic_store(&shutdowns_in_pass, 0);
    atomic_store(&shutdowns_outside_pass, 0);
    atomic_store(&refused_in_isolate_after, 0);
    walk_one(asks_then_shuts_down, d);
    unsigned in_pass = atomic_load(&shutdowns_in_pass);
    unsigned outside = atomic_load(&shutdowns_outside_pass);
    assert_true(in_pass > 0);
    assert_true(outside > 0);
    assert_int_equal(atomic_load(&refused_in_isolate_after), 1);
    assert_int_equal(test_report_count(), in_pass + outside + 1);
    assert_true(test_reports_contain("rcl_shutdown() from a domain's may_reclaim: refused"));
    assert_int_equal(test_reports_contain("shrinker's callback"), 0);
    assert_int_equal(rcl_limit(), 64 * MiB);        /* the fixture's budget, never dropped */
    rcl_domain_destroy(d);
}

/*
 * The other nesting: a walk of the program's own LRU inside may_reclaim,
 * on both paths. The shutdown is refused in the walk's isolate callback,
 * and the walk hands may_reclaim back marked as asked: a shutdown after
 * the walk is refused as may_reclaim's.
 */
static _Atomic unsigned walks_asked, refused_in_inner_isolate, refused_after_walk;

static enum rcl_lru_walk shuts_down_and_skips(struct rcl_lru_node *n, void *arg)
{
    (void)n;
    (void)arg;
    /* In a pass the shrinker's refusal comes first (src/init.c); either
     * reason alone refuses. */
    const char *why = rcl__shrinking_here()
                          ? "rcl_shutdown() from a shrinker's callback: refused"
                          : "rcl_shutdown() from an LRU's isolate callback: refused";
    unsigned before = test_report_count();
    rcl_shutdown();
    if (refused_as(before, why))
        atomic_fetch_add(&refused_in_inner_isolate, 1);
    return RCL_LRU_SKIP;
}

static int walks_then_shuts_down(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    atomic_fetch_add(&walks_asked, 1);
    walk_one(shuts_down_and_skips, NULL);
    unsigned before = test_report_count();
    rcl_shutdown();
    if (refused_as(before, "rcl_shutdown() from a domain's may_reclaim: refused"))
        atomic_fetch_add(&refused_after_walk, 1);
    return 0;
}

TEST_WITH(shutdown_after_a_walk_inside_may_reclaim_is_still_refused_as_may_reclaims,
          domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("txn-fs", 0, walks_then_shuts_down, NULL);
    atomic_store(&walks_asked, 0);
    atomic_store(&refused_in_inner_isolate, 0);
    atomic_store(&refused_after_walk, 0);
    ask_beside_a_held_pass(d);
    unsigned asked = atomic_load(&walks_asked);
    assert_true(asked >= 2);                        /* in the pass and outside it */
    assert_int_equal(atomic_load(&refused_in_inner_isolate), asked);
    assert_int_equal(atomic_load(&refused_after_walk), asked);
    assert_int_equal(test_report_count(), 2 * asked);
    assert_int_equal(rcl_limit(), 64 * MiB);
    rcl_domain_destroy(d);
}

/*
 * The same paths: may_reclaim is the program's code, not a signal
 * handler's, so its allocations are ordinary ones - one larger than the
 * 256 bytes a signal handler may ask for succeeds, from the reserve that
 * NORECLAIM scope opens (the kernel's PF_MEMALLOC), though the budget is
 * full.
 */
static _Atomic unsigned allocated_in_pass, allocated_outside_pass, allocations_failed;

static int allocate_and_refuse(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    void *p = rcl_alloc(1 * KiB, RCL_DEFAULT | RCL__NOWARN);
    if (!p)
        atomic_fetch_add(&allocations_failed, 1);
    else
        atomic_fetch_add(rcl__shrinking_here() ? &allocated_in_pass : &allocated_outside_pass, 1);
    rcl_free(p);
    return 0;
}

TEST_WITH(may_reclaim_allocates_as_the_programs_code_on_every_path, domain_setup,
          domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("txn-fs", 0, allocate_and_refuse, NULL);
    atomic_store(&allocated_in_pass, 0);
    atomic_store(&allocated_outside_pass, 0);
    atomic_store(&allocations_failed, 0);
    ask_beside_a_held_pass(d);
    assert_true(atomic_load(&allocated_in_pass) > 0);
    assert_true(atomic_load(&allocated_outside_pass) > 0);
    assert_int_equal(atomic_load(&allocations_failed), 0);
    rcl_domain_destroy(d);
}

/*
 * The kernel calls no shrinker's code under shrinker_rwsem's write side,
 * and since 6.7 not under its read side either (mm/shrinker.c): the
 * program's code runs without the registry's lock. may_reclaim is the
 * program's code on every path, so it may call what takes that lock -
 * here a file system that looks at the shrinkers' statistics before it
 * answers - where under the lock it would wait for itself.
 */
static _Atomic unsigned counted_in_pass, counted_outside_pass;

static int count_shrinkers_and_refuse(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    unsigned n = rcl_stats_shrinkers(NULL, 0);
    atomic_fetch_add(rcl__shrinking_here() ? &counted_in_pass : &counted_outside_pass, n);
    return 0;
}

TEST_WITH(may_reclaim_runs_without_the_shrinker_registrys_lock, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("txn-fs", 0, count_shrinkers_and_refuse, NULL);
    atomic_store(&counted_in_pass, 0);
    atomic_store(&counted_outside_pass, 0);
    ask_beside_a_held_pass(d);
    assert_true(atomic_load(&counted_in_pass) > 0);
    assert_true(atomic_load(&counted_outside_pass) > 0);
    rcl_domain_destroy(d);
}

/*
 * may_reclaim is the program's code run inside the asking thread's
 * allocation: a scope it opens and never closes, or a domain it enters and
 * never exits, would restrict every later allocation of that thread. Said
 * and put back, as a shrinker's callbacks and a work item are. (The thread
 * stayed in NOFS, or inside the domain, for good.)
 */
static int leave_nofs_open_and_refuse(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    (void)rcl_nofs_save();
    return 0;
}

TEST_WITH(may_reclaim_that_leaves_a_scope_open_is_reported_and_repaired, domain_setup,
          domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("fs", 0, leave_nofs_open_and_refuse, NULL);
    struct test_cache *c = cache_new("fs-cache", d, 0);

    unsigned tok = rcl_domain_enter(d);
    (void)rcl_reclaim(WANT, RCL_DEFAULT);
    unsigned scope = rcl_scope_current();
    rcl_domain_exit(tok);

    assert_int_equal(scope, 0);
    assert_true(test_reports_seen_matching("may_reclaim returned with the scope changed") >= 1);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

static struct rcl_domain *entered_by_callback;

static int enter_another_and_refuse(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    (void)rcl_domain_enter(entered_by_callback);
    return 0;
}

TEST_WITH(may_reclaim_that_leaves_a_domain_entered_is_reported_and_repaired, domain_setup,
          domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("fs", 0, enter_another_and_refuse, NULL);
    struct test_cache *c = cache_new("fs-cache", d, 0);
    struct rcl_domain *in[RCL_MAX_DOMAINS];

    entered_by_callback = rcl_domain_create("other", 0, NULL, NULL);
    unsigned tok = rcl_domain_enter(d);
    (void)rcl_reclaim(WANT, RCL_DEFAULT);
    unsigned n = entered(in, RCL_MAX_DOMAINS);
    rcl_domain_exit(tok);

    assert_int_equal(n, 1);
    assert_true(test_reports_seen_matching("may_reclaim returned inside") >= 1);
    test_cache_free(c);
    rcl_domain_destroy(d);
    rcl_domain_destroy(entered_by_callback);
}

/*
 * A may_reclaim handed the asking thread's token (or able to reach it)
 * cannot exit that thread's domain: the exit is refused and said, as an
 * exit out of order is. (The thread was left outside a domain it entered,
 * its own exit then refused, and the domain could be destroyed while the
 * pass went on asking it.)
 */
static unsigned callers_token;

static int exit_the_callers_domain_and_refuse(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    rcl_domain_exit(callers_token);
    return 0;
}

/* A reclaim inside d, whose callback tries to exit d with the caller's
 * token: refused and said, and the caller is still in d alone, until its
 * own exit. */
static void reclaim_inside_keeps_the_callers_domain(struct rcl_domain *d)
{
    struct rcl_domain *in[RCL_MAX_DOMAINS];

    callers_token = rcl_domain_enter(d);
    (void)rcl_reclaim(WANT, RCL_DEFAULT);
    unsigned n = entered(in, RCL_MAX_DOMAINS);
    assert_true(test_reports_seen_matching("from a may_reclaim callback or a shrinker's") >= 1);
    rcl_domain_exit(callers_token);

    assert_int_equal(n, 1);
    assert_ptr_equal(in[0], d);
    assert_int_equal(entered(in, RCL_MAX_DOMAINS), 0);
    assert_int_equal(test_reports_unread(), 0);
}

TEST_WITH(may_reclaim_cannot_exit_a_domain_the_asking_thread_entered, domain_setup,
          domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("fs", 0, exit_the_callers_domain_and_refuse, NULL);
    struct test_cache *c = cache_new("fs-cache", d, 0);

    reclaim_inside_keeps_the_callers_domain(d);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/*
 * A shrinker's scan handed the reclaiming thread's token cannot exit that
 * thread's domain either: refused and said. (The thread was left outside
 * a domain it entered, and its own exit then found no such domain.)
 */
static unsigned long exit_the_callers_domain_in_scan(void *priv, struct rcl_shrink_control *sc)
{
    rcl_domain_exit(callers_token);
    return test_cache_scan(priv, sc);
}

TEST_WITH(a_shrinker_cannot_exit_a_domain_the_reclaiming_thread_entered, domain_setup,
          domain_teardown)
{
    static const struct rcl_shrinker_ops ops = { .count = test_cache_count,
                                                 .scan = exit_the_callers_domain_in_scan };
    struct rcl_domain *d = rcl_domain_create("fs", 0, NULL, NULL);
    struct test_cache *c = test_cache_new_ops("plain-cache", CACHE_MAX, OBJ_SIZE, &ops, NULL);

    test_cache_fill(c, CACHE_MAX);
    reclaim_inside_keeps_the_callers_domain(d);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/* A shrinker that returns inside a domain it entered is said, and the
 * domain exited: the reclaiming thread is not left restricted by it. */
static struct rcl_domain *entered_in_scan;

static unsigned long enter_and_stay_in_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)rcl_domain_enter(entered_in_scan);
    return test_cache_scan(priv, sc);
}

TEST_WITH(a_shrinker_that_returns_inside_a_domain_it_entered_is_reported_and_it_exited,
          domain_setup, domain_teardown)
{
    static const struct rcl_shrinker_ops ops = { .count = test_cache_count,
                                                 .scan = enter_and_stay_in_scan };
    struct test_cache *c = test_cache_new_ops("plain-cache", CACHE_MAX, OBJ_SIZE, &ops, NULL);
    struct rcl_domain *in[RCL_MAX_DOMAINS];

    entered_in_scan = rcl_domain_create("other", 0, NULL, NULL);
    test_cache_fill(c, CACHE_MAX);
    (void)rcl_reclaim(WANT, RCL_DEFAULT);

    assert_int_equal(entered(in, RCL_MAX_DOMAINS), 0);
    assert_true(test_reports_seen_matching("returned inside") >= 1);
    test_cache_free(c);
    rcl_domain_destroy(entered_in_scan);
}

/*
 * A may_reclaim that restores a context the asking thread adopted, or one
 * captured outside the domains the thread entered since, cannot take
 * those domains away either: refused and said, the adopt still the
 * caller's to restore. (The thread was left outside the domains it had
 * adopted, and its own restore found them gone.)
 */
static struct rcl_context callers_saved;

static int restore_the_callers_context(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    rcl_context_restore(&callers_saved);
    return 0;
}

TEST_WITH(may_reclaim_cannot_restore_a_context_the_asking_thread_adopted, domain_setup,
          domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("fs", 0, restore_the_callers_context, NULL);
    struct test_cache *c = cache_new("fs-cache", d, 0);
    struct rcl_domain *in[RCL_MAX_DOMAINS];
    struct rcl_context ctx;

    unsigned tok = rcl_domain_enter(d);
    rcl_context_capture(&ctx);
    rcl_domain_exit(tok);
    rcl_context_adopt(&ctx, &callers_saved);
    (void)rcl_reclaim(WANT, RCL_DEFAULT);
    unsigned n = entered(in, RCL_MAX_DOMAINS);
    assert_true(test_reports_seen_matching("rcl_context_restore: from a may_reclaim") >= 1);
    rcl_context_restore(&callers_saved);

    assert_int_equal(n, 1);
    assert_ptr_equal(in[0], d);
    assert_int_equal(entered(in, RCL_MAX_DOMAINS), 0);
    assert_int_equal(test_reports_unread(), 0);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/*
 * A callback that adopts a context and returns without its restore leaves
 * an adopt no one can restore: it is said, and ended as the callback
 * returns. (It stayed outstanding, the caller's own restore of the adopt
 * that put it inside "a" became one out of order, kept for ever, and the
 * thread stayed inside "a", which could no longer be destroyed.)
 */
static struct rcl_context context_in_b;

static void adopt_b_and_keep_it(void)
{
    struct rcl_context saved;

    rcl_context_adopt(&context_in_b, &saved);
}

static unsigned long adopt_and_stay_in_scan(void *priv, struct rcl_shrink_control *sc)
{
    adopt_b_and_keep_it();
    return test_cache_scan(priv, sc);
}

static int adopt_and_stay_and_refuse(struct rcl_domain *d, void *arg)
{
    (void)d;
    (void)arg;
    adopt_b_and_keep_it();
    return 0;
}

/* A reclaim under an adopt of "a"'s context, whose callback adopts "b"'s
 * and keeps it: said, and the caller's restore leaves the thread outside
 * both. */
static void reclaim_under_an_adopt_ends_the_callbacks_adopt(struct rcl_domain *a,
                                                            struct rcl_domain *b,
                                                            const char *said)
{
    struct rcl_context in_a, saved;

    unsigned tok = rcl_domain_enter(b);
    rcl_context_capture(&context_in_b);
    rcl_domain_exit(tok);
    tok = rcl_domain_enter(a);
    rcl_context_capture(&in_a);
    rcl_domain_exit(tok);

    rcl_context_adopt(&in_a, &saved);
    (void)rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_context_restore(&saved);

    assert_int_equal(entered(NULL, 0), 0);
    assert_true(test_reports_seen_matching(said) >= 1);
    assert_int_equal(test_reports_unread(), 0);
}

TEST_WITH(a_shrinker_that_returns_with_a_context_adopted_is_reported_and_it_ended,
          domain_setup, domain_teardown)
{
    static const struct rcl_shrinker_ops ops = { .count = test_cache_count,
                                                 .scan = adopt_and_stay_in_scan };
    struct test_cache *c = test_cache_new_ops("plain-cache", CACHE_MAX, OBJ_SIZE, &ops, NULL);
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 1, NULL, NULL);

    test_cache_fill(c, CACHE_MAX);
    reclaim_under_an_adopt_ends_the_callbacks_adopt(a, b, "shrinker \"plain-cache\" returned "
                                                    "with 1 context adopt(s) never restored");
    test_cache_free(c);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

TEST_WITH(may_reclaim_that_returns_with_a_context_adopted_is_reported_and_it_ended,
          domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, adopt_and_stay_and_refuse, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 1, NULL, NULL);
    struct test_cache *c = cache_new("fs-cache", a, 0);

    reclaim_under_an_adopt_ends_the_callbacks_adopt(a, b, "may_reclaim returned with 1 "
                                                    "context adopt(s) never restored");
    test_cache_free(c);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/*
 * An adopt a callback never restored takes its worst case with it when it
 * is ended: a context naming a destroyed domain, adopted in a scan and
 * kept, leaves the thread outside every domain after the reclaim, free to
 * reclaim from every domain's shrinkers. (The worst case stayed, and every
 * domain's shrinker was skipped for that thread for good.)
 */
static struct rcl_context context_of_a_gone_domain;

static unsigned long adopt_a_gone_domain_in_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct rcl_context saved;

    rcl_context_adopt(&context_of_a_gone_domain, &saved);
    return test_cache_scan(priv, sc);
}

TEST_WITH(an_adopt_a_shrinker_kept_leaves_no_worst_case_behind, domain_setup, domain_teardown)
{
    static const struct rcl_shrinker_ops ops = { .count = test_cache_count,
                                                 .scan = adopt_a_gone_domain_in_scan };
    struct test_cache *plain = test_cache_new_ops("plain-cache", CACHE_MAX, OBJ_SIZE, &ops,
                                                  NULL);
    struct rcl_domain *gone = rcl_domain_create("gone", 0, NULL, NULL);

    unsigned tok = rcl_domain_enter(gone);
    rcl_context_capture(&context_of_a_gone_domain);
    rcl_domain_exit(tok);
    rcl_domain_destroy(gone);
    test_cache_fill(plain, CACHE_MAX);
    (void)rcl_reclaim(WANT, RCL_DEFAULT);
    bool inside = rcl__domain_inside();
    test_cache_free(plain);

    struct rcl_domain *d = rcl_domain_create("d", 0, NULL, NULL);
    struct test_cache *c = cache_new("d-cache", d, 0);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);

    assert_false(inside);
    assert_true(freed > 0);
    assert_true(test_reports_seen_matching("has been destroyed since") >= 1);
    assert_true(test_reports_seen_matching("never restored") >= 1);
    assert_int_equal(test_reports_unread(), 0);
    test_cache_free(c);
    rcl_domain_destroy(d);
}

/* The kernel's current->journal_info: per task, set returns the previous. */
static void *journal_of_new_thread(void *arg)
{
    (void)arg;
    return rcl_journal_info();
}

TEST_WITH(journal_info_is_per_thread_and_set_returns_previous, domain_setup, domain_teardown)
{
    int a, b;
    assert_null(rcl_journal_info_set(&a));
    assert_ptr_equal(rcl_journal_info_set(&b), &a);
    assert_ptr_equal(rcl_journal_info(), &b);

    pthread_t th;
    void *seen = &a;
    assert_int_equal(pthread_create(&th, NULL, journal_of_new_thread, NULL), 0);
    pthread_join(th, &seen);
    assert_null(seen);

    assert_ptr_equal(rcl_journal_info_set(NULL), &b);
}

TEST_MAIN();
