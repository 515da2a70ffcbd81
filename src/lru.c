/*
 * lru.c - a shrinkable LRU list, the user-space twin of the kernel's
 * list_lru: intrusive nodes, one lock, an exact count, a walk whose
 * callback decides per item (removed / rotate / skip / stop), and a
 * one-call shrinker on top.
 *
 * Invariants, all kept under lru->lock:
 *   - the list is circular through lru->head; head.next is the coldest
 *     (least recently added or touched) item, head.prev the hottest;
 *   - lru->count is the number of items linked, exactly;
 *   - a node that is on no list has next == prev == NULL (so "is it on an
 *     LRU?" needs no extra field, which keeps the node two pointers).
 * The lock is never held across anything but list surgery and the walk's
 * isolate callback, which is why the callback must not allocate, free the
 * item, or call back into this LRU: the items it removes go to a private
 * dispose list and are freed after the lock is dropped.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct rcl_lru {
    pthread_mutex_t      lock;
    struct rcl_lru_node  head;
    _Atomic unsigned long count;   /* written under lock, read without */
    /* the one shrinker rcl_lru_shrinker() made, owned by the LRU */
    struct rcl_shrinker *shrinker;
    rcl_lru_isolate_fn   isolate;
    rcl_lru_free_fn      free_fn;
    void                *arg;
    struct rcl__fork_obj fork;     /* lock is taken around fork() */
};

/* ------------------------------------------------------------------------ */
/* Plain list surgery (caller holds the lock where the list is shared)      */
/* ------------------------------------------------------------------------ */

static void link_before(struct rcl_lru_node *n, struct rcl_lru_node *pos)
{
    n->prev = pos->prev;
    n->next = pos;
    pos->prev->next = n;
    pos->prev = n;
}

static void unlink_node(struct rcl_lru_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
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

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

struct rcl_lru *rcl_lru_create(void)
{
    struct rcl_lru *lru = calloc(1, sizeof(*lru));
    if (!lru) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&lru->lock, NULL);
    rcl_lru_list_init(&lru->head);
    rcl__fork_track(&lru->fork, &lru->lock, NULL);
    return lru;
}

int rcl_lru_destroy(struct rcl_lru *lru)
{
    if (!lru)
        return -EINVAL;
    unsigned long left = rd(lru->count);
    if (left) {
        /* The items are the caller's; freeing the head under them would
         * leave them pointing at freed memory. Refuse, loudly, and leave
         * the LRU as it was, shrinker included. */
        rcl__report("rcl_lru_destroy: %lu items still on the LRU; "
                    "not destroyed", left);
        return -EBUSY;
    }
    /* Unregistering waits for a scan in flight, so after this no shrinker
     * call can be looking at the list. */
    if (lru->shrinker) {
        rcl_shrinker_unregister(lru->shrinker);
        lru->shrinker = NULL;
    }
    rcl__fork_untrack(&lru->fork);
    pthread_mutex_destroy(&lru->lock);
    free(lru);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Adding, removing, touching                                                */
/* ------------------------------------------------------------------------ */

int rcl_lru_add(struct rcl_lru *lru, struct rcl_lru_node *n)
{
    if (!lru || !n)
        return -EINVAL;
    int added = 0;
    pthread_mutex_lock(&lru->lock);
    if (!n->next) {
        link_before(n, &lru->head);         /* tail: the hottest end */
        wr(lru->count, rd(lru->count) + 1);
        added = 1;
    }
    pthread_mutex_unlock(&lru->lock);
    return added;
}

int rcl_lru_del(struct rcl_lru *lru, struct rcl_lru_node *n)
{
    if (!lru || !n)
        return -EINVAL;
    int removed = 0;
    pthread_mutex_lock(&lru->lock);
    /* Checked under the lock: a concurrent walk may have isolated it. */
    if (n->next) {
        unlink_node(n);
        wr(lru->count, rd(lru->count) - 1);
        removed = 1;
    }
    pthread_mutex_unlock(&lru->lock);
    return removed;
}

int rcl_lru_touch(struct rcl_lru *lru, struct rcl_lru_node *n)
{
    if (!lru || !n)
        return -EINVAL;
    int moved = 0;
    pthread_mutex_lock(&lru->lock);
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

unsigned long rcl_lru_walk(struct rcl_lru *lru, rcl_lru_isolate_fn isolate, void *arg,
                           unsigned long nr_to_walk, struct rcl_lru_node *dispose)
{
    if (!lru || !dispose || !dispose->next) {
        errno = EINVAL;
        return 0;
    }
    unsigned long removed = 0;
    pthread_mutex_lock(&lru->lock);
    /* Every visited item costs one unit of nr_to_walk, rotated or skipped
     * ones included (list_lru's rule): a walk is bounded by what it was
     * given, never by what the callback does. A rotated item goes to the
     * tail, so a walk of at most `count` items never meets it again. */
    unsigned long budget = nr_to_walk < rd(lru->count) ? nr_to_walk : rd(lru->count);
    struct rcl_lru_node *n = lru->head.next;
    while (budget && n != &lru->head) {
        struct rcl_lru_node *next = n->next;
        enum rcl_lru_walk r = isolate ? isolate(n, arg) : RCL_LRU_REMOVED;
        budget--;
        if (r == RCL_LRU_STOP)
            break;
        switch (r) {
        case RCL_LRU_REMOVED:
            unlink_node(n);
            wr(lru->count, rd(lru->count) - 1);
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
    pthread_mutex_unlock(&lru->lock);
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

static unsigned long lru_scan_objects(void *priv, struct rcl_shrink_control *sc)
{
    struct rcl_lru *lru = priv;
    struct rcl_lru_node dispose;
    rcl_lru_list_init(&dispose);
    unsigned long freed = rcl_lru_walk(lru, lru->isolate, lru->arg, sc->nr_to_scan, &dispose);
    /* Freed outside the LRU lock, as list_lru's users do: freeing may take
     * the allocator's locks and uncharge, neither of which belongs under it. */
    struct rcl_lru_node *n;
    while ((n = rcl_lru_list_pop(&dispose)) != NULL)
        lru->free_fn(n, lru->arg);
    return freed;
}

static const struct rcl_shrinker_ops lru_shrinker_ops = {
    .count = lru_count_objects,
    .scan  = lru_scan_objects,
};

struct rcl_shrinker *rcl_lru_shrinker(struct rcl_lru *lru, const char *name,
                                      rcl_lru_isolate_fn isolate, rcl_lru_free_fn free_fn,
                                      void *arg, const struct rcl_shrinker_opts *opts)
{
    if (!lru || !name || !free_fn) {
        errno = EINVAL;
        return NULL;
    }
    if (lru->shrinker) {
        errno = EBUSY;
        return NULL;
    }
    /* Set before registering: the first scan may start before
     * rcl_shrinker_register() returns. */
    lru->isolate = isolate;
    lru->free_fn = free_fn;
    lru->arg = arg;
    lru->shrinker = rcl_shrinker_register(name, &lru_shrinker_ops, lru, opts);
    return lru->shrinker;
}
