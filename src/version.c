/* SPDX-License-Identifier: MIT */
/*
 * version.c - the library's version at run time. The Makefile passes the
 * VERSION file's numbers in; a header that disagrees with them stops the
 * build here, so the two cannot drift apart.
 */
#include "internal.h"

#if defined(RCL_BUILD_MAJOR) && defined(RCL_BUILD_MINOR) && defined(RCL_BUILD_PATCH)
_Static_assert(RCL_VERSION_MAJOR == RCL_BUILD_MAJOR &&
               RCL_VERSION_MINOR == RCL_BUILD_MINOR &&
               RCL_VERSION_PATCH == RCL_BUILD_PATCH,
               "include/reclaim.h's RCL_VERSION_* differ from the VERSION file");
#endif

#define RCL__STR2(x) #x
#define RCL__STR(x) RCL__STR2(x)
_Static_assert(sizeof(RCL_VERSION_STRING) ==
               sizeof(RCL__STR(RCL_VERSION_MAJOR) "." RCL__STR(RCL_VERSION_MINOR) "."
                      RCL__STR(RCL_VERSION_PATCH)),
               "RCL_VERSION_STRING differs from RCL_VERSION_MAJOR.MINOR.PATCH");

const char *rcl_version(void)
{
    return RCL_VERSION_STRING;
}

unsigned rcl_version_number(void)
{
    return RCL_VERSION_NUMBER;
}
