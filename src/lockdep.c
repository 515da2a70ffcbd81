/* SPDX-License-Identifier: MIT */
/*
 * lockdep.c - the reclaim-recursion and lock-order checker.
 *
 * The graph's nodes are lock classes and reclaim pseudo-locks; an edge
 * A -> B says "a thread holding A waited for B" (took the lock B, or made
 * an allocation that may wait for reclaim B, or waited for work that runs
 * under B). A cycle is a deadlock that needs only the right interleaving,
 * so it is reported the first time the edges exist, long before the hang.
 *
 * Reclaim is modelled by context class (FS+IO > IO > none) in three kinds
 * of pseudo-lock node, so that domains can be told apart:
 *   reclaim(c)          "reclaim in class c": everything reclaim may run;
 *   reclaim(c) global   the shrinkers that belong to no domain, in class c;
 *   reclaim(c) of D     the shrinkers of domain D, in class c.
 * reclaim(c) contains the other two, and each kind contains its narrower
 * classes (edges from wider to narrower). An allocation outside every
 * domain that may reclaim in class c depends on reclaim(c); inside domains
 * it depends only on what the domain rules let reclaim call, so a lock of
 * a domain whose shrinkers are skipped never joins the allocation's cycle.
 *
 * Cost model. The hot path (an acquire/release pair on a lock order seen
 * before) touches only this thread's held-lock stack and one read of a
 * lock-free hash of known edges. Everything else - new classes, new edges,
 * the cycle search, reports - runs under graph_lock and may be slow.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

_Atomic int rcl__lockdep_mode;

/* ------------------------------------------------------------------------ */
/* Graph storage                                                             */
/* ------------------------------------------------------------------------ */

enum node_kind { NODE_LOCK, NODE_RECLAIM, NODE_RECLAIM_GLOBAL, NODE_RECLAIM_DOMAIN };

#define NCLASS      3          /* context classes: 0 none, 1 IO, 2 FS+IO */
#define MAX_NODES   4096
#define MAX_DOMAINS 64
#define EDGE_BITS   15
#define EDGE_SLOTS  (1u << EDGE_BITS)
#define MAX_EDGES   (EDGE_SLOTS / 2)  /* keep the probe chains short */
#define MAX_FRAMES  12
#define MAX_CYCLES  256
#define MAX_SITES   256

struct node {
    char               name[48];
    enum node_kind     kind;
    unsigned           cls;
    unsigned           depth;     /* of its domain, for domain nodes */
    uint32_t          *out;       /* indices into edges[] */
    unsigned           nout, capout;
};

enum edge_kind { EDGE_LOCK, EDGE_ALLOC, EDGE_CONTAIN };

struct edge {
    uint32_t       from, to;
    enum edge_kind kind;
    rcl_gfp_t      gfp;           /* EDGE_ALLOC: masked flags; EDGE_SHRINK: shrinker's */
    char           thread[16];
    long           tid;
    char           shrinker[RCL_NAME_MAX];
    int            nframes;
    void          *frames[MAX_FRAMES];
};

/* Node 0 is unused so that an edge key is never 0. Pseudo nodes first. */
#define N_RECLAIM(c)        (1u + (c))
#define N_RECLAIM_GLOBAL(c) (1u + NCLASS + (c))
#define N_FIRST_FREE        (1u + 2 * NCLASS)

static pthread_mutex_t graph_lock = PTHREAD_MUTEX_INITIALIZER;
static struct node     nodes[MAX_NODES];
static unsigned        nr_nodes;                      /* under graph_lock */
static struct edge   **edges;                         /* under graph_lock */
static unsigned        nr_edges, cap_edges;
static bool            graph_full_reported;

/* The lock-free set of known edges: key (from << 32 | to), linear probing,
 * slots only ever go from 0 to a key (until reset, which no other thread
 * may overlap). A key is published after its edge is in the graph. */
static _Atomic uint64_t edge_set[EDGE_SLOTS];

/* Domain pseudo-nodes, readable without the lock: ndomains is published
 * with release after the entry is complete. */
static struct rcl_domain *_Atomic dom_ptr[MAX_DOMAINS];
static _Atomic uint32_t dom_base[MAX_DOMAINS];
static _Atomic unsigned ndomains;

/* Changes at every reset, never 0: class ids and per-thread stacks from an
 * older graph are recognised by it and dropped. */
static _Atomic unsigned graph_gen = 1;

static _Atomic unsigned long nr_reports;
static uint64_t reported_cycles[MAX_CYCLES];          /* under graph_lock */
static unsigned nr_reported_cycles;
static uint64_t reported_sites[MAX_SITES];            /* under graph_lock */
static unsigned nr_reported_sites;

static _Atomic unsigned slow_shrinker_ms = 1000;

/* BFS scratch, under graph_lock. */
static uint32_t bfs_seen[MAX_NODES];
static uint32_t bfs_via[MAX_NODES];    /* edge index that reached the node */
static uint32_t bfs_queue[MAX_NODES];
static uint32_t bfs_stamp;

/* ------------------------------------------------------------------------ */
/* Per-thread state                                                          */
/* ------------------------------------------------------------------------ */

#define MAX_HELD   32
#define MAX_SCOPES 16
#define MAX_SHRINK 4

#define OPENED_FRAMES 6

#define HELD_TRY     0x1   /* taken by a trylock: nothing waited for it */
#define HELD_RECLAIM 0x2   /* a reclaim pseudo-lock (inside a shrinker) */

struct shrink_frame {
    const struct rcl_shrinker *s;
    unsigned long long start_ns;   /* 0: not timed */
};

struct ld_thread {
    unsigned gen;                   /* graph_gen the contents belong to */
    unsigned n;                     /* held entries (may exceed MAX_HELD) */
    uint32_t held[MAX_HELD];
    uint32_t next_ok[MAX_HELD];     /* a class known to be taken after held[i]:
                                       the hot path's one-entry edge cache */
    uint8_t  flags[MAX_HELD];
    unsigned nscopes;               /* tokens of scope saves, innermost last */
    unsigned scopes[MAX_SCOPES];
    unsigned nshrink;
    struct shrink_frame shrink[MAX_SHRINK];
    /* Where the NOWAIT (0) and NORECLAIM (1) scopes in force were opened,
     * for the report of a NOFAIL allocation inside them; n 0: not known
     * (opened before the checker watched, or adopted from a context). */
    struct { int n; void *frames[OPENED_FRAMES]; } opened[2];
};

static __thread struct ld_thread ld_self RCL_TLS_IE;

/* Held locks or a NOWAIT or NORECLAIM scope: this thread's allocations
 * must reach the checker (a NOFAIL one inside those scopes is reported even
 * when the thread's stock could serve it). Only this file writes the
 * RCL__WATCH_LOCKDEP bit. */
static void update_watch(struct ld_thread *t)
{
    unsigned want = (t->n > 0) || (rcl__scope & (RCL_SCOPE_NOWAIT | RCL_SCOPE_NORECLAIM))
                    ? RCL__WATCH_LOCKDEP : 0;
    /* Read-modify-write as one atomic step: another thread may set the
     * drain bit (account.c) at any time. Written only when it changes. */
    if ((rd(rcl__self.lockdep_watch) & RCL__WATCH_LOCKDEP) == want)
        return;
    if (want)
        atomic_fetch_or(&rcl__self.lockdep_watch, want);
    else
        atomic_fetch_and(&rcl__self.lockdep_watch, ~RCL__WATCH_LOCKDEP);
}

/* The thread forgets what it held; gen 0 (graph_gen never is) makes its
 * next event start afresh through ld_thread_reset(). */
static void ld_thread_forget(struct ld_thread *t, unsigned gen)
{
    t->gen = gen;
    t->n = t->nscopes = t->nshrink = 0;
    t->opened[0].n = t->opened[1].n = 0;
    update_watch(t);
}

/*
 * A graph reset happened since this thread last looked (graph_gen starts
 * at 1 and every rcl_shutdown() moves it on, so a thread's first event
 * after the checker went on always lands here): what it remembers refers
 * to nodes that no longer exist, and from now on its inline scope calls
 * must come to the checker too.
 */
static __attribute__((noinline, cold)) void ld_thread_reset(struct ld_thread *t, unsigned gen)
{
    ld_thread_forget(t, gen);
    rcl__scope_watch(true);
}

static inline struct ld_thread *ld_thread_gen(unsigned gen)
{
    struct ld_thread *t = &ld_self;

    if (unlikely(t->gen != gen))
        ld_thread_reset(t, gen);
    return t;
}

static struct ld_thread *ld_thread_get(void)
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
        (void)ld_thread_get();
        return;
    }
    rcl__self.lockdep_watch &= ~RCL__WATCH_LOCKDEP;
    rcl__scope_watch(false);
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static unsigned gfp_class(rcl_gfp_t gfp)
{
    if (gfp & RCL__FS)
        return 2;   /* FS reclaim may issue I/O of its own: the widest */
    return (gfp & RCL__IO) ? 1 : 0;
}

static const char *const class_name[NCLASS] = { "none", "IO", "FS+IO" };

static uint64_t edge_key(uint32_t from, uint32_t to)
{
    return ((uint64_t)from << 32) | to;
}

static unsigned edge_slot(uint64_t key)
{
    return (unsigned)((key * 0x9E3779B97F4A7C15ull) >> (64 - EDGE_BITS));
}

static bool edge_known(uint32_t from, uint32_t to)
{
    uint64_t key = edge_key(from, to);

    for (unsigned i = edge_slot(key);; i = (i + 1) & (EDGE_SLOTS - 1)) {
        uint64_t v = atomic_load_explicit(&edge_set[i], memory_order_relaxed);
        if (v == key)
            return true;
        if (v == 0)
            return false;
    }
}

static void edge_publish(uint64_t key)
{
    unsigned i = edge_slot(key);

    while (atomic_load_explicit(&edge_set[i], memory_order_relaxed))
        i = (i + 1) & (EDGE_SLOTS - 1);
    atomic_store_explicit(&edge_set[i], key, memory_order_release);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* What a thread knows about itself for an edge's "first seen" note. */
struct site {
    char thread[16];
    long tid;
    int  nframes;
    void *frames[MAX_FRAMES];
};

static __attribute__((noinline)) void site_capture(struct site *st, int skip)
{
    void *buf[MAX_FRAMES + 4];
    int n = backtrace(buf, MAX_FRAMES + skip);

    n = n > skip ? n - skip : 0;
    memcpy(st->frames, buf + skip, (size_t)n * sizeof(void *));
    st->nframes = n;
    st->thread[0] = '\0';
    pthread_getname_np(pthread_self(), st->thread, sizeof(st->thread));
    st->tid = (long)syscall(SYS_gettid);
}

/* ------------------------------------------------------------------------ */
/* Nodes                                                                     */
/* ------------------------------------------------------------------------ */

static uint32_t node_new_locked(enum node_kind kind, const char *name, unsigned cls,
                                unsigned depth)
{
    if (nr_nodes >= MAX_NODES)
        return 0;
    struct node *n = &nodes[nr_nodes];
    memset(n, 0, sizeof(*n));
    snprintf(n->name, sizeof(n->name), "%s", name ? name : "(unnamed)");
    n->kind = kind;
    n->cls = cls;
    n->depth = depth;
    return nr_nodes++;
}

static bool edge_add_locked(uint32_t from, uint32_t to, enum edge_kind kind,
                            rcl_gfp_t gfp, const char *shrinker, const struct site *st);

/* The fixed part of the graph: the pseudo-locks and their containment. */
static void graph_seed_locked(void)
{
    nr_nodes = 1;
    for (unsigned c = 0; c < NCLASS; c++) {
        char name[32];
        snprintf(name, sizeof(name), "reclaim(%s)", class_name[c]);
        node_new_locked(NODE_RECLAIM, name, c, 0);
    }
    for (unsigned c = 0; c < NCLASS; c++) {
        char name[32];
        snprintf(name, sizeof(name), "reclaim(%s)", class_name[c]);
        node_new_locked(NODE_RECLAIM_GLOBAL, name, c, 0);
    }
    for (unsigned c = 0; c < NCLASS; c++) {
        edge_add_locked(N_RECLAIM(c), N_RECLAIM_GLOBAL(c), EDGE_CONTAIN, 0, NULL, NULL);
        if (c > 0) {
            edge_add_locked(N_RECLAIM(c), N_RECLAIM(c - 1), EDGE_CONTAIN, 0, NULL, NULL);
            edge_add_locked(N_RECLAIM_GLOBAL(c), N_RECLAIM_GLOBAL(c - 1), EDGE_CONTAIN, 0,
                            NULL, NULL);
        }
    }
}

static void graph_ensure_locked(void)
{
    if (nr_nodes == 0)
        graph_seed_locked();
}

/* A class's node id in the current graph, registering it on first use.
 * The class is the caller's memory: read and written with atomics because
 * several threads may register it at once. */
static __attribute__((noinline)) uint32_t class_id_slow(struct rcl_lock_class *c, unsigned gen)
{
    uint32_t id;

    pthread_mutex_lock(&graph_lock);
    graph_ensure_locked();
    if (__atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen) {
        id = __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED);
    } else {
        id = node_new_locked(NODE_LOCK, c->name, 0, 0);
        __atomic_store_n(&c->rcl_id, id, __ATOMIC_RELAXED);
        __atomic_store_n(&c->rcl_gen, id ? gen : 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&graph_lock);
    return id;
}

static inline uint32_t class_id(struct rcl_lock_class *c, unsigned gen)
{
    if (likely(__atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen))
        return __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED);
    return class_id_slow(c, gen);
}

/* The three nodes of domain d, created (and hung under reclaim(c)) the
 * first time one of its shrinkers runs. Returns the class-0 node id. */
static uint32_t domain_base(struct rcl_domain *d, bool create)
{
    unsigned n = atomic_load_explicit(&ndomains, memory_order_acquire);

    for (unsigned i = 0; i < n; i++)
        if (atomic_load_explicit(&dom_ptr[i], memory_order_relaxed) == d)
            return atomic_load_explicit(&dom_base[i], memory_order_relaxed);
    if (!create)
        return 0;

    uint32_t base = 0;
    pthread_mutex_lock(&graph_lock);
    graph_ensure_locked();
    n = atomic_load_explicit(&ndomains, memory_order_relaxed);
    for (unsigned i = 0; i < n && !base; i++)
        if (atomic_load_explicit(&dom_ptr[i], memory_order_relaxed) == d)
            base = atomic_load_explicit(&dom_base[i], memory_order_relaxed);
    if (!base && n < MAX_DOMAINS && nr_nodes + NCLASS <= MAX_NODES) {
        const char *dname = rcl_domain_name(d);
        unsigned depth = rcl_domain_depth(d);
        for (unsigned c = 0; c < NCLASS; c++) {
            char name[48];
            snprintf(name, sizeof(name), "reclaim(%s) of domain \"%s\"", class_name[c],
                     dname ? dname : "?");
            uint32_t id = node_new_locked(NODE_RECLAIM_DOMAIN, name, c, depth);
            if (c == 0)
                base = id;
        }
        for (unsigned c = 0; c < NCLASS; c++) {
            edge_add_locked(N_RECLAIM(c), base + c, EDGE_CONTAIN, 0, NULL, NULL);
            if (c > 0)
                edge_add_locked(base + c, base + c - 1, EDGE_CONTAIN, 0, NULL, NULL);
        }
        atomic_store_explicit(&dom_ptr[n], d, memory_order_relaxed);
        atomic_store_explicit(&dom_base[n], base, memory_order_relaxed);
        atomic_store_explicit(&ndomains, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&graph_lock);
    return base;
}

/* A destroyed domain's nodes stay in the graph (they are history), but
 * its pointer no longer names them: a domain created later at the same
 * address gets nodes of its own. */
void rcl__lockdep_domain_forget(const struct rcl_domain *d)
{
    pthread_mutex_lock(&graph_lock);
    unsigned n = atomic_load_explicit(&ndomains, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++)
        if (atomic_load_explicit(&dom_ptr[i], memory_order_relaxed) == d)
            atomic_store_explicit(&dom_ptr[i], NULL, memory_order_relaxed);
    pthread_mutex_unlock(&graph_lock);
}

/* ------------------------------------------------------------------------ */
/* Reports                                                                   */
/* ------------------------------------------------------------------------ */

/* Reports are composed under graph_lock into this buffer and handed to
 * rcl__report() after the lock is dropped: the user's report function may
 * take annotated locks of its own. */
struct report_buf {
    char   text[3800];
    size_t len;
};

static void rb_add(struct report_buf *rb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rb_add(struct report_buf *rb, const char *fmt, ...)
{
    if (rb->len >= sizeof(rb->text) - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rb->text + rb->len, sizeof(rb->text) - rb->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        rb->len += (size_t)n;
    if (rb->len > sizeof(rb->text) - 1)
        rb->len = sizeof(rb->text) - 1;
}

static void rb_frames(struct report_buf *rb, void *const *frames, int n)
{
    char name[320];

    for (int i = 0; i < n; i++) {
        rcl__symbolize(frames[i], name, sizeof(name));
        rb_add(rb, "        #%d %s\n", i, name);
    }
}


static void rb_edge(struct report_buf *rb, const struct edge *e)
{
    const struct node *f = &nodes[e->from], *t = &nodes[e->to];
    char gfp[64];

    switch (e->kind) {
    case EDGE_CONTAIN:
        rb_add(rb, "  %s \u2192 %s: reclaim allowed to do more also does everything the narrower "
                   "reclaim does (part of the model)\n", f->name, t->name);
        return;
    case EDGE_LOCK:
        if (f->kind == NODE_LOCK)
            rb_add(rb, "  %s \u2192 %s: thread \"%s\" (tid %ld) took %s while holding %s, "
                       "first at:\n", f->name, t->name, e->thread, e->tid,
                   t->name, f->name);
        else
            rb_add(rb, "  %s \u2192 %s: thread \"%s\" (tid %ld), in shrinker \"%s\" called by "
                       "reclaim in class %s, took %s (or waited for work done under it), "
                       "first at:\n", f->name, t->name, e->thread, e->tid,
                   e->shrinker[0] ? e->shrinker : "?", class_name[f->cls], t->name);
        break;
    case EDGE_ALLOC:
        rb_add(rb, "  %s \u2192 %s: thread \"%s\" (tid %ld) made an allocation that may reclaim "
                   "(%s) while holding %s, first at:\n",
               f->name, t->name, e->thread, e->tid,
               rcl__gfp_str(e->gfp, gfp, sizeof(gfp)), f->name);
        break;
    }
    rb_frames(rb, e->frames, e->nframes);
}

/* Hops a reader does not need: reclaim(c) into its own global or domain
 * part. Only containment between classes is worth a line. */
static bool edge_is_silent(const struct edge *e)
{
    return e->kind == EDGE_CONTAIN && nodes[e->from].cls == nodes[e->to].cls;
}

static void report_cycle_locked(struct report_buf *rb, const uint32_t *cyc, unsigned len)
{
    bool reclaim = false;
    unsigned first = 0;
    const char *shrinker = NULL, *holder = NULL;

    /* Start the chain at the lock held across an allocation (that is where
     * the fix usually goes), else at the lock registered first. */
    uint64_t best = UINT64_MAX;
    for (unsigned i = 0; i < len; i++) {
        const struct edge *e = edges[cyc[i]];
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

    rb_add(rb, "lock checker: possible %s\n\n    ",
           reclaim ? "memory-reclaim deadlock (a cycle through reclaim)"
                   : "deadlock (locks taken in a cycle)");
    /* A hop into the same class's global or domain part is not shown:
     * the node after it names the reclaim well enough. */
    const char *last = NULL;
    for (unsigned k = 0; k <= len; k++) {
        const struct edge *e = edges[cyc[(first + k) % len]];
        if (k < len && edge_is_silent(e))
            continue;
        const char *label = nodes[e->from].name;
        if (k == len || !last || strcmp(label, last) != 0)
            rb_add(rb, "%s%s", last ? " \u2192 " : "", label);
        last = label;
    }
    rb_add(rb, "\n\n");
    for (unsigned k = 0; k < len; k++) {
        const struct edge *e = edges[cyc[(first + k) % len]];
        if (!edge_is_silent(e))
            rb_edge(rb, e);
    }
    rb_add(rb, "  (a frame without a name, program(+offset), is in a stripped file: "
               "`addr2line -f -e program offset` on an unstripped copy names it)\n");
    if (reclaim)
        rb_add(rb, "\n  What it means: a thread holding %s can enter memory reclaim, and reclaim%s%s%s "
                   "needs something that only becomes free after %s is released; under memory "
                   "pressure these threads wait for each other forever. Usual fixes: a NOFS/NOIO "
                   "scope (rcl_nofs_save/rcl_noio_save) where the lock is held, so its allocations "
                   "cannot recurse there; a trylock (or skipping the work when sc->gfp lacks FS/IO) "
                   "in that shrinker; or do not wait for I/O or other threads in a shrinker.",
               holder ? holder : "a lock", shrinker ? " (shrinker \"" : "",
               shrinker ? shrinker : "", shrinker ? "\")" : "", holder ? holder : "it");
    else
        rb_add(rb, "\n  What it means: these locks are taken in opposite orders by different code "
                   "paths; two threads can each hold one and wait for the other forever. Usual "
                   "fixes: always take them in one order, or take the out-of-order one with a "
                   "trylock and back off when it fails.");
}

static void report_emit(struct report_buf *rb, bool counts)
{
    if (!rb->len)
        return;
    if (counts)
        atomic_fetch_add_explicit(&nr_reports, 1, memory_order_relaxed);
    rcl__report("%s", rb->text);
}

/* ------------------------------------------------------------------------ */
/* Edges and cycles                                                          */
/* ------------------------------------------------------------------------ */

/* Is `target` reachable from `start`? On success bfs_via[] holds the path. */
static bool reach_locked(uint32_t start, uint32_t target)
{
    unsigned head = 0, tail = 0;

    if (++bfs_stamp == 0) {
        memset(bfs_seen, 0, sizeof(bfs_seen));
        bfs_stamp = 1;
    }
    bfs_seen[start] = bfs_stamp;
    bfs_queue[tail++] = start;
    while (head < tail) {
        uint32_t u = bfs_queue[head++];
        if (u == target)
            return true;
        for (unsigned i = 0; i < nodes[u].nout; i++) {
            uint32_t ei = nodes[u].out[i];
            uint32_t v = edges[ei]->to;
            if (bfs_seen[v] != bfs_stamp) {
                bfs_seen[v] = bfs_stamp;
                bfs_via[v] = ei;
                bfs_queue[tail++] = v;
            }
        }
    }
    return false;
}

/* Was a report with signature sig made already? Remembers it if not (while
 * there is room: past it, reports repeat rather than go missing). */
static bool seen_locked(uint64_t *set, unsigned *n, unsigned max, uint64_t sig)
{
    for (unsigned i = 0; i < *n; i++)
        if (set[i] == sig)
            return true;
    if (*n < max)
        set[(*n)++] = sig;
    return false;
}

static bool site_seen(uint64_t sig)
{
    pthread_mutex_lock(&graph_lock);
    bool seen = seen_locked(reported_sites, &nr_reported_sites, MAX_SITES, sig);
    pthread_mutex_unlock(&graph_lock);
    return seen;
}

static bool cycle_seen_locked(const uint32_t *cyc, unsigned len)
{
    uint64_t sig = len;
    for (unsigned i = 0; i < len; i++)
        sig += mix64(cyc[i] + 1);   /* order-free: the same cycle found from any edge */
    return seen_locked(reported_cycles, &nr_reported_cycles, MAX_CYCLES, sig);
}

/* Adds from -> to if new; true when it was added. */
static bool edge_add_locked(uint32_t from, uint32_t to, enum edge_kind kind,
                            rcl_gfp_t gfp, const char *shrinker, const struct site *st)
{
    if (edge_known(from, to))
        return false;
    if (nr_edges >= MAX_EDGES)
        return false;
    if (nr_edges == cap_edges) {
        unsigned cap = cap_edges ? cap_edges * 2 : 256;
        struct edge **ne = realloc(edges, cap * sizeof(*ne));
        if (!ne)
            return false;
        edges = ne;
        cap_edges = cap;
    }
    struct node *f = &nodes[from];
    if (f->nout == f->capout) {
        unsigned cap = f->capout ? f->capout * 2 : 4;
        uint32_t *no = realloc(f->out, cap * sizeof(*no));
        if (!no)
            return false;
        f->out = no;
        f->capout = cap;
    }
    struct edge *e = calloc(1, sizeof(*e));
    if (!e)
        return false;
    e->from = from;
    e->to = to;
    e->kind = kind;
    e->gfp = gfp;
    if (shrinker)
        snprintf(e->shrinker, sizeof(e->shrinker), "%s", shrinker);
    if (st) {
        memcpy(e->thread, st->thread, sizeof(e->thread));
        e->tid = st->tid;
        e->nframes = st->nframes;
        memcpy(e->frames, st->frames, sizeof(e->frames));
    }
    edges[nr_edges] = e;
    f->out[f->nout++] = nr_edges;
    nr_edges++;
    edge_publish(edge_key(from, to));
    return true;
}

/* Adds a learned edge and, when it closes a cycle not reported before,
 * writes the report into rb. Verbose mode also notes the new dependency. */
static void learn_locked(uint32_t from, uint32_t to, enum edge_kind kind, rcl_gfp_t gfp,
                         const char *shrinker, const struct site *st,
                         struct report_buf *rb, struct report_buf *note)
{
    if (!edge_add_locked(from, to, kind, gfp, shrinker, st)) {
        if (nr_edges >= MAX_EDGES && !graph_full_reported) {
            graph_full_reported = true;
            rb_add(note, "lock checker: %u dependencies recorded, the table is full; new lock "
                         "orders are no longer checked", nr_edges);
        }
        return;
    }
    if (rd(rcl__lockdep_mode) == RCL_LOCKDEP_VERBOSE && !note->len)
        rb_add(note, "lock checker: new dependency %s \u2192 %s (thread \"%s\")",
               nodes[from].name, nodes[to].name, st ? st->thread : "");

    /* The new edge closes a cycle iff `from` is reachable from `to`. */
    if (rb->len || !reach_locked(to, from))
        return;
    uint32_t cyc[65];
    unsigned len = 0;
    cyc[len++] = nr_edges - 1;
    /* Walk back from `from` to `to` along the BFS tree. */
    uint32_t path[64];
    unsigned np = 0;
    for (uint32_t v = from; v != to && np < 64; v = edges[bfs_via[v]]->from)
        path[np++] = bfs_via[v];
    for (unsigned i = np; i > 0 && len < 64; i--)
        cyc[len++] = path[i - 1];
    if (cycle_seen_locked(cyc, len))
        return;
    report_cycle_locked(rb, cyc, len);
}

/* ------------------------------------------------------------------------ */
/* Recording                                                                 */
/* ------------------------------------------------------------------------ */

struct pending {
    uint32_t       from, to;
    enum edge_kind kind;
    rcl_gfp_t      gfp;
    const char    *shrinker;
};

/* New edges go through here: the backtrace is taken before the lock, the
 * reports are emitted after it. */
static __attribute__((noinline)) void learn(const struct pending *p, unsigned n)
{
    struct site st;
    struct report_buf *rb = calloc(2, sizeof(*rb));

    if (!rb)
        return;
    site_capture(&st, 3);
    pthread_mutex_lock(&graph_lock);
    graph_ensure_locked();
    if (atomic_load_explicit(&graph_gen, memory_order_relaxed) == ld_self.gen)
        for (unsigned i = 0; i < n; i++)
            learn_locked(p[i].from, p[i].to, p[i].kind, p[i].gfp, p[i].shrinker, &st,
                         &rb[0], &rb[1]);
    pthread_mutex_unlock(&graph_lock);
    report_emit(&rb[1], false);
    report_emit(&rb[0], true);
    free(rb);
}

static const char *held_shrinker_name(const struct ld_thread *t)
{
    if (t->nshrink && t->nshrink <= MAX_SHRINK && t->shrink[t->nshrink - 1].s)
        return rcl__shrinker_name(t->shrink[t->nshrink - 1].s);
    return NULL;
}

/* Edges from what the thread holds to `to`: the top entry and, below it,
 * every trylock-taken entry down to the first lock really waited for (a
 * trylock recorded no edge of its own, so the chain through it is missing). */
static __attribute__((noinline)) void depend(struct ld_thread *t, uint32_t to,
                                             enum edge_kind kind, rcl_gfp_t gfp)
{
    struct pending p[MAX_HELD];
    unsigned np = 0;
    unsigned top = t->n < MAX_HELD ? t->n : MAX_HELD;

    for (unsigned i = top; i > 0; i--) {
        uint32_t from = t->held[i - 1];
        if (!edge_known(from, to))
            p[np++] = (struct pending){ from, to, kind, gfp,
                                        (t->flags[i - 1] & HELD_RECLAIM) ? held_shrinker_name(t) : NULL };
        if (!(t->flags[i - 1] & HELD_TRY))
            break;
    }
    if (np)
        learn(p, np);
}

static inline void held_push(struct ld_thread *t, uint32_t id, uint8_t flags)
{
    unsigned n = t->n;

    if (likely(n < MAX_HELD)) {
        t->held[n] = id;
        t->flags[n] = flags;
        t->next_ok[n] = 0;
    }
    t->n = n + 1;
    if (n == 0)
        update_watch(t);
}

static __attribute__((noinline)) void held_pop_slow(struct ld_thread *t, uint32_t id)
{
    if (!t->n)
        return;   /* taken before checking began, or before a reset */
    if (t->n > MAX_HELD) {
        t->n--;
        return;
    }
    /* Releases out of order are legal: close the gap. */
    for (unsigned i = t->n; i > 0; i--) {
        if (t->held[i - 1] == id) {
            for (unsigned j = i; j < t->n; j++) {
                t->held[j - 1] = t->held[j];
                t->flags[j - 1] = t->flags[j];
                t->next_ok[j - 1] = t->next_ok[j];
            }
            t->n--;
            break;
        }
    }
    if (t->n == 0)
        update_watch(t);
}

static inline void held_pop(struct ld_thread *t, uint32_t id)
{
    unsigned n = t->n;

    /* Usually the top. */
    if (likely(n - 1 < MAX_HELD && t->held[n - 1] == id)) {
        t->n = n - 1;
        if (n == 1)
            update_watch(t);
        return;
    }
    held_pop_slow(t, id);
}

/* ------------------------------------------------------------------------ */
/* Public annotations                                                        */
/* ------------------------------------------------------------------------ */

/* Everything but the common case: NULL class, new class or graph, the
 * held stack full, a dependency not in this thread's one-entry cache. */
static __attribute__((noinline)) void acquire_slow(struct rcl_lock_class *c, uint8_t flags)
{
    if (unlikely(!c)) {
        rcl__report("rcl_lock_acquire: NULL lock class");
        return;
    }
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);
    struct ld_thread *t = ld_thread_gen(gen);
    uint32_t id = class_id(c, gen);
    if (unlikely(!id))
        return;   /* out of nodes: reported nowhere, checked nowhere */

    if (unlikely(t->n == MAX_HELD)) {
        static _Atomic int told;
        if (!atomic_exchange(&told, 1))
            rcl__report("lock checker: a thread holds more than %d annotated locks at once; "
                        "the locks above that depth are not checked", MAX_HELD);
    }
    /* A trylock waits for nothing, so it depends on nothing. */
    if (!(flags & HELD_TRY) && t->n) {
        unsigned top = (t->n <= MAX_HELD ? t->n : MAX_HELD) - 1;
        if (t->next_ok[top] != id) {
            if (likely(!(t->flags[top] & HELD_TRY)) && edge_known(t->held[top], id))
                t->next_ok[top] = id;   /* edges are never removed but by a reset */
            else
                depend(t, id, EDGE_LOCK, 0);
        }
    }
    held_push(t, id, flags);
}

/*
 * The hot path, kept a leaf (no call, no saved registers): the class and
 * the thread belong to the current graph, and either nothing is held or
 * the lock on top of the stack was seen followed by this one before (or
 * this is a trylock, which depends on nothing).
 */
static inline __attribute__((always_inline)) void acquire(struct rcl_lock_class *c, uint8_t flags)
{
    struct ld_thread *t = &ld_self;
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);

    if (likely(c && t->gen == gen && __atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen)) {
        uint32_t id = __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED);
        unsigned n = t->n;
        if (likely(n < MAX_HELD && (n == 0 || (flags & HELD_TRY) || t->next_ok[n - 1] == id))) {
            held_push(t, id, flags);
            return;
        }
    }
    acquire_slow(c, flags);
}

/* The checker off and the library not initialised yet: first use
 * initialises it, and may turn checking on. Out of line, so that the hot
 * path stays a leaf. */
static __attribute__((noinline, cold)) void acquire_first(struct rcl_lock_class *c, uint8_t flags)
{
    rcl__init_slow();
    if (rcl__checking())
        acquire_slow(c, flags);
}

/* Checking on implies initialised; off, the call costs two loads. */
void rcl_lock_acquire(struct rcl_lock_class *c)
{
    if (likely(rd(rcl__lockdep_mode) != 0))
        acquire(c, 0);
    else if (unlikely(!atomic_load_explicit(&rcl__ready, memory_order_acquire)))
        acquire_first(c, 0);
}

void rcl_lock_acquire_try(struct rcl_lock_class *c)
{
    if (likely(rd(rcl__lockdep_mode) != 0))
        acquire(c, HELD_TRY);
    else if (unlikely(!atomic_load_explicit(&rcl__ready, memory_order_acquire)))
        acquire_first(c, HELD_TRY);
}

static __attribute__((noinline)) void release_slow(struct rcl_lock_class *c)
{
    if (unlikely(!c)) {
        rcl__report("rcl_lock_release: NULL lock class");
        return;
    }
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);
    struct ld_thread *t = ld_thread_gen(gen);
    if (unlikely(__atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) != gen))
        return;   /* never acquired in this graph */
    held_pop(t, __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED));
}

void rcl_lock_release(struct rcl_lock_class *c)
{
    if (!rcl__checking())
        return;
    struct ld_thread *t = &ld_self;
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed);
    /* Hot path: the lock on top of the stack, as releases usually are. */
    if (likely(c && t->gen == gen && __atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen)) {
        held_pop(t, __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED));
        return;
    }
    release_slow(c);
}

/* Which reclaim nodes an allocation in class cls may wait for, given the
 * domains the thread is inside (the rules of rcl_domain_enter). */
static unsigned reclaim_targets(unsigned cls, uint32_t *out, unsigned max)
{
    unsigned n = 0;

    if (!rcl__domain_inside()) {
        out[n++] = N_RECLAIM(cls);
        return n;
    }
    out[n++] = N_RECLAIM_GLOBAL(cls);
    unsigned nd = atomic_load_explicit(&ndomains, memory_order_acquire);
    for (unsigned i = 0; i < nd && n < max; i++) {
        struct rcl_domain *d = atomic_load_explicit(&dom_ptr[i], memory_order_relaxed);
        uint32_t base = atomic_load_explicit(&dom_base[i], memory_order_relaxed);
        if (!d)
            continue;                  /* destroyed */
        /* Inside d its may_reclaim decides; the checker assumes skip. */
        unsigned r = rcl__domain_rule(d, nodes[base].depth);
        if (!(r & (RCL__DOMAIN_OWN | RCL__DOMAIN_SKIP)))
            out[n++] = base + ((r & RCL__DOMAIN_NOFS) && cls > 1 ? 1 : cls);
    }
    return n;
}

static void site_report_once(const char *what, rcl_gfp_t gfp)
{
    struct site st;
    site_capture(&st, 2);
    uint64_t sig = 0;
    for (int i = 0; i < st.nframes; i++)
        sig = mix64(sig ^ (uint64_t)(uintptr_t)st.frames[i]);

    struct report_buf *rb;
    char buf[64];
    if (site_seen(sig) || !(rb = calloc(1, sizeof(*rb))))
        return;
    rb_add(rb, "lock checker: %s (%s) in thread \"%s\" (tid %ld), at:\n", what,
           rcl__gfp_str(gfp, buf, sizeof(buf)), st.thread, st.tid);
    rb_frames(rb, st.frames, st.nframes);
    rb_add(rb, "  What it means: the code that opened the NOWAIT scope promised that "
               "nothing inside sleeps (it may hold a spinning lock or run in an event "
               "loop), but this allocation may block in reclaim. Usual fixes: allocate "
               "with RCL_NOWAIT here and handle failure, or allocate before entering the "
               "scope.");
    report_emit(rb, true);
    free(rb);
}

/*
 * NOFAIL inside a scope that takes reclaim away: the allocation cannot
 * reclaim, so it waits for others (see rcl_alloc), and the scope's promise
 * (never sleep; or, in reclaim, never wait on reclaim) is broken by code
 * that is not at fault. Reported once per allocation site, with both ends.
 */
static __attribute__((noinline)) void nofail_scope_report(struct ld_thread *t, rcl_gfp_t gfp)
{
    int which = (rcl__scope & RCL_SCOPE_NOWAIT) ? 0 : 1;
    const char *scope = which ? "NORECLAIM" : "NOWAIT";
    struct site st;
    site_capture(&st, 3);
    uint64_t sig = 0x4e4f4641ull + (uint64_t)which;
    for (int i = 0; i < st.nframes; i++)
        sig = mix64(sig ^ (uint64_t)(uintptr_t)st.frames[i]);

    struct report_buf *rb;
    char buf[64];
    if (site_seen(sig) || !(rb = calloc(1, sizeof(*rb))))
        return;
    rb_add(rb, "lock checker: NOFAIL allocation inside a %s scope (%s) in thread \"%s\" "
               "(tid %ld); allocated at:\n", scope, rcl__gfp_str(gfp, buf, sizeof(buf)),
           st.thread, st.tid);
    rb_frames(rb, st.frames, st.nframes);
    if (t->opened[which].n) {
        rb_add(rb, "  the %s scope was opened at:\n", scope);
        rb_frames(rb, t->opened[which].frames, t->opened[which].n);
    } else {
        rb_add(rb, "  where the %s scope was opened is not known (before the checker "
                   "watched this thread, or adopted from another thread's context)\n", scope);
    }
    rb_add(rb, "  What it means: the allocation may not fail and this scope removes its "
               "direct reclaim, so it takes part of the reserve and then sleeps until the "
               "background reclaimer or other threads free memory. Usual fixes: allocate "
               "before opening the scope, or without NOFAIL and handle the failure.");
    report_emit(rb, true);
    free(rb);
}

/* An allocation asked with gfp is about to charge: it may sleep (checked
 * against NOWAIT) and may wait for reclaim (a dependency on it from every
 * lock held). */
void rcl__lockdep_alloc(rcl_gfp_t gfp)
{
    struct ld_thread *t = ld_thread_get();
    rcl_gfp_t masked = rcl_current_gfp(gfp);

    if ((gfp & RCL__NOFAIL) && (gfp & RCL__DIRECT_RECLAIM) &&
        (rcl__scope & (RCL_SCOPE_NOWAIT | RCL_SCOPE_NORECLAIM)))
        nofail_scope_report(t, gfp);
    else if ((gfp & RCL__DIRECT_RECLAIM) && (rcl__scope & RCL_SCOPE_NOWAIT))
        site_report_once("an allocation that may sleep inside a NOWAIT scope", gfp);
    if (!rcl__may_reclaim(masked) || !t->n)
        return;

    uint32_t to[2 + MAX_DOMAINS];
    unsigned nt = reclaim_targets(gfp_class(masked), to, 2 + MAX_DOMAINS);
    for (unsigned i = 0; i < nt; i++)
        depend(t, to[i], EDGE_ALLOC, masked);
}

void rcl_might_alloc(rcl_gfp_t gfp)
{
    rcl__ensure_init();
    if (rcl__checking())
        rcl__lockdep_alloc(gfp);
}

/* ------------------------------------------------------------------------ */
/* Hooks of reclaim and scopes                                               */
/* ------------------------------------------------------------------------ */

void rcl__lockdep_shrink_begin(const struct rcl_shrinker *s, rcl_gfp_t gfp)
{
    struct ld_thread *t = ld_thread_get();
    unsigned cls = gfp_class(gfp);
    struct rcl_domain *d = s ? rcl__shrinker_domain(s) : NULL;
    uint32_t node = N_RECLAIM_GLOBAL(cls);

    if (d) {
        uint32_t base = domain_base(d, true);
        if (base)
            node = base + cls;
    }
    /* Nothing is recorded on the way in: the allocation that led here
     * already recorded its dependency on reclaim. */
    held_push(t, node, HELD_RECLAIM);
    if (t->nshrink < MAX_SHRINK)
        t->shrink[t->nshrink] = (struct shrink_frame){
            s, rcl__is_background() ? rcl__now_ns() : 0 };
    t->nshrink++;
}

void rcl__lockdep_shrink_end(const struct rcl_shrinker *s, rcl_gfp_t gfp)
{
    struct ld_thread *t = ld_thread_get();
    unsigned long long start = 0;

    if (t->nshrink) {
        t->nshrink--;
        if (t->nshrink < MAX_SHRINK)
            start = t->shrink[t->nshrink].start_ns;
    }
    unsigned cls = gfp_class(gfp);
    struct rcl_domain *d = s ? rcl__shrinker_domain(s) : NULL;
    uint32_t node = N_RECLAIM_GLOBAL(cls);
    if (d) {
        uint32_t base = domain_base(d, false);
        if (base)
            node = base + cls;
    }
    held_pop(t, node);

    unsigned bound = atomic_load_explicit(&slow_shrinker_ms, memory_order_relaxed);
    if (!start || !bound || !s)
        return;
    unsigned long long ms = (rcl__now_ns() - start) / 1000000ull;
    if (ms < bound)
        return;
    if (site_seen(mix64((uint64_t)(uintptr_t)s ^ 0x5157)))
        return;
    atomic_fetch_add_explicit(&nr_reports, 1, memory_order_relaxed);
    rcl__report("lock checker: shrinker \"%s\" took %llu ms (bound %u ms) while the background "
                "reclaimer waited on it. What it means: every allocation that needs the "
                "background reclaimer to make room stalls meanwhile, and if the shrinker waits "
                "for anything that needs memory, reclaim stops altogether. Usual fixes: do not "
                "block in a shrinker - skip busy objects, use trylocks, and leave slow write-back "
                "to a worker thread (as in the kernel: \"you should not block kswapd\").",
                rcl__shrinker_name(s), ms, bound);
}

/* Remembers where a scope that removes reclaim was opened. */
static __attribute__((noinline)) void scope_opened(struct ld_thread *t, unsigned set)
{
    for (int which = 0; which < 2; which++) {
        if (!(set & (which ? RCL_SCOPE_NORECLAIM : RCL_SCOPE_NOWAIT)))
            continue;
        /* From the library's save call outwards: the opener is next. */
        void *buf[OPENED_FRAMES + 2];
        int n = backtrace(buf, OPENED_FRAMES + 2) - 2;
        n = n > 0 ? n : 0;
        memcpy(t->opened[which].frames, buf + 2, (size_t)n * sizeof(void *));
        t->opened[which].n = n;
    }
}

void rcl__lockdep_scope_save(unsigned set)
{
    struct ld_thread *t = ld_thread_get();

    if (set & (RCL_SCOPE_NOWAIT | RCL_SCOPE_NORECLAIM))
        scope_opened(t, set);

    if (set) {
        if (t->nscopes < MAX_SCOPES)
            t->scopes[t->nscopes] = set;
        t->nscopes++;
    }
    update_watch(t);
}

/* The scope word was set wholesale (rcl__scope_put): the saves whose bits
 * it no longer has are over. */
void rcl__lockdep_scope_put(unsigned bits)
{
    struct ld_thread *t = ld_thread_get();
    unsigned n = t->nscopes < MAX_SCOPES ? t->nscopes : MAX_SCOPES;

    while (n && (t->scopes[n - 1] & ~bits))
        n--;
    t->nscopes = n;
    /* Set wholesale: where these scopes were opened is not known here. */
    t->opened[0].n = t->opened[1].n = 0;
    update_watch(t);
}

void rcl__lockdep_scope_restore(unsigned saved, unsigned before)
{
    struct ld_thread *t = ld_thread_get();
    unsigned top = t->nscopes < MAX_SCOPES ? t->nscopes : MAX_SCOPES;
    const char *what = NULL;

    update_watch(t);
    saved &= RCL_SCOPE_ALL;
    if (!saved)
        return;   /* the token of an inner save that changed nothing */
    if (t->nscopes > MAX_SCOPES) {
        t->nscopes--;
        return;
    }
    if (top && t->scopes[top - 1] == saved) {
        t->nscopes--;
        return;
    }
    unsigned tracked = 0;
    for (unsigned i = top; i > 0; i--) {
        tracked |= t->scopes[i - 1];
        if (t->scopes[i - 1] == saved && !what) {
            what = "restored out of order: an inner scope is still open, and closing this "
                   "one first leaves the thread less restricted than the inner code expects";
            memmove(&t->scopes[i - 1], &t->scopes[i], (top - i) * sizeof(t->scopes[0]));
            t->nscopes--;
        }
    }
    if (!what && ((saved & ~before) || (saved & tracked)))
        what = "restored with a token that rcl_scope_save() did not return: it clears "
               "scope bits some other save owns (or that are not set)";
    if (!what)
        return;   /* bits set where the checker could not see (before it began) */

    struct site st;
    site_capture(&st, 2);
    struct report_buf *rb = calloc(1, sizeof(*rb));
    if (!rb)
        return;
    rb_add(rb, "lock checker: scope 0x%x %s; in thread \"%s\" (tid %ld), at:\n", saved, what,
           st.thread, st.tid);
    rb_frames(rb, st.frames, st.nframes);
    rb_add(rb, "  Usual fix: restore each scope with the token its own save returned, innermost "
               "first (or use the RCL_*_SCOPE() guards, which cannot get this wrong).");
    report_emit(rb, true);
    free(rb);
}

void rcl__lockdep_reset(void)
{
    rcl__symbolize_forget();
    pthread_mutex_lock(&graph_lock);
    for (unsigned i = 0; i < nr_edges; i++)
        free(edges[i]);
    free(edges);
    edges = NULL;
    nr_edges = cap_edges = 0;
    for (unsigned i = 0; i < nr_nodes; i++)
        free(nodes[i].out);
    nr_nodes = 0;
    for (unsigned i = 0; i < EDGE_SLOTS; i++)
        atomic_store_explicit(&edge_set[i], 0, memory_order_relaxed);
    atomic_store_explicit(&ndomains, 0, memory_order_relaxed);
    nr_reported_cycles = nr_reported_sites = 0;
    graph_full_reported = false;
    unsigned gen = atomic_load_explicit(&graph_gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&graph_gen, gen ? gen : 1, memory_order_release);
    atomic_store_explicit(&nr_reports, 0, memory_order_relaxed);
    pthread_mutex_unlock(&graph_lock);
    ld_thread_forget(&ld_self, 0);
}

unsigned long rcl__lockdep_count(void)
{
    return atomic_load_explicit(&nr_reports, memory_order_relaxed);
}

void rcl_lockdep_set_slow_shrinker_ms(unsigned ms)
{
    atomic_store_explicit(&slow_shrinker_ms, ms, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Annotated mutexes                                                         */
/* ------------------------------------------------------------------------ */

int rcl_mutex_init(rcl_mutex_t *m, struct rcl_lock_class *cls)
{
    if (!m)
        return -EINVAL;
    m->cls = cls;
    return -pthread_mutex_init(&m->m, NULL);
}

void rcl_mutex_lock(rcl_mutex_t *m)
{
    if (!m) {
        rcl__report("rcl_mutex_lock: NULL mutex");
        return;
    }
    /* Annotate before blocking: a cycle is reported even when this very
     * acquisition is the one that would hang. */
    if (m->cls)
        rcl_lock_acquire(m->cls);
    pthread_mutex_lock(&m->m);
}

int rcl_mutex_trylock(rcl_mutex_t *m)
{
    if (!m)
        return EINVAL;
    int rc = pthread_mutex_trylock(&m->m);
    if (rc == 0 && m->cls)
        rcl_lock_acquire_try(m->cls);
    return rc;
}

void rcl_mutex_unlock(rcl_mutex_t *m)
{
    if (!m) {
        rcl__report("rcl_mutex_unlock: NULL mutex");
        return;
    }
    if (m->cls)
        rcl_lock_release(m->cls);
    pthread_mutex_unlock(&m->m);
}

int rcl_mutex_destroy(rcl_mutex_t *m)
{
    if (!m)
        return -EINVAL;
    return -pthread_mutex_destroy(&m->m);
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

void rcl__lockdep_atfork_prepare(void) { pthread_mutex_lock(&graph_lock); }
void rcl__lockdep_atfork_parent(void) { pthread_mutex_unlock(&graph_lock); }
void rcl__lockdep_atfork_child(void) { pthread_mutex_unlock(&graph_lock); }
