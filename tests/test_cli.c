/* SPDX-License-Identifier: MIT */
/*
 * test_cli.c - every example answers --help, and names what it rejected
 * when given a bad argument, instead of printing only its usage.
 */
#include "helpers.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs BUILD/examples/NAME with args (this program is BUILD/tests/test_cli);
 * returns its exit status, standard output and error together in out. */
static int run(const char *name, const char *args, char *out, size_t len)
{
    char self[PATH_MAX], cmd[2 * PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    snprintf(cmd, sizeof(cmd), "'%s/../examples/%s' %s 2>&1", dirname(self), name, args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t got = fread(out, 1, len - 1, f);
    out[got] = '\0';
    while (fgetc(f) != EOF)
        ;
    int status = pclose(f);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static char out[16384];

/* The FUSE example is built where libfuse3 is installed. */
static void need_fuse_cache(void)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    snprintf(path, sizeof(path), "%s/../examples/fuse-cache", dirname(self));
    if (access(path, X_OK) != 0) {
        printf("skipped: %s not built (libfuse3-dev missing?)\n", path);
        skip();
    }
}

static bool is_mounted(const char *dir)
{
    char line[4096], pat[PATH_MAX + 2];
    bool hit = false;
    FILE *f = fopen("/proc/self/mountinfo", "r");
    assert_non_null(f);
    snprintf(pat, sizeof(pat), " %s ", dir);
    while (!hit && fgets(line, sizeof(line), f))
        hit = strstr(line, pat) != NULL;
    fclose(f);
    return hit;
}

TEST_BARE(every_example_answers_help)
{
    static const char *const names[] = { "quickstart", "layered-fs", "block-server", "storage-stack" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(run(names[i], "--help", out, sizeof(out)), 0);
        assert_non_null(strstr(out, "usage:"));
    }
}

TEST_BARE(block_server_names_a_budget_too_small)
{
    assert_int_equal(run("block-server", "--budget 64K", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "rejected --budget 64K"));
    assert_non_null(strstr(out, "at least 64 KiB"));
}

TEST_BARE(block_server_names_a_malformed_size)
{
    assert_int_equal(run("block-server", "--squeeze lots", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "rejected --squeeze lots"));
}

/* strtoul() skips blanks before a minus sign and takes " -1" as the
 * largest count there is: refused like "-1", before the backing file (here
 * one that cannot be made) is touched. */
TEST_BARE(block_server_names_a_negative_request_count_after_blanks)
{
    assert_int_equal(run("block-server", "--requests ' -1' --file /nonexistent/disk", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "rejected --requests  -1: not a number"));
}

/* A server that cannot be set up says what it could not make and why,
 * under --quiet too: an error is no chatter, and the library's report of
 * it is not printed there. Here a budget too small for the buffer cache's
 * table of the blocks asked for; it is found before their 256 MiB are
 * written to the backing file. */
TEST_BARE(block_server_names_why_it_cannot_set_up_even_when_quiet)
{
    assert_int_equal(run("block-server", "--budget 64K --squeeze 64K --blocks 65536 --quiet",
                         out, sizeof(out)), 1);
    assert_non_null(strstr(out, "cannot set up the buffer cache"));
    assert_non_null(strstr(out, "in a budget of 64 KiB): Cannot allocate memory"));
}

TEST_BARE(storage_stack_names_an_act_that_does_not_exist)
{
    assert_int_equal(run("storage-stack", "--act 4", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "rejected --act 4"));
    assert_non_null(strstr(out, "1, 2 and 3"));
}

TEST_BARE(storage_stack_names_an_unknown_option)
{
    assert_int_equal(run("storage-stack", "--fast", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "rejected '--fast'"));
}

TEST_BARE(examples_without_options_name_the_argument)
{
    assert_int_equal(run("quickstart", "extra", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "rejected 'extra'"));
    assert_int_equal(run("layered-fs", "-v", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "rejected '-v'"));
}

/* The README's compiling program, the one users copy, runs to its end, and
 * cleanly under the sanitizers too: a data race between its shrinker's
 * count and its cache, which ThreadSanitizer reports, exits 66 there. */
TEST_BARE(quickstart_fills_its_cache_and_ends_cleanly)
{
    assert_int_equal(run("quickstart", "", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "cached "));
    assert_null(strstr(out, "WARNING: ThreadSanitizer"));
}

TEST_BARE(fuse_cache_names_a_thread_count_that_is_no_number)
{
    need_fuse_cache();
    assert_int_equal(run("fuse-cache", "--backing=/dev/null --threads=2x /mnt", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "--threads: 1 to"));
}

/* A daemon that fails between its mount and its first request (here the
 * library refuses a reserve larger than its budget) unmounts before it exits:
 * a dead mount point would answer "Transport endpoint is not connected"
 * until someone cleared it. */
TEST_BARE(fuse_cache_that_cannot_start_leaves_no_mount)
{
    char dir[] = "/tmp/rcl-cli-fuse.XXXXXX", mnt[64], backing[64], args[256];

    need_fuse_cache();
    if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
        printf("skipped: needs root and /dev/fuse to mount\n");
        skip();
    }
    assert_non_null(mkdtemp(dir));
    snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
    snprintf(backing, sizeof(backing), "%s/disk", dir);
    assert_return_code(mkdir(mnt, 0700), errno);
    snprintf(args, sizeof(args), "-f --size=1M --reserve=64M --backing=%s %s", backing, mnt);

    setenv("RECLAIM_LIMIT", "4M", 1);
    int rc = run("fuse-cache", args, out, sizeof(out));
    unsetenv("RECLAIM_LIMIT");
    bool left_mounted = is_mounted(mnt);
    if (left_mounted)
        assert_return_code(umount2(mnt, MNT_DETACH), errno);
    unlink(backing);
    rmdir(mnt);
    rmdir(dir);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "reserve"));
    assert_false(left_mounted);
}

TEST_MAIN();
