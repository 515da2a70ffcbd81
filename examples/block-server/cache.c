/* SPDX-License-Identifier: MIT */
/*
 * cache.c - a shrinkable buffer cache over the backing file.
 *
 * Lock order: cache->lock, then the LRU's own lock (rcl_lru_add is called
 * with cache->lock held). The shrinker's isolate callback runs the other way
 * round, under the LRU lock, so it only ever *tries* cache->lock and skips
 * the buffer when it is busy, the rule rcl_lru's documentation gives.
 */
#include "block-server.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static struct buf **bucket(struct cache *c, unsigned block)
{
    return &c->table[block % c->nbuckets];
}

/* Under the LRU lock: decide one buffer's fate; never block, never free. */
static enum rcl_lru_walk buf_isolate(struct rcl_lru_node *n, void *arg)
{
    struct cache *c = arg;
    struct buf *b = RCL_LRU_ENTRY(n, struct buf, lru), **pp;

    if (pthread_mutex_trylock(&c->lock) != 0)
        return RCL_LRU_SKIP;
    if (b->refs || b->dirty) {
        /* Dirty data cannot be dropped, and writing it here would be I/O
         * in whatever context is reclaiming (a NOIO request, even). Ask the
         * flusher, as the kernel's reclaim wakes its flusher threads. */
        if (b->dirty)
            flusher_kick(c);
        pthread_mutex_unlock(&c->lock);
        return RCL_LRU_SKIP;
    }
    if (b->referenced) {
        b->referenced = 0;
        pthread_mutex_unlock(&c->lock);
        return RCL_LRU_ROTATE;
    }
    for (pp = bucket(c, b->block); *pp != b; pp = &(*pp)->hnext)
        ;
    *pp = b->hnext;                     /* no lookup finds it any more */
    pthread_mutex_unlock(&c->lock);
    return RCL_LRU_REMOVED;
}

/* After the LRU lock is dropped: the buffer is ours alone. */
static void buf_free(struct rcl_lru_node *n, void *arg)
{
    struct cache *c = arg;
    atomic_fetch_add(&c->evicted, 1);
    rcl_free(RCL_LRU_ENTRY(n, struct buf, lru));
}

int cache_init(struct cache *c, int fd, unsigned nblocks)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->flush_cond, NULL);
    c->fd = fd;
    c->nbuckets = nblocks / 4 + 1;
    c->table = rcl_calloc(c->nbuckets, sizeof(*c->table), RCL_DEFAULT);
    c->lru = rcl_lru_create();
    if (!c->table || !c->lru)
        return -ENOMEM;
    if (!rcl_lru_shrinker(c->lru, "block-cache", buf_isolate, buf_free, c, NULL))
        return -errno;
    return 0;
}

static struct buf *lookup(struct cache *c, unsigned block)
{
    struct buf *b;
    for (b = *bucket(c, block); b && b->block != block; b = b->hnext)
        ;
    return b;
}

struct buf *cache_get(struct cache *c, unsigned block, int fill)
{
    pthread_mutex_lock(&c->lock);
    struct buf *b = lookup(c, block);
    if (b) {
        b->refs++;
        b->referenced = 1;
        pthread_mutex_unlock(&c->lock);
        atomic_fetch_add(&c->hits, 1);
        return b;
    }
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&c->misses, 1);

    /* A request must be served: NOFAIL reclaims (dropping clean buffers)
     * and waits for the flusher to clean dirty ones, for as long as that
     * takes. RCL_DEFAULT is right even so: the request runs in the NOIO
     * scope it was queued under, which takes IO and FS off these flags. */
    struct buf *nb = rcl_alloc(sizeof(*nb), RCL_DEFAULT | RCL__NOFAIL);
    if (!nb)
        return NULL;
    rcl_lru_node_init(&nb->lru);
    nb->block = block;
    nb->refs = 1;
    nb->dirty = nb->referenced = 0;
    nb->dnext = NULL;
    if (fill && pread(c->fd, nb->data, BLOCK_SIZE, (off_t)block * BLOCK_SIZE) != BLOCK_SIZE) {
        rcl_free(nb);
        return NULL;
    }

    pthread_mutex_lock(&c->lock);
    b = lookup(c, block);
    if (b) {                            /* someone else cached it meanwhile */
        b->refs++;
        pthread_mutex_unlock(&c->lock);
        rcl_free(nb);
        return b;
    }
    nb->hnext = *bucket(c, block);
    *bucket(c, block) = nb;
    rcl_lru_add(c->lru, &nb->lru);
    pthread_mutex_unlock(&c->lock);
    return nb;
}

void cache_put(struct cache *c, struct buf *b, int dirtied)
{
    pthread_mutex_lock(&c->lock);
    if (dirtied && !b->dirty) {
        b->dirty = 1;
        b->dnext = c->dirty;
        c->dirty = b;
        c->ndirty++;
    }
    b->refs--;
    /* Write back before dirty data is a quarter of the budget: dirty
     * buffers are memory the shrinker cannot give back. */
    if (c->ndirty && (size_t)c->ndirty * BLOCK_SIZE > rcl_limit() / 4)
        flusher_kick(c);
    pthread_mutex_unlock(&c->lock);
}

void cache_destroy(struct cache *c)
{
    struct rcl_lru_node dispose, *n;

    if (c->lru) {
        rcl_lru_list_init(&dispose);
        rcl_lru_walk(c->lru, NULL, NULL, ~0UL, &dispose);
        while ((n = rcl_lru_list_pop(&dispose)) != NULL)
            rcl_free(RCL_LRU_ENTRY(n, struct buf, lru));
        rcl_lru_destroy(c->lru);
    }
    rcl_free(c->table);
    pthread_cond_destroy(&c->flush_cond);
    pthread_mutex_destroy(&c->lock);
}
