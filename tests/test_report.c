/* SPDX-License-Identifier: MIT */
/*
 * test_report.c - the report function as a daemon changes it: once
 * rcl_set_report_fn() returns, the function it replaced is not running
 * and is not called again, so the program may free what its argument
 * points at; a setter never waits for its own report, for a call of the
 * function it sets, nor for a thread that ended in one or that a fork
 * left behind. And the flags' names the reports print: whole for every
 * combination, or visibly cut.
 */
#include "helpers.h"
#include "internal.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
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

/* The setter's tid once it is about to set; then 1 once the call returned. */
struct set_call {
    atomic_int tid, returned;
};

static void *setter(void *arg)
{
    struct set_call *c = arg;
    atomic_store(&c->tid, (int)gettid());
    rcl_set_report_fn(test_report_catch, NULL);
    atomic_store(&c->returned, 1);
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
    test_skip_unless_syscalls_read();
    struct gate g = { 0 };
    struct set_call set = { 0 };
    pthread_t r, s;

    rcl_set_report_fn(held_report, &g);
    assert_int_equal(pthread_create(&r, NULL, reporter, NULL), 0);
    wait_for(&g.entered);
    assert_int_equal(pthread_create(&s, NULL, setter, &set), 0);
    /* The setter in its call's wait for the old function (the one
     * condition variable wait with no deadline on its way: a lock's wait,
     * the sanitizer's or the loader's, is another kind of sleep), or back
     * from the call: either way its answer is in, however slow the machine. */
    bool seen = test_thread_seen_in_untimed_wait(&set.tid, &set.returned);
    int returned_before_release = atomic_load(&set.returned);
    atomic_store(&g.release, 1);
    pthread_join(s, NULL);
    assert_int_equal(atomic_load(&g.left), 1);
    pthread_join(r, NULL);
    assert_true(seen);
    assert_int_equal(returned_before_release, 0);
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

/* Holds a report "first" and then one of text, as the library does while
 * it starts or stops, and delivers both. */
static void deliver_held_first_and(const char *text)
{
    struct rcl__held_reports held;

    test_reports_reset();
    rcl__report_hold();
    rcl__report("first");
    rcl__report("%s", text);
    rcl__report_unhold(&held);
    rcl__report_deliver(&held);
    assert_int_equal(test_report_count(), 2);
}

/* The reports made while the library starts or stops are held until it is
 * done, in room they share (a refused environment's is up to 1.6 KiB). One
 * longer than the room left ends saying it was cut there, as one longer
 * than its buffer does, and the first held is delivered whole. */
TEST(a_held_report_longer_than_the_room_left_says_it_was_cut)
{
    static char longer[RCL__HELD_BYTES];

    memset(longer, 'x', sizeof(longer) - 1);
    deliver_held_first_and(longer);
    assert_reports_have("first");
    assert_last_report_has("xxx\n[... the rest of this report did not fit and was cut]\n");
}

/* A held report exactly as long as the room left has no room for its end
 * and is cut as a longer one is, not stored a byte past the room. */
TEST(a_held_report_as_long_as_the_room_left_says_it_was_cut)
{
    static char exact[RCL__HELD_BYTES];

    memset(exact, 'x', RCL__HELD_BYTES - sizeof("first"));
    deliver_held_first_and(exact);
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

/* ------------------------------------------------------------------------ */
/* The flags' names                                                          */
/* ------------------------------------------------------------------------ */

static rcl_gfp_t gfp_of_name(const char *name)
{
    static const struct { const char *name; rcl_gfp_t gfp; } known[] = {
        { "DEFAULT", RCL_DEFAULT }, { "NOFS", RCL_NOFS }, { "NOIO", RCL_NOIO },
        { "ATOMIC", RCL_ATOMIC }, { "IO", RCL__IO }, { "FS", RCL__FS },
        { "DIRECT_RECLAIM", RCL__DIRECT_RECLAIM }, { "KSWAPD_RECLAIM", RCL__KSWAPD_RECLAIM },
        { "HIGH", RCL__HIGH }, { "MEMALLOC", RCL__MEMALLOC }, { "NOMEMALLOC", RCL__NOMEMALLOC },
        { "NOFAIL", RCL__NOFAIL }, { "NORETRY", RCL__NORETRY }, { "NOWARN", RCL__NOWARN },
        { "ZERO", RCL__ZERO }, { "0", 0 },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!strcmp(name, known[i].name))
            return known[i].gfp;
    fail_msg("\"%s\" names no flag", name);
    return 0;
}

/* The bits a name stands for, read back from its parts. */
static rcl_gfp_t gfp_of_text(const char *text)
{
    char copy[RCL__GFP_STR_MAX], *save = NULL;
    rcl_gfp_t gfp = 0;

    assert_true(strlen(text) < sizeof(copy));
    strcpy(copy, text);
    for (char *part = strtok_r(copy, "|", &save); part; part = strtok_r(NULL, "|", &save))
        gfp |= gfp_of_name(part);
    return gfp;
}

/* Contradictory flags (MEMALLOC with NOMEMALLOC, NOFAIL with NORETRY) make
 * the longest names; every combination's fits RCL__GFP_STR_MAX bytes, and
 * names exactly the bits it was given. Each buffer is its own allocation,
 * so that AddressSanitizer sees a write past its end. */
TEST_BARE(every_combination_of_flags_is_named_whole)
{
    for (rcl_gfp_t gfp = 0; gfp <= RCL__GFP_ALL; gfp++) {
        char *buf = malloc(RCL__GFP_STR_MAX);
        assert_non_null(buf);
        const char *name = rcl__gfp_str(gfp, buf, RCL__GFP_STR_MAX);
        assert_ptr_equal(name, buf);
        assert_null(strstr(name, "..."));
        assert_int_equal(gfp_of_text(name), gfp);
        free(buf);
    }
}

/* A buffer too short for a name gets the name's start and "..." where it
 * was cut (only as much of the mark as fits, if not even that does),
 * never fewer flags passed off as all of them. */
TEST_BARE(a_flags_name_longer_than_its_buffer_ends_in_a_visible_cut)
{
    for (rcl_gfp_t gfp = 0; gfp <= RCL__GFP_ALL; gfp++) {
        char whole[RCL__GFP_STR_MAX];
        size_t n = strlen(rcl__gfp_str(gfp, whole, sizeof(whole)));

        for (size_t len = 1; len <= n; len++) {
            char *buf = malloc(len);
            assert_non_null(buf);
            const char *name = rcl__gfp_str(gfp, buf, len);
            assert_int_equal(strlen(name), len - 1);
            if (len > 4) {
                assert_memory_equal(name, whole, len - 4);
                assert_string_equal(name + len - 4, "...");
            } else {
                assert_memory_equal(name, "...", len - 1);
            }
            free(buf);
        }
        assert_string_equal(rcl__gfp_str(gfp, NULL, 0), "");
    }
}

TEST_MAIN();
