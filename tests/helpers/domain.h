/* SPDX-License-Identifier: MIT */
/*
 * domain.h - what the reclaim-domain tests (test_domain*.c) share: a cache
 * per domain with a shrinker that records what it was told, and a fixture
 * that puts the thread's domains, journal cookie and scopes back; and,
 * for them and test_cancel.c, another thread's pass held inside a
 * domain's shrinker while the budget is charged full.
 */
#ifndef RCL_TEST_DOMAIN_H
#define RCL_TEST_DOMAIN_H

#include <stdatomic.h>
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
 * whatever domain is left, and a scope left open is cleared by hand (a
 * captured context takes back no scope), so one failure does not cascade
 * into the next test.
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
    if (rcl_scope_current())
        rcl_scope_restore(rcl_scope_current());
    return test_teardown(state);
}

/* The domains this thread is inside, innermost last. */
static inline unsigned entered(struct rcl_domain **out, unsigned max)
{
    return rcl__domain_entered(out, max);
}

static inline int allow(struct rcl_domain *d, void *arg) { (void)d; (void)arg; return 1; }
static inline int refuse(struct rcl_domain *d, void *arg) { (void)d; (void)arg; return 0; }

/*
 * Another thread's reclaim pass held inside a shrinker of a domain, as a
 * reclaimer that took objects off a list and lost its CPU: the pass that
 * an allocation reclaim left short considers waiting for
 * (docs/design.md, "An allocation fails only when reclaim could free
 * nothing"). The holding thread is in no domain, so the domain's rules
 * never keep it out of the shrinker. Its scan waits for the release for
 * at most HELD_PASS_MS, so a test that fails before it releases does not
 * hang there.
 */
#define HELD_PASS_MS 20000

struct held_pass {
    struct rcl_shrinker *shrinker;
    pthread_t thread;
    atomic_int holding, release;
};

static inline unsigned long held_pass_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    return CACHE_MAX;
}

static inline unsigned long held_pass_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct held_pass *h = priv;
    (void)sc;
    atomic_store(&h->holding, 1);
    for (int ms = 0; ms < HELD_PASS_MS && !atomic_load(&h->release); ms++)
        test_sleep_ms(1);
    return 0;
}

static inline void *held_pass_reclaim(void *arg)
{
    (void)arg;
    rcl_reclaim(WANT, RCL_DEFAULT);
    return NULL;
}

/* Returns once the other thread's pass is inside the shrinker of d. */
static inline void held_pass_start(struct held_pass *h, struct rcl_domain *d)
{
    static const struct rcl_shrinker_ops ops = { held_pass_count, held_pass_scan };
    struct rcl_shrinker_opts o = { .domain = d };

    atomic_store(&h->holding, 0);
    atomic_store(&h->release, 0);
    h->shrinker = rcl_shrinker_register("held", &ops, h, &o);
    assert_non_null(h->shrinker);
    assert_int_equal(pthread_create(&h->thread, NULL, held_pass_reclaim, NULL), 0);
    for (int ms = 0; ms < HELD_PASS_MS && !atomic_load(&h->holding); ms++)
        test_sleep_ms(1);
    assert_true(atomic_load(&h->holding));
}

/* Lets the pass go on; false if it has not ended within HELD_PASS_MS (the
 * thread and the shrinker are then left behind: the test has failed). */
static inline bool held_pass_end(struct held_pass *h)
{
    struct timespec until;

    atomic_store(&h->release, 1);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HELD_PASS_MS / 1000;
    if (pthread_timedjoin_np(h->thread, NULL, &until) != 0)
        return false;
    rcl_shrinker_unregister(h->shrinker);
    return true;
}

/* Charges the budget full, down to the floor an allocation in the default
 * context may reach: the reserve below it stays, for what reclaim itself
 * allocates. Returns what it charged, for rcl_uncharge(). */
static inline size_t charge_until_full(void)
{
    size_t charged = 0;

    for (size_t chunk = 1 * MiB; chunk >= 64; chunk /= 2)
        while (rcl_charge(chunk, RCL_NOWAIT) == 0)
            charged += chunk;
    return charged;
}

#endif
