/* SPDX-License-Identifier: MIT */
/*
 * debug.h - invariants written as checks. rcl__assert(cond) states what
 * the code beside it keeps true; rcl__assert_held(&mutex) states that a
 * _locked function's caller holds its lock, as the kernel's
 * lockdep_assert_held() does. Both cost nothing in a release build; they
 * are on in `make DEBUG=1` and in the sanitizer builds `make check` runs
 * (RCL_DEBUG), where a broken invariant stops the program at once, naming
 * the condition and where it was written, before it can corrupt anything.
 */
#ifndef RCL_DEBUG_H
#define RCL_DEBUG_H

#include <pthread.h>
#include <stdbool.h>

#include "sanitize.h"

#if !defined(RCL_DEBUG) && defined(RCL_SANITIZED)
#define RCL_DEBUG 1
#endif

/* Writes "libreclaim: file:line: function: invariant `what' broken" to
 * standard error and aborts (debug.c). */
__attribute__((noreturn, cold))
void rcl__assert_fail(const char *what, const char *file, int line, const char *func);
/* Whether the calling thread holds m: exact on glibc, which records a
 * mutex's owner; elsewhere only that somebody holds it. */
bool rcl__mutex_held(pthread_mutex_t *m);

#ifdef RCL_DEBUG
#define rcl__assert(cond) \
    ((cond) ? (void)0 : rcl__assert_fail(#cond, __FILE__, __LINE__, __func__))
#define rcl__assert_held(m) \
    (rcl__mutex_held(m) ? (void)0 : \
     rcl__assert_fail("caller holds " #m, __FILE__, __LINE__, __func__))
#else
/* sizeof keeps the condition compiled (and its names used) without
 * evaluating it. */
#define rcl__assert(cond)   ((void)sizeof(!(cond)))
#define rcl__assert_held(m) ((void)sizeof(m))
#endif

#endif /* RCL_DEBUG_H */
