/* test_smp.c -- the heap on every CPU at once (suite kernel-smp: `make test` boots the kernel
 * with -smp 4; under -smp 1 the same tests run on the BSP alone). All CPUs online; a function
 * runs on each; the LAPIC timer ticks on each; the stress: every CPU hammers the default heap
 * and an instance at once, hands blocks to the next CPU through single-producer rings (so blocks
 * are freed on other CPUs than the one that allocated them), with timer interrupts whose
 * handler allocates and frees on the interrupted CPU; then every pattern, overlap, kheap_check
 * and counter is checked. SMP_STRESS_NOLOCK (build flag, or tests/harness/smp_nolock.c)
 * removes the heaps' locks for the stress: it must fail. */
#include "kernel.h"
#include "cpu.h"
#include "ktest.h"
#include "mm/kheap.h"
#include "asm/spinlock.h"

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
    uint16_t inst;               /* 1: the instance, 0: the default heap */
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
} __attribute__((aligned(64)));

static struct ring rings[SMP_MAX_CPUS];
static struct stress_cpu st[SMP_MAX_CPUS];
static struct smp_barrier stress_barrier;
static kheap_t *inst;
static struct kspinlock inst_lock = KSPINLOCK_INIT;
static volatile uint32_t inst_reports;

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

/* The timer hook: a small block allocated, filled, checked and freed on the interrupted CPU. */
static void timer_alloc_free(void)
{
    struct stress_cpu *s = &st[this_cpu()->id];
    size_t n = 32 + (s->irq_ops % 7) * 32;
    int in = s->irq_ops++ & 1;
    uint64_t *p = in ? kheap_alloc(inst, n) : kmalloc(n);
    if (!p)
        return;
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
        while (in->tail != __atomic_load_n(&in->head, __ATOMIC_ACQUIRE)) {
            check_and_free(s, &in->b[in->tail % RING]);
            __atomic_store_n(&in->tail, in->tail + 1, __ATOMIC_RELEASE);
            s->received++;
        }
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
            if (!p) {
                s->fails++;
                continue;
            }
            if (align && (uintptr_t)p % align)
                s->bad_align++;
            *b = (struct blk){ p, size, (uint16_t)me, (uint16_t)which, (uint32_t)(r >> 24) };
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
            fill(b);
        } else {
            check_and_free(s, b);
            b->p = NULL;
        }
    }
    smp_barrier_wait(&stress_barrier, MS_TIMEOUT);  /* all done producing: drain what is left */
    while (in->tail != __atomic_load_n(&in->head, __ATOMIC_ACQUIRE)) {
        check_and_free(s, &in->b[in->tail % RING]);
        __atomic_store_n(&in->tail, in->tail + 1, __ATOMIC_RELEASE);
        s->received++;
    }
    irq_disable();
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
    struct kheap_stats d0, d1, i1;
    unsigned long reports0 = kernel_heap_reports;
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
    }
    KEXPECT_EQ(kheap_set_hooks(inst, &hooks), 0);
    inst_reports = 0;
    __builtin_memset(st, 0, sizeof st);
    __builtin_memset(rings, 0, sizeof rings);
    smp_barrier_init(&stress_barrier, smp_cpu_count);
    kheap_get_stats(&d0);

    smp_timer_hook = timer_alloc_free;
    KEXPECT_EQ(smp_run_all(timer_on, (void *)(uintptr_t)TIMER_COUNT, MS_TIMEOUT), 0);
    uint64_t t0 = rdtsc64();
    int late = smp_run_all(stress_run, NULL, 4 * MS_TIMEOUT);
    uint64_t t1 = rdtsc64();
    KEXPECT_EQ(smp_run_all(timer_off, NULL, MS_TIMEOUT), 0);
    smp_timer_hook = NULL;
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
    for (unsigned c = 0; c < smp_cpu_count; c++)
        for (unsigned i = 0; i < SLOTS; i++)
            if (st[c].slot[i].p)
                b_free(&st[c].slot[i]);
    kheap_stats(inst, &i1);
    KEXPECT_EQ(i1.used_bytes, 0);
    KEXPECT_EQ(kheap_verify(inst), 0);
    kfree(arena);
    KEXPECT_EQ(kheap_check(), 0);
}

/* ---- throughput: the same heap on 1, 2, 4 CPUs ------------------------------------------------ */

struct tput {
    unsigned cpus;
    struct smp_barrier start;
    uint64_t t0, t1;
};

#define TPUT_PAIRS 50000

static void tput_run(void *arg)
{
    enum { PAIRS = TPUT_PAIRS, LIVE = 16 };
    struct tput *t = arg;
    unsigned me = this_cpu()->id;
    void *keep[LIVE] = { 0 };
    if (me >= t->cpus)
        return;
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
    if (me == 0)
        t->t1 = rdtsc64();
}

KTEST(smp_heap_throughput)
{
    static const unsigned counts[] = { 1, 2, 4 };
    uint64_t base = 0;
    for (unsigned i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        struct tput t = { .cpus = counts[i] };
        if (t.cpus > smp_cpu_count)
            break;
        smp_barrier_init(&t.start, t.cpus);
        KEXPECT_EQ(smp_run_all(tput_run, &t, 4 * MS_TIMEOUT), 0);
        uint64_t ticks = t.t1 > t.t0 ? t.t1 - t.t0 : 1;
        uint64_t kops = (uint64_t)TPUT_PAIRS * 2 * t.cpus * tsc_per_ms / ticks;   /* per ms */
        if (i == 0)
            base = kops ? kops : 1;
        ktest_note("%u CPU(s) on one heap: %lu k calls/s, %lu.%02lu x one CPU (TCG: a same-run "
                   "ratio only)", t.cpus, kops, kops / base, kops * 100 / base % 100);
    }
    KEXPECT_EQ(kheap_check(), 0);
}
