/*
 * workloads.c -- the benchmark's allocation patterns, shared by the host runner and
 * the bench kernel (kbench.c). Freestanding: no libc; the only calls are the adapter's, the check
 * hooks (NULL when timing) and the inline PRNG/TSC helpers of bench.h. Scratch memory (slot
 * tables, latency array) comes from the caller through struct bench_ctx.
 */
#include "bench.h"

/* ---------------------------------------------------------------------------------------------
 * Size distributions
 * ------------------------------------------------------------------------------------------- */
#define SMALL_MIN      8u
#define SMALL_MAX      512u
#define PAIR_MIN       16u
#define PAIR_MAX       256u
#define MIXED_LOG2_MIN 3u          /* 8 B */
#define MIXED_LOG2_MAX 14u         /* 16 KiB (exclusive) */
#define LARGE_MIN      (4u << 10)
#define LARGE_MAX      (256u << 10)
#define ALIGN_LOG2_MIN 6u          /* 64 B */
#define ALIGN_LOG2_MAX 12u         /* 4 KiB */
#define ALIGNED_MIN    16u
#define ALIGNED_MAX    2048u
#define KOBJ_MIN       32u
#define KOBJ_MAX       256u
#define PAGE_SIZE      4096u

/* Log-uniform over [8 B, 16 KiB): a uniformly chosen octave, uniform inside it. */
uint32_t bench_size_mixed(struct bench_rng *r)
{
    uint32_t e = (uint32_t)bench_range(r, MIXED_LOG2_MIN, MIXED_LOG2_MAX - 1);
    return (1u << e) + (uint32_t)(bench_rand(r) & ((1u << e) - 1));
}

static uint32_t size_small(struct bench_rng *r)
{
    return (uint32_t)bench_range(r, SMALL_MIN, SMALL_MAX);
}

static uint32_t size_large(struct bench_rng *r)
{
    return (uint32_t)bench_range(r, LARGE_MIN, LARGE_MAX);
}

static uint32_t size_aligned(struct bench_rng *r)
{
    return (uint32_t)bench_range(r, ALIGNED_MIN, ALIGNED_MAX);
}

/* ---------------------------------------------------------------------------------------------
 * Timed allocator calls. Every call is one op; with c->lat set, its TSC ticks (minus the timer's
 * own overhead) go into c->lat. The byte pattern: block byte i of tag t is pat(t, i).
 * ------------------------------------------------------------------------------------------- */
#define pat bench_pat

static inline void record(struct bench_ctx *c, uint64_t t0, uint64_t t1)
{
    uint64_t d = t1 - t0;
    d = d > c->tsc_overhead ? d - c->tsc_overhead : 0;
    if (d > 0xFFFFFFFFu)
        d = 0xFFFFFFFFu;
    if (c->nlat < c->lat_cap)
        c->lat[c->nlat++] = (uint32_t)d;
}

static inline void *op_malloc(struct bench_ctx *c, size_t n, size_t align)
{
    void *p;
    c->done++;
    if (!c->lat)
        return align ? c->a->aligned_alloc(align, n) : c->a->malloc(n);
    uint64_t t0 = bench_tsc_begin();
    p = align ? c->a->aligned_alloc(align, n) : c->a->malloc(n);
    record(c, t0, bench_tsc_end());
    return p;
}

static inline void op_free(struct bench_ctx *c, void *p)
{
    c->done++;
    if (!c->lat) {
        c->a->free(p);
        return;
    }
    uint64_t t0 = bench_tsc_begin();
    c->a->free(p);
    record(c, t0, bench_tsc_end());
}

static inline void *op_realloc(struct bench_ctx *c, void *p, size_t n)
{
    void *q;
    c->done++;
    if (!c->lat)
        return c->a->realloc(p, n);
    uint64_t t0 = bench_tsc_begin();
    q = c->a->realloc(p, n);
    record(c, t0, bench_tsc_end());
    return q;
}

/* Write the first and last byte of a block, as a user would. */
static inline void touch(const struct bench_slot *s)
{
    s->p[0] = pat(s->tag, 0);
    s->p[s->n - 1] = pat(s->tag, s->n - 1);
}

/* ---------------------------------------------------------------------------------------------
 * Slot helpers: get fills an empty slot, put empties a full one, grow reallocs one.
 * ------------------------------------------------------------------------------------------- */

/* Allocate n bytes (aligned to align if non-zero) into s. 0, BENCH_E_NOMEM or BENCH_E_CHECK. */
static inline int get(struct bench_ctx *c, struct bench_slot *s, uint32_t n, size_t align)
{
    s->p = op_malloc(c, n, align);
    if (!s->p)
        return BENCH_E_NOMEM;
    s->n = n;
    s->tag = ++c->tag;
    if (c->hooks && c->hooks->on_alloc(c, s->p, n, align ? align : 16, s->tag))
        return BENCH_E_CHECK;
    touch(s);
    return 0;
}

/* Free the block in s (if any). 0 or BENCH_E_CHECK. */
static inline int put(struct bench_ctx *c, struct bench_slot *s)
{
    if (!s->p)
        return 0;
    if (c->hooks && c->hooks->on_free(c, s->p, s->n, s->tag))
        return BENCH_E_CHECK;
    op_free(c, s->p);
    s->p = 0;
    return 0;
}

/* Resize the block in s to n bytes. 0, BENCH_E_NOMEM (s unchanged) or BENCH_E_CHECK. */
static inline int grow(struct bench_ctx *c, struct bench_slot *s, uint32_t n)
{
    uint8_t *q = op_realloc(c, s->p, n);
    if (!q)
        return BENCH_E_NOMEM;
    uint32_t tag = ++c->tag;
    if (c->hooks && c->hooks->on_realloc(c, s->p, s->n, q, n, s->tag, tag))
        return BENCH_E_CHECK;
    s->p = q;
    s->n = n;
    s->tag = tag;
    touch(s);
    return 0;
}

/* Free every slot in [0, n). */
static int drain(struct bench_ctx *c, struct bench_slot *slots, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int e = put(c, &slots[i]);
        if (e && !rc)
            rc = e;
    }
    return rc;
}

static int clear(struct bench_ctx *c, size_t n)
{
    if (c->slots_cap < n)
        return BENCH_E_SCRATCH;
    for (size_t i = 0; i < n; i++)
        c->slots[i].p = 0;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The timed workloads
 * ------------------------------------------------------------------------------------------- */

/* malloc+free pairs of 16..256 B: the allocator's fast path, nothing live. */
static int wl_pairs(struct bench_ctx *c)
{
    struct bench_rng r;
    int rc = clear(c, 1);
    bench_rng_seed(&r, c->seed);
    while (!rc && c->done < c->ops) {
        rc = get(c, &c->slots[0], (uint32_t)bench_range(&r, PAIR_MIN, PAIR_MAX), 0);
        if (!rc)
            rc = put(c, &c->slots[0]);
    }
    return rc;
}

/* Churn: fill `live` slots, then replace a random one (free, allocate) until the op budget is
 * spent, then free everything. align_log2_max != 0: alignments 2^min..2^max, else plain malloc. */
static inline int churn(struct bench_ctx *c, size_t live, uint32_t (*size)(struct bench_rng *),
                        unsigned align_log2_min, unsigned align_log2_max)
{
    struct bench_rng r;
    int rc = clear(c, live);
    struct bench_slot *s = c->slots;
    bench_rng_seed(&r, c->seed);
#define CHURN_ALIGN() (align_log2_max ? \
        (size_t)1 << bench_range(&r, align_log2_min, align_log2_max) : 0)
    for (size_t i = 0; !rc && i < live; i++) {
        uint32_t n = size(&r);
        rc = get(c, &s[i], n, CHURN_ALIGN());
    }
    while (!rc && c->done < c->ops) {
        size_t i = (size_t)(bench_rand(&r) % live);
        uint32_t n = size(&r);
        rc = put(c, &s[i]);
        if (!rc)
            rc = get(c, &s[i], n, CHURN_ALIGN());
    }
#undef CHURN_ALIGN
    int e = drain(c, s, live);
    return rc ? rc : e;
}

#define SMALL_LIVE    4096
#define MIXED_LIVE    8192
#define LARGE_LIVE    512
#define ALIGNED_LIVE  1024

static int wl_small_churn(struct bench_ctx *c) { return churn(c, SMALL_LIVE, size_small, 0, 0); }
static int wl_large_churn(struct bench_ctx *c) { return churn(c, LARGE_LIVE, size_large, 0, 0); }
static int wl_mixed_churn(struct bench_ctx *c)
{
    return churn(c, MIXED_LIVE, bench_size_mixed, 0, 0);
}
static int wl_aligned(struct bench_ctx *c)
{
    return churn(c, ALIGNED_LIVE, size_aligned, ALIGN_LOG2_MIN, ALIGN_LOG2_MAX);
}

/* Realloc growth: REALLOC_BUFS buffers start at 16..64 B; a random one doubles per op until it
 * passes REALLOC_MAX, then it is freed and started again. Interleaving keeps in-place growth
 * from being free: a neighbour is often in the way. */
#define REALLOC_BUFS  16
#define REALLOC_START_MIN 16u
#define REALLOC_START_MAX 64u
#define REALLOC_MAX   (256u << 10)

static int wl_realloc(struct bench_ctx *c)
{
    struct bench_rng r;
    int rc = clear(c, REALLOC_BUFS);
    struct bench_slot *s = c->slots;
    bench_rng_seed(&r, c->seed);
    for (size_t i = 0; !rc && i < REALLOC_BUFS; i++)
        rc = get(c, &s[i], (uint32_t)bench_range(&r, REALLOC_START_MIN, REALLOC_START_MAX), 0);
    while (!rc && c->done < c->ops) {
        struct bench_slot *b = &s[bench_rand(&r) % REALLOC_BUFS];
        if (b->n * 2 > REALLOC_MAX) {
            rc = put(c, b);
            if (!rc)
                rc = get(c, b, (uint32_t)bench_range(&r, REALLOC_START_MIN, REALLOC_START_MAX), 0);
        } else {
            rc = grow(c, b, b->n * 2);
        }
    }
    int e = drain(c, s, REALLOC_BUFS);
    return rc ? rc : e;
}

/* Kernel-like trace: mostly 32..256 B objects, some 4 KiB page-aligned buffers; most objects die
 * young (a FIFO of KTRACE_RING), some live long (a pool of KTRACE_POOL replaced at random). */
#define KTRACE_POOL      2048
#define KTRACE_RING      64
#define KTRACE_PAGE_PCT  6
#define KTRACE_LONG_PCT  15

static int wl_ktrace(struct bench_ctx *c)
{
    struct bench_rng r;
    int rc = clear(c, KTRACE_POOL + KTRACE_RING);
    struct bench_slot *pool = c->slots, *ring = c->slots + KTRACE_POOL;
    size_t head = 0;
    bench_rng_seed(&r, c->seed);
    for (size_t i = 0; !rc && i < KTRACE_POOL; i++)
        rc = get(c, &pool[i], (uint32_t)bench_range(&r, KOBJ_MIN, KOBJ_MAX), 0);
    while (!rc && c->done < c->ops) {
        int page = bench_range(&r, 0, 99) < KTRACE_PAGE_PCT;
        int longlived = bench_range(&r, 0, 99) < KTRACE_LONG_PCT;
        uint32_t n = page ? PAGE_SIZE : (uint32_t)bench_range(&r, KOBJ_MIN, KOBJ_MAX);
        struct bench_slot *s;
        if (longlived) {
            s = &pool[bench_rand(&r) % KTRACE_POOL];
        } else {
            s = &ring[head];
            head = (head + 1) % KTRACE_RING;
        }
        rc = put(c, s);
        if (!rc)
            rc = get(c, s, n, page ? PAGE_SIZE : 0);
    }
    int e = drain(c, c->slots, KTRACE_POOL + KTRACE_RING);
    return rc ? rc : e;
}

/* Op budgets: a full run times every op once per round (>= 10^6 ops per workload over the
 * default 5 rounds); the smoke run only checks correctness. */
const struct bench_workload bench_workloads[BENCH_NWORKLOADS] = {
    { "pairs",        wl_pairs,       2000000, 4000,  1,
      "malloc+free pairs, 16..256 B" },
    { "small_churn",  wl_small_churn, 1000000, 12000, SMALL_LIVE,
      "4096 live, 8..512 B uniform" },
    { "mixed_churn",  wl_mixed_churn, 500000, 20000, MIXED_LIVE,
      "8192 live, 8 B..16 KiB log-uniform" },
    { "large_churn",  wl_large_churn, 200000, 2000,  LARGE_LIVE,
      "512 live, 4..256 KiB uniform" },
    { "realloc",      wl_realloc,     200000, 4000,  REALLOC_BUFS,
      "16 buffers doubling 16 B..256 KiB" },
    { "aligned",      wl_aligned,     300000, 4000,  ALIGNED_LIVE,
      "1024 live, 16..2048 B, align 64 B..4 KiB" },
    { "kernel_trace", wl_ktrace,      1000000, 8000,  KTRACE_POOL + KTRACE_RING,
      "32..256 B objects + 6% 4 KiB pages, 15% long-lived" },
};

/* ---------------------------------------------------------------------------------------------
 * Utilisation at first failure (untimed)
 * ------------------------------------------------------------------------------------------- */
#define UTIL_FREE_EVERY 4          /* churn: every 4th step frees a random live block */

int wl_util(struct bench_ctx *c, int churn_mode)
{
    struct bench_rng r;
    struct bench_slot *s = c->slots;
    size_t live = 0;
    uint64_t bytes = 0, step = 0;
    int rc = 0;
    bench_rng_seed(&r, c->seed);
    for (;; step++) {
        if (churn_mode && live && step % UTIL_FREE_EVERY == UTIL_FREE_EVERY - 1) {
            size_t i = (size_t)(bench_rand(&r) % live);
            bytes -= s[i].n;
            rc = put(c, &s[i]);
            s[i] = s[--live];
            if (rc)
                break;
            continue;
        }
        if (live == c->slots_cap) {
            rc = BENCH_E_SCRATCH;
            break;
        }
        uint32_t n = bench_size_mixed(&r);
        s[live].p = 0;
        rc = get(c, &s[live], n, 0);
        if (rc == BENCH_E_NOMEM) {          /* the first failure: measure and stop */
            rc = 0;
            break;
        }
        if (rc)
            break;
        bytes += n;
        live++;
    }
    c->live_bytes = bytes;
    int e = drain(c, s, live);
    return rc ? rc : e;
}

/* ---------------------------------------------------------------------------------------------
 * Cost vs fragment count
 * ------------------------------------------------------------------------------------------- */
#define FRAG_SMALL 32u             /* fragment payload */
#define FRAG_BIG   512u            /* fits no fragment */

uint32_t bench_select(uint32_t *v, uint64_t n, uint64_t k)
{
    uint64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t pivot = v[lo + (hi - lo) / 2];
        uint64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                uint32_t t = v[i]; v[i] = v[j]; v[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

int wl_frag(struct bench_ctx *c, uint64_t frags, uint64_t reps)
{
    uint32_t *lat = c->lat;
    uint64_t cap = c->lat_cap;
    int rc;
    if (!lat || cap < reps || reps == 0)
        return BENCH_E_SCRATCH;
    rc = clear(c, 2 * frags + 1);
    if (rc)
        return rc;
    struct bench_slot *s = c->slots, *big = &c->slots[2 * frags];
    c->lat = 0;                              /* set-up is untimed */
    for (uint64_t i = 0; !rc && i < 2 * frags; i++)
        rc = get(c, &s[i], FRAG_SMALL, 0);
    /* Free every other block, highest address first (cheapest order for an address-ordered
     * free list; the same order for every allocator). */
    for (uint64_t i = 2 * frags; !rc && i > 0; i -= 2)
        rc = put(c, &s[i - 2]);
    for (uint64_t k = 0; !rc && k < reps; k++) {
        uint64_t t0 = bench_tsc_begin();
        big->p = c->a->malloc(FRAG_BIG);
        uint64_t t1 = bench_tsc_end();
        if (!big->p) {
            rc = BENCH_E_NOMEM;
            break;
        }
        big->n = FRAG_BIG;
        big->tag = ++c->tag;
        if (c->hooks && c->hooks->on_alloc(c, big->p, FRAG_BIG, 16, big->tag)) {
            rc = BENCH_E_CHECK;
            break;
        }
        touch(big);
        if (c->hooks && c->hooks->on_free(c, big->p, big->n, big->tag)) {
            rc = BENCH_E_CHECK;
            break;
        }
        uint64_t t2 = bench_tsc_begin();
        c->a->free(big->p);
        uint64_t t3 = bench_tsc_end();
        big->p = 0;
        uint64_t d = (t1 - t0) + (t3 - t2), oh = 2 * c->tsc_overhead;
        d = d > oh ? d - oh : 0;
        lat[k] = d > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)d;
        c->done += 2;
    }
    if (!rc)
        c->frag_ticks = bench_select(lat, reps, reps / 2);
    c->nlat = rc ? 0 : reps;
    int e = drain(c, s, 2 * frags);
    c->lat = lat;
    return rc ? rc : e;
}
