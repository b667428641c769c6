/* paircost.c -- cycles per allocation+free pair, for the cost of kheap's detection options and
 * of the instance calls. `make paircost` builds it twice, against the release and the
 * KHEAP_DEBUG=1 host library, and runs both: a 64-byte pair and a mixed ring (16 B..8 KiB, each
 * step frees the oldest of 64 live blocks) over a heap already holding 2000 live blocks with
 * holes, once through kmalloc/kfree (the default heap) and once through kheap_alloc/kheap_free
 * (a heap of kheap_create), interleaved in blocks of 100 runs. Median over 3000 runs of 1000
 * pairs (rdtscp).
 * Argument `count`: a fixed amount of work only, for callgrind. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <x86intrin.h>
#include "mm/kheap.h"

#define ARENA (64u << 20)
enum { PAIRS = 1000, RUNS = 3000, BLOCK = 100, RING = 64, NSIZES = 4096, LIVE = 4000 };

static unsigned char arena[2][ARENA] __attribute__((aligned(4096)));
static size_t sizes[NSIZES];

/* One heap under test: the default one (h == NULL) or an instance. */
struct bench {
    kheap_t *h;
    void *ring[RING];
    unsigned k;
    double t64[RUNS], tmix[RUNS];
};

static inline void *b_alloc(kheap_t *h, size_t n) { return h ? kheap_alloc(h, n) : kmalloc(n); }
static inline void b_free(kheap_t *h, void *p) { h ? kheap_free(h, p) : kfree(p); }

static __attribute__((noinline)) void pairs64(kheap_t *h, int n)
{
    for (int i = 0; i < n; i++)
        b_free(h, b_alloc(h, 64));
}

static __attribute__((noinline)) void mixed(struct bench *b, int n)
{
    for (int i = 0; i < n; i++, b->k++) {
        unsigned j = b->k % RING;
        b_free(b->h, b->ring[j]);
        b->ring[j] = b_alloc(b->h, sizes[b->k % NSIZES]);
    }
}

static void setup(struct bench *b)
{
    static void *keep[LIVE];
    for (int i = 0; i < LIVE; i++)
        keep[i] = b_alloc(b->h, sizes[(i * 7) % NSIZES]);
    for (int i = 0; i < LIVE; i += 2)
        b_free(b->h, keep[i]);
    for (int i = 0; i < RING; i++)
        b->ring[i] = b_alloc(b->h, sizes[i]);
}

static void run(struct bench *b, int r)
{
    unsigned aux;
    uint64_t t0 = __rdtscp(&aux);
    pairs64(b->h, PAIRS);
    uint64_t t1 = __rdtscp(&aux);
    mixed(b, PAIRS);
    uint64_t t2 = __rdtscp(&aux);
    b->t64[r] = (double)(t1 - t0) / PAIRS;
    b->tmix[r] = (double)(t2 - t1) / PAIRS;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof *v, cmp);
    return v[RUNS / 2];
}

int main(int argc, char **argv)
{
    static struct bench dflt, inst;
    uint64_t s = 88172645463325252ull;          /* xorshift64: sizes log-uniform 16 B..8 KiB */

    if (kheap_init(arena[0], ARENA) != 0 || !(inst.h = kheap_create(arena[1], ARENA)))
        return 1;
    for (int i = 0; i < NSIZES; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        unsigned lg = 4 + s % 9;
        sizes[i] = ((size_t)1 << lg) + (s >> 32) % ((size_t)1 << lg);
    }
    setup(&dflt);
    setup(&inst);
    (void)argv;
    if (argc > 1) {                             /* callgrind: fixed work, default heap */
        pairs64(NULL, 100000);
        mixed(&dflt, 100000);
        return kheap_check() != 0;
    }
    for (int r = 0; r < RUNS; r += BLOCK) {     /* interleaved in blocks: each stays warm */
        for (int i = r; i < r + BLOCK; i++)
            run(&dflt, i);
        for (int i = r; i < r + BLOCK; i++)
            run(&inst, i);
    }
    printf("%-8s 64 B pair %6.1f cycles, mixed pair %6.1f cycles (kmalloc/kfree)\n",
           KHEAP_DEBUG_NAME, median(dflt.t64), median(dflt.tmix));
    printf("%-8s 64 B pair %6.1f cycles, mixed pair %6.1f cycles (kheap_alloc/kheap_free)\n",
           KHEAP_DEBUG_NAME, median(inst.t64), median(inst.tmix));
    return kheap_check() != 0 || kheap_verify(inst.h) != 0;
}
