/*
 * kheap_diag.c -- kheap's diagnostics in freestanding C: the walk, inspect, the leak report
 * and the re-stamping behind kheap_set_secret, each for the heap c. The *_locked entries are
 * called by the public wrappers in mm/kheap.asm with the heap's lock held; inspect takes no
 * lock. To all of them a slab is its objects: the walk, inspect and the leak report show each
 * object, never the slab's block, and the block of the per-CPU slots (the heap's own) not at
 * all.
 */
#include "kheap_internal.h"

int kheap_walk_locked(const struct kh_ctl *c, kheap_walk_fn fn, void *ctx) KH_HIDDEN;
int kheap_leak_locked(struct kh_ctl *c, kheap_leak_fn fn, void *ctx) KH_HIDDEN;
int kheap_restamp_locked(struct kh_ctl *c, uint64_t secret) KH_HIDDEN;

/* ---- regions in address order -------------------------------------------------------------- */

/* The region with the lowest start above `after` (0: the lowest), or NULL. O(regions); the
 * list is followed at most nregions steps, so a corrupt cycle cannot hang us. */
static const struct kh_region *kh_region_after(const struct kh_ctl *c, uintptr_t after)
{
    const struct kh_region *best = NULL, *r = c->regions;
    for (uint64_t n = 0; r && n < c->nregions; r = r->next, n++)
        if (r->start > after && (!best || r->start < best->start))
            best = r;
    return best;
}

/* ---- block descriptions -------------------------------------------------------------------- */

/* Fill *b for block h with header word `word` (check bits stripped) in region `region`. */
static void kh_describe(uintptr_t h, uint64_t word, unsigned region, struct kheap_block_info *b)
{
    uint64_t size = word & KH_SIZE_MASK;
    b->ptr = (void *)(h + KHEAP_HEADER_SIZE);
    b->size = size;
    b->usable = size - KHEAP_HEADER_SIZE;
    b->used = !kh_is_unused(word);             /* free, or cached in the front cache */
    b->region = region;
    b->requested = b->used ? b->usable : 0;
    b->site = NULL;
    b->slab = NULL;
#if KH_DEBUG
    if (b->used) {      /* the trailer; a smashed one is shown as is, clipped to the block */
        uintptr_t t = h + size - KH_TRAILER_SIZE;
        uint64_t req = *(const uint64_t *)(t + KH_TRAILER_REQ);
        b->requested = req < b->usable ? req : b->usable;
        b->usable = b->requested;
        b->site = *(void *const *)(t + KH_TRAILER_SITE);
    }
#endif
}

/* Fill *b for object i of slab s in region `region`: live iff its state is KH_OBJ_LIVE; a
 * cached one (in a per-CPU cache) is free to its user, like a front-cache block. */
static void kh_describe_object(uintptr_t s, uint64_t i, unsigned region,
                               struct kheap_block_info *b)
{
    const struct kh_slab *sl = (const struct kh_slab *)s;
    const struct kh_class *k = &kh_slab_class[sl->cls];
    uintptr_t p = kh_obj(k, s, i);
    b->ptr = (void *)p;
    b->size = k->size;
    b->usable = k->size;
    b->used = kh_obj_state(sl, k, i) == KH_OBJ_LIVE;
    b->region = region;
    b->requested = b->used ? b->usable : 0;
    b->site = NULL;
    b->slab = (void *)s;
#if KH_DEBUG
    if (b->used) {      /* the trailer ends the object; shown as is, clipped to what fits */
        uint64_t max = 0, req = 0;
        if (k->size >= KHEAP_DEBUG_EXTRA) {     /* (a class too small for one has no trailer) */
            uintptr_t t = p + k->size - KH_TRAILER_SIZE;
            max = k->size - KHEAP_DEBUG_EXTRA;
            req = *(const uint64_t *)(t + KH_TRAILER_REQ);
            b->site = *(void *const *)(t + KH_TRAILER_SITE);
        }
        b->requested = req < max ? req : max;
        b->usable = b->requested;
    }
#endif
}

/* ---- kheap_walk ---------------------------------------------------------------------------- */

struct kh_walk_ctx {
    const struct kh_ctl *c;
    kheap_walk_fn fn;
    void         *ctx;
    unsigned      region;
};

/* Each object of slab s, in address order. */
static int kh_walk_slab(struct kh_walk_ctx *w, uintptr_t s)
{
    const struct kh_slab *sl = (const struct kh_slab *)s;
    for (uint64_t i = 0; i < kh_slab_class[sl->cls].cap; i++) {
        struct kheap_block_info b;
        kh_describe_object(s, i, w->region, &b);
        int rc = w->fn(&b, w->ctx);
        if (rc)
            return rc;
    }
    return 0;
}

/* A block: a slab is shown as its objects; the per-CPU slots' block is the heap's own, not
 * a user's (no allocation returned it, no free may take it): not shown. */
static int kh_walk_block(uintptr_t h, uint64_t word, void *arg)
{
    struct kh_walk_ctx *w = arg;
    uintptr_t p = h + KHEAP_HEADER_SIZE;
    if (!kh_is_unused(word)) {
        if (p == w->c->cpu_block)
            return 0;
        if (kh_is_slab(w->c, p))
            return kh_walk_slab(w, p);
    }
    struct kheap_block_info b;
    kh_describe(h, word, w->region, &b);
    return w->fn(&b, w->ctx);
}

int kheap_walk_locked(const struct kh_ctl *c, kheap_walk_fn fn, void *ctx)
{
    struct kh_walk_ctx w = { c, fn, ctx, 0 };
    if (c->nregions == 0)
        return KHEAP_E_NOT_INIT;
    for (const struct kh_region *r = kh_region_after(c, 0); r; r = kh_region_after(c, r->start)) {
        int rc = kh_region_walk(c, r, kh_walk_block, &w);
        if (rc)
            return rc;
        w.region++;
    }
    return 0;
}

/* ---- kheap_inspect ------------------------------------------------------------------------- */

struct kh_find_ctx {
    uintptr_t a;                    /* in: the address sought */
    uintptr_t h;                    /* out: the block that holds it */
    uint64_t  word;
};

/* kh_region_walk callback: stop at the block that holds address a (blocks tile the region,
 * so the first one that ends past a starts at or below it). */
static int kh_find_block(uintptr_t h, uint64_t word, void *arg)
{
    struct kh_find_ctx *f = arg;
    if (h + (word & KH_SIZE_MASK) <= f->a)
        return 0;
    f->h = h;
    f->word = word;
    return 1;
}

/* p lies in slab s: an object of it (described), or an interior pointer, the slab's header
 * included (0). */
static int kh_inspect_object(uintptr_t s, uintptr_t p, unsigned region,
                             struct kheap_block_info *out)
{
    long i = kh_obj_index(&kh_slab_class[((const struct kh_slab *)s)->cls], s, p);
    if (i < 0)
        return 0;
    kh_describe_object(s, (uint64_t)i, region, out);
    return 1;
}

static int kh_inspect(const struct kh_ctl *c, const void *p, struct kheap_block_info *out)
{
    uintptr_t h = (uintptr_t)p - KHEAP_HEADER_SIZE;
    unsigned region = 0;
    const struct kh_region *home = NULL;

    if ((uintptr_t)p % KHEAP_ALIGN || c->nregions == 0)
        return 0;
    for (const struct kh_region *r = kh_region_after(c, 0); r; r = kh_region_after(c, r->start)) {
        if (h >= kh_first(r) && h < kh_sentinel(r)) {
            home = r;
            break;
        }
        region++;
    }
    struct kh_find_ctx f = { h, 0, 0 };
    if (!home || kh_region_walk(c, home, kh_find_block, &f) != 1)
        return 0;
    if (!kh_is_unused(f.word) && kh_is_slab(c, f.h + KHEAP_HEADER_SIZE))
        return kh_inspect_object(f.h + KHEAP_HEADER_SIZE, (uintptr_t)p, region, out);
    if (f.h != h)
        return 0;                   /* inside a block: not its payload */
    kh_describe(h, f.word, region, out);
    return 1;
}

int kheap_inspect(const void *p, struct kheap_block_info *out)
{
    return kh_inspect(kheap_default_heap, p, out);
}

int kheap_inspect_in(kheap_t *h, const void *p, struct kheap_block_info *out)
{
    return kh_is_heap(h) ? kh_inspect((const struct kh_ctl *)h, p, out) : 0;
}

/* ---- leak report --------------------------------------------------------------------------- */

/* The scratch table lives in the heap's control block (under its lock: one table per heap,
 * no stack-hungry array in a kernel). The walk shows live slab objects as blocks of their
 * class's size (grouped by their trailer's site in a debug build) and neither slabs' blocks
 * nor the per-CPU slots' block: those are the heap's, never a leak. */
struct kh_leak_ctx {
    struct kh_ctl *c;
};

static int kh_leak_block(const struct kheap_block_info *b, void *arg)
{
    struct kh_ctl *c = ((struct kh_leak_ctx *)arg)->c;
    struct kh_site *sites = c->sites;
    if (!b->used)
        return 0;
    unsigned i = 0;
    while (i < c->nsites && sites[i].site != b->site)
        i++;
    if (i == c->nsites) {
        if (c->nsites == KHEAP_LEAK_SITES) {        /* full: count it among the others */
            i = KHEAP_LEAK_SITES;
            sites[i].site = KHEAP_LEAK_OTHER;
        } else {
            sites[c->nsites++] = (struct kh_site){ b->site, 0, 0 };
        }
    }
    sites[i].blocks++;
    sites[i].bytes += b->size;
    return 0;
}

int kheap_leak_locked(struct kh_ctl *c, kheap_leak_fn fn, void *ctx)
{
    struct kh_leak_ctx l = { c };
    struct kh_site *sites = c->sites;
    c->nsites = 0;
    sites[KHEAP_LEAK_SITES] = (struct kh_site){ KHEAP_LEAK_OTHER, 0, 0 };
    int rc = kheap_walk_locked(c, kh_leak_block, &l);
    if (rc)
        return rc;
    unsigned groups = c->nsites + (sites[KHEAP_LEAK_SITES].blocks != 0);
    for (unsigned i = 0; i <= KHEAP_LEAK_SITES; i++)
        if (i < c->nsites || (i == KHEAP_LEAK_SITES && sites[i].blocks))
            fn(sites[i].site, sites[i].blocks, sites[i].bytes, ctx);
    return (int)groups;
}

/* ---- kheap_set_secret ---------------------------------------------------------------------- */

/* Does every front-cache list walk cleanly (the checks of kheap_check's list walk, without
 * the counting)? Bounded by KHEAP_QUICK_DEPTH per list. */
static int kh_quick_lists_ok(const struct kh_ctl *c)
{
    for (unsigned q = 0; q < KH_QUICK_CLASSES; q++) {
        uint64_t size = KHEAP_MIN_BLOCK + (uint64_t)q * KHEAP_ALIGN, n = c->quick[q].count;
        uintptr_t b = c->quick[q].head;
        if (n > KHEAP_QUICK_DEPTH)
            return 0;
        for (uint64_t i = 0; i < n; i++, b = kh_link(c, b, KH_QUICK_LINK))
            if (!kh_hdr_addr(c, b) || !kh_valid(c, b) ||
                (kh_word(b) & (KH_LOW_MASK & ~(uint64_t)KH_F_PREV_FREE)) != (size | KH_F_QUICK))
                return 0;
        if (b != 0)
            return 0;
    }
    return 1;
}

/* kh_region_walk callback: are free block h's list links sound (decoded, they point back at it,
 * as BIN_LINKS_OK checks them)? Blocks of a class marked detached may sit on no list: skipped. */
static int kh_links_bad(uintptr_t h, uint64_t word, void *arg)
{
    const struct kh_ctl *c = arg;
    uint64_t size = word & KH_SIZE_MASK;
    unsigned idx = kh_class_of(size);
    if (!(word & KH_F_FREE) || kh_detached(c, idx))
        return 0;
    uintptr_t prev = kh_link(c, h, KH_FREE_PREV), next = kh_link(c, h, KH_FREE_NEXT);
    if (prev ? !kh_hdr_addr(c, prev) || kh_link(c, prev, KH_FREE_NEXT) != h
             : c->heads[idx / KH_SL_COUNT][idx % KH_SL_COUNT] != h)
        return 1;
    return next && (!kh_hdr_addr(c, next) || kh_link(c, next, KH_FREE_PREV) != h);
}

/* Write h's header word again, with check bits under the current secret. */
static void kh_restamp(const struct kh_ctl *c, uintptr_t h)
{
    uint64_t word = kh_word(h) & KH_LOW_MASK;
    *(volatile uint64_t *)h = kh_hash(c, h, word) | word;
}

int kheap_restamp_locked(struct kh_ctl *c, uint64_t secret)
{
    const struct kh_region *r;
    if (c->nregions == 0)
        return KHEAP_E_NOT_INIT;
    /* 1. every region, every free block's links and every front-cache list must be sound under
     * the old secret: nothing is written before */
    for (r = kh_region_after(c, 0); r; r = kh_region_after(c, r->start))
        if (kh_region_walk(c, r, kh_links_bad, (void *)c))
            return KHEAP_E_CORRUPT;
    if (!kh_quick_lists_ok(c))
        return KHEAP_E_CORRUPT;
    /* 2. every cached block's link re-encoded under the new key (link = next ^ key ^ h: xor
     * with old key ^ new key), then the new secret; free blocks' links and slabs in step 3 */
    uint64_t rekey = c->link_key ^ kh_link_key(secret);
    for (unsigned q = 0; q < KH_QUICK_CLASSES; q++) {
        uintptr_t b = c->quick[q].head;
        for (uint64_t i = 0; i < c->quick[q].count; i++) {
            uintptr_t next = kh_link(c, b, KH_QUICK_LINK);
            *(volatile uint64_t *)(b + KH_QUICK_LINK) ^= rekey;
            b = next;
        }
    }
    c->link_key ^= rekey;
    /* 3. every header (cached ones too) and the sentinel stamped again (sizes, read from the
     * low bits, lead from one header to the next as in step 1); every slab's check, the slab
     * found under the old slab key (kept in c until every slab is done: a slab's check depends
     * on nothing else, so the stamps before it cannot change what it is) */
    uint64_t slab_rekey = c->slab_key ^ kh_slab_key(secret);
    c->secret = secret;
    for (r = kh_region_after(c, 0); r; r = kh_region_after(c, r->start)) {
        uintptr_t h = kh_first(r), sentinel = kh_sentinel(r);
        for (; h < sentinel; h += kh_word(h) & KH_SIZE_MASK) {
            if (kh_word(h) & KH_F_FREE) {    /* both list links, as the cache links above */
                *(volatile uint64_t *)(h + KH_FREE_NEXT) ^= rekey;
                *(volatile uint64_t *)(h + KH_FREE_PREV) ^= rekey;
            } else if (kh_is_slab(c, h + KHEAP_HEADER_SIZE)) {   /* check = ... ^ slab_key */
                ((struct kh_slab *)(h + KHEAP_HEADER_SIZE))->check ^= slab_rekey;
            }
            kh_restamp(c, h);
        }
        kh_restamp(c, sentinel);
    }
    c->slab_key ^= slab_rekey;
    return 0;
}
