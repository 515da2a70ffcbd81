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

__thread struct rcl_thread rcl__self RCL_TLS_IE;

/* Out of line and returning the token, so that the unchecked path is a
 * leaf with no stack frame of its own. */
static __attribute__((noinline, cold)) unsigned scope_save_checked(unsigned set)
{
    rcl__lockdep_scope_save(set);
    return set;
}

unsigned rcl_scope_save(unsigned scope)
{
    struct rcl_thread *t = &rcl__self;
    unsigned set = scope & RCL_SCOPE_ALL & ~t->scope;

    t->scope |= set;
    if (rcl__checking())
        return scope_save_checked(set);
    return set;
}

void rcl_scope_restore(unsigned saved)
{
    struct rcl_thread *t = &rcl__self;
    unsigned before = t->scope;

    /* Bits that are not set cannot be restored: clearing only what is
     * there keeps a bogus token from touching anyone else's scope. */
    t->scope = before & ~(saved & RCL_SCOPE_ALL);
    if (rcl__checking())
        rcl__lockdep_scope_restore(saved, before);
}

unsigned rcl_scope_current(void) { return rcl__self.scope; }

unsigned rcl_nofs_save(void) { return rcl_scope_save(RCL_SCOPE_NOFS); }
void rcl_nofs_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_noio_save(void) { return rcl_scope_save(RCL_SCOPE_NOIO); }
void rcl_noio_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_noreclaim_save(void) { return rcl_scope_save(RCL_SCOPE_NORECLAIM); }
void rcl_noreclaim_restore(unsigned saved) { rcl_scope_restore(saved); }
unsigned rcl_nowait_save(void) { return rcl_scope_save(RCL_SCOPE_NOWAIT); }
void rcl_nowait_restore(unsigned saved) { rcl_scope_restore(saved); }

rcl_gfp_t rcl_current_gfp(rcl_gfp_t gfp)
{
    unsigned scope = rcl__self.scope;

    /* NOIO implies NOFS: file-system reclaim may itself issue I/O. */
    if (scope & RCL_SCOPE_NOIO)
        gfp &= ~(RCL__IO | RCL__FS);
    else if (scope & RCL_SCOPE_NOFS)
        gfp &= ~RCL__FS;
    if (scope & RCL_SCOPE_NOWAIT)
        gfp &= ~RCL__DIRECT_RECLAIM;
    return gfp;
}

void rcl_context_capture(struct rcl_context *out)
{
    struct rcl_ctx *c = (struct rcl_ctx *)(void *)out;

    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    /* NORECLAIM marks "this thread is reclaiming"; another thread doing
     * the work is not, so it does not travel. */
    c->scope = rcl__self.scope & ~RCL_SCOPE_NORECLAIM;
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
    s->scope = rcl__self.scope;
    rcl__domain_capture(s);
    /* Adopting only adds restrictions; the scope bits are or-ed in
     * directly (not through save) because restore puts back the whole
     * saved word rather than a token. */
    rcl__self.scope |= c->scope & RCL_SCOPE_ALL;
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
    rcl__self.scope = s->scope & RCL_SCOPE_ALL;
}
