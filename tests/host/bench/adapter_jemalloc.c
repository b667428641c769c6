/*
 * adapter_jemalloc.c -- jemalloc for the bench runner. Linked with -ljemalloc, which replaces
 * malloc for the whole process: that is why each allocator has its own runner binary.
 */
#include <jemalloc/jemalloc.h>
#include "bench.h"

static int je_init(void *arena, size_t size) { (void)arena; (void)size; return 0; }
static void *je_malloc(size_t n) { return malloc(n); }
static void je_free(void *p) { free(p); }
static void *je_realloc(void *p, size_t n) { return realloc(p, n); }
static void *je_aligned(size_t align, size_t n) { return aligned_alloc(align, n); }
static void je_reset(void) {}
static const char *je_version(void) { return JEMALLOC_VERSION; }

const struct bench_alloc BENCH_ALLOC_SYMBOL = {
    .name = "jemalloc", .takes_arena = 0, .init = je_init, .malloc = je_malloc, .free = je_free,
    .realloc = je_realloc, .aligned_alloc = je_aligned, .reset = je_reset,
    .version = je_version,
};
