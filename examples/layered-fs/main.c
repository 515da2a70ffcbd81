/* SPDX-License-Identifier: MIT */
/*
 * layered-fs - reclaim domains on a storage stack with a loop device.
 *
 * Four file systems, each with a cache and a file-system shrinker:
 *
 *   data    on disk sda                          depth 0
 *   home    on disk sdb                          depth 0
 *   img-a   on /dev/loop0, image file on data    depth 1
 *   img-b   on /dev/loop1, image file on home    depth 1
 *
 * Evicting an object writes it back, which takes its file system's journal
 * lock - and for an image file system, through the loop device, the journal
 * lock of the file system below as well. The deadlock of the "Overhaul
 * memalloc_no*" thread (dm-devel, June 2020): a thread in a
 * data transaction (holding data's journal) allocates; reclaim evicts from
 * img-a; the write goes through loop0 into data, which waits for the
 * journal this very thread holds.
 *
 * The same transaction in data, needing more than the free budget, three
 * ways:
 *   1. no scope: reclaim calls every shrinker; img-a's and data's would
 *      recurse into the held journal (caught here, a hang in real life);
 *   2. a plain NOFS scope: no file-system shrinker may run; nothing is
 *      freed and the allocation fails;
 *   3. inside data's domain: home (same depth, unrelated) is reclaimed with
 *      full flags; img-a and img-b (another depth: a loop device may stack
 *      them on data) are NOFS, which a file-system shrinker cannot work in;
 *      data itself is asked and refuses (its transaction is in
 *      rcl_journal_info()). The allocation succeeds, nothing recurses.
 *
 *   make build/examples/layered-fs && ./build/examples/layered-fs
 */
#include "reclaim.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OBJ       1024
#define LIMIT     (16u << 20)
#define PER_FS    ((3u << 20) / OBJ)   /* objects each cache starts with */
#define NEED      ((6u << 20) / OBJ)   /* objects the transaction allocates */

struct fs {
    const char *name;
    unsigned depth;
    struct fs *lower;                 /* the file system under the loop device */
    pthread_mutex_t lock;             /* the cache */
    void **obj;
    size_t n, cap;
    pthread_t journal_holder;         /* the journal lock, as a holder mark */
    bool journal_held;
    int txn;                          /* journal_info points here in a txn */
    unsigned long freed, recursions;
    struct rcl_domain *domain;
    struct rcl_shrinker *shrinker;
};

static struct fs fs[4] = {
    { .name = "data", .depth = 0 },
    { .name = "home", .depth = 0 },
    { .name = "img-a", .depth = 1 },
    { .name = "img-b", .depth = 1 },
};

/* Would writing back an object of f take a journal this very thread holds? */
static bool would_recurse(const struct fs *f)
{
    for (; f; f = f->lower)
        if (f->journal_held && pthread_equal(f->journal_holder, pthread_self()))
            return true;
    return false;
}

static unsigned long fs_count(void *priv, struct rcl_shrink_control *sc)
{
    struct fs *f = priv;
    (void)sc;
    pthread_mutex_lock(&f->lock);
    size_t n = f->n;
    pthread_mutex_unlock(&f->lock);
    return n ? n : RCL_SHRINK_EMPTY;
}

static unsigned long fs_scan(void *priv, struct rcl_shrink_control *sc)
{
    struct fs *f = priv;
    unsigned long freed = 0;

    if (!(sc->gfp & RCL__FS))          /* as the kernel's super_cache_scan() */
        return RCL_SHRINK_STOP;
    if (would_recurse(f)) {
        f->recursions++;               /* the deadlock, caught instead of hit */
        return RCL_SHRINK_STOP;
    }
    pthread_mutex_lock(&f->lock);
    while (f->n && freed < sc->nr_to_scan) {
        rcl_free(f->obj[--f->n]);
        freed++;
    }
    pthread_mutex_unlock(&f->lock);
    f->freed += freed;
    return freed;
}

static const struct rcl_shrinker_ops fs_ops = { fs_count, fs_scan };

/* The "Overhaul memalloc_no*" thread (dm-devel, June 2020): "superblock the
 * same, pass context to filesystem to decide if reclaim from the superblock
 * is safe": not inside our own transaction. */
static int fs_may_reclaim(struct rcl_domain *d, void *arg)
{
    struct fs *f = arg;
    (void)d;
    return rcl_journal_info() != &f->txn;
}

static int cache_add(struct fs *f, void *p)
{
    pthread_mutex_lock(&f->lock);
    int ok = f->n < f->cap;
    if (ok)
        f->obj[f->n++] = p;
    pthread_mutex_unlock(&f->lock);
    return ok;
}

static void fill(void)
{
    for (int i = 0; i < 4; i++) {
        while (fs[i].n < PER_FS) {
            void *p = rcl_alloc(OBJ, RCL_DEFAULT);
            if (!p || !cache_add(&fs[i], p)) {
                rcl_free(p);
                break;
            }
        }
        fs[i].freed = fs[i].recursions = 0;
    }
}

static void show(const char *title, size_t got)
{
    printf("%s allocated %zu of %u KiB\n", title, got * OBJ / 1024, NEED * OBJ / 1024);
    for (int i = 0; i < 4; i++)
        printf("    %-6s (depth %u): %5zu KiB cached, %5lu KiB freed%s\n",
               fs[i].name, fs[i].depth, fs[i].n * OBJ / 1024, fs[i].freed * OBJ / 1024,
               fs[i].recursions ? "   <- would recurse into the held journal" : "");
}

enum how { NO_SCOPE, NOFS_SCOPE, DOMAIN };

/* A transaction in data: holds data's journal and allocates NEED objects
 * into data's cache, stopping at the first failure. */
static size_t transaction(enum how how)
{
    struct fs *data = &fs[0];
    unsigned tok = 0, nofs = 0;
    size_t got = 0;

    data->journal_holder = pthread_self();
    data->journal_held = true;
    if (how == DOMAIN) {
        tok = rcl_domain_enter(data->domain);
        rcl_journal_info_set(&data->txn);
    } else if (how == NOFS_SCOPE) {
        nofs = rcl_nofs_save();
    }
    for (unsigned i = 0; i < NEED; i++) {
        void *p = rcl_alloc(OBJ, RCL_DEFAULT | RCL__NOWARN);
        if (!p)
            break;
        if (!cache_add(data, p))
            rcl_free(p);
        got++;
    }
    if (how == DOMAIN) {
        rcl_journal_info_set(NULL);
        rcl_domain_exit(tok);
    } else if (how == NOFS_SCOPE) {
        rcl_nofs_restore(nofs);
    }
    data->journal_held = false;
    return got;
}

static void empty_data(void)
{
    while (fs[0].n)
        rcl_free(fs[0].obj[--fs[0].n]);
}

/* A file system's cache, domain and shrinker; on failure says which could
 * not be made and why (errno), and leaves the rest for teardown(). */
static int fs_setup(struct fs *f)
{
    const char *what;

    pthread_mutex_init(&f->lock, NULL);
    f->cap = LIMIT / OBJ;
    f->obj = calloc(f->cap, sizeof(void *));
    if (!f->obj) {
        what = "its cache";
        goto fail;
    }
    f->domain = rcl_domain_create(f->name, f->depth, fs_may_reclaim, f);
    if (!f->domain) {
        what = "its reclaim domain";
        goto fail;
    }
    struct rcl_shrinker_opts o = { .needs = RCL__FS, .domain = f->domain };
    f->shrinker = rcl_shrinker_register(f->name, &fs_ops, f, &o);
    if (!f->shrinker) {
        what = "its shrinker";
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "layered-fs: cannot set up %s: %s: %s\n", f->name, what, strerror(errno));
    return -1;
}

/* Takes down the first n file systems, as far as each was set up, and the
 * library: the shrinker before the cache it frees from, the domain once it
 * owns no shrinker. */
static void teardown(int n)
{
    for (int i = 0; i < n; i++) {
        struct fs *f = &fs[i];

        if (f->shrinker)
            rcl_shrinker_unregister(f->shrinker);
        while (f->n)
            rcl_free(f->obj[--f->n]);
        free(f->obj);
        if (f->domain)
            rcl_domain_destroy(f->domain);
        pthread_mutex_destroy(&f->lock);
    }
    rcl_shutdown();
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        int help = !strcmp(argv[1], "--help");
        if (!help)
            fprintf(stderr, "layered-fs: rejected '%s': this example takes no arguments\n", argv[1]);
        fprintf(help ? stdout : stderr,
                "usage: layered-fs\nOne transaction in a file system, needing more than the free "
                "budget, run three ways\n(no scope, a NOFS scope, inside its reclaim domain) on four "
                "file systems, two of\nthem on loop devices over the other two.\n");
        return help ? 0 : 2;
    }
    struct rcl_config cfg;
    rcl_config_default(&cfg);
    cfg.limit = LIMIT;
    cfg.background = 0;                /* only direct reclaim, to see it */
    cfg.pressure = 0;
    int err = rcl_init(&cfg);
    if (err) {
        fprintf(stderr, "layered-fs: cannot set up libreclaim: %s\n", strerror(-err));
        return 1;
    }
    fs[2].lower = &fs[0];
    fs[3].lower = &fs[1];
    for (int i = 0; i < 4; i++)
        if (fs_setup(&fs[i])) {
            teardown(i + 1);
            return 1;
        }

    printf("budget %u MiB, %u KiB cached per file system; a transaction in data\n"
           "(holding data's journal) needs %u KiB more.\n\n",
           LIMIT >> 20, PER_FS * OBJ / 1024, NEED * OBJ / 1024);

    unsigned long recursions = 0;
    static const char *const title[] = {
        "1. no scope:               ",
        "2. plain NOFS scope:       ",
        "3. inside data's domain:   ",
    };
    for (int how = NO_SCOPE; how <= DOMAIN; how++) {
        empty_data();
        fill();
        size_t got = transaction((enum how)how);
        show(title[how], got);
        if (how == DOMAIN)
            for (int i = 0; i < 4; i++)
                recursions += fs[i].recursions;
        printf("\n");
    }
    printf("inside the domain: %lu recursions into a held journal\n", recursions);

    teardown(4);
    return recursions ? 1 : 0;
}
