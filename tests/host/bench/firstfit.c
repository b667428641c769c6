/*
 * firstfit.c -- the first-fit baseline of the benchmark: the original my_malloc design that
 * kheap replaced, rewritten in C over a fixed arena (see firstfit.h). Every block starts with a
 * 24-byte header; free blocks sit on one singly linked list in address order:
 *
 *   block:  [ size | is_free | pad | next ][ payload ... ]     size = whole block, header included
 *   list:   head -> free -> free -> ... -> NULL                (ascending addresses)
 *
 * Blocks start at 8 mod 16 and are multiples of 16 long, so every payload is 16-aligned.
 * Freestanding: no libc (the realloc copy is __builtin_memcpy, a memcpy call at worst).
 */
#include <stdint.h>
#include "firstfit.h"

struct ff_block {
    size_t size;                /* bytes in the block, header included */
    uint32_t is_free;
    uint32_t pad;
    struct ff_block *next;      /* next free block (higher address); NULL when allocated */
};
_Static_assert(sizeof(struct ff_block) == 24, "the original header is 24 bytes");

#define FF_HDR     sizeof(struct ff_block)
#define FF_ALIGN   16u
#define FF_MIN     48u          /* header + 24 payload bytes, a multiple of FF_ALIGN */

static struct ff_block *ff_head;
static uintptr_t ff_lo, ff_hi;  /* the arena, for sanity checks on free */

static inline uintptr_t round_up(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }
static inline void *payload(struct ff_block *b) { return (uint8_t *)b + FF_HDR; }
static inline struct ff_block *header(void *p)
{
    return (struct ff_block *)((uint8_t *)p - FF_HDR);
}
static inline struct ff_block *at(uintptr_t a) { return (struct ff_block *)a; }

/* Block size for an n-byte payload; 0 if absurd. */
static size_t block_size(size_t n)
{
    if (n > ff_hi - ff_lo)
        return 0;
    size_t s = round_up(n + FF_HDR, FF_ALIGN);
    return s < FF_MIN ? FF_MIN : s;
}

int ff_init(void *start, size_t size)
{
    uintptr_t a = round_up((uintptr_t)start + 8, FF_ALIGN) - 8;
    uintptr_t end = (uintptr_t)start + size;
    if (end < (uintptr_t)start || end <= a || end - a < FF_MIN)
        return -1;
    size_t len = (end - a) & ~(uintptr_t)(FF_ALIGN - 1);
    ff_head = at(a);
    ff_head->size = len;
    ff_head->is_free = 1;
    ff_head->next = 0;
    ff_lo = a;
    ff_hi = a + len;
    return 0;
}

/* Allocate `need` bytes from free block b (list predecessor prev): split off the tail if it
 * can hold a block, unlink what is used. */
static void *take(struct ff_block *b, struct ff_block *prev, size_t need)
{
    struct ff_block *rest = b->next;
    if (b->size - need >= FF_MIN) {
        rest = at((uintptr_t)b + need);
        rest->size = b->size - need;
        rest->is_free = 1;
        rest->next = b->next;
        b->size = need;
    }
    if (prev)
        prev->next = rest;
    else
        ff_head = rest;
    b->is_free = 0;
    b->next = 0;
    return payload(b);
}

void *ff_malloc(size_t n)
{
    size_t need = block_size(n);
    if (!need)
        return 0;
    for (struct ff_block *b = ff_head, *prev = 0; b; prev = b, b = b->next)
        if (b->size >= need)
            return take(b, prev, need);
    return 0;
}

/* Insert b into the address-ordered list and merge it with free physical neighbours:
 *   [ prev ][ b ][ next ]  =>  [ ------ prev ------ ]   (each merge only if adjacent) */
static void insert(struct ff_block *b)
{
    struct ff_block *prev = 0, *cur = ff_head;
    while (cur && cur < b) {
        prev = cur;
        cur = cur->next;
    }
    b->is_free = 1;
    b->next = cur;
    if (cur && (uintptr_t)b + b->size == (uintptr_t)cur) {
        b->size += cur->size;
        b->next = cur->next;
    }
    if (prev && (uintptr_t)prev + prev->size == (uintptr_t)b) {
        prev->size += b->size;
        prev->next = b->next;
    } else if (prev) {
        prev->next = b;
    } else {
        ff_head = b;
    }
}

void ff_free(void *p)
{
    if (!p)
        return;
    struct ff_block *b = header(p);
    if ((uintptr_t)b < ff_lo || (uintptr_t)b >= ff_hi || b->is_free)
        return;                 /* not ours, or a double free: ignored */
    insert(b);
}

void *ff_realloc(void *p, size_t n)
{
    if (!p)
        return ff_malloc(n);
    if (n == 0) {
        ff_free(p);
        return 0;
    }
    struct ff_block *b = header(p);
    size_t need = block_size(n);
    if (!need)
        return 0;
    if (need <= b->size) {                      /* shrink in place, free the tail */
        if (b->size - need >= FF_MIN) {
            struct ff_block *tail = at((uintptr_t)b + need);
            tail->size = b->size - need;
            b->size = need;
            insert(tail);
        }
        return p;
    }
    void *q = ff_malloc(n);                     /* grow: move */
    if (!q)
        return 0;
    __builtin_memcpy(q, p, b->size - FF_HDR);
    ff_free(p);
    return q;
}

void *ff_aligned_alloc(size_t align, size_t n)
{
    size_t need = block_size(n);
    if (!need || align < FF_ALIGN || (align & (align - 1)))
        return 0;
    for (struct ff_block *b = ff_head, *prev = 0; b; prev = b, b = b->next) {
        uintptr_t start = (uintptr_t)b, end = start + b->size;
        uintptr_t blk = round_up(start + FF_HDR, align) - FF_HDR;
        while (blk != start && blk - start < FF_MIN)
            blk += align;                       /* the front gap must hold a block */
        if (blk + need > end)
            continue;
        if (blk != start) {                     /* [ b: gap ][ rest ... ] */
            struct ff_block *rest = at(blk);
            rest->size = end - blk;
            rest->is_free = 1;
            rest->next = b->next;
            b->size = blk - start;
            b->next = rest;
            prev = b;
            b = rest;
        }
        return take(b, prev, need);
    }
    return 0;
}

int ff_check(void)
{
    uintptr_t last_end = 0;
    for (struct ff_block *b = ff_head; b; b = b->next) {
        uintptr_t a = (uintptr_t)b;
        if (a < ff_lo || a + b->size > ff_hi || b->size < FF_MIN || b->size % FF_ALIGN ||
            (a + FF_HDR) % FF_ALIGN || !b->is_free || a <= last_end)
            return -1;                          /* a <= last_end: unordered, or not merged */
        last_end = a + b->size;
    }
    return 0;
}
