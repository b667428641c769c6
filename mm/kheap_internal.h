/*
 * kheap_internal.h -- block helpers shared by kheap's C files (kheap_check.c, kheap_diag.c):
 * the C reading of the header word and its check bits, of a slab and its objects, and a
 * block-by-block region walker, each for the heap c. The NASM side has its own reading
 * (kheap_block.inc, kheap_slab.inc); both follow kheap_layout.h.
 */
#ifndef KHEAP_INTERNAL_H
#define KHEAP_INTERNAL_H

#include "kheap_layout.h"

#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
#define KH_DEBUG 1
#else
#define KH_DEBUG 0
#endif

#define KH_HIDDEN __attribute__((visibility("hidden")))

/* The heap behind kmalloc & co. (mm/kheap.asm): a heap, or the empty control block. */
extern struct kh_ctl *kheap_default_heap KH_HIDDEN;

/* Is h a heap of kheap_create (its magic)? */
static inline int kh_is_heap(const void *h)
{
    return h && ((const struct kh_ctl *)h)->magic == ((uintptr_t)h ^ KH_HEAP_MAGIC);
}

static inline uint64_t kh_word(uintptr_t h) { return *(const volatile uint64_t *)h; }

/* The check bits a header word must carry at address h (see kheap_layout.h). */
static inline uint64_t kh_hash(const struct kh_ctl *c, uintptr_t h, uint64_t word)
{
    uint64_t x = (uint64_t)h * KH_HASH_KA;
    x ^= word & KH_LOW_MASK;
    x ^= c->secret;
    x *= KH_HASH_K2;
    return (x >> KH_CHECK_SHIFT) << KH_CHECK_SHIFT;
}

/* Does h hold a header word with the right check bits and no reserved flags? */
static inline int kh_valid(const struct kh_ctl *c, uintptr_t h)
{
    uint64_t w = kh_word(h);
    return (w & ~(uint64_t)KH_LOW_MASK) == kh_hash(c, h, w) && (w & KH_F_RESERVED) == 0;
}

/* Is header word w (check bits stripped or not) free to its user: free or cached? */
static inline int kh_is_unused(uint64_t w) { return (w & (KH_F_FREE | KH_F_QUICK)) != 0; }

/* A key derived from the secret: (secret ^ k) * K1 folded (low ^ high half of the 128-bit
 * product), so that a leaked key does not give the secret away. */
static inline uint64_t kh_key_fold(uint64_t secret, uint64_t k)
{
    unsigned __int128 m = (unsigned __int128)(secret ^ k) * KH_HASH_K1;
    return (uint64_t)m ^ (uint64_t)(m >> 64);
}

/* The link key for a secret. kheap.asm's heap_create_at computes the same. */
static inline uint64_t kh_link_key(uint64_t secret) { return kh_key_fold(secret, KH_QUICK_KEY_K); }

/* The slab key for a secret (the same fold, its own constant). */
static inline uint64_t kh_slab_key(uint64_t secret) { return kh_key_fold(secret, KH_SLAB_KEY_K); }

/* Block h's link at `field` decoded: a block's H or 0. Free blocks: KH_FREE_NEXT, KH_FREE_PREV;
 * cached blocks: KH_QUICK_LINK (kheap_layout.h: one key for both kinds of link). */
static inline uintptr_t kh_link(const struct kh_ctl *c, uintptr_t h, unsigned field)
{
    return *(const volatile uint64_t *)(h + field) ^ c->link_key ^ h;
}

/* The flat list index fl * KH_SL_COUNT + sl of a free block of `size` bytes (TLSF mapping). */
static inline unsigned kh_class_of(uint64_t size)
{
    if (size < KH_SMALL_LIMIT)
        return (unsigned)(size / KHEAP_ALIGN);
    unsigned msb = 63 - (unsigned)__builtin_clzll(size);
    return (msb - KHEAP_FL_SHIFT + 1) * KH_SL_COUNT +
           (unsigned)((size >> (msb - KHEAP_SL_LOG2)) & (KH_SL_COUNT - 1));
}

/* Was class `idx` (flat index) marked detached: may it hold free blocks on no list? */
static inline int kh_detached(const struct kh_ctl *c, unsigned idx)
{
    return (c->detached[idx / KH_SL_COUNT] >> (idx % KH_SL_COUNT)) & 1;
}

/* Could h be a block header: inside the heap's bounds and 8 mod 16? */
static inline int kh_hdr_addr(const struct kh_ctl *c, uintptr_t h)
{
    return h >= c->min_addr && h < c->max_addr && h % KHEAP_ALIGN == 8;
}

/* ---- the slab tier (kheap_layout.h, "The slab tier") ---------------------------------------- */

/* The class table (rodata of mm/kheap_slab.inc): object size, first offset, objects per slab. */
extern const struct kh_class kh_slab_class[KH_SLAB_CLASSES] KH_HIDDEN;

/* The first word slab s of class cls carries under the heap's slab key. */
static inline uint64_t kh_slab_check(const struct kh_ctl *c, uintptr_t s, unsigned cls)
{
    return ((uint64_t)(s ^ cls) * KH_HASH_K1) ^ c->slab_key;
}

/* Is the block whose payload is s (its header at s - 8 already known to be a block's) a slab?
 * Used, big enough and aligned to KH_SLAB_SIZE first: only then is s's first word read, so a
 * smaller block is never read past its end; then a class that exists and the keyed check. A
 * block that passes may still be too big (kheap_check reports that): every read of a slab
 * stays below s + KH_SLAB_BLOCK - 8, which the size test keeps inside the block. */
static inline int kh_is_slab(const struct kh_ctl *c, uintptr_t s)
{
    uint64_t word = kh_word(s - KHEAP_HEADER_SIZE);
    if (s % KH_SLAB_SIZE || kh_is_unused(word) || (word & KH_SIZE_MASK) < KH_SLAB_BLOCK)
        return 0;
    const struct kh_slab *sl = (const struct kh_slab *)s;
    return sl->cls < KH_SLAB_CLASSES && sl->check == kh_slab_check(c, s, sl->cls);
}

/* Is s, an address from somewhere else than the block walk (a partial list, a per-CPU cache),
 * the payload of a slab of this heap? Its header and the whole slab block must lie inside the
 * heap's bounds before anything is read; then its header's check bits and kh_is_slab. */
static inline int kh_slab_at(const struct kh_ctl *c, uintptr_t s)
{
    uintptr_t h = s - KHEAP_HEADER_SIZE;
    return s % KH_SLAB_SIZE == 0 && kh_hdr_addr(c, h) && c->max_addr - h >= KH_SLAB_BLOCK &&
           kh_valid(c, h) && kh_is_slab(c, s);
}

/* The index of object p in slab s of class k, or -1 if p is not the start of one of its
 * objects (an interior pointer, the slab header, past the last object). */
static inline long kh_obj_index(const struct kh_class *k, uintptr_t s, uintptr_t p)
{
    if (p < s + k->first)
        return -1;
    uint64_t off = p - s - k->first;
    if (off % k->size || off / k->size >= k->cap)
        return -1;
    return (long)(off / k->size);
}

/* Object i of slab s of class k. */
static inline uintptr_t kh_obj(const struct kh_class *k, uintptr_t s, uint64_t i)
{
    return s + k->first + i * k->size;
}

/* The granule (state byte index) where object i of class k starts. */
static inline unsigned kh_obj_granule(const struct kh_class *k, uint64_t i)
{
    return (unsigned)((k->first + i * k->size) / KHEAP_ALIGN);
}

/* The state of object i of slab sl (class k). */
static inline unsigned kh_obj_state(const struct kh_slab *sl, const struct kh_class *k, uint64_t i)
{
    return sl->state[kh_obj_granule(k, i)];
}

/* Is slab sl on its class's partial list: is its generation the class's current one? (The
 * slab's is 16 bits wide: the class's compared modulo 2^16.) */
static inline int kh_slab_listed(const struct kh_ctl *c, const struct kh_slab *sl)
{
    return sl->gen == (uint16_t)c->gen[sl->cls];
}

/* ---- regions ------------------------------------------------------------------------------- */

static inline uintptr_t kh_first(const struct kh_region *r) { return r->start + KH_RGN_SIZE; }
static inline uintptr_t kh_sentinel(const struct kh_region *r) { return r->end - KH_SENTINEL_SIZE; }

/* Called for each block of a region: h, its header word without check bits, and ctx; a
 * non-zero result stops the walk with that value. */
typedef int (*kh_block_fn)(uintptr_t h, uint64_t word, void *ctx);

/* Walk region r block by block up to its sentinel, calling fn (may be NULL) for each block.
 * 0 when the walk reached a valid sentinel, fn's non-zero value, or KHEAP_E_CORRUPT at the
 * first header that is invalid or whose size leaves the region. Reads only inside r. */
static inline int kh_region_walk(const struct kh_ctl *c, const struct kh_region *r,
                                 kh_block_fn fn, void *ctx)
{
    uintptr_t h = kh_first(r), sentinel = kh_sentinel(r);
    for (;;) {
        if (h > sentinel || !kh_valid(c, h))
            return KHEAP_E_CORRUPT;
        uint64_t word = kh_word(h) & KH_LOW_MASK, size = word & KH_SIZE_MASK;
        if (h == sentinel)
            return size == 0 && !(word & KH_F_FREE) ? 0 : KHEAP_E_CORRUPT;
        if (size < KHEAP_MIN_BLOCK || size > sentinel - h)
            return KHEAP_E_CORRUPT;
        int rc = fn ? fn(h, word, ctx) : 0;
        if (rc)
            return rc;
        h += size;
    }
}

#endif /* KHEAP_INTERNAL_H */
