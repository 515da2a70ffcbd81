/* SPDX-License-Identifier: MIT */
/*
 * The scope calls the library exports (what other languages, dlsym() and
 * builds with RCL_NO_INLINE_SCOPES reach) keep the kernel's rules, and act
 * on the same per-thread scope the header's inline calls use. test_scope.c
 * holds the full specification through the inline calls.
 */
#define RCL_NO_INLINE_SCOPES 1
#include "helpers.h"

/* What the inline calls read and write (reclaim.h declares it only for
 * them). */
extern __thread struct rcl_scope_tls rcl_scope_tls __attribute__((tls_model("initial-exec")));

/* Kernel rule (memalloc_flags_save, v6.9+): save returns only the bits it
 * newly set; restore clears exactly those. */
static void exported_save_returns_only_newly_set_bits(void **state)
{
    (void)state;
    unsigned a = rcl_scope_save(RCL_SCOPE_NOFS);
    unsigned b = rcl_scope_save(RCL_SCOPE_NOFS | RCL_SCOPE_NOWAIT);
    assert_int_equal(a, RCL_SCOPE_NOFS);
    assert_int_equal(b, RCL_SCOPE_NOWAIT);
    rcl_scope_restore(b);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_scope_restore(a);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Kernel rule: an inner memalloc_nofs_save() inside NOFS returns 0 and its
 * restore leaves the outer scope in force. */
static void exported_inner_pair_is_a_no_op(void **state)
{
    (void)state;
    unsigned outer = rcl_nofs_save();
    unsigned inner = rcl_nofs_save();
    assert_int_equal(inner, 0);
    rcl_nofs_restore(inner);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_nofs_restore(outer);
    assert_int_equal(rcl_scope_current(), 0);
}

static void exported_named_pairs_set_their_bit(void **state)
{
    (void)state;
    unsigned fs = rcl_nofs_save(), io = rcl_noio_save();
    unsigned nr = rcl_noreclaim_save(), nw = rcl_nowait_save();
    assert_int_equal(fs | io | nr | nw, RCL_SCOPE_ALL);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_ALL);
    rcl_nowait_restore(nw);
    rcl_noreclaim_restore(nr);
    rcl_noio_restore(io);
    rcl_nofs_restore(fs);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Kernel rule (current_gfp_context): NOIO clears IO and FS, NOFS clears
 * FS; NOWAIT clears direct reclaim; NORECLAIM is not a mask. */
static void exported_current_gfp_masks_as_the_kernel(void **state)
{
    (void)state;
    unsigned s = rcl_noio_save();
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOIO);
    rcl_noio_restore(s);
    s = rcl_nofs_save();
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOFS);
    rcl_nofs_restore(s);
    s = rcl_nowait_save();
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT & ~RCL__DIRECT_RECLAIM);
    rcl_nowait_restore(s);
    s = rcl_noreclaim_save();
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT);
    rcl_noreclaim_restore(s);
}

/* A scope saved by one kind of call is seen and restored by the other: a
 * program mixing both (a C daemon and a binding, say) has one scope. */
static void exported_and_inline_calls_share_one_scope(void **state)
{
    (void)state;
    unsigned s = rcl_noio_save();
    assert_int_equal(rcl_scope_tls.bits, RCL_SCOPE_NOIO);
    rcl_noio_restore(s);
    assert_int_equal(rcl_scope_tls.bits, 0);
    rcl_scope_tls.bits = RCL_SCOPE_NOFS;      /* as an inline save leaves it */
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    assert_int_equal(rcl_nofs_save(), 0);
    rcl_scope_restore(RCL_SCOPE_NOFS);
    assert_int_equal(rcl_scope_tls.bits, 0);
}

static void exported_calls_ignore_bits_outside_the_set(void **state)
{
    (void)state;
    assert_int_equal(rcl_scope_save(0xf0u | RCL_SCOPE_NOFS), RCL_SCOPE_NOFS);
    rcl_scope_restore(0xf0u);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_scope_restore(RCL_SCOPE_NOFS);
    assert_int_equal(rcl_scope_current(), 0);
}

RUN_TESTS(T(exported_save_returns_only_newly_set_bits), T(exported_inner_pair_is_a_no_op),
          T(exported_named_pairs_set_their_bit), T(exported_current_gfp_masks_as_the_kernel),
          T(exported_and_inline_calls_share_one_scope),
          T(exported_calls_ignore_bits_outside_the_set))
