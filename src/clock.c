/* SPDX-License-Identifier: MIT */
/*
 * clock.c - the library's one clock: monotonic nanoseconds, for deadlines,
 * rate limits and the time a stall or a reclaim took; and the page size.
 * A leaf: it calls nothing of the library, so any file (the lock checker
 * included) may use it.
 */
#include "internal.h"
#include "atomic.h"

#include <time.h>
#include <unistd.h>

unsigned long long rcl__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
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
