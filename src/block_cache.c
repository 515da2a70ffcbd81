/* SPDX-License-Identifier: MIT */
/*
 * block_cache.c - emptying a thread's block cache (block_cache.h): the one
 * drain entry point every caller uses, and the eviction of the classes a
 * thread no longer uses.
 */
#include "internal.h"
#include "backend.h"
#include "block_cache.h"

/* Every cached block back to the backend, its charge left in the stock
 * (for the stock protocol to keep or return). Only ever for the caller's
 * own rcl__self, or at its exit: only the owner touches its lists. */
void rcl__bcache_drain(struct rcl_thread *t)
{
    t->bcache_full = 0;
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++) {
        struct rcl_hdr *h;
        while ((h = rcl__bcache_take(t, c)) != NULL)
            rcl__be_free(h);
    }
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
        struct rcl_hdr *h;
        if (c == keep)
            continue;
        while ((h = rcl__bcache_take(t, c)) != NULL)
            rcl__be_free(h);
        t->bcache_grown[c] = 0;
    }
}
