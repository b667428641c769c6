/* tests/host/test_spinlock.c -- host test of asm/spinlock.asm (host variant: no cli/sti).
 * Checks the lock word and saved flags, LIFO nesting of two locks, and mutual exclusion: threads
 * increment plain (non-atomic) counters 10^6 times each under the lock; the totals must be exact
 * and no two threads may ever be inside together. TAP version 13 (tests/ktest.h); exits 0 iff
 * all pass. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>

#include "asm/spinlock.h"
#include "ktest.h"

enum {
    ITERATIONS  = 1000000,  /* lock/increment/unlock rounds per thread */
    MAX_THREADS = 4,
    RFLAGS_FIXED = 1 << 1,  /* RFLAGS bit 1 always reads as 1 */
};

/* The lock word is KSPIN_HELD while held and 0 after; saved_flags holds RFLAGS (IF=1 in
 * ring 3). */
KTEST(lock_word)
{
    struct kspinlock l = KSPINLOCK_INIT;
    kspin_lock_irqsave(&l);
    uint32_t held = l.locked;
    uint64_t flags = l.saved_flags;
    kspin_unlock_irqrestore(&l);
    KEXPECT_EQ(held, KSPIN_HELD);
    KEXPECT_EQ(l.locked, 0);
    KEXPECT(flags & RFLAGS_FIXED);
    KEXPECT(flags & KSPIN_RFLAGS_IF);
}

/* Two locks nest in LIFO order. */
KTEST(nesting)
{
    struct kspinlock outer = KSPINLOCK_INIT, inner = KSPINLOCK_INIT;
    kspin_lock_irqsave(&outer);
    kspin_lock_irqsave(&inner);
    int both = outer.locked == KSPIN_HELD && inner.locked == KSPIN_HELD;
    kspin_unlock_irqrestore(&inner);
    int outer_only = outer.locked == KSPIN_HELD && inner.locked == 0;
    kspin_unlock_irqrestore(&outer);
    int none = outer.locked == 0 && inner.locked == 0;
    KEXPECT(both);
    KEXPECT(outer_only);
    KEXPECT(none);
}

/* Shared state guarded by `lock`. `inside` detects two threads in the critical section; `a` and
 * `b` are a two-word invariant (always equal outside the section). */
static struct kspinlock lock = KSPINLOCK_INIT;
static uint64_t counter, a, b;
static volatile int inside;  /* volatile: the ++/-- pair must really reach memory */
static int overlaps, torn;

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITERATIONS; i++) {
        kspin_lock_irqsave(&lock);
        if (inside++ != 0)
            overlaps++;
        if (a != b)
            torn++;
        counter++;
        a++;
        b++;
        inside--;
        kspin_unlock_irqrestore(&lock);
    }
    return NULL;
}

/* nthreads threads x ITERATIONS locked increments: exact count, never two inside. */
static void mutual_exclusion(int nthreads)
{
    pthread_t t[MAX_THREADS];
    counter = a = b = 0;
    inside = overlaps = torn = 0;
    int started = 0;
    while (started < nthreads && KEXPECT_EQ(pthread_create(&t[started], NULL, worker, NULL), 0))
        started++;
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    uint64_t want = (uint64_t)started * ITERATIONS;
    KEXPECT_EQ(counter, want);
    KEXPECT_EQ(a, want);
    KEXPECT_EQ(b, want);
    KEXPECT_EQ(overlaps, 0);
    KEXPECT_EQ(torn, 0);
    KEXPECT_EQ(lock.locked, 0);
    ktest_note("%d threads x %d locked increments: exact count, never two inside", nthreads,
               ITERATIONS);
}

KTEST(mutual_exclusion_2_threads) { mutual_exclusion(2); }
KTEST(mutual_exclusion_max_threads) { mutual_exclusion(MAX_THREADS); }
