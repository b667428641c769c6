/*
 * kbench.c -- the bench kernel's entry: KTEST(bench_kernel), linked only into
 * build/bench/kernel.elf and selected with `ktest=bench_kernel`. It runs harness.c's rounds
 * (the host runner's workloads, unchanged) on the static heap region for kheap (unlocked, and
 * with the kernel's IRQ-safe lock) and the first-fit baseline, prints the records (runner.c's
 * format) on serial for `bench --from-log`, then gives the kernel its heap back.
 *
 * Command line (all optional): bench_accel=tcg|kvm (tcg prints the TCG caveat),
 * bench_div=N (op budgets / N), bench_rounds=N, bench_smoke=1 (smoke op budgets, no warm-up
 * round, 2 util seeds, 2 fragment counts: a check of the kernel build, not a measurement).
 */
#include "kernel.h"
#include "cpu.h"
#include "ktest.h"
#include "mm/kheap.h"
#include "asm/spinlock.h"
#include "bench.h"

#define SLOTS_CAP      (1u << 18)      /* frag at 10^5 needs 2*10^5 + 1; util ~4000 */
#define LAT_CAP        (1u << 21)      /* >= the largest full op budget (2*10^6) + live set */
#define ROUNDS_DEFAULT 3
#define ROUNDS_MAX     9
#define UTIL_SEEDS     7
#define SMOKE_SEEDS    2
#define NUM_MAX        16              /* command-line value buffer */

/* PIT channel 2 as a stopwatch for the TSC frequency (one-shot, mode 0, gate via port 0x61). */
#define PIT_HZ         1193182u
#define PIT_CH2        0x42
#define PIT_CMD        0x43
#define PIT_CH2_MODE0  0xB0            /* channel 2, lobyte/hibyte, mode 0, binary */
#define PORT_B         0x61
#define PORT_B_GATE2   0x01
#define PORT_B_SPEAKER 0x02
#define PORT_B_OUT2    0x20
#define CALIB_MS       50u
#define CALIB_SPIN_MAX 100000000ul

#define TCG_CAVEAT "QEMU TCG: cycles are host time; compare within this run only"

extern const struct bench_alloc bench_alloc_kheap, bench_alloc_firstfit;

static struct bench_slot slots[SLOTS_CAP];
static uint32_t lat[LAT_CAP];
static struct bench_alloc kheap_plain, kheap_locked;
static int lock_on;

static const char *version_plain(void) { return "kernel"; }
static const char *version_locked(void) { return "kernel+irqsave-lock"; }

static void emit(const char *line) { kprintf("%s\n", line); }
static void emit_none(const char *line) { (void)line; }

/* Command-line number key=N, or def when absent or malformed. */
static unsigned long cmdline_num(const char *key, unsigned long def)
{
    char v[NUM_MAX];
    unsigned long n = 0;
    if (!boot_cmdline_get(key, v, sizeof v) || !v[0])
        return def;
    for (const char *s = v; *s; s++) {
        if (*s < '0' || *s > '9')
            return def;
        n = n * 10 + (unsigned long)(*s - '0');
    }
    return n;
}

/* TSC ticks per microsecond over a CALIB_MS PIT one-shot; 0 if the PIT never fires. */
static uint64_t tsc_mhz(void)
{
    uint32_t count = PIT_HZ / 1000u * CALIB_MS;
    outb(PORT_B, (uint8_t)((inb(PORT_B) & ~PORT_B_SPEAKER) | PORT_B_GATE2));
    outb(PIT_CMD, PIT_CH2_MODE0);
    outb(PIT_CH2, (uint8_t)count);
    outb(PIT_CH2, (uint8_t)(count >> 8));
    uint64_t t0 = rdtsc64();
    unsigned long spins = 0;
    while (!(inb(PORT_B) & PORT_B_OUT2))
        if (++spins == CALIB_SPIN_MAX)
            return 0;
    uint64_t t1 = rdtsc64();
    return ((t1 - t0) / CALIB_MS + 500u) / 1000u;
}

/* kheap_init keeps the lock hooks: set them for the allocator about to run. */
static void use_lock(int on)
{
    if (on == lock_on)
        return;
    if (on)
        kheap_set_lock(kspin_lock_irqsave, kspin_unlock_irqrestore, &kernel_heap_lock);
    else
        kheap_set_lock(NULL, NULL, NULL);
    lock_on = on;
}

KTEST(bench_kernel)
{
    char accel[NUM_MAX];
    static const uint64_t frags[] = { 100, 1000, 10000, 100000 };
    int smoke = cmdline_num("bench_smoke", 0) != 0;
    unsigned long div = cmdline_num("bench_div", 1), rounds = cmdline_num("bench_rounds",
                                                                            ROUNDS_DEFAULT);
    int tcg = boot_cmdline_get("bench_accel", accel, sizeof accel) &&
              accel[0] == 't' && accel[1] == 'c' && accel[2] == 'g';
    div = div ? div : 1;
    rounds = rounds < 1 ? 1 : rounds > ROUNDS_MAX ? ROUNDS_MAX : rounds;

    kheap_plain = bench_alloc_kheap;
    kheap_plain.version = version_plain;
    kheap_locked = bench_alloc_kheap;
    kheap_locked.name = "kheap_locked";
    kheap_locked.version = version_locked;
    const struct bench_alloc *allocs[] = { &kheap_plain, &kheap_locked, &bench_alloc_firstfit };
    const unsigned nallocs = sizeof allocs / sizeof *allocs;

    /* From here until kernel_heap_setup the global heap belongs to the bench: no kmalloc. */
    struct bench_env env = {
        .a = allocs[0], .arena = (uint8_t *)__heap_start,
        .arena_size = (size_t)(__heap_end - __heap_start),
        .slots = slots, .slots_cap = SLOTS_CAP, .lat = lat, .lat_cap = LAT_CAP,
        .now_ns = NULL, .emit = emit, .check = NULL,
    };
    lock_on = 1;                                  /* as kmain left it */
    uint64_t step, mhz = tsc_mhz();
    bench_calibrate(&env, &step);
    if (tcg)
        kprintf("# " TCG_CAVEAT "\n");
    kprintf("# bench kernel: static heap %zu MiB at %p, %lu rounds, op budgets / %lu%s, "
            "TSC %lu MHz (PIT), timer overhead %lu, TSC step %lu\n", env.arena_size >> 20,
            (void *)env.arena, rounds, div, smoke ? " (smoke)" : "", mhz, env.tsc_overhead,
            step);

    /* Warm-up round, records dropped: under TCG the first run of any code pays for its
     * translation, which would otherwise land on whichever allocator goes first. */
    int ok = 1;
    env.emit = emit_none;
    for (unsigned j = 0; j < nallocs && !smoke; j++) {
        env.a = allocs[j];
        use_lock(env.a == &kheap_locked);
        for (unsigned id = 0; id < BENCH_NWORKLOADS; id++)
            ok &= bench_workload(&env, id, 0, bench_workloads[id].ops_smoke);
    }
    env.emit = emit;
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned j = 0; j < nallocs; j++) {
            env.a = allocs[(j + r) % nallocs];
            use_lock(env.a == &kheap_locked);
            if (r == 0)
                bench_info(&env, mhz);
            for (unsigned id = 0; id < BENCH_NWORKLOADS; id++) {
                const struct bench_workload *w = &bench_workloads[id];
                uint64_t ops = (smoke ? w->ops_smoke : w->ops_full) / div;
                ok &= bench_workload(&env, id, r, ops ? ops : 1);
            }
            if (r == 0)
                ok &= bench_util(&env, smoke ? SMOKE_SEEDS : UTIL_SEEDS);
            ok &= bench_frag(&env, frags, smoke ? 2 : sizeof frags / sizeof *frags, r);
        }
    }
    if (tcg)
        kprintf("# " TCG_CAVEAT "\n");

    /* The kernel's heap as kmain built it: lock, static region and free RAM. */
    use_lock(1);
    kernel_heap_setup(0);
    KEXPECT(ok);
    void *p = kmalloc(100);
    KEXPECT_NOT_NULL(p);
    kfree(p);
    KEXPECT_EQ(kheap_check(), 0);
    if (tcg)
        ktest_note(TCG_CAVEAT);
}
