/* SPDX-License-Identifier: MIT */
/*
 * block_cache.h - the per-thread block cache: freed blocks a thread keeps
 * for its next allocations of the same size class, the classes
 * themselves, and the block header the cache links blocks through. The
 * allocation fast paths (alloc.c) take and put with the inlines below;
 * rcl__bcache_drain() (block_cache.c) is the one way a cache is emptied,
 * rcl__bcache_evict() the one way part of it is.
 *
 * Each thread keeps freed blocks of each size class up to RCL_BCACHE_MAX
 * bytes and hands them out again before asking the backend - the per-CPU
 * freelists of the kernel's slab and page allocators, per thread. Classes:
 * 16-byte steps to 256 bytes, 64-byte steps to 1 KiB, then eight classes
 * per doubling to 64 KiB. The cache is sized by what the thread recycles,
 * not by a fixed count per class:
 *   - a class's list starts at a few blocks (8 up to 256 B, 4 up to 1 KiB,
 *     1 above) and grows by one for every allocation that found it empty,
 *     up to RCL_BCACHE_DEPTH_MAX, as tcmalloc's per-class lists grow on
 *     misses: a live set of thousands of blocks, allocated and freed in
 *     turn, comes to stay off the backend, while a thread that only frees
 *     a class (a consumer) keeps no more than a batch, handing each full
 *     list to the depot (block_cache.c), from which the threads that
 *     allocate the class take it; the batch grows to 16 KiB only for a
 *     class that makes a good share of the thread's frees;
 *   - all of it is bounded in bytes, by limit/128 up to 8 MiB
 *     (rcl__bcache_limit) - the kernel sizes its per-CPU lists in bytes,
 *     from the memory they serve, for the same reason;
 *   - blocks of classes the thread no longer uses give way: after
 *     RCL_BCACHE_EVICT_AFTER frees turned away by a full cache, the other
 *     classes go back to the backend and their lists shrink to the start
 *     (rcl__bcache_evict).
 * Beyond its cache, a block goes through the wrapper, its header and the
 * class rounding to the backend: a third to a half more than the backend
 * alone for small blocks on glibc, more on mimalloc and jemalloc, whose
 * own pair costs less (docs/bench/patterns.md has the figures). From the
 * cache a pair costs less than glibc's own.
 *
 * A cached block stays charged: its class charge is held in the thread's
 * stock (t->cached, invariant stock >= cached; the stock protocol is
 * account.c's), so the budget counts it - it is real memory - while
 * rcl_usage(), which leaves stocks out, does not. The cache has its own
 * byte bound, apart from stock_max, which bounds only the part of the
 * stock with no memory behind it: a cache that shared stock_max would
 * leave it either too small for a live set or too large for the footprint
 * samples, which cannot tell unused budget from memory. Only the owner
 * thread touches its lists. rcl__bcache_drain() gives the blocks back to
 * the backend, and is what every drain calls: rcl_usage_sync() and a
 * drain request (account.c), a charge that finds the budget short
 * (account.c), a thread's exit, its registration in a new epoch and
 * shutdown (thread.c). A forked child leaks the other threads' caches:
 * nobody there can reach them.
 *
 * Invariant the cache relies on: a plain block's backend size is at least
 * its class size - every block up to RCL_BCACHE_MAX is asked of the
 * backend rounded up to its class (backend_size(), block.h) - so any
 * block of a class can serve any size in it. The rounding costs up to an
 * eighth more above 1 KiB, as in allocators with the same classes.
 */
#ifndef RCL_BLOCK_CACHE_H
#define RCL_BLOCK_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "backend.h"

/* The 16 bytes in front of every block handed out (alloc.c fills and
 * checks them); a cached block's link and its position in the list. */
struct rcl_hdr {
    union {
        size_t          size;   /* bytes charged for the block */
        struct rcl_hdr *next;   /* while in a thread's block cache */
    };
    uint64_t meta;    /* check word | shift << 32 | epoch << 48; 0 = free */
};
#define HDR        sizeof(struct rcl_hdr)

static inline unsigned rcl__bcache_class(size_t size)
{
    if (size <= 256)
        return (unsigned)((size - 1) >> 4);
    if (size <= 1024)
        return 12 + (unsigned)((size - 1) >> 6);
    size_t x = size - 1;
    unsigned log = 63 - (unsigned)__builtin_clzl(x);     /* 10 .. 15 */
    return 28 + 8 * (log - 10) + (unsigned)((x >> (log - 3)) & 7);
}

#define RCL__Q(log) 9u << ((log) - 3), 10u << ((log) - 3), 11u << ((log) - 3), \
                    12u << ((log) - 3), 13u << ((log) - 3), 14u << ((log) - 3), \
                    15u << ((log) - 3), 16u << ((log) - 3)
static const uint32_t rcl__bcache_caps[RCL_BCACHE_CLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
    320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024,
    RCL__Q(10), RCL__Q(11), RCL__Q(12), RCL__Q(13), RCL__Q(14), RCL__Q(15),
};
#undef RCL__Q
_Static_assert(RCL_BCACHE_MAX == 65536, "rcl__bcache_caps ends at RCL_BCACHE_MAX");

/* The largest size of class c, and how many blocks of it a thread keeps. */
static inline size_t rcl__bcache_cap(unsigned c) { return rcl__bcache_caps[c]; }
/*
 * How many blocks of class c a thread may keep: a few to start with, plus
 * one for every allocation of the class that found the list empty, up to
 * RCL_BCACHE_DEPTH_MAX. A thread's list grows to the live set it really
 * recycles (as tcmalloc's per-class list lengths do), while a thread that
 * only frees a class - the consumer of a producer/consumer pair - keeps no
 * more than the first few. The byte bound (rcl__bcache_room) caps the whole.
 */
#define RCL_BCACHE_DEPTH_MAX 4096u
static inline unsigned rcl__bcache_depth_start(unsigned c) { return c < 16 ? 8 : c < 28 ? 4 : 1; }

/* The thread has no lists of its own (struct rcl_bcache_lists): it keeps
 * no block, and nothing may write its read-only stand-in. */
static inline bool rcl__bcache_off(const struct rcl_thread *t)
{
    return t->bc == &rcl__bcache_none;
}

/* An allocation of class c found its list empty: the list may grow. */
static inline void rcl__bcache_missed(struct rcl_thread *t, unsigned c)
{
    if (t->bc->depth[c] < RCL_BCACHE_DEPTH_MAX && !rcl__bcache_off(t))
        t->bc->depth[c]++;
}

/* What a block of class c costs the budget (alloc.c says why). */
static inline size_t rcl__bcache_charge(unsigned c)
{
    return rcl__bcache_cap(c) + HDR + RCL__BE_BLOCK_OVERHEAD;
}

/* Under AddressSanitizer a cached block is poisoned whole, so that a use
 * after free is still caught. */
#ifdef RCL_ASAN
static inline void rcl__bcache_poison(struct rcl_hdr *h, unsigned c)
{
    rcl__poison(h + 1, rcl__bcache_cap(c));
}
#else
static inline void rcl__bcache_poison(struct rcl_hdr *h, unsigned c) { (void)h; (void)c; }
#endif

/* A cached block of class c, or NULL. Its charge stays in the stock, now
 * free for the caller to take. */
static inline struct rcl_hdr *rcl__bcache_take(struct rcl_thread *t, unsigned c)
{
    struct rcl_hdr *h = t->bc->top[c];
    if (h) {
        /* meta: the block's place from the bottom of its class's list. */
        rcl__assert(h->meta == (h->next ? h->next->meta + 1 : 1) &&
                    h->meta <= RCL_BCACHE_DEPTH_MAX);
        rcl__assert(rd(t->cached) >= rcl__bcache_charge(c));
        t->bc->top[c] = h->next;
        own_add(t->cached, -rcl__bcache_charge(c));
    }
    return h;
}

/* The most a thread's cached blocks may hold, in bytes (rcl__bcache_limit,
 * block_cache.c). */
#define RCL_BCACHE_BYTES_MAX (8u << 20)
extern _Atomic long rcl__bcache_bytes;

/* Where a freed block of class c would go: the list's top and length,
 * and what the cache would then hold. */
struct rcl_bcache_slot {
    struct rcl_hdr *top;
    uint64_t        n;
    size_t          cached;
};

/* May a freed block of class c be kept? Not when the class's list is at
 * its depth or the cache at its byte bound. Fills *s for rcl__bcache_put,
 * so that a free reads the list once. */
static inline bool rcl__bcache_room(const struct rcl_thread *t, unsigned c,
                                    struct rcl_bcache_slot *s)
{
    const struct rcl_bcache_lists *bc = t->bc;
    s->top = bc->top[c];
    s->n = s->top ? s->top->meta : 0;
    s->cached = rd(t->cached) + rcl__bcache_charge(c);
    return s->n < bc->depth[c] && (long)s->cached <= rd(rcl__bcache_bytes);
}

/* Keeps a freed plain block of class c for reuse where rcl__bcache_room()
 * said it may; its charge is in the thread's stock already (the caller's
 * part). A cached block's meta is its position from the bottom of the
 * list (1, 2, ...): never a valid header, so a second free is still
 * caught, and the list length costs no field of its own. */
static inline void rcl__bcache_put(struct rcl_thread *t, struct rcl_hdr *h, unsigned c,
                                   const struct rcl_bcache_slot *s)
{
    rcl__assert(s->n + 1 <= RCL_BCACHE_DEPTH_MAX && s->top == t->bc->top[c] &&
                !rcl__bcache_off(t));
    h->next = s->top;
    h->meta = s->n + 1;
    t->bc->top[c] = h;
    wr(t->cached, s->cached);
    rcl__assert(rd(t->stock) >= (long)s->cached);
    rcl__bcache_poison(h, c);
}

/* The depot (block_cache.c): a thread's full list of class c handed over
 * whole, its charge back in the stock; and a batch taken for a thread
 * whose list is empty, charged from `room` bytes of its stock. */
bool rcl__depot_give(struct rcl_thread *t, unsigned c);
struct rcl_hdr *rcl__depot_take(struct rcl_thread *t, unsigned c, size_t room);

#define RCL_BCACHE_EVICT_AFTER 256u
void rcl__bcache_evict(struct rcl_thread *t, unsigned keep);

/* A free rcl__bcache_room() turned away, counted towards making room. */
static inline void rcl__bcache_turned_away(struct rcl_thread *t, unsigned c)
{
    if (unlikely(++t->bcache_full >= RCL_BCACHE_EVICT_AFTER))
        rcl__bcache_evict(t, c);
}

#endif /* RCL_BLOCK_CACHE_H */
