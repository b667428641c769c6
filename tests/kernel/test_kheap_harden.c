/* test_kheap_harden.c -- kheap's diagnostics inside the booted kernel, on the heap kmain set up
 * (static region + RAM from the memory map): kheap_walk (blocks and slab objects) agrees with
 * the stats, kheap_inspect, the leak report, kheap_set_secret over the whole heap, and fault
 * injection. Each test frees
 * what it allocated and leaves the heap as it found it (with a new secret). */
#include "ktest.h"
#include "mm/kheap.h"
#include "mm/kheap_diag.h"
#include "heap_sum.h"

struct walk_sum {
    size_t   blocks, used, free, largest;
    unsigned regions;
};

static int walk_sum(const struct kheap_block_info *b, void *ctx)
{
    struct walk_sum *w = ctx;
    w->blocks++;
    if (b->used)
        w->used += b->size;
    else
        w->free += b->size;
    if (!b->used && b->size > w->largest)
        w->largest = b->size;
    w->regions = b->region + 1;
    return 0;
}

KTEST(kheap_walk_matches_stats)
{
    void *p[16];
    for (int i = 0; i < 16; i++)
        p[i] = kmalloc(100 * (size_t)(i + 1));     /* 100..500: slab objects, then blocks */
    for (int i = 0; i < 16; i += 3)
        kfree(p[i]);
    struct walk_sum w = { 0, 0, 0, 0, 0 };
    struct kheap_stats s;
    kheap_get_stats(&s);                            /* (the front cache merged first) */
    KEXPECT_EQ(kheap_walk(walk_sum, &w), 0);
    struct heap_sum h = heap_sum_of(kheap_default());
    kheap_get_stats(&s);
    /* the walk's entries are blocks and slab objects: used ones are the stats' used bytes
     * (a live object counts its class size); the free ones, the slabs' other bytes (their
     * headers and tails) and the block of the per-CPU slots are the free bytes */
    KEXPECT_EQ(h.rc, 0);
    KEXPECT_EQ(h.unplaced, 0);
    KEXPECT_EQ(w.used, s.used_bytes);
    KEXPECT_EQ(h.used + h.live_bytes, s.used_bytes);
    KEXPECT_EQ(w.blocks, h.blocks + h.objects);
    KEXPECT_EQ(w.free + (h.slab_bytes - h.live_bytes - h.object_free_bytes) + h.own, s.free_bytes);
    KEXPECT_EQ(h.slab_bytes, s.slab_bytes);
    KEXPECT_EQ(h.object_free_bytes, s.slab_free_bytes + s.cached_bytes);
    KEXPECT(h.slabs >= 4);                          /* 100..400 (the debug build's 500: a block) */
    KEXPECT_EQ(h.owns, 1);
    KEXPECT_EQ(h.largest, s.largest_free);          /* only a block is a free block */
    KEXPECT_EQ(w.largest, s.largest_free);
    KEXPECT_EQ(w.regions, s.regions);
    ktest_note("%zu entries in %u regions (%zu blocks, %zu objects in %zu slabs), fragmentation "
               "%u ppm", w.blocks, w.regions, h.blocks, h.objects, h.slabs, s.fragmentation_ppm);
    /* inspect: a slab object (its class's size, no header), a block, interior pointers */
    struct kheap_block_info b;
    KEXPECT_EQ(kheap_inspect(p[1], &b), 1);
    KEXPECT_EQ(b.used, 1);
    KEXPECT_EQ(b.size, slab_class_of(200));
    KEXPECT(b.usable == ksize(p[1]) && b.usable >= 200);
    KEXPECT_EQ(kheap_inspect((char *)p[1] + 16, &b), 0);
    KEXPECT_EQ(kheap_inspect(p[10], &b), 1);
    KEXPECT_EQ(b.used, 1);
    KEXPECT(b.usable == ksize(p[10]) && b.size >= 1100 + KHEAP_HEADER_SIZE);
    KEXPECT_EQ(kheap_inspect((char *)p[10] + 16, &b), 0);
    for (int i = 0; i < 16; i++)
        if (i % 3)
            kfree(p[i]);
    KEXPECT_EQ(kheap_check(), 0);
}

static int leak_groups;
static size_t leak_blocks;
static void leak_count(void *site, size_t blocks, size_t bytes, void *ctx)
{
    (void)site, (void)bytes, (void)ctx;
    leak_groups++;
    leak_blocks += blocks;
}

KTEST(kheap_leak_report_counts_live_blocks)
{
    leak_groups = 0;
    leak_blocks = 0;
    int before = kheap_leak_report(leak_count, NULL);
    size_t base = leak_blocks;
    KEXPECT(before >= 0);
    void *a = kmalloc(10), *b = kmalloc(20), *c = kcalloc(3, 10);
    leak_blocks = 0;
    KEXPECT(kheap_leak_report(leak_count, NULL) >= 1);
    KEXPECT_EQ(leak_blocks, base + 3);
    kfree(a);
    kfree(b);
    kfree(c);
}

KTEST(kheap_set_secret_restamps_heap)
{
    void *p[8];
    for (int i = 0; i < 8; i++)
        p[i] = kmalloc(64 << i);
    kfree(p[3]);
    KEXPECT_EQ(kheap_set_secret(0x5EC2E7ull), 0);
    KEXPECT_EQ(kheap_check(), 0);
    for (int i = 0; i < 8; i++)
        if (i != 3)
            kfree(p[i]);
    KEXPECT_EQ(kheap_check(), 0);
}

KTEST(kheap_fault_injection)
{
    struct kheap_stats s0, s1;
    kheap_get_stats(&s0);
    kheap_fail_after(2);
    void *a = kmalloc(16), *b = kmalloc(16), *c = kmalloc(16);
    KEXPECT(a && b && !c);
    KEXPECT_NULL(krealloc(a, 4096));
    kheap_fail_after(-1);
    kheap_fail_rate(1000000, 1);
    KEXPECT_NULL(kcalloc(1, 1));
    kheap_fail_rate(0, 0);
    void *d = kmalloc(16);
    KEXPECT_NOT_NULL(d);
    kheap_get_stats(&s1);
    KEXPECT_EQ(s1.failed_allocs, s0.failed_allocs + 3);
    kfree(a);
    kfree(b);
    kfree(d);
    KEXPECT_EQ(kheap_check(), 0);
}
