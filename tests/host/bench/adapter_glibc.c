/*
 * adapter_glibc.c -- the system allocator (glibc's malloc) for the bench runner. It takes no
 * arena: it gets its memory from the OS as usual, with its default tunables.
 */
#include <gnu/libc-version.h>
#include <stdlib.h>
#include "bench.h"

static int glibc_init(void *arena, size_t size) { (void)arena; (void)size; return 0; }
static void *glibc_aligned(size_t align, size_t n) { return aligned_alloc(align, n); }
static void glibc_reset(void) {}

const struct bench_alloc BENCH_ALLOC_SYMBOL = {
    .name = "glibc", .takes_arena = 0, .init = glibc_init, .malloc = malloc, .free = free,
    .realloc = realloc, .aligned_alloc = glibc_aligned, .reset = glibc_reset,
    .version = gnu_get_libc_version,
};
