/*
 * adapter_mimalloc.c -- mimalloc for the bench runner, through its mi_* API. Linking
 * -lmimalloc also replaces malloc process-wide, hence a runner binary of its own.
 */
#include <stdint.h>
#include <mimalloc.h>
#include "bench.h"

/* Largest "small" size of mimalloc 2.0.x (MI_SMALL_SIZE_MAX, 128 words). */
#define MIM_SMALL_MAX 1024u

static int mim_init(void *arena, size_t size) { (void)arena; (void)size; return 0; }

/* mimalloc 2.0.9 (Debian 12) sometimes returns a misaligned block from mi_malloc_aligned when
 * the size is <= 1 KiB and a multiple of the alignment (upstream issue #700, fixed in 2.0.10 /
 * 2.1). The bench's check mode caught it. Work-around: on a misaligned result, free it and ask
 * again with a size above the small-size fast path (costs memory, only on that rare path). */
static void *mim_aligned(size_t align, size_t n)
{
    void *p = mi_malloc_aligned(n, align);
    if (p && ((uintptr_t)p & (align - 1))) {
        mi_free(p);
        p = mi_malloc_aligned(n > MIM_SMALL_MAX ? n : MIM_SMALL_MAX + 1, align);
    }
    return p;
}

static void mim_reset(void) {}

static const char *mim_version(void)
{
    static char v[16];
    int n = mi_version();           /* e.g. 209 = 2.0.9 */
    v[0] = (char)('0' + n / 100 % 10); v[1] = '.';
    v[2] = (char)('0' + n / 10 % 10);  v[3] = '.';
    v[4] = (char)('0' + n % 10);       v[5] = 0;
    return v;
}

const struct bench_alloc BENCH_ALLOC_SYMBOL = {
    .name = "mimalloc", .takes_arena = 0, .init = mim_init, .malloc = mi_malloc, .free = mi_free,
    .realloc = mi_realloc, .aligned_alloc = mim_aligned, .reset = mim_reset,
    .version = mim_version,
};
