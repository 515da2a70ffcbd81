/* SPDX-License-Identifier: MIT */
/*
 * block_cache.c - emptying a thread's block cache (block_cache.h): the one
 * drain entry point every caller uses, and the eviction of the classes a
 * thread no longer uses.
 */
#include "internal.h"
#include "backend.h"
#include "block_cache.h"

_Atomic long rcl__bcache_bytes;

/*
 * A thread's cached blocks are memory it holds for its next allocations,
 * charged to the budget: limit/128 of it (what a thread's stock held in
 * all before the cache had its own bound), up to RCL_BCACHE_BYTES_MAX. A
 * large budget affords a thread a cache that holds a live set of
 * megabytes; a small one keeps what idle threads' caches strand small
 * (they are drained before an allocation fails, account.c).
 */
void rcl__bcache_limit(size_t limit)
{
    size_t bytes = limit / 128;
    wr(rcl__bcache_bytes, (long)(bytes < RCL_BCACHE_BYTES_MAX ? bytes : RCL_BCACHE_BYTES_MAX));
}

/* Class c's cached blocks back to the backend, their charge left in the
 * stock (for the stock protocol to keep or return). */
static void give_back(struct rcl_thread *t, unsigned c)
{
    struct rcl_hdr *h;
    while ((h = rcl__bcache_take(t, c)) != NULL)
        rcl__be_free(h);
}

/* Every cached block back. Only ever for the caller's own rcl__self, or at
 * its exit: only the owner touches its lists. */
void rcl__bcache_drain(struct rcl_thread *t)
{
    t->bcache_full = 0;
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++)
        give_back(t, c);
}

/* A thread registers in an epoch: blocks cached in an earlier one were
 * charged to a budget that is gone, and its lists start short again. */
void rcl__bcache_attach(struct rcl_thread *t)
{
    rcl__bcache_drain(t);
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++)
        t->bcache_depth[c] = (uint16_t)rcl__bcache_depth_start(c);
}

/*
 * A free the cache turned away, its byte bound full. Blocks of classes the
 * thread no longer allocates would otherwise hold the bound for good, and
 * every block of the sizes it uses now would go to the backend (a program
 * that moves from one size to the next, as glibc's "simple" benchmark
 * does). After RCL_BCACHE_EVICT_AFTER turned-away frees, the other classes
 * go back to the backend: often enough to follow a change of sizes, rarely
 * enough that a mix of sizes larger than the cache does not drain it on
 * every pass; the kernel's per-CPU page lists likewise drain in batches,
 * not per page.
 */
void rcl__bcache_evict(struct rcl_thread *t, unsigned keep)
{
    t->bcache_full = 0;
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++) {
        if (c != keep) {
            give_back(t, c);
            t->bcache_depth[c] = (uint16_t)rcl__bcache_depth_start(c);
        }
    }
}
