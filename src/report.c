/* SPDX-License-Identifier: MIT */
/*
 * report.c - the library's one report channel. Everything the library has
 * to tell a person (lock-order cycles, bad frees, stalls, misuse) is a
 * formatted message handed to one function: stderr by default, or what the
 * program installed with rcl_set_report_fn().
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct report_sink {
    rcl_report_fn fn;
    void *arg;
};

/* Swapped whole under a lock so a report never sees fn of one sink with
 * arg of another. Reports are rare: a mutex costs nothing that matters. */
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static struct report_sink sink;
/* Under sink_lock: how many times the sink was set, the number a call
 * takes with it; and the setters that wait for the calls of the functions
 * they replaced, signalled as a call ends. */
static unsigned long sink_sets;
static pthread_cond_t sink_idle = PTHREAD_COND_INITIALIZER;

static void report_stderr(const char *report, void *arg)
{
    (void)arg;
    fprintf(stderr, "libreclaim: %s\n", report);
}

/* A report function runs inside the call that made the report, which
 * goes on after it: rcl_shutdown() asks whether it is in one. */
static __thread unsigned reporting;

unsigned rcl__reporting_depth(void) { return reporting; }

/* What a report function's call changed, the counter its report goes
 * into (the lock checker's; NULL for most), the sink it called, the
 * thread's call it is inside, if any, and the other calls under way. */
struct delivery {
    unsigned scope;
    int cancel;
    void (*counted)(void);
    struct report_sink sink;
    unsigned long set;
    struct delivery *outer;
    struct delivery *next, **pprev;
};

/* Every thread's calls under way, under sink_lock; and this thread's,
 * innermost first, which a forked child lists again (its other threads'
 * are not in it). */
static struct delivery *calls;
static __thread struct delivery *delivering;

static void calls_add(struct delivery *d)
{
    d->next = calls;
    d->pprev = &calls;
    if (calls)
        calls->pprev = &d->next;
    calls = d;
}

/* A call of a function other than fn with arg, which took it before the
 * set numbered `set`, is under way. The calls of the one being set are not
 * waited for (the program keeps their arg), nor those that began after
 * (another set's, which a stream of reports would keep up for ever). */
static bool calls_replaced(rcl_report_fn fn, void *arg, unsigned long set)
{
    for (const struct delivery *d = calls; d; d = d->next)
        if (d->set < set && (d->sink.fn != fn || d->sink.arg != arg))
            return true;
    return false;
}

/*
 * Called from a report function, the setter does not wait: the calls of
 * the thread's own are under way below it, and another thread's report
 * function that set the sink at the same time would wait for this one.
 * Busy while it holds the lock or waits (a signal handler's allocation
 * that fails cannot come to the lock then), and not cancellable: the
 * wait is on calls the program's code makes, and a cancel there would
 * leave the lock held.
 */
void rcl_set_report_fn(rcl_report_fn fn, void *arg)
{
    unsigned busy = rcl__busy_hold(&rcl__self);
    int cancel = rcl__nocancel_begin();
    pthread_mutex_lock(&sink_lock);
    sink.fn = fn;
    sink.arg = arg;
    unsigned long set = ++sink_sets;
    while (!reporting && calls_replaced(fn, arg, set))
        pthread_cond_wait(&sink_idle, &sink_lock);
    pthread_mutex_unlock(&sink_lock);
    rcl__nocancel_end(cancel);
    rcl__busy_drop(&rcl__self, busy);
}

static void delivery_end(struct delivery *d)
{
    unsigned busy = rcl__busy_hold(&rcl__self);
    pthread_mutex_lock(&sink_lock);
    if (d->next)
        d->next->pprev = d->pprev;
    *d->pprev = d->next;
    pthread_cond_broadcast(&sink_idle);
    pthread_mutex_unlock(&sink_lock);
    rcl__busy_drop(&rcl__self, busy);
    rcl__assert(delivering == d);
    delivering = d->outer;
    reporting--;
    rcl__nocancel_end(d->cancel);
    rcl_scope_restore(d->scope);
    if (d->counted)
        d->counted();
}

/*
 * The report function ended its thread (pthread_exit(), or a cancel it
 * let in): the thread leaves the report as a return would, so that its
 * cleanup handlers and thread-specific data destructors run in its own
 * scope and cancel state, outside any report, and the report is counted.
 * It stays out of the library: the frames of the call that made the
 * report go without their epilogues, and what runs next is the
 * program's, or a library handler that marks the thread itself.
 */
static void delivery_unwound(void *arg)
{
    rcl__asan_unwinding();
    delivery_end(arg);
}

/* The report function, or stderr, called the way a report must be. The
 * cleanup handler's setjmp is paid by reports alone. */
static void deliver(const char *buf, void (*counted)(void))
{
    struct delivery d = { .counted = counted, .outer = delivering };

    /* Busy while the lock is held: a signal handler's allocation that
     * fails then cannot come here for it. */
    unsigned busy = rcl__busy_hold(&rcl__self);
    pthread_mutex_lock(&sink_lock);
    d.sink = sink;
    d.set = sink_sets;
    calls_add(&d);
    pthread_mutex_unlock(&sink_lock);
    rcl__busy_drop(&rcl__self, busy);

    /* A report runs the user's code: keep it out of reclaim. Reports are
     * made inside the program's callbacks that run under library locks
     * (an isolate's, a shrinker's), and stdio may be a cancellation point:
     * a cancel waits until the report is out. */
    d.scope = rcl_scope_save(RCL_SCOPE_NORECLAIM);
    d.cancel = rcl__nocancel_begin();
    busy = rcl__busy_out();
    delivering = &d;
    reporting++;
    pthread_cleanup_push(delivery_unwound, &d);
    (d.sink.fn ? d.sink.fn : report_stderr)(buf, d.sink.arg);
    pthread_cleanup_pop(0);
    rcl__busy_back(busy);
    delivery_end(&d);
}

/* The thread whose reports are held (the one holding init.c's lock), and
 * what it has made so far: written by that thread alone. */
static _Atomic(const struct rcl_thread *) holder;
static struct rcl__held_reports held;

void rcl__report_hold(void)
{
    rcl__assert(!atomic_load(&holder));
    held.n = held.lost = 0;
    held.used = 0;
    atomic_store_explicit(&holder, &rcl__self, memory_order_relaxed);
}

/* Copied out while the caller still holds the lock, so that the next
 * holder's reports cannot mix with these. */
void rcl__report_unhold(struct rcl__held_reports *out)
{
    rcl__assert(atomic_load(&holder) == &rcl__self);
    atomic_store_explicit(&holder, NULL, memory_order_relaxed);
    out->n = held.n;
    out->lost = held.lost;
    out->used = held.used;
    memcpy(out->text, held.text, held.used);
}

/* A report longer than its buffer says where it was cut, so that a reader
 * does not take the lines that fit for all there was. */
static const char cut_mark[] = "\n[... the rest of this report did not fit and was cut]\n";

void rcl__report_mark_cut(char *buf, size_t size)
{
    rcl__assert(size > sizeof(cut_mark));
    memcpy(buf + size - sizeof(cut_mark), cut_mark, sizeof(cut_mark));
}

/*
 * Held in the room the start's reports share. One longer than the room
 * left is cut there and says so, as one longer than its buffer does: the
 * reader would take the part that fits for the whole report. Past the
 * room for the mark it is counted lost.
 */
static bool report_held(const char *msg)
{
    if (atomic_load_explicit(&holder, memory_order_relaxed) != &rcl__self)
        return false;
    char *at = held.text + held.used;
    size_t room = sizeof(held.text) - held.used, len = strlen(msg);

    if (len < room) {
        memcpy(at, msg, len + 1);
    } else if (room > sizeof(cut_mark)) {
        memcpy(at, msg, room - 1);
        rcl__report_mark_cut(at, room);
        len = room - 1;
    } else {
        held.lost++;
        return true;
    }
    held.used += len + 1;
    held.n++;
    rcl__assert(held.used <= sizeof(held.text));
    return true;
}

void rcl__report_deliver(const struct rcl__held_reports *r)
{
    const char *msg = r->text;
    for (unsigned i = 0; i < r->n; i++, msg += strlen(msg) + 1)
        deliver(msg, NULL);
    if (r->lost)
        rcl__report("%u more reports made while the library started or stopped were lost",
                    r->lost);
}

static void report_va(void (*counted)(void), const char *fmt, va_list ap)
{
    /* Formatted on the stack: a report must not need the allocator that
     * may be what is failing. */
    char buf[4096];
    if (vsnprintf(buf, sizeof(buf), fmt, ap) >= (int)sizeof(buf))
        rcl__report_mark_cut(buf, sizeof(buf));
    if (!report_held(buf))
        deliver(buf, counted);
    else if (counted)
        counted();
}

void rcl__report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_va(NULL, fmt, ap);
    va_end(ap);
}

void rcl__report_counted(void (*counted)(void), const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_va(counted, fmt, ap);
    va_end(ap);
}

void rcl__report_limited(_Atomic long long *last, const char *fmt, ...)
{
    long long now = (long long)(rcl__now_ns() / 1000000000ull);
    long long prev = atomic_load_explicit(last, memory_order_relaxed);
    if (prev == now || !atomic_compare_exchange_strong(last, &prev, now))
        return;
    va_list ap;
    va_start(ap, fmt);
    report_va(NULL, fmt, ap);
    va_end(ap);
}

/* fork() (fork.c): after the symbolizer, before the leaf locks of the
 * allocation paths (the depot, the slabs, the regions, the reserve). */
void rcl__report_atfork_prepare(void) { pthread_mutex_lock(&sink_lock); }
void rcl__report_atfork_parent(void) { pthread_mutex_unlock(&sink_lock); }

/* The other threads' calls are not in the child, and their waiting
 * setters neither: only this thread's calls are under way. */
void rcl__report_atfork_child(void)
{
    calls = NULL;
    for (struct delivery *d = delivering; d; d = d->outer)
        calls_add(d);
    pthread_cond_init(&sink_idle, NULL);
    pthread_mutex_unlock(&sink_lock);
}
