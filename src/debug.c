/* SPDX-License-Identifier: MIT */
/*
 * debug.c - what a broken invariant does (debug.h): say which, where, and
 * stop. The message goes straight to standard error with write(2), not
 * through the report channel: the state the channel needs may be the
 * state that is broken, and the program's report function may allocate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void rcl__assert_fail(const char *what, const char *file, int line, const char *func)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "libreclaim: %s:%d: %s: invariant `%s' broken\n",
                     file, line, func, what);
    if (n > 0) {
        ssize_t ignored = write(STDERR_FILENO, buf, (size_t)n < sizeof(buf) ? (size_t)n
                                                                         : sizeof(buf) - 1);
        (void)ignored;
    }
    abort();
}

#ifdef __GLIBC__
/* The thread that forks holds, in the child, the locks the fork handlers
 * took (fork.c) under its id in the parent; the child's handlers run
 * _locked functions under them. */
static __thread pid_t forked_from;

#ifdef RCL_DEBUG
static void note_forking_thread(void) { forked_from = gettid(); }

__attribute__((constructor)) static void debug_atfork(void)
{
    pthread_atfork(note_forking_thread, NULL, NULL);
}
#endif
#endif

bool rcl__mutex_held(pthread_mutex_t *m)
{
#ifdef __GLIBC__
    pid_t owner = m->__data.__owner;
    return owner == gettid() || (owner && owner == forked_from);
#else
    /* Without the owner, a lock nobody holds is the one thing to catch. */
    if (pthread_mutex_trylock(m) == 0) {
        pthread_mutex_unlock(m);
        return false;
    }
    return true;
#endif
}
