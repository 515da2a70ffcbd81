/* SPDX-License-Identifier: MIT */
/*
 * test_nofail_scope.c - NOFAIL inside a scope that narrows or removes its
 * reclaim (reclaim.h, "NOFAIL and scopes").
 *
 * Kernel history: PF_MEMALLOC_NORECLAIM was added in 6.9 and reverted in
 * the 6.12 cycle because __GFP_NOFAIL code deep inside such a scope could
 * then fail ("mm: document __GFP_NOFAIL must be blockable", linux-mm, 2024;
 * "mm: prohibit NULL deference exposed for unsupported non-blockable
 * __GFP_NOFAIL", linux-mm, 2024). libreclaim keeps its NOWAIT and NORECLAIM
 * scopes, so the rule is: a scope never turns NOFAIL into NULL. Each
 * scope {NOWAIT, NORECLAIM, NOIO, NOFS} is tried in each situation
 * {room in the budget, no room but reserve, nothing but background
 * progress}.
 */
#include "helpers.h"

#include <stdatomic.h>
#include <sys/syscall.h>

#define LIMIT (8 * MiB)
#define CHUNK (64 * KiB)

/* ------------------------------------------------------------------------ */
/* The budget, held by a shrinker only the background reclaimer may call     */
/* ------------------------------------------------------------------------ */

/* Holds charged bytes in objects; it needs FS and IO, so a thread in any of
 * the scopes cannot call it, and only the background reclaimer (which
 * reclaims with RCL_DEFAULT) frees them. */
struct hog {
    pthread_mutex_t lock;
    size_t          size[LIMIT / CHUNK + 2];
    unsigned        nobj;
    pthread_t       owner;             /* the test's thread */
    atomic_int      scans_by_owner, scans_by_others;
};
static struct hog hog = { .lock = PTHREAD_MUTEX_INITIALIZER };
static struct rcl_shrinker *hog_shrinker;

static unsigned long hog_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv; (void)sc;
    pthread_mutex_lock(&hog.lock);
    unsigned n = hog.nobj;
    pthread_mutex_unlock(&hog.lock);
    return n ? n : RCL_SHRINK_EMPTY;
}

static unsigned long hog_scan(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    atomic_fetch_add(pthread_equal(pthread_self(), hog.owner) ? &hog.scans_by_owner
                                                               : &hog.scans_by_others, 1);
    unsigned long freed = 0;
    pthread_mutex_lock(&hog.lock);
    while (hog.nobj && freed < sc->nr_to_scan) {
        rcl_uncharge(hog.size[--hog.nobj]);
        freed++;
    }
    pthread_mutex_unlock(&hog.lock);
    return freed;
}

static size_t headroom(void)
{
    rcl_usage_sync();
    return rcl_limit() - rcl_usage();
}

static size_t wmark_min(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    return st.wmark_min;
}

/* Charges the budget down to `left` bytes of headroom, reserve included.
 * MEMALLOC without KSWAPD_RECLAIM: the reserve is open to it and the
 * background reclaimer is not woken by the filling itself. */
static void hog_fill(size_t left)
{
    const rcl_gfp_t gfp = RCL__MEMALLOC | RCL__NOWARN;
    size_t room = headroom();

    pthread_mutex_lock(&hog.lock);
    while (room > left) {
        size_t n = room - left > CHUNK ? CHUNK : room - left;
        assert_int_equal(rcl_charge(n, gfp), 0);
        hog.size[hog.nobj++] = n;
        room -= n;
    }
    pthread_mutex_unlock(&hog.lock);
    assert_int_equal(headroom(), left);
}

static int scope_setup(void **state, int background)
{
    (void)state;
    struct rcl_config cfg = test_config(LIMIT);
    cfg.background = background;
    cfg.stall_ms = 50;                  /* the wait is reported while it lasts */
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    if (rcl_init(&cfg) != 0)
        return -1;
    hog.nobj = 0;
    hog.owner = pthread_self();
    atomic_store(&hog.scans_by_owner, 0);
    atomic_store(&hog.scans_by_others, 0);
    static const struct rcl_shrinker_ops ops = { hog_count, hog_scan };
    struct rcl_shrinker_opts opts = { .batch = 4, .needs = RCL__FS | RCL__IO };
    hog_shrinker = rcl_shrinker_register("hog", &ops, NULL, &opts);
    return hog_shrinker ? 0 : -1;
}

static int setup_quiet(void **state) { return scope_setup(state, 0); }
static int setup_background(void **state) { return scope_setup(state, 1); }

static int scope_teardown(void **state)
{
    rcl_shrinker_unregister(hog_shrinker);
    pthread_mutex_lock(&hog.lock);
    while (hog.nobj)
        rcl_uncharge(hog.size[--hog.nobj]);
    pthread_mutex_unlock(&hog.lock);
    return test_teardown(state);
}

/* ------------------------------------------------------------------------ */
/* The three situations                                                      */
/* ------------------------------------------------------------------------ */

/* Room in the budget: the scope changes nothing, the memory is there. */
static void nofail_with_room(unsigned scope)
{
    unsigned saved = rcl_scope_save(scope);
    errno = 0;
    char *p = rcl_alloc(4096, RCL_DEFAULT | RCL__NOFAIL);
    rcl_scope_restore(saved);
    assert_non_null(p);
    p[0] = p[4095] = 1;
    assert_int_equal(test_report_count(), 0);
    rcl_free(p);
}

/* Down to the min watermark: an ordinary request in the scope has no room
 * (except in NORECLAIM, whose right is the whole reserve), the NOFAIL one
 * takes it from the reserve: all of it in NORECLAIM, half otherwise. */
static void nofail_from_the_reserve(unsigned scope)
{
    size_t min = wmark_min();
    hog_fill(min);
    struct rcl_stats before, after;
    rcl_stats_get(&before);

    unsigned saved = rcl_scope_save(scope);
    void *plain = rcl_alloc(4096, RCL_DEFAULT | RCL__NOWARN);
    char *p = rcl_alloc(4096, RCL_DEFAULT | RCL__NOFAIL);
    rcl_scope_restore(saved);

    if (scope == RCL_SCOPE_NORECLAIM)
        assert_non_null(plain);
    else
        assert_null(plain);
    assert_non_null(p);
    p[0] = p[4095] = 1;
    rcl_stats_get(&after);
    assert_true(after.reserve_allocs > before.reserve_allocs);
    assert_true(headroom() >= min / 2);
    assert_int_equal(atomic_load(&hog.scans_by_others), 0);   /* nobody else helped */
    rcl_free(p);
    rcl_free(plain);
}

/* Nothing left, the reserve included, and nothing this thread may reclaim:
 * the request wakes the background reclaimer and waits for it, however
 * long; it never returns NULL and never reclaims what its scope forbids. */
static void nofail_waits_for_background(unsigned scope)
{
    hog_fill(0);
    unsigned saved = rcl_scope_save(scope);
    char *p = rcl_alloc(4096, RCL_DEFAULT | RCL__NOFAIL);
    rcl_scope_restore(saved);
    assert_non_null(p);
    p[0] = p[4095] = 1;
    assert_true(atomic_load(&hog.scans_by_others) > 0);
    assert_int_equal(atomic_load(&hog.scans_by_owner), 0);
    rcl_free(p);
}

#define MATRIX(scope)                                                               \
    TEST_WITH(test_nofail_##scope##_scope_with_room, setup_quiet, scope_teardown)   \
    { nofail_with_room(RCL_SCOPE_##scope); }                                        \
    TEST_WITH(test_nofail_##scope##_scope_no_room_takes_reserve, setup_quiet,       \
              scope_teardown)                                                       \
    { nofail_from_the_reserve(RCL_SCOPE_##scope); }                                 \
    TEST_WITH(test_nofail_##scope##_scope_waits_for_background, setup_background,   \
              scope_teardown)                                                       \
    { nofail_waits_for_background(RCL_SCOPE_##scope); }
MATRIX(NOWAIT)
MATRIX(NORECLAIM)
MATRIX(NOIO)
MATRIX(NOFS)

/* An I/O-flusher thread is NOIO with the whole reserve. */
TEST_WITH(test_nofail_on_io_flusher_takes_whole_reserve, setup_quiet, scope_teardown)
{
    hog_fill(8192);
    (void)test_io_flusher_on();        /* -EPERM without CAP_SYS_RESOURCE */
    void *p = rcl_alloc(4096, RCL_DEFAULT | RCL__NOFAIL);
    rcl_io_flusher_set(0);
    assert_non_null(p);
    rcl_free(p);
}

/* NOMEMALLOC beats every grant of the reserve, the one a scope-narrowed
 * NOFAIL request gets among them: down to the min watermark in a NOWAIT
 * scope, NOFAIL|NOMEMALLOC waits until a free makes room above it. */
static atomic_bool room_made, charge_returned, gave_up;
static atomic_int charger_tid;

/* The charging thread asleep in its call's wait for memory: bounded sleeps
 * in nanosleep() (glibc makes it as clock_nanosleep), which nothing else in
 * the call sleeps in. */
static bool charger_waits(void)
{
    pid_t tid = atomic_load(&charger_tid);
    return tid && test_thread_in_syscall(tid, SYS_clock_nanosleep);
}

/* Makes room once the charging thread waits for it. A charge that returned
 * without waiting gets none, and the test fails on it. The bound only
 * catches a hang, a charge that waits elsewhere and for good: the room
 * made then ends it, and the test fails on gave_up. */
static void *make_room_later(void *arg)
{
    (void)arg;
    for (long ms = 0; !charger_waits(); ms++) {
        if (atomic_load(&charge_returned))
            return NULL;
        if (ms == 60000) {
            atomic_store(&gave_up, true);
            break;
        }
        test_sleep_ms(1);
    }
    atomic_store(&room_made, true);
    pthread_mutex_lock(&hog.lock);
    rcl_uncharge(hog.size[--hog.nobj]);
    pthread_mutex_unlock(&hog.lock);
    return NULL;
}

TEST_WITH(test_nofail_nomemalloc_in_a_scope_waits_rather_than_take_reserve, setup_quiet,
          scope_teardown)
{
    test_skip_unless_syscalls_read();
    pthread_t th;

    hog_fill(wmark_min());
    atomic_store(&room_made, false);
    atomic_store(&charge_returned, false);
    atomic_store(&gave_up, false);
    atomic_store(&charger_tid, 0);
    assert_int_equal(pthread_create(&th, NULL, make_room_later, NULL), 0);
    unsigned saved = rcl_nowait_save();
    atomic_store(&charger_tid, (int)gettid());
    int err = rcl_charge(4096, RCL_DEFAULT | RCL__NOFAIL | RCL__NOMEMALLOC);
    atomic_store(&charge_returned, true);
    rcl_nowait_restore(saved);
    bool waited = atomic_load(&room_made);
    pthread_join(th, NULL);
    assert_int_equal(err, 0);
    assert_true(waited);
    assert_false(atomic_load(&gave_up));
    assert_true(headroom() >= wmark_min());
    rcl_uncharge(4096);
    (void)test_reports_take();          /* the stall, if it lasted stall_ms */
}

/* An impossible NOFAIL request (too large for the budget, or without
 * direct reclaim in its own flags) fails at once, scope or not:
 * test_nofail.c, test_impossible_nofail_requests_fail_at_once. */

/* ------------------------------------------------------------------------ */
/* The lock checker's report                                                 */
/* ------------------------------------------------------------------------ */

static int setup_checker(void **state)
{
    (void)state;
    struct rcl_config cfg = test_config(LIMIT);
    cfg.lockdep = RCL_LOCKDEP_ON;
    test_reports_reset();
    rcl_set_report_fn(test_report_catch, NULL);
    return rcl_init(&cfg);
}

static __attribute__((noinline)) unsigned scope_opener(unsigned scope)
{
    unsigned saved = rcl_scope_save(scope);
    __asm__ volatile("" ::: "memory");   /* stays a call site of its own */
    return saved;
}

static __attribute__((noinline)) void *nofail_allocator(void)
{
    void *p = rcl_alloc(256, RCL_DEFAULT | RCL__NOFAIL);
    __asm__ volatile("" ::: "memory");
    return p;
}

static void reported_once_with_both_sites(unsigned scope, const char *name)
{
    (void)rcl_lockdep_reports();
    unsigned long before = rcl_lockdep_reports();
    unsigned saved = scope_opener(scope);
    /* One call site, three calls (volatile: an unrolled loop would make
     * three sites of it). */
    for (volatile int i = 0; i < 3; i++)
        rcl_free(nofail_allocator());
    rcl_scope_restore(saved);

    assert_int_equal(rcl_lockdep_reports() - before, 1);
    pthread_mutex_lock(&test_reports.lock);
    char want[64];
    snprintf(want, sizeof(want), "NOFAIL allocation inside a %s scope", name);
    assert_reports_have(want);
    const char *alloc_at = strstr(test_reports_all(), "nofail_allocator");
    const char *opened = strstr(test_reports_all(), "scope was opened at");
    assert_non_null(alloc_at);
    assert_non_null(opened);
    assert_non_null(strstr(opened, "scope_opener"));
    pthread_mutex_unlock(&test_reports.lock);
}

TEST_WITH(test_checker_reports_nofail_in_nowait_scope_once_per_site, setup_checker, test_teardown)
{
    reported_once_with_both_sites(RCL_SCOPE_NOWAIT, "NOWAIT");
}

TEST_WITH(test_checker_reports_nofail_in_noreclaim_scope_once_per_site, setup_checker, test_teardown)
{
    reported_once_with_both_sites(RCL_SCOPE_NORECLAIM, "NORECLAIM");
}

/* NOFS narrows reclaim but leaves it: nothing to report. */
TEST_WITH(test_checker_is_silent_for_nofail_in_nofs_scope, setup_checker, test_teardown)
{
    unsigned long before = rcl_lockdep_reports();
    unsigned saved = rcl_nofs_save();
    rcl_free(rcl_alloc(256, RCL_DEFAULT | RCL__NOFAIL));
    rcl_nofs_restore(saved);
    assert_int_equal(rcl_lockdep_reports(), before);
}

TEST_MAIN();
