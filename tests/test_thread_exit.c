/* SPDX-License-Identifier: MIT */
/*
 * test_thread_exit.c - the thread registry at the very end of a thread:
 * a call of the library from another key's destructor in the last round
 * of the thread's destructors, after the library's own has run for the
 * last time, and a process with no thread-specific data key left for the
 * library's. The C library runs PTHREAD_DESTRUCTOR_ITERATIONS rounds; a
 * key set again in the last is dropped, so nothing unregisters a thread
 * registered there, and its TLS, which the next thread reuses, would stay
 * linked in the registry.
 */
#include "helpers.h"
#include "block_cache.h"
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef PTHREAD_DESTRUCTOR_ITERATIONS
#define ROUNDS PTHREAD_DESTRUCTOR_ITERATIONS
#else
#define ROUNDS 4
#endif

extern char **environ;

static pthread_key_t late_key;
static atomic_int late_rounds;
static void *_Atomic late_block;    /* the thread's, freed in its last round */
static atomic_int late_served;      /* the last round's allocation got a block */
static void (*late_call)(void);     /* made in the last round too, if set */

/* Set again for each round but the last: its key is made after the
 * library's (run_late_thread), so its call comes after the library's in
 * each round. */
static void calls_in_the_last_round(void *arg)
{
    if (atomic_fetch_add(&late_rounds, 1) + 1 < ROUNDS) {
        if (pthread_setspecific(late_key, arg) != 0)
            atomic_store(&late_rounds, -1000);
        return;
    }
    rcl_free(atomic_exchange(&late_block, NULL));
    if (late_call)
        late_call();
    void *p = rcl_alloc(100, RCL_DEFAULT);
    atomic_store(&late_served, p != NULL);
    rcl_free(p);
}

/* Registered by an allocation, with a block cached; keep: a block left
 * for the last round to free. */
static void *registers_then_exits(void *keep)
{
    rcl_free(rcl_alloc(100, RCL_DEFAULT));
    if (keep)
        atomic_store(&late_block, rcl_alloc(1000, RCL_DEFAULT));
    if (pthread_setspecific(late_key, (void *)1) != 0)
        atomic_store(&late_rounds, -1000);
    return NULL;
}

static void run_late_thread(bool keep)
{
    pthread_t th;

    /* ThreadSanitizer ends the thread's state of its own in the last
     * round, before this key's destructor runs: the destructor's own
     * atomics crash it there, before any library call. */
    if (test_under_sanitizer("tsan")) {
        print_message("skipped under tsan: a thread's last destructor round runs after the "
                      "sanitizer ended the thread; the plain and asan runs hold this test\n");
        late_call = NULL;
        skip();
    }

    atomic_store(&late_rounds, 0);
    atomic_store(&late_served, -1);
    /* The library's key exists before this one, whichever call makes it,
     * so that its destructor comes first in each round. */
    rcl_free(rcl_alloc(100, RCL_DEFAULT));
    rcl_usage_sync();       /* this thread's cache empty: it counts none */
    assert_int_equal(pthread_key_create(&late_key, calls_in_the_last_round), 0);
    assert_int_equal(pthread_create(&th, NULL, registers_then_exits, keep ? &th : NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    late_call = NULL;
    assert_int_equal(pthread_key_delete(late_key), 0);
    assert_int_equal(atomic_load(&late_rounds), ROUNDS);
}

static size_t thread_cached(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    return st.thread_cached;
}

TEST(a_call_in_a_threads_last_destructor_round_leaves_it_unregistered)
{
    run_late_thread(false);
    assert_int_equal(thread_cached(), 0);
}

TEST(an_allocation_in_a_threads_last_destructor_round_is_declined_as_a_handlers)
{
    run_late_thread(false);
    assert_int_equal(atomic_load(&late_served), 0);
}

TEST(a_free_in_a_threads_last_destructor_round_is_released)
{
    rcl_usage_sync();
    size_t start = rcl_usage();
    run_late_thread(true);
    assert_null(atomic_load(&late_block));
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), start);
    assert_int_equal(thread_cached(), 0);
}

static atomic_int late_nofail_errno;    /* 0: the NOFAIL allocation got a block */
static atomic_int late_charge_err;

static void allocates_nofail(void)
{
    errno = 0;
    void *p = rcl_alloc(100, RCL_DEFAULT | RCL__NOFAIL);
    atomic_store(&late_nofail_errno, p ? 0 : errno);
    rcl_free(p);
}

/* Nothing would give back what it charged: refused as a signal handler's
 * NOFAIL is, the one exception to NOFAIL's promise besides those. */
TEST(a_nofail_allocation_in_a_threads_last_destructor_round_fails_with_enomem)
{
    atomic_store(&late_nofail_errno, -1);
    late_call = allocates_nofail;
    run_late_thread(false);
    assert_int_equal(atomic_load(&late_nofail_errno), ENOMEM);
}

static void charges(void)
{
    int err = rcl_charge(4096, RCL_DEFAULT);
    atomic_store(&late_charge_err, err);
    if (!err)
        rcl_uncharge(4096);
}

TEST(rcl_charge_in_a_threads_last_destructor_round_fails_with_enomem)
{
    atomic_store(&late_charge_err, 1);
    late_call = charges;
    run_late_thread(false);
    assert_int_equal(atomic_load(&late_charge_err), -ENOMEM);
}

static atomic_uint bracket_found, bracket_left;

/* A signal handler's bracket, there: the mark it finds, and leaves. */
static void brackets(void)
{
    atomic_store(&bracket_found, rcl__self.busy);
    unsigned cookie = rcl_signal_enter();
    rcl_signal_leave(cookie);
    atomic_store(&bracket_left, rcl__self.busy);
}

/* The leave puts back the exited thread's mark its enter found: as a
 * handler's mark it would refuse an rcl_shutdown() made after it. */
TEST(a_bracket_in_a_threads_last_destructor_round_leaves_it_exited)
{
    atomic_store(&bracket_found, 0);
    atomic_store(&bracket_left, 0);
    late_call = brackets;
    run_late_thread(false);
    assert_int_equal(atomic_load(&bracket_found), RCL__BUSY_EXITED);
    assert_int_equal(atomic_load(&bracket_left), RCL__BUSY_EXITED);
}

static void *allocates(void *arg)
{
    (void)arg;
    for (int i = 0; i < 16; i++)
        rcl_free(rcl_alloc(100, RCL_DEFAULT));
    return NULL;
}

/* Its TLS is the exited thread's, most often: a registry that still
 * linked that thread would be rewritten under its feet. */
TEST(a_thread_started_after_one_that_called_in_its_last_round_allocates_and_exits)
{
    pthread_t th;

    run_late_thread(false);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&th, NULL, allocates, NULL), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
    }
    assert_int_equal(thread_cached(), 0);
}

/* ------------------------------------------------------------------------ */
/* A key's value the C library has no memory for                            */
/* ------------------------------------------------------------------------ */

/* The program is linked with -Wl,--wrap=pthread_setspecific (see the
 * Makefile): the library's calls come through here, and fail with ENOMEM
 * on a thread that asks it - as glibc's do for a key past its first 32,
 * whose second-level block it could not allocate. Not instrumented at
 * all: clang's ThreadSanitizer runtime, linked into the program, comes
 * through here too, where a thread starts and ends, when the thread has
 * no state of the sanitizer's to record a call in. */
int __real_pthread_setspecific(pthread_key_t key, const void *value);
int __wrap_pthread_setspecific(pthread_key_t key, const void *value);

static __thread bool setspecific_fails;

#if defined(__has_attribute) && __has_attribute(disable_sanitizer_instrumentation)
#define NOT_INSTRUMENTED __attribute__((disable_sanitizer_instrumentation))
#else
#define NOT_INSTRUMENTED __attribute__((no_sanitize_thread, no_sanitize_address))
#endif

NOT_INSTRUMENTED int __wrap_pthread_setspecific(pthread_key_t key, const void *value)
{
    if (setspecific_fails)
        return ENOMEM;
    return __real_pthread_setspecific(key, value);
}

struct unarranged {
    void *p;
    int err;
    bool lists;     /* the thread's block-cache lists were mapped */
};

static void *allocates_with_no_exit_key(void *arg)
{
    struct unarranged *u = arg;

    setspecific_fails = true;
    errno = 0;
    u->p = rcl_alloc(100, RCL_DEFAULT);
    u->err = errno;
    u->lists = !rcl__bcache_off(&rcl__self);
    setspecific_fails = false;
    return NULL;
}

/* A thread whose exit the library cannot arrange - the value of its exit
 * key not set - is not registered, and its allocation fails with ENOMEM,
 * as one past its exit does; nor does it map the lists of a block cache,
 * which no exit would give back. */
TEST(a_thread_whose_exit_key_cannot_be_set_maps_no_cache_lists)
{
    struct unarranged u = { .p = &u, .err = 0, .lists = true };
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, allocates_with_no_exit_key, &u), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_null(u.p);
    assert_int_equal(u.err, ENOMEM);
    assert_false(u.lists);
    assert_int_equal(thread_cached(), 0);
}

/* ------------------------------------------------------------------------ */
/* No key left: a process of its own (this program, run again), whose     */
/* library has never started, and whose exhausted keys stay there          */
/* ------------------------------------------------------------------------ */

#define NO_KEY_CHILD "--no-key-left"

static atomic_int child_reports;

static void child_report(const char *report, void *arg)
{
    (void)arg;
    if (strstr(report, "no thread-specific data key left"))
        atomic_fetch_add(&child_reports, 1);
    else
        fprintf(stderr, "unexpected report: %s\n", report);
}

static int child_start(void)
{
    struct rcl_config cfg;

    rcl_config_default(&cfg);
    cfg.limit = 64 * MiB;
    cfg.pressure = 0;
    return rcl_init(&cfg);
}

static int no_key_left_child(void)
{
    static pthread_key_t keys[PTHREAD_KEYS_MAX];
    unsigned n = 0;
    pthread_t th;

    rcl_set_report_fn(child_report, NULL);
    while (n < PTHREAD_KEYS_MAX && pthread_key_create(&keys[n], NULL) == 0)
        n++;
    int err = child_start();
    if (err != -EAGAIN || atomic_load(&child_reports) != 1) {
        fprintf(stderr, "rcl_init() with no key left: %d, %d reports; want -EAGAIN, 1\n",
                err, atomic_load(&child_reports));
        return 1;
    }
    /* One key back: the library starts, and its threads unregister. */
    pthread_key_delete(keys[--n]);
    err = child_start();
    if (err) {
        fprintf(stderr, "rcl_init() with a key back: %d\n", err);
        return 1;
    }
    if (pthread_create(&th, NULL, allocates, NULL) || pthread_join(th, NULL))
        return 1;
    if (thread_cached()) {
        fprintf(stderr, "an exited thread still holds %zu bytes cached\n", thread_cached());
        return 1;
    }
    rcl_shutdown();
    return 0;
}

TEST_BARE(rcl_init_fails_with_eagain_and_a_report_when_no_thread_key_is_left)
{
    char *argv[] = { "test_thread_exit", NO_KEY_CHILD, NULL };
    pid_t pid;
    int status;

    assert_int_equal(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ------------------------------------------------------------------------ */
/* A library unloaded while a thread that used it lives                      */
/* ------------------------------------------------------------------------ */

/* BUILD/NAME: this program is BUILD/tests/test_thread_exit. */
static void build_path(const char *name, char *out, size_t len)
{
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    assert_true(n > 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(out, len, "%s/%s", exe, name);
    assert_int_equal(access(out, R_OK), 0);
}

/* A program that loads the shared library with dlopen(), shuts it down
 * and unloads it while a thread that allocated through it lives (a
 * plugin's): the library stays loaded, so that the thread's exit finds
 * the handler the library left in its thread-specific data. (It was
 * unmapped, and the thread's exit jumped into the hole.) */
TEST_BARE(a_thread_that_used_the_library_exits_after_its_dlclose)
{
    char prog[PATH_MAX], lib[PATH_MAX];
    pid_t pid;
    int status;

    build_path("tests/progs/dlclose_thread", prog, sizeof(prog));
    build_path("libreclaim.so", lib, sizeof(lib));
    char *argv[] = { prog, lib, NULL };
    assert_int_equal(posix_spawn(&pid, prog, NULL, NULL, argv, environ), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        print_message("skipped: the backend cannot be loaded with dlopen() (its TLS is "
                      "initial-exec)\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], NO_KEY_CHILD) == 0)
        return no_key_left_child();
    return test_run_all(NULL, NULL);
}
