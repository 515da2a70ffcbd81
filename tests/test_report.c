/* SPDX-License-Identifier: MIT */
/*
 * test_report.c - the report function as a daemon changes it: once
 * rcl_set_report_fn() returns, the function it replaced is not running
 * and is not called again, so the program may free what its argument
 * points at; a setter never waits for its own report, for a call of the
 * function it sets, nor for a thread that ended in one or that a fork
 * left behind.
 */
#include "helpers.h"
#include "internal.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

/* ThreadSanitizer stops a child of a multi-threaded process unless told. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }

/* A report function that holds the report until the test lets it go. */
struct gate {
    atomic_int entered, release, left;
};

static void held_report(const char *report, void *arg)
{
    struct gate *g = arg;
    (void)report;
    atomic_store(&g->entered, 1);
    while (!atomic_load(&g->release))
        test_sleep_ms(1);
    atomic_store(&g->left, 1);
}

/* One report, made with no lock of the library's held. */
static void make_a_report(void)
{
    struct rcl_config cfg;

    rcl_config_default(&cfg);
    setenv("RECLAIM_MIN_PCT", "bogus", 1);
    assert_int_equal(rcl_config_from_env(&cfg), -EINVAL);
    unsetenv("RECLAIM_MIN_PCT");
}

static void *reporter(void *arg)
{
    (void)arg;
    make_a_report();
    return NULL;
}

static void *setter(void *arg)
{
    rcl_set_report_fn(test_report_catch, NULL);
    atomic_store((atomic_int *)arg, 1);
    return NULL;
}

static void wait_for(atomic_int *flag)
{
    while (!atomic_load(flag))
        test_sleep_ms(1);
}

/* The old function's call under way on another thread has returned by
 * the time the setter does. */
TEST(the_setter_returns_once_the_old_function_has_returned)
{
    struct gate g = { 0 };
    atomic_int set = 0;
    pthread_t r, s;

    rcl_set_report_fn(held_report, &g);
    assert_int_equal(pthread_create(&r, NULL, reporter, NULL), 0);
    wait_for(&g.entered);
    assert_int_equal(pthread_create(&s, NULL, setter, &set), 0);
    test_sleep_ms(100);
    assert_int_equal(atomic_load(&set), 0);
    atomic_store(&g.release, 1);
    pthread_join(s, NULL);
    assert_int_equal(atomic_load(&g.left), 1);
    pthread_join(r, NULL);
    make_a_report();
    assert_int_equal(test_report_count(), 1);
}

static void *setter_of_the_held_report(void *arg)
{
    struct gate *g = arg;
    rcl_set_report_fn(held_report, g);
    return NULL;
}

/* A call of the function being set, with the same argument, is not one
 * the setter replaces: it does not wait for it. */
TEST(setting_the_function_under_way_again_does_not_wait_for_it)
{
    struct gate g = { 0 };
    pthread_t r, s;

    rcl_set_report_fn(held_report, &g);
    assert_int_equal(pthread_create(&r, NULL, reporter, NULL), 0);
    wait_for(&g.entered);
    assert_int_equal(pthread_create(&s, NULL, setter_of_the_held_report, &g), 0);
    pthread_join(s, NULL);
    assert_int_equal(atomic_load(&g.left), 0);
    atomic_store(&g.release, 1);
    pthread_join(r, NULL);
    rcl_set_report_fn(test_report_catch, NULL);
}

static void setting_report(const char *report, void *arg)
{
    (void)arg;
    rcl_set_report_fn(test_report_catch, NULL);
    test_report_catch(report, NULL);
}

/* Called from the report function it replaces, the setter returns: the
 * call it would wait for is its own caller. */
TEST(a_report_function_that_replaces_itself_returns)
{
    rcl_set_report_fn(setting_report, NULL);
    make_a_report();
    make_a_report();
    assert_int_equal(test_report_count(), 2);
}

static void *reporter_that_ends(void *arg)
{
    (void)arg;
    test_reports_end_this_thread();
    make_a_report();
    return (void *)1;
}

/* A report function that ended its thread left the report: a setter
 * does not wait for it. */
TEST(the_setter_does_not_wait_for_a_report_whose_thread_ended_in_it)
{
    pthread_t t;
    void *ret;

    rcl_set_report_fn(test_report_catch_then_end, NULL);
    assert_int_equal(pthread_create(&t, NULL, reporter_that_ends, NULL), 0);
    pthread_join(t, &ret);
    assert_null(ret);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(test_report_count(), 1);
}

/* In a child the parent's thread inside the old function does not
 * exist: the child's setter does not wait for it. */
TEST(a_forked_childs_setter_does_not_wait_for_the_parents_reports)
{
    struct gate g = { 0 };
    pthread_t r;
    int status;

    rcl_set_report_fn(held_report, &g);
    assert_int_equal(pthread_create(&r, NULL, reporter, NULL), 0);
    wait_for(&g.entered);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        rcl_set_report_fn(NULL, NULL);
        _exit(0);
    }
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    atomic_store(&g.release, 1);
    pthread_join(r, NULL);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A report longer than the buffer it is formatted in ends saying it was
 * cut there. */
TEST(a_report_longer_than_its_buffer_says_it_was_cut)
{
    static char longer[5000];

    memset(longer, 'x', sizeof(longer) - 1);
    test_reports_reset();
    rcl__report("%s", longer);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("xxx\n[... the rest of this report did not fit and was cut]\n");
}

/* The reports made while the library starts or stops are held until it is
 * done, in room they share (a refused environment's is up to 1.6 KiB). One
 * longer than the room left ends saying it was cut there, as one longer
 * than its buffer does, and the first held is delivered whole. */
TEST(a_held_report_longer_than_the_room_left_says_it_was_cut)
{
    static char longer[RCL__HELD_BYTES];
    struct rcl__held_reports held;

    memset(longer, 'x', sizeof(longer) - 1);
    test_reports_reset();
    rcl__report_hold();
    rcl__report("first");
    rcl__report("%s", longer);
    rcl__report_unhold(&held);
    rcl__report_deliver(&held);
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("first");
    assert_last_report_has("xxx\n[... the rest of this report did not fit and was cut]\n");
}

/* A held report exactly as long as the room left has no room for its end
 * and is cut as a longer one is, not stored a byte past the room. */
TEST(a_held_report_as_long_as_the_room_left_says_it_was_cut)
{
    static char exact[RCL__HELD_BYTES];
    struct rcl__held_reports held;

    memset(exact, 'x', RCL__HELD_BYTES - sizeof("first"));
    test_reports_reset();
    rcl__report_hold();
    rcl__report("first");
    rcl__report("%s", exact);
    rcl__report_unhold(&held);
    rcl__report_deliver(&held);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("xxx\n[... the rest of this report did not fit and was cut]\n");
}

/* Held reports past the room for even a cut one are lost, and their
 * number is reported once the held ones are delivered. */
TEST(held_reports_past_the_room_are_counted_as_lost)
{
    static char longer[RCL__HELD_BYTES];
    struct rcl__held_reports held;

    memset(longer, 'x', sizeof(longer) - 1);
    test_reports_reset();
    rcl__report_hold();
    rcl__report("%s", longer);
    rcl__report("second");
    rcl__report("third");
    rcl__report_unhold(&held);
    rcl__report_deliver(&held);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("2 more reports made while the library started or stopped were lost");
}

TEST_MAIN();
