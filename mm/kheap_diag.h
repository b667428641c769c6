/*
 * kheap_diag.h -- kheap's diagnostics: walk every block, describe one, group live blocks by
 * allocation site (leak report), change the check-bit secret, inject allocation failures.
 * Every call comes twice: kheap_X(...) for the default heap and kheap_X_in(h, ...) for a heap
 * of kheap_create (a bad h gives KHEAP_E_INVAL, 0, or nothing). Not needed to allocate.
 * SPDX-License-Identifier: MIT
 */
#ifndef KHEAP_DIAG_H
#define KHEAP_DIAG_H

#include "kheap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One block as the walk and inspect see it. */
struct kheap_block_info {
    void    *ptr;        /* payload address (what an allocation returned, or would) */
    size_t   size;       /* block size in bytes, header included */
    size_t   usable;     /* usable payload bytes: ksize() of a live block; size - 8 if free */
    size_t   requested;  /* bytes asked for (KHEAP_DEBUG builds), else == usable; 0 if free */
    void    *site;       /* return address of the allocating call (KHEAP_DEBUG), else NULL */
    unsigned region;     /* index of the block's region in address order, 0 = lowest */
    int      used;       /* 1 allocated, 0 free (front-cache blocks included) */
    void    *slab;       /* a slab object: its slab (16 KiB, this the first byte; `size` is
                            its class), else NULL (a block) */
};

/* Return 0 to go on, non-zero to stop the walk with that value. Runs with the heap's lock
 * held: it must not call the heap (inspect excepted). */
typedef int (*kheap_walk_fn)(const struct kheap_block_info *b, void *ctx);

/* Visit every block, regions and blocks in address order (front-cache blocks as free); a slab
 * is visited object by object (slab set; cached objects as free), the heap's own block of
 * per-CPU slots not at all. 0,
 * the callback's value, KHEAP_E_CORRUPT at an invalid header (the walk stops there),
 * KHEAP_E_NOT_INIT / KHEAP_E_INVAL. O(heap + regions^2). */
int kheap_walk(kheap_walk_fn fn, void *ctx);
int kheap_walk_in(kheap_t *h, kheap_walk_fn fn, void *ctx);

/* Describe the block whose payload is p (live or free) without taking the lock, so the error
 * hook may call it (the heap must not change meanwhile). 1 and *out filled, or 0 if p is not
 * a block's payload (walked from its region's start). Never writes to the heap; reads only
 * inside its regions. O(blocks of p's region + regions^2). */
int kheap_inspect(const void *p, struct kheap_block_info *out);
int kheap_inspect_in(kheap_t *h, const void *p, struct kheap_block_info *out);

/* Live blocks grouped by allocation site (KHEAP_DEBUG; else one group, site NULL): fn gets each
 * site with its count of live blocks and their bytes, in order of each site's lowest block. At
 * most KHEAP_LEAK_SITES sites; further ones are summed under site == KHEAP_LEAK_OTHER. fn runs
 * with the lock held. The number of groups, or KHEAP_E_CORRUPT / KHEAP_E_NOT_INIT /
 * KHEAP_E_INVAL. O(heap * KHEAP_LEAK_SITES). */
#define KHEAP_LEAK_SITES       32
#define KHEAP_LEAK_OTHER       ((void *)-1)
typedef void (*kheap_leak_fn)(void *site, size_t blocks, size_t bytes, void *ctx);
int kheap_leak_report(kheap_leak_fn fn, void *ctx);
int kheap_leak_report_in(kheap_t *h, kheap_leak_fn fn, void *ctx);

/* Replace the secret behind the header check bits and the link encoding, re-stamping every
 * header and link. If any header, free-list link or front-cache link is invalid under the old
 * secret, nothing changes and the result is KHEAP_E_CORRUPT; else 0 (blocks a corrupt list left
 * on no list are re-keyed as they are). A new heap picks a fresh secret itself. O(heap +
 * regions^2). */
int kheap_set_secret(uint64_t secret);
int kheap_set_secret_in(kheap_t *h, uint64_t secret);

/* Fault injection. fail_after(n): n more allocation calls behave normally, every later one
 * returns NULL (counted in failed_allocs) until fail_after(-1). fail_rate(ppm, seed): each
 * allocation call fails with probability ppm / 10^6 from a PRNG seeded with seed (0: off).
 * Allocation calls: alloc, calloc, alloc_aligned, and realloc when it needs more memory. A
 * failing call changes nothing but failed_allocs. Per heap; a new heap has both off. O(1). */
void kheap_fail_after(long n);
void kheap_fail_rate(uint32_t per_million, uint64_t seed);
void kheap_fail_after_in(kheap_t *h, long n);
void kheap_fail_rate_in(kheap_t *h, uint32_t per_million, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif /* KHEAP_DIAG_H */
