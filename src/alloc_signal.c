/* SPDX-License-Identifier: MIT */
/*
 * alloc_signal.c - rcl_alloc() and rcl_free() from a signal handler that
 * interrupted its thread inside the library: the stash, deferred frees,
 * and the thread's own service of both on its next slow path
 * (rcl__sig_service), drains (rcl__sig_flush), its exit (rcl__sig_exit)
 * and new epochs (rcl__sig_forget). The entry points (alloc.c) send a
 * call here when the thread is busy.
 */
#include "internal.h"
#include "backend.h"
#include "block_cache.h"
#include "block.h"

#include <errno.h>
#include <string.h>

/*
 * A signal handler that calls rcl_alloc() or rcl_free() on a thread that
 * was inside the library (rcl_thread.busy) must not touch that thread's
 * block cache or stock, which the interrupted code may be half way
 * through changing, nor call the backend or take a lock, which it may
 * hold. Such a call is served here, lock-free and without the backend, in
 * the spirit of the kernel's kmalloc_nolock(): an allocation of up to
 * SIG_SIZE bytes takes a block from the thread's stash (charged when it
 * was made), and NULL means none is there now; a free is deferred to the
 * thread's own next slow path. Either asks the thread, through its watch
 * word, to come to the slow path soon: to refill the stash, to release
 * the deferred blocks. The stash is made on first demand, so a program
 * that never allocates in a handler never holds one.
 *
 * Only the interrupted thread and its handlers touch these lists, so the
 * compare-and-swaps cannot meet the ABA problem: the thread only pushes to
 * the stash (or takes all of it), handlers only pop; handlers only push to
 * the deferred list, the thread only takes all of it.
 *
 * A thread whose own list nothing will take again (rcl_thread.sig_orphan:
 * one the library does not know, which may never call it again, and one
 * whose exit has taken its list for the last time, whose handlers may
 * still run in its later destructors) has its handlers' frees deferred to
 * the process's list instead, which any thread's next service or drain
 * takes whole. Handlers on every thread push to it and threads only take
 * all of it: no ABA problem there either.
 */
#define SIG_SIZE   256u          /* the largest request a handler's stash serves */
#define SIG_STASH  8u            /* blocks in a full stash */
#define SIG_DEFER  0x00c3c300u   /* xor-ed into a deferred block's check word */

/* What a handler asks of its thread's next service (rcl_thread.sig_want):
 * a stash, and the report of what went wrong there, counted by kind
 * above the request bits, so that the thread the handler interrupted
 * reports it, not whichever thread is served first. A handler that never
 * allocates is given no stash. */
#define SIG_WANT_STASH  0x1u
#define SIG_WANT_REPORT 0x2u     /* the process's counts hold the thread's */
#define SIG_BAD_SHIFT   2u
/* Seven kinds in the 30 bits above the requests: the word cannot widen
 * without moving the fields after it (nor stay lock-free for a handler on
 * every target), and "15 or more" of one misuse between two services
 * tells the program little less than a larger top would. */
#define SIG_BAD_BITS    4u
#define SIG_BAD_MAX     ((1u << SIG_BAD_BITS) - 1)

enum sig_bad {
    SIG_BAD_FREE,       /* a free of no block of the library's, or a freed one */
    SIG_BAD_REALLOC,    /* a realloc of such a pointer */
    SIG_BAD_LEAVE,      /* rcl_signal_leave() without its enter */
    SIG_BAD_SHUTDOWN,   /* rcl_shutdown(), refused */
    SIG_BAD_NOFAIL,     /* NOFAIL without DIRECT_RECLAIM */
    SIG_BAD_INIT,       /* rcl_init(), refused */
    SIG_BAD_START,      /* another call's first use, its start refused */
    SIG_BAD_KINDS
};
_Static_assert(SIG_BAD_SHIFT + SIG_BAD_KINDS * SIG_BAD_BITS <= 32,
               "the handlers' counts fit the word of requests");

static inline unsigned sig_bad_shift(enum sig_bad kind)
{
    return SIG_BAD_SHIFT + (unsigned)kind * SIG_BAD_BITS;
}

static void sig_ask(struct rcl_thread *t, unsigned want)
{
    atomic_fetch_or(&t->sig_want, want);
    rcl__slow_path_ask(t);
}

void *_Atomic rcl__sig_orphans;

/* What handlers counted on threads in or past their exit, or unknown to
 * the library, which may never serve themselves again: the next thread
 * served reports it. */
static _Atomic unsigned long sig_exit_bad[SIG_BAD_KINDS];

/*
 * A handler's misuse, counted on its own thread for the thread's next
 * service to report (a report takes a lock). A compare-and-swap, so that
 * a full count stays full rather than carry into the next: the report
 * then says "or more". A handler that lands inside it, or inside the
 * thread's own take of it, runs whole before the swap, which
 * fails and reads the word again. A thread nothing of the library's will
 * serve again for certain (sig_orphan: one whose exit has begun, or one
 * the library does not know, which may never call it and has no exit of
 * the library's to hand its counts on) leaves them to the process's
 * count at once, and still asks for its own service: a thread a handler
 * refused the library's start to has most likely not used it yet, and
 * its first allocation reports them, unless another thread served first.
 */
static void sig_bad(enum sig_bad kind)
{
    struct rcl_thread *t = &rcl__self;
    unsigned shift = sig_bad_shift(kind);

    if (rd(t->sig_orphan)) {
        atomic_fetch_add(&sig_exit_bad[kind], 1);
        sig_ask(t, SIG_WANT_REPORT);
        return;
    }
    unsigned want = atomic_load(&t->sig_want);
    while (((want >> shift) & SIG_BAD_MAX) != SIG_BAD_MAX &&
           !atomic_compare_exchange_weak(&t->sig_want, &want, want + (1u << shift)))
        ;
    rcl__slow_path_ask(t);
}

static const struct sig_bad_text {
    const char *what, *where, *then;
} sig_bad_texts[SIG_BAD_KINDS] = {
    [SIG_BAD_FREE] = { "free", " in a signal handler",
                       ": not a block from this library, or already freed; left alone" },
    [SIG_BAD_REALLOC] = { "rcl_realloc() call", " in a signal handler",
                          ": not a block from this library, or already freed; left alone" },
    [SIG_BAD_LEAVE] = { "rcl_signal_leave() call", " without rcl_signal_enter()", "; ignored" },
    [SIG_BAD_SHUTDOWN] = { "rcl_shutdown() call", " from a signal handler",
                           ": refused (the call the handler interrupted may hold the locks a "
                           "shutdown takes, and go on over what it tears down)" },
    [SIG_BAD_NOFAIL] = { "NOFAIL allocation", " in a signal handler can never succeed",
                         ": NOFAIL needs DIRECT_RECLAIM (it must be able to wait); refused" },
    [SIG_BAD_INIT] = { "rcl_init() call", " from a signal handler",
                       ": refused with -EBUSY (a start takes locks and calls malloc(), and the "
                       "call the handler interrupted may be this thread's own start)" },
    [SIG_BAD_START] = { "call", " from a signal handler would have started the library",
                        ": refused, each answered as a failed start answers it (a start takes "
                        "locks and calls malloc(), and the call the handler interrupted may be "
                        "this thread's own start)" },
};

static void sig_bad_report(enum sig_bad kind, unsigned long n, bool full, bool exiting)
{
    const struct sig_bad_text *x = &sig_bad_texts[kind];

    rcl__report("%lu%s %s%s%s%s%s", n, full ? " or more" : "", x->what,
                n == 1 && !full ? "" : "s", x->where,
                exiting ? ", on a thread the library was not serving (exiting, or not yet using it)" : "", x->then);
}

/* One kind's count, taken from the thread's word. */
static unsigned sig_bad_take(struct rcl_thread *t, enum sig_bad kind)
{
    unsigned shift = sig_bad_shift(kind);

    return (atomic_fetch_and(&t->sig_want, ~(SIG_BAD_MAX << shift)) >> shift) & SIG_BAD_MAX;
}

/* The thread's counts, of the kinds `want` found, and those the
 * process's took from exiting threads: read before they are taken, as
 * the process's deferred list is. Each kind is taken just before its
 * report: a report function that ends the thread leaves the kinds after
 * it in the word, for the thread's exit to hand to the process's. */
static void sig_bad_reports(struct rcl_thread *t, unsigned want)
{
    for (unsigned k = 0; k < SIG_BAD_KINDS; k++) {
        unsigned n = (want >> sig_bad_shift(k)) & SIG_BAD_MAX ? sig_bad_take(t, k) : 0;
        if (n)
            sig_bad_report(k, n, n == SIG_BAD_MAX, false);
        if (!atomic_load_explicit(&sig_exit_bad[k], memory_order_relaxed))
            continue;
        unsigned long exited = atomic_exchange(&sig_exit_bad[k], 0);
        if (exited)
            sig_bad_report(k, exited, false, true);
    }
}

static inline size_t sig_cost(void) { return rcl__bcache_charge(rcl__bcache_class(SIG_SIZE)); }

/*
 * A handler's failures count as the thread's do (alloc.c): one that finds
 * no block for it counts, as one that finds no room does outside a
 * handler (no_memory()); a request no block can ever meet is its
 * caller's bug, and counts only with NOFAIL (refused()), whichever call
 * makes it.
 */
static void *sig_no_memory(void)
{
    rcl__count(failures, 1);
    return fail(ENOMEM);
}

void *rcl__sig_unserved(size_t size, rcl_gfp_t gfp)
{
    if (!size)
        return rcl__sig_refused(EINVAL, gfp);
    if (rcl__gfp_nofail_nowait(gfp))
        return rcl__sig_nofail_nowait(gfp);
    return sig_no_memory();
}

void *rcl__sig_alloc(size_t size, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;

    if (!size || size > SIG_SIZE || (gfp & RCL__NOFAIL) || !rd(t->epoch))
        return rcl__sig_unserved(size, gfp);
    struct rcl_hdr *h = atomic_load(&t->sig_stash);
    while (h && !atomic_compare_exchange_weak(&t->sig_stash, (void **)&h, h->next))
        ;
    sig_ask(t, SIG_WANT_STASH);
    if (!h)
        return sig_no_memory();
    atomic_fetch_sub(&t->sig_stash_bytes, sig_cost());
    rcl__acct_out(t, sig_cost());
    atomic_fetch_add(&t->sig_allocs, 1);
    /* Handed out at the stash's class size, so that its free uncharges
     * exactly what it was charged. What lies past the size asked is the
     * block's last owner's, where a grow with RCL__ZERO (realloc_body)
     * zeroes only past the header's size: it is zeroed here, as in a
     * block a larger class lent (alloc_fresh). */
    char *p = rcl__hdr_user(h);
    user_fit(h, SIG_SIZE);
    h->size = SIG_SIZE;
    h->meta = rcl__hdr_meta(t->hdr_tag, p, SIG_SIZE);
    memset(p + size, 0, SIG_SIZE - size);
    return (gfp & RCL__ZERO) ? memset(p, 0, size) : p;
}

/* The caller's bug, visible at the call, not a stash empty for now: EINVAL
 * as outside a handler, and reported - by the thread, later, as a bad
 * free is (a report takes a lock). */
void *rcl__sig_nofail_nowait(rcl_gfp_t gfp)
{
    rcl__count(failures, 1);
    if (!(gfp & RCL__NOWARN))
        sig_bad(SIG_BAD_NOFAIL);
    return fail(EINVAL);
}

/* Counted as the thread's refusal counts it (alloc.c): with NOFAIL, whose
 * caller will not look for NULL, so that the failure shows in the stats
 * at least. Its report is the thread's alone: a report takes a lock. */
void *rcl__sig_refused(int err, rcl_gfp_t gfp)
{
    if (gfp & RCL__NOFAIL)
        rcl__count(failures, 1);
    return fail(err);
}

/* No report from here (it takes a lock): the thread makes it. */
static void sig_bad_free(enum sig_bad kind)
{
    rcl__count(bad_frees, 1);
    sig_bad(kind);
    errno = EINVAL;
}

void *rcl__sig_realloc_foreign(void)
{
    sig_bad_free(SIG_BAD_REALLOC);
    return NULL;
}

void rcl__sig_free(void *p)
{
    struct rcl_thread *t = &rcl__self;
    struct rcl_hdr *h = rcl__hdr_of(p);
    if (rcl__block_kind(p, h) == BLOCK_FOREIGN) {
        sig_bad_free(SIG_BAD_FREE);
        return;
    }
    h->meta ^= SIG_DEFER;            /* a second free is caught meanwhile */
    void **link = p;
#ifdef RCL_ASAN
    rcl__unpoison(link, sizeof(*link));
#endif
    void *_Atomic *list = atomic_load(&t->sig_orphan) ? &rcl__sig_orphans : &t->sig_deferred;
    void *head = atomic_load(list);
    do
        *link = head;
    while (!atomic_compare_exchange_weak(list, &head, p));
    rcl__slow_path_ask(t);
}

/* The thread, busy: every block of the stash back to the backend and
 * its charge to the stock (raised first, so that rcl_usage() reads low,
 * not high, meanwhile); charged: the stash belongs to the current budget. */
static void sig_stash_drop(struct rcl_thread *t, bool charged)
{
    struct rcl_hdr *h = atomic_exchange(&t->sig_stash, NULL);
    size_t total = 0;
    while (h) {
        struct rcl_hdr *next = h->next;
        block_delete(h, SIG_SIZE);
        total += sig_cost();
        h = next;
    }
    if (charged && total)
        rcl__stock_refund(t, total);
    atomic_fetch_sub(&t->sig_stash_bytes, total);
    if (charged)
        rcl__stock_spill(t);
}

static void sig_refill(struct rcl_thread *t)
{
    size_t cost = sig_cost();
    while (rd(t->sig_stash_bytes) < SIG_STASH * cost) {
        if (rcl__charge(t, cost, RCL_NOWAIT) != 0)
            return;
        struct rcl_hdr *h = block_new(SIG_SIZE);
        if (!h) {
            rcl__uncharge_fast(t, cost);
            return;
        }
        h->meta = 0;
        atomic_fetch_add(&t->sig_stash_bytes, cost);
        rcl__acct_out(t, -(long)cost);      /* held by the stash, not handed out */
        void *head = atomic_load(&t->sig_stash);
        do
            h->next = head;
        while (!atomic_compare_exchange_weak(&t->sig_stash, &head, (void *)h));
    }
}

/* A deferred list taken whole and released; the caller is busy. Read
 * before it is taken: the process's list is every thread's, and an
 * exchange at each service would write its line every time. */
static void release_deferred(void *_Atomic *list)
{
    if (!atomic_load_explicit(list, memory_order_relaxed))
        return;
    void *p = atomic_exchange(list, NULL);
    while (p) {
        void *next = *(void **)p;
        struct rcl_hdr *h = rcl__hdr_of(p);
        h->meta ^= SIG_DEFER;
        rcl__block_release(h, rcl__block_kind(p, h));
        p = next;
    }
}

void rcl__sig_service(struct rcl_thread *t)
{
    /* The requests taken before what they ask for is read: a handler
     * that interrupts the service (its reports call the program's report
     * function) asks again for the next one, rather than have this one
     * forget it. The counts stay until their reports (sig_bad_reports). */
    unsigned want = atomic_fetch_and(&t->sig_want, ~((1u << SIG_BAD_SHIFT) - 1));

    own_add(t->nr_alloc, atomic_exchange(&t->sig_allocs, 0));
    release_deferred(&t->sig_deferred);
    release_deferred(&rcl__sig_orphans);
    sig_bad_reports(t, want);
    if ((want & SIG_WANT_STASH) && rd(t->epoch))
        sig_refill(t);
}

/* Drains (rcl_usage_sync, a lowered limit, thread exit): the deferred
 * blocks released, the process's with them, the stash given back; a
 * later handler's demand makes it again. */
void rcl__sig_flush(struct rcl_thread *t)
{
    own_add(t->nr_alloc, atomic_exchange(&t->sig_allocs, 0));
    release_deferred(&t->sig_deferred);
    release_deferred(&rcl__sig_orphans);
    sig_stash_drop(t, true);
}

/*
 * The thread's exit: its list is taken for the last time, so the mark
 * goes up first. A handler runs whole between two of its thread's
 * instructions, so each free is either on the thread's list before the
 * exchange that takes it, or finds the mark and goes to the process's
 * list: none is left behind, whether its handler interrupts the rest of
 * this exit or runs in a destructor after it.
 */
void rcl__sig_exit(struct rcl_thread *t)
{
    atomic_store(&t->sig_orphan, 1);
    rcl__sig_flush(t);
}

/* A new epoch: the stash was charged to a budget that is gone. The
 * thread is registered, and its exit will take the list again. */
void rcl__sig_forget(struct rcl_thread *t)
{
    atomic_store(&t->sig_orphan, 0);
    release_deferred(&t->sig_deferred);
    sig_stash_drop(t, false);
}

/* What the blocks on t's deferred list hold charged, and how many they
 * are (nr, if not NULL). The thread and its blocks are only read, as a
 * forked child reads a thread it does not have. */
size_t rcl__sig_deferred_charge(const struct rcl_thread *t, unsigned long *nr)
{
    size_t bytes = 0;
    unsigned long n = 0;

    for (void *p = atomic_load(&t->sig_deferred); p; p = *(void **)p, n++) {
        const struct rcl_hdr *h = rcl__hdr_of(p);
        uint64_t meta = h->meta ^ SIG_DEFER;
        bytes += rcl__block_charged(h, meta, rcl__block_kind_as(p, h, meta));
    }
    if (nr)
        *nr = n;
    return bytes;
}

/* A handler that may interrupt code outside the library (the program's
 * own malloc) brackets its calls: they all take the signal path then.
 * The depth goes up after the mark: a handler that lands in between
 * and leaves without an enter finds none, and changes nothing. A handler
 * that lands between the depth's load and store leaves it as it found
 * it, so the store is right. Brackets nest as deep as handlers do, far
 * below the byte's bound. */
unsigned rcl_signal_enter(void)
{
    struct rcl_thread *t = &rcl__self;
    unsigned b = rcl__busy_hold(t);

    rcl__assert(t->sig_depth < UCHAR_MAX);
    t->sig_depth++;
    atomic_signal_fence(memory_order_seq_cst);
    return b;
}

/* rcl_shutdown() from a handler (init.c): no report from here either. */
void rcl__sig_shutdown_refused(void)
{
    sig_bad(SIG_BAD_SHUTDOWN);
}

/* A start from a handler, refused (init.c): rcl_init()'s, or the one
 * another call's first use would make. */
void rcl__sig_start_refused(bool init)
{
    sig_bad(init ? SIG_BAD_INIT : SIG_BAD_START);
}

/* A round of the thread's exit, its mark for the round set: the counts
 * it has not reported yet, it may never report (it may not allocate
 * again), so the process's take them. One that comes after the take
 * counts on the thread again, for its next round, or, after the last, on
 * the process's at once. */
void rcl__sig_exit_bad(struct rcl_thread *t)
{
    unsigned want = atomic_fetch_and(&t->sig_want, (1u << SIG_BAD_SHIFT) - 1);

    for (unsigned k = 0; k < SIG_BAD_KINDS; k++) {
        unsigned n = (want >> sig_bad_shift(k)) & SIG_BAD_MAX;
        if (n)
            atomic_fetch_add(&sig_exit_bad[k], n);
    }
}

/* A leave finds the mark its enter set, and the depth it raised: the
 * library's own calls in between put the mark back as they found it.
 * With no enter to match, the leave is refused, whatever the mark says:
 * its cookie (if 1) would keep the thread on the handlers' path for
 * good, and in a handler that interrupted a library call, where the
 * mark is the call's, it would clear the mark for the rest of the call,
 * and let a second handler's allocation take the ordinary path there.
 * The cookie puts back the mark the enter found, the exited thread's
 * (RCL__BUSY_EXITED) included: as 1 it would read as a handler's, and
 * refuse an rcl_shutdown() from a destructor after it. */
void rcl_signal_leave(unsigned cookie)
{
    struct rcl_thread *t = &rcl__self;

    if (unlikely(!t->sig_depth || !t->busy)) {
        sig_bad(SIG_BAD_LEAVE);
        return;
    }
    t->sig_depth--;
    rcl__busy_drop(t, cookie == RCL__BUSY_EXITED ? RCL__BUSY_EXITED : cookie ? 1u : 0u);
}
