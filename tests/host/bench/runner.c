/*
 * runner.c -- one benchmark round for one allocator: the main() of build/bench/bin/bench-<name>
 * (linked with that allocator's adapter). It gives harness.c its memory (mmap), clock, output
 * (stdout) and, in check mode (--check), hooks that verify every block. The driver (driver.c)
 * starts it once per round and reads the records; run by hand it is a quick look at one
 * allocator (e.g. `build/bench/bin/bench-kheap --only small_churn --no-util --no-frag`).
 *
 * Records, one per line, comma-separated (driver.c parses them):
 *   I,alloc,arena_bytes,tsc_overhead,tsc_step,tsc_mhz,version   setup
 *   T,alloc,workload,round,seed,ops,ns                    throughput pass
 *   K,alloc,workload,round,seed,ops,tsc_ticks             the same, without a wall clock (kernel)
 *   L,alloc,workload,round,samples,max,bucket:count ...   latency pass (histogram, bench.h)
 *   U,alloc,variant,seed,live_bytes,arena_bytes           utilisation at first failure
 *   F,alloc,frags,round,reps,median_ticks                 cost vs fragment count
 *   C,alloc,name,ok(1|0),message                          check mode results
 *   # text                                                notes
 * and from the other per-allocator programs the driver runs:
 *   M,alloc,workload,round,threads,seed,ops,ns            threads-<name> (threads.c)
 *   P,alloc,round,objects,build_ns,walk_ns,free_seq_ns,free_rnd_ns   locality-<name> --record
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "bench.h"
#include "host_util.h"

#define ARENA_FULL    (256ul << 20)   /* the fixed arena for every workload but util */
#define SLOTS_CAP     (1ul << 20)     /* scratch slots (util with 8 B blocks needs ~2^18) */
#define LAT_CAP       (1ul << 22)     /* latency samples per pass */
#define REG_LOG2      21              /* check registry: 2^21 entries */
#define OVERLAP_EVERY 2048            /* check mode: full overlap scan every N allocations */

static const struct bench_alloc *A;
static struct bench_env ENV;

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static double tsc_mhz(void)
{
    uint64_t n0 = now_ns(), t0 = bench_tsc_begin();
    while (now_ns() - n0 < 20000000ull)
        ;
    uint64_t t1 = bench_tsc_end(), n1 = now_ns();
    return (double)(t1 - t0) * 1000.0 / (double)(n1 - n0);
}

/* ---------------------------------------------------------------------------------------------
 * Check mode: a registry of live blocks (open addressing on the pointer) and the hooks.
 * ------------------------------------------------------------------------------------------- */
struct reg_entry { uintptr_t p; size_t n; };
struct checker {
    struct reg_entry *tab;
    size_t mask, count, allocs;
    int failed;
    char msg[200];
};
static struct checker CK;

static void ck_fail(const char *fmt, ...)
{
    if (CK.failed++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(CK.msg, sizeof CK.msg, fmt, ap);
    va_end(ap);
}

static size_t reg_hash(uintptr_t p)
{
    return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> (64 - REG_LOG2));
}

static struct reg_entry *reg_find(uintptr_t p)
{
    for (size_t i = reg_hash(p) & CK.mask;; i = (i + 1) & CK.mask) {
        if (CK.tab[i].p == p)
            return &CK.tab[i];
        if (!CK.tab[i].p)
            return NULL;
    }
}

static int reg_insert(uintptr_t p, size_t n)
{
    if (CK.count * 2 > CK.mask)
        return -1;
    size_t i = reg_hash(p) & CK.mask;
    while (CK.tab[i].p && CK.tab[i].p != p)
        i = (i + 1) & CK.mask;
    if (CK.tab[i].p)
        return -2;                               /* already live: handed out twice */
    CK.tab[i].p = p;
    CK.tab[i].n = n;
    CK.count++;
    return 0;
}

/* Delete with backward shift (linear probing keeps no tombstones). */
static void reg_remove(struct reg_entry *e)
{
    size_t i = (size_t)(e - CK.tab), j = i;
    CK.tab[i].p = 0;
    CK.count--;
    for (;;) {
        j = (j + 1) & CK.mask;
        if (!CK.tab[j].p)
            return;
        size_t h = reg_hash(CK.tab[j].p) & CK.mask;
        /* move j back to i unless its home lies cyclically in (i, j] */
        if ((i < j) ? (h <= i || h > j) : (h <= i && h > j)) {
            CK.tab[i] = CK.tab[j];
            CK.tab[j].p = 0;
            i = j;
        }
    }
}

static int cmp_entry(const void *a, const void *b)
{
    uintptr_t x = ((const struct reg_entry *)a)->p, y = ((const struct reg_entry *)b)->p;
    return (x > y) - (x < y);
}

/* Every live block against its neighbour in address order. */
static void overlap_scan(void)
{
    static struct reg_entry *v;
    if (!v)
        v = map(sizeof *v * (CK.mask + 1) / 2);
    size_t k = 0;
    for (size_t i = 0; i <= CK.mask; i++)
        if (CK.tab[i].p)
            v[k++] = CK.tab[i];
    qsort(v, k, sizeof *v, cmp_entry);
    for (size_t i = 1; i < k; i++)
        if (v[i - 1].p + v[i - 1].n > v[i].p)
            ck_fail("blocks overlap: %#lx+%zu and %#lx", (unsigned long)v[i - 1].p,
                    v[i - 1].n, (unsigned long)v[i].p);
}

/* The alignment malloc owes an n-byte block: 16, or the largest power of two <= n below 16. */
static size_t natural_align(size_t n)
{
    size_t a = 16;
    while (a > 1 && a > n)
        a >>= 1;
    return a;
}


static int register_block(void *p, size_t n, size_t align, uint32_t tag)
{
    uintptr_t a = (uintptr_t)p;
    if (align == 16)
        align = natural_align(n);
    if (a % align)
        ck_fail("%p (%zu bytes) not aligned to %zu", p, n, align);
    if (A->takes_arena &&
        (a < (uintptr_t)ENV.arena || a + n > (uintptr_t)ENV.arena + ENV.arena_used))
        ck_fail("%p (%zu bytes) outside the arena", p, n);
    int rc = reg_insert(a, n);
    if (rc == -2)
        ck_fail("%p handed out while live", p);
    else if (rc)
        ck_fail("check registry full");
    pat_fill(p, n, tag);
    if (++CK.allocs % OVERLAP_EVERY == 0)
        overlap_scan();
    return CK.failed;
}

static int hook_alloc(struct bench_ctx *c, void *p, size_t n, size_t align, uint32_t tag)
{
    (void)c;
    return register_block(p, n, align, tag);
}

static int hook_free(struct bench_ctx *c, void *p, size_t n, uint32_t tag)
{
    (void)c;
    struct reg_entry *e = reg_find((uintptr_t)p);
    if (!e || e->n != n)
        ck_fail("freeing %p which is not a live block of %zu bytes", p, n);
    size_t bad = pat_bad(p, n, tag);
    if (bad)
        ck_fail("%p (%zu bytes) byte %zu changed while live", p, n, bad - 1);
    if (e)
        reg_remove(e);
    return CK.failed;
}

static int hook_realloc(struct bench_ctx *c, void *old, size_t old_n, void *p, size_t n,
                        uint32_t old_tag, uint32_t tag)
{
    (void)c;
    struct reg_entry *e = reg_find((uintptr_t)old);
    if (!e)
        ck_fail("realloc of %p which is not live", old);
    else
        reg_remove(e);
    size_t bad = pat_bad(p, old_n < n ? old_n : n, old_tag);
    if (bad)
        ck_fail("realloc %p -> %p lost byte %zu", old, p, bad - 1);
    return register_block(p, n, 16, tag);
}

static const struct bench_hooks HOOKS = { hook_alloc, hook_free, hook_realloc };

static void ck_begin(const struct bench_env *e)
{
    (void)e;
    memset(CK.tab, 0, sizeof *CK.tab * (CK.mask + 1));
    CK.count = CK.allocs = 0;
    CK.failed = 0;
    CK.msg[0] = 0;
}

/* After a workload freed everything: nothing may be left registered, the allocator's own check
 * must pass, and an arena allocator must have merged its arena back (one big block fits). */
static const char *ck_end(const struct bench_env *e, int rc)
{
    if (rc)
        return CK.failed ? CK.msg : NULL;        /* the harness reports rc itself */
    overlap_scan();
    if (CK.count)
        ck_fail("%zu blocks still registered after the workload", CK.count);
    if (A->check && A->check())
        ck_fail("the allocator's own consistency check failed");
    if (A->takes_arena) {
        void *p = A->malloc(e->arena_used / 10 * 9);
        if (!p)
            ck_fail("a block of 90%% of the arena does not fit after freeing all (no merge?)");
        A->free(p);
    }
    return CK.failed ? CK.msg : NULL;
}

static const struct bench_check CHECK = { &HOOKS, ck_begin, ck_end };

static void emit(const char *line) { printf("%s\n", line); }

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */
static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--smoke] [--check] [--round R] [--ops-div D] [--only WL,...]\n"
            "          [--util-seeds N] [--no-util] [--frags F,...] [--no-frag]\n"
            "One benchmark round of allocator '%s'; records on stdout (see runner.c).\n",
            argv0, bench_alloc_impl.name);
    exit(2);
}

int main(int argc, char **argv)
{
    int smoke = 0, check = 0, util = 1, frag = 1;
    unsigned round = 0, util_seeds = 7, ops_div = 1, nfrags = 4;
    const char *only = NULL;
    uint64_t frags[8] = { 100, 1000, 10000, 100000 };

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--smoke")) smoke = 1;
        else if (!strcmp(a, "--check")) check = 1;
        else if (!strcmp(a, "--no-util")) util = 0;
        else if (!strcmp(a, "--no-frag")) frag = 0;
        else if (!strcmp(a, "--round") && v) round = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--ops-div") && v) ops_div = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--util-seeds") && v) util_seeds = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--only") && v) only = argv[++i];
        else if (!strcmp(a, "--frags") && v) {
            char *s = argv[++i], *end;
            for (nfrags = 0; nfrags < 8 && *s; s = *end ? end + 1 : end)
                frags[nfrags++] = strtoull(s, &end, 10);
        } else usage(argv[0]);
    }
    if (ops_div < 1)
        ops_div = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);

    A = &bench_alloc_impl;
    ENV.a = A;
    ENV.slots = map(sizeof *ENV.slots * SLOTS_CAP);
    ENV.slots_cap = SLOTS_CAP;
    ENV.lat = map(sizeof *ENV.lat * LAT_CAP);
    ENV.lat_cap = LAT_CAP;
    ENV.arena_size = ARENA_FULL;
    if (A->takes_arena)
        ENV.arena = map(ARENA_FULL);              /* pre-touched (MAP_POPULATE) */
    ENV.now_ns = now_ns;
    ENV.emit = emit;
    ENV.check = check ? &CHECK : NULL;
    if (check) {
        CK.mask = (1ul << REG_LOG2) - 1;
        CK.tab = map(sizeof *CK.tab * (CK.mask + 1));
    }
    uint64_t step;
    bench_calibrate(&ENV, &step);
    bench_info(&ENV, (uint64_t)(tsc_mhz() + 0.5));

    int ok = 1;
    for (unsigned id = 0; id < BENCH_NWORKLOADS; id++) {
        const struct bench_workload *w = &bench_workloads[id];
        if (only && !strstr(only, w->name))
            continue;
        uint64_t ops = smoke ? w->ops_smoke : w->ops_full / ops_div;
        ok &= bench_workload(&ENV, id, round, ops);
    }
    if (util && !only)
        ok &= bench_util(&ENV, smoke ? 2 : util_seeds);
    if (frag && !only)
        ok &= bench_frag(&ENV, frags, smoke ? 2 : nfrags, round);
    return ok ? 0 : 1;
}
