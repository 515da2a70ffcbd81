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
 */
#include "internal.h"
#include "backend.h"
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
    int            mode;                 /* RCL__FOOTPRINT_* */
    int            fd;                   /* cgroup usage, or /proc/self/statm */
    size_t         base;                 /* rss mode: resident at start */
    size_t         page;
    _Atomic size_t inactive;             /* cgroup mode: from the pressure tick */
    _Atomic size_t step;
    _Atomic int    busy;
    _Atomic unsigned long samples;
} F = { .fd = -1 };

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

/* The real figure: 0 or -errno. */
static int measure(size_t *real)
{
    if (F.mode == RCL__FOOTPRINT_CGROUP) {
        uint64_t usage;
        int err = rcl__read_fd_u64(F.fd, &usage);
        if (err)
            return err;
        size_t inactive = rd(F.inactive);
        *real = usage > inactive ? (size_t)(usage - inactive) : 0;
        return 0;
    }
    size_t rss;
    int err = statm_resident(F.fd, F.page, &rss);
    if (!err)
        *real = rss > F.base ? rss - F.base : 0;
    return err;
}

void rcl__footprint_sample(void)
{
    size_t real;

    if (F.mode == RCL__FOOTPRINT_OFF || atomic_exchange(&F.busy, 1))
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
    atomic_store(&F.busy, 0);
    if (rcl__headroom() < rd(rcl__acct.wm_low))
        rcl__reclaim_wake();
}

void rcl__footprint_charged(size_t bytes)
{
    size_t v = atomic_fetch_add_explicit(&rcl__acct.since_sample, bytes, memory_order_relaxed);
    if (unlikely(v + bytes >= rd(F.step)) && F.mode != RCL__FOOTPRINT_OFF)
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
    return F.mode;
}

unsigned long rcl__footprint_samples(void)
{
    return atomic_load_explicit(&F.samples, memory_order_relaxed);
}

static int want_mode(bool auto_limit, bool cgroup_budget)
{
#ifdef RCL_SANITIZED
    (void)auto_limit;
    (void)cgroup_budget;
    return RCL__FOOTPRINT_OFF;
#else
    switch (rcl__cfg.footprint) {
    case RCL_FOOTPRINT_OFF:    return RCL__FOOTPRINT_OFF;
    case RCL_FOOTPRINT_RSS:    return RCL__FOOTPRINT_RSS;
    case RCL_FOOTPRINT_CGROUP: return RCL__FOOTPRINT_CGROUP;
    default:
        if (cgroup_budget && auto_limit)
            return RCL__FOOTPRINT_CGROUP;
        return auto_limit || rd(rcl__acct.limit) >= RSS_MIN_LIMIT ? RCL__FOOTPRINT_RSS
                                                                  : RCL__FOOTPRINT_OFF;
    }
#endif
}

void rcl__footprint_start(bool auto_limit)
{
    struct rcl_cgroup cg;
    char dir[PATH_MAX];
    bool by_cgroup = false;

    if (rcl__cgroup_find(&cg) == 0) {
        uint64_t lim = rcl__cgroup_limit(&cg, dir, sizeof(dir));
        by_cgroup = lim != RCL_CG_UNKNOWN && rcl__cgroup_budget(lim) != 0;
    }
    F.mode = want_mode(auto_limit, by_cgroup);
    if (F.mode == RCL__FOOTPRINT_CGROUP && !by_cgroup)
        F.mode = RCL__FOOTPRINT_RSS;        /* asked for, but no cgroup limit */
    F.page = rcl__page_size();
    F.base = 0;
    wr(F.inactive, 0);
    wr(rcl__acct.outside, 0);
    wr(rcl__acct.since_sample, 0);
    rcl__footprint_limit(rd(rcl__acct.limit));
    if (F.mode == RCL__FOOTPRINT_CGROUP) {
        F.fd = rcl__cgroup_usage_open(&cg, dir);
        if (F.fd >= 0) {
            wr(F.inactive, (size_t)rcl__cgroup_inactive_file(&cg, dir));
            rcl__footprint_sample();
            return;
        }
        F.mode = RCL__FOOTPRINT_RSS;
    }
    if (F.mode == RCL__FOOTPRINT_RSS) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/proc/self/statm", rcl__root_prefix());
        F.fd = open(path, O_RDONLY | O_CLOEXEC);
        if (F.fd < 0 || statm_resident(F.fd, F.page, &F.base)) {
            if (F.fd >= 0)
                close(F.fd);
            F.fd = -1;
            F.mode = RCL__FOOTPRINT_OFF;
        }
    }
}

void rcl__footprint_stop(void)
{
    if (F.fd >= 0)
        close(F.fd);
    F.fd = -1;
    F.mode = RCL__FOOTPRINT_OFF;
    wr(rcl__acct.outside, 0);
}

/* fork() (fork.c): a parent thread that was reading is not in the child,
 * and "/proc/self" was resolved when the file was opened, so the child's
 * copy of the descriptor reads the parent's resident set. */
void rcl__footprint_atfork_child(void)
{
    atomic_store(&F.busy, 0);
    if (F.mode != RCL__FOOTPRINT_RSS || F.fd < 0)
        return;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/proc/self/statm", rcl__root_prefix());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    close(F.fd);
    F.fd = fd;
    if (fd < 0)
        F.mode = RCL__FOOTPRINT_OFF;
}
