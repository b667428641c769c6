/* tests/host/test_spinlock.c -- host test of asm/spinlock.asm (host variant: no cli/sti).
 * Checks the lock word and saved flags, LIFO nesting of two locks, and mutual exclusion: threads
 * increment plain (non-atomic) counters 10^6 times each under the lock; the totals must be exact
 * and no two threads may ever be inside together. TAP version 13; exits 0 iff all pass. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "asm/spinlock.h"

enum {
    ITERATIONS  = 1000000,  /* lock/increment/unlock rounds per thread */
    MAX_THREADS = 4,
    RFLAGS_FIXED = 1 << 1,  /* RFLAGS bit 1 always reads as 1 */
};

/* ---- tiny TAP reporter ---- */
static int test_count, failed;

static void report(int ok, const char *name)
{
    ++test_count;
    printf("%s %d - %s\n", ok ? "ok" : "not ok", test_count, name);
    if (!ok)
        ++failed;
}

static void test_lock_word(void)
{
    struct kspinlock l = KSPINLOCK_INIT;
    kspin_lock_irqsave(&l);
    uint32_t held = l.locked;
    uint64_t flags = l.saved_flags;
    kspin_unlock_irqrestore(&l);
    int ok = held == KSPIN_HELD && l.locked == 0 && (flags & RFLAGS_FIXED) &&
             (flags & KSPIN_RFLAGS_IF);
    if (!ok)
        printf("#   locked while held=%u after=%u saved_flags=%#llx\n", held, l.locked,
               (unsigned long long)flags);
    report(ok, "lock word is KSPIN_HELD while held and 0 after; saved_flags holds RFLAGS (IF=1 "
               "in ring 3)");
}

static void test_nesting(void)
{
    struct kspinlock outer = KSPINLOCK_INIT, inner = KSPINLOCK_INIT;
    kspin_lock_irqsave(&outer);
    kspin_lock_irqsave(&inner);
    int both = outer.locked == KSPIN_HELD && inner.locked == KSPIN_HELD;
    kspin_unlock_irqrestore(&inner);
    int outer_only = outer.locked == KSPIN_HELD && inner.locked == 0;
    kspin_unlock_irqrestore(&outer);
    int none = outer.locked == 0 && inner.locked == 0;
    if (!(both && outer_only && none))
        printf("#   both=%d outer_only=%d none=%d\n", both, outer_only, none);
    report(both && outer_only && none, "two locks nest in LIFO order");
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

static void test_mutual_exclusion(int nthreads)
{
    pthread_t t[MAX_THREADS];
    char name[128];
    counter = a = b = 0;
    inside = overlaps = torn = 0;
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0) {
            printf("Bail out! pthread_create failed\n");
            return;
        }
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    uint64_t want = (uint64_t)nthreads * ITERATIONS;
    int ok = counter == want && a == want && b == want && overlaps == 0 && torn == 0 &&
             lock.locked == 0;
    if (!ok)
        printf("#   counter=%llu want=%llu overlaps=%d torn=%d locked=%u\n",
               (unsigned long long)counter, (unsigned long long)want, overlaps, torn,
               lock.locked);
    snprintf(name, sizeof name,
             "%d threads x %d locked increments: exact count, never two inside", nthreads,
             ITERATIONS);
    report(ok, name);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("TAP version 13\n");
    test_lock_word();
    test_nesting();
    test_mutual_exclusion(2);
    test_mutual_exclusion(MAX_THREADS);
    printf("1..%d\n", test_count);
    return failed ? 1 : 0;
}
