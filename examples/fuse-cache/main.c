/* SPDX-License-Identifier: MIT */
/*
 * fuse-cache - a FUSE block store whose cache the kernel's memory pressure
 * can shrink, and which keeps serving while the kernel waits on it.
 *
 *   fuse-cache --backing=/var/tmp/disk.img --size=704M [-f] MOUNTPOINT
 *   losetup -f --show MOUNTPOINT/disk     # and a file system on top
 *
 * The mount shows one file, "disk", of --size bytes, stored in the backing
 * file (created or extended as needed). Reads and writes go through a cache
 * of 64 KiB blocks; writes go through to the backing file at once (the
 * kernel's own write-back cache, negotiated in init(), gathers them first),
 * so cached blocks are always clean and can be dropped at any time. Its
 * size is fixed: fallocate() allocates within it, in the backing file,
 * and punches holes there (a loop device's discard), the cached blocks of
 * a hole dropped; a write past the end, which moves the kernel's size of
 * the file past it, is followed by a truncate back (size_set_back()).
 *
 * Written to be copied. The rules that matter for a daemon the kernel may
 * be waiting on to free memory, each shown where it applies below:
 *
 *  1. Start libreclaim after fuse_daemonize(): it forks, and the I/O
 *     flusher's reserve made before would be the parent's pages, shared
 *     copy-on-write (the child's first write to each faults) and unlocked.
 *  2. The cache's blocks come from rcl_alloc and sit on an rcl_lru whose
 *     shrinker frees them under pressure (automatic budget: the cgroup's
 *     limit less a margin). The shrinker's isolate callback only trylocks
 *     the cache lock; so no backing I/O, and no allocation, ever happens
 *     under that lock - they happen under the per-block stripe locks, which
 *     the shrinker never takes.
 *  3. The serving threads are I/O flushers (rcl_io_flusher_set). Without
 *     CAP_SYS_RESOURCE the kernel refuses the flag; --reserve=SIZE then
 *     makes a pre-faulted reserve their allocations come from (the
 *     unprivileged I/O-flusher mode, see include/reclaim.h).
 *  4. No new page while serving: a fixed set of worker threads, each with
 *     its receive and I/O buffers allocated and touched before the first
 *     request; backing I/O with O_DIRECT (a buffered pwrite would charge
 *     page cache to our cgroup and could wait on write-back, like a page
 *     fault).
 *
 * Statistics go to stderr on SIGUSR1 and at unmount; in the background,
 * where stderr is /dev/null, to the file --log names. SIGTERM, SIGINT or
 * SIGHUP unmounts (lazily): what is still open there (a loop device
 * attached to the disk) is served until the kernel lets go of it, then
 * the daemon exits. A connection aborted (fusectl) ends the daemon too:
 * it unmounts the dead mount on its way out, says so, and exits 0. A
 * worker that cannot read the FUSE device ends alone, and the daemon
 * unmounts as at a signal and exits with status 1. --naive
 * turns the library off (a malloc'ed cache that never shrinks): what
 * rules 2-4 are for, shown by their absence.
 */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include "reclaim.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK       (64u * 1024u)
#define MAX_IO      (1024u * 1024u)   /* max_write, and so the largest read */
#define PAGE        4096u
#define STRIPES     16u
#define MAX_THREADS 16
#define DISK_INO    2
#define DISK_NAME   "disk"

/* ------------------------------------------------------------------------ */
/* Options and state                                                         */
/* ------------------------------------------------------------------------ */

static struct {
    const char *backing, *mountpoint, *log;
    uint64_t    size;
    unsigned    threads;
    size_t      reserve;
    bool        naive, foreground, mlock_reserve;
} opt = { .size = 704ull << 20, .threads = 2 };

struct cblock {
    struct rcl_lru_node lru;
    uint64_t            idx;
    unsigned            refs;     /* readers copying out; under cache_lock */
    bool                mapped;   /* in map[]; under cache_lock */
    char                data[BLOCK];
};

static int               backing_fd = -1;
static int               log_fd = -1;      /* --log: standard error from the start */
static uint64_t          nblocks;
/* The cache: map[] and every block's refs/mapped, under cache_lock - the
 * lock the shrinker's isolate trylocks. Never held across I/O or an
 * allocation (rule 2). */
static pthread_mutex_t   cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cblock   **map;
static struct rcl_lru   *lru;
/* Stripe locks order a block's backing I/O with its cache update: a write
 * and a read miss of the same block never overlap. The shrinker never
 * takes them, so they may be held across I/O and allocation. */
static pthread_mutex_t   stripe[STRIPES];

static struct {
    atomic_ulong reads, read_bytes, writes, write_bytes, hits, misses;
    atomic_ulong backing_reads, backing_writes, evicted, no_room, cached;
    /* The slowest request served and the slowest backing call, in µs: a
     * stalled writer with a quick daemon is not the daemon's doing. */
    atomic_ulong max_serve_us, max_backing_us;
} st;

static unsigned long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long)ts.tv_sec * 1000000ul + (unsigned long)ts.tv_nsec / 1000ul;
}

static void note_max(atomic_ulong *max, unsigned long since)
{
    unsigned long d = now_us() - since, m = atomic_load(max);
    while (d > m && !atomic_compare_exchange_weak(max, &m, d))
        ;
}

struct worker {
    pthread_t th;
    char     *rbuf;     /* libfuse's receive buffer, ours so that it is touched */
    size_t    rbuf_size;
    char     *iobuf;    /* aligned: O_DIRECT transfers and read replies */
    char     *blkbuf;   /* aligned: one block, for read misses */
    bool      flusher_set;
};
static struct worker       workers[MAX_THREADS];
static struct fuse_session *session;
static atomic_int           workers_done;
/* A worker ended on an error reading the device: the main thread ends
 * the daemon as at a signal, and the exit status says so. */
static atomic_bool          worker_failed;
/* Our mount's device ("major:minor", as /proc/self/mountinfo writes it):
 * how the end tells our mount from one under it on the same path. */
static char                 mount_dev[32];
/* A write-back past the end of the disk was answered, and the kernel's
 * size of the file is past it: for the set-back's thread to set back. */
static atomic_bool          size_past_end;
/* The set-back's own thread (size_set_back()), so that the main thread,
 * which takes the signals, never waits with it: its truncate waits in the
 * kernel for the write-backs in flight, as long as a stuck backing write
 * lasts. Woken by the worker that sets size_past_end, and at the end. */
static pthread_t            set_back_thread;
static bool                 set_back_started;
static sem_t                set_back_wake;
/* A signal was taken, or a worker failed: the mount is detached, and no
 * set-back is begun after. */
static atomic_bool          stopping;

/* ------------------------------------------------------------------------ */
/* Memory: from the library, or (--naive) malloc with no bound               */
/* ------------------------------------------------------------------------ */

static struct cblock *block_alloc(void)
{
    if (opt.naive)
        return malloc(sizeof(struct cblock));
    /* RCL_DEFAULT: it may run the shrinker, which may trylock cache_lock:
     * we do not hold it here (rule 2). A flusher thread in the
     * unprivileged mode gets reserve memory or NULL, never a new page. */
    return rcl_alloc(sizeof(struct cblock), RCL_DEFAULT);
}

static void block_free(struct cblock *b)
{
    if (opt.naive)
        free(b);
    else
        rcl_free(b);
}

/* Buffers of the serving threads: mapped and written now, before the first
 * request, and kept (rule 4). */
static void *prefaulted(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, len);
    return p;
}

/* ------------------------------------------------------------------------ */
/* The cache                                                                 */
/* ------------------------------------------------------------------------ */

/* The shrinker's isolate: called with the LRU lock held, so only a trylock
 * of the cache lock (the cache takes cache_lock, then the LRU lock). */
static enum rcl_lru_walk block_isolate(struct rcl_lru_node *n, void *arg)
{
    struct cblock *b = RCL_LRU_ENTRY(n, struct cblock, lru);
    (void)arg;
    if (pthread_mutex_trylock(&cache_lock) != 0)
        return RCL_LRU_SKIP;
    enum rcl_lru_walk r = RCL_LRU_SKIP;
    if (!b->refs) {
        map[b->idx] = NULL;
        b->mapped = false;
        st.cached--;
        r = RCL_LRU_REMOVED;
    }
    pthread_mutex_unlock(&cache_lock);
    return r;
}

static void block_evict_free(struct rcl_lru_node *n, void *arg)
{
    (void)arg;
    st.evicted++;
    block_free(RCL_LRU_ENTRY(n, struct cblock, lru));
}

/* The unprivileged flusher's reserve is full: free some of our own blocks
 * and let the caller try once more. */
static void evict_some(unsigned long n)
{
    struct rcl_lru_node dispose, *it;
    rcl_lru_list_init(&dispose);
    rcl_lru_walk(lru, block_isolate, NULL, n, &dispose);
    while ((it = rcl_lru_list_pop(&dispose)) != NULL)
        block_evict_free(it, NULL);
}

static struct cblock *block_new(uint64_t idx, const char *src)
{
    struct cblock *b = block_alloc();
    if (!b && !opt.naive && rcl_io_flusher_reserved()) {
        evict_some(32);
        b = block_alloc();
    }
    if (!b) {
        st.no_room++;
        return NULL;
    }
    memcpy(b->data, src, BLOCK);
    b->idx = idx;
    b->refs = 0;
    b->mapped = false;
    if (!opt.naive)
        rcl_lru_node_init(&b->lru);
    return b;
}

/* A hit: the block, with a reference that keeps it alive outside the lock. */
static struct cblock *cache_get(uint64_t idx)
{
    pthread_mutex_lock(&cache_lock);
    struct cblock *b = map[idx];
    if (b) {
        b->refs++;
        if (!opt.naive)
            rcl_lru_touch(lru, &b->lru);
    }
    pthread_mutex_unlock(&cache_lock);
    return b;
}

static void cache_put(struct cblock *b)
{
    pthread_mutex_lock(&cache_lock);
    bool dead = --b->refs == 0 && !b->mapped;
    pthread_mutex_unlock(&cache_lock);
    if (dead)
        block_free(b);
}

/* Puts nb (may be NULL) in idx's place; the block it replaces is freed
 * here, or by its last reader. Blocks are never changed in place, so a
 * reader copying out of one needs no lock. Caller holds idx's stripe. */
static void cache_replace(uint64_t idx, struct cblock *nb, bool only_if_empty)
{
    struct cblock *old;
    bool dead = false;

    pthread_mutex_lock(&cache_lock);
    old = map[idx];
    if (old && only_if_empty) {
        pthread_mutex_unlock(&cache_lock);
        if (nb)
            block_free(nb);
        return;
    }
    if (old) {
        map[idx] = NULL;
        old->mapped = false;
        if (!opt.naive)
            rcl_lru_del(lru, &old->lru);
        dead = old->refs == 0;
        st.cached--;
    }
    if (nb) {
        map[idx] = nb;
        nb->mapped = true;
        if (!opt.naive)
            rcl_lru_add(lru, &nb->lru);
        st.cached++;
    }
    pthread_mutex_unlock(&cache_lock);
    if (dead)
        block_free(old);
}

static void stripes_lock(uint64_t first, uint64_t last)
{
    for (unsigned s = 0; s < STRIPES; s++)
        if (last - first + 1 >= STRIPES || (s - first % STRIPES) % STRIPES <= last - first)
            pthread_mutex_lock(&stripe[s]);
}

static void stripes_unlock(uint64_t first, uint64_t last)
{
    for (unsigned s = STRIPES; s-- > 0;)
        if (last - first + 1 >= STRIPES || (s - first % STRIPES) % STRIPES <= last - first)
            pthread_mutex_unlock(&stripe[s]);
}

/* ------------------------------------------------------------------------ */
/* Backing I/O: O_DIRECT, from the thread's pre-faulted aligned buffers      */
/* ------------------------------------------------------------------------ */

static int backing_io(bool write, char *buf, size_t len, uint64_t off)
{
    unsigned long t0 = now_us();
    while (len) {
        ssize_t n = write ? pwrite(backing_fd, buf, len, (off_t)off)
                          : pread(backing_fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    write ? st.backing_writes++ : st.backing_reads++;
    note_max(&st.max_backing_us, t0);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* File system operations                                                    */
/* ------------------------------------------------------------------------ */

static struct worker *self_worker(void);

/* Rule 3: each serving thread is a flusher, set on its first request (the
 * set touches its stack in the unprivileged mode: before the cgroup is
 * under pressure, since the first requests come at mount time). */
static void flusher_once(struct worker *w)
{
    if (!opt.naive && !w->flusher_set) {
        (void)rcl_io_flusher_set(1);
        w->flusher_set = true;
    }
}

static void fill_attr(fuse_ino_t ino, struct stat *s)
{
    memset(s, 0, sizeof(*s));
    s->st_ino = ino;
    if (ino == FUSE_ROOT_ID) {
        s->st_mode = S_IFDIR | 0755;
        s->st_nlink = 2;
    } else {
        s->st_mode = S_IFREG | 0600;
        s->st_nlink = 1;
        s->st_size = (off_t)opt.size;
        s->st_blocks = (blkcnt_t)(opt.size / 512);
    }
    s->st_blksize = BLOCK;
}

static void fc_init(void *ud, struct fuse_conn_info *conn)
{
    (void)ud;
    /* The kernel's write-back cache gathers small writes into pages and
     * sends them in large requests; we still write through at once. */
    if (conn->capable & FUSE_CAP_WRITEBACK_CACHE)
        conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    /* Splice would make libfuse allocate pipes while serving (rule 4). */
    conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
    conn->max_write = MAX_IO;
}

static void fc_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fuse_entry_param e;
    if (parent != FUSE_ROOT_ID || strcmp(name, DISK_NAME) != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    memset(&e, 0, sizeof(e));
    e.ino = DISK_INO;
    e.attr_timeout = e.entry_timeout = 3600;
    fill_attr(DISK_INO, &e.attr);
    fuse_reply_entry(req, &e);
}

static void fc_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat s;
    (void)fi;
    if (ino != FUSE_ROOT_ID && ino != DISK_INO) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fill_attr(ino, &s);
    fuse_reply_attr(req, &s, 3600);
}

/* The disk's size is fixed; times and modes are not kept. */
static void fc_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    (void)attr;
    if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != opt.size) {
        fuse_reply_err(req, EPERM);
        return;
    }
    fc_getattr(req, ino, fi);
}

static void fc_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (ino != DISK_INO) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    /* No keep_cache: each open drops the kernel's pages of the file, so
     * what is read after a re-attach comes through this daemon. */
    fi->keep_cache = 0;
    fuse_reply_open(req, fi);
}

static void fc_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct worker *w = self_worker();
    (void)ino; (void)fi;
    flusher_once(w);
    if ((uint64_t)off >= opt.size) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > opt.size - (uint64_t)off)
        size = (size_t)(opt.size - (uint64_t)off);
    if (size > MAX_IO)
        size = MAX_IO;   /* max_write bounds the kernel's reads too */

    uint64_t pos = (uint64_t)off, end = pos + size;
    while (pos < end) {
        uint64_t idx = pos / BLOCK, boff = pos % BLOCK;
        size_t n = (size_t)(end - pos < BLOCK - boff ? end - pos : BLOCK - boff);
        char *dst = w->iobuf + (pos - (uint64_t)off);
        struct cblock *b = cache_get(idx);
        if (b) {
            st.hits++;
            memcpy(dst, b->data + boff, n);
            cache_put(b);
        } else {
            st.misses++;
            /* A miss: the stripe lock orders it with writes of this block;
             * the read and the allocation happen without cache_lock. */
            stripes_lock(idx, idx);
            int err = backing_io(false, w->blkbuf, BLOCK, idx * BLOCK);
            if (!err)
                cache_replace(idx, block_new(idx, w->blkbuf), true);
            stripes_unlock(idx, idx);
            if (err) {
                fuse_reply_err(req, -err);
                return;
            }
            memcpy(dst, w->blkbuf + boff, n);
        }
        pos += n;
    }
    st.reads++;
    st.read_bytes += size;
    fuse_reply_buf(req, w->iobuf, size);
}

/* Write-through: the pages the request covers go to the backing file
 * (partial pages read and merged first), then whole blocks are cached and
 * partly covered ones dropped. */
static void fc_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct worker *w = self_worker();
    (void)ino;
    flusher_once(w);
    if (size > MAX_IO) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    /* A buffered write past the end moved the kernel's size of the file
     * past it, and what we answer here does not move it back: the
     * set-back's thread does (size_set_back()), woken once for any number
     * of such writes before it looks. */
    if (fi->writepage && (uint64_t)off + size > opt.size &&
        !atomic_exchange(&size_past_end, true))
        sem_post(&set_back_wake);
    if ((uint64_t)off >= opt.size) {
        fuse_reply_err(req, ENOSPC);
        return;
    }
    /* The kernel's write-back of the last page carries what a buffered
     * write put past the end: refused whole, the part before the end was
     * lost. What fits is written, and the write is short, as a block
     * device's. Not a direct write's: the kernel turns its short answer
     * into EIO, where ENOSPC says what happened. */
    if (size > opt.size - (uint64_t)off) {
        if (!fi->writepage) {
            fuse_reply_err(req, ENOSPC);
            return;
        }
        size = (size_t)(opt.size - (uint64_t)off);
    }
    uint64_t first = (uint64_t)off / BLOCK, last = ((uint64_t)off + size - 1) / BLOCK;
    uint64_t start = (uint64_t)off & ~(uint64_t)(PAGE - 1);
    uint64_t end = ((uint64_t)off + size + PAGE - 1) & ~(uint64_t)(PAGE - 1);
    int err = 0;

    stripes_lock(first, last);
    if (start != (uint64_t)off)
        err = backing_io(false, w->iobuf, PAGE, start);
    if (!err && end != (uint64_t)off + size && (end - PAGE > start || start == (uint64_t)off))
        err = backing_io(false, w->iobuf + (end - PAGE - start), PAGE, end - PAGE);
    if (!err) {
        memcpy(w->iobuf + ((uint64_t)off - start), buf, size);
        err = backing_io(true, w->iobuf, (size_t)(end - start), start);
    }
    for (uint64_t i = first; !err && i <= last; i++) {
        bool whole = i * BLOCK >= (uint64_t)off && (i + 1) * BLOCK <= (uint64_t)off + size;
        cache_replace(i, whole ? block_new(i, w->iobuf + (i * BLOCK - start)) : NULL, false);
    }
    stripes_unlock(first, last);
    if (err) {
        fuse_reply_err(req, -err);
        return;
    }
    st.writes++;
    st.write_bytes += size;
    fuse_reply_write(req, size);
}

/* The backing file's fallocate(), never growing it; EINTR retried. */
static int backing_fallocate(int mode, uint64_t off, uint64_t len)
{
    int r;
    while ((r = fallocate(backing_fd, mode | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len)) != 0 &&
           errno == EINTR)
        ;
    return r ? -errno : 0;
}

/* A hole punched in [off, end): in the backing file, then the cached
 * blocks it touches dropped, the partly covered ones too, so that what is
 * read there next comes from the backing file. Dropped whether the punch
 * succeeded or not: a part of it may have. The stripes keep a read miss
 * from caching what the punch is about to remove. */
static int punch(uint64_t off, uint64_t end)
{
    uint64_t first = off / BLOCK, last = (end - 1) / BLOCK;
    stripes_lock(first, last);
    int err = backing_fallocate(FALLOC_FL_PUNCH_HOLE, off, end - off);
    for (uint64_t i = first; i <= last; i++)
        cache_replace(i, NULL, false);
    stripes_unlock(first, last);
    return err;
}

/* What makes sense for a disk of fixed size over a backing file: space
 * allocated (in the backing file), and a hole punched, which a loop device
 * on the disk asks for as its discard. Other modes are refused with
 * EOPNOTSUPP, as the kernel's file systems refuse what they do not do;
 * never ENOSYS, after which the kernel refuses every mode itself. Space
 * past the end would grow the disk: refused (EFBIG, as past a file's
 * largest size) unless the size is kept, and then there is none to
 * allocate or punch there. */
static void fc_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    (void)ino; (void)fi;
    flusher_once(self_worker());
    if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) ||
        ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (offset < 0 || length <= 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    uint64_t off = (uint64_t)offset, end = off + (uint64_t)length;
    if (!(mode & FALLOC_FL_KEEP_SIZE) && end > opt.size) {
        fuse_reply_err(req, EFBIG);
        return;
    }
    if (end > opt.size)
        end = opt.size;
    int err = 0;
    if (off < end)
        err = mode & FALLOC_FL_PUNCH_HOLE ? punch(off, end)
                                          : backing_fallocate(0, off, end - off);
    fuse_reply_err(req, -err);
}

static void fc_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino; (void)datasync; (void)fi;
    fuse_reply_err(req, fdatasync(backing_fd) ? errno : 0);
}

static void fc_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino; (void)fi;
    fuse_reply_err(req, 0);
}

static void fc_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    static const char *const names[] = { ".", "..", DISK_NAME };
    char buf[512];
    size_t len = 0;
    (void)fi;
    if (ino != FUSE_ROOT_ID) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    if (size > sizeof(buf))
        size = sizeof(buf);
    for (off_t i = off; i < 3; i++) {
        struct stat s;
        fill_attr(i == 2 ? DISK_INO : FUSE_ROOT_ID, &s);
        size_t n = fuse_add_direntry(req, buf + len, size - len, names[i], &s, i + 1);
        if (n > size - len)
            break;
        len += n;
    }
    fuse_reply_buf(req, buf, len);
}

static const struct fuse_lowlevel_ops ops = {
    .init = fc_init,
    .lookup = fc_lookup,
    .getattr = fc_getattr,
    .setattr = fc_setattr,
    .open = fc_open,
    .read = fc_read,
    .write = fc_write,
    .flush = fc_flush,
    .fsync = fc_fsync,
    .readdir = fc_readdir,
    .fallocate = fc_fallocate,
};

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

static void stats_print(const char *when)
{
    fprintf(stderr,
            "fuse-cache %s: reads=%lu read_bytes=%lu writes=%lu write_bytes=%lu "
            "hits=%lu misses=%lu backing_reads=%lu backing_writes=%lu cached_blocks=%lu "
            "evicted=%lu no_room=%lu max_serve_ms=%lu max_backing_ms=%lu mode=%s\n",
            when, st.reads, st.read_bytes, st.writes, st.write_bytes, st.hits, st.misses,
            st.backing_reads, st.backing_writes, st.cached, st.evicted, st.no_room,
            st.max_serve_us / 1000, st.max_backing_us / 1000,
            opt.naive ? "naive" : opt.reserve ? "reserve" : "library");
    if (!opt.naive) {
        struct rcl_flusher_reserve_stats r;
        rcl_io_flusher_reserve_stats(&r);
        fprintf(stderr,
                "fuse-cache %s: budget=%zu usage=%zu reserve=%zu reserve_used=%zu "
                "reserve_peak=%zu reserve_failures=%lu reserve_threads=%u locked=%d\n",
                when, rcl_limit(), rcl_usage(), r.size, r.used, r.peak, r.failures,
                r.threads, r.locked);
    }
}

/* ------------------------------------------------------------------------ */
/* Workers: a fixed set, buffers ready before the first request (rule 4)     */
/* ------------------------------------------------------------------------ */

static __thread struct worker *self;
static struct worker *self_worker(void) { return self; }

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    self = w;
    while (!fuse_session_exited(session)) {
        struct fuse_buf fbuf = { .mem = w->rbuf, .size = w->rbuf_size };
        int res = fuse_session_receive_buf(session, &fbuf);
        if (res == -EINTR || res == -EAGAIN)
            continue;
        if (res == 0)       /* ENODEV: the connection ended (unmount, abort) */
            break;
        if (res == -ECONNABORTED) {
            /* The connection's end, as ENODEV, and not always an abort:
             * the kernel shuts the connection down once the last user of
             * an unmounted mount has gone, and a worker that took a
             * request off the queue in that moment (the RELEASE of that
             * last close) reads this. Whether it was aborted is told by
             * the mount (detach_if_aborted()). */
            break;
        }
        if (res < 0) {
            /* Not fuse_session_exit(): the other workers would drop
             * unanswered each request they read next. This one ends;
             * they serve on while the main thread detaches the mount. */
            fprintf(stderr, "fuse-cache: worker %u: reading /dev/fuse: %s\n",
                    (unsigned)(w - workers) + 1, strerror(-res));
            atomic_store(&worker_failed, true);
            break;
        }
        unsigned long t0 = now_us();
        fuse_session_process_buf(session, &fbuf);
        note_max(&st.max_serve_us, t0);
    }
    if (w->flusher_set)
        rcl_io_flusher_set(0);
    atomic_fetch_add(&workers_done, 1);
    return NULL;
}

static int workers_prepare(void)
{
    /* libfuse reads up to its buffer size (FUSE_MAX_MAX_PAGES pages plus a
     * header page) into the buffer it is given. */
    size_t rsize = 256 * (size_t)getpagesize() + 2 * (size_t)getpagesize();
    for (unsigned i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        w->rbuf_size = rsize;
        w->rbuf = prefaulted(rsize);
        w->iobuf = prefaulted(MAX_IO + 2 * PAGE);
        w->blkbuf = prefaulted(BLOCK);
        if (!w->rbuf || !w->iobuf || !w->blkbuf)
            return -ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Start-up                                                                  */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s --backing=FILE [options] MOUNTPOINT\n"
            "\n"
            "A FUSE block store: MOUNTPOINT/" DISK_NAME " is --size bytes kept in FILE, read and\n"
            "written through a cache of 64 KiB blocks that libreclaim shrinks under\n"
            "memory pressure (automatic budget: the memory cgroup's limit less a margin).\n"
            "\n"
            "  --backing=FILE   backing file (created, extended to --size); O_DIRECT\n"
            "  --size=SIZE      size of the disk, K/M/G suffixes (default 704M)\n"
            "  --threads=N      serving threads, 1-%d (default 2), all started up front\n"
            "  --reserve=SIZE   unprivileged I/O-flusher mode: a pre-faulted reserve the\n"
            "                   serving threads allocate from when the kernel refuses\n"
            "                   PR_SET_IO_FLUSHER (see include/reclaim.h for sizing)\n"
            "  --mlock          mlock the reserve (needs RLIMIT_MEMLOCK or CAP_IPC_LOCK)\n"
            "  --naive          no libreclaim: a malloc'ed cache that never shrinks\n"
            "  --log=FILE       messages and statistics appended to FILE, not stderr\n"
            "  -f, --foreground stay in the foreground\n"
            "  -h, --help       this text\n"
            "\n"
            "Statistics go to stderr (or --log) on SIGUSR1 and at unmount. In the\n"
            "background stderr is /dev/null: without --log, nothing is printed once\n"
            "the daemon is up. SIGTERM, SIGINT or SIGHUP unmounts (lazily); what is\n"
            "still open there (a loop device attached to the disk) is served until the\n"
            "kernel lets go of it, then the daemon exits. A connection aborted\n"
            "(/sys/fs/fuse/connections/N/abort) ends it too, its dead mount unmounted.\n"
            "A worker that cannot read the FUSE device says so and ends; the daemon\n"
            "then unmounts as at a signal and exits with status 1. The library's own\n"
            "environment variables apply (RECLAIM_LIMIT, RECLAIM_CGROUP_MARGIN, ...).\n",
            argv0, MAX_THREADS);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    /* strtoull() takes "-65536" as a value near the largest there is. */
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (errno || end == s || *end || v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "backing", required_argument, NULL, 'b' },
        { "size", required_argument, NULL, 's' },
        { "threads", required_argument, NULL, 't' },
        { "reserve", required_argument, NULL, 'r' },
        { "mlock", no_argument, NULL, 'm' },
        { "naive", no_argument, NULL, 'n' },
        { "log", required_argument, NULL, 'l' },
        { "foreground", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t v;
    int c;
    while ((c = getopt_long(argc, argv, "fh", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': opt.backing = optarg; break;
        case 's':
            if (parse_size(optarg, &opt.size) || !opt.size || opt.size % BLOCK)
                return fprintf(stderr, "--size: a multiple of 64K\n"), -1;
            break;
        case 't': {
            char *end;
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 10);
            if (!isdigit((unsigned char)optarg[0]) || *end || errno || n < 1 || n > MAX_THREADS)
                return fprintf(stderr, "--threads: 1 to %d\n", MAX_THREADS), -1;
            opt.threads = (unsigned)n;
            break;
        }
        case 'r':
            if (parse_size(optarg, &v))
                return fprintf(stderr, "--reserve: a size\n"), -1;
            opt.reserve = (size_t)v;
            break;
        case 'm': opt.mlock_reserve = true; break;
        case 'n': opt.naive = true; break;
        case 'l': opt.log = optarg; break;
        case 'f': opt.foreground = true; break;
        case 'h': usage(stdout, argv[0]); exit(0);
        default: return -1;
        }
    }
    if (optind != argc - 1 || !opt.backing) {
        usage(stderr, argv[0]);
        return -1;
    }
    /* Absolute: fuse_daemonize() moves to "/" before a signal's unmount
     * names the mount point. */
    static char mountpoint[PATH_MAX];
    if (!realpath(argv[optind], mountpoint))
        return fprintf(stderr, "fuse-cache: %s: %s\n", argv[optind], strerror(errno)), -1;
    opt.mountpoint = mountpoint;
    /* Mounted over, the backing file would be hidden behind the disk it
     * holds, and its mount point the wrong type for a directory root. */
    struct stat m, b;
    if (stat(mountpoint, &m) == 0 && stat(opt.backing, &b) == 0 && m.st_dev == b.st_dev &&
        m.st_ino == b.st_ino) {
        fprintf(stderr, "fuse-cache: rejected the mount point %s: it is the backing file\n",
                argv[optind]);
        usage(stderr, argv[0]);
        return -1;
    }
    return 0;
}

/* Opened now, where a relative FILE means what the user meant; made
 * standard error once the daemon is up (serve()), fuse_daemonize() having
 * pointed it at /dev/null. */
static int log_open(void)
{
    if (!opt.log)
        return 0;
    log_fd = open(opt.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        fprintf(stderr, "fuse-cache: --log=%s: %s\n", opt.log, strerror(errno));
        return -1;
    }
    return 0;
}

static int backing_open(void)
{
    backing_fd = open(opt.backing, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
    if (backing_fd < 0) {
        fprintf(stderr, "fuse-cache: %s: %s\n", opt.backing, strerror(errno));
        return -1;
    }
    struct stat s;
    if (fstat(backing_fd, &s) == 0 && (uint64_t)s.st_size < opt.size &&
        ftruncate(backing_fd, (off_t)opt.size) != 0) {
        fprintf(stderr, "fuse-cache: extending %s: %s\n", opt.backing, strerror(errno));
        return -1;
    }
    return 0;
}

/* Rule 1: called after fuse_daemonize(), in the process that serves. */
static int library_start(void)
{
    if (opt.naive)
        return 0;
    int err = rcl_init(NULL);   /* automatic budget, pressure following */
    if (err) {
        fprintf(stderr, "fuse-cache: rcl_init: %s\n", strerror(-err));
        return -1;
    }
    lru = rcl_lru_create();
    if (!lru || !rcl_lru_shrinker(lru, "fuse-cache", block_isolate, block_evict_free,
                                  NULL, NULL)) {
        fprintf(stderr, "fuse-cache: cache shrinker: %s\n", strerror(errno));
        return -1;
    }
    if (opt.reserve &&
        (err = rcl_io_flusher_reserve(opt.reserve, opt.mlock_reserve ? RCL_FLUSHER_MLOCK : 0))) {
        fprintf(stderr, "fuse-cache: reserve: %s\n", strerror(-err));
        return -1;
    }
    return 0;
}

/* The shrinker may run until rcl_lru_destroy(): map[] is read under
 * cache_lock (in cache_replace), not looked at before. */
static void cache_drop_all(void)
{
    for (uint64_t i = 0; i < nblocks; i++)
        cache_replace(i, NULL, false);
    if (lru)
        rcl_lru_destroy(lru);
}

/* The signals the main thread takes by sigtimedwait(). */
static void handled_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

/* Takes the mount point away and leaves the connection: the workers serve
 * what is still open on it (a loop device attached to the disk, a writer)
 * and end at ENODEV, once the kernel has let go of its last user. Neither
 * fuse_session_exit() nor fuse_session_unmount() while they run: after the
 * first, libfuse drops unanswered a request it reads, and the caller waits
 * for ever; the second closes the descriptor they read and reply on. */
static void detach(void)
{
    if (umount2(opt.mountpoint, MNT_DETACH) == 0 || errno != EPERM)
        return;
    /* Not root: the set-uid helper unmounts what it mounted for us. */
    char *const argv[] = { "fusermount3", "-u", "-q", "-z", "--", (char *)opt.mountpoint, NULL };
    pid_t pid;
    if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) == 0)
        waitpid(pid, NULL, 0);
}

/* mountinfo writes a space, tab, newline or backslash in a path as a
 * backslash and three octal digits. */
static void mountinfo_unescape(char *s)
{
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

/* The device of the mount on top of the mount point, or "" when nothing
 * is mounted there. Read from mountinfo: the mount itself is never looked
 * at, as one whose connection is dead or stuck would not answer. */
static void mount_top_dev(char *dev, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[PATH_MAX + 512], d[32], point[PATH_MAX];
    dev[0] = '\0';
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%*s %*s %31s %*s %4095s", d, point) != 2)
            continue;
        mountinfo_unescape(point);
        if (!strcmp(point, opt.mountpoint))
            snprintf(dev, len, "%s", d);     /* later lines are mounted on top */
    }
    if (f)
        fclose(f);
}

/* The workers have all ended, and so has the connection. Were it for an
 * unmount, the mount would be gone; still there, it was aborted (fusectl)
 * and is dead: every access there fails with ENOTCONN until it is
 * unmounted, and libfuse's fuse_session_unmount() leaves it (a device that
 * polls POLLERR is taken as unmounted already). Detached here, as at a
 * signal, unless another mount has been stacked on it. */
static void detach_if_aborted(void)
{
    char dev[32];
    mount_top_dev(dev, sizeof(dev));
    if (!mount_dev[0] || strcmp(dev, mount_dev) != 0)
        return;
    fprintf(stderr, "fuse-cache: the FUSE connection was aborted: %s unmounted\n",
            opt.mountpoint);
    detach();
}

/* With the write-back cache the kernel keeps the file's size itself, and
 * trusts it over ours: a buffered write past the end of the disk moved it
 * past the end, where neither the write-back's short answer nor the size
 * our attributes give moves it back. A loop device attached then would be
 * larger than the disk, what it wrote past the end lost. A truncate
 * through the mount moves it back: ours, from a thread of its own, which
 * no request waits for (a worker's would wait, in the kernel, for the
 * write-backs in flight, the one it answers among them) and which takes
 * no signal (the main thread's would wait there too, its signals with it,
 * for as long as a write-back stays stuck). Through our mount's root, held
 * for the moment only: held, it would make an unmount "busy". Whose the
 * root at the mount point is, its device says, read without asking its
 * daemon (AT_STATX_DONT_SYNC): once ours is detached or mounted over,
 * another's, which may be stuck. */
static void size_set_back(void)
{
    char dev[32] = "", path[64];
    struct statx sx;
    int root = open(opt.mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root >= 0 && statx(root, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, 0, &sx) == 0)
        snprintf(dev, sizeof(dev), "%u:%u", sx.stx_dev_major, sx.stx_dev_minor);
    if (dev[0] && !strcmp(dev, mount_dev)) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d/" DISK_NAME, root);
        if (truncate(path, (off_t)opt.size) == 0)
            fprintf(stderr, "fuse-cache: a write past the end of the disk: its size set "
                    "back to %" PRIu64 "\n", opt.size);
        else
            fprintf(stderr, "fuse-cache: a write past the end of the disk: setting its "
                    "size back: %s\n", strerror(errno));
    }
    if (root >= 0)
        close(root);
}

static void *set_back_main(void *arg)
{
    (void)arg;
    for (;;) {
        while (sem_wait(&set_back_wake) != 0 && errno == EINTR)
            ;
        if (atomic_load(&stopping))
            return NULL;
        if (atomic_exchange(&size_past_end, false))
            size_set_back();
    }
}

/* Started with the workers, after fuse_daemonize(); its signals are
 * blocked (inherited), the main thread's to take. */
static int set_back_start(void)
{
    if (sem_init(&set_back_wake, 0, 0) != 0 ||
        pthread_create(&set_back_thread, NULL, set_back_main, NULL) != 0) {
        fprintf(stderr, "fuse-cache: cannot start the size set-back's thread\n");
        return -1;
    }
    set_back_started = true;
    return 0;
}

/* Called once the FUSE device is closed: a truncate of ours still waiting
 * on the connection (a write-back no worker is left to answer) has ended
 * with it, and the thread ends at its next look. */
static void set_back_end(void)
{
    if (!set_back_started)
        return;
    atomic_store(&stopping, true);
    sem_post(&set_back_wake);
    pthread_join(set_back_thread, NULL);
    sem_destroy(&set_back_wake);
}

/* Main thread: signals, by sigtimedwait, until every worker has ended.
 * Nothing here waits on the mount, so that a signal is always taken. */
static void wait_loop(void)
{
    sigset_t set;
    handled_signals(&set);
    struct timespec tick = { 0, 200 * 1000 * 1000 };
    while (atomic_load(&workers_done) < (int)opt.threads) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGUSR1)
            stats_print("stats");
        else if ((sig > 0 || atomic_load(&worker_failed)) && !atomic_load(&stopping)) {
            atomic_store(&stopping, true);
            detach();
        }
    }
}

/* Everything between the mount and the unmount. A failure here returns to
 * an unmount all the same: a daemon that exits mounted leaves a dead mount
 * point ("Transport endpoint is not connected") for someone to clear. */
static int serve(void)
{
    if (fuse_daemonize(opt.foreground) != 0)
        return 1;
    if (log_fd >= 0 && dup2(log_fd, STDERR_FILENO) < 0)
        return 1;
    if (library_start() || workers_prepare() || set_back_start())
        return 1;

    /* Statistics' stdio buffer is allocated now, not under pressure. */
    stats_print("start");
    unsigned started = 0;
    while (started < opt.threads &&
           pthread_create(&workers[started].th, NULL, worker_main, &workers[started]) == 0)
        started++;
    if (started < opt.threads) {
        fprintf(stderr, "fuse-cache: cannot start worker %u of %u\n", started + 1, opt.threads);
        opt.threads = started;           /* the ones wait_loop() waits for */
        detach();
    }

    wait_loop();
    for (unsigned i = 0; i < started; i++)
        pthread_join(workers[i].th, NULL);
    detach_if_aborted();
    stats_print("exit");
    return started && !atomic_load(&worker_failed) ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) || log_open() || backing_open())
        return 2;
    nblocks = opt.size / BLOCK;
    map = calloc(nblocks, sizeof(*map));
    for (unsigned i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripe[i], NULL);

    /* The signals are the main thread's, taken in wait_loop(): blocked
     * from before the mount, in every thread (each inherits this mask),
     * so that one sent while the daemon starts waits for wait_loop() to
     * unmount rather than kill a mounted daemon, which leaves a dead mount
     * point ("Transport endpoint is not connected") behind. */
    sigset_t set;
    handled_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    char *fargv[] = { argv[0], NULL };
    struct fuse_args args = FUSE_ARGS_INIT(1, fargv);
    session = fuse_session_new(&args, &ops, sizeof(ops), NULL);
    fuse_opt_free_args(&args);
    if (!map || !session || fuse_session_mount(session, opt.mountpoint) != 0)
        return 1;
    mount_top_dev(mount_dev, sizeof(mount_dev));
    int rc = serve();
    fuse_session_unmount(session);   /* closes the FUSE device */
    set_back_end();
    fuse_session_destroy(session);
    cache_drop_all();
    if (!opt.naive) {
        rcl_io_flusher_reserve(0, 0);
        rcl_shutdown();
    }
    close(backing_fd);
    return rc;
}
