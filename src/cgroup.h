/* SPDX-License-Identifier: MIT */
/*
 * cgroup.h - the process's memory cgroup (cgroup.c), for the files that
 * read it: the pressure thread, the footprint sampler, the automatic limit.
 */
#ifndef RCL_CGROUP_H
#define RCL_CGROUP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rcl_cgroup {
    int    version;            /* 1 or 2; 0 = none found */
    char   dir[PATH_MAX];      /* the process's cgroup, root prefix included */
    size_t top;                /* length of the mount point part of dir */
};

/* "no file could be read at all", which is not "no limit" */
#define RCL_CG_UNKNOWN UINT64_MAX
/* No limit set anywhere on the way up. Not 0: memory.max = 0 is a limit,
 * one the kernel holds to no charge at all. */
#define RCL_CG_NONE    (UINT64_MAX - 1)

/* RECLAIM_CGROUP_ROOT, or "": put in front of every path read. "" too
 * for a value that is not an absolute path to a directory of at most
 * RCL__ROOT_MAX bytes, reported (once a value, until the next start). */
const char *rcl__root_prefix(void);
/* A small file read whole, NUL-terminated; -errno or the length. */
ssize_t  rcl__read_small(const char *path, char *buf, size_t len);
/* A file kept open, read again from its start with pread (no file opened,
 * no new memory), NUL-terminated; -errno (-EINVAL when empty) or the
 * length. */
ssize_t  rcl__pread_text(int fd, char *buf, size_t len);
/* A fingerprint of all of a file kept open, however long, read with
 * pread (no file opened, no new memory); -errno (-EINVAL when empty). */
int      rcl__pread_hash(int fd, uint64_t *out);
/* A descriptor on /proc/self/cgroup, under the root prefix; -errno. Its
 * fingerprint (rcl__pread_hash()) changes at a move to another group. */
int      rcl__cgroup_self_open(void);
/* 0; else cg->version 0 and -EXDEV, -ESTALE or -ENAMETOOLONG for the
 * process's cgroup outside what the mounts show, gone at every read, or
 * at a path of PATH_MAX bytes or more (reported, once for each such
 * cgroup), -ENOENT for none mounted or none readable (the
 * mounts or /proc/self/cgroup unreadable: no descriptor free). */
int      rcl__cgroup_find(struct rcl_cgroup *cg);
/* The smallest limit set on the way up (RCL_CG_NONE; RCL_CG_UNKNOWN);
 * `at` gets the directory that sets it. */
uint64_t rcl__cgroup_limit(const struct rcl_cgroup *cg, char *at, size_t atlen);
/* The inactive page cache of `dir` (memory.stat), 0 when unknown. */
uint64_t rcl__cgroup_inactive_file(const struct rcl_cgroup *cg, const char *dir);
/* A descriptor on the usage file of `dir` (v1 memory.usage_in_bytes, v2
 * memory.current), for rcl__read_fd_u64(); -errno. */
int      rcl__cgroup_usage_open(const struct rcl_cgroup *cg, const char *dir);
/* The number at the start of fd's file, read with pread (no new memory,
 * no file opened). 0 or -errno. */
int      rcl__read_fd_u64(int fd, uint64_t *out);
/* cgroup v1 only: an eventfd that fires when the usage of `dir` crosses
 * `bytes` either way (memory.usage_in_bytes thresholds through
 * cgroup.event_control). -errno (-EOPNOTSUPP on v2). */
int      rcl__cgroup_threshold(const struct rcl_cgroup *cg, const char *dir, uint64_t bytes);
/* The files the pressure thread reads, opened once: each level from the
 * process's cgroup up to the mount point (level 0 is the cgroup itself),
 * however deep. */
struct rcl_cgroup_level { int limit_fd[2], usage_fd, stat_fd; };
struct rcl_cgroup_files {
    int      version;
    unsigned nlevels;
    struct rcl_cgroup_level *level;     /* nlevels of them, calloc'd */
};
void     rcl__cgroup_files_open(const struct rcl_cgroup *cg, struct rcl_cgroup_files *f);
void     rcl__cgroup_files_close(struct rcl_cgroup_files *f);
/* The binding limit, as rcl__cgroup_limit(), and the level that sets it. */
uint64_t rcl__cgroup_files_limit(const struct rcl_cgroup_files *f, unsigned *level);
/* Usage and inactive page cache at `level`; 0 or -errno. Only one thread
 * at a time (a static buffer). */
int      rcl__cgroup_files_working_set(const struct rcl_cgroup_files *f, unsigned level,
                                       uint64_t *usage, uint64_t *inactive);
/* The budget a cgroup limit gives: the limit less the margin, else half
 * of physical memory. */
size_t   rcl__auto_budget(uint64_t cglimit);
/* A start reports a bad RECLAIM_CGROUP_MARGIN or RECLAIM_CGROUP_ROOT
 * again, reported before or not. */
void     rcl__cgroup_env_forget(void);
/* The budget of a cgroup limit, 0 when the limit limits nothing
 * (RCL_CG_NONE, RCL_CG_UNKNOWN, or one above the machine's memory); a
 * limit that leaves nothing gives the least budget, 1 byte. */
size_t   rcl__cgroup_budget(uint64_t cglimit);
/* The automatic budget moved to a new cgroup limit's; false (nothing
 * changed) once the program chose a limit (rcl_set_limit). */
bool     rcl__auto_limit_follow(uint64_t cglimit);
/* The directory of level `level` above the cgroup (0: the cgroup itself),
 * as rcl__cgroup_files_open() numbers them. */
void     rcl__cgroup_level_dir(const struct rcl_cgroup *cg, unsigned level, char *dir,
                               size_t len);

#endif /* RCL_CGROUP_H */
