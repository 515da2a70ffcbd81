/* SPDX-License-Identifier: MIT */
/*
 * quickstart: a cache that shrinks when the budget runs short, and a lock
 * that reclaim must not recurse into. The README shows this file.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <reclaim.h>

struct entry { struct entry *next; char data[4000]; };

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *cache;
/* Written under cache_lock; read without it by the count, which the
 * background reclaimer calls: atomic, or that read is a data race. */
static atomic_ulong cached;

static unsigned long cache_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    /* A count may be stale by the time it is used: no lock needed */
    return atomic_load_explicit(&cached, memory_order_relaxed);
}

static unsigned long cache_scan(void *priv, struct rcl_shrink_control *sc)
{
    unsigned long freed = 0;
    (void)priv;
    pthread_mutex_lock(&cache_lock);
    while (cache && freed < sc->nr_to_scan) {
        struct entry *e = cache;
        cache = e->next;
        rcl_free(e);                        /* returns its bytes to the budget */
        freed++;
    }
    atomic_fetch_sub_explicit(&cached, freed, memory_order_relaxed);
    pthread_mutex_unlock(&cache_lock);
    return freed;
}

/* Empties the cache and stops the library: on the way out, whatever the
 * way, so that nothing is left charged and the library's threads end. */
static void finish(struct rcl_shrinker *s)
{
    if (s)
        rcl_shrinker_unregister(s);
    while (cache) {
        struct entry *e = cache;
        cache = e->next;
        rcl_free(e);
    }
    rcl_shutdown();
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        int help = !strcmp(argv[1], "--help");
        if (!help)
            fprintf(stderr, "quickstart: rejected '%s': this example takes no arguments\n", argv[1]);
        fprintf(help ? stdout : stderr,
                "usage: quickstart\nFills a cache with 4 times its 16 MiB budget; its shrinker keeps "
                "it inside.\n");
        return help ? 0 : 2;
    }
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    cfg.limit = 16 << 20;                   /* a 16 MiB budget */
    int err = rcl_init(&cfg);
    if (err) {
        fprintf(stderr, "quickstart: rcl_init: %s\n", strerror(-err));
        return 1;
    }

    static const struct rcl_shrinker_ops ops = { cache_count, cache_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("entries", &ops, NULL, NULL);
    if (!s) {
        fprintf(stderr, "quickstart: rcl_shrinker_register: %s\n", strerror(errno));
        finish(NULL);
        return 1;
    }

    /* Fill the cache with 4x the budget: reclaim keeps it inside. */
    for (int i = 0; i < 16384; i++) {
        struct entry *e = rcl_alloc(sizeof(*e), RCL_DEFAULT);
        if (!e) {
            /* Only when the system itself has no memory: the budget is
             * kept by the shrinker. The library has said why. */
            fprintf(stderr, "quickstart: no memory for entry %d\n", i + 1);
            finish(s);
            return 1;
        }
        pthread_mutex_lock(&cache_lock);
        e->next = cache;
        cache = e;
        atomic_fetch_add_explicit(&cached, 1, memory_order_relaxed);
        pthread_mutex_unlock(&cache_lock);
    }

    /* Code that holds a lock the cache's shrinker takes would deadlock if
     * its allocation reclaimed from that cache: a NOFS-style scope marks it
     * (here the shrinker needs no flags, so this only shows the call). */
    unsigned saved = rcl_nofs_save();
    void *p = rcl_alloc(1000, RCL_DEFAULT);   /* acts as RCL_NOFS */
    rcl_free(p);
    rcl_nofs_restore(saved);

    unsigned long n = atomic_load(&cached);
    printf("cached %lu entries (%lu KiB) in a %zu KiB budget; usage %zu KiB\n",
           n, n * sizeof(struct entry) / 1024, rcl_limit() / 1024, rcl_usage() / 1024);
    rcl_stats_print(stdout, 0);
    finish(s);
    return 0;
}
