/* SPDX-License-Identifier: MIT */
/*
 * scripted_clock.h - clock_gettime() as a test scripts it: one clock, on
 * the thread that scripted it or on every thread, shifted from the
 * kernel's or stopped and moved on by the script alone; every other read
 * is the kernel's. The library is linked statically, so its
 * clock_gettime() is the one scripted_clock.c defines. That replaces the
 * call for the whole program: the Makefile links it only into the
 * programs that name it (SCRIPTED_CLOCK_TESTS), not with the other
 * helpers.
 */
#ifndef RCL_TEST_SCRIPTED_CLOCK_H
#define RCL_TEST_SCRIPTED_CLOCK_H

#include <stdbool.h>
#include <time.h>

/* Clock `id` reads the kernel's time plus offset_ns, on every thread or
 * on the calling one only, until scripted_clock_stop(). */
void scripted_clock_shift(clockid_t id, bool every_thread, long long offset_ns);

/* The calling thread's clock `id` stopped at the kernel's time now; each
 * read moves it on by step_ns first, and scripted_clock_advance() by
 * whatever the test says, so that a count of reads or a sum of told
 * durations is all the time that passes on it. */
void scripted_clock_stop_here(clockid_t id, unsigned long long step_ns);
void scripted_clock_advance(unsigned long long ns);
/* The stopped clock's time: what its last read gave. */
unsigned long long scripted_clock_now_ns(void);

/* Whether the calling thread reads the scripted clock. */
bool scripted_clock_on_this_thread(void);

/* The kernel's clock again. A stopped clock first waits for the kernel's
 * to catch up with it, so that it never goes back: a wait of the
 * script's length at most, which a slow machine can only shorten. A
 * shifted one jumps back at once, as a clock set back does. */
void scripted_clock_stop(void);

#endif
