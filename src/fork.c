/* SPDX-License-Identifier: MIT */
/*
 * fork.c - surviving fork() in a multi-threaded program.
 *
 * fork() copies only the calling thread. A lock another thread held at
 * that moment stays locked in the child forever, and the data it protected
 * may be half updated. So, as glibc's malloc and jemalloc do, the prepare
 * handler takes every library lock before the fork, in the one order below,
 * and the parent and child handlers unlock them (in the child the forking
 * thread is their owner still), the child after forgetting the threads it
 * no longer has and re-initialising the condition variables, whose copies
 * may remember waiters that do not exist there.
 *
 * The lock order, outermost first. Every path in the library that holds
 * two of these at once takes them in this order, so the prepare handler
 * cannot deadlock with a thread that is inside the library:
 *
 *   1. init_lock                 (init.c: life cycle), then the pressure
 *                                thread's descriptors (pressure.c), which
 *                                that thread holds with nothing else
 *   2. the object list lock, then every tracked object's lock: workqueues,
 *      mempools, LRUs (fork.c, through rcl__fork_track), in no fixed
 *      order among themselves (objs_prepare() says why), but for one the
 *      forking thread holds itself (held_here())
 *   3. the shrinker registry     (shrinker.c)
 *   4. the background reclaimer  (reclaim.c)
 *   5. the thread registry       (thread.c)
 *   6. the live-domain list      (domain.c)
 *   7. the lock checker's graph  (lockdep_graph.c)
 *   8. the symbolizer            (symbolize.c)
 *   9. the report sink           (report.c)
 *  10. the depot's locks         (block_cache.c), taken with nothing else
 *                                held but object locks (2), by a free or
 *                                an allocation inside one
 *  11. the slabs' trim lock, then their lock (slab.c), the same, and
 *                                never with the depot's; nothing but the
 *                                slabs' lock is taken under the trim lock
 *  12. the regions' lock         (region.c), taken by a span taken or
 *                                given back, with nothing else held
 *  13. the I/O flusher's reserve (flusher_reserve.c), taken by its own
 *                                allocations and frees and to install or
 *                                release it, with nothing else held
 *
 * Object locks (2) are leaves with respect to 3-9 except for reports,
 * which come last.
 *
 * The library's own threads (background reclaimer, pressure thread,
 * workqueue workers and rescuers) do not exist in the child. The first two
 * come back on demand: the reclaimer at the next wake-up, the pressure
 * thread at the child's next entry into the library's slow paths (init.c,
 * rcl__ready == RCL__READY_FORKED). Workqueues created before the fork are
 * "inherited": see rcl_workqueue_create in reclaim.h for what the child
 * may do with them.
 */
#include "internal.h"

#include <errno.h>

static pthread_mutex_t objs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcl__fork_obj objs = { .next = &objs, .prev = &objs };
static pthread_once_t register_once = PTHREAD_ONCE_INIT;

/* Is the object's lock held by the forking thread itself, across the
 * program's code - fork() called from an LRU's isolate callback? Taking
 * it again would wait for ever; it is left to the walk, which goes on in
 * the parent and in the child, and lets it go. */
static bool held_here(const struct rcl__fork_obj *o)
{
    return atomic_load_explicit(&o->holder, memory_order_relaxed) == &rcl__self;
}

/* Lets go of the object locks taken before `stop`, all but `keep`. */
static void objs_unlock_upto(struct rcl__fork_obj *stop, struct rcl__fork_obj *keep)
{
    for (struct rcl__fork_obj *o = objs.next; o != stop; o = o->next)
        if (o != keep && !held_here(o))
            pthread_mutex_unlock(o->lock);
}

/* Tries every object lock but `held`, which is ours already. Returns NULL
 * with all of them held, or the one that was busy with none held. */
static struct rcl__fork_obj *objs_trylock_all(struct rcl__fork_obj *held)
{
    for (struct rcl__fork_obj *o = objs.next; o != &objs; o = o->next) {
        if (o == held || held_here(o) || pthread_mutex_trylock(o->lock) == 0)
            continue;
        objs_unlock_upto(o, held);
        if (held)
            pthread_mutex_unlock(held->lock);
        return o;
    }
    return NULL;
}

/*
 * Object locks have no order among themselves: an LRU's isolate callback
 * runs under its LRU's lock and may add to another LRU or queue work, so
 * a program nests them as it likes. Taking them in list order would wait
 * for one while holding another that its holder wants next. So the
 * prepare handler only ever blocks on an object lock holding none of the
 * others, and tries the rest.
 */
static void objs_prepare(void)
{
    struct rcl__fork_obj *held = NULL, *busy;

    pthread_mutex_lock(&objs_lock);
    while ((busy = objs_trylock_all(held)) != NULL) {
        pthread_mutex_lock(busy->lock);
        held = busy;
    }
}

static void objs_parent(void)
{
    for (struct rcl__fork_obj *o = objs.prev; o != &objs; o = o->prev)
        if (!held_here(o))
            pthread_mutex_unlock(o->lock);
    pthread_mutex_unlock(&objs_lock);
}

static void objs_child(void)
{
    for (struct rcl__fork_obj *o = objs.next; o != &objs; o = o->next) {
        if (o->child)
            o->child(o);
        if (!held_here(o))
            pthread_mutex_unlock(o->lock);
    }
    pthread_mutex_unlock(&objs_lock);
}

static void fork_prepare(void)
{
    rcl__init_atfork_prepare();
    rcl__pressure_atfork_prepare();
    objs_prepare();
    rcl__shrinker_atfork_prepare();
    rcl__reclaim_atfork_prepare();
    rcl__thread_atfork_prepare();
    rcl__domain_atfork_prepare();
    rcl__lockdep_atfork_prepare();
    rcl__symbolize_atfork_prepare();
    rcl__report_atfork_prepare();
    rcl__depot_atfork_prepare();
    rcl__slab_atfork_prepare();
    rcl__region_atfork_prepare();
    rcl__resv_atfork_prepare();
}

/* The reverse order, though unlocking in any order would do. */
static void fork_parent(void)
{
    rcl__resv_atfork_parent();
    rcl__region_atfork_parent();
    rcl__slab_atfork_parent();
    rcl__depot_atfork_parent();
    rcl__report_atfork_parent();
    rcl__symbolize_atfork_parent();
    rcl__lockdep_atfork_parent();
    rcl__domain_atfork_parent();
    rcl__thread_atfork_parent();
    rcl__reclaim_atfork_parent();
    rcl__shrinker_atfork_parent();
    objs_parent();
    rcl__pressure_atfork_parent();
    rcl__init_atfork_parent();
}

static void fork_child(void)
{
    rcl__resv_atfork_child();
    rcl__region_atfork_child();
    rcl__slab_atfork_child();
    rcl__depot_atfork_child();
    rcl__report_atfork_child();
    rcl__symbolize_atfork_child();
    rcl__lockdep_atfork_child();
    rcl__domain_atfork_child();
    rcl__thread_atfork_child();
    rcl__footprint_atfork_child();
    rcl__reclaim_atfork_child();
    rcl__shrinker_atfork_child();
    objs_child();
    rcl__init_atfork_child(rcl__pressure_atfork_child());
}

static void register_handlers(void)
{
    /* Failure (ENOMEM) leaves fork as unsafe as it was before this file
     * existed; there is nobody to return an error to. Say so. */
    if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
        rcl__report("cannot register the fork handlers: a child forked while another "
                    "thread is inside the library may hang");
}

void rcl__fork_register(void)
{
    pthread_once(&register_once, register_handlers);
}

void rcl__fork_track(struct rcl__fork_obj *o, pthread_mutex_t *lock,
                     void (*child)(struct rcl__fork_obj *o))
{
    rcl__fork_register();
    o->lock = lock;
    o->child = child;
    o->claimer = NULL;
    atomic_store_explicit(&o->holder, NULL, memory_order_relaxed);
    pthread_mutex_lock(&objs_lock);
    o->prev = objs.prev;
    o->next = &objs;
    objs.prev->next = o;
    objs.prev = o;
    pthread_mutex_unlock(&objs_lock);
}

/*
 * The list holds every live workqueue, mempool and LRU, so it is also
 * where a destroy learns that its handle is one. A second destroy, or a
 * pointer that never named an object, would otherwise write into freed
 * memory, which by then may be a block the program uses. Only the address
 * is compared until it is found in the list. Destroys are rare, and the
 * walk is what fork() already pays for each object.
 */
bool rcl__fork_claim(struct rcl__fork_obj *o)
{
    bool ours = false;

    pthread_mutex_lock(&objs_lock);
    for (struct rcl__fork_obj *it = objs.next; it != &objs; it = it->next) {
        if (it == o) {
            ours = !o->claimer;
            if (ours)
                o->claimer = &rcl__self;
            break;
        }
    }
    pthread_mutex_unlock(&objs_lock);
    return ours;
}

void rcl__fork_unclaim(struct rcl__fork_obj *o)
{
    pthread_mutex_lock(&objs_lock);
    rcl__assert(o->claimer == &rcl__self);
    o->claimer = NULL;
    pthread_mutex_unlock(&objs_lock);
}

/*
 * For an object's child handler (objs_child() holds objs_lock): a destroy
 * another thread had under way at the fork has no thread in the child to
 * finish it, and the claim would refuse every destroy there as a second
 * one, the child's copy never freed. Whether the copy is whole enough to
 * destroy again depends on how far that destroy went, which only the
 * object's own handler can tell: it ends the claim where it is. Only
 * here, before the child has a thread of its own, is a claimer's address
 * compared: a later thread's state may lie where a gone one's did.
 */
bool rcl__fork_claimed_by_gone(const struct rcl__fork_obj *o)
{
    rcl__assert_held(&objs_lock);
    return o->claimer && o->claimer != &rcl__self;
}

void rcl__fork_unclaim_gone(struct rcl__fork_obj *o)
{
    rcl__assert(rcl__fork_claimed_by_gone(o));
    o->claimer = NULL;
}

void rcl__fork_untrack(struct rcl__fork_obj *o)
{
    if (!o->next)
        return;
    pthread_mutex_lock(&objs_lock);
    o->prev->next = o->next;
    o->next->prev = o->prev;
    pthread_mutex_unlock(&objs_lock);
    o->next = o->prev = NULL;
}
