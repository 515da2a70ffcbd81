/* SPDX-License-Identifier: MIT */
/*
 * scripted_clock.c - the scripted clock_gettime() (scripted_clock.h).
 */
#include "scripted_clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"

/* The script is set while it is off and read once it is on: `on` orders
 * the plain fields for the threads that read the clock. */
static struct {
    atomic_bool        on;
    clockid_t          id;
    bool               every_thread, stopped;
    pthread_t          thread;
    long long          offset_ns;        /* shifted: added to the kernel's */
    unsigned long long began_ns;         /* stopped: the kernel's time then, */
    unsigned long long step_ns;          /* what each read adds */
    _Atomic unsigned long long moved_ns; /* and what reads and the test added */
} script;

static int kernel_clock(clockid_t id, struct timespec *ts)
{
    return (int)syscall(SYS_clock_gettime, id, ts);
}

static unsigned long long kernel_ns(clockid_t id)
{
    struct timespec ts;
    kernel_clock(id, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* A misused script ends the program, naming the misuse: it may be met on
 * a thread of the test's own, where cmocka's failure cannot be raised. */
static void misused(const char *what)
{
    fprintf(stderr, "scripted clock: %s\n", what);
    abort();
}

/* The plain fields are set while the script is off (see above): a second
 * script over a running one would change them under its readers. */
static void script_is_off(void)
{
    if (atomic_load(&script.on))
        misused("a clock is scripted already: scripted_clock_stop() first");
}

static void script_starts(clockid_t id, bool every_thread)
{
    script.id = id;
    script.every_thread = every_thread;
    script.thread = pthread_self();
    atomic_store(&script.moved_ns, 0);
    atomic_store(&script.on, true);
}

void scripted_clock_shift(clockid_t id, bool every_thread, long long offset_ns)
{
    script_is_off();
    script.stopped = false;
    script.offset_ns = offset_ns;
    script_starts(id, every_thread);
}

void scripted_clock_stop_here(clockid_t id, unsigned long long step_ns)
{
    script_is_off();
    script.stopped = true;
    script.began_ns = kernel_ns(id);
    script.step_ns = step_ns;
    script_starts(id, false);
}

void scripted_clock_advance(unsigned long long ns)
{
    if (!atomic_load(&script.on) || !script.stopped)
        misused("scripted_clock_advance(): no stopped clock to move on");
    atomic_fetch_add(&script.moved_ns, ns);
}

unsigned long long scripted_clock_now_ns(void)
{
    return script.began_ns + atomic_load(&script.moved_ns);
}

bool scripted_clock_on_this_thread(void)
{
    return atomic_load(&script.on) &&
           (script.every_thread || pthread_equal(pthread_self(), script.thread));
}

void scripted_clock_stop(void)
{
    if (atomic_load(&script.on) && script.stopped) {
        unsigned long long until = scripted_clock_now_ns();
        while (kernel_ns(script.id) < until)
            test_sleep_ms(1);
    }
    atomic_store(&script.on, false);
}

static void set_ns(struct timespec *ts, unsigned long long ns)
{
    ts->tv_sec = (time_t)(ns / 1000000000ull);
    ts->tv_nsec = (long)(ns % 1000000000ull);
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (!scripted_clock_on_this_thread() || id != script.id)
        return kernel_clock(id, ts);
    if (script.stopped) {
        unsigned long long moved = atomic_fetch_add(&script.moved_ns, script.step_ns);
        set_ns(ts, script.began_ns + moved + script.step_ns);
        return 0;
    }
    int r = kernel_clock(id, ts);
    if (!r) {
        long long ns = (long long)ts->tv_sec * 1000000000ll + ts->tv_nsec + script.offset_ns;
        set_ns(ts, (unsigned long long)ns);
    }
    return r;
}
