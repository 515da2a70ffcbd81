/* SPDX-License-Identifier: MIT */
/*
 * lru.c - a shrinkable LRU list, the user-space twin of the kernel's
 * list_lru: intrusive nodes, one lock, an exact count, a walk whose
 * callback decides per item (removed / rotate / skip / stop), and a
 * one-call shrinker on top.
 *
 * Invariants, all kept under lru->lock:
 *   - the list is circular through lru->head; head.next is the coldest
 *     (least recently added or touched) item, head.prev the hottest;
 *   - lru->count is the number of items linked, on the ring or on the
 *     orphans list, exactly;
 *   - a node that is on no list has next == prev == NULL (so "is it on an
 *     LRU?" needs no extra field, which keeps the node two pointers).
 * The lock is never held across anything but list surgery and the walk's
 * isolate callback, which is why the callback must not allocate, free the
 * item, or call back into this LRU: the items it removes go to a private
 * dispose list and are freed after the lock is dropped.
 *
 * Orphans: items a shrinker's scan had removed and not yet freed when its
 * thread ended (a free_fn or an isolate callback that called
 * pthread_exit()). The cache let go of them, so they may not go back on
 * the ring, where its isolate callback would be asked about them again;
 * they wait, counted, for the next walk to hand them to its dispose list
 * first, asking nobody.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct rcl_lru {
    pthread_mutex_t      lock;
    struct rcl_lru_node  head;
    struct rcl_lru_node  orphans;  /* untagged, as a dispose list is */
    _Atomic unsigned long count;   /* written under lock, read without */
    /* the one shrinker rcl_lru_shrinker() made, owned by the LRU */
    struct rcl_shrinker *shrinker;
    rcl_lru_isolate_fn   isolate;
    rcl_lru_free_fn      free_fn;
    void                *arg;
    struct rcl__fork_obj fork;     /* lock is taken around fork(); its
                                      holder is the walking thread */
    uintptr_t            tag;      /* in the low bits of its nodes' prev */
    unsigned             shrinker_epoch;   /* rcl__epoch when shrinker was made */
    /* The thread an rcl_lru_shrinker() is under way on, or NULL. */
    _Atomic(const struct rcl_thread *) maker;
};

/*
 * Which LRU is a node on? The node is two pointers and stays so; but the
 * pointers are aligned, so their low bits are free. Every node of an LRU's
 * ring (the head included) carries the LRU's tag in the low bits of prev;
 * dispose lists carry none. rcl_lru_del/touch compare it to the LRU's own,
 * so a node of another LRU (or of a dispose list) is refused without a
 * walk. Tags are handed out least-used first: they are all distinct while
 * a program has at most TAG_MASK LRUs (7 on 64-bit targets).
 */
#define TAG_MASK ((uintptr_t)_Alignof(struct rcl_lru_node) - 1)
_Static_assert(_Alignof(struct rcl_lru_node) >= 4, "two tag bits at least");

/* Lock-free, so that nothing here needs a place in the fork lock order:
 * a race only makes the spread of tags less even. */
static _Atomic unsigned tag_users[TAG_MASK + 1];

static uintptr_t tag_get(void)
{
    uintptr_t best = 1;
    for (uintptr_t t = 2; t <= TAG_MASK; t++)
        if (rd(tag_users[t]) < rd(tag_users[best]))
            best = t;
    atomic_fetch_add(&tag_users[best], 1);
    return best;
}

static void tag_put(uintptr_t tag)
{
    atomic_fetch_sub(&tag_users[tag], 1);
}

static struct rcl_lru_node *prev_of(const struct rcl_lru_node *n)
{
    return (struct rcl_lru_node *)((uintptr_t)n->prev & ~TAG_MASK);
}

static uintptr_t tag_of(const struct rcl_lru_node *n)
{
    return (uintptr_t)n->prev & TAG_MASK;
}

static void set_prev(struct rcl_lru_node *n, struct rcl_lru_node *p, uintptr_t tag)
{
    n->prev = (struct rcl_lru_node *)((uintptr_t)p | tag);
}

/* ------------------------------------------------------------------------ */
/* Plain list surgery (caller holds the lock where the list is shared)      */
/* ------------------------------------------------------------------------ */

/* Both keep the tag of the list they work on (pos's, n's). */
static void link_before(struct rcl_lru_node *n, struct rcl_lru_node *pos)
{
    uintptr_t tag = tag_of(pos);
    struct rcl_lru_node *p = prev_of(pos);
    rcl__assert(!n->next && p->next == pos);
    set_prev(n, p, tag);
    n->next = pos;
    p->next = n;
    set_prev(pos, n, tag);
}

static void unlink_node(struct rcl_lru_node *n)
{
    struct rcl_lru_node *p = prev_of(n);
    rcl__assert(p->next == n && prev_of(n->next) == n);
    p->next = n->next;
    set_prev(n->next, p, tag_of(n));
    n->next = n->prev = NULL;
}

void rcl_lru_node_init(struct rcl_lru_node *n)
{
    if (n)
        n->next = n->prev = NULL;
}

void rcl_lru_list_init(struct rcl_lru_node *list)
{
    if (list)
        list->next = list->prev = list;
}

struct rcl_lru_node *rcl_lru_list_pop(struct rcl_lru_node *list)
{
    if (!list || !list->next || list->next == list)
        return NULL;
    struct rcl_lru_node *n = list->next;
    unlink_node(n);
    return n;
}

/* The count moves with the ring and the orphans, under the lock; an LRU
 * with neither has none. */
static inline void count_add_locked(struct rcl_lru *lru, long delta)
{
    rcl__assert_held(&lru->lock);
    rcl__assert(delta > 0 || rd(lru->count) > 0);
    wr(lru->count, rd(lru->count) + (unsigned long)delta);
    rcl__assert((rd(lru->count) == 0) ==
                (lru->head.next == &lru->head && lru->orphans.next == &lru->orphans));
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

static bool shrinker_still_ours(const struct rcl_lru *lru)
{
    return atomic_load_explicit(&rcl__ready, memory_order_acquire) &&
           atomic_load_explicit(&rcl__epoch, memory_order_acquire) == lru->shrinker_epoch;
}

/*
 * A making under way on another thread at the fork has no thread to end
 * it in the child, which could then never make the LRU's shrinker. One
 * on the forking thread (a report function that forks in it) goes on.
 *
 * Nor has a destroy under way on another thread, which claimed the LRU:
 * every destroy in the child was refused as a second one, the copy never
 * freed. An LRU still tracked has had nothing freed (lru_free() untracks
 * first), so the copy is whole and the claim goes; what is left to settle
 * is the shrinker, whose unregister that destroy may have begun. One the
 * child's shrinker handler finished is gone (that handler runs before
 * this one). One a pass of the forking thread still holds stays
 * registered, for the child's destroy to unregister again, which it
 * refuses while that pass scans the LRU: forgotten, the shrinker would
 * let the child's destroy free the LRU under the scan.
 */
static void lru_atfork_child(struct rcl__fork_obj *o)
{
    struct rcl_lru *lru = (struct rcl_lru *)(void *)((char *)o - offsetof(struct rcl_lru, fork));

    if (rd(lru->maker) != &rcl__self)
        wr(lru->maker, NULL);
    if (!rcl__fork_claimed_by_gone(o))
        return;
    if (lru->shrinker && shrinker_still_ours(lru) &&
        !rcl__shrinker_atfork_keep(lru->shrinker))
        lru->shrinker = NULL;
    rcl__fork_unclaim_gone(o);
}

struct rcl_lru *rcl_lru_create(void)
{
    struct rcl_lru *lru = calloc(1, sizeof(*lru));
    if (!lru) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&lru->lock, NULL);
    lru->tag = tag_get();
    lru->head.next = &lru->head;
    set_prev(&lru->head, &lru->head, lru->tag);
    rcl_lru_list_init(&lru->orphans);
    rcl__fork_track(&lru->fork, &lru->lock, lru_atfork_child);
    return lru;
}

/* What a destroy has to report, kept for after it has let the LRU go. */
struct lru_free_report {
    unsigned long count;            /* items left on it: -EBUSY */
    int           unregister_err;   /* its shrinker's unregister refused */
    const void   *shrinker;
    char          name[RCL_NAME_MAX];
};

/* Frees a claimed LRU, or says why it may not (-EBUSY, -EDEADLK), leaving
 * it as it was. */
static int lru_free(struct rcl_lru *lru, struct lru_free_report *r)
{
    r->count = rd(lru->count);
    r->unregister_err = 0;
    r->shrinker = NULL;
    /* The items are the caller's; freeing the head under them would leave
     * them pointing at freed memory. Refused, and the LRU left as it was,
     * shrinker included. */
    if (r->count)
        return -EBUSY;
    /* Unregistering waits for a scan in flight, so after this no shrinker
     * call can be looking at the list. */
    if (lru->shrinker) {
        /* rcl_shutdown() dropped every shrinker, and the address may now
         * be another's: unregister only one of this library instance. From
         * the shrinker's own scan (a free_fn that destroys its LRU) the
         * unregister is refused, and the LRU stays: the scan comes back
         * to it. */
        if (shrinker_still_ours(lru)) {
            r->shrinker = lru->shrinker;
            r->unregister_err = rcl__shrinker_unregister_quiet(lru->shrinker, r->name);
            if (r->unregister_err == -EDEADLK)
                return -EDEADLK;
        }
        lru->shrinker = NULL;
    }
    /* Untracked before anything is let go: a child forked from here on
     * has no handler to end this destroy's claim in it, and one forked
     * before finds the LRU whole (lru_atfork_child()). */
    rcl__fork_untrack(&lru->fork);
    tag_put(lru->tag);
    pthread_mutex_destroy(&lru->lock);
    free(lru);
    return 0;
}

int rcl_lru_destroy(struct rcl_lru *lru)
{
    if (!lru) {
        rcl__report("rcl_lru_destroy(NULL): no LRU; nothing done");
        return -EINVAL;
    }
    if (!rcl__fork_claim(&lru->fork)) {
        rcl__report("rcl_lru_destroy(%p): not a live LRU (destroyed already, or "
                    "never created); left alone", (void *)lru);
        return -EINVAL;
    }
    struct lru_free_report r;
    int err = lru_free(lru, &r);
    if (err)
        rcl__fork_unclaim(&lru->fork);
    /* Loudly, once the LRU is freed or the program's again: a report
     * function that ends its thread left it claimed by the destroy, never
     * destroyed. */
    if (err == -EBUSY)
        rcl__report("rcl_lru_destroy: %lu items still on the LRU; not destroyed", r.count);
    else
        rcl__shrinker_unregister_report("rcl_lru_destroy", r.unregister_err, r.shrinker, r.name);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Adding, removing, touching                                                */
/* ------------------------------------------------------------------------ */

/* Is this thread inside a walk of lru, in its isolate callback? The walk
 * holds the LRU's lock, so a call back into it would wait for itself for
 * ever; other LRUs are the callback's to use. Kept in the LRU, not in a
 * thread-local of its own: a word added to the static TLS moved the words
 * the allocation hit path reads, and slowed it (docs/bench/patterns.md,
 * "Probe, 2026-12-06, 21:10"). Only the walker writes its own address
 * there, so the relaxed read is exact for the one thread it can name. */
static bool walked_by_self(const struct rcl_lru *lru)
{
    return atomic_load_explicit(&lru->fork.holder, memory_order_relaxed) == &rcl__self;
}

static int reentered(const char *fn, const struct rcl_lru *lru)
{
    rcl__report("%s(%p): called from a walk's isolate callback on the same LRU, whose "
                "lock the walk holds; refused", fn, (const void *)lru);
    return -EDEADLK;
}

static __attribute__((cold)) int null_arg(const char *fn, const struct rcl_lru *lru,
                                          const struct rcl_lru_node *n)
{
    rcl__report("%s(%p, %p): NULL %s; nothing changed", fn, (const void *)lru,
                (const void *)n, lru ? "node" : "LRU");
    return -EINVAL;
}

int rcl_lru_add(struct rcl_lru *lru, struct rcl_lru_node *n)
{
    if (unlikely(!lru || !n))
        return null_arg("rcl_lru_add", lru, n);
    if (unlikely(walked_by_self(lru)))
        return reentered("rcl_lru_add", lru);
    int added = 0;
    pthread_mutex_lock(&lru->lock);
    if (!n->next) {
        link_before(n, &lru->head);         /* tail: the hottest end */
        count_add_locked(lru, 1);
        added = 1;
    }
    pthread_mutex_unlock(&lru->lock);
    return added;
}

static int foreign_node(const char *fn, const struct rcl_lru *lru, const struct rcl_lru_node *n)
{
    rcl__report("%s(%p, %p): the node is on another LRU (or a dispose list), not this "
                "one; nothing changed", fn, (const void *)lru, (const void *)n);
    return -EINVAL;
}

int rcl_lru_del(struct rcl_lru *lru, struct rcl_lru_node *n)
{
    if (unlikely(!lru || !n))
        return null_arg("rcl_lru_del", lru, n);
    if (unlikely(walked_by_self(lru)))
        return reentered("rcl_lru_del", lru);
    int removed = 0;
    pthread_mutex_lock(&lru->lock);
    if (unlikely(n->next && tag_of(n) != lru->tag)) {
        pthread_mutex_unlock(&lru->lock);
        return foreign_node("rcl_lru_del", lru, n);
    }
    /* Checked under the lock: a concurrent walk may have isolated it. */
    if (n->next) {
        unlink_node(n);
        count_add_locked(lru, -1);
        removed = 1;
    }
    pthread_mutex_unlock(&lru->lock);
    return removed;
}

int rcl_lru_touch(struct rcl_lru *lru, struct rcl_lru_node *n)
{
    if (unlikely(!lru || !n))
        return null_arg("rcl_lru_touch", lru, n);
    if (unlikely(walked_by_self(lru)))
        return reentered("rcl_lru_touch", lru);
    int moved = 0;
    pthread_mutex_lock(&lru->lock);
    if (unlikely(n->next && tag_of(n) != lru->tag)) {
        pthread_mutex_unlock(&lru->lock);
        return foreign_node("rcl_lru_touch", lru, n);
    }
    if (n->next) {
        unlink_node(n);
        link_before(n, &lru->head);
        moved = 1;
    }
    pthread_mutex_unlock(&lru->lock);
    return moved;
}

unsigned long rcl_lru_count(const struct rcl_lru *lru)
{
    return lru ? rd(((struct rcl_lru *)lru)->count) : 0;
}

/* ------------------------------------------------------------------------ */
/* The walk                                                                  */
/* ------------------------------------------------------------------------ */

/* A walk's state that its cleanup handler needs, in rcl_lru_walk()'s own
 * frame: the frames below the handler are gone when it runs. */
struct walk_state {
    struct rcl_lru *lru;
    int             cancel;
    unsigned char   callout;    /* the thread's, put back */
};

/* An isolate callback that ends its thread (pthread_exit(), which the
 * cancel state does not defer) ends the walk where it stood: the item it
 * was given stays on the LRU untouched, as the list surgery for it comes
 * after the return that never happened. The lock and the walker go as
 * the walk's end would have let them go, or every later call on the LRU
 * waits for the gone thread. */
static void walk_unwound(void *arg)
{
    const struct walk_state *st = arg;

    rcl__asan_unwinding();
    rcl__self.callout = st->callout;
    atomic_store_explicit(&st->lru->fork.holder, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&st->lru->lock);
    rcl__nocancel_end(st->cancel);
}

/* Orphans were removed once already: they go first, each as a removed
 * item that costs a unit of the walk, and the callback never sees them. */
static unsigned long adopt_orphans_locked(struct rcl_lru *lru, unsigned long budget,
                                          struct rcl_lru_node *dispose)
{
    unsigned long n = 0;
    struct rcl_lru_node *o;

    rcl__assert_held(&lru->lock);
    while (n < budget && (o = rcl_lru_list_pop(&lru->orphans)) != NULL) {
        count_add_locked(lru, -1);
        link_before(o, dispose);
        n++;
    }
    return n;
}

/* Every visited item costs one unit of nr_to_walk (list_lru's rule): a walk
 * is bounded by what it was given, never by what the callback does. A
 * rotated item goes to the tail, so a walk of at most `count` items never
 * meets it again. */
static unsigned long walk_locked(struct rcl_lru *lru, rcl_lru_isolate_fn isolate, void *arg,
                                 unsigned long nr_to_walk, struct rcl_lru_node *dispose)
{
    unsigned long budget = nr_to_walk < rd(lru->count) ? nr_to_walk : rd(lru->count);
    struct rcl_lru_node *n = lru->head.next;

    rcl__assert_held(&lru->lock);
    unsigned long removed = adopt_orphans_locked(lru, budget, dispose);
    budget -= removed;
    while (budget && n != &lru->head) {
        struct rcl_lru_node *next = n->next;
        enum rcl_lru_walk r = isolate ? isolate(n, arg) : RCL_LRU_REMOVED;
        budget--;
        if (r == RCL_LRU_STOP)
            break;
        switch (r) {
        case RCL_LRU_REMOVED:
            unlink_node(n);
            count_add_locked(lru, -1);
            link_before(n, dispose);
            removed++;
            break;
        case RCL_LRU_ROTATE:
            if (next == &lru->head)
                break;               /* already the hottest */
            unlink_node(n);
            link_before(n, &lru->head);
            break;
        default:                     /* SKIP, or a value we do not know */
            break;
        }
        n = next;
    }
    return removed;
}

unsigned long rcl_lru_walk(struct rcl_lru *lru, rcl_lru_isolate_fn isolate, void *arg,
                           unsigned long nr_to_walk, struct rcl_lru_node *dispose)
{
    if (!lru || !dispose || !dispose->next) {
        rcl__report("rcl_lru_walk(%p, %p): %s; nothing walked", (void *)lru, (void *)dispose,
                    !lru ? "NULL LRU" : !dispose ? "NULL dispose list"
                                                 : "dispose list not initialised");
        errno = EINVAL;
        return 0;
    }
    if (unlikely(walked_by_self(lru))) {
        errno = -reentered("rcl_lru_walk", lru);
        return 0;
    }
    struct walk_state st = { .lru = lru };
    unsigned long removed;
    /* The callback is the program's, under the lock: a cancellation point
     * it reaches (a log line) waits until the lock is let go. */
    st.cancel = rcl__nocancel_begin();
    pthread_mutex_lock(&lru->lock);
    atomic_store_explicit(&lru->fork.holder, &rcl__self, memory_order_relaxed);
    /* The isolate callback runs under the lock: an rcl_shutdown() there
     * would join the background reclaimer, whose scan of this LRU may be
     * waiting for that lock, and is refused (init.c). */
    st.callout = rcl__self.callout;
    rcl__self.callout = RCL__CALLOUT_ISOLATE;
    /* One handler for the whole walk, not one an item: a push costs a
     * setjmp. */
    pthread_cleanup_push(walk_unwound, &st);
    removed = walk_locked(lru, isolate, arg, nr_to_walk, dispose);
    pthread_cleanup_pop(0);
    rcl__self.callout = st.callout;
    atomic_store_explicit(&lru->fork.holder, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&lru->lock);
    rcl__nocancel_end(st.cancel);
    return removed;
}

/* ------------------------------------------------------------------------ */
/* The shrinker                                                              */
/* ------------------------------------------------------------------------ */

static unsigned long lru_count_objects(void *priv, struct rcl_shrink_control *sc)
{
    (void)sc;
    unsigned long n = rcl_lru_count(priv);
    return n ? n : RCL_SHRINK_EMPTY;
}

/* A scan's state that its cleanup handler needs, in the scan's frame. */
struct scan_state {
    struct rcl_lru     *lru;
    struct rcl_lru_node dispose;
};

/* A free_fn, or an isolate callback, that ends the scan's thread leaves
 * the items the scan had removed and not yet handed to free_fn on its
 * dispose list, which dies with the frame. They go to the LRU's orphans,
 * counted again, for the next walk; the item free_fn was given is its
 * own. Not freed here: free_fn, the program's, could end the thread a
 * second time inside the unwinding, which is undefined. */
static void scan_unwound(void *arg)
{
    struct scan_state *st = arg;
    struct rcl_lru *lru = st->lru;
    struct rcl_lru_node *n;
    long moved = 0;

    rcl__asan_unwinding();
    pthread_mutex_lock(&lru->lock);
    while ((n = rcl_lru_list_pop(&st->dispose)) != NULL) {
        link_before(n, &lru->orphans);
        moved++;
    }
    if (moved)
        count_add_locked(lru, moved);
    pthread_mutex_unlock(&lru->lock);
}

static unsigned long lru_scan_objects(void *priv, struct rcl_shrink_control *sc)
{
    struct scan_state st = { .lru = priv };
    struct rcl_lru *lru = st.lru;
    struct rcl_lru_node *n;
    unsigned long freed;

    rcl_lru_list_init(&st.dispose);
    /* One handler for the walk and the frees, not one an item: a push
     * costs a setjmp. */
    pthread_cleanup_push(scan_unwound, &st);
    freed = rcl_lru_walk(lru, lru->isolate, lru->arg, sc->nr_to_scan, &st.dispose);
    /* Freed outside the LRU lock, as list_lru's users do: freeing may take
     * the allocator's locks and uncharge, neither of which belongs under
     * it. Each leaves the list before free_fn has it: one whose free_fn
     * ends the thread is never orphaned as well. */
    while ((n = rcl_lru_list_pop(&st.dispose)) != NULL)
        lru->free_fn(n, lru->arg);
    pthread_cleanup_pop(0);
    return freed;
}

static const struct rcl_shrinker_ops lru_shrinker_ops = {
    .count = lru_count_objects,
    .scan  = lru_scan_objects,
};

/* A report function that ends its thread in the registration (a refused
 * one's report) ends the making with it, or every later call would find
 * it under way for good. */
static void making_unwound(void *arg)
{
    struct rcl_lru *lru = arg;

    rcl__asan_unwinding();
    atomic_store_explicit(&lru->maker, NULL, memory_order_release);
}

/*
 * One call at a time makes the LRU's shrinker: two at once each found
 * none and registered one, and the LRU kept the second, the first left
 * registered for good, its scans walking the LRU after its destroy.
 */
struct rcl_shrinker *rcl_lru_shrinker(struct rcl_lru *lru, const char *name,
                                      rcl_lru_isolate_fn isolate, rcl_lru_free_fn free_fn,
                                      void *arg, const struct rcl_shrinker_opts *opts)
{
    if (!lru || !name || !free_fn) {
        rcl__report("rcl_lru_shrinker(%p, %s): NULL %s; no shrinker made", (void *)lru,
                    name ? name : "NULL", !lru ? "LRU" : !name ? "name" : "free_fn");
        errno = EINVAL;
        return NULL;
    }
    const struct rcl_thread *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&lru->maker, &none, &rcl__self,
                                                 memory_order_acquire, memory_order_relaxed)) {
        errno = EBUSY;
        return NULL;
    }
    if (lru->shrinker && shrinker_still_ours(lru)) {
        atomic_store_explicit(&lru->maker, NULL, memory_order_release);
        errno = EBUSY;
        return NULL;
    }
    /* A shrinker rcl_shutdown() dropped is forgotten: the LRU may have a
     * new one, in the library started again. The callbacks are set before
     * registering: the first scan may start before
     * rcl_shrinker_register() returns. */
    lru->isolate = isolate;
    lru->free_fn = free_fn;
    lru->arg = arg;
    struct rcl_shrinker *s;
    pthread_cleanup_push(making_unwound, lru);
    s = rcl_shrinker_register(name, &lru_shrinker_ops, lru, opts);
    pthread_cleanup_pop(0);
    lru->shrinker = s;
    lru->shrinker_epoch = atomic_load(&rcl__epoch);
    atomic_store_explicit(&lru->maker, NULL, memory_order_release);
    return s;
}
