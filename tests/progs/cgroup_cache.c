/* SPDX-License-Identifier: MIT */
/*
 * cgroup_cache.c - the program tests/test_cgroup_e2e.c runs inside a real
 * memory cgroup. A cache of 64 KiB blocks on a shrinkable LRU, through
 * libreclaim with the automatic limit (or RECLAIM_LIMIT when the test sets
 * one), and a plain memory hog for the pressure case.
 *
 *   cgroup_cache cache    MiB   fill a cache that wants MiB; prints a summary
 *   cgroup_cache noshrink MiB   the same with no shrinker registered
 *   cgroup_cache hold     MiB S fill MiB, say "filled", wait up to S seconds
 *                               for the library to shrink the cache
 *   cgroup_cache setlimit MiB   print the footprint under the automatic
 *                               limit, set MiB as the limit, print it again
 *   cgroup_cache follow S       print the automatic limit, then wait up to
 *                               S seconds for it to change (the test moves
 *                               the process to another cgroup); print it
 *   cgroup_cache hog USAGE_FILE LIMIT HEADROOM
 *                               touch plain memory, 1 MiB at a time, until
 *                               the cgroup's usage is within HEADROOM bytes
 *                               of LIMIT; say "hogging", then wait to be killed
 *
 * Output is one line per event on stdout, key=value, for the test to parse.
 * Exit: 0 as expected; 2 allocations failed; 3 usage error; 4 not shrunk.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "reclaim.h"

#define BLOCK (64 * 1024)

struct block {
    struct rcl_lru_node node;
    char data[BLOCK - sizeof(struct rcl_lru_node)];
};

static struct rcl_lru *lru;
static _Atomic unsigned long evicted;
static _Atomic unsigned long reports;

static void block_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    atomic_fetch_add(&evicted, 1);
    rcl_free(RCL_LRU_ENTRY(n, struct block, node));
}

/* Reports (allocation failures, mostly) are counted, not printed: the
 * test reads stdout and wants only the summary. */
static void count_report(const char *r, void *arg)
{
    (void)r;
    (void)arg;
    atomic_fetch_add(&reports, 1);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Inserts `bytes` worth of blocks, every byte touched; returns failures. */
static unsigned long fill(size_t bytes, unsigned long *inserted)
{
    unsigned long failures = 0;
    for (size_t i = 0; i < bytes / BLOCK; i++) {
        struct block *b = rcl_alloc(sizeof(*b), RCL_DEFAULT);
        if (!b) {
            failures++;
            continue;
        }
        memset(b->data, (int)(i & 0xff) | 1, sizeof(b->data));
        rcl_lru_node_init(&b->node);
        rcl_lru_add(lru, &b->node);
        (*inserted)++;
    }
    return failures;
}

static void summary(const char *what, unsigned long inserted, unsigned long failures)
{
    rcl_usage_sync();
    printf("%s inserted=%lu evicted=%lu failures=%lu count=%lu usage=%zu limit=%zu reports=%lu\n",
           what, inserted, atomic_load(&evicted), failures, rcl_lru_count(lru), rcl_usage(),
           rcl_limit(), atomic_load(&reports));
    fflush(stdout);
}

static int run_cache(size_t mib, int shrinker)
{
    unsigned long inserted = 0;
    if (shrinker && !rcl_lru_shrinker(lru, "e2e-cache", NULL, block_free, NULL, NULL))
        return 3;
    unsigned long failures = fill(mib << 20, &inserted);
    summary("done", inserted, failures);
    return failures ? 2 : 0;
}

static int run_hold(size_t mib, int seconds)
{
    unsigned long inserted = 0;
    if (!rcl_lru_shrinker(lru, "e2e-cache", NULL, block_free, NULL, NULL))
        return 3;
    unsigned long failures = fill(mib << 20, &inserted);
    unsigned long full = rcl_lru_count(lru);
    summary("filled", inserted, failures);
    if (failures)
        return 2;
    for (long t = 0; t < seconds * 1000L; t += 50) {
        if (rcl_lru_count(lru) < full) {
            sleep_ms(200);       /* let the step finish before reporting */
            summary("shrunk", inserted, failures);
            return 0;
        }
        sleep_ms(50);
    }
    summary("unshrunk", inserted, failures);
    return 4;
}

/* What the footprint counts before and after the program sets a limit. */
static int run_setlimit(size_t mib)
{
    printf("auto footprint=%zu limit=%zu\n", rcl_footprint(), rcl_limit());
    if (rcl_set_limit(mib << 20))
        return 3;
    printf("set footprint=%zu limit=%zu\n", rcl_footprint(), rcl_limit());
    fflush(stdout);
    return 0;
}

/* The automatic limit at start, and the one it moves to. */
static int run_follow(int seconds)
{
    size_t start = rcl_limit();
    printf("start limit=%zu\n", start);
    fflush(stdout);
    for (long t = 0; t < seconds * 1000L && rcl_limit() == start; t += 50)
        sleep_ms(50);
    printf("%s limit=%zu reports=%lu\n", rcl_limit() == start ? "unmoved" : "moved",
           rcl_limit(), atomic_load(&reports));
    fflush(stdout);
    return 0;
}

static unsigned long long read_u64(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

static void *volatile hog_chain;

/* Plain memory, not through the library: another process's pressure. */
static int run_hog(const char *usage_file, unsigned long long limit, unsigned long long headroom)
{
    size_t total = 0;
    while (read_u64(usage_file) + headroom < limit && total < limit) {
        char *p = malloc(1 << 20);
        if (!p)
            return 2;
        memset(p, 0x5a, 1 << 20);
        /* kept reachable, or the compiler may drop the whole allocation */
        *(void **)p = hog_chain;
        hog_chain = p;
        total += 1 << 20;
    }
    printf("hogging bytes=%zu usage=%llu\n", total, read_u64(usage_file));
    fflush(stdout);
    for (;;)
        pause();
}

static int usage(const char *rejected)
{
    if (rejected)
        fprintf(stderr, "cgroup_cache: rejected '%s' (see --help)\n", rejected);
    fprintf(rejected ? stderr : stdout,
            "usage: cgroup_cache cache|noshrink|setlimit MiB | hold MiB S | follow S |\n"
            "       cgroup_cache hog USAGE_FILE LIMIT HEADROOM\n"
            "The program tests/test_cgroup_e2e.c runs inside a memory cgroup.\n");
    return rejected ? 3 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--help"))
        return usage(NULL);
    if (argc >= 5 && !strcmp(argv[1], "hog"))
        return run_hog(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    if (argc < 3)
        return usage(argc < 2 ? "(no command)" : argv[1]);
    rcl_set_report_fn(count_report, NULL);
    lru = rcl_lru_create();
    if (!lru)
        return 3;
    size_t mib = strtoul(argv[2], NULL, 10);
    if (!strcmp(argv[1], "cache"))
        return run_cache(mib, 1);
    if (!strcmp(argv[1], "noshrink"))
        return run_cache(mib, 0);
    if (!strcmp(argv[1], "setlimit"))
        return run_setlimit(mib);
    if (!strcmp(argv[1], "follow"))
        return run_follow(atoi(argv[2]));
    if (!strcmp(argv[1], "hold") && argc >= 4)
        return run_hold(mib, atoi(argv[3]));
    return usage(argv[1]);
}
