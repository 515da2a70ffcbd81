/* SPDX-License-Identifier: MIT */
/*
 * symbolize.c - function names for the return addresses in reports.
 *
 * backtrace_symbols() names only what a module's dynamic symbol table
 * holds: the exported functions, and a program's own only when it was
 * linked with -rdynamic. The functions a lock-checker report is about are
 * mostly static ones - a file system's writer, a shrinker's scan - and
 * their names are in the ELF symbol table (.symtab) of the program or
 * library, which stays in the file unless it was stripped. So this reads
 * that table, at report time only, and keeps it mapped for the next report
 * until rcl_shutdown().
 *
 * Only files are read, never the running process's memory: a module whose
 * file is gone or stripped falls back to its dynamic symbols, then to
 * "module(+offset)", which addr2line understands.
 */
#include "internal.h"

#include <elf.h>
#include <errno.h>     /* program_invocation_short_name */
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MODULES 32

struct module {
    uintptr_t        base;       /* dlpi_addr: where the file's addresses start */
    char             path[256];
    void            *map;        /* the whole file, read-only; NULL if unreadable */
    size_t           map_len;
    const ElfW(Sym) *syms;
    size_t           nsyms;
    const char      *strs;
    size_t           strs_len;
};

/* Modules are only added while the lock is held and only dropped by
 * rcl__symbolize_forget(), which runs when no report can be in flight. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct module modules[MAX_MODULES];
static unsigned nr_modules;

struct find {
    uintptr_t addr;
    uintptr_t base;
    const char *name;
    bool found;
};

static int find_module_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct find *f = arg;
    (void)size;
    for (unsigned i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && f->addr - start < ph->p_memsz) {
            f->base = info->dlpi_addr;
            f->name = info->dlpi_name;
            f->found = true;
            return 1;
        }
    }
    return 0;
}

/* Picks the section table's full symbol table, or the dynamic one where the
 * file was stripped. Every offset is checked against the file's length: a
 * file replaced under a running program must not take the report down. */
static void module_load_symbols(struct module *m)
{
    const ElfW(Ehdr) *eh = m->map;
    if (m->map_len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_shoff > m->map_len ||
        (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) > m->map_len - eh->e_shoff)
        return;
    const ElfW(Shdr) *sh = (const ElfW(Shdr) *)((const char *)m->map + eh->e_shoff);
    for (int want = SHT_SYMTAB; ; want = SHT_DYNSYM) {
        for (unsigned i = 0; i < eh->e_shnum; i++) {
            const ElfW(Shdr) *s = &sh[i];
            if (s->sh_type != (unsigned)want || s->sh_link >= eh->e_shnum)
                continue;
            const ElfW(Shdr) *str = &sh[s->sh_link];
            if (s->sh_offset > m->map_len || s->sh_size > m->map_len - s->sh_offset ||
                str->sh_offset > m->map_len || str->sh_size > m->map_len - str->sh_offset)
                continue;
            m->syms = (const ElfW(Sym) *)((const char *)m->map + s->sh_offset);
            m->nsyms = s->sh_size / sizeof(ElfW(Sym));
            m->strs = (const char *)m->map + str->sh_offset;
            m->strs_len = str->sh_size;
            return;
        }
        if (want == SHT_DYNSYM)
            return;
    }
}

/* A path too long for the table is kept cut short: its first bytes
 * tell it from another module's at the same base. */
static bool module_is(const struct module *m, uintptr_t base, const char *path)
{
    size_t kept = strlen(m->path);

    return m->base == base && strncmp(m->path, path, kept) == 0 &&
           (!path[kept] || kept == sizeof(m->path) - 1);
}

static struct module *module_get(uintptr_t base, const char *path)
{
    for (unsigned i = 0; i < nr_modules; i++)
        if (module_is(&modules[i], base, path))
            return &modules[i];
    if (nr_modules == MAX_MODULES)
        return NULL;

    struct module *m = &modules[nr_modules++];
    memset(m, 0, sizeof(*m));
    m->base = base;
    snprintf(m->path, sizeof(m->path), "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            m->map = p;
            m->map_len = (size_t)st.st_size;
            module_load_symbols(m);
        }
    }
    if (fd >= 0)
        close(fd);
    return m;
}

/* The function symbol that contains file address `off`, or NULL.
 * (ELF64_ST_TYPE is the same bit field in 32-bit ELF.) */
static const char *module_lookup(const struct module *m, uintptr_t off, uintptr_t *start)
{
    for (size_t i = 0; i < m->nsyms; i++) {
        const ElfW(Sym) *s = &m->syms[i];
        if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_shndx == SHN_UNDEF ||
            s->st_name >= m->strs_len || off - s->st_value >= s->st_size)
            continue;
        if (!memchr(m->strs + s->st_name, '\0', m->strs_len - s->st_name))
            continue;
        *start = s->st_value;
        return m->strs + s->st_name;
    }
    return NULL;
}

void rcl__symbolize(const void *addr, char *buf, size_t len)
{
    /* A return address: the call it follows may be a function's last
     * instruction, so look up the byte before it. */
    struct find f = { .addr = (uintptr_t)addr - 1 };

    dl_iterate_phdr(find_module_cb, &f);
    if (!f.found) {
        snprintf(buf, len, "%p", addr);
        return;
    }

    /* A module's first lookup opens and closes its file under the lock:
     * cancellation points, which must not leave the lock held. */
    int cancel = rcl__nocancel_begin();
    pthread_mutex_lock(&lock);
    bool exe = !f.name || !*f.name;
    const char *prog = exe ? "/proc/self/exe" : f.name;
    struct module *m = module_get(f.base, prog);
    const char *slash = strrchr(prog, '/');
    const char *fn = NULL;
    uintptr_t off = (uintptr_t)addr - f.base, start = 0;

    if (exe) {
        prog = program_invocation_short_name;   /* the program, not the link */
        slash = NULL;
    }
    if (m)
        fn = module_lookup(m, off - 1, &start);
    if (fn) {
        /* gcc's local aliases of exported functions: the name users know */
        size_t fnlen = strlen(fn);
        if (fnlen > 11 && strcmp(fn + fnlen - 11, ".localalias") == 0)
            fnlen -= 11;
        snprintf(buf, len, "%.*s+0x%lx (%s)", (int)fnlen, fn, (unsigned long)(off - start),
                 slash ? slash + 1 : prog);
    }
    else
        snprintf(buf, len, "%s(+0x%lx)", slash ? slash + 1 : prog, (unsigned long)off);
    pthread_mutex_unlock(&lock);
    rcl__nocancel_end(cancel);
}

void rcl__symbolize_forget(void)
{
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < nr_modules; i++)
        if (modules[i].map)
            munmap(modules[i].map, modules[i].map_len);
    nr_modules = 0;
    pthread_mutex_unlock(&lock);
}

/* fork() (fork.c): the table is whole whenever the lock is free. */
void rcl__symbolize_atfork_prepare(void) { pthread_mutex_lock(&lock); }
void rcl__symbolize_atfork_parent(void) { pthread_mutex_unlock(&lock); }
void rcl__symbolize_atfork_child(void) { pthread_mutex_unlock(&lock); }
