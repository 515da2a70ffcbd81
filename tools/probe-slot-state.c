/* SPDX-License-Identifier: MIT */
/*
 * probe-slot-state.c - what it costs to know, without a block header,
 * whether a 16-byte slot is out with the program: the question a free
 * must answer before it takes a block back, so that a second free, or a
 * pointer the allocator never handed out, is refused rather than listed
 * twice. Four ways, each as a thread's cache-hit pair (pop a slot from
 * the thread's list, hand it out; take it back, push it):
 *
 *   header  16 bytes in front of the slot, as the library does: a check
 *           word the free compares, the link in the header's first word,
 *           the size asked there while the block is out;
 *   mark    no header: the link and a second word derived from it and a
 *           secret written into the free slot, which a free compares;
 *   bytes   no header: a byte a slot in the span's head, 1 while out;
 *   bits    no header: a bit a slot in the span's head, set and cleared
 *           with atomic instructions, as slots of one span lie in many
 *           threads' lists and any thread may free any of them.
 *
 * Part one runs one thread: a live set of K slots allocated, written,
 * read and freed LIFO, round after round. Part two runs two threads on
 * two CPUs that allocate from their own lists and hand every block to
 * the other, which frees it into its own list (larson's pattern, the
 * blocks moving between the threads' lists as they do in the library).
 * Part three is a producer and a consumer, as the library's lists pass
 * blocks between them: the producer allocates from its list and sends
 * each block through a ring; the consumer frees into its own list and
 * hands each list of BATCH blocks back whole, as a list that only frees
 * goes to the depot, where the producer takes it when its list is empty.
 * Every figure is the median of interleaved rounds with [min..max], and
 * the ratio to the header's pair from the same run.
 *
 *   cc -O2 -pthread -o /tmp/probe-slot-state tools/probe-slot-state.c
 *   /tmp/probe-slot-state        (all three parts; "pc": the third alone)
 *
 * Used for the figures in docs/bench/patterns.md ("Probes, 2026-12-06:
 * a slot's state without a header", and for part three "Probe,
 * 2026-12-06, 10:45") and the decision in docs/design.md ("What the
 * header still costs, and why it stays"); not part of the
 * build. A model, not the library: its pairs leave out the busy mark,
 * the counters and the budget, which every variant would pay alike.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPAN     (64u << 10)       /* a slab's span, aligned to its size */
#define HEAD     4096u             /* its head: room for a byte a slot */
#define MAP      64u               /* where the bytes or bits start in the head */
#define SLOT     16u
#define ROUNDS   9
#define PAIRS    20000000ul
#define RING     256u
#define BATCH    64u                /* a consumer's list handed back */

enum way { HEADER, MARK, BYTES, BITS, NR_WAYS };
static const char *const way_name[NR_WAYS] = { "header", "mark", "bytes", "bits" };

static const uint64_t secret = 0x9e3779b97f4a7c15ull;
static _Atomic unsigned long refused;      /* must stay 0: no pair is a misuse */

struct list {
    uint64_t *top;
} __attribute__((aligned(64)));

static inline char *span_of(const void *p)
{
    return (char *)((uintptr_t)p & ~(uintptr_t)(SPAN - 1));
}

/* The slot's index, or -1 for an address at no slot's start. */
static inline long slot_index(const void *p)
{
    unsigned off = (unsigned)((uintptr_t)p & (SPAN - 1)) - HEAD;
    return off % SLOT ? -1 : (long)(off / SLOT);
}

static __attribute__((noinline)) uint64_t *take(struct list *l, enum way w)
{
    uint64_t *p = l->top;
    long i;

    switch (w) {
    case HEADER:
        l->top = (uint64_t *)p[-2];
        p[-2] = SLOT;
        break;
    case MARK:
        l->top = (uint64_t *)p[0];
        p[1] = 0;
        break;
    case BYTES:
        l->top = (uint64_t *)p[0];
        span_of(p)[MAP + slot_index(p)] = 1;
        break;
    default:
        l->top = (uint64_t *)p[0];
        i = slot_index(p);
        atomic_fetch_or_explicit((_Atomic uint64_t *)(span_of(p) + MAP) + i / 64,
                                 1ull << (i % 64), memory_order_relaxed);
    }
    return p;
}

/* A free: refused where the slot is not out, else pushed. */
static __attribute__((noinline)) void give(struct list *l, uint64_t *p, enum way w)
{
    long i = w == HEADER ? 0 : slot_index(p);
    char *s = span_of(p);
    uint64_t bit, old;

    if (i < 0)
        goto refuse;
    switch (w) {
    case HEADER:
        if (p[-1] != (secret ^ (uintptr_t)p) || p[-2] - 1 >= 4096)
            goto refuse;
        p[-2] = (uintptr_t)l->top;
        break;
    case MARK:
        if (p[1] == (p[0] ^ (uintptr_t)p ^ secret))
            goto refuse;
        p[0] = (uintptr_t)l->top;
        p[1] = p[0] ^ (uintptr_t)p ^ secret;
        break;
    case BYTES:
        if (s[MAP + i] != 1)
            goto refuse;
        s[MAP + i] = 0;
        p[0] = (uintptr_t)l->top;
        break;
    default:
        bit = 1ull << (i % 64);
        old = atomic_fetch_and_explicit((_Atomic uint64_t *)(s + MAP) + i / 64, ~bit,
                                        memory_order_relaxed);
        if (!(old & bit))
            goto refuse;
        p[0] = (uintptr_t)l->top;
    }
    l->top = p;
    return;
refuse:
    refused++;
}

/* Every slot of the span free, dealt to the lists in runs of 8. */
static void fill(char *span, enum way w, struct list *lists, unsigned nr)
{
    unsigned stride = w == HEADER ? SLOT + 16 : SLOT;
    unsigned n = 0;

    memset(span, 0, SPAN);
    for (unsigned i = 0; i < nr; i++)
        lists[i].top = NULL;
    for (unsigned off = HEAD; off + stride <= SPAN; off += stride, n++) {
        uint64_t *p = (uint64_t *)(span + off + (w == HEADER ? 16 : 0));
        struct list *l = &lists[n / 8 % nr];

        if (w == HEADER) {
            p[-1] = secret ^ (uintptr_t)p;
            p[-2] = (uintptr_t)l->top;
        } else {
            p[0] = (uintptr_t)l->top;
            if (w == MARK)
                p[1] = p[0] ^ (uintptr_t)p ^ secret;
        }
        l->top = p;
    }
}

static double now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Medians, min and max, and each way's median over the header's. */
static void print_row(const char *label, double ns[][ROUNDS], unsigned nr_ways)
{
    printf("%-8s", label);
    for (unsigned w = 0; w < nr_ways; w++) {
        qsort(ns[w], ROUNDS, sizeof(double), cmp_double);
        printf("  %6.2f [%.2f..%.2f] %.2fx", ns[w][ROUNDS / 2], ns[w][0], ns[w][ROUNDS - 1],
               ns[w][ROUNDS / 2] / ns[HEADER][ROUNDS / 2]);
    }
    printf("\n");
}

/* Part one: one thread, a live set of k slots. */
static uint64_t *live[1024];

static __attribute__((noinline)) double one_thread(char *span, enum way w, unsigned k)
{
    struct list l;
    unsigned long rounds = PAIRS / k;

    fill(span, w, &l, 1);
    double t0 = now_ns();
    for (unsigned long r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < k; i++) {
            uint64_t *p = take(&l, w);
            p[0] = i;                   /* the program's data */
            p[1] = r;
            live[i] = p;
        }
        for (unsigned i = k; i-- > 0;) {
            if (live[i][0] != i)
                abort();
            give(&l, live[i], w);
        }
    }
    return (now_ns() - t0) / (double)(rounds * k);
}

/* Part two: two threads, each block freed by the thread that did not
 * allocate it. */
struct side {
    struct list        list;
    _Atomic(uint64_t *) ring[RING];     /* blocks the other side sent */
    _Atomic unsigned   head, tail;
} __attribute__((aligned(64)));

static struct side sides[2];
static enum way exchange_way;

/* A spin's pause, as the bench's ring waits (bench/bench_patterns.c). */
static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void pin(unsigned cpu_nr)
{
    cpu_set_t cpu;

    CPU_ZERO(&cpu);
    CPU_SET(cpu_nr, &cpu);
    pthread_setaffinity_np(pthread_self(), sizeof cpu, &cpu);
}

static void *exchange(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    struct side *s = &sides[me], *o = &sides[!me];
    unsigned long sent = 0, got = 0;

    pin(me);
    while (sent < PAIRS || got < PAIRS) {
        unsigned t = atomic_load_explicit(&o->tail, memory_order_relaxed);
        if (sent < PAIRS && s->list.top &&
            t - atomic_load_explicit(&o->head, memory_order_acquire) < RING) {
            uint64_t *p = take(&s->list, exchange_way);
            p[0] = sent;
            p[1] = me;
            atomic_store_explicit(&o->ring[t % RING], p, memory_order_relaxed);
            atomic_store_explicit(&o->tail, t + 1, memory_order_release);
            sent++;
        }
        unsigned h = atomic_load_explicit(&s->head, memory_order_relaxed);
        if (h != atomic_load_explicit(&s->tail, memory_order_acquire)) {
            uint64_t *p = atomic_load_explicit(&s->ring[h % RING], memory_order_relaxed);
            atomic_store_explicit(&s->head, h + 1, memory_order_release);
            give(&s->list, p, exchange_way);
            got++;
        }
    }
    return NULL;
}

static double two_threads(char *span, enum way w)
{
    struct list lists[2];
    pthread_t t[2];

    fill(span, w, lists, 2);
    for (unsigned i = 0; i < 2; i++) {
        sides[i].list = lists[i];
        sides[i].head = sides[i].tail = 0;
    }
    exchange_way = w;
    double t0 = now_ns();
    for (unsigned i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, exchange, (void *)(uintptr_t)i))
            abort();
    for (unsigned i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return (now_ns() - t0) / (double)PAIRS;
}

/* Part three: a producer and a consumer. The blocks go one way through
 * the sides' rings; the consumer's full lists come back through `back`. */
static struct {
    _Atomic(uint64_t *) list[RING];
    _Atomic unsigned    head, tail;
} back __attribute__((aligned(64)));

static void *produce(void *arg)
{
    struct side *o = &sides[1];
    struct list l = { .top = arg };

    pin(0);
    for (unsigned long n = 0; n < PAIRS; n++) {
        while (!l.top) {
            unsigned h = atomic_load_explicit(&back.head, memory_order_relaxed);
            if (h != atomic_load_explicit(&back.tail, memory_order_acquire)) {
                l.top = atomic_load_explicit(&back.list[h % RING], memory_order_relaxed);
                atomic_store_explicit(&back.head, h + 1, memory_order_release);
            } else {
                relax();
            }
        }
        uint64_t *p = take(&l, exchange_way);
        p[0] = n;
        p[1] = 0;
        unsigned t = atomic_load_explicit(&o->tail, memory_order_relaxed);
        while (t - atomic_load_explicit(&o->head, memory_order_acquire) >= RING)
            relax();
        atomic_store_explicit(&o->ring[t % RING], p, memory_order_relaxed);
        atomic_store_explicit(&o->tail, t + 1, memory_order_release);
    }
    return NULL;
}

static void *consume(void *arg)
{
    struct side *s = &sides[1];
    struct list l = { .top = NULL };
    unsigned listed = 0;

    (void)arg;
    pin(1);
    for (unsigned long n = 0; n < PAIRS; n++) {
        unsigned h = atomic_load_explicit(&s->head, memory_order_relaxed);
        while (h == atomic_load_explicit(&s->tail, memory_order_acquire))
            relax();
        uint64_t *p = atomic_load_explicit(&s->ring[h % RING], memory_order_relaxed);
        atomic_store_explicit(&s->head, h + 1, memory_order_release);
        if (p[0] != n)
            abort();
        give(&l, p, exchange_way);
        if (++listed == BATCH) {
            unsigned t = atomic_load_explicit(&back.tail, memory_order_relaxed);
            atomic_store_explicit(&back.list[t % RING], l.top, memory_order_relaxed);
            atomic_store_explicit(&back.tail, t + 1, memory_order_release);
            l.top = NULL;
            listed = 0;
        }
    }
    return NULL;
}

static double producer_consumer(char *span, enum way w)
{
    struct list l;
    pthread_t t[2];

    fill(span, w, &l, 1);
    sides[1].head = sides[1].tail = 0;
    back.head = back.tail = 0;
    exchange_way = w;
    double t0 = now_ns();
    if (pthread_create(&t[0], NULL, produce, l.top) || pthread_create(&t[1], NULL, consume, NULL))
        abort();
    for (unsigned i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return (now_ns() - t0) / (double)PAIRS;
}

int main(int argc, char **argv)
{
    /* "pc": part three alone. */
    bool pc_only = argc > 1 && !strcmp(argv[1], "pc");
    static const unsigned depths[] = { 1, 8, 64, 512, 1024 };
    char *span = aligned_alloc(SPAN, SPAN);
    double ns[NR_WAYS][ROUNDS];

    if (!span)
        return 1;
    printf("ns a pair, median [min..max] and its ratio to the header's\n");
    printf("%-8s", "K");
    for (unsigned w = 0; w < NR_WAYS; w++)
        printf("  %-26s", way_name[w]);
    printf("\n");
    for (unsigned d = 0; !pc_only && d < sizeof depths / sizeof *depths; d++) {
        char label[16];

        for (unsigned r = 0; r < ROUNDS; r++)
            for (unsigned w = 0; w < NR_WAYS; w++)
                ns[w][r] = one_thread(span, (enum way)w, depths[d]);
        snprintf(label, sizeof label, "%u", depths[d]);
        print_row(label, ns, NR_WAYS);
    }
    for (unsigned r = 0; !pc_only && r < ROUNDS; r++)
        for (unsigned w = 0; w < NR_WAYS; w++)
            ns[w][r] = two_threads(span, (enum way)w);
    if (!pc_only)
        print_row("2 CPUs", ns, NR_WAYS);
    for (unsigned r = 0; r < ROUNDS; r++)
        for (unsigned w = 0; w < NR_WAYS; w++)
            ns[w][r] = producer_consumer(span, (enum way)w);
    print_row("prod/con", ns, NR_WAYS);
    free(span);
    if (refused) {
        printf("refused %lu frees that were no misuse\n", (unsigned long)refused);
        return 1;
    }
    return 0;
}
