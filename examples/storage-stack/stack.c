/* SPDX-License-Identifier: MIT */
/*
 * stack.c - the storage stack of the "Overhaul memalloc_no*" thread
 * (dm-devel, June 2020): a file system, its buffer cache
 * and a loop device whose back end is the same file system.
 *
 * Every wait in here is a timed wait that gives up once stack_abort() is
 * called: the deadlock of act 2 is real (nothing in the stack would ever
 * end it), but the demo must always be able to unwind and exit.
 */
#include "stack.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct stack_counters stack_counters;
struct thread_state stack_states[STATE_SLOTS];
_Atomic unsigned stack_nstates;

static struct stack_opts opts;
static _Atomic int aborting, stopping;
static _Atomic unsigned act_gen;

/* The lock classes the checker sees. */
static RCL_LOCK_CLASS(journal_class, "fs_journal_lock");
static RCL_LOCK_CLASS(loop_work_class, "loop_work");

unsigned long long stack_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static struct timespec deadline_ms(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    return ts;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------ */
/* Thread states, for the watchdog                                           */
/* ------------------------------------------------------------------------ */

static __thread struct thread_state *me;
static __thread unsigned me_gen;

static struct thread_state *state_me(void)
{
    if (!me || me_gen != atomic_load(&act_gen)) {
        unsigned i = atomic_fetch_add(&stack_nstates, 1);
        if (i >= STATE_SLOTS)
            return me = NULL;
        me = &stack_states[i];
        me_gen = atomic_load(&act_gen);
        pthread_getname_np(pthread_self(), me->name, sizeof(me->name));
    }
    return me;
}

static const char *state_get(void)
{
    struct thread_state *s = state_me();
    return s ? atomic_load(&s->what) : NULL;
}

static void state_set(const char *what, long io)
{
    struct thread_state *s = state_me();
    if (!s)
        return;
    atomic_store(&s->io, io);
    atomic_store(&s->since_ns, stack_now_ns());
    atomic_store(&s->what, what);
}

void stack_print_states(void)
{
    unsigned n = atomic_load(&stack_nstates);
    unsigned long long now = stack_now_ns();
    printf("      %-13s %-7s %-66s%-10s %s\n", "thread", "holds", "doing", "loop I/O", "since");
    for (unsigned i = 0; i < n && i < STATE_SLOTS; i++) {
        struct thread_state *s = &stack_states[i];
        const char *what = atomic_load(&s->what);
        long io = atomic_load(&s->io);
        char ionum[32] = "";
        if (io >= 0)
            snprintf(ionum, sizeof(ionum), "#%ld", io);
        printf("      %-13s %-7s %-66s%-10s %5.0f ms\n", s->name,
               atomic_load(&s->holds_journal) ? "JOURNAL" : "", what ? what : "(no state)",
               ionum, (double)(now - atomic_load(&s->since_ns)) / 1e6);
    }
}

unsigned long long stack_progress(void)
{
    return atomic_load(&stack_counters.bytes_written) + atomic_load(&stack_counters.ios) +
           atomic_load(&stack_counters.files);
}

/* ------------------------------------------------------------------------ */
/* The file system's journal lock                                            */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t journal = PTHREAD_MUTEX_INITIALIZER;
static char backing[64][4096];     /* the back-end file's blocks, under journal */

/* 0 with the journal lock held; -1 when the stack is aborting. The
 * annotation comes first: the checker sees the dependency even when this
 * very call is the one that hangs. */
static int journal_lock(void)
{
    rcl_lock_acquire(&journal_class);
    for (;;) {
        struct timespec until = deadline_ms(50);
        if (pthread_mutex_timedlock(&journal, &until) == 0) {
            if (state_me())
                atomic_store(&me->holds_journal, 1);
            return 0;
        }
        if (atomic_load(&aborting)) {
            rcl_lock_release(&journal_class);
            return -1;
        }
    }
}

static void journal_unlock(void)
{
    if (state_me())
        atomic_store(&me->holds_journal, 0);
    rcl_lock_release(&journal_class);
    pthread_mutex_unlock(&journal);
}

/* Allocation that retries (slept, not spun) until it succeeds or the stack
 * stops: what a file system does with a failed metadata allocation. */
static void *alloc_retry(size_t size, rcl_gfp_t gfp)
{
    for (;;) {
        void *p = rcl_alloc(size, gfp | RCL__NOWARN);
        if (p)
            return p;
        atomic_fetch_add(&stack_counters.alloc_retries, 1);
        if (atomic_load(&aborting) || atomic_load(&stopping))
            return NULL;
        sleep_ms(1);
    }
}

/* ------------------------------------------------------------------------ */
/* The loop device                                                           */
/* ------------------------------------------------------------------------ */

struct io_req {
    struct io_req *next;
    const char *data;
    long no;
    int done;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    struct io_req *head, **tail;
    long next_no;
    int stop;
    pthread_t thread;
} loop = { .lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
           .done = PTHREAD_COND_INITIALIZER };

/* Write one block through the loop device and wait for it: 0, or -1 when
 * the device is stopping or the stack aborts. Waiting for the worker is
 * annotated as the kernel annotates flush_work(): acquire + release of
 * the class the worker holds while it serves. */
static int loop_write_sync(const char *data, const char *waiting_state)
{
    struct io_req r = { .data = data };
    const char *before = state_get();
    long before_io = me ? atomic_load(&me->io) : -1;

    rcl_lock_acquire(&loop_work_class);
    rcl_lock_release(&loop_work_class);

    pthread_mutex_lock(&loop.lock);
    if (loop.stop || atomic_load(&aborting)) {
        pthread_mutex_unlock(&loop.lock);
        return -1;
    }
    r.no = ++loop.next_no;
    *loop.tail = &r;
    loop.tail = &r.next;
    pthread_cond_signal(&loop.work);
    state_set(waiting_state, r.no);
    while (!r.done) {
        struct timespec until = deadline_ms(50);
        pthread_cond_timedwait(&loop.done, &loop.lock, &until);
        if (r.done || !atomic_load(&aborting))
            continue;
        /* Aborting: a request still queued is withdrawn; one the worker
         * holds is waited for (the worker's own waits abort too). */
        struct io_req **pp = &loop.head;
        while (*pp && *pp != &r)
            pp = &(*pp)->next;
        if (*pp) {
            *pp = r.next;
            if (loop.tail == &r.next)
                loop.tail = pp;
            break;
        }
    }
    pthread_mutex_unlock(&loop.lock);
    state_set(before, before_io);
    return r.done ? 0 : -1;
}

/* The memory a request takes to serve, from a pool that keeps one in
 * reserve: the I/O that reclaim waits for must never wait for reclaim
 * itself, so, as a block driver's requests come from a pool set up
 * beforehand (a mempool, a tag set), the worker never fails to get one.
 * Allocated in the worker's NOIO scope alone, with reclaim waiting on
 * dirty buffers the worker alone can write, it failed whenever the budget
 * was full - a deadlock of its own, before the one the acts are about. */
static struct rcl_mempool *loop_reqs;

static void loop_serve(struct io_req *r)
{
    static _Atomic unsigned slot;

    rcl_lock_acquire(&loop_work_class);
    state_set("serving I/O: taking a request from its pool", r->no);
    void *track = rcl_mempool_alloc(loop_reqs, RCL_DEFAULT);
    state_set("serving I/O: writing the back-end file, wants the journal lock", r->no);
    if (journal_lock() == 0) {
        /* The back-end file lives on the same file system: its write is
         * journalled like any other. */
        memcpy(backing[atomic_fetch_add(&slot, 1) % 64], r->data, 4096);
        journal_unlock();
    }
    rcl_mempool_free(track, loop_reqs);
    rcl_lock_release(&loop_work_class);
    atomic_fetch_add(&stack_counters.ios, 1);
    state_set("idle, waiting for I/O", -1);
}

static void *loop_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "loop0");
    unsigned noio = opts.loop_noio ? rcl_noio_save() : 0;
    state_set("idle, waiting for I/O", -1);
    pthread_mutex_lock(&loop.lock);
    for (;;) {
        if (!loop.head) {
            if (loop.stop)
                break;
            pthread_cond_wait(&loop.work, &loop.lock);
            continue;
        }
        struct io_req *r = loop.head;
        loop.head = r->next;
        if (!loop.head)
            loop.tail = &loop.head;
        pthread_mutex_unlock(&loop.lock);
        loop_serve(r);
        pthread_mutex_lock(&loop.lock);
        r->done = 1;
        pthread_cond_broadcast(&loop.done);
    }
    pthread_mutex_unlock(&loop.lock);
    if (opts.loop_noio)
        rcl_noio_restore(noio);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The buffer cache                                                          */
/* ------------------------------------------------------------------------ */

struct buf {
    struct rcl_lru_node lru;
    int dirty;                 /* written by whoever owns the buffer off the LRU */
    char data[4096];
};

static struct rcl_lru *bufs;
static struct rcl_shrinker *buf_shrinker;

/* The fixed stack also bounds how many write-backs one shrinker call
 * waits for and leaves the rest to the flusher: the background reclaimer
 * runs these calls, and must not be held up for long (the "Overhaul
 * memalloc_no*" thread (dm-devel, June 2020): "you
 * should not block kswapd"; the lock checker reports a shrinker call over
 * a second). Four: under ThreadSanitizer, with the loop device's queue
 * full, eight took a call 1.04 s. */
#define FIXED_WAITS_PER_SCAN 4

struct buf_walk { int may_wait; unsigned waits_left; };

/* Under the LRU lock: clean buffers go; dirty ones only when the shrinker
 * may wait for their write-back, and while it has waits left. */
static enum rcl_lru_walk buf_isolate(struct rcl_lru_node *n, void *arg)
{
    struct buf *b = RCL_LRU_ENTRY(n, struct buf, lru);
    struct buf_walk *w = arg;
    if (!b->dirty)
        return RCL_LRU_REMOVED;
    if (!w->may_wait || !w->waits_left)
        return RCL_LRU_SKIP;
    w->waits_left--;
    return RCL_LRU_REMOVED;
}

static unsigned long buf_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return rcl_lru_count(bufs);
}

static unsigned long buf_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    /* The whole bug of the "Overhaul memalloc_no*" thread (dm-devel, June
     * 2020) is this one line. 2014: "I/O is allowed, so I may wait for I/O".
     * Fixed: I/O through a loop device may need the file system, so waiting
     * also needs FS. */
    rcl_gfp_t need = opts.fixed_bufcache ? (RCL__IO | RCL__FS) : RCL__IO;
    struct buf_walk w = { (sc->gfp & need) == need,
                          opts.fixed_bufcache ? FIXED_WAITS_PER_SCAN : UINT_MAX };
    struct rcl_lru_node dispose, *n;
    unsigned long freed = 0;

    rcl_lru_list_init(&dispose);
    rcl_lru_walk(bufs, buf_isolate, &w, sc->nr_to_scan, &dispose);
    while ((n = rcl_lru_list_pop(&dispose)) != NULL) {
        struct buf *b = RCL_LRU_ENTRY(n, struct buf, lru);
        if (b->dirty) {
            loop_write_sync(b->data, (sc->gfp & RCL__FS)
                ? "in reclaim: buffer-cache shrinker waits for loop I/O"
                : "in reclaim (NOFS): buffer-cache shrinker waits for loop I/O");
            atomic_fetch_add(&stack_counters.writebacks_in_reclaim, 1);
        }
        rcl_free(b);
        freed++;
    }
    atomic_fetch_add(&stack_counters.buffers_dropped, freed);
    return freed;
}

static const struct rcl_shrinker_ops buf_ops = { buf_count, buf_scan };

/* The flusher: writes dirty buffers back in the background, holding
 * nothing, so that reclaim mostly finds clean ones. */
static enum rcl_lru_walk dirty_isolate(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    return RCL_LRU_ENTRY(n, struct buf, lru)->dirty ? RCL_LRU_REMOVED : RCL_LRU_SKIP;
}

static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "flusher");
    while (!atomic_load(&stopping) && !atomic_load(&aborting)) {
        struct rcl_lru_node list, *n;
        rcl_lru_list_init(&list);
        state_set("looking for dirty buffers", -1);
        rcl_lru_walk(bufs, dirty_isolate, NULL, 16, &list);
        while ((n = rcl_lru_list_pop(&list)) != NULL) {
            struct buf *b = RCL_LRU_ENTRY(n, struct buf, lru);
            if (loop_write_sync(b->data, "writing back a dirty buffer, waits for loop I/O") == 0)
                b->dirty = 0;
            rcl_lru_add(bufs, &b->lru);
        }
        state_set("sleeping", -1);
        sleep_ms(2);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The file system: inode cache and write path                               */
/* ------------------------------------------------------------------------ */

struct inode {
    struct rcl_lru_node lru;
    unsigned long ino;
    char meta[480];
};

static struct rcl_lru *inodes;
static struct rcl_shrinker *inode_shrinker;

static unsigned long inode_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return rcl_lru_count(inodes);
}

/* An FS shrinker (needs RCL__FS): evicting inodes is journalled. */
static unsigned long inode_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct rcl_lru_node dispose, *n;
    unsigned long freed = 0;
    (void)priv;

    rcl_lru_list_init(&dispose);
    if (!rcl_lru_walk(inodes, NULL, NULL, sc->nr_to_scan, &dispose))
        return 0;
    const char *before = state_get();
    state_set("in reclaim: inode-cache shrinker wants the journal lock", -1);
    int locked = journal_lock() == 0;
    while ((n = rcl_lru_list_pop(&dispose)) != NULL) {
        rcl_free(RCL_LRU_ENTRY(n, struct inode, lru));
        freed++;
    }
    if (locked)
        journal_unlock();
    state_set(before, -1);
    atomic_fetch_add(&stack_counters.inodes_evicted, freed);
    return freed;
}

static const struct rcl_shrinker_ops inode_ops = { inode_count, inode_scan };

static void *writer_main(void *arg)
{
    unsigned long ino = (unsigned long)(uintptr_t)arg << 32;
    char name[16];
    snprintf(name, sizeof(name), "writer%u", (unsigned)(uintptr_t)arg);
    pthread_setname_np(pthread_self(), name);

    while (!atomic_load(&stopping) && !atomic_load(&aborting)) {
        state_set("creating a file (DEFAULT allocation)", -1);
        struct inode *in = alloc_retry(sizeof(*in), RCL_DEFAULT);
        if (!in)
            break;
        rcl_lru_node_init(&in->lru);
        in->ino = ino++;
        rcl_lru_add(inodes, &in->lru);
        atomic_fetch_add(&stack_counters.files, 1);

        /* A transaction: the file system is in NOFS scope throughout, as
         * file systems are while they hold journal resources. */
        unsigned nofs = rcl_nofs_save();
        state_set("in a transaction (NOFS scope): allocating it and a buffer", -1);
        void *tx = alloc_retry(256, RCL_DEFAULT);
        struct buf *b = tx ? alloc_retry(sizeof(*b), RCL_DEFAULT) : NULL;
        int committed = 0;
        while (b && !committed) {
            state_set("in a transaction: waiting for the journal lock", -1);
            if (journal_lock())
                break;
            /* The journal record is allocated under the journal lock
             * (NOFS): if memory is short this allocation reclaims
             * directly, with the lock held. That is step 1 of the deadlock
             * in the "Overhaul memalloc_no*" thread (dm-devel, June 2020). */
            state_set("allocating a journal record (NOFS)", -1);
            void *rec = rcl_alloc(512, RCL_NOFS | RCL__NOWARN);
            if (rec) {
                memset(rec, 0, 512);
                rcl_free(rec);
                committed = 1;
            }
            journal_unlock();
            if (!committed) {
                /* Never retry with the lock held: what frees memory (the
                 * flusher, through the loop device) needs it. */
                atomic_fetch_add(&stack_counters.alloc_retries, 1);
                if (atomic_load(&aborting) || atomic_load(&stopping))
                    break;
                sleep_ms(1);
            }
        }
        if (committed) {
            rcl_lru_node_init(&b->lru);
            memset(b->data, (int)(ino & 0xff), sizeof(b->data));
            b->dirty = 1;
            rcl_lru_add(bufs, &b->lru);
            atomic_fetch_add(&stack_counters.bytes_written, sizeof(b->data));
        } else {
            rcl_free(b);
        }
        rcl_free(tx);
        rcl_nofs_restore(nofs);
    }
    state_set("finished", -1);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

static pthread_t writers[STACK_MAX_WRITERS], flusher;
static int nwriters, loop_running, flusher_running;

static void stack_free(void);

int stack_start(const struct stack_opts *o)
{
    opts = *o;
    if (opts.writers < 1)
        opts.writers = 1;
    if (opts.writers > STACK_MAX_WRITERS)
        opts.writers = STACK_MAX_WRITERS;
    memset(&stack_counters, 0, sizeof(stack_counters));
    memset(stack_states, 0, sizeof(stack_states));
    atomic_store(&stack_nstates, 0);
    atomic_fetch_add(&act_gen, 1);
    atomic_store(&aborting, 0);
    atomic_store(&stopping, 0);
    loop.head = NULL;
    loop.tail = &loop.head;
    loop.stop = 0;

    bufs = rcl_lru_create();
    inodes = rcl_lru_create();
    buf_shrinker = rcl_shrinker_register("buffer-cache", &buf_ops, NULL, NULL);
    struct rcl_shrinker_opts io = { .needs = RCL__FS };
    inode_shrinker = rcl_shrinker_register("inode-cache", &inode_ops, NULL, &io);
    /* One request is served at a time: one in reserve is enough. */
    loop_reqs = rcl_mempool_create(1, 128);
    if (!bufs || !inodes || !buf_shrinker || !inode_shrinker || !loop_reqs)
        goto fail;

    if (pthread_create(&loop.thread, NULL, loop_main, NULL))
        goto fail;
    loop_running = 1;
    if (pthread_create(&flusher, NULL, flusher_main, NULL))
        goto fail;
    flusher_running = 1;
    /* Fewer writers than asked for would make every figure the acts
     * print about "the N writers" untrue. */
    for (nwriters = 0; nwriters < opts.writers; nwriters++)
        if (pthread_create(&writers[nwriters], NULL, writer_main,
                           (void *)(uintptr_t)(nwriters + 1)))
            goto fail;
    return 0;

fail:
    stack_abort();
    if (stack_stop(5000) == 0)
        return -1;
    /* A thread that did not come back still uses what it was given. */
    fprintf(stderr, "storage-stack: a thread did not stop; exiting\n");
    fflush(stdout);
    _exit(2);
}

void stack_abort(void)
{
    atomic_store(&aborting, 1);
    pthread_mutex_lock(&loop.lock);
    pthread_cond_broadcast(&loop.done);
    pthread_cond_broadcast(&loop.work);
    pthread_mutex_unlock(&loop.lock);
}

static int join_by(pthread_t th, unsigned long long deadline_ns)
{
    unsigned long long now = stack_now_ns();
    unsigned ms = deadline_ns > now ? (unsigned)((deadline_ns - now) / 1000000ull) : 0;
    struct timespec until = deadline_ms(ms);
    return pthread_timedjoin_np(th, NULL, &until) == 0 ? 0 : -1;
}

static void drain(struct rcl_lru *lru, size_t offset)
{
    struct rcl_lru_node list, *n;
    rcl_lru_list_init(&list);
    while (rcl_lru_count(lru)) {
        rcl_lru_walk(lru, NULL, NULL, ~0UL, &list);
        while ((n = rcl_lru_list_pop(&list)) != NULL)
            rcl_free((char *)n - offset);
    }
}

/* A thread stuck in the deadlock does not stop when asked (an act's time
 * can run out inside it before the watchdog calls it a hang): past
 * *deadline, every wait gives up, as at a hang, and the threads have a
 * whole span more to unwind. */
static int join_or_abort(pthread_t th, unsigned long long *deadline, unsigned long long span)
{
    if (join_by(th, *deadline) == 0)
        return 0;
    if (atomic_load(&aborting))
        return -1;
    stack_abort();
    *deadline = stack_now_ns() + span;
    return join_by(th, *deadline);
}

int stack_stop(unsigned timeout_ms)
{
    unsigned long long span = (unsigned long long)timeout_ms * 1000000ull;
    unsigned long long deadline = stack_now_ns() + (atomic_load(&aborting) ? span : span / 2);
    int ok = 0;

    atomic_store(&stopping, 1);
    for (int i = 0; i < nwriters; i++)
        ok |= join_or_abort(writers[i], &deadline, span);
    if (flusher_running)
        ok |= join_or_abort(flusher, &deadline, span);
    flusher_running = 0;
    nwriters = 0;
    /* Writers and flusher are gone; the loop device serves what is queued
     * and stops. The shrinkers may still run (the background reclaimer):
     * their write-back now fails fast instead of waiting. */
    pthread_mutex_lock(&loop.lock);
    loop.stop = 1;
    pthread_cond_broadcast(&loop.work);
    pthread_mutex_unlock(&loop.lock);
    if (loop_running)
        ok |= join_or_abort(loop.thread, &deadline, span);
    loop_running = 0;
    if (ok)
        return -1;
    stack_free();
    return 0;
}

/* What stack_start() made, any part of it missing. */
static void stack_free(void)
{
    if (buf_shrinker)
        rcl_shrinker_unregister(buf_shrinker);
    if (inode_shrinker)
        rcl_shrinker_unregister(inode_shrinker);
    buf_shrinker = inode_shrinker = NULL;
    if (bufs) {
        drain(bufs, offsetof(struct buf, lru));
        rcl_lru_destroy(bufs);
    }
    if (inodes) {
        drain(inodes, offsetof(struct inode, lru));
        rcl_lru_destroy(inodes);
    }
    bufs = inodes = NULL;
    rcl_mempool_destroy(loop_reqs);
    loop_reqs = NULL;
}
