/*
 * adapter_kheap.c -- kheap (build/host/libkheap.a) for the bench runner, over the runner's
 * fixed arena. Misuse reports are counted: a correct workload makes none (the runner checks).
 */
#include "bench.h"
#include "mm/kheap.h"

static void *kh_arena;
static size_t kh_arena_size;

static int kheap_adapter_init(void *arena, size_t size)
{
    kh_arena = arena;
    kh_arena_size = size;
    return kheap_init(arena, size);
}

static void kheap_adapter_reset(void) { kheap_init(kh_arena, kh_arena_size); }

/* The heap walk, plus: no misuse was reported since the last init. */
static int kheap_adapter_check(void)
{
    struct kheap_stats st;
    int rc = kheap_check();
    if (rc)
        return rc;
    kheap_get_stats(&st);
    return st.errors ? -1 : 0;
}

static const char *kheap_adapter_version(void) { return "host-lib"; }

const struct bench_alloc BENCH_ALLOC_SYMBOL = {
    .name = "kheap", .takes_arena = 1, .init = kheap_adapter_init, .malloc = kmalloc,
    .free = kfree, .realloc = krealloc, .aligned_alloc = kmalloc_aligned,
    .reset = kheap_adapter_reset, .check = kheap_adapter_check,
    .version = kheap_adapter_version,
};
