/* SPDX-License-Identifier: MIT */
/*
 * slots.h - what the tests of the slabs (test_slab.c) and of the regions
 * their small classes' spans come from (test_region.c) ask of a block:
 * which build has which slabs, whether a block is a slot, whether a page
 * is resident. The library's internals (slab.h) are read, never changed.
 */
#ifndef RCL_TEST_SLOTS_H
#define RCL_TEST_SLOTS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "helpers.h"
#include "internal.h"
#include "slab.h"

static inline bool no_small_slabs(void)
{
    if (rcl__slab_sized(16))
        return false;
    print_message("skipped: over mimalloc and jemalloc the classes below 256 B are the "
                  "backend's, 16 bytes apart as the header is long (src/slab.h)\n");
    return true;
}

/* The regions the small classes' spans come from (src/region.c): over
 * glibc, but for AddressSanitizer's build. */
static inline bool no_regions(void)
{
    if (no_small_slabs())
        return true;
#ifdef RCL_ASAN
    print_message("skipped: under AddressSanitizer the spans are its allocator's, for its leak "
                  "checker to scan (src/slab.c): there are no regions\n");
    return true;
#else
    return false;
#endif
}

/* Over glibc a small class's blocks live in two places (src/slab.h). */
static inline bool no_mixed_homes(void)
{
    if (RCL_SLAB_MIXED)
        return false;
    print_message("skipped: every block of a slab class is a slot here; over glibc (but "
                  "under AddressSanitizer) a small class's first blocks are glibc's chunks "
                  "(src/slab.h)\n");
    return true;
}

/* Is the block at p a slot? A small class's blocks are the backend's
 * until the thread's list for it has grown (src/slab.h). */
static inline bool slot_at(void *p)
{
    const struct rcl_hdr *h = rcl__hdr_of(p);

    return rcl__slab_sized(h->size) && rcl__slab_holds(h, rcl__bcache_class(h->size));
}

/* Is the 4 KiB page at addr resident? */
static inline bool resident(uintptr_t addr)
{
    unsigned char v = 0;

    assert_int_equal(mincore((void *)(addr & ~(uintptr_t)4095), 4096, &v), 0);
    return v & 1;
}

/* For qsort() of addresses. */
static inline int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

#endif
