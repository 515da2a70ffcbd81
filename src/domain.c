/* domain.c - reclaim domains (hooks only; domains are issue 5). */
#include "internal.h"

bool rcl__domain_filter(struct rcl_domain *owner, rcl_gfp_t *gfp) { (void)owner; (void)gfp; return false; }
void rcl__domain_shrinker_ref(struct rcl_domain *d, int delta) { (void)d; (void)delta; }
void rcl__domain_capture(struct rcl_ctx *c) { c->ndomains = 0; c->journal = NULL; }
void rcl__domain_adopt(const struct rcl_ctx *c) { (void)c; }
void rcl__domain_restore(const struct rcl_ctx *c) { (void)c; }
unsigned rcl__domain_entered(struct rcl_domain **out, unsigned max) { (void)out; (void)max; return 0; }
