/* SPDX-License-Identifier: MIT */
/*
 * test_context.c - a reclaim context captured in one thread and adopted in
 * another (the "mm: add PF_MEMALLOC_NOFS" thread (linux-kernel, April 2016):
 * "Don't we need to convey PF_MEMALLOC_NOFS/
 * PF_MEMALLOC_NOIO flags to APIs which interact with other threads?").
 */
#include "helpers.h"
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* Runs fn in a fresh thread and waits for it. */
static void in_other_thread(void *(*fn)(void *), void *arg)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

struct seen {
    const struct rcl_context *ctx;
    unsigned before, during, after;
    rcl_gfp_t gfp;
    void *journal_during, *journal_after;
};

static void *adopt_main(void *arg)
{
    struct seen *s = arg;
    struct rcl_context saved;
    s->before = rcl_scope_current();
    rcl_context_adopt(s->ctx, &saved);
    s->during = rcl_scope_current();
    s->gfp = rcl_current_gfp(RCL_DEFAULT);
    s->journal_during = rcl_journal_info();
    rcl_context_restore(&saved);
    s->after = rcl_scope_current();
    s->journal_after = rcl_journal_info();
    return NULL;
}

TEST(test_adopting_a_context_carries_its_scope_to_another_thread)
{
    struct rcl_context ctx;
    unsigned saved = rcl_nofs_save();
    rcl_context_capture(&ctx);
    rcl_nofs_restore(saved);

    struct seen s = { .ctx = &ctx };
    in_other_thread(adopt_main, &s);
    assert_int_equal(s.before, 0);
    assert_int_equal(s.during, RCL_SCOPE_NOFS);
    assert_int_equal(s.gfp, RCL_NOFS);
    assert_int_equal(s.after, 0);
}

TEST(test_journal_cookie_travels_and_is_restored)
{
    static int cookie;
    struct rcl_context ctx;
    void *old = rcl_journal_info_set(&cookie);
    rcl_context_capture(&ctx);
    rcl_journal_info_set(old);

    struct seen s = { .ctx = &ctx };
    in_other_thread(adopt_main, &s);
    assert_ptr_equal(s.journal_during, &cookie);
    assert_null(s.journal_after);
}

/* No cookie is a value, not a failure: NULL, with errno as it was. */
TEST(no_journal_cookie_is_null_with_errno_untouched)
{
    static int cookie;
    errno = ERANGE;
    assert_null(rcl_journal_info());
    assert_null(rcl_journal_info_set(&cookie));
    assert_ptr_equal(rcl_journal_info_set(NULL), &cookie);
    assert_int_equal(errno, ERANGE);
}

/* Adopting only ever adds restrictions: the thread's own scope stays. */
TEST(test_adopting_only_adds_restrictions)
{
    struct rcl_context nofs, saved;
    unsigned s = rcl_nofs_save();
    rcl_context_capture(&nofs);
    rcl_nofs_restore(s);

    unsigned own = rcl_nowait_save();
    rcl_context_adopt(&nofs, &saved);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS | RCL_SCOPE_NOWAIT);
    rcl_context_restore(&saved);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOWAIT);
    rcl_nowait_restore(own);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Adopt/restore pairs nest, each restore returning to its own adopt. */
TEST(test_adopt_restore_pairs_nest)
{
    struct rcl_context nofs, noio, outer, inner;
    unsigned s = rcl_nofs_save();
    rcl_context_capture(&nofs);
    rcl_nofs_restore(s);
    s = rcl_noio_save();
    rcl_context_capture(&noio);
    rcl_noio_restore(s);

    rcl_context_adopt(&nofs, &outer);
    rcl_context_adopt(&noio, &inner);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS | RCL_SCOPE_NOIO);
    rcl_context_restore(&inner);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    rcl_context_restore(&outer);
    assert_int_equal(rcl_scope_current(), 0);
}

/* The cookie has no token to take back: with the outer of two adopts
 * restored first, the inner one, still open, keeps its cookie, and its
 * restore puts back the one from before the first adopt - the cookie the
 * adopts still open imply at each step, as restores in order leave it. */
TEST(journal_cookie_after_a_restore_out_of_order_is_the_open_adopts_one)
{
    static int outer_cookie, inner_cookie, own_cookie;
    struct rcl_context outer, inner, s1, s2;
    void *old = rcl_journal_info_set(&outer_cookie);
    rcl_context_capture(&outer);
    rcl_journal_info_set(&inner_cookie);
    rcl_context_capture(&inner);
    rcl_journal_info_set(&own_cookie);

    rcl_context_adopt(&outer, &s1);
    rcl_context_adopt(&inner, &s2);
    rcl_context_restore(&s1);
    assert_ptr_equal(rcl_journal_info(), &inner_cookie);
    rcl_context_restore(&s2);
    assert_ptr_equal(rcl_journal_info(), &own_cookie);
    rcl_journal_info_set(old);
}

/* Three deep, the middle one restored first: the innermost's restore puts
 * back what the middle one saved, the outer adopt's cookie, still open. */
TEST(journal_cookie_after_a_middle_restore_out_of_order_is_the_outer_adopts)
{
    static int cookie[3];
    struct rcl_context ctx[3], s[3];
    void *old = rcl_journal_info();
    for (int i = 0; i < 3; i++) {
        rcl_journal_info_set(&cookie[i]);
        rcl_context_capture(&ctx[i]);
    }
    rcl_journal_info_set(old);

    for (int i = 0; i < 3; i++)
        rcl_context_adopt(&ctx[i], &s[i]);
    rcl_context_restore(&s[1]);
    assert_ptr_equal(rcl_journal_info(), &cookie[2]);
    rcl_context_restore(&s[2]);
    assert_ptr_equal(rcl_journal_info(), &cookie[0]);
    rcl_context_restore(&s[0]);
    assert_ptr_equal(rcl_journal_info(), old);
}

/* A thread that ends with the inner of two adopts still open, the outer
 * restored out of order, leaves nothing of what was kept for it: the
 * saved state goes with the thread, as its stack does. */
static void *ends_inside_an_adopt(void *arg)
{
    struct rcl_context *ctx = arg, s1, s2;
    rcl_context_adopt(&ctx[0], &s1);
    rcl_context_adopt(&ctx[1], &s2);
    rcl_context_restore(&s1);
    return (void *)(uintptr_t)rcl__scope_early_threads();
}

TEST(a_thread_ending_inside_an_adopt_restored_out_of_order_leaves_nothing)
{
    static int cookie[2];
    struct rcl_context ctx[2];
    void *old = rcl_journal_info();
    for (int i = 0; i < 2; i++) {
        rcl_journal_info_set(&cookie[i]);
        rcl_context_capture(&ctx[i]);
    }
    rcl_journal_info_set(old);

    pthread_t th;
    void *kept;
    assert_int_equal(pthread_create(&th, NULL, ends_inside_an_adopt, ctx), 0);
    assert_int_equal(pthread_join(th, &kept), 0);
    assert_int_equal((uintptr_t)kept, 1);
    assert_int_equal(rcl__scope_early_threads(), 0);
}

/* Restoring returns exactly to the saved state, even when the code in
 * between changed the scope and did not undo it. */
TEST(test_restore_returns_exactly_to_the_saved_state)
{
    struct rcl_context ctx, saved;
    unsigned s = rcl_nofs_save();
    rcl_context_capture(&ctx);
    rcl_nofs_restore(s);

    rcl_context_adopt(&ctx, &saved);
    (void)rcl_noio_save();              /* never restored by its owner */
    (void)rcl_nowait_save();
    rcl_context_restore(&saved);
    assert_int_equal(rcl_scope_current(), 0);
}

/* "This thread is reclaiming" describes the thread, not the work: another
 * thread doing the work is not reclaiming. */
TEST(test_noreclaim_does_not_travel)
{
    struct rcl_context ctx;
    unsigned s = rcl_scope_save(RCL_SCOPE_NORECLAIM | RCL_SCOPE_NOIO);
    rcl_context_capture(&ctx);
    rcl_scope_restore(s);

    struct seen x = { .ctx = &ctx };
    in_other_thread(adopt_main, &x);
    assert_int_equal(x.during, RCL_SCOPE_NOIO);
}

/* The entered domains travel too: a thread that adopted a context inside
 * domain fs0 skips fs0's shrinker when it reclaims. */
static void *reclaim_in_ctx_main(void *arg)
{
    struct seen *s = arg;
    struct rcl_context saved;
    rcl_context_adopt(s->ctx, &saved);
    rcl_reclaim(64 * KiB, RCL_DEFAULT);
    rcl_context_restore(&saved);
    return NULL;
}

TEST(test_entered_domains_travel)
{
    struct rcl_domain *d = rcl_domain_create("fs0", 0, NULL, NULL);
    assert_non_null(d);
    struct rcl_shrinker_opts opts = { .domain = d };
    struct test_counter *sh = test_counter_new("fs0-cache", 1000, &opts);

    struct rcl_context inside, outside;
    unsigned tok = rcl_domain_enter(d);
    rcl_context_capture(&inside);
    rcl_domain_exit(tok);
    rcl_context_capture(&outside);

    struct seen s = { .ctx = &inside };
    in_other_thread(reclaim_in_ctx_main, &s);
    assert_int_equal(test_counter_scans(sh), 0);

    s.ctx = &outside;
    in_other_thread(reclaim_in_ctx_main, &s);
    assert_true(test_counter_scans(sh) > 0);

    test_counter_free(sh);
    rcl_domain_destroy(d);
}

/* A domain entered under an adopted context and never exited (a work
 * item that forgot its exit) is reported at the restore and exited there,
 * so the thread and the domain are as they were. */
TEST(test_domain_left_entered_under_a_context_is_exited_at_restore)
{
    struct rcl_domain *d = rcl_domain_create("fs0", 0, NULL, NULL);
    struct rcl_context ctx, saved;
    assert_non_null(d);
    rcl_context_capture(&ctx);
    rcl_context_adopt(&ctx, &saved);
    (void)rcl_domain_enter(d);                  /* never exited */
    rcl_context_restore(&saved);
    assert_int_equal(test_report_count(), 1);
    assert_reports_have("never exited");
    rcl_domain_destroy(d);                      /* not in use: destroyed quietly */
    assert_int_equal(test_report_count(), 1);
}

/* A captured context restored after the thread left one of its domains
 * is a restore out of order: the domain is not entered again (no exit
 * could take off an entry a restore made), and the report says what
 * happened to a captured context, not to an adopted one. */
TEST(captured_context_restored_after_its_domain_was_exited_says_so_and_leaves_it_exited)
{
    struct rcl_domain *d = rcl_domain_create("fs0", 0, NULL, NULL);
    struct rcl_context ctx;
    int cookie;
    assert_non_null(d);
    unsigned tok = rcl_domain_enter(d);
    void *was = rcl_journal_info_set(&cookie);
    rcl_context_capture(&ctx);
    rcl_domain_exit(tok);
    rcl_journal_info_set(NULL);
    rcl_context_restore(&ctx);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("since the context was captured");
    assert_int_equal(test_reports_contain("adopted"), 0);
    assert_int_equal(rcl__domain_entered(NULL, 0), 0);
    assert_ptr_equal(rcl_journal_info(), &cookie);
    rcl_journal_info_set(was);
    rcl_domain_destroy(d);                      /* not in use: destroyed quietly */
    assert_int_equal(test_report_count(), 1);
}

/* One entered since the capture and still entered is exited by the
 * restore, reported as entered since the capture. */
TEST(captured_context_restored_inside_a_domain_entered_since_exits_it_and_says_so)
{
    struct rcl_domain *d = rcl_domain_create("fs0", 0, NULL, NULL);
    struct rcl_context ctx;
    assert_non_null(d);
    rcl_context_capture(&ctx);
    (void)rcl_domain_enter(d);                  /* never exited */
    rcl_context_restore(&ctx);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("since the context was captured");
    assert_int_equal(test_reports_contain("adopted"), 0);
    assert_int_equal(rcl__domain_entered(NULL, 0), 0);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
}

TEST(test_null_contexts_are_reported_not_a_crash)
{
    struct rcl_context ctx;
    rcl_context_capture(NULL);
    rcl_context_capture(&ctx);
    rcl_context_adopt(NULL, &ctx);
    rcl_context_adopt(&ctx, NULL);
    rcl_context_restore(NULL);
    assert_int_equal(test_report_count(), 4);
    assert_int_equal(rcl_scope_current(), 0);
}

/* A capture into NULL is its caller's bug, reported once as the other
 * context calls report a NULL context; it has nowhere to write, and the
 * thread's scope, domains and journal cookie stay as they were. */
TEST(test_capture_into_null_is_reported_once_and_changes_nothing)
{
    struct rcl_domain *d = rcl_domain_create("fs0", 0, NULL, NULL);
    int cookie;
    assert_non_null(d);
    unsigned scope = rcl_nofs_save();
    unsigned token = rcl_domain_enter(d);
    void *old = rcl_journal_info_set(&cookie);

    rcl_context_capture(NULL);

    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_context_capture: NULL context");
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOFS);
    assert_int_equal(rcl__domain_entered(NULL, 0), 1);
    assert_ptr_equal(rcl_journal_info(), &cookie);
    test_reports_take();
    rcl_journal_info_set(old);
    rcl_domain_exit(token);
    rcl_nofs_restore(scope);
    rcl_domain_destroy(d);
}

TEST_MAIN();
