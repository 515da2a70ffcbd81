/* SPDX-License-Identifier: MIT */
/*
 * stock.h - the inlines of the per-thread stock the fast paths spend. The
 * stock protocol itself (what stock and stock_max mean, who may change
 * them and when, the drain request) is account.c's, and documented there
 * once; everything that is not a fast path calls its functions.
 */
#ifndef RCL_STOCK_H
#define RCL_STOCK_H

#include <stdbool.h>
#include <stddef.h>

#include "atomic.h"
#include "thread.h"

/* The slow half of rcl__uncharge_fast (account.c). */
void rcl__uncharge_slow(struct rcl_thread *t, size_t size);

/* May this thread's allocation skip the slow path? Not while anything
 * watches it: the lock checker, a drain request, its own reclaim
 * (reclaim's progress must count what its shrinkers charge). */
static inline bool rcl__fast_ok(const struct rcl_thread *t)
{
    return !rd(t->watch.any);
}

/* What the thread may charge from its stock. Its cached blocks' charge
 * is apart (in its lists, rcl__bcache_held): they are memory, bounded by the cache itself
 * (block_cache.h), where the stock is budget with no memory behind it. */
static inline long rcl__stock_avail(const struct rcl_thread *t)
{
    return rd(t->stock);
}

static inline bool rcl__stock_over(const struct rcl_thread *t)
{
    return rcl__stock_avail(t) > rd(t->stock_max);
}

/* Return `size` accounted bytes through the thread's stock. The stock only
 * grows here; spilling it back to the budget is the slow path. */
static inline void rcl__uncharge_fast(struct rcl_thread *t, size_t size)
{
    rcl__acct_out(t, -(long)size);
    long s = rd(t->stock) + (long)size;
    if (unlikely(s > rd(t->stock_max))) {
        rcl__uncharge_slow(t, size);
        return;
    }
    wr(t->stock, s);
}

#endif /* RCL_STOCK_H */
