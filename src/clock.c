/* SPDX-License-Identifier: MIT */
/*
 * clock.c - the library's one clock: monotonic nanoseconds, for deadlines,
 * rate limits and the time a stall or a reclaim took. A leaf: it calls
 * nothing of the library, so any file (the lock checker included) may use
 * it.
 */
#include "internal.h"

#include <time.h>

unsigned long long rcl__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}
