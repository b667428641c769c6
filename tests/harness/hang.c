/* hang.c -- deliberately hanging test for tools/test-harness (never linked into
 * build/kernel.elf): loops forever, the timeout must stop it and name it. */
#include "ktest.h"
#include "cpu.h"

KTEST(harness_hang)
{
    for (;;)
        cpu_pause();
}
