/* SPDX-License-Identifier: MIT */
/*
 * footprint.c - what the process really holds, against what it charged.
 *
 * The budget charges blocks (alloc.c). The process holds more: the
 * backend's per-block overhead and rounding, its arenas' fragmentation,
 * freed memory it keeps, and memory the program allocates without the
 * library. The kernel's memory cgroup charges pages, and its OOM killer
 * counts those, not our books. So the library measures: it reads the real
 * figure - the cgroup's usage when the budget is the cgroup's, the
 * process's resident memory otherwise - and keeps the difference from
 * what it charged as rcl__acct.outside, which every watermark test adds to
 * the charge (account.c). charged + outside is then the real footprint as
 * of the last sample, moved by every charge since.
 *
 * When: every `step` bytes charged from the budget (a small fraction of
 * the limit; never on the fast path, which works from per-thread stocks),
 * after every trim of the backend, on the pressure thread's tick, and when
 * the cgroup's usage crosses its threshold (pressure.c). A sample is one
 * pread() of a descriptor opened at start, a few microseconds; a thread
 * that finds a sample under way does not wait for it.
 *
 * Between reclaim's frees and the trim that gives them back, the freed
 * memory is still resident, and a sample counts it as held beside the
 * lower charge: reclaim frees as much again for it, and again at the next
 * sample, until the trim. Left for long, that empties the caches (seen: a
 * cache of 256 B - 4 KiB objects under 8 threads on glibc, emptied and
 * failing allocations at zero usage), so every reclaim's frees are owed a
 * trim, and trims come soon after them (reclaim.c, backend.h).
 *
 * Modes:
 *   cgroup  the budget is the automatic one from a cgroup limit: the
 *           cgroup's usage less the inactive page cache (which the
 *           kernel drops before it kills anyone) is the authority, and
 *           everything in it counts, other processes' memory included;
 *   rss     any other budget of 32 MiB or more: resident memory above
 *           what the process held when the library started counts (the
 *           program's memory from before stays out of the budget, what it
 *           adds after does not);
 *   off     a smaller budget the program set (charges alone: a thread's
 *           stack or a new malloc arena would be a large share of it, and
 *           cannot be told from the cache's own overhead), and under
 *           AddressSanitizer and ThreadSanitizer, whose shadow memory and
 *           quarantine are not the program's.
 * struct rcl_config.footprint (RECLAIM_FOOTPRINT) forces one of them.
 *
 * The rule is the budget's as it is now: rcl_set_limit() makes the budget
 * the program's (account.c), and the pressure thread sees the cgroup's
 * limit appear, go or move to another level (pressure.c); each time the
 * mode is chosen again. The rss mode's base is read at start whatever the
 * first mode, so that a switch to it keeps out what the program held
 * before the library started and counts all it added since, as rss mode
 * from the start would.
 */
#include "internal.h"
#include "backend.h"
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEP_DIV      64                 /* sample every limit/64 charged */
#define STEP_MIN      (256 * 1024UL)
/* Below this a budget is held to its charges alone: what the process adds
 * besides them (a thread's stack, a new malloc arena) is too large a share
 * of it to tell from its cache's own overhead. */
#define RSS_MIN_LIMIT (32 * 1024 * 1024UL)

static struct {
    _Atomic int    mode;                 /* RCL__FOOTPRINT_*, as samples read it */
    _Atomic bool   automatic;            /* the budget is still the automatic one */
    int            statm;                /* /proc/self/statm, or -1 */
    char           statm_path[PATH_MAX]; /* the name it was opened by */
    int            cg;                   /* usage of the cgroup whose limit gives
                                            the budget, or -1 */
    size_t         base;                 /* resident at start */
    size_t         page;
    _Atomic size_t inactive;             /* cgroup mode: from the pressure tick */
    _Atomic size_t step;
    _Atomic int    busy;
    _Atomic unsigned long samples;
} F = { .statm = -1, .cg = -1 };

static int statm_resident(int fd, size_t page, size_t *out)
{
    char buf[96];
    ssize_t n;
    do
        n = pread(fd, buf, sizeof(buf) - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    char *sp = strchr(buf, ' ');
    if (!sp)
        return -EINVAL;
    *out = (size_t)strtoull(sp + 1, NULL, 10) * page;
    return 0;
}

/* The real figure: 0 or -errno. Under F.busy, which keeps the mode and
 * the descriptors still. */
static int measure(size_t *real)
{
    if (rd(F.mode) == RCL__FOOTPRINT_CGROUP) {
        uint64_t usage;
        int err = rcl__read_fd_u64(F.cg, &usage);
        if (err)
            return err;
        size_t inactive = rd(F.inactive);
        *real = usage > inactive ? (size_t)(usage - inactive) : 0;
        return 0;
    }
    size_t rss;
    int err = statm_resident(F.statm, F.page, &rss);
    if (!err)
        *real = rss > F.base ? rss - F.base : 0;
    return err;
}

/* Under F.busy: rcl__acct.outside from a measure now. The mode is read
 * again here: a sample that saw the old one before a switch to off may
 * come in after it, and must store nothing. */
static void measure_outside(void)
{
    size_t real;

    if (rd(F.mode) == RCL__FOOTPRINT_OFF)
        return;
    wr(rcl__acct.since_sample, 0);
    /* The read is a cancellation point, and the caller may be half way
     * through a charge: a cancel waits for the program's next one. */
    int cancel = rcl__nocancel_begin();
    if (measure(&real) == 0) {
        size_t charged = rd(rcl__acct.charged);
        wr(rcl__acct.outside, real > charged ? real - charged : 0);
        atomic_fetch_add_explicit(&F.samples, 1, memory_order_relaxed);
    }
    rcl__nocancel_end(cancel);
}

void rcl__footprint_sample(void)
{
    if (rd(F.mode) == RCL__FOOTPRINT_OFF || atomic_exchange(&F.busy, 1))
        return;
    measure_outside();
    atomic_store(&F.busy, 0);
    if (rcl__headroom() < rd(rcl__acct.wm_low))
        rcl__reclaim_wake();
}

void rcl__footprint_charged(size_t bytes)
{
    size_t v = atomic_fetch_add_explicit(&rcl__acct.since_sample, bytes, memory_order_relaxed);
    if (unlikely(v + bytes >= rd(F.step)) && rd(F.mode) != RCL__FOOTPRINT_OFF)
        rcl__footprint_sample();
}

void rcl__footprint_limit(size_t limit)
{
    size_t step = limit / STEP_DIV;
    wr(F.step, step > STEP_MIN ? step : STEP_MIN);
}

void rcl__footprint_inactive(size_t bytes)
{
    wr(F.inactive, bytes);
}

int rcl__footprint_mode(void)
{
    return rd(F.mode);
}

unsigned long rcl__footprint_samples(void)
{
    return atomic_load_explicit(&F.samples, memory_order_relaxed);
}

/* The documented rule, for the budget and the files as they are now. A
 * mode whose file could not be opened gives way to the next: cgroup to
 * rss, rss to off. */
static int choose(void)
{
#ifdef RCL_SANITIZED
    return RCL__FOOTPRINT_OFF;
#else
    int want;
    switch (rcl__cfg.footprint) {
    case RCL_FOOTPRINT_OFF:    want = RCL__FOOTPRINT_OFF; break;
    case RCL_FOOTPRINT_RSS:    want = RCL__FOOTPRINT_RSS; break;
    case RCL_FOOTPRINT_CGROUP: want = RCL__FOOTPRINT_CGROUP; break;
    default:
        if (rd(F.automatic))
            want = RCL__FOOTPRINT_CGROUP;
        else
            want = rd(rcl__acct.limit) >= RSS_MIN_LIMIT ? RCL__FOOTPRINT_RSS
                                                        : RCL__FOOTPRINT_OFF;
    }
    if (want == RCL__FOOTPRINT_CGROUP && F.cg < 0)
        want = RCL__FOOTPRINT_RSS;      /* no cgroup limit gives the budget */
    if (want == RCL__FOOTPRINT_RSS && F.statm < 0)
        want = RCL__FOOTPRINT_OFF;
    return want;
#endif
}

/* Whether the cgroup's usage could ever be the measure of this budget. */
static bool cgroup_wanted(void)
{
#ifdef RCL_SANITIZED
    return false;
#else
    return rcl__cfg.footprint == RCL_FOOTPRINT_CGROUP ||
           (rcl__cfg.footprint == RCL_FOOTPRINT_AUTO && rd(F.automatic));
#endif
}

/* A switch waits out a sample under way, which is one pread(): switches
 * come with a new limit, rarely, and never from inside a sample. */
static void busy_lock(void)
{
    while (atomic_exchange(&F.busy, 1))
        sched_yield();
}

/*
 * The mode the rule gives now, with the cgroup's usage descriptor `cg`
 * (the old one is returned, for the caller to close). The registry lock
 * orders switches after the limit changes they follow and keeps fork()
 * out of a half-made one; F.busy keeps samples
 * out, so none reads a descriptor being replaced or stores a figure of
 * the old mode after the switch. The figure is measured again at once:
 * the old one may be the whole cgroup's, or none at all.
 */
static int switch_locked(int cg, size_t inactive)
{
    rcl__assert(rcl__registry_held());
    busy_lock();
    int old = F.cg;
    F.cg = cg;
    wr(F.inactive, inactive);
    int mode = choose();
    if (mode != rd(F.mode) || old != cg) {
        wr(F.mode, mode);
        wr(rcl__acct.outside, 0);
        measure_outside();
    }
    atomic_store(&F.busy, 0);
    return old;
}

/* close(2) is a cancellation point, and rcl_set_limit()'s caller holds
 * the registry lock here: a cancel acted on inside would end the thread
 * with it held. It waits for the caller's next cancellation point. */
static void close_nocancel(int fd)
{
    int cancel = rcl__nocancel_begin();
    close(fd);
    rcl__nocancel_end(cancel);
}

void rcl__footprint_follow(bool chosen)
{
    rcl__assert(rcl__registry_held());
    if (chosen)
        wr(F.automatic, false);
    int keep = cgroup_wanted() ? F.cg : -1;
    int old = switch_locked(keep, rd(F.inactive));
    if (old != keep)
        close_nocancel(old);            /* a budget the program set now */
}

/* The usage file of the cgroup level at `dir`, and its inactive page
 * cache; -1 when it cannot be opened. */
static int cgroup_open(const struct rcl_cgroup *cg, const char *dir, size_t *inactive)
{
    int fd = rcl__cgroup_usage_open(cg, dir);
    *inactive = fd >= 0 ? (size_t)rcl__cgroup_inactive_file(cg, dir) : 0;
    return fd >= 0 ? fd : -1;
}

void rcl__footprint_cgroup(const struct rcl_cgroup *cg, const char *dir)
{
    size_t inactive = 0;
    /* Opened before the lock: a file opened under it would hold up every
     * thread's slow path. */
    int fd = dir && cgroup_wanted() ? cgroup_open(cg, dir, &inactive) : -1;

    rcl__registry_lock();
    int old = switch_locked(fd, inactive);
    rcl__registry_unlock();
    if (old >= 0)
        close(old);
}

/* The level whose limit gives the automatic budget: its usage file. */
static void start_cgroup(void)
{
    struct rcl_cgroup cg;
    char dir[PATH_MAX];
    size_t inactive;

    if (!cgroup_wanted() || rcl__cgroup_find(&cg))
        return;
    uint64_t lim = rcl__cgroup_limit(&cg, dir, sizeof(dir));
    if (lim == RCL_CG_UNKNOWN || !rcl__cgroup_budget(lim))
        return;
    F.cg = cgroup_open(&cg, dir, &inactive);
    wr(F.inactive, inactive);
}

/* Resident memory now is the rss mode's base, whatever mode the budget
 * starts in: a switch to rss later (a new limit) then keeps out exactly
 * what the program held before the library started, and counts all it
 * added since, as a budget measured so from the start does. */
static void start_statm(void)
{
#ifndef RCL_SANITIZED
    if (rcl__cfg.footprint == RCL_FOOTPRINT_OFF)
        return;
    snprintf(F.statm_path, sizeof(F.statm_path), "%s/proc/self/statm", rcl__root_prefix());
    F.statm = open(F.statm_path, O_RDONLY | O_CLOEXEC);
    if (F.statm >= 0 && statm_resident(F.statm, F.page, &F.base)) {
        close(F.statm);
        F.statm = -1;
    }
#endif
}

static void fds_close(void)
{
    int *fds[] = { &F.statm, &F.cg };
    for (unsigned i = 0; i < 2; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

void rcl__footprint_start(bool auto_limit)
{
    fds_close();                        /* a start that failed after this one */
    F.page = rcl__page_size();
    F.base = 0;
    wr(F.automatic, auto_limit);
    wr(F.inactive, 0);
    wr(rcl__acct.outside, 0);
    wr(rcl__acct.since_sample, 0);
    rcl__footprint_limit(rd(rcl__acct.limit));
    start_statm();
    start_cgroup();
    wr(F.mode, choose());
    if (rd(F.mode) == RCL__FOOTPRINT_CGROUP)
        rcl__footprint_sample();
}

void rcl__footprint_stop(void)
{
    fds_close();
    wr(F.mode, RCL__FOOTPRINT_OFF);
    wr(rcl__acct.outside, 0);
}

/* fork() (fork.c): a parent thread that was reading is not in the child,
 * and "/proc/self" was resolved when the file was opened, so the child's
 * copy of the descriptor reads the parent's resident set. The prepare
 * handler holds the registry lock: no switch is half made here. Opened
 * again by the name the start gave it, not by RECLAIM_CGROUP_ROOT read
 * anew: a bad value is reported, and a report here would run the
 * program's function while the locks after this handler are still held,
 * where a call of its into the library waits for ever. */
void rcl__footprint_atfork_child(void)
{
    atomic_store(&F.busy, 0);
    if (F.statm < 0)
        return;
    int fd = open(F.statm_path, O_RDONLY | O_CLOEXEC);
    close(F.statm);
    F.statm = fd;
    if (fd < 0)
        wr(F.mode, choose());
}
