/* idt.c -- the interrupt descriptor table for the 32 CPU exceptions. Every vector goes to a
 * stub in boot/isr.asm and then to exception_handler, which reports the fault (vector, error
 * code, RIP, CR2, registers) as TAP diagnostics and exits QEMU with the fail code, so a bug
 * shows up as a named failure instead of a triple fault. */
#include "kernel.h"
#include "cpu.h"
#include "ktest.h"

#define IDT_EXCEPTIONS   32
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
static struct idt_gate idt[IDT_EXCEPTIONS] __attribute__((aligned(16)));

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

void idt_init(void)
{
    uint16_t cs = read_cs();
    for (int v = 0; v < IDT_EXCEPTIONS; v++) {
        uint64_t a = isr_stub_table[v];
        idt[v] = (struct idt_gate){
            .offset_low = a & 0xFFFF, .selector = cs, .ist = 0, .type_attr = GATE_INTERRUPT,
            .offset_mid = (a >> 16) & 0xFFFF, .offset_high = a >> 32, .reserved = 0,
        };
    }
    static struct idtr idtr;
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint64_t)idt;
    load_idt(&idtr);
}

/* Called by boot/isr.asm with the saved frame. Never returns. */
void exception_handler(struct trap_frame *f);
void exception_handler(struct trap_frame *f)
{
    ktest_abort_current();
    const char *name = f->vector < IDT_EXCEPTIONS ? exception_names[f->vector] : "?";
    kprintf("# EXCEPTION: vector %lu (%s), error code 0x%lx\n", f->vector, name, f->error_code);
    kprintf("#   RIP 0x%016lx  CS 0x%lx  RFLAGS 0x%lx\n", f->rip, f->cs, f->rflags);
    kprintf("#   RSP 0x%016lx  CR2 0x%016lx\n", f->rsp, read_cr2());
    kprintf("#   RAX %016lx RBX %016lx RCX %016lx RDX %016lx\n", f->rax, f->rbx, f->rcx, f->rdx);
    kprintf("#   RSI %016lx RDI %016lx RBP %016lx R8  %016lx\n", f->rsi, f->rdi, f->rbp, f->r8);
    kprintf("#   R9  %016lx R10 %016lx R11 %016lx R12 %016lx\n", f->r9, f->r10, f->r11, f->r12);
    kprintf("#   R13 %016lx R14 %016lx R15 %016lx\n", f->r13, f->r14, f->r15);
    kprintf("#   (addr2line -e build/kernel.elf 0x%lx)\n", f->rip);
    kprintf("Bail out! CPU exception %lu\n", f->vector);
    qemu_exit(QEMU_EXIT_FAIL);
}
