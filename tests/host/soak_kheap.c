/*
 * tests/host/soak_kheap.c -- the long randomized run (`make soak`): several heaps at once, one
 * thread each, every thread driving its heap with a model of what must be there: random
 * alloc/calloc/aligned/realloc/free over a mix of small (the slab tier), medium and large sizes,
 * every block's pattern checked before it is freed or moved, kheap_verify and the counters
 * checked against the model every CHECK operations, no misuse report ever. Each heap has a cpu
 * hook of the thread-slot kind (SOAK_NCPU slots): the thread's slot, which it changes every
 * MIGRATE operations as a thread moved between CPUs would, so its small allocations and frees
 * take the per-CPU fast path and objects cached on one slot are freed on another. At the end,
 * everything freed and every slot flushed, the heap must be as it was made (one free block
 * beside the slots' block), and with the cpu hook removed (the slots' block freed) one free
 * block of total_bytes. Notes ops/s. Usage:
 * soak_kheap [total-ops [heaps [check-every]]]; without arguments a short slice (`make test`),
 * `make soak` runs 10^8 operations in the release and the debug build.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ktest.h"
#include "mm/kheap.h"

#define MiB (1ul << 20)
enum { MAX_HEAPS = 8, SLOTS = 4096, ARENA = 48 * MiB, HEAD = 256, TAIL = 64, SOAK_NCPU = 4,
       MIGRATE = 1000 };

struct slot {
    unsigned char *p;
    size_t n;
    uint32_t seed;
};

struct soak {
    int id;
    kheap_t *h;
    unsigned char *arena;
    unsigned long ops, check_every;
    /* results */
    unsigned long done, allocs, failed, verifies, max_live;
    size_t whole;                /* largest_free of the fresh heap (its slots' block carved) */
    size_t max_cached;           /* most bytes the per-CPU caches held at a check */
    const char *error;           /* first failed check, or NULL */
    unsigned long error_op;
    int error_value;
};

/* The cpu hook: the calling thread's slot of its heap (each heap has one thread, so any slot is
 * its own); the thread moves it. */
static __thread unsigned cpu_slot;
static unsigned soak_cpu(void) { return cpu_slot; }

static unsigned long reports[MAX_HEAPS];
#define HANDLER(i) static void report_##i(int c, void *p, void *r) { (void)c, (void)p, (void)r; reports[i]++; }
HANDLER(0) HANDLER(1) HANDLER(2) HANDLER(3) HANDLER(4) HANDLER(5) HANDLER(6) HANDLER(7)
static const kheap_error_fn report_fn[MAX_HEAPS] = {
    report_0, report_1, report_2, report_3, report_4, report_5, report_6, report_7,
};

/* The pattern of byte i of a block with this seed; only its first HEAD and last TAIL bytes
 * carry it (a large block is not filled whole: that would be a memset benchmark). */
static inline unsigned char pat(uint32_t seed, size_t i) { return (unsigned char)(seed + i * 131); }

static void fill(const struct slot *b)
{
    size_t head = b->n < HEAD ? b->n : HEAD;
    for (size_t i = 0; i < head; i++)
        b->p[i] = pat(b->seed, i);
    for (size_t i = b->n > TAIL ? b->n - TAIL : 0; i < b->n; i++)
        b->p[i] = pat(b->seed, i);
}

/* Are the first `keep` bytes' pattern positions intact (keep <= n)? */
static int intact(const struct slot *b, size_t keep)
{
    size_t head = keep < HEAD ? keep : HEAD;
    for (size_t i = 0; i < head; i++)
        if (b->p[i] != pat(b->seed, i))
            return 0;
    if (keep == b->n)
        for (size_t i = b->n > TAIL ? b->n - TAIL : 0; i < b->n; i++)
            if (b->p[i] != pat(b->seed, i))
                return 0;
    return 1;
}

static size_t random_size(uint64_t *s)
{
    uint64_t r = ktest_rand(s);
    unsigned k = (unsigned)(r % 100);
    if (k < 70)
        return 1 + (r >> 8) % 512;
    if (k < 95)
        return 512 + (r >> 8) % (16 * 1024);
    return 16 * 1024 + (r >> 8) % MiB;
}

#define FAIL(s, what, value)                                                                  \
    do {                                                                                      \
        (s)->error = (what);                                                                  \
        (s)->error_op = op;                                                                   \
        (s)->error_value = (int)(value);                                                      \
        goto out;                                                                             \
    } while (0)

static void *soak_run(void *arg)
{
    struct soak *s = arg;
    static __thread struct slot slot[SLOTS];
    uint64_t rng = 0x2545F4914F6CDD1Dull * (uint64_t)(s->id + 1);
    unsigned long live = 0, op = 0;
    size_t live_bytes = 0;
    memset(slot, 0, sizeof slot);
    for (op = 0; op < s->ops; op++) {
        if (op % MIGRATE == 0)                  /* to another CPU: every heap call uses its slot */
            cpu_slot = (unsigned)((uint64_t)(s->id + op / MIGRATE) * 0x9E3779B9u >> 7) % SOAK_NCPU;
        uint64_t r = ktest_rand(&rng);
        struct slot *b = &slot[r % SLOTS];
        unsigned kind = (unsigned)(r >> 16) % 16;
        if (!b->p) {
            size_t n = random_size(&rng);
            size_t align = (size_t)16 << ((r >> 24) % 9);           /* 16 .. 4096 */
            unsigned char *p = kind < 10 ? kheap_alloc(s->h, n)
                             : kind < 12 ? kheap_calloc(s->h, 1, n)
                             : kheap_alloc_aligned(s->h, align, n);
            if (!p) {
                s->failed++;
                continue;
            }
            s->allocs++;
            if ((uintptr_t)p % (kind >= 12 ? align : KHEAP_ALIGN))
                FAIL(s, "misaligned block", 0);
            if (p < s->arena || p + n > s->arena + ARENA)
                FAIL(s, "block outside its heap's arena", 0);
            if (kheap_usable(s->h, p) < n)
                FAIL(s, "usable size below the request", kheap_usable(s->h, p));
            if (kind >= 10 && kind < 12)
                for (size_t i = 0; i < n; i += 61)
                    if (p[i])
                        FAIL(s, "calloc memory not zero", p[i]);
            *b = (struct slot){ p, n, (uint32_t)(r >> 32) };
            fill(b);
            live++;
            live_bytes += n;
            if (live > s->max_live)
                s->max_live = live;
        } else if (kind < 11) {
            if (!intact(b, b->n))
                FAIL(s, "pattern overwritten before free", 0);
            kheap_free(s->h, b->p);
            live--;
            live_bytes -= b->n;
            b->p = NULL;
        } else {
            size_t n = random_size(&rng);
            unsigned char *q = kheap_realloc(s->h, b->p, n);
            if (!q) {
                s->failed++;
                if (!intact(b, b->n))
                    FAIL(s, "failed realloc changed the block", 0);
                continue;
            }
            size_t keep = n < b->n ? n : b->n;
            struct slot moved = { q, b->n, b->seed };
            if (!intact(&moved, keep))
                FAIL(s, "realloc lost bytes", 0);
            live_bytes += n - b->n;
            *b = (struct slot){ q, n, b->seed ^ 0x5A5A5A5Au };
            fill(b);
        }
        if ((op + 1) % s->check_every == 0) {
            struct kheap_stats st;
            int rc = kheap_verify(s->h);
            if (rc)
                FAIL(s, "kheap_verify", rc);
            kheap_stats(s->h, &st);
            if (st.allocs - st.frees != live)
                FAIL(s, "allocs - frees != live blocks", st.allocs - st.frees);
            if (st.used_bytes < live_bytes || st.used_bytes + st.free_bytes != st.total_bytes)
                FAIL(s, "byte counters disagree with the model", 0);
            if (reports[s->id])
                FAIL(s, "a misuse report", reports[s->id]);
            if (st.cached_bytes > s->max_cached)
                s->max_cached = st.cached_bytes;
            s->verifies++;
        }
    }
out:
    s->done = op;
    for (unsigned i = 0; i < SLOTS; i++)
        if (slot[i].p) {
            if (!s->error && !intact(&slot[i], slot[i].n))
                s->error = "pattern overwritten at the end";
            kheap_free(s->h, slot[i].p);
        }
    /* every slot's stacks and the spare slabs back (kheap_flush_in empties the calling slot's
     * stacks: once from each), so that nothing but the slots' block is taken */
    for (unsigned k = 0; k < SOAK_NCPU; k++) {
        cpu_slot = k;
        kheap_flush_in(s->h);
    }
    if (!s->error) {
        struct kheap_stats st;
        int rc = kheap_verify(s->h);
        kheap_stats(s->h, &st);
        if (rc || st.used_bytes || st.allocs != st.frees || st.slab_bytes || st.cached_bytes ||
            st.largest_free != s->whole || reports[s->id]) {
            s->error = "heap not whole and sound after freeing everything and flushing";
            s->error_value = rc;
        }
    }
    /* without the cpu hook the heap frees its slots' block: then nothing is left but one block */
    struct kheap_hooks hooks = { .error = report_fn[s->id] };
    if (!s->error && kheap_set_hooks(s->h, &hooks) != 0)
        s->error = "kheap_set_hooks without the cpu hook failed";
    if (!s->error) {
        struct kheap_stats st;
        int rc = kheap_verify(s->h);
        kheap_stats(s->h, &st);
        if (rc || st.used_bytes || st.largest_free != st.total_bytes || reports[s->id]) {
            s->error = "heap not one free block once its slots' block is freed";
            s->error_value = rc;
        }
    }
    return NULL;
}

static unsigned long g_total = 400000, g_check = 50000;
static int g_heaps = 4;
static struct soak s[MAX_HEAPS];

KTEST_SETUP(soak_setup)
{
    if (ktest_argc > 1)
        g_total = strtoul(ktest_argv[1], NULL, 0);
    if (ktest_argc > 2)
        g_heaps = atoi(ktest_argv[2]);
    if (ktest_argc > 3)
        g_check = strtoul(ktest_argv[3], NULL, 0);
    if (!KEXPECT_MSG(g_heaps >= 1 && g_heaps <= MAX_HEAPS && g_check > 0,
                     "usage: soak_kheap [total-ops [heaps 1..%d [check-every > 0]]]", MAX_HEAPS))
        return;
    for (int i = 0; i < g_heaps; i++) {
        s[i] = (struct soak){ .id = i, .ops = g_total / (unsigned long)g_heaps,
                              .check_every = g_check };
        s[i].arena = aligned_alloc(4096, ARENA);
        s[i].h = s[i].arena ? kheap_create(s[i].arena, ARENA) : NULL;
        struct kheap_hooks hooks = { .error = report_fn[i], .cpu = soak_cpu, .ncpu = SOAK_NCPU };
        struct kheap_stats st;
        KEXPECT_MSG(s[i].h && kheap_set_hooks(s[i].h, &hooks) == 0, "heap %d made", i);
        if (!s[i].h)
            continue;
        kheap_stats(s[i].h, &st);
        s[i].whole = st.largest_free;
        /* whole: nothing used, one free block with all of the heap but its slots' block (the
         * slots and the depot: tens of KiB), which is what it must come back to */
        KEXPECT_MSG(st.used_bytes == 0 && st.largest_free < st.total_bytes &&
                    st.largest_free > st.total_bytes - MiB,
                    "heap %d: one free block beside the slots' block (%zu of %zu bytes)", i,
                    st.largest_free, st.total_bytes);
    }
}

/* Every heap at once, one thread each; each thread's findings are checked here. */
KTEST(soak_heaps_at_once)
{
    pthread_t t[MAX_HEAPS];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < g_heaps; i++)
        pthread_create(&t[i], NULL, soak_run, &s[i]);
    for (int i = 0; i < g_heaps; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    unsigned long all = 0;
    for (int i = 0; i < g_heaps; i++) {
        all += s[i].done;
        KEXPECT_MSG(!s[i].error, "heap %d: %s at operation %lu (value %d)", i,
                    s[i].error ? s[i].error : "", s[i].error_op, s[i].error_value);
        ktest_note("heap %d: %lu operations, %lu allocations (%lu failed, heap full), up to %lu "
                   "live blocks, %lu checks, up to %zu bytes in the per-CPU caches", i, s[i].done,
                   s[i].allocs, s[i].failed, s[i].max_live, s[i].verifies, s[i].max_cached);
        /* the release build's small calls go through the slots (the debug build has none) */
        KEXPECT_MSG(KHEAP_BUILD_DEBUG || !s[i].verifies || s[i].max_cached > 0,
                    "heap %d: the per-CPU caches were used", i);
    }
    ktest_note("%s build, %d heaps at once: %lu operations in %.2f s = %.2f M ops/s",
               KHEAP_BUILD_DEBUG ? "debug" : "release", g_heaps, all, secs,
               (double)all / secs / 1e6);
}
