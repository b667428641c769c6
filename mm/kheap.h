/*
 * kheap.h -- the whole public API of kheap, a constant-time kernel heap written in NASM.
 * An embedding kernel needs this header and the objects of mm/ and asm/ (or, on a Linux
 * host, build/host/libkheap.a), nothing else. Freestanding: only <stddef.h>, <stdint.h>.
 * The #define KHEAP_* integer constants below (with mm/kheap_layout.h) are also the NASM
 * side's source of truth: the Makefile turns them into build/mm/kheap_layout.inc, so the two
 * cannot disagree.
 */
#ifndef KHEAP_H
#define KHEAP_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Layout facts a user may rely on
 * ------------------------------------------------------------------------------------------- */

/* Every pointer kheap hands out is a multiple of this. */
#define KHEAP_ALIGN            16
/* Metadata bytes per allocated block: one size word (size, flag bits, check bits). A block of
 * S bytes (S a multiple of 16) gives S - KHEAP_HEADER_SIZE usable bytes: kmalloc(n) uses a block
 * of max(KHEAP_MIN_BLOCK, round_up(n + KHEAP_HEADER_SIZE, 16)) bytes. */
#define KHEAP_HEADER_SIZE      8
/* Smallest block, metadata included: a free block holds header, two list links and a footer. */
#define KHEAP_MIN_BLOCK        32
/* Segregated-fit classes: 2^KHEAP_SL_LOG2 second-level lists per power of two (TLSF). */
#define KHEAP_SL_LOG2          4
/* Blocks below 2^KHEAP_FL_SHIFT bytes are classed linearly in steps of KHEAP_ALIGN. */
#define KHEAP_FL_SHIFT         8
/* Largest block: below 2^KHEAP_MAX_LOG2 bytes (256 TiB); a longer region is used up to that. */
#define KHEAP_MAX_LOG2         48
/* Largest n kmalloc/krealloc/kcalloc and largest align kmalloc_aligned consider (64 TiB); a
 * larger request returns NULL (keeps every size computation free of overflow). */
#define KHEAP_MAX_ALLOC        0x0000400000000000
/* Smallest region after alignment: descriptor (24) + KHEAP_MIN_BLOCK + end sentinel (8). */
#define KHEAP_REGION_MIN       64

/* ---------------------------------------------------------------------------------------------
 * Error codes: returned (negated) by kheap_init/kheap_add_region/kheap_check and passed to the
 * error handler. 0 is success. Keep kheap_strerror() (mm/kheap_check.c) in step.
 * ------------------------------------------------------------------------------------------- */
#define KHEAP_OK               0
#define KHEAP_E_INVAL         (-1)   /* bad argument: NULL region, region wraps, bad alignment */
#define KHEAP_E_TOO_SMALL     (-2)   /* region cannot hold one minimum block plus sentinels */
#define KHEAP_E_OVERLAP       (-3)   /* region overlaps a region the heap already has */
#define KHEAP_E_BAD_PTR       (-4)   /* pointer outside every region, or misaligned */
#define KHEAP_E_BAD_HEADER    (-5)   /* no live block there: interior pointer or overwritten header */
#define KHEAP_E_DOUBLE_FREE   (-6)   /* block is already free */
#define KHEAP_E_FREELIST      (-7)   /* a free-list link does not point back: list corrupted */
#define KHEAP_E_CORRUPT       (-8)   /* kheap_check: a block or region invariant does not hold */
#define KHEAP_E_STATS         (-9)   /* kheap_check: counters disagree with the heap walk */
#define KHEAP_E_NOT_INIT      (-10)  /* kheap_check/kheap_add_region before kheap_init */

/* ---------------------------------------------------------------------------------------------
 * Public API. Unless stated otherwise: global heap, System V AMD64 ABI, every function runs
 * between the lock hooks (kheap_set_lock) and is therefore as thread/IRQ-safe as those hooks.
 * ------------------------------------------------------------------------------------------- */

struct kheap_stats {
    size_t   total_bytes;    /* bytes in blocks, used + free (region descriptors/sentinels excluded) */
    size_t   used_bytes;     /* bytes in allocated blocks, headers included */
    size_t   free_bytes;     /* bytes in free blocks */
    size_t   largest_free;   /* size of the largest free block (its usable part is 8 bytes less) */
    size_t   peak_used;      /* highest used_bytes since kheap_init */
    uint64_t allocs;         /* successful kmalloc/kcalloc/kmalloc_aligned/moving krealloc */
    uint64_t frees;          /* successful kfree (and krealloc(p, 0), and the free of a move) */
    uint64_t failed_allocs;  /* allocation calls that returned NULL */
    uint64_t errors;         /* misuse reports (calls of the error handler) */
    unsigned regions;        /* regions under management */
};

/* Called on misuse with a KHEAP_E_* code, the offending pointer and the return address of the
 * kheap call that detected it (the caller of kfree, not kfree itself; also through the my_*
 * names). The pointer is the one passed to kfree/krealloc/ksize; for a corrupt free list or
 * neighbour found by kmalloc, the payload address of the bad block. Runs with the heap lock
 * held: it must not call back into kheap. It may return; the call is then ignored. */
typedef void (*kheap_error_fn)(int error, void *ptr, void *caller);

/* (Re)initialise the heap over [start, start+size). Forgets all earlier regions and resets the
 * counters; the error handler and lock hooks are kept. start is aligned up and the end down to
 * KHEAP_ALIGN; the region must then hold KHEAP_REGION_MIN bytes (a 24-byte descriptor, one
 * minimum block, an 8-byte end sentinel). Returns 0, or KHEAP_E_INVAL (NULL start, start+size
 * wraps) or KHEAP_E_TOO_SMALL; on failure the heap is empty (kmalloc returns NULL,
 * kheap_add_region returns KHEAP_E_NOT_INIT). O(1). */
int kheap_init(void *start, size_t size);

/* Add a disjoint region (aligned inward like kheap_init's; regions may lie in any order and
 * with gaps between them). Returns 0, KHEAP_E_NOT_INIT, KHEAP_E_INVAL, KHEAP_E_TOO_SMALL or
 * KHEAP_E_OVERLAP. O(number of regions) for the overlap test. */
int kheap_add_region(void *start, size_t size);

/* At least n usable bytes, KHEAP_ALIGN-aligned, or NULL if no block fits or n is absurd (larger
 * than the heap, or > KHEAP_MAX_ALLOC). kmalloc(0) returns a unique freeable pointer. Good fit:
 * the request is rounded up to its size class, so every block of the first non-empty class
 * found fits; if none, the head of the request's own class is tried. O(1). */
void *kmalloc(size_t n);

/* n * size zeroed bytes; NULL if n * size overflows or kmalloc would fail. O(1) + zeroing. */
void *kcalloc(size_t n, size_t size);

/* p == NULL: kmalloc(n). n == 0: kfree(p), returns NULL. Otherwise resizes, in place when the
 * block shrinks or its next neighbour is free and large enough (O(1)), else moves keeping
 * min(old, n) bytes. Returns NULL on failure (or a bad p or corrupt neighbour, which is
 * reported) and leaves p valid and unchanged. */
void *krealloc(void *p, size_t n);

/* NULL is a no-op. A pointer kheap did not hand out, a double free or an overwritten header is
 * reported to the error handler and otherwise ignored; the heap stays consistent. O(1).
 * Checks, in order: a misaligned p or one outside [lowest region, highest region end) is
 * KHEAP_E_BAD_PTR without reading memory; otherwise the 8 bytes before p are read (so a pointer
 * into a gap between two regions must be readable memory) and must be a header with valid check
 * bits, not free (else KHEAP_E_DOUBLE_FREE), whose block stays inside the heap (else
 * KHEAP_E_BAD_HEADER). A corrupt neighbour header or free list link is reported
 * (KHEAP_E_BAD_HEADER, KHEAP_E_FREELIST) and the block is then leaked, not freed. */
void kfree(void *p);

/* n bytes aligned to align (a power of two, any size up to the heap), freed with kfree. NULL if
 * align is not a power of two or no block fits. Needs a free block of about n + align bytes
 * (the leading gap goes back to the free lists). O(1). */
void *kmalloc_aligned(size_t align, size_t n);

/* Usable bytes of the live block at p (>= what was asked). 0 for NULL; a bad p is reported and
 * gives 0. O(1). */
size_t ksize(const void *p);

/* Walk every region block by block and every free list, verify every invariant (sizes,
 * alignment, check bits, physical links, no adjacent free blocks, each free block on exactly the
 * list its size maps to, bitmaps, counters). 0, or a negative KHEAP_E_* code. O(heap). */
int kheap_check(void);

/* Fill *s. O(length of the highest non-empty free list) for largest_free. */
void kheap_get_stats(struct kheap_stats *s);

/* Install the misuse handler; NULL restores the default (count and ignore). Returns the
 * previous handler (NULL if it was the default). */
kheap_error_fn kheap_set_error_handler(kheap_error_fn fn);

/* Every later public call runs between acquire(ctx) and release(ctx) (the hooks are called
 * with a 16-byte aligned stack and may clobber caller-saved registers). NULL, NULL: no locking.
 * This call itself takes no lock: change hooks only while no other thread or IRQ can be inside
 * the heap. */
void kheap_set_lock(void (*acquire)(void *), void (*release)(void *), void *ctx);

/* Name of a KHEAP_* code ("block already free", ...), for messages. Never NULL; no lock. */
const char *kheap_strerror(int code);

/* The original first-fit allocator's names: the same routines (aliases, same addresses). */
void *my_malloc(size_t n);
void *my_calloc(size_t n, size_t size);
void *my_realloc(void *p, size_t n);
void  my_free(void *p);

#endif /* KHEAP_H */
