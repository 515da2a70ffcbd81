/* SPDX-License-Identifier: MIT */
/*
 * scope.c - per-thread reclaim context: scopes, the flags they leave an
 * allocation, and capturing a context to adopt in another thread.
 *
 * Scopes follow the kernel's memalloc_flags_save() (v6.9 and later): save
 * sets the requested bits and returns only the ones it newly set, restore
 * clears exactly those. An inner save of a scope already in force returns 0
 * and its restore changes nothing, which is what lets scopes nest in any
 * order without a stack.
 */
#include "internal.h"

#include <string.h>

__thread struct rcl_scope_tls rcl_scope_tls RCL_TLS_IE;

/*
 * Users' scope calls are inline (reclaim.h) and come here only while the
 * lock checker watches the thread (rcl_scope_tls.checked); these are also
 * the exported functions of the same names. Either way the bits change the
 * same way.
 */
unsigned rcl_scope_save(unsigned scope)
{
    unsigned set = rcl__scope_set(&rcl__scope, scope);

    if (rcl__checking())
        rcl__lockdep_scope_save(set);
    return set;
}

void rcl_scope_restore(unsigned saved)
{
    unsigned before = rcl__scope;

    rcl__scope_clear(&rcl__scope, saved);
    if (rcl__checking())
        rcl__lockdep_scope_restore(saved, before);
}

unsigned rcl_scope_save_checked(unsigned scope) __attribute__((alias("rcl_scope_save")));
void rcl_scope_restore_checked(unsigned saved) __attribute__((alias("rcl_scope_restore")));

/* The checker watches this thread from now on: its users' inline scope
 * calls come to the functions above. */
void rcl__scope_put(unsigned bits)
{
    rcl__scope = bits & RCL_SCOPE_ALL;
    if (rcl__checking())
        rcl__lockdep_scope_put(rcl__scope);
}

void rcl__scope_watch(bool on)
{
    rcl_scope_tls.checked = on;
}

unsigned rcl_scope_current(void) { return rcl__scope; }

unsigned rcl_nofs_save(void) { return rcl_scope_save(RCL_SCOPE_NOFS); }
void rcl_nofs_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_noio_save(void) { return rcl_scope_save(RCL_SCOPE_NOIO); }
void rcl_noio_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_noreclaim_save(void) { return rcl_scope_save(RCL_SCOPE_NORECLAIM); }
void rcl_noreclaim_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_nowait_save(void) { return rcl_scope_save(RCL_SCOPE_NOWAIT); }
void rcl_nowait_restore(unsigned saved) { rcl_scope_restore(saved); }

rcl_gfp_t rcl_current_gfp(rcl_gfp_t gfp) { return rcl__gfp_in_scope(gfp, rcl__scope); }

void rcl_context_capture(struct rcl_context *out)
{
    struct rcl_ctx *c = (struct rcl_ctx *)(void *)out;

    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    /* NORECLAIM marks "this thread is reclaiming"; another thread doing
     * the work is not, so it does not travel. */
    c->scope = rcl__scope & ~RCL_SCOPE_NORECLAIM;
    rcl__domain_capture(c);
}

void rcl_context_adopt(const struct rcl_context *ctx, struct rcl_context *saved)
{
    const struct rcl_ctx *c = (const struct rcl_ctx *)(const void *)ctx;
    struct rcl_ctx *s = (struct rcl_ctx *)(void *)saved;

    if (!ctx || !saved) {
        rcl__report("rcl_context_adopt: NULL %s", ctx ? "saved" : "context");
        return;
    }
    memset(saved, 0, sizeof(*saved));
    s->scope = rcl__scope;
    rcl__domain_capture(s);
    /* Adopting only adds restrictions; the scope bits are or-ed in
     * directly (not through save) because restore puts back the whole
     * saved word rather than a token. */
    rcl__scope_put(rcl__scope | c->scope);
    rcl__domain_adopt(c);
}

void rcl_context_restore(const struct rcl_context *saved)
{
    const struct rcl_ctx *s = (const struct rcl_ctx *)(const void *)saved;

    if (!saved) {
        rcl__report("rcl_context_restore: NULL context");
        return;
    }
    rcl__domain_restore(s);
    rcl__scope_put(s->scope);
}
