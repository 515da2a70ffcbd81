/* SPDX-License-Identifier: MIT */
/*
 * lockdep_internal.h - what the lock checker's files share, and nothing
 * outside them includes:
 *   lockdep_graph.c    nodes, edges, the set of known edges, the cycle
 *                      search, lock-class ids; calls nothing upward
 *   lockdep_report.c   report composition, the "what it means" texts,
 *                      the once-only memory of what was reported
 *   lockdep.c          the annotations: per-thread held-lock stack,
 *                      acquire/release, rcl_mutex_t, a class's
 *                      unregister, reset and counts
 *   lockdep_reclaim.c  the reclaim model, the checker's client: reclaim
 *                      pseudo-locks, domain nodes, the allocation hook,
 *                      shrinker passes, scope misuse
 *
 * The graph's nodes are lock classes and pseudo-locks; an edge A -> B says
 * "a thread holding A waited for B" (took the lock B, or made an
 * allocation that may wait for reclaim B, or waited for work that runs
 * under B). A cycle is a deadlock that needs only the right interleaving,
 * so it is reported the first time the edges exist, long before the hang.
 *
 * Cost model. The hot path (an acquire/release pair on a lock order seen
 * before) touches only this thread's held-lock stack and one read of a
 * lock-free hash of known edges. Everything else - new classes, new edges,
 * the cycle search, reports - runs under the graph lock and may be slow.
 */
#ifndef RCL_LOCKDEP_INTERNAL_H
#define RCL_LOCKDEP_INTERNAL_H

#include "internal.h"

#include <limits.h>
#include <pthread.h>

/* The names below stay inside the library's lockdep files: hidden, they
 * are reached directly, as the statics they were, with no indirection
 * through the global offset table on the hot path. */
#pragma GCC visibility push(hidden)

/* ------------------------------------------------------------------------ */
/* The graph (lockdep_graph.c)                                               */
/* ------------------------------------------------------------------------ */

/* A lock class, or one of the reclaim model's three kinds of pseudo-lock
 * (lockdep_reclaim.c says what they mean); reports word the two apart. */
enum node_kind { NODE_LOCK, NODE_RECLAIM, NODE_RECLAIM_GLOBAL, NODE_RECLAIM_DOMAIN };

#define NCLASS      3          /* context classes: 0 none, 1 IO, 2 FS+IO */
#define MAX_NODES   4096
#define EDGE_BITS   15
#define EDGE_SLOTS  (1u << EDGE_BITS)
#define MAX_EDGES   (EDGE_SLOTS / 2)  /* keep the probe chains short */
#define MAX_FRAMES  12

struct node {
    char               name[48];
    enum node_kind     kind;
    unsigned           cls;
    unsigned           depth;     /* of its domain, for domain nodes; read
                                     without the lock (lockdep_reclaim.c) */
    unsigned           incarn;    /* how often the node was dropped */
    bool               dropped;   /* and not made again yet */
    uint32_t           next_free; /* a dropped class's: the next one */
    uint32_t           out_first, out_last;  /* its edges, chained by next_out */
    unsigned           nout;
    /* A lock class's nodes for its subclasses 1.. (0: not made yet), and
     * a subclass node's class; read without the lock, by atomics. */
    uint32_t           sub[RCL_LOCK_SUBCLASSES - 1];
    uint32_t           base;
};

enum edge_kind { EDGE_LOCK, EDGE_ALLOC, EDGE_CONTAIN };

struct edge {
    uint32_t       from, to;      /* from 0: a free slot */
    uint32_t       next_free;     /* a free slot's next, in the free list */
    uint32_t       next_out;      /* the next edge out of `from` */
    uint64_t       serial;        /* never the same twice, unlike the slot */
    enum edge_kind kind;
    rcl_gfp_t      gfp;           /* EDGE_ALLOC: the allocation's masked flags */
    char           thread[16];
    long           tid;
    char           shrinker[RCL_NAME_MAX];
    int            nframes;
    void          *frames[MAX_FRAMES];
};

/* What a thread knows about itself for an edge's "first seen" note. */
struct site {
    char thread[16];
    long tid;
    int  nframes;
    void *frames[MAX_FRAMES];
};

/* The fixed part of the graph, laid down first after every reset so that
 * its node ids are constants (node 0 is unused, so that an edge key is
 * never 0): the client's pseudo-locks and their containment, handed over
 * as data (lockdep_reclaim.c). */
struct fixed_node { enum node_kind kind; const char *name; unsigned cls; };
struct fixed_edge { uint32_t from, to; };
extern const struct fixed_node rcl__ld_fixed_nodes[];
extern const unsigned rcl__ld_nr_fixed_nodes;
extern const struct fixed_edge rcl__ld_fixed_edges[];
extern const unsigned rcl__ld_nr_fixed_edges;

/* Set once an edge was refused for a full table: the graph learns
 * nothing more, and a thread does not take a backtrace and the graph lock
 * to be told so (lockdep.c, rcl__ld_depend). Written under the graph
 * lock; cleared only by the reset (lockdep_graph.c says why). */
extern _Atomic bool rcl__ld_edges_full;

extern pthread_mutex_t rcl__ld_graph_lock;
extern struct node     rcl__ld_nodes[MAX_NODES];
extern unsigned        rcl__ld_nr_nodes;             /* under the graph lock */
extern unsigned        rcl__ld_nr_edges;             /* live edges, ditto */

/* The edges, in chunks the checker maps itself (lockdep_graph.c says why)
 * and addressed by slot; under the graph lock. */
#define EDGE_CHUNK  256
extern struct edge    *rcl__ld_edge_chunks[MAX_EDGES / EDGE_CHUNK];

static inline struct edge *ld_edge(uint32_t ei)
{
    return &rcl__ld_edge_chunks[ei / EDGE_CHUNK][ei % EDGE_CHUNK];
}

/* The lock-free set of known edges: key (from << 32 | to), linear probing.
 * A key is published after its edge is in the graph. An edge goes only
 * with a dropped node (and at a reset, which no other thread may overlap):
 * its key is taken out and the keys after it moved back, so a reader
 * without the lock may miss a key that moves, and then looks again under
 * the lock; it never finds a key that was not there. */
extern _Atomic uint64_t rcl__ld_edge_set[EDGE_SLOTS];

static inline uint64_t ld_edge_key(uint32_t from, uint32_t to)
{
    return ((uint64_t)from << 32) | to;
}

static inline unsigned ld_edge_slot(uint64_t key)
{
    return (unsigned)((key * 0x9E3779B97F4A7C15ull) >> (64 - EDGE_BITS));
}

static inline bool ld_edge_known(uint32_t from, uint32_t to)
{
    uint64_t key = ld_edge_key(from, to);

    for (unsigned i = ld_edge_slot(key);; i = (i + 1) & (EDGE_SLOTS - 1)) {
        uint64_t v = atomic_load_explicit(&rcl__ld_edge_set[i], memory_order_relaxed);
        if (v == key)
            return true;
        if (v == 0)
            return false;
    }
}

static inline uint64_t ld_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Lays down the fixed part if the graph is empty. */
void     rcl__ld_graph_ensure_locked(void);
/* A new node; 0 when the table is full. */
uint32_t rcl__ld_node_new_locked(enum node_kind kind, const char *name, unsigned cls,
                                 unsigned depth);
/* Nodes first .. first + n - 1 lose every edge to or from them and are
 * dropped; their incarnation moves on, so an edge a thread meant for them
 * before is not added to what they become (rcl__ld_depend). The client
 * makes them again with rcl__ld_node_remake_locked(). No thread may hold
 * them: a lock taken on top of one would name a node that is now another. */
void     rcl__ld_nodes_drop_locked(uint32_t first, unsigned n);
void     rcl__ld_node_remake_locked(uint32_t id, enum node_kind kind, const char *name,
                                    unsigned cls, unsigned depth);
/* An unregistered class's node is dropped, and made again for the next
 * class that needs one, before the table grows. */
void     rcl__ld_class_drop_locked(uint32_t id);
/* Adds from -> to if new; true when it was added. */
bool     rcl__ld_edge_add_locked(uint32_t from, uint32_t to, enum edge_kind kind,
                                 rcl_gfp_t gfp, const char *shrinker, const struct site *st);
struct report_buf;
/* What a thread passes as `to`'s incarnation for a lock class's node: the
 * class is the caller's, who unregisters it only when no thread uses it
 * (rcl_lock_class_unregister()), so the node read from it is the class's. */
#define INCARN_CLASS UINT_MAX

/* Adds a learned edge (none where either end was dropped, or `to` made
 * again, since the thread read incarn, unless INCARN_CLASS) and, when it
 * closes a cycle not reported before, writes the report into a buffer it
 * takes for *rb, this edge's alone (NULL on entry). Verbose mode also
 * notes the new dependency, in *note, taken at its first line. */
void     rcl__ld_learn_locked(uint32_t from, uint32_t to, unsigned incarn, enum edge_kind kind,
                              rcl_gfp_t gfp, const char *shrinker, const struct site *st,
                              struct report_buf **rb, struct report_buf **note);
/* A class's node id in the graph of generation gen, registering it. */
uint32_t rcl__ld_class_id_slow(struct rcl_lock_class *c, unsigned gen);
/* The node of subclass sub (1 .. RCL_LOCK_SUBCLASSES - 1) of the class
 * whose node is id, made at its first use; 0 when the table is full. */
uint32_t rcl__ld_subclass_id_slow(uint32_t id, unsigned sub);

static inline uint32_t ld_subclass_id(uint32_t id, unsigned sub)
{
    uint32_t s = __atomic_load_n(&rcl__ld_nodes[id].sub[sub - 1], __ATOMIC_ACQUIRE);

    return s ? s : rcl__ld_subclass_id_slow(id, sub);
}

/* The class a held node stands for in a release: its own, or the one it
 * is a subclass of. The thread holds the node, so it is not remade. */
static inline uint32_t ld_node_class(uint32_t id)
{
    uint32_t base = __atomic_load_n(&rcl__ld_nodes[id].base, __ATOMIC_RELAXED);

    return base ? base : id;
}
void     rcl__ld_graph_clear_locked(void);

/* ------------------------------------------------------------------------ */
/* Reports (lockdep_report.c)                                                */
/* ------------------------------------------------------------------------ */

/* Reports are composed under the graph lock into this buffer and handed to
 * rcl__report() after the lock is dropped: the user's report function may
 * take annotated locks of its own. The buffers are the checker's own
 * mappings, never the program's allocator's (lockdep_report.c). */
struct report_buf {
    char   text[3800];
    size_t len;
    bool   counts;                /* rcl_lockdep_reports() counts it */
    bool   out;                   /* taken, and not given back */
    pthread_t owner;              /* who took it, while out */
    struct report_buf *next;      /* a free buffer's, in the free list */
};

extern const char *const rcl__ld_class_name[NCLASS];
extern _Atomic unsigned long rcl__ld_nr_reports;
/* One report more in rcl_lockdep_reports(), once it is handed over. */
void rcl__ld_counted(void);

void rcl__ld_rb_add(struct report_buf *rb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rcl__ld_rb_frames(struct report_buf *rb, void *const *frames, int n);
void rcl__ld_report_cycle_locked(struct report_buf *rb, const uint32_t *cyc, unsigned len);
/* This thread's name and id, no frames. */
void rcl__ld_site_self(struct site *st);
/* An empty report buffer; NULL when no memory is left for one (the report
 * is lost, as a report formatted nowhere would be). `counts`: its report
 * is one of rcl_lockdep_reports(). */
struct report_buf *rcl__ld_rb_get_locked(bool counts);
struct report_buf *rcl__ld_rb_get(bool counts);
/* Hands the reports in rbs[] (NULL entries skipped) to the channel in
 * order, and gives every buffer back, also when a report function ends
 * its thread. */
void rcl__ld_reports_emit(struct report_buf *const *rbs, unsigned n);
/* This thread's name, id and backtrace, less `skip` innermost frames. */
void rcl__ld_site_capture(struct site *st, int skip);
/* The same from the frame that returns to `ret` (a public call's
 * __builtin_return_address(0)), however many of the library's frames lie
 * above it: inlining and tail calls change their number. */
void rcl__ld_site_capture_from(struct site *st, const void *ret);
/* Makes sure the unwinder that backtraces need is loaded (lockdep_report.c). */
void rcl__ld_unwinder_load(void);
/* What makes a call site one: its frames, folded into the seed (which
 * keeps the kinds of report apart). */
uint64_t rcl__ld_site_sig(uint64_t seed, const struct site *st);
/* Was a report with signature sig made already? Remembers it if not. */
bool rcl__ld_site_seen(uint64_t sig);
/* A release of a lock of class `name` by a thread that does not hold it,
 * at st, once a site; `m`: the rcl_mutex_t of an rcl_mutex_unlock(), which
 * then unlocked nothing. */
void rcl__ld_report_unheld(const char *name, const struct site *st, const rcl_mutex_t *m);
/* An rcl_lock_acquire_nested() (`call`) of class `name` at subclass sub,
 * out of range, at st, once a site. */
void rcl__ld_report_bad_subclass(const char *call, const char *name, unsigned sub,
                                 const struct site *st);
/* A thread that exits with t's locks held, once an exit: their names
 * (the graph's, so under its lock) into rb. */
struct ld_thread;
void rcl__ld_report_exit_locked(struct report_buf *rb, const struct ld_thread *t,
                                const struct site *st);
/* An rcl_mutex_destroy() of m, locked (`mine`: by the calling thread, as
 * its stack says), at st (no frames: none known); counted where `counts`. */
void rcl__ld_report_mutex_busy(const rcl_mutex_t *m, const char *name, bool mine,
                              const struct site *st, bool counts);
bool rcl__ld_cycle_seen_locked(const uint32_t *cyc, unsigned len);
void rcl__ld_reports_clear_locked(void);
/* In a fork's child, under the graph lock: the buffers the parent's other
 * threads held go back. */
void rcl__ld_reports_atfork_child_locked(void);

/* ------------------------------------------------------------------------ */
/* Per-thread state and annotations (lockdep.c)                              */
/* ------------------------------------------------------------------------ */

#define MAX_HELD   32
#define MAX_SCOPES 16
#define MAX_SHRINK 4

#define OPENED_FRAMES 6

#define HELD_TRY     0x1   /* taken by a trylock: nothing waited for it */
#define HELD_RECLAIM 0x2   /* a reclaim pseudo-lock (inside a shrinker) */
#define HELD_MUTEX   0x4   /* an rcl_mutex_t, whose address inst[] holds */

struct shrink_frame {
    const char        *name;       /* the shrinker's, for the edges taken inside */
    unsigned long long start_ns;   /* 0: not timed */
    uint32_t           node;       /* the pseudo-lock the pass holds; 0: none */
};

/*
 * Only its thread writes a stack, but rcl_lock_class_unregister() reads
 * every thread's gen, n and held[] for the class, and takes it out of
 * their next_ok[]: those writes, and the reads of next_ok[], are atomics
 * (ld_set(), ld_set_n(), ld_get(): the plain moves they were, on x86-64).
 */
struct ld_thread {
    unsigned gen;                   /* graph_gen the contents belong to */
    unsigned n;                     /* held entries (may exceed MAX_HELD) */
    uint32_t held[MAX_HELD];
    uint32_t next_ok[MAX_HELD];     /* a class known to be taken after held[i]:
                                       the hot path's one-entry edge cache */
    uint8_t  flags[MAX_HELD];
    /* Below the hot paths' fields, which keep their lines. */
    const void *inst[MAX_HELD];     /* the rcl_mutex_t held, where flags
                                       say HELD_MUTEX */
    unsigned unknown;               /* locks held when a reset forgot the stack,
                                       or taken above MAX_HELD when a release
                                       below left a hole there, which the
                                       thread may still release */
    unsigned nscopes;               /* tokens of scope saves, innermost last */
    unsigned scopes[MAX_SCOPES];
    unsigned nshrink;
    struct shrink_frame shrink[MAX_SHRINK];
    /* Where the NOWAIT (0) and NORECLAIM (1) scopes in force were opened,
     * for the report of a NOFAIL allocation inside them; n 0: not known
     * (opened before the checker watched, or adopted from a context). */
    struct { int n; void *frames[OPENED_FRAMES]; } opened[2];
    long tid;                       /* for the report of a class it holds */
    unsigned exit_rounds;           /* destructor rounds its exit waited out
                                       (lockdep.c, ld_thread_exit()) */
    struct ld_thread *prev, *next;  /* every mapped stack (lockdep.c) */
};

#define ld_set(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ld_get(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)
/* A new depth with release: a reader that sees it sees the entries below. */
#define ld_set_n(t, v) __atomic_store_n(&(t)->n, (v), __ATOMIC_RELEASE)

/* Held locks (`held`: the thread's stack is not empty) or a NOWAIT or
 * NORECLAIM scope: sets or clears the watch's byte that sends this
 * thread's allocations to the checker. */
void rcl__ld_update_watch(bool held);

/* This thread's state in the current graph; NULL for a thread the checker
 * cannot follow (no memory for its stack: told once). Out of line, beside
 * the thread-local in lockdep.c: UBSan null-checks an extern thread-local's
 * address, and the linker's rewrite of that access (add into lea) leaves
 * the flags the check reads unset: sanitizer builds report a NULL that is
 * not there. */
struct ld_thread *rcl__ld_thread_get(void);

/* Entry n, below MAX_HELD, written; the depth is the caller's to set. */
static inline void ld_held_fill(struct ld_thread *t, unsigned n, uint32_t id, const void *inst,
                                uint8_t flags)
{
    ld_set(t->held[n], id);
    /* A bare annotation writes no address: its flag says there is none. */
    if (inst)
        t->inst[n] = inst;
    t->flags[n] = flags | (inst ? HELD_MUTEX : 0);
    ld_set(t->next_ok[n], 0);
}

/* The push of a lock at depth n, which the caller has read as t->n. */
static inline void ld_held_push_at(struct ld_thread *t, unsigned n, uint32_t id,
                                   const void *inst, uint8_t flags)
{
    if (likely(n < MAX_HELD))
        ld_held_fill(t, n, id, inst, flags);
    ld_set_n(t, n + 1);
    if (n == 0)
        rcl__ld_update_watch(true);
}

static inline void ld_held_push(struct ld_thread *t, uint32_t id, const void *inst,
                                uint8_t flags)
{
    ld_held_push_at(t, t->n, id, inst, flags);
}

bool rcl__ld_held_pop_slow(struct ld_thread *t, uint32_t id, const void *inst);

/* Does entry i stand for the lock released, of class id: the same
 * rcl_mutex_t, or any lock of the class where either side is a bare
 * annotation (inst NULL, no HELD_MUTEX)? */
static inline bool ld_held_is(const struct ld_thread *t, unsigned i, uint32_t id,
                              const void *inst)
{
    return t->held[i] == id && (!inst || !(t->flags[i] & HELD_MUTEX) || t->inst[i] == inst);
}

/* Takes the lock off the stack if it is on top, as it usually is. */
static inline bool ld_held_pop_top(struct ld_thread *t, uint32_t id, const void *inst)
{
    unsigned n = t->n;

    if (likely(n - 1 < MAX_HELD && ld_held_is(t, n - 1, id, inst))) {
        ld_set_n(t, n - 1);
        if (n == 1)
            rcl__ld_update_watch(false);
        return true;
    }
    return false;
}

/* Takes id off the stack; false when the stack does not hold it (a stack
 * deeper than MAX_HELD may hold it unrecorded, and says true). */
static inline bool ld_held_pop(struct ld_thread *t, uint32_t id, const void *inst)
{
    return ld_held_pop_top(t, id, inst) || rcl__ld_held_pop_slow(t, id, inst);
}

/* Records edges from what the thread holds to `to` (and reports a cycle
 * they close), if `to` is still the node of incarnation `incarn` (read
 * without the lock; a lock class's: INCARN_CLASS). */
void rcl__ld_depend(struct ld_thread *t, uint32_t to, unsigned incarn, enum edge_kind kind,
                    rcl_gfp_t gfp);
/* The checker's own reset: the graph, the reports, this thread's stack. */
void rcl__ld_reset(void);

#pragma GCC visibility pop

#endif /* RCL_LOCKDEP_INTERNAL_H */
