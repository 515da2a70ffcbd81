#!/bin/sh
# SPDX-License-Identifier: MIT
# make install into a staging tree, the way a Debian package builds
# (DESTDIR, PREFIX=/usr, a multiarch LIBDIR), then compile and run a program
# that sees only what was installed: the header and reclaim.pc, found
# through pkg-config, linked both shared and static, and the quickstart
# example entirely static (-static) with pkg-config --static's flags; and
# read every installed man page with mandoc.
. "$(dirname "$0")/no-args.sh"
MAKE=${MAKE:-make}
BUILD=${BUILD:-build}
command -v pkg-config >/dev/null 2>&1 || { echo "check-install: skipped: pkg-config is not installed"; exit 77; }
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
libdir=/usr/lib/x86_64-linux-gnu
$MAKE --no-print-directory -s install BUILD="$BUILD" BACKEND="${BACKEND:-libc}" DESTDIR="$stage" PREFIX=/usr LIBDIR=$libdir >"$stage/log" 2>&1 ||
    { cat "$stage/log"; echo "check-install: make install failed"; exit 1; }
rc=0
for f in /usr/include/reclaim.h $libdir/libreclaim.a $libdir/libreclaim.so $libdir/pkgconfig/reclaim.pc \
         /usr/share/man/man7/reclaim.7 /usr/share/man/man3/rcl_alloc.3 /usr/share/man/man3/rcl_free.3; do
    [ -e "$stage$f" ] || { echo "check-install: $f was not installed"; rc=1; }
done
grep -q "$stage" "$stage$libdir/pkgconfig/reclaim.pc" && { echo "check-install: reclaim.pc names the staging directory"; rc=1; }

cat > "$stage/prog.c" <<'PROG'
#include <reclaim.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    void *p = rcl_alloc(100, RCL_DEFAULT);
    unsigned s = rcl_nofs_save();
    void *q = rcl_alloc(100, RCL_DEFAULT);
    rcl_nofs_restore(s);
    rcl_free(q);
    rcl_free(p);
    if (strcmp(rcl_version(), RCL_VERSION_STRING) != 0)
        return 1;
    printf("%s\n", rcl_version());
    return p && q ? 0 : 1;
}
PROG
# pkg-config's sysroot prefixes -I and -L with the staging tree, as a
# cross or package build would.
export PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_LIBDIR="$stage$libdir/pkgconfig"
flags=$(pkg-config --cflags --libs reclaim) || { echo "check-install: pkg-config does not find reclaim"; exit 1; }
sflags=$(pkg-config --static --cflags --libs reclaim)
cc=${CC:-cc}
if $cc -std=c11 -Wall -Wextra -Werror -o "$stage/prog" "$stage/prog.c" $flags -Wl,-rpath,"$stage$libdir" &&
   "$stage/prog" >/dev/null; then :; else echo "check-install: a program built with '$flags' failed"; rc=1; fi
if $cc -std=c11 -o "$stage/prog-static" "$stage/prog.c" -I"$stage/usr/include" "$stage$libdir/libreclaim.a" \
       $(echo "$sflags" | tr ' ' '\n' | grep -v -- '-lreclaim' | grep -v -- '^-L' | grep -v -- '^-I' | tr '\n' ' ') &&
   "$stage/prog-static" >/dev/null; then :; else echo "check-install: the static build failed"; rc=1; fi
# examples/quickstart entirely static, built with what pkg-config --static
# prints and nothing else, as a program that ships one binary is: where
# the C library's and the backend's archives are not installed (Debian
# ships no libmimalloc.a), a program with Libs.private alone fails to link
# as well, and this build is left out, saying so.
private=$(sed -n 's/^Libs.private: *//p' "$stage$libdir/pkgconfig/reclaim.pc")
static=""
echo 'int main(void) { return 0; }' > "$stage/empty.c"
if ! $cc -static -o "$stage/empty" "$stage/empty.c" $private >/dev/null 2>&1; then
    echo "check-install: no entirely static build: '$cc -static' does not link with '$private' here"
elif $cc -std=c11 -Wall -Wextra -Werror -static -o "$stage/quickstart" examples/quickstart/main.c $sflags &&
     "$stage/quickstart" >"$stage/quickstart.log" 2>&1; then
    static=", and examples/quickstart entirely static"
else
    cat "$stage/quickstart.log" 2>/dev/null
    echo "check-install: examples/quickstart built with '-static $sflags' failed"; rc=1
fi
if command -v mandoc >/dev/null 2>&1; then
    (cd "$stage/usr/share/man" && for m in man*/*; do mandoc -Tlint -W warning "$m" || exit 1; done) || rc=1
fi
[ $rc -eq 0 ] && echo "check-install: staged install (PREFIX=/usr LIBDIR=$libdir) builds and runs a program, shared and static${static:-}"
exit $rc
