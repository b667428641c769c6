/* triple_fault.c -- deliberately triple-faulting test for tools/test-harness (never linked
 * into build/kernel.elf): with an empty IDT no exception can be delivered, the CPU resets and
 * QEMU (-no-reboot) exits with status 0, which must count as a failure. */
#include "ktest.h"
#include "cpu.h"

KTEST(harness_triple_fault)
{
    static const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) empty = { 0, 0 };
    load_idt(&empty);
    __asm__ volatile("ud2");
}
