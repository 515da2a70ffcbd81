/* SPDX-License-Identifier: MIT */
/*
 * block_cache.c - emptying a thread's block cache (block_cache.h): the one
 * drain entry point every caller uses.
 */
#include "internal.h"
#include "backend.h"
#include "block_cache.h"

/* Every cached block back to the backend, its charge left in the stock
 * (for the stock protocol to keep or return). Only ever for the caller's
 * own rcl__self, or at its exit: only the owner touches its lists. */
void rcl__bcache_drain(struct rcl_thread *t)
{
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++) {
        struct rcl_hdr *h;
        while ((h = rcl__bcache_take(t, c)) != NULL)
            rcl__be_free(h);
    }
}
