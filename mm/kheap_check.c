/*
 * kheap_check.c -- kheap's invariant checker and error names, in freestanding C (no libc).
 * A second, independent reading of the layout in kheap_layout.h: kheap_verify (mm/kheap.asm)
 * takes the heap's lock and calls kheap_check_walk, which walks every region block by block
 * (every slab object by object), every free list, every front-cache list, every slab partial
 * list and every per-CPU cache, and compares what it finds with the bitmaps and the counters;
 * if the heap is sound but blocks or slabs were left on no list by a corrupt list, it gives
 * them back (kh_readopt, kh_slab_readopt). O(heap).
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
    uint64_t slabs, slab_bytes, slab_free;   /* slabs: count, block bytes, FREE object bytes */
    uint64_t listed, listed_fp;              /* slabs whose generation puts them on a list */
    uint64_t spares;                         /* slabs that are their class's spare */
    uint64_t slab_orphans;                   /* slabs with FREE objects on no list (a drop) */
    uint64_t cached, cached_fp;              /* CACHED objects: count, fingerprints */
    uint64_t cpu_block_size;                 /* size of the block at cpu_block; 0: not seen */
    int      busy;                           /* a per-CPU slot is in use (see kh_any_busy) */
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

/* Are the trailer and the canary of the live bytes [p, end) intact: a used block's payload
 * (p = H + 8, end = H + S) or a live slab object (its `size` bytes)? */
static int kh_canary_ok(uintptr_t p, uintptr_t end)
{
    if (end - p < KHEAP_DEBUG_EXTRA)
        return 0;                            /* no room for a trailer and a canary byte */
    uintptr_t t = end - KH_TRAILER_SIZE;
    uint64_t n = *(const uint64_t *)(t + KH_TRAILER_REQ);
    if (n > end - p - KHEAP_DEBUG_EXTRA)
        return 0;
    for (uintptr_t c = p + n; c < t; c++)
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
    if (!kh_is_unused(word) && !kh_canary_ok(h + KHEAP_HEADER_SIZE, h + size))
        w->debug_err = KHEAP_E_OVERFLOW;
#else
    (void)h, (void)size, (void)word, (void)w;
#endif
}

/* ---- slabs -------------------------------------------------------------------------------- */

/* Does the class table describe slabs the checks may read: objects aligned, after the state
 * bytes and inside the slab's block (which ends at S + KH_SLAB_BLOCK - 8)? A build error
 * rather than heap damage, ruled out before any slab is read with it. */
static int kh_classes_ok(void)
{
    for (unsigned i = 0; i < KH_SLAB_CLASSES; i++) {
        const struct kh_class *k = &kh_slab_class[i];
        if (k->size == 0 || k->size % KHEAP_ALIGN || k->size > KH_SLAB_MAX || k->cap == 0 ||
            k->first != KH_SLAB_FIRST ||
            k->first + (uint64_t)k->cap * k->size > KH_SLAB_BLOCK - KHEAP_HEADER_SIZE)
            return 0;
    }
    return 1;
}

/* The debug build's content check of object p of `size` bytes in state st: a live one's
 * trailer and canary, a FREE or CACHED one all poison. With a slot busy (kh_any_busy) a live
 * or cached object may be half way from one state to the other: only FREE ones are checked. */
static void kh_check_object(uintptr_t p, uint64_t size, unsigned st, struct kh_walk *w)
{
#if KH_DEBUG
    if (w->debug_err || (st != KH_OBJ_FREE && w->busy))
        return;
    if (st == KH_OBJ_LIVE ? !kh_canary_ok(p, p + size) : !kh_poisoned(p, p + size))
        w->debug_err = st == KH_OBJ_LIVE ? KHEAP_E_OVERFLOW : KHEAP_E_USE_AFTER_FREE;
#else
    (void)p, (void)size, (void)st, (void)w;
#endif
}

/* Slab s, the payload of a used block of `size` bytes that kh_is_slab accepted: its size, its
 * state bytes against nfree and hint, its list membership (generation) against its fill; then
 * counted for the counters, the partial lists and the per-CPU caches. A slab with FREE objects
 * whose generation is stale is on no list because its list was dropped (gen++): an orphan, a
 * known state like a detached class's blocks, counted and re-adopted (an empty one too: it
 * could only be a spare whose pointer was lost, and on a list it is simply used again).
 * KHEAP_E_CORRUPT for a broken invariant. */
static int kh_check_slab(const struct kh_ctl *c, uintptr_t s, uint64_t size, struct kh_walk *w)
{
    const struct kh_slab *sl = (const struct kh_slab *)s;
    const struct kh_class *k = &kh_slab_class[sl->cls];
    uint64_t nfree = 0;

    if (size != KH_SLAB_BLOCK || sl->hint > KH_SLAB_GRANULES)
        return KHEAP_E_CORRUPT;
    /* every granule where no object starts says so */
    for (uint64_t g = 0, i = 0; g < KH_SLAB_GRANULES; g++) {
        if (i < k->cap && g == kh_obj_granule(k, i))
            i++;
        else if (sl->state[g] != KH_OBJ_NONE)
            return KHEAP_E_CORRUPT;
    }
    for (uint64_t i = 0; i < k->cap; i++) {
        unsigned st = kh_obj_state(sl, k, i);
        if (st == KH_OBJ_FREE) {
            if (kh_obj_granule(k, i) < sl->hint)
                return KHEAP_E_CORRUPT;      /* the hint would skip a free object */
            nfree++;
        } else if (st == KH_OBJ_CACHED) {
            w->cached++;
            w->cached_fp += kh_fingerprint(kh_obj(k, s, i));
        } else if (st != KH_OBJ_LIVE) {
            return KHEAP_E_CORRUPT;          /* no such state */
        }
        kh_check_object(kh_obj(k, s, i), k->size, st, w);
    }
    int spare = c->spare[sl->cls] == s, listed = kh_slab_listed(c, sl);
    if (listed && sl->home > c->ncpu)
        return KHEAP_E_CORRUPT;              /* on the list of a slot that does not exist */
    if (nfree != sl->nfree)
        return KHEAP_E_CORRUPT;
    if (listed && nfree == 0)
        return KHEAP_E_CORRUPT;              /* a full slab is on no list */
    if (spare && (nfree != k->cap || listed))
        return KHEAP_E_CORRUPT;              /* the spare is empty and on no list */
    if (spare) {
        w->spares++;
    } else if (listed) {
        w->listed++;
        w->listed_fp += kh_fingerprint(s);
    } else if (nfree) {
        w->slab_orphans++;
    }
    w->slabs++;
    w->slab_bytes += size;
    w->slab_free += nfree * k->size;
    return 0;
}

/* A used block h of `size` bytes: a slab (checked object by object), the block of the per-CPU
 * slots (the heap's own: noted, no trailer assumed), or a user's block (its canary). */
static int kh_walk_used(const struct kh_ctl *c, uintptr_t h, uint64_t size, uint64_t word,
                        struct kh_walk *w)
{
    uintptr_t p = h + KHEAP_HEADER_SIZE;
    w->used += size;
    if (kh_is_slab(c, p))
        return kh_check_slab(c, p, size, w);
    if (p == c->cpu_block)
        w->cpu_block_size = size;
    else
        kh_check_content(h, size, word, w);
    return 0;
}

/* ---- blocks -------------------------------------------------------------------------------- */

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
            int err = kh_walk_used(c, h, size, word, w);
            if (err)
                return err;
        }
        if (is_free || is_quick)
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

/* Every slab partial list, the heap's (home 0) and each slot's (home i + 1): each link a slab
 * of this heap (read only once its bounds and header check out) of the list's class,
 * generation and home, prev pointing back, at most as many nodes as the walk found slabs;
 * together exactly the slabs whose generation says "listed". */
static int kh_walk_partial(const struct kh_ctl *c, const struct kh_walk *w)
{
    uint64_t nodes = 0, fp = 0;

    for (uint64_t home = 0; home <= c->ncpu; home++)
        for (unsigned cls = 0; cls < KH_SLAB_CLASSES; cls++) {
            uintptr_t prev = 0;
            uintptr_t s = home ? c->cpus[home - 1].partial[cls] : c->partial[cls];
            while (s) {
                if (++nodes > w->slabs || !kh_slab_at(c, s))
                    return KHEAP_E_FREELIST;
                const struct kh_slab *sl = (const struct kh_slab *)s;
                if (sl->cls != cls || !kh_slab_listed(c, sl) || sl->prev != prev ||
                    sl->home != home)
                    return KHEAP_E_FREELIST;
                fp += kh_fingerprint(s);
                prev = s;
                s = sl->next;
            }
        }
    if (nodes != w->listed || fp != w->listed_fp)
        return KHEAP_E_FREELIST;             /* a listed slab missing from its list */
    return 0;
}

/* Where the per-CPU slots are: the control block's own slot (one), or ncpu slots in the payload
 * at cpu_block, inside the heap's bounds (that it is a used block big enough is checked after
 * the walk). Checked before a slot is read. */
static int kh_cpus_ok(const struct kh_ctl *c)
{
    uintptr_t a = (uintptr_t)c->cpus;
    if (c->cpus == &c->cpu0)
        return c->ncpu == 1 && c->cpu_block == 0 && c->depot == NULL;
    return a == c->cpu_block && c->ncpu >= 1 && c->ncpu <= KHEAP_MAX_CPUS &&
           a % KHEAP_ALIGN == 0 && a > c->min_addr && a < c->max_addr &&
           (uintptr_t)c->depot == a + c->ncpu * sizeof(struct kh_cpu) &&
           c->ncpu * sizeof(struct kh_cpu) + KH_SLAB_CLASSES * sizeof(struct kh_depot) <=
               c->max_addr - a;
}

/* The gate the entry fast paths read is what heap_gate computes from the hooks, the regions
 * and fault injection (mm/kheap_layout.h): a stray write into it could send a locked heap's
 * calls past the lock, or a heap without a cpu hook through a null one. */
static int kh_gate_ok(const struct kh_ctl *c)
{
    uint64_t g = KH_GATE_OFF;
    if (c->nregions && !c->fail_after && !c->fail_ppm)
        g = c->hooks.cpu ? KH_GATE_CPU : c->hooks.lock ? KH_GATE_OFF : KH_GATE_SLOT0;
    return c->gate == g;
}

/* Is a per-CPU slot in use? Its owner may be half way through a lockless alloc or free (an
 * interrupt handler calling kheap_verify on the same CPU, or another CPU meanwhile): the top of
 * a stack and the state byte of that object may disagree, and a live object's trailer may not
 * be written yet. The exact cache cross-checks are then skipped. */
static int kh_any_busy(const struct kh_ctl *c)
{
    for (uint64_t i = 0; i < c->ncpu; i++)
        if (c->cpus[i].busy)
            return 1;
    return 0;
}

/* Is p, an entry of a per-CPU stack of class cls, an object of a slab of that class, CACHED
 * (in any state if its slot is busy)? */
static int kh_cached_ok(const struct kh_ctl *c, uintptr_t p, unsigned cls, int busy)
{
    uintptr_t s = p & -(uintptr_t)KH_SLAB_SIZE;
    if (!kh_slab_at(c, s))
        return 0;
    const struct kh_slab *sl = (const struct kh_slab *)s;
    long i = kh_obj_index(&kh_slab_class[cls], s, p);
    return sl->cls == cls && i >= 0 &&
           (busy || kh_obj_state(sl, &kh_slab_class[cls], (uint64_t)i) == KH_OBJ_CACHED);
}

/* Every per-CPU stack: at most KH_MAG_DEPTH entries, each a cached object of its class;
 * together exactly the CACHED objects of the slabs. The slots' block, if any, must be the
 * used block the walk saw at cpu_block, with room for ncpu slots. */
static int kh_walk_caches(const struct kh_ctl *c, const struct kh_walk *w)
{
    uint64_t n = 0, fp = 0;

    if (c->cpu_block && (w->cpu_block_size < KHEAP_HEADER_SIZE ||
                         w->cpu_block_size - KHEAP_HEADER_SIZE <
                             c->ncpu * sizeof(struct kh_cpu) +
                                 KH_SLAB_CLASSES * sizeof(struct kh_depot)))
        return KHEAP_E_CORRUPT;
    for (uint64_t i = 0; i < c->ncpu; i++) {
        const struct kh_cpu *slot = &c->cpus[i];
        for (unsigned cls = 0; cls < KH_SLAB_CLASSES; cls++) {
            if (slot->count[cls] > KH_MAG_DEPTH)
                return KHEAP_E_FREELIST;
            for (unsigned j = 0; j < slot->count[cls]; j++) {
                uintptr_t p = slot->obj[cls][j];
                if (!kh_cached_ok(c, p, cls, slot->busy))
                    return KHEAP_E_FREELIST;
                n++;
                fp += kh_fingerprint(p);
            }
        }
    }
    /* the depot's half stacks: KH_MAG_BATCH cached objects of their class each */
    for (unsigned cls = 0; c->depot && cls < KH_SLAB_CLASSES; cls++) {
        const struct kh_depot *d = &c->depot[cls];
        if (d->nfull > KH_DEPOT_MAX)
            return KHEAP_E_FREELIST;
        for (uint64_t m = 0; m < d->nfull; m++)
            for (unsigned j = 0; j < KH_MAG_BATCH; j++) {
                if (!kh_cached_ok(c, d->mag[m][j], cls, 0))
                    return KHEAP_E_FREELIST;
                n++;
                fp += kh_fingerprint(d->mag[m][j]);
            }
    }
    if (w->busy)
        return 0;                            /* one object may be between stack and state */
    /* the objects of dropped stacks (mag_pop, mag_drain) are CACHED but in no stack: counted */
    if (c->slab_lost)                        /* which (a dropped count: how many) is not known */
        return n + c->slab_lost >= w->cached && n <= w->cached ? 0 : KHEAP_E_STATS;
    if (n != w->cached)
        return KHEAP_E_STATS;                /* cached objects and stack entries disagree */
    return fp == w->cached_fp ? 0 : KHEAP_E_FREELIST;   /* the same number, not the same ones */
}

/* The slab tier after the walk: every spare one of the slabs the walk saw, the partial lists,
 * the per-CPU caches. */
static int kh_walk_slabs(const struct kh_ctl *c, const struct kh_walk *w)
{
    uint64_t spares = 0;
    int err;

    for (unsigned cls = 0; cls < KH_SLAB_CLASSES; cls++)
        spares += c->spare[cls] != 0;
    if (spares != w->spares)
        return KHEAP_E_CORRUPT;              /* a spare that is no slab of its class */
    if ((err = kh_walk_partial(c, w)) != 0)
        return err;
    return kh_walk_caches(c, w);
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

/* kh_region_walk callback: a slab with FREE objects on no list (its list dropped, its
 * generation stale) and not the spare goes on its class's partial list, as the allocator
 * pushes one: at the head, with the class's generation. */
static int kh_slab_adopt(uintptr_t h, uint64_t word, void *arg)
{
    struct kh_ctl *c = arg;
    uintptr_t s = h + KHEAP_HEADER_SIZE;
    (void)word;
    if (!kh_is_slab(c, s))
        return 0;
    struct kh_slab *sl = (struct kh_slab *)s;
    unsigned cls = sl->cls;
    if (sl->nfree == 0 || kh_slab_listed(c, sl) || c->spare[cls] == s)
        return 0;
    uintptr_t head = c->partial[cls];         /* the heap's list: no slot's */
    sl->home = 0;
    sl->gen = (uint16_t)c->gen[cls];
    sl->prev = 0;
    sl->next = head;
    if (head)
        ((struct kh_slab *)head)->prev = s;
    c->partial[cls] = s;
    return 0;
}

/* Orphaned slabs back on their lists. The heap walked cleanly: every region walks. O(heap). */
static void kh_slab_readopt(struct kh_ctl *c)
{
    for (const struct kh_region *r = c->regions; r; r = r->next)
        kh_region_walk(c, r, kh_slab_adopt, c);
}

/* One full check: the slab tier's tables, regions, lists, caches, counters; content findings
 * last. *w: what the walk found (kheap_check_walk reads its orphans). */
static int kh_check_once(const struct kh_ctl *c, struct kh_walk *w)
{
    int err;

    *w = (struct kh_walk){ 0 };
    if (!kh_classes_ok() || !kh_cpus_ok(c) || !kh_gate_ok(c))
        return KHEAP_E_CORRUPT;
    w->busy = kh_any_busy(c);
    if ((err = kh_walk_regions(c, w)) != 0 || (err = kh_walk_lists(c, w)) != 0 ||
        (err = kh_walk_quick(c, w)) != 0 || (err = kh_walk_slabs(c, w)) != 0)
        return err;
    if (w->total != c->total || w->used != c->used || w->free + w->quick != c->total - c->used ||
        c->peak < c->used)
        return KHEAP_E_STATS;
    if (w->slabs != c->slab_count || w->slab_bytes != c->slab_bytes ||
        w->slab_free != c->slab_free)
        return KHEAP_E_STATS;
    return w->debug_err;                     /* structure first: content findings come last */
}

/* Called by kheap_verify (mm/kheap.asm) with the heap's lock held. A sound heap that has
 * orphaned blocks or slabs gets them back (kh_readopt, kh_slab_readopt), then is checked
 * again. */
int kheap_check_walk(struct kh_ctl *c)
{
    struct kh_walk w;
    if (c->nregions == 0)
        return KHEAP_E_NOT_INIT;
    int err = kh_check_once(c, &w), blocks = kh_has_orphans(c);
    if (err || (!blocks && !w.slab_orphans))
        return err;
    if (blocks)
        kh_readopt(c);
    if (w.slab_orphans)
        kh_slab_readopt(c);
    return kh_check_once(c, &w);
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
