/* SPDX-License-Identifier: MIT */
/*
 * thread.c - the thread registry: each thread's state (rcl__self, thread.h),
 * its registration at its first call in an epoch, its exit, and the list
 * of registered threads the accounting walks (their stocks) and the
 * statistics add up (their counters).
 *
 * A thread registers at its first slow path of an epoch (rcl__epoch
 * changes at every rcl_init()) and unregisters at exit, from a
 * thread-specific-data destructor: its signal stash and block cache are
 * given back, its stock returns to the budget (account.c) and its
 * counters are folded into the exited threads' totals. The destructor
 * runs in every round of the thread's destructors (thread_exit() says
 * why), and after the last it leaves the thread marked exited for good
 * (RCL__ORPHAN_EXITED), never to register again. Only the registry
 * lock guards the list and the links; what the state holds belongs to
 * the files that use it (the stock: account.c; the block cache:
 * block_cache.c; the signal stash: alloc_signal.c).
 */
#include "internal.h"
#include "block_cache.h"

#include <pthread.h>
#include <time.h>

__thread struct rcl_thread rcl__self RCL_TLS_IE = {
    .bc = (struct rcl_bcache_lists *)&rcl__bcache_none,
    .sig_orphan = 1,        /* a thread may never call the library */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcl_thread *registry;
/* Made by the library's first start (rcl__thread_key_make), before any
 * epoch: a thread registers only in one, so never without it. */
static pthread_key_t exit_key;
static bool exit_key_made;

void rcl__registry_lock(void) { pthread_mutex_lock(&registry_lock); }
void rcl__registry_unlock(void) { pthread_mutex_unlock(&registry_lock); }
struct rcl_thread *rcl__registry_first(void) { return registry; }
bool rcl__registry_held(void) { return rcl__mutex_held(&registry_lock); }

/* Its stock is already back in the budget, or the budget is gone. */
static void unlink_locked(struct rcl_thread *t)
{
    rcl__assert_held(&registry_lock);
    if (t->next)
        t->next->pprev = t->pprev;
    *t->pprev = t->next;
    t->next = NULL;
    t->pprev = NULL;
    unsigned long hits, frees;
    rcl__bcache_counts(t, &hits, &frees);
    rcl__count(exited_allocs, rd(t->nr_alloc) + hits);
    rcl__count(exited_frees, rd(t->nr_free) + frees);
    wr(t->nr_alloc, 0 - hits);      /* its lists keep counting from there */
    wr(t->nr_free, 0 - frees);
    rcl__stock_detach(t);
    t->hdr_tag = 0;
    wr(t->epoch, 0);
    /* Its next allocation registers it again (thread_attach) before its
     * cache, charged to the budget that is gone, serves one. */
    rcl__slow_path_ask(t);
}

/* The round this destructor is last called in. ThreadSanitizer's runtime
 * ends a thread's state in the C library's last round, in its own key's
 * destructor, which comes before this one; clang's then stops the process
 * at the next atomic access. Under it the thread is marked exited a round
 * early, and a call from the last round, which that runtime cannot serve
 * either, finds it so. */
#ifdef RCL_TSAN
#define LAST_ROUND (RCL__EXIT_ROUNDS - 1)
#else
#define LAST_ROUND RCL__EXIT_ROUNDS
#endif

/* Anything for an exit to give back: the thread is registered, or holds
 * what a shutdown that unregistered it left it (rcl__threads_detach_all). */
static bool exit_has_work(struct rcl_thread *t)
{
    return rd(t->epoch) || !rcl__bcache_off(t) || rd(t->watch.reserve) ||
           atomic_load(&t->sig_stash) || atomic_load(&t->sig_deferred);
}

static void thread_leave(struct rcl_thread *t)
{
    rcl__resv_leave(t);
    rcl__sig_exit(t);
    rcl__bcache_drain(t);
    /* Nothing refills the stash without an allocation, and a handler's
     * free goes elsewhere now: its stock is all it holds charged. */
    rcl__assert(!rd(t->sig_stash_bytes) && !atomic_load(&t->sig_deferred));
    pthread_mutex_lock(&registry_lock);
    if (rd(t->epoch)) {
        rcl__stock_return(t);
        unlink_locked(t);
    }
    pthread_mutex_unlock(&registry_lock);
    rcl__bcache_release(t);     /* out of the registry: nobody reads its lists */
}

/*
 * Called in each round of the thread's destructors, with its number in the
 * key's value (1 at the registration): another key's destructor may call
 * the library after this one and register the thread again, so each
 * round unregisters it and sets the key for the next. Past the last round
 * nothing would unregister it, and the registry would link TLS that the
 * C library reuses for its next thread: there the thread is marked exited
 * for good, and its later calls take the signal handlers' path
 * (alloc_signal.c: allocations declined, frees deferred to the process's
 * list) and never register it. A thread first registered inside its own
 * destructors counts from there and may reach the last round short of
 * RCL__EXIT_ROUNDS: a registration after its call there stays (docs/design.md).
 *
 * A round with nothing to give back takes no lock and frees nothing: the
 * thread's earlier rounds cost no more than before, and in the last the
 * sanitizers' runtimes have ended the thread's state already (their
 * key's destructor waits out the rounds as this one does, and comes
 * first), where a lock taken crashes them.
 */
static void thread_exit(void *arg)
{
    struct rcl_thread *t = &rcl__self;
    uintptr_t call = (uintptr_t)arg;
    bool last = call >= LAST_ROUND ||
                pthread_setspecific(exit_key, (void *)(call + 1)) != 0;

    unsigned b = rcl__busy_hold(t);
    if (exit_has_work(t))
        thread_leave(t);
    else
        atomic_store(&t->sig_orphan, 1);    /* as rcl__sig_exit() would */
    if (last) {
        atomic_store(&t->sig_orphan, RCL__ORPHAN_EXITED);
        b = RCL__BUSY_EXITED;
    }
    rcl__sig_exit_bad(t);
    rcl__busy_drop(t, b);
}

/* Cleared as the cancel unwinds, before the program's own cleanup
 * handlers run: only the program's code is left on the stack below. */
static void busy_cancelled(void *arg)
{
    rcl__asan_unwinding();
    rcl__busy_drop(arg, 0);
}

void rcl__busy_sleep_ns(long ns)
{
    struct timespec ts = { ns / 1000000000L, ns % 1000000000L };

    pthread_cleanup_push(busy_cancelled, &rcl__self);
    nanosleep(&ts, NULL);
    pthread_cleanup_pop(0);
}

/* Under the library's start lock (init.c); -errno if no key is left. */
int rcl__thread_key_make(void)
{
    if (exit_key_made)
        return 0;
    int err = pthread_key_create(&exit_key, thread_exit);
    if (err)
        return -err;
    exit_key_made = true;
    return 0;
}

bool rcl__thread_attach(struct rcl_thread *t)
{
    unsigned epoch = atomic_load_explicit(&rcl__epoch, memory_order_acquire);

    if (likely(rd(t->epoch) == epoch))
        return true;
    if (unlikely(rd(t->sig_orphan) == RCL__ORPHAN_EXITED))
        return false;
    rcl__assert(exit_key_made);
    rcl__lockdep_thread_attach();
    /* Set already when the thread registered before, in an earlier epoch
     * or round of its exit: its count of rounds goes on. Before its cache
     * maps its lists: no exit would give them back either. */
    if (!pthread_getspecific(exit_key) &&
        pthread_setspecific(exit_key, (void *)(uintptr_t)1) != 0)
        return false;       /* no exit would unregister it */
    /* The new stock starts empty, and its cache with it. */
    rcl__bcache_attach(t);
    pthread_mutex_lock(&registry_lock);
    rcl__stock_attach(t);
    t->hdr_tag = rcl__hdr_tag(epoch);
    t->next = registry;
    t->pprev = &registry;
    if (registry)
        registry->pprev = &t->next;
    registry = t;
    wr(t->epoch, epoch);
    pthread_mutex_unlock(&registry_lock);
    /* Registered first: a deferred block of this epoch is uncharged into
     * the new stock. */
    rcl__sig_forget(t);
    return true;
}

/* Shutdown: every thread forgotten (the budget goes with them). Other
 * threads' caches are theirs to empty (at their exit or next attach):
 * only the owner may touch its lists. */
void rcl__threads_detach_all(void)
{
    rcl__bcache_drain(&rcl__self);
    pthread_mutex_lock(&registry_lock);
    while (registry)
        unlink_locked(registry);
    pthread_mutex_unlock(&registry_lock);
}

void rcl__threads_sum(unsigned long *allocs, unsigned long *frees, size_t *cached)
{
    unsigned b = rcl__busy_hold(&rcl__self);
    pthread_mutex_lock(&registry_lock);
    unsigned long a = rd(rcl__stats.exited_allocs), f = rd(rcl__stats.exited_frees);
    size_t c = 0;
    for (struct rcl_thread *t = registry; t; t = t->next) {
        unsigned long hits, listed;
        rcl__bcache_counts(t, &hits, &listed);
        a += rd(t->nr_alloc) + hits;
        f += rd(t->nr_free) + listed;
        c += rcl__bcache_held(t);
    }
    pthread_mutex_unlock(&registry_lock);
    rcl__busy_drop(&rcl__self, b);
    *allocs = a;
    *frees = f;
    *cached = c;
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

void rcl__thread_atfork_prepare(void) { pthread_mutex_lock(&registry_lock); }
void rcl__thread_atfork_parent(void) { pthread_mutex_unlock(&registry_lock); }

/* The other threads are gone, and their TLS memory is glibc's to reuse for
 * the child's next threads: it is only read here, never written. Their
 * stocks go back to the budget, with the charge of what else they held
 * (their cached blocks, their signal stashes, the blocks their handlers
 * freed and they had not yet released: all leaked, since nobody in the
 * child can reach those lists), and only the forking thread stays
 * registered. */
void rcl__thread_atfork_child(void)
{
    struct rcl_thread *self = &rcl__self;

    for (struct rcl_thread *t = registry; t; t = t->next) {
        if (t == self)
            continue;
        rcl__stock_return(t);
        unsigned long hits, frees, deferred;
        rcl__bcache_counts(t, &hits, &frees);
        rcl__sig_deferred_charge(t, &deferred);
        rcl__count(exited_allocs, rd(t->nr_alloc) + hits + rd(t->sig_allocs));
        rcl__count(exited_frees, rd(t->nr_free) + frees + deferred);
    }
    if (rd(self->epoch)) {
        self->next = NULL;
        self->pprev = &registry;
        registry = self;
    } else {
        registry = NULL;
    }
    pthread_mutex_unlock(&registry_lock);
}
