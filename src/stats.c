/* SPDX-License-Identifier: MIT */
/*
 * stats.c - counters, and their text and JSON forms.
 *
 * Slow-path events count straight into rcl__stats (atomics, relaxed);
 * the per-allocation counters live in each thread's state and are summed
 * here on request, so counting costs the fast path no shared write.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct rcl_counters rcl__stats;

void rcl__stats_reset(void)
{
    wr(rcl__stats.failures, 0);
    wr(rcl__stats.bad_frees, 0);
    wr(rcl__stats.direct_reclaims, 0);
    wr(rcl__stats.background_wakeups, 0);
    wr(rcl__stats.reserve_allocs, 0);
    wr(rcl__stats.nofail_stalls, 0);
    wr(rcl__stats.mempool_reserve_hits, 0);
    wr(rcl__stats.direct_stall_ns, 0);
    wr(rcl__stats.direct_reclaimed, 0);
    wr(rcl__stats.background_reclaimed, 0);
    wr(rcl__stats.background_cpu_ns, 0);
    wr(rcl__stats.direct_cpu_ns, 0);
    wr(rcl__stats.direct_bounded, 0);
    wr(rcl__stats.throttled, 0);
    wr(rcl__stats.throttle_ns, 0);
    wr(rcl__stats.slow_reclaims, 0);
    wr(rcl__stats.exited_allocs, 0);
    wr(rcl__stats.exited_frees, 0);
}

static void stats_fill(struct rcl_stats *out)
{
    out->usage = rcl_usage();
    out->peak = rd(rcl__acct.peak);
    out->limit = rd(rcl__acct.limit);
    out->wmark_min = rd(rcl__acct.wm_min);
    out->wmark_low = rd(rcl__acct.wm_low);
    out->wmark_high = rd(rcl__acct.wm_high);
    rcl__threads_sum(&out->allocations, &out->frees, &out->thread_cached);
    out->depot_held = rcl__depot_held();
    out->failures = rd(rcl__stats.failures);
    out->bad_frees = rd(rcl__stats.bad_frees);
    out->direct_reclaims = rd(rcl__stats.direct_reclaims);
    out->direct_stall_ns = rd(rcl__stats.direct_stall_ns);
    out->direct_reclaimed = rd(rcl__stats.direct_reclaimed);
    out->background_wakeups = rd(rcl__stats.background_wakeups);
    out->background_reclaimed = rd(rcl__stats.background_reclaimed);
    out->background_cpu_ns = rd(rcl__stats.background_cpu_ns);
    out->direct_cpu_ns = rd(rcl__stats.direct_cpu_ns);
    out->direct_bounded = rd(rcl__stats.direct_bounded);
    out->throttled = rd(rcl__stats.throttled);
    out->throttle_ns = rd(rcl__stats.throttle_ns);
    out->slow_reclaims = rd(rcl__stats.slow_reclaims);
    out->reserve_allocs = rd(rcl__stats.reserve_allocs);
    out->nofail_stalls = rd(rcl__stats.nofail_stalls);
    out->mempool_reserve_hits = rd(rcl__stats.mempool_reserve_hits);
    out->lockdep_reports = rcl__lockdep_count();
    out->nr_shrinkers = rcl__shrinkers_stats(out->shrinkers, RCL_STATS_MAX_SHRINKERS);
}

/* Busy from first use on (rcl__busy_init, internal.h, says why), and
 * through the shrinkers' lock: reclaim.h lets a handler interrupt this
 * call, and a handler's ordinary allocation may reclaim, which takes it. */
void rcl_stats_get(struct rcl_stats *out)
{
    if (!out) {
        rcl__report("rcl_stats_get(NULL): NULL structure; nothing read");
        return;
    }
    memset(out, 0, sizeof(*out));
    unsigned b = rcl__busy_init();
    stats_fill(out);
    rcl__busy_drop(&rcl__self, b);
}

/* A NULL array with room claimed is reported, and still counts the
 * shrinkers: that answer needs no array. */
unsigned rcl_stats_shrinkers(struct rcl_shrinker_stats *out, unsigned max)
{
    if (!out && max) {
        rcl__report("rcl_stats_shrinkers(NULL, %u): NULL array; nothing read", max);
        max = 0;
    }
    if (max)
        memset(out, 0, (size_t)max * sizeof(*out));
    unsigned b = rcl__busy_init();
    unsigned n = rcl__shrinkers_stats(out, max);
    rcl__busy_drop(&rcl__self, b);
    return n;
}

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), 0 if there is
 * none there. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 :
               c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;

    for (size_t i = 1; i < n; i++, lo = 0x80, hi = 0xbf)
        if (s[i] < lo || s[i] > hi)
            return 0;
    return n;
}

/* Shrinker names are the user's: escape what JSON cannot carry raw, and a
 * byte that is no UTF-8 as U+FFFD, since JSON text is UTF-8. */
static void json_string(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;

    fputc('"', f);
    while (*s) {
        size_t n = utf8_seq(s);
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if (*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else if (!n)
            fputs("\\ufffd", f);
        else
            fwrite(s, 1, n, f);
        s += n ? n : 1;
    }
    fputc('"', f);
}

/* The shrinkers printed, and how many are registered, from one reading:
 * the count printed is the list's, not st's, which a longer read taken
 * later would contradict by the shrinkers registered or unregistered in
 * between. */
struct shrinker_list {
    const struct rcl_shrinker_stats *all;
    unsigned nr;                        /* registered */
    unsigned n;                         /* listed: nr, or the first of them */
    struct rcl_shrinker_stats *owned;
};

/* Every shrinker, not only the first RCL_STATS_MAX_SHRINKERS: st's own
 * reading when they fit, else one into an array from malloc, read again,
 * larger, while more were registered than it had room for. Without the
 * memory, or with shrinkers registered faster than the reads, st's reading:
 * its count, and the first of them, the rest counted as left out. Reading
 * in chunks would need no array, but a list printed a chunk at a time is
 * no one reading of the count printed before it. */
static void all_shrinkers(const struct rcl_stats *st, struct shrinker_list *l)
{
    l->all = st->shrinkers;
    l->nr = st->nr_shrinkers;
    l->n = l->nr < RCL_STATS_MAX_SHRINKERS ? l->nr : RCL_STATS_MAX_SHRINKERS;
    l->owned = NULL;
    unsigned want = st->nr_shrinkers;
    for (int tries = 0; want > RCL_STATS_MAX_SHRINKERS && tries < 4; tries++) {
        want += 8;                      /* room for some registered meanwhile */
        struct rcl_shrinker_stats *a = malloc(want * sizeof(*a));
        if (!a)
            return;
        unsigned got = rcl_stats_shrinkers(a, want);
        if (got <= want) {
            l->all = l->owned = a;
            l->nr = l->n = got;
            return;
        }
        free(a);
        want = got;
    }
}

static void print_json(FILE *f, const struct rcl_stats *st, const struct shrinker_list *l)
{
    fprintf(f, "{\"usage\":%zu,\"peak\":%zu,\"limit\":%zu,"
               "\"wmark_min\":%zu,\"wmark_low\":%zu,\"wmark_high\":%zu,"
               "\"allocations\":%lu,\"frees\":%lu,\"failures\":%lu,\"bad_frees\":%lu,"
               "\"thread_cached\":%zu,\"depot_held\":%zu,"
               "\"direct_reclaims\":%lu,\"direct_stall_ns\":%llu,\"direct_reclaimed\":%zu,"
               "\"background_wakeups\":%lu,\"background_reclaimed\":%zu,"
               "\"direct_cpu_ns\":%llu,\"background_cpu_ns\":%llu,\"direct_bounded\":%lu,\"throttled\":%lu,"
               "\"throttle_ns\":%llu,\"slow_reclaims\":%lu,"
               "\"reserve_allocs\":%lu,\"nofail_stalls\":%lu,\"mempool_reserve_hits\":%lu,"
               "\"lockdep_reports\":%lu,\"nr_shrinkers\":%u,\"shrinkers_left_out\":%u,"
               "\"shrinkers\":[",
            st->usage, st->peak, st->limit, st->wmark_min, st->wmark_low, st->wmark_high,
            st->allocations, st->frees, st->failures, st->bad_frees, st->thread_cached,
            st->depot_held, st->direct_reclaims, st->direct_stall_ns, st->direct_reclaimed, st->background_wakeups,
            st->background_reclaimed, st->direct_cpu_ns, st->background_cpu_ns, st->direct_bounded, st->throttled,
            st->throttle_ns, st->slow_reclaims, st->reserve_allocs, st->nofail_stalls,
            st->mempool_reserve_hits, st->lockdep_reports, l->nr, l->nr - l->n);
    for (unsigned i = 0; i < l->n; i++) {
        const struct rcl_shrinker_stats *s = &l->all[i];
        fprintf(f, "%s{\"name\":", i ? "," : "");
        json_string(f, s->name);
        fprintf(f, ",\"calls\":%lu,\"scanned\":%lu,\"freed\":%lu,\"skipped\":%lu,\"deferred\":%lu}",
                s->calls, s->scanned, s->freed, s->skipped, s->deferred);
    }
    fprintf(f, "]}\n");
}

static void print_text(FILE *f, const struct rcl_stats *st, const struct shrinker_list *l)
{
    fprintf(f, "libreclaim statistics\n"
               "  usage %zu of %zu bytes (peak %zu); watermarks min %zu low %zu high %zu\n"
               "  allocations %lu, frees %lu, failures %lu, bad frees %lu; "
               "%zu bytes cached by threads, %zu in the depot\n"
               "  direct reclaim: %lu passes (%lu stopped at their bound, %lu slow), %zu bytes, "
               "%.3f ms stalled (%.3f ms on CPU)\n"
               "  throttled: %lu waits, %.3f ms\n"
               "  background: %lu wake-ups, %zu bytes, %.3f ms CPU\n"
               "  reserve charges %lu, NOFAIL stall reports %lu, mempool reserve hits %lu, "
               "lockdep reports %lu\n",
            st->usage, st->limit, st->peak, st->wmark_min, st->wmark_low, st->wmark_high,
            st->allocations, st->frees, st->failures, st->bad_frees, st->thread_cached,
            st->depot_held, st->direct_reclaims, st->direct_bounded, st->slow_reclaims, st->direct_reclaimed,
            (double)st->direct_stall_ns / 1e6, (double)st->direct_cpu_ns / 1e6, st->throttled, (double)st->throttle_ns / 1e6,
            st->background_wakeups, st->background_reclaimed, (double)st->background_cpu_ns / 1e6,
            st->reserve_allocs, st->nofail_stalls,
            st->mempool_reserve_hits, st->lockdep_reports);
    if (l->n < l->nr)
        fprintf(f, "  shrinkers: %u (the first %u listed; %u left out)\n", l->nr, l->n,
                l->nr - l->n);
    else
        fprintf(f, "  shrinkers: %u\n", l->nr);
    for (unsigned i = 0; i < l->n; i++) {
        const struct rcl_shrinker_stats *s = &l->all[i];
        fprintf(f, "    %-24s calls %lu scanned %lu freed %lu skipped %lu deferred %lu\n",
                s->name, s->calls, s->scanned, s->freed, s->skipped, s->deferred);
    }
}

static void shrinker_list_cancelled(void *l)
{
    rcl__asan_unwinding();
    free(((struct shrinker_list *)l)->owned);
}

int rcl_stats_print(FILE *f, int json)
{
    struct rcl_stats st;

    if (!f) {
        rcl__report("rcl_stats_print(NULL, %d): NULL file; nothing printed", json);
        return -EINVAL;
    }
    rcl_stats_get(&st);
    struct shrinker_list l;
    all_shrinkers(&st, &l);
    /* stdio's writes are cancellation points: a cancel there gives the
     * shrinkers' array back too. */
    pthread_cleanup_push(shrinker_list_cancelled, &l);
    if (json)
        print_json(f, &st, &l);
    else
        print_text(f, &st, &l);
    pthread_cleanup_pop(0);
    free(l.owned);
    return (fflush(f) || ferror(f)) ? -EIO : 0;
}
