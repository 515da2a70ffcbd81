/* SPDX-License-Identifier: MIT */
/*
 * malloc-arenas.c - how many glibc malloc arenas a program ended up with,
 * and how much each holds, printed to stderr when the program exits.
 * mallinfo2() sums over the arenas and never says how many there are;
 * malloc_info() writes one <heap nr="N"> element per arena.
 *
 *   cc -shared -fPIC -O2 -o /tmp/malloc-arenas.so tools/malloc-arenas.c
 *   LD_PRELOAD=/tmp/malloc-arenas.so RECLAIM_LIMIT=64M build/tests/progs/kv_cache
 *
 * Used for the arena figures in docs/bench/footprint.md; not part of the
 * build.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((destructor)) static void report_arenas(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    malloc_info(0, f);
    fclose(f);
    int heaps = 0;
    for (char *s = buf; (s = strstr(s, "<heap nr=")); s++)
        heaps++;
    /* The last "current" system figure is the total over every arena. */
    const char *tag = "<system type=\"current\" size=\"";
    char *last = NULL;
    for (char *s = buf; (s = strstr(s, tag)); s++)
        last = s;
    fprintf(stderr, "malloc-arenas: arenas=%d system_current_kib=%llu\n", heaps,
            last ? strtoull(last + strlen(tag), NULL, 10) / 1024 : 0ull);
    free(buf);
}
