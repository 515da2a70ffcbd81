/* SPDX-License-Identifier: MIT */
/*
 * The per-thread block cache (src/block_cache.h): freed blocks up to 64 KiB are
 * kept by the freeing thread and handed out again before the backend is
 * asked. The kernel's rule it follows is the per-CPU freelist of its slab
 * and page allocators: a freed object goes back to the local list and the
 * next allocation of its class takes the most recently freed one (LIFO,
 * cache hot); the list is bounded, and draining it gives the objects back.
 * And the memory cgroup's slab accounting: a cached block stays charged,
 * so the budget counts it while rcl_usage() does not, every rcl_alloc()
 * charges what rcl_alloc_charge() says (or, over glibc, what its block's
 * class charges where a larger class's cached block served it), and a
 * block that goes from the
 * cache to the program and back moves only its own charge - the per-CPU
 * stock of budget with no memory behind it is not touched, as the kernel
 * charges a slab page once, not each object carved from it.
 */
#include "helpers.h"
#include "internal.h"
#include "slab.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t cached_now(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    return st.thread_cached;
}

static size_t usage_now(void)
{
    rcl_usage_sync();   /* also empties the calling thread's cache */
    return rcl_usage();
}

/* What a thread's cache holds after n blocks of `size` came back to it:
 * the n, and for a class of slabs (src/slab.h), what is left of the last
 * batch its empty list was filled with - fewer than a batch, as tcmalloc's
 * lists keep what is left of the batch they fetched. */
static void assert_cached(size_t cached, size_t size, int n)
{
    size_t run = (size_t)n * rcl_alloc_charge(size);

    if (!rcl__slab_sized(size)) {
        assert_int_equal(cached, run);
        return;
    }
    assert_true(cached >= run);
    assert_true(cached < run + RCL_SLAB_BATCH * rcl_alloc_charge(size));
    assert_int_equal(cached % rcl_alloc_charge(size), 0);
}

/* `size`, or where it is a slab class a size the backend serves: for the
 * counts that take a block a miss, where a slab class's miss takes a batch
 * and a full list of it gives one back. Over glibc 256 bytes up, a size
 * glibc serves; over mimalloc and jemalloc, whose classes from 256 B to
 * 64 KiB are slab classes, `size` itself where it is a smaller class. 0
 * where there is none. */
static size_t backend_served(size_t size)
{
    size_t n = rcl__slab_sized(size) ? size + 256 : size;

    if (!rcl__slab_sized(n))
        return n;
    return rcl__slab_mixed(rcl__bcache_class(size)) ? size : 0;
}

/* Is there no class the backend serves alone while a thread's fresh list
 * of it takes `blocks` misses? Each grows the list by one from its start
 * (src/block_cache.h). */
static bool no_backend_class(size_t size, unsigned blocks)
{
    size_t n = backend_served(size);
    unsigned start = rcl__bcache_depth_start(rcl__bcache_class(size));

    if (n && (!rcl__slab_sized(n) || start + blocks < RCL_SLAB_MIN_DEPTH))
        return false;
    print_message("skipped: the size is a slab class's here, whose misses take batches "
                  "(src/slab.h)\n");
    return true;
}

/* Start each test with this thread's cache empty. */
static int cache_setup(void **state)
{
    int rc = test_setup(state);
    rcl_usage_sync();
    return rc;
}


TEST_WITH(freed_block_serves_the_next_allocation_of_its_class, cache_setup, test_teardown)
{
    void *p = rcl_alloc(40, RCL_DEFAULT);
    rcl_free(p);
    assert_int_equal(cached_now(), rcl_alloc_charge(48));   /* class 33..48 */
    void *q = rcl_alloc(33, RCL_DEFAULT);
    assert_ptr_equal(q, p);
    assert_int_equal(cached_now(), 0);
    rcl_free(q);
}

TEST_WITH(most_recently_freed_block_comes_back_first, cache_setup, test_teardown)
{
    void *a = rcl_alloc(64, RCL_DEFAULT), *b = rcl_alloc(64, RCL_DEFAULT);
    rcl_free(a);
    rcl_free(b);
    void *x = rcl_alloc(64, RCL_DEFAULT), *y = rcl_alloc(64, RCL_DEFAULT);
    assert_ptr_equal(x, b);
    assert_ptr_equal(y, a);
    rcl_free(x);
    rcl_free(y);
}

TEST_WITH(cached_blocks_are_not_in_usage, cache_setup, test_teardown)
{
    void *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = rcl_alloc(100, RCL_DEFAULT);
    for (int i = 0; i < 4; i++)
        rcl_free(p[i]);
    assert_cached(cached_now(), 112, 4);
    assert_int_equal(rcl_usage(), 0);
    /* a block from the cache charges its class, as a fresh one does */
    void *q = rcl_alloc(97, RCL_DEFAULT);
    assert_int_equal(usage_now(), rcl_alloc_charge(97));
    rcl_free(q);
    assert_int_equal(usage_now(), 0);
}

/* Another thread's cached blocks are not in usage either: rcl_usage()
 * reads every registered thread's lists (their lengths) while it runs. */
static void *cache_and_wait(void *arg)
{
    pthread_barrier_t *b = arg;
    void *p[100];

    for (int i = 0; i < 100; i++)
        p[i] = rcl_alloc(64, RCL_DEFAULT);
    for (int i = 0; i < 100; i++)
        rcl_free(p[i]);
    pthread_barrier_wait(b);    /* the main thread reads */
    pthread_barrier_wait(b);    /* and has read */
    return NULL;
}

TEST_WITH(another_threads_cached_blocks_are_not_in_usage, cache_setup, test_teardown)
{
    pthread_barrier_t b;
    pthread_t th;
    void *mine = rcl_alloc(1000, RCL_DEFAULT);

    assert_int_equal(pthread_barrier_init(&b, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, cache_and_wait, &b), 0);
    pthread_barrier_wait(&b);
    assert_int_equal(rcl_usage(), rcl_alloc_charge(1000));
    assert_cached(cached_now(), 64, 100);
    pthread_barrier_wait(&b);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&b);
    rcl_free(mine);
    assert_int_equal(usage_now(), 0);
}

TEST_WITH(a_cache_hit_moves_its_own_charge_and_no_stock, cache_setup, test_teardown)
{
    void *p = rcl_alloc(200, RCL_DEFAULT);
    rcl_free(p);
    long stock = rd(rcl__self.stock);
    size_t usage = rcl_usage(), charge = rcl_alloc_charge(200);
    assert_int_equal(cached_now(), charge);

    void *q = rcl_alloc(193, RCL_DEFAULT);      /* the same class */
    assert_ptr_equal(q, p);
    assert_int_equal(rd(rcl__self.stock), stock);
    assert_int_equal(cached_now(), 0);
    assert_int_equal(rcl_usage(), usage + charge);

    rcl_free(q);
    assert_int_equal(rd(rcl__self.stock), stock);
    assert_int_equal(cached_now(), charge);
    assert_int_equal(rcl_usage(), usage);
}

/* Every size of every class, from the cache and from the backend, charges
 * what rcl_alloc_charge() says (the fast paths read the class and its
 * charge from a table; rcl_alloc_charge() computes them). */
TEST_WITH(every_size_charges_what_rcl_alloc_charge_says, cache_setup, test_teardown)
{
    for (size_t size = 1; size <= 65536; size += size < 2048 ? 1 : 61) {
        size_t before = rcl_usage();
        void *p = rcl_alloc(size, RCL_DEFAULT);       /* from the backend */
        assert_non_null(p);
        assert_int_equal(rcl_usage() - before, rcl_alloc_charge(size));
        rcl_free(p);
        assert_int_equal(rcl_usage(), before);
        p = rcl_alloc(size, RCL_DEFAULT);             /* from the cache */
        assert_int_equal(rcl_usage() - before, rcl_alloc_charge(size));
        rcl_free(p);
        assert_int_equal(rcl_usage(), before);
    }
}

static bool lends(void)
{
    if (RCL_BCACHE_BORROW)
        return true;
    print_message("skipped: no class lends its cached blocks to another over mimalloc and "
                  "jemalloc, nor under AddressSanitizer (src/block_cache.h)\n");
    return false;
}

/* Over glibc, an allocation whose list is empty, of a class that has
 * missed before, takes a cached block of a class up to half as large again
 * before it asks for new memory; the block keeps its class - its charge,
 * and the list it goes back to. */
TEST_WITH(a_class_short_of_blocks_takes_a_cached_block_up_to_half_as_large_again,
          cache_setup, test_teardown)
{
    if (!lends())
        skip();
    void *own = rcl_alloc(1100, RCL_DEFAULT);       /* class 1025 .. 1152: a miss */
    void *big = rcl_alloc(1600, RCL_DEFAULT);       /* class 1537 .. 1664 */
    rcl_free(big);
    void *p = rcl_alloc(1100, RCL_DEFAULT);
    assert_ptr_equal(p, big);
    assert_int_equal(cached_now(), 0);
    memset(p, 0x5a, 1100);
    rcl_free(p);
    assert_int_equal(cached_now(), rcl_alloc_charge(1600));
    p = rcl_alloc(1600, RCL_DEFAULT);               /* its own class's again */
    assert_ptr_equal(p, big);
    rcl_free(own);
    assert_int_equal(usage_now(), rcl_alloc_charge(1600));
    rcl_free(p);
    assert_int_equal(usage_now(), 0);
}

/* A class's first miss takes a block of its own, which its list keeps:
 * a thread that holds one block of each size in turn hits its own lists
 * from then on, rather than borrow at every allocation. */
TEST_WITH(a_class_that_never_missed_takes_a_block_of_its_own, cache_setup, test_teardown)
{
    if (!lends())
        skip();
    void *big = rcl_alloc(1600, RCL_DEFAULT);
    rcl_free(big);
    void *p = rcl_alloc(1100, RCL_DEFAULT);
    assert_ptr_not_equal(p, big);
    rcl_free(p);
    assert_ptr_equal(rcl_alloc(1100, RCL_DEFAULT), p);
    assert_ptr_equal(rcl_alloc(1600, RCL_DEFAULT), big);
    rcl_free(big);
    rcl_free(p);
    assert_int_equal(usage_now(), 0);
}

/* The next class up lends whatever its size; one further up only within
 * half as large again, so that a borrowed block wastes at most a third. */
TEST_WITH(a_block_further_up_than_half_as_large_again_is_not_lent, cache_setup, test_teardown)
{
    if (!lends())
        skip();
    void *own = rcl_alloc(1100, RCL_DEFAULT);       /* each class misses once */
    void *own16 = rcl_alloc(16, RCL_DEFAULT);
    void *rest[RCL_SLAB_BATCH];
    int n = 0;
    /* The 16 B list's batch from its slab (src/slab.h), emptied. */
    while (cached_now())
        assert_true(n < (int)RCL_SLAB_BATCH && (rest[n++] = rcl_alloc(16, RCL_DEFAULT)));
    void *next = rcl_alloc(32, RCL_DEFAULT);
    rcl_free(next);
    void *p = rcl_alloc(16, RCL_DEFAULT);           /* 32 B: twice, but the next class */
    assert_ptr_equal(p, next);
    rcl_free(p);
    while (n)
        rcl_free(rest[--n]);
    rcl_free(own16);
    rcl_usage_sync();

    void *far = rcl_alloc(1750, RCL_DEFAULT);       /* class 1665 .. 1792 */
    rcl_free(far);
    p = rcl_alloc(1100, RCL_DEFAULT);               /* 1152 x 1.5 = 1728 */
    assert_ptr_not_equal(p, far);
    assert_int_equal(cached_now(), rcl_alloc_charge(1750));
    rcl_free(own);
    assert_int_equal(usage_now(), rcl_alloc_charge(1100));
    rcl_free(p);
}

/* A lent block resized keeps its bytes, in place within its own class. */
TEST_WITH(a_lent_block_resizes_within_its_own_class, cache_setup, test_teardown)
{
    if (!lends())
        skip();
    void *own = rcl_alloc(1100, RCL_DEFAULT);       /* the class misses once */
    void *big = rcl_alloc(1600, RCL_DEFAULT);
    rcl_free(big);
    unsigned char *p = rcl_alloc(1100, RCL_DEFAULT);
    assert_ptr_equal(p, big);
    rcl_free(own);
    for (int i = 0; i < 1100; i++)
        p[i] = (unsigned char)i;
    unsigned char *q = rcl_realloc(p, 1650, RCL_DEFAULT);
    assert_ptr_equal(q, p);
    q = rcl_realloc(q, 4000, RCL_DEFAULT);
    assert_non_null(q);
    for (int i = 0; i < 1100; i++)
        assert_int_equal(q[i], (unsigned char)i);
    rcl_free(q);
    assert_int_equal(usage_now(), 0);
}

/* A lent block grown with RCL__ZERO reads zeros from the size asked on,
 * as any other block does from its size: its header says its class's
 * smallest size, past the size asked, and what lay between was the
 * block's last owner's. */
TEST_WITH(a_lent_block_grown_with_zero_reads_zeros_past_the_size_asked, cache_setup,
          test_teardown)
{
    if (!lends())
        skip();
    void *own = rcl_alloc(1100, RCL_DEFAULT);       /* the class misses once */
    unsigned char *big = rcl_alloc(1600, RCL_DEFAULT);
    memset(big, 0xee, 1600);
    rcl_free(big);
    unsigned char *p = rcl_alloc(1100, RCL_DEFAULT);
    assert_ptr_equal(p, big);
    rcl_free(own);
    memset(p, 0x5a, 1100);
    unsigned char *q = rcl_realloc(p, 1650, RCL_DEFAULT | RCL__ZERO);
    assert_non_null(q);
    for (int i = 0; i < 1650; i++)
        assert_int_equal(q[i], i < 1100 ? 0x5a : 0);
    rcl_free(q);
    assert_int_equal(usage_now(), 0);
}

/* Lent blocks among a live set of mixed sizes larger than the lists, freed
 * by another thread: each goes back to its own class, its bytes intact,
 * and the budget comes back to nothing. A lent block's header says the
 * smallest size of its class, not the size asked: that is how the test
 * tells that some were lent. */
enum { LEND_N = 2048 };

static size_t lend_size(int i)
{
    return 257 + (size_t)(i * 2654435761u % 3840);      /* 257 B - 4 KiB */
}

static void *free_lent(void *arg)
{
    unsigned char **p = arg;
    long bad = 0;

    for (int i = 0; i < LEND_N; i++) {
        size_t n = lend_size(i);
        bad += p[i][0] != (unsigned char)i || p[i][n - 1] != (unsigned char)i;
        rcl_free(p[i]);
    }
    rcl_usage_sync();
    return (void *)bad;
}

TEST_WITH(lent_blocks_freed_on_another_thread_go_back_to_their_own_class, cache_setup,
          test_teardown)
{
    if (!lends())
        skip();
    static unsigned char *p[LEND_N];
    pthread_t th;
    void *bad;
    int lent = 0;

    for (int pass = 0; pass < 4; pass++) {
        for (int i = 0; i < LEND_N; i++) {
            size_t n = lend_size(i + pass * 7);
            assert_non_null(p[i] = rcl_alloc(n, RCL_DEFAULT));
        }
        for (int i = 0; i < LEND_N; i++)
            rcl_free(p[i]);
    }
    for (int i = 0; i < LEND_N; i++) {
        size_t n = lend_size(i);
        assert_non_null(p[i] = rcl_alloc(n, RCL_DEFAULT));
        lent += rcl__hdr_of(p[i])->size != n;
        memset(p[i], i, n);
    }
    assert_true(lent > 0);
    assert_int_equal(pthread_create(&th, NULL, free_lent, p), 0);
    pthread_join(th, &bad);
    assert_int_equal((long)bad, 0);
    assert_int_equal(usage_now(), 0);
}

/* Over mimalloc and jemalloc (four classes per doubling) a class keeps to
 * its own blocks. */
TEST_WITH(over_coarse_classes_no_class_lends_its_blocks, cache_setup, test_teardown)
{
    if (!RCL__BE_COARSE_CLASSES) {
        print_message("skipped: over glibc classes lend their cached blocks "
                      "(src/block_cache.h)\n");
        skip();
    }
    void *big = rcl_alloc(1600, RCL_DEFAULT);
    rcl_free(big);
    void *p = rcl_alloc(1100, RCL_DEFAULT);
    assert_ptr_not_equal(p, big);
    assert_int_equal(usage_now(), rcl_alloc_charge(1100));
    rcl_free(p);
}

/* A run of `n` blocks of `size` allocated, then freed: how much of it the
 * calling thread's cache keeps. */
static size_t cached_after_run(size_t size, int n)
{
    void *p[4096];
    assert_true(n <= 4096);
    for (int i = 0; i < n; i++)
        assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
    for (int i = 0; i < n; i++)
        rcl_free(p[i]);
    return cached_now();
}

/* What a run of n blocks of `size` leaves cached when the list grew to
 * the whole run (assert_cached()). */
static void assert_run_cached(size_t size, int n)
{
    assert_cached(cached_after_run(size, n), size, n);
}

/* A class's list grows with every allocation that found it empty, so a
 * thread's cache comes to hold the whole live set it recycles (within the
 * byte bound, below) - as tcmalloc's per-class lists grow on misses. A
 * batch from the slabs counts a miss for each block in it. */
TEST_WITH(a_class_grows_to_the_live_set_it_recycles, cache_setup, test_teardown)
{
    /* A budget large enough for a cache of 8 MiB (limit / 128) */
    rcl_shutdown();
    assert_int_equal(test_init((size_t)4 << 30), 0);
    assert_run_cached(64, 1000);
    rcl_usage_sync();
    assert_run_cached(1000, 200);
    rcl_usage_sync();
    assert_run_cached(4600, 40);
}

/* The consumer of a producer/consumer pair frees blocks it never
 * allocates: its lists never grow by allocations, so it keeps only a
 * batch of each class - its list, which it hands to the depot whenever it
 * is full - instead of stranding a budget's worth of memory it will never
 * use. A list starts at 8 blocks up to 256 B, 4 up to 1 KiB, 1 above; it
 * doubles, up to 32 KiB, only once the class is seen to make an eighth
 * of the thread's frees over 256 of them or more (the tests below). The
 * depot keeps two batches a class. What it hands over is not charged. */
struct consumer {
    void *blocks[2][32];
    size_t cached;
};

static size_t depot_now(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    return st.depot_held;
}

static void *consume(void *arg)
{
    struct consumer *c = arg;
    /* The thread's first call registers it (the slow path): not one of
     * the frees looked at. */
    rcl_free(rcl_alloc(16, RCL_DEFAULT));
    size_t before = cached_now();
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 32; i++)
            rcl_free(c->blocks[k][i]);
    c->cached = cached_now() - before;
    return NULL;
}

TEST_WITH(a_thread_that_only_frees_keeps_a_batch_a_class, cache_setup, test_teardown)
{
    static const size_t sizes[2] = { 64, 1000 };
    struct consumer c;
    pthread_t th;

    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 32; i++)
            assert_non_null(c.blocks[k][i] = rcl_alloc(sizes[k], RCL_DEFAULT));
    assert_int_equal(pthread_create(&th, NULL, consume, &c), 0);
    pthread_join(th, NULL);
    /* Two lists of each class went, the depot then full for the class:
     * 64 B, lists of 8, 8 stay and the last 8 went back to the backend
     * (or their slabs); 1000 B, lists of 4, 4 stay and the last 20 went
     * back. */
    assert_int_equal(c.cached, 8 * rcl_alloc_charge(64) + 4 * rcl_alloc_charge(1000));
    assert_int_equal(depot_now(), 16 * rcl_alloc_charge(64) + 8 * rcl_alloc_charge(1000));
    assert_int_equal(usage_now(), 0);
}

/* A class's share of the frees is judged over 256 frees or more, not at
 * each batch: a list of one block that a burst of its class's frees
 * refilled at once would read as the whole of the thread's frees, and
 * one class in six of a mix of sizes would double its batch for good,
 * by chance - the depot then held its whole bound beside a
 * producer/consumer ring of half that. Eight frees of 2000 B in a row:
 * two lists of one block go to the depot, one stays, the depth still 1. */
static void *consume_burst(void *arg)
{
    void **blocks = arg;

    rcl_free(rcl_alloc(128 * 1024, RCL_DEFAULT));
    for (int i = 0; i < 8; i++)
        rcl_free(blocks[i]);
    return (void *)cached_now();
}

TEST_WITH(a_burst_of_one_class_does_not_grow_its_batch, cache_setup, test_teardown)
{
    void *blocks[8], *cached;
    pthread_t th;

    for (int i = 0; i < 8; i++)
        assert_non_null(blocks[i] = rcl_alloc(2000, RCL_DEFAULT));
    rcl_usage_sync();
    assert_int_equal(pthread_create(&th, NULL, consume_burst, blocks), 0);
    pthread_join(th, &cached);
    assert_int_equal((size_t)cached, rcl_alloc_charge(2000));
    assert_int_equal(depot_now(), 2 * rcl_alloc_charge(2000));
    assert_int_equal(usage_now(), 0);
}

/*
 * Rounds between a producer - the test's thread, which allocates a round
 * of blocks and then empties its cache and the depot (rcl_usage_sync), so
 * that every full list of the consumer finds room there - and a consumer
 * thread, which frees them. `freed` watches the consumer after each of
 * its frees, `ended` once after the last; either may be NULL.
 */
#define ROUND_MAX 64

struct rounds {
    int round, rounds;
    size_t (*size)(struct rounds *rs);
    void (*freed)(struct rounds *rs, int nr);
    void (*ended)(struct rounds *rs);
    void *blocks[ROUND_MAX];
    pthread_barrier_t given, done;
};

static void *consume_rounds(void *arg)
{
    struct rounds *rs = arg;

    rcl_free(rcl_alloc(128 * 1024, RCL_DEFAULT));
    for (int r = 0; r < rs->rounds; r++) {
        pthread_barrier_wait(&rs->given);
        for (int i = 0; i < rs->round; i++) {
            rcl_free(rs->blocks[i]);
            if (rs->freed)
                rs->freed(rs, r * rs->round + i);
        }
        pthread_barrier_wait(&rs->done);
    }
    if (rs->ended)
        rs->ended(rs);
    return NULL;
}

static void run_rounds(struct rounds *rs)
{
    pthread_t th;

    assert_true(rs->round <= ROUND_MAX);
    assert_int_equal(pthread_barrier_init(&rs->given, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&rs->done, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, consume_rounds, rs), 0);
    for (int r = 0; r < rs->rounds; r++) {
        for (int i = 0; i < rs->round; i++)
            assert_non_null(rs->blocks[i] = rcl_alloc(rs->size(rs), RCL_DEFAULT));
        rcl_usage_sync();
        pthread_barrier_wait(&rs->given);
        pthread_barrier_wait(&rs->done);
    }
    pthread_join(th, NULL);
    pthread_barrier_destroy(&rs->given);
    pthread_barrier_destroy(&rs->done);
}

/* A class that does make an eighth of the frees or more - here all of
 * them - doubles its batch once it has been watched over 256 frees: the
 * consumer's list of 64 B never holds more than 8 blocks in its first 256
 * frees, and holds 16 before its 384th. */
struct hot_consumer {
    struct rounds rs;           /* first: the callbacks cast back */
    size_t most_early, most_late;
};

static size_t hot_size(struct rounds *rs)
{
    (void)rs;
    return 64;
}

static void hot_freed(struct rounds *rs, int nr)
{
    struct hot_consumer *h = (struct hot_consumer *)rs;
    size_t *most = nr < 256 ? &h->most_early : &h->most_late;
    size_t now = cached_now();

    if (now > *most)
        *most = now;
}

TEST_WITH(a_class_that_makes_an_eighth_of_the_frees_doubles_its_batch, cache_setup,
          test_teardown)
{
    struct hot_consumer h = {
        .rs = { .round = 32, .rounds = 12, .size = hot_size, .freed = hot_freed },
    };

    run_rounds(&h.rs);
    assert_int_equal(h.most_early, 8 * rcl_alloc_charge(64));
    assert_int_equal(h.most_late, 16 * rcl_alloc_charge(64));
    assert_int_equal(usage_now(), 0);
}

/* A hot class's batch doubles only while it stays within the depot's
 * batch bound, 32 KiB (src/block_cache.c): 1000-byte blocks, a list of 4
 * to start with, grow to 8 and 16 (about 17 KiB), never 32 (34 KiB),
 * however long the consumer frees them. */
struct bounded_consumer {
    struct rounds rs;           /* first: the callbacks cast back */
    size_t most;
};

static size_t kilo_size(struct rounds *rs)
{
    (void)rs;
    return 1000;
}

static void bounded_freed(struct rounds *rs, int nr)
{
    struct bounded_consumer *b = (struct bounded_consumer *)rs;
    size_t now = cached_now();

    (void)nr;
    if (now > b->most)
        b->most = now;
}

TEST_WITH(a_hot_class_batch_stops_at_the_depots_batch_bound, cache_setup, test_teardown)
{
    struct bounded_consumer b = {
        .rs = { .round = 32, .rounds = 48, .size = kilo_size, .freed = bounded_freed },
    };

    run_rounds(&b.rs);
    assert_int_equal(b.most, 16 * rcl_alloc_charge(1000));
    assert_true(b.most <= 32 * 1024);
    assert_int_equal(usage_now(), 0);
}

/* The consumer of a mix of sizes freed in a program's random order: 24
 * classes, each about a twenty-fourth of the frees, so that a class's
 * next free often comes soon after its list went to the depot - which,
 * judged at each batch, doubled classes by chance. No list grows past
 * its start. */
#define MIX_CLASSES 24

static const size_t mix_sizes[MIX_CLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
    320, 448, 640, 896, 1500, 2000, 3000, 4000,
};

struct mix_consumer {
    struct rounds rs;           /* first: the callbacks cast back */
    uint32_t x;                 /* the producer's random sizes, fixed seed */
    unsigned grown;             /* classes deeper than they started */
};

static size_t mix_size(struct rounds *rs)
{
    struct mix_consumer *m = (struct mix_consumer *)rs;

    m->x = m->x * 1664525u + 1013904223u;
    return mix_sizes[(m->x >> 16) % MIX_CLASSES];
}

static void mix_ended(struct rounds *rs)
{
    struct mix_consumer *m = (struct mix_consumer *)rs;

    for (unsigned c = 0; c < RCL_BCACHE_CLASSES; c++)
        m->grown += rcl__self.bc->depth[c + 1] > rcl__bcache_depth_start(c);
}

TEST_WITH(a_consumer_of_a_mix_in_random_order_keeps_each_batch_short, cache_setup,
          test_teardown)
{
    struct mix_consumer m = {
        .rs = { .round = 64, .rounds = 40, .size = mix_size, .ended = mix_ended },
        .x = 20261202,
    };

    run_rounds(&m.rs);
    /* The consumer's full lists did go to the depot. */
    assert_true(depot_now() > 0);
    assert_int_equal(m.grown, 0);
    assert_int_equal(usage_now(), 0);
}

/* A consumer of many classes at once - a mix of sizes - frees each of
 * them rarely: its lists keep their first depth, since a batch of each,
 * grown to 32 KiB and half full on average, would hold most of a
 * megabyte the producer cannot reach. */
#define MANY_CLASSES 16
#define MANY_ROUNDS  40

static void *consume_round_robin(void *arg)
{
    void **blocks = arg;
    /* Registration, as above, with a block above the classes (64 KiB): not cached. */
    rcl_free(rcl_alloc(128 * 1024, RCL_DEFAULT));
    for (int i = 0; i < MANY_ROUNDS * MANY_CLASSES; i++)
        rcl_free(blocks[i]);
    return (void *)cached_now();
}

TEST_WITH(a_consumer_of_many_classes_keeps_each_batch_short, cache_setup, test_teardown)
{
    static void *blocks[MANY_ROUNDS * MANY_CLASSES];
    size_t lists = 0;
    pthread_t th;
    void *cached;

    /* A class at a time, the smallest first, so that each block is of
     * its own class: over glibc an allocation whose list is empty takes a
     * larger class's cached block (src/block_cache.h), and those lists
     * are still empty then. */
    for (int k = 0; k < MANY_CLASSES; k++)
        for (int r = 0; r < MANY_ROUNDS; r++)
            assert_non_null(blocks[r * MANY_CLASSES + k] =
                                rcl_alloc(16 * (size_t)(k + 1), RCL_DEFAULT));
    /* What is cached is then the consumer's alone: a batch from the slabs
     * (256 B, src/slab.h) leaves the producer's list what it did not use. */
    rcl_usage_sync();
    assert_int_equal(cached_now(), 0);
    assert_int_equal(pthread_create(&th, NULL, consume_round_robin, blocks), 0);
    pthread_join(th, &cached);
    /* Each class (16 .. 256 B, a sixteenth of the frees): lists of 8
     * went twice, the depot then full for the class, and 8 blocks stay. */
    for (int k = 0; k < MANY_CLASSES; k++)
        lists += 8 * rcl_alloc_charge(16 * (size_t)(k + 1));
    assert_int_equal((size_t)cached, lists);
    assert_int_equal(depot_now(), 2 * lists);
    assert_int_equal(usage_now(), 0);
}

/* n blocks of `size` allocated by this thread and freed by another, which
 * registers first (its first call takes the slow path). */
struct elsewhere {
    void **p;
    int n;
};

static void *free_them(void *arg)
{
    struct elsewhere *e = arg;
    rcl_free(rcl_alloc(16, RCL_DEFAULT));
    for (int i = 0; i < e->n; i++)
        rcl_free(e->p[i]);
    return NULL;
}

static void alloc_here_free_there(void **p, int n, size_t size)
{
    struct elsewhere e = { p, n };
    pthread_t th;

    for (int i = 0; i < n; i++)
        assert_non_null(p[i] = rcl_alloc(size ? size : (size_t)32 << (i % 4 * 2), RCL_DEFAULT));
    assert_int_equal(pthread_create(&th, NULL, free_them, &e), 0);
    pthread_join(th, NULL);
}

/* Blocks one thread freed into the depot serve another thread's
 * allocations of their class: the most recently handed-over batch first,
 * as from the thread's own list, charged as they are handed out. */
TEST_WITH(blocks_freed_on_another_thread_serve_this_threads_allocations, cache_setup,
          test_teardown)
{
    void *p[64], *q[64];

    alloc_here_free_there(p, 64, 200);
    /* Two lists of 8, the depot's two batches of the class. */
    size_t held = depot_now();
    assert_true(held >= 16 * rcl_alloc_charge(200));
    for (int i = 0; i < 64; i++) {
        assert_non_null(q[i] = rcl_alloc(200, RCL_DEFAULT));
        memset(q[i], 0x5a, 200);
    }
    assert_int_equal(depot_now(), 0);
    /* Every block the depot held came back to this thread. */
    size_t mine = 0;
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++)
            mine += q[i] == p[j];
    assert_true(mine * rcl_alloc_charge(200) >= held);
    assert_int_equal(usage_now(), 64 * rcl_alloc_charge(200));
    for (int i = 0; i < 64; i++)
        rcl_free(q[i]);
    assert_int_equal(usage_now(), 0);
}

/* The depot is free memory, uncharged, so it is bounded as the backend's
 * free lists are not: at most min(limit/512, 256 KiB) in all, the rest of
 * what a consumer frees going back to the backend. */
TEST_WITH(the_depot_holds_at_most_a_512th_of_the_limit, cache_setup, test_teardown)
{
    static void *p[4096];

    alloc_here_free_there(p, 4096, 0);    /* 32, 128, 512 and 2048 B in turn */
    assert_true(depot_now() > 0);
    assert_true(depot_now() <= rcl_limit() / 512);
    assert_int_equal(usage_now(), 0);
}

/* A block in the depot is free: freeing it again is caught, as for a block
 * in a thread's own list, and leaves the depot as it was. */
TEST_WITH(double_free_of_a_block_in_the_depot_is_caught, cache_setup, test_teardown)
{
    void *p[64];

    alloc_here_free_there(p, 64, 64);
    size_t held = depot_now();
    assert_true(held > 0);
    /* The first blocks freed were the first handed over. */
    errno = 0;
    rcl_free(p[1]);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(depot_now(), held);
}

/* Every trim empties the depot into the backend first, so that the trim
 * can give its pages back; so does rcl_shutdown(). */
TEST_WITH(a_trim_empties_the_depot, cache_setup, test_teardown)
{
    void *p[64];

    alloc_here_free_there(p, 64, 64);
    assert_true(depot_now() > 0);
    /* A reclaim that frees 1 MiB or more trims the backend. */
    struct test_cache *c = test_cache_new("blocks", 64, 64 * KiB, NULL);
    test_cache_fill(c, 64);
    assert_true(rcl_reclaim(2 * MiB, RCL_DEFAULT) >= 2 * MiB);
    assert_int_equal(depot_now(), 0);
    test_cache_free(c);
}

/* A drain gives back every free block the library keeps: rcl_usage_sync()
 * (and the drain requests reclaim makes before an allocation fails) empty
 * the depot with the caches. */
TEST_WITH(usage_sync_empties_the_depot, cache_setup, test_teardown)
{
    void *p[64];

    alloc_here_free_there(p, 64, 64);
    assert_true(depot_now() > 0);
    rcl_usage_sync();
    assert_int_equal(depot_now(), 0);
}

TEST_WITH(shutdown_empties_the_depot, cache_setup, test_teardown)
{
    void *p[64];

    alloc_here_free_there(p, 64, 64);
    assert_true(depot_now() > 0);
    rcl_shutdown();
    assert_int_equal(test_init(64u << 20), 0);
    assert_int_equal(depot_now(), 0);
}

/* A step of the program's own in fork()'s prepare handlers, taken with
 * every library lock held: registered before the library's first call,
 * which registers the library's, it runs after them (prepare handlers run
 * in the reverse of their order). */
static void (*_Atomic at_fork_prepare)(void);

static void fork_prepare_step(void)
{
    void (*step)(void) = atomic_load(&at_fork_prepare);

    if (step)
        step();
}

__attribute__((constructor)) static void fork_prepare_step_register(void)
{
    pthread_atfork(fork_prepare_step, NULL, NULL);
}

struct giver {
    void          **blocks;
    unsigned        n;
    pthread_barrier_t listed;     /* all but the last block freed */
    atomic_bool     go;
};

static struct giver *forked_giver;

/* Its first free registers the thread, the next fill its list, and the
 * last hands the full list to the depot. */
static void *give_at_fork(void *arg)
{
    struct giver *g = arg;

    for (unsigned i = 0; i + 1 < g->n; i++)
        rcl_free(g->blocks[i]);
    pthread_barrier_wait(&g->listed);
    while (!atomic_load(&g->go))
        test_sleep_ms(1);
    rcl_free(g->blocks[g->n - 1]);
    return NULL;
}

/* The giver comes in once the fork holds the depot's locks: it takes its
 * batch's room in the depot's bound, then waits for the lock. */
static void let_the_giver_in(void)
{
    atomic_store(&forked_giver->go, true);
    while (rcl__depot_held() == 0)
        test_sleep_ms(1);
}

/* A thread hands its full list to the depot as another forks: the fork
 * waits for no such thread (the batch's room is taken before the lock),
 * and the child, which has no such thread and no such batch, counts only
 * the batches its depot holds - none here - in rcl_stats.depot_held and
 * against the depot's bound. */
TEST_WITH(a_child_forked_as_a_thread_hands_the_depot_a_batch_counts_no_such_batch, cache_setup,
          test_teardown)
{
    enum { SIZE = 1000 };
    static void *p[RCL_BCACHE_DEPTH_MAX];
    struct giver g = { .blocks = p, .n = rcl__bcache_depth_start(rcl__bcache_class(SIZE)) + 2 };
    pthread_t th;

    assert_int_equal(depot_now(), 0);
    for (unsigned i = 0; i < g.n; i++)
        assert_non_null(p[i] = rcl_alloc(SIZE, RCL_DEFAULT));
    assert_int_equal(pthread_barrier_init(&g.listed, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, give_at_fork, &g), 0);
    pthread_barrier_wait(&g.listed);
    forked_giver = &g;
    atomic_store(&at_fork_prepare, let_the_giver_in);
    pid_t pid = fork();
    if (pid == 0)
        _exit(depot_now() == 0 ? 0 : 1);
    atomic_store(&at_fork_prepare, NULL);
    assert_true(pid > 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&g.listed);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(depot_now(), (g.n - 2) * rcl_alloc_charge(SIZE));
}

/* A thread's cached blocks were charged to the budget that rcl_shutdown()
 * ended: after a restart its next allocation registers it in the new
 * budget, its cache emptied, before a block is handed out - never one
 * from the old cache, uncharged. */
struct restarted {
    pthread_barrier_t step;
    size_t            usage;      /* rcl_usage() with the block allocated */
};

static void *restarted_main(void *arg)
{
    struct restarted *r = arg;
    rcl_free(rcl_alloc(64, RCL_DEFAULT));        /* cached */
    pthread_barrier_wait(&r->step);              /* the library restarts */
    pthread_barrier_wait(&r->step);
    void *p = rcl_alloc(64, RCL_DEFAULT);
    r->usage = rcl_usage();
    rcl_free(p);
    return NULL;
}

TEST_WITH(a_restart_empties_every_threads_cache_before_it_serves, cache_setup, test_teardown)
{
    struct restarted r = { .usage = 0 };
    pthread_t th;
    pthread_barrier_init(&r.step, NULL, 2);
    assert_int_equal(pthread_create(&th, NULL, restarted_main, &r), 0);
    pthread_barrier_wait(&r.step);
    assert_true(cached_now() >= rcl_alloc_charge(64));
    rcl_shutdown();
    assert_int_equal(test_init(64u << 20), 0);
    pthread_barrier_wait(&r.step);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.step);
    assert_int_equal(r.usage, rcl_alloc_charge(64));
    assert_int_equal(usage_now(), 0);
}

/* Producers and consumers of mixed sizes, two of each, through one queue:
 * every block arrives whole (its bytes checked by the consumer), none is
 * handed out twice while live, and once all are freed nothing is charged
 * and the depot is within its bound - the depot's lists and the caches'
 * charges under the load it exists for. */
#define PC_QUEUE 64
static struct {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    void           *slot[PC_QUEUE];
    unsigned        head, tail, producers_left;
} pcq = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, { 0 }, 0, 0, 0 };
static _Atomic unsigned long pc_bad;

static void pc_put(void *p)
{
    pthread_mutex_lock(&pcq.lock);
    while (pcq.tail - pcq.head == PC_QUEUE)
        pthread_cond_wait(&pcq.cond, &pcq.lock);
    pcq.slot[pcq.tail++ % PC_QUEUE] = p;
    pthread_cond_broadcast(&pcq.cond);
    pthread_mutex_unlock(&pcq.lock);
}

static void *pc_get(void)
{
    void *p = NULL;
    pthread_mutex_lock(&pcq.lock);
    while (pcq.tail == pcq.head && pcq.producers_left)
        pthread_cond_wait(&pcq.cond, &pcq.lock);
    if (pcq.tail != pcq.head)
        p = pcq.slot[pcq.head++ % PC_QUEUE];
    pthread_cond_broadcast(&pcq.cond);
    pthread_mutex_unlock(&pcq.lock);
    return p;
}

static void *pc_producer(void *arg)
{
    unsigned long seed = (unsigned long)(uintptr_t)arg * 2654435761u + 1;
    int n = test_scale(20000);
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = (size_t)8 << (seed >> 60) % 10;       /* 8 B - 4 KiB */
        size += (seed >> 40) % size;
        unsigned char *p = rcl_alloc(size, RCL_DEFAULT);
        assert_non_null(p);
        memcpy(p, &size, sizeof(size));
        memset(p + sizeof(size), (int)(size & 0xff), size - sizeof(size));
        pc_put(p);
    }
    pthread_mutex_lock(&pcq.lock);
    pcq.producers_left--;
    pthread_cond_broadcast(&pcq.cond);
    pthread_mutex_unlock(&pcq.lock);
    return NULL;
}

static void *pc_consumer(void *arg)
{
    unsigned char *p;
    (void)arg;
    while ((p = pc_get()) != NULL) {
        size_t size;
        memcpy(&size, p, sizeof(size));
        for (size_t i = sizeof(size); i < size; i++)
            if (p[i] != (unsigned char)(size & 0xff)) {
                atomic_fetch_add(&pc_bad, 1);
                break;
            }
        rcl_free(p);
    }
    return NULL;
}

TEST_WITH(producers_and_consumers_of_mixed_sizes_lose_nothing, cache_setup, test_teardown)
{
    pthread_t th[4];
    struct rcl_stats st;

    pcq.head = pcq.tail = 0;
    pcq.producers_left = 2;
    atomic_store(&pc_bad, 0);
    for (uintptr_t i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, pc_producer, (void *)(i + 1)), 0);
        assert_int_equal(pthread_create(&th[2 + i], NULL, pc_consumer, NULL), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&pc_bad), 0);
    rcl_stats_get(&st);
    assert_int_equal(st.bad_frees, 0);
    assert_true(st.depot_held <= rcl_limit() / 512);
    assert_int_equal(usage_now(), 0);
}

TEST_WITH(a_cached_block_serves_every_size_of_its_class, cache_setup, test_teardown)
{
    char *a = rcl_alloc(4600, RCL_DEFAULT);     /* class 4097..4608 */
    rcl_free(a);
    char *c = rcl_alloc(4608, RCL_DEFAULT);
    assert_ptr_equal(c, a);
    memset(c, 1, 4608);
    assert_int_equal(usage_now(), rcl_alloc_charge(4608));
    rcl_free(c);
}

/* A size's class: what rcl_alloc_charge() says a block of it costs,
 * less what the smallest block's costs beyond its 16 bytes. */
static size_t class_size(size_t size)
{
    return rcl_alloc_charge(size) - (rcl_alloc_charge(1) - 16);
}

/* A size is served by the smallest class that holds it, and above 512
 * bytes no class is a step or more larger than the sizes it serves: an
 * eighth over glibc, a quarter over mimalloc and jemalloc, whose own
 * classes are that far apart. */
TEST(every_size_takes_the_smallest_class_that_holds_it)
{
    for (size_t n = 1; n <= 65536; n++) {
        size_t cls = class_size(n);
        assert_true(cls >= n);
        if (n > 1 && cls != class_size(n - 1))
            assert_int_equal(class_size(n - 1), n - 1);
        if (n > 512)
            assert_true(cls - n < n >> RCL__CLASS_BITS);
    }
}

/* The classes up to 4 KiB are read from a table by the size's 16-byte
 * step, those above worked out from its highest bit: the two agree
 * wherever both apply. */
TEST(the_table_and_the_highest_bit_agree_on_the_classes_from_1_to_4_kib)
{
    for (size_t n = 1025; n <= 4096; n++)
        assert_int_equal(rcl__bcache_class(n), rcl__bcache_class_above_1k(n));
    assert_int_equal(rcl__bcache_cap(rcl__bcache_class(4096)), 4096);
    assert_int_equal(rcl__bcache_class(4097), rcl__bcache_class(4096) + 1);
}

/* Over mimalloc and jemalloc the classes above 512 bytes are the
 * backend's own, four per doubling: a block there costs what the backend
 * would round its size to, and a mix of sizes spreads over no more
 * classes - each holding pages and cached blocks of its own - than it
 * does in the backend. Twice as many classes held 30 - 40 % more than
 * raw jemalloc for a mix of sizes with a few blocks of each live. */
TEST(classes_above_512_b_are_the_backends_own)
{
    if (!RCL__BE_COARSE_CLASSES) {
        print_message("skipped: glibc fits a chunk to 16 bytes, it has no classes to follow\n");
        skip();
    }
#ifdef RCL_SANITIZED
    print_message("skipped: under a sanitizer the backend is the sanitizer's libc, not the "
                  "allocator the classes follow\n");
    skip();
#endif
    for (size_t n = 513; n <= 65536; n++) {
        void *p = rcl__be_malloc(n);
        assert_non_null(p);
        assert_int_equal(class_size(n), rcl__be_usable_size(p));
        rcl__be_free(p);
    }
}

TEST_WITH(blocks_above_64k_are_not_cached, cache_setup, test_teardown)
{
    rcl_free(rcl_alloc(65537, RCL_DEFAULT));
    rcl_free(rcl_aligned_alloc(64, 64, RCL_DEFAULT));
    rcl_vfree(rcl_valloc(100, RCL_DEFAULT));
    assert_int_equal(cached_now(), 0);
}

TEST_WITH(zeroed_allocation_from_the_cache_is_zeroed, cache_setup, test_teardown)
{
    unsigned char *d = rcl_alloc(200, RCL_DEFAULT);
    memset(d, 0xff, 200);
    rcl_free(d);
    unsigned char *z = rcl_calloc(25, 8, RCL_DEFAULT);
    assert_ptr_equal(z, d);
    for (int i = 0; i < 200; i++)
        assert_int_equal(z[i], 0);
    rcl_free(z);
}

TEST_WITH(double_free_of_a_cached_block_is_caught, cache_setup, test_teardown)
{
    void *p = rcl_alloc(64, RCL_DEFAULT);
    rcl_free(p);
    size_t cached = cached_now();
    errno = 0;
    rcl_free(p);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(cached_now(), cached);      /* not cached twice */
    void *a = rcl_alloc(64, RCL_DEFAULT), *b = rcl_alloc(64, RCL_DEFAULT);
    assert_ptr_not_equal(a, b);
    rcl_free(a);
    rcl_free(b);
}

/* A block resized in place must still fit any size of its new class when
 * it is cached, or a later allocation would overrun it (ASan checks). */
TEST_WITH(realloc_keeps_blocks_fit_for_their_class, cache_setup, test_teardown)
{
    void *p = rcl_alloc(24, RCL_DEFAULT);
    for (size_t n = 25; n <= 1024; n += 7) {
        p = rcl_realloc(p, n, RCL_DEFAULT);
        assert_non_null(p);
        memset(p, 1, n);
    }
    rcl_free(p);
    void *q = rcl_alloc(1024, RCL_DEFAULT);
    memset(q, 2, 1024);
    rcl_free(q);
    assert_int_equal(usage_now(), 0);
}

TEST_WITH(realloc_within_the_block_stays_in_place, cache_setup, test_teardown)
{
    char *p = rcl_alloc(100, RCL_DEFAULT);     /* a 112-byte class block */
    memcpy(p, "kept", 5);
    assert_ptr_equal(rcl_realloc(p, 110, RCL_DEFAULT), p);
    assert_string_equal(p, "kept");
    assert_int_equal(usage_now(), rcl_alloc_charge(110));
    rcl_free(p);
}

TEST_WITH(usage_sync_empties_the_callers_cache, cache_setup, test_teardown)
{
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    assert_int_not_equal(cached_now(), 0);
    rcl_usage_sync();
    assert_int_equal(cached_now(), 0);
}

/* A lowered limit takes the caller's own cache back at once, as
 * rcl_usage_sync() does: kept, it is budget charged under the old limit
 * that the caller's next allocations would spend unchecked. */
TEST_WITH(a_lowered_limit_empties_the_callers_cache, cache_setup, test_teardown)
{
    struct rcl_stats st;

    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    assert_int_not_equal(cached_now(), 0);
    rcl_stats_get(&st);
    assert_int_equal(rcl_set_limit(st.limit / 2), 0);
    assert_int_equal(cached_now(), 0);
}

/* Another thread's cache goes back when it next leaves its fast path after
 * a drain request - the same point its stock goes back. */
struct peer {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             step;
};

/* Waits for the other thread to reach step `step`. */
static void peer_wait(struct peer *pr, int step)
{
    pthread_mutex_lock(&pr->lock);
    while (pr->step != step)
        pthread_cond_wait(&pr->cond, &pr->lock);
    pthread_mutex_unlock(&pr->lock);
}

/* Reaches step `mine`, then waits for `wait_for` (0: does not wait). */
static void peer_step(struct peer *pr, int mine, int wait_for)
{
    pthread_mutex_lock(&pr->lock);
    pr->step = mine;
    pthread_cond_broadcast(&pr->cond);
    pthread_mutex_unlock(&pr->lock);
    if (wait_for)
        peer_wait(pr, wait_for);
}

/* Lets the peer past its step 2, where its cache must be gone by the
 * time it reaches step 3, and then to its end. */
static void peer_finish_finding_its_cache_taken(struct peer *pr, pthread_t th)
{
    peer_step(pr, 2, 3);
    assert_int_equal(cached_now(), 0);
    peer_step(pr, 4, 0);
    pthread_join(th, NULL);
}

static void *peer_main(void *arg)
{
    struct peer *pr = arg;
    void *p[8], *last = rcl_alloc(64, RCL_DEFAULT);
    for (int i = 0; i < 8; i++)
        p[i] = rcl_alloc(64, RCL_DEFAULT);
    for (int i = 0; i < 8; i++)
        rcl_free(p[i]);
    peer_step(pr, 1, 2);        /* cache full; wait for the drain request */
    rcl_free(last);             /* leaves the fast path: drains */
    peer_step(pr, 3, 4);
    return NULL;
}

TEST_WITH(drain_request_empties_another_threads_cache, cache_setup, test_teardown)
{
    struct peer pr = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, peer_main, &pr), 0);
    peer_wait(&pr, 1);
    assert_cached(cached_now(), 64, 8);
    rcl_usage_sync();
    peer_finish_finding_its_cache_taken(&pr, th);
}

/* A drain request that reaches a thread while it reclaims is not lost:
 * the thread gives its stock and cache back at its first slow path after
 * the reclaim. The shrinker holds the peer inside reclaim meanwhile. */
struct reclaiming_peer {
    struct peer pr;
    int         scanned;
};

static unsigned long hold_count(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    return 1ul << 20;
}

static unsigned long hold_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct reclaiming_peer *rp = priv;
    (void)sc;
    if (!rp->scanned++)
        peer_step(&rp->pr, 1, 2);   /* inside reclaim; wait for the request */
    return 0;
}

static void *reclaiming_peer_main(void *arg)
{
    struct reclaiming_peer *rp = arg;
    void *p[8], *last = rcl_alloc(64, RCL_DEFAULT);
    for (int i = 0; i < 8; i++)
        p[i] = rcl_alloc(64, RCL_DEFAULT);
    for (int i = 0; i < 8; i++)
        rcl_free(p[i]);
    rcl_reclaim(1, RCL_DEFAULT);
    peer_step(&rp->pr, 3, 4);
    rcl_free(last);             /* the first slow path after reclaim */
    peer_step(&rp->pr, 5, 6);
    return NULL;
}

TEST_WITH(drain_request_during_reclaim_is_kept, cache_setup, test_teardown)
{
    static const struct rcl_shrinker_ops ops = { hold_count, hold_scan };
    struct reclaiming_peer rp = { { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 }, 0 };
    struct rcl_shrinker *s = rcl_shrinker_register("hold", &ops, &rp, NULL);
    pthread_t th;
    assert_non_null(s);
    assert_int_equal(pthread_create(&th, NULL, reclaiming_peer_main, &rp), 0);
    peer_wait(&rp.pr, 1);
    rcl_usage_sync();
    peer_step(&rp.pr, 2, 3);
    assert_cached(cached_now(), 64, 8);    /* asked, not met yet */
    peer_step(&rp.pr, 4, 5);
    assert_int_equal(cached_now(), 0);
    peer_step(&rp.pr, 6, 0);
    pthread_join(th, NULL);
    rcl_shrinker_unregister(s);
}

/* A request that must be met before the thread hands anything out again -
 * a lowered limit's - takes its next allocation off the fast path even
 * where its list holds a block for it: the whole cache goes back first,
 * every class of it, as the kernel drains the per-CPU charge stocks of a
 * memory cgroup whose memory.max was lowered below its usage. The
 * allocation's entry tests the watch word with the busy mark
 * (src/alloc.c). */
static const size_t peer_sizes[3] = { 16, 100, 200 };

static size_t peer_cached(void)
{
    size_t sum = 0;
    for (int k = 0; k < 3; k++)
        sum += 8 * rcl_alloc_charge(backend_served(peer_sizes[k]));
    return sum;
}

static void *allocating_peer_main(void *arg)
{
    struct peer *pr = arg;
    void *p[3][8];
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 3; k++)
            p[k][i] = rcl_alloc(backend_served(peer_sizes[k]), RCL_DEFAULT);
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 3; k++)
            rcl_free(p[k][i]);
    peer_step(pr, 1, 2);        /* cache full; wait for the limit to fall */
    void *q = rcl_alloc(backend_served(peer_sizes[0]), RCL_DEFAULT);  /* a hit, but for the request */
    peer_step(pr, 3, 4);
    rcl_free(q);
    return NULL;
}

/* Starts allocating_peer_main() and waits until its cache is full; skips
 * the test where the backend lacks the classes it fills. */
static pthread_t allocating_peer_with_a_full_cache(struct peer *pr)
{
    pthread_t th;

    if (no_backend_class(peer_sizes[2], 9))
        skip();
    assert_int_equal(pthread_create(&th, NULL, allocating_peer_main, pr), 0);
    peer_wait(pr, 1);
    assert_int_equal(cached_now(), peer_cached());
    return th;
}

TEST_WITH(a_lowered_limit_takes_another_threads_next_allocation_off_its_cache, cache_setup,
          test_teardown)
{
    struct peer pr = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    struct rcl_stats st;
    pthread_t th = allocating_peer_with_a_full_cache(&pr);
    rcl_stats_get(&st);
    assert_int_equal(rcl_set_limit(st.limit / 2), 0);
    peer_finish_finding_its_cache_taken(&pr, th);
}

/* An allocation that reclaim cannot serve asks the other threads for
 * their caches and stocks before it fails, as a lowered limit does: the
 * next allocation of each, a hit or not, gives its cache back first. */
TEST_WITH(a_failing_allocation_takes_another_threads_next_allocation_off_its_cache,
          cache_setup, test_teardown)
{
    struct peer pr = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    struct rcl_stats st;
    pthread_t th = allocating_peer_with_a_full_cache(&pr);
    rcl_stats_get(&st);
    assert_null(rcl_alloc(st.limit - st.wmark_min - KiB, RCL_DEFAULT | RCL__NOWARN));
    assert_int_equal(errno, ENOMEM);
    peer_finish_finding_its_cache_taken(&pr, th);
}

/* Blocks a thread cached before rcl_shutdown() were charged to a budget
 * that is gone: when the thread comes back after rcl_init() they go back
 * to the backend, and its new stock backs no stale block. */

static void *stale_peer_main(void *arg)
{
    struct peer *pr = arg;
    void *p[8];
    for (int i = 0; i < 8; i++)
        p[i] = rcl_alloc(64, RCL_DEFAULT);
    for (int i = 0; i < 8; i++)
        rcl_free(p[i]);
    peer_step(pr, 1, 2);        /* cache full; the library restarts meanwhile */
    void *q = rcl_alloc(backend_served(100), RCL_DEFAULT);
    peer_step(pr, 3, 4);
    rcl_free(q);
    return NULL;
}

TEST_WITH(cache_from_before_shutdown_is_dropped, cache_setup, test_teardown)
{
    if (no_backend_class(100, 1))
        skip();
    struct peer pr = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stale_peer_main, &pr), 0);
    peer_wait(&pr, 1);
    assert_cached(cached_now(), 64, 8);
    rcl_shutdown();
    assert_int_equal(test_init(64 * MiB), 0);
    peer_step(&pr, 2, 3);
    assert_int_equal(cached_now(), 0);
    assert_int_equal(rcl_usage(), rcl_alloc_charge(backend_served(100)));
    peer_step(&pr, 4, 0);
    pthread_join(th, NULL);
    assert_int_equal(usage_now(), 0);
}

/* A thread's cached blocks are charged memory it holds for itself, so
 * their bytes are bounded: limit / 128, up to 8 MiB. With a 1 MiB budget
 * that is 8 KiB, whatever it frees. */
TEST_WITH(thread_caches_no_more_than_its_bound, cache_setup, test_teardown)
{
    enum { N = 16 };
    void *p[N];

    rcl_shutdown();
    assert_int_equal(test_init(1 * MiB), 0);
    for (int i = 0; i < N; i++)
        p[i] = rcl_alloc(1100 + 1024 * (size_t)i, RCL_DEFAULT);   /* 1100 .. 16460 B */
    for (int i = 0; i < N; i++)
        rcl_free(p[i]);
    assert_int_not_equal(cached_now(), 0);
    assert_true(cached_now() <= 8 * 1024);
    rcl_usage_sync();
    assert_true(cached_after_run(64, 1000) <= 8 * 1024);
    assert_int_equal(rcl_usage(), 0);
}

/* Blocks of a class the thread no longer uses must not hold the byte
 * bound for good (a program that moves from one size to the next): a
 * full cache turns the first frees of a new class away, but after 256 of
 * them the other classes go back to the backend and the class in use is
 * cached again. */
TEST_WITH(classes_no_longer_used_make_room_for_the_one_in_use, cache_setup, test_teardown)
{
    if (no_backend_class(64, 128))
        skip();
    size_t old_size = backend_served(64), new_size = backend_served(128);
    rcl_shutdown();
    assert_int_equal(test_init(1 * MiB), 0);
    size_t full = cached_after_run(old_size, 200);
    assert_true(full > 8 * 1024 - rcl_alloc_charge(old_size) && full <= 8 * 1024);
    rcl_free(rcl_alloc(new_size, RCL_DEFAULT));
    assert_int_equal(cached_now(), full);
    for (int i = 0; i < 512; i++)
        rcl_free(rcl_alloc(new_size, RCL_DEFAULT));
    assert_int_equal(cached_now(), rcl_alloc_charge(new_size));
    assert_int_equal(usage_now(), 0);
}

/* What an eviction gives back leaves its charge in the thread's stock, as
 * a drain's does, and the free that evicted leaves the stock within its
 * bound, as every other free does: budget with no memory behind it, the
 * lists' worth past stock_max, would stay with a thread that may allocate
 * nothing more, while the others reclaim for want of it. */
TEST_WITH(a_free_that_evicts_other_classes_leaves_the_stock_within_its_bound, cache_setup,
          test_teardown)
{
    enum { OLD = 100, NEW = 2000 };
    static void *p[NEW];
    size_t size = backend_served(64);   /* turned away a block at a time */
    size_t old_cached = cached_after_run(4000, OLD);
    long over = 0;

    assert_true(old_cached > 2 * (size_t)rd(rcl__self.stock_max));
    for (int i = 0; i < NEW; i++)
        assert_non_null(p[i] = rcl_alloc(size, RCL_DEFAULT));
    for (int i = 0; i < NEW; i++) {
        rcl_free(p[i]);
        long past = rd(rcl__self.stock) - rd(rcl__self.stock_max);
        over = past > over ? past : over;
    }
    assert_true(cached_now() < old_cached);     /* the 4000-byte class went */
    assert_int_equal(over, 0);
}

/* Caches under the load the design is not built for: four threads, sizes
 * of 8 B - 8 KiB, a live set of 2000 blocks each (about ten times a
 * thread's cache bound at this budget), half of every thread's blocks
 * freed by the next thread, and memory malloc'ed beside the library.
 * Every block keeps its contents, no allocation fails, the caches never
 * hold more than their bounds, and nothing is left charged. */
enum { CROSS_THREADS = 4, CROSS_LIVE = 2000, CROSS_ROUNDS = 20 };

struct cross {
    pthread_barrier_t *barrier;
    struct cross      *all;
    unsigned           id;
    unsigned char    **mine;      /* [CROSS_LIVE] */
    size_t            *sizes;
    size_t             cached_max;
    unsigned long      failed, corrupt;
};

static size_t cross_size(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return (size_t)8 << (*x % 11) >> (*x >> 8) % 4;    /* 1 B - 8 KiB, mostly small */
}

static void *cross_main(void *arg)
{
    struct cross *c = arg;
    uint32_t x = 2463534242u + c->id;
    void *outside = malloc(1 << 20);     /* not the library's */

    test_written(memset(outside, 1, 1 << 20));
    for (int r = 0; r < CROSS_ROUNDS; r++) {
        for (int i = 0; i < CROSS_LIVE; i++) {
            size_t n = cross_size(&x) + 1;
            unsigned char *p = rcl_alloc(n, RCL_DEFAULT);
            if (!p) {
                c->failed++;
                c->mine[i] = NULL;
                continue;
            }
            memset(p, (int)(c->id * 31 + (unsigned)i), n);
            c->mine[i] = p;
            c->sizes[i] = n;
        }
        pthread_barrier_wait(c->barrier);
        /* the previous thread's odd blocks, then this thread's even ones */
        const struct cross *prev = &c->all[(c->id + CROSS_THREADS - 1) % CROSS_THREADS];
        for (int i = 1; i < CROSS_LIVE; i += 2) {
            unsigned char *p = prev->mine[i];
            if (p && (p[0] != (unsigned char)(prev->id * 31 + (unsigned)i) ||
                      p[prev->sizes[i] - 1] != p[0]))
                c->corrupt++;
            rcl_free(p);
        }
        for (int i = 0; i < CROSS_LIVE; i += 2) {
            unsigned char *p = c->mine[i];
            if (p && (p[0] != (unsigned char)(c->id * 31 + (unsigned)i) || p[c->sizes[i] - 1] != p[0]))
                c->corrupt++;
            rcl_free(p);
        }
        struct rcl_stats st;
        rcl_stats_get(&st);
        if (st.thread_cached > c->cached_max)
            c->cached_max = st.thread_cached;
        pthread_barrier_wait(c->barrier);
    }
    free(outside);
    rcl_usage_sync();
    return NULL;
}

TEST_WITH(caches_hold_under_many_threads_mixed_sizes_and_cross_thread_frees, cache_setup,
          test_teardown)
{
    static unsigned char *blocks[CROSS_THREADS][CROSS_LIVE];
    static size_t sizes[CROSS_THREADS][CROSS_LIVE];
    struct cross c[CROSS_THREADS];
    pthread_t th[CROSS_THREADS];
    pthread_barrier_t barrier;
    struct rcl_stats st;

    pthread_barrier_init(&barrier, NULL, CROSS_THREADS);
    for (unsigned i = 0; i < CROSS_THREADS; i++) {
        c[i] = (struct cross){ .barrier = &barrier, .all = c, .id = i, .mine = blocks[i],
                               .sizes = sizes[i] };
        assert_int_equal(pthread_create(&th[i], NULL, cross_main, &c[i]), 0);
    }
    for (unsigned i = 0; i < CROSS_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    rcl_stats_get(&st);
    for (unsigned i = 0; i < CROSS_THREADS; i++) {
        assert_int_equal(c[i].failed, 0);
        assert_int_equal(c[i].corrupt, 0);
        assert_int_not_equal(c[i].cached_max, 0);
        /* thread_cached sums every thread's cache: each holds at most
         * limit / 128 */
        assert_true(c[i].cached_max <= CROSS_THREADS * (st.limit / 128));
    }
    assert_true(st.peak <= st.limit);
    assert_int_equal(usage_now(), 0);
}

/* The budget counts cached blocks: a charge that finds it short takes the
 * caller's cached blocks back before failing or reclaiming, as the kernel
 * drains its per-CPU lists before it gives up on an allocation. Without
 * reclaim (no DIRECT_RECLAIM) the allocation below fits only then. */
TEST_WITH(short_budget_takes_back_the_callers_cached_blocks, cache_setup, test_teardown)
{
    struct rcl_stats st;

    rcl_shutdown();
    assert_int_equal(test_init(1 * MiB), 0);
    rcl_free(rcl_alloc(4000, RCL_DEFAULT));
    assert_int_equal(cached_now(), rcl_alloc_charge(4096));   /* class 3841..4096 */
    rcl_stats_get(&st);
    size_t room = st.limit - st.wmark_min;      /* all an ordinary context may have */
    void *big = rcl_alloc(test_fitting(room), RCL__NOWARN);
    assert_non_null(big);
    assert_int_equal(cached_now(), 0);
    assert_int_equal(rcl_usage(), room);
    rcl_free(big);
}

/* A thread's cache goes back to the backend when it exits. Under
 * AddressSanitizer, LeakSanitizer fails this program at exit if it did
 * not: the blocks would be reachable from nowhere. */
static void *cache_and_exit(void *arg)
{
    (void)arg;
    void *p[8];
    for (int i = 0; i < 8; i++)
        p[i] = rcl_alloc(16 + 100 * (size_t)i, RCL_DEFAULT);
    for (int i = 0; i < 8; i++)
        rcl_free(p[i]);
    return NULL;
}

TEST_WITH(thread_exit_empties_its_cache, cache_setup, test_teardown)
{
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cache_and_exit, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(cached_now(), 0);
    assert_int_equal(usage_now(), 0);
}

/* What a thread saw of its lists: where they are, and, for the 16-byte
 * class, what they held and how deep they were after its first
 * allocation, before it left them 200 blocks deeper. */
struct lists_seen {
    const void *bc;
    unsigned len, depth;
    pthread_barrier_t *all;
};

static void *note_lists(void *arg)
{
    struct lists_seen *s = arg;
    unsigned c = rcl__bcache_class(16);
    void *p[200];

    for (int i = 0; i < 200; i++) {
        if (!(p[i] = rcl_alloc(16, RCL_DEFAULT)))
            return (void *)1;
        if (i == 0) {
            s->bc = rcl__self.bc;
            s->len = rcl__self.bc->len[c + 1];
            s->depth = rcl__self.bc->depth[c + 1];
        }
    }
    for (int i = 0; i < 200; i++)
        rcl_free(p[i]);         /* left in its lists: a used page */
    if (s->all)
        pthread_barrier_wait(s->all);
    return NULL;
}

/* An exited thread's lists serve the next thread that starts, emptied and
 * at their first depths, as glibc hands an exited thread's arena to the
 * next one: a thread that comes and goes maps no page of its own. */
TEST_WITH(an_exited_threads_lists_serve_the_next_thread, cache_setup, test_teardown)
{
    struct lists_seen a = { 0 }, b = { 0 };
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, note_lists, &a), 0);
    pthread_join(th, NULL);
    assert_true(test_mapped(a.bc));      /* kept, not unmapped and mapped anew */
    assert_int_equal(pthread_create(&th, NULL, note_lists, &b), 0);
    pthread_join(th, NULL);
    assert_non_null(a.bc);
    assert_ptr_equal(b.bc, a.bc);
    /* The second found them as the first did: empty, at their start. */
    assert_int_equal(b.len, 0);
    assert_int_equal(a.len, 0);
    assert_int_equal(b.depth, a.depth);
    assert_true(b.depth <= rcl__bcache_depth_start(rcl__bcache_class(16)) + 1);
    assert_int_equal(cached_now(), 0);
    assert_int_equal(usage_now(), 0);
}

/* A thread's lists lie at the end of their page: the words the fast
 * paths load and store - each class's top, length and depth, first in
 * the lists - are not at the first bytes of a page, where the first block
 * of a fresh page or slab has its header, and a core that compares the
 * low 12 bits of addresses does not take one for the other
 * (src/block_cache.c, lists_in()). */
TEST_WITH(a_threads_lists_lie_at_the_end_of_their_page, cache_setup, test_teardown)
{
    struct lists_seen s = { 0 };
    const struct rcl_bcache_lists *bc;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, note_lists, &s), 0);
    pthread_join(th, NULL);
    bc = s.bc;
    assert_non_null(bc);
    assert_true((uintptr_t)bc % 64 == 0);
    assert_true(((uintptr_t)bc & (page - 1)) + sizeof(*bc) <= page);
    assert_true(((uintptr_t)bc & (page - 1)) + sizeof(*bc) > page - 64);
    assert_true(((uintptr_t)&bc->top[0] & (page - 1)) >= 64);
    assert_int_equal(cached_now(), 0);
    assert_int_equal(usage_now(), 0);
}

/* At most RCL_BCACHE_LISTS_KEPT exited threads' lists are kept, and a
 * trim gives them back to the system: a burst of threads leaves no more
 * than that behind, and a trim nothing. */
TEST_WITH(a_trim_gives_back_the_lists_no_thread_took, cache_setup, test_teardown)
{
    enum { N = RCL_BCACHE_LISTS_KEPT + 4 };
    struct lists_seen s[N];
    pthread_barrier_t all;
    pthread_t th[N];
    int kept = 0;

    rcl__bcache_trim();
    pthread_barrier_init(&all, NULL, N);
    for (int i = 0; i < N; i++) {
        s[i] = (struct lists_seen){ .all = &all };
        assert_int_equal(pthread_create(&th[i], NULL, note_lists, &s[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&all);
    for (int i = 0; i < N; i++)
        kept += test_mapped(s[i].bc);
    assert_int_equal(kept, RCL_BCACHE_LISTS_KEPT);
    rcl__bcache_trim();
    for (int i = 0; i < N; i++)
        assert_false(test_mapped(s[i].bc));
    assert_int_equal(usage_now(), 0);
}

/*
 * rcl_stats_get() counts every allocation and every free, whichever path
 * served it - a cache hit, a miss, a depot batch, a slab's fill, a list
 * that spilled or went to the depot, a block above the classes, an
 * aligned or mapped one - as the kernel's per-CPU event counters count
 * each event where it happens and sum the CPUs on a read: each thread
 * counts its own, and a read sums the threads, those gone included
 * (src/thread.c).
 */
struct counts {
    unsigned long allocs, frees;
};

static struct counts counts_now(void)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    return (struct counts){ st.allocations, st.frees };
}

static void assert_counted(struct counts before, unsigned long allocs, unsigned long frees)
{
    struct counts now = counts_now();
    assert_int_equal(now.allocs - before.allocs, allocs);
    assert_int_equal(now.frees - before.frees, frees);
}

/* Live sets of n blocks of 8 B - 128 KiB (log-uniform, a fixed seed;
 * every 16th block aligned to 256 bytes, every 64th mapped), allocated
 * and freed `passes` times, FIFO or LIFO: what it allocated. */
static unsigned long churn(int n, int passes, bool fifo, unsigned seed)
{
    void **p = malloc((size_t)n * sizeof(*p));
    unsigned long made = 0;

    assert_non_null(p);
    for (int pass = 0; pass < passes; pass++) {
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            size_t size = (size_t)8 << (seed >> 16) % 14;
            size += (seed >> 8) % size;
            if (i % 64 == 63)
                p[i] = rcl_valloc(size, RCL_DEFAULT);
            else if (i % 16 == 15)
                p[i] = rcl_aligned_alloc(256, size, RCL_DEFAULT);
            else
                p[i] = rcl_alloc(size, RCL_DEFAULT);
            assert_non_null(p[i]);
            memset(p[i], 0x3c, size < 64 ? size : 64);
            made++;
        }
        for (int i = 0; i < n; i++)
            rcl_free(p[fifo ? i : n - 1 - i]);
    }
    free(p);
    return made;
}

TEST_WITH(every_allocation_and_free_of_a_thread_is_counted, cache_setup, test_teardown)
{
    struct counts before = counts_now();
    unsigned long made = 0;

    /* One block at a time (the hit path), live sets the lists hold, and
     * one larger than any list, whose blocks spill to the slabs and the
     * backend and come back a batch at a time. */
    made += churn(1, 500, true, 1);
    made += churn(64, 20, true, 2);
    made += churn(64, 20, false, 3);
    made += churn(2000, 4, true, 4);
    made += churn(2000, 4, false, 5);
    rcl_free(NULL);                             /* not a free */
    assert_counted(before, made, made);
    /* A drain moves the blocks out of the lists, and counts nothing. */
    rcl_usage_sync();
    assert_counted(before, made, made);
}

/* A list counts its hits and frees in its length word (src/block_cache.h)
 * and a slow path that visits it moves a large count of hits to the
 * thread's own, long before the word would wrap: the counts read the
 * same across the move, and the list counts on from nothing. The hits
 * are made up here - 2^40 of them would take an hour - as if the list
 * had served them, and taken as many frees. */
TEST_WITH(a_lists_large_count_of_hits_moves_to_the_thread_and_stays_counted, cache_setup,
          test_teardown)
{
    unsigned c = rcl__bcache_class(64);
    const uint64_t made_up = 1ull << 41;

    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    rcl_free(rcl_alloc(64, RCL_DEFAULT));       /* a hit: the list is mapped */
    struct counts before = counts_now();
    _Atomic uint64_t *w = &rcl__self.bc->len[c + 1];
    atomic_fetch_add(w, made_up << 16);
    assert_counted(before, made_up, made_up);
    rcl_usage_sync();                           /* the drain visits the list */
    assert_true(rcl__list_hits(atomic_load(w)) == 0);
    assert_counted(before, made_up, made_up);
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    rcl_free(rcl_alloc(64, RCL_DEFAULT));
    assert_true(rcl__list_hits(atomic_load(w)) == 1);
    assert_counted(before, made_up + 2, made_up + 2);
}

static void *churn_and_exit(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    return (void *)(uintptr_t)(churn(200, 10, seed & 1, seed) + churn(1, 100, true, seed));
}

/* Blocks freed on another thread go through the depot, batches of them
 * serve this thread's allocations, and threads exit with blocks in their
 * lists: each event counted once. */
TEST_WITH(allocations_and_frees_across_threads_are_counted_once, cache_setup, test_teardown)
{
    struct counts before = counts_now();
    unsigned long made = 0;
    void *p[256];
    pthread_t th[4];

    for (int round = 0; round < 4; round++) {
        alloc_here_free_there(p, 256, 0);
        for (int i = 0; i < 256; i++)
            assert_non_null(p[i] = rcl_alloc((size_t)32 << (i % 4 * 2), RCL_DEFAULT));
        for (int i = 0; i < 256; i++)
            rcl_free(p[i]);
        made += 2 * 256 + 1;                    /* and the freeing thread's first */
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn_and_exit, (void *)(uintptr_t)(i + 7)),
                         0);
    for (int i = 0; i < 4; i++) {
        void *theirs;
        pthread_join(th[i], &theirs);
        made += (unsigned long)(uintptr_t)theirs;
    }
    assert_counted(before, made, made);
}

/* A restart (rcl_shutdown(), then a new budget) counts from nothing,
 * though this thread counted before it and its lists held blocks. */
TEST_WITH(a_restart_counts_from_nothing, cache_setup, test_teardown)
{
    churn(64, 10, false, 11);               /* blocks left in the lists */
    rcl_shutdown();
    assert_int_equal(test_init(64 * MiB), 0);
    struct counts zero = { 0, 0 };
    assert_counted(zero, 0, 0);
    unsigned long made = churn(64, 10, true, 12);
    assert_counted(zero, made, made);
}

static void *cache_then_wait(void *arg)
{
    pthread_barrier_t *b = arg;
    rcl_free(rcl_alloc(16, RCL_DEFAULT));
    rcl_free(rcl_alloc(16, RCL_DEFAULT));   /* a cache hit */
    pthread_barrier_wait(b);                /* counted, its block cached */
    pthread_barrier_wait(b);                /* the fork is done */
    return NULL;
}

/* A child of fork() keeps the counts of the threads that did not come
 * with it. */
TEST_WITH(a_forked_child_keeps_every_threads_counts, cache_setup, test_teardown)
{
    pthread_barrier_t b;
    pthread_t th;

    assert_int_equal(pthread_barrier_init(&b, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, cache_then_wait, &b), 0);
    pthread_barrier_wait(&b);
    struct counts at_fork = counts_now();
    pid_t pid = fork();
    if (pid == 0) {
        struct counts child = counts_now();
        rcl_free(rcl_alloc(16, RCL_DEFAULT));
        struct counts after = counts_now();
        _exit(child.allocs == at_fork.allocs && child.frees == at_fork.frees &&
                      after.allocs == at_fork.allocs + 1 && after.frees == at_fork.frees + 1
                  ? 0
                  : 1);
    }
    assert_true(pid > 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    pthread_barrier_wait(&b);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&b);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

TEST_MAIN();
