/* test_kheap_instances.c -- the kernel's two heaps: the DMA heap kmain made over its region
 * below 16 MiB, and the default heap. Every DMA block lies below 16 MiB, each heap reports the
 * other's pointers (KHEAP_E_BAD_PTR) and changes nothing, and calls with a bad heap fail; a
 * heap grows from and gives pages back to a toy page allocator. */
#include "kernel.h"
#include "ktest.h"
#include "mm/kheap.h"
#include "asm/spinlock.h"
#include "heap_sum.h"

static struct kspinlock pool_lock = KSPINLOCK_INIT;

static struct { int n, code; void *ptr; } rec;

static void record(int code, void *ptr, void *caller)
{
    (void)caller;
    rec.n++;
    rec.code = code;
    rec.ptr = ptr;
}

#define EXPECT_BAD_PTR(before, p)                                                          \
    do {                                                                                   \
        KEXPECT_EQ(rec.n, (before) + 1);                                                   \
        KEXPECT_EQ(rec.code, KHEAP_E_BAD_PTR);                                             \
        KEXPECT_EQ(rec.ptr, p);                                                            \
    } while (0)

KTEST(dma_heap_blocks_below_16mib)
{
    kheap_t *h = kernel_dma_heap;
    static void *p[1024];
    uint64_t rng = 12345;
    int n = 0;

    KEXPECT_NOT_NULL(h);
    if (!h)
        return;
    KEXPECT(virt_to_phys(__dma_heap_end) <= DMA_LIMIT);
    /* random sizes, some aligned, until the heap is exhausted */
    while (n < 1024) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = 16 + (rng >> 33) % 4096;
        char *q = (rng & 0x100)
                      ? kheap_alloc_aligned(h, (size_t)64 << ((rng >> 20) % 6), size)
                      : kheap_alloc(h, size);
        if (!q)
            break;
        KEXPECT(virt_to_phys(q) + size <= DMA_LIMIT);
        KEXPECT(q >= __dma_heap_start && q + size <= __dma_heap_end);
        for (size_t i = 0; i < size; i += 64)
            q[i] = (char)n;
        p[n++] = q;
    }
    KEXPECT(n > 100 && n < 1024);                /* it ran out: the region is all there is */
    KEXPECT_EQ(kheap_verify(h), 0);
    for (int i = 0; i < n; i++)
        kheap_free(h, p[i]);
    struct kheap_stats s;
    kheap_stats(h, &s);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.errors, 0);
    /* all free: after the flush (the slab tier's spare slabs and this CPU's stacks back) one
     * free block but the heap's own per-CPU slots (kmain gave the DMA heap a cpu hook too) and
     * the alignment gap before them */
    kheap_flush_in(h);
    kheap_stats(h, &s);
    struct heap_sum w = heap_sum_of(h);
    KEXPECT_EQ(s.slab_bytes, 0);
    KEXPECT_EQ(s.cached_bytes, 0);
    KEXPECT_EQ(w.owns, 1);
    KEXPECT_EQ(w.used + w.slabs + w.unplaced, 0);
    KEXPECT_EQ(w.free + w.own, s.total_bytes);
    KEXPECT_EQ(w.largest, s.largest_free);
    KEXPECT(w.free - w.largest <= KHEAP_MIN_BLOCK + 64);
    KEXPECT_EQ(kheap_verify(h), 0);
}

KTEST(heaps_reject_each_others_pointers)
{
    kheap_t *h = kernel_dma_heap;
    struct kheap_hooks saved, mine;
    KEXPECT_NOT_NULL(h);
    if (!h || kheap_get_hooks(h, &saved) != 0)
        return;
    mine = saved;
    mine.error = record;
    KEXPECT_EQ(kheap_set_hooks(h, &mine), 0);
    kheap_error_fn old = kheap_set_error_handler(record);
    rec.n = 0;

    char *p = kmalloc(100), *d = kheap_alloc(h, 100);
    KEXPECT(virt_to_phys(d) < DMA_LIMIT);
    struct kheap_stats s0, d0, s1, d1;
    kheap_get_stats(&s0);
    kheap_stats(h, &d0);
    /* the default heap's block given to the DMA heap, and the other way round */
    kheap_free(h, p);
    EXPECT_BAD_PTR(0, p);
    KEXPECT_EQ(kheap_usable(h, p), 0);
    EXPECT_BAD_PTR(1, p);
    KEXPECT_NULL(kheap_realloc(h, p, 200));
    EXPECT_BAD_PTR(2, p);
    kfree(d);
    EXPECT_BAD_PTR(3, d);
    KEXPECT_EQ(ksize(d), 0);
    EXPECT_BAD_PTR(4, d);
    KEXPECT_NULL(krealloc(d, 200));
    EXPECT_BAD_PTR(5, d);
    /* nothing changed in either heap: both blocks still live where they were */
    kheap_get_stats(&s1);
    kheap_stats(h, &d1);
    KEXPECT_EQ(s1.used_bytes, s0.used_bytes);
    KEXPECT_EQ(s1.allocs, s0.allocs);
    KEXPECT_EQ(s1.frees, s0.frees);
    KEXPECT_EQ(d1.used_bytes, d0.used_bytes);
    KEXPECT_EQ(d1.allocs, d0.allocs);
    KEXPECT_EQ(d1.frees, d0.frees);
    KEXPECT_EQ(s1.errors + d1.errors, s0.errors + d0.errors + 6);
    KEXPECT(ksize(p) >= 100 && kheap_usable(h, d) >= 100);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(kheap_verify(h), 0);
    kfree(p);
    kheap_free(h, d);
    KEXPECT_EQ(rec.n, 6);

    kheap_set_error_handler(old);
    KEXPECT_EQ(kheap_set_hooks(h, &saved), 0);
}

KTEST(instance_calls_reject_bad_heaps)
{
    static uint64_t not_a_heap[64];
    kheap_t *fake = (kheap_t *)not_a_heap;
    struct kheap_stats s = { .total_bytes = 1 };
    struct kheap_hooks hooks = { 0 };

    KEXPECT_NULL(kheap_create(NULL, 1 << 20));
    KEXPECT_NULL(kheap_alloc(NULL, 16));
    KEXPECT_NULL(kheap_alloc(fake, 16));
    KEXPECT_NULL(kheap_calloc(fake, 2, 16));
    KEXPECT_NULL(kheap_alloc_aligned(fake, 64, 16));
    KEXPECT_NULL(kheap_realloc(fake, NULL, 16));
    kheap_free(fake, not_a_heap + 8);
    KEXPECT_EQ(kheap_usable(fake, not_a_heap + 8), 0);
    KEXPECT_EQ(kheap_verify(fake), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_extend(fake, __dma_heap_start, 4096), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_set_hooks(fake, &hooks), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_get_hooks(NULL, &hooks), KHEAP_E_INVAL);
    kheap_stats(fake, &s);
    KEXPECT_EQ(s.total_bytes, 0);
    for (unsigned i = 0; i < 64; i++)
        KEXPECT_EQ(not_a_heap[i], 0);            /* never written */
    KEXPECT(kheap_default() != NULL && kheap_default() != kernel_dma_heap);
}

/* The trim hook with a toy page allocator over a pool (4 MiB taken from the default heap):
 * pages handed out upwards by the grow hook, taken back at the top by the trim hook, which
 * fills them with a pattern; while they are out the heap must not write them. */
#define POOL_BYTES   (4u << 20)
#define POOL_FIRST   (KHEAP_CTL_SIZE + 64 * 1024)
#define OUT_PATTERN  0xDB
static uint8_t *pool, *pool_top;
static unsigned pool_trims;

static size_t pool_grow(size_t need, void **start)
{
    size_t n = (need + 65535) & ~(size_t)65535;
    if (pool_top + n > pool + POOL_BYTES)
        return 0;
    *start = pool_top;
    pool_top += n;
    return n;
}

static int pool_trim(void *start, size_t size)
{
    if ((uint8_t *)start + size != pool_top || (uintptr_t)start % KHEAP_PAGE_SIZE)
        return 0;
    __builtin_memset(start, OUT_PATTERN, size);
    pool_top = start;
    pool_trims++;
    return 1;
}

static int pool_out_intact(void)
{
    for (uint8_t *q = pool_top; q < pool + POOL_BYTES; q++)
        if (*q != OUT_PATTERN)
            return 0;
    return 1;
}

KTEST(kheap_trim_gives_pages_to_a_page_allocator)
{
    static void *p[48];
    pool = kmalloc_aligned(KHEAP_PAGE_SIZE, POOL_BYTES);
    KEXPECT_NOT_NULL(pool);
    if (!pool)
        return;
    __builtin_memset(pool + POOL_FIRST, OUT_PATTERN, POOL_BYTES - POOL_FIRST);
    pool_top = pool + POOL_FIRST;
    kheap_t *h = kheap_create(pool, POOL_FIRST);
    struct kheap_hooks hooks = { .error = record, .lock = kspin_lock_irqsave,
                                 .unlock = kspin_unlock_irqrestore, .lock_ctx = &pool_lock,
                                 .grow = pool_grow, .trim = pool_trim };
    KEXPECT_EQ(kheap_set_hooks(h, &hooks), 0);
    rec.n = 0;
    for (int i = 0; i < 48; i++) {
        p[i] = kheap_alloc(h, 60 * 1024);
        KEXPECT_NOT_NULL(p[i]);
    }
    struct kheap_stats s;
    kheap_stats(h, &s);
    KEXPECT(s.total_bytes > 2u << 20);
    for (int i = 47; i >= 0; i--) {
        kheap_free(h, p[i]);
        KEXPECT_MSG(pool_out_intact(), "given-back pages written after free %d", i);
    }
    kheap_stats(h, &s);
    KEXPECT(pool_trims > 0);
    KEXPECT(s.trimmed_bytes >= 2u << 20);
    KEXPECT(pool_top <= pool + POOL_FIRST + 64 * 1024);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT(pool_out_intact());
    KEXPECT_EQ(rec.n, 0);
    ktest_note("%u trims, %lu KiB given back", pool_trims, (unsigned long)(s.trimmed_bytes >> 10));
    kfree(pool);
}
