/* SPDX-License-Identifier: MIT */
/*
 * shrinker.c - the shrinker registry and the scan arithmetic.
 *
 * Registry invariant: a shrinker stays linked while any reclaim pass holds
 * it (passes_holding() > 0). Unregister marks it dead, waits for that to
 * drop to zero and only then unlinks it (its memory freed later, below); a
 * pass that held it reads its `next` under the lock after dropping its
 * hold, so the walk never follows an unlinked node. Callbacks - a domain's
 * may_reclaim among them - run without the registry lock, so they may
 * allocate, register or unregister other shrinkers (but for an unregister
 * that would wait for its own thread's scan: waits_for_self_locked()).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct rcl_shrinker {
    struct rcl_shrinker  *next, *prev;     /* registry ring, under shrinker_lock */
    unsigned              active[4];       /* passes holding it, by their RCL__IO |
                                              RCL__FS bits, under shrinker_lock */
    bool                  dead;            /* being unregistered */
    bool                  orphan;          /* by a thread a fork left behind */
    char                  name[RCL_NAME_MAX];
    struct rcl_shrinker_ops ops;
    void                 *priv;
    unsigned              seeks;
    unsigned long         batch;
    rcl_gfp_t             needs;
    struct rcl_domain    *domain;
    _Atomic unsigned long deferred;        /* the kernel's nr_deferred */
    _Atomic unsigned      told;            /* TOLD_*: misuse reported once */
    _Atomic unsigned long last_count;      /* freeable at the last count() */
    _Atomic unsigned long calls, scanned, freed, skipped;
};
#define TOLD_COUNT 1u     /* count() above LONG_MAX */
#define TOLD_SCAN  2u     /* scan() above LONG_MAX */

static pthread_mutex_t shrinker_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  shrinker_idle = PTHREAD_COND_INITIALIZER;
static struct rcl_shrinker registry = { .next = &registry, .prev = &registry };
static unsigned nr_registered;
_Atomic unsigned long rcl__unregister_waits;

/*
 * An unregistered shrinker's memory is freed only once SHRINKER_QUARANTINE
 * more have been unregistered after it: freed at once, the next
 * registration's calloc() often got it back, and a second unregister of
 * the old handle - a misuse the registry is there to report - took the
 * new shrinker that lived there, silently. A FIFO through `next`, under
 * shrinker_lock; never walked, only its ends are used.
 */
#define SHRINKER_QUARANTINE 64
static struct rcl_shrinker *quarantine_head, **quarantine_tail = &quarantine_head;
static unsigned nr_quarantined;

/* The context bits of a pass: what its shrinkers may wait for, an index
 * into rcl_shrinker.active. */
_Static_assert((RCL__IO | RCL__FS) == 3, "pass_context() indexes active[4]");
static inline unsigned pass_context(rcl_gfp_t gfp)
{
    return gfp & (RCL__IO | RCL__FS);
}

static unsigned passes_holding(const struct rcl_shrinker *s)
{
    return s->active[0] + s->active[1] + s->active[2] + s->active[3];
}

/* The passes this thread is making, innermost first (struct
 * rcl_shrink_pass, internal.h): a callback's allocation reclaims again
 * where its scope allows, so passes nest. */
static __thread struct rcl_shrink_pass *passes;

static bool pass_holds(const struct rcl_shrink_pass *p, const struct rcl_shrinker *s)
{
    for (; p; p = p->outer)
        if (p->s == s)
            return true;
    return false;
}

/* Does one of this thread's passes hold s? Waiting for s would then be
 * waiting for itself. */
static bool held_here(const struct rcl_shrinker *s)
{
    return pass_holds(passes, s);
}

/*
 * An unregister made from a callback that waits for other threads' scans
 * of its shrinker, on the waiting thread's stack: what it waits for and
 * the passes it holds meanwhile. Linked under shrinker_lock; an
 * unregister made outside every pass holds nothing, and no one can wait
 * for it.
 */
struct unregister_wait {
    const struct rcl_shrinker    *s;
    const struct rcl_shrink_pass *held;
    struct unregister_wait       *next;
    bool                          reached;   /* by waits_for_self_locked() */
};
static struct unregister_wait *waiting;

/* Do the passes p hold s, or the shrinker of a wait reached so far? */
static bool holds_awaited_locked(const struct rcl_shrink_pass *p, const struct rcl_shrinker *s)
{
    rcl__assert_held(&shrinker_lock);
    if (pass_holds(p, s))
        return true;
    for (const struct unregister_wait *w = waiting; w; w = w->next)
        if (w->reached && pass_holds(p, w->s))
            return true;
    return false;
}

/*
 * Would waiting for s's scans wait for this thread? They would where a
 * thread scanning s is itself waiting, in an unregister from its
 * callback, for a shrinker one of this thread's passes holds - or for one
 * that a third thread, waiting the same way, holds, and so on back to
 * this one: each unregister would wait for the next for ever, as one from
 * the shrinker's own callback would wait for itself. Only waiting
 * unregisters can close such a circle: any other scan ends.
 */
static bool waits_for_self_locked(const struct rcl_shrinker *s)
{
    struct unregister_wait *w;
    bool grew = true;

    rcl__assert_held(&shrinker_lock);
    for (w = waiting; w; w = w->next)
        w->reached = false;
    while (grew) {
        grew = false;
        for (w = waiting; w; w = w->next)
            if (!w->reached && holds_awaited_locked(w->held, s))
                w->reached = grew = true;
    }
    return holds_awaited_locked(passes, s);
}

bool rcl__shrinking_here(void)
{
    return passes != NULL;
}

/* A bounded reclaim (reclaim.c) stops between scan calls once this clock
 * time has passed; 0: no bound. A call already running is never cut, and
 * the first scan call always runs: a thread that lost its CPU before it
 * reached one would otherwise give up having tried nothing. */
static __thread unsigned long long deadline_ns;
static __thread unsigned long bound_scans;
/* Where a bounded reclaim wants its time and bytes per shrinker; NULL:
 * not traced. */
static __thread struct rcl__shrink_trace *trace;

struct rcl__shrink_bound_state rcl__shrink_bound(unsigned long long deadline,
                                                 struct rcl__shrink_trace *tr)
{
    struct rcl__shrink_bound_state old = { deadline_ns, bound_scans, trace };

    deadline_ns = deadline;
    bound_scans = 0;
    trace = tr;
    if (tr) {
        tr->n = tr->ntally = 0;
        tr->others = false;
        tr->others_ns = tr->others_objects = 0;
        tr->others_bytes = 0;
    }
    return old;
}

void rcl__shrink_bound_put(const struct rcl__shrink_bound_state *old)
{
    deadline_ns = old->deadline;
    bound_scans = old->scans;
    trace = old->trace;
}

bool rcl__shrink_expired(void)
{
    return deadline_ns && bound_scans && rcl__now_ns() >= deadline_ns;
}

static void trace_others(unsigned long long ns, long bytes, unsigned long objects)
{
    trace->others_ns += ns;
    trace->others_bytes += bytes;
    trace->others_objects += objects;
    trace->others = true;
}

/* The named entry that took least, which a costlier shrinker takes over
 * once e[] is full: the report is there to say where the time went, and
 * the shrinker that took it may well be the last of many to run. */
static unsigned trace_cheapest(void)
{
    unsigned min = 0;

    for (unsigned i = 1; i < trace->n; i++)
        if (trace->e[i].ns < trace->e[min].ns)
            min = i;
    return min;
}

/* s's sums outside e[]; NULL once the tally is full. */
static struct rcl__shrink_sum *trace_tally(const struct rcl_shrinker *s)
{
    struct rcl__shrink_trace *tr = trace;
    unsigned i;

    for (i = 0; i < tr->ntally && tr->tally[i].who != s; i++)
        ;
    if (i == RCL__TRACE_TALLY)
        return NULL;
    if (i == tr->ntally) {
        tr->ntally++;
        tr->tally[i] = (struct rcl__shrink_sum){ .who = s };
    }
    return &tr->tally[i];
}

/* s, whose sums are *t (in the others'), now costlier than the named
 * entry i: the two change places, and the others' sums with them. */
static void trace_promote(const struct rcl_shrinker *s, struct rcl__shrink_sum *t, unsigned i)
{
    struct rcl__shrink_trace *tr = trace;
    struct rcl__shrink_sum out = { tr->e[i].who, tr->e[i].ns, tr->e[i].bytes, tr->e[i].objects };

    rcl__assert(tr->others_ns >= t->ns && tr->others_objects >= t->objects);
    tr->others_ns = tr->others_ns - t->ns + out.ns;
    tr->others_bytes = tr->others_bytes - t->bytes + out.bytes;
    tr->others_objects = tr->others_objects - t->objects + out.objects;
    tr->e[i].who = s;
    snprintf(tr->e[i].name, sizeof(tr->e[i].name), "%s", s->name);
    tr->e[i].ns = t->ns;
    tr->e[i].bytes = t->bytes;
    tr->e[i].objects = t->objects;
    *t = out;
}

static void trace_add(const struct rcl_shrinker *s, unsigned long long ns, long bytes,
                      unsigned long objects)
{
    struct rcl__shrink_trace *tr = trace;
    unsigned i;

    for (i = 0; i < tr->n && tr->e[i].who != s; i++)
        ;
    if (i == tr->n && i < RCL__TRACE_MAX) {
        memset(&tr->e[i], 0, sizeof(tr->e[i]));
        tr->e[i].who = s;
        snprintf(tr->e[i].name, sizeof(tr->e[i].name), "%s", s->name);
        tr->n++;
    }
    if (i < tr->n) {
        tr->e[i].ns += ns;
        tr->e[i].bytes += bytes;
        tr->e[i].objects += objects;
        return;
    }
    /* Past the tally this call stands for s alone; the entry it would
     * take over keeps its sums in the others'. */
    struct rcl__shrink_sum call = { .who = s }, *t = trace_tally(s);
    if (!t)
        t = &call;
    trace_others(ns, bytes, objects);
    t->ns += ns;
    t->bytes += bytes;
    t->objects += objects;
    i = trace_cheapest();
    if (t->ns > tr->e[i].ns)
        trace_promote(s, t, i);
}

/* Are these opts refused (reported)? Decided before anything is
 * allocated: a report function may end the thread, and what the call
 * held would go with it. Where they are not, the domain is held for the
 * shrinker. */
static bool opts_refused(const char *name, const struct rcl_shrinker_opts *opts)
{
    if (!opts)
        return false;
    /* A need beyond the context's reclaim rights (FS, IO) is one no scan
     * would ever meet: the shrinker would be registered and never called. */
    if (opts->needs & ~(rcl_gfp_t)(RCL__FS | RCL__IO)) {
        rcl__report("rcl_shrinker_register(\"%.*s\"): needs 0x%x names flags other than "
                    "RCL__FS and RCL__IO; not registered", RCL_NAME_MAX - 1, name,
                    opts->needs);
        return true;
    }
    if (opts->domain && !rcl__domain_shrinker_hold(opts->domain)) {
        rcl__report("rcl_shrinker_register(\"%.*s\"): %p is not a live domain; "
                    "not registered", RCL_NAME_MAX - 1, name, (void *)opts->domain);
        return true;
    }
    return false;
}

struct rcl_shrinker *rcl_shrinker_register(const char *name, const struct rcl_shrinker_ops *ops,
                                           void *priv, const struct rcl_shrinker_opts *opts)
{
    if (!name || !ops || !ops->count || !ops->scan) {
        rcl__report("rcl_shrinker_register(%s): NULL %s; not registered", name ? name : "NULL",
                    !name ? "name" : !ops ? "ops" : !ops->count ? "count callback"
                                                             : "scan callback");
        errno = EINVAL;
        return NULL;
    }
    /* A handler's start refused: no registry to join, and none of the
     * locks or calloc() that joining one takes are a handler's to take. */
    if (!rcl__ensure_init_here()) {
        errno = ENOMEM;
        return NULL;
    }
    if (opts_refused(name, opts)) {
        errno = EINVAL;
        return NULL;
    }
    /* Registry memory is the library's own, not the caller's budget. */
    struct rcl_shrinker *s = calloc(1, sizeof(*s));
    if (!s) {
        if (opts && opts->domain)
            rcl__domain_shrinker_put(opts->domain);
        errno = ENOMEM;
        return NULL;
    }
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->ops = *ops;
    s->priv = priv;
    s->seeks = RCL_DEFAULT_SEEKS;
    s->batch = RCL_SHRINK_BATCH;
    if (opts) {
        /* seeks 0 is the caller saying "default"; the kernel's seeks == 0
         * case (freeable / 2) is not reachable through opts. */
        if (opts->seeks)
            s->seeks = opts->seeks;
        if (opts->batch)
            s->batch = opts->batch;
        s->needs = opts->needs;
        s->domain = opts->domain;
    }

    pthread_mutex_lock(&shrinker_lock);
    s->prev = registry.prev;
    s->next = &registry;
    registry.prev->next = s;
    registry.prev = s;
    nr_registered++;
    pthread_mutex_unlock(&shrinker_lock);
    return s;
}

static bool registered_locked(const struct rcl_shrinker *s)
{
    rcl__assert_held(&shrinker_lock);
    for (struct rcl_shrinker *it = registry.next; it != &registry; it = it->next)
        if (it == s)
            return true;
    return false;
}

static void quarantine_locked(struct rcl_shrinker *s)
{
    rcl__assert_held(&shrinker_lock);
    s->next = s->prev = NULL;
    *quarantine_tail = s;
    quarantine_tail = &s->next;
    if (++nr_quarantined <= SHRINKER_QUARANTINE)
        return;
    struct rcl_shrinker *oldest = quarantine_head;
    quarantine_head = oldest->next;
    nr_quarantined--;
    free(oldest);
}

static void unlink_free_locked(struct rcl_shrinker *s)
{
    rcl__assert_held(&shrinker_lock);
    rcl__assert(!passes_holding(s));
    s->prev->next = s->next;
    s->next->prev = s->prev;
    nr_registered--;
    if (s->domain)
        rcl__domain_shrinker_put(s->domain);
    quarantine_locked(s);
}

void rcl_shrinker_unregister(struct rcl_shrinker *s)
{
    (void)rcl__shrinker_unregister(s, "rcl_shrinker_unregister");
}

int rcl__shrinker_unregister(struct rcl_shrinker *s, const char *caller)
{
    char name[RCL_NAME_MAX];

    if (!s) {
        rcl__report("%s(NULL): nothing to unregister", caller);
        return -EINVAL;
    }
    int err = rcl__shrinker_unregister_quiet(s, name);
    rcl__shrinker_unregister_report(caller, err, s, name);
    return err;
}

/* s is only named by its address: on -EINVAL it may be no shrinker. */
void rcl__shrinker_unregister_report(const char *caller, int err, const void *s,
                                     const char *name)
{
    if (err == -EDEADLK && held_here(s))
        rcl__report("%s(\"%s\") from its own callback: refused (it would wait for its "
                    "own shrinker's scan)", caller, name);
    else if (err == -EDEADLK)
        rcl__report("%s(\"%s\") from a shrinker's callback: refused (another thread "
                    "scanning it waits, in an unregister from its callback, for a "
                    "scan of this thread's: each would wait for the other)", caller, name);
    else if (err == -EINVAL)
        rcl__report("%s(%p): not a registered shrinker (unregistered twice?); "
                    "nothing done", caller, s);
}

static void wait_del_locked(struct unregister_wait *w)
{
    struct unregister_wait **pw = &waiting;

    rcl__assert_held(&shrinker_lock);
    while (*pw != w)
        pw = &(*pw)->next;
    *pw = w->next;
}

int rcl__shrinker_unregister_quiet(struct rcl_shrinker *s, char name[RCL_NAME_MAX])
{
    /* Waiting for our own scan to finish would wait forever. The scan
     * keeps s alive while its name is copied. */
    if (held_here(s)) {
        memcpy(name, s->name, RCL_NAME_MAX);
        return -EDEADLK;
    }
    /* Not cancellable: a half-done unregister would leave a dead shrinker
     * linked forever. The wait is for one scan in flight. */
    int cancel = rcl__nocancel_begin();
    pthread_mutex_lock(&shrinker_lock);
    if (!registered_locked(s) || s->dead) {
        pthread_mutex_unlock(&shrinker_lock);
        rcl__nocancel_end(cancel);
        return -EINVAL;
    }
    if (passes && waits_for_self_locked(s)) {
        memcpy(name, s->name, RCL_NAME_MAX);
        pthread_mutex_unlock(&shrinker_lock);
        rcl__nocancel_end(cancel);
        return -EDEADLK;
    }
    s->dead = true;
    struct unregister_wait w = { .s = s, .held = passes, .next = waiting };
    if (passes)
        waiting = &w;
    if (passes_holding(s))
        wr(rcl__unregister_waits, rd(rcl__unregister_waits) + 1);
    while (passes_holding(s))
        pthread_cond_wait(&shrinker_idle, &shrinker_lock);
    if (passes)
        wait_del_locked(&w);
    unlink_free_locked(s);
    pthread_mutex_unlock(&shrinker_lock);
    rcl__nocancel_end(cancel);
    return 0;
}

void rcl__shrinkers_drop(void)
{
    pthread_mutex_lock(&shrinker_lock);
    for (struct rcl_shrinker *s = registry.next; s != &registry; s = s->next)
        s->dead = true;
    while (registry.next != &registry) {
        struct rcl_shrinker *s = registry.next;
        while (passes_holding(s))
            pthread_cond_wait(&shrinker_idle, &shrinker_lock);
        unlink_free_locked(s);
    }
    pthread_mutex_unlock(&shrinker_lock);
}

/*
 * The scan arithmetic saturates where the kernel's would wrap: each sum is
 * capped at 2 * freeable before use, which is below ULONG_MAX since a
 * count is at most LONG_MAX (count_sane()), so a saturated one gives what
 * the exact one would.
 */
static unsigned long sat_add(unsigned long a, unsigned long b)
{
    return a + b < a ? ULONG_MAX : a + b;
}

/* delta: the share of freeable this priority asks for, as the kernel's
 * do_shrink_slab(): (freeable >> priority) * 4 / seeks. The product
 * passes 2^64 from a share of 2^62: divided first, quotient and remainder
 * apart, it is exact wherever it fits. */
static unsigned long scan_delta(const struct rcl_shrinker *s, unsigned long freeable, int priority)
{
    unsigned long share = freeable >> priority;
    unsigned long q = share / s->seeks, r = share % s->seeks;

    if (q > ULONG_MAX / 4)
        return ULONG_MAX;
    return sat_add(q * 4, (unsigned long)((unsigned long long)r * 4 / s->seeks));
}

static unsigned long cap_twice(unsigned long n, unsigned long freeable)
{
    return n < 2 * freeable ? n : 2 * freeable;
}

/* Deferred work carried to the next pass; concurrent passes add theirs
 * too, and the sum saturates. */
static void deferred_add(struct rcl_shrinker *s, unsigned long n)
{
    unsigned long d = rd(s->deferred);

    while (n && !atomic_compare_exchange_weak(&s->deferred, &d, sat_add(d, n)))
        ;
}

/* A count above LONG_MAX is a negative number come back unsigned (-1,
 * which is RCL_SHRINK_STOP, or an -errno): no cache holds that many. The
 * kernel took freeable as a long and reported "negative objects to
 * delete"; taken as a count, it had one reclaim call scan() some 2^46
 * times. Told once per shrinker: every priority of every pass meets it. */
static bool count_sane(struct rcl_shrinker *s, unsigned long freeable)
{
    if (freeable <= LONG_MAX)
        return true;
    if (!(atomic_fetch_or(&s->told, TOLD_COUNT) & TOLD_COUNT))
        rcl__report("shrinker \"%s\": count() returned %lu (%ld as a signed number): no "
                    "cache holds that many; the shrinker is not scanned while it says so "
                    "(RCL_SHRINK_EMPTY says the cache is empty)", s->name, freeable,
                    (long)freeable);
    return false;
}

/* The same for what scan() freed: an -errno (RCL_SHRINK_STOP is the one
 * that is meant) wrapped the shrinker's statistics. It ends the turn, as
 * RCL_SHRINK_STOP does: the scan could not do its work. */
static bool scan_sane(struct rcl_shrinker *s, unsigned long ret)
{
    if (ret <= LONG_MAX)
        return true;
    if (!(atomic_fetch_or(&s->told, TOLD_SCAN) & TOLD_SCAN))
        rcl__report("shrinker \"%s\": scan() returned %lu (%ld as a signed number): no "
                    "scan frees that many; taken as RCL_SHRINK_STOP", s->name, ret, (long)ret);
    return false;
}

/* The shrinker cannot run in this context: its work waits for one that
 * can do it, capped as the kernel caps nr_deferred. */
static void defer_work(struct rcl_shrinker *s, int priority)
{
    unsigned long freeable = rd(s->last_count);
    unsigned long delta = scan_delta(s, freeable, priority);
    unsigned long d = rd(s->deferred), n;

    atomic_fetch_add_explicit(&s->skipped, 1, memory_order_relaxed);
    if (!delta)
        return;
    do {
        n = cap_twice(sat_add(d, delta), freeable);
    } while (n > d && !atomic_compare_exchange_weak(&s->deferred, &d, n));
}

static unsigned long do_shrink(struct rcl_shrinker *s, struct rcl_shrink_control *sc, int priority)
{
    /* The program's code: its frees and allocations are ordinary calls,
     * not a signal handler's, though this thread is inside the library. */
    unsigned busy = rcl__busy_out();
    unsigned long freeable = s->ops.count(s->priv, sc);
    rcl__busy_back(busy);

    if (freeable == 0 || freeable == RCL_SHRINK_EMPTY || !count_sane(s, freeable)) {
        wr(s->last_count, 0);
        return 0;
    }
    wr(s->last_count, freeable);

    unsigned long nr = atomic_exchange(&s->deferred, 0);
    unsigned long delta = scan_delta(s, freeable, priority);
    unsigned long total = cap_twice(sat_add(nr >> priority, delta), freeable);
    unsigned long scanned = 0, freed = 0;

    while (total >= s->batch || total >= freeable) {
        unsigned long n = total < s->batch ? total : s->batch;
        sc->nr_to_scan = n;
        sc->nr_scanned = n;
        busy = rcl__busy_out();
        unsigned long ret = s->ops.scan(s->priv, sc);
        rcl__busy_back(busy);
        atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
        bound_scans++;
        if (ret == RCL_SHRINK_STOP || !scan_sane(s, ret))
            break;
        freed = sat_add(freed, ret);
        scanned = sat_add(scanned, sc->nr_scanned);
        /* A scan that looked at nothing would loop here forever. */
        if (!sc->nr_scanned)
            break;
        total = sc->nr_scanned < total ? total - sc->nr_scanned : 0;
        /* The rest is deferred below, for the background reclaimer. */
        if (rcl__shrink_expired())
            break;
    }

    /* Deferred work grows by what this pass asked for and did not do, and
     * shrinks by old deferred work done now; never above 2 * freeable.
     * Unsigned: the kernel's signed difference read a sum past LONG_MAX
     * as negative, and deferred nothing. */
    unsigned long asked = sat_add(nr, delta);
    deferred_add(s, cap_twice(asked > scanned ? asked - scanned : 0, freeable));
    atomic_fetch_add_explicit(&s->scanned, scanned, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->freed, freed, memory_order_relaxed);
    return freed;
}

static void shrink_one(struct rcl_shrink_pass *pass, rcl_gfp_t gfp, int priority)
{
    struct rcl_shrinker *s = pass->s;

    pass->scope = rcl__scope;
    pass->adopts = rcl__adopts_mark();
    /* Skipped by the domain rules or lacking `needs`: either way the work
     * waits for a context that may do it. */
    if ((s->domain && rcl__domain_filter(s->domain, &gfp)) || (gfp & s->needs) != s->needs) {
        defer_work(s, priority);
        return;
    }

    struct rcl_shrink_control sc = { .gfp = gfp, .priority = priority, .domain = s->domain };

    unsigned long long t0 = trace ? rcl__now_ns() : 0;
    long bytes0 = rcl__self.reclaimed;

    if (rcl__checking()) {
        rcl__lockdep_shrink_begin(s->name, s->domain, gfp, rcl__is_background());
        pass->gfp = gfp;
        pass->checked = true;
    }
    unsigned long objects = do_shrink(s, &sc, priority);
    if (rcl__checking())
        rcl__lockdep_shrink_end(s->name, s->domain, gfp);
    pass->checked = false;
    if (trace)
        trace_add(s, rcl__now_ns() - t0, rcl__self.reclaimed - bytes0, objects);

    /* Reclaim goes on in a known context even if a callback forgot to
     * restore a scope it saved, a context it adopted, or to exit a domain
     * it entered. */
    unsigned open = rcl__adopts_forget(pass->adopts);
    bool scoped = rcl__scope != pass->scope;
    if (open)
        rcl__report("shrinker \"%s\" returned with %u context adopt(s) never restored; "
                    "restored", s->name, open);
    else if (scoped)
        rcl__report("shrinker \"%s\" returned with the scope changed (%#x, was %#x): "
                    "a save without its restore; restored", s->name, rcl__scope, pass->scope);
    if (scoped)
        rcl__scope_put(pass->scope);
    unsigned left = rcl__domain_floor_leftover(pass->floor);
    if (left)
        rcl__report("shrinker \"%s\" returned inside %u domain(s) it entered and never "
                    "exited; exited now", s->name, left);
}

/* The last pass out of a dead shrinker wakes its unregister, or finishes
 * it for the thread that made it and is gone (a forked child). */
static void pass_drop_locked(struct rcl_shrink_pass *pass)
{
    struct rcl_shrinker *s = pass->s;

    rcl__assert_held(&shrinker_lock);
    rcl__assert(s->active[pass->ctx]);
    pass->s = NULL;
    s->active[pass->ctx]--;
    if (passes_holding(s) || !s->dead)
        return;
    if (s->orphan)
        unlink_free_locked(s);
    else
        pthread_cond_broadcast(&shrinker_idle);
}

/* A thread that ends inside a callback - pthread_exit(), which the
 * cancel state does not defer - leaves the pass here, as its return
 * would have left it: the shrinker let go (or unregister waits for it
 * forever), the checker's pseudo-lock released (or the program's cleanup
 * handlers' locks are recorded as taken inside reclaim), the scope the
 * callback changed put back, the caller's domains, which the pass's
 * callbacks may not exit, the thread's own to exit again (domain.c), and
 * its callout mark as the pass found it: a may_reclaim the pass asked has
 * no handler of its own to put back its mark, and the pass may run
 * inside an isolate callback, whose mark stays (thread.h).
 * Busy meanwhile, as between two callbacks, and out again after: what
 * runs next is the program's. The sanitizer is told, as for a cancel:
 * the frames went without their epilogues. */
static void pass_unwound(struct rcl_shrink_pass *pass)
{
    struct rcl_shrinker *s = pass->s;

    rcl__asan_unwinding();
    unsigned b = rcl__busy_hold(&rcl__self);

    rcl__domain_floor_put(pass->floor);
    rcl__self.callout = pass->callout;
    if (s) {
        rcl__adopts_forget(pass->adopts);
        if (pass->checked && rcl__checking())
            rcl__lockdep_shrink_end(s->name, s->domain, pass->gfp);
        if (rcl__scope != pass->scope)
            rcl__scope_put(pass->scope);
        pthread_mutex_lock(&shrinker_lock);
        pass_drop_locked(pass);
        pthread_mutex_unlock(&shrinker_lock);
    }
    passes = pass->outer;
    rcl__busy_drop(&rcl__self, b);
    rcl__nocancel_end(pass->cancel);
}

const struct rcl_shrink_pass *rcl__shrink_slab_mark(void)
{
    return passes;
}

void rcl__shrink_slab_unwound(const struct rcl_shrink_pass *mark)
{
    while (passes && passes != mark)
        pass_unwound(passes);
}

/* Cancellation waits for the pass: a thread cancelled inside a callback
 * would leave the shrinker pinned (active) and unregister waiting forever.
 * An exit does not wait: rcl__shrink_slab_unwound() undoes the pass
 * instead. The domains the thread is inside are the caller's, which the
 * callbacks may not exit (domain.c): a count() or scan() handed the
 * caller's token would leave it outside a domain it entered, its own exit
 * then refused. */
void rcl__shrink_slab(rcl_gfp_t gfp, int priority, struct rcl_shrink_pass *pass)
{
    *pass = (struct rcl_shrink_pass){ .ctx = pass_context(gfp), .outer = passes,
                                      .callout = rcl__self.callout };
    pass->cancel = rcl__nocancel_begin();
    pass->floor = rcl__domain_floor_raise();
    passes = pass;
    pthread_mutex_lock(&shrinker_lock);
    for (struct rcl_shrinker *s = registry.next, *next; s != &registry; s = next) {
        next = s->next;
        if (s->dead)
            continue;
        if (rcl__shrink_expired())
            break;
        s->active[pass->ctx]++;
        pass->s = s;
        pthread_mutex_unlock(&shrinker_lock);
        shrink_one(pass, gfp, priority);
        pthread_mutex_lock(&shrinker_lock);
        /* Read while s is held, so linked: the drop may unlink it. */
        next = s->next;
        pass_drop_locked(pass);
    }
    pthread_mutex_unlock(&shrinker_lock);
    rcl__domain_floor_put(pass->floor);
    /* Every callback the pass ran put it back as it found it. */
    rcl__assert(rcl__self.callout == pass->callout);
    passes = pass->outer;
    rcl__nocancel_end(pass->cancel);
}

/* Is a pass in a context no wider than `mine` inside s? */
static bool held_within_locked(const struct rcl_shrinker *s, unsigned mine)
{
    rcl__assert_held(&shrinker_lock);
    for (unsigned ctx = 0; ctx < 4; ctx++)
        if (!(ctx & ~mine) && s->active[ctx])
            return true;
    return false;
}

/* Does a pass this thread could have made hold s? Where only the
 * may_reclaim of s's domain can still say no, true with *ask set to that
 * domain: the program's code is not called under the registry lock. */
static bool busy_for_locked(const struct rcl_shrinker *s, rcl_gfp_t gfp,
                            struct rcl_domain **ask)
{
    bool asks = false;

    rcl__assert_held(&shrinker_lock);
    *ask = NULL;
    if (s->dead || held_here(s) || !held_within_locked(s, pass_context(gfp)))
        return false;
    if (s->domain && rcl__domain_narrow(s->domain, &gfp, &asks))
        return false;
    if ((gfp & s->needs) != s->needs)
        return false;
    if (asks)
        *ask = s->domain;
    return true;
}

/* Adds d to the n domains in ask unless it is there; returns the count.
 * A domain asked about is one this thread is inside: at most
 * RCL_MAX_DOMAINS of them. */
static unsigned ask_once(struct rcl_domain **ask, unsigned n, struct rcl_domain *d)
{
    for (unsigned i = 0; i < n; i++)
        if (ask[i] == d)
            return n;
    rcl__assert(n < RCL_MAX_DOMAINS);
    ask[n] = d;
    return n + 1;
}

/*
 * A reclaim that freed nothing while another thread is inside a shrinker
 * has not shown that nothing can be freed: the other pass may hold the
 * objects it isolated, about to free them, and be off its CPU (the
 * kernel's reclaimers wait for each other's isolated pages, too_many_
 * isolated(), rather than give up). Only passes the caller could have
 * made count: shrinkers its context may run, in a context no wider than
 * its own. A NOFS caller waiting for a pass that may wait on file-system
 * work - the background reclaimer's - would wait for the very lock it
 * may hold: the deadlock the scope is there to prevent. A domain's
 * may_reclaim is asked as a pass asks it (shrink_one()), without the
 * registry lock: the shrinker that raised the question may be gone by
 * then, but its domain stays, since this thread is inside it, and the
 * answer was never fresher than the walk.
 */
bool rcl__shrinkers_busy(rcl_gfp_t gfp)
{
    struct rcl_domain *ask[RCL_MAX_DOMAINS];
    unsigned n = 0;
    bool busy = false;

    pthread_mutex_lock(&shrinker_lock);
    for (struct rcl_shrinker *s = registry.next; s != &registry && !busy; s = s->next) {
        struct rcl_domain *d;
        if (!busy_for_locked(s, gfp, &d))
            continue;
        if (d)
            n = ask_once(ask, n, d);
        else
            busy = true;
    }
    pthread_mutex_unlock(&shrinker_lock);
    for (unsigned i = 0; i < n && !busy; i++)
        busy = rcl__domain_allows(ask[i]);
    return busy;
}

unsigned rcl__shrinkers_stats(struct rcl_shrinker_stats *out, unsigned max)
{
    unsigned i = 0;

    pthread_mutex_lock(&shrinker_lock);
    for (struct rcl_shrinker *s = registry.next; s != &registry && i < max; s = s->next, i++) {
        memcpy(out[i].name, s->name, sizeof(out[i].name));
        out[i].calls = rd(s->calls);
        out[i].scanned = rd(s->scanned);
        out[i].freed = rd(s->freed);
        out[i].skipped = rd(s->skipped);
        out[i].deferred = rd(s->deferred);
    }
    unsigned n = nr_registered;
    pthread_mutex_unlock(&shrinker_lock);
    return n;
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

void rcl__shrinker_atfork_prepare(void) { pthread_mutex_lock(&shrinker_lock); }
void rcl__shrinker_atfork_parent(void) { pthread_mutex_unlock(&shrinker_lock); }

/*
 * For an LRU's child handler, after this file's: s belongs to an object
 * whose destroy, on a thread not in the child, may have been unregistering
 * it. Returns false where the unregister is over (s is no longer
 * registered: the address is only compared). One that waited for a pass
 * of the forking thread is ended instead, s live again: the object's
 * destroy in the child unregisters it once more, and is refused while
 * that pass holds it, as from any shrinker's own callback.
 */
bool rcl__shrinker_atfork_keep(struct rcl_shrinker *s)
{
    pthread_mutex_lock(&shrinker_lock);
    bool kept = registered_locked(s);
    if (kept) {
        s->dead = false;
        s->orphan = false;
    }
    pthread_mutex_unlock(&shrinker_lock);
    return kept;
}

/* The passes other threads held are gone with them: only the forking
 * thread's own (it may fork from a callback, at any depth of nested
 * passes) still count, or unregister would wait forever, and the end of
 * each of them would take a hold that is no longer there. A shrinker
 * another thread was unregistering is finished here, since that thread
 * will not: at once, or by the last of the forking thread's passes that
 * holds it. */
void rcl__shrinker_atfork_child(void)
{
    pthread_cond_init(&shrinker_idle, NULL);
    waiting = NULL;
    for (struct rcl_shrinker *s = registry.next; s != &registry; s = s->next)
        memset(s->active, 0, sizeof(s->active));
    for (struct rcl_shrink_pass *p = passes; p; p = p->outer)
        if (p->s)
            p->s->active[p->ctx]++;
    struct rcl_shrinker *s = registry.next;
    while (s != &registry) {
        struct rcl_shrinker *next = s->next;
        if (s->dead && !passes_holding(s))
            unlink_free_locked(s);
        else if (s->dead)
            s->orphan = true;
        s = next;
    }
    pthread_mutex_unlock(&shrinker_lock);
}
