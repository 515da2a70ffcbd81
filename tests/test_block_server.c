/* SPDX-License-Identifier: MIT */
/*
 * test_block_server.c - the block-server example, end to end: under a tiny
 * budget that is halved while it runs, every request completes and
 * verifies, and the backing file ends up holding every last write.
 */
#include "helpers.h"

#include <limits.h>
#include <sys/wait.h>

/* BUILD/tests/test_block_server runs BUILD/examples/block-server. */
static void example_path(char *out, size_t len)
{
    test_built(out, len, "examples/block-server");
}

/* Runs the example with args, after the shell commands in `before`;
 * returns its exit status, output in out. */
static int run_example_after(const char *before, const char *args, char *out, size_t len)
{
    char path[PATH_MAX], cmd[PATH_MAX + 512];
    example_path(path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "%s exec '%s' %s 2>&1", before, path, args);
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

/* Runs the example with args; returns its exit status, output in out. */
static int run_example(const char *args, char *out, size_t len)
{
    return run_example_after("", args, out, len);
}

static char output[16384];

TEST_BARE(test_serves_every_request_under_a_tiny_squeezed_budget)
{
    char args[128];
    snprintf(args, sizeof(args), "--budget 192K --squeeze 96K --requests %d --quiet",
             test_scale(20000));
    assert_int_equal(run_example(args, output, sizeof(output)), 0);
    assert_string_equal(output, "");        /* --quiet: nothing when all is well */
}

TEST_BARE(test_summary_says_every_request_completed_and_verified)
{
    char args[128];
    int n = test_scale(4000);
    snprintf(args, sizeof(args), "--budget 256K --requests %d --blocks 512 --seed 7", n);
    assert_int_equal(run_example(args, output, sizeof(output)), 0);
    char want[128];
    snprintf(want, sizeof(want), "%d of %d requests completed, %d verified, 0 failed", n, n, n);
    assert_non_null(strstr(output, want));
    assert_non_null(strstr(output, "every block holds its last write"));
    /* The squeeze made the cache shrink. */
    assert_null(strstr(output, " 0 buffers dropped"));
}

TEST_BARE(test_bad_options_exit_2)
{
    assert_int_equal(run_example("--budget lots", output, sizeof(output)), 2);
    assert_non_null(strstr(output, "rejected --budget lots"));
    assert_int_equal(run_example("--requests -5", output, sizeof(output)), 2);
    assert_non_null(strstr(output, "rejected --requests -5"));
    assert_int_equal(run_example("--budget 1M --squeeze 2M", output, sizeof(output)), 2);
    assert_non_null(strstr(output, "rejected --squeeze"));
    assert_int_equal(run_example("stray", output, sizeof(output)), 2);
    assert_non_null(strstr(output, "rejected the argument stray"));
}

/* strtoull() reads "-5" as 2^64 - 5: a budget of 16 EiB, and a run with
 * nothing squeezed, reported as a success. */
TEST_BARE(test_a_negative_size_is_rejected)
{
    assert_int_equal(run_example("--budget -5 --requests 10", output, sizeof(output)), 2);
    assert_non_null(strstr(output, "rejected --budget -5"));
    assert_int_equal(run_example("--budget 1M --squeeze -5 --requests 10", output, sizeof(output)), 2);
    assert_non_null(strstr(output, "rejected --squeeze -5"));
}

/* rand_r() takes an unsigned: 4294967297 ran the mix of seed 1. */
TEST_BARE(test_a_seed_beyond_an_unsigned_is_rejected)
{
    assert_int_equal(run_example("--seed 4294967297 --requests 10", output, sizeof(output)), 2);
    assert_non_null(strstr(output, "rejected --seed 4294967297"));
    assert_int_equal(run_example("--seed 4294967295 --requests 10 --quiet", output,
                                 sizeof(output)), 0);
}

/* Each report the library made (on standard error, one line each) is
 * counted in the summary; a run may have none, or one where the kernel
 * refuses the flusher flag. */
TEST_BARE(test_summary_counts_the_library_reports_it_printed)
{
    assert_int_equal(run_example("--requests 200 --blocks 64", output, sizeof(output)), 0);
    unsigned long printed = 0;
    for (const char *p = output; (p = strstr(p, "block-server: libreclaim: ")) != NULL; p++)
        printed++;
    const char *line = strstr(output, "  libreclaim reports: ");
    assert_non_null(line);
    assert_int_equal(strtoul(line + strlen("  libreclaim reports: "), NULL, 10), printed);
}

/* A directory of the test's own, where --file names "disk". */
static char file_dir[64], file_path[96];

static int file_setup(void **state)
{
    (void)state;
    snprintf(file_dir, sizeof(file_dir), "/tmp/rcl-block-server-XXXXXX");
    if (!mkdtemp(file_dir))
        return -1;
    snprintf(file_path, sizeof(file_path), "%s/disk", file_dir);
    return 0;
}

static int file_teardown(void **state)
{
    (void)state;
    unlink(file_path);
    return rmdir(file_dir);
}

/* A budget too small for the cache's table of the blocks asked for: the
 * server cannot be set up. */
#define NO_ROOM_FOR_THE_TABLE "--budget 128K --blocks 1048576 --requests 10 --file"

/* A file the example made for --file goes again when the server cannot
 * be set up: it was left behind, empty. */
TEST_WITH(test_a_file_it_made_is_removed_when_the_server_cannot_be_set_up, file_setup,
          file_teardown)
{
    char args[192];
    snprintf(args, sizeof(args), NO_ROOM_FOR_THE_TABLE " '%s'", file_path);
    assert_int_equal(run_example(args, output, sizeof(output)), 1);
    assert_non_null(strstr(output, "cannot set up the buffer cache"));
    assert_int_equal(access(file_path, F_OK), -1);
    assert_int_equal(errno, ENOENT);
}

/* The same when its blocks cannot be written, the server set up: it was
 * left behind, partly written. */
TEST_WITH(test_a_file_it_made_is_removed_when_its_blocks_cannot_be_written, file_setup,
          file_teardown)
{
    char args[192];
    snprintf(args, sizeof(args), "--requests 10 --file '%s'", file_path);
    /* 8 blocks of 512 bytes, and EFBIG past them rather than SIGXFSZ. */
    assert_int_equal(run_example_after("ulimit -f 8; trap '' XFSZ;", args, output,
                                       sizeof(output)), 1);
    assert_non_null(strstr(output, "File too large"));
    assert_int_equal(access(file_path, F_OK), -1);
    assert_int_equal(errno, ENOENT);
}

/* A file that was there before is the user's: a server that cannot be set
 * up leaves it as it was, neither removed nor emptied. */
TEST_WITH(test_a_file_that_was_there_is_left_as_it_was_when_the_server_cannot_be_set_up,
          file_setup, file_teardown)
{
    char args[192], back[8] = "";
    FILE *f = fopen(file_path, "w");
    assert_non_null(f);
    assert_true(fputs("theirs\n", f) >= 0);
    fclose(f);
    snprintf(args, sizeof(args), NO_ROOM_FOR_THE_TABLE " '%s'", file_path);
    assert_int_equal(run_example(args, output, sizeof(output)), 1);
    f = fopen(file_path, "r");
    assert_non_null(f);
    assert_non_null(fgets(back, sizeof(back), f));
    fclose(f);
    assert_string_equal(back, "theirs\n");
}

TEST_MAIN();
