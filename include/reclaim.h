/* SPDX-License-Identifier: MIT */
/*
 * reclaim.h - libreclaim: the Linux kernel's memory-reclaim discipline for
 * user-space programs.
 *
 * One header, the whole public API. Link with -lreclaim -lpthread, or use
 * `pkg-config --cflags --libs reclaim` (--static to link the static
 * library). It is included from C99 or later and from C++11 or later
 * (extern "C"), and its macros and inline calls build under -Wall -Wextra
 * -pedantic -Werror, -Wconversion, and C++'s -Wold-style-cast
 * (tools/check-header.sh builds it each of those ways).
 *
 * Conventions
 *   - Functions returning int return 0 or a negative errno value. The
 *     exceptions say so at the function: rcl_mutex_trylock() (0 or a
 *     positive EBUSY, as pthread_mutex_trylock), rcl_lru_add/del/touch()
 *     (1 done, 0 nothing to do, -EINVAL), rcl_io_flusher_get() and
 *     rcl_io_flusher_reserved() (1 or 0).
 *   - Functions returning a pointer return NULL and set errno when they
 *     fail. rcl_journal_info() and rcl_journal_info_set() (no cookie)
 *     and rcl_lru_list_pop() (an empty list) return NULL as a value, and
 *     leave errno alone.
 *   - A refusal of input no call could serve (a NULL where an object is
 *     needed, unknown flags, a size out of range) is a bug in the
 *     program: besides its result, it is reported through the report
 *     function (rcl_set_report_fn), once per call, unless the call takes
 *     flags and RCL__NOWARN is among them, and nothing is changed. Bits
 *     no flag has are reported beside RCL__NOWARN too (a word that carries
 *     them may not mean the NOWARN it seems to), and the call goes on as
 *     if they were clear. An
 *     answer the program may rightly ask for (a state it cannot see from
 *     where it is, such as -EBUSY, or no memory now) is not, where its
 *     function does not say otherwise. The allocation calls' sizes are the
 *     exception, as calloc()'s are: size 0, an alignment that is not a
 *     power of two or a size that overflows gives NULL with EINVAL or
 *     EOVERFLOW, which the caller's NULL check sees, and is reported only
 *     with RCL__NOFAIL, whose caller makes none ("errno on failure").
 *   - Every public name starts with rcl_ / RCL_; names with a double
 *     underscore (rcl__, RCL__ other than the flag bits) are private.
 *   - A program that never calls rcl_init() (or calls rcl_init(NULL)) is
 *     configured from the defaults and the RECLAIM_* environment variables;
 *     one that passes its own struct rcl_config gets exactly that (see
 *     rcl_config_default()).
 *   - Structures the caller allocates (struct rcl_config, struct rcl_stats)
 *     end in reserved words, so later versions can add fields without
 *     changing their size; start them from rcl_config_default() or zero.
 *
 * The model in one paragraph: an allocation asks the budget for room. Its
 * flags (rcl_gfp_t), narrowed by the calling thread's scope, say what reclaim
 * may do on its behalf. When room runs short the allocation reclaims directly
 * (if its flags allow) by calling the registered shrinkers that its context
 * permits, or wakes the background reclaimer. Shrinkers free objects, which
 * returns room to the budget. docs/design.md has the full picture, reclaim(7)
 * the model and the environment, and each group of calls has its page in
 * section 3 (rcl_alloc(3), rcl_scope(3), rcl_shrinker(3), ...).
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

/* The version of this header; rcl_version() gives the library's. Kept
 * equal to the VERSION file (the build checks). */
#define RCL_VERSION_MAJOR 0
#define RCL_VERSION_MINOR 1
#define RCL_VERSION_PATCH 0
#define RCL_VERSION_STRING "0.1.0"
/* One number for comparisons: 0.1.0 is 100, 1.2.3 is 10203. */
#define RCL_VERSION_NUMBER \
    (RCL_VERSION_MAJOR * 10000 + RCL_VERSION_MINOR * 100 + RCL_VERSION_PATCH)

/* The running library's version, "MAJOR.MINOR.PATCH", and as a number
 * formed as RCL_VERSION_NUMBER is: a program built against one header can
 * see which library it was loaded with. */
const char *rcl_version(void);
unsigned    rcl_version_number(void);

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
#define RCL__NORETRY        0x0100u /* one light attempt at reclaim, then fail;
                                       NOFAIL outranks it                         */
#define RCL__NOWARN         0x0200u /* no failure report                          */
#define RCL__ZERO           0x0400u /* zeroed memory                              */
/* Any other bit is a mistake: every call that allocates, charges or
 * reclaims with flags, and rcl_might_alloc(), reports it and is served as
 * if it were clear. rcl_current_gfp() only computes: it passes such bits
 * through. */

/*
 * NOFAIL and scopes. NOFAIL needs RCL__DIRECT_RECLAIM in the call's own
 * flags: NOFAIL|NOWAIT at the call is a contradiction anyone can see there,
 * refused with EINVAL (and reported unless NOWARN) by every call, however
 * much the thread's cache or stock holds. A scope an outer caller opened never makes a NOFAIL
 * request fail: inside NOWAIT (no direct reclaim), NORECLAIM (no reclaim at
 * all), NOFS/NOIO (narrowed reclaim; an I/O-flusher thread is NOIO) a
 * request that fits the budget this context may ever use gets, in order:
 *   1. room in the budget above its floor (after reclaim in its own,
 *      scope-narrowed context, where the scope leaves it direct reclaim);
 *   2. the reserve: all of it in NORECLAIM scope and on an I/O flusher
 *      (their usual right); otherwise half of it (the share of RCL__HIGH),
 *      the kernel's grant to a NOFAIL request reclaim cannot serve; none
 *      with RCL__NOMEMALLOC, which beats this grant as it beats the others;
 *   3. a wait without end: it wakes the background reclaimer and sleeps in
 *      short bounded steps until that reclaimer or other threads' frees make
 *      room, reporting a stall every stall_ms. Never NULL, but where a
 *      limit lowered meanwhile leaves it a request that can never succeed:
 *      it then fails with E2BIG, as one that never fitted does at once
 *      (see "errno on failure" under Allocation).
 * With the lock checker on, a NOFAIL allocation inside a NOWAIT or NORECLAIM
 * scope is reported once per call site ("NOFAIL allocation inside a NOWAIT
 * scope"), with where the allocation was made and, when the checker saw it,
 * where the scope was opened.
 */
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
 * the calls. `checked` is nonzero while the lock checker watches the thread
 * (from its first call into the library with the checker on) or the thread
 * is an I/O flusher, and sends the calls to the library, where the checker
 * sees them and a flusher's restores keep NOIO.
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
 * An I/O-flusher thread (rcl_io_flusher_set) is in NOIO scope. Bits no
 * RCL_* flag has pass through unreported, as the kernel's
 * current_gfp_context() leaves them: the call they are given to reports
 * them.
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
 * code that asked for it. As Tetsuo Handa asked in the "mm: add
 * PF_MEMALLOC_NOFS" thread (linux-kernel, April 2016): "Don't we need to
 * convey PF_MEMALLOC_NOFS/PF_MEMALLOC_NOIO flags to APIs which interact
 * with other threads?" The library's workqueue does this for every work item.
 *
 * Adopting only adds restrictions: the scope bits are or-ed in, the domains
 * are entered on top of the thread's own, the journal cookie replaced.
 * rcl_context_restore(saved) returns the thread exactly to the state
 * rcl_context_adopt() saved, so adopt/restore pairs nest; saved may be
 * the context adopted itself. The scope bits an
 * adopt added are taken like a save's token: a restore out of order (an
 * inner adopt still not restored) clears only those, as a scope token's
 * does, and is reported when the lock checker is on. Domains and the
 * journal cookie have no token: those of the inner adopt, still open, stay
 * in force, and its restore puts back what the outer one saved. Once every
 * adopt is restored, in any order, the thread is what it was before the
 * first. A saved context restored on a thread other than the one that
 * adopted, or restored a second time, is reported and changes nothing;
 * so is a NULL context given to any of the three calls. A
 * context rcl_context_capture() wrote may be restored too: the thread's
 * journal cookie becomes the captured one, and a domain entered since and
 * still entered is exited (reported, as one never exited), but its scope
 * bits stay, since a capture sets none and so has none to take back (a
 * save's token of 0). Restored where the scope (NORECLAIM aside) is not
 * the captured one - a scope opened since is still open, or one open then
 * has closed - it is out of order, and reported when the lock checker is
 * on; so is one whose domains the thread has left since (reported
 * always), and they stay left: an entry a restore made would have no
 * token for an exit to take it off.
 * From a domain's may_reclaim, a shrinker's callback or a work item, a
 * restore that would take off a domain the caller was inside before the
 * call (rcl_domain_enter() below) is reported and refused. An adopt such a
 * callback makes and never restores is reported and ended as it returns
 * (its domains exited, its scope bits taken back, and the worst case of
 * domains that did not fit or were destroyed, below, with them), so the
 * caller's own restore is not left out of order behind it.
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
 * (depth s) treats it as follows (Dave Chinner's proposal in the
 * "Overhaul memalloc_no*" thread, dm-devel, June 2020):
 *   S == D        ask D's may_reclaim callback (NULL callback: skip it);
 *   s != d        as if in NOFS scope (layering may recurse across them);
 *   otherwise     unrestricted.
 * Inside several domains, the most restrictive answer wins, and a NOFS/NOIO
 * scope still applies on top: a domain never widens what a scope forbids.
 *
 * may_reclaim runs in the reclaiming thread, in NORECLAIM scope, with no
 * library lock held, and sees that thread's rcl_journal_info(); it must
 * not block on the domain's locks. Its allocations and frees are ordinary
 * ones (not a signal handler's), and a cancel pending when it reaches a
 * cancellation point takes effect after it returns. It is asked for each
 * of the domain's shrinkers at each reclaim pass, and by an allocation
 * that reclaim left short, whether to wait for another thread's pass
 * inside one of them, so it should be cheap (a look at the thread's
 * transaction state). One that returns with a scope it opened still open,
 * a context it adopted never restored, or inside a domain it entered, is
 * reported and the thread put back as it was, as after a shrinker's
 * callbacks. Its exit of a domain the asking
 * thread entered (that thread's token) is reported and refused: the
 * thread stays inside it until its own exit. So is a restore of a context
 * that would take such a domain off (one the thread adopted, or captured
 * outside it). A shrinker's count() and scan() and a work item (for the
 * queuer's domains) are held to the same rule.
 */
struct rcl_domain;
typedef int (*rcl_domain_may_reclaim_fn)(struct rcl_domain *d, void *arg);

/* NULL and errno EINVAL, reported, for a NULL name; ENOMEM when out of
 * memory. The name is copied. */
struct rcl_domain *rcl_domain_create(const char *name, unsigned depth,
                                     rcl_domain_may_reclaim_fn may_reclaim, void *arg);
/* Destroying a domain that a thread is still inside, or that still owns
 * shrinkers, is refused: it is reported and the domain stays valid (while
 * the destroy decides, another thread's enter of it is refused, and its
 * name and depth read as a live domain's). A
 * thread that ends inside domains (returned, exited or cancelled before
 * its exits, or entered from one of its thread-specific data destructors
 * within the rounds of them POSIX runs) leaves them as it ends. */
void     rcl_domain_destroy(struct rcl_domain *d);
/* Returns a token for rcl_domain_exit(); 0 when d is not a live domain
 * or is being destroyed on another thread, or the thread is already
 * inside RCL_MAX_DOMAINS domains (each reported). NULL is no domain to
 * enter, not a mistake: 0, unreported, so code that may or may not have a
 * domain needs no branch (rcl_domain_exit(0) is a no-op). Never allocates.
 * The same domain may be entered again while inside it. */
unsigned rcl_domain_enter(struct rcl_domain *d);
/* Exits must come in reverse order of the enters; a wrong token (out of
 * order, already used, another thread's, or one from before the call
 * exited in a may_reclaim callback or a shrinker's) is reported and
 * changes nothing.
 * Token 0 is a no-op. Domains adopted from a context are left only by
 * rcl_context_restore(). An adopted context whose domains do not all fit
 * is reported, and until the restore every shrinker that belongs to a
 * domain is skipped: never less strict than what was asked. */
void     rcl_domain_exit(unsigned token);
/* NULL (errno EINVAL) / 0 for NULL or a destroyed domain. The name
 * returned is the domain's copy, valid until the domain is destroyed.
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
 * A reserve not below the limit would leave ordinary allocations nothing:
 * rcl_init() and rcl_set_limit() refuse one, and where the cgroup moves an
 * automatic budget to it or below (reported), min_pct% alone is the
 * reserve until the budget grows past it again.
 *
 * Defaults: limit automatic (see rcl_auto_limit()), min 2 %, low 5 %,
 * high 10 %, background reclaimer on (a single thread, "rcl-reclaimd",
 * started the first time headroom falls below low; when it cannot be
 * started, say EAGAIN at the process's thread limit, that is reported and
 * a later wake-up tries again, at most every 100 ms, while allocations
 * reclaim directly), pressure following on,
 * lock checker off (lockdep = RCL_LOCKDEP_ON, or RECLAIM_LOCKDEP=1 for a
 * program configured from the environment; turning it on loads libgcc_s,
 * which glibc's backtrace() would otherwise open at its first call, while
 * another thread may be forking: rcl_lockdep(3)).
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
    int      background;   /* 1 = run the background reclaimer thread (default 1);
                              0 or 1, as its variable */
    int      pressure;     /* 1 = follow PSI and cgroup usage (default 1 where present);
                              0 or 1 */
    int      lockdep;      /* RCL_LOCKDEP_OFF / RCL_LOCKDEP_ON / RCL_LOCKDEP_VERBOSE */
    unsigned stall_ms;     /* a NOFAIL allocation stalled this long is reported, and
                              again every stall_ms; 0 = default (10000) */
    int      footprint;    /* how real memory is measured: RCL_FOOTPRINT_* (see
                              rcl_footprint()); 0 = RCL_FOOTPRINT_AUTO */
    unsigned direct_us;    /* the bound on the shrinker work of one allocation's
                              direct reclaim while the background reclaimer runs,
                              microseconds; 0 = default (50), RCL_DIRECT_UNBOUNDED
                              = none. An allocation still short after it waits for
                              the background reclaimer in short sleeps
                              (rcl_stats.throttled). */
    /* Reserved for options added later; must be zero (rcl_init() refuses
     * anything else with -EINVAL). Zero in a later field means its default,
     * so a program built against this header keeps its meaning. */
    unsigned long rcl_reserved[7];
};
#define RCL_DIRECT_UNBOUNDED 0xffffffffu

/*
 * Configuration precedence, one rule: a program that passes its own
 * configuration to rcl_init() gets exactly that; the RECLAIM_* environment
 * configures programs that do not (no rcl_init() call, or rcl_init(NULL)),
 * and programs that ask for it with rcl_config_from_env(). The variables,
 * their defaults and ranges are listed in reclaim(7) and the README, both
 * written from the library's one table of options.
 *
 * rcl_config_default() fills cfg with the defaults above and nothing else;
 * a NULL cfg is reported, and nothing is written.
 */
void   rcl_config_default(struct rcl_config *cfg);

/* Applies the RECLAIM_* variables that are set on top of cfg (usually
 * fresh from rcl_config_default(), so a program can let its operators
 * override it, or read them after its own settings to let the environment
 * win). A malformed or out-of-range value is ignored, every other variable
 * still applies, and one report names each ignored variable with its
 * value. 0 when everything set was applied, -EINVAL when something was
 * ignored or cfg is NULL (reported too). Sizes take K, M, G, T suffixes (also KiB, MB). */
int    rcl_config_from_env(struct rcl_config *cfg);

/* Optional. NULL means the defaults with the environment applied, as on
 * first use. Returns -EINVAL for a configuration that cannot work
 * (min < low < high must hold, high < 100; reserve below the limit as
 * taken, LONG_MAX at most; background and pressure 0 or 1; lockdep and
 * footprint one of their modes; reserved words zero), each
 * reported with the field at fault, -EBUSY when the library is already initialised
 * (call rcl_shutdown() first; rcl_init(NULL) then reads no variable, and
 * reports none), -EAGAIN (reported) when the process holds
 * PTHREAD_KEYS_MAX thread-specific data keys and the library's first
 * start finds none for its own. Any other entry point initialises the
 * library on first use. When the environment alone asks for something
 * impossible, first use reports it and runs on the plain defaults. From
 * a signal handler the library can tell (see "Signal handlers" below) it
 * is refused with -EBUSY, started or not, and the thread reports it at
 * its next allocation; so is the start a first use would make there. */
int    rcl_init(const struct rcl_config *cfg);

/* Stops the background reclaimer and the pressure thread (a workqueue's
 * threads stop in rcl_workqueue_destroy()) and drops all the library's
 * state, the lock-dependency graph and the shrinker registry included;
 * rcl_init() may follow. No other thread may be inside the library
 * meanwhile. Memory allocated before stays valid and may still be freed
 * with rcl_free(); it is no longer accounted. What rcl_charge() charged
 * before is dropped with the budget: nothing tells it from a later
 * charge, so an rcl_uncharge() of it after rcl_init() takes back what
 * was charged since, and beyond that is reported. Where it cannot run it is
 * reported and does nothing: from a shrinker's callback (it would wait
 * for its own pass), from a domain's may_reclaim (the pass or the
 * allocation that asked goes on after it), from an LRU's isolate callback
 * (it runs under the LRU's lock, which the background reclaimer the
 * shutdown joins may be waiting for), on the library's background
 * reclaimer or pressure thread (it would have to join the thread it runs
 * on), and from a report
 * function (the call that made the report goes on after it). Inside the
 * report of such a refusal it is refused without a report, so a report
 * function that shuts down at every report does not recurse. The rule
 * for the program's other callbacks: it runs wherever the call that made
 * the callback holds none of the library's locks across it and nothing it
 * drops, so from a mempool's backing allocator or free and from a work
 * item it goes through, and the pool or the queue works on in the library
 * started again. From a
 * signal handler it is refused too, and reported later (see "Signal
 * handlers" below), where the library can tell. */
void   rcl_shutdown(void);

/*
 * fork(). The library takes all its locks around fork() (pthread_atfork, the
 * way glibc's malloc does), so a child may fork while other threads are
 * inside the library and still use all of it: allocate, reclaim, use its
 * mempools, LRUs and domains (inherited or new), register shrinkers, and
 * create new workqueues. The library's threads do not survive a fork: the
 * background reclaimer comes back at the child's first need of it, the
 * pressure thread at the child's next slow-path call. A child forked on the
 * background reclaimer's thread (from a shrinker's callback, or a report
 * function running there) goes on in that thread until its pass is done; the
 * thread then ends (reported), and the child with it unless it started
 * threads of its own. One forked on the pressure thread (a report function
 * running there, or a shrinker's callback in the reclaim it does without a
 * background reclaimer) goes on there until the step it forked in returns,
 * and that thread then ends the same way. Blocks the other threads held in
 * their per-thread caches are lost to the child (their charge is returned),
 * and a domain another thread was inside at the fork stays "in use" there
 * (its destroy is refused). A mempool forgets in the child the allocations
 * other threads were waiting in at the fork; one whose backing allocator
 * forked in a waiting allocation's retry goes on in the child as a waiter
 * of its pool until it returns. A shrinker another thread was unregistering at
 * the fork is unregistered in the child: at once, or, held by a reclaim
 * pass of the forking thread (a fork from a shrinker's callback), when that
 * pass lets it go; but for an LRU's shrinker so held, whose LRU another
 * thread was destroying: the LRU is the child's to use and to destroy
 * (rcl_lru(3)), and its destroy there unregisters that shrinker once the
 * pass is over. rcl_shutdown() in the child only touches the child.
 * fork() waits for calls in flight to leave the library's locks, so the one
 * thing a forking thread must not hold is a lock an LRU's isolate callback
 * blocks on (that callback runs under the LRU's lock; the header's example
 * only tries its lock, which is safe). An isolate callback may itself fork:
 * the LRU whose lock its walk holds is left to the walk, which goes on in
 * parent and child and lets it go.
 *
 * A workqueue created before the fork runs nothing in the child (its
 * threads are the parent's): rcl_queue_work() returns -ECHILD,
 * rcl_flush_workqueue() returns at once, and rcl_workqueue_destroy() frees
 * the child's copy, dropping the items queued there without touching them
 * (they may live on a stack the child does not have); each reported. So
 * it does for a queue another thread was destroying at the fork, unless
 * that destroy had drained it already: that copy stays.
 * Create a new queue in the child instead. A child forked inside a work
 * item goes on in the queue's thread: when the item returns there, that
 * thread ends (reported), and the child with it unless it started threads
 * of its own. An item that ends that thread in the child with
 * pthread_exit() ends it the same way: no worker is started there in its
 * place.
 *
 * pthread_cancel(). No library lock or pin outlives a cancelled thread.
 * The library's long waits stay cancellation points and release what they
 * hold when cancelled: rcl_mempool_alloc() and rcl_mempool_alloc_bulk()
 * waiting for elements (nothing taken), rcl_flush_workqueue() (nothing
 * flushed), an allocation waiting for memory - a NOFAIL one waiting for
 * the budget or for the system allocator, or one the background reclaimer
 * throttles (what it had charged goes back, and the thread's cleanup
 * handlers and destructors allocate and free as ordinary calls, not as a
 * signal handler's inside the library). Everything else that
 * holds a lock or a pin across a wait or a user callback defers a cancel
 * until it is done, and the cancel takes effect at the thread's next
 * cancellation point: reclaim (a thread cancelled while one of its
 * shrinkers scans finishes the pass first), rcl_lru_walk() (an isolate
 * callback runs under the LRU's lock), a domain's may_reclaim,
 * rcl_shrinker_unregister(), rcl_workqueue_destroy(), rcl_mempool_resize(),
 * rcl_init(), first use and rcl_shutdown(), the report function (called
 * with cancellation off), and
 * the library's own reads inside other calls (an allocation measuring the
 * footprint, rcl_set_limit() closing the cgroup file it measured by, the
 * lock checker naming functions in a report): a cancel pending there
 * takes effect after the call.
 *
 * pthread_exit() from a shrinker's count() or scan(), or from a domain's
 * may_reclaim, is not deferred (the cancel state does not hold an exit
 * back): the pass ends there as the callback's return would have ended
 * it - the shrinker let go, the lock checker's record of the pass closed,
 * the thread's scope and stock as reclaim leaves them - before the
 * program's own cleanup handlers run. The same holds for an isolate
 * callback of rcl_lru_walk() (the LRU's lock let go, the item it was
 * given left on the LRU; in rcl_lru_shrinker()'s scan, the items it had
 * removed before it left on the LRU as those a free_fn leaves, below), an
 * rcl_lru_shrinker()'s free_fn (the items the scan had still to free stay
 * on the LRU, counted, and the next walk takes them first: see there), a
 * mempool's backing allocator or free called
 * by rcl_mempool_resize() (a grow fails as a failed allocation would
 * fail it: the elements it had freed, the pool as it was; a shrink gives
 * back the rest of the reserve's surplus all the same) or by the
 * create's fill of the reserve, and a shrinker run by the reclaim of the
 * create's own allocations (no pool is left), a backing free called
 * by rcl_mempool_free() (the element counts as returned) or
 * rcl_mempool_free_bulk() (the elements after it are returned too), one
 * called as a destroyed pool is freed, by rcl_mempool_destroy() or by
 * the call that leaves the pool last (the rest of the reserve and the
 * pool are freed all the same), a backing allocator or free called by
 * rcl_mempool_alloc_bulk() (the call gives back what it had, as a failed
 * one does), and a shrinker that ends
 * the background reclaimer's thread: that is reported, and the next
 * wake-up starts another reclaimer.
 *
 * Signal handlers. Exactly these calls are async-signal-safe, on the
 * thread the signal interrupted:
 *   rcl_alloc, rcl_calloc, rcl_aligned_alloc (alignment <= 16) and
 *   rcl_realloc (p NULL) of up to 256 bytes, and rcl_free / rcl_vfree of
 *   any block, between rcl_signal_enter() and rcl_signal_leave();
 *   rcl_signal_enter() and rcl_signal_leave() themselves.
 * Bracketed so, a call never blocks, takes no lock and never calls the
 * allocator behind the library: an allocation takes a block from a small
 * per-thread stash (eight 256-byte blocks, charged to the budget, made at
 * the thread's next ordinary allocation after a handler first asks for a
 * block - never for handlers that only free - and
 * topped up the same way), and NULL (ENOMEM) means none is there now; a
 * larger request, a NOFAIL one, rcl_valloc() and a realloc that would move
 * a block fail the same way; size 0, an alignment that is not a power of
 * two and NOFAIL without RCL__DIRECT_RECLAIM are EINVAL, as outside a
 * handler (the last reported unless NOWARN, by the thread later). Each
 * counts in rcl_stats.failures as the thread's failures do, whichever
 * call fails: an ENOMEM always, an EINVAL or EOVERFLOW only with NOFAIL,
 * whose caller will not look for NULL. A free
 * is deferred: the block stays charged until the thread's next
 * allocation, rcl_usage_sync() or exit releases it - or, on a thread that
 * never called the library or whose exit has already run (a handler in
 * one of its later destructors), until any thread's next
 * rcl_usage_sync(), exit or allocation that takes the slow path; a bad
 * free there, and a realloc of a pointer that is no block or one freed
 * already (NULL, EINVAL, the pointer left alone), is counted at once as a
 * bad free and reported by the thread later. The
 * flags are otherwise ignored: nothing in a handler reclaims.
 * Unbracketed, the same calls take that path only when the handler
 * interrupted the thread inside an allocation-family call, rcl_charge,
 * rcl_uncharge, rcl_reclaim, rcl_usage, rcl_usage_sync, rcl_set_limit,
 * rcl_limit, rcl_footprint, rcl_stats_get, rcl_stats_shrinkers or a
 * report, the first of them to use the library included, which starts it
 * (the allocation path's own locks and the thread's stock are safe then,
 * and a handler's call cannot start the library again inside that
 * start), or inside the start another call makes (rcl_init(), or the
 * first use by rcl_shrinker_register, rcl_io_flusher_set,
 * rcl_io_flusher_reserve, rcl_might_alloc or rcl_lock_acquire); elsewhere
 * they take the ordinary path, which may call malloc()
 * and take locks: unsafe if the thread was inside malloc() itself or
 * another library call. Bracket every handler that allocates. No other
 * library call may be made from a signal handler: rcl_shutdown() from
 * one that is bracketed, or that interrupted one of the calls above, is
 * refused, and the thread reports it at its next allocation.
 *
 * Nor does a handler start the library: a start takes locks, calls
 * malloc() and starts threads. In a bracketed handler, in one that
 * interrupted one of the calls above and in one that interrupted its
 * thread's own start (which holds the lock a start waits for), rcl_init()
 * returns -EBUSY, started or not, and rcl_shutdown() does nothing. In a
 * bracketed handler and in one that interrupted its thread's start, an
 * allocation before the library starts returns NULL with ENOMEM, as from
 * an empty stash, and the first use of another call is refused its start:
 * rcl_charge() returns -ENOMEM, rcl_shrinker_register() NULL with ENOMEM,
 * and the rest (not a handler's to make anyway) go on as after a failed
 * start. Each refused rcl_init(), start and rcl_shutdown() is reported by
 * the thread at its next allocation. A handler the program did not
 * bracket cannot be told from the thread elsewhere: there its first use
 * starts the library as the thread's would, unsafe as above, and may wait
 * for ever for a lock the call it interrupted holds; so may its rcl_init()
 * where it interrupted the thread outside the library.
 *
 * A thread's last round of thread-specific data destructors
 * (PTHREAD_DESTRUCTOR_ITERATIONS). The library's own destructor
 * unregisters the thread in every round, and in the last leaves it out of
 * the library for good: nothing would give back what it held after that.
 * A destructor that runs after the library's there is served as a signal
 * handler is: an allocation returns NULL with ENOMEM, a NOFAIL one too,
 * rcl_charge() returns -ENOMEM, and a free is deferred as a handler's on
 * a thread whose exit has run (above).
 */
/* Returns a cookie for rcl_signal_leave(); they nest. A leave without its
 * enter is ignored, and reported by the thread's next allocation: in a
 * handler that interrupted a library call too, where the call goes on
 * inside the library. What a handler did wrong (such a leave, a bad free
 * or realloc, a refused rcl_shutdown(), NOFAIL without
 * RCL__DIRECT_RECLAIM, a refused rcl_init() or start) is reported by the
 * thread it interrupted, never by another, counted by kind: more than 15
 * of one kind before the thread reports them are reported as "15 or
 * more". What the thread has not reported when it exits (in its exit, or
 * after), and what a handler does wrong on a thread that has not used the
 * library yet, is reported by the next thread that serves a handler's
 * request of its own (a free, a stash, a report), which says the library
 * was not serving that thread. A bracketed handler must leave through
 * rcl_signal_leave(): one that siglongjmp()s out of its bracket leaves
 * the thread marked as in a handler, served as one, for good. */
unsigned rcl_signal_enter(void);
void     rcl_signal_leave(unsigned cookie);

/* Changes the limit; -EINVAL, reported and the limit unchanged, for 0 and
 * for a limit no larger than the reserve (as rcl_init() refuses it). A limit above LONG_MAX
 * (SIZE_MAX for "none", say) is taken as LONG_MAX, here and in
 * struct rcl_config.limit, and rcl_limit() says so: the budget's books
 * are signed words. Lowering it below current usage is allowed: the
 * background reclaimer (if any) is woken to get back under.
 * The limit is then the program's: the pressure thread no longer moves an
 * automatic budget with the cgroup (see rcl_auto_limit), and the footprint
 * is measured as a budget the program set (see rcl_footprint): by resident
 * memory from 32 MiB up, by the charges alone below, never by the
 * cgroup's usage, unless struct rcl_config.footprint forces a measure.
 * A lowered limit binds what threads pre-charged under the old one: the
 * caller's stock goes back at once (a shrinker's call too, in the middle
 * of its thread's reclaim), every other thread's at its next
 * allocation, charge or free (its stock is not spent). Precisely: once the
 * call returns, the budget's counter (stocks included) grows only through
 * charges checked against the new limit, so usage stays <= max(new limit,
 * usage when the call returned): a charge in flight that read the old
 * limit is checked again against the new one, and taken back and made
 * again under it if it does not fit, as the kernel's charge compares its
 * sum with the memory.max it reads after its add, or landed before the
 * call looked at the usage, and is counted there and reclaimed with the
 * rest; an allocation already in flight in
 * another thread at the call may still complete from that thread's old
 * stock (one allocation per thread, at most its stock). The same holds
 * when the pressure thread lowers an automatic budget. */
int    rcl_set_limit(size_t bytes);
size_t rcl_limit(void);

/* Accounted bytes. Each thread keeps a small stock of pre-charged bytes so
 * that the allocation fast path writes no shared cache line; the stock is
 * part of the budget's usage. rcl_usage() subtracts every thread's stock,
 * so it is exact whenever no allocation is in flight, and never above the
 * true figure while only frees are in flight (a thread returning stock to
 * the budget at that moment may make it read low, never high). During an
 * allocation in flight it may include that allocation's stock refill. */
size_t rcl_usage(void);
/*
 * The real memory the budget is held to: rcl_usage() plus what the process
 * holds beyond its charges - the allocator's rounding, fragmentation and
 * retained free memory, and memory allocated without the library - as
 * measured now. The library measures it every limit/64 bytes charged, or
 * every 256 KiB where that is more (a limit below 16 MiB: never more
 * often), after each background reclaim pass and on cgroup events, and
 * every watermark is tested against it, so the budget's limit bounds what
 * the process really holds:
 *   - with the automatic budget under a cgroup limit, the cgroup's usage
 *     (less its inactive page cache) is the measure, and everything in the
 *     cgroup counts, other processes included;
 *   - otherwise, for a budget of 32 MiB or more, the process's resident
 *     memory above what it held when the library started (what the
 *     program allocates elsewhere after that counts);
 *   - a smaller budget the program set is held to its charges alone: a
 *     thread's stack or a new malloc arena would be a large share of it
 *     (RECLAIM_FOOTPRINT=rss or cgroup, or struct rcl_config.footprint,
 *     asks for a measure anyway);
 *   - the ASan and TSan builds count charges alone: their shadow memory
 *     and quarantine are not the program's.
 * The measure follows the budget as it is now: rcl_set_limit() makes it
 * the program's, and an automatic budget measures by the cgroup while a
 * cgroup limit gives it (the pressure thread sees a limit set, removed or
 * moved to another level), by resident memory otherwise. "What it held
 * when the library started" stays the base whenever resident memory
 * becomes the measure. A forced measure stays; cgroup falls back to
 * resident memory while no cgroup limit gives a budget.
 * Reclaim gives freed memory back to the operating system (malloc_trim,
 * mi_collect, a jemalloc purge) once a megabyte or more of it is owed, or
 * while the budget is short of room, at most every 100 ms (10 ms for
 * jemalloc; 5 ms while what reclaim freed is a sixteenth of the budget or
 * more), so that the footprint falls with the charge. A budget held to its
 * charges alone has nothing resident to lower: an allocation's direct
 * reclaim trims nothing for it, while a background pass and rcl_reclaim()
 * still give back what they freed, as memory the process no longer uses.
 */
size_t rcl_footprint(void);
/* struct rcl_config.footprint: AUTO chooses as above; the others force one
 * way. */
#define RCL_FOOTPRINT_AUTO   0
#define RCL_FOOTPRINT_OFF    1
#define RCL_FOOTPRINT_RSS    2
#define RCL_FOOTPRINT_CGROUP 3
/* Folds the calling thread's stock back into the budget, and every other
 * thread's at its next allocation or free; the budget's own counter then
 * equals rcl_usage(). Each thread's cached free blocks (see rcl_alloc) go
 * back to the backend at the same moment, and so do the depot's. */
void   rcl_usage_sync(void);

/* The limit that limit = 0 selects: the process's memory cgroup limit (v2
 * memory.high / memory.max, v1 memory.limit_in_bytes) less a margin, else
 * half of physical memory.
 *
 * The cgroup is found through /proc/self/cgroup and /proc/self/mountinfo
 * (a v1 memory hierarchy first, else cgroup2), under the first mount of
 * its hierarchy that shows it. A cgroup no mount shows (one outside the
 * cgroup namespace's root reads "/../x") gives no cgroup limit, reported
 * once: no limit the process can see binds it. A cgroup whose directory is
 * gone (the process moved to another, the old one removed) is followed:
 * /proc/self/cgroup is read again, up to three times, and a cgroup still
 * gone is reported as gone and gives no cgroup limit, and so is one whose
 * directory's path, its mount point's in front, is PATH_MAX bytes or more
 * (it cannot be opened by name). The binding limit
 * is the smallest set one from the process's cgroup up to the mount
 * point, every level however deep (a parent's limit holds its children);
 * v2 "max" and v1's huge "unlimited" value are no limit, and so is a limit
 * at or above physical memory. A limit of 0 is a limit, the tightest: the budget is
 * then the least there is, 1 byte, and as under any cgroup limit below the
 * reserve, rcl_init() refuses a reserve and a move to it while running
 * sets the reserve aside (reported).
 * Margin, for memory the library does not see (code, stacks, other
 * allocators, page cache, the kernel's charges): RECLAIM_CGROUP_MARGIN, a
 * size ("32M") or a percentage ("10%"); default 1/8 of the limit; never
 * more than half. Example: a 128 MiB cgroup gives a 112 MiB budget. A bad
 * margin is ignored (1/8) and reported once for each value and start,
 * however often the budget is measured.
 *
 * With pressure = 1 the library follows, from one thread ("rcl-pressure",
 * only when there is something to follow; it sleeps in poll()):
 *   - the cgroup limit, re-read each second: when it changes, an automatic
 *     budget is moved with it; so is /proc/self/cgroup, and a process moved
 *     to another cgroup follows that group's limit and usage (the move is
 *     reported); a limit the program chose (a nonzero
 *     struct rcl_config.limit, or any rcl_set_limit() call, even one made
 *     while the budget was automatic) is left alone;
 *   - a PSI trigger ("some 150000 1000000": 150 ms stalled in 1 s; where
 *     the kernel refuses it, "some 300000 2000000") on the cgroup's
 *     memory.pressure (v2) or /proc/pressure/memory;
 *   - systemd's protocol instead, when $MEMORY_PRESSURE_WATCH is set: a
 *     PSI file, FIFO or AF_UNIX socket, to which $MEMORY_PRESSURE_WRITE
 *     (base64) is written first; "/dev/null" turns pressure handling off
 *     (no stall is watched, and usage near the cgroup limit is not taken
 *     as pressure), though an automatic budget still follows the limit;
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
 * named in /dir/proc/self/mountinfo. /dir must be an absolute path to a
 * directory, short enough for /proc/pressure/memory after it to fit in
 * PATH_MAX bytes; another value is reported and ignored (the files are
 * read under /). */
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
 * fails. No allocation waits without bound on reclaim in a wider context,
 * but a NOFAIL one its own context cannot serve: that one retries in
 * short bounded sleeps for as long as it takes ("NOFAIL and scopes").
 *
 * errno on failure:
 *   EINVAL     size 0, alignment not a power of two, NOFAIL without
 *              RCL__DIRECT_RECLAIM in gfp itself (a scope that removes it
 *              never fails NOFAIL: see "NOFAIL and scopes" above), for
 *              rcl_realloc() whether the block would grow, shrink in place
 *              or move, the block kept;
 *   EOVERFLOW  n * size (or size plus the library's header) overflows;
 *   E2BIG      larger than this context could ever get (limit - reserve for
 *              ordinary contexts), so retrying is pointless;
 *   ENOMEM     no room now.
 * With RCL__NOFAIL (which needs RCL__DIRECT_RECLAIM in gfp) the call never returns
 * NULL for a request that can succeed (but in a signal handler's call and
 * in a thread's last round of destructors, above): it reclaims, waits
 * with a bound and retries, reporting a stall every stall_ms (default
 * 10 s) while it waits.
 * That holds when the allocator behind the library fails too (malloc,
 * posix_memalign, realloc or mmap returning NULL), for rcl_alloc,
 * rcl_calloc, rcl_realloc, rcl_aligned_alloc and rcl_valloc alike: the
 * call keeps its charge, reclaims what its context allows, waits and asks
 * again ("allocation stall ... the system allocator keeps failing").
 * A NOFAIL request that can never succeed fails at once, with a report
 * unless RCL__NOWARN. So does a NOFAIL request already waiting, with the
 * same E2BIG and report, at its first try after a lowered limit
 * (rcl_set_limit() or the automatic budget) made it one: a limit that dips
 * and comes back between two tries leaves it waiting. Other failures for
 * want of room (E2BIG, ENOMEM) are reported (rate-limited) unless NOWARN.
 * Without NOFAIL, size 0, a bad alignment and a size that overflows are
 * not reported, nor counted in rcl_stats.failures: NULL and errno say it,
 * as calloc() says an overflow, to a caller that looks for NULL.
 *
 * A block charges what it takes from the allocator behind the library, not
 * the size asked for: its size class (below), its 16-byte header (which is
 * how rcl_free() knows the size and tells foreign pointers) and the
 * allocator's own per-block overhead (16 bytes for glibc); above 64 KiB,
 * the size, header and overhead to the byte. rcl_alloc_charge() says how
 * much for a given size. Over glibc an allocation the cache has no block
 * of its class for may be served by a cached block of a larger class, up
 * to half as large again (the next class up whatever its size): it then
 * charges that class's, the memory it holds, until it is freed.
 * Aligned blocks (an alignment above 16; up to 16, rcl_alloc's block),
 * but those the library maps (below), charge at least size + align: in
 * a backend block of up to 64 KiB, what the allocator holds for them, its
 * usable size for the block (and glibc's size word, or its two words for
 * a chunk it maps, as it does where the program set M_MMAP_THRESHOLD
 * below 64 KiB) with the padding it adds for the alignment, which over
 * glibc may be less than size + align and the overhead; above, size +
 * align and the overhead to the byte, as other blocks. A free gives back
 * the same.
 * valloc blocks charge their pages and one more for the header, as does
 * a zeroed aligned block above 64 KiB over glibc, which the library maps
 * itself (rcl_aligned_alloc). What the process holds beyond its charges
 * counts too: see rcl_footprint().
 *
 * Each thread keeps a few of the blocks of up to 64 KiB it freed and hands
 * them out again before asking the backend, as the kernel keeps per-CPU
 * freelists. A cached block stays charged: the budget counts it,
 * rcl_usage() does not (rcl_stats.thread_cached does);
 * rcl_usage_sync(), reclaim, an allocation that finds the budget short,
 * and thread exit give them back. Blocks up to 64 KiB are asked of the
 * backend rounded up to a size class. The figures (how many blocks per
 * class, the rounding) are in docs/design.md, "The per-thread block cache".
 */
void *rcl_alloc(size_t size, rcl_gfp_t gfp);
/* What rcl_alloc(size) charges the budget (more for a block of a larger
 * class, above); 0 for 0 or a size too large to allocate. */
size_t rcl_alloc_charge(size_t size);
/* Always zeroed. Above 64 KiB (as rcl_alloc with RCL__ZERO) the allocator
 * zeroes the block as its own calloc does: memory fresh from the system is
 * not written, so a large table a program fills sparsely stays out of the
 * resident set where it is not filled (over mimalloc, whose own zeroed
 * allocation writes a large block whole, the block's whole pages are
 * given back instead, and read as zeros). A zeroed allocation the
 * allocator refuses fails the call with ENOMEM. */
void *rcl_calloc(size_t n, size_t size, rcl_gfp_t gfp);
/* NULL p: rcl_alloc. size 0: EINVAL, p untouched. On failure p is untouched.
 * A p the library did not hand out (or one already freed, where that can
 * still be seen) is refused as rcl_free() refuses it, whatever the size, 0
 * and an overflowing one included: reported, NULL with EINVAL, counted in
 * bad_frees, nothing there written or freed.
 * A block that must move is moved to an rcl_alloc() block, with its 16-byte
 * alignment: as with C's realloc(), a block from rcl_aligned_alloc() or
 * rcl_valloc() keeps its alignment only while it is resized in place.
 * With RCL__ZERO a grow zeroes what it adds; above 64 KiB the allocator
 * zeroes it, as rcl_calloc's: memory fresh from the system is not written
 * (over glibc, whose realloc cannot tell, a grow that at least doubles
 * the block moves it to a calloc'ed block; a smaller one is written). */
void *rcl_realloc(void *p, size_t size, rcl_gfp_t gfp);
/* An alignment above SIZE_MAX / 4, or a size that with twice the
 * alignment overflows, fails with EOVERFLOW before anything is charged.
 * With RCL__ZERO and an alignment above 16 the allocator zeroes the block
 * at any size (jemalloc; over mimalloc its whole pages given back, as for
 * rcl_calloc); glibc has no aligned calloc: above 64 KiB the library maps
 * the block itself, as rcl_valloc's, its pages zeroed by the kernel and
 * written by no one, and charged as rcl_valloc's; below, it is written. */
void *rcl_aligned_alloc(size_t align, size_t size, rcl_gfp_t gfp);
/* NULL: nothing. A pointer the library did not hand out (or one already
 * freed, where that can still be seen) is reported, sets errno to EINVAL,
 * and is neither freed nor uncharged. The free reads the 16 bytes in front
 * of the pointer: where nothing readable lies there (the start of a
 * mapping with a guard page below), it faults, as free(3) does. */
void  rcl_free(void *p);
/* Page-granular, mapped memory (mmap), charged in whole pages; honours the
 * scope like everything else (the kernel's vmalloc once ignored GFP_NOFS:
 * the "vmalloc with GFP_NOFS" thread, linux-kernel, May 2018). */
void *rcl_valloc(size_t size, rcl_gfp_t gfp);
/* Frees either kind of block. A mapped block's header page stays mapped
 * (its memory given back) until 64 more mapped blocks have been freed, so
 * a second free of the block within that span is reported, not a fault. */
void  rcl_vfree(void *p);
/* Account memory the program got elsewhere. 0 or -ENOMEM / -E2BIG / -EINVAL
 * as rcl_alloc would fail. Charging 0 bytes charges nothing and returns 0,
 * after the checks every call makes of its flags: bits no flag has are
 * reported, and NOFAIL without RCL__DIRECT_RECLAIM is -EINVAL. */
int   rcl_charge(size_t bytes, rcl_gfp_t gfp);
/* Gives back what rcl_charge() charged, on this thread or any other.
 * Uncharging more than rcl_charge() has charged and not yet uncharged is
 * reported, and uncharges only that: a block's charge goes back when the
 * block is freed, never through rcl_uncharge(). */
void  rcl_uncharge(size_t bytes);
/* Reclaim now, as an allocation with these flags (scope-masked) would:
 * nothing without RCL__DIRECT_RECLAIM or inside NORECLAIM scope. Returns the
 * accounted bytes freed by the shrinkers during the call. The priorities
 * run from gentle to desperate until one brings `bytes` back: SIZE_MAX
 * runs every one of them. 0 bytes frees nothing and returns 0, after the
 * checks every call makes of its flags: bits no flag has are reported,
 * and NOFAIL without RCL__DIRECT_RECLAIM is refused (reported unless
 * RCL__NOWARN; 0, errno EINVAL, nothing reclaimed, the background
 * reclaimer not woken). */
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
 * return RCL_SHRINK_EMPTY when the cache is empty. scan() finds
 * sc->nr_scanned equal to sc->nr_to_scan and sets it when it looked at
 * another number of objects: that many come off what the pass has left to
 * scan, and 0 ends the shrinker's turn in the pass. A count above LONG_MAX
 * is a negative number come back unsigned (RCL_SHRINK_STOP is -1): it is
 * reported, once per shrinker, and the shrinker is not scanned while it
 * says so. A scan() that returns above LONG_MAX, RCL_SHRINK_STOP aside,
 * is reported the same way and taken as RCL_SHRINK_STOP.
 *
 * Scan amounts follow the kernel's do_shrink_slab() exactly, except that
 * where its arithmetic would wrap, the library's saturates:
 *   delta    = (freeable >> priority) * 4 / seeks      (seeks 0: the default, 2)
 *   total    = min((deferred >> priority) + delta, 2 * freeable)
 *   scan in batches of `batch` while total >= batch || total >= freeable
 *   deferred = clamp(deferred + delta - scanned, 0, 2 * freeable)
 * A shrinker that declares `needs` is not called when the context lacks one
 * of those flags; the work it would have had (delta from its last count) is
 * deferred to a context that has them. `needs` may name RCL__FS and
 * RCL__IO only (any other bit is refused, EINVAL and reported: no scan
 * would ever carry it).
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

/* NULL with EINVAL, reported, for a NULL name or ops or a missing callback,
 * or an opts->domain that is not a live domain; the name is copied, up
 * to RCL_NAME_MAX - 1 (31) bytes, as the statistics and reports give it.
 * opts may be NULL. */
struct rcl_shrinker *rcl_shrinker_register(const char *name,
        const struct rcl_shrinker_ops *ops, void *priv,
        const struct rcl_shrinker_opts *opts);
/* Waits for scans in flight; once it returns the callbacks are never called
 * again. Unregistering NULL, a shrinker that is not registered (twice, say),
 * or the shrinker whose callback is running on this very thread is
 * reported and changes nothing; so is an unregister from a callback that
 * would wait for itself through other threads: a scan of s in flight on
 * another thread is in an unregister, from its callback, that waits for a
 * shrinker this thread is scanning (or for one a third thread, waiting the
 * same way, is scanning, and so on). An unregistered shrinker's memory is freed
 * only after 64 more have been unregistered, so that no registration in
 * that span gets its address: a second unregister there is caught, never
 * taken for a new shrinker's. */
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
 * NOWAIT scope makes it non-blocking) never fails while the pool lives
 * (see rcl_mempool_destroy() for a destroy meanwhile); a non-blocking one
 * returns NULL (ENOMEM) when the reserve is empty. The bounded sleep is 5 s
 * (the kernel's); a free wakes the waiters at once. rcl_mempool_free()
 * refills the reserve while it is below min_nr; a pool with min_nr 0 still
 * keeps one returned element while its reserve is empty, so a waiter gets
 * it. RCL__NOFAIL adds nothing and is dropped, but without
 * RCL__DIRECT_RECLAIM in gfp itself, the contradiction every call refuses
 * ("NOFAIL and scopes"): NULL (EINVAL), reported unless RCL__NOWARN,
 * before the reserve or the backing allocator is asked. RCL__ZERO is not honoured
 * (reserve elements are handed out as they were returned), as in the kernel.
 * rcl_mempool_alloc() calls rcl_might_alloc() when it may block.
 *
 * rcl_mempool_create() backs the pool with rcl_alloc(elem_size); the reserve
 * is allocated (RCL_DEFAULT narrowed by the thread's scope: allowed to
 * reclaim where it allows), and charged, at creation: NULL (ENOMEM)
 * if it cannot be, with nothing left allocated or charged. elem_size 0, or
 * one above PTRDIFF_MAX less the element's 16-byte tag (no block could
 * hold it), or a NULL callback for _create_ops: NULL (EINVAL), reported. The pool's
 * own bookkeeping is charged too.
 *
 * Bad input: alloc from a NULL pool is NULL (EINVAL) and reported unless
 * RCL__NOWARN; freeing NULL is a no-op; freeing to a NULL pool is
 * reported; resize of NULL is -EINVAL and reported. An element freed while the pool has none out (more freed than
 * were allocated) is reported and left alone, neither kept in the reserve
 * nor given to the pool's free: for an ops pool, an element freed twice
 * once its first free went to the pool's free. Freeing to a
 * rcl_mempool_create() pool an element that is not its own (another
 * pool's) is reported and nothing is done: each element carries a 16-byte
 * tag naming its pool, ahead of the element in the same block. Pools with
 * their own alloc/free (_create_ops) cannot be checked so. An element
 * freed twice, the first free having put it in the reserve, is reported
 * and left alone: the tag says so on any second free; an ops pool's
 * reserve is looked through before an element enters it, so a second
 * free that would add it again is caught, and one that finds the reserve
 * full reaches the pool's own free while other elements are out.
 */
struct rcl_mempool;
struct rcl_mempool *rcl_mempool_create(unsigned min_nr, size_t elem_size);
struct rcl_mempool *rcl_mempool_create_ops(unsigned min_nr,
        void *(*alloc)(rcl_gfp_t gfp, void *data), void (*free)(void *elem, void *data),
        void *data);
void *rcl_mempool_alloc(struct rcl_mempool *pool, rcl_gfp_t gfp);
void  rcl_mempool_free(void *elem, struct rcl_mempool *pool);
/*
 * n elements at once, all or nothing (the kernel's mempool_alloc_bulk):
 * threads that each take several elements with rcl_mempool_alloc() can
 * each hold part of the reserve while waiting for the rest, and deadlock.
 * The bulk call takes elements from the reserve only when it holds every
 * one still missing, in one step, and gives back all it holds before it
 * waits: a waiter never holds part of the reserve.
 *
 * No flags: it may sleep, as RCL_DEFAULT may, narrowed by the thread's
 * scope (NOFS, NOIO reach the backing allocator; in a NOWAIT scope it does
 * not wait and returns -ENOMEM instead). Order per attempt, as the single
 * call: backing allocator (light flags), reserve, backing allocator (full
 * flags), reserve; then wait (bounded, then again) for elements returned.
 *
 * Returns 0 with elems[0..n) filled, or a negative errno with elems
 * unspecified and nothing held: -E2BIG for n larger than the pool's
 * reserve (min_nr; the reserve alone could never serve it), at once, or
 * as soon as a resize lowers min_nr below n while the call waits;
 * -EINVAL (reported) for a NULL pool, or NULL elems with n > 0;
 * -ESHUTDOWN (reported) after destroy, or when a destroy wakes it from its
 * wait; -ENOMEM only in a NOWAIT scope. n == 0 returns 0 and touches
 * nothing (elems may be NULL).
 * rcl_mempool_free_bulk() returns each element as rcl_mempool_free() does
 * (NULL entries are skipped); n == 0 is a no-op; a NULL pool or elems with
 * n > 0 is reported and frees nothing.
 */
int   rcl_mempool_alloc_bulk(struct rcl_mempool *pool, void **elems, unsigned n);
void  rcl_mempool_free_bulk(struct rcl_mempool *pool, void **elems, unsigned n);
/* Grows (allocating with RCL_DEFAULT, narrowed by the thread's scope, as
 * the reserve is filled at creation) or shrinks the reserve; -ENOMEM, and
 * the pool unchanged, when growing fails. Safe while other threads allocate
 * and free; concurrent resizes each take effect whole, one after another.
 * A grow allocates with no lock of the pool held and fills the reserve to
 * new_min_nr at once, so the backing allocator, or a shrinker that the
 * allocation's reclaim runs, may itself resize the pool (the grow takes
 * effect after that resize). */
int   rcl_mempool_resize(struct rcl_mempool *pool, unsigned new_min_nr);
/* Frees the reserve and the pool. NULL: no-op. Elements still out at
 * destroy are reported and the pool is not freed under their owners: it
 * stays valid for rcl_mempool_free() only, and is freed when the last of
 * them is returned. Meanwhile alloc gives NULL (ESHUTDOWN), resize
 * -ESHUTDOWN. Threads waiting in rcl_mempool_alloc() or
 * rcl_mempool_alloc_bulk() are reported too, and woken: each fails at once
 * as a call after the destroy does (NULL with ESHUTDOWN, or -ESHUTDOWN;
 * reported), and the pool is freed only once the last of them has left
 * as well. A destroy of a pool that is no live pool's (destroyed already,
 * being destroyed, or never created) is reported, sets errno EINVAL and
 * touches nothing at that address. Destroy must not race with a call
 * still allocating from the pool that has not begun to wait, nor with a
 * rcl_mempool_resize(): neither is counted, and either may find the pool
 * freed. */
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
 * number of online CPUs; at most 1024), so queueing creates no threads,
 * except for a queue left with none at all (every worker and the rescuer
 * ended in work items, and no thread could be started to replace them):
 * rcl_queue_work() then starts a worker (reported when it cannot; the
 * next queueing tries again, and so does a flush or destroy waiting on
 * the queue's work, every second while none can be started).
 * When starting one fails (reported, at most once a second), or has not
 * come back within 10 ms (the kernel's mayday timer: a start may wait for
 * the memory the pending work frees), the rescuer, if there is one, runs
 * pending items one by one until a worker can be started again. Library
 * threads block all signals and are named "rcl-wq/NAME" and "rcl-rsc/NAME".
 *
 * A work function may free or requeue its own work item: the queue does not
 * touch it after calling fn. A work item never runs beside itself on its
 * queue (the kernel's workqueues are non-reentrant since Linux 3.7): one
 * queued again while it runs, by its own function or another thread, runs
 * once more after that run returns, however often it was queued meanwhile
 * (it stays pending until then). Queued on two queues, it may run on both
 * at once. A work item that returns with the scope or
 * domains changed (a save or an adopt without its restore) is reported and
 * the worker is put back as it was. The queue's threads run with cancellation off: a
 * pthread_cancel() of one is never acted on. A work function that calls
 * pthread_exit() ends its thread, reported: the item counts as finished,
 * and another worker takes the place of a worker that ended, another
 * rescuer that of a rescuer (started at once, or, when no thread can be
 * started then, after the next item a worker runs or at the queue's next
 * failed worker start, whichever comes first, so that it is there before
 * the next mayday; reported). With
 * the lock checker on, running an item holds
 * the lock class "wq:NAME" and flush/destroy acquire and release it, so
 * flushing while holding a lock the work takes is reported as the cycle it
 * is; the queue's destroy unregisters that class, as the kernel's
 * destroy_workqueue() unregisters its lockdep key.
 */
struct rcl_work {
    void (*fn)(struct rcl_work *w);
    /* private: */
    struct rcl_work *rcl_next;
    struct rcl_context rcl_ctx;
    int rcl_pending;
};
/* Must be called before a work item is first queued. NULL: no-op. Not
 * again while the item is pending or running (as the kernel's INIT_WORK):
 * it clears what marks it pending, so a queueing then adds it a second
 * time, unreported, where -EBUSY was due. */
void rcl_work_init(struct rcl_work *w, void (*fn)(struct rcl_work *w));
#define RCL_WQ_MEM_RECLAIM 0x1u
/* NULL with errno EINVAL, reported (NULL name, unknown flags, max_workers
 * > 1024), ENOMEM, or EAGAIN when no worker can be started and there is no rescuer.
 * The name is copied (up to 31 characters). */
struct rcl_workqueue *rcl_workqueue_create(const char *name, unsigned max_workers, unsigned flags);
/* 0 queued (an item running but not pending is queued to run again after
 * that run); -EBUSY already pending (on this queue or another); -EINVAL,
 * reported, for bad arguments (NULL, or a NULL fn); -ESHUTDOWN the queue is being destroyed,
 * except from the queue's own work items, which may chain more work while
 * it drains (as the kernel's drain_workqueue allows); -ECHILD in a child of
 * fork() for a queue created before the fork (see rcl_shutdown()). */
int  rcl_queue_work(struct rcl_workqueue *wq, struct rcl_work *w);
/* Waits for every item queued before the call, the re-run of an item
 * queued while it ran included (not those queued after, so an item that
 * requeues itself cannot make it hang), and not for a worker's start
 * under way, as the kernel's flush_workqueue(). From the queue's own
 * work item, or with NULL: reported, returns at once. The report function
 * called for a report made on the queue's thread (a context left changed,
 * an item that ended its thread, a worker or rescuer it could not start)
 * is inside the queue's own item here and for rcl_queue_work() and
 * rcl_workqueue_destroy(). */
void rcl_flush_workqueue(struct rcl_workqueue *wq);
/* Drains pending work (chained work included), then stops the threads and
 * frees the queue. NULL: no-op. From the queue's own work item, while
 * another destroy is in progress, or of a queue destroyed already (or of
 * an address that never was a queue): reported, and nothing is done,
 * nothing at that address read or written. Flushes that other threads
 * have under way on the queue return before it is freed, and so do the
 * reports its own threads make with its lock let go (a worker that ended
 * in its item reporting the replacement it could not start); a call
 * that may come once the destroy has returned is the caller's to
 * prevent, as in the kernel. A destroy whose report function ends its thread while it
 * drains (a worker it could not start) leaves the queue running, as it
 * was before the destroy, for another destroy to free. */
void rcl_workqueue_destroy(struct rcl_workqueue *wq);

/* ------------------------------------------------------------------------ */
/* I/O flushers                                                              */
/* ------------------------------------------------------------------------ */

/*
 * For the threads of a user-space I/O daemon (FUSE, NBD, iSCSI, ublk) that
 * the kernel may be waiting on to free memory. on = 1: this thread's
 * allocations are NOIO and may use the whole reserve, and the library calls
 * prctl(PR_SET_IO_FLUSHER, 1) (exactly 1: 0 clears the flag). on = 0: both
 * undone; on a thread that is not an I/O flusher for the library, nothing
 * is done (no prctl, which would clear a kernel flag the program set
 * itself, or be refused without CAP_SYS_RESOURCE) and 0 is returned.
 * Anything else: -EINVAL, reported, the thread left as it was. After a set
 * the kernel accepted, the flag is read back with PR_GET_IO_FLUSHER where
 * the kernel allows it: a value
 * other than `on` is reported and the call returns -EIO. That set was
 * made, so the thread is left as after a 0: an I/O flusher for the
 * library (and, by the set's answer, the kernel), not served from the
 * reserve below, which stands in for a refused set only;
 * rcl_io_flusher_set(0) undoes both.
 * Without CAP_SYS_RESOURCE prctl fails: the library part still applies, the
 * call returns -EPERM and the library reports a refused on once per
 * process. So for any other error prctl gives, returned negated: a kernel
 * older than Linux 5.6, which has no PR_SET_IO_FLUSHER, gives -EINVAL.
 *
 * The NOIO scope is taken with rcl_scope_save(), so turning the flag off
 * removes only what turning it on added: a NOIO scope the thread was
 * already in stays. Setting it twice is the same as once; one
 * rcl_io_flusher_set(0) ends it. The prctl is made on every other call,
 * and its result returned.
 * While the flag is on no restore (of a scope or a context) clears NOIO: a
 * NOIO scope that was open when the flag was set and is closed while it is
 * on leaves NOIO in force, and rcl_io_flusher_set(0) then ends it. The
 * kernel's memalloc_noio_restore() would clear PF_MEMALLOC_NOIO there. A
 * flusher's inline scope calls are calls into the library.
 * Turning the flag on opens a scope, and turning it off closes it: an off
 * while a scope opened after the on is still open leaves the code inside
 * that scope without the NOIO it was entered under. The kernel's off
 * clears the flags with no notion of nesting; the lock checker reports
 * this off as the flusher's scope ended inside a later one.
 */
int rcl_io_flusher_set(int on);
/* 1 when this thread is an I/O flusher for the library, else 0. */
int rcl_io_flusher_get(void);

/*
 * The unprivileged I/O-flusher mode: no new page while serving.
 *
 * What the kernel does with PR_SET_IO_FLUSHER: the thread gets PF_MEMALLOC_NOIO
 * and PF_LOCAL_THROTTLE, so its page faults, page-cache charges and slab
 * allocations reclaim without starting or waiting on I/O, and write-back
 * throttling does not stop it for other tasks' dirty pages. A daemon serving
 * a loop device or a file system whose write-back it completes needs that:
 * otherwise its first page fault under memory-cgroup pressure can wait on
 * the very write-back only it can finish, and the cgroup hangs.
 *
 * Without CAP_SYS_RESOURCE the kernel refuses it. The library's answer is
 * that the flusher takes no new page at all while it serves:
 *
 *   rcl_io_flusher_reserve(bytes, flags) maps `bytes`, writes every page
 *   (resident from now on), and charges all of its pages to the budget at
 *   once.
 *   flags RCL_FLUSHER_MLOCK also mlock()s it where RLIMIT_MEMLOCK or
 *   CAP_IPC_LOCK allows (refused: reported, the reserve kept unlocked).
 *   One reserve per process: -EBUSY (reported) if one exists; -EINVAL
 *   (reported, nothing mapped or charged) for unknown flags, fewer than
 *   256 bytes, or more than PTRDIFF_MAX (no mapping can be that large;
 *   rounded up to whole pages, SIZE_MAX would wrap to nothing); else the
 *   charge's error or -ENOMEM. rcl_io_flusher_reserve(0, 0) releases it:
 *   -EBUSY (reported) while blocks are allocated from it or threads use it;
 *   0 when there is none. A release with RCL_FLUSHER_MLOCK releases the
 *   same (the flag has nothing to lock there); unknown flags are refused
 *   there too.
 *
 *   rcl_io_flusher_set(1) then, when the kernel refuses the flag (it still
 *   returns that -EPERM, or -EINVAL from a kernel without it; not for a
 *   set the kernel took whose read-back gives -EIO), touches 256 KiB of the thread's stack (at most
 *   half of it) and from then on serves that thread's rcl_alloc,
 *   rcl_calloc and rcl_realloc from the reserve (a block allocated
 *   outside it that rcl_realloc resizes moves into it, never resized in
 *   place, which could fault or reclaim; too large for the reserve, the
 *   call fails with ENOMEM and the block is kept, a NOFAIL one aside:
 *   below): memory faulted in before,
 *   never trimmed or unmapped while a block is out, shared by all flusher
 *   threads. An allocation that does not fit fails at once with ENOMEM
 *   (as RCL_NOWAIT would), never faulting and never reclaiming: the
 *   caller frees some of its own blocks and retries, or does without.
 *   A NOFAIL one, which the kernel never fails on a flusher either, is
 *   served outside the reserve instead (a block being resized moves
 *   there), charged and allocated as on any thread, its reclaim in the
 *   thread's NOIO context; NOFAIL without RCL__DIRECT_RECLAIM is EINVAL
 *   there as everywhere.
 *   Blocks are freed with rcl_free() from any thread. rcl_aligned_alloc and
 *   rcl_valloc are not served from the reserve. rcl_io_flusher_set(0)
 *   ends the mode, as the thread's own end does. Create the reserve
 *   before the threads call rcl_io_flusher_set(1), and after
 *   fork()/daemonizing. A child of fork() inherits a reserve made before
 *   it, with the blocks allocated from it, but not the parent's other
 *   flusher threads (only the forking one may still serve from it, so
 *   the child may release it) nor its mlock() (stats' locked reads 0).
 *
 * What stays the daemon's part (the library cannot see these pages):
 *   - backing I/O with O_DIRECT from buffers allocated before serving: a
 *     buffered pwrite charges page cache to the cgroup and can wait on
 *     write-back like any fault;
 *   - a fixed set of threads, started and given their buffers (libfuse's
 *     receive buffer included) before serving: a new thread's stack and
 *     buffers are new pages;
 *   - no other malloc growth while serving.
 *
 * Sizing: the reserve counts fully against the memory cgroup, used or not.
 * reserve + the daemon's resident memory without it + the writers' working
 * page cache must stay well inside the cgroup limit. Size it for what
 * flushers hold at once (their cache blocks plus per-request state), and
 * keep it small: every byte of it is a byte less for the writers' page
 * cache. In a 128 MiB cgroup 8, 16 and 24 MiB reserves all served 512 MiB
 * of writes (docs/fuse.md); 96 MiB pre-faulted got the daemon OOM-killed.
 */
#define RCL_FLUSHER_MLOCK 0x1u
int rcl_io_flusher_reserve(size_t bytes, unsigned flags);
/* 1 when this thread allocates from the reserve, else 0. */
int rcl_io_flusher_reserved(void);
/* size, used and threads are now's. peak, allocs and failures count for
 * the latest reserve: its release leaves them to be read (what it served),
 * and the next reserve starts them from 0. NULL out: reported, nothing
 * read. */
struct rcl_flusher_reserve_stats {
    size_t        size;      /* bytes mapped; 0 = no reserve */
    size_t        used;      /* bytes in blocks out now (64-byte units) */
    size_t        peak;
    unsigned long allocs;    /* allocations served */
    unsigned long failures;  /* allocations that found no room */
    unsigned      threads;   /* threads allocating from it */
    int           locked;    /* 1 when mlock()ed */
};
void rcl_io_flusher_reserve_stats(struct rcl_flusher_reserve_stats *out);

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
     * use, forgotten at rcl_shutdown or rcl_lock_class_unregister);
     * accessed atomically by the library */
    unsigned rcl_id;
    unsigned rcl_gen;
};
/* Positional, not designated: C++ before C++20 rejects designators. */
#define RCL_LOCK_CLASS(var, lname) struct rcl_lock_class var = { (lname), 0, 0 }

/*
 * Annotations. A class stands for every lock of one kind (all inode locks,
 * say); the name is what reports print. Annotate before blocking on the
 * real lock, so a cycle is reported even by the acquisition that would
 * hang. Releases may come in any order. With the checker off an acquire
 * is two loads and two branches (is it on? is the library initialised?),
 * and once it is initialised a third of each (is it on now?), a release
 * one of each; on, an acquire/release pair on a lock order seen
 * before costs a few nanoseconds (bench/bench_lockdep).
 *
 * rcl_lock_acquire_try: a trylock that succeeded. The lock is held (what
 *     is taken under it depends on it) but nothing waited for it, so it
 *     adds no dependency on the lock itself.
 * rcl_might_alloc: "this path may allocate with gfp" (scope-masked), as if
 *     the allocation happened; every rcl_alloc-family call implies it. Its
 *     flags are checked as an allocation's, checker on or off: NOFAIL
 *     without RCL__DIRECT_RECLAIM, which every allocation refuses, is
 *     reported unless RCL__NOWARN.
 * Waiting for another thread's work (I/O completion, a flush) is
 *     rcl_lock_acquire(&work_class) + rcl_lock_release(&work_class) in the
 *     waiter, while the worker holds work_class around the work.
 *
 * Also reported in checking mode: a scope or a context restored out of
 * order, or a scope with a token its save did not return; an allocation that
 * may sleep inside a NOWAIT scope; a shrinker that runs longer than the
 * bound below while the background reclaimer waits on it; a release of a
 * class of which the thread holds no lock, or an rcl_mutex_unlock() of a
 * mutex it does not hold (released twice, by another thread, or never
 * annotated as taken), after which rcl_mutex_unlock() leaves the mutex
 * locked. That last is not reported in a process that ever ran the library
 * with the checker off (an acquire then went unseen), nor for as many
 * releases as the thread held locks when rcl_shutdown() forgot them.
 * A thread that exits holding annotated locks is reported too (the
 * kernel's check at a task's exit), once an exit, each lock named; locks
 * a thread-specific data destructor releases, and those the library's own
 * cleanup handlers release when a callback ends its thread, are not held
 * at the exit. Locks its stack does not record (held when rcl_shutdown()
 * forgot them, or of a class the full graph has no node for) are not.
 * Each problem is reported once. A NULL class is reported with the
 * checker on; off, an annotation does not look at its class (that is its
 * cost above), and a NULL one passes unseen. The rcl_mutex_* calls report
 * a NULL mutex checker on or off.
 * In RCL_LOCKDEP_VERBOSE mode every newly learned dependency is also
 * reported (as information; rcl_lockdep_reports() does not count those).
 */
void rcl_lock_acquire(struct rcl_lock_class *c);
void rcl_lock_acquire_try(struct rcl_lock_class *c);
void rcl_lock_release(struct rcl_lock_class *c);
/*
 * Nesting (the kernel's mutex_lock_nested(), lock_acquire() with a
 * subclass): code that takes two locks of one class in an order it
 * defines (a parent directory's inode lock, then its child's) says so by
 * taking the inner one at another subclass. Each subclass of a class is
 * a class of its own for the order: "c/1" after "c" is an order like any
 * other, and "c" after "c/1" elsewhere an inversion. Subclass 0 is the
 * class itself (rcl_lock_acquire()); subclasses run below
 * RCL_LOCK_SUBCLASSES, as the kernel's eight. The release is
 * rcl_lock_release() or rcl_mutex_unlock(), which matches the lock at
 * whichever subclass it was taken. rcl_lock_release() names the class
 * alone, so of two locks of one class held it takes the one taken last:
 * released outer first, the outer stays counted held at its subclass and
 * the inner goes, and what is taken next is learned after the wrong one
 * (the kernel's release names the lock itself). Release such annotations
 * innermost first, or use rcl_mutex_t, whose unlock goes by the mutex's
 * address. A subclass out of range is refused and
 * reported: the lock goes unannotated (an rcl_mutex_t is still locked),
 * its release unreported. Each subclass used takes a node of the graph's
 * 4096, given back with the class by rcl_lock_class_unregister().
 */
#define RCL_LOCK_SUBCLASSES      8
#define RCL_SINGLE_DEPTH_NESTING 1
void rcl_lock_acquire_nested(struct rcl_lock_class *c, unsigned subclass);
/*
 * A class registers at its first use. rcl_lock_class_unregister() gives its
 * node back, with every dependency learned for it, before the memory it
 * lives in is freed or used for another class (per-object classes of
 * objects that come and go: the kernel's lockdep_unregister_key()); the
 * graph has room for 4096 classes, subclasses and reclaim nodes, and a
 * class past that goes unchecked. Its table of 16384 lock orders full,
 * the graph is off until rcl_shutdown(), as the kernel's lockdep turns
 * itself off: reported once (counted), no order learned and no cycle
 * reported from then on, even once an unregister made room. No thread may use the class during the call; a later use
 * registers it again. Returns 0, also for a class never used (nothing to
 * give back); -EBUSY, and reported, where a thread holds a lock of the
 * class (it stays registered); -ENOENT, and reported, for a class
 * unregistered already and not used since; -EINVAL, and reported, for NULL.
 */
int  rcl_lock_class_unregister(struct rcl_lock_class *c);
void rcl_might_alloc(rcl_gfp_t gfp);
/* Bound for the slow-shrinker report; default 1000 ms, 0 turns it off.
 * Process-wide: rcl_shutdown() and rcl_init() leave it as it is, as they
 * leave the report function. */
void rcl_lockdep_set_slow_shrinker_ms(unsigned ms);

typedef struct { pthread_mutex_t m; struct rcl_lock_class *cls; } rcl_mutex_t;
/* rcl_mutex_t: a pthread mutex annotated with its class (NULL: none).
 * init and destroy return 0 or a negative errno (-EINVAL, reported, for NULL;
 * for a destroy, -EINVAL, reported, nothing done, also for a mutex
 * destroyed already where the C library tells one, as glibc does).
 * Destroying a locked mutex, whichever thread holds it, is refused with
 * -EBUSY and reported, checker on or off, and the mutex left as it was
 * (POSIX leaves it undefined; the kernel's mutex_destroy() warns). With
 * the checker on, a lock (nested too, at any subclass) or unlock of a
 * mutex rcl_mutex_destroy() destroyed is reported and leaves the
 * checker's held locks as they were, and the mutex is not handed to the
 * C library; off, it goes to the C library unseen (glibc refuses it,
 * EINVAL, which these void calls do not return): telling it there would
 * cost every lock and unlock. A trylock of one returns the C library's
 * answer (glibc: EINVAL). The
 * checker maps its own memory and never calls malloc(), so an annotated
 * mutex may guard the program's own allocator. */
int  rcl_mutex_init(rcl_mutex_t *m, struct rcl_lock_class *cls);
void rcl_mutex_lock(rcl_mutex_t *m);
/* rcl_mutex_lock() with the annotation of rcl_lock_acquire_nested(). */
void rcl_mutex_lock_nested(rcl_mutex_t *m, unsigned subclass);
/* The exception to the negative-errno rule, kept so that it drops in for
 * pthread_mutex_trylock(): 0 locked, or EBUSY (POSITIVE) when another
 * thread holds it, or this one (it does not recurse, and a trylock waits
 * for nothing, so that is not reported); EINVAL (positive too), reported,
 * for NULL. */
int  rcl_mutex_trylock(rcl_mutex_t *m);
void rcl_mutex_unlock(rcl_mutex_t *m);
int  rcl_mutex_destroy(rcl_mutex_t *m);

/* Problems the checker reported since rcl_init (cycles, scope misuse,
 * NOWAIT sleeps, slow shrinkers). A report is counted once the report
 * function has returned from it, or ended its thread in it: a thread that
 * sees the count go up finds the report where that function put it. */
unsigned long rcl_lockdep_reports(void);

/* Every report the library makes (lock checker, bad frees, allocation
 * failures and stalls, misuse) goes through this function; NULL restores
 * the default, which writes to stderr. A report is at most 4095 bytes; one
 * that would be longer ends with "[... the rest of this report did not
 * fit and was cut]". It runs in NORECLAIM scope with
 * cancellation off, on the thread that made the report, and may allocate
 * from the library, but not shut it down (rcl_shutdown()), nor flush or
 * destroy a workqueue from a report made on one of that queue's threads,
 * which is inside the queue's own item (both refused and reported: the
 * flush would wait for that very thread). The reports made
 * while the library starts or stops (a variable or a configuration
 * refused) reach it once that is done, outside the lock it takes; held
 * until then in 2 KiB they share, one longer than the room left ends with
 * the same words, cut shorter. So its
 * allocation after rcl_init() refused a configuration is a first use,
 * which starts the library on the defaults and the environment.
 *
 * It may end the thread that made the report (pthread_exit(), or a cancel
 * it lets in by turning cancellation on), as a logging wrapper that ends a
 * worker at an error may: the thread leaves the report as a return would,
 * so its cleanup handlers and thread-specific data destructors run in the
 * scope and cancel state it had before the report, outside any report,
 * and a lock checker's report is counted. The call that made the report
 * ends there, no library lock held, as it would at a cancellation point.
 * It must return from the reports made on the library's own threads (the
 * background reclaimer, the pressure thread), which the library needs,
 * and on a workqueue's worker or rescuer before the item it took runs
 * (the item's context names a domain destroyed since): the item would be
 * lost. One that ends a worker or rescuer in a report about its item once
 * it returned (its context left changed) or about a worker it could not
 * start ends it as a work item that ends its thread does, another
 * starting in its place. It must also return from those made in a
 * thread's exit (the lock checker's report of locks held at the exit, a
 * workqueue's of a work item that ended its thread), where POSIX leaves a
 * second end undefined, and from rcl_workqueue_create()'s report of a
 * worker it could not start, made before the queue is the program's (it
 * is lost).
 *
 * rcl_set_report_fn() returns once the calls of the function it replaced
 * that other threads were making have returned (or ended their threads):
 * after it the old function is not running and is not called again, so
 * the program may free what its arg points at. It does not wait for calls
 * of the function it sets with the same arg, nor for those that began
 * after it set it. It must not be called holding what a report function
 * it replaces waits for. Called from a report function, it replaces the
 * function without waiting: the calls under way there may go on. It is
 * not a cancellation point. */
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
 *     rcl_lru_* function on the same LRU (rcl_lru_add/del/touch/walk
 *     refuse it, reported: -EDEADLK, or errno EDEADLK for the walk), nor
 *     rcl_shutdown() (refused, reported);
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

/* The object an embedded node belongs to (container_of). Through void *,
 * so that -Wcast-align has no char * to object cast to warn of; in C++
 * with the named casts, which -Wold-style-cast accepts. */
#ifdef __cplusplus
#define RCL_LRU_ENTRY(node, type, member) \
    (static_cast<type *>(static_cast<void *>(                                  \
        reinterpret_cast<char *>(node) - offsetof(type, member))))
#else
#define RCL_LRU_ENTRY(node, type, member) \
    ((type *)(void *)((char *)(node) - offsetof(type, member)))
#endif

/* NULL and errno ENOMEM when out of memory. */
struct rcl_lru *rcl_lru_create(void);
/* Unregisters the LRU's shrinker (waiting for a scan in flight), then frees
 * the LRU. -EINVAL, reported, for NULL; -EBUSY, reported, and the LRU left as it was,
 * its shrinker still working, when items are still on it (they are the
 * caller's: empty it and destroy again); -EDEADLK, reported, the same,
 * when called from the LRU's own shrinker (its free_fn), which would
 * wait for itself and then return to the freed LRU, or from another
 * shrinker's callback whose unregister would wait for itself through
 * other threads (rcl_shrinker_unregister()); -EINVAL, reported,
 * for an LRU destroyed already or an address that never was one (nothing
 * there is read or written). A shrinker
 * rcl_shutdown() already dropped is not unregistered again (whatever now
 * lives at its address is left alone). */
int  rcl_lru_destroy(struct rcl_lru *lru);
/* A node starts (and is left by every removal) on no list. NULL: no-op. */
void rcl_lru_node_init(struct rcl_lru_node *n);
/* rcl_lru_add/del/touch answer a question as well as report an error, so
 * they return 1 (done), 0 (nothing to do: a defined outcome, not an error)
 * or -EINVAL, reported (NULL lru or node); -EDEADLK, reported, from an isolate
 * callback of a walk of the same LRU.
 * add: 1 added at the hot end; 0 already on an LRU. */
int  rcl_lru_add(struct rcl_lru *lru, struct rcl_lru_node *n);
/* del: 1 removed; 0 not on the LRU (a walk may have isolated it first: whoever
 * gets 1, or the walk's REMOVED, owns the item); -EINVAL, reported, for
 * NULL, and -EINVAL, reported, both lists unchanged, for a node on another LRU or on
 * a dispose list (a scan's leftovers waiting for the next walk included:
 * see rcl_lru_shrinker()). The LRU is told by tag bits in the node's prev pointer
 * (a node's pointers are the library's while it is on an LRU): exact while
 * the program has at most 7 LRUs (3 on 32-bit targets); beyond that some
 * share a tag and a node of one may pass for another's. */
int  rcl_lru_del(struct rcl_lru *lru, struct rcl_lru_node *n);
/* touch: moves an item to the hot end: 1 moved; 0 not on the LRU; -EINVAL as for
 * rcl_lru_del. */
int  rcl_lru_touch(struct rcl_lru *lru, struct rcl_lru_node *n);
unsigned long rcl_lru_count(const struct rcl_lru *lru);   /* 0 for NULL */

/* A private list of removed items: rcl_lru_list_init() a node used as the
 * head (NULL: no-op); rcl_lru_list_pop() takes the first item off, NULL
 * when empty, and NULL, unreported, for a NULL or uninitialised head: the
 * rcl_lru_walk() that was to fill it reported that, and the loop that
 * empties it after the walk ends at once. */
void rcl_lru_list_init(struct rcl_lru_node *list);
struct rcl_lru_node *rcl_lru_list_pop(struct rcl_lru_node *list);

/* Visits up to nr_to_walk items, oldest first, calling isolate on each
 * (NULL isolate: every item is REMOVED). Removed items are appended to
 * `dispose` (an initialised list). The leftovers of a shrinker's scan whose
 * thread ended (rcl_lru_shrinker()) come first, each counted as removed
 * and as one of nr_to_walk, without a call to isolate: they were removed
 * already. Returns how many were removed; 0 with
 * errno EINVAL, reported, for a NULL lru or an uninitialised dispose list, or errno
 * EDEADLK, reported, from an isolate callback of a walk of the same LRU. */
unsigned long rcl_lru_walk(struct rcl_lru *lru, rcl_lru_isolate_fn isolate, void *arg,
                           unsigned long nr_to_walk, struct rcl_lru_node *dispose);

/* Registers a shrinker for the LRU: count() is rcl_lru_count(); scan()
 * walks sc->nr_to_scan items with isolate, then calls free_fn on each
 * removed item outside the lock and reports them freed. free_fn must
 * rcl_free() (or uncharge) what the item accounted, or the budget never
 * sees the memory come back. A free_fn that ends its thread (pthread_exit(),
 * or a cancel it lets in) keeps the item it was given; the items the scan
 * had removed and not yet handed to free_fn (or had removed before an
 * isolate callback that ended its thread) stay on the LRU, counted by
 * rcl_lru_count() (rcl_lru_destroy() refuses them as any items), but not
 * on its list: the next walk, a scan or the program's own rcl_lru_walk(),
 * hands them to its dispose list first, never to an isolate callback (the
 * cache let go of them). They are not freed on the ending thread: a
 * free_fn that ended it once could again. The shrinker belongs to the LRU:
 * rcl_lru_destroy() unregisters it; do not unregister it yourself.
 * NULL with errno EINVAL, reported (NULL lru, name or free_fn), EBUSY (the LRU has
 * one already, one an rcl_shutdown() dropped aside, or another call is
 * making it: of calls made at once, one makes it), or what
 * rcl_shrinker_register() sets.
 *
 * Example: rcl_lru(3) shows a complete keyed object cache built on these
 * calls (tests/test_lru.c compiles and runs it).
 */
struct rcl_shrinker *rcl_lru_shrinker(struct rcl_lru *lru, const char *name,
                                      rcl_lru_isolate_fn isolate, rcl_lru_free_fn free_fn,
                                      void *arg, const struct rcl_shrinker_opts *opts);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

/* struct rcl_stats carries the first RCL_STATS_MAX_SHRINKERS shrinkers, for
 * source compatibility; rcl_stats_shrinkers() gives all of them. */
#define RCL_STATS_MAX_SHRINKERS 32
#define RCL_NAME_MAX 32

struct rcl_shrinker_stats {
    char          name[RCL_NAME_MAX];
    unsigned long calls;      /* scan callbacks */
    unsigned long scanned;    /* objects scanned */
    unsigned long freed;      /* objects the shrinker reported freed */
    unsigned long skipped;    /* passes skipped: context lacked `needs`, or domain rules */
    unsigned long deferred;   /* work now deferred (nr_deferred) */
    unsigned long rcl_reserved[3];   /* later counters; zero today */
};

struct rcl_stats {
    size_t        usage, peak, limit;   /* peak: the most the budget held, the
                                           threads' stocks and cached blocks
                                           in it (as the memory cgroup's
                                           memory.peak counts its per-CPU
                                           stocks), so it may exceed any
                                           usage rcl_usage() read */
    size_t        wmark_min, wmark_low, wmark_high;   /* headroom, bytes */
    unsigned long allocations, frees, failures;
    unsigned long bad_frees;                /* foreign or double frees caught */
    size_t        thread_cached;            /* class bytes of the freed blocks the
                                               threads keep for reuse (charged,
                                               apart from their stocks, and
                                               like them not in usage;
                                               rcl_usage_sync() returns them) */
    unsigned long direct_reclaims;          /* direct reclaim passes */
    unsigned long long direct_stall_ns;     /* time spent in them */
    unsigned long long direct_cpu_ns;       /* CPU time of it: the rest is
                                               waiting for a CPU or a lock */
    size_t        direct_reclaimed;         /* bytes they freed */
    unsigned long background_wakeups;
    size_t        background_reclaimed;
    unsigned long long background_cpu_ns;   /* CPU time the background reclaimer
                                               spent reclaiming */
    unsigned long direct_bounded;           /* direct reclaims that stopped at
                                               their time bound (RECLAIM_DIRECT_US)
                                               and left the rest to the background */
    unsigned long throttled;                /* waits of allocations still short
                                               after direct reclaim, for the
                                               background reclaimer */
    unsigned long long throttle_ns;         /* time spent in them */
    unsigned long slow_reclaims;            /* bounded direct reclaims that still
                                               took over 2 ms (each reported, at
                                               most once a second) */
    unsigned long reserve_allocs;           /* charges that dipped into the reserve */
    unsigned long nofail_stalls;            /* stall reports */
    unsigned long mempool_reserve_hits;     /* elements mempools handed out
                                               from their reserve */
    unsigned long lockdep_reports;
    unsigned      nr_shrinkers;             /* registered when the array
                                               below was read (one reading);
                                               the first
                                               RCL_STATS_MAX_SHRINKERS listed */
    struct rcl_shrinker_stats shrinkers[RCL_STATS_MAX_SHRINKERS];
    size_t        depot_held;               /* class bytes of blocks freed on one
                                               thread and held for another
                                               thread's allocations: free
                                               memory, not charged (at most
                                               min(limit/512, 256 KiB); every
                                               trim and drain returns it) */
    /* Later counters take these words; zero today. */
    unsigned long rcl_reserved[15];
};
/* NULL: reported, nothing read. */
void rcl_stats_get(struct rcl_stats *out);
/* Fills out[0..max-1] with the registered shrinkers' counters, in
 * registration order, and returns how many are registered (which may be
 * more than max: call again with a larger array). out may be NULL when max
 * is 0, to count them; NULL with max above 0 is reported, fills nothing
 * and returns the count all the same. */
unsigned rcl_stats_shrinkers(struct rcl_shrinker_stats *out, unsigned max);
/* Text (json = 0) or one JSON object (json = 1, or any other nonzero
 * value, as a C truth value), every shrinker listed
 * with the count of the same reading. Listing more than
 * RCL_STATS_MAX_SHRINKERS takes memory: without it (or while shrinkers are
 * registered faster than they can be read) the first
 * RCL_STATS_MAX_SHRINKERS are listed and the rest counted as left out
 * ("the first 32 listed; 3 left out" in the text, "shrinkers_left_out" in
 * the JSON, 0 when none is). -EINVAL, reported, for a NULL file,
 * -EIO when writing fails. RECLAIM_STATS=1 prints the text form at exit.
 * Its writes are cancellation points, as the stream's are: a thread
 * cancelled there leaves no memory of the call behind. */
int  rcl_stats_print(FILE *f, int json);

#ifdef __cplusplus
}
#endif
#endif /* RECLAIM_H */
