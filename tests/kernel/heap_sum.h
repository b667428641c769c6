/* heap_sum.h -- for the kernel's heap tests: a heap added up piece by piece (kheap_pieces_in,
 * kernel/heapdump.c: the walk's blocks, its slabs with their objects folded, and the block the
 * walk does not show, the heap's own per-CPU slots), and the slab tier's size classes. */
#ifndef TESTS_KERNEL_HEAP_SUM_H
#define TESTS_KERNEL_HEAP_SUM_H

#include "kernel.h"
#include "mm/kheap.h"

struct heap_sum {
    size_t   blocks, used, free, largest;   /* the walk's blocks: how many, bytes, largest free */
    size_t   slabs, slab_bytes;             /* slabs, bytes of their blocks */
    size_t   objects, live, live_bytes, object_free_bytes;  /* their objects */
    size_t   owns, own;                     /* blocks the walk does not show, their bytes */
    size_t   unplaced;                      /* bytes in none of the pieces (0 in a sound heap) */
    unsigned regions;
    int      rc;                            /* kheap_pieces_in's result */
};

static inline int heap_sum_piece(const struct kheap_piece *p, void *ctx)
{
    struct heap_sum *s = ctx;
    s->regions = p->region + 1;
    switch (p->kind) {
    case KHEAP_PIECE_BLOCK:
        s->blocks++;
        if (p->block.used) {
            s->used += p->size;
        } else {
            s->free += p->size;
            if (p->size > s->largest)
                s->largest = p->size;
        }
        break;
    case KHEAP_PIECE_SLAB:
        s->slabs++;
        s->slab_bytes += p->size;
        s->objects += p->live + p->free;
        s->live += p->live;
        s->live_bytes += p->live * p->obj_size;
        s->object_free_bytes += p->free * p->obj_size;
        break;
    case KHEAP_PIECE_OWN:
        s->owns++;
        s->own += p->size;
        break;
    }
    return 0;
}

static inline struct heap_sum heap_sum_of(kheap_t *h)
{
    struct heap_sum s = { 0 };
    s.rc = kheap_pieces_in(h, heap_sum_piece, &s, &s.unplaced);
    return s;
}

/* The slab tier's object sizes (docs/heap.md): 16..128 step 16, 160..256 step 32, 320..512
 * step 64. */
static inline int slab_class_size(size_t n)
{
    return (n >= 16 && n <= 128 && n % 16 == 0) || (n > 128 && n <= 256 && n % 32 == 0) ||
           (n > 256 && n <= 512 && n % 64 == 0);
}

/* The largest request the slab tier serves (kheap.h: the debug build's extra bytes count). */
#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
#define SLAB_REQ_MAX (512 - KHEAP_DEBUG_EXTRA)
#else
#define SLAB_REQ_MAX 512
#endif

/* The object size an n-byte kmalloc gets (n <= SLAB_REQ_MAX). */
static inline size_t slab_class_of(size_t n)
{
#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
    n += KHEAP_DEBUG_EXTRA;
#endif
    size_t c = 16;
    while (!slab_class_size(c) || c < n)
        c += 16;
    return c;
}

#endif
