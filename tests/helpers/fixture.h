/* SPDX-License-Identifier: MIT */
/*
 * fixture.h - the library as every test finds it, and the check that the
 * test left it as it found it.
 */
#ifndef RCL_TEST_FIXTURE_H
#define RCL_TEST_FIXTURE_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "reclaim.h"
#include "sanitize.h"
#include "test.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

/* The sanitizer this program was built with, "asan" or "tsan", or NULL.
 * Read from the build (sanitize.h), not from the environment: a sanitized
 * test program run by hand, without tools/run-tests.sh, must still skip
 * what its runtime makes meaningless (resident memory, a small cgroup),
 * rather than pass it without testing anything. */
static inline const char *test_sanitizer(void)
{
#if defined(RCL_ASAN)
    return "asan";
#elif defined(RCL_TSAN)
    return "tsan";
#else
    return NULL;
#endif
}

/* A poll for a state gives up after this long: only a hang reaches it,
 * and the assertion after the poll then fails the test, where an
 * unbounded poll would hold the whole run until CI's limit. */
#define TEST_HANG_MS 60000

/* Stress loops are shortened under the sanitizers, which are 5-20x slower. */
static inline int test_scale(int n)
{
    const char *san = test_sanitizer();
    if (san)
        return n / 4 > 0 ? n / 4 : 1;
    return n;
}

static inline int test_under_sanitizer(const char *which)
{
    const char *san = test_sanitizer();
    return san && strcmp(san, which) == 0;
}

/* Memory a test writes as pressure and never reads must stay written:
 * clang drops a malloc() and its memset() when nothing reads the block.
 * test_written(memset(p, c, n)) keeps them. */
static inline void *test_written(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

/* pthread_testcancel() for a thread a test cancels in its own code. The
 * cancel unwinds the thread's frames without their epilogues, which under
 * AddressSanitizer would have unpoisoned their locals' redzones; the
 * thread's exit then runs on that stack and trips over them (clang's
 * layout puts an inlined timespec there). A cleanup handler that runs only
 * on the cancel tells the sanitizer, as the library's own do. */
static inline void test_unwinding(void *arg)
{
    (void)arg;
    rcl__asan_unwinding();
}

static inline void test_testcancel(void)
{
    pthread_cleanup_push(test_unwinding, NULL);
    pthread_testcancel();
    pthread_cleanup_pop(0);
}

/* First thing in a forked child that is not to run the file's tests.
 * cmocka catches a crash (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS) around
 * each test and jumps back into its run of the rest: in a child, that run
 * is the parent's copy, so a crashing child would go on through the
 * file's other tests, and its exit would tell the parent nothing of the
 * crash. Back to the default, the crash ends the child, and its status
 * says so. SIGABRT too, so that a failed assertion does the same whatever
 * caught it. */
static inline void test_forked_child_dies_of_its_crashes(void)
{
    static const int crashes[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT };

    for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++)
        signal(crashes[i], SIG_DFL);
}

/* A file of the source tree, for the tests that read or run one: the
 * build directory may be anywhere (make BUILD=...). The tree is the one
 * the program was built from (the Makefile passes its directory), or
 * $RCL_TEST_SOURCES, for a build directory run where that tree is not. */
static inline const char *test_source(char *buf, size_t len, const char *rel)
{
    const char *tree = getenv("RCL_TEST_SOURCES");
    int n = snprintf(buf, len, "%s/%s", tree && *tree ? tree : RCL_TEST_SOURCES, rel);
    return n > 0 && (size_t)n < len ? buf : NULL;
}

/* BUILD/rel: a program of the build this test runs (tests/progs/NAME,
 * examples/NAME), BUILD being the directory this test program was built
 * in. The Makefile builds what a test runs with the test: one missing
 * fails the test, saying what to make, rather than failing later on a
 * failed exec that reads as the program's own failure. */
const char *test_built(char *buf, size_t len, const char *rel);

/* For a test that frees a block a second time: the free reads the freed
 * block's header, which under a sanitizer is itself the (correct) report,
 * so the plain run holds the test and the sanitized runs skip it. */
static inline void test_skip_if_freed_reads_report(void)
{
    const char *san = test_sanitizer();
    if (san) {
        print_message("skipped under %s: reading the freed block is itself the sanitizer's "
                      "(correct) report; the plain run holds this test\n", san);
        skip();
    }
}

/* The largest allocation above 64 KiB whose charge (the size, the block
 * header and the allocator's per-block overhead) fits in `room`. */
static inline size_t test_fitting(size_t room)
{
    return room - (rcl_alloc_charge(1 * MiB) - 1 * MiB);
}

/* A test configuration: a fixed limit, no background thread and no
 * pressure following unless the test turns them on, so every figure a test
 * asserts comes from what the test itself did. */
struct rcl_config test_config(size_t limit);
/* rcl_init(test_config(limit)) with reports caught; the check state reset. */
int test_init(size_t limit);

/* The standard fixture (TEST): test_init(64 MiB); the background
 * reclaimer stopped (a quiet point for the books), test_check_clean(), then
 * rcl_shutdown(). A file's own fixture calls these. */
int test_setup(void **state);
int test_teardown(void **state);

/*
 * What the standard teardown proves, as libuv's MAKE_VALGRIND_HAPPY does
 * for its loop: once every stock is folded back (rcl_usage_sync), nothing
 * is charged to the budget, and every report the test caused was looked at
 * (reports.h). 0 when clean; otherwise prints what was left and returns -1,
 * which fails the test.
 */
int test_check_clean(void);
/* A test that leaves memory charged on purpose (it tests what shutdown
 * does with live blocks, say) says why; the usage check is skipped for
 * this test only. The report check still applies. */
void test_leaves_usage(const char *why);

/* rcl_io_flusher_set(1) for a test that does not specify the flag itself:
 * where the kernel refuses the prctl (-EPERM without CAP_SYS_RESOURCE) the
 * library reports it, as test_io_flusher.c specifies; here that report is
 * seen. Returns what rcl_io_flusher_set returned. */
int test_io_flusher_on(void);
/* The tid of one of this process's threads whose name (its comm) is
 * `name` exactly, or 0; *count, unless NULL, how many there are. A joined
 * thread can linger in /proc for a moment: callers wait for the answer
 * they expect. */
pid_t test_thread_named(const char *name, int *count);
/* How many of this process's threads are named `name` exactly; the tids
 * of the first `max` of them in tids[]. */
int test_threads_named(const char *name, pid_t *tids, int max);
/* Whether no thread of this process is named `name`, waiting up to 5 s
 * for one that was joined to leave /proc. */
bool test_no_thread_named(const char *name);
/* Whether thread tid of this process sleeps (state S in its stat): a
 * thread that does one blocking call and nothing else waits in it. */
bool test_thread_asleep(pid_t tid);
/* Whether thread tid of this process sleeps in a condition variable's
 * wait with no deadline (pthread_cond_wait(), not a timed wait nor a
 * mutex's lock): nothing but a wake-up ends that sleep. Read from its
 * /proc syscall file, as glibc makes the call. True as well of a thread
 * in pthread_join(), which glibc waits in on the same futex call, with no
 * timeout: it says the thread waits untimed, not in which wait; a caller
 * that means one lock's wait makes sure the thread can be in no other. */
bool test_thread_waits_untimed(pid_t tid);
/* Polls until the thread whose id *tid holds (0 until it is known) waits
 * untimed, or *returned (when given) says its call came back first; false
 * if neither within TEST_HANG_MS. */
bool test_thread_seen_in_untimed_wait(atomic_int *tid, atomic_int *returned);
/* The same, in a timed wait (pthread_cond_timedwait()). */
bool test_thread_waits_timed(pid_t tid);
/* Whether thread tid comes to such a wait and stays in it (two looks
 * 1 ms apart, the same sleep both times), waiting a minute at most: a
 * thread that has nothing left to do but wait to be called. */
bool test_thread_settles(pid_t tid);
/* Whether thread tid of this process sleeps in a mutex's lock
 * (pthread_mutex_lock()) that thread `owner` holds: read from its /proc
 * syscall file and the mutex it names, as glibc keeps them; never true
 * elsewhere. */
bool test_thread_waits_for_lock_of(pid_t tid, pid_t owner);
/* Whether this thread's /proc syscall file reads, and so the others'
 * here: test_thread_waits_untimed(), _waits_timed(), _settles(),
 * _waits_for_lock_of(), _in_futex() and _in_syscall() read that file,
 * which a hardened kernel or a container may refuse or not have (EACCES,
 * EPERM, ENOENT). Where it cannot, a test that waits for one of them to
 * be true would spend its hang bound and fail: such a test asks this
 * first (test_skip_unless_syscalls_read()). */
bool test_can_read_syscalls(void);
static inline void test_skip_unless_syscalls_read(void)
{
    if (!test_can_read_syscalls()) {
        print_message("skipped: a thread's /proc syscall file (/proc/self/task/TID/syscall) "
                      "cannot be read here (refused or absent, as a hardened kernel or a "
                      "container has it): nothing could tell which call a thread sleeps in\n");
        skip();
    }
}
/* Whether test_thread_waits_for_lock_of() can be true here at all: it
 * reads a thread's /proc syscall file (test_can_read_syscalls()) and the
 * mutex's owner with process_vm_readv(), which a seccomp filter (a
 * container's, without CAP_SYS_PTRACE) or a hardened kernel refuses, and
 * glibc's mutex. Where
 * it cannot, a test that waits for it to be true would wait for ever:
 * such a test asks this first (test_skip_unless_lock_waits_read()). */
bool test_can_read_lock_waits(void);
static inline void test_skip_unless_lock_waits_read(void)
{
    if (!test_can_read_lock_waits()) {
        print_message("skipped: a thread's wait for a mutex's owner cannot be read here "
                      "(process_vm_readv() or /proc's syscall file refused, as a seccomp "
                      "filter or a hardened kernel does, or no glibc): nothing could tell "
                      "which lock the thread waits in\n");
        skip();
    }
}
/* A futex wait as a thread's /proc syscall file shows it: the futex
 * word's address, the operation (FUTEX_WAIT 0, FUTEX_WAIT_BITSET 9; the
 * private and clock flags masked off), the value expected there, and the
 * timeout's address (0: none). */
struct test_futex_wait {
    unsigned long long uaddr, val, timeout;
    int op;
};
/* Whether thread tid sleeps in futex(), and the wait in *w. */
bool test_thread_in_futex(pid_t tid, struct test_futex_wait *w);
/* Whether thread tid of this process sleeps in system call `nr` (say
 * SYS_poll): read from its /proc syscall file, which names the call it is
 * blocked in. For a wait that is not a condition variable's nor a mutex's. */
bool test_thread_in_syscall(pid_t tid, long nr);

/* Is the page at addr mapped? msync() answers ENOMEM for an unmapped
 * page, without touching it. */
static inline bool test_mapped(const void *addr)
{
    return msync((void *)((uintptr_t)addr & ~(uintptr_t)4095), 4096, MS_ASYNC) == 0 ||
           errno != ENOMEM;
}

/* Memory that never was one of the library's objects, for the tests that
 * hand it to a destroy as if it were: filled with a pattern that
 * test_fake_untouched() checks is all still there. */
#define TEST_FAKE_BYTES 4096
#define TEST_FAKE_FILL  0xa5
static inline void *test_fake_object(void)
{
    static unsigned char fake[TEST_FAKE_BYTES];
    return memset(fake, TEST_FAKE_FILL, sizeof(fake));
}

static inline bool test_fake_untouched(const void *fake)
{
    const unsigned char *c = fake;
    for (size_t i = 0; i < TEST_FAKE_BYTES; i++)
        if (c[i] != TEST_FAKE_FILL)
            return false;
    return true;
}

static inline void test_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* An allocation call that must fail: NULL, and errno set to `err`. */
#define assert_fails_with(expr, err)                                        \
    do {                                                                    \
        errno = 0;                                                          \
        const void *failed_ = (expr);                                       \
        assert_null(failed_);                                               \
        assert_int_equal(errno, (err));                                     \
    } while (0)

#endif
