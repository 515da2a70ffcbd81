/*
 * The scope specification of test_scope.c again, through the functions the
 * library exports (what other languages, dlsym() and builds with
 * RCL_NO_INLINE_SCOPES call) instead of the header's inline versions: both
 * must keep the kernel's rules.
 */
#define RCL_NO_INLINE_SCOPES 1
#include "test_scope.c"
