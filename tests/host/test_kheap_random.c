/*
 * tests/host/test_kheap_random.c -- model-based randomized test of kheap on the host: a shadow
 * table of live blocks (random sizes 1 B..1 MiB, log-uniform), kmalloc/kcalloc/
 * kmalloc_aligned/krealloc/kfree at random, every block filled with its own pattern and
 * verified before it is freed or reallocated, no two live blocks overlapping, counters matched
 * against the model, kheap_check() after every operation in the checked run. A cpu hook says
 * the one thread runs on one of NCPU CPUs, a random one for each operation, so the slab tier's
 * per-CPU caches see cross-CPU frees (an object freed on a CPU other than the one it came from)
 * and refills and drains on every slot.
 * Usage: test_kheap_random [ktest=PATTERN] [OPS_PER_SEED [SEEDS [CHECK_EVERY]]] (env
 * KHEAP_RANDOM_OPS too).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "mm/kheap.h"
#include "mm/kheap_diag.h"
#include "ktest.h"

enum {
    SLOTS      = 512,               /* live blocks at most */
    MAX_LOG2   = 20,                /* sizes up to 1 MiB */
    FULL_FILL  = 2048,              /* blocks up to this are filled and verified entirely */
    EDGE       = 256,               /* larger blocks: both ends ... */
    PAGE_PROBE = 32,                /* ... and this many bytes of every 4 KiB */
};
#define ARENA_BYTES ((size_t)96 << 20)

struct slot {
    unsigned char *p;
    size_t         n;               /* bytes asked for */
    size_t         usable;          /* ksize() when it was allocated */
    uint8_t        seed;
};

enum { NCPU = 4 };
static unsigned cur_cpu;            /* the CPU the next call runs on */
static unsigned cpu_hook(void) { return cur_cpu; }

static struct slot live[SLOTS];
static unsigned    nlive;
static uint64_t    rng_state;
static unsigned char *arena;
static uint64_t    model_allocs, model_frees, model_failed;
static unsigned long errors_seen;

static uint64_t rng(void)           /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t random_size(void)     /* log-uniform in [1, 2^MAX_LOG2] */
{
    unsigned k = rng() % (MAX_LOG2 + 1);
    size_t lo = (size_t)1 << k;
    return k == MAX_LOG2 ? lo : lo + rng() % lo;
}

static void on_error(int code, void *ptr, void *caller)
{
    (void)caller;
    if (errors_seen++ < 5)
        printf("# unexpected report %d (%s) for %p\n", code, kheap_strerror(code), ptr);
}

/* Visit the pattern bytes of an n-byte block below limit: all of them if n is small, else the
 * edges and a probe of every page. fill = 1 writes, 0 verifies (returns wrong bytes). */
static size_t pattern_upto(unsigned char *p, size_t n, size_t limit, uint8_t seed, int fill)
{
    size_t bad = 0;
    size_t ranges[2 * (2 + (1u << MAX_LOG2) / 4096 + 2)], nr = 0;
    if (n <= FULL_FILL) {
        ranges[nr++] = 0;
        ranges[nr++] = n;
    } else {
        ranges[nr++] = 0;
        ranges[nr++] = EDGE;
        for (size_t off = 4096; off + PAGE_PROBE < n - EDGE; off += 4096) {
            ranges[nr++] = off;
            ranges[nr++] = off + PAGE_PROBE;
        }
        ranges[nr++] = n - EDGE;
        ranges[nr++] = n;
    }
    for (size_t r = 0; r < nr; r += 2) {
        if (ranges[r + 1] > limit)
            ranges[r + 1] = limit;
        if (fill)
            for (size_t i = ranges[r]; i < ranges[r + 1]; i++)
                p[i] = (uint8_t)(seed + i * 7 + (i >> 8));
        else
            for (size_t i = ranges[r]; i < ranges[r + 1]; i++)
                bad += p[i] != (uint8_t)(seed + i * 7 + (i >> 8));
    }
    return bad;
}

static size_t pattern(unsigned char *p, size_t n, uint8_t seed, int fill)
{
    return pattern_upto(p, n, n, seed, fill);
}

/* The new block must be aligned, big enough, and overlap no live block. */
static int check_new_block(const unsigned char *p, size_t n, size_t align, unsigned skip)
{
    size_t usable = ksize(p);
    if ((uintptr_t)p % KHEAP_ALIGN || (uintptr_t)p % align || usable < n)
        return 0;
    if (p < arena || p + usable > arena + ARENA_BYTES)
        return 0;
    for (unsigned i = 0; i < nlive; i++) {
        if (i == skip)
            continue;
        const unsigned char *q = live[i].p;
        if (p < q + live[i].usable && q < p + usable)
            return 0;
    }
    return 1;
}

static size_t model_used(void)
{
    size_t used = 0;
    struct kheap_block_info b;
    for (unsigned i = 0; i < nlive; i++)     /* block sizes: the debug build's are larger */
        used += kheap_inspect(live[i].p, &b) ? b.size : 0;
    return used;
}

/* Report why the model rejected an operation (returns 0 for `return MISMATCH(...)`). */
#define MISMATCH(...) (printf("# mismatch: " __VA_ARGS__), printf("\n"), 0)

/* One random operation; returns 0 if the model caught the heap misbehaving. */
static int step(void)
{
    unsigned op = rng() % 100;
    if (nlive == SLOTS || (nlive > 0 && op >= 70)) {            /* free */
        unsigned i = rng() % nlive;
        if (pattern(live[i].p, live[i].n, live[i].seed, 0))
            return MISMATCH("pattern of %p (%zu bytes) broken before kfree", live[i].p, live[i].n);
        kfree(live[i].p);
        model_frees++;
        live[i] = live[--nlive];
        return 1;
    }
    if (nlive > 0 && op >= 55) {                                  /* realloc */
        unsigned i = rng() % nlive;
        struct slot *s = &live[i];
        size_t n = random_size(), keep = n < s->n ? n : s->n;
        if (pattern(s->p, s->n, s->seed, 0))
            return MISMATCH("pattern of %p (%zu bytes) broken before krealloc", s->p, s->n);
        unsigned char *q = krealloc(s->p, n);
        if (!q) {                                                 /* the old block is intact */
            model_failed++;
            if (pattern(s->p, s->n, s->seed, 0))
                return MISMATCH("failed krealloc(%p, %zu) changed the block", s->p, n);
            return 1;
        }
        if (q != s->p) {
            model_allocs++;
            model_frees++;
        }
        if (!check_new_block(q, n, 1, i))
            return MISMATCH("krealloc(%p, %zu) = %p: bad block", s->p, n, q);
        if (pattern_upto(q, s->n, keep, s->seed, 0))
            return MISMATCH("krealloc(%p, %zu) = %p lost data", s->p, n, q);
        s->p = q;
        s->n = n;
        s->usable = ksize(q);
        s->seed = (uint8_t)rng();
        pattern(q, n, s->seed, 1);
        return 1;
    }
    size_t n = random_size(), align = 1;
    unsigned char *p;
    if (op < 10) {
        align = (size_t)1 << (rng() % 17);
        p = kmalloc_aligned(align, n);
    } else if (op < 18) {
        size_t count = 1 + rng() % 8;
        n = n / count + 1;
        p = kcalloc(count, n);
        n *= count;
        if (p)
            for (size_t i = 0; i < n; i += (n > FULL_FILL ? 61 : 1))
                if (p[i])
                    return MISMATCH("kcalloc block %p not zero at %zu", p, i);
    } else {
        if (rng() % 64 == 0)
            n = 0;
        p = kmalloc(n);
    }
    if (!p) {
        model_failed++;
        return 1;                                                 /* the heap may be full */
    }
    model_allocs++;
    if (!check_new_block(p, n, align, SLOTS))
        return MISMATCH("new block %p (n %zu, align %zu, ksize %zu) bad or overlapping", p, n,
                        align, ksize(p));
    live[nlive] = (struct slot){ p, n, ksize(p), (uint8_t)rng() };
    pattern(p, n, live[nlive].seed, 1);
    nlive++;
    return 1;
}

/* Three regions with gaps between them, in a shuffled order. */
static int setup_heap(void)
{
    static const size_t off[3] = { 40u << 20, 1u << 20, 72u << 20 };
    static const size_t len[3] = { 24u << 20, 32u << 20, 24u << 20 };
    int first = rng() % 3;
    if (kheap_init(arena + off[first], len[first]) != 0)
        return 0;
    for (int i = 0; i < 3; i++)
        if (i != first && kheap_add_region(arena + off[i] + (rng() % 64), len[i] - 64) != 0)
            return 0;
    kheap_set_error_handler(on_error);
    struct kheap_hooks hooks;
    if (kheap_get_hooks(kheap_default(), &hooks) != 0)
        return 0;
    hooks.cpu = cpu_hook;
    hooks.ncpu = NCPU;
    cur_cpu = 0;
    return kheap_set_hooks(kheap_default(), &hooks) == 0;
}

#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
/* The debug build's kheap_check also verifies the poison of all free memory (~96 MiB here):
 * fewer operations, and the run checked after every operation is 1/100 of them. */
static unsigned long g_ops = 40000, g_seeds = 2, g_check_every = 4000;
static unsigned long checked_ops(void) { return g_ops / 100; }
#else
static unsigned long g_ops = 250000, g_seeds = 4, g_check_every = 1000;
static unsigned long checked_ops(void) { return g_ops * 4 / 5; }
#endif
static uint64_t g_seed;
static double   g_seconds;

static void run_seed(unsigned long ops, unsigned long check_every)
{
    rng_state = g_seed * 0x9E3779B97F4A7C15ull + 1;
    nlive = 0;
    model_allocs = model_frees = model_failed = 0;
    errors_seen = 0;
    KEXPECT(setup_heap());
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned long k = 0; k < ops; k++) {
        cur_cpu = rng() % NCPU;
        if (!KEXPECT(step())) {
            printf("# seed %llu: model mismatch at op %lu\n", (unsigned long long)g_seed, k);
            break;
        }
        if (check_every && k % check_every == 0) {
            int rc = kheap_check();
            if (!KEXPECT_EQ(rc, 0)) {
                printf("# seed %llu: kheap_check %d (%s) after op %lu\n",
                       (unsigned long long)g_seed, rc, kheap_strerror(rc), k);
                break;
            }
        }
        if (k % 4096 == 0) {
            struct kheap_stats s;
            kheap_get_stats(&s);
            if (!KEXPECT_EQ(s.used_bytes, model_used()) ||
                !KEXPECT_EQ(s.allocs, model_allocs) || !KEXPECT_EQ(s.frees, model_frees) ||
                !KEXPECT_EQ(s.failed_allocs, model_failed))
                break;
        }
    }
    /* drain: everything back, one free block per region (once the front cache is flushed) */
    while (nlive > 0) {
        KEXPECT_EQ(pattern(live[nlive - 1].p, live[nlive - 1].n, live[nlive - 1].seed, 0), 0);
        kfree(live[--nlive].p);
    }
    for (cur_cpu = 0; cur_cpu < NCPU; cur_cpu++)
        kheap_flush();                  /* each CPU empties its own caches */
    cur_cpu = 0;
    struct kheap_stats s;
    kheap_get_stats(&s);
    KEXPECT_EQ(s.cached_bytes, 0);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.free_bytes, s.total_bytes);
    KEXPECT(s.largest_free <= (32u << 20) - 32 &&
              s.largest_free >= (32u << 20) - 128 - KHEAP_CTL_SIZE);
    KEXPECT_EQ(s.errors, 0);
    KEXPECT_EQ(kheap_check(), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    g_seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
}

KTEST(test_checked_every_op)
{
    /* kheap_check after every single operation: fewer operations (the walk is O(heap)) */
    g_seed = 1000;
    run_seed(checked_ops(), 1);
    ktest_note("seed %llu: %lu ops, kheap_check after each: %.2f s", (unsigned long long)g_seed,
               checked_ops(), g_seconds);
}

KTEST(test_seeds)
{
    for (unsigned long i = 0; i < g_seeds && !ktest_failures(); i++) {
        g_seed = i + 1;
        run_seed(g_ops, g_check_every);
        ktest_note("seed %llu: %lu ops, kheap_check every %lu: %.2f s",
                   (unsigned long long)g_seed, g_ops, g_check_every, g_seconds);
    }
}

/* Before the tests: the program's arguments (see the top; after any ktest=PATTERN) and the
 * arena. */
KTEST_SETUP(random_setup)
{
    const char *env = getenv("KHEAP_RANDOM_OPS");
    if (env)
        g_ops = strtoul(env, NULL, 0);
    if (ktest_argc > 1)
        g_ops = strtoul(ktest_argv[1], NULL, 0);
    if (ktest_argc > 2)
        g_seeds = strtoul(ktest_argv[2], NULL, 0);
    if (ktest_argc > 3)
        g_check_every = strtoul(ktest_argv[3], NULL, 0);
    arena = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!KEXPECT(arena != MAP_FAILED))
        return;
    ktest_note("%lu seeds x %lu ops (+ %lu checked), sizes 1 B..1 MiB", g_seeds, g_ops,
               checked_ops());
}
