/* SPDX-License-Identifier: MIT */
/*
 * test_lru.c - the shrinkable LRU (the kernel's list_lru): order, the walk's
 * four answers, the count, the one-call shrinker, the example of rcl_lru(3), and
 * concurrent use.
 */
#include "helpers.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>

/* ------------------------------------------------------------------------ */
/* rcl_lru(3)'s example, verbatim: test_manual_example_matches_this_copy()  */
/* checks that docs/man/rcl_lru.3.scd says exactly this, so what the man    */
/* page shows is what compiles here.                                         */
/* ------------------------------------------------------------------------ */
/* The example's functions are not static (a user's would live in their own
 * file); declared here to satisfy -Wmissing-prototypes. */
int cache_init(void);
int cache_get(unsigned key);
void cache_exit(void);

/* --- example begin */
#include <pthread.h>
#include <reclaim.h>

#define NBUCKETS 256
struct obj {
    struct rcl_lru_node lru;   // on the LRU while cached
    struct obj *hnext;         // hash chain, under table_lock
    unsigned key;
    int referenced;            // second chance, under table_lock
    char payload[1000];
};
static struct obj *table[NBUCKETS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcl_lru *lru;

// Under the LRU lock: decide, unhash, never free. Lookups take
// table_lock and then the LRU lock, so here it is only tried.
static enum rcl_lru_walk obj_isolate(struct rcl_lru_node *n, void *arg)
{
    struct obj *o = RCL_LRU_ENTRY(n, struct obj, lru), **pp;
    (void)arg;
    if (pthread_mutex_trylock(&table_lock) != 0)
        return RCL_LRU_SKIP;
    if (o->referenced) {
        o->referenced = 0;
        pthread_mutex_unlock(&table_lock);
        return RCL_LRU_ROTATE;
    }
    for (pp = &table[o->key % NBUCKETS]; *pp != o; pp = &(*pp)->hnext)
        ;
    *pp = o->hnext;            // no lookup can find it any more
    pthread_mutex_unlock(&table_lock);
    return RCL_LRU_REMOVED;
}

// After the LRU lock is dropped: the object is ours alone.
static void obj_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    rcl_free(RCL_LRU_ENTRY(n, struct obj, lru));
}

int cache_init(void)
{
    lru = rcl_lru_create();
    if (!lru || !rcl_lru_shrinker(lru, "obj-cache", obj_isolate, obj_free, NULL, NULL))
        return -1;
    return 0;
}

// 1 when the key was cached, 0 when it has been added now, -1 on error.
int cache_get(unsigned key)
{
    struct obj *o;
    pthread_mutex_lock(&table_lock);
    for (o = table[key % NBUCKETS]; o && o->key != key; o = o->hnext)
        ;
    if (o)
        o->referenced = 1;
    pthread_mutex_unlock(&table_lock);
    if (o)
        return 1;
    o = rcl_alloc(sizeof(*o), RCL_DEFAULT);   // may run the shrinker
    if (!o)
        return -1;
    rcl_lru_node_init(&o->lru);
    o->key = key;
    o->referenced = 0;
    pthread_mutex_lock(&table_lock);
    o->hnext = table[key % NBUCKETS];
    table[key % NBUCKETS] = o;
    rcl_lru_add(lru, &o->lru);
    pthread_mutex_unlock(&table_lock);
    return 0;
}

void cache_exit(void)
{
    struct rcl_lru_node dispose, *n;
    rcl_lru_list_init(&dispose);
    while (rcl_lru_count(lru)) {
        rcl_lru_walk(lru, obj_isolate, NULL, ~0UL, &dispose);
        while ((n = rcl_lru_list_pop(&dispose)) != NULL)
            obj_free(n, NULL);
    }
    rcl_lru_destroy(lru);
}
/* --- example end */

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

struct item {
    struct rcl_lru_node node;
    int id;
};

static void items_init(struct item *it, int n)
{
    for (int i = 0; i < n; i++) {
        rcl_lru_node_init(&it[i].node);
        it[i].id = i;
    }
}

/* An LRU holding it[0..n-1], oldest first. */
static struct rcl_lru *lru_filled(struct item *it, int n)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(l);
    items_init(it, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(rcl_lru_add(l, &it[i].node), 1);
    return l;
}

/* Takes it[0..n-1] off (wherever they are) and destroys the emptied LRU. */
static void lru_emptied(struct rcl_lru *l, struct item *it, int n)
{
    for (int i = 0; i < n; i++)
        rcl_lru_del(l, &it[i].node);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* Records the order a walk visits items in. */
struct visit_log {
    int ids[64];
    int n;
    enum rcl_lru_walk answer[64];   /* by id */
};

static enum rcl_lru_walk log_isolate(struct rcl_lru_node *n, void *arg)
{
    struct visit_log *log = arg;
    int id = RCL_LRU_ENTRY(n, struct item, node)->id;
    log->ids[log->n++] = id;
    return log->answer[id];
}

static int drain_ids(struct rcl_lru_node *dispose, int *ids, int max)
{
    int n = 0;
    struct rcl_lru_node *x;
    while ((x = rcl_lru_list_pop(dispose)) != NULL)
        if (n < max)
            ids[n++] = RCL_LRU_ENTRY(x, struct item, node)->id;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Adding, removing, counting                                                */
/* ------------------------------------------------------------------------ */

TEST(test_add_counts_each_item_once)
{
    struct rcl_lru *l = rcl_lru_create();
    struct item it[3];
    items_init(it, 3);
    assert_non_null(l);
    assert_int_equal(rcl_lru_add(l, &it[0].node), 1);
    assert_int_equal(rcl_lru_add(l, &it[1].node), 1);
    assert_int_equal(rcl_lru_add(l, &it[1].node), 0);   /* already there */
    assert_int_equal(rcl_lru_count(l), 2);
    assert_int_equal(rcl_lru_del(l, &it[0].node), 1);
    assert_int_equal(rcl_lru_del(l, &it[1].node), 1);
    assert_int_equal(rcl_lru_count(l), 0);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* list_lru_del() returns false for an item already gone: whoever removed it
 * first owns it. */
TEST(test_del_of_absent_item_says_so)
{
    struct rcl_lru *l = rcl_lru_create();
    struct item it[1];
    items_init(it, 1);
    assert_int_equal(rcl_lru_del(l, &it[0].node), 0);
    rcl_lru_add(l, &it[0].node);
    assert_int_equal(rcl_lru_del(l, &it[0].node), 1);
    assert_int_equal(rcl_lru_del(l, &it[0].node), 0);
    assert_null(it[0].node.next);
    rcl_lru_destroy(l);
}

TEST(test_walk_visits_oldest_first)
{
    struct item it[5];
    struct rcl_lru *l = lru_filled(it, 5);
    struct visit_log log = { .n = 0 };
    struct rcl_lru_node dispose;
    for (int i = 0; i < 5; i++)
        log.answer[i] = RCL_LRU_SKIP;
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, log_isolate, &log, 100, &dispose), 0);
    assert_int_equal(log.n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(log.ids[i], i);
    lru_emptied(l, it, 5);
}

TEST(test_touch_makes_item_the_newest)
{
    struct item it[3];
    struct rcl_lru *l = lru_filled(it, 3);
    struct visit_log log = { .n = 0 };
    struct rcl_lru_node dispose;
    for (int i = 0; i < 3; i++)
        log.answer[i] = RCL_LRU_SKIP;
    assert_int_equal(rcl_lru_touch(l, &it[0].node), 1);
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(l, log_isolate, &log, 100, &dispose);
    assert_int_equal(log.ids[0], 1);
    assert_int_equal(log.ids[1], 2);
    assert_int_equal(log.ids[2], 0);
    for (int i = 0; i < 3; i++)
        rcl_lru_del(l, &it[i].node);
    assert_int_equal(rcl_lru_touch(l, &it[0].node), 0);   /* not on the LRU */
    rcl_lru_destroy(l);
}

/* ------------------------------------------------------------------------ */
/* The walk's answers (list_lru's LRU_REMOVED / LRU_ROTATE / LRU_SKIP /     */
/* LRU_STOP)                                                                 */
/* ------------------------------------------------------------------------ */

TEST(test_walk_removed_items_go_to_dispose_list_in_order)
{
    struct item it[4];
    struct rcl_lru *l = lru_filled(it, 4);
    struct visit_log log = { .n = 0 };
    struct rcl_lru_node dispose;
    int ids[4];
    for (int i = 0; i < 4; i++)
        log.answer[i] = (i % 2) ? RCL_LRU_REMOVED : RCL_LRU_SKIP;
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, log_isolate, &log, 100, &dispose), 2);
    assert_int_equal(rcl_lru_count(l), 2);
    assert_int_equal(drain_ids(&dispose, ids, 4), 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    assert_null(it[1].node.next);               /* popped: on no list */
    assert_int_equal(rcl_lru_add(l, &it[1].node), 1);   /* reusable */
    lru_emptied(l, it, 4);
}

/* LRU_ROTATE is the second chance: the item moves to the hot end and is
 * not visited again by the same walk. */
TEST(test_walk_rotate_gives_second_chance)
{
    struct item it[3];
    struct rcl_lru *l = lru_filled(it, 3);
    struct visit_log log = { .n = 0 };
    struct rcl_lru_node dispose;
    for (int i = 0; i < 3; i++)
        log.answer[i] = RCL_LRU_ROTATE;
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, log_isolate, &log, 100, &dispose), 0);
    assert_int_equal(log.n, 3);                 /* each once, no endless loop */
    /* order unchanged by rotating every item once */
    log.n = 0;
    log.answer[0] = RCL_LRU_ROTATE;
    log.answer[1] = log.answer[2] = RCL_LRU_SKIP;
    rcl_lru_walk(l, log_isolate, &log, 1, &dispose);   /* rotates item 0 */
    log.n = 0;
    log.answer[0] = RCL_LRU_SKIP;
    rcl_lru_walk(l, log_isolate, &log, 100, &dispose);
    assert_int_equal(log.ids[0], 1);
    assert_int_equal(log.ids[2], 0);
    lru_emptied(l, it, 3);
}

TEST(test_walk_stop_ends_the_walk_and_keeps_the_item)
{
    struct item it[4];
    struct rcl_lru *l = lru_filled(it, 4);
    struct visit_log log = { .n = 0 };
    struct rcl_lru_node dispose;
    for (int i = 0; i < 4; i++)
        log.answer[i] = RCL_LRU_REMOVED;
    log.answer[2] = RCL_LRU_STOP;
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, log_isolate, &log, 100, &dispose), 2);
    assert_int_equal(log.n, 3);
    assert_int_equal(rcl_lru_count(l), 2);
    assert_non_null(it[2].node.next);
    int ids[4];
    drain_ids(&dispose, ids, 4);
    rcl_lru_del(l, &it[2].node);
    rcl_lru_del(l, &it[3].node);
    rcl_lru_destroy(l);
}

/* list_lru_walk(): every item visited costs one of nr_to_walk, whatever
 * the callback answered. */
TEST(test_walk_is_bounded_by_nr_to_walk)
{
    struct item it[10];
    struct rcl_lru *l = lru_filled(it, 10);
    struct visit_log log = { .n = 0 };
    struct rcl_lru_node dispose;
    for (int i = 0; i < 10; i++)
        log.answer[i] = (i < 3) ? RCL_LRU_SKIP : RCL_LRU_REMOVED;
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, log_isolate, &log, 5, &dispose), 2);
    assert_int_equal(log.n, 5);
    int ids[10];
    assert_int_equal(drain_ids(&dispose, ids, 10), 2);
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, NULL, NULL, ~0UL, &dispose), 8);   /* NULL: remove all */
    assert_int_equal(rcl_lru_count(l), 0);
    drain_ids(&dispose, ids, 10);
    rcl_lru_destroy(l);
}

/* ------------------------------------------------------------------------ */
/* Bad input                                                                 */
/* ------------------------------------------------------------------------ */

/* Each refusal is one report naming the call, and changes nothing: the
 * LRU still counts and destroys as one never misused. */
TEST(test_bad_input_is_refused_and_reported)
{
    struct rcl_lru *l = rcl_lru_create();
    struct item it[1];
    struct rcl_lru_node dispose = { NULL, NULL };   /* not initialised */
    items_init(it, 1);
    assert_int_equal(rcl_lru_add(NULL, &it[0].node), -EINVAL);
    assert_last_report_has("rcl_lru_add(");
    assert_int_equal(rcl_lru_add(l, NULL), -EINVAL);
    assert_last_report_has("NULL node");
    assert_int_equal(rcl_lru_del(NULL, &it[0].node), -EINVAL);
    assert_last_report_has("rcl_lru_del(");
    assert_int_equal(rcl_lru_touch(l, NULL), -EINVAL);
    assert_last_report_has("rcl_lru_touch(");
    assert_int_equal(rcl_lru_count(NULL), 0);
    assert_int_equal(rcl_lru_destroy(NULL), -EINVAL);
    assert_last_report_has("rcl_lru_destroy(NULL)");
    errno = 0;
    assert_int_equal(rcl_lru_walk(l, NULL, NULL, 1, &dispose), 0);
    assert_int_equal(errno, EINVAL);
    assert_last_report_has("dispose list not initialised");
    errno = 0;
    assert_int_equal(rcl_lru_walk(NULL, NULL, NULL, 1, &dispose), 0);
    assert_int_equal(errno, EINVAL);
    assert_last_report_has("NULL LRU");
    assert_null(rcl_lru_list_pop(&dispose));
    assert_fails_with(rcl_lru_shrinker(l, NULL, NULL, NULL, NULL, NULL), EINVAL);
    assert_last_report_has("NULL name");
    assert_int_equal(test_report_count(), 8);
    assert_int_equal(rcl_lru_count(l), 0);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* The list helpers take NULL quietly: a pop loop after a walk refused
 * for its NULL or uninitialised dispose list ends at once, the walk's
 * one report the only one. */
TEST(test_list_helpers_of_null_do_nothing_and_say_nothing)
{
    struct rcl_lru *l = rcl_lru_create();
    errno = 0;
    assert_int_equal(rcl_lru_walk(l, NULL, NULL, 1, NULL), 0);
    assert_int_equal(errno, EINVAL);
    assert_null(rcl_lru_list_pop(NULL));
    rcl_lru_list_init(NULL);
    rcl_lru_node_init(NULL);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("NULL dispose list");
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* The isolate callback runs under its LRU's lock: a call back into that
 * LRU would wait for itself for ever. It is refused and reported; another
 * LRU is the callback's to use. */
struct reentry {
    struct rcl_lru *self, *other;
    struct item *extra;
    int add, del, touch, other_add, walk_errno;
    unsigned long walked;
};

static enum rcl_lru_walk reentering_isolate(struct rcl_lru_node *n, void *arg)
{
    struct reentry *r = arg;
    struct rcl_lru_node dispose;

    rcl_lru_list_init(&dispose);
    r->add = rcl_lru_add(r->self, &r->extra->node);
    r->del = rcl_lru_del(r->self, n);
    r->touch = rcl_lru_touch(r->self, n);
    errno = 0;
    r->walked = rcl_lru_walk(r->self, NULL, NULL, 1, &dispose);
    r->walk_errno = errno;
    r->other_add = rcl_lru_add(r->other, &r->extra->node);
    return RCL_LRU_SKIP;
}

static void *walks_reentering(void *arg)
{
    struct reentry *r = arg;
    struct rcl_lru_node dispose;

    rcl_lru_list_init(&dispose);
    rcl_lru_walk(r->self, reentering_isolate, r, 1, &dispose);
    return NULL;
}

TEST(test_isolate_calling_into_its_own_lru_is_refused)
{
    struct item it[1], extra[1];
    struct rcl_lru *l = lru_filled(it, 1), *other = rcl_lru_create();
    struct reentry r = { .self = l, .other = other, .extra = extra };
    struct timespec until;
    pthread_t th;

    assert_non_null(other);
    items_init(extra, 1);
    /* On a thread of its own, so that a walk that waits for itself fails
     * the test instead of hanging it: 5 s catches that hang and asserts no
     * duration (the walk of one item takes microseconds). */
    assert_int_equal(pthread_create(&th, NULL, walks_reentering, &r), 0);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    assert_int_equal(pthread_timedjoin_np(th, NULL, &until), 0);
    assert_int_equal(r.add, -EDEADLK);
    assert_int_equal(r.del, -EDEADLK);
    assert_int_equal(r.touch, -EDEADLK);
    assert_int_equal(r.walked, 0);
    assert_int_equal(r.walk_errno, EDEADLK);
    assert_int_equal(r.other_add, 1);
    assert_int_equal(test_reports_seen_matching("isolate callback on the same LRU"), 4);
    assert_int_equal(rcl_lru_count(l), 1);
    assert_int_equal(rcl_lru_del(other, &extra[0].node), 1);
    assert_int_equal(rcl_lru_destroy(other), 0);
    lru_emptied(l, it, 1);
}

static enum rcl_lru_walk exiting_isolate(struct rcl_lru_node *n, void *arg)
{
    (void)n;
    (void)arg;
    pthread_exit(NULL);
}

static void *walks_and_ends(void *arg)
{
    struct rcl_lru_node dispose;

    rcl_lru_list_init(&dispose);
    rcl_lru_walk(arg, exiting_isolate, NULL, 1, &dispose);
    return NULL;
}

/* An isolate callback that ends its thread (pthread_exit()) ends the walk
 * with it: the LRU's lock is let go and its item stays on it, so the
 * next add, walk and del go through. (The lock stayed held by the gone
 * thread: every later call on the LRU waited for ever, which the alarm
 * turns into a failure.) */
TEST(test_a_thread_ending_in_an_isolate_callback_lets_go_of_the_lru)
{
    struct item it[2];
    struct rcl_lru *l = lru_filled(it, 1);
    struct visit_log log = { .answer = { RCL_LRU_SKIP, RCL_LRU_SKIP } };
    struct rcl_lru_node dispose;
    pthread_t th;

    alarm(10);
    assert_int_equal(pthread_create(&th, NULL, walks_and_ends, l), 0);
    assert_int_equal(pthread_join(th, NULL), 0);

    items_init(&it[1], 1);
    it[1].id = 1;
    assert_int_equal(rcl_lru_add(l, &it[1].node), 1);
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, log_isolate, &log, 2, &dispose), 0);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.ids[0], 0);
    assert_int_equal(rcl_lru_count(l), 2);
    lru_emptied(l, it, 2);
    alarm(0);
}

/* Destroying an LRU that still holds items would leave them pointing into
 * freed memory: refused, reported, the LRU stays usable. */
TEST(test_destroy_of_nonempty_lru_is_refused)
{
    struct rcl_lru *l = rcl_lru_create();
    struct item it[1];
    items_init(it, 1);
    rcl_lru_add(l, &it[0].node);
    unsigned before = test_report_count();
    assert_int_equal(rcl_lru_destroy(l), -EBUSY);
    assert_int_equal(test_report_count(), before + 1);
    assert_int_equal(rcl_lru_count(l), 1);
    rcl_lru_del(l, &it[0].node);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* A second destroy finds no LRU: -EINVAL, reported, and the memory the LRU
 * had (anyone's by now) neither read nor freed again. */
TEST(test_destroy_of_a_destroyed_lru_is_einval)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(l);
    assert_int_equal(rcl_lru_destroy(l), 0);
    unsigned before = test_report_count();
    assert_int_equal(rcl_lru_destroy(l), -EINVAL);
    assert_int_equal(test_report_count(), before + 1);
    assert_last_report_has("not a live LRU");
}

/* Nor is what never was an LRU taken for one, whatever it holds. */
TEST(test_destroy_of_what_never_was_an_lru_is_einval)
{
    void *fake = test_fake_object();
    unsigned before = test_report_count();
    assert_int_equal(rcl_lru_destroy(fake), -EINVAL);
    assert_int_equal(test_report_count(), before + 1);
    assert_true(test_fake_untouched(fake));
}

/* ------------------------------------------------------------------------ */
/* The shrinker                                                              */
/* ------------------------------------------------------------------------ */

struct blob {
    struct rcl_lru_node node;
    _Atomic long pinned;   /* in use by its creator: the shrinker skips it */
    char data[4096 - sizeof(struct rcl_lru_node) - sizeof(long)];
};

static _Atomic unsigned long blobs_freed;

static void blob_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    atomic_fetch_add(&blobs_freed, 1);
    rcl_free(RCL_LRU_ENTRY(n, struct blob, node));
}

static void fill_blobs(struct rcl_lru *l, int n)
{
    for (int i = 0; i < n; i++) {
        struct blob *b = rcl_alloc(sizeof(*b), RCL_DEFAULT);
        assert_non_null(b);
        rcl_lru_node_init(&b->node);
        assert_int_equal(rcl_lru_add(l, &b->node), 1);
    }
}

static void empty_blobs(struct rcl_lru *l)
{
    struct rcl_lru_node dispose, *n;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(l, NULL, NULL, ~0UL, &dispose);
    while ((n = rcl_lru_list_pop(&dispose)) != NULL)
        blob_free(n, NULL);
}

TEST(test_shrinker_frees_oldest_items_on_reclaim)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(l, "test-lru", NULL, blob_free, NULL, NULL));
    fill_blobs(l, 1000);
    rcl_usage_sync();
    size_t before = rcl_usage();
    atomic_store(&blobs_freed, 0);
    size_t freed = rcl_reclaim(1 * MiB, RCL_DEFAULT);
    rcl_usage_sync();
    assert_true(freed >= 1 * MiB);
    assert_true(atomic_load(&blobs_freed) >= 256);
    assert_int_equal(rcl_lru_count(l), 1000 - atomic_load(&blobs_freed));
    assert_true(rcl_usage() <= before - 1 * MiB);
    empty_blobs(l);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* The LRU's shrinker returns the items its scan freed: the shrinker's
 * statistics count each one free_fn was given. */
TEST(test_shrinker_counts_the_items_it_freed)
{
    struct rcl_shrinker_stats st[RCL_STATS_MAX_SHRINKERS];
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(l, "counted-lru", NULL, blob_free, NULL, NULL));
    fill_blobs(l, 1000);
    atomic_store(&blobs_freed, 0);
    assert_true(rcl_reclaim(1 * MiB, RCL_DEFAULT) > 0);
    unsigned nr = rcl_stats_shrinkers(st, RCL_STATS_MAX_SHRINKERS);
    unsigned i = 0;
    while (i < nr && i < RCL_STATS_MAX_SHRINKERS && strcmp(st[i].name, "counted-lru"))
        i++;
    assert_true(i < nr && i < RCL_STATS_MAX_SHRINKERS);
    assert_true(atomic_load(&blobs_freed) > 0);
    assert_int_equal(st[i].freed, atomic_load(&blobs_freed));
    empty_blobs(l);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* A shrinker with nothing to give says so (the kernel's SHRINK_EMPTY), and
 * reclaim frees nothing. */
TEST(test_shrinker_of_empty_lru_frees_nothing)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(l, "empty-lru", NULL, blob_free, NULL, NULL));
    assert_int_equal(rcl_reclaim(1 * MiB, RCL_DEFAULT), 0);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

TEST(test_second_shrinker_for_one_lru_is_refused)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(l, "one", NULL, blob_free, NULL, NULL));
    assert_fails_with(rcl_lru_shrinker(l, "two", NULL, blob_free, NULL, NULL), EBUSY);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/*
 * Two calls make one LRU's shrinker at once: one gets it, the other
 * EBUSY. The first is held inside its call - its first use of the
 * library reports the environment's malformed setting, and the report
 * function waits there - while the second makes its own.
 */
static pthread_t first_maker;
static atomic_int first_in_report, second_made;

static void catch_and_wait_for_the_second(const char *report, void *arg)
{
    test_report_catch(report, arg);
    if (!pthread_equal(pthread_self(), first_maker) || atomic_exchange(&first_in_report, 1))
        return;
    while (!atomic_load(&second_made))
        test_sleep_ms(1);
}

struct second_maker {
    struct rcl_lru *l;
    struct rcl_shrinker *s;
    int err;
};

static void *makes_second(void *arg)
{
    struct second_maker *m = arg;

    while (!atomic_load(&first_in_report))
        test_sleep_ms(1);
    errno = 0;
    m->s = rcl_lru_shrinker(m->l, "second", NULL, blob_free, NULL, NULL);
    m->err = errno;
    atomic_store(&second_made, 1);
    return NULL;
}

TEST(test_shrinkers_made_at_once_for_one_lru_are_one)
{
    struct second_maker m = { .l = rcl_lru_create() };
    assert_non_null(m.l);
    rcl_shutdown();
    setenv("RECLAIM_DIRECT_US", "fast", 1);
    atomic_store(&first_in_report, 0);
    atomic_store(&second_made, 0);
    first_maker = pthread_self();
    rcl_set_report_fn(catch_and_wait_for_the_second, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, makes_second, &m), 0);

    struct rcl_shrinker *s = rcl_lru_shrinker(m.l, "first", NULL, blob_free, NULL, NULL);
    assert_int_equal(pthread_join(th, NULL), 0);
    unsetenv("RECLAIM_DIRECT_US");
    rcl_set_report_fn(test_report_catch, NULL);
    assert_reports_have("RECLAIM_DIRECT_US");
    assert_int_equal(atomic_load(&first_in_report), 1);

    assert_non_null(s);
    assert_null(m.s);
    assert_int_equal(m.err, EBUSY);
    assert_int_equal(rcl_lru_destroy(m.l), 0);
}

/* A report function that ends its thread in a refused making (here, a
 * need no scan would carry) leaves the LRU free for the next one. */
static void *makes_refused_and_ends(void *l)
{
    static const struct rcl_shrinker_opts bad = { .needs = RCL__NOFAIL };

    test_reports_end_this_thread();
    rcl_lru_shrinker(l, "refused", NULL, blob_free, NULL, &bad);
    return NULL;                                /* not reached */
}

TEST(test_a_refused_shrinker_whose_report_ends_its_thread_leaves_the_lru_free)
{
    struct rcl_lru *l = rcl_lru_create();
    pthread_t th;

    rcl_set_report_fn(test_report_catch_then_end, NULL);
    assert_int_equal(pthread_create(&th, NULL, makes_refused_and_ends, l), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_last_report_has("not registered");

    assert_non_null(rcl_lru_shrinker(l, "next", NULL, blob_free, NULL, NULL));
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* After rcl_lru_destroy() the shrinker is gone: reclaim does not call it. */
/* A refused destroy leaves the LRU as it was: reclaim still shrinks it. */
TEST(test_refused_destroy_keeps_the_lru_shrinkable)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(l, "kept", NULL, blob_free, NULL, NULL));
    fill_blobs(l, 64);
    assert_int_equal(rcl_lru_destroy(l), -EBUSY);
    assert_last_report_has("64 items still on the LRU");
    rcl_reclaim(16 * sizeof(struct blob), RCL_DEFAULT);
    assert_true(rcl_lru_count(l) < 64);
    empty_blobs(l);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

static void *destroys_and_ends(void *l)
{
    test_reports_end_this_thread();
    rcl_lru_destroy(l);
    return NULL;                                /* not reached */
}

/* A refused destroy reports once the LRU is the program's again: a report
 * function that ends its thread there leaves it as a returned refusal
 * does, destroyed once it is empty. (It stayed claimed by the destroy
 * that never ended: every later destroy was refused as one of an LRU
 * that is not live.) */
TEST(test_a_refused_destroy_whose_report_ends_its_thread_leaves_the_lru_destroyable)
{
    struct rcl_lru *l = rcl_lru_create();
    fill_blobs(l, 4);
    pthread_t th;

    rcl_set_report_fn(test_report_catch_then_end, NULL);
    assert_int_equal(pthread_create(&th, NULL, destroys_and_ends, l), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_last_report_has("4 items still on the LRU");

    empty_blobs(l);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* A free_fn that destroys its own LRU - the last item gone, so the LRU
 * looks empty - is refused: its scan would come back to a freed LRU. */
static int destroy_from_free_fn;

static void blob_free_and_destroy(struct rcl_lru_node *n, void *arg)
{
    blob_free(n, NULL);
    destroy_from_free_fn = rcl_lru_destroy(arg);
}

TEST(test_destroy_from_its_own_free_fn_is_refused)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(l, "self", NULL, blob_free_and_destroy, l, NULL));
    fill_blobs(l, 1);
    destroy_from_free_fn = 1;
    rcl_reclaim(sizeof(struct blob), RCL_DEFAULT);
    assert_int_equal(destroy_from_free_fn, -EDEADLK);
    assert_int_equal(test_report_count(), 1);
    assert_last_report_has("own shrinker");
    assert_int_equal(rcl_lru_count(l), 0);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

static void *reclaims_and_ends(void *arg)
{
    (void)arg;
    test_reports_end_this_thread();
    rcl_reclaim(sizeof(struct blob), RCL_DEFAULT);
    return NULL;
}

/* The same refusal reports once the LRU is the program's again: a report
 * function that ends the free_fn's thread there leaves it destroyable.
 * (It was made while the destroy held the LRU: every later destroy was
 * refused as one of an LRU that is not live.) */
TEST(test_a_destroy_refused_in_its_own_free_fn_whose_report_ends_its_thread_leaves_the_lru_destroyable)
{
    struct rcl_lru *l = rcl_lru_create();
    pthread_t th;

    assert_non_null(rcl_lru_shrinker(l, "self", NULL, blob_free_and_destroy, l, NULL));
    fill_blobs(l, 1);
    rcl_set_report_fn(test_report_catch_then_end, NULL);
    assert_int_equal(pthread_create(&th, NULL, reclaims_and_ends, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    rcl_set_report_fn(test_report_catch, NULL);
    assert_last_report_has("own shrinker");
    assert_int_equal(rcl_lru_count(l), 0);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* A scan's items, once isolated, are the scan's alone: a free_fn or an
 * isolate callback that ends the scan's thread must leave the ones still
 * to be freed where a later scan finds them, without asking the isolate
 * callback again about items the cache has let go of. */
static _Atomic unsigned long isolated, frees_to_exit_at;

static enum rcl_lru_walk count_isolate(struct rcl_lru_node *n, void *arg)
{
    (void)n;
    (void)arg;
    atomic_fetch_add(&isolated, 1);
    return RCL_LRU_REMOVED;
}

/* Ends its thread once, after freeing the frees_to_exit_at-th item. */
static void blob_free_then_end(struct rcl_lru_node *n, void *arg)
{
    blob_free(n, arg);
    if (atomic_load(&blobs_freed) == atomic_load(&frees_to_exit_at)) {
        atomic_store(&frees_to_exit_at, 0);
        pthread_exit(NULL);
    }
}

static void *reclaims_blobs(void *arg)
{
    rcl_reclaim((size_t)(uintptr_t)arg * sizeof(struct blob), RCL_DEFAULT);
    return NULL;
}

static void reclaim_on_a_thread(size_t nr_blobs)
{
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, reclaims_blobs, (void *)(uintptr_t)nr_blobs), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

/* A free_fn that ends its thread (pthread_exit(), or a cancel it lets in)
 * on its third item leaves the other five on the LRU, counted, and the
 * next scan frees them without isolating them again. (They were on the
 * gone scan's own dispose list: never freed, still charged, reachable
 * from nowhere, and the teardown found the budget's usage above 0.) */
TEST(test_a_free_fn_that_ends_its_thread_leaves_the_rest_to_the_next_scan)
{
    struct rcl_lru *l = rcl_lru_create();

    assert_non_null(rcl_lru_shrinker(l, "ends", count_isolate, blob_free_then_end, NULL, NULL));
    fill_blobs(l, 8);
    atomic_store(&blobs_freed, 0);
    atomic_store(&isolated, 0);
    atomic_store(&frees_to_exit_at, 3);
    alarm(10);
    reclaim_on_a_thread(8);
    assert_int_equal(atomic_load(&blobs_freed), 3);
    assert_int_equal(atomic_load(&isolated), 8);
    assert_int_equal(rcl_lru_count(l), 5);
    assert_int_equal(rcl_lru_destroy(l), -EBUSY);
    assert_last_report_has("5 items still on the LRU");

    rcl_reclaim(5 * sizeof(struct blob), RCL_DEFAULT);
    assert_int_equal(atomic_load(&blobs_freed), 8);
    assert_int_equal(atomic_load(&isolated), 8);
    assert_int_equal(rcl_lru_count(l), 0);
    assert_int_equal(rcl_lru_destroy(l), 0);
    alarm(0);
}

static enum rcl_lru_walk isolate_then_end(struct rcl_lru_node *n, void *arg)
{
    (void)n;
    (void)arg;
    if (atomic_fetch_add(&isolated, 1) == 2)
        pthread_exit(NULL);
    return RCL_LRU_REMOVED;
}

/* An isolate callback that ends a scan's thread on its third item leaves
 * the two it removed before on the LRU, counted, to be freed by the next
 * walk, the program's own included; the third stays where it was. (The
 * two were lost with the scan's dispose list.) */
TEST(test_a_scan_whose_isolate_ends_its_thread_keeps_the_items_it_removed)
{
    struct rcl_lru *l = rcl_lru_create();
    struct rcl_lru_node dispose;

    assert_non_null(rcl_lru_shrinker(l, "ends", isolate_then_end, blob_free, NULL, NULL));
    fill_blobs(l, 4);
    atomic_store(&blobs_freed, 0);
    atomic_store(&isolated, 0);
    alarm(10);
    reclaim_on_a_thread(4);
    assert_int_equal(atomic_load(&isolated), 3);
    assert_int_equal(atomic_load(&blobs_freed), 0);
    assert_int_equal(rcl_lru_count(l), 4);

    /* The two removed come first, whatever the walk's callback says:
     * they are the cache's no longer. */
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(l, count_isolate, NULL, 2, &dispose), 2);
    assert_int_equal(atomic_load(&isolated), 3);
    assert_int_equal(rcl_lru_count(l), 2);
    struct rcl_lru_node *n;
    while ((n = rcl_lru_list_pop(&dispose)) != NULL)
        blob_free(n, NULL);
    empty_blobs(l);
    assert_int_equal(atomic_load(&blobs_freed), 4);
    assert_int_equal(rcl_lru_destroy(l), 0);
    alarm(0);
}

TEST(test_destroy_unregisters_the_shrinker)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(l, "gone", NULL, blob_free, NULL, NULL));
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.nr_shrinkers, 1);
    assert_int_equal(rcl_lru_destroy(l), 0);
    rcl_stats_get(&st);
    assert_int_equal(st.nr_shrinkers, 0);
}

struct racing_destroy {
    pthread_barrier_t go;
    struct rcl_lru *lru;
    int rc;
};

static void *racing_destroy_main(void *arg)
{
    struct racing_destroy *r = arg;
    pthread_barrier_wait(&r->go);
    r->rc = rcl_lru_destroy(r->lru);
    return NULL;
}

/* Two destroys at once: one frees the LRU, the other finds none, never
 * both (a double free), whichever comes first. */
TEST(test_racing_destroys_free_the_lru_once)
{
    for (int round = 0; round < 200; round++) {
        struct racing_destroy r = { .lru = rcl_lru_create() };
        assert_non_null(r.lru);
        assert_non_null(rcl_lru_shrinker(r.lru, "racing", NULL, blob_free, NULL, NULL));
        assert_int_equal(pthread_barrier_init(&r.go, NULL, 2), 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, racing_destroy_main, &r), 0);
        pthread_barrier_wait(&r.go);
        int rc = rcl_lru_destroy(r.lru);
        pthread_join(th, NULL);
        pthread_barrier_destroy(&r.go);
        assert_true((rc == 0 && r.rc == -EINVAL) || (rc == -EINVAL && r.rc == 0));
        assert_int_equal(test_reports_take(), 1);
    }
}

/* rcl_shutdown() from an isolate callback is refused, reported, and the
 * walk goes on in the library as it was: the callback runs under the
 * LRU's lock, and the shutdown joins the background reclaimer, whose scan
 * of this LRU may be waiting for that lock. (It went through; with the
 * reclaimer in such a scan it waited for it for ever.) */
static atomic_int isolate_shutdowns;

static enum rcl_lru_walk shutting_down_isolate(struct rcl_lru_node *n, void *arg)
{
    (void)n;
    (void)arg;
    atomic_fetch_add(&isolate_shutdowns, 1);
    rcl_shutdown();
    return RCL_LRU_REMOVED;
}

TEST(test_shutdown_from_an_isolate_callback_is_refused)
{
    struct item it[3];
    struct rcl_lru *l = lru_filled(it, 3);
    struct rcl_lru_node dispose;

    rcl_lru_list_init(&dispose);
    atomic_store(&isolate_shutdowns, 0);
    assert_int_equal(rcl_lru_walk(l, shutting_down_isolate, NULL, 2, &dispose), 2);
    assert_int_equal(atomic_load(&isolate_shutdowns), 2);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("rcl_shutdown() from an LRU's isolate callback: refused");
    assert_int_equal(rcl_limit(), 64 * MiB);    /* the fixture's budget, never dropped */
    assert_int_equal(rcl_lru_count(l), 1);
    while (rcl_lru_list_pop(&dispose))
        ;
    lru_emptied(l, it, 3);
}

/* A walk inside an isolate callback hands the outer callback back still
 * marked when it returns, and the outermost walk hands back an unmarked
 * thread: a shutdown after the inner walk is refused, after the outer one
 * it goes through. */
struct nested_walk {
    struct rcl_lru *inner;
    int             refused_after_inner;
};

static enum rcl_lru_walk walking_isolate(struct rcl_lru_node *n, void *arg)
{
    struct nested_walk *nw = arg;
    struct rcl_lru_node dispose;

    (void)n;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(nw->inner, shutting_down_isolate, NULL, 1, &dispose);
    while (rcl_lru_list_pop(&dispose))
        ;
    unsigned before = test_report_count();
    rcl_shutdown();
    nw->refused_after_inner = test_report_count() == before + 1;
    return RCL_LRU_SKIP;
}

TEST(test_shutdown_after_a_walk_inside_an_isolate_callback_is_still_refused)
{
    struct item outer_it[1], inner_it[1];
    struct nested_walk nw = { .inner = lru_filled(inner_it, 1) };
    struct rcl_lru *outer = lru_filled(outer_it, 1);
    struct rcl_lru_node dispose;

    rcl_lru_list_init(&dispose);
    atomic_store(&isolate_shutdowns, 0);
    assert_int_equal(rcl_lru_walk(outer, walking_isolate, &nw, 1, &dispose), 0);
    assert_int_equal(atomic_load(&isolate_shutdowns), 1);
    assert_true(nw.refused_after_inner);
    assert_int_equal(test_report_count(), 2);
    assert_last_report_has("rcl_shutdown() from an LRU's isolate callback: refused");
    assert_int_equal(rcl_limit(), 64 * MiB);
    lru_emptied(outer, outer_it, 1);
    lru_emptied(nw.inner, inner_it, 1);
    rcl_shutdown();                             /* outside every walk: goes through */
    assert_int_equal(test_init(32 * MiB), 0);
    assert_int_equal(rcl_limit(), 32 * MiB);
}

/* rcl_shutdown() drops every shrinker, the LRU's with them: in the library
 * started again the LRU takes a new one, which reclaim calls. */
TEST(test_shrinker_again_after_a_restart)
{
    struct rcl_lru *l = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(l, "before", NULL, blob_free, NULL, NULL));
    rcl_shutdown();
    assert_int_equal(test_init(64 * MiB), 0);
    assert_non_null(rcl_lru_shrinker(l, "after", NULL, blob_free, NULL, NULL));
    assert_fails_with(rcl_lru_shrinker(l, "twice", NULL, blob_free, NULL, NULL), EBUSY);
    fill_blobs(l, 64);
    atomic_store(&blobs_freed, 0);
    rcl_reclaim(16 * sizeof(struct blob), RCL_DEFAULT);
    assert_true(atomic_load(&blobs_freed) > 0);
    empty_blobs(l);
    assert_int_equal(rcl_lru_destroy(l), 0);
}

/* ------------------------------------------------------------------------ */
/* The rcl_lru(3) example                                                   */
/* ------------------------------------------------------------------------ */

/* The example works as a cache: with a budget too small for every key, the
 * shrinker keeps it inside, hot keys survive (second chance), nothing
 * fails, and cache_exit() gives everything back. */
TEST(test_header_example_caches_within_budget)
{
    rcl_shutdown();
    assert_int_equal(test_init(1 * MiB), 0);
    assert_int_equal(cache_init(), 0);
    int hot_hits = 0;
    for (unsigned k = 0; k < 5000; k++) {
        assert_int_not_equal(cache_get(k), -1);
        if (k % 50 == 0)
            hot_hits += cache_get(7) == 1;      /* a key used all along */
    }
    assert_true(rcl_lru_count(lru) < 5000);
    assert_true(rcl_lru_count(lru) > 0);
    assert_true(hot_hits > 80);
    cache_exit();
    rcl_usage_sync();
    assert_int_equal(rcl_usage(), 0);
    for (unsigned b = 0; b < NBUCKETS; b++)
        assert_null(table[b]);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[2][256 * 1024];
    static int which;
    char *b = buf[which++ & 1];
    size_t n = fread(b, 1, sizeof(buf[0]) - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

/* The text between the markers, each line with `strip` characters of
 * prefix removed, and without the man page's ``` block fences. */
static void extract(const char *text, size_t strip, char *out, size_t len)
{
    const char *b = strstr(text, "--- example begin");
    const char *e = b ? strstr(b, "--- example end") : NULL;
    out[0] = '\0';
    assert_non_null(e);
    b = strchr(b, '\n') + 1;
    while (b < e && strchr(b, '\n') && strchr(b, '\n') < e) {
        const char *nl = strchr(b, '\n');
        size_t l = (size_t)(nl - b);
        if (l == 3 && !strncmp(b, "```", 3)) {
            b = nl + 1;
            continue;
        }
        const char *s = b;
        if (l >= strip) {
            s += strip;
            l -= strip;
        } else {
            l = 0;     /* " *" alone: an empty line */
        }
        size_t have = strlen(out);
        if (have + l + 2 < len) {
            memcpy(out + have, s, l);
            out[have + l] = '\n';
            out[have + l + 1] = '\0';
        }
        b = nl + 1;
    }
}

TEST(test_manual_example_matches_this_copy)
{
    char hpath[PATH_MAX], tpath[PATH_MAX];
    assert_non_null(test_source(hpath, sizeof(hpath), "docs/man/rcl_lru.3.scd"));
    assert_non_null(test_source(tpath, sizeof(tpath), "tests/test_lru.c"));
    char *h = slurp(hpath), *t = slurp(tpath);
    assert_non_null(h);
    assert_non_null(t);
    static char hx[16384], tx[16384];
    extract(h, 0, hx, sizeof(hx));
    extract(t, 0, tx, sizeof(tx));
    assert_true(strlen(tx) > 1000);
    assert_string_equal(hx, tx);
}

/* ------------------------------------------------------------------------ */
/* Concurrency                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Owners add, delete and touch their own items while walkers isolate them
 * and hand them back. The ownership protocol is the example's: an owner
 * decides under its own lock; the isolate callback only trylocks it. An
 * item's state (0 off, 1 on the LRU, 2 isolated by a walker) is written
 * only under the owner's lock, so the final count must match exactly.
 */
#define OWNERS 4
#define PER_OWNER 64

struct sitem {
    struct rcl_lru_node node;
    int owner;
    int state;
};
struct owner {
    pthread_mutex_t lock;
    struct sitem items[PER_OWNER];
    unsigned seed;
};
static struct owner owners[OWNERS];
static struct rcl_lru *slru;
static _Atomic int stress_stop;

static enum rcl_lru_walk stress_isolate(struct rcl_lru_node *n, void *arg)
{
    unsigned *seed = arg;
    struct sitem *it = RCL_LRU_ENTRY(n, struct sitem, node);
    struct owner *o = &owners[it->owner];
    if (pthread_mutex_trylock(&o->lock) != 0)
        return RCL_LRU_SKIP;
    enum rcl_lru_walk r;
    switch (rand_r(seed) % 8) {
    case 0: r = RCL_LRU_ROTATE; break;
    case 1: r = RCL_LRU_SKIP; break;
    case 2: r = RCL_LRU_STOP; break;
    default: r = RCL_LRU_REMOVED; it->state = 2; break;
    }
    pthread_mutex_unlock(&o->lock);
    return r;
}

/* What the helper threads saw go wrong. cmocka's assertions may only fail
 * on the test's own thread (a failure elsewhere jumps across threads and
 * kills the program without saying which check failed), so helpers count
 * and the test asserts the counts. */
static _Atomic unsigned long thread_faults;

static void thread_check(bool ok)
{
    if (!ok)
        atomic_fetch_add(&thread_faults, 1);
}

static void *stress_owner(void *arg)
{
    struct owner *o = arg;
    for (int i = 0; i < test_scale(40000); i++) {
        struct sitem *it = &o->items[rand_r(&o->seed) % PER_OWNER];
        int op = rand_r(&o->seed) % 3;
        pthread_mutex_lock(&o->lock);
        if (it->state == 0 && op != 2) {
            thread_check(rcl_lru_add(slru, &it->node) == 1);
            it->state = 1;
        } else if (it->state == 1 && op == 0) {
            thread_check(rcl_lru_del(slru, &it->node) == 1);
            it->state = 0;
        } else if (it->state == 1) {
            thread_check(rcl_lru_touch(slru, &it->node) == 1);
        }
        pthread_mutex_unlock(&o->lock);
    }
    return NULL;
}

static void *stress_walker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    struct rcl_lru_node dispose, *n;
    while (!atomic_load(&stress_stop)) {
        rcl_lru_list_init(&dispose);
        rcl_lru_walk(slru, stress_isolate, &seed, 1 + rand_r(&seed) % 32, &dispose);
        while ((n = rcl_lru_list_pop(&dispose)) != NULL) {
            struct sitem *it = RCL_LRU_ENTRY(n, struct sitem, node);
            pthread_mutex_lock(&owners[it->owner].lock);
            thread_check(it->state == 2);
            it->state = 0;                 /* back to its owner */
            pthread_mutex_unlock(&owners[it->owner].lock);
        }
    }
    return NULL;
}

TEST(test_concurrent_owners_and_walkers_keep_count_exact)
{
    slru = rcl_lru_create();
    atomic_store(&stress_stop, 0);
    atomic_store(&thread_faults, 0);
    for (int o = 0; o < OWNERS; o++) {
        pthread_mutex_init(&owners[o].lock, NULL);
        owners[o].seed = 12345u + (unsigned)o;
        for (int i = 0; i < PER_OWNER; i++) {
            rcl_lru_node_init(&owners[o].items[i].node);
            owners[o].items[i].owner = o;
            owners[o].items[i].state = 0;
        }
    }
    pthread_t ot[OWNERS], wt[2];
    for (int w = 0; w < 2; w++)
        pthread_create(&wt[w], NULL, stress_walker, (void *)(uintptr_t)(777 + w));
    for (int o = 0; o < OWNERS; o++)
        pthread_create(&ot[o], NULL, stress_owner, &owners[o]);
    for (int o = 0; o < OWNERS; o++)
        pthread_join(ot[o], NULL);
    atomic_store(&stress_stop, 1);
    for (int w = 0; w < 2; w++)
        pthread_join(wt[w], NULL);
    assert_int_equal(atomic_load(&thread_faults), 0);
    unsigned long on = 0;
    for (int o = 0; o < OWNERS; o++)
        for (int i = 0; i < PER_OWNER; i++) {
            assert_int_not_equal(owners[o].items[i].state, 2);
            on += owners[o].items[i].state == 1;
        }
    assert_int_equal(rcl_lru_count(slru), on);
    struct rcl_lru_node dispose;
    rcl_lru_list_init(&dispose);
    assert_int_equal(rcl_lru_walk(slru, NULL, NULL, ~0UL, &dispose), on);
    while (rcl_lru_list_pop(&dispose))
        ;
    assert_int_equal(rcl_lru_destroy(slru), 0);
}

/* The shrinker runs from reclaim while other threads fill the cache: the
 * budget holds and every allocation succeeds. */
static struct rcl_lru *flru;

/* Once on the LRU an object may be freed by reclaim at any moment, so a
 * thread that still uses it pins it, and the isolate callback skips pinned
 * ones (list_lru's users skip objects with references the same way). */
static enum rcl_lru_walk skip_pinned(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    struct blob *b = RCL_LRU_ENTRY(n, struct blob, node);
    return atomic_load(&b->pinned) ? RCL_LRU_SKIP : RCL_LRU_REMOVED;
}

static void *filler(void *arg)
{
    (void)arg;
    for (int i = 0; i < test_scale(4000); i++) {
        struct blob *b = rcl_alloc(sizeof(*b), RCL_DEFAULT);
        thread_check(b != NULL);
        if (!b)
            break;
        rcl_lru_node_init(&b->node);
        atomic_init(&b->pinned, 1);
        rcl_lru_add(flru, &b->node);
        if (i % 7 == 0)
            rcl_lru_touch(flru, &b->node);
        atomic_store(&b->pinned, 0);    /* from here on reclaim may free it */
    }
    return NULL;
}

TEST(test_concurrent_fill_under_reclaim_never_fails)
{
    rcl_shutdown();
    assert_int_equal(test_init(2 * MiB), 0);
    flru = rcl_lru_create();
    assert_non_null(rcl_lru_shrinker(flru, "fill", skip_pinned, blob_free, NULL, NULL));
    atomic_store(&thread_faults, 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, filler, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    if (atomic_load(&thread_faults))
        print_message("reports: %s\n", test_reports_all());
    assert_int_equal(atomic_load(&thread_faults), 0);    /* no allocation failed */
    rcl_usage_sync();
    assert_true(rcl_usage() <= 2 * MiB);
    assert_true(rcl_lru_count(flru) * sizeof(struct blob) <= 2 * MiB);
    struct rcl_stats st;
    rcl_stats_get(&st);
    assert_int_equal(st.failures, 0);
    empty_blobs(flru);
    assert_int_equal(rcl_lru_destroy(flru), 0);
}


TEST_MAIN();
