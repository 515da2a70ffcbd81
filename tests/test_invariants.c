/* SPDX-License-Identifier: MIT */
/*
 * test_invariants.c - the library's written invariants are checked
 * (src/debug.h): in a debug build (make DEBUG=1, and the sanitizer runs) a
 * broken one stops the program at once, naming itself; and the budget's
 * books balance - charged == handed out + stocks, every stock covering its
 * cached blocks - at every quiet point of a multi-threaded workload
 * (rcl__acct_check, exact in debug builds).
 */
#include "helpers.h"
#include "internal.h"
#include "block_cache.h"

#include <signal.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------------ */
/* A broken invariant aborts, saying which                                   */
/* ------------------------------------------------------------------------ */

static bool debug_build(void)
{
#ifdef RCL_DEBUG
    return true;
#else
    print_message("skipped: a release build compiles the invariant checks out "
                  "(make DEBUG=1, or a sanitizer build, has them)\n");
    return false;
#endif
}

/* Runs fn in a child whose standard error comes back in err; the child's
 * wait status. */
static int run_child(void (*fn)(void), char *err, size_t len)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        fn();
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t n;
    while (got < len - 1 && (n = read(fd[0], err + got, len - 1 - got)) > 0)
        got += (size_t)n;
    err[got] = '\0';
    close(fd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void assert_aborted_with(int status, const char *err, const char *where)
{
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        print_error("child status %#x, stderr: %s\n", status, err);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    assert_non_null(strstr(err, "libreclaim: "));
    assert_non_null(strstr(err, where));
    assert_non_null(strstr(err, "broken"));
}

/* A cache list's length is what its blocks' charge is counted by; a
 * length below its blocks (as if a path had dropped a block's charge) is
 * caught when the blocks leave the cache, before their charge goes
 * anywhere. */
static void break_the_cache_count(void)
{
    rcl_free(rcl_alloc(16, RCL_DEFAULT));
    if (rcl__list_len(rd(rcl__self.bc->len[1])) != 1)
        _exit(3);                   /* the precondition: the block is cached */
    wr(rcl__self.bc->len[1], rd(rcl__self.bc->len[1]) - 1);
    rcl_usage_sync();
}

TEST(a_cache_count_below_its_blocks_aborts)
{
    if (!debug_build())
        skip();
    char err[4096];
    int status = run_child(break_the_cache_count, err, sizeof(err));
    assert_aborted_with(status, err, "list_uncharge: invariant `n == len_of(t, c)' broken");
}

/* An LRU's ring is doubly linked both ways; a node whose neighbour does
 * not point back (memory the program overwrote) is caught before the
 * unlink spreads the damage. */
static void break_an_lru_node(void)
{
    struct rcl_lru *lru = rcl_lru_create();
    struct rcl_lru_node a, b, stray = { 0 };
    rcl_lru_node_init(&a);
    rcl_lru_node_init(&b);
    rcl_lru_add(lru, &a);
    rcl_lru_add(lru, &b);
    a.next = &stray;
    rcl_lru_del(lru, &a);
}

TEST(a_corrupted_lru_node_aborts)
{
    if (!debug_build())
        skip();
    char err[4096];
    int status = run_child(break_an_lru_node, err, sizeof(err));
    assert_aborted_with(status, err, "unlink_node: invariant");
}

/* rcl__assert_held: the caller, not merely somebody, holds the lock. */
static pthread_mutex_t other_held = PTHREAD_MUTEX_INITIALIZER;

static void *lock_and_leave(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&other_held);
    return NULL;
}

static void assert_held_by_the_wrong_thread(void)
{
    pthread_mutex_t mine = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mine);
    rcl__assert_held(&mine);            /* the holder passes */
    pthread_mutex_unlock(&mine);

    pthread_t th;
    if (pthread_create(&th, NULL, lock_and_leave, NULL) != 0)
        _exit(3);
    pthread_join(th, NULL);
    rcl__assert_held(&other_held);
}

TEST(a_lock_held_by_another_thread_is_not_held)
{
    if (!debug_build())
        skip();
    char err[4096];
    int status = run_child(assert_held_by_the_wrong_thread, err, sizeof(err));
    assert_aborted_with(status, err, "invariant `caller holds &other_held' broken");
}

/* ------------------------------------------------------------------------ */
/* The books balance                                                         */
/* ------------------------------------------------------------------------ */

static void assert_books_balance(void)
{
    char why[256];
    int err = rcl__acct_check(why, sizeof(why));
    if (err)
        print_error("accounting check: %s\n", why);
    assert_int_equal(err, 0);
}

/* The check says what is wrong: a negative stock, and (in a debug build,
 * which counts what was handed out) a budget that charged bytes nobody
 * holds. */
TEST(acct_check_names_a_broken_invariant)
{
    char why[256];
    rcl_free(rcl_alloc(16, RCL_DEFAULT));
    assert_true(rcl__bcache_held(&rcl__self) > 0);
    assert_books_balance();

    long stock = rd(rcl__self.stock);
    wr(rcl__self.stock, -1);
    assert_int_equal(rcl__acct_check(why, sizeof(why)), -1);
    assert_non_null(strstr(why, "stock is negative"));
    wr(rcl__self.stock, stock);
    assert_books_balance();

#ifdef RCL_DEBUG
    atomic_fetch_add(&rcl__acct.charged, 4096);
    assert_int_equal(rcl__acct_check(why, sizeof(why)), -1);
    assert_non_null(strstr(why, "handed out"));
    assert_non_null(strstr(why, "(+4096)"));
    atomic_fetch_sub(&rcl__acct.charged, 4096);
    assert_books_balance();
#endif
}

/*
 * The workload: each thread allocates blocks of every kind (cached
 * classes, large, aligned, mapped, plain charges), the main thread checks
 * the books while all of them wait at a barrier, then each frees its
 * neighbour's blocks (cross-thread frees land in other stocks and caches)
 * and its own charges, and the books are checked again after the joins.
 */
#define WORKERS 4
#define BLOCKS  96

struct worker {
    void              *blocks[BLOCKS];
    size_t             charged;        /* rcl_charge()d, given back by its owner */
    pthread_barrier_t *bar;
    struct worker     *next;
    unsigned           seed;
};

static size_t pick_size(unsigned *seed, unsigned i)
{
    static const size_t sizes[] = { 1, 16, 17, 100, 256, 300, 1000, 1025, 4096, 5000,
                                    65536, 70000, 200000 };
    return sizes[(i + rand_r(seed)) % (sizeof(sizes) / sizeof(sizes[0]))];
}

static void *fill(unsigned *seed, unsigned i)
{
    size_t size = pick_size(seed, i);
    switch (i % 8) {
    case 5:  return rcl_aligned_alloc(256, size, RCL_DEFAULT);
    case 6:  return rcl_valloc(size, RCL_DEFAULT);
    case 7:  return rcl_realloc(rcl_alloc(size, RCL_DEFAULT), size / 2 + 1, RCL_DEFAULT);
    default: return rcl_alloc(size, RCL_DEFAULT);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    for (int round = 0; round < test_scale(20); round++) {
        for (unsigned i = 0; i < BLOCKS; i++) {
            rcl_free(w->blocks[i]);
            w->blocks[i] = fill(&w->seed, i);
        }
    }
    for (unsigned i = 0; i < 16; i++)
        if (rcl_charge(100 + i, RCL_DEFAULT) == 0)
            w->charged += 100 + i;
    pthread_barrier_wait(w->bar);            /* the main thread checks */
    pthread_barrier_wait(w->bar);
    for (unsigned i = 0; i < BLOCKS; i += 2) {
        rcl_free(w->next->blocks[i]);         /* the neighbour's even ones */
        w->next->blocks[i] = NULL;
    }
    rcl_uncharge(w->charged);
    pthread_barrier_wait(w->bar);            /* checked again */
    pthread_barrier_wait(w->bar);
    return NULL;
}

TEST(the_books_balance_at_quiet_points)
{
    static struct worker w[WORKERS];
    pthread_t th[WORKERS];
    pthread_barrier_t bar;

    memset(w, 0, sizeof(w));
    pthread_barrier_init(&bar, NULL, WORKERS + 1);
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i].bar = &bar;
        w[i].next = &w[(i + 1) % WORKERS];
        w[i].seed = i + 1;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    pthread_barrier_wait(&bar);
    assert_books_balance();                  /* every block live */
    assert_true(rcl_usage() > 0);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    assert_books_balance();                  /* half freed, across threads */
    pthread_barrier_wait(&bar);
    for (unsigned i = 0; i < WORKERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_books_balance();                  /* their stocks went back */

    for (unsigned i = 0; i < WORKERS; i++)
        for (unsigned j = 0; j < BLOCKS; j++)
            rcl_free(w[i].blocks[j]);
    assert_books_balance();
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);        /* nothing live, nothing charged */
    assert_books_balance();
    pthread_barrier_destroy(&bar);
}

/* The death tests come first in the source, so they run while this
 * process has no thread but its own: the children fork from a
 * single-threaded parent. */
TEST_MAIN();
