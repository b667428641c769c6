/*
 * tests/host/fuzz_kheap.c -- libFuzzer target for kheap (clang -fsanitize=fuzzer,address, linked
 * with build/host/libkheap.a; the NASM objects are not instrumented, the model is). Each input is
 * decoded as a sequence of operations run against a fresh two-region heap and a shadow model of
 * the live blocks (size, usable size, fill pattern, tier). Both tiers are modelled: requests up
 * to the slab limit get slab objects (no header; class size; a slab found from the object's
 * 16 KiB-aligned base and its keyed check word, which the model recomputes), larger ones and the
 * fallback of a heap with no room for a slab get TLSF blocks (a header at p - 8, whose check
 * bits the model recomputes too). The heap has a cpu hook (NCPU slots) returning cur_cpu, which
 * every operation byte may change: the one thread moves between "CPUs", so an object allocated
 * on one slot and freed on another is a cross-CPU free, and a slot index >= NCPU takes the path
 * without a slot.
 *
 * Operations: malloc (any size, small sizes, bursts of one size), calloc (also overflowing),
 * realloc, aligned (also bad alignments), free (one, bursts of one class, free + reallocate of
 * the same class: LIFO on a slot), flush (this slot, every slot, or one slot while the others
 * are asked to drain: their next call), and misuse: free-twice (also from another CPU),
 * free-interior (slab objects: any 16-aligned interior pointer, also under a forged header),
 * free-wild, slab misuse (its header, the slab block itself, its slack, an object not handed
 * out, the heap's own per-CPU block), overflow of a TLSF block (one bit of the next header, a run
 * over it, reserved flags, the slack), slack/canary of a slab object, use after free of a slab
 * object; ksize, check (with a heap walk against the model). A recording error handler collects
 * every report; any report the model did not expect, any expected report missing, a wrong code,
 * pointer, caller or order, a bad result, a pattern mismatch, a counter the model disagrees with
 * or a kheap_check failure is __builtin_trap(). Compiled with the library's KHEAP_DEBUG (the
 * Makefile passes it; a mismatch fails the link, and the first input checks it again): the
 * debug build's canaries, poison and exact ksize are modelled too. Run by `make fuzz`
 * (FUZZ_SECONDS) and, bounded, by `make test` (release and debug library).
 *
 * Input format: a sequence of operations, each an opcode byte then its own bytes. Opcode bits
 * 0-4 pick the operation (ops[] below), bits 5-7 the CPU it runs on: 0..NCPU-1 that slot; NCPU
 * and NCPU + 1 no slot (the hook returns NCPU, or 0xFFFFFFFF); above: the CPU of the operation
 * before. Environment: FUZZ_KHEAP_TRACE=1 prints each operation as it runs (to follow a crash
 * input); FUZZ_KHEAP_STATS=1 prints at exit how often the events worth reaching were reached
 * (the smoke run requires some of them of the seed corpus).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/kheap.h"
#include "mm/kheap_diag.h"
#include "mm/kheap_layout.h"    /* header bits and check hash, slab layout, canary and trailer */

#ifndef KHEAP_DEBUG
#  define KHEAP_DEBUG 0
#endif
/* Bytes of a used block that are not payload: header, and in a debug build trailer + canary
 * (mm/kheap.h: a used block is max(32, round_up(n + META, 16)) bytes). */
#define META (KHEAP_HEADER_SIZE + (KHEAP_DEBUG ? KHEAP_DEBUG_EXTRA : 0))
/* Bytes a slab object holds beyond the request: the debug build's trailer and canary. */
#define OBJ_EXTRA (KHEAP_DEBUG ? KHEAP_DEBUG_EXTRA : 0)
/* The largest request the slab tier serves (mm/kheap.h). */
#define SLAB_REQ_MAX (KH_SLAB_MAX - OBJ_EXTRA)
/* Secret the fuzzer gives each heap (kheap_set_secret), so that it can compute the check bits
 * of a header at any address (mm/kheap_layout.h) and forge one that is off by exactly one bit,
 * and the check word of a slab. */
#define FUZZ_SECRET 0x243F6A8885A308D3
/* Per-CPU slots of the heap (hooks.ncpu); cur_cpu == NCPU is a CPU without one. */
#define NCPU 4
#define ALL_CLEAN ((1u << NCPU) - 1)

/* ---- the heap: two regions with a gap between them, and slack after the second ----------- */
/* Room for a handful of slabs in each region (region 1 also holds the control block and the
 * per-CPU slots' block), few enough that carving one fails often: both tiers, and the fallback. */
enum {
    ARENA_BYTES  = 384 << 10,
    REGION0_OFF  = 0,
    REGION0_LEN  = 128 << 10,
    GAP_OFF      = REGION0_OFF + REGION0_LEN,  /* [GAP_OFF, REGION1_OFF): never heap memory */
    REGION1_OFF  = 160 << 10,
    REGION1_LEN  = 184 << 10,
    SLOTS        = 64,                         /* live blocks the model tracks */
    MAX_REPORTS  = 8,
    OVERFLOW_MAX = 24,                         /* into the next header and at most 16 bytes on */
    BURST_MAX    = 48,                         /* allocations or frees of one burst */
};
/* Filler of the arena, the gap and the slack, and a bit of every pattern byte: KHEAP_F_RESERVED-
 * style bits (2 and 3 of the low byte) that no valid header has, so a kfree that reads 8 of
 * these bytes as a header is certain (not 1 - 2^-16 likely) to reject it. */
#define NEVER_A_HEADER 0x0C

/* Aligned to a slab: where slabs can be carved does not depend on where the arena is loaded. */
static uint8_t arena[ARENA_BYTES] __attribute__((aligned(KH_SLAB_SIZE)));
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

/* ---- the CPU the calls run on --------------------------------------------------------------- */
static unsigned cur_cpu;
/* Slots known to hold no cached object: flushed from that slot, no call on it since (only a
 * slot's own calls fill it; anything else, an allocation's reclaim included, only empties it).
 * Every operation on slot k clears bit k first (it may touch the slot). All clean: nothing is
 * cached anywhere, the depot included (every flush empties it; only a slot's call fills it).
 * Release build only: the debug build has no per-CPU stacks. */
static unsigned clean;

static unsigned fz_cpu(void)
{
    return cur_cpu;
}

/* The calls that follow run on CPU k (NCPU: none). */
static void on_cpu(unsigned k)
{
    cur_cpu = k;
    if (k < NCPU)
        clean &= ~(1u << k);
}

/* ---- model ---------------------------------------------------------------------------------- */
struct block {
    uint8_t  *p;
    size_t    n;         /* bytes asked for: these carry the pattern */
    size_t    usable;    /* ksize() */
    size_t    size;      /* a TLSF block: its size, header included; a slab object: its class's */
    uintptr_t slab;      /* a slab object: its slab S; 0 for a TLSF block */
    unsigned  cls;       /* a slab object: its class */
    unsigned  cpu;       /* the CPU that allocated it */
    uint8_t   seed;
};

static struct block live[SLOTS];
static unsigned     nlive;
static uint64_t     m_allocs, m_frees, m_failed, m_errors;
static size_t       whole_largest;    /* largest_free of the fresh heap: what a whole heap has */
static size_t       op_largest;       /* largest_free when the operation began (check_all's) */

static struct report { int code; void *ptr, *caller; } reports[MAX_REPORTS];
static unsigned nreports;

static void on_report(int code, void *ptr, void *caller)
{
    if (nreports < MAX_REPORTS)
        reports[nreports] = (struct report){ code, ptr, caller };
    nreports++;
}

static const char *cur_op;             /* the operation running, for the messages */

/* Events worth knowing the fuzzer reaches (FUZZ_KHEAP_STATS=1: their counts at exit). */
enum { EV_SLAB, EV_TLSF_SMALL, EV_CROSS_FREE, EV_NOSLOT_FREE, EV_REUSE_LIFO, EV_DRAIN_ASKED,
       EV_SLABS_EXACT, EV_RELEASED_TWICE, EV_RELEASED_UAF, EV_NULL, EV_COUNT };
static const char *const ev_name[EV_COUNT] = {
    "slab objects handed out", "small requests served by the TLSF fallback",
    "cross-CPU frees of slab objects", "slab frees without a slot", "LIFO reuse checked",
    "drain requests checked", "exact slab accounting checked",
    "double frees into a released slab (debug)", "writes after free into a released slab",
    "allocations that returned NULL",
};
static unsigned long events[EV_COUNT];
#define NOTE(ev) (events[ev]++)

/* A mismatch: what failed, where, in which operation on which CPU, the reports since the last
 * expectation; then a trap (libFuzzer keeps the input). */
static void mismatch(int line, const char *what)
{
    fprintf(stderr, "fuzz_kheap: model mismatch at line %d: %s (in %s on cpu %u, %u live)\n",
            line, what, cur_op ? cur_op : "setup", cur_cpu, nlive);
    for (unsigned i = 0; i < nreports && i < MAX_REPORTS; i++)
        fprintf(stderr, "fuzz_kheap:   report %u: %s (%d) ptr %p caller %p\n", i,
                kheap_strerror(reports[i].code), reports[i].code, reports[i].ptr,
                reports[i].caller);
    __builtin_trap();
}

#define REQUIRE(cond)                                                                         \
    do {                                                                                      \
        if (!(cond))                                                                          \
            mismatch(__LINE__, #cond);                                                        \
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

/* A NULL from an allocation of n bytes is honest only if nothing large enough is free: for a
 * slab-sized request, its TLSF fallback found nothing either. */
static void null_is_honest(size_t n)
{
    NOTE(EV_NULL);
    if (n > KHEAP_MAX_ALLOC)
        return;
    REQUIRE(stats().largest_free < class_round(block_size(n)));
}

static int in_region(const uint8_t *p, size_t n)
{
    return (p >= arena + REGION0_OFF && p + n <= arena + REGION0_OFF + REGION0_LEN) ||
           (p >= arena + REGION1_OFF && p + n <= arena + REGION1_OFF + REGION1_LEN);
}

/* ---- the slab tier as the model sees it (mm/kheap_layout.h, "The slab tier") -------------- */
struct slab_class { unsigned size, first, cap; };
static struct slab_class cls_tab[KH_SLAB_CLASSES];
static uint64_t slab_key;

/* kheap.h's classes: 16..128 step 16, 160..256 step 32, 320..512 step 64; objects from
 * KH_SLAB_FIRST on, as many as fit before the next block's header (S + KH_SLAB_BLOCK - 8). */
static void classes_init(void)
{
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++) {
        unsigned size = c < 8 ? (c + 1) * 16 : c < 12 ? 128 + (c - 7) * 32 : 256 + (c - 11) * 64;
        cls_tab[c] = (struct slab_class){
            size, KH_SLAB_FIRST, (KH_SLAB_BLOCK - KHEAP_HEADER_SIZE - KH_SLAB_FIRST) / size };
    }
    REQUIRE(cls_tab[KH_SLAB_CLASSES - 1].size == KH_SLAB_MAX);
    /* slab_key = fold((secret ^ K) * K1), as kheap_internal.h's kh_key_fold */
    unsigned __int128 m = (unsigned __int128)(FUZZ_SECRET ^ (uint64_t)KH_SLAB_KEY_K) *
                          (uint64_t)KH_HASH_K1;
    slab_key = (uint64_t)m ^ (uint64_t)(m >> 64);
}

/* The class of an n-byte request (n <= SLAB_REQ_MAX): the smallest that holds n + OBJ_EXTRA. */
static unsigned class_for(size_t n)
{
    unsigned c = 0;
    while (cls_tab[c].size < n + OBJ_EXTRA)
        c++;
    return c;
}

/* The slab p lies in, or 0: p's KH_SLAB_SIZE-aligned base S, its block [S - 8, S + KH_SLAB_BLOCK
 * - 8) inside a region, S's first word the check ((S ^ cls) * K1) ^ slab_key of its class byte. */
static uintptr_t slab_of(const void *p, unsigned *cls)
{
    uintptr_t s = (uintptr_t)p & ~(uintptr_t)(KH_SLAB_SIZE - 1);
    const uint8_t *sp = (const uint8_t *)s;
    if ((const uint8_t *)p < arena || !in_region(sp - KHEAP_HEADER_SIZE, KH_SLAB_BLOCK))
        return 0;
    unsigned c = sp[offsetof(struct kh_slab, cls)];
    if (c >= KH_SLAB_CLASSES || word_at(sp) != (((uint64_t)(s ^ c) * (uint64_t)KH_HASH_K1) ^ slab_key))
        return 0;
    *cls = c;
    return s;
}

static uint8_t *obj_at(uintptr_t s, unsigned cls, unsigned i)
{
    return (uint8_t *)(s + cls_tab[cls].first + (uintptr_t)i * cls_tab[cls].size);
}

/* The state byte of the granule at p in slab s: an object's (FREE, LIVE, CACHED) where one
 * starts, KH_OBJ_NONE elsewhere. */
static uint8_t obj_state(uintptr_t s, const uint8_t *p)
{
    return ((const uint8_t *)s)[KH_SLAB_HDR + ((uintptr_t)p - s) / KHEAP_ALIGN];
}

/* The index of p in slab s of class cls, or -1 if p does not start one of its objects. */
static long obj_index(uintptr_t s, unsigned cls, const uint8_t *p)
{
    const struct slab_class *k = &cls_tab[cls];
    uintptr_t off = (uintptr_t)p - s;
    if (off < k->first || (off - k->first) % k->size || (off - k->first) / k->size >= k->cap)
        return -1;
    return (long)((off - k->first) / k->size);
}

/* The live block of slot j at p, if any. */
static int live_at(const uint8_t *p)
{
    for (unsigned j = 0; j < nlive; j++)
        if (live[j].p == p)
            return (int)j;
    return -1;
}

/* [lo, hi) of what block b occupies: a TLSF block from its header, a slab object itself. */
static uintptr_t b_lo(const struct block *b)
{
    return (uintptr_t)b->p - (b->slab ? 0 : KHEAP_HEADER_SIZE);
}

static uintptr_t b_hi(const struct block *b)
{
    return b_lo(b) + b->size;
}

static int disjoint(uintptr_t a0, uintptr_t a1, uintptr_t b0, uintptr_t b1)
{
    return a1 <= b0 || b1 <= a0;
}

/* A block kheap just handed out for n bytes at `align`: `fresh` FRESH_FIRST an allocation that
 * is the first call of its operation to change the heap, FRESH another allocation, KEPT what
 * krealloc left in place. Aligned, big enough, inside a region, overlapping no live block
 * (except slot `skip`, the block a krealloc replaced) nor any live object's slab. A slab object
 * only for a slab-sized request, of exactly its class (kept in place: at least), LIVE in its
 * slab, in a used block of KH_SLAB_BLOCK bytes. A TLSF block for a slab-sized request is the
 * fallback of a request that found no object and no room to carve a slab (the TLSF tier's lists
 * as they are, no flush nor reclaim for a slab: a block of 2 * KH_SLAB_SIZE + 16 bytes,
 * block_aligned); as the operation's first change, the lists were those check_all last saw.
 * Returns the model's description. */
enum { KEPT, FRESH, FRESH_FIRST };
static struct block check_new(uint8_t *p, size_t n, size_t align, unsigned skip, int fresh)
{
    struct block nb = { .p = p, .n = n, .usable = ksize(p), .cpu = cur_cpu };
    struct kheap_block_info info;
    REQUIRE((uintptr_t)p % KHEAP_ALIGN == 0);
    REQUIRE((uintptr_t)p % align == 0);
    REQUIRE(kheap_inspect(p, &info) == 1 && info.ptr == p && info.used == 1);
    nb.slab = slab_of(p, &nb.cls);
    if (nb.slab) {
        const struct slab_class *k = &cls_tab[nb.cls];
        const uint8_t *sh = (const uint8_t *)nb.slab - KHEAP_HEADER_SIZE;
        long i = obj_index(nb.slab, nb.cls, p);
        /* kmalloc, or kmalloc_aligned up to KH_SLAB_ALIGN_MAX (release build): the request
         * is n rounded up to align, at least align */
        size_t req = n;
        if (align > KHEAP_ALIGN) {
            REQUIRE(!KHEAP_DEBUG && align <= KH_SLAB_ALIGN_MAX);
            req = n < align ? align : (n + align - 1) / align * align;
        }
        REQUIRE(req <= SLAB_REQ_MAX);
        /* the slab is a used KH_SLAB_BLOCK block of the TLSF tier, its header valid */
        REQUIRE(word_at(sh) == header_for((uintptr_t)sh, word_at(sh)));
        REQUIRE((word_at(sh) & KH_SIZE_MASK) == KH_SLAB_BLOCK &&
                (word_at(sh) & (KH_F_FREE | KH_F_QUICK | KH_F_RESERVED)) == 0);
        REQUIRE(i >= 0 && obj_state(nb.slab, p) == KH_OBJ_LIVE);
        REQUIRE(fresh ? nb.cls == class_for(req) : k->size >= n + OBJ_EXTRA);
        nb.size = k->size;
        REQUIRE(nb.usable == (KHEAP_DEBUG ? n : k->size));
        REQUIRE(info.size == k->size && info.usable == nb.usable);
        NOTE(EV_SLAB);
    } else {
        const uint8_t *h = p - KHEAP_HEADER_SIZE;
        nb.size = info.size;
        REQUIRE(KHEAP_DEBUG ? nb.usable == n : nb.usable == nb.size - KHEAP_HEADER_SIZE);
        REQUIRE(nb.size >= block_size(n));
        REQUIRE(in_region(h, nb.size));
        REQUIRE(word_at(h) == header_for((uintptr_t)h, word_at(h)));  /* the model's hash holds */
        size_t req = align <= KHEAP_ALIGN ? n : n < align ? align : (n + align - 1) / align * align;
        if (fresh && req <= SLAB_REQ_MAX &&                              /* the fallback */
            (align <= KHEAP_ALIGN || (!KHEAP_DEBUG && align <= KH_SLAB_ALIGN_MAX))) {
            if (fresh == FRESH_FIRST)
                REQUIRE(op_largest < class_round(2 * KH_SLAB_SIZE + KHEAP_ALIGN));
            NOTE(EV_TLSF_SMALL);
        }
    }
    REQUIRE(in_region((const uint8_t *)b_lo(&nb), nb.size));
    for (unsigned j = 0; j < nlive; j++) {
        const struct block *o = &live[j];
        if (j == skip)
            continue;
        REQUIRE(disjoint(b_lo(&nb), b_hi(&nb), b_lo(o), b_hi(o)));
        if (nb.slab && !o->slab)
            REQUIRE(disjoint(nb.slab - KHEAP_HEADER_SIZE, nb.slab - KHEAP_HEADER_SIZE + KH_SLAB_BLOCK,
                             b_lo(o), b_hi(o)));
        if (!nb.slab && o->slab)
            REQUIRE(disjoint(b_lo(&nb), b_hi(&nb), o->slab - KHEAP_HEADER_SIZE,
                             o->slab - KHEAP_HEADER_SIZE + KH_SLAB_BLOCK));
    }
    return nb;
}

static void drop_live(unsigned i)
{
    live[i] = live[--nlive];
}

/* Slab accounting once nothing is cached and no spare is kept (after a flush with every slot
 * clean): the slabs are exactly those of live objects, their FREE bytes the rest of them. */
static void slabs_exact(const struct kheap_stats *s)
{
    size_t nslabs = 0, cap_bytes = 0, live_bytes = 0;
    REQUIRE(s->cached_bytes == 0);
    for (unsigned i = 0; i < nlive; i++) {
        if (!live[i].slab)
            continue;
        live_bytes += live[i].size;
        unsigned j = 0;
        while (j < i && live[j].slab != live[i].slab)
            j++;
        if (j == i) {                           /* the first live object of its slab */
            nslabs++;
            cap_bytes += (size_t)cls_tab[live[i].cls].cap * cls_tab[live[i].cls].size;
        }
    }
    REQUIRE(s->slab_bytes == nslabs * KH_SLAB_BLOCK);
    REQUIRE(s->slab_free_bytes == cap_bytes - live_bytes);
    NOTE(EV_SLABS_EXACT);
}

/* Counters and used bytes as the model sees them; kheap_check clean. */
static void check_all(void)
{
    struct kheap_stats s = stats();
    size_t used = 0, slab_live = 0, max_cap = 0;
    for (unsigned i = 0; i < nlive; i++) {
        used += live[i].size;
        if (live[i].slab)
            slab_live += live[i].size;
    }
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++)
        if ((size_t)cls_tab[c].cap * cls_tab[c].size > max_cap)
            max_cap = (size_t)cls_tab[c].cap * cls_tab[c].size;
    REQUIRE(s.used_bytes == used);
    REQUIRE(s.allocs == m_allocs);
    REQUIRE(s.frees == m_frees);
    REQUIRE(s.allocs - s.frees == nlive);
    REQUIRE(s.failed_allocs == m_failed);
    REQUIRE(s.errors == m_errors);
    REQUIRE(s.used_bytes + s.free_bytes == s.total_bytes);
    REQUIRE(s.slab_bytes % KH_SLAB_BLOCK == 0 && s.slab_bytes <= s.total_bytes);
    REQUIRE(s.slab_free_bytes + s.cached_bytes + slab_live <= s.slab_bytes / KH_SLAB_BLOCK * max_cap);
    REQUIRE(s.cached_bytes <= (size_t)NCPU * KH_SLAB_CLASSES * KH_MAG_DEPTH * KH_SLAB_MAX);
    if (KHEAP_DEBUG || clean == ALL_CLEAN)
        REQUIRE(s.cached_bytes == 0);
    REQUIRE(kheap_check() == 0);
    expect_none();
    op_largest = s.largest_free;                /* (the front cache is empty now) */
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

/* A size around the slab tier's range: 0..KH_SLAB_MAX + 31 (both builds' limits inside). */
static size_t get_small(void)
{
    return get16() % (KH_SLAB_MAX + 32);
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

/* A new, checked block nb joins the model (its pattern written); when the model is full it
 * goes straight back. seed < 0: the pattern seed is the next input byte (read only when the
 * block is kept). */
static void keep_new(const struct block *nb, int seed)
{
    if (nlive == SLOTS) {
        kfree(nb->p);
        m_frees++;
        return;
    }
    struct block *b = &live[nlive++];
    *b = *nb;
    b->seed = seed < 0 ? get8() : (uint8_t)seed;
    fill(b);
}

/* Slot index of a live slab object, starting the search at `from` (mod nlive); -1 if none. */
static int pick_slab(unsigned from)
{
    for (unsigned k = 0; k < nlive; k++) {
        unsigned j = (from + k) % nlive;
        if (live[j].slab)
            return (int)j;
    }
    return -1;
}

/* ---- operations ----------------------------------------------------------------------------- */
/* kmalloc(n), checked and kept (seed < 0: from the input); fresh: FRESH_FIRST if it is the
 * operation's first change of the heap. 0 if NULL. */
static int do_malloc(size_t n, int seed, int fresh)
{
    uint8_t *p = fz_kmalloc(n);
    absurd_is_reported(p, n, fz_kmalloc_ret);
    if (!p) {
        m_failed++;
        null_is_honest(n);
        return 0;
    }
    m_allocs++;
    struct block nb = check_new(p, n, 1, SLOTS, fresh);
    keep_new(&nb, seed);
    return 1;
}

static void op_malloc(void)
{
    do_malloc(get_size(), -1, FRESH_FIRST);
}

static void op_malloc_small(void)
{
    do_malloc(get_small(), -1, FRESH_FIRST);
}

/* k allocations of one size: enough to empty a slot's stack and refill it, carve more slabs,
 * run out of room for them. */
static void op_burst(void)
{
    uint8_t c = get8();
    size_t n = (size_t)get8() * 2;
    for (unsigned j = 0; j < 1 + c % BURST_MAX; j++)
        if (!do_malloc(n, (uint8_t)(c + j), j ? FRESH : FRESH_FIRST))
            break;
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
    struct block nb = check_new(p, n, 1, SLOTS, FRESH_FIRST);
    for (size_t i = 0; i < n; i += 1 + (i >= FILL_EDGE) * 61)
        REQUIRE(p[i] == 0);
    keep_new(&nb, -1);
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
        if (n <= KHEAP_MAX_ALLOC && align > KHEAP_ALIGN)   /* needs about n + align: loose */
            REQUIRE(stats().largest_free < class_round(block_size(n) + align + KHEAP_ALIGN));
        else                                    /* align <= 16 is kmalloc */
            null_is_honest(n);
        return;
    }
    m_allocs++;
    struct block nb = check_new(p, n, align, SLOTS, FRESH_FIRST);
    keep_new(&nb, -1);
}

/* Slot i was resized by krealloc to q, n bytes (in place or moved; a move copies at most
 * `copied` bytes): the kept bytes are intact; the slot takes the new block and a new pattern.
 * A slab object stays where it is when n maps to its class. */
static void resized(unsigned i, uint8_t *q, size_t n, size_t copied)
{
    struct block *b = &live[i];
    if (b->slab && n <= SLAB_REQ_MAX && class_for(n) == b->cls)
        REQUIRE(q == b->p);
    if (q != b->p) {
        m_allocs++;
        m_frees++;
    }
    struct block nb = check_new(q, n, 1, i, q != b->p ? FRESH : KEPT);
    size_t keep = n < b->n ? n : b->n;
    if (q != b->p && copied < keep)
        keep = copied;
    struct block old = *b;
    old.p = q;
    verify(&old, keep);
    nb.seed = (uint8_t)(b->seed + 1);
    *b = nb;
    fill(b);
}

static void op_realloc(void)
{
    uint8_t pick = get8();
    size_t n = (pick & 0x40) ? get_small() : get_size();
    if (nlive == 0 || pick == 0xFF) {           /* krealloc(NULL, n) is kmalloc(n) */
        uint8_t *p = fz_krealloc(NULL, n);
        absurd_is_reported(p, n, fz_krealloc_ret);
        if (!p) {
            m_failed++;
            null_is_honest(n);
            return;
        }
        m_allocs++;
        struct block nb = check_new(p, n, 1, SLOTS, FRESH_FIRST);
        keep_new(&nb, pick);
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

static void free_live(unsigned i)
{
    verify(&live[i], live[i].n);
    if (live[i].slab && cur_cpu >= NCPU)
        NOTE(EV_NOSLOT_FREE);
    else if (live[i].slab && live[i].cpu != cur_cpu && live[i].cpu < NCPU)
        NOTE(EV_CROSS_FREE);
    fz_kfree(live[i].p);
    m_frees++;
    drop_live(i);
}

static void op_free(void)
{
    if (!nlive) {
        kfree(NULL);
        return;
    }
    free_live(get8() % nlive);
}

/* Up to k frees of blocks like slot `ref`'s (slab objects of its class, or TLSF blocks), on
 * this CPU: a slot's stack of that class fills, and gives its oldest half back. */
static void op_free_burst(void)
{
    if (!nlive)
        return;
    uint8_t c = get8();
    const struct block *ref = &live[get8() % nlive];
    uintptr_t slab = ref->slab;
    unsigned cls = ref->cls, k = 1 + c % BURST_MAX;
    for (unsigned i = 0; i < nlive && k; ) {
        if ((live[i].slab != 0) == (slab != 0) && (!slab || live[i].cls == cls)) {
            free_live(i);
            k--;
        } else {
            i++;
        }
    }
}

/* Free a slab object and ask for the same class again on the same CPU: with a slot, the
 * object is on top of its stack and comes back (LIFO), whatever else that free did (a drain
 * asked by a flush, a full stack's oldest half given back). */
static void op_reuse(void)
{
    int j = nlive ? pick_slab(get8()) : -1;
    if (j < 0) {
        op_malloc_small();
        return;
    }
    uint8_t *p = live[j].p;
    unsigned c = live[j].cls;
    size_t hi = cls_tab[c].size - OBJ_EXTRA;                     /* requests of class c: */
    size_t lo = c == 0 || cls_tab[c - 1].size < OBJ_EXTRA ? 0 : cls_tab[c - 1].size + 1 - OBJ_EXTRA;
    size_t m = lo + get8() % (hi - lo + 1);
    REQUIRE(class_for(m) == c);
    free_live((unsigned)j);
    uint8_t *q = fz_kmalloc(m);
    if (!KHEAP_DEBUG && cur_cpu < NCPU) {
        REQUIRE(q == p);
        NOTE(EV_REUSE_LIFO);
    }
    if (!q) {
        m_failed++;
        null_is_honest(m);
        return;
    }
    m_allocs++;
    struct block nb = check_new(q, m, 1, SLOTS, FRESH);
    keep_new(&nb, -1);
}

/* kheap_flush on every slot: nothing cached anywhere, no spare slab. */
static void flush_all(void)
{
    unsigned was = cur_cpu;
    for (unsigned k = 0; k < NCPU; k++) {
        cur_cpu = k;
        kheap_flush();
    }
    cur_cpu = was;
    clean = ALL_CLEAN;
}

/* A flush: of this CPU (kheap_flush or kheap_flush_in), of every slot, or of this CPU with
 * every other slot asked to drain, which it must do at its next call: a free there leaves that
 * slot holding just the freed object. Where every slot is known empty, the slab tier holds
 * exactly what the live objects need. */
static void op_flush(void)
{
    uint8_t v = get8();
    struct kheap_stats before = stats(), s;
    switch (v % 4) {
    case 0:
        kheap_flush();
        break;
    case 1:
        kheap_flush_in(kheap_default());
        break;
    case 2:
        flush_all();
        break;
    default: {                                  /* the drain request */
        unsigned k = cur_cpu, freed = 0;
        size_t want = 0;
        kheap_flush();
        if (k < NCPU)
            clean |= 1u << k;
        for (unsigned j = 0; j < NCPU; j++) {
            int i = j == k || !nlive ? -1 : pick_slab(get8());
            if (i < 0)
                continue;
            on_cpu(j);
            want += live[i].size;
            free_live((unsigned)i);
            freed |= 1u << j;
        }
        cur_cpu = k;
        s = stats();
        if (KHEAP_DEBUG)
            REQUIRE(s.cached_bytes == 0);
        else if ((freed | clean | (k < NCPU ? 1u << k : 0)) == ALL_CLEAN) {
            REQUIRE(s.cached_bytes == want);    /* every other slot: just what was freed there */
            NOTE(EV_DRAIN_ASKED);
        }
        return;
    }
    }
    if (!KHEAP_DEBUG && cur_cpu < NCPU)
        clean |= 1u << cur_cpu;
    s = stats();
    REQUIRE(s.cached_bytes <= before.cached_bytes);
    if (KHEAP_DEBUG || clean == ALL_CLEAN)
        slabs_exact(&s);
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

/* Free a block, then (maybe from another CPU) misuse it as if it were still live: its header
 * still says free (a TLSF block), or its state byte is FREE or CACHED (a slab object). A slab
 * object whose free emptied its slab, given back to the TLSF tier: in the debug build the whole
 * block is poison, which reads as a free block too; in the release build whatever the memory
 * holds decides, so it is not tried. */
static void op_free_twice(void)
{
    if (!nlive)
        return;
    unsigned i = get8() % nlive, c = live[i].cls, c2;
    uint8_t *p = live[i].p;
    uintptr_t s = live[i].slab;
    free_live(i);
    uint8_t w = get8();
    if (w & 0x80)
        on_cpu((w >> 4) % (NCPU + 1));
    if (s && !(slab_of(p, &c2) == s && c2 == c)) {
        if (!KHEAP_DEBUG)
            return;
        NOTE(EV_RELEASED_TWICE);
    }
    misuse(w, p, KHEAP_E_DOUBLE_FREE);
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

/* An interior pointer. Of a slab object: any 16-aligned one inside it is KHEAP_E_BAD_HEADER,
 * even under a header a TLSF free would accept (a valid one, with the secret, or one bit off):
 * an object is found from its slab, never from a header. Of a TLSF block: inside its head
 * pattern (the 8 bytes before are pattern bytes, never a header), or under a forged header one
 * bit away from a valid one. Misaligned: KHEAP_E_BAD_PTR. */
static void op_free_interior(void)
{
    if (!nlive)
        return;
    struct block *b = &live[get8() % nlive];
    uint8_t o = get8();
    if (b->slab && (o & 1) && b->size >= 2 * KHEAP_ALIGN) {
        size_t off = KHEAP_ALIGN * (1 + (o >> 1) % (b->size / KHEAP_ALIGN - 1));
        uint8_t *x = b->p + off, f = get8();
        int forged = (f & 1) && off <= b->n;    /* [x - 8, x): the user's own bytes */
        if (forged) {
            uint64_t low = (f & 4) || b->size - off < KHEAP_MIN_BLOCK ? KHEAP_MIN_BLOCK
                                                                       : b->size - off;
            if (f & 2)                          /* as valid as the heap's own */
                put_word(x - KHEAP_HEADER_SIZE, header_for((uintptr_t)(x - KHEAP_HEADER_SIZE),
                                                           low & KH_SIZE_MASK));
            else
                forge(x - KHEAP_HEADER_SIZE, low, get16());
        }
        misuse(get8(), x, KHEAP_E_BAD_HEADER);
        if (forged)
            fill(b);
    } else if (!b->slab && b->n >= KHEAP_ALIGN && (o & 1)) {
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

/* Pointers into a slab that are no live object's: its header (from S itself, the payload of the
 * slab's own TLSF block, up to object 0), its slack after the last object, both
 * KHEAP_E_BAD_HEADER; an object that is not live (FREE in the slab, or CACHED on some CPU's
 * stack) KHEAP_E_DOUBLE_FREE; misaligned ones KHEAP_E_BAD_PTR. And the heap's own block of
 * per-CPU slots, which no allocation returned: KHEAP_E_BAD_HEADER. */
static void op_slab_misuse(void)
{
    uint8_t v = get8(), w = get8();
    int j = nlive ? pick_slab(w) : -1;
    if (j < 0 || v % 5 == 4) {
        uint8_t *cpus = (uint8_t *)((const struct kh_ctl *)kheap_default())->cpu_block;
        REQUIRE(cpus != NULL);
        misuse(get8(), cpus, KHEAP_E_BAD_HEADER);
        return;
    }
    uintptr_t s = live[j].slab;
    unsigned c = live[j].cls, nobj = cls_tab[c].cap;
    const struct slab_class *k = &cls_tab[c];
    size_t end = k->first + (size_t)k->cap * k->size;        /* 16-aligned: the slack starts */
    size_t slack = (KH_SLAB_BLOCK - KHEAP_HEADER_SIZE - end) / KHEAP_ALIGN;
    unsigned r = get16();
    switch (v % 5) {
    case 0:                                     /* the header, S itself included */
        misuse(get8(), (void *)(s + KHEAP_ALIGN * (r % (k->first / KHEAP_ALIGN))),
               KHEAP_E_BAD_HEADER);
        break;
    case 1:                                     /* the slack (else the header, misaligned) */
        if (slack)
            misuse(get8(), (void *)(s + end + KHEAP_ALIGN * (r % slack)), KHEAP_E_BAD_HEADER);
        else
            misuse(get8(), (void *)(s + KHEAP_ALIGN * (r % (k->first / KHEAP_ALIGN)) + 1 +
                                    (r >> 8) % (KHEAP_ALIGN - 1)), KHEAP_E_BAD_PTR);
        break;
    case 2:                                     /* misaligned, anywhere in the slab */
        misuse(get8(), (void *)(s + 1 + r % (KH_SLAB_BLOCK - KHEAP_HEADER_SIZE - 1) / 16 * 16 +
                                r % 15), KHEAP_E_BAD_PTR);
        break;
    default: {                                  /* an object no one holds */
        uint8_t *x = obj_at(s, c, r % nobj);
        if (live_at(x) >= 0)
            x = obj_at(s, c, (r + 1) % nobj);
        if (live_at(x) >= 0)
            break;
        REQUIRE(obj_state(s, x) != KH_OBJ_LIVE && obj_state(s, x) != KH_OBJ_NONE);
        misuse(get8(), x, KHEAP_E_DOUBLE_FREE);
        break;
    }
    }
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

/* One corruption at the end of live TLSF block A (requested n bytes, block S bytes, right
 * neighbour's header N at A's block end; slab objects have no header to overflow into: see
 * op_slab_slack), of a kind the input picks:
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
 * must be whole again. N may be a slab's block (its header and check word are then what is
 * hit) or the per-CPU slots' block. */
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
    unsigned ntlsf = 0, pick = get8(), i = 0;
    for (unsigned j = 0; j < nlive; j++)
        ntlsf += !live[j].slab;
    if (!ntlsf)
        return;
    for (pick %= ntlsf;; i++)                   /* the pick-th TLSF block */
        if (!live[i].slab && !pick--)
            break;
    unsigned kind = get8() % OV_KINDS;
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
        if (!live[j].slab && live[j].p == next_hdr + KHEAP_HEADER_SIZE)
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

/* The bytes of a slab object past its request. Release build: they are the user's (ksize is
 * the class size): writing all of them is no misuse, nothing is reported, the neighbours keep
 * their patterns. Debug build: they are canary (then the trailer): 1..all canary bytes
 * overwritten (never with the canary byte) is KHEAP_E_OVERFLOW to kheap_check, and for the
 * object to kfree (which frees it all the same) and krealloc (which goes on); ksize reads the
 * intact trailer. */
static void op_slab_slack(void)
{
    int j = nlive ? pick_slab(get8()) : -1;
    if (j < 0)
        return;
    struct block *b = &live[j];
    uint8_t v = get8(), sel = get8(), probe = get8();
    if (!KHEAP_DEBUG) {
        for (size_t i = b->n; i < b->size; i++)
            b->p[i] = run_byte(v, i);
        REQUIRE(kheap_check() == 0);
        REQUIRE(fz_ksize(b->p) == b->size);
        expect_none();
        return;
    }
    uint8_t *lo = b->p + b->n, saved[KH_SLAB_MAX];
    size_t len = 1 + sel % (b->size - KH_TRAILER_SIZE - b->n);
    memcpy(saved, lo, len);
    for (size_t i = 0; i < len; i++)
        lo[i] = run_byte(v, i);
    REQUIRE(kheap_check() == KHEAP_E_OVERFLOW);
    expect_none();
    int gone = 0;
    switch (probe % 4) {
    case 0:
        fz_kfree(b->p);
        expect_one(KHEAP_E_OVERFLOW, b->p, fz_kfree_ret);
        m_frees++;
        drop_live((unsigned)j);
        gone = 1;
        break;
    case 1: {
        size_t m = (probe & 4) ? get_small() : b->n;
        uint8_t *q = m ? fz_krealloc(b->p, m) : NULL;
        if (!m)
            break;
        expect_one(KHEAP_E_OVERFLOW, b->p, fz_krealloc_ret);
        if (!q) {
            m_failed++;
            null_is_honest(m);
            break;
        }
        resized((unsigned)j, q, m, SIZE_MAX);
        gone = 1;
        break;
    }
    case 2:
        REQUIRE(fz_ksize(b->p) == b->n);
        expect_none();
        break;
    default:
        break;
    }
    if (!gone) {
        memcpy(lo, saved, len);
        verify(b, b->n);
    }
    REQUIRE(kheap_check() == 0);
}

/* A write to a slab object after its free (into its first 8 bytes: inside the body of the free
 * block it is part of if its slab went back to the TLSF tier). Release build: the heap keeps
 * nothing in free or cached objects, so nothing is noticed. Debug build: free objects are
 * poison, so is a free block: kheap_check says KHEAP_E_USE_AFTER_FREE until the poison is back. */
static void op_use_after_free(void)
{
    int j = nlive ? pick_slab(get8()) : -1;
    if (j < 0)
        return;
    uint8_t *p = live[j].p, saved[8], v = get8();
    uintptr_t s = live[j].slab;
    unsigned c = live[j].cls, c2;
    free_live((unsigned)j);
    if (slab_of(p, &c2) != s || c2 != c)
        NOTE(EV_RELEASED_UAF);
    memcpy(saved, p, sizeof saved);
    for (unsigned i = 0; i < sizeof saved; i++)
        p[i] = (uint8_t)(v + i) == KH_POISON_BYTE ? 0 : (uint8_t)(v + i);
    REQUIRE(kheap_check() == (KHEAP_DEBUG ? KHEAP_E_USE_AFTER_FREE : 0));
    expect_none();
    if (KHEAP_DEBUG)
        memcpy(p, saved, sizeof saved);
    REQUIRE(kheap_check() == 0);
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

/* kheap_walk: every used block or live object it shows is one of the model's, of its size. */
static int walk_one(const struct kheap_block_info *bi, void *ctx)
{
    unsigned *seen = ctx;
    if (!bi->used)
        return 0;
    int j = live_at(bi->ptr);
    REQUIRE(j >= 0 && live[j].size == bi->size);
    REQUIRE(bi->usable == live[j].usable);
    (*seen)++;
    return 0;
}

static void op_check(void)
{
    unsigned seen = 0;
    check_all();
    for (unsigned i = 0; i < nlive; i++)
        verify(&live[i], live[i].n);
    REQUIRE(kheap_walk(walk_one, &seen) == 0);
    REQUIRE(seen == nlive);
}

/* Opcode bits 0-4 (bits 5-7: the CPU). */
#define OP(f) { f, #f }
static const struct { void (*fn)(void); const char *name; } ops[32] = {
    OP(op_malloc), OP(op_malloc), OP(op_malloc_small), OP(op_malloc_small),
    OP(op_malloc_small), OP(op_burst), OP(op_calloc), OP(op_aligned),
    OP(op_realloc), OP(op_realloc), OP(op_free), OP(op_free),
    OP(op_free), OP(op_free), OP(op_free_burst), OP(op_reuse),
    OP(op_reuse), OP(op_flush), OP(op_free_twice), OP(op_free_interior),
    OP(op_free_interior), OP(op_free_wild), OP(op_slab_misuse), OP(op_slab_misuse),
    OP(op_overflow), OP(op_overflow), OP(op_slab_slack), OP(op_use_after_free),
    OP(op_ksize), OP(op_check), OP(op_malloc_small), OP(op_free),
};

/* ---- one input ------------------------------------------------------------------------------ */
/* A fresh heap over the arena. The hooks (the error handler and the cpu hook) are the default
 * heap's, which kheap_init keeps: the per-CPU slots' block is made by kheap_init, in region 1,
 * the same for every input. The arena is refilled first: no slab check word of an earlier input
 * (the same secret) survives in the new heap's memory. */
static void heap_reset(void)
{
    memset(arena, NEVER_A_HEADER, ARENA_BYTES);
    REQUIRE(kheap_init(arena + REGION1_OFF, REGION1_LEN) == 0);
    REQUIRE(kheap_add_region(arena + REGION0_OFF, REGION0_LEN) == 0);
    REQUIRE(kheap_set_secret(FUZZ_SECRET) == 0);
    REQUIRE(((const struct kh_ctl *)kheap_default())->ncpu == NCPU);
    nlive = 0;
    nreports = 0;
    m_allocs = m_frees = m_failed = m_errors = 0;
    cur_cpu = 0;
    clean = ALL_CLEAN;
    whole_largest = stats().largest_free;
}

/* Once: the hooks; the model's class table against the library's; the library's build must
 * be the one this model was compiled for (the link checks it too): ksize is exactly what was
 * asked in a KHEAP_DEBUG build only. */
extern const struct kh_class kh_slab_class[KH_SLAB_CLASSES];

static void print_events(void)
{
    for (unsigned i = 0; i < EV_COUNT; i++)
        fprintf(stderr, "fuzz_kheap: %10lu %s\n", events[i], ev_name[i]);
}

static void setup(void)
{
    if (getenv("FUZZ_KHEAP_STATS"))
        atexit(print_events);
    classes_init();
    for (unsigned c = 0; c < KH_SLAB_CLASSES; c++)
        if (kh_slab_class[c].size != cls_tab[c].size || kh_slab_class[c].first != cls_tab[c].first ||
            kh_slab_class[c].cap != cls_tab[c].cap) {
            fprintf(stderr, "fuzz_kheap: slab class %u is %u bytes, object 0 at %u, %u objects; "
                    "the model says %u, %u, %u (mm/kheap_layout.h)\n", c, kh_slab_class[c].size,
                    kh_slab_class[c].first, kh_slab_class[c].cap, cls_tab[c].size,
                    cls_tab[c].first, cls_tab[c].cap);
            __builtin_trap();
        }
    REQUIRE(kheap_init(arena + REGION1_OFF, REGION1_LEN) == 0);
    struct kheap_hooks hooks = { .error = on_report, .cpu = fz_cpu, .ncpu = NCPU };
    REQUIRE(kheap_set_hooks(kheap_default(), &hooks) == 0);
    void *big = kmalloc(601), *small = kmalloc(1);
    size_t ubig = ksize(big), usmall = ksize(small);
    kfree(big);
    kfree(small);
    if (ubig != (KHEAP_DEBUG ? 601 : block_size(601) - KHEAP_HEADER_SIZE) ||
        usmall != (KHEAP_DEBUG ? 1 : cls_tab[0].size)) {
        fprintf(stderr, "fuzz_kheap: compiled with KHEAP_DEBUG=%d but the library is the %s "
                "build: build both with the same KHEAP_DEBUG (make fuzz KHEAP_DEBUG=...)\n",
                KHEAP_DEBUG, KHEAP_DEBUG ? "release" : "debug");
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int set_up, trace;
    if (!set_up++) {
        setup();
        trace = getenv("FUZZ_KHEAP_TRACE") != NULL;  /* each operation to stderr */
    }
    cur_op = "the fresh heap";
    in = data;
    left = size;
    heap_reset();
    check_all();
    while (left) {
        uint8_t op = get8();
        on_cpu(op >> 5 <= NCPU ? op >> 5 : op >> 5 == NCPU + 1 ? UINT32_MAX : cur_cpu);
        cur_op = ops[op & 31].name;
        if (trace)
            fprintf(stderr, "fuzz_kheap: %s on cpu %u (%zu bytes left)\n", cur_op, cur_cpu, left);
        ops[op & 31].fn();
        check_all();
    }
    cur_op = "the final drain";
    while (nlive) {                             /* drain: everything comes back, from any CPU */
        on_cpu(nlive % (NCPU + 1));
        free_live(nlive - 1);
    }
    flush_all();
    check_all();
    struct kheap_stats s = stats();
    slabs_exact(&s);
    REQUIRE(s.used_bytes == 0 && s.slab_bytes == 0 && s.slab_free_bytes == 0);
    REQUIRE(s.free_bytes == s.total_bytes);
    REQUIRE(s.largest_free == whole_largest);   /* one free block per region again */
    return 0;
}
