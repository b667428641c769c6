/* test_kheap.c -- the kheap contract inside the booted kernel: the static heap region
 * (__heap_start..__heap_end), regions added from the Multiboot memory map, both tiers (blocks
 * past 512 bytes, slab objects up to that), misuse reports with the real caller, a randomized
 * run with kheap_check after every step (every 1000th in a KHEAP_DEBUG build), and an
 * out-of-memory run.
 * Each test leaves the heap as kmain set it up (static region + free RAM ranges). */
#include "ktest.h"
#include "kernel.h"
#include "mm/kheap.h"
#include "heap_sum.h"

/* Metadata bytes per used block beyond the request (the debug build adds trailer + canary). */
#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
#define META (KHEAP_HEADER_SIZE + KHEAP_DEBUG_EXTRA)
#else
#define META KHEAP_HEADER_SIZE
#endif

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define RANGES_MAX 16

/* ---- helpers ------------------------------------------------------------------------------ */

static struct boot_mem_range ranges[RANGES_MAX];
static size_t nranges;

/* kheap_init over the static region only. */
static int heap_static(void)
{
    return kheap_init(__heap_start, (size_t)(__heap_end - __heap_start));
}

/* Back to kmain's heap: kernel_heap_setup (static region plus every free RAM range) and the
 * kernel's misuse handler, which a test may have replaced (kheap_init keeps the handler and
 * the lock). Returns the number of RAM ranges, also left in ranges[]. */
static size_t heap_restore(void)
{
    nranges = boot_free_ranges(ranges, RANGES_MAX);
    KEXPECT_EQ(kernel_heap_setup(0), nranges + 1);
    kheap_set_error_handler(kernel_heap_error);
    return nranges;
}

static struct kheap_stats stats(void)
{
    struct kheap_stats s;
    kheap_get_stats(&s);
    return s;
}

static int in_static(const void *p, size_t n)
{
    return (const char *)p >= __heap_start && (const char *)p + n <= __heap_end;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) { return ktest_rand(&rng_state); }

static void fill(unsigned char *p, size_t n, unsigned char seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 13);
}

static size_t verify(const unsigned char *p, size_t n, unsigned char seed)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += p[i] != (unsigned char)(seed + i * 13);
    return bad;
}

/* Misuse reports, with the caller checked against a trampoline's return label. */
static struct { int n, code; void *ptr, *caller; } rec;
static void record(int code, void *ptr, void *caller)
{
    rec.n++;
    rec.code = code;
    rec.ptr = ptr;
    rec.caller = caller;
}

#define TRAMPOLINE(name, fn)                                                                \
    __asm__(".text\n.p2align 4\n.globl " #name "\n" #name ":\n\tsub $8, %rsp\n\tcall " #fn  \
            "\n.globl " #name "_ret\n" #name "_ret:\n\tadd $8, %rsp\n\tret\n");             \
    extern const char name##_ret[];
TRAMPOLINE(kt_kfree, kfree)
TRAMPOLINE(kt_my_free, my_free)
TRAMPOLINE(kt_krealloc, krealloc)
void  kt_kfree(void *p);
void  kt_my_free(void *p);
void *kt_krealloc(void *p, size_t n);

#define EXPECT_REPORT(before, code_, ptr_, caller_)                                         \
    do {                                                                                    \
        KEXPECT_EQ(rec.n, (before) + 1);                                                    \
        KEXPECT_EQ(rec.code, code_);                                                        \
        KEXPECT_EQ(rec.ptr, ptr_);                                                          \
        KEXPECT_EQ(rec.caller, caller_);                                                    \
    } while (0)

/* ---- tests -------------------------------------------------------------------------------- */

/* The heap's own bytes: the per-CPU slots kmain's cpu hook asks for (a block the walk does not
 * show), found as what no walked block or slab covers. */
static size_t own_bytes(void)
{
    struct heap_sum w = heap_sum_of(kheap_default());
    KEXPECT_EQ(w.rc, 0);
    KEXPECT_EQ(w.unplaced, 0);
    return w.own;
}

/* The slots' block is 64-byte aligned: the free block before it, if any, is at most this. */
#define SLOTS_GAP_MAX (KHEAP_MIN_BLOCK + 64)

/* Nothing allocated, nothing held by the slab tier: every byte but the slots' is in free
 * blocks, one of them (what one allocation can get) all but the gap before the slots. */
static void expect_all_free(size_t own)
{
    struct kheap_stats s = stats();
    struct heap_sum w = heap_sum_of(kheap_default());
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.slab_bytes, 0);
    KEXPECT_EQ(w.slabs, 0);
    KEXPECT_EQ(w.used, 0);
    KEXPECT_EQ(w.own, own);
    KEXPECT_EQ(w.free + own, s.total_bytes);
    KEXPECT_EQ(w.largest, s.largest_free);
    KEXPECT(w.free - w.largest <= SLOTS_GAP_MAX);
}

KTEST(kheap_static_contract)
{
    size_t size = (size_t)(__heap_end - __heap_start);
    KEXPECT_EQ(heap_static(), 0);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.regions, 1);
    KEXPECT_EQ(s.total_bytes, size - KHEAP_CTL_SIZE - 32);   /* control block, descriptor, sentinel */
    /* one free block, and the block of the per-CPU slots (kmain's cpu hook, kept by
     * kheap_init): a used block that is free_bytes, neither walked nor any allocation's */
    struct kheap_hooks hooks;
    KEXPECT_EQ(kheap_get_hooks(kheap_default(), &hooks), 0);
    KEXPECT(hooks.cpu != NULL && hooks.ncpu == SMP_MAX_CPUS);
    struct heap_sum w = heap_sum_of(kheap_default());
    size_t own = w.own;
    KEXPECT_EQ(w.owns, 1);
    KEXPECT(w.blocks <= 2);                         /* (the gap before the slots) */
    KEXPECT(own >= (size_t)hooks.ncpu * 16 * 32 * sizeof(void *));   /* 16 stacks of 32 each */
    KEXPECT_EQ(s.free_bytes, s.total_bytes);
    expect_all_free(own);
    /* kmalloc: aligned, usable size, distinct; kmalloc(0) unique */
    unsigned char *a = kmalloc(1000), *b = kmalloc(0), *c = kmalloc(0);
    KEXPECT(a && b && c && b != c);
    KEXPECT_EQ((uintptr_t)a % KHEAP_ALIGN, 0);
    KEXPECT(ksize(a) >= 1000 && in_static(a, ksize(a)));
    fill(a, 1000, 1);
    /* kcalloc zeroes (a block, and a slab object freed dirty just before) and refuses overflow */
    unsigned char *z = kcalloc(64, 16), *dirty = kmalloc(100);
    fill(dirty, 100, 0x55);
    kfree(dirty);
    unsigned char *zs = kcalloc(10, 10);
    size_t nonzero = 0;
    for (int i = 0; z && i < 1024; i++)
        nonzero += z[i] != 0;
    for (int i = 0; zs && i < 100; i++)
        nonzero += zs[i] != 0;
    KEXPECT_NOT_NULL(z);
    KEXPECT_NOT_NULL(zs);
    KEXPECT_EQ(nonzero, 0);
    KEXPECT_NULL(kcalloc(SIZE_MAX / 2, 3));
    KEXPECT_NULL(kmalloc(SIZE_MAX));
    KEXPECT_NULL(kmalloc(size));
    /* krealloc of a block (past the slab tier): shrink in place, grow, move keeping data */
    KEXPECT(krealloc(a, 600) == a);
    unsigned char *a2 = krealloc(a, 5000);
    KEXPECT_NOT_NULL(a2);
    if (a2)
        KEXPECT_EQ(verify(a2, 600, 1), 0);
    /* a slab object: its class's size usable (the debug build: exactly n); krealloc keeps it
     * where it is for any size of the same class, moves it (keeping the bytes) for another
     * class, and out of the tier for a size past it */
    unsigned char *o = kmalloc(100);
    size_t cls = slab_class_of(100), lo = 1, hi = SLAB_REQ_MAX;
    while (slab_class_of(lo) != cls)
        lo++;
    while (slab_class_of(hi) != cls)
        hi--;
    KEXPECT_NOT_NULL(o);
#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
    KEXPECT_EQ(ksize(o), 100);
#else
    KEXPECT_EQ(ksize(o), cls);
#endif
    fill(o, 100, 7);
    KEXPECT(krealloc(o, hi) == o);
    KEXPECT(krealloc(o, lo) == o);
    KEXPECT_EQ(verify(o, lo, 7), 0);
    unsigned char *o2 = krealloc(o, lo - 1);       /* a smaller class: moved */
    KEXPECT(o2 && o2 != o);
    if (o2)
        KEXPECT_EQ(verify(o2, lo - 1, 7), 0);
    unsigned char *o3 = o2 ? krealloc(o2, 2000) : NULL;   /* a block now */
    KEXPECT(o3 && o3 != o2 && ksize(o3) >= 2000);
    if (o3)
        KEXPECT_EQ(verify(o3, lo - 1, 7), 0);
    /* kmalloc_aligned */
    for (size_t align = 1; align <= 64 * KiB; align <<= 1) {
        void *p = kmalloc_aligned(align, 200);
        KEXPECT_NOT_NULL(p);
        KEXPECT_EQ((uintptr_t)p % align, 0);
        kfree(p);
    }
    KEXPECT_NULL(kmalloc_aligned(24, 10));
    KEXPECT_EQ(kheap_check(), 0);
    kfree(a2);
    kfree(b);
    kfree(c);
    kfree(z);
    kfree(zs);
    kfree(o3);
    s = stats();
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.free_bytes, s.total_bytes);
    /* all free, not one block yet: the slab tier keeps its slabs (a spare per class, partial
     * ones) and this CPU's stacks until kheap_flush, which also gives the front cache back */
    KEXPECT(s.slab_bytes > 0);
    KEXPECT(s.largest_free < s.total_bytes - own);
    kheap_flush();
    s = stats();
    KEXPECT_EQ(s.cached_bytes, 0);
    expect_all_free(own);
    KEXPECT_EQ(s.errors, 3);       /* misuse, reported: calloc overflow, SIZE_MAX, align 24 */
    KEXPECT_EQ(kheap_check(), 0);
    heap_restore();
}

KTEST(kheap_misuse_reports)
{
    KEXPECT_EQ(heap_static(), 0);
    kheap_set_error_handler(record);
    rec.n = 0;
    /* blocks (past the slab tier: each has its header at p - 8) */
    unsigned char *p = kmalloc(600), *q = kmalloc(600);
    int n = 0, local;
    kt_kfree(&local);                               /* outside: the stack */
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, &local, kt_kfree_ret);
    n++;
    kt_kfree(p + 3);                                /* misaligned */
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, p + 3, kt_kfree_ret);
    n++;
    for (int i = 0; i < 64; i++)
        p[i] = 0x0C;                                /* reserved flag bits: never a header */
    kt_my_free(p + 32);                             /* interior */
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, p + 32, kt_my_free_ret);
    n++;
    kfree(q);
    kt_kfree(q);                                    /* double free */
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, q, kt_kfree_ret);
    n++;
    KEXPECT_NULL(kt_krealloc(q, 10));
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, q, kt_krealloc_ret);
    n++;
    uint64_t *hdr = (uint64_t *)(p - 8), saved = *hdr;
    *hdr ^= 1ull << 62;                             /* overwritten check bits */
    kt_kfree(p);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, p, kt_kfree_ret);
    n++;
    *hdr = saved;
    KEXPECT_EQ(kheap_check(), 0);
    kfree(p);
    /* slab objects (no header: exact by their slab's state bytes), reported with the caller
     * also when the free came in through the lock-free path */
    unsigned char *o = kmalloc(64), *o2 = kmalloc(64);
    uintptr_t slab = (uintptr_t)o & -(uintptr_t)KHEAP_DUMP_SLAB_BYTES;
    kt_kfree(o + 16);                               /* inside an object */
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, o + 16, kt_kfree_ret);
    n++;
    kt_kfree(o + 8);                                /* misaligned */
    EXPECT_REPORT(n, KHEAP_E_BAD_PTR, o + 8, kt_kfree_ret);
    n++;
    kt_my_free((void *)slab);                       /* the slab's header */
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, (void *)slab, kt_my_free_ret);
    n++;
    kfree(o2);
    kt_kfree(o2);                                   /* double free: cached on this CPU */
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, o2, kt_kfree_ret);
    n++;
    KEXPECT_NULL(kt_krealloc(o2, 10));
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, o2, kt_krealloc_ret);
    n++;
    kheap_flush();                                  /* o2 back in its slab: still a double free */
    kt_kfree(o2);
    EXPECT_REPORT(n, KHEAP_E_DOUBLE_FREE, o2, kt_kfree_ret);
    n++;
    KEXPECT_EQ(kheap_check(), 0);
    kfree(o);
    KEXPECT_EQ(stats().errors, (uint64_t)n);
    KEXPECT_EQ(stats().used_bytes, 0);
    KEXPECT_EQ(kheap_check(), 0);
    heap_restore();
}

KTEST(kheap_multiboot_regions)
{
    size_t n = heap_restore();
    struct kheap_stats s = stats();
    size_t static_size = (size_t)(__heap_end - __heap_start);
    if (n == 0) {
        /* no RAM ranges (should not happen under QEMU): a second slice of the static region */
        ktest_note("no free RAM ranges: using two halves of the static region");
        KEXPECT_EQ(kheap_init(__heap_start, static_size / 2), 0);
        KEXPECT_EQ(kheap_add_region(__heap_start + static_size / 2, static_size / 2), 0);
        s = stats();
        KEXPECT_EQ(s.regions, 2);
    } else {
        KEXPECT_EQ(s.regions, n + 1);
        ktest_note("%zu RAM regions, %zu MiB in blocks", n, s.total_bytes >> 20);
        /* overlaps are refused, also with the static region */
        KEXPECT_EQ(kheap_add_region(phys_to_virt(ranges[0].base), 4096), KHEAP_E_OVERLAP);
        KEXPECT_EQ(kheap_add_region(__heap_start + 4096, 4096), KHEAP_E_OVERLAP);
    }
    /* blocks larger than the static region come from RAM regions, and coalescing stays
     * inside each region: allocate chunks until NULL, free, all comes back */
    void *big = kmalloc(n ? static_size + MiB : static_size / 4);
    KEXPECT_NOT_NULL(big);
    if (n && big)
        KEXPECT(!in_static(big, 1));
    void *chunks[256];
    int k = 0;
    while (k < 256 && (chunks[k] = kmalloc(s.total_bytes / 64)) != NULL) {
        fill(chunks[k], 4096, (unsigned char)(k + 1));
        k++;
    }
    KEXPECT(k > 8);
    KEXPECT_EQ(kheap_check(), 0);
    for (int i = 0; i < k; i++)
        KEXPECT_EQ(verify(chunks[i], 4096, (unsigned char)(i + 1)), 0);
    for (int i = k - 1; i >= 0; i -= 2)
        kfree(chunks[i]);
    for (int i = k - 2; i >= 0; i -= 2)
        kfree(chunks[i]);
    kfree(big);
    s = stats();
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.free_bytes, s.total_bytes);
    KEXPECT_EQ(kheap_check(), 0);
    heap_restore();
}

/* The debug build's kheap_check also reads every free byte (all of RAM here): check less often. */
#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
#define CHECK_EVERY 1000
#else
#define CHECK_EVERY 1
#endif

KTEST(kheap_random_checked)
{
    enum { SLOTS = 128, STEPS = 3000 };
    static struct { unsigned char *p; size_t n; unsigned char seed; } live[SLOTS];
    unsigned nlive = 0;
    heap_restore();
    int failed = 0;
    for (int step = 0; step < STEPS && !failed; step++) {
        unsigned op = rng() % 100;
        if (nlive == SLOTS || (nlive && op >= 65)) {
            unsigned i = rng() % nlive;
            failed |= !KEXPECT_EQ(verify(live[i].p, live[i].n, live[i].seed), 0);
            kfree(live[i].p);
            live[i] = live[--nlive];
        } else if (nlive && op >= 50) {
            unsigned i = rng() % nlive;
            size_t n = 1 + rng() % (1u << (rng() % 17)), keep = n < live[i].n ? n : live[i].n;
            unsigned char *q = krealloc(live[i].p, n);
            failed |= !KEXPECT_NOT_NULL(q);
            if (!q)
                break;
            failed |= !KEXPECT_EQ(verify(q, keep, live[i].seed), 0);
            live[i].p = q;
            live[i].n = n;
            fill(q, n, live[i].seed);
        } else {
            size_t n = rng() % (1u << (rng() % 17)), align = 1ull << (rng() % 13);
            unsigned char *p = op < 10 ? kmalloc_aligned(align, n) : kmalloc(n);
            failed |= !KEXPECT_NOT_NULL(p);
            if (!p)
                break;
            if (op < 10)
                failed |= !KEXPECT_EQ((uintptr_t)p % align, 0);
            live[nlive].p = p;
            live[nlive].n = n;
            live[nlive].seed = (unsigned char)rng();
            fill(p, n, live[nlive].seed);
            nlive++;
        }
        int rc = step % CHECK_EVERY ? 0 : kheap_check();
        if (rc != 0) {
            ktest_note("kheap_check() = %d (%s) after step %d", rc, kheap_strerror(rc), step);
            failed |= !KEXPECT_EQ(rc, 0);
        }
    }
    while (nlive) {
        nlive--;
        KEXPECT_EQ(verify(live[nlive].p, live[nlive].n, live[nlive].seed), 0);
        kfree(live[nlive].p);
    }
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.errors, 0);
    KEXPECT_EQ(kheap_check(), 0);
    heap_restore();
}

KTEST(kheap_out_of_memory)
{
    KEXPECT_EQ(heap_static(), 0);
    struct kheap_stats s0 = stats();
    size_t own = own_bytes();                       /* the per-CPU slots: no allocation's */
    /* fill: big blocks first, then smaller and smaller, each chained to the previous one (so
     * each holds a pointer: no request below its 8 bytes, which the debug build's canary
     * right after the request would catch) */
    void *chain = NULL;
    size_t blocks = 0;
    for (size_t n = 256 * KiB; n >= sizeof(void *); n /= 2) {
        void **p;
        while ((p = kmalloc(n)) != NULL) {
            *p = chain;
            chain = p;
            blocks++;
        }
    }
    while (1) {                                     /* the last crumbs: the smallest */
        void **p = kmalloc(sizeof(void *));
        if (!p)
            break;
        *p = chain;
        chain = p;
        blocks++;
    }
    static void *crumbs[64];                        /* what is left even for them (debug */
    size_t ncrumbs = 0;                             /* build: minimum blocks): kmalloc(0) */
    while (ncrumbs < 64 && (crumbs[ncrumbs] = kmalloc(0)) != NULL)
        ncrumbs++;
    KEXPECT(ncrumbs < 64);
    blocks += ncrumbs;
    struct kheap_stats s = stats();
    KEXPECT_NULL(kmalloc(0));
    KEXPECT_NULL(kmalloc(1));
    KEXPECT_NULL(kcalloc(1, 1));
    KEXPECT_NULL(kmalloc_aligned(64, 1));
    /* kmalloc(0) takes any free block: all is used but the slots. No slab is left to hand out
     * objects: none could be carved at the end (a slab needs a free block well past its 16 KiB,
     * its payload being 16 KiB-aligned), so the small requests took blocks */
    KEXPECT_EQ(s.free_bytes, own);
    KEXPECT_EQ(s.slab_bytes, 0);
    KEXPECT_EQ(s.largest_free, 0);
    KEXPECT_EQ(stats().failed_allocs, s.failed_allocs + 4);
    KEXPECT_EQ(stats().errors, 0);
    KEXPECT_EQ(kheap_check(), 0);
    ktest_note("filled with %zu blocks, %zu bytes free", blocks, s.free_bytes);
    /* free everything: one block again (the small ones partly cached: the whole-heap request
     * flushes the front cache first) */
    while (chain) {
        void *next = *(void **)chain;
        kfree(chain);
        chain = next;
    }
    while (ncrumbs)
        kfree(crumbs[--ncrumbs]);
    s = stats();
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.free_bytes, s0.total_bytes);
    KEXPECT_EQ(s.free_bytes, s.total_bytes);
    KEXPECT_EQ(s.frees, blocks);
    KEXPECT_EQ(kheap_check(), 0);
    expect_all_free(own);
    void *all = kmalloc(stats().largest_free - META);        /* the whole heap, one block */
    KEXPECT_NOT_NULL(all);
    kfree(all);
    expect_all_free(own);
    KEXPECT_EQ(kheap_check(), 0);
    heap_restore();
}
