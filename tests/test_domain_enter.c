/* SPDX-License-Identifier: MIT */
/*
 * test_domain_enter.c - entering, leaving and destroying reclaim domains
 * (the rules a domain imposes on reclaim: test_domain.c).
 */
#include "helpers.h"

#include <malloc.h>
#include <stdatomic.h>

#include "domain.h"

/* ------------------------------------------------------------------------ */
/* Enter and exit                                                            */
/* ------------------------------------------------------------------------ */

/* Domains nest like scopes: exits in reverse order restore each level. */
TEST_WITH(enter_and_exit_nest, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("a", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("b", 1, NULL, NULL);
    struct rcl_domain *list[4];

    unsigned ta = rcl_domain_enter(a);
    unsigned tb = rcl_domain_enter(b);
    unsigned ta2 = rcl_domain_enter(a);       /* re-entering is allowed */
    assert_true(ta && tb && ta2);
    assert_true(ta != tb && tb != ta2 && ta != ta2);
    assert_int_equal(entered(list, 4), 3);
    assert_ptr_equal(list[0], a);
    assert_ptr_equal(list[1], b);
    assert_ptr_equal(list[2], a);             /* innermost last */

    rcl_domain_exit(ta2);
    assert_int_equal(entered(list, 4), 2);
    assert_ptr_equal(list[1], b);
    rcl_domain_exit(tb);
    rcl_domain_exit(ta);
    assert_int_equal(entered(list, 4), 0);
    assert_int_equal(test_report_count(), 0);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
    assert_int_equal(test_report_count(), 0);
}

/* An exit out of order is reported, not silently accepted, and changes
 * nothing: the inner domain still holds until its own exit. */
TEST_WITH(exit_out_of_order_is_reported_and_ignored, domain_setup, domain_teardown)
{
    struct rcl_domain *a = rcl_domain_create("outer", 0, NULL, NULL);
    struct rcl_domain *b = rcl_domain_create("inner", 1, NULL, NULL);
    struct rcl_domain *list[4];

    unsigned ta = rcl_domain_enter(a);
    unsigned tb = rcl_domain_enter(b);
    rcl_domain_exit(ta);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("out of order");
    assert_int_equal(entered(list, 4), 2);
    assert_ptr_equal(list[0], a);
    assert_ptr_equal(list[1], b);

    rcl_domain_exit(tb);
    rcl_domain_exit(ta);
    assert_int_equal(entered(list, 4), 0);
    assert_int_equal(test_report_count(), 1);
    rcl_domain_destroy(a);
    rcl_domain_destroy(b);
}

/* A token that was never handed out, one already used, or one from another
 * thread: reported, nothing changes. */
static unsigned foreign_token;
static struct rcl_domain *foreign_domain;
static void *enter_in_thread(void *arg)
{
    (void)arg;
    foreign_token = rcl_domain_enter(foreign_domain);
    rcl_domain_exit(foreign_token);
    return NULL;
}

TEST_WITH(exit_with_bogus_token_is_reported, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("d", 0, NULL, NULL);
    struct rcl_domain *list[2];
    unsigned tok = rcl_domain_enter(d);

    rcl_domain_exit(tok ^ 0x40000000u);          /* never handed out */
    assert_int_equal(test_report_count(), 1);

    foreign_domain = d;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, enter_in_thread, NULL), 0);
    pthread_join(th, NULL);
    rcl_domain_exit(foreign_token);              /* another thread's */
    assert_int_equal(test_report_count(), 2);
    assert_int_equal(entered(list, 2), 1);

    rcl_domain_exit(tok);
    rcl_domain_exit(tok);                        /* already used */
    assert_int_equal(test_report_count(), 3);
    assert_int_equal(entered(list, 2), 0);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 3);
}

/* Entering NULL is a no-op that returns 0, and exiting 0 is one too, so
 * code that may or may not have a domain needs no branch. */
TEST_WITH(enter_null_and_exit_zero_do_nothing, domain_setup, domain_teardown)
{
    assert_int_equal(rcl_domain_enter(NULL), 0);
    rcl_domain_exit(0);
    assert_int_equal(entered(NULL, 0), 0);
    assert_int_equal(test_report_count(), 0);
}

/* A thread may be inside RCL_MAX_DOMAINS (16) domains, and entering them
 * allocates nothing: the stack is per thread and fixed (a path short of
 * memory must be able to say which file system it protects). */
TEST_WITH(sixteen_nested_domains_without_allocating, domain_setup, domain_teardown)
{
    struct rcl_domain *d[RCL_MAX_DOMAINS], *list[RCL_MAX_DOMAINS];
    unsigned tok[RCL_MAX_DOMAINS];
    char name[16];
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++) {
        snprintf(name, sizeof(name), "fs%u", i);
        d[i] = rcl_domain_create(name, i, NULL, NULL);
        assert_non_null(d[i]);
    }
    /* The thread's first touch of the library's thread-local block may
     * allocate it (dynamic TLS); that is the thread's cost, not enter's. */
    rcl_domain_exit(rcl_domain_enter(d[0]));

    struct rcl_stats before, after;
    rcl_stats_get(&before);
    struct mallinfo2 mb = mallinfo2();
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        tok[i] = rcl_domain_enter(d[i]);
    struct mallinfo2 ma = mallinfo2();
    rcl_stats_get(&after);

    assert_int_equal(ma.uordblks, mb.uordblks);      /* libc heap: not a byte */
    assert_int_equal(after.allocations, before.allocations);
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        assert_int_not_equal(tok[i], 0);
    assert_int_equal(entered(list, RCL_MAX_DOMAINS), RCL_MAX_DOMAINS);
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        assert_ptr_equal(list[i], d[i]);
    assert_int_equal(test_report_count(), 0);

    for (unsigned i = RCL_MAX_DOMAINS; i-- > 0;)
        rcl_domain_exit(tok[i]);
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        rcl_domain_destroy(d[i]);
    assert_int_equal(test_report_count(), 0);
}

TEST_WITH(seventeenth_domain_is_refused, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("d", 0, NULL, NULL);
    unsigned tok[RCL_MAX_DOMAINS];
    for (unsigned i = 0; i < RCL_MAX_DOMAINS; i++)
        tok[i] = rcl_domain_enter(d);
    assert_int_equal(test_report_count(), 0);

    assert_int_equal(rcl_domain_enter(d), 0);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("RCL_MAX_DOMAINS");
    rcl_domain_exit(0);                          /* the refused one: no-op */
    assert_int_equal(entered(NULL, 0), RCL_MAX_DOMAINS);

    for (unsigned i = RCL_MAX_DOMAINS; i-- > 0;)
        rcl_domain_exit(tok[i]);
    assert_int_equal(entered(NULL, 0), 0);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
}

/* ------------------------------------------------------------------------ */
/* Destroy                                                                   */
/* ------------------------------------------------------------------------ */

/* A domain a thread is still inside cannot go away under it. */
TEST_WITH(destroy_while_entered_is_refused, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("busy", 0, NULL, NULL);
    unsigned tok = rcl_domain_enter(d);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("busy");
    assert_string_equal(rcl_domain_name(d), "busy");   /* still valid */

    rcl_domain_exit(tok);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
}

/* Entered in another thread counts as well: the count is across threads. */
struct holder {
    struct rcl_domain *d;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int stage;
};

static void stage_set(struct holder *h, int stage)
{
    pthread_mutex_lock(&h->m);
    h->stage = stage;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->m);
}

static void stage_wait(struct holder *h, int stage)
{
    pthread_mutex_lock(&h->m);
    while (h->stage != stage)
        pthread_cond_wait(&h->cv, &h->m);
    pthread_mutex_unlock(&h->m);
}

/* A thread running fn(h) on a new domain called `name`, once fn has
 * entered it (stage 1). */
static void holder_start(struct holder *h, const char *name, void *(*fn)(void *),
                         pthread_t *th)
{
    *h = (struct holder){ .d = rcl_domain_create(name, 0, NULL, NULL),
                          .m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
    assert_int_equal(pthread_create(th, NULL, fn, h), 0);
    stage_wait(h, 1);
}

static void *hold_domain(void *arg)
{
    struct holder *h = arg;
    unsigned tok = rcl_domain_enter(h->d);
    stage_set(h, 1);
    stage_wait(h, 2);
    rcl_domain_exit(tok);
    return NULL;
}

TEST_WITH(destroy_while_entered_in_other_thread_is_refused, domain_setup, domain_teardown)
{
    struct holder h;
    pthread_t th;
    holder_start(&h, "held", hold_domain, &th);

    rcl_domain_destroy(h.d);
    assert_int_equal(test_report_count(), 1);

    stage_set(&h, 2);
    pthread_join(th, NULL);
    rcl_domain_destroy(h.d);
    assert_int_equal(test_report_count(), 1);
}

/* A thread that ends inside a domain leaves it as it ends, as a task's
 * scopes end with it in the kernel: a returned thread that never called
 * its exit does not keep the domain from being destroyed. */
static void *enter_and_return(void *arg)
{
    return (void *)(uintptr_t)rcl_domain_enter(arg);
}

TEST_WITH(a_thread_that_returns_inside_a_domain_leaves_it, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("left", 0, NULL, NULL);
    pthread_t th;
    void *tok;
    assert_int_equal(pthread_create(&th, NULL, enter_and_return, d), 0);
    assert_int_equal(pthread_join(th, &tok), 0);
    assert_true(tok != NULL);                       /* it was inside */

    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 0);
    assert_null(rcl_domain_name(d));                /* destroyed */
}

/* The same for an enter made by one of the program's thread-specific data
 * destructors as the thread ends, after the library's own destructor has
 * run: it leaves the domain too. (The thread had been inside a domain
 * before, so the library's destructor had run already and was not run
 * again: the destructor's enter stayed, and the domain could never be
 * destroyed.) */
static pthread_key_t late_key;
static struct rcl_domain *late_domain;

static void enter_late(void *value)
{
    /* First round: ask for another, so that the enter comes after the
     * library's destructor whatever the keys' order. */
    if (value == (void *)1) {
        (void)pthread_setspecific(late_key, (void *)2);
        return;
    }
    (void)rcl_domain_enter(late_domain);
}

static void *enter_exit_and_end(void *arg)
{
    rcl_domain_exit(rcl_domain_enter(arg));
    (void)pthread_setspecific(late_key, (void *)1);
    return NULL;
}

TEST_WITH(a_destructor_that_ends_its_thread_inside_a_domain_leaves_it, domain_setup,
          domain_teardown)
{
    pthread_t th;

    late_domain = rcl_domain_create("late", 0, NULL, NULL);
    assert_int_equal(pthread_key_create(&late_key, enter_late), 0);
    assert_int_equal(pthread_create(&th, NULL, enter_exit_and_end, late_domain), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    pthread_key_delete(late_key);

    rcl_domain_destroy(late_domain);
    assert_int_equal(test_report_count(), 0);
    assert_null(rcl_domain_name(late_domain));      /* destroyed */
}

/* The same for a thread cancelled between its enter and its exit: a daemon
 * cancels a worker wherever it waits. */
static void *enter_and_wait(void *arg)
{
    struct holder *h = arg;
    unsigned tok = rcl_domain_enter(h->d);
    stage_set(h, 1);
    for (;;) {
        test_testcancel();                          /* where it is cancelled */
        sched_yield();
    }
    rcl_domain_exit(tok);
    return NULL;
}

TEST_WITH(a_thread_cancelled_inside_a_domain_leaves_it, domain_setup, domain_teardown)
{
    struct holder h;
    pthread_t th;
    void *ret;
    holder_start(&h, "cancelled", enter_and_wait, &th);
    assert_int_equal(pthread_cancel(th), 0);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_ptr_equal(ret, PTHREAD_CANCELED);

    rcl_domain_destroy(h.d);
    assert_int_equal(test_report_count(), 0);
    assert_null(rcl_domain_name(h.d));
}

/*
 * A destroy racing enters of the same domain on another thread: each
 * enter either comes before the destroy, which is then refused, or after
 * it, and is refused itself - never a thread inside a domain that is
 * gone. The worker counts the enters that found themselves inside the
 * domain a destroy had just returned from (`dead`, set once the domain
 * reads as destroyed).
 */
struct racer {
    struct rcl_domain *_Atomic d, *_Atomic dead;
    atomic_int stop, bad, inside;
};

static void *enter_exit_loop(void *arg)
{
    struct racer *r = arg;
    while (!atomic_load(&r->stop)) {
        struct rcl_domain *d = atomic_load(&r->d);
        unsigned tok = rcl_domain_enter(d);
        if (!tok)
            continue;
        atomic_fetch_add(&r->inside, 1);
        if (atomic_load(&r->dead) == d)
            atomic_fetch_add(&r->bad, 1);
        rcl_domain_exit(tok);
    }
    return NULL;
}

TEST_WITH(destroy_racing_enters_leaves_no_thread_in_a_dead_domain, domain_setup, domain_teardown)
{
    struct racer r = { .d = NULL };
    pthread_t th;
    int rounds = 0;

    atomic_store(&r.d, rcl_domain_create("raced", 0, NULL, NULL));
    assert_int_equal(pthread_create(&th, NULL, enter_exit_loop, &r), 0);
    for (int i = 0; i < 300; i++) {
        struct rcl_domain *d = atomic_load(&r.d);
        /* Let the worker in before each destroy. */
        int was = atomic_load(&r.inside);
        while (atomic_load(&r.inside) == was)
            sched_yield();
        while (rcl_domain_name(d)) {
            rcl_domain_destroy(d);
            rounds++;
        }
        atomic_store(&r.dead, d);
        /* The worker's next enters of d are refused: a new domain for it
         * (a slot a destroy freed is used again only 64 destroys later). */
        atomic_store(&r.d, rcl_domain_create("raced", 0, NULL, NULL));
    }
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    rcl_domain_destroy(atomic_load(&r.d));
    assert_int_equal(atomic_load(&r.bad), 0);
    assert_true(rounds >= 300);
    test_reports_reset();       /* refused destroys and enters, as many as the race made */
}

/*
 * A destroy refused for a domain in use decides with the domain marked,
 * so that an enter racing it is refused (destroy_racing_enters_...); to
 * another thread reading its name and depth meanwhile it is what it is
 * throughout, a live domain. The check copies the name for its report,
 * which a long name makes long: the reader meets it there. The destroys
 * go on until the reader has read through a good many of them.
 */
struct name_reader {
    struct rcl_domain *d;
    pthread_barrier_t start;
    atomic_int stop;
    atomic_ulong reads, dead;
};

static void *read_name_and_depth(void *arg)
{
    struct name_reader *r = arg;

    pthread_barrier_wait(&r->start);
    while (!atomic_load(&r->stop)) {
        if (!rcl_domain_name(r->d) || rcl_domain_depth(r->d) != 3)
            atomic_fetch_add(&r->dead, 1);
        atomic_fetch_add(&r->reads, 1);
    }
    return NULL;
}

TEST_WITH(a_refused_destroy_leaves_the_domain_live_to_readers_meanwhile, domain_setup,
          domain_teardown)
{
    enum { LONG_NAME = 1 << 22, DESTROYS = 64, READS = 100000 };
    struct name_reader r = { .d = NULL };
    char *name = malloc(LONG_NAME + 1);
    pthread_t th;

    assert_non_null(name);
    memset(name, 'n', LONG_NAME);
    name[LONG_NAME] = '\0';
    r.d = rcl_domain_create(name, 3, NULL, NULL);
    free(name);
    assert_non_null(r.d);
    unsigned tok = rcl_domain_enter(r.d);
    assert_int_equal(pthread_barrier_init(&r.start, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, read_name_and_depth, &r), 0);
    pthread_barrier_wait(&r.start);
    for (unsigned i = 0; i < DESTROYS || atomic_load(&r.reads) < READS; i++) {
        rcl_domain_destroy(r.d);
        assert_int_equal(test_reports_take(), 1);
    }
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.start);

    assert_int_equal(atomic_load(&r.dead), 0);
    rcl_domain_exit(tok);
    rcl_domain_destroy(r.d);
    assert_int_equal(test_report_count(), 0);
}

/* A shrinker names its domain at registration: one that is not a live
 * domain (destroyed, or never one) is refused, reported, and nothing is
 * registered. */
TEST_WITH(register_with_a_domain_that_is_not_live_is_einval, domain_setup, domain_teardown)
{
    static const struct rcl_shrinker_ops ops = { .count = test_cache_count,
                                                 .scan = test_cache_scan };
    struct rcl_domain *d = rcl_domain_create("short-lived", 0, NULL, NULL);
    rcl_domain_destroy(d);
    struct rcl_shrinker_opts o = { .domain = d };
    errno = 0;
    assert_null(rcl_shrinker_register("orphan", &ops, NULL, &o));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("not a live domain");

    int not_a_domain;
    o.domain = (struct rcl_domain *)(void *)&not_a_domain;
    errno = 0;
    assert_null(rcl_shrinker_register("stray", &ops, NULL, &o));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 2);
    test_reports_reset();
}

/* A domain that still owns shrinkers cannot go: their control structures
 * point at it. After unregistering them it can. */
TEST_WITH(destroy_with_shrinkers_is_refused, domain_setup, domain_teardown)
{
    struct rcl_domain *d = rcl_domain_create("owner", 0, NULL, NULL);
    struct test_cache *c = cache_new("owned", d, 0);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("shrinker");
    assert_int_equal(rcl_domain_depth(d), 0);
    assert_string_equal(rcl_domain_name(d), "owner");

    test_cache_free(c);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
}

/* Bad input: NULL and a second destroy are reported, nothing else happens. */
TEST_WITH(destroy_null_or_twice_is_reported, domain_setup, domain_teardown)
{
    rcl_domain_destroy(NULL);
    assert_int_equal(test_report_count(), 1);
    struct rcl_domain *d = rcl_domain_create("once", 0, NULL, NULL);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 1);
    rcl_domain_destroy(d);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("not a live domain");
}

TEST_MAIN();
