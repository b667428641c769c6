/*
 * tests/host/fuzz_kheap.c -- libFuzzer target for kheap (clang -fsanitize=fuzzer,address, linked
 * with build/host/libkheap.a; the NASM objects are not instrumented, the model is). Each input is
 * decoded as a sequence of operations run against a fresh two-region heap and a shadow model of
 * the live blocks (size, usable size, fill pattern): malloc, calloc (also overflowing), realloc,
 * aligned (also bad alignments), free, free-twice, free-interior, free-wild, overflow-by-k into
 * the next block's header, ksize, check. A recording error handler collects every report; any
 * report the model did not expect, any expected report missing, a wrong code, pointer or caller,
 * a bad result, a pattern mismatch, a counter the model disagrees with or a kheap_check failure
 * is __builtin_trap(). Run by `make fuzz` (FUZZ_SECONDS) and, bounded, by `make test`.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mm/kheap.h"

/* ---- the heap: two regions with a gap between them, and slack after the second ----------- */
enum {
    ARENA_BYTES  = 256 << 10,
    REGION0_OFF  = 0,
    REGION0_LEN  = 96 << 10,
    GAP_OFF      = REGION0_OFF + REGION0_LEN,  /* [GAP_OFF, REGION1_OFF): never heap memory */
    REGION1_OFF  = 128 << 10,
    REGION1_LEN  = 120 << 10,
    SLOTS        = 64,                         /* live blocks the model tracks */
    MAX_REPORTS  = 8,
    OVERFLOW_MAX = 24,                         /* into the next header and at most 16 bytes on */
};
/* Filler of the gap and the slack, and a bit of every pattern byte: KHEAP_F_RESERVED-style bits
 * (2 and 3 of the low byte) that no valid header has, so a kfree that reads 8 of these bytes as
 * a header is certain (not 1 - 2^-16 likely) to reject it. */
#define NEVER_A_HEADER 0x0C

static uint8_t arena[ARENA_BYTES] __attribute__((aligned(4096)));
static uint8_t wild_global[64] __attribute__((aligned(16)));

/* ---- trampolines: kheap calls with a known return address (the caller a report names) ----- */
#define TRAMPOLINE(name, fn)                                                                  \
    __asm__(".text\n.p2align 4\n.globl " #name "\n" #name ":\n\tsub $8, %rsp\n\tcall " #fn    \
            "@PLT\n.globl " #name "_ret\n" #name "_ret:\n\tadd $8, %rsp\n\tret\n");           \
    extern const char name##_ret[];
TRAMPOLINE(fz_kfree, kfree)
TRAMPOLINE(fz_ksize, ksize)
TRAMPOLINE(fz_krealloc, krealloc)
TRAMPOLINE(fz_kmalloc, kmalloc)
TRAMPOLINE(fz_kcalloc, kcalloc)
TRAMPOLINE(fz_kmalloc_aligned, kmalloc_aligned)
void   fz_kfree(void *p);
size_t fz_ksize(const void *p);
void  *fz_krealloc(void *p, size_t n);
void  *fz_kmalloc(size_t n);
void  *fz_kcalloc(size_t n, size_t size);
void  *fz_kmalloc_aligned(size_t align, size_t n);

/* ---- model ---------------------------------------------------------------------------------- */
struct block {
    uint8_t *p;
    size_t   n;          /* bytes asked for: these carry the pattern */
    size_t   usable;     /* ksize() */
    size_t   size;       /* block size, header included (kheap_inspect) */
    uint8_t  seed;
};

static struct block live[SLOTS];
static unsigned     nlive;
static uint64_t     m_allocs, m_frees, m_failed, m_errors;

static struct report { int code; void *ptr, *caller; } reports[MAX_REPORTS];
static unsigned nreports;

static void on_report(int code, void *ptr, void *caller)
{
    if (nreports < MAX_REPORTS)
        reports[nreports] = (struct report){ code, ptr, caller };
    nreports++;
}

#define REQUIRE(cond)                                                                         \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz_kheap: model mismatch at line %d: %s\n", __LINE__, #cond); \
            __builtin_trap();                                                                 \
        }                                                                                     \
    } while (0)

/* Exactly the reports expected since the last call: none, or one (code, ptr, caller). */
static void expect_none(void)
{
    REQUIRE(nreports == 0);
}

static void expect_one(int code, const void *ptr, const void *caller)
{
    REQUIRE(nreports == 1);
    REQUIRE(reports[0].code == code);
    REQUIRE(reports[0].ptr == ptr);
    REQUIRE(reports[0].caller == caller);
    nreports = 0;
    m_errors++;
}

static uint8_t pat(uint8_t seed, size_t i)
{
    return (uint8_t)(seed + i * 7 + (i >> 7)) | NEVER_A_HEADER;
}

/* Blocks carry the pattern on their first and last FILL_EDGE bytes (all of a small block):
 * enough to see overlaps, lost data and stray writes, and keeps large blocks cheap. */
enum { FILL_EDGE = 256 };

static int patterned(const struct block *b, size_t i)
{
    return i < FILL_EDGE || i + FILL_EDGE >= b->n;
}

static void fill(const struct block *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (!patterned(b, i))
            i = b->n - FILL_EDGE;
        b->p[i] = pat(b->seed, i);
    }
}

/* Verify the pattern bytes below upto (krealloc keeps min(old, new) bytes). */
static void verify(const struct block *b, size_t upto)
{
    for (size_t i = 0; i < upto && i < b->n; i++) {
        if (!patterned(b, i))
            i = b->n - FILL_EDGE;
        if (i < upto)
            REQUIRE(b->p[i] == pat(b->seed, i));
    }
}

/* kmalloc's block size for n bytes, and the good-fit rounding (mm/kheap.h): a request fails
 * only if no free block reaches its rounded size. */
static size_t block_size(size_t n)
{
    size_t s = (n + KHEAP_HEADER_SIZE + KHEAP_ALIGN - 1) & ~(size_t)(KHEAP_ALIGN - 1);
    return s < KHEAP_MIN_BLOCK ? KHEAP_MIN_BLOCK : s;
}

static size_t class_round(size_t s)
{
    if (s < (1u << KHEAP_FL_SHIFT))
        return s;
    unsigned msb = 63 - __builtin_clzll(s);
    return s + ((size_t)1 << (msb - KHEAP_SL_LOG2)) - 1;
}

static struct kheap_stats stats(void)
{
    struct kheap_stats s;
    kheap_get_stats(&s);
    return s;
}

/* A NULL from an allocation of n bytes is honest only if nothing large enough is free. */
static void null_is_honest(size_t n)
{
    if (n > KHEAP_MAX_ALLOC)
        return;
    REQUIRE(stats().largest_free < class_round(block_size(n)));
}

static int in_region(const uint8_t *p, size_t n)
{
    return (p >= arena + REGION0_OFF && p + n <= arena + REGION0_OFF + REGION0_LEN) ||
           (p >= arena + REGION1_OFF && p + n <= arena + REGION1_OFF + REGION1_LEN);
}

/* A new block from kheap: aligned, big enough, inside a region, overlapping no live block
 * (except slot `skip`, the block a krealloc replaced). */
/* The block size behind payload p (header included): where the next header starts. */
static size_t inspect_size(const uint8_t *p)
{
    struct kheap_block_info info;
    REQUIRE(kheap_inspect(p, &info) == 1);
    REQUIRE(info.ptr == p && info.used == 1 && info.size >= KHEAP_MIN_BLOCK);
    return info.size;
}

static void check_new(const uint8_t *p, size_t n, size_t align, unsigned skip)
{
    size_t usable = ksize(p), size = inspect_size(p);
    const uint8_t *h = p - KHEAP_HEADER_SIZE;
    REQUIRE((uintptr_t)p % KHEAP_ALIGN == 0);
    REQUIRE((uintptr_t)p % align == 0);
    REQUIRE(usable >= n && usable + KHEAP_HEADER_SIZE <= size);
    REQUIRE(in_region(h, size));
    for (unsigned i = 0; i < nlive; i++)
        if (i != skip)
            REQUIRE(h + size <= live[i].p - KHEAP_HEADER_SIZE ||
                    live[i].p - KHEAP_HEADER_SIZE + live[i].size <= h);
}

static void add_live(uint8_t *p, size_t n, uint8_t seed)
{
    struct block *b = &live[nlive++];
    *b = (struct block){ p, n, ksize(p), inspect_size(p), seed };
    fill(b);
}

static void drop_live(unsigned i)
{
    live[i] = live[--nlive];
}

/* Counters and used bytes as the model sees them; kheap_check clean. */
static void check_all(void)
{
    struct kheap_stats s = stats();
    size_t used = 0;
    for (unsigned i = 0; i < nlive; i++)
        used += live[i].size;
    REQUIRE(s.used_bytes == used);
    REQUIRE(s.allocs == m_allocs);
    REQUIRE(s.frees == m_frees);
    REQUIRE(s.allocs - s.frees == nlive);
    REQUIRE(s.failed_allocs == m_failed);
    REQUIRE(s.errors == m_errors);
    REQUIRE(s.used_bytes + s.free_bytes == s.total_bytes);
    REQUIRE(kheap_check() == 0);
    expect_none();
}

/* krealloc's failed_allocs accounting for a reported misuse is not part of the contract:
 * accept 0 or 1 and follow the heap. */
static void resync_failed(void)
{
    uint64_t f = stats().failed_allocs;
    REQUIRE(f == m_failed || f == m_failed + 1);
    m_failed = f;
}

/* ---- input decoding ------------------------------------------------------------------------- */
static const uint8_t *in;
static size_t         left;

static uint8_t get8(void)
{
    if (!left)
        return 0;
    left--;
    return *in++;
}

static size_t get_size(void)
{
    uint8_t b = get8();
    switch (b >> 6) {
    case 0:  return b & 63;                                     /* 0..63 */
    case 1:  return 64 + (size_t)get8() * 4 + (b & 3);          /* 64..1087 */
    case 2:  return (size_t)(get8() | get8() << 8) >> 2;        /* 0..16K */
    default: return (b & 1) ? SIZE_MAX - (b & 62) : (size_t)(get8() | get8() << 8) * 2;
    }
}

/* ---- operations ----------------------------------------------------------------------------- */
static void op_malloc(void)
{
    size_t n = get_size();
    uint8_t *p = fz_kmalloc(n);
    if (n > KHEAP_MAX_ALLOC) {                  /* absurd: NULL, reported (KHEAP_E_SIZE) */
        REQUIRE(p == NULL);
        expect_one(KHEAP_E_SIZE, NULL, fz_kmalloc_ret);
    }
    if (!p) {
        m_failed++;
        null_is_honest(n);
        return;
    }
    m_allocs++;
    check_new(p, n, 1, SLOTS);
    if (nlive == SLOTS) {                       /* the model is full: give it straight back */
        kfree(p);
        m_frees++;
        return;
    }
    add_live(p, n, get8());
}

static void op_calloc(void)
{
    uint8_t c = get8();
    size_t count = 1 + (c & 7), size = get_size() / count;
    if (c & 0x80) {                             /* count * size overflows: KHEAP_E_SIZE */
        count = SIZE_MAX / 2 + 1 + (c & 7);
        size = 2 + (c >> 4 & 7);
        REQUIRE(fz_kcalloc(count, size) == NULL);
        expect_one(KHEAP_E_SIZE, NULL, fz_kcalloc_ret);
        m_failed++;
        return;
    }
    uint8_t *p = fz_kcalloc(count, size);
    size_t n = count * size;
    if (n > KHEAP_MAX_ALLOC) {
        REQUIRE(p == NULL);
        expect_one(KHEAP_E_SIZE, NULL, fz_kcalloc_ret);
    }
    if (!p) {
        m_failed++;
        null_is_honest(n);
        return;
    }
    m_allocs++;
    check_new(p, n, 1, SLOTS);
    for (size_t i = 0; i < n; i += 1 + (i >= FILL_EDGE) * 61)
        REQUIRE(p[i] == 0);
    if (nlive == SLOTS) {
        kfree(p);
        m_frees++;
        return;
    }
    add_live(p, n, get8());
}

static void op_aligned(void)
{
    uint8_t a = get8();
    size_t n = get_size();
    if (a >= 0xF0) {                            /* not a power of two: KHEAP_E_INVAL */
        static const size_t bad[] = { 0, 3, 24, 48, 100, 4095, 12288, SIZE_MAX };
        REQUIRE(fz_kmalloc_aligned(bad[a & 7], n & 1023) == NULL);
        expect_one(KHEAP_E_INVAL, NULL, fz_kmalloc_aligned_ret);
        m_failed++;
        return;
    }
    size_t align = (size_t)1 << (a % 14);
    uint8_t *p = fz_kmalloc_aligned(align, n);
    if (n > KHEAP_MAX_ALLOC) {
        REQUIRE(p == NULL);
        expect_one(KHEAP_E_SIZE, NULL, fz_kmalloc_aligned_ret);
    }
    if (!p) {
        m_failed++;
        if (n <= KHEAP_MAX_ALLOC)               /* needs about n + align: a loose bound */
            REQUIRE(stats().largest_free < class_round(block_size(n) + align + KHEAP_ALIGN));
        return;
    }
    m_allocs++;
    check_new(p, n, align, SLOTS);
    if (nlive == SLOTS) {
        kfree(p);
        m_frees++;
        return;
    }
    add_live(p, n, get8());
}

static void op_realloc(void)
{
    uint8_t pick = get8();
    size_t n = get_size();
    if (nlive == 0 || pick == 0xFF) {           /* krealloc(NULL, n) is kmalloc(n) */
        uint8_t *p = fz_krealloc(NULL, n);
        if (n > KHEAP_MAX_ALLOC) {
            REQUIRE(p == NULL);
            expect_one(KHEAP_E_SIZE, NULL, fz_krealloc_ret);
        }
        if (!p) {
            m_failed++;
            null_is_honest(n);
            return;
        }
        m_allocs++;
        check_new(p, n, 1, SLOTS);
        if (nlive == SLOTS) {
            kfree(p);
            m_frees++;
        } else {
            add_live(p, n, pick);
        }
        return;
    }
    unsigned i = pick % nlive;
    struct block *b = &live[i];
    verify(b, b->n);
    if (n == 0) {                               /* krealloc(p, 0) frees */
        REQUIRE(krealloc(b->p, 0) == NULL);
        m_frees++;
        drop_live(i);
        return;
    }
    uint8_t *q = fz_krealloc(b->p, n);
    if (n > KHEAP_MAX_ALLOC) {                  /* absurd: reported with p, p untouched */
        REQUIRE(q == NULL);
        expect_one(KHEAP_E_SIZE, b->p, fz_krealloc_ret);
        resync_failed();
    } else if (!q) {
        m_failed++;
        null_is_honest(n);
    }
    if (!q) {                                   /* p valid and unchanged */
        REQUIRE(ksize(b->p) == b->usable);
        verify(b, b->n);
        return;
    }
    if (q != b->p) {
        m_allocs++;
        m_frees++;
    }
    check_new(q, n, 1, i);
    size_t keep = n < b->n ? n : b->n;
    struct block old = *b;
    old.p = q;
    verify(&old, keep);
    *b = (struct block){ q, n, ksize(q), inspect_size(q), (uint8_t)(b->seed + 1) };
    fill(b);
}

static void op_free(void)
{
    if (!nlive) {
        kfree(NULL);
        return;
    }
    unsigned i = get8() % nlive;
    verify(&live[i], live[i].n);
    fz_kfree(live[i].p);
    m_frees++;
    drop_live(i);
}

/* Call variant v (kfree, ksize, krealloc) on a bad pointer, expecting one report of code. */
static void misuse(unsigned v, void *p, int code)
{
    switch (v % 3) {
    case 0:
        fz_kfree(p);
        expect_one(code, p, fz_kfree_ret);
        break;
    case 1:
        REQUIRE(fz_ksize(p) == 0);
        expect_one(code, p, fz_ksize_ret);
        break;
    default:
        REQUIRE(fz_krealloc(p, 1 + get8()) == NULL);
        expect_one(code, p, fz_krealloc_ret);
        resync_failed();
        break;
    }
}

static void op_free_twice(void)
{
    if (!nlive)
        return;
    unsigned i = get8() % nlive;
    void *p = live[i].p;
    verify(&live[i], live[i].n);
    kfree(p);
    m_frees++;
    drop_live(i);
    misuse(get8(), p, KHEAP_E_DOUBLE_FREE);     /* at once: its header still says free */
}

static void op_free_interior(void)
{
    if (!nlive)
        return;
    struct block *b = &live[get8() % nlive];
    uint8_t o = get8();
    if (b->n >= KHEAP_ALIGN && (o & 1)) {
        /* 16-aligned, inside the head pattern: the 8 bytes before it are pattern bytes, never
         * a header */
        size_t head = b->n < FILL_EDGE ? b->n : FILL_EDGE;
        size_t off = KHEAP_ALIGN * (1 + (o >> 1) % (head / KHEAP_ALIGN));
        misuse(get8(), b->p + off, KHEAP_E_BAD_HEADER);
    } else {
        misuse(get8(), b->p + 1 + (o >> 1) % (KHEAP_ALIGN - 1), KHEAP_E_BAD_PTR);
    }
    verify(b, b->n);
    REQUIRE(ksize(b->p) == b->usable);
}

static void op_free_wild(void)
{
    uint8_t w = get8();
    int stack_var[4];
    switch (w % 3) {
    case 0:                                     /* a global, outside every region */
        misuse(get8(), wild_global + (w & 0x30), KHEAP_E_BAD_PTR);
        break;
    case 1:                                     /* the stack */
        misuse(get8(), stack_var, KHEAP_E_BAD_PTR);
        break;
    default: {                                  /* the gap between the regions: 0x0C bytes */
        size_t j = ((size_t)get8() << 3 | (w >> 5)) % ((REGION1_OFF - GAP_OFF) / KHEAP_ALIGN);
        misuse(get8(), arena + GAP_OFF + j * KHEAP_ALIGN, KHEAP_E_BAD_HEADER);
        break;
    }
    }
}

/* Write k bytes past a live block's end, i.e. over the next block's header (and up to
 * 16 bytes beyond it), with bit 2 of the header's low byte set: a reserved flag, so the header
 * is certainly invalid. kheap_check must see it; then one probe must report it:
 *   kfree(A) or growing krealloc(A): A's right neighbour is bad: KHEAP_E_BAD_HEADER for A, A
 *   stays live (nothing is written before the neighbour is checked);
 *   kfree/ksize of the victim (if it is live): its own header is bad: KHEAP_E_BAD_HEADER.
 * Then the bytes are put back and the heap must be whole again. */
static void op_overflow(void)
{
    if (!nlive)
        return;
    unsigned i = get8() % nlive;
    struct block *a = &live[i];
    uint8_t *next_hdr = a->p - KHEAP_HEADER_SIZE + a->size;
    unsigned k = 1 + get8() % OVERFLOW_MAX;
    uint8_t saved[OVERFLOW_MAX], v = get8();
    memcpy(saved, next_hdr, k);
    for (unsigned j = 0; j < k; j++)
        next_hdr[j] = (uint8_t)(v + j * 37);
    next_hdr[0] |= 0x04;

    int rc = kheap_check();
    REQUIRE(rc == KHEAP_E_CORRUPT || rc == KHEAP_E_BAD_HEADER);
    expect_none();

    int victim = -1;
    for (unsigned j = 0; j < nlive; j++)
        if (live[j].p == next_hdr + KHEAP_HEADER_SIZE)
            victim = (int)j;
    unsigned probe = get8() % 4;
    if (probe == 2 && victim < 0)
        probe = 0;
    if (probe == 0) {
        fz_kfree(a->p);
        expect_one(KHEAP_E_BAD_HEADER, a->p, fz_kfree_ret);
    } else if (probe == 1) {
        REQUIRE(fz_krealloc(a->p, a->size + 1 + get8()) == NULL);   /* must grow */
        expect_one(KHEAP_E_BAD_HEADER, a->p, fz_krealloc_ret);
        resync_failed();
    } else if (probe == 2) {
        misuse(get8() % 2, live[victim].p, KHEAP_E_BAD_HEADER);
    }

    memcpy(next_hdr, saved, k);
    REQUIRE(kheap_check() == 0);
    verify(a, a->n);
    REQUIRE(ksize(a->p) == a->usable);
    if (victim >= 0) {
        verify(&live[victim], live[victim].n);
        REQUIRE(ksize(live[victim].p) == live[victim].usable);
    }
}

static void op_ksize(void)
{
    if (!nlive) {
        REQUIRE(ksize(NULL) == 0);
        return;
    }
    struct block *b = &live[get8() % nlive];
    REQUIRE(fz_ksize(b->p) == b->usable);
    REQUIRE(b->usable >= b->n);
}

static void op_check(void)
{
    check_all();
    for (unsigned i = 0; i < nlive; i++)
        verify(&live[i], live[i].n);
}

static void (*const ops[])(void) = {
    op_malloc, op_malloc, op_malloc, op_calloc, op_aligned, op_realloc, op_realloc,
    op_free, op_free, op_free, op_free_twice, op_free_interior, op_free_wild, op_overflow,
    op_ksize, op_check,
};

/* ---- one input ------------------------------------------------------------------------------ */
static void heap_reset(void)
{
    memset(arena + GAP_OFF, NEVER_A_HEADER, REGION1_OFF - GAP_OFF);
    memset(arena + REGION1_OFF + REGION1_LEN, NEVER_A_HEADER,
           ARENA_BYTES - REGION1_OFF - REGION1_LEN);
    REQUIRE(kheap_init(arena + REGION1_OFF, REGION1_LEN) == 0);
    REQUIRE(kheap_add_region(arena + REGION0_OFF, REGION0_LEN) == 0);
    kheap_set_error_handler(on_report);
    nlive = 0;
    nreports = 0;
    m_allocs = m_frees = m_failed = m_errors = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in = data;
    left = size;
    heap_reset();
    check_all();
    while (left) {
        ops[get8() % (sizeof ops / sizeof ops[0])]();
        check_all();
    }
    while (nlive) {                             /* drain: everything comes back */
        verify(&live[nlive - 1], live[nlive - 1].n);
        kfree(live[nlive - 1].p);
        m_frees++;
        nlive--;
    }
    check_all();
    struct kheap_stats s = stats();
    REQUIRE(s.used_bytes == 0);
    REQUIRE(s.free_bytes == s.total_bytes);
    return 0;
}
