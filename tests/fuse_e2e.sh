#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/fuse_e2e.sh BUILD CASE - one run of the FUSE end-to-end stack, as root:
#
#   examples/fuse-cache (in a 128 MiB v1 memory cgroup, and in a cgroup v2
#   group of its own for its memory PSI) -> a 704 MiB disk file on its
#   mount -> a loop device -> ext4 -> 512 MiB written in 1 MiB calls and
#   fsynced -> unmounted, detached, re-attached, remounted -> every word
#   verified.
#
# CASE: alone          daemon alone in the cgroup, default configuration
#       together       writer in the daemon's cgroup, daemon in the
#                      unprivileged I/O-flusher mode (--reserve)
#       naive-alone, naive-together   the same with --naive (no library)
#
# Prints key=value lines, the last one "result=pass|oom|hang|error ...".
# A stuck stack is recovered by aborting the FUSE connection through
# fusectl; the mount is never stat()ed. Everything it creates (mounts, loop
# devices, cgroups, files) is removed on exit.
set -u
BUILD=$1
CASE=$2
MIB=${FUSE_E2E_MIB:-512}
STALL_S=${FUSE_E2E_STALL_S:-15}    # no progress this long: a hang
LIMIT_S=${FUSE_E2E_LIMIT_S:-100}   # the write phase's hard limit
# The verification's: its reads miss the daemon's cache and go to the
# backing file with O_DIRECT, at the speed of the disk under it, which on a
# shared machine can fall to a few MiB/s for minutes. Progress, not speed,
# tells a hang.
VERIFY_LIMIT_S=${FUSE_E2E_VERIFY_LIMIT_S:-400}

# A program missing is the build's failure, not the daemon's: the writer's
# exec failing read as a broken run, which the naive cases take for the
# naive daemon's failure they are to show.
for prog in "$BUILD/examples/fuse-cache" "$BUILD/tests/progs/fuse_writer"; do
    [ -x "$prog" ] || { echo "result=error $prog not built"; exit 1; }
done

ID=rcl-fuse-$$-$CASE
W=$(mktemp -d /tmp/$ID.XXXXXX) || exit 1
MEMCG=/sys/fs/cgroup/memory/$ID
V2=/sys/fs/cgroup/unified/$ID
DPID= WPID= VPID= LOOP= MINOR= EXT_MOUNTED=

say() { echo "$*"; }
mounted() { grep -q " $1 " /proc/self/mountinfo; }

# mount_minor DIR: the minor of the mount on DIR (the topmost), or nothing.
mount_minor() {
    awk -v m="$1" '$5 == m { split($3, a, ":"); minor = a[2] } END { print minor }' /proc/self/mountinfo
}

# Aborts this run's connection while its mount is there, and only then:
# once unmounted, its minor is free, and the next FUSE mount on the machine
# (another run's, another test's) takes it. fusectl is mounted for the
# abort on a directory of this run's: the one at /sys/fs/fuse/connections
# may be another run's, unmounted under this one when that run ends.
abort_fuse() {
    [ -n "$MINOR" ] && [ "$(mount_minor "$W/mnt")" = "$MINOR" ] || return 0
    mkdir -p "$W/fusectl" && mount -t fusectl none "$W/fusectl" || return 0
    echo 1 > "$W/fusectl/$MINOR/abort"
    umount -l "$W/fusectl"
}

cleanup() {
    # The reader of our output may be gone (the test ended, killed at its
    # time limit): what cleans up writes its complaints into the void.
    trap '' PIPE
    # A daemon still alive at this point may be stuck, and a writer or
    # verifier still alive may wait on a dead daemon's connection (the loop
    # device keeps it open): abort first, so that nothing below can block
    # on it.
    if { [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; } ||
       { [ -n "$WPID" ] && kill -0 "$WPID" 2>/dev/null; } ||
       { [ -n "$VPID" ] && kill -0 "$VPID" 2>/dev/null; }; then
        abort_fuse
    fi
    [ -n "$WPID" ] && kill -9 "$WPID" 2>/dev/null
    [ -n "$VPID" ] && kill -9 "$VPID" 2>/dev/null
    [ -n "$EXT_MOUNTED" ] && timeout 20 umount -l "$W/ext" 2>/dev/null
    [ -n "$LOOP" ] && timeout 20 losetup -d "$LOOP" 2>/dev/null
    if mounted "$W/mnt"; then
        timeout 20 umount "$W/mnt" 2>/dev/null || { abort_fuse; timeout 20 umount -l "$W/mnt"; }
    fi
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    [ -n "$DPID" ] && wait "$DPID" 2>/dev/null
    for g in "$MEMCG" "$V2"; do
        i=0
        while [ -d "$g" ] && ! rmdir "$g" 2>/dev/null && [ $i -lt 50 ]; do
            sleep 0.1; i=$((i + 1))
        done
    done
    rm -rf "$W"
}
trap cleanup EXIT
# SIGPIPE too: the next line said once the test reading them is gone
# would end the run there, everything it made left behind.
trap 'exit 1' INT TERM HUP PIPE

fail() { say "result=error $*"; exit 1; }
# wait_gone PID SECONDS: whether PID ended within SECONDS.
wait_gone() {
    i=0
    while kill -0 "$1" 2>/dev/null; do
        [ $i -ge $(($2 * 10)) ] && return 1
        sleep 0.1; i=$((i + 1))
    done
}

mkdir "$W/mnt" "$W/ext" || fail "mkdir"
mkdir "$MEMCG" && echo 128M > "$MEMCG/memory.limit_in_bytes" || fail "memory cgroup"
HAVE_V2=
mkdir "$V2" 2>/dev/null && HAVE_V2=1

# spawn_in_groups CMD... &: CMD in the test's cgroups, as the background
# job itself (exec all the way down), so that $! is CMD's pid.
spawn_in_groups() {
    exec sh -c 'echo $$ > "$0/cgroup.procs" || exit 99; [ -z "$1" ] || echo $$ > "$1/cgroup.procs"
           shift 1; exec "$@"' "$MEMCG" "${HAVE_V2:+$V2}" "$@"
}

case $CASE in
    alone) DARGS= ;;
    together) DARGS=--reserve=${FUSE_E2E_RESERVE:-16M} ;;
    naive-alone|naive-together) DARGS=--naive ;;
    *) fail "unknown case $CASE" ;;
esac
case $CASE in
    *together) WRITER_IN_GROUP=1 ;;
    *) WRITER_IN_GROUP= ;;
esac

spawn_in_groups "$BUILD/examples/fuse-cache" -f --backing="$W/disk.img" --size=704M $DARGS \
    "$W/mnt" 2> "$W/daemon.log" &
DPID=$!
i=0
until mounted "$W/mnt"; do
    i=$((i + 1))
    [ $i -gt 100 ] && fail "the daemon did not mount: $(cat "$W/daemon.log")"
    sleep 0.1
done
MINOR=$(mount_minor "$W/mnt")
DMESG0=$(dmesg 2>/dev/null | wc -l)

LOOP=$(timeout 20 losetup -f --show "$W/mnt/disk") || fail "losetup"
timeout 60 mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$LOOP" >/dev/null 2>&1 ||
    fail "mkfs.ext4"
timeout 20 mount -o noinit_itable "$LOOP" "$W/ext" || fail "mount ext4"
EXT_MOUNTED=1

psi_full() {   # microseconds of "full" memory stall of the daemon's group
    [ -n "$HAVE_V2" ] && awk '/^full/ { sub("total=", "", $5); print $5 }' "$V2/memory.pressure" ||
        echo 0
}

# watch_progress PID OUT LIMIT_S: follows a writer or verifier whose progress is a
# line per MiB in OUT; sets outcome=hang and aborts the connection when it
# makes none for STALL_S seconds or runs past LIMIT_S.
watch_progress() {
    last=0 still=0 elapsed=0
    while kill -0 "$1" 2>/dev/null; do
        sleep 1
        elapsed=$((elapsed + 1))
        n=$(wc -l < "$2")
        if [ "$n" -eq "$last" ]; then still=$((still + 1)); else still=0; last=$n; fi
        # Three seconds without progress: where everyone waits, once per run
        # (wchan and kernel stacks are safe to read; cmdline would not be).
        if [ $still -eq 3 ] && [ -z "${STALL_SEEN:-}" ]; then
            STALL_SEEN=1
            say "stall_wchan=$(basename "$2" .out):$(cat /proc/$1/wchan 2>/dev/null)$(for t in /proc/$DPID/task/*; do
                printf ' %s:%s' "$(cat $t/comm 2>/dev/null)" "$(cat $t/wchan 2>/dev/null)"; done)"
            for t in /proc/$1 /proc/$DPID/task/*; do
                echo "== $t"; cat $t/stack 2>/dev/null
            done > "${FUSE_E2E_STACKS:-/dev/null}"
        fi
        if [ $still -ge "$STALL_S" ] || [ $elapsed -ge "$3" ]; then
            outcome=hang
            say "stalled_s=$still after_lines=$n elapsed_s=$elapsed"
            abort_fuse
            return
        fi
    done
}

# The write phase, watched.
PSI0=$(psi_full)
T0=$(date +%s%N)
if [ -n "$WRITER_IN_GROUP" ]; then
    spawn_in_groups "$BUILD/tests/progs/fuse_writer" write "$W/ext/data" "$MIB" > "$W/writer.out" 2>&1 &
else
    "$BUILD/tests/progs/fuse_writer" write "$W/ext/data" "$MIB" > "$W/writer.out" 2>&1 &
fi
WPID=$!
outcome=
watch_progress "$WPID" "$W/writer.out" "$LIMIT_S"
if [ "$outcome" = hang ]; then
    # The abort fails every FUSE request, and the write-back the writer
    # waits on ends in errors. Should it still wait: SIGKILL, and the
    # stack taken apart from the top.
    wait_gone "$WPID" 5 || {
        say "writer_after_abort=$(cat /proc/$WPID/wchan 2>/dev/null)"
        kill -9 "$WPID"
        timeout 20 umount -l "$W/ext" && EXT_MOUNTED=
        timeout 20 losetup -d "$LOOP" && LOOP=
        wait_gone "$WPID" 20 || say "writer_stuck=1"
    }
fi
if kill -0 "$WPID" 2>/dev/null; then WSTATUS=stuck; else wait "$WPID"; WSTATUS=$?; WPID=; fi
T1=$(date +%s%N)
PSI1=$(psi_full)
RUN_US=$(( (T1 - T0) / 1000 ))
say "writer_status=$WSTATUS $(tail -n 1 "$W/writer.out")"
say "psi_full_pct=$(( (PSI1 - PSI0) * 100 / (RUN_US > 0 ? RUN_US : 1) )) run_ms=$((RUN_US / 1000))"
HUNG=$(dmesg 2>/dev/null | tail -n +$((DMESG0 + 1)) | grep -c -e "blocked for more than" -e "hung_task")
say "hung_task_lines=$HUNG"

oom_figures() {
    say "oom_kills=$(awk '/^oom_kill / { print $2 }' "$MEMCG/memory.oom_control") \
failcnt=$(cat "$MEMCG/memory.failcnt") max_usage=$(cat "$MEMCG/memory.max_usage_in_bytes")"
}

daemon_dead() { ! kill -0 "$DPID" 2>/dev/null; }

if [ -z "$outcome" ] && { [ "$WSTATUS" != 0 ] || daemon_dead; }; then
    outcome=broken
fi
if [ -z "$outcome" ]; then
    # Detach, re-attach, remount: what is read now comes through the daemon
    # (its open drops the kernel's pages of the disk file).
    timeout 60 umount "$W/ext" || outcome=hang
    EXT_MOUNTED=
    [ -z "$outcome" ] && { timeout 20 losetup -d "$LOOP" || outcome=hang; }
    LOOP=
    # The count before the re-attach: wait for the daemon's line rather
    # than a fixed time, which a loaded machine can outlast.
    n0=$(grep -c "^fuse-cache stats: reads" "$W/daemon.log")
    kill -USR1 "$DPID"
    i=0
    while [ "$(grep -c "^fuse-cache stats: reads" "$W/daemon.log")" -le "$n0" ] &&
          [ $i -lt 200 ] && ! daemon_dead; do
        sleep 0.05; i=$((i + 1))
    done
    [ -z "$outcome" ] && { LOOP=$(timeout 20 losetup -f --show "$W/mnt/disk") || outcome=broken; }
    [ -z "$outcome" ] && { timeout 20 mount "$LOOP" "$W/ext" || outcome=broken; }
    [ -z "$outcome" ] && EXT_MOUNTED=1
fi
if [ -z "$outcome" ]; then
    if [ -n "$WRITER_IN_GROUP" ]; then
        spawn_in_groups "$BUILD/tests/progs/fuse_writer" verify "$W/ext/data" "$MIB" > "$W/verify.out" 2>&1 &
    else
        "$BUILD/tests/progs/fuse_writer" verify "$W/ext/data" "$MIB" > "$W/verify.out" 2>&1 &
    fi
    VPID=$!
    T2=$(date +%s%N)
    watch_progress "$VPID" "$W/verify.out" "$VERIFY_LIMIT_S"
    # After an abort the verifier's reads fail; one that still waits is
    # killed (should ext4 then refuse to unmount, the cleanup's unmount is
    # lazy).
    wait_gone "$VPID" 20 || { kill -9 "$VPID"; say "verifier_stuck=1"; }
    wait "$VPID"
    VSTATUS=$?
    VPID=
    say "verify_status=$VSTATUS verify_s=$(( ($(date +%s%N) - T2) / 1000000000 )) $(tail -n 1 "$W/verify.out")"
    [ -z "$outcome" ] && [ $VSTATUS -ne 0 ] && outcome=corrupt
    timeout 60 umount "$W/ext" && EXT_MOUNTED=
    timeout 20 losetup -d "$LOOP" && LOOP=
    timeout 20 umount "$W/mnt"
fi
# The daemon ends at unmount; a dead or stuck one is ended here.
i=0
while ! daemon_dead && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if ! daemon_dead; then
    abort_fuse
    wait_gone "$DPID" 5 || { kill -9 "$DPID"; KILLED_HERE=1; }
    wait_gone "$DPID" 20 || say "daemon_stuck=1"
fi
if daemon_dead; then wait "$DPID"; DSTATUS=$?; DPID=; else DSTATUS=stuck; fi
say "daemon_status=$DSTATUS"
oom_figures
grep "^fuse-cache" "$W/daemon.log" | tail -n 4 | sed 's/^/daemon: /'
# Bytes the daemon served after the re-attach (exit minus the SIGUSR1 line).
r0=$(grep "^fuse-cache stats: reads" "$W/daemon.log" | tail -n 1 | sed 's/.*read_bytes=\([0-9]*\).*/\1/')
r1=$(grep "^fuse-cache exit: reads" "$W/daemon.log" | tail -n 1 | sed 's/.*read_bytes=\([0-9]*\).*/\1/')
[ -n "$r0" ] && [ -n "$r1" ] && say "daemon_read_after_remount=$((r1 - r0))"

OOMS=$(awk '/^oom_kill / { print $2 }' "$MEMCG/memory.oom_control")
# A daemon killed by SIGKILL was the OOM killer's victim, unless the kill
# was the one above, which ends a stuck daemon.
if [ "${OOMS:-0}" -gt 0 ] || { [ "$DSTATUS" = 137 ] && [ -z "${KILLED_HERE:-}" ]; }; then
    outcome=${outcome:+$outcome+}oom
fi
[ -z "$outcome" ] && [ "$DSTATUS" != 0 ] && outcome=daemon-exit-$DSTATUS
say "result=${outcome:-pass}"
