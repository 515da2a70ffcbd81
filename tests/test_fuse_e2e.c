/* SPDX-License-Identifier: MIT */
/*
 * test_fuse_e2e.c - the kernel in the loop: examples/fuse-cache serving a
 * loop device with ext4 on it, under a 128 MiB memory cgroup.
 *
 * Each case is one run of tests/fuse_e2e.sh (see there for the stack):
 * 512 MiB written in 1 MiB calls and fsynced, the loop device detached and
 * re-attached, ext4 remounted, every word verified, the daemon's own
 * counters showing the verification's reads came through it. A run whose
 * reader goes away midway takes down all it made.
 *
 * Needs root, /dev/fuse, loop devices, mkfs.ext4 and losetup, a writable
 * v1 memory cgroup, and the example built (libfuse3-dev). Skipped, saying
 * which is missing, elsewhere - and under the sanitizers: their runtimes
 * are not the daemon being measured, and the runs are minutes long.
 *
 * The signal cases run the daemon alone on a mount point of their own, for
 * seconds, under the sanitizers too (root, /dev/fuse and the example
 * only): a signal at any moment unmounts and ends it, and leaves nothing
 * mounted. So do the cases of the connection's other ends: aborted
 * (fusectl), and a worker's read of the device failed (strace's fault
 * injection, the case skipped without strace). So do the cases of what
 * the disk answers: a write across its end, its size after a write past
 * it, fallocate() (and a loop device's discard, skipped without loop
 * devices); and a signal while that size is set back, the write-back it
 * waits for held in the daemon (strace again).
 */
#include "helpers.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define E2E_MIB 512

static char build_dir[PATH_MAX - 64];
static char last_output[16384];

static const char *missing(void)
{
    static char why[PATH_MAX + 64];
    char path[PATH_MAX];

    if (test_sanitizer())
        return "under a sanitizer (the daemon's memory is what is measured; "
               "the runs take minutes): plain pass only";
    if (geteuid() != 0)
        return "needs root (mounts, loop devices, memory cgroups)";
    if (access("/dev/fuse", R_OK | W_OK) != 0)
        return "no /dev/fuse";
    if (access("/sys/fs/fuse/connections", F_OK) != 0)
        return "no fusectl mount point (/sys/fs/fuse/connections): a hang could not be aborted";
    if (access("/dev/loop-control", R_OK | W_OK) != 0)
        return "no loop devices (/dev/loop-control)";
    if (system("command -v mkfs.ext4 >/dev/null 2>&1 && command -v losetup >/dev/null 2>&1") != 0)
        return "mkfs.ext4 or losetup not installed (e2fsprogs, util-linux)";
    snprintf(path, sizeof(path), "/sys/fs/cgroup/memory/rcl-fuse-probe-%d", (int)getpid());
    if (mkdir(path, 0755) != 0)
        return "no writable v1 memory cgroup at /sys/fs/cgroup/memory";
    rmdir(path);
    snprintf(path, sizeof(path), "%s/examples/fuse-cache", build_dir);
    if (access(path, X_OK) != 0) {
        snprintf(why, sizeof(why), "%s not built (libfuse3-dev missing?)", path);
        return why;
    }
    return NULL;
}

static int group_setup(void **state)
{
    (void)state;
    ssize_t n = readlink("/proc/self/exe", build_dir, sizeof(build_dir) - 1);
    if (n <= 0)
        return -1;
    build_dir[n] = '\0';
    *strrchr(build_dir, '/') = '\0';   /* BUILD/tests */
    *strrchr(build_dir, '/') = '\0';   /* BUILD */
    return 0;
}

/* Runs one case with the programs of build; its key=value lines are
 * printed and kept. */
static void run_case_in(const char *build, const char *name)
{
    char cmd[PATH_MAX * 2], script[PATH_MAX];
    assert_non_null(test_source(script, sizeof(script), "tests/fuse_e2e.sh"));
    assert_return_code(access(script, R_OK), errno);
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s' %s 2>&1", script, build, name);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = 0;
    char line[1024];
    last_output[0] = '\0';
    while (fgets(line, sizeof(line), p)) {
        printf("  [%s] %s", name, line);
        if (len + strlen(line) < sizeof(last_output)) {
            strcpy(last_output + len, line);
            len += strlen(line);
        }
    }
    fflush(stdout);
    pclose(p);
}

static void run_case(const char *name)
{
    run_case_in(build_dir, name);
}

/* The value of key=VALUE in the last run's output; -1 when absent. */
static long long figure(const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=", key);
    const char *at = last_output, *hit = NULL;
    while ((at = strstr(at, pat)) != NULL) {
        if (at == last_output || at[-1] == ' ' || at[-1] == '\n')
            hit = at;
        at++;
    }
    return hit ? strtoll(hit + strlen(pat), NULL, 10) : -1;
}

static bool result_is(const char *want)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "result=%s\n", want);
    return strstr(last_output, pat) != NULL;
}

/* Skips the test, saying why, where `why` names what it lacks. */
static void skip_for(const char *why)
{
    if (why) {
        printf("skipped: %s\n", why);
        skip();
    }
}

#define NEED_STACK() skip_for(missing())

/* Every word back, and the reads after the re-attach went through the
 * daemon (its page cache of the disk file is dropped at open). */
static void assert_verified(void)
{
    assert_int_equal(figure("bad_words"), 0);
    assert_int_equal(figure("words"), (long long)E2E_MIB * 1024 * 1024 / 8);
    assert_true(figure("daemon_read_after_remount") >= (long long)E2E_MIB * 1024 * 1024);
}

/* The daemon alone in the cgroup, default configuration (automatic
 * budget): its cache shrinks before the kernel kills it. */
TEST_BARE(test_daemon_alone_in_a_128m_cgroup_is_never_oom_killed)
{
    NEED_STACK();
    run_case("alone");
    assert_int_equal(figure("oom_kills"), 0);
    assert_int_equal(figure("daemon_status"), 0);
    assert_true(result_is("pass"));
    assert_verified();
}

/* Writer and daemon in one cgroup, the situation PR_SET_IO_FLUSHER is
 * for, without the privilege: the daemon's serving threads take no new
 * page (reserve, pre-faulted buffers, O_DIRECT), and the writer never
 * stops for long. */
TEST_BARE(test_daemon_and_writer_in_one_cgroup_never_hang)
{
    NEED_STACK();
    run_case("together");
    assert_true(result_is("pass"));
    assert_int_equal(figure("oom_kills"), 0);
    assert_true(figure("max_gap_ms") >= 0 && figure("max_gap_ms") <= 5000);
    assert_true(figure("max_call_ms") >= 0 && figure("max_call_ms") <= 2000);
    assert_true(figure("psi_full_pct") >= 0 && figure("psi_full_pct") <= 25);
    assert_int_equal(figure("hung_task_lines"), 0);
    assert_verified();
}

/* The control: without the library the same runs must fail, or the two
 * above prove nothing; a naive daemon that survives makes this
 * inconclusive, reported as a skip, never a silent pass. */
static void naive_must_fail(const char *name, bool together)
{
    NEED_STACK();
    run_case(name);
    bool failed = !result_is("pass") || figure("oom_kills") > 0 ||
                  (together && (figure("max_gap_ms") > 5000 || figure("max_call_ms") > 2000 ||
                                figure("psi_full_pct") > 25 || figure("hung_task_lines") > 0));
    /* A run that never reached its verdict, or whose setup broke, is no
     * failure of the daemon. */
    assert_non_null(strstr(last_output, "result="));
    assert_null(strstr(last_output, "result=error"));
    if (!failed) {
        printf("inconclusive: the naive daemon (%s) passed where it should fail\n", name);
        skip();
    }
}

TEST_BARE(test_naive_daemon_alone_fails)
{
    naive_must_fail("naive-alone", false);
}

TEST_BARE(test_naive_daemon_with_writer_fails)
{
    naive_must_fail("naive-together", true);
}

/* A build with the daemon and without the writer. */
static char partial_build[64];

static int partial_build_setup(void **state)
{
    char link[PATH_MAX];
    (void)state;
    snprintf(partial_build, sizeof(partial_build), "/tmp/rcl-fuse-build-XXXXXX");
    if (!mkdtemp(partial_build))
        return -1;
    snprintf(link, sizeof(link), "%s/examples", partial_build);
    if (mkdir(link, 0755) != 0)
        return -1;
    snprintf(link, sizeof(link), "%s/examples/fuse-cache", partial_build);
    char target[PATH_MAX + 32];
    snprintf(target, sizeof(target), "%s/examples/fuse-cache", build_dir);
    return symlink(target, link);
}

static int partial_build_teardown(void **state)
{
    char path[PATH_MAX];
    (void)state;
    snprintf(path, sizeof(path), "%s/examples/fuse-cache", partial_build);
    unlink(path);
    snprintf(path, sizeof(path), "%s/examples", partial_build);
    rmdir(path);
    rmdir(partial_build);
    return 0;
}

/* A run that cannot start its writer is the build's error, said as one,
 * before anything is made; it ran the stack to a broken result, which
 * the naive cases took for the failure of the naive daemon they show,
 * and passed. */
TEST_WITH(test_a_run_without_its_writer_is_an_error_not_a_failed_daemon, partial_build_setup,
          partial_build_teardown)
{
    NEED_STACK();
    run_case_in(partial_build, "naive-alone");
    assert_non_null(strstr(last_output, "result=error "));
    assert_non_null(strstr(last_output, "fuse_writer not built"));
    assert_null(strstr(last_output, "daemon_status="));
}

/* ------------------------------------------------------------------------ */
/* Signals: the daemon on a mount point of its own, nothing stacked on it    */
/* ------------------------------------------------------------------------ */

/* These run the daemon alone for seconds: under the sanitizers too. */
static const char *missing_fuse(void)
{
    static char why[PATH_MAX + 64];
    char path[PATH_MAX];

    if (geteuid() != 0)
        return "needs root (mounts)";
    if (access("/dev/fuse", R_OK | W_OK) != 0)
        return "no /dev/fuse";
    snprintf(path, sizeof(path), "%s/examples/fuse-cache", build_dir);
    if (access(path, X_OK) != 0) {
        snprintf(why, sizeof(why), "%s not built (libfuse3-dev missing?)", path);
        return why;
    }
    return NULL;
}

#define NEED_FUSE() skip_for(missing_fuse())

/* Whether this process may hold CAP_SYS_PTRACE's worth of ptrace: bit 19
 * of the effective set (capabilities(7)). */
static bool may_trace_any(void)
{
    char line[256];
    unsigned long long eff = 0;
    FILE *f = fopen("/proc/self/status", "r");

    if (!f)
        return false;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1)
            break;
    fclose(f);
    return eff >> 19 & 1;
}

/* What strace needs to attach to the daemon, which is not its parent: the
 * tool, and ptrace allowed. Yama (Documentation/admin-guide/LSM/Yama.rst)
 * forbids any attach at 3, and at 1 or 2 one by a tracer that is not an
 * ancestor, unless it holds CAP_SYS_PTRACE. */
static const char *missing_strace(void)
{
    char buf[16];
    int fd, scope = 0;

    if (system("command -v strace >/dev/null 2>&1") != 0)
        return "strace not installed";
    fd = open("/proc/sys/kernel/yama/ptrace_scope", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n > 0) {
            buf[n] = '\0';
            scope = atoi(buf);
        }
    }
    if (scope >= 3)
        return "Yama's ptrace_scope is 3: strace cannot attach to the daemon";
    if (scope >= 1 && !may_trace_any())
        return "Yama's ptrace_scope forbids attaching to a non-child without CAP_SYS_PTRACE";
    return NULL;
}

#define NEED_STRACE() skip_for(missing_strace())

static struct {
    char dir[64], mnt[128], backing[128], log[128], own_log[128], trace_log[128];
    pid_t pid;          /* the daemon, or the process that daemonizes */
    pid_t tracer;       /* strace, injecting a fault into the daemon */
    pid_t stuck[2];     /* processes made to wait on the daemon's mount */
    int   loop;         /* a loop device attached to the disk, or -1 */
} sig;

static int sig_setup(void **state)
{
    (void)state;
    snprintf(sig.dir, sizeof(sig.dir), "/tmp/rcl-fuse-sig-XXXXXX");
    if (!mkdtemp(sig.dir))
        return -1;
    snprintf(sig.mnt, sizeof(sig.mnt), "%s/mnt", sig.dir);
    snprintf(sig.backing, sizeof(sig.backing), "%s/disk.img", sig.dir);
    snprintf(sig.log, sizeof(sig.log), "%s/daemon.log", sig.dir);
    snprintf(sig.own_log, sizeof(sig.own_log), "%s/fuse-cache.log", sig.dir);
    snprintf(sig.trace_log, sizeof(sig.trace_log), "%s/strace.log", sig.dir);
    sig.pid = 0;
    sig.tracer = 0;
    sig.stuck[0] = sig.stuck[1] = 0;
    sig.loop = -1;
    return mkdir(sig.mnt, 0755);
}

/* The minor of the FUSE mount on path, or -1 when nothing is mounted
 * there. Read from mountinfo: the mount itself is never looked at, as a
 * stuck one would not answer. */
static int mount_minor(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[1024];
    int minor = -1;
    while (f && fgets(line, sizeof(line), f)) {
        unsigned maj, min;
        char point[PATH_MAX];
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, point) == 3 &&
            !strcmp(point, path))
            minor = (int)min;
    }
    if (f)
        fclose(f);
    return minor;
}

static bool wait_until(bool (*cond)(void), unsigned ms)
{
    for (unsigned i = 0; i < ms / 10; i++) {
        if (cond())
            return true;
        usleep(10000);
    }
    return cond();
}

static bool sig_mounted(void) { return mount_minor(sig.mnt) >= 0; }
static bool sig_unmounted(void) { return mount_minor(sig.mnt) < 0; }

/* A child's exit status within ms, or -1 (still running). */
static int wait_child(pid_t pid, unsigned ms)
{
    int st;
    for (unsigned i = 0; i <= ms / 10; i++) {
        pid_t got = waitpid(pid, &st, WNOHANG);
        if (got == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (got < 0)
            return -1;
        usleep(10000);
    }
    return -1;
}

/* Starts the example with args and mnt, the backing file added; its
 * standard error goes to sig.log; cwd, when not NULL, is its directory. */
static pid_t start_daemon(const char *cwd, const char *const *args, const char *mnt)
{
    char path[PATH_MAX], backing[PATH_MAX];
    const char *argv[16] = { path, backing };
    int n = 2;
    snprintf(path, sizeof(path), "%s/examples/fuse-cache", build_dir);
    snprintf(backing, sizeof(backing), "--backing=%s", sig.backing);
    while (*args && n < 14)
        argv[n++] = *args++;
    argv[n++] = mnt;
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int log = open(sig.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (log < 0 || dup2(log, 2) < 0 || (cwd && chdir(cwd) != 0))
            _exit(126);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* The pid of a process other than ours holding the file at path open,
 * or 0: the daemon, by its backing file, which it holds from its start to
 * its end, in the background too (no child of ours then). Found by the
 * links in /proc/PID/fd, never by a process's command line: reading that
 * takes the process's memory map lock, and waits for as long as a process
 * stuck on a FUSE request keeps it (one on the daemon's own mount, when
 * the daemon is the one stuck). */
static pid_t find_holder(const char *path)
{
    char dir[64], fd_path[320], link[PATH_MAX];
    pid_t found = 0;
    DIR *proc = opendir("/proc");
    struct dirent *e;
    while (proc && !found && (e = readdir(proc)) != NULL) {
        long pid = strtol(e->d_name, NULL, 10);
        if (pid <= 0 || pid == getpid())
            continue;
        snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
        DIR *fds = opendir(dir);
        struct dirent *f;
        while (fds && !found && (f = readdir(fds)) != NULL) {
            snprintf(fd_path, sizeof(fd_path), "%s/%s", dir, f->d_name);
            ssize_t n = readlink(fd_path, link, sizeof(link) - 1);
            if (n > 0 && (link[n] = '\0', !strcmp(link, path)))
                found = (pid_t)pid;
        }
        if (fds)
            closedir(fds);
    }
    if (proc)
        closedir(proc);
    return found;
}

/* A stuck connection is aborted through fusectl, mounted for the purpose
 * on a directory of our own: the one at /sys/fs/fuse/connections may be
 * another test's, unmounted under us when that test ends. */
static void abort_connection(int minor)
{
    char dir[] = "/tmp/rcl-fusectl-XXXXXX", path[128];
    if (!mkdtemp(dir) || mount("none", dir, "fusectl", 0, NULL) != 0) {
        int err = errno;
        rmdir(dir);
        printf("cannot mount fusectl to abort FUSE connection %d: %s\n", minor, strerror(err));
        return;
    }
    snprintf(path, sizeof(path), "%s/%d/abort", dir, minor);
    int fd = open(path, O_WRONLY);
    if (fd < 0 || write(fd, "1", 1) != 1)
        printf("cannot abort FUSE connection %d: %s\n", minor, strerror(errno));
    if (fd >= 0)
        close(fd);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

/* Whether the kernel has fusectl, the file system that aborts connections. */
static bool have_fusectl(void)
{
    FILE *f = fopen("/proc/filesystems", "r");
    char line[128];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, "\tfusectl\n") != NULL;
    if (f)
        fclose(f);
    return found;
}

/* The daemon's standard error, for a test about to fail. */
static void show_log(void)
{
    FILE *log = fopen(sig.log, "r");
    char line[512];
    while (log && fgets(line, sizeof(line), log))
        printf("  [daemon] %s", line);
    if (log)
        fclose(log);
}

/* Whether the file at path holds text (its first 16 KiB). */
static bool file_has(const char *path, const char *text)
{
    char buf[16384];
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    return strstr(buf, text) != NULL;
}

/* A status the daemon (or the process that daemonized) must end with. */
static void expect_exit(int status, int want)
{
    if (status != want) {
        printf("daemon: exit status %d, not %d (-1: still running)\n", status, want);
        show_log();
        fail();
    }
}

/* Whatever a failed test left: the connection aborted, the daemon ended,
 * the mount point detached, the files removed. */
static int sig_teardown(void **state)
{
    (void)state;
    int minor = mount_minor(sig.mnt);
    pid_t daemon = find_holder(sig.backing);
    if (minor >= 0) {
        printf("left mounted: %s (connection %d); aborted and detached\n", sig.mnt, minor);
        abort_connection(minor);
        umount2(sig.mnt, MNT_DETACH);
    }
    /* A daemon that took its backing file for a mount point. */
    minor = mount_minor(sig.backing);
    if (minor >= 0) {
        printf("left mounted: %s (connection %d); aborted and detached\n", sig.backing, minor);
        abort_connection(minor);
        umount2(sig.backing, MNT_DETACH);
    }
    /* Closed once the connection is aborted: its last close releases the
     * disk, which a stuck daemon would not answer. */
    if (sig.loop >= 0) {
        printf("left attached: a loop device on the disk; detached\n");
        ioctl(sig.loop, LOOP_CLR_FD, 0);
        close(sig.loop);
    }
    if (daemon > 0) {
        printf("daemon %d still running: killed\n", (int)daemon);
        kill(daemon, SIGKILL);
    }
    for (int i = 0; i < 2; i++)
        if (sig.stuck[i] > 0) {
            kill(sig.stuck[i], SIGKILL);
            waitpid(sig.stuck[i], NULL, 0);
        }
    if (sig.tracer > 0 && wait_child(sig.tracer, 0) < 0) {
        kill(sig.tracer, SIGKILL);
        waitpid(sig.tracer, NULL, 0);
    }
    if (sig.pid > 0 && wait_child(sig.pid, 0) < 0) {
        kill(sig.pid, SIGKILL);
        waitpid(sig.pid, NULL, 0);
    }
    unlink(sig.backing);
    unlink(sig.log);
    unlink(sig.own_log);
    unlink(sig.trace_log);
    rmdir(sig.mnt);
    rmdir(sig.dir);
    return 0;
}

/* Starts the daemon on sig's mount point, with args, and waits until it
 * has mounted there. */
static void mount_the_daemon(const char *const *args)
{
    sig.pid = start_daemon(NULL, args, sig.mnt);
    assert_true(sig.pid > 0);
    assert_true(wait_until(sig_mounted, 10000));
}

/* Waits for the daemon to exit; one that did is not killed again at the
 * teardown. */
static int reap_the_daemon(void)
{
    int status = wait_child(sig.pid, 20000);
    if (status >= 0)
        sig.pid = 0;
    return status;
}

/* A SIGTERM: the daemon unmounts and exits with status 0. */
static void stop_the_daemon_cleanly(void)
{
    kill(sig.pid, SIGTERM);
    expect_exit(reap_the_daemon(), 0);
    assert_true(sig_unmounted());
}

/* Mounts the daemon and opens its disk for direct I/O; path is left the
 * disk's, for a test that opens it again. */
static int mount_the_daemon_and_open_its_disk(const char *const *args, char path[PATH_MAX],
                                              int flags)
{
    snprintf(path, PATH_MAX, "%s/disk", sig.mnt);
    mount_the_daemon(args);
    int fd = open(path, flags | O_DIRECT);
    assert_return_code(fd, errno);
    return fd;
}

/* A signal that comes while the daemon starts, mounted but not yet
 * waiting for signals, unmounts as one that comes later does. A large
 * reserve to pre-fault widens that moment. */
TEST_WITH(test_a_signal_while_the_daemon_starts_unmounts_and_exits, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", "--threads=16", "--reserve=256M", NULL };
    mount_the_daemon(args);
    stop_the_daemon_cleanly();
}

static bool sig_daemon_gone(void)
{
    return find_holder(sig.backing) == 0;
}

/* The daemon started in the background with `args` and mounted on "mnt"
 * (relative to sig.dir): its starting process has exited 0; the pid of
 * the daemon, found by its backing file. */
static pid_t start_in_the_background(const char *const *args)
{
    sig.pid = start_daemon(sig.dir, args, "mnt");
    assert_true(sig.pid > 0);
    int status = wait_child(sig.pid, 10000);   /* the parent, once the daemon is up */
    if (status >= 0)
        sig.pid = 0;
    expect_exit(status, 0);
    assert_true(wait_until(sig_mounted, 10000));
    pid_t daemon = find_holder(sig.backing);
    assert_true(daemon > 0);
    return daemon;
}

/* In the background the daemon works from "/" (fuse_daemonize()): a mount
 * point given relative to where it was started is unmounted all the same. */
TEST_WITH(test_a_daemon_in_the_background_unmounts_a_relative_mount_point, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "--size=64M", NULL };
    pid_t daemon = start_in_the_background(args);
    kill(daemon, SIGTERM);
    assert_true(wait_until(sig_daemon_gone, 20000));
    assert_true(sig_unmounted());
}

/* The writer of the next test: one block written, the parent told, the
 * unmount waited for, then more blocks written and read back through the
 * descriptor it still holds. Exit status 0 when every one came back. */
static int writer_after_unmount(int ready)
{
    char path[PATH_MAX];
    unsigned char *buf;
    snprintf(path, sizeof(path), "%s/disk", sig.mnt);
    int fd = open(path, O_RDWR | O_DIRECT);
    if (fd < 0 || posix_memalign((void **)&buf, 4096, 2 * 65536))
        return 2;
    memset(buf, 1, 65536);
    if (pwrite(fd, buf, 65536, 0) != 65536 || write(ready, "1", 1) != 1)
        return 3;
    if (!wait_until(sig_unmounted, 10000))
        return 4;
    for (int i = 1; i <= 16; i++) {
        memset(buf, i, 65536);
        if (pwrite(fd, buf, 65536, (off_t)i * 65536) != 65536 ||
            pread(fd, buf + 65536, 65536, (off_t)i * 65536) != 65536 ||
            memcmp(buf, buf + 65536, 65536) != 0)
            return 5;
    }
    return close(fd) == 0 ? 0 : 6;
}

/* A signal while a file is open on the mount unmounts it, and the I/O
 * that comes after, through the open file, is still served. */
TEST_WITH(test_a_signal_unmounts_and_what_is_open_is_still_served, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    mount_the_daemon(args);

    int pipefd[2];
    assert_return_code(pipe(pipefd), errno);
    fflush(stdout);
    pid_t writer = fork();
    if (writer == 0)
        _exit(writer_after_unmount(pipefd[1]));
    close(pipefd[1]);
    struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
    char c;
    int ready = poll(&p, 1, 10000) == 1 && read(pipefd[0], &c, 1) == 1;
    close(pipefd[0]);

    int minor = mount_minor(sig.mnt);
    kill(sig.pid, SIGTERM);
    int wstatus = wait_child(writer, 20000);
    if (wstatus < 0) {
        /* Stuck on a request the daemon dropped: the connection is aborted
         * (the teardown detaches the mount), then the writer ends. */
        printf("the writer is stuck after the signal\n");
        if (minor >= 0)
            abort_connection(minor);
        kill(writer, SIGKILL);
        waitpid(writer, NULL, 0);
    }
    assert_true(ready);
    assert_int_equal(wstatus, 0);
    int status = reap_the_daemon();
    expect_exit(status, 0);
    assert_true(sig_unmounted());
}

/* The daemon's own words for an abort. */
#define ABORTED_SAID "the FUSE connection was aborted"

/* One block for O_DIRECT I/O through the mount. */
static unsigned char dio_buf[65536] __attribute__((aligned(4096)));

/* The kernel shuts a connection down once the last user of its unmounted
 * mount has gone, and a worker that took that last close's RELEASE off the
 * queue in that moment reads ECONNABORTED from the device, as after an
 * abort. Nothing was aborted: the daemon ends as at any unmount, with
 * status 0 and no word of an abort. The moment is short (about one run in
 * a hundred meets it here, more on a loaded machine): many runs. */
TEST_WITH(test_the_last_close_after_a_signal_is_no_abort, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/disk", sig.mnt);
    memset(dio_buf, 1, sizeof(dio_buf));
    for (int run = 0; run < 40; run++) {
        unlink(sig.log);
        mount_the_daemon(args);
        int fd = open(path, O_RDWR | O_DIRECT);
        assert_return_code(fd, errno);
        assert_int_equal(pwrite(fd, dio_buf, 65536, 0), 65536);
        kill(sig.pid, SIGTERM);
        assert_true(wait_until(sig_unmounted, 10000));
        assert_int_equal(pwrite(fd, dio_buf, 65536, 65536), 65536);
        close(fd);
        int status = reap_the_daemon();
        expect_exit(status, 0);
        if (file_has(sig.log, ABORTED_SAID)) {
            printf("run %d: an abort said where there was none\n", run);
            show_log();
            fail();
        }
    }
}

/* fusectl's abort ends the connection and leaves its mount dead (ENOTCONN
 * for every user) until someone unmounts it: the daemon does so on its way
 * out, says why, and exits 0, as at any end of the connection. */
TEST_WITH(test_an_aborted_connection_is_unmounted_by_the_daemon, sig_setup, sig_teardown)
{
    NEED_FUSE();
    if (!have_fusectl()) {
        printf("skipped: no fusectl in this kernel: a connection cannot be aborted\n");
        skip();
    }
    static const char *const args[] = { "-f", "--size=64M", NULL };
    mount_the_daemon(args);
    abort_connection(mount_minor(sig.mnt));
    int status = reap_the_daemon();
    expect_exit(status, 0);
    assert_true(sig_unmounted());
    assert_true(file_has(sig.log, ABORTED_SAID));
}

/* A read of the backing file that fails (here: the file cut short under
 * the daemon, O_DIRECT reading nothing past its end) fails that request
 * alone, with EIO; the daemon serves on, mounted, and a read once the file
 * is whole again succeeds. */
TEST_WITH(test_a_failed_backing_read_fails_that_request_only, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    char path[PATH_MAX];
    int fd = mount_the_daemon_and_open_its_disk(args, path, O_RDONLY);

    assert_return_code(truncate(sig.backing, 0), errno);
    errno = 0;
    ssize_t n = pread(fd, dio_buf, 65536, 0);
    int err = errno;
    assert_return_code(truncate(sig.backing, 64 << 20), errno);
    assert_int_equal(n, -1);
    assert_int_equal(err, EIO);

    assert_true(sig_mounted());
    assert_int_equal(pread(fd, dio_buf, 65536, 0), 65536);
    close(fd);
    stop_the_daemon_cleanly();
    assert_false(file_has(sig.log, "reading /dev/fuse"));
}

/* A buffered write across the end of the disk: the kernel's write-back
 * of the last page carries what lies past the end with what lies before
 * it, and the part before the end reaches the backing file, as it does
 * through a block device. The request was refused whole, and that part
 * lost. A direct write across the end still fails with ENOSPC (the
 * kernel would turn a short one into EIO), and writes nothing. */
TEST_WITH(test_the_write_back_of_the_last_page_writes_what_lies_before_the_end, sig_setup,
          sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    const off_t size = 64 << 20;
    char path[PATH_MAX], tail[10];
    int fd = mount_the_daemon_and_open_its_disk(args, path, O_RDWR);
    memset(dio_buf, 9, sizeof(dio_buf));
    errno = 0;
    ssize_t across = pwrite(fd, dio_buf, 65536, size - 32768);
    int across_err = errno;
    ssize_t back = pread(fd, dio_buf, 32768, size - 32768);
    close(fd);
    assert_int_equal(across, -1);
    assert_int_equal(across_err, ENOSPC);
    assert_int_equal(back, 32768);
    for (int i = 0; i < 32768; i++)
        assert_int_equal(dio_buf[i], 0);

    fd = open(path, O_RDWR);
    assert_return_code(fd, errno);
    assert_int_equal(pwrite(fd, "ABCDEFGHIJKLMNOPQRST", 20, size - 10), 20);
    (void)fsync(fd);    /* what it says of the part past the end is the kernel's */
    close(fd);
    int backing = open(sig.backing, O_RDONLY);
    assert_return_code(backing, errno);
    ssize_t n = pread(backing, tail, sizeof(tail), size - 10);
    close(backing);
    assert_int_equal(n, 10);
    assert_memory_equal(tail, "ABCDEFGHIJ", 10);

    stop_the_daemon_cleanly();
}

/* The disk's size as the kernel has it (stat() of the mount: the daemon is
 * serving), or -1. */
static off_t sig_disk_size(void)
{
    char path[PATH_MAX];
    struct stat s;
    snprintf(path, sizeof(path), "%s/disk", sig.mnt);
    return stat(path, &s) == 0 ? s.st_size : -1;
}

static bool sig_disk_is_64m(void) { return sig_disk_size() == 64 << 20; }

/* With the write-back cache the kernel keeps the file's size itself: a
 * buffered write past the end of the disk moved it past the end, and no
 * answer of the daemon's (the write-back's short one, the size its
 * attributes give) moved it back. A loop device attached then was larger
 * than the disk, and what it wrote past the end was lost. The size is
 * the disk's again once the write-back has been answered, after a write
 * across the end and after one wholly past it. */
TEST_WITH(test_a_write_past_the_end_leaves_the_disk_its_size, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    const off_t size = 64 << 20;
    char path[PATH_MAX], tail[10];
    snprintf(path, sizeof(path), "%s/disk", sig.mnt);
    mount_the_daemon(args);

    int fd = open(path, O_RDWR);
    assert_return_code(fd, errno);
    assert_int_equal(pwrite(fd, "ABCDEFGHIJKLMNOPQRST", 20, size - 10), 20);
    (void)fsync(fd);    /* what it says of the part past the end is the kernel's */
    close(fd);
    bool across = wait_until(sig_disk_is_64m, 5000);
    off_t after_across = sig_disk_size();

    fd = open(path, O_RDWR);
    assert_return_code(fd, errno);
    assert_int_equal(pwrite(fd, "Z", 1, size + 65536), 1);
    (void)fsync(fd);
    bool past = wait_until(sig_disk_is_64m, 5000);
    off_t after_past = sig_disk_size();
    ssize_t n = pread(fd, tail, sizeof(tail), size - 10);
    ssize_t at_end = pread(fd, tail, 1, size);
    close(fd);

    if (!across || !past)
        printf("the disk's size: %lld after a write across its end, %lld after one past it\n",
               (long long)after_across, (long long)after_past);
    assert_true(across);
    assert_true(past);
    assert_int_equal(n, 10);
    assert_memory_equal(tail, "ABCDEFGHIJ", 10);
    assert_int_equal(at_end, 0);
    stop_the_daemon_cleanly();
}

/* Fills the disk's first four blocks with `byte`, by direct I/O on fd:
 * they are then the daemon's cached blocks too. */
static void fill_four_blocks(int fd, int byte)
{
    memset(dio_buf, byte, sizeof(dio_buf));
    for (int i = 0; i < 4; i++)
        assert_int_equal(pwrite(fd, dio_buf, 65536, (off_t)i * 65536), 65536);
}

/* Whether the first four blocks of the file at fd (direct I/O) hold zeros
 * in [hole, hole + len) and `byte` elsewhere. */
static bool four_blocks_have_hole(int fd, int byte, off_t hole, off_t len)
{
    for (off_t at = 0; at < 4 * 65536; at += 65536) {
        if (pread(fd, dio_buf, 65536, at) != 65536)
            return false;
        for (off_t i = 0; i < 65536; i++) {
            int want = at + i >= hole && at + i < hole + len ? 0 : byte;
            if (dio_buf[i] != want) {
                printf("byte %lld: %d, not %d\n", (long long)(at + i), dio_buf[i], want);
                return false;
            }
        }
    }
    return true;
}

/* The blocks of storage the backing file holds. */
static long long backing_blocks(void)
{
    struct stat s;
    return stat(sig.backing, &s) == 0 ? (long long)s.st_blocks : -1;
}

/* A hole punched in the disk (what a loop device on it does for a discard)
 * is punched in the backing file, and reads back as zeros, through the
 * daemon too: the cached blocks it touches, the partly covered ones
 * included, are dropped. The daemon answered ENOSYS, and the kernel
 * refused every fallocate() on the mount from then on. */
TEST_WITH(test_a_hole_punched_in_the_disk_reads_back_as_zeros, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    const off_t hole = 96 * 1024, len = 104 * 1024;
    char path[PATH_MAX];
    int fd = mount_the_daemon_and_open_its_disk(args, path, O_RDWR);
    fill_four_blocks(fd, 0x5a);
    long long before = backing_blocks();

    assert_return_code(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, hole, len),
                       errno);
    assert_true(four_blocks_have_hole(fd, 0x5a, hole, len));
    close(fd);
    int backing = open(sig.backing, O_RDONLY | O_DIRECT);
    assert_return_code(backing, errno);
    bool punched = four_blocks_have_hole(backing, 0x5a, hole, len);
    close(backing);
    assert_true(punched);
    assert_true(backing_blocks() < before);
    assert_int_equal(sig_disk_size(), 64 << 20);
    stop_the_daemon_cleanly();
}

/* Space allocated in the disk is allocated in the backing file. Past the
 * end it would grow a disk whose size is fixed: refused with EFBIG, the
 * size unchanged; with the size kept, what lies within is allocated and
 * nothing past. */
TEST_WITH(test_space_is_allocated_within_the_disk_and_refused_past_its_end, sig_setup,
          sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    const off_t size = 64 << 20;
    char path[PATH_MAX];
    int fd = mount_the_daemon_and_open_its_disk(args, path, O_RDWR);

    assert_return_code(fallocate(fd, 0, 0, size / 2), errno);
    assert_true(backing_blocks() * 512 >= size / 2);
    errno = 0;
    assert_int_equal(fallocate(fd, 0, size - 65536, 131072), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(sig_disk_size(), size);
    assert_return_code(fallocate(fd, FALLOC_FL_KEEP_SIZE, size - 65536, 131072), errno);
    assert_int_equal(sig_disk_size(), size);
    struct stat s;
    assert_return_code(stat(sig.backing, &s), errno);
    assert_int_equal(s.st_size, size);
    close(fd);
    stop_the_daemon_cleanly();
}

/* A zeroed range is refused with EOPNOTSUPP, as the kernel's own file
 * systems refuse a mode they do not have; the punch and the allocation
 * are still answered after it. ENOSYS would have the kernel refuse them
 * all from then on, itself. */
TEST_WITH(test_other_fallocate_modes_are_refused_and_the_rest_still_served, sig_setup,
          sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    char path[PATH_MAX];
    int fd = mount_the_daemon_and_open_its_disk(args, path, O_RDWR);

    errno = 0;
    assert_int_equal(fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 65536), -1);
    assert_int_equal(errno, EOPNOTSUPP);
    errno = 0;
    assert_int_equal(fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 65536), -1);
    assert_int_equal(errno, EOPNOTSUPP);
    assert_return_code(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 65536),
                       errno);
    assert_return_code(fallocate(fd, 0, 0, 65536), errno);
    close(fd);
    stop_the_daemon_cleanly();
}

/* Attaches a free loop device to the file at path; its descriptor, kept in
 * sig.loop for the teardown. Another test may take the same free device
 * first: tried again. */
static int attach_loop(const char *path)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int file = open(path, O_RDWR | O_CLOEXEC);
    assert_return_code(ctl, errno);
    assert_return_code(file, errno);
    for (int i = 0; i < 20 && sig.loop < 0; i++) {
        char dev[32];
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        assert_return_code(n, errno);
        snprintf(dev, sizeof(dev), "/dev/loop%d", n);
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd >= 0 && ioctl(fd, LOOP_SET_FD, file) == 0)
            sig.loop = fd;
        else if (fd >= 0)
            close(fd);
    }
    close(file);
    close(ctl);
    assert_true(sig.loop >= 0);
    return sig.loop;
}

/* Detaches the loop device: at its last close, ours. */
static void detach_loop(void)
{
    if (sig.loop < 0)
        return;
    ioctl(sig.loop, LOOP_CLR_FD, 0);
    close(sig.loop);
    sig.loop = -1;
}

/* A discard of a loop device attached to the disk (mkfs.ext4 discards the
 * device first) reaches the backing file: punched there, zeros read back.
 * The kernel had the loop device's discard fail with EOPNOTSUPP. */
TEST_WITH(test_a_discard_of_a_loop_device_on_the_disk_punches_the_backing_file, sig_setup,
          sig_teardown)
{
    NEED_FUSE();
    if (access("/dev/loop-control", R_OK | W_OK) != 0) {
        printf("skipped: no loop devices (/dev/loop-control)\n");
        skip();
    }
    static const char *const args[] = { "-f", "--size=64M", NULL };
    const off_t hole = 64 * 1024, len = 128 * 1024;
    char path[PATH_MAX];
    int fd = mount_the_daemon_and_open_its_disk(args, path, O_RDWR);
    fill_four_blocks(fd, 0x3c);
    long long before = backing_blocks();

    int loop = attach_loop(path);
    uint64_t range[2] = { (uint64_t)hole, (uint64_t)len };
    int rc = ioctl(loop, BLKDISCARD, range);
    int err = errno;
    detach_loop();
    if (rc != 0)
        printf("BLKDISCARD: %s\n", strerror(err));
    assert_int_equal(rc, 0);
    assert_true(four_blocks_have_hole(fd, 0x3c, hole, len));
    close(fd);
    assert_true(backing_blocks() < before);
    stop_the_daemon_cleanly();
}

/* The descriptor pid holds /dev/fuse by (its first), or -1. */
static long fuse_fd_of(pid_t pid)
{
    char path[64], link[64];
    for (int fd = 0; fd < 64; fd++) {
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n > 0 && (link[n] = '\0', !strcmp(link, "/dev/fuse")))
            return fd;
    }
    return -1;
}

/* The threads of pid in system call nr, with arg0 its first argument
 * (any, where arg0 is -1), up to max of them in tids; how many. Found by
 * /proc/PID/task/TID/syscall (the call's number and first argument),
 * which waits on no file system. */
static int threads_in_call(pid_t pid, long nr, long arg0, pid_t *tids, int max)
{
    char path[300];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *task = opendir(path);
    struct dirent *e;
    int n = 0;
    while (task && n < max && (e = readdir(task)) != NULL) {
        long got_nr, got_arg0;
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;   /* "..": the process's own, the main thread's */
        snprintf(path, sizeof(path), "/proc/%d/task/%s/syscall", (int)pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fscanf(f, "%ld %lx", &got_nr, &got_arg0) == 2 && got_nr == nr &&
            (arg0 == -1 || got_arg0 == arg0))
            tids[n++] = (pid_t)strtol(e->d_name, NULL, 10);
        if (f)
            fclose(f);
    }
    if (task)
        closedir(task);
    return n;
}

/* A thread of pid waiting in a read of /dev/fuse, or 0. */
static pid_t fuse_reader_thread(pid_t pid)
{
    long fuse_fd = fuse_fd_of(pid);
    pid_t tid;
    return fuse_fd >= 0 && threads_in_call(pid, SYS_read, fuse_fd, &tid, 1) == 1 ? tid : 0;
}

static bool sig_log_has_read_error(void) { return file_has(sig.log, "reading /dev/fuse"); }

/* A worker whose read of the FUSE device fails ends alone: the daemon says
 * so, unmounts as at a signal, and the other worker serves what is still
 * open there; then it exits with status 1. The read is made to fail for
 * real, in the kernel, by strace's fault injection on one worker thread
 * (attached while it waits: the read restarts into the injected EIO). */
TEST_WITH(test_a_worker_that_cannot_read_the_device_ends_alone, sig_setup, sig_teardown)
{
    NEED_FUSE();
    NEED_STRACE();       /* to make a read of /dev/fuse fail */
    static const char *const args[] = { "-f", "--size=64M", "--threads=2", NULL };
    char path[PATH_MAX], tid_arg[16];
    int fd = mount_the_daemon_and_open_its_disk(args, path, O_RDWR);
    memset(dio_buf, 7, sizeof(dio_buf));
    assert_int_equal(pwrite(fd, dio_buf, 65536, 0), 65536);

    pid_t tid = 0;
    for (int i = 0; i < 1000 && !tid; i++, usleep(10000))
        tid = fuse_reader_thread(sig.pid);
    assert_true(tid > 0);
    snprintf(tid_arg, sizeof(tid_arg), "%d", (int)tid);
    fflush(stdout);
    sig.tracer = fork();
    if (sig.tracer == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 1) < 0)
            _exit(126);
        execlp("strace", "strace", "-qq", "-o", "/dev/null", "-p", tid_arg, "-e", "trace=read",
               "-e", "inject=read:error=EIO:when=1", (char *)NULL);
        _exit(127);
    }
    assert_true(sig.tracer > 0);
    bool said = wait_until(sig_log_has_read_error, 10000);
    bool unmounted = wait_until(sig_unmounted, 10000);

    /* The other worker serves what is open. */
    bool served = true;
    for (int i = 1; i <= 8 && served; i++) {
        memset(dio_buf, i, 32768);
        served = pwrite(fd, dio_buf, 32768, (off_t)i * 65536) == 32768 &&
                 pread(fd, dio_buf + 32768, 32768, (off_t)i * 65536) == 32768 &&
                 !memcmp(dio_buf, dio_buf + 32768, 32768);
    }
    close(fd);
    int status = reap_the_daemon();
    if (wait_child(sig.tracer, 10000) < 0) {
        kill(sig.tracer, SIGKILL);
        waitpid(sig.tracer, NULL, 0);
    }
    sig.tracer = 0;
    if (!said)
        show_log();
    assert_true(said);
    assert_true(unmounted);
    assert_true(served);
    expect_exit(status, 1);
}

/* strtoull() reads "-65536" as 2^64 - 65536, a multiple of 64K: the
 * backing file was created, and extending it failed. Options are checked
 * before anything is made (no root needed: nothing is mounted). */
TEST_WITH(test_a_negative_size_is_rejected_before_anything_is_made, sig_setup, sig_teardown)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/examples/fuse-cache", build_dir);
    if (access(path, X_OK) != 0) {
        printf("skipped: %s not built (libfuse3-dev missing?)\n", path);
        skip();
    }
    static const char *const args[] = { "-f", "--size=-65536", NULL };
    sig.pid = start_daemon(NULL, args, sig.mnt);
    assert_true(sig.pid > 0);
    int status = wait_child(sig.pid, 10000);
    if (status >= 0)
        sig.pid = 0;
    expect_exit(status, 2);
    assert_int_equal(access(sig.backing, F_OK), -1);
    assert_true(sig_unmounted());
}

/* Whether the daemon's --log file holds text. */
static bool own_log_has(const char *text) { return file_has(sig.own_log, text); }

static bool own_log_has_stats(void) { return own_log_has("fuse-cache stats: "); }

/* In the background standard error is /dev/null: the statistics SIGUSR1
 * asks for, and those at the unmount, go to the file --log names, given
 * relative to where the daemon was started. */
TEST_WITH(test_a_daemon_in_the_background_writes_its_statistics_to_its_log, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "--size=64M", "--log=fuse-cache.log", NULL };
    pid_t daemon = start_in_the_background(args);
    kill(daemon, SIGUSR1);
    assert_true(wait_until(own_log_has_stats, 10000));
    kill(daemon, SIGTERM);
    assert_true(wait_until(sig_daemon_gone, 20000));
    assert_true(sig_unmounted());
    assert_true(own_log_has("fuse-cache exit: "));
}

/* Mounted over, the backing file would be hidden behind the disk it
 * holds: a usage error, and nothing mounted. */
TEST_WITH(test_the_backing_file_as_mount_point_is_a_usage_error, sig_setup, sig_teardown)
{
    NEED_FUSE();
    int fd = open(sig.backing, O_WRONLY | O_CREAT, 0600);
    assert_return_code(fd, errno);
    assert_return_code(ftruncate(fd, 64 << 20), errno);
    close(fd);
    static const char *const args[] = { "-f", "--size=64M", NULL };
    sig.pid = start_daemon(NULL, args, sig.backing);
    assert_true(sig.pid > 0);
    int status = wait_child(sig.pid, 10000);
    if (status >= 0)
        sig.pid = 0;
    expect_exit(status, 2);
    assert_int_equal(mount_minor(sig.backing), -1);
    assert_true(file_has(sig.log, "it is the backing file"));
}

/* The state letter of pid in /proc/PID/stat ('D': waiting in the kernel,
 * not to be woken by a signal but a fatal one), or 0. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : 0;
}

static bool wait_for_state(pid_t pid, char state, unsigned ms)
{
    for (unsigned i = 0; i <= ms / 10; i++, usleep(10000))
        if (proc_state(pid) == state)
            return true;
    return false;
}

/* Stops the daemon, and returns once every thread of it has stopped: its
 * parent is told then. kill() returns with the signal queued and one
 * thread woken to take it; the others learn of the stop from that one,
 * and until it has run they serve on. A request sent in that moment was
 * answered, and the process meant to wait on a stopped daemon did not. */
static bool stop_the_daemon_whole(unsigned ms)
{
    kill(sig.pid, SIGSTOP);
    for (unsigned i = 0; i <= ms / 10; i++, usleep(10000)) {
        siginfo_t info = { 0 };
        /* Stops only: an exit is left for reap_the_daemon(). */
        if (waitid(P_PID, (id_t)sig.pid, &info, WSTOPPED | WNOHANG) != 0)
            return false;
        if (info.si_pid == sig.pid)
            return true;
    }
    return false;
}

/* The first of the processes made to wait: the disk mapped, and, once
 * told, a mapping of its own asked for. */
static void stuck_mapper(int ready, int go)
{
    char path[PATH_MAX], c;
    snprintf(path, sizeof(path), "%s/disk", sig.mnt);
    int fd = open(path, O_RDONLY);
    void *disk = fd < 0 ? MAP_FAILED : mmap(NULL, 65536, PROT_READ, MAP_SHARED, fd, 0);
    if (disk == MAP_FAILED || write(ready, &disk, sizeof(disk)) != sizeof(disk) ||
        read(go, &c, 1) != 1)
        _exit(2);
    _exit(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED);
}

/* The second: it reads the first's mapping of the disk through
 * /proc/PID/mem, which holds the first's memory map lock while the page
 * is read from the mount. */
static void stuck_reader(pid_t mapper, void *disk)
{
    char path[64], c;
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)mapper);
    int fd = open(path, O_RDONLY);
    _exit(fd < 0 || pread(fd, &c, 1, (off_t)(uintptr_t)disk) != 1);
}

/* A process on the machine stuck on the daemon's mount, the daemon
 * stopped, holding its memory map lock with a writer of it waiting: the
 * daemon is found all the same, within seconds. The tests found it by
 * every process's command line, whose read waits on that lock: for as
 * long as the process stays stuck, and so, when the daemon is the one
 * stuck, for ever, in the teardown that was to abort its connection.
 * The daemon is stopped whole before the read is made: kill() alone left
 * it serving for a moment, and on a loaded machine (one ASan run in eight
 * here) it answered the read, which then never waited. */
TEST_WITH(test_the_daemon_is_found_while_a_process_is_stuck_on_its_mount, sig_setup, sig_teardown)
{
    NEED_FUSE();
    static const char *const args[] = { "-f", "--size=64M", NULL };
    int ready[2], go[2];
    void *disk = NULL;
    mount_the_daemon(args);
    assert_return_code(pipe(ready), errno);
    assert_return_code(pipe(go), errno);
    fflush(stdout);
    /* Each child holds only its own ends of the pipes: the mapper ends
     * when go is closed untold (the test gave up before the reader
     * waited), and takes its hold on the mount with it; one that held go
     * itself waited for ever, the daemon could not end at its signal, and
     * the teardown killed both. */
    sig.stuck[0] = fork();
    if (sig.stuck[0] == 0) {
        close(ready[0]);
        close(go[1]);
        stuck_mapper(ready[1], go[0]);
    }
    close(ready[1]);
    close(go[0]);
    struct pollfd p = { .fd = ready[0], .events = POLLIN };
    bool mapped = poll(&p, 1, 10000) == 1 && read(ready[0], &disk, sizeof(disk)) == sizeof(disk);
    close(ready[0]);

    /* The daemon stopped, a read of the mapping waits on it, and the
     * mapper's own mmap() waits for the lock that read holds. */
    bool stopped = stop_the_daemon_whole(10000);
    if (mapped && stopped) {
        sig.stuck[1] = fork();
        if (sig.stuck[1] == 0) {
            close(go[1]);
            stuck_reader(sig.stuck[0], disk);
        }
    }
    bool reader_waits = mapped && stopped && wait_for_state(sig.stuck[1], 'D', 5000);
    bool mapper_waits = reader_waits && write(go[1], "1", 1) == 1 &&
                        wait_for_state(sig.stuck[0], 'D', 5000);
    close(go[1]);

    int found = -1;
    if (mapper_waits) {
        fflush(stdout);
        pid_t finder = fork();
        if (finder == 0)
            _exit(find_holder(sig.backing) == sig.pid ? 0 : 1);
        found = wait_child(finder, 5000);
        if (found < 0) {
            printf("the daemon's lookup still waits after 5 s\n");
            kill(finder, SIGKILL);
            waitpid(finder, NULL, 0);
        }
    }
    kill(sig.pid, SIGCONT);
    for (int i = 0; i < 2; i++)
        if (sig.stuck[i] > 0 && wait_child(sig.stuck[i], 10000) >= 0)
            sig.stuck[i] = 0;
    kill(sig.pid, SIGTERM);
    int status = reap_the_daemon();
    assert_true(mapped);
    assert_true(stopped);
    assert_true(reader_waits);
    if (!mapper_waits) {
        printf("skipped: this kernel reads /proc/PID/mem without holding the map lock "
               "across the page's read: no writer of it waits\n");
        skip();
    }
    assert_int_equal(found, 0);
    expect_exit(status, 0);
    assert_true(sig_unmounted());
}

/* ------------------------------------------------------------------------ */
/* A signal while the disk's size is set back                                */
/* ------------------------------------------------------------------------ */

/* The two worker threads of the next test, held by strace. */
static pid_t held[2];

/* Whether strace says it has attached to both: from then on each stops
 * at its next system call (strace seizes and interrupts it at once). */
static bool both_workers_held(void)
{
    for (int i = 0; i < 2; i++) {
        char said[64];
        snprintf(said, sizeof(said), "Process %d attached", (int)held[i]);
        if (!file_has(sig.trace_log, said))
            return false;
    }
    return true;
}

/* Strace on the workers, their backing writes held at entry (a delay no
 * test outlasts) until it is ended: a write-back stuck in the daemon. */
static pid_t hold_backing_writes(void)
{
    char tids[2][16];
    for (int i = 0; i < 2; i++)
        snprintf(tids[i], sizeof(tids[i]), "%d", (int)held[i]);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int log = open(sig.trace_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (log < 0 || dup2(log, 2) < 0)
            _exit(126);
        execlp("strace", "strace", "-o", "/dev/null", "-p", tids[0], "-p", tids[1], "-e",
               "trace=pwrite64", "-e", "inject=pwrite64:delay_enter=3600s", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Strace ended: it detaches, and the held write goes on. */
static void release_backing_writes(void)
{
    if (sig.tracer <= 0)
        return;
    kill(sig.tracer, SIGTERM);
    if (wait_child(sig.tracer, 10000) < 0) {
        kill(sig.tracer, SIGKILL);
        waitpid(sig.tracer, NULL, 0);
    }
    sig.tracer = 0;
}

/* Whether a thread of the daemon is held by strace in a backing write, and
 * one waits in the kernel ('D') in the truncate that sets the size back. */
static bool set_back_waits_on_held_write(void)
{
    pid_t writer, setter;
    return threads_in_call(sig.pid, SYS_pwrite64, -1, &writer, 1) == 1 &&
           proc_state(writer) == 't' &&
           threads_in_call(sig.pid, SYS_truncate, -1, &setter, 1) == 1 &&
           proc_state(setter) == 'D';
}

/* The process of the next test that writes: a page at the start of the
 * disk and a byte past its end, through the page cache, and their
 * write-back begun, not waited for. Its exit waits for it (the last close
 * flushes). */
static int write_past_the_end_and_start_the_write_back(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/disk", sig.mnt);
    int fd = open(path, O_RDWR);
    memset(dio_buf, 4, 4096);
    if (fd < 0 || pwrite(fd, dio_buf, 4096, 0) != 4096 ||
        pwrite(fd, "Z", 1, (64 << 20) + 65536) != 1)
        return 2;
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : 3;
}

/* The truncate that sets the disk's size back after a write-back past its
 * end waits, in the kernel, for the write-backs in flight. One stuck in a
 * worker's backing write held the main thread there, which made the
 * set-back, and with it the daemon's signals: a SIGTERM unmounted nothing
 * until the write-back ended. It unmounts now while the write-back is
 * stuck; once that ends, the set-back completes and the daemon exits 0. */
TEST_WITH(test_a_signal_unmounts_while_the_size_set_back_waits_on_a_stuck_write_back, sig_setup,
          sig_teardown)
{
    NEED_FUSE();
    NEED_STRACE();       /* to hold a write-back in the daemon */
    static const char *const args[] = { "-f", "--size=64M", "--threads=2", NULL };
    mount_the_daemon(args);
    long fuse_fd = fuse_fd_of(sig.pid);
    int workers = 0;
    for (int i = 0; i < 1000 && workers < 2 && fuse_fd >= 0; i++, usleep(10000))
        workers = threads_in_call(sig.pid, SYS_read, fuse_fd, held, 2);
    assert_int_equal(workers, 2);
    sig.tracer = hold_backing_writes();
    assert_true(sig.tracer > 0);

    /* Nothing asserted until the write is let go: a daemon killed with a
     * thread waiting on it would never end. */
    bool are_held = wait_until(both_workers_held, 10000);
    if (are_held) {
        fflush(stdout);
        sig.stuck[0] = fork();
        if (sig.stuck[0] == 0)
            _exit(write_past_the_end_and_start_the_write_back());
    }
    bool set_back_waits = are_held && wait_until(set_back_waits_on_held_write, 10000);
    kill(sig.pid, SIGTERM);
    bool unmounted = set_back_waits && wait_until(sig_unmounted, 20000);
    release_backing_writes();
    int writer = sig.stuck[0] > 0 ? wait_child(sig.stuck[0], 20000) : -1;
    if (writer >= 0)
        sig.stuck[0] = 0;
    int status = reap_the_daemon();

    assert_true(are_held);
    assert_true(set_back_waits);
    if (!unmounted)
        printf("still mounted 20 s after SIGTERM, while the set-back waited\n");
    assert_true(unmounted);
    assert_int_equal(writer, 0);
    expect_exit(status, 0);
    assert_true(sig_unmounted());
    assert_true(file_has(sig.log, "its size set back"));
}

/* ------------------------------------------------------------------------ */
/* A run whose reader goes away                                              */
/* ------------------------------------------------------------------------ */

/* The run of fuse_e2e.sh the next test starts: its shell's pid, which
 * names everything the run makes (rcl-fuse-PID-alone). */
static struct {
    pid_t sh;
    char  id[64];
} gone;

static int gone_setup(void **state)
{
    (void)state;
    gone.sh = 0;
    gone.id[0] = '\0';
    return 0;
}

/* Mount points under the run's directory, topmost last. */
static int gone_mounts(char points[][PATH_MAX], int minors[], bool fuse[], int max)
{
    char prefix[128], line[PATH_MAX + 512];
    int n = 0;
    snprintf(prefix, sizeof(prefix), "/tmp/%s.", gone.id);
    FILE *f = fopen("/proc/self/mountinfo", "r");
    while (f && n < max && fgets(line, sizeof(line), f)) {
        unsigned maj, min;
        char *sep = strstr(line, " - ");
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, points[n]) == 3 &&
            !strncmp(points[n], prefix, strlen(prefix))) {
            minors[n] = (int)min;
            fuse[n] = sep && !strncmp(sep + 3, "fuse ", 5);
            n++;
        }
    }
    if (f)
        fclose(f);
    return n;
}

/* Detaches the loop devices whose backing file is under the run's
 * directory (busy ones are detached at their last close). */
static void gone_detach_loops(void)
{
    char prefix[128];
    glob_t g;
    snprintf(prefix, sizeof(prefix), "/tmp/%s.", gone.id);
    if (glob("/sys/block/loop*/loop/backing_file", 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char file[PATH_MAX] = "", dev[64];
        FILE *f = fopen(g.gl_pathv[i], "r");
        if (!f)
            continue;
        bool ours = fgets(file, sizeof(file), f) && !strncmp(file, prefix, strlen(prefix));
        fclose(f);
        unsigned n;
        if (!ours || sscanf(g.gl_pathv[i], "/sys/block/loop%u/", &n) != 1)
            continue;
        printf("left attached: /dev/loop%u; detached\n", n);
        snprintf(dev, sizeof(dev), "/dev/loop%u", n);
        int fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ioctl(fd, LOOP_CLR_FD, 0);
            close(fd);
        }
    }
    globfree(&g);
}

/* Whatever the run left: its shell ended, its FUSE connection aborted
 * (nothing below can then wait on it), its mounts and loop devices
 * detached, its daemon ended by its memory cgroup, the cgroup and its
 * files removed. Nothing here looks at a mount or at another process's
 * memory: a stuck one would not answer. */
static int gone_teardown(void **state)
{
    static char points[8][PATH_MAX];
    int minors[8];
    bool fuse[8];
    char path[PATH_MAX], line[32];
    (void)state;
    if (gone.sh > 0 && wait_child(gone.sh, 0) < 0) {
        kill(gone.sh, SIGKILL);
        waitpid(gone.sh, NULL, 0);
    }
    if (!gone.id[0])
        return 0;
    int n = gone_mounts(points, minors, fuse, 8);
    for (int i = 0; i < n; i++)
        if (fuse[i])
            abort_connection(minors[i]);
    for (int i = n; i-- > 0;)
        if (!fuse[i]) {
            printf("left mounted: %s; detached\n", points[i]);
            umount2(points[i], MNT_DETACH);
        }
    gone_detach_loops();
    for (int i = n; i-- > 0;)
        if (fuse[i]) {
            printf("left mounted: %s (connection %d); aborted and detached\n", points[i],
                   minors[i]);
            umount2(points[i], MNT_DETACH);
        }
    snprintf(path, sizeof(path), "/sys/fs/cgroup/memory/%s/cgroup.procs", gone.id);
    FILE *procs = fopen(path, "r");
    while (procs && fgets(line, sizeof(line), procs)) {
        printf("left running in the run's cgroup: %d; killed\n", atoi(line));
        kill(atoi(line), SIGKILL);
    }
    if (procs)
        fclose(procs);
    snprintf(path, sizeof(path), "/sys/fs/cgroup/memory/%s", gone.id);
    for (int t = 0; t < 100 && rmdir(path) != 0 && errno == EBUSY; t++)
        usleep(20000);
    snprintf(path, sizeof(path), "/sys/fs/cgroup/unified/%s", gone.id);
    rmdir(path);
    snprintf(path, sizeof(path), "rm -rf /tmp/%s.*", gone.id);
    if (system(path) != 0)
        printf("cannot remove /tmp/%s.*\n", gone.id);
    return 0;
}

/* Whether anything the run made is still there. */
static bool gone_left_something(void)
{
    static char points[8][PATH_MAX];
    int minors[8];
    bool fuse[8];
    char path[PATH_MAX];
    glob_t g;
    bool left = gone_mounts(points, minors, fuse, 8) > 0;
    snprintf(path, sizeof(path), "/sys/fs/cgroup/memory/%s", gone.id);
    left |= access(path, F_OK) == 0;
    snprintf(path, sizeof(path), "/sys/fs/cgroup/unified/%s", gone.id);
    left |= access(path, F_OK) == 0;
    snprintf(path, sizeof(path), "/tmp/%s.*", gone.id);
    left |= glob(path, 0, NULL, &g) == 0;
    globfree(&g);
    return left;
}

/* The test reading a run's lines ends before the run does (the runner
 * killed it at its time limit, say): the run's next line
 * meets a pipe with no reader. It ends there, and takes down everything
 * it made, as at any other end; SIGPIPE ended it with the daemon mounted
 * in its cgroup, ext4 mounted on a loop device attached to the disk. */
TEST_WITH(test_a_run_whose_reader_goes_away_takes_down_what_it_made, gone_setup, gone_teardown)
{
    NEED_STACK();
    char script[PATH_MAX], line[256];
    int p[2];
    assert_non_null(test_source(script, sizeof(script), "tests/fuse_e2e.sh"));
    assert_return_code(pipe(p), errno);
    fflush(stdout);
    gone.sh = fork();
    if (gone.sh == 0) {
        if (dup2(p[1], 1) < 0 || dup2(p[1], 2) < 0)
            _exit(126);
        close(p[0]);
        close(p[1]);
        setenv("FUSE_E2E_MIB", "16", 1);
        execl("/bin/sh", "sh", script, build_dir, "alone", (char *)NULL);
        _exit(127);
    }
    assert_true(gone.sh > 0);
    snprintf(gone.id, sizeof(gone.id), "rcl-fuse-%d-alone", (int)gone.sh);
    close(p[1]);

    /* The run's first line, then its reader gone. */
    size_t len = 0;
    struct pollfd pfd = { .fd = p[0], .events = POLLIN };
    while (len + 1 < sizeof(line) && poll(&pfd, 1, 120000) == 1 &&
           read(p[0], line + len, 1) == 1 && line[len] != '\n')
        len++;
    line[len] = '\0';
    close(p[0]);
    printf("  [alone] %s\n", line);
    assert_non_null(strstr(line, "writer_status="));

    int status = wait_child(gone.sh, 120000);
    if (status >= 0)
        gone.sh = 0;
    printf("the run ended with status %d\n", status);
    assert_true(status >= 0);
    assert_false(gone_left_something());
}

TEST_MAIN_WITH(group_setup, NULL);
