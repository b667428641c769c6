/*
 * tests/host/test_kheap_threads.c -- several threads hammer one kheap at once, the lock hooks
 * being a pthread mutex (kheap_set_lock): a randomized workload (kmalloc, kcalloc, krealloc,
 * kmalloc_aligned, kfree) per thread, every block filled with its owner's pattern and verified
 * before it is freed or resized; at the end every live block is verified, kheap_check() passes
 * and the counters match (allocs - frees == live blocks, used bytes == sum of the live blocks'
 * sizes as kheap_inspect reports them, so that a KHEAP_DEBUG build agrees too).
 * A second run uses asm/spinlock's kspin_lock_irqsave (host variant) as the hooks; a third the
 * mutex and a thread-slot cpu hook (each thread its own per-CPU cache slot, one thread more than
 * there are slots: it takes the lock for everything), with blocks handed between threads so that
 * many are freed by a thread other than the one that allocated them (cross-CPU frees).
 * Usage: test_kheap_threads [ktest=PATTERN] [OPS_PER_THREAD [THREADS]]. TAP version 13
 * (tests/ktest.h); exit 0 iff all passed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "asm/spinlock.h"
#include "mm/kheap.h"
#include "mm/kheap_diag.h"
#include "ktest.h"

enum {
    MAX_THREADS = 16,
    SLOTS       = 256,              /* live blocks per thread at most */
    MAX_LOG2    = 14,               /* request sizes up to 16 KiB */
    FILL_MAX    = 4096,             /* larger blocks: pattern on both ends only */
};
#define ARENA_BYTES ((size_t)64 << 20)

struct slot {
    unsigned char *p;
    size_t         n;               /* bytes asked for (only those carry the pattern) */
    uint8_t        seed;
};

struct worker {
    pthread_t   tid;
    unsigned    id;
    uint64_t    rng;
    struct slot live[SLOTS];
    unsigned    nlive;
    uint64_t    allocs, frees, failed;  /* what this thread saw succeed / fail */
    unsigned long pair_locks;       /* per-CPU run: lock calls of 2000 kmalloc(64)+kfree pairs */
    unsigned    slot;               /* per-CPU run: the slot the cpu hook gave it */
    unsigned long bad;              /* pattern mismatches, overlaps, misaligned results */
};

static unsigned long   g_ops = 250000;
static unsigned        g_threads = 4;
static unsigned char  *arena;
static struct worker   workers[MAX_THREADS];
static pthread_mutex_t heap_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct kspinlock heap_spin = KSPINLOCK_INIT;
static atomic_ulong    lock_depth_errors, lock_calls, reports;
static atomic_int      inside;          /* threads between acquire and release: 0 or 1 */
static int             g_percpu;        /* this run has the cpu hook (and hands blocks over) */
static atomic_uint     next_slot;
static atomic_ulong    handed, taken;

/* Blocks in transit between threads: given by their owner, freed by whoever takes them. */
enum { POOL = 1024 };
static struct { struct slot s; unsigned owner; } pool[POOL];
static unsigned        npool;
static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER;

/* The cpu hook: the thread's own slot, from a counter on its first call (ncpu = threads - 1:
 * the last thread to ask gets ncpu, which means no cache, the lock for everything). */
static unsigned thread_slot(void)
{
    static __thread unsigned slot = ~0u;
    if (slot == ~0u)
        slot = atomic_fetch_add(&next_slot, 1);
    return slot;
}

/* ---- lock hooks: a mutex, counting overlaps (there must be none) -------------------------- */

static __thread unsigned long my_lock_calls;    /* this thread's acquisitions */

static void mutex_acquire(void *ctx)
{
    my_lock_calls++;
    pthread_mutex_lock(ctx);
    if (atomic_fetch_add(&inside, 1) != 0)
        atomic_fetch_add(&lock_depth_errors, 1);
    atomic_fetch_add(&lock_calls, 1);
}

static void mutex_release(void *ctx)
{
    if (atomic_fetch_sub(&inside, 1) != 1)
        atomic_fetch_add(&lock_depth_errors, 1);
    pthread_mutex_unlock(ctx);
}

static void spin_acquire(void *ctx)
{
    kspin_lock_irqsave(ctx);
    if (atomic_fetch_add(&inside, 1) != 0)
        atomic_fetch_add(&lock_depth_errors, 1);
    atomic_fetch_add(&lock_calls, 1);
}

static void spin_release(void *ctx)
{
    if (atomic_fetch_sub(&inside, 1) != 1)
        atomic_fetch_add(&lock_depth_errors, 1);
    kspin_unlock_irqrestore(ctx);
}

static void on_error(int code, void *ptr, void *caller)
{
    if (atomic_fetch_add(&reports, 1) < 5)
        printf("# unexpected report %d (%s) for %p from %p\n", code, kheap_strerror(code), ptr,
               caller);
}

/* ---- per-thread workload ------------------------------------------------------------------- */

static uint64_t rng(struct worker *w)       /* xorshift64* */
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 0x2545F4914F6CDD1Dull;
}

static size_t random_size(struct worker *w)  /* log-uniform in [0, 2^MAX_LOG2) */
{
    unsigned k = rng(w) % MAX_LOG2;
    return ((size_t)1 << k) - 1 + rng(w) % ((size_t)1 << k);
}

/* The byte at offset i of a block owned by thread id with seed s. */
static inline uint8_t pat(unsigned id, uint8_t s, size_t i)
{
    return (uint8_t)(s + i * 31 + (i >> 8) + id * 101);
}

static size_t pattern_range(unsigned id, unsigned char *p, size_t lo, size_t hi, uint8_t s,
                            int fill)
{
    size_t bad = 0;
    for (size_t i = lo; i < hi; i++) {
        if (fill)
            p[i] = pat(id, s, i);
        else
            bad += p[i] != pat(id, s, i);
    }
    return bad;
}

/* fill = 1 writes the pattern of an n-byte block over its first `limit` bytes, 0 counts wrong
 * bytes there. Blocks above FILL_MAX carry it on their first and last 256 bytes only. */
static size_t pattern(unsigned id, unsigned char *p, size_t n, size_t limit, uint8_t s, int fill)
{
    size_t end = n < limit ? n : limit;
    if (n <= FILL_MAX)
        return pattern_range(id, p, 0, end, s, fill);
    size_t head = end < 256 ? end : 256, tail = n - 256;
    return pattern_range(id, p, 0, head, s, fill) +
           (end > tail ? pattern_range(id, p, tail, end, s, fill) : 0);
}

static int in_arena(const unsigned char *p, size_t n)
{
    return p >= arena && p + n <= arena + ARENA_BYTES;
}

/* The per-CPU run's hand-overs: give one of w's live blocks to the pool, or take one from it
 * and free it here (its pattern checked with its owner's id). 1 if it did either. */
static int handoff(struct worker *w, unsigned op)
{
    int done = 0;
    pthread_mutex_lock(&pool_mutex);
    if (op < 3 && w->nlive && npool < POOL) {
        unsigned i = rng(w) % w->nlive;
        pool[npool].s = w->live[i];
        pool[npool++].owner = w->id;
        w->live[i] = w->live[--w->nlive];
        atomic_fetch_add(&handed, 1);
        done = 1;
    } else if (op >= 3 && npool) {
        struct slot s = pool[--npool].s;
        unsigned owner = pool[npool].owner;
        pthread_mutex_unlock(&pool_mutex);
        w->bad += pattern(owner, s.p, s.n, s.n, s.seed, 0) != 0;
        kfree(s.p);
        w->frees++;
        atomic_fetch_add(&taken, 1);
        return 1;
    }
    pthread_mutex_unlock(&pool_mutex);
    return done;
}

static void one_op(struct worker *w)
{
    unsigned op = rng(w) % 100;
    if (g_percpu && op < 6 && handoff(w, op))
        return;
    if (w->nlive == SLOTS || (w->nlive && op >= 60)) {                /* kfree */
        unsigned i = rng(w) % w->nlive;
        struct slot *s = &w->live[i];
        w->bad += pattern(w->id, s->p, s->n, s->n, s->seed, 0) != 0;
        kfree(s->p);
        w->frees++;
        *s = w->live[--w->nlive];
        return;
    }
    if (w->nlive && op >= 45) {                                       /* krealloc */
        struct slot *s = &w->live[rng(w) % w->nlive];
        size_t n = random_size(w) + 1;
        w->bad += pattern(w->id, s->p, s->n, s->n, s->seed, 0) != 0;
        unsigned char *q = krealloc(s->p, n);
        if (!q) {
            w->failed++;
            w->bad += pattern(w->id, s->p, s->n, s->n, s->seed, 0) != 0;
            return;
        }
        if (q != s->p) {
            w->allocs++;
            w->frees++;
        }
        w->bad += (uintptr_t)q % KHEAP_ALIGN != 0 || !in_arena(q, n) || ksize(q) < n;
        w->bad += pattern(w->id, q, s->n, n, s->seed, 0) != 0;      /* kept min(old, n) */
        s->p = q;
        s->n = n;
        s->seed = (uint8_t)rng(w);
        pattern(w->id, q, n, n, s->seed, 1);
        return;
    }
    size_t n = random_size(w), align = KHEAP_ALIGN;
    unsigned char *p;
    if (op < 10) {
        align = (size_t)1 << (rng(w) % 13);
        p = kmalloc_aligned(align, n);
    } else if (op < 20) {
        size_t count = 1 + rng(w) % 4;
        n = n / count;
        p = kcalloc(count, n);
        n *= count;
        for (size_t i = 0; p && i < n; i++)
            w->bad += p[i] != 0;
    } else {
        p = kmalloc(n);
    }
    if (!p) {
        w->failed++;
        return;
    }
    w->allocs++;
    w->bad += (uintptr_t)p % (align > KHEAP_ALIGN ? align : KHEAP_ALIGN) != 0 ||
              !in_arena(p, n) || ksize(p) < n;
    struct slot *s = &w->live[w->nlive++];
    *s = (struct slot){ p, n, (uint8_t)rng(w) };
    pattern(w->id, p, n, n, s->seed, 1);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (g_percpu) {     /* small pairs on this thread: with a slot of its own, no lock after
                           the first refill */
        unsigned long before = my_lock_calls;
        for (int i = 0; i < 2000; i++) {
            void *p = kmalloc(64);
            w->bad += p == NULL;
            kfree(p);
        }
        w->pair_locks = my_lock_calls - before;
        w->allocs += 2000;
        w->frees += 2000;
        w->slot = thread_slot();
    }
    for (unsigned long k = 0; k < g_ops; k++)
        one_op(w);
    return NULL;
}

/* ---- the runs ------------------------------------------------------------------------------ */

static double g_seconds;

/* Start the threads on a fresh heap with the given hooks, join them, then check everything
 * from the main thread while the workers' blocks are still live. */
static void hammer(void (*acq)(void *), void (*rel)(void *), void *ctx, uint64_t seed)
{
    KEXPECT_EQ(kheap_init(arena, ARENA_BYTES / 2), 0);
    KEXPECT_EQ(kheap_add_region(arena + ARENA_BYTES / 2 + 4096, ARENA_BYTES / 2 - 4096), 0);
    kheap_set_error_handler(on_error);
    kheap_set_lock(acq, rel, ctx);
    if (g_percpu) {
        struct kheap_hooks hooks;
        KEXPECT_EQ(kheap_get_hooks(kheap_default(), &hooks), 0);
        hooks.cpu = thread_slot;
        hooks.ncpu = g_threads > 1 ? g_threads - 1 : 1;
        atomic_store(&next_slot, 0);
        KEXPECT_EQ(kheap_set_hooks(kheap_default(), &hooks), 0);
    }
    atomic_store(&lock_depth_errors, 0);
    atomic_store(&lock_calls, 0);
    atomic_store(&reports, 0);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned t = 0; t < g_threads; t++) {
        workers[t] = (struct worker){ .id = t, .rng = seed * 7919 + t * 0x9E3779B97F4A7C15ull + 1 };
        KEXPECT_EQ(pthread_create(&workers[t].tid, NULL, worker_main, &workers[t]), 0);
    }
    for (unsigned t = 0; t < g_threads; t++)
        KEXPECT_EQ(pthread_join(workers[t].tid, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    g_seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;

    /* every live block: its own pattern, and no two overlapping (sorted sweep by address) */
    uint64_t allocs = 0, frees = 0, failed = 0, live = 0, used = 0;
    unsigned long bad = 0;
    static struct { unsigned char *p; size_t end; } spans[MAX_THREADS * SLOTS];
    size_t nspans = 0;
    for (unsigned t = 0; t < g_threads; t++) {
        struct worker *w = &workers[t];
        allocs += w->allocs;
        frees += w->frees;
        failed += w->failed;
        bad += w->bad;
        live += w->nlive;
        for (unsigned i = 0; i < w->nlive; i++) {
            struct slot *s = &w->live[i];
            bad += pattern(w->id, s->p, s->n, s->n, s->seed, 0) != 0;
            size_t k = ksize(s->p);
            struct kheap_block_info info;   /* block size, header and debug extras included */
            if (kheap_inspect(s->p, &info) && info.used)
                used += info.size;
            else
                bad++;
            size_t j = nspans++;            /* insertion sort by address */
            for (; j > 0 && spans[j - 1].p > s->p; j--)
                spans[j] = spans[j - 1];
            spans[j].p = s->p;
            spans[j].end = (size_t)(s->p + k);
        }
    }
    for (unsigned i = 0; i < npool; i++) {   /* the blocks still in transit are live too */
        struct slot *s = &pool[i].s;
        bad += pattern(pool[i].owner, s->p, s->n, s->n, s->seed, 0) != 0;
        struct kheap_block_info info;
        if (kheap_inspect(s->p, &info) && info.used)
            used += info.size;
        else
            bad++;
        live++;
        size_t j = nspans++;
        for (; j > 0 && spans[j - 1].p > s->p; j--)
            spans[j] = spans[j - 1];
        spans[j].p = s->p;
        spans[j].end = (size_t)(s->p + ksize(s->p));
    }
    for (size_t j = 1; j < nspans; j++)
        bad += (size_t)spans[j].p < spans[j - 1].end;
    KEXPECT_EQ(bad, 0);
    KEXPECT_EQ(kheap_check(), 0);
    struct kheap_stats st;
    kheap_get_stats(&st);
    KEXPECT_EQ(st.allocs - st.frees, live);
    KEXPECT_EQ(st.allocs, allocs);
    KEXPECT_EQ(st.frees, frees);
    KEXPECT_EQ(st.failed_allocs, failed);
    KEXPECT_EQ(st.used_bytes, used);
    KEXPECT_EQ(st.errors, 0);
    KEXPECT_EQ(atomic_load(&reports), 0);
    KEXPECT_EQ(atomic_load(&lock_depth_errors), 0);
    if (g_percpu) {     /* small calls on a slotted thread took no lock; the last thread's did */
        unsigned slotted = 0;
        for (unsigned t = 0; t < g_threads; t++) {
            struct worker *w = &workers[t];
            if (w->slot < g_threads - 1) {
                slotted++;
                KEXPECT(w->pair_locks <= 2);
            } else {
                KEXPECT(w->pair_locks >= 4000);
            }
        }
        KEXPECT_EQ(slotted, g_threads > 1 ? g_threads - 1 : 0);
        KEXPECT(atomic_load(&taken) > 1000);
        KEXPECT(st.slab_bytes > 0);
    } else {
        KEXPECT(atomic_load(&lock_calls) >= g_threads * g_ops);
    }
    KEXPECT_EQ(atomic_load(&inside), 0);
    ktest_note("%u threads x %lu ops: %.2f s, %llu allocs, %llu frees, %llu failed, %llu live, "
               "%lu lock calls, %lu blocks freed by another thread", g_threads, g_ops, g_seconds,
               (unsigned long long)allocs, (unsigned long long)frees,
               (unsigned long long)failed, (unsigned long long)live,
               (unsigned long)atomic_load(&lock_calls), (unsigned long)atomic_load(&taken));

    /* drain from the main thread: everything comes back */
    for (unsigned t = 0; t < g_threads; t++)
        while (workers[t].nlive)
            kfree(workers[t].live[--workers[t].nlive].p);
    while (npool)
        kfree(pool[--npool].s.p);
    kheap_get_stats(&st);
    KEXPECT_EQ(st.used_bytes, 0);
    KEXPECT_EQ(st.allocs, st.frees);
    KEXPECT_EQ(kheap_check(), 0);
    kheap_set_hooks(kheap_default(), NULL);
}

KTEST(test_threads_mutex)
{
    hammer(mutex_acquire, mutex_release, &heap_mutex, 1);
}

KTEST(test_threads_spinlock)
{
    hammer(spin_acquire, spin_release, &heap_spin, 2);
    KEXPECT_EQ(heap_spin.locked, 0);
}

KTEST(test_threads_percpu)
{
    g_percpu = 1;
    hammer(mutex_acquire, mutex_release, &heap_mutex, 3);
    g_percpu = 0;
}

/* Before the tests: the program's arguments (see the top; after any ktest=PATTERN) and the
 * arena. */
KTEST_SETUP(threads_setup)
{
    if (ktest_argc > 1)
        g_ops = strtoul(ktest_argv[1], NULL, 0);
    if (ktest_argc > 2)
        g_threads = (unsigned)strtoul(ktest_argv[2], NULL, 0);
    if (g_threads < 1 || g_threads > MAX_THREADS)
        g_threads = 4;
    arena = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    KEXPECT(arena != MAP_FAILED);
}
