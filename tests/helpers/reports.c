/* SPDX-License-Identifier: MIT */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "reports.h"
#include "test.h"

/* Recursive: a test may hold the lock while it reads the texts. */
struct test_reports test_reports = { .lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP };

#define UNREAD_KEPT (sizeof(test_reports.unread_text) / sizeof(test_reports.unread_text[0]))

static int is_timing(const char *report)
{
    static const char *const timing[] = { "slow direct reclaim", "allocation stall",
                                          "allocations throttled", "ms (bound" };
    for (size_t i = 0; i < sizeof(timing) / sizeof(timing[0]); i++)
        if (strstr(report, timing[i]))
            return 1;
    return 0;
}

void test_report_catch(const char *report, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&test_reports.lock);
    test_reports.count++;
    if (!is_timing(report)) {
        unsigned i = test_reports.unread++;
        if (i < UNREAD_KEPT)
            snprintf(test_reports.unread_text[i], sizeof(test_reports.unread_text[i]), "%s", report);
    }
    snprintf(test_reports.last, sizeof(test_reports.last), "%s", report);
    size_t len = strlen(test_reports.all);
    if (len < sizeof(test_reports.all) - 1)
        snprintf(test_reports.all + len, sizeof(test_reports.all) - len, "%s\n", report);
    pthread_mutex_unlock(&test_reports.lock);
}

static __thread bool end_asked;

void test_reports_end_this_thread(void) { end_asked = true; }

void test_report_catch_then_end(const char *report, void *arg)
{
    test_report_catch(report, arg);
    if (end_asked) {
        end_asked = false;
        pthread_exit(NULL);
    }
}

unsigned test_report_count(void)
{
    pthread_mutex_lock(&test_reports.lock);
    unsigned n = test_reports.count;
    test_reports.unread = 0;
    pthread_mutex_unlock(&test_reports.lock);
    return n;
}

const char *test_report_last(void)
{
    (void)test_report_count();
    return test_reports.last;
}

const char *test_reports_all(void)
{
    (void)test_report_count();
    return test_reports.all;
}

unsigned test_reports_take(void)
{
    pthread_mutex_lock(&test_reports.lock);
    unsigned n = test_reports.count;
    test_reports.count = test_reports.unread = 0;
    test_reports.last[0] = test_reports.all[0] = '\0';
    pthread_mutex_unlock(&test_reports.lock);
    return n;
}

void test_reports_reset(void)
{
    (void)test_reports_take();
}

unsigned test_reports_seen_matching(const char *text)
{
    pthread_mutex_lock(&test_reports.lock);
    unsigned kept = test_reports.unread < UNREAD_KEPT ? test_reports.unread : (unsigned)UNREAD_KEPT;
    unsigned out = 0, seen = 0;
    for (unsigned i = 0; i < kept; i++) {
        if (strstr(test_reports.unread_text[i], text)) {
            seen++;
            continue;
        }
        if (out != i)
            memcpy(test_reports.unread_text[out], test_reports.unread_text[i],
                   sizeof(test_reports.unread_text[i]));
        out++;
    }
    test_reports.unread -= seen;
    pthread_mutex_unlock(&test_reports.lock);
    return seen;
}

unsigned test_reports_unread(void)
{
    pthread_mutex_lock(&test_reports.lock);
    unsigned n = test_reports.unread;
    pthread_mutex_unlock(&test_reports.lock);
    return n;
}

int test_reports_contain(const char *text)
{
    pthread_mutex_lock(&test_reports.lock);
    int found = strstr(test_reports_all(), text) != NULL;
    pthread_mutex_unlock(&test_reports.lock);
    return found;
}

void test_assert_report(int any, const char *text, const char *file, int line)
{
    pthread_mutex_lock(&test_reports.lock);
    const char *caught = any ? test_reports_all() : test_report_last();
    int found = strstr(caught, text) != NULL;
    if (!found)
        print_error("%s report contains \"%s\"; caught:\n%s\n",
                    any ? "no" : "the last", text, caught[0] ? caught : "(no report)");
    pthread_mutex_unlock(&test_reports.lock);
    if (!found)
        _fail(file, line);
}
