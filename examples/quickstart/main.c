/* SPDX-License-Identifier: MIT */
/*
 * quickstart: a cache that shrinks when the budget runs short, and a lock
 * that reclaim must not recurse into. The README shows this file.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <reclaim.h>

struct entry { struct entry *next; char data[4000]; };

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *cache;
static unsigned long cached;

static unsigned long cache_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return cached;                          /* a racy read is fine for a count */
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
    cached -= freed;
    pthread_mutex_unlock(&cache_lock);
    return freed;
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
    rcl_init(&cfg);

    static const struct rcl_shrinker_ops ops = { cache_count, cache_scan };
    struct rcl_shrinker *s = rcl_shrinker_register("entries", &ops, NULL, NULL);

    /* Fill the cache with 4x the budget: reclaim keeps it inside. */
    for (int i = 0; i < 16384; i++) {
        struct entry *e = rcl_alloc(sizeof(*e), RCL_DEFAULT);
        if (!e)
            return 1;
        pthread_mutex_lock(&cache_lock);
        e->next = cache;
        cache = e;
        cached++;
        pthread_mutex_unlock(&cache_lock);
    }

    /* Code that holds a lock the cache's shrinker takes would deadlock if
     * its allocation reclaimed from that cache: a NOFS-style scope marks it
     * (here the shrinker needs no flags, so this only shows the call). */
    unsigned saved = rcl_nofs_save();
    void *p = rcl_alloc(1000, RCL_DEFAULT);   /* acts as RCL_NOFS */
    rcl_free(p);
    rcl_nofs_restore(saved);

    printf("cached %lu entries (%lu KiB) in a %zu KiB budget; usage %zu KiB\n",
           cached, cached * sizeof(struct entry) / 1024, rcl_limit() / 1024, rcl_usage() / 1024);
    rcl_stats_print(stdout, 0);
    rcl_shrinker_unregister(s);
    while (cache) {
        struct entry *e = cache;
        cache = e->next;
        rcl_free(e);
    }
    rcl_shutdown();
    return 0;
}
