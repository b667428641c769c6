/* paircost.c -- cycles per kmalloc+kfree pair, for the cost of kheap's detection options.
 * `make paircost` builds it twice, against the release and the KHEAP_DEBUG=1 host library, and
 * runs both: a 64-byte pair and a mixed ring (16 B..8 KiB, each step frees the oldest of 64
 * live blocks) over a heap already holding 2000 live blocks with holes. Median over 3000 runs
 * of 1000 pairs (rdtscp). Argument `count`: a fixed amount of work only, for callgrind. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <x86intrin.h>
#include "mm/kheap.h"

#define ARENA (64u << 20)
enum { PAIRS = 1000, RUNS = 3000, RING = 64, NSIZES = 4096, LIVE = 4000 };

static unsigned char arena[ARENA] __attribute__((aligned(4096)));
static size_t sizes[NSIZES];
static void *ring[RING];

static __attribute__((noinline)) void pairs64(int n)
{
    for (int i = 0; i < n; i++)
        kfree(kmalloc(64));
}

static __attribute__((noinline)) void mixed(int n, unsigned *k)
{
    for (int i = 0; i < n; i++, ++*k) {
        unsigned j = *k % RING;
        kfree(ring[j]);
        ring[j] = kmalloc(sizes[*k % NSIZES]);
    }
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
    static void *keep[LIVE];
    static double t64[RUNS], tmix[RUNS];
    uint64_t s = 88172645463325252ull;          /* xorshift64: sizes log-uniform 16 B..8 KiB */
    unsigned k = 0, aux;

    if (kheap_init(arena, ARENA) != 0)
        return 1;
    for (int i = 0; i < NSIZES; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        unsigned lg = 4 + s % 9;
        sizes[i] = ((size_t)1 << lg) + (s >> 32) % ((size_t)1 << lg);
    }
    for (int i = 0; i < LIVE; i++)
        keep[i] = kmalloc(sizes[(i * 7) % NSIZES]);
    for (int i = 0; i < LIVE; i += 2)
        kfree(keep[i]);
    for (int i = 0; i < RING; i++)
        ring[i] = kmalloc(sizes[i]);
    (void)argv;
    if (argc > 1) {                             /* callgrind: fixed work */
        pairs64(100000);
        mixed(100000, &k);
        return kheap_check() != 0;
    }
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = __rdtscp(&aux);
        pairs64(PAIRS);
        uint64_t t1 = __rdtscp(&aux);
        mixed(PAIRS, &k);
        uint64_t t2 = __rdtscp(&aux);
        t64[r] = (double)(t1 - t0) / PAIRS;
        tmix[r] = (double)(t2 - t1) / PAIRS;
    }
    printf("%-8s 64 B pair %6.1f cycles, mixed pair %6.1f cycles\n",
           KHEAP_DEBUG_NAME, median(t64), median(tmix));
    return kheap_check() != 0;
}
