/*
 * pressure.c - the real memory signals: the automatic limit taken from the
 * process's memory cgroup, and memory pressure from outside the process
 * (PSI triggers, systemd's memory-pressure protocol, cgroup usage near its
 * limit) turned into cache shrinking.
 *
 * Everything the kernel tells us is read through one root prefix, empty in
 * production and a test's fake tree with RECLAIM_CGROUP_ROOT: the prefix is
 * put in front of /proc/self/cgroup, /proc/self/mountinfo, every mount point
 * found there, /proc/pressure/memory and /proc/meminfo. That one rule is the
 * whole of the test seam, so the code a test runs is the code production
 * runs.
 *
 * Threading: at most one thread, "rcl-pressure", only with pressure = 1 and
 * only when there is something to watch. It sleeps in poll() on the PSI
 * trigger (or systemd's FIFO/socket) and a stop eventfd, with a 1 s timeout
 * only when a cgroup must be re-read. It never allocates from the budget;
 * it asks the reclaimer to shrink (rcl__reclaim_request) or, without a
 * background reclaimer, reclaims itself with rcl_reclaim().
 */
#include "internal.h"

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
#define EVENT_GAP_NS       500000000ULL /* at most two shrink requests a second */
#define PSI_TRIGGER        "some 150000 1000000"  /* 150 ms stalled in 1 s */
#define PSI_TRIGGER_UNPRIV "some 300000 2000000"  /* unprivileged: N*2 s windows */
#define DEFAULT_MARGIN_DIV 8           /* margin: 1/8 (12.5 %) of the cgroup limit */
/* cgroup v1 writes "unlimited" as LONG_MAX rounded down to a page; anything
 * this large is no limit. */
#define V1_UNLIMITED       ((uint64_t)1 << 62)

/* ------------------------------------------------------------------------ */
/* Files, under the root prefix                                              */
/* ------------------------------------------------------------------------ */

static const char *root_prefix(void)
{
    const char *r = getenv("RECLAIM_CGROUP_ROOT");
    return r ? r : "";
}

/* Reads a small file whole, NUL-terminated; -errno or the length. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    while (got + 1 < len) {
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* A cgroup value file: a number, or "max" (no limit). 0 on success with
 * *set false for "max"; -errno when the file cannot be read or parsed. */
static int read_value(const char *dir, const char *name, uint64_t *out, bool *set)
{
    char path[PATH_MAX], buf[64];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    ssize_t n = read_small(path, buf, sizeof(buf));
    if (n < 0)
        return (int)n;
    if (!strncmp(buf, "max", 3)) {
        *set = false;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return -EINVAL;
    *out = v;
    *set = true;
    return 0;
}

/* One "key value" line of a memory.stat file; 0 when absent. */
static uint64_t read_stat_key(const char *dir, const char *key)
{
    char path[PATH_MAX], buf[8192];
    if (snprintf(path, sizeof(path), "%s/memory.stat", dir) >= (int)sizeof(path))
        return 0;
    if (read_small(path, buf, sizeof(buf)) <= 0)
        return 0;
    size_t klen = strlen(key);
    for (char *line = buf; *line; ) {
        if (!strncmp(line, key, klen) && line[klen] == ' ')
            return strtoull(line + klen + 1, NULL, 10);
        char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Finding the process's memory cgroup                                       */
/* ------------------------------------------------------------------------ */

struct cgroup {
    int    version;            /* 1 or 2; 0 = none found */
    char   dir[PATH_MAX];      /* the process's cgroup, root prefix included */
    size_t top;                /* length of the mount point part of dir */
};

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r; ) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

static bool has_token(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = list; *p; ) {
        if (!strncmp(p, tok, n) && (p[n] == ',' || p[n] == '\0' || p[n] == '\n'))
            return true;
        const char *comma = strchr(p, ',');
        if (!comma)
            break;
        p = comma + 1;
    }
    return false;
}

/* The cgroup paths of the memory controller (v1) and the unified hierarchy
 * (v2) from /proc/self/cgroup: "ID:CONTROLLERS:PATH" lines. */
static void own_cgroup_paths(char *v1, char *v2, size_t len)
{
    char path[PATH_MAX], buf[4096];
    v1[0] = v2[0] = '\0';
    snprintf(path, sizeof(path), "%s/proc/self/cgroup", root_prefix());
    if (read_small(path, buf, sizeof(buf)) <= 0)
        return;
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        if (c2 == c1 + 1 && !strncmp(line, "0:", 2))
            snprintf(v2, len, "%s", c2 + 1);
        else if (has_token(c1 + 1, "memory"))
            snprintf(v1, len, "%s", c2 + 1);
    }
}

/* Where hierarchy `want` (1: cgroup with the memory option, 2: cgroup2) is
 * mounted, and the cgroup path its root shows. 0 or -ENOENT. */
static int find_mount(int want, char *mnt, char *mroot, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/proc/self/mountinfo", root_prefix());
    FILE *f = fopen(path, "re");
    if (!f)
        return -ENOENT;
    char line[4096];
    int found = -ENOENT;
    while (found && fgets(line, sizeof(line), f)) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS */
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        *sep = '\0';
        char fstype[64] = "", source[256] = "", super[1024] = "";
        if (sscanf(sep + 3, "%63s %255s %1023s", fstype, source, super) < 2)
            continue;
        bool match = want == 2 ? !strcmp(fstype, "cgroup2")
                               : !strcmp(fstype, "cgroup") && has_token(super, "memory");
        if (!match)
            continue;
        char r[PATH_MAX], m[PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", r, m) != 2)
            continue;
        unescape_octal(r);
        unescape_octal(m);
        snprintf(mroot, len, "%s", r);
        snprintf(mnt, len, "%s", m);
        found = 0;
    }
    fclose(f);
    return found;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Joins mount point and cgroup path into the directory of the process's
 * cgroup. The mount may show a subtree (a container's bind mount: root
 * "/docker/x"); the cgroup path then starts with that root, which is cut. */
static int locate(int version, const char *cgpath, struct cgroup *cg)
{
    char mnt[PATH_MAX], mroot[PATH_MAX];
    if (!cgpath[0] || find_mount(version, mnt, mroot, sizeof(mnt)))
        return -ENOENT;
    const char *rel = cgpath;
    size_t rl = strlen(mroot);
    if (strcmp(mroot, "/") && !strncmp(cgpath, mroot, rl) && (cgpath[rl] == '/' || !cgpath[rl]))
        rel = cgpath + rl;
    int top = snprintf(cg->dir, sizeof(cg->dir), "%s%s", root_prefix(), mnt);
    if (top < 0 || (size_t)top >= sizeof(cg->dir))
        return -ENAMETOOLONG;
    if ((size_t)snprintf(cg->dir + top, sizeof(cg->dir) - (size_t)top, "%s",
                         strcmp(rel, "/") ? rel : "") >= sizeof(cg->dir) - (size_t)top)
        return -ENAMETOOLONG;
    /* Outside our namespace's view (or moved meanwhile): the mount point
     * itself is the best we can see. */
    if (!is_dir(cg->dir))
        cg->dir[top] = '\0';
    cg->top = (size_t)top;
    cg->version = version;
    return is_dir(cg->dir) ? 0 : -ENOENT;
}

/* The memory cgroup: a v1 memory hierarchy when there is one (it is where
 * the limit lives on hybrid systems), else the unified hierarchy. */
static int cgroup_find(struct cgroup *cg)
{
    char v1[PATH_MAX], v2[PATH_MAX];
    memset(cg, 0, sizeof(*cg));
    own_cgroup_paths(v1, v2, sizeof(v1));
    if (v1[0] && locate(1, v1, cg) == 0)
        return 0;
    if (v2[0] && locate(2, v2, cg) == 0)
        return 0;
    cg->version = 0;
    return -ENOENT;
}

/* The limit binding this cgroup: the smallest set limit on the way up to
 * the mount point (a parent's limit holds its children too). v2: the
 * smaller of memory.high and memory.max; v1: memory.limit_in_bytes. 0 when
 * none is set; CG_UNKNOWN when no file could be read at all (the cgroup
 * went away, or no descriptor was free), which is not "no limit". `at`,
 * when not NULL, gets the directory that sets it. */
#define CG_UNKNOWN UINT64_MAX
static uint64_t cgroup_limit(const struct cgroup *cg, char *at, size_t atlen)
{
    char dir[PATH_MAX];
    uint64_t best = 0;
    bool seen = false;
    snprintf(dir, sizeof(dir), "%s", cg->dir);
    if (at)
        snprintf(at, atlen, "%s", cg->dir);
    for (;;) {
        static const char *const v2files[] = { "memory.max", "memory.high" };
        static const char *const v1files[] = { "memory.limit_in_bytes" };
        const char *const *files = cg->version == 2 ? v2files : v1files;
        unsigned nfiles = cg->version == 2 ? 2 : 1;
        for (unsigned i = 0; i < nfiles; i++) {
            uint64_t v;
            bool set;
            if (read_value(dir, files[i], &v, &set))
                continue;
            seen = true;
            if (!set)
                continue;
            if (cg->version == 1 && v >= V1_UNLIMITED)
                continue;
            if (!best || v < best) {
                best = v;
                if (at)
                    snprintf(at, atlen, "%s", dir);
            }
        }
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= cg->top || !slash || (size_t)(slash - dir) < cg->top)
            break;
        *slash = '\0';
    }
    return seen ? best : CG_UNKNOWN;
}

/* What the cgroup holds that its owner cannot simply drop: usage less the
 * inactive page cache, which the kernel reclaims first and cheaply. */
static int cgroup_working_set(const struct cgroup *cg, const char *dir, uint64_t *out)
{
    uint64_t usage;
    bool set;
    int err = read_value(dir, cg->version == 2 ? "memory.current" : "memory.usage_in_bytes",
                         &usage, &set);
    if (err || !set)
        return err ? err : -EINVAL;
    uint64_t inactive = read_stat_key(dir, cg->version == 2 ? "inactive_file" : "total_inactive_file");
    *out = usage > inactive ? usage - inactive : 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The automatic limit                                                       */
/* ------------------------------------------------------------------------ */

static _Atomic long long margin_report;

static uint64_t physical_memory(void)
{
    if (root_prefix()[0]) {
        char path[PATH_MAX], buf[4096];
        snprintf(path, sizeof(path), "%s/proc/meminfo", root_prefix());
        if (read_small(path, buf, sizeof(buf)) > 0) {
            char *p = strstr(buf, "MemTotal:");
            if (p)
                return strtoull(p + 9, NULL, 10) * 1024;
        }
    }
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psize <= 0)
        return (uint64_t)1 << 30;
    return (uint64_t)pages * (uint64_t)psize;
}

/* The share of a cgroup limit kept for memory the library does not see
 * (code, stacks, other allocators, page cache, the kernel's own charges):
 * RECLAIM_CGROUP_MARGIN as a size ("32M") or a percentage ("10%"), default
 * 1/8. Never more than half the limit. */
static uint64_t margin_for(uint64_t limit)
{
    uint64_t m = limit / DEFAULT_MARGIN_DIV;
    const char *s = getenv("RECLAIM_CGROUP_MARGIN");
    if (s && *s) {
        char *end;
        size_t v;
        unsigned long pct = strtoul(s, &end, 10);
        if (end != s && !strcmp(end, "%") && pct <= 100)
            m = rcl__pct_of(limit, (unsigned)pct);
        else if (rcl__parse_size(s, &v) == 0)
            m = v;
        else
            rcl__report_limited(&margin_report, "RECLAIM_CGROUP_MARGIN=\"%s\" is not a "
                                "size or a percentage; using 1/8 of the limit", s);
    }
    return m > limit / 2 ? limit / 2 : m;
}

/* The budget a cgroup limit gives (0: no usable limit). A limit at or
 * above the machine's memory limits nothing. */
static size_t budget_for(uint64_t cglimit)
{
    if (!cglimit || cglimit >= physical_memory())
        return 0;
    uint64_t b = cglimit - margin_for(cglimit);
    return b > SIZE_MAX ? SIZE_MAX : (size_t)b;
}

/* The automatic budget for a cgroup limit: budget_for() it, else half of
 * physical memory. */
static size_t auto_budget(uint64_t cglimit)
{
    size_t b = budget_for(cglimit);
    if (!b) {
        uint64_t half = physical_memory() / 2;
        b = half > SIZE_MAX ? SIZE_MAX : (size_t)half;
    }
    return b ? b : 1;
}

size_t rcl_auto_limit(void)
{
    struct cgroup cg;
    uint64_t lim = cgroup_find(&cg) == 0 ? cgroup_limit(&cg, NULL, 0) : 0;
    return auto_budget(lim == CG_UNKNOWN ? 0 : lim);
}

/* ------------------------------------------------------------------------ */
/* Pressure sources                                                          */
/* ------------------------------------------------------------------------ */

enum watch_kind { WATCH_NONE, WATCH_PSI, WATCH_FIFO, WATCH_SOCKET };

static struct {
    pthread_t       thread;
    bool            running;
    int             stop_fd;
    int             watch_fd;
    enum watch_kind kind;
    bool            events_off;     /* MEMORY_PRESSURE_WATCH=/dev/null */
    struct cgroup   cg;             /* version 0: none */
    bool            auto_limit;     /* the budget follows the cgroup */
    uint64_t        cg_limit;       /* the cgroup limit last seen */
    unsigned long long last_event;
} P = { .stop_fd = -1, .watch_fd = -1 };

static _Atomic long long open_report;

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
 * turns pressure handling off. Without the WRITE variable a PSI file gets
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

/* Picks the source: systemd's variable when set, else the cgroup's own
 * memory.pressure (v2), else the system's /proc/pressure/memory. */
static void watch_open(void)
{
    const char *watch = getenv("MEMORY_PRESSURE_WATCH");
    int fd;
    if (watch && *watch) {
        if (!strcmp(watch, "/dev/null")) {
            P.events_off = true;
            return;
        }
        fd = systemd_open(watch, &P.kind);
        if (fd >= 0) {
            P.watch_fd = fd;
            return;
        }
        rcl__report_limited(&open_report, "MEMORY_PRESSURE_WATCH=%s cannot be watched (%s); "
                            "using PSI directly", watch, strerror(-fd));
    }
    char path[PATH_MAX];
    fd = -ENOENT;
    if (P.cg.version == 2 &&
        snprintf(path, sizeof(path), "%s/memory.pressure", P.cg.dir) < (int)sizeof(path))
        fd = psi_open(path);
    if (fd < 0) {
        snprintf(path, sizeof(path), "%s/proc/pressure/memory", root_prefix());
        fd = psi_open(path);
    }
    if (fd >= 0) {
        P.watch_fd = fd;
        P.kind = WATCH_PSI;
    }
}

/* ------------------------------------------------------------------------ */
/* Turning signals into shrinking                                            */
/* ------------------------------------------------------------------------ */

/* The documented step: one eighth of what the library holds, or what it
 * takes to restore the wanted headroom when that is more. */
static void shrink(size_t want)
{
    unsigned long long now = rcl__now_ns();
    if (P.last_event && now - P.last_event < EVENT_GAP_NS)
        return;
    size_t usage = rcl_usage();
    size_t step = usage / 8;
    if (want < step)
        want = step;
    if (want > usage)
        want = usage;
    if (!want)
        return;
    P.last_event = now;
    if (rcl__cfg.background)
        rcl__reclaim_request(want);
    else
        rcl_reclaim(want, RCL_DEFAULT);
}

/* The source fired. PSI: POLLPRI (POLLERR: the cgroup went away). FIFO and
 * socket: drain what was written; end of stream closes the source. */
static void watch_event(short revents)
{
    if (P.kind == WATCH_PSI) {
        if (revents & (POLLERR | POLLNVAL)) {
            close(P.watch_fd);
            P.watch_fd = -1;
            return;
        }
        shrink(0);
        return;
    }
    char buf[256];
    bool got = false, eof = (revents & (POLLHUP | POLLERR | POLLNVAL)) != 0;
    for (;;) {
        ssize_t n = read(P.watch_fd, buf, sizeof(buf));
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
    if (eof) {
        close(P.watch_fd);
        P.watch_fd = -1;
    }
}

/* The 1 s tick: follow the cgroup limit, and treat usage close to it as
 * pressure. Without swap the kernel has nothing to reclaim from a cache
 * of anonymous memory, so a cgroup running into its limit stalls only
 * moments before its OOM kill: PSI alone would come too late. */
static void cgroup_tick(void)
{
    char at[PATH_MAX];
    uint64_t lim = cgroup_limit(&P.cg, at, sizeof(at));
    if (lim == CG_UNKNOWN)
        return;                          /* unreadable this time: change nothing */
    if (P.auto_limit && lim != P.cg_limit) {
        size_t b = auto_budget(lim);
        if (b != rcl_limit())
            rcl_set_limit(b);
    }
    P.cg_limit = lim;
    uint64_t ws;
    if (!lim || P.events_off || cgroup_working_set(&P.cg, at, &ws))
        return;
    uint64_t headroom = ws < lim ? lim - ws : 0;
    uint64_t low = rcl__pct_of(lim, rcl__cfg.low_pct), high = rcl__pct_of(lim, rcl__cfg.high_pct);
    if (headroom < low)
        shrink((size_t)(high - headroom));
}

static void *pressure_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd fds[2] = {
            { .fd = P.stop_fd, .events = POLLIN },
            { .fd = P.watch_fd, .events = P.kind == WATCH_PSI ? POLLPRI : POLLIN },
        };
        nfds_t nfds = P.watch_fd >= 0 ? 2 : 1;
        int n = poll(fds, nfds, P.cg.version ? TICK_MS : -1);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && fds[0].revents)
            break;
        if (n > 0 && nfds == 2 && fds[1].revents)
            watch_event(fds[1].revents);
        if (P.cg.version)
            cgroup_tick();
    }
    return NULL;
}

int rcl__pressure_start(bool auto_limit)
{
    if (P.running)
        return -EBUSY;
    P.watch_fd = -1;
    P.kind = WATCH_NONE;
    P.events_off = false;
    P.last_event = 0;
    P.auto_limit = auto_limit;
    cgroup_find(&P.cg);                  /* version 0 when there is none */
    P.cg_limit = P.cg.version ? cgroup_limit(&P.cg, NULL, 0) : 0;
    watch_open();
    if (P.watch_fd < 0 && !P.cg.version)
        return 0;                        /* nothing to follow: no thread */

    P.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (P.stop_fd < 0) {
        int err = -errno;
        if (P.watch_fd >= 0)
            close(P.watch_fd);
        P.watch_fd = -1;
        return err;
    }
    int err = rcl__thread_start(&P.thread, pressure_main, NULL, "pressure");
    if (err) {
        close(P.stop_fd);
        P.stop_fd = -1;
        if (P.watch_fd >= 0)
            close(P.watch_fd);
        P.watch_fd = -1;
        return -err;
    }
    pthread_setname_np(P.thread, "rcl-pressure");
    P.running = true;
    return 0;
}

void rcl__pressure_stop(void)
{
    if (!P.running)
        return;
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(P.stop_fd, &one, sizeof(one));
    while (n < 0 && errno == EINTR);
    pthread_join(P.thread, NULL);
    close(P.stop_fd);
    P.stop_fd = -1;
    if (P.watch_fd >= 0)
        close(P.watch_fd);
    P.watch_fd = -1;
    P.running = false;
}

/* ------------------------------------------------------------------------ */
/* fork() (fork.c)                                                           */
/* ------------------------------------------------------------------------ */

/* P only changes under init_lock, which the fork handlers hold. The stop
 * eventfd is the parent's too (one open file behind both descriptors):
 * the child closes its copy and never writes it, or it would stop the
 * parent's thread. The restart makes a new one. */
bool rcl__pressure_atfork_child(void)
{
    bool was = P.running;
    if (!was)
        return false;
    close(P.stop_fd);
    P.stop_fd = -1;
    if (P.watch_fd >= 0)
        close(P.watch_fd);
    P.watch_fd = -1;
    P.running = false;
    return true;
}

void rcl__pressure_restart(void)
{
    int err = rcl__pressure_start(P.auto_limit);
    if (err)
        rcl__report("memory-pressure following is off in this child process: %s",
                    strerror(-err));
}
