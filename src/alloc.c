/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the rcl_alloc family: where an allocation starts and where a
 * free ends.
 *
 * Every block carries a 16-byte header just before the pointer handed out:
 * the size asked, a check word, where the backend's block starts and the
 * block's class. That header is how rcl_free() knows what to uncharge
 * without asking the backend, and how it tells a pointer it handed out
 * from one it did not.
 *
 * The fast paths touch only this thread's state (rcl__self) and the block:
 *   rcl_alloc: a cached block      -> its charge moves with it to the
 *                                     program, the stock untouched;
 *              none                -> a new block (its class's slabs,
 *                                     slab.h, or backend malloc), charged
 *                                     from the stock if the stock covers it;
 *   rcl_free:  header checks out   -> keep the block in the cache, its
 *                                     charge with it; else back to its
 *                                     slab or the backend, its charge to
 *                                     the stock.
 * Everything else (first use, empty stock, the lock checker watching, bad
 * input, aligned and mapped blocks) goes through the slow paths below.
 * A call from a signal handler that interrupted the thread inside the
 * library (rcl_thread.busy) is served by alloc_signal.c instead; block.h
 * is what the two files share.
 *
 * The per-thread block cache the fast paths take from and give to is
 * block_cache.h's (with the classes and the block header it links
 * through); rcl__bcache_drain() (block_cache.c) empties it.
 */
#include "internal.h"
#include "backend.h"
#include "block_cache.h"
#include "block.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* meta packs what free must verify into one word, so the fast path checks
 * it with one compare against the thread's hdr_tag ^ address word ^ the
 * key of the class the header names (rcl__hdr_meta, block.h):
 *   check  (bits 0-31)  tells our blocks from anything else (VMAP_TAG
 *                       xor-ed in for mapped blocks); it covers the size,
 *                       or for a block of a class the class's charge;
 *   shift  (bits 32-39) the backend block starts (1 << shift) bytes before
 *                       the pointer: 4 for plain blocks;
 *   class  (bits 40-46) a plain block's class + 1, 0 for any other block:
 *                       a free finds the class, and so the charge, without
 *                       the size (bit 47 is clear: RCL__HDR_KNOWN,
 *                       block_cache.h);
 *   epoch  (bits 48-63) low bits of rcl__epoch: blocks from before an
 *                       rcl_shutdown() are no longer charged. */
#define HDR_SHIFT  4u
#define VMAP_TAG   0x5a5a0000u
#define RESV_TAG   0x0000a5a5u   /* a block from the I/O-flusher reserve */
_Static_assert(sizeof(struct rcl_hdr) == 16, "the header must keep 16-byte alignment");

/* Fixed for the life of the process, so blocks stay recognisable across
 * rcl_shutdown()/rcl_init(). Made at the first thread's registration
 * (rcl__hdr_tag), before any block can be charged. */
static uint32_t secret;

static void secret_make(void)
{
    int local;
    uint64_t x = ((uintptr_t)&local * 0x9e3779b97f4a7c15ull) ^ rcl__now_ns() ^
                 ((uint64_t)getpid() << 17);
    secret = (uint32_t)(x ^ (x >> 32));
}

static void secret_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, secret_make);
}

static inline uint64_t meta_bits(unsigned shift, unsigned epoch)
{
    return (uint64_t)shift << 32 | (uint64_t)(uint16_t)epoch << 48;
}

/* The shift and the epoch, folded into the check word: a header whose
 * shift or epoch was written over no longer checks out, where it would
 * otherwise free from the wrong address or skip its uncharge. One
 * multiplication by an odd number: distinct pairs, distinct words. */
static inline uint32_t meta_mix(unsigned shift, unsigned epoch)
{
    return (shift | (uint32_t)(uint16_t)epoch << 8) * 0x9e3779b1u;
}

static inline uint32_t check_word(const void *p, size_t size, unsigned shift, unsigned epoch)
{
    return addr_word(p, check_size(size)) ^ secret ^ meta_mix(shift, epoch);
}

/* The secret rides in the thread's tag, so that the fast paths make and
 * check a header with one load less (rcl__hdr_meta, block.h). */
uint64_t rcl__hdr_tag(unsigned epoch)
{
    secret_init();
    return meta_bits(HDR_SHIFT, epoch) | (secret ^ meta_mix(HDR_SHIFT, epoch)) | RCL__HDR_KNOWN;
}

static inline unsigned meta_shift(uint64_t meta) { return (unsigned)(meta >> 32) & 0xffu; }
static inline unsigned meta_class(uint64_t meta)
{
    return (unsigned)(meta >> RCL__HDR_CLASS_SHIFT) & 0xffu;
}
static inline unsigned meta_epoch(uint64_t meta) { return (unsigned)(meta >> 48); }

/* The class number a header with this shift and size must carry. */
static inline unsigned want_class(unsigned shift, size_t size)
{
    return shift == HDR_SHIFT ? hdr_class_nr(size) : 0;
}

/* A header for a block that is not handed out with the thread's tag: of
 * an earlier epoch (realloc), the flusher reserve's (tag RESV_TAG),
 * aligned or mapped (VMAP_TAG). A plain one is made as the fast paths
 * make theirs (rcl__hdr_meta), so that there is one layout to keep. */
static inline void *hdr_fill(struct rcl_hdr *h, size_t size, unsigned shift, unsigned epoch,
                             uint32_t tag)
{
    void *p = rcl__hdr_user(h);
    h->size = size;
    if (shift == HDR_SHIFT)
        h->meta = rcl__hdr_meta(rcl__hdr_tag(epoch), p, size) ^ tag;
    else
        h->meta = meta_bits(shift, epoch) | (check_word(p, size, shift, epoch) ^ tag);
    rcl__assert(meta_class(h->meta) == want_class(shift, size));
    return p;
}

/* ------------------------------------------------------------------------ */
/* Sizes and charges                                                         */
/* ------------------------------------------------------------------------ */

/*
 * What a block costs the budget: what it takes from the backend, not what
 * was asked - the class size, the header and the backend's own per-block
 * overhead. The kernel's memory cgroup charges pages for the same reason:
 * the charge must not be smaller than what is held. A function of the size
 * alone, so that a free uncharges exactly what its allocation charged.
 * Above the classes the charge stays byte-exact (so that a program can
 * fill its budget to the byte); the page rounding of the backend's mapped
 * blocks, at most 4 KiB on 64 KiB and more, is left to the footprint
 * samples (footprint.c), as is the backend's own class rounding.
 */
static inline size_t block_charge(size_t size)
{
    if (size <= RCL_BCACHE_MAX)
        return rcl__bcache_charge(rcl__bcache_class(size));
    return size + HDR + RCL__BE_BLOCK_OVERHEAD;
}

/* Aligned (shift > HDR_SHIFT) and mapped blocks: the size and the front
 * part the header sits in. A mapped block's charge; an aligned one's
 * before the backend has chosen its block. */
static inline size_t front_charge(size_t size, unsigned shift, bool mapped)
{
    return size + ((size_t)1 << shift) + (mapped ? 0 : RCL__BE_BLOCK_OVERHEAD);
}

/*
 * An aligned block's charge, as a plain one's: within the classes, what
 * the backend holds for it - its usable size and what it keeps beside
 * that, a mapped chunk's second word included (rcl__be_held) - and above
 * them the size and the front part to the byte. The
 * backend pads an aligned block beyond the size asked, to a class that
 * has the alignment (jemalloc) or by as much as the alignment again
 * (mimalloc, to find an aligned spot in a larger block), and the size
 * alone does not say by how much. Above the classes that padding is
 * address space the block never touches (mimalloc's 2 MiB alignment,
 * 4.4 MiB of block, has two pages resident), and what of it is resident
 * is the footprint samples' to count, as a plain block's class rounding
 * is. The block is never resized where it lies (rcl_realloc() moves it),
 * so its usable size, and with it the charge a free takes back, stays
 * what it was charged at.
 */
static inline size_t aligned_charge(const char *base, size_t size, unsigned shift)
{
    size_t held = rcl__be_held(base);

    return held <= RCL_BCACHE_MAX ? held : front_charge(size, shift, false);
}

size_t rcl_alloc_charge(size_t size)
{
    if (!size || size > SIZE_MAX - HDR - RCL__BE_BLOCK_OVERHEAD)
        return 0;
    return block_charge(size);
}

/* ------------------------------------------------------------------------ */
/* Allocation                                                                */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* NOFAIL through backend failures                                           */
/* ------------------------------------------------------------------------ */

/* The backend calls an allocation may retry: a plain block's (n is the
 * size asked: block_new), an aligned one's, a resize and a mapping. A
 * zeroed resize keeps the header and what its size says, the old one
 * until the block is handed out again. */
enum be_op { BE_BLOCK, BE_ZBLOCK, BE_MEMALIGN, BE_ZMEMALIGN, BE_REALLOC, BE_ZREALLOC, BE_MMAP };

static void *be_call(enum be_op op, void *old, size_t align, size_t n)
{
    switch (op) {
    case BE_BLOCK:     return block_new(n);
    case BE_ZBLOCK:    return rcl__be_calloc(n);
    case BE_MEMALIGN:  return rcl__be_memalign(align, n);
    case BE_ZMEMALIGN: return rcl__be_memalign_zero(align, n);
    case BE_REALLOC:   return rcl__be_realloc(old, n);
    case BE_ZREALLOC:  return rcl__be_realloc_zero(old, HDR + ((struct rcl_hdr *)old)->size, n);
    case BE_MMAP:      break;
    }
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* A NOFAIL request that may wait: the one that never fails for want of
 * memory (NOFAIL without DIRECT_RECLAIM is refused as a contradiction). */
static inline bool nofail_waits(rcl_gfp_t gfp)
{
    return (gfp & (RCL__NOFAIL | RCL__DIRECT_RECLAIM)) == (RCL__NOFAIL | RCL__DIRECT_RECLAIM);
}

static _Atomic long long be_stall_reported;

/* A cancelled NOFAIL request gives back what it had charged (*bytes),
 * and leaves the library with it (rcl__busy_sleep_ns(), thread.h says
 * why). */
static void charge_return(void *bytes)
{
    size_t n = *(const size_t *)bytes;

    rcl__asan_unwinding();
    if (n)
        rcl__uncharge_fast(&rcl__self, n);
    rcl__busy_drop(&rcl__self, 0);
}

/* The retries of be_nofail(), until the backend gives a block. */
static void *be_retry(enum be_op op, void *old, size_t align, size_t n, size_t size,
                      rcl_gfp_t gfp)
{
    unsigned long long start = rcl__now_ns();
    unsigned long long next = start + (unsigned long long)rcl__cfg.stall_ms * 1000000ull;

    for (unsigned round = 0;; round++) {
        rcl__reclaim_wake();
        rcl_reclaim(128 * 1024, gfp & ~RCL__NOFAIL);
        struct timespec ts = { 0, round < 10 ? 100000L << (round / 2) : 10000000L };
        nanosleep(&ts, NULL);
        void *p = be_call(op, old, align, n);
        if (p)
            return p;
        unsigned long long now = rcl__now_ns();
        if (now >= next) {
            char flags[128];
            rcl__count(nofail_stalls, 1);
            rcl__report_limited(&be_stall_reported,
                                "allocation stall: %zu bytes (%s) waiting for %llu ms: the "
                                "system allocator keeps failing", size,
                                rcl__gfp_str(gfp, flags, sizeof(flags)),
                                (now - start) / 1000000ull);
            next = now + (unsigned long long)rcl__cfg.stall_ms * 1000000ull;
        }
    }
}

/*
 * A NOFAIL request the budget already granted (`charged` bytes), whose
 * backend call failed (the system is short of memory, or of mappings):
 * the backend failing is a stall like reclaim not keeping up, so the call
 * reclaims what its context allows, waits a bounded, growing time and
 * tries again, reporting a stall every stall_ms. Only a size no backend
 * can ever give fails. The wait stays a cancellation point - a daemon
 * ends a stuck worker with pthread_cancel(), as a fatal signal ends a
 * task in the kernel's NOFAIL retry - and a cancelled request gives its
 * charge back.
 */
static __attribute__((noinline, cold)) void *be_nofail(enum be_op op, void *old, size_t align,
                                                       size_t n, size_t size, rcl_gfp_t gfp,
                                                       size_t charged)
{
    void *p;

    if (n > PTRDIFF_MAX)
        return NULL;
    pthread_cleanup_push(charge_return, &charged);
    p = be_retry(op, old, align, n, size, gfp);
    pthread_cleanup_pop(0);
    return p;
}

/* The backend's answer p, or for a NOFAIL request that may wait, what the
 * retries above get. */
static inline void *be_or_retry(void *p, enum be_op op, void *old, size_t align, size_t n,
                                size_t size, rcl_gfp_t gfp, size_t charged)
{
    if (likely(p != NULL) || !nofail_waits(gfp))
        return p;
    return be_nofail(op, old, align, n, size, gfp, charged);
}

/*
 * rcl_alloc() and rcl_free() start on a 64-byte boundary. Where their hit
 * paths (26 and 34 instructions with gcc 12) fall in memory decided a
 * pair's cost as much as any instruction in them: the same code moved 16
 * bytes on by an unrelated change above it took the FIFO live sets over
 * mimalloc from 1.05 - 1.37x raw mimalloc's CPU time to 1.11 - 1.61x on
 * an Intel Xeon, and aligned it read 1.04 - 1.34x (docs/bench/patterns.md,
 * "Figures, 2026-12-03, 18:55"). Aligned, the entry points stay where
 * they were measured whatever changes around them.
 */
#define FAST_ENTRY __attribute__((aligned(64)))

/* Every plain block leaves through here, its size already charged. */
static inline void *hand_out(struct rcl_thread *t, struct rcl_hdr *h, size_t size, rcl_gfp_t gfp)
{
    void *p = rcl__hdr_user(h);

    rcl__assert(rcl__stock_avail(t) >= 0);
    user_fit(h, size);
    own_inc(t->nr_alloc);
    h->size = size;
    h->meta = rcl__hdr_meta(t->hdr_tag, p, size);
    if (unlikely(gfp & RCL__ZERO))
        return memset(p, 0, size);
    return p;
}

/* A cache hit: the cached block's header is right but for its first
 * word, the list's link, which the size asked replaces (block_cache.h:
 * rcl__hdr_listed()); its check word is the class's, right for any size
 * of the class. */
static inline void *hand_out_cached(struct rcl_thread *t, struct rcl_hdr *h, size_t size)
{
    rcl__assert(h->meta == rcl__hdr_meta(t->hdr_tag, rcl__hdr_user(h), size));
    user_fit(h, size);
    h->size = size;
    return rcl__hdr_user(h);
}

static _Atomic long long no_memory_reported;

/* An allocation that found no memory, reclaim and the backend's retries
 * done: what was charged for it goes back, and the failure counts and is
 * reported as a charge's failure is (account.c), unless NOWARN - the
 * kernel's warn_alloc() does not ask which stage of the allocation
 * failed either. */
static __attribute__((cold)) void *no_memory(struct rcl_thread *t, size_t charged, size_t size,
                                             rcl_gfp_t gfp, const char *why)
{
    if (charged)
        rcl__uncharge_fast(t, charged);
    rcl__count(failures, 1);
    if (!(gfp & RCL__NOWARN)) {
        char flags[128];
        rcl__report_limited(&no_memory_reported, "allocation of %zu bytes (%s) failed: %s",
                            size, rcl__gfp_str(gfp, flags, sizeof(flags)), why);
    }
    return fail(ENOMEM);
}

#define NO_BACKEND_MEMORY "the system allocator has no memory for it"

/* A request no block can ever meet (size 0, an alignment that is not a
 * power of two, a size that overflows): its caller's bug. One with
 * NOFAIL is reported as well, as one larger than the budget is
 * (account.c): its caller will not look for NULL, and would fault
 * somewhere else with nothing said. */
static __attribute__((noinline, cold, format(printf, 3, 4))) void *refused(int err, rcl_gfp_t gfp,
                                                                         const char *fmt, ...)
{
    if (gfp & RCL__NOFAIL) {
        rcl__count(failures, 1);
        if (!(gfp & RCL__NOWARN)) {
            char what[128], flags[128];
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(what, sizeof(what), fmt, ap);
            va_end(ap);
            rcl__report("NOFAIL allocation (%s) can never succeed: %s",
                        rcl__gfp_str(gfp, flags, sizeof(flags)), what);
        }
    }
    return fail(err);
}

/* An I/O-flusher thread in the unprivileged mode (flusher_reserve.c): from
 * memory faulted in for it, charged when the reserve was made; none left
 * fails at once, and quietly, as NOWAIT does, rather than fault a new
 * page. But NOFAIL, which the kernel never fails on a flusher either: NULL
 * without errno, and the caller goes on down the ordinary path. */
static __attribute__((noinline, cold)) void *resv_alloc(struct rcl_thread *t, size_t size,
                                                        rcl_gfp_t gfp)
{
    /* The reserve never waits, but the contradiction is the caller's
     * whatever serves it: a flusher's NOFAIL|NOWAIT is the same bug in
     * code that also runs on threads that are not flushers. */
    if (unlikely(rcl__gfp_nofail_nowait(gfp)))
        return fail(-rcl__nofail_nowait_refuse(block_charge(size), gfp));
    struct rcl_hdr *h = rcl__resv_alloc(size);
    if (!h && nofail_waits(gfp))
        return NULL;
    if (!h)
        return no_memory(t, 0, size, gfp | RCL__NOWARN, NULL);
    void *p = hdr_fill(h, size, HDR_SHIFT, rd(t->epoch), RESV_TAG);
    return gfp & RCL__ZERO ? memset(p, 0, size) : p;
}

/*
 * A zeroed block above the classes is zeroed by the backend: it writes
 * only memory that is not fresh from the system (glibc's calloc skips a
 * chunk it has just mapped, jemalloc's memory it knows is unused, and
 * over mimalloc the block's pages are dropped: backend.h), where a memset
 * would make every page of the block resident at once - a table of a
 * gigabyte a program fills sparsely, a gigabyte resident.
 * Below, a block of a class comes from the cache, the slabs or the
 * backend's reused memory, and the memset is what a calloc would do.
 */
static inline bool zeroed_large(size_t size, rcl_gfp_t gfp)
{
    return (gfp & RCL__ZERO) && size > RCL_BCACHE_MAX;
}

/* Charged first, then taken from the backend: the budget must never be
 * exceeded, even for the instant between the two. */
static __attribute__((noinline, cold)) void *alloc_slow(size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    int err;

    if (!size)
        return refused(EINVAL, gfp, "size 0");
    if (size > SIZE_MAX - HDR - RCL__BE_BLOCK_OVERHEAD)
        return refused(EOVERFLOW, gfp, "%zu bytes and the header overflow", size);
    if (unlikely(rcl__sig_pending(t)))
        rcl__sig_service(t);
    if (unlikely(rd(t->watch.reserve))) {
        void *p = resv_alloc(t, size, gfp);
        if (likely(p != NULL) || !nofail_waits(gfp))
            return p;
    }
    size_t cost = block_charge(size);
    if ((err = rcl__charge(t, cost, gfp)) != 0)
        return fail(-err);

    struct rcl_hdr *h = NULL;
    if (size <= RCL_BCACHE_MAX) {
        unsigned c = rcl__bcache_class(size);
        /* A cached block brings its own charge: the one just taken goes
         * back (as reclaim's progress, in a reclaim). */
        if ((h = rcl__bcache_take_slow(t, c)) != NULL) {
            rcl__acct_out(t, cost);
            rcl__uncharge_fast(t, cost);
        } else {
            rcl__bcache_missed(t, c);
        }
    }
    /* A zeroed block the backend fails is a failure, as any other: a
     * plain block asked for after it would go out unzeroed. */
    if (!h && zeroed_large(size, gfp)) {
        h = be_or_retry(rcl__be_calloc(backend_size(size)), BE_ZBLOCK, NULL, 0,
                        backend_size(size), size, gfp, cost);
        gfp &= ~RCL__ZERO;      /* the backend zeroed it */
    } else if (!h) {
        h = be_or_retry(block_new(size), BE_BLOCK, NULL, 0, size, size, gfp, cost);
    }
    if (!h)
        return no_memory(t, cost, size, gfp, NO_BACKEND_MEMORY);
    return hand_out(t, h, size, gfp);
}

/* A block for a thread whose list of class c is empty: a batch from the
 * depot, if another thread freed one there (the rest of it becomes the
 * list, charged from what the stock has unused, as long as the list's
 * depth), else the backend's. */
static inline struct rcl_hdr *fresh_block(struct rcl_thread *t, size_t size, unsigned c,
                                          long cost, long avail)
{
    long cache_room = (long)t->bc->depth[c + 1] * cost;
    long more = avail - cost < cache_room ? avail - cost : cache_room;
    size_t room = (size_t)(cost + (more > 0 ? more : 0));
    struct rcl_hdr *h = rcl__depot_take(t, c, room);

    if (h)
        return h;
    return rcl__slab_wanted(t, c) ? rcl__bcache_fill(t, c, room) : block_new(size);
}

/* The fast path when the cache has no block of the class: over glibc a
 * larger class's (block_cache.h), else the backend's, if the part of the
 * stock not backing cached blocks covers it. Out of line, so that a
 * cache hit needs no stack frame. */
static __attribute__((noinline)) void *alloc_fresh(size_t size, unsigned c, long cost,
                                                   rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    struct rcl_hdr *h;
    unsigned b;

    /* A block of a larger class keeps it: the header says the smallest
     * size of that class, so that what is worked out from it - the
     * class, the charge, where the block goes back - is the block's.
     * What lies between the size asked and the header's is the block's
     * last owner's, where a grow with RCL__ZERO (realloc_body) zeroes
     * only past the header's size: it is zeroed here. */
    if ((h = rcl__bcache_borrow(t, c, &b)) != NULL) {
        size_t says = rcl__bcache_cap(b - 1) + 1;
        char *p;

        rcl__assert(says > size);
        rcl__acct_out(t, rcl__bcache_charge(b));
        p = hand_out(t, h, says, gfp);
        if (!(gfp & RCL__ZERO))
            memset(p + size, 0, says - size);
        return p;
    }
    long avail = rcl__stock_avail(t);
    if (unlikely(cost > avail) || unlikely(!(h = fresh_block(t, size, c, cost, avail))))
        return alloc_slow(size, gfp);   /* which counts the miss */
    rcl__bcache_missed(t, c);
    wr(t->stock, rd(t->stock) - cost);
    rcl__acct_out(t, cost);
    return hand_out(t, h, size, gfp);
}

/* The continuations of rcl_alloc's fast path: they leave the library, so
 * that the fast path keeps its tail calls. The fresh one is given the
 * class's number, which the fast path holds in a register, rather than
 * its index, which it would compute for the miss alone. */
static __attribute__((noinline)) void *alloc_fresh_out(size_t size, size_t nr, long cost,
                                                       rcl_gfp_t gfp)
{
    void *p = alloc_fresh(size, (unsigned)nr - 1, cost, gfp);
    rcl__busy_leave(&rcl__self);
    return p;
}

static __attribute__((noinline, cold)) void *alloc_slow_out(size_t size, rcl_gfp_t gfp)
{
    void *p = alloc_slow(size, gfp);
    rcl__busy_leave(&rcl__self);
    return p;
}

/* The fast path once the class is known: a cached block brings its
 * charge (from its list's), the stock untouched; else the backend's,
 * through the stock. The charge is read only then. */
static inline void *alloc_cached(struct rcl_thread *t, size_t size, size_t c, rcl_gfp_t gfp)
{
    struct rcl_hdr *h = rcl__bcache_take(t, c, (long)rcl__bcache_charge(c));
    if (unlikely(h == NULL))
        return alloc_fresh_out(size, c + 1, (long)rcl__bcache_charge(c), gfp);
    rcl__acct_out(t, rcl__bcache_charge(c));
    void *p = hand_out_cached(t, h, size);
    if (unlikely(gfp & RCL__ZERO))
        memset(p, 0, size);
    rcl__busy_leave(t);
    return p;
}

/* rcl_alloc's way round its entry test: a signal handler that
 * interrupted the thread inside the library, a thread something watches
 * (the slow path), a block to be zeroed or a NOFAIL request, which still
 * take the fast path if nothing watches the thread - unless NOFAIL may
 * not wait, a contradiction the slow path refuses however full the cache. */
static __attribute__((noinline)) void *alloc_other_out(size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    size_t c;

    if (rcl__busy_try_enter(t))
        return rcl__sig_alloc(size, gfp);
    gfp = rcl__gfp_known("rcl_alloc", gfp);
    if (rcl__fast_ok(t) && !rcl__gfp_nofail_nowait(gfp) && rcl__bcache_class_fits(size, c))
        return alloc_cached(t, size, c, gfp);
    return alloc_slow_out(size, gfp);
}

/*
 * The entry tests the mark, the watch word and the zeroing and NOFAIL
 * flags (with the bits no flag has, in one mask) at once, and branches
 * once: three tests and branches, as they were, took a cache-hit pair
 * over mimalloc 5 - 8 % longer on an AMD EPYC (Zen 5)
 * (docs/bench/patterns.md, "Figures, 2026-12-04, 19:30"). The watch word is read before the mark is set, not
 * after: a request that comes in between is met at the next call, as one
 * that comes in just after the test always was.
 */
FAST_ENTRY void *rcl_alloc(size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    size_t c;

    if (unlikely(rcl__busy_or_watched(t) | (gfp & (RCL__ZERO | RCL__NOFAIL | ~RCL__GFP_ALL))))
        return alloc_other_out(size, gfp);
    rcl__busy_enter(t);
    if (likely(rcl__bcache_class_fits(size, c)))
        return alloc_cached(t, size, c, gfp);
    return alloc_slow_out(size, gfp);
}

/* An allocation or free the library makes inside one of its own calls:
 * the thread leaves the library for it (nothing is half changed there),
 * and comes back. */
static void *alloc_nested(size_t size, rcl_gfp_t gfp)
{
    unsigned b = rcl__busy_out();
    void *p = rcl_alloc(size, gfp);
    rcl__busy_back(b);
    return p;
}

static void free_nested(void *p)
{
    unsigned b = rcl__busy_out();
    rcl_free(p);
    rcl__busy_back(b);
}

/* A handler's overflow is not reported: a report takes a lock. */
static __attribute__((noinline, cold)) void *calloc_overflow(size_t n, size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;

    if (t->busy)
        return rcl__sig_refused(EOVERFLOW, gfp);
    /* The flags are checked as rcl_alloc() would have: the bits no flag
     * has are the caller's other mistake, whatever the sizes. */
    gfp = rcl__gfp_known("rcl_calloc", gfp);
    rcl__busy_enter(t);
    void *p = refused(EOVERFLOW, gfp, "%zu x %zu bytes overflows", n, size);
    rcl__busy_leave(t);
    return p;
}

void *rcl_calloc(size_t n, size_t size, rcl_gfp_t gfp)
{
    size_t total;

    if (__builtin_mul_overflow(n, size, &total))
        return calloc_overflow(n, size, gfp);
    return rcl_alloc(total, gfp | RCL__ZERO);
}

/* The pages of a mapping of span bytes at m that the block from base to
 * end leaves out: what an alignment above a page took to find. */
static void map_trim(char *m, size_t span, char *base, char *end)
{
    if (base > m)
        munmap(m, (size_t)(base - m));
    if (end < m + span)
        munmap(end, (size_t)(m + span - end));
}

/*
 * A block the library maps itself: whole pages, aligned to a page or to
 * `align` where that is more, with one more page in front for the
 * header. The
 * kernel hands the pages out zeroed and the library writes none of them,
 * so they stay out of the resident set until the program touches them:
 * rcl_valloc()'s blocks, and over glibc a zeroed aligned block above the
 * classes, which glibc would write whole (backend.h).
 */
static void *map_body(size_t size, size_t align, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    size_t page = rcl__page_size();
    unsigned shift = (unsigned)__builtin_ctzl(page);
    size_t step = align > page ? align : page;
    int err;

    if (size > SIZE_MAX - page - step)
        return refused(EOVERFLOW, gfp, "%zu bytes in whole pages overflow", size);
    size_t len = (size + page - 1) & ~(page - 1);
    /* The scope applies here as everywhere: the kernel's vmalloc once
     * ignored GFP_NOFS because it allocated page tables with GFP_KERNEL
     * ("vmalloc with GFP_NOFS", linux-kernel, May 2018). */
    size_t cost = front_charge(len, shift, true);
    if ((err = rcl__charge(t, cost, gfp)) != 0)
        return fail(-err);

    /* An alignment above a page is found in a mapping larger by it, the
     * pages on either side of the block then unmapped. */
    size_t span = len + step;
    char *m = be_or_retry(be_call(BE_MMAP, NULL, 0, span), BE_MMAP, NULL, 0, span, size, gfp,
                          cost);
    if (!m)
        return no_memory(t, cost, size, gfp, NO_BACKEND_MEMORY);
    char *p = (char *)(((uintptr_t)m + page + step - 1) & ~(uintptr_t)(step - 1));
    rcl__assert(p - page >= m && p + len <= m + span);
    map_trim(m, span, p - page, p + len);
    own_inc(t->nr_alloc);
    return hdr_fill(rcl__hdr_of(p), len, shift, rd(t->epoch), VMAP_TAG);
}

/*
 * The charge of the aligned block at base, `charged` so far (its front
 * charge), made its own (aligned_charge()). Only the backend's answer
 * tells how much it padded the block, so the front charge is taken first,
 * as for any block, and the padding after: the block is not handed out
 * until it is charged whole. Where the padding cannot be charged, the
 * caller gives the block back with the front charge.
 */
struct aligned_held { char *base; size_t charged; };

/* The padding's charge may reclaim, and a shrinker there end the thread,
 * or a NOFAIL wait be cancelled: the block and its front charge go with
 * the thread, as they go back where the charge fails, and the thread
 * leaves the library (charge_return() says why). */
static void aligned_return(void *arg)
{
    const struct aligned_held *a = arg;

    rcl__asan_unwinding();
    rcl__be_free(a->base);
    rcl__uncharge_fast(&rcl__self, a->charged);
    rcl__busy_drop(&rcl__self, 0);
}

static int aligned_padding_charge(struct rcl_thread *t, char *base, size_t charged, size_t more,
                                  rcl_gfp_t gfp)
{
    struct aligned_held a = { base, charged };
    int err;

    pthread_cleanup_push(aligned_return, &a);
    err = rcl__charge(t, more, gfp);
    pthread_cleanup_pop(0);
    return err;
}

static int aligned_charge_fix(struct rcl_thread *t, char *base, size_t size, unsigned shift,
                              size_t charged, rcl_gfp_t gfp)
{
    size_t held = aligned_charge(base, size, shift);

    if (held > charged)
        return aligned_padding_charge(t, base, charged, held - charged, gfp);
    if (held < charged)
        rcl__uncharge_fast(t, charged - held);
    return 0;
}

static void *aligned_body(size_t align, size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    int err;

    if (!align || (align & (align - 1)))
        return refused(EINVAL, gfp, "alignment %zu is not a power of two", align);
    if (!size)
        return refused(EINVAL, gfp, "size 0");
    if (align <= HDR)
        return alloc_nested(size, gfp);
    /* Before anything is charged: an alignment of half the address space
     * would wrap 2 * align to 0 and let any size through. */
    if (align > SIZE_MAX / 4 || size > SIZE_MAX - 2 * align - RCL__BE_BLOCK_OVERHEAD)
        return refused(EOVERFLOW, gfp, "%zu bytes aligned to %zu overflow", size, align);
    if (zeroed_large(size, gfp) && !RCL__BE_MEMALIGN_ZERO_FRESH)
        return map_body(size, align, gfp);
    unsigned shift = (unsigned)__builtin_ctzl(align);
    size_t cost = front_charge(size, shift, false);
    if ((err = rcl__charge(t, cost, gfp)) != 0)
        return fail(-err);

    /* The header sits in the first `align` bytes, just before the aligned
     * pointer, so the block keeps its alignment. A zeroed one is zeroed
     * by the backend, as alloc_slow() says why; above the classes, where
     * the backend would write it whole, it was mapped (above). */
    bool zero = gfp & RCL__ZERO;
    char *base = be_or_retry(zero ? rcl__be_memalign_zero(align, size + align) :
                                    rcl__be_memalign(align, size + align),
                             zero ? BE_ZMEMALIGN : BE_MEMALIGN, NULL, align, size + align, size,
                             gfp, cost);
    if (!base)
        return no_memory(t, cost, size, gfp, NO_BACKEND_MEMORY);
    if ((err = aligned_charge_fix(t, base, size, shift, cost, gfp)) != 0) {
        rcl__be_free(base);
        rcl__uncharge_fast(t, cost);
        return fail(-err);
    }
    own_inc(t->nr_alloc);
    return hdr_fill(rcl__hdr_of(base + align), size, shift, rd(t->epoch), 0);
}

static void *valloc_body(size_t size, rcl_gfp_t gfp)
{
    if (!size)
        return refused(EINVAL, gfp, "size 0");
    return map_body(size, rcl__page_size(), gfp);
}

/* ------------------------------------------------------------------------ */
/* Free                                                                      */
/* ------------------------------------------------------------------------ */

static inline enum block_kind kind_of(const void *p, const struct rcl_hdr *h, uint64_t meta)
{
    unsigned shift = meta_shift(meta);
    uint32_t want = check_word(p, h->size, shift, meta_epoch(meta));
    uint32_t check = (uint32_t)meta;

    if (meta_class(meta) != want_class(shift, h->size))
        return BLOCK_FOREIGN;     /* a cached block's among them */
    if (check == want && shift >= HDR_SHIFT && shift < 8 * sizeof(size_t))
        return BLOCK_HEAP;
    if (check == (want ^ VMAP_TAG) && shift >= 12 && shift < 8 * sizeof(size_t))
        return BLOCK_VMAP;
    if (check == (want ^ RESV_TAG) && shift == HDR_SHIFT && rcl__resv_owns(h))
        return BLOCK_RESERVE;
    return BLOCK_FOREIGN;
}

enum block_kind rcl__block_kind(const void *p, const struct rcl_hdr *h)
{
    return kind_of(p, h, h->meta);
}

enum block_kind rcl__block_kind_as(const void *p, const struct rcl_hdr *h, uint64_t meta)
{
    return kind_of(p, h, meta);
}

/* Only a block of the current epoch is charged: blocks from before
 * rcl_shutdown() are no longer in any budget. */
size_t rcl__block_charged(const struct rcl_hdr *h, uint64_t meta, enum block_kind kind)
{
    unsigned shift = meta_shift(meta);

    if (kind == BLOCK_RESERVE || !atomic_load(&rcl__ready) ||
        meta_epoch(meta) != (uint16_t)atomic_load(&rcl__epoch))
        return 0;
    if (shift == HDR_SHIFT)
        return block_charge(h->size);
    if (kind == BLOCK_VMAP)
        return front_charge(h->size, shift, true);
    return aligned_charge((const char *)(h + 1) - ((size_t)1 << shift), h->size, shift);
}

static void bad_free(const char *fn, void *p)
{
    rcl__count(bad_frees, 1);
    rcl__report("%s(%p): not a block from this library, or already freed; left alone", fn, p);
    errno = EINVAL;
}

/*
 * A mapped block's header sits in its own page in front of the pages
 * handed out. Unmapped with them, a second rcl_free() of the block would
 * fault reading it. So the data pages go at once, while the header page
 * stays mapped, its memory given back (it reads as zeros: no block's
 * header), for the next VMAP_QUARANTINE frees of mapped blocks: a second
 * free within that span is reported as a bad free. Beyond it the page is
 * unmapped and a second free faults as before; a lock-free ring keeps the
 * bound, so a program that maps and frees forever holds at most
 * VMAP_QUARANTINE pages of address space, and no memory, for it.
 */
#define VMAP_QUARANTINE 64u
static void *_Atomic vmap_quarantine[VMAP_QUARANTINE];
static _Atomic unsigned vmap_quarantine_next;

static void vmap_release(char *base, size_t front, size_t len)
{
    munmap(base + front, len);
    madvise(base, front, MADV_DONTNEED);
    unsigned slot = atomic_fetch_add(&vmap_quarantine_next, 1) % VMAP_QUARANTINE;
    void *old = atomic_exchange(&vmap_quarantine[slot], (void *)base);
    if (old)
        munmap(old, front);
}

/* Releases a block whose header checked out, uncharged by what it holds. */
void rcl__block_release(struct rcl_hdr *h, enum block_kind kind)
{
    struct rcl_thread *t = &rcl__self;
    size_t size = h->size;
    unsigned shift = meta_shift(h->meta);
    char *base = (char *)rcl__hdr_user(h) - ((size_t)1 << shift);
    size_t charge = rcl__block_charged(h, h->meta, kind);

    h->meta = 0;
    if (kind == BLOCK_RESERVE) {
        rcl__resv_free(h);
        return;
    }
    if (charge) {
        if (likely(rcl__thread_attach(t)))
            own_inc(t->nr_free);
        else
            rcl__count(exited_frees, 1);    /* no registered thread counts it */
        rcl__uncharge_fast(t, charge);
    }
    if (kind == BLOCK_VMAP)
        vmap_release(base, (size_t)1 << shift, size);
    else if (shift == HDR_SHIFT)
        block_delete(h, size);
    else
        rcl__be_free(base);
}

static __attribute__((noinline, cold)) void free_slow(const char *fn, void *p)
{
    struct rcl_hdr *h = rcl__hdr_of(p);
    enum block_kind kind = rcl__block_kind(p, h);

    if (kind == BLOCK_FOREIGN)
        bad_free(fn, p);
    else
        rcl__block_release(h, kind);
}

static __attribute__((noinline, cold)) void free_slow_out(const char *fn, void *p)
{
    free_slow(fn, p);
    rcl__busy_leave(&rcl__self);
}

/* The fast free of a block the cache turned away, whose charge the stock
 * has room for: out of line, so that a free into the cache makes no call
 * and needs no stack frame. It takes the class's key and number as
 * rcl_free() holds them, and works out the charge and the index itself:
 * given the charge and the index, the fast path copied a register for
 * the call even on its way to the cache. */
static __attribute__((noinline)) void free_uncached_out(struct rcl_thread *t,
                                                        struct rcl_hdr *h, uint64_t key,
                                                        size_t nr)
{
    unsigned c = (unsigned)nr - 1;
    long charge = (uint32_t)key;

    rcl__acct_out(t, -charge);
    /* A full list that is only a batch goes to the depot, for a thread
     * that allocates what this one frees; the block starts the list anew. */
    bool gave = rcl__depot_give(t, c);
    /* A slab class's list too long for a batch gives its top batch back
     * to the slabs instead: still a free the list turned away. */
    bool spilled = !gave && rcl__bcache_spill(t, c);

    if ((gave || spilled) && rcl__bcache_room(t, c, charge)) {
        rcl__bcache_put(t, h, c, charge);       /* which counts the free */
    } else {
        own_inc(t->nr_free);
        block_delete_class(h, c);
        wr(t->stock, rd(t->stock) + charge);
    }
    if (!gave)
        rcl__bcache_turned_away(t, c);
    if (gave || spilled)
        rcl__stock_spill(t);
    rcl__busy_leave(t);
}

FAST_ENTRY void rcl_free(void *p)
{
    if (!p)
        return;
    struct rcl_thread *t = &rcl__self;
    if (unlikely(rcl__busy_try_enter(t))) {
        rcl__sig_free(p);
        return;
    }
    struct rcl_hdr *h = rcl__hdr_of(p);
    uint64_t meta = h->meta;

    /* The header names its class; the class's key makes the check (and
     * holds the charge the check word covers). Blocks above the classes,
     * aligned and mapped ones have none, and take the slow path: they
     * are large, or rare next to the small ones. The class is taken
     * from the word the check loads, not by a second load of its byte,
     * which the compilers would otherwise choose in some builds (hence
     * the empty asm): one load less a free (docs/bench/patterns.md,
     * "Figures, 2026-12-03, 07:50"). A block whose header checks out but
     * holds a link is in a list already: a second free, which the slow
     * path reports. */
    __asm__("" : "+r"(meta));
    size_t nr = meta_class(meta);
    uint64_t key = rcl__bcache_tab.key[nr];
    if (likely(meta == (t->hdr_tag ^ addr_word(p, 0) ^ key)) && likely(!rcl__hdr_listed(h))) {
        rcl__assert(nr - 1 < RCL_BCACHE_CLASSES);
        if (nr - 1 >= RCL_BCACHE_CLASSES)
            __builtin_unreachable();      /* no such key matches (block.h) */
        size_t c = nr - 1;
        long charge = (uint32_t)key;
        /* A kept block keeps its charge, in the cache; any other adds
         * it to the stock, which stock_max bounds (and a reclaim or a
         * drain request makes negative, for both: account.c). */
        if (likely(rcl__bcache_room(t, c, charge))) {
            if (likely(!rd_negative(&t->stock_max))) {
                rcl__bcache_put(t, h, c, charge);
                rcl__acct_out(t, -charge);
                rcl__busy_leave(t);
                return;
            }
        } else if (rd(t->stock) + charge <= rd(t->stock_max)) {
            free_uncached_out(t, h, key, nr);
            return;
        }
    }
    free_slow_out("rcl_free", p);
}

/* ------------------------------------------------------------------------ */
/* The entry points: the thread marked busy, or a handler (alloc_signal.c)  */
/* ------------------------------------------------------------------------ */

/* A handler's aligned allocation: a bad alignment is the caller's bug
 * there as anywhere (EINVAL), not a stash found empty (ENOMEM), which
 * the handler may well wait out and ask again. */
static __attribute__((noinline, cold)) void *sig_aligned(size_t align, size_t size,
                                                         rcl_gfp_t gfp)
{
    if (!align || (align & (align - 1)))
        return rcl__sig_refused(EINVAL, gfp);
    if (align <= HDR)
        return rcl__sig_alloc(size, gfp);
    return rcl__sig_unserved(size, gfp);
}

/* A handler may not map a block; its caller's bugs read as they do
 * outside it, as sig_aligned() says why. */
static __attribute__((noinline, cold)) void *sig_valloc(size_t size, rcl_gfp_t gfp)
{
    return rcl__sig_unserved(size, gfp);
}

void *rcl_aligned_alloc(size_t align, size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    if (unlikely(t->busy))
        return sig_aligned(align, size, gfp);
    gfp = rcl__gfp_known("rcl_aligned_alloc", gfp);
    rcl__busy_enter(t);
    void *p = aligned_body(align, size, gfp);
    rcl__busy_leave(t);
    return p;
}

void *rcl_valloc(size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    if (unlikely(t->busy))
        return sig_valloc(size, gfp);
    gfp = rcl__gfp_known("rcl_valloc", gfp);
    rcl__busy_enter(t);
    void *p = valloc_body(size, gfp);
    rcl__busy_leave(t);
    return p;
}

/* Either function frees either kind of block, as the kernel's kvfree(). */
void rcl_vfree(void *p)
{
    if (!p)
        return;
    struct rcl_thread *t = &rcl__self;
    if (unlikely(t->busy)) {
        rcl__sig_free(p);
        return;
    }
    rcl__busy_enter(t);
    free_slow("rcl_vfree", p);
    rcl__busy_leave(t);
}

/* ------------------------------------------------------------------------ */
/* Realloc                                                                   */
/* ------------------------------------------------------------------------ */

/* Aligned, mapped and pre-shutdown blocks move to a fresh plain block. */
static void *realloc_move(void *p, struct rcl_hdr *h, size_t size, rcl_gfp_t gfp)
{
    void *n = alloc_nested(size, gfp);
    if (!n)
        return NULL;
    memcpy(n, p, h->size < size ? h->size : size);
    free_nested(p);
    return n;
}

/* How much more room than a fresh block of `size` a block may have and
 * still be charged as one: a fresh block has the backend's rounding too,
 * and glibc's realloc() leaves a shrunk chunk a remainder smaller than
 * its smallest chunk, or a mapped one its last page. */
static inline size_t room_slack(size_t size)
{
    return size > RCL_BCACHE_MAX ? rcl__page_size() : 4 * HDR;
}

/* Whether the backend block h, shrunk to `size` where it lies, would hold
 * more than its new charge says: the kernel's krealloc() keeps the object
 * for a shrink, and its charge with it; here the charge follows the size,
 * so the memory must too. mimalloc keeps a block that shrinks by less
 * than half; glibc splits the rest off. */
static inline bool too_roomy(const struct rcl_hdr *h, size_t size)
{
    return rcl__be_usable_size(h) - rcl__be_good_size(backend_size(size)) >= room_slack(size);
}

/* A size no block can have (0, or one the header overflows): the block
 * is looked at all the same, since a pointer that is not one is the
 * worse misuse, and would otherwise go unsaid. */
static __attribute__((noinline, cold)) void *realloc_refused(void *p, size_t size,
                                                             rcl_gfp_t gfp)
{
    if (rcl__block_kind(p, rcl__hdr_of(p)) == BLOCK_FOREIGN) {
        bad_free("rcl_realloc", p);
        return NULL;
    }
    if (!size)
        return refused(EINVAL, gfp, "size 0");
    return refused(EOVERFLOW, gfp, "%zu bytes and the header overflow", size);
}

/* The backend's resize of the block h to `size`. A grow with RCL__ZERO
 * above the classes has the backend zero what it adds, which leaves
 * memory fresh from the system unwritten, as zeroed_large() says why: a
 * memset made a table grown from 1 MiB to 64 MiB all resident. */
static struct rcl_hdr *be_resize(struct rcl_hdr *h, size_t size, bool zero, rcl_gfp_t gfp,
                                 size_t charged)
{
    enum be_op op = zero ? BE_ZREALLOC : BE_REALLOC;
    size_t n = backend_size(size);

    return be_or_retry(be_call(op, h, 0, n), op, h, 0, n, size, gfp, charged);
}

static void *realloc_body(void *p, size_t size, rcl_gfp_t gfp)
{
    if (!p)
        return alloc_nested(size, gfp);
    /* Two tests, not one of size - 1: gcc 12 keeps that in a register
     * through the whole body, and the ordinary path's spills move. */
    if (!size)
        return realloc_refused(p, size, gfp);
    if (size > SIZE_MAX - HDR)
        return realloc_refused(p, size, gfp);

    struct rcl_hdr *h = rcl__hdr_of(p);
    struct rcl_thread *t = &rcl__self;
    enum block_kind kind = rcl__block_kind(p, h);
    if (kind == BLOCK_FOREIGN) {
        bad_free("rcl_realloc", p);
        return NULL;
    }
    /* A thread serving from the flusher reserve resizes no block in
     * place: the backend's resize may fault a new page, and a charge may
     * reclaim; its block moves into the reserve, as an allocation there
     * fails at once where the reserve is short (but NOFAIL, which moves
     * outside it then: alloc_slow()). */
    if (kind != BLOCK_HEAP || meta_shift(h->meta) != HDR_SHIFT || !atomic_load(&rcl__ready) ||
        meta_epoch(h->meta) != (uint16_t)atomic_load(&rcl__epoch) ||
        unlikely(rd(t->watch.reserve)))
        return realloc_move(p, h, size, gfp);

    size_t old = h->size;
    if (size > SIZE_MAX - HDR - RCL__BE_BLOCK_OVERHEAD)
        return refused(EOVERFLOW, gfp, "%zu bytes and the header overflow", size);
    /* A move allocates, and a grow charges: either refuses NOFAIL that may
     * not wait (rcl__charge). A shrink in place, or a grow within the
     * block's class, charges nothing, and would serve it: refused here
     * as an allocation of the size would be. */
    if (unlikely(rcl__gfp_nofail_nowait(gfp)))
        return fail(-rcl__nofail_nowait_refuse(block_charge(size), gfp));
    /* A slab's slot stays only in its class: the backend cannot resize
     * it. A backend block becomes one of a slab class by a move where
     * every block of such a class is a slot (block_new; in a small class
     * over glibc, one may be either: slab.h). */
    unsigned home = block_home(h, old);
    if (home ? home != slab_home(size) : slab_home(size) && !rcl__slab_mixed(slab_home(size) - 1))
        return realloc_move(p, h, size, gfp);
    size_t was = block_charge(old), now = block_charge(size);
    int err;
    if (now > was && (err = rcl__charge(t, now - was, gfp)) != 0)
        return fail(-err);
    /* In place when the block already has the room: a slot of the size's
     * class, or a backend block the backend made big enough - for a
     * shrink, not much bigger. */
    bool roomy = !home && now < was && too_roomy(h, size);
    bool resized = !home && (backend_size(size) > rcl__be_usable_size(h) || roomy);
    bool be_zeroes = resized && size > old && zeroed_large(size, gfp);
    struct rcl_hdr *n = !resized ? h :
                        be_resize(h, size, be_zeroes, gfp, now > was ? now - was : 0);
    if (!n)
        return no_memory(t, now > was ? now - was : 0, size, gfp, NO_BACKEND_MEMORY);
    /* The backend kept the block and its room: it moves. (One the backend
     * moved is a fresh block of the size, with a fresh one's room.) */
    if (roomy && n == h && too_roomy(n, size))
        return realloc_move(rcl__hdr_user(n), n, size, gfp);
    if (now < was)
        rcl__uncharge_fast(t, was - now);
    user_fit(n, size);
    p = hdr_fill(n, size, HDR_SHIFT, meta_epoch(n->meta), 0);
    if ((gfp & RCL__ZERO) && size > old && !be_zeroes)
        memset((char *)p + old, 0, size - old);
    return p;
}

/* A handler may not move a block: the backend would be called. Size 0
 * and NOFAIL that may not wait are EINVAL there too, the block kept, as
 * everywhere. The block is looked at first, as realloc_body() does: a
 * pointer that is not one is the worse misuse, and a handler's free of
 * it is caught. */
static __attribute__((noinline, cold)) void *sig_realloc(void *p, size_t size, rcl_gfp_t gfp)
{
    if (!p)
        return rcl__sig_alloc(size, gfp);
    if (rcl__block_kind(p, rcl__hdr_of(p)) == BLOCK_FOREIGN)
        return rcl__sig_realloc_foreign();
    return rcl__sig_unserved(size, gfp);
}

void *rcl_realloc(void *p, size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;
    if (unlikely(t->busy))
        return sig_realloc(p, size, gfp);
    gfp = rcl__gfp_known("rcl_realloc", gfp);
    rcl__busy_enter(t);
    void *n = realloc_body(p, size, gfp);
    rcl__busy_leave(t);
    return n;
}
