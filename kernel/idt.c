/* idt.c -- the interrupt descriptor table: the 32 CPU exceptions and the local APIC's timer and
 * spurious vectors (SMP). Every exception goes to a stub in boot/isr.asm and then to
 * exception_handler, which reports the fault (CPU, vector, error code, RIP, CR2, registers) as
 * TAP diagnostics and exits QEMU with the fail code, so a bug shows up as a named failure
 * instead of a triple fault, on any CPU. Interrupts go to irq_handler, which returns. */
#include "kernel.h"
#include "cpu.h"
#include "ktest.h"

#define IDT_EXCEPTIONS   32
#define IDT_VECTORS      256
#define GATE_INTERRUPT   0x8E   /* present, DPL 0, 64-bit interrupt gate */

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t  ist;
    uint8_t  type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
} __attribute__((packed));

struct idtr {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

_Static_assert(sizeof(struct idt_gate) == 16, "64-bit IDT gates are 16 bytes");
_Static_assert(sizeof(struct trap_frame) == 22 * 8, "boot/isr.asm pushes 22 qwords");

extern const uint64_t isr_stub_table[IDT_EXCEPTIONS];
extern const char irq_stub_timer[], irq_stub_spurious[];
static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));
static struct idtr idtr;

static const char *const exception_names[IDT_EXCEPTIONS] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
    "coprocessor segment overrun", "#TS invalid TSS", "#NP segment not present",
    "#SS stack fault", "#GP general protection", "#PF page fault", "reserved",
    "#MF x87 error", "#AC alignment check", "#MC machine check", "#XM SIMD error",
    "#VE virtualization", "#CP control protection", "reserved", "reserved", "reserved",
    "reserved", "reserved", "reserved", "#HV hypervisor injection", "#VC VMM communication",
    "#SX security", "reserved",
};

static void set_gate(unsigned v, uint64_t a, uint16_t cs)
{
    idt[v] = (struct idt_gate){
        .offset_low = a & 0xFFFF, .selector = cs, .ist = 0, .type_attr = GATE_INTERRUPT,
        .offset_mid = (a >> 16) & 0xFFFF, .offset_high = a >> 32, .reserved = 0,
    };
}

void idt_init(void)
{
    uint16_t cs = read_cs();
    for (unsigned v = 0; v < IDT_EXCEPTIONS; v++)
        set_gate(v, isr_stub_table[v], cs);
    set_gate(IRQ_VECTOR_TIMER, (uint64_t)irq_stub_timer, cs);
    set_gate(IRQ_VECTOR_SPURIOUS, (uint64_t)irq_stub_spurious, cs);
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint64_t)idt;
    load_idt(&idtr);
}

void idt_load(void) { load_idt(&idtr); }

/* Called by boot/isr.asm for the interrupt vectors; returns to the interrupted code. */
void irq_handler(struct trap_frame *f);
void irq_handler(struct trap_frame *f)
{
    if (f->vector == IRQ_VECTOR_TIMER)
        smp_timer_tick();                       /* (sends the EOI) */
    /* the spurious vector needs no EOI */
}

/* Only one CPU reports a fault; another one faulting meanwhile waits for the exit. */
static volatile int fault_reported;

/* Called by boot/isr.asm with the saved frame. Never returns. */
void exception_handler(struct trap_frame *f);
void exception_handler(struct trap_frame *f)
{
    if (__atomic_exchange_n(&fault_reported, 1, __ATOMIC_ACQ_REL))
        cpu_halt_forever();
    unsigned cpu = smp_ready() ? this_cpu()->id : 0;
    if (cpu == 0)
        ktest_abort_current();                  /* the test runner is the BSP's */
    const char *name = f->vector < IDT_EXCEPTIONS ? exception_names[f->vector] : "?";
    kprintf("# EXCEPTION on CPU %u: vector %lu (%s), error code 0x%lx\n", cpu, f->vector, name,
            f->error_code);
    kprintf("#   RIP 0x%016lx  CS 0x%lx  RFLAGS 0x%lx\n", f->rip, f->cs, f->rflags);
    kprintf("#   RSP 0x%016lx  CR2 0x%016lx\n", f->rsp, read_cr2());
    kprintf("#   RAX %016lx RBX %016lx RCX %016lx RDX %016lx\n", f->rax, f->rbx, f->rcx, f->rdx);
    kprintf("#   RSI %016lx RDI %016lx RBP %016lx R8  %016lx\n", f->rsi, f->rdi, f->rbp, f->r8);
    kprintf("#   R9  %016lx R10 %016lx R11 %016lx R12 %016lx\n", f->r9, f->r10, f->r11, f->r12);
    kprintf("#   R13 %016lx R14 %016lx R15 %016lx\n", f->r13, f->r14, f->r15);
    kprintf("#   (addr2line -e build/kernel.elf 0x%lx)\n", f->rip);
    kprintf("Bail out! CPU exception %lu on CPU %u\n", f->vector, cpu);
    qemu_exit(QEMU_EXIT_FAIL);
}
