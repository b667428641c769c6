/* cpu.h -- C prototypes of the port I/O and CPU helpers in asm/cpu.asm, and the CPU
 * constants the kernel and its tests name. Kernel only (the routines are privileged). */
#ifndef KERNEL_CPU_H
#define KERNEL_CPU_H

#include <stdint.h>

#define EFER_LME          (1u << 8)     /* long mode enable */
#define EFER_LMA          (1u << 10)    /* long mode active */
#define CR0_PG            (1ul << 31)
#define CR4_PAE           (1ul << 5)

/* isa-debug-exit codes: QEMU exits with (code << 1) | 1. */
#define QEMU_EXIT_PASS    0x10          /* status 33 */
#define QEMU_EXIT_FAIL    0x11          /* status 35 */

void     outb(uint16_t port, uint8_t value);
uint8_t  inb(uint16_t port);
void     outl(uint16_t port, uint32_t value);
void     qemu_exit(uint32_t code) __attribute__((noreturn));
void     cpu_halt_forever(void) __attribute__((noreturn));
uint64_t read_cr0(void);
uint64_t read_cr2(void);
uint64_t read_cr3(void);
uint64_t read_cr4(void);
uint64_t rdmsr64(uint32_t msr);
void     wrmsr64(uint32_t msr, uint64_t value);
uint64_t read_efer(void);
uint16_t read_cs(void);
uint64_t read_rflags(void);
void     load_idt(const void *idtr);
uint64_t rdtsc64(void);
void     cpu_pause(void);
void     irq_enable(void);              /* sti */
void     irq_disable(void);             /* cli */

#define RFLAGS_IF         (1ul << 9)    /* interrupts enabled */

#endif
