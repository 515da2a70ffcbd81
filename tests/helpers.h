/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - what every test program shares: cmocka, a library freshly
 * initialised for each test, and a report catcher.
 */
#ifndef RCL_TEST_HELPERS_H
#define RCL_TEST_HELPERS_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "reclaim.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

/* Stress loops are shortened under the sanitizers, which are 5-20x slower. */
static inline int test_scale(int n)
{
    const char *san = getenv("RCL_TEST_SAN");
    if (san && *san)
        return n / 4 > 0 ? n / 4 : 1;
    return n;
}

static inline int test_under_sanitizer(const char *which)
{
    const char *san = getenv("RCL_TEST_SAN");
    return san && strcmp(san, which) == 0;
}

/* The largest allocation above 64 KiB whose charge (the size, the block
 * header and the allocator's per-block overhead) fits in `room`. */
static inline size_t test_fitting(size_t room)
{
    return room - (rcl_alloc_charge(1 * MiB) - 1 * MiB);
}

/* Reports: counted and kept (the last one) instead of going to stderr. */
struct test_reports {
    pthread_mutex_t lock;
    unsigned count;
    char last[4096];
    char all[16384];
};
static struct test_reports test_reports = { .lock = PTHREAD_MUTEX_INITIALIZER };

static inline void test_report_catch(const char *report, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&test_reports.lock);
    test_reports.count++;
    snprintf(test_reports.last, sizeof(test_reports.last), "%s", report);
    size_t len = strlen(test_reports.all);
    if (len < sizeof(test_reports.all) - 1)
        snprintf(test_reports.all + len, sizeof(test_reports.all) - len, "%s\n", report);
    pthread_mutex_unlock(&test_reports.lock);
}

static inline unsigned test_report_count(void)
{
    pthread_mutex_lock(&test_reports.lock);
    unsigned n = test_reports.count;
    pthread_mutex_unlock(&test_reports.lock);
    return n;
}

static inline void test_reports_reset(void)
{
    pthread_mutex_lock(&test_reports.lock);
    test_reports.count = 0;
    test_reports.last[0] = test_reports.all[0] = '\0';
    pthread_mutex_unlock(&test_reports.lock);
}

/* A test configuration: a fixed limit, no background thread and no
 * pressure following unless the test turns them on, so every figure a test
 * asserts comes from what the test itself did. */
static inline struct rcl_config test_config(size_t limit)
{
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    cfg.limit = limit;
    cfg.background = 0;
    cfg.pressure = 0;
    cfg.lockdep = RCL_LOCKDEP_OFF;
    return cfg;
}

static inline int test_init(size_t limit)
{
    struct rcl_config cfg = test_config(limit);
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    return rcl_init(&cfg);
}

/* cmocka setup/teardown: a 64 MiB budget, reports caught. */
static inline int test_setup(void **state)
{
    (void)state;
    return test_init(64 * MiB) == 0 ? 0 : -1;
}

static inline int test_teardown(void **state)
{
    (void)state;
    rcl_shutdown();
    rcl_set_report_fn(NULL, NULL);
    return 0;
}

static inline void test_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

#define RUN_TESTS(...)                                                      \
    int main(void)                                                          \
    {                                                                       \
        const struct CMUnitTest tests[] = { __VA_ARGS__ };                  \
        return cmocka_run_group_tests(tests, NULL, NULL);                   \
    }
#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)

#endif
