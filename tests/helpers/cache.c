/* SPDX-License-Identifier: MIT */
#include "helpers.h"
#include "cache.h"

unsigned long test_cache_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)sc;
    unsigned long n = test_cache_len(priv);
    return n ? n : RCL_SHRINK_EMPTY;
}

unsigned long test_cache_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct test_cache *c = priv;
    atomic_fetch_add(&c->calls, 1);
    atomic_store(&c->last_gfp, sc->gfp);
    atomic_store(&c->last_domain, sc->domain);
    if (c->fs && !(sc->gfp & RCL__FS))
        return RCL_SHRINK_STOP;
    unsigned long freed = 0;
    pthread_mutex_lock(&c->lock);
    while (c->n > 0 && freed < sc->nr_to_scan) {
        rcl_free(c->obj[--c->n]);
        freed++;
    }
    pthread_mutex_unlock(&c->lock);
    return freed;
}

struct test_cache *test_cache_new(const char *name, unsigned cap, size_t size,
                                  const struct rcl_shrinker_opts *opts)
{
    static const struct rcl_shrinker_ops ops = { test_cache_count, test_cache_scan };
    return test_cache_new_ops(name, cap, size, &ops, opts);
}

struct test_cache *test_cache_new_ops(const char *name, unsigned cap, size_t size,
                                      const struct rcl_shrinker_ops *ops,
                                      const struct rcl_shrinker_opts *opts)
{
    struct test_cache *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->obj = calloc(cap, sizeof(void *));
    assert_non_null(c->obj);
    pthread_mutex_init(&c->lock, NULL);
    c->cap = cap;
    c->size = size;
    c->shrinker = rcl_shrinker_register(name, ops, c, opts);
    assert_non_null(c->shrinker);
    return c;
}

void test_cache_fill(struct test_cache *c, unsigned n)
{
    pthread_mutex_lock(&c->lock);
    while (c->n < n && c->n < c->cap) {
        void *p = rcl_alloc(c->size, RCL_DEFAULT);
        assert_non_null(p);
        c->obj[c->n++] = p;
    }
    pthread_mutex_unlock(&c->lock);
}

bool test_cache_add(struct test_cache *c, rcl_gfp_t gfp)
{
    void *p = rcl_alloc(c->size, gfp | RCL__NOWARN);
    if (!p)
        return false;
    pthread_mutex_lock(&c->lock);
    if (c->n < c->cap) {
        c->obj[c->n++] = p;
        p = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    rcl_free(p);
    return true;
}

unsigned test_cache_len(struct test_cache *c)
{
    pthread_mutex_lock(&c->lock);
    unsigned n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

void test_cache_free(struct test_cache *c)
{
    rcl_shrinker_unregister(c->shrinker);
    while (c->n > 0)
        rcl_free(c->obj[--c->n]);
    pthread_mutex_destroy(&c->lock);
    free(c->obj);
    free(c);
}

static unsigned long counter_count(void *priv, struct rcl_shrink_control *sc)
{
    struct test_counter *c = priv;
    (void)sc;
    return c->objects ? c->objects : RCL_SHRINK_EMPTY;
}

static unsigned long counter_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct test_counter *c = priv;
    atomic_fetch_add(&c->scans, 1);
    sc->nr_scanned = sc->nr_to_scan;
    return RCL_SHRINK_STOP;
}

struct test_counter *test_counter_new(const char *name, unsigned long objects,
                                      const struct rcl_shrinker_opts *opts)
{
    static const struct rcl_shrinker_ops ops = { counter_count, counter_scan };
    struct test_counter *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->objects = objects;
    c->shrinker = rcl_shrinker_register(name, &ops, c, opts);
    assert_non_null(c->shrinker);
    return c;
}

unsigned test_counter_scans(struct test_counter *c)
{
    return atomic_load(&c->scans);
}

void test_counter_free(struct test_counter *c)
{
    rcl_shrinker_unregister(c->shrinker);
    free(c);
}
