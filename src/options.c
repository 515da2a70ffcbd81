/* SPDX-License-Identifier: MIT */
/*
 * options.c - the one table of RECLAIM_* environment variables, and the
 * code that applies it to a struct rcl_config.
 *
 * Everything that documents the variables (the README's list, reclaim(7))
 * is generated from this table (tests/progs/options_doc.c,
 * tools/check-options.sh), so a new option is one entry here plus, for a
 * "config" option, its field in struct rcl_config.
 *
 * Two kinds of entry. A config option fills a field of struct rcl_config
 * and so follows the precedence rule (docs/design.md, "Configuration"): it
 * applies to a program that lets the library configure itself, never
 * behind the back of one that passed its own configuration to rcl_init().
 * A process option (no field) is read where it is used, in every program,
 * through rcl__option_env(): those only add output, set what the automatic
 * limit leaves free, or serve tests. No file reads a RECLAIM_* variable
 * any other way (tools/check-options.sh fails the build's checks when one
 * does).
 */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NOFIELD ((size_t)-1)
#define CFG(field) offsetof(struct rcl_config, field), sizeof(((struct rcl_config *)0)->field)
#define PROCESS NOFIELD, 0

const struct rcl__option rcl__options[] = {
    { "RECLAIM_LIMIT", RCL__OPT_SIZE, CFG(limit), 0, SIZE_MAX, "0 (automatic)",
      "The budget in bytes (K, M, G, T suffixes); 0 picks the cgroup limit less a margin, else half of physical memory" },
    { "RECLAIM_RESERVE", RCL__OPT_SIZE, CFG(reserve), 0, SIZE_MAX, "0 (min_pct of the limit)",
      "Bytes of the budget kept for reclaim itself, I/O flushers and RCL__MEMALLOC" },
    { "RECLAIM_MIN_PCT", RCL__OPT_UINT, CFG(min_pct), 0, 99, "2",
      "Headroom (percent of the limit) below which allocations reclaim directly or fail; 0 is the default; min < low < high must hold" },
    { "RECLAIM_LOW_PCT", RCL__OPT_UINT, CFG(low_pct), 0, 99, "5",
      "Headroom below which the background reclaimer wakes" },
    { "RECLAIM_HIGH_PCT", RCL__OPT_UINT, CFG(high_pct), 0, 99, "10",
      "Headroom the background reclaimer restores before it sleeps" },
    { "RECLAIM_BACKGROUND", RCL__OPT_BOOL, CFG(background), 0, 1, "1",
      "Run the background reclaimer thread (0 or 1)" },
    { "RECLAIM_PRESSURE", RCL__OPT_BOOL, CFG(pressure), 0, 1, "1",
      "Follow the cgroup limit, PSI and cgroup usage (0 or 1)" },
    { "RECLAIM_LOCKDEP", RCL__OPT_LOCKDEP, CFG(lockdep), 0, 2, "0",
      "The lock checker: 0 off, 1 on, verbose (or 2) also reports each dependency learned" },
    { "RECLAIM_STALL_MS", RCL__OPT_UINT, CFG(stall_ms), 0, 86400000, "10000",
      "A NOFAIL allocation waiting this long is reported, and again every as long" },
    { "RECLAIM_FOOTPRINT", RCL__OPT_FOOTPRINT, CFG(footprint), 0, 3, "auto",
      "How real memory is measured against the budget: auto, off (charges alone), rss or cgroup" },
    { "RECLAIM_DIRECT_US", RCL__OPT_DIRECT_US, CFG(direct_us), 0, 1000000, "50",
      "Microseconds of shrinker work one allocation's direct reclaim may do before it leaves the rest to the background reclaimer; 0 means no bound" },
    { "RECLAIM_STATS", RCL__OPT_BOOL, PROCESS, 0, 1, "0",
      "1 prints the statistics to standard error at exit" },
    { "RECLAIM_CGROUP_MARGIN", RCL__OPT_SIZE_OR_PCT, PROCESS, 0, SIZE_MAX, "1/8 of the cgroup limit",
      "What the automatic limit leaves below the cgroup limit, a size (32M) or a percentage (10%); at most half" },
    { "RECLAIM_CGROUP_ROOT", RCL__OPT_PATH, PROCESS, 1, RCL__ROOT_MAX, "/",
      "For tests: read cgroup, /proc and /sys files under this directory (an absolute path) instead of /" },
};
const unsigned rcl__nr_options = sizeof(rcl__options) / sizeof(rcl__options[0]);

/* A process option's variable, as the environment has it (NULL: unset).
 * The name must be the table's: no RECLAIM_* variable is read past it.
 * MEMORY_PRESSURE_WATCH and MEMORY_PRESSURE_WRITE (pressure.c) are not
 * ours: they are systemd's memory-pressure protocol, which the service
 * manager sets, and are read where that protocol is followed. */
const char *rcl__option_env(const char *name)
{
    const struct rcl__option *o = rcl__option_find(name);
    return o ? getenv(o->name) : NULL;
}

int rcl__parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;

    /* strtoull() takes leading blanks and a sign, and " -1" would wrap to
     * the largest size: a size starts with its first digit. */
    if (errno || end == s || *s < '0' || *s > '9')
        return -EINVAL;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (*end == 'i' && shift)
        end++;
    if ((*end == 'b' || *end == 'B') && shift)
        end++;
    if (*end != '\0' || (shift && v > (SIZE_MAX >> shift)))
        return -EINVAL;
    *out = (size_t)(v << shift);
    return 0;
}

/* A count, a percentage or a time: digits alone. A size's suffix on one
 * ("5k" milliseconds) would read as a multiple of 1024 that nobody meant. */
static int parse_number(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);

    if (errno || *s < '0' || *s > '9' || *end != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

/* RCL__OPT_SIZE_OR_PCT: a size ("32M") or a percentage of `whole`
 * ("10%", at most 100). */
int rcl__option_size_of(const char *s, uint64_t whole, uint64_t *out)
{
    char *end;
    size_t v;
    unsigned long pct = strtoul(s, &end, 10);

    if (isdigit((unsigned char)s[0]) && !strcmp(end, "%") && pct <= 100) {
        *out = rcl__pct_of(whole, (unsigned)pct);
        return 0;
    }
    if (rcl__parse_size(s, &v))
        return -EINVAL;
    *out = v;
    return 0;
}

const struct rcl__option *rcl__option_find(const char *name)
{
    for (unsigned i = 0; i < rcl__nr_options; i++)
        if (!strcmp(rcl__options[i].name, name))
            return &rcl__options[i];
    return NULL;
}

static int parse_bool(const char *s, unsigned long long *v)
{
    if (!strcmp(s, "0") || !strcmp(s, "off") || !strcmp(s, "no"))
        *v = 0;
    else if (!strcmp(s, "1") || !strcmp(s, "on") || !strcmp(s, "yes"))
        *v = 1;
    else
        return -EINVAL;
    return 0;
}

void rcl__option_expected(const struct rcl__option *o, char *buf, size_t len)
{
    switch (o->kind) {
    case RCL__OPT_SIZE:
        snprintf(buf, len, "a size such as 256M");
        break;
    case RCL__OPT_UINT:
        snprintf(buf, len, "a number from %llu to %llu", o->min, o->max);
        break;
    case RCL__OPT_BOOL:
        snprintf(buf, len, "0 or 1");
        break;
    case RCL__OPT_LOCKDEP:
        snprintf(buf, len, "0, 1 or verbose");
        break;
    case RCL__OPT_SIZE_OR_PCT:
        snprintf(buf, len, "a size such as 32M or a percentage such as 10%%");
        break;
    case RCL__OPT_PATH:
        snprintf(buf, len, "an absolute path to a directory, at most %llu bytes", o->max);
        break;
    case RCL__OPT_FOOTPRINT:
        snprintf(buf, len, "auto, off, rss or cgroup");
        break;
    case RCL__OPT_DIRECT_US:
        snprintf(buf, len, "microseconds from 0 (no bound) to 1000000");
        break;
    }
}

/* A directory that file names are put after: its length bounded by the
 * buffers they are put into, absolute since a relative one would follow
 * the working directory, which the program may change between two reads;
 * empty is a variable set to nothing, refused as every option's is. */
static bool path_ok(const struct rcl__option *o, const char *s)
{
    struct stat st;

    return s[0] == '/' && strnlen(s, o->max + 1) <= o->max && stat(s, &st) == 0 &&
           S_ISDIR(st.st_mode);
}

int rcl__option_parse(const struct rcl__option *o, const char *s, unsigned long long *v)
{
    size_t sz;
    unsigned long long n;

    switch (o->kind) {
    case RCL__OPT_SIZE:
        if (rcl__parse_size(s, &sz) || sz < o->min || sz > o->max)
            return -EINVAL;
        *v = sz;
        return 0;
    case RCL__OPT_UINT:
        if (parse_number(s, &n) || n < o->min || n > o->max)
            return -EINVAL;
        *v = n;
        return 0;
    case RCL__OPT_BOOL:
        return parse_bool(s, v);
    case RCL__OPT_LOCKDEP:
        if (!strcmp(s, "verbose") || !strcmp(s, "2")) {
            *v = RCL_LOCKDEP_VERBOSE;
            return 0;
        }
        return parse_bool(s, v);
    case RCL__OPT_DIRECT_US:
        /* 0 in the field is the default; the variable's 0 is "no bound" */
        if (parse_number(s, &n) || n > o->max)
            return -EINVAL;
        *v = n ? n : RCL_DIRECT_UNBOUNDED;
        return 0;
    case RCL__OPT_FOOTPRINT: {
        static const char *const names[] = { "auto", "off", "rss", "cgroup" };
        for (unsigned i = 0; i < 4; i++)
            if (!strcmp(s, names[i])) {
                *v = i;
                return 0;
            }
        return -EINVAL;
    }
    case RCL__OPT_SIZE_OR_PCT: {
        uint64_t x;
        /* the value is only known against a whole: a percentage of 100 */
        if (rcl__option_size_of(s, 100, &x))
            return -EINVAL;
        *v = x;
        return 0;
    }
    case RCL__OPT_PATH:
        if (!path_ok(o, s))
            return -EINVAL;
        *v = 0;   /* its user reads the string */
        return 0;
    }
    return -EINVAL;
}

static void store(const struct rcl__option *o, struct rcl_config *cfg, unsigned long long v)
{
    char *field = (char *)cfg + o->offset;

    if (o->size == sizeof(unsigned)) {
        unsigned u = (unsigned)v;
        memcpy(field, &u, sizeof(u));
    } else {
        size_t z = (size_t)v;
        memcpy(field, &z, sizeof(z));
    }
}

int rcl_config_from_env(struct rcl_config *cfg)
{
    /* Room for every config option's refusal, its value cut at 64 bytes:
     * the report names each variable it ignored. */
    char bad[1536] = "", want[96];
    size_t used = 0;
    unsigned nbad = 0;

    if (!cfg) {
        rcl__report("rcl_config_from_env(NULL): NULL configuration; nothing read");
        return -EINVAL;
    }
    for (unsigned i = 0; i < rcl__nr_options; i++) {
        const struct rcl__option *o = &rcl__options[i];
        const char *s;
        unsigned long long v;

        if (o->offset == NOFIELD || !(s = getenv(o->name)))
            continue;
        if (rcl__option_parse(o, s, &v) == 0) {
            store(o, cfg, v);
            continue;
        }
        rcl__option_expected(o, want, sizeof(want));
        if (used < sizeof(bad))
            used += (size_t)snprintf(bad + used, sizeof(bad) - used, "%s%s=\"%.64s\" (want %s)",
                                     nbad ? ", " : "", o->name, s, want);
        nbad++;
    }
    if (!nbad)
        return 0;
    /* Made in a start, it is held back whole until the start is done. */
    _Static_assert(sizeof(bad) + 64 <= RCL__HELD_BYTES, "the refusal fits a start's reports");
    rcl__report("ignored %s; the rest of the RECLAIM_* environment applies", bad);
    return -EINVAL;
}
