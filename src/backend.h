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
 * rcl__be_free_sized() hands the backend the size the block was asked for
 * (header included). jemalloc and mimalloc can then skip the lookup of the
 * block's size class; glibc has no such call. It is only for blocks from
 * rcl__be_malloc()/rcl__be_realloc(): jemalloc's sdallocx wants the flags of
 * the allocation too, so aligned blocks go through rcl__be_free().
 */
#ifndef RCL_BACKEND_H
#define RCL_BACKEND_H

#include <stddef.h>
#include <stdlib.h>

#if defined(RCL_BACKEND_MIMALLOC)
#include <mimalloc.h>
#define RCL_BACKEND_NAME "mimalloc"
static inline void *rcl__be_malloc(size_t n) { return mi_malloc(n); }
static inline void  rcl__be_free(void *p) { mi_free(p); }
static inline void  rcl__be_free_sized(void *p, size_t n) { mi_free_size(p, n); }
static inline size_t rcl__be_usable_size(const void *p) { return mi_usable_size(p); }
static inline void *rcl__be_realloc(void *p, size_t n) { return mi_realloc(p, n); }
static inline void *rcl__be_memalign(size_t a, size_t n) { return mi_malloc_aligned(n, a); }
static inline void  rcl__be_trim(void) { mi_collect(true); }
#elif defined(RCL_BACKEND_JEMALLOC)
#include <jemalloc/jemalloc.h>
#define RCL_BACKEND_NAME "jemalloc"
#ifndef MALLCTL_ARENAS_ALL
#define MALLCTL_ARENAS_ALL 4096     /* the same in every jemalloc >= 4 */
#endif
#define RCL__JE_STR2(x) #x
#define RCL__JE_STR(x) RCL__JE_STR2(x)
static inline void *rcl__be_malloc(size_t n) { return mallocx(n, 0); }
static inline void  rcl__be_free(void *p) { dallocx(p, 0); }
static inline void  rcl__be_free_sized(void *p, size_t n) { sdallocx(p, n, 0); }
static inline size_t rcl__be_usable_size(const void *p) { return sallocx((void *)p, 0); }
static inline void *rcl__be_realloc(void *p, size_t n) { return rallocx(p, n, 0); }
static inline void *rcl__be_memalign(size_t a, size_t n) { return mallocx(n, MALLOCX_ALIGN(a)); }
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
static inline void *rcl__be_malloc(size_t n) { return malloc(n); }
static inline void  rcl__be_free(void *p) { free(p); }
static inline void  rcl__be_free_sized(void *p, size_t n) { (void)n; free(p); }
static inline size_t rcl__be_usable_size(const void *p) { return malloc_usable_size((void *)p); }
static inline void *rcl__be_realloc(void *p, size_t n) { return realloc(p, n); }
static inline void *rcl__be_memalign(size_t a, size_t n)
{
    void *p;
    return posix_memalign(&p, a, n) == 0 ? p : NULL;
}
static inline void  rcl__be_trim(void) { malloc_trim(0); }
#endif

#endif /* RCL_BACKEND_H */
