/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <time.h>

#include "helpers.h"
#include "internal.h"     /* rcl__acct_check */

static const char *leaves_usage_why;

struct rcl_config test_config(size_t limit)
{
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    cfg.limit = limit;
    cfg.background = 0;
    cfg.pressure = 0;
    cfg.lockdep = RCL_LOCKDEP_OFF;
    return cfg;
}

int test_init(size_t limit)
{
    struct rcl_config cfg = test_config(limit);
    leaves_usage_why = NULL;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    return rcl_init(&cfg);
}

int test_setup(void **state)
{
    (void)state;
    return test_init(64 * MiB) == 0 ? 0 : -1;
}

int test_teardown(void **state)
{
    (void)state;
    /* The books are exact only at a quiet point: a background reclaimer
     * the test ran may be between a shrinker's uncharges, which fill its
     * stock, and the flush that folds that stock back into the budget.
     * Stopped now (rcl_shutdown() would stop it next), its pass ends with
     * the flush. */
    rcl__reclaim_stop();
    int clean = test_check_clean();
    /* the opt-outs hold for one test */
    leaves_usage_why = NULL;
    rcl_shutdown();
    rcl_set_report_fn(NULL, NULL);
    return clean;
}

int test_io_flusher_on(void)
{
    int rc = rcl_io_flusher_set(1);
    if (rc == -EPERM)
        test_reports_seen_matching("PR_SET_IO_FLUSHER");
    return rc;
}

void test_leaves_usage(const char *why)
{
    leaves_usage_why = why;
}

static int usage_is_zero(void)
{
    if (leaves_usage_why)
        return 1;
    rcl_usage_sync();
    size_t left = rcl_usage();
    if (left == 0)
        return 1;
    print_error("test_check_clean: the test left %zu bytes charged to the budget "
                "(free what it allocates, or say why with test_leaves_usage())\n", left);
    return 0;
}

static int reports_all_read(void)
{
    pthread_mutex_lock(&test_reports.lock);
    unsigned unread = test_reports.unread;
    if (unread)
        print_error("test_check_clean: %u report(s) the test never looked at "
                    "(assert on test_report_count()/test_reports_take(), or "
                    "test_reports_reset()):\n", unread);
    for (unsigned i = 0; i < unread && i < sizeof(test_reports.unread_text) / sizeof(test_reports.unread_text[0]); i++)
        print_error("  %s\n", test_reports.unread_text[i]);
    pthread_mutex_unlock(&test_reports.lock);
    return unread == 0;
}

/* The library's own books (rcl__acct_check, account.c): what was charged
 * is what was handed out plus every thread's stock, and no stock is below
 * the blocks cached against it. Exact in RCL_DEBUG builds (the sanitizer
 * runs and DEBUG=1), which count what was handed out. */
static int books_balance(void)
{
    char why[256];
    if (rcl__acct_check(why, sizeof(why)) == 0)
        return 1;
    print_error("test_check_clean: the library's accounting is off: %s\n", why);
    return 0;
}

int test_check_clean(void)
{
    int ok = usage_is_zero();
    ok &= reports_all_read();
    ok &= books_balance();
    return ok ? 0 : -1;
}

pid_t test_thread_named(const char *name, int *count)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    size_t len = strlen(name);
    pid_t found = 0;
    int n = 0;

    while (d && (e = readdir(d)) != NULL) {
        char path[300], comm[64] = "";
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof(comm), f) && !strncmp(comm, name, len) && comm[len] == '\n') {
            found = (pid_t)atoi(e->d_name);
            n++;
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    if (count)
        *count = n;
    return found;
}

bool test_no_thread_named(const char *name)
{
    for (int ms = 0; ms < 5000; ms++) {
        if (!test_thread_named(name, NULL))
            return true;
        test_sleep_ms(1);
    }
    return false;
}

bool test_thread_asleep(pid_t tid)
{
    char path[64], stat[512] = "";
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = 0;
    /* The name, in parentheses, may hold anything: the state follows the last. */
    const char *end = strrchr(stat, ')');
    return end && end[1] == ' ' && end[2] == 'S';
}

const char *test_built(char *buf, size_t len, const char *rel)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

    assert_true(n > 0);
    self[n] = '\0';
    *strrchr(self, '/') = '\0';                 /* BUILD/tests */
    *strrchr(self, '/') = '\0';                 /* BUILD */
    int w = snprintf(buf, len, "%s/%s", self, rel);
    assert_true(w > 0 && (size_t)w < len);
    if (access(buf, X_OK) != 0)
        fail_msg("%s is not built: make builds it with this test, alone or with the "
                 "others (make tests)", buf);
    return buf;
}
