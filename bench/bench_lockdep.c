/* SPDX-License-Identifier: MIT */
/*
 * bench_lockdep - what the lock checker costs: an annotated acquire/release
 * pair on a lock order already seen, with the checker off and on, beside a
 * bare pthread mutex lock/unlock pair measured in the same rounds.
 *
 * The goal: in "on" mode the annotation pair costs under 20 ns, so
 * production daemons can leave the checker on. "nested" rows hold an outer
 * annotated lock for the whole loop, so every acquisition checks the
 * dependency outer -> inner (learnt in the untimed warm-up that starts
 * each row): the realistic case.
 *
 * Every row, the pthread baseline included, starts the library afresh
 * with its own setting (rcl_init/rcl_shutdown; the baseline's is off), and
 * a round times all the rows, the settings alternating, in an order
 * rotated by one each round. So no row, and neither setting, always runs
 * first or last, and the baseline takes every place among the checker-on
 * rows as among the checker-off ones: whatever the machine did during a
 * round falls on the ratios' both sides alike. (Timed as two blocks, off
 * then on, with the baseline in the first, a machine that slowed within a
 * round made every checker-on row's ratio read high.)
 */
#include "bench.h"
#include "reclaim.h"

#include <pthread.h>

#define MAX_REPS 64

enum op {
    OP_PTHREAD, OP_ANNOT_OFF, OP_MUTEX_OFF,
    OP_ANNOT_ON, OP_ANNOT_ON_NESTED, OP_MUTEX_ON_NESTED, OP_TRY_ON_NESTED, NOPS
};

static const char *const op_name[NOPS] = {
    [OP_PTHREAD] = "pthread_mutex_pair",
    [OP_ANNOT_OFF] = "annotation_pair_off",
    [OP_MUTEX_OFF] = "rcl_mutex_pair_off",
    [OP_ANNOT_ON] = "annotation_pair_on",
    [OP_ANNOT_ON_NESTED] = "annotation_pair_on_nested",
    [OP_MUTEX_ON_NESTED] = "rcl_mutex_pair_on_nested",
    [OP_TRY_ON_NESTED] = "rcl_mutex_trylock_pair_on_nested",
};

static const char *const op_what[NOPS] = {
    [OP_PTHREAD] = "pthread_mutex_lock+unlock (baseline)",
    [OP_ANNOT_OFF] = "rcl_lock_acquire+release, checker off",
    [OP_MUTEX_OFF] = "rcl_mutex_lock+unlock, checker off",
    [OP_ANNOT_ON] = "rcl_lock_acquire+release, on, none held",
    [OP_ANNOT_ON_NESTED] = "rcl_lock_acquire+release, on, 1 held",
    [OP_MUTEX_ON_NESTED] = "rcl_mutex_lock+unlock, on, 1 held",
    [OP_TRY_ON_NESTED] = "rcl_mutex_trylock+unlock, on, 1 held",
};

static int op_on(enum op op) { return op >= OP_ANNOT_ON; }

/* The order of a round before its rotation: the settings alternate, and
 * the baseline sits beside the rows the goals divide by it. */
static const enum op round_order[NOPS] = {
    OP_PTHREAD, OP_ANNOT_ON_NESTED, OP_ANNOT_OFF, OP_MUTEX_ON_NESTED,
    OP_MUTEX_OFF, OP_ANNOT_ON, OP_TRY_ON_NESTED,
};

static pthread_mutex_t bare = PTHREAD_MUTEX_INITIALIZER;
static RCL_LOCK_CLASS(outer_class, "outer");
static RCL_LOCK_CLASS(inner_class, "inner");
static rcl_mutex_t inner_mutex;

BENCH_LOOP(loop_pthread, pthread_mutex_lock(&bare); bench_barrier(); pthread_mutex_unlock(&bare))
BENCH_LOOP(loop_annot, rcl_lock_acquire(&inner_class); bench_barrier(); rcl_lock_release(&inner_class))
BENCH_LOOP(loop_mutex, rcl_mutex_lock(&inner_mutex); bench_barrier(); rcl_mutex_unlock(&inner_mutex))
BENCH_LOOP(loop_try, if (rcl_mutex_trylock(&inner_mutex) == 0) rcl_mutex_unlock(&inner_mutex))

static void run(enum op op, long iters)
{
    int nested = op == OP_ANNOT_ON_NESTED || op == OP_MUTEX_ON_NESTED || op == OP_TRY_ON_NESTED;

    if (nested)
        rcl_lock_acquire(&outer_class);
    switch (op) {
    case OP_PTHREAD: loop_pthread(iters); break;
    case OP_ANNOT_OFF: case OP_ANNOT_ON: case OP_ANNOT_ON_NESTED: loop_annot(iters); break;
    case OP_MUTEX_OFF: case OP_MUTEX_ON_NESTED: loop_mutex(iters); break;
    case OP_TRY_ON_NESTED: loop_try(iters); break;
    case NOPS: break;
    }
    if (nested)
        rcl_lock_release(&outer_class);
}

static uint64_t cpu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wall time per pair, and this thread's CPU time per pair: on a loaded
 * machine the second leaves out the time the thread was not running. */
static double measure(enum op op, long iters, double *cpu)
{
    run(op, iters / 64 + 1);
    uint64_t c0 = cpu_now_ns(), t0 = bench_now_ns();
    run(op, iters);
    uint64_t t1 = bench_now_ns(), c1 = cpu_now_ns();
    *cpu = (double)(c1 - c0) / (double)iters;
    return (double)(t1 - t0) / (double)iters;
}

static int start(int lockdep)
{
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    cfg.pressure = 0;
    cfg.background = 0;
    cfg.lockdep = lockdep;
    int ret = rcl_init(&cfg);
    if (ret)
        fprintf(stderr, "bench_lockdep: rcl_init: %s\n", strerror(-ret));
    return ret;
}

int main(int argc, char **argv)
{
    bench_args(argc, argv, "bench_lockdep", "What the lock checker costs: an annotated acquire/release pair with the checker off and on, beside a pthread mutex pair.");
    int quick = bench_quick();
    int reps = bench_reps(3, 11, MAX_REPS);
    long iters = quick ? 200000 : 4000000;
    double v[NOPS][MAX_REPS], c[NOPS][MAX_REPS], r_on[MAX_REPS], r_mutex[MAX_REPS];
    struct bench_stat st[NOPS], ct[NOPS], ron, rmx;

    rcl_mutex_init(&inner_mutex, &inner_class);
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < NOPS; k++) {
            enum op o = round_order[(k + r) % NOPS];

            if (start(op_on(o) ? RCL_LOCKDEP_ON : RCL_LOCKDEP_OFF))
                return 1;
            v[o][r] = measure(o, iters, &c[o][r]);
            if (rcl_lockdep_reports())
                fprintf(stderr, "bench_lockdep: unexpected lock checker report\n");
            rcl_shutdown();
        }
        r_on[r] = v[OP_ANNOT_ON_NESTED][r] / v[OP_PTHREAD][r];
        r_mutex[r] = v[OP_MUTEX_ON_NESTED][r] / v[OP_PTHREAD][r];
    }
    for (int o = 0; o < NOPS; o++) {
        st[o] = bench_stat_of(v[o], reps);
        ct[o] = bench_stat_of(c[o], reps);
    }
    ron = bench_stat_of(r_on, reps);
    rmx = bench_stat_of(r_mutex, reps);

    bench_print_header("lock checker: ns per pair, median [min..max]");
    printf("   %d rounds of %ld pairs, one thread, through the shared library; each row\n"
           "   in its own rcl_init(), the rows of a round interleaved, their order rotated\n\n",
           reps, iters);
    printf("%-34s %-42s %24s %9s %8s\n", "operation", "what", "ns (wall)", "x pthread",
           "cpu ns");
    for (int o = 0; o < NOPS; o++)
        printf("%-34s %-42s %7.2f [%6.2f..%6.2f] %9.2f %8.2f\n", op_name[o], op_what[o],
               st[o].med, st[o].min, st[o].max, st[o].med / st[OP_PTHREAD].med, ct[o].med);
    printf("\nannotation pair on (1 held) / pthread pair : %5.2f [%4.2f..%4.2f]\n",
           ron.med, ron.min, ron.max);
    printf("rcl_mutex pair on (1 held) / pthread pair  : %5.2f [%4.2f..%4.2f]\n",
           rmx.med, rmx.min, rmx.max);
    printf("annotation pair on, 1 held, ns             : %5.2f [%4.2f..%4.2f]   goal < 20 ns  %s\n",
           st[OP_ANNOT_ON_NESTED].med, st[OP_ANNOT_ON_NESTED].min, st[OP_ANNOT_ON_NESTED].max,
           st[OP_ANNOT_ON_NESTED].med < 20 ? "met" : "MISSED");

    bench_json_begin("lockdep");
    bj_num("reps", reps);
    bj_num("iters", (double)iters);
    bj_arr("results");
    for (int o = 0; o < NOPS; o++) {
        bj_obj(NULL);
        bj_str("op", op_name[o]);
        bj_str("what", op_what[o]);
        bj_stat("ns", st[o]);
        bj_stat("cpu_ns", ct[o]);
        bj_num("ratio_pthread", st[o].med / st[OP_PTHREAD].med);
        bj_end_obj();
    }
    bj_end_arr();
    bj_obj("goals");
    bj_stat("annotation_on_over_pthread", ron);
    bj_stat("rcl_mutex_on_over_pthread", rmx);
    bj_num("annotation_on_ns_goal", 20);
    bj_bool("annotation_on_ns_met", st[OP_ANNOT_ON_NESTED].med < 20);
    bj_end_obj();
    bench_json_end();
    rcl_mutex_destroy(&inner_mutex);
    return 0;
}
