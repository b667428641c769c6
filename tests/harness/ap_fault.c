/* ap_fault.c -- deliberately crashing test for tools/test-harness (never linked into
 * build/kernel.elf): CPU 1 executes ud2 while the BSP waits for it; the exception handler must
 * report it with the CPU's number and fail the run (no hang, no triple fault). Needs -smp 2. */
#include "kernel.h"
#include "ktest.h"

static void ud2_on_cpu1(void *arg)
{
    (void)arg;
    if (this_cpu()->id == 1)
        __asm__ volatile("ud2");
}

KTEST(harness_ap_fault)
{
    KEXPECT(smp_cpu_count >= 2);
    smp_run_all(ud2_on_cpu1, NULL, 10000);
}
