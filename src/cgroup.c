/* SPDX-License-Identifier: MIT */
/*
 * cgroup.c - the process's memory cgroup: where it is, the limit that binds
 * it, what it holds, and the automatic budget that limit gives. Usable
 * without any library thread: rcl_auto_limit() and the footprint sampler
 * (footprint.c) read it as much as the pressure thread (pressure.c) does.
 *
 * Everything the kernel tells us is read through one root prefix, empty in
 * production and a test's fake tree with RECLAIM_CGROUP_ROOT: the prefix is
 * put in front of /proc/self/cgroup, /proc/self/mountinfo, every mount point
 * found there, /proc/pressure/memory and /proc/meminfo. That one rule is the
 * whole of the test seam, so the code a test runs is the code production
 * runs.
 */
#include "internal.h"
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MARGIN_DIV 8           /* margin: 1/8 (12.5 %) of the cgroup limit */
/* cgroup v1 writes "unlimited" as LONG_MAX rounded down to a page; anything
 * this large is no limit. */
#define V1_UNLIMITED       ((uint64_t)1 << 62)
/* ------------------------------------------------------------------------ */
/* Files, under the root prefix                                              */
/* ------------------------------------------------------------------------ */

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;      /* FNV-1a */
    return h;
}

/* The hash of the bad RECLAIM_CGROUP_ROOT last reported (0: none). The
 * prefix is asked for at every read of the tree, each second or oftener: a
 * value that does not change is reported once, until the next start. */
static _Atomic uint64_t root_reported;

static void report_root(const struct rcl__option *o, const char *s)
{
    uint64_t h = hash_str(0xcbf29ce484222325ull, s) | 1;     /* never "none" */
    char want[96];

    if (atomic_exchange(&root_reported, h) == h)
        return;
    rcl__option_expected(o, want, sizeof(want));
    rcl__report("ignored %s=\"%.64s\" (want %s); the files are read under / instead",
                o->name, s, want);
}

/* A bad value is ignored, as a bad value of every other variable is: what
 * a relative, missing or overlong prefix would give is a read of a file
 * nobody named, a truncated path's among them. */
const char *rcl__root_prefix(void)
{
    const struct rcl__option *o = rcl__option_find("RECLAIM_CGROUP_ROOT");
    const char *r = rcl__option_env(o->name);
    unsigned long long v;

    if (!r)
        return "";
    if (rcl__option_parse(o, r, &v) == 0)
        return r;
    report_root(o, r);
    return "";
}

/* Reads a small file whole, NUL-terminated; -errno or the length. */
ssize_t rcl__read_small(const char *path, char *buf, size_t len)
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
/* A cgroup value: a number, or "max" (no limit: *set false). */
static int parse_value(const char *buf, uint64_t *out, bool *set)
{
    *set = strncmp(buf, "max", 3) != 0;
    if (!*set)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return -EINVAL;
    *out = v;
    return 0;
}

static int read_value(const char *dir, const char *name, uint64_t *out, bool *set)
{
    char path[PATH_MAX], buf[64];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    ssize_t n = rcl__read_small(path, buf, sizeof(buf));
    return n < 0 ? (int)n : parse_value(buf, out, set);
}

/* A file kept open, read again from its start into buf, NUL-terminated:
 * the length, or -errno (-EINVAL when empty). */
ssize_t rcl__pread_text(int fd, char *buf, size_t len)
{
    ssize_t n;
    if (fd < 0)
        return -EBADF;
    do
        n = pread(fd, buf, len - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n < 0 ? -errno : -EINVAL;
    buf[n] = '\0';
    return n;
}

/* A fingerprint of a file kept open, all of it however long, read again
 * from its start with pread in pieces (no file opened, no new memory):
 * 0, or -errno (-EINVAL when empty). FNV-1a. */
int rcl__pread_hash(int fd, uint64_t *out)
{
    char buf[4096];
    uint64_t h = 0xcbf29ce484222325ull;
    off_t at = 0;
    ssize_t n;

    if (fd < 0)
        return -EBADF;
    for (;;) {
        do
            n = pread(fd, buf, sizeof(buf), at);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return -errno;
        if (!n)
            break;
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ (unsigned char)buf[i]) * 0x100000001b3ull;
        at += n;
    }
    *out = h;
    return at ? 0 : -EINVAL;
}

static int fd_value(int fd, uint64_t *out, bool *set)
{
    char buf[32];
    ssize_t n = rcl__pread_text(fd, buf, sizeof(buf));
    return n < 0 ? (int)n : parse_value(buf, out, set);
}

/* The value of the "key value" line of a memory.stat text; 0 when absent. */
static uint64_t stat_key(const char *buf, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = buf; *line; ) {
        if (!strncmp(line, key, klen) && line[klen] == ' ')
            return strtoull(line + klen + 1, NULL, 10);
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return 0;
}

static uint64_t read_stat_key(const char *dir, const char *key)
{
    char path[PATH_MAX], buf[8192];
    if (snprintf(path, sizeof(path), "%s/memory.stat", dir) >= (int)sizeof(path))
        return 0;
    if (rcl__read_small(path, buf, sizeof(buf)) <= 0)
        return 0;
    return stat_key(buf, key);
}

/* ------------------------------------------------------------------------ */
/* Finding the process's memory cgroup                                       */
/* ------------------------------------------------------------------------ */


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

/* /proc/self/cgroup, kept open by the pressure thread to see the process
 * moved: non-blocking, so that a test's FIFO in its place does not hold
 * up the start. */
int rcl__cgroup_self_open(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/proc/self/cgroup", rcl__root_prefix());
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* One line of `f`, without its newline, into buf; false at the end. A
 * line longer than buf is skipped whole: its rest, read as a line of its
 * own, would be taken for another. A NUL byte ends a line's text, not the
 * line: strlen() stops there, short of the newline, so whether fgets()
 * filled buf is told by buf's last byte, which it writes only then. */
static bool read_line(FILE *f, char *buf, size_t len)
{
    rcl__assert(len >= 2);
    for (;;) {
        buf[len - 1] = '\1';
        if (!fgets(buf, (int)len, f))
            return false;
        bool whole = buf[len - 1] || buf[len - 2] == '\n';
        size_t n = strlen(buf);
        if (n && buf[n - 1] == '\n')
            buf[n - 1] = '\0';
        if (whole)
            return true;                /* its newline read, or the file's end */
        int c = getc(f);
        if (c == '\n' || c == EOF)
            return true;                /* it filled buf exactly, or ended the file */
        while ((c = getc(f)) != EOF && c != '\n')
            ;
    }
}

/* The cgroup paths of the memory controller (v1) and the unified hierarchy
 * (v2) from /proc/self/cgroup: "ID:CONTROLLERS:PATH" lines. Read a line at
 * a time: the file names the process's group once for each hierarchy, a
 * hybrid system's dozen of them, and with long paths runs past any buffer
 * that would hold it whole, the memory controller's line among the last.
 * One line is bounded: the kernel refuses a path of PATH_MAX or more, and
 * a hierarchy's controllers and name are a few dozen characters. */
static void own_cgroup_paths(char *v1, char *v2, size_t len)
{
    char path[PATH_MAX], line[PATH_MAX + 256];
    v1[0] = v2[0] = '\0';
    snprintf(path, sizeof(path), "%s/proc/self/cgroup", rcl__root_prefix());
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    while (read_line(f, line, sizeof(line))) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        if (c2 == c1 + 1 && !strncmp(line, "0:", 2))
            snprintf(v2, len, "%s", c2 + 1);
        else if (has_token(c1 + 1, "memory"))
            snprintf(v1, len, "%s", c2 + 1);
    }
    fclose(f);
}

/* The next field of a mountinfo line, split off in place: "" at its end.
 * Fields hold no space (mountinfo escapes them) and are never cut short,
 * whatever their length: a piece of a field read as the next one would
 * shift every field after it. */
static char *next_field(char **p)
{
    char *f = *p;
    size_t n = strcspn(f, " \n");
    *p = f + n + (f[n] != '\0');
    f[n] = '\0';
    return f;
}

/* Where hierarchy `want` (1: cgroup with the memory option, 2: cgroup2) is
 * mounted, and the cgroup path its root shows: the mount `nth` in
 * mountinfo's order (0: the first). 0 or -ENOENT. Each line is read whole,
 * however long (an overlay's layers, a deep bind mount's root): a line cut
 * at a buffer's end left a piece read as a line of its own, which, read as
 * a cgroup mount it could not name, took its place in the count and hid
 * every mount after it. */
static int find_mount(int want, unsigned nth, char *mnt, char *mroot, size_t len)
{
    char path[PATH_MAX], *line = NULL;
    size_t cap = 0;
    int found = -ENOENT;
    snprintf(path, sizeof(path), "%s/proc/self/mountinfo", rcl__root_prefix());
    FILE *f = fopen(path, "re");
    if (!f)
        return -ENOENT;
    while (found && getline(&line, &cap, f) > 0) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS */
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        *sep = '\0';
        char *p = sep + 3;
        const char *fstype = next_field(&p);
        next_field(&p);                 /* the source: any name the mounter chose */
        const char *super = next_field(&p);
        bool match = want == 2 ? !strcmp(fstype, "cgroup2")
                               : !strcmp(fstype, "cgroup") && has_token(super, "memory");
        if (!match)
            continue;
        p = line;
        for (unsigned i = 0; i < 3; i++)
            next_field(&p);
        char *r = next_field(&p), *m = next_field(&p);
        unescape_octal(r);
        unescape_octal(m);
        if (!*r || !*m || strlen(r) >= len || strlen(m) >= len || nth-- > 0)
            continue;
        memcpy(mroot, r, strlen(r) + 1);
        memcpy(mnt, m, strlen(m) + 1);
        found = 0;
    }
    free(line);
    fclose(f);
    return found;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * The part of the cgroup path below the mount's root, or NULL when the
 * mount does not show that cgroup. Both paths are in the view of the
 * process's cgroup namespace, where a cgroup outside the namespace's root
 * reads "/../x" (cgroup_namespaces(7)): the cgroup is under the mount
 * exactly when the mount's root is a prefix of its path, component by
 * component, and the rest only steps down. Joined as it is, "/../x" named
 * a directory outside the mount, another group's or none.
 */
static const char *below_root(const char *cgpath, const char *mroot)
{
    size_t rl = strcmp(mroot, "/") ? strlen(mroot) : 0;
    if (strncmp(cgpath, mroot, rl) || (cgpath[rl] != '/' && cgpath[rl]))
        return NULL;
    const char *rel = cgpath + rl;
    for (const char *c = rel; *c; ) {
        c += *c == '/';
        size_t n = strcspn(c, "/");
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return NULL;
        c += n;
    }
    return rel;
}

/* The directory of the cgroup `rel` below the mount point `mnt`. */
static int join(const char *mnt, const char *rel, struct rcl_cgroup *cg)
{
    int top = snprintf(cg->dir, sizeof(cg->dir), "%s%s", rcl__root_prefix(), mnt);
    if (top < 0 || (size_t)top >= sizeof(cg->dir))
        return -ENAMETOOLONG;
    if ((size_t)snprintf(cg->dir + top, sizeof(cg->dir) - (size_t)top, "%s",
                         strcmp(rel, "/") ? rel : "") >= sizeof(cg->dir) - (size_t)top)
        return -ENAMETOOLONG;
    cg->top = (size_t)top;
    return is_dir(cg->dir) ? 0 : -ENOENT;
}

/* The process's cgroup under the first mount of the hierarchy that shows
 * it. A mount may show a subtree (a container's bind mount: root
 * "/docker/x"), and one hierarchy may be mounted more than once, each
 * showing a different part. -EXDEV: mounted, but no mount shows it; the
 * mount's root is then no ancestor of the process's cgroup, and its
 * limits bind other processes, not this one. -ESTALE: a mount shows it,
 * but its directory is gone: a group with a process in it cannot be
 * removed, so the process was moved out of it since /proc/self/cgroup
 * was read, and the group removed. -ENAMETOOLONG: a mount shows it, but
 * its directory's path, the mount point's in front, is PATH_MAX bytes or
 * more, and cannot be opened by name. */
static int locate(int version, const char *cgpath, struct rcl_cgroup *cg)
{
    char mnt[PATH_MAX], mroot[PATH_MAX];
    unsigned n = 0;
    int err = -EXDEV;

    if (!cgpath[0])
        return -ENOENT;
    for (; !find_mount(version, n, mnt, mroot, sizeof(mnt)); n++) {
        const char *rel = below_root(cgpath, mroot);
        if (!rel)
            continue;
        int jerr = join(mnt, rel, cg);
        if (!jerr) {
            cg->version = version;
            return 0;
        }
        if (jerr == -ENOENT)
            err = -ESTALE;
        else if (jerr == -ENAMETOOLONG && err == -EXDEV)
            err = jerr;
    }
    return n ? err : -ENOENT;
}

/* How many times /proc/self/cgroup is read again when the group it named
 * is gone. The kernel moves a process atomically, and a group is removed
 * only once empty, so one more read names the group the process is in
 * now; only a process moved again, and that group removed, between the
 * two reads needs another. */
#define CGROUP_REREADS 3

/* A cgroup the mounts do not show, or one gone at every read, is reported
 * once: the same one found again (each call of rcl_auto_limit(), each
 * start) says nothing new. */
static _Atomic uint64_t unseen_reported;

static void report_unseen(int version, const char *cgpath, int err)
{
    uint64_t h = hash_str(hash_str(0xcbf29ce484222325ull, rcl__root_prefix()), cgpath);
    h = (h ^ (uint64_t)version ^ ((uint64_t)-err << 8)) * 0x100000001b3ull;
    if (atomic_exchange(&unseen_reported, h) == h)
        return;
    if (err == -ESTALE)
        rcl__report("the process's memory cgroup \"%.256s\" (cgroup v%d) is gone: "
                    "the process was moved to another group and this one removed, "
                    "each of the %d times /proc/self/cgroup was read; its limits "
                    "cannot be read, and give no automatic budget",
                    cgpath, version, CGROUP_REREADS + 1);
    else if (err == -ENAMETOOLONG)
        rcl__report("the process's memory cgroup \"%.256s\" (cgroup v%d) has a "
                    "directory whose path, with its mount point's, is %d bytes or "
                    "more: its limits cannot be read, and give no automatic budget",
                    cgpath, version, PATH_MAX);
    else
        rcl__report("the process's memory cgroup \"%.256s\" (cgroup v%d) is outside "
                    "every mount of its hierarchy: its limits cannot be read, and give "
                    "no automatic budget", cgpath, version);
}

/* One read of /proc/self/cgroup and the search it leads to. -ESTALE, on
 * all but the last read: the group named is gone, read again. */
static int find_once(struct rcl_cgroup *cg, bool last)
{
    char v1[PATH_MAX], v2[PATH_MAX];
    int seen = -ENOENT;
    memset(cg, 0, sizeof(*cg));
    own_cgroup_paths(v1, v2, sizeof(v1));
    for (int version = 1; version <= 2; version++) {
        const char *path = version == 1 ? v1 : v2;
        int err = locate(version, path, cg);
        if (!err)
            return 0;
        /* Not the unified hierarchy in its place: on a hybrid system the
         * process's new v1 group is where its limit is. */
        if (err == -ESTALE && !last)
            return err;
        if (err == -EXDEV || err == -ESTALE || err == -ENAMETOOLONG) {
            report_unseen(version, path, err);
            seen = err;
        }
    }
    memset(cg, 0, sizeof(*cg));
    return seen;
}

/* The memory cgroup: a v1 memory hierarchy when there is one (it is where
 * the limit lives on hybrid systems), else the unified hierarchy. */
int rcl__cgroup_find(struct rcl_cgroup *cg)
{
    for (unsigned i = 0;; i++) {
        int err = find_once(cg, i == CGROUP_REREADS);
        if (err != -ESTALE || i == CGROUP_REREADS)
            return err;
    }
}

/* Whether a limit file's value is a limit, and tighter than `best`. v2
 * writes "no limit" as "max", v1 as a huge number. */
static bool tighter(int version, uint64_t v, bool set, uint64_t best)
{
    return set && !(version == 1 && v >= V1_UNLIMITED) && v < best;
}

/* The limit binding this cgroup: the smallest set limit on the way up to
 * the mount point (a parent's limit holds its children too). v2: the
 * smaller of memory.high and memory.max; v1: memory.limit_in_bytes.
 * RCL_CG_NONE when none is set; RCL_CG_UNKNOWN when no file could be read
 * at all (the cgroup went away, or no descriptor was free), which is not
 * "no limit". `at`, when not NULL, gets the directory that sets it. */
uint64_t rcl__cgroup_limit(const struct rcl_cgroup *cg, char *at, size_t atlen)
{
    char dir[PATH_MAX];
    uint64_t best = RCL_CG_NONE;
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
            if (tighter(cg->version, v, set, best)) {
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
    return seen ? best : RCL_CG_UNKNOWN;
}

/* ------------------------------------------------------------------------ */
/* The automatic limit                                                       */
/* ------------------------------------------------------------------------ */

/* The hash of the bad RECLAIM_CGROUP_MARGIN last reported (0: none). The
 * variable is read at every measure of the automatic budget, each second
 * or oftener; a value that does not change says nothing new after its
 * first report. Another bad value is reported, and each start reports
 * again, as a start reports every other RECLAIM_* variable it finds bad. */
static _Atomic uint64_t margin_reported;

void rcl__cgroup_env_forget(void)
{
    atomic_store(&margin_reported, 0);
    atomic_store(&root_reported, 0);
}

static uint64_t physical_memory(void)
{
    if (rcl__root_prefix()[0]) {
        char path[PATH_MAX], buf[4096];
        snprintf(path, sizeof(path), "%s/proc/meminfo", rcl__root_prefix());
        if (rcl__read_small(path, buf, sizeof(buf)) > 0) {
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

static void report_margin(const char *s)
{
    uint64_t h = hash_str(0xcbf29ce484222325ull, s) | 1;     /* never "none" */

    if (atomic_exchange(&margin_reported, h) != h)
        rcl__report("RECLAIM_CGROUP_MARGIN=\"%.64s\" is not a size or a percentage; "
                    "using 1/8 of the limit", s);
}

/* The share of a cgroup limit kept for memory the library does not see
 * (code, stacks, other allocators, page cache, the kernel's own charges):
 * RECLAIM_CGROUP_MARGIN as a size ("32M") or a percentage ("10%"), default
 * 1/8. Never more than half the limit. */
static uint64_t margin_for(uint64_t limit)
{
    uint64_t m = limit / DEFAULT_MARGIN_DIV;
    const char *s = rcl__option_env("RECLAIM_CGROUP_MARGIN");
    if (s && rcl__option_size_of(s, limit, &m))
        report_margin(s);
    return m > limit / 2 ? limit / 2 : m;
}

/* The budget a cgroup limit gives (0: no usable limit). A limit at or
 * above the machine's memory limits nothing, RCL_CG_NONE among them. One
 * that leaves nothing - memory.max = 0, which the kernel holds to no
 * charge at all - gives the least budget there is, not none: 0 would
 * read as "no limit", and the budget would be half of the machine. */
size_t rcl__cgroup_budget(uint64_t cglimit)
{
    if (cglimit >= physical_memory())
        return 0;
    uint64_t b = cglimit - margin_for(cglimit);
    if (!b)
        return 1;
    return b > SIZE_MAX ? SIZE_MAX : (size_t)b;
}

/* The automatic budget for a cgroup limit: budget_for() it, else half of
 * physical memory. */
size_t rcl__auto_budget(uint64_t cglimit)
{
    size_t b = rcl__cgroup_budget(cglimit);
    if (!b) {
        uint64_t half = physical_memory() / 2;
        b = half > SIZE_MAX ? SIZE_MAX : (size_t)half;
    }
    return b ? b : 1;
}

/* The pressure thread saw the cgroup limit change: the automatic budget
 * follows, unless the program chose a limit meanwhile (false then). */
bool rcl__auto_limit_follow(uint64_t cglimit)
{
    return rcl__set_auto_limit(rcl__auto_budget(cglimit));
}

/* The reads are cancellation points: a cancel there would leak the open
 * files, so it waits for the caller's next one. The budget's too: under
 * a test's root the machine's memory is a file read. */
size_t rcl_auto_limit(void)
{
    struct rcl_cgroup cg;
    int cancel = rcl__nocancel_begin();
    uint64_t lim = rcl__cgroup_find(&cg) == 0 ? rcl__cgroup_limit(&cg, NULL, 0) : RCL_CG_NONE;
    size_t budget = rcl__auto_budget(lim);
    rcl__nocancel_end(cancel);
    return budget;
}


/* ------------------------------------------------------------------------ */
/* For the footprint sampler and the usage thresholds                        */
/* ------------------------------------------------------------------------ */

uint64_t rcl__cgroup_inactive_file(const struct rcl_cgroup *cg, const char *dir)
{
    return read_stat_key(dir, cg->version == 2 ? "inactive_file" : "total_inactive_file");
}

void rcl__cgroup_level_dir(const struct rcl_cgroup *cg, unsigned level, char *dir, size_t len)
{
    snprintf(dir, len, "%s", cg->dir);
    while (level--) {
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < cg->top)
            break;
        *slash = '\0';
    }
}

int rcl__cgroup_usage_open(const struct rcl_cgroup *cg, const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir,
                 cg->version == 2 ? "memory.current" : "memory.usage_in_bytes") >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int rcl__read_fd_u64(int fd, uint64_t *out)
{
    bool set;
    int err = fd_value(fd, out, &set);
    return err ? err : set ? 0 : -EINVAL;
}

/* Documentation/admin-guide/cgroup-v1/memory.rst, "Memory thresholds":
 * write "<event_fd> <usage_fd> <threshold>" to cgroup.event_control; the
 * eventfd counts every crossing. The usage descriptor may be closed once
 * the threshold is registered. */
int rcl__cgroup_threshold(const struct rcl_cgroup *cg, const char *dir, uint64_t bytes)
{
    char path[PATH_MAX], line[64];
    if (cg->version != 1)
        return -EOPNOTSUPP;
    if (snprintf(path, sizeof(path), "%s/cgroup.event_control", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int ufd = rcl__cgroup_usage_open(cg, dir);
    if (ufd < 0)
        return ufd;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int err = efd < 0 ? -errno : 0;
    if (!err) {
        int cfd = open(path, O_WRONLY | O_CLOEXEC);
        int len = snprintf(line, sizeof(line), "%d %d %llu", efd, ufd, (unsigned long long)bytes);
        errno = 0;
        if (cfd < 0)
            err = -errno;
        else if (write(cfd, line, (size_t)len) != len)
            err = errno ? -errno : -EIO;
        if (cfd >= 0)
            close(cfd);
    }
    close(ufd);
    if (err && efd >= 0)
        close(efd);
    return err ? err : efd;
}

/* ------------------------------------------------------------------------ */
/* Descriptors kept open                                                     */
/* ------------------------------------------------------------------------ */

/* The levels from `dir` up to the mount point, which ends at `top`. */
static unsigned count_levels(const char *dir, size_t top)
{
    unsigned n = 1;
    for (const char *p = dir + top; *p; p++)
        n += *p == '/' && p[1];
    return n;
}

static void level_open(const struct rcl_cgroup *cg, const char *dir, struct rcl_cgroup_level *l)
{
    static const char *const v2files[] = { "memory.max", "memory.high" };
    static const char *const v1files[] = { "memory.limit_in_bytes" };
    const char *const *files = cg->version == 2 ? v2files : v1files;
    unsigned nfiles = cg->version == 2 ? 2 : 1;
    char path[PATH_MAX];

    for (unsigned i = 0; i < 2; i++) {
        l->limit_fd[i] = -1;
        if (i < nfiles && snprintf(path, sizeof(path), "%s/%s", dir, files[i]) < (int)sizeof(path))
            l->limit_fd[i] = open(path, O_RDONLY | O_CLOEXEC);
    }
    l->usage_fd = rcl__cgroup_usage_open(cg, dir);
    l->stat_fd = -1;
    if (snprintf(path, sizeof(path), "%s/memory.stat", dir) < (int)sizeof(path))
        l->stat_fd = open(path, O_RDONLY | O_CLOEXEC);
}

/*
 * A thread that serves the kernel's I/O must not open files while it runs:
 * a struct file is a kernel-memory charge to the cgroup, and a cgroup at its
 * limit answers it with reclaim that may wait on that very I/O. So the
 * pressure thread opens every file it will read once, here, and then only
 * preads them. Every level, however deep the tree: a limit on a level left
 * out binds the process all the same, and the budget would never follow
 * it. No array (nothing opened, the limit RCL_CG_UNKNOWN) when memory is
 * short.
 */
void rcl__cgroup_files_open(const struct rcl_cgroup *cg, struct rcl_cgroup_files *f)
{
    char dir[PATH_MAX];
    unsigned want = count_levels(cg->dir, cg->top);

    memset(f, 0, sizeof(*f));
    f->version = cg->version;
    f->level = calloc(want, sizeof(*f->level));
    if (!f->level)
        return;
    snprintf(dir, sizeof(dir), "%s", cg->dir);
    while (f->nlevels < want) {
        level_open(cg, dir, &f->level[f->nlevels++]);
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= cg->top || !slash || (size_t)(slash - dir) < cg->top)
            break;
        *slash = '\0';
    }
}

void rcl__cgroup_files_close(struct rcl_cgroup_files *f)
{
    for (unsigned i = 0; i < f->nlevels; i++) {
        struct rcl_cgroup_level *l = &f->level[i];
        int fds[4] = { l->limit_fd[0], l->limit_fd[1], l->usage_fd, l->stat_fd };
        for (unsigned k = 0; k < 4; k++)
            if (fds[k] >= 0)
                close(fds[k]);
    }
    free(f->level);
    f->level = NULL;
    f->nlevels = 0;
}

/* The binding limit from the open files: "max" is no limit, and no
 * readable file at all is RCL_CG_UNKNOWN. */
uint64_t rcl__cgroup_files_limit(const struct rcl_cgroup_files *f, unsigned *level)
{
    uint64_t best = RCL_CG_NONE;
    bool seen = false;
    *level = 0;
    for (unsigned i = 0; i < f->nlevels; i++) {
        for (unsigned k = 0; k < 2; k++) {
            uint64_t v;
            bool set;
            if (fd_value(f->level[i].limit_fd[k], &v, &set))
                continue;
            seen = true;
            if (tighter(f->version, v, set, best)) {
                best = v;
                *level = i;
            }
        }
    }
    return seen ? best : RCL_CG_UNKNOWN;
}

/* One "key value" line of a memory.stat descriptor; 0 when absent. The
 * buffer is the caller's, so that nothing new is touched. */
static uint64_t fd_stat_key(int fd, const char *key, char *buf, size_t len)
{
    return rcl__pread_text(fd, buf, len) > 0 ? stat_key(buf, key) : 0;
}

int rcl__cgroup_files_working_set(const struct rcl_cgroup_files *f, unsigned level,
                                  uint64_t *usage, uint64_t *inactive)
{
    static char buf[16384];     /* only the pressure thread reads memory.stat */
    const struct rcl_cgroup_level *l = &f->level[level];
    bool set;
    int err = fd_value(l->usage_fd, usage, &set);
    if (err || !set)
        return err ? err : -EINVAL;
    *inactive = fd_stat_key(l->stat_fd, f->version == 2 ? "inactive_file" : "total_inactive_file",
                            buf, sizeof(buf));
    return 0;
}
