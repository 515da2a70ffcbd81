/* SPDX-License-Identifier: MIT */
/*
 * The lock checker inside the program's own allocator: a malloc() that
 * takes an annotated mutex, as a program's malloc wrapper or a cache
 * allocator built on an rcl_mutex_t does. What the checker learns and
 * reports there it must not take from malloc(): that would enter the
 * allocator again from inside its lock, a self-deadlock or a recursion
 * without end. This program's malloc() counts such calls instead.
 *
 * It replaces glibc's malloc(), calloc(), realloc() and free(), which the
 * sanitizers' own replacements rule out: under them the tests that need it
 * are skipped, and the plain run holds them.
 *
 * Kernel counterpart: lockdep's static tables, which it allocates nothing
 * to fill.
 */
#include "helpers.h"

#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

#include "checker.h"
#include "lockdep.h"

static RCL_LOCK_CLASS(heap_class, "heap");
static RCL_LOCK_CLASS(lock_a, "lock_a");
static RCL_LOCK_CLASS(lock_c, "lock_c");

/* The program's allocator: glibc's behind heap_lock, while heap_locked. */
static rcl_mutex_t heap_lock;
static atomic_bool heap_locked;
/* What the allocator does inside its lock besides allocating, at its next
 * call (a cache allocator's refill taking a lock of its own, say). */
static void (*_Atomic heap_inside)(void);
/* Calls into the allocator from inside it, by any thread. */
static atomic_uint reentered;

#ifndef RCL_SANITIZED
static __thread bool in_heap;

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

/* False when the allocator is not to be locked, or is entered again from
 * inside: that call goes to glibc unlocked, as a recursive lock would let
 * it, and is counted. */
static bool heap_enter(void)
{
    if (!atomic_load(&heap_locked))
        return false;
    if (in_heap) {
        atomic_fetch_add(&reentered, 1);
        return false;
    }
    /* Inside from the call on: the checker runs in the lock call. */
    in_heap = true;
    rcl_mutex_lock(&heap_lock);
    void (*fn)(void) = atomic_exchange(&heap_inside, NULL);
    if (fn)
        fn();
    return true;
}

static void heap_leave(bool entered)
{
    if (!entered)
        return;
    rcl_mutex_unlock(&heap_lock);
    in_heap = false;
}

void *malloc(size_t n)
{
    bool e = heap_enter();
    void *p = __libc_malloc(n);
    heap_leave(e);
    return p;
}

void *calloc(size_t n, size_t size)
{
    bool e = heap_enter();
    void *p = __libc_calloc(n, size);
    heap_leave(e);
    return p;
}

void *realloc(void *old, size_t n)
{
    bool e = heap_enter();
    void *p = __libc_realloc(old, n);
    heap_leave(e);
    return p;
}

void free(void *p)
{
    bool e = heap_enter();
    __libc_free(p);
    heap_leave(e);
}
#endif

static void need_own_malloc(void)
{
#ifdef RCL_SANITIZED
    print_message("skipped under a sanitizer, whose malloc() this program cannot replace; the "
                  "plain run holds this test\n");
    skip();
#endif
}

/* A checker that calls malloc() under its graph lock deadlocks in the
 * program's allocator, which waits for that lock: the alarm fails the
 * test, where the hang would have held up the run. */
static int heap_setup(void **state)
{
    alarm(30);
    atomic_store(&reentered, 0);
    atomic_store(&heap_inside, NULL);
    if (rcl_mutex_init(&heap_lock, &heap_class) != 0)
        return -1;
    return ld_setup(state);
}

static int heap_teardown(void **state)
{
    atomic_store(&heap_locked, false);
    atomic_store(&heap_inside, NULL);
    rcl_mutex_destroy(&heap_lock);
    alarm(0);
    return ld_teardown(state);
}

/* An allocation through the program's allocator, one the compiler keeps. */
static void heap_alloc(void)
{
    free(test_written(malloc(64)));
}

static void takes_lock_a(void) { lock(&lock_a); unlock(&lock_a); }
static void releases_lock_c(void) { unlock(&lock_c); }

TEST_WITH(a_new_lock_order_into_the_programs_malloc_is_learned_without_calling_it, heap_setup,
          heap_teardown)
{
    need_own_malloc();
    atomic_store(&heap_locked, true);
    lock(&lock_a);
    heap_alloc();                              /* lock_a -> heap, new */
    unlock(&lock_a);
    atomic_store(&heap_locked, false);
    assert_int_equal(atomic_load(&reentered), 0);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

TEST_WITH(a_cycle_closed_inside_the_programs_malloc_is_reported_without_calling_it,
          heap_setup, heap_teardown)
{
    need_own_malloc();
    atomic_store(&heap_locked, true);
    lock(&lock_a);
    heap_alloc();                              /* lock_a -> heap */
    unlock(&lock_a);
    atomic_store(&heap_inside, takes_lock_a);
    heap_alloc();                              /* heap -> lock_a: the cycle */
    atomic_store(&heap_locked, false);
    assert_int_equal(atomic_load(&reentered), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 heap \u2192 lock_a");
}

TEST_WITH(a_release_not_held_inside_the_programs_malloc_is_reported_without_calling_it,
          heap_setup, heap_teardown)
{
    need_own_malloc();
    atomic_store(&heap_inside, releases_lock_c);
    atomic_store(&heap_locked, true);
    heap_alloc();
    atomic_store(&heap_locked, false);
    assert_int_equal(atomic_load(&reentered), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("released lock_c, which it does not hold");
}

/* A report function may end its thread (pthread_exit()) inside the report:
 * the buffer the report was composed in goes back to the checker all the
 * same, or each such report would keep one for the graph's life. The
 * thread then exits holding lock_c, and that is reported too. */
static void *closes_a_cycle_and_ends(void *arg)
{
    (void)arg;
    test_reports_end_this_thread();
    lock(&lock_c);
    lock(&lock_a);                             /* lock_c -> lock_a: the report ends here */
    unlock(&lock_a);
    unlock(&lock_c);
    return NULL;
}

TEST_WITH(a_report_function_that_ends_its_thread_gives_the_report_buffer_back, heap_setup,
          heap_teardown)
{
    lock(&lock_a); lock(&lock_c); unlock(&lock_c); unlock(&lock_a);
    rcl_set_report_fn(test_report_catch_then_end, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, closes_a_cycle_and_ends, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_reports_have("lock_a \u2192 lock_c \u2192 lock_a");
    assert_reports_have("exited holding");

    unsigned mapped, busy;
    rcl__lockdep_report_buffers(&mapped, &busy);
    assert_true(mapped > 0);
    assert_int_equal(busy, 0);
}

/* A thread whose exit is not waited for may be making its report there
 * while another thread shuts the library down, which forgets the graph
 * and its report buffers. The buffer that report holds stays the
 * checker's until it is given back, into the graph that follows, which
 * hands it out again as any other: had the reset unmapped it, the give
 * back would have put memory no longer mapped on the free list. */
static sem_t exit_report_reached, exit_report_go;

static void report_waits_at_exit(const char *report, void *arg)
{
    test_report_catch(report, arg);
    if (strstr(report, "exited holding")) {
        sem_post(&exit_report_reached);
        sem_wait(&exit_report_go);
    }
}

static void *takes_lock_c_and_exits(void *arg)
{
    (void)arg;
    lock(&lock_c);
    return NULL;
}

TEST_WITH(a_report_buffer_held_across_a_shutdown_is_given_back_to_the_next_graph,
          heap_setup, heap_teardown)
{
    pthread_t th;
    unsigned mapped, busy;

    assert_int_equal(sem_init(&exit_report_reached, 0, 0), 0);
    assert_int_equal(sem_init(&exit_report_go, 0, 0), 0);
    rcl_set_report_fn(report_waits_at_exit, NULL);
    assert_int_equal(pthread_create(&th, NULL, takes_lock_c_and_exits, NULL), 0);
    sem_wait(&exit_report_reached);
    rcl_shutdown();
    /* ld_init_mode() less its rcl_set_report_fn(), which would wait for
     * the report held here. */
    struct rcl_config cfg = test_config(64 * MiB);
    cfg.lockdep = RCL_LOCKDEP_ON;
    cfg.background = 0;
    test_reports_reset();
    assert_int_equal(rcl_init(&cfg), 0);
    sem_post(&exit_report_go);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_set_report_fn(test_report_catch, NULL);
    rcl__lockdep_report_buffers(&mapped, &busy);
    assert_int_equal(busy, 0);

    lock(&lock_a); lock(&lock_c); unlock(&lock_c); unlock(&lock_a);
    lock(&lock_c); lock(&lock_a); unlock(&lock_a); unlock(&lock_c);
    assert_reports_have("lock_a \u2192 lock_c \u2192 lock_a");
    rcl__lockdep_report_buffers(&mapped, &busy);
    assert_int_equal(busy, 0);
    sem_destroy(&exit_report_go);
    sem_destroy(&exit_report_reached);
}

/* A fork's child has one thread, the forking one: the buffer another
 * thread of the parent held for the report it was making is nobody's
 * there, and goes back to the child's pool, which its shutdown unmaps. */
static int child_pool_clean(void)
{
    unsigned mapped, busy;

    rcl__lockdep_report_buffers(&mapped, &busy);
    if (busy != 0)
        return 1;
    rcl_shutdown();
    rcl__lockdep_report_buffers(&mapped, &busy);
    return mapped == 0 && busy == 0 ? 0 : 2;
}

TEST_WITH(a_report_buffer_another_thread_held_at_a_fork_is_free_in_the_child, heap_setup,
          heap_teardown)
{
    pthread_t th;
    int status;

    assert_int_equal(sem_init(&exit_report_reached, 0, 0), 0);
    assert_int_equal(sem_init(&exit_report_go, 0, 0), 0);
    rcl_set_report_fn(report_waits_at_exit, NULL);
    assert_int_equal(pthread_create(&th, NULL, takes_lock_c_and_exits, NULL), 0);
    sem_wait(&exit_report_reached);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_pool_clean());
    assert_int_equal(waitpid(pid, &status, 0), pid);
    sem_post(&exit_report_go);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_reports_have("exited holding 1 annotated lock,");
    sem_destroy(&exit_report_go);
    sem_destroy(&exit_report_reached);
}

TEST_MAIN();
