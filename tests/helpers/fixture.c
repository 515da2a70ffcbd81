/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <limits.h>
#include <sys/syscall.h>
#include <sys/uio.h>
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

int test_threads_named(const char *name, pid_t *tids, int max)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    size_t len = strlen(name);
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
            if (n < max)
                tids[n] = (pid_t)atoi(e->d_name);
            n++;
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

pid_t test_thread_named(const char *name, int *count)
{
    pid_t found = 0;
    int n = test_threads_named(name, &found, 1);

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

/* The /proc syscall file of thread tid of this process, every reader's
 * one way in: NULL where it is refused or absent. */
static FILE *syscall_file(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    return fopen(path, "r");
}

bool test_can_read_syscalls(void)
{
    char line[256];
    FILE *f = syscall_file((pid_t)syscall(SYS_gettid));
    if (!f)
        return false;
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    return got;
}

bool test_thread_in_syscall(pid_t tid, long nr)
{
    char line[64] = "";
    FILE *f = syscall_file(tid);
    if (!f)
        return false;
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    /* "running" for a thread on a CPU: strtol() reads no number there. */
    char *end;
    long now = strtol(line, &end, 10);
    return got && end != line && now == nr && test_thread_asleep(tid);
}

/* glibc's condition variables wait in futex(FUTEX_WAIT_BITSET), with a
 * timeout for pthread_cond_timedwait() and none for pthread_cond_wait();
 * a mutex's lock waits in plain FUTEX_WAIT. The /proc syscall file holds
 * the call's number, then its arguments. 0: not in such a wait; 1: in one
 * with no deadline; 2: in a timed one. */
static int cond_wait_kind(pid_t tid)
{
    struct test_futex_wait w;

    if (!test_thread_in_futex(tid, &w) || w.op != 9 /* FUTEX_WAIT_BITSET */)
        return 0;
    return w.timeout ? 2 : 1;
}

bool test_thread_in_futex(pid_t tid, struct test_futex_wait *w)
{
    char line[256] = "";
    unsigned long long op = 0;
    long nr = -1;
    FILE *f = syscall_file(tid);
    if (!f)
        return false;
    bool got = fgets(line, sizeof(line), f) &&
               sscanf(line, "%ld %llx %llx %llx %llx", &nr, &w->uaddr, &op, &w->val,
                      &w->timeout) == 5;
    fclose(f);
    w->op = (int)(op & 0x7f);              /* FUTEX_PRIVATE_FLAG and the clock's flag off */
    return got && nr == SYS_futex && test_thread_asleep(tid);
}

bool test_thread_waits_untimed(pid_t tid)
{
    return cond_wait_kind(tid) == 1;
}

bool test_thread_seen_in_untimed_wait(atomic_int *tid, atomic_int *returned)
{
    for (int ms = 0; ms < TEST_HANG_MS; ms++) {
        int id = atomic_load(tid);
        if ((returned && atomic_load(returned)) || (id && test_thread_waits_untimed(id)))
            return true;
        test_sleep_ms(1);
    }
    return false;
}

bool test_thread_waits_timed(pid_t tid)
{
    return cond_wait_kind(tid) == 2;
}

/* glibc's mutex keeps its owner's tid after the futex word the waiters
 * sleep on; read from the word's address the way a debugger would, since
 * the sleeper may be gone and the word with it by the time it is read. */
static pid_t mutex_owner_at(unsigned long long uaddr)
{
#ifdef __GLIBC__
    pthread_mutex_t m;
    size_t len = offsetof(pthread_mutex_t, __data.__owner) + sizeof(m.__data.__owner);
    struct iovec here = { &m, len }, there = { (void *)(uintptr_t)uaddr, len };
    if (process_vm_readv(getpid(), &here, 1, &there, 1, 0) != (ssize_t)len)
        return 0;
    return m.__data.__owner;
#else
    (void)uaddr;
    return 0;
#endif
}

bool test_thread_waits_for_lock_of(pid_t tid, pid_t owner)
{
    struct test_futex_wait w;

    return test_thread_in_futex(tid, &w) && w.op == 0 /* FUTEX_WAIT */ &&
           mutex_owner_at(w.uaddr) == owner;
}

/* Both readings test_thread_waits_for_lock_of() makes, of the calling
 * thread and a mutex it holds: a refusal answers at once, where a wait
 * for a thread that never sleeps could only time out. */
bool test_can_read_lock_waits(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pid_t self = (pid_t)syscall(SYS_gettid);

    if (!test_can_read_syscalls())
        return false;
    pthread_mutex_lock(&m);
    bool owner_read = mutex_owner_at((uintptr_t)&m) == self;
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);
    return owner_read;
}

/* How many times thread tid has gone to sleep; -1 if it is gone. */
static long voluntary_switches(pid_t tid)
{
    char path[64], line[128];
    long n = -1;
    snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
}

bool test_thread_settles(pid_t tid)
{
    for (int ms = 0; ms < 60000; ms++) {
        long n = voluntary_switches(tid);
        if (n >= 0 && test_thread_waits_untimed(tid)) {
            test_sleep_ms(1);
            if (test_thread_waits_untimed(tid) && voluntary_switches(tid) == n)
                return true;
        }
        test_sleep_ms(1);
    }
    return false;
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
