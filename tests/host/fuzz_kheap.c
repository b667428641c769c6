/*
 * tests/host/fuzz_kheap.c -- libFuzzer target for kheap (clang -fsanitize=fuzzer,address, linked
 * with build/host/libkheap.a; the NASM objects are not instrumented, the model is). Each input is
 * decoded as a sequence of operations run against a fresh two-region heap and a shadow model of
 * the live blocks (size, usable size, fill pattern): malloc, calloc (also overflowing), realloc,
 * aligned (also bad alignments), free, free-twice, free-interior, free-wild, overflow (one bit
 * of the next header, a run from the requested end over it, reserved flags, the slack only),
 * ksize, check. A recording error handler collects every report; any report the model did not
 * expect, any expected report missing, a wrong code, pointer, caller or order, a bad result, a
 * pattern mismatch, a counter the model disagrees with or a kheap_check failure is
 * __builtin_trap(). Compiled with the library's KHEAP_DEBUG (the Makefile passes it; a mismatch
 * is caught at the first input): the debug build's canary and exact ksize are modelled too.
 * Run by `make fuzz` (FUZZ_SECONDS) and, bounded, by `make test` (release and debug library).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mm/kheap.h"
#include "mm/kheap_diag.h"
#include "mm/kheap_layout.h"    /* header bits and check hash, canary and trailer layout */

#ifndef KHEAP_DEBUG
#  define KHEAP_DEBUG 0
#endif
/* Bytes of a used block that are not payload: header, and in a debug build trailer + canary
 * (mm/kheap.h: a used block is max(32, round_up(n + META, 16)) bytes). */
#define META (KHEAP_HEADER_SIZE + (KHEAP_DEBUG ? KHEAP_DEBUG_EXTRA : 0))
/* Secret the fuzzer gives each heap (kheap_set_secret), so that it can compute the check bits
 * of a header at any address (mm/kheap_layout.h) and forge one that is off by exactly one bit. */
#define FUZZ_SECRET 0x243F6A8885A308D3

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

/* The reports of one call that may hit a debug canary as well: KHEAP_E_OVERFLOW first if
 * `canary`, then `code` if not 0; all with ptr and caller. */
static void expect_reports(int canary, int code, const void *ptr, const void *caller)
{
    unsigned want = (canary != 0) + (code != 0), j = 0;
    REQUIRE(nreports == want);
    if (canary) {
        REQUIRE(reports[j].code == KHEAP_E_OVERFLOW);
        REQUIRE(reports[j].ptr == ptr && reports[j].caller == caller);
        j++;
    }
    if (code) {
        REQUIRE(reports[j].code == code);
        REQUIRE(reports[j].ptr == ptr && reports[j].caller == caller);
    }
    nreports = 0;
    m_errors += want;
}

/* The header word a valid block of size|flags `low` at H carries (mm/kheap_layout.h):
 * check = (((H * KA) ^ low ^ secret) * K2) >> 48. Any one-bit change of it is rejected for
 * certain (K2 has no all-0/all-1 16-bit window), which is what the forged headers rely on;
 * check_new() holds the formula to every real header, so a change of the hash fails loudly. */
static uint64_t header_for(uintptr_t h, uint64_t low)
{
    low &= KH_LOW_MASK;
    uint64_t hash = ((h * (uint64_t)KH_HASH_KA) ^ low ^ (uint64_t)FUZZ_SECRET) * (uint64_t)KH_HASH_K2;
    return (hash >> KH_CHECK_SHIFT) << KH_CHECK_SHIFT | low;
}

static uint64_t word_at(const uint8_t *h)
{
    uint64_t w;
    memcpy(&w, h, sizeof w);
    return w;
}

static void put_word(uint8_t *h, uint64_t w)
{
    memcpy(h, &w, sizeof w);
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
    size_t s = (n + META + KHEAP_ALIGN - 1) & ~(size_t)(KHEAP_ALIGN - 1);
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
    REQUIRE(KHEAP_DEBUG ? usable == n : usable == size - KHEAP_HEADER_SIZE);
    REQUIRE(size >= block_size(n));
    REQUIRE(in_region(h, size));
    REQUIRE(word_at(h) == header_for((uintptr_t)h, word_at(h)));  /* the model's hash holds */
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

static unsigned get16(void)
{
    unsigned lo = get8();
    return lo | (unsigned)get8() << 8;
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

/* An allocation of n bytes returned p: an absurd n must have given NULL and one KHEAP_E_SIZE
 * report naming `ret`, the return address in the fz_* trampoline that made the call. */
static void absurd_is_reported(const void *p, size_t n, const void *ret)
{
    if (n > KHEAP_MAX_ALLOC) {
        REQUIRE(p == NULL);
        expect_one(KHEAP_E_SIZE, NULL, ret);
    }
}

/* A new, checked block p of n bytes joins the model; when the model is full it goes straight
 * back. seed < 0: the pattern seed is the next input byte (read only when the block is kept). */
static void keep_new(uint8_t *p, size_t n, int seed)
{
    if (nlive == SLOTS) {
        kfree(p);
        m_frees++;
        return;
    }
    add_live(p, n, seed < 0 ? get8() : (uint8_t)seed);
}

/* ---- operations ----------------------------------------------------------------------------- */
static void op_malloc(void)
{
    size_t n = get_size();
    uint8_t *p = fz_kmalloc(n);
    absurd_is_reported(p, n, fz_kmalloc_ret);
    if (!p) {
        m_failed++;
        null_is_honest(n);
        return;
    }
    m_allocs++;
    check_new(p, n, 1, SLOTS);
    keep_new(p, n, -1);
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
    absurd_is_reported(p, n, fz_kcalloc_ret);
    if (!p) {
        m_failed++;
        null_is_honest(n);
        return;
    }
    m_allocs++;
    check_new(p, n, 1, SLOTS);
    for (size_t i = 0; i < n; i += 1 + (i >= FILL_EDGE) * 61)
        REQUIRE(p[i] == 0);
    keep_new(p, n, -1);
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
    absurd_is_reported(p, n, fz_kmalloc_aligned_ret);
    if (!p) {
        m_failed++;
        if (n <= KHEAP_MAX_ALLOC)               /* needs about n + align: a loose bound */
            REQUIRE(stats().largest_free < class_round(block_size(n) + align + KHEAP_ALIGN));
        return;
    }
    m_allocs++;
    check_new(p, n, align, SLOTS);
    keep_new(p, n, -1);
}

/* Slot i was resized by krealloc to q, n bytes (in place or moved; a move copies at most
 * `copied` bytes): the kept bytes are intact; the slot takes the new block and a new pattern. */
static void resized(unsigned i, uint8_t *q, size_t n, size_t copied)
{
    struct block *b = &live[i];
    if (q != b->p) {
        m_allocs++;
        m_frees++;
    }
    check_new(q, n, 1, i);
    size_t keep = n < b->n ? n : b->n;
    if (q != b->p && copied < keep)
        keep = copied;
    struct block old = *b;
    old.p = q;
    verify(&old, keep);
    *b = (struct block){ q, n, ksize(q), inspect_size(q), (uint8_t)(b->seed + 1) };
    fill(b);
}

static void op_realloc(void)
{
    uint8_t pick = get8();
    size_t n = get_size();
    if (nlive == 0 || pick == 0xFF) {           /* krealloc(NULL, n) is kmalloc(n) */
        uint8_t *p = fz_krealloc(NULL, n);
        absurd_is_reported(p, n, fz_krealloc_ret);
        if (!p) {
            m_failed++;
            null_is_honest(n);
            return;
        }
        m_allocs++;
        check_new(p, n, 1, SLOTS);
        keep_new(p, n, pick);
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
    resized(i, q, n, SIZE_MAX);
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

/* Write at h a header word one bit away from the valid header of size `low` at h: the bit
 * (sel % 64: a size, flag or check bit) and the flags (FREE, PREV_FREE, QUICK from sel's
 * higher bits) come from the input. As plausible as a forgery gets without the secret, and
 * rejected for certain (one-bit change). */
static void forge(uint8_t *h, uint64_t low, unsigned sel)
{
    low = (low & KH_SIZE_MASK) | (sel >> 6 & (KH_F_FREE | KH_F_PREV_FREE | KH_F_QUICK));
    put_word(h, header_for((uintptr_t)h, low) ^ (uint64_t)1 << (sel % 64));
}

static void op_free_interior(void)
{
    if (!nlive)
        return;
    struct block *b = &live[get8() % nlive];
    uint8_t o = get8();
    if (b->n >= KHEAP_ALIGN && (o & 1)) {
        /* 16-aligned, inside the head pattern: the 8 bytes before it are pattern bytes (never
         * a header: reserved flag bits), or the user wrote there a header one bit away from
         * a valid one for that address */
        size_t head = b->n < FILL_EDGE ? b->n : FILL_EDGE;
        size_t off = KHEAP_ALIGN * (1 + (o >> 1) % (head / KHEAP_ALIGN));
        uint8_t *x = b->p + off, *end = b->p - KHEAP_HEADER_SIZE + b->size;
        uint8_t f = get8();
        if (f & 1)
            forge(x - KHEAP_HEADER_SIZE, (f & 2) ? word_at(b->p - KHEAP_HEADER_SIZE)
                                                 : (uint64_t)(end - x + KHEAP_HEADER_SIZE),
                  get16());
        misuse(get8(), x, KHEAP_E_BAD_HEADER);
        fill(b);                                /* the pattern bytes the forgery replaced */
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
    default: {                /* the gap between the regions (0x0C bytes): in no region */
        size_t j = ((size_t)get8() << 3 | (w >> 5)) % ((REGION1_OFF - GAP_OFF) / KHEAP_ALIGN);
        uint8_t *x = arena + GAP_OFF + j * KHEAP_ALIGN;
        int forged = j > 0 && (w & 0x10);      /* j = 0: region 0's end sentinel precedes x */
        if (forged)                             /* a header one bit off, as in op_free_interior */
            forge(x - KHEAP_HEADER_SIZE, KHEAP_MIN_BLOCK + (size_t)get8() * KHEAP_ALIGN, get16());
        misuse(get8(), x, j == 0 ? KHEAP_E_BAD_HEADER : KHEAP_E_BAD_PTR);  /* j = 0: x - 8 is
                                                          the sentinel, in region 0 */
        if (forged)
            memset(x - KHEAP_HEADER_SIZE, NEVER_A_HEADER, KHEAP_HEADER_SIZE);
        break;
    }
    }
}

/* One corruption at the end of live block A (requested n bytes, block S bytes, right
 * neighbour's header N at A's block end), of a kind the input picks:
 *   OV_FLIP      a wild write flips one bit of N's header word, any of 64 (size, flag or check
 *                bit): the check bits catch every one-bit change for certain
 *                (mm/kheap_layout.h), so the expectation is exact without a reserved flag;
 *   OV_RUN       A overflows from its requested end: its slack (usable bytes in a release
 *                build; canary and trailer in a debug build), then N's header, one bit off;
 *   OV_RESERVED  k bytes over N's header and up to 16 bytes on, with KH_F_RESERVED set;
 *   OV_SLACK     1..slack bytes after A's requested end only, N intact: within ksize(A) in a
 *                release build (nothing to report), a canary hit in a debug build.
 * kheap_check must see it; then one probe (mm/kheap.h):
 *   N bad: kfree(A), krealloc(A) growing, keeping or shrinking, ksize(A): KHEAP_E_BAD_HEADER
 *   for A, and nothing changes (kfree leaks A: it stays live); kfree/ksize of N's block (if
 *   live): KHEAP_E_BAD_HEADER for it;
 *   canary hit (debug, OV_RUN and OV_SLACK): kfree and krealloc of A report KHEAP_E_OVERFLOW
 *   for A first; with N intact they then go on (A freed or resized), else N's report follows.
 * Then the bytes are put back (unless A was freed or resized: they were A's own) and the heap
 * must be whole again. */
enum { OV_FLIP, OV_RUN, OV_RESERVED, OV_SLACK, OV_KINDS };
enum { P_FREE, P_GROW, P_VICTIM, P_KSIZE, P_KEEP, P_NONE, P_KINDS };
enum { OV_SAVE = 160 };                 /* slack (< 2 * KHEAP_MIN_BLOCK + META) + 8 + 24 */

/* Overflow byte j: anything but the canary byte, so a debug canary hit is certain. */
static uint8_t run_byte(uint8_t v, size_t j)
{
    uint8_t x = (uint8_t)(v + j * 37);
    return x == KH_CANARY_BYTE ? x ^ 1 : x;
}

static void op_overflow(void)
{
    if (!nlive)
        return;
    unsigned i = get8() % nlive, kind = get8() % OV_KINDS;
    struct block *a = &live[i];
    uint8_t *ap = a->p, *end = ap + a->n, *next_hdr = ap - KHEAP_HEADER_SIZE + a->size;
    size_t slack = (size_t)(next_hdr - end), len;
    REQUIRE(slack + KHEAP_HEADER_SIZE + OVERFLOW_MAX <= OV_SAVE);
    if (kind == OV_SLACK && slack == 0)
        kind = OV_FLIP;
    uint8_t *lo = (kind == OV_RUN || kind == OV_SLACK) ? end : next_hdr;
    uint8_t saved[OV_SAVE], v = get8(), sel = get8();
    uint64_t flip = (uint64_t)1 << (sel % 64);
    len = kind == OV_FLIP     ? KHEAP_HEADER_SIZE
        : kind == OV_RUN      ? slack + KHEAP_HEADER_SIZE
        : kind == OV_RESERVED ? 1 + sel % OVERFLOW_MAX
        :                       1 + sel % slack;
    memcpy(saved, lo, len);
    uint64_t n_word = word_at(next_hdr);
    for (size_t j = 0; j < len; j++)
        lo[j] = run_byte(v, j);
    if (kind == OV_FLIP || kind == OV_RUN)
        put_word(next_hdr, n_word ^ flip);
    else if (kind == OV_RESERVED)
        next_hdr[0] |= KH_F_RESERVED;
    int hdr = kind != OV_SLACK;
    int canary = KHEAP_DEBUG && (kind == OV_RUN || kind == OV_SLACK);
    /* A debug build whose trailer was hit takes the requested size from it, clipped to what
     * the block holds (mm/kheap.asm block_usable): ksize says so. A move after the overflow
     * distrusts it and copies all the block holds before its trailer (block_keep): the whole
     * old payload. */
    int trailer = KHEAP_DEBUG && lo + len > next_hdr - KH_TRAILER_SIZE;
    size_t smashed = word_at(next_hdr - KH_TRAILER_SIZE + KH_TRAILER_REQ);
    smashed = !trailer ? a->usable : smashed < a->size - META ? smashed : a->size - META;

    int rc = kheap_check();
    if (hdr)
        REQUIRE(rc == KHEAP_E_CORRUPT || rc == KHEAP_E_BAD_HEADER);
    else
        REQUIRE(rc == (canary ? KHEAP_E_OVERFLOW : 0));
    expect_none();

    int victim = -1;
    for (unsigned j = 0; j < nlive; j++)
        if (live[j].p == next_hdr + KHEAP_HEADER_SIZE)
            victim = (int)j;
    unsigned probe = get8() % P_KINDS;
    if (probe == P_VICTIM && (victim < 0 || !hdr))
        probe = P_FREE;
    int bad = hdr ? KHEAP_E_BAD_HEADER : 0, gone = 0;
    switch (probe) {
    case P_FREE:
        fz_kfree(ap);
        expect_reports(canary, bad, ap, fz_kfree_ret);
        gone = !hdr;
        break;
    case P_GROW: {
        size_t m = a->size + 1 + get8();            /* more than the block holds */
        uint8_t *q = fz_krealloc(ap, m);
        expect_reports(canary, bad, ap, fz_krealloc_ret);
        if (hdr) {
            REQUIRE(q == NULL);
            resync_failed();
        } else if (!q) {
            m_failed++;
            null_is_honest(m);
        } else {
            resized(i, q, m, SIZE_MAX);
            gone = 1;
        }
        break;
    }
    case P_VICTIM:
        misuse(get8() % 2, live[victim].p, KHEAP_E_BAD_HEADER);
        break;
    case P_KSIZE: {
        size_t u = fz_ksize(ap);
        if (hdr) {
            REQUIRE(u == 0);
            expect_one(KHEAP_E_BAD_HEADER, ap, fz_ksize_ret);
        } else {
            REQUIRE(u == smashed);
        }
        break;
    }
    case P_KEEP: {
        size_t m = 1 + get8() % (a->size - META);   /* the block keeps its size or shrinks */
        uint8_t *q = fz_krealloc(ap, m);
        expect_reports(canary, bad, ap, fz_krealloc_ret);
        if (hdr) {
            REQUIRE(q == NULL);
            resync_failed();
        } else {
            REQUIRE(q == ap);
            resized(i, q, m, SIZE_MAX);
            gone = 1;
        }
        break;
    }
    default:
        break;
    }

    if (!gone)
        memcpy(lo, saved, len);
    if (probe == P_FREE && gone) {
        m_frees++;
        drop_live(i);
    } else {
        verify(&live[i], live[i].n);
        REQUIRE(ksize(live[i].p) == live[i].usable);
    }
    REQUIRE(kheap_check() == 0);
    for (unsigned j = 0; j < nlive; j++)
        if (live[j].p == next_hdr + KHEAP_HEADER_SIZE) {
            verify(&live[j], live[j].n);
            REQUIRE(ksize(live[j].p) == live[j].usable);
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
    REQUIRE(kheap_set_secret(FUZZ_SECRET) == 0);
    kheap_set_error_handler(on_report);
    nlive = 0;
    nreports = 0;
    m_allocs = m_frees = m_failed = m_errors = 0;
}

/* The library's build must be the one this model was compiled for: ksize is exactly what was
 * asked in a KHEAP_DEBUG build only. */
static void check_build(void)
{
    void *p = kmalloc(1);
    size_t usable = ksize(p);
    kfree(p);
    if (usable != (KHEAP_DEBUG ? 1 : KHEAP_MIN_BLOCK - KHEAP_HEADER_SIZE)) {
        fprintf(stderr, "fuzz_kheap: compiled with KHEAP_DEBUG=%d but the library is the %s "
                "build: build both with the same KHEAP_DEBUG (make fuzz KHEAP_DEBUG=...)\n",
                KHEAP_DEBUG, KHEAP_DEBUG ? "release" : "debug");
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in = data;
    left = size;
    heap_reset();
    static int build_checked;
    if (!build_checked++) {
        check_build();
        heap_reset();
    }
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
