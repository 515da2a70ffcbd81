/* SPDX-License-Identifier: MIT */
/*
 * region.h - where the spans of the slab classes of two homes come from
 * (over glibc the classes up to 256 B: slab.h): regions of
 * RCL_REGION_BYTES the library maps itself, aligned to their size and cut
 * into spans of RCL_REGION_SPAN, and a map that says by an address alone
 * whether it lies in one (region.c says why each).
 *
 * A region's head - its links and a bit per free span - is the first
 * bytes of its first span, which is a slab's as the others are: a slab's
 * head begins with a struct rcl_region it leaves alone (slab.c).
 */
#ifndef RCL_REGION_H
#define RCL_REGION_H

#include <stdbool.h>
#include <stdint.h>

#define RCL_REGION_BYTES (2u << 20)
#define RCL_REGION_SPAN  (64u * 1024)

struct rcl_region {
    struct rcl_region *prev, *next; /* on the regions' list while it has a
                                       free span */
    uint32_t           free;        /* a bit per free span */
};

/* A free span of some region, a new region mapped where none has one;
 * NULL when none can be mapped. */
void *rcl__region_span_get(void);
/* Span s back to its region, which is unmapped once all its spans are
 * free; with `to_system`, its pages back to the system first. */
void  rcl__region_span_put(void *s, bool to_system);
/* Does p lie in a region? Any address may be asked: nothing at p is read. */
bool  rcl__region_holds(const void *p);

#endif
