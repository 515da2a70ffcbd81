/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the library's source files share: the prototypes of
 * each subsystem, by file. Nothing here is public: every name is rcl__
 * (double underscore) and hidden from the shared library's symbol table by
 * the version script (src/reclaim.map). The rest is split by kind, and
 * included from here:
 *   atomic.h    branch hints, the TLS model, relaxed loads and stores, the
 *               locks that spin a while before they sleep
 *   sanitize.h  which sanitizer the build has; ASan poisoning, LSan roots
 *   debug.h     rcl__assert, rcl__assert_held (debug.c)
 *   types.h     the shared structures: budget, counters, options, ...
 *   thread.h    a thread's state and the fast paths' inlines
 *   stock.h     the stock's fast-path inlines (its protocol: account.c)
 *   block_cache.h  the block header and the block cache's inlines
 *               (included where they are used: alloc.c, block_cache.c)
 *   block.h     what alloc.c and alloc_signal.c share of a block
 *   backend.h   the allocator underneath (included where it is called)
 *
 * Which file owns what:
 *   init.c      life cycle, configuration
 *   options.c   the RECLAIM_* table, its values' parsers, rcl_config_from_env()
 *   version.c   rcl_version()
 *   clock.c     rcl__now_ns(), the one clock, and waits timed by it;
 *               rcl__page_size()
 *   gfp.c       the flags' names for reports (rcl__gfp_str), unknown bits refused
 *   scope.c     per-thread scopes, current_gfp, context capture/adopt
 *   account.c   budget, watermarks, per-thread stocks (the stock protocol)
 *   thread.c    the thread registry: rcl__self, attach, exit, the list
 *   alloc.c     the rcl_alloc family, block headers, valloc
 *   alloc_signal.c  the same calls from a signal handler: stash, deferred frees
 *   block_cache.c, block_cache.h   the per-thread block cache, its classes
 *   slab.c, slab.h   the slabs: spans the library carves into slots
 *   region.c, region.h   over glibc, the regions the small classes' spans
 *               come from, and the map of them by address
 *   reclaim.c   direct reclaim, the background reclaimer, rcl_reclaim
 *   shrinker.c  shrinker registry, do_shrink (the kernel's scan arithmetic)
 *   domain.c    reclaim domains, the per-shrinker decision, journal_info
 *   lockdep*.c  the lock checker (lockdep.h), its reclaim model a client
 *   cgroup.c    the process's memory cgroup, the automatic limit (cgroup.h)
 *   footprint.c real memory held against what was charged
 *   pressure.c  the pressure thread: PSI, systemd's protocol, cgroup usage
 *               near the limit, the step policy
 *   mempool.c, workqueue.c, io_flusher.c, lru.c   forward-progress tools
 *   stats.c, report.c   counters and printing; the one report channel
 *   symbolize.c function names for report backtraces
 *   fork.c      pthread_atfork handlers; the one lock order of the library
 *   debug.c     what a broken invariant does
 */
#ifndef RCL_INTERNAL_H
#define RCL_INTERNAL_H

/* The library defines the scope calls the header inlines for its users. */
#define RCL_NO_INLINE_SCOPES 1
#include "reclaim.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h"
#include "debug.h"
#include "types.h"
#include "thread.h"
#include "stock.h"

/* ------------------------------------------------------------------------ */
/* Life cycle (init.c)                                                       */
/* ------------------------------------------------------------------------ */

extern _Atomic int      rcl__ready;   /* 1 once initialised */
extern _Atomic unsigned rcl__epoch;   /* changes at every init; never 0 */
extern struct rcl_config rcl__cfg;    /* the configuration in force */
int  rcl__init_slow(void);   /* -EBUSY: refused, in a signal handler */
static inline void rcl__ensure_init(void)
{
    /* Not 1: not initialised, or a forked child with a thread to restart. */
    if (unlikely(atomic_load_explicit(&rcl__ready, memory_order_acquire) != 1))
        rcl__init_slow();
}
/* The same, for a call that must not go on over a library left unstarted
 * because its start was refused: false in a signal handler (init.c). */
static inline bool rcl__ensure_init_here(void)
{
    if (likely(atomic_load_explicit(&rcl__ready, memory_order_acquire) == 1))
        return true;
    return rcl__init_slow() != -EBUSY;
}
/* First use with the thread inside the library's mark, returning what
 * rcl__busy_drop() puts back: for the calls reclaim.h promises a handler
 * the handlers' path in. A start marks the thread itself, whatever call
 * makes it (init.c says why); these keep the mark after it, where the
 * thread's registration and the locks a handler's ordinary allocation
 * would take follow. */
static inline unsigned rcl__busy_init(void)
{
    unsigned b = rcl__busy_hold(&rcl__self);
    rcl__ensure_init();
    return b;
}

/* Monotonic nanoseconds, condition variables whose timed waits go by
 * that clock and their deadlines, and the page size (clock.c, a leaf). */
unsigned long long rcl__now_ns(void);
void rcl__cond_init_monotonic(pthread_cond_t *cond);
struct timespec rcl__deadline_after_ns(unsigned long long ns);
size_t rcl__page_size(void);
/* "DEFAULT|NOFAIL"-style rendering of flags, into buf (gfp.c, a leaf).
 * RCL__GFP_STR_MAX holds every combination, the contradictory ones too
 * ("IO|FS|DIRECT_RECLAIM|HIGH|MEMALLOC|NOMEMALLOC|NOFAIL|NORETRY|NOWARN|ZERO",
 * 72 characters); a shorter buffer gets the name cut, ending in "...". */
#define RCL__GFP_STR_MAX 80
const char *rcl__gfp_str(rcl_gfp_t gfp, char *buf, size_t len);
/* Every bit reclaim.h defines. An entry point taking flags passes them
 * through rcl__gfp_known(), which reports others and clears them. */
#define RCL__GFP_ALL ((rcl_gfp_t)(RCL__ZERO * 2 - 1))
rcl_gfp_t rcl__gfp_unknown(const char *fn, rcl_gfp_t gfp);
static inline rcl_gfp_t rcl__gfp_known(const char *fn, rcl_gfp_t gfp)
{
    return unlikely(gfp & ~RCL__GFP_ALL) ? rcl__gfp_unknown(fn, gfp) : gfp;
}
/* NOFAIL that may not wait contradicts itself: refused (EINVAL) by the
 * charge's slow path, so every fast path that could serve it leaves for
 * that path first, whatever its stock or cache holds. */
static inline bool rcl__gfp_nofail_nowait(rcl_gfp_t gfp)
{
    return (gfp & (RCL__NOFAIL | RCL__DIRECT_RECLAIM)) == RCL__NOFAIL;
}
/* The refusal itself, for a call that would charge nothing (realloc's
 * shrink in place): counted, reported unless NOWARN; returns -EINVAL. */
int rcl__nofail_nowait_refuse(size_t size, rcl_gfp_t gfp);

/* ------------------------------------------------------------------------ */
/* The thread registry (thread.c)                                            */
/* ------------------------------------------------------------------------ */

/* Registers the thread if it is not; false, leaving it out, for a thread
 * past its exit (RCL__ORPHAN_EXITED, thread.h): its caller then charges
 * nothing to it and uncharges straight to the budget. */
bool rcl__thread_attach(struct rcl_thread *t);
int  rcl__thread_key_make(void);     /* at the first start: 0 or -errno */
/* The registered threads, first to last through ->next, under the lock. */
void rcl__registry_lock(void);
void rcl__registry_unlock(void);
struct rcl_thread *rcl__registry_first(void);
bool rcl__registry_held(void);          /* the caller holds the lock */
void rcl__threads_detach_all(void);                /* shutdown */
/* Counters of the live threads and the exited ones, and what their block
 * caches hold. */
void rcl__threads_sum(unsigned long *allocs, unsigned long *frees, size_t *cached);

/* ------------------------------------------------------------------------ */
/* Blocks (alloc.c) and the block cache (block_cache.c, block_cache.h)       */
/* ------------------------------------------------------------------------ */

/* The header bits of a plain block allocated in `epoch`. */
uint64_t rcl__hdr_tag(unsigned epoch);
/* Empties the thread's block cache: the one drain entry point; only ever
 * for the caller's own rcl__self, or at its exit. */
void   rcl__bcache_drain(struct rcl_thread *t);
/* Empties the cache of a thread registering, its lists at their start
 * (mapped at its first registration, or an exited thread's kept); at its
 * exit, keeps the lists for the next thread or unmaps them. */
void   rcl__bcache_attach(struct rcl_thread *t);
void   rcl__bcache_release(struct rcl_thread *t);
/* The lists of exited threads, kept for the next ones, given back. */
void   rcl__bcache_trim(void);
/* Sizes every thread's block cache for a budget of `limit` bytes. */
void   rcl__bcache_limit(size_t limit);
/* The charge of the blocks a thread's cache holds: for any thread that
 * holds the registry lock, or for the owner. */
size_t rcl__bcache_held(const struct rcl_thread *t);
/* The allocations a thread's lists served as cache hits and the frees
 * they took (block_cache.h: RCL__LIST_HIT), read as rcl__bcache_held()
 * is: not in the thread's own counts. */
void rcl__bcache_counts(const struct rcl_thread *t, unsigned long *hits, unsigned long *frees);
/* The depot (block_cache.c): blocks freed on one thread for another's
 * allocations. Drained before every trim, by every drain and at shutdown;
 * what it holds is not charged. */
void   rcl__depot_drain(void);
size_t rcl__depot_held(void);
/* The slabs of the larger classes (slab.c): every wholly free slab they
 * keep back to the backend, before a trim and at shutdown, and a step of
 * their ageing: the pages under the free slots of the slabs in use left
 * untouched since the step before back to the system. */
void   rcl__slab_trim(void);
/* The least time between two steps of the trims' ageing of the slabs in
 * use (slab.c): a slab left untouched for a step gives the pages under
 * its free slots back at the next. A second; the tests and bench_footprint
 * set 0, every trim a step. */
extern _Atomic unsigned long long rcl__slab_park_ns;
/* How long a class of slabs remembers the most it had in use (slab.c):
 * it keeps emptied slabs up to that peak of the last one or two such
 * windows. A second; the tests set it. */
extern _Atomic unsigned long long rcl__slab_keep_ns;

/* ------------------------------------------------------------------------ */
/* Accounting (account.c)                                                    */
/* ------------------------------------------------------------------------ */

/* The largest limit the budget takes (a larger one is taken as this):
 * the per-thread books are signed words. */
#define RCL__LIMIT_MAX ((size_t)LONG_MAX)
int    rcl__account_start(const struct rcl_config *cfg);
void   rcl__account_stop(void);
/* A registered thread's stock: starts empty; goes back to the budget at
 * its exit or in a forked child (t only read); cleared at unregistering. */
void   rcl__stock_attach(struct rcl_thread *t);
void   rcl__stock_return(const struct rcl_thread *t);
void   rcl__stock_detach(struct rcl_thread *t);
/* Charge `size` for an allocation with (unmasked) flags gfp: the slow path,
 * with reclaim, retries and NOFAIL. 0 or -ENOMEM/-E2BIG/-EINVAL. */
int    rcl__charge(struct rcl_thread *t, size_t size, rcl_gfp_t gfp);
/* rcl_charge() and rcl_uncharge() for memory of the library's own, kept
 * apart from the program's explicit charges. */
int    rcl__charge_own(size_t bytes, rcl_gfp_t gfp);
void   rcl__uncharge_own(size_t bytes);
/* The stock protocol (account.c explains it): the thread's stock back to
 * the budget down to `keep` (never below what backs its cached blocks);
 * around a reclaim; the signal stash's charge back into the stock, and
 * the excess over stock_max spilled; t's next allocation or charge sent
 * to the slow path. */
void   rcl__stock_flush(struct rcl_thread *t, long keep);
long   rcl__stock_reclaim_begin(struct rcl_thread *t);
void   rcl__stock_reclaim_end(struct rcl_thread *t, long before);
void   rcl__stock_refund(struct rcl_thread *t, size_t bytes);
void   rcl__stock_spill(struct rcl_thread *t);
void   rcl__slow_path_ask(struct rcl_thread *t);
/* After a trim: threads that own their backend heaps collect them. */
void   rcl__owners_collect(void);
size_t rcl__headroom(void);
/* Test seam: NULL (the default). Tests point it at a function that holds a
 * charge between its read of the limit and its compare-and-swap on the
 * budget, to change the limit there. Atomic, stored and read relaxed (a
 * plain load on x86): a test may store it while charging threads run, and
 * the store publishes nothing; what the hook itself reads, it reads
 * through atomics of its own, its thread's variables or what was written
 * before the thread that calls it was started. */
extern void (*_Atomic rcl__charge_hook)(void);
/* The automatic budget moving with the cgroup (cgroup.c, for the pressure
 * thread): false (and nothing changed) once the program chose a limit
 * (rcl_set_limit). */
bool   rcl__set_auto_limit(size_t bytes);
/* The budget's invariants (charged == handed out + stocks + cached blocks;
 * no stock negative), at a quiet point: 0, or -1 with the reason in why.
 * Exact in RCL_DEBUG builds; elsewhere charged >= stocks + cached blocks. */
int    rcl__acct_check(char *why, size_t len);

/* The I/O-flusher reserve (flusher_reserve.c): room for a block header and
 * `size` bytes, NULL when none is left; the block's header pointer back;
 * whether a header lies in the reserve; a flusher thread starting or
 * stopping to allocate from it (enter: false when there is no reserve). */
void *rcl__resv_alloc(size_t size);
void  rcl__resv_free(void *hdr);
bool  rcl__resv_owns(const void *hdr);
bool  rcl__resv_enter(struct rcl_thread *t);
void  rcl__resv_leave(struct rcl_thread *t);

/* ------------------------------------------------------------------------ */
/* The real footprint (footprint.c)                                          */
/* ------------------------------------------------------------------------ */

#define RCL__FOOTPRINT_OFF    0
#define RCL__FOOTPRINT_RSS    1
#define RCL__FOOTPRINT_CGROUP 2
/* auto_limit: the budget is the automatic one (cgroup mode where a cgroup
 * limit gives it). */
void rcl__footprint_start(bool auto_limit);
/* The limit moved (registry lock held); chosen: by the program, so the
 * budget is no longer the automatic one. The mode follows the rule. */
void rcl__footprint_follow(bool chosen);
/* The pressure thread saw the cgroup limit move: `dir` is the level whose
 * limit gives the automatic budget now, NULL when none does. */
struct rcl_cgroup;
void rcl__footprint_cgroup(const struct rcl_cgroup *cg, const char *dir);
void rcl__footprint_stop(void);
/* Measure now and update rcl__acct.outside; skipped while another thread
 * samples. */
void rcl__footprint_sample(void);
/* `bytes` were taken from the budget: sample when enough have been. */
void rcl__footprint_charged(size_t bytes);
void rcl__footprint_limit(size_t limit);        /* the sampling step follows */
void rcl__footprint_inactive(size_t bytes);     /* cgroup inactive page cache */
int  rcl__footprint_mode(void);
unsigned long rcl__footprint_samples(void);
void rcl__footprint_atfork_child(void);

/* ------------------------------------------------------------------------ */
/* Reclaim (reclaim.c, shrinker.c)                                           */
/* ------------------------------------------------------------------------ */

/* Reclaim at least `target` accounted bytes in context gfp, priority 12..0,
 * in NORECLAIM scope. Returns bytes this thread saw freed. */
size_t rcl__shrink(struct rcl_thread *t, size_t target, rcl_gfp_t gfp);
/* rcl__shrink() for an allocation, counted in the statistics. */
size_t rcl__direct_reclaim(struct rcl_thread *t, size_t target, rcl_gfp_t gfp);
/*
 * One pass over the registry at one priority, and the shrinker it holds
 * (NULL between two). Its state lives in the frame of rcl__shrink(),
 * which pushes the one cleanup handler for all its passes: a thread that
 * ends inside a callback (pthread_exit(), which the cancel state does
 * not defer) runs that handler with the frames below it gone, the pass's
 * among them had it been there. A handler pushed for each pass instead
 * cost a setjmp each, 13 to a reclaim.
 */
struct rcl_shrink_pass {
    struct rcl_shrinker    *s;
    unsigned                ctx;
    unsigned                scope;    /* the scope s's callbacks were called in */
    bool                    checked;  /* the lock checker holds s's pass open */
    rcl_gfp_t               gfp;      /* the context the checker was told */
    int                     cancel;   /* the cancel state before the pass */
    unsigned                floor;    /* the domain floor before the pass */
    unsigned                adopts;   /* the adopt depth s's callbacks were called at */
    unsigned char           callout;  /* the thread's mark before the pass
                                         (rcl_thread.callout) */
    struct rcl_shrink_pass *outer;
};
void   rcl__shrink_slab(rcl_gfp_t gfp, int priority, struct rcl_shrink_pass *pass);
/* The innermost open pass of this thread; for a thread that ends inside
 * a callback, the undoing of those opened since that mark, innermost
 * first, as their returns would have gone. */
const struct rcl_shrink_pass *rcl__shrink_slab_mark(void);
void   rcl__shrink_slab_unwound(const struct rcl_shrink_pass *mark);
/* Is another thread inside a shrinker that context gfp may run itself? */
bool   rcl__shrinkers_busy(rcl_gfp_t gfp);
/* rcl_shrinker_unregister() for `caller`, which says what it did: 0,
 * -EDEADLK from s's own callback or where the wait would close a circle
 * of unregisters made from callbacks, -EINVAL for no registered shrinker (both
 * reported, nothing done). The quiet form reports nothing, copying s's
 * name into `name` on -EDEADLK: a caller that holds an object of its own
 * reports the refusal with rcl__shrinker_unregister_report() once it has
 * let that go, since a report function may end the thread. Is a reclaim
 * pass over the shrinkers running on this thread? */
int    rcl__shrinker_unregister(struct rcl_shrinker *s, const char *caller);
int    rcl__shrinker_unregister_quiet(struct rcl_shrinker *s, char name[RCL_NAME_MAX]);
void   rcl__shrinker_unregister_report(const char *caller, int err, const void *s,
                                       const char *name);
bool   rcl__shrinking_here(void);
/* Test seam: how many unregisters have marked their shrinker dead and gone
 * to wait for a scan in flight, ever. Counted under the registry's lock
 * just before its first wait lets the lock go, read relaxed: a test that
 * sees it move knows a fork after that finds the unregister waiting,
 * which a thread seen asleep does not prove. The count publishes nothing:
 * what the test does next (a fork, an unregister, a scan's return) takes
 * the registry's lock, and that orders it after the count. */
extern _Atomic unsigned long rcl__unregister_waits;
/* In an object's child handler: is s, which a destroy on a thread not in
 * the child may have been unregistering, still registered? If so it is
 * live again, for the child's own destroy to unregister. */
bool   rcl__shrinker_atfork_keep(struct rcl_shrinker *s);

/* Bounded reclaim (shrinker.c): this thread's passes stop between scan
 * calls once the clock passes `deadline` (rcl__now_ns(); 0 = unbounded),
 * and add each shrinker's time, net accounted bytes and objects to *tr
 * (NULL = no trace). Returns the bound it replaces, which a reclaim
 * nested in a callback of a bounded one (a callback that lifted its
 * NORECLAIM scope) puts back when it ends: the outer reclaim's bound and
 * trace are its own still. */
struct rcl__shrink_bound_state {
    unsigned long long         deadline;
    unsigned long              scans;
    struct rcl__shrink_trace  *trace;
};
struct rcl__shrink_bound_state rcl__shrink_bound(unsigned long long deadline,
                                                 struct rcl__shrink_trace *tr);
void   rcl__shrink_bound_put(const struct rcl__shrink_bound_state *old);
bool   rcl__shrink_expired(void);
/* An allocation short of budget after its bounded direct reclaim waits a
 * little for the background reclaimer (counted as throttled), or yields
 * where there is none; `round` counts its earlier waits. */
void   rcl__reclaim_throttle(unsigned round);
bool   rcl__reclaim_trim_now(void);        /* before an allocation fails */
/* What every trim gives back, uncounted: the depot and the empty slabs to
 * the backend, then the backend's free memory to the system. */
void   rcl__trim_memory(void);
/* The bound on one direct reclaim's shrinker work, ns (RECLAIM_DIRECT_US). */
extern _Atomic unsigned long long rcl__direct_bound_ns;
void   rcl__reclaim_wake(void);            /* wake the background reclaimer */
bool   rcl__is_background(void);           /* the caller is the background reclaimer */
/* Ask the background reclaimer to free `bytes` even though the budget has
 * headroom (memory pressure from outside the process). */
void   rcl__reclaim_request(size_t bytes);
int    rcl__reclaim_start(const struct rcl_config *cfg);
void   rcl__reclaim_stop(void);
void   rcl__shrinkers_drop(void);          /* shutdown: forget every shrinker */
unsigned rcl__shrinkers_stats(struct rcl_shrinker_stats *out, unsigned max);

/* ------------------------------------------------------------------------ */
/* Domains (domain.c)                                                        */
/* ------------------------------------------------------------------------ */

/* How a shrinker owned by `owner` may be called by this thread: returns
 * true to skip it, else narrows *gfp. Asks owner's may_reclaim where it
 * has a say, so its caller holds no library lock. */
bool rcl__domain_filter(struct rcl_domain *owner, rcl_gfp_t *gfp);
/* The same short of asking: true to skip; else *gfp narrowed, and *ask
 * set where owner's may_reclaim has the last word (the thread is inside
 * owner). Calls none of the program's code, so a lock may be held. */
bool rcl__domain_narrow(const struct rcl_domain *owner, rcl_gfp_t *gfp, bool *ask);
/* owner's may_reclaim, asked for this thread, which is inside owner. */
bool rcl__domain_allows(struct rcl_domain *owner);
/* Around the program's callbacks (a may_reclaim, a shrinker's, a work
 * item): the domains the thread is inside are the caller's, which an exit
 * or a restore from the callback may not leave. raise returns the floor
 * (with the adopted domains that did not fit) put back after; leftover
 * puts back the latter and exits the domains the callback entered and
 * left. */
unsigned rcl__domain_floor_raise(void);
void rcl__domain_floor_put(unsigned was);
unsigned rcl__domain_floor_leftover(unsigned was);
bool rcl__domain_restore_reaches(const struct rcl_ctx *c);
/* The thread's adopt depth before a callback, and the adopts it made and
 * never restored, forgotten once it returns (scope.c); how many. */
unsigned rcl__adopts_mark(void);
unsigned rcl__adopts_forget(unsigned mark);
/* The rules of rcl_domain_enter for owner's shrinkers, short of asking its
 * may_reclaim: OWN (the thread is inside owner: may_reclaim decides), NOFS
 * (inside a domain of another depth), SKIP (domains overflowed); 0: free.
 * owner is only compared, never read: the lock checker passes domains
 * that may be going away, with the depth it recorded. */
#define RCL__DOMAIN_OWN  0x1u
#define RCL__DOMAIN_NOFS 0x2u
#define RCL__DOMAIN_SKIP 0x4u
unsigned rcl__domain_rule(const struct rcl_domain *owner, unsigned owner_depth);
/* A shrinker of d registered: false, nothing counted, if d is no live
 * domain (never was, destroyed, being destroyed). And unregistered. */
bool rcl__domain_shrinker_hold(struct rcl_domain *d);
void rcl__domain_shrinker_put(struct rcl_domain *d);
void rcl__domain_capture(struct rcl_ctx *c);
void rcl__domain_adopt(const struct rcl_ctx *c);
void rcl__domain_restore(const struct rcl_ctx *c);
bool rcl__domain_inside(void);   /* inside any domain, overflowed ones included */
/* The domains this thread is inside, innermost last; returns how many (the
 * tests read the thread's domains through it). */
unsigned rcl__domain_entered(struct rcl_domain **out, unsigned max);

/* ------------------------------------------------------------------------ */
/* Lock checker (lockdep.h)                                                  */
/* ------------------------------------------------------------------------ */

#include "lockdep.h"   /* rcl__lockdep_*: what the library calls of the checker */
/* Sets the whole scope word (context restore, reclaim undoing a shrinker's
 * leaked save), the checker told (scope.c); an I/O flusher keeps NOIO.
 * Every other change goes through save and restore. */
void rcl__scope_put(unsigned bits);
void rcl__scope_watch(bool on);
/* The thread is an I/O flusher (io_flusher.c): no restore clears its NOIO. */
void rcl__scope_flusher(bool on);
/* rcl_io_flusher_set(0), returning to `ret`, restores its on's save. */
void rcl__scope_flusher_end(unsigned saved, const void *ret);
/* Threads holding the saved state of adopts restored out of order, which
 * wait for the restore of the adopt inside them (scope.c): for tests. */
unsigned rcl__scope_early_threads(void);

/* Report frames (symbolize.c): "fn+0xoff (module)", from the module file's
 * symbol table, static functions included; forget drops the cached tables. */
void rcl__symbolize(const void *addr, char *buf, size_t len);
void rcl__symbolize_forget(void);

/* ------------------------------------------------------------------------ */
/* Mempools (mempool.c)                                                      */
/* ------------------------------------------------------------------------ */

/* The threads counted waiting in the pool's allocations. A thread is
 * counted in the critical section in which it first sleeps, so a destroy
 * once this says 1, which takes the lock to wake the waiters, finds it
 * asleep (the tests' handshake), or past its first sleep's bound, to see
 * the destroy at its next look. */
unsigned rcl__mempool_waiters(struct rcl_mempool *pool);

/* ------------------------------------------------------------------------ */
/* Workqueues (workqueue.c)                                                  */
/* ------------------------------------------------------------------------ */

/* Every library thread starts here (init.c), with every signal blocked;
 * `what` is "worker", "rescuer", "pressure" or "reclaimer". */
int rcl__thread_start(pthread_t *th, void *(*fn)(void *), void *arg, const char *what);
/* Test seam: NULL (the default) means pthread_create. Tests point it at a
 * function that fails, to prove a workqueue's rescuer keeps work moving.
 * Atomic, stored and read relaxed, as rcl__charge_hook. */
extern int (*_Atomic rcl__thread_create_hook)(pthread_t *th, void *(*fn)(void *), void *arg,
                                              const char *what);
/* Test seam: called in a start with init_lock held (init.c); NULL.
 * Atomic, stored and read relaxed, as rcl__charge_hook. */
extern void (*_Atomic rcl__start_hook)(void);

/* ------------------------------------------------------------------------ */
/* I/O flushers (io_flusher.c)                                               */
/* ------------------------------------------------------------------------ */

/* prctl(2), as io_flusher.c calls it; tests replace it to see the exact
 * arguments (an unprivileged process cannot read them back). */
extern int (*rcl__prctl)(int option, unsigned long arg2, unsigned long arg3,
                         unsigned long arg4, unsigned long arg5);

/* ------------------------------------------------------------------------ */
/* Pressure (pressure.c)                                                     */
/* ------------------------------------------------------------------------ */

/* Follows the signals rcl__cfg asks for; auto_limit: the budget is the
 * automatic one, and moves with the cgroup limit. */
int  rcl__pressure_start(bool auto_limit);
/* Stops and joins the thread, init_lock let go; its descriptors stay. */
void rcl__pressure_join(void);
/* Joins it if still running and closes its descriptors; init_lock held. */
void rcl__pressure_stop(void);
bool rcl__is_pressure_thread(void);     /* the caller is the pressure thread */
/* Test seam: the full ticks the pressure thread has ended, over every
 * start. A tick counted after a test changed a cgroup file began after the
 * change only if it is the second one counted since: tests wait for that
 * instead of sleeping for a second or two and hoping a tick came. Counted
 * once a second, on the pressure thread alone, with release, for tests
 * that read it with acquire: what the tick did (the automatic limit it
 * set, the reports it made) is what they then check. */
extern _Atomic unsigned long rcl__pressure_ticks;
/* Test seam: the clock the pressure events' rate limit reads, rcl__now_ns
 * unless a test scripts it: the gap between two events is then the one
 * the test sets, not whatever a loaded machine made of it. Atomic and
 * read relaxed, as rcl__charge_hook. */
extern unsigned long long (*_Atomic rcl__pressure_clock)(void);

/* ------------------------------------------------------------------------ */
/* Statistics and reports (stats.c, report.c)                                */
/* ------------------------------------------------------------------------ */

#define rcl__count(field, n) atomic_fetch_add_explicit(&rcl__stats.field, (n), memory_order_relaxed)
void rcl__stats_reset(void);

/* options.c: the RECLAIM_* table (its rows: types.h). */
extern const struct rcl__option rcl__options[];
extern const unsigned rcl__nr_options;
const struct rcl__option *rcl__option_find(const char *name);
/* 0 and *v, or -EINVAL when s is not a value the option takes. */
int rcl__option_parse(const struct rcl__option *o, const char *s, unsigned long long *v);
/* What a value of the option looks like, for the report of a refused one. */
void rcl__option_expected(const struct rcl__option *o, char *buf, size_t len);
/* The longest file name the library puts after RECLAIM_CGROUP_ROOT of its
 * own (pressure.c's), its NUL counted: a longer root would have it cut
 * short in a PATH_MAX buffer, and a file nobody named read. The mount
 * points put after the root are checked where they are joined (cgroup.c). */
#define RCL__ROOT_FILE_MAX sizeof("/proc/pressure/memory")
#define RCL__ROOT_MAX      (PATH_MAX - RCL__ROOT_FILE_MAX)
/* A process option's variable (NULL: unset); its name must be the table's. */
const char *rcl__option_env(const char *name);
/* Parses "256M" etc.; -EINVAL on junk or overflow. */
int rcl__parse_size(const char *s, size_t *out);
/* A size, or a percentage of `whole` ("10%"); -EINVAL on anything else. */
int rcl__option_size_of(const char *s, uint64_t whole, uint64_t *out);

void rcl__report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, and counted() once the report function has returned from it
 * or ended its thread in it: a count that goes up finds the report made. */
void rcl__report_counted(void (*counted)(void), const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Ends the NUL-terminated text that fills buf[size] with a mark that it
 * was cut there. */
void rcl__report_mark_cut(char *buf, size_t size);

/* Reports the calling thread makes while it holds the life cycle's lock
 * (init.c), held back until it has let go of it: a report function may
 * call the library, which waits for that lock to start the library. They
 * are kept in order, one after another, each whole while it fits: the one
 * that does not is cut where the room ends, and those after it are
 * counted. One room for them all rather than a slot each: the longest of
 * them, the environment's refusal (options.c), names every variable it
 * ignored, and a slot each would cut it short or take several times the
 * stack the life cycle's calls give these. */
#define RCL__HELD_BYTES 2048
struct rcl__held_reports {
    unsigned n, lost;
    size_t used;
    char text[RCL__HELD_BYTES];     /* n reports, each ended by its NUL */
};
void rcl__report_hold(void);
void rcl__report_unhold(struct rcl__held_reports *out);
void rcl__report_deliver(const struct rcl__held_reports *held);
/* How many report functions this thread is inside, nested. */
unsigned rcl__reporting_depth(void);

/* Cancellation off across a stretch that holds a library lock or pin over
 * a cancellation point (a wait, a user callback): pthread_cancel then takes
 * effect at the thread's next cancellation point after the stretch. */
static inline int rcl__nocancel_begin(void)
{
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    return old;
}
static inline void rcl__nocancel_end(int old)
{
    int ignored;
    pthread_setcancelstate(old, &ignored);
}
/* A cleanup handler for waits that stay cancellable: the mutex the wait
 * holds is released if the thread is cancelled in it. */
static inline void rcl__unlock_cleanup(void *mutex)
{
    pthread_mutex_unlock(mutex);
}
/* At most one report a second per `last` (a caller-owned timestamp). */
void rcl__report_limited(_Atomic long long *last, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------------ */
/* fork() (fork.c; the lock order is documented there)                       */
/* ------------------------------------------------------------------------ */

void rcl__fork_register(void);          /* the pthread_atfork handlers, once */
void rcl__fork_track(struct rcl__fork_obj *o, pthread_mutex_t *lock,
                     void (*child)(struct rcl__fork_obj *o));
void rcl__fork_untrack(struct rcl__fork_obj *o);    /* tolerates untracked */
/* A destroy's claim on its object: false when o is no live object's
 * (destroyed already, or never made) or another destroy holds it. */
bool rcl__fork_claim(struct rcl__fork_obj *o);
void rcl__fork_unclaim(struct rcl__fork_obj *o);    /* the destroy refused */
/* In an object's child handler: a claim made by a thread not in the child,
 * and its end where the handler finds the object whole. */
bool rcl__fork_claimed_by_gone(const struct rcl__fork_obj *o);
void rcl__fork_unclaim_gone(struct rcl__fork_obj *o);
/* rcl__ready in a child whose pressure thread is still to come back. */
#define RCL__READY_FORKED 2

/* Each file's share of the fork handlers, in the lock order. */
void rcl__init_atfork_prepare(void);
void rcl__init_atfork_parent(void);
/* pressure: the pressure thread was running in the parent. */
void rcl__init_atfork_child(bool pressure);
void rcl__shrinker_atfork_prepare(void);
void rcl__shrinker_atfork_parent(void);
void rcl__shrinker_atfork_child(void);
void rcl__reclaim_atfork_prepare(void);
void rcl__reclaim_atfork_parent(void);
void rcl__reclaim_atfork_child(void);
void rcl__thread_atfork_prepare(void);
void rcl__thread_atfork_parent(void);
void rcl__thread_atfork_child(void);
void rcl__depot_atfork_prepare(void);
void rcl__depot_atfork_parent(void);
void rcl__depot_atfork_child(void);
void rcl__slab_atfork_prepare(void);
void rcl__slab_atfork_parent(void);
void rcl__slab_atfork_child(void);
void rcl__region_atfork_prepare(void);
void rcl__region_atfork_parent(void);
void rcl__region_atfork_child(void);
void rcl__resv_atfork_prepare(void);
void rcl__resv_atfork_parent(void);
void rcl__resv_atfork_child(void);
void rcl__domain_atfork_prepare(void);
void rcl__domain_atfork_parent(void);
void rcl__domain_atfork_child(void);
void rcl__symbolize_atfork_prepare(void);
void rcl__symbolize_atfork_parent(void);
void rcl__symbolize_atfork_child(void);
void rcl__report_atfork_prepare(void);
void rcl__report_atfork_parent(void);
void rcl__report_atfork_child(void);
/* The pressure thread's descriptors, held still across the fork. */
void rcl__pressure_atfork_prepare(void);
void rcl__pressure_atfork_parent(void);
/* The pressure thread is gone: close the child's copies of its
 * descriptors (never write the parent's stop eventfd) and say whether it
 * was running, so init.c can start it again on demand. */
bool rcl__pressure_atfork_child(void);
/* Starts the pressure thread again in a child; init_lock held. */
void rcl__pressure_restart(void);

#endif /* RCL_INTERNAL_H */
