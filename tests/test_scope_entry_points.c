/* SPDX-License-Identifier: MIT */
/*
 * test_scope_entry_points.c - every public call that can allocate honours
 * the calling thread's scope: reclaim it causes runs with exactly the flags
 * the scope leaves (FS never under NOFS or NOIO, IO never under NOIO), and
 * not at all under NOWAIT (no direct reclaim) or NORECLAIM.
 *
 * Kernel history: in 2026 the kernel found its bulk page allocator ignoring
 * the scope mask: a scope API only works if no path forgets it. So this test
 * keeps a table of every function the library exports, each either walked
 * through every scope or marked as one that never allocates, and checks the
 * table against the library's symbol table: a function added later fails
 * here until it is listed.
 */
#include "helpers.h"
#include "internal.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>

#define LIMIT (8 * MiB)
#define CHUNK (64 * KiB)
#define SIZE  (64 * KiB)        /* what each entry point allocates */

/* ------------------------------------------------------------------------ */
/* A recording shrinker that holds the budget                                */
/* ------------------------------------------------------------------------ */

/* Its objects are charged bytes; it needs nothing, so any reclaim the
 * scope allows reaches it, and it records every context it is called in. */
static struct {
    pthread_mutex_t lock;
    size_t          size[LIMIT / CHUNK + 2];
    unsigned        nobj;
    atomic_uint     scans;
    atomic_uint     gfp_or, gfp_and;   /* over every scan */
} rec = { .lock = PTHREAD_MUTEX_INITIALIZER };

static unsigned long rec_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    pthread_mutex_lock(&rec.lock);
    unsigned n = rec.nobj;
    pthread_mutex_unlock(&rec.lock);
    return n ? n : RCL_SHRINK_EMPTY;
}

static unsigned long rec_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    atomic_fetch_add(&rec.scans, 1);
    atomic_fetch_or(&rec.gfp_or, sc->gfp);
    atomic_fetch_and(&rec.gfp_and, sc->gfp);
    unsigned long freed = 0;
    pthread_mutex_lock(&rec.lock);
    while (rec.nobj && freed < sc->nr_to_scan) {
        rcl_uncharge(rec.size[--rec.nobj]);
        freed++;
    }
    pthread_mutex_unlock(&rec.lock);
    return freed;
}

static size_t headroom(void)
{
    rcl_usage_sync();
    return rcl_limit() - rcl_usage();
}

/* The budget charged down to the min watermark: every allocation an
 * ordinary context makes now has to reclaim first. */
static void rec_fill(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    size_t room = headroom();
    pthread_mutex_lock(&rec.lock);
    while (room > st.wmark_min) {
        size_t n = room - st.wmark_min > CHUNK ? CHUNK : room - st.wmark_min;
        assert_int_equal(rcl_charge(n, RCL__MEMALLOC | RCL__NOWARN), 0);
        rec.size[rec.nobj++] = n;
        room -= n;
    }
    pthread_mutex_unlock(&rec.lock);
    atomic_store(&rec.scans, 0);
    atomic_store(&rec.gfp_or, 0);
    atomic_store(&rec.gfp_and, ~0u);
}

static void rec_empty(void)
{
    pthread_mutex_lock(&rec.lock);
    while (rec.nobj)
        rcl_uncharge(rec.size[--rec.nobj]);
    pthread_mutex_unlock(&rec.lock);
}

/* ------------------------------------------------------------------------ */
/* The entry points                                                          */
/* ------------------------------------------------------------------------ */

/* What one walk of an entry point keeps between its steps. */
struct walk {
    void                *p;
    struct rcl_mempool  *pool;
    void                *held;          /* the pool's reserve element */
    struct rcl_workqueue *wq;
    struct rcl_lru      *lru;
    struct rcl_domain   *dom;
    struct rcl_shrinker *shrinker;
    struct rcl_context   ctx;
};

/* The pool's element held out, to give back to a call under way. */
struct give_back {
    struct walk *w;
    pid_t        caller;
    atomic_int   returned;      /* the call is done */
};

/* The element comes back once the call waits for it (counted as the
 * pool's waiter, and asleep in the pool's bounded condition variable wait:
 * a lock's wait, the sanitizer's or the allocator's, is another kind of
 * sleep) or is done without it. Never before: found in the reserve, it
 * would answer the call before the allocator is tried with the call's full
 * flags, and the walk would not reach the reclaim it checks. */
static bool waits_in_the_pool(const struct give_back *g)
{
    return rcl__mempool_waiters(g->w->pool) > 0 && test_thread_waits_timed(g->caller);
}

static void *free_once_waited(void *arg)
{
    struct give_back *g = arg;
    while (!atomic_load(&g->returned) && !waits_in_the_pool(g))
        test_sleep_ms(1);
    rcl_mempool_free(g->w->held, g->w->pool);
    return NULL;
}

/* The mempool calls wait for an element where they cannot reclaim (inside
 * NORECLAIM): one comes back from another thread. */
static void with_element_returned(struct walk *w, void (*call)(struct walk *w))
{
    struct give_back g = { .w = w, .caller = gettid() };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, free_once_waited, &g), 0);
    call(w);
    atomic_store(&g.returned, 1);
    pthread_join(th, NULL);
    w->held = NULL;
}

static void run_alloc(struct walk *w) { w->p = rcl_alloc(SIZE, RCL_DEFAULT | RCL__NOWARN); }
static void run_calloc(struct walk *w) { w->p = rcl_calloc(SIZE / 64, 64, RCL_DEFAULT | RCL__NOWARN); }
static void run_aligned(struct walk *w) { w->p = rcl_aligned_alloc(4096, SIZE, RCL_DEFAULT | RCL__NOWARN); }
static void free_p(struct walk *w) { rcl_free(w->p); }
static void run_valloc(struct walk *w) { w->p = rcl_valloc(SIZE, RCL_DEFAULT | RCL__NOWARN); }
static void vfree_p(struct walk *w) { rcl_vfree(w->p); }

static void small_block(struct walk *w) { assert_non_null(w->p = rcl_alloc(64, RCL_DEFAULT)); }
static void large_block(struct walk *w) { assert_non_null(w->p = rcl_alloc(SIZE, RCL_DEFAULT)); }
static void run_realloc_grow(struct walk *w)
{
    void *q = rcl_realloc(w->p, SIZE, RCL_DEFAULT | RCL__NOWARN);
    if (q)
        w->p = q;
}
static void run_realloc_shrink(struct walk *w)
{
    void *q = rcl_realloc(w->p, 64, RCL_DEFAULT | RCL__NOWARN);
    if (q)
        w->p = q;
}

static void run_charge(struct walk *w)
{
    w->p = rcl_charge(SIZE, RCL_DEFAULT | RCL__NOWARN) == 0 ? (void *)1 : NULL;
}
static void uncharge_p(struct walk *w) { if (w->p) rcl_uncharge(SIZE); }
static void run_reclaim(struct walk *w) { (void)w; (void)rcl_reclaim(SIZE, RCL_DEFAULT); }
/* The I/O-flusher reserve is charged whole when it is made. */
static void run_flusher_reserve(struct walk *w)
{
    w->p = rcl_io_flusher_reserve(SIZE, 0) == 0 ? (void *)1 : NULL;
}
static void flusher_unreserve(struct walk *w) { if (w->p) rcl_io_flusher_reserve(0, 0); }

/* A pool whose reserve element is out: its next allocation goes to the
 * backing allocator with the full flags. */
static void pool_make(struct walk *w) { assert_non_null(w->pool = rcl_mempool_create(1, SIZE)); }
static void pool_drain(struct walk *w)
{
    /* NOWAIT: the light attempt fails at the watermark, the reserve
     * answers, and nothing reclaims. */
    assert_non_null(w->held = rcl_mempool_alloc(w->pool, RCL_NOWAIT));
}
static void pool_alloc(struct walk *w) { w->p = rcl_mempool_alloc(w->pool, RCL_DEFAULT); }
static void run_mempool_alloc(struct walk *w) { with_element_returned(w, pool_alloc); }
static void pool_bulk(struct walk *w)
{
    void *e[1];
    w->p = rcl_mempool_alloc_bulk(w->pool, e, 1) == 0 ? e[0] : NULL;
}
static void run_mempool_bulk(struct walk *w) { with_element_returned(w, pool_bulk); }
static void pool_put_back(struct walk *w)
{
    rcl_mempool_free(w->p, w->pool);
    rcl_mempool_free(w->held, w->pool);
    rcl_mempool_destroy(w->pool);
}
static void run_mempool_create(struct walk *w) { w->pool = rcl_mempool_create(4, SIZE); }
static void *ops_alloc(rcl_gfp_t gfp, void *data) { (void)data; return rcl_alloc(SIZE, gfp); }
static void ops_free(void *e, void *data) { (void)data; rcl_free(e); }
static void run_mempool_create_ops(struct walk *w)
{
    w->pool = rcl_mempool_create_ops(4, ops_alloc, ops_free, NULL);
}
static void pool_destroy(struct walk *w) { rcl_mempool_destroy(w->pool); }
static void run_mempool_resize(struct walk *w) { (void)rcl_mempool_resize(w->pool, 4); }

static void run_wq_create(struct walk *w) { w->wq = rcl_workqueue_create("walk", 2, 0); }
static void wq_make(struct walk *w) { assert_non_null(w->wq = rcl_workqueue_create("walk", 2, 0)); }
static void wq_destroy(struct walk *w) { rcl_workqueue_destroy(w->wq); }

/* Context adoption on a worker: the item allocates with RCL_DEFAULT and
 * runs in the context captured when it was queued. */
static void work_alloc(struct rcl_work *work)
{
    (void)work;
    rcl_free(rcl_alloc(SIZE, RCL_DEFAULT | RCL__NOWARN));
}
static void run_queue_work(struct walk *w)
{
    struct rcl_work work;
    rcl_work_init(&work, work_alloc);
    assert_int_equal(rcl_queue_work(w->wq, &work), 0);
    rcl_flush_workqueue(w->wq);
}

/* The same by hand: captured here, adopted by another thread. */
static void *adopter(void *arg)
{
    struct walk *w = arg;
    struct rcl_context saved;
    rcl_context_adopt(&w->ctx, &saved);
    rcl_free(rcl_alloc(SIZE, RCL_DEFAULT | RCL__NOWARN));
    rcl_context_restore(&saved);
    return NULL;
}
static void run_context_adopt(struct walk *w)
{
    pthread_t th;
    rcl_context_capture(&w->ctx);
    assert_int_equal(pthread_create(&th, NULL, adopter, w), 0);
    pthread_join(th, NULL);
}

static void run_lru_create(struct walk *w) { w->lru = rcl_lru_create(); }
static void lru_make(struct walk *w) { assert_non_null(w->lru = rcl_lru_create()); }
static void lru_destroy(struct walk *w) { if (w->lru) rcl_lru_destroy(w->lru); }
static void lru_free(struct rcl_lru_node *n, void *arg) { (void)n; (void)arg; }
static void run_lru_shrinker(struct walk *w)
{
    (void)rcl_lru_shrinker(w->lru, "walk-lru", NULL, lru_free, NULL, NULL);
}

static unsigned long none_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return RCL_SHRINK_EMPTY;
}
static unsigned long none_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 0;
}
static void run_shrinker_register(struct walk *w)
{
    static const struct rcl_shrinker_ops ops = { none_count, none_scan };
    w->shrinker = rcl_shrinker_register("walk", &ops, NULL, NULL);
}
static void shrinker_drop(struct walk *w) { if (w->shrinker) rcl_shrinker_unregister(w->shrinker); }
static void run_domain_create(struct walk *w) { w->dom = rcl_domain_create("walk", 0, NULL, NULL); }
static void domain_drop(struct walk *w) { if (w->dom) rcl_domain_destroy(w->dom); }

/* How an entry point is walked. */
#define ON_THIS_THREAD 0
#define ON_ANOTHER     1        /* runs in a context that travelled: NORECLAIM
                                   ("this thread is reclaiming") does not */
struct entry {
    const char *name;              /* the exported function */
    void (*before)(struct walk *);  /* before the budget is filled */
    void (*after_fill)(struct walk *);   /* must not reclaim */
    void (*run)(struct walk *);     /* inside the scope */
    void (*cleanup)(struct walk *);
    int   reclaims;                /* under pressure it reclaims, when the scope lets it */
    int   where;
};

static const struct entry entries[] = {
    { "rcl_alloc",              NULL, NULL, run_alloc, free_p, 1, ON_THIS_THREAD },
    { "rcl_calloc",             NULL, NULL, run_calloc, free_p, 1, ON_THIS_THREAD },
    { "rcl_realloc",            small_block, NULL, run_realloc_grow, free_p, 1, ON_THIS_THREAD },
    { "rcl_realloc",            large_block, NULL, run_realloc_shrink, free_p, 0, ON_THIS_THREAD },
    { "rcl_aligned_alloc",      NULL, NULL, run_aligned, free_p, 1, ON_THIS_THREAD },
    { "rcl_valloc",             NULL, NULL, run_valloc, vfree_p, 1, ON_THIS_THREAD },
    { "rcl_charge",             NULL, NULL, run_charge, uncharge_p, 1, ON_THIS_THREAD },
    { "rcl_reclaim",            NULL, NULL, run_reclaim, NULL, 1, ON_THIS_THREAD },
    { "rcl_io_flusher_reserve", NULL, NULL, run_flusher_reserve, flusher_unreserve, 1,
      ON_THIS_THREAD },
    { "rcl_mempool_alloc",      pool_make, pool_drain, run_mempool_alloc, pool_put_back, 1,
      ON_THIS_THREAD },
    { "rcl_mempool_alloc_bulk", pool_make, pool_drain, run_mempool_bulk, pool_put_back, 1,
      ON_THIS_THREAD },
    { "rcl_mempool_create",     NULL, NULL, run_mempool_create, pool_destroy, 1, ON_THIS_THREAD },
    { "rcl_mempool_create_ops", NULL, NULL, run_mempool_create_ops, pool_destroy, 1,
      ON_THIS_THREAD },
    { "rcl_mempool_resize",     pool_make, NULL, run_mempool_resize, pool_destroy, 1,
      ON_THIS_THREAD },
    { "rcl_workqueue_create",   NULL, NULL, run_wq_create, wq_destroy, 1, ON_THIS_THREAD },
    { "rcl_queue_work",         wq_make, NULL, run_queue_work, wq_destroy, 1, ON_ANOTHER },
    { "rcl_context_adopt",      NULL, NULL, run_context_adopt, NULL, 1, ON_ANOTHER },
    /* These allocate their own structures from libc, outside the budget:
     * they can never reclaim, which the walk confirms in every scope. */
    { "rcl_lru_create",         NULL, NULL, run_lru_create, lru_destroy, 0, ON_THIS_THREAD },
    { "rcl_lru_shrinker",       lru_make, NULL, run_lru_shrinker, lru_destroy, 0, ON_THIS_THREAD },
    { "rcl_shrinker_register",  NULL, NULL, run_shrinker_register, shrinker_drop, 0,
      ON_THIS_THREAD },
    { "rcl_domain_create",      NULL, NULL, run_domain_create, domain_drop, 0, ON_THIS_THREAD },
};
#define NENTRIES (sizeof(entries) / sizeof(entries[0]))

/* Every other exported function, and why it needs no walk. */
static const char *const never_allocates[] = {
    /* frees, uncharges, destroys: give back, never take */
    "rcl_free", "rcl_vfree", "rcl_uncharge", "rcl_mempool_free", "rcl_mempool_free_bulk",
    "rcl_mempool_destroy", "rcl_workqueue_destroy", "rcl_lru_destroy",
    "rcl_shrinker_unregister", "rcl_domain_destroy",
    /* thread-local state, no memory */
    "rcl_scope_save", "rcl_scope_restore", "rcl_scope_save_checked",
    "rcl_scope_restore_checked", "rcl_scope_current", "rcl_nofs_save", "rcl_nofs_restore",
    "rcl_noio_save", "rcl_noio_restore", "rcl_noreclaim_save", "rcl_noreclaim_restore",
    "rcl_nowait_save", "rcl_nowait_restore", "rcl_current_gfp", "rcl_context_capture",
    "rcl_context_restore", "rcl_domain_enter", "rcl_domain_exit", "rcl_domain_name",
    "rcl_domain_depth", "rcl_journal_info", "rcl_journal_info_set", "rcl_io_flusher_set",
    "rcl_io_flusher_get",
    /* queueing and waiting: the work structure is the caller's */
    "rcl_work_init", "rcl_flush_workqueue",
    /* the LRU's list operations work on embedded nodes */
    "rcl_lru_node_init", "rcl_lru_add", "rcl_lru_del", "rcl_lru_touch", "rcl_lru_count",
    "rcl_lru_list_init", "rcl_lru_list_pop", "rcl_lru_walk",
    /* the lock checker's annotations (its graph is static) and mutexes */
    "rcl_lock_acquire", "rcl_lock_acquire_try", "rcl_lock_acquire_nested", "rcl_lock_release",
    "rcl_might_alloc", "rcl_lock_class_unregister", "rcl_lockdep_set_slow_shrinker_ms",
    "rcl_lockdep_reports", "rcl_mutex_init", "rcl_mutex_lock", "rcl_mutex_lock_nested",
    "rcl_mutex_trylock", "rcl_mutex_unlock", "rcl_mutex_destroy",
    /* life cycle, configuration, figures: outside the budget (libc only) */
    "rcl_config_default", "rcl_init", "rcl_shutdown", "rcl_set_limit", "rcl_limit",
    "rcl_usage", "rcl_usage_sync", "rcl_auto_limit", "rcl_set_report_fn", "rcl_stats_get",
    "rcl_footprint", "rcl_alloc_charge", "rcl_io_flusher_reserved",
    "rcl_io_flusher_reserve_stats", "rcl_config_from_env", "rcl_stats_shrinkers", "rcl_version",
    "rcl_version_number",
    "rcl_stats_print",
    /* a signal handler's bracket: marks the thread, allocates nothing */
    "rcl_signal_enter", "rcl_signal_leave",
};
#define NNEVER (sizeof(never_allocates) / sizeof(never_allocates[0]))

/* ------------------------------------------------------------------------ */
/* The walk                                                                  */
/* ------------------------------------------------------------------------ */

static struct rcl_shrinker *rec_shrinker;

static int walk_setup(void **state)
{
    (void)state;
    if (test_init(LIMIT) != 0)
        return -1;
    static const struct rcl_shrinker_ops ops = { rec_count, rec_scan };
    struct rcl_shrinker_opts opts = { .batch = 1 };
    rec_shrinker = rcl_shrinker_register("recorder", &ops, NULL, &opts);
    return rec_shrinker ? 0 : -1;
}

static void walk_teardown(void)
{
    rcl_shrinker_unregister(rec_shrinker);
    rec_empty();
    rcl_shutdown();
    rcl_set_report_fn(NULL, NULL);
}

/* One entry point in one scope (0: none, the control that shows the walk
 * really makes it reclaim). Returns a description of what went wrong, or
 * NULL. */
static const char *walk_one(const struct entry *e, unsigned scope, char *why, size_t len)
{
    struct walk w;
    memset(&w, 0, sizeof(w));
    if (walk_setup(NULL) != 0)
        return "setup failed";
    if (e->before)
        e->before(&w);
    rec_fill();
    if (e->after_fill)
        e->after_fill(&w);
    atomic_store(&rec.scans, 0);
    atomic_store(&rec.gfp_or, 0);
    atomic_store(&rec.gfp_and, ~0u);

    unsigned saved = rcl_scope_save(scope);
    e->run(&w);
    rcl_scope_restore(saved);

    unsigned scans = atomic_load(&rec.scans);
    rcl_gfp_t seen_or = atomic_load(&rec.gfp_or), seen_and = atomic_load(&rec.gfp_and);
    if (e->cleanup)
        e->cleanup(&w);
    walk_teardown();

    /* What reaches the shrinkers: the scope's mask of RCL_DEFAULT; NORECLAIM
     * stays behind when the work runs on another thread. */
    unsigned eff = e->where == ON_ANOTHER ? scope & ~RCL_SCOPE_NORECLAIM : scope;
    rcl_gfp_t want = rcl__gfp_in_scope(RCL_DEFAULT, eff) & (RCL__IO | RCL__FS);
    bool may = !(eff & (RCL_SCOPE_NOWAIT | RCL_SCOPE_NORECLAIM));

    if (!may && scans) {
        snprintf(why, len, "%s: %u shrinker call(s) in scope 0x%x, which allows none",
                 e->name, scans, scope);
        return why;
    }
    if (may && e->reclaims && !scans) {
        snprintf(why, len, "%s: no reclaim in scope 0x%x (the walk did not reach it)",
                 e->name, scope);
        return why;
    }
    if (scans && ((seen_or & (RCL__IO | RCL__FS)) != want ||
                  (seen_and & (RCL__IO | RCL__FS)) != want)) {
        snprintf(why, len, "%s: reclaim ran with IO/FS 0x%x..0x%x in scope 0x%x; want 0x%x",
                 e->name, seen_and & (RCL__IO | RCL__FS), seen_or & (RCL__IO | RCL__FS),
                 scope, want);
        return why;
    }
    return NULL;
}

static void walk_scope(unsigned scope)
{
    char why[256];
    int bad = 0;
    for (size_t i = 0; i < NENTRIES; i++) {
        const char *err = walk_one(&entries[i], scope, why, sizeof(why));
        if (err) {
            print_error("%s\n", err);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

TEST_BARE(test_every_entry_point_reclaims_without_a_scope)
{
    walk_scope(0);
}

TEST_BARE(test_every_entry_point_honours_nofs)
{
    walk_scope(RCL_SCOPE_NOFS);
}

TEST_BARE(test_every_entry_point_honours_noio)
{
    walk_scope(RCL_SCOPE_NOIO);
}

TEST_BARE(test_every_entry_point_honours_nowait)
{
    walk_scope(RCL_SCOPE_NOWAIT);
}

TEST_BARE(test_every_entry_point_honours_noreclaim)
{
    walk_scope(RCL_SCOPE_NORECLAIM);
}

/* ------------------------------------------------------------------------ */
/* The table covers the library                                              */
/* ------------------------------------------------------------------------ */

static bool listed(const char *name)
{
    for (size_t i = 0; i < NENTRIES; i++)
        if (strcmp(entries[i].name, name) == 0)
            return true;
    for (size_t i = 0; i < NNEVER; i++)
        if (strcmp(never_allocates[i], name) == 0)
            return true;
    return false;
}

/* The library's exported functions: the public names (src/reclaim.map
 * exports rcl_ followed by a letter) defined in libreclaim.a, which lies
 * one directory above this test program in every build directory. */
static FILE *exported_functions(char *lib, size_t len)
{
    char exe[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    snprintf(lib, len, "%s/../libreclaim.a", exe);
    if (access(lib, R_OK) != 0)
        return NULL;
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "nm -g --defined-only '%s' 2>/dev/null", lib);
    return popen(cmd, "r");
}

TEST_BARE(test_table_lists_every_exported_function)
{
    char lib[PATH_MAX], line[512], name[64], type;
    FILE *f = exported_functions(lib, sizeof(lib));
    if (!f)
        skip();     /* needs the build's libreclaim.a and nm (binutils) */
    unsigned seen = 0, missing = 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%*s %c %63s", &type, name) != 2 || (type != 'T' && type != 'W'))
            continue;
        if (strncmp(name, "rcl_", 4) != 0 || name[4] < 'a' || name[4] > 'z')
            continue;
        seen++;
        if (!listed(name)) {
            print_error("%s is exported but not in this test's table: walk it through "
                        "the scopes (entries[]) or say why it never allocates\n", name);
            missing++;
        }
    }
    int rc = pclose(f);
    if (rc != 0 || seen == 0)
        skip();     /* nm missing or unreadable archive: nothing to compare */
    assert_int_equal(missing, 0);
}

/* Both halves of the table name real functions: a stale name would hide a
 * missing one. */
TEST_BARE(test_table_names_are_exported)
{
    char lib[PATH_MAX], line[512], name[64], type;
    FILE *f = exported_functions(lib, sizeof(lib));
    if (!f)
        skip();
    static char names[256][64];
    unsigned n = 0;
    while (n < 256 && fgets(line, sizeof(line), f))
        if (sscanf(line, "%*s %c %63s", &type, name) == 2 && (type == 'T' || type == 'W') &&
            strncmp(name, "rcl_", 4) == 0 && name[4] >= 'a' && name[4] <= 'z')
            snprintf(names[n++], sizeof(names[0]), "%s", name);
    if (pclose(f) != 0 || n == 0)
        skip();
    int stale = 0;
    for (size_t i = 0; i < NENTRIES + NNEVER; i++) {
        const char *want = i < NENTRIES ? entries[i].name : never_allocates[i - NENTRIES];
        unsigned j = 0;
        while (j < n && strcmp(names[j], want) != 0)
            j++;
        if (j == n) {
            print_error("%s is in the table but not exported\n", want);
            stale++;
        }
    }
    assert_int_equal(stale, 0);
}

TEST_MAIN();
