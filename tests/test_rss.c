/* SPDX-License-Identifier: MIT */
/*
 * test_rss.c - memory the caches give back reaches the operating system:
 * after the background reclaimer shrinks a cache, the process's resident
 * set drops (the backend's trim, glibc malloc_trim(), after a pass that
 * freed a significant amount). Freeing alone would not do it: the blocks
 * the LRU frees first are the oldest, at the bottom of the heap, under
 * the newest ones, where free() cannot shorten the heap.
 */
#include "helpers.h"

#include <stdatomic.h>

#define BLOCK (64 * KiB)

struct block {
    struct rcl_lru_node node;
    char data[BLOCK - sizeof(struct rcl_lru_node)];
};

static _Atomic size_t freed_bytes;

static void block_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    atomic_fetch_add(&freed_bytes, sizeof(struct block));
    rcl_free(RCL_LRU_ENTRY(n, struct block, node));
}

/* Resident bytes, from /proc/self/statm (pages). */
static size_t rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%lu %lu", &size, &res), 2);
    fclose(f);
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static void drop_all(struct rcl_lru *lru)
{
    struct rcl_lru_node dispose, *n;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(lru, NULL, NULL, ~0UL, &dispose);
    while ((n = rcl_lru_list_pop(&dispose)) != NULL)
        rcl_free(RCL_LRU_ENTRY(n, struct block, node));
}

TEST_WITH(test_resident_memory_drops_after_cache_shrinks, NULL, test_teardown)
{
    if (test_under_sanitizer("asan") || test_under_sanitizer("tsan")) {
        /* Their allocators keep freed memory in quarantine or their own
         * caches and do not implement malloc_trim(): RSS says nothing. */
        print_message("skipped under a sanitizer: its allocator does not give memory back\n");
        skip();
    }
    rcl_shutdown();
    struct rcl_config cfg = test_config(512 * MiB);
    cfg.background = 1;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    assert_int_equal(rcl_init(&cfg), 0);

    struct rcl_lru *lru = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(lru, "rss-cache", NULL, block_free, NULL, NULL));
    const size_t nblocks = 1600;                    /* 100 MiB */
    for (size_t i = 0; i < nblocks; i++) {
        struct block *b = rcl_alloc(sizeof(*b), RCL_DEFAULT);
        assert_non_null(b);
        memset(b->data, (int)i, sizeof(b->data));   /* resident for real */
        rcl_lru_node_init(&b->node);
        rcl_lru_add(lru, &b->node);
    }
    size_t full = rss();
    assert_true(full >= 100 * MiB);

    /* The budget shrinks under the cache: the background reclaimer works
     * it back to the high watermark. */
    assert_int_equal(rcl_set_limit(16 * MiB), 0);
    size_t now = full;
    for (int t = 0; t < 200; t++) {                  /* up to 10 s */
        rcl_usage_sync();
        now = rss();
        if (rcl_usage() <= 16 * MiB && now + 64 * MiB <= full)
            break;
        test_sleep_ms(50);
    }
    print_message("rss: %zu MiB with the cache full, %zu MiB after it shrank to %zu MiB "
                  "(%zu MiB freed)\n", full / MiB, now / MiB, rcl_usage() / MiB,
                  atomic_load(&freed_bytes) / MiB);
    assert_true(rcl_usage() <= 16 * MiB);
    assert_true(atomic_load(&freed_bytes) >= 84 * MiB);
    assert_true(now + 64 * MiB <= full);

    drop_all(lru);
    assert_int_equal(rcl_lru_destroy(lru), 0);
}

TEST_MAIN();
