/* SPDX-License-Identifier: MIT */
/*
 * account.c - the budget: limit, watermarks, per-thread stocks, and the
 * charge slow path (reclaim, retries, NOFAIL).
 *
 * Invariant: rcl__acct.charged <= limit at all times (except after the
 * limit is lowered below it), and charged == (bytes handed out) + (sum of
 * every registered thread's stock). Charging is a compare-and-swap against
 * the limit, so no interleaving of threads can take the budget over.
 *
 * The stock is what keeps the fast path off shared cache lines: a thread
 * takes a batch of bytes from the budget at once and hands them out to its
 * own allocations with plain loads and stores; frees go back into the stock
 * and only the excess above stock_max is returned. Near the watermarks no
 * batch is taken, so the budget is charged byte for byte exactly when it
 * matters.
 *
 * The stock protocol, all of it. Each registered thread (thread.c) has
 * `stock`, bytes charged and not handed out, and `stock_max`, the most it
 * may sit on. The fast paths (alloc.c, rcl_charge below, stock.h's
 * inlines) spend and refill the stock with plain loads and stores; only
 * the owner thread writes `stock` (fork and shutdown aside, when no other
 * thread runs). The stock is budget with no memory behind it; the charge
 * of the thread's cached blocks (its lists' lengths, block_cache.h), which
 * are memory and bounded by the cache, is kept apart from it, so that a
 * block that goes from the cache to the program and back moves its charge
 * between the lists and what is handed out, and the stock is not touched -
 * the kernel's slab, likewise, charges a page once, not each object
 * carved from it. The budget counts both, and rcl_usage() leaves both
 * out. A free that goes into the cache stays on the fast path while
 * stock_max >= 0; one that does not, while the stock plus its size fits
 * stock_max. So every reason to leave it is folded into stock_max:
 *   stock_limit()   two batches: the normal value, set when the thread
 *                   registers and followed by its charge slow path when
 *                   the batch changes with the limit;
 *   STOCK_RECLAIM   while the thread reclaims (rcl__stock_reclaim_begin
 *                   and _end, around reclaim.c's passes): what its
 *                   shrinkers free stays in its stock, as reclaim's
 *                   progress, for the allocation that reclaimed;
 *   STOCK_DRAIN     another thread asked for the stock back (a lowered
 *                   limit, rcl_usage_sync(), an allocation about to fail):
 *                   met at the owner's next slow path (drain_if_asked),
 *                   which gives back its stock, block cache and signal
 *                   stash.
 * stock_max is the only one other threads write, by exchange or
 * compare-and-swap, so that a drain request that comes in during a
 * reclaim is still there when the reclaim ends. Each request also sets
 * RCL__WATCH_DRAIN in the thread's watch word, which the allocation and
 * charge fast paths test, so that it is met before the stock or the cache
 * is spent again (signal handlers set the same bit to bring the thread to
 * the slow path, rcl__slow_path_ask). Invariants: stock >= 0; charged ==
 * handed out + the stocks + the cached blocks + the signal stashes. A
 * charge that leaves the cache for the stock (a drain, a list handed to
 * the depot) is in the stock before it leaves the cache, released, and
 * rcl_usage() reads the cache first, so frees never make it read high.
 * The other way (a batch from the depot becoming a list) happens only
 * inside an allocation, during which rcl_usage() may be off by that
 * allocation.
 */
#include "internal.h"
#include "backend.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct rcl_account rcl__acct;

#define STOCK_BATCH_MAX   (64 * 1024L)
#define STOCK_RECLAIM     (-1L)
#define STOCK_DRAIN       (-2L)
#define RECLAIM_CLUSTER   (128 * 1024UL)   /* least a direct reclaim aims at */
#define MAX_NO_PROGRESS   3                /* reclaim rounds that freed nothing */
#define IN_FLIGHT_WAIT_NS (20 * 1000000ull) /* the most an allocation waits for
                                              others' reclaim passes to free */

static _Atomic long long overuncharge_reported;
/*
 * What rcl_charge() charged and rcl_uncharge() has not taken back. An
 * uncharge of more is refused, however much else the budget counts: the
 * blocks' charges go back through their frees, and an uncharge that took
 * theirs would leave the budget counting less than the program holds.
 * Each thread holds the part it charged (explicit_held), so that a charge
 * writes no shared word. An uncharge takes from its own thread's part;
 * one that finds it short - memory charged on one thread and uncharged
 * on another, as a shrinker's is - gathers every other thread's part and
 * what exited threads left (explicit_gone) into its own, under the
 * registry lock, and its thread's next uncharges find enough there.
 */
static long explicit_gone;
/* The program chose the limit (rcl_set_limit): the automatic budget no
 * longer follows the cgroup. Under the registry lock (thread.c) with the
 * limit itself, so that a cgroup change read just before the program's
 * call cannot land after it. */
static bool limit_chosen;
static _Atomic long long failure_reported;
#ifdef RCL_DEBUG
/* What exited (and, in a forked child, vanished) threads had handed out,
 * for rcl__acct_check(); under the registry lock. */
static long acct_out_gone;
/* Bytes given back that the budget no longer had (budget_return clamped
 * them): what an over-uncharge rcl_uncharge() reported left behind. */
static _Atomic long acct_unbacked;
#endif

/* Odd while set_watermarks() writes (a seqcount, as the kernel's): a
 * charge reads the limit and the watermarks as one write left them. They
 * are stored with release and read with acquire, so that a reader that
 * sees any word of a write also sees the count that write made odd. The
 * count's last store is sequentially consistent, with a charge's
 * compare-and-swap on the budget and its look at the count after it
 * (try_take) and the new limit's look at the budget (limit_changed):
 * of a charge that read the old limit and the new limit, one sees the
 * other. */
static _Atomic unsigned wm_seq;

void (*_Atomic rcl__charge_hook)(void);

/* What a charge tests, as one set_watermarks() left it. */
struct budget_view {
    size_t limit, min, low;
    long   batch;
};

static unsigned budget_view(struct budget_view *v)
{
    for (;;) {
        unsigned seq = atomic_load_explicit(&wm_seq, memory_order_acquire);
        v->limit = atomic_load_explicit(&rcl__acct.limit, memory_order_acquire);
        v->min = atomic_load_explicit(&rcl__acct.wm_min, memory_order_acquire);
        v->low = atomic_load_explicit(&rcl__acct.wm_low, memory_order_acquire);
        v->batch = atomic_load_explicit(&rcl__acct.batch, memory_order_acquire);
        if (!(seq & 1) && seq == rd(wm_seq))
            return seq;
        sched_yield();
    }
}

/* A thread's stock_max when nothing asks otherwise: two batches. */
static inline long stock_limit(void) { return 2 * rd(rcl__acct.batch); }

static void budget_return(size_t bytes)
{
    size_t c = atomic_load_explicit(&rcl__acct.charged, memory_order_relaxed);
    size_t n;

    do {
        n = bytes > c ? 0 : c - bytes;
    } while (!atomic_compare_exchange_weak_explicit(&rcl__acct.charged, &c, n,
                                                    memory_order_release, memory_order_relaxed));
#ifdef RCL_DEBUG
    if (bytes > c)
        atomic_fetch_add(&acct_unbacked, (long)(bytes - c));
#endif
}

/* A thread registers (thread.c): its stock starts empty, and so does its
 * part of the explicit charges. */
void rcl__stock_attach(struct rcl_thread *t)
{
    wr(t->stock, 0);
    wr(t->explicit_held, 0);
    wr(t->stock_max, stock_limit());
#ifdef RCL_DEBUG
    wr(t->acct_out, 0);       /* what it handed out before went with the old budget */
#endif
}

/* A thread's stock back to the budget: at its exit (its cache, stash
 * and deferred frees emptied first), or in a forked child for the
 * threads that did not come along, with the charge of their cached
 * blocks, their signal stashes and the blocks their handlers' frees
 * deferred (t is only read). Its part of the explicit charges stays for
 * the uncharges to gather. */
void rcl__stock_return(const struct rcl_thread *t)
{
    rcl__assert(rcl__registry_held());
    size_t deferred = rcl__sig_deferred_charge(t, NULL);
    budget_return((size_t)rd(t->stock) + rcl__bcache_held(t) + rd(t->sig_stash_bytes) + deferred);
    explicit_gone += rd(t->explicit_held);
#ifdef RCL_DEBUG
    /* The deferred blocks were handed out and never came back through a
     * release: their charge goes back here instead. */
    acct_out_gone += rd(t->acct_out) - (long)deferred;
#endif
}

/* A thread unregisters (thread.c), its stock returned or its budget gone. */
void rcl__stock_detach(struct rcl_thread *t)
{
    rcl__assert(rcl__registry_held());
    wr(t->stock, 0);
    wr(t->stock_max, 0);
    wr(t->explicit_held, 0);
#ifdef RCL_DEBUG
    wr(t->acct_out, 0);
#endif
}

static void set_watermarks(size_t limit)
{
    /* The per-thread books (stocks, explicit charges, reclaim progress)
     * are signed words: a budget above LONG_MAX, no limit in practice, is
     * held to it, so that nothing it lets a thread charge can wrap them. */
    if (limit > RCL__LIMIT_MAX)
        limit = RCL__LIMIT_MAX;
    size_t min = (size_t)rcl__pct_of(limit, rcl__cfg.min_pct);
    /* A reserve that is not below the limit would leave ordinary
     * allocations nothing: rcl_init() and rcl_set_limit() refuse one, and
     * the automatic budget, which must follow its cgroup down, sets it
     * aside until it grows past it again (reported there). */
    if (rcl__cfg.reserve > min && rcl__cfg.reserve < limit)
        min = rcl__cfg.reserve;
    if (min > limit)
        min = limit;
    size_t low = (size_t)rcl__pct_of(limit, rcl__cfg.low_pct);
    size_t high = (size_t)rcl__pct_of(limit, rcl__cfg.high_pct);
    low = low > min ? low : min;
    high = high > low ? high : low;

    /* The stock batch shrinks with the budget so that what threads hold
     * unused stays a small share of it. */
    long batch = (long)(limit / 256) & ~15L;
    if (batch > STOCK_BATCH_MAX)
        batch = STOCK_BATCH_MAX;

    unsigned seq = rd(wm_seq);
    wr(wm_seq, seq + 1);
    atomic_store_explicit(&rcl__acct.wm_min, min, memory_order_release);
    atomic_store_explicit(&rcl__acct.wm_low, low, memory_order_release);
    wr(rcl__acct.wm_high, high);
    atomic_store_explicit(&rcl__acct.batch, batch, memory_order_release);
    rcl__bcache_limit(limit);
    atomic_store_explicit(&rcl__acct.limit, limit, memory_order_release);
    atomic_store_explicit(&wm_seq, seq + 2, memory_order_seq_cst);
    rcl__footprint_limit(limit);
}

int rcl__account_start(const struct rcl_config *cfg)
{
    limit_chosen = false;
    wr(overuncharge_reported, 0);   /* a new budget's first is reported */
    rcl__registry_lock();
    explicit_gone = 0;
#ifdef RCL_DEBUG
    acct_out_gone = 0;
    wr(acct_unbacked, 0);
#endif
    rcl__registry_unlock();
    wr(rcl__acct.charged, 0);
    wr(rcl__acct.peak, 0);
    set_watermarks(cfg->limit);
    return 0;
}

void rcl__account_stop(void)
{
    rcl__threads_detach_all();
    wr(rcl__acct.charged, 0);
}

size_t rcl__headroom(void)
{
    size_t limit = rd(rcl__acct.limit), c = rd(rcl__acct.charged) + rd(rcl__acct.outside);
    return c < limit ? limit - c : 0;
}

/* The headroom a request with (masked) flags gfp may charge down to, of
 * a reserve of `min`. */
static size_t reserve_floor(size_t min, const struct rcl_thread *t, rcl_gfp_t gfp)
{
    if (gfp & RCL__NOMEMALLOC)
        return min;
    /* Reclaim itself, and the threads reclaim waits on, must be able to
     * allocate when nobody else can: that is what the reserve is for. */
    if ((gfp & RCL__MEMALLOC) || (rcl__scope & RCL_SCOPE_NORECLAIM) || t->io_flusher)
        return 0;
    if (gfp & RCL__HIGH)
        return min / 2;
    return min;
}

/*
 * The lowest floor a request may reach before it waits. A NOFAIL request
 * whose reclaim a scope narrowed (NOWAIT took direct reclaim, NOFS/NOIO
 * what it may free) did nothing wrong: an outer caller's scope keeps it
 * from making room itself. Once its own reclaim has not helped it may use
 * half the reserve, as the kernel lets a NOFAIL request that reclaim
 * cannot serve dip into the reserve of high-priority requests; after that
 * it waits for the background reclaimer and other threads' frees.
 * NOMEMALLOC beats this grant as it beats every other: it only waits.
 */
static size_t nofail_scoped_floor(size_t min, size_t floor, rcl_gfp_t gfp, rcl_gfp_t masked)
{
    size_t half = min / 2;

    if (!(gfp & RCL__NOFAIL) || (gfp & RCL__NOMEMALLOC) || masked == gfp || floor <= half)
        return floor;
    return half;
}

/* Another thread asked for this one's stock back (rcl_usage_sync, reclaim):
 * the cached blocks go too, and the depot's, and the backend may give
 * their pages up. */
static void drain_self(struct rcl_thread *t)
{
    rcl__sig_flush(t);
    rcl__bcache_drain(t);
    rcl__depot_drain();
    rcl__stock_flush(t, 0);
    rcl__be_thread_collect();
}

/* A drain request (stock_max == STOCK_DRAIN) is met at the thread's next
 * slow path; the watch bit is cleared there whoever set it. */
static void drain_if_asked(struct rcl_thread *t)
{
    /* The bits first: a request that comes in after this sees them set again. */
    unsigned w = rd(t->watch.asked);
    if (w)
        w = atomic_exchange(&t->watch.asked, 0);
    if (rd(t->stock_max) == STOCK_DRAIN) {
        wr(t->stock_max, stock_limit());
        drain_self(t);
    } else if (w & RCL__WATCH_COLLECT) {
        rcl__be_thread_collect();
    }
}

/* Thread t's next allocation or charge takes the slow path, where
 * drain_if_asked() clears the bit and the request that set it is met (a
 * drain, or a signal handler's: rcl__sig_service). */
void rcl__slow_path_ask(struct rcl_thread *t)
{
    atomic_fetch_or(&t->watch.asked, RCL__WATCH_DRAIN);
}

/* The backend was trimmed; where threads own their heaps, each collects
 * its own at its next allocation (the caller has collected its own). */
void rcl__owners_collect(void)
{
#ifdef RCL__BE_OWNER_COLLECTS
    rcl__registry_lock();
    for (struct rcl_thread *t = rcl__registry_first(); t; t = t->next)
        if (t != &rcl__self)
            atomic_fetch_or(&t->watch.asked, RCL__WATCH_COLLECT);
    rcl__registry_unlock();
#endif
}

/* Every other thread gives its stock and cached blocks back at its next
 * allocation, charge or free: the watch bit takes the fast paths, a cache
 * hit's and a stock's that would cover it included, to the slow one,
 * rather than let them spend first what was asked back. */
static void drain_others_locked(void)
{
    rcl__assert(rcl__registry_held());
    for (struct rcl_thread *t = rcl__registry_first(); t; t = t->next) {
        if (t == &rcl__self)
            continue;
        wr(t->stock_max, STOCK_DRAIN);
        rcl__slow_path_ask(t);
    }
}

/* Blocks other threads (the reclaimer's shrinkers) freed for this one
 * stay in its pages, resident and counted as held, until it collects them
 * (mimalloc): a charge that finds the budget short does, once, and
 * measures again before reclaiming more. True when it did. */
static bool owner_collect(void)
{
#ifdef RCL__BE_OWNER_COLLECTS
    if (rd(rcl__acct.outside)) {
        rcl__be_thread_collect();
        rcl__footprint_sample();
        return true;
    }
#endif
    return false;
}

/* The stock above `keep` back to the budget. */
void rcl__stock_flush(struct rcl_thread *t, long keep)
{
    long s = rd(t->stock);

    rcl__assert(s >= 0);
    if (keep < 0)
        keep = 0;

    /* The budget first, then the stock, released: rcl_usage(), which
     * reads the stocks before the budget, then sees the bytes either in
     * both or in neither place, never leaving the stock only (an
     * over-report of what was flushed). */
    if (s > keep) {
        budget_return((size_t)(s - keep));
        atomic_store_explicit(&t->stock, keep, memory_order_release);
    }
}

/* A reclaim (reclaim.c) takes stock_max over for its duration; nests. The
 * outermost one puts back the normal value, or a drain request that was
 * pending before it or came in meanwhile. Returns what end needs. */
long rcl__stock_reclaim_begin(struct rcl_thread *t)
{
    if (t->in_reclaim++)
        return STOCK_RECLAIM;
    wr(t->watch.reclaim, 1);
    return atomic_exchange(&t->stock_max, STOCK_RECLAIM);
}

void rcl__stock_reclaim_end(struct rcl_thread *t, long before)
{
    if (--t->in_reclaim == 0) {
        wr(t->watch.reclaim, 0);
        long expect = STOCK_RECLAIM;
        atomic_compare_exchange_strong(&t->stock_max, &expect,
                                       before == STOCK_DRAIN ? STOCK_DRAIN : stock_limit());
    }
}

/* Charged bytes the thread held elsewhere (its signal stash) come back to
 * its stock; the owner only. */
void rcl__stock_refund(struct rcl_thread *t, size_t bytes)
{
    wr(t->stock, rd(t->stock) + (long)bytes);
}

/* A stock that went over stock_max keeps a batch. */
static void stock_trim(struct rcl_thread *t)
{
    rcl__stock_flush(t, rd(rcl__acct.batch));
}

/* The excess over stock_max back to the budget, down to a batch; nothing
 * while a reclaim or a drain request holds stock_max. */
void rcl__stock_spill(struct rcl_thread *t)
{
    if (rcl__stock_over(t) && rd(t->stock_max) >= 0)
        stock_trim(t);
}

/* A thread past its exit (thread.h) holds no stock: nothing would give
 * it back. What it uncharges goes to the budget at once. */
static __attribute__((noinline, cold)) void uncharge_exited(struct rcl_thread *t, size_t size)
{
    if (t->in_reclaim)
        t->reclaimed += (long)size;
    rcl__registry_lock();
    budget_return(size);
#ifdef RCL_DEBUG
    acct_out_gone -= (long)size;    /* its own count is in no registered thread's */
#endif
    rcl__registry_unlock();
}

void rcl__uncharge_slow(struct rcl_thread *t, size_t size)
{
    if (unlikely(!rcl__thread_attach(t))) {
        uncharge_exited(t, size);
        return;
    }
    if (t->in_reclaim) {
        /* What a reclaiming thread frees stays in its stock, so the
         * allocation that reclaimed gets it rather than whoever charges
         * next; reclaim counts it as progress. */
        t->reclaimed += (long)size;
        wr(t->stock, rd(t->stock) + (long)size);
        return;
    }
    wr(t->stock, rd(t->stock) + (long)size);
    drain_if_asked(t);
    if (rcl__stock_over(t))
        stock_trim(t);
}

static void update_peak(size_t usage)
{
    size_t p = rd(rcl__acct.peak);
    while (usage > p && !atomic_compare_exchange_weak_explicit(&rcl__acct.peak, &p, usage,
                                                               memory_order_relaxed,
                                                               memory_order_relaxed))
        ;
}

/*
 * Whether a request of `size` can never succeed under view v: more than
 * the limit above the lowest floor it may ever reach, the NOFAIL grant's
 * included. Outside memory and other threads' charges are left out: they
 * can go.
 */
static bool never_fits(const struct budget_view *v, const struct rcl_thread *t, size_t size,
                       rcl_gfp_t gfp, rcl_gfp_t masked)
{
    size_t floor = nofail_scoped_floor(v->min, reserve_floor(v->min, t, masked), gfp, masked);

    return v->limit <= floor || size > v->limit - floor;
}

/* The most the budget may hold after a charge of t's under view v, above
 * the floor its flags leave it there, the NOFAIL grant's when `last`
 * (*floor). The watermarks are on real memory: what the process holds
 * beyond its charges takes room as much as a charge does. */
static size_t take_ceiling(const struct budget_view *v, const struct rcl_thread *t, rcl_gfp_t gfp,
                           rcl_gfp_t masked, bool last, size_t *floor)
{
    size_t f = reserve_floor(v->min, t, masked);

    if (last)
        f = nofail_scoped_floor(v->min, f, gfp, masked);
    *floor = f;
    size_t limit = v->limit, outside = rd(rcl__acct.outside);
    return limit > f + outside ? limit - f - outside : 0;
}

/*
 * Take `size` bytes for thread t without going below the headroom its
 * flags (gfp, and as its scope masked them) leave it - the NOFAIL grant's
 * when `last` - from the stock first, the rest from the budget. Returns
 * 0, or how many bytes are missing, with *v the view it charged against.
 * The floor comes with the limit it is of, at every try: a limit changed
 * since the last, even by the caller's own reclaim, is charged against
 * with its own reserve.
 */
static size_t try_take(struct rcl_thread *t, size_t size, rcl_gfp_t gfp, rcl_gfp_t masked,
                       bool last, struct budget_view *v)
{
    long avail = rcl__stock_avail(t);
    if (avail >= 0 && (size_t)avail >= size) {
        wr(t->stock, rd(t->stock) - (long)size);
        if (t->in_reclaim)
            t->reclaimed -= (long)size;
        return 0;
    }
    size_t need = size - (size_t)avail;
    size_t floor, ceiling, low, extra, after;

    for (;;) {
        unsigned seq = budget_view(v);
        ceiling = take_ceiling(v, t, gfp, masked, last, &floor);
        low = v->low;
        size_t batch = (size_t)v->batch;
        /* Refill no more than leaves room in the stock for this
         * block: a block whose free would overflow it takes the slow path, and
         * every allocation of its size would come down here again. */
        size_t room = (size_t)stock_limit();
        if (size >= room)
            batch = 0;
        else if (batch > room - size)
            batch = room - size;
        void (*hook)(void) = rd(rcl__charge_hook);
        if (unlikely(hook != NULL))
            hook();
        size_t c = atomic_load_explicit(&rcl__acct.charged, memory_order_relaxed);

        do {
            if (c > ceiling || need > ceiling - c)
                return c > ceiling ? need + (c - ceiling) : need - (ceiling - c);
            /* Refill the stock only while comfortably above the low
             * watermark; closer in, charge exactly. */
            extra = (ceiling + floor - c - need >= low + batch) ? batch : 0;
            after = c + need + extra;
        } while (!atomic_compare_exchange_weak_explicit(&rcl__acct.charged, &c, after,
                                                        memory_order_seq_cst,
                                                        memory_order_relaxed));
        if (likely(atomic_load_explicit(&wm_seq, memory_order_seq_cst) == seq))
            break;
        /* The limit moved since it was read. Kept, a charge under a
         * limit lowered meanwhile would pass it after rcl_set_limit()
         * returned, and the reclaimer that call woke or did not wake
         * never learn of it. As the kernel's charge, which compares its
         * sum with the memory.max it reads after its add, it stands if
         * it fits the limit now (a later one sees it: wm_seq), and only
         * otherwise is taken back and made again under the new one:
         * made again for every new limit, a charge retried for as long
         * as another thread kept setting one, raised or the same. */
        budget_view(v);
        ceiling = take_ceiling(v, t, gfp, masked, last, &floor);
        low = v->low;
        if (after <= ceiling)
            break;
        budget_return(need + extra);
    }

    wr(t->stock, (long)extra);
    /* The part the stock gave is charged as much as the budget's: all of
     * it comes off reclaim's net progress. */
    if (t->in_reclaim)
        t->reclaimed -= (long)size;
    update_peak(after);
    rcl__footprint_charged(need + extra);
    size_t headroom = ceiling + floor - after;
    if (headroom < low && (masked & RCL__KSWAPD_RECLAIM))
        rcl__reclaim_wake();
    if (headroom < v->min)
        rcl__count(reserve_allocs, 1);
    return 0;
}

static int charge_fail(size_t size, rcl_gfp_t gfp, int err)
{
    char flags[128];

    rcl__count(failures, 1);
    if (!(gfp & RCL__NOWARN))
        rcl__report_limited(&failure_reported,
                            "allocation of %zu bytes (%s) failed: %s; usage %zu of %zu",
                            size, rcl__gfp_str(gfp, flags, sizeof(flags)),
                            err == -E2BIG ? "larger than this context can ever get"
                                          : "no room, and reclaim freed too little",
                            rd(rcl__acct.charged), rd(rcl__acct.limit));
    return err;
}

/* A NOFAIL request that can never be met is the caller's bug: say so every
 * time, since returning NULL breaks the caller's assumption. */
static int nofail_impossible(size_t size, rcl_gfp_t gfp, int err)
{
    char flags[128];

    rcl__count(failures, 1);
    if (!(gfp & RCL__NOWARN))
        rcl__report("NOFAIL allocation of %zu bytes (%s) can never succeed: %s",
                    size, rcl__gfp_str(gfp, flags, sizeof(flags)),
                    err == -EINVAL ? "NOFAIL needs DIRECT_RECLAIM (it must be able to wait)"
                                   : "larger than the budget this context may use");
    return err;
}

int rcl__nofail_nowait_refuse(size_t size, rcl_gfp_t gfp)
{
    return nofail_impossible(size, gfp, -EINVAL);
}

static int too_big(size_t size, rcl_gfp_t gfp)
{
    return (gfp & RCL__NOFAIL) ? nofail_impossible(size, gfp, -E2BIG)
                               : charge_fail(size, gfp, -E2BIG);
}

/*
 * A NOFAIL request that a limit lowered since its start made one that can
 * never succeed fails as it would have at its start, rather than wait -
 * stalls reported - until the limit rises, if it ever does. Each try
 * decides with the view it charged against: a limit that dips and comes
 * back between two tries leaves the request waiting. Any other request
 * ends on its own, as one that found no room.
 */
static bool nofail_gone_impossible(const struct budget_view *v, const struct rcl_thread *t,
                                   size_t size, rcl_gfp_t gfp, rcl_gfp_t masked)
{
    return (gfp & RCL__NOFAIL) && never_fits(v, t, size, gfp, masked);
}

static void nofail_wait(size_t size, rcl_gfp_t gfp, unsigned long long start,
                        unsigned long long *next_report, unsigned *round)
{
    unsigned long long now = rcl__now_ns();

    if (now >= *next_report) {
        char flags[128];
        rcl__count(nofail_stalls, 1);
        rcl__report("allocation stall: %zu bytes (%s) waiting for %llu ms; usage %zu of %zu, "
                    "reclaim is not freeing enough", size, rcl__gfp_str(gfp, flags, sizeof(flags)),
                    (now - start) / 1000000ull, rd(rcl__acct.charged), rd(rcl__acct.limit));
        *next_report = now + (unsigned long long)rcl__cfg.stall_ms * 1000000ull;
    }
    /* Bounded, growing sleeps: other threads' frees or the background
     * reclaimer make room meanwhile; we never wait for them without bound. */
    rcl__busy_sleep_ns(*round < 10 ? 100000L * (1L << (*round / 2)) : 10000000L);
    (*round)++;
}

/* May a charge still wait for other threads' reclaim passes? For
 * IN_FLIGHT_WAIT_NS from its first such wait: a pass stuck behind a lock
 * the caller holds must not keep the caller waiting for ever. */
static bool in_flight_wait(unsigned long long *since)
{
    unsigned long long now = rcl__now_ns();

    if (!*since)
        *since = now;
    return now - *since < IN_FLIGHT_WAIT_NS;
}

int rcl__charge(struct rcl_thread *t, size_t size, rcl_gfp_t gfp)
{
    /* Past its exit, declined as a signal handler's is: a stock charged
     * now would have nobody to give it back. So is a handler's charge
     * whose start was refused: there is no budget to charge. */
    if (unlikely(!rcl__ensure_init_here() || !rcl__thread_attach(t))) {
        rcl__count(failures, 1);
        return -ENOMEM;
    }
    if (!t->in_reclaim) {
        drain_if_asked(t);
        if (unlikely(rcl__sig_pending(t)) && t->busy)
            rcl__sig_service(t);
        /* Follows a batch rcl_set_limit() changed; a drain request that
         * just came in stays. */
        long max = rd(t->stock_max);
        if (max != STOCK_DRAIN)
            atomic_compare_exchange_strong(&t->stock_max, &max, stock_limit());
    }

    rcl_gfp_t masked = rcl_current_gfp(gfp);
    bool may_reclaim = rcl__may_reclaim(masked);
    struct budget_view v;

    if (rcl__checking())
        rcl__lockdep_alloc(gfp);
    /* Only the call's own flags can make NOFAIL contradict itself; a scope
     * an outer caller opened never turns it into a failure. */
    if (rcl__gfp_nofail_nowait(gfp))
        return nofail_impossible(size, gfp, -EINVAL);
    /* Never a raised limit's reserve against the old limit (or a lowered
     * limit against the old reserve): that pair could fail any request,
     * NOFAIL too, as one that can never succeed. */
    budget_view(&v);
    if (never_fits(&v, t, size, gfp, masked))
        return too_big(size, gfp);
    size_t floor = reserve_floor(v.min, t, masked), limit = v.limit;
    size_t last_floor = nofail_scoped_floor(v.min, floor, gfp, masked);

    unsigned long long start = 0, next_report = 0;
    unsigned long long wait_start = 0;
    unsigned no_progress = 0, round = 0;
    bool collected = false, drained = false, last = false;
    for (;;) {
        size_t missing = try_take(t, size, gfp, masked, last, &v);
        if (!missing)
            break;
        if (nofail_gone_impossible(&v, t, size, gfp, masked))
            return too_big(size, gfp);
        /* The thread's own cached blocks are budget too: give them up
         * before reclaiming anyone's objects, as the kernel drains its
         * per-CPU lists before it gives up on an allocation. */
        if (rcl__bcache_held(t)) {
            rcl__bcache_drain(t);
            continue;
        }
        if (!collected) {
            collected = true;
            if (owner_collect())
                continue;
        }
        if (masked & (RCL__KSWAPD_RECLAIM | RCL__NOFAIL))
            rcl__reclaim_wake();
        if (!may_reclaim) {
            if (!(gfp & RCL__NOFAIL))
                return charge_fail(size, gfp, -ENOMEM);
            /* NOFAIL inside reclaim: it cannot reclaim, only wait. */
        } else {
            size_t target = missing > RECLAIM_CLUSTER ? missing : RECLAIM_CLUSTER;
            if (target > limit / 8 && missing <= limit / 8)
                target = limit / 8;
            size_t freed = rcl__direct_reclaim(t, target, masked);
            if (!try_take(t, size, gfp, masked, last, &v))
                break;
            if (nofail_gone_impossible(&v, t, size, gfp, masked))
                return too_big(size, gfp);
            /* NOFAIL outranks NORETRY, as in the kernel's slow path. */
            if ((gfp & (RCL__NORETRY | RCL__NOFAIL)) == RCL__NORETRY)
                return charge_fail(size, gfp, -ENOMEM);
            /* Another thread's pass may be about to free what this one
             * found gone: wait for it, for a bounded time, before
             * counting the round as one without progress. */
            if (!freed && !(gfp & RCL__NOFAIL) && in_flight_wait(&wait_start) &&
                rcl__shrinkers_busy(masked)) {
                rcl__reclaim_throttle(round++);
                continue;
            }
            no_progress = freed ? 0 : no_progress + 1;
            if (!(gfp & RCL__NOFAIL)) {
                /* Before failing, the budget other threads hold unused
                 * (stocks, cached blocks) comes back, as the kernel
                 * drains every CPU's page lists before it gives up. */
                if (no_progress >= MAX_NO_PROGRESS && !drained) {
                    drained = true;
                    no_progress = 0;
                    rcl__registry_lock();
                    drain_others_locked();
                    rcl__registry_unlock();
                    /* And what the backend holds freed - theirs among it
                     * now - goes back to the system, the thread's own
                     * heap collected again: a footprint that still
                     * counts it is no reason to fail. */
                    if (rcl__reclaim_trim_now())
                        collected = false;
                }
                if (no_progress >= MAX_NO_PROGRESS)
                    return charge_fail(size, gfp, -ENOMEM);
                rcl__reclaim_throttle(round++);
                continue;
            }
        }
        if (!last && floor > last_floor) {
            last = true;
            continue;
        }
        if (!start) {
            start = rcl__now_ns();
            next_report = start + (unsigned long long)rcl__cfg.stall_ms * 1000000ull;
        }
        nofail_wait(size, gfp, start, &next_report, &round);
    }

    rcl__acct_out(t, size);
    /* Reclaim may have left more in the stock than this thread should
     * sit on. Not inside a reclaim, whose stock holds what the pass freed
     * for the allocation that reclaimed: its end gives back the rest. */
    if (!t->in_reclaim && rcl__stock_over(t))
        stock_trim(t);
    return 0;
}

/* ------------------------------------------------------------------------ */

/* Inlined whole into rcl_charge(), whose stock hit then costs no call, as
 * before the reserve's own charge shared it. */
static inline __attribute__((always_inline)) int charge_body(struct rcl_thread *t, size_t bytes,
                                                             rcl_gfp_t gfp)
{
    long avail = rcl__stock_avail(t);

    if (avail > 0 && bytes <= (size_t)avail && rcl__fast_ok(t) && rd(t->epoch) &&
        !rcl__gfp_nofail_nowait(gfp)) {
        wr(t->stock, rd(t->stock) - (long)bytes);
        rcl__acct_out(t, bytes);
        return 0;
    }
    return rcl__charge(t, bytes, gfp);
}

/* Charging nothing checks the flags as every call does, NOFAIL that may
 * not wait refused at 0 bytes too: a caller whose sizes are sometimes 0
 * learns of its mistake at its first call, not at its first that charges.
 * (The kernel's kmalloc(0) returns ZERO_SIZE_PTR before it looks at the
 * flags; it checks them only where it allocates a slab, not at every call
 * as the library promises to.) */
static __attribute__((noinline, cold)) int charge_nothing(struct rcl_thread *t, rcl_gfp_t gfp)
{
    if (!rcl__gfp_nofail_nowait(gfp))
        return 0;
    unsigned b = rcl__busy_init();
    int err = rcl__nofail_nowait_refuse(0, gfp);
    rcl__busy_drop(t, b);
    return err;
}

int rcl_charge(size_t bytes, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;

    gfp = rcl__gfp_known("rcl_charge", gfp);
    if (!bytes)
        return charge_nothing(t, gfp);
    unsigned b = rcl__busy_hold(t);
    int err = charge_body(t, bytes, gfp);
    if (!err)
        atomic_fetch_add_explicit(&t->explicit_held, (long)bytes, memory_order_relaxed);
    rcl__busy_drop(t, b);
    return err;
}

/* A charge of the library's own (the I/O flusher's reserve), outside the
 * program's ledger of rcl_charge(): an rcl_uncharge() of more than the
 * program charged would otherwise take it, unreported. */
int rcl__charge_own(size_t bytes, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;

    if (!bytes)
        return 0;
    unsigned b = rcl__busy_hold(t);
    int err = charge_body(t, bytes, gfp);
    rcl__busy_drop(t, b);
    return err;
}

void rcl__uncharge_own(size_t bytes)
{
    struct rcl_thread *t = &rcl__self;

    if (!bytes)
        return;
    unsigned b = rcl__busy_init();
    rcl__uncharge_fast(t, bytes);
    rcl__busy_drop(t, b);
}

/* Takes `bytes` from the part of the explicit charges thread t holds, if
 * it holds that much. Another thread only ever empties the part whole
 * (explicit_gather). */
static bool explicit_take(struct rcl_thread *t, size_t bytes)
{
    long held = atomic_load_explicit(&t->explicit_held, memory_order_relaxed);

    while ((size_t)held >= bytes)       /* never negative */
        if (atomic_compare_exchange_weak_explicit(&t->explicit_held, &held,
                                                  held - (long)bytes, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

/* The same once every thread's part is t's; what can be taken of `bytes`.
 * The take is under the registry lock with the gathering, so that no
 * other uncharge gathers t's part in between. */
static size_t explicit_gather(struct rcl_thread *t, size_t bytes, bool registered)
{
    unsigned b = rcl__busy_hold(t);
    rcl__registry_lock();
    long got = explicit_gone;
    explicit_gone = 0;
    for (struct rcl_thread *o = rcl__registry_first(); o; o = o->next)
        if (o != t && rd(o->explicit_held))     /* a line it need not write */
            got += atomic_exchange_explicit(&o->explicit_held, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->explicit_held, got, memory_order_relaxed);
    if (!explicit_take(t, bytes))
        bytes = (size_t)atomic_exchange_explicit(&t->explicit_held, 0, memory_order_relaxed);
    /* A thread past its exit keeps no part: the next uncharge gathers
     * the rest from where an exited thread's goes. */
    if (!registered)
        explicit_gone += atomic_exchange_explicit(&t->explicit_held, 0, memory_order_relaxed);
    rcl__registry_unlock();
    rcl__busy_drop(t, b);
    return bytes;
}

static void uncharge_body(struct rcl_thread *t, size_t bytes)
{
    bool registered = rcl__thread_attach(t);
    if (!explicit_take(t, bytes)) {
        size_t held = explicit_gather(t, bytes, registered);
        if (held < bytes) {
            rcl__report_limited(&overuncharge_reported,
                                "rcl_uncharge(%zu) but rcl_charge() has charged only %zu bytes "
                                "not uncharged since; those are uncharged",
                                bytes, held);
            if (!held)
                return;
            bytes = held;
        }
    }
    rcl__uncharge_fast(t, bytes);
}

/* Busy from first use on (rcl__busy_init), the thread's registration
 * among it: a handler that interrupted the registration and allocated on
 * the ordinary path would register the thread again inside the first,
 * and link it into the registry twice. */
void rcl_uncharge(size_t bytes)
{
    struct rcl_thread *t = &rcl__self;

    if (!bytes)
        return;
    unsigned b = rcl__busy_init();
    uncharge_body(t, bytes);
    rcl__busy_drop(t, b);
}

/*
 * A lowered limit binds stock charged under the old one too: every other
 * thread is asked to give its stock back (the rcl_usage_sync() request,
 * met at its next slow path, and its free and charge fast paths leave for
 * the slow path at once, since nothing fits a negative stock_max), and the
 * caller gives its own back now. What a thread takes from its stock
 * between the new limit and its next slow path is bounded by what it held
 * then, and that only while its allocation is already in flight. A charge
 * from the budget that read the old limit is held to the new one
 * (try_take, limit_changed). The footprint's measure follows the limit
 * (footprint.c): a limit the program sets is never the cgroup's, and a
 * small one is held to charges.
 */
static void set_limit_locked(size_t bytes)
{
    rcl__assert(rcl__registry_held());
    bool lower = bytes < rd(rcl__acct.limit);

    set_watermarks(bytes);
    rcl__footprint_follow(limit_chosen);
    if (lower)
        drain_others_locked();
}

/* The caller's own stock goes back at once, in a reclaim too (a shrinker
 * that lowers the limit): kept, the callback and the rest of the pass
 * would spend it unchecked, and the reclaim's end would keep it as the
 * stock it had before. What reclaim freed goes with it; the allocation
 * that reclaimed then charges against the new limit. */
static void limit_changed(void)
{
    struct rcl_thread *self = &rcl__self;

    if (rd(self->epoch))
        drain_self(self);
    /* Sequentially consistent (wm_seq says why): a charge that read the
     * old limit and did not see the new one is counted here, and its
     * excess reclaimed, as the kernel's memory.max write reclaims what a
     * racing charge landed before it. */
    size_t limit = rd(rcl__acct.limit), low = rd(rcl__acct.wm_low);
    size_t c = atomic_load_explicit(&rcl__acct.charged, memory_order_seq_cst) +
               rd(rcl__acct.outside);
    if (c > limit || limit - c < low)
        rcl__reclaim_wake();
}

static int set_limit_body(size_t bytes)
{
    /* rcl_init() refuses the same: nothing would be left to allocate. */
    if (bytes <= rcl__cfg.reserve) {
        rcl__report("rcl_set_limit(%zu): not above the reserve (%zu bytes); the limit "
                    "stays %zu", bytes, rcl__cfg.reserve, rd(rcl__acct.limit));
        return -EINVAL;
    }
    rcl__registry_lock();
    limit_chosen = true;
    set_limit_locked(bytes);
    rcl__registry_unlock();
    limit_changed();
    return 0;
}

int rcl_set_limit(size_t bytes)
{
    if (!bytes) {
        /* Not started, the library has no limit to keep (the one a
         * shutdown left is gone), and the refusal must not start it: the
         * program's own rcl_init() would then find it running. */
        if (atomic_load(&rcl__ready))
            rcl__report("rcl_set_limit(0): a limit of nothing; the limit stays %zu",
                        rd(rcl__acct.limit));
        else
            rcl__report("rcl_set_limit(0): a limit of nothing; refused");
        return -EINVAL;
    }
    unsigned b = rcl__busy_init();
    int err = set_limit_body(bytes);
    rcl__busy_drop(&rcl__self, b);
    return err;
}

bool rcl__set_auto_limit(size_t bytes)
{
    /* The pressure thread, which blocks every signal: not busy. */
    rcl__registry_lock();
    bool ok = !limit_chosen;
    bool moved = ok && bytes != rd(rcl__acct.limit);
    if (moved)
        set_limit_locked(bytes);
    rcl__registry_unlock();
    if (ok)
        limit_changed();
    /* Outside the registry lock: a report function may fork. */
    if (moved && bytes <= rcl__cfg.reserve)
        rcl__report("the cgroup moved the automatic budget to %zu bytes, within the reserve "
                    "of %zu: the reserve is min_pct (%u %%) of the budget until the budget "
                    "grows past it", bytes, rcl__cfg.reserve, rcl__cfg.min_pct);
    return ok;
}

size_t rcl_limit(void)
{
    unsigned b = rcl__busy_init();
    rcl__busy_drop(&rcl__self, b);
    return rd(rcl__acct.limit);
}

size_t rcl_footprint(void)
{
    unsigned b = rcl__busy_init();
    rcl__footprint_sample();
    size_t bytes = rcl_usage() + rd(rcl__acct.outside);
    rcl__busy_drop(&rcl__self, b);
    return bytes;
}

size_t rcl_usage(void)
{
    size_t stocks = 0;

    /* The stocks before the budget, acquiring what rcl__stock_flush()
     * released: a flush in between is then counted in neither or only in
     * the budget, so frees and flushes in flight can make the result
     * smaller than the truth, never larger. Each thread's cache before
     * its stock, for the same reason: a charge leaving the cache for the
     * stock is in the stock before it leaves the cache (released). */
    unsigned b = rcl__busy_init();
    rcl__registry_lock();
    for (struct rcl_thread *t = rcl__registry_first(); t; t = t->next) {
        stocks += rcl__bcache_held(t);
        long s = atomic_load_explicit(&t->stock, memory_order_acquire);
        stocks += s > 0 ? (size_t)s : 0;
        stocks += atomic_load_explicit(&t->sig_stash_bytes, memory_order_acquire);
    }
    size_t c = atomic_load_explicit(&rcl__acct.charged, memory_order_acquire);
    rcl__registry_unlock();
    rcl__busy_drop(&rcl__self, b);
    return c > stocks ? c - stocks : 0;
}

void rcl_usage_sync(void)
{
    struct rcl_thread *self = &rcl__self;

    unsigned b = rcl__busy_init();
    rcl__thread_attach(self);
    drain_self(self);
    rcl__registry_lock();
    drain_others_locked();
    rcl__registry_unlock();
    rcl__busy_drop(self, b);
}

/* ------------------------------------------------------------------------ */
/* The accounting check                                                      */
/* ------------------------------------------------------------------------ */

/* One thread's part: its stock is not negative. */
static int acct_check_thread(const struct rcl_thread *t, char *why, size_t len)
{
    long stock = rd(t->stock);

    if (stock < 0) {
        snprintf(why, len, "a thread's stock is negative (%ld bytes)", stock);
        return -1;
    }
    return 0;
}

/* Exact where the debug bookkeeping counts what was handed out; else only
 * that the budget holds at least the stocks and caches. */
static int acct_check_sum(size_t charged, size_t stocks, long out, char *why, size_t len)
{
#ifdef RCL_DEBUG
    if ((long long)charged != (long long)stocks + out) {
        snprintf(why, len, "charged %zu bytes, but %ld handed out and %zu in stocks and caches "
                 "(%+lld)", charged, out, stocks,
                 (long long)charged - (long long)stocks - out);
        return -1;
    }
#else
    (void)out;
    if (charged < stocks) {
        snprintf(why, len, "charged %zu bytes, less than the %zu the stocks and caches hold",
                 charged, stocks);
        return -1;
    }
#endif
    return 0;
}

/*
 * charged == handed out + the stocks + the cached blocks (signal stashes
 * included), and no stock is negative. Exact only at a quiet point
 * (no thread inside an allocation, a free or a charge), as at a test's
 * end; the sum is exact in RCL_DEBUG builds, which count what was handed
 * out, and a bound elsewhere. What a reported over-uncharge gave back
 * beyond the budget counts as handed back, not as a broken book.
 */
int rcl__acct_check(char *why, size_t len)
{
    size_t stocks = 0;
    long out = 0;
    int err = 0;

    unsigned b = rcl__busy_hold(&rcl__self);
    rcl__registry_lock();
#ifdef RCL_DEBUG
    out = acct_out_gone + rd(acct_unbacked);
#endif
    for (struct rcl_thread *t = rcl__registry_first(); t && !err; t = t->next) {
        err = acct_check_thread(t, why, len);
        stocks += (size_t)(rd(t->stock) > 0 ? rd(t->stock) : 0) + rcl__bcache_held(t) +
                  rd(t->sig_stash_bytes);
#ifdef RCL_DEBUG
        out += rd(t->acct_out);
#endif
    }
    if (!err)
        err = acct_check_sum(rd(rcl__acct.charged), stocks, out, why, len);
    rcl__registry_unlock();
    rcl__busy_drop(&rcl__self, b);
    if (!err && len)
        why[0] = '\0';
    return err;
}
