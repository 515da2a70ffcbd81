/* SPDX-License-Identifier: MIT */
/*
 * flusher_reserve.c - the unprivileged I/O-flusher mode: memory pre-faulted
 * for the threads the kernel may be waiting on.
 *
 * PR_SET_IO_FLUSHER makes the kernel treat a thread's own allocations as
 * NOIO, so that its page faults and page-cache charges cannot wait on the
 * write-back it is itself supposed to complete. Without CAP_SYS_RESOURCE the
 * kernel refuses it. What a library can still do is see to it that the
 * thread takes no new page at all while it serves: its allocations come
 * from a region faulted in before serving started, kept resident (never
 * trimmed, never unmapped while any block is out), and an allocation that
 * does not fit fails at once, like NOWAIT, instead of faulting; its stack
 * is touched in advance.
 *
 * The allocator is deliberately small: first fit over an address-ordered
 * free list in 64-byte units, neighbours merged on free, one mutex. The
 * blocks a daemon's flushers allocate are few and large (cache blocks,
 * request state), so a list walk is cheap next to the I/O they serve.
 *
 * alloc.c knows only three things: a thread whose watch has its `reserve`
 * byte set takes its rcl_alloc family calls here (the byte already sends
 * it off the fast path), a block from here carries RESERVE_TAG in its
 * check word, and such a block comes back through rcl__resv_free().
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define UNIT   64u
/* Chunk prefix: the chunk's size in units, then padding that keeps the
 * library's 16-byte block header (and so the user's pointer) 16-aligned. */
struct chunk {
    size_t units;
    size_t magic;
};
#define CHUNK_MAGIC 0x7265737276636b21ull   /* tells a live chunk from junk */

struct free_run {
    size_t           units;
    struct free_run *next;
};

/* Default stack a flusher thread has touched before it serves: deep
 * enough for a file system's request handler and the library's reclaim
 * path under it. */
#define STACK_TOUCH (256u * 1024u)

static struct {
    pthread_mutex_t  lock;
    char            *base;
    size_t           size;         /* bytes mapped */
    size_t           charged;      /* bytes charged to the budget */
    unsigned         epoch;        /* rcl__epoch of that charge */
    struct free_run *free;         /* address order */
    size_t           used, peak;   /* bytes in live chunks */
    unsigned long    allocs, failures, live;
    _Atomic unsigned threads;
    int              locked;
} resv = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Writes every page, so that each is resident now and not at first use:
 * MAP_POPULATE alone may leave the zero page mapped read-only. */
static void prefault(char *p, size_t len)
{
    size_t page = rcl__page_size();
    for (size_t off = 0; off < len; off += page)
        ((volatile char *)p)[off] = 0;
}

/* A reserve being made: mapped, faulted in and charged before it is
 * installed, with no lock held, so that resv.lock stays a leaf that only
 * the reserve's own allocations and frees take. */
struct region {
    char  *base;
    size_t size;
    int    locked, lock_err;
};

static int region_map(size_t bytes, unsigned flags, struct region *r)
{
    size_t page = rcl__page_size();
    size_t len = (bytes + page - 1) & ~(page - 1);
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    /* Neither khugepaged nor a merge may move these pages later. */
    (void)madvise(p, len, MADV_NOHUGEPAGE);
    prefault(p, len);
    *r = (struct region){ .base = p, .size = len };
    if (flags & RCL_FLUSHER_MLOCK) {
        r->locked = mlock(p, len) == 0;
        r->lock_err = r->locked ? 0 : errno;
    }
    return 0;
}

static void region_install(const struct region *r, size_t charged)
{
    rcl__assert_held(&resv.lock);
    resv.base = r->base;
    resv.size = r->size;
    resv.locked = r->locked;
    resv.free = (struct free_run *)(void *)r->base;
    resv.free->units = r->size / UNIT;
    resv.free->next = NULL;
    resv.used = resv.peak = 0;
    resv.allocs = resv.failures = resv.live = 0;
    resv.charged = charged;
    resv.epoch = atomic_load(&rcl__epoch);
}

static int exists(size_t bytes, size_t size)
{
    rcl__report("rcl_io_flusher_reserve(%zu): a reserve of %zu bytes exists; release "
                "it with rcl_io_flusher_reserve(0, 0) first", bytes, size);
    return -EBUSY;
}

/* The reserve is real memory in the cgroup from now on: the budget counts
 * all of it, used or not - its pages, not only the bytes asked. Of two
 * threads making one at once, the second to install undoes its own. */
static int reserve_create(size_t bytes, unsigned flags)
{
    struct region r;
    size_t page = rcl__page_size();
    size_t len = (bytes + page - 1) & ~(page - 1);
    int err = rcl__charge_own(len, RCL_DEFAULT);

    if (err)
        return err;
    if ((err = region_map(bytes, flags, &r)) != 0) {
        rcl__uncharge_own(len);
        return err;
    }
    pthread_mutex_lock(&resv.lock);
    size_t other = resv.base ? resv.size : 0;
    if (!other)
        region_install(&r, len);
    pthread_mutex_unlock(&resv.lock);
    if (other) {
        munmap(r.base, r.size);
        rcl__uncharge_own(len);
        return exists(bytes, other);
    }
    if (r.lock_err)
        rcl__report("rcl_io_flusher_reserve: mlock of %zu bytes refused (%s); the "
                    "reserve stays resident only as long as nothing swaps it out",
                    r.size, strerror(r.lock_err));
    return 0;
}

static int reserve_release(void)
{
    pthread_mutex_lock(&resv.lock);
    unsigned long live = resv.live;
    unsigned threads = atomic_load(&resv.threads);
    struct region r = { .base = resv.base, .size = resv.size };
    size_t charged = resv.charged;
    bool same_budget = atomic_load(&rcl__epoch) == resv.epoch;
    bool busy = r.base && (live || threads);

    if (r.base && !busy) {
        resv.base = NULL;
        resv.size = resv.charged = 0;
        resv.free = NULL;
    }
    pthread_mutex_unlock(&resv.lock);
    if (busy) {
        rcl__report("rcl_io_flusher_reserve(0): %lu blocks still allocated from the "
                    "reserve, %u threads using it; the reserve stays", live, threads);
        return -EBUSY;
    }
    if (!r.base)
        return 0;
    munmap(r.base, r.size);
    /* After an rcl_shutdown() the charge went with the old budget. */
    if (same_budget)
        rcl__uncharge_own(charged);
    return 0;
}

static int refused(size_t bytes, unsigned flags, const char *why)
{
    rcl__report("rcl_io_flusher_reserve(%zu, %#x): %s; refused, the reserve left as it "
                "was", bytes, flags, why);
    return -EINVAL;
}

/* Reports go out with no lock held: the report function may allocate,
 * and a flusher thread's allocation takes the reserve's lock. */
int rcl_io_flusher_reserve(size_t bytes, unsigned flags)
{
    if (flags & ~(unsigned)RCL_FLUSHER_MLOCK)
        return refused(bytes, flags, "unknown flags");
    if (bytes && bytes < 4 * UNIT)
        return refused(bytes, flags, "fewer than 256 bytes");
    /* Rounded up to whole pages, more would wrap to a reserve of nothing;
     * no mapping can be this large anyway. */
    if (bytes > PTRDIFF_MAX)
        return refused(bytes, flags, "larger than any mapping can be");
    rcl__ensure_init();
    if (!bytes)
        return reserve_release();
    pthread_mutex_lock(&resv.lock);
    size_t size = resv.base ? resv.size : 0;
    pthread_mutex_unlock(&resv.lock);
    if (size)
        return exists(bytes, size);
    return reserve_create(bytes, flags);
}

void rcl_io_flusher_reserve_stats(struct rcl_flusher_reserve_stats *out)
{
    if (!out) {
        rcl__report("rcl_io_flusher_reserve_stats(NULL): NULL structure; nothing read");
        return;
    }
    pthread_mutex_lock(&resv.lock);
    out->size = resv.size;
    out->used = resv.used;
    out->peak = resv.peak;
    out->allocs = resv.allocs;
    out->failures = resv.failures;
    out->threads = atomic_load(&resv.threads);
    out->locked = resv.locked;
    pthread_mutex_unlock(&resv.lock);
}

/* ------------------------------------------------------------------------ */
/* The allocator                                                             */
/* ------------------------------------------------------------------------ */

static struct chunk *take_run(size_t units)
{
    for (struct free_run **pp = &resv.free; *pp; pp = &(*pp)->next) {
        struct free_run *r = *pp;
        if (r->units < units)
            continue;
        if (r->units - units < 2) {      /* too small a rest to keep: give it all */
            units = r->units;
            *pp = r->next;
        } else {                         /* the front goes, the rest stays listed */
            struct free_run *rest = (struct free_run *)(void *)((char *)r + units * UNIT);
            rest->units = r->units - units;
            rest->next = r->next;
            *pp = rest;
        }
        struct chunk *c = (struct chunk *)(void *)r;
        c->units = units;
        c->magic = CHUNK_MAGIC;
        return c;
    }
    return NULL;
}

/* Room for the library's header and `size` bytes; returns where the header
 * goes, or NULL when the reserve has no run that large. */
void *rcl__resv_alloc(size_t size)
{
    if (size > SIZE_MAX / 2)
        return NULL;
    size_t units = (sizeof(struct chunk) + 16 + size + UNIT - 1) / UNIT;
    pthread_mutex_lock(&resv.lock);
    struct chunk *c = resv.base ? take_run(units) : NULL;
    if (c) {
        resv.used += c->units * UNIT;
        if (resv.used > resv.peak)
            resv.peak = resv.used;
        resv.allocs++;
        resv.live++;
    } else {
        resv.failures++;
    }
    pthread_mutex_unlock(&resv.lock);
    return c ? c + 1 : NULL;
}

bool rcl__resv_owns(const void *hdr)
{
    const char *p = hdr;
    /* base and size change only while no block is out, so a block that
     * was handed out is in range without the lock. */
    return resv.base && p >= resv.base + sizeof(struct chunk) && p < resv.base + resv.size &&
           ((const struct chunk *)(const void *)p - 1)->magic == CHUNK_MAGIC;
}

/* Puts a run back in address order, merged with the runs on either side. */
static void give_run(struct free_run *r)
{
    struct free_run **pp = &resv.free, *prev = NULL;
    while (*pp && *pp < r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    r->next = *pp;
    *pp = r;
    if (r->next && (char *)r + r->units * UNIT == (char *)r->next) {
        r->units += r->next->units;
        r->next = r->next->next;
    }
    if (prev && (char *)prev + prev->units * UNIT == (char *)r) {
        prev->units += r->units;
        prev->next = r->next;
    }
}

void rcl__resv_free(void *hdr)
{
    struct chunk *c = (struct chunk *)hdr - 1;
    pthread_mutex_lock(&resv.lock);
    size_t units = c->units;
    c->magic = 0;
    resv.used -= units * UNIT;
    resv.live--;
    struct free_run *r = (struct free_run *)(void *)c;
    r->units = units;
    give_run(r);
    pthread_mutex_unlock(&resv.lock);
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/* Faults in `bytes` of the stack below the caller's frame now, so that the
 * thread's deepest calls while serving find their pages resident. */
static __attribute__((noinline)) void stack_touch(size_t bytes)
{
    char *buf = __builtin_alloca(bytes);
    size_t page = rcl__page_size();
    for (size_t off = 0; off < bytes; off += page)
        ((volatile char *)buf)[off] = 0;
    __asm__ volatile("" : : "r"(buf) : "memory");
}

static size_t stack_room(void)
{
    pthread_attr_t attr;
    size_t size = 0;
    void *addr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        (void)pthread_attr_getstack(&attr, &addr, &size);
        pthread_attr_destroy(&attr);
    }
    /* Half the stack at most: the frames above us use some already. */
    return size / 2 < STACK_TOUCH ? size / 2 : STACK_TOUCH;
}

/* rcl_io_flusher_set(1) with the kernel half refused: the thread serves
 * from the reserve, if the daemon made one. Returns whether it does. */
bool rcl__resv_enter(struct rcl_thread *t)
{
    if (rd(t->watch.reserve))
        return true;
    /* Known to the library, so that its exit leaves the reserve
     * (thread.c), if it never leaves it itself. */
    if (!rcl__thread_attach(t))
        return false;
    pthread_mutex_lock(&resv.lock);
    bool have = resv.base != NULL;
    if (have)
        atomic_fetch_add(&resv.threads, 1);
    pthread_mutex_unlock(&resv.lock);
    if (!have)
        return false;
    stack_touch(stack_room());
    wr(t->watch.reserve, 1);
    return true;
}

void rcl__resv_leave(struct rcl_thread *t)
{
    if (!rd(t->watch.reserve))
        return;
    wr(t->watch.reserve, 0);
    atomic_fetch_sub(&resv.threads, 1);
}

int rcl_io_flusher_reserved(void)
{
    return rd(rcl__self.watch.reserve) != 0;
}

/* fork() (fork.c): the last lock of the order, a leaf. The reserve and
 * its blocks are the child's copy. */
void rcl__resv_atfork_prepare(void) { pthread_mutex_lock(&resv.lock); }
void rcl__resv_atfork_parent(void) { pthread_mutex_unlock(&resv.lock); }

/* The other flushers are not in the child to leave the reserve, which
 * their count would keep there for good, its charge with it; and memory
 * locks are not inherited (mlock(2)). */
void rcl__resv_atfork_child(void)
{
    atomic_store(&resv.threads, rcl_io_flusher_reserved() ? 1u : 0u);
    resv.locked = 0;
    pthread_mutex_unlock(&resv.lock);
}
