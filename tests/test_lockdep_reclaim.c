/* SPDX-License-Identifier: MIT */
/*
 * The lock checker and reclaim: the reclaim pseudo-locks (a lock held
 * across an allocation that a shrinker takes), the loop device deadlock of
 * the "Overhaul memalloc_no*" thread (dm-devel, June 2020), and reclaim
 * domains. Lock order itself: test_lockdep.c.
 *
 * Kernel counterpart: the fs_reclaim annotation of mm/page_alloc.c
 * (fs_reclaim_acquire/release) generalised to three context classes, and
 * flush_work()'s lock_map_acquire/release for waiting on work.
 */
#include "helpers.h"

#include <stdatomic.h>

#include "checker.h"
#include "lockdep.h"

/* ------------------------------------------------------------------------ */
/* Reclaim                                                                   */
/* ------------------------------------------------------------------------ */

static RCL_LOCK_CLASS(fs_lock, "fs_lock");

struct fs_cache {
    rcl_mutex_t *lock;
    int only_with_fs;      /* the correct shrinker: no FS, no lock */
    _Atomic int scans;
};

static unsigned long cache_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 1000;
}

/* An inode-cache style shrinker: takes the file system's lock. */
static unsigned long cache_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct fs_cache *c = priv;
    atomic_fetch_add(&c->scans, 1);
    if (c->only_with_fs && !(sc->gfp & RCL__FS))
        return RCL_SHRINK_STOP;
    rcl_mutex_lock(c->lock);
    rcl_mutex_unlock(c->lock);
    return RCL_SHRINK_STOP;
}

static const struct rcl_shrinker_ops cache_ops = { cache_count, cache_scan };

/* The classic (what the kernel's fs_reclaim annotation exists for): a lock
 * held across a reclaim-capable allocation that a shrinker also takes. */
TEST_WITH(lock_across_default_alloc_taken_in_fs_shrinker_is_reported, ld_setup, ld_teardown)
{
    rcl_mutex_t m;
    rcl_mutex_init(&m, &fs_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker *s = rcl_shrinker_register("inode-cache", &cache_ops, &c, NULL);
    assert_non_null(s);

    rcl_reclaim(1, RCL_DEFAULT);          /* reclaim takes fs_lock */
    assert_true(atomic_load(&c.scans) > 0);
    assert_int_equal(rcl_lockdep_reports(), 0);

    rcl_mutex_lock(&m);
    void *p = rcl_alloc(100, RCL_DEFAULT); /* no reclaim needed: still recorded */
    rcl_mutex_unlock(&m);
    rcl_free(p);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("fs_lock \u2192 reclaim(FS+IO) \u2192 fs_lock");
    assert_reports_have("inode-cache");
    assert_reports_have("NOFS/NOIO");
    rcl_shrinker_unregister(s);
}

/* The order does not matter: the allocation first, the shrinker later. */
TEST_WITH(alloc_first_then_shrinker_is_reported, ld_setup, ld_teardown)
{
    rcl_mutex_t m;
    rcl_mutex_init(&m, &fs_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker *s = rcl_shrinker_register("inode-cache", &cache_ops, &c, NULL);

    rcl_mutex_lock(&m);
    rcl_might_alloc(RCL_DEFAULT);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_reclaim(1, RCL_DEFAULT);
    assert_int_equal(rcl_lockdep_reports(), 1);
    rcl_shrinker_unregister(s);
}

/* The fix the kernel recommends: a NOFS scope where the lock is held, and
 * a shrinker that does not take it without FS. */
TEST_WITH(nofs_scope_around_lock_removes_report, ld_setup, ld_teardown)
{
    rcl_mutex_t m;
    rcl_mutex_init(&m, &fs_lock);
    struct fs_cache c = { .lock = &m, .only_with_fs = 1 };
    struct rcl_shrinker *s = rcl_shrinker_register("inode-cache", &cache_ops, &c, NULL);

    rcl_reclaim(1, RCL_DEFAULT);
    rcl_reclaim(1, RCL_NOFS);
    unsigned saved = rcl_nofs_save();
    rcl_mutex_lock(&m);
    void *p = rcl_alloc(100, RCL_DEFAULT);
    rcl_reclaim(1, RCL_DEFAULT);           /* reclaim really runs, as NOFS */
    rcl_mutex_unlock(&m);
    rcl_nofs_restore(saved);
    rcl_free(p);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_shrinker_unregister(s);
}

/* An allocation that cannot reclaim (NOWAIT) or a thread already in
 * reclaim (NORECLAIM) waits for no reclaim: no dependency. */
TEST_WITH(allocation_that_cannot_reclaim_records_nothing, ld_setup, ld_teardown)
{
    rcl_mutex_t m;
    rcl_mutex_init(&m, &fs_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker *s = rcl_shrinker_register("inode-cache", &cache_ops, &c, NULL);
    rcl_reclaim(1, RCL_DEFAULT);

    rcl_mutex_lock(&m);
    rcl_free(rcl_alloc(100, RCL_NOWAIT));
    rcl_free(rcl_alloc(100, RCL_ATOMIC));
    unsigned saved = rcl_noreclaim_save();
    rcl_free(rcl_alloc(100, RCL_DEFAULT));
    rcl_noreclaim_restore(saved);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_shrinker_unregister(s);
}

/* A class contains the narrower ones: a NOIO allocation under the lock
 * with a shrinker that takes it even in class none is a cycle too. */
TEST_WITH(narrow_shrinker_lock_reaches_wide_allocation, ld_setup, ld_teardown)
{
    rcl_mutex_t m;
    rcl_mutex_init(&m, &fs_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker *s = rcl_shrinker_register("careless-cache", &cache_ops, &c, NULL);
    rcl_reclaim(1, RCL_NOIO);              /* reclaim(none) -> fs_lock */
    rcl_mutex_lock(&m);
    rcl_might_alloc(RCL_DEFAULT);          /* fs_lock -> reclaim(FS+IO) */
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("reclaim(FS+IO) \u2192 reclaim(IO)");
    rcl_shrinker_unregister(s);
}

/* A shrinker that ends its thread (pthread_exit()) ends its pass there:
 * the thread's cleanup handlers run outside reclaim, and a lock they take
 * is not one reclaim takes. (They ran with the pass's pseudo-lock still
 * held: that lock held across any allocation was reported as a deadlock
 * with a reclaim that never took it.) */
static RCL_LOCK_CLASS(exit_lock, "exit_lock");
static __thread bool ld_ends_here;

static unsigned long ends_its_thread(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    if (ld_ends_here)
        pthread_exit(NULL);
    return sc->nr_to_scan;
}

static void takes_exit_lock(void *arg)
{
    (void)arg;
    rcl_lock_acquire(&exit_lock);
    rcl_lock_release(&exit_lock);
}

static void *reclaims_and_ends(void *arg)
{
    (void)arg;
    ld_ends_here = true;
    pthread_cleanup_push(takes_exit_lock, NULL);
    rcl_reclaim(1, RCL_DEFAULT);
    pthread_cleanup_pop(0);
    return NULL;                           /* not reached */
}

TEST_WITH(cleanup_of_a_thread_ending_in_a_shrinker_is_outside_reclaim, ld_setup, ld_teardown)
{
    static const struct rcl_shrinker_ops ops = { cache_count, ends_its_thread };
    alarm(60);             /* a pass left held hangs the teardown: it fails here */
    struct rcl_shrinker *s = rcl_shrinker_register("ends-its-thread", &ops, NULL, NULL);
    assert_non_null(s);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reclaims_and_ends, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);

    rcl_lock_acquire(&exit_lock);
    rcl_might_alloc(RCL_DEFAULT);          /* exit_lock -> reclaim(FS+IO): no cycle */
    rcl_lock_release(&exit_lock);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_shrinker_unregister(s);
    alarm(0);
}

/* ------------------------------------------------------------------------ */
/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): file system ->
 * buffer cache -> loop device -> same file system */
/* ------------------------------------------------------------------------ */

static RCL_LOCK_CLASS(s1_fs_lock, "fs_lock");
static RCL_LOCK_CLASS(s1_loop_work, "loop_work");

/* The loop device: one worker thread; an I/O is served by calling into the
 * file system (its back end), so the worker takes fs_lock. */
struct loopdev {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pending, done, stop;
    int noio;                  /* the fix: the worker runs in NOIO scope */
    int alloc_in_io;           /* the worker allocates while serving */
    rcl_mutex_t *fs;
    pthread_t thread;
};

static void *loop_worker(void *arg)
{
    struct loopdev *l = arg;
    pthread_setname_np(pthread_self(), "loop0");
    unsigned saved = l->noio ? rcl_noio_save() : 0;
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        if (!l->pending) {
            pthread_cond_wait(&l->cond, &l->lock);
            continue;
        }
        l->pending--;
        pthread_mutex_unlock(&l->lock);

        rcl_lock_acquire(&s1_loop_work);       /* serving one I/O */
        if (l->alloc_in_io)
            rcl_free(rcl_alloc(512, RCL_DEFAULT));
        rcl_mutex_lock(l->fs);                 /* the back-end file's fs */
        rcl_mutex_unlock(l->fs);
        rcl_lock_release(&s1_loop_work);

        pthread_mutex_lock(&l->lock);
        l->done++;
        pthread_cond_broadcast(&l->cond);
    }
    pthread_mutex_unlock(&l->lock);
    if (l->noio)
        rcl_noio_restore(saved);
    return NULL;
}

/* Submit one I/O and wait for it: the wait is annotated as flush_work(). */
static void loop_io_wait(struct loopdev *l)
{
    rcl_lock_acquire(&s1_loop_work);
    rcl_lock_release(&s1_loop_work);
    pthread_mutex_lock(&l->lock);
    int target = l->done + l->pending + 1;
    l->pending++;
    pthread_cond_broadcast(&l->cond);
    while (l->done < target)
        pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
}

static void loop_start(struct loopdev *l, rcl_mutex_t *fs, int noio, int alloc_in_io)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->fs = fs;
    l->noio = noio;
    l->alloc_in_io = alloc_in_io;
    assert_int_equal(pthread_create(&l->thread, NULL, loop_worker, l), 0);
}

static void loop_stop(struct loopdev *l)
{
    pthread_mutex_lock(&l->lock);
    l->stop = 1;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
}

/* The buffer cache's shrinker writes a dirty buffer back through the loop
 * device and waits. 2014 logic: whenever it may do I/O. Fixed logic: only
 * when it may also enter file systems (a loop device may lead to one). */
struct bufcache {
    struct loopdev *loop;
    int fixed;
};

static unsigned long buf_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct bufcache *b = priv;
    rcl_gfp_t need = b->fixed ? (RCL__IO | RCL__FS) : RCL__IO;
    if ((sc->gfp & need) == need)
        loop_io_wait(b->loop);
    return RCL_SHRINK_STOP;
}

static const struct rcl_shrinker_ops buf_ops = { cache_count, buf_scan };

struct fs_writer {
    rcl_mutex_t *fs;
    int nofs;
};

/* The file system's write path: fs_lock held, metadata allocated NOFS. */
static void *fs_write(void *arg)
{
    struct fs_writer *w = arg;
    pthread_setname_np(pthread_self(), "fs-writer");
    unsigned saved = w->nofs ? rcl_nofs_save() : 0;
    rcl_mutex_lock(w->fs);
    rcl_free(rcl_alloc(256, RCL_NOFS));
    rcl_mutex_unlock(w->fs);
    if (w->nofs)
        rcl_nofs_restore(saved);
    return NULL;
}

struct reclaimer { rcl_gfp_t gfp; };

static void *reclaim_thread(void *arg)
{
    struct reclaimer *r = arg;
    pthread_setname_np(pthread_self(), "reclaimer");
    rcl_reclaim(4096, r->gfp);
    return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fn, arg), 0);
    pthread_join(th, NULL);
}

/* Every path of the stack runs once, each in its own thread, so that no
 * real deadlock can happen in the test while every edge is seen. */
static void loop_stack_run(int fixed_cache, int loop_noio, int loop_allocates)
{
    rcl_mutex_t fs;
    rcl_mutex_init(&fs, &s1_fs_lock);
    struct loopdev loop;
    loop_start(&loop, &fs, loop_noio, loop_allocates);
    struct bufcache bc = { &loop, fixed_cache };
    struct rcl_shrinker *s = rcl_shrinker_register("buffer-cache", &buf_ops, &bc, NULL);

    loop_io_wait(&loop);                                     /* loop_work -> fs_lock */
    struct fs_writer w = { &fs, 0 };
    run_thread(fs_write, &w);                                /* fs_lock -> reclaim(IO) */
    struct reclaimer nofs = { RCL_NOFS }, def = { RCL_DEFAULT };
    run_thread(reclaim_thread, &nofs);                       /* reclaim(IO) -> ? */
    run_thread(reclaim_thread, &def);                        /* reclaim(FS+IO) -> ? */

    rcl_shrinker_unregister(s);
    loop_stop(&loop);
}

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020), on dm-bufio in
 * 2014: the shrinker waited on I/O whenever __GFP_IO was set; under a NOFS
 * allocation that holds the file system's lock, the loop device's back end
 * needs that same lock. */
TEST_WITH(loop_stack_buggy_buffer_cache_is_reported, ld_setup, ld_teardown)
{
    loop_stack_run(0, 1, 0);
    if (getenv("SHOW_REPORTS"))
        print_reports();
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("fs_lock \u2192 reclaim(IO) \u2192 loop_work \u2192 fs_lock");
    assert_reports_have("\"fs-writer\"");
    assert_reports_have("\"loop0\"");
    assert_reports_have("buffer-cache");
}

/* Dave Chinner in the "Overhaul memalloc_no*" thread (dm-devel, June 2020):
 * the loop device's I/O path must run NOIO. Without it the worker's own
 * allocation may reclaim, and reclaim waits for loop I/O that only this
 * worker can serve. */
TEST_WITH(loop_stack_loop_worker_without_noio_is_reported, ld_setup, ld_teardown)
{
    loop_stack_run(1, 0, 1);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("loop_work \u2192 reclaim(FS+IO) \u2192 loop_work");
}

/* The fixed stack: loop worker in NOIO scope, buffer cache that waits only
 * when it may enter file systems. No false positive. */
TEST_WITH(loop_stack_fixed_stack_is_quiet, ld_setup, ld_teardown)
{
    loop_stack_run(1, 1, 1);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* The kernel's fs_reclaim models only FS recursion: with the 2014 buffer
 * cache but the file system taking a NOIO scope (not NOFS) the chain is
 * broken, and nothing is reported. */
TEST_WITH(loop_stack_noio_file_system_is_quiet, ld_setup, ld_teardown)
{
    rcl_mutex_t fs;
    rcl_mutex_init(&fs, &s1_fs_lock);
    struct loopdev loop;
    loop_start(&loop, &fs, 1, 0);
    struct bufcache bc = { &loop, 0 };
    struct rcl_shrinker *s = rcl_shrinker_register("buffer-cache", &buf_ops, &bc, NULL);
    loop_io_wait(&loop);
    unsigned saved = rcl_noio_save();
    rcl_mutex_lock(&fs);
    rcl_free(rcl_alloc(256, RCL_NOFS));
    rcl_mutex_unlock(&fs);
    rcl_noio_restore(saved);
    struct reclaimer nofs = { RCL_NOFS };
    run_thread(reclaim_thread, &nofs);
    rcl_shrinker_unregister(s);
    loop_stop(&loop);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* ------------------------------------------------------------------------ */
/* Domains                                                                   */
/* ------------------------------------------------------------------------ */

static RCL_LOCK_CLASS(dom_lock, "fsA_lock");

/* An allocation that may reclaim, made inside domain d with m held. */
static void alloc_inside_holding(struct rcl_domain *d, rcl_mutex_t *m)
{
    unsigned tok = rcl_domain_enter(d);
    rcl_mutex_lock(m);
    rcl_might_alloc(RCL_DEFAULT);
    rcl_mutex_unlock(m);
    rcl_domain_exit(tok);
}

/* A per-domain design (the lock held inside its own domain, whose
 * shrinkers reclaim skips) is correct and not reported... */
static void lock_inside_own_domain(void)
{
    struct rcl_domain *d = rcl_domain_create("fsA", 0, NULL, NULL);
    rcl_mutex_t m;
    rcl_mutex_init(&m, &dom_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker_opts o = { .domain = d };
    struct rcl_shrinker *s = rcl_shrinker_register("fsA-inodes", &cache_ops, &c, &o);
    rcl_reclaim(1, RCL_DEFAULT);           /* fsA's shrinker takes its lock */
    assert_true(atomic_load(&c.scans) > 0);

    alloc_inside_holding(d, &m);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(d);
}

TEST_WITH(lock_inside_own_domain_is_quiet, ld_setup, ld_teardown)
{
    lock_inside_own_domain();
}

/* ...where the same lock without the domain is. */
TEST_WITH(lock_outside_its_domain_is_reported, ld_setup, ld_teardown)
{
    struct rcl_domain *d = rcl_domain_create("fsA", 0, NULL, NULL);
    rcl_mutex_t m;
    rcl_mutex_init(&m, &dom_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker_opts o = { .domain = d };
    struct rcl_shrinker *s = rcl_shrinker_register("fsA-inodes", &cache_ops, &c, &o);
    rcl_reclaim(1, RCL_DEFAULT);

    rcl_mutex_lock(&m);
    rcl_might_alloc(RCL_DEFAULT);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("fsA");
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(d);
}

/* Another domain's shrinkers are still reclaimed, so taking their lock
 * inside domain B is a real cycle. */
TEST_WITH(other_domains_lock_is_still_reported, ld_setup, ld_teardown)
{
    struct rcl_domain *a = rcl_domain_create("fsA", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("fsB", 0, NULL, NULL);
    rcl_mutex_t m;
    rcl_mutex_init(&m, &dom_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker_opts o = { .domain = a };
    struct rcl_shrinker *s = rcl_shrinker_register("fsA-inodes", &cache_ops, &c, &o);
    rcl_reclaim(1, RCL_DEFAULT);

    alloc_inside_holding(b, &m);
    assert_int_equal(rcl_lockdep_reports(), 1);
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* A domain destroyed and another created at the same address: the checker
 * must not take the new one for the old (its reports name the new one). */
static RCL_LOCK_CLASS(new_lock, "fsNew_lock");

TEST_WITH(new_domain_at_old_address_gets_its_own_nodes, ld_setup, ld_teardown)
{
    rcl_mutex_t m;
    struct fs_cache c = { .lock = &m };
    struct rcl_domain *old = rcl_domain_create("fsOld", 0, NULL, NULL);
    struct rcl_shrinker_opts o = { .domain = old };
    rcl_mutex_init(&m, &dom_lock);
    struct rcl_shrinker *s = rcl_shrinker_register("old-inodes", &cache_ops, &c, &o);
    rcl_reclaim(1, RCL_DEFAULT);                /* the checker learns fsOld */
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(old);

    /* Destroyed domains' slots are reused only after a quarantine: cycle
     * through domains until the old slot comes back. */
    struct rcl_domain *d = rcl_domain_create("fsNew", 0, NULL, NULL);
    for (int i = 0; i < 1000 && d != old; i++) {
        rcl_domain_destroy(d);
        d = rcl_domain_create("fsNew", 0, NULL, NULL);
    }
    if (d != old) {
        rcl_domain_destroy(d);
        print_message("skipped: the destroyed domain's slot did not come back, so there is "
                      "nothing to confuse\n");
        skip();
    }
    rcl_mutex_init(&m, &new_lock);
    o.domain = d;
    s = rcl_shrinker_register("new-inodes", &cache_ops, &c, &o);
    rcl_reclaim(1, RCL_DEFAULT);
    rcl_mutex_lock(&m);
    rcl_might_alloc(RCL_DEFAULT);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("fsNew");
    assert_false(test_reports_contain("fsOld"));
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(d);
}

/* A mount and unmount: a domain whose shrinker ran (so the checker gave it
 * nodes), then destroyed. More of them than the checker keeps domains at
 * once (64), so that every domain after them takes a destroyed one's
 * place. */
static unsigned long idle_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct fs_cache *c = priv;
    (void)sc;
    atomic_fetch_add(&c->scans, 1);
    return RCL_SHRINK_STOP;
}

static const struct rcl_shrinker_ops idle_ops = { cache_count, idle_scan };

/* Each domain's shrinker takes m, if not NULL. */
static void domain_churn_locking(int n, rcl_mutex_t *m)
{
    for (int i = 0; i < n; i++) {
        struct rcl_domain *d = rcl_domain_create("churn", 0, NULL, NULL);
        struct fs_cache c = { .lock = m };
        struct rcl_shrinker_opts o = { .domain = d };
        struct rcl_shrinker *s = rcl_shrinker_register("churn-inodes",
                                                       m ? &cache_ops : &idle_ops, &c, &o);
        assert_non_null(s);
        rcl_reclaim(1, RCL_DEFAULT);
        assert_true(atomic_load(&c.scans) > 0);
        rcl_shrinker_unregister(s);
        rcl_domain_destroy(d);
    }
}

static void domain_churn(int n)
{
    domain_churn_locking(n, NULL);
}

/* The per-domain design of lock_inside_own_domain_is_quiet, after many
 * domains came and went: the new domain's lock is still its own
 * shrinkers', whose pass never holds the global reclaim node. */
TEST_WITH(lock_inside_own_domain_is_quiet_after_domain_churn, ld_setup, ld_teardown)
{
    domain_churn(100);
    assert_int_equal(rcl_lockdep_reports(), 0);
    lock_inside_own_domain();
}

/* A program that mounts and unmounts for as long as it runs goes through
 * more domains than the graph has nodes for (three each): a destroyed
 * domain gives its nodes back, so the domain after thousands still has its
 * own, and the per-domain design stays quiet. Its lock's class is known
 * from the start, as a program's classes are. */
TEST_WITH(lock_inside_own_domain_is_quiet_after_thousands_of_domains, ld_setup, ld_teardown)
{
    lock(&dom_lock);
    unlock(&dom_lock);
    domain_churn(2000);
    assert_int_equal(rcl_lockdep_reports(), 0);
    lock_inside_own_domain();
}

/* A graph whose nodes lock classes have taken all of has none for a new
 * domain: the domain's shrinkers go unchecked, told once, rather than
 * taken for shrinkers of no domain. Read as those, the lock a domain's
 * shrinker takes, held across an allocation inside the domain (whose own
 * shrinkers reclaim skips there), was reported as a reclaim deadlock. */
#define FULL_CLASSES 4200

TEST_WITH(lock_inside_own_domain_is_quiet_when_the_graph_has_no_node_for_it, ld_setup,
          ld_teardown)
{
    struct rcl_lock_class *cls = calloc(FULL_CLASSES, sizeof(*cls));

    assert_non_null(cls);
    lock(&dom_lock);
    unlock(&dom_lock);
    for (int i = 0; i < FULL_CLASSES; i++) {
        cls[i].name = "many";
        lock(&cls[i]);
        unlock(&cls[i]);
    }
    assert_reports_have("the graph is full");
    lock_inside_own_domain();
    assert_reports_have("no node for domain \"fsA\"");
    free(cls);
}

/* ...nor for a domain past the 64 live ones that have nodes. */
#define LIVE_DOMAINS 64

TEST_WITH(lock_inside_own_domain_is_quiet_past_the_domains_with_nodes, ld_setup, ld_teardown)
{
    struct rcl_domain *d[LIVE_DOMAINS];
    struct rcl_shrinker *s[LIVE_DOMAINS];
    struct fs_cache c[LIVE_DOMAINS];

    for (int i = 0; i < LIVE_DOMAINS; i++) {
        d[i] = rcl_domain_create("live", 0, NULL, NULL);
        c[i] = (struct fs_cache){ .lock = NULL };
        struct rcl_shrinker_opts o = { .domain = d[i] };
        s[i] = rcl_shrinker_register("live-inodes", &idle_ops, &c[i], &o);
        assert_non_null(s[i]);
        rcl_reclaim(1, RCL_DEFAULT);
        assert_true(atomic_load(&c[i].scans) > 0);
    }
    lock_inside_own_domain();
    assert_reports_have("no node for domain \"fsA\"");
    for (int i = 0; i < LIVE_DOMAINS; i++) {
        rcl_shrinker_unregister(s[i]);
        rcl_domain_destroy(d[i]);
    }
}

/* ...and a lock class first used after them has a node of its own: the
 * lock of a domain's shrinker held across an allocation outside the
 * domain is still a reclaim deadlock. */
static RCL_LOCK_CLASS(late_lock, "late_lock");

TEST_WITH(lock_outside_its_domain_is_reported_after_thousands_of_domains, ld_setup,
          ld_teardown)
{
    domain_churn(2000);
    struct rcl_domain *d = rcl_domain_create("fsLate", 0, NULL, NULL);
    rcl_mutex_t m;
    rcl_mutex_init(&m, &late_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker_opts o = { .domain = d };
    struct rcl_shrinker *s = rcl_shrinker_register("late-inodes", &cache_ops, &c, &o);
    rcl_reclaim(1, RCL_DEFAULT);
    assert_true(atomic_load(&c.scans) > 0);

    rcl_mutex_lock(&m);
    rcl_might_alloc(RCL_DEFAULT);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("late_lock");
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(d);
}

/* The graph holds what the live domains learned, not every domain's
 * history: after thousands of domains whose shrinkers took a lock, it has
 * the nodes and edges it had after the first. */
TEST_WITH(destroyed_domains_leave_the_graph_its_size, ld_setup, ld_teardown)
{
    rcl_mutex_t m;
    unsigned nodes, edges, nodes_after, edges_after;

    rcl_mutex_init(&m, &dom_lock);
    domain_churn_locking(1, &m);
    rcl__lockdep_graph_size(&nodes, &edges);
    domain_churn_locking(2000, &m);
    rcl__lockdep_graph_size(&nodes_after, &edges_after);
    assert_int_equal(nodes_after, nodes);
    assert_int_equal(edges_after, edges);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* Threads that allocate inside a domain with a lock held while another
 * thread's domains come and go: each allocation reads the churning
 * domains' nodes without the graph lock while they are dropped and made
 * again, and their edges leave the set of known edges under its readers.
 * The lock is no shrinker's, so nothing is reported. */
static RCL_LOCK_CLASS(churn_lock, "churn_lock");

struct inside_alloc {
    struct rcl_domain *d;
    rcl_mutex_t *m;
    _Atomic int stop;
};

static void *allocs_inside_until_stopped(void *arg)
{
    struct inside_alloc *a = arg;

    while (!atomic_load(&a->stop))
        alloc_inside_holding(a->d, a->m);
    return NULL;
}

TEST_WITH(allocations_inside_a_domain_while_others_come_and_go_are_quiet, ld_setup,
          ld_teardown)
{
    rcl_mutex_t m, churn_m;
    pthread_t th[2];

    rcl_mutex_init(&m, &dom_lock);
    rcl_mutex_init(&churn_m, &churn_lock);
    struct inside_alloc a = { rcl_domain_create("fsA", 0, NULL, NULL), &m, 0 };
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, allocs_inside_until_stopped, &a), 0);
    domain_churn_locking(500, &churn_m);
    atomic_store(&a.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_domain_destroy(a.d);
}

/* A domain in a destroyed one's place does not inherit its dependencies:
 * the old domain's shrinker took fsA_lock, the new one's takes nothing, so
 * holding fsA_lock across an allocation inside a third domain (which may
 * reclaim the new one) is no cycle. */
TEST_WITH(domain_in_a_destroyed_ones_place_has_none_of_its_dependencies, ld_setup,
          ld_teardown)
{
    domain_churn(100);
    rcl_mutex_t m;
    rcl_mutex_init(&m, &dom_lock);
    struct fs_cache old_c = { .lock = &m };
    struct rcl_domain *old = rcl_domain_create("fsOld", 0, NULL, NULL);
    struct rcl_shrinker_opts o = { .domain = old };
    struct rcl_shrinker *s = rcl_shrinker_register("old-inodes", &cache_ops, &old_c, &o);
    rcl_reclaim(1, RCL_DEFAULT);           /* fsOld's shrinker takes fsA_lock */
    assert_true(atomic_load(&old_c.scans) > 0);
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(old);

    struct rcl_domain *d = rcl_domain_create("fsNew", 0, NULL, NULL);
    struct fs_cache new_c = { 0 };
    o.domain = d;
    s = rcl_shrinker_register("new-inodes", &idle_ops, &new_c, &o);
    rcl_reclaim(1, RCL_DEFAULT);
    assert_true(atomic_load(&new_c.scans) > 0);

    struct rcl_domain *b = rcl_domain_create("fsB", 0, NULL, NULL);
    alloc_inside_holding(b, &m);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(d);
    rcl_domain_destroy(b);
}

TEST_MAIN();
