/* test_smp.c -- the heap on every CPU at once (suite kernel-smp: `make test` boots the kernel
 * with -smp 4; under -smp 1 the same tests run on the BSP alone). All CPUs online; a function
 * runs on each; the LAPIC timer ticks on each; the stress: every CPU hammers the default heap
 * and an instance at once, hands blocks to the next CPU through single-producer rings (so blocks
 * are freed on other CPUs than the one that allocated them), with timer interrupts whose
 * handler allocates and frees on the interrupted CPU; then every pattern, overlap, kheap_check
 * and counter is checked, and that the default heap's per-CPU stacks (kmain's cpu hook) served
 * the small calls without its lock on every CPU, also for objects freed on another CPU (the
 * instance has no cpu hook: its slab tier runs under its lock). SMP_STRESS_NOLOCK (build flag,
 * or tests/harness/smp_nolock.c) removes the heaps' locks for the stress: it must fail. */
#include "kernel.h"
#include "cpu.h"
#include "ktest.h"
#include "mm/kheap.h"
#include "asm/spinlock.h"
#include "heap_sum.h"

#define MS_TIMEOUT        20000     /* generous: 4 vCPUs on 2 host cores under TCG */
#define STRESS_OPS        40000     /* per CPU */
#define SLOTS             48        /* live blocks a CPU holds */
#define RING              32        /* blocks in flight from one CPU to the next */
#define MAX_BLOCK         (64 * 1024)
#define TIMER_COUNT       200000    /* LAPIC timer initial count at divide 16 */
#define INSTANCE_BYTES    (8u << 20)

/* Set by tests/harness/smp_nolock.c (the harness's no-lock kernel). */
extern const int smp_stress_nolock __attribute__((weak));
#ifdef SMP_STRESS_NOLOCK
static int nolock(void) { return 1; }
#else
static int nolock(void) { return &smp_stress_nolock != 0 && smp_stress_nolock; }
#endif

/* ---- basics ---------------------------------------------------------------------------------- */

KTEST(smp_all_cpus_online)
{
    KEXPECT(smp_ready());
    KEXPECT_EQ(smp_missing, 0);
    KEXPECT(smp_cpu_count >= 1 && smp_cpu_count <= SMP_MAX_CPUS);
    KEXPECT_EQ(this_cpu()->id, 0);
    KEXPECT_EQ(this_cpu()->apic_id, lapic_id());
    for (unsigned i = 0; i < smp_cpu_count; i++) {
        KEXPECT_EQ(cpus[i].online, 1);
        KEXPECT_EQ(cpus[i].id, i);
        for (unsigned j = 0; j < i; j++)
            KEXPECT_NE(cpus[i].apic_id, cpus[j].apic_id);
    }
    ktest_note("%u CPUs online, %u missing", smp_cpu_count, smp_missing);
}

static struct { volatile uint32_t ran, apic; volatile uint64_t rsp; } seen[SMP_MAX_CPUS];

static void record_cpu(void *arg)
{
    (void)arg;
    struct cpu *c = this_cpu();
    seen[c->id].apic = lapic_id();
    seen[c->id].rsp = (uint64_t)__builtin_frame_address(0);
    __atomic_add_fetch(&seen[c->id].ran, 1, __ATOMIC_RELEASE);
}

KTEST(smp_run_on_every_cpu)
{
    for (unsigned i = 0; i < SMP_MAX_CPUS; i++)
        seen[i].ran = 0;
    KEXPECT_EQ(smp_run_all(record_cpu, NULL, MS_TIMEOUT), 0);
    for (unsigned i = 0; i < smp_cpu_count; i++) {
        KEXPECT_EQ(seen[i].ran, 1);
        KEXPECT_EQ(seen[i].apic, cpus[i].apic_id);
        for (unsigned j = 0; j < i; j++)              /* every CPU on its own stack */
            KEXPECT(seen[i].rsp - seen[j].rsp > 4096 && seen[j].rsp - seen[i].rsp > 4096);
    }
    for (unsigned i = smp_cpu_count; i < SMP_MAX_CPUS; i++)
        KEXPECT_EQ(seen[i].ran, 0);
}

static void timer_on(void *arg)
{
    lapic_timer_start((uint32_t)(uintptr_t)arg);
    irq_enable();
}

static void timer_off(void *arg)
{
    (void)arg;
    irq_disable();
    lapic_timer_stop();
}

static void wait_ticks(void *arg)
{
    uint64_t start = this_cpu()->ticks, deadline = time_ms() + (uint64_t)(uintptr_t)arg;
    while (this_cpu()->ticks - start < 3 && time_ms() < deadline)
        cpu_pause();
}

KTEST(smp_timer_ticks_on_every_cpu)
{
    uint64_t before[SMP_MAX_CPUS];
    for (unsigned i = 0; i < smp_cpu_count; i++)
        before[i] = cpus[i].ticks;
    KEXPECT_EQ(smp_run_all(timer_on, (void *)(uintptr_t)TIMER_COUNT, MS_TIMEOUT), 0);
    KEXPECT_EQ(smp_run_all(wait_ticks, (void *)(uintptr_t)5000, MS_TIMEOUT), 0);
    KEXPECT_EQ(smp_run_all(timer_off, NULL, MS_TIMEOUT), 0);
    for (unsigned i = 0; i < smp_cpu_count; i++)
        KEXPECT_MSG(cpus[i].ticks - before[i] >= 3, "CPU %u took %lu timer interrupts", i,
                    cpus[i].ticks - before[i]);
    KEXPECT_EQ(read_rflags() & RFLAGS_IF, 0);
}

/* ---- the stress ------------------------------------------------------------------------------ */

struct blk {
    uint64_t *p;
    uint32_t n;                  /* bytes asked for */
    uint16_t owner;              /* the CPU whose pattern it holds */
    uint8_t  inst;               /* 1: the instance, 0: the default heap */
    uint8_t  slab;               /* a slab object (kmalloc of n <= SLAB_REQ_MAX, kept so) */
    uint32_t seed;
};

struct ring {                    /* one producer (CPU i - 1), one consumer (CPU i) */
    volatile uint32_t head, tail;
    struct blk b[RING];
};

struct stress_cpu {
    struct blk slot[SLOTS];
    uint64_t rng;
    uint32_t bad_pattern, bad_align, fails, handed, received, ops, irq_bad, irq_ops;
    uint32_t first_bad_op;
    /* default-heap calls: all of them, the slab tier's (kmalloc and kfree of slab objects),
     * frees of slab objects another CPU allocated; the timer handler's calls apart */
    uint32_t calls, slab_calls, slab_received, irq_calls;
} __attribute__((aligned(64)));

static struct ring rings[SMP_MAX_CPUS];
static struct stress_cpu st[SMP_MAX_CPUS];
static struct smp_barrier stress_barrier;
static kheap_t *inst;
static struct kspinlock inst_lock = KSPINLOCK_INIT;
static volatile uint32_t inst_reports;

/* The default heap's lock during the stress: kmain's, counting its acquisitions per CPU. */
static uint64_t locks_taken[SMP_MAX_CPUS];
static void stress_lock(void *ctx)
{
    kspin_lock_irqsave(ctx);
    locks_taken[this_cpu()->id]++;                  /* (interrupts off: no handler between) */
}
static void stress_unlock(void *ctx)
{
    kspin_unlock_irqrestore(ctx);
}

static void inst_error(int code, void *ptr, void *caller)
{
    (void)code, (void)ptr, (void)caller;
    __atomic_add_fetch(&inst_reports, 1, __ATOMIC_RELAXED);
}

static inline uint64_t pat(const struct blk *b, uint64_t i)
{
    return (uint64_t)b->owner << 56 | (uint64_t)b->seed << 24 | i;
}

static void fill(const struct blk *b)
{
    for (uint64_t i = 0; i < b->n / 8; i++)
        b->p[i] = pat(b, i);
}

static int intact(const struct blk *b, uint32_t n)
{
    for (uint64_t i = 0; i < n / 8; i++)
        if (b->p[i] != pat(b, i))
            return 0;
    return 1;
}

static void *b_alloc(int in, size_t align, size_t n)
{
    if (align > KHEAP_ALIGN)
        return in ? kheap_alloc_aligned(inst, align, n) : kmalloc_aligned(align, n);
    return in ? kheap_alloc(inst, n) : kmalloc(n);
}

static void b_free(const struct blk *b)
{
    if (b->inst)
        kheap_free(inst, b->p);
    else
        kfree(b->p);
}

/* The timer hook: a small block allocated, filled, checked and freed on the interrupted CPU
 * (on the default heap a slab object: through this CPU's stacks, or straight from the slabs
 * under the lock when the interrupted code is inside its slot). */
static void timer_alloc_free(void)
{
    struct stress_cpu *s = &st[this_cpu()->id];
    size_t n = 32 + (s->irq_ops % 7) * 32;
    int in = s->irq_ops++ & 1;
    uint64_t *p = in ? kheap_alloc(inst, n) : kmalloc(n);
    s->irq_calls += !in;
    if (!p)
        return;
    s->irq_calls += !in;
    for (size_t i = 0; i < n / 8; i++)
        p[i] = ~(uint64_t)i ^ (uint64_t)this_cpu()->id << 60;
    for (size_t i = 0; i < n / 8; i++)
        s->irq_bad += p[i] != (~(uint64_t)i ^ (uint64_t)this_cpu()->id << 60);
    if (in)
        kheap_free(inst, p);
    else
        kfree(p);
}

static void check_and_free(struct stress_cpu *s, const struct blk *b)
{
    if (!intact(b, b->n) && s->bad_pattern++ == 0)
        s->first_bad_op = s->ops;
    b_free(b);
    if (!b->inst) {
        s->calls++;
        s->slab_calls += b->slab;
    }
}

/* A block from the previous CPU: freed here (a slab object onto this CPU's stack). */
static void receive(struct stress_cpu *s, struct ring *in)
{
    const struct blk *b = &in->b[in->tail % RING];
    s->slab_received += b->slab && !b->inst;
    check_and_free(s, b);
    __atomic_store_n(&in->tail, in->tail + 1, __ATOMIC_RELEASE);
    s->received++;
}

static void stress_run(void *arg)
{
    (void)arg;
    unsigned me = this_cpu()->id, n = smp_cpu_count;
    struct stress_cpu *s = &st[me];
    struct ring *in = &rings[me], *out = &rings[(me + 1) % n];
    s->rng = 0x9E3779B97F4A7C15ull * (me + 1);
    irq_enable();                              /* timer interrupts while the CPUs contend */
    smp_barrier_wait(&stress_barrier, MS_TIMEOUT);
    for (s->ops = 0; s->ops < STRESS_OPS; s->ops++) {
        /* blocks from the previous CPU: checked and freed here */
        while (in->tail != __atomic_load_n(&in->head, __ATOMIC_ACQUIRE))
            receive(s, in);
        uint64_t r = ktest_rand(&s->rng);
        struct blk *b = &s->slot[r % SLOTS];
        unsigned kind = (unsigned)(r >> 8) % 8;
        if (!b->p) {
            uint32_t size = 16u << ((r >> 16) % 12);          /* 16 B .. 32 KiB, then a bit more */
            size += (uint32_t)(r >> 32) % size;
            if (size > MAX_BLOCK)
                size = MAX_BLOCK;
            size_t align = kind == 0 ? (size_t)64 << ((r >> 40) % 7) : 0;  /* 64 .. 4096 */
            int which = (int)((r >> 44) & 1);
            void *p = b_alloc(which, align, size);
            int slab = !align && size <= SLAB_REQ_MAX;
            if (!which) {
                s->calls++;
                s->slab_calls += slab;
            }
            if (!p) {
                s->fails++;
                continue;
            }
            if (align && (uintptr_t)p % align)
                s->bad_align++;
            *b = (struct blk){ p, size, (uint16_t)me, (uint8_t)which, (uint8_t)slab,
                               (uint32_t)(r >> 24) };
            fill(b);
        } else if (kind < 2 && out->head - __atomic_load_n(&out->tail, __ATOMIC_ACQUIRE) < RING) {
            if (!intact(b, b->n) && s->bad_pattern++ == 0)
                s->first_bad_op = s->ops;
            out->b[out->head % RING] = *b;          /* to the next CPU, which frees it */
            __atomic_store_n(&out->head, out->head + 1, __ATOMIC_RELEASE);
            b->p = NULL;
            s->handed++;
        } else if (kind < 4) {
            uint32_t size = 16u << ((r >> 16) % 12);
            if (!intact(b, b->n) && s->bad_pattern++ == 0)
                s->first_bad_op = s->ops;
            void *q = b->inst ? kheap_realloc(inst, b->p, size) : krealloc(b->p, size);
            s->calls += !b->inst;
            if (!q) {
                s->fails++;
                continue;
            }
            struct blk moved = *b;
            moved.p = q;
            if (!intact(&moved, size < b->n ? size : b->n) && s->bad_pattern++ == 0)
                s->first_bad_op = s->ops;
            b->p = q;
            b->n = size;
            b->slab = b->slab && size <= SLAB_REQ_MAX;      /* a slab object stays one */
            fill(b);
        } else {
            check_and_free(s, b);
            b->p = NULL;
        }
    }
    smp_barrier_wait(&stress_barrier, MS_TIMEOUT);  /* all done producing: drain what is left */
    while (in->tail != __atomic_load_n(&in->head, __ATOMIC_ACQUIRE))
        receive(s, in);
    irq_disable();
}

static void flush_here(void *arg)
{
    (void)arg;
    kheap_flush();
}

/* Live blocks of every CPU, sorted by address: no two may overlap. */
static int overlaps(unsigned *live_default, unsigned *live_inst)
{
    static struct blk all[SMP_MAX_CPUS * SLOTS];
    unsigned n = 0;
    *live_default = *live_inst = 0;
    for (unsigned c = 0; c < smp_cpu_count; c++)
        for (unsigned i = 0; i < SLOTS; i++)
            if (st[c].slot[i].p) {
                struct blk b = st[c].slot[i];
                unsigned j = n++;
                for (; j > 0 && (uintptr_t)all[j - 1].p > (uintptr_t)b.p; j--)
                    all[j] = all[j - 1];
                all[j] = b;
                ++*(b.inst ? live_inst : live_default);
            }
    int bad = 0;
    for (unsigned i = 1; i < n; i++)
        bad += (uintptr_t)all[i - 1].p + all[i - 1].n > (uintptr_t)all[i].p;
    return bad;
}

KTEST(smp_heap_stress)
{
    struct kheap_stats d0, d1, i1, before;
    unsigned long reports0 = kernel_heap_reports;
    kheap_get_stats(&before);
    void *arena = kmalloc_aligned(4096, INSTANCE_BYTES);
    KEXPECT_NOT_NULL(arena);
    if (!arena)
        return;
    inst = kheap_create(arena, INSTANCE_BYTES);
    struct kheap_hooks hooks = { .error = inst_error, .lock = kspin_lock_irqsave,
                                 .unlock = kspin_unlock_irqrestore, .lock_ctx = &inst_lock };
    if (nolock()) {
        ktest_note("SMP_STRESS_NOLOCK: the heaps run without their locks: this must fail");
        hooks.lock = hooks.unlock = NULL;
        kheap_set_lock(NULL, NULL, NULL);
    } else {
        KEXPECT_EQ(kheap_set_lock(stress_lock, stress_unlock, &kernel_heap_lock), 0);
    }
    KEXPECT_EQ(kheap_set_hooks(inst, &hooks), 0);
    inst_reports = 0;
    __builtin_memset(st, 0, sizeof st);
    __builtin_memset(rings, 0, sizeof rings);
    smp_barrier_init(&stress_barrier, smp_cpu_count);
    kheap_get_stats(&d0);
    __builtin_memset(locks_taken, 0, sizeof locks_taken);   /* (stats took the lock too) */

    smp_timer_hook = timer_alloc_free;
    KEXPECT_EQ(smp_run_all(timer_on, (void *)(uintptr_t)TIMER_COUNT, MS_TIMEOUT), 0);
    uint64_t t0 = rdtsc64();
    int late = smp_run_all(stress_run, NULL, 4 * MS_TIMEOUT);
    uint64_t t1 = rdtsc64();
    KEXPECT_EQ(smp_run_all(timer_off, NULL, MS_TIMEOUT), 0);
    smp_timer_hook = NULL;
    if (!nolock())
        kheap_set_lock(kspin_lock_irqsave, kspin_unlock_irqrestore, &kernel_heap_lock);
    if (!KEXPECT_MSG(late == 0, "a CPU did not finish the stress: its blocks stay as they are"))
        return;

    unsigned ops = 0, handed = 0, received = 0, bad = 0, fails = 0, irq_ops = 0, irq_bad = 0;
    for (unsigned c = 0; c < smp_cpu_count; c++) {
        ops += st[c].ops, handed += st[c].handed, received += st[c].received;
        fails += st[c].fails, irq_ops += st[c].irq_ops, irq_bad += st[c].irq_bad;
        bad += st[c].bad_pattern + st[c].bad_align;
        KEXPECT_MSG(st[c].bad_pattern == 0, "CPU %u: %u blocks with another's bytes (first at "
                    "operation %u): two owners of one block", c, st[c].bad_pattern,
                    st[c].first_bad_op);
        KEXPECT_MSG(st[c].bad_align == 0, "CPU %u: %u misaligned blocks", c, st[c].bad_align);
        KEXPECT_MSG(st[c].irq_bad == 0, "CPU %u: %u bad words in the timer handler's blocks", c,
                    st[c].irq_bad);
    }
    KEXPECT_EQ(handed, received);
    unsigned live_d, live_i;
    KEXPECT_MSG(overlaps(&live_d, &live_i) == 0, "live blocks overlap");
    int rc_d = kheap_check(), rc_i = kheap_verify(inst);
    KEXPECT_MSG(rc_d == 0, "kheap_check() = %d (%s)", rc_d, kheap_strerror(rc_d));
    KEXPECT_MSG(rc_i == 0, "kheap_verify(instance) = %d (%s)", rc_i, kheap_strerror(rc_i));
    kheap_get_stats(&d1);
    kheap_stats(inst, &i1);
    KEXPECT_EQ((d1.allocs - d1.frees) - (d0.allocs - d0.frees), live_d);
    KEXPECT_EQ(i1.allocs - i1.frees, live_i);
    KEXPECT_MSG(kernel_heap_reports == reports0 && inst_reports == 0,
                "misuse reports during the stress: %lu default heap, %u instance",
                kernel_heap_reports - reports0, inst_reports);
    ktest_note("%u CPUs: %u operations, %u blocks freed on another CPU, %u timer-handler "
               "alloc+free, %u allocation failures, %lu ms", smp_cpu_count, ops, received,
               irq_ops, fails, (t1 - t0) / tsc_per_ms);

    if (nolock())
        return;                                 /* the heaps cannot be trusted any more */

    /* The per-CPU stacks did the small calls: on every CPU most of them took no lock (only
     * refills and drains, a batch of objects each, and the timer handler's calls that found
     * the slot busy do), and slab objects allocated on one CPU were freed onto another's.
     * (The debug build has no stacks: there every call takes the lock.) */
    uint64_t slab_calls = 0, slab_received = 0, calls = 0, locked = 0;
    for (unsigned c = 0; c < smp_cpu_count; c++) {
        uint64_t all = (uint64_t)st[c].calls + st[c].irq_calls;
        calls += all, locked += locks_taken[c];
        slab_calls += st[c].slab_calls, slab_received += st[c].slab_received;
        KEXPECT_MSG(locks_taken[c] <= all, "CPU %u: %lu lock acquisitions for %lu calls", c,
                    locks_taken[c], all);
#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
        KEXPECT_MSG(locks_taken[c] == all, "CPU %u: %lu of %lu calls took the lock (debug "
                    "build: all must)", c, locks_taken[c], all);
#else
        KEXPECT_MSG(all - locks_taken[c] >= st[c].slab_calls / 2, "CPU %u: %lu of %lu calls "
                    "took no lock, %u slab-tier calls: the per-CPU stacks served too few", c,
                    all - locks_taken[c], all, st[c].slab_calls);
#endif
    }
#if !(defined(KHEAP_DEBUG) && KHEAP_DEBUG)
    KEXPECT_MSG(d1.cached_bytes > 0, "no object left in a per-CPU stack after the stress");
#endif
    if (smp_cpu_count > 1)
        KEXPECT_MSG(slab_received > 0, "no slab object freed on another CPU than its own");
    ktest_note("default heap: %lu calls (%lu of the slab tier), %lu took the lock; %lu slab "
               "objects freed on another CPU; %lu bytes left in per-CPU stacks", calls,
               slab_calls, locked, slab_received, (unsigned long)d1.cached_bytes);

    for (unsigned c = 0; c < smp_cpu_count; c++)
        for (unsigned i = 0; i < SLOTS; i++)
            if (st[c].slot[i].p)
                b_free(&st[c].slot[i]);
    kheap_stats(inst, &i1);
    KEXPECT_EQ(i1.used_bytes, 0);
    KEXPECT_EQ(kheap_verify(inst), 0);
    kfree(arena);
    /* every CPU's stacks back to the slabs (each CPU's kheap_flush empties its own) */
    KEXPECT_EQ(smp_run_all(flush_here, NULL, MS_TIMEOUT), 0);
    kheap_get_stats(&d1);
    KEXPECT_EQ(d1.cached_bytes, 0);
    KEXPECT_EQ(d1.used_bytes, before.used_bytes);
    KEXPECT_EQ(kheap_check(), 0);
}

/* ---- throughput: the same heap on 1, 2, 4 CPUs ------------------------------------------------
 * kmalloc/kfree pairs of 16..511 bytes (the slab tier: each CPU's own stacks, the lock only for
 * a refill or drain) on k CPUs at once; the CPUs left out sleep (hlt, woken by their LAPIC
 * timer to look whether the run is over) so that under TCG they take no host time from the
 * ones measured. One warm-up run on every CPU first (stacks filled, code translated), then the
 * best of TPUT_TRIES runs per k. The lock hooks count acquisitions (kmain's lock inside). */

struct tput {
    unsigned cpus;
    struct smp_barrier start;
    volatile int done;
    uint64_t t0, t1;
};

#define TPUT_PAIRS   50000
#define TPUT_TRIES   3
#define PARK_TIMER   (TIMER_COUNT * 4)

static void tput_park(struct tput *t)
{
    lapic_timer_start(PARK_TIMER);
    while (!__atomic_load_n(&t->done, __ATOMIC_ACQUIRE))
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    lapic_timer_stop();
}

static void tput_run(void *arg)
{
    enum { PAIRS = TPUT_PAIRS, LIVE = 16 };
    struct tput *t = arg;
    unsigned me = this_cpu()->id;
    void *keep[LIVE] = { 0 };
    if (me >= t->cpus) {
        tput_park(t);
        return;
    }
    smp_barrier_wait(&t->start, MS_TIMEOUT);
    if (me == 0)
        t->t0 = rdtsc64();
    uint64_t r = me + 1;
    for (unsigned i = 0; i < PAIRS; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        unsigned k = (unsigned)(r >> 33) % LIVE;
        kfree(keep[k]);
        keep[k] = kmalloc(16 + (r >> 40) % 496);
    }
    for (unsigned k = 0; k < LIVE; k++)
        kfree(keep[k]);
    smp_barrier_wait(&t->start, MS_TIMEOUT);
    if (me == 0) {
        t->t1 = rdtsc64();
        __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    }
}

/* One run on `cpus` CPUs: calls per ms (0 if a CPU was late), lock acquisitions in *locks. */
static uint64_t tput_once(unsigned cpus, uint64_t *locks)
{
    struct tput t = { .cpus = cpus };
    smp_barrier_init(&t.start, cpus);
    __builtin_memset(locks_taken, 0, sizeof locks_taken);
    if (!KEXPECT_EQ(smp_run_all(tput_run, &t, 4 * MS_TIMEOUT), 0))
        return 0;
    *locks = 0;
    for (unsigned c = 0; c < smp_cpu_count; c++)
        *locks += locks_taken[c];
    uint64_t ticks = t.t1 > t.t0 ? t.t1 - t.t0 : 1;
    return (uint64_t)TPUT_PAIRS * 2 * cpus * tsc_per_ms / ticks;
}

/* The figures of one series: 1, 2, 4 CPUs; ratios to this series' one-CPU figure. */
static void tput_series(const char *what)
{
    static const unsigned counts[] = { 1, 2, 4 };
    uint64_t base = 0, locks = 0;
    tput_once(smp_cpu_count, &locks);                 /* the warm-up */
    for (unsigned i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        unsigned cpus = counts[i];
        if (cpus > smp_cpu_count)
            break;
        uint64_t kops = 0, best_locks = 0;
        for (unsigned k = 0; k < TPUT_TRIES; k++) {
            uint64_t v = tput_once(cpus, &locks);
            if (v > kops)
                kops = v, best_locks = locks;
        }
        if (i == 0)
            base = kops ? kops : 1;
        uint64_t calls = (uint64_t)TPUT_PAIRS * 2 * cpus + 16 * cpus;
        ktest_note("%u CPU(s) on one heap%s: %lu k calls/s, %lu.%02lu x one CPU, the lock taken "
                   "%lu times in %lu calls (best of %u; TCG: a same-run ratio only)", cpus, what,
                   kops, kops / base, kops * 100 / base % 100, best_locks, calls, TPUT_TRIES);
    }
}

/* kmain's heap as it is (per-CPU stacks), then the same without its cpu hook (every call under
 * the one lock) for comparison. */
KTEST(smp_heap_throughput)
{
    struct kheap_hooks hooks, plain;
    KEXPECT_EQ(kheap_get_hooks(kheap_default(), &hooks), 0);
    KEXPECT_EQ(kheap_set_lock(stress_lock, stress_unlock, &kernel_heap_lock), 0);
    tput_series("");
    KEXPECT_EQ(kheap_get_hooks(kheap_default(), &plain), 0);
    plain.cpu = NULL;
    plain.ncpu = 1;
    if (KEXPECT_EQ(kheap_set_hooks(kheap_default(), &plain), 0))
        tput_series(", no cpu hook");
    KEXPECT_EQ(kheap_set_hooks(kheap_default(), &hooks), 0);   /* kmain's, its lock too */
    KEXPECT_EQ(kheap_check(), 0);
}
