/* SPDX-License-Identifier: MIT */
/*
 * The lock checker: lock-order cycles, the reclaim pseudo-locks, the loop
 * device deadlock of the "Overhaul memalloc_no*" thread (dm-devel, June
 * 2020), and the misuse reports of checking mode.
 *
 * Kernel counterpart: lockdep, with the fs_reclaim annotation of
 * mm/page_alloc.c (fs_reclaim_acquire/release) generalised to three context
 * classes, and flush_work()'s lock_map_acquire/release for waiting on work.
 */
#include "helpers.h"

#include <stdatomic.h>

/* Each test runs with the checker on (the helpers' T() runs it off). */
static int ld_init_mode(int mode, int background, size_t limit)
{
    struct rcl_config cfg = test_config(limit);
    cfg.lockdep = mode;
    cfg.background = background;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    return rcl_init(&cfg);
}

static int ld_setup(void **state)
{
    (void)state;
    return ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB) == 0 ? 0 : -1;
}

#define TL(fn) cmocka_unit_test_setup_teardown(fn, ld_setup, test_teardown)

static int report_has(const char *needle)
{
    pthread_mutex_lock(&test_reports.lock);
    int found = strstr(test_reports.all, needle) != NULL;
    pthread_mutex_unlock(&test_reports.lock);
    return found;
}

static void print_reports(void)
{
    pthread_mutex_lock(&test_reports.lock);
    printf("%s", test_reports.all);
    pthread_mutex_unlock(&test_reports.lock);
}

static void lock(struct rcl_lock_class *c) { rcl_lock_acquire(c); }
static void unlock(struct rcl_lock_class *c) { rcl_lock_release(c); }

/* ------------------------------------------------------------------------ */
/* Ordinary lock order                                                       */
/* ------------------------------------------------------------------------ */

static RCL_LOCK_CLASS(lock_a, "lock_a");
static RCL_LOCK_CLASS(lock_b, "lock_b");
static RCL_LOCK_CLASS(lock_c, "lock_c");

/* lockdep: A then B on one path, B then A on another is a possible
 * deadlock, reported although no deadlock happened. */
static void ab_ba_inversion_is_reported(void **state)
{
    (void)state;
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("lock_a \u2192 lock_b \u2192 lock_a"));
    assert_true(report_has("opposite orders"));
}

/* The report shows where each edge was first seen as function names, so a
 * reader can find the code - static functions too, which is where most of
 * a daemon's locking lives (read from the program's ELF symbol table). */
static __attribute__((noinline)) void takes_b_then_a(void)
{
    rcl_lock_acquire(&lock_b);
    rcl_lock_acquire(&lock_a);
    rcl_lock_release(&lock_a);
    rcl_lock_release(&lock_b);
    __asm__ volatile("" ::: "memory");  /* keep the call above from being a tail call */
}

static void report_backtrace_names_the_functions(void **state)
{
    (void)state;
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    takes_b_then_a();
    assert_int_equal(rcl_lockdep_reports(), 1);
    if (!report_has(" takes_b_then_a+0x"))
        print_reports();
    assert_true(report_has(" takes_b_then_a+0x"));
    assert_true(report_has(" report_backtrace_names_the_functions+0x"));
}

static void longer_chain_is_reported(void **state)
{
    (void)state;
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_c); unlock(&lock_c); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 0);
    lock(&lock_c); lock(&lock_a); unlock(&lock_a); unlock(&lock_c);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("lock_a \u2192 lock_b \u2192 lock_c \u2192 lock_a"));
}

static void consistent_order_is_quiet(void **state)
{
    (void)state;
    for (int i = 0; i < 100; i++) {
        lock(&lock_a); lock(&lock_b); lock(&lock_c);
        unlock(&lock_c); unlock(&lock_b); unlock(&lock_a);
        lock(&lock_a); lock(&lock_c); unlock(&lock_a); unlock(&lock_c);
    }
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

static void each_cycle_is_reported_once(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++) {
        lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
        lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    }
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(test_report_count(), 1);
}

/* lockdep: taking a class already held is a self-deadlock (recursive
 * locking of a non-recursive lock). */
static void recursive_acquire_is_reported(void **state)
{
    (void)state;
    lock(&lock_a); lock(&lock_a); unlock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("lock_a \u2192 lock_a"));
}

/* lockdep: a trylock cannot deadlock, so it records no dependency on the
 * lock it takes... */
static void trylock_adds_no_dependency(void **state)
{
    (void)state;
    lock(&lock_a); rcl_lock_acquire_try(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* ...but the lock is held afterwards: what is taken under it depends on it
 * (and on what was held below it). */
static void lock_taken_by_trylock_is_held(void **state)
{
    (void)state;
    rcl_lock_acquire_try(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

static void release_in_any_order_is_allowed(void **state)
{
    (void)state;
    lock(&lock_a); lock(&lock_b); unlock(&lock_a); unlock(&lock_b);
    lock(&lock_c); unlock(&lock_c);
    /* Nothing is held any more: taking c then a orders nothing. */
    lock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

static void mutex_wrappers_annotate(void **state)
{
    (void)state;
    rcl_mutex_t ma, mb;
    assert_int_equal(rcl_mutex_init(&ma, &lock_a), 0);
    assert_int_equal(rcl_mutex_init(&mb, &lock_b), 0);
    rcl_mutex_lock(&ma); rcl_mutex_lock(&mb); rcl_mutex_unlock(&mb); rcl_mutex_unlock(&ma);
    assert_int_equal(rcl_mutex_trylock(&ma), 0);
    assert_int_equal(rcl_mutex_trylock(&ma), EBUSY);
    rcl_mutex_unlock(&ma);
    /* The other order as an annotation only: a real inversion of two
     * pthread mutexes would (rightly) stop the test under TSan. */
    rcl_mutex_lock(&mb); lock(&lock_a); unlock(&lock_a); rcl_mutex_unlock(&mb);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(rcl_mutex_destroy(&ma), 0);
    assert_int_equal(rcl_mutex_destroy(&mb), 0);
}

static void bad_input_is_refused(void **state)
{
    (void)state;
    assert_int_equal(rcl_mutex_init(NULL, &lock_a), -EINVAL);
    assert_int_equal(rcl_mutex_destroy(NULL), -EINVAL);
    assert_int_equal(rcl_mutex_trylock(NULL), EINVAL);
    unsigned before = test_report_count();
    rcl_lock_acquire(NULL);
    rcl_lock_release(NULL);
    rcl_mutex_lock(NULL);
    rcl_mutex_unlock(NULL);
    assert_int_equal(test_report_count(), before + 4);
    /* Releasing a lock that is not held changes nothing. */
    unlock(&lock_c);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

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
static void lock_across_default_alloc_taken_in_fs_shrinker_is_reported(void **state)
{
    (void)state;
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
    assert_true(report_has("fs_lock \u2192 reclaim(FS+IO) \u2192 fs_lock"));
    assert_true(report_has("inode-cache"));
    assert_true(report_has("NOFS/NOIO"));
    rcl_shrinker_unregister(s);
}

/* The order does not matter: the allocation first, the shrinker later. */
static void alloc_first_then_shrinker_is_reported(void **state)
{
    (void)state;
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
static void nofs_scope_around_lock_removes_report(void **state)
{
    (void)state;
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
static void allocation_that_cannot_reclaim_records_nothing(void **state)
{
    (void)state;
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
static void narrow_shrinker_lock_reaches_wide_allocation(void **state)
{
    (void)state;
    rcl_mutex_t m;
    rcl_mutex_init(&m, &fs_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker *s = rcl_shrinker_register("careless-cache", &cache_ops, &c, NULL);
    rcl_reclaim(1, RCL_NOIO);              /* reclaim(none) -> fs_lock */
    rcl_mutex_lock(&m);
    rcl_might_alloc(RCL_DEFAULT);          /* fs_lock -> reclaim(FS+IO) */
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("reclaim(FS+IO) \u2192 reclaim(IO)"));
    rcl_shrinker_unregister(s);
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
static void loop_stack_buggy_buffer_cache_is_reported(void **state)
{
    (void)state;
    loop_stack_run(0, 1, 0);
    if (getenv("SHOW_REPORTS"))
        print_reports();
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("fs_lock \u2192 reclaim(IO) \u2192 loop_work \u2192 fs_lock"));
    assert_true(report_has("\"fs-writer\""));
    assert_true(report_has("\"loop0\""));
    assert_true(report_has("buffer-cache"));
}

/* Dave Chinner in the "Overhaul memalloc_no*" thread (dm-devel, June 2020):
 * the loop device's I/O path must run NOIO. Without it the worker's own
 * allocation may reclaim, and reclaim waits for loop I/O that only this
 * worker can serve. */
static void loop_stack_loop_worker_without_noio_is_reported(void **state)
{
    (void)state;
    loop_stack_run(1, 0, 1);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("loop_work \u2192 reclaim(FS+IO) \u2192 loop_work"));
}

/* The fixed stack: loop worker in NOIO scope, buffer cache that waits only
 * when it may enter file systems. No false positive. */
static void loop_stack_fixed_stack_is_quiet(void **state)
{
    (void)state;
    loop_stack_run(1, 1, 1);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* The kernel's fs_reclaim models only FS recursion: with the 2014 buffer
 * cache but the file system taking a NOIO scope (not NOFS) the chain is
 * broken, and nothing is reported. */
static void loop_stack_noio_file_system_is_quiet(void **state)
{
    (void)state;
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

/* A per-domain design (the lock held inside its own domain, whose
 * shrinkers reclaim skips) is correct and not reported... */
static void lock_inside_own_domain_is_quiet(void **state)
{
    (void)state;
    struct rcl_domain *d = rcl_domain_create("fsA", 0, NULL, NULL);
    rcl_mutex_t m;
    rcl_mutex_init(&m, &dom_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker_opts o = { .domain = d };
    struct rcl_shrinker *s = rcl_shrinker_register("fsA-inodes", &cache_ops, &c, &o);
    rcl_reclaim(1, RCL_DEFAULT);           /* fsA's shrinker takes its lock */
    assert_true(atomic_load(&c.scans) > 0);

    unsigned tok = rcl_domain_enter(d);
    rcl_mutex_lock(&m);
    rcl_might_alloc(RCL_DEFAULT);
    rcl_mutex_unlock(&m);
    rcl_domain_exit(tok);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(d);
}

/* ...where the same lock without the domain is. */
static void lock_outside_its_domain_is_reported(void **state)
{
    (void)state;
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
    assert_true(report_has("fsA"));
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(d);
}

/* Another domain's shrinkers are still reclaimed, so taking their lock
 * inside domain B is a real cycle. */
static void other_domains_lock_is_still_reported(void **state)
{
    (void)state;
    struct rcl_domain *a = rcl_domain_create("fsA", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("fsB", 0, NULL, NULL);
    rcl_mutex_t m;
    rcl_mutex_init(&m, &dom_lock);
    struct fs_cache c = { .lock = &m };
    struct rcl_shrinker_opts o = { .domain = a };
    struct rcl_shrinker *s = rcl_shrinker_register("fsA-inodes", &cache_ops, &c, &o);
    rcl_reclaim(1, RCL_DEFAULT);

    unsigned tok = rcl_domain_enter(b);
    rcl_mutex_lock(&m);
    rcl_might_alloc(RCL_DEFAULT);
    rcl_mutex_unlock(&m);
    rcl_domain_exit(tok);
    assert_int_equal(rcl_lockdep_reports(), 1);
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* A domain destroyed and another created at the same address: the checker
 * must not take the new one for the old (its reports name the new one). */
static RCL_LOCK_CLASS(new_lock, "fsNew_lock");

static void new_domain_at_old_address_gets_its_own_nodes(void **state)
{
    (void)state;
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
    assert_true(report_has("fsNew"));
    assert_false(report_has("fsOld"));
    rcl_shrinker_unregister(s);
    rcl_domain_destroy(d);
}

/* ------------------------------------------------------------------------ */
/* Scopes, NOWAIT, slow shrinkers                                            */
/* ------------------------------------------------------------------------ */

static void scopes_restored_in_order_are_quiet(void **state)
{
    (void)state;
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

static void scope_restored_out_of_order_is_reported(void **state)
{
    (void)state;
    unsigned a = rcl_nofs_save();
    unsigned b = rcl_noio_save();
    rcl_nofs_restore(a);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("out of order"));
    rcl_noio_restore(b);                  /* the rest unwinds quietly */
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(rcl_scope_current(), 0);
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

static void scope_misuse_in_another_thread_is_reported(void **state)
{
    (void)state;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, out_of_order_in_new_thread, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("out of order"));
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

static void checker_off_unwatches_every_thread(void **state)
{
    (void)state;
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

/* rcl_context_restore() puts back the whole scope word: saves a piece of
 * work left open under an adopted context end there, for the checker too.
 * Many such leaks (a worker thread running many work items) must not fill
 * its record of open saves and turn the scope checks off. */
static void context_restore_closes_the_saves_it_undoes(void **state)
{
    (void)state;
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
    assert_true(report_has("out of order"));
}

static void scope_restored_with_foreign_token_is_reported(void **state)
{
    (void)state;
    unsigned a = rcl_nofs_save();
    rcl_scope_restore(RCL_SCOPE_NOWAIT);   /* never saved */
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("did not return"));
    rcl_scope_restore(a | RCL_SCOPE_NOIO);
    assert_int_equal(rcl_lockdep_reports(), 2);
}

/* The proposed memalloc_nowait scope: nothing inside may sleep. */
static void sleeping_allocation_in_nowait_scope_is_reported(void **state)
{
    (void)state;
    unsigned saved = rcl_nowait_save();
    void *p = rcl_alloc(64, RCL_DEFAULT);
    rcl_nowait_restore(saved);
    rcl_free(p);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("NOWAIT scope"));
}

/* The same NOWAIT scope, carried over by a context. */
static void sleeping_allocation_in_adopted_nowait_context_is_reported(void **state)
{
    (void)state;
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
    assert_true(report_has("NOWAIT scope"));
}

static void nowait_allocation_in_nowait_scope_is_quiet(void **state)
{
    (void)state;
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
    test_sleep_ms(60);                    /* a shrinker that blocks */
    unsigned long freed = 0;
    pthread_mutex_lock(&c->lock);
    while (c->n && freed < sc->nr_to_scan) {
        rcl_free(c->blocks[--c->n]);
        freed++;
    }
    pthread_mutex_unlock(&c->lock);
    return freed;
}

static const struct rcl_shrinker_ops slow_ops = { slow_count, slow_scan };

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020) ("you should not
 * block kswapd"): a shrinker the background reclaimer waits on for longer
 * than the bound is reported. */
static void slow_shrinker_under_background_reclaimer_is_reported(void **state)
{
    (void)state;
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 1, 1 * MiB), 0);
    rcl_lockdep_set_slow_shrinker_ms(20);
    static struct slow_cache c = { .lock = PTHREAD_MUTEX_INITIALIZER };
    c.n = 0;
    struct rcl_shrinker_opts o = { .batch = 16 };
    struct rcl_shrinker *s = rcl_shrinker_register("slow-cache", &slow_ops, &c, &o);
    /* Fill to above the low watermark without direct reclaim. */
    for (int i = 0; i < 1100; i++) {
        void *p = rcl_alloc(1000, RCL_NOWAIT);
        if (!p)
            break;
        pthread_mutex_lock(&c.lock);
        c.blocks[c.n++] = p;
        pthread_mutex_unlock(&c.lock);
    }
    for (int i = 0; i < 500 && rcl_lockdep_reports() == 0; i++)
        test_sleep_ms(10);
    if (getenv("SHOW_REPORTS")) {
        printf("n=%d\n", c.n);
        rcl_stats_print(stdout, 0);
        print_reports();
    }
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_true(report_has("slow-cache"));
    assert_true(report_has("background reclaimer"));
    rcl_shrinker_unregister(s);
    pthread_mutex_lock(&c.lock);
    while (c.n)
        rcl_free(c.blocks[--c.n]);
    pthread_mutex_unlock(&c.lock);
    rcl_lockdep_set_slow_shrinker_ms(1000);
}

/* ------------------------------------------------------------------------ */
/* Life cycle and modes                                                      */
/* ------------------------------------------------------------------------ */

static void shutdown_clears_the_graph(void **state)
{
    (void)state;
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 0);
    /* And a cycle reported before is reported again in the new graph. */
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

static void shutdown_with_a_lock_held_forgets_it(void **state)
{
    (void)state;
    lock(&lock_a);
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
    unlock(&lock_a);
    lock(&lock_b); unlock(&lock_b);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    lock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

static void mode_off_reports_nothing(void **state)
{
    (void)state;
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_OFF, 0, 64 * MiB), 0);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    unsigned a = rcl_nofs_save(), b = rcl_noio_save();
    rcl_nofs_restore(a);
    rcl_noio_restore(b);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

static void mode_verbose_notes_each_new_dependency(void **state)
{
    (void)state;
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_VERBOSE, 0, 64 * MiB), 0);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_true(report_has("new dependency lock_a \u2192 lock_b"));
    assert_int_equal(rcl_lockdep_reports(), 0);
    unsigned notes = test_report_count();
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(test_report_count(), notes);    /* once per dependency */
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

static void environment_turns_checker_on(void **state)
{
    (void)state;
    rcl_shutdown();
    setenv("RECLAIM_LOCKDEP", "1", 1);
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    unsetenv("RECLAIM_LOCKDEP");
    assert_int_equal(cfg.lockdep, RCL_LOCKDEP_ON);
    setenv("RECLAIM_LOCKDEP", "verbose", 1);
    rcl_config_default(&cfg);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    unsetenv("RECLAIM_LOCKDEP");
    assert_int_equal(cfg.lockdep, RCL_LOCKDEP_VERBOSE);
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
}

/* ------------------------------------------------------------------------ */
/* Many threads                                                              */
/* ------------------------------------------------------------------------ */

#define NCLASSES 12
static struct rcl_lock_class stress_classes[NCLASSES];

struct stress_arg { unsigned seed; int iters; };

/* Random subsets of the classes, always taken in index order, released in
 * random order: plenty of new edges from many threads at once, no cycle. */
static void *stress_thread(void *arg)
{
    struct stress_arg *a = arg;
    unsigned seed = a->seed;
    for (int i = 0; i < a->iters; i++) {
        unsigned mask = (unsigned)rand_r(&seed) & ((1u << NCLASSES) - 1);
        for (int k = 0; k < NCLASSES; k++)
            if (mask & (1u << k))
                rcl_lock_acquire(&stress_classes[k]);
        if (i % 7 == 0)
            rcl_might_alloc(RCL_NOFS);
        while (mask) {
            int k = rand_r(&seed) % NCLASSES;
            if (mask & (1u << k)) {
                rcl_lock_release(&stress_classes[k]);
                mask &= ~(1u << k);
            }
        }
    }
    return NULL;
}

static void many_threads_in_one_order_are_quiet(void **state)
{
    (void)state;
    static const char *names[NCLASSES] = { "s0", "s1", "s2", "s3", "s4", "s5",
                                           "s6", "s7", "s8", "s9", "s10", "s11" };
    for (int k = 0; k < NCLASSES; k++)
        stress_classes[k] = (struct rcl_lock_class){ .name = names[k] };
    enum { NT = 8 };
    pthread_t th[NT];
    struct stress_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (struct stress_arg){ 1234u + (unsigned)i, test_scale(20000) };
        assert_int_equal(pthread_create(&th[i], NULL, stress_thread, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    if (rcl_lockdep_reports())
        print_reports();
    assert_int_equal(rcl_lockdep_reports(), 0);
}

static void many_threads_find_the_one_inversion(void **state)
{
    (void)state;
    many_threads_in_one_order_are_quiet(state);
    rcl_lock_acquire(&stress_classes[9]);
    rcl_lock_acquire(&stress_classes[2]);
    rcl_lock_release(&stress_classes[2]);
    rcl_lock_release(&stress_classes[9]);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TL(ab_ba_inversion_is_reported),
        TL(report_backtrace_names_the_functions),
        TL(longer_chain_is_reported),
        TL(consistent_order_is_quiet),
        TL(each_cycle_is_reported_once),
        TL(recursive_acquire_is_reported),
        TL(trylock_adds_no_dependency),
        TL(lock_taken_by_trylock_is_held),
        TL(release_in_any_order_is_allowed),
        TL(mutex_wrappers_annotate),
        TL(bad_input_is_refused),
        TL(lock_across_default_alloc_taken_in_fs_shrinker_is_reported),
        TL(alloc_first_then_shrinker_is_reported),
        TL(nofs_scope_around_lock_removes_report),
        TL(allocation_that_cannot_reclaim_records_nothing),
        TL(narrow_shrinker_lock_reaches_wide_allocation),
        TL(loop_stack_buggy_buffer_cache_is_reported),
        TL(loop_stack_loop_worker_without_noio_is_reported),
        TL(loop_stack_fixed_stack_is_quiet),
        TL(loop_stack_noio_file_system_is_quiet),
        TL(lock_inside_own_domain_is_quiet),
        TL(lock_outside_its_domain_is_reported),
        TL(other_domains_lock_is_still_reported),
        TL(new_domain_at_old_address_gets_its_own_nodes),
        TL(scopes_restored_in_order_are_quiet),
        TL(scope_restored_out_of_order_is_reported),
        TL(scope_restored_with_foreign_token_is_reported),
        TL(scope_misuse_in_another_thread_is_reported),
        TL(checker_off_unwatches_every_thread),
        TL(context_restore_closes_the_saves_it_undoes),
        TL(sleeping_allocation_in_nowait_scope_is_reported),
        TL(sleeping_allocation_in_adopted_nowait_context_is_reported),
        TL(nowait_allocation_in_nowait_scope_is_quiet),
        TL(slow_shrinker_under_background_reclaimer_is_reported),
        TL(shutdown_clears_the_graph),
        TL(shutdown_with_a_lock_held_forgets_it),
        TL(mode_off_reports_nothing),
        TL(mode_verbose_notes_each_new_dependency),
        TL(environment_turns_checker_on),
        TL(many_threads_in_one_order_are_quiet),
        TL(many_threads_find_the_one_inversion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
