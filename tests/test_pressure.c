/* SPDX-License-Identifier: MIT */
/*
 * test_pressure.c - the real signals: the automatic limit from the
 * process's memory cgroup (v1 and v2, read through a fake tree the tests
 * build and select with RECLAIM_CGROUP_ROOT), following limit changes,
 * cgroup usage near the limit as pressure, PSI triggers written as the
 * kernel documents them, systemd's memory-pressure protocol, and an idle
 * pressure thread that stays idle.
 */
#include "helpers.h"
#include "internal.h"       /* RCL__ROOT_MAX */

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/sockios.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#define GiB (1024 * MiB)

static char root[64];

/* ------------------------------------------------------------------------ */
/* A fake tree: the files the library reads, under `root`                   */
/* ------------------------------------------------------------------------ */

static void mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

/* Writes `content` to root/rel, creating directories on the way. */
static void put(const char *rel, const char *content)
{
    char path[PATH_MAX], dir[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    mkdirs(dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

/* put() of `len` bytes, NULs among them. */
static void put_bytes(const char *rel, const char *content, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    put(rel, "");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    fclose(f);
}

static size_t get(const char *rel, char *buf, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    return (size_t)n;
}

/* A machine with 16 GiB, a v2 hierarchy at /sys/fs/cgroup, the process in
 * /app.slice/svc.service. */
static void fake_v2(void)
{
    put("proc/meminfo", "MemTotal:       16777216 kB\nMemFree:         1000 kB\n");
    put("proc/self/cgroup", "0::/app.slice/svc.service\n");
    put("proc/self/mountinfo",
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
    put("sys/fs/cgroup/app.slice/memory.max", "max\n");
    put("sys/fs/cgroup/app.slice/memory.high", "max\n");
    put("sys/fs/cgroup/app.slice/svc.service/memory.max", "max\n");
    put("sys/fs/cgroup/app.slice/svc.service/memory.high", "max\n");
    put("sys/fs/cgroup/app.slice/svc.service/memory.current", "1048576\n");
    put("sys/fs/cgroup/app.slice/svc.service/memory.stat", "anon 1048576\ninactive_file 0\n");
    put("sys/fs/cgroup/app.slice/svc.service/memory.pressure",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
}
#define V2DIR "sys/fs/cgroup/app.slice/svc.service/"

/* The same machine with cgroup v1: the memory controller at
 * /sys/fs/cgroup/memory (co-mounted with nothing), the process in /grp. */
static void fake_v1(void)
{
    put("proc/meminfo", "MemTotal:       16777216 kB\n");
    put("proc/self/cgroup", "5:cpu,cpuacct:/\n4:memory:/grp\n1:name=systemd:/\n0::/\n");
    put("proc/self/mountinfo",
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
    put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    put("sys/fs/cgroup/memory/grp/memory.limit_in_bytes", "9223372036854771712\n");
    put("sys/fs/cgroup/memory/grp/memory.usage_in_bytes", "1048576\n");
    put("sys/fs/cgroup/memory/grp/memory.stat", "cache 0\nrss 1048576\ntotal_inactive_file 0\n");
}
#define V1DIR "sys/fs/cgroup/memory/grp/"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int pressure_setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/rcl-fakecg-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    setenv("RECLAIM_CGROUP_ROOT", root, 1);
    unsetenv("RECLAIM_CGROUP_MARGIN");
    unsetenv("MEMORY_PRESSURE_WATCH");
    unsetenv("MEMORY_PRESSURE_WRITE");
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    return 0;
}

static int pressure_teardown(void **state)
{
    (void)state;
    rcl_shutdown();
    atomic_store_explicit(&rcl__pressure_clock, rcl__now_ns, memory_order_relaxed);
    rcl_set_report_fn(NULL, NULL);
    unsetenv("RECLAIM_CGROUP_ROOT");
    unsetenv("RECLAIM_CGROUP_MARGIN");
    unsetenv("MEMORY_PRESSURE_WATCH");
    unsetenv("MEMORY_PRESSURE_WRITE");
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* The library with pressure following on. */
static void start(size_t limit, int background)
{
    struct rcl_config cfg = test_config(limit);
    cfg.pressure = 1;
    cfg.background = background;
    assert_int_equal(rcl_init(&cfg), 0);
}

/* The pressure thread's full ticks (rcl__pressure_ticks, a test seam):
 * what a tick does is seen once a tick that began after the change has
 * ended. The one under way when `since` was read may have begun before:
 * it is not counted. A thread that stops ticking fails the test here,
 * after a minute, rather than hanging the run. */
#define TICKS_HANG_MS 60000

/* Acquire, with the pressure thread's release: the limit and the reports
 * a counted tick made are seen by the checks that follow. */
static unsigned long ticks_now(void)
{
    return atomic_load_explicit(&rcl__pressure_ticks, memory_order_acquire);
}

static bool ticks_passed(unsigned long since, unsigned n)
{
    return ticks_now() >= since + n + 1;
}

/* Polls, 1 ms apart, until done() or `n` whole ticks since the call. */
static void until_or_ticks(bool (*done)(void), unsigned n)
{
    unsigned long since = ticks_now();
    for (int ms = 0; !(done && done()) && !ticks_passed(since, n); ms++) {
        if (ms >= TICKS_HANG_MS)
            fail_msg("the pressure thread ended no tick in %d ms", TICKS_HANG_MS);
        test_sleep_ms(1);
    }
}

/* Returns once `n` whole ticks have passed since the call. */
static void ticks_pass(unsigned n)
{
    until_or_ticks(NULL, n);
}

/* Waits, a minute at most, for thread tid to sleep in system call nr. */
static void wait_asleep_in(pid_t tid, long nr)
{
    for (int ms = 0; !test_thread_in_syscall(tid, nr); ms++) {
        if (ms >= TICKS_HANG_MS)
            fail_msg("thread %d never slept in system call %ld", (int)tid, nr);
        test_sleep_ms(1);
    }
}

/* Whether the pressure thread waits for its sources again. */
static bool pressure_thread_polls(pid_t tid)
{
    return test_thread_in_syscall(tid, SYS_poll) || test_thread_in_syscall(tid, SYS_ppoll);
}

/* Returns once the pressure thread has drained what was written at `fd`
 * (nothing left that `unread` counts there) and waits in poll() again:
 * without a background reclaimer the step the event asked for was taken
 * on that thread, and is over. */
static void event_drained(int fd, unsigned long unread)
{
    pid_t tid = test_thread_named("rcl-pressure", NULL);
    assert_true(tid > 0);
    for (int ms = 0;; ms++) {
        int queued = -1;
        if (ioctl(fd, unread, &queued) == 0 && queued == 0 && pressure_thread_polls(tid))
            return;
        if (ms >= TICKS_HANG_MS)
            fail_msg("the pressure thread never went back to its poll()");
        test_sleep_ms(1);
    }
}

/* event_drained() of a FIFO's end: what the pipe holds. */
static void event_handled(int fd)
{
    event_drained(fd, FIONREAD);
}

/* event_drained() of a stream socket's end that sent the event: what it
 * sent that the peer has not read. */
static void event_sent_handled(int fd)
{
    event_drained(fd, SIOCOUTQ);
}

/* ------------------------------------------------------------------------ */
/* A cache to shrink: blocks on an LRU, with its shrinker                   */
/* ------------------------------------------------------------------------ */

#define BLOCK (64 * KiB)
struct block {
    struct rcl_lru_node node;
    char data[BLOCK - sizeof(struct rcl_lru_node)];
};
static struct rcl_lru *cache;
static _Atomic size_t cache_freed;        /* bytes the shrinker gave back */
static char shrink_thread[16];            /* name of the thread that shrank */
static pthread_mutex_t shrink_lock = PTHREAD_MUTEX_INITIALIZER;

static void block_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&shrink_lock);
    prctl(PR_GET_NAME, shrink_thread);
    pthread_mutex_unlock(&shrink_lock);
    atomic_fetch_add(&cache_freed, sizeof(struct block));
    rcl_free(RCL_LRU_ENTRY(n, struct block, node));
}

static void cache_fill(size_t bytes)
{
    cache = rcl_lru_create();
    assert_non_null(cache);
    struct rcl_shrinker_opts opts = { .batch = 1 };
    assert_non_null(rcl_lru_shrinker(cache, "test-cache", NULL, block_free, NULL, &opts));
    for (size_t i = 0; i < bytes / sizeof(struct block); i++) {
        struct block *b = rcl_alloc(sizeof(*b), RCL_DEFAULT);
        assert_non_null(b);
        rcl_lru_node_init(&b->node);
        rcl_lru_add(cache, &b->node);
    }
    atomic_store(&cache_freed, 0);
    pthread_mutex_lock(&shrink_lock);
    memset(shrink_thread, 0, sizeof(shrink_thread));
    pthread_mutex_unlock(&shrink_lock);
}

static void cache_drop(void)
{
    struct rcl_lru_node dispose, *n;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(cache, NULL, NULL, ~0UL, &dispose);
    while ((n = rcl_lru_list_pop(&dispose)) != NULL)
        rcl_free(RCL_LRU_ENTRY(n, struct block, node));
    rcl_lru_destroy(cache);
    cache = NULL;
}

/* Waits for the cache to have given back at least `bytes`, for a test
 * where no state says the reclaim asked for is over (it runs on a thread
 * of its own): the bound only turns a library that never reclaims into a
 * failure instead of a hung run, and is no measure of how soon it must. */
#define FREED_HANG_MS 60000
static bool wait_freed(size_t bytes)
{
    for (long t = 0; t < FREED_HANG_MS; t += 20) {
        if (atomic_load(&cache_freed) >= bytes)
            return true;
        test_sleep_ms(20);
    }
    return atomic_load(&cache_freed) >= bytes;
}

/* ------------------------------------------------------------------------ */
/* The automatic limit                                                       */
/* ------------------------------------------------------------------------ */

/* cgroup v2: memory.high is where reclaim starts and memory.max where the
 * OOM killer does; the smaller set one binds. Margin: 1/8 by default. */
TEST_WITH(test_v2_limit_is_smaller_of_high_and_max_less_margin, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "1073741824\n");
    put(V2DIR "memory.high", "805306368\n");
    assert_int_equal(rcl_auto_limit(), 768 * MiB - 96 * MiB);
    put(V2DIR "memory.high", "max\n");
    assert_int_equal(rcl_auto_limit(), 1 * GiB - 128 * MiB);
}

/* "max" is no limit; with none anywhere the budget is half of memory. */
TEST_WITH(test_v2_without_limit_is_half_of_physical_memory, pressure_setup, pressure_teardown)
{
    fake_v2();
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
}

/* A parent's limit holds its children (hierarchical accounting). */
TEST_WITH(test_v2_parent_limit_binds_the_child, pressure_setup, pressure_teardown)
{
    fake_v2();
    put("sys/fs/cgroup/app.slice/memory.max", "268435456\n");
    put(V2DIR "memory.max", "536870912\n");
    assert_int_equal(rcl_auto_limit(), 256 * MiB - 32 * MiB);
}

TEST_WITH(test_v1_limit_in_bytes_less_margin, pressure_setup, pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    assert_int_equal(rcl_auto_limit(), 128 * MiB - 16 * MiB);
}

/* v1 writes "no limit" as a huge number (LONG_MAX rounded to a page). */
TEST_WITH(test_v1_unlimited_value_is_no_limit, pressure_setup, pressure_teardown)
{
    fake_v1();
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
}

/* A container's bind mount shows a subtree: mountinfo's root field is the
 * container's cgroup, which /proc/self/cgroup also names. */
TEST_WITH(test_v1_container_mount_root_is_cut_from_the_path, pressure_setup, pressure_teardown)
{
    put("proc/meminfo", "MemTotal:       16777216 kB\n");
    put("proc/self/cgroup", "4:memory:/docker/abc\n");
    put("proc/self/mountinfo",
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n");
    put("sys/fs/cgroup/memory/memory.limit_in_bytes", "268435456\n");
    assert_int_equal(rcl_auto_limit(), 256 * MiB - 32 * MiB);
}

/* mountinfo escapes a space in a mount point as \040. */
TEST_WITH(test_escaped_mount_point_is_decoded, pressure_setup, pressure_teardown)
{
    put("proc/meminfo", "MemTotal:       16777216 kB\n");
    put("proc/self/cgroup", "0::/\n");
    put("proc/self/mountinfo", "30 22 0:26 / /cg\\040two rw - cgroup2 cgroup2 rw\n");
    put("cg two/memory.max", "67108864\n");
    assert_int_equal(rcl_auto_limit(), 64 * MiB - 8 * MiB);
}

/* A mountinfo line is read whole, however long: one cut at 4 KiB left a
 * piece read as a line of its own, here a cgroup2 mount it could not
 * name, which took the first place in the count of the hierarchy's mounts
 * and hid the mount after it. */
TEST_WITH(test_a_mountinfo_line_over_four_kib_hides_no_mount_after_it, pressure_setup,
          pressure_teardown)
{
    char deep[4200], text[8192];
    fake_v2();
    memset(deep, 'x', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    snprintf(text, sizeof(text),
             "29 22 0:26 /%s /mnt/other rw - cgroup2 cgroup2 rw\n"
             "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", deep);
    put("proc/self/mountinfo", text);
    put(V2DIR "memory.max", "268435456\n");
    assert_int_equal(rcl_auto_limit(), 256 * MiB - 32 * MiB);
}

/* A cgroup mount whose own line is over 4 KiB (its mount point escaped,
 * each space four characters) is read: it was cut, and never found. */
TEST_WITH(test_a_cgroup_mount_whose_line_is_over_four_kib_is_found, pressure_setup,
          pressure_teardown)
{
    char spaces[201], mnt[1300] = "", escaped[5200] = "", text[6000], rel[1400];
    memset(spaces, ' ', sizeof(spaces) - 1);
    spaces[sizeof(spaces) - 1] = '\0';
    for (unsigned i = 0; i < 6; i++) {
        size_t n = strlen(mnt);
        snprintf(mnt + n, sizeof(mnt) - n, "/%s", spaces);
        n = strlen(escaped);
        escaped[n++] = '/';
        for (unsigned k = 0; k < 200; k++, n += 4)
            memcpy(escaped + n, "\\040", 5);
    }
    snprintf(text, sizeof(text), "30 22 0:26 / %s rw - cgroup2 cgroup2 rw\n", escaped);
    assert_true(strlen(text) > 4096);
    put("proc/meminfo", "MemTotal:       16777216 kB\n");
    put("proc/self/cgroup", "0::/\n");
    put("proc/self/mountinfo", text);
    snprintf(rel, sizeof(rel), "%s/memory.max", mnt + 1);
    put(rel, "67108864\n");
    assert_int_equal(rcl_auto_limit(), 64 * MiB - 8 * MiB);
}

/* A mount's source is any name the mounter chose: one over 255
 * characters was read in two, its rest taken for the super options, and a
 * v1 memory mount was not seen as one. */
TEST_WITH(test_a_v1_memory_mount_with_a_long_source_is_found, pressure_setup, pressure_teardown)
{
    char source[301], text[1024];
    fake_v1();
    memset(source, 's', sizeof(source) - 1);
    source[sizeof(source) - 1] = '\0';
    snprintf(text, sizeof(text),
             "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup %s rw,memory\n", source);
    put("proc/self/mountinfo", text);
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    assert_int_equal(rcl_auto_limit(), 128 * MiB - 16 * MiB);
}

TEST_WITH(test_margin_is_configurable_as_size_or_percentage, pressure_setup, pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    setenv("RECLAIM_CGROUP_MARGIN", "32M", 1);
    assert_int_equal(rcl_auto_limit(), 96 * MiB);
    setenv("RECLAIM_CGROUP_MARGIN", "25%", 1);
    assert_int_equal(rcl_auto_limit(), 96 * MiB);
    setenv("RECLAIM_CGROUP_MARGIN", "0", 1);
    assert_int_equal(rcl_auto_limit(), 128 * MiB);
    setenv("RECLAIM_CGROUP_MARGIN", "1G", 1);          /* capped at half */
    assert_int_equal(rcl_auto_limit(), 64 * MiB);
}

TEST_WITH(test_malformed_margin_is_reported_and_ignored, pressure_setup, pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    setenv("RECLAIM_CGROUP_MARGIN", "lots", 1);
    assert_int_equal(rcl_auto_limit(), 112 * MiB);
    assert_true(test_report_count() >= 1);
    assert_last_report_has("RECLAIM_CGROUP_MARGIN");
}

/* A margin is digits first, as every size and percentage of the
 * RECLAIM_* variables is: strtoul() took " 10%" and "+10%" as 10 %. An
 * empty one is reported as every other empty variable is. */
TEST_WITH(test_empty_or_signed_margin_is_reported_and_ignored, pressure_setup, pressure_teardown)
{
    static const char *const bad[] = { " 10%", "+10%", "-5%", "" };

    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("RECLAIM_CGROUP_MARGIN", bad[i], 1);
        assert_int_equal(rcl_auto_limit(), 112 * MiB);
    }
    assert_true(test_reports_contain("RECLAIM_CGROUP_MARGIN=\" 10%\""));
    assert_true(test_reports_contain("RECLAIM_CGROUP_MARGIN=\"+10%\""));
    assert_true(test_reports_contain("RECLAIM_CGROUP_MARGIN=\"-5%\""));
    assert_true(test_reports_contain("RECLAIM_CGROUP_MARGIN=\"\""));
    assert_int_equal(test_reports_take(), 4);
}

/* The margin is read at every measure of the automatic budget, each
 * second or oftener: a bad value that stays is reported once, however
 * long it stays (it was, at most once a second, for ever). Another bad
 * value is reported at once, and a new start reports the value it finds,
 * as it does every RECLAIM_* variable. */
TEST_WITH(test_a_malformed_margin_is_reported_once_per_value_and_per_start, pressure_setup,
          pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    setenv("RECLAIM_CGROUP_MARGIN", "lots", 1);
    assert_int_equal(rcl_auto_limit(), 112 * MiB);
    /* A second gone by, past the once-a-second limit it was reported at:
     * a slow machine only lengthens the sleep, which can neither fail the
     * test nor leave the second unpassed. */
    test_sleep_ms(1100);
    assert_int_equal(rcl_auto_limit(), 112 * MiB);
    assert_int_equal(test_reports_take(), 1);

    setenv("RECLAIM_CGROUP_MARGIN", "more", 1);
    assert_int_equal(rcl_auto_limit(), 112 * MiB);
    assert_last_report_has("RECLAIM_CGROUP_MARGIN=\"more\"");
    assert_int_equal(test_reports_take(), 1);

    struct rcl_config cfg = test_config(64 * MiB);
    cfg.pressure = 0;                   /* no other thread to make the report */
    cfg.background = 0;
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_auto_limit(), 112 * MiB);
    assert_last_report_has("RECLAIM_CGROUP_MARGIN=\"more\"");
    assert_int_equal(test_reports_take(), 1);
}

/* ------------------------------------------------------------------------ */
/* A bad RECLAIM_CGROUP_ROOT                                                  */
/* ------------------------------------------------------------------------ */

/* The automatic limit with RECLAIM_CGROUP_ROOT set to `bad`, asked twice:
 * the machine's, as with the variable unset, and the value reported once,
 * however often the files are read. The fake tree under the test's root
 * says 112 MiB, which a root read as meant would give. */
static void bad_root_is_ignored_and_reported_once(const char *bad)
{
    char seen[128];

    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    unsetenv("RECLAIM_CGROUP_ROOT");
    size_t machine = rcl_auto_limit();
    setenv("RECLAIM_CGROUP_ROOT", bad, 1);
    assert_int_equal(rcl_auto_limit(), machine);
    assert_int_equal(rcl_auto_limit(), machine);
    snprintf(seen, sizeof(seen), "ignored RECLAIM_CGROUP_ROOT=\"%.64s\"", bad);
    assert_int_equal(test_reports_seen_matching(seen), 1);
}

/* A relative root would follow the working directory, which the program
 * may change between two reads: read, it named whatever lay there. */
TEST_WITH(test_a_relative_cgroup_root_is_reported_and_ignored, pressure_setup, pressure_teardown)
{
    bad_root_is_ignored_and_reported_once(root + 1);
}

/* An empty variable is refused as every other empty RECLAIM_* variable
 * is: it read as no root at all, and said nothing. */
TEST_WITH(test_an_empty_cgroup_root_is_reported_and_ignored, pressure_setup, pressure_teardown)
{
    bad_root_is_ignored_and_reported_once("");
}

/* A root that is a file, or nothing at all, has none of the files under
 * it: every read failed, and the limit was half of the machine's memory,
 * the cgroup's limit unseen and nothing said. */
TEST_WITH(test_a_cgroup_root_that_is_not_a_directory_is_reported_and_ignored, pressure_setup,
          pressure_teardown)
{
    char path[PATH_MAX];

    put("a-file", "");
    snprintf(path, sizeof(path), "%s/a-file", root);
    bad_root_is_ignored_and_reported_once(path);
    snprintf(path, sizeof(path), "%s/nothing", root);
    bad_root_is_ignored_and_reported_once(path);
}

/* A directory below the test's root whose path is `len` bytes, with the
 * fake tree's proc and sys linked into it: a root of that length under
 * which the files are there. */
static void long_root(char *out, size_t len)
{
    char link[PATH_MAX], to[PATH_MAX];
    size_t n = (size_t)snprintf(out, len + 1, "%s", root);

    while (n < len) {
        size_t name = len - n - 1 > 200 ? 200 : len - n - 1;
        if (len - n - 1 - name == 1)
            name--;                         /* leave the last name a byte at least */
        out[n++] = '/';
        memset(out + n, 'x', name);
        n += name;
        out[n] = '\0';
    }
    assert_int_equal(strlen(out), len);
    mkdirs(out);
    for (unsigned i = 0; i < 2; i++) {
        const char *dir = i ? "sys" : "proc";
        snprintf(link, sizeof(link), "%s/%s", out, dir);
        snprintf(to, sizeof(to), "%s/%s", root, dir);
        assert_int_equal(symlink(to, link), 0);
    }
}

/* The longest root whose files fit the library's paths is read: here the
 * fake machine's memory, the mounts under it too long to be a cgroup's
 * (reported as such). */
TEST_WITH(test_a_cgroup_root_as_long_as_its_paths_allow_is_read, pressure_setup,
          pressure_teardown)
{
    static char dir[PATH_MAX];

    fake_v1();
    put("proc/meminfo", "MemTotal:       6291460 kB\n");
    long_root(dir, RCL__ROOT_MAX);
    setenv("RECLAIM_CGROUP_ROOT", dir, 1);
    assert_int_equal(rcl_auto_limit(), 6291460 * KiB / 2);
    assert_int_equal(test_reports_seen_matching("ignored RECLAIM_CGROUP_ROOT"), 0);
}

/* A byte longer, the longest file name put after it would be cut short,
 * and some other file read in its place. */
TEST_WITH(test_a_cgroup_root_too_long_for_its_paths_is_reported_and_ignored, pressure_setup,
          pressure_teardown)
{
    static char dir[PATH_MAX];

    long_root(dir, RCL__ROOT_MAX + 1);
    bad_root_is_ignored_and_reported_once(dir);
}

/* A start reports the bad root it finds, reported before or not, as it
 * does every RECLAIM_* variable. */
TEST_WITH(test_a_bad_cgroup_root_is_reported_again_by_a_start, pressure_setup, pressure_teardown)
{
    bad_root_is_ignored_and_reported_once("relative");

    struct rcl_config cfg = test_config(64 * MiB);
    cfg.pressure = 0;                   /* no other thread to make the report */
    assert_int_equal(rcl_init(&cfg), 0);
    rcl_auto_limit();
    assert_int_equal(test_reports_seen_matching("ignored RECLAIM_CGROUP_ROOT=\"relative\""), 1);
}

/* A cgroup outside the cgroup namespace's root reads "/../other"
 * (cgroup_namespaces(7)): the mount, which shows that root, does not show
 * it, and neither the root's limit nor a directory beside the mount is
 * this process's. No cgroup budget, reported once; it read the directory
 * "/sys/fs/cgroup/../other", outside the mount. */
TEST_WITH(test_a_cgroup_outside_the_mount_gives_no_budget_and_is_reported_once, pressure_setup,
          pressure_teardown)
{
    fake_v2();
    put("proc/self/cgroup", "0::/../other\n");
    put("sys/fs/cgroup/memory.max", "536870912\n");
    put("sys/fs/other/memory.max", "268435456\n");
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
    assert_int_equal(test_reports_seen_matching("\"/../other\" (cgroup v2) is outside every mount"),
                     1);
}

/* The same with a container's v1 mount: a cgroup beside the one the mount
 * shows is not in it, whatever the mount holds of the same name. */
TEST_WITH(test_v1_cgroup_beside_the_mounts_root_is_not_read, pressure_setup, pressure_teardown)
{
    put("proc/meminfo", "MemTotal:       16777216 kB\n");
    put("proc/self/cgroup", "4:memory:/docker/other\n");
    put("proc/self/mountinfo",
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n");
    put("sys/fs/cgroup/memory/memory.limit_in_bytes", "536870912\n");
    put("sys/fs/cgroup/memory/docker/other/memory.limit_in_bytes", "268435456\n");
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
    assert_int_equal(test_reports_seen_matching("is outside every mount"), 1);
}

/* A group the kernel names in under PATH_MAX bytes, below a mount whose
 * point takes its path, with the group's, to PATH_MAX or more: its
 * directory cannot be opened by name. No cgroup budget, reported as what
 * it is; it was reported as outside every mount, which it never was. */
TEST_WITH(test_a_cgroup_too_long_to_open_below_its_mount_is_reported_as_such, pressure_setup,
          pressure_teardown)
{
    char group[PATH_MAX - 8], line[PATH_MAX + 32];
    memset(group, 'x', sizeof(group) - 1);
    group[0] = '/';
    group[sizeof(group) - 1] = '\0';
    fake_v1();
    snprintf(line, sizeof(line), "4:memory:%s\n", group);
    put("proc/self/cgroup", line);
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
    assert_true(test_reports_contain("(cgroup v1) has a directory whose path"));
    assert_false(test_reports_contain("outside every mount"));
    assert_int_equal(test_reports_take(), 1);
}

/* A hybrid system's /proc/self/cgroup: the process's group named once for
 * each hierarchy, in the kernel's order, the memory controller's (here in
 * `memory`) among the last; with long paths it runs past 4 KiB. */
static void long_v1_cgroup(const char *memory)
{
    char longpath[600], text[8192] = "";
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    for (unsigned id = 12; id > 4; id--) {
        size_t n = strlen(text);
        snprintf(text + n, sizeof(text) - n, "%u:ctl%u:/%s\n", id, id, longpath);
    }
    size_t n = strlen(text);
    snprintf(text + n, sizeof(text) - n, "4:memory:%s\n1:name=systemd:/\n0::/\n", memory);
    assert_true(strlen(text) > 4096);
    put("proc/self/cgroup", text);
}

/* It was read into 4 KiB, the memory line cut off, and the limit never
 * seen. */
TEST_WITH(test_v1_memory_line_past_four_kib_of_proc_self_cgroup_is_read, pressure_setup,
          pressure_teardown)
{
    fake_v1();
    long_v1_cgroup("/grp");
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    assert_int_equal(rcl_auto_limit(), 128 * MiB - 16 * MiB);
}

/* A NUL byte inside a line of /proc/self/cgroup ends that line: the line
 * after it, here the memory controller's, is read whole. It was taken for
 * the rest of a line cut at the buffer's end, and skipped. */
TEST_WITH(test_a_nul_byte_in_a_proc_self_cgroup_line_hides_no_other_line, pressure_setup,
          pressure_teardown)
{
    static const char text[] = "5:cpu,cpuacct:/a\0b\n4:memory:/grp\n1:name=systemd:/\n0::/\n";
    fake_v1();
    put_bytes("proc/self/cgroup", text, sizeof(text) - 1);
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    assert_int_equal(rcl_auto_limit(), 128 * MiB - 16 * MiB);
}

/* A second mount of the hierarchy that shows the cgroup is read: here the
 * whole hierarchy, whose root is above the namespace's ("/.."). */
TEST_WITH(test_a_cgroup_outside_one_mount_is_read_under_another, pressure_setup, pressure_teardown)
{
    fake_v2();
    put("proc/self/cgroup", "0::/../other\n");
    put("proc/self/mountinfo",
        "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        "31 22 0:26 /.. /host/cgroup rw - cgroup2 cgroup2 rw\n");
    put("sys/fs/cgroup/memory.max", "536870912\n");
    put("host/cgroup/other/memory.max", "268435456\n");
    assert_int_equal(rcl_auto_limit(), 224 * MiB);
}

/* The process moved between the library's read of /proc/self/cgroup and
 * its look at the group: the file is a FIFO whose one reader gets
 * `first`, and by the time that read ends the path names a plain file
 * that holds `then`, as /proc/self/cgroup would after the move. */
struct moved_cgroup {
    char fifo[PATH_MAX], next[PATH_MAX];
    const char *first;
};

static void *serve_one_cgroup_read(void *arg)
{
    struct moved_cgroup *m = arg;
    int fd = open(m->fifo, O_WRONLY | O_CLOEXEC);      /* until the library reads */
    if (fd < 0)
        return NULL;
    ssize_t n = write(fd, m->first, strlen(m->first));
    (void)n;
    rename(m->next, m->fifo);                  /* before the reader's end of file */
    close(fd);
    return NULL;
}

static void moved_after_the_first_read(struct moved_cgroup *m, pthread_t *th,
                                       const char *first, const char *then)
{
    snprintf(m->fifo, sizeof(m->fifo), "%s/proc/self/cgroup", root);
    snprintf(m->next, sizeof(m->next), "%s/proc/self/cgroup.next", root);
    m->first = first;
    put("proc/self/cgroup.next", then);
    unlink(m->fifo);
    assert_int_equal(mkfifo(m->fifo, 0600), 0);
    assert_int_equal(pthread_create(th, NULL, serve_one_cgroup_read, m), 0);
}

/* The kernel moves a process to another group atomically, and removes a
 * group only once it is empty: a group that is gone by the time it is
 * looked at was left, and /proc/self/cgroup read again names the one the
 * process is in now. (The gone group was reported outside every mount,
 * and the cgroup's limit gave no budget.) */
TEST_WITH(test_a_cgroup_gone_after_a_move_is_followed_to_the_new_one, pressure_setup,
          pressure_teardown)
{
    struct moved_cgroup m;
    pthread_t th;

    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    alarm(10);                          /* a read that never comes fails here */
    moved_after_the_first_read(&m, &th, "0::/app.slice/old.service\n",
                               "0::/app.slice/svc.service\n");
    assert_int_equal(rcl_auto_limit(), 448 * MiB);
    assert_int_equal(pthread_join(th, NULL), 0);
    alarm(0);
    assert_int_equal(test_report_count(), 0);
}

/* A group gone at every read is reported as gone, once, and gives no
 * budget. (It was reported outside every mount, which it never was.) */
TEST_WITH(test_a_cgroup_gone_at_every_read_is_reported_as_gone, pressure_setup,
          pressure_teardown)
{
    fake_v2();
    put("proc/self/cgroup", "0::/app.slice/old.service\n");
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
    assert_int_equal(test_reports_seen_matching("\"/app.slice/old.service\" (cgroup v2) is "
                                                "gone"), 1);
    assert_int_equal(test_reports_seen_matching("outside every mount"), 0);
}

TEST_WITH(test_no_cgroup_at_all_is_half_of_physical_memory, pressure_setup, pressure_teardown)
{
    put("proc/meminfo", "MemTotal:        4194304 kB\n");
    put("proc/self/cgroup", "");
    put("proc/self/mountinfo", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n");
    assert_int_equal(rcl_auto_limit(), 2 * GiB);
}

/* memory.max = 0 is a limit, the tightest there is: the kernel charges
 * nothing more to the group, reclaiming and killing to get there. It read
 * as no limit, and the budget was half of the machine. */
TEST_WITH(test_v2_max_of_zero_gives_the_least_budget, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "0\n");
    assert_int_equal(rcl_auto_limit(), 1);
}

/* A parent's 0 binds below a child's limit as any smaller limit does. */
TEST_WITH(test_v2_parent_max_of_zero_binds_the_child, pressure_setup, pressure_teardown)
{
    fake_v2();
    put("sys/fs/cgroup/app.slice/memory.max", "0\n");
    put(V2DIR "memory.max", "536870912\n");
    assert_int_equal(rcl_auto_limit(), 1);
}

/* v1 takes a limit of 0 when the group's usage can be reclaimed to it. */
TEST_WITH(test_v1_limit_of_zero_gives_the_least_budget, pressure_setup, pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "0\n");
    assert_int_equal(rcl_auto_limit(), 1);
}

/* At start a reserve leaves nothing of that budget: refused, as under any
 * cgroup limit below the reserve. */
TEST_WITH(test_init_with_a_reserve_under_a_cgroup_limit_of_zero_is_refused, pressure_setup,
          pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "0\n");
    struct rcl_config cfg = test_config(0);
    cfg.pressure = 1;
    cfg.reserve = 64 * MiB;
    assert_int_equal(rcl_init(&cfg), -EINVAL);
    assert_int_equal(test_reports_seen_matching("leaves nothing of a limit of 1"), 1);
}

/* A cgroup limit above the machine's memory limits nothing. */
TEST_WITH(test_limit_above_physical_memory_is_ignored, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "68719476736\n");          /* 64 GiB on a 16 GiB machine */
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
}

/* Nor does one equal to it: a limit at the machine's memory is none. */
TEST_WITH(test_limit_equal_to_physical_memory_is_ignored, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "17179869184\n");          /* 16 GiB on a 16 GiB machine */
    assert_int_equal(rcl_auto_limit(), 8 * GiB);
}

/* limit = 0 in the configuration selects the automatic limit. */
TEST_WITH(test_init_with_limit_zero_uses_the_cgroup, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    start(0, 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
}

/* The pressure thread re-reads the cgroup's limit at each tick: the
 * budget is `want` at the latest once a whole tick has passed since the
 * change (two, for a margin). */
static size_t limit_wanted;
static bool limit_is_wanted(void) { return rcl_limit() == limit_wanted; }

static void limit_becomes(size_t want)
{
    limit_wanted = want;
    until_or_ticks(limit_is_wanted, 2);
    assert_int_equal(rcl_limit(), want);
}

/* While running, the budget follows the cgroup's limit (re-read each
 * second by the pressure thread). */
TEST_WITH(test_budget_follows_cgroup_limit_changes, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    start(0, 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
    put(V2DIR "memory.max", "268435456\n");
    limit_becomes(224 * MiB);
    put(V2DIR "memory.max", "max\n");
    limit_becomes(8 * GiB);
}

/* The library following a v2 cgroup limit of 512 MiB (a budget of 448
 * MiB, the margin taken off), with a reserve of 64 MiB. */
static void follow_512m_with_a_64m_reserve(void)
{
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    struct rcl_config cfg = test_config(0);
    cfg.pressure = 1;
    cfg.reserve = 64 * MiB;
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
}

/* A cgroup limit that moves the automatic budget down to the reserve, or
 * below it, sets the reserve aside (reported): min_pct of the budget is
 * the reserve until the budget grows past it again. Kept, it took the
 * whole budget, and every ordinary allocation failed with E2BIG, "larger
 * than this context can ever get", while the cgroup still let it grow. */
TEST_WITH(test_a_budget_the_cgroup_moves_within_the_reserve_sets_the_reserve_aside,
          pressure_setup, pressure_teardown)
{
    follow_512m_with_a_64m_reserve();

    put(V2DIR "memory.max", "67108864\n");
    limit_becomes(56 * MiB);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.wmark_min, 56 * MiB * 2 / 100);
    assert_int_equal(test_reports_seen_matching("within the reserve"), 1);
    void *p = rcl_alloc(4096, RCL_DEFAULT);
    assert_non_null(p);
    rcl_free(p);

    put(V2DIR "memory.max", "536870912\n");
    limit_becomes(448 * MiB);
    rcl_stats_get(&st);
    assert_int_equal(st.wmark_min, 64 * MiB);
}

/* A cgroup limit set to 0 while running moves the budget to the least
 * there is, within the reserve, which is set aside (reported) as for any
 * limit below it; it moved the budget to half of the machine. */
TEST_WITH(test_a_cgroup_limit_of_zero_moves_the_budget_within_the_reserve, pressure_setup,
          pressure_teardown)
{
    follow_512m_with_a_64m_reserve();

    put(V2DIR "memory.max", "0\n");
    limit_becomes(1);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.wmark_min, 0);
    assert_int_equal(test_reports_seen_matching("within the reserve"), 1);

    put(V2DIR "memory.max", "536870912\n");
    limit_becomes(448 * MiB);
    rcl_stats_get(&st);
    assert_int_equal(st.wmark_min, 64 * MiB);
}

/* A tree `depth` levels deep below the v2 mount, the process in the
 * deepest, no limit anywhere yet. */
static void fake_v2_deep(unsigned depth)
{
    char cgpath[PATH_MAX] = "", rel[PATH_MAX];
    put("proc/meminfo", "MemTotal:       16777216 kB\n");
    put("proc/self/mountinfo",
        "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n");
    for (unsigned i = 1; i <= depth; i++) {
        size_t n = strlen(cgpath);
        snprintf(cgpath + n, sizeof(cgpath) - n, "/l%u", i);
        snprintf(rel, sizeof(rel), "sys/fs/cgroup%s/memory.max", cgpath);
        put(rel, "max\n");
    }
    snprintf(rel, sizeof(rel), "sys/fs/cgroup%s/memory.current", cgpath);
    put(rel, "1048576\n");
    char line[PATH_MAX + 8];
    snprintf(line, sizeof(line), "0::%s\n", cgpath);
    put("proc/self/cgroup", line);
}

/* The pressure thread reads every level of a deep tree: it kept 16, and a
 * limit set higher up than that bound the process while the budget stayed
 * half of the machine. */
TEST_WITH(test_budget_follows_a_limit_twenty_levels_up, pressure_setup, pressure_teardown)
{
    fake_v2_deep(21);
    start(0, 0);
    assert_int_equal(rcl_limit(), 8 * GiB);
    put("sys/fs/cgroup/l1/memory.max", "268435456\n");
    limit_becomes(224 * MiB);
    assert_int_equal(rcl_auto_limit(), 224 * MiB);
}

/* A limit that cannot be read (the cgroup's files gone, or no descriptor
 * free) is not "no limit": the budget stays where it was rather than grow
 * to half of the machine. */
TEST_WITH(test_unreadable_cgroup_limit_leaves_the_budget, pressure_setup, pressure_teardown)
{
    char path[PATH_MAX];
    static const char *const files[] = {
        "sys/fs/cgroup/app.slice/memory.max", "sys/fs/cgroup/app.slice/memory.high",
        V2DIR "memory.max", V2DIR "memory.high",
    };
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    start(0, 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
    for (unsigned i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", root, files[i]);
        assert_int_equal(unlink(path), 0);
    }
    ticks_pass(2);
    assert_int_equal(rcl_limit(), 448 * MiB);
}

/* A group beside the process's, limited to `max` (v2 memory.max) and
 * holding `current`, for a process moved to it. */
#define V2NEXT "sys/fs/cgroup/app.slice/next.service/"
static void fake_v2_next(const char *max, const char *current)
{
    put(V2NEXT "memory.max", max);
    put(V2NEXT "memory.high", "max\n");
    put(V2NEXT "memory.current", current);
    put(V2NEXT "memory.stat", "anon 0\ninactive_file 0\n");
    put(V2NEXT "memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
}

/* The process moved there, as the kernel shows it: /proc/self/cgroup
 * names the new group (systemd changing a unit's slice, a container
 * runtime writing the pid to the group's cgroup.procs). */
static void moved_to_next(void)
{
    put("proc/self/cgroup", "0::/app.slice/next.service\n");
}

/* A process moved to another cgroup after the start follows that group's
 * limit, and the move is reported once. It followed the old group's for
 * good: a tighter limit in the new group was left to the kernel's OOM
 * killer. */
TEST_WITH(test_budget_follows_the_process_moved_to_another_cgroup, pressure_setup,
          pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    fake_v2_next("268435456\n", "1048576\n");
    start(0, 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
    moved_to_next();
    limit_becomes(224 * MiB);
    ticks_pass(1);                      /* another tick: nothing new to say */
    assert_int_equal(test_reports_seen_matching("moved from memory cgroup "
                                                "\"/app.slice/svc.service\" to "
                                                "\"/app.slice/next.service\""), 1);
    assert_int_equal(test_report_count(), 1);
}

/* A move looked up while the mounts cannot be read (no descriptor free;
 * here mountinfo is away for a moment) is looked up again at the next
 * tick. It was taken as seen, and the old group followed for good. */
TEST_WITH(test_a_move_looked_up_while_the_mounts_are_unreadable_is_followed_later,
          pressure_setup, pressure_teardown)
{
    char at[PATH_MAX], away[PATH_MAX + 8];
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    fake_v2_next("268435456\n", "1048576\n");
    start(0, 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
    snprintf(at, sizeof(at), "%s/proc/self/mountinfo", root);
    snprintf(away, sizeof(away), "%s.away", at);
    assert_int_equal(rename(at, away), 0);
    moved_to_next();
    ticks_pass(1);                      /* a tick looks the move up, and cannot */
    assert_int_equal(rcl_limit(), 448 * MiB);
    assert_int_equal(rename(away, at), 0);
    limit_becomes(224 * MiB);
    assert_int_equal(test_reports_seen_matching("moved from memory cgroup"), 1);
    assert_int_equal(test_report_count(), 1);
}

/* The same on cgroup v1, where the memory controller's line tells the
 * move; the usage threshold is armed in the new group, whose usage is
 * the one that counts now. */
TEST_WITH(test_v1_budget_and_threshold_follow_the_process_to_another_cgroup, pressure_setup,
          pressure_teardown)
{
    char buf[64];
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "536870912\n");
    put("sys/fs/cgroup/memory/grp2/memory.limit_in_bytes", "268435456\n");
    put("sys/fs/cgroup/memory/grp2/memory.usage_in_bytes", "1048576\n");
    put("sys/fs/cgroup/memory/grp2/memory.stat", "total_inactive_file 0\n");
    put("sys/fs/cgroup/memory/grp2/cgroup.event_control", "");
    start(0, 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
    put("proc/self/cgroup", "5:cpu,cpuacct:/\n4:memory:/grp2\n1:name=systemd:/\n0::/\n");
    limit_becomes(224 * MiB);
    if (test_under_sanitizer("asan") || test_under_sanitizer("tsan"))
        return;     /* no footprint measured, no threshold armed */
    for (int t = 0; t < 100 && !get("sys/fs/cgroup/memory/grp2/cgroup.event_control", buf,
                                     sizeof(buf)); t++)
        test_sleep_ms(50);
    assert_true(strlen(buf) > 0);
}

/* The kernel's side of a v1 usage threshold: the eventfd the pressure
 * thread armed (the first number of the line it wrote to
 * cgroup.event_control) signalled every 20 ms, as a cache working at its
 * budget crosses the threshold up and down, until the budget is `until`. */
static int crossing_efd;
static size_t crossing_until;

static bool still_the_eventfd(int fd)
{
    char path[64], link[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t len = readlink(path, link, sizeof(link) - 1);
    if (len <= 0)
        return false;
    link[len] = '\0';
    return strstr(link, "eventfd") != NULL;
}

static void *crosses_the_threshold(void *arg)
{
    uint64_t one = 1;
    (void)arg;
    /* Bounded: the test fails on the limit, not on a crossing for ever. */
    for (int t = 0; t < 500 && rcl_limit() != crossing_until; t++) {
        if (still_the_eventfd(crossing_efd) &&
            write(crossing_efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
            break;
        test_sleep_ms(20);
    }
    return NULL;
}

/* The threshold's events do not hold the one-second tick off: a cache at
 * its budget makes them more often than that for as long as it runs, and
 * the budget still follows the cgroup's limit. (Each event sent the
 * thread back to its wait, past the tick: a limit lowered meanwhile was
 * never followed.) */
TEST_WITH(test_v1_threshold_crossings_leave_the_tick_its_turn, pressure_setup, pressure_teardown)
{
    char buf[64];
    pthread_t th;

    if (test_under_sanitizer("asan") || test_under_sanitizer("tsan")) {
        print_message("skipped: the sanitizer builds measure no footprint\n");
        skip();     /* and the threshold is armed only for one read from the cgroup */
    }
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "536870912\n");
    put(V1DIR "cgroup.event_control", "");
    start(0, 1);
    assert_int_equal(rcl_limit(), 448 * MiB);
    assert_true(get(V1DIR "cgroup.event_control", buf, sizeof(buf)) > 0);
    crossing_efd = atoi(buf);
    assert_true(still_the_eventfd(crossing_efd));
    crossing_until = 224 * MiB;
    assert_int_equal(pthread_create(&th, NULL, crosses_the_threshold, NULL), 0);
    put(V1DIR "memory.limit_in_bytes", "268435456\n");
    limit_becomes(224 * MiB);
    pthread_join(th, NULL);
}

/* A move that changes /proc/self/cgroup only past its first 4 KiB (the
 * memory controller's line, the process written to that hierarchy's
 * cgroup.procs alone) is followed. The pressure thread compared the first
 * 4 KiB of the file, and the move went unseen. */
TEST_WITH(test_a_move_past_four_kib_of_proc_self_cgroup_is_followed, pressure_setup,
          pressure_teardown)
{
    fake_v1();
    long_v1_cgroup("/grp");
    put(V1DIR "memory.limit_in_bytes", "536870912\n");
    put("sys/fs/cgroup/memory/grp2/memory.limit_in_bytes", "268435456\n");
    put("sys/fs/cgroup/memory/grp2/memory.usage_in_bytes", "1048576\n");
    put("sys/fs/cgroup/memory/grp2/memory.stat", "total_inactive_file 0\n");
    start(0, 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
    long_v1_cgroup("/grp2");
    limit_becomes(224 * MiB);
    assert_int_equal(test_reports_seen_matching("moved from memory cgroup \"/grp\" to "
                                                "\"/grp2\""), 1);
}

/* A limit the program chose is the program's: the cgroup does not move it. */
TEST_WITH(test_explicit_limit_is_not_moved_by_the_cgroup, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    start(100 * MiB, 0);
    put(V2DIR "memory.max", "268435456\n");
    ticks_pass(2);
    assert_int_equal(rcl_limit(), 100 * MiB);
}

/* ------------------------------------------------------------------------ */
/* The footprint's measure follows the budget                                */
/* ------------------------------------------------------------------------ */

/* The footprint is measured by the fake tree's files: the cgroup's usage
 * file, and proc/self/statm for resident memory, which starts at 10 MiB
 * (the base) and which the tests move. The sanitizer builds measure
 * nothing. */
#define BASE_RESIDENT (10 * MiB)

static void resident(size_t above_base)
{
    char line[64];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    snprintf(line, sizeof(line), "100000 %zu 0 0 0 0 0\n", (BASE_RESIDENT + above_base) / page);
    put("proc/self/statm", line);
}

static void need_footprint(void)
{
    if (test_sanitizer()) {
        print_message("skipped under %s: the sanitizer builds measure no footprint\n",
                      test_sanitizer());
        skip();
    }
}

/* Waits (bounded) for the footprint to read `bytes`. */
static size_t wait_footprint(size_t bytes, long ms)
{
    for (long t = 0; t < ms && rcl_footprint() != bytes; t += 20)
        test_sleep_ms(20);
    return rcl_footprint();
}

/* The automatic budget under a 512 MiB v2 limit, the cgroup holding 300
 * MiB of other processes' memory: the footprint counts them. */
static void start_measured_by_the_cgroup(void)
{
    fake_v2();
    resident(0);
    put(V2DIR "memory.max", "536870912\n");
    put(V2DIR "memory.current", "314572800\n");
    start(0, 0);
    assert_int_equal(rcl_footprint(), 300 * MiB);
}

/* Once the program sets the limit, the budget is no longer the cgroup's:
 * the process's own resident memory is the measure, not what other
 * processes hold in its cgroup. */
TEST_WITH(test_a_limit_the_program_sets_is_measured_by_resident_memory, pressure_setup,
          pressure_teardown)
{
    need_footprint();
    start_measured_by_the_cgroup();
    assert_int_equal(rcl_set_limit(256 * MiB), 0);
    resident(20 * MiB);
    assert_int_equal(rcl_footprint(), 20 * MiB);
}

/* A limit under 32 MiB the program sets is held to its charges alone. */
TEST_WITH(test_a_small_limit_the_program_sets_is_held_to_its_charges, pressure_setup,
          pressure_teardown)
{
    need_footprint();
    start_measured_by_the_cgroup();
    assert_int_equal(rcl_set_limit(16 * MiB), 0);
    resident(20 * MiB);
    assert_int_equal(rcl_footprint(), rcl_usage());
}

/* An automatic budget that began as half of the machine (no cgroup limit)
 * becomes the cgroup's when a limit is set, and so does its measure. */
TEST_WITH(test_an_automatic_budget_is_measured_by_the_cgroup_once_it_has_a_limit,
          pressure_setup, pressure_teardown)
{
    need_footprint();
    fake_v2();
    resident(0);
    put(V2DIR "memory.current", "314572800\n");
    start(0, 0);
    assert_int_equal(rcl_limit(), 8 * GiB);
    assert_int_equal(rcl_footprint(), 0);
    put(V2DIR "memory.max", "536870912\n");
    limit_becomes(448 * MiB);
    assert_int_equal(rcl_footprint(), 300 * MiB);
}

/* And the reverse: the cgroup's limit gone, the automatic budget is half
 * of the machine, measured by the process's resident memory. */
TEST_WITH(test_an_automatic_budget_leaves_the_cgroup_measure_with_its_limit, pressure_setup,
          pressure_teardown)
{
    need_footprint();
    start_measured_by_the_cgroup();
    put(V2DIR "memory.max", "max\n");
    limit_becomes(8 * GiB);
    resident(20 * MiB);
    assert_int_equal(rcl_footprint(), 20 * MiB);
}

/* A parent's limit that comes to bind below the cgroup's own: the budget
 * is the parent's, and so is the usage measured, its children's included. */
TEST_WITH(test_the_cgroup_measure_moves_to_the_level_whose_limit_binds, pressure_setup,
          pressure_teardown)
{
    need_footprint();
    start_measured_by_the_cgroup();
    put("sys/fs/cgroup/app.slice/memory.current", "335544320\n");
    put("sys/fs/cgroup/app.slice/memory.stat", "anon 335544320\ninactive_file 0\n");
    put("sys/fs/cgroup/app.slice/memory.max", "402653184\n");
    limit_becomes(336 * MiB);
    assert_int_equal(rcl_footprint(), 320 * MiB);
}

/* A process moved to another cgroup with the same limit: the usage
 * measured is the new group's. It stayed the old group's, other
 * processes' memory that no longer shares the process's limit. */
TEST_WITH(test_the_cgroup_measure_follows_the_process_to_another_cgroup, pressure_setup,
          pressure_teardown)
{
    need_footprint();
    start_measured_by_the_cgroup();
    fake_v2_next("536870912\n", "104857600\n");
    moved_to_next();
    assert_int_equal(wait_footprint(100 * MiB, 5000), 100 * MiB);
    assert_int_equal(rcl_limit(), 448 * MiB);
}

/* RECLAIM_FOOTPRINT=cgroup is the program's choice: a small limit it sets
 * does not turn the measure off, and a cgroup limit set later makes the
 * cgroup's usage the measure, as it would have been at start. */
TEST_WITH(test_a_forced_cgroup_measure_takes_a_cgroup_limit_set_later, pressure_setup,
          pressure_teardown)
{
    need_footprint();
    fake_v2();
    resident(0);
    put(V2DIR "memory.current", "314572800\n");
    struct rcl_config cfg = test_config(0);
    cfg.pressure = 1;
    cfg.footprint = RCL_FOOTPRINT_CGROUP;
    assert_int_equal(rcl_init(&cfg), 0);
    assert_int_equal(rcl_set_limit(16 * MiB), 0);
    resident(4 * MiB);
    assert_int_equal(rcl_footprint(), 4 * MiB);       /* no cgroup limit: resident */
    put(V2DIR "memory.max", "536870912\n");
    assert_int_equal(wait_footprint(300 * MiB, 5000), 300 * MiB);
    assert_int_equal(rcl_limit(), 16 * MiB);
}

/* Returns with a cancel pending, to act at the thread's next cancellation
 * point. */
static atomic_int cancel_sent, limit_set;

static void wait_for_the_cancel(void)
{
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    while (!atomic_load(&cancel_sent))
        test_sleep_ms(1);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
}

static void *sets_a_limit_with_a_cancel_pending(void *arg)
{
    (void)arg;
    wait_for_the_cancel();
    /* The budget becomes the program's: the footprint stops measuring
     * by the cgroup, and its usage file, open until now, is closed. */
    atomic_store(&limit_set, rcl_set_limit(256 * MiB) == 0);
    test_testcancel();
    return NULL;
}

/* Closing the cgroup's usage file is the library's own business, not a
 * cancellation point of the program's: a cancel pending when
 * rcl_set_limit() takes the footprint off the cgroup takes effect after
 * the call, and the library's locks are free for the next caller. (Acted
 * on inside, it ended the thread with the threads' registry locked, and
 * every allocation's slow path after it waited for ever.) */
TEST_WITH(test_a_pending_cancel_waits_for_a_set_limit_to_leave_the_cgroup_measure,
          pressure_setup, pressure_teardown)
{
    pthread_t th;
    void *ret;

    need_footprint();
    start_measured_by_the_cgroup();
    atomic_store(&cancel_sent, 0);
    atomic_store(&limit_set, 0);
    assert_int_equal(pthread_create(&th, NULL, sets_a_limit_with_a_cancel_pending, NULL), 0);
    assert_int_equal(pthread_cancel(th), 0);
    atomic_store(&cancel_sent, 1);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_ptr_equal(ret, PTHREAD_CANCELED);
    assert_int_equal(atomic_load(&limit_set), 1);
    assert_int_equal(rcl_limit(), 256 * MiB);
    resident(20 * MiB);
    assert_int_equal(rcl_footprint(), 20 * MiB);
}

static atomic_size_t auto_limit_got;

static void *asks_the_auto_limit_with_a_cancel_pending(void *arg)
{
    (void)arg;
    wait_for_the_cancel();
    atomic_store(&auto_limit_got, rcl_auto_limit());
    test_testcancel();
    return NULL;
}

/* rcl_auto_limit()'s reads are the library's own, every one of them: a
 * cancel pending at the call takes effect after it, the machine's memory
 * read under a test's root (which a limit is compared with) too. (That
 * read, the last, was a cancellation point: the call ended there.) */
TEST_WITH(test_a_pending_cancel_waits_for_the_automatic_limit_to_be_read, pressure_setup,
          pressure_teardown)
{
    pthread_t th;
    void *ret;

    fake_v2();
    put(V2DIR "memory.max", "1073741824\n");
    atomic_store(&cancel_sent, 0);
    atomic_store(&auto_limit_got, 0);
    assert_int_equal(pthread_create(&th, NULL, asks_the_auto_limit_with_a_cancel_pending, NULL),
                     0);
    assert_int_equal(pthread_cancel(th), 0);
    atomic_store(&cancel_sent, 1);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_ptr_equal(ret, PTHREAD_CANCELED);
    assert_int_equal(atomic_load(&auto_limit_got), 896 * MiB);
}

/* ------------------------------------------------------------------------ */
/* Pressure                                                                  */
/* ------------------------------------------------------------------------ */

/* Documentation/accounting/psi.rst: "<some|full> <stall amount in us>
 * <time window in us>" written, with its NUL, to the pressure file; here
 * the cgroup's own memory.pressure (v2). */
TEST_WITH(test_psi_trigger_is_written_to_cgroup_memory_pressure, pressure_setup, pressure_teardown)
{
    fake_v2();
    start(64 * MiB, 0);
    char buf[256];
    size_t n = get(V2DIR "memory.pressure", buf, sizeof(buf));
    /* written over the fake file's text, from the start, NUL included */
    assert_true(n >= sizeof("some 150000 1000000"));
    assert_memory_equal(buf, "some 150000 1000000", sizeof("some 150000 1000000"));
}

/* The PSI trigger of a process moved to another v2 cgroup is the new
 * group's: the old group's pressure is other processes', and a removed
 * group's trigger signals nothing again. */
TEST_WITH(test_psi_trigger_follows_the_process_to_another_cgroup, pressure_setup,
          pressure_teardown)
{
    char buf[256];
    fake_v2();
    fake_v2_next("max\n", "1048576\n");
    start(0, 0);
    moved_to_next();
    for (int t = 0; t < 100; t++) {
        get(V2NEXT "memory.pressure", buf, sizeof(buf));
        if (!strncmp(buf, "some 150000", 11))
            break;
        test_sleep_ms(50);
    }
    assert_memory_equal(buf, "some 150000 1000000", sizeof("some 150000 1000000"));
}

/* Without a v2 cgroup the system-wide file is used. */
TEST_WITH(test_psi_trigger_falls_back_to_proc_pressure_memory, pressure_setup, pressure_teardown)
{
    fake_v1();
    put("proc/pressure/memory", "");
    start(64 * MiB, 0);
    char buf[256];
    get("proc/pressure/memory", buf, sizeof(buf));
    assert_string_equal(buf, "some 150000 1000000");
}

/* cgroup usage close to its limit is pressure even while the library's
 * own budget has room: the cache is shrunk by the documented step (at
 * least 1/8 of what the library holds). */
TEST_WITH(test_cgroup_usage_near_limit_shrinks_cache, pressure_setup, pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    start(64 * MiB, 0);
    cache_fill(8 * MiB);
    put(V1DIR "memory.usage_in_bytes", "132120576\n");    /* 126 of 128 MiB */
    ticks_pass(1);                      /* a tick read it, and shrank on its thread */
    assert_true(atomic_load(&cache_freed) >= 1 * MiB);
    assert_true(rcl_usage() < 8 * MiB);
    cache_drop();
}

TEST_WITH(test_cgroup_usage_far_from_limit_shrinks_nothing, pressure_setup, pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    put(V1DIR "memory.usage_in_bytes", "67108864\n");
    start(64 * MiB, 0);
    cache_fill(8 * MiB);
    ticks_pass(2);
    assert_int_equal(atomic_load(&cache_freed), 0);
    cache_drop();
}

/* Inactive page cache is the kernel's to drop first: usage made of it is
 * not pressure on the library's caches. */
TEST_WITH(test_inactive_page_cache_is_not_pressure, pressure_setup, pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    put(V1DIR "memory.usage_in_bytes", "132120576\n");
    put(V1DIR "memory.stat", "cache 41943040\ntotal_inactive_file 41943040\n");
    start(64 * MiB, 0);
    cache_fill(8 * MiB);
    ticks_pass(2);
    assert_int_equal(atomic_load(&cache_freed), 0);
    cache_drop();
}

/* v2 reads memory.current against memory.high/max. */
TEST_WITH(test_v2_usage_near_high_shrinks_cache, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.high", "134217728\n");
    start(64 * MiB, 0);
    cache_fill(8 * MiB);
    put(V2DIR "memory.current", "133169152\n");           /* 127 of 128 MiB */
    ticks_pass(1);                      /* a tick read it, and shrank on its thread */
    assert_true(atomic_load(&cache_freed) >= 1 * MiB);
    cache_drop();
}

/* ------------------------------------------------------------------------ */
/* systemd's memory-pressure protocol                                        */
/* ------------------------------------------------------------------------ */

static void b64(const char *in, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n) v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)in[i + 2];
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
}

/* A PSI file named by $MEMORY_PRESSURE_WATCH gets $MEMORY_PRESSURE_WRITE,
 * base64-decoded, instead of our own trigger. */
TEST_WITH(test_systemd_watch_file_gets_decoded_write_data, pressure_setup, pressure_teardown)
{
    char path[PATH_MAX], enc[128];
    put("run/psi", "");
    snprintf(path, sizeof(path), "%s/run/psi", root);
    b64("full 50000 2000000", enc);
    setenv("MEMORY_PRESSURE_WATCH", path, 1);
    setenv("MEMORY_PRESSURE_WRITE", enc, 1);
    start(64 * MiB, 0);
    char buf[128];
    get("run/psi", buf, sizeof(buf));
    assert_string_equal(buf, "full 50000 2000000");
}

/* Starts the library watching a FIFO named by MEMORY_PRESSURE_WATCH, the
 * background reclaimer on or off, and the cache 8 MiB full; returns the
 * FIFO's end that writes an event. */
static int pressure_fifo_on_a_filled_cache(int background)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/pressure.fifo", root);
    assert_int_equal(mkfifo(path, 0600), 0);
    setenv("MEMORY_PRESSURE_WATCH", path, 1);
    start(64 * MiB, background);
    cache_fill(8 * MiB);
    int fd = open(path, O_WRONLY | O_NONBLOCK);
    assert_true(fd >= 0);
    return fd;
}

/* A FIFO: anything written to it is a pressure event; the library drains
 * it and shrinks by the step. */
TEST_WITH(test_systemd_fifo_event_shrinks_cache, pressure_setup, pressure_teardown)
{
    test_skip_unless_syscalls_read();
    int fd = pressure_fifo_on_a_filled_cache(0);
    assert_int_equal(write(fd, "x", 1), 1);
    event_handled(fd);
    size_t freed = atomic_load(&cache_freed);
    assert_true(freed >= 1 * MiB);
    /* one event, one step: the cache is not emptied */
    assert_true(freed < 6 * MiB);
    close(fd);
    cache_drop();
}

/* The rate limit's clock (rcl__pressure_clock), scripted: it stands
 * where the test puts it, however long the machine takes between events.
 * pressure_teardown puts the library's own back. */
#define MS_NS 1000000ull
static _Atomic unsigned long long scripted_ns;

static unsigned long long scripted_clock(void)
{
    return atomic_load(&scripted_ns);
}

/* What a second event, `gap_ms` after one that shrank the cache by the
 * rate limit's clock, frees: the first event's step, then the second's. */
static void two_events(unsigned long long gap_ms, size_t *first, size_t *second)
{
    atomic_store(&scripted_ns, 1000 * MS_NS);
    atomic_store_explicit(&rcl__pressure_clock, scripted_clock, memory_order_relaxed);
    int fd = pressure_fifo_on_a_filled_cache(0);
    assert_int_equal(write(fd, "x", 1), 1);
    event_handled(fd);                  /* the first step's pass is over */
    *first = atomic_load(&cache_freed);
    atomic_fetch_add(&scripted_ns, gap_ms * MS_NS);
    assert_int_equal(write(fd, "y", 1), 1);
    event_handled(fd);
    *second = atomic_load(&cache_freed) - *first;
    close(fd);
    cache_drop();
}

/* Pressure events ask for a step at most twice a second: an event that
 * comes soon after the one that shrank the cache asks for nothing more.
 * "Soon": 499 ms after it by the rate limit's clock, the last whole
 * millisecond short of half a second. */
TEST_WITH(test_an_event_soon_after_a_shrinking_one_shrinks_nothing_more, pressure_setup,
          pressure_teardown)
{
    size_t first, second;

    test_skip_unless_syscalls_read();
    two_events(499, &first, &second);
    assert_true(first >= 1 * MiB);
    assert_int_equal(second, 0);
}

/* ... and one half a second after it asks for a step again. */
TEST_WITH(test_an_event_half_a_second_after_a_shrinking_one_shrinks_again, pressure_setup,
          pressure_teardown)
{
    size_t first, second;

    test_skip_unless_syscalls_read();
    two_events(500, &first, &second);
    assert_true(first >= 1 * MiB);
    assert_true(second > 0);
}

/* With the background reclaimer on, the pressure event is its work: the
 * shrinking happens in rcl-reclaimd, not in the caller or the watcher. */
TEST_WITH(test_pressure_event_is_handled_by_background_reclaimer, pressure_setup, pressure_teardown)
{
    int fd = pressure_fifo_on_a_filled_cache(1);
    assert_int_equal(write(fd, "x", 1), 1);
    assert_true(wait_freed(1 * MiB));
    pthread_mutex_lock(&shrink_lock);
    char who[16];
    memcpy(who, shrink_thread, sizeof(who));
    pthread_mutex_unlock(&shrink_lock);
    assert_string_equal(who, "rcl-reclaimd");
    rcl_usage_sync();
    assert_true(rcl_usage() <= 7 * MiB);          /* budget itself had room */
    close(fd);
    cache_drop();
}

/* An AF_UNIX stream socket: connected, sent the WRITE data; data coming
 * back is an event. */
TEST_WITH(test_systemd_socket_gets_write_data_and_signals_pressure, pressure_setup, pressure_teardown)
{
    test_skip_unless_syscalls_read();
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/p.sock", root);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 1), 0);
    char enc[64];
    b64("hello", enc);
    setenv("MEMORY_PRESSURE_WATCH", sa.sun_path, 1);
    setenv("MEMORY_PRESSURE_WRITE", enc, 1);
    start(64 * MiB, 0);
    cache_fill(8 * MiB);
    int c = accept(ls, NULL, NULL);
    assert_true(c >= 0);
    char buf[16] = "";
    assert_int_equal(recv(c, buf, 5, MSG_WAITALL), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(send(c, "!", 1, 0), 1);
    event_sent_handled(c);
    assert_true(atomic_load(&cache_freed) >= 1 * MiB);
    close(c);           /* end of stream: the watch closes, no spinning */
    close(ls);
    cache_drop();
}

/* "/dev/null" is systemd's way of saying: no pressure handling. */
TEST_WITH(test_systemd_dev_null_turns_pressure_off, pressure_setup, pressure_teardown)
{
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "134217728\n");
    put(V1DIR "memory.usage_in_bytes", "133169152\n");
    setenv("MEMORY_PRESSURE_WATCH", "/dev/null", 1);
    start(64 * MiB, 0);
    cache_fill(8 * MiB);
    ticks_pass(2);
    assert_int_equal(atomic_load(&cache_freed), 0);
    cache_drop();
}

/* ------------------------------------------------------------------------ */
/* The thread                                                                */
/* ------------------------------------------------------------------------ */

/* utime + stime of a thread, in clock ticks, and its state letter. */
static unsigned long long thread_cpu(pid_t tid, char *st)
{
    char path[PATH_MAX], buf[1024];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    char *p = strrchr(buf, ')') + 2;           /* after "pid (comm) " */
    unsigned long long ut = 0, stt = 0;
    *st = *p;
    /* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    assert_int_equal(sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                            &ut, &stt), 2);
    return ut + stt;
}

TEST_WITH(test_no_pressure_thread_without_pressure, pressure_setup, pressure_teardown)
{
    fake_v1();
    assert_int_equal(test_init(64 * MiB), 0);     /* pressure = 0 */
    assert_true(test_no_thread_named("rcl-pressure"));
}

/* One thread, named, sleeping in poll(): an idle process stays idle. */
TEST_WITH(test_idle_pressure_thread_sleeps_and_uses_no_cpu, pressure_setup, pressure_teardown)
{
    unsetenv("RECLAIM_CGROUP_ROOT");               /* the real system */
    start(64 * MiB, 0);
    int n;
    pid_t tid = test_thread_named("rcl-pressure", &n);
    if (!tid) {
        print_message("no memory cgroup and no PSI here: nothing to watch, no thread\n");
        return;
    }
    assert_int_equal(n, 1);
    char st;
    unsigned long long before = thread_cpu(tid, &st);
    int sleeping = 0;
    for (int i = 0; i < 20; i++) {                 /* 2 s, sampled */
        test_sleep_ms(100);
        thread_cpu(tid, &st);
        sleeping += st == 'S';
    }
    unsigned long long after = thread_cpu(tid, &st);
    /* A busy loop would be runnable at every sample and burn ~200 ticks;
     * two wake-ups reading a few small files take far less than one.
     * Bounds generous enough for a loaded 2-core machine. */
    assert_true(sleeping >= 15);
    assert_true(after - before <= 10);
}

/* The real system's PSI file gets a trigger, held open on an fd. */
TEST_WITH(test_real_psi_trigger_is_registered, pressure_setup, pressure_teardown)
{
    unsetenv("RECLAIM_CGROUP_ROOT");
    if (access("/proc/pressure/memory", F_OK) != 0) {
        print_message("skipped: /proc/pressure/memory is missing (a kernel without PSI, or "
                      "psi=0 on its command line)\n");
        skip();
    }
    start(64 * MiB, 0);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX], target[PATH_MAX];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, target, sizeof(target) - 1);
        if (k <= 0)
            continue;
        target[k] = '\0';
        size_t tl = strlen(target);
        if (!strcmp(target, "/proc/pressure/memory") ||
            (tl > 16 && !strcmp(target + tl - 16, "/memory.pressure")))
            found++;
    }
    closedir(d);
    if (!found && geteuid() != 0) {
        /* unprivileged, on a kernel before 6.5: no trigger may be written */
        print_message("PSI trigger refused to an unprivileged process here; polling only\n");
        return;
    }
    assert_int_equal(found, 1);
}

TEST_WITH(test_shutdown_stops_the_pressure_thread, pressure_setup, pressure_teardown)
{
    fake_v1();
    start(64 * MiB, 0);
    int n;
    assert_int_not_equal(test_thread_named("rcl-pressure", &n), 0);
    rcl_shutdown();
    assert_true(test_no_thread_named("rcl-pressure"));
    /* and again, cleanly */
    start(64 * MiB, 0);
    assert_int_not_equal(test_thread_named("rcl-pressure", &n), 0);
    assert_int_equal(n, 1);
}

/* A report the pressure thread makes is the margin's: a bad margin is
 * reported once for each value and start, by the first to read it. With a
 * limit of the program's the start reads none, and the pressure thread
 * reads it for the budget of the cgroup's limit, at its first look and
 * when the limit moves; the variable is set before the thread starts, as
 * setenv() may not race a getenv(). Waits until `*seen` is set. */
static atomic_int *report_seen;
static bool report_is_seen(void) { return atomic_load(report_seen) != 0; }

static void pressure_thread_reports(atomic_int *seen)
{
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    setenv("RECLAIM_CGROUP_MARGIN", "lots", 1);
    report_seen = seen;
    start(64 * MiB, 0);
    until_or_ticks(report_is_seen, 1);  /* its first look taken */
    put(V2DIR "memory.max", "268435456\n");
    until_or_ticks(report_is_seen, 2);
    assert_int_not_equal(atomic_load(seen), 0);
}

/* A report the pressure thread makes runs the report function there; an
 * rcl_shutdown() it calls would wait for that very thread. */
static atomic_int shutdown_calls;
static void shutdown_from_report(const char *report, void *arg)
{
    char name[16] = "";
    prctl(PR_GET_NAME, name);
    test_report_catch(report, arg);
    if (!strcmp(name, "rcl-pressure") && atomic_fetch_add(&shutdown_calls, 1) == 0)
        rcl_shutdown();
}

TEST_WITH(test_shutdown_from_the_pressure_thread_is_refused, pressure_setup, pressure_teardown)
{
    atomic_store(&shutdown_calls, 0);
    rcl_set_report_fn(shutdown_from_report, NULL);
    pressure_thread_reports(&shutdown_calls);
    for (int t = 0; t < 100 && atomic_load(&shutdown_calls) < 2; t++)
        test_sleep_ms(20);
    assert_int_equal(atomic_load(&shutdown_calls), 2);
    assert_true(test_reports_contain("rcl_shutdown() from the library's pressure thread"));
    test_reports_reset();
    int n;
    assert_int_equal(rcl_limit(), 64 * MiB);       /* still running */
    assert_int_not_equal(test_thread_named("rcl-pressure", &n), 0);
    rcl_shutdown();
    assert_true(test_no_thread_named("rcl-pressure"));
}

/* A child forked there has one thread, the program's, not the library's
 * pressure thread; it is still inside the report function it forked in,
 * so its shutdown is refused as one from a report function. */
static atomic_int child_status, forked, as_report, as_pressure;
static void fork_and_shut_down_in_the_child(const char *report, void *arg)
{
    char name[16] = "";
    prctl(PR_GET_NAME, name);
    if (strstr(report, "from the report function"))
        atomic_fetch_add(&as_report, 1);
    if (strstr(report, "pressure thread"))
        atomic_fetch_add(&as_pressure, 1);
    if (!strcmp(name, "rcl-pressure") && atomic_fetch_add(&forked, 1) == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            rcl_shutdown();
            _exit(atomic_load(&as_pressure) ? 1 : atomic_load(&as_report) ? 2 : 0);
        }
        int status = 0;
        if (pid > 0 && waitpid(pid, &status, 0) == pid)
            atomic_store(&child_status, WIFEXITED(status) ? WEXITSTATUS(status) : 3);
    }
    test_report_catch(report, arg);
}

TEST_WITH(test_child_forked_by_a_pressure_thread_report_is_no_library_thread, pressure_setup,
          pressure_teardown)
{
    atomic_store(&child_status, 0);
    atomic_store(&forked, 0);
    atomic_store(&as_report, 0);
    atomic_store(&as_pressure, 0);
    rcl_set_report_fn(fork_and_shut_down_in_the_child, NULL);
    pressure_thread_reports(&child_status);
    assert_int_equal(atomic_load(&child_status), 2);
    test_reports_reset();
}

/* A report function that forks, on the pressure thread, while another
 * thread shuts the library down: fork() takes the life cycle's lock, so
 * the shutdown waits for the thread without it. */
static atomic_int in_report, report_forks, shutdown_tid;

/* Whether thread tid sleeps joining thread `joined`: glibc's
 * pthread_join() waits in futex(FUTEX_WAIT_BITSET) on the joined thread's
 * tid word, for as long as the word still holds that tid. */
static bool joining(pid_t tid, pid_t joined)
{
    struct test_futex_wait w;

    return test_thread_in_futex(tid, &w) && w.op == 9 /* FUTEX_WAIT_BITSET */ &&
           w.val == (unsigned long long)joined;
}

/* Until the thread about to shut the library down sleeps in the shutdown's
 * join of this thread (the alarm set before it fails a hang). */
static void wait_for_the_shutdown(void)
{
    while (!atomic_load(&shutdown_tid) || !joining(atomic_load(&shutdown_tid), gettid()))
        test_sleep_ms(1);
}

static void fork_from_pressure_report(const char *report, void *arg)
{
    char name[16] = "";
    prctl(PR_GET_NAME, name);
    if (!strcmp(name, "rcl-pressure") && atomic_fetch_add(&in_report, 1) == 0) {
        wait_for_the_shutdown();
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid > 0 && waitpid(pid, NULL, 0) == pid)
            atomic_fetch_add(&report_forks, 1);
    }
    test_report_catch(report, arg);
}

TEST_WITH(test_shutdown_waits_for_a_pressure_thread_report_that_forks, pressure_setup,
          pressure_teardown)
{
    test_skip_unless_syscalls_read();
    atomic_store(&in_report, 0);
    atomic_store(&report_forks, 0);
    atomic_store(&shutdown_tid, 0);
    rcl_set_report_fn(fork_from_pressure_report, NULL);
    pressure_thread_reports(&in_report);
    alarm(30);                          /* a hang fails here, not at the run's limit */
    atomic_store(&shutdown_tid, (int)gettid());
    rcl_shutdown();
    alarm(0);
    assert_int_equal(atomic_load(&report_forks), 1);
    assert_true(test_no_thread_named("rcl-pressure"));
    test_reports_reset();
}

/* A report function on the pressure thread forks, and the child returns
 * from it: the thread the child has is none of the child's pressure
 * thread (that one comes back on demand), and it ends, reported, the
 * child with it, instead of going back to the parent's sources for ever.
 * The child's exit status says whether the report came. */
static atomic_int pressure_forks, pressure_child, pressure_thread_ended;
static void exit_at_once(void) { _exit(atomic_load(&pressure_thread_ended) ? 0 : 4); }

/* Forks; true in the child, which a fault ends as a fault (its status
 * tells it) and whose exit says whether the report came. */
static bool fork_once_from_the_pressure_thread(void)
{
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        test_forked_child_dies_of_its_crashes();
        atexit(exit_at_once);
        return true;
    }
    atomic_store(&pressure_child, pid);
    return false;
}

static void fork_and_return_in_the_child(const char *report, void *arg)
{
    char name[16] = "";
    prctl(PR_GET_NAME, name);
    if (strstr(report, "forked on the library's pressure thread"))
        atomic_store(&pressure_thread_ended, 1);
    if (!strcmp(name, "rcl-pressure") && atomic_fetch_add(&pressure_forks, 1) == 0) {
        if (fork_once_from_the_pressure_thread())
            return;                             /* the child, to the pressure thread */
    }
    test_report_catch(report, arg);
}

/* The child's exit status, or -1 when it had not ended in 20 s (killed). */
static int wait_child(pid_t pid)
{
    int status;
    for (int waited = 0; waited < 20000; waited += 5) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        test_sleep_ms(5);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* clang's ThreadSanitizer runtime faults in its own exit handler
 * (__tsan::TraceSwitchPart) when the last thread of a child forked from a
 * thread other than the main one ends the process; gcc's runs this. */
static bool child_ending_on_the_pressure_thread_unsupported(void)
{
#ifdef __clang__
    return test_under_sanitizer("tsan");
#else
    return false;
#endif
}

/* The start of both tests: skipped where the child's end cannot run, the
 * counts the report function and the scan keep cleared, and the report
 * function that forks (and returns, in the child) in place. */
static void pressure_fork_begin(void)
{
    if (child_ending_on_the_pressure_thread_unsupported()) {
        print_message("skipped: clang's ThreadSanitizer faults in its exit handler when a "
                      "child forked on the pressure thread ends there\n");
        skip();
    }
    atomic_store(&pressure_forks, 0);
    atomic_store(&pressure_child, 0);
    atomic_store(&pressure_thread_ended, 0);
    rcl_set_report_fn(fork_and_return_in_the_child, NULL);
}

TEST_WITH(test_child_forked_on_the_pressure_thread_ends_that_thread, pressure_setup,
          pressure_teardown)
{
    pressure_fork_begin();
    pressure_thread_reports(&pressure_child);
    assert_true(atomic_load(&pressure_child) > 0);
    assert_int_equal(wait_child(atomic_load(&pressure_child)), 0);
    assert_int_equal(atomic_load(&pressure_thread_ended), 0);   /* the child's report only */
    int n;
    assert_int_not_equal(test_thread_named("rcl-pressure", &n), 0);
    assert_int_equal(n, 1);
    test_reports_reset();
}

/* The same from a shrinker's callback in the reclaim the pressure thread
 * does itself, without a background reclaimer, for usage near the
 * cgroup's limit: the child's copy of the thread finishes that reclaim,
 * then ends instead of polling the sources its fork closed for ever. */
static unsigned long forking_count(void *p, struct rcl_shrink_control *sc)
{
    (void)p; (void)sc;
    return 64;
}

static unsigned long forking_scan(void *p, struct rcl_shrink_control *sc)
{
    char name[16] = "";
    (void)p; (void)sc;
    prctl(PR_GET_NAME, name);
    if (strcmp(name, "rcl-pressure") || atomic_fetch_add(&pressure_forks, 1) != 0)
        return 0;
    fork_once_from_the_pressure_thread();       /* the child to the thread's reclaim */
    return 0;
}

TEST_WITH(test_child_forked_in_a_scan_on_the_pressure_thread_ends_that_thread, pressure_setup,
          pressure_teardown)
{
    static const struct rcl_shrinker_ops ops = { .count = forking_count, .scan = forking_scan };
    pressure_fork_begin();
    fake_v2();
    put(V2DIR "memory.high", "134217728\n");
    start(64 * MiB, 0);
    struct rcl_shrinker *s = rcl_shrinker_register("forker", &ops, NULL, NULL);
    assert_non_null(s);
    assert_int_equal(rcl_charge(8 * MiB, RCL_NOWAIT), 0);
    put(V2DIR "memory.current", "133169152\n");           /* 127 of 128 MiB */
    for (int t = 0; t < 250 && !atomic_load(&pressure_child); t++)
        test_sleep_ms(20);
    assert_true(atomic_load(&pressure_child) > 0);
    assert_int_equal(wait_child(atomic_load(&pressure_child)), 0);
    assert_int_equal(atomic_load(&pressure_thread_ended), 0);   /* the child's report only */
    rcl_shrinker_unregister(s);
    rcl_uncharge(8 * MiB);
    test_reports_reset();
}

/* The library's eventfds in this process (stop and cgroup threshold). */
static int eventfds_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) != NULL) {
        char path[PATH_MAX], link[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof(link) - 1);
        if (len > 0) {
            link[len] = '\0';
            n += strstr(link, "eventfd") != NULL;
        }
    }
    if (d)
        closedir(d);
    return n;
}

static char event_control[PATH_MAX];
static atomic_int forker_tid, arming_tid;
static atomic_bool fork_seen_waiting;

/* Lets the pressure thread's open of the FIFO through once the fork waits
 * for it: the forking thread asleep in the lock the arming holds (the
 * pressure thread's fd_lock), not in any futex, which a lock of the
 * allocator's would be too. A fork never seen there (a minute: a hang) is
 * let through as well, and fails the test. Then takes the threshold the
 * arming writes (waiting 2 s at most, should nothing be armed). */
static void *reads_event_control(void *arg)
{
    (void)arg;
    pid_t forker = atomic_load(&forker_tid), arming = atomic_load(&arming_tid);
    for (int ms = 0; ms < TICKS_HANG_MS; ms++) {
        if (test_thread_waits_for_lock_of(forker, arming)) {
            atomic_store(&fork_seen_waiting, true);
            break;
        }
        test_sleep_ms(1);
    }
    int fd = open(event_control, O_RDONLY | O_NONBLOCK);
    char line[64];
    for (int t = 0; fd >= 0 && t < 100 && read(fd, line, sizeof(line)) <= 0; t++)
        test_sleep_ms(20);
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* A child forked while the pressure thread arms the cgroup v1 threshold
 * (its files opened, its eventfd not yet the watcher's) inherited an
 * eventfd and a usage file that nothing in the child closes. Here the
 * arming waits in the open of cgroup.event_control, a FIFO, until a
 * reader comes: the fork waits for it. */
TEST_WITH(test_child_forked_while_the_threshold_is_armed_inherits_no_eventfd, pressure_setup,
          pressure_teardown)
{
    /* The sanitizer builds measure no footprint, and the threshold is
     * armed only for a footprint read from the cgroup. */
    if (test_under_sanitizer("asan") || test_under_sanitizer("tsan")) {
        print_message("skipped: the sanitizer builds measure no footprint\n");
        skip();
    }
    test_skip_unless_lock_waits_read();
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "536870912\n");
    start(0, 0);
    snprintf(event_control, sizeof(event_control), "%s/" V1DIR "cgroup.event_control", root);
    assert_int_equal(mkfifo(event_control, 0600), 0);
    put(V1DIR "memory.limit_in_bytes", "268435456\n");
    pid_t tid = test_thread_named("rcl-pressure", NULL);
    assert_true(tid > 0);
    wait_asleep_in(tid, SYS_openat);            /* the tick re-arms, in the open */
    atomic_store(&forker_tid, (int)gettid());
    atomic_store(&arming_tid, (int)tid);
    atomic_store(&fork_seen_waiting, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reads_event_control, NULL), 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(eventfds_open());
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    pthread_join(th, NULL);
    assert_true(atomic_load(&fork_seen_waiting));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A child's first call starts its pressure thread again, which arms the
 * cgroup v1 threshold for the budget: read without starting the library,
 * which the child is still starting. */
TEST_WITH(test_child_restarts_the_pressure_thread_with_a_v1_threshold, pressure_setup,
          pressure_teardown)
{
    if (test_under_sanitizer("asan") || test_under_sanitizer("tsan")) {
        print_message("skipped: the sanitizer builds measure no footprint\n");
        skip();
    }
    fake_v1();
    put(V1DIR "memory.limit_in_bytes", "536870912\n");
    put(V1DIR "cgroup.event_control", "");
    start(0, 0);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);                      /* a hang fails here */
        rcl_free(rcl_alloc(64, RCL_DEFAULT));
        int n;
        _exit(test_thread_named("rcl-pressure", &n) ? 0 : 1);
    }
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A report function that asks for the statistics, which take the
 * shrinker registry's lock, before it catches the report. */
static void report_reading_stats(const char *report, void *arg)
{
    struct rcl_stats st;

    rcl_stats_get(&st);
    test_report_catch(report, arg);
}

/* The fork handlers reopen the child's resident memory file without
 * looking at RECLAIM_CGROUP_ROOT again: a bad value found there was
 * reported from inside them, the registry's lock and the life cycle's
 * still held, and a report function that called the library waited for
 * itself. The child hung in fork(). */
TEST_WITH(test_child_forked_after_the_cgroup_root_went_bad_reports_nothing_from_fork,
          pressure_setup, pressure_teardown)
{
    need_footprint();
    fake_v2();
    resident(0);
    struct rcl_config cfg = test_config(0);
    cfg.pressure = 0;                   /* no thread of its own reads the root */
    assert_int_equal(rcl_init(&cfg), 0);
    setenv("RECLAIM_CGROUP_ROOT", "relative", 1);
    rcl_set_report_fn(report_reading_stats, NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(test_reports_seen_matching("ignored RECLAIM_CGROUP_ROOT") == 0 ? 0 : 1);
    /* The hang is in the child's fork handlers, before anything it runs
     * could arm a timer: bounded here, the child killed. */
    int status = -1;
    pid_t got = 0;
    for (int ms = 0; ms < 10000 && !(got = waitpid(pid, &status, WNOHANG)); ms += 10)
        test_sleep_ms(10);
    if (!got) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    assert_int_equal(got, pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A limit the program sets while the budget is the automatic one makes it
 * the program's: later cgroup changes leave it alone. */
TEST_WITH(test_limit_set_while_running_is_not_moved_by_the_cgroup, pressure_setup, pressure_teardown)
{
    fake_v2();
    put(V2DIR "memory.max", "536870912\n");
    start(0, 0);
    assert_int_equal(rcl_limit(), 448 * MiB);
    assert_int_equal(rcl_set_limit(300 * MiB), 0);
    put(V2DIR "memory.max", "268435456\n");
    ticks_pass(2);
    assert_int_equal(rcl_limit(), 300 * MiB);
}

TEST_MAIN();
