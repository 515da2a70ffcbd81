#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages the tests and benchmarks need, when they are
# missing and we may (root). Idempotent: does nothing when all are there.
. "$(dirname "$0")/no-args.sh"
set -e
need=""
have_header() { printf '#include <%s>\n' "$1" | ${CC:-cc} -E -x c - >/dev/null 2>&1; }
have_header cmocka.h 2>/dev/null || { printf '#include <stdarg.h>\n#include <stddef.h>\n#include <setjmp.h>\n#include <stdint.h>\n#include <cmocka.h>\n' | ${CC:-cc} -E -x c - >/dev/null 2>&1 || need="$need libcmocka-dev"; }
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
command -v clang >/dev/null 2>&1 || need="$need clang"
# The public header built as C++ (tools/check-header.sh).
command -v g++ >/dev/null 2>&1 || need="$need g++"
# The man pages and the repository checks (make man, make check).
command -v scdoc >/dev/null 2>&1 || need="$need scdoc"
command -v mandoc >/dev/null 2>&1 || need="$need mandoc"
command -v abidiff >/dev/null 2>&1 || need="$need abigail-tools"
for p in $EXTRA_DEPS; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
# The FUSE end-to-end tests, which skip without them (saying why): the
# example's library, fusermount3, mkfs for the file system on the loop
# device, and strace to fail one worker's read of the device.
opt=""
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists fuse3; } || opt="$opt libfuse3-dev"
command -v fusermount3 >/dev/null 2>&1 || opt="$opt fuse3"
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /sbin/mkfs.ext4 ] || opt="$opt e2fsprogs"
command -v strace >/dev/null 2>&1 || opt="$opt strace"
[ -z "$need$opt" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    [ -z "$need" ] && exit 0
    echo "missing:$need -- install them (apt-get install$need) or run as root" >&2
    exit 1
fi
need="$need$opt"
echo "installing:$need"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q $need >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $need >/dev/null; }
