/* SPDX-License-Identifier: MIT */
/*
 * test_misuse.c - handles used after their object is gone, or with the
 * wrong object: each is caught, reported, and leaves the library's state
 * as it was.
 */
#include "helpers.h"

#include <stdbool.h>

/* ------------------------------------------------------------------------ */
/* Domains                                                                   */
/* ------------------------------------------------------------------------ */

TEST(test_context_of_a_destroyed_domain_does_not_enter_its_successor)
{
    struct rcl_domain *old = rcl_domain_create("old-fs", 1, NULL, NULL);
    assert_non_null(old);
    unsigned tok = rcl_domain_enter(old);
    struct rcl_context ctx, saved;
    rcl_context_capture(&ctx);
    rcl_domain_exit(tok);
    rcl_domain_destroy(old);

    /* Whatever now sits where the old domain was, the context must not
     * name it: cycle until the old slot is in use again. */
    struct rcl_domain *d = rcl_domain_create("new-fs", 1, NULL, NULL);
    for (int i = 0; i < 1000 && d != old; i++) {
        rcl_domain_destroy(d);
        d = rcl_domain_create("new-fs", 1, NULL, NULL);
    }
    assert_ptr_equal(d, old);

    test_reports_reset();
    rcl_context_adopt(&ctx, &saved);
    assert_int_equal(test_report_count(), 1);
    assert_reports_have("destroyed");
    rcl_context_restore(&saved);

    /* Nobody is inside the new domain: it can be destroyed at once. */
    test_reports_reset();
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 0);
}

TEST(test_destroyed_domain_is_refused_by_enter_name_and_depth)
{
    struct rcl_domain *d = rcl_domain_create("gone", 3, NULL, NULL);
    rcl_domain_destroy(d);

    test_reports_reset();
    assert_int_equal(rcl_domain_enter(d), 0);
    assert_int_equal(test_report_count(), 1);
    assert_fails_with(rcl_domain_name(d), EINVAL);
    assert_int_equal(rcl_domain_depth(d), 0);
    rcl_domain_destroy(d);
    assert_reports_have("not a live domain");
}

/* ------------------------------------------------------------------------ */
/* Mempools                                                                  */
/* ------------------------------------------------------------------------ */

TEST(test_mempool_free_to_the_wrong_pool_is_refused)
{
    struct rcl_mempool *small = rcl_mempool_create(1, 16);
    struct rcl_mempool *big = rcl_mempool_create(1, 4096);
    assert_non_null(small);
    assert_non_null(big);

    void *e = rcl_mempool_alloc(small, RCL_DEFAULT);
    assert_non_null(e);
    test_reports_reset();
    rcl_mempool_free(e, big);
    assert_int_equal(test_report_count(), 1);
    assert_reports_have("not from this pool");

    /* big still hands out whole 4096-byte elements (ASan would catch a
     * 16-byte one), and e still belongs to small. */
    void *b[3];
    for (int i = 0; i < 3; i++) {
        b[i] = rcl_mempool_alloc(big, RCL_DEFAULT);
        assert_non_null(b[i]);
        memset(b[i], 0xa5, 4096);
    }
    for (int i = 0; i < 3; i++)
        rcl_mempool_free(b[i], big);
    rcl_mempool_free(e, small);
    assert_int_equal(test_report_count(), 1);
    rcl_mempool_destroy(small);
    rcl_mempool_destroy(big);
    assert_int_equal(test_report_count(), 1);
}

/* ------------------------------------------------------------------------ */
/* LRUs                                                                      */
/* ------------------------------------------------------------------------ */

TEST(test_lru_del_and_touch_of_another_lrus_node_are_refused)
{
    struct rcl_lru *a = rcl_lru_create(), *b = rcl_lru_create();
    struct rcl_lru_node n1, n2;
    rcl_lru_node_init(&n1);
    rcl_lru_node_init(&n2);
    assert_int_equal(rcl_lru_add(a, &n1), 1);
    assert_int_equal(rcl_lru_add(b, &n2), 1);

    test_reports_reset();
    assert_int_equal(rcl_lru_del(b, &n1), -EINVAL);
    assert_int_equal(rcl_lru_touch(b, &n1), -EINVAL);
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("another LRU");
    assert_int_equal(rcl_lru_count(a), 1);
    assert_int_equal(rcl_lru_count(b), 1);

    /* Both lists intact: the right calls work and both can go. */
    assert_int_equal(rcl_lru_touch(a, &n1), 1);
    assert_int_equal(rcl_lru_del(a, &n1), 1);
    assert_int_equal(rcl_lru_del(b, &n2), 1);
    assert_int_equal(rcl_lru_destroy(a), 0);
    assert_int_equal(rcl_lru_destroy(b), 0);
    assert_int_equal(test_report_count(), 2);
}

TEST(test_lru_del_of_a_dispose_list_node_is_refused)
{
    struct rcl_lru *a = rcl_lru_create();
    struct rcl_lru_node n, dispose;
    rcl_lru_node_init(&n);
    rcl_lru_list_init(&dispose);
    rcl_lru_add(a, &n);
    assert_int_equal(rcl_lru_walk(a, NULL, NULL, 10, &dispose), 1);

    test_reports_reset();
    assert_int_equal(rcl_lru_del(a, &n), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(rcl_lru_count(a), 0);
    assert_ptr_equal(rcl_lru_list_pop(&dispose), &n);
    assert_int_equal(rcl_lru_destroy(a), 0);
}

static void noop_free(struct rcl_lru_node *n, void *arg) { (void)n; (void)arg; }

TEST(test_lru_destroy_after_reinit_leaves_the_new_shrinkers_alone)
{
    struct rcl_lru *lru = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(lru, "old-lru", NULL, noop_free, NULL, NULL));
    rcl_shutdown();
    assert_int_equal(test_init(64 * MiB), 0);

    /* Likely at the old shrinker's address: the allocator reuses it. */
    struct test_counter *s = test_counter_new("new", 0, NULL);
    assert_int_equal(rcl_lru_destroy(lru), 0);

    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.nr_shrinkers, 1);
    test_counter_free(s);
    assert_int_equal(test_report_count(), 0);
}

TEST(test_lru_destroy_report_has_one_prefix)
{
    struct rcl_lru *lru = rcl_lru_create();
    struct rcl_lru_node n;
    rcl_lru_node_init(&n);
    rcl_lru_add(lru, &n);
    test_reports_reset();
    assert_int_equal(rcl_lru_destroy(lru), -EBUSY);
    assert_int_equal(test_report_count(), 1);
    assert_null(strstr(test_report_last(), "libreclaim:"));
    rcl_lru_del(lru, &n);
    assert_int_equal(rcl_lru_destroy(lru), 0);
}

TEST_MAIN();
