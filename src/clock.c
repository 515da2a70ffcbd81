/* SPDX-License-Identifier: MIT */
/*
 * clock.c - the library's one clock: monotonic nanoseconds, for deadlines,
 * rate limits and the time a stall or a reclaim took, and the condition
 * variables that time out by it; and the page size.
 * A leaf: it calls nothing of the library, so any file (the lock checker
 * included) may use it.
 */
#include "internal.h"
#include "atomic.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

unsigned long long rcl__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* A condition variable whose timed waits end by CLOCK_MONOTONIC: one by
 * the wall clock would last as long again as the clock was set back. */
void rcl__cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* The deadline ns from now, for a wait on such a condition variable. */
struct timespec rcl__deadline_after_ns(unsigned long long ns)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    ns += (unsigned long long)t.tv_nsec;
    t.tv_sec += (time_t)(ns / 1000000000ull);
    t.tv_nsec = (long)(ns % 1000000000ull);
    return t;
}

/* Threads may ask first at once: relaxed atomics, every one of them
 * stores the same value. */
size_t rcl__page_size(void)
{
    static _Atomic size_t cached;
    size_t page = rd(cached);

    if (!page)
        wr(cached, page = (size_t)sysconf(_SC_PAGESIZE));
    return page;
}
