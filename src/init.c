/* SPDX-License-Identifier: MIT */
/*
 * init.c - life cycle and configuration: defaults, rcl_init() and
 * rcl_shutdown(). The RECLAIM_* table is options.c's.
 *
 * Every entry point that needs the budget calls rcl__ensure_init(), so a
 * program that never calls rcl_init() (or calls rcl_init(NULL)) gets the
 * defaults and its environment on first use; a program that passes its own
 * configuration gets exactly that. init_lock serialises all of this; the hot paths
 * never take it (they test rcl__ready, or their own per-thread epoch). The
 * reports made under it go out after it is let go (life_lock()).
 */
#include "internal.h"
#include "cgroup.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

int (*_Atomic rcl__thread_create_hook)(pthread_t *th, void *(*fn)(void *), void *arg,
                                       const char *what);

int rcl__thread_start(pthread_t *th, void *(*fn)(void *), void *arg, const char *what)
{
    sigset_t all, old;
    int err;

    /* Library threads take no signals: a program's handlers expect to run
     * on its own threads, and could take locks ours hold. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int (*create)(pthread_t *, void *(*)(void *), void *, const char *) =
        rd(rcl__thread_create_hook);
    if (create)
        err = create(th, fn, arg, what);
    else
        err = pthread_create(th, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

_Atomic int      rcl__ready;
_Atomic unsigned rcl__epoch;
struct rcl_config rcl__cfg;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
/* The thread holding init_lock in life_lock(), or NULL: a signal handler
 * that interrupted it there would wait for the lock for ever, marked by
 * the program or not (start_refused_here()). */
static struct rcl_thread *_Atomic init_holder;
/* Called under init_lock in a start, before its first epoch: lets a test
 * deliver a signal to a thread inside its start. */
void (*_Atomic rcl__start_hook)(void);
/* Under init_lock: rcl_shutdown() is waiting for the library's threads
 * with the lock let go. rcl__ready is still set (rcl_init() answers
 * -EBUSY, first use has nothing to do), and a second shutdown leaves the
 * work to the first. */
static bool stopping;

/* init_lock, with the reports made under it held back (report.c): the
 * program's report function may call the library, whose first use would
 * wait for this lock to start it. They go out once the lock is let go. */
static void life_lock(void)
{
    pthread_mutex_lock(&init_lock);
    atomic_store_explicit(&init_holder, &rcl__self, memory_order_relaxed);
    rcl__report_hold();
}

static void life_unlock(struct rcl__held_reports *held)
{
    rcl__report_unhold(held);
    atomic_store_explicit(&init_holder, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&init_lock);
}

/*
 * Whether a start must not run on this thread now: it runs a handler the
 * program bracketed (rcl_signal_enter() raised the depth, which no mark of
 * the library's inside the handler touches, however deep its call goes),
 * where a start's locks, malloc() and thread creation are not safe, or a
 * handler that interrupted this thread holding init_lock - its own start,
 * say - which would wait for that lock for ever. Only this thread stores
 * itself in init_holder, and a handler runs whole between two of its
 * instructions: read as itself, the lock is held under it. An unbracketed
 * handler that interrupted anything else cannot be told from the thread.
 */
static bool start_refused_here(void)
{
    return rcl__self.sig_depth ||
           atomic_load_explicit(&init_holder, memory_order_relaxed) == &rcl__self;
}

#define DEFAULT_MIN_PCT  2
#define DEFAULT_LOW_PCT  5
#define DEFAULT_HIGH_PCT 10
#define DEFAULT_STALL_MS 10000

/* Off, as documented (RECLAIM_LOCKDEP, the header), in every build: the
 * invariant checks of a DEBUG or sanitizer build (debug.h) do not turn
 * the lock checker on behind the program's back. */
#define DEFAULT_LOCKDEP RCL_LOCKDEP_OFF

void rcl_config_default(struct rcl_config *cfg)
{
    if (!cfg) {
        rcl__report("rcl_config_default(NULL): NULL configuration; nothing written");
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->min_pct = DEFAULT_MIN_PCT;
    cfg->low_pct = DEFAULT_LOW_PCT;
    cfg->high_pct = DEFAULT_HIGH_PCT;
    cfg->background = 1;
    cfg->pressure = 1;
    cfg->lockdep = DEFAULT_LOCKDEP;
    cfg->stall_ms = DEFAULT_STALL_MS;
}

/* What a program that does not configure the library gets: the defaults
 * with its environment on top. */
static void config_from_process(struct rcl_config *cfg)
{
    rcl_config_default(cfg);
    rcl_config_from_env(cfg);
}

/* Fills the zeros with defaults; -EINVAL when the result cannot work. */
static int config_resolve(struct rcl_config *cfg)
{
    for (size_t i = 0; i < sizeof(cfg->rcl_reserved) / sizeof(cfg->rcl_reserved[0]); i++)
        if (cfg->rcl_reserved[i]) {
            rcl__report("rcl_init: struct rcl_config's reserved words are not zero: a "
                        "program built for a later libreclaim, or a configuration not "
                        "started with rcl_config_default(); refused");
            return -EINVAL;
        }
    if (!cfg->min_pct)  cfg->min_pct = DEFAULT_MIN_PCT;
    if (!cfg->low_pct)  cfg->low_pct = DEFAULT_LOW_PCT;
    if (!cfg->high_pct) cfg->high_pct = DEFAULT_HIGH_PCT;
    if (!cfg->stall_ms) cfg->stall_ms = DEFAULT_STALL_MS;
    if (!(cfg->min_pct < cfg->low_pct && cfg->low_pct < cfg->high_pct && cfg->high_pct < 100)) {
        rcl__report("rcl_init: watermarks min_pct %u, low_pct %u, high_pct %u: each must "
                    "be below the next, and high_pct below 100; refused",
                    cfg->min_pct, cfg->low_pct, cfg->high_pct);
        return -EINVAL;
    }
    /* Switches, as their variables are: another value may mean something
     * to a later version, and taken as "on" here it would not. */
    if ((cfg->background | cfg->pressure) & ~1) {
        rcl__report("rcl_init: background %d, pressure %d: each is 0 or 1; refused",
                    cfg->background, cfg->pressure);
        return -EINVAL;
    }
    if (cfg->lockdep < RCL_LOCKDEP_OFF || cfg->lockdep > RCL_LOCKDEP_VERBOSE) {
        rcl__report("rcl_init: lockdep %d is no RCL_LOCKDEP_* mode; refused", cfg->lockdep);
        return -EINVAL;
    }
    if (cfg->footprint < RCL_FOOTPRINT_AUTO || cfg->footprint > RCL_FOOTPRINT_CGROUP) {
        rcl__report("rcl_init: footprint %d is no RCL_FOOTPRINT_* source; refused",
                    cfg->footprint);
        return -EINVAL;
    }
    if (!cfg->limit)
        cfg->limit = rcl_auto_limit();
    /* The reserve is held to the limit the budget will take, not to the
     * one asked for: past that it would leave ordinary allocations nothing. */
    if (cfg->limit > RCL__LIMIT_MAX)
        cfg->limit = RCL__LIMIT_MAX;
    if (cfg->reserve >= cfg->limit) {
        rcl__report("rcl_init: a reserve of %zu bytes leaves nothing of a limit of %zu; "
                    "refused", cfg->reserve, cfg->limit);
        return -EINVAL;
    }
    return 0;
}

static void print_stats_at_exit(void)
{
    if (atomic_load(&rcl__ready))
        rcl_stats_print(stderr, 0);
}

/* RECLAIM_STATS, a process option: it only adds output, so it applies to
 * every program; a bad value is reported and ignored. */
static bool stats_at_exit(void)
{
    const struct rcl__option *o = rcl__option_find("RECLAIM_STATS");
    const char *s = rcl__option_env(o->name);
    unsigned long long v = 0;

    if (s && rcl__option_parse(o, s, &v))
        rcl__report("ignored %s=\"%.64s\" (want 0 or 1)", o->name, s);
    return v == 1;
}

static int start_locked(const struct rcl_config *cfg_in)
{
    static bool atexit_done;
    rcl__assert_held(&init_lock);
    struct rcl_config cfg = *cfg_in;

    void (*hook)(void) = rd(rcl__start_hook);
    if (hook)
        hook();
    rcl__cgroup_env_forget();
    int err = config_resolve(&cfg);

    if (err)
        return err;
    /* Before the first epoch: a thread registers only in one, and must
     * find the key that unregisters it at its exit. */
    err = rcl__thread_key_make();
    if (err) {
        rcl__report("rcl_init: no thread-specific data key left for the thread "
                    "registry (the process holds PTHREAD_KEYS_MAX); refused");
        return -EAGAIN;
    }
    rcl__cfg = cfg;

    /* Block headers keep the low 16 bits of the epoch, and 0 there means
     * "no thread attached": skip such epochs. */
    unsigned epoch = atomic_load(&rcl__epoch) + 1;
    if (!(epoch & 0xffff))
        epoch++;
    atomic_store(&rcl__epoch, epoch);
    rcl__stats_reset();
    rcl__lockdep_start(cfg.lockdep);

    err = rcl__account_start(&cfg);
    if (!err)
        rcl__footprint_start(cfg_in->limit == 0);
    if (!err)
        err = rcl__reclaim_start(&cfg);
    if (err) {
        rcl__account_stop();
        return err;
    }
    atomic_store_explicit(&rcl__ready, 1, memory_order_release);

    /* Pressure following is a refinement: without it the budget still
     * holds, so its failure is reported rather than fatal. */
    if (cfg.pressure && (err = rcl__pressure_start(cfg_in->limit == 0)) != 0)
        rcl__report("memory-pressure following is off: %s", strerror(-err));

    if (stats_at_exit() && !atexit_done) {
        atexit_done = true;
        atexit(print_stats_at_exit);
    }
    return 0;
}

/* rcl_init()'s start: the program's configuration, or (NULL) the
 * process's, read only for a start. A call refused as the library runs
 * applies none of the environment, so it reports none of it: "the rest
 * applies" would be untrue, and the start that read it said it once. */
static int start_given(const struct rcl_config *cfg)
{
    struct rcl_config def;

    if (!cfg) {
        config_from_process(&def);
        cfg = &def;
    }
    return start_locked(cfg);
}

/*
 * A start, whichever call makes it, runs with the thread inside the
 * library's mark (thread.h): it holds init_lock, with the library not
 * ready or ready before this thread is registered, and a signal handler
 * that interrupted it and allocated on the ordinary path would start the
 * library again inside it, waiting for that lock for ever, or register
 * the thread inside the registration. Marked, the handler is served as
 * one (alloc_signal.c). The mark nests: the calls that hold it for the
 * whole call (rcl__busy_init()) keep it after the start.
 */
int rcl_init(const struct rcl_config *cfg)
{
    int err;

    /* Marked inside the library at the call, the thread is in a signal
     * handler, as rcl_shutdown() says: refused whether the library runs
     * or not, so that the handler is told the same either way. */
    if (rcl__self.busy == 1 || start_refused_here()) {
        rcl__sig_start_refused(true);
        return -EBUSY;
    }
    unsigned busy = rcl__busy_hold(&rcl__self);
    rcl__fork_register();
    /* Starting reads files (cgroups, PSI): cancellation points, under
     * init_lock. */
    struct rcl__held_reports held;
    int cancel = rcl__nocancel_begin();
    life_lock();
    err = atomic_load(&rcl__ready) ? -EBUSY : start_given(cfg);
    life_unlock(&held);
    rcl__nocancel_end(cancel);
    rcl__busy_drop(&rcl__self, busy);
    rcl__report_deliver(&held);
    return err;
}

int rcl__init_slow(void)
{
    struct rcl__held_reports held;
    int err = 0;

    /* Refused before the lock, which the handler may have interrupted
     * its thread holding; the caller goes on as after a failed start, or
     * answers "not now" (rcl__ensure_init_here()). */
    if (start_refused_here()) {
        rcl__sig_start_refused(false);
        return -EBUSY;
    }
    unsigned busy = rcl__busy_hold(&rcl__self);
    rcl__fork_register();
    int cancel = rcl__nocancel_begin();
    life_lock();
    if (atomic_load(&rcl__ready) == RCL__READY_FORKED) {
        /* A forked child: the configuration stands, only the pressure
         * thread has to come back. */
        rcl__pressure_restart();
        atomic_store_explicit(&rcl__ready, 1, memory_order_release);
    } else if (!atomic_load(&rcl__ready)) {
        struct rcl_config cfg;
        config_from_process(&cfg);
        err = start_locked(&cfg);
        if (err && err != -EAGAIN) {
            /* The environment asked for something impossible: say so and
             * run on plain defaults rather than not at all. */
            rcl__report("configuration from the environment is invalid (%s); using defaults",
                        strerror(-err));
            rcl_config_default(&cfg);
            err = start_locked(&cfg);
        }
    }
    life_unlock(&held);
    rcl__nocancel_end(cancel);
    rcl__busy_drop(&rcl__self, busy);
    rcl__report_deliver(&held);
    return err;
}

/* Why rcl_shutdown() cannot run on this thread now, or NULL. */
static const char *shutdown_refused_here(void)
{
    /* Before the shrinker's test: asked in a pass or outside one, the
     * call that asked - the pass, or an allocation weighing a wait for
     * another thread's - goes on over what the shutdown tears down, and
     * would hand out a block charged to no budget. The mark names the
     * innermost of the callbacks the thread runs inside each other. */
    if (rcl__self.callout == RCL__CALLOUT_MAY_RECLAIM)
        return "a domain's may_reclaim: refused (the call that asked goes on after it)";
    /* Its drop of the shrinkers waits for every pass, this thread's own
     * too (and the background reclaimer's is joined): from a callback it
     * would wait for itself. */
    if (rcl__shrinking_here())
        return "a shrinker's callback: refused (it would wait for itself)";
    /* The walk holds the LRU's lock across it: the background reclaimer
     * the shutdown joins may be waiting for that lock in a scan of the
     * LRU, and a fork() on another thread, which takes init_lock before
     * the LRU locks, for the lock the walk holds while the shutdown
     * waits for init_lock. */
    if (rcl__self.callout == RCL__CALLOUT_ISOLATE)
        return "an LRU's isolate callback: refused (it runs under the LRU's lock, which "
               "the threads the shutdown waits for may be waiting for)";
    /* A join of itself fails at once, and the thread would run on, never
     * joined, on the state the shutdown tears down. */
    if (rcl__is_pressure_thread())
        return "the library's pressure thread (a report function running there): "
               "refused (it would wait for itself)";
    if (rcl__is_background())
        return "the library's background reclaimer (a report function running "
               "there): refused (it would wait for itself)";
    /* The call that made the report goes on when it returns, on what the
     * shutdown tore down: a NOFAIL allocation handed out a block that no
     * rcl_free() took back. */
    if (rcl__reporting_depth())
        return "the report function: refused (the call that made the report goes on "
               "after it)";
    return NULL;
}

void rcl_shutdown(void)
{
    /* Marked inside the library at the call, the thread is in a signal
     * handler: bracketed by rcl_signal_enter(), or one that interrupted a
     * library call, which may hold init_lock or go on over what the
     * shutdown tears down. The mark is clear in the program's callbacks,
     * and past the thread's exit it is RCL__BUSY_EXITED: a bracketed
     * handler, and one that interrupted its thread holding init_lock, are
     * refused whatever it reads. */
    if (rcl__self.busy == 1 || start_refused_here()) {
        rcl__sig_shutdown_refused();
        return;
    }
    const char *why = shutdown_refused_here();
    if (why) {
        /* The refusal's own report reaches the report function too: one
         * that shuts down at every report is refused there without another
         * report, or it would recurse without end. */
        if (rcl__reporting_depth() <= 1)
            rcl__report("rcl_shutdown() from %s", why);
        return;
    }
    /* It joins the library's threads and holds init_lock: not
     * cancellable. */
    struct rcl__held_reports held, held_stop = { .n = 0 };
    int cancel = rcl__nocancel_begin();
    life_lock();
    bool stop = atomic_load(&rcl__ready) && !stopping;
    if (stop)
        stopping = true;
    life_unlock(&held);
    if (stop) {
        /* Joined with init_lock let go: one of them may be inside a report
         * function that forks, and fork() takes init_lock first (fork.c). */
        rcl__pressure_join();
        rcl__reclaim_stop();
        life_lock();
        rcl__pressure_stop();
        rcl__shrinkers_drop();
        rcl__lockdep_reset();
        rcl__lockdep_set_mode(RCL_LOCKDEP_OFF);
        rcl__account_stop();
        rcl__footprint_stop();
        rcl__depot_drain();
        rcl__slab_trim();
        rcl__bcache_trim();
        stopping = false;
        atomic_store_explicit(&rcl__ready, 0, memory_order_release);
        life_unlock(&held_stop);
    }
    rcl__nocancel_end(cancel);
    rcl__report_deliver(&held);
    rcl__report_deliver(&held_stop);
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c): init_lock is the first lock of the order                 */
/* ------------------------------------------------------------------------ */

void rcl__init_atfork_prepare(void) { pthread_mutex_lock(&init_lock); }
void rcl__init_atfork_parent(void) { pthread_mutex_unlock(&init_lock); }

void rcl__init_atfork_child(bool pressure)
{
    /* Forked while a shutdown waited for the library's threads: the thread
     * shutting down is not in the child, whose library runs on, and its
     * reclaimer, stopped already or not, starts again on demand. */
    if (stopping) {
        stopping = false;
        rcl__reclaim_start(&rcl__cfg);
    }
    if (pressure && atomic_load(&rcl__ready) == 1)
        atomic_store_explicit(&rcl__ready, RCL__READY_FORKED, memory_order_release);
    pthread_mutex_unlock(&init_lock);
}
