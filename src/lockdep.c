/* SPDX-License-Identifier: MIT */
/*
 * lockdep.c - the lock checker's annotations: each thread's stack of held
 * locks, rcl_lock_acquire()/rcl_lock_release() and the dependencies they
 * record, the annotated mutexes, the unregister of a class, the
 * checker's reset and report count.
 *
 * What the graph and its edges mean is in lockdep_internal.h; reclaim is
 * a client of these annotations (lockdep_reclaim.c).
 */
#include "lockdep_internal.h"

#include "list.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

_Atomic int rcl__lockdep_mode;

/* The annotation and mutex pairs' entries start on a 64-byte boundary, as
 * rcl_alloc()'s do (alloc.c says why): an out-of-line change elsewhere in
 * this file moved rcl_lock_acquire() 48 bytes on, and the annotation pair
 * with a lock held went from 3.45 to 3.7 ns with no instruction of its
 * own changed. */
#define HOT_ENTRY __attribute__((aligned(64)))

/* Changes at every reset, never 0: class ids and per-thread stacks from an
 * older graph are recognised by it and dropped. */
static _Atomic unsigned graph_gen = 1;

/*
 * Each thread's held-lock stack is a mapping of its own, made at its first
 * event with the checker on, and only a pointer is thread-local: the stack
 * is most of a kilobyte, and the library's initial-exec TLS must fit the
 * few hundred bytes glibc keeps for a library loaded by dlopen(). Until
 * then the pointer names ld_none, whose generation (0) is never current,
 * so the hot paths need no test of their own; ld_lost stands for a thread
 * whose mapping failed, which goes unchecked.
 */
static const struct ld_thread ld_none, ld_lost;
static __thread struct ld_thread *ld_self RCL_TLS_IE = (struct ld_thread *)&ld_none;
static pthread_key_t ld_exit_key;
static bool ld_exit_key_made;
static pthread_once_t ld_exit_key_once = PTHREAD_ONCE_INIT;
/* Every mapped stack, for rcl_lock_class_unregister(); inside the graph
 * lock where both are taken. */
static pthread_mutex_t ld_threads_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ld_thread *ld_threads;
static _Atomic int ld_lost_told;    /* once a graph (rcl__ld_reset) */
static _Atomic int ld_full_told;    /* once a graph (rcl__ld_reset) */
static _Atomic int ld_deep_told;    /* once a graph (rcl__ld_reset) */
static _Atomic unsigned long ld_learns;

/* ------------------------------------------------------------------------ */
/* Per-thread state                                                          */
/* ------------------------------------------------------------------------ */

/* Held locks or a NOWAIT or NORECLAIM scope: this thread's allocations
 * must reach the checker (a NOFAIL one inside those scopes is reported even
 * when the thread's stock could serve it). Only the checker writes the
 * watch's `lockdep` byte. */
void rcl__ld_update_watch(bool held)
{
    uint8_t want = held || (rcl__scope & (RCL_SCOPE_NOWAIT | RCL_SCOPE_NORECLAIM));

    /* A byte of its own, so a plain store (thread.h, union rcl_watch);
     * only when it changes, so that an unchanged scope writes nothing. */
    if (rd(rcl__self.watch.lockdep) != want)
        wr(rcl__self.watch.lockdep, want);
}


/* The thread forgets what it held; gen 0 (graph_gen never is) makes its
 * next event start afresh through ld_thread_reset(). How many locks it
 * held it keeps: a lock held across a reset is released after it, where
 * the new stack does not hold it. */
static void ld_thread_forget(struct ld_thread *t, unsigned gen)
{
    if (t != &ld_none && t != &ld_lost) {
        ld_set(t->gen, gen);
        t->unknown += t->n;
        ld_set_n(t, 0);
        t->nscopes = t->nshrink = 0;
        t->opened[0].n = t->opened[1].n = 0;
    }
    rcl__ld_update_watch(false);
}

/* Does the exiting thread hold locks of this graph? Locks counted in
 * `unknown` are left out: some a reset forgot may have been released
 * while the checker was off, and a report of a lock not held is false. */
static bool ld_exit_holds(const struct ld_thread *t)
{
    return t->n && rcl__checking() &&
           t->gen == atomic_load_explicit(&graph_gen, memory_order_relaxed);
}

/*
 * The thread's exit after its cleanup handlers, which POSIX runs before
 * any destructor: the library's own have let go of what a callback that
 * ended its thread left held. Another key's destructor may still release
 * a lock, later in this round or in the next, so the stack stays for the
 * rounds after this one but the last: in the last, the sanitizers'
 * runtimes end the thread's state of their own (their key's destructor
 * waits for it as this one does, and comes first), and the report's
 * calls would find it gone.
 */
static bool ld_exit_wait(struct ld_thread *t)
{
    if (t->exit_rounds + 2 >= RCL__EXIT_ROUNDS || pthread_setspecific(ld_exit_key, t) != 0)
        return false;
    t->exit_rounds++;
    return true;
}

static __attribute__((noinline, cold)) void ld_exit_report(const struct ld_thread *t)
{
    struct site st;
    struct report_buf *rb = NULL;
    int cancel = rcl__nocancel_begin();

    rcl__ld_site_self(&st);   /* a backtrace here is only the exit's frames */
    pthread_mutex_lock(&rcl__ld_graph_lock);
    /* A reset since: what the stack names is another graph's. */
    if (ld_exit_holds(t) && (rb = rcl__ld_rb_get_locked(true)))
        rcl__ld_report_exit_locked(rb, t, &st);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    rcl__ld_reports_emit(&rb, 1);
    rcl__nocancel_end(cancel);
}

/* At thread exit, with the locks the thread still holds reported once (the
 * kernel's do_exit() checks the same); a destructor that runs after the
 * last round here and takes an annotated lock maps a new stack, which
 * glibc's next round of destructors releases again. */
static void ld_thread_exit(void *arg)
{
    struct ld_thread *t = arg;

    if (unlikely(ld_exit_holds(t))) {
        if (ld_exit_wait(t))
            return;
        ld_exit_report(t);
    }
    /* Off the list while still this thread's: a signal handler's lock
     * in between maps no second stack under the list's lock. */
    pthread_mutex_lock(&ld_threads_lock);
    LIST_DEL(ld_threads, t);
    pthread_mutex_unlock(&ld_threads_lock);
    ld_self = (struct ld_thread *)&ld_none;
    munmap(t, sizeof(*t));
}

static void ld_exit_key_create(void)
{
    ld_exit_key_made = pthread_key_create(&ld_exit_key, ld_thread_exit) == 0;
}

/* The thread's stack, mapped rather than allocated: an annotated lock may
 * sit inside the program's own allocator, which must not be entered again
 * from there. NULL if there is no memory for it, told once a graph. */
static struct ld_thread *ld_thread_map(void)
{
    struct ld_thread *t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_once(&ld_exit_key_once, ld_exit_key_create);
    if (t != MAP_FAILED && ld_exit_key_made && pthread_setspecific(ld_exit_key, t) == 0) {
        t->tid = (long)syscall(SYS_gettid);
        /* This thread's before it is listed, as in ld_thread_exit(). */
        ld_self = t;
        pthread_mutex_lock(&ld_threads_lock);
        LIST_PUSH(ld_threads, t);
        pthread_mutex_unlock(&ld_threads_lock);
        return t;
    }
    if (t != MAP_FAILED)
        munmap(t, sizeof(*t));
    ld_self = (struct ld_thread *)&ld_lost;
    if (!atomic_exchange(&ld_lost_told, 1))
        rcl__report("lock checker: no memory for a thread's held-lock stack; that thread's "
                    "locks, scopes and allocations are not checked");
    return NULL;
}

/*
 * A graph reset happened since this thread last looked (graph_gen starts
 * at 1 and every rcl_shutdown() moves it on, so a thread's first event
 * after the checker went on always lands here): what it remembers refers
 * to nodes that no longer exist, and from now on its inline scope calls
 * must come to the checker too. NULL for a thread the checker cannot
 * follow (ld_lost).
 */
static __attribute__((noinline, cold)) struct ld_thread *ld_thread_reset(struct ld_thread *t,
                                                                        unsigned gen)
{
    if (t == &ld_lost || (t == &ld_none && !(t = ld_thread_map())))
        return NULL;
    ld_thread_forget(t, gen);
    rcl__scope_watch(true);
    return t;
}

static inline struct ld_thread *ld_thread_gen(unsigned gen)
{
    struct ld_thread *t = ld_self;

    if (unlikely(t->gen != gen))
        t = ld_thread_reset(t, gen);
    return t;
}

struct ld_thread *rcl__ld_thread_get(void)
{
    return ld_thread_gen(atomic_load_explicit(&graph_gen, memory_order_relaxed));
}

/* Each thread passes here when it joins an epoch (and the thread calling
 * rcl_init()/rcl_shutdown() when the mode changes): with the checker on its
 * scope calls come to the checker, with it off nothing of an earlier
 * epoch's watch stays to slow the thread down. */
void rcl__lockdep_thread_attach(void)
{
    if (rcl__checking()) {
        (void)rcl__ld_thread_get();
        return;
    }
    wr(rcl__self.watch.lockdep, 0);
    rcl__scope_watch(false);
}

static inline uint32_t class_id(struct rcl_lock_class *c, unsigned gen)
{
    if (likely(__atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen))
        return __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED);
    return rcl__ld_class_id_slow(c, gen);
}

/* ld_held_is(), at whichever subclass the lock was taken: a release
 * names the class alone (the kernel's matches the lock's instance). */
static bool held_is_class(const struct ld_thread *t, unsigned i, uint32_t id, const void *inst)
{
    uint32_t held = t->held[i];

    return ld_held_is(t, i, id, inst) ||
           (id && held != id && ld_node_class(held) == id &&
            (!inst || !(t->flags[i] & HELD_MUTEX) || t->inst[i] == inst));
}

__attribute__((noinline)) bool rcl__ld_held_pop_slow(struct ld_thread *t, uint32_t id,
                                                      const void *inst)
{
    unsigned recorded = t->n < MAX_HELD ? t->n : MAX_HELD;

    /* Releases out of order are legal: close the gap. */
    for (unsigned i = recorded; i > 0; i--) {
        if (held_is_class(t, i - 1, id, inst)) {
            for (unsigned j = i; j < recorded; j++) {
                ld_set(t->held[j - 1], t->held[j]);
                t->inst[j - 1] = t->inst[j];
                t->flags[j - 1] = t->flags[j];
                ld_set(t->next_ok[j - 1], ld_get(t->next_ok[j]));
            }
            if (t->n > MAX_HELD) {
                /* The freed top entry would stand for a lock the stack never
                 * recorded: the locks above the depth become locks the
                 * thread holds unknown to its stack, as after a reset, and
                 * each release that finds no entry takes one of them. */
                t->unknown += t->n - MAX_HELD;
                ld_set_n(t, MAX_HELD - 1);
                return true;
            }
            ld_set_n(t, t->n - 1);
            if (t->n == 0)
                rcl__ld_update_watch(false);
            return true;
        }
    }
    /* Not recorded, so one of the locks taken above the depth. */
    if (t->n > MAX_HELD) {
        ld_set_n(t, t->n - 1);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Recording                                                                 */
/* ------------------------------------------------------------------------ */

struct pending {
    uint32_t       from, to;
    unsigned       incarn;
    enum edge_kind kind;
    rcl_gfp_t      gfp;
    const char    *shrinker;
};

/* New edges go through here: the backtrace is taken before the lock, the
 * reports are emitted after it. Each edge has a report of its own: two
 * edges learned at once may each close a different cycle, and an edge is
 * in the graph once learned, so a cycle not reported now never would be. */
static __attribute__((noinline)) void learn(const struct pending *p, unsigned n)
{
    struct site st;
    /* [0]: the notes, then each edge's cycle; taken only for a report. */
    struct report_buf *rb[MAX_HELD + 1] = { NULL };

    rcl__assert(n <= MAX_HELD);
    atomic_fetch_add_explicit(&ld_learns, 1, memory_order_relaxed);
    /* Symbolizing a report opens the program's files under the graph's
     * lock: cancellation points, where a cancel would leave the lock held
     * for every thread. A cancel waits for the program's next one. */
    int cancel = rcl__nocancel_begin();
    rcl__ld_site_capture(&st, 3);
    pthread_mutex_lock(&rcl__ld_graph_lock);
    rcl__ld_graph_ensure_locked();
    if (atomic_load_explicit(&graph_gen, memory_order_relaxed) == ld_self->gen)
        for (unsigned i = 0; i < n; i++)
            rcl__ld_learn_locked(p[i].from, p[i].to, p[i].incarn, p[i].kind, p[i].gfp,
                                 p[i].shrinker, &st, &rb[i + 1], &rb[0]);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    /* Most new edges make no report, and need no cleanup handler's setjmp. */
    for (unsigned i = 0; i <= n; i++) {
        if (rb[i]) {
            rcl__ld_reports_emit(rb, n + 1);
            break;
        }
    }
    rcl__nocancel_end(cancel);
}

static const char *held_shrinker_name(const struct ld_thread *t)
{
    if (t->nshrink && t->nshrink <= MAX_SHRINK)
        return t->shrink[t->nshrink - 1].name;
    return NULL;
}

/* Edges from what the thread holds to `to`: the top entry and, below it,
 * every trylock-taken entry down to the first lock really waited for (a
 * trylock recorded no edge of its own, so the chain through it is missing). */
__attribute__((noinline)) void rcl__ld_depend(struct ld_thread *t, uint32_t to,
                                              unsigned incarn, enum edge_kind kind,
                                              rcl_gfp_t gfp)
{
    struct pending p[MAX_HELD];
    unsigned np = 0;
    unsigned top = t->n < MAX_HELD ? t->n : MAX_HELD;

    /* The graph is off for good, which was told once, as the kernel's
     * lockdep turns itself off. */
    if (atomic_load_explicit(&rcl__ld_edges_full, memory_order_relaxed))
        return;
    for (unsigned i = top; i > 0; i--) {
        uint32_t from = t->held[i - 1];
        if (!ld_edge_known(from, to))
            p[np++] = (struct pending){ from, to, incarn, kind, gfp,
                                        (t->flags[i - 1] & HELD_RECLAIM) ? held_shrinker_name(t) : NULL };
        if (!(t->flags[i - 1] & HELD_TRY))
            break;
    }
    if (np)
        learn(p, np);
}

/* ------------------------------------------------------------------------ */
/* Public annotations                                                        */
/* ------------------------------------------------------------------------ */

/* The graph has no node left for class c: its locks go unchecked, told
 * once a graph. The thread still holds the lock, unknown to its stack, so
 * that the release finds no entry and is not reported: a false report
 * would leave the mutex locked for good. */
static __attribute__((noinline, cold)) void class_unchecked(struct ld_thread *t,
                                                           const struct rcl_lock_class *c)
{
    t->unknown++;
    /* Read first: an exchange at each acquire would pass the flag's line
     * between the threads taking such locks. */
    if (!atomic_load_explicit(&ld_full_told, memory_order_relaxed) &&
        !atomic_exchange(&ld_full_told, 1))
        rcl__report("lock checker: the graph is full (%d lock classes and reclaim nodes); "
                    "locks of class \"%s\" and of every class new from now on are not checked",
                    MAX_NODES, c->name ? c->name : "(unnamed)");
}

/*
 * The class rcl_mutex_destroy() leaves in a mutex. Its generation is 0,
 * which graph_gen never is, so every acquire and release of a destroyed
 * mutex made with the checker on leaves the hot paths for the slow ones,
 * which tell it by its address: the hot paths pay nothing for it. A
 * pthread_mutex_lock() refused (glibc: EINVAL) would say it too, but the
 * calls end in a tail call to the C library, and testing what it returns
 * would cost every lock and unlock. Never registered: it has no node,
 * and no subclass.
 */
static struct rcl_lock_class ld_destroyed = { "(destroyed)", 0, 0 };

static __attribute__((noinline, cold)) void mutex_destroyed_report(const char *call,
                                                                   const void *m,
                                                                   const char *what)
{
    rcl__report("%s(%p): a destroyed mutex; %s", call, m, what);
}

/* Everything but the common case: NULL class, new class or graph, the
 * held stack full, a dependency not in this thread's one-entry cache; a
 * subclass (sub) of the class, which the hot path never sees, and whose
 * 0 folds away where it is a constant. */
static inline __attribute__((always_inline)) void acquire_sub(struct rcl_lock_class *c,
                                                              const void *inst, uint8_t flags,
                                                              unsigned sub)
{
    if (unlikely(!c)) {
        rcl__report("rcl_lock_acquire: NULL lock class");
        return;
    }
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);
    struct ld_thread *t = ld_thread_gen(gen);
    if (unlikely(!t))
        return;   /* no memory for the thread's stack: told once, checked nowhere */
    uint32_t id = class_id(c, gen);
    if (sub && id)
        id = ld_subclass_id(id, sub);
    if (unlikely(!id)) {
        class_unchecked(t, c);
        return;
    }

    /* Read first, as ld_full_told is: a program that often goes this deep
     * would pass the flag's line between its threads. */
    if (unlikely(t->n == MAX_HELD) && !atomic_load_explicit(&ld_deep_told, memory_order_relaxed)) {
        if (!atomic_exchange(&ld_deep_told, 1))
            rcl__report("lock checker: a thread holds more than %d annotated locks at once; "
                        "the locks above that depth are not checked", MAX_HELD);
    }
    /* A trylock waits for nothing, so it depends on nothing. */
    if (!(flags & HELD_TRY) && t->n) {
        unsigned top = (t->n <= MAX_HELD ? t->n : MAX_HELD) - 1;
        if (ld_get(t->next_ok[top]) != id) {
            if (likely(!(t->flags[top] & HELD_TRY)) && ld_edge_known(t->held[top], id))
                ld_set(t->next_ok[top], id);   /* an edge goes only with a dropped node:
                                                  not a held one, and a class's
                                                  unregister clears this */
            else
                rcl__ld_depend(t, id, INCARN_CLASS, EDGE_LOCK, 0);
        }
    }
    ld_held_push(t, id, inst, flags);
}

/* False for a destroyed mutex (reported), which is not to be locked. */
static __attribute__((noinline)) bool acquire_slow(struct rcl_lock_class *c, const void *inst,
                                                   uint8_t flags)
{
    if (unlikely(c == &ld_destroyed)) {
        mutex_destroyed_report(flags & HELD_TRY ? "rcl_mutex_trylock" : "rcl_mutex_lock", inst,
                               "nothing locked");
        return false;
    }
    acquire_sub(c, inst, flags, 0);
    return true;
}

/*
 * The hot path, kept a leaf (no call, no saved registers): the class and
 * the thread belong to the current graph, and either nothing is held or
 * the lock on top of the stack was seen followed by this one before (or
 * this is a trylock, which depends on nothing).
 */
static inline __attribute__((always_inline)) bool acquire(struct rcl_lock_class *c,
                                                          const void *inst, uint8_t flags)
{
    struct ld_thread *t = ld_self;
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);

    if (likely(c && t->gen == gen && __atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen)) {
        uint32_t id = __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED);
        unsigned n = t->n;
        if (likely(n < MAX_HELD && (n == 0 || (flags & HELD_TRY) ||
                                    ld_get(t->next_ok[n - 1]) == id))) {
            ld_held_push_at(t, n, id, inst, flags);
            return true;
        }
    }
    return acquire_slow(c, inst, flags);
}

/* The checker off and the library not initialised yet: first use
 * initialises it, and may turn checking on. Out of line, so that the hot
 * path stays a leaf. */
static __attribute__((noinline, cold)) bool acquire_first(struct rcl_lock_class *c,
                                                          const void *inst, uint8_t flags)
{
    rcl__init_slow();
    return !rcl__checking() || acquire_slow(c, inst, flags);
}

/* Checking on implies initialised. Off, the library ready, the mode is
 * read again: an rcl_init() that turned the checker on may have finished
 * between the first read and the read of rcl__ready, and the acquire must
 * then be seen, or its release would find no acquire. False: a destroyed
 * mutex, reported, not to be locked. */
static inline __attribute__((always_inline)) bool acquire_entry(struct rcl_lock_class *c,
                                                                const void *inst, uint8_t flags)
{
    if (likely(rd(rcl__lockdep_mode) != 0))
        return acquire(c, inst, flags);
    if (unlikely(!atomic_load_explicit(&rcl__ready, memory_order_acquire)))
        return acquire_first(c, inst, flags);
    if (unlikely(rd(rcl__lockdep_mode) != 0))
        return acquire(c, inst, flags);
    return true;
}

HOT_ENTRY void rcl_lock_acquire(struct rcl_lock_class *c) { (void)acquire_entry(c, NULL, 0); }
void rcl_lock_acquire_try(struct rcl_lock_class *c) { (void)acquire_entry(c, NULL, HELD_TRY); }

/* A subclass out of range names no class: the lock goes unannotated, as
 * a class the full graph has no node for does, so that its release finds
 * no entry and passes. Reported at `site`, the return address into the
 * public call's caller. */
static __attribute__((noinline, cold)) void acquire_bad_subclass(struct rcl_lock_class *c,
                                                                 unsigned sub, const char *call,
                                                                 const void *site)
{
    struct ld_thread *t = ld_thread_gen(atomic_load_explicit(&graph_gen, memory_order_relaxed));
    struct site st;

    if (t)
        t->unknown++;
    rcl__ld_site_capture_from(&st, site);
    rcl__ld_report_bad_subclass(call, c && c->name ? c->name : "(unnamed)", sub, &st);
}

/* Subclasses are rare and each is a class of its own for the order, so
 * all of them take the slow path, and the hot path does not test for
 * them. False for a destroyed mutex (reported, whatever the subclass),
 * which is not to be locked. */
static __attribute__((noinline)) bool acquire_nested(struct rcl_lock_class *c,
                                                     const void *inst, unsigned sub,
                                                     const char *call, const void *site)
{
    /* As acquire_entry(): the first use starts the library, and the mode
     * is read again once it is ready. */
    if (!rcl__checking()) {
        if (!atomic_load_explicit(&rcl__ready, memory_order_acquire))
            rcl__init_slow();
        if (!rcl__checking())
            return true;
    }
    /* Before the subclass: one out of range counts the lock as held
     * unrecorded, whose release a NULL class's never pays back. */
    if (unlikely(!c)) {
        rcl__report("%s: NULL lock class", call);
        return true;
    }
    if (unlikely(c == &ld_destroyed)) {
        mutex_destroyed_report(call, inst, "nothing locked");
        return false;
    }
    if (unlikely(sub >= RCL_LOCK_SUBCLASSES))
        acquire_bad_subclass(c, sub, call, site);
    else
        acquire_sub(c, inst, 0, sub);
    return true;
}

void rcl_lock_acquire_nested(struct rcl_lock_class *c, unsigned subclass)
{
    if (subclass == 0)
        (void)acquire_entry(c, NULL, 0);
    else
        (void)acquire_nested(c, NULL, subclass, "rcl_lock_acquire_nested",
                             __builtin_return_address(0));
}

/*
 * An annotation made while the checker was off is not on any stack, so a
 * release that finds no acquire is a misuse only if every acquire was
 * seen. Set for good by the first rcl_init() with the checker off: a lock
 * taken then may be released after a later rcl_init() turned it on. (The
 * kernel's lockdep, once off, stays off.) A library started with the
 * checker on and never without it sees every acquire: one made before
 * the library is ready starts it first (acquire_first()), and none may be
 * made while rcl_shutdown() runs.
 */
static _Atomic bool ld_blind;

/* A release the thread's stack does not hold: a lock it held when a reset
 * forgot its stack, if it held one; else reported at `site` (the return
 * address into the caller of the public call), where the checker saw
 * every acquire. False when reported. */
static __attribute__((noinline, cold)) bool release_unheld(struct ld_thread *t,
                                                          const struct rcl_lock_class *c,
                                                          const void *site,
                                                          const rcl_mutex_t *m)
{
    struct site st;

    if (t->unknown) {
        t->unknown--;
        return true;
    }
    if (atomic_load_explicit(&ld_blind, memory_order_relaxed))
        return true;
    rcl__ld_site_capture_from(&st, site);
    rcl__ld_report_unheld(c->name ? c->name : "(unnamed)", &st, m);
    return false;
}

static __attribute__((noinline)) bool release_slow(struct rcl_lock_class *c, const void *site,
                                                   const rcl_mutex_t *m)
{
    if (unlikely(!c)) {
        rcl__report("rcl_lock_release: NULL lock class");
        return true;
    }
    if (unlikely(c == &ld_destroyed)) {
        mutex_destroyed_report("rcl_mutex_unlock", m, "nothing done");
        return false;
    }
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);
    struct ld_thread *t = ld_thread_gen(gen);
    if (unlikely(!t))
        return true;   /* not followed */
    /* A class with no node in this graph is on no recorded entry (node 0
     * is none), but may still be one of the locks taken above the depth:
     * its unregister could not see it there. */
    uint32_t id = __atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen
                  ? __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED) : 0;
    if (ld_held_pop(t, id, m))
        return true;
    return release_unheld(t, c, site, m);
}

/* The release of a lock of class c, the mutex m if not NULL; false when
 * the thread does not hold it (and the checker saw every acquire):
 * reported, at the public call's caller (this is inlined into the call,
 * whose return address the report starts at). */
static inline __attribute__((always_inline)) bool release(struct rcl_lock_class *c,
                                                          const rcl_mutex_t *m)
{
    if (!rcl__checking())
        return true;
    struct ld_thread *t = ld_self;
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);
    /* Hot path: the lock on top of the stack, as releases usually are. */
    if (likely(c && t->gen == gen && __atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen) &&
        likely(ld_held_pop_top(t, __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED), m)))
        return true;
    return release_slow(c, __builtin_return_address(0), m);
}

HOT_ENTRY void rcl_lock_release(struct rcl_lock_class *c)
{
    (void)release(c, NULL);
}

/* ------------------------------------------------------------------------ */
/* Reset and counts                                                          */
/* ------------------------------------------------------------------------ */

/* Everything learned goes, and every thread's stack with it (by the
 * generation, the others' at their next event). No other thread may be
 * inside the checker meanwhile. */
void rcl__ld_reset(void)
{
    rcl__symbolize_forget();
    pthread_mutex_lock(&rcl__ld_graph_lock);
    rcl__ld_graph_clear_locked();
    rcl__ld_reports_clear_locked();
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&graph_gen, gen ? gen : 1, memory_order_release);
    atomic_store_explicit(&rcl__ld_nr_reports, 0, memory_order_relaxed);
    atomic_store_explicit(&ld_lost_told, 0, memory_order_relaxed);
    atomic_store_explicit(&ld_full_told, 0, memory_order_relaxed);
    atomic_store_explicit(&ld_deep_told, 0, memory_order_relaxed);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    ld_thread_forget(ld_self, 0);
}

void rcl__lockdep_start(int mode)
{
    if (mode == RCL_LOCKDEP_OFF)
        atomic_store(&ld_blind, true);
    rcl__lockdep_set_mode(mode);
}

void rcl__lockdep_set_mode(int mode)
{
    if (mode != RCL_LOCKDEP_OFF)
        rcl__ld_unwinder_load();
    atomic_store(&rcl__lockdep_mode, mode);
    rcl__lockdep_thread_attach();
}

unsigned long rcl__lockdep_count(void)
{
    return atomic_load_explicit(&rcl__ld_nr_reports, memory_order_acquire);
}

unsigned long rcl_lockdep_reports(void) { return rcl__lockdep_count(); }

unsigned long rcl__lockdep_learns(void)
{
    return atomic_load_explicit(&ld_learns, memory_order_relaxed);
}

void rcl__lockdep_graph_size(unsigned *nodes, unsigned *edges)
{
    pthread_mutex_lock(&rcl__ld_graph_lock);
    *nodes = rcl__ld_nr_nodes;
    *edges = rcl__ld_nr_edges;
    pthread_mutex_unlock(&rcl__ld_graph_lock);
}

/* ------------------------------------------------------------------------ */
/* Unregistering a class                                                     */
/* ------------------------------------------------------------------------ */

/* An unregistered class's id, beside a gen of 0 (no graph's): a second
 * unregister finds it. A use in between registers the class again, which
 * writes both. */
#define CLASS_GONE UINT_MAX

/* The tid of a thread whose stack holds node id of graph gen, or 0. A
 * stack above MAX_HELD does not say what it holds there. */
static long class_holder_locked(uint32_t id, unsigned gen)
{
    rcl__assert_held(&ld_threads_lock);
    for (const struct ld_thread *t = ld_threads; t; t = t->next) {
        if (ld_get(t->gen) != gen)
            continue;   /* what it held was forgotten with its graph */
        unsigned n = __atomic_load_n(&t->n, __ATOMIC_ACQUIRE);
        for (unsigned i = 0; i < n && i < MAX_HELD; i++)
            if (ld_node_class(ld_get(t->held[i])) == id)
                return t->tid;
    }
    return 0;
}

/* Node id is about to be another class's: a stack that cached it as
 * known to follow one of its locks would take that class after the lock
 * with no edge, the one the drop took away. */
static void node_uncache_locked(uint32_t id)
{
    rcl__assert_held(&ld_threads_lock);
    for (struct ld_thread *t = ld_threads; t; t = t->next)
        for (unsigned i = 0; i < MAX_HELD; i++) {
            uint32_t want = id;
            __atomic_compare_exchange_n(&t->next_ok[i], &want, 0, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED);
        }
}

/* ...and so are the nodes of its subclasses, which go with it. */
static void class_uncache_locked(uint32_t id)
{
    node_uncache_locked(id);
    for (unsigned i = 0; i < RCL_LOCK_SUBCLASSES - 1; i++) {
        uint32_t sub = __atomic_load_n(&rcl__ld_nodes[id].sub[i], __ATOMIC_RELAXED);
        if (sub)
            node_uncache_locked(sub);
    }
}

/* 0, -ENOENT (unregistered before), or -EBUSY with the holder's tid. */
static int class_unregister_locked(struct rcl_lock_class *c, long *holder)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);
    unsigned cgen = __atomic_load_n(&c->rcl_gen, __ATOMIC_RELAXED);
    unsigned id = __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED);

    if (cgen == 0 && id == CLASS_GONE)
        return -ENOENT;
    /* Only a class used in this graph has a node to give back. */
    if (cgen == gen) {
        pthread_mutex_lock(&ld_threads_lock);
        *holder = class_holder_locked(id, gen);
        if (!*holder)
            class_uncache_locked(id);
        pthread_mutex_unlock(&ld_threads_lock);
        if (*holder)
            return -EBUSY;
        rcl__ld_class_drop_locked(id);
    }
    __atomic_store_n(&c->rcl_gen, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->rcl_id, CLASS_GONE, __ATOMIC_RELAXED);
    return 0;
}

int rcl_lock_class_unregister(struct rcl_lock_class *c)
{
    long holder = 0;

    if (!c) {
        rcl__report("rcl_lock_class_unregister: NULL lock class");
        return -EINVAL;
    }
    const char *name = c->name ? c->name : "(unnamed)";
    pthread_mutex_lock(&rcl__ld_graph_lock);
    int rc = class_unregister_locked(c, &holder);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    /* Reported with the graph lock let go: the report function may take
     * annotated locks of its own. */
    if (rc == -ENOENT)
        rcl__report("rcl_lock_class_unregister: class \"%s\" unregistered twice, with no "
                    "use in between", name);
    if (rc == -EBUSY) {
        rcl__report_counted(rcl__ld_counted,
                            "lock checker: rcl_lock_class_unregister() of class \"%s\", which "
                            "thread %ld holds a lock of; the class stays registered. What it "
                            "means: the lock is still in use, so the memory it lives in is not "
                            "the program's to free yet. Usual fix: unregister the class after "
                            "the last lock of it is released, as pthread_mutex_destroy() comes "
                            "after the last unlock.",
                            name, holder);
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Annotated mutexes                                                         */
/* ------------------------------------------------------------------------ */

int rcl_mutex_init(rcl_mutex_t *m, struct rcl_lock_class *cls)
{
    if (!m) {
        rcl__report("rcl_mutex_init(NULL, %p): NULL mutex; nothing done", (void *)cls);
        return -EINVAL;
    }
    m->cls = cls;
    return -pthread_mutex_init(&m->m, NULL);
}

HOT_ENTRY void rcl_mutex_lock(rcl_mutex_t *m)
{
    if (!m) {
        rcl__report("rcl_mutex_lock: NULL mutex");
        return;
    }
    /* Annotate before blocking: a cycle is reported even when this very
     * acquisition is the one that would hang. */
    if (m->cls && unlikely(!acquire_entry(m->cls, m, 0)))
        return;
    pthread_mutex_lock(&m->m);
}

void rcl_mutex_lock_nested(rcl_mutex_t *m, unsigned subclass)
{
    if (!m) {
        rcl__report("rcl_mutex_lock_nested: NULL mutex");
        return;
    }
    /* A destroyed mutex goes the nested way at subclass 0 too, to be
     * reported as this call. */
    if (m->cls && (subclass || unlikely(m->cls == &ld_destroyed))) {
        if (unlikely(!acquire_nested(m->cls, m, subclass, "rcl_mutex_lock_nested",
                                     __builtin_return_address(0))))
            return;
    } else if (m->cls && unlikely(!acquire_entry(m->cls, m, 0))) {
        return;
    }
    pthread_mutex_lock(&m->m);
}

int rcl_mutex_trylock(rcl_mutex_t *m)
{
    if (!m) {
        rcl__report("rcl_mutex_trylock(NULL): NULL mutex; nothing locked");
        return EINVAL;
    }
    int rc = pthread_mutex_trylock(&m->m);
    if (rc == 0 && m->cls)
        (void)acquire_entry(m->cls, m, HELD_TRY);
    return rc;
}

HOT_ENTRY void rcl_mutex_unlock(rcl_mutex_t *m)
{
    if (!m) {
        rcl__report("rcl_mutex_unlock: NULL mutex");
        return;
    }
    if (m->cls && unlikely(!release(m->cls, m)))
        return;
    pthread_mutex_unlock(&m->m);
}

/* Does this thread's stack hold m? (Another thread's entries are theirs
 * to write, and not read here.) */
static bool mutex_held_by_self(const rcl_mutex_t *m)
{
    const struct ld_thread *t = ld_self;

    if (!rcl__checking() || t->gen != atomic_load_explicit(&graph_gen, memory_order_relaxed))
        return false;
    for (unsigned i = 0; i < t->n && i < MAX_HELD; i++)
        if ((t->flags[i] & HELD_MUTEX) && t->inst[i] == m)
            return true;
    return false;
}

static __attribute__((noinline, cold)) void mutex_destroy_busy(const rcl_mutex_t *m,
                                                               const void *site)
{
    struct site st;
    const char *name = !m->cls ? "(none)" : m->cls->name ? m->cls->name : "(unnamed)";

    /* With the checker off the unwinder may not be loaded, and its first
     * load is not to race a fork (lockdep_report.c, rcl__ld_unwinder_load()). */
    if (rcl__checking())
        rcl__ld_site_capture_from(&st, site);
    else
        rcl__ld_site_self(&st);
    rcl__ld_report_mutex_busy(m, name, mutex_held_by_self(m), &st, rcl__checking());
}

/*
 * POSIX leaves the destroy of a locked mutex undefined: glibc says EBUSY
 * and leaves it, another C library may free it under its holder. A
 * trylock tells "locked" everywhere, whoever holds it (the caller too: a
 * trylock of a normal mutex does not recurse), and the lock it may take
 * is let go before the destroy, which must not find it held either.
 */
int rcl_mutex_destroy(rcl_mutex_t *m)
{
    if (!m) {
        rcl__report("rcl_mutex_destroy(NULL): NULL mutex; nothing done");
        return -EINVAL;
    }
    int rc = pthread_mutex_trylock(&m->m);
    if (rc == EBUSY) {
        mutex_destroy_busy(m, __builtin_return_address(0));
        return -EBUSY;
    }
    if (rc) {
        /* glibc: EINVAL for a mutex destroyed already. A second destroy
         * is the program's bug, as a pool's or a queue's is. */
        rcl__report("rcl_mutex_destroy(%p): not a live mutex (destroyed already?); nothing "
                    "done", (void *)m);
        return -rc;
    }
    pthread_mutex_unlock(&m->m);
    rc = pthread_mutex_destroy(&m->m);
    if (!rc)
        m->cls = &ld_destroyed;
    return -rc;
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

void rcl__lockdep_atfork_prepare(void)
{
    pthread_mutex_lock(&rcl__ld_graph_lock);
    pthread_mutex_lock(&ld_threads_lock);
}

void rcl__lockdep_atfork_parent(void)
{
    pthread_mutex_unlock(&ld_threads_lock);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
}

/* The child's one thread is the only one with a stack: the others' are
 * copies that no thread's exit would unmap, and what they held no thread
 * of the child holds; the report buffers they held are free. */
void rcl__lockdep_atfork_child(void)
{
    struct ld_thread *t = ld_threads;

    while (t) {
        struct ld_thread *next = t->next;
        if (t != ld_self)
            munmap(t, sizeof(*t));
        t = next;
    }
    ld_threads = NULL;
    if (ld_self != &ld_none && ld_self != &ld_lost)
        LIST_PUSH(ld_threads, ld_self);
    rcl__ld_reports_atfork_child_locked();
    pthread_mutex_unlock(&ld_threads_lock);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
}
