/* SPDX-License-Identifier: MIT */
/*
 * The slabs of the larger classes (src/slab.h): over a backend whose size
 * classes are a quarter apart (mimalloc, jemalloc), blocks of 256 B to
 * 64 KiB are slots the library carves from spans of its own, so that the
 * 16-byte header is all the rounding a block pays beyond its class. The
 * kernel's rule they follow is its slab allocator's: objects of a cache
 * are carved from slabs of their own, freed objects go back to their
 * slab, a slab that empties goes back to the page allocator (those a
 * recent peak had in use are kept for the next allocations, as the
 * kernel's partial lists keep some until it shrinks them), and
 * a second free is caught, not a corruption. Over glibc, which fits a
 * chunk to 16 bytes, the classes above 256 B are glibc's chunks, and the
 * tests that are about their slabs say so and skip; its classes up to
 * 256 B are slabs' slots instead, from regions the library maps; the
 * tests about those skip over mimalloc and jemalloc. The regions
 * themselves, and the map of them by address, are test_region.c's.
 *
 * Each test uses sizes of a class no other test here uses, so that what
 * one leaves in its slabs cannot decide another.
 */
#include "helpers.h"
#include "internal.h"
#include "slab.h"
#include "slots.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static bool no_slabs(void)
{
    if (rcl__slab_sized(4096))
        return false;
    print_message("skipped: over glibc the classes above 256 B are its own chunks - it fits a "
                  "chunk to 16 bytes and merges free neighbours (src/backend.h)\n");
    return true;
}

/* The header's 16 bytes are all a 4 KiB block pays beyond its size: the
 * blocks lie 4112 bytes apart, where asked of the backend each would be a
 * block of its 5 KiB class. */
TEST(blocks_of_4k_lie_their_size_and_a_header_apart)
{
    if (no_slabs())
        skip();
    enum { N = 256 };
    void *p[N];
    int packed = 0;

    for (int i = 0; i < N; i++)
        assert_non_null(p[i] = rcl_alloc(4096, RCL_DEFAULT));
    uintptr_t *a = malloc(N * sizeof(*a));
    assert_non_null(a);
    for (int i = 0; i < N; i++)
        a[i] = (uintptr_t)p[i];
    qsort(a, N, sizeof(*a), cmp_ptr);
    for (int i = 1; i < N; i++)
        packed += a[i] - a[i - 1] == 4096 + 16;
    /* Only where one slab ends and the next begins is a gap: a slab of
     * 256 KiB holds 63 of them. */
    assert_true(packed >= N - 1 - (N / 63 + 2));
    free(a);
    for (int i = 0; i < N; i++)
        rcl_free(p[i]);
}

/* A block that went back to its slab (the calling thread's cache
 * drained), freed again: a reported bad free, nothing uncharged twice,
 * and the slab still serves. Under a sanitizer reading the freed block's
 * header is itself the (correct) report, so the plain run holds this
 * test, as it does test_alloc's double_free_is_caught. */
TEST(a_block_freed_again_from_its_slab_is_reported)
{
    test_skip_if_freed_reads_report();
    if (no_slabs())
        skip();
    /* Neighbours kept alive, so that the slab stays. */
    void *a = rcl_alloc(1500, RCL_DEFAULT), *p = rcl_alloc(1500, RCL_DEFAULT);
    void *b = rcl_alloc(1500, RCL_DEFAULT);
    rcl_usage_sync();
    size_t before = rcl_usage();

    rcl_free(p);
    rcl_usage_sync();                   /* the cached block back to its slab */
    assert_int_equal(rcl_usage(), before - rcl_alloc_charge(1500));
    errno = 0;
    rcl_free(p);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_reports_have("not a block from this library, or already freed");
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), before - rcl_alloc_charge(1500));

    void *q = rcl_alloc(1500, RCL_DEFAULT);
    assert_non_null(q);
    rcl_free(q);
    rcl_free(a);
    rcl_free(b);
}

/* A full slab's last page is resident whatever of it its last slot uses:
 * a slab of 4 KiB blocks (slots of a page and a header) keeps at most a
 * 128th of its span resident beyond its slots' bytes - the blocks, grouped
 * by the span they lie in, fill all but that much of the fullest one (in
 * 128 KiB spans, the smallest to hold 16 slots, 3.5 KiB of each were
 * left, in 256 KiB 3 KiB). So too the 5 KiB class; the classes of 64 KiB
 * spans keep them. */
TEST(full_slabs_lose_at_most_a_128th_to_their_tails)
{
    if (no_slabs())
        skip();
    static const size_t sizes[] = { 4096, 5120 };
    enum { N = 300 };
    void *p[N];

    for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
        unsigned c = rcl__bcache_class(sizes[z]);
        size_t size = rcl__bcache_cap(c), slot = size + 16, span = rcl__slab_span(c);
        size_t most = 0;

        for (int i = 0; i < N; i++)
            assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
        for (int i = 0; i < N; i++) {
            size_t in = 0;
            for (int j = 0; j < N; j++)
                in += ((uintptr_t)p[i] ^ (uintptr_t)p[j]) < span;
            most = in > most ? in : most;
        }
        size_t end = RCL_SLAB_HEAD + most * slot;  /* the slab's head, then its slots */
        assert_true(end <= span && (end + 4095) / 4096 * 4096 - most * slot <= span / 128);
        for (int i = 0; i < N; i++)
            rcl_free(p[i]);
    }
}

/* A thread's list of a slab class takes a batch of slots at once, and
 * listing a slot writes its header: a never-used slot whose header would
 * land on a page no block handed out has touched stays unlisted, so a
 * block of a class asked for once makes one page resident, not the batch's
 * 16 KiB. A block of 1 KiB, the first of its slab: three of its page's
 * slots are listed with it (the list's batch is five); of 4.5 KiB, none. */
struct listed {
    size_t size;
    bool got;
    size_t listed;          /* bytes the thread's lists took with the block */
};

static void *alloc_once_main(void *arg)
{
    struct listed *l = arg;
    struct rcl_stats before, after;

    /* A block of another class first: the thread's stock, which a batch's
     * list is charged from, is filled by its first allocation. */
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    rcl_stats_get(&before);
    void *p = rcl_alloc(l->size, RCL_DEFAULT);
    rcl_stats_get(&after);
    l->got = p != NULL;
    l->listed = after.thread_cached - before.thread_cached;
    rcl_free(p);
    return NULL;
}

TEST(a_batch_lists_no_slot_on_a_page_no_block_touched)
{
    if (no_slabs())
        skip();
    static const size_t sizes[] = { 1000, 4500 };

    for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
        unsigned c = rcl__bcache_class(sizes[z]);
        size_t slot = rcl__bcache_cap(c) + 16, on_page = 0;
        struct listed l = { sizes[z], false, 0 };
        pthread_t th;

        /* The slab's head, then its slots: those whose headers share the
         * first one's page. */
        for (size_t at = 64; at / 4096 == 0; at += slot)
            on_page++;
        assert_int_equal(rcl__slab_held(c), 0);
        assert_int_equal(pthread_create(&th, NULL, alloc_once_main, &l), 0);
        pthread_join(th, NULL);
        assert_true(l.got);
        assert_true(l.listed <= (on_page - 1) * rcl__bcache_charge(c));
        /* Slots on the page a block made resident are still listed. */
        assert_true(on_page == 1 || l.listed > 0);
    }
}

/* The slabs of a live set of EMPTIED_N blocks of `size`, every one of them
 * empty once its blocks are all freed and the caches drained: what they
 * held at the peak. */
enum { EMPTIED_N = 600 };
static size_t slabs_emptied(size_t size)
{
    void *p[EMPTIED_N];
    int n = EMPTIED_N;
    size_t full;

    for (int i = 0; i < n; i++)
        assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
    full = rcl__slab_held(rcl__bcache_class(size));
    assert_true(full >= (size_t)n * (rcl__bcache_cap(rcl__bcache_class(size)) + 16));
    for (int i = 0; i < n; i++)
        rcl_free(p[i]);
    rcl_usage_sync();
    return full;
}

/* A window that outlasts any test: what a class had in use is not
 * forgotten while one runs, however slow the machine. */
#define KEEP_LONG (600ull * 1000000000ull)

/* The slabs' window of peaks set to `ns`; what it was, for the test to
 * put back. */
static unsigned long long keep_window(unsigned long long ns)
{
    return atomic_exchange(&rcl__slab_keep_ns, ns);
}

/* A shutdown trims: class c holds no slab after it. The window put back
 * to `window`, and the library started again for the next test. */
static void shutdown_trims(unsigned c, unsigned long long window)
{
    rcl_shutdown();
    assert_int_equal(rcl__slab_held(c), 0);
    keep_window(window);
    assert_int_equal(test_init(64 * MiB), 0);
}

/* Once its blocks are all freed, a class keeps its emptied slabs up to
 * the most it had in use lately, for a live set that comes back - which
 * then finds them again rather than asking the backend - as the kernel's
 * slab keeps a cache's free slabs on its partial lists for the next
 * allocations until it shrinks; a shutdown, which trims, gives them all
 * back. */
TEST(emptied_slabs_are_kept_up_to_their_recent_peak_and_trimmed)
{
    if (no_slabs())
        skip();
    unsigned c = rcl__bcache_class(2500);
    unsigned long long window = keep_window(KEEP_LONG);
    size_t full = slabs_emptied(2500);
    void *p[EMPTIED_N / 4];

    assert_int_equal(rcl__slab_held(c), full);
    for (int i = 0; i < EMPTIED_N / 4; i++)
        assert_non_null(p[i] = rcl_alloc(2500, RCL_DEFAULT));
    assert_int_equal(rcl__slab_held(c), full);
    for (int i = 0; i < EMPTIED_N / 4; i++)
        rcl_free(p[i]);
    shutdown_trims(c, window);
}

/* Once what it had in use is forgotten, a class keeps no more empty slabs
 * than it has others in use - one at least, half of what it had at most. */
TEST(a_class_past_its_peak_keeps_as_many_empty_slabs_as_are_in_use)
{
    if (no_slabs())
        skip();
    unsigned c = rcl__bcache_class(3500);
    unsigned long long window = keep_window(0);
    size_t full = slabs_emptied(3500);
    size_t kept = rcl__slab_held(c);

    /* 64 KiB slabs for this class: half of them, rounded up. */
    assert_true(kept >= 64 * 1024 && kept <= full / 2 + 64 * 1024);
    shutdown_trims(c, window);
}

/* The slabs a class kept for a peak it has since forgotten go back to the
 * backend when the next of its slabs empties, not only at a trim: a
 * program whose live set shrank for good gets the memory back as it
 * goes on. */
TEST(slabs_kept_past_their_peak_go_when_the_next_one_empties)
{
    if (no_slabs())
        skip();
    unsigned c = rcl__bcache_class(1700);
    unsigned long long window = keep_window(KEEP_LONG);
    size_t full = slabs_emptied(1700);
    void *p;

    assert_int_equal(rcl__slab_held(c), full);
    keep_window(0);
    assert_non_null(p = rcl_alloc(1700, RCL_DEFAULT));
    rcl_free(p);
    rcl_usage_sync();
    /* The slab that emptied last is all that is kept: none other in use. */
    assert_int_equal(rcl__slab_held(c), rcl__slab_span(c));
    shutdown_trims(c, window);
}

/* A block moves between the slabs and the backend as its size crosses
 * their edges, and stays where it is within its class, its contents kept
 * either way - on every backend, where over glibc every move is the
 * backend's. */
TEST(realloc_moves_a_block_between_slabs_and_backend_keeping_its_bytes)
{
    static const size_t sizes[] = { 100, 300, 5000, 4900, 70000, 200, 40 };
    unsigned char *p = rcl_alloc(40, RCL_DEFAULT);
    size_t have = 40;

    assert_non_null(p);
    for (size_t i = 0; i < have; i++)
        p[i] = (unsigned char)(i * 7);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t size = sizes[k], keep = have < size ? have : size;
        unsigned char *q = rcl_realloc(p, size, RCL_DEFAULT);
        assert_non_null(q);
        for (size_t i = 0; i < keep; i++)
            assert_int_equal(q[i], (unsigned char)(i * 7));
        for (size_t i = keep; i < size; i++)
            q[i] = (unsigned char)(i * 7);
        if (rcl__slab_sized(4096) && size == 4900)     /* 5000's class, 5120 */
            assert_ptr_equal(q, p);
        p = q;
        have = size;
        assert_int_equal(rcl_usage(), rcl_alloc_charge(size));
    }
    rcl_free(p);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
}

/* Two threads allocating the same class in turn fill their caches from
 * slabs of their own - the kernel's per-CPU slab, here per thread - so
 * that no slab holds blocks of both: their lines are not shared between
 * the cores. */
#define TURN_ROUNDS 16
#define TURN_BLOCKS 8

struct turn {
    pthread_barrier_t *bar;
    void              *p[TURN_ROUNDS * TURN_BLOCKS];
};

static void *turn_main(void *arg)
{
    struct turn *x = arg;

    for (int r = 0; r < TURN_ROUNDS; r++) {
        for (int i = 0; i < TURN_BLOCKS; i++)
            x->p[r * TURN_BLOCKS + i] = rcl_alloc(250, RCL_DEFAULT);
        pthread_barrier_wait(x->bar);
    }
    pthread_barrier_wait(x->bar);       /* the other thread has checked */
    for (int i = 0; i < TURN_ROUNDS * TURN_BLOCKS; i++)
        rcl_free(x->p[i]);
    rcl_usage_sync();
    return NULL;
}

/* The span a block's slot lies in: 64 KiB for 250-byte blocks. */
static uintptr_t span_of(const void *p) { return ((uintptr_t)p - 16) >> 16; }

TEST(threads_allocating_in_turn_fill_from_slabs_of_their_own)
{
    if (no_slabs())
        skip();
    static struct turn x[2];
    pthread_barrier_t bar;
    pthread_t th[2];

    assert_int_equal(pthread_barrier_init(&bar, NULL, 3), 0);
    for (int t = 0; t < 2; t++) {
        x[t].bar = &bar;
        assert_int_equal(pthread_create(&th[t], NULL, turn_main, &x[t]), 0);
    }
    for (int r = 0; r < TURN_ROUNDS; r++)
        pthread_barrier_wait(&bar);
    int missing = 0, shared = 0;
    for (int i = 0; i < TURN_ROUNDS * TURN_BLOCKS; i++) {
        missing += !x[0].p[i] + !x[1].p[i];
        for (int j = 0; j < TURN_ROUNDS * TURN_BLOCKS; j++)
            shared += span_of(x[0].p[i]) == span_of(x[1].p[j]);
    }
    pthread_barrier_wait(&bar);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&bar);
    assert_int_equal(missing, 0);
    assert_int_equal(shared, 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
    assert_int_equal(rcl__slab_held(rcl__bcache_class(250)), 0);
    assert_int_equal(test_init(64 * MiB), 0);
}

/* A thread that exits lets go of its slab: the next thread to allocate
 * the class fills from it rather than from a new one, as the kernel
 * flushes a CPU's slab when the CPU goes away. (A thread's first blocks
 * come by the slow path, from any slab; the later ones fill its list.) */
static void *few_blocks_main(void *arg)
{
    void **p = arg;

    for (int i = 0; i < 3; i++)
        p[i] = rcl_alloc(9000, RCL_DEFAULT);
    for (int i = 0; i < 3; i++)
        rcl_free(p[i]);
    return NULL;
}

TEST(an_exiting_thread_lets_go_of_its_slab)
{
    if (no_slabs())
        skip();
    unsigned c = rcl__bcache_class(9000);
    void *p[2][3];
    pthread_t th;

    for (int t = 0; t < 2; t++) {
        assert_int_equal(pthread_create(&th, NULL, few_blocks_main, p[t]), 0);
        pthread_join(th, NULL);
        for (int i = 0; i < 3; i++)
            assert_non_null(p[t][i]);
    }
    /* One slab of 256 KiB for 9 KiB blocks, that both used. */
    assert_int_equal(rcl__slab_held(c), 256 * 1024);
    for (int i = 0; i < 3; i++)
        assert_true(((uintptr_t)p[0][i] ^ (uintptr_t)p[1][2]) < 256 * 1024);
    rcl_shutdown();
    assert_int_equal(rcl__slab_held(c), 0);
    assert_int_equal(test_init(64 * MiB), 0);
}

/* A slab kept after it emptied is carved anew, and every slot it had
 * carved before has a header's page resident still: a batch takes them
 * several at a time, where a slab never carved gives slots of a page and
 * more one a call (a_batch_lists_no_slot_on_a_page_no_block_touched).
 * Counting them as never carved cost two threads recycling 4 KiB x 4096
 * a fifth of their speed: each pass carved the kept slabs a slot a call. */
TEST(a_kept_slab_is_carved_anew_a_batch_at_a_time)
{
    if (no_slabs())
        skip();
    unsigned c = rcl__bcache_class(6000);
    static struct rcl_slab_own own[RCL_BCACHE_NRS];
    size_t per_slab = (rcl__slab_span(c) - RCL_SLAB_HEAD) / (rcl__bcache_cap(c) + 16);
    struct rcl_hdr *h[128], *batch[4];

    assert_true(per_slab >= 4 && per_slab <= 128);
    for (size_t i = 0; i < per_slab; i++)
        assert_int_equal(rcl__slab_get_many(c, &h[i], 1, &own[c + 1]), 1);
    /* A new slab's never-carved slots lie a page and more apart. */
    assert_int_equal(rcl__slab_held(c), rcl__slab_span(c));
    for (size_t i = 0; i < per_slab; i += RCL_SLAB_BATCH)
        rcl__slab_put_many(c, &h[i], (unsigned)(per_slab - i < RCL_SLAB_BATCH ? per_slab - i
                                                                            : RCL_SLAB_BATCH));
    /* Emptied, the slab is kept, and carved again from its first slot. */
    assert_int_equal(rcl__slab_get_many(c, batch, 4, &own[c + 1]), 4);
    assert_int_equal(rcl__slab_held(c), rcl__slab_span(c));
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(batch[i], h[i]);
    rcl__slab_put_many(c, batch, 4);
    rcl__slab_disown(own);
    rcl__slab_trim();
    assert_int_equal(rcl__slab_held(c), 0);
}

/* A thread holding a slab's never-used slots takes the slots given back
 * to that slab first: they are resident already, where a never-used one
 * would make one more page so - as the kernel's slab allocator serves a
 * CPU's slab from its freelist before carving further. */
TEST(slots_given_back_are_taken_before_never_used_ones)
{
    if (no_slabs())
        skip();
    unsigned c = rcl__bcache_class(12000);
    static struct rcl_slab_own own[RCL_BCACHE_NRS];
    struct rcl_hdr *first[2], *again[2];

    /* One at a time: a batch takes a never-used slot beyond its first
     * only on a page already resident, and 12 KiB slots are not. */
    for (int i = 0; i < 2; i++)
        assert_int_equal(rcl__slab_get_many(c, &first[i], 1, &own[c + 1]), 1);
    rcl__slab_put_many(c, first, 2);
    assert_int_equal(rcl__slab_get_many(c, again, 2, &own[c + 1]), 2);
    assert_true((again[0] == first[0] && again[1] == first[1]) ||
                (again[0] == first[1] && again[1] == first[0]));
    rcl__slab_put_many(c, again, 2);
    rcl__slab_disown(own);
    rcl__slab_trim();
    assert_int_equal(rcl__slab_held(c), 0);
}

/* Does each of the slots h[0..n) lie in the span of one of in[0..m)?
 * Class c's spans are aligned to their size. */
static bool all_in_spans(unsigned c, struct rcl_hdr **h, size_t n, struct rcl_hdr **in, size_t m)
{
    uintptr_t mask = ~(uintptr_t)(rcl__slab_span(c) - 1);

    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < m && !found; j++)
            found = ((uintptr_t)h[i] & mask) == ((uintptr_t)in[j] & mask);
        if (!found)
            return false;
    }
    return true;
}

/* A thread looking for slots given back takes them from a slab it
 * carved before, where there is one, not from the first on the class's
 * list: their lines are likeliest in its own core's cache, where another
 * thread's slab's are in the other core's - as the kernel's slab
 * allocator prefers a CPU's own partial slabs to the node's. Two threads
 * recycling 4 KiB blocks from each other's slabs ran up to a tenth slower
 * (docs/bench/patterns.md, "Figures, 2026-12-03, 13:20"). */
TEST(a_thread_takes_slots_given_back_from_its_own_slabs_first)
{
    unsigned c = rcl__bcache_class(rcl__slab_sized(3000) ? 3000 : 168);
    static struct rcl_slab_own own[2][RCL_BCACHE_NRS];
    size_t per_slab = (rcl__slab_span(c) - RCL_SLAB_HEAD) / (rcl__bcache_cap(c) + 16);
    static struct rcl_hdr *h[2][1024], *again[512];

    assert_true(per_slab >= 4 && 2 * per_slab <= 1024);
    /* Each thread carves two slabs full, then gives half of each back,
     * the second thread last: its slabs lead the class's list. */
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < 2 * per_slab; i++)
            assert_int_equal(rcl__slab_get_many(c, &h[t][i], 1, &own[t][c + 1]), 1);
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < 2 * per_slab; i += 2)
            rcl__slab_put(h[t][i], c);
    /* The first thread takes back what it gave, from its own slabs. */
    for (size_t i = 0; i < per_slab; i++)
        assert_int_equal(rcl__slab_get_many(c, &again[i], 1, &own[0][c + 1]), 1);
    assert_true(all_in_spans(c, again, per_slab, h[0], 2 * per_slab));
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    for (size_t i = 0; i < per_slab; i++)
        rcl__slab_put(again[i], c);
    for (int t = 0; t < 2; t++) {
        for (size_t i = 1; i < 2 * per_slab; i += 2)
            rcl__slab_put(h[t][i], c);
        rcl__slab_disown(own[t]);
    }
    rcl__slab_trim();
    assert_int_equal(rcl__slab_held(c), 0);
}

/* Slots of class c for three threads: the third holds two slabs full,
 * so that the class keeps the others' once they empty (slab_unuse()),
 * and the first two carve a slab full each. Their number per slab. */
static size_t carve_three(unsigned c, struct rcl_slab_own (*own)[RCL_BCACHE_NRS],
                          struct rcl_hdr *(*h)[1024])
{
    size_t per_slab = (rcl__slab_span(c) - RCL_SLAB_HEAD) / (rcl__bcache_cap(c) + 16);

    assert_true(per_slab >= 4 && 2 * per_slab <= 1024);
    for (size_t i = 0; i < 2 * per_slab; i++)
        assert_int_equal(rcl__slab_get_many(c, &h[2][i], 1, &own[2][c + 1]), 1);
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < per_slab; i++)
            assert_int_equal(rcl__slab_get_many(c, &h[t][i], 1, &own[t][c + 1]), 1);
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    return per_slab;
}

/* The third thread's slots back and every thread's let go of: a trim
 * then leaves no slab of the class. */
static void release_three(unsigned c, struct rcl_slab_own (*own)[RCL_BCACHE_NRS],
                          struct rcl_hdr *(*h)[1024], size_t per_slab)
{
    for (size_t i = 0; i < 2 * per_slab; i++)
        rcl__slab_put(h[2][i], c);
    for (int t = 0; t < 3; t++)
        rcl__slab_disown(own[t]);
    rcl__slab_trim();
    assert_int_equal(rcl__slab_held(c), 0);
}

/* The same for a slab kept after it emptied: a thread with no slot given
 * back to take takes a kept slab it carved before over one another
 * thread emptied after it. */
TEST(a_thread_takes_a_kept_slab_it_carved_before_another_threads)
{
    unsigned c = rcl__bcache_class(rcl__slab_sized(2500) ? 2500 : 136);
    static struct rcl_slab_own own[3][RCL_BCACHE_NRS];
    static struct rcl_hdr *h[3][1024], *again;
    size_t per_slab = carve_three(c, own, h);

    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < per_slab; i++)
            rcl__slab_put(h[t][i], c);
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    /* The second thread's slab emptied last, and is first of the kept. */
    assert_int_equal(rcl__slab_get_many(c, &again, 1, &own[0][c + 1]), 1);
    assert_true(all_in_spans(c, &again, 1, h[0], 1));
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    rcl__slab_put(again, c);
    release_three(c, own, h, per_slab);
}

/* A thread with no slot of its own given back takes a kept slab it
 * carved before over another thread's given-back slots: both are
 * resident, and its own slab's lines are likelier in its own core's
 * cache. Two threads each recycling a live set of 4 KiB blocks that took
 * each other's given-back slots first took 1.4 - 1.8x the CPU time a
 * pair takes now over mimalloc (docs/bench/patterns.md, "Figures,
 * 2026-12-04, 22:30"). */
TEST(a_thread_takes_its_own_kept_slab_before_another_threads_given_back_slots)
{
    unsigned c = rcl__bcache_class(rcl__slab_sized(2500) ? 2500 : 136);
    static struct rcl_slab_own own[3][RCL_BCACHE_NRS];
    static struct rcl_hdr *h[3][1024], *again;
    size_t per_slab = carve_three(c, own, h);

    /* The first thread's slab empties; the second's gives half back. */
    for (size_t i = 0; i < per_slab; i++)
        rcl__slab_put(h[0][i], c);
    for (size_t i = 0; i < per_slab; i += 2)
        rcl__slab_put(h[1][i], c);
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    assert_int_equal(rcl__slab_get_many(c, &again, 1, &own[0][c + 1]), 1);
    assert_true(all_in_spans(c, &again, 1, h[0], 1));
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    rcl__slab_put(again, c);
    for (size_t i = 1; i < per_slab; i += 2)
        rcl__slab_put(h[1][i], c);
    release_three(c, own, h, per_slab);
}

/* A give-back batch holds the slots of several slabs, in any order: runs
 * of one slab's slots are chained before the lock is taken (slab.c,
 * struct slot_run). Every slot goes back to its own slab once: taken
 * again, the slabs give exactly the slots they gave before, and no new
 * slab is made. */
TEST(a_batch_of_slots_of_several_slabs_goes_back_to_each_ones_slab)
{
    unsigned c = rcl__bcache_class(rcl__slab_sized(2500) ? 2500 : 136);
    static struct rcl_slab_own own[3][RCL_BCACHE_NRS];
    size_t per_slab = (rcl__slab_span(c) - RCL_SLAB_HEAD) / (rcl__bcache_cap(c) + 16);
    static struct rcl_hdr *h[1024], *held[1024], *batch[RCL_SLAB_SPILL], *again[1024];
    size_t n = 2 * per_slab, done = 0;

    assert_true(per_slab >= 8 && n <= 1024);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rcl__slab_get_many(c, &h[i], 1, &own[0][c + 1]), 1);
    rcl__slab_disown(own[0]);
    /* Another thread holds two slabs full, so that the class keeps both
     * of the first's once they empty (slab_unuse()). */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rcl__slab_get_many(c, &held[i], 1, &own[2][c + 1]), 1);
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    /* Batches of growing runs taken from the two slabs in turn: runs of
     * one slot, of two, of three ... the last batch whatever is left. */
    for (size_t run = 1; done < n; run++) {
        size_t nb = 0;
        for (size_t a = done / 2, b = per_slab + done / 2;
             nb + 2 * run <= RCL_SLAB_SPILL && a + run <= per_slab; a += run, b += run)
            for (size_t side = 0; side < 2; side++)
                for (size_t i = 0; i < run; i++)
                    batch[nb++] = h[(side ? b : a) + i];
        if (!nb)
            for (size_t a = done / 2; a < per_slab && nb + 2 <= RCL_SLAB_SPILL; a++) {
                batch[nb++] = h[a];
                batch[nb++] = h[per_slab + a];
            }
        rcl__slab_put_many(c, batch, (unsigned)nb);
        done += nb;
    }
    assert_int_equal(done, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rcl__slab_get_many(c, &again[i], 1, &own[1][c + 1]), 1);
    assert_int_equal(rcl__slab_held(c), 4 * rcl__slab_span(c));
    qsort(h, n, sizeof(h[0]), cmp_ptr);
    qsort(again, n, sizeof(again[0]), cmp_ptr);
    assert_memory_equal(h, again, n * sizeof(h[0]));
    for (size_t i = 0; i < n; i += RCL_SLAB_SPILL) {
        unsigned m = (unsigned)(n - i < RCL_SLAB_SPILL ? n - i : RCL_SLAB_SPILL);
        rcl__slab_put_many(c, &again[i], m);
        rcl__slab_put_many(c, &held[i], m);
    }
    for (int t = 1; t < 3; t++)
        rcl__slab_disown(own[t]);
    rcl__slab_trim();
    assert_int_equal(rcl__slab_held(c), 0);
}

/* A thread's cache drain (here rcl_usage_sync()) gives back the slots
 * it holds, never-used ones included, so that its slab can empty and a
 * trim give it back while the thread runs on. */
TEST(a_drain_gives_back_the_slots_a_thread_holds)
{
    if (no_slabs())
        skip();
    unsigned c = rcl__bcache_class(11000);
    void *p[3];

    for (int i = 0; i < 3; i++)
        assert_non_null(p[i] = rcl_alloc(11000, RCL_DEFAULT));
    for (int i = 0; i < 3; i++)
        rcl_free(p[i]);
    assert_true(rcl__slab_held(c) > 0);
    rcl_usage_sync();
    rcl__slab_trim();
    assert_int_equal(rcl__slab_held(c), 0);
    assert_non_null(p[0] = rcl_alloc(11000, RCL_DEFAULT));
    rcl_free(p[0]);
}

/* Threads free each other's blocks of 1 B - 8 KiB, slab classes and the
 * backend's on every backend (the small ones are slabs' over glibc, the
 * large ones over mimalloc and jemalloc): every block keeps its bytes,
 * goes back to where it came from, and once all are freed every slab
 * class's slabs are down to the ones kept - none lost, none freed twice. */
#define X_THREADS 4
#define X_BLOCKS  1500

struct xfer {
    pthread_barrier_t *bar;
    unsigned char    **mine, **theirs;
    int                id;
};

static size_t x_size(int id, int i)
{
    return 1 + (size_t)((id * 7919 + i * 104729) % 8000);
}

static void *x_main(void *arg)
{
    struct xfer *x = arg;

    for (int i = 0; i < X_BLOCKS; i++) {
        size_t n = x_size(x->id, i);
        x->mine[i] = rcl_alloc(n, RCL_DEFAULT);
        if (x->mine[i])
            memset(x->mine[i], x->id * 31 + i, n);
    }
    pthread_barrier_wait(x->bar);
    int peer = (x->id + 1) % X_THREADS;
    long bad = 0;
    for (int i = 0; i < X_BLOCKS; i++) {
        unsigned char *b = x->theirs[i];
        size_t n = x_size(peer, i);
        if (!b || b[0] != (unsigned char)(peer * 31 + i) || b[n - 1] != b[0])
            bad++;
        rcl_free(b);
    }
    rcl_usage_sync();
    return (void *)bad;
}

TEST(threads_freeing_each_others_blocks_return_them_to_their_slabs)
{
    static unsigned char *blocks[X_THREADS][X_BLOCKS];
    pthread_barrier_t bar;
    pthread_t th[X_THREADS];
    struct xfer x[X_THREADS];

    assert_int_equal(pthread_barrier_init(&bar, NULL, X_THREADS), 0);
    for (int i = 0; i < X_THREADS; i++) {
        x[i] = (struct xfer){ &bar, blocks[i], blocks[(i + 1) % X_THREADS], i };
        assert_int_equal(pthread_create(&th[i], NULL, x_main, &x[i]), 0);
    }
    for (int i = 0; i < X_THREADS; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        assert_int_equal((long)bad, 0);
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(test_report_count(), 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    /* All freed: a shutdown's trim leaves no slab of these classes. */
    rcl_shutdown();
    for (size_t n = 1; n <= 8000; n += 16)
        if (rcl__slab_sized(n))
            assert_int_equal(rcl__slab_held(rcl__bcache_class(n)), 0);
    assert_int_equal(test_init(64 * MiB), 0);
}

/* A 16-byte block and its header take 32 bytes: the chunk raw glibc makes
 * for 16 bytes (asked of glibc they would take 48). */
TEST(small_blocks_lie_a_header_apart)
{
    if (no_small_slabs())
        skip();
    enum { N = 512 };
    void *p[N];
    uintptr_t a[N];
    int packed = 0, slots = 0;

    for (int i = 0; i < N; i++) {
        assert_non_null(p[i] = rcl_alloc(16, RCL_DEFAULT));
        if (slot_at(p[i]))
            a[slots++] = (uintptr_t)p[i];
    }
    assert_true(slots >= N - (int)RCL_SLAB_MIN_DEPTH);
    qsort(a, (size_t)slots, sizeof(*a), cmp_ptr);
    for (int i = 1; i < slots; i++)
        packed += a[i] - a[i - 1] == 16 + 16;
    /* 16 KiB of slots: within one 64 KiB span, or across one edge. */
    assert_true(packed >= slots - 2);
    for (int i = 0; i < N; i++)
        rcl_free(p[i]);
}

/* A thread's live set of one class, allocated in a thread of its own, so
 * that its lists start at their first depths: the index of its first slot,
 * and how many are slots. */
enum { GROW_N = 4 * RCL_SLAB_MIN_DEPTH };
struct grow { size_t size; int first_slot, slots; };

static void *grow_thread(void *arg)
{
    struct grow *g = arg;
    void *p[GROW_N];

    g->first_slot = -1;
    g->slots = 0;
    for (int i = 0; i < GROW_N; i++) {
        if (!(p[i] = rcl_alloc(g->size, RCL_DEFAULT)))
            return (void *)1;
        if (slot_at(p[i])) {
            g->first_slot = g->first_slot < 0 ? i : g->first_slot;
            g->slots++;
        }
    }
    for (int i = 0; i < GROW_N; i++)
        rcl_free(p[i]);
    return NULL;
}

/* A small class's first blocks are the backend's, which share its pages
 * with every other size; once the thread's list for it has grown to
 * RCL_SLAB_MIN_DEPTH, the class's new blocks are slots. */
TEST(a_small_class_takes_slots_once_its_list_has_grown)
{
    if (no_mixed_homes())
        skip();
    struct grow g = { .size = 48 };
    pthread_t th;
    void *ret;

    assert_int_equal(pthread_create(&th, NULL, grow_thread, &g), 0);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
    assert_true(g.first_slot > 0 && g.first_slot <= (int)RCL_SLAB_MIN_DEPTH);
    /* Each miss grew the list by one from its start: 4 blocks of glibc's. */
    assert_int_equal(g.first_slot,
                     RCL_SLAB_MIN_DEPTH - rcl__bcache_depth_start(rcl__bcache_class(g.size)));
    assert_int_equal(g.slots, GROW_N - g.first_slot);
    assert_int_equal(test_report_count(), 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
}

/* A small class's list holds the backend's blocks and slots side by side;
 * each goes back where it lives - the backend's to the backend, a slot to
 * its slab - whichever thread frees it, from a list too long for a batch,
 * from the depot, or at a thread's exit. A slot given to the backend
 * would be its abort, a block of its given to a slab a slab's count gone
 * wrong, its region never unmapped. */
enum { MIX_N = 3000, MIX_SIZES = 3 };
/* Three small classes, one of them a block's size in turn, and a block
 * of each above them (its class glibc's alone), so that lists of several
 * classes hold blocks of both homes side by side. */
static const size_t mix_size[MIX_SIZES + 1] = { 24, 100, 200, 600 };
#define MIX_SIZE_OF(i) mix_size[(i) % (MIX_SIZES + 1)]
struct mixed { void **p; pthread_barrier_t *bar; };

static void *mixed_freer(void *arg)
{
    struct mixed *m = arg;
    enum { OWN = 256 };
    void *own[OWN];

    /* Lists of its own grown past what the depot takes whole (over 32 KiB
     * for 100 and 200 B), so that the frees below find them full and give
     * their top batch back to the slabs, a batch of both homes once the
     * owner's first blocks come; the 24-byte list goes to the depot. */
    for (unsigned k = 0; k < MIX_SIZES; k++) {
        for (unsigned i = 0; i < OWN; i++)
            if (!(own[i] = rcl_alloc(mix_size[k], RCL_DEFAULT)))
                return (void *)1;
        for (unsigned i = 0; i < OWN; i++)
            rcl_free(own[i]);
    }
    pthread_barrier_wait(m->bar);
    for (int i = 1; i < MIX_N; i += 2) {
        for (size_t j = 0; j < MIX_SIZE_OF(i); j++)
            if (((unsigned char *)m->p[i])[j] != (unsigned char)i)
                return (void *)2;
        rcl_free(m->p[i]);
    }
    return NULL;
}

static void *mixed_owner(void *arg)
{
    struct mixed *m = arg;
    int slots = 0;

    for (int i = 0; i < MIX_N; i++) {
        if (!(m->p[i] = rcl_alloc(MIX_SIZE_OF(i), RCL_DEFAULT)))
            return (void *)1;
        memset(m->p[i], i & 0xff, MIX_SIZE_OF(i));
        slots += slot_at(m->p[i]);
    }
    /* Both homes in each small class: at most RCL_SLAB_MIN_DEPTH chunks a
     * class, and slots beyond. */
    if (slots < MIX_N * MIX_SIZES / (MIX_SIZES + 1) - MIX_SIZES * (int)RCL_SLAB_MIN_DEPTH ||
        slots == MIX_N * MIX_SIZES / (MIX_SIZES + 1))
        return (void *)3;
    pthread_barrier_wait(m->bar);
    for (int i = MIX_N - 2; i >= 0; i -= 2)
        rcl_free(m->p[i]);
    return NULL;
}

TEST(blocks_of_both_homes_go_back_where_they_live)
{
    if (no_mixed_homes())
        skip();
    pthread_barrier_t bar;
    struct mixed m = { .p = malloc(MIX_N * sizeof(void *)), .bar = &bar };
    pthread_t owner, freer;
    void *r1, *r2;

    assert_non_null(m.p);
    pthread_barrier_init(&bar, NULL, 2);
    assert_int_equal(pthread_create(&owner, NULL, mixed_owner, &m), 0);
    assert_int_equal(pthread_create(&freer, NULL, mixed_freer, &m), 0);
    pthread_join(owner, &r1);
    pthread_join(freer, &r2);
    pthread_barrier_destroy(&bar);
    assert_null(r1);
    assert_null(r2);
    free(m.p);
    assert_int_equal(test_report_count(), 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    rcl_shutdown();
    for (unsigned k = 0; k < MIX_SIZES; k++)
        assert_int_equal(rcl__slab_held(rcl__bcache_class(mix_size[k])), 0);
    assert_int_equal(test_init(64 * MiB), 0);
}

/* A resize keeps a block where it lives where it can: a block of the
 * backend's is the backend's to resize, in a slab class or not; a slot
 * stays only in its own class (1000 B is a slab class's over jemalloc,
 * glibc's own over glibc). Its bytes are kept each way. */
static void *resize_thread(void *arg)
{
    void *live[GROW_N];
    char *p, *q;
    (void)arg;

    if (!(p = rcl_alloc(40, RCL_DEFAULT)) || slot_at(p))
        return (void *)1;                   /* a fresh list: the backend's block */
    memset(p, 0x5a, 40);
    if (!(q = rcl_realloc(p, 100, RCL_DEFAULT)) || slot_at(q) || memcmp(q, "\x5a\x5a\x5a", 3) ||
        q[39] != 0x5a)
        return (void *)2;
    for (int i = 0; i < GROW_N; i++)
        if (!(live[i] = rcl_alloc(200, RCL_DEFAULT)))
            return (void *)3;
    p = live[GROW_N - 1];
    if (!slot_at(p))
        return (void *)4;
    memset(p, 0xa5, 200);
    if (!(live[GROW_N - 1] = rcl_realloc(p, 120, RCL_DEFAULT)) ||
        ((unsigned char *)live[GROW_N - 1])[119] != 0xa5)
        return (void *)5;
    if (!(live[GROW_N - 1] = rcl_realloc(live[GROW_N - 1], 1000, RCL_DEFAULT)) ||
        ((unsigned char *)live[GROW_N - 1])[0] != 0xa5 ||
        slot_at(live[GROW_N - 1]) != rcl__slab_sized(1000))
        return (void *)6;
    for (int i = 0; i < GROW_N; i++)
        rcl_free(live[i]);
    rcl_free(q);
    return NULL;
}

TEST(a_resize_keeps_a_block_where_it_lives)
{
    if (no_mixed_homes())
        skip();
    pthread_t th;
    void *ret;

    assert_int_equal(pthread_create(&th, NULL, resize_thread, NULL), 0);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
    assert_int_equal(test_report_count(), 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
}

static bool not_4k_pages(void)
{
    if (sysconf(_SC_PAGESIZE) == 4096)
        return false;
    print_message("skipped: a trim gives part-used slabs' pages back where pages are 4 KiB "
                  "(src/slab.c)\n");
    return true;
}

/* n blocks of `size` in p, all freed but the first that is a slot - over
 * glibc the first blocks are glibc's chunks - so that its slab stays with
 * one slot in use; its index. */
static int all_freed_but_one_slot(void **p, int n, size_t size)
{
    int keep = -1;

    for (int i = 0; i < n; i++) {
        assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
        keep = keep < 0 && slot_at(p[i]) ? i : keep;
    }
    assert_true(keep >= 0);
    for (int i = 0; i < n; i++)
        if (i != keep)
            rcl_free(p[i]);
    rcl_usage_sync();
    return keep;
}

/* A size of its own for the tests of part-used slabs: a slab class on
 * every backend, 7 KiB slots over mimalloc and jemalloc, 128 B over
 * glibc. */
static size_t part_size(void)
{
    return rcl__slab_sized(7000) ? 7000 : 120;
}

/* Does a page of [lo, hi) lie in no block of `live` (slot and header)? */
static bool page_unused(uintptr_t page, void *const *live, int n, size_t slot)
{
    for (int i = 0; i < n; i++) {
        uintptr_t h = (uintptr_t)rcl__hdr_of(live[i]);

        if (live[i] && h < page + 4096 && page < h + slot)
            return false;
    }
    return true;
}

/*
 * A live set that shrinks to one block in sixteen leaves every slab with
 * a block in use, and the free slots between them resident: a trim that
 * finds a slab untouched since the trim before gives back every page of
 * it that only free slots lie on - all of a span's but its head's page
 * and those a live block lies on - and the live blocks keep their bytes.
 * The kernel's slabs do not (a slab page with one object in use stays);
 * a span of ours is many pages, and madvise() lets it give some back.
 */
TEST(a_trim_gives_back_the_pages_only_free_slots_of_a_slab_in_use_lie_on)
{
    if (not_4k_pages())
        skip();
    enum { N = 2048 };
    size_t size = part_size(), slot = rcl__bcache_cap(rcl__bcache_class(size)) + 16;
    size_t span = rcl__slab_span(rcl__bcache_class(size));
    void **p = calloc(N, sizeof(*p)), **live = calloc(N / 16, sizeof(*live));
    int nlive = 0, checked = 0;

    assert_non_null(p);
    assert_non_null(live);
    for (int i = 0; i < N; i++) {
        assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
        memset(p[i], i & 0xff, size);
    }
    for (int i = 0; i < N; i++)
        if (i % 16 == 0 && slot_at(p[i]))
            live[nlive++] = p[i];
        else
            rcl_free(p[i]);
    rcl_usage_sync();
    rcl__slab_trim();
    rcl__slab_trim();       /* the slabs untouched since the first */
    for (int i = 0; i < nlive; i++) {
        uintptr_t base = (uintptr_t)live[i] & ~(uintptr_t)(span - 1);

        for (uintptr_t a = base + 4096; a < base + span; a += 4096)
            if (page_unused(a, live, nlive, slot)) {
                assert_false(resident(a));
                checked++;
            }
    }
    assert_true(checked > 0);
    for (int i = 0; i < nlive; i++) {
        int was = (int)(((unsigned char *)live[i])[0]);

        for (size_t j = 0; j < size; j++)
            assert_int_equal(((unsigned char *)live[i])[j], was);
    }
    for (int i = 0; i < nlive; i++)
        rcl_free(live[i]);
    free(live);
    free(p);
}

/* A slab a slot of which was taken or given back since the last trim
 * keeps its pages through the next: a cache at its budget frees and
 * allocates in every slab between trims, and a page given back would be
 * faulted in again at once. The trim after, finding it untouched, gives
 * them back. */
TEST(a_slab_used_since_the_last_trim_keeps_its_pages_through_the_next)
{
    if (not_4k_pages())
        skip();
    enum { N = 512 };
    size_t size = part_size(), span = rcl__slab_span(rcl__bcache_class(size));
    void *p[N];
    int keep = all_freed_but_one_slot(p, N, size), last = -1;
    uintptr_t base = (uintptr_t)p[keep] & ~(uintptr_t)(span - 1);

    for (int i = keep + 1; i < N; i++)
        last = (uintptr_t)p[i] - base < span ? i : last;
    assert_true(last > keep);
    rcl__slab_trim();
    /* A block of its slab taken and freed again, back to the slab. */
    void *again = rcl_alloc(size, RCL_DEFAULT);
    assert_non_null(again);
    rcl_free(again);
    rcl_usage_sync();
    rcl__slab_trim();
    assert_true(resident((uintptr_t)rcl__hdr_of(p[last])));
    rcl__slab_trim();
    rcl__slab_trim();
    assert_false(resident((uintptr_t)rcl__hdr_of(p[last])));
    rcl_free(p[keep]);
}

/* A slab a trim parked, whose blocks further up were freed since: the
 * next trims that find it untouched give back their pages too, not only
 * those up to the lowest the first one gave back. */
TEST(a_slab_parked_before_gives_back_the_pages_freed_since)
{
    if (not_4k_pages())
        skip();
    enum { N = 1024 };
    size_t size = part_size(), span = rcl__slab_span(rcl__bcache_class(size));
    void **p = calloc(N, sizeof(*p));
    uintptr_t base = 0, top = 0;
    int keep = -1;

    assert_non_null(p);
    for (int i = 0; i < N; i++)
        assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
    /* The slab of the first slot, and its highest block's header. */
    for (int i = 0; i < N; i++)
        if (keep < 0 && slot_at(p[i])) {
            keep = i;
            base = (uintptr_t)p[i] & ~(uintptr_t)(span - 1);
        }
    assert_true(keep >= 0);
    for (int i = 0; i < N; i++)
        if ((uintptr_t)p[i] - base < span && (uintptr_t)rcl__hdr_of(p[i]) > top)
            top = (uintptr_t)rcl__hdr_of(p[i]);
    /* Its first block and the blocks of its last two pages stay. */
    uintptr_t high = (top & ~(uintptr_t)4095) - 4096;
    for (int i = 0; i < N; i++)
        if (i != keep && ((uintptr_t)p[i] - base >= span || (uintptr_t)p[i] < high)) {
            rcl_free(p[i]);
            p[i] = NULL;
        }
    rcl_usage_sync();
    rcl__slab_trim();
    rcl__slab_trim();       /* untouched since the first: parked */
    assert_true(high - 4096 > base + 4096);
    assert_false(resident(high - 4096));
    for (int i = 0; i < N; i++)
        if (i != keep && p[i]) {
            rcl_free(p[i]);
            p[i] = NULL;
        }
    rcl_usage_sync();
    rcl__slab_trim();
    rcl__slab_trim();       /* untouched since the frees: parked again */
    assert_false(resident(high));
    assert_false(resident(top));
    rcl_free(p[keep]);
    free(p);
}

/* The slots a trim parked with their pages are taken again before any
 * new slab is made, and every one is whole: the live set grows back to
 * its size in the spans it had, its blocks apart from the ones that
 * stayed. */
TEST(slots_whose_pages_a_trim_gave_back_are_taken_again_first)
{
    enum { N = 2048 };
    size_t size = part_size();
    unsigned c = rcl__bcache_class(size);
    void **p = calloc(N, sizeof(*p));

    assert_non_null(p);
    for (int i = 0; i < N; i++)
        assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
    for (int i = 0; i < N; i++)
        if (i % 16) {
            rcl_free(p[i]);
            p[i] = NULL;
        }
    rcl_usage_sync();
    rcl__slab_trim();
    rcl__slab_trim();       /* the slabs untouched since the first */
    size_t held = rcl__slab_held(c);
    for (int i = 0; i < N; i++) {
        if (!p[i])
            assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
        memset(p[i], i & 0xff, size);
    }
    assert_true(rcl__slab_held(c) <= held);
    for (int i = 0; i < N; i++) {
        for (size_t j = 0; j < size; j += 64)
            assert_int_equal(((unsigned char *)p[i])[j], i & 0xff);
        rcl_free(p[i]);
    }
    free(p);
    rcl_usage_sync();
    rcl__slab_trim();
    assert_int_equal(rcl__slab_held(c), 0);
}

/* A block freed again after a trim parked its slot, its page given back:
 * the header reads as a free slot's, and the second free is reported,
 * nothing uncharged twice. */
TEST(a_block_freed_again_after_a_trim_gave_its_page_back_is_reported)
{
    test_skip_if_freed_reads_report();
    if (not_4k_pages())
        skip();
    enum { N = 256 };
    size_t size = part_size();
    void *p[N];
    int keep = all_freed_but_one_slot(p, N, size), victim = -1;

    rcl__slab_trim();
    rcl__slab_trim();       /* the slabs untouched since the first */
    uintptr_t span = rcl__slab_span(rcl__bcache_class(size)), base = (uintptr_t)p[keep] & ~(span - 1);
    for (int i = N - 1; i > keep && victim < 0; i--)
        if ((uintptr_t)p[i] - base < span && !resident((uintptr_t)rcl__hdr_of(p[i])))
            victim = i;
    assert_true(victim > keep);
    size_t before = rcl_usage();
    errno = 0;
    rcl_free(p[victim]);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_reports_have("not a block from this library, or already freed");
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), before);
    rcl_free(p[keep]);
}

/*
 * Trims while threads recycle blocks of every slab class and free each
 * other's: a slot parked with its page, and taken again, is never one in
 * use, and no block loses a byte - each says its size and address in its
 * first 16 bytes and is filled with a byte of its size. Counted in
 * operations, not time, so that a slow run does less of nothing; and
 * each thread waits half way for a trim that began after it started, so
 * that the threads cannot all be done before the trimming thread first
 * runs (two CPUs, three threads: they were, once).
 */
#define T_THREADS 3
#define T_LIVE    256
#define T_OPS     40000

static _Atomic(unsigned char *) t_box[64];
static atomic_int t_running;
static atomic_long t_trims;     /* trims done so far */

static size_t t_size(uint64_t *r)
{
    *r ^= *r << 13;
    *r ^= *r >> 7;
    *r ^= *r << 17;
    size_t n = 16 + *r % 8000;
    return rcl__slab_sized(n) ? n : 16 + n % 241;
}

static unsigned char *t_new(uint64_t *r)
{
    size_t n = t_size(r);
    unsigned char *b = rcl_alloc(n, RCL_DEFAULT);

    if (b) {
        memset(b, (int)(n * 7 & 0xff), n);
        memcpy(b, &n, sizeof(n));
        uintptr_t me = ~(uintptr_t)b;
        memcpy(b + 8, &me, sizeof(me));
    }
    return b;
}

static long t_check_free(unsigned char *b)
{
    size_t n;
    uintptr_t me;
    long bad = 0;

    if (!b)
        return 0;
    memcpy(&n, b, sizeof(n));
    memcpy(&me, b + 8, sizeof(me));
    if (me != ~(uintptr_t)b || n < 16 || n > 8016)
        return 1;
    for (size_t j = 16; j < n; j += 61)
        bad += b[j] != (unsigned char)(n * 7);
    bad += n > 16 && b[n - 1] != (unsigned char)(n * 7);
    rcl_free(b);
    return bad;
}

static void *t_main(void *arg)
{
    uint64_t r = 0x9e3779b97f4a7c15ull * (uintptr_t)arg + 1;
    unsigned char *live[T_LIVE] = { 0 };
    long bad = 0, start = atomic_load(&t_trims);

    for (int i = 0; i < T_OPS; i++) {
        if (i == T_OPS / 2)
            while (atomic_load(&t_trims) < start + 2)
                sched_yield();
        unsigned k = (unsigned)(r % T_LIVE);
        bad += t_check_free(live[k]);
        live[k] = t_new(&r);
        if (i % 4 == 0)         /* one in four goes to another thread */
            bad += t_check_free(atomic_exchange(&t_box[r % 64], t_new(&r)));
    }
    for (int k = 0; k < T_LIVE; k++)
        bad += t_check_free(live[k]);
    rcl_usage_sync();
    atomic_fetch_sub(&t_running, 1);
    return (void *)bad;
}

TEST(trims_while_threads_recycle_and_trade_blocks_lose_no_byte)
{
    pthread_t th[T_THREADS];

    atomic_store(&t_trims, 0);
    atomic_store(&t_running, T_THREADS);
    for (uintptr_t i = 0; i < T_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, t_main, (void *)i), 0);
    while (atomic_load(&t_running) > 0) {
        rcl__slab_trim();
        atomic_fetch_add(&t_trims, 1);
    }
    for (int i = 0; i < T_THREADS; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        assert_int_equal((long)bad, 0);
    }
    for (int i = 0; i < 64; i++)
        assert_int_equal(t_check_free(atomic_exchange(&t_box[i], NULL)), 0);
    assert_true(atomic_load(&t_trims) > 0);
    assert_int_equal(test_report_count(), 0);
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
}

/* Every trim here is a step of the slabs' ageing, which reclaim's trims
 * take a second apart (src/internal.h): a test of part-used slabs trims
 * twice where reclaim would wait. */
static int group_setup(void **state)
{
    (void)state;
    atomic_store(&rcl__slab_park_ns, 0);
    return 0;
}

TEST_MAIN_WITH(group_setup, NULL);
