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

#include "internal.h"   /* rcl__domain_entered: the stack the lock checker reads */

/* ------------------------------------------------------------------------ */
/* A small cache with a shrinker that records what it was told               */
/* ------------------------------------------------------------------------ */

#define OBJ_SIZE (4 * KiB)
#define CACHE_MAX 256

struct cache {
    pthread_mutex_t lock;
    void *obj[CACHE_MAX];
    unsigned n;
    struct rcl_shrinker *shrinker;
    /* what the last callback saw */
    _Atomic unsigned calls;
    _Atomic rcl_gfp_t last_gfp;
    struct rcl_domain *_Atomic last_domain;
    /* a file-system cache: frees nothing without RCL__FS, as the kernel's
     * super_cache_scan() returns SHRINK_STOP for a !__GFP_FS context */
    bool fs;
};

static unsigned long cache_count(void *priv, struct rcl_shrink_control *sc)
{
    struct cache *c = priv;
    (void)sc;
    pthread_mutex_lock(&c->lock);
    unsigned long n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n ? n : RCL_SHRINK_EMPTY;
}

static unsigned long cache_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct cache *c = priv;
    atomic_fetch_add(&c->calls, 1);
    atomic_store(&c->last_gfp, sc->gfp);
    atomic_store(&c->last_domain, sc->domain);
    if (c->fs && !(sc->gfp & RCL__FS))
        return RCL_SHRINK_STOP;
    unsigned long freed = 0;
    pthread_mutex_lock(&c->lock);
    while (c->n > 0 && freed < sc->nr_to_scan) {
        rcl_free(c->obj[--c->n]);
        freed++;
    }
    pthread_mutex_unlock(&c->lock);
    return freed;
}

static const struct rcl_shrinker_ops cache_ops = { cache_count, cache_scan };

static void cache_fill(struct cache *c, unsigned n)
{
    pthread_mutex_lock(&c->lock);
    while (c->n < n) {
        void *p = rcl_alloc(OBJ_SIZE, RCL_DEFAULT);
        assert_non_null(p);
        c->obj[c->n++] = p;
    }
    pthread_mutex_unlock(&c->lock);
}

static struct cache *cache_new(const char *name, struct rcl_domain *d, rcl_gfp_t needs)
{
    struct cache *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    pthread_mutex_init(&c->lock, NULL);
    struct rcl_shrinker_opts o = { .domain = d, .needs = needs };
    c->shrinker = rcl_shrinker_register(name, &cache_ops, c, &o);
    assert_non_null(c->shrinker);
    cache_fill(c, CACHE_MAX);
    return c;
}

static void cache_free(struct cache *c)
{
    rcl_shrinker_unregister(c->shrinker);
    while (c->n > 0)
        rcl_free(c->obj[--c->n]);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Enough to have every shrinker scanned at the lowest priority. */
#define WANT (2 * CACHE_MAX * OBJ_SIZE)

/*
 * Each test starts and ends with this thread outside every domain, with no
 * journal cookie and no scope, even when a failed assertion left a test
 * half way: restoring a context captured from the clean thread pops
 * whatever is left, so one failure does not cascade into the next test.
 */
static struct rcl_context clean_ctx;
static bool clean_taken;

static int domain_setup(void **state)
{
    if (!clean_taken) {
        rcl_context_capture(&clean_ctx);
        clean_taken = true;
    }
    return test_setup(state);
}

static int domain_teardown(void **state)
{
    rcl_context_restore(&clean_ctx);
    return test_teardown(state);
}

#undef T
#define T(fn) cmocka_unit_test_setup_teardown(fn, domain_setup, domain_teardown)

static int allow(struct rcl_domain *d, void *arg) { (void)d; (void)arg; return 1; }
static int refuse(struct rcl_domain *d, void *arg) { (void)d; (void)arg; return 0; }

/* ------------------------------------------------------------------------ */
/* Creation and accessors                                                    */
/* ------------------------------------------------------------------------ */

static void create_without_name_is_einval(void **state)
{
    (void)state;
    errno = 0;
    assert_null(rcl_domain_create(NULL, 0, NULL, NULL));
    assert_int_equal(errno, EINVAL);
}

static void create_copies_name_and_keeps_depth(void **state)
{
    (void)state;
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
static void same_domain_without_callback_skips_its_shrinker(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("fs", 0, NULL, NULL);
    struct cache *c = cache_new("fs-cache", d, 0);

    unsigned tok = rcl_domain_enter(d);
    assert_int_not_equal(tok, 0);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_int_equal(freed, 0);
    assert_int_equal(atomic_load(&c->calls), 0);
    assert_int_equal(c->n, CACHE_MAX);
    cache_free(c);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 0);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020), same superblock:
 * the file system decides. A yes lets reclaim in with the caller's flags
 * unchanged. */
static void same_domain_reclaims_when_may_reclaim_allows(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("fs", 0, allow, NULL);
    struct cache *c = cache_new("fs-cache", d, 0);

    unsigned tok = rcl_domain_enter(d);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_true(freed > 0);
    assert_true(atomic_load(&c->calls) > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & (RCL__FS | RCL__IO), RCL__FS | RCL__IO);
    cache_free(c);
    rcl_domain_destroy(d);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020), same superblock:
 * a no from the file system skips the shrinker. */
static void same_domain_is_skipped_when_may_reclaim_refuses(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("fs", 0, refuse, NULL);
    struct cache *c = cache_new("fs-cache", d, 0);

    unsigned tok = rcl_domain_enter(d);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_int_equal(freed, 0);
    assert_int_equal(atomic_load(&c->calls), 0);
    cache_free(c);
    rcl_domain_destroy(d);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): "superblock
 * nesting depth is different, apply GFP_NOFS reclaim unconditionally" - a
 * loop device may stack one file system on the other. */
static void other_depth_reclaims_as_nofs(void **state)
{
    (void)state;
    struct rcl_domain *upper = rcl_domain_create("upper", 1, NULL, NULL);
    struct rcl_domain *lower = rcl_domain_create("lower", 0, NULL, NULL);
    struct cache *c = cache_new("lower-cache", lower, 0);

    unsigned tok = rcl_domain_enter(upper);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_true(freed > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__FS, 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__IO, RCL__IO);
    cache_free(c);
    rcl_domain_destroy(upper);
    rcl_domain_destroy(lower);
}

/* The same rule for a shrinker that declares it needs FS: as under a NOFS
 * scope, it is not called at all. */
static void other_depth_skips_shrinker_that_needs_fs(void **state)
{
    (void)state;
    struct rcl_domain *upper = rcl_domain_create("upper", 1, NULL, NULL);
    struct rcl_domain *lower = rcl_domain_create("lower", 0, NULL, NULL);
    struct cache *c = cache_new("lower-cache", lower, RCL__FS);

    unsigned tok = rcl_domain_enter(upper);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_int_equal(freed, 0);
    assert_int_equal(atomic_load(&c->calls), 0);
    cache_free(c);
    rcl_domain_destroy(upper);
    rcl_domain_destroy(lower);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): "superblock
 * different apply GFP_KERNEL reclaim" - a sibling file system at the same
 * depth cannot recurse into ours, so it gets full flags, even a file-system
 * shrinker that would stop without FS. */
static void other_domain_same_depth_is_unrestricted(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 0, NULL, NULL);
    struct cache *c = cache_new("b-cache", b, RCL__FS);
    c->fs = true;

    unsigned tok = rcl_domain_enter(a);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_true(freed > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & (RCL__FS | RCL__IO), RCL__FS | RCL__IO);
    cache_free(c);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* Only a domain's own shrinkers are affected: a shrinker that belongs to no
 * domain (a plain cache) sees the caller's flags unchanged. */
static void shrinker_without_domain_is_unaffected(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("d", 3, NULL, NULL);
    struct cache *c = cache_new("plain", NULL, 0);

    unsigned tok = rcl_domain_enter(d);
    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_true(freed > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__FS, RCL__FS);
    assert_null(atomic_load(&c->last_domain));
    cache_free(c);
    rcl_domain_destroy(d);
}

/* A thread in no domain reclaims from every domain's shrinkers as before. */
static void thread_outside_domains_is_unaffected(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("d", 0, NULL, NULL);
    struct cache *c = cache_new("d-cache", d, RCL__FS);

    size_t freed = rcl_reclaim(WANT, RCL_DEFAULT);

    assert_true(freed > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__FS, RCL__FS);
    cache_free(c);
    rcl_domain_destroy(d);
}

/* ------------------------------------------------------------------------ */
/* Combining rules and scopes                                                */
/* ------------------------------------------------------------------------ */

/* docs/design.md: "Several entered domains: the most restrictive answer wins."
 * Inside A (depth 0, reclaim from itself allowed) and B (depth 1): A's own
 * cache is asked (yes) but B's depth differs, so it is reclaimed as NOFS;
 * a sibling C of A at depth 0 is NOFS too, for the same reason. */
static void most_restrictive_domain_wins_nofs(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("a", 0, allow, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 1, allow, NULL);
    struct rcl_domain *cdom = rcl_domain_create("c", 0, allow, NULL);
    struct cache *ca = cache_new("a-cache", a, 0);
    struct cache *cc = cache_new("c-cache", cdom, 0);

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
    cache_free(ca);
    cache_free(cc);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
    rcl_domain_destroy(cdom);
    assert_int_equal(test_report_count(), 0);
}

/* Most restrictive wins: skipping beats NOFS beats unrestricted. Inside A
 * (refuses) and a sibling B at the same depth (allows): A's cache is skipped
 * although B alone would have let reclaim in unrestricted. */
static void most_restrictive_domain_wins_skip(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("a", 0, refuse, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 0, allow, NULL);
    struct cache *ca = cache_new("a-cache", a, 0);
    struct cache *cb = cache_new("b-cache", b, 0);

    unsigned tb = rcl_domain_enter(b);
    unsigned ta = rcl_domain_enter(a);
    rcl_reclaim(2 * WANT, RCL_DEFAULT);
    rcl_domain_exit(ta);
    rcl_domain_exit(tb);

    assert_int_equal(atomic_load(&ca->calls), 0);
    assert_true(atomic_load(&cb->calls) > 0);
    assert_int_equal(atomic_load(&cb->last_gfp) & RCL__FS, RCL__FS);
    cache_free(ca);
    cache_free(cb);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* docs/design.md: a domain never widens what a scope forbids. A sibling at the
 * same depth would be unrestricted, but the thread is also in NOFS scope
 * (memalloc_nofs_save), so the shrinker still sees no FS. */
static void nofs_scope_still_applies_inside_domain(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 0, NULL, NULL);
    struct cache *c = cache_new("b-cache", b, 0);

    unsigned tok = rcl_domain_enter(a);
    unsigned nofs = rcl_nofs_save();
    rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_nofs_restore(nofs);
    rcl_domain_exit(tok);

    assert_true(atomic_load(&c->calls) > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & RCL__FS, 0);
    cache_free(c);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* The same for NOIO (memalloc_noio_save clears IO and FS): even a domain
 * whose own callback allows reclaim gets neither. */
static void noio_scope_still_applies_inside_domain(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("a", 0, allow, NULL);
    struct cache *c = cache_new("a-cache", a, 0);

    unsigned tok = rcl_domain_enter(a);
    unsigned noio = rcl_noio_save();
    rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_noio_restore(noio);
    rcl_domain_exit(tok);

    assert_true(atomic_load(&c->calls) > 0);
    assert_int_equal(atomic_load(&c->last_gfp) & (RCL__FS | RCL__IO), 0);
    cache_free(c);
    rcl_domain_destroy(a);
}

/* include/reclaim.h, struct rcl_shrink_control: the shrinker sees the domain
 * it belongs to and the flags left after the domain rules. */
static void control_shows_domain_and_narrowed_flags(void **state)
{
    (void)state;
    struct rcl_domain *upper = rcl_domain_create("upper", 1, NULL, NULL);
    struct rcl_domain *lower = rcl_domain_create("lower", 0, NULL, NULL);
    struct cache *c = cache_new("lower-cache", lower, 0);

    unsigned tok = rcl_domain_enter(upper);
    rcl_reclaim(WANT, RCL_DEFAULT | RCL__NOWARN);
    rcl_domain_exit(tok);

    assert_ptr_equal(atomic_load(&c->last_domain), lower);
    rcl_gfp_t g = atomic_load(&c->last_gfp);
    assert_int_equal(g & RCL__FS, 0);
    /* narrowed, not replaced: everything else the caller gave is still there */
    assert_int_equal(g & (RCL__IO | RCL__DIRECT_RECLAIM | RCL__NOWARN),
                     RCL__IO | RCL__DIRECT_RECLAIM | RCL__NOWARN);
    cache_free(c);
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

static void may_reclaim_sees_journal_info(void **state)
{
    (void)state;
    struct txn_fs fs = { 0 };
    struct rcl_domain *d = rcl_domain_create("txn-fs", 0, txn_may_reclaim, &fs);
    struct cache *c = cache_new("txn-cache", d, 0);
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
    cache_free(c);
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

static void may_reclaim_runs_in_reclaiming_thread_without_reclaim(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("d", 0, check_context, NULL);
    struct cache *c = cache_new("d-cache", d, 0);
    asker_thread = pthread_self();
    atomic_store(&asker_ok, 0);

    unsigned tok = rcl_domain_enter(d);
    rcl_reclaim(WANT, RCL_DEFAULT);
    rcl_domain_exit(tok);

    assert_int_equal(atomic_load(&asker_ok), 1);
    assert_int_equal(rcl_scope_current() & RCL_SCOPE_NORECLAIM, 0);
    cache_free(c);
    rcl_domain_destroy(d);
}

/* The kernel's current->journal_info: per task, set returns the previous. */
static void *journal_of_new_thread(void *arg)
{
    (void)arg;
    return rcl_journal_info();
}

static void journal_info_is_per_thread_and_set_returns_previous(void **state)
{
    (void)state;
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

/* ------------------------------------------------------------------------ */
/* Enter and exit                                                            */
/* ------------------------------------------------------------------------ */

static unsigned entered(struct rcl_domain **out, unsigned max)
{
    return rcl__domain_entered(out, max);
}

/* Domains nest like scopes: exits in reverse order restore each level. */
static void enter_and_exit_nest(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 1, NULL, NULL);
    struct rcl_domain *list[4];

    unsigned ta = rcl_domain_enter(a);
    unsigned tb = rcl_domain_enter(b);
    unsigned ta2 = rcl_domain_enter(a);       /* re-entering is allowed */
    assert_true(ta && tb && ta2);
    assert_true(ta != tb && tb != ta2 && ta != ta2);
    assert_int_equal(entered(list, 4), 3);
    assert_ptr_equal(list[0], a);
    assert_ptr_equal(list[1], b);
    assert_ptr_equal(list[2], a);             /* innermost last */

    rcl_domain_exit(ta2);
    assert_int_equal(entered(list, 4), 2);
    assert_ptr_equal(list[1], b);
    rcl_domain_exit(tb);
    rcl_domain_exit(ta);
    assert_int_equal(entered(list, 4), 0);
    assert_int_equal(test_report_count(), 0);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
    assert_int_equal(test_report_count(), 0);
}

/* An exit out of order is reported, not silently accepted, and changes
 * nothing: the inner domain still holds until its own exit. */
static void exit_out_of_order_is_reported_and_ignored(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("outer", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("inner", 1, NULL, NULL);
    struct rcl_domain *list[4];

    unsigned ta = rcl_domain_enter(a);
    unsigned tb = rcl_domain_enter(b);
    rcl_domain_exit(ta);
    assert_int_equal(test_report_count(), 1);
    assert_non_null(strstr(test_reports.last, "out of order"));
    assert_int_equal(entered(list, 4), 2);
    assert_ptr_equal(list[0], a);
    assert_ptr_equal(list[1], b);

    rcl_domain_exit(tb);
    rcl_domain_exit(ta);
    assert_int_equal(entered(list, 4), 0);
    assert_int_equal(test_report_count(), 1);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* A token that was never handed out, one already used, or one from another
 * thread: reported, nothing changes. */
static unsigned foreign_token;
static struct rcl_domain *foreign_domain;
static void *enter_in_thread(void *arg)
{
    (void)arg;
    foreign_token = rcl_domain_enter(foreign_domain);
    rcl_domain_exit(foreign_token);
    return NULL;
}

static void exit_with_bogus_token_is_reported(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("d", 0, NULL, NULL);
    struct rcl_domain *list[2];
    unsigned tok = rcl_domain_enter(d);

    rcl_domain_exit(tok ^ 0x40000000u);          /* never handed out */
    assert_int_equal(test_report_count(), 1);

    foreign_domain = d;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, enter_in_thread, NULL), 0);
    pthread_join(th, NULL);
    rcl_domain_exit(foreign_token);              /* another thread's */
    assert_int_equal(test_report_count(), 2);
    assert_int_equal(entered(list, 2), 1);

    rcl_domain_exit(tok);
    rcl_domain_exit(tok);                        /* already used */
    assert_int_equal(test_report_count(), 3);
    assert_int_equal(entered(list, 2), 0);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 3);
}

/* Entering NULL is a no-op that returns 0, and exiting 0 is one too, so
 * code that may or may not have a domain needs no branch. */
static void enter_null_and_exit_zero_do_nothing(void **state)
{
    (void)state;
    assert_int_equal(rcl_domain_enter(NULL), 0);
    rcl_domain_exit(0);
    assert_int_equal(entered(NULL, 0), 0);
    assert_int_equal(test_report_count(), 0);
}

/* A thread may be inside RCL_MAX_DOMAINS (16) domains, and entering them
 * allocates nothing: the stack is per thread and fixed (a path short of
 * memory must be able to say which file system it protects). */
static void sixteen_nested_domains_without_allocating(void **state)
{
    (void)state;
    struct rcl_domain *d[RCL_MAX_DOMAINS], *list[RCL_MAX_DOMAINS];
    unsigned tok[RCL_MAX_DOMAINS];
    char name[16];
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++) {
        snprintf(name, sizeof(name), "fs%u", i);
        d[i] = rcl_domain_create(name, i, NULL, NULL);
        assert_non_null(d[i]);
    }
    /* The thread's first touch of the library's thread-local block may
     * allocate it (dynamic TLS); that is the thread's cost, not enter's. */
    rcl_domain_exit(rcl_domain_enter(d[0]));

    struct rcl_stats before, after;
    rcl_stats_get(&before);
    struct mallinfo2 mb = mallinfo2();
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        tok[i] = rcl_domain_enter(d[i]);
    struct mallinfo2 ma = mallinfo2();
    rcl_stats_get(&after);

    assert_int_equal(ma.uordblks, mb.uordblks);      /* libc heap: not a byte */
    assert_int_equal(after.allocations, before.allocations);
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        assert_int_not_equal(tok[i], 0);
    assert_int_equal(entered(list, RCL_MAX_DOMAINS), RCL_MAX_DOMAINS);
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        assert_ptr_equal(list[i], d[i]);
    assert_int_equal(test_report_count(), 0);

    for (unsigned i = RCL_MAX_DOMAINS; i-- > 0;)
        rcl_domain_exit(tok[i]);
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        rcl_domain_destroy(d[i]);
    assert_int_equal(test_report_count(), 0);
}

static void seventeenth_domain_is_refused(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("d", 0, NULL, NULL);
    unsigned tok[RCL_MAX_DOMAINS];
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        tok[i] = rcl_domain_enter(d);
    assert_int_equal(test_report_count(), 0);

    assert_int_equal(rcl_domain_enter(d), 0);
    assert_int_equal(test_report_count(), 1);
    assert_non_null(strstr(test_reports.last, "RCL_MAX_DOMAINS"));
    rcl_domain_exit(0);                          /* the refused one: no-op */
    assert_int_equal(entered(NULL, 0), RCL_MAX_DOMAINS);

    for (unsigned i = RCL_MAX_DOMAINS; i-- > 0;)
        rcl_domain_exit(tok[i]);
    assert_int_equal(entered(NULL, 0), 0);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
}

/* ------------------------------------------------------------------------ */
/* Destroy                                                                   */
/* ------------------------------------------------------------------------ */

/* A domain a thread is still inside cannot go away under it. */
static void destroy_while_entered_is_refused(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("busy", 0, NULL, NULL);
    unsigned tok = rcl_domain_enter(d);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
    assert_non_null(strstr(test_reports.last, "busy"));
    assert_string_equal(rcl_domain_name(d), "busy");   /* still valid */

    rcl_domain_exit(tok);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
}

/* Entered in another thread counts as well: the count is across threads. */
struct holder {
    struct rcl_domain *d;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int stage;
};

static void *hold_domain(void *arg)
{
    struct holder *h = arg;
    unsigned tok = rcl_domain_enter(h->d);
    pthread_mutex_lock(&h->m);
    h->stage = 1;
    pthread_cond_broadcast(&h->cv);
    while (h->stage != 2)
        pthread_cond_wait(&h->cv, &h->m);
    pthread_mutex_unlock(&h->m);
    rcl_domain_exit(tok);
    return NULL;
}

static void destroy_while_entered_in_other_thread_is_refused(void **state)
{
    (void)state;
    struct holder h = { .d = rcl_domain_create("held", 0, NULL, NULL),
                        .m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_domain, &h), 0);
    pthread_mutex_lock(&h.m);
    while (h.stage != 1)
        pthread_cond_wait(&h.cv, &h.m);
    pthread_mutex_unlock(&h.m);

    rcl_domain_destroy(h.d);
    assert_int_equal(test_report_count(), 1);

    pthread_mutex_lock(&h.m);
    h.stage = 2;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.m);
    pthread_join(th, NULL);
    rcl_domain_destroy(h.d);
    assert_int_equal(test_report_count(), 1);
}

/* A domain that still owns shrinkers cannot go: their control structures
 * point at it. After unregistering them it can. */
static void destroy_with_shrinkers_is_refused(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("owner", 0, NULL, NULL);
    struct cache *c = cache_new("owned", d, 0);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
    assert_non_null(strstr(test_reports.last, "shrinker"));
    assert_int_equal(rcl_domain_depth(d), 0);
    assert_string_equal(rcl_domain_name(d), "owner");

    cache_free(c);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
}

/* Bad input: NULL and a second destroy are reported, nothing else happens. */
static void destroy_null_or_twice_is_reported(void **state)
{
    (void)state;
    rcl_domain_destroy(NULL);
    assert_int_equal(test_report_count(), 1);
    struct rcl_domain *d = rcl_domain_create("once", 0, NULL, NULL);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 2);
    assert_non_null(strstr(test_reports.last, "not a live domain"));
}

/* ------------------------------------------------------------------------ */
/* Context that travels                                                      */
/* ------------------------------------------------------------------------ */

/* The "mm: add PF_MEMALLOC_NOFS" thread (linux-kernel, April 2016): the
 * context must be conveyed to APIs that hand work to other threads. A worker
 * that adopts a captured context is inside the same domains, with the same
 * journal cookie, and after restore is back to its own state exactly. */
struct handoff {
    struct rcl_context ctx;
    struct cache *cache;
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

static void context_carries_domains_and_journal_to_another_thread(void **state)
{
    (void)state;
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
    cache_free(h.cache);
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

static void work_item_runs_inside_queuers_domains(void **state)
{
    (void)state;
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

/* Adopting adds the context's domains on top of the thread's own; restore
 * returns exactly to what was there, journal included, and nests. */
static void adopt_stacks_on_own_domains_and_restore_is_exact(void **state)
{
    (void)state;
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

/* A context that does not fit on top of the thread's domains is reported;
 * since the dropped domain could be any shrinker's own, every domain's
 * shrinkers are skipped until the restore - never less restrictive. */
static void adopt_overflow_is_reported_and_stays_strict(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 0, NULL, NULL);
    struct cache *cb = cache_new("b-cache", b, 0);
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
    cache_free(cb);
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
static struct cache *st_cache[ST_DOMAINS];
static _Atomic unsigned long st_violations, st_scans;
static __thread unsigned st_inside[ST_DOMAINS];     /* this thread's depth count */

static unsigned long st_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct cache *c = priv;
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
    return cache_scan(priv, sc);
}

static const struct rcl_shrinker_ops st_ops = { cache_count, st_scan };

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
            struct cache *c = st_cache[(r >> 12) % ST_DOMAINS];
            void *p = rcl_alloc(OBJ_SIZE, RCL_DEFAULT | RCL__NOWARN);
            if (p) {
                pthread_mutex_lock(&c->lock);
                if (c->n < CACHE_MAX) {
                    c->obj[c->n++] = p;
                    p = NULL;
                }
                pthread_mutex_unlock(&c->lock);
                rcl_free(p);
            }
        }
    }
    while (n > 0) {
        n--;
        st_inside[which[n]]--;
        rcl_domain_exit(tok[n]);
    }
    return NULL;
}

static void stress_domains_and_reclaim_many_threads(void **state)
{
    (void)state;
    char name[16];
    atomic_store(&st_violations, 0);
    atomic_store(&st_scans, 0);
    for (unsigned i = 0; i < ST_DOMAINS; i++) {
        snprintf(name, sizeof(name), "st%u", i);
        st_dom[i] = rcl_domain_create(name, i % 3, NULL, NULL);
        struct cache *c = calloc(1, sizeof(*c));
        assert_non_null(c);
        pthread_mutex_init(&c->lock, NULL);
        struct rcl_shrinker_opts o = { .domain = st_dom[i] };
        st_cache[i] = c;
        c->shrinker = rcl_shrinker_register(name, &st_ops, c, &o);
        assert_non_null(c->shrinker);
        cache_fill(c, CACHE_MAX / 2);
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
        cache_free(st_cache[i]);
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

static void stress_create_enter_destroy_many_threads(void **state)
{
    (void)state;
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

RUN_TESTS(
    T(create_without_name_is_einval),
    T(create_copies_name_and_keeps_depth),
    T(same_domain_without_callback_skips_its_shrinker),
    T(same_domain_reclaims_when_may_reclaim_allows),
    T(same_domain_is_skipped_when_may_reclaim_refuses),
    T(other_depth_reclaims_as_nofs),
    T(other_depth_skips_shrinker_that_needs_fs),
    T(other_domain_same_depth_is_unrestricted),
    T(shrinker_without_domain_is_unaffected),
    T(thread_outside_domains_is_unaffected),
    T(most_restrictive_domain_wins_nofs),
    T(most_restrictive_domain_wins_skip),
    T(nofs_scope_still_applies_inside_domain),
    T(noio_scope_still_applies_inside_domain),
    T(control_shows_domain_and_narrowed_flags),
    T(may_reclaim_sees_journal_info),
    T(may_reclaim_runs_in_reclaiming_thread_without_reclaim),
    T(journal_info_is_per_thread_and_set_returns_previous),
    T(enter_and_exit_nest),
    T(exit_out_of_order_is_reported_and_ignored),
    T(exit_with_bogus_token_is_reported),
    T(enter_null_and_exit_zero_do_nothing),
    T(sixteen_nested_domains_without_allocating),
    T(seventeenth_domain_is_refused),
    T(destroy_while_entered_is_refused),
    T(destroy_while_entered_in_other_thread_is_refused),
    T(destroy_with_shrinkers_is_refused),
    T(destroy_null_or_twice_is_reported),
    T(context_carries_domains_and_journal_to_another_thread),
    T(work_item_runs_inside_queuers_domains),
    T(adopt_stacks_on_own_domains_and_restore_is_exact),
    T(adopt_overflow_is_reported_and_stays_strict),
    T(stress_domains_and_reclaim_many_threads),
    T(stress_create_enter_destroy_many_threads),
)
