/* SPDX-License-Identifier: MIT */
/*
 * pressure.c - memory pressure from outside the process turned into cache
 * shrinking: PSI triggers, systemd's memory-pressure protocol, the cgroup's
 * usage near its limit (a 1 s tick, and on cgroup v1 a usage threshold the
 * kernel signals at once), the thread that waits for them, and the step
 * policy (how much one signal asks to shrink). Where the cgroup is, what
 * it says, and the automatic budget its limit gives (rcl_auto_limit(),
 * which needs no thread) are cgroup.c's; this thread only brings a new
 * limit to it.
 *
 * Threading: at most one thread, "rcl-pressure", only with pressure = 1 and
 * only when there is something to watch. It sleeps in poll() on the PSI
 * trigger (or systemd's FIFO/socket), the threshold eventfd and a stop
 * eventfd, with a 1 s timeout only when a cgroup must be re-read. It never
 * allocates from the budget; it asks the reclaimer to shrink
 * (rcl__reclaim_request) or, without a background reclaimer, reclaims
 * itself with rcl_reclaim(). In steady state it opens no file and touches
 * no new memory: the cgroup's files, and /proc/self/cgroup that tells the
 * process moved to another group, are opened once at start and read with
 * pread (cgroup.c explains why); a move opens the new group's.
 */
#include "internal.h"
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define TICK_MS            1000        /* cgroup re-read period */
#define FAST_TICK_MS       10          /* footprint read period near the limit */
#define EVENT_GAP_NS       500000000ULL /* at most two shrink requests a second */
#define PSI_TRIGGER        "some 150000 1000000"  /* 150 ms stalled in 1 s */
#define PSI_TRIGGER_UNPRIV "some 300000 2000000"  /* unprivileged: N*2 s windows */
/* ------------------------------------------------------------------------ */
/* Pressure sources                                                          */
/* ------------------------------------------------------------------------ */

enum watch_kind { WATCH_NONE, WATCH_PSI, WATCH_FIFO, WATCH_SOCKET };

static struct {
    pthread_t       thread;
    bool            running;
    bool            joined;         /* running, but the thread is gone */
    int             stop_fd;
    int             watch_fd;
    enum watch_kind kind;
    bool            events_off;     /* MEMORY_PRESSURE_WATCH=/dev/null */
    bool            watch_own;      /* watch_fd is the PSI trigger we chose,
                                       picked again for a new cgroup */
    struct rcl_cgroup cg;           /* version 0: none */
    struct rcl_cgroup_files files;  /* its files, opened once */
    int             self_fd;        /* /proc/self/cgroup, read each tick */
    uint64_t        self_seen;      /* its fingerprint when cg was last found
                                       (0: unread): all of it, the memory
                                       line may lie past any buffer's end */
    bool            regrouped;      /* cg changed: the footprint and the
                                       threshold follow at the tick */
    bool            auto_limit;     /* the budget follows the cgroup */
    uint64_t        cg_limit;       /* the cgroup limit last seen */
    unsigned        level;          /* the files' level that sets it */
    int             thresh_fd;      /* v1 usage threshold eventfd, or -1 */
    uint64_t        armed_inactive; /* the inactive page cache it was armed for */
    int             armed_mode;     /* and the footprint's mode */
    unsigned long long last_event;
} watcher = { .stop_fd = -1, .watch_fd = -1, .thresh_fd = -1, .self_fd = -1 };

static _Atomic long long open_report;
static __thread bool on_pressure_thread;

/* Held while the running thread opens or closes one of the watcher's
 * descriptors, and by fork() (rcl__pressure_atfork_prepare): a child
 * forked in between inherited descriptors not yet recorded, which nothing
 * there closes, or closed a number already closed and perhaps reused.
 * The footprint's cgroup descriptor, which the thread opens for it, is
 * changed under it too, and so are the group's files when the process
 * moves to another group (their array allocated with them: fork() takes
 * the allocator's locks after this one). Nothing is reported under it,
 * and the only lock taken under it is the registry's, which fork() takes
 * after it. */
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;

bool rcl__is_pressure_thread(void) { return on_pressure_thread; }

_Atomic unsigned long rcl__pressure_ticks;

unsigned long long (*_Atomic rcl__pressure_clock)(void) = rcl__now_ns;

/*
 * A report function or a shrinker's callback that forked on this thread
 * and returned in the child: rcl__pressure_atfork_child() closed the
 * sources and freed the group's files there, and the child's own thread,
 * which comes back on demand, sets the watcher up anew. The copy must not
 * touch the watcher again: it went on with the tick on the freed files,
 * or polled beside the child's thread for ever, never joined, and a child
 * with no other thread never ended. It ends instead, as a workqueue's
 * thread does when a work item forks.
 */
static bool forked_here(void)
{
    return !on_pressure_thread;
}

/* Standard base64 (systemd writes MEMORY_PRESSURE_WRITE with it); -1 on a
 * character outside the alphabet. Padding and whitespace are skipped. */
static ssize_t base64_decode(const char *in, unsigned char *out, size_t cap)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    for (; *in; in++) {
        if (*in == '=' || *in == '\n' || *in == ' ')
            continue;
        const char *p = strchr(alphabet, *in);
        if (!p)
            return -1;
        acc = (acc << 6) | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return (ssize_t)n;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A PSI trigger, as Documentation/accounting/psi.rst describes: one
 * trigger per open file, written with its NUL, then POLLPRI. First 150 ms
 * of stall in a 1 s window; where that is refused, 300 ms in 2 s (an
 * unprivileged process may only use windows that are multiples of 2 s). */
static int psi_open(const char *path)
{
    static const char *const triggers[] = { PSI_TRIGGER, PSI_TRIGGER_UNPRIV };
    int err = -ENOENT;
    for (unsigned i = 0; i < 2; i++) {
        int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        err = write_all(fd, triggers[i], strlen(triggers[i]) + 1);
        if (!err)
            return fd;
        close(fd);
        /* EPERM/EACCES: unprivileged on a kernel that wants 2 s windows;
         * EINVAL: a kernel that cannot run the fast (RT) monitor gives
         * only the 2 s aggregation. Either way the slower trigger works. */
        if (err != -EPERM && err != -EACCES && err != -EINVAL)
            break;
    }
    return err;
}

/* systemd's memory-pressure protocol (MemoryPressureWatch=, see
 * systemd.io/MEMORY_PRESSURE): $MEMORY_PRESSURE_WATCH names a PSI file
 * (POLLPRI), a FIFO or an AF_UNIX stream socket (POLLIN, data discarded);
 * $MEMORY_PRESSURE_WRITE, base64, is written to it first; "/dev/null"
 * turns pressure handling off (the tick still moves an automatic budget
 * with the cgroup limit, which is no pressure). Without the WRITE variable a PSI file gets
 * our own default trigger, as it would have no trigger at all otherwise. */
static int systemd_open(const char *watch, enum watch_kind *kind)
{
    const char *w64 = getenv("MEMORY_PRESSURE_WRITE");
    unsigned char data[512];
    ssize_t dlen = 0;
    if (w64 && *w64 && (dlen = base64_decode(w64, data, sizeof(data))) < 0)
        return -EINVAL;
    struct stat st;
    if (stat(watch, &st) < 0)
        return -errno;
    int fd;
    if (S_ISREG(st.st_mode)) {
        *kind = WATCH_PSI;
        if (!dlen)
            return psi_open(watch);
        if ((fd = open(watch, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0)
            return -errno;
    } else if (S_ISFIFO(st.st_mode)) {
        /* Read-write, so that the FIFO never reads as hung up (which
         * would make poll() return at once, forever) when writers leave. */
        *kind = WATCH_FIFO;
        if ((fd = open(watch, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0)
            return -errno;
    } else if (S_ISSOCK(st.st_mode)) {
        *kind = WATCH_SOCKET;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(watch) >= sizeof(sa.sun_path))
            return -ENAMETOOLONG;
        strcpy(sa.sun_path, watch);
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
            return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
            int err = -errno;
            close(fd);
            return err;
        }
    } else {
        return -EINVAL;
    }
    int err = dlen ? write_all(fd, data, (size_t)dlen) : 0;
    if (err) {
        close(fd);
        return err;
    }
    return fd;
}

/* The PSI trigger of the cgroup's own memory.pressure (v2), else of the
 * system's /proc/pressure/memory. -errno. */
static int psi_for(const struct rcl_cgroup *cg)
{
    char path[PATH_MAX];
    int fd = -ENOENT;
    if (cg->version == 2 &&
        snprintf(path, sizeof(path), "%s/memory.pressure", cg->dir) < (int)sizeof(path))
        fd = psi_open(path);
    if (fd < 0) {
        snprintf(path, sizeof(path), "%s/proc/pressure/memory", rcl__root_prefix());
        fd = psi_open(path);
    }
    return fd;
}

/* Picks the source: systemd's variable when set, else the cgroup's own
 * memory.pressure (v2), else the system's /proc/pressure/memory.
 * MEMORY_PRESSURE_WATCH and MEMORY_PRESSURE_WRITE are not the library's
 * knobs (those are the RECLAIM_* table, options.c): the service manager
 * sets them, as systemd's memory-pressure protocol defines, and they are
 * read here, where that protocol is followed. */
static void watch_open(void)
{
    const char *watch = getenv("MEMORY_PRESSURE_WATCH");
    int fd;
    if (watch && *watch) {
        if (!strcmp(watch, "/dev/null")) {
            watcher.events_off = true;
            return;
        }
        fd = systemd_open(watch, &watcher.kind);
        if (fd >= 0) {
            watcher.watch_fd = fd;
            return;
        }
        rcl__report_limited(&open_report, "MEMORY_PRESSURE_WATCH=%s cannot be watched (%s); "
                            "using PSI directly", watch, strerror(-fd));
    }
    fd = psi_for(&watcher.cg);
    if (fd >= 0) {
        watcher.watch_fd = fd;
        watcher.kind = WATCH_PSI;
        watcher.watch_own = true;
    }
}

/* ------------------------------------------------------------------------ */
/* Turning signals into shrinking                                            */
/* ------------------------------------------------------------------------ */

/* The documented step: one eighth of what the library holds, or what it
 * takes to restore the wanted headroom when that is more. */
static void shrink(size_t want)
{
    unsigned long long now = rd(rcl__pressure_clock)();
    if (watcher.last_event && now - watcher.last_event < EVENT_GAP_NS)
        return;
    size_t usage = rcl_usage();
    size_t step = usage / 8;
    if (want < step)
        want = step;
    if (want > usage)
        want = usage;
    if (!want)
        return;
    watcher.last_event = now;
    if (rcl__cfg.background)
        rcl__reclaim_request(want);
    else
        rcl_reclaim(want, RCL_DEFAULT);
}

/* One of the running thread's sources, gone: closed under fd_lock. */
static void source_close(int *fd)
{
    pthread_mutex_lock(&fd_lock);
    close(*fd);
    *fd = -1;
    pthread_mutex_unlock(&fd_lock);
}

/* The source fired. PSI: POLLPRI (POLLERR: the cgroup went away). FIFO and
 * socket: drain what was written; end of stream closes the source. */
static void watch_event(short revents)
{
    if (watcher.kind == WATCH_PSI) {
        if (revents & (POLLERR | POLLNVAL))
            source_close(&watcher.watch_fd);
        else
            shrink(0);
        return;
    }
    char buf[256];
    bool got = false, eof = (revents & (POLLHUP | POLLERR | POLLNVAL)) != 0;
    for (;;) {
        ssize_t n = read(watcher.watch_fd, buf, sizeof(buf));
        if (n > 0) {
            got = true;
            continue;
        }
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            eof = true;
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    if (got)
        shrink(0);
    /* In a forked child the descriptor may be the child's thread's now. */
    if (eof && !forked_here())
        source_close(&watcher.watch_fd);
}

/*
 * cgroup v1: the kernel signals the moment the cgroup's usage crosses the
 * point where the budget's headroom falls below its low watermark, so the
 * reclaimer starts within milliseconds rather than at the next tick; the
 * 1 s tick stays for everything else. The kernel compares its raw usage,
 * while the footprint leaves the inactive page cache out: the threshold
 * sits that much higher, or an event would find the headroom still above
 * low and wait for the tick. Armed while the budget is the cgroup's
 * (footprint.c measures by the cgroup then); re-armed when the limit
 * moves, when the footprint's measure changes (a limit the program sets
 * takes it off the cgroup), and when the inactive page cache has moved by
 * more than REARM_DIV of the limit. Arming opens files, which happens at
 * start and on such a change, not in steady state.
 */
#define REARM_DIV 64
static void threshold_arm_locked(uint64_t inactive)
{
    rcl__assert_held(&fd_lock);
    if (watcher.thresh_fd >= 0)
        close(watcher.thresh_fd);
    watcher.thresh_fd = -1;
    watcher.armed_inactive = inactive;
    watcher.armed_mode = rcl__footprint_mode();
    if (watcher.cg.version != 1 || !watcher.auto_limit || watcher.cg_limit == RCL_CG_NONE ||
        watcher.cg_limit == RCL_CG_UNKNOWN || rcl__footprint_mode() != RCL__FOOTPRINT_CGROUP)
        return;
    /* Not rcl_limit(): in a child, rcl__init_slow() arms it with init_lock
     * held, before the library reads as started, and rcl_limit() would
     * start it again, waiting for that lock. */
    size_t limit = rd(rcl__acct.limit), low = rd(rcl__acct.wm_low);
    char dir[PATH_MAX];
    rcl__cgroup_level_dir(&watcher.cg, watcher.level, dir, sizeof(dir));
    int fd = rcl__cgroup_threshold(&watcher.cg, dir,
                                   (limit > low ? limit - low : limit) + inactive);
    if (fd >= 0)
        watcher.thresh_fd = fd;
}

static void threshold_arm(uint64_t inactive)
{
    pthread_mutex_lock(&fd_lock);
    threshold_arm_locked(inactive);
    pthread_mutex_unlock(&fd_lock);
}

static bool threshold_stale(uint64_t inactive)
{
    uint64_t step = rcl_limit() / REARM_DIV;
    return inactive > watcher.armed_inactive + step || inactive + step < watcher.armed_inactive ||
           watcher.armed_mode != rcl__footprint_mode();
}

static void threshold_event(void)
{
    uint64_t n;
    if (read(watcher.thresh_fd, &n, sizeof(n)) < 0 && errno != EAGAIN) {
        source_close(&watcher.thresh_fd);
        return;
    }
    rcl__count(cgroup_events, 1);
    rcl__footprint_sample();
    /* Read once: headroom read again could have risen past wm_high
     * meanwhile, and the difference would wrap to a request for all. */
    size_t headroom = rcl__headroom();
    if (headroom >= rd(rcl__acct.wm_low))
        return;
    /* A request, not a wake-up: it also ends a backoff the reclaimer took
     * after finding nothing to free, since this is news. wm_low is below
     * wm_high, but both may move under a limit changed meanwhile. */
    size_t high = rd(rcl__acct.wm_high);
    if (high <= headroom)
        return;
    size_t want = high - headroom;
    if (rcl__cfg.background)
        rcl__reclaim_request(want);
    else
        rcl_reclaim(want, RCL_DEFAULT);
}

/* The footprint measures by the cgroup only while its limit gives the
 * budget, at the level that sets it (footprint.c). Before the budget
 * moves: the wake-up a new limit makes then tests the new measure. */
static void footprint_follow(uint64_t lim, unsigned level)
{
    char dir[PATH_MAX];
    bool budget = rcl__cgroup_budget(lim) != 0;

    if (forked_here())
        return;
    if (budget)
        rcl__cgroup_level_dir(&watcher.cg, level, dir, sizeof(dir));
    pthread_mutex_lock(&fd_lock);
    rcl__footprint_cgroup(&watcher.cg, budget ? dir : NULL);
    pthread_mutex_unlock(&fd_lock);
}

/* The group's name below its mount point, for a report. */
static const char *cgroup_name(const struct rcl_cgroup *cg)
{
    return cg->dir[cg->top] ? cg->dir + cg->top : "/";
}

/*
 * The process moved to another memory cgroup since it was found: systemd
 * changing a unit's slice, a container runtime writing the pid to another
 * group's cgroup.procs. The old group's limit binds the process no more,
 * and once that group is removed its files read nothing - or, on v1, only
 * the levels above it do: a looser limit, and the budget grew. So
 * /proc/self/cgroup, kept open, is read again at each tick with pread,
 * all of it (a hybrid system's memory line may lie past its first 4 KiB),
 * and only a change in it looks the group up again, which opens files
 * (mountinfo, the new group's): on a move, not in steady state. A new
 * group that no mount shows (reported by the look-up) leaves the old one
 * followed, as before the move. A look-up that could not read the mounts
 * at all (no descriptor free) says nothing of the new group: the move is
 * looked up again at the next tick.
 */
static bool cgroup_moved(struct rcl_cgroup *cg)
{
    uint64_t now;
    if (rcl__pread_hash(watcher.self_fd, &now) || now == watcher.self_seen)
        return false;
    int err = rcl__cgroup_find(cg);
    if (forked_here())
        return false;                   /* forked in the look-up's report */
    if (err != -ENOENT)
        watcher.self_seen = now;
    if (err)
        return false;
    return cg->version != watcher.cg.version || strcmp(cg->dir, watcher.cg.dir) != 0;
}

/* The new group's files in place of the old one's, and our PSI trigger
 * on its memory.pressure, under fd_lock as every descriptor change of the
 * running thread; the footprint and the threshold follow at the tick. */
static void cgroup_regroup(const struct rcl_cgroup *cg)
{
    char from[PATH_MAX];

    snprintf(from, sizeof(from), "%s", cgroup_name(&watcher.cg));
    pthread_mutex_lock(&fd_lock);
    rcl__cgroup_files_close(&watcher.files);
    watcher.cg = *cg;
    rcl__cgroup_files_open(&watcher.cg, &watcher.files);
    if (watcher.watch_own) {
        if (watcher.watch_fd >= 0)
            close(watcher.watch_fd);
        int fd = psi_for(&watcher.cg);
        watcher.watch_fd = fd < 0 ? -1 : fd;
    }
    watcher.regrouped = true;
    pthread_mutex_unlock(&fd_lock);
    if (watcher.auto_limit)
        rcl__report("the process moved from memory cgroup \"%.256s\" to \"%.256s\" "
                    "(cgroup v%d); the budget now follows \"%.256s\"'s limit",
                    from, cgroup_name(cg), cg->version, cgroup_name(cg));
    else
        rcl__report("the process moved from memory cgroup \"%.256s\" to \"%.256s\" "
                    "(cgroup v%d); the budget is the program's and stays, and usage "
                    "near \"%.256s\"'s limit is pressure now",
                    from, cgroup_name(cg), cg->version, cgroup_name(cg));
}

/* The 1 s tick: follow the process to another cgroup and the cgroup
 * limit, refresh the footprint, and treat usage close to the cgroup limit
 * as pressure. Without swap the kernel has nothing to reclaim from a
 * cache of anonymous memory, so a cgroup running into its limit stalls
 * only moments before its OOM kill: PSI alone would come too late. */
static void cgroup_tick(void)
{
    struct rcl_cgroup cg;
    unsigned level;

    if (cgroup_moved(&cg))
        cgroup_regroup(&cg);
    if (forked_here())
        return;
    uint64_t lim = rcl__cgroup_files_limit(&watcher.files, &level);
    if (lim == RCL_CG_UNKNOWN)
        return;                          /* unreadable this time: change nothing */
    bool moved = watcher.regrouped || lim != watcher.cg_limit || level != watcher.level;
    watcher.regrouped = false;
    if (moved)
        footprint_follow(lim, level);
    if (forked_here())
        return;
    if (watcher.auto_limit && lim != watcher.cg_limit && !rcl__auto_limit_follow(lim))
        watcher.auto_limit = false;     /* the program chose a limit since */
    if (forked_here())
        return;
    watcher.cg_limit = lim;
    watcher.level = level;
    uint64_t usage, inactive;
    if (lim == RCL_CG_NONE ||
        rcl__cgroup_files_working_set(&watcher.files, level, &usage, &inactive)) {
        if (moved)
            threshold_arm(watcher.armed_inactive);
        return;
    }
    if (moved || threshold_stale(inactive))
        threshold_arm(inactive);
    rcl__footprint_inactive((size_t)inactive);
    rcl__footprint_sample();
    if (forked_here() || watcher.events_off)
        return;
    uint64_t ws = usage > inactive ? usage - inactive : 0;
    uint64_t headroom = ws < lim ? lim - ws : 0;
    uint64_t low = rcl__pct_of(lim, rcl__cfg.low_pct), high = rcl__pct_of(lim, rcl__cfg.high_pct);
    if (headroom < low)
        shrink((size_t)(high - headroom));
}

/* Near the cgroup's limit the footprint is read every FAST_TICK_MS, not
 * only at the threshold event: the kernel has been seen to leave a v1
 * crossing unsignalled until the next full tick (0.2 - 0.8 s, about one
 * run in four here), and a cache can fill the rest of the cgroup in that
 * time. A fast tick is one pread() of the usage file kept open, a few
 * microseconds. */
static int tick_ms(void)
{
    if (!watcher.cg.version)
        return -1;
    if (rcl__footprint_mode() == RCL__FOOTPRINT_CGROUP && rcl__headroom() < rcl_limit() / 2)
        return FAST_TICK_MS;
    return TICK_MS;
}

static void *pressure_main(void *arg)
{
    unsigned long long last_full = rcl__now_ns();

    (void)arg;
    on_pressure_thread = true;
    while (!forked_here()) {
        struct pollfd fds[3] = {
            { .fd = watcher.stop_fd, .events = POLLIN },
            { .fd = watcher.watch_fd, .events = watcher.kind == WATCH_PSI ? POLLPRI : POLLIN },
            { .fd = watcher.thresh_fd, .events = POLLIN },
        };
        int n = poll(fds, 3, tick_ms());
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && fds[0].revents)
            break;
        if (n > 0 && fds[1].revents && watcher.watch_fd >= 0) {
            watch_event(fds[1].revents);
            if (forked_here())
                break;
        }
        /* A cache working at its budget crosses the threshold up and
         * down, as often as it fills: the tick still comes each second. */
        if (n > 0 && fds[2].revents && watcher.thresh_fd >= 0) {
            threshold_event();
            if (forked_here())
                break;
            if (rcl__now_ns() - last_full < TICK_MS * 1000000ull)
                continue;
        }
        if (!watcher.cg.version)
            continue;
        unsigned long long now = rcl__now_ns();
        if (n == 0 && now - last_full < TICK_MS * 1000000ull) {
            rcl__footprint_sample();        /* wakes the reclaimer below low */
            continue;
        }
        last_full = now;
        cgroup_tick();
        /* Release: a test that sees the count (acquire) sees the tick's work. */
        atomic_fetch_add_explicit(&rcl__pressure_ticks, 1, memory_order_release);
    }
    if (forked_here())
        rcl__report("a child forked on the library's pressure thread (in a report "
                    "function or a shrinker's callback) returned to it; the child's "
                    "pressure thread comes back on demand, and this thread ends");
    return NULL;
}

static void sources_close(void)
{
    int *fds[] = { &watcher.stop_fd, &watcher.watch_fd, &watcher.thresh_fd, &watcher.self_fd };
    for (unsigned i = 0; i < 4; i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
    rcl__cgroup_files_close(&watcher.files);
}

int rcl__pressure_start(bool auto_limit)
{
    if (watcher.running)
        return -EBUSY;
    watcher.joined = false;
    watcher.watch_fd = watcher.thresh_fd = watcher.stop_fd = -1;
    watcher.kind = WATCH_NONE;
    watcher.events_off = false;
    watcher.last_event = 0;
    watcher.auto_limit = auto_limit;
    watcher.watch_own = false;
    watcher.regrouped = false;
    watcher.files.nlevels = 0;
    watcher.files.level = NULL;
    /* Read before the look-up: a move in between shows at the first tick. */
    watcher.self_fd = rcl__cgroup_self_open();
    if (watcher.self_fd < 0)
        watcher.self_fd = -1;
    if (rcl__pread_hash(watcher.self_fd, &watcher.self_seen))
        watcher.self_seen = 0;
    rcl__cgroup_find(&watcher.cg);             /* version 0 when there is none */
    watcher.cg_limit = RCL_CG_NONE;
    if (watcher.cg.version) {
        rcl__cgroup_files_open(&watcher.cg, &watcher.files);
        watcher.cg_limit = rcl__cgroup_files_limit(&watcher.files, &watcher.level);
        uint64_t usage, inactive = 0;
        if (watcher.cg_limit != RCL_CG_NONE && watcher.cg_limit != RCL_CG_UNKNOWN &&
            rcl__cgroup_files_working_set(&watcher.files, watcher.level, &usage, &inactive))
            inactive = 0;
        threshold_arm(inactive);
    }
    watch_open();
    if (watcher.watch_fd < 0 && !watcher.cg.version) {
        sources_close();
        return 0;                        /* nothing to follow: no thread */
    }

    watcher.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int err = watcher.stop_fd < 0 ? errno
                                  : rcl__thread_start(&watcher.thread, pressure_main, NULL,
                                                      "pressure");
    if (err) {
        sources_close();
        return -err;
    }
    pthread_setname_np(watcher.thread, "rcl-pressure");
    watcher.running = true;
    return 0;
}

/* The descriptors stay open until rcl__pressure_stop(), under init_lock:
 * a fork meanwhile finds them whole, and its child closes its copies
 * (rcl__pressure_atfork_child). */
void rcl__pressure_join(void)
{
    if (!watcher.running || watcher.joined)
        return;
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(watcher.stop_fd, &one, sizeof(one));
    while (n < 0 && errno == EINTR);
    pthread_join(watcher.thread, NULL);
    watcher.joined = true;
}

void rcl__pressure_stop(void)
{
    if (!watcher.running)
        return;
    rcl__pressure_join();
    sources_close();
    watcher.running = false;
    watcher.joined = false;
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

/* The watcher is set up and torn down under init_lock, which the fork
 * handlers hold, and its descriptors change, while the thread runs, under
 * fd_lock, which they take too. The stop eventfd is the parent's too (one open file behind
 * both descriptors): the child closes its copy and never writes it, or it
 * would stop the parent's thread. The restart makes a new one. */
void rcl__pressure_atfork_prepare(void) { pthread_mutex_lock(&fd_lock); }
void rcl__pressure_atfork_parent(void) { pthread_mutex_unlock(&fd_lock); }

bool rcl__pressure_atfork_child(void)
{
    bool was = watcher.running;
    /* A report function or a shrinker's callback on the pressure thread
     * may fork: the child's copy of that thread is the library's no more,
     * and ends once the step it forked in returns (forked_here()). */
    on_pressure_thread = false;
    if (was) {
        /* The threshold eventfd too: the parent's events are the parent's. */
        sources_close();
        watcher.running = false;
        watcher.joined = false;
    }
    pthread_mutex_unlock(&fd_lock);
    return was;
}

void rcl__pressure_restart(void)
{
    int err = rcl__pressure_start(watcher.auto_limit);
    if (err)
        rcl__report("memory-pressure following is off in this child process: %s",
                    strerror(-err));
}
