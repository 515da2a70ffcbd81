/* SPDX-License-Identifier: MIT */
/*
 * lockdep_reclaim.c - the reclaim model: memory reclaim told to the lock
 * checker as pseudo-locks, the way a kernel allocator annotates its
 * fs_reclaim map. A client of the checker (lockdep_internal.h): the
 * checker knows nothing of memory, and what this file needs of a shrinker
 * or a domain its callers hand over.
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
 * A shrinker pass holds its reclaim node, so the locks it takes depend on
 * it. Beside the graph: scopes that forbid sleeping or reclaim, checked
 * against the allocations inside them, and shrinkers that keep the
 * background reclaimer waiting.
 */
#include "lockdep_internal.h"

#include <execinfo.h>
#include <stdio.h>
#include <string.h>

#define MAX_DOMAINS 64

/* The pseudo-locks' node ids: the graph lays them down in this order. */
#define N_RECLAIM(c)        (1u + (c))
#define N_RECLAIM_GLOBAL(c) (1u + NCLASS + (c))

const struct fixed_node rcl__ld_fixed_nodes[] = {
    { NODE_RECLAIM, "reclaim(none)", 0 },
    { NODE_RECLAIM, "reclaim(IO)", 1 },
    { NODE_RECLAIM, "reclaim(FS+IO)", 2 },
    { NODE_RECLAIM_GLOBAL, "reclaim(none)", 0 },
    { NODE_RECLAIM_GLOBAL, "reclaim(IO)", 1 },
    { NODE_RECLAIM_GLOBAL, "reclaim(FS+IO)", 2 },
};
const unsigned rcl__ld_nr_fixed_nodes = sizeof(rcl__ld_fixed_nodes) / sizeof(rcl__ld_fixed_nodes[0]);

/* Containment: reclaim(c) into its global part, each kind into its
 * narrower class. */
const struct fixed_edge rcl__ld_fixed_edges[] = {
    { N_RECLAIM(0), N_RECLAIM_GLOBAL(0) },
    { N_RECLAIM(1), N_RECLAIM_GLOBAL(1) },
    { N_RECLAIM(1), N_RECLAIM(0) },
    { N_RECLAIM_GLOBAL(1), N_RECLAIM_GLOBAL(0) },
    { N_RECLAIM(2), N_RECLAIM_GLOBAL(2) },
    { N_RECLAIM(2), N_RECLAIM(1) },
    { N_RECLAIM_GLOBAL(2), N_RECLAIM_GLOBAL(1) },
};
const unsigned rcl__ld_nr_fixed_edges = sizeof(rcl__ld_fixed_edges) / sizeof(rcl__ld_fixed_edges[0]);

/*
 * Domain pseudo-nodes, readable without the lock: ndomains is published
 * with release after the entry is complete. An entry's three nodes are
 * made once; a destroyed domain (dom_ptr NULL) drops them, which takes
 * every edge to or from them away, and the next domain in the entry makes
 * them again: however many domains a program goes through, the entries
 * hold at most 3 * MAX_DOMAINS nodes. dom_key holds the base and the
 * nodes' incarnation, which every drop moves on: no key comes back until
 * a reset, so a reader that reads the same key before and after the
 * pointer has read one domain's pair, and an edge it then learns for a
 * domain destroyed meanwhile is not added (rcl__ld_depend).
 */
static struct rcl_domain *_Atomic dom_ptr[MAX_DOMAINS];
static _Atomic uint64_t dom_key[MAX_DOMAINS];
static _Atomic unsigned ndomains;

static uint64_t dom_key_of(uint32_t base, unsigned incarn)
{
    return (uint64_t)incarn << 32 | base;
}

static _Atomic unsigned slow_shrinker_ms = 1000;

static unsigned gfp_class(rcl_gfp_t gfp)
{
    if (gfp & RCL__FS)
        return 2;   /* FS reclaim may issue I/O of its own: the widest */
    return (gfp & RCL__IO) ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Domain nodes                                                              */
/* ------------------------------------------------------------------------ */

/* Entry i's domain (NULL: destroyed) and the base and incarnation of that
 * same domain's nodes, read again if the entry was taken by another domain
 * meanwhile. */
static struct rcl_domain *domain_entry(unsigned i, uint32_t *base, unsigned *incarn)
{
    for (;;) {
        uint64_t k = atomic_load_explicit(&dom_key[i], memory_order_acquire);
        struct rcl_domain *d = atomic_load_explicit(&dom_ptr[i], memory_order_acquire);
        if (atomic_load_explicit(&dom_key[i], memory_order_relaxed) == k) {
            *base = (uint32_t)k;
            *incarn = (unsigned)(k >> 32);
            return d;
        }
    }
}

static uint32_t domain_lookup(const struct rcl_domain *d, unsigned n)
{
    uint32_t base;
    unsigned incarn;

    for (unsigned i = 0; i < n; i++)
        if (domain_entry(i, &base, &incarn) == d)
            return base;
    return 0;
}

/* Domain d's three nodes, hung under reclaim(c); graph lock held. base:
 * the entry's nodes, dropped by the domain before, or 0 for new ones. */
static uint32_t domain_nodes_locked(struct rcl_domain *d, uint32_t base)
{
    rcl__assert_held(&rcl__ld_graph_lock);
    const char *dname = rcl_domain_name(d);
    unsigned depth = rcl_domain_depth(d);
    bool remake = base != 0;

    for (unsigned c = 0; c < NCLASS; c++) {
        char name[48];
        snprintf(name, sizeof(name), "reclaim(%s) of domain \"%s\"", rcl__ld_class_name[c],
                 dname ? dname : "?");
        if (remake) {
            rcl__ld_node_remake_locked(base + c, NODE_RECLAIM_DOMAIN, name, c, depth);
            continue;
        }
        uint32_t id = rcl__ld_node_new_locked(NODE_RECLAIM_DOMAIN, name, c, depth);
        if (c == 0)
            base = id;
    }
    for (unsigned c = 0; c < NCLASS; c++) {
        rcl__ld_edge_add_locked(N_RECLAIM(c), base + c, EDGE_CONTAIN, 0, NULL, NULL);
        if (c > 0)
            rcl__ld_edge_add_locked(base + c, base + c - 1, EDGE_CONTAIN, 0, NULL, NULL);
    }
    return base;
}

/* The three nodes of domain d, created (and hung under reclaim(c)) the
 * first time one of its shrinkers runs. Returns the class-0 node id. */
static uint32_t domain_base(struct rcl_domain *d, bool create)
{
    unsigned n = atomic_load_explicit(&ndomains, memory_order_acquire);
    uint32_t base = domain_lookup(d, n);

    if (base || !create)
        return base;
    pthread_mutex_lock(&rcl__ld_graph_lock);
    rcl__ld_graph_ensure_locked();
    n = atomic_load_explicit(&ndomains, memory_order_relaxed);
    base = domain_lookup(d, n);
    /* A destroyed domain's entry first: a program that mounts and unmounts
     * goes through more domains than there are entries. */
    unsigned i = 0;
    while (i < n && atomic_load_explicit(&dom_ptr[i], memory_order_relaxed))
        i++;
    if (!base && i < MAX_DOMAINS) {
        uint64_t old = atomic_load_explicit(&dom_key[i], memory_order_relaxed);
        uint32_t reuse = i < n ? (uint32_t)old : 0;
        if (reuse || rcl__ld_nr_nodes + NCLASS <= MAX_NODES) {
            base = domain_nodes_locked(d, reuse);
            uint64_t key = dom_key_of(base, rcl__ld_nodes[base].incarn);
            rcl__assert(base && key != old);
            atomic_store_explicit(&dom_key[i], key, memory_order_release);
            atomic_store_explicit(&dom_ptr[i], d, memory_order_release);
            if (i == n)
                atomic_store_explicit(&ndomains, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    return base;
}

/* A destroyed domain's nodes go with every dependency they had, which
 * are not the next domain's: that one makes them again in this entry.
 * None of its shrinkers can be in a pass, which would hold a node: the
 * domain had none registered, and unregister waits for the passes. */
void rcl__lockdep_domain_forget(const struct rcl_domain *d)
{
    pthread_mutex_lock(&rcl__ld_graph_lock);
    unsigned n = atomic_load_explicit(&ndomains, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        if (atomic_load_explicit(&dom_ptr[i], memory_order_relaxed) != d)
            continue;
        atomic_store_explicit(&dom_ptr[i], NULL, memory_order_relaxed);
        uint32_t base = (uint32_t)atomic_load_explicit(&dom_key[i], memory_order_relaxed);
        rcl__ld_nodes_drop_locked(base, NCLASS);
    }
    pthread_mutex_unlock(&rcl__ld_graph_lock);
}

/* The pseudo-lock a shrinker pass in class cls holds; 0 for a domain that
 * has no nodes (the graph full, or every entry a live domain's). */
static uint32_t shrink_node(struct rcl_domain *d, unsigned cls, bool create)
{
    if (d) {
        uint32_t base = domain_base(d, create);
        return base ? base + cls : 0;
    }
    return N_RECLAIM_GLOBAL(cls);
}

static _Atomic int dom_unchecked_told;   /* once a graph (rcl__lockdep_reset) */

/* Held as the global shrinkers' node, the pass would tie the domain's
 * locks to every allocation inside the domain, whose own shrinkers
 * reclaim skips there: a false reclaim deadlock. Holding none, the locks
 * it takes depend on what the reclaiming thread holds, as they do. */
static __attribute__((noinline, cold)) void domain_unchecked(const struct rcl_domain *d)
{
    const char *name = rcl_domain_name(d);

    if (!atomic_exchange(&dom_unchecked_told, 1))
        rcl__report("lock checker: no node for domain \"%s\" (the graph is full, or %d "
                    "domains have nodes); the locks its shrinkers take, and those of every "
                    "domain without nodes, are not checked against reclaim",
                    name ? name : "?", MAX_DOMAINS);
}

/* The checker forgets everything, these domain nodes with the rest. */
void rcl__lockdep_reset(void)
{
    pthread_mutex_lock(&rcl__ld_graph_lock);
    /* Node ids start again after a reset: an old key left in an entry
     * could equal a new one, and a reader take the pair for one domain's. */
    for (unsigned i = 0; i < MAX_DOMAINS; i++) {
        atomic_store_explicit(&dom_ptr[i], NULL, memory_order_relaxed);
        atomic_store_explicit(&dom_key[i], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&ndomains, 0, memory_order_relaxed);
    atomic_store_explicit(&dom_unchecked_told, 0, memory_order_relaxed);
    pthread_mutex_unlock(&rcl__ld_graph_lock);
    rcl__ld_reset();
}

/* ------------------------------------------------------------------------ */
/* The allocation hook                                                       */
/* ------------------------------------------------------------------------ */

/* A reclaim node an allocation may wait for, and its incarnation then. */
struct target { uint32_t node; unsigned incarn; };

/* Which reclaim nodes an allocation in class cls may wait for, given the
 * domains the thread is inside (the rules of rcl_domain_enter). */
static unsigned reclaim_targets(unsigned cls, struct target *out, unsigned max)
{
    unsigned n = 0;

    if (!rcl__domain_inside()) {
        out[n++] = (struct target){ N_RECLAIM(cls), 0 };
        return n;
    }
    out[n++] = (struct target){ N_RECLAIM_GLOBAL(cls), 0 };
    unsigned nd = atomic_load_explicit(&ndomains, memory_order_acquire);
    for (unsigned i = 0; i < nd && n < max; i++) {
        uint32_t base;
        unsigned incarn;
        struct rcl_domain *d = domain_entry(i, &base, &incarn);
        if (!d)
            continue;                  /* destroyed */
        /* Inside d its may_reclaim decides; the checker assumes skip. A
         * depth read after the nodes were made again for another domain
         * goes into an edge that is not added (their incarnation moved). */
        unsigned r = rcl__domain_rule(d, __atomic_load_n(&rcl__ld_nodes[base].depth,
                                                         __ATOMIC_RELAXED));
        if (!(r & (RCL__DOMAIN_OWN | RCL__DOMAIN_SKIP)))
            out[n++] = (struct target){
                base + ((r & RCL__DOMAIN_NOFS) && cls > 1 ? 1 : cls), incarn };
    }
    return n;
}

/* Inlined into its one caller on purpose: the report's backtrace starts
 * two frames up, at the allocation's caller. */
static inline __attribute__((always_inline)) void site_report_once(const char *what, rcl_gfp_t gfp)
{
    struct site st;
    rcl__ld_site_capture(&st, 2);
    uint64_t sig = rcl__ld_site_sig(0, &st);

    struct report_buf *rb;
    char buf[RCL__GFP_STR_MAX];
    if (rcl__ld_site_seen(sig) || !(rb = rcl__ld_rb_get(true)))
        return;
    rcl__ld_rb_add(rb, "lock checker: %s (%s) in thread \"%s\" (tid %ld), at:\n", what,
                   rcl__gfp_str(gfp, buf, sizeof(buf)), st.thread, st.tid);
    rcl__ld_rb_frames(rb, st.frames, st.nframes);
    rcl__ld_rb_add(rb, "  What it means: the code that opened the NOWAIT scope promised that "
                       "nothing inside sleeps (it may hold a spinning lock or run in an event "
                       "loop), but this allocation may block in reclaim. Usual fixes: allocate "
                       "with RCL_NOWAIT here and handle failure, or allocate before entering the "
                       "scope.");
    rcl__ld_reports_emit(&rb, 1);
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
    rcl__ld_site_capture(&st, 3);
    uint64_t sig = rcl__ld_site_sig(0x4e4f4641ull + (uint64_t)which, &st);

    struct report_buf *rb;
    char buf[RCL__GFP_STR_MAX];
    if (rcl__ld_site_seen(sig) || !(rb = rcl__ld_rb_get(true)))
        return;
    rcl__ld_rb_add(rb, "lock checker: NOFAIL allocation inside a %s scope (%s) in thread \"%s\" "
                       "(tid %ld); allocated at:\n", scope, rcl__gfp_str(gfp, buf, sizeof(buf)),
                   st.thread, st.tid);
    rcl__ld_rb_frames(rb, st.frames, st.nframes);
    if (t->opened[which].n) {
        rcl__ld_rb_add(rb, "  the %s scope was opened at:\n", scope);
        rcl__ld_rb_frames(rb, t->opened[which].frames, t->opened[which].n);
    } else {
        rcl__ld_rb_add(rb, "  where the %s scope was opened is not known (before the checker "
                           "watched this thread, or adopted from another thread's context)\n",
                       scope);
    }
    rcl__ld_rb_add(rb, "  What it means: the allocation may not fail and this scope removes its "
                       "direct reclaim, so it takes part of the reserve and then sleeps until the "
                       "background reclaimer or other threads free memory. Usual fixes: allocate "
                       "before opening the scope, or without NOFAIL and handle the failure.");
    rcl__ld_reports_emit(&rb, 1);
}

/* An allocation asked with gfp is about to charge: it may sleep (checked
 * against NOWAIT) and may wait for reclaim (a dependency on it from every
 * lock held). */
void rcl__lockdep_alloc(rcl_gfp_t gfp)
{
    struct ld_thread *t = rcl__ld_thread_get();
    rcl_gfp_t masked = rcl_current_gfp(gfp);

    if (!t)
        return;   /* a thread the checker cannot follow (lockdep.c) */

    if ((gfp & RCL__NOFAIL) && (gfp & RCL__DIRECT_RECLAIM) &&
        (rcl__scope & (RCL_SCOPE_NOWAIT | RCL_SCOPE_NORECLAIM)))
        nofail_scope_report(t, gfp);
    else if ((gfp & RCL__DIRECT_RECLAIM) && (rcl__scope & RCL_SCOPE_NOWAIT))
        site_report_once("an allocation that may sleep inside a NOWAIT scope", gfp);
    if (!rcl__may_reclaim(masked) || !t->n)
        return;

    struct target to[2 + MAX_DOMAINS];
    unsigned nt = reclaim_targets(gfp_class(masked), to, 2 + MAX_DOMAINS);
    for (unsigned i = 0; i < nt; i++)
        rcl__ld_depend(t, to[i].node, to[i].incarn, EDGE_ALLOC, masked);
}

/* Every allocation the annotated path makes with these flags is refused:
 * said where the annotation is, before the path ever allocates. */
static __attribute__((noinline, cold)) void might_alloc_refused(rcl_gfp_t gfp)
{
    char flags[RCL__GFP_STR_MAX];

    rcl__report("rcl_might_alloc(%s): NOFAIL needs DIRECT_RECLAIM (it must be able to wait); "
                "every allocation with these flags is refused (EINVAL)",
                rcl__gfp_str(gfp, flags, sizeof(flags)));
}

void rcl_might_alloc(rcl_gfp_t gfp)
{
    rcl__ensure_init();
    gfp = rcl__gfp_known("rcl_might_alloc", gfp);
    if (unlikely(rcl__gfp_nofail_nowait(gfp)) && !(gfp & RCL__NOWARN))
        might_alloc_refused(gfp);
    if (rcl__checking())
        rcl__lockdep_alloc(gfp);
}

/* ------------------------------------------------------------------------ */
/* Shrinker passes                                                           */
/* ------------------------------------------------------------------------ */

void rcl__lockdep_shrink_begin(const char *name, struct rcl_domain *d, rcl_gfp_t gfp,
                               bool timed)
{
    struct ld_thread *t = rcl__ld_thread_get();
    if (!t)
        return;
    uint32_t node = shrink_node(d, gfp_class(gfp), true);

    /* Nothing is recorded on the way in: the allocation that led here
     * already recorded its dependency on reclaim. */
    if (node)
        ld_held_push(t, node, NULL, HELD_RECLAIM);
    else
        domain_unchecked(d);
    if (t->nshrink < MAX_SHRINK)
        t->shrink[t->nshrink] = (struct shrink_frame){ name, timed ? rcl__now_ns() : 0, node };
    t->nshrink++;
}

/* A shrinker that kept the background reclaimer waiting past the bound,
 * told once per shrinker. */
static void slow_shrinker_report(const char *name, unsigned long long ms, unsigned bound)
{
    if (rcl__ld_site_seen(ld_mix64((uint64_t)(uintptr_t)name ^ 0x5157)))
        return;
    rcl__report_counted(rcl__ld_counted,
                        "lock checker: shrinker \"%s\" took %llu ms (bound %u ms) while the "
                        "background reclaimer waited on it. What it means: every allocation that "
                        "needs the background reclaimer to make room stalls meanwhile, and if the "
                        "shrinker waits for anything that needs memory, reclaim stops altogether. "
                        "Usual fixes: do not block in a shrinker - skip busy objects, use "
                        "trylocks, and leave slow write-back to a worker thread (as in the "
                        "kernel: \"you should not block kswapd\").",
                        name, ms, bound);
}

void rcl__lockdep_shrink_end(const char *name, struct rcl_domain *d, rcl_gfp_t gfp)
{
    struct ld_thread *t = rcl__ld_thread_get();
    unsigned long long start = 0;
    bool framed = false;
    uint32_t node = 0;

    if (!t)
        return;

    if (t->nshrink) {
        t->nshrink--;
        if (t->nshrink < MAX_SHRINK) {
            start = t->shrink[t->nshrink].start_ns;
            node = t->shrink[t->nshrink].node;
            framed = true;
        }
    }
    /* The node the pass pushed, not the one the domain has now: another
     * thread's pass may have made its nodes meanwhile. */
    if (!framed)
        node = shrink_node(d, gfp_class(gfp), false);
    /* Pushed above the depth, the pass's pseudo-lock may since have become
     * one of the locks the stack holds unknown (lockdep.c): it is one
     * fewer of those. */
    if (node && !ld_held_pop(t, node, NULL) && t->unknown)
        t->unknown--;

    unsigned bound = atomic_load_explicit(&slow_shrinker_ms, memory_order_relaxed);
    if (!start || !bound || !name)
        return;
    unsigned long long ms = (rcl__now_ns() - start) / 1000000ull;
    if (ms >= bound)
        slow_shrinker_report(name, ms, bound);
}

void rcl_lockdep_set_slow_shrinker_ms(unsigned ms)
{
    atomic_store_explicit(&slow_shrinker_ms, ms, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Scopes                                                                    */
/* ------------------------------------------------------------------------ */

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
    struct ld_thread *t = rcl__ld_thread_get();

    if (!t)
        return;
    if (set & (RCL_SCOPE_NOWAIT | RCL_SCOPE_NORECLAIM))
        scope_opened(t, set);

    if (set) {
        if (t->nscopes < MAX_SCOPES)
            t->scopes[t->nscopes] = set;
        t->nscopes++;
    }
    rcl__ld_update_watch(t->n > 0);
}

/* The scope word was set wholesale (rcl__scope_put): the saves whose bits
 * it no longer has are over. */
void rcl__lockdep_scope_put(unsigned bits)
{
    struct ld_thread *t = rcl__ld_thread_get();
    if (!t)
        return;
    unsigned n = t->nscopes < MAX_SCOPES ? t->nscopes : MAX_SCOPES;

    while (n && (t->scopes[n - 1] & ~bits))
        n--;
    t->nscopes = n;
    /* Set wholesale: where these scopes were opened is not known here. */
    t->opened[0].n = t->opened[1].n = 0;
    rcl__ld_update_watch(t->n > 0);
}

/* A scope or context restored out of order, or with a token no save
 * returned, at `st`. */
static void scope_report(const struct site *st, const char *whose, unsigned bits,
                         const char *what, const char *fix)
{
    struct report_buf *rb = rcl__ld_rb_get(true);
    if (!rb)
        return;
    rcl__ld_rb_add(rb, "lock checker: %s 0x%x %s; in thread \"%s\" (tid %ld), at:\n", whose,
                   bits, what, st->thread, st->tid);
    rcl__ld_rb_frames(rb, st->frames, st->nframes);
    rcl__ld_rb_add(rb, "  Usual fix: %s.", fix);
    rcl__ld_reports_emit(&rb, 1);
}

/* rcl_io_flusher_set(0) closing the flusher's NOIO scope with a scope
 * opened since still open: the program restored nothing, so the report
 * names the call it made and the order it broke. */
static __attribute__((noinline)) void flusher_off_report(unsigned saved, const void *ret)
{
    struct site st;
    rcl__ld_site_capture_from(&st, ret);
    scope_report(&st, "I/O flusher's scope", saved,
                 "ended by rcl_io_flusher_set(0) while a scope opened after "
                 "rcl_io_flusher_set(1) is still open: the code inside it runs on without "
                 "the NOIO it was entered under",
                 "turn the flusher off after the scopes opened since it was turned on have "
                 "closed, or open them before turning it on");
}

/* ret: the return address of rcl_io_flusher_set(0) when it is the one
 * restoring, else NULL. */
static void scope_restore(unsigned saved, unsigned before, const void *ret)
{
    struct ld_thread *t = rcl__ld_thread_get();
    if (!t)
        return;
    unsigned top = t->nscopes < MAX_SCOPES ? t->nscopes : MAX_SCOPES;
    const char *what = NULL;

    rcl__ld_update_watch(t->n > 0);
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
    if (ret) {
        flusher_off_report(saved, ret);
        return;
    }
    struct site st;
    rcl__ld_site_capture(&st, 2);
    scope_report(&st, "scope", saved, what,
                 "restore each scope with the token its own save returned, innermost first "
                 "(or use the RCL_*_SCOPE() guards, which cannot get this wrong)");
}

void rcl__lockdep_scope_restore(unsigned saved, unsigned before)
{
    scope_restore(saved, before, NULL);
}

void rcl__lockdep_flusher_off(unsigned saved, unsigned before, const void *ret)
{
    scope_restore(saved, before, ret);
}

void rcl__lockdep_context_restore_captured(unsigned captured, unsigned now)
{
    if (!rcl__ld_thread_get())
        return;
    struct site st;
    rcl__ld_site_capture(&st, 2);
    char what[256];
    snprintf(what, sizeof(what),
             "restored out of order: the thread's scope is 0x%x, so a scope opened since the "
             "capture is still open or one open then has closed; the scope stays as they "
             "left it", now);
    scope_report(&st, "captured context of scope", captured, what,
                 "restore the context rcl_context_adopt() saved; a captured one takes back no "
                 "scope, and restored where the scope is not as captured it is out of order");
}
