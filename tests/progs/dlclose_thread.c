/* SPDX-License-Identifier: MIT */
/*
 * dlclose_thread.c - loads the shared library named by its argument with
 * dlopen(), has a thread allocate through it, shuts the library down and
 * unloads it, and only then lets the thread end (test_thread_exit runs
 * it). The thread's exit calls the handler the library set in its
 * thread-specific data, which must still be there. Exits 0 once the
 * thread has ended; a crash is the failure.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "reclaim.h"

static void *(*lib_alloc)(size_t size, rcl_gfp_t gfp);
static void (*lib_free)(void *p);
static atomic_int used, unloaded;

static void *uses_the_library(void *arg)
{
    (void)arg;
    lib_free(lib_alloc(100, RCL_DEFAULT));
    atomic_store(&used, 1);
    while (!atomic_load(&unloaded))
        usleep(1000);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th;

    if (argc != 2) {
        fprintf(stderr, "usage: dlclose_thread LIBRARY\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        fprintf(stderr, "dlopen: %s\n", why);
        /* A backend whose TLS is initial-exec (Debian's jemalloc) cannot
         * be loaded after the program started: nothing to try here. */
        return why && strstr(why, "static TLS") ? 77 : 2;
    }
    *(void **)&lib_alloc = dlsym(lib, "rcl_alloc");
    *(void **)&lib_free = dlsym(lib, "rcl_free");
    void (*lib_shutdown)(void);
    *(void **)&lib_shutdown = dlsym(lib, "rcl_shutdown");
    if (!lib_alloc || !lib_free || !lib_shutdown || pthread_create(&th, NULL, uses_the_library, NULL))
        return 2;
    while (!atomic_load(&used))
        usleep(1000);
    lib_shutdown();
    if (dlclose(lib))
        return 2;
    atomic_store(&unloaded, 1);
    return pthread_join(th, NULL) ? 2 : 0;
}
