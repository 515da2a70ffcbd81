/* SPDX-License-Identifier: MIT */
/*
 * test_helpers.c - the test dialect itself (tests/helpers/): tests run in
 * the order of the source, and the standard teardown's clean-state check
 * catches what a test leaves behind.
 */
#include "helpers.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

static int ran;

TEST_BARE(tests_run_in_the_order_of_the_source)
{
    assert_int_equal(ran++, 0);
}

TEST_BARE(the_next_test_runs_second)
{
    assert_int_equal(ran++, 1);
}

/* test_check_clean() prints what it found; these tests expect it to. */
TEST_BARE(memory_left_charged_is_caught)
{
    assert_int_equal(test_init(8 * MiB), 0);
    void *p = rcl_alloc(1000, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(test_check_clean(), -1);
    rcl_free(p);
    assert_int_equal(test_check_clean(), 0);
    rcl_shutdown();
}

TEST_BARE(a_test_may_say_why_it_leaves_memory_charged)
{
    assert_int_equal(test_init(8 * MiB), 0);
    void *p = rcl_alloc(1000, RCL_DEFAULT);
    test_leaves_usage("this test checks the opt-out");
    assert_int_equal(test_check_clean(), 0);
    rcl_free(p);
    rcl_shutdown();
}

TEST_BARE(a_report_never_looked_at_is_caught)
{
    assert_int_equal(test_init(8 * MiB), 0);
    rcl_domain_destroy(NULL);                   /* reported */
    assert_int_equal(test_reports_unread(), 1);
    assert_int_equal(test_check_clean(), -1);
    assert_int_equal(test_report_count(), 1);   /* looked at */
    assert_int_equal(test_check_clean(), 0);
    rcl_domain_destroy(NULL);
    assert_int_equal(test_reports_seen_matching("rcl_domain_destroy"), 1);
    assert_int_equal(test_check_clean(), 0);
    rcl_domain_destroy(NULL);
    assert_int_equal(test_reports_take(), 3);
    assert_int_equal(test_report_count(), 0);
    rcl_shutdown();
}

/* How long something took depends on the machine's load, not on the test. */
TEST_BARE(a_timing_report_is_never_unread)
{
    assert_int_equal(test_init(8 * MiB), 0);
    test_report_catch("slow direct reclaim: 9.7 ms", NULL);
    test_report_catch("allocations throttled: 1 waits", NULL);
    assert_int_equal(test_reports_unread(), 0);
    assert_int_equal(test_check_clean(), 0);
    test_reports_reset();
    rcl_shutdown();
}

/* The standard fixture: the library is up, with the test budget. */
TEST(the_standard_fixture_starts_the_library_with_64_mib)
{
    assert_int_equal(rcl_limit(), 64 * MiB);
    assert_int_equal(rcl_usage(), 0);
}

TEST(assert_fails_with_checks_null_and_errno)
{
    assert_fails_with(rcl_alloc(0, RCL_DEFAULT), EINVAL);
}

TEST(the_shared_cache_gives_back_what_it_holds)
{
    struct test_cache *c = test_cache_new("helpers", 64, 4096, NULL);
    test_cache_fill(c, 64);
    assert_int_equal(test_cache_len(c), 64);
    assert_true(rcl_reclaim(16 * 4096, RCL_DEFAULT) > 0);
    assert_true(test_cache_len(c) < 64);
    assert_true(atomic_load(&c->calls) > 0);
    test_cache_free(c);
}

TEST(the_counting_shrinker_counts_scans)
{
    struct test_counter *s = test_counter_new("helpers", 1000, NULL);
    assert_int_equal(test_counter_scans(s), 0);
    rcl_reclaim(64 * KiB, RCL_DEFAULT);
    assert_true(test_counter_scans(s) > 0);
    test_counter_free(s);
}

/* A forked child dies of its crash, whichever signal it is: caught by
 * cmocka, the child went on through its copy of this file's run, and its
 * exit said nothing of the crash. */
TEST_BARE(a_forked_child_dies_of_its_crash)
{
    static const int crashes[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT };

    for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++) {
        int status;

        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            const struct rlimit no_core = { 0, 0 };

            test_forked_child_dies_of_its_crashes();
            setrlimit(RLIMIT_CORE, &no_core);
            raise(crashes[i]);
            _exit(0);
        }
        assert_true(pid > 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), crashes[i]);
    }
}

TEST_MAIN();
