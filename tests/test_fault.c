/* SPDX-License-Identifier: MIT */
/*
 * test_fault.c - fault injection: every allocation, mmap, thread creation
 * and eventfd the library makes is failed, one at a time, across the API.
 *
 * The program is linked with -Wl,--wrap for each of those calls (see the
 * Makefile), so the library's own references, and only the objects linked
 * into this program, go through the __wrap_ functions below; the release
 * library is built exactly as always. A scenario runs once to count the
 * calls it makes, then once per call with that call (and only that one)
 * failing. Each run must give documented errors only, leave usage back at
 * zero once everything is freed, and leak nothing (LSan, in the ASan pass).
 */
#include "helpers.h"
#include "internal.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------------ */
/* The wrapped calls                                                         */
/* ------------------------------------------------------------------------ */

static atomic_bool armed;
static atomic_ulong calls;       /* wrapped calls since arming */
static atomic_ulong fail_at;     /* the call that fails; 0: none */
static atomic_ulong failed;      /* calls failed */
static atomic_ulong fail_upto;   /* every call up to this one fails too */

static bool inject(void)
{
    if (!atomic_load(&armed))
        return false;
    unsigned long n = atomic_fetch_add(&calls, 1) + 1;
    if (n != atomic_load(&fail_at) && n > atomic_load(&fail_upto))
        return false;
    atomic_fetch_add(&failed, 1);
    return true;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int   __real_posix_memalign(void **p, size_t align, size_t n);
char *__real_strdup(const char *s);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int   __real_eventfd(unsigned int initval, int flags);
int   __real_pthread_create(pthread_t *th, const pthread_attr_t *attr,
                            void *(*fn)(void *), void *arg);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
int   __wrap_posix_memalign(void **p, size_t align, size_t n);
char *__wrap_strdup(const char *s);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int   __wrap_eventfd(unsigned int initval, int flags);
int   __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr,
                            void *(*fn)(void *), void *arg);

/* A thread that sets one has its next mapping, or its next wrapped call
 * of any kind, interrupted by SIGUSR1 (handler_inside() and
 * handler_inside_start(), below). */
static __thread bool signal_at_mmap;
static __thread bool signal_at_call;

static void signal_if_asked(void)
{
    if (signal_at_call) {
        signal_at_call = false;
        raise(SIGUSR1);
    }
}

void *__wrap_malloc(size_t n)
{
    signal_if_asked();
    if (inject()) { errno = ENOMEM; return NULL; }
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size)
{
    signal_if_asked();
    if (inject()) { errno = ENOMEM; return NULL; }
    return __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n)
{
    signal_if_asked();
    if (inject()) { errno = ENOMEM; return NULL; }
    return __real_realloc(p, n);
}
int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    signal_if_asked();
    if (inject())
        return ENOMEM;
    return __real_posix_memalign(p, align, n);
}
char *__wrap_strdup(const char *s)
{
    signal_if_asked();
    if (inject()) { errno = ENOMEM; return NULL; }
    return __real_strdup(s);
}
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (signal_at_mmap) {
        signal_at_mmap = false;
        raise(SIGUSR1);
    }
    signal_if_asked();
    if (inject()) { errno = ENOMEM; return MAP_FAILED; }
    return __real_mmap(addr, len, prot, flags, fd, off);
}
int __wrap_eventfd(unsigned int initval, int flags)
{
    signal_if_asked();
    if (inject()) { errno = EMFILE; return -1; }
    return __real_eventfd(initval, flags);
}
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg)
{
    signal_if_asked();
    if (inject())
        return EAGAIN;
    return __real_pthread_create(th, attr, fn, arg);
}

/* The other backends' own entry points (src/backend.h), wrapped by the
 * Makefile when the library is built with them. */
#if defined(RCL_BACKEND_MIMALLOC)
void *__real_mi_malloc(size_t n);
void *__real_mi_realloc(void *p, size_t n);
void *__real_mi_malloc_aligned(size_t n, size_t align);
void *__wrap_mi_malloc(size_t n);
void *__wrap_mi_realloc(void *p, size_t n);
void *__wrap_mi_malloc_aligned(size_t n, size_t align);
void *__wrap_mi_malloc(size_t n) { return inject() ? NULL : __real_mi_malloc(n); }
void *__wrap_mi_realloc(void *p, size_t n) { return inject() ? NULL : __real_mi_realloc(p, n); }
void *__wrap_mi_malloc_aligned(size_t n, size_t align)
{
    return inject() ? NULL : __real_mi_malloc_aligned(n, align);
}
#elif defined(RCL_BACKEND_JEMALLOC)
void *__real_mallocx(size_t n, int flags);
void *__real_rallocx(void *p, size_t n, int flags);
void *__wrap_mallocx(size_t n, int flags);
void *__wrap_rallocx(void *p, size_t n, int flags);
void *__wrap_mallocx(size_t n, int flags) { return inject() ? NULL : __real_mallocx(n, flags); }
void *__wrap_rallocx(void *p, size_t n, int flags)
{
    return inject() ? NULL : __real_rallocx(p, n, flags);
}
#endif

/* ------------------------------------------------------------------------ */
/* Scenarios: each returns 0 when every result was a documented one          */
/* ------------------------------------------------------------------------ */

#define EXPECT(cond) do { if (!(cond)) { print_message("  %s:%d: %s\n", __FILE__, __LINE__, #cond); return -1; } } while (0)
/* A NULL result must say ENOMEM (or the listed alternative). */
#define NULL_IS(p, e) EXPECT((p) != NULL || errno == (e))

static int scenario_alloc_family(void)
{
    errno = 0;
    void *p = rcl_alloc(100, RCL_DEFAULT);
    NULL_IS(p, ENOMEM);
    void *c = rcl_calloc(10, 100, RCL_DEFAULT);
    NULL_IS(c, ENOMEM);
    void *r = rcl_realloc(p, 5000, RCL_DEFAULT);
    NULL_IS(r, ENOMEM);
    if (r)
        p = r;                   /* a failed realloc leaves p as it was */
    void *a = rcl_aligned_alloc(64, 1000, RCL_DEFAULT);
    NULL_IS(a, ENOMEM);
    void *v = rcl_valloc(3 * 4096, RCL_DEFAULT);
    NULL_IS(v, ENOMEM);
    void *big = rcl_alloc(2 * MiB, RCL_NOFS);
    NULL_IS(big, ENOMEM);
    rcl_free(big);
    rcl_free(v);
    rcl_free(a);
    rcl_free(c);
    rcl_free(p);
    return 0;
}

struct held { void *blocks[64]; atomic_uint n; };

static unsigned long held_count(void *priv, struct rcl_shrink_control *sc)
{
    struct held *h = priv;
    (void)sc;
    return atomic_load(&h->n) ? atomic_load(&h->n) : RCL_SHRINK_EMPTY;
}

static unsigned long held_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct held *h = priv;
    unsigned long done = 0;
    while (done < sc->nr_to_scan && atomic_load(&h->n)) {
        rcl_free(h->blocks[atomic_fetch_sub(&h->n, 1) - 1]);
        done++;
    }
    return done;
}

static const struct rcl_shrinker_ops held_ops = { .count = held_count, .scan = held_scan };

static int scenario_shrinker_reclaim(void)
{
    static struct held h;
    atomic_store(&h.n, 0);
    errno = 0;
    struct rcl_shrinker *s = rcl_shrinker_register("held", &held_ops, &h, NULL);
    NULL_IS(s, ENOMEM);
    for (unsigned i = 0; i < 64; i++) {
        void *b = rcl_alloc(4096, RCL_DEFAULT);
        NULL_IS(b, ENOMEM);
        if (b)
            h.blocks[atomic_fetch_add(&h.n, 1)] = b;
    }
    rcl_reclaim(128 * KiB, RCL_DEFAULT);
    if (s)
        rcl_shrinker_unregister(s);
    while (atomic_load(&h.n))
        rcl_free(h.blocks[atomic_fetch_sub(&h.n, 1) - 1]);
    return 0;
}

static void *ops_alloc(rcl_gfp_t gfp, void *data) { (void)data; return rcl_alloc(32, gfp); }
static void ops_free(void *e, void *data) { (void)data; rcl_free(e); }

static int scenario_mempool(void)
{
    errno = 0;
    struct rcl_mempool *pool = rcl_mempool_create(4, 256);
    NULL_IS(pool, ENOMEM);
    if (pool) {
        void *e[6];
        for (int i = 0; i < 6; i++)
            e[i] = rcl_mempool_alloc(pool, RCL_NOWAIT);
        int err = rcl_mempool_resize(pool, 8);
        EXPECT(err == 0 || err == -ENOMEM);
        for (int i = 0; i < 6; i++)
            rcl_mempool_free(e[i], pool);
        EXPECT(rcl_mempool_resize(pool, 1) == 0);
        rcl_mempool_destroy(pool);
    }
    struct rcl_mempool *ops = rcl_mempool_create_ops(2, ops_alloc, ops_free, NULL);
    NULL_IS(ops, ENOMEM);
    if (ops) {
        void *e = rcl_mempool_alloc(ops, RCL_DEFAULT);
        EXPECT(e != NULL);       /* a blocking pool allocation never fails */
        rcl_mempool_free(e, ops);
        rcl_mempool_destroy(ops);
    }
    return 0;
}

static atomic_int works_run;
static void count_work(struct rcl_work *w)
{
    (void)w;
    void *p = rcl_alloc(64, RCL_DEFAULT);
    rcl_free(p);
    atomic_fetch_add(&works_run, 1);
}

static int scenario_workqueue(unsigned flags)
{
    static struct rcl_work w[4];
    errno = 0;
    struct rcl_workqueue *wq = rcl_workqueue_create("fault", 2, flags);
    EXPECT(wq != NULL || errno == ENOMEM || errno == EAGAIN);
    if (!wq)
        return 0;
    atomic_store(&works_run, 0);
    for (int i = 0; i < 4; i++) {
        rcl_work_init(&w[i], count_work);
        EXPECT(rcl_queue_work(wq, &w[i]) == 0);
    }
    rcl_flush_workqueue(wq);
    EXPECT(atomic_load(&works_run) == 4);
    rcl_workqueue_destroy(wq);
    return 0;
}

static int scenario_workqueue_plain(void) { return scenario_workqueue(0); }
static int scenario_workqueue_rescuer(void) { return scenario_workqueue(RCL_WQ_MEM_RECLAIM); }

struct item { struct rcl_lru_node node; char pad[200]; };
static void item_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    rcl_free(RCL_LRU_ENTRY(n, struct item, node));
}

static int scenario_lru(void)
{
    errno = 0;
    struct rcl_lru *lru = rcl_lru_create();
    NULL_IS(lru, ENOMEM);
    if (!lru)
        return 0;
    struct rcl_shrinker *s = rcl_lru_shrinker(lru, "items", NULL, item_free, NULL, NULL);
    NULL_IS(s, ENOMEM);
    for (int i = 0; i < 32; i++) {
        struct item *it = rcl_alloc(sizeof(*it), RCL_DEFAULT);
        NULL_IS(it, ENOMEM);
        if (!it)
            continue;
        rcl_lru_node_init(&it->node);
        EXPECT(rcl_lru_add(lru, &it->node) == 1);
    }
    rcl_reclaim(4 * KiB, RCL_DEFAULT);
    struct rcl_lru_node dispose, *n;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(lru, NULL, NULL, ~0ul, &dispose);
    while ((n = rcl_lru_list_pop(&dispose)))
        item_free(n, NULL);
    EXPECT(rcl_lru_destroy(lru) == 0);
    return 0;
}

static int scenario_domains_context(void)
{
    errno = 0;
    struct rcl_domain *d = rcl_domain_create("fs", 1, NULL, NULL);
    NULL_IS(d, ENOMEM);
    if (!d)
        return 0;
    unsigned t = rcl_domain_enter(d);
    EXPECT(t != 0);
    struct rcl_context ctx, saved;
    rcl_context_capture(&ctx);
    rcl_context_adopt(&ctx, &saved);
    void *p = rcl_alloc(1000, RCL_DEFAULT);
    rcl_free(p);
    rcl_context_restore(&saved);
    rcl_domain_exit(t);
    rcl_domain_destroy(d);
    return 0;
}

static RCL_LOCK_CLASS(fault_class, "fault_lock");

static int scenario_lockdep_and_restart(void)
{
    /* The life cycle itself: an init that starts the background reclaimer
     * and the pressure thread (eventfd, threads), and the lock checker's
     * graph. */
    rcl_shutdown();
    struct rcl_config cfg = test_config(4 * MiB);
    cfg.background = 1;
    cfg.pressure = 1;
    cfg.lockdep = RCL_LOCKDEP_ON;
    int err = rcl_init(&cfg);
    EXPECT(err == 0);
    rcl_mutex_t m;
    EXPECT(rcl_mutex_init(&m, &fault_class) == 0);
    rcl_mutex_lock(&m);
    void *p = rcl_alloc(100, RCL_NOFS);
    rcl_free(p);
    rcl_mutex_unlock(&m);
    /* Past the low watermark without reclaiming: wakes the reclaimer. */
    void *blocks[64];
    unsigned n = 0;
    while (n < 64 && (blocks[n] = rcl_alloc(64 * KiB, RCL_NOWAIT)) != NULL)
        n++;
    while (n)
        rcl_free(blocks[--n]);
    return 0;
}

/* A thread's first call maps its block cache's lists: without them (the
 * mmap failed) it allocates and frees all the same, keeping no block. */
static void *thread_allocs(void *arg)
{
    void *p[8];
    int bad = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 8; i++) {
            errno = 0;
            p[i] = rcl_alloc(100 + 50 * (size_t)i, RCL_DEFAULT);
            bad |= !p[i] && errno != ENOMEM;
        }
        for (int i = 0; i < 8; i++)
            rcl_free(p[i]);
    }
    return bad ? NULL : arg;
}

static int scenario_new_thread(void)
{
    static int token;
    pthread_t th;
    void *ok = NULL;
    if (pthread_create(&th, NULL, thread_allocs, &token) != 0)
        return 0;                /* the injected failure was the thread's */
    EXPECT(pthread_join(th, &ok) == 0);
    EXPECT(ok == &token);
    return 0;
}

/* With the checker on, a thread's first lock event maps its held-lock
 * stack: without it (the mmap failed) the thread goes unchecked, told
 * once a graph, and its locks, scopes and allocations work all the same.
 * The thread takes two locks in the order opposite to the main thread's:
 * a thread the checker follows is reported, one it does not is not. */
static RCL_LOCK_CLASS(fault_class2, "fault_lock2");
static unsigned unfollowed;
#define UNFOLLOWED "no memory for a thread's held-lock stack"

static void *thread_checked(void *arg)
{
    rcl_lock_acquire(&fault_class);
    rcl_lock_acquire(&fault_class2);
    unsigned scope = rcl_scope_save(RCL_SCOPE_NOFS);
    void *p = rcl_alloc(300, RCL_DEFAULT);
    rcl_free(p);
    rcl_scope_restore(scope);
    rcl_lock_release(&fault_class2);
    rcl_lock_release(&fault_class);
    return arg;
}

static int scenario_checker_new_thread(void)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(4 * MiB);
    cfg.lockdep = RCL_LOCKDEP_ON;
    EXPECT(rcl_init(&cfg) == 0);
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    static int token;
    rcl_lock_acquire(&fault_class2);
    rcl_lock_acquire(&fault_class);
    rcl_lock_release(&fault_class);
    rcl_lock_release(&fault_class2);
    pthread_t th;
    void *ok = NULL;
    if (pthread_create(&th, NULL, thread_checked, &token) == 0) {
        EXPECT(pthread_join(th, &ok) == 0);
        EXPECT(ok == &token);
        bool told = test_reports_contain(UNFOLLOWED) != 0;
        EXPECT(!told || rcl_lockdep_reports() == 0);
        unfollowed += told;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The driver                                                                */
/* ------------------------------------------------------------------------ */

static void arm(unsigned long at)
{
    atomic_store(&calls, 0);
    atomic_store(&failed, 0);
    atomic_store(&fail_at, at);
    atomic_store(&armed, true);
}

static void disarm(void) { atomic_store(&armed, false); }

/* The library's threads may still be winding down after a scenario: a
 * failure they meet is theirs to handle too, so the count goes on until
 * everything is stopped (shutdown). */
static void run_one(int (*fn)(void), unsigned long at, const char *name)
{
    assert_int_equal(test_init(8 * MiB), 0);
    arm(at);
    int rc = fn();
    rcl_usage_sync();
    size_t usage = rcl_usage();
    rcl_shutdown();
    disarm();
    rcl_set_report_fn(NULL, NULL);
    if (rc != 0)
        fail_msg("%s, call %lu failed: an undocumented result", name, at);
    if (usage != 0)
        fail_msg("%s, call %lu failed: usage %zu after everything was freed", name, at, usage);
}

static void sweep(int (*fn)(void), const char *name)
{
    run_one(fn, 0, name);
    unsigned long n = atomic_load(&calls);
    /* The wrap must reach the library's calls, or this proves nothing. */
    assert_true(n > 0);
    unsigned long injected = 0;
    for (unsigned long at = 1; at <= n + 2; at++) {
        run_one(fn, at, name);
        injected += atomic_load(&failed);
    }
    /* Fewer than n when a one-time allocation (a table made on first
     * use and kept) happened in the counting run. */
    assert_true(injected > 0);
    print_message("  %s: %lu injection points, %lu failures injected\n", name, n, injected);
}

/* ------------------------------------------------------------------------ */
/* NOFAIL through a failing backend                                          */
/* ------------------------------------------------------------------------ */

#define BACKEND_FAILS 12

/* The backend fails the next BACKEND_FAILS calls: a NOFAIL call waits and
 * retries through them, reporting the stall, and returns a block. */
static void *nofail_through_failures(void *(*call)(void *arg), void *arg)
{
    atomic_store(&calls, 0);
    atomic_store(&failed, 0);
    atomic_store(&fail_at, 0);
    atomic_store(&fail_upto, BACKEND_FAILS);
    atomic_store(&armed, true);
    void *p = call(arg);
    atomic_store(&armed, false);
    atomic_store(&fail_upto, 0);
    assert_non_null(p);
    assert_int_equal(atomic_load(&failed), BACKEND_FAILS);
    return p;
}

static void *nf_alloc(void *arg) { (void)arg; return rcl_alloc(3000, RCL_DEFAULT | RCL__NOFAIL); }
static void *nf_calloc(void *arg)
{
    (void)arg;
    return rcl_calloc(10, 100, RCL_DEFAULT | RCL__NOFAIL);
}
/* Above the classes the backend zeroes the block: its own retries. */
static void *nf_calloc_large(void *arg)
{
    (void)arg;
    return rcl_calloc(1, 200 * KiB, RCL_DEFAULT | RCL__NOFAIL);
}
static void *nf_realloc(void *arg) { return rcl_realloc(arg, 5000, RCL_DEFAULT | RCL__NOFAIL); }
static void *nf_aligned(void *arg)
{
    (void)arg;
    return rcl_aligned_alloc(256, 1000, RCL_DEFAULT | RCL__NOFAIL);
}
static void *nf_aligned_zero(void *arg)
{
    (void)arg;
    return rcl_aligned_alloc(256, 1000, RCL_DEFAULT | RCL__NOFAIL | RCL__ZERO);
}
static void *nf_valloc(void *arg) { (void)arg; return rcl_valloc(3 * 4096, RCL_DEFAULT | RCL__NOFAIL); }

/* ------------------------------------------------------------------------ */
/* A signal inside the library's calls                                       */
/* ------------------------------------------------------------------------ */

/*
 * A handler that allocates without the bracket takes the handlers' path
 * when it interrupted the thread inside rcl_uncharge() or rcl_reclaim()
 * (reclaim.h), the thread's registration among it: here its first call,
 * interrupted at the mapping of its block cache's lists. There the
 * thread's state is half made: an ordinary allocation would register the
 * thread a second time, inside the first, and link it into the registry
 * twice. Served from the stash instead, which a thread not registered yet
 * does not have: NULL.
 */
static atomic_int handler_got;          /* 1: a block, -1: none */

static void alloc_in_handler(int sig)
{
    (void)sig;
    int saved = errno;
    void *p = rcl_alloc(64, RCL_ATOMIC);
    atomic_store(&handler_got, p ? 1 : -1);
    rcl_free(p);
    errno = saved;
}

static void *uncharge_first(void *arg)
{
    signal_at_mmap = true;
    rcl_uncharge(*(size_t *)arg);
    signal_at_mmap = false;
    return NULL;
}

static void *reclaim_first(void *arg)
{
    signal_at_mmap = true;
    rcl_reclaim(4096, RCL_DEFAULT);
    signal_at_mmap = false;
    rcl_uncharge(*(size_t *)arg);
    return NULL;
}

/* What the handler got on a new thread whose first call is first_call;
 * in a budget of its own, so that no exited thread's lists are kept for
 * the new one to take without a mapping (the shutdown unmaps them). */
static int handler_inside(void *(*first_call)(void *))
{
    struct rcl_config cfg = test_config(8 * MiB);
    size_t charged = 4096;
    pthread_t th;

    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_charge(charged, RCL_DEFAULT), 0);
    atomic_store(&handler_got, 0);
    assert_int_equal(pthread_create(&th, NULL, first_call, &charged), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
    return atomic_load(&handler_got);
}

TEST_BARE(test_a_handler_inside_a_threads_first_uncharge_or_reclaim_is_a_handlers_call)
{
    struct sigaction sa = { .sa_handler = alloc_in_handler }, old;

    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    assert_int_equal(handler_inside(uncharge_first), -1);
    assert_int_equal(handler_inside(reclaim_first), -1);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
    assert_int_equal(test_report_count(), 0);
    rcl_set_report_fn(NULL, NULL);
}

/*
 * The same for a thread's first call into each of the calls reclaim.h
 * lets such a handler interrupt, made while the library is not started:
 * the call starts it, under the life cycle's lock, and the handler is
 * served as a handler whether the start has marked the library ready
 * (the ordinary path then registered the thread inside the start) or not
 * (it started the library again inside the first start, and waited for
 * that lock for ever). Here the handler interrupts the start at its first
 * wrapped call, the pressure thread's. In a child of its own, so that a
 * call that hangs is ended, and the test fails, in bounded time.
 */
#define START_HUNG 2

static void first_uncharge(void) { rcl_uncharge(4096); }
static void first_reclaim(void) { (void)rcl_reclaim(4096, RCL_DEFAULT); }
static void first_usage(void) { (void)rcl_usage(); }
static void first_usage_sync(void) { rcl_usage_sync(); }
static void first_set_limit(void) { (void)rcl_set_limit(16 * MiB); }
static void first_limit(void) { (void)rcl_limit(); }
static void first_footprint(void) { (void)rcl_footprint(); }
static void first_stats_get(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
}
static void first_stats_shrinkers(void)
{
    struct rcl_shrinker_stats st[4];
    (void)rcl_stats_shrinkers(st, 4);
}

/* What the handler got (handler_got: -1, none, is the handlers' path; 0,
 * no signal came: the start made no wrapped call, in a system with no
 * pressure to follow), or START_HUNG if first_call did not return within
 * 10 s. */
static int handler_inside_start(void (*first_call)(void))
{
    int status;

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        atomic_store(&handler_got, 0);
        signal_at_call = true;
        first_call();
        signal_at_call = false;
        _exit(atomic_load(&handler_got) + 1);
    }
    assert_true(pid > 0);
    /* 10 s catches a start that hangs in the handler; a slow machine's
     * start takes milliseconds. */
    for (int ms = 0; ms < 10000; ms++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            assert_true(WIFEXITED(status));
            return WEXITSTATUS(status) - 1;
        }
        test_sleep_ms(1);
    }
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return START_HUNG;
}

struct first_call {
    const char *name;
    void (*call)(void);
};

static const struct first_call first_calls[] = {
    { "rcl_uncharge", first_uncharge },
    { "rcl_reclaim", first_reclaim },
    { "rcl_usage", first_usage },
    { "rcl_usage_sync", first_usage_sync },
    { "rcl_set_limit", first_set_limit },
    { "rcl_limit", first_limit },
    { "rcl_footprint", first_footprint },
    { "rcl_stats_get", first_stats_get },
    { "rcl_stats_shrinkers", first_stats_shrinkers },
};

#define NR_FIRST_CALLS (sizeof(first_calls) / sizeof(first_calls[0]))

/* The other calls that start the library. A handler may not interrupt
 * the rest of them, but the start inside one is the same start. */
static unsigned long none_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    return RCL_SHRINK_EMPTY;
}

static unsigned long none_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    return 0;
}

static const struct rcl_shrinker_ops none_ops = { .count = none_count, .scan = none_scan };
static RCL_LOCK_CLASS(first_class, "first_lock");

static void first_shrinker_register(void)
{
    struct rcl_shrinker *s = rcl_shrinker_register("none", &none_ops, NULL, NULL);
    if (s)
        rcl_shrinker_unregister(s);
}
static void first_io_flusher_set(void)
{
    (void)rcl_io_flusher_set(1);
    (void)rcl_io_flusher_set(0);
}
static void first_io_flusher_reserve(void)
{
    if (rcl_io_flusher_reserve(64 * KiB, 0) == 0)
        (void)rcl_io_flusher_reserve(0, 0);
}
static void first_init(void) { (void)rcl_init(NULL); }
static void first_might_alloc(void) { rcl_might_alloc(RCL_DEFAULT); }
static void first_lock_acquire(void)
{
    rcl_lock_acquire(&first_class);
    rcl_lock_release(&first_class);
}

static const struct first_call other_first_calls[] = {
    { "rcl_init", first_init },
    { "rcl_shrinker_register", first_shrinker_register },
    { "rcl_io_flusher_set", first_io_flusher_set },
    { "rcl_io_flusher_reserve", first_io_flusher_reserve },
    { "rcl_might_alloc", first_might_alloc },
    { "rcl_lock_acquire", first_lock_acquire },
};

#define NR_OTHER_FIRST_CALLS (sizeof(other_first_calls) / sizeof(other_first_calls[0]))

/* Each first call's handler, in a child of a parent that has the library
 * in the state the test set: how many were not served as a handler's
 * (named), and in *unseen how many starts made no wrapped call. */
static unsigned first_calls_not_a_handlers(const struct first_call *fc, size_t n,
                                           unsigned *unseen)
{
    unsigned wrong = 0;

    *unseen = 0;
    for (size_t i = 0; i < n; i++) {
        int got = handler_inside_start(fc[i].call);
        if (got == 0)
            (*unseen)++;
        else if (got != -1) {
            fprintf(stderr, "%s: %s\n", fc[i].name,
                    got == START_HUNG ? "hung" : "the handler got a block");
            wrong++;
        }
    }
    return wrong;
}

/* The handler in each call's start, the library not started. */
static void starts_are_a_handlers(const struct first_call *fc, size_t n)
{
    struct sigaction sa = { .sa_handler = alloc_in_handler }, old;
    unsigned unseen;

    rcl_shutdown();
    rcl_set_report_fn(test_report_catch, NULL);    /* the children's: theirs */
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    unsigned wrong = first_calls_not_a_handlers(fc, n, &unseen);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
    rcl_set_report_fn(NULL, NULL);
    assert_int_equal(wrong, 0);
    if (unseen == n) {
        print_message("skipped: the library's start made no wrapped call (no pressure to "
                      "follow here)\n");
        skip();
    }
}

TEST_BARE(test_a_handler_inside_a_threads_first_call_that_starts_the_library_is_a_handlers_call)
{
    starts_are_a_handlers(first_calls, NR_FIRST_CALLS);
}

/* rcl_init(), a shrinker's registration, an I/O flusher's calls,
 * rcl_might_alloc() and the first lock annotation start the library too:
 * the start inside them is the same, and so is a handler that interrupts
 * it. */
TEST_BARE(test_a_handler_inside_the_start_made_by_any_other_first_call_is_a_handlers_call)
{
    starts_are_a_handlers(other_first_calls, NR_OTHER_FIRST_CALLS);
}

/* The same in a child forked while the pressure thread ran: its first
 * call starts that thread again, under the life cycle's lock, the
 * library marked not ready until it is done. The parent's thread, which
 * the child's is, gave back its stock and cache first, so that the
 * handler's allocation cannot be served without a charge. */
static void restarts_are_a_handlers(const struct first_call *fc, size_t n)
{
    struct rcl_config cfg = test_config(8 * MiB);
    struct sigaction sa = { .sa_handler = alloc_in_handler }, old;
    unsigned unseen;

    if (test_under_sanitizer("tsan")) {
        print_message("skipped under tsan: it cannot start a thread in the child of a "
                      "multi-threaded process\n");
        skip();
    }
    cfg.pressure = 1;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(rcl_init(&cfg), 0);
    rcl_usage_sync();
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    unsigned wrong = first_calls_not_a_handlers(fc, n, &unseen);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
    rcl_shutdown();
    test_reports_take();
    rcl_set_report_fn(NULL, NULL);
    assert_int_equal(wrong, 0);
    if (unseen == n) {
        print_message("skipped: the library's restart made no wrapped call (no pressure "
                      "to follow here)\n");
        skip();
    }
}

TEST_BARE(test_a_handler_inside_a_childs_first_call_that_restarts_the_library_is_a_handlers_call)
{
    restarts_are_a_handlers(first_calls, NR_FIRST_CALLS);
}

/* A child's rcl_init() and first lock annotation restart nothing (the
 * library reads as started there): the other four do. */
TEST_BARE(test_a_handler_inside_the_restart_made_by_any_other_first_call_is_a_handlers_call)
{
    restarts_are_a_handlers(other_first_calls, NR_OTHER_FIRST_CALLS);
}

/* The backend's failure fails an ordinary request with ENOMEM, and is
 * reported as a failed charge is, unless NOWARN: the kernel's warn_alloc()
 * reports a failed allocation whatever stage failed it. (First of the
 * file's tests: the report is rate-limited to one a second.) */
static void *backend_fails_once(size_t size, rcl_gfp_t gfp)
{
    atomic_store(&calls, 0);
    atomic_store(&failed, 0);
    atomic_store(&fail_upto, 0);
    atomic_store(&fail_at, 1);
    atomic_store(&armed, true);
    errno = 0;
    void *p = rcl_alloc(size, gfp);
    atomic_store(&armed, false);
    atomic_store(&fail_at, 0);
    assert_int_equal(atomic_load(&failed), 1);
    return p;
}

TEST_BARE(test_a_backend_failure_is_reported_unless_nowarn)
{
    struct rcl_config cfg = test_config(8 * MiB);
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(rcl_init(&cfg), 0);
    rcl_free(rcl_alloc(100, RCL_DEFAULT));        /* the thread registered */

    assert_null(backend_fails_once(100 * KiB, RCL_DEFAULT | RCL__NOWARN));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(test_report_count(), 0);
    assert_null(backend_fails_once(100 * KiB, RCL_DEFAULT));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("allocation of 102400 bytes (DEFAULT) failed: the system allocator");

    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.failures, 2);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
    rcl_set_report_fn(NULL, NULL);
}

/* A zeroed block above the classes is the backend's zeroed allocation:
 * its failure fails the request, as any backend failure does, rather
 * than send it to the backend's plain allocation, whose block the
 * backend may hand back as its last owner wrote it. */
TEST_BARE(test_a_zeroed_large_block_the_backend_fails_is_a_failure_not_a_block_unzeroed)
{
    struct rcl_config cfg = test_config(8 * MiB);
    assert_int_equal(rcl_init(&cfg), 0);
    unsigned char *d = rcl_alloc(100 * KiB, RCL_DEFAULT);     /* memory of the size, */
    assert_non_null(d);                                        /* written, for the backend */
    memset(d, 0xff, 100 * KiB);                                /* to hand out again */
    rcl_free(d);

    unsigned char *p = backend_fails_once(100 * KiB, RCL_DEFAULT | RCL__ZERO | RCL__NOWARN);
    assert_null(p);
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(atomic_load(&calls), 1);

    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.failures, 1);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
}

TEST_BARE(test_nofail_retries_through_backend_failures)
{
    struct rcl_config cfg = test_config(8 * MiB);
    cfg.stall_ms = 1;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(rcl_init(&cfg), 0);
    rcl_free(rcl_alloc(100, RCL_DEFAULT));        /* the thread registered; a
                                                     block of 100 cached */

    void *a = nofail_through_failures(nf_alloc, NULL);
    void *c = nofail_through_failures(nf_calloc, NULL);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(((char *)c)[i], 0);
    char *cl = nofail_through_failures(nf_calloc_large, NULL);
    for (size_t i = 0; i < 200 * KiB; i += 4096)
        assert_int_equal(cl[i] | cl[i + 4095], 0);
    void *r = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(r);
    memset(r, 7, 100);
    r = nofail_through_failures(nf_realloc, r);
    assert_int_equal(((char *)r)[99], 7);
    void *al = nofail_through_failures(nf_aligned, NULL);
    assert_int_equal((uintptr_t)al % 256, 0);
    char *az = nofail_through_failures(nf_aligned_zero, NULL);
    assert_int_equal((uintptr_t)az % 256, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(az[i], 0);
    void *v = nofail_through_failures(nf_valloc, NULL);

    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_true(st.nofail_stalls >= 1);
    assert_reports_have("allocation stall");
    rcl_free(a);
    rcl_free(c);
    rcl_free(cl);
    rcl_free(r);
    rcl_free(al);
    rcl_free(az);
    rcl_free(v);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
    rcl_set_report_fn(NULL, NULL);
}

/* A NOFAIL request the budget granted waits for the backend as long as
 * the backend fails; a daemon that cancels the waiting thread gets the
 * charge back (the wait is a cancellation point: pthread_cancel is how a
 * daemon ends a stuck worker, as a fatal signal ends a task in the
 * kernel's __GFP_NOFAIL retry). */
static atomic_int nofail_go;
static atomic_int busy_in_cleanup;

/* The program's cleanup handler runs outside the library: its own
 * allocations take the ordinary path, not a signal handler's. */
static void note_busy(void *arg)
{
    (void)arg;
    atomic_store(&busy_in_cleanup, rcl__self.busy);
}

static void *nofail_forever(void *arg)
{
    (void)arg;
    pthread_cleanup_push(note_busy, NULL);
    while (!atomic_load(&nofail_go))
        test_sleep_ms(1);
    void *p = rcl_alloc(3000, RCL_DEFAULT | RCL__NOFAIL);
    rcl_free(p);
    pthread_cleanup_pop(0);
    return NULL;
}

TEST_BARE(test_a_cancelled_nofail_retry_gives_its_charge_back)
{
    struct rcl_config cfg = test_config(8 * MiB);
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(rcl_init(&cfg), 0);

    pthread_t th;
    atomic_store(&nofail_go, 0);
    atomic_store(&busy_in_cleanup, -1);
    assert_int_equal(pthread_create(&th, NULL, nofail_forever, NULL), 0);
    atomic_store(&calls, 0);
    atomic_store(&failed, 0);
    atomic_store(&fail_at, 0);
    atomic_store(&fail_upto, ULONG_MAX);     /* every call fails from now */
    atomic_store(&armed, true);
    atomic_store(&nofail_go, 1);
    for (int i = 0; i < 20000 && atomic_load(&failed) < 8; i++)
        test_sleep_ms(1);
    assert_true(atomic_load(&failed) >= 8);  /* retrying */
    assert_int_equal(pthread_cancel(th), 0);
    struct timespec until;
    void *ret;
    /* No duration is asserted: 20 s only turns a cancel the retry never
     * lets in (a hang) into a failure; a slow machine takes milliseconds. */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    int joined = pthread_timedjoin_np(th, &ret, &until);
    atomic_store(&armed, false);
    atomic_store(&fail_upto, 0);
    assert_int_equal(joined, 0);
    assert_ptr_equal(ret, PTHREAD_CANCELED);
    assert_int_equal(atomic_load(&busy_in_cleanup), 0);

    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
    rcl_set_report_fn(NULL, NULL);
}

/* Prints the statistics, with N shrinkers registered, while every
 * allocation the library makes fails; returns the text. */
static char *stats_printed_without_memory(int json, unsigned n)
{
    struct test_counter *sh[RCL_STATS_MAX_SHRINKERS + 8];
    char name[32], *buf = NULL;
    size_t len = 0;

    assert_true(n <= RCL_STATS_MAX_SHRINKERS + 8);
    for (unsigned i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "pool-%u", i);
        sh[i] = test_counter_new(name, 0, NULL);
    }
    FILE *f = open_memstream(&buf, &len);      /* stdio's own allocations */
    assert_non_null(f);                        /* are not the wrapped ones */
    atomic_store(&calls, 0);
    atomic_store(&failed, 0);
    atomic_store(&fail_at, 0);
    atomic_store(&fail_upto, ULONG_MAX);
    atomic_store(&armed, true);
    int ret = rcl_stats_print(f, json);
    atomic_store(&armed, false);
    atomic_store(&fail_upto, 0);
    assert_int_equal(ret, 0);
    assert_true(atomic_load(&failed) >= 1);
    fclose(f);
    for (unsigned i = 0; i < n; i++)
        test_counter_free(sh[i]);
    return buf;
}

/* Without the memory to list every shrinker, the text says how many it
 * leaves out rather than end the list short in silence. */
TEST_BARE(test_stats_text_without_memory_for_the_list_says_how_many_it_left_out)
{
    struct rcl_config cfg = test_config(8 * MiB);
    assert_int_equal(rcl_init(&cfg), 0);
    char *buf = stats_printed_without_memory(0, RCL_STATS_MAX_SHRINKERS + 3);

    assert_non_null(strstr(buf, "  shrinkers: 35 (the first 32 listed; 3 left out)\n"));
    assert_non_null(strstr(buf, "pool-31 "));
    assert_null(strstr(buf, "pool-32 "));
    free(buf);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
}

/* The JSON form says it too, in a member of its own. */
TEST_BARE(test_stats_json_without_memory_for_the_list_counts_the_shrinkers_left_out)
{
    struct rcl_config cfg = test_config(8 * MiB);
    assert_int_equal(rcl_init(&cfg), 0);
    char *buf = stats_printed_without_memory(1, RCL_STATS_MAX_SHRINKERS + 3);

    assert_non_null(strstr(buf, "\"nr_shrinkers\":35,\"shrinkers_left_out\":3,"));
    assert_non_null(strstr(buf, "\"pool-31\""));
    assert_null(strstr(buf, "\"pool-32\""));
    free(buf);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
}

#define SWEEP(fn) TEST_BARE(test_##fn) { sweep(fn, #fn); }
SWEEP(scenario_alloc_family)
SWEEP(scenario_shrinker_reclaim)
SWEEP(scenario_mempool)
SWEEP(scenario_workqueue_plain)
SWEEP(scenario_workqueue_rescuer)
SWEEP(scenario_lru)
SWEEP(scenario_domains_context)
SWEEP(scenario_lockdep_and_restart)
SWEEP(scenario_new_thread)

/* The sweep fails the thread's mapping among the rest: in that run, at
 * least, the thread is not followed. */
TEST_BARE(test_scenario_checker_new_thread)
{
    sweep(scenario_checker_new_thread, "scenario_checker_new_thread");
    assert_true(unfollowed >= 1);
}

TEST_MAIN();
