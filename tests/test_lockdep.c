/* SPDX-License-Identifier: MIT */
/*
 * The lock checker: lock-order cycles, its life cycle and modes, and many
 * threads at once. Reclaim (the pseudo-locks, the loop device, domains):
 * test_lockdep_reclaim.c; misuse of scopes and NOWAIT, slow shrinkers:
 * test_lockdep_scope.c.
 *
 * Kernel counterpart: lockdep.
 */
#include "helpers.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <limits.h>
#include <sched.h>
#include <semaphore.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checker.h"
#include "internal.h"
#include "lockdep.h"

/* ------------------------------------------------------------------------ */
/* Ordinary lock order                                                       */
/* ------------------------------------------------------------------------ */

static RCL_LOCK_CLASS(lock_a, "lock_a");
static RCL_LOCK_CLASS(lock_b, "lock_b");
static RCL_LOCK_CLASS(lock_c, "lock_c");

/* lockdep: A then B on one path, B then A on another is a possible
 * deadlock, reported although no deadlock happened. */
TEST_WITH(ab_ba_inversion_is_reported, ld_setup, ld_teardown)
{
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 lock_b \u2192 lock_a");
    assert_reports_have("opposite orders");
}

/* The report shows where each edge was first seen as function names, so a
 * reader can find the code - static functions too, which is where most of
 * a daemon's locking lives (read from the program's ELF symbol table). */
static __attribute__((noinline)) void takes_b_then_a(void)
{
    rcl_lock_acquire(&lock_b);
    rcl_lock_acquire(&lock_a);
    rcl_lock_release(&lock_a);
    rcl_lock_release(&lock_b);
    __asm__ volatile("" ::: "memory");  /* keep the call above from being a tail call */
}

TEST_WITH(report_backtrace_names_the_functions, ld_setup, ld_teardown)
{
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    takes_b_then_a();
    assert_int_equal(rcl_lockdep_reports(), 1);
    if (!test_reports_contain(" takes_b_then_a+0x"))
        print_reports();
    assert_reports_have(" takes_b_then_a+0x");
    assert_reports_have(" report_backtrace_names_the_functions+0x");
}

/* A library loaded from a path longer than the checker keeps (dlopen() of
 * a file deep in a build tree): a link at `path` to zlib's file; `fn` one
 * of its functions. Skipped where zlib is not installed. */
static const char long_dir[] = "/a-directory-name-of-some-length";

static void *dlopen_at_a_long_path(char *path, size_t len, const void **fn)
{
    size_t n = (size_t)snprintf(path, len, "/tmp/rcl-long-XXXXXX");
    void *h;

    assert_non_null(mkdtemp(path));
    while (n < 300) {
        n += (size_t)snprintf(path + n, len - n, "%s", long_dir);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    snprintf(path + n, len - n, "/libz.so.1");
    if (symlink("/lib/x86_64-linux-gnu/libz.so.1", path) != 0 &&
        symlink("/usr/lib/libz.so.1", path) != 0)
        return NULL;
    if (!(h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) || !(*fn = dlsym(h, "zlibVersion"))) {
        if (h)
            dlclose(h);
        h = NULL;
    }
    return h;
}

static void long_path_remove(char *path)
{
    char *slash;

    unlink(path);
    while ((slash = strrchr(path, '/')) && slash > path + strlen("/tmp")) {
        *slash = '\0';
        rmdir(path);
    }
}

/* A module's symbols are read once, whatever the length of its path: a
 * long one was cached again at every lookup, until the checker's table
 * of modules was full and every module after it went unnamed. */
TEST_WITH(a_module_at_a_long_path_is_read_once, ld_setup, ld_teardown)
{
    char dir[512], name[256], other[256];
    const void *fn;
    void *h = dlopen_at_a_long_path(dir, sizeof(dir), &fn);
    int i = 0;

    if (!h) {
        long_path_remove(dir);
        skip();
    }
    do
        rcl__symbolize((const char *)fn + 1, name, sizeof(name));
    while (strstr(name, "zlibVersion+0x") && ++i < 40);
    rcl__symbolize((const char *)(uintptr_t)getpid + 1, other, sizeof(other));
    dlclose(h);
    long_path_remove(dir);
    if (i < 40)
        fail_msg("lookup %d named %s", i, name);
    if (!strstr(other, "getpid+0x"))
        fail_msg("named %s", other);
}

/* Named by its file's name, as a module at a short path is: the table
 * keeps a long path cut short, and the name at its end went with it. */
TEST_WITH(a_module_at_a_long_path_is_named_by_its_file, ld_setup, ld_teardown)
{
    char dir[512], name[256];
    const void *fn;
    void *h = dlopen_at_a_long_path(dir, sizeof(dir), &fn);

    if (!h) {
        long_path_remove(dir);
        skip();
    }
    rcl__symbolize((const char *)fn + 1, name, sizeof(name));
    dlclose(h);
    long_path_remove(dir);
    if (!strstr(name, "zlibVersion+0x") || !strstr(name, " (libz.so.1)"))
        fail_msg("named %s", name);
}

TEST_WITH(longer_chain_is_reported, ld_setup, ld_teardown)
{
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_c); unlock(&lock_c); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 0);
    lock(&lock_c); lock(&lock_a); unlock(&lock_a); unlock(&lock_c);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 lock_b \u2192 lock_c \u2192 lock_a");
}

/* A chain of more locks than a report shows edges for (a long lock
 * hierarchy, closed by one acquire at its end): the cycle is still written
 * from its first lock to its last, each hop one that was taken. */
#define LONG_CHAIN 80

/* Takes the classes of a chain of LONG_CHAIN locks in order, then closes
 * it into a cycle at its end. */
static void close_a_long_cycle(void)
{
    static struct rcl_lock_class cls[LONG_CHAIN];
    static char names[LONG_CHAIN][8];

    for (int i = 0; i < LONG_CHAIN; i++) {
        snprintf(names[i], sizeof(names[i]), "L%d", i);
        cls[i] = (struct rcl_lock_class){ .name = names[i] };
    }
    for (int i = 0; i + 1 < LONG_CHAIN; i++) {
        lock(&cls[i]); lock(&cls[i + 1]); unlock(&cls[i + 1]); unlock(&cls[i]);
    }
    assert_int_equal(rcl_lockdep_reports(), 0);
    lock(&cls[LONG_CHAIN - 1]); lock(&cls[0]); unlock(&cls[0]); unlock(&cls[LONG_CHAIN - 1]);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

TEST_WITH(a_cycle_longer_than_a_report_shows_is_named_from_end_to_end, ld_setup,
          ld_teardown)
{
    char want[64];

    close_a_long_cycle();
    assert_reports_have("L0 \u2192 L1 \u2192 L2 \u2192");
    snprintf(want, sizeof(want), "L%d \u2192 L%d \u2192 L0\n", LONG_CHAIN - 2, LONG_CHAIN - 1);
    assert_reports_have(want);
}

/* Its dependencies, each with where it was learned, are more than the
 * report's buffer holds: the report ends saying it was cut, rather than
 * passing the lines that fit for all there was. */
TEST_WITH(a_report_longer_than_its_buffer_says_it_was_cut, ld_setup, ld_teardown)
{
    close_a_long_cycle();
    assert_last_report_has("L0 \u2192 L1 \u2192 L2 \u2192");
    assert_last_report_has("did not fit and was cut]\n");
}

TEST_WITH(consistent_order_is_quiet, ld_setup, ld_teardown)
{
    for (int i = 0; i < 100; i++) {
        lock(&lock_a); lock(&lock_b); lock(&lock_c);
        unlock(&lock_c); unlock(&lock_b); unlock(&lock_a);
        lock(&lock_a); lock(&lock_c); unlock(&lock_a); unlock(&lock_c);
    }
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

TEST_WITH(each_cycle_is_reported_once, ld_setup, ld_teardown)
{
    for (int i = 0; i < 50; i++) {
        lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
        lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    }
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(test_report_count(), 1);
}

/* An acquire above a trylock learns two edges at once (c after b, and after
 * a below it); here each closes a cycle of its own. Both are reported: the
 * edges stay in the graph, so a cycle left out now would never be. */
TEST_WITH(each_cycle_closed_by_one_acquire_is_reported, ld_setup, ld_teardown)
{
    lock(&lock_c); lock(&lock_a); unlock(&lock_a); unlock(&lock_c);
    lock(&lock_c); lock(&lock_b); unlock(&lock_b); unlock(&lock_c);
    assert_int_equal(rcl_lockdep_reports(), 0);
    for (int i = 0; i < 2; i++) {
        lock(&lock_a); rcl_lock_acquire_try(&lock_b); lock(&lock_c);
        unlock(&lock_c); unlock(&lock_b); unlock(&lock_a);
    }
    assert_int_equal(rcl_lockdep_reports(), 2);
    assert_reports_have("lock_c \u2192 lock_b \u2192 lock_c");
    assert_reports_have("lock_c \u2192 lock_a \u2192 lock_c");
}

/* lockdep: taking a class already held is a self-deadlock (recursive
 * locking of a non-recursive lock). */
TEST_WITH(recursive_acquire_is_reported, ld_setup, ld_teardown)
{
    lock(&lock_a); lock(&lock_a); unlock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 lock_a");
}

/* ------------------------------------------------------------------------ */
/* Nesting: two locks of one class in an order the program defines          */
/* ------------------------------------------------------------------------ */

/* mutex_lock_nested(): a parent's lock, then its child's of the same
 * class, taken at a subclass, is an order, not a recursion (without the
 * subclass it is one: recursive_acquire_is_reported). */
TEST_WITH(a_lock_nested_in_one_of_its_class_at_a_subclass_is_quiet, ld_setup, ld_teardown)
{
    for (int i = 0; i < 2; i++) {
        lock(&lock_a);
        rcl_lock_acquire_nested(&lock_a, RCL_SINGLE_DEPTH_NESTING);
        unlock(&lock_a);
        unlock(&lock_a);
    }
    lock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_false(test_reports_contain("which it does not hold"));
}

/* Each subclass is a class of its own for the order: the child's lock
 * taken before the parent's elsewhere is an inversion. */
TEST_WITH(an_inversion_between_subclasses_of_a_class_is_reported, ld_setup, ld_teardown)
{
    lock(&lock_a); rcl_lock_acquire_nested(&lock_a, 1); unlock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_lock_acquire_nested(&lock_a, 1); lock(&lock_a); unlock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 lock_a/1 \u2192 lock_a");
}

/* Subclass 0 is the class itself. */
TEST_WITH(subclass_zero_is_the_class_itself, ld_setup, ld_teardown)
{
    lock(&lock_a); rcl_lock_acquire_nested(&lock_a, 0); unlock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 lock_a");
}

/* The kernel keeps eight subclasses; past them the annotation is refused
 * and reported, once a call site, and the lock goes unannotated: it is
 * not a recursion of the one held, and its release is not one of a lock
 * not held. */
TEST_WITH(a_subclass_out_of_range_is_refused_and_reported, ld_setup, ld_teardown)
{
    for (volatile int i = 0; i < 2; i++) {   /* one call site: not unrolled */
        lock(&lock_a);
        rcl_lock_acquire_nested(&lock_a, RCL_LOCK_SUBCLASSES);
        unlock(&lock_a);
        unlock(&lock_a);
    }
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("#0 a_subclass_out_of_range_is_refused_and_reported+0x");
    assert_reports_have("at subclass 8, out of range");
    assert_false(test_reports_contain("lock_a \u2192 lock_a"));
    assert_false(test_reports_contain("which it does not hold"));
}

/* rcl_mutex_lock_nested(): the mutexes are told apart by address, so
 * either may be unlocked first. */
TEST_WITH(mutexes_of_one_class_nested_at_a_subclass_unlock_in_any_order, ld_setup,
          ld_teardown)
{
    rcl_mutex_t parent, child;

    assert_int_equal(rcl_mutex_init(&parent, &lock_a), 0);
    assert_int_equal(rcl_mutex_init(&child, &lock_a), 0);
    rcl_mutex_lock(&parent);
    rcl_mutex_lock_nested(&child, RCL_SINGLE_DEPTH_NESTING);
    rcl_mutex_unlock(&child);
    rcl_mutex_unlock(&parent);
    rcl_mutex_lock(&parent);
    rcl_mutex_lock_nested(&child, RCL_SINGLE_DEPTH_NESTING);
    rcl_mutex_unlock(&parent);
    rcl_mutex_unlock(&child);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_false(test_reports_contain("which it does not hold"));
    assert_int_equal(rcl_mutex_destroy(&parent), 0);
    assert_int_equal(rcl_mutex_destroy(&child), 0);
}

/* A refused subclass leaves the mutex's exclusion alone: it is locked,
 * and its unlock unlocks it. */
TEST_WITH(a_mutex_at_a_subclass_out_of_range_is_still_locked, ld_setup, ld_teardown)
{
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &lock_a), 0);
    rcl_mutex_lock_nested(&m, RCL_LOCK_SUBCLASSES + 1);
    assert_int_equal(pthread_mutex_trylock(&m.m), EBUSY);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("rcl_mutex_lock_nested() of class \"lock_a\" at subclass 9");
    assert_false(test_reports_contain("which it does not hold"));
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

/* lockdep: a trylock cannot deadlock, so it records no dependency on the
 * lock it takes... */
TEST_WITH(trylock_adds_no_dependency, ld_setup, ld_teardown)
{
    lock(&lock_a); rcl_lock_acquire_try(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* ...but the lock is held afterwards: what is taken under it depends on it
 * (and on what was held below it). The one report is that cycle's: had
 * the trylock left nothing held, the release of lock_a would have been
 * the one report. */
TEST_WITH(lock_taken_by_trylock_is_held, ld_setup, ld_teardown)
{
    rcl_lock_acquire_try(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 lock_b \u2192 lock_a");
    assert_false(test_reports_contain("which it does not hold"));
}

TEST_WITH(release_in_any_order_is_allowed, ld_setup, ld_teardown)
{
    lock(&lock_a); lock(&lock_b); unlock(&lock_a); unlock(&lock_b);
    lock(&lock_c); unlock(&lock_c);
    /* Nothing is held any more: taking c then a orders nothing. */
    lock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

TEST_WITH(mutex_wrappers_annotate, ld_setup, ld_teardown)
{
    rcl_mutex_t ma, mb;
    assert_int_equal(rcl_mutex_init(&ma, &lock_a), 0);
    assert_int_equal(rcl_mutex_init(&mb, &lock_b), 0);
    rcl_mutex_lock(&ma); rcl_mutex_lock(&mb); rcl_mutex_unlock(&mb); rcl_mutex_unlock(&ma);
    assert_int_equal(rcl_mutex_trylock(&ma), 0);
    assert_int_equal(rcl_mutex_trylock(&ma), EBUSY);
    rcl_mutex_unlock(&ma);
    /* The other order as an annotation only: a real inversion of two
     * pthread mutexes would (rightly) stop the test under TSan. */
    rcl_mutex_lock(&mb); lock(&lock_a); unlock(&lock_a); rcl_mutex_unlock(&mb);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(rcl_mutex_destroy(&ma), 0);
    assert_int_equal(rcl_mutex_destroy(&mb), 0);
}

TEST_WITH(init_or_destroy_of_a_null_mutex_is_refused_and_reported, ld_setup, ld_teardown)
{
    assert_int_equal(rcl_mutex_init(NULL, &lock_a), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_mutex_init(NULL");
    assert_int_equal(rcl_mutex_destroy(NULL), -EINVAL);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("rcl_mutex_destroy(NULL)");
}

TEST_WITH(trylock_of_a_null_mutex_is_refused_and_reported, ld_setup, ld_teardown)
{
    assert_int_equal(rcl_mutex_trylock(NULL), EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_mutex_trylock(NULL)");
    assert_int_equal(rcl_lockdep_reports(), 0);
}

TEST_WITH(bad_input_is_refused, ld_setup, ld_teardown)
{
    unsigned before = test_report_count();
    rcl_lock_acquire(NULL);
    rcl_lock_release(NULL);
    rcl_mutex_lock(NULL);
    rcl_mutex_unlock(NULL);
    assert_int_equal(test_report_count(), before + 4);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* More locks at once than the thread's stack records (32): a class each,
 * all taken, then released in the order they were taken. */
#define DEEP 33
static struct rcl_lock_class deep_classes[DEEP];
static char deep_names[DEEP][8];

static void deep_take_then_release_first_taken_first(rcl_mutex_t *m)
{
    for (int i = 0; i < DEEP; i++) {
        snprintf(deep_names[i], sizeof(deep_names[i]), "deep%d", i);
        deep_classes[i].name = deep_names[i];
        assert_int_equal(rcl_mutex_init(&m[i], &deep_classes[i]), 0);
    }
    for (int i = 0; i < DEEP; i++)
        rcl_mutex_lock(&m[i]);
    for (int i = 0; i < DEEP; i++)
        rcl_mutex_unlock(&m[i]);
}

/* lockdep: releases need not nest, however deep the thread's locks go (the
 * kernel's held-lock stack closes the gap a release from its middle
 * leaves). Past the recorded depth, a release from the recorded part
 * still unlocks only its own mutex, and the one above the depth is the
 * thread's to unlock too; the depth report, told once a graph, is no
 * report of the checker's count. */
TEST_WITH(locks_beyond_the_recorded_depth_released_first_taken_first_all_unlock, ld_setup,
          ld_teardown)
{
    rcl_mutex_t m[DEEP];

    deep_take_then_release_first_taken_first(m);
    for (int i = 0; i < DEEP; i++) {
        assert_int_equal(pthread_mutex_trylock(&m[i].m), 0);
        pthread_mutex_unlock(&m[i].m);
    }
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_false(test_reports_contain("which it does not hold"));
    for (int i = 0; i < DEEP; i++)
        assert_int_equal(rcl_mutex_destroy(&m[i]), 0);
}

/* lockdep: a lock released is held no more, so nothing taken after it
 * depends on it: with the deep stack emptied, lock_a then the first of
 * them is an order of its own, no cycle. */
TEST_WITH(locks_beyond_the_recorded_depth_leave_nothing_held_once_released, ld_setup,
          ld_teardown)
{
    rcl_mutex_t m[DEEP];

    deep_take_then_release_first_taken_first(m);
    lock(&lock_a); unlock(&lock_a);
    lock(&lock_a); rcl_mutex_lock(&m[0]); rcl_mutex_unlock(&m[0]); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
    for (int i = 0; i < DEEP; i++)
        assert_int_equal(rcl_mutex_destroy(&m[i]), 0);
}

/* lockdep: a lock above the recorded depth is on no entry its class's
 * unregister could read, so the unregister goes through; the lock is
 * still the thread's, and its release unlocks it unreported. */
TEST_WITH(lock_above_the_recorded_depth_unlocks_after_its_class_is_unregistered, ld_setup,
          ld_teardown)
{
    struct rcl_lock_class top = { .name = "top" };
    struct rcl_lock_class below[DEEP - 1];
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &top), 0);
    rcl_mutex_lock(&m); rcl_mutex_unlock(&m);
    for (int i = 0; i < DEEP - 1; i++) {
        below[i] = (struct rcl_lock_class){ .name = "below" };
        lock(&below[i]);
    }
    rcl_mutex_lock(&m);
    assert_int_equal(rcl_lock_class_unregister(&top), 0);
    rcl_mutex_unlock(&m);
    assert_int_equal(pthread_mutex_trylock(&m.m), 0);
    pthread_mutex_unlock(&m.m);
    for (int i = DEEP - 2; i >= 0; i--)
        unlock(&below[i]);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_false(test_reports_contain("which it does not hold"));
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

/* Bare annotations of DEEP classes, taken, then released innermost first. */
static void deep_annotations_taken_then_released(void)
{
    for (int i = 0; i < DEEP; i++) {
        snprintf(deep_names[i], sizeof(deep_names[i]), "deep%d", i);
        deep_classes[i].name = deep_names[i];
        lock(&deep_classes[i]);
    }
    for (int i = DEEP - 1; i >= 0; i--)
        unlock(&deep_classes[i]);
}

/* lockdep's MAX_LOCK_DEPTH: a thread past the depth its stack records is
 * told, once each time the checker starts (as a full graph is), and what
 * it holds after is checked as before. (Told once a process, a program
 * that started the library again was never told of a new graph's.) */
TEST_WITH(a_thread_past_the_recorded_depth_is_told_once_each_time_the_checker_starts,
          ld_setup, ld_teardown)
{
    deep_annotations_taken_then_released();
    deep_annotations_taken_then_released();
    assert_int_equal(test_reports_seen_matching("holds more than 32 annotated locks"), 1);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 1);

    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
    deep_annotations_taken_then_released();
    assert_int_equal(test_reports_seen_matching("holds more than 32 annotated locks"), 1);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 lock_b \u2192 lock_a");
}

/* ------------------------------------------------------------------------ */
/* Releases without an acquire (the kernel's "bad unlock balance")           */
/* ------------------------------------------------------------------------ */

static __attribute__((noinline)) void releases_c_unheld(void)
{
    rcl_lock_release(&lock_c);
    __asm__ volatile("" ::: "memory");  /* keep the call above from being a tail call */
}

/* lockdep: a release the task's held locks do not match is reported, with
 * where it happened. */
TEST_WITH(releasing_a_lock_not_held_is_reported_where_it_happened, ld_setup, ld_teardown)
{
    releases_c_unheld();
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("released lock_c, which it does not hold");
    assert_reports_have("#0 releases_c_unheld");
    /* What the thread does hold is as it was. */
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

/* A NULL class is reported as one whatever the subclass: out of range
 * too it was taken for a lock gone unannotated, whose release the thread
 * still owed, and the next release of a lock it did not hold went unsaid
 * in its place. */
TEST_WITH(a_null_class_at_a_subclass_out_of_range_is_reported_as_null, ld_setup, ld_teardown)
{
    rcl_lock_acquire_nested(NULL, RCL_LOCK_SUBCLASSES);
    rcl_lock_release(NULL);
    assert_reports_have("rcl_lock_acquire_nested: NULL lock class");
    assert_false(test_reports_contain("out of range"));
    releases_c_unheld();
    assert_reports_have("released lock_c, which it does not hold");
}

/* A second release is one too many; like the checker's other reports it
 * is told once a call site. */
TEST_WITH(a_second_release_is_reported_once_a_site, ld_setup, ld_teardown)
{
    for (volatile int i = 0; i < 3; i++) {   /* one call site: not unrolled */
        lock(&lock_a);
        unlock(&lock_a);
        unlock(&lock_a);
    }
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("released lock_a, which it does not hold");
}

/* lockdep keeps held locks per task: a lock one thread took is not another
 * thread's to release. */
static void *releases_a(void *arg)
{
    (void)arg;
    unlock(&lock_a);
    return NULL;
}

TEST_WITH(a_release_by_another_thread_is_reported, ld_setup, ld_teardown)
{
    pthread_t th;

    lock(&lock_a);
    assert_int_equal(pthread_create(&th, NULL, releases_a, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("released lock_a, which it does not hold");
    /* This thread still holds it, and releases it quietly. */
    unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

struct unlocker { rcl_mutex_t *m; int trylock; };

static void *unlocks_then_tries(void *arg)
{
    struct unlocker *u = arg;
    rcl_mutex_unlock(u->m);
    u->trylock = rcl_mutex_trylock(u->m);
    return NULL;
}

/* A pthread mutex unlocked by a thread that does not own it would let a
 * second thread in; the checker, which knows this thread holds no lock of
 * the class, reports the unlock and leaves the mutex locked. */
TEST_WITH(a_mutex_unlocked_by_a_thread_that_does_not_hold_it_stays_locked, ld_setup,
          ld_teardown)
{
    rcl_mutex_t m;
    struct unlocker u = { &m, -1 };
    pthread_t th;

    assert_int_equal(rcl_mutex_init(&m, &lock_b), 0);
    rcl_mutex_lock(&m);
    assert_int_equal(pthread_create(&th, NULL, unlocks_then_tries, &u), 0);
    pthread_join(th, NULL);
    assert_int_equal(u.trylock, EBUSY);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("of class lock_b, which it does not hold");
    assert_reports_have("The mutex was left as it was");
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_mutex_trylock(&m), 0);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

struct holder { rcl_mutex_t *m; pthread_barrier_t held, done; };

static void *holds_until_done(void *arg)
{
    struct holder *h = arg;
    rcl_mutex_lock(h->m);
    pthread_barrier_wait(&h->held);
    pthread_barrier_wait(&h->done);
    rcl_mutex_unlock(h->m);
    return NULL;
}

/* lockdep matches a release to the lock instance held, not only its class:
 * a thread that holds one mutex of a class and unlocks another of it,
 * which a second thread holds, is reported, and that mutex stays locked. */
TEST_WITH(unlocking_a_mutex_not_held_is_reported_though_one_of_its_class_is, ld_setup,
          ld_teardown)
{
    rcl_mutex_t mine, theirs;
    struct holder h = { &theirs, { { 0 } }, { { 0 } } };
    pthread_t th;

    assert_int_equal(rcl_mutex_init(&mine, &lock_c), 0);
    assert_int_equal(rcl_mutex_init(&theirs, &lock_c), 0);
    assert_int_equal(pthread_barrier_init(&h.held, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&h.done, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, holds_until_done, &h), 0);
    pthread_barrier_wait(&h.held);
    rcl_mutex_lock(&mine);
    rcl_mutex_unlock(&theirs);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("of class lock_c, which it does not hold");
    assert_int_equal(rcl_mutex_trylock(&theirs), EBUSY);
    rcl_mutex_unlock(&mine);
    pthread_barrier_wait(&h.done);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(pthread_barrier_destroy(&h.held), 0);
    assert_int_equal(pthread_barrier_destroy(&h.done), 0);
    assert_int_equal(rcl_mutex_destroy(&mine), 0);
    assert_int_equal(rcl_mutex_destroy(&theirs), 0);
}

/* More lock classes than the graph has nodes (4096): the last ones go
 * unchecked, which the checker says once. Their locks are still held, so a
 * mutex of such a class unlocks quietly rather than staying locked. */
#define FULL_CLASSES 4200

TEST_WITH(a_mutex_of_a_class_the_full_graph_has_no_node_for_unlocks, ld_setup, ld_teardown)
{
    struct rcl_lock_class *cls = calloc(FULL_CLASSES, sizeof(*cls));
    rcl_mutex_t m;

    assert_non_null(cls);
    for (int i = 0; i < FULL_CLASSES; i++) {
        cls[i].name = "many";
        lock(&cls[i]);
        unlock(&cls[i]);
    }
    assert_int_equal(rcl_mutex_init(&m, &cls[FULL_CLASSES - 1]), 0);
    rcl_mutex_lock(&m);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_mutex_trylock(&m), 0);
    rcl_mutex_unlock(&m);
    assert_false(test_reports_contain("which it does not hold"));
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_reports_have("the graph is full");
    assert_int_equal(rcl_mutex_destroy(&m), 0);
    free(cls);
}

/* More lock orders than the table of dependencies holds (16,384). The
 * kernel's lockdep says "MAX_LOCKDEP_ENTRIES too low!" once and turns
 * itself off: an order it could not hold is lost, and a graph that misses
 * some checks nothing reliably. So does this one: the full table is one
 * report, counted, and no order is learned after it (no backtrace, no
 * graph lock), not even once dependencies went. An inversion of two
 * classes left is then not reported. */
#define ORDER_CLASSES 200

static void fill_the_dependency_table(struct rcl_lock_class *cls)
{
    for (int i = 0; i < ORDER_CLASSES; i++)
        cls[i] = (struct rcl_lock_class){ .name = "ordered" };
    for (int i = 0; i < ORDER_CLASSES; i++)
        for (int j = i + 1; j < ORDER_CLASSES; j++) {
            lock(&cls[i]); lock(&cls[j]); unlock(&cls[j]); unlock(&cls[i]);
        }
}

TEST_WITH(a_full_dependency_table_is_reported_once_and_turns_the_graph_off, ld_setup,
          ld_teardown)
{
    static struct rcl_lock_class cls[ORDER_CLASSES];

    fill_the_dependency_table(cls);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("the table of dependencies is full (16384 lock orders)");
    unsigned long learns = rcl__lockdep_learns();
    for (int k = 0; k < 100; k++) {
        lock(&cls[ORDER_CLASSES - 1]); lock(&cls[ORDER_CLASSES - 2]);
        unlock(&cls[ORDER_CLASSES - 2]); unlock(&cls[ORDER_CLASSES - 1]);
    }
    assert_int_equal(rcl__lockdep_learns(), learns);

    for (int i = 2; i < ORDER_CLASSES; i++)
        assert_int_equal(rcl_lock_class_unregister(&cls[i]), 0);
    lock(&cls[1]); lock(&cls[0]); unlock(&cls[0]); unlock(&cls[1]);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl__lockdep_learns(), learns);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

/* Off until the graph is cleared: the library started again checks. */
TEST_WITH(a_graph_turned_off_by_a_full_table_checks_again_after_a_restart, ld_setup,
          ld_teardown)
{
    static struct rcl_lock_class cls[ORDER_CLASSES];

    fill_the_dependency_table(cls);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("the table of dependencies is full");
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 lock_b \u2192 lock_a");
}

/* ...and takes no graph lock to be told it has none: each acquire of
 * such a class took it, and the threads taking them ran one at a time.
 * A class given back makes room: the next acquire of the unchecked class
 * finds its node, and is checked. */
TEST_WITH(a_class_the_full_graph_has_no_node_for_is_not_looked_up_at_each_acquire, ld_setup,
          ld_teardown)
{
    struct rcl_lock_class *cls = calloc(FULL_CLASSES, sizeof(*cls));
    struct rcl_lock_class *late = &cls[FULL_CLASSES - 1];

    assert_non_null(cls);
    lock(&lock_a);
    unlock(&lock_a);
    for (int i = 0; i < FULL_CLASSES; i++) {
        cls[i].name = "many";
        lock(&cls[i]);
        unlock(&cls[i]);
    }
    assert_reports_have("the graph is full");
    unsigned long lookups = rcl__lockdep_class_lookups();
    for (int k = 0; k < 100; k++) {
        lock(late);
        unlock(late);
    }
    assert_int_equal(rcl__lockdep_class_lookups(), lookups);

    assert_int_equal(rcl_lock_class_unregister(&cls[0]), 0);
    lock(&lock_a); lock(late); unlock(late); unlock(&lock_a);
    lock(late); lock(&lock_a); unlock(&lock_a); unlock(late);
    assert_int_equal(rcl_lockdep_reports(), 1);
    free(cls);
}

/* A bare annotation names no lock: its release matches any lock of the
 * class the thread holds, a mutex's too, and a mutex's unlock matches a
 * bare annotation of its class. */
TEST_WITH(a_bare_annotation_matches_any_lock_of_its_class, ld_setup, ld_teardown)
{
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &lock_a), 0);
    rcl_mutex_lock(&m);
    unlock(&lock_a);
    lock(&lock_a);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

/* ------------------------------------------------------------------------ */
/* Classes that come and go                                                  */
/* ------------------------------------------------------------------------ */

/* A per-object class, as an object that comes and goes keeps its own:
 * made, taken under lock_a, unregistered and freed. */
static void object_class_cycle(void)
{
    struct rcl_lock_class *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->name = "object";
    lock(&lock_a); lock(c); unlock(c); unlock(&lock_a);
    assert_int_equal(rcl_lock_class_unregister(c), 0);
    free(c);
}

/* lockdep_unregister_key(): a class that goes gives its node back with
 * every dependency learned for it, so a program whose objects come and go
 * for as long as it runs never fills the graph. */
TEST_WITH(unregistered_classes_leave_the_graph_its_size, ld_setup, ld_teardown)
{
    unsigned nodes, edges, nodes_after, edges_after;

    object_class_cycle();
    rcl__lockdep_graph_size(&nodes, &edges);
    for (int i = 0; i < 10000; i++)
        object_class_cycle();
    rcl__lockdep_graph_size(&nodes_after, &edges_after);
    assert_int_equal(nodes_after, nodes);
    assert_int_equal(edges_after, edges);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* A class's subclasses are nodes of their own, and go with it. */
static void object_class_nested_cycle(void)
{
    struct rcl_lock_class *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->name = "object";
    lock(&lock_a);
    lock(c);
    rcl_lock_acquire_nested(c, 1);
    rcl_lock_acquire_nested(c, RCL_LOCK_SUBCLASSES - 1);
    unlock(c); unlock(c); unlock(c);
    unlock(&lock_a);
    assert_int_equal(rcl_lock_class_unregister(c), 0);
    free(c);
}

TEST_WITH(unregistered_classes_take_their_subclasses_out_of_the_graph, ld_setup, ld_teardown)
{
    unsigned nodes, edges, nodes_after, edges_after;

    object_class_nested_cycle();
    rcl__lockdep_graph_size(&nodes, &edges);
    for (int i = 0; i < 10000; i++)
        object_class_nested_cycle();
    rcl__lockdep_graph_size(&nodes_after, &edges_after);
    assert_int_equal(nodes_after, nodes);
    assert_int_equal(edges_after, edges);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* ...and the classes that stay are checked as before: after thousands of
 * classes came and went, an inversion between two live ones is reported. */
TEST_WITH(inversion_of_live_classes_is_reported_after_thousands_unregistered, ld_setup,
          ld_teardown)
{
    for (int i = 0; i < 10000; i++)
        object_class_cycle();
    lock(&lock_b); lock(&lock_c); unlock(&lock_c); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 0);
    lock(&lock_c); lock(&lock_b); unlock(&lock_b); unlock(&lock_c);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_b \u2192 lock_c \u2192 lock_b");
}

/* The memory of an unregistered class holds another class, not reset
 * (an allocator's recycled block): that one is new, and the order the old
 * one was taken in is not its. */
TEST_WITH(memory_of_an_unregistered_class_reused_is_a_new_class, ld_setup, ld_teardown)
{
    struct rcl_lock_class c = { .name = "old" };

    lock(&lock_a); lock(&c); unlock(&c); unlock(&lock_a);
    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    c.name = "new";
    lock(&c); lock(&lock_a); unlock(&lock_a); unlock(&c);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* A class made on the node an unregistered one gave back, taken under a
 * lock held all along: the thread knew the old class followed that lock,
 * which says nothing of the new one, so the order is learned, and its
 * inversion reported. */
TEST_WITH(class_on_a_given_back_node_is_ordered_after_a_lock_held_throughout, ld_setup,
          ld_teardown)
{
    struct rcl_lock_class old = { .name = "old" }, new = { .name = "new" };

    lock(&lock_a);
    for (int i = 0; i < 2; i++) {   /* the second time, known to follow lock_a */
        lock(&old);
        unlock(&old);
    }
    assert_int_equal(rcl_lock_class_unregister(&old), 0);
    lock(&new); unlock(&new);
    unlock(&lock_a);
    lock(&new); lock(&lock_a); unlock(&lock_a); unlock(&new);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("lock_a \u2192 new \u2192 lock_a");
}

/* Misuse. A lock of the class still held: its memory is not the
 * program's to free yet. Refused and reported; the class stays
 * registered, and its lock releases quietly. */
TEST_WITH(unregistering_a_class_this_thread_holds_is_refused, ld_setup, ld_teardown)
{
    struct rcl_lock_class c = { .name = "busy" };
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &c), 0);
    rcl_mutex_lock(&m);
    assert_int_equal(rcl_lock_class_unregister(&c), -EBUSY);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("of class \"busy\", which thread");
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_mutex_trylock(&m), 0);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

/* A lock of the class held at a subclass is a lock of the class. */
TEST_WITH(unregistering_a_class_held_at_a_subclass_is_refused, ld_setup, ld_teardown)
{
    struct rcl_lock_class c = { .name = "busy" };

    lock(&c);
    rcl_lock_acquire_nested(&c, RCL_SINGLE_DEPTH_NESTING);
    unlock(&c);
    assert_int_equal(rcl_lock_class_unregister(&c), -EBUSY);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("of class \"busy\", which thread");
    unlock(&c);
    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_false(test_reports_contain("which it does not hold"));
}

TEST_WITH(unregistering_a_class_another_thread_holds_is_refused, ld_setup, ld_teardown)
{
    struct rcl_lock_class c = { .name = "theirs" };
    rcl_mutex_t m;
    struct holder h = { &m, { { 0 } }, { { 0 } } };
    pthread_t th;

    assert_int_equal(rcl_mutex_init(&m, &c), 0);
    assert_int_equal(pthread_barrier_init(&h.held, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&h.done, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, holds_until_done, &h), 0);
    pthread_barrier_wait(&h.held);
    assert_int_equal(rcl_lock_class_unregister(&c), -EBUSY);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("of class \"theirs\", which thread");
    pthread_barrier_wait(&h.done);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(pthread_barrier_destroy(&h.held), 0);
    assert_int_equal(pthread_barrier_destroy(&h.done), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

/* A second unregister with no use in between is reported (a use
 * registers the class again); NULL is refused. */
TEST_WITH(unregistering_a_class_twice_is_reported, ld_setup, ld_teardown)
{
    struct rcl_lock_class c = { .name = "twice" };

    lock(&c); unlock(&c);
    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    assert_int_equal(test_report_count(), 0);
    assert_int_equal(rcl_lock_class_unregister(&c), -ENOENT);
    assert_int_equal(test_report_count(), 1);
    assert_reports_have("class \"twice\" unregistered twice");
    lock(&c); unlock(&c);
    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    assert_int_equal(test_report_count(), 1);
}

TEST_WITH(unregistering_a_null_class_is_refused, ld_setup, ld_teardown)
{
    assert_int_equal(rcl_lock_class_unregister(NULL), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_reports_have("rcl_lock_class_unregister: NULL lock class");
}

/* No register call: a class registers at its first use, so one never used
 * (an object whose lock was never taken) has nothing to give back. */
TEST_WITH(unregistering_a_class_never_used_is_quiet, ld_setup, ld_teardown)
{
    RCL_LOCK_CLASS(c, "unused");

    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* A child of a fork has one thread: what the parent's others held, none
 * of its threads holds, and a class one of them held unregisters there. */
TEST_WITH(a_forked_child_unregisters_a_class_a_parents_thread_holds, ld_setup, ld_teardown)
{
    struct rcl_lock_class c = { .name = "parents" };
    rcl_mutex_t m;
    struct holder h = { &m, { { 0 } }, { { 0 } } };
    pthread_t th;
    int status;

    assert_int_equal(rcl_mutex_init(&m, &c), 0);
    assert_int_equal(pthread_barrier_init(&h.held, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&h.done, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, holds_until_done, &h), 0);
    pthread_barrier_wait(&h.held);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(rcl_lock_class_unregister(&c) == 0 ? 0 : 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    pthread_barrier_wait(&h.done);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(pthread_barrier_destroy(&h.held), 0);
    assert_int_equal(pthread_barrier_destroy(&h.done), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

/* ------------------------------------------------------------------------ */
/* Life cycle and modes                                                      */
/* ------------------------------------------------------------------------ */

TEST_WITH(shutdown_clears_the_graph, ld_setup, ld_teardown)
{
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 0);
    /* And a cycle reported before is reported again in the new graph. */
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

TEST_WITH(shutdown_with_a_lock_held_forgets_it, ld_setup, ld_teardown)
{
    lock(&lock_a);
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
    unlock(&lock_a);
    lock(&lock_b); unlock(&lock_b);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    lock(&lock_a); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* The locks a thread held when the graph was forgotten it may release after:
 * as many releases as it held locks go unreported, and no more. */
TEST_WITH(releases_of_locks_held_across_a_shutdown_are_counted, ld_setup, ld_teardown)
{
    lock(&lock_a); lock(&lock_b);
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);  /* lock_a and lock_b in the graph */
    unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 0);
    unlock(&lock_a);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("released lock_a, which it does not hold");
}

/* With the checker off an acquire is not seen, so once a library ran
 * without it a release that finds no acquire is not reported: the lock may
 * have been taken then. In a child, since that holds for the process's
 * life. */
TEST_WITH(after_a_run_with_the_checker_off_no_release_is_reported, ld_setup, ld_teardown)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rcl_shutdown();
        if (ld_init_mode(RCL_LOCKDEP_OFF, 0, 64 * MiB) != 0)
            _exit(2);
        lock(&lock_c);
        rcl_shutdown();
        if (ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB) != 0)
            _exit(3);
        unlock(&lock_c);
        unlock(&lock_c);
        _exit(rcl_lockdep_reports() == 0 && test_report_count() == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* This process saw every acquire. */
    unlock(&lock_c);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

TEST_WITH(mode_verbose_notes_each_new_dependency, ld_setup, ld_teardown)
{
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_VERBOSE, 0, 64 * MiB), 0);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_reports_have("new dependency lock_a \u2192 lock_b");
    assert_int_equal(rcl_lockdep_reports(), 0);
    unsigned notes = test_report_count();
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    assert_int_equal(test_report_count(), notes);    /* once per dependency */
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

/* An acquire above a trylock learns two dependencies at once: each is
 * noted, not only the first. */
TEST_WITH(mode_verbose_notes_each_dependency_one_acquire_learns, ld_setup, ld_teardown)
{
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_VERBOSE, 0, 64 * MiB), 0);
    lock(&lock_a); rcl_lock_acquire_try(&lock_b); lock(&lock_c);
    unlock(&lock_c); unlock(&lock_b); unlock(&lock_a);
    assert_reports_have("new dependency lock_b \u2192 lock_c");
    assert_reports_have("new dependency lock_a \u2192 lock_c");
    assert_int_equal(rcl_lockdep_reports(), 0);
}

TEST_WITH(environment_turns_checker_on, ld_setup, ld_teardown)
{
    rcl_shutdown();
    setenv("RECLAIM_LOCKDEP", "1", 1);
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    unsetenv("RECLAIM_LOCKDEP");
    assert_int_equal(cfg.lockdep, RCL_LOCKDEP_ON);
    setenv("RECLAIM_LOCKDEP", "verbose", 1);
    rcl_config_default(&cfg);
    assert_int_equal(rcl_config_from_env(&cfg), 0);
    unsetenv("RECLAIM_LOCKDEP");
    assert_int_equal(cfg.lockdep, RCL_LOCKDEP_VERBOSE);
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_ON, 0, 64 * MiB), 0);
}

/* ------------------------------------------------------------------------ */
/* The watch on the thread's allocations                                     */
/* ------------------------------------------------------------------------ */

/* The outermost lock sends the thread's allocations to the checker by the
 * watch's byte of its own, and its release takes them back; inner locks
 * leave it. A request another thread left pending, in the byte of the
 * requests, stays for the next allocation to meet. */
TEST_WITH(the_outermost_lock_alone_sets_and_clears_the_checkers_watch, ld_setup, ld_teardown)
{
    struct rcl_thread *t = &rcl__self;
    void *p = rcl_alloc(16, RCL_DEFAULT);   /* meets the restart's request */

    rcl_free(p);
    assert_int_equal(rd(t->watch.asked), 0);
    rcl__slow_path_ask(t);
    assert_int_equal(rd(t->watch.lockdep), 0);
    lock(&lock_a);
    assert_int_equal(rd(t->watch.lockdep), 1);
    lock(&lock_b);
    unlock(&lock_b);
    assert_int_equal(rd(t->watch.lockdep), 1);
    unlock(&lock_a);
    assert_int_equal(rd(t->watch.lockdep), 0);
    assert_int_equal(rd(t->watch.asked), RCL__WATCH_DRAIN);
    p = rcl_alloc(16, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(rd(t->watch.any), 0);
    rcl_free(p);
}

struct asker { struct rcl_thread *t; int asks; _Atomic int done; };

/* Asks a.t for its slow path a.asks times, each as soon as the one before
 * was met (or lost), so that each lands while the thread stores its byte
 * of the checker: the window a store of the whole word would lose it in. */
static void *ask_repeatedly(void *arg)
{
    struct asker *a = arg;

    for (int i = 0; i < a->asks; i++) {
        rcl__slow_path_ask(a->t);
        for (unsigned spins = 1; rd(a->t->watch.asked); spins++)
            if (spins % 1024 == 0)
                sched_yield();   /* one CPU for the two threads */
    }
    atomic_store(&a->done, 1);
    return NULL;
}

/* Another thread's requests while the thread takes and lets go of its
 * outermost lock, which stores the watch's byte of the checker each time:
 * none is lost. A store of the whole word, or a plain read-modify-write
 * of it, would drop a request made between its read and its write. */
TEST_WITH(requests_made_while_the_outermost_lock_comes_and_goes_are_all_met, ld_setup,
          ld_teardown)
{
    struct asker a = { .t = &rcl__self, .asks = test_scale(20000) };
    int met = 0;
    pthread_t th;

    rcl_free(rcl_alloc(16, RCL_DEFAULT));   /* meets the restart's request */
    assert_int_equal(rd(a.t->watch.asked), 0);
    assert_int_equal(pthread_create(&th, NULL, ask_repeatedly, &a), 0);
    for (unsigned idle = 1; !atomic_load(&a.done) || rd(a.t->watch.asked); idle++) {
        lock(&lock_a);
        unlock(&lock_a);
        /* The word whole, as the allocation fast path reads it. */
        if (rd(a.t->watch.any) && atomic_exchange(&a.t->watch.asked, 0))
            met++;
        else if (idle % 1024 == 0)
            sched_yield();
    }
    pthread_join(th, NULL);
    assert_int_equal(met, a.asks);
    assert_int_equal(rd(a.t->watch.any), 0);
}

/* ------------------------------------------------------------------------ */
/* Many threads                                                              */
/* ------------------------------------------------------------------------ */

#define NCLASSES 12
static struct rcl_lock_class stress_classes[NCLASSES];

struct stress_arg { unsigned seed; int iters; };

/* nt threads (at most 8) running fn, the i-th with seed + i, all joined. */
static void run_threads(int nt, void *(*fn)(void *), unsigned seed, int iters)
{
    pthread_t th[8];
    struct stress_arg args[8];

    assert_true(nt <= 8);
    for (int i = 0; i < nt; i++) {
        args[i] = (struct stress_arg){ seed + (unsigned)i, iters };
        assert_int_equal(pthread_create(&th[i], NULL, fn, &args[i]), 0);
    }
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
}

/* Random subsets of the classes, always taken in index order, released in
 * random order: plenty of new edges from many threads at once, no cycle. */
static void *stress_thread(void *arg)
{
    struct stress_arg *a = arg;
    unsigned seed = a->seed;
    for (int i = 0; i < a->iters; i++) {
        unsigned mask = (unsigned)rand_r(&seed) & ((1u << NCLASSES) - 1);
        for (int k = 0; k < NCLASSES; k++)
            if (mask & (1u << k))
                rcl_lock_acquire(&stress_classes[k]);
        if (i % 7 == 0)
            rcl_might_alloc(RCL_NOFS);
        while (mask) {
            int k = rand_r(&seed) % NCLASSES;
            if (mask & (1u << k)) {
                rcl_lock_release(&stress_classes[k]);
                mask &= ~(1u << k);
            }
        }
    }
    return NULL;
}

TEST_WITH(many_threads_in_one_order_are_quiet, ld_setup, ld_teardown)
{
    static const char *names[NCLASSES] = { "s0", "s1", "s2", "s3", "s4", "s5",
                                           "s6", "s7", "s8", "s9", "s10", "s11" };
    for (int k = 0; k < NCLASSES; k++)
        stress_classes[k] = (struct rcl_lock_class){ .name = names[k] };
    run_threads(8, stress_thread, 1234u, test_scale(20000));
    if (rcl_lockdep_reports())
        print_reports();
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* Locks of one kind held by address, as a file system holds inode locks:
 * threads take a mutex of each of three classes in class order (trylocks,
 * which a report stops), picked at random among several of each, and
 * unlock them in random order. Every
 * unlock finds its own mutex among same-class entries of other threads'
 * stacks and its own: none is reported, and each mutex still excludes
 * (the count it guards is exact). */
#define MUTEX_LEVELS 3
#define MUTEXES_PER_LEVEL 4
static RCL_LOCK_CLASS(level_dir, "dir");
static RCL_LOCK_CLASS(level_inode, "inode");
static RCL_LOCK_CLASS(level_page, "page");
static struct rcl_lock_class *const level_class[MUTEX_LEVELS] = { &level_dir, &level_inode,
                                                                   &level_page };
static rcl_mutex_t level_mutex[MUTEX_LEVELS][MUTEXES_PER_LEVEL];
static long level_count[MUTEX_LEVELS][MUTEXES_PER_LEVEL];

/* A report means an unlock was refused and its mutex stays locked: the
 * threads stop rather than wait for it for ever. */
static bool lock_unless_reported(rcl_mutex_t *m)
{
    while (rcl_mutex_trylock(m) == EBUSY) {
        if (rcl_lockdep_reports())
            return false;
        sched_yield();
    }
    return true;
}

static void *takes_mutexes_in_level_order(void *arg)
{
    struct stress_arg *a = arg;
    unsigned seed = a->seed;
    for (int i = 0; i < a->iters; i++) {
        int pick[MUTEX_LEVELS];
        unsigned left = 0;
        for (int l = 0; l < MUTEX_LEVELS; l++) {
            pick[l] = rand_r(&seed) % MUTEXES_PER_LEVEL;
            if (!lock_unless_reported(&level_mutex[l][pick[l]]))
                break;
            level_count[l][pick[l]]++;
            left |= 1u << l;
        }
        if (left != (1u << MUTEX_LEVELS) - 1)
            i = a->iters;   /* stopped: release what is held, and end */
        while (left) {
            int l = rand_r(&seed) % MUTEX_LEVELS;
            if (left & (1u << l)) {
                rcl_mutex_unlock(&level_mutex[l][pick[l]]);
                left &= ~(1u << l);
            }
        }
    }
    return NULL;
}

TEST_WITH(many_threads_unlock_their_own_mutexes_of_shared_classes_quietly, ld_setup, ld_teardown)
{
    enum { NT = 4 };
    int iters = test_scale(20000);

    for (int l = 0; l < MUTEX_LEVELS; l++)
        for (int k = 0; k < MUTEXES_PER_LEVEL; k++) {
            assert_int_equal(rcl_mutex_init(&level_mutex[l][k], level_class[l]), 0);
            level_count[l][k] = 0;
        }
    run_threads(NT, takes_mutexes_in_level_order, 99u, iters);
    if (rcl_lockdep_reports())
        print_reports();
    assert_int_equal(rcl_lockdep_reports(), 0);
    for (int l = 0; l < MUTEX_LEVELS; l++) {
        long total = 0;
        for (int k = 0; k < MUTEXES_PER_LEVEL; k++) {
            assert_int_equal(rcl_mutex_trylock(&level_mutex[l][k]), 0);   /* none left locked */
            rcl_mutex_unlock(&level_mutex[l][k]);
            total += level_count[l][k];
            assert_int_equal(rcl_mutex_destroy(&level_mutex[l][k]), 0);
        }
        assert_int_equal(total, (long)NT * iters);
    }
}

TEST_WITH(many_threads_find_the_one_inversion, ld_setup, ld_teardown)
{
    many_threads_in_one_order_are_quiet(state);
    rcl_lock_acquire(&stress_classes[9]);
    rcl_lock_acquire(&stress_classes[2]);
    rcl_lock_release(&stress_classes[2]);
    rcl_lock_release(&stress_classes[9]);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

/* ------------------------------------------------------------------------ */
/* Threads that come and go                                                  */
/* ------------------------------------------------------------------------ */

/* Threads whose objects come and go at once, each taking its objects'
 * classes under a shared one: each unregister reads every thread's stack
 * while the others take and release locks, and no class is another's. */
static RCL_LOCK_CLASS(shared_lock, "shared_lock");

static void *object_classes_come_and_go(void *arg)
{
    struct stress_arg *a = arg;

    for (int i = 0; i < a->iters; i++) {
        struct rcl_lock_class c = { .name = "object" };
        lock(&shared_lock); lock(&c); unlock(&c); unlock(&shared_lock);
        lock(&c); unlock(&c);
        assert_int_equal(rcl_lock_class_unregister(&c), 0);
    }
    return NULL;
}

TEST_WITH(threads_unregistering_their_own_classes_at_once_are_quiet, ld_setup, ld_teardown)
{
    unsigned nodes, edges;

    run_threads(4, object_classes_come_and_go, 1u, test_scale(5000));
    rcl__lockdep_graph_size(&nodes, &edges);
    assert_true(nodes < 64);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

static void *takes_a_and_exits(void *arg)
{
    (void)arg;
    lock(&lock_a);
    return NULL;    /* exits holding lock_a */
}

static void *takes_b(void *arg)
{
    (void)arg;
    lock(&lock_b); unlock(&lock_b);
    return NULL;
}

/* lockdep keeps held locks per task: a thread that exits holding a lock
 * takes its stack with it, and a thread started next starts with nothing
 * held (had it inherited lock_a, it would have learned lock_a -> lock_b,
 * and the order below would be reported). The exit itself is reported. */
TEST_WITH(a_new_thread_holds_nothing_an_exited_one_held, ld_setup, ld_teardown)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, takes_a_and_exits, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_int_equal(pthread_create(&th, NULL, takes_b, NULL), 0);
    pthread_join(th, NULL);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("exited holding 1 annotated lock,");
}

static rcl_mutex_t left_locked;     /* by a thread that exits: for good */

static void *takes_a_and_a_mutex_and_exits(void *arg)
{
    (void)arg;
    lock(&lock_a);
    rcl_mutex_lock(&left_locked);
    return NULL;
}

/* lockdep's debug_check_no_locks_held() at a task's exit: no thread will
 * release what an exited thread held, so a thread that waits for one of
 * its locks waits for ever. Reported once, each lock named. */
TEST_WITH(a_thread_that_exits_holding_locks_is_reported_with_each_named, ld_setup,
          ld_teardown)
{
    char mutex_line[128];
    pthread_t th;

    assert_int_equal(rcl_mutex_init(&left_locked, &lock_b), 0);
    assert_int_equal(pthread_create(&th, NULL, takes_a_and_a_mutex_and_exits, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("exited holding 2 annotated locks, taken in this order:");
    assert_reports_have("#0 lock_a\n");
    snprintf(mutex_line, sizeof(mutex_line), "#1 mutex %p of class lock_b\n",
             (void *)&left_locked);
    assert_reports_have(mutex_line);
}

static void *takes_deep_and_exits(void *arg)
{
    (void)arg;
    for (int i = 0; i < DEEP; i++) {
        snprintf(deep_names[i], sizeof(deep_names[i]), "deep%d", i);
        deep_classes[i].name = deep_names[i];
        lock(&deep_classes[i]);
    }
    return NULL;    /* exits holding all of them */
}

/* A thread that exits deeper than its stack records is reported once
 * too, every lock counted, the ones above the depth as such; its stack
 * goes with it, so that another thread takes those classes quietly and
 * they unregister after. */
TEST_WITH(a_thread_that_exits_past_the_recorded_depth_is_reported_with_each_counted,
          ld_setup, ld_teardown)
{
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, takes_deep_and_exits, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("exited holding 33 annotated locks, taken in this order:");
    assert_reports_have("#31 deep31\n");
    assert_reports_have("and 1 more above the 32 a thread's stack records");
    lock(&deep_classes[0]); lock(&deep_classes[DEEP - 1]);
    unlock(&deep_classes[DEEP - 1]); unlock(&deep_classes[0]);
    assert_int_equal(rcl_lockdep_reports(), 1);
    for (int i = 0; i < DEEP; i++)
        assert_int_equal(rcl_lock_class_unregister(&deep_classes[i]), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

static pthread_key_t unlock_key;

static void unlocks_in_its_destructor(void *m)
{
    rcl_mutex_unlock(m);
}

static void *locks_for_its_destructor(void *m)
{
    rcl_mutex_lock(m);
    assert_int_equal(pthread_setspecific(unlock_key, m), 0);
    return NULL;
}

/* A thread may let a lock go in the destructor of its thread-specific
 * data, which may run after the checker's own: that lock is not one held
 * at the exit, and its unlock is not of a lock the thread does not hold
 * (which would have left the mutex locked for good). */
TEST_WITH(a_lock_a_later_destructor_releases_is_not_held_at_exit, ld_setup, ld_teardown)
{
    rcl_mutex_t m;
    pthread_t th;

    assert_int_equal(rcl_mutex_init(&m, &lock_c), 0);
    assert_int_equal(pthread_key_create(&unlock_key, unlocks_in_its_destructor), 0);
    assert_int_equal(pthread_create(&th, NULL, locks_for_its_destructor, &m), 0);
    pthread_join(th, NULL);
    assert_int_equal(pthread_key_delete(unlock_key), 0);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(rcl_mutex_trylock(&m), 0);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

/* A worker's thread is not joined: this key's destructor, made after the
 * checker's and so called after it in each round, tells when the round of
 * the thread's destructors the checker reports in has run: the one before
 * the last, in which ThreadSanitizer ends the thread's state. */
static pthread_key_t report_round_key;
static sem_t report_round_ran;

static void posts_at_the_report_round(void *round)
{
    if ((uintptr_t)round + 1 < PTHREAD_DESTRUCTOR_ITERATIONS)
        pthread_setspecific(report_round_key, (void *)((uintptr_t)round + 1));
    else
        sem_post(&report_round_ran);
}

static void ends_its_worker(struct rcl_work *w)
{
    (void)w;
    pthread_setspecific(report_round_key, (void *)1);
    pthread_exit(NULL);
}

/* The queue's cleanup handler lets go of the queue's pseudo-lock when a
 * work item ends its thread, before any destructor runs: the thread does
 * not exit holding it. */
TEST_WITH(a_worker_ended_by_its_work_item_does_not_exit_holding_the_queue, ld_setup,
          ld_teardown)
{
    struct rcl_work w;

    assert_int_equal(sem_init(&report_round_ran, 0, 0), 0);
    assert_int_equal(pthread_key_create(&report_round_key, posts_at_the_report_round), 0);
    struct rcl_workqueue *wq = rcl_workqueue_create("exits", 1, 0);
    assert_non_null(wq);
    rcl_work_init(&w, ends_its_worker);
    assert_int_equal(rcl_queue_work(wq, &w), 0);
    assert_int_equal(sem_wait(&report_round_ran), 0);
    rcl_workqueue_destroy(wq);
    assert_int_equal(pthread_key_delete(report_round_key), 0);
    assert_int_equal(sem_destroy(&report_round_ran), 0);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_reports_seen_matching("ended its thread"), 1);
}

/* The kernel's mutex_destroy() warns of a locked mutex; POSIX leaves the
 * destroy undefined. Refused and reported, the mutex as it was: its holder
 * unlocks it, and the destroy after that goes through. */
TEST_WITH(destroying_a_mutex_this_thread_holds_is_refused_and_reported, ld_setup,
          ld_teardown)
{
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &lock_a), 0);
    rcl_mutex_lock(&m);
    assert_int_equal(rcl_mutex_destroy(&m), -EBUSY);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("of class lock_a, which this thread holds; refused (-EBUSY)");
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

/* A second destroy is refused by the C library (glibc marks the mutex
 * destroyed); the refusal is the program's bug, reported as the second
 * destroy of a pool, a queue or an LRU is. It went by unseen. */
TEST_WITH(destroying_a_mutex_destroyed_already_is_refused_and_reported, ld_setup, ld_teardown)
{
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &lock_a), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
    assert_int_equal(test_report_count(), 0);
    assert_int_equal(rcl_mutex_destroy(&m), -EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_mutex_destroy(");
    assert_last_report_has("not a live mutex (destroyed already?); nothing done");
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* A lock of a destroyed mutex is reported, and the checker does not
 * count it held: its class can be unregistered, and a thread's exit does
 * not name it. (The checker took it as held; glibc refuses the lock
 * itself with EINVAL, which went unseen.) */
TEST_WITH(locking_a_destroyed_mutex_is_reported_and_not_held, ld_setup, ld_teardown)
{
    struct rcl_lock_class c = { .name = "destroyed" };
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &c), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
    rcl_mutex_lock(&m);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_mutex_lock(");
    assert_last_report_has("a destroyed mutex; nothing locked");
    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* An unlock of one is reported as what it is, not as a release of a
 * mutex the thread does not hold, and leaves the checker's stack alone:
 * a lock taken after it is still released in order. (A lock and an
 * unlock of it passed in silence, the checker's stack pushed and popped.) */
TEST_WITH(unlocking_a_destroyed_mutex_is_reported_as_destroyed, ld_setup, ld_teardown)
{
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &lock_a), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
    rcl_lock_acquire(&lock_b);
    rcl_mutex_lock(&m);
    rcl_mutex_unlock(&m);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("rcl_mutex_unlock(");
    assert_last_report_has("a destroyed mutex; nothing done");
    rcl_lock_release(&lock_b);
    assert_int_equal(test_report_count(), 2);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* A nested lock of one is reported as that call, at a subclass, at 0 and
 * at one out of range alike, and the checker counts none of them held.
 * (The subclass was counted held, and an out-of-range one was reported as
 * such and the destroyed mutex handed to the C library.) */
TEST_WITH(locking_a_destroyed_mutex_nested_is_reported_and_not_held, ld_setup, ld_teardown)
{
    struct rcl_lock_class c = { .name = "nested" };
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, &c), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
    rcl_mutex_lock_nested(&m, RCL_SINGLE_DEPTH_NESTING);
    rcl_mutex_lock_nested(&m, 0);
    rcl_mutex_lock_nested(&m, RCL_LOCK_SUBCLASSES);
    assert_int_equal(test_report_count(), 3);
    assert_last_report_has("rcl_mutex_lock_nested(");
    assert_last_report_has("a destroyed mutex; nothing locked");
    assert_false(test_reports_contain("rcl_mutex_lock("));
    assert_false(test_reports_contain("out of range"));
    assert_int_equal(rcl_lock_class_unregister(&c), 0);
    assert_int_equal(test_report_count(), 3);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* A mutex of no class is the checker's to tell destroyed too. */
TEST_WITH(locking_a_destroyed_mutex_of_no_class_is_reported, ld_setup, ld_teardown)
{
    rcl_mutex_t m;

    assert_int_equal(rcl_mutex_init(&m, NULL), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
    rcl_mutex_lock(&m);
    rcl_mutex_unlock(&m);
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("rcl_mutex_lock(");
    assert_last_report_has("rcl_mutex_unlock(");
    assert_int_equal(rcl_lockdep_reports(), 0);
}

TEST_WITH(destroying_a_mutex_another_thread_holds_is_refused_and_reported, ld_setup,
          ld_teardown)
{
    rcl_mutex_t m;
    struct holder h = { &m, { { 0 } }, { { 0 } } };
    pthread_t th;

    assert_int_equal(rcl_mutex_init(&m, &lock_b), 0);
    assert_int_equal(pthread_barrier_init(&h.held, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&h.done, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, holds_until_done, &h), 0);
    pthread_barrier_wait(&h.held);
    assert_int_equal(rcl_mutex_destroy(&m), -EBUSY);
    assert_int_equal(rcl_lockdep_reports(), 1);
    assert_reports_have("of class lock_b, which a thread holds; refused (-EBUSY)");
    pthread_barrier_wait(&h.done);
    pthread_join(th, NULL);
    assert_int_equal(pthread_barrier_destroy(&h.held), 0);
    assert_int_equal(pthread_barrier_destroy(&h.done), 0);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
    assert_int_equal(rcl_lockdep_reports(), 1);
}

static long vm_size_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmSize: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static void *takes_a_then_b(void *arg)
{
    (void)arg;
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    return NULL;
}

/* A thread's held-lock stack is mapped at its first event and unmapped at
 * its exit: a daemon that starts a thread per request must not grow by a
 * stack per thread it ever ran (256 threads leaking one would grow the
 * process by 1 MiB). */
TEST_WITH(an_exited_threads_stack_is_given_back, ld_setup, ld_teardown)
{
#ifdef __clang__
    if (test_under_sanitizer("tsan")) {
        print_message("skipped under clang's TSan: its runtime keeps about 60 KiB of every "
                      "thread that ever ran (256 bare threads grow a program by 15 MiB); the "
                      "other runs hold this test\n");
        skip();
    }
#endif
    pthread_t th;
    for (int i = 0; i < 4; i++) {    /* the C library's thread stack and arena */
        assert_int_equal(pthread_create(&th, NULL, takes_a_then_b, NULL), 0);
        pthread_join(th, NULL);
    }
    long before = vm_size_kib();
    for (int i = 0; i < 256; i++) {
        assert_int_equal(pthread_create(&th, NULL, takes_a_then_b, NULL), 0);
        pthread_join(th, NULL);
    }
    long after = vm_size_kib();
    assert_true(before > 0 && after > 0);
    if (after - before > 256)
        fail_msg("256 threads grew the process by %ld KiB", after - before);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

/* Last in the file: an rcl_init() with the checker off ends the report of
 * releases without an acquire for the rest of the process (src/lockdep.c,
 * ld_blind), which the tests above assert. */
TEST_WITH(mode_off_reports_nothing, ld_setup, ld_teardown)
{
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_OFF, 0, 64 * MiB), 0);
    lock(&lock_a); lock(&lock_b); unlock(&lock_b); unlock(&lock_a);
    lock(&lock_b); lock(&lock_a); unlock(&lock_a); unlock(&lock_b);
    unsigned a = rcl_nofs_save(), b = rcl_noio_save();
    rcl_nofs_restore(a);
    rcl_noio_restore(b);
    assert_int_equal(rcl_lockdep_reports(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* With the checker off a locked mutex's destroy is refused and reported
 * all the same: no checker is needed to tell it, and the result must not
 * be the C library's. The checker counts no report of its own. */
TEST_WITH(destroying_a_locked_mutex_with_the_checker_off_is_refused_and_reported, ld_setup,
          ld_teardown)
{
    rcl_mutex_t m;

    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_OFF, 0, 64 * MiB), 0);
    assert_int_equal(rcl_mutex_init(&m, &lock_a), 0);
    rcl_mutex_lock(&m);
    assert_int_equal(rcl_mutex_destroy(&m), -EBUSY);
    assert_int_equal(test_report_count(), 1);
    assert_reports_have("rcl_mutex_destroy: thread");
    assert_int_equal(rcl_lockdep_reports(), 0);
    rcl_mutex_unlock(&m);
    assert_int_equal(rcl_mutex_destroy(&m), 0);
}

/* With the checker off an annotation does not look at its class, so a
 * NULL one passes unseen; a NULL mutex is reported all the same, as the
 * mutex calls need one whatever the checker does. */
TEST_WITH(a_null_class_with_the_checker_off_passes_unseen, ld_setup, ld_teardown)
{
    rcl_shutdown();
    assert_int_equal(ld_init_mode(RCL_LOCKDEP_OFF, 0, 64 * MiB), 0);
    rcl_lock_acquire(NULL);
    rcl_lock_acquire_try(NULL);
    rcl_lock_release(NULL);
    rcl_lock_release(NULL);
    assert_int_equal(test_report_count(), 0);
    rcl_mutex_lock(NULL);
    rcl_mutex_unlock(NULL);
    assert_int_equal(test_report_count(), 2);
    assert_int_equal(rcl_lockdep_reports(), 0);
}

TEST_MAIN();
