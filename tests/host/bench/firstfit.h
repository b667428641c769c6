/*
 * firstfit.h -- the baseline kheap replaced: the original my_malloc design (24-byte headers
 * {size, is_free, pad, next}, one address-ordered free list, first-fit linear search, split on
 * allocation, merge with both neighbours on free) over one fixed arena. Benchmark use only.
 * Freestanding (no libc); not thread-safe.
 */
#ifndef FIRSTFIT_H
#define FIRSTFIT_H

#include <stddef.h>

/* Take over [start, start+size). 0, or -1 if the arena cannot hold one block. O(1). */
int ff_init(void *start, size_t size);
/* First fit: 16-aligned, NULL if no free block fits. O(free blocks). */
void *ff_malloc(size_t n);
/* Address-ordered insert and merge with free neighbours. NULL is a no-op. O(free blocks). */
void ff_free(void *p);
/* Shrinks in place; grows by malloc + copy + free (as the original did). O(free blocks). */
void *ff_realloc(void *p, size_t n);
/* align a power of two >= 16: first free block holding an aligned payload; the gap in front
 * becomes its own free block. O(free blocks). */
void *ff_aligned_alloc(size_t align, size_t n);

/* Walk the free list: ascending, inside the arena, marked free, 16-aligned payloads, no two
 * adjacent (they would have been merged). 0 if sound, else -1. O(free blocks). */
int ff_check(void);

#endif /* FIRSTFIT_H */
