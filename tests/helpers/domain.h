/* SPDX-License-Identifier: MIT */
/*
 * domain.h - what the reclaim-domain tests (test_domain*.c) share: a cache
 * per domain with a shrinker that records what it was told, and a fixture
 * that puts the thread's domains, journal cookie and scopes back.
 */
#ifndef RCL_TEST_DOMAIN_H
#define RCL_TEST_DOMAIN_H

#include <stdbool.h>

#include "helpers.h"
#include "internal.h"   /* rcl__domain_entered: the stack the lock checker reads */

#define OBJ_SIZE (4 * KiB)
#define CACHE_MAX 256

/* Enough to have every shrinker scanned at the lowest priority. */
#define WANT (2 * CACHE_MAX * OBJ_SIZE)

/* A full cache whose shrinker belongs to domain d (NULL: none) and needs
 * the flags `needs`. */
static inline struct test_cache *cache_new(const char *name, struct rcl_domain *d,
                                           rcl_gfp_t needs)
{
    struct rcl_shrinker_opts o = { .domain = d, .needs = needs };
    struct test_cache *c = test_cache_new(name, CACHE_MAX, OBJ_SIZE, &o);
    test_cache_fill(c, CACHE_MAX);
    return c;
}

/*
 * Each test starts and ends with this thread outside every domain, with no
 * journal cookie and no scope, even when a failed assertion left a test
 * half way: restoring a context captured from the clean thread pops
 * whatever is left, so one failure does not cascade into the next test.
 */
static struct rcl_context clean_ctx;
static bool clean_taken;

static inline int domain_setup(void **state)
{
    if (!clean_taken) {
        rcl_context_capture(&clean_ctx);
        clean_taken = true;
    }
    return test_setup(state);
}

static inline int domain_teardown(void **state)
{
    rcl_context_restore(&clean_ctx);
    return test_teardown(state);
}

/* The domains this thread is inside, innermost last. */
static inline unsigned entered(struct rcl_domain **out, unsigned max)
{
    return rcl__domain_entered(out, max);
}

static inline int allow(struct rcl_domain *d, void *arg) { (void)d; (void)arg; return 1; }
static inline int refuse(struct rcl_domain *d, void *arg) { (void)d; (void)arg; return 0; }

#endif
