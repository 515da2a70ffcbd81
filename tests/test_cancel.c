/* SPDX-License-Identifier: MIT */
/*
 * test_cancel.c - pthread_cancel of a thread inside the library leaves no
 * lock held and nothing pinned: whatever the cancelled thread was doing,
 * the next caller gets through. So does pthread_exit() from the program's
 * callbacks, which no cancel state holds back. Each "next caller" runs in a helper thread
 * with a time limit, so that a lock left held fails the test instead of
 * hanging it.
 */
#include "helpers.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "domain.h"
#include "internal.h"

#define HANG_MS 20000

/* Runs fn(arg) in a thread; false if it has not returned within HANG_MS
 * (the thread is then left behind: the test has failed anyway). */
static bool finishes(void *(*fn)(void *), void *arg)
{
    pthread_t th;
    struct timespec until;
    if (pthread_create(&th, NULL, fn, arg) != 0)
        return false;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HANG_MS / 1000;
    if (pthread_timedjoin_np(th, NULL, &until) != 0) {
        pthread_detach(th);
        return false;
    }
    return true;
}

static void wait_for(atomic_int *flag)
{
    for (int i = 0; i < HANG_MS && !atomic_load(flag); i++)
        test_sleep_ms(1);
}

/* th's exit value; the test fails if th has not ended within HANG_MS. */
static void *join_in_time(pthread_t th)
{
    struct timespec until;
    void *ret;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HANG_MS / 1000;
    if (pthread_timedjoin_np(th, &ret, &until) != 0)
        fail_msg("a cancelled thread did not end within %d ms", HANG_MS);
    return ret;
}

/* The thread a test cancels in a wait notes its tid here first. */
static atomic_int waiter_tid;

static void note_waiter(void)
{
    atomic_store(&waiter_tid, (int)gettid());
}

/* Until the waiter sleeps in the wait it comes to, once *waiting is set
 * (NULL: the thread says nothing): in_its_wait(tid) names that wait, so
 * that no other sleep (a lock in the allocator or a sanitizer's runtime)
 * passes for it. A cancel sent earlier would test the cancellation point
 * before the wait, not the wait. */
static void wait_for_the_waiter_asleep(atomic_int *waiting, bool (*in_its_wait)(pid_t))
{
    if (waiting)
        wait_for(waiting);
    for (int ms = 0; ms < HANG_MS; ms++) {
        int tid = atomic_load(&waiter_tid);
        if (tid && in_its_wait(tid))
            return;
        test_sleep_ms(1);
    }
    fail_msg("the thread never slept in its wait within %d ms", HANG_MS);
}

/* Runs fn in a thread and cancels it inside the wait fn comes to: after
 * fn set *waiting (NULL: fn says nothing) and went to sleep in the wait
 * in_its_wait() tells. */
static void cancel_in_its_wait(void *(*fn)(void *), atomic_int *waiting,
                               bool (*in_its_wait)(pid_t))
{
    pthread_t th;
    if (waiting)
        atomic_store(waiting, 0);
    atomic_store(&waiter_tid, 0);
    assert_int_equal(pthread_create(&th, NULL, fn, NULL), 0);
    wait_for_the_waiter_asleep(waiting, in_its_wait);
    assert_int_equal(pthread_cancel(th), 0);
    assert_ptr_equal(join_in_time(th), PTHREAD_CANCELED);
}

/* ------------------------------------------------------------------------ */
/* A waiter in rcl_mempool_alloc                                             */
/* ------------------------------------------------------------------------ */

/* Gives its one element once (to fill the reserve), then nothing. */
static char element[64];
static atomic_int element_given;
static void *one_alloc(rcl_gfp_t gfp, void *data)
{
    (void)gfp; (void)data;
    return atomic_exchange(&element_given, 1) ? NULL : element;
}
static void no_free(void *e, void *data) { (void)e; (void)data; }

static struct rcl_mempool *pool;
static atomic_int waiting;

static void *pool_waiter(void *arg)
{
    (void)arg;
    note_waiter();
    atomic_store(&waiting, 1);
    rcl_mempool_alloc(pool, RCL_DEFAULT);     /* the reserve is empty: waits */
    return NULL;
}

/* The pool counts the waiter, and the waiter sleeps in the pool's bounded
 * wait for an element (a timed condition-variable wait). */
static bool in_pool_wait(pid_t tid)
{
    return rcl__mempool_waiters(pool) == 1 && test_thread_waits_timed(tid);
}

static void *pool_round_trip(void *arg)
{
    void *e = arg;
    rcl_mempool_free(e, pool);
    e = rcl_mempool_alloc(pool, RCL_DEFAULT);
    rcl_mempool_free(e, pool);
    return NULL;
}

TEST(test_cancelled_mempool_waiter_leaves_the_pool_unlocked)
{
    test_skip_unless_syscalls_read();
    /* One element in reserve and an allocator that fails from then on:
     * once the element is taken, an allocation can only wait. */
    atomic_store(&element_given, 0);
    pool = rcl_mempool_create_ops(1, one_alloc, no_free, NULL);
    assert_non_null(pool);
    void *e = rcl_mempool_alloc(pool, RCL_DEFAULT);
    assert_ptr_equal(e, element);

    cancel_in_its_wait(pool_waiter, &waiting, in_pool_wait);

    assert_true(finishes(pool_round_trip, e));
    rcl_mempool_destroy(pool);
}

/* ------------------------------------------------------------------------ */
/* A waiter in rcl_mempool_alloc_bulk                                        */
/* ------------------------------------------------------------------------ */

/* Gives the two elements that fill the reserve, then nothing; says when a
 * caller has tried it with the full flags, the bulk call's last step
 * before its wait: no cancellation point lies between the two, so a
 * cancel sent from then on takes effect in the wait. */
static char bulk_elements[2][64];
static atomic_int bulk_given, bulk_full_try;
static void *two_alloc(rcl_gfp_t gfp, void *data)
{
    (void)data;
    int i = atomic_fetch_add(&bulk_given, 1);
    if (i < 2)
        return bulk_elements[i];
    if (gfp & RCL__DIRECT_RECLAIM)
        atomic_store(&bulk_full_try, 1);
    return NULL;
}

static void *bulk_waiter(void *arg)
{
    void *elems[2];
    (void)arg;
    rcl_mempool_alloc_bulk(pool, elems, 2);   /* the reserve is empty: waits */
    return NULL;
}

static void *bulk_refill(void *arg)
{
    rcl_mempool_free_bulk(pool, arg, 2);
    return NULL;
}

/* A child that finds the pool whole: the reserve the parent refilled,
 * taken and given back. */
static int bulk_child(void)
{
    void *elems[2];
    if (rcl_mempool_alloc_bulk(pool, elems, 2) != 0)
        return 1;
    rcl_mempool_free_bulk(pool, elems, 2);
    return 0;
}

/* The child's exit status, or -1 (after killing it) if it has not ended
 * within HANG_MS. */
static int wait_child(pid_t pid)
{
    int status;
    for (int i = 0; i < HANG_MS; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        test_sleep_ms(1);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static int fork_status;

/* fork() takes every pool's lock in the parent first (src/fork.c): a lock
 * a cancelled thread kept would hang it there. */
static void *fork_and_wait(void *arg)
{
    (void)arg;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        test_forked_child_dies_of_its_crashes();
        _exit(bulk_child());
    }
    fork_status = pid > 0 ? wait_child(pid) : -2;
    return NULL;
}

/* The bulk call's wait is a cancellation point like the single call's,
 * and a thread cancelled in it holds nothing (it gave back all it had
 * before it waited) and leaves the pool unlocked: a free that refills the
 * reserve goes through, and so does a fork(), in the parent and in the
 * child. */
TEST(test_cancelled_bulk_waiter_leaves_the_pool_unlocked)
{
    atomic_store(&bulk_given, 0);
    atomic_store(&bulk_full_try, 0);
    pool = rcl_mempool_create_ops(2, two_alloc, no_free, NULL);
    assert_non_null(pool);
    void *held[2];
    assert_int_equal(rcl_mempool_alloc_bulk(pool, held, 2), 0);

    pthread_t th;
    atomic_store(&bulk_full_try, 0);
    assert_int_equal(pthread_create(&th, NULL, bulk_waiter, NULL), 0);
    wait_for(&bulk_full_try);
    assert_int_equal(pthread_cancel(th), 0);
    assert_ptr_equal(join_in_time(th), PTHREAD_CANCELED);

    assert_true(finishes(bulk_refill, held));
    fork_status = -3;
    assert_true(finishes(fork_and_wait, NULL));
    assert_int_equal(fork_status, 0);
    rcl_mempool_destroy(pool);
}

/* ------------------------------------------------------------------------ */
/* A shrinker scanning during direct reclaim                                 */
/* ------------------------------------------------------------------------ */

static atomic_int scanning, release, scan_naps;

static unsigned long slow_count(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    return 1000;
}

static unsigned long slow_scan(void *p, struct rcl_shrink_control *sc)
{
    (void)p;
    atomic_store(&scanning, 1);
    /* nanosleep is a cancellation point. */
    while (!atomic_load(&release)) {
        test_sleep_ms(1);
        atomic_fetch_add(&scan_naps, 1);
    }
    return sc->nr_to_scan;
}

static atomic_int reclaim_returned;

static void *reclaiming(void *arg)
{
    (void)arg;
    rcl_reclaim(1 * MiB, RCL_DEFAULT);
    atomic_store(&reclaim_returned, 1);
    for (;;)
        test_testcancel();
    return NULL;
}

static void *unregister(void *arg)
{
    rcl_shrinker_unregister(arg);
    return NULL;
}

TEST(test_cancel_during_a_shrinker_scan_waits_for_the_scan)
{
    static const struct rcl_shrinker_ops ops = { .count = slow_count, .scan = slow_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("slow", &ops, NULL, NULL);
    assert_non_null(s);

    pthread_t th;
    atomic_store(&scanning, 0);
    atomic_store(&release, 0);
    atomic_store(&reclaim_returned, 0);
    assert_int_equal(pthread_create(&th, NULL, reclaiming, NULL), 0);
    wait_for(&scanning);
    assert_int_equal(pthread_cancel(th), 0);
    /* A whole nap begun after the cancel: a cancellation point the cancel
     * would have acted at, were the scan not shielded from it. */
    int naps = atomic_load(&scan_naps);
    for (int ms = 0; ms < HANG_MS && atomic_load(&scan_naps) < naps + 2; ms++)
        test_sleep_ms(1);
    atomic_store(&release, 1);                  /* the scan may finish now */
    assert_ptr_equal(join_in_time(th), PTHREAD_CANCELED);
    /* Cancelled after reclaim, not inside it. */
    assert_int_equal(atomic_load(&reclaim_returned), 1);

    assert_true(finishes(unregister, s));
}

/* ------------------------------------------------------------------------ */
/* A program's own walk of an LRU                                            */
/* ------------------------------------------------------------------------ */

static struct rcl_lru *walked;
static atomic_int walk_returned;

/* A cache's isolate that logs what it evicts: the log line is a
 * cancellation point, reached with the LRU's lock held. */
static enum rcl_lru_walk logging_isolate(struct rcl_lru_node *item, void *arg)
{
    (void)item;
    (void)arg;
    test_testcancel();
    return RCL_LRU_REMOVED;
}

/* The cancel is pending before the walk starts, so that the isolate's
 * cancellation point is the first the thread reaches. */
static void *walking(void *arg)
{
    struct rcl_lru_node dispose;

    (void)arg;
    rcl_lru_list_init(&dispose);
    pthread_cancel(pthread_self());
    rcl_lru_walk(walked, logging_isolate, NULL, 1, &dispose);
    atomic_store(&walk_returned, 1);
    for (;;)
        test_testcancel();
    return NULL;
}

static void *lru_round_trip(void *arg)
{
    rcl_lru_add(walked, arg);
    rcl_lru_del(walked, arg);
    return NULL;
}

/* A walk the program makes itself, outside any reclaim pass, calls its
 * isolate under the LRU's lock as a pass does: a cancel pending there
 * takes effect after the walk, and the lock is free for the next caller
 * (reclaim.h: no library lock outlives a cancelled thread). */
TEST(test_cancel_during_a_programs_lru_walk_waits_for_the_walk)
{
    struct rcl_lru_node item, other;
    pthread_t th;

    walked = rcl_lru_create();
    assert_non_null(walked);
    rcl_lru_node_init(&item);
    rcl_lru_node_init(&other);
    rcl_lru_add(walked, &item);
    atomic_store(&walk_returned, 0);
    assert_int_equal(pthread_create(&th, NULL, walking, NULL), 0);
    assert_ptr_equal(join_in_time(th), PTHREAD_CANCELED);
    assert_int_equal(atomic_load(&walk_returned), 1);
    assert_int_equal(rcl_lru_count(walked), 0);

    assert_true(finishes(lru_round_trip, &other));
    rcl_lru_destroy(walked);
}

/* ------------------------------------------------------------------------ */
/* A flusher in rcl_flush_workqueue                                          */
/* ------------------------------------------------------------------------ */

static struct rcl_workqueue *wq;
static atomic_int work_started, work_release;

static void blocking_work(struct rcl_work *w)
{
    (void)w;
    atomic_store(&work_started, 1);
    while (!atomic_load(&work_release))
        test_sleep_ms(1);
}

static void quick_work(struct rcl_work *w) { (void)w; }

static void *flusher(void *arg)
{
    (void)arg;
    note_waiter();
    rcl_flush_workqueue(wq);
    return NULL;
}

static void *queue_flush_destroy(void *arg)
{
    struct rcl_work *w = arg;
    rcl_queue_work(wq, w);
    rcl_flush_workqueue(wq);
    rcl_workqueue_destroy(wq);
    return NULL;
}

TEST(test_cancelled_flusher_leaves_the_queue_unlocked)
{
    test_skip_unless_syscalls_read();
    static struct rcl_work blocker, quick;
    wq = rcl_workqueue_create("cancel", 2, 0);
    assert_non_null(wq);
    rcl_work_init(&blocker, blocking_work);
    rcl_work_init(&quick, quick_work);
    atomic_store(&work_started, 0);
    atomic_store(&work_release, 0);
    assert_int_equal(rcl_queue_work(wq, &blocker), 0);
    wait_for(&work_started);

    /* A queue with a worker: the flush waits for its item with no deadline. */
    cancel_in_its_wait(flusher, NULL, test_thread_waits_untimed);

    atomic_store(&work_release, 1);
    assert_true(finishes(queue_flush_destroy, &quick));
}

/* ------------------------------------------------------------------------ */
/* An allocation waiting for memory                                          */
/* ------------------------------------------------------------------------ */

static atomic_int alloc_waiting;

static void *nofail_waiter(void *arg)
{
    (void)arg;
    note_waiter();
    atomic_store(&alloc_waiting, 1);
    /* The budget is full and nothing can be reclaimed: a NOFAIL request
     * waits for memory that only the cancel ends. */
    void *p = rcl_alloc(4096, RCL_DEFAULT | RCL__NOFAIL);
    rcl_free(p);
    return NULL;
}

/* A NOFAIL request waits for memory in bounded sleeps (nanosleep(),
 * which glibc makes as clock_nanosleep), nothing else in it sleeping so. */
static bool in_nofail_sleep(pid_t tid)
{
    return test_thread_in_syscall(tid, SYS_clock_nanosleep);
}

/* The budget filled down to the floor any request of a NOFAIL waiter's
 * kind may reach, in ever smaller blocks, into held: nothing is left for
 * it. Returns how many blocks it took (the failures' reports dropped). */
enum { MAX_HELD = 4096 };
static unsigned fill_to_the_floor(void **held)
{
    static const size_t sizes[] = { 64 * KiB, 4 * KiB, 256, 16 };
    unsigned n = 0;
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        while (n < MAX_HELD && (held[n] = rcl_alloc(sizes[i], RCL_DEFAULT)) != NULL)
            n++;
    assert_true(n > 0 && n < MAX_HELD);
    test_reports_reset();
    return n;
}

static void *alloc_round_trip(void *arg)
{
    (void)arg;
    void *p = rcl_alloc(4096, RCL_DEFAULT);
    rcl_free(p);
    return p;
}

/* A daemon cancels a worker that waits in a NOFAIL allocation (the
 * kernel's __GFP_NOFAIL never returns either; a fatal signal is what
 * ends such a task): the wait is a cancellation point, and what the
 * request had charged goes back with the thread. */
TEST(test_cancelled_nofail_allocation_gives_back_its_charge)
{
    test_skip_unless_syscalls_read();
    static void *held[MAX_HELD];
    unsigned n = fill_to_the_floor(held);

    /* A wait that is not a cancellation point would never end. */
    cancel_in_its_wait(nofail_waiter, &alloc_waiting, in_nofail_sleep);
    test_reports_reset();                       /* stall reports, if any */

    while (n)
        rcl_free(held[--n]);
    assert_true(finishes(alloc_round_trip, NULL));
}

/* A thread cancelled in that wait is outside the library again when its
 * cleanup handlers run: they allocate and free as the thread always did,
 * not as a signal handler inside the library would - where a NOFAIL
 * request fails at once, and any other from a stash the thread has not
 * got. Here the cleanup allocates NOFAIL once the budget has room. */
static atomic_int in_cleanup, room_made, cleanup_got;

static void cleanup_allocates(void *arg)
{
    (void)arg;
    atomic_store(&in_cleanup, 1);
    wait_for(&room_made);
    void *p = rcl_alloc(100, RCL_DEFAULT | RCL__NOFAIL);
    atomic_store(&cleanup_got, p ? 1 : -1);
    rcl_free(p);
}

static void *nofail_waiter_with_cleanup(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleanup_allocates, NULL);
    note_waiter();
    atomic_store(&alloc_waiting, 1);
    void *p = rcl_alloc(4096, RCL_DEFAULT | RCL__NOFAIL);
    rcl_free(p);
    pthread_cleanup_pop(0);
    return NULL;
}

TEST(test_a_thread_cancelled_in_a_nofail_wait_allocates_in_its_cleanup)
{
    test_skip_unless_syscalls_read();
    static void *held[MAX_HELD];
    unsigned n = fill_to_the_floor(held);

    pthread_t th;
    atomic_store(&alloc_waiting, 0);
    atomic_store(&in_cleanup, 0);
    atomic_store(&room_made, 0);
    atomic_store(&cleanup_got, 0);
    atomic_store(&waiter_tid, 0);
    assert_int_equal(pthread_create(&th, NULL, nofail_waiter_with_cleanup, NULL), 0);
    wait_for_the_waiter_asleep(&alloc_waiting, in_nofail_sleep);
    assert_int_equal(pthread_cancel(th), 0);
    wait_for(&in_cleanup);
    while (n)
        rcl_free(held[--n]);
    atomic_store(&room_made, 1);
    assert_ptr_equal(join_in_time(th), PTHREAD_CANCELED);
    assert_int_equal(atomic_load(&cleanup_got), 1);
    test_reports_reset();                       /* stall reports, if any */
}

/* ------------------------------------------------------------------------ */
/* A cancel pending while the library measures the footprint                 */
/* ------------------------------------------------------------------------ */

static atomic_int cancel_sent, alloc_returned;

/* Returns with a cancel pending, to act at the thread's next cancellation
 * point. No old state is kept on the frames a cancel unwinds: the unwind
 * skips AddressSanitizer's epilogue, and the redzones it leaves behind
 * are reported when the thread's exit reuses the stack. */
static void wait_for_the_cancel(void)
{
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    while (!atomic_load(&cancel_sent))
        test_sleep_ms(1);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
}

/* Runs fn in a thread that a cancel is pending for when fn starts its
 * work (wait_for_the_cancel()), and checks that the cancel ended it. */
static void run_with_a_cancel_pending(void *(*fn)(void *))
{
    pthread_t th;
    atomic_store(&cancel_sent, 0);
    assert_int_equal(pthread_create(&th, NULL, fn, NULL), 0);
    assert_int_equal(pthread_cancel(th), 0);
    atomic_store(&cancel_sent, 1);
    assert_ptr_equal(join_in_time(th), PTHREAD_CANCELED);
}

static void *allocates_with_a_cancel_pending(void *arg)
{
    (void)arg;
    wait_for_the_cancel();
    /* A charge of this size makes the library read the resident set: a
     * read(2), a cancellation point of the C library's. */
    void *p = rcl_alloc(4 * MiB, RCL_DEFAULT);
    atomic_store(&alloc_returned, p != NULL);
    rcl_free(p);
    test_testcancel();
    return NULL;
}

/* The library's own short reads are not the program's cancellation
 * points: a cancel pending when an allocation samples the footprint
 * takes effect at the program's next one, after the call, and the
 * sampling goes on for everyone else. (Acted on inside, it unwound the
 * allocation with its charge taken and left the sampler marked busy for
 * good: the budget stopped seeing memory allocated elsewhere.) */
TEST(test_a_pending_cancel_waits_for_the_allocation_to_return)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(64 * MiB);
    cfg.footprint = RCL_FOOTPRINT_RSS;
    assert_int_equal(rcl_init(&cfg), 0);

    atomic_store(&alloc_returned, 0);
    run_with_a_cancel_pending(allocates_with_a_cancel_pending);
    assert_int_equal(atomic_load(&alloc_returned), 1);

    /* Memory allocated outside the library still shows (the sanitizer
     * builds measure no footprint: their shadow memory is no program's). */
    if (test_under_sanitizer("asan") || test_under_sanitizer("tsan"))
        return;
    size_t before = rcl_footprint();
    size_t outside = 16 * MiB;
    char *q = malloc(outside);
    assert_non_null(q);
    test_written(memset(q, 1, outside));
    size_t after = rcl_footprint();
    free(q);
    assert_true(after >= before + outside / 2);
}

/* ------------------------------------------------------------------------ */
/* A cancel pending while the lock checker writes a report                   */
/* ------------------------------------------------------------------------ */

static RCL_LOCK_CLASS(cancel_a, "cancel_a");
static RCL_LOCK_CLASS(cancel_b, "cancel_b");
static RCL_LOCK_CLASS(cancel_c, "cancel_c");
static RCL_LOCK_CLASS(cancel_d, "cancel_d");
static atomic_int report_done;

static void inversion(struct rcl_lock_class *x, struct rcl_lock_class *y)
{
    rcl_lock_acquire(x); rcl_lock_acquire(y); rcl_lock_release(y); rcl_lock_release(x);
    rcl_lock_acquire(y); rcl_lock_acquire(x); rcl_lock_release(x); rcl_lock_release(y);
}

static void *inverts_with_a_cancel_pending(void *arg)
{
    (void)arg;
    wait_for_the_cancel();
    /* The report names functions: the checker opens the program's file
     * (open(2), close(2): cancellation points) with its locks held. */
    inversion(&cancel_a, &cancel_b);
    atomic_store(&report_done, 1);
    test_testcancel();
    return NULL;
}

static void *inverts(void *arg)
{
    (void)arg;
    inversion(&cancel_c, &cancel_d);
    return NULL;
}

/* The checker's report is written whole before a pending cancel takes
 * effect, and the next thread's report finds its locks free. */
TEST(test_a_pending_cancel_waits_for_the_checkers_report)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(64 * MiB);
    cfg.lockdep = RCL_LOCKDEP_ON;
    assert_int_equal(rcl_init(&cfg), 0);     /* a new graph: no file read yet */

    atomic_store(&report_done, 0);
    run_with_a_cancel_pending(inverts_with_a_cancel_pending);
    assert_int_equal(atomic_load(&report_done), 1);
    assert_true(finishes(inverts, NULL));
    assert_int_equal(rcl_lockdep_reports(), 2);
    assert_int_equal(test_reports_seen_matching("lock checker:"), 2);
}

/* ------------------------------------------------------------------------ */
/* A cancel pending while a domain's may_reclaim is asked                    */
/* ------------------------------------------------------------------------ */

static struct rcl_domain *txn_fs;
static int log_fd = -1;
static atomic_int asked_outside_a_pass;

/* A file system inside a transaction: never safe, and it logs so - a
 * write(2), a cancellation point of the C library's. */
static int logs_and_refuses(struct rcl_domain *d, void *arg)
{
    static const char line[] = "txn-fs: inside a transaction, reclaim refused\n";
    (void)d;
    (void)arg;
    if (!rcl__shrinking_here())
        atomic_store(&asked_outside_a_pass, 1);
    ssize_t n = write(log_fd, line, sizeof(line) - 1);
    (void)n;
    return 0;
}

static void *allocates_inside_the_domain(void *arg)
{
    (void)arg;
    unsigned tok = rcl_domain_enter(txn_fs);
    wait_for_the_cancel();
    /* The budget is full: reclaim is asked, frees nothing, and the
     * allocation asks again whether the pass in flight is worth waiting
     * for. */
    void *p = rcl_alloc(4 * KiB, RCL_DEFAULT | RCL__NOWARN);
    rcl_free(p);
    rcl_domain_exit(tok);
    test_testcancel();
    return NULL;
}

static unsigned long holds_nothing(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    return RCL_SHRINK_EMPTY;
}

static void *registers_and_unregisters(void *arg)
{
    static const struct rcl_shrinker_ops ops = { .count = holds_nothing, .scan = holds_nothing };
    (void)arg;
    rcl_shrinker_unregister(rcl_shrinker_register("after", &ops, NULL, NULL));
    return NULL;
}

static void *reclaims(void *arg)
{
    (void)arg;
    rcl_reclaim(1 * MiB, RCL_DEFAULT);
    return NULL;
}

static void *forks(void *arg)
{
    (void)arg;
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return NULL;
}

/* may_reclaim is the program's code, called with cancellation off
 * wherever it is asked - in a reclaim pass, and by an allocation that
 * reclaim left short while another thread's pass is inside one of the
 * domain's shrinkers: a cancel pending when it reaches a cancellation
 * point takes effect after the call. (Acted on inside, the allocation's
 * question unwound holding the shrinkers' lock: every later pass,
 * registration and fork() hung.) */
TEST(test_a_pending_cancel_waits_for_a_domains_may_reclaim)
{
    log_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(log_fd >= 0);
    txn_fs = rcl_domain_create("txn-fs", 0, logs_and_refuses, NULL);
    assert_non_null(txn_fs);
    struct held_pass h;
    held_pass_start(&h, txn_fs);
    size_t full = charge_until_full();

    atomic_store(&asked_outside_a_pass, 0);
    run_with_a_cancel_pending(allocates_inside_the_domain);
    rcl_uncharge(full);
    assert_true(held_pass_end(&h));
    assert_true(atomic_load(&asked_outside_a_pass));

    assert_true(finishes(registers_and_unregisters, NULL));
    assert_true(finishes(reclaims, NULL));
    assert_true(finishes(forks, NULL));
    rcl_domain_destroy(txn_fs);
    close(log_fd);
}

/* ------------------------------------------------------------------------ */
/* A thread that ends inside a shrinker's callback                           */
/* ------------------------------------------------------------------------ */

/* The callbacks below end only the test's own thread: a reclaim on any
 * other (the fixture's, a helper's) finds an ordinary cache. */
static __thread bool ends_here;
/* What the ending thread's own cleanup handler found: the scope it runs
 * in, whether the thread was still reclaiming, whether its allocation
 * got a block. -1: the handler did not run. */
static atomic_int cleanup_scope, cleanup_in_reclaim, cleanup_allocated;

static unsigned long thousand(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    return 1000;
}

static unsigned long exits_in_count(void *p, struct rcl_shrink_control *sc)
{
    if (ends_here)
        pthread_exit(NULL);
    return thousand(p, sc);
}

static unsigned long exits_in_scan(void *p, struct rcl_shrink_control *sc)
{
    (void)p;
    if (ends_here)
        pthread_exit(NULL);
    return sc->nr_to_scan;
}

/* The program's cleanup handler: the thread is its own again, outside
 * the library, and allocates and frees as it always did. */
static void records_the_thread(void *arg)
{
    (void)arg;
    ends_here = false;          /* its allocation may reclaim: the thread is ending already */
    atomic_store(&cleanup_scope, (int)rcl_scope_current());
    atomic_store(&cleanup_in_reclaim, (int)rcl__self.in_reclaim);
    void *p = rcl_alloc(64, RCL_DEFAULT | RCL__NOWARN);
    atomic_store(&cleanup_allocated, p != NULL);
    rcl_free(p);
}

static void cleanup_records_reset(void)
{
    atomic_store(&cleanup_scope, -1);
    atomic_store(&cleanup_in_reclaim, -1);
    atomic_store(&cleanup_allocated, -1);
}

static void *reclaims_and_ends(void *arg)
{
    (void)arg;
    ends_here = true;
    pthread_cleanup_push(records_the_thread, NULL);
    rcl_reclaim(1 * MiB, RCL_DEFAULT);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

static void *allocates_and_ends(void *arg)
{
    (void)arg;
    ends_here = true;
    pthread_cleanup_push(records_the_thread, NULL);
    void *p = rcl_alloc(4 * KiB, RCL_DEFAULT | RCL__NOWARN);   /* reclaims: the budget is full */
    rcl_free(p);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

/* Runs fn in a thread that ends inside a callback, and checks that it
 * ended there, its cleanup handler run. */
static void run_to_its_end(void *(*fn)(void *))
{
    pthread_t th;
    cleanup_records_reset();
    assert_int_equal(pthread_create(&th, NULL, fn, NULL), 0);
    assert_null(join_in_time(th));
    assert_int_not_equal(atomic_load(&cleanup_scope), -1);
}

/* A pass that never ends would hold its shrinker for good: unregister
 * waits for it, and so does rcl_shutdown() in the teardown. A hang fails
 * the run here instead. */
#define ENDING_ALARM_S (3 * HANG_MS / 1000)

/* A scan() that ends its thread (pthread_exit()) ends the pass with it:
 * the shrinker is let go, and unregistered at once. (It stayed held by
 * the pass that would never end: unregister waited for ever.) */
TEST(test_a_thread_ending_in_a_shrinker_scan_lets_go_of_the_shrinker)
{
    static const struct rcl_shrinker_ops ops = { .count = thousand, .scan = exits_in_scan };
    alarm(ENDING_ALARM_S);
    struct rcl_shrinker *s = rcl_shrinker_register("ends-in-scan", &ops, NULL, NULL);
    assert_non_null(s);

    run_to_its_end(reclaims_and_ends);

    assert_true(finishes(reclaims, NULL));      /* another pass runs it */
    assert_true(finishes(unregister, s));
    alarm(0);
}

/* A count() that ends its thread in an allocation's direct reclaim leaves
 * the thread out of reclaim before the program's cleanup handlers run:
 * in the scope it had (not reclaim's NORECLAIM), its allocations its own
 * rather than reclaim's progress, and the budget's books whole at its
 * exit (the teardown checks them). */
TEST(test_a_thread_ending_in_a_shrinker_count_leaves_reclaim_before_its_cleanup)
{
    static const struct rcl_shrinker_ops ops = { .count = exits_in_count, .scan = exits_in_scan };
    static void *held[MAX_HELD];
    alarm(ENDING_ALARM_S);
    unsigned n = fill_to_the_floor(held);
    struct rcl_shrinker *s = rcl_shrinker_register("ends-in-count", &ops, NULL, NULL);
    assert_non_null(s);

    run_to_its_end(allocates_and_ends);
    test_reports_reset();                       /* the full budget's, if any */

    assert_int_equal(atomic_load(&cleanup_scope), 0);
    assert_int_equal(atomic_load(&cleanup_in_reclaim), 0);
    assert_true(finishes(unregister, s));
    while (n)
        rcl_free(held[--n]);
    alarm(0);
}

static int exits_in_may_reclaim(struct rcl_domain *d, void *arg)
{
    (void)d; (void)arg;
    if (ends_here)
        pthread_exit(NULL);
    return 1;
}

static struct rcl_domain *ending_domain;

static void *reclaims_inside_the_domain_and_ends(void *arg)
{
    (void)arg;
    ends_here = true;
    rcl_domain_enter(ending_domain);            /* left at the thread's exit */
    pthread_cleanup_push(records_the_thread, NULL);
    rcl_reclaim(1 * MiB, RCL_DEFAULT);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

/* A domain's may_reclaim that ends its thread, asked by a pass about the
 * domain's shrinker: the shrinker is let go, the thread's cleanup
 * handlers run in the scope it had, and the domain, left as the thread
 * ends, can be destroyed. */
TEST(test_a_thread_ending_in_a_domains_may_reclaim_lets_go_of_the_shrinker)
{
    static const struct rcl_shrinker_ops ops = { .count = thousand, .scan = exits_in_scan };
    alarm(ENDING_ALARM_S);
    ending_domain = rcl_domain_create("ends-in-may-reclaim", 0, exits_in_may_reclaim, NULL);
    assert_non_null(ending_domain);
    struct rcl_shrinker_opts o = { .domain = ending_domain };
    struct rcl_shrinker *s = rcl_shrinker_register("domain-cache", &ops, NULL, &o);
    assert_non_null(s);

    run_to_its_end(reclaims_inside_the_domain_and_ends);

    assert_int_equal(atomic_load(&cleanup_scope), 0);
    assert_int_equal(atomic_load(&cleanup_in_reclaim), 0);
    assert_true(finishes(unregister, s));
    rcl_domain_destroy(ending_domain);
    alarm(0);
}

/* Ends the thread only where an allocation that reclaim left short asks,
 * outside any pass of its own; refuses inside one. */
static int exits_outside_a_pass(struct rcl_domain *d, void *arg)
{
    (void)d; (void)arg;
    if (ends_here && !rcl__shrinking_here())
        pthread_exit(NULL);
    return 0;
}

static void *allocates_inside_the_domain_and_ends(void *arg)
{
    (void)arg;
    ends_here = true;
    rcl_domain_enter(ending_domain);            /* left at the thread's exit */
    pthread_cleanup_push(records_the_thread, NULL);
    void *p = rcl_alloc(4 * KiB, RCL_DEFAULT | RCL__NOWARN);
    rcl_free(p);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

/* The same may_reclaim asked by an allocation whether another thread's
 * pass is worth waiting for (no pass of its own is in flight): the
 * thread's cleanup handlers run in the scope it had, not in the
 * NORECLAIM the question is asked in. */
TEST(test_a_thread_ending_in_may_reclaim_outside_a_pass_keeps_its_scope)
{
    alarm(ENDING_ALARM_S);
    ending_domain = rcl_domain_create("ends-outside-a-pass", 0, exits_outside_a_pass, NULL);
    assert_non_null(ending_domain);
    struct held_pass h;
    held_pass_start(&h, ending_domain);
    size_t full = charge_until_full();

    run_to_its_end(allocates_inside_the_domain_and_ends);
    test_reports_reset();                       /* the full budget's, if any */

    assert_int_equal(atomic_load(&cleanup_scope), 0);
    rcl_uncharge(full);
    assert_true(held_pass_end(&h));
    rcl_domain_destroy(ending_domain);
    alarm(0);
}

/* While may_reclaim runs, the domains its thread entered before are the
 * caller's, whose exits it refuses. A may_reclaim that ends its thread
 * gives them back: the thread's cleanup handlers run next, and one may
 * exit the domain its frame entered, as here, asked in a pass and outside
 * one. */
static atomic_int cleanup_domains;
static unsigned ending_token;

static void exits_its_domain(void *arg)
{
    (void)arg;
    rcl_domain_exit(ending_token);
    atomic_store(&cleanup_domains, (int)rcl__domain_entered(NULL, 0));
}

static void *reclaims_in_the_domain_exits_it_and_ends(void *arg)
{
    (void)arg;
    ends_here = true;
    ending_token = rcl_domain_enter(ending_domain);
    pthread_cleanup_push(exits_its_domain, NULL);
    pthread_cleanup_push(records_the_thread, NULL);
    rcl_reclaim(1 * MiB, RCL_DEFAULT);
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

TEST(test_a_thread_ending_in_may_reclaim_in_a_pass_exits_its_domain_in_cleanup)
{
    static const struct rcl_shrinker_ops ops = { .count = thousand, .scan = exits_in_scan };
    alarm(ENDING_ALARM_S);
    ending_domain = rcl_domain_create("exited-in-cleanup", 0, exits_in_may_reclaim, NULL);
    assert_non_null(ending_domain);
    struct rcl_shrinker_opts o = { .domain = ending_domain };
    struct rcl_shrinker *s = rcl_shrinker_register("domain-cache", &ops, NULL, &o);
    assert_non_null(s);
    atomic_store(&cleanup_domains, -1);

    run_to_its_end(reclaims_in_the_domain_exits_it_and_ends);

    assert_int_equal(atomic_load(&cleanup_domains), 0);
    assert_int_equal(test_report_count(), 0);
    assert_true(finishes(unregister, s));
    rcl_domain_destroy(ending_domain);
    alarm(0);
}

static void *allocates_in_the_domain_exits_it_and_ends(void *arg)
{
    (void)arg;
    ends_here = true;
    ending_token = rcl_domain_enter(ending_domain);
    pthread_cleanup_push(exits_its_domain, NULL);
    pthread_cleanup_push(records_the_thread, NULL);
    void *p = rcl_alloc(4 * KiB, RCL_DEFAULT | RCL__NOWARN);
    rcl_free(p);
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

TEST(test_a_thread_ending_in_may_reclaim_outside_a_pass_exits_its_domain_in_cleanup)
{
    alarm(ENDING_ALARM_S);
    ending_domain = rcl_domain_create("exited-outside-a-pass", 0, exits_outside_a_pass, NULL);
    assert_non_null(ending_domain);
    struct held_pass h;
    held_pass_start(&h, ending_domain);
    size_t full = charge_until_full();
    atomic_store(&cleanup_domains, -1);

    run_to_its_end(allocates_in_the_domain_exits_it_and_ends);
    test_reports_reset();                       /* the full budget's, if any */

    assert_int_equal(atomic_load(&cleanup_domains), 0);
    rcl_uncharge(full);
    assert_true(held_pass_end(&h));
    rcl_domain_destroy(ending_domain);
    alarm(0);
}

/* ------------------------------------------------------------------------ */
/* A thread cancelled inside a domain's may_reclaim                          */
/* ------------------------------------------------------------------------ */

/*
 * rcl_shutdown() is refused while the thread runs a may_reclaim (the
 * pass or the allocation that asked goes on after it). A cancel the
 * callback lets in unwinds the question with the thread's mark put back
 * as the question found it, before the program's cleanup handlers run:
 * outside every callback, a shutdown from one goes through; inside the
 * isolate callback that asked, it is refused still, as the callback's.
 */
static atomic_int cleanup_stopped_it, isolate_cleanup_refused;

/* Lets in the cancel its thread has pending, in a pass or outside one as
 * the test asks (cancelled_outside_a_pass), on the test's thread only;
 * refuses elsewhere, so that no pass scans the other thread's held one. */
static bool cancelled_outside_a_pass;

static int lets_the_cancel_in(struct rcl_domain *d, void *arg)
{
    (void)d; (void)arg;
    if (ends_here && rcl__shrinking_here() != cancelled_outside_a_pass) {
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        test_testcancel();
    }
    return 0;
}

static unsigned long scans_all(void *p, struct rcl_shrink_control *sc)
{
    (void)p;
    return sc->nr_to_scan;
}

/* The program's cleanup handler outermost: the thread is its own again.
 * The library stopped is the shutdown gone through (one refused leaves
 * it running). */
static void shuts_the_library_down(void *arg)
{
    (void)arg;
    ends_here = false;
    rcl_shutdown();
    atomic_store(&cleanup_stopped_it, atomic_load(&rcl__ready) == 0);
}

/* The thread cancels itself with cancellation off: only may_reclaim lets
 * the cancel in. */
static void cancel_pending(void)
{
    ends_here = true;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_cancel(pthread_self());
}

static void *reclaims_in_the_domain_until_cancelled(void *arg)
{
    (void)arg;
    cancel_pending();
    rcl_domain_enter(ending_domain);            /* left at the thread's exit */
    pthread_cleanup_push(shuts_the_library_down, NULL);
    rcl_reclaim(1 * MiB, RCL_DEFAULT);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

/* Runs fn, which is to be cancelled in may_reclaim, and checks that its
 * cleanup handler stopped the library, with the reports it made; starts
 * it again for the test's end. The shrinkers went with the shutdown. */
static void cancelled_then_shut_down(void *(*fn)(void *), void *arg, unsigned reports)
{
    pthread_t th;

    atomic_store(&cleanup_stopped_it, -1);
    assert_int_equal(pthread_create(&th, NULL, fn, arg), 0);
    assert_ptr_equal(join_in_time(th), PTHREAD_CANCELED);
    assert_int_equal(atomic_load(&cleanup_stopped_it), 1);
    assert_int_equal(test_report_count(), reports);
    assert_int_equal(test_init(64 * MiB), 0);
}

/* Asked by a pass, where no handler of the question's own runs: the
 * reclaim's (shrink_unwound()) puts the mark back. */
TEST(test_a_thread_cancelled_in_may_reclaim_in_a_pass_can_shut_down_in_cleanup)
{
    static const struct rcl_shrinker_ops ops = { .count = thousand, .scan = scans_all };
    alarm(ENDING_ALARM_S);
    ending_domain = rcl_domain_create("cancelled-in-a-pass", 0, lets_the_cancel_in, NULL);
    assert_non_null(ending_domain);
    struct rcl_shrinker_opts o = { .domain = ending_domain };
    assert_non_null(rcl_shrinker_register("domain-cache", &ops, NULL, &o));
    cancelled_outside_a_pass = false;

    cancelled_then_shut_down(reclaims_in_the_domain_until_cancelled, NULL, 0);

    rcl_domain_destroy(ending_domain);
    alarm(0);
}

/* Outside a pass, the question's own handler puts the mark back. The
 * thread fills the budget itself, and lets the other thread's pass go
 * and takes its charge back before it shuts down: no other thread may
 * be inside the library then. */
static size_t cancelled_charge;
static struct held_pass cancelled_beside;

static void releases_the_pass_and_shuts_down(void *arg)
{
    (void)arg;
    ends_here = false;
    rcl_uncharge(cancelled_charge);
    if (held_pass_end(&cancelled_beside))
        shuts_the_library_down(NULL);
}

static void *allocates_in_the_domain_until_cancelled(void *arg)
{
    (void)arg;
    cancel_pending();
    rcl_domain_enter(ending_domain);            /* left at the thread's exit */
    cancelled_charge = charge_until_full();
    pthread_cleanup_push(releases_the_pass_and_shuts_down, NULL);
    void *p = rcl_alloc(4 * KiB, RCL_DEFAULT | RCL__NOWARN);
    rcl_free(p);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

TEST(test_a_thread_cancelled_in_may_reclaim_outside_a_pass_can_shut_down_in_cleanup)
{
    alarm(ENDING_ALARM_S);
    ending_domain = rcl_domain_create("cancelled-outside-a-pass", 0, lets_the_cancel_in, NULL);
    assert_non_null(ending_domain);
    held_pass_start(&cancelled_beside, ending_domain);
    cancelled_outside_a_pass = true;

    cancelled_then_shut_down(allocates_in_the_domain_until_cancelled, NULL, 0);

    rcl_domain_destroy(ending_domain);
    alarm(0);
}

/* Asked by a pass that an isolate callback's reclaim made: the reclaim's
 * handler puts back the isolate callback's mark, not none, and the walk's
 * own handler puts back none. A cleanup handler the callback pushed runs
 * between the two. */
static void shuts_down_in_the_isolate(void *arg)
{
    (void)arg;
    unsigned before = test_report_count();
    rcl_shutdown();
    atomic_store(&isolate_cleanup_refused,
                 test_report_count() == before + 1 &&
                 strstr(test_report_last(), "an LRU's isolate callback: refused") != NULL);
}

static enum rcl_lru_walk reclaims_until_cancelled(struct rcl_lru_node *n, void *arg)
{
    (void)n; (void)arg;
    pthread_cleanup_push(shuts_down_in_the_isolate, NULL);
    rcl_reclaim(1 * MiB, RCL_DEFAULT);
    pthread_cleanup_pop(0);
    return RCL_LRU_SKIP;                        /* not reached */
}

static void *walks_in_the_domain_until_cancelled(void *arg)
{
    struct rcl_lru_node dispose;

    cancel_pending();
    rcl_domain_enter(ending_domain);            /* left at the thread's exit */
    rcl_lru_list_init(&dispose);
    pthread_cleanup_push(shuts_the_library_down, NULL);
    rcl_lru_walk(arg, reclaims_until_cancelled, NULL, 1, &dispose);
    pthread_cleanup_pop(0);
    return NULL;                                /* not reached */
}

TEST(test_a_thread_cancelled_in_may_reclaim_inside_an_isolate_callback_is_put_back_as_the_callbacks)
{
    static const struct rcl_shrinker_ops ops = { .count = thousand, .scan = scans_all };
    struct rcl_lru *l = rcl_lru_create();
    struct rcl_lru_node item;
    alarm(ENDING_ALARM_S);
    assert_non_null(l);
    rcl_lru_node_init(&item);
    assert_int_equal(rcl_lru_add(l, &item), 1);
    ending_domain = rcl_domain_create("cancelled-in-an-isolate", 0, lets_the_cancel_in, NULL);
    assert_non_null(ending_domain);
    struct rcl_shrinker_opts o = { .domain = ending_domain };
    assert_non_null(rcl_shrinker_register("domain-cache", &ops, NULL, &o));
    cancelled_outside_a_pass = false;
    atomic_store(&isolate_cleanup_refused, -1);

    cancelled_then_shut_down(walks_in_the_domain_until_cancelled, l, 1);

    assert_int_equal(atomic_load(&isolate_cleanup_refused), 1);
    assert_int_equal(rcl_lru_del(l, &item), 1);
    assert_int_equal(rcl_lru_destroy(l), 0);
    rcl_domain_destroy(ending_domain);
    alarm(0);
}

/* ------------------------------------------------------------------------ */
/* A report function that ends its thread                                    */
/* ------------------------------------------------------------------------ */

/* What the ending thread's cleanup handler found: its scope, its cancel
 * state, how many reports it was inside, and the mark of a thread inside
 * the library. -1: the handler did not run. */
static atomic_int after_scope, after_cancel, after_reporting, after_busy;

static void report_ends_the_thread(const char *report, void *arg)
{
    test_report_catch(report, arg);
    if (ends_here) {
        ends_here = false;      /* its exit's own reports, if any, return */
        pthread_exit(NULL);
    }
}

static void records_after_the_report(void *arg)
{
    (void)arg;
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &cancel);
    pthread_setcancelstate(cancel, NULL);
    atomic_store(&after_scope, (int)rcl_scope_current());
    atomic_store(&after_cancel, cancel);
    atomic_store(&after_reporting, (int)rcl__reporting_depth());
    atomic_store(&after_busy, (int)rcl__self.busy);
}

/* A double free in NOIO scope, its report's function ending the thread. */
static void *frees_twice_and_ends(void *arg)
{
    (void)arg;
    void *p = rcl_alloc(16, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    unsigned saved = rcl_scope_save(RCL_SCOPE_NOIO);
    ends_here = true;
    pthread_cleanup_push(records_after_the_report, NULL);
    rcl_free(p);
    pthread_cleanup_pop(0);
    rcl_scope_restore(saved);
    return NULL;                                /* not reached */
}

/* The report function may end its thread (a logging wrapper that ends a
 * worker at an error): the thread leaves the report as a return would
 * before the program's cleanup handlers run, in the scope it had (not the
 * report's NORECLAIM), with cancellation as it was (not off), in no
 * report (rcl_shutdown() is not refused there) and outside the library.
 * (It ran them in NORECLAIM, with cancellation off, inside a report.) */
TEST(test_a_thread_ending_in_the_report_function_leaves_the_report_before_its_cleanup)
{
    atomic_store(&after_scope, -1);
    rcl_set_report_fn(report_ends_the_thread, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, frees_twice_and_ends, NULL), 0);
    assert_null(join_in_time(th));
    rcl_set_report_fn(test_report_catch, NULL);
    assert_last_report_has("already freed");

    assert_int_equal(atomic_load(&after_scope), (int)RCL_SCOPE_NOIO);
    assert_int_equal(atomic_load(&after_cancel), PTHREAD_CANCEL_ENABLE);
    assert_int_equal(atomic_load(&after_reporting), 0);
    assert_int_equal(atomic_load(&after_busy), 0);
}

/* An unregister of a class the test's thread holds a lock of: refused,
 * and reported by the lock checker, on a thread that holds no lock. */
static void *unregisters_and_ends(void *cls)
{
    ends_here = true;
    rcl_lock_class_unregister(cls);
    return NULL;                                /* not reached */
}

/* A lock checker's report whose function ends the thread is counted all
 * the same, as one that returns is after the return. (It was delivered
 * and never counted.) */
TEST(test_a_checker_report_whose_function_ends_its_thread_is_counted)
{
    rcl_shutdown();
    struct rcl_config cfg = test_config(64 * MiB);
    cfg.lockdep = RCL_LOCKDEP_ON;
    assert_int_equal(rcl_init(&cfg), 0);
    struct rcl_lock_class held = { .name = "held" };
    rcl_lock_acquire(&held);

    rcl_set_report_fn(report_ends_the_thread, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, unregisters_and_ends, &held), 0);
    assert_null(join_in_time(th));
    rcl_set_report_fn(test_report_catch, NULL);
    assert_last_report_has("of class \"held\", which thread");
    assert_int_equal(rcl_lockdep_reports(), 1);

    rcl_lock_release(&held);
    assert_int_equal(rcl_lock_class_unregister(&held), 0);
}

/* ------------------------------------------------------------------------ */
/* A thread printing the statistics                                          */
/* ------------------------------------------------------------------------ */

/* The stream's first write is where the thread is cancelled: stdio's
 * writes are cancellation points, as a pipe's reader gone quiet makes
 * them wait. */
static ssize_t write_cancels(void *cookie, const char *buf, size_t n)
{
    (void)cookie; (void)buf;
    pthread_cancel(pthread_self());
    pthread_testcancel();
    return (ssize_t)n;
}

static void *prints_the_stats(void *arg)
{
    FILE *f = fopencookie(NULL, "w", (cookie_io_functions_t){ .write = write_cancels });
    *(FILE **)arg = f;
    setvbuf(f, NULL, _IONBF, 0);
    rcl_stats_print(f, 0);
    return NULL;
}

static void print_cancelled(void)
{
    pthread_t th;
    FILE *f = NULL;
    assert_int_equal(pthread_create(&th, NULL, prints_the_stats, &f), 0);
    assert_ptr_equal(join_in_time(th), PTHREAD_CANCELED);
    fclose(f);
}

/* More shrinkers than struct rcl_stats carries are read into an array of
 * their own, which a cancel in the printing gives back. (It was lost.)
 * The first cancelled print loads the unwinder and gives the thread
 * an arena: the second is the one measured. */
TEST(test_a_thread_cancelled_printing_the_statistics_leaks_no_memory)
{
    static const struct rcl_shrinker_ops ops = { .count = holds_nothing, .scan = holds_nothing };
    enum { N = RCL_STATS_MAX_SHRINKERS + 8 };
    struct rcl_shrinker *s[N];
    for (int i = 0; i < N; i++)
        assert_non_null(s[i] = rcl_shrinker_register("listed", &ops, NULL, NULL));

    print_cancelled();
    struct mallinfo2 m0 = mallinfo2();
    print_cancelled();
    struct mallinfo2 m1 = mallinfo2();
    assert_true(m1.uordblks < m0.uordblks + N * sizeof(struct rcl_shrinker_stats));

    for (int i = 0; i < N; i++)
        rcl_shrinker_unregister(s[i]);
}

TEST_MAIN();
