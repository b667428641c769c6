/* panic.c -- fatal errors: print the reason as TAP diagnostics (after the running test's
 * "not ok" line, if any) and exit QEMU with the fail code. */
#include "kernel.h"
#include "cpu.h"
#include "ktest.h"

void panic(const char *fmt, ...)
{
    va_list ap;
    ktest_abort_current();
    kprintf("# PANIC: ");
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    kprintf("\n# called from %p\nBail out! kernel panic\n", __builtin_return_address(0));
    qemu_exit(QEMU_EXIT_FAIL);
}
