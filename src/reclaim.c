/*
 * reclaim.c - direct reclaim, rcl_reclaim(), and the background reclaimer.
 *
 * Reclaim runs in the context of whoever needs it: an allocation reclaims
 * directly with its own (scope-masked) flags, and never waits on the
 * background reclaimer, which works in the widest context and may call
 * shrinkers that need a lock the allocating thread holds. Progress is the
 * accounted bytes the reclaiming thread saw freed (rcl_thread.reclaimed),
 * not what shrinkers claim.
 */
#include "internal.h"
#include "backend.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define TRIM_MIN_BYTES    (1024 * 1024)   /* a pass that freed this much trims */
#define TRIM_INTERVAL_NS  RCL__BE_TRIM_INTERVAL_NS   /* per backend: backend.h */
#define IDLE_BACKOFF_MS   100             /* first pause after a fruitless pass */
#define IDLE_BACKOFF_MAX  2000

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
} bg = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static __thread bool in_background;
static _Atomic long long start_fail_reported;

bool rcl__is_background(void) { return in_background; }

size_t rcl__shrink(struct rcl_thread *t, size_t target, rcl_gfp_t gfp)
{
    /* Shrinkers' own allocations must not recurse into reclaim, and may
     * use the reserve: NORECLAIM. */
    unsigned saved = rcl_scope_save(RCL_SCOPE_NORECLAIM);
    long start = t->reclaimed, stock_before = rd(t->stock);
    /* The outermost reclaim takes stock_max over; a drain request that was
     * pending, or that comes meanwhile, is still there when it ends. */
    long max_before = t->in_reclaim++ ? RCL_STOCK_RECLAIM
                                      : atomic_exchange(&t->stock_max, RCL_STOCK_RECLAIM);

    for (int prio = RCL_DEF_PRIORITY; prio >= 0; prio--) {
        rcl__shrink_slab(gfp, prio);
        if (t->reclaimed - start >= (long)target)
            break;
    }
    if (--t->in_reclaim == 0) {
        long expect = RCL_STOCK_RECLAIM;
        atomic_compare_exchange_strong(&t->stock_max, &expect,
                                       max_before == RCL_STOCK_DRAIN ? RCL_STOCK_DRAIN
                                                                     : rcl__stock_limit());
    }
    rcl_scope_restore(saved);

    /* Keep in the stock only what reclaim really won back; what shrinkers
     * charged from the reserve and freed again goes back to the budget,
     * or the reserve would leak to the allocation that reclaimed. */
    long progress = t->reclaimed > start ? t->reclaimed - start : 0;
    rcl__stock_flush(t, stock_before + progress);
    return (size_t)progress;
}

static void maybe_trim(size_t freed)
{
    unsigned long long now, last;

    if (freed < TRIM_MIN_BYTES)
        return;
    now = rcl__now_ns();
    last = atomic_load(&bg.last_trim);
    if (now - last < TRIM_INTERVAL_NS || !atomic_compare_exchange_strong(&bg.last_trim, &last, now))
        return;
    rcl__be_trim();
}

size_t rcl__direct_reclaim(struct rcl_thread *t, size_t target, rcl_gfp_t gfp)
{
    unsigned long long start = rcl__now_ns();
    size_t freed = rcl__shrink(t, target, gfp);

    rcl__count(direct_reclaims, 1);
    rcl__count(direct_stall_ns, rcl__now_ns() - start);
    rcl__count(direct_reclaimed, freed);
    return freed;
}

size_t rcl_reclaim(size_t bytes, rcl_gfp_t gfp)
{
    struct rcl_thread *t = &rcl__self;

    if (!bytes)
        return 0;
    rcl__ensure_init();
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
    size_t freed = rcl__direct_reclaim(t, bytes, masked);
    /* The caller asked for room in the budget, not in its own stock. */
    rcl__stock_flush(t, 0);
    maybe_trim(freed);
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
        size_t req = atomic_exchange(&bg.request, 0);
        high = rd(rcl__acct.wm_high);
        want = (headroom < high ? high - headroom : 0) + req;
        if (!want)
            break;
        size_t freed = rcl__shrink(t, want, RCL_DEFAULT);
        /* counted before the room becomes visible to others */
        rcl__count(background_reclaimed, freed);
        rcl__stock_flush(t, 0);
        total += freed;
        if (!freed || bg.stop)
            break;
    }
    maybe_trim(total);
    return total;
}

static void *background_main(void *arg)
{
    struct rcl_thread *t = &rcl__self;
    unsigned backoff_ms = 0;

    (void)arg;
    in_background = true;
    pthread_mutex_lock(&bg.lock);
    while (!bg.stop) {
        if (!atomic_load(&bg.wake_pending) && !rd(bg.request)) {
            pthread_cond_wait(&bg.cond, &bg.lock);
            continue;
        }
        atomic_store(&bg.wake_pending, 0);
        pthread_mutex_unlock(&bg.lock);

        rcl__count(background_wakeups, 1);
        size_t freed = balance(t);

        pthread_mutex_lock(&bg.lock);
        /* Nothing to free yet the budget is still short: do not spin on
         * wake-ups that would find nothing either; pause, longer each time. */
        if (!freed && rcl__headroom() < rd(rcl__acct.wm_low)) {
            backoff_ms = backoff_ms ? backoff_ms * 2 : IDLE_BACKOFF_MS;
            if (backoff_ms > IDLE_BACKOFF_MAX)
                backoff_ms = IDLE_BACKOFF_MAX;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += backoff_ms / 1000;
            until.tv_nsec += (long)(backoff_ms % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            while (!bg.stop && pthread_cond_timedwait(&bg.cond, &bg.lock, &until) != ETIMEDOUT)
                ;
        } else {
            backoff_ms = 0;
        }
    }
    pthread_mutex_unlock(&bg.lock);
    rcl__stock_flush(t, 0);
    return NULL;
}

/* Started on first need, so a program that never nears its budget never
 * sees the thread. Called with bg.lock held. */
static void start_locked(void)
{
    int err = rcl__thread_start(&bg.thread, background_main, NULL, "reclaimer");
    if (err) {
        rcl__report_limited(&start_fail_reported,
                            "cannot start the background reclaimer: %s; allocations will "
                            "reclaim directly", strerror(err));
        return;
    }
    pthread_setname_np(bg.thread, "rcl-reclaimd");
    bg.running = true;
}

void rcl__reclaim_wake(void)
{
    if (!atomic_load_explicit(&bg.enabled, memory_order_relaxed))
        return;
    /* Already woken: the common case under pressure, and lock-free. */
    if (atomic_load_explicit(&bg.wake_pending, memory_order_relaxed) ||
        atomic_exchange(&bg.wake_pending, 1))
        return;
    pthread_mutex_lock(&bg.lock);
    if (!bg.running && !bg.stop)
        start_locked();
    pthread_cond_signal(&bg.cond);
    pthread_mutex_unlock(&bg.lock);
}

void rcl__reclaim_request(size_t bytes)
{
    if (!bytes || !atomic_load(&bg.enabled))
        return;
    atomic_fetch_add(&bg.request, bytes);
    atomic_store(&bg.wake_pending, 0);
    rcl__reclaim_wake();
}

int rcl__reclaim_start(const struct rcl_config *cfg)
{
    pthread_mutex_lock(&bg.lock);
    bg.stop = false;
    bg.running = false;
    atomic_store(&bg.wake_pending, 0);
    atomic_store(&bg.request, 0);
    atomic_store(&bg.enabled, cfg->background ? 1 : 0);
    pthread_mutex_unlock(&bg.lock);
    return 0;
}

void rcl__reclaim_stop(void)
{
    pthread_mutex_lock(&bg.lock);
    atomic_store(&bg.enabled, 0);
    bg.stop = true;
    bool running = bg.running;
    bg.running = false;
    pthread_cond_broadcast(&bg.cond);
    pthread_mutex_unlock(&bg.lock);
    if (running)
        pthread_join(bg.thread, NULL);
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

void rcl__reclaim_atfork_prepare(void) { pthread_mutex_lock(&bg.lock); }
void rcl__reclaim_atfork_parent(void) { pthread_mutex_unlock(&bg.lock); }

/* The child has no background reclaimer: marked not running, it is
 * started again by the next wake-up, which must not find one pending. */
void rcl__reclaim_atfork_child(void)
{
    pthread_cond_init(&bg.cond, NULL);
    bg.running = false;
    atomic_store(&bg.wake_pending, 0);
    in_background = false;
    pthread_mutex_unlock(&bg.lock);
}
