/* SPDX-License-Identifier: MIT */
/*
 * block_cache.c - emptying a thread's block cache (block_cache.h): the one
 * drain entry point every caller uses, and the eviction of the classes a
 * thread no longer uses; and the depot, where blocks freed on one thread
 * wait for another thread's allocations.
 */
#include "internal.h"
#include "backend.h"
#include "block_cache.h"
#include "block.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

_Atomic long rcl__bcache_bytes;

/*
 * A thread's cached blocks are memory it holds for its next allocations,
 * charged to the budget: limit/128 of it (what a thread's stock held in
 * all before the cache had its own bound), up to RCL_BCACHE_BYTES_MAX. A
 * large budget affords a thread a cache that holds a live set of
 * megabytes; a small one keeps what idle threads' caches strand small
 * (they are drained before an allocation fails, account.c).
 */
static void depot_limit(size_t limit);

void rcl__bcache_limit(size_t limit)
{
    size_t bytes = limit / 128;
    wr(rcl__bcache_bytes, (long)(bytes < RCL_BCACHE_BYTES_MAX ? bytes : RCL_BCACHE_BYTES_MAX));
    depot_limit(limit);
}

/*
 * Class c's list's length set to `len` by a slow path, which moved the
 * difference (block_cache.h: adj); released, so that a charge the caller
 * moved to the stock is there before the length drops for rcl_usage(),
 * which reads a thread's lists before its stock. Hits past 2^40 move to
 * the thread's own count here, long before the 48 bits above the length
 * wrap: a list wraps only after 2^48 hits with no slow path between
 * (days of nothing but hits of one class, at a few ns each).
 */
#define LIST_HITS_FOLD (1ull << 40)

static void len_set(struct rcl_thread *t, unsigned c, unsigned len)
{
    struct rcl_bcache_lists *bc = t->bc;
    uint64_t w = rd(bc->len[c + 1]);
    long moved = (long)len - (long)rcl__list_len(w);

    rcl__assert(len <= RCL_BCACHE_DEPTH_MAX);
    if (unlikely(rcl__list_hits(w) >= LIST_HITS_FOLD)) {
        wr(t->nr_alloc, rd(t->nr_alloc) + rcl__list_hits(w));
        moved -= (long)rcl__list_hits(w);     /* its frees, worked out, stay */
        w = 0;
    }
    own_add(bc->adj[c + 1], moved);
    atomic_store_explicit(&bc->len[c + 1], (w & ~(uint64_t)UINT16_MAX) | len,
                          memory_order_release);
}

/* The length of class c's list of thread t, read by any thread. */
static unsigned len_of(const struct rcl_thread *t, unsigned c)
{
    return rcl__list_len(atomic_load_explicit(&t->bc->len[c + 1], memory_order_acquire));
}

/* Class c's list, n blocks, leaves the cache: its charge to the stock,
 * there before the length drops (len_set()). */
static void list_uncharge(struct rcl_thread *t, unsigned c, size_t n)
{
    rcl__assert(n == len_of(t, c));
    t->bc->top[c + 1] = NULL;
    wr(t->stock, rd(t->stock) + (long)(n * rcl__bcache_charge(c)));
    len_set(t, c, 0);
}

void rcl__bcache_counts(const struct rcl_thread *t, unsigned long *hits, unsigned long *frees)
{
    *hits = *frees = 0;
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++) {
        uint64_t w = rd(t->bc->len[c + 1]);
        *hits += rcl__list_hits(w);
        *frees += rcl__list_len(w) + rcl__list_hits(w) - (unsigned long)rd(t->bc->adj[c + 1]);
    }
}

/* Class c's cached blocks back to the backend or their slabs, their
 * charge to the stock (for the stock protocol to keep or return). */
static void give_back(struct rcl_thread *t, unsigned c)
{
    void *link = t->bc->top[c + 1];
    size_t n = 0;

    if (!link)
        return;
    for (; link; n++) {
        struct rcl_hdr *h = rcl__hdr_of(link);
        link = h->next;
        rcl__assert(rcl__hdr_listed(h));
        block_delete_class(h, c);
    }
    list_uncharge(t, c, n);
}

size_t rcl__bcache_held(const struct rcl_thread *t)
{
    size_t bytes = 0;

    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++)
        bytes += len_of(t, c) * rcl__bcache_charge(c);
    return bytes;
}

static void depth_set(struct rcl_bcache_lists *bc, unsigned c, unsigned depth)
{
    rcl__assert(depth <= RCL_BCACHE_DEPTH_MAX && own_rd16(bc->len[c + 1]) <= depth);
    bc->room += (depth - (size_t)bc->depth[c + 1]) * rcl__bcache_charge(c);
    bc->depth[c + 1] = (uint16_t)depth;
}

/*
 * Every list but keep's to none, then to its starting depth as far as
 * half the byte bound allows, the smaller classes first: a small budget
 * starts the larger classes at none (they grow on misses), and the other
 * half is for the lists that grow. The lists are empty.
 */
static void depths_reset(struct rcl_bcache_lists *bc, unsigned keep)
{
    size_t half = (size_t)rd(rcl__bcache_bytes) / 2;

    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++) {
        if (c != keep) {
            depth_set(bc, c, 0);
            bc->grown[c + 1] = 0;
        }
    }
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++) {
        if (c == keep)
            continue;
        size_t fits = bc->room < half ? (half - bc->room) / rcl__bcache_charge(c) : 0;
        depth_set(bc, c, fits < rcl__bcache_depth_start(c) ? (unsigned)fits
                                                            : rcl__bcache_depth_start(c));
    }
}

/*
 * A list the byte bound kept from growing. The starting room of the lists
 * that never grew, as far as they do not use it (their depths above their
 * lengths), gives way: under a small budget the starting depths of
 * classes the thread does not allocate would otherwise keep the class in
 * use from growing. A list that grew keeps its depth - its blocks may be
 * out with the program, to come back - until the classes that do not fit
 * evict it (rcl__bcache_evict). A scan of every class, for nothing once
 * the starts are gone: at most once every BLOCKED_SCAN_EVERY blocked
 * misses, the first included. True if class c's list may now grow.
 */
#define BLOCKED_SCAN_EVERY 16u

bool rcl__bcache_blocked(struct rcl_thread *t, unsigned c)
{
    struct rcl_bcache_lists *bc = t->bc;

    if (bc->blocked++ % BLOCKED_SCAN_EVERY)
        return false;
    for (unsigned o = 0; o < RCL_BCACHE_CLASSES; o++)
        if (!bc->grown[o + 1] && bc->depth[o + 1] > own_rd16(bc->len[o + 1]))
            depth_set(bc, o, own_rd16(bc->len[o + 1]));
    return rcl__bcache_fits(bc, rcl__bcache_charge(c));
}

/* Every cached block back. Only ever for the caller's own rcl__self, or at
 * its exit: only the owner touches its lists. A bound lowered since the
 * lists grew (a lowered limit asks every thread to drain) brings their
 * depths back to the start. */
void rcl__bcache_drain(struct rcl_thread *t)
{
    t->bcache_full = 0;
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++)
        give_back(t, c);
    if (rcl__bcache_off(t))
        return;
    rcl__slab_disown(t->bc->slabs);
    if (!rcl__bcache_fits(t->bc, 0))
        depths_reset(t->bc, RCL_BCACHE_CLASSES);
}

const struct rcl_bcache_lists rcl__bcache_none;

/*
 * A thread's lists are mapped, a page of their own, not taken from the
 * backend: a block that lives as long as its thread would keep the
 * backend's span under it resident for good - mimalloc releases a 32 MiB
 * segment only once every block in it is free, and a cache emptied by
 * reclaim then left 128 MB resident for four threads' lists.
 */
_Static_assert(sizeof(struct rcl_bcache_lists) <= 4096, "a thread's lists fit in one page");

static size_t lists_bytes(void)
{
    size_t page = rcl__page_size();
    return (sizeof(struct rcl_bcache_lists) + page - 1) & ~(page - 1);
}

/*
 * The lists lie at the end of their mapping, not at its start, so that
 * the words the fast paths load and store - each class's top, length and
 * depth, first in the lists - are not at the first bytes of a page,
 * where the first block of a fresh page or slab often has its header
 * (jemalloc's first region of a slab page at 0; mimalloc's first block of
 * a page has it at 0x180, where the lists' lengths were). Where a block's
 * header and a list's word share their addresses' low 12 bits, an Intel
 * core takes a load of one for a load of the other's just-stored value
 * and waits for it (4K aliasing): a thread allocating and freeing the
 * first 16 B block of a jemalloc slab page took 11.9 ns a pair with its
 * list's top at the header's offset, and 8.2 ns without
 * (docs/bench/patterns.md, "Figures, 2026-12-03, 14:10"). Some block
 * always shares an offset with some list's word; what this moves them
 * off is the offsets where the first, and often the only hot, block of a
 * class lies. The hot words stay first in the lists: moved to their end,
 * the compilers address them with an extra instruction or two a call.
 */
static size_t lists_at(void)
{
    return (lists_bytes() - sizeof(struct rcl_bcache_lists)) & ~(size_t)63;
}

static struct rcl_bcache_lists *lists_in(void *map)
{
    return (struct rcl_bcache_lists *)((char *)map + lists_at());
}

static void *lists_map(struct rcl_bcache_lists *bc)
{
    return (char *)bc - lists_at();
}

/*
 * An exited thread's lists are kept, up to RCL_BCACHE_LISTS_KEPT of them,
 * for the next thread that starts, as glibc gives an exited thread's arena
 * to the next: a program whose threads come and go (a pool that grows and
 * shrinks, a thread per connection) would otherwise map a page and fault
 * it in for every thread, and a live set's first blocks on a new thread
 * counted a page more than raw glibc's. Slots, not a list under a lock,
 * so that a fork() never finds them held. Every trim and the shutdown
 * give them back (rcl__bcache_trim()).
 */
static void *_Atomic lists_kept[RCL_BCACHE_LISTS_KEPT];

/* A kept page, taken out of its slot; NULL if none is kept. */
static void *kept_take(void)
{
    for (unsigned i = 0; i < RCL_BCACHE_LISTS_KEPT; i++) {
        void *bc = atomic_exchange(&lists_kept[i], NULL);
        if (bc)
            return bc;
    }
    return NULL;
}

static struct rcl_bcache_lists *lists_get(void)
{
    void *map = kept_take();

    if (map)
        return lists_in(memset(map, 0, lists_bytes()));
    map = mmap(NULL, lists_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return map == MAP_FAILED ? NULL : lists_in(map);
}

static void lists_put(struct rcl_bcache_lists *bc)
{
    void *map = lists_map(bc);

    for (unsigned i = 0; i < RCL_BCACHE_LISTS_KEPT; i++) {
        void *none = NULL;
        if (atomic_compare_exchange_strong(&lists_kept[i], &none, map))
            return;
    }
    munmap(map, lists_bytes());
}

void rcl__bcache_trim(void)
{
    for (void *bc; (bc = kept_take()) != NULL;)
        munmap(bc, lists_bytes());
}

/* A thread registers in an epoch: blocks cached in an earlier one were
 * charged to a budget that is gone, and its lists start short again. Its
 * first registration maps its lists; without them (no page to be had) it
 * works on, keeping no block, and tries again at its next registration. */
void rcl__bcache_attach(struct rcl_thread *t)
{
    rcl__bcache_drain(t);
    if (rcl__bcache_off(t)) {
        struct rcl_bcache_lists *bc = lists_get();
        if (!bc)
            return;
        rcl__lsan_root(bc, sizeof(*bc));
        t->bc = bc;
    }
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++)
        t->bc->gave_at[c + 1] = t->bc->gave[c + 1] = 0;
    t->bc->blocked = 0;
    depths_reset(t->bc, RCL_BCACHE_CLASSES);
}

/* At the thread's exit, its cache emptied and the thread out of the
 * registry, where other threads read its lists. */
void rcl__bcache_release(struct rcl_thread *t)
{
    rcl__assert(!rcl__bcache_held(t));
    if (rcl__bcache_off(t))
        return;
    /* What the lists counted stays counted: it becomes the thread's own. */
    unsigned long hits, frees;
    rcl__bcache_counts(t, &hits, &frees);
    wr(t->nr_alloc, rd(t->nr_alloc) + hits);
    wr(t->nr_free, rd(t->nr_free) + frees);
    rcl__lsan_unroot(t->bc, sizeof(*t->bc));
    lists_put(t->bc);
    t->bc = (struct rcl_bcache_lists *)&rcl__bcache_none;
}

/*
 * A free the cache turned away, its list full. Classes the thread no
 * longer allocates would otherwise hold the byte bound for good, and
 * every block of the sizes it uses now would go to the backend (a program
 * that moves from one size to the next, as glibc's "simple" benchmark
 * does). After RCL_BCACHE_EVICT_AFTER turned-away frees, the other classes
 * go back to the backend and give up their depths: often enough to follow
 * a change of sizes, rarely enough that a mix of sizes larger than the
 * cache does not drain it on every pass; the kernel's per-CPU page lists
 * likewise drain in batches, not per page.
 */
void rcl__bcache_evict(struct rcl_thread *t, unsigned keep)
{
    t->bcache_full = 0;
    if (rcl__bcache_off(t))
        return;
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++)
        if (c != keep)
            give_back(t, c);
    depths_reset(t->bc, keep);
    /* Their charge is in the stock now, up to the byte bound past
     * stock_max: budget with no memory behind it, which a thread that
     * allocates nothing more would hold while the others reclaim. */
    rcl__stock_spill(t);
}

/* ------------------------------------------------------------------------ */
/* The depot                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * A block that crosses threads - allocated by a producer, freed by a
 * consumer - finds no cache at either end: the consumer's list for its
 * class is full at once (it never allocates, so the list never grows),
 * and the producer's is always empty. Both would go to the backend for
 * every block. The depot is the layer between them, the depot of Bonwick
 * and Adams's magazine allocator ("Magazines and Vmem", USENIX 2001) and
 * of the kernel's per-node partial slabs: a consumer whose list is full
 * hands the whole list over, under one lock, and a producer whose list is
 * empty takes one back. A block then crosses threads for a lock taken once
 * per batch, and never reaches the backend.
 *
 * What the depot holds is not charged: the consumer's list gives its
 * charge back to the consumer's stock as it goes in, and the producer
 * charges what it takes, as it would charge a block from the backend. So
 * the depot is free memory the library keeps, as the backend keeps its
 * own free lists, and is bounded the same way: it is small (DEPOT_SLOTS
 * batches of at most DEPOT_BATCH_BYTES per class, and at most
 * min(limit/512, DEPOT_BYTES_MAX) in all), the footprint samples count it
 * where the budget counts resident memory, and every trim empties it into
 * the backend first (rcl__depot_drain, reclaim.c), as does every drain
 * (account.c).
 */
/*
 * Two batches a class of up to 32 KiB, not four of 16: the same bytes in
 * flight, the lock taken half as often. The lock, taken on both sides
 * once a batch, was a quarter of what a pair of threads passing 1 KiB
 * blocks paid: with the threads on CPUs of their own, that pair over
 * mimalloc took 1.21x raw mimalloc's CPU time in 16 KiB batches, 0.90x
 * in 32 KiB ones (docs/bench/patterns.md, "Figures, 2026-12-03, 11:00").
 * Fewer slots also hold fewer batches of a mix's classes, half full,
 * where the producer cannot reach them.
 */
#define DEPOT_SLOTS        2u
#define DEPOT_BATCH_BYTES  (32u << 10)
#define DEPOT_BYTES_MAX    (256u << 10)

struct depot {
    _Atomic unsigned n;                   /* batches held: read unlocked as a hint */
    void            *batch[DEPOT_SLOTS];  /* cache lists, as their threads left them
                                             (their tops' links) */
    unsigned         len[DEPOT_SLOTS];    /* and their lengths */
};

/* Eight locks serve the classes, class c taking lock c % 8: batches make
 * taking one rare, so a lock per class would buy little, and fork's
 * prepare handler holds them all (TSan's deadlock detector allows a
 * thread 64 locks at once). A producer and its consumer take the same
 * lock once a batch each, so they collide; with locks that slept at
 * once, a pair of 1 KiB blocks over mimalloc cost 1.35x raw mimalloc's
 * CPU time (docs/bench/patterns.md, "Figures, 2026-12-02, 17:00"). */
#define DEPOT_LOCKS 8u
static struct {
    pthread_mutex_t m;
} __attribute__((aligned(64))) depot_locks[DEPOT_LOCKS] = {
    { RCL_SPIN_MUTEX_INITIALIZER }, { RCL_SPIN_MUTEX_INITIALIZER },
    { RCL_SPIN_MUTEX_INITIALIZER }, { RCL_SPIN_MUTEX_INITIALIZER },
    { RCL_SPIN_MUTEX_INITIALIZER }, { RCL_SPIN_MUTEX_INITIALIZER },
    { RCL_SPIN_MUTEX_INITIALIZER }, { RCL_SPIN_MUTEX_INITIALIZER },
};

static struct depot depots[RCL_BCACHE_CLASSES];
static _Atomic size_t depot_bytes, depot_cap;

static pthread_mutex_t *depot_lock(unsigned c)
{
    return &depot_locks[c % DEPOT_LOCKS].m;
}

static void depot_limit(size_t limit)
{
    wr(depot_cap, limit / 512 < DEPOT_BYTES_MAX ? limit / 512 : DEPOT_BYTES_MAX);
}

size_t rcl__depot_held(void)
{
    return rd(depot_bytes);
}

/* Room for `bytes` more in the depot's bound, taken; false if none. */
static bool depot_reserve(size_t bytes)
{
    size_t was = atomic_fetch_add(&depot_bytes, bytes);
    if (was + bytes <= rd(depot_cap))
        return true;
    atomic_fetch_sub(&depot_bytes, bytes);
    return false;
}

/*
 * The list is the consumer's batch. A class that carried a good share of
 * the thread's frees (one in DEPOT_HOT_SHARE or more) doubles its batch,
 * up to DEPOT_BATCH_BYTES, so that the lock is taken once for many
 * blocks; any other keeps its depth. A consumer of many classes (a mix of
 * sizes) would otherwise keep a batch of each half full - hundreds of
 * kilobytes for the forty-odd classes of a mix, blocks the producer cannot
 * reach, so that it takes as many again from the backend - to save a lock
 * it takes rarely anyway. The share is judged over DEPOT_JUDGE_FREES of
 * the thread's frees or more, the blocks the class gave the depot in them
 * counted. Judged at every batch, a list of one or two blocks that its
 * class's next frees happened to refill at once read as hot - for one of
 * the 44 classes of a mix, one list in six - and its depth, never shrunk,
 * doubled for good: over a run most of the mix's classes did, and the
 * lists and the depot (at its bound, 256 KiB) held more than the
 * producer/consumer ring they served. A class's first batch is not judged:
 * nothing tells yet how long its list took to fill. Never shrunk here: a
 * list's depth also follows the live set its thread recycles (missed).
 */
#define DEPOT_HOT_SHARE   8u
#define DEPOT_JUDGE_FREES 256u

static void batch_resize(struct rcl_thread *t, unsigned c, size_t given)
{
    struct rcl_bcache_lists *bc = t->bc;
    uint32_t last = bc->gave_at[c + 1];
    unsigned long hits, listed;
    size_t gave = bc->gave[c + 1] + given;
    unsigned depth = bc->depth[c + 1];

    /* No share of one in DEPOT_HOT_SHARE is fewer blocks than that share
     * of DEPOT_JUDGE_FREES: until the class has given them, the thread's
     * frees, a sum over its lists (block_cache.h), are not worked out. */
    if (last && gave * DEPOT_HOT_SHARE < DEPOT_JUDGE_FREES) {
        bc->gave[c + 1] = (uint16_t)gave;
        return;
    }
    rcl__bcache_counts(t, &hits, &listed);
    uint32_t frees = (uint32_t)(rd(t->nr_free) + listed);
    if (last && frees - last < DEPOT_JUDGE_FREES) {
        bc->gave[c + 1] = (uint16_t)(gave < UINT16_MAX ? gave : UINT16_MAX);
        return;
    }
    bc->gave_at[c + 1] = frees;
    bc->gave[c + 1] = 0;
    if (!last || gave * DEPOT_HOT_SHARE < frees - last)
        return;
    if (2 * depth * rcl__bcache_charge(c) <= DEPOT_BATCH_BYTES && 2 * depth <= RCL_BCACHE_DEPTH_MAX &&
        rcl__bcache_fits(bc, depth * rcl__bcache_charge(c)))
        depth_set(bc, c, 2 * depth);
}

/*
 * The thread's full list of class c goes to the depot, its charge back to
 * the thread's stock as unused budget (for the caller to spill what goes
 * over stock_max). False, and nothing moved, when the list is larger than
 * a batch or the depot is full.
 */
bool rcl__depot_give(struct rcl_thread *t, unsigned c)
{
    void *top = t->bc->top[c + 1];
    struct depot *d = &depots[c];

    if (!top)
        return false;
    size_t len = own_rd16(t->bc->len[c + 1]), bytes = len * rcl__bcache_charge(c);
    if (bytes > DEPOT_BATCH_BYTES || rd(d->n) == DEPOT_SLOTS || !depot_reserve(bytes))
        return false;
    pthread_mutex_lock(depot_lock(c));
    unsigned n = rd(d->n);
    if (n < DEPOT_SLOTS) {
        d->batch[n] = top;
        d->len[n] = (unsigned)len;
        wr(d->n, n + 1);
    }
    pthread_mutex_unlock(depot_lock(c));
    if (n == DEPOT_SLOTS) {
        atomic_fetch_sub(&depot_bytes, bytes);
        return false;
    }
    list_uncharge(t, c, len);
    batch_resize(t, c, len);
    return true;
}

/*
 * A batch of class c for a thread whose list is empty: one block to hand
 * out, the rest its new list, no more of them than `room` bytes of charge
 * (what its stock can cover and its cache may hold); the rest of the
 * batch stays. The caller charges the block it hands out; the list's
 * charge is taken here from the stock.
 */
struct rcl_hdr *rcl__depot_take(struct rcl_thread *t, unsigned c, size_t room)
{
    struct depot *d = &depots[c];
    size_t charge = rcl__bcache_charge(c);
    size_t want = room / charge;
    struct rcl_hdr *h;

    rcl__assert(!t->bc->top[c + 1] && want >= 1);
    if (!rd(d->n) || rcl__bcache_off(t))
        return NULL;
    pthread_mutex_lock(depot_lock(c));
    unsigned n = rd(d->n);
    if (!n) {
        pthread_mutex_unlock(depot_lock(c));
        return NULL;
    }
    h = rcl__hdr_of(d->batch[n - 1]);
    size_t len = d->len[n - 1];
    if (len > want) {
        /* The top `want` blocks leave; the bottom of the list stays. */
        struct rcl_hdr *last = h;
        for (size_t i = 1; i < want; i++)
            last = rcl__hdr_of(last->next);
        d->batch[n - 1] = last->next;
        last->next = NULL;
        d->len[n - 1] = (unsigned)(len - want);
        len = want;
    } else {
        wr(d->n, n - 1);
    }
    pthread_mutex_unlock(depot_lock(c));
    atomic_fetch_sub(&depot_bytes, len * charge);

    /* The blocks below h become the thread's list, at most its depth. */
    rcl__assert(len - 1 <= t->bc->depth[c + 1]);
    t->bc->top[c + 1] = h->next;
    len_set(t, c, (unsigned)len - 1);
    wr(t->stock, rd(t->stock) - (long)((len - 1) * charge));
    return h;
}

/*
 * The slabs' side of a thread's list of a slab class (slab.h): a batch of
 * the slots the thread holds for an empty list, as rcl__depot_take()
 * gives one (the first to hand out, the rest the list, charged from the
 * stock, at most `room` bytes with the first), with no lock but when
 * the thread takes a slab's slots; and the top half of a full list
 * (RCL_SLAB_BATCH to RCL_SLAB_SPILL slots) back to the slabs, its charge
 * to the stock (for the caller to spill), so that a live set larger than
 * the list takes the slabs' lock once a batch, not once a block. A list
 * of a batch or less (a consumer's, which the depot takes whole) is not
 * spilled: its frees beyond it go back one by one, as to the backend.
 * Every other block of a slab class comes from the thread's slots too,
 * one at a time (rcl__bcache_slot(), block_new()).
 */
struct rcl_hdr *rcl__bcache_fill(struct rcl_thread *t, unsigned c, size_t room)
{
    size_t charge = rcl__bcache_charge(c);
    size_t want = room / charge;
    struct rcl_hdr *hs[RCL_SLAB_BATCH];
    unsigned n;

    if (rcl__bcache_off(t))
        return rcl__bcache_slot(t, c);
    rcl__assert(rcl__slab_class(c) && !t->bc->top[c + 1] && want >= 1 &&
                want - 1 <= t->bc->depth[c + 1]);
    /* Listing a slot writes its header, and so makes its page resident,
     * and what a list holds is out of the others' reach: a batch is at
     * most RCL_SLAB_FILL_BYTES, or one slot. */
    if (want > RCL_SLAB_FILL_BYTES / charge)
        want = RCL_SLAB_FILL_BYTES / charge > 1 ? RCL_SLAB_FILL_BYTES / charge : 1;
    n = rcl__slab_get_many(c, hs, want < RCL_SLAB_BATCH ? (unsigned)want : RCL_SLAB_BATCH,
                           &t->bc->slabs[c + 1]);
    for (unsigned i = n; i-- > 1;) {
        hs[i]->meta = rcl__hdr_meta(t->hdr_tag, rcl__hdr_user(hs[i]), rcl__bcache_cap(c));
        rcl__bcache_put(t, hs[i], c, (long)charge);
    }
    if (n > 1) {
        own_add(t->bc->adj[c + 1], (long)n - 1);      /* no frees */
        wr(t->stock, rd(t->stock) - (long)((n - 1) * charge));
    }
    /* Each slot of the batch is an allocation that will not find the list
     * empty: the list grows for it as for a miss, or it would stop short
     * of the live set it recycles. */
    for (unsigned i = 1; i < n; i++)
        rcl__bcache_missed(t, c);
    return n ? hs[0] : NULL;
}

/* A thread whose lists are not mapped holds no slots: it takes one from
 * the slabs the threads share. */
struct rcl_hdr *rcl__bcache_slot(struct rcl_thread *t, unsigned c)
{
    struct rcl_hdr *h;

    if (rcl__bcache_off(t))
        return rcl__slab_get(c);
    return rcl__slab_get_many(c, &h, 1, &t->bc->slabs[c + 1]) ? h : NULL;
}

bool rcl__bcache_spill(struct rcl_thread *t, unsigned c)
{
    struct rcl_hdr *hs[RCL_SLAB_SPILL];
    unsigned n = 0, len = own_rd16(t->bc->len[c + 1]);

    if (!rcl__slab_class(c) || len <= RCL_SLAB_BATCH)
        return false;
    /* Half the list, so that a short one keeps blocks to hand out, but a
     * fill's batch at least and RCL_SLAB_SPILL at most (slab.h). */
    unsigned want = len / 2 < RCL_SLAB_BATCH ? RCL_SLAB_BATCH : len / 2;
    if (want > RCL_SLAB_SPILL)
        want = RCL_SLAB_SPILL;
    for (void *link = t->bc->top[c + 1]; n < want; n++) {
        hs[n] = rcl__hdr_of(link);
        link = hs[n]->next;
        rcl__assert(rcl__hdr_listed(hs[n]));
    }
    t->bc->top[c + 1] = hs[n - 1]->next;
    wr(t->stock, rd(t->stock) + (long)(n * rcl__bcache_charge(c)));
    len_set(t, c, len - n);
    /* A small class's blocks may be the backend's too (slab.h). */
    unsigned slots = 0;
    for (unsigned i = 0; i < n; i++) {
        if (rcl__slab_holds(hs[i], c))
            hs[slots++] = hs[i];
        else
            block_delete_class(hs[i], c);
    }
    if (slots)
        rcl__slab_put_many(c, hs, slots);
    return true;
}

/* Every block in the depot back to the backend or its slab: before a
 * trim, so that the trim can give their pages back, and at shutdown. */
void rcl__depot_drain(void)
{
    if (!rd(depot_bytes))
        return;
    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++) {
        struct depot *d = &depots[c];
        void *batch[DEPOT_SLOTS];
        unsigned n;

        if (!rd(d->n))
            continue;
        pthread_mutex_lock(depot_lock(c));
        n = rd(d->n);
        for (unsigned i = 0; i < n; i++)
            batch[i] = d->batch[i];
        wr(d->n, 0);
        pthread_mutex_unlock(depot_lock(c));
        for (unsigned i = 0; i < n; i++) {
            size_t len = 0;
            for (void *link = batch[i]; link;) {
                struct rcl_hdr *h = rcl__hdr_of(link);
                link = h->next;
                block_delete_class(h, c);
                len++;
            }
            atomic_fetch_sub(&depot_bytes, len * rcl__bcache_charge(c));
        }
    }
}

/* fork(): the depot's locks come before the slabs' in the order (fork.c),
 * and are never held with them; the child keeps what the depot holds, consistent since no thread was
 * inside. Its count is not: a thread takes a batch's room in the bound
 * before it takes the lock, and gives a batch's room back after it lets
 * the lock go, and a thread caught in between is not in the child, its
 * batch neither. The child counts what its batches hold again. */
void rcl__depot_atfork_prepare(void)
{
    for (unsigned i = 0; i < DEPOT_LOCKS; i++)
        pthread_mutex_lock(&depot_locks[i].m);
}

void rcl__depot_atfork_parent(void)
{
    for (unsigned i = DEPOT_LOCKS; i-- > 0;)
        pthread_mutex_unlock(&depot_locks[i].m);
}

void rcl__depot_atfork_child(void)
{
    size_t bytes = 0;

    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++)
        for (unsigned i = 0; i < rd(depots[c].n); i++)
            bytes += depots[c].len[i] * rcl__bcache_charge(c);
    wr(depot_bytes, bytes);
    rcl__depot_atfork_parent();
}
