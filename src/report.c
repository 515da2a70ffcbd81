/* SPDX-License-Identifier: MIT */
/*
 * report.c - the library's one report channel. Everything the library has
 * to tell a person (lock-order cycles, bad frees, stalls, misuse) is a
 * formatted message handed to one function: stderr by default, or what the
 * program installed with rcl_set_report_fn().
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct report_sink {
    rcl_report_fn fn;
    void *arg;
};

/* Swapped whole under a lock so a report never sees fn of one sink with
 * arg of another. Reports are rare: a mutex costs nothing that matters. */
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static struct report_sink sink;

static void report_stderr(const char *report, void *arg)
{
    (void)arg;
    fprintf(stderr, "libreclaim: %s\n", report);
}

void rcl_set_report_fn(rcl_report_fn fn, void *arg)
{
    pthread_mutex_lock(&sink_lock);
    sink.fn = fn;
    sink.arg = arg;
    pthread_mutex_unlock(&sink_lock);
}

static void report_va(const char *fmt, va_list ap)
{
    /* Formatted on the stack: a report must not need the allocator that
     * may be what is failing. */
    char buf[4096];
    vsnprintf(buf, sizeof(buf), fmt, ap);

    /* Busy while the lock is held: a signal handler's allocation that
     * fails then cannot come here for it. */
    unsigned busy = rcl__busy_hold(&rcl__self);
    pthread_mutex_lock(&sink_lock);
    struct report_sink s = sink;
    pthread_mutex_unlock(&sink_lock);
    rcl__busy_drop(&rcl__self, busy);

    /* A report runs the user's code: keep it out of reclaim. Reports are
     * made with library locks held, and stdio may be a cancellation point:
     * a cancel waits until the report is out. */
    unsigned saved = rcl_scope_save(RCL_SCOPE_NORECLAIM);
    int cancel = rcl__nocancel_begin();
    busy = rcl__busy_out();
    (s.fn ? s.fn : report_stderr)(buf, s.arg);
    rcl__busy_back(busy);
    rcl__nocancel_end(cancel);
    rcl_scope_restore(saved);
}

void rcl__report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_va(fmt, ap);
    va_end(ap);
}

void rcl__report_limited(_Atomic long long *last, const char *fmt, ...)
{
    long long now = (long long)(rcl__now_ns() / 1000000000ull);
    long long prev = atomic_load_explicit(last, memory_order_relaxed);
    if (prev == now || !atomic_compare_exchange_strong(last, &prev, now))
        return;
    va_list ap;
    va_start(ap, fmt);
    report_va(fmt, ap);
    va_end(ap);
}

unsigned long long rcl__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

const char *rcl__gfp_str(rcl_gfp_t gfp, char *buf, size_t len)
{
    static const struct { rcl_gfp_t mask; const char *name; } composite[] = {
        { RCL_DEFAULT, "DEFAULT" }, { RCL_NOFS, "NOFS" }, { RCL_NOIO, "NOIO" },
        { RCL_ATOMIC, "ATOMIC" },
    };
    static const char *const bit[] = {
        "IO", "FS", "DIRECT_RECLAIM", "KSWAPD_RECLAIM", "HIGH", "MEMALLOC",
        "NOMEMALLOC", "NOFAIL", "NORETRY", "NOWARN", "ZERO",
    };
    size_t off = 0;
    buf[0] = '\0';
    rcl_gfp_t rest = gfp;
    /* The widest composite the flags contain names them best. */
    for (size_t i = 0; i < sizeof(composite) / sizeof(composite[0]); i++) {
        if ((rest & composite[i].mask) == composite[i].mask) {
            off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s", composite[i].name);
            rest &= ~composite[i].mask;
            break;
        }
    }
    for (unsigned i = 0; i < sizeof(bit) / sizeof(bit[0]); i++) {
        if (rest & (1u << i))
            off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s",
                                    off ? "|" : "", bit[i]);
    }
    if (!off)
        snprintf(buf, len, "0");
    return buf;
}

/* fork() (fork.c): the last lock of the order. */
void rcl__report_atfork_prepare(void) { pthread_mutex_lock(&sink_lock); }
void rcl__report_atfork_parent(void) { pthread_mutex_unlock(&sink_lock); }
void rcl__report_atfork_child(void) { pthread_mutex_unlock(&sink_lock); }

void rcl__unlock_cleanup(void *mutex)
{
    pthread_mutex_unlock(mutex);
}
