/* SPDX-License-Identifier: MIT */
/*
 * reclaim.c - direct reclaim, rcl_reclaim(), and the background reclaimer.
 *
 * Reclaim runs in the context of whoever needs it: an allocation reclaims
 * directly with its own (scope-masked) flags, and never waits on the
 * background reclaimer, which works in the widest context and may call
 * shrinkers that need a lock the allocating thread holds. Progress is the
 * accounted bytes the reclaiming thread saw freed (rcl_thread.reclaimed),
 * not what shrinkers claim.
 *
 * An allocation's direct reclaim is bounded in time (RECLAIM_DIRECT_US,
 * default 50 us of shrinker work, checked between scan calls): it returns
 * with what it freed, the work it did not do is deferred, and the
 * background reclaimer, woken, does it. An allocation still short after
 * that waits a little for the background reclaimer (throttled, counted)
 * rather than reclaiming without end: when one thread cannot free as fast
 * as the program allocates, the program slows down instead of stalling.
 */
#include "internal.h"
#include "backend.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TRIM_MIN_BYTES    (1024 * 1024)   /* a pass that freed this much trims */
#define TRIM_INTERVAL_NS  RCL__BE_TRIM_INTERVAL_NS   /* per backend: backend.h */
/* Sooner when a trim is owed for this share of the budget or more. */
#define TRIM_SOON_NS      (5 * 1000000ULL)
#define TRIM_SOON_SHARE   16
#define IDLE_BACKOFF_MS   100             /* first pause after a fruitless pass */
#define IDLE_BACKOFF_MAX  2000
#define DIRECT_BOUND_NS   (50 * 1000ULL)  /* default bound of one direct reclaim */
/* Keeping ahead: woken again this soon after a pass that freed, pressure
 * is sustained; the reclaimer then looks every AHEAD_POLL_NS and restores
 * high as soon as headroom dips below it, not only once it is under low,
 * for as long as it found work in the last AHEAD_HOLD_NS. */
#define SUSTAINED_NS      (20 * 1000000ULL)
#define AHEAD_POLL_NS     (1000 * 1000L)
#define AHEAD_HOLD_NS     (100 * 1000000ULL)
#define SLOW_RECLAIM_NS   (2000 * 1000ULL) /* a bounded one this long is reported */
#define THROTTLE_MIN_NS   50000L          /* first wait of a throttled allocation */
#define THROTTLE_MAX_NS   400000L         /* longest; an allocation waits a few */
#define START_RETRY_NS    (100 * 1000000ULL) /* least gap between failed starts */

_Atomic unsigned long long rcl__direct_bound_ns = DIRECT_BOUND_NS;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    pthread_t       thread;
    bool            running;
    _Atomic bool    stop;
    _Atomic int     enabled;
    _Atomic int     wake_pending;
    _Atomic size_t  request;                  /* bytes asked for by pressure */
    _Atomic unsigned long long last_trim;
    _Atomic size_t  untrimmed;                /* freed by reclaim, not trimmed yet */
} reclaimer = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static __thread bool in_background;
static _Atomic long long start_fail_reported, slow_reported, throttle_reported;
/* No start attempt before this time (rcl__now_ns()): set by a failed one. */
static unsigned long long start_retry_at;   /* under reclaimer.lock */

bool rcl__is_background(void) { return in_background; }

/* Compared unsigned: rcl_reclaim(SIZE_MAX) - "all there is" - read as a
 * long is -1, met before the first pass freed anything. */
static bool target_met(long progress, size_t target)
{
    return progress >= 0 && (size_t)progress >= target;
}

/* What a reclaim changed on its thread, for its end. */
struct shrink_state {
    struct rcl_thread *t;
    unsigned           scope;          /* saved */
    long               start, stock_before, max_before;
    const struct rcl_shrink_pass *passes;  /* rcl__shrink_slab_mark() before */
    struct rcl_shrink_pass pass;           /* the one at work, in this frame */
};

static size_t shrink_end(const struct shrink_state *st)
{
    struct rcl_thread *t = st->t;

    rcl__stock_reclaim_end(t, st->max_before);
    rcl_scope_restore(st->scope);

    /* Keep in the stock only what reclaim really won back; what shrinkers
     * charged from the reserve and freed again goes back to the budget,
     * or the reserve would leak to the allocation that reclaimed. */
    long progress = t->reclaimed > st->start ? t->reclaimed - st->start : 0;
    rcl__stock_flush(t, st->stock_before + progress);
    return (size_t)progress;
}

/* A thread that ends inside a callback (pthread_exit()) ends its reclaim
 * here, after the pass it was in (shrinker.c): the program's cleanup handlers and
 * destructors that run next allocate and free as the thread's own, not
 * as reclaim's, in the scope it had, and the bound and trace of the
 * frames the exit took away are no longer looked at. Busy meanwhile, and
 * out after, as the pass leaves it. */
static void shrink_unwound(void *arg)
{
    const struct shrink_state *st = arg;

    rcl__asan_unwinding();
    rcl__shrink_slab_unwound(st->passes);
    unsigned b = rcl__busy_hold(st->t);

    (void)shrink_end(st);
    (void)rcl__shrink_bound(0, NULL);
    rcl__busy_drop(st->t, b);
}

size_t rcl__shrink(struct rcl_thread *t, size_t target, rcl_gfp_t gfp)
{
    /* Shrinkers' own allocations must not recurse into reclaim, and may
     * use the reserve: NORECLAIM. */
    struct shrink_state st = { .t = t, .scope = rcl_scope_save(RCL_SCOPE_NORECLAIM),
                               .start = t->reclaimed, .stock_before = rd(t->stock),
                               .passes = rcl__shrink_slab_mark() };
    st.max_before = rcl__stock_reclaim_begin(t);

    pthread_cleanup_push(shrink_unwound, &st);
    for (int prio = RCL_DEF_PRIORITY; prio >= 0; prio--) {
        rcl__shrink_slab(gfp, prio, &st.pass);
        if (target_met(t->reclaimed - st.start, target) || rcl__shrink_expired())
            break;
    }
    pthread_cleanup_pop(0);
    return shrink_end(&st);
}

/* The depot and the empty slabs go back first, so that the backend's trim
 * finds their memory free. */
void rcl__trim_memory(void)
{
    rcl__depot_drain();
    rcl__slab_trim();
    rcl__bcache_trim();
    rcl__be_trim();
}

/* A trim counted; the sample after it sees what is left. */
static void trim(unsigned long long now)
{
    rcl__trim_memory();
    rcl__count(trims, 1);
    rcl__count(trim_ns, rcl__now_ns() - now);
    rcl__owners_collect();
    rcl__footprint_sample();
}

/* Gives what reclaim freed back to the operating system, so that the real
 * footprint falls with the charge, then measures it: a sample taken
 * without the trim would count the freed, still resident memory as held
 * and shrink the caches again for it. Rate-limited per backend (backend.h):
 * a trim walks the backend's free lists. */
static bool maybe_trim(size_t freed, bool short_of_room)
{
    unsigned long long now, last, gap;

    if (freed < TRIM_MIN_BYTES && !short_of_room)
        return false;
    /* Until the trim, the footprint counts the freed memory as held and
     * reclaim frees as much again for it, at every sample (footprint.c):
     * harmless while it is a small share of the budget, a cache emptied
     * for nothing when it is a large one. And once reclaim finds nothing
     * to free, what the backend holds is all there is to give back. */
    gap = short_of_room || freed >= rd(rcl__acct.limit) / TRIM_SOON_SHARE ? TRIM_SOON_NS
                                                                          : TRIM_INTERVAL_NS;
    now = rcl__now_ns();
    last = atomic_load(&reclaimer.last_trim);
    if (now - last < gap ||
        !atomic_compare_exchange_strong(&reclaimer.last_trim, &last, now))
        return false;
    trim(now);
    return true;
}

/* Freed memory the backend holds until a trim gives it back. */
static void owe_trim(size_t freed)
{
    atomic_fetch_add(&reclaimer.untrimmed, freed);
}

/*
 * The trim an allocation makes before it fails, whatever the rate limit:
 * reclaim has nothing left to free, and the freed memory the backend
 * still holds may be all that keeps the footprint over the budget (a
 * cache emptied to nothing, its pages not yet given back, the background
 * reclaimer that owes the trim not yet run). The kernel, too, does the
 * work itself before it fails an allocation rather than leave it to
 * kswapd. False where the budget counts no resident memory: a trim would
 * not move it.
 */
bool rcl__reclaim_trim_now(void)
{
    if (rcl__footprint_mode() == RCL__FOOTPRINT_OFF)
        return false;
    unsigned long long now = rcl__now_ns();
    atomic_store(&reclaimer.last_trim, now);
    trim(now);
    return true;
}

/* The owed trim, if the rate limit allows it; otherwise it stays owed.
 * short_of_room: reclaim found nothing to free and the budget is short. */
static void trim_owed(bool short_of_room)
{
    size_t owed = atomic_exchange(&reclaimer.untrimmed, 0);
    if (!maybe_trim(owed, short_of_room))
        atomic_fetch_add(&reclaimer.untrimmed, owed);
}

static unsigned long long thread_cpu_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
        return 0;
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static double mib(long long bytes) { return (double)bytes / 1048576.0; }

/* The longest one shrinker's part of the report can be: a name of
 * RCL_NAME_MAX - 1 characters and three numbers of 20 digits at most,
 * with their words. The list is sized for every entry the trace keeps
 * and the others' sum, so that none is cut. */
#define SLOW_ENTRY_MAX   (RCL_NAME_MAX + 3 * 24 + 32)
_Static_assert(sizeof(((struct rcl__shrink_trace *)0)->e[0].name) <= RCL_NAME_MAX,
               "SLOW_ENTRY_MAX holds a traced name");

/* The form of the allocation-stall report: what was asked, what came back,
 * how fast, and where the time went. */
static void report_slow(size_t target, size_t freed, unsigned long long ns,
                        unsigned long long cpu_ns, const struct rcl__shrink_trace *tr)
{
    char per[(RCL__TRACE_MAX + 1) * SLOW_ENTRY_MAX] = "";
    size_t len = 0;

    for (unsigned i = 0; i < tr->n && len < sizeof(per); i++)
        len += (size_t)snprintf(per + len, sizeof(per) - len, "%s\"%s\" %.3f ms, %.3f MiB, "
                                "%lu objects", i ? "; " : "", tr->e[i].name,
                                (double)tr->e[i].ns / 1e6, mib(tr->e[i].bytes),
                                tr->e[i].objects);
    if (tr->others && len < sizeof(per))
        snprintf(per + len, sizeof(per) - len, "; others %.3f ms, %.3f MiB, %lu objects",
                 (double)tr->others_ns / 1e6, mib(tr->others_bytes), tr->others_objects);
    rcl__report_limited(&slow_reported,
                        "slow direct reclaim: %.3f ms (%.3f ms of it on CPU; the rest waiting "
                        "for a CPU or a lock) for %.3f MiB asked, %.3f MiB freed "
                        "(%.1f MiB/s); by shrinker: %s", (double)ns / 1e6, (double)cpu_ns / 1e6,
                        mib((long long)target),
                        mib((long long)freed), ns ? mib((long long)freed) * 1e9 / (double)ns : 0.0,
                        tr->n ? per : "none ran");
}

static size_t reclaim_counted(struct rcl_thread *t, size_t target, rcl_gfp_t gfp,
                              unsigned long long bound)
{
    struct rcl__shrink_trace tr;
    unsigned long long start = rcl__now_ns(), cpu0 = thread_cpu_ns();

    struct rcl__shrink_bound_state outer = rcl__shrink_bound(bound ? start + bound : 0, &tr);
    size_t freed = rcl__shrink(t, target, gfp);
    rcl__shrink_bound_put(&outer);
    unsigned long long ns = rcl__now_ns() - start, cpu = thread_cpu_ns() - cpu0;

    rcl__count(direct_reclaims, 1);
    rcl__count(direct_stall_ns, ns);
    rcl__count(direct_cpu_ns, cpu);
    rcl__count(direct_reclaimed, freed);
    if (bound && freed < target && ns >= bound) {
        rcl__count(direct_bounded, 1);
        rcl__reclaim_wake();
    }
    /* Only a bounded reclaim is news when slow: a shrinker call overran
     * the bound many times over, or the thread lost its CPU. Unbounded ones
     * (rcl_reclaim(), no background reclaimer) take what their work takes. */
    if (bound && ns >= SLOW_RECLAIM_NS) {
        rcl__count(slow_reclaims, 1);
        report_slow(target, freed, ns, cpu, &tr);
    }
    return freed;
}

size_t rcl__direct_reclaim(struct rcl_thread *t, size_t target, rcl_gfp_t gfp)
{
    /* Without a background reclaimer nobody would do the rest: unbounded. */
    bool bg_on = atomic_load_explicit(&reclaimer.enabled, memory_order_relaxed);
    size_t freed = reclaim_counted(t, target, gfp, bg_on ? rd(rcl__direct_bound_ns) : 0);
    /* Owed a trim only where the budget counts resident memory, which is
     * what the trim lowers. The trim is the background reclaimer's, so
     * that an allocation does not walk the backend's free lists; without
     * one, it is ours. */
    if (rcl__footprint_mode() == RCL__FOOTPRINT_OFF)
        return freed;
    owe_trim(freed);
    if (rd(reclaimer.untrimmed) >= TRIM_MIN_BYTES) {
        if (bg_on)
            rcl__reclaim_wake();
        else
            trim_owed(false);
    }
    return freed;
}

void rcl__reclaim_throttle(unsigned round)
{
    if (!atomic_load_explicit(&reclaimer.enabled, memory_order_relaxed) || in_background) {
        sched_yield();
        return;
    }
    rcl__reclaim_wake();
    long ns = THROTTLE_MIN_NS << (round < 3 ? round : 3);
    if (ns > THROTTLE_MAX_NS)
        ns = THROTTLE_MAX_NS;
    unsigned long long t0 = rcl__now_ns();
    rcl__busy_sleep_ns(ns);
    unsigned long long waited = rcl__now_ns() - t0;
    rcl__count(throttled, 1);
    rcl__count(throttle_ns, waited);
    rcl__report_limited(&throttle_reported,
                        "allocations throttled: the background reclaimer is not freeing as "
                        "fast as the program allocates (%lu waits, %.1f ms in all so far)",
                        rd(rcl__stats.throttled), (double)rd(rcl__stats.throttle_ns) / 1e6);
}

static size_t reclaim_body(struct rcl_thread *t, size_t bytes, rcl_gfp_t gfp)
{
    rcl__thread_attach(t);

    rcl_gfp_t masked = rcl_current_gfp(gfp);
    bool may_reclaim = rcl__may_reclaim(masked);
    if (rcl__checking())
        rcl__lockdep_alloc(gfp);
    if (!may_reclaim) {
        if (masked & RCL__KSWAPD_RECLAIM)
            rcl__reclaim_wake();
        return 0;
    }
    /* The caller asked for these bytes: no time bound. */
    size_t freed = reclaim_counted(t, bytes, masked, 0);
    /* The caller asked for room in the budget, not in its own stock. */
    rcl__stock_flush(t, 0);
    owe_trim(freed);
    trim_owed(false);
    /* One the rate limit put off is the background reclaimer's, which
     * sleeps until woken while less than a trim's worth is owed. */
    if (rd(reclaimer.untrimmed) >= TRIM_MIN_BYTES)
        rcl__reclaim_wake();
    return freed;
}

/* NOFAIL that may not wait is the caller's bug whatever the call: a
 * reclaim with those flags is refused, as an allocation with them is,
 * rather than taken for one without direct reclaim. */
static __attribute__((noinline, cold)) size_t reclaim_refused(size_t bytes, rcl_gfp_t gfp)
{
    char flags[RCL__GFP_STR_MAX];

    if (!(gfp & RCL__NOWARN)) {
        unsigned b = rcl__busy_init();
        rcl__report("rcl_reclaim(%zu, %s): NOFAIL needs DIRECT_RECLAIM (it must be able to "
                    "wait); refused, nothing reclaimed", bytes,
                    rcl__gfp_str(gfp, flags, sizeof(flags)));
        rcl__busy_drop(&rcl__self, b);
    }
    errno = EINVAL;
    return 0;
}

/* Busy from first use on, as rcl_uncharge() (account.c) says why; the
 * trim too, which takes the backend's locks. */
size_t rcl_reclaim(size_t bytes, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;

    /* Before the size: 0 bytes asks for nothing, but its flags are
     * checked as every call's are. */
    gfp = rcl__gfp_known("rcl_reclaim", gfp);
    if (unlikely(rcl__gfp_nofail_nowait(gfp)))
        return reclaim_refused(bytes, gfp);
    if (!bytes)
        return 0;
    unsigned busy = rcl__busy_init();
    size_t freed = reclaim_body(t, bytes, gfp);
    rcl__busy_drop(t, busy);
    return freed;
}

/* ------------------------------------------------------------------------ */
/* The background reclaimer                                                  */
/* ------------------------------------------------------------------------ */

/* Work until headroom is back above high and pressure requests are met;
 * returns the bytes freed. */
static size_t balance(struct rcl_thread *t)
{
    size_t total = 0;

    rcl__thread_attach(t);
    for (;;) {
        size_t headroom = rcl__headroom(), high, want;
        size_t req = atomic_exchange(&reclaimer.request, 0);
        high = rd(rcl__acct.wm_high);
        want = (headroom < high ? high - headroom : 0) + req;
        if (!want)
            break;
        size_t freed = rcl__shrink(t, want, RCL_DEFAULT);
        /* counted before the room becomes visible to others */
        rcl__count(background_reclaimed, freed);
        rcl__stock_flush(t, 0);
        owe_trim(freed);
        total += freed;
        if (!freed || reclaimer.stop)
            break;
    }
    /* One trim for the whole pass; one the rate limit put off is done
     * when the interval has passed (background_main waits for it). */
    trim_owed(false);
    return total;
}

/* Called with reclaimer.lock held, and nothing asked: sleep until woken, or until
 * a trim the rate limit put off is due (then do it). Less than a trim's
 * worth owed is not due at any time (maybe_trim()): waking for it would
 * find it still owed, every interval, for as long as the program stays
 * idle. The reclaim that owes the rest wakes the reclaimer. */
static void idle_locked(void)
{
    rcl__assert_held(&reclaimer.lock);
    if (rd(reclaimer.untrimmed) < TRIM_MIN_BYTES) {
        pthread_cond_wait(&reclaimer.cond, &reclaimer.lock);
        return;
    }
    struct timespec until = rcl__deadline_after_ns(TRIM_INTERVAL_NS);
    if (pthread_cond_timedwait(&reclaimer.cond, &reclaimer.lock, &until) != ETIMEDOUT)
        return;
    pthread_mutex_unlock(&reclaimer.lock);
    trim_owed(false);
    pthread_mutex_lock(&reclaimer.lock);
}

/* Called with reclaimer.lock held: true when there is work now; else it waited
 * (for a wake-up, or one poll interval while keeping ahead). */
static bool wait_for_work_locked(unsigned long long ahead_until)
{
    rcl__assert_held(&reclaimer.lock);
    if (atomic_load(&reclaimer.wake_pending) || rd(reclaimer.request))
        return true;
    if (rcl__now_ns() >= ahead_until) {
        idle_locked();
        return false;
    }
    if (rcl__headroom() < rd(rcl__acct.wm_high))
        return true;
    struct timespec until = rcl__deadline_after_ns(AHEAD_POLL_NS);
    pthread_cond_timedwait(&reclaimer.cond, &reclaimer.lock, &until);
    return false;
}

static _Atomic long long ended_reported;

/* A shrinker's callback that ends the reclaimer's thread (pthread_exit();
 * rcl__shrink()'s handler has let go of the pass by now) ends the
 * reclaimer. Still counted as running, it would never be started again:
 * every wake-up after would find one pending and nobody to take it, and
 * the allocations would reclaim and throttle alone until rcl_shutdown().
 * So it is marked not running, with no wake-up pending, and the next
 * wake-up starts another, as after a fork; detached, as nobody joins it.
 * Unless rcl__reclaim_stop() has already taken it to join: both decide
 * under the lock. Reported after it: a report function may fork, and
 * fork() takes that lock. */
static void background_unwound(void *arg)
{
    (void)arg;
    rcl__asan_unwinding();
    pthread_mutex_lock(&reclaimer.lock);
    bool ours = reclaimer.running && pthread_equal(reclaimer.thread, pthread_self());
    if (ours) {
        reclaimer.running = false;
        atomic_store(&reclaimer.wake_pending, 0);
        pthread_detach(pthread_self());
    }
    pthread_mutex_unlock(&reclaimer.lock);
    if (ours)
        rcl__report_limited(&ended_reported,
                            "the background reclaimer's thread was ended inside a shrinker's "
                            "callback (pthread_exit()); the next wake-up starts another");
}

static _Atomic long long forked_reported;

/*
 * The loop a child forked on this thread - by a shrinker's callback or a
 * report function - comes back to is none of the child's: the child's
 * reclaimer starts on demand (rcl__reclaim_atfork_child() cleared
 * in_background here). Going on, the thread waited for wake-ups beside
 * that one, never joined, and the child never ended. It ends instead,
 * the child with it unless it started threads of its own, as a
 * workqueue's thread does when a work item forks.
 */
static bool forked_here(void)
{
    return !in_background;
}

static void background_loop(void)
{
    struct rcl_thread *t = &rcl__self;
    unsigned backoff_ms = 0;
    unsigned long long last_done = 0, ahead_until = 0;

    pthread_mutex_lock(&reclaimer.lock);
    while (!reclaimer.stop && !forked_here()) {
        if (!wait_for_work_locked(ahead_until))
            continue;
        atomic_store(&reclaimer.wake_pending, 0);
        pthread_mutex_unlock(&reclaimer.lock);

        rcl__count(background_wakeups, 1);
        unsigned long long cpu0 = thread_cpu_ns();
        size_t freed = balance(t);
        rcl__count(background_cpu_ns, thread_cpu_ns() - cpu0);
        unsigned long long now = rcl__now_ns();
        /* A pass that found nothing to free ends keeping ahead: polling
         * would only find nothing again, every millisecond. */
        if (!freed)
            ahead_until = 0;
        else if (now - last_done < SUSTAINED_NS)
            ahead_until = now + AHEAD_HOLD_NS;
        last_done = now;
        if (!freed && rcl__headroom() < rd(rcl__acct.wm_low) &&
            rcl__footprint_mode() != RCL__FOOTPRINT_OFF)
            trim_owed(true);

        pthread_mutex_lock(&reclaimer.lock);
        if (forked_here())
            break;
        /* Nothing to free yet the budget is still short: do not spin on
         * wake-ups that would find nothing either; pause, longer each time. */
        if (!freed && rcl__headroom() < rd(rcl__acct.wm_low)) {
            backoff_ms = backoff_ms ? backoff_ms * 2 : IDLE_BACKOFF_MS;
            if (backoff_ms > IDLE_BACKOFF_MAX)
                backoff_ms = IDLE_BACKOFF_MAX;
            ahead_until = 0;
            struct timespec until = rcl__deadline_after_ns(backoff_ms * 1000000ull);
            while (!reclaimer.stop && !rd(reclaimer.request) &&
                   pthread_cond_timedwait(&reclaimer.cond, &reclaimer.lock, &until) != ETIMEDOUT)
                ;
        } else {
            backoff_ms = 0;
        }
    }
    pthread_mutex_unlock(&reclaimer.lock);
    rcl__stock_flush(t, 0);
    if (forked_here())
        rcl__report_limited(&forked_reported,
                            "a child forked on the background reclaimer's thread (in a "
                            "shrinker's callback or a report function) returned to it; the "
                            "child's reclaimer starts on demand, and this thread ends");
}

static void *background_main(void *arg)
{
    (void)arg;
    in_background = true;
    pthread_cleanup_push(background_unwound, NULL);
    background_loop();
    pthread_cleanup_pop(0);
    return NULL;
}

/* Started on first need, so a program that never nears its budget never
 * sees the thread. Called with reclaimer.lock held. */
/* A start that fails (EAGAIN: the process is at its thread limit for the
 * moment) is tried again at a wake-up at least START_RETRY_NS later: the
 * wake-up is not left pending, since a pending one is never made again.
 * Returns the failure for the caller to report once the lock is let go:
 * a report function may fork, and fork() takes this lock. */
static int start_locked(void)
{
    rcl__assert_held(&reclaimer.lock);
    unsigned long long now = rcl__now_ns();
    if (now < start_retry_at) {
        atomic_store(&reclaimer.wake_pending, 0);
        return 0;
    }
    int err = rcl__thread_start(&reclaimer.thread, background_main, NULL, "reclaimer");
    if (err) {
        start_retry_at = now + START_RETRY_NS;
        atomic_store(&reclaimer.wake_pending, 0);
        return err;
    }
    start_retry_at = 0;
    pthread_setname_np(reclaimer.thread, "rcl-reclaimd");
    reclaimer.running = true;
    return 0;
}

void rcl__reclaim_wake(void)
{
    int err = 0;

    if (!atomic_load_explicit(&reclaimer.enabled, memory_order_relaxed))
        return;
    /* Already woken: the common case under pressure, and lock-free. */
    if (atomic_load_explicit(&reclaimer.wake_pending, memory_order_relaxed) ||
        atomic_exchange(&reclaimer.wake_pending, 1))
        return;
    pthread_mutex_lock(&reclaimer.lock);
    if (!reclaimer.running && !reclaimer.stop)
        err = start_locked();
    pthread_cond_signal(&reclaimer.cond);
    pthread_mutex_unlock(&reclaimer.lock);
    if (err)
        rcl__report_limited(&start_fail_reported,
                            "cannot start the background reclaimer: %s; allocations will "
                            "reclaim directly until a later attempt succeeds", strerror(err));
}

void rcl__reclaim_request(size_t bytes)
{
    if (!bytes || !atomic_load(&reclaimer.enabled))
        return;
    atomic_fetch_add(&reclaimer.request, bytes);
    atomic_store(&reclaimer.wake_pending, 0);
    rcl__reclaim_wake();
}

int rcl__reclaim_start(const struct rcl_config *cfg)
{
    atomic_store(&rcl__direct_bound_ns,
                 cfg->direct_us == RCL_DIRECT_UNBOUNDED ? 0ull :
                 cfg->direct_us ? cfg->direct_us * 1000ull : DIRECT_BOUND_NS);
    /* A new budget's first slow reclaim, first throttling, first failed
     * start of the reclaimer, first reclaimer ended and first one a child
     * forked on it are news. */
    atomic_store(&start_fail_reported, 0);
    atomic_store(&ended_reported, 0);
    atomic_store(&forked_reported, 0);
    atomic_store(&slow_reported, 0);
    atomic_store(&throttle_reported, 0);
    pthread_mutex_lock(&reclaimer.lock);
    /* No reclaimer waits now: the last one was joined, or none started.
     * Its waits go by CLOCK_MONOTONIC (clock.c): its pauses after a
     * fruitless pass are not cut short by wake-ups, and by the wall clock
     * one would last an hour longer after an hour's step back. */
    pthread_cond_destroy(&reclaimer.cond);
    rcl__cond_init_monotonic(&reclaimer.cond);
    reclaimer.stop = false;
    reclaimer.running = false;
    start_retry_at = 0;
    atomic_store(&reclaimer.wake_pending, 0);
    atomic_store(&reclaimer.request, 0);
    atomic_store(&reclaimer.untrimmed, 0);
    atomic_store(&reclaimer.enabled, cfg->background ? 1 : 0);
    pthread_mutex_unlock(&reclaimer.lock);
    return 0;
}

void rcl__reclaim_stop(void)
{
    pthread_mutex_lock(&reclaimer.lock);
    atomic_store(&reclaimer.enabled, 0);
    reclaimer.stop = true;
    bool running = reclaimer.running;
    reclaimer.running = false;
    pthread_cond_broadcast(&reclaimer.cond);
    pthread_mutex_unlock(&reclaimer.lock);
    if (running)
        pthread_join(reclaimer.thread, NULL);
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

void rcl__reclaim_atfork_prepare(void) { pthread_mutex_lock(&reclaimer.lock); }
void rcl__reclaim_atfork_parent(void) { pthread_mutex_unlock(&reclaimer.lock); }

/* The child has no background reclaimer: marked not running, it is
 * started again by the next wake-up, which must not find one pending. */
void rcl__reclaim_atfork_child(void)
{
    rcl__cond_init_monotonic(&reclaimer.cond);
    reclaimer.running = false;
    atomic_store(&reclaimer.wake_pending, 0);
    in_background = false;
    pthread_mutex_unlock(&reclaimer.lock);
}
