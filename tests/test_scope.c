/* SPDX-License-Identifier: MIT */
/*
 * Scopes: the kernel's memalloc_flags_save()/restore() (v6.9+) and
 * current_gfp_context(), per thread.
 *
 * One specification, built twice: test_scope reaches the scope calls
 * through the header's inline versions, test_scope_calls (the same file
 * with RCL_NO_INLINE_SCOPES defined) through the calls the library exports,
 * which other languages, dlsym() and such builds use. Both act on the same
 * per-thread scope.
 */
#include "helpers.h"

#include "checker.h"

#ifdef RCL_NO_INLINE_SCOPES
/* What the inline calls read and write (reclaim.h declares it only for
 * them). */
extern __thread struct rcl_scope_tls rcl_scope_tls __attribute__((tls_model("initial-exec")));
#endif

/* Kernel rule (memalloc_flags_save): save returns only the bits it newly
 * set; restore clears exactly those. */
TEST(save_returns_only_newly_set_bits)
{
    assert_int_equal(rcl_scope_current(), 0);
    unsigned a = rcl_scope_save(RCL_SCOPE_NOFS);
    assert_int_equal(a, RCL_SCOPE_NOFS);
    unsigned b = rcl_scope_save(RCL_SCOPE_NOFS | RCL_SCOPE_NOWAIT);
    assert_int_equal(b, RCL_SCOPE_NOWAIT);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS | RCL_SCOPE_NOWAIT);
    rcl_scope_restore(b);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_scope_restore(a);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Kernel rule: an inner memalloc_nofs_save() inside NOFS returns 0 and its
 * restore is a no-op, so the outer scope survives the inner pair. */
TEST(inner_pair_of_same_scope_is_a_no_op)
{
    unsigned outer = rcl_nofs_save();
    unsigned inner = rcl_nofs_save();
    assert_int_equal(inner, 0);
    rcl_nofs_restore(inner);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOFS);
    rcl_nofs_restore(outer);
    assert_int_equal(rcl_scope_current(), 0);
}

/* NOFS then NOIO, and NOIO then NOFS, each unwound in reverse. */
TEST(scopes_nest_in_both_orders)
{
    unsigned fs = rcl_nofs_save();
    unsigned io = rcl_noio_save();
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOIO);
    rcl_noio_restore(io);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOFS);
    rcl_nofs_restore(fs);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT);

    io = rcl_noio_save();
    fs = rcl_nofs_save();
    assert_int_equal(fs, RCL_SCOPE_NOFS);     /* a distinct bit, though NOIO implies it */
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOIO);
    rcl_nofs_restore(fs);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOIO);
    rcl_noio_restore(io);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT);
}

/* Kernel rule (current_gfp_context): the mask only subtracts; NOIO clears
 * IO and FS, otherwise NOFS clears FS; NOWAIT clears DIRECT_RECLAIM;
 * PF_MEMALLOC (our NORECLAIM) is not a mask. Checked for every one of the
 * 16 scope combinations against every composite, with the modifier bits
 * that no scope may touch. */
TEST(every_scope_combination_against_every_composite)
{
    static const rcl_gfp_t composites[] = { RCL_DEFAULT, RCL_NOFS, RCL_NOIO, RCL_NOWAIT, RCL_ATOMIC,
                                           RCL_RECLAIM, 0 };
    const rcl_gfp_t modifiers = RCL__HIGH | RCL__MEMALLOC | RCL__NOMEMALLOC | RCL__NOFAIL |
                                RCL__NORETRY | RCL__NOWARN | RCL__ZERO;
    for (unsigned scope = 0; scope <= RCL_SCOPE_ALL; scope++) {
        unsigned saved = rcl_scope_save(scope);
        for (size_t i = 0; i < sizeof(composites) / sizeof(composites[0]); i++) {
            rcl_gfp_t in = composites[i] | modifiers;
            rcl_gfp_t out = rcl_current_gfp(in);
            assert_int_equal(out & ~in, 0);                      /* only subtracts */
            assert_int_equal(out & modifiers, modifiers);        /* modifiers untouched */
            assert_int_equal(!!(out & RCL__IO),
                             !!(in & RCL__IO) && !(scope & RCL_SCOPE_NOIO));
            assert_int_equal(!!(out & RCL__FS),
                             !!(in & RCL__FS) && !(scope & (RCL_SCOPE_NOIO | RCL_SCOPE_NOFS)));
            assert_int_equal(!!(out & RCL__DIRECT_RECLAIM),
                             !!(in & RCL__DIRECT_RECLAIM) && !(scope & RCL_SCOPE_NOWAIT));
            assert_int_equal(!!(out & RCL__KSWAPD_RECLAIM), !!(in & RCL__KSWAPD_RECLAIM));
        }
        rcl_scope_restore(saved);
        assert_int_equal(rcl_scope_current(), 0);
    }
}

/* The composites are the kernel's GFP_* built from the same bits. */
TEST(composites_are_built_as_the_kernel_builds_them)
{
    assert_int_equal(RCL_DEFAULT, RCL__DIRECT_RECLAIM | RCL__KSWAPD_RECLAIM | RCL__IO | RCL__FS);
    assert_int_equal(RCL_NOFS, RCL_DEFAULT & ~RCL__FS);
    assert_int_equal(RCL_NOIO, RCL_DEFAULT & ~(RCL__FS | RCL__IO));
    assert_int_equal(RCL_NOWAIT, RCL__KSWAPD_RECLAIM | RCL__NOWARN);
    assert_int_equal(RCL_ATOMIC, RCL__HIGH | RCL__KSWAPD_RECLAIM);
    /* NOFS scope turns DEFAULT into exactly GFP_NOFS, NOIO into GFP_NOIO. */
    unsigned s = rcl_nofs_save();
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOFS);
    rcl_nofs_restore(s);
    s = rcl_noio_save();
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOIO);
    rcl_noio_restore(s);
}

/* NORECLAIM is not folded into the mask (PF_MEMALLOC acts in the
 * allocator, not in current_gfp_context). */
TEST(noreclaim_is_not_a_mask)
{
    unsigned s = rcl_noreclaim_save();
    assert_int_equal(s, RCL_SCOPE_NORECLAIM);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT);
    rcl_noreclaim_restore(s);
}

/* rcl_current_gfp() only computes, as current_gfp_context() does: bits
 * no RCL_* flag has pass through it unreported, and the call that is
 * given them reports them and serves the request without them. */
TEST(current_gfp_leaves_unknown_bits_to_the_call_given_them)
{
    unsigned s = rcl_nofs_save();
    rcl_gfp_t gfp = rcl_current_gfp(RCL_DEFAULT | 0x10000u);
    assert_int_equal(gfp, RCL_NOFS | 0x10000u);
    assert_int_equal(test_report_count(), 0);
    void *p = rcl_alloc(64, gfp);
    assert_non_null(p);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("bits no RCL_* flag has (0x10000)");
    rcl_free(p);
    rcl_nofs_restore(s);
}

/* Restoring a token whose bits are not set changes nothing else: a bogus
 * or repeated restore cannot clear a scope someone else saved. */
TEST(restore_of_bits_not_set_changes_nothing)
{
    unsigned fs = rcl_nofs_save();
    rcl_scope_restore(RCL_SCOPE_NOWAIT | RCL_SCOPE_NOIO);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_nofs_restore(fs);
    rcl_nofs_restore(fs);                   /* twice: still nothing to clear */
    assert_int_equal(rcl_scope_current(), 0);
}

TEST(bits_outside_the_scope_set_are_ignored)
{
    unsigned s = rcl_scope_save(0xf0u | RCL_SCOPE_NOFS);
    assert_int_equal(s, RCL_SCOPE_NOFS);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_scope_restore(0xf0u);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_scope_restore(~0u);
    assert_int_equal(rcl_scope_current(), 0);
}

static void *other_thread_scope(void *arg)
{
    unsigned *seen = arg;
    seen[0] = rcl_scope_current();
    unsigned s = rcl_noio_save();
    seen[1] = rcl_scope_current();
    rcl_noio_restore(s);
    return NULL;
}

/* Scopes are per thread (current->flags): another thread neither sees
 * ours nor changes it. */
TEST(scopes_are_per_thread)
{
    unsigned seen[2];
    pthread_t th;
    unsigned s = rcl_nofs_save();
    assert_int_equal(pthread_create(&th, NULL, other_thread_scope, seen), 0);
    pthread_join(th, NULL);
    assert_int_equal(seen[0], 0);
    assert_int_equal(seen[1], RCL_SCOPE_NOIO);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_nofs_restore(s);
}

static unsigned scope_inside_guard(int leave_early)
{
    RCL_NOIO_SCOPE();
    if (leave_early)
        return rcl_scope_current();
    return rcl_scope_current() | 0x100u;
}

/* A guard holds its scope to the end of the block, however it is left. */
TEST(guards_restore_at_end_of_block)
{
    assert_int_equal(scope_inside_guard(1), RCL_SCOPE_NOIO);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(scope_inside_guard(0), RCL_SCOPE_NOIO | 0x100u);
    assert_int_equal(rcl_scope_current(), 0);
    {
        RCL_NOFS_SCOPE();
        {
            RCL_NOFS_SCOPE();     /* inner guard of the same scope: no-op */
            RCL_NOWAIT_SCOPE();
            assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS | RCL_SCOPE_NOWAIT);
        }
        assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
        RCL_NORECLAIM_SCOPE();
        assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS | RCL_SCOPE_NORECLAIM);
    }
    assert_int_equal(rcl_scope_current(), 0);
}

/* The "mm: add PF_MEMALLOC_NOFS" thread (linux-kernel, April 2016): the
 * context must be conveyable to other threads. */
struct adopt_arg {
    struct rcl_context ctx;
    unsigned inside, after;
    rcl_gfp_t gfp_inside;
};

static void *adopter(void *p)
{
    struct adopt_arg *a = p;
    struct rcl_context saved;
    unsigned own = rcl_nowait_save();
    rcl_context_adopt(&a->ctx, &saved);
    a->inside = rcl_scope_current();
    a->gfp_inside = rcl_current_gfp(RCL_DEFAULT);
    rcl_context_restore(&saved);
    a->after = rcl_scope_current();
    rcl_nowait_restore(own);
    return NULL;
}

TEST(captured_context_is_adopted_by_another_thread)
{
    struct adopt_arg a;
    pthread_t th;
    unsigned s = rcl_nofs_save();
    rcl_context_capture(&a.ctx);
    rcl_nofs_restore(s);
    assert_int_equal(pthread_create(&th, NULL, adopter, &a), 0);
    pthread_join(th, NULL);
    /* adopting adds to the thread's own scope, restore returns exactly */
    assert_int_equal(a.inside, RCL_SCOPE_NOFS | RCL_SCOPE_NOWAIT);
    assert_int_equal(a.gfp_inside, RCL_NOFS & ~RCL__DIRECT_RECLAIM);
    assert_int_equal(a.after, RCL_SCOPE_NOWAIT);
}

TEST(adopt_nests_and_restores_exactly)
{
    struct rcl_context fs, io, s1, s2;
    unsigned t = rcl_nofs_save();
    rcl_context_capture(&fs);
    rcl_nofs_restore(t);
    t = rcl_noio_save();
    rcl_context_capture(&io);
    rcl_noio_restore(t);

    rcl_context_adopt(&fs, &s1);
    rcl_context_adopt(&io, &s2);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS | RCL_SCOPE_NOIO);
    rcl_context_restore(&s2);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_context_restore(&s1);
    assert_int_equal(rcl_scope_current(), 0);
}

/* A NOFS context and a NOIO context, captured from this thread. */
static void capture_nofs_and_noio(struct rcl_context *fs, struct rcl_context *io)
{
    unsigned t = rcl_nofs_save();
    rcl_context_capture(fs);
    rcl_nofs_restore(t);
    t = rcl_noio_save();
    rcl_context_capture(io);
    rcl_noio_restore(t);
}

/* The scope-token rule (restore clears only what its own save set),
 * applied to contexts restored out of order: the outer restore takes back
 * only the bits its adopt added, the inner one the rest, and the thread
 * ends as it was before the first adopt, as in-order restores leave it
 * (the kernel's nesting). The checker reports it as it reports tokens. */
TEST_WITH(context_restored_out_of_order_is_reported, ld_setup, ld_teardown)
{
    struct rcl_context fs, io, s1, s2;
    capture_nofs_and_noio(&fs, &io);

    rcl_context_adopt(&fs, &s1);
    rcl_context_adopt(&io, &s2);
    rcl_context_restore(&s1);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("out of order");
    rcl_context_restore(&s2);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

/* The same with the checker off: reclaim.h reports a restore out of order
 * only with the checker on, and the scope ends the same way. */
TEST(context_restored_out_of_order_ends_as_before_the_first_adopt)
{
    struct rcl_context fs, io, s1, s2;
    capture_nofs_and_noio(&fs, &io);
    unsigned own = rcl_nowait_save();

    rcl_context_adopt(&fs, &s1);
    rcl_context_adopt(&io, &s2);
    rcl_context_restore(&s1);
    rcl_context_restore(&s2);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOWAIT);
    assert_int_equal(test_report_count(), 0);
    rcl_nowait_restore(own);
}

struct foreign_saved {
    struct rcl_context ctx, saved;
};

static void *adopt_and_restore(void *p)
{
    struct foreign_saved *f = p;
    struct rcl_context saved;
    rcl_context_adopt(&f->ctx, &saved);
    f->saved = saved;
    rcl_context_restore(&saved);
    return NULL;
}

/* A saved context is the adopting thread's, as a scope is (the kernel's
 * lives in its task): restored on another thread it is reported and the
 * restoring thread's scope stays as it is. */
TEST(context_saved_on_another_thread_is_reported)
{
    struct foreign_saved f;
    struct rcl_context io;
    pthread_t th;
    capture_nofs_and_noio(&f.ctx, &io);
    assert_int_equal(pthread_create(&th, NULL, adopt_and_restore, &f), 0);
    pthread_join(th, NULL);

    unsigned own = rcl_noio_save();
    rcl_context_restore(&f.saved);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("another thread");
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    rcl_noio_restore(own);
}

/* A second restore of the same saved context is reported, as a domain
 * token used twice is, and leaves the scope alone: a save made since is
 * not undone by it. So is one whose first restore was out of order, an
 * adopt above it still open. */
TEST(context_restored_twice_is_reported)
{
    struct rcl_context fs, io, saved, inner;
    capture_nofs_and_noio(&fs, &io);

    rcl_context_adopt(&fs, &saved);
    rcl_context_restore(&saved);
    unsigned own = rcl_nofs_save();
    rcl_context_restore(&saved);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("restored already");
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_nofs_restore(own);

    rcl_context_adopt(&fs, &saved);
    rcl_context_adopt(&io, &inner);
    rcl_context_restore(&saved);            /* out of order: the checker is off */
    rcl_context_restore(&saved);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("restored already");
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    rcl_context_restore(&inner);
    assert_int_equal(rcl_scope_current(), 0);
}

/* A captured context is no save: it set no scope bits, so its restore takes
 * none back (the kernel's restore of a token with no bits). Restored while
 * a scope opened since the capture is still open, it is out of order: the
 * checker reports it, and the open scope keeps its bits until its own
 * restore. */
TEST_WITH(captured_context_restored_inside_a_later_scope_is_reported, ld_setup, ld_teardown)
{
    struct rcl_context clean;
    rcl_context_capture(&clean);

    unsigned t = rcl_nofs_save();
    rcl_context_restore(&clean);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("out of order");
    rcl_nofs_restore(t);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

/* The other way out of order, with the checker off: a scope open at the
 * capture and closed since is not opened again by the restore. */
TEST(captured_context_restored_after_its_scope_closed_leaves_it_closed)
{
    struct rcl_context fs, io;
    capture_nofs_and_noio(&fs, &io);

    rcl_context_restore(&fs);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT);
    assert_int_equal(test_report_count(), 0);
}

/* Restored where the scope is as captured, it is in order: nothing is
 * reported and the scope is untouched, NORECLAIM (which a context does not
 * carry) included. */
TEST_WITH(captured_context_restored_in_order_is_quiet, ld_setup, ld_teardown)
{
    struct rcl_context c;
    unsigned t = rcl_scope_save(RCL_SCOPE_NORECLAIM | RCL_SCOPE_NOIO);
    rcl_context_capture(&c);
    rcl_context_restore(&c);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NORECLAIM | RCL_SCOPE_NOIO);
    rcl_scope_restore(t);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* "This thread is reclaiming" belongs to the thread, not to the work. */
TEST(noreclaim_does_not_travel)
{
    struct rcl_context c, saved;
    unsigned t = rcl_scope_save(RCL_SCOPE_NORECLAIM | RCL_SCOPE_NOFS);
    rcl_context_capture(&c);
    rcl_scope_restore(t);
    rcl_context_adopt(&c, &saved);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_context_restore(&saved);
}

/* The context adopted may be the one the adopt saves into: it is adopted
 * whole, scope and journal cookie, and its restore puts the thread back
 * as it was. */
TEST(a_context_adopted_in_place_is_adopted_and_restored)
{
    static int journal;
    struct rcl_context c;

    unsigned t = rcl_nofs_save();
    void *was = rcl_journal_info_set(&journal);
    rcl_context_capture(&c);
    rcl_journal_info_set(was);
    rcl_nofs_restore(t);

    rcl_context_adopt(&c, &c);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    assert_ptr_equal(rcl_journal_info(), &journal);
    rcl_context_restore(&c);
    assert_int_equal(rcl_scope_current(), 0);
    assert_ptr_equal(rcl_journal_info(), was);
    assert_int_equal(test_report_count(), 0);
}

TEST(context_calls_with_null_are_reported)
{
    struct rcl_context c;
    rcl_context_capture(NULL);
    rcl_context_adopt(NULL, &c);
    rcl_context_adopt(&c, NULL);
    rcl_context_restore(NULL);
    assert_int_equal(test_report_count(), 4);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Each named pair sets its own bit; together they are the whole set. */
TEST(named_pairs_set_their_bit)
{
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

/* A scope saved by one kind of call is seen and restored by the other: a
 * program mixing both (a C daemon and a binding, say) has one scope. */
TEST(exported_and_inline_calls_share_one_scope)
{
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

TEST_MAIN();
