/*
 * flusher.c - the I/O-flusher thread: writes dirty buffers back to the file
 * so that the shrinker may drop them.
 *
 * When the budget is full of dirty buffers, nothing can be freed until one
 * is written, and writing one needs memory (a write-back request holding a
 * stable copy of the data). That circle is why the flusher marks itself
 * with rcl_io_flusher_set(1): its allocations may use the reserve that
 * ordinary allocations cannot reach, so write-back, and after it reclaim,
 * always makes progress.
 */
#include "block-server.h"

#include <errno.h>
#include <string.h>
#include <time.h>
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
    /* Allocated before taking the lock (never allocate under a lock the
     * shrinker tries). As an I/O flusher this may use the reserve. */
    struct wb_request *wb = rcl_alloc(sizeof(*wb), RCL_NOIO | RCL__NOWARN);
    if (!wb) {
        atomic_fetch_add(&c->wb_retries, 1);
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
        return 1;
    }

    pthread_mutex_lock(&c->lock);
    struct buf *b = take_dirty(c);
    if (b) {
        wb->block = b->block;
        memcpy(wb->data, b->data, BLOCK_SIZE);   /* a stable copy to write */
    }
    pthread_mutex_unlock(&c->lock);
    if (!b) {
        rcl_free(wb);
        return 0;
    }

    ssize_t n = pwrite(c->fd, wb->data, BLOCK_SIZE, (off_t)wb->block * BLOCK_SIZE);
    rcl_free(wb);

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
    return -pthread_create(&c->flusher, NULL, flusher_main, c);
}

void flusher_stop(struct cache *c)
{
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->flush_cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->flusher, NULL);
}
