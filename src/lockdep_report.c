/* SPDX-License-Identifier: MIT */
/*
 * lockdep_report.c - the lock checker's reports: composing a cycle into
 * its chain, one line per dependency with where it was first seen, and
 * what it means; the memory of what was reported already, so each cycle
 * and each site is told once; handing the text to the report channel.
 *
 * The buffers reports are composed in are the checker's own, mapped in
 * chunks and kept on a free list, never malloc()'s: an annotated lock may
 * sit inside the program's allocator, and a report made there would enter
 * that allocator again from inside its lock. A reset unmaps them, once
 * no report holds one.
 */
#include "lockdep_internal.h"

#include <execinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_CYCLES  256
#define MAX_SITES   256

const char *const rcl__ld_class_name[NCLASS] = { "none", "IO", "FS+IO" };

_Atomic unsigned long rcl__ld_nr_reports;
static uint64_t reported_cycles[MAX_CYCLES];          /* under the graph lock */
static unsigned nr_reported_cycles;
static uint64_t reported_sites[MAX_SITES];            /* under the graph lock */
static unsigned nr_reported_sites;

void rcl__ld_site_self(struct site *st)
{
    st->nframes = 0;
    st->thread[0] = '\0';
    pthread_getname_np(pthread_self(), st->thread, sizeof(st->thread));
    st->tid = (long)syscall(SYS_gettid);
}
/* A mapping of report buffers. Under the graph lock, as is the free list:
 * a buffer is taken there for a cycle found, and reports are rare. */
#define RB_CHUNK 8
struct rb_chunk {
    struct rb_chunk  *next;
    struct report_buf rb[RB_CHUNK];
};
static struct rb_chunk   *rb_chunks;
static struct report_buf *rb_free;
static unsigned           rb_busy;   /* taken and not given back */

__attribute__((noinline)) void rcl__ld_site_capture(struct site *st, int skip)
{
    void *buf[MAX_FRAMES + 4];
    int n = backtrace(buf, MAX_FRAMES + skip);

    rcl__ld_site_self(st);
    n = n > skip ? n - skip : 0;
    memcpy(st->frames, buf + skip, (size_t)n * sizeof(void *));
    st->nframes = n;
}

void rcl__ld_site_capture_from(struct site *st, const void *ret)
{
    rcl__ld_site_capture(st, 1);
    for (int i = 0; i < st->nframes; i++) {
        if (st->frames[i] == ret) {
            st->nframes -= i;
            memmove(st->frames, st->frames + i, (size_t)st->nframes * sizeof(void *));
            return;
        }
    }
}

/* glibc's backtrace() loads the unwinder (libgcc_s) with dlopen() at its
 * first call. A fork while another thread is inside that dlopen hands the
 * child a half-loaded library, and the child's first backtrace crashes: an
 * assertion in ld.so ("r_state == RT_CONSISTENT") or a call through an
 * unrelocated pointer. Loading it while the checker is turned on, before
 * any thread can take a backtrace for it, leaves no such window. */
void rcl__ld_unwinder_load(void)
{
    void *frame;
    backtrace(&frame, 1);
}

/* ------------------------------------------------------------------------ */
/* Composition                                                               */
/* ------------------------------------------------------------------------ */

void rcl__ld_rb_add(struct report_buf *rb, const char *fmt, ...)
{
    /* Full, whether the last line overflowed or just fitted: this one is
     * lost. */
    if (rb->len >= sizeof(rb->text) - 1) {
        rcl__report_mark_cut(rb->text, sizeof(rb->text));
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rb->text + rb->len, sizeof(rb->text) - rb->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        rb->len += (size_t)n;
    if (rb->len > sizeof(rb->text) - 1) {
        rcl__report_mark_cut(rb->text, sizeof(rb->text));
        rb->len = sizeof(rb->text) - 1;
    }
}

void rcl__ld_rb_frames(struct report_buf *rb, void *const *frames, int n)
{
    char name[320];

    for (int i = 0; i < n; i++) {
        rcl__symbolize(frames[i], name, sizeof(name));
        rcl__ld_rb_add(rb, "        #%d %s\n", i, name);
    }
}

static void rb_edge(struct report_buf *rb, const struct edge *e)
{
    const struct node *f = &rcl__ld_nodes[e->from], *t = &rcl__ld_nodes[e->to];
    char gfp[RCL__GFP_STR_MAX];

    switch (e->kind) {
    case EDGE_CONTAIN:
        rcl__ld_rb_add(rb, "  %s \u2192 %s: reclaim allowed to do more also does everything the "
                           "narrower reclaim does (part of the model)\n", f->name, t->name);
        return;
    case EDGE_LOCK:
        if (f->kind == NODE_LOCK)
            rcl__ld_rb_add(rb, "  %s \u2192 %s: thread \"%s\" (tid %ld) took %s while holding %s, "
                               "first at:\n", f->name, t->name, e->thread, e->tid,
                           t->name, f->name);
        else
            rcl__ld_rb_add(rb, "  %s \u2192 %s: thread \"%s\" (tid %ld), in shrinker \"%s\" called by "
                               "reclaim in class %s, took %s (or waited for work done under it), "
                               "first at:\n", f->name, t->name, e->thread, e->tid,
                           e->shrinker[0] ? e->shrinker : "?", rcl__ld_class_name[f->cls], t->name);
        break;
    case EDGE_ALLOC:
        rcl__ld_rb_add(rb, "  %s \u2192 %s: thread \"%s\" (tid %ld) made an allocation that may "
                           "reclaim (%s) while holding %s, first at:\n",
                       f->name, t->name, e->thread, e->tid,
                       rcl__gfp_str(e->gfp, gfp, sizeof(gfp)), f->name);
        break;
    }
    rcl__ld_rb_frames(rb, e->frames, e->nframes);
}

/* Hops a reader does not need: reclaim(c) into its own global or domain
 * part. Only containment between classes is worth a line. */
static bool edge_is_silent(const struct edge *e)
{
    return e->kind == EDGE_CONTAIN && rcl__ld_nodes[e->from].cls == rcl__ld_nodes[e->to].cls;
}

static void cycle_what_it_means(struct report_buf *rb, bool reclaim, const char *holder,
                                const char *shrinker)
{
    if (reclaim)
        rcl__ld_rb_add(rb, "\n  What it means: a thread holding %s can enter memory reclaim, and "
                           "reclaim%s%s%s needs something that only becomes free after %s is "
                           "released; under memory pressure these threads wait for each other "
                           "forever. Usual fixes: a NOFS/NOIO scope (rcl_nofs_save/rcl_noio_save) "
                           "where the lock is held, so its allocations cannot recurse there; a "
                           "trylock (or skipping the work when sc->gfp lacks FS/IO) in that "
                           "shrinker; or do not wait for I/O or other threads in a shrinker.",
                       holder ? holder : "a lock", shrinker ? " (shrinker \"" : "",
                       shrinker ? shrinker : "", shrinker ? "\")" : "", holder ? holder : "it");
    else
        rcl__ld_rb_add(rb, "\n  What it means: these locks are taken in opposite orders by "
                           "different code paths; two threads can each hold one and wait for the "
                           "other forever. Usual fixes: always take them in one order, or take "
                           "the out-of-order one with a trylock and back off when it fails.");
}

void rcl__ld_report_cycle_locked(struct report_buf *rb, const uint32_t *cyc, unsigned len)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    const struct node *nodes = rcl__ld_nodes;
    bool reclaim = false;
    unsigned first = 0;
    const char *shrinker = NULL, *holder = NULL;

    /* Start the chain at the lock held across an allocation (that is where
     * the fix usually goes), else at the lock registered first. */
    uint64_t best = UINT64_MAX;
    for (unsigned i = 0; i < len; i++) {
        const struct edge *e = ld_edge(cyc[i]);
        uint64_t rank = (e->kind == EDGE_ALLOC ? 0 : 1ull << 32) | e->from;
        if (nodes[e->from].kind == NODE_LOCK && rank < best) {
            best = rank;
            first = i;
        }
        if (nodes[e->from].kind != NODE_LOCK || nodes[e->to].kind != NODE_LOCK)
            reclaim = true;
        if (e->kind == EDGE_LOCK && nodes[e->from].kind != NODE_LOCK && e->shrinker[0])
            shrinker = e->shrinker;
        if (e->kind == EDGE_ALLOC && !holder)
            holder = nodes[e->from].name;
    }

    rcl__ld_rb_add(rb, "lock checker: possible %s\n\n    ",
                   reclaim ? "memory-reclaim deadlock (a cycle through reclaim)"
                           : "deadlock (locks taken in a cycle)");
    /* A hop into the same class's global or domain part is not shown:
     * the node after it names the reclaim well enough. */
    const char *last = NULL;
    for (unsigned k = 0; k <= len; k++) {
        const struct edge *e = ld_edge(cyc[(first + k) % len]);
        if (k < len && edge_is_silent(e))
            continue;
        const char *label = nodes[e->from].name;
        if (k == len || !last || strcmp(label, last) != 0)
            rcl__ld_rb_add(rb, "%s%s", last ? " \u2192 " : "", label);
        last = label;
    }
    rcl__ld_rb_add(rb, "\n\n");
    for (unsigned k = 0; k < len; k++) {
        const struct edge *e = ld_edge(cyc[(first + k) % len]);
        if (!edge_is_silent(e))
            rb_edge(rb, e);
    }
    rcl__ld_rb_add(rb, "  (a frame without a name, program(+offset), is in a stripped file: "
                       "`addr2line -f -e program offset` on an unstripped copy names it)\n");
    cycle_what_it_means(rb, reclaim, holder, shrinker);
}

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */
/* ------------------------------------------------------------------------ */

struct report_buf *rcl__ld_rb_get_locked(bool counts)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    if (!rb_free) {
        struct rb_chunk *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (c == MAP_FAILED)
            return NULL;
        c->next = rb_chunks;
        rb_chunks = c;
        for (unsigned i = 0; i < RB_CHUNK; i++) {
            c->rb[i].next = rb_free;
            rb_free = &c->rb[i];
        }
    }
    struct report_buf *rb = rb_free;
    rb_free = rb->next;
    rb_busy++;
    rb->out = true;
    rb->owner = pthread_self();
    rb->len = 0;
    rb->text[0] = '\0';
    rb->counts = counts;
    return rb;
}

struct report_buf *rcl__ld_rb_get(bool counts)
{
    pthread_mutex_lock(&rcl__ld_graph_lock);
    struct report_buf *rb = rcl__ld_rb_get_locked(counts);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    return rb;
}

static void rb_put_locked(struct report_buf *rb)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    rcl__assert(rb->out && rb_busy);
    rb->out = false;
    rb_busy--;
    rb->next = rb_free;
    rb_free = rb;
}

struct rb_set {
    struct report_buf *const *rbs;
    unsigned n;
};

/* Every buffer of the set goes back: after the last report, or when a
 * report function ends its thread (pthread_exit()) in the middle, which
 * would otherwise take them with it for the graph's life. */
static void rb_set_put(void *arg)
{
    const struct rb_set *s = arg;

    rcl__asan_unwinding();
    pthread_mutex_lock(&rcl__ld_graph_lock);
    for (unsigned i = 0; i < s->n; i++) {
        if (s->rbs[i])
            rb_put_locked(s->rbs[i]);
    }
    pthread_mutex_unlock(&rcl__ld_graph_lock);
}

/* The cleanup handler's setjmp is paid here, where a report is made, and
 * nowhere on the path of a lock whose order is known. */
void rcl__ld_reports_emit(struct report_buf *const *rbs, unsigned n)
{
    struct rb_set s = { rbs, n };

    pthread_cleanup_push(rb_set_put, &s);
    for (unsigned i = 0; i < n; i++) {
        if (!rbs[i] || !rbs[i]->len)
            continue;
        rcl__report_counted(rbs[i]->counts ? rcl__ld_counted : NULL, "%s", rbs[i]->text);
    }
    pthread_cleanup_pop(1);
}

/* The buffers go with the graph, unless a report still holds one: a
 * thread whose exit nobody waits for may be reporting the locks it held
 * while another shuts the library down. The pool then stays as it is, for
 * the next graph, and that buffer comes back to it. */
static void rb_unmap_locked(void)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    if (rb_busy)
        return;
    while (rb_chunks) {
        struct rb_chunk *c = rb_chunks;
        rb_chunks = c->next;
        munmap(c, sizeof(*c));
    }
    rb_free = NULL;
    rb_busy = 0;
}

/* The child's one thread is the forking one; a report another thread of
 * the parent was making goes on only there, and its buffer would stay
 * taken for the child's life, the pool never unmapped. */
void rcl__ld_reports_atfork_child_locked(void)
{
    pthread_t self = pthread_self();

    rcl__assert_held(&rcl__ld_graph_lock);
    for (struct rb_chunk *c = rb_chunks; c; c = c->next)
        for (unsigned i = 0; i < RB_CHUNK; i++)
            if (c->rb[i].out && !pthread_equal(c->rb[i].owner, self))
                rb_put_locked(&c->rb[i]);
}

void rcl__lockdep_report_buffers(unsigned *mapped, unsigned *busy)
{
    unsigned n = 0;

    pthread_mutex_lock(&rcl__ld_graph_lock);
    for (const struct rb_chunk *c = rb_chunks; c; c = c->next)
        n += RB_CHUNK;
    *mapped = n;
    *busy = rb_busy;
    pthread_mutex_unlock(&rcl__ld_graph_lock);
}

/*
 * The kernel's lockdep calls it an unlock imbalance: a lock released twice,
 * by a thread other than the one that took it, or taken without an
 * annotation. An rcl_mutex_t is told by its address, a bare annotation by
 * its class alone.
 */
void rcl__ld_report_unheld(const char *name, const struct site *st, const rcl_mutex_t *m)
{
    struct report_buf *rb;

    if (rcl__ld_site_seen(rcl__ld_site_sig(0x554e48ull, st)) || !(rb = rcl__ld_rb_get(true)))
        return;
    if (m)
        rcl__ld_rb_add(rb, "lock checker: thread \"%s\" (tid %ld) unlocked mutex %p of class "
                           "%s, which it does not hold, at:\n", st->thread, st->tid,
                       (const void *)m, name);
    else
        rcl__ld_rb_add(rb, "lock checker: thread \"%s\" (tid %ld) released %s, which it does "
                           "not hold, at:\n", st->thread, st->tid, name);
    rcl__ld_rb_frames(rb, st->frames, st->nframes);
    rcl__ld_rb_add(rb, "  What it means: the release has no acquire on this thread to match: "
                       "the lock was released twice, or by a thread other than the one that "
                       "took it, or taken without an annotation.%s Usual fixes: release each "
                       "lock once, on the thread that took it; annotate every acquire.",
                   m ? " The mutex was left as it was: a mutex unlocked by a thread that does "
                       "not own it would let a second thread into what it guards." : "");
    rcl__ld_reports_emit(&rb, 1);
}

/* A subclass the checker keeps no node for, once a call site: the kernel's
 * lockdep refuses it as loudly, and turns itself off. */
void rcl__ld_report_bad_subclass(const char *call, const char *name, unsigned sub,
                                 const struct site *st)
{
    struct report_buf *rb;

    if (rcl__ld_site_seen(rcl__ld_site_sig(0x535542ull, st)) || !(rb = rcl__ld_rb_get(true)))
        return;
    rcl__ld_rb_add(rb, "lock checker: thread \"%s\" (tid %ld): %s() of class \"%s\" at "
                       "subclass %u, out of range (0 to %d); the lock is not annotated, at:\n",
                   st->thread, st->tid, call, name, sub, RCL_LOCK_SUBCLASSES - 1);
    rcl__ld_rb_frames(rb, st->frames, st->nframes);
    rcl__ld_rb_add(rb, "  What it means: a subclass is the depth of one lock of the class "
                       "among others of it, and the checker keeps %d. Usual fix: "
                       "RCL_SINGLE_DEPTH_NESTING for the inner of two locks, or a class of "
                       "its own for a deeper level.", RCL_LOCK_SUBCLASSES);
    rcl__ld_reports_emit(&rb, 1);
}

/*
 * The kernel's debug_check_no_locks_held() at a task's exit. The stack
 * keeps no backtrace of where each lock was taken (the acquire's hot path
 * would pay for it), so the report names them, innermost last, with the
 * mutex's address where there is one.
 */
void rcl__ld_report_exit_locked(struct report_buf *rb, const struct ld_thread *t,
                                const struct site *st)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    unsigned recorded = t->n < MAX_HELD ? t->n : MAX_HELD;

    rcl__ld_rb_add(rb, "lock checker: thread \"%s\" (tid %ld) exited holding %u annotated "
                       "lock%s, taken in this order:\n", st->thread, st->tid, t->n,
                   t->n == 1 ? "" : "s");
    for (unsigned i = 0; i < recorded; i++) {
        const char *name = rcl__ld_nodes[t->held[i]].name;
        if (t->flags[i] & HELD_MUTEX)
            rcl__ld_rb_add(rb, "    #%u mutex %p of class %s%s\n", i, t->inst[i], name,
                           (t->flags[i] & HELD_TRY) ? " (by a trylock)" : "");
        else
            rcl__ld_rb_add(rb, "    #%u %s%s\n", i, name,
                           (t->flags[i] & HELD_TRY) ? " (by a trylock)" : "");
    }
    if (t->n > MAX_HELD)
        rcl__ld_rb_add(rb, "    and %u more above the %d a thread's stack records\n",
                       t->n - MAX_HELD, MAX_HELD);
    rcl__ld_rb_add(rb, "  What it means: no thread holds these locks from now on, so none "
                       "will release them: a thread that waits for one waits for ever, and an "
                       "rcl_mutex_t among them stays locked. Usual fixes: release every lock "
                       "before the thread returns or calls pthread_exit(); where it may end "
                       "holding one (pthread_exit() or a cancel under the lock), release it in "
                       "a cleanup handler (pthread_cleanup_push()) or a thread-specific "
                       "data destructor.");
}

/* The kernel's mutex_destroy() warns of a locked mutex under
 * CONFIG_DEBUG_MUTEXES; destroyed, a pthread mutex whose holder still
 * unlocks it is undefined behaviour. */
void rcl__ld_report_mutex_busy(const rcl_mutex_t *m, const char *name, bool mine,
                               const struct site *st, bool counts)
{
    struct report_buf *rb = rcl__ld_rb_get(counts);

    if (!rb)
        return;
    rcl__ld_rb_add(rb, "rcl_mutex_destroy: thread \"%s\" (tid %ld) asked to destroy mutex %p of "
                       "class %s, which %s holds; refused (-EBUSY), the mutex left as it "
                       "was%s\n", st->thread, st->tid, (const void *)m, name,
                   mine ? "this thread" : "a thread", st->nframes ? ", at:" : ".");
    rcl__ld_rb_frames(rb, st->frames, st->nframes);
    rcl__ld_rb_add(rb, "  What it means: the mutex is still in use, so the memory it lives in "
                       "is not the program's to free or reuse yet; destroyed, its holder's "
                       "unlock would be undefined. Usual fix: destroy a mutex after its last "
                       "unlock, once no thread can take it again.");
    rcl__ld_reports_emit(&rb, 1);
}

/* After the report is handed over, not before: a program (or a test) that
 * sees the count go up, on any thread, finds the report where its report
 * function put it. rcl__report_counted() calls it then, even for a report
 * function that ends its thread. */
void rcl__ld_counted(void)
{
    atomic_fetch_add_explicit(&rcl__ld_nr_reports, 1, memory_order_release);
}

/* ------------------------------------------------------------------------ */
/* What was reported                                                         */
/* ------------------------------------------------------------------------ */

/* Was a report with signature sig made already? Remembers it if not (while
 * there is room: past it, reports repeat rather than go missing). */
static bool seen_locked(uint64_t *set, unsigned *n, unsigned max, uint64_t sig)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    for (unsigned i = 0; i < *n; i++)
        if (set[i] == sig)
            return true;
    if (*n < max)
        set[(*n)++] = sig;
    return false;
}

uint64_t rcl__ld_site_sig(uint64_t seed, const struct site *st)
{
    for (int i = 0; i < st->nframes; i++)
        seed = ld_mix64(seed ^ (uint64_t)(uintptr_t)st->frames[i]);
    return seed;
}

bool rcl__ld_site_seen(uint64_t sig)
{
    pthread_mutex_lock(&rcl__ld_graph_lock);
    bool seen = seen_locked(reported_sites, &nr_reported_sites, MAX_SITES, sig);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    return seen;
}

bool rcl__ld_cycle_seen_locked(const uint32_t *cyc, unsigned len)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    uint64_t sig = len;
    /* By the edges' serials, not their slots: a dropped node's slots are
     * taken again by edges of another cycle. Order-free: the same cycle
     * found from any edge. */
    for (unsigned i = 0; i < len; i++)
        sig += ld_mix64(ld_edge(cyc[i])->serial);
    return seen_locked(reported_cycles, &nr_reported_cycles, MAX_CYCLES, sig);
}

void rcl__ld_reports_clear_locked(void)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    nr_reported_cycles = nr_reported_sites = 0;
    rb_unmap_locked();
}
