#!/bin/sh
# SPDX-License-Identifier: MIT
# The shared library loaded with dlopen(), as a plugin, a language binding
# or a database extension loads it: it must load, and serve allocations on
# the loading thread and on a thread started afterwards. Its TLS is
# initial-exec, so a library loaded late must fit what glibc keeps spare
# in the static TLS block (about 1.7 KB in a small program, and glibc
# promises only 512 bytes): the check also fails when the library's TLS
# segment grows past TLS_MAX bytes.
. "$(dirname "$0")/no-args.sh"
BUILD=${BUILD:-build}
TLS_MAX=512
lib=$(readlink -f "$BUILD/libreclaim.so") || { echo "check-dlopen: no $BUILD/libreclaim.so (make lib)"; exit 1; }
[ -f "$lib" ] || { echo "check-dlopen: no $BUILD/libreclaim.so (make lib)"; exit 1; }
command -v readelf >/dev/null 2>&1 || { echo "check-dlopen: skipped: readelf (binutils) is not installed"; exit 77; }
rc=0
tls=$(readelf -lW "$lib" | awk '$1 == "TLS" { print $6 }')
tls=$((${tls:-0}))
echo "check-dlopen: the library's TLS is $tls bytes (at most $TLS_MAX)"
[ "$tls" -le $TLS_MAX ] || { echo "check-dlopen: TLS of $tls bytes: a dlopen() may find no room for it"; rc=1; }

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/prog.c" <<'PROG'
#include <reclaim.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static __typeof__(rcl_alloc) *alloc;
static __typeof__(rcl_free) *release;

static void *use(void *arg)
{
    char *p = alloc(100, RCL_DEFAULT);
    if (!p)
        return NULL;
    memset(p, 1, 100);
    release(p);
    return arg;
}

int main(int argc, char **argv)
{
    void *h = dlopen(argv[argc - 1], RTLD_NOW | RTLD_LOCAL);
    pthread_t th;
    void *ok = NULL;

    if (!h) {
        printf("dlopen: %s\n", dlerror());
        return 1;
    }
    *(void **)&alloc = dlsym(h, "rcl_alloc");
    *(void **)&release = dlsym(h, "rcl_free");
    if (!alloc || !release || !use(h))
        return 2;
    if (pthread_create(&th, NULL, use, h) || pthread_join(th, &ok) || ok != h)
        return 3;
    return 0;
}
PROG
${CC:-cc} -O1 -Iinclude -o "$tmp/prog" "$tmp/prog.c" -ldl -lpthread || { echo "check-dlopen: the program did not compile"; exit 1; }
"$tmp/prog" "$lib" || { echo "check-dlopen: dlopen($lib) and an allocation failed (rc=$?)"; rc=1; }
[ $rc -eq 0 ] && echo "check-dlopen: loaded with dlopen(), allocated on two threads"
exit $rc
