/* SPDX-License-Identifier: MIT */
/*
 * domain.c - fine-grained reclaim domains (Dave Chinner's
 * proposal that Linux never merged) and the per-thread journal cookie.
 *
 * A NOFS scope forbids reclaim from calling into *any* file system, while
 * the lock the thread holds belongs to one. A domain names that one file
 * system and its depth on the storage stack, so reclaim keeps every cache
 * that cannot recurse into it:
 *
 *   thread inside D (depth d), shrinker of S (depth s):
 *     S == D    ask D's may_reclaim (NULL: never safe, skip the shrinker)
 *     s != d    NOFS: a loop device can stack one file system on another,
 *               and a FS shrinker of one may wait on I/O that needs the other
 *     otherwise unrestricted: a sibling at the same depth cannot recurse
 *
 * Inside several domains every rule applies, so the most restrictive answer
 * wins. The answer only narrows the flags the scope already masked.
 *
 * Per-thread state is a fixed stack of RCL_MAX_DOMAINS entries: entering a
 * domain never allocates, so it is safe on paths that are themselves short
 * of memory. Only the owner thread touches its stack. While a domain is
 * live its fields stay as created except two atomic counters (threads
 * inside it, shrinkers it owns), which is what lets destroy refuse a
 * domain that is still in use without taking any lock on enter. Destroy
 * itself changes the object: its magic (what domain_live() reads, so a
 * handle kept after destroy reads as dead), its generation and its name;
 * the slot is then recycled, never freed (below).
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DOMAIN_MAGIC 0x52434c44u   /* "RCLD": live */
#define DOMAIN_DYING 0x64796e67u   /* a destroy looking at its counters */
#define DOMAIN_DEAD  0x64656164u   /* set by destroy, for use after destroy */

struct rcl_domain {
    _Atomic unsigned            magic;
    _Atomic unsigned            gen;        /* bumped at every destroy */
    unsigned                    index;      /* slot number, for ids */
    unsigned                    depth;
    rcl_domain_may_reclaim_fn   may_reclaim;
    void                       *arg;
    _Atomic long                entered;    /* stack entries, all threads */
    _Atomic long                shrinkers;  /* registered shrinkers it owns */
    struct rcl_domain          *next_free;  /* free FIFO, under live_lock */
    char                       *name;
};

/*
 * Domains live in slots that are never freed, only recycled: a handle a
 * program (or a captured context) keeps after destroy still points at
 * domain memory, whose magic says "destroyed". A recycled slot gets a new
 * generation, and contexts name domains by id (generation and slot), so a
 * context that outlived its domain is caught even when the slot is in use
 * again. Freed slots wait in a FIFO and are reused only once more than
 * DOMAIN_QUARANTINE are waiting, so that a stale handle keeps reading as
 * destroyed for as long as practical. Slots come in chunks, allocated on
 * demand and published with a release store; readers need no lock.
 */
#define DOMAIN_CHUNK      64
#define DOMAIN_CHUNKS     1024
#define DOMAIN_QUARANTINE 64
#define DOMAIN_ID_SHIFT   (sizeof(uintptr_t) * 4)   /* id: gen << shift | index */
#define DOMAIN_INDEX_MASK (((uintptr_t)1 << DOMAIN_ID_SHIFT) - 1)

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcl_domain *_Atomic chunks[DOMAIN_CHUNKS];
static _Atomic unsigned nr_slots;                  /* slots handed out so far */
static struct rcl_domain *free_head, **free_tail = &free_head;   /* live_lock */
static unsigned nr_free;                           /* live_lock */

static uintptr_t domain_id(const struct rcl_domain *d)
{
    return ((uintptr_t)rd(((struct rcl_domain *)d)->gen) << DOMAIN_ID_SHIFT) | d->index;
}

/* The slot d points at, if it is one: a pointer that never was a domain
 * is caught without being read. */
static bool domain_slot(const struct rcl_domain *d)
{
    unsigned n = atomic_load_explicit(&nr_slots, memory_order_acquire);
    for (unsigned c = 0; c * DOMAIN_CHUNK < n; c++) {
        uintptr_t base = (uintptr_t)atomic_load_explicit(&chunks[c], memory_order_acquire);
        uintptr_t p = (uintptr_t)d;
        if (base && p >= base && p < base + DOMAIN_CHUNK * sizeof(*d))
            return (p - base) % sizeof(*d) == 0;
    }
    return false;
}

/* Live until a destroy has decided: the mark a destroy's check sets is
 * for the enters and registrations that race it (domain_hold()), and a
 * refused destroy leaves the domain as live as it found it, to any thread
 * that reads it meanwhile. */
static bool domain_live(const struct rcl_domain *d)
{
    if (!d || !domain_slot(d))
        return false;
    unsigned magic = rd(((struct rcl_domain *)d)->magic);
    return magic == DOMAIN_MAGIC || magic == DOMAIN_DYING;
}

/* The live domain an id names, or NULL (destroyed, recycled, never was). */
static struct rcl_domain *domain_by_id(uintptr_t id)
{
    uintptr_t index = id & DOMAIN_INDEX_MASK;
    if (index >= atomic_load_explicit(&nr_slots, memory_order_acquire))
        return NULL;
    struct rcl_domain *base = atomic_load_explicit(&chunks[index / DOMAIN_CHUNK],
                                                   memory_order_acquire);
    struct rcl_domain *d = base ? &base[index % DOMAIN_CHUNK] : NULL;
    return d && domain_live(d) && domain_id(d) == id ? d : NULL;
}

/* A slot for a new domain; live_lock held. */
static struct rcl_domain *slot_get(void)
{
    unsigned n = rd(nr_slots);
    if (free_head && (nr_free > DOMAIN_QUARANTINE || n == DOMAIN_CHUNK * DOMAIN_CHUNKS)) {
        struct rcl_domain *d = free_head;
        free_head = d->next_free;
        if (!free_head)
            free_tail = &free_head;
        nr_free--;
        return d;
    }
    if (n == DOMAIN_CHUNK * DOMAIN_CHUNKS)
        return NULL;
    struct rcl_domain *base = rd(chunks[n / DOMAIN_CHUNK]);
    if (!base) {
        /* Library metadata, never freed: not charged to the budget. */
        base = calloc(DOMAIN_CHUNK, sizeof(*base));
        if (!base)
            return NULL;
        atomic_store_explicit(&chunks[n / DOMAIN_CHUNK], base, memory_order_release);
    }
    struct rcl_domain *d = &base[n % DOMAIN_CHUNK];
    d->index = n;
    atomic_store_explicit(&nr_slots, n + 1, memory_order_release);
    return d;
}

static void slot_put(struct rcl_domain *d)
{
    d->next_free = NULL;
    *free_tail = d;
    free_tail = &d->next_free;
    nr_free++;
}

/*
 * Tokens are (seq << TOKEN_SHIFT) | (slot + 1): the slot says which stack
 * entry the token closes, the sequence number (unique per enter on this
 * thread, seeded differently per thread) tells a stale, forged or foreign
 * token from the right one. Never 0, which is what a refused enter returns.
 */
#define TOKEN_SHIFT 5
_Static_assert(RCL_MAX_DOMAINS < (1u << TOKEN_SHIFT), "slot must fit the token");

struct domain_thread {
    unsigned           n;            /* entries in use */
    unsigned           overflow;     /* adopted domains that could not be entered */
    unsigned           seq;          /* next token sequence number */
    unsigned           floor;        /* entries of a caller asking a may_reclaim */
    bool               seeded;
    bool               keyed;        /* its exit leaves its domains (below) */
    void              *journal;      /* rcl_journal_info() */
    struct rcl_domain *stack[RCL_MAX_DOMAINS];
    unsigned           token[RCL_MAX_DOMAINS];   /* 0: adopted, no token */
};
/*
 * overflow is only ever raised by an adopt and put back by the restore that
 * ends it (the value travels in the saved context), so a thread that once
 * adopted too many domains is not left over-restricted afterwards.
 *
 * While a may_reclaim or a shrinker's callback runs, or a work item, the
 * entries below floor are the caller's (the queuer's, adopted), not the
 * callback's: an exit of one of them is refused (exit_refused()), and so
 * is a context's restore that would pop one (rcl__domain_restore_reaches()).
 * Let through, they would leave the caller outside a domain it entered,
 * its own exit then refused, and the domain destroyable while a pass that
 * holds no count on it goes on asking it.
 */
static __thread struct domain_thread mine;     /* this thread's domains */

static _Atomic unsigned seq_seed;

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

struct rcl_domain *rcl_domain_create(const char *name, unsigned depth,
                                     rcl_domain_may_reclaim_fn may_reclaim, void *arg)
{
    if (!name) {
        rcl__report("rcl_domain_create(NULL, %u): NULL name; no domain made", depth);
        errno = EINVAL;
        return NULL;
    }
    /* Library metadata, not the program's data: it is not charged to the
     * budget, so creating a domain cannot itself need reclaim. */
    char *copy = strdup(name);
    if (!copy) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&live_lock);
    struct rcl_domain *d = slot_get();
    if (!d) {
        pthread_mutex_unlock(&live_lock);
        free(copy);
        errno = ENOMEM;
        return NULL;
    }
    d->name = copy;
    d->depth = depth;
    d->may_reclaim = may_reclaim;
    d->arg = arg;
    wr(d->entered, 0);
    wr(d->shrinkers, 0);
    if (!rd(d->gen))
        wr(d->gen, 1);
    atomic_store_explicit(&d->magic, DOMAIN_MAGIC, memory_order_release);
    pthread_mutex_unlock(&live_lock);
    return d;
}

/* A report may name a domain another thread destroys as it is made (the
 * program's error, reported in its turn): it names a copy taken under
 * live_lock, which a destroy frees the name only after it has taken. */
static void name_copy_locked(const struct rcl_domain *d, char *buf, size_t len)
{
    rcl__assert_held(&live_lock);
    snprintf(buf, len, "%s", d->name ? d->name : "(destroyed)");
}

void rcl_domain_destroy(struct rcl_domain *d)
{
    if (!d) {
        rcl__report("rcl_domain_destroy: NULL domain");
        return;
    }
    pthread_mutex_lock(&live_lock);
    if (!domain_live(d)) {
        pthread_mutex_unlock(&live_lock);
        rcl__report("rcl_domain_destroy: %p is not a live domain (destroyed twice?)",
                    (void *)d);
        return;
    }
    /* Marked first, counted after, where an enter or a shrinker's
     * registration counts first and reads the mark after (domain_hold()):
     * of a destroy and an enter racing, one sees the other and backs off,
     * so that no thread is left inside a domain that is gone. An enter
     * that meets the mark is refused even if the destroy then gives up:
     * destroying a domain in use is the program's error, reported. Its
     * name and depth read as a live domain's meanwhile (domain_live()). */
    rcl__assert(rd(d->magic) == DOMAIN_MAGIC);      /* only a destroy marks, under the lock */
    atomic_store(&d->magic, DOMAIN_DYING);
    long entered = atomic_load(&d->entered);
    long owned = atomic_load(&d->shrinkers);
    if (entered > 0 || owned > 0) {
        char name[128];

        name_copy_locked(d, name, sizeof(name));
        atomic_store(&d->magic, DOMAIN_MAGIC);
        pthread_mutex_unlock(&live_lock);
        rcl__report("rcl_domain_destroy: domain \"%s\" is still in use "
                    "(%ld thread entries, %ld shrinkers); not destroyed",
                    name, entered, owned);
        return;
    }
    wr(d->magic, DOMAIN_DEAD);
    /* Never 0, which would read as "fresh slot". */
    unsigned gen = rd(d->gen) + 1;
    wr(d->gen, gen & (unsigned)(~(uintptr_t)0 >> DOMAIN_ID_SHIFT) ? gen : 1);
    char *name = d->name;
    d->name = NULL;
    pthread_mutex_unlock(&live_lock);
    rcl__lockdep_domain_forget(d);
    free(name);
    /* Forgotten by the checker first: a recycled slot must not inherit
     * the old domain's nodes. */
    pthread_mutex_lock(&live_lock);
    slot_put(d);
    pthread_mutex_unlock(&live_lock);
}

const char *rcl_domain_name(const struct rcl_domain *d)
{
    if (!domain_live(d)) {
        errno = EINVAL;
        return NULL;
    }
    return d->name;
}

unsigned rcl_domain_depth(const struct rcl_domain *d)
{
    return domain_live(d) ? d->depth : 0;
}

/* ------------------------------------------------------------------------ */
/* Enter and exit                                                            */
/* ------------------------------------------------------------------------ */

/* One count more on a domain that is live, as a destroy must see it
 * (above); false, the count given back, when a destroy is under way or
 * done. */
static bool domain_hold(struct rcl_domain *d, _Atomic long *count)
{
    atomic_fetch_add(count, 1);
    if (atomic_load(&d->magic) == DOMAIN_MAGIC)
        return true;
    atomic_fetch_sub(count, 1);
    return false;
}

/*
 * A thread that ends inside domains - it returned or called pthread_exit()
 * without its exits, or was cancelled between an enter and its exit -
 * leaves them as it goes, so that they can still be destroyed: the
 * kernel's scopes end with their task the same way. Its stack is its own
 * TLS, which outlives the key's destructor.
 */
static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static bool exit_key_made;

static void pop(void);

static void thread_exit(void *arg)
{
    (void)arg;
    while (mine.n)
        pop();
    /* The key's value is gone now: an enter made after this, by another
     * of the thread's destructors, sets it again, so that the destructors'
     * next round leaves that domain too. */
    mine.keyed = false;
}

static void exit_key_create(void)
{
    exit_key_made = pthread_key_create(&exit_key, thread_exit) == 0;
}

static void exit_key_set(void)
{
    pthread_once(&exit_key_once, exit_key_create);
    if (exit_key_made && pthread_setspecific(exit_key, &mine) == 0)
        mine.keyed = true;
}

static unsigned next_token(unsigned slot)
{
    if (unlikely(!mine.seeded)) {
        /* Seeds far apart, so two threads' tokens differ in their upper
         * bits: a token passed to another thread is not mistaken there. */
        mine.seq = atomic_fetch_add_explicit(&seq_seed, 1, memory_order_relaxed) * 0x9e3779b1u;
        mine.seeded = true;
    }
    unsigned t = (mine.seq++ << TOKEN_SHIFT) | (slot + 1);
    return t;
}

/* False if d is being destroyed (domain_hold()). */
static bool push(struct rcl_domain *d, unsigned token)
{
    if (!domain_hold(d, &d->entered))
        return false;
    if (unlikely(!mine.keyed))
        exit_key_set();
    mine.stack[mine.n] = d;
    mine.token[mine.n] = token;
    mine.n++;
    return true;
}

static void pop(void)
{
    mine.n--;
    atomic_fetch_sub_explicit(&mine.stack[mine.n]->entered, 1, memory_order_release);
    mine.stack[mine.n] = NULL;
    mine.token[mine.n] = 0;
}

unsigned rcl_domain_enter(struct rcl_domain *d)
{
    if (!d)
        return 0;
    if (!domain_live(d)) {
        rcl__report("rcl_domain_enter: %p is not a live domain", (void *)d);
        return 0;
    }
    if (mine.n == RCL_MAX_DOMAINS) {
        char name[128];

        pthread_mutex_lock(&live_lock);
        name_copy_locked(d, name, sizeof(name));
        pthread_mutex_unlock(&live_lock);
        rcl__report("rcl_domain_enter: \"%s\" refused: this thread is already inside "
                    "%u domains (RCL_MAX_DOMAINS)", name, (unsigned)RCL_MAX_DOMAINS);
        return 0;
    }
    unsigned token = next_token(mine.n);
    if (!push(d, token)) {
        rcl__report("rcl_domain_enter: %p is being destroyed", (void *)d);
        return 0;
    }
    return token;
}

static __attribute__((noinline, cold)) void exit_refused(unsigned token)
{
    for (unsigned i = 0; i < mine.n; i++) {
        if (mine.token[i] != token)
            continue;
        if (i < mine.floor)
            rcl__report("rcl_domain_exit: from a may_reclaim callback or a shrinker's: "
                        "\"%s\" (entry %u) was entered by the thread that called it, "
                        "whose own exit would then find it gone; refused, nothing changed",
                        mine.stack[i]->name, i + 1);
        else
            rcl__report("rcl_domain_exit: out of order: exiting \"%s\" (entry %u) while "
                        "\"%s\" (entry %u) is still entered; nothing changed",
                        mine.stack[i]->name, i + 1, mine.stack[mine.n - 1]->name, mine.n);
        return;
    }
    rcl__report("rcl_domain_exit: token %#x matches no domain this thread is inside; "
                "nothing changed", token);
}

void rcl_domain_exit(unsigned token)
{
    /* 0 is what a refused enter (or enter(NULL)) returned: nothing to undo. */
    if (token == 0)
        return;
    if (likely(mine.n > mine.floor && mine.token[mine.n - 1] == token)) {
        pop();
        return;
    }
    exit_refused(token);
}

/* ------------------------------------------------------------------------ */
/* The per-shrinker decision                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Reads only this thread's own stack: it runs in the thread that asks,
 * with any lock held. The answer for one entered domain never depends on
 * the others, so the most restrictive answer is simply: skip if any says
 * skip, NOFS if any says NOFS.
 */
unsigned rcl__domain_rule(const struct rcl_domain *owner, unsigned owner_depth)
{
    if (!owner || (mine.n == 0 && mine.overflow == 0))
        return 0;
    /* Domains dropped for lack of room could be owner itself: assume the
     * worst for every shrinker that belongs to a domain. */
    if (unlikely(mine.overflow))
        return RCL__DOMAIN_SKIP;

    unsigned r = 0;
    for (unsigned i = 0; i < mine.n; i++) {
        if (mine.stack[i] == owner)
            r |= RCL__DOMAIN_OWN;
        else if (mine.stack[i]->depth != owner_depth)
            r |= RCL__DOMAIN_NOFS;
    }
    return r;
}

bool rcl__domain_narrow(const struct rcl_domain *owner, rcl_gfp_t *gfp, bool *ask)
{
    unsigned r = rcl__domain_rule(owner, owner ? owner->depth : 0);

    *ask = false;
    if (r & RCL__DOMAIN_SKIP)
        return true;
    if ((r & RCL__DOMAIN_OWN) && !owner->may_reclaim)
        return true;
    if (r & RCL__DOMAIN_NOFS)
        *gfp &= ~(rcl_gfp_t)RCL__FS;
    *ask = (r & RCL__DOMAIN_OWN) != 0;
    return false;
}

#ifdef RCL_DEBUG
static bool inside(const struct rcl_domain *d)
{
    for (unsigned i = 0; i < mine.n; i++)
        if (mine.stack[i] == d)
            return true;
    return false;
}
#endif

struct allows_state {
    unsigned scope;     /* saved */
    unsigned floor;     /* saved */
    unsigned adopts;    /* the adopt depth it was asked at */
    int      cancel;
    unsigned char callout;  /* the thread's (rcl_thread.callout), put back */
    bool     yes;       /* may_reclaim's answer: in memory, since a local
                           set after the cleanup's setjmp may be clobbered */
};

/* A may_reclaim that ends its thread (pthread_exit(), which the cancel
 * state does not defer) leaves the scope, the cancel state and the
 * thread's callout mark as its return would have: the program's cleanup
 * handlers run next. */
static void allows_unwound(void *arg)
{
    const struct allows_state *st = arg;

    rcl__asan_unwinding();
    rcl__self.callout = st->callout;
    rcl__domain_floor_put(st->floor);
    rcl__adopts_forget(st->adopts);
    rcl_scope_restore(st->scope);
    rcl__nocancel_end(st->cancel);
}

/*
 * What raise returns and put puts back: the caller's floor, and its count
 * of adopted domains that could not be entered. An adopt the callback made
 * and never restored, ended as the callback returns (scope.c), would leave
 * its count raised for good, and every domain's shrinkers skipped for the
 * thread. Any count but 0 is as strict as another: one too large to keep
 * is kept as the largest that fits.
 */
#define FLOOR_MASK ((1u << TOKEN_SHIFT) - 1)
#define OVERFLOW_KEPT (~0u >> TOKEN_SHIFT)

unsigned rcl__domain_floor_raise(void)
{
    unsigned over = mine.overflow < OVERFLOW_KEPT ? mine.overflow : OVERFLOW_KEPT;
    unsigned was = over << TOKEN_SHIFT | mine.floor;

    mine.floor = mine.n;
    return was;
}

static void overflow_put(unsigned was)
{
    mine.overflow = was >> TOKEN_SHIFT;
}

/* Also what a handler for a callback that ended its thread puts back, so
 * that the program's cleanup handlers that run next may exit the domains
 * their frames entered. */
void rcl__domain_floor_put(unsigned was)
{
    rcl__assert((was & FLOOR_MASK) <= mine.floor);
    mine.floor = was & FLOOR_MASK;
    overflow_put(was);
}

/* Entries above n exited; how many the thread entered (an adopt's, left
 * by a callback that never restored it, are said as the adopt). */
static unsigned pop_to(unsigned n)
{
    unsigned entered = 0;

    while (mine.n > n) {
        entered += mine.token[mine.n - 1] != 0;
        pop();
    }
    return entered;
}

/* Domains a callback entered and never exited, exited now; how many.
 * was: what the raise before it returned. */
unsigned rcl__domain_floor_leftover(unsigned was)
{
    rcl__assert(mine.n >= mine.floor);
    overflow_put(was);
    return pop_to(mine.floor);
}

/* Asked outside a shrinker pass, with a handler of its own. Inside one,
 * the reclaim's handler puts back the scope, the cancel state and the
 * callout mark the pass began with (shrinker.c), which are these: a
 * handler here would only add a setjmp to every question a pass asks.
 * The mark says the call that asked - a pass, or an allocation weighing
 * a wait - goes on after the answer (rcl_shutdown() is refused there);
 * put back, not cleared, since the question may be asked inside an
 * isolate callback, whose mark the callback's own calls still need. */
static void allows_ask(struct rcl_domain *owner, struct allows_state *st)
{
    st->callout = rcl__self.callout;
    rcl__self.callout = RCL__CALLOUT_MAY_RECLAIM;
    if (rcl__shrinking_here()) {
        st->yes = owner->may_reclaim(owner, owner->arg) != 0;
        rcl__self.callout = st->callout;
        return;
    }
    pthread_cleanup_push(allows_unwound, st);
    st->yes = owner->may_reclaim(owner, owner->arg) != 0;
    pthread_cleanup_pop(0);
    rcl__self.callout = st->callout;
}

/*
 * A may_reclaim that returns with a scope it opened, a context it adopted,
 * or inside a domain it entered, would leave every later allocation of the
 * asking thread as restricted: said, and the thread put back as it was
 * asked, as after a shrinker's callbacks and a work item. Its own domains
 * only: those below are the caller's, and an exit of one is refused while
 * it runs.
 */
static void allows_left(const struct rcl_domain *owner, unsigned scope, unsigned n,
                        unsigned open)
{
    unsigned now = rcl__scope;

    if (likely(now == scope && mine.n == n && !open))
        return;
    unsigned entered = pop_to(n);
    if (now != scope)
        rcl__scope_put(scope);
    if (open)
        rcl__report("domain \"%s\": may_reclaim returned with %u context adopt(s) never "
                    "restored; restored", owner->name, open);
    if (entered)
        rcl__report("domain \"%s\": may_reclaim returned inside %u domain(s) it entered "
                    "and never exited; exited now", owner->name, entered);
    if (now != scope && !open)
        rcl__report("domain \"%s\": may_reclaim returned with the scope changed (%#x, was "
                    "%#x): a save without its restore; restored", owner->name, now, scope);
}

/*
 * The program's code, as the header promises it: its allocations cannot
 * recurse into reclaim (NORECLAIM), they and its frees are ordinary calls
 * rather than a signal handler's though the thread is inside the library
 * (busy out), and a cancellation point it reaches - a log line - defers a
 * pending cancel to the caller's next one, since the caller may be half
 * way through an allocation. No lock keeps owner alive, and none is
 * needed: this thread is inside it, and only this thread can leave.
 */
bool rcl__domain_allows(struct rcl_domain *owner)
{
#ifdef RCL_DEBUG
    rcl__assert(inside(owner));
#endif
    rcl__assert(owner->may_reclaim);

    unsigned scope = rcl__scope, n = mine.n;
    struct allows_state st = { .scope = rcl_scope_save(RCL_SCOPE_NORECLAIM),
                               .adopts = rcl__adopts_mark() };
    st.cancel = rcl__nocancel_begin();
    unsigned busy = rcl__busy_out();
    st.floor = rcl__domain_floor_raise();
    allows_ask(owner, &st);
    /* Before the NORECLAIM save is restored: an adopt left open above it
     * would make that restore one out of order. */
    unsigned open = rcl__adopts_forget(st.adopts);
    rcl__domain_floor_put(st.floor);
    rcl__busy_back(busy);
    rcl__nocancel_end(st.cancel);
    rcl_scope_restore(st.scope);
    allows_left(owner, scope, n, open);
    return st.yes;
}

bool rcl__domain_filter(struct rcl_domain *owner, rcl_gfp_t *gfp)
{
    bool ask;

    return rcl__domain_narrow(owner, gfp, &ask) || (ask && !rcl__domain_allows(owner));
}

bool rcl__domain_shrinker_hold(struct rcl_domain *d)
{
    return domain_live(d) && domain_hold(d, &d->shrinkers);
}

void rcl__domain_shrinker_put(struct rcl_domain *d)
{
    atomic_fetch_sub_explicit(&d->shrinkers, 1, memory_order_acq_rel);
}

/* Is the thread inside any domain (overflowed ones included)? */
bool rcl__domain_inside(void)
{
    return mine.n || mine.overflow;
}

unsigned rcl__domain_entered(struct rcl_domain **out, unsigned max)
{
    if (!out || max == 0)
        return mine.n;
    /* Too small a buffer keeps the innermost. */
    unsigned from = mine.n > max ? mine.n - max : 0;
    for (unsigned i = from; i < mine.n; i++)
        out[i - from] = mine.stack[i];
    return mine.n - from;
}

/* ------------------------------------------------------------------------ */
/* Context that travels                                                      */
/* ------------------------------------------------------------------------ */

/* Into a context its callers have zeroed. */
void rcl__domain_capture(struct rcl_ctx *c)
{
    c->ndomains = mine.n;
    for (unsigned i = 0; i < mine.n; i++)
        c->domains[i] = domain_id(mine.stack[i]);
    c->domain_overflow = mine.overflow;
    c->journal = mine.journal;
}

void rcl__domain_adopt(const struct rcl_ctx *c)
{
    unsigned n = c->ndomains <= RCL_MAX_DOMAINS ? c->ndomains : RCL_MAX_DOMAINS;
    unsigned dropped = 0;
    for (unsigned i = 0; i < n; i++) {
        struct rcl_domain *d = domain_by_id(c->domains[i]);
        if (d && mine.n == RCL_MAX_DOMAINS) {
            dropped++;
            continue;
        }
        /* adopted: only restore removes it (token 0) */
        if (!d || !push(d, 0)) {
            rcl__report("rcl_context_adopt: the context names a domain (id %#lx) that "
                        "has been destroyed since", (unsigned long)c->domains[i]);
            mine.overflow++;      /* the same worst case as a dropped domain */
        }
    }
    if (dropped) {
        rcl__report("rcl_context_adopt: %u domains did not fit (RCL_MAX_DOMAINS = %u); "
                    "shrinkers of every domain are skipped until the restore",
                    dropped, (unsigned)RCL_MAX_DOMAINS);
        mine.overflow += dropped;
    }
    /* A context that was itself captured over the limit stays as strict. */
    mine.overflow += c->domain_overflow;
    mine.journal = c->journal;
}

/* Would restoring c pop an entry the thread's callback may not exit?
 * Said, in the restore's name. */
bool rcl__domain_restore_reaches(const struct rcl_ctx *c)
{
    unsigned want = c->ndomains <= RCL_MAX_DOMAINS ? c->ndomains : RCL_MAX_DOMAINS;

    if (likely(want >= mine.floor))
        return false;
    rcl__report("rcl_context_restore: from a may_reclaim callback, a shrinker's or a "
                "work item: the context leaves %u domain(s), and the caller had entered "
                "%u before the call, which its own exit or restore would then find "
                "gone; refused, nothing restored", want, mine.floor);
    return true;
}

/* A captured context was never adopted: its restore undoes what the
 * thread did since the capture, and says so in those words. */
static const char *restore_since(const struct rcl_ctx *c)
{
    return c->adopt_owner ? "under the adopted context" : "since the context was captured";
}

void rcl__domain_restore(const struct rcl_ctx *c)
{
    unsigned want = c->ndomains <= RCL_MAX_DOMAINS ? c->ndomains : RCL_MAX_DOMAINS;
    unsigned leaked = 0;
    /* Above the saved ones: adopted entries (token 0), and enters made
     * under the adopted context that were never exited. */
    while (mine.n > want) {
        leaked += mine.token[mine.n - 1] != 0;
        pop();
    }
    mine.overflow = c->domain_overflow;
    bool same = mine.n == want;
    for (unsigned i = 0; same && i < want; i++)
        same = domain_id(mine.stack[i]) == c->domains[i];
    /* Entries are never pushed back: one a restore made would have no
     * token, and no exit could take it off. */
    if (leaked)
        rcl__report("rcl_context_restore: %u domain(s) entered %s were never exited; "
                    "exited now", leaked, restore_since(c));
    else if (!same)
        rcl__report("rcl_context_restore: this thread's domains changed %s (a domain "
                    "of the context exited); %u entered, %u expected; left as they are",
                    restore_since(c), mine.n, want);
    mine.journal = c->journal;
}

/* ------------------------------------------------------------------------ */
/* Journal cookie                                                            */
/* ------------------------------------------------------------------------ */

void *rcl_journal_info_set(void *cookie)
{
    void *old = mine.journal;
    mine.journal = cookie;
    return old;
}

void *rcl_journal_info(void)
{
    return mine.journal;
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

void rcl__domain_atfork_prepare(void) { pthread_mutex_lock(&live_lock); }
void rcl__domain_atfork_parent(void) { pthread_mutex_unlock(&live_lock); }
/* Entries of threads the child does not have keep their domains "in use"
 * there; that is only ever conservative (destroy refuses). */
void rcl__domain_atfork_child(void) { pthread_mutex_unlock(&live_lock); }
