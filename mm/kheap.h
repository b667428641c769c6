/*
 * kheap.h -- kheap, a constant-time kernel heap written in NASM: the whole user contract.
 * Heaps are objects (kheap_create); the k* calls (kmalloc, kfree, ...) use the default heap
 * made by kheap_init. Diagnostics (walk, inspect, leak report, fault injection) are in
 * kheap_diag.h; how the heap works inside is docs/heap.md. Freestanding: <stddef.h>, <stdint.h>.
 * SPDX-License-Identifier: MIT
 */
#ifndef KHEAP_H
#define KHEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KHEAP_VERSION_MAJOR    2
#define KHEAP_VERSION_MINOR    0
#define KHEAP_VERSION          (KHEAP_VERSION_MAJOR * 100 + KHEAP_VERSION_MINOR)

/* ---- build options ------------------------------------------------------------------------
 * Define them the same way for the library and for every file that includes this header; a
 * mismatch fails the link (undefined kheap_build_debug<D>_quick<N>), it cannot corrupt a heap.
 * KHEAP_DEBUG (0 or 1): poison freed memory, canary after each request, allocation sites.
 * KHEAP_QUICK_DEPTH (a plain number; 0 = none): blocks cached per small size (front cache). */
#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
#  define KHEAP_BUILD_DEBUG    1
#else
#  define KHEAP_BUILD_DEBUG    0
#endif
#define KHEAP_QUICK_DEPTH_DEFAULT 64
#ifndef KHEAP_QUICK_DEPTH
#  define KHEAP_QUICK_DEPTH    KHEAP_QUICK_DEPTH_DEFAULT
#endif

/* ---- layout facts a user may rely on -------------------------------------------------------- */
#define KHEAP_ALIGN            16          /* every pointer handed out is a multiple of this */
#define KHEAP_HEADER_SIZE      8           /* bytes of metadata per allocated block (slab
                                              objects: none, their state is out of band) */
#define KHEAP_MIN_BLOCK        32          /* smallest block, metadata included */
#define KHEAP_DEBUG_EXTRA      17          /* KHEAP_DEBUG: more bytes per block (trailer, canary) */
#define KHEAP_QUICK_MAX        512         /* largest block size the front cache holds */
#define KHEAP_SLAB_MAX         512         /* largest request of the slab tier (debug: minus
                                              KHEAP_DEBUG_EXTRA); its objects have no header */
#define KHEAP_MAX_ALLOC        0x0000400000000000  /* larger n or align: NULL (KHEAP_E_SIZE) */
#define KHEAP_REGION_MIN       64          /* smallest region kheap_extend accepts (aligned) */
#define KHEAP_CTL_SIZE         16384       /* bytes of kheap_create's memory the heap keeps */
#define KHEAP_CREATE_MIN       (KHEAP_CTL_SIZE + KHEAP_REGION_MIN)  /* smallest kheap_create */

/* ---- errors: returned (negative) and passed to the error hook; 0 is success ----------------- */
#define KHEAP_OK               0
#define KHEAP_E_INVAL         (-1)   /* bad argument: NULL, wraps, half a lock pair, bad align */
#define KHEAP_E_TOO_SMALL     (-2)   /* region cannot hold one minimum block plus sentinels */
#define KHEAP_E_OVERLAP       (-3)   /* region overlaps a region the heap already has */
#define KHEAP_E_BAD_PTR       (-4)   /* pointer in no region of this heap, or misaligned */
#define KHEAP_E_BAD_HEADER    (-5)   /* no live block there: interior pointer, overwritten header */
#define KHEAP_E_DOUBLE_FREE   (-6)   /* block is already free */
#define KHEAP_E_FREELIST      (-7)   /* a free-list or front-cache link is bad: list corrupted */
#define KHEAP_E_CORRUPT       (-8)   /* kheap_verify: a block or region invariant does not hold */
#define KHEAP_E_STATS         (-9)   /* kheap_verify: counters disagree with the heap walk */
#define KHEAP_E_NOT_INIT      (-10)  /* default heap used before kheap_init */
#define KHEAP_E_USE_AFTER_FREE (-11) /* KHEAP_DEBUG: a free block was written after free */
#define KHEAP_E_OVERFLOW      (-12)  /* KHEAP_DEBUG: bytes after the requested size overwritten */
#define KHEAP_E_SIZE          (-13)  /* absurd size: > KHEAP_MAX_ALLOC, or n * size overflows */

/* Name of a KHEAP_* code, for messages. Never NULL; no lock. */
const char *kheap_strerror(int code);

/* ---- hooks ------------------------------------------------------------------------------------ */

/* Misuse report: a KHEAP_E_* code, the offending pointer (the one passed in; for a corrupt list
 * or neighbour found while allocating, that block's payload; NULL for an absurd size) and the
 * return address of the kheap call that found it (the caller of kfree, not kfree). Running out
 * of memory is not misuse. Runs with the heap's lock held: it must not call this heap (the
 * diagnostics' inspect excepted). It may return: the call then fails or is ignored. */
typedef void (*kheap_error_fn)(int error, void *ptr, void *caller);

/* Growth: no free block fits a request whose block needs `need` bytes. Set *start and return
 * the size of fresh memory (0: none). Memory right after one of the heap's regions extends it;
 * other memory becomes a new region. The call is retried once. Runs with the lock held; must
 * not call the heap; the memory must stay valid while the heap lives. */
typedef size_t (*kheap_grow_fn)(size_t need, void **start);

/* Give-back: when a free (kfree, krealloc's) leaves a free block that ends the heap's highest
 * region, that end is on a page boundary (KHEAP_PAGE_SIZE) and at least trim_min bytes of whole
 * pages lie beyond the block's first KHEAP_MIN_BLOCK bytes, the hook is offered those pages,
 * [start, start + size), page aligned. Return non-zero to take them: they leave the heap (the
 * region and the heap now end at start, total_bytes shrinks, trimmed_bytes grows) and the heap
 * never reads or writes them again (it may unmap them at once: a stale pointer into them lies
 * above the heap and is rejected without a read); 0 leaves everything as it was. Also offered
 * by kheap_flush_in; never from the flush of an allocation that needs the room. Runs with the
 * lock held; must not call the heap. The grow hook may hand the same memory back later (it
 * then extends the region). Memory given to the heap later above unmapped pages makes them a
 * gap between regions, which kheap_free reads (it must be readable): map them again first, or
 * give the heap only memory that starts at the heap's end. */
typedef int (*kheap_trim_fn)(void *start, size_t size);
#define KHEAP_PAGE_SIZE        4096
#define KHEAP_TRIM_MIN         (64 * 1024)   /* trim_min when the hook leaves it 0 */

/* Per-CPU caches: the index, below ncpu, of the cache slot the calling CPU may use. Small
 * allocations and frees (the slab tier, see docs/heap.md) go through that slot without the
 * lock; only refills and drains, KH_MAG_BATCH objects at a time, take it. No other CPU or
 * thread may use the same index until the kheap call returns: a CPU index while the caller
 * cannot migrate (a kernel: preemption off), or a thread's own slot. An interrupt handler on
 * the same CPU may call the heap meanwhile (kheap sees the slot busy and takes the lock).
 * Called on a 16-byte aligned stack; may clobber the caller-saved registers; must not call the
 * heap. A result >= ncpu makes the call take the lock, as without the hook. */
typedef unsigned (*kheap_cpu_fn)(void);
#define KHEAP_MAX_CPUS         256

/* Every hook of one heap. A zero field means none: errors are only counted, no lock is taken
 * (then only one thread or CPU may use the heap at a time), the heap does not grow nor give
 * memory back. lock and unlock come together or not at all; both are called with lock_ctx, on
 * a 16-byte aligned stack, and may clobber the caller-saved registers. For IRQ-safety the lock
 * must disable interrupts (see asm/spinlock.h). */
struct kheap_hooks {
    kheap_error_fn error;
    void         (*lock)(void *lock_ctx);
    void         (*unlock)(void *lock_ctx);
    void          *lock_ctx;
    kheap_grow_fn  grow;
    kheap_trim_fn  trim;
    size_t         trim_min;           /* smallest span offered to trim (0: KHEAP_TRIM_MIN) */
    kheap_cpu_fn   cpu;                /* the per-CPU caches' index (NULL: one cache) */
    unsigned       ncpu;               /* cpu's results are below this, 1..KHEAP_MAX_CPUS */
};

/* ---- statistics ------------------------------------------------------------------------------- */
struct kheap_stats {
    size_t   total_bytes;    /* bytes in blocks, used + free (control block, descriptors and
                                sentinels excluded) */
    size_t   used_bytes;     /* bytes users hold: allocated blocks (headers included) and live
                                slab objects (their class size); slabs' free and cached objects,
                                their headers and the per-CPU slots' block are free_bytes */
    size_t   free_bytes;     /* total - used */
    size_t   largest_free;   /* the largest block one allocation can get now (the front cache
                                flushed, as an allocation that needs it does); usable: 8 less */
    size_t   peak_used;      /* highest bytes in allocated blocks, slabs counted whole */
    uint64_t allocs;         /* successful allocations (also moving reallocs) */
    uint64_t frees;          /* successful frees (also realloc(p, 0) and the free of a move) */
    uint64_t failed_allocs;  /* allocation calls that returned NULL */
    uint64_t errors;         /* misuse reports */
    unsigned regions;        /* regions under management */
    unsigned fragmentation_ppm; /* (1 - largest_free / free_bytes) * 10^6; 0 if nothing free */
    uint64_t trimmed_bytes;  /* bytes given back through the trim hook (they left the heap) */
    size_t   slab_bytes;     /* bytes of the blocks that are slabs (16 KiB each; beyond what
                                live objects fill: partial slabs, one spare per class) */
    size_t   slab_free_bytes;  /* of those, bytes of objects free in their slabs */
    size_t   cached_bytes;   /* bytes of objects in the per-CPU caches and the depot (free to
                                users; at most (ncpu + 4) * 64 objects per size class, see
                                docs/heap.md section 6; another CPU's may be changing while
                                this is read) */
};

/* ---- heap instances --------------------------------------------------------------------------
 * Every call below takes a heap made by kheap_create. h == NULL or a pointer that is not a
 * heap is rejected without touching memory past the control block's first word: calls return
 * NULL, 0, or KHEAP_E_INVAL, and kheap_free does nothing. Each heap owns all of its state;
 * heaps never share anything, so two heaps may be used at once from two CPUs with no lock.
 * All calls of one heap run between its lock hooks. Time bounds are for the release build
 * (KHEAP_DEBUG adds work proportional to the bytes touched). */
typedef struct kheap kheap_t;

/* A heap over [mem, mem + size): its control block takes the first KHEAP_CTL_SIZE bytes (after
 * aligning mem up to 64), the rest is its first region. NULL if mem is NULL, mem + size wraps,
 * or size is below KHEAP_CREATE_MIN after alignment. No hooks, a fresh secret. O(1). */
kheap_t *kheap_create(void *mem, size_t size);

/* Add the disjoint region [mem, mem + size) (aligned inward to 16; any order, gaps allowed).
 * 0, or KHEAP_E_INVAL (bad h, NULL, wraps), KHEAP_E_TOO_SMALL (< KHEAP_REGION_MIN),
 * KHEAP_E_OVERLAP. O(regions). */
int kheap_extend(kheap_t *h, void *mem, size_t size);

/* At least n usable bytes, KHEAP_ALIGN-aligned; NULL if nothing fits or n > KHEAP_MAX_ALLOC
 * (reported: KHEAP_E_SIZE). n == 0 gives a unique pointer. n <= KHEAP_SLAB_MAX comes from the
 * slab tier (an object of its size class, no header, from this CPU's cache without the lock
 * when there is one), larger n and small ones the slab tier has no room for from the TLSF
 * tier. Before failing it flushes the front cache, gives back this CPU's cached objects and
 * the spare slabs, and asks the grow hook, once each. O(1) (each step is bounded: see
 * docs/heap.md, "Time bounds"). */
void *kheap_alloc(kheap_t *h, size_t n);

/* n * size zeroed bytes; NULL if n * size overflows (reported: KHEAP_E_SIZE) or nothing fits.
 * O(1) + zeroing. */
void *kheap_calloc(kheap_t *h, size_t n, size_t size);

/* p == NULL: kheap_alloc. n == 0: kheap_free, returns NULL. Else resizes in place when it can
 * (a block: shrinking, or a free right neighbour; a slab object: n of the same size class),
 * O(1), or moves keeping min(old, n) bytes (a slab object shrinking to another class moves,
 * and stays where it is if that fails). A move keeps no alignment above 16, as C's realloc:
 * kheap_alloc_aligned(64, 38) is an object of the 64-byte class, and a realloc to 38 bytes
 * moves it to the 48-byte one. On failure NULL and p is untouched; a bad p is reported and
 * gives NULL. */
void *kheap_realloc(kheap_t *h, void *p, size_t n);

/* n bytes at a multiple of align (a power of two up to KHEAP_MAX_ALLOC, else reported
 * KHEAP_E_INVAL and NULL); freed with kheap_free. Align up to 64 with n up to KHEAP_SLAB_MAX
 * (rounded up to align) is a slab object (release build); else it needs a free block of about
 * n + align. O(1). */
void *kheap_alloc_aligned(kheap_t *h, size_t align, size_t n);

/* Free p (NULL: nothing). With a trim hook, a merge that leaves a large enough free span at the
 * end of a region offers its pages to the hook (see kheap_trim_fn): O(regions) + the hook's
 * time then. Misuse is reported and ignored, the heap stays consistent: a pointer
 * in no region of h (another heap's block, say) is KHEAP_E_BAD_PTR; a free block
 * KHEAP_E_DOUBLE_FREE; an interior pointer or overwritten header KHEAP_E_BAD_HEADER; a corrupt
 * neighbour KHEAP_E_BAD_HEADER or KHEAP_E_FREELIST (the block is then kept, not freed). A
 * pointer outside [lowest region, highest region end) is rejected without reading memory;
 * otherwise the 8 bytes before it are read (so a gap between two regions must be readable
 * memory). A corrupt neighbour's free block may be left on no list: later frees next to it are
 * refused the same way until kheap_verify gives it back. O(1); a report is O(regions). */
void kheap_free(kheap_t *h, void *p);

/* Usable bytes of the live block p (>= what was asked; exactly that in a KHEAP_DEBUG build).
 * 0 for NULL; a bad p is reported as by kheap_free and gives 0. O(1). */
size_t kheap_usable(kheap_t *h, const void *p);

/* Walk every region, block and list and check every invariant (sizes, check bits, links,
 * bitmaps, counters; poison and canaries in a KHEAP_DEBUG build). 0 or a negative KHEAP_E_*
 * code (KHEAP_E_INVAL for a bad h). Blocks a corrupt list left on no list (see kheap_free) are
 * a known state, not an error: if everything else is sound, they are given back (every free
 * list rebuilt, the front cache merged in) and the heap is checked again. O(heap + regions^2). */
int kheap_verify(kheap_t *h);

/* Fill *s (zeros for a bad h). The front cache is given back first (which may report a corrupt
 * cache list); slabs and cached objects stay where they are (slab_bytes, cached_bytes), so
 * largest_free is what one block allocation gets without the slab tier's reclaim. O(ncpu):
 * the flush is bounded, largest_free is one checked list head, the cached bytes are summed over
 * every slot and the depot. */
void kheap_stats(kheap_t *h, struct kheap_stats *s);

/* Replace every hook of h with *hooks (NULL: none at all). KHEAP_E_INVAL, changing nothing,
 * for a bad h, a lock without unlock (or the reverse), or a cpu hook with ncpu outside
 * 1..KHEAP_MAX_CPUS; KHEAP_E_TOO_SMALL, changing nothing, when the heap has no room for the
 * ncpu slots and the depot (about ncpu * 8.2 KiB + 32 KiB). Every old slot and the depot are
 * emptied first. Takes no lock: change hooks only while nobody else can be inside the heap.
 * O(ncpu * 512 + slabs). */
int kheap_set_hooks(kheap_t *h, const struct kheap_hooks *hooks);

/* Copy h's hooks into *hooks (0, or KHEAP_E_INVAL for a bad h). */
int kheap_get_hooks(kheap_t *h, struct kheap_hooks *hooks);

/* Give back what the caches hold: the calling CPU's per-CPU stacks and the depot's (to their
 * slabs), every spare empty slab (to the TLSF tier), every front-cache block (to the free
 * lists, merged). Every other CPU slot is asked to empty its stacks at its next small
 * allocation or free (a slot is only ever touched by its own CPU). Afterwards a heap with
 * nothing allocated whose other CPUs have emptied theirs is one free block per region (and the
 * slots' block). With a trim hook, the free block that then ends the heap's highest region is
 * offered to it as a free's would be. O(1): at most KH_SLAB_CLASSES * (64 + KH_DEPOT_MAX * 32)
 * objects, KH_SLAB_CLASSES slabs and KH_QUICK_CLASSES * KHEAP_QUICK_DEPTH blocks; + O(regions)
 * and the hook with a trim hook. */
void kheap_flush_in(kheap_t *h);

/* The heap behind kmalloc & co.; NULL before kheap_init (or after a failed one). */
kheap_t *kheap_default(void);

/* ---- the default heap ------------------------------------------------------------------------
 * The same calls for the default heap. kheap_init makes it (a heap like any other, control
 * block inside the region) and keeps the hooks it had, so hooks may be set before kheap_init.
 * kheap_init replaces the heap the other calls use: no other call may run meanwhile.
 * Before kheap_init: allocations return NULL, kfree reports KHEAP_E_BAD_PTR, kheap_check and
 * kheap_add_region return KHEAP_E_NOT_INIT. */

/* (Re)make the default heap over [start, start + size); earlier regions and counters are
 * forgotten, the hooks kept. 0, KHEAP_E_INVAL (NULL, wraps) or KHEAP_E_TOO_SMALL (below
 * KHEAP_CREATE_MIN); on failure there is no default heap. O(1). */
int    kheap_init(void *start, size_t size);
int    kheap_add_region(void *start, size_t size);     /* kheap_extend; KHEAP_E_NOT_INIT */
void  *kmalloc(size_t n);                              /* kheap_alloc */
void  *kcalloc(size_t n, size_t size);                 /* kheap_calloc */
void  *krealloc(void *p, size_t n);                    /* kheap_realloc */
void  *kmalloc_aligned(size_t align, size_t n);        /* kheap_alloc_aligned */
void   kfree(void *p);                                 /* kheap_free */
size_t ksize(const void *p);                           /* kheap_usable */
int    kheap_check(void);                              /* kheap_verify; KHEAP_E_NOT_INIT */
void   kheap_get_stats(struct kheap_stats *s);         /* kheap_stats */
void   kheap_flush(void);                              /* kheap_flush_in */
/* The hooks one at a time. kheap_set_error_handler returns the previous handler (NULL: the
 * default, count only); kheap_set_lock returns 0, or KHEAP_E_INVAL for half a pair (nothing
 * changes); kheap_set_grow: NULL removes the hook. None of them takes the lock. */
kheap_error_fn kheap_set_error_handler(kheap_error_fn fn);
int    kheap_set_lock(void (*lock)(void *), void (*unlock)(void *), void *lock_ctx);
void   kheap_set_grow(kheap_grow_fn fn);

/* The original first-fit allocator's names: the same routines (aliases, same addresses). */
void *my_malloc(size_t n);
void *my_calloc(size_t n, size_t size);
void *my_realloc(void *p, size_t n);
void  my_free(void *p);

/* ---- link-time build check (see "build options") ------------------------------------------- */
#define KHEAP_CAT4_(a, b, c, d) a##b##c##d
#define KHEAP_CAT4(a, b, c, d)  KHEAP_CAT4_(a, b, c, d)
#define KHEAP_BUILD_SYMBOL KHEAP_CAT4(kheap_build_debug, KHEAP_BUILD_DEBUG, _quick, KHEAP_QUICK_DEPTH)
extern const char KHEAP_BUILD_SYMBOL;
static const char *const kheap_build_check_ __attribute__((used, unused)) = &KHEAP_BUILD_SYMBOL;

#ifdef __cplusplus
}
#endif

#endif /* KHEAP_H */
