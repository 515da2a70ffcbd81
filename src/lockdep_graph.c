/* SPDX-License-Identifier: MIT */
/*
 * lockdep_graph.c - the lock checker's graph: nodes, edges, the lock-free
 * set of known edges, the cycle search, lock-class ids.
 *
 * A leaf: it knows locks and edges, nothing of memory or of the library's
 * other parts. Its fixed nodes (the reclaim pseudo-locks) come to it as
 * data from its client; a cycle it finds is written up by lockdep_report.c.
 *
 * Its memory never comes from malloc(): an annotated lock may sit inside
 * the program's own allocator (a malloc wrapper, a cache allocator built
 * on an rcl_mutex_t), and a new order learned there would enter that
 * allocator again from inside its lock. The nodes are a fixed table, the
 * edges chunks this file maps itself, each node's edges a chain through
 * them; a reset unmaps the chunks.
 */
#include "lockdep_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

pthread_mutex_t rcl__ld_graph_lock = PTHREAD_MUTEX_INITIALIZER;
struct node     rcl__ld_nodes[MAX_NODES];
unsigned        rcl__ld_nr_nodes;
unsigned        rcl__ld_nr_edges;
struct edge    *rcl__ld_edge_chunks[MAX_EDGES / EDGE_CHUNK];
static unsigned nr_edge_slots;
static uint32_t edge_free = UINT32_MAX;   /* the free slots, chained */
static uint64_t edge_serial;
static uint32_t class_free;               /* unregistered classes' nodes, chained */
static bool     graph_full_reported;
_Atomic bool    rcl__ld_edges_full;

_Atomic uint64_t rcl__ld_edge_set[EDGE_SLOTS];

/* BFS scratch, under the graph lock. */
static uint32_t bfs_seen[MAX_NODES];
static uint32_t bfs_via[MAX_NODES];    /* edge index that reached the node */
static uint32_t bfs_queue[MAX_NODES];
static uint32_t bfs_stamp;
static uint32_t bfs_cycle[MAX_NODES];  /* the cycle found, as edge indices */

static void edge_publish(uint64_t key)
{
    unsigned i = ld_edge_slot(key);

    while (atomic_load_explicit(&rcl__ld_edge_set[i], memory_order_relaxed))
        i = (i + 1) & (EDGE_SLOTS - 1);
    atomic_store_explicit(&rcl__ld_edge_set[i], key, memory_order_release);
}

/* Takes key out of the set. Linear probing without tombstones, which
 * domains coming and going would pile up until no probe ended: each key
 * further along the chain moves back into the hole unless that would put
 * it before its home slot. */
static void edge_unpublish(uint64_t key)
{
    const unsigned mask = EDGE_SLOTS - 1;
    unsigned hole = ld_edge_slot(key);

    while (atomic_load_explicit(&rcl__ld_edge_set[hole], memory_order_relaxed) != key) {
        rcl__assert(atomic_load_explicit(&rcl__ld_edge_set[hole], memory_order_relaxed));
        hole = (hole + 1) & mask;
    }
    for (unsigned j = (hole + 1) & mask;; j = (j + 1) & mask) {
        uint64_t v = atomic_load_explicit(&rcl__ld_edge_set[j], memory_order_relaxed);
        if (!v)
            break;
        unsigned home = ld_edge_slot(v);
        if (((j - home) & mask) < ((j - hole) & mask))
            continue;   /* home lies between the hole and j: v stays */
        atomic_store_explicit(&rcl__ld_edge_set[hole], v, memory_order_release);
        hole = j;
    }
    atomic_store_explicit(&rcl__ld_edge_set[hole], 0, memory_order_release);
}

/* ------------------------------------------------------------------------ */
/* Nodes                                                                     */
/* ------------------------------------------------------------------------ */

static void node_name(struct node *n, enum node_kind kind, const char *name, unsigned cls,
                      unsigned depth)
{
    snprintf(n->name, sizeof(n->name), "%s", name ? name : "(unnamed)");
    n->kind = kind;
    n->cls = cls;
    __atomic_store_n(&n->depth, depth, __ATOMIC_RELAXED);
}

uint32_t rcl__ld_node_new_locked(enum node_kind kind, const char *name, unsigned cls,
                                 unsigned depth)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    if (rcl__ld_nr_nodes >= MAX_NODES)
        return 0;
    struct node *n = &rcl__ld_nodes[rcl__ld_nr_nodes];
    memset(n, 0, sizeof(*n));
    node_name(n, kind, name, cls, depth);
    return rcl__ld_nr_nodes++;
}

void rcl__ld_node_remake_locked(uint32_t id, enum node_kind kind, const char *name,
                                unsigned cls, unsigned depth)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    struct node *n = &rcl__ld_nodes[id];
    rcl__assert(id && id < rcl__ld_nr_nodes && n->dropped && !n->nout);
    node_name(n, kind, name, cls, depth);
    for (unsigned i = 0; i < RCL_LOCK_SUBCLASSES - 1; i++)
        __atomic_store_n(&n->sub[i], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&n->base, 0, __ATOMIC_RELAXED);
    n->dropped = false;
}

/* The fixed part of the graph: the client's pseudo-locks and their
 * containment, at the ids the client counts on. */
static void graph_seed_locked(void)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    rcl__ld_nr_nodes = 1;
    for (unsigned i = 0; i < rcl__ld_nr_fixed_nodes; i++) {
        const struct fixed_node *f = &rcl__ld_fixed_nodes[i];
        rcl__ld_node_new_locked(f->kind, f->name, f->cls, 0);
    }
    for (unsigned i = 0; i < rcl__ld_nr_fixed_edges; i++)
        rcl__ld_edge_add_locked(rcl__ld_fixed_edges[i].from, rcl__ld_fixed_edges[i].to,
                                EDGE_CONTAIN, 0, NULL, NULL);
}

void rcl__ld_graph_ensure_locked(void)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    if (rcl__ld_nr_nodes == 0)
        graph_seed_locked();
}

/* Set while the table has no node left for a new class and none given
 * back; written under the graph lock. */
static _Atomic bool nodes_full;
static _Atomic unsigned long class_lookups;

unsigned long rcl__lockdep_class_lookups(void)
{
    return atomic_load_explicit(&class_lookups, memory_order_relaxed);
}

/* A node for a lock class or one of its subclasses: an unregistered
 * class's before the table grows; 0 when it is full. */
static uint32_t class_node_locked(const char *name)
{
    uint32_t id = class_free;

    rcl__assert_held(&rcl__ld_graph_lock);
    if (id) {
        class_free = rcl__ld_nodes[id].next_free;
        rcl__ld_node_remake_locked(id, NODE_LOCK, name, 0, 0);
        return id;
    }
    id = rcl__ld_node_new_locked(NODE_LOCK, name, 0, 0);
    if (!id)
        atomic_store_explicit(&nodes_full, true, memory_order_relaxed);
    return id;
}

/* A class's node id in the current graph, registering it on first use.
 * The class is the caller's memory: read and written with atomics because
 * several threads may register it at once. */
__attribute__((noinline)) uint32_t rcl__ld_class_id_slow(struct rcl_lock_class *c, unsigned gen)
{
    uint32_t id;

    /* A class the full table has no node for comes here at every acquire:
     * the graph lock would put every thread taking such locks in one
     * line, to be told each time what the flag says. */
    if (atomic_load_explicit(&nodes_full, memory_order_relaxed) &&
        __atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) != gen)
        return 0;
    atomic_fetch_add_explicit(&class_lookups, 1, memory_order_relaxed);
    pthread_mutex_lock(&rcl__ld_graph_lock);
    rcl__ld_graph_ensure_locked();
    if (__atomic_load_n(&c->rcl_gen, __ATOMIC_ACQUIRE) == gen) {
        id = __atomic_load_n(&c->rcl_id, __ATOMIC_RELAXED);
    } else {
        id = class_node_locked(c->name);
        __atomic_store_n(&c->rcl_id, id, __ATOMIC_RELAXED);
        __atomic_store_n(&c->rcl_gen, id ? gen : 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    return id;
}

/* Only the acquire that makes a subclass's node comes here: the ones
 * after it find the node in its class's, and a full table refuses a
 * subclass as it refuses a class, each acquire a lookup. */
__attribute__((noinline)) uint32_t rcl__ld_subclass_id_slow(uint32_t id, unsigned sub)
{
    struct node *base = &rcl__ld_nodes[id];
    uint32_t s;
    char name[sizeof(base->name)];

    rcl__assert(sub && sub < RCL_LOCK_SUBCLASSES);
    if (atomic_load_explicit(&nodes_full, memory_order_relaxed))
        return 0;
    atomic_fetch_add_explicit(&class_lookups, 1, memory_order_relaxed);
    pthread_mutex_lock(&rcl__ld_graph_lock);
    s = __atomic_load_n(&base->sub[sub - 1], __ATOMIC_RELAXED);
    if (!s) {
        /* The kernel's way of naming it: "i_mutex/1". */
        snprintf(name, sizeof(name), "%.*s/%u", (int)sizeof(name) - 4, base->name, sub);
        s = class_node_locked(name);
        if (s) {
            __atomic_store_n(&rcl__ld_nodes[s].base, id, __ATOMIC_RELAXED);
            __atomic_store_n(&base->sub[sub - 1], s, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Edges and cycles                                                          */
/* ------------------------------------------------------------------------ */

/* Is `target` reachable from `start`? On success bfs_via[] holds the path. */
static bool reach_locked(uint32_t start, uint32_t target)
{
    rcl__assert_held(&rcl__ld_graph_lock);
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
        const struct node *nu = &rcl__ld_nodes[u];
        uint32_t ei = nu->out_first;
        for (unsigned i = 0; i < nu->nout; i++, ei = ld_edge(ei)->next_out) {
            uint32_t v = ld_edge(ei)->to;
            if (bfs_seen[v] != bfs_stamp) {
                bfs_seen[v] = bfs_stamp;
                bfs_via[v] = ei;
                bfs_queue[tail++] = v;
            }
        }
    }
    return false;
}

/* A slot for a new edge, a dropped node's if there is one; UINT32_MAX
 * when there is no memory. The live edges are fewer than MAX_EDGES, and
 * free slots go first, so the slots never outgrow the chunk table. */
static uint32_t edge_slot_get(void)
{
    if (edge_free != UINT32_MAX) {
        uint32_t ei = edge_free;
        edge_free = ld_edge(ei)->next_free;
        memset(ld_edge(ei), 0, sizeof(struct edge));
        return ei;
    }
    rcl__assert(nr_edge_slots < MAX_EDGES);
    if (nr_edge_slots % EDGE_CHUNK == 0) {
        void *c = mmap(NULL, EDGE_CHUNK * sizeof(struct edge), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (c == MAP_FAILED)
            return UINT32_MAX;
        rcl__ld_edge_chunks[nr_edge_slots / EDGE_CHUNK] = c;
    }
    return nr_edge_slots++;
}

/* Adds from -> to if new: its slot, or UINT32_MAX. */
static uint32_t edge_add_locked(uint32_t from, uint32_t to, enum edge_kind kind,
                                rcl_gfp_t gfp, const char *shrinker, const struct site *st)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    if (ld_edge_known(from, to))
        return UINT32_MAX;
    if (rcl__ld_nr_edges >= MAX_EDGES)
        return UINT32_MAX;
    struct node *f = &rcl__ld_nodes[from];
    uint32_t ei = edge_slot_get();
    if (ei == UINT32_MAX)
        return UINT32_MAX;
    struct edge *e = ld_edge(ei);
    e->serial = ++edge_serial;
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
    /* At the chain's end: the cycle search follows edges in the order they
     * were learned, as it always has. */
    if (f->nout)
        ld_edge(f->out_last)->next_out = ei;
    else
        f->out_first = ei;
    f->out_last = ei;
    f->nout++;
    rcl__ld_nr_edges++;
    edge_publish(ld_edge_key(from, to));
    return ei;
}

bool rcl__ld_edge_add_locked(uint32_t from, uint32_t to, enum edge_kind kind,
                             rcl_gfp_t gfp, const char *shrinker, const struct site *st)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    return edge_add_locked(from, to, kind, gfp, shrinker, st) != UINT32_MAX;
}

/* Edge ei goes: out of its node's list and the set of known edges, its
 * slot onto the free list. */
static void edge_del_locked(uint32_t ei)
{
    struct edge *e = ld_edge(ei);
    struct node *f = &rcl__ld_nodes[e->from];
    uint32_t prev = UINT32_MAX, cur = f->out_first;

    rcl__assert_held(&rcl__ld_graph_lock);
    for (unsigned i = 0; cur != ei; i++, prev = cur, cur = ld_edge(cur)->next_out)
        rcl__assert(i + 1 < f->nout);
    if (prev == UINT32_MAX)
        f->out_first = e->next_out;
    else
        ld_edge(prev)->next_out = e->next_out;
    if (f->out_last == ei)
        f->out_last = prev;
    f->nout--;
    edge_unpublish(ld_edge_key(e->from, e->to));
    e->from = 0;
    e->next_free = edge_free;
    edge_free = ei;
    rcl__ld_nr_edges--;
}

static bool in_range(uint32_t id, uint32_t first, unsigned n)
{
    return id - first < n;
}

/* Every edge's slot is looked at: nodes keep no list of the edges into
 * them, and a drop is rare (a domain's destroy, a class's unregister). */
void rcl__ld_nodes_drop_locked(uint32_t first, unsigned n)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    rcl__assert(first && first + n <= rcl__ld_nr_nodes);
    for (uint32_t ei = 0; ei < nr_edge_slots; ei++) {
        const struct edge *e = ld_edge(ei);
        if (e->from && (in_range(e->from, first, n) || in_range(e->to, first, n)))
            edge_del_locked(ei);
    }
    for (unsigned i = 0; i < n; i++) {
        struct node *nd = &rcl__ld_nodes[first + i];
        rcl__assert(!nd->nout && !nd->dropped);
        nd->incarn++;
        nd->dropped = true;
    }
}

static void class_node_drop_locked(uint32_t id)
{
    rcl__assert(rcl__ld_nodes[id].kind == NODE_LOCK);
    rcl__ld_nodes_drop_locked(id, 1);
    rcl__ld_nodes[id].next_free = class_free;
    class_free = id;
}

/* The class's subclasses go with it: the memory of the class is about to
 * be another's, which must not find the old one's orders. */
void rcl__ld_class_drop_locked(uint32_t id)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    for (unsigned i = 0; i < RCL_LOCK_SUBCLASSES - 1; i++) {
        uint32_t s = __atomic_load_n(&rcl__ld_nodes[id].sub[i], __ATOMIC_RELAXED);
        if (s)
            class_node_drop_locked(s);
    }
    class_node_drop_locked(id);
    atomic_store_explicit(&nodes_full, false, memory_order_relaxed);
}

/* The cycle the new edge `added` (from -> to) closes, into bfs_cycle[]:
 * that edge, then the BFS tree's path from `to` back round to `from`. The
 * path is simple, so it has fewer edges than there are nodes; all of them
 * go in, however long the chain: a cycle cut short would name hops no
 * thread took. Returns its length. */
static unsigned cycle_locked(uint32_t added, uint32_t from, uint32_t to)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    unsigned np = 0;

    for (uint32_t v = from; v != to; v = ld_edge(bfs_via[v])->from)
        np++;
    rcl__assert(np < MAX_NODES);
    bfs_cycle[0] = added;
    unsigned i = np;
    for (uint32_t v = from; v != to; v = ld_edge(bfs_via[v])->from)
        bfs_cycle[i--] = bfs_via[v];
    return np + 1;
}

/* The notes of one acquire share a buffer, a line each: an acquire above
 * a trylock learns several dependencies at once. False when there is no
 * buffer for them. */
static bool note_line(struct report_buf **note)
{
    if (!*note)
        *note = rcl__ld_rb_get_locked(false);
    else
        rcl__ld_rb_add(*note, "\n");
    return *note != NULL;
}

/*
 * The table of dependencies is full: the order that did not fit is lost,
 * and with it every cycle it closes, which no later order can bring back.
 * The kernel's lockdep says so once ("MAX_LOCKDEP_ENTRIES too low!") and
 * turns itself off; so does the graph, until rcl_shutdown() clears it.
 * Learning again once an unregister made room would check the orders
 * against a graph that misses some, and a room made and filled over and
 * over would tell of it each time. The report is a problem of its own,
 * counted: the checking the program asked for ends here.
 */
static void edges_full_locked(struct report_buf **rb)
{
    atomic_store_explicit(&rcl__ld_edges_full, true, memory_order_relaxed);
    if (graph_full_reported || !(*rb = rcl__ld_rb_get_locked(true)))
        return;
    graph_full_reported = true;
    rcl__ld_rb_add(*rb, "lock checker: the table of dependencies is full (%u lock orders); "
                        "no lock order is learned and no cycle reported from now on, until "
                        "rcl_shutdown(). What it means: the program has more lock orders "
                        "than the checker can hold, and a graph that misses some checks "
                        "nothing reliably. Usual fix: give back the classes of objects that "
                        "go (rcl_lock_class_unregister()), or share a class among the "
                        "locks of one kind.", (unsigned)MAX_EDGES);
}

void rcl__ld_learn_locked(uint32_t from, uint32_t to, unsigned incarn, enum edge_kind kind,
                          rcl_gfp_t gfp, const char *shrinker, const struct site *st,
                          struct report_buf **rb, struct report_buf **note)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    rcl__assert(!*rb);         /* each edge's cycle has a report of its own */
    /* The thread read `to` without the lock: it may be another node now. */
    if (rcl__ld_nodes[to].dropped ||
        (incarn != INCARN_CLASS && rcl__ld_nodes[to].incarn != incarn) ||
        rcl__ld_nodes[from].dropped)
        return;
    /* Off for good, the first thread told and the others on their way. */
    if (atomic_load_explicit(&rcl__ld_edges_full, memory_order_relaxed))
        return;
    uint32_t added = edge_add_locked(from, to, kind, gfp, shrinker, st);
    if (added == UINT32_MAX) {
        if (rcl__ld_nr_edges >= MAX_EDGES)
            edges_full_locked(rb);
        return;
    }
    if (rd(rcl__lockdep_mode) == RCL_LOCKDEP_VERBOSE && note_line(note))
        rcl__ld_rb_add(*note, "lock checker: new dependency %s \u2192 %s (thread \"%s\")",
                       rcl__ld_nodes[from].name, rcl__ld_nodes[to].name, st ? st->thread : "");

    /* The new edge closes a cycle iff `from` is reachable from `to`. */
    if (!reach_locked(to, from))
        return;
    unsigned len = cycle_locked(added, from, to);
    if (rcl__ld_cycle_seen_locked(bfs_cycle, len) || !(*rb = rcl__ld_rb_get_locked(true)))
        return;
    rcl__ld_report_cycle_locked(*rb, bfs_cycle, len);
}

/* Everything learned goes; the next use lays the fixed part down again. */
void rcl__ld_graph_clear_locked(void)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    for (unsigned c = 0; c * EDGE_CHUNK < nr_edge_slots; c++) {
        munmap(rcl__ld_edge_chunks[c], EDGE_CHUNK * sizeof(struct edge));
        rcl__ld_edge_chunks[c] = NULL;
    }
    rcl__ld_nr_edges = nr_edge_slots = 0;
    edge_free = UINT32_MAX;
    class_free = 0;
    atomic_store_explicit(&nodes_full, false, memory_order_relaxed);
    rcl__ld_nr_nodes = 0;
    for (unsigned i = 0; i < EDGE_SLOTS; i++)
        atomic_store_explicit(&rcl__ld_edge_set[i], 0, memory_order_relaxed);
    graph_full_reported = false;
    atomic_store_explicit(&rcl__ld_edges_full, false, memory_order_relaxed);
}
