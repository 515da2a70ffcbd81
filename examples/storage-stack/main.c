/* SPDX-License-Identifier: MIT */
/*
 * storage-stack: the deadlock of the "Overhaul memalloc_no*" thread
 * (dm-devel, June 2020) as a running program, in three acts.
 *
 *   act 1  the 2014 buffer cache, lock checker on: the checker reports the
 *          cycle (journal lock -> reclaim(IO) -> loop I/O -> journal lock)
 *          from edges seen separately, before anything has to hang;
 *   act 2  the same code, checker off: it really deadlocks; a watchdog sees
 *          progress stop, prints every thread's state, and unwinds;
 *   act 3  the fixed stack (loop worker in NOIO scope, a buffer cache that
 *          never waits on I/O without FS) under the same pressure: it runs
 *          to the end, quietly, and prints throughput and reclaim statistics.
 *
 * Usage: storage-stack [--act N]... [--budget SIZE] [--seconds S] [--short]
 *                      [--writers N] [--json] [--help]
 * Exit status 0 when every act that ran ended as described above.
 */
#include "stack.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct demo_opts {
    int acts[4];          /* acts[n]: run act n */
    size_t budget;
    double seconds;       /* per act, at most; 0 = each act's default */
    unsigned hang_ms;     /* no progress for this long is a hang */
    int writers;
    int json;
    int stats;            /* print counters and statistics at the end of an act */
};

#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
#define MAX_WRITERS_TEXT TEXT(STACK_MAX_WRITERS)

static void demo_report(const char *report, void *arg)
{
    (void)arg;
    const char *p = report;
    printf("\n");
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        printf("    | %.*s\n", (int)len, p);
        p += len + (nl ? 1 : 0);
    }
    fflush(stdout);
}

static void say(const char *text)
{
    printf("%s\n", text);
    fflush(stdout);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

enum outcome { RAN_OUT, CHECKER_FIRED, HUNG };

struct act_result {
    enum outcome outcome;
    double seconds;
    unsigned long long bytes;
    unsigned long reports;
};

#define MiB(x) ((double)(x) / (1 << 20))

/* Act 3's figures, each with what it means. */
static void explain_stats(const struct act_result *r, const struct demo_opts *d)
{
    struct rcl_stats st;
    struct rcl_shrinker_stats sh[8];
    unsigned nsh = rcl_stats_shrinkers(sh, 8);
    rcl_stats_get(&st);

    printf("\n  What happened in %.1f s:\n", r->seconds);
    printf("  - The %d writers wrote %.1f MiB (%.1f MiB/s) into %lu files through caches\n"
           "    held to a %.1f MiB budget: everything passed through caches that reclaim\n"
           "    emptied again and again. The loop device served %lu requests.\n",
           d->writers, MiB(r->bytes), r->seconds > 0 ? MiB(r->bytes) / r->seconds : 0.0,
           atomic_load(&stack_counters.files), MiB(st.limit), atomic_load(&stack_counters.ios));
    printf("  - The budget peaked at %.2f MiB of %.2f MiB. Below %.2f MiB free (the low\n"
           "    watermark) the background reclaimer wakes; below %.2f MiB (min) allocations\n"
           "    reclaim for themselves.\n",
           MiB(st.peak), MiB(st.limit), MiB(st.wmark_low), MiB(st.wmark_min));
    printf("  - The background reclaimer woke %lu times and freed %.1f MiB. The writers\n"
           "    reclaimed directly %lu times, freeing %.1f MiB, in %.0f ms altogether\n"
           "    (%.3f ms a pass).\n",
           st.background_wakeups, MiB(st.background_reclaimed), st.direct_reclaims,
           MiB(st.direct_reclaimed), (double)st.direct_stall_ns / 1e6,
           st.direct_reclaims ? (double)st.direct_stall_ns / 1e6 / (double)st.direct_reclaims : 0.0);
    printf("  - %lu allocations failed and were retried (%lu retries): expected. A writer\n"
           "    that finds no room even after reclaiming in its own context gets NULL and\n"
           "    tries again 1 ms later. A journal record (NOFS, so its reclaim may not wait\n"
           "    for dirty buffers) is retried only after the journal lock is dropped: what\n"
           "    frees memory, the flusher writing through the loop device, needs that lock.\n"
           "    They ask with RCL__NOWARN, so the library does not report them.\n",
           st.failures, atomic_load(&stack_counters.alloc_retries));
    for (unsigned i = 0; i < nsh && i < 8; i++) {
        printf("  - Shrinker %s: called %lu times, freed %lu objects.\n", sh[i].name,
               sh[i].calls, sh[i].freed);
        if (!strcmp(sh[i].name, "buffer-cache"))
            printf("    Most calls come from NOFS reclaim and find only dirty buffers, which\n"
                   "    it may not wait for there; they return at once.\n");
        if (sh[i].skipped)
            printf("    Skipped %lu times: it needs FS, which the writers' NOFS reclaim does\n"
                   "    not allow, so the background reclaimer (which may enter FS) does its work.\n",
                   sh[i].skipped);
    }
    printf("  - %lu dirty buffers were written back from reclaim (only in contexts that\n"
           "    allow FS as well as I/O); %lu buffers and %lu inodes were reclaimed in all.\n",
           atomic_load(&stack_counters.writebacks_in_reclaim),
           atomic_load(&stack_counters.buffers_dropped), atomic_load(&stack_counters.inodes_evicted));
    printf("  - Lock checker reports: %lu.\n", r->reports);
}

/* Runs the stack until the act's event or its time is up. */
static int run_act(const struct demo_opts *d, int lockdep, const struct stack_opts *so,
                   double seconds, int stop_on_report, struct act_result *res)
{
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    cfg.limit = d->budget;
    cfg.pressure = 0;
    cfg.background = 1;
    cfg.lockdep = lockdep;
    rcl_set_report_fn(demo_report, NULL);
    int err = rcl_init(&cfg);
    if (err) {
        fprintf(stderr, "storage-stack: rcl_init: %s\n", strerror(-err));
        return -1;
    }
    if (stack_start(so)) {
        fprintf(stderr, "storage-stack: cannot start the stack\n");
        rcl_shutdown();     /* the next act starts the library again */
        return -1;
    }

    unsigned long long start = stack_now_ns(), last_change = start;
    unsigned long long last = stack_progress();
    res->outcome = RAN_OUT;
    for (;;) {
        sleep_ms(50);
        unsigned long long now = stack_now_ns(), p = stack_progress();
        if (p != last) {
            last = p;
            last_change = now;
        }
        if (stop_on_report && rcl_lockdep_reports()) {
            res->outcome = CHECKER_FIRED;
            break;
        }
        if (now - last_change >= (unsigned long long)d->hang_ms * 1000000ull) {
            res->outcome = HUNG;
            break;
        }
        if ((double)(now - start) / 1e9 >= seconds)
            break;
    }
    res->seconds = (double)(stack_now_ns() - start) / 1e9;
    res->bytes = atomic_load(&stack_counters.bytes_written);

    if (res->outcome == HUNG) {
        printf("\n  WATCHDOG: no progress for %u ms: no byte written, no file created, no\n"
               "  I/O served. What each thread is doing, and for how long:\n\n", d->hang_ms);
        stack_print_states();
        printf("\n  How to read it: \"holds JOURNAL\" marks the thread holding the file system's\n"
               "  journal lock. \"loop I/O #N\" is the number of the loop-device request the\n"
               "  thread serves or waits for (numbered in the order they were queued).\n"
               "  The journal holder waits in reclaim for a loop request; the loop worker\n"
               "  serving that request (the same number, or the one queued before it) wants\n"
               "  the journal lock. Every other thread waits behind one of the two.\n");
    }
    if (res->outcome != RAN_OUT)
        stack_abort();      /* every wait gives up, so stuck threads unwind */
    if (d->stats) {
        res->reports = rcl_lockdep_reports();
        if (d->json)
            rcl_stats_print(stdout, 1);
        else
            explain_stats(res, d);
    }
    if (stack_stop(5000)) {
        printf("  The threads did not unwind within 5 s; exiting without cleanup:\n");
        stack_print_states();
        fflush(stdout);
        _exit(2);
    }
    return 0;
}

static int act1(const struct demo_opts *d)
{
    say("\n=== Act 1: the 2014 buffer cache, with the lock checker on ===\n");
    say("  A file system writes through its buffer cache onto a loop device whose back\n"
        "  end is a file on the same file system. The file system allocates in NOFS\n"
        "  scope while it holds its journal lock, as file systems must. The buffer\n"
        "  cache's shrinker follows the 2014 dm-bufio logic: \"the caller allows I/O,\n"
        "  so I may write a dirty buffer back and wait for it\". The loop device's\n"
        "  worker serves that I/O by writing the back-end file - which needs the\n"
        "  journal lock.\n\n"
        "  The checker sees each of those three facts separately, in harmless\n"
        "  moments, and puts them together. Its report follows (the lines marked |):\n"
        "  the cycle on one line, then each of its three steps with the thread that\n"
        "  took it and the call stack where it was first seen (#0 is the innermost\n"
        "  frame), then what it means.");
    struct stack_opts so = { .fixed_bufcache = 0, .loop_noio = 1, .writers = d->writers };
    struct act_result r;
    if (run_act(d, RCL_LOCKDEP_ON, &so, d->seconds ? d->seconds : 10, 1, &r))
        return 1;
    if (r.outcome != CHECKER_FIRED) {
        printf("\n  The checker did not report within %.1f s (outcome: %s). Try a smaller "
               "--budget.\n", r.seconds, r.outcome == HUNG ? "hung" : "ran out of time");
        rcl_shutdown();
        return 1;
    }
    printf("\n  The checker reported the cycle %.0f ms into the act, before any thread had to\n"
           "  wait for another. What would deadlock, and why:\n"
           "  a writer holds the journal lock and allocates (NOFS). Memory is short, so it\n"
           "  reclaims directly; NOFS still allows I/O, so the buffer cache writes a dirty\n"
           "  buffer back through the loop device and waits. The loop worker must write\n"
           "  the back-end file, and that needs the journal lock - held by the writer\n"
           "  that is waiting for it. Nobody can move. (The loop worker being in NOIO\n"
           "  scope does not help: it is not the one that reclaims.) Act 1 stops here.\n",
           r.seconds * 1000);
    rcl_shutdown();
    return 0;
}

static int act2(const struct demo_opts *d)
{
    say("\n=== Act 2: the same code with the checker off ===\n");
    say("  Same stack, same pressure, no checker. Under pressure the interleaving the\n"
        "  checker predicted happens, and the program stops making progress. A watchdog\n"
        "  notices (no byte written and no I/O served for a while), shows what each\n"
        "  thread is doing, and makes every wait give up so the program can exit.");
    struct stack_opts so = { .fixed_bufcache = 0, .loop_noio = 1, .writers = d->writers };
    struct act_result r;
    if (run_act(d, RCL_LOCKDEP_OFF, &so, d->seconds ? d->seconds : 30, 0, &r))
        return 1;
    if (r.outcome != HUNG) {
        printf("\n  No deadlock in %.1f s this time - it is a race. Try a smaller --budget or a\n"
               "  longer --seconds. The checker of act 1 does not need the race to happen.\n",
               r.seconds);
        rcl_shutdown();
        return 1;
    }
    printf("\n  Deadlocked %.0f ms into the act: the writer holding the journal lock waits\n"
           "  in reclaim for loop I/O, and the loop worker waits for the journal lock. The\n"
           "  demo aborted every wait so the threads could unwind; a real system would\n"
           "  stay hung until reboot.\n", (r.seconds - d->hang_ms / 1000.0) * 1000);
    rcl_shutdown();
    return 0;
}

static int act3(const struct demo_opts *d)
{
    say("\n=== Act 3: the fixed stack ===\n");
    say("  Two fixes from that discussion: the loop worker runs in NOIO scope (its\n"
        "  own allocations cannot recurse into I/O or file systems), and the buffer cache\n"
        "  waits for write-back only when the caller allows FS as well as I/O - a\n"
        "  loop device may lead back into a file system. Without FS it drops clean\n"
        "  buffers and leaves dirty ones to the flusher thread and to reclaim that may\n"
        "  enter file systems - which waits for a few per call, never long enough to\n"
        "  hold up the background reclaimer. Same budget, same writers, checker on:");
    struct stack_opts so = { .fixed_bufcache = 1, .loop_noio = 1, .writers = d->writers };
    struct act_result r;
    struct demo_opts d3 = *d;
    d3.stats = 1;
    if (run_act(&d3, RCL_LOCKDEP_ON, &so, d->seconds ? d->seconds : 8, 0, &r))
        return 1;
    unsigned long reports = r.reports;
    rcl_shutdown();
    if (r.outcome == HUNG || reports) {
        printf("\n  Unexpected: %s.\n", reports ? "the checker reported" : "the stack hung");
        return 1;
    }
    printf("\n  Ran to the end under constant reclaim, with no report and no hang.\n");
    return 0;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned shift = 0;
    /* strtoull() takes "-1" as the largest value there is. */
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (*end || v > (SIZE_MAX >> shift) || (v << shift) < (1u << 20))
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    return errno || end == s || *end ? -1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "storage-stack: a file system, its buffer cache and a loop device over the same\n"
            "file system, in three acts: the lock checker reports a reclaim deadlock (1),\n"
            "the code really deadlocks without it (2), the fixed code runs (3).\n\n"
            "usage: storage-stack [--act N]... [--budget SIZE] [--seconds S] [--short]\n"
            "                     [--writers N] [--hang-ms MS] [--json]\n"
            "  --act N       run act N (1, 2 or 3); repeat for several; default all three\n"
            "  --budget SIZE memory budget, e.g. 8M (default 8M, at least 1M)\n"
            "  --seconds S   longest time for each act (default 10, 30 and 8)\n"
            "  --short       short acts, for tests: --seconds 5 for acts 1 and 3 (act 2\n"
            "                still waits up to 30 s for the deadlock), --hang-ms 1000;\n"
            "                a --seconds or --hang-ms given wins\n"
            "  --writers N   writer threads, 1 to " MAX_WRITERS_TEXT " (default 3)\n"
            "  --hang-ms MS  no progress for this long is a hang (200 to 600000; default\n"
            "                2000)\n"
            "  --json        print act 3's statistics as JSON\n"
            "  --help        this text\n");
}

int main(int argc, char **argv)
{
    /* hang_ms and seconds 0: not given, for --short and the defaults. */
    struct demo_opts d = { .budget = 8u << 20, .writers = 3 };
    int any = 0, shortrun = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char *why = NULL;
        long n = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--short")) {
            shortrun = 1;
            continue;
        } else if (!strcmp(a, "--json")) {
            d.json = 1;
            continue;
        } else if (strcmp(a, "--act") && strcmp(a, "--budget") && strcmp(a, "--seconds") &&
                   strcmp(a, "--writers") && strcmp(a, "--hang-ms")) {
            fprintf(stderr, "storage-stack: rejected '%s': no such option\n"
                            "(storage-stack --help for the options)\n", a);
            return 2;
        } else if (!v) {
            fprintf(stderr, "storage-stack: rejected %s: it needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--budget")) {
            if (parse_size(v, &d.budget))
                why = "not a size of at least 1M (try 8M)";
        } else if (!strcmp(a, "--seconds")) {
            char *end;
            d.seconds = strtod(v, &end);
            if (*end || end == v || !(d.seconds > 0 && d.seconds <= 3600))
                why = "not a number of seconds from 0 to 3600";
        } else if (parse_long(v, &n)) {
            why = "not a whole number";
        } else if (!strcmp(a, "--act")) {
            if (n < 1 || n > 3)
                why = "there are three acts: 1, 2 and 3";
            else
                d.acts[n] = any = 1;
        } else if (!strcmp(a, "--writers")) {
            if (n < 1 || n > STACK_MAX_WRITERS)
                why = "from 1 to " MAX_WRITERS_TEXT " writer threads";
            d.writers = (int)n;
        } else {
            /* The watchdog looks every 50 ms: below 200, a pause is a hang. */
            if (n < 200 || n > 600000)
                why = "from 200 to 600000 ms";
            d.hang_ms = (unsigned)n;
        }
        if (why) {
            fprintf(stderr, "storage-stack: rejected %s %s: %s\n", a, v, why);
            return 2;
        }
    }
    if (!any)
        d.acts[1] = d.acts[2] = d.acts[3] = 1;
    /* --short sets what the command line left unset, as the defaults do. */
    int seconds_given = d.seconds > 0;
    if (shortrun && !seconds_given)
        d.seconds = 5;
    if (!d.hang_ms)
        d.hang_ms = shortrun ? 1000 : 2000;
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("storage-stack: a memory-reclaim deadlock, found, shown and fixed.\n\n"
           "In one process, with real threads: a file system with a journal lock, its\n"
           "buffer cache, and a loop device whose back-end file lives on the same file\n"
           "system (a disk image mounted from a file). %d writer threads create files\n"
           "and write them; everything they write passes through caches held to a\n"
           "budget of %.1f MiB, far less than they write, so reclaim runs all the time.\n"
           "The stack is the one Dave Chinner and Mikulas Patocka discussed on dm-devel\n"
           "in June 2020 (\"[PATCH 0/6] Overhaul memalloc_no*\"; docs/design.md).\n\n"
           "  Act 1: the old buffer cache, with libreclaim's lock checker on: the\n"
           "         deadlock is reported before it ever happens.\n"
           "  Act 2: the same code with the checker off: it really deadlocks.\n"
           "  Act 3: the fixed code: it runs, and the figures say how reclaim kept up.\n",
           d.writers, (double)d.budget / (1 << 20));
    int failed = 0;
    if (d.acts[1])
        failed |= act1(&d);
    if (d.acts[2]) {
        /* Act 2 waits for a race: its own time limit unless given one. */
        struct demo_opts d2 = d;
        if (shortrun && !seconds_given)
            d2.seconds = 30;
        failed |= act2(&d2);
    }
    if (d.acts[3])
        failed |= act3(&d);
    printf("\n%s\n", failed ? "storage-stack: an act did not end as expected."
                            : "storage-stack: every act ended as expected.");
    return failed ? 1 : 0;
}
