/* SPDX-License-Identifier: MIT */
/*
 * thread.h - a thread's state (registered and defined in thread.c) and the
 * inlines that read it: the "inside the library" marker signal handlers
 * test, and whether an allocation may reclaim. The stock's inlines are in
 * stock.h (its protocol: account.c), the block cache's in block_cache.h.
 */
#ifndef RCL_THREAD_H
#define RCL_THREAD_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reclaim.h"      /* through internal.h, which includes it first */
#include "atomic.h"
#include "debug.h"        /* RCL_DEBUG: the layout below depends on it */

/*
 * Whether the backend's size classes are coarse - a quarter apart, as
 * mimalloc's and jemalloc's are - or fitted to 16 bytes, as glibc's
 * chunks are: the library's slabs (backend.h, slab.h) and its classes
 * (below) follow from it. Decided by the backend the build asked for:
 * internal.h brings this header in first, before backend.h puts a
 * sanitizer's libc in the backend's place, so that the sanitizers check
 * the slabs and classes the plain build runs.
 */
#if defined(RCL_BACKEND_MIMALLOC) || defined(RCL_BACKEND_JEMALLOC)
#define RCL__BE_COARSE_CLASSES 1
#else
#define RCL__BE_COARSE_CLASSES 0
#endif

/*
 * The block classes (block_cache.h has their table): 16 bytes apart to
 * 256 B, 64 to 512 B, then 2^RCL__CLASS_BITS per doubling to 64 KiB -
 * four over a coarse backend, as its own classes are, eight over glibc
 * (block_cache.h says why).
 */
#define RCL__CLASS_BITS (RCL__BE_COARSE_CLASSES ? 2 : 3)
#define RCL_BCACHE_CLASSES (20 + (7 << RCL__CLASS_BITS))
#define RCL_BCACHE_MAX    65536
/* The class numbers up to the last slab class (slab.h, which checks it):
 * every class's over a coarse backend, the classes to 256 B's over
 * glibc. */
#define RCL__SLAB_NRS     (RCL__BE_COARSE_CLASSES ? RCL_BCACHE_CLASSES + 1 : 17)

/*
 * The hot part of a thread's state, in initial-exec TLS so that the scope
 * calls and the allocation fast path reach it with one %fs-relative access.
 * Only the owner thread writes it, except stock_max and the watch's
 * `asked` byte (any thread may ask the owner to return its stock: the stock
 * protocol, account.c) and the registry links (under the registry lock,
 * thread.c). Fields other threads read are atomics accessed with
 * rd()/wr().
 */

/*
 * A thread's block-cache lists, under 4 KiB: mapped at its registration
 * (block_cache.c says why not from the backend), not in its TLS. The
 * library's TLS is initial-exec, so all of it must fit the static TLS
 * block, and a library loaded with dlopen() gets only what glibc keeps
 * spare there - about 1.7 KB in a small program, and glibc promises no
 * more than 512 bytes. Until then (and if that mapping failed) `bc` points
 * at an empty, read-only set of lists that keeps no block:
 * rcl__bcache_off(). Class c's list is at [c + 1], the number a block's
 * header gives its class (block_cache.h), so that a free indexes the
 * lists with the byte it read; entry 0, no class's, stays empty.
 */
#define RCL_BCACHE_NRS (RCL_BCACHE_CLASSES + 1)
struct slab;
struct rcl_bcache_lists {
    void             *top[RCL_BCACHE_NRS];     /* each class's list */
    _Atomic uint64_t  len[RCL_BCACHE_NRS];     /* low 16 bits: how many blocks each
                                                  holds (their charge, for
                                                  rcl_usage(): account.c); the
                                                  bits above: the allocations
                                                  each served as cache hits
                                                  (block_cache.h: RCL__LIST_HIT) */
    _Atomic long      adj[RCL_BCACHE_NRS];     /* blocks the slow paths moved
                                                  on (+) and off (-) each, hits
                                                  aside: what its frees are
                                                  worked out from (block_cache.h) */
    uint16_t          depth[RCL_BCACHE_NRS];   /* how many blocks each may hold
                                                  (block_cache.h) */
    uint32_t          gave_at[RCL_BCACHE_NRS]; /* the thread's frees when each was
                                                  last judged for its batch
                                                  (block_cache.c) */
    uint16_t          gave[RCL_BCACHE_NRS];    /* the blocks each gave the depot
                                                  since */
    size_t            room;     /* the sum of depth x charge over the classes:
                                   the most the lists can hold, in bytes */
    unsigned          blocked;  /* misses the byte bound kept from growing a
                                   list (block_cache.c) */
    uint8_t           grown[RCL_BCACHE_NRS];   /* each list has grown on a miss
                                                  since its depth was set to its
                                                  start */
    struct rcl_slab_own {                      /* by class number, as the lists,
                                                  to the last slab class: the
                                                  free slots of a slab this
                                                  thread alone takes (slab.c) */
        struct slab  *slab;
        void         *free;                    /* slots given back, linked */
        uint32_t      nr_free;
        uint32_t      fresh, end;              /* never-used slots [fresh, end) */
        uint32_t      written;                 /* the slab's slots below it had
                                                  a header written before */
    } slabs[RCL__SLAB_NRS];
};
extern const struct rcl_bcache_lists rcl__bcache_none;

/*
 * Why a thread's allocations must take the slow path, a byte a reason,
 * read as one word by the fast paths' entry test (rcl__busy_or_watched),
 * which only asks whether any is set. The thread itself sets and clears
 * `lockdep` (the lock checker wants its allocations: locks held, or a
 * NOWAIT or NORECLAIM scope), `reserve` (it is served from the I/O-flusher
 * reserve) and `reclaim` (it reclaims) with a plain store of the byte:
 * one instruction, which a signal handler cannot split (a handler that
 * takes a lock lets it go before it returns, and leaves the byte as it
 * found it), and no other thread writes those bytes, so nothing needs a
 * locked read-modify-write.
 * The lock checker sets and clears `lockdep` at every outermost lock,
 * where two locked RMWs of a shared word tripled the cost of an
 * annotation pair (docs/bench/patterns.md, "Figures, 2026-12-07, 08:30").
 * `asked` holds the requests of other threads and of signal handlers,
 * RCL__WATCH_DRAIN and RCL__WATCH_COLLECT: set with an atomic or of that
 * byte, taken back with an exchange (account.c). So no two threads write
 * one byte, and the word is only ever read whole, by its owner: a read
 * cannot lose a write. C11 says nothing of one object accessed at two
 * sizes; GCC's and Clang's atomics make them plain loads and stores of
 * that size, and both ThreadSanitizers, which see atomic accesses only
 * here, report nothing (test_lockdep.c's requests test).
 */
union rcl_watch {
    _Atomic uint32_t any;
    struct {
        _Atomic uint8_t lockdep, reserve, reclaim, asked;
    };
};
_Static_assert(sizeof(union rcl_watch) == sizeof(uint32_t), "the watch bytes are one word");

struct rcl_thread {
    _Atomic long          stock;      /* pre-charged bytes this thread may hand out:
                                         budget with no memory behind it */
    _Atomic long          stock_max;  /* spill back to the budget above this;
                                         negative: see account.c */
    uint64_t              hdr_tag;    /* block-header bits for this epoch, check
                                         secret included; 0 = detached */
    union rcl_watch       watch;      /* nonzero: this thread's allocations take
                                         the slow path (see union rcl_watch) */
    _Atomic unsigned      epoch;      /* rcl__epoch when registered; 0 = not */
    unsigned              in_reclaim; /* nesting of rcl__shrink() on this thread */
    unsigned char         busy;       /* nonzero while the thread is inside a call
                                         that touches this state or takes a
                                         library lock: a signal handler's call
                                         then takes the signal path
                                         (alloc_signal.c). A byte: the fast
                                         paths test it with one instruction
                                         and store it in 5 bytes of code
                                         rather than 8, and a cache-hit pair
                                         over mimalloc took 2 - 4 % less time
                                         (docs/bench/patterns.md, "Figures,
                                         2026-12-03, 23:05") */
    unsigned char         callout;    /* the program's callback this thread runs
                                         that the library's call goes on
                                         after, holding a lock across it or
                                         not (RCL__CALLOUT_*), or 0: the
                                         innermost, where one runs inside
                                         another. In busy's padding: no
                                         field moves, and the fast paths
                                         never read it */
    unsigned char         sig_depth;  /* rcl_signal_enter()s not yet left: a
                                         leave that finds none had no enter,
                                         whatever the mark says
                                         (alloc_signal.c), and a start finds
                                         it runs in a handler, however deep
                                         the handler's call (init.c). In the
                                         same padding */
    unsigned              io_flusher; /* scope bits rcl_io_flusher_set() added, +1 */
    _Atomic unsigned long nr_alloc, nr_free;   /* less what its lists count:
                                                  rcl__bcache_counts() */
    long                  reclaimed;  /* accounted bytes freed, less those charged,
                                         while in_reclaim: reclaim's net progress */
    /* The block cache (block_cache.h): blocks this thread freed, kept for its
     * next allocations of the same class, linked through their headers.
     * Only the owner writes the lists. Their blocks' charge, which the
     * budget counts as it counts the stock, is the lists' lengths times
     * their classes' charges (rcl__bcache_held): a block moving between
     * the program and the cache moves its charge between the lists and
     * what is handed out, and the stock is not touched. rcl_usage() and
     * rcl_stats_get() read the lengths, under the registry lock; `bc`
     * changes only while the thread is out of the registry. The lists
     * themselves are not in the TLS block (see struct rcl_bcache_lists). */
    struct rcl_bcache_lists *bc;
    unsigned              bcache_full;  /* frees the cache turned away since it
                                           last made room (block_cache.c) */
    struct rcl_thread    *next, **pprev;   /* registry (thread.c), under its lock */
    /* Signal safety (alloc_signal.c): blocks kept for allocations made by a
     * signal handler that interrupted this thread inside the library (a handler
     * only pops; the thread pushes or takes the whole list), their charge,
     * the blocks such handlers freed (a handler only pushes; the thread
     * takes the whole list), and what a handler asks of the thread: a
     * refill, and the report of its misuse, counted by kind above the
     * request bits (alloc_signal.c's SIG_WANT_* and SIG_BAD_*).
     * sig_orphan: nothing of the thread's will take sig_deferred again -
     * it never registered, or its exit took the list for the last time -
     * so handlers defer to the process's list (rcl__sig_orphans). */
    void *_Atomic         sig_stash;
    _Atomic size_t        sig_stash_bytes;
    void *_Atomic         sig_deferred;
    _Atomic unsigned      sig_want;
    _Atomic unsigned      sig_orphan;
    _Atomic unsigned long sig_allocs;   /* handlers' allocations, not yet in nr_alloc */
    /* What rcl_charge() charged in this epoch and rcl_uncharge() has not
     * taken back, the part of it this thread holds (account.c). Last, so
     * that the fast paths' fields keep their lines. */
    _Atomic long          explicit_held;
#ifdef RCL_DEBUG
    /* Bytes of charge this thread handed out (blocks, rcl_charge), less
     * those that came back through it: what rcl__acct_check() needs to
     * prove charged == handed out + stocks. Updated with atomic adds,
     * since a signal handler's allocation adds to it too. */
    _Atomic long          acct_out;
#endif
};

/* own_inc(), own_addm() and own_subm() (atomic.h) move 64-bit words. */
_Static_assert(sizeof(((struct rcl_thread *)0)->nr_alloc) == 8 &&
               sizeof(((struct rcl_thread *)0)->nr_free) == 8, "own_addm needs 64-bit counters");

extern __thread struct rcl_thread rcl__self RCL_TLS_IE;
/* The scope in force (reclaim.h inlines the scope calls on it); exported,
 * since the users' inline calls reach it directly. */
extern __thread struct rcl_scope_tls rcl_scope_tls RCL_TLS_IE;
#define rcl__scope (rcl_scope_tls.bits)

/* The thread is inside the library (see rcl_thread.busy). The fences keep
 * the compiler from moving the state's loads and stores across. */
static inline void rcl__busy_enter(struct rcl_thread *t)
{
    t->busy = 1;
    atomic_signal_fence(memory_order_seq_cst);
}
static inline void rcl__busy_leave(struct rcl_thread *t)
{
    atomic_signal_fence(memory_order_seq_cst);
    t->busy = 0;
}
/* Enters, unless the thread is inside already (a handler interrupted it
 * there): true then, and the mark is left as it was. The free fast path's
 * entry (rcl_alloc() tests the mark with its other reasons to leave,
 * rcl__busy_or_watched(), and stores it as this does). A test and a
 * store, not one instruction that does both: a handler that runs between
 * them finds the mark clear, makes its whole call and clears the mark
 * before the thread goes on, as if it had run before the test. x86-64's
 * bit-test-and-set on memory was the one instruction; the test and the
 * store took 5 - 10 % less time for an allocation and a free of a cached
 * block (docs/bench/patterns.md). */
static inline bool rcl__busy_try_enter(struct rcl_thread *t)
{
    if (t->busy)
        return true;
    rcl__busy_enter(t);
    return false;
}
/* Nonzero if the thread is inside the library or anything watches it
 * (rcl_thread.watch): the allocation fast path's entry test, one load and
 * an or, so that its caller branches once. */
static inline unsigned rcl__busy_or_watched(const struct rcl_thread *t)
{
    return t->busy | rd(t->watch.any);
}
/* Around a call out to the program's code (shrinkers, a domain's
 * may_reclaim, the report function): its own calls into the library are
 * ordinary ones. */
static inline unsigned rcl__busy_out(void)
{
    unsigned b = rcl__self.busy;
    atomic_signal_fence(memory_order_seq_cst);
    rcl__self.busy = 0;
    return b;
}
static inline void rcl__busy_back(unsigned b)
{
    rcl__self.busy = b;
    atomic_signal_fence(memory_order_seq_cst);
}
/* What rcl_thread.callout names. Set by the call that runs the callback
 * and put back as it found it when the callback returns or ends its
 * thread, never cleared, so that one callback's inside another's nest: a
 * may_reclaim asked in an isolate callback hands it back marked as the
 * isolate, and a walk inside a may_reclaim as the may_reclaim. A
 * may_reclaim asked by a pass has no handler of its own: the reclaim's
 * puts back what the pass began with (shrinker.c). */
#define RCL__CALLOUT_ISOLATE     1u  /* an LRU's isolate, under the LRU's lock */
#define RCL__CALLOUT_MAY_RECLAIM 2u  /* a domain's may_reclaim, asked by a pass or by
                                        an allocation weighing a wait (domain.c) */

/* A thread whose exit has run its last round (thread.c): `busy` stays
 * RCL__BUSY_EXITED, so that its later calls, from the destructors left,
 * take the signal handlers' path, and `sig_orphan` RCL__ORPHAN_EXITED,
 * which rcl__thread_attach() refuses: nothing would unregister it again.
 * A call out to the program's code clears `busy` for its duration
 * (rcl__busy_out); the calls made there on the ordinary path find the
 * thread unregistered, and charge and uncharge the budget directly. */
#define RCL__BUSY_EXITED   2u
#define RCL__ORPHAN_EXITED 2u
/* Frees a signal handler deferred, and the stash refill it asked for;
 * the caller is busy. */
void   rcl__sig_service(struct rcl_thread *t);
void   rcl__sig_flush(struct rcl_thread *t);    /* stash and deferred frees, now */
void   rcl__sig_exit(struct rcl_thread *t);     /* the same, for the last time */
void   rcl__sig_forget(struct rcl_thread *t);   /* the same at a new epoch */
void   rcl__sig_shutdown_refused(void);         /* counted, reported by the thread */
void   rcl__sig_start_refused(bool init);       /* the same, for rcl_init() or a first use */
void   rcl__sig_exit_bad(struct rcl_thread *t);  /* its handlers' misuse, the process's */
size_t rcl__sig_deferred_charge(const struct rcl_thread *t, unsigned long *nr);
/* Frees handlers deferred on threads whose own lists nothing takes. */
extern void *_Atomic rcl__sig_orphans;
/* Around a call that touches the thread's state without being one a
 * handler may make (rcl_charge, rcl_reclaim...): nests. */
static inline unsigned rcl__busy_hold(struct rcl_thread *t)
{
    unsigned b = t->busy;
    t->busy = 1;
    atomic_signal_fence(memory_order_seq_cst);
    return b;
}
static inline void rcl__busy_drop(struct rcl_thread *t, unsigned b)
{
    atomic_signal_fence(memory_order_seq_cst);
    t->busy = b;
}
/* A wait of an allocation inside the library that stays a cancellation
 * point (for memory, NOFAIL or throttled: reclaim.h, pthread_cancel()).
 * A cancel there ends the call and the library's part of the thread's
 * stack: the program's cleanup handlers and destructors that run next
 * are outside it, and must not find the mark, which would send their
 * allocations and frees to the handlers' path (thread.c). */
void rcl__busy_sleep_ns(long ns);

/* The rounds of destructors a thread's exit runs at least (POSIX's
 * minimum, glibc's and musl's number): a key set again in the last is
 * dropped, its destructor never called. The library's two exit keys
 * count them (thread.c, lockdep.c). */
#ifdef PTHREAD_DESTRUCTOR_ITERATIONS
#define RCL__EXIT_ROUNDS PTHREAD_DESTRUCTOR_ITERATIONS
#else
#define RCL__EXIT_ROUNDS 4
#endif
static inline bool rcl__sig_pending(const struct rcl_thread *t)
{
    return rd(t->sig_want) || atomic_load_explicit(&t->sig_deferred, memory_order_relaxed) ||
           atomic_load_explicit(&rcl__sig_orphans, memory_order_relaxed);
}

/* The bits of rcl_thread.watch.asked. Set by another thread (account.c's
 * drain request) or a signal handler: the next allocation or charge takes
 * the slow path, which meets the request. */
#define RCL__WATCH_DRAIN   0x1u
/* Set by the thread that trimmed the backend, where threads own their
 * heaps (mimalloc): the next slow path collects this thread's heap, the
 * only way blocks other threads freed into it leave the resident set. */
#define RCL__WATCH_COLLECT 0x2u

/* May an allocation whose flags the scope narrowed to `masked` reclaim
 * directly? Not without DIRECT_RECLAIM, and never from inside reclaim. */
static inline bool rcl__may_reclaim(rcl_gfp_t masked)
{
    return (masked & RCL__DIRECT_RECLAIM) && !(rcl__scope & RCL_SCOPE_NORECLAIM);
}

/* Charge handed out (delta > 0) or given back (< 0) by thread t: the
 * bookkeeping of rcl__acct_check(), in RCL_DEBUG builds only. */
#ifdef RCL_DEBUG
#define rcl__acct_out(t, delta) \
    ((void)atomic_fetch_add_explicit(&(t)->acct_out, (long)(delta), memory_order_relaxed))
#else
#define rcl__acct_out(t, delta) ((void)(t), (void)sizeof(delta))
#endif

#endif /* RCL_THREAD_H */
