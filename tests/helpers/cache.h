/* SPDX-License-Identifier: MIT */
/*
 * cache.h - the shrinkers tests share: a shrinkable test cache (fixed-size
 * objects allocated from the library, a shrinker that frees them on
 * request and records what it was told, and the calls a test fills and
 * empties it with), and a counting shrinker that holds nothing real.
 */
#ifndef RCL_TEST_CACHE_H
#define RCL_TEST_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "reclaim.h"

struct test_cache {
    pthread_mutex_t lock;
    void **obj;
    unsigned n, cap;
    size_t size;
    struct rcl_shrinker *shrinker;
    /* what the last scan saw */
    _Atomic unsigned calls;
    _Atomic rcl_gfp_t last_gfp;
    struct rcl_domain *_Atomic last_domain;
    /* a file-system cache: frees nothing without RCL__FS, as the kernel's
     * super_cache_scan() returns SHRINK_STOP for a !__GFP_FS context */
    bool fs;
};

/* The shrinker's two calls, for a test that builds its own ops around them. */
unsigned long test_cache_count(void *priv, struct rcl_shrink_control *sc);
unsigned long test_cache_scan(void *priv, struct rcl_shrink_control *sc);

/* An empty cache of up to `cap` objects of `size` bytes, its shrinker
 * registered as `name` with `opts` (NULL: the defaults). */
struct test_cache *test_cache_new(const char *name, unsigned cap, size_t size,
                                  const struct rcl_shrinker_opts *opts);
/* The same with the test's own shrinker calls (which may wrap the two
 * above). */
struct test_cache *test_cache_new_ops(const char *name, unsigned cap, size_t size,
                                      const struct rcl_shrinker_ops *ops,
                                      const struct rcl_shrinker_opts *opts);
/* Allocates (RCL_DEFAULT) until the cache holds n objects; fails the test
 * if an allocation fails. */
void test_cache_fill(struct test_cache *c, unsigned n);
/* One object more, allocated with gfp (and NOWARN): false when the
 * allocation failed; a full cache frees the new object at once. */
bool test_cache_add(struct test_cache *c, rcl_gfp_t gfp);
/* Objects held now. */
unsigned test_cache_len(struct test_cache *c);
/* Unregisters the shrinker and frees every object and the cache. */
void test_cache_free(struct test_cache *c);

/*
 * A counting shrinker: says it holds `objects` (0: RCL_SHRINK_EMPTY), frees
 * nothing, and counts the scans it was asked for - for a test that asks
 * only whether reclaim called a shrinker.
 */
struct test_counter {
    unsigned long objects;
    _Atomic unsigned scans;
    struct rcl_shrinker *shrinker;
};
struct test_counter *test_counter_new(const char *name, unsigned long objects,
                                      const struct rcl_shrinker_opts *opts);
unsigned test_counter_scans(struct test_counter *c);
void test_counter_free(struct test_counter *c);

#endif
