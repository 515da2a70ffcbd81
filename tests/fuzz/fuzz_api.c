/* SPDX-License-Identifier: MIT */
/*
 * fuzz_api.c - libFuzzer target: the input is a sequence of valid API
 * calls (allocation family, charges, limits, reclaim, a mempool, an LRU
 * with its shrinker, scopes, domains, contexts). After every call:
 * usage <= limit. At the end, with everything freed and destroyed: usage
 * 0, and not one report (a valid sequence has nothing to report). Memory
 * errors and leaks are ASan's and LSan's to find.
 *
 *   make fuzz                 builds build-fuzz/fuzz_api (clang) and runs
 *                             it for FUZZ_TIME seconds (default 60)
 *
 * Allocations are RCL__NOWARN (a failure is a valid outcome, not a report)
 * and never block on a mempool: a pool allocation is RCL_NOWAIT.
 */
#include "reclaim.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBLOCKS   16
#define NELEMS    8
#define NITEMS    16
#define NSCOPES   8
#define NDOMAINS  4
#define MAX_SIZE  (256 * 1024)
/* A limit is only ever lowered to what is in use plus this: room for the
 * stock this thread may have pre-charged under the old limit. */
#define LIMIT_SLACK (512 * 1024)

struct input { const uint8_t *p; size_t n; };

static unsigned byte(struct input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static size_t size_from(struct input *in)
{
    size_t v = byte(in) | (size_t)byte(in) << 8 | (size_t)byte(in) << 16;
    return v % MAX_SIZE + 1;
}

static const rcl_gfp_t gfps[] = {
    RCL_DEFAULT | RCL__NOWARN, RCL_NOFS | RCL__NOWARN, RCL_NOIO | RCL__NOWARN,
    RCL_NOWAIT, RCL_ATOMIC | RCL__NOWARN, RCL_DEFAULT | RCL__NORETRY | RCL__NOWARN,
    RCL_DEFAULT | RCL__ZERO | RCL__NOWARN, RCL_NOWAIT | RCL__HIGH,
};

static rcl_gfp_t gfp_from(struct input *in)
{
    return gfps[byte(in) % (sizeof(gfps) / sizeof(gfps[0]))];
}

/* ------------------------------------------------------------------------ */
/* State of one run                                                          */
/* ------------------------------------------------------------------------ */

struct item { struct rcl_lru_node node; unsigned idx; char pad[100]; };

static struct {
    void *blocks[NBLOCKS];
    void *elems[NELEMS];
    struct item *items[NITEMS];
    size_t charged;
    unsigned scopes[NSCOPES], nscopes;
    unsigned tokens[NDOMAINS], ntokens;
    struct rcl_domain *domains[NDOMAINS];
    struct rcl_mempool *pool;
    struct rcl_lru *lru;
} S;

static atomic_uint reports;
static char last_report[512];

static void on_report(const char *r, void *arg)
{
    (void)arg;
    atomic_fetch_add(&reports, 1);
    snprintf(last_report, sizeof(last_report), "%s", r);
}

static void item_free(struct rcl_lru_node *n, void *arg)
{
    struct item *it = (struct item *)(void *)n;
    (void)arg;
    S.items[it->idx] = NULL;
    rcl_free(it);
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_api: invariant broken: %s (usage %zu, limit %zu)\n",
                what, rcl_usage(), rcl_limit());
        abort();
    }
}

/* ------------------------------------------------------------------------ */
/* Operations                                                                */
/* ------------------------------------------------------------------------ */

static void op(struct input *in)
{
    unsigned code = byte(in), i = byte(in);
    void **b = &S.blocks[i % NBLOCKS];

    switch (code % 22) {
    case 0:
        rcl_free(*b);
        *b = rcl_alloc(size_from(in), gfp_from(in));
        break;
    case 1:
        rcl_free(*b);
        *b = rcl_calloc(byte(in) + 1, size_from(in) / 256 + 1, gfp_from(in));
        break;
    case 2: {
        void *r = rcl_realloc(*b, size_from(in), gfp_from(in));
        if (r)
            *b = r;
        break;
    }
    case 3:
        rcl_free(*b);
        *b = rcl_aligned_alloc((size_t)16 << (byte(in) % 9), size_from(in), gfp_from(in));
        break;
    case 4:
        rcl_free(*b);
        *b = rcl_valloc(size_from(in), gfp_from(in));
        break;
    case 5:
        rcl_free(*b);
        *b = NULL;
        break;
    case 6: {
        size_t n = size_from(in);
        if (rcl_charge(n, gfp_from(in)) == 0)
            S.charged += n;
        break;
    }
    case 7: {
        size_t n = S.charged ? size_from(in) % S.charged + 1 : 0;
        rcl_uncharge(n);
        S.charged -= n;
        break;
    }
    case 8: {
        size_t want = (size_t)(byte(in) % 64 + 1) * 256 * 1024;
        size_t floor = rcl_usage() + LIMIT_SLACK;
        rcl_set_limit(want > floor ? want : floor);
        break;
    }
    case 9:
        rcl_reclaim(size_from(in), gfp_from(in));
        break;
    case 10: {
        void **e = &S.elems[i % NELEMS];
        if (!*e)
            *e = rcl_mempool_alloc(S.pool, RCL_NOWAIT);
        break;
    }
    case 11: {
        void **e = &S.elems[i % NELEMS];
        rcl_mempool_free(*e, S.pool);
        *e = NULL;
        break;
    }
    case 12:
        rcl_mempool_resize(S.pool, byte(in) % 8);
        break;
    case 13: {
        unsigned k = i % NITEMS;
        if (S.items[k])
            break;
        struct item *it = rcl_alloc(sizeof(*it), gfp_from(in));
        if (!it)
            break;
        it->idx = k;
        rcl_lru_node_init(&it->node);
        S.items[k] = it;
        check(rcl_lru_add(S.lru, &it->node) == 1, "lru_add of a fresh node");
        break;
    }
    case 14: {
        struct item *it = S.items[i % NITEMS];
        if (it && rcl_lru_del(S.lru, &it->node) == 1)
            item_free(&it->node, NULL);
        break;
    }
    case 15: {
        struct item *it = S.items[i % NITEMS];
        if (it)
            rcl_lru_touch(S.lru, &it->node);
        break;
    }
    case 16:
        if (S.nscopes < NSCOPES)
            S.scopes[S.nscopes++] = rcl_scope_save(1u << (byte(in) % 4));
        break;
    case 17:
        if (S.nscopes)
            rcl_scope_restore(S.scopes[--S.nscopes]);
        break;
    case 18:
        if (S.ntokens < NDOMAINS) {
            unsigned t = rcl_domain_enter(S.domains[byte(in) % NDOMAINS]);
            check(t != 0, "domain_enter below the limit");
            S.tokens[S.ntokens++] = t;
        }
        break;
    case 19:
        if (S.ntokens)
            rcl_domain_exit(S.tokens[--S.ntokens]);
        break;
    case 20: {
        struct rcl_context ctx, saved;
        rcl_context_capture(&ctx);
        rcl_context_adopt(&ctx, &saved);
        void *p = rcl_alloc(size_from(in), gfp_from(in));
        rcl_free(p);
        rcl_context_restore(&saved);
        break;
    }
    default:
        rcl_usage_sync();
        break;
    }
    check(rcl_usage() <= rcl_limit(), "usage <= limit");
}

/* ------------------------------------------------------------------------ */
/* One input                                                                 */
/* ------------------------------------------------------------------------ */

static void setup(void)
{
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    cfg.limit = 8 * 1024 * 1024;
    cfg.background = 0;
    cfg.pressure = 0;
    memset(&S, 0, sizeof(S));
    atomic_store(&reports, 0);
    rcl_set_report_fn(on_report, NULL);
    if (rcl_init(&cfg) != 0)
        abort();
    S.pool = rcl_mempool_create(2, 128);
    S.lru = rcl_lru_create();
    if (!S.pool || !S.lru || !rcl_lru_shrinker(S.lru, "fuzz", NULL, item_free, NULL, NULL))
        abort();
    for (unsigned d = 0; d < NDOMAINS; d++)
        if (!(S.domains[d] = rcl_domain_create("fuzz", d % 2, NULL, NULL)))
            abort();
}

static void teardown(void)
{
    while (S.ntokens)
        rcl_domain_exit(S.tokens[--S.ntokens]);
    while (S.nscopes)
        rcl_scope_restore(S.scopes[--S.nscopes]);
    for (unsigned k = 0; k < NBLOCKS; k++)
        rcl_free(S.blocks[k]);
    for (unsigned k = 0; k < NELEMS; k++)
        rcl_mempool_free(S.elems[k], S.pool);
    for (unsigned k = 0; k < NITEMS; k++)
        if (S.items[k] && rcl_lru_del(S.lru, &S.items[k]->node) == 1)
            item_free(&S.items[k]->node, NULL);
    rcl_uncharge(S.charged);
    check(rcl_lru_destroy(S.lru) == 0, "lru_destroy of an empty LRU");
    rcl_mempool_destroy(S.pool);
    for (unsigned d = 0; d < NDOMAINS; d++)
        rcl_domain_destroy(S.domains[d]);
    rcl_usage_sync();
    check(rcl_usage() == 0, "usage 0 once everything is freed");
    if (atomic_load(&reports)) {
        fprintf(stderr, "fuzz_api: a valid sequence was reported: %s\n", last_report);
        abort();
    }
    rcl_shutdown();
    rcl_set_report_fn(NULL, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = { data, size };
    setup();
    for (unsigned n = 0; in.n && n < 512; n++)
        op(&in);
    teardown();
    return 0;
}
