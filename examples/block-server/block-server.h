/* SPDX-License-Identifier: MIT */
/*
 * block-server.h - what the parts of the block-server example share.
 *
 * The example is shaped like a user-space block device server (NBD, ublk,
 * tcmu): clients send block reads and writes; the server answers them from
 * a buffer cache over its backing store (here a regular file) and writes
 * dirty buffers back from an I/O-flusher thread. Such a server may be what
 * the kernel waits on to free memory, so it must keep serving when its own
 * memory is short. Each libreclaim tool has one job here:
 *
 *   - requests come from a mempool: taking one never fails;
 *   - the request loop runs in NOIO scope, and each request is handed to a
 *     workqueue that runs it under that scope on a worker thread;
 *   - the buffer cache is shrinkable (an rcl_lru with a shrinker): clean
 *     buffers are dropped when the budget runs short, dirty ones wake the
 *     flusher;
 *   - the flusher is an I/O flusher (NOIO, and the reserve), and takes its
 *     write-back requests from a second mempool, so cleaning (and then
 *     freeing) buffers works when nothing else can allocate, even after
 *     the budget has been squeezed below what is in use.
 */
#ifndef BLOCK_SERVER_H
#define BLOCK_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <reclaim.h>

#define BLOCK_SIZE 4096

/* One cached block. Every field but data is under cache->lock; data is
 * written only by the holder of a pin (refs) taken under that lock, and
 * read by the flusher only while no one holds one. */
struct buf {
    struct rcl_lru_node lru;        /* on the cache's LRU while cached */
    struct buf   *hnext;            /* hash chain */
    struct buf   *dnext;            /* dirty list, while dirty */
    unsigned      block;
    int           refs;             /* pins: requests using it, write-back */
    int           dirty;
    int           referenced;       /* used since the shrinker last looked */
    unsigned char data[BLOCK_SIZE];
};

struct cache {
    pthread_mutex_t lock;
    pthread_cond_t  flush_cond;     /* the flusher waits here */
    struct buf    **table;
    unsigned        nbuckets;
    struct buf     *dirty;          /* dirty buffers, newest first */
    unsigned        ndirty;
    int             flush_wanted;
    int             stop;
    struct rcl_lru *lru;
    int             fd;
    pthread_t       flusher;
    struct rcl_mempool *wb_pool;    /* write-back requests */
    int             flusher_rc;     /* what rcl_io_flusher_set(1) returned */

    atomic_ulong    hits, misses, evicted, written_back, write_errors;
};

int         cache_init(struct cache *c, int fd, unsigned nblocks);
/* The buffer for `block`, pinned. fill: read it from the file on a miss
 * (a full-block write does not need to). NULL only if reading fails. */
struct buf *cache_get(struct cache *c, unsigned block, int fill);
/* Unpins; dirtied: the holder changed data. */
void        cache_put(struct cache *c, struct buf *b, int dirtied);
/* Drops every buffer (all clean and unpinned by then) and the LRU. */
void        cache_destroy(struct cache *c);

/* The I/O-flusher thread (flusher.c). */
int         flusher_start(struct cache *c);
/* Writes back everything that is dirty, then stops the thread. */
void        flusher_stop(struct cache *c);
/* Asks for write-back; c->lock held. */
void        flusher_kick(struct cache *c);

/* The data a block holds at a given version (main.c). */
void        block_pattern(unsigned char *data, unsigned block, unsigned version);
int         block_check(const unsigned char *data, unsigned block, unsigned version);

#endif
