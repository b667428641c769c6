/*
 * host_util.h -- what the host-only bench programs (runner.c, threads.c) share: an arena from
 * mmap (populated, so no page fault is timed), a monotonic clock in nanoseconds, and the block
 * patterns of the checked passes.
 */
#ifndef BENCH_HOST_UTIL_H
#define BENCH_HOST_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bench.h"

/* bytes of fresh memory, or exit(2) with a message */
static inline void *map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) {
        printf("# mmap of %zu bytes failed: %s\n", bytes, strerror(errno));
        exit(2);
    }
    return p;
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A block's pattern (bench_pat) written, and checked: 0 if intact, else 1 + the first byte
 * that changed. */
static inline void pat_fill(uint8_t *p, size_t n, uint32_t tag)
{
    for (size_t i = 0; i < n; i++)
        p[i] = bench_pat(tag, i);
}

static inline size_t pat_bad(const uint8_t *p, size_t n, uint32_t tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != bench_pat(tag, i))
            return i + 1;
    return 0;
}

#endif /* BENCH_HOST_UTIL_H */
