/* SPDX-License-Identifier: MIT */
/*
 * test_signal.c - allocating and freeing in a signal handler while the
 * interrupted thread allocates and frees: a timer signal at 10 kHz aimed
 * at the allocating thread, for seconds, with every block's contents
 * checked on both sides, and the budget back where it started.
 */
#include "helpers.h"
#include "internal.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>

#define RING 4              /* blocks a handler keeps across signals */

static atomic_ulong signals, served, refused;
static void *ring[RING];    /* only the handler touches it while armed */
static unsigned ring_pos;
static _Atomic(void *) handoff;   /* a block the thread gives the handler to free */
static bool bracket;              /* the handler calls rcl_signal_enter/leave */

static void fill(void *p, size_t n, unsigned char tag)
{
    memset(p, tag, n);
}

static bool intact(const void *p, size_t n, unsigned char tag)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != tag)
            return false;
    return true;
}

/* Allocates two blocks, checks them, keeps one for a later signal to
 * free, and frees a block the interrupted thread handed over. */
static void handler(int sig)
{
    (void)sig;
    int saved_errno = errno;
    unsigned cookie = bracket ? rcl_signal_enter() : 0;
    atomic_fetch_add(&signals, 1);
    size_t n = 16 + (atomic_load(&signals) % 15) * 16;        /* 16 .. 240 */
    unsigned char *a = rcl_alloc(n, RCL_ATOMIC);
    unsigned char *b = rcl_alloc(64, RCL_NOWAIT);
    if (a) {
        fill(a, n, 0xa5);
        if (!intact(a, n, 0xa5))
            abort();
    }
    if (b)
        fill(b, 64, 0x5a);
    atomic_fetch_add(a ? &served : &refused, 1);
    rcl_free(a);
    void *old = ring[ring_pos];
    ring[ring_pos] = b;
    ring_pos = (ring_pos + 1) % RING;
    if (old && !intact(old, 64, 0x5a))
        abort();
    rcl_free(old);
    rcl_free(atomic_exchange(&handoff, NULL));
    if (bracket)
        rcl_signal_leave(cookie);
    errno = saved_errno;
}

static timer_t timer;

/* SIGALRM at 10 kHz, delivered to this thread. */
static void timer_arm(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, NULL), 0);
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGALRM;
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    assert_int_equal(timer_create(CLOCK_MONOTONIC, &sev, &timer), 0);
    struct itimerspec its = { { 0, 100000 }, { 0, 100000 } };
    assert_int_equal(timer_settime(timer, 0, &its, NULL), 0);
}

static void timer_disarm(void)
{
    timer_delete(timer);
    signal(SIGALRM, SIG_IGN);
}

/* The run's least number of signals, of which one at least served. */
#define SIGNALS_WANTED 1000
/* How much longer than its time a run may last to get them. */
#define SIGNALS_GRACE_MS 60000ull

static unsigned long long monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (unsigned long long)now.tv_sec * 1000 + (unsigned long long)now.tv_nsec / 1000000;
}

/* The run lasts its time and until the handler has run often enough to
 * have met the thread inside the library: a loaded machine, which lets
 * the timer's signals merge while the thread waits for a CPU, gets more
 * time to deliver them rather than a failed test. Past the grace the run
 * ends, and the counts fail it. */
static bool run_over(unsigned long long until)
{
    unsigned long long now = monotonic_ms();
    bool enough = atomic_load(&signals) >= SIGNALS_WANTED && atomic_load(&served) >= 1;
    return now >= until && (enough || now >= until + SIGNALS_GRACE_MS);
}

/* The thread's side: blocks of 16 B .. 4 KiB, allocated, filled, checked
 * and freed, some handed to the handler to free. */
static void run(void)
{
    unsigned long long until = 0;
    size_t start;
    void *held[32] = { 0 };

    atomic_store(&signals, 0);
    atomic_store(&served, 0);
    atomic_store(&refused, 0);
    memset(ring, 0, sizeof(ring));
    ring_pos = 0;
    atomic_store(&handoff, NULL);
    rcl_usage_sync();
    start = rcl_usage();
    until = monotonic_ms() + (unsigned long long)test_scale(3000);
    timer_arm();
    for (unsigned long i = 0;; i++) {
        unsigned k = (unsigned)(i % 32);
        size_t n = 16 + (i * 37) % 4080;
        if (held[k]) {
            if (!intact(held[k], 16, (unsigned char)k))
                fail_msg("a block of the thread changed under it");
            if (i % 7 == 0) {
                void *prev = atomic_exchange(&handoff, held[k]);
                rcl_free(prev);
            } else {
                rcl_free(held[k]);
            }
        }
        held[k] = rcl_alloc(n, i % 3 ? RCL_DEFAULT : RCL_ATOMIC);
        assert_non_null(held[k]);
        fill(held[k], n < 16 ? n : 16, (unsigned char)k);
        if ((i & 1023) == 0 && run_over(until))
            break;
    }
    timer_disarm();
    for (unsigned k = 0; k < 32; k++)
        rcl_free(held[k]);
    for (unsigned k = 0; k < RING; k++)
        rcl_free(ring[k]);
    rcl_free(atomic_exchange(&handoff, NULL));
    rcl_usage_sync();
    print_message("  %lu signals, %lu handler allocations served, %lu refused\n",
                  atomic_load(&signals), atomic_load(&served), atomic_load(&refused));
    assert_true(atomic_load(&signals) >= SIGNALS_WANTED);
    assert_true(atomic_load(&served) >= 1);
    assert_int_equal(rcl_usage(), start);
    assert_int_equal(test_report_count(), 0);
}

/* A handler that interrupts the thread inside the library never corrupts
 * its block cache or stock. Unbracketed, a handler interrupting the
 * thread outside the library takes the ordinary path and may call malloc,
 * which ThreadSanitizer reports as a signal-unsafe call. */
TEST(test_handler_allocates_while_the_thread_allocates)
{
    if (test_under_sanitizer("tsan")) {
        print_message("skipped under tsan: a signal that lands outside the library takes the "
                      "ordinary path, whose malloc TSan reports as signal-unsafe; the bracketed "
                      "test covers TSan\n");
        skip();
    }
    bracket = false;
    run();
}

/* Bracketed, every call in the handler takes the lock-free path. */
TEST(test_bracketed_handler_allocates_while_the_thread_allocates)
{
    bracket = true;
    run();
}

/* A leave without its enter finds the thread's mark clear: ignored, and
 * reported by the thread's next allocation. Obeyed, its cookie of 1 would
 * keep the thread on the handlers' path for good, where a 4 KiB request
 * fails. */
TEST(test_a_leave_without_an_enter_is_ignored_and_reported)
{
    rcl_signal_leave(1);
    void *p = rcl_alloc(4096, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_signal_leave() call without rcl_signal_enter()");
    rcl_free(p);

    unsigned cookie = rcl_signal_enter();      /* a pair still works */
    assert_null(rcl_alloc(4096, RCL_DEFAULT)); /* too large for a handler */
    rcl_signal_leave(cookie);
    p = rcl_alloc(4096, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);
    rcl_usage_sync();
    assert_int_equal(test_report_count(), 1);
}

/* Another thread's handler frees a block, deferred to that thread's
 * next allocation, which the thread then makes: it is served first. */
static void *served_for_a_handlers_free(void *arg)
{
    (void)arg;
    void *p = rcl_alloc(64, RCL_DEFAULT);
    unsigned cookie = rcl_signal_enter();
    rcl_free(p);
    rcl_signal_leave(cookie);
    rcl_free(rcl_alloc(4096, RCL_DEFAULT));
    return NULL;
}

/* A handler's misuse on a thread that has not used the library yet is
 * the process's to report: the tests of what a thread reports itself
 * make it known first, so that each holds run alone as in its file. */
static void known_to_the_library(void)
{
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
}

/* A leave without its enter is reported by its own thread's next
 * allocation, as reclaim.h says, not by the next thread served for a
 * handler of its own: the count was the process's, taken whole by
 * whichever thread came first. */
TEST(test_a_leave_without_an_enter_is_reported_by_its_own_thread)
{
    pthread_t th;

    known_to_the_library();
    rcl_signal_leave(1);
    assert_int_equal(pthread_create(&th, NULL, served_for_a_handlers_free, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(test_report_count(), 0);
    rcl_free(rcl_alloc(4096, RCL_DEFAULT));     /* the thread's next slow path */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 rcl_signal_leave() call without rcl_signal_enter()");
    test_reports_take();
}

static void *leaves_without_an_enter_and_exits(void *arg)
{
    (void)arg;
    rcl_free(rcl_alloc(64, RCL_DEFAULT));       /* registered: its exit runs */
    rcl_signal_leave(1);
    return NULL;
}

/* A thread that exits before its next allocation leaves its unreported
 * leave to the process: the next thread served reports it, and says
 * where it came from. */
TEST(test_a_leave_without_an_enter_on_a_thread_that_exits_is_reported_by_another)
{
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, leaves_without_an_enter_and_exits, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(test_report_count(), 0);
    served_for_a_handlers_free(NULL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 rcl_signal_leave() call without rcl_signal_enter(), on a "
                           "thread the library was not serving (exiting, or not yet "
                           "using it)");
    test_reports_take();
}

/* Each of a handler's misuses below is made on this thread, in its
 * bracket; another thread, served first for a handler of its own, must
 * not report it: this thread's next allocation does. The counts were the
 * process's, taken whole by whichever thread came first. The thread is
 * made known to the library first (known_to_the_library()). */
static void served_elsewhere_then_here(const char *expected)
{
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, served_for_a_handlers_free, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(test_report_count(), 0);
    rcl_free(rcl_alloc(4096, RCL_DEFAULT));     /* the thread's next slow path */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has(expected);
    test_reports_take();
}

TEST(test_a_handlers_bad_free_is_reported_by_its_own_thread)
{
    char *theirs = malloc(256);

    assert_non_null(theirs);
    known_to_the_library();
    unsigned cookie = rcl_signal_enter();
    rcl_free(theirs + 64);
    rcl_signal_leave(cookie);
    free(theirs);
    served_elsewhere_then_here("1 free in a signal handler: not a block from this library");
}

TEST(test_a_handlers_bad_realloc_is_reported_by_its_own_thread)
{
    char *theirs = malloc(256);

    assert_non_null(theirs);
    known_to_the_library();
    unsigned cookie = rcl_signal_enter();
    void *p = rcl_realloc(theirs + 64, 64, RCL_ATOMIC);
    rcl_signal_leave(cookie);
    free(theirs);
    assert_null(p);
    served_elsewhere_then_here("1 rcl_realloc() call in a signal handler: not a block");
}

TEST(test_a_handlers_refused_shutdown_is_reported_by_its_own_thread)
{
    known_to_the_library();
    unsigned cookie = rcl_signal_enter();
    rcl_shutdown();
    rcl_signal_leave(cookie);
    served_elsewhere_then_here("1 rcl_shutdown() call from a signal handler: refused");
}

TEST(test_a_handlers_nofail_that_may_not_wait_is_reported_by_its_own_thread)
{
    known_to_the_library();
    unsigned cookie = rcl_signal_enter();
    void *p = rcl_alloc(64, RCL__KSWAPD_RECLAIM | RCL__NOFAIL);
    rcl_signal_leave(cookie);
    assert_null(p);
    served_elsewhere_then_here("1 NOFAIL allocation in a signal handler can never succeed");
}

/* More of one kind than its count holds between two services is
 * reported as at least the count's top, not carried into the next
 * kind's count. */
TEST(test_a_handlers_bad_frees_past_their_count_are_reported_as_more)
{
    char *theirs = malloc(256);

    assert_non_null(theirs);
    rcl_free(rcl_alloc(64, RCL_DEFAULT));       /* registered: the count is its own */
    unsigned cookie = rcl_signal_enter();
    for (int i = 0; i < 100; i++)
        rcl_free(theirs + 64);
    rcl_signal_leave(cookie);
    free(theirs);
    rcl_free(rcl_alloc(4096, RCL_DEFAULT));     /* the thread's next slow path */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("15 or more frees in a signal handler");
    test_reports_take();
}

static void *frees_badly_in_a_handler_and_exits(void *arg)
{
    char *theirs = arg;

    rcl_free(rcl_alloc(64, RCL_DEFAULT));       /* registered: its exit runs */
    unsigned cookie = rcl_signal_enter();
    rcl_free(theirs + 64);
    rcl_signal_leave(cookie);
    return NULL;
}

static void *frees_badly_in_a_handler_unknown_to_the_library(void *theirs)
{
    unsigned cookie = rcl_signal_enter();       /* its first call: not registered */
    rcl_free((char *)theirs + 64);
    rcl_signal_leave(cookie);
    return NULL;
}

/* A thread the library does not know may never call it again, and no
 * exit of the library's runs for it: its handlers' misuse goes to the
 * process at once, and the next thread served reports it, saying so. */
TEST(test_a_handlers_bad_free_on_a_thread_unknown_to_the_library_is_reported_by_another)
{
    char *theirs = malloc(256);
    pthread_t th;

    assert_non_null(theirs);
    assert_int_equal(pthread_create(&th, NULL, frees_badly_in_a_handler_unknown_to_the_library,
                                    theirs), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    free(theirs);
    assert_int_equal(test_report_count(), 0);
    served_for_a_handlers_free(NULL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 free in a signal handler, on a thread the library was not "
                           "serving (exiting, or not yet using it)");
    test_reports_take();
}

/* A thread that exits before its next allocation leaves its handlers'
 * unreported misuse to the process: the next thread served reports it,
 * and says where it came from. */
TEST(test_a_handlers_bad_free_on_a_thread_that_exits_is_reported_by_another)
{
    char *theirs = malloc(256);
    pthread_t th;

    assert_non_null(theirs);
    assert_int_equal(pthread_create(&th, NULL, frees_badly_in_a_handler_and_exits, theirs), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    free(theirs);
    assert_int_equal(test_report_count(), 0);
    served_for_a_handlers_free(NULL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 free in a signal handler, on a thread the library was not "
                           "serving (exiting, or not yet using it)");
    test_reports_take();
}

static void *misuses_twice_in_a_handler_and_ends_at_the_report(void *arg)
{
    char *theirs = arg;

    rcl_free(rcl_alloc(64, RCL_DEFAULT));       /* registered: its exit runs */
    unsigned cookie = rcl_signal_enter();
    rcl_free(theirs + 64);
    void *p = rcl_realloc(theirs + 64, 64, RCL_ATOMIC);
    rcl_signal_leave(cookie);
    assert_null(p);
    test_reports_end_this_thread();
    rcl_free(rcl_alloc(4096, RCL_DEFAULT));     /* its next slow path reports */
    return NULL;                                /* not reached */
}

/* A thread that reports its handlers' misuse of one kind with a report
 * function that ends it leaves the kinds it had not reported to the
 * process: the next thread served reports them. They were taken from the
 * thread's word with the first, and went with its frames. */
TEST(test_a_handlers_misuse_left_unreported_by_a_report_that_ends_its_thread_is_reported_by_another)
{
    char *theirs = malloc(256);
    pthread_t th;

    assert_non_null(theirs);
    rcl_set_report_fn(test_report_catch_then_end, NULL);
    assert_int_equal(pthread_create(&th, NULL,
                                    misuses_twice_in_a_handler_and_ends_at_the_report, theirs), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_set_report_fn(test_report_catch, NULL);
    free(theirs);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 free in a signal handler: not a block from this library");
    test_reports_take();
    served_for_a_handlers_free(NULL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 rcl_realloc() call in a signal handler, on a thread the "
                           "library was not serving (exiting, or not yet using it)");
    test_reports_take();
}

static void unmatched_leave_handler(int sig)
{
    (void)sig;
    rcl_signal_leave(0);
}

/* A handler's leave without its enter, where the handler interrupted a
 * library call (the thread's mark set, as the call sets it here), changes
 * nothing: the call goes on inside the library, and the leave is reported
 * later. Obeyed, its cookie cleared the mark for the rest of the call,
 * and a second handler's allocation there took the ordinary path, its
 * locks and the cache the call was half way through changing. */
TEST(test_a_handlers_leave_without_an_enter_leaves_the_interrupted_call_inside)
{
    struct sigaction sa = { .sa_handler = unmatched_leave_handler }, old;
    struct rcl_thread *t = &rcl__self;

    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    unsigned b = rcl__busy_hold(t);             /* a library call under way */
    raise(SIGUSR1);
    unsigned found = t->busy;
    rcl__busy_drop(t, b);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);

    assert_int_equal(found, 1);
    assert_int_equal(test_report_count(), 0);
    rcl_free(rcl_alloc(4096, RCL_DEFAULT));     /* the thread's next slow path */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 rcl_signal_leave() call without rcl_signal_enter()");
    test_reports_take();
}

/* The stash is made for a handler's allocation, not for what a handler
 * asks its thread to report (a leave without its enter, a bad free): a
 * thread whose handlers never allocate holds none, and is charged none. */
TEST(test_a_handler_that_never_allocates_gets_no_stash)
{
    char *theirs = malloc(256);

    assert_non_null(theirs);
    rcl_usage_sync();                           /* no stash now */
    rcl_signal_leave(1);
    unsigned cookie = rcl_signal_enter();
    rcl_free(theirs + 64);
    rcl_signal_leave(cookie);
    free(theirs);
    rcl_free(rcl_alloc(4096, RCL_DEFAULT));     /* the thread's next slow path */
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("without rcl_signal_enter()");
    assert_reports_have("not a block from this library");
    assert_int_equal(atomic_load(&rcl__self.sig_stash_bytes), 0);
    assert_null(atomic_load(&rcl__self.sig_stash));
    test_reports_take();
}

static char *stray;                 /* not the library's: a bad free */
static bool stray_in_report;

static void stray_free_handler(int sig)
{
    (void)sig;
    unsigned cookie = rcl_signal_enter();
    rcl_free(stray);
    rcl_signal_leave(cookie);
}

/* Catches the report, and the first time a handler interrupts the thread
 * there and frees a stray again. */
static void report_then_stray_free(const char *report, void *arg)
{
    test_report_catch(report, arg);
    if (stray_in_report) {
        stray_in_report = false;
        raise(SIGUSR1);
    }
}

/* The thread reports a handler's bad free with a report function that a
 * second handler may interrupt: what that one asks is met by a slow path
 * after it, not taken with the first request and forgotten. */
TEST(test_a_handlers_bad_free_in_the_report_of_another_is_reported_too)
{
    struct sigaction sa = { .sa_handler = stray_free_handler }, old;
    char *theirs = malloc(256);

    assert_non_null(theirs);
    stray = theirs + 64;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    rcl_set_report_fn(report_then_stray_free, NULL);
    raise(SIGUSR1);
    stray_in_report = true;
    rcl_free(rcl_alloc(1 * MiB, RCL_DEFAULT));  /* reports the first */
    assert_false(stray_in_report);
    rcl_free(rcl_alloc(1 * MiB, RCL_DEFAULT));  /* the second, by now */
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
    free(theirs);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("1 free in a signal handler");
}

static void shutdown_handler(int sig)
{
    (void)sig;
    unsigned cookie = rcl_signal_enter();
    rcl_shutdown();
    rcl_signal_leave(cookie);
}

/* A daemon's SIGTERM handler that shuts the library down is refused: the
 * call it interrupted may hold the locks the shutdown takes, and go on
 * over the state it tears down. A report takes locks too: the thread
 * makes it later, as it does a handler's bad free. */
TEST(test_a_handlers_shutdown_is_refused_and_reported_later)
{
    struct sigaction sa = { .sa_handler = shutdown_handler }, old;
    struct rcl_config cfg = test_config(64 * MiB);

    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    raise(SIGUSR1);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
    assert_int_equal(rcl_init(&cfg), -EBUSY);
    assert_int_equal(test_report_count(), 0);
    void *p = rcl_alloc(4096, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_shutdown() call from a signal handler");
    rcl_free(p);
}

/* Inside the bracket a request no block can meet is EINVAL, as outside
 * it: an alignment that is not a power of two, a realloc to size 0 (the
 * block kept). ENOMEM there means "none now", which a handler may wait
 * out and ask again. */
TEST(test_a_handlers_bad_alignment_or_size_is_einval)
{
    char *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);
    memset(p, 0x3c, 100);

    unsigned cookie = rcl_signal_enter();
    errno = 0;
    void *zero = rcl_aligned_alloc(0, 64, RCL_ATOMIC);
    int zero_err = errno;
    errno = 0;
    void *odd = rcl_aligned_alloc(24, 64, RCL_ATOMIC);
    int odd_err = errno;
    errno = 0;
    void *shrunk = rcl_realloc(p, 0, RCL_ATOMIC);
    int shrunk_err = errno;
    errno = 0;
    void *large = rcl_aligned_alloc(64, 64, RCL_ATOMIC);   /* valid, refused */
    int large_err = errno;
    rcl_signal_leave(cookie);

    assert_null(zero);
    assert_int_equal(zero_err, EINVAL);
    assert_null(odd);
    assert_int_equal(odd_err, EINVAL);
    assert_null(shrunk);
    assert_int_equal(shrunk_err, EINVAL);
    assert_null(large);
    assert_int_equal(large_err, ENOMEM);
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], 0x3c);
    rcl_free(p);
}

/* A handler's realloc of a pointer that is not a block of the library's,
 * or of one freed already, is a bad free as outside a handler: counted at
 * once, the pointer left alone, EINVAL, and reported by the thread later.
 * It read as a stash empty for now (ENOMEM), or as a bad size, unsaid. */
TEST(test_a_handlers_realloc_of_a_foreign_or_freed_block_is_a_bad_free_reported_later)
{
    char *theirs = malloc(256);
    assert_non_null(theirs);
    char *freed = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(freed);
    rcl_free(freed);                            /* in the thread's cache now */
    struct rcl_stats before, after;
    rcl_stats_get(&before);

    unsigned cookie = rcl_signal_enter();
    errno = 0;
    void *foreign = rcl_realloc(theirs + 64, 64, RCL_ATOMIC);
    int foreign_err = errno;
    errno = 0;
    void *again = rcl_realloc(freed, 0, RCL_ATOMIC);
    int again_err = errno;
    rcl_signal_leave(cookie);

    rcl_stats_get(&after);
    free(theirs);
    assert_null(foreign);
    assert_int_equal(foreign_err, EINVAL);
    assert_null(again);
    assert_int_equal(again_err, EINVAL);
    assert_int_equal(after.bad_frees - before.bad_frees, 2);
    assert_int_equal(test_report_count(), 0);
    rcl_free(rcl_alloc(4096, RCL_DEFAULT));     /* the thread's next slow path */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("2 rcl_realloc() calls in a signal handler: not a block from "
                           "this library, or already freed");
    test_reports_take();
}

/* A handler's first request finds no stash and asks the thread for one,
 * which the thread's next slow path makes. */
static void stash_for_a_handler(void)
{
    unsigned cookie = rcl_signal_enter();
    void *none = rcl_alloc(16, RCL_ATOMIC);      /* no stash yet: asks for one */
    rcl_signal_leave(cookie);
    assert_null(none);
    rcl_free(rcl_alloc(100 * 1024, RCL_DEFAULT));  /* a slow path: the stash made */
}

/* A handler's stash serves requests of up to 256 bytes: one byte more is
 * ENOMEM, a stash block standing by or not, and takes none of them. */
TEST(test_a_handlers_request_above_256_bytes_is_enomem)
{
    rcl_free(rcl_alloc(16, RCL_DEFAULT));        /* the thread registered */
    stash_for_a_handler();

    unsigned cookie = rcl_signal_enter();
    errno = 0;
    void *over = rcl_alloc(257, RCL_ATOMIC);
    int over_err = errno;
    void *most = rcl_alloc(256, RCL_ATOMIC);
    rcl_signal_leave(cookie);

    assert_null(over);
    assert_int_equal(over_err, ENOMEM);
    assert_non_null(most);
    rcl_free(most);
}

/* The stash a handler's first request has the thread make holds eight
 * blocks: a handler may take eight, and the ninth is ENOMEM. */
TEST(test_a_handlers_stash_serves_eight_blocks)
{
    void *p[9];

    rcl_free(rcl_alloc(16, RCL_DEFAULT));        /* the thread registered */
    stash_for_a_handler();

    unsigned cookie = rcl_signal_enter();
    for (int i = 0; i < 9; i++)
        p[i] = rcl_alloc(64, RCL_ATOMIC);
    rcl_signal_leave(cookie);

    for (int i = 0; i < 8; i++)
        assert_non_null(p[i]);
    assert_null(p[8]);
    for (int i = 0; i < 8; i++)
        rcl_free(p[i]);
}

static unsigned long failures_now(void)
{
    struct rcl_stats st;

    rcl_stats_get(&st);
    return st.failures;
}

/* A calloc whose size overflows fails with EOVERFLOW in a handler as
 * outside it, and counts as a failure where it does outside one: with
 * NOFAIL, whose caller will not look for NULL (its report comes from the
 * thread's call only: a report takes a lock). */
TEST(test_a_handlers_calloc_that_overflows_counts_as_the_threads_does)
{
    const rcl_gfp_t flags[] = { RCL_ATOMIC, RCL_DEFAULT | RCL__NOFAIL | RCL__NOWARN };

    for (unsigned i = 0; i < 2; i++) {
        unsigned long start = failures_now();
        errno = 0;
        assert_null(rcl_calloc(SIZE_MAX / 2, 4, flags[i]));
        assert_int_equal(errno, EOVERFLOW);
        unsigned long thread = failures_now() - start;

        start = failures_now();
        unsigned cookie = rcl_signal_enter();
        errno = 0;
        void *p = rcl_calloc(SIZE_MAX / 2, 4, flags[i]);
        int err = errno;
        rcl_signal_leave(cookie);
        assert_null(p);
        assert_int_equal(err, EOVERFLOW);
        assert_int_equal(failures_now() - start, thread);
        assert_int_equal(thread, i);
    }
}

/* A handler's request that the stash cannot serve (ENOMEM: too large, an
 * alignment above 16, a mapped block, a realloc that would move) finds
 * no block for it, and counts as an allocation that finds no room does
 * outside a handler, whichever call makes it. */
TEST(test_a_handlers_request_the_stash_cannot_serve_counts_a_failure_whichever_call)
{
    char *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);
    stash_for_a_handler();

    for (int i = 0; i < 4; i++) {
        unsigned long start = failures_now();
        unsigned cookie = rcl_signal_enter();
        errno = 0;
        void *got = i == 0 ? rcl_alloc(257, RCL_ATOMIC) :
                    i == 1 ? rcl_aligned_alloc(64, 64, RCL_ATOMIC) :
                    i == 2 ? rcl_valloc(64, RCL_ATOMIC) : rcl_realloc(p, 200, RCL_ATOMIC);
        int err = errno;
        rcl_signal_leave(cookie);
        assert_null(got);
        assert_int_equal(err, ENOMEM);
        assert_int_equal(failures_now() - start, 1);
    }
    rcl_free(p);
}

/* A handler's request no block can meet (EINVAL: size 0, an alignment
 * that is not a power of two) is its caller's bug, and counts as a
 * failure where the thread's does: with NOFAIL only, whose caller will
 * not look for NULL, whichever call makes it. */
TEST(test_a_handlers_request_no_block_can_meet_counts_as_the_threads_does)
{
    const rcl_gfp_t flags[] = { RCL_ATOMIC, RCL_DEFAULT | RCL__NOFAIL | RCL__NOWARN };
    char *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);

    for (unsigned f = 0; f < 2; f++) {
        for (int i = 0; i < 6; i++) {
            unsigned long thread = 0;
            for (int in_handler = 0; in_handler < 2; in_handler++) {
                unsigned long start = failures_now();
                unsigned cookie = in_handler ? rcl_signal_enter() : 0;
                errno = 0;
                void *got = i == 0 ? rcl_alloc(0, flags[f]) :
                            i == 1 ? rcl_aligned_alloc(24, 64, flags[f]) :
                            i == 2 ? rcl_aligned_alloc(8, 0, flags[f]) :
                            i == 3 ? rcl_aligned_alloc(64, 0, flags[f]) :
                            i == 4 ? rcl_valloc(0, flags[f]) : rcl_realloc(p, 0, flags[f]);
                int err = errno;
                if (in_handler)
                    rcl_signal_leave(cookie);
                assert_null(got);
                assert_int_equal(err, EINVAL);
                if (!in_handler)
                    thread = failures_now() - start;
                else
                    assert_int_equal(failures_now() - start, thread);
            }
            assert_int_equal(thread, f);
        }
    }
    rcl_free(p);
}

/* A handler's block is a stash block of 256 bytes, and its header says
 * so; a grow with RCL__ZERO zeroes past the header's size only, so what
 * lies between the size asked and 256 must read zero as well, as in a
 * block a larger class lent (alloc.c). The stash is made of memory a
 * program wrote: a zeroed block of 16 bytes, grown with RCL__ZERO to
 * 200, read that program's bytes from its 17th on. */
TEST(test_a_handlers_zeroed_block_grown_zeroed_reads_zero)
{
    enum { DIRTY = 64 };
    unsigned char *d[DIRTY];

    for (int i = 0; i < DIRTY; i++) {
        d[i] = rcl_alloc(256, RCL_DEFAULT);
        assert_non_null(d[i]);
        memset(d[i], 0xc3, 256);
    }
    for (int i = 0; i < DIRTY; i++)
        rcl_free(d[i]);
    rcl_usage_sync();                    /* their memory back where blocks come from */

    stash_for_a_handler();
    unsigned cookie = rcl_signal_enter();
    unsigned char *p = rcl_alloc(16, RCL_ATOMIC | RCL__ZERO);
    rcl_signal_leave(cookie);
    assert_non_null(p);
    assert_true(intact(p, 16, 0));

    p = rcl_realloc(p, 200, RCL_DEFAULT | RCL__ZERO);
    assert_non_null(p);
    assert_true(intact(p, 200, 0));
    rcl_free(p);
}

/* Inside the bracket NOFAIL that may not wait is EINVAL, as outside it,
 * whichever call asks (the block a realloc names kept), where it read
 * ENOMEM, a stash empty for now; reported once the thread is out, by its
 * next allocation, as outside it at once. NOWARN keeps it quiet. */
TEST(test_a_handlers_nofail_that_may_not_wait_is_einval_and_reported_later)
{
    const rcl_gfp_t nowait = RCL__KSWAPD_RECLAIM | RCL__NOFAIL;
    char *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);
    memset(p, 0x3c, 100);
    void *got[6];
    int err[6];

    for (int i = 0; i < 6; i++) {
        unsigned cookie = rcl_signal_enter();
        errno = 0;
        got[i] = i == 0 ? rcl_alloc(64, nowait) : i == 1 ? rcl_calloc(2, 32, nowait) :
                 i == 2 ? rcl_aligned_alloc(64, 64, nowait) : i == 3 ? rcl_valloc(64, nowait) :
                 i == 4 ? rcl_realloc(p, 50, nowait) : rcl_alloc(64, nowait | RCL__NOWARN);
        err[i] = errno;
        rcl_signal_leave(cookie);
    }

    for (int i = 0; i < 6; i++) {
        assert_null(got[i]);
        assert_int_equal(err[i], EINVAL);
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], 0x3c);
    assert_int_equal(test_report_count(), 0);
    rcl_free(rcl_alloc(2000, RCL_DEFAULT));    /* the thread's next slow path */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("5 NOFAIL allocations in a signal handler can never succeed");
    test_reports_take();
    rcl_free(p);
}

/* A handler may still run once its thread's exit has released what the
 * handlers left (reclaim.h): in the thread's later destructors, until
 * the thread is gone. Here it runs in the thread's second round of
 * thread-specific-data destructors, which POSIX starts only once every
 * destructor of the first, the library's exit among them, has run. Its
 * free is released all the same, by another thread's rcl_usage_sync(). */
static pthread_key_t late_key;
static __thread unsigned late_rounds;
static atomic_bool late_freed;

static void free_in_a_late_handler(void *p)
{
    if (late_rounds++ == 0) {
        if (pthread_setspecific(late_key, p) != 0)
            rcl_free(p);        /* and late_freed stays false */
        return;
    }
    unsigned cookie = rcl_signal_enter();
    rcl_free(p);
    rcl_signal_leave(cookie);
    atomic_store(&late_freed, true);
}

static void *exits_holding_a_block(void *arg)
{
    (void)arg;
    void *p = rcl_alloc(1000, RCL_DEFAULT);
    if (p && pthread_setspecific(late_key, p) != 0) {
        rcl_free(p);
        p = NULL;
    }
    return p;
}

TEST(test_a_handlers_free_after_its_threads_exit_is_released)
{
    pthread_t th;
    void *p;

    atomic_store(&late_freed, false);
    assert_int_equal(pthread_key_create(&late_key, free_in_a_late_handler), 0);
    rcl_usage_sync();
    size_t start = rcl_usage();
    assert_int_equal(pthread_create(&th, NULL, exits_holding_a_block, NULL), 0);
    assert_int_equal(pthread_join(th, &p), 0);
    assert_non_null(p);
    assert_true(atomic_load(&late_freed));
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), start);
    assert_int_equal(pthread_key_delete(late_key), 0);
}

/* ------------------------------------------------------------------------ */
/* A start from a signal handler                                             */
/* ------------------------------------------------------------------------ */

/* What a start hook's or a handler's call answered, read by the child. */
static _Atomic int start_answer = 1;
static void (*start_call)(void);    /* the call the handler makes */

static void init_in_a_handler(void)
{
    struct rcl_config cfg = test_config(64 * MiB);
    atomic_store(&start_answer, rcl_init(&cfg));
}

static void charge_in_a_handler(void)
{
    atomic_store(&start_answer, rcl_charge(4096, RCL_NOWAIT));
}

static unsigned long no_objects(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    return 0;
}

static void register_in_a_handler(void)
{
    static const struct rcl_shrinker_ops ops = { .count = no_objects, .scan = no_objects };
    struct rcl_shrinker *s = rcl_shrinker_register("handler's", &ops, NULL, NULL);

    atomic_store(&start_answer, s ? 0 : -errno);
    if (s)
        rcl_shrinker_unregister(s);
}

static void bracketed_start_handler(int sig)
{
    (void)sig;
    unsigned cookie = rcl_signal_enter();
    start_call();
    rcl_signal_leave(cookie);
}

/* Not bracketed: the program's handler that knows nothing of the library. */
static void plain_start_handler(int sig)
{
    (void)sig;
    start_call();
}

static void raise_in_the_start(void)
{
    /* Once: the thread's own start only. */
    atomic_store_explicit(&rcl__start_hook, NULL, memory_order_relaxed);
    raise(SIGUSR1);
}

/*
 * In a child under alarm(), so that a start that waits for itself fails
 * the test rather than hanging the suite: the handler is installed, the
 * library stopped; `inside` raises the signal inside the thread's own
 * start, otherwise before it. The child then starts the library, finds
 * the handler's call refused (`want`, -errno) and, at its first
 * allocation, reported (`report`). Its exit status says which step failed.
 */
static int start_in_a_handler_child(void (*on_signal)(int), void (*call)(void), bool inside,
                                    int want, const char *report)
{
    struct sigaction sa = { .sa_handler = on_signal };

    alarm(10);
    start_call = call;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL))
        return 10;
    if (inside)
        atomic_store_explicit(&rcl__start_hook, raise_in_the_start, memory_order_relaxed);
    else
        raise(SIGUSR1);
    if (test_init(64 * MiB) != 0)
        return 11;                  /* the handler started the library */
    if (atomic_load(&start_answer) != want)
        return 12;
    void *p = rcl_alloc(64, RCL_DEFAULT);
    if (!p)
        return 13;
    if (test_report_count() != 1 || !strstr(test_report_last(), report))
        return 14;
    rcl_free(p);
    return rcl_usage() == 0 ? 0 : 15;
}

static void assert_child_passes(void (*on_signal)(int), void (*call)(void), bool inside, int want,
                                const char *report)
{
    int status;

    rcl_shutdown();
    pid_t pid = fork();
    if (pid == 0)
        _exit(start_in_a_handler_child(on_signal, call, inside, want, report));
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("the child ended by signal %d (SIGALRM: the handler's call waited for ever)",
                 WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A handler the program bracketed may not start the library: a start
 * takes locks, calls malloc() and starts threads. rcl_init() there is
 * refused as "not now", and reported by the thread later. */
TEST_BARE(test_a_bracketed_handlers_init_before_the_start_is_refused_and_reported_later)
{
    assert_child_passes(bracketed_start_handler, init_in_a_handler, false, -EBUSY,
                        "1 rcl_init() call from a signal handler");
}

/* So is the start that another call's first use would make there: the
 * call answers as after a failed start. */
TEST_BARE(test_a_bracketed_handlers_first_use_does_not_start_the_library)
{
    assert_child_passes(bracketed_start_handler, charge_in_a_handler, false, -ENOMEM,
                        "1 call from a signal handler would have started the library");
}

/* A shrinker registered there would join a registry, with its lock and
 * calloc(), that no start has made: NULL with ENOMEM, "not now". */
TEST_BARE(test_a_bracketed_handlers_shrinker_register_does_not_start_the_library)
{
    assert_child_passes(bracketed_start_handler, register_in_a_handler, false, -ENOMEM,
                        "1 call from a signal handler would have started the library");
}

/* A handler that interrupted its thread's own start, unbracketed, would
 * wait for ever for the lock that start holds: its rcl_init() is
 * refused instead, and the start it interrupted goes on. */
TEST_BARE(test_a_handlers_init_inside_its_threads_start_is_refused_not_waited_for)
{
    assert_child_passes(plain_start_handler, init_in_a_handler, true, -EBUSY,
                        "1 rcl_init() call from a signal handler");
}

/* The same for a first use there: the charge fails as after a failed
 * start, and nothing is charged to the budget the start then makes. */
TEST_BARE(test_a_handlers_first_use_inside_its_threads_start_is_refused_not_waited_for)
{
    assert_child_passes(plain_start_handler, charge_in_a_handler, true, -ENOMEM,
                        "1 call from a signal handler would have started the library");
}

static void init_handler(int sig)
{
    (void)sig;
    unsigned cookie = rcl_signal_enter();
    atomic_store(&start_answer, rcl_init(NULL));
    rcl_signal_leave(cookie);
}

/* With the library running a handler's rcl_init() answers -EBUSY, as the
 * thread's would, and is reported as the misuse it is all the same. */
TEST(test_a_handlers_init_while_the_library_runs_is_reported_later)
{
    struct sigaction sa = { .sa_handler = init_handler }, old;

    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    raise(SIGUSR1);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
    assert_int_equal(atomic_load(&start_answer), -EBUSY);
    assert_int_equal(test_report_count(), 0);
    void *p = rcl_alloc(64, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 rcl_init() call from a signal handler");
    rcl_free(p);
}

/* A thread that has not used the library, whose handler's start was
 * refused, then allocates: what it reports is its own, even if the
 * count went to the process's. */
static void *inits_in_a_handler_then_allocates(void *arg)
{
    (void)arg;
    unsigned cookie = rcl_signal_enter();
    atomic_store(&start_answer, rcl_init(NULL));
    rcl_signal_leave(cookie);
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    return NULL;
}

/* The thread a refused start comes from has most likely not used the
 * library yet: its count goes to the process's at once, and its own
 * first allocation reports it, not only the next thread served for a
 * handler of its own, which may never come. */
TEST(test_a_handlers_init_on_a_thread_new_to_the_library_is_reported_by_its_first_allocation)
{
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, inits_in_a_handler_then_allocates, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&start_answer), -EBUSY);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("1 rcl_init() call from a signal handler");
    test_reports_take();
}

TEST_MAIN();
