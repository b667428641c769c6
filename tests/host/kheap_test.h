/*
 * tests/host/kheap_test.h -- what the host unit tests of kheap share (test_kheap.c,
 * test_kheap_harden.c, test_kheap_instances.c, ..., each built for the release and the debug
 * library): the build flavour, which tier serves a request (slab object or TLSF block) and the
 * sizes that follow, trampolines that give every call a known return address (the caller a
 * report must name), a recording error handler with EXPECT_REPORT, and heap reset/stats helpers.
 */
#ifndef KHEAP_TEST_H
#define KHEAP_TEST_H

#include <string.h>

#include "mm/kheap.h"
#include "mm/kheap_diag.h"
#include "mm/kheap_layout.h"
#include "ktest.h"

#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
#define DEBUG_BUILD 1
#else
#define DEBUG_BUILD 0
#endif
/* Metadata bytes per used block beyond the request: the largest request a free block of S
 * bytes satisfies is S - META. */
#define META (KHEAP_HEADER_SIZE + (DEBUG_BUILD ? KHEAP_DEBUG_EXTRA : 0))

/* ---- the two tiers (mm/kheap_layout.h "The slab tier") ----------------------------------------
 * kmalloc(n) with n <= SLAB_REQ_MAX is served by the slab tier: an object with no header, whose
 * ksize is its class size (exactly n in the debug build); so is kmalloc_aligned with align 32
 * or 64 and n rounded up to it <= SLAB_REQ_MAX (release build). Larger requests, other
 * kmalloc_aligned calls above KHEAP_ALIGN, and small requests the slab tier has no room for (no
 * KH_SLAB_BLOCK-byte aligned slab can be carved) are TLSF blocks: header at p - 8, neighbours,
 * front cache, splitting. A test of TLSF block behaviour asks for at least TLSF_MIN bytes. */
#define SLAB_REQ_MAX  (KH_SLAB_MAX - (DEBUG_BUILD ? KHEAP_DEBUG_EXTRA : 0))
#define TLSF_MIN      (KH_SLAB_MAX + 8)    /* a TLSF block in both builds: 520 */
_Static_assert(TLSF_MIN > SLAB_REQ_MAX, "TLSF_MIN is above the slab tier");
_Static_assert((TLSF_MIN + KHEAP_HEADER_SIZE) % KHEAP_ALIGN == 0,
               "kmalloc(TLSF_MIN) has no slack in the release build: ksize == TLSF_MIN");
/* A TLSF request whose block size (608; 640 in the debug build) is a class boundary: the good-fit
 * search of kmalloc(TLSF_FIT) starts at the list its own block size is on (mm/kheap_layout.h,
 * "Size classes"), so a freed TLSF_FIT block heads the list the next kmalloc(TLSF_FIT) takes. */
#define TLSF_FIT      600
#define TLSF_FIT_BLOCK_ ((TLSF_FIT + META + KHEAP_ALIGN - 1) & ~(KHEAP_ALIGN - 1))
_Static_assert(TLSF_FIT > SLAB_REQ_MAX && TLSF_FIT_BLOCK_ >= 512 && TLSF_FIT_BLOCK_ < 1024 &&
               TLSF_FIT_BLOCK_ % 32 == 0, "TLSF_FIT's block starts a class (fl 2: 32-byte steps)");

/* A region of at most this many bytes holds no slab (its blocks are fewer than KH_SLAB_BLOCK
 * bytes): in a heap of such regions every request is a TLSF block, small ones included, as
 * before the slab tier (the front-cache tests use one). */
#define NOSLAB_REGION (16 * 1024)
_Static_assert(NOSLAB_REGION - KH_RGN_SIZE - KH_SENTINEL_SIZE < KH_SLAB_BLOCK,
               "a NOSLAB_REGION region cannot hold a slab");

/* White-box access to the default heap's control block, for the corruption tests. */
#define kheap_ctl (*(struct kh_ctl *)kheap_default())
/* Bytes of the first region kheap_init keeps for the control block (total_bytes excludes it). */
#define INIT_OVERHEAD (KHEAP_CTL_SIZE + KH_RGN_SIZE + KH_SENTINEL_SIZE)

/* ---- the real caller: trampolines whose return address is a known label ------------------ */
#define TRAMPOLINE(name, fn)                                                                \
    __asm__(".text\n.p2align 4\n.globl " #name "\n.type " #name ",@function\n" #name ":\n"   \
            "\tsub $8, %rsp\n\tcall " #fn "@PLT\n.globl " #name "_ret\n" #name "_ret:\n"     \
            "\tadd $8, %rsp\n\tret\n");                                                     \
    extern const char name##_ret[];
TRAMPOLINE(t_kfree, kfree)
TRAMPOLINE(t_my_free, my_free)
TRAMPOLINE(t_krealloc, krealloc)
TRAMPOLINE(t_my_realloc, my_realloc)
TRAMPOLINE(t_ksize, ksize)
TRAMPOLINE(t_kmalloc, kmalloc)
TRAMPOLINE(t_kcalloc, kcalloc)
TRAMPOLINE(t_kmalloc_aligned, kmalloc_aligned)
TRAMPOLINE(t_kheap_flush, kheap_flush)
void   t_kfree(void *p);
void   t_my_free(void *p);
void  *t_krealloc(void *p, size_t n);
void  *t_my_realloc(void *p, size_t n);
size_t t_ksize(const void *p);
void  *t_kmalloc(size_t n);
void  *t_kcalloc(size_t n, size_t size);
void  *t_kmalloc_aligned(size_t align, size_t n);
void   t_kheap_flush(void);

/* ---- recording error handler --------------------------------------------------------------- */
static struct { int n, code; void *ptr, *caller; int lock_depth; } rec;
static int lock_depth;            /* kept by a test's lock hooks, recorded with each report */

static inline void record(int code, void *ptr, void *caller)
{
    rec.n++;
    rec.code = code;
    rec.ptr = ptr;
    rec.caller = caller;
    rec.lock_depth = lock_depth;
}

/* One new report since `before`, with this code and pointer, made by the call that went through
 * trampoline `via` (t_kfree, ...): the caller must be via's return label. Naming the trampoline,
 * not an address, keeps the caller check from ever being `rec.caller == rec.caller`. */
#define EXPECT_REPORT(before, code_, ptr_, via)                                             \
    do {                                                                                    \
        KEXPECT_EQ(rec.n, (before) + 1);                                                    \
        KEXPECT_EQ(rec.code, code_);                                                        \
        KEXPECT_EQ(rec.ptr, ptr_);                                                          \
        KEXPECT_EQ(rec.caller, via##_ret);                                                  \
    } while (0)

/* A fresh heap over [base, base + size) with the recording handler and no growth hook. */
static inline void reset_at(unsigned char *base, size_t size)
{
    kheap_set_grow(NULL);
    KEXPECT_EQ(kheap_init(base, size), 0);
    kheap_set_error_handler(record);
    memset(&rec, 0, sizeof rec);
}

/* The size of the TLSF block that serves an n-byte request, in this build. */
static inline size_t block_of(size_t n)
{
    size_t s = (n + META + KHEAP_ALIGN - 1) & ~(size_t)(KHEAP_ALIGN - 1);
    return s < KHEAP_MIN_BLOCK ? KHEAP_MIN_BLOCK : s;
}

/* ksize() of a TLSF block for n bytes. */
static inline size_t block_usable_of(size_t n)
{
    return DEBUG_BUILD ? n : block_of(n) - KHEAP_HEADER_SIZE;
}

/* The object size of the slab class that serves an n-byte request (n <= SLAB_REQ_MAX): 16-byte
 * steps up to 128, 32-byte steps up to 256, 64-byte steps up to KH_SLAB_MAX (the table is
 * kh_slab_class in mm/kheap_slab.inc; the debug build's extra bytes are part of the object). */
static inline size_t slab_size_of(size_t n)
{
    size_t m = n + (DEBUG_BUILD ? KHEAP_DEBUG_EXTRA : 0);
    size_t step = m <= 128 ? 16 : m <= 256 ? 32 : 64;
    m = (m + step - 1) & ~(step - 1);
    return m < 16 ? 16 : m;
}

/* ksize() of kmalloc(n) in a heap whose slab tier has room. */
static inline size_t usable_of(size_t n)
{
    if (n > SLAB_REQ_MAX)
        return block_usable_of(n);
    return DEBUG_BUILD ? n : slab_size_of(n);
}

static inline struct kheap_stats stats(void)
{
    struct kheap_stats s;
    kheap_get_stats(&s);
    return s;
}

#endif /* KHEAP_TEST_H */
