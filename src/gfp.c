/* SPDX-License-Identifier: MIT */
/*
 * gfp.c - the allocation flags' names, as reports print them
 * ("DEFAULT|NOFAIL"), and the check of a caller's flags. The naming is a
 * leaf, like clock.c: it calls nothing of the library, so the lock
 * checker's reports and the allocation failures' alike may use it.
 */
#include "internal.h"

#include <string.h>

/* Appends "|name" (or the first name) to the text being built in a
 * buffer every combination of flags fits in; anything else would be a
 * name added to the tables without RCL__GFP_STR_MAX grown to hold it. */
static size_t gfp_name_add(char *full, size_t off, const char *name)
{
    size_t sep = off ? 1 : 0, n = strlen(name);

    rcl__assert(off + sep + n < RCL__GFP_STR_MAX);
    if (sep)
        full[off] = '|';
    memcpy(full + off + sep, name, n + 1);
    return off + sep + n;
}

/* Reports name flags the way reclaim.h spells them: the widest composite
 * first, then the bits it leaves. A buffer too short for the whole name
 * gets its start and a visible "..." where it was cut, so that a report
 * never shows fewer flags than the caller passed as if they were all. */
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
    static const char cut[] = "...";
    char full[RCL__GFP_STR_MAX];
    size_t off = 0;
    rcl_gfp_t rest = gfp;

    full[0] = '\0';
    /* The widest composite the flags contain names them best. */
    for (size_t i = 0; i < sizeof(composite) / sizeof(composite[0]); i++) {
        if ((rest & composite[i].mask) == composite[i].mask) {
            off = gfp_name_add(full, off, composite[i].name);
            rest &= ~composite[i].mask;
            break;
        }
    }
    for (unsigned i = 0; i < sizeof(bit) / sizeof(bit[0]); i++) {
        if (rest & (1u << i))
            off = gfp_name_add(full, off, bit[i]);
    }
    if (!off)
        off = gfp_name_add(full, off, "0");
    if (!len)
        return "";
    if (off < len) {
        memcpy(buf, full, off + 1);
    } else if (len > sizeof(cut)) {
        memcpy(buf, full, len - sizeof(cut));
        memcpy(buf + len - sizeof(cut), cut, sizeof(cut));
    } else {
        /* No room for a start and the mark: the mark alone, as much of
         * it as fits, still says the name is not there. */
        memcpy(buf, cut, len - 1);
        buf[len - 1] = '\0';
    }
    return buf;
}

/* Bits the header does not define are a caller's mistake (a size or an
 * errno passed as the flags, a flag of another library): reported each
 * time, and the request served as if they were clear, as the kernel's
 * slab warns of and masks off the zone bits it cannot honour. */
rcl_gfp_t rcl__gfp_unknown(const char *fn, rcl_gfp_t gfp)
{
    char known[RCL__GFP_STR_MAX];

    rcl__report("%s: flags 0x%x carry bits no RCL_* flag has (0x%x); served as %s",
                fn, gfp, gfp & ~RCL__GFP_ALL,
                rcl__gfp_str(gfp & RCL__GFP_ALL, known, sizeof(known)));
    return gfp & RCL__GFP_ALL;
}
