/* SPDX-License-Identifier: MIT */
/*
 * mempool.c - pools that keep elements in reserve so that a path which must
 * make progress (write-back, an I/O daemon's request handling) always can.
 *
 * The allocation order is the kernel's mempool_alloc() (mm/mempool.c):
 *
 *   1. the backing allocator with the light flags: no direct reclaim, no I/O,
 *      never the budget's reserve (NOMEMALLOC), one try (NORETRY), quietly;
 *   2. an element from the pool's own reserve;
 *   3. the backing allocator once more, now allowed to reclaim;
 *   4. only if the caller may sleep: wait for an element to be returned,
 *      with a bound, and start over.
 *
 * The reserve is taken last-but-one on purpose: elements are for when the
 * allocator cannot help, and a pool that handed them out first would run
 * dry during ordinary load and have nothing left when memory is short.
 * NOMEMALLOC keeps the pool from eating the budget's reserve as well: the
 * pool *is* this path's reserve, and the budget's belongs to reclaim.
 *
 * Locking: pool->lock protects elements[], curr_nr, min_nr, cap and the
 * list of waiters, and is the mutex the waiters sleep on. curr_nr and
 * min_nr are also read without the lock by rcl_mempool_free() as a hint
 * (the kernel's READ_ONCE), always re-checked under the lock before
 * acting on it. No lock of the pool is
 * held across the program's code - its backing allocator and free, or the
 * reclaim an allocation runs, whose shrinkers may resize this very pool:
 * a resize allocates first and changes the pool in one critical section.
 *
 * Lifetime: the pool is freed by whoever leaves it last once it is dying -
 * the destroy, the last element returned, or the last thread that was
 * waiting in an allocation (see state below). A waiter is counted from its
 * first wait until its call is done with the pool, retries after a timeout
 * included, so that a destroy cannot free the pool under a thread it did
 * not wake.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* How long a blocked allocation sleeps before trying the allocator again
 * (the kernel's io_schedule_timeout(5*HZ)): an element is normally handed
 * over by a wake-up; the bound covers memory freed elsewhere, which wakes
 * nobody. */
#define MEMPOOL_WAIT_NS (5ull * 1000000000ull)

/* state: elements handed out and not yet returned (POOL_OUT), threads
 * inside an allocation's wait (POOL_WAITERS), and the DYING bit once
 * rcl_mempool_destroy() has been called. One word, so that of "the last
 * element came back", "the last waiter left" and "destroy was called"
 * exactly one sees itself come last, and frees the pool. A waiter is a
 * thread, and Linux has at most 2^22 of them (PID_MAX_LIMIT): 24 bits
 * hold every one, the destroy's own count (rcl_mempool_destroy) besides. */
#define POOL_DYING   (UINT64_C(1) << 63)
#define POOL_WAITER  (UINT64_C(1) << 39)
#define POOL_WAITERS (POOL_DYING - POOL_WAITER)
#define POOL_OUT     (POOL_WAITER - 1)

/* A thread counted in POOL_WAITERS by an allocation, on that thread's
 * stack, listed in its pool under pool->lock: a child of fork() keeps the
 * count of the thread that forked, which goes on there in its call (a
 * backing allocator that forks), and forgets the others'. */
struct pool_waiter {
    struct pool_waiter *next;
    pthread_t           thread;
    struct rcl_mempool *pool;
};

struct rcl_mempool {
    pthread_mutex_t   lock;
    pthread_cond_t    wait;         /* an element was returned to the reserve */
    _Atomic unsigned  curr_nr;      /* elements in the reserve */
    _Atomic unsigned  min_nr;       /* elements the reserve is refilled up to */
    unsigned          cap;          /* size of elements[]; >= max(min_nr, 1) */
    void            **elements;     /* a stack: [0, curr_nr) are valid */

    void *(*alloc)(rcl_gfp_t gfp, void *data);
    void  (*free)(void *elem, void *data);
    void             *data;
    size_t            elem_size;    /* rcl_mempool_create() pools */

    _Atomic uint64_t  state;        /* POOL_OUT | POOL_WAITERS | POOL_DYING */
    struct pool_waiter *waiters;    /* the allocations POOL_WAITERS counts */
    struct rcl__fork_obj fork;      /* pool->lock is taken around fork() */
};

static void pool_atfork_child(struct rcl__fork_obj *o);

/* ------------------------------------------------------------------------ */
/* The default backing allocator: the budget's own                           */
/* ------------------------------------------------------------------------ */

/*
 * Each element of a budget-backed pool starts ELEM_TAG bytes into its
 * block, after a tag naming the pool, so that rcl_mempool_free() to the
 * wrong pool is caught (pool_owns) instead of handing a 16-byte element
 * out later as a 4096-byte one. 16 bytes keep the element 16-aligned.
 * Pools with their own alloc/free have nowhere to keep a tag: unchecked.
 */
#define ELEM_TAG     16
#define ELEM_TAG_KEY ((uintptr_t)0x5a17c0de6d706f6fULL)

static void *budget_alloc(rcl_gfp_t gfp, void *data)
{
    const struct rcl_mempool *pool = data;
    rcl__assert(pool->elem_size <= PTRDIFF_MAX - ELEM_TAG);
    uintptr_t *tag = rcl_alloc(pool->elem_size + ELEM_TAG, gfp);
    if (!tag)
        return NULL;
    tag[0] = (uintptr_t)pool;
    tag[1] = (uintptr_t)pool ^ ELEM_TAG_KEY;
    return (char *)tag + ELEM_TAG;
}

static uintptr_t *elem_tag(const void *elem)
{
    return (uintptr_t *)(uintptr_t)((const char *)elem - ELEM_TAG);
}

static void budget_free(void *elem, void *data)
{
    uintptr_t *tag = elem_tag(elem);
    (void)data;
    tag[1] = 0;             /* a stale free now names no pool */
    rcl_free(tag);
}

/*
 * Where an element returned to the pool is. An element of a budget-backed
 * pool says so in its tag: its second word flips a bit while the element
 * sits in the reserve, so that a second free of it is refused at once
 * instead of giving the reserve (or the backend) one element twice.
 * Elements of a pool with its own alloc/free carry nothing: a second free
 * is caught only as it would enter the reserve (elem_reserved()).
 */
enum elem_where { ELEM_OUT, ELEM_RESERVED, ELEM_FOREIGN };
#define ELEM_TAG_RESERVED ((uintptr_t)1)

static enum elem_where elem_where(const struct rcl_mempool *pool, const void *elem)
{
    if (pool->alloc != budget_alloc)
        return ELEM_OUT;
    const uintptr_t *tag = elem_tag(elem);
    uintptr_t key = (uintptr_t)pool ^ ELEM_TAG_KEY;
    if (tag[0] != (uintptr_t)pool)
        return ELEM_FOREIGN;
    if (tag[1] == key)
        return ELEM_OUT;
    return tag[1] == (key ^ ELEM_TAG_RESERVED) ? ELEM_RESERVED : ELEM_FOREIGN;
}

static void elem_mark(const struct rcl_mempool *pool, void *elem, bool reserved)
{
    if (pool->alloc == budget_alloc)
        elem_tag(elem)[1] = (uintptr_t)pool ^ ELEM_TAG_KEY ^
                            (reserved ? ELEM_TAG_RESERVED : 0);
}

/* ------------------------------------------------------------------------ */
/* The reserve (pool->lock held)                                             */
/* ------------------------------------------------------------------------ */

/* The reserve only ever fills up to min_nr (one element for a min_nr 0
 * pool), and so always fits elements[]. */
static void add_element(struct rcl_mempool *pool, void *elem)
{
    unsigned n = rd(pool->curr_nr);
    rcl__assert_held(&pool->lock);
    rcl__assert(n < rd(pool->min_nr) || (n == 0 && rd(pool->min_nr) == 0));
    rcl__assert(n < pool->cap);
    elem_mark(pool, elem, true);
    pool->elements[n] = elem;
    wr(pool->curr_nr, n + 1);
}

static void *remove_element(struct rcl_mempool *pool)
{
    rcl__assert_held(&pool->lock);
    rcl__assert(rd(pool->curr_nr) > 0 && rd(pool->curr_nr) <= pool->cap);
    unsigned n = rd(pool->curr_nr) - 1;
    wr(pool->curr_nr, n);
    elem_mark(pool, pool->elements[n], false);
    return pool->elements[n];
}

/* Whether elem is in the reserve already: a second free of it. A pool
 * with its own alloc/free has only the reserve to look through, which
 * holds at most min_nr elements and is looked through only by a free
 * that would add to it. */
static bool elem_reserved(struct rcl_mempool *pool, const void *elem)
{
    rcl__assert_held(&pool->lock);
    if (pool->alloc == budget_alloc)
        return elem_where(pool, elem) == ELEM_RESERVED;
    for (unsigned i = 0; i < rd(pool->curr_nr); i++)
        if (pool->elements[i] == elem)
            return true;
    return false;
}

/* Whether a returned element belongs in the reserve. A pool with min_nr 0
 * still keeps one element while its reserve is empty: a caller may be
 * waiting for exactly that element, and nothing else would wake it. */
static bool reserve_wants(const struct rcl_mempool *pool)
{
    unsigned curr = rd(pool->curr_nr), min = rd(pool->min_nr);
    return curr < min || (min == 0 && curr == 0);
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

static void pool_free_struct(struct rcl_mempool *pool)
{
    rcl__fork_untrack(&pool->fork);
    pthread_cond_destroy(&pool->wait);
    pthread_mutex_destroy(&pool->lock);
    rcl_free(pool->elements);
    rcl_free(pool);
}

/* Each element leaves the reserve before its backing free is called: one
 * whose free ends the thread is never freed twice. */
static void pool_drain(struct rcl_mempool *pool)
{
    while (rd(pool->curr_nr)) {
        /* Nobody else can hold the lock now: taken for remove_element's
         * sake, never held across the backing free. */
        pthread_mutex_lock(&pool->lock);
        void *elem = remove_element(pool);
        pthread_mutex_unlock(&pool->lock);
        pool->free(elem, pool->data);
    }
}

/* The backing free is the program's: a thread that ends in it (in a
 * destroy, or in whatever call left the pool last) still frees the rest
 * of the reserve and the pool, which nobody else would. */
static void finish_unwound(void *pool)
{
    rcl__asan_unwinding();
    pool_drain(pool);
    pool_free_struct(pool);
}

/* Frees the reserve and the pool; nobody else may hold the pool now. */
static void pool_finish(struct rcl_mempool *pool)
{
    pthread_cleanup_push(finish_unwound, pool);
    pool_drain(pool);
    pthread_cleanup_pop(0);
    pool_free_struct(pool);
}

/* The reserve is filled with RCL_DEFAULT, as the kernel's mempool_init()
 * and mempool_resize() use GFP_KERNEL, narrowed by the thread's scope as
 * every allocation of the pool is: an ops pool's allocator takes the flags
 * it is given as what it may do, and would otherwise recurse into FS or
 * I/O from a NOFS or NOIO scope, or sleep in a NOWAIT one. */
static rcl_gfp_t fill_gfp(void)
{
    return rcl_current_gfp(RCL_DEFAULT) | RCL__NOWARN;
}

/* Fill the reserve, allowed to reclaim where the scope allows: a pool
 * that cannot be filled when it is made would not be one. */
static bool fill_loop(struct rcl_mempool *pool, unsigned min_nr)
{
    rcl_gfp_t gfp = fill_gfp();

    while (rd(pool->curr_nr) < min_nr) {
        void *elem = pool->alloc(gfp, pool->data);
        if (!elem)
            return false;
        /* fork() may already take the lock (the pool is tracked). */
        pthread_mutex_lock(&pool->lock);
        add_element(pool, elem);
        pthread_mutex_unlock(&pool->lock);
    }
    return true;
}

/* The allocator is the program's: a thread that ends in it (pthread_exit(),
 * or a cancel at a cancellation point inside it) leaves no pool behind,
 * as a failed fill does not, and nobody else knows of the pool yet. */
static void fill_unwound(void *pool)
{
    rcl__asan_unwinding();
    pool_finish(pool);
}

static bool pool_fill(struct rcl_mempool *pool, unsigned min_nr)
{
    bool ok;

    pthread_cleanup_push(fill_unwound, pool);
    ok = fill_loop(pool, min_nr);
    pthread_cleanup_pop(0);
    return ok;
}

/* The array's allocation may reclaim, and a shrinker it runs may end the
 * thread (pthread_exit()): the pool's struct, nobody else's yet, goes
 * with it. */
static void new_unwound(void *pool)
{
    rcl__asan_unwinding();
    rcl_free(pool);
}

static void **pool_new_array(struct rcl_mempool *pool)
{
    void **elements;

    pthread_cleanup_push(new_unwound, pool);
    elements = rcl_calloc(pool->cap, sizeof(void *), RCL_DEFAULT | RCL__NOWARN);
    pthread_cleanup_pop(0);
    return elements;
}

static struct rcl_mempool *pool_new(unsigned min_nr,
        void *(*alloc)(rcl_gfp_t gfp, void *data), void (*free_fn)(void *elem, void *data),
        void *data, size_t elem_size)
{
    struct rcl_mempool *pool = rcl_calloc(1, sizeof(*pool), RCL_DEFAULT | RCL__NOWARN);
    if (!pool)
        goto nomem;
    pool->cap = min_nr ? min_nr : 1;
    pool->elements = pool_new_array(pool);
    if (!pool->elements) {
        rcl_free(pool);
        goto nomem;
    }
    pthread_mutex_init(&pool->lock, NULL);
    rcl__cond_init_monotonic(&pool->wait);
    rcl__fork_track(&pool->fork, &pool->lock, pool_atfork_child);
    pool->alloc = alloc ? alloc : budget_alloc;
    pool->free = free_fn ? free_fn : budget_free;
    pool->data = alloc ? data : pool;
    pool->elem_size = elem_size;
    wr(pool->min_nr, min_nr);

    if (!pool_fill(pool, min_nr)) {
        pool_finish(pool);
        goto nomem;
    }
    return pool;

nomem:
    errno = ENOMEM;
    return NULL;
}

struct rcl_mempool *rcl_mempool_create(unsigned min_nr, size_t elem_size)
{
    /* An element no block can hold, its tag included, would never be
     * allocated: with min_nr 0 the pool would be made all the same, and
     * a blocking allocation would wait forever for an element. */
    if (elem_size == 0 || elem_size > PTRDIFF_MAX - ELEM_TAG) {
        rcl__report("rcl_mempool_create(%u, %zu): no block can hold an element of that "
                    "size; no pool made", min_nr, elem_size);
        errno = EINVAL;
        return NULL;
    }
    return pool_new(min_nr, NULL, NULL, NULL, elem_size);
}

struct rcl_mempool *rcl_mempool_create_ops(unsigned min_nr,
        void *(*alloc)(rcl_gfp_t gfp, void *data), void (*free_fn)(void *elem, void *data),
        void *data)
{
    if (!alloc || !free_fn) {
        rcl__report("rcl_mempool_create_ops(%u): NULL %s; no pool made", min_nr,
                    alloc ? "free" : "alloc");
        errno = EINVAL;
        return NULL;
    }
    return pool_new(min_nr, alloc, free_fn, data, 0);
}

/* Elements leave the pool (to the caller). */
static void pool_get(struct rcl_mempool *pool, unsigned n)
{
    atomic_fetch_add_explicit(&pool->state, n, memory_order_relaxed);
}

/* Whether an element can be out at all. An element the caller holds was
 * counted before it was handed over, so a free that finds none out is one
 * too many; against frees racing with it, pool_put() checks again. */
static bool pool_has_out(const struct rcl_mempool *pool)
{
    return rd(pool->state) & POOL_OUT;
}

/* An element came back. The pool must not be touched after this unless we
 * are the one who finishes it. */
static void pool_put(struct rcl_mempool *pool)
{
    uint64_t old = atomic_fetch_sub_explicit(&pool->state, 1, memory_order_acq_rel);
    if (unlikely((old & POOL_OUT) == 0)) {
        atomic_fetch_add_explicit(&pool->state, 1, memory_order_relaxed);
        rcl__report("rcl_mempool_free(%p): more elements freed than allocated",
                    (void *)pool);
        return;
    }
    if (unlikely(old == (POOL_DYING | 1)))
        pool_finish(pool);
}

/* A thread is about to wait in an allocation: the pool stays until it
 * leaves. pool->lock held. */
static void pool_enter(struct rcl_mempool *pool, struct pool_waiter *w)
{
    rcl__assert_held(&pool->lock);
    w->pool = pool;
    w->thread = pthread_self();
    w->next = pool->waiters;
    pool->waiters = w;
    atomic_fetch_add_explicit(&pool->state, POOL_WAITER, memory_order_relaxed);
}

static void pool_unlist(struct rcl_mempool *pool, struct pool_waiter *w)
{
    pthread_mutex_lock(&pool->lock);
    for (struct pool_waiter **pp = &pool->waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&pool->lock);
}

/* It leaves (w NULL: the destroy, which has no record). As after
 * pool_put(), the pool must not be touched after this unless we are the
 * one who finishes it. */
static void pool_leave(struct rcl_mempool *pool, struct pool_waiter *w)
{
    if (w)
        pool_unlist(pool, w);
    uint64_t old = atomic_fetch_sub_explicit(&pool->state, POOL_WAITER, memory_order_acq_rel);
    rcl__assert(old & POOL_WAITERS);
    if (unlikely(old == (POOL_DYING | POOL_WAITER)))
        pool_finish(pool);
}

/* For a waiter cancelled in its wait, or in the backing allocator between
 * two waits. */
static void pool_leave_cleanup(void *arg)
{
    struct pool_waiter *w = arg;

    pool_leave(w->pool, w);
}

static bool pool_dying(const struct rcl_mempool *pool)
{
    return rd(pool->state) & POOL_DYING;
}

/* A call refused, or a wait cut short, because the pool is being
 * destroyed. */
static void dying_report(const char *fn, const struct rcl_mempool *pool)
{
    rcl__report("%s(%p): the pool is being destroyed", fn, (void *)pool);
}

/* Freeing the pool under the elements' owners would turn their
 * rcl_mempool_free() into a use after free, and under a waiter its wake-up
 * into one: the last of them to leave finishes the destruction instead
 * (pool_put, pool_leave). */
static void destroy_report(const struct rcl_mempool *pool, uint64_t old)
{
    unsigned long long out = old & POOL_OUT;
    unsigned long long waiters = (old & POOL_WAITERS) / POOL_WAITER;

    if (waiters)
        rcl__report("rcl_mempool_destroy(%p): %llu thread(s) still waiting to allocate, "
                    "woken to fail (ESHUTDOWN), and %llu element(s) still allocated; "
                    "the pool is freed when the last waiter has left and the last "
                    "element is returned", (void *)pool, waiters, out);
    else if (out)
        rcl__report("rcl_mempool_destroy(%p): %llu element(s) still allocated; "
                    "the pool is freed when the last is returned", (void *)pool, out);
}

void rcl_mempool_destroy(struct rcl_mempool *pool)
{
    if (!pool)
        return;
    if (!rcl__fork_claim(&pool->fork)) {
        rcl__report("rcl_mempool_destroy(%p): not a live pool (destroyed already, "
                    "or never created); left alone", (void *)pool);
        errno = EINVAL;
        return;
    }
    /* Counted as a waiter itself while it wakes the others, so that the
     * last of them to leave cannot free the pool under the wake-up. */
    uint64_t old = atomic_fetch_add(&pool->state, POOL_DYING + POOL_WAITER);
    rcl__assert(!(old & POOL_DYING));
    /* A waiter tests DYING under the lock before it sleeps: it saw the bit,
     * or it is asleep by the time the lock is ours and this wakes it. */
    pthread_mutex_lock(&pool->lock);
    pthread_cond_broadcast(&pool->wait);
    pthread_mutex_unlock(&pool->lock);
    pool_leave(pool, NULL);
    /* Made once the destroy is done, from what it found then (the pool may
     * be gone: only its address is named): a report function that ends
     * its thread ended it with the waiters asleep and the destroy counted
     * as one of them, the pool never freed. */
    destroy_report(pool, old);
}

unsigned rcl__mempool_waiters(struct rcl_mempool *pool)
{
    return (unsigned)((rd(pool->state) & POOL_WAITERS) / POOL_WAITER);
}

/* ------------------------------------------------------------------------ */
/* Allocation                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Steps 1 to 3, from gfp_temp (the light flags; the full ones after a
 * wait, as in the kernel) to gfp_mask: an element, or NULL with the
 * reserve empty and pool->lock still held, so that the caller can register
 * as a waiter before an element returned meanwhile could miss it.
 */
static void *alloc_try(struct rcl_mempool *pool, rcl_gfp_t gfp_temp, rcl_gfp_t gfp_mask)
{
    for (;;) {
        void *elem = pool->alloc(gfp_temp, pool->data);
        if (likely(elem))
            return elem;

        pthread_mutex_lock(&pool->lock);
        if (likely(rd(pool->curr_nr))) {
            elem = remove_element(pool);
            pthread_mutex_unlock(&pool->lock);
            rcl__count(mempool_reserve_hits, 1);
            return elem;
        }

        /* Reserve empty: one more try at the allocator, now with the
         * caller's full flags, before anyone sleeps. */
        if (gfp_temp == gfp_mask)
            return NULL;
        pthread_mutex_unlock(&pool->lock);
        gfp_temp = gfp_mask;
    }
}

/* Sleeps (bounded) for an element to be returned, entered with pool->lock
 * held, which it drops. false: the pool is being destroyed; tested before
 * the sleep too, since the destroy's wake-up may have come while this
 * thread was trying the allocator. */
static bool wait_for_element(struct rcl_mempool *pool)
{
    struct timespec deadline;

    rcl__assert_held(&pool->lock);
    bool dying = pool_dying(pool);
    if (!dying) {
        /* Registered as a waiter before the lock is dropped (the wait
         * releases it atomically): an element returned from now on finds
         * us on the condition variable, so its wake-up cannot be lost. */
        deadline = rcl__deadline_after_ns(MEMPOOL_WAIT_NS);
        /* The wait stays cancellable; a cancelled waiter must not leave
         * the pool locked (it has taken nothing yet). */
        pthread_cleanup_push(rcl__unlock_cleanup, &pool->lock);
        pthread_cond_timedwait(&pool->wait, &pool->lock, &deadline);
        pthread_cleanup_pop(0);
        dying = pool_dying(pool);
    }
    pthread_mutex_unlock(&pool->lock);
    return !dying;
}

/* Step 4 and the kernel's start over, with the full flags, until an
 * element is had; NULL: the pool is being destroyed. */
static void *alloc_retry(struct rcl_mempool *pool, rcl_gfp_t gfp_mask)
{
    while (wait_for_element(pool)) {
        void *elem = alloc_try(pool, gfp_mask, gfp_mask);
        if (elem) {
            pool_get(pool, 1);      /* before we leave: it keeps the pool */
            return elem;
        }
    }
    return NULL;
}

/* Entered with pool->lock held (alloc_try's NULL). Counted in the pool
 * from the first wait until the call is done with it, timeouts and the
 * retries after them included, so that a destroy meanwhile wakes it and
 * leaves the pool to the last one out. */
static void *alloc_wait(struct rcl_mempool *pool, rcl_gfp_t gfp_mask)
{
    struct pool_waiter w;
    void *elem;

    pool_enter(pool, &w);
    pthread_cleanup_push(pool_leave_cleanup, &w);
    elem = alloc_retry(pool, gfp_mask);
    pthread_cleanup_pop(0);
    pool_leave(pool, &w);
    /* Made once out of the pool, which may be gone (only its address is
     * named): a report function that ends its thread would otherwise
     * leave this waiter counted for good, and the pool never freed. */
    if (!elem) {
        dying_report("rcl_mempool_alloc", pool);
        errno = ESHUTDOWN;
    }
    return elem;
}

/* The contradiction rcl_alloc() refuses: dropping NOFAIL would hand the
 * caller, who will not look for it, a NULL from an empty reserve. Judged on
 * the call's own flags, as rcl_alloc() judges it: a scope an outer caller
 * opened is no contradiction of this call's. */
static __attribute__((noinline, cold)) void *nofail_nowait(const struct rcl_mempool *pool,
                                                           rcl_gfp_t gfp)
{
    char flags[128];

    if (!(gfp & RCL__NOWARN))
        rcl__report("rcl_mempool_alloc(%p, %s): NOFAIL needs DIRECT_RECLAIM (it must be "
                    "able to wait); refused", (const void *)pool,
                    rcl__gfp_str(gfp, flags, sizeof(flags)));
    errno = EINVAL;
    return NULL;
}

void *rcl_mempool_alloc(struct rcl_mempool *pool, rcl_gfp_t gfp)
{
    if (!pool) {
        /* The call takes flags: NOWARN keeps its report back, as it does
         * every call's that takes them. */
        if (!(gfp & RCL__NOWARN))
            rcl__report("rcl_mempool_alloc: NULL pool");
        errno = EINVAL;
        return NULL;
    }
    if (unlikely(pool_dying(pool))) {
        dying_report("rcl_mempool_alloc", pool);
        errno = ESHUTDOWN;
        return NULL;
    }
    gfp = rcl__gfp_known("rcl_mempool_alloc", gfp);
    if (unlikely(rcl__gfp_nofail_nowait(gfp)))
        return nofail_nowait(pool, gfp);

    /* The scope decides whether we may sleep (a NOWAIT scope forbids it);
     * the backing allocator applies the rest of the mask itself. */
    gfp = rcl_current_gfp(gfp);
    if (gfp & RCL__DIRECT_RECLAIM)
        rcl_might_alloc(gfp);

    /* The pool never fails a sleeping caller, so NOFAIL has nothing to add
     * and would only make the backing allocator hang instead of falling
     * back to the reserve. ZERO cannot be honoured for reserve elements
     * (as in the kernel, which warns): callers initialise what they get. */
    rcl_gfp_t gfp_mask = (gfp | RCL__NOMEMALLOC | RCL__NORETRY | RCL__NOWARN)
                         & ~(RCL__NOFAIL | RCL__ZERO);
    rcl_gfp_t gfp_temp = gfp_mask & ~(RCL__DIRECT_RECLAIM | RCL__IO);

    void *elem = alloc_try(pool, gfp_temp, gfp_mask);
    if (likely(elem)) {
        pool_get(pool, 1);
        return elem;
    }
    if (!(gfp_mask & RCL__DIRECT_RECLAIM)) {
        pthread_mutex_unlock(&pool->lock);
        errno = ENOMEM;
        return NULL;
    }
    return alloc_wait(pool, gfp_mask);
}

static void freed_twice(const struct rcl_mempool *pool, const void *elem)
{
    rcl__report("rcl_mempool_free(%p, %p): the element is in the pool's reserve "
                "already (freed twice); left alone", elem, (void *)pool);
}

/*
 * The backing free is the program's: a thread that ends in it
 * (pthread_exit(), or a cancel at a cancellation point inside it) has
 * given the element back all the same, and the pool counts it so, or a
 * destroy would wait for it for ever. So are the elements a bulk free had
 * still to return (rest): the pool's since the call, and nobody else's
 * to free now. They go first, while the element in hand still keeps the
 * pool. The handler's setjmp is paid here only, out of line: a free into
 * the reserve calls nothing of the program's and needs none.
 */
struct free_state {
    struct rcl_mempool *pool;
    void              **rest;
    unsigned            nrest;
};

static void free_unwound(void *arg)
{
    struct free_state *fs = arg;

    rcl__asan_unwinding();
    for (unsigned i = 0; i < fs->nrest; i++)
        rcl_mempool_free(fs->rest[i], fs->pool);
    pool_put(fs->pool);
}

static __attribute__((noinline)) void free_to_backing(struct rcl_mempool *pool, void *elem,
                                                      void **rest, unsigned nrest)
{
    struct free_state fs = { pool, rest, nrest };

    pthread_cleanup_push(free_unwound, &fs);
    pool->free(elem, pool->data);
    pthread_cleanup_pop(0);
    pool_put(pool);
}

static inline __attribute__((always_inline)) void free_one(void *elem, struct rcl_mempool *pool,
                                                           void **rest, unsigned nrest)
{
    if (!elem)
        return;
    if (!pool) {
        rcl__report("rcl_mempool_free(%p): NULL pool; element not freed", elem);
        return;
    }
    switch (elem_where(pool, elem)) {
    case ELEM_OUT:
        break;
    case ELEM_RESERVED:
        freed_twice(pool, elem);
        return;
    case ELEM_FOREIGN:
        rcl__report("rcl_mempool_free(%p, %p): the element is not from this pool; "
                    "not freed", elem, (void *)pool);
        return;
    }
    /* Refused before the element reaches the reserve or the backing free:
     * an ops pool cannot tell a stray, or an element the backing free has
     * had already, from its own. */
    if (unlikely(!pool_has_out(pool))) {
        rcl__report("rcl_mempool_free(%p, %p): more elements freed than allocated; "
                    "left alone", elem, (void *)pool);
        return;
    }

    /* The unlocked test is only a hint, as in the kernel: a pool that is
     * full most of the time pays no lock for a free. It may miss a slot
     * that is opening at this very moment; the next free fills it. */
    if (unlikely(reserve_wants(pool))) {
        pthread_mutex_lock(&pool->lock);
        if (unlikely(elem_reserved(pool, elem))) {
            pthread_mutex_unlock(&pool->lock);
            freed_twice(pool, elem);
            return;
        }
        if (likely(reserve_wants(pool))) {
            add_element(pool, elem);
            /* Everyone: a woken waiter first retries the allocator and
             * may leave the element to another (as the kernel's wake_up
             * wakes every non-exclusive waiter). */
            pthread_cond_broadcast(&pool->wait);
            pthread_mutex_unlock(&pool->lock);
            pool_put(pool);
            return;
        }
        pthread_mutex_unlock(&pool->lock);
    }
    free_to_backing(pool, elem, rest, nrest);
}

void rcl_mempool_free(void *elem, struct rcl_mempool *pool)
{
    free_one(elem, pool, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Bulk allocation: all or nothing                                           */
/* ------------------------------------------------------------------------ */

/*
 * Why a bulk call: threads that each need k elements and take them one
 * rcl_mempool_alloc() at a time can each hold part of the reserve while
 * waiting for the rest, and then none ever gets k. The bulk call takes its
 * elements from the reserve only when the reserve has every one it still
 * needs, in one critical section, and before it waits it gives back all it
 * holds; so whoever waits holds nothing, and whoever holds is not waiting.
 */

/*
 * What a bulk allocation holds across the backing allocator's and free's
 * calls. It lives in the frame of rcl_mempool_alloc_bulk(), which pushes
 * the one handler for the whole call: a thread that ends inside a call
 * (pthread_exit(), or a cancel at a cancellation point inside it) gives
 * back what it holds, as a failed attempt does, and leaves the waiters.
 * elems[0..got) are held and not yet the caller's: they never left the
 * pool's count. What changes after the handler's setjmp is volatile, for
 * the reason struct resize_state's is.
 */
struct bulk_state {
    struct rcl_mempool *pool;
    void              **elems;
    volatile unsigned   got;
    volatile bool       waiting;    /* counted in the pool (pool_enter) */
    struct pool_waiter  waiter;
};

/* Fills elems[got..n) from the backing allocator; stops at its first
 * failure. */
static void bulk_from_allocator(struct bulk_state *st, unsigned n, rcl_gfp_t gfp)
{
    struct rcl_mempool *pool = st->pool;

    while (st->got < n) {
        void *elem = pool->alloc(gfp, pool->data);
        if (!elem)
            break;
        st->elems[st->got] = elem;
        st->got++;
    }
}

/* The rest from the reserve, only if it has all of them. */
static bool bulk_from_reserve(struct bulk_state *st, unsigned n)
{
    struct rcl_mempool *pool = st->pool;
    unsigned missing = n - st->got;
    bool ok = false;

    pthread_mutex_lock(&pool->lock);
    if (rd(pool->curr_nr) >= missing) {
        while (st->got < n) {
            st->elems[st->got] = remove_element(pool);
            st->got++;
        }
        ok = true;
    }
    pthread_mutex_unlock(&pool->lock);
    /* A hit an element, as the single allocation counts them. */
    if (ok && missing)
        rcl__count(mempool_reserve_hits, missing);
    return ok;
}

/* Elements a failed attempt holds, which never left the pool's count:
 * into the reserve while it wants them (waking waiters), the rest to the
 * backing allocator. Each is handed over before its call: one whose free
 * ends the thread is the program's, never given back twice. */
static void bulk_give_back(struct bulk_state *st)
{
    struct rcl_mempool *pool = st->pool;

    while (st->got) {
        unsigned i = st->got - 1;
        st->got = i;
        pthread_mutex_lock(&pool->lock);
        if (reserve_wants(pool)) {
            add_element(pool, st->elems[i]);
            pthread_cond_broadcast(&pool->wait);
            pthread_mutex_unlock(&pool->lock);
            continue;
        }
        pthread_mutex_unlock(&pool->lock);
        pool->free(st->elems[i], pool->data);
    }
}

static void bulk_unwound(void *arg)
{
    struct bulk_state *st = arg;

    rcl__asan_unwinding();
    bulk_give_back(st);
    if (st->waiting)
        pool_leave(st->pool, &st->waiter);
}

/* One attempt in the single allocation's order: light allocator, reserve,
 * allocator with the full flags, reserve. Whether elems[0..n) hold the
 * elements; if not, nothing is held. */
static bool bulk_try(struct bulk_state *st, unsigned n, rcl_gfp_t gfp_light, rcl_gfp_t gfp_full)
{
    rcl__assert(st->got == 0);
    bulk_from_allocator(st, n, gfp_light);
    if (st->got == n || bulk_from_reserve(st, n))
        return true;
    bulk_from_allocator(st, n, gfp_full);
    if (st->got == n || bulk_from_reserve(st, n))
        return true;
    bulk_give_back(st);
    return false;
}

/* Sleeps (bounded) unless the reserve already has n, entered with
 * pool->lock held, which it drops; registered as a waiter under the lock,
 * so a return in between is not missed. 0, or why the call ends: the pool
 * is being destroyed (see wait_for_element), or was resized below n. */
static int bulk_wait(struct rcl_mempool *pool, unsigned n)
{
    struct timespec deadline;
    int err;

    rcl__assert_held(&pool->lock);
    deadline = rcl__deadline_after_ns(MEMPOOL_WAIT_NS);
    /* The wait stays cancellable; a cancelled waiter holds no element
     * (all were given back before it waited), only the lock. */
    pthread_cleanup_push(rcl__unlock_cleanup, &pool->lock);
    if (!pool_dying(pool) && n <= rd(pool->min_nr) && rd(pool->curr_nr) < n)
        pthread_cond_timedwait(&pool->wait, &pool->lock, &deadline);
    err = pool_dying(pool) ? -ESHUTDOWN : n > rd(pool->min_nr) ? -E2BIG : 0;
    pthread_cleanup_pop(1);
    return err;
}

/* Waits, and tries again, until all n can be had: 0 with elems[0..n)
 * held, or a negative errno with nothing held. Entered with pool->lock
 * held. */
static int bulk_retry(struct bulk_state *st, unsigned n, rcl_gfp_t gfp_light,
                      rcl_gfp_t gfp_full)
{
    for (;;) {
        int err = bulk_wait(st->pool, n);
        if (err)
            return err;
        if (bulk_try(st, n, gfp_light, gfp_full)) {
            pool_get(st->pool, n);          /* before we leave: they keep the pool */
            return 0;
        }
        pthread_mutex_lock(&st->pool->lock);
    }
}

/* Counted in the pool as a waiter until it is done with it, as the single
 * allocation is (alloc_wait), and under the lock it first sleeps under:
 * a destroy, which takes the lock to wake the waiters, finds it asleep or
 * not yet counted. */
static int bulk_wait_for(struct bulk_state *st, unsigned n, rcl_gfp_t gfp_light,
                         rcl_gfp_t gfp_full)
{
    struct rcl_mempool *pool = st->pool;
    int err;

    pthread_mutex_lock(&pool->lock);
    pool_enter(pool, &st->waiter);
    st->waiting = true;
    err = bulk_retry(st, n, gfp_light, gfp_full);
    st->waiting = false;
    pool_leave(pool, &st->waiter);
    /* Out of the pool first, as the single allocation's report is. */
    if (err == -ESHUTDOWN)
        dying_report("rcl_mempool_alloc_bulk", pool);
    return err;
}

static int bulk_check(struct rcl_mempool *pool, void **elems, unsigned n)
{
    if (!pool || (!elems && n)) {
        rcl__report("rcl_mempool_alloc_bulk(%p, %p, %u): NULL %s", (void *)pool,
                    (void *)elems, n, pool ? "element array" : "pool");
        return -EINVAL;
    }
    if (unlikely(pool_dying(pool))) {
        dying_report("rcl_mempool_alloc_bulk", pool);
        return -ESHUTDOWN;
    }
    /* More than the reserve could never be served from it alone: waiting
     * for it would be forever. */
    if (n > rd(pool->min_nr))
        return -E2BIG;
    return 0;
}

static int bulk_alloc(struct bulk_state *st, unsigned n, rcl_gfp_t gfp)
{
    rcl_gfp_t gfp_full = gfp | RCL__NOMEMALLOC | RCL__NORETRY | RCL__NOWARN;
    rcl_gfp_t gfp_light = gfp_full & ~(RCL__DIRECT_RECLAIM | RCL__IO);

    if (bulk_try(st, n, gfp_light, gfp_full)) {
        pool_get(st->pool, n);
        return 0;
    }
    if (!(gfp & RCL__DIRECT_RECLAIM))
        return -ENOMEM;
    return bulk_wait_for(st, n, gfp_light, gfp_full);
}

int rcl_mempool_alloc_bulk(struct rcl_mempool *pool, void **elems, unsigned n)
{
    struct bulk_state st = { .pool = pool, .elems = elems };
    int err = bulk_check(pool, elems, n);
    if (err || !n)
        return err;

    /* No flags: it may sleep, as an RCL_DEFAULT call would; the scope
     * narrows that (NOFS, NOIO; NOWAIT: no waiting at all). */
    rcl_gfp_t gfp = rcl_current_gfp(RCL_DEFAULT);
    if (gfp & RCL__DIRECT_RECLAIM)
        rcl_might_alloc(gfp);

    pthread_cleanup_push(bulk_unwound, &st);
    err = bulk_alloc(&st, n, gfp);
    pthread_cleanup_pop(0);
    return err;
}

void rcl_mempool_free_bulk(struct rcl_mempool *pool, void **elems, unsigned n)
{
    if (!n)
        return;
    if (!pool || !elems) {
        rcl__report("rcl_mempool_free_bulk(%p, %p, %u): NULL %s; nothing freed",
                    (void *)pool, (void *)elems, n, pool ? "element array" : "pool");
        return;
    }
    /* One at a time, through the single free: each returned element may
     * complete a waiter's set. The pool may be gone after the last. */
    for (unsigned i = 0; i < n; i++)
        free_one(elems[i], pool, elems + i + 1, n - i - 1);
}

/* ------------------------------------------------------------------------ */
/* Resizing                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * What a resize holds across the backing allocator's calls. It lives in
 * the frame of rcl_mempool_resize(), which pushes the one handler for the
 * whole resize: a thread that ends inside a call (pthread_exit(), which
 * the cancel state does not defer) runs it with the frames below gone.
 * fresh[first..got) came from the allocator and are nowhere else yet.
 * What changes after the handler's setjmp is volatile: the handler reads
 * it after the longjmp back into that frame, where a copy kept in a
 * register would be stale (clang's, with the grow inlined, was: the
 * elements the grow had were never freed).
 */
struct resize_state {
    struct rcl_mempool *pool;
    void    **volatile  fresh;
    void    **volatile  array;    /* the larger one, or the old one after */
    volatile unsigned   first, got;
    unsigned            nfresh;   /* fresh[]'s size */
    volatile bool       shrinking;  /* giving back the reserve's surplus */
    int                 cancel;
};

/*
 * Gives back what the reserve holds above min_nr; entered and left with
 * pool->lock held. min_nr is read again at each element: a grow may raise
 * it while the lock is let go for a backing free, and what that grow
 * filled stays. Each element leaves the reserve before its free is
 * called: one whose free ends the thread is never freed twice.
 */
static void shrink_surplus(struct rcl_mempool *pool)
{
    rcl__assert_held(&pool->lock);
    while (rd(pool->curr_nr) > rd(pool->min_nr)) {
        void *elem = remove_element(pool);
        /* The backing free may be slow (or take its own locks): never
         * call it under the pool lock. */
        pthread_mutex_unlock(&pool->lock);
        pool->free(elem, pool->data);
        pthread_mutex_lock(&pool->lock);
    }
}

/* Lowers min_nr and gives back the surplus; pool->lock held. */
static void shrink_locked(struct resize_state *st, unsigned new_min)
{
    struct rcl_mempool *pool = st->pool;

    rcl__assert_held(&pool->lock);
    /* Lower min_nr first so that concurrent frees stop refilling what we
     * are about to release. */
    wr(pool->min_nr, new_min);
    /* A bulk waiter for more than new_min can never be served from the
     * reserve now, and no element returned would wake it: it fails with
     * -E2BIG (bulk_wait) now rather than at the end of its sleep. */
    pthread_cond_broadcast(&pool->wait);
    st->shrinking = true;
    shrink_surplus(pool);
    st->shrinking = false;
}

/* Each element is handed over before its call: one whose free ends the
 * thread is the program's, never freed twice by the handler. */
static void resize_drop(struct resize_state *st)
{
    struct rcl_mempool *pool = st->pool;

    while (st->first < st->got) {
        void *elem = st->fresh[st->first++];
        pool->free(elem, pool->data);
    }
    rcl_free(st->array);
    rcl_free(st->fresh);
    st->array = st->fresh = NULL;
}

/* A shrink whose backing free ended the thread is finished as its return
 * would have finished it: nothing else gives back a surplus. The free
 * was called with the pool's lock let go. */
static void resize_unwound(void *arg)
{
    struct resize_state *st = arg;

    rcl__asan_unwinding();
    if (st->shrinking) {
        pthread_mutex_lock(&st->pool->lock);
        shrink_surplus(st->pool);
        pthread_mutex_unlock(&st->pool->lock);
    }
    resize_drop(st);
    rcl__nocancel_end(st->cancel);
}

/* The larger array (if it is still needed) and the reserve filled to
 * new_min, from what the grow holds; pool->lock held. */
static void grow_commit(struct resize_state *st, unsigned new_min)
{
    struct rcl_mempool *pool = st->pool;

    rcl__assert_held(&pool->lock);
    if (new_min > pool->cap) {
        memcpy(st->array, pool->elements, rd(pool->curr_nr) * sizeof(void *));
        void **old = pool->elements;
        pool->elements = st->array;
        pool->cap = new_min;
        st->array = old;                /* freed by resize_drop, outside the lock */
    }
    wr(pool->min_nr, new_min);
    while (rd(pool->curr_nr) < new_min)
        add_element(pool, st->fresh[st->first++]);
    pthread_cond_broadcast(&pool->wait);
}

/* Room in fresh[] for want elements. It is sized for what the reserve
 * lacks at the grow's first look, and larger only when the reserve lost
 * elements before the commit: rarely, and never past new_min. */
static bool grow_fresh(struct resize_state *st, unsigned want)
{
    if (want <= st->nfresh)
        return true;
    void **fresh = rcl_calloc(want, sizeof(void *), RCL_DEFAULT | RCL__NOWARN);
    if (!fresh)
        return false;
    if (st->got)
        memcpy(fresh, st->fresh, st->got * sizeof(void *));
    void **old = st->fresh;
    st->fresh = fresh;
    st->nfresh = want;
    rcl_free(old);
    return true;
}

/* Allocates, with no lock held, what the pool lacked at its last look:
 * the elements to fill the reserve to new_min and, if cap is smaller, the
 * larger array. */
static bool grow_allocate(struct resize_state *st, unsigned want, bool need_array,
                          unsigned new_min, rcl_gfp_t gfp)
{
    struct rcl_mempool *pool = st->pool;

    if (!grow_fresh(st, want))
        return false;
    if (need_array) {
        st->array = rcl_calloc(new_min, sizeof(void *), RCL_DEFAULT | RCL__NOWARN);
        if (!st->array)
            return false;
    }
    while (st->got < want) {
        void *elem = pool->alloc(gfp, pool->data);
        if (!elem)
            return false;
        st->fresh[st->got++] = elem;
    }
    return true;
}

/*
 * Growing is all or nothing: every element and the larger array are
 * allocated before the pool is touched, so a failure leaves it as it was.
 * They are allocated with no lock of the pool held: the allocator, or the
 * reclaim it runs, may call into this pool (a shrinker that resizes it),
 * and a lock held here would deadlock that thread, or the one it waits
 * for. The reserve may lose elements to allocations, or to a concurrent
 * shrink, before the commit: the grow then allocates again for what it
 * lost, and fills the reserve to new_min, as the kernel's
 * mempool_resize() does; new_min elements in all are the most it needs.
 * One that finds min_nr raised to new_min or past by a concurrent resize
 * comes after it, and lowers it as a shrink would.
 */
static int pool_grow(struct resize_state *st, unsigned new_min, rcl_gfp_t gfp)
{
    struct rcl_mempool *pool = st->pool;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        if (new_min <= rd(pool->min_nr)) {
            shrink_locked(st, new_min);
            break;
        }
        /* A shrink letting go of its surplus may hold more than new_min. */
        unsigned curr = rd(pool->curr_nr);
        unsigned want = curr < new_min ? new_min - curr : 0;
        bool need_array = new_min > pool->cap && !st->array;
        if (st->got >= want && !need_array) {
            grow_commit(st, new_min);
            break;
        }
        pthread_mutex_unlock(&pool->lock);
        if (!grow_allocate(st, want, need_array, new_min, gfp)) {
            resize_drop(st);
            return -ENOMEM;
        }
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    resize_drop(st);
    return 0;
}

static int resize(struct resize_state *st, unsigned new_min_nr, rcl_gfp_t gfp)
{
    struct rcl_mempool *pool = st->pool;

    if (new_min_nr > rd(pool->min_nr))
        return pool_grow(st, new_min_nr, gfp);
    pthread_mutex_lock(&pool->lock);
    shrink_locked(st, new_min_nr);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

int rcl_mempool_resize(struct rcl_mempool *pool, unsigned new_min_nr)
{
    struct resize_state st = { .pool = pool };
    int err;

    if (!pool) {
        rcl__report("rcl_mempool_resize(NULL, %u): NULL pool", new_min_nr);
        return -EINVAL;
    }
    if (pool_dying(pool)) {
        dying_report("rcl_mempool_resize", pool);
        return -ESHUTDOWN;
    }
    rcl_gfp_t gfp = fill_gfp();
    if (gfp & RCL__DIRECT_RECLAIM)
        rcl_might_alloc(gfp);

    /* Not cancellable: a cancel in the backing allocator takes effect once
     * the resize has been made whole, or not at all. */
    st.cancel = rcl__nocancel_begin();
    pthread_cleanup_push(resize_unwound, &st);
    err = resize(&st, new_min_nr, gfp);
    pthread_cleanup_pop(0);
    rcl__nocancel_end(st.cancel);
    return err;
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

/* The pool lock was held across the fork, so the reserve is whole. The
 * waiters and a resize in progress belonged to threads the child does not
 * have: both are forgotten, the waiters' counts too, which nobody there
 * would ever give back - all but the forking thread's own, which goes on
 * in the child inside its allocation (its backing allocator forked) and
 * leaves the pool when that returns. A pool a destroy was waking waiters
 * of at the fork, with no element out, stays allocated in the child:
 * finishing it here would take the locks this handler holds. */
static void pool_atfork_child(struct rcl__fork_obj *o)
{
    struct rcl_mempool *pool = (struct rcl_mempool *)(void *)((char *)o -
                               offsetof(struct rcl_mempool, fork));
    struct pool_waiter *mine = NULL, *next;
    uint64_t kept = 0;

    rcl__cond_init_monotonic(&pool->wait);
    for (struct pool_waiter *w = pool->waiters; w; w = next) {
        next = w->next;
        if (pthread_equal(w->thread, pthread_self())) {
            w->next = mine;
            mine = w;
            kept++;
        }
    }
    pool->waiters = mine;
    atomic_fetch_and_explicit(&pool->state, ~POOL_WAITERS, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->state, kept * POOL_WAITER, memory_order_relaxed);
}
