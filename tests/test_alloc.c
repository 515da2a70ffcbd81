/* SPDX-License-Identifier: MIT */
/*
 * The rcl_alloc family: what each call charges, and what bad input gets.
 */
#include "helpers.h"
#include "internal.h"
#include "backend.h"
#include "block_cache.h"
#include "slots.h"

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static size_t usage_now(void)
{
    rcl_usage_sync();
    return rcl_usage();
}

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* A block charges what it takes from the allocator: never less than the
 * size asked and its header, and what rcl_alloc_charge() says. */
TEST(alloc_charges_what_the_block_takes)
{
    size_t before = usage_now();
    void *p = rcl_alloc(1000, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(usage_now(), before + rcl_alloc_charge(1000));
    assert_true(rcl_alloc_charge(1000) >= 1000 + 16);
    memset(p, 0xab, 1000);
    rcl_free(p);
    assert_int_equal(usage_now(), before);
}

TEST(zero_flag_and_calloc_give_zeroed_memory)
{
    /* dirty some memory of the same size class first */
    for (int i = 0; i < 8; i++) {
        unsigned char *d = rcl_alloc(4096, RCL_DEFAULT);
        memset(d, 0xff, 4096);
        rcl_free(d);
    }
    unsigned char *p = rcl_alloc(4096, RCL_DEFAULT | RCL__ZERO);
    assert_true(all_zero(p, 4096));
    unsigned char *q = rcl_calloc(64, 64, RCL_DEFAULT);
    assert_true(all_zero(q, 4096));
    assert_int_equal(usage_now(), 2 * rcl_alloc_charge(4096));
    rcl_free(p);
    rcl_free(q);
}

/* A bit no RCL_* flag has is a caller's mistake: reported at every entry
 * point that takes flags, and the call served as the known bits ask (as
 * the kernel's slab warns of and masks off bits it cannot honour). */
#define NO_FLAG 0x00100000u
TEST(allocations_with_unknown_flag_bits_are_reported_and_served)
{
    unsigned char *p = rcl_alloc(64, RCL_DEFAULT | NO_FLAG);
    assert_non_null(p);
    assert_last_report_has("rcl_alloc: flags 0x10000f carry bits no RCL_* flag has "
                           "(0x100000); served as DEFAULT");
    unsigned char *z = rcl_calloc(8, 8, RCL_DEFAULT | NO_FLAG);
    assert_true(all_zero(z, 64));
    assert_last_report_has("served as DEFAULT|ZERO");
    void *a = rcl_aligned_alloc(64, 100, RCL_NOFS | NO_FLAG);
    assert_non_null(a);
    assert_last_report_has("rcl_aligned_alloc: flags");
    void *v = rcl_valloc(4096, RCL_DEFAULT | NO_FLAG);
    assert_non_null(v);
    assert_last_report_has("rcl_valloc: flags");
    p = rcl_realloc(p, 200, RCL_DEFAULT | NO_FLAG);
    assert_non_null(p);
    assert_last_report_has("rcl_realloc: flags");
    assert_int_equal(test_reports_take(), 5);
    rcl_free(p);
    rcl_free(z);
    rcl_free(a);
    rcl_vfree(v);
    assert_int_equal(usage_now(), 0);
}

/* A calloc whose count times size overflows is refused (EOVERFLOW), and
 * its flags are checked all the same: the bits no flag has were reported
 * only by a calloc that reached rcl_alloc(). */
TEST(a_calloc_that_overflows_with_unknown_bits_is_reported)
{
    assert_fails_with(rcl_calloc(SIZE_MAX / 2, 4, RCL_DEFAULT | NO_FLAG), EOVERFLOW);
    assert_last_report_has("rcl_calloc: flags 0x10000f carry bits no RCL_* flag has "
                           "(0x100000); served as DEFAULT");
    assert_int_equal(test_reports_take(), 1);
    assert_int_equal(usage_now(), 0);
}

/* The same for the calls that take flags without allocating a block. */
TEST(charges_reclaims_and_pool_allocations_with_unknown_bits_are_reported)
{
    assert_int_equal(rcl_charge(4096, RCL_NOWAIT | NO_FLAG), 0);
    assert_last_report_has("rcl_charge: flags");
    assert_last_report_has("served as KSWAPD_RECLAIM|NOWARN");
    rcl_uncharge(4096);
    (void)rcl_reclaim(4096, RCL_DEFAULT | NO_FLAG);
    assert_last_report_has("rcl_reclaim: flags");
    struct rcl_mempool *pool = rcl_mempool_create(1, 32);
    assert_non_null(pool);
    void *e = rcl_mempool_alloc(pool, RCL_DEFAULT | NO_FLAG);
    assert_non_null(e);
    assert_last_report_has("rcl_mempool_alloc: flags");
    assert_int_equal(test_reports_take(), 3);
    rcl_mempool_free(e, pool);
    rcl_mempool_destroy(pool);
}

/* A charge of 0 bytes charges nothing, and its flags are checked as every
 * call's are: the bits no flag has are reported there too (they passed
 * unseen until a charge of some size). */
TEST(a_charge_of_0_bytes_with_unknown_bits_is_reported_and_charges_nothing)
{
    assert_int_equal(rcl_charge(0, RCL_DEFAULT | NO_FLAG), 0);
    assert_last_report_has("rcl_charge: flags 0x10000f carry bits no RCL_* flag has "
                           "(0x100000); served as DEFAULT");
    assert_int_equal(test_reports_take(), 1);
    assert_int_equal(usage_now(), 0);
}

/* The same for a reclaim of 0 bytes, which asks for nothing. */
TEST(a_reclaim_of_0_bytes_with_unknown_bits_is_reported_and_frees_nothing)
{
    assert_int_equal(rcl_reclaim(0, RCL_DEFAULT | NO_FLAG), 0);
    assert_last_report_has("rcl_reclaim: flags 0x10000f carry bits no RCL_* flag has "
                           "(0x100000); served as DEFAULT");
    assert_int_equal(test_reports_take(), 1);
    assert_int_equal(usage_now(), 0);
}

/* rcl_might_alloc() takes flags as an allocation does, and says so of the
 * bits no flag has. (They went to the lock checker unseen.) */
TEST(a_might_alloc_with_unknown_bits_is_reported)
{
    rcl_might_alloc(RCL_DEFAULT | NO_FLAG);
    assert_last_report_has("rcl_might_alloc: flags 0x10000f carry bits no RCL_* flag has "
                           "(0x100000); served as DEFAULT");
    assert_int_equal(test_reports_take(), 1);
}

TEST(zero_size_is_einval_and_charges_nothing)
{
    assert_fails_with(rcl_alloc(0, RCL_DEFAULT), EINVAL);
    assert_fails_with(rcl_calloc(0, 16, RCL_DEFAULT), EINVAL);
    assert_fails_with(rcl_aligned_alloc(64, 0, RCL_DEFAULT), EINVAL);
    assert_fails_with(rcl_valloc(0, RCL_DEFAULT), EINVAL);
    assert_int_equal(usage_now(), 0);
}

TEST(overflowing_sizes_are_eoverflow)
{
    assert_fails_with(rcl_calloc(SIZE_MAX / 2, 3, RCL_DEFAULT), EOVERFLOW);
    assert_fails_with(rcl_alloc(SIZE_MAX, RCL_DEFAULT), EOVERFLOW);
    /* NOFAIL too: test_nofail.c, test_impossible_nofail_requests_fail_at_once */
    assert_fails_with(rcl_valloc(SIZE_MAX - 10, RCL_DEFAULT), EOVERFLOW);
    assert_int_equal(usage_now(), 0);
}

/* No block could have these sizes: rcl_alloc_charge() says 0 for them. */
TEST(charge_of_an_impossible_size_is_zero)
{
    assert_int_equal(rcl_alloc_charge(0), 0);
    assert_int_equal(rcl_alloc_charge(SIZE_MAX), 0);
    assert_true(rcl_alloc_charge(1) > 0);
}

/* A realloc to a size no block can have fails, and the block stays the
 * caller's, its bytes and its charge unchanged. */
TEST(realloc_to_an_overflowing_size_keeps_the_block)
{
    char *p = rcl_alloc(100, RCL_DEFAULT);
    assert_non_null(p);
    memset(p, 0x5a, 100);
    size_t before = usage_now();
    assert_fails_with(rcl_realloc(p, SIZE_MAX, RCL_DEFAULT), EOVERFLOW);
    assert_fails_with(rcl_realloc(p, SIZE_MAX - 8, RCL_DEFAULT), EOVERFLOW);
    assert_int_equal(usage_now(), before);
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], 0x5a);
    rcl_free(p);
    assert_int_equal(usage_now(), 0);
}

/* Larger than the budget can ever give: E2BIG, so the caller knows that
 * retrying is pointless. */
TEST(larger_than_the_budget_is_e2big)
{
    assert_fails_with(rcl_alloc(65 * MiB, RCL_DEFAULT | RCL__NOWARN), E2BIG);
    assert_int_equal(test_report_count(), 0);
    assert_fails_with(rcl_alloc(65 * MiB, RCL_DEFAULT), E2BIG);
    assert_int_equal(test_report_count(), 1);  /* reported unless NOWARN */
    assert_int_equal(usage_now(), 0);
}

static long long monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec;
}

/* Failures are reported rate-limited: three in the same second make one
 * report at most (none where one was made earlier in that second). */
TEST(failures_within_a_second_make_one_report_at_most)
{
    for (int tries = 0; tries < 5; tries++) {
        unsigned before = test_report_count();
        long long start = monotonic_s();
        for (int i = 0; i < 3; i++)
            assert_fails_with(rcl_alloc(65 * MiB, RCL_DEFAULT), E2BIG);
        if (monotonic_s() != start)
            continue;       /* a second ended in between: each may report */
        assert_true(test_report_count() - before <= 1);
        return;
    }
    fail_msg("five tries each straddled the end of a second");
}

/* Below the limit but above what an ordinary request may take of it (the
 * limit less its reserve): E2BIG as well, at once, not ENOMEM after a
 * reclaim that could never have made room. */
TEST(larger_than_the_budget_less_its_reserve_is_e2big)
{
    struct rcl_stats st;

    rcl_stats_get(&st);
    assert_true(st.wmark_min > 64 * KiB);
    assert_fails_with(rcl_alloc(64 * MiB - st.wmark_min + 64 * KiB, RCL_DEFAULT | RCL__NOWARN), E2BIG);
    assert_int_equal(usage_now(), 0);
}

TEST(free_of_null_does_nothing)
{
    rcl_free(NULL);
    rcl_vfree(NULL);
    assert_int_equal(test_report_count(), 0);
}

/* A pointer the library did not hand out is reported and left alone. */
TEST(foreign_pointer_is_reported_and_left_alone)
{
    char *mine = rcl_alloc(256, RCL_DEFAULT);
    char *theirs = calloc(1, 256);
    size_t before = usage_now();
    struct rcl_stats st;

    errno = 0;
    rcl_free(theirs + 64);             /* interior of someone else's block */
    assert_int_equal(errno, EINVAL);
    errno = 0;
    rcl_free(mine + 64);               /* interior of ours */
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("not a block from this library");
    assert_int_equal(usage_now(), before);
    rcl_stats_get(&st);
    assert_int_equal(st.bad_frees, 2);
    memset(mine, 1, 256);              /* still ours, still valid */
    rcl_free(mine);
    free(theirs);
}

/* A realloc of a pointer the library did not hand out is refused as its
 * free is: reported, NULL with EINVAL, counted among the bad frees, and
 * the memory left as it was. */
TEST(realloc_of_a_foreign_pointer_is_reported_and_left_alone)
{
    char *mine = rcl_alloc(256, RCL_DEFAULT);
    char *theirs = calloc(1, 256);
    size_t before = usage_now();
    struct rcl_stats st;

    memset(mine, 0x5a, 256);
    assert_fails_with(rcl_realloc(theirs + 64, 512, RCL_DEFAULT), EINVAL);
    assert_fails_with(rcl_realloc(mine + 64, 512, RCL_DEFAULT), EINVAL);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("rcl_realloc(");
    assert_last_report_has("not a block from this library");
    assert_int_equal(usage_now(), before);
    rcl_stats_get(&st);
    assert_int_equal(st.bad_frees, 2);
    for (int i = 0; i < 256; i++)
        assert_int_equal(mine[i], 0x5a);
    rcl_free(mine);
    free(theirs);
}

/*
 * The one foreign pointer a free cannot report: one with nothing
 * readable in the 16 bytes in front of it, as at the start of a mapping
 * the program made, below which lies a guard page or nothing at all. The
 * free reads its header there and faults, as free(3) does. To know first
 * that those bytes can be read would take a system call at the free of
 * every block whose header ends a page - about one in 256 - on the path
 * every pair takes. The child dies of SIGSEGV; the parent's budget and
 * reports are as they were. (A guard page rather than a hole: a hole
 * could be mapped again by anything before the free.)
 */
TEST(a_foreign_pointer_with_nothing_readable_in_front_faults_as_free_does)
{
    const char *san = test_sanitizer();

    if (san) {
        print_message("skipped under %s: its own handler reports the fault, as it should; "
                      "the plain run holds this test\n", san);
        skip();
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m, page, PROT_NONE), 0);
    size_t before = usage_now();
    int status;

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        test_forked_child_dies_of_its_crashes();
        rcl_free(m + page);
        _exit(0);
    }
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    assert_int_equal(test_report_count(), 0);
    assert_int_equal(usage_now(), before);
    assert_int_equal(munmap(m, 2 * page), 0);
}

/*
 * The header's second word (the check word, the backend offset, the
 * class and the epoch: src/alloc.c) is what a free trusts; a program that
 * writes over any byte of it - an underflow of the block - gets a
 * reported bad free, and the block and the budget are left alone. Sizes
 * in each of the three kinds of class (16-byte, 64-byte and a-step-of-a-
 * doubling steps) and above them.
 */
TEST(a_header_written_over_is_reported_and_left_alone)
{
    static const size_t sizes[] = { 24, 640, 3000, 100000 };
    unsigned bad = 0;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = rcl_alloc(sizes[i], RCL_DEFAULT);
        assert_non_null(p);
        size_t before = usage_now();
        for (int b = 1; b <= 8; b++) {
            for (unsigned flip = 0x01; flip <= 0x80; flip <<= 1) {
                p[-b] ^= (unsigned char)flip;
                errno = 0;
                rcl_free(p);
                assert_int_equal(errno, EINVAL);
                assert_int_equal(test_report_count(), ++bad);
                p[-b] ^= (unsigned char)flip;
            }
        }
        assert_int_equal(usage_now(), before);
        rcl_free(p);
        assert_int_equal(usage_now(), before - rcl_alloc_charge(sizes[i]));
    }
    assert_last_report_has("not a block from this library");
}

/*
 * A header made without the process's secret: the address word with
 * every class byte, and with a 64-byte block's charge or none in the
 * check word. A thread the library has not met yet has no secret in its
 * tag; none of these may pass its free for a block (the class byte
 * would index its lists), nor a registered thread's.
 */
static unsigned forged_frees(void)
{
    uint64_t buf[4];
    unsigned char *p = (unsigned char *)&buf[2];
    uint32_t addr = (uint32_t)(uintptr_t)p;
    unsigned refused = 0;

    for (unsigned b = 0; b < 256; b++) {
        for (int charged = 0; charged < 2; charged++) {
            buf[0] = 64;
            buf[1] = (uint64_t)b << 40 | (addr ^ (charged ? (uint32_t)rcl_alloc_charge(64) : 0));
            errno = 0;
            rcl_free(p);
            refused += errno == EINVAL;
        }
    }
    return refused;
}

static void *forged_frees_thread(void *arg)
{
    *(unsigned *)arg = forged_frees();
    return NULL;
}

TEST(a_header_forged_without_the_secret_is_reported)
{
    pthread_t th;
    unsigned new_thread = 0;

    assert_int_equal(pthread_create(&th, NULL, forged_frees_thread, &new_thread), 0);
    pthread_join(th, NULL);
    assert_int_equal(new_thread, 512);
    assert_int_equal(forged_frees(), 512);
    assert_int_equal(test_report_count(), 1024);
    assert_int_equal(usage_now(), 0);
}

/* The size word is not what a free of a block of a class trusts for its
 * charge: its class, in the checked word, says what to uncharge (a free
 * asks of the size word only whether it holds a list's link instead). A
 * size written over is caught where the size is used - rcl_realloc()
 * copies it - and the block still frees for exactly its charge. */
TEST(a_size_word_written_over_is_caught_by_realloc)
{
    size_t before = usage_now();
    size_t *p = rcl_alloc(200, RCL_DEFAULT);
    assert_non_null(p);
    p[-2] = 5000;                       /* the size word, now another class's */
    errno = 0;
    assert_null(rcl_realloc(p, 300, RCL_DEFAULT));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(usage_now(), before + rcl_alloc_charge(200));
    rcl_free(p);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(usage_now(), before);
}

/* Freeing twice: caught while the memory is still readable. Under a
 * sanitizer the read of freed memory is itself the (correct) report, so
 * the test runs only in the plain build. */
TEST(double_free_is_caught)
{
    test_skip_if_freed_reads_report();
    /* a size the allocator caches, with a neighbour kept alive */
    void *keep = rcl_alloc(1024, RCL_DEFAULT);
    void *p = rcl_alloc(1024, RCL_DEFAULT);
    size_t before = usage_now();
    rcl_free(p);
    assert_int_equal(usage_now(), before - rcl_alloc_charge(1024));
    rcl_free(p);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(usage_now(), before - rcl_alloc_charge(1024));
    rcl_free(keep);
}

/* A second free of a block in its thread's cache, at the end of its list
 * (its link NULL) and above another block (its link that block's
 * address): each is reported and left alone, and the list still hands
 * out both, last freed first. A cached block is told by its header's
 * first word, which holds the link where a block handed out holds its
 * size; the sizes at the classes' two ends, 1 B and 64 KiB, are not
 * taken for links. The plain run holds this test, as it does
 * double_free_is_caught. */
TEST(a_second_free_of_a_cached_block_is_caught_at_either_end_of_its_list)
{
    test_skip_if_freed_reads_report();
    void *keep = rcl_alloc(16, RCL_DEFAULT);
    size_t before = usage_now();
    void *a = rcl_alloc(16, RCL_DEFAULT), *b = rcl_alloc(16, RCL_DEFAULT);
    assert_non_null(a);
    assert_non_null(b);

    rcl_free(a);
    errno = 0;
    rcl_free(a);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 1);
    rcl_free(b);
    errno = 0;
    rcl_free(b);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(test_report_count(), 2);
    assert_reports_have("already freed");

    void *c = rcl_alloc(16, RCL_DEFAULT), *d = rcl_alloc(16, RCL_DEFAULT);
    assert_ptr_equal(c, b);
    assert_ptr_equal(d, a);
    rcl_free(c);
    rcl_free(d);
    assert_int_equal(usage_now(), before);

    static const size_t ends[] = { 1, 65536 };
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
        void *p = rcl_alloc(ends[i], RCL_DEFAULT);
        assert_non_null(p);
        rcl_free(p);
        p = rcl_alloc(ends[i], RCL_DEFAULT);
        assert_non_null(p);
        rcl_free(p);
    }
    assert_int_equal(test_report_count(), 2);
    assert_int_equal(usage_now(), before);
    rcl_free(keep);
}

/* A block written over after its free, then freed again: the second free
 * is still reported, and the list hands the block out once. A block's
 * state lies in its header, in front of it, where a write within the
 * block does not reach; kept in the free block itself (a mark beside its
 * link, as the headerless designs docs/design.md weighs would keep it),
 * the write would erase it, and the second free would list the block
 * twice, for two owners ("What the header still costs, and why it
 * stays"). 64 blocks of each size go first, so that over glibc and
 * jemalloc the small classes' lists hold slots of their slabs too. */
TEST(a_block_written_over_after_its_free_is_still_caught_freed_again)
{
    test_skip_if_freed_reads_report();
    enum { N = 64 };
    static const size_t sizes[] = { 16, 64, 256, 1024, 4096 };
    size_t before = usage_now();

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        void *p[N];
        for (unsigned j = 0; j < N; j++) {
            p[j] = rcl_alloc(n, RCL_DEFAULT);
            assert_non_null(p[j]);
        }
        for (unsigned j = 0; j < N; j++)
            rcl_free(p[j]);

        void *a = rcl_alloc(n, RCL_DEFAULT), *b = rcl_alloc(n, RCL_DEFAULT);
        assert_non_null(a);
        assert_non_null(b);
        rcl_free(b);
        rcl_free(a);
        memset(a, 0x5a, n);
        errno = 0;
        rcl_free(a);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(test_report_count(), i + 1);

        void *c = rcl_alloc(n, RCL_DEFAULT), *d = rcl_alloc(n, RCL_DEFAULT);
        void *e = rcl_alloc(n, RCL_DEFAULT);
        assert_ptr_equal(c, a);
        assert_ptr_equal(d, b);
        assert_non_null(e);
        assert_ptr_not_equal(e, a);
        rcl_free(c);
        rcl_free(d);
        rcl_free(e);
    }
    assert_reports_have("already freed");
    assert_int_equal(usage_now(), before);
}

/* A mapped block freed twice: the header page in front of it stays
 * mapped for a while (the library's own memory, not the block's, so this
 * holds under the sanitizers too), and the second free is a reported bad
 * free, not a fault. */
TEST(double_free_of_a_mapped_block_is_reported)
{
    void *v = rcl_valloc(3 * 4096, RCL_DEFAULT);
    assert_non_null(v);
    size_t before = usage_now();
    rcl_vfree(v);
    size_t after = usage_now();
    assert_true(after < before);
    errno = 0;
    rcl_vfree(v);
    assert_int_equal(errno, EINVAL);
    rcl_free(v);
    assert_int_equal(test_report_count(), 2);
    assert_int_equal(usage_now(), after);
}

TEST(realloc_follows_the_size)
{
    unsigned char *p = rcl_alloc(100, RCL_DEFAULT);
    for (int i = 0; i < 100; i++)
        p[i] = (unsigned char)i;
    p = rcl_realloc(p, 5000, RCL_DEFAULT | RCL__ZERO);
    assert_non_null(p);
    assert_int_equal(usage_now(), rcl_alloc_charge(5000));
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], i);
    assert_true(all_zero(p + 100, 4900));
    p = rcl_realloc(p, 10, RCL_DEFAULT);
    assert_int_equal(usage_now(), rcl_alloc_charge(10));
    for (int i = 0; i < 10; i++)
        assert_int_equal(p[i], i);
    rcl_free(p);
    assert_int_equal(usage_now(), 0);
}

/* The room the block at p has, its header's included: a slot's, or what
 * the backend gave it. */
static size_t room_of(void *p)
{
    struct rcl_hdr *h = rcl__hdr_of(p);

    if (slot_at(p))
        return rcl__bcache_cap(rcl__bcache_class(h->size)) + sizeof(*h);
    return rcl__be_usable_size(h);
}

/* A block rcl_realloc() shrinks holds no more than a fresh block of its
 * new size, give or take the backend's rounding, and is charged as one:
 * a charge that followed the size while the block kept its old room
 * would let a program hold many times its budget (a 60,000-byte block
 * kept for 16 bytes). The kernel's krealloc() keeps the object for a
 * shrink, and its charge with it; here the charge follows the size, so
 * the memory does too. Two shrinks: into a small class (glibc splits the
 * chunk) and by less than half above the classes (mimalloc keeps such a
 * block where it is: it moves). */
TEST(a_block_shrunk_by_realloc_holds_what_a_fresh_one_would)
{
    static const size_t from[] = { 60000, 256 * KiB }, to[] = { 16, 160 * KiB };

    for (int c = 0; c < 2; c++) {
        unsigned char *p = rcl_alloc(from[c], RCL_DEFAULT), *fresh;
        assert_non_null(p);
        memset(p, 0x5a, from[c]);
        assert_non_null(p = rcl_realloc(p, to[c], RCL_DEFAULT));
        assert_int_equal(usage_now(), rcl_alloc_charge(to[c]));
        assert_true(p[0] == 0x5a && p[to[c] - 1] == 0x5a);
        assert_non_null(fresh = rcl_alloc(to[c], RCL_DEFAULT));
        size_t slack = to[c] > 64 * KiB ? (size_t)sysconf(_SC_PAGESIZE) : 64;
        assert_true(room_of(p) <= room_of(fresh) + slack);
        rcl_free(fresh);
        rcl_free(p);
    }
}

TEST(realloc_of_null_allocates)
{
    void *p = rcl_realloc(NULL, 64, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal(usage_now(), rcl_alloc_charge(64));
    rcl_free(p);
}

TEST(realloc_to_zero_is_einval_and_keeps_the_block)
{
    char *p = rcl_alloc(64, RCL_DEFAULT);
    strcpy(p, "still here");
    assert_fails_with(rcl_realloc(p, 0, RCL_DEFAULT), EINVAL);
    assert_string_equal(p, "still here");
    assert_int_equal(usage_now(), rcl_alloc_charge(64));
    rcl_free(p);
}

/* A realloc refused for its size (0, or one the header overflows) looks
 * at the block all the same: a pointer the library did not hand out is
 * reported and counted as a bad free, as it is for any other size, where
 * the refusal was quiet. */
TEST(realloc_of_a_foreign_pointer_is_reported_whatever_the_size)
{
    const size_t sizes[] = { 0, SIZE_MAX, SIZE_MAX - 8, 100 };
    char *theirs = calloc(1, 256);
    struct rcl_stats st;

    assert_non_null(theirs);
    for (unsigned i = 0; i < 4; i++) {
        assert_fails_with(rcl_realloc(theirs + 64, sizes[i], RCL_DEFAULT), EINVAL);
        assert_int_equal(test_report_count(), i + 1);
        assert_last_report_has("rcl_realloc(");
        assert_last_report_has("not a block from this library");
    }
    rcl_stats_get(&st);
    assert_int_equal(st.bad_frees, 4);
    free(theirs);
}

/* The same for a block freed already, while its memory is still
 * readable (plain build only, as double_free_is_caught). */
TEST(realloc_of_a_freed_block_to_size_0_is_reported)
{
    test_skip_if_freed_reads_report();
    void *keep = rcl_alloc(1024, RCL_DEFAULT);
    void *p = rcl_alloc(1024, RCL_DEFAULT);
    assert_non_null(keep);
    assert_non_null(p);
    rcl_free(p);
    assert_fails_with(rcl_realloc(p, 0, RCL_DEFAULT), EINVAL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_realloc(");
    assert_last_report_has("already freed");
    rcl_free(keep);
}

/* On failure realloc leaves the block as it was, and its charge too. */
TEST(failed_realloc_keeps_the_block)
{
    char *p = rcl_alloc(64, RCL_DEFAULT);
    strcpy(p, "kept");
    assert_fails_with(rcl_realloc(p, 100 * MiB, RCL_DEFAULT | RCL__NOWARN), E2BIG);
    assert_string_equal(p, "kept");
    assert_int_equal(usage_now(), rcl_alloc_charge(64));
    rcl_free(p);
}

/* What an aligned block at p charges: within the classes what the
 * backend holds for it (its usable size from the block's start, the
 * front part the header sits in, and what the backend keeps beside it),
 * above them the size and the front part to the byte, as a plain
 * block's. */
static size_t aligned_charge(const unsigned char *p, size_t align, size_t size)
{
    size_t held = rcl__be_held(p - align);

    return held <= 64 * KiB ? held : size + align + RCL__BE_BLOCK_OVERHEAD;
}

TEST(aligned_alloc_aligns_and_charges_the_size)
{
    for (size_t align = 1; align <= 65536; align <<= 1) {
        unsigned char *p = rcl_aligned_alloc(align, 300, RCL_DEFAULT | RCL__ZERO);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % align, 0);
        assert_true(all_zero(p, 300));
        /* the size and the front part the header sits in, at least */
        if (align <= 16) {
            assert_int_equal(usage_now(), rcl_alloc_charge(300));
        } else {
            assert_true(usage_now() >= 300 + align);
            assert_int_equal(usage_now(), aligned_charge(p, align, 300));
        }
        p = rcl_realloc(p, 600, RCL_DEFAULT);   /* moves to a plain block */
        assert_non_null(p);
        assert_int_equal(usage_now(), rcl_alloc_charge(600));
        rcl_free(p);
        assert_int_equal(usage_now(), 0);
    }
}

/* The backend pads an aligned block beyond the size and the alignment
 * asked: glibc splits a chunk no smaller than its minimum off either end
 * only, jemalloc rounds to a class with the alignment, mimalloc finds an
 * aligned spot in a block larger by up to the alignment again. Within
 * the classes the charge is what it holds, and a free takes back exactly
 * the charge. */
TEST(an_aligned_block_is_charged_what_the_backend_holds_for_it)
{
    const size_t sizes[] = { 15, 300, 4000, 100000 };

    for (size_t align = 32; align <= 2 * MiB; align <<= 1) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            unsigned char *p = rcl_aligned_alloc(align, sizes[i], RCL_DEFAULT);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % align, 0);
            assert_int_equal(usage_now(), aligned_charge(p, align, sizes[i]));
            assert_true(usage_now() >= sizes[i] + align);
            rcl_free(p);
            assert_int_equal(usage_now(), 0);
        }
    }
}

/* A program that sets glibc's M_MMAP_THRESHOLD below 64 KiB has it map
 * aligned blocks within the classes. */
#define LOW_MMAP_THRESHOLD (32 * KiB)

static int low_mmap_threshold_setup(void **state)
{
#if !defined(RCL_SANITIZED) && !defined(RCL_BACKEND_MIMALLOC) && !defined(RCL_BACKEND_JEMALLOC)
    assert_int_equal(mallopt(M_MMAP_THRESHOLD, (int)LOW_MMAP_THRESHOLD), 1);
#endif
    return test_setup(state);
}

/* glibc's default: the dynamic threshold, once set, stays off. */
static int low_mmap_threshold_teardown(void **state)
{
#if !defined(RCL_SANITIZED) && !defined(RCL_BACKEND_MIMALLOC) && !defined(RCL_BACKEND_JEMALLOC)
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    return test_teardown(state);
}

/* A mapped chunk keeps the word a chunk in the heap lends to the next
 * one: its usable size is the chunk less two words, not one. The chunk
 * is what the block holds, as for a chunk in the heap; it charged a word
 * less. glibc's own words say what the chunk is: its size word, less its
 * flags (the low three bits). */
TEST_WITH(an_aligned_block_glibc_maps_is_charged_its_whole_chunk, low_mmap_threshold_setup,
          low_mmap_threshold_teardown)
{
#if defined(RCL_SANITIZED) || defined(RCL_BACKEND_MIMALLOC) || defined(RCL_BACKEND_JEMALLOC)
    print_message("skipped: glibc's own malloc only\n");
    skip();
#else
    enum { MAX = 64 };
    unsigned char *blocks[MAX];
    int n = 0, mapped = 0;

    /* Blocks the top of the heap has room for are not mapped: fill it. */
    for (; n < MAX && !mapped; n++) {
        struct mallinfo2 before = mallinfo2();
        size_t used = usage_now();
        blocks[n] = rcl_aligned_alloc(64, 40000, RCL_DEFAULT);
        assert_non_null(blocks[n]);
        const size_t *chunk = (const size_t *)(blocks[n] - 64);
        assert_int_equal(usage_now() - used, chunk[-1] & ~(size_t)7);
        mapped = mallinfo2().hblks > before.hblks;
        assert_int_equal(mapped, (chunk[-1] & 2) != 0);
    }
    assert_true(mapped);
    while (n)
        rcl_free(blocks[--n]);
    assert_int_equal(usage_now(), 0);
#endif
}

/* Zeroed by the backend's aligned calloc, where it has one: a block it
 * hands back after the program wrote it reads zero all the same. */
TEST(a_zeroed_aligned_block_reads_zero_when_its_memory_is_reused)
{
    for (int round = 0; round < 3; round++) {
        unsigned char *p = rcl_aligned_alloc(4096, 1 * MiB, RCL_DEFAULT | RCL__ZERO);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 4096, 0);
        assert_true(all_zero(p, 1 * MiB));
        memset(p, 0xff, 1 * MiB);
        rcl_free(p);
    }
    assert_int_equal(usage_now(), 0);
}

/* Pages of [p, p + n) in the resident set, p page-aligned. */
static size_t resident_pages(void *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = n / page, in = 0;
    unsigned char *vec = malloc(pages);

    assert_non_null(vec);
    assert_int_equal(mincore(p, pages * page, vec), 0);
    for (size_t i = 0; i < pages; i++)
        in += vec[i] & 1;
    free(vec);
    return in;
}

/* Whether fewer than one in eight of the whole pages of [p, p + n) are
 * in the resident set. */
static bool mostly_out(unsigned char *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *first = (unsigned char *)(((uintptr_t)p + page - 1) & ~(page - 1));
    size_t pages = (n - (size_t)(first - p)) / page;

    return resident_pages(first, pages * page) < pages / 8;
}

#define TABLE (64 * MiB)

/* Room for a table of 64 MiB, the backend's free memory given back first
 * so that the table's is fresh. */
static int table_setup(void **state)
{
    (void)state;
    if (test_init(256 * MiB) != 0)
        return -1;
    rcl__be_trim();
    return 0;
}

static void skip_where_calloc_writes_every_byte(void)
{
    if (test_under_sanitizer("tsan")) {
        print_message("skipped under tsan: its calloc writes every byte\n");
        skip();
    }
}

/* glibc's calloc, and mimalloc's and jemalloc's, leave memory fresh from
 * the system unwritten: a table a program fills sparsely is resident only
 * where it is filled. A memset of the whole block made all of it
 * resident at once. */
TEST_WITH(calloc_of_a_large_block_leaves_its_fresh_pages_out_of_the_resident_set, table_setup,
          test_teardown)
{
    skip_where_calloc_writes_every_byte();
    unsigned char *p = rcl_calloc(TABLE / 4096, 4096, RCL_DEFAULT);
    assert_non_null(p);
    assert_true(mostly_out(p, TABLE));
    assert_true(all_zero(p, TABLE));
    rcl_free(p);
}

/* The backend may hand the same memory back, written: its calloc zeroes
 * what is not fresh. */
TEST_WITH(calloc_of_a_large_block_reads_zero_when_its_memory_is_reused, table_setup,
          test_teardown)
{
    for (int round = 0; round < 3; round++) {
        unsigned char *p = rcl_calloc(1, TABLE, RCL_DEFAULT);
        assert_non_null(p);
        assert_true(all_zero(p, TABLE));
        memset(p, 0xff, TABLE);
        rcl_free(p);
        unsigned char *q = rcl_alloc(TABLE, RCL_DEFAULT | RCL__ZERO);
        assert_non_null(q);
        assert_true(all_zero(q, TABLE));
        memset(q, 0xff, TABLE);
        rcl_free(q);
    }
}

/* A table grown with RCL__ZERO is resident only where the program wrote
 * it: the part the grow adds, fresh from the system, is not written. */
TEST_WITH(realloc_grown_with_zero_leaves_the_fresh_part_out_of_the_resident_set, table_setup,
          test_teardown)
{
    skip_where_calloc_writes_every_byte();
    unsigned char *p = rcl_alloc(1 * MiB, RCL_DEFAULT | RCL__ZERO);
    assert_non_null(p);
    memset(p, 0xab, 1 * MiB);
    p = rcl_realloc(p, TABLE, RCL_DEFAULT | RCL__ZERO);
    assert_non_null(p);
    assert_true(mostly_out(p + 1 * MiB, TABLE - 1 * MiB));
    assert_int_equal(p[1 * MiB - 1], 0xab);
    assert_true(all_zero(p + 1 * MiB, TABLE - 1 * MiB));
    rcl_free(p);
}

/* What a grow adds reads zero when the backend hands back memory the
 * program wrote: a block freed dirty, the memory a shrink gave back, or
 * the room a block shrunk in place keeps past its new size. Over
 * mimalloc a block of 8 MiB lies in memory its heap keeps, as written,
 * for the next one; one of 64 MiB is mapped for itself. */
static void grow_zeroed_over_written_memory(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    for (int round = 0; round < 3; round++) {
        unsigned char *d = rcl_alloc(size, RCL_DEFAULT);
        assert_non_null(d);
        memset(d, 0xff, size);
        rcl_free(d);
        unsigned char *p = rcl_alloc(1 * MiB, RCL_DEFAULT);
        assert_non_null(p);
        memset(p, 0xab, 1 * MiB);
        p = rcl_realloc(p, size, RCL_DEFAULT | RCL__ZERO);
        assert_non_null(p);
        assert_int_equal(p[1 * MiB - 1], 0xab);
        assert_true(all_zero(p + 1 * MiB, size - 1 * MiB));
        memset(p, 0xff, size);
        p = rcl_realloc(p, 1 * MiB, RCL_DEFAULT);
        assert_non_null(p);
        p = rcl_realloc(p, size, RCL_DEFAULT | RCL__ZERO);
        assert_non_null(p);
        assert_int_equal(p[1 * MiB - 1], 0xff);
        assert_true(all_zero(p + 1 * MiB, size - 1 * MiB));
        memset(p, 0xff, size);
        p = rcl_realloc(p, size - page / 2, RCL_DEFAULT);
        assert_non_null(p);
        p = rcl_realloc(p, size, RCL_DEFAULT | RCL__ZERO);
        assert_non_null(p);
        assert_int_equal(p[size - page / 2 - 1], 0xff);
        assert_true(all_zero(p + size - page / 2, page / 2));
        rcl_free(p);
    }
}

TEST_WITH(realloc_grown_with_zero_reads_zero_when_its_memory_is_reused, table_setup,
          test_teardown)
{
    grow_zeroed_over_written_memory(8 * MiB);
    grow_zeroed_over_written_memory(TABLE);
}

static const size_t table_aligns[] = { 64, 4096, 2 * MiB };

/* A zeroed aligned table is left unwritten where its memory is fresh,
 * as a calloc's, whatever the alignment. */
TEST_WITH(a_zeroed_aligned_table_leaves_its_fresh_pages_out_of_the_resident_set, table_setup,
          test_teardown)
{
    for (size_t i = 0; i < sizeof(table_aligns) / sizeof(table_aligns[0]); i++) {
        unsigned char *p = rcl_aligned_alloc(table_aligns[i], TABLE, RCL_DEFAULT | RCL__ZERO);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % table_aligns[i], 0);
        assert_true(mostly_out(p, TABLE));
        assert_true(all_zero(p, TABLE));
        rcl_free(p);
    }
}

/* And it reads zero where its memory is not fresh: a table of the same
 * size freed dirty just before. */
TEST_WITH(a_zeroed_aligned_table_reads_zero_when_its_memory_is_reused, table_setup,
          test_teardown)
{
    for (size_t i = 0; i < sizeof(table_aligns) / sizeof(table_aligns[0]); i++) {
        for (int round = 0; round < 2; round++) {
            unsigned char *d = rcl_aligned_alloc(table_aligns[i], TABLE, RCL_DEFAULT);
            assert_non_null(d);
            memset(d, 0xff, TABLE);
            rcl_free(d);
            unsigned char *p = rcl_aligned_alloc(table_aligns[i], TABLE,
                                                 RCL_DEFAULT | RCL__ZERO);
            assert_non_null(p);
            assert_true(all_zero(p, TABLE));
            memset(p, 0xff, TABLE);
            rcl_free(p);
        }
    }
}

/* The charge an aligned block takes before its padding is known: a test of
 * the padding's own charge is skipped where the allocator pads no more. */
static size_t aligned_first_charge_or_skip(void)
{
    size_t front = 15 + 32 + RCL__BE_BLOCK_OVERHEAD;
    unsigned char *p = rcl_aligned_alloc(32, 15, RCL_DEFAULT);
    assert_non_null(p);
    size_t held = usage_now();
    rcl_free(p);
    if (held <= front) {
        print_message("skipped: the allocator pads no more than the first charge (a "
                      "sanitizer's, whose usable size is the size asked)\n");
        skip();
    }
    return front;
}

/* Charges the budget up to its min watermark but for room bytes. */
static size_t charge_all_but(size_t room)
{
    struct rcl_stats st;
    rcl_stats_get(&st);
    size_t fill = st.limit - st.wmark_min - room;
    assert_int_equal(rcl_charge(fill, RCL__MEMALLOC | RCL__NOWARN), 0);
    return fill;
}

/* The backend's padding is charged once its block is known, after the
 * size and the alignment: a padding the budget has no room for fails
 * the allocation, the block given back and all of its charge with it.
 * The budget is filled to leave room for the first charge only. */
TEST(an_aligned_block_whose_padding_finds_no_room_fails_and_gives_back_its_whole_charge)
{
    size_t front = aligned_first_charge_or_skip();
    size_t fill = charge_all_but(front);
    assert_int_equal(usage_now(), fill);
    struct rcl_stats st, before;
    rcl_stats_get(&before);
    errno = 0;
    assert_null(rcl_aligned_alloc(32, 15, RCL_NOWAIT | RCL__NOWARN));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(usage_now(), fill);
    rcl_stats_get(&st);
    assert_int_equal(st.failures, before.failures + 1);
    /* the room that was left takes the first charge: it was not held */
    assert_int_equal(rcl_charge(front, RCL_NOWAIT | RCL__NOWARN), 0);
    rcl_uncharge(fill + front);
}

/* The padding's charge may reclaim, and a shrinker there may end the
 * thread (pthread_exit(), or a cancel in a NOFAIL wait): the block and
 * the first charge go with the thread, as a failed charge gives them
 * back. They were held by nobody, charged for good. */
static unsigned long ends_its_thread(void *priv, struct rcl_shrink_control *sc)
{
    (void)priv;
    (void)sc;
    pthread_exit(NULL);
}

static void *aligned_in_a_full_budget(void *arg)
{
    (void)arg;
    rcl_free(rcl_aligned_alloc(32, 15, RCL_DEFAULT | RCL__NOWARN));
    return NULL;
}

TEST(an_aligned_block_whose_padding_charge_ends_its_thread_gives_back_block_and_charge)
{
    size_t front = aligned_first_charge_or_skip();

    static const struct rcl_shrinker_ops ops = { .count = ends_its_thread,
                                                 .scan = ends_its_thread };
    struct rcl_shrinker *s = rcl_shrinker_register("ends-its-thread", &ops, NULL, NULL);
    assert_non_null(s);
    size_t fill = charge_all_but(front);
    rcl_usage_sync();
    assert_int_equal(usage_now(), fill);

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, aligned_in_a_full_budget, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_usage_sync();
    assert_int_equal(usage_now(), fill);
    rcl_shrinker_unregister(s);
    rcl_uncharge(fill);
}

/* Over mimalloc a zeroed block's whole pages are dropped (backend.h).
 * On huge pages (hugetlb: mimalloc's large OS pages) the kernel drops
 * only the whole huge pages of a range that starts on one, and answers
 * as if it had dropped it all: a 3 MiB block on a huge page's start
 * read its last owner's bytes in its last MiB. Skipped where the system
 * has no huge pages (vm.nr_hugepages) or the backend is another. */
TEST(a_block_on_huge_pages_the_backend_zeroes_reads_zero_to_its_end)
{
#ifdef RCL_BACKEND_MIMALLOC
    size_t huge = 2 * MiB;
    unsigned char *m = mmap(NULL, 2 * huge, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (m == MAP_FAILED) {
        print_message("skipped: the system has no huge pages\n");
        skip();
    }
    memset(m, 0xff, 2 * huge);
    assert_ptr_equal(rcl__be_zero(m, 3 * MiB), m);
    assert_true(all_zero(m, 3 * MiB));
    assert_int_equal(m[3 * MiB], 0xff);
    munmap(m, 2 * huge);
#else
    print_message("skipped: the backend zeroes a block itself\n");
    skip();
#endif
}

TEST(alignment_not_a_power_of_two_is_einval)
{
    size_t bad[] = { 0, 3, 24, 100, 4097 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_fails_with(rcl_aligned_alloc(bad[i], 64, RCL_DEFAULT), EINVAL);
    }
    assert_int_equal(usage_now(), 0);
}

/* valloc: mapped, page-aligned, zeroed, charged in whole pages. */
TEST(valloc_is_page_granular)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *p = rcl_valloc(page + 1, RCL_DEFAULT);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % page, 0);
    assert_true(all_zero(p, 2 * page));
    assert_int_equal(usage_now(), 3 * page);          /* and the header's page */
    memset(p, 7, 2 * page);
    rcl_vfree(p);
    assert_int_equal(usage_now(), 0);
}

/* The kernel's kvfree(): either free takes either kind of block. */
TEST(either_free_takes_either_kind)
{
    void *v = rcl_valloc(10000, RCL_DEFAULT);
    void *h = rcl_alloc(10000, RCL_DEFAULT);
    rcl_free(v);
    rcl_vfree(h);
    assert_int_equal(usage_now(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* The "vmalloc with GFP_NOFS" thread (linux-kernel, May 2018): the scope
 * applies to mapped allocations too (vmalloc once allocated its page tables
 * with GFP_KERNEL whatever the caller said). */
TEST(valloc_honours_the_scope)
{
    struct rcl_shrinker_opts opts = { .needs = RCL__FS };
    struct test_counter *s = test_counter_new("fs-cache", 1, &opts);
    /* 1.5 MiB of headroom left; min is 2 % = 1.28 MiB: 512 KiB more must
     * reclaim */
    void *fill = rcl_alloc(62 * MiB + 512 * KiB, RCL_DEFAULT);
    assert_non_null(fill);
    unsigned t = rcl_nofs_save();
    assert_fails_with(rcl_valloc(512 * KiB, RCL_DEFAULT | RCL__NOWARN), ENOMEM);
    rcl_nofs_restore(t);
    assert_int_equal(test_counter_scans(s), 0);     /* the FS shrinker was not called */
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_true(st.shrinkers[0].skipped > 0);
    rcl_free(fill);
    test_counter_free(s);
}

TEST(charge_and_uncharge_account_outside_memory)
{
    assert_int_equal(rcl_charge(12345, RCL_DEFAULT), 0);
    assert_int_equal(usage_now(), 12345);
    assert_int_equal(rcl_charge(0, RCL_DEFAULT), 0);
    assert_int_equal(rcl_charge(65 * MiB, RCL_DEFAULT | RCL__NOWARN), -E2BIG);
    rcl_uncharge(12345);
    assert_int_equal(usage_now(), 0);
}

TEST(uncharging_more_than_charged_is_reported_and_clamped)
{
    assert_int_equal(rcl_charge(1000, RCL_DEFAULT), 0);
    rcl_uncharge(10 * MiB);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(usage_now(), 0);
}

/* The largest size is no special case: an uncharge of it takes back what
 * was charged. */
TEST(uncharging_size_max_uncharges_what_was_charged)
{
    assert_int_equal(rcl_charge(1000, RCL_DEFAULT), 0);
    rcl_uncharge(SIZE_MAX);
    assert_int_equal(test_report_count(), 1);
    assert_int_equal(usage_now(), 0);
}

/* A limit of SIZE_MAX, no limit in practice, is held to LONG_MAX: every
 * charge it then allows is one the budget takes back whole, where a
 * charge past LONG_MAX wrapped the thread's signed books and its
 * uncharge left the budget charged for ever. */
TEST(a_charge_a_size_max_limit_allows_is_uncharged_whole)
{
    assert_int_equal(rcl_set_limit(SIZE_MAX), 0);
    size_t big = rcl_limit() / 2 + 4096;
    assert_int_equal(rcl_charge(big, RCL_DEFAULT), 0);
    assert_int_equal(usage_now(), big);
    rcl_uncharge(big);
    assert_int_equal(usage_now(), 0);
    assert_int_equal(rcl_limit(), (size_t)LONG_MAX);
    assert_int_equal(rcl_charge(SIZE_MAX, RCL_DEFAULT | RCL__NOWARN), -E2BIG);
}

/* An uncharge takes back what rcl_charge() gave and no more, however much
 * the blocks hold: theirs goes back through their frees, and a budget
 * that lost it would count less than the program holds. The memory
 * cgroup's page counter warns of an uncharge below zero the same way
 * (page_counter_cancel()); here the bound is the explicit charges. */
TEST(uncharging_more_than_rcl_charge_gave_leaves_the_blocks_charged)
{
    void *p = rcl_alloc(4000, RCL_DEFAULT);
    assert_non_null(p);
    size_t blocks = usage_now();
    assert_int_equal(rcl_charge(1000, RCL_DEFAULT), 0);
    rcl_uncharge(3000);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("rcl_uncharge(3000) but rcl_charge() has charged only 1000 bytes");
    assert_int_equal(usage_now(), blocks);
    rcl_free(p);
    assert_int_equal(usage_now(), 0);
}

static pthread_barrier_t charged_b;

static void *charge_and_wait(void *arg)
{
    assert_int_equal(rcl_charge(*(size_t *)arg, RCL_DEFAULT), 0);
    pthread_barrier_wait(&charged_b);
    pthread_barrier_wait(&charged_b);
    return NULL;
}

/* A thread that charges *n and waits, alive, until charger_end(). */
static pthread_t charger_start(size_t *n)
{
    pthread_t th;

    assert_int_equal(pthread_barrier_init(&charged_b, NULL, 2), 0);
    assert_int_equal(pthread_create(&th, NULL, charge_and_wait, n), 0);
    pthread_barrier_wait(&charged_b);
    return th;
}

static void charger_end(pthread_t th)
{
    pthread_barrier_wait(&charged_b);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&charged_b);
}

/* Memory charged on one thread may be uncharged on another, as a
 * shrinker uncharges what the program's threads charged: while the
 * charging thread lives, and after it has exited. */
TEST(what_one_thread_charged_another_uncharges)
{
    size_t n = 5000;

    pthread_t th = charger_start(&n);
    rcl_uncharge(2000);
    charger_end(th);
    charger_end(charger_start(&n));
    rcl_uncharge(8000);
    assert_int_equal(test_report_count(), 0);
    assert_int_equal(usage_now(), 0);
    rcl_uncharge(1);
    assert_int_equal(test_report_count(), 1);
}

/* Many threads charge objects of mixed sizes, from a byte to 128 KiB, and
 * hand each to a queue they all take from, so that most uncharges are of
 * what another thread charged, while the others take from their
 * own parts and gather: no uncharge that was charged is ever refused, and
 * the budget ends at 0. */
#define XQ_THREADS 4
#define XQ_CAP     64
#define XQ_OPS     20000
static struct {
    pthread_mutex_t lock;
    size_t          size[XQ_CAP];
    unsigned        n;
} xq = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *charge_and_pass(void *arg)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (uintptr_t)arg + 1;

    for (int i = 0; i < XQ_OPS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = (size_t)1 << (x % 17), got = 0;
        n += (size_t)(x >> 32) % n;
        assert_int_equal(rcl_charge(n, RCL_DEFAULT), 0);
        pthread_mutex_lock(&xq.lock);
        if (xq.n && (xq.n == XQ_CAP || (x >> 20) % 2))
            got = xq.size[--xq.n];
        xq.size[xq.n++] = n;
        pthread_mutex_unlock(&xq.lock);
        if (got)
            rcl_uncharge(got);
    }
    return NULL;
}

TEST(charges_passed_between_many_threads_are_never_refused)
{
    pthread_t th[XQ_THREADS];

    xq.n = 0;
    for (uintptr_t i = 0; i < XQ_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, charge_and_pass, (void *)i), 0);
    for (int i = 0; i < XQ_THREADS; i++)
        pthread_join(th[i], NULL);
    while (xq.n)
        rcl_uncharge(xq.size[--xq.n]);
    assert_int_equal(test_report_count(), 0);
    assert_int_equal(usage_now(), 0);
}

/* A forked child may uncharge what the threads that did not come with it
 * charged: their memory is the child's too. */
TEST(a_forked_child_uncharges_what_the_other_threads_charged)
{
    size_t n = 3000;

    pthread_t th = charger_start(&n);
    pid_t pid = fork();
    if (pid == 0) {
        rcl_uncharge(3000);
        unsigned long ok = test_report_count();
        rcl_uncharge(1);
        _exit(ok == 0 && test_report_count() == 1 && usage_now() == 0 ? 0 : 1);
    }
    assert_true(pid > 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    charger_end(th);
    rcl_uncharge(3000);
    assert_int_equal(usage_now(), 0);
}

/* After rcl_shutdown() old blocks are valid, freeable, and no longer in
 * any budget: freeing them cannot drive the new budget negative. */
TEST(blocks_from_before_shutdown_free_without_uncharging)
{
    char *old = rcl_alloc(4096, RCL_DEFAULT);
    strcpy(old, "old");
    rcl_shutdown();
    assert_int_equal(test_init(32 * MiB), 0);
    void *fresh = rcl_alloc(100, RCL_DEFAULT);
    assert_string_equal(old, "old");
    old = rcl_realloc(old, 8192, RCL_DEFAULT);    /* moves into the new budget */
    assert_string_equal(old, "old");
    assert_int_equal(usage_now(), rcl_alloc_charge(8192) + rcl_alloc_charge(100));
    rcl_free(old);
    rcl_free(fresh);
    assert_int_equal(usage_now(), 0);
    assert_int_equal(test_report_count(), 0);
}

/* rcl_charge()'s charges go with the budget at rcl_shutdown(): nothing
 * tells them from the new budget's, so uncharging one after rcl_init()
 * takes from what was charged since, and beyond that is reported. */
TEST(charges_from_before_shutdown_are_dropped_with_the_budget)
{
    assert_int_equal(rcl_charge(1000, RCL_DEFAULT), 0);
    rcl_shutdown();
    assert_int_equal(test_init(32 * MiB), 0);
    assert_int_equal(usage_now(), 0);
    assert_int_equal(rcl_charge(5000, RCL_DEFAULT), 0);
    rcl_uncharge(1000);
    assert_int_equal(usage_now(), 4000);
    assert_int_equal(test_report_count(), 0);
    rcl_uncharge(5000);
    assert_last_report_has("rcl_uncharge(5000) but rcl_charge() has charged only 4000 bytes");
    assert_int_equal(test_reports_take(), 1);
    assert_int_equal(usage_now(), 0);
}

static void *free_in_other_thread(void *p)
{
    rcl_free(p);
    return NULL;
}

/* A block may be freed by a thread that never allocated. */
TEST(block_freed_by_another_thread_is_uncharged)
{
    pthread_t th;
    void *p = rcl_alloc(777, RCL_DEFAULT);
    assert_int_equal(pthread_create(&th, NULL, free_in_other_thread, p), 0);
    pthread_join(th, NULL);
    assert_int_equal(usage_now(), 0);
}

/* The second free comes from a thread the library knows already, whose
 * free takes the fast path as far as the header's first word (a thread
 * it has not met yet takes the slow path at once). */
static void *free_in_known_thread(void *p)
{
    rcl_free(rcl_alloc(24, RCL_DEFAULT));
    rcl_free(p);
    return NULL;
}

/* A second free, from another thread, of a block its first thread's cache
 * holds, for a size in each kind of class: the other thread finds the
 * list's link in the header's first word as the owner would, the free is
 * reported and left alone, and the owner's list still hands the block
 * out. */
TEST(a_second_free_from_another_thread_of_a_cached_block_is_caught)
{
    static const size_t sizes[] = { 24, 640, 3000 };

    test_skip_if_freed_reads_report();
    size_t before = usage_now();
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        pthread_t th;
        void *p = rcl_alloc(sizes[i], RCL_DEFAULT);
        assert_non_null(p);
        rcl_free(p);
        assert_int_equal(pthread_create(&th, NULL, free_in_known_thread, p), 0);
        pthread_join(th, NULL);
        assert_int_equal(test_report_count(), i + 1);
        void *q = rcl_alloc(sizes[i], RCL_DEFAULT);
        assert_ptr_equal(q, p);
        rcl_free(q);
    }
    assert_reports_have("already freed");
    assert_int_equal(usage_now(), before);
}

TEST_MAIN();
