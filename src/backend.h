/* SPDX-License-Identifier: MIT */
/*
 * backend.h - the raw allocator behind rcl_alloc. Selected at build time
 * (make BACKEND=libc|mimalloc|jemalloc); inline so the fast path pays for no
 * extra call. Each backend supplies malloc, free, realloc, an aligned
 * allocation, its own size query, and its own way to give freed memory back
 * to the operating system:
 *
 *   backend    size query          release to the OS (rcl__be_trim)
 *   libc       malloc_usable_size  malloc_trim(0)
 *   mimalloc   mi_usable_size      mi_collect(true)
 *   jemalloc   sallocx             thread.tcache.flush, then arena.<all>.purge
 *
 * rcl__be_thread_collect() is for a thread to call on itself when asked to
 * give memory back (rcl_usage_sync, a drain request): mimalloc's heaps
 * belong to threads, and blocks another thread freed - a shrinker run by
 * the background reclaimer, say - only become free pages, and then leave
 * the resident set, when the owner thread collects. mi_collect() from the
 * reclaiming thread cannot do that for it. A no-op for the other backends.
 *
 * RCL__BE_TRIM_INTERVAL_NS is how often reclaim may call rcl__be_trim().
 * glibc gives back only the top of each heap on its own: the holes that
 * freed cache objects leave stay resident until malloc_trim() releases
 * them, and the budget counts resident memory (footprint.c), so reclaim
 * trims after it frees; jemalloc keeps freed pages for its decay time
 * (10 s by default) and holds them in resident memory until purged.
 * Reclaim trims sooner when what it owes is a large share of the budget
 * (reclaim.c).
 *
 * RCL__BE_BLOCK_OVERHEAD is what the backend itself keeps per block beyond
 * the size asked, where that is a fixed amount; it is part of a block's
 * charge (alloc.c). Rounding to the backend's own size classes is left to
 * the footprint samples. rcl__be_held() is what it holds for a block, its
 * usable size and what it keeps beside that: an aligned block within the
 * classes is charged that (alloc.c), since the backend pads it to an
 * alignment the size alone does not tell.
 *
 * rcl__be_calloc() and rcl__be_memalign_zero() give zeroed memory without
 * writing memory fresh from the system (a chunk the backend just mapped),
 * which so stays out of the resident set until the program touches it:
 * the backend's own calloc where it knows what is fresh, the pages
 * dropped where it does not (mimalloc), a memset where neither can be had
 * (glibc's aligned blocks). RCL__BE_MEMALIGN_ZERO_FRESH says which: where
 * it is 0, the library maps a zeroed aligned block above the classes
 * itself (alloc.c). rcl__be_realloc_zero(p, keep, n) is a grow of
 * rcl_realloc() with RCL__ZERO, keep < n: p resized to n bytes, its first
 * keep kept and the rest reading zero, written only where it is not
 * fresh, the same ways - over glibc its calloc, where a copy costs no
 * more than the memset it saves.
 *
 * The size query serves rcl_realloc(): a block the backend made big enough
 * already is resized in place, without a call into the backend.
 */
#ifndef RCL_BACKEND_H
#define RCL_BACKEND_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/*
 * Under a sanitizer every backend is libc: ASan and TSan see only memory
 * from their own (intercepted) malloc. A block mimalloc or jemalloc hands to
 * one thread after another freed it looks like a data race to TSan, and
 * ASan cannot see overflows or uses after free in it. So `make check
 * BACKEND=mimalloc` runs the library's logic under the sanitizers and the
 * mimalloc integration itself in the plain run.
 */
#include "sanitize.h"
/*
 * mimalloc and jemalloc round a block to size classes a quarter apart
 * (RCL__BE_COARSE_CLASSES, thread.h), so the header's 16 bytes on a size
 * at a class's edge cost a quarter more; the larger classes are then
 * carved from the library's own slabs (slab.h), and above 512 bytes the
 * library's classes are theirs (block_cache.h). glibc fits a chunk to 16
 * bytes and merges free neighbours of any size, which per-class slabs
 * cannot: above 256 B they would only hold more, and only its smaller
 * classes, where its size word and the header cost a granule more than
 * raw glibc's chunk, are slabs (slab.h).
 */
#ifdef RCL_SANITIZED
#undef RCL_BACKEND_MIMALLOC
#undef RCL_BACKEND_JEMALLOC
#endif

#if defined(RCL_BACKEND_MIMALLOC)
#include <mimalloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#define RCL_BACKEND_NAME "mimalloc"
#define RCL__BE_TRIM_INTERVAL_NS 100000000ull       /* 100 ms */
#define RCL__BE_BLOCK_OVERHEAD   0
static inline void *rcl__be_malloc(size_t n) { return mi_malloc(n); }
/*
 * mimalloc's zeroed allocation writes a large block whole, fresh from the
 * system or not (2.0: mi_zalloc() of 64 MiB leaves all of it resident).
 * The block's whole pages are dropped instead, which the kernel fills
 * with zeros at their first touch, and only the partial pages at its ends
 * are written. Below RCL__BE_DROP_MIN a memset costs less than the call
 * and the faults that refill the pages. (Its heap is private anonymous
 * memory: a drop reads back as zeros. Where the kernel refuses - locked
 * memory, huge pages - the memset does it.)
 *
 * The drop starts on an odd page, the even one before it written: on
 * huge pages (hugetlb, mimalloc's large OS pages) the kernel drops from
 * a start on a huge page only the range's whole huge pages, and answers
 * as if it had dropped it all, the rest left as it was written; from any
 * other start it refuses. Every huge page is a power of two of at least
 * two pages, so an odd page starts none.
 */
#define RCL__BE_DROP_MIN (256u * 1024)
static inline void *rcl__be_zero(void *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *lo = (char *)(((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1));
    char *hi = (char *)(((uintptr_t)p + n) & ~(uintptr_t)(page - 1));

    if (!((uintptr_t)lo & page))
        lo += page;
    if (n < RCL__BE_DROP_MIN || madvise(lo, (size_t)(hi - lo), MADV_DONTNEED) != 0)
        return memset(p, 0, n);
    memset(p, 0, (size_t)(lo - (char *)p));
    memset(hi, 0, (size_t)((char *)p + n - hi));
    return p;
}
static inline void *rcl__be_calloc(size_t n)
{
    void *p = mi_malloc(n);
    return p ? rcl__be_zero(p, n) : NULL;
}
/* mi_rezalloc() writes what a grow adds, whole, as its zeroed allocation
 * does. */
static inline void *rcl__be_realloc_zero(void *p, size_t keep, size_t n)
{
    char *q = mi_realloc(p, n);

    if (q)
        rcl__be_zero(q + keep, n - keep);
    return q;
}
static inline void  rcl__be_free(void *p) { mi_free(p); }
static inline size_t rcl__be_usable_size(const void *p) { return mi_usable_size(p); }
static inline size_t rcl__be_held(const void *p) { return mi_usable_size(p); }
static inline void *rcl__be_realloc(void *p, size_t n) { return mi_realloc(p, n); }
static inline size_t rcl__be_good_size(size_t n) { return mi_good_size(n); }
static inline void *rcl__be_memalign(size_t a, size_t n) { return mi_malloc_aligned(n, a); }
static inline void *rcl__be_memalign_zero(size_t a, size_t n)
{
    void *p = mi_malloc_aligned(n, a);
    return p ? rcl__be_zero(p, n) : NULL;
}
#define RCL__BE_MEMALIGN_ZERO_FRESH 1
static inline void  rcl__be_trim(void) { mi_collect(true); }
static inline void  rcl__be_thread_collect(void) { mi_collect(true); }
/* Blocks one thread frees for another stay in the owner's pages until the
 * owner collects them (account.c does, when a charge finds it short). */
#define RCL__BE_OWNER_COLLECTS 1
#elif defined(RCL_BACKEND_JEMALLOC)
#include <jemalloc/jemalloc.h>
#define RCL_BACKEND_NAME "jemalloc"
#define RCL__BE_TRIM_INTERVAL_NS 10000000ull        /* 10 ms */
#define RCL__BE_BLOCK_OVERHEAD   0
#ifndef MALLCTL_ARENAS_ALL
#define MALLCTL_ARENAS_ALL 4096     /* the same in every jemalloc >= 4 */
#endif
#define RCL__JE_STR2(x) #x
#define RCL__JE_STR(x) RCL__JE_STR2(x)
static inline void *rcl__be_malloc(size_t n) { return mallocx(n, 0); }
static inline void *rcl__be_calloc(size_t n) { return mallocx(n, MALLOCX_ZERO); }
static inline void  rcl__be_free(void *p) { dallocx(p, 0); }
static inline size_t rcl__be_usable_size(const void *p) { return sallocx((void *)p, 0); }
static inline size_t rcl__be_held(const void *p) { return sallocx((void *)p, 0); }
static inline void *rcl__be_realloc(void *p, size_t n) { return rallocx(p, n, 0); }
static inline size_t rcl__be_good_size(size_t n) { return nallocx(n, 0); }
static inline void *rcl__be_memalign(size_t a, size_t n) { return mallocx(n, MALLOCX_ALIGN(a)); }
static inline void *rcl__be_memalign_zero(size_t a, size_t n)
{
    return mallocx(n, MALLOCX_ALIGN(a) | MALLOCX_ZERO);
}
#define RCL__BE_MEMALIGN_ZERO_FRESH 1
/* With MALLOCX_ZERO a grow zeroes from the block's old usable size on,
 * only where its memory is not known to be zero; the room the block had
 * past what is kept is the caller's to zero. */
static inline void *rcl__be_realloc_zero(void *p, size_t keep, size_t n)
{
    size_t had = sallocx(p, 0);
    char *q = rallocx(p, n, MALLOCX_ZERO);

    if (q && had > keep)
        memset(q + keep, 0, (had < n ? had : n) - keep);
    return q;
}
static inline void  rcl__be_thread_collect(void) { }
static inline void  rcl__be_trim(void)
{
    /* Blocks this thread freed sit in its tcache, out of the arenas' reach:
     * flush it first so that the purge can return their pages. */
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    mallctl("arena." RCL__JE_STR(MALLCTL_ARENAS_ALL) ".purge", NULL, NULL, NULL, 0);
}
#else
#include <malloc.h>
#define RCL_BACKEND_NAME "libc"
#define RCL__BE_TRIM_INTERVAL_NS 100000000ull       /* 100 ms */
/* A chunk's size word, rounded to glibc's 16-byte granule: a request of
 * n bytes (n a multiple of 16) takes an n + 16-byte chunk. */
#define RCL__BE_BLOCK_OVERHEAD   16
static inline void *rcl__be_malloc(size_t n) { return malloc(n); }
static inline void *rcl__be_calloc(size_t n) { return calloc(1, n); }
static inline void  rcl__be_free(void *p) { free(p); }
static inline size_t rcl__be_usable_size(const void *p) { return malloc_usable_size((void *)p); }
/*
 * A chunk in the heap lends its last word to the next chunk, and its
 * usable size is the chunk less its size word; a mapped chunk (any
 * block, with M_MMAP_THRESHOLD set low enough by the program) has no
 * neighbour to lend to, and its usable size is the chunk less two words.
 * Every chunk is a multiple of the 16-byte granule, so the usable size and
 * one word, rounded up to it, is the chunk either way, without reading
 * glibc's words. Under a sanitizer the usable size is the size asked,
 * and a word is what glibc would keep beside it.
 */
static inline size_t rcl__be_held(const void *p)
{
#ifdef RCL_SANITIZED
    return rcl__be_usable_size(p) + 8;
#else
    return (rcl__be_usable_size(p) + 8 + 15) & ~(size_t)15;
#endif
}
static inline void *rcl__be_realloc(void *p, size_t n) { return realloc(p, n); }
/* glibc rounds to its 16-byte granule, and a mapped chunk to pages: both
 * within the slack a shrink allows (alloc.c, room_slack()). */
static inline size_t rcl__be_good_size(size_t n) { return n; }
static inline void *rcl__be_memalign(size_t a, size_t n)
{
    void *p;
    return posix_memalign(&p, a, n) == 0 ? p : NULL;
}
/* glibc has no aligned calloc: the whole block is written (one of the
 * classes: a larger one is mapped, alloc.c). */
static inline void *rcl__be_memalign_zero(size_t a, size_t n)
{
    void *p = rcl__be_memalign(a, n);
    return p ? memset(p, 0, n) : NULL;
}
#define RCL__BE_MEMALIGN_ZERO_FRESH 0
/*
 * glibc's realloc cannot say whether what it adds is fresh (a mapped
 * chunk grown by mremap() is; one grown into its free neighbour is not),
 * but its calloc can: a grow that at least doubles the block takes a
 * calloc'ed block and copies what it keeps, no more than the memset it
 * saves. A smaller one is a realloc, where the copy would cost more than
 * the memset: a block grown a little at a time, copied at every grow,
 * would cost the square of its size.
 */
static inline void *rcl__be_realloc_zero(void *p, size_t keep, size_t n)
{
    char *q;

    if (keep > n - keep) {
        if ((q = realloc(p, n)) != NULL)
            memset(q + keep, 0, n - keep);
        return q;
    }
    if (!(q = calloc(1, n)))
        return NULL;
    memcpy(q, p, keep);
    free(p);
    return q;
}
static inline void  rcl__be_trim(void) { malloc_trim(0); }
static inline void  rcl__be_thread_collect(void) { }
#endif

#endif /* RCL_BACKEND_H */
