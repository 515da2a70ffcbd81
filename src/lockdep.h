/* SPDX-License-Identifier: MIT */
/*
 * lockdep.h - what the rest of the library calls of the lock checker.
 *
 * The checker itself (lockdep_graph.c, lockdep_report.c, lockdep.c) knows
 * locks, edges and reports, nothing of memory; the reclaim model
 * (lockdep_reclaim.c) is its client and turns the library's events -
 * allocations, shrinker passes, scope changes, domains - into pseudo-lock
 * annotations. Callers hand over what the checker needs (a shrinker's
 * name and domain, whether the pass is timed); it never calls back for it.
 */
#ifndef RCL_LOCKDEP_H
#define RCL_LOCKDEP_H

#include "reclaim.h"

#include <stdatomic.h>
#include <stdbool.h>

extern _Atomic int rcl__lockdep_mode;   /* RCL_LOCKDEP_* */
static inline bool rcl__checking(void)
{
    return __builtin_expect(atomic_load_explicit(&rcl__lockdep_mode, memory_order_relaxed) != 0, 0);
}
/* Every allocation-family call in checking mode that reaches the slow path
 * (all of them while its watch's `lockdep` byte is set): the flags asked for and the
 * flags after the scope mask; may_reclaim is whether it may enter reclaim. */
void rcl__lockdep_alloc(rcl_gfp_t gfp);
/* Around a shrinker's count/scan calls in one pass (after the domain rules
 * and the `needs` test passed): reclaim in class gfp by the shrinker called
 * `name` (its storage outlives the pass), of domain d (NULL: none). `timed`:
 * the pass is the background reclaimer's, held to the slow-shrinker bound. */
void rcl__lockdep_shrink_begin(const char *name, struct rcl_domain *d, rcl_gfp_t gfp,
                               bool timed);
void rcl__lockdep_shrink_end(const char *name, struct rcl_domain *d, rcl_gfp_t gfp);
/* Scope bookkeeping in checking mode: bits newly set / restored. */
void rcl__lockdep_scope_save(unsigned set);
void rcl__lockdep_scope_restore(unsigned saved, unsigned before);
/* The same restore, made by rcl_io_flusher_set(0) (returning to `ret`) to
 * end the flusher's NOIO scope: the program's own call, reported in its
 * terms. */
void rcl__lockdep_flusher_off(unsigned saved, unsigned before, const void *ret);
void rcl__lockdep_scope_put(unsigned bits);
/* A captured context restored where the scope (NORECLAIM aside) is `now`,
 * not the `captured` one: out of order, reported. */
void rcl__lockdep_context_restore_captured(unsigned captured, unsigned now);
void rcl__lockdep_reset(void);
void rcl__lockdep_domain_forget(const struct rcl_domain *d);   /* at destroy */
/* The calling thread follows the checker's mode: watched (its inline scope
 * calls come into the library) while it is on, not at all while it is off
 * (lockdep.c, scope.c). */
void rcl__lockdep_thread_attach(void);
/* Turns the checker on (RCL_LOCKDEP_ON, _VERBOSE) or off, at init and
 * shutdown under init_lock; the calling thread follows it at once. At
 * init, _start: an init with the checker off is remembered (lockdep.c's
 * ld_blind says why). */
void rcl__lockdep_set_mode(int mode);
void rcl__lockdep_start(int mode);
unsigned long rcl__lockdep_count(void);
/* The nodes the graph has made and the edges it holds (the tests' view of
 * its bounds). */
void rcl__lockdep_graph_size(unsigned *nodes, unsigned *edges);
/* How often a thread took the way new edges are learned, a backtrace and
 * the graph lock (the tests' view of what a lock order costs). */
unsigned long rcl__lockdep_learns(void);
/* How often a class's first use in a graph took the graph lock to find
 * or make its node (the tests' view of what a class's acquire costs). */
unsigned long rcl__lockdep_class_lookups(void);
/* The report buffers the checker has mapped, and how many of them a
 * report holds now (the tests' view of them). */
void rcl__lockdep_report_buffers(unsigned *mapped, unsigned *busy);
void rcl__lockdep_atfork_prepare(void);
void rcl__lockdep_atfork_parent(void);
void rcl__lockdep_atfork_child(void);

#endif /* RCL_LOCKDEP_H */
