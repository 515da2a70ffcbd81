/* SPDX-License-Identifier: MIT */
/*
 * fuse_writer - the end-to-end test's writer and verifier
 * (tests/fuse_e2e.sh).
 *
 *   fuse_writer write  FILE MIB   MIB MiB in 1 MiB write() calls, then fsync
 *   fuse_writer verify FILE MIB   every 8-byte word checked
 *
 * Each word holds a function of its offset, so a block written to the
 * wrong place, stale or torn is caught. Both print a line per MiB ("w N",
 * "v N") so that a watchdog can tell a slow run from a stuck one, then
 * their figures: write's slowest call, longest stretch without a completed
 * call and fsync; verify's time and count of wrong words.
 *
 * Exit status: 0; 1 when a write, the fsync or the verification fails (a
 * wrong word), which fails the end-to-end test; 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 20)

static uint64_t word_at(uint64_t off)
{
    return (off * 0x9e3779b97f4a7c15ull) ^ 0x5bd1e9955bd1e995ull;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fill(uint64_t *buf, uint64_t base)
{
    for (size_t i = 0; i < CHUNK / 8; i++)
        buf[i] = word_at(base + i * 8);
}

static int do_write(const char *path, unsigned mib, uint64_t *buf)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return perror(path), 1;
    double start = now_ms(), last = start, max_call = 0, max_gap = 0;
    for (unsigned i = 0; i < mib; i++) {
        fill(buf, (uint64_t)i * CHUNK);
        double t0 = now_ms();
        ssize_t n = write(fd, buf, CHUNK);
        double t1 = now_ms();
        if (n != (ssize_t)CHUNK) {
            printf("error write %u: %s\n", i, n < 0 ? strerror(errno) : "short");
            return 1;
        }
        if (t1 - t0 > max_call)
            max_call = t1 - t0;
        if (t1 - last > max_gap)
            max_gap = t1 - last;
        last = t1;
        printf("w %u\n", i);
        fflush(stdout);
    }
    double t0 = now_ms();
    if (fsync(fd) != 0) {
        printf("error fsync: %s\n", strerror(errno));
        return 1;
    }
    double t1 = now_ms();
    if (t1 - last > max_gap)
        max_gap = t1 - last;
    close(fd);
    printf("write_ms=%.0f max_call_ms=%.0f max_gap_ms=%.0f fsync_ms=%.0f\n", t1 - start,
           max_call, max_gap, t1 - t0);
    return 0;
}

static int do_verify(const char *path, unsigned mib, uint64_t *buf)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return perror(path), 1;
    unsigned long long bad = 0, words = 0;
    double start = now_ms();
    for (unsigned i = 0; i < mib; i++) {
        size_t got = 0;
        while (got < CHUNK) {
            ssize_t n = read(fd, (char *)buf + got, CHUNK - got);
            if (n <= 0) {
                printf("error read %u: %s\n", i, n < 0 ? strerror(errno) : "short");
                return 1;
            }
            got += (size_t)n;
        }
        for (size_t w = 0; w < CHUNK / 8; w++, words++)
            bad += buf[w] != word_at((uint64_t)i * CHUNK + w * 8);
        printf("v %u\n", i);
        fflush(stdout);
    }
    close(fd);
    printf("verify_ms=%.0f words=%llu bad_words=%llu\n", now_ms() - start, words, bad);
    return bad != 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "write") && strcmp(argv[1], "verify"))) {
        fprintf(stderr, "usage: %s write|verify FILE MIB\n", argv[0]);
        return 2;
    }
    unsigned mib = (unsigned)atoi(argv[3]);
    uint64_t *buf = aligned_alloc(4096, CHUNK);
    if (!buf)
        return 1;
    memset(buf, 0, CHUNK);   /* resident before the first timed call */
    return strcmp(argv[1], "write") == 0 ? do_write(argv[2], mib, buf)
                                         : do_verify(argv[2], mib, buf);
}
