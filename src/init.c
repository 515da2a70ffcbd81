/*
 * init.c - life cycle and configuration: defaults, the RECLAIM_*
 * environment, rcl_init() and rcl_shutdown().
 *
 * Every entry point that needs the budget calls rcl__ensure_init(), so a
 * program that never calls rcl_init() gets the defaults and its
 * environment on first use. init_lock serialises all of this; the hot paths
 * never take it (they test rcl__ready, or their own per-thread epoch).
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

int (*rcl__thread_create_hook)(pthread_t *th, void *(*fn)(void *), void *arg,
                               const char *what);

int rcl__thread_start(pthread_t *th, void *(*fn)(void *), void *arg, const char *what)
{
    sigset_t all, old;
    int err;

    /* Library threads take no signals: a program's handlers expect to run
     * on its own threads, and could take locks ours hold. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (rcl__thread_create_hook)
        err = rcl__thread_create_hook(th, fn, arg, what);
    else
        err = pthread_create(th, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

_Atomic int      rcl__ready;
_Atomic unsigned rcl__epoch;
struct rcl_config rcl__cfg;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

#define DEFAULT_MIN_PCT  2
#define DEFAULT_LOW_PCT  5
#define DEFAULT_HIGH_PCT 10
#define DEFAULT_STALL_MS 10000

#ifdef RCL_DEBUG
#define DEFAULT_LOCKDEP RCL_LOCKDEP_ON
#else
#define DEFAULT_LOCKDEP RCL_LOCKDEP_OFF
#endif

int rcl__parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;

    if (errno || end == s || *s == '-')
        return -EINVAL;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (*end == 'i' && shift)
        end++;
    if ((*end == 'b' || *end == 'B') && shift)
        end++;
    if (*end != '\0' || (shift && v > (SIZE_MAX >> shift)))
        return -EINVAL;
    *out = (size_t)(v << shift);
    return 0;
}

static void env_size(const char *name, size_t *field)
{
    const char *s = getenv(name);
    size_t v;
    if (!s)
        return;
    if (rcl__parse_size(s, &v) == 0)
        *field = v;
    else
        rcl__report("%s=\"%s\" is not a size (try 256M); ignored", name, s);
}

static void env_uint(const char *name, unsigned *field, unsigned max)
{
    const char *s = getenv(name);
    size_t v;
    if (!s)
        return;
    if (rcl__parse_size(s, &v) == 0 && v <= max)
        *field = (unsigned)v;
    else
        rcl__report("%s=\"%s\" is not a number from 0 to %u; ignored", name, s, max);
}

static void env_bool(const char *name, int *field)
{
    const char *s = getenv(name);
    if (!s)
        return;
    if (!strcmp(s, "0") || !strcmp(s, "off") || !strcmp(s, "no"))
        *field = 0;
    else if (!strcmp(s, "1") || !strcmp(s, "on") || !strcmp(s, "yes"))
        *field = 1;
    else
        rcl__report("%s=\"%s\" is not 0 or 1; ignored", name, s);
}

void rcl_config_default(struct rcl_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->min_pct = DEFAULT_MIN_PCT;
    cfg->low_pct = DEFAULT_LOW_PCT;
    cfg->high_pct = DEFAULT_HIGH_PCT;
    cfg->background = 1;
    cfg->pressure = 1;
    cfg->lockdep = DEFAULT_LOCKDEP;
    cfg->stall_ms = DEFAULT_STALL_MS;

    env_size("RECLAIM_LIMIT", &cfg->limit);
    env_size("RECLAIM_RESERVE", &cfg->reserve);
    env_uint("RECLAIM_MIN_PCT", &cfg->min_pct, 99);
    env_uint("RECLAIM_LOW_PCT", &cfg->low_pct, 99);
    env_uint("RECLAIM_HIGH_PCT", &cfg->high_pct, 99);
    env_uint("RECLAIM_STALL_MS", &cfg->stall_ms, 86400000u);
    env_bool("RECLAIM_BACKGROUND", &cfg->background);
    env_bool("RECLAIM_PRESSURE", &cfg->pressure);

    const char *ld = getenv("RECLAIM_LOCKDEP");
    if (ld) {
        if (!strcmp(ld, "verbose") || !strcmp(ld, "2"))
            cfg->lockdep = RCL_LOCKDEP_VERBOSE;
        else
            env_bool("RECLAIM_LOCKDEP", &cfg->lockdep);
    }
}

/* Fills the zeros with defaults; -EINVAL when the result cannot work. */
static int config_resolve(struct rcl_config *cfg)
{
    if (!cfg->min_pct)  cfg->min_pct = DEFAULT_MIN_PCT;
    if (!cfg->low_pct)  cfg->low_pct = DEFAULT_LOW_PCT;
    if (!cfg->high_pct) cfg->high_pct = DEFAULT_HIGH_PCT;
    if (!cfg->stall_ms) cfg->stall_ms = DEFAULT_STALL_MS;
    if (!(cfg->min_pct < cfg->low_pct && cfg->low_pct < cfg->high_pct && cfg->high_pct < 100))
        return -EINVAL;
    if (cfg->lockdep < RCL_LOCKDEP_OFF || cfg->lockdep > RCL_LOCKDEP_VERBOSE)
        return -EINVAL;
    if (!cfg->limit)
        cfg->limit = rcl_auto_limit();
    if (cfg->reserve >= cfg->limit)
        return -EINVAL;
    return 0;
}

static void print_stats_at_exit(void)
{
    if (atomic_load(&rcl__ready))
        rcl_stats_print(stderr, 0);
}

static int start_locked(const struct rcl_config *cfg_in)
{
    static bool atexit_done;
    struct rcl_config cfg = *cfg_in;
    int err = config_resolve(&cfg);

    if (err)
        return err;
    rcl__cfg = cfg;

    /* Block headers keep the low 16 bits of the epoch, and 0 there means
     * "no thread attached": skip such epochs. */
    unsigned epoch = atomic_load(&rcl__epoch) + 1;
    if (!(epoch & 0xffff))
        epoch++;
    atomic_store(&rcl__epoch, epoch);
    rcl__stats_reset();
    atomic_store(&rcl__lockdep_mode, cfg.lockdep);
    rcl__lockdep_thread_attach();

    err = rcl__account_start(&cfg);
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

    const char *st = getenv("RECLAIM_STATS");
    if (st && !strcmp(st, "1") && !atexit_done) {
        atexit_done = true;
        atexit(print_stats_at_exit);
    }
    return 0;
}

int rcl_init(const struct rcl_config *cfg)
{
    struct rcl_config def;
    int err;

    if (!cfg) {
        rcl_config_default(&def);
        cfg = &def;
    }
    rcl__fork_register();
    /* Starting reads files (cgroups, PSI): cancellation points, under
     * init_lock. */
    int cancel = rcl__nocancel_begin();
    pthread_mutex_lock(&init_lock);
    err = atomic_load(&rcl__ready) ? -EBUSY : start_locked(cfg);
    pthread_mutex_unlock(&init_lock);
    rcl__nocancel_end(cancel);
    return err;
}

int rcl__init_slow(void)
{
    int err = 0;

    rcl__fork_register();
    int cancel = rcl__nocancel_begin();
    pthread_mutex_lock(&init_lock);
    if (atomic_load(&rcl__ready) == RCL__READY_FORKED) {
        /* A forked child: the configuration stands, only the pressure
         * thread has to come back. */
        rcl__pressure_restart();
        atomic_store_explicit(&rcl__ready, 1, memory_order_release);
    } else if (!atomic_load(&rcl__ready)) {
        struct rcl_config cfg;
        rcl_config_default(&cfg);
        err = start_locked(&cfg);
        if (err) {
            /* The environment asked for something impossible: say so and
             * run on plain defaults rather than not at all. */
            rcl__report("configuration from the environment is invalid (%s); using defaults",
                        strerror(-err));
            memset(&cfg, 0, sizeof(cfg));
            cfg.background = 1;
            err = start_locked(&cfg);
        }
    }
    pthread_mutex_unlock(&init_lock);
    rcl__nocancel_end(cancel);
    return err;
}

void rcl_shutdown(void)
{
    /* It joins the library's threads under init_lock: not cancellable. */
    int cancel = rcl__nocancel_begin();
    pthread_mutex_lock(&init_lock);
    if (atomic_load(&rcl__ready)) {
        rcl__pressure_stop();
        rcl__reclaim_stop();
        rcl__shrinkers_drop();
        rcl__lockdep_reset();
        atomic_store(&rcl__lockdep_mode, RCL_LOCKDEP_OFF);
        rcl__lockdep_thread_attach();
        rcl__account_stop();
        atomic_store_explicit(&rcl__ready, 0, memory_order_release);
    }
    pthread_mutex_unlock(&init_lock);
    rcl__nocancel_end(cancel);
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c): init_lock is the first lock of the order                 */
/* ------------------------------------------------------------------------ */

void rcl__init_atfork_prepare(void) { pthread_mutex_lock(&init_lock); }
void rcl__init_atfork_parent(void) { pthread_mutex_unlock(&init_lock); }

void rcl__init_atfork_child(bool pressure)
{
    if (pressure && atomic_load(&rcl__ready) == 1)
        atomic_store_explicit(&rcl__ready, RCL__READY_FORKED, memory_order_release);
    pthread_mutex_unlock(&init_lock);
}
