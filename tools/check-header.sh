#!/bin/sh
# SPDX-License-Identifier: MIT
# include/reclaim.h as a program that adopts the library builds it: the
# first include of a file that expands every macro and calls every inline
# function, compiled by gcc and clang as C99, C11, C17 and gnu11 (inline
# scopes and RCL_NO_INLINE_SCOPES) under -Werror -pedantic and the strict
# warnings a project may turn on, and by g++ and clang++ as C++11, C++17
# and C++20 with -Wold-style-cast and -Wzero-as-null-pointer-constant too.
# A warning in a macro is the user's error, not ours, so each is expanded
# here. One build of each language is linked against $BUILD/libreclaim.a
# and run (C++ finds the calls only through the header's extern "C").
# A compiler that is missing is named, and the check is skipped (77) when
# nothing else failed.
. "$(dirname "$0")/no-args.sh"
BUILD=${BUILD:-build}
lib=$BUILD/libreclaim.a
[ -e "$lib" ] || { echo "check-header: $lib not built (make lib)"; exit 1; }
# The archive needs what its backend needs, as the Makefile links it.
case ${BACKEND:-libc} in
mimalloc) backend_libs=-lmimalloc ;;
jemalloc) backend_libs="-ljemalloc -lm" ;;
*) backend_libs= ;;
esac
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Valid C and C++ both, every variable static or local; its one
# conversion from void * and its one null pointer are spelt in each
# language's way, without a C-style cast or a literal 0.
cat > "$tmp/probe.c" <<'PROBE'
#include <reclaim.h>

#ifdef __cplusplus
#define PROBE_CAST(type, p) static_cast<type>(p)
#define PROBE_NULL nullptr
#else
#define PROBE_CAST(type, p) (p)
#define PROBE_NULL NULL
#endif

struct item {
    int key;
    struct rcl_lru_node lru;
};

static RCL_LOCK_CLASS(probe_class, "probe");

static unsigned use_scopes(void)
{
    unsigned t, v;
    rcl_gfp_t g;

    t = rcl_nofs_save();
    g = rcl_current_gfp(RCL_DEFAULT);
    rcl_nofs_restore(t);
    t = rcl_noio_save();
    rcl_noio_restore(t);
    t = rcl_noreclaim_save();
    rcl_noreclaim_restore(t);
    t = rcl_nowait_save();
    rcl_nowait_restore(t);
    t = rcl_scope_save(RCL_SCOPE_ALL);
    rcl_scope_restore(t);
    {
        RCL_NOFS_SCOPE();
        RCL_NOIO_SCOPE();
        RCL_NORECLAIM_SCOPE();
        RCL_NOWAIT_SCOPE();
        v = rcl_scope_current();
    }
    return g == RCL_NOFS && v == RCL_SCOPE_ALL && rcl_scope_current() == 0;
}

static int use_flags(void)
{
    rcl_gfp_t all = RCL_DEFAULT | RCL_NOFS | RCL_NOIO | RCL_NOWAIT | RCL_ATOMIC |
                    RCL__HIGH | RCL__MEMALLOC | RCL__NOMEMALLOC | RCL__NOFAIL |
                    RCL__NORETRY | RCL__NOWARN | RCL__ZERO;
    unsigned long stop = RCL_SHRINK_STOP, empty = RCL_SHRINK_EMPTY;
    unsigned sum = RCL_DEF_PRIORITY + RCL_DEFAULT_SEEKS + RCL_SHRINK_BATCH +
                   RCL_MAX_DOMAINS + RCL_WQ_MEM_RECLAIM + RCL_FLUSHER_MLOCK +
                   RCL_STATS_MAX_SHRINKERS + RCL_NAME_MAX + RCL_LOCKDEP_OFF +
                   RCL_LOCKDEP_ON + RCL_LOCKDEP_VERBOSE + RCL_FOOTPRINT_AUTO +
                   RCL_FOOTPRINT_OFF + RCL_FOOTPRINT_RSS + RCL_FOOTPRINT_CGROUP;

    return all != 0 && stop != empty && sum != 0 && RCL_DIRECT_UNBOUNDED != 0 &&
           RCL_VERSION_NUMBER >= 100 && RCL_VERSION_STRING[0] != '\0';
}

static int use_lru_entry(void)
{
    struct item it;
    struct item *back;

    it.key = 7;
    back = RCL_LRU_ENTRY(&it.lru, struct item, lru);
    return back == &it && back->key == 7;
}

int main(void)
{
    char *p;
    int ok;

    rcl_lock_acquire(&probe_class);
    p = PROBE_CAST(char *, rcl_alloc(64, RCL_DEFAULT | RCL__ZERO));
    rcl_lock_release(&probe_class);
    ok = p != PROBE_NULL && p[63] == 0 && use_scopes() && use_flags() &&
         use_lru_entry();
    rcl_free(p);
    rcl_shutdown();
    return !ok;
}
PROBE
STRICT="-Wall -Wextra -Werror -pedantic -Wconversion -Wsign-conversion -Wshadow -Wcast-qual -Wundef"
CSTRICT="$STRICT -Wstrict-prototypes -Wmissing-prototypes"
CXXSTRICT="$STRICT -Wold-style-cast -Wzero-as-null-pointer-constant"
rc=0; missing=""; n=0
build() { # compiler, language, std, extra flags, output ("" to compile only)
    cc=$1 lang=$2 std=$3 extra=$4 out=$5
    case $lang in c) flags=$CSTRICT ;; *) flags=$CXXSTRICT ;; esac
    set -- -x "$lang" -std="$std" $flags $extra -Iinclude "$tmp/probe.c"
    if [ -n "$out" ]; then
        set -- "$@" -x none "$lib" -pthread $backend_libs -o "$out"
    else
        set -- -c "$@" -o "$tmp/probe.o"
    fi
    n=$((n + 1))
    "$cc" "$@" > "$tmp/log" 2>&1 && return 0
    sed 's/^/    /' "$tmp/log" | head -20
    echo "check-header: $cc -std=$std$extra: the header failed to build"
    rc=1; return 1
}
run() { # compiler, language, std
    build "$1" "$2" "$3" "" "$tmp/prog" || return
    "$tmp/prog" || { echo "check-header: the $1 -std=$3 program failed (rc=$?)"; rc=1; }
}
for cc in gcc clang; do
    command -v $cc >/dev/null 2>&1 || { missing="$missing $cc"; continue; }
    for std in c99 c11 c17 gnu11; do
        build $cc c $std "" ""
        build $cc c $std " -DRCL_NO_INLINE_SCOPES" ""
    done
    run $cc c c11
done
for cxx in g++ clang++; do
    command -v $cxx >/dev/null 2>&1 || { missing="$missing $cxx"; continue; }
    for std in c++11 c++17 c++20; do
        build $cxx c++ $std "" ""
    done
    run $cxx c++ c++11
done
[ $rc -eq 0 ] || exit 1
[ -z "$missing" ] || { echo "check-header: skipped: not installed:$missing (the other builds passed)"; exit 77; }
echo "check-header: reclaim.h built $n ways (C99-C17, C++11-20, gcc and clang, strict warnings), linked and ran"
