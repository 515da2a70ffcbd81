/* SPDX-License-Identifier: MIT */
/*
 * bench_footprint - what the budget means in real memory, for the build's
 * backend, each figure beside its baseline from the same run.
 *
 * The workload is tests/progs/kv_cache (worker threads getting and putting
 * values over a working set 4x the budget, every value checked on every
 * get, an LRU shrinker, a NOFS thread), exec'd from BUILD/tests/progs/
 * beside this program's BUILD/bench/, so that the benchmark and the tests
 * measure the same program.
 *
 *   rss       outside any cgroup, RECLAIM_LIMIT=64M: peak RSS of the cache
 *             (4 KiB values, and sizes mixed from 16 B to 64 KiB) against
 *             the same program keeping no values (--no-cache, the
 *             baseline). Goal: peak <= 1.10 x limit + baseline.
 *   cgroup    in a fresh 128 MiB cgroup v1 memory group (root only; made
 *             and removed per case): the cgroup's peak usage over its limit
 *             and its OOM kills, with the automatic budget, beside 40 MiB
 *             of plain malloc the library never sees, and the control
 *             (RECLAIM_LIMIT=4G: no reclaim, expected to be killed).
 *   trim      what the trim reclaim runs after freeing costs (the
 *             library's own call: the depot and the empty slabs back to
 *             the backend, their pages to the system, then the backend's
 *             malloc_trim(0), mi_collect(true), or jemalloc's tcache flush
 *             and purge of every arena), timed right after freeing N MiB
 *             of 4 KiB rcl_alloc blocks: all of them (one allocated after
 *             them kept, so that they are not the heap's top), and 15 of
 *             every 16 (a shrinker that freed most of a cache); with RSS
 *             before and after the trim. The trim is internal, so this
 *             program links the static library.
 *   reaction  kv_cache --reaction in the cgroup: from the cgroup's usage
 *             crossing the budget's low watermark to the shrinker's first
 *             call.
 *
 * Environment: BENCH_QUICK=1 (shorter runs), BENCH_REPS=N (trim repeats
 * and reaction runs), BENCH_SECONDS=S (seconds per cache run).
 */
#include "bench.h"
#include "reclaim.h"
#include "internal.h"    /* rcl__trim_memory(): the very trim reclaim runs */

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MiB        (1024.0 * 1024.0)
#define RSS_LIMIT  "64M"
#define RSS_LIMIT_B (64.0 * MiB)
#define CG_LIMIT_B (128.0 * MiB)
#define GOAL       1.10
#define MAX_REPS   32

static char kv_path[PATH_MAX];
static char cg_base[PATH_MAX - 128];
static char cg_dir[PATH_MAX];           /* the group of the case running now */
static volatile pid_t child_pid;

/* ------------------------------------------------------------------------ */
/* Running kv_cache                                                          */
/* ------------------------------------------------------------------------ */

/* BUILD/bench/.. /tests/progs/kv_cache; 0 when it is not there. */
static int find_kv_cache(void)
{
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(kv_path, sizeof(kv_path), "%s/../tests/progs/kv_cache", exe);
    return access(kv_path, X_OK) == 0;
}

static int write_file(const char *dir, const char *name, const char *val)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, val, strlen(val));
    close(fd);
    return n == (ssize_t)strlen(val) ? 0 : -1;
}

struct kv_result {
    char line[1024];       /* the figures line, "" when none came */
    int  status;           /* waitpid's */
    int  killed;           /* by a signal (SIGKILL: the kernel's OOM killer) */
};

/* Runs kv_cache with argv (argv[0] ignored), in cg_dir when set, with
 * RECLAIM_LIMIT=limit (NULL: automatic). Kills it after timeout_s. */
static void kv_run(const char *limit, char *const argv[], int timeout_s, struct kv_result *r)
{
    int p[2];
    memset(r, 0, sizeof(*r));
    if (pipe(p) != 0)
        return;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        char me[32];
        snprintf(me, sizeof(me), "%d", (int)getpid());
        if (cg_dir[0] && write_file(cg_dir, "cgroup.procs", me) != 0)
            _exit(120);
        dup2(p[1], 1);
        /* The library's reports (slow direct reclaim, throttling) are
         * expected under this load and would break up the table. */
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 2);
        close(p[0]);
        close(p[1]);
        unsetenv("RECLAIM_CGROUP_ROOT");
        unsetenv("RECLAIM_CGROUP_MARGIN");
        unsetenv("RECLAIM_PRESSURE");
        unsetenv("MALLOC_ARENA_MAX");
        if (limit)
            setenv("RECLAIM_LIMIT", limit, 1);
        else
            unsetenv("RECLAIM_LIMIT");
        execv(kv_path, argv);
        _exit(121);
    }
    child_pid = pid;
    close(p[1]);
    size_t n = 0;
    uint64_t end = bench_now_ns() + (uint64_t)timeout_s * 1000000000u;
    for (;;) {
        uint64_t now = bench_now_ns();
        struct pollfd pfd = { .fd = p[0], .events = POLLIN };
        if (now >= end || poll(&pfd, 1, (int)((end - now) / 1000000) + 1) <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        ssize_t got = read(p[0], r->line + n, sizeof(r->line) - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
        if (n + 1 >= sizeof(r->line))
            break;
    }
    r->line[n] = '\0';
    r->line[strcspn(r->line, "\n")] = '\0';
    close(p[0]);
    waitpid(pid, &r->status, 0);
    child_pid = 0;
    r->killed = WIFSIGNALED(r->status);
}

/* The value of " key=" in a figures line; -1 when absent. */
static double field(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=", key);
    for (const char *s = line; (s = strstr(s, pat)); s++)
        if (s == line || s[-1] == ' ')
            return strtod(s + strlen(pat), NULL);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Cgroups                                                                   */
/* ------------------------------------------------------------------------ */

/* The v1 memory hierarchy's mount point, or a reason there is none. */
static const char *cgroup_v1_find(void)
{
    if (geteuid() != 0)
        return "not root";
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    int found = 0;
    while (f && !found && fgets(line, sizeof(line), f)) {
        char *sep = strstr(line, " - ");
        char mnt[PATH_MAX], fstype[64], src[256], opts[1024] = "";
        if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
            sscanf(sep + 3, "%63s %255s %1023s", fstype, src, opts) < 2)
            continue;
        if (!strcmp(fstype, "cgroup") && (strstr(opts, ",memory") || !strncmp(opts, "memory", 6)) &&
            strlen(mnt) < sizeof(cg_base)) {
            snprintf(cg_base, sizeof(cg_base), "%s", mnt);
            found = 1;
        }
    }
    if (f)
        fclose(f);
    return found ? NULL : "no cgroup v1 memory hierarchy mounted";
}

static void cgroup_remove(void)
{
    if (!cg_dir[0])
        return;
    for (int t = 0; t < 100 && rmdir(cg_dir) != 0 && errno == EBUSY; t++) {
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
    }
    cg_dir[0] = '\0';
}

/* A fresh 128 MiB group without swap; 0 on success. */
static int cgroup_create(void)
{
    static unsigned seq;
    snprintf(cg_dir, sizeof(cg_dir), "%s/rcl-bench-footprint-%d-%u", cg_base, (int)getpid(), seq++);
    if (mkdir(cg_dir, 0755) != 0) {
        cg_dir[0] = '\0';
        return -1;
    }
    char lim[32];
    snprintf(lim, sizeof(lim), "%.0f", CG_LIMIT_B);
    if (write_file(cg_dir, "memory.limit_in_bytes", lim) != 0) {
        cgroup_remove();
        return -1;
    }
    write_file(cg_dir, "memory.memsw.limit_in_bytes", lim);   /* only with swap accounting */
    return 0;
}

static double cg_read(const char *name, const char *key)
{
    char path[PATH_MAX + 64], line[256];
    snprintf(path, sizeof(path), "%s/%s", cg_dir, name);
    FILE *f = fopen(path, "r");
    double v = -1;
    while (f && fgets(line, sizeof(line), f)) {
        if (!key) {
            v = strtod(line, NULL);
            break;
        }
        size_t k = strlen(key);
        if (!strncmp(line, key, k) && line[k] == ' ') {
            v = strtod(line + k + 1, NULL);
            break;
        }
    }
    if (f)
        fclose(f);
    return v;
}

/* Interrupted: the child and the group go too. */
static void on_signal(int sig)
{
    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        waitpid(child_pid, NULL, 0);
    }
    if (cg_dir[0])
        for (int t = 0; t < 50 && rmdir(cg_dir) != 0; t++)
            usleep(20000);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ------------------------------------------------------------------------ */
/* rss: outside any cgroup                                                   */
/* ------------------------------------------------------------------------ */

static void bench_rss(int secs)
{
    static const char *const values[] = { "4k", "mix" };
    char s_run[16], s_base[16];
    int base_secs = secs < 3 ? secs : 3;
    snprintf(s_run, sizeof(s_run), "%d", secs);
    snprintf(s_base, sizeof(s_base), "%d", base_secs);

    printf("\n-- outside any cgroup, RECLAIM_LIMIT=%s (%d s per run; baseline: --no-cache, %d s)\n",
           RSS_LIMIT, secs, base_secs);
    printf("%-6s %12s %12s %10s %14s %12s %6s %9s\n", "values", "baseline", "peak RSS", "RSS/limit",
           "(RSS-base)/lim", "goal", "met", "corrupt");
    bj_obj("rss");
    bj_num("limit_mib", RSS_LIMIT_B / MiB);
    bj_num("goal_ratio", GOAL);
    for (int v = 0; v < 2; v++) {
        struct kv_result b, r;
        char *const bargv[] = { "kv_cache", "--values", (char *)values[v], "--seconds", s_base,
                                "--no-cache", NULL };
        char *const argv[] = { "kv_cache", "--values", (char *)values[v], "--seconds", s_run, NULL };
        kv_run(RSS_LIMIT, bargv, base_secs + 60, &b);
        kv_run(RSS_LIMIT, argv, secs + 60, &r);
        double base = field(b.line, "peak_rss_kib") * 1024, rss = field(r.line, "peak_rss_kib") * 1024;
        bj_obj(values[v]);
        if (base < 0 || rss < 0) {
            printf("%-6s failed: baseline '%s', run '%s'\n", values[v], b.line, r.line);
            bj_str("error", "kv_cache printed no figures");
            bj_end_obj();
            continue;
        }
        double goal = GOAL * RSS_LIMIT_B + base;
        printf("%-6s %8.1f MiB %8.1f MiB %10.3f %14.3f %8.1f MiB %6s %9.0f\n", values[v], base / MiB,
               rss / MiB, rss / RSS_LIMIT_B, (rss - base) / RSS_LIMIT_B, goal / MiB,
               rss <= goal ? "yes" : "NO", field(r.line, "corrupt"));
        bj_num("baseline_mib", base / MiB);
        bj_num("peak_rss_mib", rss / MiB);
        bj_num("rss_ratio", rss / RSS_LIMIT_B);
        bj_num("beyond_baseline_ratio", (rss - base) / RSS_LIMIT_B);
        bj_num("goal_mib", goal / MiB);
        bj_bool("goal_met", rss <= goal);
        bj_num("evicted", field(r.line, "evicted"));
        bj_num("corrupt", field(r.line, "corrupt"));
        bj_end_obj();
    }
    bj_end_obj();
}

/* ------------------------------------------------------------------------ */
/* cgroup: a fresh 128 MiB group per case                                    */
/* ------------------------------------------------------------------------ */

struct cg_case {
    const char *name, *values, *outside, *limit;   /* limit NULL: automatic */
    int expect_killed;
};

static void bench_cgroup_case(const struct cg_case *c, int secs)
{
    char s_run[16];
    snprintf(s_run, sizeof(s_run), "%d", secs);
    bj_obj(c->name);
    if (cgroup_create() != 0) {
        printf("%-14s cannot make the cgroup: %s\n", c->name, strerror(errno));
        bj_str("error", "cannot make the cgroup");
        bj_end_obj();
        return;
    }
    char *const argv[] = { "kv_cache", "--values", (char *)c->values, "--seconds", s_run,
                           "--outside", (char *)c->outside, NULL };
    struct kv_result r;
    kv_run(c->limit, argv, secs + 60, &r);
    double peak = cg_read("memory.max_usage_in_bytes", NULL);
    double kills = cg_read("memory.oom_control", "oom_kill");
    cgroup_remove();
    const char *verdict = c->expect_killed ? (r.killed ? "killed, as expected" : "NOT killed")
                                           : (!r.killed && kills == 0 && peak < CG_LIMIT_B ? "lived" : "FAILED");
    printf("%-14s %-4s %7s %8s %9.1f MiB %9.3f %9.0f %9.0f  %s\n", c->name, c->values, c->outside,
           c->limit ? c->limit : "auto", peak / MiB, peak / CG_LIMIT_B, kills,
           r.line[0] ? field(r.line, "corrupt") : -1, verdict);
    bj_str("values", c->values);
    bj_num("outside_mib", atof(c->outside));
    bj_str("budget", c->limit ? c->limit : "auto");
    bj_num("peak_mib", peak / MiB);
    bj_num("peak_ratio", peak / CG_LIMIT_B);
    bj_num("oom_kills", kills);
    bj_bool("killed", r.killed);
    bj_bool("expect_killed", c->expect_killed);
    if (r.line[0]) {
        bj_num("corrupt", field(r.line, "corrupt"));
        bj_num("evicted", field(r.line, "evicted"));
    }
    bj_end_obj();
}

static void bench_cgroup(int secs)
{
    static const struct cg_case cases[] = {
        { "4k", "4k", "0", NULL, 0 },
        { "mix", "mix", "0", NULL, 0 },
        { "4k+40M", "4k", "40", NULL, 0 },
        { "mix+40M", "mix", "40", NULL, 0 },
        { "control", "4k", "0", "4G", 1 },
    };
    printf("\n-- in a fresh 128 MiB cgroup v1 memory group per case (%d s per run)\n", secs);
    printf("%-14s %-4s %7s %8s %13s %9s %9s %9s\n", "case", "vals", "outside", "budget", "cg peak",
           "peak/lim", "oom_kill", "corrupt");
    bj_obj("cgroup");
    bj_num("limit_mib", CG_LIMIT_B / MiB);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        bench_cgroup_case(&cases[i], cases[i].expect_killed ? 20 : secs);
    bj_end_obj();
}

static void bench_reaction(int reps)
{
    double us[MAX_REPS] = { 0 };   /* all set before read; gcc under ASan cannot tell */
    int n = 0, missed = 0;
    printf("\n-- reaction: cgroup usage crossing the low watermark -> first shrinker call (%d runs)\n",
           reps);
    for (int i = 0; i < reps; i++) {
        if (cgroup_create() != 0)
            break;
        char usage[PATH_MAX + 32];
        snprintf(usage, sizeof(usage), "%s/memory.usage_in_bytes", cg_dir);
        char *const argv[] = { "kv_cache", "--reaction", usage, NULL };
        struct kv_result r;
        kv_run(NULL, argv, 60, &r);
        cgroup_remove();
        /* Negative: the library's own samples of its footprint started
         * reclaim before the program read the crossing from the file. */
        if (field(r.line, "crossed") != 1 || field(r.line, "scanned") != 1)
            missed++;
        else
            us[n++] = field(r.line, "reaction_us");
    }
    struct bench_stat s = bench_stat_of(us, n);
    if (n)
        printf("reaction_us median %.0f  min %.0f  max %.0f  (%d runs, %d without a crossing or scan;\n"
               "negative: reclaim began before the program saw the crossing)\n",
               s.med, s.min, s.max, n, missed);
    else
        printf("no run measured a reaction (%d missed)\n", missed);
    bj_obj("reaction");
    bj_num("runs", n);
    bj_num("missed", missed);
    bj_stat("reaction_us", s);
    bj_arr("runs_us");
    for (int i = 0; i < n; i++)
        bj_num(NULL, us[i]);
    bj_end_arr();
    bj_end_obj();
}

/* ------------------------------------------------------------------------ */
/* trim                                                                      */
/* ------------------------------------------------------------------------ */

static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE) / MiB;
}

/* One sample per repeat: {two trims' us, RSS before, RSS after}. N MiB of 4 KiB
 * blocks, then one more kept, so that the freed blocks are not the top of
 * the heap (which glibc's free() would return by itself); `keep_every` > 0
 * also keeps every keep_every-th block, as a shrinker that freed most of a
 * cache leaves it. Runs in a child with a 1 GiB budget so that nothing
 * reclaims (and trims) meanwhile. */
static int trim_child(int n_mib, int keep_every, int reps, double out[][3])
{
    struct rcl_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    rcl_config_from_env(&cfg);
    cfg.limit = (size_t)1 << 30;
    if (rcl_init(&cfg) != 0)
        return -1;
    /* Reclaim's trims age the slabs a second apart, and give back the free
     * pages of those left untouched for a step at the next (src/slab.c):
     * here two trims with no wait between them, each a step. */
    atomic_store(&rcl__slab_park_ns, 0);
    size_t nblocks = (size_t)n_mib * 256;
    void **blk = calloc(nblocks + 1, sizeof(*blk));
    if (!blk)
        return -1;
    for (int rep = 0; rep < reps; rep++) {
        for (size_t i = 0; i <= nblocks; i++) {
            blk[i] = rcl_alloc(4096, RCL_DEFAULT);
            if (!blk[i])
                return -1;
            memset(blk[i], (int)i, 4096);
        }
        for (size_t i = 0; i < nblocks; i++)
            if (!keep_every || i % (size_t)keep_every)
                rcl_free(blk[i]);
        rcl_usage_sync();
        out[rep][1] = rss_mib();
        uint64_t t0 = bench_now_ns();
        rcl__trim_memory();
        rcl__trim_memory();
        out[rep][0] = (double)(bench_now_ns() - t0) / 1000.0;
        out[rep][2] = rss_mib();
        for (size_t i = 0; i <= nblocks; i++)
            if (i == nblocks || (keep_every && i % (size_t)keep_every == 0))
                rcl_free(blk[i]);
        rcl_usage_sync();
        rcl__trim_memory();
    }
    return 0;
}

static void bench_trim(int reps)
{
    static const int sizes[] = { 16, 64, 256 };
    printf("\n-- trim: the trim reclaim runs (slabs, then backend), twice, a step of the slabs' "
           "ageing each, after freeing N MiB of 4 KiB blocks (%d repeats)\n", reps);
    printf("%8s %-12s %10s %10s %10s %14s %14s\n", "N", "freed", "median us", "min us", "max us",
           "RSS before", "RSS after");
    bj_arr("trim");
    for (int s = 0; s < 6; s++) {
        int keep = s % 2 ? 16 : 0;
        int mib = sizes[s / 2];
        double res[MAX_REPS][3];
        int p[2];
        if (pipe(p) != 0)
            return;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            int ok = trim_child(mib, keep, reps, res) == 0;
            if (ok && write(p[1], res, sizeof(res[0]) * (size_t)reps) < 0)
                ok = 0;
            _exit(ok ? 0 : 1);
        }
        close(p[1]);
        size_t want = sizeof(res[0]) * (size_t)reps, got = 0;
        while (pid > 0 && got < want) {
            ssize_t k = read(p[0], (char *)res + got, want - got);
            if (k <= 0)
                break;
            got += (size_t)k;
        }
        close(p[0]);
        if (pid > 0)
            waitpid(pid, NULL, 0);
        if (got < want) {
            printf("%4d MiB  failed\n", mib);
            continue;
        }
        double us[MAX_REPS], before[MAX_REPS], after[MAX_REPS];
        for (int i = 0; i < reps; i++) {
            us[i] = res[i][0];
            before[i] = res[i][1];
            after[i] = res[i][2];
        }
        struct bench_stat t = bench_stat_of(us, reps), b = bench_stat_of(before, reps),
                          a = bench_stat_of(after, reps);
        printf("%4d MiB %-12s %10.0f %10.0f %10.0f %10.1f MiB %10.1f MiB\n", mib,
               keep ? "15 of 16" : "all", t.med, t.min, t.max, b.med, a.med);
        bj_obj(NULL);
        bj_num("mib", mib);
        bj_num("kept_one_in", keep);
        bj_stat("trim_us", t);
        bj_stat("rss_before_mib", b);
        bj_stat("rss_after_mib", a);
        bj_end_obj();
    }
    bj_end_arr();
}

int main(int argc, char **argv)
{
    bench_args(argc, argv, "bench_footprint",
               "What the budget means in real memory: peak RSS over RECLAIM_LIMIT=64M outside a\n"
               "cgroup (beside the program's RSS without its cache), cgroup peak over a 128 MiB v1\n"
               "memory cgroup's limit and its OOM kills (automatic budget, beside 40 MiB of plain\n"
               "malloc, and the control without reclaim), the cost of reclaim's trim (the slabs'\n"
               "and the backend's) after freeing 16/64/256 MiB, and the reaction to the cgroup's\n"
               "usage threshold. The workload is BUILD/tests/progs/kv_cache. BENCH_SECONDS=S\n"
               "sets the seconds per cache run.");
    int quick = bench_quick();
    int secs = (int)bench_env_long("BENCH_SECONDS", quick ? 4 : 10);
    int reps = bench_reps(3, 5, MAX_REPS);

    bench_print_header("footprint: the budget in real memory");
    if (!find_kv_cache()) {
        printf("skipped: %s is missing (make builds it with the tests)\n", kv_path);
        return 0;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    bench_json_begin("footprint");
    bj_num("seconds", secs);
    bj_num("reps", reps);

    bench_rss(secs);
    const char *why = cgroup_v1_find();
    if (why) {
        printf("\n-- cgroup and reaction: skipped: %s (needs root and a writable v1 memory "
               "controller)\n", why);
        bj_str("cgroup_skipped", why);
    } else {
        bench_cgroup(secs);
        bench_reaction(reps);
    }
    bench_trim(reps);
    bench_json_end();
    return 0;
}
