/*
 * adapter_kheap.c -- kheap (build/host/libkheap.a) for the bench runner, over the runner's
 * fixed arena. Misuse reports are counted: a correct workload makes none (the runner checks).
 * Host builds also have the threads hook (the threads runner, threads.c): a pthread mutex as the
 * heap's lock and a thread-slot cpu hook, so every thread gets a per-CPU cache slot of its own.
 */
#include "bench.h"
#include "mm/kheap.h"

static void *kh_arena;
static size_t kh_arena_size;

static int kheap_adapter_init(void *arena, size_t size)
{
    kh_arena = arena;
    kh_arena_size = size;
    return kheap_init(arena, size);
}

static void kheap_adapter_reset(void) { kheap_init(kh_arena, kh_arena_size); }

/* The heap walk, plus: no misuse was reported since the last init. */
static int kheap_adapter_check(void)
{
    struct kheap_stats st;
    int rc = kheap_check();
    if (rc)
        return rc;
    kheap_get_stats(&st);
    return st.errors ? -1 : 0;
}

static const char *kheap_adapter_version(void) { return "host-lib"; }

#ifndef KERNEL
#include <pthread.h>
#include <stdatomic.h>

/* Cache slots the heap gets (hooks.ncpu); the threads runner uses at most 3 threads. */
#define KH_BENCH_NCPU 8

static pthread_mutex_t kh_mutex = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint kh_next_slot;

static void kh_lock(void *m) { pthread_mutex_lock(m); }
static void kh_unlock(void *m) { pthread_mutex_unlock(m); }

/* The cpu hook: the calling thread's own slot, handed out on its first call from a counter
 * (never reused: threads are not expected to come and go). The (KH_BENCH_NCPU+1)-th thread and
 * later ones get KH_BENCH_NCPU: no cache, their calls take the lock. */
static unsigned thread_slot(void)
{
    static __thread unsigned slot = ~0u;
    if (slot == ~0u) {
        unsigned s = atomic_fetch_add_explicit(&kh_next_slot, 1, memory_order_relaxed);
        slot = s < KH_BENCH_NCPU ? s : KH_BENCH_NCPU;
    }
    return slot;
}

/* The lock and the per-thread caches on the default heap (kheap_init keeps hooks, so this only
 * re-states them after a re-init). */
static int kheap_adapter_threads(void)
{
    struct kheap_hooks hooks = { 0 };
    kheap_t *h = kheap_default();
    if (!h || kheap_get_hooks(h, &hooks))
        return -1;
    hooks.lock = kh_lock;
    hooks.unlock = kh_unlock;
    hooks.lock_ctx = &kh_mutex;
    hooks.cpu = thread_slot;
    hooks.ncpu = KH_BENCH_NCPU;
    return kheap_set_hooks(h, &hooks);
}
#define KHEAP_ADAPTER_THREADS kheap_adapter_threads
#else
#define KHEAP_ADAPTER_THREADS NULL            /* the bench kernel runs one CPU */
#endif

const struct bench_alloc BENCH_ALLOC_SYMBOL = {
    .name = "kheap", .takes_arena = 1, .init = kheap_adapter_init, .malloc = kmalloc,
    .free = kfree, .realloc = krealloc, .aligned_alloc = kmalloc_aligned,
    .reset = kheap_adapter_reset, .check = kheap_adapter_check,
    .version = kheap_adapter_version, .threads = KHEAP_ADAPTER_THREADS,
};
