/* SPDX-License-Identifier: MIT */
/*
 * slab.c - the slabs of the larger classes (slab.h says which, and why).
 *
 * A slab is a span of the backend's, aligned to its own size, so that a
 * slot finds its slab from its address: a small head at the front, then
 * slots of the class's largest size and a header each. A class's size
 * decides its span: the smallest power of two of at least SLAB_MIN_BYTES
 * that holds SLAB_MIN_SLOTS slots, so that the span's head and its tail,
 * which no slot fills, cost at most a few per cent (64 KiB for 256 B to
 * 3.9 KiB slots, 2 MiB for 64 KiB).
 *
 * A slab gives out its never-used slots in address order, after the ones
 * given back, and so touches its pages only as it fills: a slab of one
 * block is one page or two of resident memory. A slab with a free slot
 * is on its class's list; a full one is on none (its slots come back to
 * it by their address), and one that empties goes back to the backend,
 * but for one a class keeps, so that a class whose live set rises and
 * falls across a slab's edge does not ask the backend each time. A trim
 * gives the kept ones back too.
 *
 * What is charged is unchanged: a block's charge is its class's,
 * whatever holds it, and what a slab holds in free slots is not charged
 * - as the kernel charges a slab's objects to their memory cgroups, and
 * a slab page's free room to none - but is resident memory, which the
 * footprint samples count (footprint.c), as they counted the backend's
 * own class rounding that the slabs replace.
 *
 * The slabs' lock (below) is taken only when a thread's cache misses or
 * turns a block away, for a batch at a time. It is the last of the
 * library's order (fork.c): nothing is called under it.
 */
#include "internal.h"
#include "backend.h"
#include "block_cache.h"
#include "slab.h"

#include <pthread.h>
#include <stdbool.h>

#define SLAB_MIN_BYTES (64u * 1024)
#define SLAB_MIN_SLOTS 16u
#define SLAB_HEAD      64u          /* struct slab, rounded to a cache line */

struct slab {
    struct slab    *prev, *next;    /* on its class's list while it has a free slot */
    struct rcl_hdr *free;           /* slots given back, linked by their headers' next */
    unsigned        used;           /* slots out: with the program or in a cache */
    unsigned        fresh;          /* slots from here on were never given out */
    unsigned        cls;
};
_Static_assert(sizeof(struct slab) <= SLAB_HEAD, "a slab's head fits before its first slot");

/*
 * One lock for every class's slabs. It is taken once a batch - when a
 * thread's list is empty, or full and longer than a batch - so seldom
 * that sharing it costs less than what the alternative was seen to cost:
 * slabs in sets, one per thread, kept threads from carving the same slab
 * (two threads recycling their own live sets of 256 B blocks side by side
 * in slabs run, in some runs, three times slower than one, their cache
 * lines bouncing between the cores), but a cache of random 256 B - 4 KiB
 * objects freed by other threads then left each set's slabs part empty,
 * all of them resident: on mimalloc under a resident-memory budget it
 * kept 4 MiB of 128 where one set keeps 60 (tests/test_rss.c's churn).
 * One lock also keeps fork()'s prepare handler within what it may hold.
 */
#define NR_SLAB        (RCL_BCACHE_CLASSES - RCL_SLAB_FIRST_CLASS)

static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;

static struct slab_class {
    struct slab *avail;             /* slabs with a free slot */
    struct slab *spare;             /* a wholly free slab kept */
} classes[NR_SLAB];

static inline struct slab_class *class_of(unsigned c)
{
    return &classes[c - RCL_SLAB_FIRST_CLASS];
}

/* Bytes of each class's spans. */
static _Atomic size_t held_bytes[RCL_BCACHE_CLASSES];

static inline size_t slot_bytes(unsigned c) { return rcl__bcache_cap(c) + HDR; }

static inline size_t span_bytes(unsigned c)
{
    size_t need = SLAB_HEAD + SLAB_MIN_SLOTS * slot_bytes(c);
    if (need <= SLAB_MIN_BYTES)
        return SLAB_MIN_BYTES;
    return (size_t)1 << (64 - __builtin_clzl(need - 1));
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
    s->prev = NULL;
    s->next = k->avail;
    if (k->avail)
        k->avail->prev = s;
    k->avail = s;
}

static void list_del(struct slab_class *k, struct slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        k->avail = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

/* A new slab of class c, its slots poisoned but for the headers written
 * as they are given out. Outside the lock: the backend's call is
 * the slow part. */
static struct slab *slab_new(unsigned c)
{
    struct slab *s = rcl__be_memalign(span_bytes(c), span_bytes(c));

    if (!s)
        return NULL;
    s->prev = s->next = NULL;
    s->free = NULL;
    s->used = 0;
    s->fresh = 0;
    s->cls = c;
    rcl__poison(slot(s, c, 0), span_bytes(c) - SLAB_HEAD);
    atomic_fetch_add(&held_bytes[c], span_bytes(c));
    return s;
}

static void slab_delete(struct slab *s, unsigned c)
{
    rcl__assert(s->used == 0 && s->cls == c);
    atomic_fetch_sub(&held_bytes[c], span_bytes(c));
    rcl__unpoison(s, span_bytes(c));
    rcl__be_free(s);
}

/* A free slot of slab s, with the lock held: one given back, else the
 * next never used. */
static struct rcl_hdr *slot_take(struct slab_class *k, struct slab *s, unsigned c)
{
    struct rcl_hdr *h = s->free;

    if (h) {
        rcl__unpoison(h, HDR);
        s->free = h->next;
    } else {
        rcl__assert(s->fresh < slots(c));
        h = slot(s, c, s->fresh++);
        rcl__unpoison(h, HDR);
    }
    if (++s->used == slots(c))
        list_del(k, s);
    return h;
}

/* The class's first slab with a free slot, a kept one or a new one made
 * if `make`; NULL if none. Called and returns with the lock held. */
static struct slab *slab_avail(struct slab_class *k, unsigned c, bool make)
{
    struct slab *s = k->avail;

    if (s)
        return s;
    if ((s = k->spare) != NULL) {
        k->spare = NULL;
        list_add(k, s);
        return s;
    }
    if (!make)
        return NULL;
    pthread_mutex_unlock(&slab_lock);
    s = slab_new(c);
    pthread_mutex_lock(&slab_lock);
    if (s)
        list_add(k, s);
    return s;
}

unsigned rcl__slab_get_many(unsigned c, struct rcl_hdr **out, unsigned n)
{
    struct slab_class *k = class_of(c);
    struct slab *s;
    unsigned got = 0;

    rcl__assert(rcl__slab_class(c) && c < RCL_BCACHE_CLASSES && n >= 1);
    pthread_mutex_lock(&slab_lock);
    /* A new slab for the first slot only: the others are a batch's
     * extras, not worth a call to the backend. */
    while (got < n && (s = slab_avail(k, c, got == 0)) != NULL)
        out[got++] = slot_take(k, s, c);
    pthread_mutex_unlock(&slab_lock);
    return got;
}

struct rcl_hdr *rcl__slab_get(unsigned c)
{
    struct rcl_hdr *h;
    return rcl__slab_get_many(c, &h, 1) ? h : NULL;
}

/* A slot back to its slab, with the lock held: the slab that emptied, if
 * it is not the one kept, for the caller to delete. */
static struct slab *slot_put(struct slab_class *k, struct rcl_hdr *h, unsigned c)
{
    struct slab *s = slab_of(h, c), *gone = NULL;

    rcl__assert(s->cls == c && s->used > 0);
    rcl__assert(((uintptr_t)h - (uintptr_t)slot(s, c, 0)) % slot_bytes(c) == 0);
    h->meta = 0;
    h->next = s->free;
    s->free = h;
    rcl__poison(h, slot_bytes(c));
    if (s->used-- == slots(c))
        list_add(k, s);
    if (s->used == 0) {
        list_del(k, s);
        gone = k->spare;
        k->spare = s;
    }
    return gone;
}

void rcl__slab_put_many(unsigned c, struct rcl_hdr **hs, unsigned n)
{
    struct slab_class *k = class_of(c);
    struct slab *gone[RCL_SLAB_BATCH];
    unsigned ng = 0;

    rcl__assert(rcl__slab_class(c) && c < RCL_BCACHE_CLASSES && n <= RCL_SLAB_BATCH);
    pthread_mutex_lock(&slab_lock);
    for (unsigned i = 0; i < n; i++)
        if ((gone[ng] = slot_put(k, hs[i], c)) != NULL)
            ng++;
    pthread_mutex_unlock(&slab_lock);
    while (ng)
        slab_delete(gone[--ng], c);
}

void rcl__slab_put(struct rcl_hdr *h, unsigned c)
{
    rcl__slab_put_many(c, &h, 1);
}

void rcl__slab_trim(void)
{
    for (unsigned c = RCL_SLAB_FIRST_CLASS; c < RCL_BCACHE_CLASSES; c++) {
        struct slab *s;

        pthread_mutex_lock(&slab_lock);
        s = class_of(c)->spare;
        class_of(c)->spare = NULL;
        pthread_mutex_unlock(&slab_lock);
        if (s)
            slab_delete(s, c);
    }
}

size_t rcl__slab_held(unsigned c)
{
    return atomic_load_explicit(&held_bytes[c], memory_order_relaxed);
}

/* fork(): the child keeps the slabs as they are - its blocks are in them -
 * consistent since no thread was inside. */
void rcl__slab_atfork_prepare(void)
{
    pthread_mutex_lock(&slab_lock);
}

void rcl__slab_atfork_parent(void)
{
    pthread_mutex_unlock(&slab_lock);
}

void rcl__slab_atfork_child(void)
{
    rcl__slab_atfork_parent();
}
