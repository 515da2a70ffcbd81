/* SPDX-License-Identifier: MIT */
/*
 * scope.c - per-thread reclaim context: scopes, the flags they leave an
 * allocation, and capturing a context to adopt in another thread.
 *
 * Scopes follow the kernel's memalloc_flags_save() (v6.9 and later): save
 * sets the requested bits and returns only the ones it newly set, restore
 * clears exactly those. An inner save of a scope already in force returns 0
 * and its restore changes nothing, which is what lets scopes nest in any
 * order without a stack.
 *
 * Contexts need one: an adopt's restore must tell whether it is the
 * innermost (then it may undo whatever was left open above it) or not (then
 * it may take back only its own bits, as a token does). Domains and the
 * journal cookie have no token: an inner adopt still open has its own in
 * force, so what an adopt restored out of order saved is kept, and put back
 * by the restore that leaves no adopt open above it.
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

__thread struct rcl_scope_tls rcl_scope_tls RCL_TLS_IE;

/* Why a thread's inline scope calls come to the library
 * (rcl_scope_tls.checked): the checker watches it, or it is an I/O flusher,
 * whose NOIO no restore may clear. */
#define WATCH_CHECKER 0x1u
#define WATCH_FLUSHER 0x2u

/* This thread's adopts that have not been restored. Bit d of `live`: the
 * adopt at depth d + 1; deeper ones than the bits can hold are taken to be
 * restored in order. `depth`: the innermost outstanding adopt's. */
#define ADOPTS_TRACKED 64u
static __thread struct {
    unsigned id;        /* the thread's number in saved contexts; 0 until it adopts */
    unsigned depth;
    uint64_t live;
} adopts RCL_TLS_IE;
static _Atomic unsigned adopt_ids;

/*
 * What an adopt restored out of order saved, deepest first in a list of
 * the thread's. Until every adopt above it is restored, an inner one's
 * domains and cookie stay in force (a domain stack has no middle to take
 * out); the restore that ends them puts back the saved state of the
 * shallowest adopt restored early, which is what the still-open adopts
 * below imply. Made only for a restore out of order.
 *
 * The list hangs from a thread-specific key, not from the TLS block: a
 * pointer there moved every TLS word after it by 8 bytes, and a cache-hit
 * pair of 256 B blocks over mimalloc went from 3.0 to 3.5 ns
 * (docs/bench/patterns.md, "Probe, 2026-12-06, 21:10"). The key's
 * destructor frees what a thread ends with; `early_threads` spares every
 * other thread the lookup.
 */
struct early {
    struct early  *next;
    unsigned       depth;
    struct rcl_ctx saved;
};

static pthread_key_t early_key;
static pthread_once_t early_once = PTHREAD_ONCE_INIT;
static bool early_keyed;
static _Atomic unsigned early_threads;      /* threads with a list */

static void early_drop(void *head)
{
    for (struct early *e = head, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    atomic_fetch_sub(&early_threads, 1);
}

static void early_key_make(void)
{
    early_keyed = pthread_key_create(&early_key, early_drop) == 0;
}

unsigned rcl__scope_early_threads(void)
{
    return atomic_load(&early_threads);
}

static struct early *early_list(void)
{
    if (!atomic_load_explicit(&early_threads, memory_order_relaxed))
        return NULL;
    return early_keyed ? pthread_getspecific(early_key) : NULL;
}

/* The thread's list is now `head` (it was `was`): false when it cannot be
 * kept, which only a first list can meet (the key's slot is made then). */
static bool early_set(struct early *was, struct early *head)
{
    if (!was && head)
        atomic_fetch_add(&early_threads, 1);
    int err = pthread_setspecific(early_key, head);
    if (err && !was && head)
        atomic_fetch_sub(&early_threads, 1);
    if (!err && was && !head)
        atomic_fetch_sub(&early_threads, 1);
    return !err;
}

/* An I/O flusher is in NOIO scope (reclaim.h) whatever is restored under
 * it: a restore that cleared NOIO closed a scope the flusher's own save
 * found already open, so the flusher holds NOIO from here on and its
 * rcl_io_flusher_set(0) ends it. */
static void flusher_keeps_noio(unsigned before)
{
    if (!(before & ~rcl__scope & RCL_SCOPE_NOIO) || !rcl__self.io_flusher)
        return;
    rcl__assert(rcl_scope_tls.checked & WATCH_FLUSHER);
    rcl__scope |= RCL_SCOPE_NOIO;
    rcl__self.io_flusher = RCL_SCOPE_NOIO + 1;
}

/*
 * Users' scope calls are inline (reclaim.h) and come here only while the
 * lock checker watches the thread or it is an I/O flusher
 * (rcl_scope_tls.checked); these are also the exported functions of the
 * same names. Either way the bits change the same way.
 */
unsigned rcl_scope_save(unsigned scope)
{
    unsigned set = rcl__scope_set(&rcl__scope, scope);

    if (rcl__checking())
        rcl__lockdep_scope_save(set);
    return set;
}

void rcl_scope_restore(unsigned saved)
{
    unsigned before = rcl__scope;

    rcl__scope_clear(&rcl__scope, saved);
    flusher_keeps_noio(before);
    if (rcl__checking())
        rcl__lockdep_scope_restore(saved, before);
}

/* rcl_io_flusher_set(0), returning to `ret`, ends the NOIO scope its on
 * opened: the restore of that save, the thread no longer a flusher. */
void rcl__scope_flusher_end(unsigned saved, const void *ret)
{
    unsigned before = rcl__scope;

    rcl__assert(!rcl__self.io_flusher);
    rcl__scope_clear(&rcl__scope, saved);
    if (rcl__checking())
        rcl__lockdep_flusher_off(saved, before, ret);
}

unsigned rcl_scope_save_checked(unsigned scope) __attribute__((alias("rcl_scope_save")));
void rcl_scope_restore_checked(unsigned saved) __attribute__((alias("rcl_scope_restore")));

void rcl__scope_put(unsigned bits)
{
    unsigned before = rcl__scope;

    rcl__scope = bits & RCL_SCOPE_ALL;
    flusher_keeps_noio(before);
    if (rcl__checking())
        rcl__lockdep_scope_put(rcl__scope);
}

/* The checker watches this thread from now on (or no longer): its users'
 * inline scope calls come to the functions above. */
void rcl__scope_watch(bool on)
{
    if (on)
        rcl_scope_tls.checked |= WATCH_CHECKER;
    else
        rcl_scope_tls.checked &= ~WATCH_CHECKER;
}

/* The same for an I/O flusher, whose restores must keep NOIO. */
void rcl__scope_flusher(bool on)
{
    if (on)
        rcl_scope_tls.checked |= WATCH_FLUSHER;
    else
        rcl_scope_tls.checked &= ~WATCH_FLUSHER;
}

unsigned rcl_scope_current(void) { return rcl__scope; }

unsigned rcl_nofs_save(void) { return rcl_scope_save(RCL_SCOPE_NOFS); }
void rcl_nofs_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_noio_save(void) { return rcl_scope_save(RCL_SCOPE_NOIO); }
void rcl_noio_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_noreclaim_save(void) { return rcl_scope_save(RCL_SCOPE_NORECLAIM); }
void rcl_noreclaim_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_nowait_save(void) { return rcl_scope_save(RCL_SCOPE_NOWAIT); }
void rcl_nowait_restore(unsigned saved) { rcl_scope_restore(saved); }

rcl_gfp_t rcl_current_gfp(rcl_gfp_t gfp) { return rcl__gfp_in_scope(gfp, rcl__scope); }

void rcl_context_capture(struct rcl_context *out)
{
    struct rcl_ctx *c = (struct rcl_ctx *)(void *)out;

    if (!out) {
        rcl__report("rcl_context_capture: NULL context; nothing captured");
        return;
    }
    memset(out, 0, sizeof(*out));
    /* NORECLAIM marks "this thread is reclaiming"; another thread doing
     * the work is not, so it does not travel. */
    c->scope = rcl__scope & ~RCL_SCOPE_NORECLAIM;
    rcl__domain_capture(c);
}

void rcl_context_adopt(const struct rcl_context *ctx, struct rcl_context *saved)
{
    struct rcl_ctx *s = (struct rcl_ctx *)(void *)saved, in;
    const struct rcl_ctx *c = &in;

    if (!ctx || !saved) {
        rcl__report("rcl_context_adopt: NULL %s", ctx ? "saved" : "context");
        return;
    }
    /* Read whole before the save is written: `saved` may be `ctx` itself,
     * a context adopted in place. */
    memcpy(&in, ctx, sizeof(in));
    while (!adopts.id)
        adopts.id = atomic_fetch_add_explicit(&adopt_ids, 1, memory_order_relaxed) + 1;
    memset(saved, 0, sizeof(*saved));
    s->scope = rcl__scope;
    rcl__domain_capture(s);
    s->adopt_owner = adopts.id;
    s->adopt_depth = ++adopts.depth;
    if (adopts.depth <= ADOPTS_TRACKED)
        adopts.live |= 1ull << (adopts.depth - 1);
    /* A save, so that a restore out of order takes back only these bits,
     * and the checker sees it as it sees any other. */
    s->adopt_set = rcl_scope_save(c->scope);
    rcl__domain_adopt(c);
}

/* Where a saved context stands among this thread's adopts: 1 innermost,
 * 0 an outer one (restored out of order), -1 not outstanding here
 * (reported). Takes it off the outstanding ones. */
static int adopt_end(const struct rcl_ctx *s)
{
    if (s->adopt_owner != adopts.id) {
        rcl__report("rcl_context_restore: the context was saved by rcl_context_adopt() on "
                    "another thread; nothing restored (each thread restores its own)");
        return -1;
    }
    unsigned d = s->adopt_depth;
    bool tracked = d <= ADOPTS_TRACKED;
    if (!d || d > adopts.depth || (tracked && !(adopts.live & (1ull << (d - 1))))) {
        rcl__report("rcl_context_restore: the context was restored already; nothing "
                    "restored");
        return -1;
    }
    if (tracked)
        adopts.live &= ~(1ull << (d - 1));
    if (tracked && d < adopts.depth)
        return 0;
    adopts.depth = d - 1;
    while (adopts.depth && adopts.depth <= ADOPTS_TRACKED &&
           !(adopts.live & (1ull << (adopts.depth - 1))))
        adopts.depth--;
    /* The innermost outstanding adopt is live; none deeper is. */
    rcl__assert(!adopts.depth || adopts.depth > ADOPTS_TRACKED ||
                (adopts.live & (1ull << (adopts.depth - 1))));
    rcl__assert(adopts.depth >= ADOPTS_TRACKED || !(adopts.live >> adopts.depth));
    return 1;
}

/*
 * A captured context rather than a saved one. Its capture was no save: it
 * set no scope bits, so its restore takes none back (the kernel's restore
 * of a token that holds no bits), nor brings back bits a scope closed since
 * had set. Where the scope is not as captured, a scope opened since is still
 * open or one open then has closed: the restore is out of order, and the
 * checker reports it as it reports a scope's. NORECLAIM does not travel in
 * a context (rcl_context_capture) and is no part of its order either.
 * Domains and the journal cookie are taken whole (domain.c reports a
 * domain entered since and never exited, and exits it).
 */
static void captured_restore(const struct rcl_ctx *s)
{
    unsigned now = rcl__scope & ~RCL_SCOPE_NORECLAIM;

    rcl__domain_restore(s);
    if (now != s->scope && rcl__checking())
        rcl__lockdep_context_restore_captured(s->scope, now);
}

/* An adopt restored out of order: its domains and cookie wait for the
 * restore that leaves no adopt open above it. Without memory to keep them,
 * they are put back now, the inner adopt's domains popped with them. */
static void early_keep(const struct rcl_ctx *s)
{
    pthread_once(&early_once, early_key_make);
    struct early *head = early_keyed ? early_list() : NULL, **at = &head;
    struct early *e = early_keyed ? malloc(sizeof(*e)) : NULL;

    if (!e) {
        rcl__domain_restore(s);
        return;
    }
    struct early *was = head;
    e->depth = s->adopt_depth;
    e->saved = *s;
    while (*at && (*at)->depth > e->depth)
        at = &(*at)->next;
    rcl__assert(!*at || (*at)->depth < e->depth);
    e->next = *at;
    *at = e;
    if (!early_set(was, head)) {
        free(e);
        rcl__domain_restore(s);
    }
}

/* The innermost adopt restored, `depth` the one now open below it (0:
 * none): the adopts between were restored out of order, and the
 * shallowest's saved state is the one to put back. The caller frees it;
 * the others between go. NULL: none between (or none kept). */
static struct early *early_end(unsigned depth)
{
    struct early *head = early_list(), *was = head, *base = NULL;

    while (head && head->depth > depth) {
        struct early *e = head;
        head = e->next;
        free(base);
        base = e;
    }
    if (head != was) {
        bool kept = early_set(was, head);   /* a shorter list: the slot is there */
        rcl__assert(kept);
        (void)kept;
    }
    if (base && base->depth != depth + 1) {
        free(base);      /* the shallowest was not kept (early_keep) */
        base = NULL;
    }
    return base;
}

/*
 * Around the program's callbacks (a may_reclaim, a shrinker's, a work
 * item): an adopt the callback made and never restored is forgotten when
 * it returns. Its saved state went with the callback's frames, so nothing
 * can restore it; left outstanding, it would make the caller's own restore
 * one out of order, kept for ever, and the caller would stay inside the
 * domains it had adopted. The domains and scope bits it added are put
 * back by the callers (the domain floor, the pass's scope). How many.
 */
unsigned rcl__adopts_mark(void)
{
    return adopts.depth;
}

unsigned rcl__adopts_forget(unsigned mark)
{
    if (likely(adopts.depth <= mark))
        return 0;
    unsigned n = adopts.depth - mark;
    if (mark < ADOPTS_TRACKED)
        adopts.live &= mark ? ~(uint64_t)0 >> (ADOPTS_TRACKED - mark) : 0;
    adopts.depth = mark;
    if (early_list())
        free(early_end(mark));
    return n;
}

void rcl_context_restore(const struct rcl_context *saved)
{
    const struct rcl_ctx *s = (const struct rcl_ctx *)(const void *)saved;

    if (!saved) {
        rcl__report("rcl_context_restore: NULL context");
        return;
    }
    /* From a callback, before anything is taken off: the adopt, if it is
     * one, stays outstanding for the caller's own restore. */
    if (rcl__domain_restore_reaches(s))
        return;
    if (!s->adopt_owner) {
        captured_restore(s);
        return;
    }
    int innermost = adopt_end(s);
    if (innermost < 0)
        return;
    if (!innermost) {
        early_keep(s);
        rcl_scope_restore(s->adopt_set);
        return;
    }
    struct early *base = early_end(adopts.depth);
    rcl__domain_restore(base ? &base->saved : s);
    free(base);
    /* Whatever was left open above the adopt ends with it; bits an outer
     * adopt's restore out of order took back stay taken back. */
    rcl__scope_put(rcl__scope & s->scope);
}
