/* lockdep.c - reclaim-recursion and lock-order checker (hooks only; the
 * checker itself is issue 4). */
#include "internal.h"

_Atomic int rcl__lockdep_mode;

void rcl__lockdep_alloc(rcl_gfp_t asked, rcl_gfp_t masked, bool may_reclaim) { (void)asked; (void)masked; (void)may_reclaim; }
void rcl__lockdep_shrink_begin(const struct rcl_shrinker *s, rcl_gfp_t gfp) { (void)s; (void)gfp; }
void rcl__lockdep_shrink_end(const struct rcl_shrinker *s, rcl_gfp_t gfp) { (void)s; (void)gfp; }
void rcl__lockdep_scope_save(unsigned set) { (void)set; }
void rcl__lockdep_scope_restore(unsigned saved, unsigned before) { (void)saved; (void)before; }
void rcl__lockdep_reset(void) { }
unsigned long rcl__lockdep_count(void) { return 0; }
