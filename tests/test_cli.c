/* SPDX-License-Identifier: MIT */
/*
 * test_cli.c - every example answers --help, and names what it rejected
 * when given a bad argument, instead of printing only its usage.
 */
#include "helpers.h"

#include <libgen.h>
#include <limits.h>
#include <sys/wait.h>

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

TEST_MAIN();
