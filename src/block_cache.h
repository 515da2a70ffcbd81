/* SPDX-License-Identifier: MIT */
/*
 * block_cache.h - the per-thread block cache: freed blocks a thread keeps
 * for its next allocations of the same size class, the classes
 * themselves, and the block header the cache links blocks through. The
 * allocation fast paths (alloc.c) take and put with the inlines below;
 * rcl__bcache_drain() (block_cache.c) is the one way a cache is emptied.
 *
 * Each thread keeps a few freed blocks of each size class up to
 * RCL_BCACHE_MAX bytes and hands them out again before asking the backend
 * - the per-CPU freelists of the kernel's slab and page allocators, per
 * thread. Classes: 16-byte steps to 256 bytes (64 blocks each), 64-byte
 * steps to 1 KiB (16 each), then eight classes per doubling to 64 KiB (1
 * each), and never more than the thread's stock holds in bytes: a live
 * set of up to a few hundred small blocks, allocated and freed in turn,
 * stays off the backend (the kernel sizes its per-CPU caches in bytes for
 * the same reason). Above 1 KiB one block a class: more would leave a
 * small budget stranded in the caches of threads that are not allocating
 * (4 threads filling a 2 MiB budget with 4 KiB objects saw allocations
 * fail with 4 a class). A wrapper that calls the backend on every
 * allocation costs a third to a half more than the backend alone: two
 * more calls and a stack frame on top of glibc's ~140 instructions, and a
 * header that pushes a 1 KiB block past glibc's own per-thread cache
 * (which ends at 1032 bytes). From the cache a pair costs less than the
 * backend's own.
 *
 * A cached block stays charged: its class charge is held in the thread's
 * stock (t->cached, invariant stock >= cached; the stock protocol is
 * account.c's), so the budget counts it - it is real memory - while
 * rcl_usage(), which leaves stocks out, does not. A block is cached only
 * if the stock can hold it, so a thread never sits on more than stock_max
 * bytes of charged, unused memory, cached blocks included. Only the owner
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
static inline unsigned rcl__bcache_depth(unsigned c) { return c < 16 ? 64 : c < 28 ? 16 : 1; }

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
    struct rcl_hdr *h = t->bcache[c];
    if (h) {
        /* meta: the block's place from the bottom of its class's list. */
        rcl__assert(h->meta == (h->next ? h->next->meta + 1 : 1) &&
                    h->meta <= rcl__bcache_depth(c));
        rcl__assert(rd(t->cached) >= rcl__bcache_charge(c));
        t->bcache[c] = h->next;
        own_add(t->cached, -rcl__bcache_charge(c));
    }
    return h;
}

/* Keeps a freed plain block of class c for reuse, its charge held in
 * `stock` (the stock with the block's own charge back in it); false when
 * the class is full or the stock cannot hold it. A cached block's meta is
 * its position from the bottom of the list (1, 2, ...): never a valid
 * header, so a second free is still caught, and the list length costs no
 * field of its own. */
static inline bool rcl__bcache_put(struct rcl_thread *t, struct rcl_hdr *h, unsigned c,
                                   long stock)
{
    struct rcl_hdr *top = t->bcache[c];
    uint64_t n = top ? top->meta : 0;
    size_t cached = rd(t->cached) + rcl__bcache_charge(c);

    if (n >= rcl__bcache_depth(c) || (long)cached > stock)
        return false;
    h->next = top;
    h->meta = n + 1;
    t->bcache[c] = h;
    wr(t->cached, cached);
    rcl__assert(n + 1 <= rcl__bcache_depth(c));
    rcl__bcache_poison(h, c);
    return true;
}

#endif /* RCL_BLOCK_CACHE_H */
