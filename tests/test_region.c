/* SPDX-License-Identifier: MIT */
/*
 * The regions the spans of the small slab classes come from
 * (src/region.c): over glibc the classes up to 256 B are slots of spans
 * the library carves from 2 MiB regions it maps itself, and the map of
 * those regions by address says which blocks are slots. The kernel's
 * rule the regions follow is its slab allocator's: a slab whose objects
 * are all free goes back to the page allocator, so memory no longer used
 * leaves the process; and where an object lives is known from its
 * address alone. Over mimalloc and jemalloc the small classes are the
 * backend's, and under AddressSanitizer the spans are its allocator's:
 * there are no regions, and these tests say so and skip.
 *
 * The slabs themselves, carved from the spans, are tests/test_slab.c's.
 */
#include "helpers.h"
#include "internal.h"
#include "region.h"
#include "slab.h"
#include "slots.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Blocks enough that a thread's list of a small class has grown past the
 * depth from which its new blocks are slots. */
enum { GROW_N = 4 * RCL_SLAB_MIN_DEPTH };

/* The regions the small classes' spans come from are unmapped once every
 * span in them is free: a trim (here the shutdown's) leaves the process no
 * mapping for memory it no longer uses - the kernel's slab gives an empty
 * slab's pages back to the page allocator the same way. */
TEST(a_trim_unmaps_the_regions_of_small_slabs)
{
    if (no_regions())
        skip();
    enum { N = 20000 };     /* 200 B: about 9,000 slots a region */
    void **p = malloc(N * sizeof(*p));
    uintptr_t at[3];

    assert_non_null(p);
    for (int i = 0; i < N; i++)
        assert_non_null(p[i] = rcl_alloc(200, RCL_DEFAULT));
    at[0] = 0;
    for (int i = 0; !at[0]; i++)
        at[0] = slot_at(p[i]) ? (uintptr_t)p[i] : 0;
    at[1] = (uintptr_t)p[N / 2];
    at[2] = (uintptr_t)p[N - 1];
    assert_true(slot_at(p[N / 2]) && slot_at(p[N - 1]));
    assert_true((at[0] ^ at[2]) >= RCL_REGION_BYTES);     /* more than one region */
    for (int i = 0; i < N; i++)
        rcl_free(p[i]);
    free(p);
    for (int i = 0; i < 3; i++)
        assert_true(test_mapped((void *)at[i]));     /* kept for a live set that comes back */
    rcl_shutdown();
    for (unsigned c = RCL_SLAB_FIRST_CLASS; c < RCL_SLAB_END_CLASS; c++)
        assert_int_equal(rcl__slab_held(c), 0);
    for (int i = 0; i < 3; i++)
        assert_false(test_mapped((void *)at[i]));
    assert_int_equal(test_init(64 * MiB), 0);
}

/* A region's head takes no span of its own: it lies in its first span's
 * slab head, and that span is a slab's like the other 31. */
TEST(every_span_of_a_region_is_a_slab)
{
    if (no_regions())
        skip();
    enum { SPANS = RCL_REGION_BYTES / RCL_REGION_SPAN, N = 2 * SPANS * 272 };
    void **p = malloc(N * sizeof(*p));
    uintptr_t *a = malloc(N * sizeof(*a));
    unsigned most = 0, n = 0;
    uint32_t spans = 0;

    assert_true(p && a);
    for (int i = 0; i < N; i++) {
        assert_non_null(p[i] = rcl_alloc(224, RCL_DEFAULT));     /* 272 slots a span */
        a[i] = (uintptr_t)p[i];
    }
    qsort(a, N, sizeof(*a), cmp_ptr);
    for (int i = 0; i < N; i++) {
        if (i && (a[i] ^ a[i - 1]) >= RCL_REGION_BYTES)
            spans = 0, n = 0;
        uint32_t bit = (uint32_t)1 << (a[i] % RCL_REGION_BYTES / RCL_REGION_SPAN);
        n += !(spans & bit);
        spans |= bit;
        most = n > most ? n : most;
    }
    assert_int_equal(most, SPANS);
    for (int i = 0; i < N; i++)
        rcl_free(p[i]);
    free(a);
    free(p);
}

/* Where a block lives is told by the map of the regions, never by a read
 * of the address: any address may be asked, and only a mapped region's
 * is a slot's. */
TEST(no_address_outside_a_mapped_region_is_a_slot)
{
    if (no_mixed_homes())
        skip();
    int on_stack;
    void *heap = malloc(64), *p[GROW_N];
    uintptr_t region;

    assert_non_null(heap);
    assert_false(rcl__region_holds(NULL));
    assert_false(rcl__region_holds((void *)UINTPTR_MAX));
    assert_false(rcl__region_holds((void *)((uintptr_t)1 << 47)));
    assert_false(rcl__region_holds(&on_stack));
    assert_false(rcl__region_holds(heap));
    free(heap);
    for (int i = 0; i < GROW_N; i++)
        assert_non_null(p[i] = rcl_alloc(64, RCL_DEFAULT));
    assert_true(slot_at(p[GROW_N - 1]));
    region = (uintptr_t)p[GROW_N - 1] & ~(uintptr_t)(RCL_REGION_BYTES - 1);
    assert_true(rcl__region_holds((void *)region));
    for (int i = 0; i < GROW_N; i++)
        rcl_free(p[i]);
    rcl_shutdown();
    assert_false(test_mapped((void *)region));
    assert_false(rcl__region_holds((void *)region));
    assert_int_equal(test_init(64 * MiB), 0);
}

/* Reserves, without memory behind it, every gap of the address space
 * between lo and hi, so that no mapping made after lands there; the
 * reservations appended to r[] from *n. Returns the gaps found: a mapping
 * another thread made between the reading and the reserving may have
 * taken part of one, and the caller reads again until there are none. */
enum { GAPS_MAX = 256 };
struct gap { void *at; size_t len; };

static int reserve_gaps(uintptr_t lo, uintptr_t hi, struct gap *r, int *n)
{
    struct gap found[GAPS_MAX];
    unsigned long long s, e;
    uintptr_t prev = lo;
    int nf = 0;
    char line[512];
    FILE *f = fopen("/proc/self/maps", "r");

    assert_non_null(f);
    /* All the gaps first: the reservations are mappings themselves. */
    while (fgets(line, sizeof(line), f) && nf < GAPS_MAX) {
        if (sscanf(line, "%llx-%llx", &s, &e) != 2 || e <= prev)
            continue;
        if (s > prev && prev < hi)
            found[nf++] = (struct gap){ (void *)prev, (size_t)((s < hi ? s : hi) - prev) };
        prev = e;
    }
    fclose(f);
    if (prev < hi && nf < GAPS_MAX)
        found[nf++] = (struct gap){ (void *)prev, (size_t)(hi - prev) };
    for (int i = 0; i < nf && *n < GAPS_MAX; i++) {
        void *m = mmap(found[i].at, found[i].len, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
        if (m != MAP_FAILED)
            r[(*n)++] = (struct gap){ m, found[i].len };
    }
    return nf;
}

/* Every gap within `reach` of addr reserved; their count returned. */
static int reserve_gaps_near(uintptr_t addr, uintptr_t reach, struct gap *r)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = addr > reach ? (addr - reach) & ~(page - 1) : page;
    uintptr_t hi = (addr + reach) & ~(page - 1);
    int n = 0;

    for (int pass = 0; reserve_gaps(lo, hi, r, &n) > 0; pass++)
        assert_true(pass < 16 && n < GAPS_MAX);
    return n;
}

/* A region far from the first - beyond the 4 GiB around it whose bits lie
 * beside the slabs' lock (src/slab.c) - has its bit in the map of the
 * whole address space: its slots are known as slots, and it is forgotten
 * once unmapped. The address space near the first region is reserved, so
 * that the next region the library maps lies far from it. */
TEST(a_region_far_from_the_first_is_known_by_the_map)
{
    if (no_regions())
        skip();
    enum { N = 60000 };                      /* 64 B: about 26,000 slots a region */
    const uintptr_t reach = (uintptr_t)8 << 30;
    void **p = malloc(N * sizeof(*p));
    struct gap *gaps = malloc(GAPS_MAX * sizeof(*gaps));
    uintptr_t first = 0, far = 0;
    int n = 0, ngaps;

    assert_true(p && gaps);
    while (!first && n < N) {
        assert_non_null(p[n] = rcl_alloc(64, RCL_DEFAULT));
        first = slot_at(p[n]) ? (uintptr_t)p[n] : 0;
        n++;
    }
    assert_true(first != 0);
    ngaps = reserve_gaps_near(first, reach, gaps);
    while (!far && n < N) {
        assert_non_null(p[n] = rcl_alloc(64, RCL_DEFAULT));
        uintptr_t a = (uintptr_t)p[n++];
        if (slot_at((void *)a) && (a > first ? a - first : first - a) >= reach)
            far = a;
    }
    assert_true(far != 0);
    assert_true(rcl__region_holds((void *)(far & ~(uintptr_t)(RCL_REGION_BYTES - 1))));
    assert_true(rcl__region_holds((void *)first));
    while (n > 0)
        rcl_free(p[--n]);
    rcl_shutdown();
    assert_false(test_mapped((void *)far));
    assert_false(rcl__region_holds((void *)far));
    assert_false(rcl__region_holds((void *)first));
    for (int i = 0; i < ngaps; i++)
        assert_int_equal(munmap(gaps[i].at, gaps[i].len), 0);
    free(gaps);
    free(p);
    assert_int_equal(test_init(64 * MiB), 0);
}

enum { TRIM_BLOCKS = 3 * 340, TRIM_SIZE = 176 };     /* 340 slots a span */

static void skip_unless_regions_of_4k_pages(void)
{
    if (no_regions())
        skip();
    if (sysconf(_SC_PAGESIZE) != 4096) {
        print_message("skipped: the pages of a span are counted in 4 KiB\n");
        skip();
    }
}

/* Fills p with TRIM_BLOCKS blocks, each of its index's low byte for a test
 * to find intact, and returns where the span'th span of a region that
 * holds some of them starts. */
static uintptr_t alloc_trim_blocks(void **p, uintptr_t span)
{
    uintptr_t at = 0;

    for (int i = 0; i < TRIM_BLOCKS; i++) {
        assert_non_null(p[i] = rcl_alloc(TRIM_SIZE, RCL_DEFAULT));
        memset(p[i], i & 0xff, TRIM_SIZE);
        uintptr_t off = (uintptr_t)p[i] % RCL_REGION_BYTES;
        if (slot_at(p[i]) && off >= span * RCL_REGION_SPAN && off < (span + 1) * RCL_REGION_SPAN)
            at = (uintptr_t)p[i] - off + span * RCL_REGION_SPAN;
    }
    assert_true(at != 0);
    return at;
}

/* Frees the blocks of the span at span_at, leaving NULL in their places,
 * and trims. */
static void trim_after_freeing_the_span_at(void **p, uintptr_t span_at)
{
    for (int i = 0; i < TRIM_BLOCKS; i++)
        if ((uintptr_t)p[i] - span_at < RCL_REGION_SPAN) {
            rcl_free(p[i]);
            p[i] = NULL;
        }
    rcl_usage_sync();
    rcl__slab_trim();
}

/* A trim gives a region's first span's pages back like any span's but for
 * the first, where the region's head is: the region is still whole after
 * it, its other spans in use and their blocks intact, and unmapped once
 * they are free too. */
TEST(a_trim_keeps_the_head_of_a_region_it_gives_a_span_of_back)
{
    skip_unless_regions_of_4k_pages();
    void **p = malloc(TRIM_BLOCKS * sizeof(*p));

    assert_non_null(p);
    uintptr_t first = alloc_trim_blocks(p, 0);
    trim_after_freeing_the_span_at(p, first);
    assert_true(resident(first));
    for (uintptr_t a = first + 4096; a < first + RCL_REGION_SPAN; a += 4096)
        assert_false(resident(a));
    for (int i = 0; i < TRIM_BLOCKS; i++) {
        if (!p[i])
            continue;
        for (int j = 0; j < TRIM_SIZE; j++)
            assert_int_equal(((unsigned char *)p[i])[j], i & 0xff);
        rcl_free(p[i]);
    }
    free(p);
    rcl_shutdown();
    assert_false(test_mapped((void *)first));
    assert_int_equal(test_init(64 * MiB), 0);
}

/* A trim gives back every page of a span that is not its region's first:
 * only the first span keeps a page, for the region's head. */
TEST(a_trim_gives_back_every_page_of_a_span_past_the_first)
{
    skip_unless_regions_of_4k_pages();
    void **p = malloc(TRIM_BLOCKS * sizeof(*p));

    assert_non_null(p);
    uintptr_t second = alloc_trim_blocks(p, 1);
    trim_after_freeing_the_span_at(p, second);
    for (uintptr_t a = second; a < second + RCL_REGION_SPAN; a += 4096)
        assert_false(resident(a));
    for (int i = 0; i < TRIM_BLOCKS; i++)
        rcl_free(p[i]);
    free(p);
}

TEST_MAIN();
