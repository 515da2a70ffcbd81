/* SPDX-License-Identifier: MIT */
/*
 * block.h - what the two halves of the rcl_alloc family share of a block:
 * alloc.c (the calls of a thread outside the library) and alloc_signal.c
 * (the same calls from a signal handler that interrupted the thread
 * inside it), and with the block cache (block_cache.c) where a block is
 * made and where it ends (block_new, block_delete). The header's format,
 * the process's secret and the check of a header stay in alloc.c; the
 * signal path makes a header with the thread's tag (rcl__hdr_meta, as
 * hand_out() does) and asks alloc.c what a block it is given is, and to
 * release it.
 */
#ifndef RCL_BLOCK_H
#define RCL_BLOCK_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "block_cache.h"
#include "slab.h"

/* The address half of a header's check word; alloc.c's secret, carried
 * in the thread's hdr_tag, is the other. `size` is check_size()'s. The
 * low 32 bits of the address, as they are: a shift would add four bits
 * of reach (a header 4 GiB away, rather than 64 GiB, gives the same
 * word) at an instruction a free, and the address alone tells a header
 * from the one of a block beside it as well either way. */
static inline uint32_t addr_word(const void *p, size_t size)
{
    return (uint32_t)(uintptr_t)p ^ (uint32_t)size;
}

/* The size a header's check word covers: for a block of a class, the
 * class's charge, so that a cached block's header stays right for any
 * size of its class it is handed out at next (block_cache.h); above the
 * classes (and for 0, which only a header that is no block's says), the
 * size. */
static inline size_t check_size(size_t size)
{
    return size - 1 < RCL_BCACHE_MAX ? rcl__bcache_charge(rcl__bcache_class(size)) : size;
}

/* The class number a plain block's header carries (bits 40-46 of its
 * meta): its class's index + 1, or 0 above the classes. */
static inline unsigned hdr_class_nr(size_t size)
{
    return size - 1 < RCL_BCACHE_MAX ? rcl__bcache_class(size) + 1 : 0;
}

/*
 * A plain block's meta, made from the thread's tag (rcl__hdr_tag, alloc.c:
 * the shift, the epoch, the secret and RCL__HDR_KNOWN) and, for a block
 * of a class, the class's key (block_cache.h), which holds
 * RCL__HDR_KNOWN too and so takes it out again. A free checks a header
 * the same way - tag ^ address word ^ the key of the class byte the
 * header has - and so trusts a class byte only where the key's class
 * byte, flipped by the tag's, gives it back. The tag's class byte is
 * RCL__HDR_KNOWN's bit, or 0 for a thread the library does not know
 * (before its first call, after a restart): a class's key gives the
 * number back with the first only, and a byte that is no class's has a
 * key whose lowest bit differs from it, which neither gives back. So a
 * free never takes a class from a header that is not a block's of this
 * process, even a header made without the secret for a thread whose tag
 * holds none.
 */
static inline uint64_t rcl__hdr_meta(uint64_t tag, const void *p, size_t size)
{
    if (size - 1 < RCL_BCACHE_MAX)
        return tag ^ addr_word(p, 0) ^ rcl__bcache_tab.key[hdr_class_nr(size)];
    return tag ^ RCL__HDR_KNOWN ^ addr_word(p, size);
}

/* What the backend is asked for: a small block rounds up to its class. */
static inline size_t backend_size(size_t size)
{
    return (size <= RCL_BCACHE_MAX ? rcl__bcache_cap(rcl__bcache_class(size)) : size) + HDR;
}

/* Where a block for `size` comes from, its header's space at the front:
 * a slot of its class's slabs (slab.h), from those the calling thread
 * holds, or the backend. The one place a plain block is made; NULL when
 * neither has the memory. */
static inline struct rcl_hdr *block_new(size_t size)
{
    if (rcl__slab_sized(size) && rcl__slab_wanted(&rcl__self, rcl__bcache_class(size)))
        return rcl__bcache_slot(&rcl__self, rcl__bcache_class(size));
    return rcl__be_malloc(backend_size(size));
}

/* A slab class's number (its index + 1) for a block of `size`, 0 for a
 * size of no slab class. */
static inline unsigned slab_home(size_t size)
{
    return rcl__slab_sized(size) ? rcl__bcache_class(size) + 1 : 0;
}

/* Where the block h of `size` lives: its slab class's number if it is a
 * slot, else 0, the backend. */
static inline unsigned block_home(const struct rcl_hdr *h, size_t size)
{
    unsigned home = slab_home(size);

    return home && rcl__slab_holds(h, home - 1) ? home : 0;
}

/* A plain block of class c given up (its charge dealt with), to where
 * block_new() took it from. The one place a plain block ends; h->meta is
 * 0 after it, so that a second free of a block a slab keeps is caught. */
static inline void block_delete_class(struct rcl_hdr *h, unsigned c)
{
    h->meta = 0;
    if (rcl__slab_class(c) && rcl__slab_holds(h, c))
        rcl__slab_put(h, c);
    else
        rcl__be_free(h);
}

/* The same for a plain block of `size`, of a class or above them. */
static inline void block_delete(struct rcl_hdr *h, size_t size)
{
    if (size <= RCL_BCACHE_MAX) {
        block_delete_class(h, rcl__bcache_class(size));
        return;
    }
    h->meta = 0;
    rcl__be_free(h);
}

/* Under AddressSanitizer a block handed out is addressable for exactly
 * the size asked, so that overflows into the class's rounding are still
 * caught (a cached one is poisoned whole: block_cache.h). */
#ifdef RCL_ASAN
static inline void user_fit(struct rcl_hdr *h, size_t size)
{
    rcl__unpoison(rcl__hdr_user(h), size);
    if (size <= RCL_BCACHE_MAX)
        rcl__poison((char *)rcl__hdr_user(h) + size, rcl__bcache_cap(rcl__bcache_class(size)) - size);
}
#else
static inline void user_fit(struct rcl_hdr *h, size_t size) { (void)h; (void)size; }
#endif

static inline void *fail(int err)
{
    errno = err;
    return NULL;
}

/* What a header says a block is (alloc.c); _as reads it with `meta` in
 * place of its own, for a header a deferred free flipped
 * (alloc_signal.c) that is only read. */
enum block_kind { BLOCK_FOREIGN, BLOCK_HEAP, BLOCK_VMAP, BLOCK_RESERVE };
enum block_kind rcl__block_kind(const void *p, const struct rcl_hdr *h);
enum block_kind rcl__block_kind_as(const void *p, const struct rcl_hdr *h, uint64_t meta);

/* What the budget holds for a block whose header (meta, as above)
 * checked out as `kind`: its charge if it was charged in this epoch,
 * nothing for one of the reserve, which is charged whole (alloc.c). */
size_t rcl__block_charged(const struct rcl_hdr *h, uint64_t meta, enum block_kind kind);

/* A block whose header checked out back to the backend, uncharged by
 * what it holds (alloc.c). */
void rcl__block_release(struct rcl_hdr *h, enum block_kind kind);

/* A call made while the thread is inside the library: a handler's,
 * served from the stash, deferred (alloc_signal.c). */
void *rcl__sig_alloc(size_t size, rcl_gfp_t gfp);
/* A handler's NOFAIL request that may not wait: EINVAL, as outside. */
void *rcl__sig_nofail_nowait(rcl_gfp_t gfp);
/* A handler's request no block can meet (a calloc that overflows). */
void *rcl__sig_refused(int err, rcl_gfp_t gfp);
/* A handler's request the stash does not serve (size 0, too large, an
 * alignment above 16, a mapped block, a realloc of a block), failed and
 * counted as the thread's would be. */
void *rcl__sig_unserved(size_t size, rcl_gfp_t gfp);
/* A handler's realloc of a block that is none of the library's: NULL,
 * counted as a bad free at once, and reported by the thread later. */
void *rcl__sig_realloc_foreign(void);
void rcl__sig_free(void *p);

#endif
