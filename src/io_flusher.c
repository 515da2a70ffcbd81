/* SPDX-License-Identifier: MIT */
/*
 * io_flusher.c - marking a thread as part of the I/O path.
 *
 * A user-space I/O daemon (FUSE, NBD, iSCSI, ublk) may be the thing the
 * kernel waits on to free memory. The "Add prctl support for controlling
 * PF_MEMALLOC V2" thread (linux-kernel, October 2019) is the discussion that
 * gave the
 * kernel PR_SET_IO_FLUSHER for such threads: their allocations must not
 * recurse into I/O (NOIO) and they are throttled less. libreclaim does the
 * same for the thread's own allocations: NOIO scope, and the whole reserve
 * (the accounting code grants it to any thread whose io_flusher field is
 * set), so the daemon can keep completing the I/O that frees memory.
 *
 * The kernel half needs CAP_SYS_RESOURCE, and Linux 5.6. An unprivileged
 * daemon, or one on an older kernel, still gets the library half, which is
 * what protects its in-process allocations; it is told once that the
 * kernel half is missing. If it made a reserve
 * (rcl_io_flusher_reserve, flusher_reserve.c), the thread then allocates
 * from that pre-faulted memory: no new page while it serves.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
#ifndef PR_GET_IO_FLUSHER
#define PR_GET_IO_FLUSHER 58
#endif

/* Once a process each: the words differ, and a process that meets one
 * answer meets it on every thread. */
static _Atomic int eperm_reported, missing_reported;

static int sys_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
                     unsigned long arg5)
{
    return prctl(option, arg2, arg3, arg4, arg5);
}

/* The one way this file reaches prctl: the tests put a recorder here to
 * see the exact arguments, which an unprivileged process cannot learn
 * from the kernel (it refuses both the set and the get). */
int (*rcl__prctl)(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
                  unsigned long arg5) = sys_prctl;

/* Daemons have passed 0 where they meant 1, which clears the flag: what
 * the kernel holds afterwards is read back where it lets us. */
static int kernel_confirm(int on)
{
    int now = rcl__prctl(PR_GET_IO_FLUSHER, 0UL, 0UL, 0UL, 0UL);
    if (now < 0 || now == on)
        return 0;           /* not allowed to look (EPERM, old kernel), or as asked */
    rcl__report("rcl_io_flusher_set(%d): the kernel reports PR_GET_IO_FLUSHER = %d "
                "after the set succeeded", on, now);
    return -EIO;
}

/* *refused: the kernel did not take the set, so its half is missing. */
static int kernel_io_flusher(int on, bool *refused)
{
    /* Exactly 1 or 0: the argument is the flag's new value. */
    *refused = false;
    if (rcl__prctl(PR_SET_IO_FLUSHER, on ? 1UL : 0UL, 0UL, 0UL, 0UL) == 0)
        return kernel_confirm(on);
    int err = errno;
    *refused = true;
    /* The words are for an on: an off refused leaves the kernel's flag as
     * the on left it, which the caller's error already says. */
    if (!on)
        return -err;
    if (err == EPERM && !atomic_exchange(&eperm_reported, 1))
        rcl__report("rcl_io_flusher_set: prctl(PR_SET_IO_FLUSHER) refused (%s; needs "
                    "CAP_SYS_RESOURCE): the thread is an I/O flusher for libreclaim "
                    "only, not for the kernel", strerror(err));
    /* The library passes only what the option takes: EINVAL is a kernel
     * that does not know it. */
    else if (err != EPERM && !atomic_exchange(&missing_reported, 1))
        rcl__report("rcl_io_flusher_set: prctl(PR_SET_IO_FLUSHER) failed (%s%s): the "
                    "thread is an I/O flusher for libreclaim only, not for the kernel",
                    strerror(err), err == EINVAL ? "; the kernel has no PR_SET_IO_FLUSHER, "
                    "added in Linux 5.6" : "");
    return -err;
}

int rcl_io_flusher_set(int on)
{
    struct rcl_thread *t = &rcl__self;

    /* Only 0 and 1: a daemon that passes anything else has a bug that
     * would otherwise silently leave it unprotected (or protected when it
     * meant to stop). */
    if (on != 0 && on != 1) {
        rcl__report("rcl_io_flusher_set(%d): neither 0 nor 1; refused, the thread "
                    "left as it was", on);
        return -EINVAL;
    }
    /* An off undoes this library's on, as a scope's restore undoes its
     * save. The kernel's off clears PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE
     * whoever set them and needs CAP_SYS_RESOURCE as the on does: made for
     * a thread the library never marked, it would clear a flag the program
     * set with its own prctl, or be refused and reported in the words of a
     * refused on, using up the once-only report that the on's needs. */
    if (!on && !t->io_flusher)
        return 0;
    rcl__ensure_init();

    if (on && !t->io_flusher) {
        /* Store the token plus one, so that "a flusher already inside
         * NOIO" (token 0) still reads as nonzero. */
        t->io_flusher = rcl_scope_save(RCL_SCOPE_NOIO) + 1;
        rcl__scope_flusher(true);
    } else if (!on && t->io_flusher) {
        /* No longer a flusher first: the restore would keep a flusher's NOIO. */
        unsigned token = t->io_flusher - 1;
        t->io_flusher = 0;
        rcl__scope_flusher(false);
        rcl__scope_flusher_end(token, __builtin_return_address(0));
    }
    /* The reserve stands in for the kernel's half where it refused the
     * set. One it took but reads back otherwise (-EIO) is in force as far
     * as the set's answer says: its page faults are the kernel's to keep
     * NOIO, and serving the thread from the reserve, where a full reserve
     * fails an allocation at once, would make it stricter than the
     * flusher it asked to be. */
    bool refused;
    int err = kernel_io_flusher(on, &refused);
    if (on && refused)
        (void)rcl__resv_enter(t);
    else if (!on)
        rcl__resv_leave(t);
    return err;
}

int rcl_io_flusher_get(void)
{
    return rcl__self.io_flusher != 0;
}
