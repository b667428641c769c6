/*
 * tests/host/test_kheap_harden.c -- host tests of kheap's diagnostics and hardening:
 * kheap_walk, kheap_inspect, the leak report, kheap_set_secret, fault injection (krealloc and
 * kcalloc failure paths leave everything intact), the growth hook, the fragmentation figure,
 * and every misuse case with its code, pointer and caller. Built twice: against the release
 * library (test_kheap_harden) and, with -DKHEAP_DEBUG=1, against the debug library
 * (test_kheap_harden_debug), which adds the write-after-free and canary cases; in the release
 * build those report `# SKIP`. TAP version 13 (tests/ktest.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kheap_test.h"

#define ARENA_SIZE (1u << 20)
/* 16 KiB aligned: where the slabs fall (and so the placement of the blocks these tests lay out
 * side by side) must not depend on where the loader put the program */
static unsigned char arenas[2 * ARENA_SIZE] __attribute__((aligned(16384)));
#define arena  arenas                  /* the heap's usual home */
#define arena2 (arenas + ARENA_SIZE)   /* right after it: memory for the growth hook */

static void reset(size_t size) { reset_at(arena, size); }

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 31 + i * 7);
}

static int intact(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed * 31 + i * 7))
            return 0;
    return 1;
}

/* A set of live blocks with patterns: the bystanders every misuse test verifies afterwards.
 * Small ones (slab objects, or TLSF blocks where the slab tier has no room) and TLSF blocks. */
enum { NLIVE = 24 };
static unsigned char *live[NLIVE];
static size_t         live_n[NLIVE];

static void live_make(void)
{
    for (int i = 0; i < NLIVE; i++) {
        live_n[i] = (i % 3 == 2 ? TLSF_MIN : 1) + (size_t)(i * 37 % 300);
        live[i] = kmalloc(live_n[i]);
        KEXPECT(live[i] != NULL);
        if (live[i])
            fill(live[i], live_n[i], (unsigned)i);
    }
}

/* Every bystander block still holds its pattern. */
static void live_verify(void)
{
    for (int i = 0; i < NLIVE; i++)
        if (live[i] && !intact(live[i], live_n[i], (unsigned)i))
            KEXPECT(!"bystander block damaged");
}

static void live_free(void)
{
    for (int i = 0; i < NLIVE; i++) {
        kfree(live[i]);
        live[i] = NULL;
    }
}

/* ---- kheap_walk ---------------------------------------------------------------------------- */

enum { WALK_MAX = 64 };
struct walk_log {
    int                     n;
    struct kheap_block_info b[WALK_MAX];
};

static int walk_record(const struct kheap_block_info *b, void *ctx)
{
    struct walk_log *w = ctx;
    if (w->n < WALK_MAX)
        w->b[w->n] = *b;
    w->n++;
    return 0;
}

static int walk_stop_at_3(const struct kheap_block_info *b, void *ctx)
{
    (void)b;
    return ++*(int *)ctx == 3 ? 42 : 0;
}

KTEST(test_walk)
{
    struct walk_log w = { 0 };
    kheap_set_grow(NULL);
    KEXPECT_EQ(kheap_init(NULL, 0), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_walk(walk_record, &w), KHEAP_E_NOT_INIT);
    /* three regions given in the order middle, high, low: walked low to high */
    reset_at(arena + 64 * 1024, 32 * 1024);
    KEXPECT_EQ(kheap_add_region(arena + 128 * 1024, 32 * 1024), 0);
    KEXPECT_EQ(kheap_add_region(arena, 32 * 1024), 0);
    KEXPECT_EQ(kheap_walk(walk_record, &w), 0);
    KEXPECT_EQ(w.n, 3);
    for (int i = 0; i < 3 && i < w.n; i++) {
        KEXPECT_EQ(w.b[i].region, i);
        KEXPECT_EQ(w.b[i].used, 0);
        KEXPECT_EQ(w.b[i].size, i == 1 ? 32 * 1024 - INIT_OVERHEAD   /* the control block's */
                                          : 32 * 1024 - KH_RGN_SIZE - KH_SENTINEL_SIZE);
        KEXPECT_EQ(w.b[i].requested, 0);
        KEXPECT(w.b[i].site == NULL);
    }
    KEXPECT(w.b[0].ptr == arena + KH_RGN_SIZE + KHEAP_HEADER_SIZE);
    KEXPECT(w.b[2].ptr == arena + 128 * 1024 + KH_RGN_SIZE + KHEAP_HEADER_SIZE);
    /* blocks in address order, used and free, sizes adding up to the region (TLSF blocks; the
     * walk of slabs, object by object, is test_kheap_slab's) */
    const size_t na = TLSF_MIN + 100;
    void *a = t_kmalloc(na), *b = kmalloc(1000), *c = kmalloc(TLSF_MIN);
    kfree(b);
    w.n = 0;
    KEXPECT_EQ(kheap_walk(walk_record, &w), 0);
    KEXPECT(w.n >= 6);
    size_t sum = 0;
    int seen_a = 0;
    for (int i = 0; i < w.n && i < WALK_MAX; i++) {
        if (i > 0 && w.b[i].region == w.b[i - 1].region)
            KEXPECT((char *)w.b[i].ptr == (char *)w.b[i - 1].ptr + w.b[i - 1].size);
        KEXPECT(i == 0 || w.b[i].region >= w.b[i - 1].region);
        sum += w.b[i].size;
        if (w.b[i].ptr == a) {
            seen_a = 1;
            KEXPECT_EQ(w.b[i].used, 1);
            KEXPECT_EQ(w.b[i].size, block_of(na));
            KEXPECT_EQ(w.b[i].usable, usable_of(na));
            KEXPECT_EQ(w.b[i].requested, DEBUG_BUILD ? na : usable_of(na));
            KEXPECT(w.b[i].site == (DEBUG_BUILD ? (void *)t_kmalloc_ret : NULL));
        }
        if (w.b[i].ptr == b)
            KEXPECT_EQ(w.b[i].used, 0);
    }
    KEXPECT(seen_a);
    KEXPECT_EQ(sum, stats().total_bytes);
    /* the callback stops the walk with its value */
    int count = 0;
    KEXPECT_EQ(kheap_walk(walk_stop_at_3, &count), 42);
    KEXPECT_EQ(count, 3);
    /* a smashed header stops the walk with KHEAP_E_CORRUPT */
    uint64_t *ch = (uint64_t *)((char *)c - 8), saved = *ch;
    *ch ^= 0xFF;
    KEXPECT_EQ(kheap_walk(walk_record, &w), KHEAP_E_CORRUPT);
    *ch = saved;
    kfree(a);
    kfree(c);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* ---- kheap_inspect ------------------------------------------------------------------------- */

KTEST(test_inspect)
{
    reset(64 * 1024);
    struct kheap_block_info b;
    /* TLSF blocks (slab objects: test_kheap_slab) */
    const size_t na = TLSF_MIN + 200, nx = TLSF_MIN + 50;
    unsigned char *a = t_kmalloc(na), *x = kmalloc(nx), *y = kmalloc(nx);
    KEXPECT(x == a + block_of(na) && y == x + block_of(nx));
    KEXPECT_EQ(kheap_add_region(arena + 128 * 1024, 16 * 1024), 0);
    KEXPECT_EQ(kheap_inspect(a, &b), 1);
    KEXPECT(b.ptr == a);
    KEXPECT_EQ(b.used, 1);
    KEXPECT_EQ(b.size, block_of(na));
    KEXPECT_EQ(b.usable, ksize(a));
    KEXPECT_EQ(b.requested, DEBUG_BUILD ? na : ksize(a));
    KEXPECT(b.site == (DEBUG_BUILD ? (void *)t_kmalloc_ret : NULL));
    KEXPECT_EQ(b.region, 0);
    /* a free block (x, between a and y) */
    kfree(x);
    KEXPECT_EQ(kheap_inspect(x, &b), 1);
    KEXPECT_EQ(b.used, 0);
    KEXPECT_EQ(b.size, block_of(nx));
    KEXPECT_EQ(b.usable, block_of(nx) - KHEAP_HEADER_SIZE);
    KEXPECT_EQ(b.requested, 0);
    /* not a block: interior, misaligned, stack, outside, a gap, a stale merged header */
    int on_stack;
    KEXPECT_EQ(kheap_inspect(a + 16, &b), 0);
    KEXPECT_EQ(kheap_inspect(a + 1, &b), 0);
    KEXPECT_EQ(kheap_inspect(&on_stack, &b), 0);
    KEXPECT_EQ(kheap_inspect(NULL, &b), 0);
    KEXPECT_EQ(kheap_inspect(arena + 100 * 1024, &b), 0);
    KEXPECT_EQ(kheap_inspect(arena + 64 * 1024, &b), 0);       /* sentinel's "payload" */
    kfree(y);
    kheap_flush();                                                /* y merges into x */
    KEXPECT_EQ(kheap_inspect(y, &b), 0);
    /* a block of the second region */
    void *big = kmalloc(stats().largest_free - META), *r2 = kmalloc(1000);
    KEXPECT(big != NULL && r2 != NULL);
    KEXPECT((unsigned char *)r2 >= arena + 128 * 1024);
    KEXPECT_EQ(kheap_inspect(r2, &b), 1);
    KEXPECT_EQ(b.region, 1);
    kfree(big);
    kfree(r2);
    kfree(a);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* kheap_inspect from inside the error handler (the kernel's message uses it). */
static struct kheap_block_info handler_info;
static int handler_found;
static void inspecting_handler(int code, void *ptr, void *caller)
{
    record(code, ptr, caller);
    handler_found = kheap_inspect(ptr, &handler_info);
}

KTEST(test_inspect_from_handler)
{
    reset(64 * 1024);
    kheap_set_error_handler(inspecting_handler);
    void *a = kmalloc(TLSF_MIN), *b = kmalloc(TLSF_MIN);     /* TLSF blocks */
    kfree(a);
    t_kfree(a);
    EXPECT_REPORT(0, KHEAP_E_DOUBLE_FREE, a, t_kfree);
    KEXPECT_EQ(handler_found, 1);
    KEXPECT_EQ(handler_info.size, block_of(TLSF_MIN));
    KEXPECT_EQ(handler_info.used, 0);
    kfree(b);
    KEXPECT_EQ(kheap_check(), 0);
}

/* ---- leak report --------------------------------------------------------------------------- */

struct leak_log {
    int    n;
    void  *site[KHEAP_LEAK_SITES + 2];
    size_t blocks[KHEAP_LEAK_SITES + 2], bytes[KHEAP_LEAK_SITES + 2];
};

static void leak_record(void *site, size_t blocks, size_t bytes, void *ctx)
{
    struct leak_log *l = ctx;
    if (l->n < KHEAP_LEAK_SITES + 2) {
        l->site[l->n] = site;
        l->blocks[l->n] = blocks;
        l->bytes[l->n] = bytes;
    }
    l->n++;
}

/* kmalloc from three distinct call sites. */
TRAMPOLINE(t_site0, kmalloc)
TRAMPOLINE(t_site1, kmalloc)
TRAMPOLINE(t_site2, kmalloc)
void *t_site0(size_t n);
void *t_site1(size_t n);
void *t_site2(size_t n);
static void *(*const sites[])(size_t) = { t_site0, t_site1, t_site2 };
static const char *const site_ret[] __attribute__((unused)) = { t_site0_ret, t_site1_ret,
                                                                t_site2_ret };

KTEST(test_leak_report)
{
    reset(256 * 1024);
    struct leak_log l = { 0 };
    KEXPECT_EQ(kheap_leak_report(leak_record, &l), 0);         /* nothing live */
    KEXPECT_EQ(l.n, 0);
    void *p[9];                                 /* TLSF blocks (slab objects: test_kheap_slab) */
    for (int i = 0; i < 9; i++)
        p[i] = sites[i % 3](TLSF_MIN + 100 * (size_t)(i % 3));
    kfree(p[4]);                                                  /* site 1: two left */
    int groups = kheap_leak_report(leak_record, &l);
#if DEBUG_BUILD
    KEXPECT_EQ(groups, 3);
    KEXPECT_EQ(l.n, 3);
    for (int i = 0; i < 3 && i < l.n; i++) {
        KEXPECT(l.site[i] == (void *)site_ret[i]);
        KEXPECT_EQ(l.blocks[i], i == 1 ? 2 : 3);
        KEXPECT_EQ(l.bytes[i], l.blocks[i] * block_of(TLSF_MIN + 100 * (size_t)i));
    }
#else
    KEXPECT_EQ(groups, 1);                                      /* no sites: one group */
    KEXPECT_EQ(l.n, 1);
    KEXPECT(l.site[0] == NULL);
    KEXPECT_EQ(l.blocks[0], 8);
    KEXPECT_EQ(l.bytes[0], stats().used_bytes);
#endif
    for (int i = 0; i < 9; i++)
        if (i != 4)
            kfree(p[i]);
    KEXPECT_EQ(kheap_check(), 0);
}

/* More sites than the table holds: the rest are counted under KHEAP_LEAK_OTHER. */
KTEST(test_leak_report_overflow)
{
#if DEBUG_BUILD
    reset(256 * 1024);
    enum { N = KHEAP_LEAK_SITES + 5 };
    void *p[N];
    /* distinct sites: kmalloc_aligned and krealloc record their own callers; use the
     * trampolines plus a writable site table: simplest is to forge sites in the trailers */
    for (int i = 0; i < N; i++) {
        p[i] = kmalloc(TLSF_MIN);               /* a TLSF block: its trailer at its end */
        struct kheap_block_info b;
        KEXPECT_EQ(kheap_inspect(p[i], &b), 1);
        uintptr_t t = (uintptr_t)p[i] - KHEAP_HEADER_SIZE + b.size - KH_TRAILER_SIZE;
        *(void **)(t + KH_TRAILER_SITE) = (void *)(uintptr_t)(0x1000 + 16 * i);
    }
    struct leak_log l = { 0 };
    KEXPECT_EQ(kheap_leak_report(leak_record, &l), KHEAP_LEAK_SITES + 1);
    KEXPECT_EQ(l.n, KHEAP_LEAK_SITES + 1);
    KEXPECT(l.site[KHEAP_LEAK_SITES] == KHEAP_LEAK_OTHER);
    KEXPECT_EQ(l.blocks[KHEAP_LEAK_SITES], 5);
    for (int i = 0; i < N; i++)
        kfree(p[i]);
    KEXPECT_EQ(kheap_check(), 0);
#else
    ktest_skip("allocation sites are recorded only with KHEAP_DEBUG=1 (test_kheap_harden_debug)");
#endif
}

/* ---- kheap_set_secret ---------------------------------------------------------------------- */

KTEST(test_set_secret)
{
    reset(64 * 1024);
    KEXPECT_EQ(kheap_add_region(arena + 128 * 1024, 8 * 1024), 0);
    live_make();
    kfree(live[3]);
    live[3] = NULL;
    KEXPECT(live_n[5] > SLAB_REQ_MAX);                          /* a TLSF block: a header */
    uint64_t *hdr = (uint64_t *)(live[5] - 8), old_word = *hdr;
    KEXPECT_EQ(kheap_set_secret(0x0123456789ABCDEFull), 0);
    KEXPECT_EQ(kheap_ctl.secret, 0x0123456789ABCDEFull);
    KEXPECT(*hdr != old_word);                                  /* re-stamped */
    KEXPECT_EQ(*hdr & KH_LOW_MASK, old_word & KH_LOW_MASK);     /* same size and flags */
    KEXPECT_EQ(kheap_check(), 0);
    live_verify();
    /* an old-secret header copied back is now a bad header */
    uint64_t new_word = *hdr;
    *hdr = old_word;
    t_kfree(live[5]);
    EXPECT_REPORT(0, KHEAP_E_BAD_HEADER, live[5], t_kfree);
    /* a corrupt heap is refused and nothing changes */
    KEXPECT_EQ(kheap_set_secret(42), KHEAP_E_CORRUPT);
    KEXPECT_EQ(kheap_ctl.secret, 0x0123456789ABCDEFull);
    *hdr = new_word;
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(kheap_set_secret(0), 0);                         /* any value, 0 too */
    KEXPECT_EQ(kheap_check(), 0);
    void *more = kmalloc(500);
    KEXPECT(more != NULL);
    live_verify();
    live_free();
    kfree(more);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(stats().used_bytes, 0);
}

/* ---- fault injection ----------------------------------------------------------------------- */

KTEST(test_fail_after)
{
    reset(64 * 1024);
    kheap_fail_after(4);
    /* a slab object, a TLSF block, ... */
    void *a = kmalloc(10), *t = kmalloc(TLSF_MIN + 500), *b = kcalloc(2, 8);
    void *c = kmalloc_aligned(64, 10);
    KEXPECT(a && t && b && c);
    KEXPECT(kmalloc(10) == NULL);                               /* the 5th and later fail */
    KEXPECT(kcalloc(1, 1) == NULL);
    KEXPECT(kmalloc_aligned(256, 1) == NULL);
    KEXPECT(krealloc(NULL, 5) == NULL);
    void *a2 = krealloc(a, 5);                                    /* shrinking needs nothing */
    KEXPECT(a2 == a);
    KEXPECT(krealloc(t, TLSF_MIN) == t);
    KEXPECT(krealloc(a, 5000) == NULL);                         /* growing does */
    KEXPECT(krealloc(t, 5000) == NULL);
    KEXPECT_EQ(stats().failed_allocs, 6);
    KEXPECT_EQ(stats().allocs, 4);
    kfree(b);                                                     /* frees still work */
    kheap_fail_after(-1);
    b = kmalloc(10);
    KEXPECT(b != NULL);
    kheap_fail_after(0);                                          /* 0: the very next fails */
    KEXPECT(kmalloc(1) == NULL);
    kheap_fail_after(-5);
    KEXPECT((a2 = krealloc(a, 5000)) != NULL);
    /* kheap_init turns injection off */
    kheap_fail_after(0);
    reset(64 * 1024);
    KEXPECT(kmalloc(1) != NULL);
    KEXPECT_EQ(rec.n, 0);
}

KTEST(test_fail_rate)
{
    reset(256 * 1024);
    int fails[2] = { 0, 0 };
    uint8_t pattern[2][1000];
    for (int round = 0; round < 2; round++) {
        kheap_fail_rate(250000, 7);                               /* 25 %, same seed twice */
        for (int i = 0; i < 1000; i++) {
            void *p = kmalloc(16);
            pattern[round][i] = p == NULL;
            fails[round] += p == NULL;
            kfree(p);
        }
    }
    KEXPECT(fails[0] > 180 && fails[0] < 320);
    KEXPECT_EQ(fails[0], fails[1]);
    KEXPECT(memcmp(pattern[0], pattern[1], sizeof pattern[0]) == 0);  /* deterministic */
    kheap_fail_rate(1000000, 1);                                  /* always */
    KEXPECT(kmalloc(1) == NULL);
    kheap_fail_rate(0, 0);                                        /* off */
    for (int i = 0; i < 100; i++) {
        void *p = kmalloc(16);
        KEXPECT(p != NULL);
        kfree(p);
    }
    KEXPECT_EQ(stats().failed_allocs, (uint64_t)(fails[0] + fails[1] + 1));
    KEXPECT_EQ(kheap_check(), 0);
}

/* krealloc and kcalloc failure paths leave the old block, its content, the stats and the
 * heap exactly as they were. */
KTEST(test_fail_paths_intact)
{
    reset(64 * 1024);
    live_make();
    const size_t np = TLSF_MIN + 300, nn = TLSF_MIN;             /* TLSF blocks */
    unsigned char *p = kmalloc(np);
    fill(p, np, 99);
    void *neighbour = kmalloc(nn);                                /* p cannot grow in place */
    KEXPECT((unsigned char *)neighbour == p + block_of(np));
    struct kheap_stats before = stats();
    int ck = kheap_check();
    KEXPECT_EQ(ck, 0);
    kheap_fail_after(0);
    KEXPECT(krealloc(p, 5000) == NULL);                         /* would move */
    KEXPECT(kcalloc(10, 10) == NULL);
    KEXPECT(t_kcalloc(SIZE_MAX / 2, 4) == NULL);                /* overflow: reported */
    EXPECT_REPORT(0, KHEAP_E_SIZE, NULL, t_kcalloc);
    memset(&rec, 0, sizeof rec);
    kfree(neighbour);                                             /* now it could grow in place */
    KEXPECT(krealloc(p, np + 100) == NULL);                     /* ... but is not allowed to */
    struct kheap_stats after = stats();
    KEXPECT(intact(p, np, 99));
    KEXPECT_EQ(ksize(p), usable_of(np));
    KEXPECT_EQ(after.failed_allocs, before.failed_allocs + 4);
    KEXPECT_EQ(after.used_bytes, before.used_bytes - block_of(nn));
    KEXPECT_EQ(after.allocs, before.allocs);
    KEXPECT_EQ(after.frees, before.frees + 1);
    KEXPECT_EQ(kheap_check(), 0);
    live_verify();
    /* a real out-of-memory move failure leaves p intact too */
    kheap_fail_after(-1);
    void *hog = kmalloc(stats().largest_free - META - 64);
    KEXPECT(hog != NULL);
    KEXPECT(krealloc(p, 20000) == NULL);
    KEXPECT(intact(p, np, 99));
    KEXPECT_EQ(kheap_check(), 0);
    kfree(hog);
    unsigned char *q = krealloc(p, 5000);
    KEXPECT(q != NULL && intact(q, np, 99));
    kfree(q);
    live_verify();
    live_free();
    KEXPECT_EQ(stats().used_bytes, 0);
    KEXPECT_EQ(rec.n, 0);
}

/* ---- growth hook --------------------------------------------------------------------------- */

static unsigned char *grow_base;
static size_t grow_slice, grow_offset, grow_limit, grow_calls, grow_last_need;

/* Consecutive slices of one arena: each extends the region before it. */
static size_t grow_consecutive(size_t need, void **start)
{
    grow_calls++;
    grow_last_need = need;
    size_t n = need > grow_slice ? (need + 4095) & ~(size_t)4095 : grow_slice;
    if (grow_offset + n > grow_limit)
        return 0;
    *start = grow_base + grow_offset;
    grow_offset += n;
    return n;
}

/* Separate arenas: a gap of 64 KiB between slices, so each is a new region. */
static size_t grow_separate(size_t need, void **start)
{
    grow_calls++;
    size_t n = need + KHEAP_REGION_MIN + 4096;
    if (grow_offset + n > grow_limit)
        return 0;
    *start = grow_base + grow_offset;
    grow_offset += n + 64 * 1024;
    return n;
}

static size_t grow_nothing(size_t need, void **start)
{
    (void)need;
    (void)start;
    grow_calls++;
    return 0;
}

/* The growth tests' first heap: a 16 KiB region after the control block (no room for a slab,
 * whose carving would ask the growth hook: the small requests of these tests, the bystanders,
 * are made before the hook is set). */
#define GROW_FIRST (KHEAP_CTL_SIZE + 16 * 1024)

static void grow_setup(size_t slice)
{
    grow_base = arena2;
    grow_slice = slice;
    grow_offset = 0;
    grow_limit = ARENA_SIZE;
    grow_calls = 0;
}

KTEST(test_grow_merge)
{
    /* the heap's one region ends where arena2 starts: consecutive slices extend it */
    reset_at(arena + ARENA_SIZE - GROW_FIRST, GROW_FIRST);
    live_make();
    grow_setup(32 * 1024);
    kheap_set_grow(grow_consecutive);
    /* case 1: the region's last block is used: the new block starts at the old sentinel */
    void *fill_up = kmalloc(stats().largest_free - META);
    KEXPECT(fill_up != NULL);
    KEXPECT_EQ(stats().free_bytes, 0);
    unsigned char *p = t_kmalloc(20000);
    KEXPECT(p != NULL);
    KEXPECT_EQ(grow_calls, 1);
    KEXPECT_EQ(grow_last_need, block_of(20000));
    KEXPECT(p >= arena2 - KH_SENTINEL_SIZE && p < arena2 + 32 * 1024);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.regions, 1);
    KEXPECT_EQ(s.total_bytes, GROW_FIRST + 32 * 1024 - INIT_OVERHEAD);
    KEXPECT_EQ(kheap_check(), 0);
    /* case 2: the last block is free: the new memory merges with it */
    size_t free_before = s.free_bytes;
    KEXPECT(free_before > 0);
    unsigned char *q = kmalloc(free_before + 1000);
    KEXPECT(q != NULL);
    KEXPECT_EQ(grow_calls, 2);
    KEXPECT(q == p + block_of(20000));                          /* it starts at the old block */
    s = stats();
    KEXPECT_EQ(s.regions, 1);
    KEXPECT_EQ(s.total_bytes, GROW_FIRST + 64 * 1024 - INIT_OVERHEAD);
    KEXPECT_EQ(kheap_check(), 0);
    fill(p, 20000, 1);
    fill(q, free_before + 1000, 2);
    live_verify();
    /* everything freed: one free block spans both arenas */
    kfree(fill_up);
    kfree(p);
    kfree(q);
    live_free();
    kheap_flush();
    s = stats();
    KEXPECT_EQ(s.largest_free, s.total_bytes);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(rec.n, 0);
    kheap_set_grow(NULL);
}

KTEST(test_grow_new_region)
{
    reset(GROW_FIRST);
    grow_setup(0);
    kheap_set_grow(grow_separate);
    void *p = kmalloc(100 * 1024), *q = kmalloc(50 * 1024), *r = kmalloc_aligned(4096, 30000);
    KEXPECT(p && q && r);
    KEXPECT_EQ(grow_calls, 3);
    KEXPECT_EQ(stats().regions, 4);
    KEXPECT_EQ((uintptr_t)r % 4096, 0);
    KEXPECT_EQ(kheap_check(), 0);
    /* a request that still fits nowhere after one growth fails (one retry, no loop) */
    grow_limit = grow_offset + 1024;                              /* too little memory left */
    KEXPECT(kmalloc(200 * 1024) == NULL);
    KEXPECT_EQ(grow_calls, 4);
    kfree(p);
    kfree(q);
    kfree(r);
    KEXPECT_EQ(kheap_check(), 0);
    kheap_set_grow(NULL);
}

KTEST(test_grow_nothing)
{
    reset(GROW_FIRST);
    grow_calls = 0;
    kheap_set_grow(grow_nothing);
    KEXPECT(kmalloc(64 * 1024) == NULL);
    KEXPECT_EQ(grow_calls, 1);                                  /* once, no loop */
    KEXPECT_EQ(stats().failed_allocs, 1);
    void *p = kmalloc(TLSF_MIN);            /* fits (a TLSF block): the hook is not asked */
    KEXPECT(p != NULL);
    KEXPECT_EQ(grow_calls, 1);
    /* kheap_init keeps the hook; a refused region (overlap) is no growth */
    KEXPECT_EQ(kheap_init(arena, GROW_FIRST), 0);
    KEXPECT(kmalloc(64 * 1024) == NULL);
    KEXPECT_EQ(grow_calls, 2);
    kheap_set_grow(NULL);
    KEXPECT(kmalloc(64 * 1024) == NULL);
    KEXPECT_EQ(grow_calls, 2);
    KEXPECT_EQ(kheap_check(), 0);
}

/* The growth hook is asked only after the front cache was flushed: freed small blocks that
 * together fit a request are merged and used first. */
KTEST(test_grow_after_flush)
{
    reset_at(arena + ARENA_SIZE - GROW_FIRST, GROW_FIRST);
    enum { N = 20 };
    void *p[N];
    for (int i = 0; i < N; i++)                     /* no room for a slab: TLSF blocks */
        p[i] = kmalloc(100);
    void *fill_up = kmalloc(stats().largest_free - META);
    KEXPECT(fill_up != NULL);
    KEXPECT_EQ(stats().free_bytes, 0);
    grow_setup(32 * 1024);
    kheap_set_grow(grow_consecutive);
    for (int i = 0; i < N; i++)
        kfree(p[i]);                                /* cached, the rest merged */
    KEXPECT_EQ(stats().free_bytes, N * block_of(100));
    void *q = kmalloc(N * block_of(100) - META);    /* all of them, merged */
    KEXPECT(q == p[0]);
    KEXPECT_EQ(grow_calls, 0);
    KEXPECT_EQ(stats().regions, 1);
    KEXPECT_EQ(stats().total_bytes, GROW_FIRST - INIT_OVERHEAD);
    KEXPECT_EQ(kheap_check(), 0);
    kfree(q);
    kfree(fill_up);
    KEXPECT_EQ(rec.n, 0);
    kheap_set_grow(NULL);
}

/* A randomized run through growth and fault injection together: the heap starts with a 16 KiB
 * region and grows in 4 KiB slices (or what a request needs: a slab's carving asks for a whole
 * slab) (every slice extends the one region), 5 % of allocation calls fail; patterns, ksize,
 * counters and kheap_check are verified after every operation. */
KTEST(test_grow_and_faults_random)
{
    enum { SLOTS = 64, OPS = 4000 };
    static struct { unsigned char *p; size_t n; } slot[SLOTS];
    reset_at(arena + ARENA_SIZE - GROW_FIRST, GROW_FIRST);
    grow_setup(4 * 1024);
    kheap_set_grow(grow_consecutive);
    kheap_fail_rate(50000, 12345);
    uint64_t rng = 99;
    unsigned live_n = 0, fails = 0;
    for (int op = 0; op < OPS && !ktest_failures(); op++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(rng >> 33), i = r % SLOTS;
        size_t n = 1 + (rng >> 20) % (1u << (1 + (rng >> 50) % 12));
        if (slot[i].p && (r & 0x300)) {                   /* free or resize a live block */
            KEXPECT(intact(slot[i].p, slot[i].n, i));
            if (r & 0x400) {
                kfree(slot[i].p);
                slot[i].p = NULL;
                live_n--;
                continue;
            }
            unsigned char *q = krealloc(slot[i].p, n);
            if (!q) {                                     /* failed: the old block unchanged */
                fails++;
                KEXPECT(intact(slot[i].p, slot[i].n, i));
                continue;
            }
            slot[i].p = q;
        } else if (!slot[i].p) {
            slot[i].p = (r & 1) ? kmalloc(n) : kmalloc_aligned((size_t)64 << (r % 4), n);
            if (!slot[i].p) {
                fails++;
                continue;
            }
            live_n++;
        } else {
            continue;
        }
        slot[i].n = n;
        KEXPECT(ksize(slot[i].p) >= n);
        fill(slot[i].p, n, i);
        int rc = kheap_check();
        if (!KEXPECT_EQ(rc, 0))
            break;
    }
    kheap_fail_rate(0, 0);
    struct kheap_stats st = stats();
    KEXPECT_EQ(st.regions, 1);
    KEXPECT(grow_calls > 3);
    KEXPECT(fails > 10 && st.failed_allocs >= fails);
    ktest_note("%u live, %zu growth calls, %u failures, %zu KiB in the heap", live_n, grow_calls,
               fails, st.total_bytes / 1024);
    for (unsigned i = 0; i < SLOTS; i++) {
        if (slot[i].p)
            KEXPECT(intact(slot[i].p, slot[i].n, i));
        kfree(slot[i].p);
        slot[i].p = NULL;
    }
    kheap_flush();
    st = stats();
    KEXPECT_EQ(st.used_bytes, 0);
    KEXPECT_EQ(st.largest_free, st.total_bytes);
    KEXPECT_EQ(st.errors, 0);
    KEXPECT_EQ(kheap_check(), 0);
    kheap_set_grow(NULL);
}

/* ---- fragmentation ------------------------------------------------------------------------- */

KTEST(test_fragmentation)
{
    reset(64 * 1024);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.fragmentation_ppm, 0);                         /* one free block */
    void *p[8];
    for (int i = 0; i < 8; i++)
        p[i] = kmalloc(1000);
    void *rest = kmalloc(stats().largest_free - META);
    KEXPECT(rest != NULL);
    KEXPECT_EQ(stats().fragmentation_ppm, 0);                   /* nothing free */
    for (int i = 0; i < 8; i += 2)
        kfree(p[i]);                                              /* four equal holes */
    s = stats();
    KEXPECT_EQ(s.free_bytes, 4 * block_of(1000));
    KEXPECT_EQ(s.largest_free, block_of(1000));
    KEXPECT_EQ(s.fragmentation_ppm, 750000);
    for (int i = 1; i < 8; i += 2)
        kfree(p[i]);
    kfree(rest);
    KEXPECT_EQ(stats().fragmentation_ppm, 0);
}


/* ---- misuse: each case reported with code, pointer and caller; bystanders intact ----------- */

static int a_global[8] __attribute__((aligned(16)));

/* After a misuse test: bystanders intact, kheap_check clean, everything freed. */
static void misuse_epilogue(void)
{
    live_verify();
    KEXPECT_EQ(kheap_check(), 0);
    live_free();
}

KTEST(test_misuse_double_free)
{
    reset(64 * 1024);
    live_make();
    /* a TLSF block, and a small one (a slab object, or a TLSF block where no slab fits) */
    unsigned char *a = kmalloc(TLSF_MIN), *o = kmalloc(100), *guard = kmalloc(TLSF_MIN);
    kfree(a);
    t_kfree(a);
    EXPECT_REPORT(0, KHEAP_E_DOUBLE_FREE, a, t_kfree);
    kfree(o);
    t_kfree(o);
    EXPECT_REPORT(1, KHEAP_E_DOUBLE_FREE, o, t_kfree);
    KEXPECT_EQ(stats().errors, 2);
    kfree(guard);
    misuse_epilogue();
}

KTEST(test_misuse_interior_pointer)
{
    reset(64 * 1024);
    live_make();
    unsigned char *a = kmalloc(TLSF_MIN + 300);                 /* a TLSF block */
    fill(a, 300, 77);
    int n = 0;
    for (size_t off = 16; off < 300; off += 48) {
        t_kfree(a + off);
        EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, a + off, t_kfree);
        n++;
    }
    KEXPECT(t_krealloc(a + 16, 10) == NULL);
    EXPECT_REPORT(n, KHEAP_E_BAD_HEADER, a + 16, t_krealloc);
    KEXPECT(intact(a, 300, 77));
    kfree(a);
    misuse_epilogue();
}

KTEST(test_misuse_stack_and_global)
{
    reset(64 * 1024);
    live_make();
    unsigned char on_stack[32] __attribute__((aligned(16)));
    t_kfree(on_stack);
    EXPECT_REPORT(0, KHEAP_E_BAD_PTR, on_stack, t_kfree);
    t_kfree(a_global);
    EXPECT_REPORT(1, KHEAP_E_BAD_PTR, a_global, t_kfree);
    KEXPECT_EQ(t_ksize(a_global), 0);
    EXPECT_REPORT(2, KHEAP_E_BAD_PTR, a_global, t_ksize);
    KEXPECT(t_krealloc(on_stack, 64) == NULL);
    EXPECT_REPORT(3, KHEAP_E_BAD_PTR, on_stack, t_krealloc);
    misuse_epilogue();
}

/* A pointer into a free block: into its body (the word before it is old data, or poison in
 * the debug build) and a stale pointer to a block merged into its free neighbour. */
KTEST(test_misuse_into_free_block)
{
    reset(64 * 1024);
    live_make();
    unsigned char *a = kmalloc(1000), *b = kmalloc(TLSF_MIN), *guard = kmalloc(TLSF_MIN);
    KEXPECT(b == a + block_of(1000));           /* TLSF blocks, side by side */
    fill(a, 1000, 5);
    kfree(a);
    t_kfree(a + 512);
    EXPECT_REPORT(0, DEBUG_BUILD ? KHEAP_E_DOUBLE_FREE : KHEAP_E_BAD_HEADER, a + 512, t_kfree);
    kfree(b);
    kheap_flush();                              /* merges into a: b's header is stale */
    t_kfree(b);
    EXPECT_REPORT(1, KHEAP_E_DOUBLE_FREE, b, t_kfree);
    KEXPECT(t_krealloc(b, 10) == NULL);
    EXPECT_REPORT(2, KHEAP_E_DOUBLE_FREE, b, t_krealloc);
    kfree(guard);
    misuse_epilogue();
}

/* Overflow by k bytes past ksize() of a: in the release build straight into b's header, which
 * kfree of either block then refuses (KHEAP_E_BAD_HEADER; the heap is left as it was, the test
 * repairs the header); in the debug build into a's canary (KHEAP_E_OVERFLOW, a is freed). */
static void overflow_by(size_t k)
{
    reset(64 * 1024);
    live_make();
    /* TLSF blocks; ksize = n (n + 8 is a multiple of 16), or n with 16 canary bytes */
    const size_t n = TLSF_MIN;
    unsigned char *a = kmalloc(n), *b = kmalloc(TLSF_MIN), *guard = kmalloc(TLSF_MIN);
    KEXPECT((unsigned char *)b == a + block_of(n));
    fill(b, 64, 9);
    uint64_t *bh = (uint64_t *)(b - KHEAP_HEADER_SIZE), saved = *bh;
    unsigned char saved_b[16];
    memcpy(saved_b, b, sizeof saved_b);
    memset(a + ksize(a), 0xEE, k);
#if DEBUG_BUILD
    KEXPECT_EQ(kheap_check(), KHEAP_E_OVERFLOW);
    t_kfree(a);
    EXPECT_REPORT(0, KHEAP_E_OVERFLOW, a, t_kfree);
    KEXPECT_EQ(kheap_check(), 0);              /* a is freed: its canary is poison now */
    KEXPECT(intact(b, 64, 9));
    (void)bh, (void)saved;
#else
    KEXPECT_EQ(kheap_check(), KHEAP_E_CORRUPT);
    t_kfree(a);
    EXPECT_REPORT(0, KHEAP_E_BAD_HEADER, a, t_kfree);
    t_kfree(b);
    EXPECT_REPORT(1, KHEAP_E_BAD_HEADER, b, t_kfree);
    KEXPECT(t_krealloc(a, 5000) == NULL);
    EXPECT_REPORT(2, KHEAP_E_BAD_HEADER, a, t_krealloc);
    KEXPECT_EQ(t_ksize(b), 0);
    EXPECT_REPORT(3, KHEAP_E_BAD_HEADER, b, t_ksize);
    KEXPECT_EQ(kheap_check(), KHEAP_E_CORRUPT);  /* the corruption is still there: reported */
    *bh = saved;                                 /* repaired: the heap never changed */
    memcpy(b, saved_b, sizeof saved_b);
    KEXPECT_EQ(kheap_check(), 0);
    kfree(a);
#endif
    kfree(b);
    kfree(guard);
    misuse_epilogue();
}

KTEST(test_misuse_overflow_1) { overflow_by(1); }
KTEST(test_misuse_overflow_8) { overflow_by(8); }
KTEST(test_misuse_overflow_16) { overflow_by(16); }

/* The debug build also catches a write past the whole block into the next header, like the
 * release build: the canary is intact then, the neighbour's header is not. */
KTEST(test_misuse_overflow_past_block)
{
    reset(64 * 1024);
    live_make();
    unsigned char *a = kmalloc(TLSF_MIN + 100), *b = kmalloc(TLSF_MIN), *guard = kmalloc(TLSF_MIN);
    KEXPECT(b == a + block_of(TLSF_MIN + 100));   /* TLSF blocks, side by side */
    uint64_t *bh = (uint64_t *)(b - KHEAP_HEADER_SIZE), saved = *bh;
    *(volatile unsigned char *)bh ^= 0x10;        /* a size bit of b's header */
    t_kfree(a);
    EXPECT_REPORT(0, KHEAP_E_BAD_HEADER, a, t_kfree);
    KEXPECT_EQ(kheap_check(), KHEAP_E_CORRUPT);
    *bh = saved;
    kfree(a);
    kfree(b);
    kfree(guard);
    misuse_epilogue();
}

/* Write after free: reported when the memory is handed out again (debug build), by kmalloc and
 * by krealloc growing in place; kheap_check reports it before. The release build cannot see it:
 * the block is simply handed out again. */
KTEST(test_misuse_write_after_free)
{
#if DEBUG_BUILD
    reset(64 * 1024);
    live_make();
    /* TLSF blocks (slab objects: test_kheap_slab); a freed block of m bytes heads the list
     * kmalloc(m) takes (kheap_test.h) */
    const size_t m = TLSF_FIT;
    unsigned char *a = kmalloc(m), *guard = kmalloc(m);
    KEXPECT(guard == a + block_of(m));          /* a's neighbours stay used */
    kfree(a);
    a[50] = 1;                                  /* the dangling write */
    KEXPECT_EQ(kheap_check(), KHEAP_E_USE_AFTER_FREE);
    unsigned char *b = t_kmalloc(m);
    KEXPECT(b == a);
    EXPECT_REPORT(0, KHEAP_E_USE_AFTER_FREE, a, t_kmalloc);
    KEXPECT_EQ(kheap_check(), 0);
    /* through krealloc growing into a free right neighbour that was written after free */
    const size_t nc = TLSF_MIN + 200;
    unsigned char *c = kmalloc(nc), *d = kmalloc(nc), *guard2 = kmalloc(TLSF_MIN);
    KEXPECT(d == c + block_of(nc) && guard2 == d + block_of(nc));
    fill(c, nc, 3);
    kfree(d);
    kheap_flush();                              /* d free, not cached: c can grow into it */
    d[100] = 0;
    unsigned char *c2 = t_krealloc(c, nc + 150);
    KEXPECT(c2 == c);
    EXPECT_REPORT(1, KHEAP_E_USE_AFTER_FREE, d, t_krealloc);
    KEXPECT(intact(c2, nc, 3));
    /* through kcalloc: the block comes back zeroed all the same */
    unsigned char *e = kmalloc(m), *guard3 = kmalloc(m);
    KEXPECT(guard3 == e + block_of(m));
    kfree(e);
    e[KH_FREE_BODY] = 0;                        /* the first byte after the list links */
    unsigned char *e2 = t_kcalloc(1, m);
    KEXPECT(e2 == e);
    EXPECT_REPORT(2, KHEAP_E_USE_AFTER_FREE, e, t_kcalloc);
    KEXPECT(e2 && e2[KH_FREE_BODY] == 0 && e2[m - 1] == 0);
    KEXPECT_EQ(kheap_check(), 0);
    /* byte 0, the list link itself: reported as a write after free too; the block is then
     * leaked (its list detached) and the call served from elsewhere, zeroed */
    unsigned char *hl = kmalloc(m), *h = kmalloc(m), *hr = kmalloc(m);
    KEXPECT(h == hl + block_of(m) && hr == h + block_of(m));
    kfree(h);                                   /* used on both sides: a free block of its own */
    kheap_flush();                              /* on the free lists, not in the cache */
    h[0] ^= 0x10;
    KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
    unsigned char *h2 = t_kcalloc(1, m);
    KEXPECT(h2 != NULL && h2 != h);
    EXPECT_REPORT(3, KHEAP_E_USE_AFTER_FREE, h, t_kcalloc);
    KEXPECT(h2 && h2[0] == 0 && h2[m - 1] == 0);
    KEXPECT_EQ(kheap_check(), 0);
    kfree(h2);
    kfree(hl);
    kfree(hr);
    kfree(e2);
    kfree(guard3);
    kfree(c2);
    kfree(b);
    kfree(guard);
    kfree(guard2);
    misuse_epilogue();
#else
    ktest_skip("writes after free are detected only with KHEAP_DEBUG=1 (test_kheap_harden_debug)");
#endif
}

/* A free block's list links overwritten: every path that would unlink it as a neighbour refuses
 * and reports KHEAP_E_FREELIST (kfree of a neighbour, krealloc growing into it); the heap stays
 * as it was, check reports the corruption. Links are stored encoded (kheap_layout.h), so a
 * plain pointer, a pointer outside the heap and 0 are all caught. kmalloc and kmalloc_aligned
 * that find it heading their list report it, detach the list (the block is leaked) and are
 * served from another list. */
KTEST(test_misuse_freelist_link)
{
    reset(64 * 1024);
    live_make();
    /* TLSF blocks side by side; a kmalloc(m) or a kmalloc_aligned of a block of b's size takes
     * the head of b's list (kheap_test.h, TLSF_FIT) */
    const size_t m = TLSF_FIT;
    unsigned char *a = kmalloc(m), *b = kmalloc(m), *c = kmalloc(m);
    unsigned char *guard = kmalloc(TLSF_MIN);
    KEXPECT(b == a + block_of(m) && c == b + block_of(m) && guard == c + block_of(m));
    kfree(b);
    kheap_flush();                              /* b on the free lists, not in the cache */
    /* b is alone on its list: a wrong next link is caught by next->prev != b ... */
    uint64_t *next = (uint64_t *)b, *prev = (uint64_t *)(b + 8);
    uint64_t saved_next = *next, saved_prev = *prev;
    uint64_t bad[] = { (uint64_t)(uintptr_t)(a - KHEAP_HEADER_SIZE), 0,
                       (uint64_t)(uintptr_t)a_global, saved_next ^ 0x10 };
    int n = 0;
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        *next = bad[i];
        KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
        t_kfree(a);                             /* would merge with b */
        EXPECT_REPORT(n, KHEAP_E_FREELIST, a, t_kfree);
        n++;
        t_kfree(c);
        EXPECT_REPORT(n, KHEAP_E_FREELIST, c, t_kfree);
        n++;
        KEXPECT(t_krealloc(a, m + 100) == NULL);  /* would grow into b */
        EXPECT_REPORT(n, KHEAP_E_FREELIST, a, t_krealloc);
        n++;
        *next = saved_next;
        KEXPECT_EQ(kheap_check(), 0);
        /* ... a prev link by prev->next != b */
        *prev = bad[i] == saved_next ? saved_prev ^ 0x10 : bad[i];
        t_kfree(a);
        EXPECT_REPORT(n, KHEAP_E_FREELIST, a, t_kfree);
        n++;
        KEXPECT_EQ(kheap_check(), KHEAP_E_FREELIST);
        *prev = saved_prev;
        KEXPECT_EQ(kheap_check(), 0);
    }
    /* kmalloc_aligned whose block (n + align + 16) is exactly b's size takes b's list: b is
     * reported (the debug build: its own link written after free), its list detached */
    const int uaf = DEBUG_BUILD ? KHEAP_E_USE_AFTER_FREE : KHEAP_E_FREELIST;
    *next = 0;
    unsigned char *d = t_kmalloc_aligned(64, block_of(m) - 64 - KHEAP_ALIGN - META);
    KEXPECT(d != NULL && d != b && (uintptr_t)d % 64 == 0);
    EXPECT_REPORT(n, uaf, b, t_kmalloc_aligned);
    n++;
    KEXPECT_EQ(kheap_check(), 0);             /* b is a leaked block of a detached list */
    /* the same through kmalloc with another block of the same size, freed in c's place:
     * kfree(c) is refused (c's left neighbour is b), so free a block elsewhere */
    unsigned char *el = kmalloc(m), *e = kmalloc(m), *er = kmalloc(m);
    KEXPECT(er == e + block_of(m));             /* (el takes b, back on its list) */
    kfree(e);                                   /* used on both sides: a free block of its own */
    kheap_flush();                              /* on the free lists, not in the cache */
    *(uint64_t *)(e + 8) ^= 0x10;               /* its prev link */
    unsigned char *f = t_kmalloc(m);
    KEXPECT(f != NULL && f != e);
    EXPECT_REPORT(n, uaf, e, t_kmalloc);
    n++;
    KEXPECT_EQ(kheap_check(), 0);
    struct kheap_stats s = stats();
    KEXPECT_EQ(s.used_bytes + s.free_bytes, s.total_bytes);
    KEXPECT_EQ(rec.n, n);
    kfree(f);
    kfree(d);
    kfree(el);
    kfree(er);
    kfree(guard);
    misuse_epilogue();                          /* a and c stay live: their neighbour is b */
}

/* krealloc that must move while the left neighbour it would merge with on free is corrupt: the
 * call reports KHEAP_E_BAD_HEADER and returns NULL before allocating anything; p stays live with
 * its data, nothing is leaked, and once the header is repaired p can be moved and freed. */
KTEST(test_misuse_realloc_move_corrupt_neighbour)
{
    reset(64 * 1024);
    live_make();
    /* blocks above any front-cache size: kfree(a) really frees (and would merge) */
    const size_t n = 600;
    unsigned char *a = kmalloc(n), *b = kmalloc(n), *g = kmalloc(n);
    KEXPECT(b == a + block_of(n) && g == b + block_of(n));
    fill(b, n, 7);
    kfree(a);                                   /* b's left neighbour is free */
    uint64_t *ah = (uint64_t *)(a - KHEAP_HEADER_SIZE), saved = *ah;
    *ah ^= 0x20;                                /* a stray write into it */
    struct kheap_stats s0 = stats();
    KEXPECT(t_krealloc(b, 4000) == NULL);
    EXPECT_REPORT(0, KHEAP_E_BAD_HEADER, b, t_krealloc);
    struct kheap_stats s1 = stats();
    KEXPECT_EQ(s1.allocs, s0.allocs);         /* nothing allocated, nothing freed */
    KEXPECT_EQ(s1.frees, s0.frees);
    KEXPECT_EQ(s1.used_bytes, s0.used_bytes);
    KEXPECT_EQ(kheap_check(), KHEAP_E_CORRUPT);
    *ah = saved;
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT(intact(b, n, 7));
    KEXPECT_EQ(ksize(b), usable_of(n));
    unsigned char *q = krealloc(b, 4000);       /* repaired: the move goes through */
    KEXPECT(q != NULL && q != b && intact(q, n, 7));
    KEXPECT_EQ(rec.n, 1);
    kfree(q);
    kfree(g);
    misuse_epilogue();
}

/* Debug build: an overflow that smashes the canary and the trailer's recorded size, then a
 * krealloc that moves: KHEAP_E_OVERFLOW, and the move keeps every byte the old block held
 * before its trailer (the recorded size is not trusted), so none of the user's data is lost. */
KTEST(test_misuse_realloc_move_after_overflow)
{
#if DEBUG_BUILD
    reset(64 * 1024);
    live_make();
    const size_t n = TLSF_MIN + 200;            /* a TLSF block: its trailer at its end */
    unsigned char *a = kmalloc(n), *g = kmalloc(TLSF_MIN);
    KEXPECT(g == a + block_of(n));              /* a cannot grow in place: krealloc moves */
    fill(a, n, 9);
    size_t s = block_of(n), room = s - KHEAP_HEADER_SIZE - KH_TRAILER_SIZE;
    unsigned char *trailer = a - KHEAP_HEADER_SIZE + s - KH_TRAILER_SIZE;
    memset(a + n, 0x11, (size_t)(trailer - (a + n)) + 1);  /* canary and the size's low byte */
    KEXPECT_EQ(kheap_check(), KHEAP_E_OVERFLOW);
    unsigned char *q = t_krealloc(a, 4 * n);
    EXPECT_REPORT(0, KHEAP_E_OVERFLOW, a, t_krealloc);
    KEXPECT(q != NULL && q != a);
    KEXPECT(q && intact(q, n, 9));            /* all n bytes, not the smashed size */
    for (size_t i = n; q && i < room; i++)      /* and the overflowing bytes up to the trailer */
        if (q[i] != 0x11)
            KEXPECT(!"overflowed byte not kept");
    KEXPECT_EQ(kheap_check(), 0);
    kfree(q);
    kfree(g);
    misuse_epilogue();
#else
    ktest_skip("the canary and the trailer exist only with KHEAP_DEBUG=1 (test_kheap_harden_debug)");
#endif
}

KTEST(test_misuse_calloc_overflow)
{
    reset(64 * 1024);
    live_make();
    struct { size_t n, size; } cases[] = {
        { SIZE_MAX / 2 + 1, 2 }, { SIZE_MAX, SIZE_MAX }, { (size_t)1 << 32, (size_t)1 << 32 },
        { 3, SIZE_MAX / 3 + 1 },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        KEXPECT(t_kcalloc(cases[i].n, cases[i].size) == NULL);
        EXPECT_REPORT((int)i, KHEAP_E_SIZE, NULL, t_kcalloc);
    }
    KEXPECT_EQ(stats().failed_allocs, 4);
    misuse_epilogue();
}

KTEST(test_misuse_size_max)
{
    reset(64 * 1024);
    live_make();
    size_t sizes[] = { SIZE_MAX, SIZE_MAX - 7, SIZE_MAX - 16, (size_t)KHEAP_MAX_ALLOC + 1 };
    int n = 0;
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        KEXPECT(t_kmalloc(sizes[i]) == NULL);
        EXPECT_REPORT(n, KHEAP_E_SIZE, NULL, t_kmalloc);
        n++;
        KEXPECT(t_krealloc(live[0], sizes[i]) == NULL);          /* a slab object */
        EXPECT_REPORT(n, KHEAP_E_SIZE, live[0], t_krealloc);
        n++;
        KEXPECT(t_krealloc(live[2], sizes[i]) == NULL);          /* a TLSF block */
        EXPECT_REPORT(n, KHEAP_E_SIZE, live[2], t_krealloc);
        n++;
        KEXPECT(t_kmalloc_aligned(64, sizes[i]) == NULL);
        EXPECT_REPORT(n, KHEAP_E_SIZE, NULL, t_kmalloc_aligned);
        n++;
    }
    KEXPECT(kmalloc(KHEAP_MAX_ALLOC) == NULL);  /* not absurd, only too big: no report */
    KEXPECT_EQ(rec.n, n);
    misuse_epilogue();
}

KTEST(test_misuse_bad_alignment)
{
    reset(64 * 1024);
    live_make();
    size_t aligns[] = { 0, 3, 24, 48, 4095, SIZE_MAX, (size_t)1 << 63 };
    for (unsigned i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        KEXPECT(t_kmalloc_aligned(aligns[i], 10) == NULL);
        EXPECT_REPORT((int)i, KHEAP_E_INVAL, NULL, t_kmalloc_aligned);
    }
    misuse_epilogue();
}
