/* SPDX-License-Identifier: MIT */
/*
 * registry.c - the table TEST() fills before main, and the run of it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "test.h"

struct test_entry {
    struct CMUnitTest test;
    int line;
    size_t seq;   /* registration order, for tests one macro defines */
};

static struct test_entry *table;
static size_t table_len, table_cap;

void test_register(const char *name, test_fn fn, CMFixtureFunction setup,
                   CMFixtureFunction teardown, int line)
{
    if (table_len == table_cap) {
        table_cap = table_cap ? 2 * table_cap : 64;
        table = realloc(table, table_cap * sizeof(*table));
        if (!table) {
            fprintf(stderr, "test_register: out of memory\n");
            abort();
        }
    }
    table[table_len] = (struct test_entry){
        .test = { .name = name, .test_func = fn, .setup_func = setup,
                  .teardown_func = teardown },
        .line = line,
        .seq = table_len,
    };
    table_len++;
}

static int by_line(const void *a, const void *b)
{
    const struct test_entry *x = a, *y = b;
    if (x->line != y->line)
        return (x->line > y->line) - (x->line < y->line);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

int test_run_all(CMFixtureFunction group_setup, CMFixtureFunction group_teardown)
{
    qsort(table, table_len, sizeof(*table), by_line);
    struct CMUnitTest *tests = calloc(table_len ? table_len : 1, sizeof(*tests));
    if (!tests)
        return 1;
    for (size_t i = 0; i < table_len; i++)
        tests[i] = table[i].test;
    /* TEST_FILTER=glob runs only the matching tests: one test, many
     * times, when chasing a rare failure. */
    const char *filter = getenv("TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    /* "tests" is the group name the programs printed before; the output
     * tools/run-tests.sh reads is unchanged. */
    int rc = _cmocka_run_group_tests("tests", tests, table_len, group_setup, group_teardown);
    free(tests);
    free(table);
    table = NULL;
    table_len = table_cap = 0;
    return rc;
}
