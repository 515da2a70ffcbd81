/* SPDX-License-Identifier: MIT */
/*
 * slab.h - where a block of the larger classes lives when no cache holds
 * it: a slot of one of its class's slabs (slab.c), spans the library
 * takes from the backend and carves itself, rather than a block of its
 * own from the backend.
 *
 * Why: a block is its size, rounded up to its class, and the 16-byte
 * header in front of it, and the sizes programs ask for most are at the
 * backend's class boundaries - 256 B, 1 KiB, 4 KiB. Asked of the backend,
 * 4096 + 16 bytes is a block of mimalloc's and jemalloc's 5 KiB class: a
 * quarter more memory, and a class the backend serves more slowly (its
 * slabs span several pages; jemalloc purges and faults them in again
 * under a live set of thousands). Carved from a slab, the header costs its
 * 16 bytes and no more. The classes below 256 B stay mimalloc's and
 * jemalloc's: their classes there are 16 bytes apart, and the header's 16
 * bytes land on the next of them exactly, so a slab would save nothing
 * (over jemalloc such slabs were built, as a step towards slots without
 * a header, and taken out again with that plan: docs/design.md, "What
 * the header still costs, and why it stays").
 *
 * Over glibc it is the other way round. Its chunks fit to 16 bytes and
 * merge free neighbours, so above 256 B a block asked of it costs no more
 * than the header, and a slab would only hold more (backend.h). Below,
 * its 8-byte size word and the header together take the block to the
 * next 16 bytes but one: 16 B is a 48-byte chunk, where raw glibc's is
 * 32. A slab slot of the classes up to 256 B, 16 bytes apart, is the
 * chunk raw glibc would have made. Their spans come from regions the
 * library maps itself (region.c says why).
 *
 * The header is unchanged - a slot is a header and its class's largest
 * size - so rcl_free() and the caches treat a slab's block as any other;
 * only where a block is made and where it is given up ask whether its
 * class is a slab class, and over glibc whether the block is a slot
 * (block_new(), block_delete(): block.h; below).
 */
#ifndef RCL_SLAB_H
#define RCL_SLAB_H

#include <stdbool.h>
#include <stddef.h>

#include "block_cache.h"
#include "region.h"

/* The slab classes, [FIRST, END), and the sizes they serve: from the
 * class of 256-byte blocks up over mimalloc and jemalloc, up to it over
 * glibc. */
#define RCL_SLAB_FIRST_CLASS (RCL__BE_COARSE_CLASSES ? 15u : 0u)
#define RCL_SLAB_END_CLASS   (RCL__BE_COARSE_CLASSES ? (unsigned)RCL_BCACHE_CLASSES : 16u)
#define RCL_SLAB_MIN_SIZE    (RCL__BE_COARSE_CLASSES ? 241u : 1u)
#define RCL_SLAB_MAX_SIZE    (RCL__BE_COARSE_CLASSES ? (unsigned)RCL_BCACHE_MAX : 256u)
_Static_assert(RCL_SLAB_END_CLASS <= RCL_BCACHE_CLASSES, "a slab class is a cache class");
_Static_assert(RCL__SLAB_NRS == RCL_SLAB_END_CLASS + 1, "a thread's slots by slab class number");

/* Bytes at the front of a span before its first slot: the slab's head,
 * with a bit for each of its pages that a trim gave back (slab.c). */
#define RCL_SLAB_HEAD 128u

/*
 * Over glibc a slab class's blocks are slots or glibc's own chunks. A
 * thread takes slots for a class only once its list has grown to
 * RCL_SLAB_MIN_DEPTH, four misses past its start of 8; until then
 * glibc's chunks, which cost the header's 16 bytes more each but share
 * glibc's pages with every other size. A slab's first slot makes a page
 * resident, so each small class a thread used held a page of its own:
 * live sets of a mix of sizes, half of them in the 16 small classes, held
 * 1.91 - 1.97x raw glibc's peak RSS at 8 blocks on two threads and 1.09 -
 * 1.14x at 64, and with the mixed homes 0.91 - 0.94x and 0.85 - 0.89x.
 * The price is the page of glibc's a class's first blocks may take, which
 * decides a live set of a few hundred blocks: with slots from 10, 20 or 32
 * blocks, 256 B x 512 read 1.06 - 1.09x, from 12 1.01 - 1.03x, and glibc's
 * simple, 64 B x 1600, reads 1.06x from 12 and 1.03x from 32 (16 B x 4096,
 * all glibc's chunks, would hold 1.44x). A block goes back to where it
 * lives, which its address says (rcl__slab_holds(), region.c's map of
 * the regions). Under AddressSanitizer the spans are its allocator's, not
 * regions, and every block of a slab class is a slot, as over mimalloc
 * and jemalloc.
 */
#if !RCL__BE_COARSE_CLASSES && !defined(RCL_ASAN)
#define RCL_SLAB_MIXED 1
#else
#define RCL_SLAB_MIXED 0
#endif
#define RCL_SLAB_MIN_DEPTH 12u

/* Blocks of `size` are slots of their class's slabs (over glibc, may be:
 * above). */
static inline bool rcl__slab_sized(size_t size)
{
    return size - RCL_SLAB_MIN_SIZE < RCL_SLAB_MAX_SIZE - RCL_SLAB_MIN_SIZE + 1;
}

/* Blocks of class c are slots of its slabs. */
static inline bool rcl__slab_class(unsigned c)
{
    return c - RCL_SLAB_FIRST_CLASS < RCL_SLAB_END_CLASS - RCL_SLAB_FIRST_CLASS;
}

/* Class c's slabs take their spans from the regions, and its blocks may
 * be glibc's too (above). */
static inline bool rcl__slab_mixed(unsigned c)
{
    return RCL_SLAB_MIXED && c < RCL_SLAB_END_CLASS;
}

/* Does thread t take a new block of class c from the class's slabs? */
static inline bool rcl__slab_wanted(const struct rcl_thread *t, unsigned c)
{
    return rcl__slab_class(c) && (!rcl__slab_mixed(c) || t->bc->depth[c + 1] >= RCL_SLAB_MIN_DEPTH);
}

/* Does block h of slab class c live in a slab? For a class of two homes,
 * whether its address is in one of the regions (region.h). */
static inline bool rcl__slab_holds(const struct rcl_hdr *h, unsigned c)
{
    rcl__assert(rcl__slab_class(c));
    return !rcl__slab_mixed(c) || rcl__region_holds(h);
}

/* A free slot of class c's slabs, its header's space only unpoisoned; NULL
 * when the backend has no span for a new slab. */
struct rcl_hdr *rcl__slab_get(unsigned c);
/* A block of class c back to its slab; its header need not check out. */
void rcl__slab_put(struct rcl_hdr *h, unsigned c);

/* The same for many blocks at a time: a thread's cache fills its empty
 * list with up to RCL_SLAB_BATCH from the slots it holds (own: its
 * lists' slabs[c + 1]; it takes a slab's when it has none), and gives up
 * to RCL_SLAB_SPILL back from a full list (block_cache.c), under one
 * lock. get_many gives at least one slot but for a failure (0), makes a
 * new slab for the first only, and gives a slot never carved beyond the
 * first only where its header's page is the previous slot's (resident
 * already). A give-back is larger than a fill: it is the one that takes
 * the lock, where a fill takes it once a slab, and two threads each
 * recycling a live set of 4 KiB blocks ran 8 % faster giving back 64 at
 * a time than 16. */
#define RCL_SLAB_BATCH 16u
#define RCL_SLAB_SPILL 64u
#define RCL_SLAB_FILL_BYTES (16u * 1024)
unsigned rcl__slab_get_many(unsigned c, struct rcl_hdr **out, unsigned n,
                            struct rcl_slab_own *own);
void rcl__slab_put_many(unsigned c, struct rcl_hdr **hs, unsigned n);
/* A thread gives back the slots it holds (own, its lists' slabs[]): at
 * its cache's drain. */
void rcl__slab_disown(struct rcl_slab_own *own);
/* Bytes of class c's slabs, in use or not; and of each one. */
size_t rcl__slab_held(unsigned c);
size_t rcl__slab_span(unsigned c);

/* rcl__slab_trim() and the fork handlers are
 * internal.h's, beside the depot's. */

#endif
