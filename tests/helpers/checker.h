/* SPDX-License-Identifier: MIT */
/*
 * checker.h - what the lock checker's tests (test_lockdep*.c) share: the
 * library started with the checker on, and the reports it caught.
 */
#ifndef RCL_TEST_CHECKER_H
#define RCL_TEST_CHECKER_H

#include "helpers.h"

/* Each test runs with the checker on (the standard TEST fixture runs it off). */
static inline int ld_init_mode(int mode, int background, size_t limit)
{
    struct rcl_config cfg = test_config(limit);
    cfg.lockdep = mode;
    cfg.background = background;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    return rcl_init(&cfg);
}

static inline int ld_setup(void **state)
{
    (void)state;
    return ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB) == 0 ? 0 : -1;
}

/* Every test here asserts on the checker's own count of its reports
 * (rcl_lockdep_reports()) or on their text: the checker's reports are seen.
 * Any other report must still be looked at. */
static inline int ld_teardown(void **state)
{
    test_reports_seen_matching("lock checker:");
    return test_teardown(state);
}

static inline void print_reports(void)
{
    pthread_mutex_lock(&test_reports.lock);
    printf("%s", test_reports_all());
    pthread_mutex_unlock(&test_reports.lock);
}

static inline void lock(struct rcl_lock_class *c) { rcl_lock_acquire(c); }
static inline void unlock(struct rcl_lock_class *c) { rcl_lock_release(c); }

#endif
