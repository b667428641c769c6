/*
 * tests/host/kheap_test.h -- what the host unit tests of kheap share (test_kheap.c and
 * test_kheap_harden.c, each built for the release and the debug library): the build flavour,
 * trampolines that give every call a known return address (the caller a report must name),
 * a recording error handler with EXPECT_REPORT, and heap reset/stats helpers.
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

/* The block size kmalloc(n) uses, in this build. */
static inline size_t block_of(size_t n)
{
    size_t s = (n + META + KHEAP_ALIGN - 1) & ~(size_t)(KHEAP_ALIGN - 1);
    return s < KHEAP_MIN_BLOCK ? KHEAP_MIN_BLOCK : s;
}

static inline struct kheap_stats stats(void)
{
    struct kheap_stats s;
    kheap_get_stats(&s);
    return s;
}

#endif /* KHEAP_TEST_H */
