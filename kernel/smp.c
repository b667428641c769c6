/* smp.c -- the other CPUs: the local APIC (xAPIC MMIO, or x2APIC MSRs when CPUID offers it),
 * TSC calibration against the PIT, AP start-up (INIT-SIPI-SIPI into boot/ap_start.asm, one AP at
 * a time, each with its own stack and per-CPU data reached through GS base), the LAPIC timer,
 * and the toolkit the SMP tests use: run a function on every CPU, barriers, timeouts. The CPUs
 * come from the ACPI MADT (kernel/acpi.c); without one the kernel runs on the BSP alone. */
#include "kernel.h"
#include "cpu.h"

/* ---- local APIC ------------------------------------------------------------------------------ */
#define MSR_APIC_BASE          0x1B
#define APIC_BASE_ENABLE       (1u << 11)
#define APIC_BASE_X2APIC       (1u << 10)
#define APIC_BASE_ADDR_MASK    0xFFFFFF000ull
#define MSR_X2APIC_FIRST       0x800      /* x2APIC register r is MSR 0x800 + r / 16 */
#define MSR_GS_BASE            0xC0000101
#define CPUID_1_ECX_X2APIC     (1u << 21)

#define LAPIC_ID               0x020
#define LAPIC_EOI              0x0B0
#define LAPIC_SVR              0x0F0
#define LAPIC_ICR_LOW          0x300
#define LAPIC_ICR_HIGH         0x310
#define LAPIC_LVT_TIMER        0x320
#define LAPIC_TIMER_INIT       0x380
#define LAPIC_TIMER_DIVIDE     0x3E0
#define LAPIC_SVR_ENABLE       (1u << 8)
#define LAPIC_LVT_MASKED       (1u << 16)
#define LAPIC_TIMER_PERIODIC   (1u << 17)
#define LAPIC_DIVIDE_16        0x3
#define ICR_INIT               0x00000500u
#define ICR_STARTUP            0x00000600u
#define ICR_LEVEL_ASSERT       0x00004000u
#define ICR_PENDING            0x00001000u /* xAPIC delivery status */

/* ---- the PIT, for calibrating the TSC ------------------------------------------------------ */
#define PIT_HZ                 1193182u
#define PIT_CH2_DATA           0x42
#define PIT_COMMAND            0x43
#define PIT_CH2_ONESHOT        0xB0       /* channel 2, lobyte/hibyte, mode 0 */
#define PORT_61                0x61       /* bit 0 gate of channel 2, bit 1 speaker, bit 5 out */
#define PORT_61_GATE           0x01
#define PORT_61_SPEAKER        0x02
#define PORT_61_OUT2           0x20
#define CALIBRATE_MS           10

/* ---- AP start-up ----------------------------------------------------------------------------- */
#define SMP_TRAMP_BASE         0x8000     /* boot/ap_start.asm: AP_TRAMP_BASE */
#define SMP_SIPI_VECTOR        (SMP_TRAMP_BASE >> 12)
#define SMP_STACK_SIZE         (32 * 1024)
#define SMP_INIT_DELAY_US      10000      /* after INIT (Intel SDM: 10 ms) */
#define SMP_SIPI_DELAY_US      200        /* between the two SIPIs */
#define SMP_START_TIMEOUT_MS   200        /* an AP that has not reported in by then is missing */

struct smp_tramp_params {                  /* boot/ap_start.asm, ap_tramp_params */
    uint64_t cr3, gdtr, stack, entry, arg;
};

extern const char ap_tramp_start[], ap_tramp_end[];
extern struct smp_tramp_params ap_tramp_params;
extern const char boot_gdt_pointer[];

struct cpu cpus[SMP_MAX_CPUS];
unsigned smp_cpu_count = 1;
unsigned smp_missing;
uint64_t tsc_per_ms;
static int x2apic;
static volatile uint32_t *lapic_mmio;
static uint8_t ap_stacks[SMP_MAX_CPUS][SMP_STACK_SIZE] __attribute__((aligned(16)));

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

static uint32_t lapic_read(uint32_t reg)
{
    return x2apic ? (uint32_t)rdmsr64(MSR_X2APIC_FIRST + reg / 16) : lapic_mmio[reg / 4];
}

static void lapic_write(uint32_t reg, uint32_t value)
{
    if (x2apic)
        wrmsr64(MSR_X2APIC_FIRST + reg / 16, value);
    else
        lapic_mmio[reg / 4] = value;
}

uint32_t lapic_id(void)
{
    uint32_t id = lapic_read(LAPIC_ID);
    return x2apic ? id : id >> 24;
}

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

/* Send an IPI (ICR low word: delivery mode, vector, level) to the CPU with this APIC id. */
static void lapic_ipi(uint32_t apic_id, uint32_t icr)
{
    if (x2apic) {
        wrmsr64(MSR_X2APIC_FIRST + LAPIC_ICR_LOW / 16, (uint64_t)apic_id << 32 | icr);
        return;
    }
    lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
    lapic_write(LAPIC_ICR_LOW, icr);
    for (unsigned spins = 0; (lapic_read(LAPIC_ICR_LOW) & ICR_PENDING) && spins < 1000000; spins++)
        cpu_pause();
}

/* This CPU's local APIC on, in the mode the BSP chose, spurious vector set, timer masked. */
static void lapic_enable(void)
{
    uint64_t base = rdmsr64(MSR_APIC_BASE) | APIC_BASE_ENABLE;
    if (x2apic)
        base |= APIC_BASE_X2APIC;
    wrmsr64(MSR_APIC_BASE, base);
    lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | IRQ_VECTOR_SPURIOUS);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | IRQ_VECTOR_TIMER);
}

/* ---- time ------------------------------------------------------------------------------------ */

/* TSC ticks per millisecond, from PIT channel 2 counting down CALIBRATE_MS once. Under TCG the
 * TSC follows host time: good for timeouts and same-run ratios. */
static void tsc_calibrate(void)
{
    uint16_t count = (uint16_t)(PIT_HZ * CALIBRATE_MS / 1000);
    outb(PORT_61, (uint8_t)((inb(PORT_61) & ~PORT_61_SPEAKER) | PORT_61_GATE));
    outb(PIT_COMMAND, PIT_CH2_ONESHOT);
    outb(PIT_CH2_DATA, count & 0xFF);
    outb(PIT_CH2_DATA, count >> 8);
    uint64_t t0 = rdtsc64();
    for (uint64_t spins = 0; !(inb(PORT_61) & PORT_61_OUT2) && spins < 100000000; spins++)
        ;
    tsc_per_ms = (rdtsc64() - t0) / CALIBRATE_MS;
    if (tsc_per_ms == 0)
        tsc_per_ms = 1000000;                  /* no PIT: assume 1 GHz */
}

uint64_t time_ms(void) { return rdtsc64() / tsc_per_ms; }

void delay_us(uint64_t us)
{
    uint64_t end = rdtsc64() + us * tsc_per_ms / 1000;
    while (rdtsc64() < end)
        cpu_pause();
}

/* ---- per-CPU data ---------------------------------------------------------------------------- */

static void cpu_set_gs(struct cpu *c)
{
    c->self = c;
    wrmsr64(MSR_GS_BASE, (uint64_t)c);
}

/* ---- the APs' side --------------------------------------------------------------------------- */

/* Run the work posted in this CPU's mailbox, then report it done. */
static void cpu_do_work(struct cpu *c, uint64_t gen)
{
    void (*fn)(void *) = c->work_fn;
    fn(c->work_arg);
    __atomic_store_n(&c->work_done, gen, __ATOMIC_RELEASE);
}

/* An AP's C entry, from boot/ap_start.asm on its own stack: per-CPU data, IDT, local APIC,
 * report in, then wait for work forever. */
static void __attribute__((noreturn)) ap_main(uint64_t index)
{
    struct cpu *c = &cpus[index];
    cpu_set_gs(c);
    idt_load();
    lapic_enable();
    __atomic_store_n(&c->online, 1, __ATOMIC_RELEASE);
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = __atomic_load_n(&c->work_gen, __ATOMIC_ACQUIRE);
        if (gen != seen) {
            seen = gen;
            cpu_do_work(c, gen);
        } else {
            cpu_pause();
        }
    }
}

/* ---- bring-up -------------------------------------------------------------------------------- */

/* The trampoline's parameter block where the copy at SMP_TRAMP_BASE has it. */
static struct smp_tramp_params *ap_tramp_params_at(void)
{
    return phys_to_virt(SMP_TRAMP_BASE + (uint64_t)((const char *)&ap_tramp_params -
                                                    ap_tramp_start));
}

/* INIT-SIPI-SIPI for the CPU with this APIC id as cpus[index]; wait for it to report in.
 * 1 if it did, 0 if not (within SMP_START_TIMEOUT_MS). */
static int smp_start_ap(unsigned index, uint32_t apic_id, int skip_sipi)
{
    struct cpu *c = &cpus[index];
    c->id = index;
    c->apic_id = apic_id;
    ap_tramp_params_at()->stack = (uint64_t)(ap_stacks[index] + SMP_STACK_SIZE);
    ap_tramp_params_at()->arg = index;
    lapic_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
    delay_us(SMP_INIT_DELAY_US);
    if (!skip_sipi) {
        lapic_ipi(apic_id, ICR_STARTUP | SMP_SIPI_VECTOR);
        delay_us(SMP_SIPI_DELAY_US);
        if (!__atomic_load_n(&c->online, __ATOMIC_ACQUIRE))
            lapic_ipi(apic_id, ICR_STARTUP | SMP_SIPI_VECTOR);
    }
    uint64_t deadline = time_ms() + SMP_START_TIMEOUT_MS;
    while (!__atomic_load_n(&c->online, __ATOMIC_ACQUIRE) && time_ms() < deadline)
        cpu_pause();
    if (__atomic_load_n(&c->online, __ATOMIC_ACQUIRE))
        return 1;
    /* late or dead: INIT holds it in wait-for-SIPI, so that it cannot start later on the
     * stack and parameters the next AP gets */
    lapic_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
    return 0;
}

unsigned smp_init(void)
{
    struct acpi_cpus found;
    uint32_t a, b, ecx, d;
    char skip[16];
    long skip_apic = -1;

    tsc_calibrate();
    cpuid(1, &a, &b, &ecx, &d);
    x2apic = (ecx & CPUID_1_ECX_X2APIC) != 0;
    lapic_mmio = phys_to_virt(rdmsr64(MSR_APIC_BASE) & APIC_BASE_ADDR_MASK);
    lapic_enable();
    cpus[0].id = 0;
    cpus[0].apic_id = lapic_id();
    cpus[0].online = 1;
    cpu_set_gs(&cpus[0]);
#ifdef KERNEL_HIGHER_HALF
    /* The trampoline enters long mode at its physical address, which the higher-half kernel
     * no longer maps: this configuration runs on the BSP alone. */
    kprintf("smp: 1 CPU online (APIC id %u, %s; the higher-half kernel starts no other CPU)\n",
            cpus[0].apic_id, x2apic ? "x2APIC" : "xAPIC");
    (void)found, (void)skip, (void)skip_apic, (void)smp_start_ap;
    return smp_cpu_count = 1;
#endif
    if (boot_cmdline_get("smp_skip", skip, sizeof skip)) {   /* test knob: one AP gets no SIPI */
        skip_apic = 0;
        for (const char *q = skip; *q >= '0' && *q <= '9'; q++)
            skip_apic = skip_apic * 10 + (*q - '0');
    }
    if (acpi_find_cpus(&found) != 0 || found.count <= 1) {
        kprintf("smp: 1 CPU online (APIC id %u, %s)\n", cpus[0].apic_id,
                x2apic ? "x2APIC" : "xAPIC");
        return smp_cpu_count = 1;
    }
    /* the trampoline below 1 MiB (never heap memory: boot_free_ranges starts at 1 MiB) */
    __builtin_memcpy(phys_to_virt(SMP_TRAMP_BASE), ap_tramp_start, (size_t)(ap_tramp_end - ap_tramp_start));
    struct smp_tramp_params *p = ap_tramp_params_at();
    p->cr3 = read_cr3();
    p->gdtr = (uint64_t)boot_gdt_pointer;
    p->entry = (uint64_t)ap_main;
    unsigned n = 1;
    for (unsigned i = 0; i < found.count; i++) {
        uint32_t id = found.apic_id[i];
        if (id == cpus[0].apic_id)
            continue;
        if (n == SMP_MAX_CPUS) {
            kprintf("smp: more than %u CPUs: APIC id %u and later left alone\n", SMP_MAX_CPUS, id);
            break;
        }
        if (smp_start_ap(n, id, (long)id == skip_apic)) {
            n++;
        } else {
            kprintf("smp: CPU with APIC id %u did not start (no answer in %u ms)\n", id,
                    SMP_START_TIMEOUT_MS);
            smp_missing++;
        }
    }
    smp_cpu_count = n;
    kprintf("smp: %u CPUs online (%s, APIC ids", n, x2apic ? "x2APIC" : "xAPIC");
    for (unsigned i = 0; i < n; i++)
        kprintf(" %u", cpus[i].apic_id);
    kprintf("; %s %u listed, %u missing)\n", found.source, found.count, smp_missing);
    return n;
}

/* ---- the toolkit ----------------------------------------------------------------------------- */

int smp_run_all(void (*fn)(void *), void *arg, unsigned timeout_ms)
{
    uint64_t gen[SMP_MAX_CPUS];
    for (unsigned i = 1; i < smp_cpu_count; i++) {
        struct cpu *c = &cpus[i];
        c->work_fn = fn;
        c->work_arg = arg;
        gen[i] = c->work_gen + 1;
        __atomic_store_n(&c->work_gen, gen[i], __ATOMIC_RELEASE);
    }
    fn(arg);                                    /* the BSP takes part as CPU 0 */
    uint64_t deadline = time_ms() + timeout_ms;
    int late = 0;
    for (unsigned i = 1; i < smp_cpu_count; i++) {
        while (__atomic_load_n(&cpus[i].work_done, __ATOMIC_ACQUIRE) != gen[i] &&
               time_ms() < deadline)
            cpu_pause();
        if (__atomic_load_n(&cpus[i].work_done, __ATOMIC_ACQUIRE) != gen[i]) {
            kprintf("smp: CPU %u (APIC id %u) did not finish in %u ms\n", i, cpus[i].apic_id,
                    timeout_ms);
            late++;
        }
    }
    return late ? -1 : 0;
}

void smp_barrier_init(struct smp_barrier *b, unsigned cpus_n)
{
    b->count = 0;
    b->phase = 0;
    b->n = cpus_n;
}

int smp_barrier_wait(struct smp_barrier *b, unsigned timeout_ms)
{
    unsigned phase = __atomic_load_n(&b->phase, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->phase, phase + 1, __ATOMIC_RELEASE);
        return 0;
    }
    uint64_t deadline = time_ms() + timeout_ms;
    while (__atomic_load_n(&b->phase, __ATOMIC_ACQUIRE) == phase)
        if (time_ms() >= deadline)
            return -1;
        else
            cpu_pause();
    return 0;
}

/* ---- the LAPIC timer ------------------------------------------------------------------------- */

void lapic_timer_start(uint32_t count)
{
    lapic_write(LAPIC_TIMER_DIVIDE, LAPIC_DIVIDE_16);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_TIMER_PERIODIC | IRQ_VECTOR_TIMER);
    lapic_write(LAPIC_TIMER_INIT, count);
}

void lapic_timer_stop(void)
{
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | IRQ_VECTOR_TIMER);
    lapic_write(LAPIC_TIMER_INIT, 0);
}

void (*volatile smp_timer_hook)(void);

void smp_timer_tick(void)
{
    if (smp_ready())
        this_cpu()->ticks++;
    void (*hook)(void) = smp_timer_hook;
    if (hook)
        hook();
    lapic_eoi();
}
