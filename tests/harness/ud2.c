/* ud2.c -- deliberately crashing test for tools/test-harness (never linked into
 * build/kernel.elf): executes ud2, the exception handler must report vector 6 and RIP. */
#include "ktest.h"

KTEST(harness_ud2)
{
    __asm__ volatile("harness_ud2_insn: ud2");
}
