/*
 * kheap_check.c -- kheap's invariant checker and error names, in freestanding C (no libc).
 * A second, independent reading of the layout in kheap_layout.h: kheap_verify (mm/kheap.asm)
 * takes the heap's lock and calls kheap_check_walk, which walks every region block by block,
 * every free list and every front-cache list and compares what it finds with the bitmaps and
 * the counters; if the heap is sound but blocks were left on no list by a corrupt list, it
 * gives them back (kh_readopt). O(heap).
 */
#include "kheap_internal.h"

int kheap_check_walk(struct kh_ctl *c) KH_HIDDEN;

/* ---- block helpers ------------------------------------------------------------------------- */

/* A hash of a block address: the sum over free blocks found by the walk must equal the sum
 * over blocks found on the lists (with equal counts and bytes: the same set, all but surely). */
static uint64_t kh_fingerprint(uintptr_t h)
{
    uint64_t x = (uint64_t)h;
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    return x ^ (x >> 33);
}

/* Smallest and one past the largest size class (fl, sl) holds: written from the class
 * definition, not from the mapping the allocator uses. */
static void kh_class_range(unsigned fl, unsigned sl, uint64_t *lo, uint64_t *hi)
{
    if (fl == 0) {
        *lo = (uint64_t)sl * KHEAP_ALIGN;
        *hi = *lo + KHEAP_ALIGN;
        return;
    }
    unsigned msb = fl + KHEAP_FL_SHIFT - 1;
    uint64_t step = 1ull << (msb - KHEAP_SL_LOG2);
    *lo = (1ull << msb) + sl * step;
    *hi = *lo + step;
}

/* ---- the walk ------------------------------------------------------------------------------ */

struct kh_walk {
    uint64_t total, used, free, nfree, free_fp;
    uint64_t nfree_all;                      /* free blocks, also those of detached lists */
    uint64_t quick, nquick, quick_fp;        /* cached blocks: bytes, count, fingerprints */
    int      debug_err;                      /* first poison/canary finding (debug build) */
};

#if KH_DEBUG
/* Is [a, b) (8-aligned) all poison? */
static int kh_poisoned(uintptr_t a, uintptr_t b)
{
    for (; a < b; a += 8)
        if (*(const uint64_t *)a != KH_POISON_WORD)
            return 0;
    return 1;
}

/* Are the trailer and the canary of used block h of `size` bytes intact? */
static int kh_canary_ok(uintptr_t h, uint64_t size)
{
    uintptr_t t = h + size - KH_TRAILER_SIZE;
    uint64_t n = *(const uint64_t *)(t + KH_TRAILER_REQ);
    if (n > size - KHEAP_HEADER_SIZE - KH_TRAILER_SIZE - KH_CANARY_MIN)
        return 0;
    for (uintptr_t c = h + KHEAP_HEADER_SIZE + n; c < t; c++)
        if (*(const uint8_t *)c != KH_CANARY_BYTE)
            return 0;
    return 1;
}
#endif

/* The debug build's content checks of one block: poison of a free or cached one (word: its
 * header), canary of a used one. */
static void kh_check_content(uintptr_t h, uint64_t size, uint64_t word, struct kh_walk *w)
{
#if KH_DEBUG
    if (w->debug_err)
        return;
    if ((word & KH_F_FREE) && !kh_poisoned(h + KH_FREE_BODY, h + size - KH_FOOTER_SIZE))
        w->debug_err = KHEAP_E_USE_AFTER_FREE;
    if ((word & KH_F_QUICK) && !kh_poisoned(h + KH_QUICK_BODY, h + size))
        w->debug_err = KHEAP_E_USE_AFTER_FREE;
    if (!kh_is_unused(word) && !kh_canary_ok(h, size))
        w->debug_err = KHEAP_E_OVERFLOW;
#else
    (void)h, (void)size, (void)word, (void)w;
#endif
}

/* Walk one region's blocks: sizes, check bits, boundary tags, no two free blocks adjacent. A
 * cached block counts as free in the bytes but is used to its neighbours (PREV_FREE, merging). */
static int kh_walk_region(const struct kh_ctl *c, const struct kh_region *r, struct kh_walk *w)
{
    uintptr_t end = r->end, h = r->start + KH_RGN_SIZE;
    uintptr_t sentinel = end - KH_SENTINEL_SIZE;
    int prev_free = 0;                       /* the first block has nothing free on its left */

    for (;;) {
        if (h > sentinel || !kh_valid(c, h))
            return KHEAP_E_CORRUPT;
        uint64_t word = kh_word(h), size = word & KH_SIZE_MASK;
        int is_free = (word & KH_F_FREE) != 0, is_quick = (word & KH_F_QUICK) != 0;
        if (((word & KH_F_PREV_FREE) != 0) != prev_free)
            return KHEAP_E_CORRUPT;          /* boundary tag disagrees with the left block */
        if (h == sentinel)
            return (size == 0 && !kh_is_unused(word)) ? 0 : KHEAP_E_CORRUPT;
        if (is_free && is_quick)
            return KHEAP_E_CORRUPT;          /* free and cached at once */
        if (is_quick && (size > KHEAP_QUICK_MAX || KHEAP_QUICK_DEPTH == 0))
            return KHEAP_E_CORRUPT;          /* cached, but no list takes that size */
        if (size < KHEAP_MIN_BLOCK || size > sentinel - h)
            return KHEAP_E_CORRUPT;
        if (is_free) {
            if (prev_free)
                return KHEAP_E_CORRUPT;      /* two adjacent free blocks: a missed merge */
            if (kh_word(h + size - KH_FOOTER_SIZE) != size)
                return KHEAP_E_CORRUPT;
            w->free += size;
            w->nfree_all++;
            if (!kh_detached(c, kh_class_of(size))) {   /* else maybe leaked: not cross-checked */
                w->nfree++;
                w->free_fp += kh_fingerprint(h);
            }
        } else if (is_quick) {
            w->quick += size;
            w->nquick++;
            w->quick_fp += kh_fingerprint(h);
        } else {
            w->used += size;
        }
        kh_check_content(h, size, word, w);
        w->total += size;
        prev_free = is_free;
        h += size;
    }
}

/* Walk the region list: descriptors sane, bounds right, regions disjoint. */
static int kh_walk_regions(const struct kh_ctl *c, struct kh_walk *w)
{
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    uint64_t n = 0;

    for (const struct kh_region *r = c->regions; r; r = r->next) {
        uintptr_t a = (uintptr_t)r;
        if (++n > c->nregions || a % KHEAP_ALIGN || a < c->min_addr || a >= c->max_addr)
            return KHEAP_E_CORRUPT;
        if (r->start != a || r->end % KHEAP_ALIGN || r->end > c->max_addr ||
            r->end - a < KH_RGN_MIN)
            return KHEAP_E_CORRUPT;
        for (const struct kh_region *q = r->next; q; q = q->next) {
            if ((uintptr_t)q % KHEAP_ALIGN || (uintptr_t)q < c->min_addr ||
                (uintptr_t)q >= c->max_addr)
                return KHEAP_E_CORRUPT;
            if (a < q->end && q->start < r->end)
                return KHEAP_E_CORRUPT;      /* overlapping regions */
        }
        int err = kh_walk_region(c, r, w);
        if (err)
            return err;
        lo = a < lo ? a : lo;
        hi = r->end > hi ? r->end : hi;
    }
    if (n != c->nregions || lo != c->min_addr || hi != c->max_addr)
        return KHEAP_E_CORRUPT;
    return 0;
}

/* Walk every free list: links (decoded) both ways, each block valid, free and of its list's
 * class, bitmap bits exactly where lists are non-empty, and together exactly the free blocks.
 * A class marked detached (docs/heap.md, "Corrupt lists") may hold free blocks that
 * are on no list: for those classes the lists are checked but not matched against the walk. */
static int kh_walk_lists(const struct kh_ctl *c, const struct kh_walk *w)
{
    uint64_t nodes = 0, all = 0, bytes = 0, fp = 0;

    if (c->fl_map >> KH_FL_COUNT)
        return KHEAP_E_FREELIST;             /* bits for classes that do not exist */
    for (unsigned fl = 0; fl < KH_FL_COUNT; fl++) {
        if (c->sl_map[fl] >> KH_SL_COUNT || ((c->fl_map >> fl) & 1) != (c->sl_map[fl] != 0))
            return KHEAP_E_FREELIST;
        for (unsigned sl = 0; sl < KH_SL_COUNT; sl++) {
            uint64_t lo, hi;
            uintptr_t prev = 0, b = c->heads[fl][sl];
            if (((c->sl_map[fl] >> sl) & 1) != (b != 0))
                return KHEAP_E_FREELIST;
            kh_class_range(fl, sl, &lo, &hi);
            int counted = !kh_detached(c, fl * KH_SL_COUNT + sl);
            for (; b; prev = b, b = kh_link(c, b, KH_FREE_NEXT)) {
                if (++all > w->nfree_all || !kh_hdr_addr(c, b) || !kh_valid(c, b))
                    return KHEAP_E_FREELIST;
                uint64_t word = kh_word(b), size = word & KH_SIZE_MASK;
                if (!(word & KH_F_FREE) || size < lo || size >= hi ||
                    kh_link(c, b, KH_FREE_PREV) != prev)
                    return KHEAP_E_FREELIST;
                if (counted) {
                    nodes++;
                    bytes += size;
                    fp += kh_fingerprint(b);
                }
            }
        }
    }
    if (nodes != w->nfree || fp != w->free_fp || (w->nfree == w->nfree_all && bytes != w->free))
        return KHEAP_E_FREELIST;             /* a free block missing from the lists */
    return 0;
}

/* Walk every front-cache list: at most KHEAP_QUICK_DEPTH blocks and exactly `count` of them,
 * each link decoding to a header address with valid check bits, cached (QUICK, not FREE) and of
 * the list's size, the last link decoding to 0; together exactly the cached blocks. */
static int kh_walk_quick(const struct kh_ctl *c, const struct kh_walk *w)
{
    uint64_t nodes = 0, bytes = 0, fp = 0;

    for (unsigned q = 0; q < KH_QUICK_CLASSES; q++) {
        uint64_t size = KHEAP_MIN_BLOCK + (uint64_t)q * KHEAP_ALIGN, n = c->quick[q].count;
        uintptr_t b = c->quick[q].head;
        if (n > KHEAP_QUICK_DEPTH || (n == 0) != (b == 0))
            return KHEAP_E_FREELIST;
        for (uint64_t i = 0; i < n; i++, b = kh_link(c, b, KH_QUICK_LINK)) {
            if (++nodes > w->nquick || !kh_hdr_addr(c, b) || !kh_valid(c, b))
                return KHEAP_E_FREELIST;
            uint64_t word = kh_word(b);
            if ((word & (KH_F_QUICK | KH_F_FREE)) != KH_F_QUICK || (word & KH_SIZE_MASK) != size)
                return KHEAP_E_FREELIST;
            bytes += size;
            fp += kh_fingerprint(b);
        }
        if (b != 0)
            return KHEAP_E_FREELIST;         /* the last link must end the list */
    }
    /* the blocks of dropped lists (quick_drop) are cached but on no list: counted, not named */
    if (nodes + c->quick_lost != w->nquick || bytes + c->quick_lost_bytes != w->quick ||
        (c->quick_lost == 0 && fp != w->quick_fp))
        return KHEAP_E_FREELIST;             /* a cached block missing from its list */
    return 0;
}

/* ---- re-adoption of blocks left on no list ---------------------------------------------- */

/* Write header word `low` (size and flags) at h with its check bits. */
static void kh_stamp(const struct kh_ctl *c, uintptr_t h, uint64_t low)
{
    *(volatile uint64_t *)h = kh_hash(c, h, low) | low;
}

/* File free block h of `size` bytes at the head of its list (as BIN_INSERT in kheap_block.inc:
 * links encoded, bitmap bits set). */
static void kh_bin_insert(struct kh_ctl *c, uintptr_t h, uint64_t size)
{
    unsigned idx = kh_class_of(size), fl = idx / KH_SL_COUNT, sl = idx % KH_SL_COUNT;
    uintptr_t old = c->heads[fl][sl];
    *(volatile uint64_t *)(h + KH_FREE_PREV) = c->link_key ^ h;           /* none */
    *(volatile uint64_t *)(h + KH_FREE_NEXT) = old ^ c->link_key ^ h;
    if (old)
        *(volatile uint64_t *)(old + KH_FREE_PREV) = h ^ c->link_key ^ old;
    c->heads[fl][sl] = h;
    c->sl_map[fl] |= 1u << sl;
    c->fl_map |= 1ull << fl;
}

/* [t, e) is a run of free and cached blocks between used ones: make it one free block, filed,
 * and tell the block at e (used, or the sentinel) that its left neighbour is free. */
static void kh_make_free(struct kh_ctl *c, uintptr_t t, uintptr_t e)
{
    uint64_t size = e - t;
#if KH_DEBUG
    for (uintptr_t a = t + KH_FREE_BODY; a < e - KH_FOOTER_SIZE; a += 8)
        *(volatile uint64_t *)a = KH_POISON_WORD;       /* the run's old headers and links */
#endif
    kh_stamp(c, t, size | KH_F_FREE);
    *(volatile uint64_t *)(e - KH_FOOTER_SIZE) = size;
    kh_bin_insert(c, t, size);
    kh_stamp(c, e, (kh_word(e) & KH_LOW_MASK) | KH_F_PREV_FREE);
}

/* A corrupt list left blocks on no list: free blocks of detached lists, cached blocks of
 * dropped cache lists (docs/heap.md, "Corrupt lists"). The heap walked cleanly, so every header
 * is sound: rebuild every free list from the walk, every run of free and cached blocks merged
 * into one free block (the whole front cache goes back, as kheap_flush would give it), and
 * forget the detached state. Free bytes and used bytes do not change. O(heap). */
static void kh_readopt(struct kh_ctl *c)
{
    for (unsigned fl = 0; fl < KH_FL_COUNT; fl++) {
        c->sl_map[fl] = 0;
        c->detached[fl] = 0;
        for (unsigned sl = 0; sl < KH_SL_COUNT; sl++)
            c->heads[fl][sl] = 0;
    }
    c->fl_map = 0;
    for (unsigned q = 0; q < KH_QUICK_CLASSES; q++)
        c->quick[q] = (struct kh_quick){ 0, 0 };
    c->quick_lost = c->quick_lost_bytes = 0;
    for (const struct kh_region *r = c->regions; r; r = r->next) {
        uintptr_t h = kh_first(r), sentinel = kh_sentinel(r), run = 0;
        for (;;) {
            uint64_t word = kh_word(h) & KH_LOW_MASK;
            if (h < sentinel && kh_is_unused(word)) {
                if (!run)
                    run = h;
            } else if (run) {
                kh_make_free(c, run, h);
                run = 0;
            }
            if (h == sentinel)
                break;
            h += word & KH_SIZE_MASK;
        }
    }
}

/* Does the heap carry blocks that a corrupt list left on no list? */
static int kh_has_orphans(const struct kh_ctl *c)
{
    if (c->quick_lost)
        return 1;
    for (unsigned fl = 0; fl < KH_FL_COUNT; fl++)
        if (c->detached[fl])
            return 1;
    return 0;
}

/* One full check: regions, lists, cache, counters; content findings last. */
static int kh_check_once(const struct kh_ctl *c)
{
    struct kh_walk w = { 0 };
    int err;

    if ((err = kh_walk_regions(c, &w)) != 0 || (err = kh_walk_lists(c, &w)) != 0 ||
        (err = kh_walk_quick(c, &w)) != 0)
        return err;
    if (w.total != c->total || w.used != c->used || w.free + w.quick != c->total - c->used ||
        c->peak < c->used)
        return KHEAP_E_STATS;
    return w.debug_err;                      /* structure first: content findings come last */
}

/* Called by kheap_verify (mm/kheap.asm) with the heap's lock held. A sound heap that has
 * orphaned blocks gets them back (kh_readopt), then is checked again. */
int kheap_check_walk(struct kh_ctl *c)
{
    if (c->nregions == 0)
        return KHEAP_E_NOT_INIT;
    int err = kh_check_once(c);
    if (err || !kh_has_orphans(c))
        return err;
    kh_readopt(c);
    return kh_check_once(c);
}

const char *kheap_strerror(int code)
{
    switch (code) {
    case KHEAP_OK:            return "ok";
    case KHEAP_E_INVAL:       return "invalid argument";
    case KHEAP_E_TOO_SMALL:   return "region too small";
    case KHEAP_E_OVERLAP:     return "region overlaps a known region";
    case KHEAP_E_BAD_PTR:     return "pointer in no region of this heap, or misaligned";
    case KHEAP_E_BAD_HEADER:  return "no live block there (interior pointer or overwritten header)";
    case KHEAP_E_DOUBLE_FREE: return "block already free";
    case KHEAP_E_FREELIST:    return "free list corrupted";
    case KHEAP_E_CORRUPT:     return "heap block or region corrupted";
    case KHEAP_E_STATS:       return "counters disagree with the heap";
    case KHEAP_E_NOT_INIT:    return "heap not initialised";
    case KHEAP_E_USE_AFTER_FREE: return "write after free (poison overwritten)";
    case KHEAP_E_OVERFLOW:    return "overflow (canary after the requested size overwritten)";
    case KHEAP_E_SIZE:        return "absurd size (over KHEAP_MAX_ALLOC, or n * size overflows)";
    default:                  return "unknown kheap error";
    }
}
