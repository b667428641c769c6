/*
 * adapter_firstfit.c -- the first-fit baseline (firstfit.c) for the bench runner, over the
 * runner's fixed arena.
 */
#include "bench.h"
#include "firstfit.h"

static void *ff_arena;
static size_t ff_arena_size;

static int firstfit_init(void *arena, size_t size)
{
    ff_arena = arena;
    ff_arena_size = size;
    return ff_init(arena, size);
}

static void firstfit_reset(void) { ff_init(ff_arena, ff_arena_size); }
static const char *firstfit_version(void) { return "baseline"; }

const struct bench_alloc BENCH_ALLOC_SYMBOL = {
    .name = "firstfit", .takes_arena = 1, .init = firstfit_init, .malloc = ff_malloc,
    .free = ff_free, .realloc = ff_realloc, .aligned_alloc = ff_aligned_alloc,
    .reset = firstfit_reset, .check = ff_check,
    .version = firstfit_version,
};
