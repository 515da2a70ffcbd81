/* SPDX-License-Identifier: MIT */
/*
 * test.h - how a test is written: one macro that names it and gives its
 * fixture, and one line at the end of the file that runs them all.
 *
 *   TEST(name) { ... }
 *       the standard fixture: a library initialised with a 64 MiB budget,
 *       reports caught, and a teardown that fails the test if it left
 *       memory charged or a report unread (test_check_clean, fixture.h);
 *   TEST_BARE(name) { ... }
 *       no fixture: the test initialises (or runs) what it needs itself;
 *   TEST_WITH(name, setup, teardown) { ... }
 *       the file's own cmocka fixture (either may be NULL); a setup that
 *       calls test_setup() and a teardown that calls test_teardown() keep
 *       the standard checks;
 *   TEST_MAIN();  or  TEST_MAIN_WITH(group_setup, group_teardown);
 *       once, at the end of the file: runs every test above through cmocka,
 *       in the order of the source (TEST_FILTER=glob in the environment runs
 *       only the tests whose names match).
 *
 * The body sees `void **state` (cmocka's fixture state); most never use it.
 */
#ifndef RCL_TEST_TEST_H
#define RCL_TEST_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

typedef void (*test_fn)(void **state);

void test_register(const char *name, test_fn fn, CMFixtureFunction setup,
                   CMFixtureFunction teardown, int line);
int test_run_all(CMFixtureFunction group_setup, CMFixtureFunction group_teardown);

/* The constructor runs before main and appends the test to the program's
 * table; the line number keeps the table in source order whatever order
 * the compiler runs constructors in. */
#define TEST_WITH(name, setup, teardown)                                    \
    static void name(void **state);                                         \
    __attribute__((constructor)) static void name##__register(void)         \
    {                                                                       \
        test_register(#name, name, setup, teardown, __LINE__);              \
    }                                                                       \
    static void name(void **state __attribute__((unused)))

int test_setup(void **state);
int test_teardown(void **state);

#define TEST(name) TEST_WITH(name, test_setup, test_teardown)
#define TEST_BARE(name) TEST_WITH(name, NULL, NULL)

#define TEST_MAIN_WITH(group_setup, group_teardown)                         \
    int main(void)                                                          \
    {                                                                       \
        return test_run_all(group_setup, group_teardown);                   \
    }                                                                       \
    struct test_main_needs_a_semicolon
#define TEST_MAIN() TEST_MAIN_WITH(NULL, NULL)

#endif
