/* SPDX-License-Identifier: MIT */
/*
 * gfp.c - the allocation flags' names, as reports print them
 * ("DEFAULT|NOFAIL"), and the check of a caller's flags. The naming is a
 * leaf, like clock.c: it calls nothing of the library, so the lock
 * checker's reports and the allocation failures' alike may use it.
 */
#include "internal.h"

#include <stdio.h>

/* Reports name flags the way reclaim.h spells them: the widest composite
 * first, then the bits it leaves. */
const char *rcl__gfp_str(rcl_gfp_t gfp, char *buf, size_t len)
{
    static const struct { rcl_gfp_t mask; const char *name; } composite[] = {
        { RCL_DEFAULT, "DEFAULT" }, { RCL_NOFS, "NOFS" }, { RCL_NOIO, "NOIO" },
        { RCL_ATOMIC, "ATOMIC" },
    };
    static const char *const bit[] = {
        "IO", "FS", "DIRECT_RECLAIM", "KSWAPD_RECLAIM", "HIGH", "MEMALLOC",
        "NOMEMALLOC", "NOFAIL", "NORETRY", "NOWARN", "ZERO",
    };
    size_t off = 0;
    buf[0] = '\0';
    rcl_gfp_t rest = gfp;
    /* The widest composite the flags contain names them best. */
    for (size_t i = 0; i < sizeof(composite) / sizeof(composite[0]); i++) {
        if ((rest & composite[i].mask) == composite[i].mask) {
            off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s", composite[i].name);
            rest &= ~composite[i].mask;
            break;
        }
    }
    for (unsigned i = 0; i < sizeof(bit) / sizeof(bit[0]); i++) {
        if (rest & (1u << i))
            off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s",
                                    off ? "|" : "", bit[i]);
    }
    if (!off)
        snprintf(buf, len, "0");
    return buf;
}

/* Bits the header does not define are a caller's mistake (a size or an
 * errno passed as the flags, a flag of another library): reported each
 * time, and the request served as if they were clear, as the kernel's
 * slab warns of and masks off the zone bits it cannot honour. */
rcl_gfp_t rcl__gfp_unknown(const char *fn, rcl_gfp_t gfp)
{
    char known[128];

    rcl__report("%s: flags 0x%x carry bits no RCL_* flag has (0x%x); served as %s",
                fn, gfp, gfp & ~RCL__GFP_ALL,
                rcl__gfp_str(gfp & RCL__GFP_ALL, known, sizeof(known)));
    return gfp & RCL__GFP_ALL;
}
