/*
 * tests/host/test_kheap.c -- unit tests of the kheap contract (mm/kheap.h) on the host, linked
 * with build/host/libkheap.a: every function, every misuse case (code, pointer and the caller's
 * return address, also through my_*), regions, lock hooks and kheap_check's own detection of
 * corruption (white-box, through the layout in mm/kheap_layout.h). TAP version 13.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Built for the release library and, with -DKHEAP_DEBUG=1, for the debug one (test_kheap_debug):
 * the block layout differs by the debug trailer and canary, and ksize() is the requested size. */
#include "kheap_test.h"

#define ARENA_SIZE (1u << 20)
/* 16 KiB aligned: slab placement, and so block placement, independent of the load address */
static unsigned char arena[ARENA_SIZE] __attribute__((aligned(16384)));

static void reset(size_t size) { reset_at(arena, size); }

/* The whole heap is free (nothing held by users) and, once kheap_flush has given back the
 * front cache, the spare slabs and this CPU's stacks, in one block per region. */
static void expect_all_free(unsigned regions)
{
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.free_bytes, s.total_bytes);
    KEXPECT_EQ(s.regions, regions);
    KEXPECT_EQ(kheap_check(), 0);
    kheap_flush();
    s = stats();
    KEXPECT_EQ(s.free_bytes, s.total_bytes);
    KEXPECT_EQ(s.slab_bytes, 0);
    if (regions == 1)
        KEXPECT_EQ(s.largest_free, s.total_bytes);
    KEXPECT_EQ(kheap_check(), 0);
}

/* A heap in which every request is a TLSF block (kheap_test.h, NOSLAB_REGION): the default heap
 * over arena, `regions` regions of rsize <= NOSLAB_REGION bytes each (the first one after the
 * control block), NOSLAB_REGION bytes apart (the gaps are readable memory). */
static void reset_noslab(unsigned regions, size_t rsize)
{
    KEXPECT(rsize <= NOSLAB_REGION && KHEAP_CTL_SIZE + 2 * regions * NOSLAB_REGION <= ARENA_SIZE);
    reset(KHEAP_CTL_SIZE + rsize);
    for (unsigned i = 1; i < regions; i++)
        KEXPECT_EQ(kheap_add_region(arena + KHEAP_CTL_SIZE + 2 * i * NOSLAB_REGION, rsize), 0);
}

/* The list (fl, sl) a free block of s bytes is on (mm/kheap_layout.h, "Size classes"). */
static void bin_of(size_t s, unsigned *fl, unsigned *sl)
{
    if (s < KH_SMALL_LIMIT) {
        *fl = 0;
        *sl = (unsigned)(s / KHEAP_ALIGN);
        return;
    }
    unsigned msb = 63 - (unsigned)__builtin_clzll(s);
    *fl = msb - KHEAP_FL_SHIFT + 1;
    *sl = (unsigned)(s >> (msb - KHEAP_SL_LOG2)) & (KH_SL_COUNT - 1);
}

static size_t block_size(const void *p)   /* the size of the block behind p */
{
    struct kheap_block_info b;
    return kheap_inspect(p, &b) ? b.size : 0;
}

/* ---- init and regions ---------------------------------------------------------------------- */

KTEST(test_init_rejects)
{
    KEXPECT_EQ(kheap_init(NULL, 4096), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_init((void *)(UINTPTR_MAX - 100), 4096), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_init(arena, 0), KHEAP_E_TOO_SMALL);
    KEXPECT_EQ(kheap_init(arena, KHEAP_CREATE_MIN - 1), KHEAP_E_TOO_SMALL);
    KEXPECT_EQ(kheap_init(arena + 1, KHEAP_CREATE_MIN), KHEAP_E_TOO_SMALL); /* aligned: -63 */
    /* a failed init leaves an empty, uninitialised heap */
    KEXPECT(kmalloc(1) == NULL);
    KEXPECT_EQ(kheap_add_region(arena, 4096), KHEAP_E_NOT_INIT);
    KEXPECT_EQ(kheap_check(), KHEAP_E_NOT_INIT);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.regions, 0);
    KEXPECT_EQ(s.total_bytes, 0);
}

KTEST(test_init_minimum_region)
{
    reset(KHEAP_CREATE_MIN);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.total_bytes, KHEAP_MIN_BLOCK);
    void *p = kmalloc(KHEAP_MIN_BLOCK - META);   /* no room for a slab: a TLSF block */
    KEXPECT(p != NULL);
    KEXPECT_EQ(stats().slab_bytes, 0);
    KEXPECT(kmalloc(0) == NULL);
    KEXPECT_EQ(kheap_check(), 0);
    kfree(p);
    expect_all_free(1);
    KEXPECT_EQ(rec.n, 0);
}

KTEST(test_init_unaligned)
{
    /* start aligned up (64 for the control block), end aligned down (16): nothing outside
     * [arena+3, arena+3+size) is used */
    const size_t size = KHEAP_CTL_SIZE + 12000, end = (3 + size) & ~(size_t)15;
    memset(arena, 0x5A, end + 200);
    KEXPECT_EQ(kheap_init(arena + 3, size), 0);
    KEXPECT(kheap_default() == (kheap_t *)(arena + 64));
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.total_bytes, (end - 64) - INIT_OVERHEAD);
    void *p = kmalloc(s.total_bytes - META);
    KEXPECT(p != NULL);
    if (p)
        memset(p, 0, s.total_bytes - META);
    for (int i = 0; i < 16; i++)
        KEXPECT_EQ(arena[i], 0x5A);
    for (size_t i = end; i < end + 200; i++)
        KEXPECT_EQ(arena[i], 0x5A);
    kfree(p);
    KEXPECT_EQ(kheap_check(), 0);
}

KTEST(test_add_region)
{
    unsigned char *base = arena + 256 * 1024;
    reset_at(base, 64 * 1024);
    unsigned char *r2 = base + 128 * 1024, *r3 = base + 96 * 1024;
    KEXPECT_EQ(kheap_add_region(NULL, 4096), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_add_region((void *)(UINTPTR_MAX - 64), 128), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_add_region(r2, KHEAP_REGION_MIN - 1), KHEAP_E_TOO_SMALL);
    KEXPECT_EQ(kheap_add_region(base, 4096), KHEAP_E_OVERLAP);    /* the control block */
    KEXPECT_EQ(kheap_add_region(base - 64, 128), KHEAP_E_OVERLAP);     /* its start */
    KEXPECT_EQ(kheap_add_region(base + 16 * 1024, 4096), KHEAP_E_OVERLAP); /* inside */
    KEXPECT_EQ(kheap_add_region(base + 60 * 1024, 8192), KHEAP_E_OVERLAP); /* tail */
    KEXPECT_EQ(kheap_add_region(base - 4096 + 16, 8192), KHEAP_E_OVERLAP); /* head */
    KEXPECT_EQ(kheap_add_region(base, 128 * 1024), KHEAP_E_OVERLAP);     /* contains */
    KEXPECT_EQ(kheap_add_region(r2, 64 * 1024), 0);                       /* above, gap */
    KEXPECT_EQ(kheap_add_region(r2 + 32 * 1024, 4096), KHEAP_E_OVERLAP);
    KEXPECT_EQ(kheap_add_region(base + 64 * 1024, 32 * 1024), 0);        /* touching 1st */
    KEXPECT_EQ(kheap_add_region(r3, 32 * 1024), 0);                       /* touching both */
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.regions, 4);
    KEXPECT_EQ(s.total_bytes, (64 + 64 + 32 + 32) * 1024 - 4 * (KH_RGN_SIZE + 8) - KHEAP_CTL_SIZE);
    KEXPECT_EQ(kheap_check(), 0);
    /* fill everything with blocks of a size that does not divide the regions, free all */
    void *ptrs[2048];
    int n = 0;
    while (n < 2048 && (ptrs[n] = kmalloc(1000)) != NULL)
        memset(ptrs[n++], 0xC3, 1000);
    KEXPECT(n > 150);
    KEXPECT_EQ(kheap_check(), 0);
    for (int i = 0; i < n; i += 2)
        kfree(ptrs[i]);
    KEXPECT_EQ(kheap_check(), 0);
    for (int i = 1; i < n; i += 2)
        kfree(ptrs[i]);
    expect_all_free(4);
    /* every region is one free block again: the largest is the biggest region's */
    s = stats();
    KEXPECT_EQ(s.largest_free, 64 * 1024 - KH_RGN_SIZE - 8);
    /* a block as big as a whole region fits, one larger than any does not */
    void *big = kmalloc(64 * 1024 - KH_RGN_SIZE - 8 - META);
    KEXPECT(big != NULL);
    KEXPECT(kmalloc(64 * 1024) == NULL);
    kfree(big);
    KEXPECT_EQ(rec.n, 0);
    KEXPECT_EQ(kheap_check(), 0);
}

KTEST(test_reinit_forgets)
{
    reset(64 * 1024);
    KEXPECT_EQ(kheap_add_region(arena + 128 * 1024, 64 * 1024), 0);
    void *p = kmalloc(100);
    KEXPECT_EQ(kheap_init(arena + 256 * 1024, 64 * 1024), 0);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.regions, 1);
    KEXPECT_EQ(s.allocs, 0);
    int before = rec.n;
    t_kfree(p);                                /* the old heap is forgotten: outside now */
    EXPECT_REPORT(before, KHEAP_E_BAD_PTR, p, t_kfree);
    KEXPECT(kheap_set_error_handler(NULL) == record);   /* the handler survived the init */
    kheap_set_error_handler(record);
    expect_all_free(1);
}

/* ---- allocation ---------------------------------------------------------------------------- */

KTEST(test_kmalloc_basic)
{
    reset(ARENA_SIZE);
    void *z1 = kmalloc(0), *z2 = kmalloc(0);
    KEXPECT(z1 && z2 && z1 != z2);
    KEXPECT_EQ(ksize(z1), usable_of(0));
    kfree(z1);
    kfree(z2);
    void *ptrs[600];
    for (size_t n = 0; n < 600; n++) {
        ptrs[n] = kmalloc(n * 3);
        KEXPECT(ptrs[n] != NULL);
        KEXPECT_EQ((uintptr_t)ptrs[n] % KHEAP_ALIGN, 0);
        KEXPECT_EQ(ksize(ptrs[n]), usable_of(n * 3));
        memset(ptrs[n], (int)n, ksize(ptrs[n]));       /* the whole usable size is ours */
    }
    for (size_t n = 0; n < 600; n++) {
        unsigned char *p = ptrs[n];
        size_t bad = 0;
        for (size_t i = 0; i < ksize(p); i++)
            bad += p[i] != (unsigned char)n;
        KEXPECT_EQ(bad, 0);
    }
    KEXPECT_EQ(kheap_check(), 0);
    for (size_t n = 0; n < 600; n += 3)
        kfree(ptrs[n]);
    for (size_t n = 1; n < 600; n += 3)
        kfree(ptrs[n]);
    for (size_t n = 2; n < 600; n += 3)
        kfree(ptrs[n]);
    expect_all_free(1);
    KEXPECT_EQ(rec.n, 0);
}

KTEST(test_stats)
{
    reset(256 * 1024);
    struct kheap_stats s0 = stats();
    KEXPECT_EQ(s0.total_bytes, 256 * 1024 - INIT_OVERHEAD);
    KEXPECT_EQ(s0.largest_free, s0.total_bytes);
    KEXPECT_EQ(s0.allocs + s0.frees + s0.failed_allocs + s0.errors + s0.peak_used, 0);
    KEXPECT_EQ(s0.slab_bytes + s0.slab_free_bytes + s0.cached_bytes, 0);
    /* TLSF blocks, one after another from the start of the heap: the rest is one block */
    const size_t na = TLSF_MIN + 100;
    void *a = kmalloc(na), *b = kmalloc(1000), *c = kcalloc(10, 100);
    struct kheap_stats s = stats();
    size_t used = block_of(na) + block_of(1000) + block_of(1000);
    KEXPECT_EQ(s.used_bytes, used);
    KEXPECT_EQ(s.free_bytes, s.total_bytes - used);
    KEXPECT_EQ(s.largest_free, s.total_bytes - used);
    KEXPECT_EQ(s.allocs, 3);
    KEXPECT_EQ(s.peak_used, used);
    KEXPECT(kmalloc(1u << 30) == NULL);
    /* slab objects: used_bytes counts their class size, peak_used the slab's whole block */
    void *x = kmalloc(100), *y = kmalloc(100);
    s = stats();
    KEXPECT_EQ(s.used_bytes, used + 2 * slab_size_of(100));
    KEXPECT_EQ(s.free_bytes, s.total_bytes - s.used_bytes);
    KEXPECT_EQ(s.slab_bytes, KH_SLAB_BLOCK);         /* one class: one slab */
    KEXPECT_EQ(s.peak_used, used + KH_SLAB_BLOCK);
    KEXPECT_EQ(s.allocs, 5);
    kfree(y);
    kfree(x);
    kfree(b);
    kfree(a);
    s = stats();
    KEXPECT_EQ(s.failed_allocs, 1);
    KEXPECT_EQ(s.frees, 4);
    KEXPECT_EQ(s.used_bytes, block_of(1000));
    KEXPECT_EQ(s.peak_used, used + KH_SLAB_BLOCK);
    kfree(c);
    kfree(c);                                  /* misuse: counted in errors */
    s = stats();
    KEXPECT_EQ(s.errors, 1);
    KEXPECT_EQ(s.frees, 5);
    expect_all_free(1);
}

/* The four merge cases of kfree, checked through the largest free block (blocks too large for
 * the front cache: they are merged at once). */
KTEST(test_coalesce)
{
    reset(64 * 1024);
    size_t total = stats().total_bytes;
    void *p[5];
    const size_t n = KHEAP_QUICK_MAX + 200, b = block_of(n);
    for (int i = 0; i < 5; i++)
        p[i] = kmalloc(n);                     /* rest is one free block */
    size_t rest = total - 5 * b;
    kfree(p[1]);                               /* [u][F][u][u][u][rest]: no merge */
    KEXPECT_EQ(stats().largest_free, rest);
    kfree(p[3]);                               /* no merge */
    KEXPECT_EQ(kheap_check(), 0);
    kfree(p[2]);                               /* [u][ F F F ][u]: both sides */
    KEXPECT_EQ(kheap_check(), 0);
    uint64_t merged = *(uint64_t *)((char *)p[1] - 8);  /* p[1]'s header covers all three */
    KEXPECT_EQ(merged & KH_SIZE_MASK, 3 * b);
    KEXPECT(merged & KH_F_FREE);
    kfree(p[4]);                               /* merges left (1..3) and right (rest) */
    KEXPECT_EQ(stats().largest_free, total - b);
    kfree(p[0]);                               /* merges right: everything */
    expect_all_free(1);
    KEXPECT_EQ(rec.n, 0);
}

KTEST(test_split_and_exact_fit)
{
    reset(64 * 1024);
    /* TLSF blocks; n - 16's block rounds up to the class of n's (both builds): good fit finds
     * the hole, and the hole holds two blocks of m */
    const size_t n = 1200, m = TLSF_MIN;
    void *a = kmalloc(n), *b = kmalloc(m), *c = kmalloc(n);
    KEXPECT(b == (char *)a + block_of(n));
    kfree(a);
    /* a block_of(n)-byte hole: a request leaving < 32 bytes takes it whole, else it is split */
    void *d = kmalloc(n - 16);
    KEXPECT(d == a);
    KEXPECT_EQ(block_size(d), block_of(n));     /* the 16-byte surplus stays in the block */
    kfree(d);
    void *e = kmalloc(m);
    KEXPECT(e == a);
    void *f = kmalloc(m);                      /* from the split remainder */
    KEXPECT(f == (char *)a + block_of(m));
    KEXPECT_EQ(kheap_check(), 0);
    kfree(e);
    kfree(f);
    kfree(b);
    kfree(c);
    expect_all_free(1);
}

KTEST(test_kcalloc)
{
    reset(64 * 1024);
    unsigned char *p = kmalloc(1000);
    memset(p, 0xAB, 1000);
    kfree(p);
    unsigned char *q = kcalloc(100, 10);
    KEXPECT(q == p);                         /* same memory, now zeroed */
    size_t nonzero = 0;
    for (int i = 0; i < 1000; i++)
        nonzero += q[i] != 0;
    KEXPECT_EQ(nonzero, 0);
    uint64_t failed = stats().failed_allocs;
    KEXPECT(kcalloc(SIZE_MAX / 2 + 2, 2) == NULL);     /* n * size overflows */
    KEXPECT(kcalloc(1ull << 32, 1ull << 32) == NULL);
    KEXPECT(kcalloc(SIZE_MAX, SIZE_MAX) == NULL);
    KEXPECT(kcalloc(1, SIZE_MAX) == NULL);             /* absurd */
    KEXPECT_EQ(stats().failed_allocs, failed + 4);
    void *z = kcalloc(0, 100);
    KEXPECT(z != NULL);
    kfree(z);
    z = my_calloc(3, 5);
    KEXPECT(z != NULL && ((char *)z)[14] == 0);
    my_free(z);
    kfree(q);
    expect_all_free(1);
}

KTEST(test_absurd_sizes)
{
    reset(64 * 1024);
    size_t total = stats().total_bytes;
    KEXPECT(kmalloc(SIZE_MAX) == NULL);
    KEXPECT(kmalloc(SIZE_MAX - 7) == NULL);
    KEXPECT(kmalloc(SIZE_MAX - 15) == NULL);
    KEXPECT(kmalloc(SIZE_MAX / 2) == NULL);
    KEXPECT(kmalloc((size_t)1 << 47) == NULL);
    KEXPECT(kmalloc(total) == NULL);                   /* a block needs 8 more */
    void *all = kmalloc(total - META);                   /* exactly everything */
    KEXPECT(all != NULL);
    KEXPECT(kmalloc(0) == NULL);                       /* full */
    KEXPECT(krealloc(all, SIZE_MAX) == NULL);
    KEXPECT(krealloc(all, total) == NULL);
    KEXPECT_EQ(ksize(all), usable_of(total - META));
    kfree(all);
    KEXPECT(kmalloc_aligned(16, SIZE_MAX) == NULL);
    KEXPECT(kmalloc_aligned(4096, SIZE_MAX - 4096) == NULL);
    KEXPECT(kmalloc_aligned((size_t)1 << 63, 1) == NULL);
    KEXPECT(kmalloc_aligned((size_t)1 << 40, 1) == NULL);   /* fits nowhere: not misuse */
    /* absurd sizes (8) and an absurd alignment (1) are reported; running out of memory not */
    KEXPECT_EQ(rec.n, 9);
    KEXPECT_EQ(stats().errors, 9);
    KEXPECT_EQ(stats().failed_allocs, 13);
    expect_all_free(1);
}

/* ---- krealloc ------------------------------------------------------------------------------ */

static int check_pattern(const unsigned char *p, size_t n, unsigned char seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 31))
            return 0;
    return 1;
}

static void fill_pattern(unsigned char *p, size_t n, unsigned char seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 31);
}

KTEST(test_krealloc)
{
    reset(256 * 1024);
    /* NULL: kmalloc; 0: kfree (a slab object, then a block) */
    unsigned char *a = krealloc(NULL, 100);
    KEXPECT(a != NULL);
    KEXPECT(krealloc(a, 0) == NULL);
    KEXPECT_EQ(stats().used_bytes, 0);
    a = krealloc(NULL, TLSF_MIN);
    KEXPECT(a != NULL);
    KEXPECT(krealloc(a, 0) == NULL);
    KEXPECT_EQ(stats().used_bytes, 0);
    kheap_flush();                             /* one free block again: a's right neighbour */
    /* shrink in place: same pointer, the tail goes back to the free lists (TLSF blocks: a,
     * and the guard right of it) */
    a = kmalloc(1000);
    unsigned char *guard = kmalloc(TLSF_MIN);
    KEXPECT(guard == a + block_of(1000));
    fill_pattern(a, 1000, 1);
    size_t used = stats().used_bytes;
    KEXPECT(krealloc(a, 500) == a);
    KEXPECT(check_pattern(a, 500, 1));
    KEXPECT_EQ(stats().used_bytes, used - (block_of(1000) - block_of(500)));
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT(krealloc(a, 490) == a);          /* tail < 32 bytes: nothing changes */
    KEXPECT_EQ(block_size(a), block_of(500));
    /* grow in place into the free tail left by the shrink */
    KEXPECT(krealloc(a, 900) == a);
    KEXPECT(check_pattern(a, 490, 1));       /* min(old, new) bytes are kept */
    KEXPECT_EQ(kheap_check(), 0);
    /* grow in place taking the whole free neighbour (surplus < 32 bytes) */
    KEXPECT(krealloc(a, 1000 - 16) == a);
    KEXPECT_EQ(block_size(a), block_of(1000));
    /* next block used: moves, keeps the data, frees the old block */
    fill_pattern(a, 1000 - 16, 7);
    uint64_t frees = stats().frees, allocs = stats().allocs;
    unsigned char *b = krealloc(a, 5000);
    KEXPECT(b != NULL && b != a);
    KEXPECT(check_pattern(b, 1000 - 16, 7));
    KEXPECT_EQ(stats().frees, frees + 1);
    KEXPECT_EQ(stats().allocs, allocs + 1);
    KEXPECT_EQ(kheap_check(), 0);
    /* failure: NULL, the old block untouched */
    used = stats().used_bytes;
    KEXPECT(krealloc(b, 1u << 30) == NULL);
    KEXPECT(check_pattern(b, 1000 - 16, 7));
    KEXPECT_EQ(ksize(b), usable_of(5000));
    KEXPECT_EQ(stats().used_bytes, used);
    /* the same through my_realloc, shrinking to a small size */
    b = my_realloc(b, 10);
    KEXPECT(check_pattern(b, 10, 7));
    kfree(b);
    kfree(guard);
    KEXPECT_EQ(rec.n, 0);
    expect_all_free(1);
}

/* ---- kmalloc_aligned ----------------------------------------------------------------------- */

KTEST(test_kmalloc_aligned)
{
    reset(ARENA_SIZE);
    void *spacer = kmalloc(TLSF_MIN);          /* make the first free payload misaligned */
    KEXPECT_EQ(((uintptr_t)spacer + block_of(TLSF_MIN)) % 32, 16);
    for (size_t align = 1; align <= 65536; align <<= 1) {
        void *ps[6];
        size_t ns[6] = { 0, 1, 24, 100, align, 3 * align + 5 };
        for (int i = 0; i < 6; i++) {
            ps[i] = kmalloc_aligned(align, ns[i]);
            KEXPECT(ps[i] != NULL);
            KEXPECT_EQ((uintptr_t)ps[i] % align, 0);
            KEXPECT_EQ((uintptr_t)ps[i] % KHEAP_ALIGN, 0);
            KEXPECT(ksize(ps[i]) >= ns[i]);
            memset(ps[i], 0x77, ns[i]);
        }
        KEXPECT_EQ(kheap_check(), 0);
        for (int i = 0; i < 6; i += 2)
            kfree(ps[i]);
        for (int i = 1; i < 6; i += 2)
            kfree(ps[i]);
        KEXPECT_EQ(kheap_check(), 0);
        if (ktest_failures())
            break;
    }
    /* bad alignments: reported (KHEAP_E_INVAL, no pointer, the caller) */
    uint64_t failed = stats().failed_allocs;
    size_t bad_align[] = { 0, 3, 48, SIZE_MAX, (size_t)1 << 63 };
    for (unsigned i = 0; i < sizeof bad_align / sizeof *bad_align; i++) {
        KEXPECT(t_kmalloc_aligned(bad_align[i], 16) == NULL);
        EXPECT_REPORT((int)i, KHEAP_E_INVAL, NULL, t_kmalloc_aligned);
    }
    KEXPECT(kmalloc_aligned(ARENA_SIZE, 16) == NULL);      /* no block that large */
    KEXPECT_EQ(stats().failed_allocs, failed + 6);
    memset(&rec, 0, sizeof rec);
    /* an aligned block in the middle of the heap grows and shrinks like any other */
    unsigned char *p = kmalloc_aligned(4096, 100);
    fill_pattern(p, 100, 3);
    KEXPECT(krealloc(p, 50) == p);
    p = krealloc(p, 20000);
    KEXPECT(p && check_pattern(p, 50, 3));
    kfree(p);
    kfree(spacer);
    KEXPECT_EQ(rec.n, 0);
    expect_all_free(1);
}

/* ---- misuse: reported with code, pointer and the real caller ------------------------------ */

KTEST(test_misuse_bad_ptr)
{
    reset(64 * 1024);
    unsigned char *p = kmalloc(TLSF_MIN), *o = kmalloc(100);   /* a TLSF block, a slab object */
    int stack_var, n = 0;
    void *outside[] = { &stack_var, arena + 128 * 1024, (void *)16, (void *)(UINTPTR_MAX & ~15ul),
                        arena + 64 * 1024 };     /* the region's end (its sentinel's payload) */
    for (unsigned i = 0; i < sizeof outside / sizeof *outside; i++) {
        t_kfree(outside[i]);
        EXPECT_REPORT(n, KHEAP_E_BAD_PTR, outside[i], t_kfree);
        n++;
    }
    for (int off = 1; off < 16; off++) {        /* misaligned: into a block, into an object */
        t_kfree(p + off);
        EXPECT_REPORT(n, KHEAP_E_BAD_PTR, p + off, t_kfree);
        n++;
        t_kfree(o + off);
        EXPECT_REPORT(n, KHEAP_E_BAD_PTR, o + off, t_kfree);
        n++;
    }
    t_my_free(&stack_var);                      /* the alias reports its own caller */
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, &stack_var, t_my_free);
    n++;
    KEXPECT(t_ksize(p + 8) == 0);
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, p + 8, t_ksize);
    n++;
    KEXPECT(t_krealloc(&stack_var, 10) == NULL);
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, &stack_var, t_krealloc);
    n++;
    KEXPECT(t_my_realloc(p + 4, 10) == NULL);
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, p + 4, t_my_realloc);
    n++;
    KEXPECT(t_krealloc(o + 8, 10) == NULL);
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, o + 8, t_krealloc);
    n++;
    KEXPECT_EQ(stats().errors, (uint64_t)n);
    KEXPECT_EQ(ksize(p), usable_of(TLSF_MIN));   /* p and o themselves are still fine */
    KEXPECT_EQ(ksize(o), usable_of(100));
    kfree(p);
    kfree(o);
    expect_all_free(1);
}

KTEST(test_misuse_interior_and_header)
{
    reset(64 * 1024);
    const size_t n200 = TLSF_MIN + 200;         /* TLSF blocks: headers at p - 8 */
    unsigned char *p = kmalloc(n200), *q = kmalloc(n200);
    /* interior pointers: the word before them is payload, here with reserved flag bits set */
    memset(p, 0x0C, 200);
    int n = 0;
    for (int off = 16; off < 200; off += 16) {
        t_kfree(p + off);
        EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, p + off, t_kfree);
        n++;
    }
    KEXPECT(t_krealloc(p + 32, 500) == NULL);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, p + 32, t_krealloc);
    n++;
    /* a pointer into the region descriptor; into the control block, in no region */
    t_kfree(arena + KHEAP_CTL_SIZE + 16);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, arena + KHEAP_CTL_SIZE + 16, t_kfree);
    n++;
    t_kfree(arena + 16);
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, arena + 16, t_kfree);
    n++;
    /* overwritten header: check bits flipped, then garbage; the block is left alone */
    uint64_t *hdr = (uint64_t *)(q - 8), saved = *hdr;
    *hdr ^= 1ull << 63;
    t_kfree(q);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, q, t_kfree);
    n++;
    KEXPECT(t_ksize(q) == 0);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, q, t_ksize);
    n++;
    *hdr = 0x0C0C0C0C0C0C0C0Cull;
    t_my_free(q);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, q, t_my_free);
    n++;
    *hdr = saved;                               /* repaired: the heap never changed */
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(ksize(q), usable_of(n200));
    kfree(p);
    kfree(q);
    KEXPECT_EQ(rec.n, n);
    expect_all_free(1);
}

KTEST(test_misuse_double_free)
{
    reset(64 * 1024);
    const size_t m = TLSF_MIN;                  /* TLSF blocks (slab objects: test_kheap_slab) */
    void *a = kmalloc(m), *b = kmalloc(m), *c = kmalloc(m), *d = kmalloc(m);
    int n = 0;
    kfree(b);
    kheap_flush();                              /* merged blocks here (cached: test_quick_*) */
    t_kfree(b);                                 /* plain double free */
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, b, t_kfree);
    n++;
    kfree(c);                                   /* c merges into b: c's header is stale */
    kheap_flush();
    t_my_free(c);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, c, t_my_free);
    n++;
    kfree(a);                                   /* b merges into a */
    kheap_flush();
    t_kfree(b);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, b, t_kfree);
    n++;
    KEXPECT(t_ksize(a) == 0);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, a, t_ksize);
    n++;
    KEXPECT(t_krealloc(c, 10) == NULL);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, c, t_krealloc);
    n++;
    KEXPECT(t_my_realloc(a, 0) == NULL);      /* krealloc(p, 0) frees: reported too */
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, a, t_my_realloc);
    n++;
    KEXPECT_EQ(kheap_check(), 0);
    kfree(d);
    t_kfree(d);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, d, t_kfree);
    n++;
    KEXPECT_EQ(stats().frees, 4);
    expect_all_free(1);
}

KTEST(test_misuse_gap_between_regions)
{
    const size_t end1 = KHEAP_CTL_SIZE + 16 * 1024, gap = 16 * 1024;  /* region 1's end */
    reset(end1);
    KEXPECT_EQ(kheap_add_region(arena + end1 + gap, 16 * 1024), 0);
    memset(arena + end1, 0x0C, gap);            /* the gap: readable, never a header */
    int n = 0;
    for (size_t off = end1; off < end1 + gap; off += 1024) {   /* in no region */
        t_kfree(arena + off + 16);
        EXPECT_REPORT(n, KHEAP_E_BAD_PTR, arena + off + 16, t_kfree);
        n++;
    }
    /* the first region's end sentinel is not a block */
    t_kfree(arena + end1);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, arena + end1, t_kfree);
    n++;
    expect_all_free(2);
}

KTEST(test_error_handler_api)
{
    reset(64 * 1024);
    KEXPECT(kheap_set_error_handler(NULL) == record);
    KEXPECT(kheap_set_error_handler(NULL) == NULL);     /* the default reports as NULL */
    kfree((void *)16);                                     /* default: counted, ignored */
    KEXPECT_EQ(stats().errors, 1);
    KEXPECT_EQ(rec.n, 0);
    KEXPECT(kheap_set_error_handler(record) == NULL);
    void *p = t_kmalloc(10);                               /* a clean call reports nothing */
    t_kfree((void *)32);
    EXPECT_REPORT(0, KHEAP_E_BAD_PTR, (void *)32, t_kfree);
    KEXPECT_EQ(stats().errors, 2);
    kfree(p);
    expect_all_free(1);
}

/* ---- corruption found by kmalloc/kfree and by kheap_check --------------------------------- */

KTEST(test_corrupt_neighbours)
{
    reset(64 * 1024);
    const size_t m = TLSF_MIN;                  /* TLSF blocks, side by side */
    unsigned char *a = kmalloc(m), *b = kmalloc(m), *c = kmalloc(m);
    KEXPECT(b == a + block_of(m) && c == b + block_of(m));
    int n = 0;
    /* an overflow from a into b's header: freeing a is refused, a is leaked (not freed) */
    uint64_t *bh = (uint64_t *)(b - 8), saved = *bh;
    *bh = 0x0C0C0C0C0C0C0C0Cull;
    t_kfree(a);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, a, t_kfree);
    n++;
    KEXPECT(t_krealloc(a, m + 500) == NULL);  /* growing in place reads b's header too */
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, a, t_krealloc);
    n++;
    KEXPECT_EQ(kheap_check(), KHEAP_E_CORRUPT);
    *bh = saved;
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(ksize(a), usable_of(m));
    /* a free block whose list link was overwritten (use after free): kfree of a neighbour
     * and kmalloc of its class are refused without touching the list */
    kfree(b);
    kheap_flush();                              /* b on the free lists, not in the cache */
    uint64_t *link = (uint64_t *)b, saved_link = *link;
    *link = (uint64_t)(uintptr_t)(arena + 40000 + 8);
    t_kfree(c);                                 /* would merge with b */
    EXPECT_REPORT(n, KHEAP_E_FREELIST, c, t_kfree);
    n++;
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    *link = saved_link;
    KEXPECT_EQ(kheap_check(), 0);
    /* a free block's footer that lies about its size: kfree of its right neighbour refuses */
    uint64_t *footer = (uint64_t *)(c - 16), saved_footer = *footer;
    *footer = 64;
    t_kfree(c);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, c, t_kfree);
    n++;
    KEXPECT_EQ(kheap_check(), KHEAP_E_CORRUPT);
    *footer = saved_footer;
    kfree(c);
    kfree(a);
    KEXPECT_EQ(rec.n, n);
    expect_all_free(1);
}

/* kmalloc finding the head of its list corrupt (a link overwritten after free): reported once
 * (the debug build names it a write after free), the list detached and its blocks left on no
 * list, and the allocation served from another list; the stats stay consistent, the heap goes
 * on working for every size, and the next kheap_check, finding the heap sound, re-adopts them. */
KTEST(test_corrupt_list_detached)
{
    reset(64 * 1024);
    const size_t m = TLSF_FIT;                  /* TLSF blocks, side by side; see kheap_test.h */
    unsigned char *a = kmalloc(m), *b = kmalloc(m), *c = kmalloc(m);
    KEXPECT(b == a + block_of(m) && c == b + block_of(m));
    fill_pattern(a, 100, 1);
    fill_pattern(c, 100, 3);
    kfree(b);
    kheap_flush();                              /* b heads (and is) the list of block_of(m) */
    *(uint64_t *)b = 0;                         /* its next link zeroed */
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    unsigned char *d = t_kmalloc(m);
    KEXPECT(d != NULL && d != b);
    EXPECT_REPORT(0, DEBUG_BUILD ? KHEAP_E_USE_AFTER_FREE : KHEAP_E_FREELIST, b, t_kmalloc);
    struct kheap_stats s;
    kheap_get_stats(&s);
    KEXPECT_EQ(s.used_bytes + s.free_bytes, s.total_bytes);
    for (int i = 0; i < 8; i++) {               /* the class works again: a new list */
        unsigned char *e = kmalloc(m);
        KEXPECT(e != NULL);
        kfree(e);
    }
    KEXPECT(check_pattern(a, 100, 1) && check_pattern(c, 100, 3));
    KEXPECT_EQ(rec.n, 1);
    kfree(d);
    /* until kheap_check, freeing b's neighbour would merge with a block on no list: refused,
     * reported, a kept */
    t_kfree(a);
    EXPECT_REPORT(1, KHEAP_E_FREELIST, a, t_kfree);
    KEXPECT_EQ(kheap_inspect(a, &(struct kheap_block_info){ 0 }), 1);
    /* kheap_check finds the heap sound and re-adopts b: the leak ends there */
    unsigned fl, sl;
    bin_of(block_of(m), &fl, &sl);
    KEXPECT(kheap_ctl.detached[fl] != 0);
    KEXPECT_EQ(kheap_check(), 0);
    for (unsigned fl = 0; fl < KH_FL_COUNT; fl++)
        KEXPECT_EQ(kheap_ctl.detached[fl], 0);
    kfree(a);
    kfree(c);
    KEXPECT_EQ(rec.n, 2);
    expect_all_free(1);
}

KTEST(test_check_detects)
{
    reset(64 * 1024);
    const size_t m = TLSF_MIN;                  /* TLSF blocks, side by side */
    void *a = kmalloc(m), *b = kmalloc(m), *c = kmalloc(m);
    unsigned fl, c0;                            /* b's list */
    bin_of(block_of(m), &fl, &c0);
    KEXPECT(c0 + 1 < KH_SL_COUNT);
    kfree(b);
    kheap_flush();                              /* b on the free lists, not in the cache */
    KEXPECT_EQ(kheap_check(), 0);
    /* counters */
    kheap_ctl.used += 16;
    KEXPECT_EQ(kheap_check(), KHEAP_E_STATS);
    kheap_ctl.used -= 16;
    /* bitmap bit without a list */
    kheap_ctl.sl_map[3] ^= 1u << 5;
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    kheap_ctl.sl_map[3] ^= 1u << 5;
    /* a free block missing from its list */
    uintptr_t head = kheap_ctl.heads[fl][c0];
    KEXPECT(head == (uintptr_t)b - 8);
    kheap_ctl.heads[fl][c0] = 0;
    kheap_ctl.sl_map[fl] &= ~(1u << (c0));
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    kheap_ctl.heads[fl][c0] = head;
    kheap_ctl.sl_map[fl] |= 1u << (c0);
    /* a free block on the wrong list */
    kheap_ctl.heads[fl][c0] = 0;
    kheap_ctl.heads[fl][c0 + 1] = head;
    kheap_ctl.sl_map[fl] ^= (1u << (c0)) | (1u << (c0 + 1));
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    kheap_ctl.heads[fl][c0 + 1] = 0;
    kheap_ctl.heads[fl][c0] = head;
    kheap_ctl.sl_map[fl] ^= (1u << (c0)) | (1u << (c0 + 1));
    /* used data overwriting a used header (check bits) */
    uint64_t *ah = (uint64_t *)((char *)a - 8), saved = *ah;
    *ah ^= 1ull << 50;
    KEXPECT_EQ(kheap_check(), KHEAP_E_CORRUPT);
    *ah = saved;
    /* a region descriptor */
    uintptr_t end = kheap_ctl.regions->end;
    kheap_ctl.regions->end = end - 16;
    KEXPECT(kheap_check() < 0);
    kheap_ctl.regions->end = end;
    KEXPECT_EQ(kheap_check(), 0);
    kfree(a);
    kfree(c);
    expect_all_free(1);
}

/* ---- lock hooks ---------------------------------------------------------------------------- */
static int acquires, releases, bad_ctx, max_depth;
static char lock_ctx_obj;

static void hook_acquire(void *ctx)
{
    acquires++;
    bad_ctx += ctx != &lock_ctx_obj;
    if (++lock_depth > max_depth)
        max_depth = lock_depth;
}

static void hook_release(void *ctx)
{
    releases++;
    bad_ctx += ctx != &lock_ctx_obj;
    lock_depth--;
}

KTEST(test_lock_hooks)
{
    reset(64 * 1024);
    acquires = releases = bad_ctx = max_depth = lock_depth = 0;
    kheap_set_lock(hook_acquire, hook_release, &lock_ctx_obj);
    struct kheap_stats s;
    void *p = kmalloc(10);
    p = krealloc(p, 10000);                     /* moves: internal malloc+free, one lock */
    void *q = kcalloc(2, 2), *r = kmalloc_aligned(256, 10);
    KEXPECT(ksize(p) > 0);
    kfree(p);
    kfree(q);
    my_free(r);
    kheap_get_stats(&s);
    KEXPECT_EQ(kheap_check(), 0);
    kheap_set_error_handler(record);
    KEXPECT_EQ(kheap_add_region(arena + 128 * 1024, 4096), 0);
    kfree((void *)16);                          /* the handler runs with the lock held */
    KEXPECT_EQ(rec.lock_depth, 1);
    KEXPECT_EQ(kheap_init(arena, 64 * 1024), 0);
    KEXPECT_EQ(acquires, 13);                 /* every call but the hook setters */
    KEXPECT_EQ(releases, 13);
    KEXPECT_EQ(max_depth, 1);
    KEXPECT_EQ(bad_ctx, 0);
    kheap_set_lock(NULL, NULL, NULL);
    kmalloc(1);
    KEXPECT_EQ(acquires, 13);
    KEXPECT_EQ(kheap_check(), 0);
}

KTEST(test_aliases)
{
    KEXPECT((void *)my_malloc == (void *)kmalloc);
    KEXPECT((void *)my_calloc == (void *)kcalloc);
    KEXPECT((void *)my_realloc == (void *)krealloc);
    KEXPECT((void *)my_free == (void *)kfree);
}

KTEST(test_strerror)
{
    for (int code = 1; code >= -11; code--)
        KEXPECT(kheap_strerror(code) != NULL);
    KEXPECT(strcmp(kheap_strerror(KHEAP_E_DOUBLE_FREE), "block already free") == 0);
}

/* ---- corner cases: caller, peak, front cache, overflow --------------------------------------- */

/* peak_used counts only final blocks: not kmalloc_aligned's over-allocation before its trim,
 * not the whole free neighbour an in-place krealloc absorbs before trimming. */
KTEST(test_peak_final_blocks)
{
    reset(256 * 1024);
    void *a = kmalloc_aligned(4096, 64);
    KEXPECT(a != NULL && (uintptr_t)a % 4096 == 0);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.peak_used, s.used_bytes);
    KEXPECT_EQ(s.used_bytes, block_of(64));
    kfree(a);
    reset(256 * 1024);
    void *p = kmalloc(TLSF_MIN);
    void *q = krealloc(p, TLSF_MIN + 1000);     /* in place: the rest of the heap is free */
    KEXPECT(q == p);
    s = stats();
    KEXPECT_EQ(s.used_bytes, block_of(TLSF_MIN + 1000));
    KEXPECT_EQ(s.peak_used, s.used_bytes);
    kfree(q);
    KEXPECT_EQ(kheap_check(), 0);
}

/* An overflow of A into its right neighbour's header is caught by ksize(A) and by a krealloc(A)
 * that keeps or shrinks A (as by kfree(A) and a growing krealloc(A)). */
KTEST(test_overflow_into_next_header)
{
    reset(64 * 1024);
    const size_t m = TLSF_MIN + 200;            /* TLSF blocks, side by side */
    unsigned char *a = kmalloc(m), *b = kmalloc(m);
    KEXPECT(b == a + block_of(m));
    int n = 0;
    uint64_t *bh = (uint64_t *)(b - 8), saved = *bh;
    *bh ^= 1ull << 40;                          /* a size bit: the check bits no longer fit */
    KEXPECT(t_ksize(a) == 0);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, a, t_ksize);
    n++;
    KEXPECT(t_krealloc(a, m) == NULL);        /* keeps the block */
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, a, t_krealloc);
    n++;
    KEXPECT(t_krealloc(a, 16) == NULL);       /* shrinks it */
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, a, t_krealloc);
    n++;
    *bh = saved;                                /* repaired: a was left as it was */
    KEXPECT_EQ(ksize(a), usable_of(m));
    KEXPECT_EQ(kheap_check(), 0);
    kfree(a);
    kfree(b);
    KEXPECT_EQ(rec.n, n);
    expect_all_free(1);
}

/* A region ending exactly at 2^64 does not wrap, but its end cannot be represented: rejected
 * (KHEAP_E_INVAL) before anything is read or written there. */
KTEST(test_region_at_top_of_memory)
{
    reset(64 * 1024);
    KEXPECT_EQ(kheap_add_region((void *)(uintptr_t)-4096, 4096), KHEAP_E_INVAL);
    KEXPECT_EQ(stats().regions, 1);
    expect_all_free(1);
}

/* ---- front cache (quick lists) -------------------------------------------------------------
 * The front cache holds TLSF blocks of at most KHEAP_QUICK_MAX bytes. Where the slab tier has
 * room, kmalloc never makes such a block (small requests are slab objects); these tests run in
 * a heap of NOSLAB_REGION regions (reset_noslab), where every small request falls back to a TLSF
 * block, so that the front cache sees kmalloc's small blocks as it did before the slab tier. */

#define QUICK (KHEAP_QUICK_DEPTH > 0)
/* Does a list hold k blocks (tests that need k cached blocks of one size)? */
#define QUICK_HOLDS(k) (KHEAP_QUICK_DEPTH >= (k))
/* Skip the running test unless a list holds k blocks; returns whether it does. */
#define QUICK_NEEDS(k)                                                                      \
    (QUICK_HOLDS(k) ? 1 : (ktest_skip("needs a front cache of depth >= %d, this build has "   \
                                      "KHEAP_QUICK_DEPTH=%d", (k), KHEAP_QUICK_DEPTH), 0))

/* Is the block behind p in the front cache (white-box: its header's QUICK flag)? */
static int cached(const void *p)
{
    return (*(const uint64_t *)((const char *)p - KHEAP_HEADER_SIZE) & KH_F_QUICK) != 0;
}

/* The front-cache list of block size s (white-box). */
static struct kh_quick *quick_list(size_t s)
{
    return &kheap_ctl.quick[(s - KHEAP_MIN_BLOCK) / KHEAP_ALIGN];
}

/* Does the list of block size s hold exactly p[k-1], ..., p[0] (head first), each link decoding
 * (link = next H ^ quick_key ^ H, mm/kheap_layout.h) to the next, the last one to 0? White-box:
 * the order a kmalloc would take them in, read without taking them. */
static int quick_list_is(size_t s, void *const *p, int k)
{
    struct kh_quick *q = quick_list(s);
    uintptr_t h = q->head;
    if (q->count != (uint64_t)k)
        return 0;
    for (int i = k - 1; i >= 0; i--) {
        if (h != (uintptr_t)p[i] - KHEAP_HEADER_SIZE)
            return 0;
        h = *(const uint64_t *)(h + KH_QUICK_LINK) ^ kheap_ctl.link_key ^ h;
    }
    return h == 0;
}

/* Freed small blocks come back last in, first out, by exact block size; a block of
 * KHEAP_QUICK_MAX bytes is cached, a larger one merged at once. */
KTEST(test_quick_lifo)
{
    reset_noslab(1, NOSLAB_REGION);
    const size_t n = 100, s = block_of(n);
    unsigned char *a = kmalloc(n), *b = kmalloc(n), *g = kmalloc(16);
    KEXPECT(b == a + s);                              /* TLSF blocks, side by side */
    kfree(a);
    kfree(b);
    KEXPECT_EQ(quick_list(s)->count, QUICK_HOLDS(2) ? 2 : QUICK);
    KEXPECT_EQ(kheap_check(), 0);
    if (QUICK_HOLDS(2)) {                             /* (else merged: stale headers) */
        KEXPECT(cached(a) && cached(b));
        KEXPECT(quick_list(s)->head == (uintptr_t)b - KHEAP_HEADER_SIZE);
        /* kmalloc of a small size the slab tier has no room for takes the block of its list
         * (mm/kheap.asm, heap_malloc_nf): another size, another list */
        void *other = kmalloc(n + 16);
        KEXPECT(other != a && other != b);
        KEXPECT_EQ(quick_list(s)->count, 2);
        kfree(other);
        KEXPECT(kmalloc(n) == b);                   /* last in, first out */
        KEXPECT(kmalloc(n - 7) == a);               /* any n of the same block size */
        KEXPECT_EQ(quick_list(s)->count, 0);
        KEXPECT(!cached(a) && !cached(b));
        KEXPECT_EQ(ksize(a), block_usable_of(n - 7));
        kfree(a);
        kfree(b);
    } else {
        ktest_note("LIFO order not checked: KHEAP_QUICK_DEPTH=%d", KHEAP_QUICK_DEPTH);
    }
    /* the largest cached size, and the next one up */
    const size_t top = KHEAP_QUICK_MAX - META, over = KHEAP_QUICK_MAX + 16 - META;
    unsigned char *c = kmalloc(top), *d = kmalloc(over), *g2 = kmalloc(16);
    KEXPECT_EQ(block_size(c), KHEAP_QUICK_MAX);
    kfree(d);
    KEXPECT(!cached(d));
    KEXPECT(*(uint64_t *)(d - 8) & KH_F_FREE);      /* merged into the free lists */
    kfree(c);
    KEXPECT_EQ(cached(c), QUICK);
    KEXPECT_EQ(kheap_check(), 0);
    kfree(g);
    kfree(g2);
    KEXPECT_EQ(rec.n, 0);
    expect_all_free(1);
}

/* At most KHEAP_QUICK_DEPTH blocks per list: further frees of that size merge as before. */
KTEST(test_quick_depth)
{
    enum { EXTRA = 3, N = KHEAP_QUICK_DEPTH + EXTRA };
    const size_t n = 60, s = block_of(n), pair = s + block_of(16);
    /* regions that hold whole pairs [p[i]][guard[i]] exactly, as many as N pairs need: no
     * p[i] lands next to another, whatever the depth */
    const size_t k = (NOSLAB_REGION - KH_RGN_SIZE - KH_SENTINEL_SIZE) / pair;
    const unsigned regions = (unsigned)((N + k - 1) / k);
    reset_noslab(regions, KH_RGN_SIZE + KH_SENTINEL_SIZE + k * pair);
    static void *p[N];
    unsigned char *guard[N];
    for (int i = 0; i < N; i++) {
        p[i] = kmalloc(n);
        guard[i] = kmalloc(16);                       /* keeps the p[i] apart */
        KEXPECT(guard[i] == (unsigned char *)p[i] + s);
    }
    for (int i = 0; i < N; i++)
        kfree(p[i]);
    KEXPECT_EQ(quick_list(s)->count, KHEAP_QUICK_DEPTH);
    int nfree = 0, ncached = 0;
    for (int i = 0; i < N; i++) {
        ncached += cached(p[i]);
        nfree += (*(uint64_t *)((unsigned char *)p[i] - 8) & KH_F_FREE) != 0;
    }
    KEXPECT_EQ(ncached, KHEAP_QUICK_DEPTH);
    KEXPECT_EQ(nfree, EXTRA);
    KEXPECT_EQ(kheap_check(), 0);
    /* they would come back in reverse order of caching: the first KHEAP_QUICK_DEPTH freed */
    KEXPECT(quick_list_is(s, p, KHEAP_QUICK_DEPTH));
    kheap_flush();
    KEXPECT_EQ(quick_list(s)->count, 0);
    for (int i = 0; i < N; i++)
        KEXPECT(*(uint64_t *)((unsigned char *)p[i] - 8) & KH_F_FREE);
    for (int i = 0; i < N; i++)
        kfree(guard[i]);
    KEXPECT_EQ(rec.n, 0);
    expect_all_free(regions);
}

/* A cached block is free to its user: kfree, ksize, krealloc of it are double frees, reported
 * with the pointer and the caller; the heap is unchanged and the block still reusable. */
KTEST(test_quick_double_free)
{
    reset_noslab(1, NOSLAB_REGION);
    unsigned char *a = kmalloc(100), *g = kmalloc(16);
    kfree(a);
    KEXPECT_EQ(cached(a), QUICK);
    struct kheap_stats s0 = stats();
    int n = 0;
    t_kfree(a);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, a, t_kfree);
    n++;
    t_my_free(a);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, a, t_my_free);
    n++;
    KEXPECT(t_ksize(a) == 0);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, a, t_ksize);
    n++;
    KEXPECT(t_krealloc(a, 50) == NULL);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, a, t_krealloc);
    n++;
    KEXPECT(t_my_realloc(a, 0) == NULL);          /* krealloc(p, 0) frees: reported too */
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, a, t_my_realloc);
    n++;
    struct kheap_stats s1 = stats();
    KEXPECT_EQ(s1.frees, s0.frees);
    KEXPECT_EQ(s1.used_bytes, s0.used_bytes);
    KEXPECT_EQ(s1.errors, s0.errors + (uint64_t)n);
    KEXPECT_EQ(kheap_check(), 0);
    unsigned char *b = kmalloc(100);
    KEXPECT(QUICK ? b == a : b != NULL);
    kfree(b);
    kfree(g);
    KEXPECT_EQ(rec.n, n);
    expect_all_free(1);
}

/* A write after free over a cached block's link, even with a plausible heap pointer, does not
 * steer kmalloc: the link fails its checks, KHEAP_E_FREELIST (debug build: KHEAP_E_USE_AFTER_FREE)
 * is reported with the block, the list is dropped (its blocks leaked, a state kheap_check
 * accepts) and the allocation is served from the free lists. */
KTEST(test_quick_link_overwritten)
{
    if (!QUICK_NEEDS(2))
        return;
    reset_noslab(1, NOSLAB_REGION);
    const size_t n = 100, s = block_of(n);
    unsigned char *x = kmalloc(n), *a = kmalloc(n), *g = kmalloc(16);
    kfree(x);
    kfree(a);                                       /* list: a -> x */
    *(uintptr_t *)a = (uintptr_t)g - KHEAP_HEADER_SIZE;   /* a real header address */
    unsigned char *p = t_kmalloc(n);
    /* a's own link (its first payload word) was hit: a write after free in the debug build */
    EXPECT_REPORT(0, DEBUG_BUILD ? KHEAP_E_USE_AFTER_FREE : KHEAP_E_FREELIST, a, t_kmalloc);
    KEXPECT(p != NULL && p != a && p != x && p != g);
    KEXPECT_EQ(quick_list(s)->count, 0);
    /* the heap keeps working; the two dropped blocks stay leaked (cached for good: free bytes
     * that are never handed out, counted so that kheap_check accepts them) */
    KEXPECT_EQ(stats().used_bytes, block_of(16) + s);
    KEXPECT_EQ(kheap_ctl.quick_lost, 2);
    KEXPECT_EQ(kheap_ctl.quick_lost_bytes, 2 * s);
    KEXPECT_EQ(kheap_check(), 0);
    for (int i = 0; i < 200; i++) {
        void *q = kmalloc((size_t)(i * 37 % 700));
        KEXPECT(q != NULL);
        kfree(q);
    }
    kfree(p);
    KEXPECT_EQ(kmalloc(n), p);
    KEXPECT_EQ(rec.n, 1);
    KEXPECT_EQ(kheap_check(), 0);                 /* the lost blocks are a known state */
    t_kfree(a);                                     /* still cached to its user */
    EXPECT_REPORT(1, KHEAP_E_DOUBLE_FREE, a, t_kfree);
    /* the same with the last block of a list: its link must decode to 0 */
    reset_noslab(1, NOSLAB_REGION);
    a = kmalloc(n);
    g = kmalloc(16);
    kfree(a);
    *(uintptr_t *)a ^= 16;
    KEXPECT(t_kmalloc(n) != a);
    EXPECT_REPORT(0, DEBUG_BUILD ? KHEAP_E_USE_AFTER_FREE : KHEAP_E_FREELIST, a, t_kmalloc);
    KEXPECT_EQ(kheap_check(), 0);
#if DEBUG_BUILD
    /* the debug build also checks the rest of a cached block: poison, as a free block's */
    reset_noslab(1, NOSLAB_REGION);
    a = kmalloc(n);
    g = kmalloc(16);
    kfree(a);
    a[40] = 1;
    KEXPECT_EQ(kheap_check(), KHEAP_E_USE_AFTER_FREE);
    KEXPECT(t_kmalloc(n) == a);                   /* reported, then handed out all the same */
    EXPECT_REPORT(0, KHEAP_E_USE_AFTER_FREE, a, t_kmalloc);
    KEXPECT_EQ(kheap_check(), 0);
    kfree(a);
    a[n - 1] = 2;
    t_kheap_flush();                                /* the flush checks it too */
    EXPECT_REPORT(1, KHEAP_E_USE_AFTER_FREE, a, t_kheap_flush);
    KEXPECT_EQ(kheap_check(), 0);
    kfree(g);
    expect_all_free(1);
#endif
}

/* When no free block fits, kmalloc flushes the cache into the free lists (merging) and tries
 * again: a heap filled with small blocks, all freed (many of them cached), still gives itself
 * whole to one request. */
KTEST(test_quick_exhaustion_flush)
{
    reset_noslab(1, NOSLAB_REGION);
    const size_t total = stats().total_bytes;
    static void *p[4096];
    size_t k = 0;
    for (size_t n = 0; k < 4096; n = (n + 24) % (KHEAP_QUICK_MAX - META)) {
        if ((p[k] = kmalloc(n)) == NULL)
            break;
        k++;
    }
    KEXPECT(k > 40 && k < 4096);                  /* (about 60 in a NOSLAB_REGION region) */
    uint64_t failed = stats().failed_allocs;
    for (size_t i = 0; i < k; i += 2)
        kfree(p[i]);
    for (size_t i = 1; i < k; i += 2)
        kfree(p[i]);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.free_bytes, total);
    KEXPECT_EQ(s.largest_free, total);        /* what one kmalloc gets: flush included */
    KEXPECT_EQ(kheap_check(), 0);
    void *all = kmalloc(total - META);
    KEXPECT(all != NULL);
    KEXPECT_EQ(stats().failed_allocs, failed);
    kfree(all);
    s = stats();
    KEXPECT_EQ(s.largest_free, total);
    for (unsigned i = 0; i < KH_QUICK_CLASSES; i++)
        KEXPECT_EQ(kheap_ctl.quick[i].count, 0);
    /* kmalloc_aligned flushes too */
    for (size_t i = 0; i < 64; i++)
        p[i] = kmalloc(40 + i);
    for (size_t i = 0; i < 64; i++)
        kfree(p[i]);
    void *big = kmalloc_aligned(256, total - 256 - KHEAP_ALIGN - META);
    KEXPECT(big != NULL && (uintptr_t)big % 256 == 0);
    kfree(big);
    KEXPECT_EQ(rec.n, 0);
    expect_all_free(1);
}

/* kheap_check finds a cached block missing from its list, a list longer than
 * KHEAP_QUICK_DEPTH, a count that is not the list's length, a link that does not decode, a
 * block on the list of another size (each injected, then repaired). */
KTEST(test_quick_check_detects)
{
    if (!QUICK_NEEDS(2))
        return;
    reset_noslab(1, NOSLAB_REGION);
    const size_t s = block_of(100);
    unsigned char *a = kmalloc(100), *b = kmalloc(100), *g = kmalloc(16);
    kfree(a);
    kfree(b);
    struct kh_quick *q = quick_list(s), saved = *q;
    KEXPECT_EQ(kheap_check(), 0);
    q->head = (uintptr_t)a - KHEAP_HEADER_SIZE;     /* b left out */
    q->count = 1;
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    q->head = 0;                                    /* both left out */
    q->count = 0;
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    *q = saved;
    q->count = KHEAP_QUICK_DEPTH + 1;               /* longer than allowed */
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    q->count = 3;                                   /* longer than the list */
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    *q = saved;
    KEXPECT_EQ(kheap_check(), 0);
    uint64_t *link = (uint64_t *)b, saved_link = *link;
    *link ^= 0x40;                                  /* b's link: no longer decodes to a */
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    *link = saved_link;
    quick_list(s + KHEAP_ALIGN)->head = q->head;    /* on the list of the next size */
    quick_list(s + KHEAP_ALIGN)->count = q->count;
    q->head = 0;
    q->count = 0;
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    *quick_list(s + KHEAP_ALIGN) = (struct kh_quick){ 0, 0 };
    *q = saved;
    KEXPECT_EQ(kheap_check(), 0);
    uint64_t used = kheap_ctl.used;                 /* the counters still agree */
    kheap_ctl.used = used + s;
    KEXPECT_EQ(kheap_check(), KHEAP_E_STATS);
    kheap_ctl.used = used;
    kfree(g);
    KEXPECT_EQ(rec.n, 0);
    expect_all_free(1);
}

static int walk_unused(const struct kheap_block_info *b, void *ctx)
{
    size_t *sum = ctx;
    if (!b->used)
        *sum += b->size;
    return 0;
}

static void leak_count(void *site, size_t blocks, size_t bytes, void *ctx)
{
    (void)site, (void)bytes;
    *(size_t *)ctx += blocks;
}

/* Cached bytes are free bytes: stats, kheap_walk, kheap_inspect and the leak report agree. */
KTEST(test_quick_accounting)
{
    reset_noslab(1, NOSLAB_REGION);
    void *p[10];
    for (int i = 0; i < 10; i++)
        p[i] = kmalloc((size_t)(20 * i));
    size_t live = 0;
    for (int i = 0; i < 10; i += 2)
        kfree(p[i]);
    for (int i = 1; i < 10; i += 2)
        live += block_size(p[i]);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.used_bytes, live);
    KEXPECT_EQ(s.free_bytes, s.total_bytes - live);
    KEXPECT_EQ(s.allocs, 10);
    KEXPECT_EQ(s.frees, 5);
    size_t unused = 0, leaked = 0;
    KEXPECT_EQ(kheap_walk(walk_unused, &unused), 0);
    KEXPECT_EQ(unused, s.free_bytes);
    struct kheap_block_info b;
    KEXPECT_EQ(kheap_inspect(p[2], &b), 1);
    KEXPECT_EQ(b.used, 0);
    KEXPECT_EQ(b.usable, b.size - KHEAP_HEADER_SIZE);
    KEXPECT_EQ(b.requested, 0);
    KEXPECT_EQ(kheap_leak_report(leak_count, &leaked), 1);   /* one call site */
    KEXPECT_EQ(leaked, 5);
    kheap_flush();                                  /* nothing moves between used and free */
    KEXPECT_EQ(stats().used_bytes, live);
    KEXPECT_EQ(stats().frees, 5);
    KEXPECT_EQ(kheap_check(), 0);
    for (int i = 1; i < 10; i += 2)
        kfree(p[i]);
    expect_all_free(1);
}

/* krealloc: a cached right neighbour is in use for growing in place; but when the move finds
 * no block (the cache is flushed then), growing in place is tried again and succeeds. */
KTEST(test_quick_krealloc)
{
    reset_noslab(1, NOSLAB_REGION);
    unsigned char *a = kmalloc(100), *b = kmalloc(100);
    void *rest = kmalloc(stats().largest_free - META);
    KEXPECT(rest != NULL);
    fill_pattern(a, 100, 5);
    kfree(b);                                       /* cached (or merged: pure TLSF) */
    uint64_t failed = stats().failed_allocs;
    unsigned char *a2 = krealloc(a, 200);
    KEXPECT(a2 == a);                             /* in place, into b */
    KEXPECT(check_pattern(a2, 100, 5));
    KEXPECT_EQ(stats().failed_allocs, failed);
    KEXPECT_EQ(block_size(a2), 2 * block_of(100));   /* a surplus < 32 bytes stays */
    KEXPECT_EQ(kheap_check(), 0);
    kfree(rest);
    kfree(a2);
    KEXPECT_EQ(rec.n, 0);
    expect_all_free(1);
}

/* kheap_set_secret re-stamps cached headers and re-encodes their links. */
KTEST(test_quick_set_secret)
{
    reset_noslab(1, NOSLAB_REGION);
    void *p[6], *g = kmalloc(16);
    const size_t s = block_of(64);
    for (int i = 0; i < 6; i++)
        p[i] = kmalloc(64);
    for (int i = 0; i < 6; i++)
        kfree(p[i]);
    KEXPECT_EQ(kheap_set_secret(0xC0FFEE), 0);
    KEXPECT_EQ(kheap_check(), 0);
    /* the links decode with the new key: the list as it was (the merged rest is not cached) */
    if (QUICK_HOLDS(6))
        KEXPECT(quick_list_is(s, p, 6));
    kheap_flush();                                /* takes every block as kmalloc would */
    KEXPECT_EQ(rec.n, 0);
    KEXPECT_EQ(kheap_ctl.quick_lost, 0);
    KEXPECT_EQ(quick_list(s)->count, 0);
    for (int i = 0; i < 6; i++)
        p[i] = kmalloc(64);
    /* a corrupt cache list is refused like a corrupt header, and nothing changes */
    if (QUICK_HOLDS(2)) {
        kfree(p[0]);
        kfree(p[1]);
        uint64_t *link = (uint64_t *)p[1], saved = *link;
        *link ^= 0x100;
        KEXPECT_EQ(kheap_set_secret(7), KHEAP_E_CORRUPT);
        KEXPECT_EQ(kheap_ctl.secret, 0xC0FFEE);
        *link = saved;
        KEXPECT_EQ(kheap_check(), 0);
        KEXPECT(quick_list_is(s, p, 2));
        p[0] = kmalloc(64);
        p[1] = kmalloc(64);
    }
    for (int i = 0; i < 6; i++)
        kfree(p[i]);
    kfree(g);
    KEXPECT_EQ(rec.n, 0);
    expect_all_free(1);
}
