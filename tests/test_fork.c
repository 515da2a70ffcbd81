/* SPDX-License-Identifier: MIT */
/*
 * test_fork.c - fork() from a multi-threaded program whose other threads
 * are inside the library: allocating, reclaiming, scanning in shrinkers,
 * running and flushing workqueues, using a mempool. Every child must be
 * able to use the whole library, shut it down cleanly and exit; a child
 * that hangs is killed and fails the test.
 */
#include "helpers.h"
#include "internal.h"
#include "region.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Starting threads in a child of a multi-threaded process is what this
 * test is about; ThreadSanitizer refuses it unless told otherwise. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }

#define CHILD_TIMEOUT_MS 20000

/* ------------------------------------------------------------------------ */
/* The parent's busy threads                                                 */
/* ------------------------------------------------------------------------ */

struct item { struct rcl_lru_node node; char pad[480]; };

static struct rcl_lru *lru;
static struct rcl_shrinker *lru_shrinker;
static struct rcl_mempool *pool;
static struct rcl_workqueue *wq;
static atomic_bool stop;
/* Each busy thread's rounds of its loop, through its argument. */
enum { BUSY_THREADS = 5 };
static atomic_ulong busy_rounds[BUSY_THREADS];

static void went_round(void *arg)
{
    atomic_fetch_add((atomic_ulong *)arg, 1);
}

static void item_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    rcl_free(RCL_LRU_ENTRY(n, struct item, node));
}

static void *allocator(void *arg)
{
    while (!atomic_load(&stop)) {
        went_round(arg);
        struct item *it = rcl_alloc(sizeof(*it), RCL_DEFAULT);
        if (it) {
            rcl_lru_node_init(&it->node);
            rcl_lru_add(lru, &it->node);
        }
        void *p = rcl_alloc(1000, RCL_NOWAIT);
        rcl_free(p);
        void *e = rcl_mempool_alloc(pool, RCL_NOIO);
        rcl_mempool_free(e, pool);
    }
    return NULL;
}

static void *reclaimer(void *arg)
{
    while (!atomic_load(&stop)) {
        went_round(arg);
        rcl_reclaim(64 * KiB, RCL_DEFAULT);
    }
    return NULL;
}

static void work_fn(struct rcl_work *w)
{
    (void)w;
    void *p = rcl_alloc(4096, RCL_DEFAULT);
    rcl_free(p);
}

static void *queuer(void *arg)
{
    struct rcl_work works[8];
    for (unsigned i = 0; i < 8; i++)
        rcl_work_init(&works[i], work_fn);
    while (!atomic_load(&stop)) {
        went_round(arg);
        for (unsigned i = 0; i < 8; i++)
            rcl_queue_work(wq, &works[i]);
        rcl_flush_workqueue(wq);
    }
    rcl_flush_workqueue(wq);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* What each child does                                                      */
/* ------------------------------------------------------------------------ */

#define CHECK(cond, code) do { if (!(cond)) { fprintf(stderr, "child: %s failed\n", #cond); return (code); } } while (0)

static atomic_int child_work_ran;
static void child_work(struct rcl_work *w) { (void)w; atomic_fetch_add(&child_work_ran, 1); }

static unsigned long child_count(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    return RCL_SHRINK_EMPTY;
}
static unsigned long child_scan(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    return 0;
}

/* ThreadSanitizer cannot start threads in the child of a multi-threaded
 * process ("dup thread with used id": it still counts the parent's). */
static bool child_threads_unsupported(void)
{
    return test_under_sanitizer("tsan");
}

static int child_main(void)
{
    /* Allocation and reclaim, through the inherited shrinker too. */
    void *blocks[256];
    for (unsigned i = 0; i < 256; i++) {
        blocks[i] = rcl_alloc(2048, RCL_DEFAULT);
        CHECK(blocks[i], 10);
    }
    rcl_reclaim(1 * MiB, RCL_DEFAULT);
    for (unsigned i = 0; i < 256; i++)
        rcl_free(blocks[i]);

    /* The inherited pool and LRU, and new ones. */
    void *e = rcl_mempool_alloc(pool, RCL_DEFAULT);
    CHECK(e, 11);
    rcl_mempool_free(e, pool);
    struct rcl_mempool *p2 = rcl_mempool_create(2, 64);
    CHECK(p2, 12);
    e = rcl_mempool_alloc(p2, RCL_DEFAULT);
    CHECK(e, 13);
    rcl_mempool_free(e, p2);
    rcl_mempool_destroy(p2);

    struct rcl_lru *l2 = rcl_lru_create();
    CHECK(l2, 14);
    CHECK(rcl_lru_shrinker(l2, "child-lru", NULL, item_free, NULL, NULL), 15);
    for (unsigned i = 0; i < 64; i++) {
        struct item *it = rcl_alloc(sizeof(*it), RCL_DEFAULT);
        CHECK(it, 16);
        rcl_lru_node_init(&it->node);
        rcl_lru_add(l2, &it->node);
    }
    rcl_reclaim(1 * MiB, RCL_DEFAULT);

    /* Domains. */
    struct rcl_domain *d = rcl_domain_create("child-fs", 0, NULL, NULL);
    CHECK(d, 17);
    unsigned tok = rcl_domain_enter(d);
    CHECK(tok, 18);
    rcl_domain_exit(tok);
    rcl_domain_destroy(d);

    /* A new workqueue runs and flushes; the inherited one refuses. */
    struct rcl_work cw;
    if (!child_threads_unsupported()) {
        struct rcl_workqueue *w2 = rcl_workqueue_create("child-wq", 2, RCL_WQ_MEM_RECLAIM);
        CHECK(w2, 19);
        rcl_work_init(&cw, child_work);
        CHECK(rcl_queue_work(w2, &cw) == 0, 20);
        rcl_flush_workqueue(w2);
        CHECK(atomic_load(&child_work_ran) == 1, 21);
        rcl_workqueue_destroy(w2);
    }

    rcl_work_init(&cw, child_work);
    CHECK(rcl_queue_work(wq, &cw) == -ECHILD, 22);
    rcl_flush_workqueue(wq);                     /* returns at once */
    rcl_workqueue_destroy(wq);

    /* A shrinker registered here, and the inherited one that a parent
     * thread may have been scanning at the fork: unregistering must not
     * wait for a pass that does not exist here. */
    static const struct rcl_shrinker_ops ops = { .count = child_count, .scan = child_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("child", &ops, NULL, NULL);
    CHECK(s, 23);
    rcl_shrinker_unregister(s);
    rcl_shrinker_unregister(lru_shrinker);

    struct rcl_lru_node dispose;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(l2, NULL, NULL, ~0ul, &dispose);
    struct rcl_lru_node *n;
    while ((n = rcl_lru_list_pop(&dispose)))
        item_free(n, NULL);
    CHECK(rcl_lru_destroy(l2) == 0, 24);

    rcl_shutdown();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Forking and judging                                                       */
/* ------------------------------------------------------------------------ */

/* The child's exit status, or -1 (after killing it) if it hung. */
static int wait_child(pid_t pid)
{
    int status;
    for (long waited = 0; waited < CHILD_TIMEOUT_MS; waited += 5) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        test_sleep_ms(5);
    }
    /* TEST_FORK_DEBUG=1: a minute to attach a debugger to the hung child. */
    fprintf(stderr, "child %d hung\n", (int)pid);
    if (getenv("TEST_FORK_DEBUG"))
        test_sleep_ms(60000);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static pid_t fork_child(int (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0) {
        test_forked_child_dies_of_its_crashes();
        int rc = fn();
        fflush(stderr);
        _exit(rc);
    }
    return pid;
}

static int busy_setup(void **state)
{
    (void)state;
    struct rcl_config cfg = test_config(8 * MiB);
    /* A child that needed the reclaimer would start it: not under TSan. */
    cfg.background = !child_threads_unsupported();
    cfg.lockdep = RCL_LOCKDEP_ON;     /* its graph lock joins the fork order too */
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    if (rcl_init(&cfg))
        return -1;
    lru = rcl_lru_create();
    lru_shrinker = rcl_lru_shrinker(lru, "parent-lru", NULL, item_free, NULL, NULL);
    pool = rcl_mempool_create(4, 256);
    wq = rcl_workqueue_create("parent-wq", 4, RCL_WQ_MEM_RECLAIM);
    atomic_store(&stop, false);
    return lru && lru_shrinker && pool && wq ? 0 : -1;
}

static void drain_lru(void)
{
    struct rcl_lru_node dispose;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(lru, NULL, NULL, ~0ul, &dispose);
    struct rcl_lru_node *n;
    while ((n = rcl_lru_list_pop(&dispose)))
        item_free(n, NULL);
}

static int busy_teardown(void **state)
{
    rcl_workqueue_destroy(wq);
    rcl_mempool_destroy(pool);
    drain_lru();
    rcl_lru_destroy(lru);
    return test_teardown(state);
}

/* Returns once every busy thread has begun a round of its loop since the
 * rounds seen[] (updated): each fork finds them all at work, none not yet
 * started or starved by a loaded machine. */
static void every_busy_thread_went_round(unsigned long seen[BUSY_THREADS])
{
    for (unsigned t = 0; t < BUSY_THREADS; t++) {
        while (atomic_load(&busy_rounds[t]) == seen[t])
            test_sleep_ms(1);
        seen[t] = atomic_load(&busy_rounds[t]);
    }
}

TEST_WITH(test_children_of_a_busy_parent_use_the_library_and_exit, busy_setup, busy_teardown)
{
    /* These sanitizer runtimes do not hold their allocators' locks across
     * fork: a child forked while another thread is in malloc hangs in the
     * runtime's own allocator - ASan's before the library is reached,
     * TSan's about one run in twenty-five (the child waits on the lock of
     * one of TSan's size classes, in free(), with no thread left to
     * release it). The plain run forks 40 such children. */
    if (test_under_sanitizer("asan") || test_under_sanitizer("tsan")) {
        print_message("skipped: the sanitizer's allocator can hang in a child forked during "
                      "malloc\n");
        skip();
    }
    pthread_t th[BUSY_THREADS];
    void *(*fns[BUSY_THREADS])(void *) = { allocator, allocator, reclaimer, queuer, reclaimer };
    for (unsigned i = 0; i < BUSY_THREADS; i++) {
        atomic_store(&busy_rounds[i], 0);
        assert_int_equal(pthread_create(&th[i], NULL, fns[i], &busy_rounds[i]), 0);
    }

    unsigned long seen[BUSY_THREADS] = { 0 };
    int forks = test_scale(40), rc = 0, i;
    for (i = 0; i < forks && rc == 0; i++) {
        every_busy_thread_went_round(seen);
        pid_t pid = fork_child(child_main);
        rc = pid > 0 ? wait_child(pid) : -2;
    }

    atomic_store(&stop, true);
    for (unsigned t = 0; t < BUSY_THREADS; t++)
        pthread_join(th[t], NULL);
    if (rc != 0)
        fail_msg("child %d of %d: %s (status %d)", i, forks,
                 rc == -1 ? "hung, killed" : "failed", rc);
}

/* The child's shutdown closes only its own copy of the pressure thread's
 * stop eventfd: the parent's thread goes on. */
static bool has_thread(const char *name)
{
    return test_thread_named(name, NULL) != 0;
}

static int child_shutdown(void)
{
    rcl_shutdown();
    return 0;
}

/* The counts of this process's eventfds, summed, and how many there are.
 * The pressure thread's stop eventfd is the only one here (with a limit
 * set there is no cgroup threshold to arm), and the thread never reads
 * it: a write by the child would stay in its count. */
static unsigned long long eventfd_counts(unsigned *n)
{
    unsigned long long sum = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    assert_non_null(d);
    *n = 0;
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX], target[64], line[128];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        if (len < 0)
            continue;
        target[len] = '\0';
        if (strcmp(target, "anon_inode:[eventfd]") != 0)
            continue;
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%s", e->d_name);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f))
            if (strncmp(line, "eventfd-count:", 14) == 0)
                sum += strtoull(line + 14, NULL, 16);
        fclose(f);
        (*n)++;
    }
    closedir(d);
    return sum;
}

TEST(test_child_shutdown_leaves_the_parents_pressure_thread_running)
{
    unsigned before_n, after_n;

    rcl_shutdown();
    struct rcl_config cfg = test_config(64 * MiB);
    cfg.pressure = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    if (!has_thread("rcl-pressure")) {
        print_message("skipped: no PSI file and no cgroup here, so no pressure thread\n");
        skip();
    }
    unsigned long long before = eventfd_counts(&before_n);
    assert_true(before_n >= 1);
    assert_int_equal(wait_child(fork_child(child_shutdown)), 0);
    /* Not waited for the thread to see a stop: the stop would still be there. */
    assert_true(eventfd_counts(&after_n) == before && after_n == before_n);
    assert_true(has_thread("rcl-pressure"));
}

/* The child's own pressure thread comes back at its next slow path. */
static int child_pressure(void)
{
    CHECK(!has_thread("rcl-pressure"), 40);
    rcl_reclaim(1, RCL_DEFAULT);
    CHECK(has_thread("rcl-pressure"), 41);
    rcl_shutdown();
    CHECK(!has_thread("rcl-pressure"), 42);
    return 0;
}

TEST(test_child_gets_its_own_pressure_thread)
{
    if (child_threads_unsupported()) {
        print_message("skipped: TSan cannot start threads in the child\n");
        skip();
    }
    rcl_shutdown();
    struct rcl_config cfg = test_config(64 * MiB);
    cfg.pressure = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    if (!has_thread("rcl-pressure")) {
        print_message("skipped: no PSI file and no cgroup here, so no pressure thread\n");
        skip();
    }
    assert_int_equal(wait_child(fork_child(child_pressure)), 0);
    assert_true(has_thread("rcl-pressure"));
}

/* The child gets its own background reclaimer when it needs one. A stack
 * of blocks the test pushes and the shrinker pops, under one lock. */
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static void *held[4096];
static unsigned long nheld;

static unsigned long bg_count(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    pthread_mutex_lock(&held_lock);
    unsigned long n = nheld;
    pthread_mutex_unlock(&held_lock);
    return n ? n : RCL_SHRINK_EMPTY;
}

static void *held_pop(void)
{
    pthread_mutex_lock(&held_lock);
    void *b = nheld ? held[--nheld] : NULL;
    pthread_mutex_unlock(&held_lock);
    return b;
}

static unsigned long bg_scan(void *p, struct rcl_shrink_control *sc)
{
    unsigned long done = 0;
    void *b;
    (void)p;
    while (done < sc->nr_to_scan && (b = held_pop()) != NULL) {
        rcl_free(b);
        done++;
    }
    return done;
}

static int child_background(void)
{
    static const struct rcl_shrinker_ops ops = { .count = bg_count, .scan = bg_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("child-bg", &ops, NULL, NULL);
    CHECK(s, 30);
    /* Fill past the low watermark with NOWAIT allocations, which never
     * reclaim themselves: only the background reclaimer can help. */
    for (unsigned i = 0; i < 4096; i++) {
        void *b = rcl_alloc(1024, RCL_NOWAIT);
        if (!b)
            break;
        pthread_mutex_lock(&held_lock);
        held[nheld++] = b;
        pthread_mutex_unlock(&held_lock);
    }
    for (int waited = 0; waited < 10000; waited += 10) {
        struct rcl_stats st;
        rcl_stats_get(&st);
        if (st.background_reclaimed > 0)
            break;
        test_sleep_ms(10);
    }
    struct rcl_stats st;
    rcl_stats_get(&st);
    CHECK(st.background_reclaimed > 0, 31);
    rcl_shrinker_unregister(s);
    void *b;
    while ((b = held_pop()) != NULL)
        rcl_free(b);
    rcl_shutdown();
    return 0;
}

TEST(test_child_gets_its_own_background_reclaimer)
{
    if (child_threads_unsupported()) {
        print_message("skipped: TSan cannot start threads in the child\n");
        skip();
    }
    rcl_shutdown();
    struct rcl_config cfg = test_config(2 * MiB);
    cfg.background = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    /* Start the parent's reclaimer, so that the child inherits "running". */
    rcl_reclaim(1, RCL_NOWAIT);
    void *p = rcl_alloc(1900 * KiB, RCL_NOWAIT);
    rcl_free(p);
    assert_int_equal(wait_child(fork_child(child_background)), 0);
}

/* ------------------------------------------------------------------------ */
/* fork() from a nested pass                                                 */
/* ------------------------------------------------------------------------ */

/* A callback that lifts its NORECLAIM scope and reclaims (a misuse the
 * scope's own save/restore cannot see, if it puts the scope back) makes
 * a pass inside a pass; a fork from there leaves the child holding both
 * shrinkers. Each pass lets go of its shrinker in the child as in the
 * parent, so both can be unregistered there - and a shrinker held only
 * by the child's outer pass is not waited for by the inner one. */
static atomic_int nest_depth;
static atomic_bool nested_once;
static pid_t nested_child = -1;

/* A batch's worth: each pass calls each shrinker a few times, not
 * thousands (under TSan a pass of a million objects takes minutes). */
static unsigned long some(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    return 1024;
}

/* The first call nests a pass; later ones, in the parent and in the
 * child, do not. */
static unsigned long outer_scan(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    if (atomic_fetch_add(&nest_depth, 1) == 0 && !atomic_exchange(&nested_once, true)) {
        rcl_scope_restore(RCL_SCOPE_NORECLAIM);
        rcl_reclaim(1, RCL_DEFAULT);
        rcl_scope_save(RCL_SCOPE_NORECLAIM);
    }
    atomic_fetch_sub(&nest_depth, 1);
    return 0;
}

static unsigned long inner_scan(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    if (atomic_load(&nest_depth) == 1 && nested_child == -1) {
        fflush(stderr);
        nested_child = fork();
    }
    return 0;
}

TEST(a_child_forked_in_a_nested_pass_can_unregister_every_shrinker)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(8 * MiB);
    cfg.background = 0;
    assert_int_equal(rcl_init(&cfg), 0);
    static const struct rcl_shrinker_ops outer_ops = { .count = some, .scan = outer_scan };
    static const struct rcl_shrinker_ops inner_ops = { .count = some, .scan = inner_scan };
    struct rcl_shrinker *outer = rcl_shrinker_register("outer", &outer_ops, NULL, NULL);
    struct rcl_shrinker *inner = rcl_shrinker_register("inner", &inner_ops, NULL, NULL);
    assert_non_null(outer);
    assert_non_null(inner);

    rcl_reclaim(1, RCL_DEFAULT);
    if (nested_child == 0) {
        /* Either would wait forever for a hold its pass no longer has. */
        rcl_shrinker_unregister(inner);
        rcl_shrinker_unregister(outer);
        rcl_shutdown();
        _exit(test_report_count() == 0 ? 0 : 1);
    }
    assert_true(nested_child > 0);
    assert_int_equal(wait_child(nested_child), 0);
    rcl_shrinker_unregister(inner);
    rcl_shrinker_unregister(outer);
}

/* A shrinker another thread is unregistering, waiting for the forking
 * thread's scan of it: that thread is gone in the child, so the child
 * finishes its unregister once the scan lets the shrinker go, as it does
 * at the fork for one no pass of its own holds. */
static struct rcl_shrinker *orphan;
static pthread_t orphan_unregisterer;
static pid_t orphan_child = -1;

/* Starts th, which unregisters a shrinker a scan in flight holds, and
 * returns once its unregister waits for that scan: the fork that comes
 * next finds it there. (A thread seen asleep may still be on its way,
 * and a child forked before it marked the shrinker dead failed.) */
static void unregister_waiting(pthread_t *th, void *(*unregisters)(void *))
{
    /* Relaxed: the count publishes nothing. The fork's handlers take the
     * registry's lock, which the counting unregister held and lets go
     * only in its wait. */
    unsigned long waits = atomic_load_explicit(&rcl__unregister_waits, memory_order_relaxed);

    if (pthread_create(th, NULL, unregisters, NULL))
        abort();
    while (atomic_load_explicit(&rcl__unregister_waits, memory_order_relaxed) == waits)
        test_sleep_ms(1);
}

static void *unregisters_orphan(void *arg)
{
    (void)arg;
    rcl_shrinker_unregister(orphan);
    return NULL;
}

static unsigned long orphan_scan(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    if (orphan_child != -1)
        return 0;
    unregister_waiting(&orphan_unregisterer, unregisters_orphan);
    fflush(stderr);
    orphan_child = fork();
    return 0;
}

TEST(a_child_forked_in_a_scan_finishes_the_unregister_another_thread_was_waiting_in)
{
    static const struct rcl_shrinker_ops ops = { .count = some, .scan = orphan_scan };
    orphan = rcl_shrinker_register("orphan", &ops, NULL, NULL);
    assert_non_null(orphan);

    rcl_reclaim(1, RCL_DEFAULT);
    if (orphan_child == 0) {
        unsigned left = rcl_stats_shrinkers(NULL, 0);
        rcl_shutdown();
        _exit(left == 0 && test_report_count() == 0 ? 0 : 1);
    }
    assert_true(orphan_child > 0);
    pthread_join(orphan_unregisterer, NULL);
    assert_int_equal(wait_child(orphan_child), 0);
    assert_int_equal(rcl_stats_shrinkers(NULL, 0), 0);
}

/* A shrinker's callback on the background reclaimer forks, and the child
 * returns from it: the thread the child has is none of the child's
 * reclaimer (that one starts on demand), and it ends when the pass does,
 * the child with it, instead of waiting for wake-ups there for ever. */
static _Atomic pid_t reclaimer_child = -1;
static pthread_t fork_test_thread;
static void exit_at_once(void);
/* clang's ThreadSanitizer runtime faults in its own exit handler
 * (__tsan::TraceSwitchPart) when the last thread of a child forked from a
 * thread other than the main one ends the process; gcc's runs this. */
static void skip_where_a_child_cannot_end_on(const char *thread)
{
#ifdef __clang__
    if (test_under_sanitizer("tsan")) {
        print_message("skipped: clang's ThreadSanitizer faults in its exit handler when a "
                      "child forked on %s ends there\n", thread);
        skip();
    }
#else
    (void)thread;
#endif
}

static unsigned long forks_on_the_reclaimer(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    if (pthread_equal(pthread_self(), fork_test_thread) || atomic_load(&reclaimer_child) != -1)
        return 0;
    fflush(stderr);
    pid_t pid = fork();
    /* In the child 0: its later calls of the pass fork no more. */
    atomic_store(&reclaimer_child, pid);
    if (pid == 0) {
        test_forked_child_dies_of_its_crashes();
        atexit(exit_at_once);
    }
    return 0;
}

TEST(a_child_forked_on_the_background_reclaimer_ends_with_its_pass)
{
    static const struct rcl_shrinker_ops ops = { .count = some, .scan = forks_on_the_reclaimer };
    skip_where_a_child_cannot_end_on("the reclaimer's thread");
    rcl_shutdown();
    struct rcl_config cfg = test_config(2 * MiB);
    cfg.background = 1;
    assert_int_equal(rcl_init(&cfg), 0);
    fork_test_thread = pthread_self();
    struct rcl_shrinker *s = rcl_shrinker_register("forker", &ops, NULL, NULL);
    assert_non_null(s);

    unsigned long charged = 0;
    while (rcl_charge(KiB, RCL_NOWAIT) == 0)
        charged++;
    for (int ms = 0; ms < CHILD_TIMEOUT_MS && atomic_load(&reclaimer_child) == -1; ms++)
        test_sleep_ms(1);
    pid_t child = atomic_load(&reclaimer_child);
    assert_true(child > 0);
    assert_int_equal(wait_child(child), 0);

    rcl_shrinker_unregister(s);
    while (charged--)
        rcl_uncharge(KiB);
}

/* The footprint sampler is one at a time: a thread that finds another
 * reading marks nothing and returns. A child forked while a parent thread
 * was reading has no such thread, and must sample all the same, or its
 * budget stops seeing the memory it allocates outside the library. */
static atomic_bool sampling_stop;

static void *samples_without_pause(void *arg)
{
    (void)arg;
    while (!atomic_load(&sampling_stop))
        (void)rcl_footprint();
    return NULL;
}

static int child_sees_memory_allocated_outside(void)
{
    size_t outside = 16 * MiB;
    size_t before = rcl_footprint();
    char *q = malloc(outside);
    if (!q)
        return 2;
    test_written(memset(q, 1, outside));
    size_t after = rcl_footprint();
    free(q);
    if (after < before + outside / 2) {
        fprintf(stderr, "child: footprint %zu -> %zu after %zu bytes outside\n", before,
                after, outside);
        return 1;
    }
    return 0;
}

TEST(a_child_forked_while_the_footprint_is_read_goes_on_reading_it)
{
    /* The sanitizer builds measure no footprint: their shadow memory is
     * no program's. */
    if (test_under_sanitizer("asan") || test_under_sanitizer("tsan")) {
        print_message("skipped: the sanitizer builds measure no footprint\n");
        skip();
    }
    rcl_shutdown();
    struct rcl_config cfg = test_config(256 * MiB);
    cfg.footprint = RCL_FOOTPRINT_RSS;
    assert_int_equal(rcl_init(&cfg), 0);

    pthread_t th;
    atomic_store(&sampling_stop, false);
    assert_int_equal(pthread_create(&th, NULL, samples_without_pause, NULL), 0);
    int rc = 0, i;
    for (i = 0; i < 40 && rc == 0; i++) {
        pid_t pid = fork_child(child_sees_memory_allocated_outside);
        rc = pid > 0 ? wait_child(pid) : -2;
    }
    atomic_store(&sampling_stop, true);
    pthread_join(th, NULL);
    if (rc != 0)
        fail_msg("child %d: status %d", i, rc);
}

/* What a signal handler left on a thread the child does not have - the
 * stash its allocations are served from, a free it deferred - is lost to
 * the child, as the thread's cached blocks are, and its charge goes back
 * to the child's budget (reclaim.h, fork()). The thread is parked at the
 * fork, outside the library, holding no block. */
enum handler_left { LEFT_A_STASH, LEFT_A_DEFERRED_FREE };
static atomic_bool handler_left_ready, handler_left_go, handler_left_as_asked;

/* The stash is made at the thread's next allocation after a handler
 * first asks, and topped up the same way (reclaim.h): a handler's
 * allocation served from it shows it is there, and is made good. */
static void fill_the_signal_stash(void)
{
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    unsigned cookie = rcl_signal_enter();
    void *none = rcl_alloc(64, RCL_ATOMIC);
    rcl_signal_leave(cookie);
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    cookie = rcl_signal_enter();
    void *served = rcl_alloc(64, RCL_ATOMIC);
    rcl_signal_leave(cookie);
    atomic_store(&handler_left_as_asked, !none && served);
    rcl_free(served);
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
}

/* Deferred until the thread's next allocation, which the fork comes
 * before. */
static void defer_a_free(void)
{
    void *p = rcl_alloc(1000, RCL_DEFAULT);
    unsigned cookie = rcl_signal_enter();
    rcl_free(p);
    rcl_signal_leave(cookie);
    atomic_store(&handler_left_as_asked, p != NULL);
}

static void *parks_with_what_a_handler_left(void *arg)
{
    if ((enum handler_left)(uintptr_t)arg == LEFT_A_STASH)
        fill_the_signal_stash();
    else
        defer_a_free();
    atomic_store(&handler_left_ready, true);
    while (!atomic_load(&handler_left_go))
        test_sleep_ms(1);
    return NULL;
}

/* The child holds no block: once every stock is folded back, nothing is
 * charged, and the library's own books agree. */
static int child_has_nothing_charged(void)
{
    char why[256];

    rcl_usage_sync();
    size_t usage = rcl_usage();
    if (usage != 0) {
        fprintf(stderr, "child: %zu bytes still charged\n", usage);
        return 1;
    }
    if (rcl__acct_check(why, sizeof(why)) != 0) {
        fprintf(stderr, "child: %s\n", why);
        return 2;
    }
    return 0;
}

static void fork_beside(enum handler_left what)
{
    pthread_t th;

    atomic_store(&handler_left_ready, false);
    atomic_store(&handler_left_go, false);
    atomic_store(&handler_left_as_asked, false);
    assert_int_equal(pthread_create(&th, NULL, parks_with_what_a_handler_left,
                                    (void *)(uintptr_t)what), 0);
    while (!atomic_load(&handler_left_ready))
        test_sleep_ms(1);
    pid_t pid = fork_child(child_has_nothing_charged);
    int rc = pid > 0 ? wait_child(pid) : -2;
    atomic_store(&handler_left_go, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(atomic_load(&handler_left_as_asked));
    assert_int_equal(rc, 0);
}

TEST(a_child_gets_back_the_charge_of_another_threads_signal_stash)
{
    fork_beside(LEFT_A_STASH);
}

TEST(a_child_gets_back_the_charge_of_a_free_another_threads_handler_deferred)
{
    fork_beside(LEFT_A_DEFERRED_FREE);
}

/* What the parent's statistics said at the fork, and a thread that has
 * allocated and freed and waits through it. */
static struct rcl_stats stats_at_fork;
static atomic_bool counted_ready, counted_go;

static void *allocates_frees_and_parks(void *arg)
{
    (void)arg;
    for (int i = 0; i < 4; i++)
        rcl_free(rcl_alloc(100 + (size_t)i, RCL_DEFAULT));
    atomic_store(&counted_ready, true);
    while (!atomic_load(&counted_go))
        test_sleep_ms(1);
    return NULL;
}

static int child_counts_what_the_parent_counted(void)
{
    struct rcl_stats st;

    rcl_stats_get(&st);
    if (st.allocations != stats_at_fork.allocations || st.frees != stats_at_fork.frees) {
        fprintf(stderr, "child: %lu allocations, %lu frees; the parent had %lu, %lu\n",
                st.allocations, st.frees, stats_at_fork.allocations, stats_at_fork.frees);
        return 1;
    }
    return 0;
}

/* The threads a child lost keep their place in its statistics: their
 * allocations and frees are counted as an exited thread's are. */
TEST(a_child_counts_the_allocations_and_frees_of_the_threads_it_lost)
{
    pthread_t th;

    atomic_store(&counted_ready, false);
    atomic_store(&counted_go, false);
    assert_int_equal(pthread_create(&th, NULL, allocates_frees_and_parks, NULL), 0);
    while (!atomic_load(&counted_ready))
        test_sleep_ms(1);
    rcl_stats_get(&stats_at_fork);
    pid_t pid = fork_child(child_counts_what_the_parent_counted);
    int rc = pid > 0 ? wait_child(pid) : -2;
    atomic_store(&counted_go, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(stats_at_fork.allocations >= 4 && stats_at_fork.frees >= 4);
    assert_int_equal(rc, 0);
}

/* The thread that calls fork() next, once it is about to: 0 otherwise. */
static atomic_int forking_tid;

static pid_t fork_announced(int (*child)(void))
{
    atomic_store(&forking_tid, (int)syscall(SYS_gettid));
    pid_t pid = fork_child(child);
    atomic_store(&forking_tid, 0);
    return pid;
}

/* Is the thread that announced its fork asleep in a lock the calling
 * thread holds? A holder that lets go only then knows the fork waited for
 * it; any other sleep of the fork's (a lock of the sanitizer's runtime or
 * of the allocator) is not taken for that wait. */
static bool fork_asleep(void)
{
    int tid = atomic_load(&forking_tid);
    return tid && test_thread_waits_for_lock_of(tid, (pid_t)syscall(SYS_gettid));
}

/* A fork comes to the lock in milliseconds: only a hang takes this long.
 * Less than wait_child() gives the nested walk's child, so that the walk,
 * not the child's timeout, says what went wrong. */
#define FORK_WAIT_HANG_MS (CHILD_TIMEOUT_MS / 2)

/* Whether the fork is seen asleep in the caller's lock before it returns
 * without waiting, or before FORK_WAIT_HANG_MS: a holder that lets go
 * without having seen it fails its test rather than holding on for ever. */
static bool fork_seen_asleep(atomic_bool *fork_returned)
{
    /* By the clock, not by passes: a pass's /proc reads take a loaded or
     * sanitized run far past its millisecond's sleep. */
    struct timespec now, start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long ms = 0; ms < FORK_WAIT_HANG_MS;) {
        if (fork_asleep())
            return true;
        if (atomic_load(fork_returned))
            return false;
        test_sleep_ms(1);
        clock_gettime(CLOCK_MONOTONIC, &now);
        ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    }
    fprintf(stderr, "the fork was never seen waiting for the lock\n");
    return false;
}

/* A leaf lock at the end of fork()'s order, held by another thread until
 * the fork waits for it: the fork waits for that thread, so that the
 * child never finds the lock held by a thread it does not have, and the
 * child then takes it itself. Without the lock in the order, the fork
 * would return with the lock still held and the child hang on it. */
struct leaf_lock {
    void (*take)(void), (*let_go)(void);
    atomic_bool held, let_go_done, fork_returned;
};

/* Detached: the child has a copy of it that nobody could join, which
 * ThreadSanitizer would report at the child's exit. */
static void *hold_a_leaf_lock(void *arg)
{
    struct leaf_lock *l = arg;

    l->take();
    atomic_store(&l->held, true);
    /* A fork that returned without waiting has failed the test, and one
     * never seen waiting does, finding let_go_done false. */
    if (fork_seen_asleep(&l->fork_returned))
        atomic_store(&l->let_go_done, true);    /* before: the next holder sees it */
    l->let_go();
    return NULL;
}

static void fork_while_held(struct leaf_lock *l, int (*child)(void))
{
    pthread_attr_t attr;
    pthread_t th;

    test_skip_unless_lock_waits_read();       /* or fork_asleep() is never true */
    atomic_store(&l->held, false);
    atomic_store(&l->let_go_done, false);
    atomic_store(&l->fork_returned, false);
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED), 0);
    assert_int_equal(pthread_create(&th, &attr, hold_a_leaf_lock, l), 0);
    pthread_attr_destroy(&attr);
    while (!atomic_load(&l->held))
        test_sleep_ms(1);
    pid_t pid = fork_announced(child);
    bool waited = atomic_load(&l->let_go_done);
    atomic_store(&l->fork_returned, true);
    assert_true(pid > 0);
    int rc = wait_child(pid);
    assert_true(waited);
    assert_int_equal(rc, 0);
}

static int child_takes_a_span(void)
{
    void *s = rcl__region_span_get();

    if (!s)
        return 1;
    if (!rcl__region_holds(s))
        return 2;
    rcl__region_span_put(s, false);
    return 0;
}

/* The regions' lock (src/region.c), as a span taken holds it. */
TEST(a_fork_waits_for_the_regions_lock_and_the_child_takes_a_span)
{
    static struct leaf_lock regions = { .take = rcl__region_atfork_prepare,
                                        .let_go = rcl__region_atfork_parent };

    fork_while_held(&regions, child_takes_a_span);
}

/* The child makes an I/O flusher's reserve of its own, as the header
 * says a daemon should after it forks, and releases it. */
static int child_makes_a_reserve(void)
{
    struct rcl_flusher_reserve_stats st;

    if (rcl_io_flusher_reserve(64 * KiB, 0) != 0)
        return 1;
    rcl_io_flusher_reserve_stats(&st);
    if (st.size != 64 * KiB)
        return 2;
    return rcl_io_flusher_reserve(0, 0) == 0 ? 0 : 3;
}

/* The I/O flusher reserve's lock (src/flusher_reserve.c), as a flusher's
 * allocation from it holds it. */
TEST(a_fork_waits_for_the_reserves_lock_and_the_child_makes_a_reserve)
{
    static struct leaf_lock reserve = { .take = rcl__resv_atfork_prepare,
                                        .let_go = rcl__resv_atfork_parent };

    fork_while_held(&reserve, child_makes_a_reserve);
}

/* A flusher thread serving from the reserve at the fork is not in the
 * child, and neither is its use of the reserve: the child can release it
 * and have its charge back. Nor is the reserve locked there, since memory
 * locks are not inherited. */
static int refuse_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
                        unsigned long a5)
{
    (void)option; (void)a2; (void)a3; (void)a4; (void)a5;
    errno = EPERM;
    return -1;
}

static atomic_bool flusher_serving, flusher_may_end;

static void *serves_from_the_reserve(void *arg)
{
    (void)arg;
    (void)rcl_io_flusher_set(1);
    atomic_store(&flusher_serving, rcl_io_flusher_reserved() != 0);
    while (!atomic_load(&flusher_may_end))
        test_sleep_ms(1);
    rcl_io_flusher_set(0);
    return NULL;
}

static int child_releases_the_reserve(void)
{
    struct rcl_flusher_reserve_stats st;

    rcl_io_flusher_reserve_stats(&st);
    if (st.threads != 0)
        return 1;
    if (st.locked)
        return 2;
    if (rcl_io_flusher_reserve(0, 0) != 0)
        return 3;
    rcl_usage_sync();
    return rcl_usage() == 0 ? 0 : 4;
}

TEST(a_child_releases_the_reserve_a_parents_flusher_thread_used)
{
    int (*real_prctl)(int, unsigned long, unsigned long, unsigned long, unsigned long) =
        rcl__prctl;
    pthread_t th;

    rcl__prctl = refuse_prctl;
    atomic_store(&flusher_serving, false);
    atomic_store(&flusher_may_end, false);
    assert_int_equal(rcl_io_flusher_reserve(64 * KiB, RCL_FLUSHER_MLOCK), 0);
    assert_int_equal(pthread_create(&th, NULL, serves_from_the_reserve, NULL), 0);
    for (int ms = 0; ms < CHILD_TIMEOUT_MS && !atomic_load(&flusher_serving); ms++)
        test_sleep_ms(1);
    assert_true(atomic_load(&flusher_serving));

    int rc = wait_child(fork_child(child_releases_the_reserve));

    atomic_store(&flusher_may_end, true);
    pthread_join(th, NULL);
    rcl__prctl = real_prctl;
    assert_int_equal(rc, 0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
    test_reports_reset();           /* the refused prctl, and mlock where refused */
}

/* An LRU's isolate callback may use another LRU (or queue work): object
 * locks nest in whatever order the program's callbacks take them. A fork
 * meanwhile waits for the walk and the child gets both LRUs. The scene is
 * played in a child of its own, so that a fork that hangs is killed. */
static struct rcl_lru *made_first, *made_second;
static struct rcl_lru_node first_node, second_node;
static atomic_bool isolating, nested_fork_returned, isolate_let_go;

static enum rcl_lru_walk adds_to_the_lru_made_first(struct rcl_lru_node *n, void *arg)
{
    (void)n; (void)arg;
    atomic_store(&isolating, true);
    /* The fork waiting for this walk's LRU; one that returned without
     * waiting has failed the test, and so has one never seen waiting. */
    if (fork_seen_asleep(&nested_fork_returned))
        atomic_store(&isolate_let_go, true);    /* before the walk lets its LRU go */
    rcl_lru_add(made_first, &first_node);
    return RCL_LRU_SKIP;
}

static void *walks_the_lru_made_second(void *arg)
{
    struct rcl_lru_node dispose;

    (void)arg;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(made_second, adds_to_the_lru_made_first, NULL, 1, &dispose);
    return NULL;
}

static int grandchild_empties_both_lrus(void)
{
    if (rcl_lru_del(made_first, &first_node) != 1)
        return 1;
    if (rcl_lru_del(made_second, &second_node) != 1)
        return 2;
    return rcl_lru_destroy(made_first) || rcl_lru_destroy(made_second) ? 3 : 0;
}

static int child_forks_inside_a_nested_walk(void)
{
    pthread_t th;

    made_first = rcl_lru_create();
    made_second = rcl_lru_create();
    if (!made_first || !made_second)
        return 10;
    rcl_lru_node_init(&first_node);
    rcl_lru_node_init(&second_node);
    rcl_lru_add(made_second, &second_node);
    atomic_store(&isolating, false);
    atomic_store(&nested_fork_returned, false);
    atomic_store(&isolate_let_go, false);
    if (pthread_create(&th, NULL, walks_the_lru_made_second, NULL))
        return 11;
    while (!atomic_load(&isolating))
        test_sleep_ms(1);
    pid_t pid = fork_announced(grandchild_empties_both_lrus);
    bool waited = atomic_load(&isolate_let_go);
    atomic_store(&nested_fork_returned, true);
    int rc = pid <= 0 ? 13 : waited ? wait_child(pid) : 12;
    /* A grandchild forked with the LRU held would hang on it: not waited for. */
    if (pid > 0 && !waited) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    pthread_join(th, NULL);
    rcl_lru_del(made_first, &first_node);
    rcl_lru_del(made_second, &second_node);
    rcl_lru_destroy(made_first);
    rcl_lru_destroy(made_second);
    return rc;
}

TEST(a_fork_during_an_isolate_callback_that_uses_another_lru_goes_through)
{
    if (child_threads_unsupported()) {
        print_message("skipped: ThreadSanitizer starts no thread in a child\n");
        skip();
    }
    test_skip_unless_lock_waits_read();       /* or fork_asleep() is never true */
    assert_int_equal(wait_child(fork_child(child_forks_inside_a_nested_walk)), 0);
}

/* fork() from an isolate callback: the forking thread holds the walked
 * LRU's lock itself, and the prepare handler waited for it for ever. The
 * walk goes on in both processes and lets it go. Played in a child of its
 * own, so that a fork that hangs is killed. */
static struct rcl_lru *walked;
static struct rcl_lru_node walked_node;
static pid_t forked_in_isolate = -1;

static enum rcl_lru_walk forks_in_isolate(struct rcl_lru_node *n, void *arg)
{
    (void)n; (void)arg;
    forked_in_isolate = fork();
    return RCL_LRU_SKIP;
}

/* Each process, after the walk, has the LRU to itself. */
static int walked_lru_emptied(void)
{
    return rcl_lru_del(walked, &walked_node) == 1 && rcl_lru_destroy(walked) == 0 ? 0 : 1;
}

static int child_forks_inside_its_own_walk(void)
{
    struct rcl_lru_node dispose;

    walked = rcl_lru_create();
    if (!walked)
        return 10;
    rcl_lru_node_init(&walked_node);
    rcl_lru_add(walked, &walked_node);
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(walked, forks_in_isolate, NULL, 1, &dispose);
    if (forked_in_isolate == 0)
        _exit(walked_lru_emptied());
    if (forked_in_isolate < 0)
        return 11;
    int rc = wait_child(forked_in_isolate);
    return rc ? rc : walked_lru_emptied() ? 12 : 0;
}

TEST(a_fork_from_an_isolate_callback_goes_through)
{
    assert_int_equal(wait_child(fork_child(child_forks_inside_its_own_walk)), 0);
}

/* A work item that forks returns, in the child, to the queue's thread:
 * the child must neither run the items the parent runs (here the one
 * queued after it) nor wait there for ever. */
static pid_t parent_pid, work_child = -1;

/* The child's end is its last thread's: exit(0), whose handlers are the
 * parent's (the leak checker's among them); skip them, as fork_child()
 * does with _exit(). */
static void exit_at_once(void) { _exit(0); }

static void forks_fn(struct rcl_work *w)
{
    (void)w;
    pid_t pid = fork();
    if (pid == 0) {
        test_forked_child_dies_of_its_crashes();
        atexit(exit_at_once);
        return;                             /* to the queue's thread */
    }
    work_child = pid;
}

static void queued_after_fn(struct rcl_work *w)
{
    (void)w;
    if (getpid() != parent_pid)
        _exit(3);                           /* the parent's item, run twice */
}

TEST(a_child_forked_in_a_work_item_runs_none_of_the_queues_items)
{
    skip_where_a_child_cannot_end_on("a worker thread");
    struct rcl_workqueue *q = rcl_workqueue_create("forking", 1, 0);
    struct rcl_work forks, after;

    assert_non_null(q);
    parent_pid = getpid();
    rcl_work_init(&forks, forks_fn);
    rcl_work_init(&after, queued_after_fn);
    assert_int_equal(rcl_queue_work(q, &forks), 0);
    assert_int_equal(rcl_queue_work(q, &after), 0);
    rcl_flush_workqueue(q);
    assert_true(work_child > 0);
    assert_int_equal(wait_child(work_child), 0);
    rcl_workqueue_destroy(q);
}

/* A child forked in a work item that ends its thread there with
 * pthread_exit(): the queue's place for that thread is the parent's, and
 * the child starts no worker to fill it. One started would run the item
 * queued behind (the parent runs it) and then wait for work for ever,
 * keeping alive a child whose last thread had ended. */
static atomic_int behind_queued;

static void forks_and_exits_fn(struct rcl_work *w)
{
    (void)w;
    while (!atomic_load(&behind_queued))
        test_sleep_ms(1);
    pid_t pid = fork();
    if (pid == 0) {
        test_forked_child_dies_of_its_crashes();
        atexit(exit_at_once);
        pthread_exit(NULL);
    }
    work_child = pid;
}

TEST(a_child_forked_in_a_work_item_that_exits_its_thread_starts_no_worker)
{
    skip_where_a_child_cannot_end_on("a worker thread");
    struct rcl_workqueue *q = rcl_workqueue_create("forking", 1, 0);
    struct rcl_work forks, after;

    assert_non_null(q);
    parent_pid = getpid();
    work_child = -1;
    atomic_store(&behind_queued, 0);
    rcl_work_init(&forks, forks_and_exits_fn);
    rcl_work_init(&after, queued_after_fn);
    assert_int_equal(rcl_queue_work(q, &forks), 0);
    assert_int_equal(rcl_queue_work(q, &after), 0);
    atomic_store(&behind_queued, 1);
    rcl_flush_workqueue(q);
    assert_true(work_child > 0);
    assert_int_equal(wait_child(work_child), 0);
    rcl_workqueue_destroy(q);
}

/* A queue with items queued at the fork, one running and one behind it:
 * the child's destroy drops the one behind, and says so. Its report is
 * made once the child's copy is freed: a report function that ends its
 * thread there leaves the queue freed, its memory back in the budget.
 * (The report came first: the thread ended with the queue claimed by the
 * destroy, never freed.) */
static struct rcl_workqueue *forked_queue;

static void *destroys_the_forked_queue_and_ends(void *arg)
{
    (void)arg;
    test_reports_end_this_thread();
    rcl_workqueue_destroy(forked_queue);
    return NULL;                                /* not reached */
}

static int child_destroys_the_queue_in_a_thread_that_ends(void)
{
    pthread_t th;
    size_t before = rcl_usage();

    rcl_set_report_fn(test_report_catch_then_end, NULL);
    CHECK(pthread_create(&th, NULL, destroys_the_forked_queue_and_ends, NULL) == 0, 1);
    CHECK(pthread_join(th, NULL) == 0, 2);
    rcl_set_report_fn(test_report_catch, NULL);
    CHECK(test_reports_contain("1 queued item(s) dropped"), 3);
    CHECK(rcl_usage() < before, 4);
    return 0;
}

static atomic_int gate_reached, gate_opened;

static void waits_at_gate_fn(struct rcl_work *w)
{
    (void)w;
    atomic_store(&gate_reached, 1);
    while (!atomic_load(&gate_opened))
        test_sleep_ms(1);
}

static void nothing_fn(struct rcl_work *w) { (void)w; }

/* forked_queue, its one worker held in running until gate_opened is set
 * and behind queued after it: a fork then finds an item running and one
 * pending. */
static void create_forked_queue_one_item_behind_a_held_one(const char *name,
                                                           struct rcl_work *running,
                                                           struct rcl_work *behind)
{
    atomic_store(&gate_reached, 0);
    atomic_store(&gate_opened, 0);
    forked_queue = rcl_workqueue_create(name, 1, 0);
    assert_non_null(forked_queue);
    rcl_work_init(running, waits_at_gate_fn);
    rcl_work_init(behind, nothing_fn);
    assert_int_equal(rcl_queue_work(forked_queue, running), 0);
    while (!atomic_load(&gate_reached))
        test_sleep_ms(1);
    assert_int_equal(rcl_queue_work(forked_queue, behind), 0);
}

TEST(a_child_whose_queue_destroy_report_ends_its_thread_frees_the_queue)
{
    if (child_threads_unsupported()) {
        print_message("skipped: ThreadSanitizer does not start threads in a child of a "
                      "multi-threaded process\n");
        skip();
    }
    struct rcl_work running, behind;

    create_forked_queue_one_item_behind_a_held_one("forked", &running, &behind);
    pid_t pid = fork_child(child_destroys_the_queue_in_a_thread_that_ends);
    atomic_store(&gate_opened, 1);
    assert_int_equal(wait_child(pid), 0);
    rcl_workqueue_destroy(forked_queue);
}

/* A destroy another thread had under way at the fork, waiting for the
 * item that runs, has no thread in the child to finish it: the child's
 * destroy frees its copy of the queue, as it does any inherited queue's.
 * (It was refused as a second destroy, the copy never freed.) */
static void *destroys_the_forked_queue(void *arg)
{
    (void)arg;
    rcl_workqueue_destroy(forked_queue);
    return NULL;
}

static int child_destroys_the_queue_being_destroyed(void)
{
    size_t before = rcl_usage();

    test_reports_reset();
    rcl_workqueue_destroy(forked_queue);
    CHECK(!test_reports_contain("not a live queue"), 1);
    CHECK(test_reports_contain("1 queued item(s) dropped"), 2);
    CHECK(rcl_usage() < before, 3);
    return 0;
}

TEST(a_child_frees_a_queue_another_thread_was_destroying_at_the_fork)
{
    struct rcl_work running, behind;
    pthread_t destroyer;
    int rc;

    create_forked_queue_one_item_behind_a_held_one("destroyed", &running, &behind);
    assert_int_equal(pthread_create(&destroyer, NULL, destroys_the_forked_queue, NULL), 0);
    /* Pending until the destroy drains: then refused as shut down. */
    while ((rc = rcl_queue_work(forked_queue, &behind)) == -EBUSY)
        test_sleep_ms(1);
    assert_int_equal(rc, -ESHUTDOWN);
    pid_t pid = fork_child(child_destroys_the_queue_being_destroyed);
    atomic_store(&gate_opened, 1);
    assert_int_equal(pthread_join(destroyer, NULL), 0);
    assert_int_equal(wait_child(pid), 0);
}

/* A thread waiting in a mempool at the fork is not in the child, and
 * neither is its count there: the child's destroy finds only the element
 * it holds, not a waiter nobody would ever wake, and so can free its copy
 * of the pool once that element comes back. */
static char waited_elem[64];
static atomic_int waited_elem_given;
static struct rcl_mempool *waited_pool;
static void *held_elem;

/* The one element that fills the reserve, then nothing. */
static void *one_elem_alloc(rcl_gfp_t gfp, void *data)
{
    (void)gfp; (void)data;
    return atomic_exchange(&waited_elem_given, 1) ? NULL : waited_elem;
}

static void no_elem_free(void *elem, void *data) { (void)elem; (void)data; }

static void *waits_in_the_pool(void *arg)
{
    (void)arg;
    void *e = rcl_mempool_alloc(waited_pool, RCL_DEFAULT);
    rcl_mempool_free(e, waited_pool);
    return NULL;
}

static int child_destroys_the_waited_pool(void)
{
    CHECK(rcl__mempool_waiters(waited_pool) == 0, 1);
    test_reports_reset();
    rcl_mempool_destroy(waited_pool);
    CHECK(test_reports_contain("1 element(s) still allocated"), 2);
    CHECK(!test_reports_contain("waiting"), 3);
    rcl_mempool_free(held_elem, waited_pool);   /* the last: the pool goes */
    return 0;
}

TEST(a_child_counts_none_of_the_parents_mempool_waiters)
{
    atomic_store(&waited_elem_given, 0);
    waited_pool = rcl_mempool_create_ops(1, one_elem_alloc, no_elem_free, NULL);
    assert_non_null(waited_pool);
    held_elem = rcl_mempool_alloc(waited_pool, RCL_DEFAULT);
    assert_ptr_equal(held_elem, waited_elem);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, waits_in_the_pool, NULL), 0);
    for (int ms = 0; ms < CHILD_TIMEOUT_MS && rcl__mempool_waiters(waited_pool) < 1; ms++)
        test_sleep_ms(1);
    assert_int_equal(rcl__mempool_waiters(waited_pool), 1);

    assert_int_equal(wait_child(fork_child(child_destroys_the_waited_pool)), 0);

    rcl_mempool_free(held_elem, waited_pool);   /* to the parent's waiter */
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += CHILD_TIMEOUT_MS / 1000;
    assert_int_equal(pthread_timedjoin_np(th, NULL, &limit), 0);
    rcl_mempool_destroy(waited_pool);
}

/* glibc's backtrace() loads libgcc_s with dlopen() at its first call, and
 * a child forked while another thread was inside that dlopen crashes at its
 * own first backtrace (ld.so's "r_state == RT_CONSISTENT" assertion, or a
 * call through an unrelocated pointer: about one run in a hundred of the
 * busy-parent test, whose first fork could fall in the checker's first
 * scope). The checker loads the unwinder as it is turned on, before any
 * thread can take a backtrace for it. Whether a library is loaded is only
 * known in a process that has not loaded it yet: the test runs again in a
 * fresh one. */
#define FRESH_ENV "TEST_FORK_FRESH_PROCESS"
enum { FRESH_OK, FRESH_PRELOADED = 3, FRESH_NOT_LOADED, FRESH_INIT_FAILED };

static bool unwinder_loaded(void)
{
    void *h = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (h)
        dlclose(h);
    return h != NULL;
}

static int fresh_process_main(void)
{
    if (unwinder_loaded())
        return FRESH_PRELOADED;
    struct rcl_config cfg = test_config(8 * MiB);
    cfg.lockdep = RCL_LOCKDEP_ON;
    rcl_set_report_fn(test_report_catch, NULL);
    if (rcl_init(&cfg))
        return FRESH_INIT_FAILED;
    int rc = unwinder_loaded() ? FRESH_OK : FRESH_NOT_LOADED;
    rcl_shutdown();
    return rc;
}

TEST_BARE(the_checker_loads_the_unwinder_before_any_thread_can_fork_inside_it)
{
    if (getenv(FRESH_ENV)) {
        fflush(stdout);
        _exit(fresh_process_main());
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    pid_t pid = fork();
    if (pid == 0) {
        setenv(FRESH_ENV, "1", 1);
        setenv("TEST_FILTER", __func__, 1);
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        execl(exe, exe, (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    int rc = wait_child(pid);
    if (rc == FRESH_PRELOADED) {
        /* The sanitizers' runtimes link libgcc_s for their own unwinding. */
        print_message("skipped: libgcc_s is loaded before the program starts\n");
        skip();
    }
    if (rc == FRESH_NOT_LOADED)
        fail_msg("the lock checker is on and the unwinder is not loaded");
    assert_int_equal(rc, FRESH_OK);
}

/* A child forked while another thread makes an LRU's shrinker makes one
 * of its own: the making under way went with that thread. The maker is
 * held in its call - its first use of the library reports the
 * environment's malformed setting, and the report function waits there -
 * across the fork. */
static pthread_t held_maker;
static atomic_int maker_in_report, maker_released;
static struct rcl_lru *made_twice;

static void catch_and_hold_the_maker(const char *report, void *arg)
{
    test_report_catch(report, arg);
    if (!pthread_equal(pthread_self(), held_maker) || atomic_exchange(&maker_in_report, 1))
        return;
    while (!atomic_load(&maker_released))
        test_sleep_ms(1);
}

static void *makes_held(void *made)
{
    held_maker = pthread_self();
    *(struct rcl_shrinker **)made = rcl_lru_shrinker(made_twice, "parent's", NULL, item_free,
                                                     NULL, NULL);
    return NULL;
}

static int child_makes_its_own(void)
{
    if (!rcl_lru_shrinker(made_twice, "child's", NULL, item_free, NULL, NULL))
        return 1;
    return rcl_lru_destroy(made_twice) ? 2 : 0;
}

TEST(a_child_forked_while_another_thread_makes_an_lrus_shrinker_makes_its_own)
{
    if (child_threads_unsupported()) {
        print_message("skipped: ThreadSanitizer starts no thread in a child\n");
        skip();
    }
    struct rcl_shrinker *made = NULL;
    made_twice = rcl_lru_create();
    assert_non_null(made_twice);
    rcl_shutdown();
    setenv("RECLAIM_DIRECT_US", "fast", 1);
    rcl_set_report_fn(catch_and_hold_the_maker, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, makes_held, &made), 0);
    while (!atomic_load(&maker_in_report))
        test_sleep_ms(1);

    int rc = wait_child(fork_child(child_makes_its_own));
    atomic_store(&maker_released, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    unsetenv("RECLAIM_DIRECT_US");
    rcl_set_report_fn(test_report_catch, NULL);
    assert_reports_have("RECLAIM_DIRECT_US");
    assert_int_equal(rc, 0);
    assert_non_null(made);
    assert_int_equal(rcl_lru_destroy(made_twice), 0);
}

/* A destroy another thread has under way at the fork, waiting in the
 * unregister of the LRU's shrinker for a scan in flight, has no thread in
 * the child to finish it: the child's copy is the child's to use and to
 * destroy, its shrinker gone with the scan. (Every destroy there was
 * refused as one of an LRU that is not live, the copy never freed.) The
 * scan waits in its free_fn, outside the LRU's lock, which the fork
 * takes. */
static struct rcl_lru *destroyed_lru;
static atomic_int lru_scan_in_free, lru_scan_released;
static int lru_destroyer_rc = 1;

static void item_free_at_gate(struct rcl_lru_node *n, void *arg)
{
    atomic_store(&lru_scan_in_free, 1);
    while (!atomic_load(&lru_scan_released))
        test_sleep_ms(1);
    item_free(n, arg);
}

static void *reclaims_an_item(void *arg)
{
    (void)arg;
    rcl_reclaim(sizeof(struct item), RCL_DEFAULT);
    return NULL;
}

static void *destroys_the_lru(void *arg)
{
    (void)arg;
    lru_destroyer_rc = rcl_lru_destroy(destroyed_lru);
    return NULL;
}

static void lru_destroyer_waits(pthread_t *th)
{
    lru_destroyer_rc = 1;
    unregister_waiting(th, destroys_the_lru);
}

static struct item *lru_item_added(struct rcl_lru *l)
{
    struct item *it = rcl_alloc(sizeof(*it), RCL_DEFAULT);
    assert_non_null(it);
    rcl_lru_node_init(&it->node);
    assert_int_equal(rcl_lru_add(l, &it->node), 1);
    return it;
}

static int child_uses_and_destroys_the_lru_being_destroyed(void)
{
    struct item it;

    alarm(10);
    test_reports_reset();
    CHECK(rcl_lru_count(destroyed_lru) == 0, 1);
    CHECK(rcl_stats_shrinkers(NULL, 0) == 0, 2);
    rcl_lru_node_init(&it.node);
    CHECK(rcl_lru_add(destroyed_lru, &it.node) == 1, 3);
    CHECK(rcl_lru_destroy(destroyed_lru) == -EBUSY, 4);
    CHECK(rcl_lru_del(destroyed_lru, &it.node) == 1, 5);
    CHECK(rcl_lru_destroy(destroyed_lru) == 0, 6);
    CHECK(test_report_count() == 1 && test_reports_contain("1 items still on the LRU"), 7);
    return 0;
}

TEST(a_child_destroys_an_lru_another_thread_was_destroying_at_the_fork)
{
    pthread_t scanner, destroyer;

    atomic_store(&lru_scan_in_free, 0);
    atomic_store(&lru_scan_released, 0);
    destroyed_lru = rcl_lru_create();
    assert_non_null(destroyed_lru);
    assert_non_null(rcl_lru_shrinker(destroyed_lru, "destroyed", NULL, item_free_at_gate,
                                     NULL, NULL));
    lru_item_added(destroyed_lru);
    assert_int_equal(pthread_create(&scanner, NULL, reclaims_an_item, NULL), 0);
    while (!atomic_load(&lru_scan_in_free))
        test_sleep_ms(1);
    lru_destroyer_waits(&destroyer);

    pid_t pid = fork_child(child_uses_and_destroys_the_lru_being_destroyed);
    atomic_store(&lru_scan_released, 1);
    assert_int_equal(pthread_join(scanner, NULL), 0);
    assert_int_equal(pthread_join(destroyer, NULL), 0);
    assert_int_equal(lru_destroyer_rc, 0);
    assert_int_equal(wait_child(pid), 0);
}

/* The same destroy waiting for a scan of the forking thread's own, forked
 * in its free_fn: the child goes on in the scan, so its destroy there is
 * refused as from the shrinker's own callback, and once the scan is over
 * it unregisters the shrinker and frees the LRU. (Refused as not live;
 * with the claim alone given back, it found the shrinker unregistered by
 * the scan's end and reported it as unregistered twice.) */
static pid_t lru_scan_child = -1;
static int lru_destroy_in_scan = 1;

static pthread_t lru_scan_destroyer;

static void item_free_and_fork(struct rcl_lru_node *n, void *arg)
{
    item_free(n, arg);
    lru_destroyer_waits(&lru_scan_destroyer);
    fflush(stderr);
    lru_scan_child = fork();
    if (lru_scan_child == 0) {
        test_forked_child_dies_of_its_crashes();
        alarm(10);
        test_reports_reset();
        lru_destroy_in_scan = rcl_lru_destroy(destroyed_lru);
    }
}

static int child_destroys_the_lru_after_its_scan(void)
{
    CHECK(lru_destroy_in_scan == -EDEADLK, 1);
    CHECK(test_report_count() == 1 && test_reports_contain("own shrinker"), 2);
    CHECK(rcl_stats_shrinkers(NULL, 0) == 1, 3);
    CHECK(rcl_lru_destroy(destroyed_lru) == 0, 4);
    CHECK(test_report_count() == 1, 5);
    CHECK(rcl_stats_shrinkers(NULL, 0) == 0, 6);
    return 0;
}

TEST(a_child_forked_in_an_lrus_scan_destroys_the_lru_another_thread_was_destroying)
{
    lru_scan_child = -1;
    destroyed_lru = rcl_lru_create();
    assert_non_null(destroyed_lru);
    assert_non_null(rcl_lru_shrinker(destroyed_lru, "destroyed", NULL, item_free_and_fork,
                                     NULL, NULL));
    lru_item_added(destroyed_lru);
    rcl_reclaim(sizeof(struct item), RCL_DEFAULT);
    if (lru_scan_child == 0) {
        int rc = child_destroys_the_lru_after_its_scan();
        fflush(stderr);
        _exit(rc);
    }
    assert_true(lru_scan_child > 0);
    assert_int_equal(pthread_join(lru_scan_destroyer, NULL), 0);
    assert_int_equal(lru_destroyer_rc, 0);
    assert_int_equal(wait_child(lru_scan_child), 0);
}

TEST_MAIN();
