/*
 * bench.h -- shared declarations of the kheap benchmark: the allocator adapter
 * vtable, the workload context, the deterministic PRNG, the TSC timer and the latency
 * histogram. workloads.c and firstfit.c use only this header and <stddef.h>/<stdint.h>, so
 * they can be compiled freestanding into a bench kernel; runner.c and driver.c are the host side.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Allocator adapter: one per allocator, each linked into its own runner binary
 * (build/bench/bin/bench-<name>), because jemalloc and mimalloc replace malloc process-wide.
 * ------------------------------------------------------------------------------------------- */
struct bench_alloc {
    const char *name;
    /* 1: the allocator manages exactly the arena given to init (kheap, first-fit); 0: it gets
     * its memory from the OS itself and ignores the arena (glibc, jemalloc, mimalloc). */
    int takes_arena;
    /* (Re)start over [arena, arena+size). Returns 0, or non-zero if it refuses the arena. */
    int (*init)(void *arena, size_t size);
    void *(*malloc)(size_t n);
    void (*free)(void *p);
    void *(*realloc)(void *p, size_t n);
    /* align: a power of two >= 16. */
    void *(*aligned_alloc)(size_t align, size_t n);
    /* Forget every live block (arena allocators re-init; the others do nothing: every workload
     * frees what it allocated). */
    void (*reset)(void);
    /* Optional (NULL: none): the allocator's own consistency check, 0 if sound. Check mode
     * runs it after every workload. */
    int (*check)(void);
    /* Optional: a version string for the report (NULL: unknown). */
    const char *(*version)(void);
    /* Optional, host only (the threads runner, threads.c; NULL: its calls are thread-safe as
     * they are): make the allocator's calls safe from several threads at once, until the next
     * init. The threads runner calls it after every init. 0, or non-zero if it cannot. */
    int (*threads)(void);
};

/* The byte pattern the workloads (first and last byte) and the check hooks (every byte) write:
 * byte i of the block tagged t. */
static inline uint8_t bench_pat(uint32_t tag, size_t i) { return (uint8_t)(tag * 157u + i); }

/* Defined by exactly one adapter_<name>.c per runner binary. An image holding several
 * adapters (a bench kernel) compiles each with -DBENCH_ALLOC_SYMBOL=bench_alloc_<name>. */
#ifndef BENCH_ALLOC_SYMBOL
#define BENCH_ALLOC_SYMBOL bench_alloc_impl
#endif
extern const struct bench_alloc BENCH_ALLOC_SYMBOL;

/* ---------------------------------------------------------------------------------------------
 * PRNG: xoshiro256** seeded through splitmix64. Deterministic on every platform.
 * ------------------------------------------------------------------------------------------- */
struct bench_rng { uint64_t s[4]; };

static inline uint64_t bench_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void bench_rng_seed(struct bench_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = bench_splitmix64(&seed);
}

static inline uint64_t bench_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t bench_rand(struct bench_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = bench_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bench_rotl(s[3], 45);
    return result;
}

/* The seed of workload `id` in round `round`: the same for every allocator within a round.
 * Ids 0..BENCH_NWORKLOADS-1 are the timed workloads, 100/101 the utilisation runs (round =
 * seed index there). */
#define BENCH_SEED_BASE 0x6b68656170ull      /* "kheap" */
static inline uint64_t bench_seed(unsigned id, unsigned round)
{
    uint64_t x = BENCH_SEED_BASE + id * 1000003ull + round;
    return bench_splitmix64(&x);
}

/* Uniform in [lo, hi] (inclusive); the modulo bias is < 2^-40 for our ranges. */
static inline uint64_t bench_range(struct bench_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + bench_rand(r) % (hi - lo + 1);
}

/* ---------------------------------------------------------------------------------------------
 * TSC timer: lfence;rdtsc;lfence before, rdtscp;lfence after, so the measured window holds the
 * call and nothing else. Ticks are TSC ticks (the nominal clock), called cycles in the output.
 * ------------------------------------------------------------------------------------------- */
static inline uint64_t bench_tsc_begin(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t bench_tsc_end(void)
{
    uint32_t lo, hi, aux;
    __asm__ volatile("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi), "=c"(aux) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

/* ---------------------------------------------------------------------------------------------
 * Latency histogram: exact below 256 ticks, then 32 buckets per power of two (<= 3.1% wide).
 * Bucket values are lower bounds, so a percentile read from it never exceeds the true one.
 * ------------------------------------------------------------------------------------------- */
#define HIST_EXACT      256u
#define HIST_SUB_LOG2   5
#define HIST_BUCKETS    (HIST_EXACT + (32 - 8) * (1u << HIST_SUB_LOG2))

static inline unsigned hist_bucket(uint32_t v)
{
    if (v < HIST_EXACT)
        return v;
    unsigned e = 31u - (unsigned)__builtin_clz(v);          /* 8..31 */
    unsigned sub = (v >> (e - HIST_SUB_LOG2)) & ((1u << HIST_SUB_LOG2) - 1);
    return HIST_EXACT + (e - 8) * (1u << HIST_SUB_LOG2) + sub;
}

static inline uint32_t hist_value(unsigned b)
{
    if (b < HIST_EXACT)
        return b;
    unsigned e = 8 + (b - HIST_EXACT) / (1u << HIST_SUB_LOG2);
    unsigned sub = (b - HIST_EXACT) % (1u << HIST_SUB_LOG2);
    return (1u << e) | (sub << (e - HIST_SUB_LOG2));
}

/* ---------------------------------------------------------------------------------------------
 * Workloads (workloads.c). Each one drives the adapter through a fixed, seeded sequence of
 * allocator calls ("ops": every malloc, free, realloc and aligned_alloc is one op), writes the
 * first and last byte of every block it gets, frees everything it allocated and returns 0, or
 * a negative BENCH_E_* code.
 * ------------------------------------------------------------------------------------------- */
#define BENCH_E_NOMEM   (-1)    /* the allocator returned NULL where the workload needs memory */
#define BENCH_E_CHECK   (-2)    /* a check hook found a wrong block (check mode only) */
#define BENCH_E_SCRATCH (-3)    /* the harness gave too little scratch memory */
#define BENCH_E_ARENA   (-4)    /* the allocator refused the arena (init failed) */

/* A live block as the workloads track it. tag seeds the byte pattern written into it. */
struct bench_slot {
    uint8_t *p;
    uint32_t n;
    uint32_t tag;
};

struct bench_ctx;
/* Check hooks (host check mode; NULL in timed runs). Return 0, or non-zero on a wrong block. */
struct bench_hooks {
    int (*on_alloc)(struct bench_ctx *c, void *p, size_t n, size_t align, uint32_t tag);
    int (*on_free)(struct bench_ctx *c, void *p, size_t n, uint32_t tag);
    /* p moved (or not) from old to new: checks min(old_n, new_n) bytes kept, re-registers it. */
    int (*on_realloc)(struct bench_ctx *c, void *old, size_t old_n, void *p, size_t n,
                      uint32_t old_tag, uint32_t tag);
};

struct bench_ctx {
    const struct bench_alloc *a;
    uint64_t seed;
    uint64_t ops;                 /* op budget (a workload may overshoot by its live set) */
    /* Per-op TSC ticks, timer overhead subtracted; NULL: untimed (throughput pass). */
    uint32_t *lat;
    uint64_t lat_cap;
    uint64_t tsc_overhead;
    const struct bench_hooks *hooks;   /* NULL: no checks */
    void *hook_state;
    /* Scratch for the slot tables, from the harness (no allocation inside a workload). */
    struct bench_slot *slots;
    size_t slots_cap;
    /* Results. */
    uint64_t done;                /* ops made */
    uint64_t nlat;                /* latencies recorded */
    uint64_t live_bytes;          /* util workload: requested bytes live at the first NULL */
    uint64_t frag_ticks;          /* frag workload: median ticks of one malloc+free pair */
    uint32_t tag;                 /* running tag counter */
};

typedef int (*bench_workload_fn)(struct bench_ctx *c);

struct bench_workload {
    const char *name;
    bench_workload_fn run;
    uint64_t ops_full;            /* op budget of a full run */
    uint64_t ops_smoke;           /* op budget of a smoke run */
    size_t slots;                 /* scratch slots needed */
    const char *what;             /* one line for the table */
};

/* The timed workloads, in table order; BENCH_NWORKLOADS entries. */
#define BENCH_NWORKLOADS 7
extern const struct bench_workload bench_workloads[BENCH_NWORKLOADS];

/* Utilisation at first failure: grow the live set (mixed sizes) until the first NULL;
 * c->live_bytes = requested bytes live then. churn != 0: one free of a random live block per
 * three allocations (fragmentation), otherwise allocations only. */
int wl_util(struct bench_ctx *c, int churn);

/* Cost vs fragment count: make `frags` free fragments (2*frags small blocks, every other one
 * freed, neighbours kept live) then time `reps` malloc+free pairs of a size no fragment fits;
 * c->frag_ticks = median pair cost. Needs 2*frags + reps slots of scratch. */
int wl_frag(struct bench_ctx *c, uint64_t frags, uint64_t reps);

/* Mixed-size distribution (log-uniform 8 B..16 KiB), shared with the util workload. */
uint32_t bench_size_mixed(struct bench_rng *r);

/* k-th smallest of v[0..n) (quickselect; reorders v). */
uint32_t bench_select(uint32_t *v, uint64_t n, uint64_t k);

/* ---------------------------------------------------------------------------------------------
 * One benchmark round (harness.c): everything a round needs comes from its environment, so
 * the host runner (runner.c) and a bench kernel share the code. Records go out through emit
 * in the format runner.c documents.
 * ------------------------------------------------------------------------------------------- */
struct bench_env;

/* Check mode: hooks for every block, plus bracket calls around each checked pass. */
struct bench_check {
    const struct bench_hooks *hooks;
    void (*begin)(const struct bench_env *e);
    /* After the pass (rc = its result): NULL if every block was sound, else what was wrong. */
    const char *(*end)(const struct bench_env *e, int rc);
};

struct bench_env {
    const struct bench_alloc *a;
    uint8_t *arena;                  /* the fixed arena (used by arena allocators only) */
    size_t arena_size;
    size_t arena_used;               /* how much of it the allocator was last given */
    struct bench_slot *slots;        /* scratch: >= 2 * max fragments + 1, >= 65536 for util */
    size_t slots_cap;
    uint32_t *lat;                   /* scratch: >= the largest op budget + its live set */
    uint64_t lat_cap;
    uint64_t tsc_overhead, tsc_step; /* set by bench_calibrate */
    uint64_t (*now_ns)(void);        /* wall clock; NULL: throughput in TSC ticks (K records) */
    void (*emit)(const char *line);  /* one record line, without the newline */
    const struct bench_check *check; /* NULL: no check pass */
};

/* Timer overhead (median ticks of an empty window, subtracted from every sample) and *step,
 * the TSC's resolution (coarse under some hypervisors). Uses e->lat as scratch. */
uint64_t bench_calibrate(struct bench_env *e, uint64_t *step);
/* The I record (after bench_calibrate). */
void bench_info(const struct bench_env *e, uint64_t tsc_mhz);
/* Workload id with an op budget: [check pass,] warm-up, throughput pass (T/K record), latency
 * pass (L record). Returns 1 if all went well. */
int bench_workload(struct bench_env *e, unsigned id, unsigned round, uint64_t ops);
/* Utilisation at first failure over nseeds seeds, both variants (U records); arena
 * allocators only (returns 1 at once for the others). */
int bench_util(struct bench_env *e, unsigned nseeds);
/* Cost vs fragment count for each of frags[0..n) (F records). */
int bench_frag(struct bench_env *e, const uint64_t *frags, unsigned n, unsigned round);

#endif /* BENCH_H */
