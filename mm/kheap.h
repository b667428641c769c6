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
 * Build option KHEAP_DEBUG (make KHEAP_DEBUG=1; define it the same way, 0/absent or 1, for the
 * library and for any code that depends on the block layout). The API does not change.
 * - Poison: freed memory is filled with 0x6B and verified when it is handed out again (kmalloc,
 *   kcalloc, kmalloc_aligned, krealloc growing in place): a write after free is reported as
 *   KHEAP_E_USE_AFTER_FREE with the payload address of the free block it hit, the memory is
 *   poisoned again and the allocation goes on. The first 16 payload bytes of a free block are
 *   its (encoded) list links, not poison: a write there is found when the block heads its list
 *   and is reported as KHEAP_E_USE_AFTER_FREE too; that block is then leaked (see "Corrupt free
 *   lists") and the allocation is served from another block. A pointer whose header word is
 *   poison (a stale pointer into freed, merged memory) is reported as KHEAP_E_DOUBLE_FREE.
 * - Canary: the bytes between the requested size and the trailer (at least one) hold 0xA5 and
 *   are verified by kfree and krealloc: an overflow past the requested size, even by one byte,
 *   is reported as KHEAP_E_OVERFLOW with the block's pointer (the block is still freed or
 *   resized: its headers are intact). ksize() is the requested size.
 * - Allocation site: a 16-byte trailer at the end of each used block holds the requested size
 *   and the return address of the allocating call (kheap_walk, kheap_inspect,
 *   kheap_leak_report show it; krealloc records its own caller).
 * Cost: a used block is max(32, round_up(n + KHEAP_HEADER_SIZE + KHEAP_DEBUG_EXTRA, 16)) bytes
 * instead of max(32, round_up(n + 8, 16)): 16 bytes more, 32 when n = 8 (mod 16), none for
 * n < 8. Time: kfree fills the block (O(block size)), allocation verifies the poison of the
 * bytes it hands out (O(size)), kfree/krealloc verify the canary (1..16 bytes); kheap_init and
 * growth poison the new memory (O(region)); kheap_check also reads every free byte. The
 * constant-time bounds of this header hold for the release build (KHEAP_DEBUG off).
 * ------------------------------------------------------------------------------------------- */
/* Extra metadata bytes per used block in a KHEAP_DEBUG build: 16-byte trailer + 1 canary byte. */
#define KHEAP_DEBUG_EXTRA      17

/* ---------------------------------------------------------------------------------------------
 * Front cache ("quick lists"). kfree of a block of at most KHEAP_QUICK_MAX bytes (block size,
 * header included: kmalloc(n) for n <= KHEAP_QUICK_MAX - 8, or - 25 in a KHEAP_DEBUG build) does
 * not merge it back into the free lists: after the usual checks it goes on a LIFO list of its
 * exact size (one list per 16-byte size from KHEAP_MIN_BLOCK to KHEAP_QUICK_MAX) while that list
 * holds fewer than KHEAP_QUICK_DEPTH blocks, and the next kmalloc of that size takes it back in a
 * few instructions (no search, split or merge). A cached block is free to its user (kfree, ksize,
 * krealloc of it: KHEAP_E_DOUBLE_FREE; kheap_walk and kheap_inspect show it as free; the stats
 * count it in free_bytes) but used to its neighbours: it is not merged while cached.
 *
 * Trade-off: speed against memory held in the caches, where only its own size class can use it.
 * At most KHEAP_QUICK_DEPTH blocks of each size 32, 48, ..., KHEAP_QUICK_MAX: with the defaults
 * (512, 64) 31 lists of up to 64 blocks, bounded by 31 * 64 * 512 = 1015808 bytes (exactly
 * 64 * (32 + 48 + ... + 512) = 539648 bytes, 527 KiB; depth 16 would hold at most 132 KiB, 32
 * 264 KiB). None of it is lost: when no free block fits a request, kmalloc (and kmalloc_aligned,
 * a moving krealloc) first returns every cached block to the free lists, merging it with free
 * neighbours, and retries once, before the growth hook and before returning NULL; kheap_flush()
 * does the same on demand. Measured (bench, host, medians): depth 16/32/64 gave small churn
 * 0.78/0.85/0.96x glibc's throughput, mixed churn 1.40/1.46/1.46x, kernel trace 1.14/1.17/1.26x;
 * a KHEAP_QUICK_MAX of 256 left half of small churn uncached (0.51x), 1024 gained nothing there.
 *
 * Time bound: a kmalloc that takes a cached block, and every kfree, is O(1). The flush that
 * precedes a failure (or growth) handles at most KH_QUICK_CLASSES * KHEAP_QUICK_DEPTH blocks
 * (31 * 64 = 1984 with the defaults; about 30 us on the bench machine), each in O(1): a
 * constant, not a function of the heap's size or of its number of blocks. kmalloc's worst case
 * is therefore O(1) with a larger constant.
 *
 * KHEAP_QUICK_DEPTH is a build option (make KHEAP_QUICK_DEPTH=N, or -DKHEAP_QUICK_DEPTH=N for the
 * library and everything that includes this header): 0 assembles the cache out (pure TLSF: every
 * kfree merges at once). KHEAP_QUICK_MAX is a multiple of 16, >= KHEAP_MIN_BLOCK.
 * ------------------------------------------------------------------------------------------- */
#define KHEAP_QUICK_MAX        512
#define KHEAP_QUICK_DEPTH_DEFAULT 64
#ifndef KHEAP_QUICK_DEPTH
#  define KHEAP_QUICK_DEPTH    KHEAP_QUICK_DEPTH_DEFAULT
#endif

/* ---------------------------------------------------------------------------------------------
 * Error codes: returned (negated) by kheap_init/kheap_add_region/kheap_check and passed to the
 * error handler. 0 is success. Keep kheap_strerror() (mm/kheap_check.c) in step.
 * ------------------------------------------------------------------------------------------- */
#define KHEAP_OK               0
#define KHEAP_E_INVAL         (-1)   /* bad argument: NULL region, region wraps, bad alignment */
#define KHEAP_E_TOO_SMALL     (-2)   /* region cannot hold one minimum block plus sentinels */
#define KHEAP_E_OVERLAP       (-3)   /* region overlaps a region the heap already has */
#define KHEAP_E_BAD_PTR       (-4)   /* pointer outside every region, or misaligned */
#define KHEAP_E_BAD_HEADER    (-5)   /* no live block there: interior pointer, overwritten header */
#define KHEAP_E_DOUBLE_FREE   (-6)   /* block is already free */
#define KHEAP_E_FREELIST      (-7)   /* a free-list or front-cache link is bad: list corrupted */
#define KHEAP_E_CORRUPT       (-8)   /* kheap_check: a block or region invariant does not hold */
#define KHEAP_E_STATS         (-9)   /* kheap_check: counters disagree with the heap walk */
#define KHEAP_E_NOT_INIT      (-10)  /* kheap_check/kheap_add_region before kheap_init */
#define KHEAP_E_USE_AFTER_FREE (-11) /* KHEAP_DEBUG: a free block's poison was overwritten */
#define KHEAP_E_OVERFLOW      (-12)  /* KHEAP_DEBUG: canary after the requested size overwritten */
#define KHEAP_E_SIZE          (-13)  /* absurd size: > KHEAP_MAX_ALLOC, or n * size overflows */

/* ---------------------------------------------------------------------------------------------
 * Public API. Unless stated otherwise: global heap, System V AMD64 ABI, every function runs
 * between the lock hooks (kheap_set_lock) and is therefore as thread/IRQ-safe as those hooks.
 * ------------------------------------------------------------------------------------------- */

struct kheap_stats {
    size_t   total_bytes;    /* bytes in blocks, used + free (descriptors, sentinels excluded) */
    size_t   used_bytes;     /* bytes in allocated blocks, headers included (not the cached) */
    size_t   free_bytes;     /* bytes in free blocks, front-cache blocks included */
    size_t   largest_free;   /* size of the largest block on the free lists (its usable part is
                                8 bytes less); cached blocks are not looked at */
    size_t   peak_used;      /* highest used_bytes since kheap_init */
    uint64_t allocs;         /* successful kmalloc/kcalloc/kmalloc_aligned/moving krealloc */
    uint64_t frees;          /* successful kfree (and krealloc(p, 0), and the free of a move),
                                cached or merged */
    uint64_t failed_allocs;  /* allocation calls that returned NULL */
    uint64_t errors;         /* misuse reports (calls of the error handler) */
    unsigned regions;        /* regions under management */
    unsigned fragmentation_ppm; /* (1 - largest_free / free_bytes) * 10^6; 0 if none free */
};

/* Called on misuse with a KHEAP_E_* code, the offending pointer and the return address of the
 * kheap call that detected it (the caller of kfree, not kfree itself; also through the my_*
 * names). The pointer is the one passed to kfree/krealloc/ksize; for a corrupt free list or
 * neighbour found by kmalloc, the payload address of the bad block; for an absurd size or
 * alignment (KHEAP_E_SIZE, KHEAP_E_INVAL) NULL (krealloc: its p). Running out of memory is not
 * misuse and is not reported. Runs with the heap lock held: it must not call back into kheap
 * (kheap_inspect excepted). It may return; the call then fails or is ignored as documented. */
typedef void (*kheap_error_fn)(int error, void *ptr, void *caller);

/* (Re)initialise the heap over [start, start+size). Forgets all earlier regions and resets the
 * counters; the error handler and lock hooks are kept. start is aligned up and the end down to
 * KHEAP_ALIGN; the region must then hold KHEAP_REGION_MIN bytes (a 24-byte descriptor, one
 * minimum block, an 8-byte end sentinel). Returns 0, or KHEAP_E_INVAL (NULL start, start+size
 * wraps, or ends exactly at 2^64: ends are exclusive 64-bit addresses, so an end of 2^64 cannot
 * be represented; pass 16 bytes less) or KHEAP_E_TOO_SMALL; on failure the heap is empty
 * (kmalloc returns NULL, kheap_add_region returns KHEAP_E_NOT_INIT). The front cache starts
 * empty. O(1). */
int kheap_init(void *start, size_t size);

/* Add a disjoint region (aligned inward like kheap_init's; regions may lie in any order and
 * with gaps between them). Returns 0, KHEAP_E_NOT_INIT, KHEAP_E_INVAL, KHEAP_E_TOO_SMALL or
 * KHEAP_E_OVERLAP. O(number of regions) for the overlap test. */
int kheap_add_region(void *start, size_t size);

/* At least n usable bytes, KHEAP_ALIGN-aligned, or NULL if no block fits or n is absurd (larger
 * than the heap, or > KHEAP_MAX_ALLOC: also reported, KHEAP_E_SIZE). kmalloc(0) returns a unique
 * freeable pointer. A block of at most KHEAP_QUICK_MAX bytes comes from its front-cache list when
 * that is not empty (the most recently freed block of that size). Otherwise good fit: the request
 * is rounded up to its size class, so every block of the first non-empty class found fits; if
 * none, the head of the request's own class is tried; if none, every cached block is returned to
 * the free lists (bounded, see "Front cache") and the search is retried once. O(1). */
void *kmalloc(size_t n);

/* n * size zeroed bytes; NULL if n * size overflows (reported, KHEAP_E_SIZE) or kmalloc would
 * fail. O(1) + zeroing. */
void *kcalloc(size_t n, size_t size);

/* p == NULL: kmalloc(n). n == 0: kfree(p), returns NULL. Otherwise resizes, in place when the
 * block shrinks or its next neighbour is free and large enough (O(1); a cached neighbour is not
 * free: if no block fits the move, the cache is flushed and growing in place is tried once more),
 * else moves keeping min(old, n) bytes. Returns NULL on failure (or a bad p or corrupt
 * neighbour, which is reported) and leaves p valid and unchanged: before a move, both neighbours
 * the free of the old block would merge with are checked, so a corrupt one fails the call before
 * anything is allocated. In a KHEAP_DEBUG build, a move after an overflow into the canary or
 * trailer (reported as KHEAP_E_OVERFLOW) keeps everything the old block could hold before its
 * trailer, since the recorded size is no longer trusted. */
void *krealloc(void *p, size_t n);

/* NULL is a no-op. A pointer kheap did not hand out, a double free or an overwritten header is
 * reported to the error handler and otherwise ignored; the heap stays consistent. O(1).
 * Checks, in order: a misaligned p or one outside [lowest region, highest region end) is
 * KHEAP_E_BAD_PTR without reading memory; otherwise the 8 bytes before p are read (so a pointer
 * into a gap between two regions must be readable memory) and must be a header with valid check
 * bits, not free nor cached (else KHEAP_E_DOUBLE_FREE), whose block stays inside the heap (else
 * KHEAP_E_BAD_HEADER). A corrupt neighbour header or free list link is reported
 * (KHEAP_E_BAD_HEADER, KHEAP_E_FREELIST) and the block is then leaked, not freed. Then a block of
 * at most KHEAP_QUICK_MAX bytes goes to the front cache if its list has room, else it is merged
 * with its free neighbours into the free lists. */
void kfree(void *p);

/* n bytes aligned to align (a power of two, any size up to the heap), freed with kfree. NULL if
 * align is not a power of two or > KHEAP_MAX_ALLOC (reported, KHEAP_E_INVAL), n is absurd
 * (reported, KHEAP_E_SIZE) or no block fits. Needs a free block of about n + align bytes
 * (the leading gap goes back to the free lists); align <= KHEAP_ALIGN is kmalloc, a larger one
 * never takes a cached block (but flushes the cache before failing, like kmalloc). O(1). */
void *kmalloc_aligned(size_t align, size_t n);

/* Usable bytes of the live block at p (>= what was asked; exactly what was asked in a
 * KHEAP_DEBUG build, where the bytes after it are the canary). 0 for NULL; a bad p is reported
 * and gives 0. O(1). */
size_t ksize(const void *p);

/* ---------------------------------------------------------------------------------------------
 * Corrupt free lists. Free-list links are stored encoded with a key derived from the per-heap
 * secret (mm/kheap_layout.h), so an overwritten link (zeroed, a plain pointer, a flipped bit)
 * never decodes to a plausible one, and every link is checked (a header address inside the heap
 * whose own link points back) before it is followed. When kmalloc, kcalloc, kmalloc_aligned or a
 * moving krealloc finds the head of a list corrupt, it reports it once (KHEAP_E_FREELIST with the
 * head's payload address; KHEAP_E_USE_AFTER_FREE in a KHEAP_DEBUG build when the head is a valid
 * free block whose own links were overwritten) and detaches that list: its head is forgotten, and
 * the blocks that were on it are leaked, never followed nor handed out again. Their bytes stay
 * in free_bytes (they are free blocks) but in no list, so largest_free does not count them, and
 * kheap_check accepts free blocks of a detached class that are on no list (it still checks the
 * lists such a class gets later). A kfree or krealloc whose neighbour is such a block reports
 * KHEAP_E_FREELIST and leaks its own block, as for any corrupt neighbour. The allocation then
 * goes on with the other lists and succeeds if another block fits (each detach is O(1) and a
 * call detaches each list at most once: the bound stays constant). Detached classes are
 * remembered until kheap_init; later frees of that class start a new list, which works as any.
 * A front-cache list whose block or link fails its checks is dropped the same way (reported
 * once, KHEAP_E_USE_AFTER_FREE in a KHEAP_DEBUG build when a valid cached block's own link was
 * overwritten): its blocks stay cached for good (free_bytes counts them, kheap_check accepts
 * them by their number and bytes), and kmalloc goes on with the free lists.
 * ------------------------------------------------------------------------------------------- */

/* Walk every region block by block and every free list, verify every invariant (sizes,
 * alignment, check bits, physical links, no adjacent free blocks, each free block on exactly the
 * list its size maps to, bitmaps, counters; each cached block on exactly the front-cache list of
 * its size, once, every list no longer than KHEAP_QUICK_DEPTH and as long as its count, every
 * link decoding to a cached block of that size; in a KHEAP_DEBUG build also every free and cached
 * block's poison and every live block's canary, reported last). 0, or a negative KHEAP_E_* code.
 * Blocks leaked by a detached free list or a dropped cache list (see "Corrupt free lists") are a
 * known state, not an error: they are counted, and check passes if nothing else is wrong.
 * O(heap). */
int kheap_check(void);

/* Fill *s. O(length of the highest non-empty free list) for largest_free, O(1) otherwise.
 * Cached blocks count as free (free_bytes, fragmentation_ppm) but not in largest_free. */
void kheap_get_stats(struct kheap_stats *s);

/* Return every front-cache block to the free lists, merged with its free neighbours, as kmalloc
 * does before it fails: afterwards largest_free is what the heap can give in one block, and a
 * heap with nothing allocated is one free block per region again. For tests, for shutdown, and
 * for whoever wants the whole heap back. A cache link that fails its checks is reported
 * (KHEAP_E_FREELIST) and that list is dropped (its blocks leaked), as in kmalloc. O(1): at most
 * KH_QUICK_CLASSES * KHEAP_QUICK_DEPTH blocks. */
void kheap_flush(void);

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

/* ---------------------------------------------------------------------------------------------
 * Diagnostics and hardening (issue 4)
 * ------------------------------------------------------------------------------------------- */

/* One block as kheap_walk and kheap_inspect see it. */
struct kheap_block_info {
    void    *ptr;        /* payload address (what kmalloc returned, or would return if free) */
    size_t   size;       /* block size in bytes, header included */
    size_t   usable;     /* usable payload bytes: ksize() of a live block; size - 8 if free */
    size_t   requested;  /* bytes asked for (KHEAP_DEBUG builds), else == usable; 0 if free */
    void    *site;       /* return address of the allocating call (KHEAP_DEBUG builds), else NULL */
    unsigned region;     /* index of the block's region in address order, 0 = lowest */
    int      used;       /* 1 allocated, 0 free (front-cache blocks included) */
};

/* Callback of kheap_walk: return 0 to go on, non-zero to stop the walk with that value. Runs
 * with the heap lock held: it must not call back into kheap (kheap_inspect excepted). */
typedef int (*kheap_walk_fn)(const struct kheap_block_info *b, void *ctx);

/* Visit every block of every region, regions in address order, blocks in address order
 * (region sentinels are not blocks; front-cache blocks are shown as free, used = 0). Returns 0,
 * the callback's non-zero value, or KHEAP_E_CORRUPT when a header on the way is invalid (the
 * walk stops there), KHEAP_E_NOT_INIT. O(heap + regions^2). */
int kheap_walk(kheap_walk_fn fn, void *ctx);

/* Describe the block whose payload is p (live or free) without taking the lock: safe from the
 * error handler (the heap must not change meanwhile: under the lock, or single-threaded).
 * Returns 1 and fills *out, or 0 if p is not the payload address of a block found by walking
 * p's region from its start (an interior or stale pointer, a bad header on the way). Never
 * writes to the heap; reads only inside regions. O(blocks of p's region + regions). */
int kheap_inspect(const void *p, struct kheap_block_info *out);

/* Live blocks (not free, not cached) grouped by allocation site, for leak reports. fn is called
 * once per site in order of each site's lowest block, with the number of live blocks and their
 * bytes (block sizes); without KHEAP_DEBUG every block's site is NULL (one group). At most
 * KHEAP_LEAK_SITES sites are told apart; blocks of further sites are counted under the last one
 * reported with site == KHEAP_LEAK_OTHER. Lock held while fn runs: it must not call kheap.
 * Returns the number of groups reported, or KHEAP_E_CORRUPT / KHEAP_E_NOT_INIT.
 * O(heap * KHEAP_LEAK_SITES). */
#define KHEAP_LEAK_SITES       32
#define KHEAP_LEAK_OTHER       ((void *)-1)
typedef void (*kheap_leak_fn)(void *site, size_t blocks, size_t bytes, void *ctx);
int kheap_leak_report(kheap_leak_fn fn, void *ctx);

/* Replace the per-heap secret behind the header check bits and re-stamp every block header and
 * region sentinel, used, free and cached, and re-encode every link, front-cache and free-list
 * (their key derives from the secret). First walks the whole heap and every cache list with the
 * old secret: if any header or link on the way is invalid it changes nothing and returns
 * KHEAP_E_CORRUPT (re-stamping would hide the corruption); else 0. Stale headers left inside
 * merged free blocks (release build; the debug build poisons them) are not re-stamped: a later
 * kfree of such a pointer is then KHEAP_E_BAD_HEADER instead of KHEAP_E_DOUBLE_FREE.
 * kheap_init picks a fresh secret itself. O(heap). */
int kheap_set_secret(uint64_t secret);

/* Fault injection. kheap_fail_after(n): the next n allocation calls behave normally, every
 * later one returns NULL (counted in failed_allocs) until kheap_fail_after(-1).
 * kheap_fail_rate(ppm, seed): each allocation call fails with probability ppm / 10^6, from a
 * deterministic PRNG seeded with seed; ppm 0 turns it off. "Allocation call": kmalloc, kcalloc,
 * kmalloc_aligned, and krealloc whenever it would need more memory than the block has (also
 * krealloc(NULL, n)); a failing call changes nothing but failed_allocs. Both may be on: either
 * fails the call. kheap_init turns both off. O(1). */
void kheap_fail_after(long n);
void kheap_fail_rate(uint32_t per_million, uint64_t seed);

/* Growth hook: called with the lock held when no free block fits a request whose block size
 * (header included; for kmalloc_aligned plus align + 16) is `need`. It may hand back fresh
 * memory by setting *start and returning its size (0: none). Memory that starts exactly where
 * an existing region ends extends that region (its end sentinel becomes part of a free block,
 * merged with the region's last block if that is free); any other memory is added like
 * kheap_add_region (it then needs need + KHEAP_REGION_MIN bytes to satisfy the request). Then
 * the allocation is retried once; if the memory is refused (overlap, too small) or still not
 * enough, the call returns NULL. The hook must not call kheap; it may map pages, take other
 * locks its caller allows, and must return memory that stays valid while the heap lives.
 * NULL removes the hook; kheap_init keeps it.
 * Time: the growth path is outside the constant-time bound of kmalloc & co. It costs the hook's
 * own time plus O(regions): the search for the region the new memory extends and the overlap
 * test against every region. The O(1) bound holds for every call that needs no growth (a block
 * fits, or no hook is installed). */
typedef size_t (*kheap_grow_fn)(size_t need, void **start);
void kheap_set_grow(kheap_grow_fn fn);

/* The original first-fit allocator's names: the same routines (aliases, same addresses). */
void *my_malloc(size_t n);
void *my_calloc(size_t n, size_t size);
void *my_realloc(void *p, size_t n);
void  my_free(void *p);

#endif /* KHEAP_H */
