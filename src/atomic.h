/* SPDX-License-Identifier: MIT */
/*
 * atomic.h - the library's few low-level idioms: branch hints, the TLS
 * model of the hot per-thread state, the locks that spin before they
 * sleep, and the relaxed accesses that make a field another thread reads
 * defined behaviour without costing a fence.
 */
#ifndef RCL_ATOMIC_H
#define RCL_ATOMIC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sanitize.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define RCL_TLS_IE __attribute__((tls_model("initial-exec")))

/*
 * A lock held for a few pointer moves by a holder that never waits on
 * anything inside it: where the C library has the kind, one that spins a
 * while before it sleeps. Two threads that pass blocks to each other take
 * such a lock once a batch each, and collide: a sleep and a wake-up, two
 * system calls, cost far more than the holder's few pointer moves.
 */
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#define RCL_SPIN_MUTEX_INITIALIZER PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#else
#define RCL_SPIN_MUTEX_INITIALIZER PTHREAD_MUTEX_INITIALIZER
#endif

/* Relaxed loads and stores: plain moves on every target we care about, but
 * defined behaviour (and TSan-clean) when another thread reads the field. */
#define rd(x)      atomic_load_explicit(&(x), memory_order_relaxed)
#define wr(x, v)   atomic_store_explicit(&(x), (v), memory_order_relaxed)
/* Increment of a field only its owner thread writes: no lock prefix. */
#define own_add(x, v) wr(x, rd(x) + (v))
/* The same in memory, for the 64-bit words every allocation and free
 * moves (a list's length word, block_cache.h; a thread's counts on the
 * slow paths): the compilers keep a relaxed load and store apart, where
 * x86-64 has one instruction for both (the kernel's this_cpu_inc). Other
 * threads' relaxed loads still see the old count or the new one. TSan
 * sees the atomic accesses only; it gets the portable form. */
#if defined(__x86_64__) && !defined(RCL_TSAN)
#define own_addm(x, v) __asm__("addq %1, %0" : "+m"(x) : "er"((long)(v)))
#define own_subm(x, v) __asm__("subq %1, %0" : "+m"(x) : "er"((long)(v)))
/* The owner's read of the low 16 bits of a 64-bit field it alone
 * writes: a plain load, which the compiler may fold into the instruction
 * that uses it (a relaxed load it keeps apart); the field's own type has
 * the same representation. */
#define own_rd16(x)    ((uint16_t)*(const uint64_t *)&(x))
#else
#define own_addm(x, v) own_add(x, v)
#define own_subm(x, v) own_add(x, -(v))
#define own_rd16(x)    ((uint16_t)rd(x))
#endif
#define own_inc(x) own_addm(x, 1)

/* A relaxed test of a word other threads write, for a fast path: on
 * x86-64 the compare reads the word itself, one instruction where a
 * relaxed load the compilers keep apart makes two. Not volatile: for a
 * test made once, never a loop that waits for the word to change. */
#if defined(__x86_64__) && !defined(RCL_TSAN) && defined(__GCC_ASM_FLAG_OUTPUTS__)
static inline _Bool rd_negative(const _Atomic long *x)
{
    _Bool neg;
    __asm__("cmpq $0, %1" : "=@ccl"(neg) : "m"(*x));
    return neg;
}
#else
static inline _Bool rd_negative(const _Atomic long *x) { return rd(*x) < 0; }
#endif

#endif /* RCL_ATOMIC_H */
