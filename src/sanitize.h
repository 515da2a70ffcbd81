/* SPDX-License-Identifier: MIT */
/*
 * sanitize.h - what the library does differently under a sanitizer, said
 * once: which sanitizer the build has (gcc says it with __SANITIZE_*__,
 * clang with __has_feature), AddressSanitizer's poisoning, which lets it
 * see uses of a block the library keeps but the program gave back, and
 * the roots LeakSanitizer must scan.
 */
#ifndef RCL_SANITIZE_H
#define RCL_SANITIZE_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define RCL_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define RCL_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(RCL_ASAN)
#define RCL_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(RCL_TSAN)
#define RCL_TSAN 1
#endif
#endif
#if defined(RCL_ASAN) || defined(RCL_TSAN)
#define RCL_SANITIZED 1
#endif

#ifdef RCL_ASAN
#include <sanitizer/asan_interface.h>
#define rcl__poison(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define rcl__unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define rcl__poison(p, n)   ((void)(p), (void)(n))
#define rcl__unpoison(p, n) ((void)(p), (void)(n))
#endif

/* LeakSanitizer scans the heap, stacks, TLS and globals for pointers, not
 * memory the library maps itself: a mapping that holds pointers to heap
 * blocks (a thread's block-cache lists) is registered as a root, or the
 * blocks it keeps would be reported leaked. */
#ifdef RCL_ASAN
#include <sanitizer/lsan_interface.h>
#define rcl__lsan_root(p, n)   __lsan_register_root_region((p), (n))
#define rcl__lsan_unroot(p, n) __lsan_unregister_root_region((p), (n))
#else
#define rcl__lsan_root(p, n)   ((void)(p), (void)(n))
#define rcl__lsan_unroot(p, n) ((void)(p), (void)(n))
#endif

/* A thread cancelled inside a library call is unwound without its frames'
 * epilogues, which would have unpoisoned their locals' redzones: the
 * poison left behind is then found by whatever runs on that stack next
 * (the thread's own exit). A cleanup handler that runs only on
 * cancellation tells AddressSanitizer, as a longjmp() does. */
#ifdef RCL_ASAN
#define rcl__asan_unwinding() __asan_handle_no_return()
#else
#define rcl__asan_unwinding() ((void)0)
#endif

#endif /* RCL_SANITIZE_H */
