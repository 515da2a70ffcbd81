/* SPDX-License-Identifier: MIT */
/*
 * test_io_flusher.c - rcl_io_flusher_set/get: the library's half of
 * PR_SET_IO_FLUSHER (NOIO scope and the reserve; the "Add prctl support for
 * controlling PF_MEMALLOC V2" thread (linux-kernel, October 2019)), and the
 * kernel's half where the process is allowed it.
 */
#include "helpers.h"

#include <stdatomic.h>
#include <sys/prctl.h>

#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif

/* First in the file: the refusal is reported once per process. Without
 * CAP_SYS_RESOURCE (as on most machines) prctl says EPERM; the library half
 * still applies, the caller is told, and so is the person reading reports. */
TEST(test_kernel_refusal_is_returned_and_reported_once)
{
    int rc = rcl_io_flusher_set(1);
    assert_true(rc == 0 || rc == -EPERM);
    assert_int_equal(rcl_io_flusher_get(), 1);
    assert_true(rcl_scope_current() & RCL_SCOPE_NOIO);
    if (rc == -EPERM) {
        assert_int_equal(test_report_count(), 1);
        assert_last_report_has("PR_SET_IO_FLUSHER");
    } else {
        assert_int_equal(prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0), 1);
    }
    assert_int_equal(rcl_io_flusher_set(0), rc);
    assert_int_equal(rcl_io_flusher_set(1), rc);
    assert_int_equal(rcl_io_flusher_set(0), rc);
    assert_int_equal(test_report_count(), rc == -EPERM ? 1 : 0);
    if (rc == 0)
        assert_int_equal(prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0), 0);
}

/* PR_SET_IO_FLUSHER implies PF_MEMALLOC_NOIO: the thread's allocations
 * may not recurse into I/O (nor, therefore, the file system). */
TEST(test_io_flusher_allocations_are_noio)
{
    assert_int_equal(rcl_io_flusher_get(), 0);
    test_io_flusher_on();
    assert_int_equal(rcl_io_flusher_get(), 1);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOIO);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_get(), 0);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT);
}

/* Reclaim run by a flusher skips shrinkers that need to do I/O. */
TEST(test_io_flusher_reclaim_skips_shrinkers_that_need_io)
{
    struct rcl_shrinker_opts opts = { .needs = RCL__IO };
    struct test_counter *s = test_counter_new("needs-io", 1000, &opts);
    test_io_flusher_on();
    rcl_reclaim(64 * KiB, RCL_DEFAULT);
    rcl_io_flusher_set(0);
    assert_int_equal(test_counter_scans(s), 0);
    rcl_reclaim(64 * KiB, RCL_DEFAULT);
    assert_true(test_counter_scans(s) > 0);
    test_counter_free(s);
}

/* Turning the flag off undoes only what turning it on did: a NOIO scope
 * the thread was already in stays. */
TEST(test_io_flusher_off_keeps_an_enclosing_noio_scope)
{
    unsigned outer = rcl_noio_save();
    test_io_flusher_on();
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    rcl_noio_restore(outer);
    assert_int_equal(rcl_scope_current(), 0);
}

/* reclaim.h: an I/O-flusher thread is in NOIO scope. A NOIO scope open
 * when the flag was set, closed while it is on, leaves NOIO in force, and
 * turning the flag off then ends it. Stronger than the kernel, where
 * memalloc_noio_restore() writes the saved bit back and clears
 * PF_MEMALLOC_NOIO under PR_SET_IO_FLUSHER. */
TEST(test_io_flusher_keeps_noio_when_an_enclosing_scope_ends)
{
    unsigned outer = rcl_noio_save();
    test_io_flusher_on();
    rcl_noio_restore(outer);
    assert_int_equal(rcl_io_flusher_get(), 1);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOIO);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_scope_current(), 0);
}

/* The same for a NOIO context adopted before the flag was set and
 * restored while it is on. */
TEST(test_io_flusher_keeps_noio_when_an_adopted_context_ends)
{
    struct rcl_context noio, saved;
    unsigned t = rcl_noio_save();
    rcl_context_capture(&noio);
    rcl_noio_restore(t);

    rcl_context_adopt(&noio, &saved);
    test_io_flusher_on();
    rcl_context_restore(&saved);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Setting it twice is the same as once; one "off" ends it. */
TEST(test_io_flusher_set_twice_then_off_once)
{
    test_io_flusher_on();
    rcl_io_flusher_set(1);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_get(), 0);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Real daemons have shipped passing the wrong value: anything but 0 or 1
 * is an error, reported, and changes nothing. */
TEST(test_io_flusher_set_other_than_0_or_1_is_refused_and_reported)
{
    assert_int_equal(rcl_io_flusher_set(2), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_io_flusher_set(2)");
    assert_int_equal(rcl_io_flusher_set(-1), -EINVAL);
    assert_int_equal(test_report_count(), 2);
    assert_int_equal(rcl_io_flusher_get(), 0);
    assert_int_equal(rcl_scope_current(), 0);
    test_io_flusher_on();
    test_reports_reset();
    assert_int_equal(rcl_io_flusher_set(42), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(rcl_io_flusher_get(), 1);
    rcl_io_flusher_set(0);
}

static void *get_main(void *arg)
{
    *(int *)arg = rcl_io_flusher_get() * 10 + (int)rcl_scope_current();
    return NULL;
}

/* The flag belongs to the thread, as PF_* flags do. */
TEST(test_io_flusher_is_per_thread)
{
    test_io_flusher_on();
    int other = -1;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, get_main, &other), 0);
    pthread_join(th, NULL);
    assert_int_equal(other, 0);
    rcl_io_flusher_set(0);
}

/* ------------------------------------------------------------------------ */
/* The exact prctl calls, through the library's seam                         */
/* ------------------------------------------------------------------------ */

/* The library's prctl (src/io_flusher.c); a recorder takes its place. */
extern int (*rcl__prctl)(int option, unsigned long arg2, unsigned long arg3,
                         unsigned long arg4, unsigned long arg5);

#define MAX_CALLS 8
static struct {
    int           n;
    int           option[MAX_CALLS];
    unsigned long arg[MAX_CALLS][4];
    int           set_errno;   /* the set fails with this, when nonzero */
    int           get_result;  /* what PR_GET_IO_FLUSHER answers; -1: EPERM */
    int           flag;        /* the flag as this fake kernel holds it */
} fake;

static int fake_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
                      unsigned long a5)
{
    if (fake.n < MAX_CALLS) {
        fake.option[fake.n] = option;
        fake.arg[fake.n][0] = a2;
        fake.arg[fake.n][1] = a3;
        fake.arg[fake.n][2] = a4;
        fake.arg[fake.n][3] = a5;
    }
    fake.n++;
    if (option == PR_SET_IO_FLUSHER) {
        if (fake.set_errno) {
            errno = fake.set_errno;
            return -1;
        }
        fake.flag = (int)a2;
        return 0;
    }
    if (fake.get_result < 0) {
        errno = EPERM;
        return -1;
    }
    return fake.get_result ? fake.get_result : fake.flag;
}

static int (*real_prctl)(int, unsigned long, unsigned long, unsigned long, unsigned long);

static int fake_setup(void **state)
{
    memset(&fake, 0, sizeof(fake));
    real_prctl = rcl__prctl;
    rcl__prctl = fake_prctl;
    return test_setup(state);
}

static int fake_teardown(void **state)
{
    rcl__prctl = real_prctl;
    return test_teardown(state);
}


static void assert_call(int i, int option, unsigned long arg2)
{
    assert_int_equal(fake.option[i], option);
    assert_int_equal(fake.arg[i][0], arg2);
    assert_int_equal(fake.arg[i][1], 0);
    assert_int_equal(fake.arg[i][2], 0);
    assert_int_equal(fake.arg[i][3], 0);
}

/* ublksrv and libublk-rs passed 0 to PR_SET_IO_FLUSHER, which clears the
 * flag. on = 1 passes exactly 1 (then 0 for off), and reads it back. */
TEST_WITH(test_set_passes_exactly_1_and_reads_the_flag_back, fake_setup, fake_teardown)
{
    assert_int_equal(rcl_io_flusher_set(1), 0);
    assert_int_equal(fake.n, 2);
    assert_call(0, PR_SET_IO_FLUSHER, 1);
    assert_call(1, PR_GET_IO_FLUSHER, 0);
    assert_int_equal(fake.flag, 1);

    assert_int_equal(rcl_io_flusher_set(0), 0);
    assert_int_equal(fake.n, 4);
    assert_call(2, PR_SET_IO_FLUSHER, 0);
    assert_call(3, PR_GET_IO_FLUSHER, 0);
    assert_int_equal(fake.flag, 0);
    assert_int_equal(test_report_count(), 0);
}

/* A kernel that holds something else after the set succeeded: reported,
 * and -EIO. */
TEST_WITH(test_flag_read_back_wrong_is_reported, fake_setup, fake_teardown)
{
    fake.get_result = 7;
    assert_int_equal(rcl_io_flusher_set(1), -EIO);
    assert_int_equal(rcl_io_flusher_get(), 1);          /* the library half stays */
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("PR_GET_IO_FLUSHER");
    fake.get_result = 0;
    rcl_io_flusher_set(0);
}

/* The reserve serves a flusher the kernel refused (rcl_io_flusher_reserve):
 * a set the kernel took, whatever it reads back, leaves the kernel's half
 * in place, and the thread is no stricter than a flusher the kernel
 * confirmed, its allocations not failing at once with the reserve full.
 * rcl_io_flusher_set(0) undoes it all, the kernel's set included. */
TEST_WITH(test_flag_read_back_wrong_does_not_serve_the_thread_from_the_reserve,
          fake_setup, fake_teardown)
{
    assert_int_equal(rcl_io_flusher_reserve(64 * KiB, 0), 0);
    fake.get_result = 7;
    assert_int_equal(rcl_io_flusher_set(1), -EIO);
    assert_int_equal(rcl_io_flusher_get(), 1);
    assert_int_equal(rcl_io_flusher_reserved(), 0);
    assert_int_equal(test_report_count(), 1);
    fake.get_result = 0;
    assert_int_equal(rcl_io_flusher_set(0), 0);
    assert_int_equal(fake.flag, 0);
    assert_int_equal(rcl_io_flusher_get(), 0);
    assert_int_equal(rcl_io_flusher_reserve(0, 0), 0);
}

/* Where the kernel does not let the process read the flag, the set's
 * success stands. */
TEST_WITH(test_flag_unreadable_is_not_an_error, fake_setup, fake_teardown)
{
    fake.get_result = -1;
    assert_int_equal(rcl_io_flusher_set(1), 0);
    assert_call(0, PR_SET_IO_FLUSHER, 1);
    assert_int_equal(test_report_count(), 0);
    rcl_io_flusher_set(0);
}

/* A refused set is not read back: there is nothing to confirm. */
TEST_WITH(test_refused_set_is_not_read_back, fake_setup, fake_teardown)
{
    fake.set_errno = EPERM;
    assert_int_equal(rcl_io_flusher_set(1), -EPERM);
    test_reports_seen_matching("PR_SET_IO_FLUSHER");   /* made once a process */
    assert_int_equal(fake.n, 1);
    assert_call(0, PR_SET_IO_FLUSHER, 1);
    assert_int_equal(rcl_io_flusher_get(), 1);
    rcl_io_flusher_set(0);
}

/* A kernel without the option (before Linux 5.6, as RHEL 8's) answers
 * EINVAL: the library half applies, the caller gets that answer, and the
 * person reading reports is told once that the kernel half is missing, as
 * for EPERM. (Nothing was said: only EPERM was reported.) */
TEST_WITH(test_a_kernel_without_the_option_is_reported_once, fake_setup, fake_teardown)
{
    fake.set_errno = EINVAL;
    assert_int_equal(rcl_io_flusher_set(1), -EINVAL);
    assert_int_equal(rcl_io_flusher_get(), 1);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("no PR_SET_IO_FLUSHER");
    assert_int_equal(rcl_io_flusher_set(0), -EINVAL);
    assert_int_equal(rcl_io_flusher_get(), 0);
    assert_int_equal(rcl_io_flusher_set(1), -EINVAL);
    assert_int_equal(rcl_io_flusher_set(0), -EINVAL);
    assert_int_equal(test_report_count(), 1);
}

/* An off undoes the library's own on. The kernel's off clears the flag
 * whoever set it and needs CAP_SYS_RESOURCE as the on does: on a thread
 * the library never marked it is not made, nor its refusal reported in the
 * words of a refused on, which would use up the once-only report. */
TEST_WITH(test_off_on_a_thread_never_set_makes_no_prctl, fake_setup, fake_teardown)
{
    fake.set_errno = EPERM;
    assert_int_equal(rcl_io_flusher_set(0), 0);
    assert_int_equal(fake.n, 0);
    assert_int_equal(rcl_io_flusher_get(), 0);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* The same once the library's on has been undone: a second off finds
 * nothing of the library's to undo. */
TEST_WITH(test_second_off_makes_no_prctl, fake_setup, fake_teardown)
{
    assert_int_equal(rcl_io_flusher_set(1), 0);
    assert_int_equal(rcl_io_flusher_set(0), 0);
    int calls = fake.n;
    assert_int_equal(rcl_io_flusher_set(0), 0);
    assert_int_equal(fake.n, calls);
    assert_int_equal(fake.flag, 0);
}

TEST_MAIN();
