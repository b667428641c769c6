/*
 * tests/host/test_kheap_slab.c -- host tests of kheap's slab tier and per-CPU caches, written
 * as an adversary: the class geometry (alignment, ksize, address order, one 16 KiB window per
 * slab), every misuse of a slab object reported exactly (code, pointer, caller) with the heap
 * still sound afterwards, stray writes into a slab's check word, its state bytes and the
 * per-CPU stacks, krealloc across classes and tiers, the cpu hook (its validation, threads with
 * cross-thread frees, the lock path, the drain request of kheap_flush), running out of memory
 * (the reclaim of spare slabs and stacks) and the utilisation of a full heap. Built twice:
 * test_kheap_slab (release) and test_kheap_slab_debug (-DKHEAP_DEBUG=1: poison, canaries and
 * allocation sites; the release-only stack tests report `# SKIP` there, the debug-only ones in
 * the release build). TAP version 13 (tests/ktest.h).
 *
 * White-box parts read the layout of mm/kheap_layout.h (struct kh_ctl, kh_slab, kh_cpu) and the
 * class table kh_slab_class (mm/kheap_slab.inc); the contract they check is mm/kheap.h's.
 * Tests marked "ADVERSARIAL" go beyond the lead's brief (see the comment at each).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kheap_test.h"

/* The class table (rodata of mm/kheap_slab.inc; hidden, but a static link sees it). */
extern const struct kh_class kh_slab_class[KH_SLAB_CLASSES];

/* The instance calls and kheap_flush_in with a known return address (kheap_test.h has the k*). */
TRAMPOLINE(t_kheap_alloc, kheap_alloc)
TRAMPOLINE(t_kheap_free, kheap_free)
TRAMPOLINE(t_kheap_usable, kheap_usable)
TRAMPOLINE(t_kheap_realloc, kheap_realloc)
TRAMPOLINE(t_kheap_flush_in, kheap_flush_in)
void  *t_kheap_alloc(kheap_t *h, size_t n);
void   t_kheap_free(kheap_t *h, void *p);
size_t t_kheap_usable(kheap_t *h, const void *p);
void  *t_kheap_realloc(kheap_t *h, void *p, size_t n);
void   t_kheap_flush_in(kheap_t *h);

/* ---- memory ---------------------------------------------------------------------------------- */

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)
static unsigned char mem[40 * MiB] __attribute__((aligned(KH_SLAB_SIZE)));
#define arena  mem                      /* the default heap's home (up to 8 MiB) */
#define arena2 (mem + 8 * MiB)          /* heaps of kheap_create (8 MiB each) */
#define arena3 (mem + 16 * MiB)
#define arena4 (mem + 24 * MiB)         /* the threads test (16 MiB) */

static void reset(size_t size) { reset_at(arena, size); }

/* A heap of kheap_create over [m, m + size) with the recording error handler, nothing else. */
static kheap_t *make_heap(unsigned char *m, size_t size)
{
    kheap_t *h = kheap_create(m, size);
    KEXPECT(h != NULL);
    struct kheap_hooks hk = { .error = record };
    if (h)
        KEXPECT_EQ(kheap_set_hooks(h, &hk), 0);
    memset(&rec, 0, sizeof rec);
    return h;
}

static struct kheap_stats hstats(kheap_t *h)
{
    struct kheap_stats s;
    kheap_stats(h, &s);
    return s;
}

/* ---- the contract's classes, written from the brief (not from the table) ---------------------- */

/* Bytes of an object beyond the request: the debug build's trailer and canary. */
#define SLAB_EXTRA   (DEBUG_BUILD ? KHEAP_DEBUG_EXTRA : 0)
/* The largest request the slab tier serves: 512 release, 495 debug (kheap_test.h may have it). */
#ifndef SLAB_REQ_MAX
#define SLAB_REQ_MAX (KH_SLAB_MAX - SLAB_EXTRA)
#endif
#define SLAB_MASK    (~(uintptr_t)(KH_SLAB_SIZE - 1))

/* 16..128 step 16, 160..256 step 32, 320..512 step 64. */
static size_t class_size(unsigned c)
{
    if (c < 8)
        return (c + 1) * 16;
    if (c < 12)
        return 128 + (c - 7) * 32;
    return 256 + (c - 11) * 64;
}

/* The smallest class of objects of at least b bytes (KH_SLAB_CLASSES if none). */
static unsigned class_for_bytes(size_t b)
{
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++)
        if (class_size(c) >= b)
            return c;
    return KH_SLAB_CLASSES;
}

static unsigned class_of_req(size_t n) { return class_for_bytes(n + SLAB_EXTRA); }
/* ksize of kmalloc(n), n <= SLAB_REQ_MAX: the class size (release) or n (debug). */
static size_t ksize_of_req(size_t n) { return DEBUG_BUILD ? n : class_size(class_of_req(n)); }
/* Can a request land in class c in this build (the debug build needs 17 bytes of room)? */
static int class_usable(unsigned c) { return !DEBUG_BUILD || class_size(c) >= KHEAP_DEBUG_EXTRA; }
/* for every class this build can serve: FOR_EACH_CLASS(c) { ... } */
#define FOR_EACH_CLASS(c)                                                                    \
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++)                                          \
        if (class_usable(c))
/* The largest and the smallest request of class c. */
static size_t req_max(unsigned c) { return class_size(c) - SLAB_EXTRA; }
static size_t req_min(unsigned c)
{
    return c == 0 || !class_usable(c - 1) ? 0 : req_max(c - 1) + 1;
}

/* Geometry of class c as the table has it (checked against the brief in test_slab_table). */
static size_t cls_first(unsigned c) { return kh_slab_class[c].first; }
static size_t cls_cap(unsigned c) { return kh_slab_class[c].cap; }

static uintptr_t slab_of(const void *p) { return (uintptr_t)p & SLAB_MASK; }
static struct kh_slab *slab_hdr(const void *p) { return (struct kh_slab *)slab_of(p); }

/* Object i of the slab of class c at s. */
static unsigned char *obj_at(uintptr_t s, unsigned c, size_t i)
{
    return (unsigned char *)(s + cls_first(c) + i * class_size(c));
}

/* Index of p in its slab (class c), or -1 if p is not exactly an object. */
static long obj_index(const void *p, unsigned c)
{
    uintptr_t s = slab_of(p), a = (uintptr_t)p;
    if (a < s + cls_first(c))
        return -1;
    size_t off = a - s - cls_first(c);
    if (off % class_size(c) || off / class_size(c) >= cls_cap(c))
        return -1;
    return (long)(off / class_size(c));
}

/* Does s hold the check word of a slab of heap c (class any)? s must be readable. */
static int is_slab(const struct kh_ctl *c, uintptr_t s)
{
    const struct kh_slab *sl = (const struct kh_slab *)s;
    return sl->cls < KH_SLAB_CLASSES &&
           sl->check == (((uint64_t)(s ^ sl->cls) * KH_HASH_K1) ^ c->slab_key);
}

/* The state byte of the 16-byte granule p starts (one per granule: kheap_layout.h). */
static uint8_t *state_byte(const void *p)
{
    return &slab_hdr(p)->state[((uintptr_t)p & (KH_SLAB_SIZE - 1)) / KHEAP_ALIGN];
}

/* The state of object p of class c (0xEE: p is no object of its slab). */
static uint8_t state_of(const void *p, unsigned c)
{
    return obj_index(p, c) < 0 ? 0xEE : *state_byte(p);
}

/* ---- patterns -------------------------------------------------------------------------------- */

static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed * 31 + i * 7 + 1);
}

static int intact(const void *p, size_t n, unsigned seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed * 31 + i * 7 + 1))
            return 0;
    return 1;
}

/* One new report since `before` with one of two codes, pointer ptr_, through trampoline via. */
#define EXPECT_REPORT2(before, code1, code2, ptr_, via)                                     \
    do {                                                                                    \
        KEXPECT_EQ(rec.n, (before) + 1);                                                    \
        KEXPECT_MSG(rec.code == (code1) || rec.code == (code2),                             \
                    "report code %d (%s), expected %s or %s", rec.code,                     \
                    kheap_strerror(rec.code), #code1, #code2);                              \
        KEXPECT_EQ(rec.ptr, ptr_);                                                          \
        KEXPECT_EQ(rec.caller, via##_ret);                                                  \
    } while (0)

/* The default heap is sound and still serves every class and a few blocks, and gives them back. */
static void expect_heap_works(void)
{
    KEXPECT_EQ(kheap_check(), 0);
    void *p[KH_SLAB_CLASSES + 3] = { 0 };
    FOR_EACH_CLASS(c) {
        p[c] = kmalloc(req_max(c));
        KEXPECT_MSG(p[c] != NULL, "kmalloc(%zu) after misuse", req_max(c));
        if (p[c])
            fill(p[c], req_max(c), c);
    }
    p[KH_SLAB_CLASSES] = kmalloc(1000);
    p[KH_SLAB_CLASSES + 1] = kmalloc(5000);
    p[KH_SLAB_CLASSES + 2] = kmalloc(1);
    for (unsigned i = KH_SLAB_CLASSES; i < KH_SLAB_CLASSES + 3; i++)
        KEXPECT(p[i] != NULL);
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++)
        if (p[c] && !intact(p[c], req_max(c), c))
            KEXPECT_MSG(0, "class %u object damaged", c);
    for (unsigned i = 0; i < KH_SLAB_CLASSES + 3; i++)
        kfree(p[i]);
    KEXPECT_EQ(kheap_check(), 0);
}

/* The same for a heap of kheap_create. */
static void expect_heap_works_in(kheap_t *h)
{
    KEXPECT_EQ(kheap_verify(h), 0);
    void *p[KH_SLAB_CLASSES + 2] = { 0 };
    FOR_EACH_CLASS(c) {
        p[c] = kheap_alloc(h, req_max(c));
        KEXPECT_MSG(p[c] != NULL, "kheap_alloc(%zu) after misuse", req_max(c));
        if (p[c])
            fill(p[c], req_max(c), c + 100);
    }
    p[KH_SLAB_CLASSES] = kheap_alloc(h, 1000);
    p[KH_SLAB_CLASSES + 1] = kheap_alloc(h, 3);
    KEXPECT(p[KH_SLAB_CLASSES] != NULL && p[KH_SLAB_CLASSES + 1] != NULL);
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++)
        if (p[c] && !intact(p[c], req_max(c), c + 100))
            KEXPECT_MSG(0, "class %u object damaged", c);
    for (unsigned i = 0; i < KH_SLAB_CLASSES + 2; i++)
        kheap_free(h, p[i]);
    KEXPECT_EQ(kheap_verify(h), 0);
}

/* =============================================================================================
 * Geometry
 * ============================================================================================= */

/* The table agrees with the brief and kheap_layout.h: sizes, object 0 at KH_SLAB_FIRST (16-aligned,
 * after the state bytes), the last object inside the slab's block (which ends at S + 16384 - 8),
 * and cap the most that fit (one more would not); every granule where no object starts is
 * KH_OBJ_NONE in a fresh slab, every object start FREE. */
KTEST(test_slab_table)
{
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++) {
        const struct kh_class *k = &kh_slab_class[c];
        KEXPECT_EQ(k->size, class_size(c));
        KEXPECT_EQ(k->first, KH_SLAB_FIRST);
        KEXPECT_EQ(k->first % KHEAP_ALIGN, 0);
        KEXPECT(k->first >= KH_SLAB_HDR + KH_SLAB_GRANULES);
        KEXPECT(k->first + (uint64_t)k->cap * k->size <= KH_SLAB_SIZE - KHEAP_HEADER_SIZE);
        KEXPECT_MSG(k->first + (k->cap + 1ull) * k->size > KH_SLAB_SIZE - KHEAP_HEADER_SIZE,
                    "class %u: cap %u is not the most that fit", c, k->cap);
    }
    reset(2 * MiB);
    FOR_EACH_CLASS(c) {
        unsigned char *p = kmalloc(req_max(c));
        if (!KEXPECT(p != NULL))
            continue;
        const struct kh_slab *sl = slab_hdr(p);
        unsigned bad = 0;
        for (unsigned g = 0; g < KH_SLAB_GRANULES; g++) {
            unsigned char *a = (unsigned char *)sl + g * KHEAP_ALIGN;
            long i = obj_index(a, c);
            uint8_t want = i < 0 ? KH_OBJ_NONE : a == p ? KH_OBJ_LIVE
                         : DEBUG_BUILD || i >= KH_MAG_BATCH ? KH_OBJ_FREE : KH_OBJ_CACHED;
            if (sl->state[g] != want && bad++ < 3)
                KEXPECT_MSG(0, "class %u granule %u: state %u, expected %u", c, g, sl->state[g],
                            want);
        }
    }
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(class_size(KH_SLAB_CLASSES - 1), KH_SLAB_MAX);
    KEXPECT_EQ(SLAB_REQ_MAX, DEBUG_BUILD ? 495 : 512);
}

/* Every request 0..SLAB_REQ_MAX is a slab object: 16-aligned, ksize the class size (release) or
 * n (debug), exactly an object of a slab of its class (check word, index), kheap_inspect agrees;
 * all of them at once do not overlap. The next requests are TLSF blocks. */
KTEST(test_slab_small_requests)
{
    enum { N = SLAB_REQ_MAX + 1, BIG = 16 };
    static unsigned char *p[N + BIG];
    reset(4 * MiB);
    for (size_t n = 0; n < N; n++) {
        p[n] = kmalloc(n);
        if (!KEXPECT_MSG(p[n] != NULL, "kmalloc(%zu) failed", n))
            continue;
        unsigned c = class_of_req(n);
        KEXPECT_MSG((uintptr_t)p[n] % KHEAP_ALIGN == 0, "kmalloc(%zu) = %p misaligned", n, p[n]);
        KEXPECT_MSG(ksize(p[n]) == ksize_of_req(n), "ksize(kmalloc(%zu)) = %zu, expected %zu", n,
                    ksize(p[n]), ksize_of_req(n));
        uintptr_t s = slab_of(p[n]);
        KEXPECT_MSG(is_slab(&kheap_ctl, s), "kmalloc(%zu) = %p: no slab at %#lx", n, p[n], s);
        KEXPECT_MSG(slab_hdr(p[n])->cls == c, "kmalloc(%zu): slab class %u, expected %u", n,
                    slab_hdr(p[n])->cls, c);
        KEXPECT_MSG(obj_index(p[n], c) >= 0, "kmalloc(%zu) = %p: not exactly an object", n, p[n]);
        KEXPECT_EQ(state_of(p[n], c), KH_OBJ_LIVE);
        struct kheap_block_info b;
        KEXPECT_EQ(kheap_inspect(p[n], &b), 1);
        KEXPECT(b.ptr == p[n]);
        KEXPECT_EQ(b.used, 1);
        KEXPECT_EQ(b.size, class_size(c));
        KEXPECT_EQ(b.usable, ksize_of_req(n));
        KEXPECT(b.slab == (void *)s);               /* inspect names the slab */
        fill(p[n], ksize(p[n]), (unsigned)n);
        if (ktest_failures() > 20)
            break;
    }
    for (size_t n = 0; n < N; n++)
        if (p[n] && !intact(p[n], ksize_of_req(n), (unsigned)n))
            KEXPECT_MSG(0, "object of kmalloc(%zu) overwritten by another", n);
    /* past the tier: blocks of the TLSF tier (a header before them, ksize from the block) */
    for (size_t i = 0; i < BIG; i++) {
        size_t n = N + i;
        p[N + i] = kmalloc(n);
        if (!KEXPECT(p[N + i] != NULL))
            continue;
        struct kheap_block_info b;
        KEXPECT_EQ(kheap_inspect(p[N + i], &b), 1);
        KEXPECT_MSG(b.size == block_of(n), "kmalloc(%zu): block of %zu, expected a TLSF block of "
                    "%zu", n, b.size, block_of(n));
        KEXPECT(b.slab == NULL);
        KEXPECT_EQ(ksize(p[N + i]), DEBUG_BUILD ? n : block_of(n) - KHEAP_HEADER_SIZE);
    }
    KEXPECT_EQ(kheap_check(), 0);
    for (size_t i = 0; i < N + BIG; i++)
        kfree(p[i]);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(stats().used_bytes, 0);
    KEXPECT_EQ(rec.n, 0);
}

/* A fresh heap hands out a class's objects in address order: object 0 of a new slab first,
 * then each next one right after the last, all inside one 16 KiB window per slab (after the
 * header, ending by S + 16384 - 8); a slab is used up before the next. After freeing half of
 * them in random order and kheap_flush, allocations come back lowest address first. */
KTEST(test_slab_address_order)
{
    static unsigned char *p[3000];
    uint64_t rng = 0x5EED1234;
    FOR_EACH_CLASS(c) {
        reset(4 * MiB);
        size_t n = req_max(c), size = class_size(c), cap = cls_cap(c);
        size_t m = cap + cap / 2 + 5;
        if (m > 3000)
            m = 3000;
        unsigned slabs = 0;
        for (size_t i = 0; i < m; i++) {
            p[i] = kmalloc(n);
            if (!KEXPECT(p[i] != NULL))
                return;
            uintptr_t s = slab_of(p[i]);
            KEXPECT(p[i] >= obj_at(s, c, 0));
            KEXPECT((uintptr_t)p[i] + size <= s + KH_SLAB_SIZE - KHEAP_HEADER_SIZE);
            if (i == 0 || s != slab_of(p[i - 1])) {
                slabs++;
                KEXPECT_MSG(p[i] == obj_at(s, c, 0), "class %u: first object of a new slab "
                            "%p is not object 0 (%p)", c, p[i], obj_at(s, c, 0));
                if (i > 0)
                    KEXPECT_MSG(i % cap == 0, "class %u: new slab after %zu objects, cap %zu", c,
                                i, cap);
            } else {
                KEXPECT_MSG(p[i] == p[i - 1] + size, "class %u: object %zu at %p, previous %p "
                            "(not address order)", c, i, p[i], p[i - 1]);
            }
            if (ktest_failures() > 10)
                return;
        }
        KEXPECT_EQ(slabs, (m + cap - 1) / cap);
        /* free half in random order, give the stacks back, allocate as many again */
        static unsigned char freed[3000];
        memset(freed, 0, sizeof freed);
        size_t nfreed = 0;
        for (size_t k = 0; k < m; k++) {
            size_t i = ktest_rand(&rng) % m;
            if (!freed[i] && nfreed < m / 2) {
                freed[i] = 1;
                nfreed++;
                kfree(p[i]);
            }
        }
        kheap_flush();
        unsigned char *prev = NULL;
        for (size_t k = 0; k < nfreed; k++) {
            unsigned char *q = kmalloc(n);
            if (!KEXPECT(q != NULL))
                break;
            if (prev && slab_of(prev) == slab_of(q))
                KEXPECT_MSG(q > prev, "class %u after flush: %p handed out after %p", c, q, prev);
            for (size_t i = 0; i < m; i++)
                if (p[i] == q && !freed[i])
                    KEXPECT_MSG(0, "class %u: live object %p handed out again", c, q);
            prev = q;
        }
        KEXPECT_EQ(kheap_check(), 0);
        KEXPECT_EQ(rec.n, 0);
    }
}

/* kcalloc of a reused slab object is zeroed; kmalloc_aligned of small sizes honours alignment
 * (an object of a slab is only 16-aligned); kfree(NULL) is nothing. */
KTEST(test_slab_calloc_aligned)
{
    reset(2 * MiB);
    FOR_EACH_CLASS(c) {
        size_t n = req_max(c);
        unsigned char *p = kmalloc(n);
        KEXPECT(p != NULL);
        if (p)
            memset(p, 0xFF, n);
        kfree(p);
        unsigned char *z = kcalloc(1, n);
        if (!KEXPECT(z != NULL))
            continue;
        for (size_t i = 0; i < n; i++)
            if (z[i]) {
                KEXPECT_MSG(0, "kcalloc(1, %zu): byte %zu is %#x", n, i, z[i]);
                break;
            }
        kfree(z);
    }
    static void *a[6 * 8];
    unsigned k = 0;
    for (size_t align = 16; align <= 512; align *= 2)
        for (size_t n = 1; n <= 400; n += 57) {
            void *q = kmalloc_aligned(align, n);
            KEXPECT_MSG(q && (uintptr_t)q % align == 0, "kmalloc_aligned(%zu, %zu) = %p", align,
                        n, q);
            if (q)
                KEXPECT(ksize(q) >= n);
            if (k < sizeof a / sizeof *a)
                a[k++] = q;
            else
                kfree(q);
        }
    for (unsigned i = 0; i < k; i++)
        kfree(a[i]);
    int before = rec.n;
    kfree(NULL);
    KEXPECT_EQ(rec.n, before);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* kmalloc_aligned with align 32 or 64 and a small n is a slab object of the class of n rounded
 * up to align (release build): aligned because objects start at a multiple of 64 from their
 * 16 KiB-aligned slab and every class at or above a multiple of 32 (64) is one itself; it frees,
 * reallocs and reports like any slab object. Align 128 and up, or a larger n, is a block. */
KTEST(test_slab_aligned_small)
{
    reset(4 * MiB);
    for (size_t m = 32; m <= 512; m += 32) {           /* the class property it relies on */
        unsigned c = class_for_bytes(m);
        KEXPECT_MSG(class_size(c) % 32 == 0 && (m % 64 || class_size(c) % 64 == 0),
                    "a request of %zu bytes is class %u of %zu bytes", m, c, class_size(c));
    }
    for (size_t align = 32; align <= 128; align *= 2)
        for (size_t n = 0; n <= KHEAP_SLAB_MAX + 16; n += 7) {
            unsigned char *q = kmalloc_aligned(align, n);
            if (!KEXPECT_MSG(q && (uintptr_t)q % align == 0, "kmalloc_aligned(%zu, %zu) = %p",
                             align, n, (void *)q))
                continue;
            size_t want = (n + align - 1) / align * align;
            if (want < align)
                want = align;
            int slab = !DEBUG_BUILD && align <= 64 && want <= KHEAP_SLAB_MAX;
            struct kheap_block_info b;
            KEXPECT_EQ(kheap_inspect(q, &b), 1);
            KEXPECT_MSG((b.slab != NULL) == slab, "kmalloc_aligned(%zu, %zu): slab %p, want %s",
                        align, n, b.slab, slab ? "a slab object" : "a block");
            if (slab) {
                KEXPECT_EQ(ksize(q), class_size(class_of_req(want)));
                KEXPECT_EQ(state_of(q, class_of_req(want)), KH_OBJ_LIVE);
            }
            KEXPECT(ksize(q) >= n);
            memset(q, 0x5A, n);
            if (slab && n > 0 && n % 3 == 1 && class_of_req(n) != class_of_req(want)) {
                unsigned char *r = krealloc(q, n);      /* to its own n: n's class (kheap.h) */
                if (KEXPECT(r != NULL)) {
                    KEXPECT(r != q && ksize(r) == class_size(class_of_req(n)));
                    KEXPECT(r[0] == 0x5A && r[n - 1] == 0x5A);
                    q = r;
                }
            } else if (slab && n > 0 && n % 3 == 0) {   /* realloc moves it like any object */
                unsigned char *r = krealloc(q, n + 200);
                if (KEXPECT(r != NULL)) {
                    KEXPECT(r[0] == 0x5A && r[n - 1] == 0x5A);
                    q = r;
                }
            }
            kfree(q);
            if (slab && n % 5 == 0) {                   /* and its double free is exact */
                int before = rec.n;
                t_kfree(q);
                EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, q, t_kfree);
            }
            if (ktest_failures() > 20)
                return;
        }
    KEXPECT_EQ(kheap_check(), 0);
    rec.n = 0;
    expect_heap_works();
}

/* A refill takes its objects from a slab in one scan (slab_grab_n), lowest first, across qword
 * boundaries and from a hint in the last byte of a qword; a FREE state byte where no object
 * starts, met after some objects were taken, ends the scan with those taken (state, counts and
 * hint agree with them) and the next scan drops the slab's list (reported); so does a free
 * count that promises more FREE objects than the state bytes hold. */
KTEST(test_slab_refill_scan)
{
    if (DEBUG_BUILD) {
        ktest_skip("no per-CPU stacks in the debug build");
        return;
    }
    /* 1. the hint in byte 7 of a qword: class 0 (one granule an object), object 3 free */
    reset(2 * MiB);
    {
        const unsigned c = 0;
        static unsigned char *q[KH_MAG_BATCH];
        for (int i = 0; i < KH_MAG_BATCH; i++)
            q[i] = kmalloc(class_size(c));
        uintptr_t s = slab_of(q[0]);
        struct kh_slab *sl = (struct kh_slab *)s;
        KEXPECT_EQ(obj_index(q[3], c), 3);
        kfree(q[3]);
        kheap_flush();                              /* object 3 FREE again, the stack empty */
        unsigned g3 = (unsigned)(((uintptr_t)q[3] & (KH_SLAB_SIZE - 1)) / KHEAP_ALIGN);
        KEXPECT_EQ(g3 % 8, 7);                      /* (S + 40 is a qword: byte 7 of one) */
        KEXPECT_EQ(sl->hint, g3);
        unsigned nfree = sl->nfree;
        unsigned char *a = kmalloc(class_size(c)), *b = kmalloc(class_size(c));
        KEXPECT(a == q[3] && obj_index(b, c) == KH_MAG_BATCH);
        KEXPECT_EQ(kheap_ctl.cpu0.count[c], KH_MAG_BATCH - 2);
        for (int i = 0; i < 2 * KH_MAG_BATCH + 2; i++) {   /* the refill took 3 and 32..62 */
            unsigned st = state_of(obj_at(s, c, (size_t)i), c);
            unsigned want = i <= KH_MAG_BATCH ? KH_OBJ_LIVE          /* a = 3, b = 32 */
                            : i < 2 * KH_MAG_BATCH - 1 ? KH_OBJ_CACHED : KH_OBJ_FREE;
            KEXPECT_MSG(st == want, "object %d: state %u, want %u", i, st, want);
        }
        KEXPECT_EQ(sl->nfree, nfree - KH_MAG_BATCH);
        KEXPECT_EQ(sl->hint, (unsigned)(((uintptr_t)obj_at(s, c, 2 * KH_MAG_BATCH - 2) &
                                         (KH_SLAB_SIZE - 1)) / KHEAP_ALIGN) + 1);
        KEXPECT_EQ(kheap_check(), 0);
    }
    /* 2. a stray FREE inside FREE object 40 of class 7: objects 32..40 taken, then reported */
    for (int v = 0; v < 2; v++) {
        reset(2 * MiB);
        const unsigned c = 7;
        const size_t n = class_size(c);
        enum { Q = 160 };
        static unsigned char *q[Q];
        int nq = 0;
        q[nq++] = kmalloc(n);                       /* the refill took objects 0..31 */
        uintptr_t s = slab_of(q[0]);
        struct kh_slab *sl = (struct kh_slab *)s;
        KEXPECT_EQ(obj_index(q[0], c), 0);
        while (nq < Q - 1 && (kheap_ctl.cpu0.count[c] != 0 ||   /* the stack empty, and */
                              (v == 0 ? nq < KH_MAG_BATCH : sl->nfree >= KH_MAG_BATCH)))
            q[nq++] = kmalloc(n);                   /* (v 1) fewer than a batch left */
        KEXPECT_EQ(kheap_ctl.cpu0.count[c], 0);
        unsigned char *o40 = obj_at(s, c, 40);
        uint16_t nfree = sl->nfree;
        if (v == 0)
            *state_byte(o40 + KHEAP_ALIGN) = KH_OBJ_FREE;   /* inside object 40 */
        else
            sl->nfree = (uint16_t)(nfree + 5);      /* a free count past the FREE bytes */
        int before = rec.n;
        unsigned char *r = q[nq++] = kmalloc(n);    /* the next refill */
        KEXPECT(r != NULL);
        if (v == 0) {
            KEXPECT_EQ(obj_index(r, c), 32);
            for (int i = 33; i <= 40; i++)
                KEXPECT_MSG(state_of(obj_at(s, c, (size_t)i), c) == KH_OBJ_CACHED,
                            "object %d: state %u", i, state_of(obj_at(s, c, (size_t)i), c));
            KEXPECT_EQ(state_of(obj_at(s, c, 41), c), KH_OBJ_FREE);
            KEXPECT_EQ(sl->nfree, nfree - 9);
            KEXPECT_EQ(sl->hint, (unsigned)(((uintptr_t)o40 & (KH_SLAB_SIZE - 1)) /
                                            KHEAP_ALIGN) + 1);
        }
        KEXPECT_MSG(rec.n == before + 1 && rec.code == KHEAP_E_FREELIST,
                    "corrupt slab met by a refill (%s): %d reports, code %d",
                    v == 0 ? "stray FREE" : "free count", rec.n - before, rec.code);
        if (v == 0)
            *state_byte(o40 + KHEAP_ALIGN) = KH_OBJ_NONE;
        else
            sl->nfree = (uint16_t)(sl->nfree - 5);
        KEXPECT_MSG(kheap_verify(kheap_default()) == 0, "after the repair: kheap_verify = %d",
                    kheap_verify(kheap_default()));
        for (int i = 0; i < nq; i++)
            kfree(q[i]);
        rec.n = 0;
        expect_heap_works();
    }
}

/* Fault injection reaches small requests even when a stack has objects for them. */
KTEST(test_slab_fault_injection)
{
    reset(1 * MiB);
    void *p = kmalloc(32);
    kfree(p);                                   /* the stack of class 32 is not empty */
    uint64_t failed = stats().failed_allocs;
    kheap_fail_after(2);
    void *a = kmalloc(32), *b = kmalloc(32), *c = kmalloc(32);
    KEXPECT(a != NULL && b != NULL);
    KEXPECT_NULL(c);
    KEXPECT_EQ(stats().failed_allocs, failed + 1);
    kheap_fail_after(-1);
    void *d = kmalloc(32);
    KEXPECT(d != NULL);
    kfree(a), kfree(b), kfree(d);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* The counters as the slab tier defines them, against the state bytes: used_bytes = live
 * objects' class sizes, slab_bytes = 16 KiB per slab, slab_free_bytes = FREE objects,
 * cached_bytes = CACHED objects (and the stack counts), allocs - frees = live. */
struct slab_census {
    uintptr_t s[512];
    unsigned  n;
    uint64_t  live, free, cached;               /* bytes */
    unsigned  bad_slab;                         /* entries whose slab field is wrong */
};

static int census_walk(const struct kheap_block_info *b, void *ctx)
{
    struct slab_census *w = ctx;
    uintptr_t s = slab_of(b->ptr);
    int object = is_slab(&kheap_ctl, s) && obj_index(b->ptr, slab_hdr(b->ptr)->cls) >= 0;
    if (b->slab != (object ? (void *)s : NULL))
        w->bad_slab++;                              /* the walk names each object's slab */
    if (!object)
        return 0;
    unsigned i = 0;
    while (i < w->n && w->s[i] != s)
        i++;
    if (i == w->n && w->n < 512)
        w->s[w->n++] = s;
    uint8_t st = state_of(b->ptr, slab_hdr(b->ptr)->cls);
    uint64_t size = class_size(slab_hdr(b->ptr)->cls);
    if (st == KH_OBJ_LIVE)
        w->live += size;
    else if (st == KH_OBJ_FREE)
        w->free += size;
    else
        w->cached += size;
    return 0;
}

KTEST(test_slab_stats)
{
    static void *live[4000];
    static size_t live_n[4000];
    unsigned nlive = 0;
    uint64_t rng = 77;
    reset(8 * MiB);
    for (int op = 0; op < 40000; op++) {
        uint64_t r = ktest_rand(&rng);
        if (nlive && (r % 3 == 0 || nlive == 4000)) {
            unsigned i = (unsigned)((r >> 8) % nlive);
            if (!intact(live[i], live_n[i], i * 7 + (unsigned)live_n[i]))
                KEXPECT_MSG(0, "object %p damaged", live[i]);
            kfree(live[i]);
            live[i] = live[--nlive];
            live_n[i] = live_n[nlive];
            if (i < nlive)
                fill(live[i], live_n[i], i * 7 + (unsigned)live_n[i]);
        } else {
            size_t n = (r >> 16) % (SLAB_REQ_MAX + 1);
            void *p = kmalloc(n);
            if (!KEXPECT(p != NULL))
                break;
            live[nlive] = p;
            live_n[nlive] = n;
            fill(p, n, nlive * 7 + (unsigned)n);
            nlive++;
        }
    }
    struct kheap_stats s = stats();
    struct slab_census w = { .n = 0 };
    KEXPECT_EQ(kheap_walk(census_walk, &w), 0);
    KEXPECT_EQ(w.bad_slab, 0);
    uint64_t sum = 0;
    for (unsigned i = 0; i < nlive; i++)
        sum += class_size(class_of_req(live_n[i]));
    KEXPECT_EQ(s.allocs - s.frees, nlive);
    KEXPECT_EQ(s.used_bytes, sum);
    KEXPECT_EQ(w.live, sum);
    KEXPECT_EQ(s.slab_bytes, (uint64_t)w.n * KH_SLAB_BLOCK);
    KEXPECT_EQ(s.slab_free_bytes, w.free);
    KEXPECT_EQ(s.cached_bytes, w.cached);
    uint64_t stacked = 0;
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++)
        stacked += (uint64_t)kheap_ctl.cpu0.count[c] * class_size(c);
    KEXPECT_EQ(s.cached_bytes, stacked);
    if (DEBUG_BUILD)
        KEXPECT_EQ(s.cached_bytes, 0);      /* no stacks in the debug build */
    KEXPECT_EQ(s.free_bytes, s.total_bytes - s.used_bytes);
    KEXPECT_EQ(kheap_check(), 0);
    for (unsigned i = 0; i < nlive; i++)
        kfree(live[i]);
    kheap_flush();
    s = stats();
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.cached_bytes, 0);
    KEXPECT_EQ(s.slab_bytes, 0);            /* every slab empty: given back, the spares too */
    KEXPECT_EQ(s.allocs, s.frees);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* =============================================================================================
 * Misuse: every case reported exactly, nothing changed, the heap works afterwards
 * ============================================================================================= */

/* Double free while the object is in the per-CPU stack (release) or straight back in its slab
 * (debug: no stacks); after it went back to its slab through a drain (more than 32 frees of its
 * class) and through kheap_flush; and the free of objects no one was given (FREE in a partial
 * slab, CACHED in the stack). ksize and krealloc of all of them: reported, 0 / NULL. */
KTEST(test_slab_double_free)
{
    FOR_EACH_CLASS(c) {
        size_t n = req_max(c);
        reset(2 * MiB);
        unsigned char *by = kmalloc(n);             /* a bystander in the same slab */
        fill(by, n, 9);
        /* 1. right after its free */
        unsigned char *p = t_kmalloc(n);
        KEXPECT(p != NULL);
        uint64_t frees = stats().frees;
        kfree(p);
        KEXPECT_EQ(stats().frees, frees + 1);
        KEXPECT_EQ(state_of(p, c), DEBUG_BUILD ? KH_OBJ_FREE : KH_OBJ_CACHED);
        int before = rec.n;
        t_kfree(p);
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_kfree);
        KEXPECT_EQ(stats().frees, frees + 1);
        before = rec.n;
        KEXPECT_EQ(t_ksize(p), 0);
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_ksize);
        before = rec.n;
        KEXPECT_NULL(t_krealloc(p, n));
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_krealloc);
        uint64_t allocs = stats().allocs, used = stats().used_bytes;
        before = rec.n;
        KEXPECT_NULL(t_krealloc(p, 3000));          /* a move to the TLSF tier: not made */
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_krealloc);
        KEXPECT_EQ(stats().allocs, allocs);
        KEXPECT_EQ(stats().used_bytes, used);
        before = rec.n;
        KEXPECT_NULL(t_krealloc(p, 0));             /* krealloc(p, 0) is kfree(p) */
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_krealloc);
        KEXPECT_EQ(stats().frees, frees + 1);
        /* 2. after more than KH_MAG_DEPTH frees of its class: drained back into its slab */
        static unsigned char *q[2 * KH_MAG_DEPTH + 8];
        p = kmalloc(n);
        for (int i = 0; i < 2 * KH_MAG_DEPTH + 8; i++)
            q[i] = kmalloc(n);
        kfree(p);
        for (int i = 0; i < 2 * KH_MAG_DEPTH + 8; i++)
            kfree(q[i]);
        KEXPECT_EQ(state_of(p, c), KH_OBJ_FREE);
        before = rec.n;
        t_kfree(p);
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_kfree);
        before = rec.n;
        KEXPECT_EQ(t_ksize(p), 0);
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_ksize);
        before = rec.n;
        KEXPECT_NULL(t_krealloc(p, n + 1));
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_krealloc);
        /* 3. after kheap_flush (a fresh heap: the bystander shares p's slab) */
        KEXPECT(intact(by, n, 9));
        expect_heap_works();
        reset(2 * MiB);
        by = kmalloc(n);
        fill(by, n, 9);
        p = kmalloc(n);
        KEXPECT_EQ(slab_of(p), slab_of(by));
        kfree(p);
        kheap_flush();
        KEXPECT_EQ(state_of(p, c), KH_OBJ_FREE);
        KEXPECT(is_slab(&kheap_ctl, slab_of(p)));   /* the bystander keeps the slab */
        before = rec.n;
        t_kfree(p);
        EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_kfree);
        /* 4. objects nobody was given: the last FREE one of a partial slab, and (release) the
         * next one in the stack (CACHED) */
        unsigned char *x = kmalloc(n), *last = NULL;
        uintptr_t s = slab_of(x);
        for (unsigned i = cls_cap(c); !last && i-- > 0;)   /* (a refill may take them all) */
            if (state_of(obj_at(s, c, i), c) == KH_OBJ_FREE)
                last = obj_at(s, c, i);
        if (last) {
            before = rec.n;
            t_kfree(last);
            EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, last, t_kfree);
            KEXPECT_EQ(state_of(last, c), KH_OBJ_FREE);
            before = rec.n;
            KEXPECT_EQ(t_ksize(last), 0);
            EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, last, t_ksize);
        } else {
            KEXPECT(cls_cap(c) <= KH_MAG_BATCH);    /* every object went to the stack */
        }
        if (!DEBUG_BUILD) {
            unsigned char *next = kheap_ctl.cpu0.count[c]
                ? (unsigned char *)kheap_ctl.cpu0.obj[c][kheap_ctl.cpu0.count[c] - 1] : NULL;
            KEXPECT(next != NULL);
            if (next) {
                KEXPECT_EQ(state_of(next, c), KH_OBJ_CACHED);
                before = rec.n;
                t_kfree(next);
                EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, next, t_kfree);
                KEXPECT_EQ(state_of(next, c), KH_OBJ_CACHED);
                void *again = kmalloc(n);           /* it is still handed out once, whole */
                KEXPECT(again == next);
                kfree(again);
            }
        }
        KEXPECT(intact(by, n, 9));
        kfree(x);
        kfree(by);
        expect_heap_works();
        if (ktest_failures() > 20)
            return;
    }
}

/* Every 16-byte offset inside an object that is not its start, for one object per class (live,
 * with live neighbours; and one that is cached or free): kfree, ksize, krealloc all report
 * KHEAP_E_BAD_HEADER with that pointer and change nothing. */
KTEST(test_slab_interior)
{
    reset(2 * MiB);
    FOR_EACH_CLASS(c) {
        size_t n = req_max(c), size = class_size(c);
        unsigned char *l = kmalloc(n), *p = kmalloc(n), *r = kmalloc(n), *f = kmalloc(n);
        KEXPECT(l && p && r && f);
        fill(l, n, 1), fill(p, n, 2), fill(r, n, 3);
        kfree(f);                                   /* cached (release) or free (debug) */
        uint64_t frees = stats().frees, used = stats().used_bytes;
        for (size_t off = 16; off < size; off += 16) {
            int before = rec.n;
            t_kfree(p + off);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p + off, t_kfree);
            before = rec.n;
            KEXPECT_EQ(t_ksize(p + off), 0);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p + off, t_ksize);
            before = rec.n;
            KEXPECT_NULL(t_krealloc(p + off, 1));
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p + off, t_krealloc);
            before = rec.n;
            KEXPECT_NULL(t_krealloc(p + off, 4000));
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p + off, t_krealloc);
            before = rec.n;
            t_kfree(f + off);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, f + off, t_kfree);
            if (ktest_failures() > 20)
                return;
        }
        KEXPECT_EQ(stats().frees, frees);
        KEXPECT_EQ(stats().used_bytes, used);
        KEXPECT_EQ(state_of(p, c), KH_OBJ_LIVE);
        KEXPECT(intact(l, n, 1) && intact(p, n, 2) && intact(r, n, 3));
        KEXPECT_EQ(ksize(p), ksize_of_req(n));
        kfree(l), kfree(p), kfree(r);
    }
    expect_heap_works();
}

/* Misaligned pointers (every byte offset 1..15 of a live object, and of the slab's start):
 * KHEAP_E_BAD_PTR from kfree, ksize and krealloc. */
KTEST(test_slab_misaligned)
{
    reset(2 * MiB);
    FOR_EACH_CLASS(c) {
        size_t n = req_max(c);
        unsigned char *p = kmalloc(n);
        KEXPECT(p != NULL);
        fill(p, n, c);
        for (size_t off = 1; off < 16; off++) {
            int before = rec.n;
            t_kfree(p + off);
            EXPECT_REPORT(before, KHEAP_E_BAD_PTR, p + off, t_kfree);
            before = rec.n;
            KEXPECT_EQ(t_ksize(p + off), 0);
            EXPECT_REPORT(before, KHEAP_E_BAD_PTR, p + off, t_ksize);
            before = rec.n;
            KEXPECT_NULL(t_krealloc(p + off, 8));
            EXPECT_REPORT(before, KHEAP_E_BAD_PTR, p + off, t_krealloc);
            unsigned char *s = (unsigned char *)slab_of(p) + off;
            before = rec.n;
            t_kfree(s);
            EXPECT_REPORT(before, KHEAP_E_BAD_PTR, s, t_kfree);
        }
        KEXPECT(intact(p, n, c));
        KEXPECT_EQ(state_of(p, c), KH_OBJ_LIVE);
        kfree(p);
    }
    expect_heap_works();
}

/* The slab header area (S, S + 16, ... below object 0) and the slack after the last object:
 * KHEAP_E_BAD_HEADER, and not one byte of the header changes. */
KTEST(test_slab_header_area)
{
    static unsigned char snap[KH_SLAB_SIZE];
    reset(2 * MiB);
    FOR_EACH_CLASS(c) {
        size_t n = req_max(c);
        unsigned char *p = kmalloc(n);
        KEXPECT(p != NULL);
        unsigned char *s = (unsigned char *)slab_of(p);
        memcpy(snap, s, cls_first(c));
        for (unsigned char *a = s; a < s + cls_first(c); a += 16) {
            int before = rec.n;
            t_kfree(a);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, a, t_kfree);
            before = rec.n;
            KEXPECT_EQ(t_ksize(a), 0);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, a, t_ksize);
            before = rec.n;
            KEXPECT_NULL(t_krealloc(a, 24));
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, a, t_krealloc);
        }
        for (unsigned char *a = obj_at((uintptr_t)s, c, cls_cap(c)); a < s + KH_SLAB_SIZE;
             a += 16) {
            int before = rec.n;
            t_kfree(a);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, a, t_kfree);
        }
        KEXPECT_MSG(memcmp(snap, s, cls_first(c)) == 0, "class %u: slab header changed", c);
        kfree(p);
        if (ktest_failures() > 20)
            return;
    }
    expect_heap_works();
}

/* A pointer into a slab that was given back: reported (BAD_HEADER, DOUBLE_FREE or BAD_PTR; never
 * accepted), and nothing changes: not the free memory, not a block that now lies there. Slabs
 * given back by kheap_flush, and (with the slot marked busy, so that frees go straight to the
 * slabs) the second empty slab of a class, released at once while the first stays spare. */
static void expect_stale_reported(unsigned char *p)
{
    int before = rec.n;
    t_kfree(p);
    KEXPECT_EQ(rec.n, before + 1);
    KEXPECT_MSG(rec.code == KHEAP_E_BAD_HEADER || rec.code == KHEAP_E_DOUBLE_FREE ||
                rec.code == KHEAP_E_BAD_PTR, "stale free: code %d (%s)", rec.code,
                kheap_strerror(rec.code));
    KEXPECT_EQ(rec.ptr, p);
    KEXPECT_EQ(rec.caller, t_kfree_ret);
    before = rec.n;
    KEXPECT_EQ(t_ksize(p), 0);
    KEXPECT_EQ(rec.n, before + 1);
    before = rec.n;
    KEXPECT_NULL(t_krealloc(p, 40));
    KEXPECT_EQ(rec.n, before + 1);
    KEXPECT_EQ(rec.caller, t_krealloc_ret);
}

KTEST(test_slab_released)
{
    static unsigned char *q[2000];
    static const unsigned classes[] = { 0, 1, 4, 8, 11, 15 };
    for (unsigned k = 0; k < sizeof classes / sizeof *classes; k++) {
        unsigned c = classes[k];
        if (!class_usable(c))
            continue;
        size_t n = req_max(c), cap = cls_cap(c);
        /* given back by kheap_flush: one full slab and one with an object */
        reset(2 * MiB);
        for (size_t i = 0; i <= cap; i++)
            q[i] = kmalloc(n);
        unsigned char *pa = q[0], *pb = q[cap];
        KEXPECT(pa && pb && slab_of(pa) != slab_of(pb));
        for (size_t i = 0; i <= cap; i++)
            kfree(q[i]);
        kheap_flush();
        KEXPECT_EQ(stats().slab_bytes, 0);
        KEXPECT_EQ(kheap_ctl.spare[c], 0);
        KEXPECT(!is_slab(&kheap_ctl, slab_of(pa))); /* check cleared (or a free block's links) */
        KEXPECT(!is_slab(&kheap_ctl, slab_of(pb)));
        uint64_t used = stats().used_bytes, frees = stats().frees;
        expect_stale_reported(pa);
        expect_stale_reported(pb);
        expect_stale_reported(pa + class_size(c));
        KEXPECT_EQ(stats().used_bytes, used);
        KEXPECT_EQ(stats().frees, frees);
        KEXPECT_EQ(kheap_check(), 0);
        /* the memory is a block of the TLSF tier now: it keeps its bytes */
        size_t big = 64 * KiB;
        unsigned char *b = kmalloc(big);
        KEXPECT(b != NULL);
        if (b && pa >= b && pa < b + big) {
            fill(b, big, 5);
            expect_stale_reported(pa);
            KEXPECT(intact(b, big, 5));
        } else {
            ktest_note("class %u: the 64 KiB block %p does not cover the old slab %p", c, b, pa);
        }
        kfree(b);
        KEXPECT_EQ(kheap_check(), 0);
        /* the second empty slab of a class is given back at once; the first stays spare */
        reset(2 * MiB);
        for (size_t i = 0; i < 2 * cap && i < 2000; i++)
            q[i] = kmalloc(n);
        pa = q[0];
        pb = q[cap];
        KEXPECT(slab_of(pa) != slab_of(pb));
        uint64_t slab_bytes = stats().slab_bytes;
        kheap_ctl.cpu0.busy = 1;                    /* as if interrupted: no stack */
        for (size_t i = 0; i < 2 * cap && i < 2000; i++)
            kfree(q[i]);
        kheap_ctl.cpu0.busy = 0;
        KEXPECT_EQ(kheap_ctl.spare[c], slab_of(pa));            /* the first empty one */
        KEXPECT_EQ(stats().slab_bytes, slab_bytes - KH_SLAB_BLOCK);  /* the second: given back */
        KEXPECT(!is_slab(&kheap_ctl, slab_of(pb)));
        expect_stale_reported(pb);
        KEXPECT_EQ(kheap_check(), 0);
        kheap_flush();                              /* (the stack of the first allocations) */
        KEXPECT(!is_slab(&kheap_ctl, slab_of(pb)));
        expect_stale_reported(pb);
        KEXPECT_EQ(kheap_check(), 0);
        expect_heap_works();
        if (ktest_failures() > 20)
            return;
    }
}

/* While a slot is busy (an interrupted call of this CPU), calls bypass its stacks and work. */
KTEST(test_slab_busy_slot)
{
    reset(2 * MiB);
    void *warm = kmalloc(64);
    kfree(warm);
    uint8_t count = kheap_ctl.cpu0.count[class_of_req(64)];
    uint64_t cached = stats().cached_bytes;
    static void *p[100];
    kheap_ctl.cpu0.busy = 1;
    for (int i = 0; i < 100; i++) {
        p[i] = kmalloc(64);
        KEXPECT(p[i] != NULL);
        if (p[i])
            fill(p[i], 64, (unsigned)i);
    }
    for (int i = 0; i < 100; i++) {
        KEXPECT(intact(p[i], 64, (unsigned)i));
        kfree(p[i]);
    }
    int before = rec.n;
    t_kfree(p[7]);
    EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p[7], t_kfree);
    KEXPECT_EQ(kheap_ctl.cpu0.count[class_of_req(64)], count);
    KEXPECT_EQ(stats().cached_bytes, cached);
    kheap_ctl.cpu0.busy = 0;
    KEXPECT_EQ(kheap_check(), 0);
    expect_heap_works();
}

/* Another heap's slab objects (live or cached) freed into this heap: KHEAP_E_BAD_PTR when the
 * heaps' ranges are disjoint, in both directions, for every class; ksize and krealloc too; and
 * (beyond the brief) when the other heap lies in a gap between two regions of this one. */
KTEST(test_slab_foreign)
{
    kheap_t *h1 = make_heap(arena2, 2 * MiB), *h2 = make_heap(arena3, 2 * MiB);
    if (!h1 || !h2)
        return;
    FOR_EACH_CLASS(c) {
        size_t n = req_max(c);
        unsigned char *a = kheap_alloc(h1, n), *b = kheap_alloc(h2, n);
        unsigned char *bc = kheap_alloc(h2, n);
        KEXPECT(a && b && bc);
        fill(a, n, 1), fill(b, n, 2);
        kheap_free(h2, bc);                         /* cached in h2's stack */
        int before = rec.n;
        t_kheap_free(h1, b);
        EXPECT_REPORT(before, KHEAP_E_BAD_PTR, b, t_kheap_free);
        before = rec.n;
        t_kheap_free(h1, bc);
        EXPECT_REPORT(before, KHEAP_E_BAD_PTR, bc, t_kheap_free);
        before = rec.n;
        t_kheap_free(h2, a);
        EXPECT_REPORT(before, KHEAP_E_BAD_PTR, a, t_kheap_free);
        before = rec.n;
        KEXPECT_EQ(t_kheap_usable(h1, b), 0);
        EXPECT_REPORT(before, KHEAP_E_BAD_PTR, b, t_kheap_usable);
        before = rec.n;
        KEXPECT_NULL(t_kheap_realloc(h2, a, n + 100));
        EXPECT_REPORT(before, KHEAP_E_BAD_PTR, a, t_kheap_realloc);
        KEXPECT(intact(a, n, 1) && intact(b, n, 2));
        kheap_free(h1, a);
        kheap_free(h2, b);
    }
    KEXPECT_EQ(kheap_verify(h1), 0);
    KEXPECT_EQ(kheap_verify(h2), 0);
    /* h1 gets a region above h2: h2's objects lie in h1's gap (readable memory) */
    KEXPECT_EQ(kheap_extend(h1, arena3 + 4 * MiB, 1 * MiB), 0);
    FOR_EACH_CLASS(c) {
        unsigned char *b = kheap_alloc(h2, req_max(c));
        KEXPECT(b != NULL);
        int before = rec.n;
        t_kheap_free(h1, b);
        EXPECT_REPORT(before, KHEAP_E_BAD_PTR, b, t_kheap_free);
        KEXPECT_EQ(state_of(b, c), KH_OBJ_LIVE);
        kheap_free(h2, b);
    }
    /* the default heap too */
    reset(1 * MiB);
    unsigned char *b = kheap_alloc(h2, 100);
    int before = rec.n;
    t_kfree(b);
    EXPECT_REPORT(before, KHEAP_E_BAD_PTR, b, t_kfree);
    kheap_free(h2, b);
    expect_heap_works_in(h1);
    expect_heap_works_in(h2);
    expect_heap_works();
}

/* A stray write into a slab's check word (zero, its complement, one bit, another slab's check
 * word, the class byte changed): the next kfree of an object of that slab is KHEAP_E_BAD_HEADER
 * (the slab is not recognised, p - 8 is no header), ksize and krealloc are reported too, the
 * object is not freed; once the word is put back everything works. */
KTEST(test_slab_check_word)
{
    reset(2 * MiB);
    FOR_EACH_CLASS(c) {
        size_t n = req_max(c);
        unsigned char *o[3];
        for (int i = 0; i < 3; i++) {
            o[i] = kmalloc(n);
            fill(o[i], DEBUG_BUILD ? n : class_size(c), (unsigned)i + 40);
        }
        unsigned char *p = o[1];                    /* live neighbours both sides */
        unsigned other = (c + 1) % KH_SLAB_CLASSES;
        unsigned char *x = kmalloc(req_max(other == 0 && DEBUG_BUILD ? 1 : other));
        struct kh_slab *sl = slab_hdr(p);
        uint64_t saved = sl->check;
        uint8_t saved_cls = sl->cls;
        uint64_t values[5] = { 0, ~saved, saved ^ 1, saved ^ (1ull << 63), slab_hdr(x)->check };
        for (int v = 0; v < 6; v++) {
            if (v < 5)
                sl->check = values[v];
            else
                sl->cls = (uint8_t)((saved_cls + 1) % KH_SLAB_CLASSES);
            uint64_t frees = stats().frees;
            int before = rec.n;
            t_kfree(p);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p, t_kfree);
            before = rec.n;
            KEXPECT_EQ(t_ksize(p), 0);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p, t_ksize);
            before = rec.n;
            KEXPECT_NULL(t_krealloc(p, n + 1));
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p, t_krealloc);
            sl->check = saved;
            sl->cls = saved_cls;
            KEXPECT_EQ(stats().frees, frees);
            KEXPECT_EQ(state_of(p, c), KH_OBJ_LIVE);
            KEXPECT_MSG(kheap_check() == 0, "class %u, stray value %d: heap not sound after the "
                        "check word is restored", c, v);
            if (ktest_failures() > 20)
                return;
        }
        for (int i = 0; i < 3; i++) {
            KEXPECT(intact(o[i], n, (unsigned)i + 40));
            kfree(o[i]);
        }
        kfree(x);
    }
    expect_heap_works();
}

/* ADVERSARIAL (beyond the brief): a header forged with the right check word for a class past the
 * last (the key is computable once the secret is known: kheap_set_secret, or one leaked header)
 * must still not make a free index the slot by that class: the class byte is bounded before it
 * is used, whatever the check word says. A header inside a large block claims class 16..255 and
 * a LIVE object at KH_SLAB_FIRST; its free is reported, and neither the slot nor anything past
 * it changes. */
KTEST(test_slab_forged_class)
{
    static unsigned char snap[KHEAP_CTL_SIZE];
    static const unsigned forged[] = { KH_SLAB_CLASSES, 63, 64, 65, 128, 200, 255 };
    for (unsigned v = 0; v < sizeof forged / sizeof forged[0]; v++) {
        kheap_t *h = make_heap(arena2, 2 * MiB);
        if (!h)
            return;
        struct kh_ctl *ctl = (struct kh_ctl *)h;
        unsigned char *big = kheap_alloc(h, 64 * 1024);
        KEXPECT(big != NULL);
        if (!big)
            return;
        uintptr_t S = ((uintptr_t)big + KH_SLAB_SIZE - 1) & SLAB_MASK;
        unsigned cls = forged[v];
        struct kh_slab *sl = (struct kh_slab *)S;
        sl->check = ((uint64_t)(S ^ cls) * KH_HASH_K1) ^ ctl->slab_key;
        sl->cls = (uint8_t)cls;
        sl->state[KH_SLAB_FIRST / KHEAP_ALIGN] = KH_OBJ_LIVE;
        void *p = (void *)(S + KH_SLAB_FIRST);
        memcpy(snap, ctl, sizeof snap);              /* the control block and its slot */
        int before = rec.n;
        t_kheap_free(h, p);
        /* reported as what the block tier makes of p - 8 inside the large block: no header
         * (release), or the debug build's fill of a new block, which reads as a free one */
        KEXPECT_MSG(rec.n == before + 1 && rec.ptr == p &&
                    (rec.code == KHEAP_E_BAD_HEADER || rec.code == KHEAP_E_DOUBLE_FREE),
                    "class %u forged: %d reports, code %d", cls, rec.n - before, rec.code);
        size_t diff = 0;                            /* only the counters a report moves */
        const size_t err_at = offsetof(struct kh_ctl, errors);
        const size_t caller_at = offsetof(struct kh_ctl, caller);
        for (size_t i = 0; i < sizeof snap; i++)
            if (snap[i] != ((unsigned char *)ctl)[i] && !(i >= err_at && i < err_at + 8) &&
                !(i >= caller_at && i < caller_at + 8))
                diff++;
        KEXPECT_MSG(diff == 0, "class %u forged: %zu bytes of the control block changed", cls,
                    diff);
        sl->check = 0;
        kheap_free(h, big);
        KEXPECT_EQ(kheap_verify(h), 0);
        expect_heap_works_in(h);
    }
    rec.n = 0;
}

/* ADVERSARIAL (beyond the brief): the check word's fallback, "p - 8 is no valid header", must
 * hold even where the slab's memory still carries stale headers of TLSF blocks that lay there
 * before the slab was carved (release: neither the merge nor slab_new clears them). Blocks of
 * 1008 bytes are made and freed, a class-16 slab is carved over them and filled (the user writes
 * nothing, as kmalloc allows); then its check word is hit and an object whose p - 8 holds a stale
 * header is freed. It must be reported and not freed as a block inside the slab. */
KTEST(test_slab_check_word_stale_header)
{
    enum { NB = 64 };
    static unsigned char *blk[NB], *obj[2000];
    reset(2 * MiB);
    for (int i = 0; i < NB; i++)
        blk[i] = kmalloc(1000);
    for (int i = 0; i < NB; i++)
        kfree(blk[i]);
    kheap_flush();
    unsigned c = DEBUG_BUILD ? 1 : 0;
    size_t cap = cls_cap(c), n = req_max(c);
    for (size_t i = 0; i < cap; i++)
        obj[i] = kmalloc(n);
    uintptr_t s = slab_of(obj[0]);
    unsigned char *victim = NULL;
    for (int i = 0; i < NB && !victim; i++) {
        unsigned char *p = blk[i];              /* a stale header at p - 8 */
        if (slab_of(p) == s && obj_index(p, c) >= 0 && state_of(p, c) == KH_OBJ_LIVE)
            victim = p;
    }
    if (!victim) {
        ktest_note("no stale block header inside the slab at %#lx: nothing to test", s);
        for (size_t i = 0; i < cap; i++)
            kfree(obj[i]);
        return;
    }
    ktest_note("victim %p (object %ld of the slab at %#lx), word at p - 8: %#lx", victim,
               obj_index(victim, c), s, *(uint64_t *)(victim - 8));
    struct kh_slab *sl = (struct kh_slab *)s;
    uint64_t saved = sl->check;
    sl->check = 0;
    uint64_t frees = stats().frees, used = stats().used_bytes;
    int before = rec.n;
    t_kfree(victim);
    KEXPECT_MSG(rec.n == before + 1, "kfree of %p in a slab with a hit check word: %d reports "
                "(frees %lu -> %lu: freed as a stale block inside the slab)", victim,
                rec.n - before, (unsigned long)frees, (unsigned long)stats().frees);
    KEXPECT_EQ(stats().frees, frees);
    KEXPECT_EQ(stats().used_bytes, used);
    sl->check = saved;
    KEXPECT_EQ(kheap_check(), 0);
    for (size_t i = 0; i < cap; i++)
        kfree(obj[i]);
    KEXPECT_EQ(kheap_check(), 0);
}

/* (Beyond the brief's kfree case.) While the check word is hit, allocations of its class (whose
 * stack and refill slab point into that slab) are served from elsewhere and the bad entries
 * reported (KHEAP_E_FREELIST); once the word is put back the heap is sound again (kheap_check
 * 0: what the drop lost is counted, nothing is left half-owned) and works. */
KTEST(test_slab_check_word_alloc)
{
    reset(2 * MiB);
    unsigned c = 3;
    size_t n = req_max(c);
    unsigned char *p = kmalloc(n);                  /* the stack has 15 more of its slab */
    uintptr_t s = slab_of(p);
    struct kh_slab *sl = (struct kh_slab *)s;
    uint64_t saved = sl->check;
    sl->check ^= 0x10;
    static unsigned char *q[40];
    int before = rec.n;
    for (int i = 0; i < 40; i++) {
        q[i] = t_kmalloc(n);
        KEXPECT(q[i] != NULL);
        KEXPECT_MSG(slab_of(q[i]) != s, "object %p of the slab with a bad check word handed out",
                    q[i]);
        if (q[i])
            fill(q[i], n, (unsigned)i);
    }
    if (rec.n > before) {                           /* (the last report) */
        KEXPECT_EQ(rec.code, KHEAP_E_FREELIST);
        KEXPECT_EQ(rec.caller, t_kmalloc_ret);
    }
    ktest_note("%d reports while the check word was bad", rec.n - before);
    sl->check = saved;
    for (int i = 0; i < 40; i++) {
        KEXPECT(intact(q[i], n, (unsigned)i));
        kfree(q[i]);
    }
    kfree(p);
    KEXPECT_MSG(kheap_check() == 0, "kheap_check() = %d after the check word is restored "
                "(objects the dropped stack held?)", kheap_check());
    expect_heap_works();
}

/* A stray out-of-range value in an object's state byte (S + 40 + its granule; KH_OBJ_NONE among
 * them): its free is KHEAP_E_BAD_HEADER (and ksize); kheap_check finds it; put back, all is
 * well. */
KTEST(test_slab_state_byte)
{
    reset(2 * MiB);
    static const uint8_t bad[] = { 3, 4, 0x7F, 0x80, 0xFF };
    FOR_EACH_CLASS(c) {
        size_t n = req_max(c);
        unsigned char *p = kmalloc(n), *r = kmalloc(n);
        KEXPECT(obj_index(p, c) >= 0);
        uint8_t *st = state_byte(p);
        KEXPECT_EQ(*st, KH_OBJ_LIVE);
        for (unsigned v = 0; v < sizeof bad; v++) {
            *st = bad[v];
            uint64_t frees = stats().frees;
            int before = rec.n;
            t_kfree(p);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p, t_kfree);
            before = rec.n;
            KEXPECT_EQ(t_ksize(p), 0);
            EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, p, t_ksize);
            KEXPECT_EQ(stats().frees, frees);
            KEXPECT_EQ(*st, bad[v]);
            KEXPECT_NE(kheap_check(), 0);
            *st = KH_OBJ_LIVE;
            KEXPECT_EQ(kheap_check(), 0);
        }
        kfree(p);
        kfree(r);
        if (ktest_failures() > 20)
            return;
    }
    expect_heap_works();
}

/* ADVERSARIAL (beyond the brief): a stray write of a plausible value, KH_OBJ_LIVE, into the state
 * byte of a granule inside a live object (where no object starts: KH_OBJ_NONE). The states are
 * per granule, so the interior pointer now looks like a live object to kfree; if it is accepted,
 * it is cached and handed out again overlapping its neighbour. Wanted: the interior free reported
 * (kheap_check finds the byte: granules where no object starts must say so). */
KTEST(test_slab_state_byte_interior)
{
    reset(2 * MiB);
    unsigned c = 7;                                 /* 128-byte objects */
    size_t n = req_max(c);
    unsigned char *p = kmalloc(n), *q = kmalloc(n);
    fill(p, n, 1), fill(q, n, 2);
    unsigned char *mid = p + 64;
    uint8_t *st = state_byte(mid);
    KEXPECT_EQ(*st, KH_OBJ_NONE);
    *st = KH_OBJ_LIVE;
    KEXPECT_NE(kheap_check(), 0);
    uint64_t frees = stats().frees;
    int before = rec.n;
    t_kfree(mid);
    KEXPECT_MSG(rec.n == before + 1 && rec.code == KHEAP_E_BAD_HEADER,
                "free of an interior pointer whose granule says LIVE: %d reports (code %d), "
                "frees %lu -> %lu", rec.n - before, rec.code, (unsigned long)frees,
                (unsigned long)stats().frees);
    /* if it was taken, the next allocations of the class hand it out over p */
    unsigned char *r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = kmalloc(n);
        KEXPECT_MSG(r[i] != mid, "interior pointer %p of %p handed out as an object", mid, p);
    }
    *st = KH_OBJ_NONE;
    for (int i = 0; i < 4; i++)
        if (r[i] != mid)
            kfree(r[i]);
    KEXPECT(intact(q, n, 2));
    kfree(p), kfree(q);
}

/* A bogus pointer written into the per-CPU stack (release: the stacks exist only there). The next
 * kheap_alloc of that class reports KHEAP_E_FREELIST with the bogus pointer, caller the alloc's,
 * and returns a valid object or NULL, never the bogus pointer; the heap stays sound. Bogus: a live
 * object, a FREE one, an object of another class, an interior and a misaligned pointer, the
 * control block, the stack, NULL; a duplicate of the next entry; and a bogus entry at the bottom
 * met by a drain (free of a full stack, kheap_flush_in). */
static struct kh_cpu *slot0(kheap_t *h)
{
    return (struct kh_cpu *)((char *)h + offsetof(struct kh_ctl, cpu0));
}

KTEST(test_slab_stack_bogus)
{
    if (DEBUG_BUILD) {
        ktest_skip("no per-CPU stacks in the debug build");
        return;
    }
    unsigned c = 4;
    size_t n = req_max(c);
    for (int v = 0; v < 10; v++) {
        kheap_t *h = make_heap(arena2, 2 * MiB);
        if (!h)
            return;
        struct kh_cpu *slot = slot0(h);
        KEXPECT(((struct kh_ctl *)h)->cpus == slot);
        unsigned char *x = kheap_alloc(h, n);           /* a refill: 15 more on the stack */
        unsigned char *y = kheap_alloc(h, req_max(7));  /* another class's stack */
        fill(x, n, 1);
        KEXPECT_EQ(slot->count[c], KH_MAG_BATCH - 1);
        unsigned top = slot->count[c] - 1;
        uintptr_t next = slot->obj[c][top];
        int on_stack;
        uintptr_t bogus = 0;
        const char *what = "";
        switch (v) {
        case 0: bogus = (uintptr_t)x;                          what = "a live object"; break;
        case 1: bogus = (uintptr_t)obj_at(slab_of(x), c, cls_cap(c) - 1); what = "a FREE object";
                break;
        case 2: bogus = slot->obj[7][slot->count[7] - 1];      what = "another class's"; break;
        case 3: bogus = next + 16;                             what = "interior"; break;
        case 4: bogus = next + 8;                              what = "misaligned"; break;
        case 5: bogus = (uintptr_t)h;                          what = "the control block"; break;
        case 6: bogus = (uintptr_t)&on_stack & ~(uintptr_t)15; what = "the stack"; break;
        case 7: bogus = 0;                                     what = "NULL"; break;
        case 8: bogus = slab_of(x);                            what = "the slab header"; break;
        case 9: bogus = slot->obj[c][top - 1];                 what = "a duplicate"; break;
        }
        slot->obj[c][top] = bogus;
        int before = rec.n;
        unsigned char *r = t_kheap_alloc(h, n);
        if (v == 9) {                               /* the first pop is sound: its object */
            KEXPECT(r == (unsigned char *)bogus);
            KEXPECT_EQ(rec.n, before);
            before = rec.n;
            r = t_kheap_alloc(h, n);
        }
        KEXPECT_MSG(rec.n == before + 1 && rec.code == KHEAP_E_FREELIST &&
                    rec.ptr == (void *)bogus && rec.caller == t_kheap_alloc_ret,
                    "bogus stack entry (%s) %#lx: %d reports, last code %d ptr %p caller %p", what,
                    bogus, rec.n - before, rec.code, rec.ptr, rec.caller);
        KEXPECT_MSG(r != (unsigned char *)bogus, "bogus stack entry (%s) handed out", what);
        if (r) {
            KEXPECT_EQ(kheap_usable(h, r), class_size(c));
            fill(r, n, 2);
            KEXPECT(intact(x, n, 1));
            KEXPECT(intact(r, n, 2));
            kheap_free(h, r);
        }
        kheap_free(h, x);
        kheap_free(h, y);
        KEXPECT_MSG(kheap_verify(h) == 0, "bogus stack entry (%s): kheap_verify = %d after the "
                    "report", what, kheap_verify(h));
        expect_heap_works_in(h);
    }
    /* a bogus entry at the bottom, met by the drain of a full stack (free) and by flush_in */
    for (int v = 0; v < 2; v++) {
        kheap_t *h = make_heap(arena2, 2 * MiB);
        if (!h)
            return;
        struct kh_cpu *slot = slot0(h);
        enum { K = KH_MAG_DEPTH + 1 };
        static unsigned char *q[K];
        for (int i = 0; i < K; i++)
            q[i] = kheap_alloc(h, n);
        int f = 0;
        while (slot->count[c] < KH_MAG_DEPTH && f < K - 1)
            kheap_free(h, q[f++]);
        KEXPECT_EQ(slot->count[c], KH_MAG_DEPTH);
        uintptr_t bogus = (uintptr_t)q[K - 1];          /* a live object */
        slot->obj[c][0] = bogus;                        /* the oldest entry */
        int before = rec.n;
        if (v == 0)
            t_kheap_free(h, q[f++]);                    /* full: the oldest 16 go back */
        else
            t_kheap_flush_in(h);
        KEXPECT_MSG(rec.n == before + 1 && rec.code == KHEAP_E_FREELIST &&
                    rec.ptr == (void *)bogus &&
                    rec.caller == (v == 0 ? (void *)t_kheap_free_ret : (void *)t_kheap_flush_in_ret),
                    "bogus bottom entry met by %s: %d reports, last code %d ptr %p caller %p",
                    v == 0 ? "a drain" : "kheap_flush_in", rec.n - before, rec.code, rec.ptr,
                    rec.caller);
        KEXPECT_EQ(state_of((void *)bogus, c), KH_OBJ_LIVE);
        for (; f < K; f++)
            kheap_free(h, q[f]);
        KEXPECT_MSG(kheap_verify(h) == 0, "bogus bottom entry met by %s: kheap_verify = %d",
                    v == 0 ? "a drain" : "kheap_flush_in", kheap_verify(h));
        expect_heap_works_in(h);
    }
}

/* ADVERSARIAL (beyond the brief): a stray write of an out-of-range count into a stack (the count
 * lives in heap memory like the entries) must not make the heap read or write past the slot:
 * kheap_alloc and kheap_free of that class report or ignore it, and every byte of the control
 * block after the slot and of the first region's start stays as it was. */
KTEST(test_slab_stack_bad_count)
{
    if (DEBUG_BUILD) {
        ktest_skip("no per-CPU stacks in the debug build");
        return;
    }
    static unsigned char after[KHEAP_CTL_SIZE];
    for (int v = 0; v < 2; v++) {
        unsigned c = KH_SLAB_CLASSES - 1;          /* the last stack: past it is the slot's end */
        size_t n = req_max(c);
        kheap_t *h = make_heap(arena2, 2 * MiB);
        if (!h)
            return;
        struct kh_cpu *slot = slot0(h);
        unsigned char *x = kheap_alloc(h, n), *y = kheap_alloc(h, n);
        size_t off = offsetof(struct kh_ctl, cpu0) + sizeof(struct kh_cpu);
        size_t len = KHEAP_CTL_SIZE - off + 64;     /* the rest of the control block and more */
        unsigned char *tail = (unsigned char *)h + off;
        memcpy(after, tail, len);
        slot->count[c] = 200;
        int before = rec.n;
        if (v == 0) {
            fill(x, n, 1), fill(y, n, 2);
            unsigned char *r = t_kheap_alloc(h, n);
            KEXPECT_MSG(r == NULL || (kheap_usable(h, r) == class_size(c) && r != x && r != y),
                        "count 200: kheap_alloc = %p", r);
            if (r) {
                fill(r, n, 3);
                KEXPECT(intact(x, n, 1) && intact(y, n, 2));
                kheap_free(h, r);
            }
        } else {
            t_kheap_free(h, y);
            y = NULL;
        }
        size_t d = 0;
        while (d < len && after[d] == tail[d])
            d++;
        KEXPECT_MSG(d == len, "count 200 (%s): memory past the slot changed (first at slot end "
                    "+ %zu)", v == 0 ? "alloc" : "free", d);
        ktest_note("count 200 (%s): %d reports, count now %u", v == 0 ? "alloc" : "free",
                   rec.n - before, slot->count[c]);
        (void)x;
    }
}

/* =============================================================================================
 * krealloc of slab objects
 * ============================================================================================= */

KTEST(test_slab_realloc)
{
    reset(4 * MiB);
    FOR_EACH_CLASS(c) {
        size_t lo = req_min(c), hi = req_max(c);
        /* growing and shrinking within the class: the same pointer */
        unsigned char *p = kmalloc(lo);
        KEXPECT(p != NULL);
        fill(p, ksize(p), c);
        size_t held = ksize(p);
        unsigned char *q = krealloc(p, hi);
        KEXPECT_MSG(q == p, "class %u: krealloc(%zu -> %zu) moved", c, lo, hi);
        KEXPECT_EQ(ksize(q), ksize_of_req(hi));
        KEXPECT(intact(q, held, c));
        fill(q, ksize(q), c + 1);
        held = ksize(q);
        q = krealloc(q, lo ? lo : 1);
        KEXPECT_MSG(q == p, "class %u: krealloc(%zu -> %zu) moved", c, hi, lo);
        KEXPECT(intact(q, ksize(q), c + 1));
        fill(q, ksize(q), c + 2);
        held = ksize(q);
        /* growing across classes: moves, keeps the bytes */
        if (c + 1 < KH_SLAB_CLASSES) {
            size_t up = req_min(c + 1);
            unsigned char *r = krealloc(q, up);
            KEXPECT_MSG(r != NULL && r != q, "class %u: krealloc(%zu) to class %u did not move",
                        c, up, c + 1);
            if (r) {
                KEXPECT_EQ(ksize(r), ksize_of_req(up));
                KEXPECT(is_slab(&kheap_ctl, slab_of(r)) && slab_hdr(r)->cls == c + 1);
                KEXPECT(intact(r, held, c + 2));
                q = r;
            }
        }
        /* into the TLSF tier and back */
        held = ksize(q);
        fill(q, held, c + 3);
        unsigned char *t = krealloc(q, 3000);
        KEXPECT(t != NULL && t != q);
        if (t) {
            KEXPECT(intact(t, held, c + 3));
            KEXPECT(!is_slab(&kheap_ctl, slab_of(t)) || obj_index(t, slab_hdr(t)->cls) < 0);
            q = t;
        }
        fill(q, 3000, c + 4);
        unsigned char *b = krealloc(q, hi);
        KEXPECT(b != NULL);
        if (b) {
            KEXPECT(intact(b, hi, c + 4));
            q = b;
        }
        kfree(q);
    }
    /* shrinking to another class moves (the largest class down to each smaller one) */
    for (unsigned c = 0; c + 1 < KH_SLAB_CLASSES; c++) {
        if (!class_usable(c))
            continue;
        unsigned char *p = kmalloc(SLAB_REQ_MAX);
        fill(p, SLAB_REQ_MAX, 70 + c);
        unsigned char *r = krealloc(p, req_max(c));
        KEXPECT_MSG(r != NULL && r != p, "krealloc(%d -> %zu) did not move", SLAB_REQ_MAX,
                    req_max(c));
        if (r) {
            KEXPECT_EQ(ksize(r), ksize_of_req(req_max(c)));
            KEXPECT_EQ(slab_hdr(r)->cls, c);
            KEXPECT(intact(r, req_max(c), 70 + c));
        }
        kfree(r ? r : p);
    }
    /* krealloc(NULL, n) is kmalloc, krealloc(p, 0) is kfree */
    unsigned char *z = krealloc(NULL, 40);
    KEXPECT(z && is_slab(&kheap_ctl, slab_of(z)));
    uint64_t frees = stats().frees;
    KEXPECT_NULL(krealloc(z, 0));
    KEXPECT_EQ(stats().frees, frees + 1);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(stats().used_bytes, 0);
    KEXPECT_EQ(rec.n, 0);
}

/* A failed move keeps the object: growing with fault injection on gives NULL and p intact (an
 * in-class growth needs no memory: it still works); shrinking to another class when nothing is
 * left for the move keeps p where it is, not counted as a failure. */
KTEST(test_slab_realloc_fail)
{
    reset(1 * MiB);
    unsigned char *p = kmalloc(req_min(2));
    fill(p, req_min(2), 3);
    kheap_fail_after(0);
    KEXPECT_NULL(krealloc(p, 2000));
    KEXPECT_NULL(krealloc(p, req_min(3)));
    KEXPECT(krealloc(p, req_max(2)) == p);          /* same class: no allocation */
    kheap_fail_after(-1);
    KEXPECT(intact(p, req_min(2), 3));
    KEXPECT_EQ(state_of(p, 2), KH_OBJ_LIVE);
    kfree(p);
    /* nothing left: the shrink stays */
    reset(192 * KiB);
    unsigned char *big = kmalloc(SLAB_REQ_MAX);
    fill(big, SLAB_REQ_MAX, 4);
    static void *fillers[20000];
    unsigned nf = 0;
    size_t small = req_min(class_usable(0) ? 0 : 1) + 1;
    for (;;) {
        void *f = kmalloc(small);
        if (!f)
            break;
        if (nf < 20000)
            fillers[nf++] = f;
    }
    KEXPECT_NULL(kmalloc(small));
    uint64_t failed = stats().failed_allocs;
    unsigned char *r = t_krealloc(big, small);
    KEXPECT_MSG(r == big, "shrink with no room for the move: %p, expected it to stay at %p", r,
                big);
    KEXPECT_EQ(stats().failed_allocs, failed);
    KEXPECT(intact(big, small, 4));
    KEXPECT_EQ(ksize(big), DEBUG_BUILD ? small : (size_t)KH_SLAB_MAX);
    KEXPECT_EQ(rec.n, 0);
    for (unsigned i = 0; i < nf; i++)
        kfree(fillers[i]);
    kfree(r ? r : big);
    KEXPECT_EQ(kheap_check(), 0);
    KEXPECT_EQ(stats().used_bytes, 0);
}

/* =============================================================================================
 * Debug build: poison, canaries, allocation sites
 * ============================================================================================= */

/* A write into a freed slab object is KHEAP_E_USE_AFTER_FREE when the object is handed out
 * again (the kmalloc's caller), kheap_check finds it before; the object is handed out anyway. */
KTEST(test_slab_use_after_free)
{
    if (!DEBUG_BUILD) {
        ktest_skip("poison is the debug build's");
        return;
    }
    FOR_EACH_CLASS(c) {
        reset(1 * MiB);
        size_t n = req_max(c), size = class_size(c);
        unsigned char *a = kmalloc(n), *p = kmalloc(n), *b = kmalloc(n);
        kfree(p);
        size_t where[3] = { 0, size / 2, size - 1 };
        for (int w = 0; w < 3; w++) {
            p[where[w]] ^= 0x01;
            KEXPECT_EQ(kheap_check(), KHEAP_E_USE_AFTER_FREE);
            int before = rec.n;
            unsigned char *q = t_kmalloc(n);
            KEXPECT_MSG(q == p, "class %u: the freed object %p not handed out again (%p)", c, p,
                        q);
            EXPECT_REPORT(before, KHEAP_E_USE_AFTER_FREE, p, t_kmalloc);
            KEXPECT_EQ(kheap_check(), 0);
            kfree(q);
        }
        kfree(a);
        kfree(b);
        expect_heap_works();
    }
}

/* An overflow past n into the canary (its first byte, its last, the trailer) is
 * KHEAP_E_OVERFLOW on kfree (the object freed all the same) and on krealloc (resized all the
 * same); kheap_check finds it first. */
KTEST(test_slab_overflow)
{
    if (!DEBUG_BUILD) {
        ktest_skip("canaries are the debug build's");
        return;
    }
    reset(2 * MiB);
    FOR_EACH_CLASS(c) {
        size_t size = class_size(c);
        for (int v = 0; v < 4; v++) {
            size_t n = v == 1 && req_max(c) >= 5 ? req_max(c) - 5 : req_max(c);
            unsigned char *p = kmalloc(n);
            KEXPECT(p != NULL);
            fill(p, n, c);
            size_t at = v == 2 ? size - KH_TRAILER_SIZE - 1      /* the canary's last byte */
                      : v == 3 ? size - KH_TRAILER_SIZE          /* the trailer's count */
                      : n;                                       /* the first byte past n */
            p[at] ^= 0x5A;
            KEXPECT_EQ(kheap_check(), KHEAP_E_OVERFLOW);
            uint64_t frees = stats().frees;
            int before = rec.n;
            if (v == 1) {
                unsigned char *r = t_krealloc(p, n);
                EXPECT_REPORT(before, KHEAP_E_OVERFLOW, p, t_krealloc);
                KEXPECT(r == p);
                KEXPECT(intact(p, n, c));
                KEXPECT_EQ(kheap_check(), 0);           /* re-stamped */
                before = rec.n;
                kfree(p);
                KEXPECT_EQ(rec.n, before);
            } else {
                t_kfree(p);
                EXPECT_REPORT(before, KHEAP_E_OVERFLOW, p, t_kfree);
                KEXPECT_EQ(stats().frees, frees + 1);
                KEXPECT_EQ(state_of(p, c), KH_OBJ_FREE);
            }
            KEXPECT_EQ(kheap_check(), 0);
        }
    }
    expect_heap_works();
}

/* Live slab objects are grouped by allocation site in the leak report (debug), with their class
 * sizes as bytes; kheap_inspect names the site. Release: one group, site NULL. */
struct leak_log {
    int      n;
    void    *site[8];
    size_t   blocks[8], bytes[8];
};

static void leak_record(void *site, size_t blocks, size_t bytes, void *ctx)
{
    struct leak_log *l = ctx;
    if (l->n < 8) {
        l->site[l->n] = site;
        l->blocks[l->n] = blocks;
        l->bytes[l->n] = bytes;
    }
    l->n++;
}

KTEST(test_slab_sites)
{
    reset(2 * MiB);
    static void *a[5], *b[3];
    for (int i = 0; i < 5; i++)
        a[i] = t_kmalloc(100);
    for (int i = 0; i < 3; i++)
        b[i] = t_kcalloc(2, 20);
    struct leak_log l = { 0 };
    int groups = kheap_leak_report(leak_record, &l);
    size_t sa = class_size(class_of_req(100)), sb = class_size(class_of_req(40));
    if (DEBUG_BUILD) {
        KEXPECT_EQ(groups, 2);
        int fa = -1, fb = -1;
        for (int i = 0; i < l.n && i < 8; i++) {
            if (l.site[i] == (void *)t_kmalloc_ret)
                fa = i;
            if (l.site[i] == (void *)t_kcalloc_ret)
                fb = i;
        }
        KEXPECT(fa >= 0 && fb >= 0);
        if (fa >= 0) {
            KEXPECT_EQ(l.blocks[fa], 5);
            KEXPECT_EQ(l.bytes[fa], 5 * sa);
        }
        if (fb >= 0) {
            KEXPECT_EQ(l.blocks[fb], 3);
            KEXPECT_EQ(l.bytes[fb], 3 * sb);
        }
        struct kheap_block_info bi;
        KEXPECT_EQ(kheap_inspect(a[2], &bi), 1);
        KEXPECT(bi.site == (void *)t_kmalloc_ret);
        KEXPECT_EQ(bi.requested, 100);
        KEXPECT_EQ(kheap_inspect(b[1], &bi), 1);
        KEXPECT(bi.site == (void *)t_kcalloc_ret);
        KEXPECT_EQ(bi.requested, 40);
    } else {
        KEXPECT_EQ(groups, 1);
        KEXPECT(l.site[0] == NULL);
        KEXPECT_EQ(l.blocks[0], 8);
        KEXPECT_EQ(l.bytes[0], 5 * sa + 3 * sb);
    }
    for (int i = 0; i < 5; i++)
        kfree(a[i]);
    for (int i = 0; i < 3; i++)
        kfree(b[i]);
    l.n = 0;
    KEXPECT_EQ(kheap_leak_report(leak_record, &l), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* kheap_set_secret re-keys the slabs: their objects still free cleanly and misuse is still
 * caught exactly. */
KTEST(test_slab_set_secret)
{
    reset(2 * MiB);
    static void *p[200];
    for (int i = 0; i < 200; i++)
        p[i] = kmalloc((size_t)(i * 7) % (SLAB_REQ_MAX + 1));
    kfree(p[0]);
    KEXPECT_EQ(kheap_set_secret(0x1234567887654321ull), 0);
    for (int i = 1; i < 200; i++)
        kfree(p[i]);
    KEXPECT_EQ(rec.n, 0);
    int before = rec.n;
    t_kfree(p[0]);
    EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p[0], t_kfree);
    expect_heap_works();
}

/* =============================================================================================
 * The cpu hook
 * ============================================================================================= */

static unsigned hook_zero(void) { return 0; }
static unsigned hook_big;
static unsigned hook_const(void) { return hook_big; }

static atomic_ulong lock_calls;
static void count_lock(void *m) { pthread_mutex_lock(m); atomic_fetch_add(&lock_calls, 1); }
static void count_unlock(void *m) { pthread_mutex_unlock(m); }
static pthread_mutex_t hook_mutex = PTHREAD_MUTEX_INITIALIZER;

/* h's hooks plus the counting lock and, with ncpu > 0, the hook_const cpu hook (slot hook_big)
 * for ncpu slots, in *hk; kheap_set_hooks' result. */
static int set_counted_hooks(kheap_t *h, struct kheap_hooks *hk, unsigned ncpu)
{
    if (kheap_get_hooks(h, hk))
        return -1;
    hk->lock = count_lock;
    hk->unlock = count_unlock;
    hk->lock_ctx = &hook_mutex;
    hk->cpu = ncpu ? hook_const : NULL;
    hk->ncpu = ncpu;
    return kheap_set_hooks(h, hk);
}

/* ncpu 0, > KHEAP_MAX_CPUS: KHEAP_E_INVAL; 8 slots on a heap too small for them:
 * KHEAP_E_TOO_SMALL; nothing changes either way (hooks, slots, stacks, counters). */
static int same_stats(const struct kheap_stats *a, const struct kheap_stats *b)
{
    return a->total_bytes == b->total_bytes && a->used_bytes == b->used_bytes &&
           a->allocs == b->allocs && a->frees == b->frees && a->cached_bytes == b->cached_bytes &&
           a->slab_bytes == b->slab_bytes && a->slab_free_bytes == b->slab_free_bytes;
}

KTEST(test_slab_cpu_hook_invalid)
{
    kheap_t *h = make_heap(arena2, 1 * MiB);
    if (!h)
        return;
    struct kh_ctl *ctl = (struct kh_ctl *)h;
    void *p = kheap_alloc(h, 48), *q = kheap_alloc(h, 48);
    kheap_free(h, q);                               /* something cached (release) */
    struct kheap_hooks old, now;
    KEXPECT_EQ(kheap_get_hooks(h, &old), 0);
    struct kheap_stats s0 = hstats(h);
    static const unsigned bad[] = { 0, KHEAP_MAX_CPUS + 1, 1000, 0xFFFFFFFFu };
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct kheap_hooks hk = old;
        hk.cpu = hook_zero;
        hk.ncpu = bad[i];
        KEXPECT_MSG(kheap_set_hooks(h, &hk) == KHEAP_E_INVAL, "ncpu %u accepted", bad[i]);
        KEXPECT_EQ(kheap_get_hooks(h, &now), 0);
        KEXPECT(memcmp(&now, &old, sizeof now) == 0);
        KEXPECT(ctl->cpus == &ctl->cpu0);
        KEXPECT_EQ(ctl->ncpu, 1);
        struct kheap_stats s = hstats(h);
        KEXPECT(same_stats(&s, &s0));
    }
    /* ncpu is only read with a cpu hook */
    struct kheap_hooks hk = old;
    hk.ncpu = 0;
    KEXPECT_EQ(kheap_set_hooks(h, &hk), 0);
    KEXPECT_EQ(ctl->ncpu, 1);
    /* too small for 8 slots */
    kheap_t *t = make_heap(arena3, KHEAP_CTL_SIZE + 32 * KiB);
    if (t) {
        struct kh_ctl *tc = (struct kh_ctl *)t;
        void *tp = kheap_alloc(t, 64);
        KEXPECT(tp != NULL);
        struct kheap_hooks to, tn;
        KEXPECT_EQ(kheap_get_hooks(t, &to), 0);
        struct kheap_stats t0 = hstats(t);
        struct kheap_hooks th = to;
        th.cpu = hook_zero;
        th.ncpu = 8;
        KEXPECT_EQ(kheap_set_hooks(t, &th), KHEAP_E_TOO_SMALL);
        KEXPECT_EQ(kheap_get_hooks(t, &tn), 0);
        KEXPECT(memcmp(&tn, &to, sizeof tn) == 0);
        KEXPECT(tc->cpus == &tc->cpu0);
        KEXPECT_EQ(tc->ncpu, 1);
        KEXPECT_EQ(tc->cpu_block, 0);
        struct kheap_stats t1 = hstats(t);
        KEXPECT(same_stats(&t1, &t0));
        KEXPECT_EQ(kheap_verify(t), 0);
        kheap_free(t, tp);
        expect_heap_works_in(t);
    }
    /* a full heap is too small too; its objects are not touched */
    static void *fill_p[4000];
    unsigned nfp = 0;
    for (;;) {
        void *f = kheap_alloc(h, 4000);
        if (!f || nfp == 4000)
            break;
        fill(f, 4000, nfp);
        fill_p[nfp++] = f;
    }
    hk = old;
    hk.cpu = hook_zero;
    hk.ncpu = 8;
    KEXPECT_EQ(kheap_set_hooks(h, &hk), KHEAP_E_TOO_SMALL);
    KEXPECT(ctl->cpus == &ctl->cpu0);
    for (unsigned i = 0; i < nfp; i++) {
        KEXPECT(intact(fill_p[i], 4000, i));
        kheap_free(h, fill_p[i]);
    }
    kheap_free(h, p);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* Slots come and go with the hooks: 256 slots (the most) on a big enough heap, counters and
 * stacks carried over when the hooks change, the slots' block given back when the hook goes. */
KTEST(test_slab_cpu_hook_slots)
{
    kheap_t *h = make_heap(arena2, 4 * MiB);
    if (!h)
        return;
    struct kh_ctl *ctl = (struct kh_ctl *)h;
    static void *p[100];
    for (int i = 0; i < 100; i++)
        p[i] = kheap_alloc(h, (size_t)i * 5);
    for (int i = 0; i < 50; i++)
        kheap_free(h, p[i]);
    struct kheap_stats s0 = hstats(h);
    struct kheap_hooks hk;
    KEXPECT_EQ(kheap_get_hooks(h, &hk), 0);
    hk.cpu = hook_const;
    hk.ncpu = KHEAP_MAX_CPUS;
    hook_big = KHEAP_MAX_CPUS - 1;
    KEXPECT_EQ(kheap_set_hooks(h, &hk), 0);
    KEXPECT_EQ(ctl->ncpu, KHEAP_MAX_CPUS);
    KEXPECT(ctl->cpu_block != 0 && ctl->cpus == (struct kh_cpu *)ctl->cpu_block);
    struct kheap_stats s1 = hstats(h);
    KEXPECT_EQ(s1.allocs - s1.frees, s0.allocs - s0.frees);
    KEXPECT_EQ(s1.allocs, s0.allocs);
    KEXPECT_EQ(s1.used_bytes, s0.used_bytes);       /* the slots' block is not a user's */
    KEXPECT_EQ(s1.cached_bytes, 0);                 /* the old stack went back */
    KEXPECT_EQ(kheap_verify(h), 0);
    for (int i = 0; i < 50; i++)
        p[i] = kheap_alloc(h, (size_t)i * 5);
    /* the slots' block is the heap's own: no free, no ksize, no realloc takes it */
    void *cb = (void *)ctl->cpu_block;
    int before = rec.n;
    t_kheap_free(h, cb);
    EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, cb, t_kheap_free);
    before = rec.n;
    KEXPECT_EQ(t_kheap_usable(h, cb), 0);
    EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, cb, t_kheap_usable);
    before = rec.n;
    KEXPECT_NULL(t_kheap_realloc(h, cb, 10));
    EXPECT_REPORT(before, KHEAP_E_BAD_HEADER, cb, t_kheap_realloc);
    KEXPECT_EQ(ctl->cpu_block, (uintptr_t)cb);
    KEXPECT_EQ(kheap_verify(h), 0);
    rec.n = 0;
    if (!DEBUG_BUILD)
        KEXPECT(ctl->cpus[KHEAP_MAX_CPUS - 1].allocs > 0);   /* the last slot serves */
    for (int i = 0; i < 100; i++)
        kheap_free(h, p[i]);
    KEXPECT_EQ(kheap_verify(h), 0);
    hk.cpu = NULL;
    KEXPECT_EQ(kheap_set_hooks(h, &hk), 0);
    KEXPECT(ctl->cpus == &ctl->cpu0);
    KEXPECT_EQ(ctl->cpu_block, 0);
    struct kheap_stats s2 = hstats(h);
    KEXPECT_EQ(s2.used_bytes, 0);
    KEXPECT_EQ(s2.allocs, s2.frees);
    kheap_flush_in(h);
    s2 = hstats(h);
    KEXPECT_EQ(s2.slab_bytes, 0);
    KEXPECT_EQ(s2.largest_free, s2.total_bytes);    /* all one block again */
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* A hook index >= ncpu: every call takes the lock and no stack is used; an index below it: small
 * calls served by the stack take no lock (release). */
KTEST(test_slab_cpu_hook_out_of_range)
{
    kheap_t *h = make_heap(arena2, 2 * MiB);
    if (!h)
        return;
    struct kheap_hooks hk;
    hook_big = 5;
    KEXPECT_EQ(set_counted_hooks(h, &hk, 2), 0);
    static void *p[64];
    uint64_t rng = 99;
    unsigned long calls = 0, before = atomic_load(&lock_calls);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 64; i++) {
            p[i] = kheap_alloc(h, ktest_rand(&rng) % (SLAB_REQ_MAX + 1));
            KEXPECT(p[i] != NULL);
            fill(p[i], 8 < kheap_usable(h, p[i]) ? 8 : kheap_usable(h, p[i]), (unsigned)i);
            calls += 2;
        }
        for (int i = 0; i < 64; i++) {
            kheap_free(h, p[i]);
            calls++;
        }
        KEXPECT_EQ(hstats(h).cached_bytes, 0);
    }
    KEXPECT_MSG(atomic_load(&lock_calls) - before >= calls, "index >= ncpu: %lu locks for %lu "
                "calls", atomic_load(&lock_calls) - before, calls);
    KEXPECT_EQ(kheap_verify(h), 0);
    /* in range: the stack serves without the lock */
    hook_big = 1;
    void *w = kheap_alloc(h, 64);
    kheap_free(h, w);
    before = atomic_load(&lock_calls);
    for (int i = 0; i < 10; i++) {
        void *x = kheap_alloc(h, 64);
        kheap_free(h, x);
    }
    if (!DEBUG_BUILD)
        KEXPECT_MSG(atomic_load(&lock_calls) == before, "stack hits took %lu locks",
                    atomic_load(&lock_calls) - before);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* The gate the entry fast paths read follows every change of hooks and fault injection
 * (KH_GATE_SLOT0 without hooks, KH_GATE_OFF with a lock but no cpu hook or with fault injection,
 * KH_GATE_CPU with a cpu hook), and kheap_verify rejects one a stray write changed. */
KTEST(test_slab_gate)
{
    kheap_t *h = make_heap(arena2, 2 * MiB);
    if (!h)
        return;
    struct kh_ctl *ctl = (struct kh_ctl *)h;
    struct kheap_hooks none, hk;
    KEXPECT_EQ(kheap_get_hooks(h, &none), 0);
    KEXPECT_EQ(ctl->gate, KH_GATE_SLOT0);
    KEXPECT_EQ(set_counted_hooks(h, &hk, 0), 0);   /* a lock, no cpu hook */
    KEXPECT_EQ(ctl->gate, KH_GATE_OFF);
    KEXPECT_EQ(kheap_verify(h), 0);
    hook_big = 0;
    KEXPECT_EQ(set_counted_hooks(h, &hk, 2), 0);
    KEXPECT_EQ(ctl->gate, KH_GATE_CPU);
    KEXPECT_EQ(kheap_verify(h), 0);
    kheap_fail_after_in(h, 1000);
    KEXPECT_EQ(ctl->gate, KH_GATE_OFF);
    KEXPECT_EQ(kheap_verify(h), 0);
    kheap_fail_after_in(h, -1);
    KEXPECT_EQ(ctl->gate, KH_GATE_CPU);
    kheap_fail_rate_in(h, 10, 1);
    KEXPECT_EQ(ctl->gate, KH_GATE_OFF);
    kheap_fail_rate_in(h, 0, 1);
    KEXPECT_EQ(ctl->gate, KH_GATE_CPU);
    KEXPECT_EQ(kheap_set_hooks(h, &none), 0);
    KEXPECT_EQ(ctl->gate, KH_GATE_SLOT0);
    KEXPECT_EQ(kheap_verify(h), 0);
    static const uint64_t bad[] = { KH_GATE_OFF, KH_GATE_CPU, 3, ~0ull };
    for (unsigned v = 0; v < sizeof bad / sizeof bad[0]; v++) {
        ctl->gate = bad[v];
        KEXPECT_MSG(kheap_verify(h) == KHEAP_E_CORRUPT, "gate %llu on a heap without hooks: "
                    "kheap_verify = %d", (unsigned long long)bad[v], kheap_verify(h));
    }
    ctl->gate = KH_GATE_SLOT0;
    KEXPECT_EQ(kheap_verify(h), 0);
    expect_heap_works_in(h);
    KEXPECT_EQ(rec.n, 0);
}

/* The depot trades half stacks: a full stack leaves its oldest KH_MAG_BATCH objects there and
 * keeps the newest (half full: the next exchange is a random walk of KH_MAG_BATCH steps away,
 * not one), an empty stack takes one half, its own first. Then a churn that frees and allocates
 * a class at random on one CPU takes the lock about once per thousand calls, not once in two
 * after each exchange (a whole stack left the stack at the edge it came from). */
KTEST(test_slab_depot_half)
{
    if (DEBUG_BUILD) {
        ktest_skip("no per-CPU stacks in the debug build");
        return;
    }
    kheap_t *h = make_heap(arena2, 4 * MiB);
    if (!h)
        return;
    struct kh_ctl *ctl = (struct kh_ctl *)h;
    struct kheap_hooks hk;
    hook_big = 0;
    KEXPECT_EQ(set_counted_hooks(h, &hk, 2), 0);
    KEXPECT(ctl->depot != NULL);
    if (!ctl->depot)
        return;
    const unsigned c = 3;
    const size_t n = class_size(c);
    struct kh_cpu *s0 = &ctl->cpus[0], *s1 = &ctl->cpus[1];
    struct kh_depot *d = &ctl->depot[c];
    enum { K = 2 * KH_MAG_DEPTH };
    static void *p[K];
    for (int i = 0; i < K; i++)
        p[i] = kheap_alloc(h, n);
    int f = 0;                                      /* slot 0's stack filled by frees */
    while (s0->count[c] < KH_MAG_DEPTH && f < K - 1)
        kheap_free(h, p[f++]);
    KEXPECT_EQ(s0->count[c], KH_MAG_DEPTH);
    KEXPECT_EQ(d->nfull, 0);
    static uintptr_t was[KH_MAG_DEPTH];
    memcpy(was, s0->obj[c], sizeof was);
    kheap_free(h, p[f++]);                          /* full: half into the depot */
    KEXPECT_EQ(d->nfull, 1);
    KEXPECT_EQ(d->home[0], 1);                      /* slot 0's (home 1) */
    KEXPECT_EQ(s0->count[c], KH_MAG_DEPTH - KH_MAG_BATCH + 1);
    KEXPECT(memcmp(d->mag[0], was, KH_MAG_BATCH * sizeof *was) == 0);       /* the oldest */
    KEXPECT(memcmp(s0->obj[c], was + KH_MAG_BATCH,                         /* the newest */
                   (KH_MAG_DEPTH - KH_MAG_BATCH) * sizeof *was) == 0);
    KEXPECT_EQ(s0->obj[c][KH_MAG_DEPTH - KH_MAG_BATCH], (uintptr_t)p[f - 1]);
    for (unsigned j = 0; j < KH_MAG_BATCH; j++)
        KEXPECT_EQ(state_of((void *)d->mag[0][j], c), KH_OBJ_CACHED);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(hstats(h).cached_bytes, (size_t)(s0->count[c] + KH_MAG_BATCH) * n);
    /* slot 1, empty, with no partial slab of its own: takes slot 0's half, the newest first */
    hook_big = 1;
    KEXPECT_EQ(s1->count[c], 0);
    void *q = kheap_alloc(h, n);
    KEXPECT_EQ((uintptr_t)q, was[KH_MAG_BATCH - 1]);
    KEXPECT_EQ(d->nfull, 0);
    KEXPECT_EQ(s1->count[c], KH_MAG_BATCH - 1);
    KEXPECT_EQ(state_of(q, c), KH_OBJ_LIVE);
    kheap_free(h, q);
    hook_big = 0;
    for (; f < K; f++)
        kheap_free(h, p[f]);
    KEXPECT_EQ(kheap_verify(h), 0);
    /* a CPU whose stack is empty takes back its own half first, though another's is on top */
    {
        kheap_t *h2 = make_heap(arena2 + 4 * MiB, 4 * MiB);
        KEXPECT(h2 != NULL);
        if (!h2)
            return;
        KEXPECT_EQ(kheap_set_hooks(h2, &hk), 0);
        struct kh_ctl *c2 = (struct kh_ctl *)h2;
        struct kh_cpu *a = &c2->cpus[0], *b = &c2->cpus[1];
        struct kh_depot *d2 = &c2->depot[c];
        static void *pa[3 * KH_MAG_DEPTH], *pb[3 * KH_MAG_DEPTH];
        enum { M = 3 * KH_MAG_DEPTH };
        hook_big = 0;
        for (int i = 0; i < M; i++)
            KEXPECT((pa[i] = kheap_alloc(h2, n)) != NULL);
        hook_big = 1;
        for (int i = 0; i < M; i++)
            KEXPECT((pb[i] = kheap_alloc(h2, n)) != NULL);
        int fa = 0, fb = 0;
        hook_big = 0;
        while (a->count[c] < KH_MAG_DEPTH && fa < M - 1)
            kheap_free(h2, pa[fa++]);
        static uintptr_t mine[KH_MAG_BATCH];
        memcpy(mine, a->obj[c], sizeof mine);       /* the half slot 0 leaves */
        kheap_free(h2, pa[fa++]);
        hook_big = 1;
        while (b->count[c] < KH_MAG_DEPTH && fb < M - 1)
            kheap_free(h2, pb[fb++]);
        kheap_free(h2, pb[fb++]);
        KEXPECT_EQ(d2->nfull, 2);
        KEXPECT(d2->home[0] == 1 && d2->home[1] == 2);
        hook_big = 0;                               /* slot 0 empties its stack, then one more */
        static void *got[KH_MAG_DEPTH + 1];
        int ng = 0;
        while (a->count[c] > 0 && ng < KH_MAG_DEPTH)
            got[ng++] = kheap_alloc(h2, n);
        got[ng] = kheap_alloc(h2, n);
        KEXPECT_EQ((uintptr_t)got[ng], mine[KH_MAG_BATCH - 1]);    /* its own half's top */
        KEXPECT_EQ(d2->nfull, 1);
        KEXPECT_EQ(d2->home[0], 2);                 /* slot 1's half is left */
        ng++;
        for (int i = 0; i < ng; i++)
            kheap_free(h2, got[i]);
        for (; fa < M; fa++)
            kheap_free(h2, pa[fa]);
        hook_big = 1;
        for (; fb < M; fb++)
            kheap_free(h2, pb[fb]);
        hook_big = 0;
        KEXPECT_EQ(kheap_verify(h2), 0);
    }
    /* churn on one CPU, classes at random: the lock is rare */
    static void *live[1024];
    uint64_t rng = 7;
    for (int i = 0; i < 1024; i++)
        live[i] = kheap_alloc(h, 16 + ktest_rand(&rng) % (SLAB_REQ_MAX - 15));
    unsigned long before = atomic_load(&lock_calls);
    enum { OPS = 200000 };
    for (int i = 0; i < OPS; i++) {
        unsigned k = (unsigned)(ktest_rand(&rng) % 1024);
        kheap_free(h, live[k]);
        live[k] = kheap_alloc(h, 16 + ktest_rand(&rng) % (SLAB_REQ_MAX - 15));
        KEXPECT(live[k] != NULL);
    }
    unsigned long locks = atomic_load(&lock_calls) - before;
    ktest_note("churn on one CPU: %lu locks in %d calls", locks, 2 * OPS);
    KEXPECT_MSG(locks * 200 < 2 * OPS, "churn: %lu locks in %d calls", locks, 2 * OPS);
    for (int i = 0; i < 1024; i++)
        kheap_free(h, live[i]);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(rec.n, 0);
}

/* ---- threads ---------------------------------------------------------------------------------- */

/* The thread-slot hook: each thread's index from a counter, on its first call in an epoch (tests
 * start a new epoch, so that new threads count from 0 again); or a thread's fixed slot. */
static atomic_uint slot_next, slot_epoch = 1;
static __thread unsigned my_slot, my_epoch;
static __thread int fixed_slot = -1;
static unsigned thread_slot(void)
{
    if (fixed_slot >= 0)
        return (unsigned)fixed_slot;
    unsigned e = atomic_load(&slot_epoch);
    if (my_epoch != e) {
        my_slot = atomic_fetch_add(&slot_next, 1);
        my_epoch = e;
    }
    return my_slot;
}
static void new_slot_epoch(void)
{
    atomic_store(&slot_next, 0);
    atomic_fetch_add(&slot_epoch, 1);
}

static atomic_ulong th_reports;
static void th_on_error(int code, void *ptr, void *caller)
{
    if (atomic_fetch_add(&th_reports, 1) < 5)
        printf("# unexpected report %d (%s) for %p from %p\n", code, kheap_strerror(code), ptr,
               caller);
}

enum { TH_N = 4, MBOX = 1024, TH_LOCAL = 64 };
static _Atomic uint64_t mbox[MBOX];
static kheap_t *th_heap;
static unsigned long th_ops = 400000;

static inline uint8_t th_pat(const void *p, size_t i)
{
    return (uint8_t)(((uintptr_t)p >> 4) * 0x9D + i * 13 + 7);
}
static void th_fill(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = th_pat(p, i);
}
static int th_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != th_pat(p, i))
            return 0;
    return 1;
}
static uint64_t th_pack(void *p, size_t n) { return (uint64_t)(uintptr_t)p | ((uint64_t)n << 48); }
static void *th_ptr(uint64_t v) { return (void *)(uintptr_t)(v & 0xFFFFFFFFFFFFull); }
static size_t th_n(uint64_t v) { return (size_t)(v >> 48); }

struct th_worker {
    pthread_t     t;
    uint64_t      rng;
    unsigned long bad, cross, fails;
    void         *local[TH_LOCAL];
    size_t        local_n[TH_LOCAL];
    unsigned      nlocal;
};
static struct th_worker th_w[TH_N];

static void th_check_obj(struct th_worker *w, unsigned char *p, size_t n)
{
    if ((uintptr_t)p % KHEAP_ALIGN || !th_ok(p, n) ||
        kheap_usable(th_heap, p) != ksize_of_req(n))
        w->bad++;
}

static void *th_main(void *arg)
{
    struct th_worker *w = arg;
    kheap_t *h = th_heap;
    for (unsigned long op = 0; op < th_ops; op++) {
        uint64_t r = ktest_rand(&w->rng);
        unsigned act = r % 8;
        if (act < 2 && w->nlocal) {                     /* free one of ours */
            unsigned i = (unsigned)((r >> 8) % w->nlocal);
            th_check_obj(w, w->local[i], w->local_n[i]);
            kheap_free(h, w->local[i]);
            w->local[i] = w->local[--w->nlocal];
            w->local_n[i] = w->local_n[w->nlocal];
        } else if (act == 2 && w->nlocal) {             /* resize one of ours */
            unsigned i = (unsigned)((r >> 8) % w->nlocal);
            size_t m = 1 + (r >> 20) % SLAB_REQ_MAX, n = w->local_n[i];
            th_check_obj(w, w->local[i], n);
            unsigned char *q = kheap_realloc(h, w->local[i], m);
            if (!q) {
                w->fails++;
                continue;
            }
            for (size_t k = 0; k < (m < n ? m : n); k++)
                if (q[k] != th_pat(w->local[i], k)) {
                    w->bad++;
                    break;
                }
            th_fill(q, m);
            w->local[i] = q;
            w->local_n[i] = m;
        } else {                                        /* allocate: keep it or post it */
            size_t n = 1 + (r >> 8) % SLAB_REQ_MAX;
            unsigned char *p = kheap_alloc(h, n);
            if (!p) {
                w->fails++;
                continue;
            }
            th_fill(p, n);
            if ((r >> 30) & 1 && w->nlocal < TH_LOCAL) {
                w->local[w->nlocal] = p;
                w->local_n[w->nlocal++] = n;
            } else {
                uint64_t old = atomic_exchange(&mbox[(r >> 40) % MBOX], th_pack(p, n));
                if (old) {                              /* someone's: most likely another's */
                    th_check_obj(w, th_ptr(old), th_n(old));
                    kheap_free(h, th_ptr(old));
                    w->cross++;
                }
            }
        }
    }
    for (unsigned i = 0; i < w->nlocal; i++) {
        th_check_obj(w, w->local[i], w->local_n[i]);
        kheap_free(h, w->local[i]);
    }
    w->nlocal = 0;
    kheap_flush_in(h);
    return NULL;
}

/* 4 threads, a mutex and the thread-slot hook: random small allocations, frees, reallocs, half of
 * the blocks passed through a shared mailbox and freed by whichever thread takes them; patterns
 * checked all along. Then the counters: allocs - frees = live, used_bytes = their class sizes,
 * no cached bytes once every thread has flushed, kheap_verify clean. */
KTEST(test_slab_threads)
{
    kheap_t *h = kheap_create(arena4, 16 * MiB);
    if (!KEXPECT(h != NULL))
        return;
    th_heap = h;
    new_slot_epoch();
    struct kheap_hooks hk = { .error = th_on_error, .lock = count_lock, .unlock = count_unlock,
                              .lock_ctx = &hook_mutex, .cpu = thread_slot, .ncpu = 8 };
    KEXPECT_EQ(kheap_set_hooks(h, &hk), 0);
    atomic_store(&th_reports, 0);
    for (unsigned i = 0; i < MBOX; i++)
        atomic_store(&mbox[i], 0);
    unsigned long locks0 = atomic_load(&lock_calls);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < TH_N; i++) {
        th_w[i] = (struct th_worker){ .rng = 0x9E3779B97F4A7C15ull * (i + 1) };
        KEXPECT_EQ(pthread_create(&th_w[i].t, NULL, th_main, &th_w[i]), 0);
    }
    unsigned long bad = 0, cross = 0, fails = 0;
    for (unsigned i = 0; i < TH_N; i++) {
        pthread_join(th_w[i].t, NULL);
        bad += th_w[i].bad;
        cross += th_w[i].cross;
        fails += th_w[i].fails;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    ktest_note("%u threads x %lu ops in %.2f s, %lu cross-thread frees, %lu locks, %lu failed",
               TH_N, th_ops, secs, cross, atomic_load(&lock_calls) - locks0, fails);
    KEXPECT_EQ(bad, 0);
    KEXPECT_EQ(fails, 0);
    KEXPECT(cross > th_ops / 10);
    KEXPECT_EQ(atomic_load(&th_reports), 0);
    /* what is left: the mailbox */
    uint64_t live = 0, bytes = 0;
    for (unsigned i = 0; i < MBOX; i++) {
        uint64_t v = atomic_load(&mbox[i]);
        if (!v)
            continue;
        live++;
        bytes += class_size(class_of_req(th_n(v)));
        if (!th_ok(th_ptr(v), th_n(v)))
            KEXPECT_MSG(0, "mailbox object %p damaged", th_ptr(v));
    }
    struct kheap_stats s = hstats(h);
    KEXPECT_EQ(s.allocs - s.frees, live);
    KEXPECT_EQ(s.used_bytes, bytes);
    KEXPECT_EQ(s.cached_bytes, 0);
    KEXPECT_EQ(kheap_verify(h), 0);
    if (!DEBUG_BUILD) {
        uint64_t fast = 0;
        struct kh_ctl *ctl = (struct kh_ctl *)h;
        for (unsigned i = 0; i < ctl->ncpu; i++)
            fast += ctl->cpus[i].allocs;
        KEXPECT_MSG(fast > 0, "no allocation served by a slot without the lock");
    }
    for (unsigned i = 0; i < MBOX; i++) {
        uint64_t v = atomic_exchange(&mbox[i], 0);
        if (v)
            kheap_free(h, th_ptr(v));
    }
    kheap_flush_in(h);
    s = hstats(h);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.allocs, s.frees);
    KEXPECT_EQ(s.cached_bytes, 0);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(atomic_load(&th_reports), 0);
}

/* A thread that runs what it is given, on a fixed slot. */
struct runner {
    pthread_t       t;
    pthread_mutex_t m;
    pthread_cond_t  cv;
    void          (*fn)(void *);
    void           *arg;
    int             state;              /* 0 idle, 1 work to do, 2 quit */
    int             slot;
};

static void *runner_main(void *arg)
{
    struct runner *r = arg;
    fixed_slot = r->slot;
    pthread_mutex_lock(&r->m);
    for (;;) {
        while (r->state == 0)
            pthread_cond_wait(&r->cv, &r->m);
        if (r->state == 2)
            break;
        r->fn(r->arg);
        r->state = 0;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->m);
    return NULL;
}

static void run_on(struct runner *r, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&r->m);
    r->fn = fn;
    r->arg = arg;
    r->state = 1;
    pthread_cond_broadcast(&r->cv);
    while (r->state != 0)
        pthread_cond_wait(&r->cv, &r->m);
    pthread_mutex_unlock(&r->m);
}

static void runner_start(struct runner *r, int slot)
{
    *r = (struct runner){ .slot = slot };
    pthread_mutex_init(&r->m, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_create(&r->t, NULL, runner_main, r);
}

static void runner_stop(struct runner *r)
{
    pthread_mutex_lock(&r->m);
    r->state = 2;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->m);
    pthread_join(r->t, NULL);
}

enum { B_OBJ = 40 };
static void *b_obj[B_OBJ], *b_keep[4], *b_result;
static size_t b_n = 96;
static void b_churn(void *h)                    /* 40 allocated, 40 freed: a stack of 16..32 */
{
    for (int i = 0; i < B_OBJ; i++)
        b_obj[i] = kheap_alloc(h, b_n);
    for (int i = 0; i < B_OBJ; i++)
        kheap_free(h, b_obj[i]);
}
static void b_keep4(void *h)
{
    for (int i = 0; i < 4; i++)
        b_keep[i] = kheap_alloc(h, b_n);
}
static void b_free_one(void *h) { kheap_free(h, b_keep[0]); b_keep[0] = NULL; }
static void b_alloc_one(void *h) { b_result = kheap_alloc(h, b_n); }
static void b_alloc_big(void *h) { b_result = kheap_alloc(h, 3000); }
static void b_free_big(void *h) { kheap_free(h, b_result); b_result = NULL; }
static void b_free_rest(void *h)
{
    for (int i = 0; i < 4; i++)
        kheap_free(h, b_keep[i]);
    kheap_free(h, b_result);
    b_result = NULL;
    kheap_flush_in(h);
}

static kheap_t *drain_heap(void)
{
    kheap_t *h = kheap_create(arena2, 4 * MiB);
    if (!h)
        return NULL;
    struct kheap_hooks hk = { .error = th_on_error, .lock = count_lock, .unlock = count_unlock,
                              .lock_ctx = &hook_mutex, .cpu = thread_slot, .ncpu = 4 };
    KEXPECT_EQ(kheap_set_hooks(h, &hk), 0);
    atomic_store(&th_reports, 0);
    return h;
}

/* kheap_flush from one thread asks the other slots to drain: their stacks empty at their next
 * (small) call, seen as cached_bytes dropping to what that call leaves. */
KTEST(test_slab_flush_drains_others)
{
    if (DEBUG_BUILD) {
        ktest_skip("no per-CPU stacks in the debug build");
        return;
    }
    kheap_t *h = drain_heap();
    if (!h)
        return;
    struct kh_ctl *ctl = (struct kh_ctl *)h;
    size_t size = class_size(class_of_req(b_n));
    struct runner b;
    fixed_slot = 0;                                 /* this thread: slot 0, b: slot 1 */
    runner_start(&b, 1);
    run_on(&b, b_keep4, h);
    for (int round = 0; round < 2; round++) {
        run_on(&b, b_churn, h);
        uint64_t cached = hstats(h).cached_bytes;
        KEXPECT(cached >= KH_MAG_BATCH * size);
        KEXPECT_EQ(ctl->cpus[1].drain, 0);
        /* slot 1's own stack stays: it is its owner's to empty (the depot, the heap's, does not) */
        size_t in_slot1 = 0;
        for (unsigned k = 0; k < KH_SLAB_CLASSES; k++)
            in_slot1 += (size_t)ctl->cpus[1].count[k] * class_size(k);
        KEXPECT(in_slot1 > 0 && in_slot1 <= cached);
        kheap_flush_in(h);                          /* slot 0's own: empty; slot 1 asked */
        KEXPECT_EQ(ctl->cpus[1].drain, 1);
        KEXPECT_EQ(ctl->cpus[0].drain, 0);
        KEXPECT_EQ(hstats(h).cached_bytes, in_slot1);
        if (round == 0) {
            run_on(&b, b_free_one, h);              /* drained, then this object pushed */
            KEXPECT_EQ(hstats(h).cached_bytes, size);
        } else {
            run_on(&b, b_alloc_one, h);             /* drained, then a refill less one */
            KEXPECT(b_result != NULL);
            KEXPECT_EQ(hstats(h).cached_bytes, (KH_MAG_BATCH - 1) * size);
        }
        KEXPECT_EQ(ctl->cpus[1].drain, 0);
        KEXPECT_EQ(kheap_verify(h), 0);
    }
    run_on(&b, b_free_rest, h);
    runner_stop(&b);
    fixed_slot = -1;
    KEXPECT_EQ(hstats(h).cached_bytes, 0);
    KEXPECT_EQ(hstats(h).used_bytes, 0);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(atomic_load(&th_reports), 0);
}

/* A double free of an object that sits in another CPU's stack (freed there, then freed again on
 * this CPU) and of one another CPU's stack drained back to its slab: KHEAP_E_DOUBLE_FREE, the
 * caller of the second free; the other stack is not disturbed. */
static void *x_obj;
static void x_free(void *h) { kheap_free(h, x_obj); }
static void x_alloc(void *h) { x_obj = kheap_alloc(h, 200); }

KTEST(test_slab_double_free_other_cpu)
{
    kheap_t *h = kheap_create(arena2, 4 * MiB);
    if (!KEXPECT(h != NULL))
        return;
    struct kheap_hooks hk = { .error = record, .lock = count_lock, .unlock = count_unlock,
                              .lock_ctx = &hook_mutex, .cpu = thread_slot, .ncpu = 4 };
    KEXPECT_EQ(kheap_set_hooks(h, &hk), 0);
    memset(&rec, 0, sizeof rec);
    struct kh_ctl *ctl = (struct kh_ctl *)h;
    unsigned c = class_of_req(200);
    struct runner b;
    fixed_slot = 0;
    runner_start(&b, 2);
    run_on(&b, x_alloc, h);
    unsigned char *p = x_obj;
    KEXPECT(p != NULL);
    run_on(&b, x_free, h);                          /* into b's stack (release) */
    uint8_t count = ctl->cpus[2].count[c];
    int before = rec.n;
    t_kheap_free(h, p);                             /* again, from slot 0 */
    EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_kheap_free);
    KEXPECT_EQ(ctl->cpus[2].count[c], count);
    KEXPECT_EQ(ctl->cpus[0].count[c], 0);
    before = rec.n;
    KEXPECT_EQ(t_kheap_usable(h, p), 0);
    EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, p, t_kheap_usable);
    KEXPECT_EQ(kheap_verify(h), 0);
    /* b's stack drained (kheap_flush here asks, b's next small call does it), then again */
    kheap_flush_in(h);
    run_on(&b, x_alloc, h);
    run_on(&b, x_free, h);
    run_on(&b, x_alloc, h);
    unsigned char *keep = x_obj;
    kheap_flush_in(h);
    run_on(&b, x_alloc, h);                         /* drains b's stack, takes one */
    run_on(&b, x_free, h);
    before = rec.n;
    t_kheap_free(h, x_obj);
    EXPECT_REPORT(before, KHEAP_E_DOUBLE_FREE, x_obj, t_kheap_free);
    x_obj = keep;
    run_on(&b, x_free, h);
    runner_stop(&b);
    fixed_slot = -1;
    KEXPECT_EQ(kheap_verify(h), 0);
    kheap_flush_in(h);
    KEXPECT_EQ(hstats(h).used_bytes, 0);
}

/* kheap.h (kheap_flush_in): every other CPU is asked to empty its stacks "at its next small
 * allocation or free". A large call (a TLSF block) does not look at the slot: the stacks stay,
 * bounded (KH_SLAB_CLASSES * KH_MAG_DEPTH objects), until the next small call empties them. */
KTEST(test_slab_flush_drains_others_any_call)
{
    if (DEBUG_BUILD) {
        ktest_skip("no per-CPU stacks in the debug build");
        return;
    }
    kheap_t *h = drain_heap();
    if (!h)
        return;
    struct kh_ctl *ctl = (struct kh_ctl *)h;
    struct runner b;
    fixed_slot = 0;
    runner_start(&b, 1);
    run_on(&b, b_keep4, h);
    run_on(&b, b_churn, h);
    kheap_flush_in(h);
    KEXPECT_EQ(ctl->cpus[1].drain, 1);
    run_on(&b, b_alloc_big, h);
    KEXPECT(b_result != NULL);
    run_on(&b, b_free_big, h);
    KEXPECT_EQ(ctl->cpus[1].drain, 1);              /* not yet: no small call */
    run_on(&b, b_free_rest, h);                     /* small frees: drained first */
    KEXPECT_EQ(ctl->cpus[1].drain, 0);
    uint64_t left = 0;
    for (unsigned k = 0; k < KH_SLAB_CLASSES; k++)
        left += ctl->cpus[1].count[k];
    KEXPECT(left <= 4);                             /* only what the frees after the drain pushed */
    runner_stop(&b);
    fixed_slot = -1;
    KEXPECT_EQ(kheap_verify(h), 0);
}

/* =============================================================================================
 * Out of memory, utilisation
 * ============================================================================================= */

/* A small heap (256 KiB) filled with small objects, all freed (stacks full, spare slabs kept): an
 * allocation that needs all of that memory succeeds, the OOM path gives it back. Once with every
 * class, freed in random order (the stacks' objects keep most slabs), once with four classes
 * freed in allocation order (several slabs each: spares). */
static void oom_round(const unsigned *classes, unsigned nclasses, int in_order)
{
    static void *p[40000];
    reset(256 * KiB);
    size_t largest = stats().largest_free;
    unsigned np = 0, misses = 0;
    uint64_t rng = 5;
    while (misses < 64 && np < 40000) {
        unsigned c = classes[ktest_rand(&rng) % nclasses];
        if (!class_usable(c))
            continue;
        void *q = kmalloc(req_max(c));
        if (!q) {
            misses++;
            continue;
        }
        p[np++] = q;
    }
    KEXPECT_NULL(kmalloc(largest - META));
    for (unsigned i = 0; i < np && !in_order; i++) {
        unsigned j = (unsigned)(ktest_rand(&rng) % np);
        void *t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    for (unsigned i = 0; i < np; i++)
        kfree(p[i]);
    struct kheap_stats s = stats();
    unsigned spares = 0;
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++)
        spares += kheap_ctl.spare[c] != 0;
    ktest_note("%u classes, %u objects; freed: %zu bytes in slabs, %zu cached, %u spare slabs",
               nclasses, np, s.slab_bytes, s.cached_bytes, spares);
    KEXPECT(s.slab_bytes > 0);
    if (!DEBUG_BUILD)
        KEXPECT(s.cached_bytes > 0);
    if (in_order)                               /* (the stacks hold the last slab's objects) */
        KEXPECT(spares > 0);
    KEXPECT_EQ(s.used_bytes, 0);
    int before = rec.n;
    void *big = t_kmalloc(largest - META);
    KEXPECT_MSG(big != NULL, "kmalloc(%zu) on an empty heap whose memory the slab tier holds",
                largest - META);
    KEXPECT_EQ(rec.n, before);
    kfree(big);
    KEXPECT_EQ(kheap_check(), 0);
    expect_heap_works();
}

KTEST(test_slab_oom_reclaim)
{
    static const unsigned all[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
    static const unsigned few[] = { 1, 5, 10, 15 };
    oom_round(all, 16, 0);
    oom_round(few, 4, 1);
    KEXPECT_EQ(rec.n, 0);
}

/* Random requests of 16..16384 bytes until the first failure on an 8 MiB heap: used / total
 * >= 0.90 (uniform and log-uniform sizes). */
static double fill_until_failure(int log_uniform, uint64_t seed)
{
    reset(8 * MiB);
    uint64_t rng = seed;
    unsigned long n_ok = 0;
    for (;;) {
        size_t n;
        if (log_uniform) {
            unsigned k = 4 + (unsigned)(ktest_rand(&rng) % 11);   /* 2^4 .. 2^14 */
            n = ((size_t)1 << k) + ktest_rand(&rng) % ((size_t)1 << k);
            if (n > 16384)
                n = 16384;
        } else {
            n = 16 + ktest_rand(&rng) % (16384 - 16 + 1);
        }
        if (!kmalloc(n))
            break;
        n_ok++;
    }
    struct kheap_stats s = stats();
    double u = (double)s.used_bytes / (double)s.total_bytes;
    ktest_note("%s sizes: %lu allocations, used %zu of %zu bytes: %.4f; slabs %zu, slab free "
               "%zu, cached %zu, largest free %zu", log_uniform ? "log-uniform" : "uniform",
               n_ok, s.used_bytes, s.total_bytes, u, s.slab_bytes, s.slab_free_bytes,
               s.cached_bytes, s.largest_free);
    KEXPECT_EQ(kheap_check(), 0);
    return u;
}

KTEST(test_slab_utilisation)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        KEXPECT(fill_until_failure(0, seed * 1234567) >= 0.90);
        KEXPECT(fill_until_failure(1, seed * 7654321) >= 0.90);
    }
    KEXPECT_EQ(rec.n, 0);
}
