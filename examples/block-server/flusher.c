/* SPDX-License-Identifier: MIT */
/*
 * flusher.c - the I/O-flusher thread: writes dirty buffers back to the file
 * so that the shrinker may drop them.
 *
 * When the budget is full of dirty buffers, nothing can be freed until one
 * is written, and writing one needs memory (a write-back request holding a
 * stable copy of the data). Two tools break that circle:
 *   - write-back requests come from their own mempool, as the kernel's
 *     bios do: with the budget squeezed below what is already in use (no
 *     reserve can help then) the pool still has an element, and gets it
 *     back as soon as the write is done;
 *   - the flusher marks itself with rcl_io_flusher_set(1): whatever it
 *     allocates is NOIO (it must never wait for the I/O it is doing) and
 *     may use the reserve ordinary allocations cannot reach.
 */
#include "block-server.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

struct wb_request {
    unsigned      block;
    unsigned char data[BLOCK_SIZE];
};

void flusher_kick(struct cache *c)
{
    if (!c->flush_wanted) {
        c->flush_wanted = 1;
        pthread_cond_signal(&c->flush_cond);
    }
}

/* Takes the first dirty buffer nobody is using off the dirty list, pinned
 * against eviction until its write completes; c->lock held. */
static struct buf *take_dirty(struct cache *c)
{
    for (struct buf **pp = &c->dirty; *pp; pp = &(*pp)->dnext) {
        struct buf *b = *pp;
        if (b->refs)
            continue;       /* a request is changing it: next round */
        *pp = b->dnext;
        b->dnext = NULL;
        b->dirty = 0;
        c->ndirty--;
        b->refs++;
        return b;
    }
    return NULL;
}

/* Writes back one buffer; 0 when there was none to write. */
static int write_back_one(struct cache *c)
{
    /* Taken before the cache lock (never allocate under a lock the
     * shrinker tries). Blocking, so it never fails: at worst it waits for
     * the element a write in flight returns. */
    struct wb_request *wb = rcl_mempool_alloc(c->wb_pool, RCL_NOIO);

    pthread_mutex_lock(&c->lock);
    struct buf *b = take_dirty(c);
    if (b) {
        wb->block = b->block;
        memcpy(wb->data, b->data, BLOCK_SIZE);   /* a stable copy to write */
    }
    pthread_mutex_unlock(&c->lock);
    if (!b) {
        rcl_mempool_free(wb, c->wb_pool);
        return 0;
    }

    ssize_t n = pwrite(c->fd, wb->data, BLOCK_SIZE, (off_t)wb->block * BLOCK_SIZE);
    rcl_mempool_free(wb, c->wb_pool);

    pthread_mutex_lock(&c->lock);
    b->refs--;
    pthread_mutex_unlock(&c->lock);
    /* A real server would retry or fail the device; the example counts it,
     * and the final check of the file will not pass. */
    atomic_fetch_add(n == BLOCK_SIZE ? &c->written_back : &c->write_errors, 1);
    return 1;
}

static void *flusher_main(void *arg)
{
    struct cache *c = arg;

    /* -EPERM without CAP_SYS_RESOURCE: the kernel part is missing, the
     * library part (NOIO, the reserve) is in force either way. */
    c->flusher_rc = rcl_io_flusher_set(1);

    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->flush_wanted && !c->stop)
            pthread_cond_wait(&c->flush_cond, &c->lock);
        int stopping = c->stop;
        c->flush_wanted = 0;
        pthread_mutex_unlock(&c->lock);
        while (write_back_one(c))
            ;
        pthread_mutex_lock(&c->lock);
        if (stopping && !c->dirty)
            break;
    }
    pthread_mutex_unlock(&c->lock);
    rcl_io_flusher_set(0);
    return NULL;
}

int flusher_start(struct cache *c)
{
    /* One write in flight at a time; two spare so that the next one never
     * waits for the allocator. */
    c->wb_pool = rcl_mempool_create(2, sizeof(struct wb_request));
    if (!c->wb_pool)
        return -ENOMEM;
    int err = pthread_create(&c->flusher, NULL, flusher_main, c);
    if (err) {
        rcl_mempool_destroy(c->wb_pool);
        c->wb_pool = NULL;
    }
    return -err;
}

void flusher_stop(struct cache *c)
{
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->flush_cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->flusher, NULL);
    rcl_mempool_destroy(c->wb_pool);
}
