/* SPDX-License-Identifier: MIT */
/*
 * bench_scope - what a scope costs: save/restore pairs, rcl_current_gfp and
 * context capture/adopt, through the shared library, beside the physical
 * floor - a bare thread-local increment pair - and a malloc/free pair.
 *
 * The floor comes in two forms: `tls_inc_pair` is the increment and the
 * decrement inline in the loop (nothing can be cheaper), `tls_call_pair`
 * the same behind two calls that cannot be inlined (nothing reached through
 * a function call can be cheaper). The goals are measured against the first,
 * the stricter: a scope pair <= 2 ns and within 2x of it, and at
 * most a quarter of a 64-byte malloc/free pair (the project's goals).
 *
 * Every loop body ends with a compiler barrier so that nothing is hoisted
 * out of the loop or merged across iterations; the loop's own counter costs
 * the same in every row.
 */
#include "bench.h"
#include "reclaim.h"

#include <pthread.h>

#define MAX_REPS 64

static __thread unsigned tls_scope;

static __attribute__((noinline)) unsigned floor_save(unsigned bits)
{
    unsigned old = tls_scope;
    tls_scope = old | bits;
    return ~old & bits;
}

static __attribute__((noinline)) void floor_restore(unsigned saved)
{
    tls_scope &= ~saved;
}

enum op {
    OP_TLS_INC, OP_TLS_CALL, OP_SCOPE, OP_NOFS, OP_GUARD, OP_NESTED,
    OP_CURRENT_GFP, OP_CURRENT_GFP_SCOPED, OP_CONTEXT, OP_MALLOC, OP_RCL_ALLOC, NOPS
};

static const char *const op_name[NOPS] = {
    [OP_TLS_INC] = "tls_inc_pair",
    [OP_TLS_CALL] = "tls_call_pair",
    [OP_SCOPE] = "scope_save_restore",
    [OP_NOFS] = "nofs_save_restore",
    [OP_GUARD] = "nofs_scope_guard",
    [OP_NESTED] = "nested_inner_pair",
    [OP_CURRENT_GFP] = "current_gfp",
    [OP_CURRENT_GFP_SCOPED] = "current_gfp_in_noio",
    [OP_CONTEXT] = "context_capture_adopt_restore",
    [OP_MALLOC] = "malloc_free_64",
    [OP_RCL_ALLOC] = "rcl_alloc_free_64",
};

static const char *const op_what[NOPS] = {
    [OP_TLS_INC] = "floor: TLS ++ and -- inline",
    [OP_TLS_CALL] = "floor: TLS or/and-not behind 2 calls",
    [OP_SCOPE] = "rcl_scope_save(NOFS)+restore",
    [OP_NOFS] = "rcl_nofs_save+rcl_nofs_restore",
    [OP_GUARD] = "RCL_NOFS_SCOPE() block",
    [OP_NESTED] = "NOFS pair inside a NOIO scope",
    [OP_CURRENT_GFP] = "rcl_current_gfp(DEFAULT)",
    [OP_CURRENT_GFP_SCOPED] = "rcl_current_gfp in NOIO",
    [OP_CONTEXT] = "capture + adopt + restore",
    [OP_MALLOC] = "malloc(64)+free",
    [OP_RCL_ALLOC] = "rcl_alloc(64)+rcl_free",
};

static struct rcl_context ctx_nofs;   /* captured in a NOFS scope: adopting it changes the scope */
static rcl_gfp_t gfp_sink;

BENCH_LOOP(loop_tls_inc, tls_scope++; bench_barrier(); tls_scope--)
BENCH_LOOP(loop_tls_call, floor_restore(floor_save(RCL_SCOPE_NOFS)))
BENCH_LOOP(loop_scope, rcl_scope_restore(rcl_scope_save(RCL_SCOPE_NOFS)))
BENCH_LOOP(loop_nofs, rcl_nofs_restore(rcl_nofs_save()))
BENCH_LOOP(loop_guard, { RCL_NOFS_SCOPE(); bench_barrier(); })
BENCH_LOOP(loop_current_gfp, gfp_sink += rcl_current_gfp(RCL_DEFAULT))
BENCH_LOOP(loop_context, struct rcl_context saved; rcl_context_adopt(&ctx_nofs, &saved);
     rcl_context_restore(&saved))
BENCH_LOOP(loop_malloc, char *p = malloc(64); *(volatile char *)p = 1; bench_escape(p); free(p))
BENCH_LOOP(loop_rcl_alloc, char *p = rcl_alloc(64, RCL_DEFAULT); *(volatile char *)p = 1;
     bench_escape(p); rcl_free(p))

static void run(enum op op, long iters)
{
    unsigned outer = 0;

    if (op == OP_NESTED || op == OP_CURRENT_GFP_SCOPED)
        outer = rcl_noio_save();
    switch (op) {
    case OP_TLS_INC: loop_tls_inc(iters); break;
    case OP_TLS_CALL: loop_tls_call(iters); break;
    case OP_SCOPE: case OP_NESTED: loop_scope(iters); break;
    case OP_NOFS: loop_nofs(iters); break;
    case OP_GUARD: loop_guard(iters); break;
    case OP_CURRENT_GFP: case OP_CURRENT_GFP_SCOPED: loop_current_gfp(iters); break;
    case OP_CONTEXT: loop_context(iters); break;
    case OP_MALLOC: loop_malloc(iters); break;
    case OP_RCL_ALLOC: loop_rcl_alloc(iters); break;
    case NOPS: break;
    }
    if (outer)
        rcl_noio_restore(outer);
}

static double measure(enum op op, long iters)
{
    uint64_t t0;

    run(op, iters / 64 + 1);
    t0 = bench_now_ns();
    run(op, iters);
    return (double)(bench_now_ns() - t0) / (double)iters;
}

static double op_ns(long iters, void *op)
{
    return measure(*(enum op *)op, iters);
}

int main(int argc, char **argv)
{
    bench_args(argc, argv, "bench_scope", "What a scope costs: save/restore pairs, rcl_current_gfp and context capture/adopt, beside a thread-local increment.");
    int quick = bench_quick();
    int reps = bench_reps(3, 11, MAX_REPS);
    double target_ms = quick ? 2.0 : 10.0;
    double v[NOPS][MAX_REPS], r_floor[MAX_REPS], r_call[MAX_REPS], r_malloc[MAX_REPS];
    long iters[NOPS];
    struct bench_stat st[NOPS], rf, rc, rm;
    struct rcl_config cfg;
    int ret;

    rcl_config_default(&cfg);
    cfg.pressure = 0;
    ret = rcl_init(&cfg);
    if (ret) {
        fprintf(stderr, "bench_scope: rcl_init: %s\n", strerror(-ret));
        return 1;
    }
    {
        unsigned s = rcl_nofs_save();
        rcl_context_capture(&ctx_nofs);
        rcl_nofs_restore(s);
    }
    for (int o = 0; o < NOPS; o++)
        iters[o] = bench_calibrate(op_ns, &(enum op){ (enum op)o }, target_ms);
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < NOPS; k++) {
            int o = (k + r) % NOPS;
            v[o][r] = measure((enum op)o, iters[o]);
        }
        r_floor[r] = v[OP_SCOPE][r] / v[OP_TLS_INC][r];
        r_call[r] = v[OP_SCOPE][r] / v[OP_TLS_CALL][r];
        r_malloc[r] = v[OP_SCOPE][r] / v[OP_MALLOC][r];
    }
    for (int o = 0; o < NOPS; o++)
        st[o] = bench_stat_of(v[o], reps);
    rf = bench_stat_of(r_floor, reps);
    rc = bench_stat_of(r_call, reps);
    rm = bench_stat_of(r_malloc, reps);

    bench_print_header("scopes: ns per operation, median [min..max]");
    printf("   %d rounds, one thread, through the shared library\n\n", reps);
    printf("%-30s %-40s %24s %8s\n", "operation", "what", "ns", "x floor");
    for (int o = 0; o < NOPS; o++)
        printf("%-30s %-40s %7.2f [%6.2f..%6.2f] %8.2f\n", op_name[o], op_what[o],
               st[o].med, st[o].min, st[o].max, st[o].med / st[OP_TLS_INC].med);
    printf("\nscope pair / TLS increment pair : %5.2f [%4.2f..%4.2f]   goal <= 2     %s\n",
           rf.med, rf.min, rf.max, rf.med <= 2 ? "met" : "MISSED");
    printf("same, fastest rounds (min/min)  : %5.2f\n", st[OP_SCOPE].min / st[OP_TLS_INC].min);
    printf("scope pair / 2-call TLS pair    : %5.2f [%4.2f..%4.2f]\n", rc.med, rc.min, rc.max);
    printf("scope pair, ns                  : %5.2f [%4.2f..%4.2f]   goal <= 2 ns  %s\n",
           st[OP_SCOPE].med, st[OP_SCOPE].min, st[OP_SCOPE].max,
           st[OP_SCOPE].med <= 2 ? "met" : "MISSED");
    printf("scope pair / malloc+free 64 B   : %5.2f [%4.2f..%4.2f]   goal <= 0.25  %s\n",
           rm.med, rm.min, rm.max, rm.med <= 0.25 ? "met" : "MISSED");
    printf("same, fastest rounds (min/min)  : %5.2f\n", st[OP_SCOPE].min / st[OP_MALLOC].min);

    bench_json_begin("scope");
    bj_num("reps", reps);
    bj_arr("results");
    for (int o = 0; o < NOPS; o++) {
        bj_obj(NULL);
        bj_str("op", op_name[o]);
        bj_str("what", op_what[o]);
        bj_num("iters", (double)iters[o]);
        bj_stat("ns", st[o]);
        bj_num("ratio_floor", st[o].med / st[OP_TLS_INC].med);
        bj_end_obj();
    }
    bj_end_arr();
    bj_obj("goals");
    bj_stat("scope_over_floor", rf);
    bj_num("scope_over_floor_min_min", st[OP_SCOPE].min / st[OP_TLS_INC].min);
    bj_num("scope_over_malloc64_min_min", st[OP_SCOPE].min / st[OP_MALLOC].min);
    bj_stat("scope_over_call_floor", rc);
    bj_stat("scope_over_malloc64", rm);
    bj_num("scope_ns_goal", 2);
    bj_bool("scope_ns_met", st[OP_SCOPE].med <= 2);
    bj_bool("floor_ratio_met", rf.med <= 2);
    bj_bool("malloc_ratio_met", rm.med <= 0.25);
    bj_end_obj();
    bench_json_end();
    rcl_shutdown();
    return 0;
}
