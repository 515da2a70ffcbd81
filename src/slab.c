/* SPDX-License-Identifier: MIT */
/*
 * slab.c - the slabs: of the larger classes over mimalloc and jemalloc,
 * of the smaller over glibc (slab.h says which, and why).
 *
 * A slab is a span of the backend's (a class of two homes', of a region
 * the library maps: region.c), aligned to its own size, so that a slot finds
 * its slab from its address: a small head at the front, then slots of
 * the class's largest size and a header each. A class's size
 * decides its span: the smallest power of two of at least SLAB_MIN_BYTES
 * that holds SLAB_MIN_SLOTS slots (64 KiB for 256 B to 3.9 KiB slots,
 * 2 MiB for 64 KiB). A span above 64 KiB is doubled, up to
 * SLAB_FIT_BYTES, while a full slab keeps more than a 128th of it
 * resident beyond its slots (page_loss()): the 4 KiB class's slots, a
 * page and a header each, leave most of a page unused at the end of each
 * span, and a live set of them held 1.07x raw mimalloc's memory in 128 KiB
 * spans, 1.04 - 1.06x in 256 KiB and 1.02 - 1.04x in 512 KiB (the classes
 * of 6 - 14 KiB are doubled too). Spans of 64 KiB stay: fitted the same
 * way, the classes below 4 KiB made a mix of sizes hold 3 - 8 % more on
 * mimalloc, not less.
 *
 * A slab gives out its never-used slots in address order, after the ones
 * given back, and so touches its pages only as it fills: a slab of one
 * block is one page or two of resident memory. A slab with a free slot
 * is on its class's list; a full one is on none (its slots come back to
 * it by their address), and one that empties is kept or goes back to
 * the backend (empty_over() says how many are kept). A trim gives the
 * kept ones back, their pages to the system first (rcl__slab_trim()),
 * and the pages of slabs still in use that only free slots lie on
 * (slab_park()).
 *
 * What is charged is unchanged: a block's charge is its class's,
 * whatever holds it, and what a slab holds in free slots is not charged
 * - as the kernel charges a slab's objects to their memory cgroups, and
 * a slab page's free room to none - but is resident memory, which the
 * footprint samples count (footprint.c), as they counted the backend's
 * own class rounding that the slabs replace.
 *
 * A thread fills its lists from a slab of its own, as mimalloc gives
 * each thread its own pages: it takes all the slab's free slots at once,
 * under the lock, then hands them out with no lock at all until they are
 * gone, and takes the next slab. So two threads' blocks do not share a
 * slab - two threads recycling their own live sets of 256 B blocks from
 * the same slabs ran, in some runs, half as fast as from their own, the
 * cache lines at their slots' edges shared between the cores - and a
 * live set larger than a thread's cache takes the lock once a slab, not
 * once a batch: with the free list's next pointers read under the lock,
 * a cache miss each, two threads recycling 4 KiB blocks that way spent
 * most of their time waiting for it. The slots a thread holds count as
 * in use, so its slab stays while it holds them; any thread's free goes
 * back to the slot's slab, which any thread may take again. The thread
 * that holds a slab's never-used slots takes what was given back to it
 * before it carves another (own_refill()), and a thread looking for a
 * slab takes one it took before, where it finds one (own_tag()). What
 * the threads hold apart is one slab's free slots a class each, given
 * back at the thread's cache drain (rcl__slab_disown()).
 *
 * The slabs' lock (below) is taken only when a thread takes a slab, when
 * its cache turns a batch of blocks away, and by the slow paths. Only
 * the regions' lock and the I/O flusher's reserve come after it in the
 * library's order (fork.c), and neither is taken under it: nothing is
 * called under it.
 */
#include "internal.h"
#include "backend.h"
#include "block_cache.h"
#include "list.h"
#include "region.h"
#include "slab.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#define SLAB_MIN_BYTES (64u * 1024)
#define SLAB_MIN_SLOTS 16u
#define SLAB_HEAD      RCL_SLAB_HEAD /* struct slab, rounded to a cache line */
#define SLAB_FIT_BYTES (512u * 1024) /* the largest span doubled for a better fit */
#define SLAB_PAGE      4096u        /* the smallest page: where pages are larger,
                                       spans and batches are fitted as for 4 KiB */
#define PARK_SLOTS     2048u        /* slots of the most a span holds (16 B + a
                                       header in 64 KiB) */
#define PARK_PAGES     512u         /* pages of the largest span, 2 MiB (the
                                       64 KiB class's 16 slots): span_choose() */

struct slab {
    struct rcl_region region;       /* in a region's first span only, slab or
                                       not: the region's head (region.c) */
    struct slab    *prev, *next;    /* on its class's list while it has a free slot */
    struct rcl_hdr *free;           /* slots given back, linked by their headers' next */
    unsigned        used;           /* slots out: with the program, in a cache or
                                       held by a thread (struct rcl_slab_own) */
    unsigned        fresh;          /* slots from here on were never given out */
    unsigned        written;        /* slots below it had a header written once:
                                       their pages are resident, fresh or not */
    uint8_t         cls;
    uint8_t         idle;           /* steps of the trims' ageing in a row that
                                       found no slot of it taken or given back
                                       since the one before (slabs_age()) */
    uint16_t        owner;          /* own_tag() of the thread that took its
                                       slots last, 0 for none */
    uint64_t        parked[PARK_PAGES / 64];
                                    /* a bit per page a trim gave back: the free
                                       slots whose headers lie on it are on no
                                       list (slab_park()) */
};
_Static_assert(sizeof(struct slab) <= SLAB_HEAD, "a slab's head fits before its first slot");
_Static_assert(offsetof(struct slab, region) == 0 && RCL_REGION_SPAN == SLAB_MIN_BYTES,
               "a region's head begins its first span, a slab's spans of two homes");
_Static_assert(SLAB_HEAD % 64 == 0 && SLAB_HEAD < SLAB_PAGE, "the head is lines of the first page");

/*
 * One lock for every class's slabs, held for a few pointer moves. Sets
 * of slabs, one per thread with a lock each, were tried and dropped: a
 * cache of random 256 B - 4 KiB objects freed by other threads left each
 * set's slabs part empty, all of them resident (on mimalloc under a
 * resident-memory budget it kept 4 MiB of 128 where one set keeps 60:
 * tests/test_rss.c's churn). One lock also keeps fork()'s prepare
 * handler within what it may hold. Its holders never wait on anything:
 * it spins before it sleeps (RCL_SPIN_MUTEX_INITIALIZER).
 */
static pthread_mutex_t slab_lock = RCL_SPIN_MUTEX_INITIALIZER;

#define NR_SLAB        (RCL_SLAB_END_CLASS - RCL_SLAB_FIRST_CLASS)

static struct slab_class {
    struct slab *avail;             /* slabs with a free slot */
    struct slab *empty;             /* wholly free slabs kept, linked by next */
    unsigned     nr_slabs;          /* the class's slabs, empty ones included */
    unsigned     nr_empty;
    _Atomic unsigned nr_given;      /* slots on the slabs' free lists: written
                                       under the lock, read without it by a
                                       thread about to carve a never-used one */
    _Atomic unsigned span_shift;    /* log2 of its slabs' span, 0 until a slab
                                       is made; then never changed */
    struct slab *trim_next;         /* the slab on avail a trim ages next, while
                                       it has let go of the lock (class_age()) */
    unsigned     peak[2];           /* the most slabs in use in this window and
                                       in the one before (peak_note()) */
    unsigned long long window;      /* when this window began, rcl__now_ns() */
} classes[NR_SLAB];

/* One trim at a time: it walks a class's slabs by trim_next. Taken before
 * the slabs' lock, and by fork()'s prepare handler so. */
static pthread_mutex_t trim_lock = PTHREAD_MUTEX_INITIALIZER;

static inline void given_add(struct slab_class *k, long n)
{
    wr(k->nr_given, (unsigned)((long)rd(k->nr_given) + n));
}

static inline struct slab_class *class_of(unsigned c)
{
    return &classes[c - RCL_SLAB_FIRST_CLASS];
}

/*
 * Which thread took a slab's slots last, as a tag of its slots' record
 * for the class (nonzero): a slab's head has no room for a pointer, and
 * a slab outlives the threads that took from it; two threads' tags alike
 * cost a preference, no more. A thread that takes a slab takes one it
 * carved before where one of the first SLAB_LOOK it looks at is (slabs
 * with slots given back, then kept empty ones): those slots' lines are
 * likeliest in its own core's cache, as the kernel's slab allocator
 * serves a CPU from its own partial slabs before the node's. Two threads
 * each recycling a live set of 4 KiB blocks took each other's slabs
 * as often as their own, and ran up to a tenth slower for it
 * (docs/bench/patterns.md, "Figures, 2026-12-03, 13:20").
 */
#define SLAB_LOOK 8u

static inline uint16_t own_tag(const struct rcl_slab_own *own)
{
    uintptr_t a = (uintptr_t)own / sizeof(*own);

    return (uint16_t)((a ^ a >> 16) | 1);
}

/* Bytes of each class's spans. */
static _Atomic size_t held_bytes[RCL_BCACHE_CLASSES];

static inline size_t slot_bytes(unsigned c) { return rcl__bcache_cap(c) + HDR; }

/* What a full slab of `span` keeps resident beyond its slots' bytes: its
 * head, and the part of its last slot's last page that no slot uses. */
static size_t page_loss(size_t span, size_t slot)
{
    size_t n = (span - SLAB_HEAD) / slot, end = SLAB_HEAD + n * slot;

    return (end + SLAB_PAGE - 1) / SLAB_PAGE * SLAB_PAGE - n * slot;
}

/* Class c's span (above), worked out when its first slab is made, by
 * whichever thread makes it: the same figures each time. */
static __attribute__((noinline)) unsigned span_choose(unsigned c)
{
    struct slab_class *k = class_of(c);
    size_t slot = slot_bytes(c), span = SLAB_MIN_BYTES;
    unsigned shift;

    while (span < SLAB_HEAD + SLAB_MIN_SLOTS * slot)
        span *= 2;
    while (span > SLAB_MIN_BYTES && span < SLAB_FIT_BYTES && page_loss(span, slot) > span / 128)
        span *= 2;
    shift = (unsigned)__builtin_ctzl(span);
    rcl__assert(span / SLAB_PAGE <= PARK_PAGES && (span - SLAB_HEAD) / slot <= PARK_SLOTS);
    wr(k->span_shift, shift);
    return shift;
}

static inline size_t span_bytes(unsigned c)
{
    unsigned shift = rd(class_of(c)->span_shift);

    return (size_t)1 << (likely(shift) ? shift : span_choose(c));
}

static inline unsigned slots(unsigned c)
{
    return (unsigned)((span_bytes(c) - SLAB_HEAD) / slot_bytes(c));
}

static inline struct slab *slab_of(const struct rcl_hdr *h, unsigned c)
{
    return (struct slab *)((uintptr_t)h & ~(uintptr_t)(span_bytes(c) - 1));
}

static inline struct rcl_hdr *slot(struct slab *s, unsigned c, unsigned i)
{
    return (struct rcl_hdr *)((char *)s + SLAB_HEAD + (size_t)i * slot_bytes(c));
}

static void list_add(struct slab_class *k, struct slab *s)
{
    LIST_PUSH(k->avail, s);
}

static void list_del(struct slab_class *k, struct slab *s)
{
    if (unlikely(k->trim_next == s))
        k->trim_next = s->next;
    LIST_DEL(k->avail, s);
}

/* A span of class c's: a region's for a class of two homes (slab.h), else
 * the backend's. */
static void *span_get(unsigned c, size_t bytes)
{
    if (!rcl__slab_mixed(c))
        return rcl__be_memalign(bytes, bytes);
    rcl__assert(bytes == RCL_REGION_SPAN);
    return rcl__region_span_get();
}

/* With `to_system`, the span's pages go back to the system first. */
static void span_put(unsigned c, void *s, size_t bytes, bool to_system)
{
    if (!rcl__slab_mixed(c)) {
        if (to_system)
            madvise(s, bytes, MADV_DONTNEED);
        rcl__be_free(s);
        return;
    }
    rcl__assert(bytes == RCL_REGION_SPAN);
    rcl__region_span_put(s, to_system);
}

/* A new slab of class c, its slots poisoned but for the headers written
 * as they are given out. Outside the lock: the backend's call is
 * the slow part. */
static struct slab *slab_new(unsigned c)
{
    struct slab *s = span_get(c, span_bytes(c));

    if (!s)
        return NULL;
    s->prev = s->next = NULL;
    s->free = NULL;
    s->used = 0;
    s->fresh = 0;
    s->written = 0;
    s->cls = (uint8_t)c;
    s->idle = 0;
    s->owner = 0;
    memset(s->parked, 0, sizeof(s->parked));
    rcl__poison(slot(s, c, 0), span_bytes(c) - SLAB_HEAD);
    atomic_fetch_add(&held_bytes[c], span_bytes(c));
    return s;
}

/* A slab back to the backend; with `to_system`, its pages back to the
 * system first (rcl__slab_trim() says when). */
static void slab_delete(struct slab *s, unsigned c, bool to_system)
{
    rcl__assert(s->used == 0 && s->cls == c);
    atomic_fetch_sub(&held_bytes[c], span_bytes(c));
    rcl__unpoison(s, span_bytes(c));
    span_put(c, s, span_bytes(c), to_system);
}

/*
 * Pages of slabs still in use back to the system, at a trim. A slab that
 * keeps one slot in use keeps its span, and its free slots are linked
 * through their headers, which lie on nearly every page of it: a live
 * set that shrank from 256 MiB of 4 KiB blocks to one in sixteen gave
 * nothing back over mimalloc and jemalloc before (docs/bench/footprint.md).
 * So a trim gives back every page that only free slots lie on, and the
 * free slots whose headers are on such a page leave the slab's free list
 * for the page's bit in parked[] until a take needs them (slab_unpark()).
 * A parked slot's header reads zeros, as the page does: its meta is a
 * free slot's, and a second free of it is reported as any other. Pages
 * are 4 KiB where this is done; with larger ones a trim leaves part-used
 * slabs as they are.
 *
 * Only a slab no slot of which was taken or given back for a while: a
 * page given back and then needed again is a page fault and a page
 * zeroed, and a cache held at its budget frees and allocates in its
 * slabs all the time. Parking every slab at every trim, a 64 MiB cache of
 * 4 KiB values (tests/progs/kv_cache) ran a third of the operations it
 * runs without (0.62 - 0.73 M in 8 s against 1.78 - 2.09 M over mimalloc
 * and jemalloc), trimmed every few milliseconds, and parking a slab
 * untouched since the trim before, 0.85 - 0.94x, with 3.7 times the
 * madvise() calls. So the trims age the slabs in steps at least
 * rcl__slab_park_ns apart (a second; internal.h), and park a slab a step
 * found untouched since the one before - as jemalloc gives pages back
 * once they stayed unused for its decay time.
 */
#define IDLE_PARK   1u              /* a step found it untouched: the next parks it */
#define IDLE_PARKED 2u              /* parked, untouched since: the steps pass it by */

static inline bool parked_page(const struct slab *s, unsigned p)
{
    return s->parked[p / 64] >> (p % 64) & 1;
}

/* The first slot whose header lies on page p of its span, or after it
 * (p >= 1: the head fills the start of page 0). */
static inline unsigned first_hdr_on(unsigned c, unsigned p)
{
    size_t off = (size_t)p * SLAB_PAGE - SLAB_HEAD, sb = slot_bytes(c);

    return (unsigned)((off + sb - 1) / sb);
}

/* The slot page p's first byte lies in (p >= 1). */
static inline unsigned slot_at(unsigned c, unsigned p)
{
    return (unsigned)(((size_t)p * SLAB_PAGE - SLAB_HEAD) / slot_bytes(c));
}

static inline unsigned hdr_page(unsigned c, unsigned i)
{
    return (unsigned)((SLAB_HEAD + (size_t)i * slot_bytes(c)) / SLAB_PAGE);
}

static void free_push(struct slab *s, struct rcl_hdr *h)
{
    rcl__unpoison(h, HDR);
    h->next = s->free;
    s->free = h;
    s->idle = 0;
    rcl__poison(h, HDR);
}

/* Slab s's parked slots back on its free list, with the lock held, before
 * anything takes from it: its takes count on the list's holding every
 * free slot below s->fresh (own_take_given()). Their links make their
 * headers' pages resident again; the slab is in use again, and its
 * slots will be. */
static void slab_unpark(struct slab *s, unsigned c)
{
    for (unsigned w = 0; w < PARK_PAGES / 64; w++)
        while (s->parked[w]) {
            unsigned p = w * 64 + (unsigned)__builtin_ctzll(s->parked[w]);
            unsigned end = first_hdr_on(c, p + 1) < s->fresh ? first_hdr_on(c, p + 1) : s->fresh;

            s->parked[w] &= s->parked[w] - 1;
            for (unsigned i = first_hdr_on(c, p); i < end; i++) {
                rcl__unpoison(slot(s, c, i), HDR);
                rcl__assert(slot(s, c, i)->meta == 0);
                free_push(s, slot(s, c, i));
            }
        }
}

/* Slab s's free slots, with the lock held: those on its list, parked, or
 * never used. */
static void free_slots(const struct slab *s, unsigned c, uint64_t *map)
{
    uintptr_t first = (uintptr_t)slot((struct slab *)s, c, 0);
    unsigned n = slots(c);

    memset(map, 0, PARK_SLOTS / 8);
    for (struct rcl_hdr *h = s->free, *next; h; h = next) {
        unsigned i = (unsigned)(((uintptr_t)h - first) / slot_bytes(c));

        rcl__unpoison(h, HDR);
        next = h->next;
        rcl__poison(h, HDR);
        map[i / 64] |= (uint64_t)1 << (i % 64);
    }
    for (unsigned i = 0; i < n; i++)
        if (i >= s->fresh || parked_page(s, hdr_page(c, i)))
            map[i / 64] |= (uint64_t)1 << (i % 64);
}

static inline bool map_has(const uint64_t *map, unsigned i)
{
    return map[i / 64] >> (i % 64) & 1;
}

/* The pages of slab s that only free slots lie on back to the system,
 * with the lock held - so that no take unparks a slot while its page is
 * given back - and its list rebuilt without the slots they park. Every
 * page its slots lie on, not only those below `written`: a park lowers it
 * to the first page it gives back, and the slots above that were in use
 * then, resident, may all be free by the next. Pages no slot was ever
 * carved on join the run they lie in, at no cost of their own. */
static void slab_park(struct slab *s, unsigned c)
{
    uint64_t map[PARK_SLOTS / 64];
    unsigned n = slots(c), run = 0;
    unsigned pages = (unsigned)((SLAB_HEAD + (size_t)n * slot_bytes(c) + SLAB_PAGE - 1) / SLAB_PAGE);

    free_slots(s, c, map);
    for (unsigned p = 1; p <= pages; p++) {
        /* The slots page p overlaps, [lo, end); those from hdr have their
         * headers on it. */
        unsigned lo = slot_at(c, p), hdr = first_hdr_on(c, p), end = first_hdr_on(c, p + 1);
        bool all_free = p < pages;

        for (unsigned i = lo; all_free && i < n && i < end; i++)
            all_free = map_has(map, i);
        if (all_free) {
            run++;
            /* Below written, every slot's pages are resident (struct slab). */
            if (s->written > lo)
                s->written = lo;
            if (hdr < end && hdr < s->fresh)
                s->parked[p / 64] |= (uint64_t)1 << (p % 64);
        } else if (run) {
            madvise((char *)s + (size_t)(p - run) * SLAB_PAGE, (size_t)run * SLAB_PAGE,
                    MADV_DONTNEED);
            run = 0;
        }
    }
    s->free = NULL;
    for (unsigned i = s->fresh; i-- > 0;)
        if (map_has(map, i) && !parked_page(s, hdr_page(c, i)))
            free_push(s, slot(s, c, i));
    s->idle = IDLE_PARKED;
}

/* A free slot of slab s, with the lock held: one given back, else the
 * next never used. */
static struct rcl_hdr *slot_take(struct slab_class *k, struct slab *s, unsigned c)
{
    struct rcl_hdr *h;

    s->idle = 0;
    if (!s->free)
        slab_unpark(s, c);
    if ((h = s->free) != NULL) {
        rcl__unpoison(h, HDR);
        s->free = h->next;
        given_add(k, -1);
    } else {
        rcl__assert(s->fresh < slots(c));
        h = slot(s, c, s->fresh++);
        rcl__unpoison(h, HDR);
        if (s->written < s->fresh)
            s->written = s->fresh;
    }
    if (++s->used == slots(c))
        list_del(k, s);
    return h;
}

_Atomic unsigned long long rcl__slab_keep_ns = 1000000000ull;

/* The class's slabs in use noted, with the lock held, wherever their
 * number rises and where one empties: the most of this window, which
 * ends rcl__slab_keep_ns after it began, and of the one before, which
 * a window's end forgets. */
static void peak_note(struct slab_class *k)
{
    unsigned long long now = rcl__now_ns(), span = rd(rcl__slab_keep_ns);
    unsigned in_use = k->nr_slabs - k->nr_empty;

    if (now - k->window >= span) {
        k->peak[1] = now - k->window < 2 * span ? k->peak[0] : 0;
        k->peak[0] = 0;
        k->window = now;
    }
    if (in_use > k->peak[0])
        k->peak[0] = in_use;
}

/* A kept empty slab off the class's list of them, with the lock held:
 * the one `tag` took last, of the first SLAB_LOOK, if there is one
 * (own_tag()), else the first, or NULL where `mine` asks for the
 * thread's own only. */
static struct slab *empty_take(struct slab_class *k, uint16_t tag, bool mine)
{
    struct slab **pick = mine ? NULL : &k->empty, *s;
    unsigned i = 0;

    for (struct slab **l = &k->empty; *l && i < SLAB_LOOK; l = &(*l)->next, i++)
        if ((*l)->owner == tag) {
            pick = l;
            break;
        }
    if (!pick || !*pick)
        return NULL;
    s = *pick;
    *pick = s->next;
    k->nr_empty--;
    list_add(k, s);
    peak_note(k);
    return s;
}

/* The class's first slab with a free slot, else a kept one (empty_take()),
 * else a new one made if `make`; NULL if none. Called and returns with
 * the lock held. */
static struct slab *slab_avail(struct slab_class *k, unsigned c, bool make, uint16_t tag)
{
    struct slab *s = k->avail;

    if (s)
        return s;
    if (k->empty)
        return empty_take(k, tag, false);
    if (!make)
        return NULL;
    pthread_mutex_unlock(&slab_lock);
    s = slab_new(c);
    pthread_mutex_lock(&slab_lock);
    if (s) {
        k->nr_slabs++;
        list_add(k, s);
        peak_note(k);
    }
    return s;
}

struct rcl_hdr *rcl__slab_get(unsigned c)
{
    struct slab_class *k = class_of(c);
    struct rcl_hdr *h = NULL;
    struct slab *s;

    rcl__assert(rcl__slab_class(c) && c < RCL_BCACHE_CLASSES);
    /* A thread without lists holds no slots and has no tag: 0, which no
     * thread's is, prefers a kept slab no thread took. */
    pthread_mutex_lock(&slab_lock);
    if ((s = slab_avail(k, c, true, 0)) != NULL)
        h = slot_take(k, s, c);
    pthread_mutex_unlock(&slab_lock);
    return h;
}

static struct slab *slab_unuse(struct slab_class *k, struct slab *s, unsigned n);
static void slabs_delete(struct slab *s, unsigned c);

/* One of the class's first SLAB_LOOK slabs with slots given back, other
 * than `not` - the one `tag` took last if there is one (own_tag()), else
 * the first, or NULL where `mine` asks for the thread's own only - with
 * the lock held; NULL if none. */
static struct slab *slab_given(struct slab_class *k, const struct slab *not, uint16_t tag,
                               bool mine)
{
    struct slab *s = k->avail, *first = NULL;

    for (unsigned i = 0; s && i < SLAB_LOOK; i++, s = s->next)
        if (s->free && s != not) {
            if (s->owner == tag)
                return s;
            if (!first)
                first = s;
        }
    return mine ? NULL : first;
}

/* A thread (`own`, holding no slot given back) takes those given back to
 * slab s, with the lock held: s then has no free slot but the never-used
 * ones, and is off the class's list. */
static void own_take_given(struct slab_class *k, struct rcl_slab_own *own, struct slab *s)
{
    rcl__assert(!own->nr_free && s->free);
    list_del(k, s);
    own->free = s->free;
    own->nr_free = s->fresh - s->used;
    given_add(k, -(long)own->nr_free);
    s->free = NULL;
    s->used = s->fresh;
}

/* A thread takes every free slot of slab s (on the class's list) - `own`
 * held none - with the lock held: the slots given back, as a list, and
 * the never-used ones, as a range. The slab is then full as far as the
 * others can tell. */
static void own_take(struct slab_class *k, unsigned c, struct rcl_slab_own *own,
                     struct slab *s)
{
    rcl__assert(!own->nr_free && own->fresh == own->end && s->used < slots(c));
    slab_unpark(s, c);
    if (s->free)
        own_take_given(k, own, s);
    else
        list_del(k, s);
    own->slab = s;
    s->owner = own_tag(own);
    own->fresh = s->fresh;
    own->end = slots(c);
    own->written = s->written;
    /* As if the thread carves them all, until it gives some back. */
    s->fresh = s->used = s->written = slots(c);
}

/* The never-used slots a thread holds back to their slab, as its tail,
 * which they still are (a slab's never-used slots are held by one thread
 * at most), with the lock held; see slab_unuse() for what it returns. */
static struct slab *own_give_fresh(struct slab_class *k, struct rcl_slab_own *own)
{
    struct slab *s = own->slab;
    unsigned n = own->end - own->fresh;

    rcl__assert(n && s->fresh == own->end);
    s->fresh = own->fresh;
    s->written = own->fresh > own->written ? own->fresh : own->written;
    s->idle = 0;
    own->end = own->fresh;
    return slab_unuse(k, s, n);
}

/*
 * Where a thread's next slots come from when those it holds are gone or
 * are never-used ones only, with the lock held. First the slots given
 * back to the slab it carves, then those of another slab it took last
 * (own_tag()). Then, holding never-used slots - which are not resident,
 * or it would carve them with no look (rcl__slab_get_many()) - another
 * thread's given-back slots, resident, before a never-used slot makes
 * one more page so. Holding none, it takes a kept empty slab it took
 * last, then another thread's given-back slots, then any slab with a
 * free slot, a kept one, or a new one, made only if `make`. Its own slabs
 * come before the others' because their lines are likeliest in its own
 * core's cache: two threads each recycling a live set of 4 KiB blocks,
 * taking each other's given-back slots first, took 1.4 - 1.8x the CPU
 * time a pair takes now over mimalloc (docs/bench/patterns.md, "Figures,
 * 2026-12-04, 22:30"). False if there is none; *gone is a slab the
 * caller deletes (slab_unuse()).
 */
static bool own_refill(struct slab_class *k, unsigned c, struct rcl_slab_own *own, bool make,
                       struct slab **gone)
{
    uint16_t tag = own_tag(own);
    bool holds = own->fresh < own->end;
    struct slab *s;

    *gone = NULL;
    if (holds) {
        rcl__assert(own->slab->fresh == own->end);
        slab_unpark(own->slab, c);
        if (own->slab->free) {
            own_take_given(k, own, own->slab);
            return true;
        }
        if (!(s = slab_given(k, own->slab, tag, false)))
            return true;
        *gone = own_give_fresh(k, own);
    } else if (!(s = slab_given(k, NULL, tag, true)) && !(s = empty_take(k, tag, true)) &&
               !(s = slab_given(k, NULL, tag, false)) && !(s = slab_avail(k, c, make, tag))) {
        return false;
    }
    own_take(k, c, own, s);
    return true;
}

/* The next of the slots the thread holds - one given back, else a
 * never-used one - with no lock: they are the thread's alone. */
static struct rcl_hdr *own_next(struct rcl_slab_own *own, unsigned c)
{
    struct rcl_hdr *h = own->free;

    rcl__assert(h || own->fresh < own->end);
    if (h) {
        rcl__unpoison(h, HDR);
        own->free = h->next;
        own->nr_free--;
    } else {
        h = slot(own->slab, c, own->fresh++);
        rcl__unpoison(h, HDR);
    }
    return h;
}

static inline uintptr_t page_of(const void *p)
{
    return (uintptr_t)p / SLAB_PAGE;
}

unsigned rcl__slab_get_many(unsigned c, struct rcl_hdr **out, unsigned n,
                            struct rcl_slab_own *own)
{
    struct slab_class *k = class_of(c);
    bool checked = false;
    unsigned got = 0;

    rcl__assert(rcl__slab_class(c) && c < RCL_BCACHE_CLASSES && n >= 1);
    while (got < n) {
        /* Never-used slots that are resident, carved before, with no
         * look at the others; ones that are not only while nothing was
         * given back (own_refill()): the count is read without the lock,
         * and looked into under it once a batch. A new slab from the
         * backend for the first slot only: the others are a batch's
         * extras, not worth the call. */
        if (!own->nr_free && (own->fresh == own->end ||
                              (!checked && own->fresh >= own->written && rd(k->nr_given)))) {
            struct slab *gone;

            pthread_mutex_lock(&slab_lock);
            bool more = own_refill(k, c, own, got == 0, &gone);
            pthread_mutex_unlock(&slab_lock);
            slabs_delete(gone, c);
            if (!more)
                break;
            checked = true;
        }
        /* Listing a slot never carved writes its header, and so makes its
         * page resident: beyond a batch's first slot, only on the page the
         * slot before it made so (a slab carved anew, kept after it
         * emptied, is resident as far as it was carved before). A class
         * asked for once a while (a mix of sizes in a small live set) then
         * holds a page, not a batch's 16 KiB; what is carved block by
         * block anyway - 4 KiB and larger slots, whose every header has a
         * page of its own - meets a page fault at each block, beside
         * which the extra call is small. */
        if (got && !own->free && own->fresh >= own->written &&
            page_of(slot(own->slab, c, own->fresh)) != page_of(out[got - 1]))
            break;
        out[got++] = own_next(own, c);
    }
    return got;
}

/*
 * The kept empty slabs beyond what the class may keep, off its list of
 * them and linked by next, for the caller to delete; NULL if none. With
 * the lock held. A class keeps as many slabs, empty ones included, as it
 * had in use at most in the last one or two windows (peak_note()), and
 * at least as many empty ones as it has others in use, one at least. A
 * live set that rises and falls - a batch of requests served and freed,
 * a FIFO of blocks - finds its slabs again rather than asking the backend
 * for them each time, while what stays empty after it shrinks for good
 * goes at the next slab to empty once its peak is forgotten, and a trim
 * gives back every one. With half of them kept, as many as were in use,
 * two threads recycling 4 KiB x 4096 over jemalloc gave the other half
 * back at every pass and asked for them again, which jemalloc purged in
 * between at times: 50 - 123 ns a pair, up to 2.8x raw jemalloc's CPU
 * time, where they run at 26 - 42 ns with their recent peak kept
 * (docs/bench/patterns.md, "Figures, 2026-12-05, 01:10").
 */
static struct slab *empty_over(struct slab_class *k)
{
    unsigned in_use = k->nr_slabs - k->nr_empty;
    unsigned keep = k->peak[0] > k->peak[1] ? k->peak[0] : k->peak[1];
    unsigned least = in_use + (in_use > 1 ? in_use : 1);
    struct slab *gone = NULL;

    if (keep < least)
        keep = least;
    while (k->nr_slabs > keep) {
        struct slab *s = k->empty;

        rcl__assert(s && k->nr_empty > 0);
        k->empty = s->next;
        k->nr_empty--;
        k->nr_slabs--;
        s->next = gone;
        gone = s;
    }
    return gone;
}

/*
 * n of slab s's slots are no longer out, with the lock held. A slab that
 * empties is kept, carved anew, in address order, as a new one is; the
 * slabs kept beyond what the class may keep, for the caller to delete
 * (empty_over()).
 */
static struct slab *slab_unuse(struct slab_class *k, struct slab *s, unsigned n)
{
    rcl__assert(s->used >= n && n > 0);
    if (s->used == slots(s->cls))
        list_add(k, s);
    s->used -= n;
    if (s->used)
        return NULL;
    list_del(k, s);
    given_add(k, -(long)s->fresh);      /* every slot carved is on its free list */
    peak_note(k);
    s->free = NULL;
    s->fresh = 0;
    s->idle = 0;
    memset(s->parked, 0, sizeof(s->parked));
    s->next = k->empty;
    k->empty = s;
    k->nr_empty++;
    return empty_over(k);
}

/* Slabs back to the backend, linked by next: those that slab_unuse()
 * and the calls made of it found beyond what their class keeps. */
static void slabs_delete(struct slab *s, unsigned c)
{
    while (s) {
        struct slab *next = s->next;

        slab_delete(s, c, false);
        s = next;
    }
}

/*
 * Slots of one slab going back together, a run of a batch: the slots of
 * a live set freed in the order it was allocated lie side by side. A
 * run is chained through its headers before the lock is taken, and only
 * its last link is written under it, so the lock is held for a few
 * stores a slab, not a header's cache line a slot: two threads giving
 * back 4 KiB blocks each waited out the other's misses under it. Until
 * the run is put, its slab counts its slots as out, so nobody else
 * writes their headers.
 */
struct slot_run {
    struct slab    *slab;           /* then, put: the slab if it emptied for
                                       the caller to delete, else NULL */
    struct rcl_hdr *first, *last;
    unsigned        n;
};

static unsigned runs_make(unsigned c, struct rcl_hdr **hs, unsigned n, struct slot_run *runs)
{
    unsigned nr = 0;

    for (unsigned i = 0; i < n; i++) {
        struct rcl_hdr *h = hs[i];
        struct slab *s = slab_of(h, c);
        struct slot_run *r = &runs[nr ? nr - 1 : 0];

        rcl__assert(s->cls == c);
        rcl__assert(((uintptr_t)h - (uintptr_t)slot(s, c, 0)) % slot_bytes(c) == 0);
        h->meta = 0;
        if (nr && r->slab == s) {
            h->next = r->first;
            r->first = h;
            r->n++;
            rcl__poison(h, slot_bytes(c));
        } else {
            h->next = NULL;
            runs[nr++] = (struct slot_run){ .slab = s, .first = h, .last = h, .n = 1 };
        }
    }
    return nr;
}

/* A run back to its slab, with the lock held: the last link, and its
 * poison, only now, when the slab's free list is known. */
static void run_put(struct slab_class *k, struct slot_run *r, unsigned c)
{
    struct slab *s = r->slab;

    rcl__assert(s->used >= r->n);
    r->last->next = s->free;
    rcl__poison(r->last, slot_bytes(c));
    s->free = r->first;
    s->idle = 0;
    given_add(k, r->n);
    r->slab = slab_unuse(k, s, r->n);
}

static void runs_put(unsigned c, struct slot_run *runs, unsigned nr)
{
    struct slab_class *k = class_of(c);

    pthread_mutex_lock(&slab_lock);
    for (unsigned i = 0; i < nr; i++)
        run_put(k, &runs[i], c);
    pthread_mutex_unlock(&slab_lock);
    for (unsigned i = 0; i < nr; i++)
        slabs_delete(runs[i].slab, c);
}

void rcl__slab_put_many(unsigned c, struct rcl_hdr **hs, unsigned n)
{
    struct slot_run runs[RCL_SLAB_SPILL];

    rcl__assert(rcl__slab_class(c) && c < RCL_BCACHE_CLASSES && n <= RCL_SLAB_SPILL);
    runs_put(c, runs, runs_make(c, hs, n, runs));
}

/* One slot, on a stack that may be a signal handler's (block_delete(),
 * from alloc_signal.c): no batch's room. */
void rcl__slab_put(struct rcl_hdr *h, unsigned c)
{
    struct slot_run run;

    rcl__assert(rcl__slab_class(c) && c < RCL_BCACHE_CLASSES);
    runs_put(c, &run, runs_make(c, &h, 1, &run));
}

/* The never-used slots go back as the slab's tail, which they still are:
 * a slab's never-used slots are held by one thread at most. */
void rcl__slab_disown(struct rcl_slab_own *own)
{
    for (unsigned c = RCL_SLAB_FIRST_CLASS; c < RCL_SLAB_END_CLASS; c++) {
        struct rcl_slab_own *o = &own[c + 1];
        unsigned n = o->nr_free + (o->end - o->fresh);
        struct slab *s = o->slab, *gone;

        if (!n)
            continue;
        pthread_mutex_lock(&slab_lock);
        for (struct rcl_hdr *h = o->free, *next; h; h = next) {
            rcl__unpoison(h, HDR);
            next = h->next;
            rcl__poison(h, HDR);
            free_push(s, h);
        }
        given_add(class_of(c), o->nr_free);
        /* Only the last of the two can empty the slab: while the thread
         * holds never-used slots, they keep it in use. */
        gone = o->nr_free ? slab_unuse(class_of(c), s, o->nr_free) : NULL;
        if (o->fresh < o->end) {
            rcl__assert(!gone);
            gone = own_give_fresh(class_of(c), o);
        }
        pthread_mutex_unlock(&slab_lock);
        *o = (struct rcl_slab_own){ 0 };
        slabs_delete(gone, c);
    }
}

_Atomic unsigned long long rcl__slab_park_ns = 1000000000ull;

/* Class c's slabs in use a step older (above), with the trim lock held.
 * The slabs' lock is let go between slabs, so that a trim of 256 MiB of
 * them (a quarter of a second) holds up no thread for longer than a slab
 * takes; the next slab is kept by trim_next, which a slab leaving the
 * list passes on. */
static void class_age(struct slab_class *k, unsigned c)
{
    pthread_mutex_lock(&slab_lock);
    for (struct slab *s = k->avail; s; s = k->trim_next) {
        k->trim_next = s->next;
        if (s->idle < IDLE_PARK) {
            s->idle++;
            continue;
        }
        if (s->idle == IDLE_PARKED)
            continue;
        slab_park(s, c);
        pthread_mutex_unlock(&slab_lock);
        pthread_mutex_lock(&slab_lock);
    }
    pthread_mutex_unlock(&slab_lock);
}

/* A step at most every rcl__slab_park_ns: a slab is parked once no slot
 * of it was taken or given back for a step, between one and two of
 * them. */
static void slabs_age(void)
{
    static unsigned long long last;

    if (rcl__page_size() != SLAB_PAGE)
        return;
    pthread_mutex_lock(&trim_lock);
    unsigned long long now = rcl__now_ns();
    if (!last || now - last >= rd(rcl__slab_park_ns)) {
        last = now;
        for (unsigned c = RCL_SLAB_FIRST_CLASS; c < RCL_SLAB_END_CLASS; c++)
            class_age(class_of(c), c);
    }
    pthread_mutex_unlock(&trim_lock);
}

void rcl__slab_trim(void)
{
    slabs_age();
    for (unsigned c = RCL_SLAB_FIRST_CLASS; c < RCL_SLAB_END_CLASS; c++) {
        struct slab_class *k = class_of(c);
        struct slab *s;

        pthread_mutex_lock(&slab_lock);
        s = k->empty;
        k->empty = NULL;
        k->nr_slabs -= k->nr_empty;
        k->nr_empty = 0;
        k->peak[0] = k->peak[1] = k->nr_slabs;     /* what it gave back is forgotten */
        pthread_mutex_unlock(&slab_lock);
        while (s) {
            struct slab *next = s->next;
            /* Its pages back to the system first: the trim is for that,
             * and a backend need not give a freed span's pages back at
             * all (mimalloc keeps the large pages of its segments
             * committed, and mi_collect() leaves them so). A slab given
             * back outside a trim, past its class's peak, keeps its pages
             * warm for the backend's next use: when a class kept half its
             * slabs, a live set recycled beyond the caches deleted and
             * made slabs on every pass (4 KiB x 4096 ran at up to 1.2x
             * raw mimalloc's CPU time with their pages given back each
             * time). */
            slab_delete(s, c, true);
            s = next;
        }
    }
}

size_t rcl__slab_span(unsigned c)
{
    return span_bytes(c);
}

size_t rcl__slab_held(unsigned c)
{
    return atomic_load_explicit(&held_bytes[c], memory_order_relaxed);
}

/* fork(): the child keeps the slabs as they are - its blocks are in them -
 * consistent since no thread was inside. The slots the other threads
 * held stay out in the child, as their cached blocks do. */
void rcl__slab_atfork_prepare(void)
{
    pthread_mutex_lock(&trim_lock);
    pthread_mutex_lock(&slab_lock);
}

void rcl__slab_atfork_parent(void)
{
    pthread_mutex_unlock(&slab_lock);
    pthread_mutex_unlock(&trim_lock);
}

void rcl__slab_atfork_child(void)
{
    rcl__slab_atfork_parent();
}
