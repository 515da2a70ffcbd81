/* SPDX-License-Identifier: MIT */
/*
 * region.c - the regions the spans of the slab classes of two homes come
 * from (over glibc the classes up to 256 B: slab.h, rcl__slab_mixed()),
 * and the map of them by address.
 *
 * Such a span comes from a region of RCL_REGION_BYTES the library maps
 * itself, not from glibc: so that the map below says which blocks are
 * slots, and because a 64 KiB span aligned to 64 KiB is over glibc's mmap
 * threshold with its slack, and glibc's chunk headers then keep two more
 * pages of it resident (12 KiB a span where the first slot touches 4). A
 * mapping per span would do, but frees among them could leave the process
 * one per span, and a few GiB of small blocks would reach
 * vm.max_map_count. A region is aligned to its size, so that a span finds
 * its region from its address; the region's head is the first bytes of
 * its first span's slab head, and the first span is a slab's as the
 * others are: a head with a span of its own kept a page resident for 24
 * bytes, and a span's worth of address space. The free spans are told by
 * a bit, so that nothing is written into a span a trim has given back but
 * the first page of the first, which the trim leaves
 * (rcl__region_span_put()). A region whose spans are all free is
 * unmapped. Regions are on a list while they have a free span, under the
 * regions' lock; mapping and unmapping are outside it. Under
 * AddressSanitizer no class has two homes and no region is mapped: the
 * spans are its allocator's, whose leak checker scans them for pointers,
 * where it would not scan a mapping of ours. ThreadSanitizer has no leak
 * checker, and sees the regions.
 *
 * The regions' lock comes last in the library's order but for the I/O
 * flusher's reserve (fork.c): taken where a slab's span is taken or given
 * back, with no other lock held, and nothing is called under it.
 */
#include "internal.h"
#include "list.h"
#include "region.h"

#include <pthread.h>
#include <stdalign.h>
#include <sys/mman.h>

#define REGION_SPANS (RCL_REGION_BYTES / RCL_REGION_SPAN)
_Static_assert(REGION_SPANS <= 32, "a region's free spans fit its bitmap");
#define REGION_ALL_FREE ((uint32_t)(((uint64_t)1 << REGION_SPANS) - 1))

/*
 * With the lock, on the page any span taken writes, the bits of the map's
 * window (below): the 4 GiB of address space around the first region,
 * where a program's regions most often all lie, so that the map costs such
 * a program no page of its own. 512-aligned, the whole never straddles a
 * page. The lock has a line of its own: the window is read wherever a
 * block of two homes goes back to where it lives (a free past the cache,
 * a batch a list gives back), the lock written only where a span is taken
 * or given back.
 */
typedef _Atomic uint64_t map_word;
#define WINDOW_REGIONS 2048u
#define WINDOW_BELOW   1536u        /* regions below the first: mmap() works down */

static struct {
    pthread_mutex_t    lock;
    alignas(64) _Atomic uintptr_t window_lo; /* the window's first region number,
                                                a multiple of 64; 0 until a region */
    map_word           window[WINDOW_REGIONS / 64];
} regions __attribute__((aligned(512))) = { .lock = RCL_SPIN_MUTEX_INITIALIZER };
_Static_assert(sizeof(regions) <= 512, "the lock and the window share a page");

static struct rcl_region *with_free;    /* regions with a free span: the lock */

static inline char *region_base(const void *p)
{
    return (char *)((uintptr_t)p & ~(uintptr_t)(RCL_REGION_BYTES - 1));
}

static inline struct rcl_region *region_of(const void *p)
{
    return (struct rcl_region *)region_base(p);
}

/*
 * Which of the address space's RCL_REGION_BYTES are regions: a bit each,
 * set while the region is mapped. A block of a class of two homes is a
 * slot or the backend's own (slab.h), and a block going back finds its
 * home by its address, without a read of memory that may not be mapped.
 * Read without the lock: a slot's region is mapped, and its bit set,
 * before the slot is handed out, and stays so while the slot is out; no
 * block of the backend's lies in a region. A region's bit is in the window
 * beside the lock (above) if it lies there, else in the map: 8 MiB of
 * address space for the 47-bit user address space, mapped with the first
 * region outside the window, a page of it resident for each 64 GiB of
 * address space that such regions are in - the page that made a
 * program's small live sets hold more than raw glibc's (64 B x 1600,
 * glibc's simple: 144 KiB of growth against 136).
 */
#define MAP_ADDR_BITS 47
#define MAP_SHIFT     21
_Static_assert(RCL_REGION_BYTES == 1u << MAP_SHIFT, "a bit of the map is a region");
#define MAP_WORDS     ((size_t)1 << (MAP_ADDR_BITS - MAP_SHIFT - 6))
static map_word *_Atomic region_bits;

static map_word *map_get(void)
{
    map_word *m = atomic_load_explicit(&region_bits, memory_order_acquire), *none = NULL;

    if (m)
        return m;
    m = mmap(NULL, MAP_WORDS * sizeof(*m), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (atomic_compare_exchange_strong(&region_bits, &none, m))
        return m;
    munmap(m, MAP_WORDS * sizeof(*m));
    return none;
}

/* The word holding region number i's bit (bit i % 64 of it); NULL if it
 * has none: outside the window and above the map's reach, or the map not
 * there. With `make`, for a region about to be set, the first places the
 * window and the map is mapped where needed. The window is placed once:
 * a reader that saw none yet has no region of its own in it. */
static map_word *map_word_of(uintptr_t i, bool make)
{
    uintptr_t lo = atomic_load_explicit(&regions.window_lo, memory_order_acquire);

    if (!lo && make) {
        uintptr_t want = i >= WINDOW_BELOW + 64 ? (i - WINDOW_BELOW) & ~(uintptr_t)63 : 64;

        if (atomic_compare_exchange_strong(&regions.window_lo, &lo, want))
            lo = want;
    }
    if (lo && i - lo < WINDOW_REGIONS)
        return &regions.window[(i - lo) / 64];
    if (i >= MAP_WORDS * 64)
        return NULL;
    map_word *m = make ? map_get() : atomic_load_explicit(&region_bits, memory_order_acquire);
    return m ? &m[i / 64] : NULL;
}

/* Sets or clears the bit of the region at `region`; false if it has no
 * word to be set in (map_word_of). */
static bool map_set(const char *region, bool on)
{
    uintptr_t i = (uintptr_t)region >> MAP_SHIFT;
    map_word *w = map_word_of(i, on);
    uint64_t bit = (uint64_t)1 << (i % 64);

    if (!w)
        return false;
    if (on)
        atomic_fetch_or_explicit(w, bit, memory_order_release);
    else
        atomic_fetch_and_explicit(w, ~bit, memory_order_release);
    return true;
}

bool rcl__region_holds(const void *p)
{
    uintptr_t i = (uintptr_t)p >> MAP_SHIFT;
    map_word *w = map_word_of(i, false);

    return w && atomic_load_explicit(w, memory_order_acquire) >> (i % 64) & 1;
}

static struct rcl_region *region_map(void)
{
    char *p = mmap(NULL, 2 * RCL_REGION_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return NULL;
    char *a = region_base(p + RCL_REGION_BYTES - 1);
    if (a > p)
        munmap(p, (size_t)(a - p));
    munmap(a + RCL_REGION_BYTES, (size_t)(p + RCL_REGION_BYTES - a));
    /* No bit for it: the map could not be mapped, or the region lies
     * above its reach, where a program asked for such addresses itself
     * (five-level page tables, with a hint). */
    if (!map_set(a, true)) {
        munmap(a, RCL_REGION_BYTES);
        return NULL;
    }
    struct rcl_region *r = region_of(a);
    r->free = REGION_ALL_FREE;
    return r;
}

static void region_unmap(struct rcl_region *r)
{
    bool had = map_set(region_base(r), false);

    rcl__assert(had);
    munmap(region_base(r), RCL_REGION_BYTES);
}

/* A free span of r, which has one. */
static void *region_take(struct rcl_region *r)
{
    unsigned i = (unsigned)__builtin_ctz(r->free);

    rcl__assert_held(&regions.lock);
    rcl__assert(r->free != 0);
    r->free &= r->free - 1;
    if (!r->free)
        LIST_DEL(with_free, r);
    return region_base(r) + (size_t)i * RCL_REGION_SPAN;
}

/* Span s back to its region; the region when it is now wholly free,
 * unlinked, for the caller to unmap. */
static struct rcl_region *region_give(void *s)
{
    struct rcl_region *r = region_of(s);
    uint32_t bit = (uint32_t)1 << (((uintptr_t)s & (RCL_REGION_BYTES - 1)) / RCL_REGION_SPAN);

    rcl__assert_held(&regions.lock);
    rcl__assert(!(r->free & bit));
    if (!r->free)
        LIST_PUSH(with_free, r);
    r->free |= bit;
    if (r->free != REGION_ALL_FREE)
        return NULL;
    LIST_DEL(with_free, r);
    return r;
}

void *rcl__region_span_get(void)
{
    struct rcl_region *r;
    void *s = NULL;

    pthread_mutex_lock(&regions.lock);
    if (with_free)
        s = region_take(with_free);
    pthread_mutex_unlock(&regions.lock);
    if (s || !(r = region_map()))
        return s;
    pthread_mutex_lock(&regions.lock);
    LIST_PUSH(with_free, r);
    s = region_take(r);
    pthread_mutex_unlock(&regions.lock);
    return s;
}

/* Given back to the system, a span keeps its first page if it is its
 * region's first: the region's head is there. */
void rcl__region_span_put(void *s, bool to_system)
{
    struct rcl_region *gone;

    if (to_system) {
        size_t page = rcl__page_size();
        size_t keep = (char *)s != region_base(s) ? 0 : page < RCL_REGION_SPAN ? page : RCL_REGION_SPAN;
        madvise((char *)s + keep, RCL_REGION_SPAN - keep, MADV_DONTNEED);
    }
    pthread_mutex_lock(&regions.lock);
    gone = region_give(s);
    pthread_mutex_unlock(&regions.lock);
    if (gone)
        region_unmap(gone);
}

/* fork(): the child keeps the regions as they are - its slabs are in
 * them. */
void rcl__region_atfork_prepare(void)
{
    pthread_mutex_lock(&regions.lock);
}

void rcl__region_atfork_parent(void)
{
    pthread_mutex_unlock(&regions.lock);
}

void rcl__region_atfork_child(void)
{
    rcl__region_atfork_parent();
}
