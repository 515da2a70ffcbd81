/* SPDX-License-Identifier: MIT */
/*
 * The storage-stack demo (examples/storage-stack, `make demo`): each act,
 * run short, ends as the README says it does. The demo is run as a
 * program, the way a user runs it. At the end, the quickstart example
 * the README points to, run the same way.
 */
#include "helpers.h"

#include <limits.h>
#include <sys/resource.h>
#include <sys/wait.h>

static char demo_path[PATH_MAX];
static char out[65536];

/* build/tests/test_demo -> build/examples/storage-stack */
static int find_demo(void **state)
{
    (void)state;
    test_built(demo_path, sizeof(demo_path), "examples/storage-stack");
    return 0;
}

/* Runs the demo with args; returns its exit status, output in out[]. */
static int demo(const char *args)
{
    char cmd[PATH_MAX + 256];
    snprintf(cmd, sizeof(cmd), "timeout -k 5 150 %s %s 2>&1", demo_path, args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t len = 0, got;
    while ((got = fread(out + len, 1, sizeof(out) - 1 - len, f)) > 0)
        len += got;
    out[len] = '\0';
    /* Drain what did not fit, so the child never blocks on a full pipe. */
    char sink[4096];
    while (fread(sink, 1, sizeof(sink), f) > 0)
        ;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The demo's exit status, with its output shown when it is not `want`. */
static void expect_status(int got, int want)
{
    if (got != want) {
        printf("demo exited %d, not %d; its output:\n%s\n", got, want, out);
        fail();
    }
}

static void expect(const char *needle)
{
    if (!strstr(out, needle)) {
        printf("demo output lacks \"%s\":\n%s\n", needle, out);
        fail();
    }
}

/* Act 1: with the checker on, the 2014 buffer cache is reported as the
 * cycle of the "Overhaul memalloc_no*" thread (dm-devel, June 2020), through
 * I/O (which the kernel's fs_reclaim cannot see). */
TEST_WITH(act1_checker_reports_the_cycle, find_demo, NULL)
{
    expect_status(demo("--act 1 --short"), 0);
    expect("fs_journal_lock \u2192 reclaim(IO) \u2192 loop_work \u2192 fs_journal_lock");
    expect("shrinker \"buffer-cache\"");
    expect("What would deadlock, and why");
}

/* Act 2: the same code with the checker off really deadlocks; the watchdog
 * reports each thread's state and the program still exits cleanly. */
TEST_WITH(act2_deadlocks_and_watchdog_unwinds, find_demo, NULL)
{
    expect_status(demo("--act 2 --short"), 0);
    expect("WATCHDOG: no progress");
    expect("wants the journal lock");
    expect("JOURNAL in reclaim (NOFS): buffer-cache shrinker waits for loop I/O");
    expect("every act ended as expected");
}

/* An act whose time runs out inside the deadlock, before the watchdog
 * would call it one, still ends: its threads, stuck, do not stop when
 * asked, so their waits give up as at a hang. The demo left them stuck
 * and exited 2, its status for a bad option, "without cleanup". */
TEST_WITH(an_act_that_runs_out_of_time_in_the_deadlock_still_ends, find_demo, NULL)
{
    expect_status(demo("--act 2 --seconds 2 --hang-ms 600000"), 1);
    expect("No deadlock in ");
    expect("an act did not end as expected");
}

/* --short sets what it sets only where the command line did not: a
 * --hang-ms given keeps the watchdog's limit, as a --seconds given keeps
 * act 2's (the seconds act 2 ran are read from its own report; 30 for
 * --short). */
TEST_WITH(short_leaves_the_options_given_as_they_are, find_demo, NULL)
{
    expect_status(demo("--act 2 --short --hang-ms 400"), 0);
    expect("WATCHDOG: no progress for 400 ms");

    expect_status(demo("--act 2 --short --seconds 0.5 --hang-ms 600000"), 1);
    const char *ran = strstr(out, "No deadlock in ");
    double secs = 0;
    assert_non_null(ran);
    assert_int_equal(sscanf(ran, "No deadlock in %lf s", &secs), 1);
    assert_true(secs < 29);
}

/* Act 3: the fixed stack runs to the end, quietly, and prints statistics.
 * The watchdog is given 10 s: a sanitizer build on a loaded machine can
 * take seconds over one reclaim pass, and a real hang here still shows. */
TEST_WITH(act3_fixed_stack_completes_quietly, find_demo, NULL)
{
    expect_status(demo("--act 3 --seconds 3 --hang-ms 10000"), 0);
    expect("Lock checker reports: 0.");
    expect("buffer-cache");
    expect("Ran to the end under constant reclaim");
}

TEST_WITH(act3_prints_json_statistics, find_demo, NULL)
{
    expect_status(demo("--act 3 --seconds 1 --hang-ms 10000 --json"), 0);
    expect("{");
    expect("\"shrinkers\"");
}

/* With a budget one writer cannot fill within the act (it writes a few
 * hundred MiB a second at most), nothing is reclaimed, act 1's checker has
 * nothing to report and the act fails; the act after it still starts the
 * library and runs. */
TEST_WITH(an_act_after_a_failed_act_still_runs, find_demo, NULL)
{
    expect_status(demo("--act 1 --act 3 --writers 1 --seconds 0.3 --hang-ms 10000 --budget 4G"), 1);
    expect("The checker did not report within");
    expect("Ran to the end under constant reclaim");
    if (strstr(out, "rcl_init")) {
        printf("demo output names rcl_init:\n%s\n", out);
        fail();
    }
}

/* strtoull() reads "-1" as 2^64 - 1: a budget no act could fill, and a
 * demo of reclaim in which nothing is reclaimed. */
TEST_WITH(a_negative_budget_is_a_usage_error, find_demo, NULL)
{
    expect_status(demo("--budget -1 --act 3 --seconds 0.3 --hang-ms 10000"), 2);
    expect("rejected --budget -1");
}

/* 17179869185G is 2^64 + 2^30 bytes, which the shift wrapped to 1G. */
TEST_WITH(a_budget_beyond_the_address_space_is_a_usage_error, find_demo, NULL)
{
    expect_status(demo("--budget 17179869185G --act 3 --seconds 0.3 --hang-ms 10000"), 2);
    expect("rejected --budget 17179869185G");
}

TEST_WITH(bad_option_is_a_usage_error, find_demo, NULL)
{
    expect_status(demo("--act 7"), 2);
    expect("rejected --act 7");
    expect_status(demo("--budget 12"), 2);
}

/* The watchdog looks every 50 ms, and below 200 ms an ordinary pause reads
 * as a hang: such a --hang-ms is refused, not raised to 200 unsaid. */
TEST_WITH(a_hang_ms_below_200_is_a_usage_error, find_demo, NULL)
{
    expect_status(demo("--hang-ms 100 --act 3 --seconds 0.3"), 2);
    expect("rejected --hang-ms 100: from 200 to 600000 ms");
}

/* The stack runs at most 8 writers: asked for more, the demo says so
 * rather than run 8 and print figures for the number asked. */
TEST_WITH(more_writers_than_the_stack_runs_is_a_usage_error, find_demo, NULL)
{
    expect_status(demo("--writers 9 --act 3 --seconds 1 --hang-ms 10000"), 2);
    expect("rejected --writers 9: from 1 to 8 writer threads");
}

/* ------------------------------------------------------------------------ */
/* examples/quickstart                                                       */
/* ------------------------------------------------------------------------ */

/* Runs quickstart with at most data_kib KiB of data segment (0: no
 * limit) and RECLAIM_STATS=1, which prints the statistics at exit only
 * when the library is still running then; its status, output in out[]. */
static int quickstart(unsigned long data_kib)
{
    char path[PATH_MAX], cmd[PATH_MAX + 128];
    test_built(path, sizeof(path), "examples/quickstart");
    if (data_kib)
        snprintf(cmd, sizeof(cmd), "ulimit -d %lu && RECLAIM_STATS=1 %s 2>&1", data_kib, path);
    else
        snprintf(cmd, sizeof(cmd), "RECLAIM_STATS=1 %s 2>&1", path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t len = fread(out, 1, sizeof(out) - 1, f);
    out[len] = '\0';
    while (fgetc(f) != EOF)
        ;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_WITH(quickstart_fills_its_cache_and_shuts_the_library_down, find_demo, NULL)
{
    expect_status(quickstart(0), 0);
    expect("cached ");
    expect("in a 16384 KiB budget");
    /* rcl_stats_print()'s, and only one: none at exit. */
    const char *first = strstr(out, "libreclaim statistics");
    assert_non_null(first);
    assert_null(strstr(first + 1, "libreclaim statistics"));
}

/* With 4 MiB of data segment the system allocator runs out long before
 * the 16 MiB budget does: the example says where and still shuts the
 * library down (no statistics at exit). It returned 1, silent, with the
 * library running. The sanitizers' shadow memory counts as data: plain
 * build only. */
TEST_WITH(quickstart_out_of_memory_says_so_and_shuts_the_library_down, find_demo, NULL)
{
    const char *san = test_sanitizer();
    if (san) {
        printf("skipped: a sanitizer's runtime cannot start under a 4 MiB data limit\n");
        skip();
    }
    expect_status(quickstart(4096), 1);
    /* Which call runs out first is the backend's: glibc serves the
     * library's start and runs out among the entries; mimalloc reserves
     * its arena at its first use and fails the shrinker's registration. */
    if (!strstr(out, "quickstart: no memory for entry ") &&
        !strstr(out, "quickstart: rcl_shrinker_register: Cannot allocate memory")) {
        printf("the example did not say which allocation failed:\n%s\n", out);
        fail();
    }
    if (strstr(out, "libreclaim statistics")) {
        printf("the library was still running at exit:\n%s\n", out);
        fail();
    }
}

TEST_MAIN();
