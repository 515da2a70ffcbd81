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
 * 16-byte steps to 256 bytes, 64-byte steps to 512, then the backend's
 * spacing to 64 KiB: four per doubling over mimalloc and jemalloc (their
 * own classes), eight over glibc (the table below says why). The cache
 * is sized by what the thread recycles, not by a fixed count per class:
 *   - a class's list starts at a few blocks (8 up to 256 B, 4 up to 1 KiB,
 *     1 above) and grows by one for every allocation that found it empty,
 *     up to RCL_BCACHE_DEPTH_MAX, as tcmalloc's per-class lists grow on
 *     misses: a live set of thousands of blocks, allocated and freed in
 *     turn, comes to stay off the backend, while a thread that only frees
 *     a class (a consumer) keeps no more than a batch, handing each full
 *     list to the depot (block_cache.c), from which the threads that
 *     allocate the class take it; the batch grows to 32 KiB only for a
 *     class that makes a good share of the thread's frees, judged over
 *     hundreds of them (block_cache.c: batch_resize);
 *   - all of it is bounded in bytes, by limit/128 up to 8 MiB
 *     (rcl__bcache_limit) - the kernel sizes its per-CPU lists in bytes,
 *     from the memory they serve, for the same reason. The bound is on
 *     what the lists may hold (the sum over the classes of depth x
 *     charge, `room`), not on what they hold: a list grows only while
 *     that sum stays within the bound, so a free checks its list's
 *     length alone. The starting depths take at most half the bound (a
 *     small budget starts the larger classes at none), the rest is for
 *     the lists that grow;
 *   - classes the thread no longer uses give way: after
 *     RCL_BCACHE_EVICT_AFTER frees turned away by full lists, the other
 *     classes' blocks go back to the backend and their depths to none,
 *     then to their starts as far as half the bound allows, their charge
 *     to the stock and what it then holds past stock_max to the budget
 *     (rcl__bcache_evict).
 * Beyond its cache, a block goes through the wrapper, its header and the
 * class rounding to the backend - or, from 256 B over mimalloc and
 * jemalloc and up to 256 B over glibc, to its class's slabs (slab.h), in
 * batches - which costs more
 * than the backend alone for small blocks (docs/bench/patterns.md has the
 * figures). From the cache a pair costs less than glibc's own. Over
 * glibc an empty list first takes a cached block of a class a little
 * larger (rcl__bcache_borrow(), below).
 *
 * A cached block stays charged: its charge goes from what the thread
 * handed out to its list when it is freed into the cache, and back when
 * it is handed out again - what the lists hold is their lengths times
 * their classes' charges (rcl__bcache_held) - and only the block's move
 * to or from the backend or the depot touches the stock (the stock
 * protocol is account.c's). So the budget counts a cached block - it is
 * real memory - while rcl_usage(), which leaves stocks and caches out,
 * does not, and a cache hit costs the budget nothing at all: a length
 * moves by one. The cache has its own byte bound, apart from stock_max,
 * which bounds only the part of the stock with no memory behind it: a
 * cache that shared stock_max would leave it either too small for a live
 * set or too large for the footprint samples, which cannot tell unused
 * budget from memory. Only the owner thread writes its lists; other
 * threads read their lengths (rcl_usage(), rcl_stats_get()).
 * rcl__bcache_drain() gives the blocks back (to the backend or their
 * slabs), and is what every drain calls: rcl_usage_sync() and a drain
 * request (account.c), a charge that finds the budget short (account.c),
 * a thread's exit, its registration in a new epoch and shutdown
 * (thread.c). A forked child leaks the other threads' caches: nobody
 * there can reach them.
 *
 * Invariant the cache relies on: a plain block's room is at least its
 * class size - every block up to RCL_BCACHE_MAX is asked of the backend
 * rounded up to its class (backend_size(), block.h), or is a slot of its
 * class's slab - so any block of a class can serve any size in it. The
 * rounding costs up to a quarter more above 512 bytes over mimalloc and
 * jemalloc, what they would round the size to themselves, and up to an
 * eighth over glibc.
 */
#ifndef RCL_BLOCK_CACHE_H
#define RCL_BLOCK_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "backend.h"

/* The 16 bytes in front of every block handed out (alloc.c fills and
 * checks them); a cached block's link. */
struct rcl_hdr {
    union {
        size_t          size;   /* the size asked for */
        void           *next;   /* in a thread's block cache or the depot:
                                   the next block's address (rcl__hdr_user);
                                   in a signal stash, the next header
                                   (alloc_signal.c) */
    };
    uint64_t meta;    /* check word | shift << 32 | class << 40 | epoch << 48;
                         0 = free (alloc.c) */
};
#define HDR        sizeof(struct rcl_hdr)
/*
 * The top bit of a meta's class byte: set in the tag of every thread the
 * library knows (rcl__hdr_tag(), alloc.c) and in every class's key
 * (rcl__bcache_tab, below), so that the two cancel in a free's check for
 * such a thread alone (rcl__hdr_meta(), block.h, says why). Clear in
 * every header's meta.
 */
#define RCL__HDR_KNOWN (1ull << 47)

/*
 * A block's header from the address the block is handed out at, its
 * header's end, and back. That address is also how a cached block is
 * linked, from its list's top and from the block above it, so that the
 * fast paths hand out and take back the very pointer a list holds, with
 * no conversion either way.
 */
static inline struct rcl_hdr *rcl__hdr_of(void *p) { return (struct rcl_hdr *)p - 1; }
static inline void *rcl__hdr_user(struct rcl_hdr *h) { return h + 1; }

/*
 * Is the block in a thread's list, or in a batch of one in the depot?
 * Its header then keeps its meta, and its first word holds the link,
 * an address or NULL, where a block of a class handed out holds the size
 * asked, 1 to RCL_BCACHE_MAX. (The other lists a block can be in - a
 * slab's free slots, a signal stash - clear its meta, which a free's
 * check then fails on before it asks this.) So a free of a listed
 * block - a second free - leaves the fast path here, and the slow path
 * reports it
 * (rcl__block_kind(), alloc.c: the word names no size of the header's
 * class). The fast paths write that word anyway, the size on a hit and
 * the link on a free, so the mark costs a hit nothing and a free a load
 * from the header it reads already and a compare. A bit of the meta
 * flipped in memory each way, as the mark was before, cost a hit pair
 * 0.05 - 0.13 of raw mimalloc's on an Intel Xeon (docs/bench/patterns.md,
 * "Figures, 2026-12-03, 16:40"). No link reads as a size: no block lies
 * in the address space's first RCL_BCACHE_MAX bytes, below the kernel's
 * mmap_min_addr (64 KiB by default) and where no allocator puts a heap
 * (rcl__bcache_put() asserts it).
 */
static inline bool rcl__hdr_listed(const struct rcl_hdr *h)
{
    return h->size - 1 >= RCL_BCACHE_MAX;
}

/*
 * The classes' tables, in one object so that the fast paths reach both
 * from one address:
 *   key          by the class's number in a header (its index + 1, bits
 *                40-46 of the check word's meta: alloc.c): the class's
 *                charge (its largest size, the header and the backend's
 *                own overhead: what a block of it costs the budget,
 *                alloc.c says why) in the low 32 bits, and the number
 *                with RCL__HDR_KNOWN in the class's byte. So a free
 *                reads the class and its charge from the header's meta
 *                and this table alone, two loads, whatever the size. A
 *                byte that is no class's number (0, above the classes,
 *                one with the top bit set) has a key whose class byte is
 *                that byte with its lowest bit flipped, which no meta can
 *                match whatever the thread's tag (rcl__hdr_meta, block.h,
 *                says why): a free never indexes the lists with it;
 *   small_nr     the numbers of the classes up to 4 KiB by
 *                (size - 1) / 16 - one load, and no branch for a program
 *                whose sizes vary among them: every class up to 4 KiB
 *                ends at a multiple of 16. Numbers, as the lists are
 *                indexed (struct rcl_bcache_lists): the allocation fast
 *                path indexes them with the byte it loaded. It ended at
 *                1 KiB, and the classes above were worked out from the
 *                size's highest bit, behind a branch that a mix of 8 B -
 *                4 KiB, a fifth of it above 1 KiB in no order, cannot
 *                predict: most live sets of the mix ran 5 - 17 % slower
 *                for it.
 *
 * Why the classes above 512 bytes follow the backend's spacing: every
 * class holds memory of its own - its slabs' pages (slab.h) and the blocks
 * its lists keep, which serve no other class - so a mix of sizes holds
 * more the more classes it spreads over. Over mimalloc and jemalloc, whose
 * classes are four per doubling, eight of ours rounded an odd size less
 * than the backend does (a live set of 1100-byte blocks held 0.85 - 0.91x
 * raw, 0.94 - 1.02x over four), but live sets of 1 - 64 blocks of a mix
 * of 8 B - 4 KiB held 20 - 41 % more than raw jemalloc, at most 8 % more
 * over four. glibc fits a chunk to 16 bytes: there four per doubling
 * would round a 1100-byte block to 1280 - a live set of them 11 % larger -
 * where eight round it to 1152, and the mix's live sets of 64 and 512
 * blocks would come from 1.22 - 1.42x raw glibc to 1.08 - 1.09x, still
 * short of 1.05x: not worth that.
 */
#define RCL__HDR_CLASS_SHIFT 40
#define RCL__K(c, cap) [(c) + 1] = ((cap) + HDR + RCL__BE_BLOCK_OVERHEAD) | \
                                   (uint64_t)((c) + 1) << RCL__HDR_CLASS_SHIFT | RCL__HDR_KNOWN
#define RCL__C16(c)   RCL__K(c, 16u * ((c) + 1))
#define RCL__C64(c)   RCL__K(c, 64u * ((c) - 11))
/* The doubling from 2^(log-1) to 2^log in RCL__QN steps, from class c0:
 * the i-th ends at (RCL__QN + 1 + i) steps of 2^(log-1) / RCL__QN. */
#define RCL__QN       (1 << RCL__CLASS_BITS)
#define RCL__QK(c0, log, i) RCL__K((c0) + (i), (RCL__QN + 1u + (i)) << ((log) - RCL__CLASS_BITS))
#define RCL__Q4(c0, log, i) RCL__QK(c0, log, i), RCL__QK(c0, log, (i) + 1), \
                            RCL__QK(c0, log, (i) + 2), RCL__QK(c0, log, (i) + 3)
#if RCL__CLASS_BITS == 2
#define RCL__Q(c0, log) RCL__Q4(c0, log, 0)
#else
#define RCL__Q(c0, log) RCL__Q4(c0, log, 0), RCL__Q4(c0, log, 4)
#endif
#define RCL__NO(n)    [n] = (uint64_t)((n) ^ 1) << RCL__HDR_CLASS_SHIFT
#define RCL__NO4(n)   RCL__NO(n), RCL__NO((n) + 1), RCL__NO((n) + 2), RCL__NO((n) + 3)
#define RCL__NO16(n)  RCL__NO4(n), RCL__NO4((n) + 4), RCL__NO4((n) + 8), RCL__NO4((n) + 12)
#define RCL__NO64(n)  RCL__NO16(n), RCL__NO16((n) + 16), RCL__NO16((n) + 32), RCL__NO16((n) + 48)
#define RCL__S4(c)    (c), (c), (c), (c)
#define RCL__S8(c)    RCL__S4(c), RCL__S4(c)
#define RCL__S16(c)   RCL__S8(c), RCL__S8(c)
#define RCL__S32(c)   RCL__S16(c), RCL__S16(c)
#define RCL__SMALL_MAX 4096u
static const struct {
    uint64_t key[256];
    uint8_t  small_nr[RCL__SMALL_MAX / 16];
} rcl__bcache_tab = {
    .key = {
        RCL__C16(0), RCL__C16(1), RCL__C16(2), RCL__C16(3), RCL__C16(4), RCL__C16(5),
        RCL__C16(6), RCL__C16(7), RCL__C16(8), RCL__C16(9), RCL__C16(10), RCL__C16(11),
        RCL__C16(12), RCL__C16(13), RCL__C16(14), RCL__C16(15),
        RCL__C64(16), RCL__C64(17), RCL__C64(18), RCL__C64(19),
        RCL__Q(20, 9), RCL__Q(20 + RCL__QN, 10), RCL__Q(20 + 2 * RCL__QN, 11),
        RCL__Q(20 + 3 * RCL__QN, 12), RCL__Q(20 + 4 * RCL__QN, 13),
        RCL__Q(20 + 5 * RCL__QN, 14), RCL__Q(20 + 6 * RCL__QN, 15),
#if RCL__CLASS_BITS == 2
        RCL__NO(0), RCL__NO(49), RCL__NO(50), RCL__NO(51), RCL__NO4(52), RCL__NO4(56),
        RCL__NO4(60), RCL__NO64(64), RCL__NO64(128), RCL__NO64(192),
#else
        RCL__NO(0), RCL__NO(77), RCL__NO(78), RCL__NO(79), RCL__NO16(80), RCL__NO16(96),
        RCL__NO16(112), RCL__NO64(128), RCL__NO64(192),
#endif
    },
    .small_nr = {
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        RCL__S4(17), RCL__S4(18), RCL__S4(19), RCL__S4(20),
#if RCL__CLASS_BITS == 2
        RCL__S8(21), RCL__S8(22), RCL__S8(23), RCL__S8(24),
        RCL__S16(25), RCL__S16(26), RCL__S16(27), RCL__S16(28),
        RCL__S32(29), RCL__S32(30), RCL__S32(31), RCL__S32(32),
#else
        RCL__S4(21), RCL__S4(22), RCL__S4(23), RCL__S4(24), RCL__S4(25), RCL__S4(26),
        RCL__S4(27), RCL__S4(28),
        RCL__S8(29), RCL__S8(30), RCL__S8(31), RCL__S8(32), RCL__S8(33), RCL__S8(34),
        RCL__S8(35), RCL__S8(36),
        RCL__S16(37), RCL__S16(38), RCL__S16(39), RCL__S16(40), RCL__S16(41), RCL__S16(42),
        RCL__S16(43), RCL__S16(44),
#endif
    },
};
#undef RCL__K
#undef RCL__NO
#undef RCL__NO4
#undef RCL__NO16
#undef RCL__NO64
#undef RCL__Q
#undef RCL__Q4
#undef RCL__QK
#undef RCL__QN
#undef RCL__C16
#undef RCL__C64
#undef RCL__S4
#undef RCL__S8
#undef RCL__S16
#undef RCL__S32
_Static_assert(RCL_BCACHE_MAX == 65536 && RCL_BCACHE_CLASSES == 20 + 7 * (1 << RCL__CLASS_BITS) &&
               RCL_BCACHE_CLASSES < 128,
               "rcl__bcache_tab's classes end at RCL_BCACHE_MAX, and number fewer than 7 bits hold");

/* The first class above 1 KiB. */
#define RCL__CLASS_1K (20 + (1 << RCL__CLASS_BITS))

/* 2^RCL__CLASS_BITS classes per doubling above 1 KiB. */
static inline unsigned rcl__bcache_class_above_1k(size_t size)
{
    size_t x = size - 1;
    unsigned log = 63 - (unsigned)__builtin_clzl(x);     /* 10 .. 15 */
    return RCL__CLASS_1K + ((log - 10) << RCL__CLASS_BITS) +
           (unsigned)((x >> (log - RCL__CLASS_BITS)) & ((1u << RCL__CLASS_BITS) - 1));
}

static inline unsigned rcl__bcache_class(size_t size)
{
    if (likely(size - 1 < RCL__SMALL_MAX))
        return rcl__bcache_tab.small_nr[(size - 1) >> 4] - 1u;
    return rcl__bcache_class_above_1k(size);
}

/* What a block of class c costs the budget. */
static inline size_t rcl__bcache_charge(size_t c)
{
    return (uint32_t)rcl__bcache_tab.key[c + 1];
}

/* The largest size of class c. */
static inline size_t rcl__bcache_cap(unsigned c)
{
    return rcl__bcache_charge(c) - HDR - RCL__BE_BLOCK_OVERHEAD;
}
/*
 * How many blocks of class c a thread may keep: a few to start with, plus
 * one for every allocation of the class that found the list empty, up to
 * RCL_BCACHE_DEPTH_MAX. A thread's list grows to the live set it really
 * recycles (as tcmalloc's per-class list lengths do), while a thread that
 * only frees a class - the consumer of a producer/consumer pair - keeps no
 * more than the first few. The byte bound (rcl__bcache_missed) caps the whole.
 */
#define RCL_BCACHE_DEPTH_MAX 4096u
static inline unsigned rcl__bcache_depth_start(unsigned c)
{
    return c < 16 ? 8 : c < RCL__CLASS_1K ? 4 : 1;
}

/* The thread has no lists of its own (struct rcl_bcache_lists): it keeps
 * no block, and nothing may write its read-only stand-in. */
static inline bool rcl__bcache_off(const struct rcl_thread *t)
{
    return t->bc == &rcl__bcache_none;
}

/* The most a thread's lists may hold, in bytes (rcl__bcache_limit,
 * block_cache.c). */
#define RCL_BCACHE_BYTES_MAX (8u << 20)
extern _Atomic long rcl__bcache_bytes;

/* Would the lists' room, `bytes` more, stay within the byte bound? */
static inline bool rcl__bcache_fits(const struct rcl_bcache_lists *bc, size_t bytes)
{
    return bc->room + bytes <= (size_t)rd(rcl__bcache_bytes);
}

bool rcl__bcache_blocked(struct rcl_thread *t, unsigned c);

/* An allocation of class c found its list empty: the list may grow, if
 * the lists' room stays within the byte bound, or once the other lists
 * give up starting room they do not use (rcl__bcache_blocked). */
static inline void rcl__bcache_missed(struct rcl_thread *t, unsigned c)
{
    struct rcl_bcache_lists *bc = t->bc;
    size_t charge = rcl__bcache_charge(c);

    if (bc->depth[c + 1] >= RCL_BCACHE_DEPTH_MAX || rcl__bcache_off(t))
        return;
    bc->grown[c + 1] = 1;
    if (!rcl__bcache_fits(bc, charge) && !rcl__bcache_blocked(t, c))
        return;
    bc->depth[c + 1]++;
    bc->room += charge;
}

/*
 * The fast paths' way to a size's class, into the lvalue c: false for 0
 * and for sizes above the classes, the sizes up to 4 KiB - the most
 * common - tested first. A macro, not a function that takes its address:
 * under AddressSanitizer an address-taken local stays a stack slot with
 * redzones (its use-after-scope check), which a thread cancelled in a
 * call below the fast path would leave poisoned. The number less one is
 * taken in size_t, where the compiler folds it back into the lists'
 * [c + 1] and indexes them with the byte loaded.
 */
#define rcl__bcache_class_fits(size, c)                                                  \
    (likely((size) - 1 < RCL__SMALL_MAX)                                                 \
         ? ((c) = rcl__bcache_tab.small_nr[((size) - 1) >> 4] - (size_t)1, true)         \
         : (size) - 1 < RCL_BCACHE_MAX ? ((c) = rcl__bcache_class_above_1k(size), true)  \
                                       : false)

/* Under AddressSanitizer a cached block is poisoned whole, so that a use
 * after free is still caught. */
#ifdef RCL_ASAN
static inline void rcl__bcache_poison(struct rcl_hdr *h, size_t c)
{
    rcl__poison(rcl__hdr_user(h), rcl__bcache_cap(c));
}
#else
static inline void rcl__bcache_poison(struct rcl_hdr *h, size_t c) { (void)h; (void)c; }
#endif

/*
 * A list's length word (struct rcl_bcache_lists: len) holds the list's
 * length in its low 16 bits (RCL_BCACHE_DEPTH_MAX fits) and, above them,
 * the allocations the list served as cache hits: a hit adds RCL__LIST_HIT,
 * one block fewer and one more served, and a free into the list adds one,
 * so that either writes that one word and no count of the thread's. The
 * frees a list took are worked out: its length and its hits, less what
 * the slow paths moved on and off it (`adj`: every other change of its
 * length). Counted in the thread's own words as well, the allocations and
 * the frees took two more read-modify-writes in memory a pair, and cost a
 * hit pair over mimalloc 4 - 5 % (docs/bench/patterns.md, "Figures,
 * 2026-12-05, 05:00"). A thread's allocations and frees are its own
 * counts and its lists' together (rcl__bcache_counts(), summed in
 * thread.c).
 */
#define RCL__LIST_HIT ((1ull << 16) - 1)
static inline unsigned rcl__list_len(uint64_t w) { return (uint16_t)w; }
static inline uint64_t rcl__list_hits(uint64_t w) { return w >> 16; }

/* Class c's top block, off its list; the caller adds `w` to the list's
 * length word: RCL__LIST_HIT for a cache hit, else minus one. */
static inline struct rcl_hdr *rcl__bcache_pop(struct rcl_thread *t, size_t c, uint64_t w)
{
    struct rcl_bcache_lists *bc = t->bc;
    void *link = bc->top[c + 1];

    if (!link)
        return NULL;
    struct rcl_hdr *h = rcl__hdr_of(link);
    rcl__assert(rcl__hdr_listed(h) && own_rd16(bc->len[c + 1]) > 0 &&
                !h->next == (own_rd16(bc->len[c + 1]) == 1));
    bc->top[c + 1] = h->next;
    own_addm(bc->len[c + 1], w);
    return h;
}

/* A cached block of class c (whose charge is `charge`) handed out as a
 * cache hit, or NULL. Its charge leaves the cache with it. */
static inline struct rcl_hdr *rcl__bcache_take(struct rcl_thread *t, size_t c, long charge)
{
    rcl__assert(charge == (long)rcl__bcache_charge(c));
    return rcl__bcache_pop(t, c, RCL__LIST_HIT);
}

/* The same for an allocation the slow path counts: the caller gives the
 * charge to the stock, or hands the block out. */
static inline struct rcl_hdr *rcl__bcache_take_slow(struct rcl_thread *t, size_t c)
{
    struct rcl_hdr *h = rcl__bcache_pop(t, c, (uint64_t)-1);

    if (h)
        own_add(t->bc->adj[c + 1], -1);
    return h;
}

/*
 * Over glibc, an allocation whose list is empty, of a class that has
 * missed before, takes a cached block of a larger class before it asks for
 * new memory: of the next class up, or of one up to half as large again,
 * the nearest first. Its classes are eight per doubling, so that glibc's
 * 16-byte fit is not lost to the rounding (the table above), and a mix of
 * sizes spreads over many lists, each holding blocks its own sizes do not
 * need at that moment while the others ask the backend for more: live sets
 * of 512 blocks of a mix of 8 B - 4 KiB held 1.26 - 1.27x raw glibc's
 * memory, 1.02 - 1.04x with their neighbours' blocks lent (64 blocks:
 * 1.70 - 1.76x, 1.09 - 1.14x). The block keeps its class - its header, its
 * charge, the list it goes back to - so it costs the budget what it holds,
 * more than rcl_alloc_charge(size) says. Only for a class that has missed
 * since its depth was set (its `grown` mark): a class's first miss takes
 * a block of its own, which its list then keeps, or a thread that holds
 * one block of each size in turn would borrow at every allocation, its
 * own list never filled - a miss's path where a hit was, 0.93 - 1.14x
 * raw glibc's CPU time from 0.55 - 0.74x. Not over mimalloc and jemalloc:
 * four classes per doubling there, a mix already held no more than raw,
 * and that pattern ran at 1.4 - 2.0x their CPU time, from 0.9 - 1.1x. Not
 * under AddressSanitizer, which must see a block's end where the size
 * asked puts it.
 */
#if !RCL__BE_COARSE_CLASSES && !defined(RCL_ASAN)
#define RCL_BCACHE_BORROW 1
#else
#define RCL_BCACHE_BORROW 0
#endif

/* A cached block of a class above c (above), its class in *b; NULL if
 * none. Its charge leaves its list with it, as rcl__bcache_take()'s. */
static inline struct rcl_hdr *rcl__bcache_borrow(struct rcl_thread *t, unsigned c, unsigned *b)
{
    size_t most = rcl__bcache_cap(c) + rcl__bcache_cap(c) / 2;

    if (!RCL_BCACHE_BORROW || !t->bc->grown[c + 1])
        return NULL;
    for (unsigned k = c + 1; k < RCL_BCACHE_CLASSES; k++) {
        if (k > c + 1 && rcl__bcache_cap(k) > most)
            break;
        struct rcl_hdr *h = rcl__bcache_take_slow(t, k);
        if (h) {
            *b = k;
            return h;
        }
    }
    return NULL;
}

/* May a freed block of class c (whose charge is `charge`) be kept? Not
 * when the class's list is at its depth: the depths keep the lists
 * within the byte bound (rcl__bcache_missed). */
static inline bool rcl__bcache_room(const struct rcl_thread *t, size_t c, long charge)
{
    const struct rcl_bcache_lists *bc = t->bc;

    rcl__assert(charge == (long)rcl__bcache_charge(c));
    return own_rd16(bc->len[c + 1]) < bc->depth[c + 1];
}

/* Keeps a freed plain block of class c for reuse where rcl__bcache_room()
 * said it may, and so counts the free; its charge comes with it, from
 * what was handed out (or the caller takes it from the stock). The link
 * its first word takes marks it listed (rcl__hdr_listed()). */
static inline void rcl__bcache_put(struct rcl_thread *t, struct rcl_hdr *h, size_t c,
                                   long charge)
{
    struct rcl_bcache_lists *bc = t->bc;
    rcl__assert(own_rd16(bc->len[c + 1]) < bc->depth[c + 1] && !rcl__bcache_off(t) &&
                (uintptr_t)h >= RCL_BCACHE_MAX &&
                !bc->top[c + 1] == !own_rd16(bc->len[c + 1]) &&
                charge == (long)rcl__bcache_charge(c));
    h->next = bc->top[c + 1];
    bc->top[c + 1] = rcl__hdr_user(h);
    own_addm(bc->len[c + 1], 1);
    rcl__bcache_poison(h, c);
}

/* The depot (block_cache.c): a thread's full list of class c handed over
 * whole, its charge to the stock; and a batch taken for a thread whose
 * list is empty, its list charged from the stock, at most `room` bytes
 * with the block handed out. */
bool rcl__depot_give(struct rcl_thread *t, unsigned c);
struct rcl_hdr *rcl__depot_take(struct rcl_thread *t, unsigned c, size_t room);

/* The same with class c's slabs (slab.h), for a slab class: a batch of
 * fresh slots for an empty list; a full list's top batch back to them,
 * false for a class of no slabs or an empty list. */
struct rcl_hdr *rcl__bcache_fill(struct rcl_thread *t, unsigned c, size_t room);
/* One slot of slab class c for thread t, from the slab slots it holds
 * (slab.h); NULL when the backend has no span for a new slab. */
struct rcl_hdr *rcl__bcache_slot(struct rcl_thread *t, unsigned c);
bool rcl__bcache_spill(struct rcl_thread *t, unsigned c);

/* Exited threads' lists kept for the next threads (block_cache.c). */
#define RCL_BCACHE_LISTS_KEPT 8u

#define RCL_BCACHE_EVICT_AFTER 256u
void rcl__bcache_evict(struct rcl_thread *t, unsigned keep);

/* A free rcl__bcache_room() turned away, counted towards making room. */
static inline void rcl__bcache_turned_away(struct rcl_thread *t, unsigned c)
{
    if (unlikely(++t->bcache_full >= RCL_BCACHE_EVICT_AFTER))
        rcl__bcache_evict(t, c);
}

#endif /* RCL_BLOCK_CACHE_H */
