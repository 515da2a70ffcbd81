/* SPDX-License-Identifier: MIT */
/*
 * workqueue.c - worker threads that run each work item under the reclaim
 * context of the code that queued it, with a rescuer for forward progress.
 *
 * Context that travels (the "mm: add PF_MEMALLOC_NOFS" thread (linux-kernel,
 * April 2016)): a daemon that queues a request from a
 * NOFS section has said "reclaim must not enter the file system on behalf
 * of this". Handing the request to another thread must not lose that, so
 * rcl_queue_work() captures the queuer's context into the work item and the
 * worker adopts it around the call.
 *
 * Forward progress, as the kernel's workqueues (kernel/workqueue.c):
 *   - A worker about to start an item first makes sure an idle worker will
 *     remain (the kernel's may_start_working/manage_workers), up to
 *     max_workers, so queueing never allocates and creates no threads but
 *     for a queue left with none (threadless()).
 *   - When a worker cannot be created, or its start has not come back
 *     within WQ_MAYDAY_DELAY_NS (the kernel's MAYDAY_INITIAL_TIMEOUT: a
 *     start may wait for the memory the pending work frees), a queue made
 *     with RCL_WQ_MEM_RECLAIM "calls mayday": its rescuer thread, created
 *     with the queue, runs the pending items itself. The work a daemon
 *     needs to free memory therefore runs even when the process cannot get
 *     another thread. The kernel's rescuer never ends; one a work item
 *     ends here is replaced at once, or, when no thread can be made then,
 *     after the next item a worker runs, or at the queue's next mayday,
 *     whichever comes first.
 *
 * Flushing uses ordinals instead of per-item sequence numbers: items leave
 * the FIFO in the order they entered it, so "everything queued before the
 * flush" is "the first `queued` items to be dequeued", and it is done once
 * that many have been dequeued and no thread is still running one of them.
 *
 * A work item never runs beside itself (the kernel's non-reentrancy, Linux
 * 3.7: find_worker_executing_work()). One queued again while it runs stays
 * pending; the thread that takes it off the list and finds it running
 * elsewhere hands it, with its ordinal, to the thread running it, which runs
 * it next. Flushes see the handed-over ordinal as not yet finished.
 *
 * Locking: wq->lock protects everything in struct rcl_workqueue below it,
 * and each queued item's rcl_next and rcl_ctx. rcl_pending is an atomic
 * flag so that two queues cannot both take the same item.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define WQ_MAX_WORKERS 1024

enum wq_state { WQ_RUNNING, WQ_DRAINING, WQ_STOPPING };

struct wq_worker {
    struct rcl_workqueue *wq;
    pthread_t             th;
    unsigned long long    running;     /* ordinal of the item being run; 0: none */
    /* The item being run and its function, compared and never followed:
     * the function may free the item. */
    struct rcl_work      *current;
    void                (*current_fn)(struct rcl_work *);
    /* Queued again while `current` ran: this thread runs it next. Set with
     * no current, it is an orphan (the thread ended in the item) that any
     * thread of the queue takes. */
    struct rcl_work      *again;
    unsigned long long    again_ord;
    bool                  gone;        /* its thread ended in a work item, detached */
};

struct rcl_workqueue {
    char                  name[RCL_NAME_MAX];
    unsigned              max_workers;
    struct rcl_lock_class cls;         /* held by a thread running an item */
    char                  cls_name[RCL_NAME_MAX + 8];

    pthread_mutex_t       lock;
    pthread_cond_t        more;        /* workers: work queued, or stop */
    pthread_cond_t        rescue;      /* the rescuer: mayday, a start, or stop */
    pthread_cond_t        done;        /* flushers, destroy: an item finished */

    struct rcl_work      *head, **tail;
    unsigned long long    queued;      /* items ever queued */
    unsigned long long    dequeued;    /* items ever taken off the list */
    enum wq_state         state;
    unsigned              nr_workers;  /* slots used in workers[] */
    unsigned              nr_gone;     /* of those, free again: see worker_ended() */
    unsigned              nr_idle;     /* of the others, waiting for work */
    unsigned              nr_orphans;  /* `again` items whose thread ended */
    unsigned              nr_flushing; /* threads inside rcl_flush_workqueue() */
    unsigned              nr_reporting;      /* its threads in a report let go */
    bool                  creating;    /* someone is starting a worker */
    unsigned long long    create_began;      /* rcl__now_ns() when it began */
    bool                  mayday;      /* a worker could not be started */
    bool                  rescuer_timing;    /* in its timed wait for a start */
    bool                  has_rescuer;
    bool                  rescuer_lost;      /* ended, not replaced yet */
    bool                  rescuer_starting;  /* someone is replacing it */
    _Atomic long long     create_fail_report;
    _Atomic long long     rescuer_fail_report;
    struct wq_worker      rescuer;
    struct wq_worker     *workers;     /* [max_workers] */
    bool                  inherited;   /* made before a fork(), in the parent */
    struct rcl__fork_obj  fork;
};

/* The queue whose item this thread is running: lets a work item queue more
 * work on its own queue while that queue drains (the kernel's "chained"
 * work), and catches flush/destroy from inside the queue's own work. */
static __thread struct rcl_workqueue *current_wq;

/* The queue this thread is a worker or the rescuer of, for the reports it
 * makes between items (report_begin()). */
static __thread struct rcl_workqueue *serving_wq;

/* Reports this thread is making with a queue's lock let go (a worker or
 * rescuer that could not be started). A report function may end the
 * thread there (pthread_exit(), a cancel it lets in): a flush unwinding
 * out of one finds the count above what it was at its start, and takes
 * the lock back for its cleanup (flush_end()). */
static __thread unsigned reports_let_go;

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

static void name_thread(const struct rcl_workqueue *wq, const char *prefix)
{
    char buf[16];                   /* the kernel's limit for a thread name */
    size_t n = strlen(prefix);

    /* Cut to fit by hand: snprintf would be flagged for the truncation
     * that is the point here. */
    memcpy(buf, prefix, n);
    size_t room = sizeof(buf) - 1 - n;
    size_t len = strnlen(wq->name, room);
    memcpy(buf + n, wq->name, len);
    buf[n + len] = '\0';
    pthread_setname_np(pthread_self(), buf);
}

static void *worker_main(void *arg);
static void *rescuer_main(void *arg);
static void rescuer_replace(struct rcl_workqueue *wq);
static void create_refused(struct rcl_workqueue *wq, int err, unsigned running,
                           bool rescued);

/*
 * A work item forked, and in the child returned to the queue's thread,
 * the one the child has of the queue. The queue runs nothing there (the
 * parent runs its items), so the thread ends instead of running them a
 * second time or waiting for ever; the child ends with it unless it
 * started threads of its own.
 */
static void forked_in_work(const struct rcl_workqueue *wq)
{
    if (unlikely(wq->inherited))
        rcl__report("workqueue %s: a work item forked and returned in the child; the "
                    "queue runs nothing there, and the thread that ran the item ends",
                    wq->name);
}

/*
 * A report about the queue's threads, made with its lock let go. Made on
 * one of them, that thread is the one to run the queue's next item, or
 * among them: a flush or destroy of the queue from the report function
 * would wait for it, for ever where no other thread can be started. So it
 * is made as from the queue's own item, and such a call refused and
 * reported as one from the item is.
 */
static struct rcl_workqueue *report_begin(struct rcl_workqueue *wq)
{
    struct rcl_workqueue *was = current_wq;

    if (serving_wq == wq)
        current_wq = wq;
    return was;
}

static void report_end(struct rcl_workqueue *was)
{
    current_wq = was;
}

/* Around such a report, made once the queue's state no longer says the
 * start is under way: the report function may flush the queue, or end
 * its thread. On one of the queue's own threads it is made as from the
 * queue's own item (report_begin()). */
static struct rcl_workqueue *report_let_go(struct rcl_workqueue *wq)
{
    if (serving_wq == wq)
        wq->nr_reporting++;
    pthread_mutex_unlock(&wq->lock);
    reports_let_go++;
    return report_begin(wq);
}

/* One of the queue's threads is back from its report: a destroy may be
 * waiting for it, for the thread takes the lock back and goes on with the
 * queue (a worker that ended in its item, detached, is joined by no one). */
static void report_back(struct rcl_workqueue *wq)
{
    rcl__assert_held(&wq->lock);
    rcl__assert(wq->nr_reporting > 0);
    if (--wq->nr_reporting == 0)
        pthread_cond_broadcast(&wq->done);
}

static void report_taken_back(struct rcl_workqueue *wq, struct rcl_workqueue *was)
{
    report_end(was);
    reports_let_go--;
    pthread_mutex_lock(&wq->lock);
    if (serving_wq == wq)
        report_back(wq);
}

static struct wq_worker *free_slot(struct rcl_workqueue *wq)
{
    if (!wq->nr_gone)
        return &wq->workers[wq->nr_workers];
    for (unsigned i = 0;; i++)
        if (wq->workers[i].gone)
            return &wq->workers[i];
}

/* The slot of a worker being started joins the workers; `creating` keeps
 * every other start out until it is known whether the thread runs. */
static void slot_claim(struct rcl_workqueue *wq, struct wq_worker *w, bool reused)
{
    if (reused) {
        w->gone = false;
        wq->nr_gone--;
    } else {
        rcl__assert(w == &wq->workers[wq->nr_workers]);
        wq->nr_workers++;
    }
}

static void slot_unclaim(struct rcl_workqueue *wq, struct wq_worker *w, bool reused)
{
    if (reused) {
        w->gone = true;
        wq->nr_gone++;
    } else {
        rcl__assert(w == &wq->workers[wq->nr_workers - 1]);
        wq->nr_workers--;
    }
}

/*
 * Start one more worker; wq->lock held, dropped meanwhile. The new worker
 * is counted idle before it runs, as the kernel's create_worker() does, so
 * that its creator does not at once try to make another - and before the
 * lock is let go: the worker may be waiting for work before its creator
 * has the lock back, and work queued meanwhile must wake it. Never in a
 * child forked by a work item: a worker there would run the items the
 * parent runs, then keep the child alive waiting for more.
 */
static void create_worker(struct rcl_workqueue *wq)
{
    unsigned running = wq->nr_workers - wq->nr_gone;

    if (wq->creating || wq->state == WQ_STOPPING || running >= wq->max_workers ||
        unlikely(wq->inherited))
        return;
    wq->creating = true;
    wq->create_began = rcl__now_ns();
    /* The rescuer times the start (rescuer_wait()). One timing another
     * start already is not woken: its wait ends by the earlier start's
     * deadline, and it then waits on for this one's. */
    bool time_it = wq->has_rescuer && !wq->rescuer_timing;
    struct wq_worker *w = free_slot(wq);   /* creating: no other thread takes it */
    bool reused = w->gone, rescued = wq->has_rescuer;
    w->wq = wq;
    w->running = 0;
    /* Counted before it runs, since it may take an item before its start
     * comes back: a flush, and a requeue looking for the thread running
     * its item, must see the item it runs. */
    slot_claim(wq, w, reused);
    wq->nr_idle++;
    pthread_mutex_unlock(&wq->lock);
    /* After the unlock, or the rescuer wakes only to wait for the lock;
     * `creating` keeps the queue, and its rescuer, from going meanwhile. */
    if (time_it)
        pthread_cond_signal(&wq->rescue);
    int err = rcl__thread_start(&w->th, worker_main, w, "worker");
    pthread_mutex_lock(&wq->lock);
    wq->creating = false;
    if (err) {
        wq->nr_idle--;
        slot_unclaim(wq, w, reused);
        create_refused(wq, err, running, rescued);
        return;
    }
    wq->mayday = false;
    pthread_cond_broadcast(&wq->done);
    /* The new worker may have taken an item already, and a worker that
     * found this start under way as it took its own let it stand for the
     * idle worker it keeps: nobody idle now, and nobody else to start
     * one. Bounded by max_workers. */
    if (wq->nr_idle == 0)
        create_worker(wq);
}

/*
 * A worker's start was refused; wq->lock held, dropped meanwhile. The
 * report is made with the lock let go: the report function may queue
 * work, on this queue too, or flush it, or end its thread. So not while
 * `creating` says a start is under way, which a destroy waits out (one
 * from the report function would wait for ever, and so would every
 * destroy once a report function had ended its thread there); and before
 * the rescuer is called, which would otherwise take the item its caller,
 * a worker, is about to run.
 */
static void create_refused(struct rcl_workqueue *wq, int err, unsigned running, bool rescued)
{
    pthread_cond_broadcast(&wq->done);
    struct rcl_workqueue *was = report_let_go(wq);
    rcl__report_limited(&wq->create_fail_report,
                        "workqueue %s: cannot start a worker (%s); %u running%s",
                        wq->name, strerror(err), running,
                        rescued ? ", the rescuer steps in" : "");
    report_taken_back(wq, was);
    /* The mayday a rescuer that ended was to answer: another try. */
    if (wq->rescuer_lost)
        rescuer_replace(wq);
    if (wq->has_rescuer) {
        wq->mayday = true;
        pthread_cond_signal(&wq->rescue);
    }
    pthread_cond_broadcast(&wq->done);
}

/*
 * Start the rescuer again, in the slot of the one that ended; wq->lock
 * held, dropped meanwhile. The slot may still hold that one's re-run, an
 * orphan the new rescuer takes first (take_orphan()). Not once the queue
 * is stopping: its destroy joins the rescuer it finds then; nor in a
 * child forked by a work item, where the queue runs nothing.
 */
static void rescuer_replace(struct rcl_workqueue *wq)
{
    rcl__assert_held(&wq->lock);
    rcl__assert(!wq->has_rescuer);
    if (wq->rescuer_starting || wq->state == WQ_STOPPING || unlikely(wq->inherited))
        return;
    wq->rescuer_starting = true;
    pthread_mutex_unlock(&wq->lock);
    int err = rcl__thread_start(&wq->rescuer.th, rescuer_main, &wq->rescuer, "rescuer");
    pthread_mutex_lock(&wq->lock);
    wq->rescuer_starting = false;
    if (!err) {
        wq->has_rescuer = true;
        wq->rescuer_lost = false;
        if (wq->mayday)
            pthread_cond_signal(&wq->rescue);
    }
    pthread_cond_broadcast(&wq->done);
    if (!err)
        return;
    /* As create_worker()'s report, once `rescuer_starting` is cleared. */
    struct rcl_workqueue *was = report_let_go(wq);
    rcl__report_limited(&wq->rescuer_fail_report,
                        "workqueue %s: cannot start a new rescuer (%s); it is tried "
                        "again after each item a worker runs and at the queue's "
                        "next mayday", wq->name, strerror(err));
    report_taken_back(wq, was);
}

/* ------------------------------------------------------------------------ */
/* Running one item                                                          */
/* ------------------------------------------------------------------------ */

/* A work item's run, as the thread's end finds it if fn ends the thread,
 * or a report function a report about the item is made to, once it has
 * returned. Set before the cleanup's setjmp: what changes after it is in
 * item_phase, which the handler reads from memory (a local set after a
 * setjmp may read as it was before it). */
struct running_item {
    struct rcl_workqueue *wq;
    struct wq_worker     *self;
    struct rcl_work      *w;
    struct rcl_context    saved;
    unsigned              floor;      /* the domain floor before the item */
    unsigned              adopts;     /* the adopt depth the item was called at */
    unsigned              reports_let_go;   /* before the item */
    bool                  check;      /* the checker holds the queue's class */
};

/* Where this thread's work item is: one at a time on a queue's thread. */
enum item_phase {
    ITEM_RUNNING,       /* fn called */
    ITEM_RETURNED,      /* the queue's class released, reports under way */
    ITEM_RESTORING,     /* the queuer's context being taken off */
};
static __thread enum item_phase item_phase;

static void worker_ended(struct rcl_workqueue *wq, struct wq_worker *self);

/*
 * The work function called pthread_exit(), or a report function did in a
 * report about the item made once it had returned (its context left
 * changed). The thread is the queue's: it leaves the lock checker and the
 * queuer's context as a return would, and the queue as a worker that
 * never comes back - its item finished for the flushes, its slot free for
 * another worker. The report function that ended it has had its report.
 */
static void item_ended_thread(void *arg)
{
    struct running_item *r = arg;
    struct rcl_workqueue *wq = r->wq;

    /* Ended in a report made with another queue's lock let go (the item
     * queued work there): that is behind the thread now, and the thread's
     * own end is not to be taken for one between items. */
    reports_let_go = r->reports_let_go;
    if (item_phase == ITEM_RUNNING && r->check)
        rcl_lock_release(&wq->cls);
    if (item_phase != ITEM_RESTORING) {
        rcl__domain_floor_put(r->floor);
        rcl__adopts_forget(r->adopts);
        rcl_context_restore(&r->saved);
    }
    /* Still the queue's item for the report function: a flush or destroy
     * it makes would wait for this very item. */
    if (item_phase == ITEM_RUNNING)
        rcl__report("workqueue %s: work item %p ended its thread (pthread_exit); another "
                    "%s takes its place", wq->name, (void *)r->w,
                    r->self == &wq->rescuer ? "rescuer" : "worker");
    current_wq = NULL;
    pthread_mutex_lock(&wq->lock);
    worker_ended(wq, r->self);
    pthread_mutex_unlock(&wq->lock);
}

static void run_work(struct rcl_workqueue *wq, struct wq_worker *self, struct rcl_work *w,
                     void (*fn)(struct rcl_work *), const struct rcl_context *ctx)
{
    struct running_item r = { .wq = wq, .self = self, .w = w, .check = rcl__checking(),
                              .reports_let_go = reports_let_go };

    rcl_context_adopt(ctx, &r.saved);
    unsigned scope = rcl_scope_current();
    void *journal = rcl_journal_info();

    current_wq = wq;
    if (r.check)
        rcl_lock_acquire(&wq->cls);
    /* The queuer's domains, adopted, are not the item's to take off with
     * a restore of its own (domain.c). */
    r.floor = rcl__domain_floor_raise();
    r.adopts = rcl__adopts_mark();
    item_phase = ITEM_RUNNING;
    pthread_cleanup_push(item_ended_thread, &r);
    fn(w);                                  /* w may be gone from here on */
    item_phase = ITEM_RETURNED;
    rcl__domain_floor_put(r.floor);
    if (r.check)
        rcl_lock_release(&wq->cls);

    /* A work item that leaves a scope, an adopt, a journal cookie or a
     * domain behind would restrict (or unrestrict) every later item on
     * this thread. Say so, then put the thread back as it was; the restore
     * reports domains left entered itself, as it does for every adopter. Both reports are
     * still the item's (current_wq): a flush or destroy of the queue from
     * the report function would wait for the item it is in. And one that
     * ends the thread there ends it as the item would have (handled
     * above): the run left under way would hold every flush for ever. */
    unsigned now = rcl_scope_current(), open = rcl__adopts_forget(r.adopts);
    if (open)
        rcl__report("workqueue %s: work item %p returned with %u context adopt(s) never "
                    "restored; restored", wq->name, (void *)w, open);
    else if (now != scope || rcl_journal_info() != journal)
        rcl__report("workqueue %s: work item %p returned with its reclaim context changed "
                    "(scope %#x -> %#x); restored", wq->name, (void *)w, scope, now);
    item_phase = ITEM_RESTORING;
    rcl_context_restore(&r.saved);
    pthread_cleanup_pop(0);
    current_wq = NULL;
}

/* Work to take: queued items, or the re-runs of threads that ended. */
static bool has_work(const struct rcl_workqueue *wq)
{
    return wq->head || wq->nr_orphans;
}

static struct wq_worker *slot(struct rcl_workqueue *wq, unsigned i)
{
    return i < wq->nr_workers ? &wq->workers[i] : &wq->rescuer;
}

/* The thread running w now, if any; the kernel matches the function too,
 * so that an item freed and its memory reused as another is not held back
 * behind the old one. */
static struct wq_worker *executing(struct rcl_workqueue *wq, const struct rcl_work *w,
                                   void (*fn)(struct rcl_work *))
{
    for (unsigned i = 0; i <= wq->nr_workers; i++) {
        struct wq_worker *o = slot(wq, i);
        if (o->current == w && o->current_fn == fn)
            return o;
    }
    return NULL;
}

/* The taker's own slot first: a thread started in the slot of one that
 * ended must not run another item with that one's re-run still there,
 * which the end of its run would take as a re-run of its own. */
static struct rcl_work *take_orphan(struct rcl_workqueue *wq, struct wq_worker *self,
                                    unsigned long long *ord)
{
    for (unsigned i = 0;; i++) {
        struct wq_worker *o = i ? slot(wq, i - 1) : self;
        if (o->again && !o->current) {
            struct rcl_work *w = o->again;
            *ord = o->again_ord;
            o->again = NULL;
            wq->nr_orphans--;
            return w;
        }
        rcl__assert(i <= wq->nr_workers);
    }
}

/*
 * Run w, then what was queued again while it ran; wq->lock held, dropped
 * meanwhile. The re-run stays on this thread so that it starts only once
 * the run before it has returned.
 */
static void run_items(struct rcl_workqueue *wq, struct wq_worker *self, struct rcl_work *w,
                      unsigned long long ord)
{
    for (;;) {
        self->running = ord;
        self->current = w;
        self->current_fn = w->fn;

        /* Copy what we need before clearing pending: from then on the item
         * may be queued again (by its own function, typically), which
         * rewrites its context. */
        struct rcl_context ctx = w->rcl_ctx;
        void (*fn)(struct rcl_work *) = w->fn;
        __atomic_store_n(&w->rcl_pending, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&wq->lock);

        run_work(wq, self, w, fn, &ctx);

        pthread_mutex_lock(&wq->lock);
        self->running = 0;
        self->current = NULL;
        pthread_cond_broadcast(&wq->done);
        /* In a child forked by the item, the parent runs the re-run. */
        if (!self->again || unlikely(wq->inherited))
            return;
        w = self->again;            /* pending: its owner keeps it alive */
        ord = self->again_ord;
        self->again = NULL;
    }
}

/* Take the next item and run it, or hand it to the thread running it;
 * wq->lock held, dropped meanwhile. */
static void process_one(struct rcl_workqueue *wq, struct wq_worker *self)
{
    unsigned long long ord;
    struct rcl_work *w;

    if (wq->nr_orphans) {
        w = take_orphan(wq, self, &ord);
    } else {
        w = wq->head;
        wq->head = w->rcl_next;
        if (!wq->head)
            wq->tail = &wq->head;
        w->rcl_next = NULL;
        ord = ++wq->dequeued;

        struct wq_worker *busy = executing(wq, w, w->fn);
        if (busy) {
            /* Pending until busy takes it: nobody can queue it a third
             * time meanwhile, so one slot is enough. */
            rcl__assert(!busy->again);
            busy->again = w;
            busy->again_ord = ord;
            return;
        }
    }
    run_items(wq, self, w, ord);
}

/* ------------------------------------------------------------------------ */
/* Workers and the rescuer                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A report function that ended one of the queue's threads between items,
 * in the report of a worker or rescuer it could not start (create_refused(),
 * rescuer_replace()), made with the lock let go: the thread leaves the
 * queue as one a work item ended does, or its slot stays taken by a thread
 * that is gone - counted, so that none is started in its place, its work
 * waited for by every flush for ever; and a rescuer's, never replaced.
 * One ended in a work item has been through item_ended_thread() already,
 * which puts back the count of reports as it was before the item: its
 * slot, and the queue, may be gone by now. One whose queue is stopping
 * meanwhile is left for the destroy to join, which would otherwise race
 * with the thread's own detach.
 */
static void thread_ended_in_report(void *arg)
{
    if (!reports_let_go)
        return;

    struct wq_worker *self = arg;
    struct rcl_workqueue *wq = self->wq;

    reports_let_go = 0;
    current_wq = NULL;
    pthread_mutex_lock(&wq->lock);
    report_back(wq);
    if (wq->state != WQ_STOPPING)
        worker_ended(wq, self);
    pthread_mutex_unlock(&wq->lock);
}

/*
 * The queue's threads are not the program's to cancel: one cancelled in
 * its wait for work would end holding the queue's lock. A work item that
 * ends its thread with pthread_exit() is another matter; see
 * item_ended_thread(), and thread_ended_in_report() for a report function.
 */
static void *worker_main(void *arg)
{
    struct wq_worker *self = arg;
    struct rcl_workqueue *wq = self->wq;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    name_thread(wq, "rcl-wq/");
    serving_wq = wq;
    pthread_cleanup_push(thread_ended_in_report, self);
    pthread_mutex_lock(&wq->lock);
    /* Invariant: at the top of the loop this worker is counted idle. */
    for (;;) {
        while (!has_work(wq) && wq->state != WQ_STOPPING)
            pthread_cond_wait(&wq->more, &wq->lock);
        if (!has_work(wq))
            break;
        wq->nr_idle--;
        /* Leave someone idle behind to take the next item; if that fails
         * the rescuer (when there is one) has been called. */
        if (wq->nr_idle == 0)
            create_worker(wq);
        if (has_work(wq))
            process_one(wq, self);
        /* A rescuer that could not be replaced when it ended is tried
         * again after each item while threads may be started, so that it
         * is there before it is needed: tried only at the next mayday, it
         * was tried when none could be. Not yet idle: a report function
         * that ends this thread there ends a busy worker. */
        if (unlikely(wq->rescuer_lost))
            rescuer_replace(wq);
        wq->nr_idle++;
        if (unlikely(wq->inherited))
            break;
    }
    wq->nr_idle--;
    pthread_mutex_unlock(&wq->lock);
    pthread_cleanup_pop(0);
    forked_in_work(wq);
    return NULL;
}

/*
 * A worker's thread ended inside a work item; wq->lock held. Nobody will
 * join it, so it is detached and its slot taken by the next worker
 * started; it was busy, not idle, so the queue keeps an idle worker by
 * starting one now if it has none. A rescuer that ends is replaced now:
 * the queue's forward progress rests on it. A mayday raised stays raised
 * for the new one.
 */
static void worker_ended(struct rcl_workqueue *wq, struct wq_worker *self)
{
    rcl__assert_held(&wq->lock);
    /* Between items, a re-run in the slot is an orphan counted already. */
    bool rerun = self->again && self->current;

    self->running = 0;
    self->current = NULL;
    if (rerun) {
        /* Its run before has ended with the thread: any thread may run it. */
        wq->nr_orphans++;
        if (wq->nr_idle)
            pthread_cond_signal(&wq->more);
        else if (wq->mayday)
            pthread_cond_signal(&wq->rescue);
    }
    pthread_detach(pthread_self());
    if (self == &wq->rescuer) {
        wq->has_rescuer = false;
        wq->rescuer_lost = true;
        rescuer_replace(wq);
    } else {
        self->gone = true;
        wq->nr_gone++;
        if (wq->nr_idle == 0)
            create_worker(wq);
    }
    pthread_cond_broadcast(&wq->done);
}

/* How long a worker's start may take before the rescuer steps in: the
 * kernel's MAYDAY_INITIAL_TIMEOUT. */
#define WQ_MAYDAY_DELAY_NS 10000000ull

/* A worker's start under way for that long, and nobody idle but the worker
 * being started (counted idle: create_worker()). */
static bool start_stalled(const struct rcl_workqueue *wq)
{
    return wq->creating && wq->nr_idle == 1 &&
           rcl__now_ns() - wq->create_began >= WQ_MAYDAY_DELAY_NS;
}

/* The rescuer runs items only while no worker can: mayday raised (a start
 * refused) and nobody idle, or a start stalled. Each time, it first
 * retries starting a worker, so that the queue recovers its concurrency
 * once threads can be made again. */
static bool rescuer_needed(const struct rcl_workqueue *wq)
{
    if (!has_work(wq))
        return false;
    return wq->creating ? start_stalled(wq) : wq->mayday && wq->nr_idle == 0;
}

/*
 * While a start is under way the rescuer looks again every delay: whether
 * it has stalled with work pending depends on the clock, and the starting
 * thread, inside the start, cannot say when it has. That wait is the
 * kernel's mayday timer, armed by the start's signal; where the kernel
 * deletes its timer when the start returns, a wait here ends only by
 * waking its thread, so the start's end wakes nobody and the deadline
 * does it, once for every start begun before it. Otherwise the rescuer
 * sleeps until called: an idle queue never wakes it.
 */
static void rescuer_wait(struct rcl_workqueue *wq)
{
    if (!wq->creating) {
        pthread_cond_wait(&wq->rescue, &wq->lock);
        return;
    }
    unsigned long long waited = rcl__now_ns() - wq->create_began;
    struct timespec until = rcl__deadline_after_ns(waited < WQ_MAYDAY_DELAY_NS
                                                   ? WQ_MAYDAY_DELAY_NS - waited
                                                   : WQ_MAYDAY_DELAY_NS);
    wq->rescuer_timing = true;
    pthread_cond_timedwait(&wq->rescue, &wq->lock, &until);
    wq->rescuer_timing = false;
}

static void *rescuer_main(void *arg)
{
    struct wq_worker *self = arg;
    struct rcl_workqueue *wq = self->wq;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    name_thread(wq, "rcl-rsc/");
    serving_wq = wq;
    pthread_cleanup_push(thread_ended_in_report, self);
    pthread_mutex_lock(&wq->lock);
    for (;;) {
        while (!rescuer_needed(wq) && wq->state != WQ_STOPPING)
            rescuer_wait(wq);
        if (!rescuer_needed(wq))
            break;
        create_worker(wq);
        if (rescuer_needed(wq))
            process_one(wq, self);
        if (unlikely(wq->inherited))
            break;
    }
    pthread_mutex_unlock(&wq->lock);
    pthread_cleanup_pop(0);
    forked_in_work(wq);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The API                                                                   */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* A queue in a forked child                                                 */
/* ------------------------------------------------------------------------ */

/*
 * The child has none of the queue's threads, and starting new ones for a
 * queue whose items the parent is running too would run them twice. So an
 * inherited queue runs nothing: queueing is refused (-ECHILD), a flush
 * returns at once, and destroy frees the child's copy, dropping what was
 * queued. All reported.
 */
static void wq_free(struct rcl_workqueue *wq);

static void wq_atfork_child(struct rcl__fork_obj *o)
{
    struct rcl_workqueue *wq = (struct rcl_workqueue *)(void *)((char *)o -
                               offsetof(struct rcl_workqueue, fork));
    pthread_cond_init(&wq->more, NULL);
    rcl__cond_init_monotonic(&wq->rescue);
    rcl__cond_init_monotonic(&wq->done);
    wq->inherited = true;
    wq->rescuer_timing = false;
    /* Another thread's destroy that had not yet stopped the queue has
     * freed nothing of it: the child's copy is whole, and the child's
     * destroy frees it. One past the drain may be freeing it already
     * (its lock class, its slots): that copy stays. */
    if (rcl__fork_claimed_by_gone(o) && wq->state != WQ_STOPPING)
        rcl__fork_unclaim_gone(o);
}

/* The queued items are not touched: they may live on the stack of a
 * thread the child does not have, which glibc recycles for the child's
 * own threads. */
static void wq_destroy_inherited(struct rcl_workqueue *wq)
{
    pthread_mutex_lock(&wq->lock);
    unsigned long long dropped = wq->queued - wq->dequeued;
    for (unsigned i = 0; i <= wq->nr_workers; i++)
        dropped += slot(wq, i)->again != NULL;
    pthread_mutex_unlock(&wq->lock);
    /* Reported once the queue is freed, from a copy of its name: a report
     * function that ends its thread would otherwise leave it claimed by a
     * destroy that never comes back, and never freed. */
    char name[sizeof(wq->name)];
    memcpy(name, wq->name, sizeof(name));
    wq_free(wq);
    if (dropped)
        rcl__report("rcl_workqueue_destroy(%s): a queue inherited through fork() runs "
                    "nothing in the child; %llu queued item(s) dropped, still marked "
                    "pending", name, dropped);
}

void rcl_work_init(struct rcl_work *w, void (*fn)(struct rcl_work *w))
{
    if (!w)
        return;
    memset(w, 0, sizeof(*w));
    w->fn = fn;
}

/* Every thread that ran the queue's items is gone: nobody holds its lock
 * class, whose node in the checker's graph goes with the queue (the
 * kernel's destroy_workqueue() unregisters its lockdep key). */
static void wq_free(struct rcl_workqueue *wq)
{
    rcl_lock_class_unregister(&wq->cls);
    rcl__fork_untrack(&wq->fork);
    pthread_cond_destroy(&wq->done);
    pthread_cond_destroy(&wq->rescue);
    pthread_cond_destroy(&wq->more);
    pthread_mutex_destroy(&wq->lock);
    rcl_free(wq->workers);
    rcl_free(wq);
}

static void join_all(struct rcl_workqueue *wq)
{
    for (unsigned i = 0; i < wq->nr_workers; i++)
        if (!wq->workers[i].gone)
            pthread_join(wq->workers[i].th, NULL);
    if (wq->has_rescuer)
        pthread_join(wq->rescuer.th, NULL);
}

struct rcl_workqueue *rcl_workqueue_create(const char *name, unsigned max_workers,
                                           unsigned flags)
{
    if (!name || (flags & ~RCL_WQ_MEM_RECLAIM) || max_workers > WQ_MAX_WORKERS) {
        rcl__report("rcl_workqueue_create(%s, %u, %#x): %s; no queue made", name ? name : "NULL",
                    max_workers, flags, !name ? "NULL name"
                    : (flags & ~RCL_WQ_MEM_RECLAIM) ? "unknown flags" : "more than 1024 workers");
        errno = EINVAL;
        return NULL;
    }
    if (max_workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        max_workers = n > 0 ? (unsigned)(n < WQ_MAX_WORKERS ? n : WQ_MAX_WORKERS) : 1;
    }

    struct rcl_workqueue *wq = rcl_calloc(1, sizeof(*wq), RCL_DEFAULT | RCL__NOWARN);
    if (!wq) {
        errno = ENOMEM;
        return NULL;
    }
    wq->workers = rcl_calloc(max_workers, sizeof(*wq->workers), RCL_DEFAULT | RCL__NOWARN);
    if (!wq->workers) {
        rcl_free(wq);
        errno = ENOMEM;
        return NULL;
    }
    snprintf(wq->name, sizeof(wq->name), "%s", name);
    snprintf(wq->cls_name, sizeof(wq->cls_name), "wq:%s", wq->name);
    wq->cls.name = wq->cls_name;
    wq->max_workers = max_workers;
    wq->tail = &wq->head;
    pthread_mutex_init(&wq->lock, NULL);
    pthread_cond_init(&wq->more, NULL);
    rcl__cond_init_monotonic(&wq->rescue);
    rcl__cond_init_monotonic(&wq->done);
    rcl__fork_track(&wq->fork, &wq->lock, wq_atfork_child);

    /* The rescuer exists before it is needed: when it is needed, creating
     * a thread is exactly what may not work. */
    if (flags & RCL_WQ_MEM_RECLAIM) {
        wq->rescuer.wq = wq;
        int err = rcl__thread_start(&wq->rescuer.th, rescuer_main, &wq->rescuer, "rescuer");
        if (err) {
            wq_free(wq);
            errno = err;
            return NULL;
        }
        wq->has_rescuer = true;
    }

    /* The first idle worker. Failing here is fatal only without a rescuer;
     * with one, create_worker() has raised mayday and the rescuer serves
     * the queue until a worker can be started. */
    pthread_mutex_lock(&wq->lock);
    create_worker(wq);
    bool ok = wq->nr_workers > 0 || wq->has_rescuer;
    pthread_mutex_unlock(&wq->lock);
    if (!ok) {
        wq_free(wq);
        errno = EAGAIN;
        return NULL;
    }
    return wq;
}

/*
 * No worker and no rescuer: each ended in a work item, and no thread could
 * be started to replace them then. Nothing else would ever start one, so
 * the item queued now would wait for ever; the kernel's pool manager makes
 * a worker for a pool that has work and nobody idle, and so does this, only
 * here. A start in progress counts as a thread: it is on its way.
 */
static bool threadless(struct rcl_workqueue *wq)
{
    rcl__assert_held(&wq->lock);
    return wq->nr_workers == wq->nr_gone && !wq->has_rescuer && !wq->creating &&
           !wq->rescuer_starting;
}

int rcl_queue_work(struct rcl_workqueue *wq, struct rcl_work *w)
{
    if (!wq || !w || !w->fn) {
        rcl__report("rcl_queue_work(%p, %p): NULL %s; not queued", (void *)wq, (void *)w,
                    !wq ? "queue" : !w ? "work" : "work function");
        return -EINVAL;
    }
    if (unlikely(wq->inherited)) {
        rcl__report("rcl_queue_work(%s): the queue was created before fork() and has no "
                    "threads in this child; not queued (create a new queue here)", wq->name);
        return -ECHILD;
    }

    pthread_mutex_lock(&wq->lock);
    if (wq->state == WQ_STOPPING || (wq->state == WQ_DRAINING && current_wq != wq)) {
        pthread_mutex_unlock(&wq->lock);
        return -ESHUTDOWN;
    }
    int expected = 0;
    if (!__atomic_compare_exchange_n(&w->rcl_pending, &expected, 1, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        pthread_mutex_unlock(&wq->lock);
        return -EBUSY;
    }
    rcl_context_capture(&w->rcl_ctx);
    w->rcl_next = NULL;
    *wq->tail = w;
    wq->tail = &w->rcl_next;
    wq->queued++;
    if (unlikely(threadless(wq)))
        create_worker(wq);
    if (wq->nr_idle)
        pthread_cond_signal(&wq->more);
    else if (wq->mayday)
        pthread_cond_signal(&wq->rescue);
    pthread_mutex_unlock(&wq->lock);
    return 0;
}

/* How long a flush or destroy waits on a queue with work and no thread
 * before it tries to start a worker again: the kernel's CREATE_COOLDOWN,
 * the pause between a pool manager's tries. */
#define WQ_CREATE_COOLDOWN_NS 1000000000ull

/*
 * Wait for an item to finish, for a flush or destroy; wq->lock held. A
 * queue left with no thread and work on it (threadless()) gets nothing
 * done unless someone starts a worker, and the queueing that tried last
 * may have been the last queueing: the waiter tries, and while none can
 * be started tries again at every cooldown.
 */
static void wait_done(struct rcl_workqueue *wq)
{
    if (likely(!has_work(wq) || !threadless(wq))) {
        pthread_cond_wait(&wq->done, &wq->lock);
        return;
    }
    create_worker(wq);
    if (!threadless(wq))
        return;
    struct timespec until = rcl__deadline_after_ns(WQ_CREATE_COOLDOWN_NS);
    pthread_cond_timedwait(&wq->done, &wq->lock, &until);
}

/* Everything up to ordinal `upto` has been dequeued and finished. A start
 * under way is not waited for, as the kernel's flush waits for work, never
 * for a worker's creation: under pressure the start may wait for memory
 * that the flush's caller frees once it returns. */
static bool flushed(const struct rcl_workqueue *wq, unsigned long long upto)
{
    if (wq->dequeued < upto)
        return false;
    for (unsigned i = 0; i <= wq->nr_workers; i++) {
        const struct wq_worker *o = i < wq->nr_workers ? &wq->workers[i] : &wq->rescuer;
        unsigned long long r = o->running;
        if ((r && r <= upto) || (o->again && o->again_ord <= upto))
            return false;
    }
    return true;
}

/* A thread is being started for the queue, one its destroy must join and
 * whose start refers to the queue, or one of its threads is in a report
 * with the lock let go, and will take it back. */
static bool starting(const struct rcl_workqueue *wq)
{
    return wq->creating || wq->rescuer_starting || wq->nr_reporting;
}

/* Waiting for the queue's work is, for the lock checker, taking the lock
 * its work runs under (the kernel annotates flush_work the same way). */
static void annotate_wait(struct rcl_workqueue *wq)
{
    if (rcl__checking()) {
        rcl_lock_acquire(&wq->cls);
        rcl_lock_release(&wq->cls);
    }
}

struct flush_state {
    struct rcl_workqueue *wq;
    unsigned              reports_let_go;   /* at the flush's start */
};

/* A flush waiting when a destroy begins wakes with it, once the queue is
 * drained, and still has to take the queue's lock to return: the destroy
 * frees the queue only after every such flush has let go of it. A flush
 * whose thread ended in a report made with the lock let go (a worker it
 * could not start) takes the lock back first. */
static void flush_end(void *arg)
{
    const struct flush_state *st = arg;
    struct rcl_workqueue *wq = st->wq;

    if (unlikely(reports_let_go != st->reports_let_go)) {
        reports_let_go = st->reports_let_go;
        pthread_mutex_lock(&wq->lock);
    }
    rcl__assert_held(&wq->lock);
    rcl__assert(wq->nr_flushing > 0);
    if (--wq->nr_flushing == 0 && wq->state != WQ_RUNNING)
        pthread_cond_broadcast(&wq->done);
    pthread_mutex_unlock(&wq->lock);
}

void rcl_flush_workqueue(struct rcl_workqueue *wq)
{
    if (!wq) {
        rcl__report("rcl_flush_workqueue: NULL workqueue");
        return;
    }
    if (current_wq == wq) {
        rcl__report("rcl_flush_workqueue(%s): called from the queue's own work item, "
                    "which would wait for itself; not flushed", wq->name);
        return;
    }
    if (wq->inherited) {
        rcl__report("rcl_flush_workqueue(%s): the queue was created before fork() and "
                    "runs nothing in this child; not flushed", wq->name);
        return;
    }
    struct flush_state st = { .wq = wq, .reports_let_go = reports_let_go };

    annotate_wait(wq);
    pthread_mutex_lock(&wq->lock);
    wq->nr_flushing++;
    /* Cancellable, as a long wait should be; the queue is left unlocked
     * and its destroy, if one waits, told. */
    pthread_cleanup_push(flush_end, &st);
    unsigned long long upto = wq->queued;
    while (!flushed(wq, upto))
        wait_done(wq);
    pthread_cleanup_pop(1);
}

static void wq_destroy_running(struct rcl_workqueue *wq);

void rcl_workqueue_destroy(struct rcl_workqueue *wq)
{
    if (!wq)
        return;
    if (current_wq == wq) {
        rcl__report("rcl_workqueue_destroy(%s): called from the queue's own work item; "
                    "refused", wq->name);
        return;
    }
    if (!rcl__fork_claim(&wq->fork)) {
        rcl__report("rcl_workqueue_destroy(%p): not a live queue (destroyed already, "
                    "being destroyed, or never created); left alone", (void *)wq);
        return;
    }
    if (wq->inherited) {
        wq_destroy_inherited(wq);
        return;
    }
    /* Not cancellable: a destroy cut short would leave a queue that
     * refuses work and is never freed. */
    int cancel = rcl__nocancel_begin();
    wq_destroy_running(wq);
    rcl__nocancel_end(cancel);
}

struct destroy_state {
    struct rcl_workqueue *wq;
    unsigned              reports_let_go;   /* at the destroy's start */
};

/*
 * A destroy is not cancellable, but a report function may end its thread
 * in a report it makes: the lock checker's before it drains, or that of a
 * worker it could not start while it drains. The queue is given back as
 * it was before the destroy, running and no longer claimed: left
 * draining and claimed, it refused work for good, and was never freed,
 * every later destroy refused.
 */
static void destroy_ended(void *arg)
{
    struct destroy_state *st = arg;
    struct rcl_workqueue *wq = st->wq;

    /* The checker's report finds the queue as it was; those made while it
     * drains are made with its lock let go (report_let_go()). */
    if (reports_let_go != st->reports_let_go) {
        reports_let_go = st->reports_let_go;
        pthread_mutex_lock(&wq->lock);
        rcl__assert(wq->state == WQ_DRAINING);
        wq->state = WQ_RUNNING;
        pthread_mutex_unlock(&wq->lock);
    }
    rcl__fork_unclaim(&wq->fork);
}

static void wq_destroy_running(struct rcl_workqueue *wq)
{
    struct destroy_state st = { .wq = wq, .reports_let_go = reports_let_go };

    pthread_cleanup_push(destroy_ended, &st);
    annotate_wait(wq);
    pthread_mutex_lock(&wq->lock);
    rcl__assert(wq->state == WQ_RUNNING);
    /* Drain: nothing new from outside, but items may still chain more work
     * onto the queue; wait until it is empty and idle. */
    wq->state = WQ_DRAINING;
    while (has_work(wq) || !flushed(wq, wq->dequeued) || starting(wq))
        wait_done(wq);
    while (wq->nr_flushing)
        pthread_cond_wait(&wq->done, &wq->lock);
    pthread_cleanup_pop(0);
    wq->state = WQ_STOPPING;
    pthread_cond_broadcast(&wq->more);
    pthread_cond_broadcast(&wq->rescue);
    pthread_mutex_unlock(&wq->lock);

    /* Safe without the lock: create_worker() refuses to start threads once
     * the queue is stopping, so nr_workers is final. */
    join_all(wq);
    wq_free(wq);
}
