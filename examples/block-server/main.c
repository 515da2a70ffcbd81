/* SPDX-License-Identifier: MIT */
/*
 * block-server: a block-server-style request loop that keeps serving when
 * its memory budget is squeezed.
 *
 *   block-server [--budget SIZE] [--squeeze SIZE] [--requests N]
 *                [--blocks N] [--file PATH] [--seed N] [--quiet]
 *
 * It serves N random block reads and writes over a file of 4 KiB blocks
 * (a temporary one unless --file), halfway through lowers the budget to
 * the --squeeze size, then writes everything back and checks every block of
 * the file. Exit status: 0 only when every request completed and verified
 * and the file holds exactly what was written; 1 otherwise; 2 for bad
 * options. A --file that was there is left as it was until the server is
 * set up; one the server made is removed again when it cannot be.
 *
 * The parts: main.c (options, the request loop, checking), cache.c (the
 * shrinkable buffer cache), flusher.c (the I/O-flusher thread). See
 * block-server.h for how libreclaim's tools fit together.
 */
#include "block-server.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BATCH 32        /* requests in flight at once */

struct options {
    size_t   budget, squeeze;
    unsigned long requests;
    unsigned blocks;
    const char *file;
    unsigned seed;
    int      quiet;
};

/* A client request. It comes from a mempool, so taking one never fails, and
 * it carries its own work item, so queueing it allocates nothing. */
struct request {
    struct rcl_work work;
    struct server  *srv;
    unsigned        block, version;
    int             write;
};

struct server {
    struct options        opt;
    struct cache          cache;
    struct rcl_mempool   *requests;
    struct rcl_workqueue *wq;
    atomic_ulong          completed, verified, failed, not_noio, reports;
};

/* ------------------------------------------------------------------------ */
/* Block contents                                                            */
/* ------------------------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void block_pattern(unsigned char *data, unsigned block, unsigned version)
{
    uint64_t seed = mix(((uint64_t)block << 32) | version);
    for (size_t i = 0; i < BLOCK_SIZE; i += 8) {
        uint64_t v = seed + i;
        memcpy(data + i, &v, 8);
    }
}

int block_check(const unsigned char *data, unsigned block, unsigned version)
{
    unsigned char want[BLOCK_SIZE];
    block_pattern(want, block, version);
    return memcmp(data, want, BLOCK_SIZE) == 0;
}

/* ------------------------------------------------------------------------ */
/* Serving a request (on a workqueue worker)                                 */
/* ------------------------------------------------------------------------ */

static void serve(struct rcl_work *w)
{
    struct request *r = (struct request *)w;
    struct server *s = r->srv;
    int ok;

    /* The request loop queued this from NOIO scope; the workqueue carried
     * that here, so nothing this request allocates can recurse into I/O. */
    if (!(rcl_scope_current() & RCL_SCOPE_NOIO))
        atomic_fetch_add(&s->not_noio, 1);

    struct buf *b = cache_get(&s->cache, r->block, !r->write);
    if (!b) {
        ok = 0;
    } else if (r->write) {
        block_pattern(b->data, r->block, r->version);
        cache_put(&s->cache, b, 1);
        ok = 1;
    } else {
        ok = block_check(b->data, r->block, r->version);
        cache_put(&s->cache, b, 0);
    }
    atomic_fetch_add(ok ? &s->verified : &s->failed, 1);
    atomic_fetch_add(&s->completed, 1);
    rcl_mempool_free(r, s->requests);       /* the work item goes with it */
}

/* ------------------------------------------------------------------------ */
/* The request loop                                                          */
/* ------------------------------------------------------------------------ */

/* Issues every request, in batches of distinct blocks (so that requests in
 * flight never touch the same block and the expected contents are known);
 * version[b] is what block b holds once its writes are done. */
static void request_loop(struct server *s, unsigned *version)
{
    const struct options *o = &s->opt;
    unsigned seed = o->seed;
    unsigned long issued = 0;
    int squeezed = 0;

    /* A block server is on the I/O path: no allocation made on behalf of a
     * request may wait for I/O. One scope says so for everything below,
     * including the worker threads the requests are handed to. */
    unsigned noio = rcl_noio_save();

    while (issued < o->requests) {
        unsigned batch[MAX_BATCH], n = 0;
        unsigned want = o->requests - issued < MAX_BATCH ? (unsigned)(o->requests - issued)
                                                         : MAX_BATCH;
        if (want > o->blocks)
            want = o->blocks;
        while (n < want) {
            unsigned blk = (unsigned)rand_r(&seed) % o->blocks, i;
            for (i = 0; i < n && batch[i] != blk; i++)
                ;
            if (i == n)
                batch[n++] = blk;
        }
        for (unsigned i = 0; i < n; i++) {
            /* Never NULL: a blocking mempool allocation waits for a request
             * to be returned rather than fail. */
            struct request *r = rcl_mempool_alloc(s->requests, RCL_DEFAULT);
            rcl_work_init(&r->work, serve);
            r->srv = s;
            r->block = batch[i];
            r->write = rand_r(&seed) % 5 < 2;
            r->version = r->write ? ++version[batch[i]] : version[batch[i]];
            if (rcl_queue_work(s->wq, &r->work) != 0) {
                atomic_fetch_add(&s->failed, 1);
                rcl_mempool_free(r, s->requests);
            }
        }
        rcl_flush_workqueue(s->wq);
        issued += n;

        if (!squeezed && issued >= o->requests / 2) {
            /* Memory got short: the budget halves under a running server. */
            rcl_set_limit(o->squeeze);
            squeezed = 1;
        }
    }
    rcl_noio_restore(noio);
}

/* After write-back: the file itself must hold every block's last version. */
static unsigned long check_file(int fd, const unsigned *version, unsigned blocks)
{
    unsigned char data[BLOCK_SIZE];
    unsigned long bad = 0;
    for (unsigned b = 0; b < blocks; b++)
        if (pread(fd, data, BLOCK_SIZE, (off_t)b * BLOCK_SIZE) != BLOCK_SIZE ||
            !block_check(data, b, version[b]))
            bad++;
    return bad;
}

/* Opens the backing file, a temporary one unless --file; its blocks are
 * written once the server is set up, so that a server that cannot be set
 * up has written none (up to 4 GiB of them), and a --file that was there
 * is as it was. *created: this run made the --file, and takes it back
 * should the server not be set up (file_forget()). */
static int open_file(const struct options *o, int *created)
{
    int fd;
    *created = 0;
    if (o->file) {
        fd = open(o->file, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0)
            *created = 1;
        else if (errno == EEXIST)   /* the user's, never removed */
            fd = open(o->file, O_RDWR | O_CREAT, 0600);
    } else {
        const char *dir = getenv("TMPDIR");
        char path[4096];
        snprintf(path, sizeof(path), "%s/block-server-XXXXXX", dir && *dir ? dir : "/tmp");
        fd = mkstemp(path);
        if (fd >= 0)
            unlink(path);
    }
    return fd;
}

/* A file that was there loses what it held only now, the server set up. */
static int fill_file(int fd, unsigned blocks)
{
    unsigned char data[BLOCK_SIZE];
    if (ftruncate(fd, 0) != 0)
        return -1;
    for (unsigned b = 0; b < blocks; b++) {
        block_pattern(data, b, 0);
        if (pwrite(fd, data, BLOCK_SIZE, (off_t)b * BLOCK_SIZE) != BLOCK_SIZE)
            return -1;
    }
    return 0;
}

/* The --file this run made, removed when the server could not be set up:
 * left, it was an empty or partly written file nobody asked to keep. By
 * its name, and only while the name is still that file's. */
static void file_forget(const struct options *o, int fd, int created)
{
    struct stat ours, named;
    if (created && fstat(fd, &ours) == 0 && stat(o->file, &named) == 0 &&
        ours.st_dev == named.st_dev && ours.st_ino == named.st_ino)
        unlink(o->file);
}

/* ------------------------------------------------------------------------ */
/* Options, set-up, summary                                                  */
/* ------------------------------------------------------------------------ */

static int parse_size(const char *s, size_t *out)
{
    char *end;
    /* strtoull() takes "-5" as a value near the largest there is. */
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    }
    if (errno || end == s || *end || v == 0 || v > (SIZE_MAX >> shift))
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

static int parse_ulong(const char *s, unsigned long *out)
{
    char *end;
    /* strtoul() skips blanks, then takes " -1" as the largest value there
     * is: a number starts with its first character. */
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return errno || *end ? -1 : 0;
}

/* The value given to a long option, for messages about a combination. */
static const char *argv_value(int argc, char **argv, const char *opt)
{
    size_t n = strlen(opt);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], opt) && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], opt, n) && argv[i][n] == '=')
            return argv[i] + n + 1;
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "block-server: a block device server (NBD-like) with a buffer cache, a\n"
               "flusher and a request mempool, serving a request mix while its budget is\n"
               "squeezed halfway; it must finish with no hang and every block intact.\n\n");
    fprintf(f, "usage: block-server [--budget SIZE] [--squeeze SIZE] [--requests N]\n"
               "                    [--blocks N] [--file PATH] [--seed N] [--quiet]\n"
               "  --budget SIZE   memory budget (default 512K; K, M, G suffixes)\n"
               "  --squeeze SIZE  budget after half of the requests (default budget/2)\n"
               "  --requests N    requests to serve (default 20000)\n"
               "  --blocks N      4 KiB blocks in the backing file (default 1024)\n"
               "  --file PATH     backing file (default: a temporary one); one made here\n"
               "                  is removed again if the server cannot be set up\n"
               "  --seed N        seed of the request mix (default 1)\n"
               "  --quiet         print nothing unless something fails\n"
               "  --help          this text\n"
               "The squeezed budget must be at least 64K, for the workers' buffers, the\n"
               "request pool and the reserve, and no larger than the budget.\n");
}

/* Says what was rejected and why, for parse_options' caller to add the usage. */
static int reject(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "block-server: rejected %s%s%s: %s\n", opt, val ? " " : "", val ? val : "", why);
    return -1;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "budget", required_argument, NULL, 'b' },
        { "squeeze", required_argument, NULL, 's' },
        { "requests", required_argument, NULL, 'n' },
        { "blocks", required_argument, NULL, 'k' },
        { "file", required_argument, NULL, 'f' },
        { "seed", required_argument, NULL, 'S' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long v;
    int c;

    *o = (struct options){ .budget = 512 * 1024, .requests = 20000, .blocks = 1024, .seed = 1 };
    while ((c = getopt_long(argc, argv, "b:s:n:k:f:S:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (parse_size(optarg, &o->budget))
                return reject("--budget", optarg, "not a size (try 512K or 2M)");
            break;
        case 's':
            if (parse_size(optarg, &o->squeeze))
                return reject("--squeeze", optarg, "not a size (try 256K)");
            break;
        case 'n':
            if (parse_ulong(optarg, &o->requests))
                return reject("--requests", optarg, "not a number");
            break;
        case 'k':
            if (parse_ulong(optarg, &v) || v == 0 || v > 1u << 20)
                return reject("--blocks", optarg, "not a number from 1 to 1048576");
            o->blocks = (unsigned)v;
            break;
        case 'f': o->file = optarg; break;
        case 'S':
            /* rand_r() takes an unsigned: a larger seed would be cut to
             * its low bits, another mix than the one asked for. */
            if (parse_ulong(optarg, &v) || v > UINT_MAX) {
                char why[64];
                snprintf(why, sizeof(why), "not a number from 0 to %u", UINT_MAX);
                return reject("--seed", optarg, why);
            }
            o->seed = (unsigned)v;
            break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); exit(0);
        default: return -1;   /* getopt has named the option */
        }
    }
    if (optind != argc)
        return reject("the argument", argv[optind], "block-server takes options only");
    int halved = !o->squeeze;
    if (halved)
        o->squeeze = o->budget / 2;
    /* Room for the workers' buffers, the pool and the reserve. */
    if (o->squeeze < 64 * 1024) {
        char why[160];
        snprintf(why, sizeof(why), "the squeezed budget would be %zu KiB%s; it must be at least 64 KiB",
                 o->squeeze / 1024, halved ? " (half of --budget)" : "");
        return reject(halved ? "--budget" : "--squeeze", halved ? argv_value(argc, argv, "--budget") : NULL, why);
    }
    if (o->squeeze > o->budget)
        return reject("--squeeze", NULL, "larger than --budget; a squeeze only lowers the budget");
    return 0;
}

static void report(const char *msg, void *arg)
{
    struct server *s = arg;
    atomic_fetch_add(&s->reports, 1);
    if (!s->opt.quiet)
        fprintf(stderr, "block-server: libreclaim: %s\n", msg);
}

/* Why the server could not be set up: an error, said under --quiet too,
 * where the library's reports (its own reasons, often) are not. */
static int setup_failed(const char *what, int err)
{
    fprintf(stderr, "block-server: cannot set up %s: %s\n", what, strerror(err));
    return -1;
}

/* The library, the request pool and queue, the cache and its flusher, in
 * that order; on failure, what was made is taken down again. */
static int server_start(struct server *s, int fd)
{
    struct rcl_config cfg;
    int err;

    rcl_config_default(&cfg);
    cfg.limit = s->opt.budget;
    /* A reserve a few write-back requests deep, for the flusher. */
    cfg.reserve = s->opt.squeeze / 8;
    cfg.pressure = 0;               /* the budget is the point here */
    rcl_set_report_fn(report, s);
    err = rcl_init(&cfg);
    if (err)
        return setup_failed("libreclaim", -err);
    /* As many requests as can be in flight, so the pool alone carries a
     * full batch when the budget has no room at all. */
    s->requests = rcl_mempool_create(MAX_BATCH, sizeof(struct request));
    if (!s->requests) {
        setup_failed("the request pool", errno);
        goto out_library;
    }
    /* The rescuer keeps requests moving even if no worker thread can be
     * started when memory is short. */
    s->wq = rcl_workqueue_create("blk-req", 4, RCL_WQ_MEM_RECLAIM);
    if (!s->wq) {
        setup_failed("the request workqueue", errno);
        goto out_pool;
    }
    err = cache_init(&s->cache, fd, s->opt.blocks);
    if (err) {
        /* Its table grows with --blocks, and the budget must hold it. */
        char what[128];
        snprintf(what, sizeof(what), "the buffer cache (a table of %zu KiB for %u blocks, in a "
                 "budget of %zu KiB)", ((size_t)s->opt.blocks / 4 + 1) * sizeof(struct buf *) >> 10,
                 s->opt.blocks, s->opt.budget >> 10);
        setup_failed(what, -err);
        goto out_cache;
    }
    err = flusher_start(&s->cache);
    if (err) {
        setup_failed("the flusher", -err);
        goto out_cache;
    }
    return 0;

out_cache:
    cache_destroy(&s->cache);
    rcl_workqueue_destroy(s->wq);
out_pool:
    rcl_mempool_destroy(s->requests);
out_library:
    rcl_shutdown();
    return -1;
}

static void summary(const struct server *s, unsigned long bad_blocks)
{
    struct rcl_stats st;
    const struct cache *c = &s->cache;
    rcl_stats_get(&st);
    printf("block-server: %lu of %lu requests completed, %lu verified, %lu failed\n",
           (unsigned long)s->completed, s->opt.requests, (unsigned long)s->verified,
           (unsigned long)s->failed);
    printf("  budget %zu KiB, squeezed to %zu KiB halfway; peak usage %zu KiB\n",
           s->opt.budget >> 10, s->opt.squeeze >> 10, st.peak >> 10);
    printf("  cache: %lu hits, %lu misses, %lu buffers dropped by the shrinker\n",
           (unsigned long)c->hits, (unsigned long)c->misses, (unsigned long)c->evicted);
    printf("  flusher: %lu blocks written back, %lu write errors (kernel flag: %s)\n",
           (unsigned long)c->written_back, (unsigned long)c->write_errors,
           c->flusher_rc == 0 ? "set" : c->flusher_rc == -EPERM ? "refused, library part only"
                                                             : "failed");
    printf("  reclaim: %lu direct passes, %lu reserve charges, %lu mempool reserve hits\n",
           st.direct_reclaims, st.reserve_allocs, st.mempool_reserve_hits);
    printf("  file: %s\n", bad_blocks ? "MISMATCH" : "every block holds its last write");
    /* With --quiet the reports were not printed: a failed quiet run says
     * there were some, to be seen by running it again without. */
    printf("  libreclaim reports: %lu%s\n", (unsigned long)s->reports,
           !s->reports ? "" : s->opt.quiet ? " (not shown: --quiet)" : " (above)");
}

int main(int argc, char **argv)
{
    static struct server s;
    if (parse_options(argc, argv, &s.opt)) {
        fprintf(stderr, "(block-server --help for the options)\n");
        return 2;
    }

    int created;
    int fd = open_file(&s.opt, &created);
    if (fd < 0) {
        perror("block-server: backing file");
        return 1;
    }
    unsigned *version = calloc(s.opt.blocks, sizeof(*version));
    if (!version) {
        setup_failed("the table of block versions", errno);
        goto out_file;
    }
    if (server_start(&s, fd))
        goto out_version;
    if (fill_file(fd, s.opt.blocks)) {
        perror("block-server: backing file");
        flusher_stop(&s.cache);
        cache_destroy(&s.cache);
        rcl_workqueue_destroy(s.wq);
        rcl_mempool_destroy(s.requests);
        rcl_shutdown();
        goto out_version;
    }

    request_loop(&s, version);

    rcl_workqueue_destroy(s.wq);
    flusher_stop(&s.cache);             /* everything is on the file now */
    unsigned long bad = check_file(fd, version, s.opt.blocks);
    cache_destroy(&s.cache);
    rcl_mempool_destroy(s.requests);
    close(fd);
    free(version);

    int ok = s.completed == s.opt.requests && s.verified == s.opt.requests &&
             !s.failed && !s.not_noio && !bad;
    if (!s.opt.quiet || !ok)
        summary(&s, bad);
    if (s.not_noio)
        printf("block-server: %lu requests ran outside NOIO\n", (unsigned long)s.not_noio);
    rcl_shutdown();
    return ok ? 0 : 1;

out_version:
    free(version);
out_file:
    file_forget(&s.opt, fd, created);
    close(fd);
    return 1;
}
