/* SPDX-License-Identifier: MIT */
/*
 * types.h - the library's shared data structures, apart from the per-thread
 * state (thread.h): the internal view of a captured context, the budget,
 * the counters, a reclaim trace, the options table's rows and the objects
 * fork() must lock. Which file owns each is said beside it.
 */
#ifndef RCL_TYPES_H
#define RCL_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reclaim.h"      /* through internal.h, which includes it first */

/* context capture and adoption (scope.c, domain.c) */
/* The internal view of struct rcl_context. */
struct rcl_ctx {
    unsigned           scope;
    unsigned           ndomains;
    void              *journal;
    /* A context rcl_context_adopt() saved (scope.c); all 0 in a captured one. */
    unsigned           adopt_set;    /* the scope bits the adopt added: its token */
    unsigned           adopt_depth;  /* how deep in the thread's adopts, from 1 */
    uintptr_t          domains[RCL_MAX_DOMAINS];   /* ids: slot and generation
                                                      (domain.c), never pointers */
    unsigned           domain_overflow;  /* domain.c: adopted domains that did
                                            not fit the thread's stack */
    unsigned           adopt_owner;  /* scope.c: the adopting thread's number;
                                        0 in a captured context */
};
_Static_assert(sizeof(struct rcl_ctx) <= sizeof(struct rcl_context),
               "struct rcl_context too small for its contents");

/* The budget (account.c). */
struct rcl_account {
    _Atomic size_t charged;     /* bytes taken from the budget, stocks included */
    _Atomic size_t since_sample; /* charged since the last footprint sample */
    _Atomic size_t outside;     /* real memory beyond `charged`, as last sampled
                                   (footprint.c); every watermark counts it */
    _Atomic size_t limit;
    _Atomic size_t wm_min, wm_low, wm_high;   /* headroom, bytes */
    _Atomic size_t peak;
    _Atomic long   batch;       /* stock refill size */
};
extern struct rcl_account rcl__acct;
/* pct % of v, without overflow for any v. */
static inline uint64_t rcl__pct_of(uint64_t v, unsigned pct)
{
    return v / 100 * pct + v % 100 * pct / 100;
}

/* A bounded reclaim's trace (shrinker.c, reclaim.c): e[] names the
 * RCL__TRACE_MAX shrinkers that took longest, judged by all their calls
 * in the reclaim, not one; tally[] keeps the sums of the next
 * RCL__TRACE_TALLY to run, to judge them by. A shrinker past those is
 * judged by its call alone. */
#define RCL__TRACE_MAX   8
#define RCL__TRACE_TALLY 32
struct rcl__shrink_sum {
    const void        *who;
    unsigned long long ns;
    long               bytes;
    unsigned long      objects;
};
struct rcl__shrink_trace {
    unsigned n, ntally;
    struct {
        const void        *who;
        char               name[32];
        unsigned long long ns;
        long               bytes;
        unsigned long      objects;
    } e[RCL__TRACE_MAX];
    struct rcl__shrink_sum tally[RCL__TRACE_TALLY];
    /* What the shrinkers left out of e[] took, summed (the tally's
     * among it). */
    unsigned long long others_ns;
    long               others_bytes;
    unsigned long      others_objects;
    bool               others;
};

/* Counters (stats.c). */
struct rcl_counters {
    _Atomic unsigned long failures, bad_frees, direct_reclaims, background_wakeups;
    _Atomic unsigned long reserve_allocs, nofail_stalls, mempool_reserve_hits;
    _Atomic unsigned long cgroup_events;      /* v1 usage thresholds crossed */
    _Atomic unsigned long trims;              /* backend trims after reclaim */
    _Atomic unsigned long long trim_ns;
    _Atomic unsigned long long direct_stall_ns;
    _Atomic size_t direct_reclaimed, background_reclaimed;
    /* bounded direct reclaim, throttling, slow cycles (reclaim.c) */
    _Atomic unsigned long direct_bounded, throttled, slow_reclaims;
    _Atomic unsigned long long throttle_ns, background_cpu_ns, direct_cpu_ns;
    /* hot counters of threads that have exited */
    _Atomic unsigned long exited_allocs, exited_frees;
};
extern struct rcl_counters rcl__stats;

/* options.c: the RECLAIM_* table. offset is (size_t)-1 for a process
 * option (no struct rcl_config field; read where it is used). */
enum rcl__opt_kind {
    RCL__OPT_SIZE, RCL__OPT_UINT, RCL__OPT_BOOL, RCL__OPT_LOCKDEP,
    RCL__OPT_SIZE_OR_PCT, RCL__OPT_PATH, RCL__OPT_FOOTPRINT, RCL__OPT_DIRECT_US,
};
struct rcl__option {
    const char *name;
    enum rcl__opt_kind kind;
    size_t offset, size;                /* the field in struct rcl_config */
    unsigned long long min, max;        /* accepted range, sizes and numbers */
    const char *def;                    /* the default, as documented */
    const char *help;
};

/* fork() (fork.c): an object with a lock of its own (workqueue, mempool,
 * LRU) is taken before a fork and unlocked after it; in the child `child`
 * (may be NULL) first fixes, under the lock, what the missing threads
 * left behind. `holder` names the thread (its rcl__self) that holds the
 * lock across the program's code - an LRU's walk, around its isolate
 * callback - which only that thread writes, and only with its own
 * address: a fork() from that code finds the lock its own already. */
struct rcl_thread;
struct rcl__fork_obj {
    struct rcl__fork_obj *next, *prev;
    pthread_mutex_t      *lock;
    void                (*child)(struct rcl__fork_obj *o);
    const struct rcl_thread *claimer;  /* the thread whose destroy is under
                                          way, NULL if none: objs_lock */
    _Atomic(const struct rcl_thread *) holder;
};

#endif /* RCL_TYPES_H */
