/* SPDX-License-Identifier: MIT */
/*
 * stack.h - the storage stack of the "Overhaul memalloc_no*" thread
 * (dm-devel, June 2020), in user space, with real threads:
 *
 *     writers ──► file system (journal lock, inode cache)
 *                    │ buffers
 *                    ▼
 *                 buffer cache (dirty buffers; its shrinker writes them back)
 *                    │ I/O
 *                    ▼
 *                 loop device (one worker thread) ──► the same file system
 *                                                    (the back-end file)
 *
 * The buffer cache has two brains: the 2014 one (dm-bufio before the fix
 * Dave Chinner reviewed in the "Overhaul memalloc_no*" thread, dm-devel,
 * June 2020: "I may do I/O, so I may wait for I/O")
 * and the fixed one ("a loop device may lead back into a file system, so
 * without FS I never wait"). The loop worker may run in NOIO scope (as the
 * kernel's loop driver does) or not.
 */
#ifndef STORAGE_STACK_H
#define STORAGE_STACK_H

#include <stdatomic.h>
#include <stddef.h>

#include "reclaim.h"

/* Each thread the watchdog shows takes one of its STATE_SLOTS: the
 * writers, the loop worker, the flusher and the background reclaimer. */
#define STACK_MAX_WRITERS 8

struct stack_opts {
    int fixed_bufcache;   /* 1: never wait on I/O without RCL__FS */
    int loop_noio;        /* 1: the loop worker runs in NOIO scope */
    int writers;          /* workload threads, 1 to STACK_MAX_WRITERS */
};

/* What a watchdog prints: one line per thread of the stack. Strings are
 * static; each slot is written by its thread only. */
#define STATE_SLOTS 16
struct thread_state {
    char name[16];
    _Atomic(const char *) what;
    _Atomic long io;              /* I/O number the state refers to, or -1 */
    _Atomic int holds_journal;    /* the thread holds the journal lock */
    _Atomic unsigned long long since_ns;
};

struct stack_counters {
    _Atomic unsigned long long bytes_written;
    _Atomic unsigned long files, ios, writebacks_in_reclaim, inodes_evicted;
    _Atomic unsigned long buffers_dropped, alloc_retries;
};

extern struct stack_counters stack_counters;
extern struct thread_state stack_states[STATE_SLOTS];
extern _Atomic unsigned stack_nstates;

/* Starts every thread of the stack: 0, or -1 with nothing left running
 * or allocated. */
int  stack_start(const struct stack_opts *o);
/* Abort: every wait in the stack (for I/O, for the journal lock) gives up,
 * so that deadlocked threads unwind. */
void stack_abort(void);
/* Stop the workload, join every thread, free every cache; 0, or -1 when a
 * thread did not come back (the caller should exit). Threads still there
 * after half of timeout_ms are stuck: it aborts, as stack_abort() does,
 * and gives them timeout_ms more to unwind; after a stack_abort(), they
 * have timeout_ms. */
int  stack_stop(unsigned timeout_ms);
/* Progress made so far: any I/O served, file created or byte written. */
unsigned long long stack_progress(void);
void stack_print_states(void);
unsigned long long stack_now_ns(void);

#endif
