/* kexpect_fails.c -- deliberately failing test for tools/test-harness (never linked into
 * build/kernel.elf): one KEXPECT_EQ fails, the test must be reported with file:line. */
#include "ktest.h"

KTEST(harness_kexpect_fails)
{
    int two = 2;
    KEXPECT_EQ(two + 1, 4);     /* HARNESS-EXPECT-LINE */
    KEXPECT(two == 2);          /* still runs after the failure */
}
