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
static void test_kernel_refusal_is_returned_and_reported_once(void **state)
{
    (void)state;
    int rc = rcl_io_flusher_set(1);
    assert_true(rc == 0 || rc == -EPERM);
    assert_int_equal(rcl_io_flusher_get(), 1);
    assert_true(rcl_scope_current() & RCL_SCOPE_NOIO);
    if (rc == -EPERM) {
        assert_int_equal(test_report_count(), 1);
        assert_non_null(strstr(test_reports.last, "PR_SET_IO_FLUSHER"));
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
static void test_io_flusher_allocations_are_noio(void **state)
{
    (void)state;
    assert_int_equal(rcl_io_flusher_get(), 0);
    rcl_io_flusher_set(1);
    assert_int_equal(rcl_io_flusher_get(), 1);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_NOIO);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_get(), 0);
    assert_int_equal(rcl_scope_current(), 0);
    assert_int_equal(rcl_current_gfp(RCL_DEFAULT), RCL_DEFAULT);
}

/* Reclaim run by a flusher skips shrinkers that need to do I/O. */
static atomic_int io_scans;
static unsigned long io_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    return 1000;
}
static unsigned long io_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    atomic_fetch_add(&io_scans, 1);
    sc->nr_scanned = sc->nr_to_scan;
    return RCL_SHRINK_STOP;
}

static void test_io_flusher_reclaim_skips_shrinkers_that_need_io(void **state)
{
    (void)state;
    static const struct rcl_shrinker_ops ops = { io_count, io_scan };
    struct rcl_shrinker_opts opts = { .needs = RCL__IO };
    struct rcl_shrinker *s = rcl_shrinker_register("needs-io", &ops, NULL, &opts);
    assert_non_null(s);
    rcl_io_flusher_set(1);
    rcl_reclaim(64 * KiB, RCL_DEFAULT);
    rcl_io_flusher_set(0);
    assert_int_equal(atomic_load(&io_scans), 0);
    rcl_reclaim(64 * KiB, RCL_DEFAULT);
    assert_true(atomic_load(&io_scans) > 0);
    rcl_shrinker_unregister(s);
}

/* Turning the flag off undoes only what turning it on did: a NOIO scope
 * the thread was already in stays. */
static void test_io_flusher_off_keeps_an_enclosing_noio_scope(void **state)
{
    (void)state;
    unsigned outer = rcl_noio_save();
    rcl_io_flusher_set(1);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_scope_current(), RCL_SCOPE_NOIO);
    rcl_noio_restore(outer);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Setting it twice is the same as once; one "off" ends it. */
static void test_io_flusher_set_twice_then_off_once(void **state)
{
    (void)state;
    rcl_io_flusher_set(1);
    rcl_io_flusher_set(1);
    rcl_io_flusher_set(0);
    assert_int_equal(rcl_io_flusher_get(), 0);
    assert_int_equal(rcl_scope_current(), 0);
}

/* Real daemons have shipped passing the wrong value: anything but 0 or 1
 * is an error and changes nothing. */
static void test_io_flusher_rejects_other_arguments(void **state)
{
    (void)state;
    assert_int_equal(rcl_io_flusher_set(2), -EINVAL);
    assert_int_equal(rcl_io_flusher_set(-1), -EINVAL);
    assert_int_equal(rcl_io_flusher_get(), 0);
    rcl_io_flusher_set(1);
    assert_int_equal(rcl_io_flusher_set(42), -EINVAL);
    assert_int_equal(rcl_io_flusher_get(), 1);
    rcl_io_flusher_set(0);
}

static void *get_main(void *arg)
{
    *(int *)arg = rcl_io_flusher_get() * 10 + (int)rcl_scope_current();
    return NULL;
}

/* The flag belongs to the thread, as PF_* flags do. */
static void test_io_flusher_is_per_thread(void **state)
{
    (void)state;
    rcl_io_flusher_set(1);
    int other = -1;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, get_main, &other), 0);
    pthread_join(th, NULL);
    assert_int_equal(other, 0);
    rcl_io_flusher_set(0);
}

RUN_TESTS(
    T(test_kernel_refusal_is_returned_and_reported_once),
    T(test_io_flusher_allocations_are_noio),
    T(test_io_flusher_reclaim_skips_shrinkers_that_need_io),
    T(test_io_flusher_off_keeps_an_enclosing_noio_scope),
    T(test_io_flusher_set_twice_then_off_once),
    T(test_io_flusher_rejects_other_arguments),
    T(test_io_flusher_is_per_thread),
)
