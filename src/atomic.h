/* SPDX-License-Identifier: MIT */
/*
 * atomic.h - the library's few low-level idioms: branch hints, the TLS
 * model of the hot per-thread state, and the relaxed accesses that make a
 * field another thread reads defined behaviour without costing a fence.
 */
#ifndef RCL_ATOMIC_H
#define RCL_ATOMIC_H

#include <stdatomic.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define RCL_TLS_IE __attribute__((tls_model("initial-exec")))

/* Relaxed loads and stores: plain moves on every target we care about, but
 * defined behaviour (and TSan-clean) when another thread reads the field. */
#define rd(x)      atomic_load_explicit(&(x), memory_order_relaxed)
#define wr(x, v)   atomic_store_explicit(&(x), (v), memory_order_relaxed)
/* Increment of a field only its owner thread writes: no lock prefix. */
#define own_add(x, v) wr(x, rd(x) + (v))

#endif /* RCL_ATOMIC_H */
