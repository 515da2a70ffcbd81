/*
 * reclaim.h - libreclaim: the Linux kernel's memory-reclaim discipline for
 * user-space programs.
 *
 * One header, the whole public API. Link with -lreclaim -lpthread, or use
 * `pkg-config --cflags --libs reclaim`.
 *
 * Conventions
 *   - Functions returning int return 0 or a negative errno value.
 *   - Functions returning a pointer return NULL and set errno.
 *   - Every public name starts with rcl_ / RCL_.
 *   - The library initialises itself on first use from rcl_config_default()
 *     and the RECLAIM_* environment variables (see rcl_init()).
 *
 * The model in one paragraph: an allocation asks the budget for room. Its
 * flags (rcl_gfp_t), narrowed by the calling thread's scope, say what reclaim
 * may do on its behalf. When room runs short the allocation reclaims directly
 * (if its flags allow) by calling the registered shrinkers that its context
 * permits, or wakes the background reclaimer. Shrinkers free objects, which
 * returns room to the budget. See DESIGN.md for the full picture.
 */
#ifndef RECLAIM_H
#define RECLAIM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RCL_VERSION_MAJOR 0
#define RCL_VERSION_MINOR 1

/* ------------------------------------------------------------------------ */
/* Allocation flags                                                          */
/* ------------------------------------------------------------------------ */

/*
 * What an allocation allows reclaim to do on its behalf; the twins of the
 * kernel's __GFP_* bits. The composites are built exactly as the kernel
 * builds GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_NOWAIT and GFP_ATOMIC.
 */
typedef unsigned int rcl_gfp_t;

#define RCL__IO             0x0001u /* reclaim may start and wait on I/O          */
#define RCL__FS             0x0002u /* reclaim may call back into FS code         */
#define RCL__DIRECT_RECLAIM 0x0004u /* caller may sleep and reclaim itself        */
#define RCL__KSWAPD_RECLAIM 0x0008u /* may wake the background reclaimer          */
#define RCL__HIGH           0x0010u /* may use part (half) of the reserve         */
#define RCL__MEMALLOC       0x0020u /* may use the whole reserve                  */
#define RCL__NOMEMALLOC     0x0040u /* never use the reserve; beats every grant   */
#define RCL__NOFAIL         0x0080u /* retry until success, unless impossible     */
#define RCL__NORETRY        0x0100u /* one light attempt at reclaim, then fail    */
#define RCL__NOWARN         0x0200u /* no failure report                          */
#define RCL__ZERO           0x0400u /* zeroed memory                              */

#define RCL_RECLAIM (RCL__DIRECT_RECLAIM | RCL__KSWAPD_RECLAIM)
#define RCL_DEFAULT (RCL_RECLAIM | RCL__IO | RCL__FS)   /* GFP_KERNEL */
#define RCL_NOFS    (RCL_RECLAIM | RCL__IO)             /* GFP_NOFS   */
#define RCL_NOIO    (RCL_RECLAIM)                       /* GFP_NOIO   */
#define RCL_NOWAIT  (RCL__KSWAPD_RECLAIM | RCL__NOWARN) /* GFP_NOWAIT */
#define RCL_ATOMIC  (RCL__HIGH | RCL__KSWAPD_RECLAIM)   /* GFP_ATOMIC */

/* ------------------------------------------------------------------------ */
/* Scopes (per thread)                                                       */
/* ------------------------------------------------------------------------ */

/*
 * A scope marks a region of code ("I hold a lock that reclaim may need")
 * rather than one allocation: every allocation the thread makes inside it,
 * however deep in other layers, is restricted.
 *
 *   NOFS      reclaim must not call back into file-system code  (clears FS)
 *   NOIO      reclaim must not start or wait on I/O      (clears IO and FS)
 *   NOWAIT    the thread must not sleep in reclaim  (clears DIRECT_RECLAIM)
 *   NORECLAIM the thread is reclaiming: its allocations never enter reclaim
 *             and may use the whole reserve (unless RCL__NOMEMALLOC). It is
 *             not a mask; rcl_current_gfp() leaves the flags alone for it.
 *
 * Save/restore follow the kernel >= 6.9 memalloc_flags_save(): save sets the
 * bits and returns only those it newly set; restore clears exactly those.
 * An inner pair for a scope already in force is therefore a no-op, and pairs
 * nest in any order as long as each restore gets its own save's token.
 * Restoring bits that are not set is ignored (and reported when the lock
 * checker is on, as is a restore out of order).
 *
 * Cost: a few instructions on thread-local state, no locks, no allocation.
 * Like the kernel's memalloc_*_save(), the calls are inline (GCC and Clang):
 * a scope pair costs what a thread-local increment pair costs, with no call
 * into the library. The same functions are exported under the same names
 * for other languages and for builds with RCL_NO_INLINE_SCOPES defined.
 */
#define RCL_SCOPE_NOFS      0x1u
#define RCL_SCOPE_NOIO      0x2u
#define RCL_SCOPE_NORECLAIM 0x4u
#define RCL_SCOPE_NOWAIT    0x8u
#define RCL_SCOPE_ALL       0xfu

/*
 * The calling thread's scope, where the inline calls reach it with one
 * thread-local access (the kernel keeps it in current->flags). Private: use
 * the calls. `checked` is set while the lock checker watches the thread
 * (from its first call into the library with the checker on), and sends
 * the calls to the library, where the checker sees them.
 */
struct rcl_scope_tls {
    unsigned bits;      /* RCL_SCOPE_* in force */
    unsigned checked;
};
/* What the scope calls do to the bits, inline or in the library; private.
 * Save sets only the bits not already set, and returns them as the token;
 * restore clears only what the token names, so a bogus token cannot touch
 * a scope someone else owns beyond that. */
static inline unsigned rcl__scope_set(unsigned *bits, unsigned scope)
{
    unsigned set = scope & RCL_SCOPE_ALL & ~*bits;
    *bits |= set;
    return set;
}
static inline void rcl__scope_clear(unsigned *bits, unsigned saved)
{
    *bits &= ~(saved & RCL_SCOPE_ALL);
}
/* What rcl_current_gfp() computes, for a given scope; private. */
static inline rcl_gfp_t rcl__gfp_in_scope(rcl_gfp_t gfp, unsigned scope)
{
    /* NOIO implies NOFS: file-system reclaim may itself issue I/O. */
    if (scope & RCL_SCOPE_NOIO)
        gfp &= ~(RCL__IO | RCL__FS);
    else if (scope & RCL_SCOPE_NOFS)
        gfp &= ~RCL__FS;
    if (scope & RCL_SCOPE_NOWAIT)
        gfp &= ~RCL__DIRECT_RECLAIM;
    return gfp;
}

/* The inline calls' way into the checker; not for direct use. */
unsigned  rcl_scope_save_checked(unsigned scope);
void      rcl_scope_restore_checked(unsigned saved);

#if defined(__GNUC__) && !defined(RCL_NO_INLINE_SCOPES)
extern __thread struct rcl_scope_tls rcl_scope_tls __attribute__((tls_model("initial-exec")));

/* bits outside RCL_SCOPE_ALL are ignored */
static inline unsigned rcl_scope_save(unsigned scope)
{
    struct rcl_scope_tls *s = &rcl_scope_tls;
    if (__builtin_expect(s->checked != 0, 0))
        return rcl_scope_save_checked(scope);
    return rcl__scope_set(&s->bits, scope);
}
static inline void rcl_scope_restore(unsigned saved)
{
    struct rcl_scope_tls *s = &rcl_scope_tls;
    if (__builtin_expect(s->checked != 0, 0)) {
        rcl_scope_restore_checked(saved);
        return;
    }
    rcl__scope_clear(&s->bits, saved);
}
static inline unsigned rcl_scope_current(void) { return rcl_scope_tls.bits; }
static inline unsigned rcl_nofs_save(void) { return rcl_scope_save(RCL_SCOPE_NOFS); }
static inline void rcl_nofs_restore(unsigned saved) { rcl_scope_restore(saved); }
static inline unsigned rcl_noio_save(void) { return rcl_scope_save(RCL_SCOPE_NOIO); }
static inline void rcl_noio_restore(unsigned saved) { rcl_scope_restore(saved); }
static inline unsigned rcl_noreclaim_save(void) { return rcl_scope_save(RCL_SCOPE_NORECLAIM); }
static inline void rcl_noreclaim_restore(unsigned saved) { rcl_scope_restore(saved); }
static inline unsigned rcl_nowait_save(void) { return rcl_scope_save(RCL_SCOPE_NOWAIT); }
static inline void rcl_nowait_restore(unsigned saved) { rcl_scope_restore(saved); }

/*
 * gfp as this thread's scope restricts it. Only ever removes bits: NOIO
 * clears IO|FS; otherwise NOFS clears FS; NOWAIT clears DIRECT_RECLAIM.
 * An I/O-flusher thread (rcl_io_flusher_set) is in NOIO scope.
 */
static inline rcl_gfp_t rcl_current_gfp(rcl_gfp_t gfp)
{
    return rcl__gfp_in_scope(gfp, rcl_scope_tls.bits);
}
#else
unsigned  rcl_scope_save(unsigned scope);   /* bits outside RCL_SCOPE_ALL are ignored */
void      rcl_scope_restore(unsigned saved);
unsigned  rcl_scope_current(void);
unsigned  rcl_nofs_save(void);
void      rcl_nofs_restore(unsigned saved);
unsigned  rcl_noio_save(void);
void      rcl_noio_restore(unsigned saved);
unsigned  rcl_noreclaim_save(void);
void      rcl_noreclaim_restore(unsigned saved);
unsigned  rcl_nowait_save(void);
void      rcl_nowait_restore(unsigned saved);
/* gfp as this thread's scope restricts it (see above). */
rcl_gfp_t rcl_current_gfp(rcl_gfp_t gfp);
#endif

/*
 * Scope guards (GCC/Clang): the scope holds until the enclosing block ends,
 * however it is left (return, break, goto).
 *
 *     {
 *         RCL_NOFS_SCOPE();
 *         take_journal_lock(); ... rcl_alloc(n, RCL_DEFAULT) acts as NOFS ...
 *     }
 */
static inline void rcl__scope_guard_end(unsigned *saved) { rcl_scope_restore(*saved); }
#define RCL__CAT2(a, b) a##b
#define RCL__CAT(a, b) RCL__CAT2(a, b)
#define RCL__SCOPE_GUARD(bits)                                                  \
    unsigned RCL__CAT(rcl__scope_, __LINE__)                                    \
        __attribute__((cleanup(rcl__scope_guard_end), unused)) = rcl_scope_save(bits)
#define RCL_NOFS_SCOPE()      RCL__SCOPE_GUARD(RCL_SCOPE_NOFS)
#define RCL_NOIO_SCOPE()      RCL__SCOPE_GUARD(RCL_SCOPE_NOIO)
#define RCL_NORECLAIM_SCOPE() RCL__SCOPE_GUARD(RCL_SCOPE_NORECLAIM)
#define RCL_NOWAIT_SCOPE()    RCL__SCOPE_GUARD(RCL_SCOPE_NOWAIT)

/* ------------------------------------------------------------------------ */
/* Context that travels                                                      */
/* ------------------------------------------------------------------------ */

/*
 * A thread's reclaim context: its scope bits, the reclaim domains it is in
 * and its journal cookie. Capture it where work is handed off and adopt it
 * in the thread that does the work, so the work is restricted exactly as the
 * code that asked for it (seed 004: "Don't we need to convey
 * PF_MEMALLOC_NOFS/PF_MEMALLOC_NOIO flags to APIs which interact with other
 * threads?"). The library's workqueue does this for every work item.
 *
 * Adopting only adds restrictions: the scope bits are or-ed in, the domains
 * are entered on top of the thread's own, the journal cookie replaced.
 * rcl_context_restore(saved) returns the thread exactly to the state
 * rcl_context_adopt() saved, so adopt/restore pairs nest.
 *
 * The structure is opaque and of fixed size; copy it freely.
 */
#define RCL_MAX_DOMAINS 16   /* domains one thread may be inside at once */
struct rcl_context {
    uintptr_t rcl_private[4 + RCL_MAX_DOMAINS];
};
void rcl_context_capture(struct rcl_context *out);
void rcl_context_adopt(const struct rcl_context *ctx, struct rcl_context *saved);
void rcl_context_restore(const struct rcl_context *saved);

/* ------------------------------------------------------------------------ */
/* Reclaim domains                                                           */
/* ------------------------------------------------------------------------ */

/*
 * A reclaim domain is one file-system instance (or any cache owner) at a
 * nesting depth on the storage stack: a file system on a loop device over
 * another file system is one level deeper than the one beneath it.
 *
 * A thread inside domain D (depth d) reclaiming from a shrinker of domain S
 * (depth s) treats it as follows (seed 001, Dave Chinner's proposal):
 *   S == D        ask D's may_reclaim callback (NULL callback: skip it);
 *   s != d        as if in NOFS scope (layering may recurse across them);
 *   otherwise     unrestricted.
 * Inside several domains, the most restrictive answer wins, and a NOFS/NOIO
 * scope still applies on top: a domain never widens what a scope forbids.
 *
 * may_reclaim runs in the reclaiming thread, in NORECLAIM scope, and sees
 * that thread's rcl_journal_info(); it must not block on the domain's locks.
 * It is asked for each of the domain's shrinkers at each reclaim pass, so
 * it should be cheap (a look at the thread's transaction state).
 */
struct rcl_domain;
typedef int (*rcl_domain_may_reclaim_fn)(struct rcl_domain *d, void *arg);

/* NULL and errno EINVAL for a NULL name; ENOMEM when out of memory. */
struct rcl_domain *rcl_domain_create(const char *name, unsigned depth,
                                     rcl_domain_may_reclaim_fn may_reclaim, void *arg);
/* Destroying a domain that a thread is still inside, or that still owns
 * shrinkers, is refused: it is reported and the domain stays valid. */
void     rcl_domain_destroy(struct rcl_domain *d);
/* Returns a token for rcl_domain_exit(); 0 when d is NULL or the thread is
 * already inside RCL_MAX_DOMAINS domains (reported). Never allocates. The
 * same domain may be entered again while inside it. */
unsigned rcl_domain_enter(struct rcl_domain *d);
/* Exits must come in reverse order of the enters; a wrong token (out of
 * order, already used, another thread's) is reported and changes nothing.
 * Token 0 is a no-op. Domains adopted from a context are left only by
 * rcl_context_restore(). An adopted context whose domains do not all fit
 * is reported, and until the restore every shrinker that belongs to a
 * domain is skipped: never less strict than what was asked. */
void     rcl_domain_exit(unsigned token);
/* NULL (errno EINVAL) / 0 for NULL or a destroyed domain.
 *
 * A destroyed domain's memory is never freed, only recycled for a later
 * domain, and a context names its domains by generation: a context
 * captured inside a domain that is destroyed before the adopt is reported
 * there and adopts the worst case (every domain's shrinkers skipped until
 * the restore), never the domain that took the old one's place. enter,
 * name, depth and destroy on a destroyed handle are refused (enter and
 * destroy reported) until its memory is recycled, which waits for 64 other
 * domains to be destroyed first. */
const char *rcl_domain_name(const struct rcl_domain *d);
unsigned rcl_domain_depth(const struct rcl_domain *d);

/* The per-thread transaction cookie (the kernel's current->journal_info). */
void    *rcl_journal_info_set(void *cookie);  /* returns the previous cookie */
void    *rcl_journal_info(void);

/* ------------------------------------------------------------------------ */
/* Budget and life cycle                                                     */
/* ------------------------------------------------------------------------ */

/*
 * The budget: every byte handed out by the rcl_alloc family or charged with
 * rcl_charge() counts against `limit`. Accounted usage never exceeds it.
 *
 * Watermarks are the kernel's, counted in free headroom (limit - usage):
 *   headroom < low   an allocation with RCL__KSWAPD_RECLAIM wakes the
 *                    background reclaimer, which works until headroom >= high;
 *   headroom < min   the reserve: ordinary allocations reclaim directly (with
 *                    RCL__DIRECT_RECLAIM) or fail. Only reclaim itself
 *                    (NORECLAIM scope), RCL__MEMALLOC and I/O-flusher threads
 *                    may use all of it; RCL__HIGH may use half of it;
 *                    RCL__NOMEMALLOC never any.
 * `reserve` and `min_pct` describe the same boundary: the reserve is the
 * headroom below min, and it is the larger of reserve and min_pct% of limit.
 *
 * Defaults: limit automatic (see rcl_auto_limit()), min 2 %, low 5 %,
 * high 10 %, background reclaimer on (a single thread, "rcl-reclaimd",
 * started the first time headroom falls below low), pressure following on,
 * lock checker off (on with RECLAIM_LOCKDEP=1).
 */
#define RCL_LOCKDEP_OFF     0
#define RCL_LOCKDEP_ON      1
#define RCL_LOCKDEP_VERBOSE 2

struct rcl_config {
    size_t   limit;        /* bytes; 0 = automatic (cgroup limit, else physical memory) */
    size_t   reserve;      /* bytes of the limit held for reclaim paths; 0 = automatic */
    unsigned min_pct;      /* headroom below which allocations reclaim directly */
    unsigned low_pct;      /* headroom below which the background reclaimer wakes */
    unsigned high_pct;     /* headroom the background reclaimer restores */
    int      background;   /* 1 = run the background reclaimer thread (default 1) */
    int      pressure;     /* 1 = follow PSI and cgroup usage (default 1 where present) */
    int      lockdep;      /* RCL_LOCKDEP_OFF / RCL_LOCKDEP_ON / RCL_LOCKDEP_VERBOSE */
    unsigned stall_ms;     /* a NOFAIL allocation stalled this long is reported, and
                              again every stall_ms; 0 = default (10000) */
};

/* Fills cfg with the defaults above, then applies the environment:
 *   RECLAIM_LIMIT=256M  RECLAIM_RESERVE=4M  RECLAIM_MIN_PCT=2
 *   RECLAIM_LOW_PCT=5  RECLAIM_HIGH_PCT=10  RECLAIM_BACKGROUND=0|1
 *   RECLAIM_PRESSURE=0|1  RECLAIM_LOCKDEP=0|1|verbose  RECLAIM_STATS=1
 *   RECLAIM_STALL_MS=10000
 * (sizes take K, M, G suffixes). A malformed value is reported and ignored.
 * Read when needed rather than here: RECLAIM_CGROUP_MARGIN=32M|10% and
 * RECLAIM_CGROUP_ROOT=/dir (see rcl_auto_limit()), and systemd's
 * MEMORY_PRESSURE_WATCH / MEMORY_PRESSURE_WRITE. */
void   rcl_config_default(struct rcl_config *cfg);

/* Optional. NULL means rcl_config_default(). Returns -EINVAL for a
 * configuration that cannot work (min < low < high must hold, high < 100),
 * -EBUSY when the library is already initialised (call rcl_shutdown()
 * first). Any other entry point initialises the library on first use. */
int    rcl_init(const struct rcl_config *cfg);

/* Stops the library's threads and drops all its state, the lock-dependency
 * graph and the shrinker registry included; rcl_init() may follow. No other
 * thread may be inside the library meanwhile. Memory allocated before stays
 * valid and may still be freed with rcl_free(); it is no longer accounted. */
void   rcl_shutdown(void);

/*
 * fork(). The library takes all its locks around fork() (pthread_atfork,
 * the way glibc's malloc does), so a child may fork while other threads are
 * inside the library and still use all of it: allocate, reclaim, use its
 * mempools, LRUs and domains (inherited or new), register shrinkers, and
 * create new workqueues. The library's threads do not survive a fork: the
 * background reclaimer comes back at the child's first need of it, the
 * pressure thread at the child's next slow-path call. Blocks the other
 * threads held in their per-thread caches are lost to the child (their
 * charge is returned), and a domain another thread was inside at the fork
 * stays "in use" there (its destroy is refused). rcl_shutdown() in the
 * child only touches the child. fork() waits for calls in flight to leave
 * the library's locks, so the one thing a forking thread must not hold is a
 * lock an LRU's isolate callback blocks on (that callback runs under the
 * LRU's lock; the header's example only tries its lock, which is safe).
 *
 * A workqueue created before the fork runs nothing in the child (its
 * threads are the parent's): rcl_queue_work() returns -ECHILD,
 * rcl_flush_workqueue() returns at once, and rcl_workqueue_destroy() frees
 * the child's copy, dropping the items queued there without touching them
 * (they may live on a stack the child does not have); each reported.
 * Create a new queue in the child instead.
 *
 * pthread_cancel(). No library lock or pin outlives a cancelled thread.
 * The library's long waits stay cancellation points and release what they
 * hold when cancelled: rcl_mempool_alloc() waiting for an element (nothing
 * taken), rcl_flush_workqueue() (nothing flushed). Everything else that
 * holds a lock or a pin across a wait or a user callback defers a cancel
 * until it is done, and the cancel takes effect at the thread's next
 * cancellation point: reclaim (a thread cancelled while one of its
 * shrinkers scans finishes the pass first), rcl_shrinker_unregister(),
 * rcl_workqueue_destroy(), rcl_mempool_resize(), rcl_init(), first use and
 * rcl_shutdown(), and the report function (called with cancellation off).
 */

/* Changes the limit; -EINVAL for 0. Lowering it below current usage is
 * allowed: the background reclaimer (if any) is woken to get back under. */
int    rcl_set_limit(size_t bytes);
size_t rcl_limit(void);

/* Accounted bytes. Each thread keeps a small stock of pre-charged bytes so
 * that the allocation fast path writes no shared cache line; the stock is
 * part of the budget's usage. rcl_usage() subtracts every thread's stock,
 * so it is exact whenever no allocation is in flight. */
size_t rcl_usage(void);
/* Folds the calling thread's stock back into the budget, and every other
 * thread's at its next allocation or free; the budget's own counter then
 * equals rcl_usage(). Each thread's cached free blocks (see rcl_alloc) go
 * back to the backend at the same moment. */
void   rcl_usage_sync(void);

/* The limit that limit = 0 selects: the process's memory cgroup limit (v2
 * memory.high / memory.max, v1 memory.limit_in_bytes) less a margin, else
 * half of physical memory.
 *
 * The cgroup is found through /proc/self/cgroup and /proc/self/mountinfo
 * (a v1 memory hierarchy first, else cgroup2). The binding limit is the
 * smallest set one from the process's cgroup up to the mount point (a
 * parent's limit holds its children); v2 "max" and v1's huge "unlimited"
 * value are no limit, and so is a limit at or above physical memory.
 * Margin, for memory the library does not see (code, stacks, other
 * allocators, page cache, the kernel's charges): RECLAIM_CGROUP_MARGIN, a
 * size ("32M") or a percentage ("10%"); default 1/8 of the limit; never
 * more than half. Example: a 128 MiB cgroup gives a 112 MiB budget.
 *
 * With pressure = 1 the library follows, from one thread ("rcl-pressure",
 * only when there is something to follow; it sleeps in poll()):
 *   - the cgroup limit, re-read each second: when it changes, an automatic
 *     budget is moved with it (rcl_set_limit); a limit the program chose is
 *     left alone;
 *   - a PSI trigger ("some 150000 1000000": 150 ms stalled in 1 s; where
 *     the kernel refuses it, "some 300000 2000000") on the cgroup's
 *     memory.pressure (v2) or /proc/pressure/memory;
 *   - systemd's protocol instead, when $MEMORY_PRESSURE_WATCH is set: a
 *     PSI file, FIFO or AF_UNIX socket, to which $MEMORY_PRESSURE_WRITE
 *     (base64) is written first; "/dev/null" turns pressure handling off;
 *   - cgroup usage (v1 memory.usage_in_bytes, v2 memory.current, less the
 *     inactive page cache the kernel drops first) against its limit, each
 *     second: headroom below low_pct % of the cgroup limit is pressure.
 *     Without swap a cgroup nearing its limit shows no stall until the
 *     OOM kill, so PSI alone would be too late.
 * Each pressure event asks for the documented step: 1/8 of the library's
 * usage, or what restores high_pct % headroom in the cgroup when that is
 * more; at most two a second. The background reclaimer does the work (the
 * budget may have plenty of room meanwhile); with background = 0 the
 * pressure thread calls rcl_reclaim(step, RCL_DEFAULT) itself.
 *
 * Tests: RECLAIM_CGROUP_ROOT=/dir reads every one of those files (and
 * /proc/meminfo) under /dir instead of /, including the mount points
 * named in /dir/proc/self/mountinfo. */
size_t rcl_auto_limit(void);

/* ------------------------------------------------------------------------ */
/* Allocation                                                                */
/* ------------------------------------------------------------------------ */

/*
 * The path of an allocation: gfp is narrowed by the thread's scope; the size
 * is charged to the budget (from the thread's stock when it can); if that
 * would go below the min watermark, the caller reclaims directly within its
 * own context (only with RCL__DIRECT_RECLAIM, never recursively: shrinkers
 * run in NORECLAIM scope), then may use the reserve it is entitled to, then
 * fails. No allocation waits without bound on reclaim in a wider context.
 *
 * errno on failure:
 *   EINVAL     size 0, alignment not a power of two, NOFAIL without
 *              RCL__DIRECT_RECLAIM;
 *   EOVERFLOW  n * size (or size plus the library's header) overflows;
 *   E2BIG      larger than this context could ever get (limit - reserve for
 *              ordinary contexts), so retrying is pointless;
 *   ENOMEM     no room now.
 * With RCL__NOFAIL (which needs RCL__DIRECT_RECLAIM) the call never returns
 * NULL for a request that can succeed: it reclaims, waits with a bound and
 * retries, reporting a stall every stall_ms (default 10 s) while it waits.
 * A request that can never succeed fails at once, with a report unless
 * RCL__NOWARN. Other failures are reported (rate-limited) unless NOWARN.
 *
 * The size charged is the size asked for. Each block carries a 16-byte
 * header, which is how rcl_free() knows the size and tells foreign pointers.
 *
 * Each thread keeps a few of the blocks of up to 64 KiB it freed (8 per
 * 16-byte size class up to 256 bytes, 2 per 64-byte class up to 1 KiB, 1
 * per class above, eight classes per doubling) and hands them out again
 * before asking the backend, as the kernel keeps per-CPU freelists of slab
 * objects and pages. A cached block keeps its charge in the thread's stock:
 * the budget counts it, rcl_usage() does not, and a thread never holds more
 * than its stock may (two batches of limit / 256, at most 128 KiB) in
 * stock and cached blocks together. rcl_stats.thread_cached counts them;
 * rcl_usage_sync(), reclaim's drain requests, an allocation that finds the
 * budget short, and thread exit give them back to the backend. So that a
 * block of a class serves any size in it, blocks up to 64 KiB are asked of
 * the backend rounded up to their class: at most an eighth more above
 * 1 KiB, 63 bytes more below.
 */
void *rcl_alloc(size_t size, rcl_gfp_t gfp);
void *rcl_calloc(size_t n, size_t size, rcl_gfp_t gfp);    /* always zeroed */
/* NULL p: rcl_alloc. size 0: EINVAL, p untouched. On failure p is untouched. */
void *rcl_realloc(void *p, size_t size, rcl_gfp_t gfp);
void *rcl_aligned_alloc(size_t align, size_t size, rcl_gfp_t gfp);
/* NULL: nothing. A pointer the library did not hand out (or one already
 * freed, where that can still be seen) is reported, sets errno to EINVAL,
 * and is neither freed nor uncharged. */
void  rcl_free(void *p);
/* Page-granular, mapped memory (mmap), charged in whole pages; honours the
 * scope like everything else (seed 002: vmalloc under GFP_NOFS). */
void *rcl_valloc(size_t size, rcl_gfp_t gfp);
void  rcl_vfree(void *p);
/* Account memory the program got elsewhere. 0 or -ENOMEM / -E2BIG / -EINVAL
 * as rcl_alloc would fail. Charging 0 bytes is a no-op. */
int   rcl_charge(size_t bytes, rcl_gfp_t gfp);
/* Uncharging more than is charged is reported and clamps usage at 0. */
void  rcl_uncharge(size_t bytes);
/* Reclaim now, as an allocation with these flags (scope-masked) would:
 * nothing without RCL__DIRECT_RECLAIM or inside NORECLAIM scope. Returns the
 * accounted bytes freed by the shrinkers during the call. */
size_t rcl_reclaim(size_t bytes, rcl_gfp_t gfp);

/* ------------------------------------------------------------------------ */
/* Shrinkers                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * A shrinker is a cache's pair of callbacks. count() says how many objects
 * could be freed; scan() tries to free sc->nr_to_scan of them and returns
 * how many it freed (or RCL_SHRINK_STOP to end its turn in this pass).
 * Both run in the reclaiming thread, in NORECLAIM scope, and must obey
 * sc->gfp: without RCL__FS do not enter file-system code that takes locks
 * the allocator may hold; without RCL__IO do not wait on I/O. count() may
 * return RCL_SHRINK_EMPTY when the cache is empty.
 *
 * Scan amounts follow the kernel's do_shrink_slab() exactly:
 *   delta    = (freeable >> priority) * 4 / seeks      (freeable / 2 if seeks 0)
 *   total    = min((deferred >> priority) + delta, 2 * freeable)
 *   scan in batches of `batch` while total >= batch || total >= freeable
 *   deferred = clamp(deferred + delta - scanned, 0, 2 * freeable)
 * A shrinker that declares `needs` is not called when the context lacks one
 * of those flags; the work it would have had (delta from its last count) is
 * deferred to a context that has them.
 */
struct rcl_shrink_control {
    rcl_gfp_t          gfp;         /* what this scan may do */
    unsigned long      nr_to_scan;  /* objects to look at in this call */
    unsigned long      nr_scanned;  /* set by scan when it looked at a different number */
    int                priority;    /* 12 (gentle) .. 0 (desperate) */
    struct rcl_domain *domain;      /* the domain the shrinker belongs to, or NULL */
};
#define RCL_SHRINK_STOP  (~0UL)
#define RCL_SHRINK_EMPTY (~0UL - 1)
#define RCL_DEF_PRIORITY 12

struct rcl_shrinker_ops {
    unsigned long (*count)(void *priv, struct rcl_shrink_control *sc);
    unsigned long (*scan)(void *priv, struct rcl_shrink_control *sc);
};
struct rcl_shrinker_opts {
    unsigned           seeks;   /* cost to recreate an object; 0 = default (2) */
    unsigned long      batch;   /* objects per scan call; 0 = default (128) */
    rcl_gfp_t          needs;   /* flags without which the shrinker cannot work */
    struct rcl_domain *domain;  /* NULL: belongs to no domain */
};
#define RCL_DEFAULT_SEEKS  2
#define RCL_SHRINK_BATCH   128

/* NULL with EINVAL for a NULL name or ops or a missing callback; the name is
 * copied. opts may be NULL. */
struct rcl_shrinker *rcl_shrinker_register(const char *name,
        const struct rcl_shrinker_ops *ops, void *priv,
        const struct rcl_shrinker_opts *opts);
/* Waits for scans in flight; once it returns the callbacks are never called
 * again. Unregistering NULL, a shrinker that is not registered (twice, say),
 * or the shrinker whose callback is running on this very thread is
 * reported and changes nothing. */
void rcl_shrinker_unregister(struct rcl_shrinker *s);

/* ------------------------------------------------------------------------ */
/* Mempools                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * A mempool keeps min_nr elements in reserve so that a path that must make
 * progress (write-back, request handling in an I/O daemon) always can.
 * rcl_mempool_alloc() follows the kernel's mempool_alloc():
 *   1. the backing allocator with gfp & ~(DIRECT_RECLAIM|IO), plus
 *      NOMEMALLOC|NORETRY|NOWARN;
 *   2. an element from the reserve;
 *   3. once more with the full flags;
 *   4. only with DIRECT_RECLAIM: wait (bounded, then loop) for an element to
 *      be freed; the waiter is registered before the pool lock is dropped,
 *      so no wake-up is lost.
 * A blocking allocation (RCL__DIRECT_RECLAIM, after the thread's scope: a
 * NOWAIT scope makes it non-blocking) never fails; a non-blocking one
 * returns NULL (ENOMEM) when the reserve is empty. The bounded sleep is 5 s
 * (the kernel's); a free wakes the waiters at once. rcl_mempool_free()
 * refills the reserve while it is below min_nr; a pool with min_nr 0 still
 * keeps one returned element while its reserve is empty, so a waiter gets
 * it. RCL__NOFAIL adds nothing and is dropped; RCL__ZERO is not honoured
 * (reserve elements are handed out as they were returned), as in the kernel.
 * rcl_mempool_alloc() calls rcl_might_alloc() when it may block.
 *
 * rcl_mempool_create() backs the pool with rcl_alloc(elem_size); the reserve
 * is allocated (allowed to reclaim), and charged, at creation: NULL (ENOMEM)
 * if it cannot be, with nothing left allocated or charged. elem_size 0, or a
 * NULL callback for _create_ops: NULL (EINVAL). The pool's own bookkeeping
 * is charged too.
 *
 * Bad input: alloc from a NULL pool is NULL (EINVAL) and reported; freeing
 * NULL is a no-op; freeing to a NULL pool, or more elements than were
 * allocated, is reported; resize of NULL is -EINVAL. Freeing to a
 * rcl_mempool_create() pool an element that is not its own (another
 * pool's) is reported and nothing is done: each element carries a 16-byte
 * tag naming its pool, ahead of the element in the same block. Pools with
 * their own alloc/free (_create_ops) cannot be checked so.
 */
struct rcl_mempool;
struct rcl_mempool *rcl_mempool_create(unsigned min_nr, size_t elem_size);
struct rcl_mempool *rcl_mempool_create_ops(unsigned min_nr,
        void *(*alloc)(rcl_gfp_t gfp, void *data), void (*free)(void *elem, void *data),
        void *data);
void *rcl_mempool_alloc(struct rcl_mempool *pool, rcl_gfp_t gfp);
void  rcl_mempool_free(void *elem, struct rcl_mempool *pool);
/* Grows (allocating with RCL_DEFAULT) or shrinks the reserve; -ENOMEM, and
 * the pool unchanged, when growing fails. Safe while other threads allocate
 * and free; concurrent resizes are serialised. */
int   rcl_mempool_resize(struct rcl_mempool *pool, unsigned new_min_nr);
/* Frees the reserve and the pool. NULL: no-op. Elements still out at
 * destroy are reported and the pool is not freed under their owners: it
 * stays valid for rcl_mempool_free() only, and is freed when the last of
 * them is returned. Meanwhile alloc gives NULL (ESHUTDOWN), resize
 * -ESHUTDOWN, and a second destroy is reported. Destroy must not race with
 * a call still allocating from the pool. */
void  rcl_mempool_destroy(struct rcl_mempool *pool);

/* ------------------------------------------------------------------------ */
/* Workqueues                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Each work item runs under the context captured when it was queued: a
 * request queued from a NOFS section is processed in NOFS. Queuing allocates
 * nothing (the work structure is the caller's). RCL_WQ_MEM_RECLAIM creates a
 * rescuer thread up front, so queued work still runs when no new worker can
 * be created.
 *
 * Workers: one is started with the queue; a worker about to run an item
 * starts another when none would be left idle, up to max_workers (0: the
 * number of online CPUs; at most 1024), so queueing never creates threads.
 * When starting one fails (reported, at most once a second) the rescuer, if
 * there is one, runs pending items one by one until a worker can be started
 * again. Library threads block all signals and are named "rcl-wq/NAME" and
 * "rcl-rsc/NAME".
 *
 * A work function may free or requeue its own work item: the queue does not
 * touch it after calling fn. A work item that returns with the scope or
 * domains changed (a save without its restore) is reported and the worker
 * is put back as it was. With the lock checker on, running an item holds
 * the lock class "wq:NAME" and flush/destroy acquire and release it, so
 * flushing while holding a lock the work takes is reported as the cycle it
 * is.
 */
struct rcl_work {
    void (*fn)(struct rcl_work *w);
    /* private: */
    struct rcl_work *rcl_next;
    struct rcl_context rcl_ctx;
    int rcl_pending;
};
/* Must be called before a work item is first queued. NULL: no-op. */
void rcl_work_init(struct rcl_work *w, void (*fn)(struct rcl_work *w));
#define RCL_WQ_MEM_RECLAIM 0x1u
/* NULL with errno EINVAL (NULL name, unknown flags, max_workers > 1024),
 * ENOMEM, or EAGAIN when no worker can be started and there is no rescuer.
 * The name is copied (up to 31 characters). */
struct rcl_workqueue *rcl_workqueue_create(const char *name, unsigned max_workers, unsigned flags);
/* 0 queued; -EBUSY already pending (on this queue or another); -EINVAL bad
 * arguments (NULL, or a NULL fn); -ESHUTDOWN the queue is being destroyed,
 * except from the queue's own work items, which may chain more work while
 * it drains (as the kernel's drain_workqueue allows); -ECHILD in a child of
 * fork() for a queue created before the fork (see rcl_shutdown()). */
int  rcl_queue_work(struct rcl_workqueue *wq, struct rcl_work *w);
/* Waits for every item queued before the call (not those queued after, so
 * an item that requeues itself cannot make it hang). From the queue's own
 * work item, or with NULL: reported, returns at once. */
void rcl_flush_workqueue(struct rcl_workqueue *wq);
/* Drains pending work (chained work included), then stops the threads and
 * frees the queue. NULL: no-op. From the queue's own work item, or while
 * another destroy is in progress: reported, and nothing is done. */
void rcl_workqueue_destroy(struct rcl_workqueue *wq);

/* ------------------------------------------------------------------------ */
/* I/O flushers                                                              */
/* ------------------------------------------------------------------------ */

/*
 * For the threads of a user-space I/O daemon (FUSE, NBD, iSCSI, ublk) that
 * the kernel may be waiting on to free memory. on = 1: this thread's
 * allocations are NOIO and may use the whole reserve, and the library calls
 * prctl(PR_SET_IO_FLUSHER, 1). on = 0: both undone. Anything else: -EINVAL.
 * Without CAP_SYS_RESOURCE prctl fails: the library part still applies, the
 * call returns -EPERM and the library reports it once per process.
 *
 * The NOIO scope is taken with rcl_scope_save(), so turning the flag off
 * removes only what turning it on added: a NOIO scope the thread was
 * already in stays. Setting it twice is the same as once; one
 * rcl_io_flusher_set(0) ends it. The prctl is made on every call, and its
 * result returned.
 */
int rcl_io_flusher_set(int on);
/* 1 when this thread is an I/O flusher for the library, else 0. */
int rcl_io_flusher_get(void);

/* ------------------------------------------------------------------------ */
/* Lock checking (lockdep for reclaim)                                       */
/* ------------------------------------------------------------------------ */

/*
 * Reclaim is modelled as three pseudo-locks, one per context class:
 * reclaim(FS+IO) ⊇ reclaim(IO) ⊇ reclaim(none). An allocation that may
 * reclaim in class c, made while holding lock L, records L -> reclaim(c),
 * whether or not reclaim runs; a lock taken inside a shrinker called in class
 * c records reclaim(c) -> L. A cycle in this graph is a deadlock waiting to
 * happen and is reported once, with the chain and where each edge was first
 * seen. Waiting for another thread's work is an acquire+release of that
 * work's class.
 */
struct rcl_lock_class {
    const char *name;
    /* private: the class's node in the current graph (assigned on first
     * use, forgotten at rcl_shutdown); accessed atomically by the library */
    unsigned rcl_id;
    unsigned rcl_gen;
};
#define RCL_LOCK_CLASS(var, lname) struct rcl_lock_class var = { .name = (lname), .rcl_id = 0, .rcl_gen = 0 }

/*
 * Annotations. A class stands for every lock of one kind (all inode locks,
 * say); the name is what reports print. Annotate before blocking on the
 * real lock, so a cycle is reported even by the acquisition that would
 * hang. Releases may come in any order. With the checker off an acquire
 * is two loads and two branches (is it on? is the library initialised?),
 * a release one of each; on, an acquire/release pair on a lock order seen
 * before costs a few nanoseconds (bench/bench_lockdep).
 *
 * rcl_lock_acquire_try: a trylock that succeeded. The lock is held (what
 *     is taken under it depends on it) but nothing waited for it, so it
 *     adds no dependency on the lock itself.
 * rcl_might_alloc: "this path may allocate with gfp" (scope-masked), as if
 *     the allocation happened; every rcl_alloc-family call implies it.
 * Waiting for another thread's work (I/O completion, a flush) is
 *     rcl_lock_acquire(&work_class) + rcl_lock_release(&work_class) in the
 *     waiter, while the worker holds work_class around the work.
 *
 * Also reported in checking mode: a scope restored out of order or with a
 * token its save did not return; an allocation that may sleep inside a
 * NOWAIT scope; a shrinker that runs longer than the bound below while the
 * background reclaimer waits on it. Each problem is reported once.
 * In RCL_LOCKDEP_VERBOSE mode every newly learned dependency is also
 * reported (as information; rcl_lockdep_reports() does not count those).
 */
void rcl_lock_acquire(struct rcl_lock_class *c);
void rcl_lock_acquire_try(struct rcl_lock_class *c);
void rcl_lock_release(struct rcl_lock_class *c);
void rcl_might_alloc(rcl_gfp_t gfp);
/* Bound for the slow-shrinker report; default 1000 ms, 0 turns it off. */
void rcl_lockdep_set_slow_shrinker_ms(unsigned ms);

typedef struct { pthread_mutex_t m; struct rcl_lock_class *cls; } rcl_mutex_t;
int  rcl_mutex_init(rcl_mutex_t *m, struct rcl_lock_class *cls);
void rcl_mutex_lock(rcl_mutex_t *m);
int  rcl_mutex_trylock(rcl_mutex_t *m);
void rcl_mutex_unlock(rcl_mutex_t *m);
int  rcl_mutex_destroy(rcl_mutex_t *m);
/* rcl_mutex_t: a pthread mutex annotated with its class (NULL: none).
 * init and destroy return 0 or a negative errno (-EINVAL for NULL); trylock
 * returns 0 or EBUSY (positive, as pthread_mutex_trylock). */

/* Problems the checker reported since rcl_init (cycles, scope misuse,
 * NOWAIT sleeps, slow shrinkers). */
unsigned long rcl_lockdep_reports(void);

/* Every report the library makes (lock checker, bad frees, allocation
 * failures and stalls, misuse) goes through this function; NULL restores
 * the default, which writes to stderr. */
typedef void (*rcl_report_fn)(const char *report, void *arg);
void rcl_set_report_fn(rcl_report_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* Shrinkable LRU helper                                                     */
/* ------------------------------------------------------------------------ */

struct rcl_lru;
struct rcl_lru_node { struct rcl_lru_node *prev, *next; };
enum rcl_lru_walk { RCL_LRU_REMOVED, RCL_LRU_ROTATE, RCL_LRU_SKIP, RCL_LRU_STOP };

/*
 * The kernel's list_lru for user-space caches: the node is embedded in the
 * cache's own object (no allocation to add or remove), one mutex per LRU
 * guards the list, the count is exact and can be read without the lock, and
 * rcl_lru_shrinker() turns the LRU into a registered shrinker in one call.
 *
 * Order: items are added at the tail (hot end); walks start at the head,
 * the least recently added or touched item.
 *
 * The isolate callback (list_lru's rules):
 *   - it runs with the LRU lock held, oldest item first;
 *   - it must not allocate, free the item, sleep on I/O, or call any
 *     rcl_lru_* function on the same LRU;
 *   - it may take the cache's own locks only with a trylock, returning
 *     RCL_LRU_SKIP when one is busy: the cache takes its lock first and the
 *     LRU lock second, so blocking there would be an ABBA deadlock;
 *   - it returns
 *       RCL_LRU_REMOVED  the cache has let go of the item (unhashed it):
 *                        the walk takes it off the LRU, onto the caller's
 *                        private dispose list, to be freed after the lock
 *                        is dropped;
 *       RCL_LRU_ROTATE   recently used: move it to the hot end (second
 *                        chance);
 *       RCL_LRU_SKIP     leave it where it is (busy, pinned, dirty);
 *       RCL_LRU_STOP     end the walk here; the item stays.
 * Every item visited costs one of nr_to_walk; a walk visits each item at
 * most once.
 */
typedef enum rcl_lru_walk (*rcl_lru_isolate_fn)(struct rcl_lru_node *item, void *arg);
/* Frees one item the walk removed; called without the LRU lock. */
typedef void (*rcl_lru_free_fn)(struct rcl_lru_node *item, void *arg);

/* The object an embedded node belongs to (container_of). */
#define RCL_LRU_ENTRY(node, type, member) \
    ((type *)(void *)((char *)(node) - offsetof(type, member)))

/* NULL and errno ENOMEM when out of memory. */
struct rcl_lru *rcl_lru_create(void);
/* Unregisters the LRU's shrinker (waiting for a scan in flight), then frees
 * the LRU. -EINVAL for NULL; -EBUSY, reported, and the LRU left as it was,
 * its shrinker still working, when items are still on it (they are the
 * caller's: empty it and destroy again). A shrinker rcl_shutdown() already
 * dropped is not unregistered again (whatever now lives at its address is
 * left alone). */
int  rcl_lru_destroy(struct rcl_lru *lru);
/* A node starts (and is left by every removal) on no list. */
void rcl_lru_node_init(struct rcl_lru_node *n);
/* 1 added at the hot end; 0 already on an LRU; -EINVAL for NULL. */
int  rcl_lru_add(struct rcl_lru *lru, struct rcl_lru_node *n);
/* 1 removed; 0 not on the LRU (a walk may have isolated it first: whoever
 * gets 1, or the walk's REMOVED, owns the item); -EINVAL for NULL, and
 * -EINVAL, reported, both lists unchanged, for a node on another LRU or on
 * a dispose list. The LRU is told by tag bits in the node's prev pointer
 * (a node's pointers are the library's while it is on an LRU): exact while
 * the program has at most 7 LRUs (3 on 32-bit targets); beyond that some
 * share a tag and a node of one may pass for another's. */
int  rcl_lru_del(struct rcl_lru *lru, struct rcl_lru_node *n);
/* Moves an item to the hot end: 1 moved; 0 not on the LRU; -EINVAL as for
 * rcl_lru_del. */
int  rcl_lru_touch(struct rcl_lru *lru, struct rcl_lru_node *n);
unsigned long rcl_lru_count(const struct rcl_lru *lru);   /* 0 for NULL */

/* A private list of removed items: rcl_lru_list_init() a node used as the
 * head; rcl_lru_list_pop() takes the first item off, NULL when empty. */
void rcl_lru_list_init(struct rcl_lru_node *list);
struct rcl_lru_node *rcl_lru_list_pop(struct rcl_lru_node *list);

/* Visits up to nr_to_walk items, oldest first, calling isolate on each
 * (NULL isolate: every item is REMOVED). Removed items are appended to
 * `dispose` (an initialised list). Returns how many were removed; 0 with
 * errno EINVAL for a NULL lru or an uninitialised dispose list. */
unsigned long rcl_lru_walk(struct rcl_lru *lru, rcl_lru_isolate_fn isolate, void *arg,
                           unsigned long nr_to_walk, struct rcl_lru_node *dispose);

/* Registers a shrinker for the LRU: count() is rcl_lru_count(); scan()
 * walks sc->nr_to_scan items with isolate, then calls free_fn on each
 * removed item outside the lock and reports them freed. free_fn must
 * rcl_free() (or uncharge) what the item accounted, or the budget never
 * sees the memory come back. The shrinker belongs to the LRU:
 * rcl_lru_destroy() unregisters it; do not unregister it yourself.
 * NULL with errno EINVAL (NULL lru, name or free_fn), EBUSY (the LRU has
 * one already), or what rcl_shrinker_register() sets.
 *
 * Example: a keyed object cache, shrinkable, in a handful of lines
 * (compiled and run by tests/test_lru.c, which checks it matches this text):
 *
 * --- example begin
 *     #include <pthread.h>
 *     #include <reclaim.h>
 *
 *     #define NBUCKETS 256
 *     struct obj {
 *         struct rcl_lru_node lru;   // on the LRU while cached
 *         struct obj *hnext;         // hash chain, under table_lock
 *         unsigned key;
 *         int referenced;            // second chance, under table_lock
 *         char payload[1000];
 *     };
 *     static struct obj *table[NBUCKETS];
 *     static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
 *     static struct rcl_lru *lru;
 *
 *     // Under the LRU lock: decide, unhash, never free. Lookups take
 *     // table_lock and then the LRU lock, so here it is only tried.
 *     static enum rcl_lru_walk obj_isolate(struct rcl_lru_node *n, void *arg)
 *     {
 *         struct obj *o = RCL_LRU_ENTRY(n, struct obj, lru), **pp;
 *         (void)arg;
 *         if (pthread_mutex_trylock(&table_lock) != 0)
 *             return RCL_LRU_SKIP;
 *         if (o->referenced) {
 *             o->referenced = 0;
 *             pthread_mutex_unlock(&table_lock);
 *             return RCL_LRU_ROTATE;
 *         }
 *         for (pp = &table[o->key % NBUCKETS]; *pp != o; pp = &(*pp)->hnext)
 *             ;
 *         *pp = o->hnext;            // no lookup can find it any more
 *         pthread_mutex_unlock(&table_lock);
 *         return RCL_LRU_REMOVED;
 *     }
 *
 *     // After the LRU lock is dropped: the object is ours alone.
 *     static void obj_free(struct rcl_lru_node *n, void *arg)
 *     {
 *         (void)arg;
 *         rcl_free(RCL_LRU_ENTRY(n, struct obj, lru));
 *     }
 *
 *     int cache_init(void)
 *     {
 *         lru = rcl_lru_create();
 *         if (!lru || !rcl_lru_shrinker(lru, "obj-cache", obj_isolate, obj_free, NULL, NULL))
 *             return -1;
 *         return 0;
 *     }
 *
 *     // 1 when the key was cached, 0 when it has been added now, -1 on error.
 *     int cache_get(unsigned key)
 *     {
 *         struct obj *o;
 *         pthread_mutex_lock(&table_lock);
 *         for (o = table[key % NBUCKETS]; o && o->key != key; o = o->hnext)
 *             ;
 *         if (o)
 *             o->referenced = 1;
 *         pthread_mutex_unlock(&table_lock);
 *         if (o)
 *             return 1;
 *         o = rcl_alloc(sizeof(*o), RCL_DEFAULT);   // may run the shrinker
 *         if (!o)
 *             return -1;
 *         rcl_lru_node_init(&o->lru);
 *         o->key = key;
 *         o->referenced = 0;
 *         pthread_mutex_lock(&table_lock);
 *         o->hnext = table[key % NBUCKETS];
 *         table[key % NBUCKETS] = o;
 *         rcl_lru_add(lru, &o->lru);
 *         pthread_mutex_unlock(&table_lock);
 *         return 0;
 *     }
 *
 *     void cache_exit(void)
 *     {
 *         struct rcl_lru_node dispose, *n;
 *         rcl_lru_list_init(&dispose);
 *         while (rcl_lru_count(lru)) {
 *             rcl_lru_walk(lru, obj_isolate, NULL, ~0UL, &dispose);
 *             while ((n = rcl_lru_list_pop(&dispose)) != NULL)
 *                 obj_free(n, NULL);
 *         }
 *         rcl_lru_destroy(lru);
 *     }
 * --- example end
 */
struct rcl_shrinker *rcl_lru_shrinker(struct rcl_lru *lru, const char *name,
                                      rcl_lru_isolate_fn isolate, rcl_lru_free_fn free_fn,
                                      void *arg, const struct rcl_shrinker_opts *opts);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

#define RCL_STATS_MAX_SHRINKERS 32
#define RCL_NAME_MAX 32

struct rcl_shrinker_stats {
    char          name[RCL_NAME_MAX];
    unsigned long calls;      /* scan callbacks */
    unsigned long scanned;    /* objects scanned */
    unsigned long freed;      /* objects the shrinker reported freed */
    unsigned long skipped;    /* passes skipped: context lacked `needs`, or domain rules */
    unsigned long deferred;   /* work now deferred (nr_deferred) */
};

struct rcl_stats {
    size_t        usage, peak, limit;
    size_t        wmark_min, wmark_low, wmark_high;   /* headroom, bytes */
    unsigned long allocations, frees, failures;
    unsigned long bad_frees;                /* foreign or double frees caught */
    size_t        thread_cached;            /* class bytes of the freed blocks the
                                               threads keep for reuse (charged inside
                                               their stocks, not in usage;
                                               rcl_usage_sync() returns them) */
    unsigned long direct_reclaims;          /* direct reclaim passes */
    unsigned long long direct_stall_ns;     /* time spent in them */
    size_t        direct_reclaimed;         /* bytes they freed */
    unsigned long background_wakeups;
    size_t        background_reclaimed;
    unsigned long reserve_allocs;           /* charges that dipped into the reserve */
    unsigned long nofail_stalls;            /* stall reports */
    unsigned long mempool_reserve_hits;
    unsigned long lockdep_reports;
    unsigned      nr_shrinkers;             /* registered; the first
                                               RCL_STATS_MAX_SHRINKERS listed */
    struct rcl_shrinker_stats shrinkers[RCL_STATS_MAX_SHRINKERS];
};
void rcl_stats_get(struct rcl_stats *out);
/* Text (json = 0) or one JSON object (json = 1); -EINVAL for a NULL file,
 * -EIO when writing fails. RECLAIM_STATS=1 prints the text form at exit. */
int  rcl_stats_print(FILE *f, int json);

#ifdef __cplusplus
}
#endif
#endif /* RECLAIM_H */
