/* SPDX-License-Identifier: MIT */
/*
 * reports.h - the library's reports, caught instead of going to stderr.
 *
 * Every report a test causes must be looked at: asserted on through
 * test_report_count() or test_reports_take(), or dropped on purpose with
 * test_reports_reset(). The standard teardown fails a test that left one
 * unread (test_check_clean, fixture.h).
 *
 * Except the reports that say how long something took ("slow direct
 * reclaim", "allocation stall", "allocations throttled", the lock checker's
 * "shrinker ... took N ms (bound M ms)"): whether they
 * come depends on how loaded the machine is, not on what the test did, so
 * they never count as unread. The tests that specify them assert on them.
 */
#ifndef RCL_TEST_REPORTS_H
#define RCL_TEST_REPORTS_H

#include <pthread.h>

struct test_reports {
    pthread_mutex_t lock;
    unsigned count;        /* caught since the last reset */
    unsigned unread;       /* of those, how many the test has not looked at */
    char unread_text[16][160];  /* the first of those, cut short */
    char last[4096];
    char all[16384];       /* every report, one a line, until it is full */
};
extern struct test_reports test_reports;

/* The report function the fixtures install (rcl_set_report_fn). */
void test_report_catch(const char *report, void *arg);
/* A report function that catches as test_report_catch() does, then ends
 * its thread with pthread_exit() if the thread asked for that with
 * test_reports_end_this_thread(): as a logging wrapper that ends a worker
 * at an error may. Once: a report made in the thread's exit returns (a
 * second pthread_exit() from a destructor is undefined). */
void test_report_catch_then_end(const char *report, void *arg);
void test_reports_end_this_thread(void);
/* How many reports were caught; the test has now seen them all. */
unsigned test_report_count(void);
/* The same, and forgets them: the next count starts from 0. */
unsigned test_reports_take(void);
/* The last report, and every report one a line (as far as they fit);
 * reading them is looking at them all. */
const char *test_report_last(void);
const char *test_reports_all(void);
/* Forgets every report caught so far, read or not. */
void test_reports_reset(void);
/* Marks as seen the unread reports that contain `text`, for a test that
 * asserted on them another way (the lock checker's reports through
 * rcl_lockdep_reports(), say); returns how many. */
unsigned test_reports_seen_matching(const char *text);
/* Reports caught and not yet counted, taken or reset. */
unsigned test_reports_unread(void);
/* Whether any report caught so far contains `text`; looking is reading. */
int test_reports_contain(const char *text);

/* The assertions on a report's text: the last report, or any report,
 * contains `text`. A failure prints what was caught instead. */
void test_assert_report(int any, const char *text, const char *file, int line);
#define assert_last_report_has(text) test_assert_report(0, (text), __FILE__, __LINE__)
#define assert_reports_have(text)    test_assert_report(1, (text), __FILE__, __LINE__)

#endif
