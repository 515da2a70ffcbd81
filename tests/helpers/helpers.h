/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - what every test program includes: cmocka, the TEST() macros
 * (test.h), the standard fixture and its clean-state check (fixture.h),
 * the report catcher (reports.h) and the shared shrinkers (cache.h).
 * The .c files beside it are linked into every test program, all but
 * scripted_clock.c (scripted_clock.h), which only the programs that
 * script the clock link.
 */
#ifndef RCL_TEST_HELPERS_H
#define RCL_TEST_HELPERS_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "reclaim.h"
#include "test.h"
#include "reports.h"
#include "fixture.h"
#include "cache.h"

#endif
