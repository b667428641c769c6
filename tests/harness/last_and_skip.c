/* last_and_skip.c -- the framework's run order and SKIP for tools/test-harness (never linked
 * into build/kernel.elf): a KTEST_LAST defined first must still run after the others, and a
 * test calling ktest_skip is reported `ok N - name # SKIP reason` and counted as passed. */
#include "ktest.h"

static int others_ran;

KTEST_LAST(harness_last)
{
    KEXPECT_EQ(others_ran, 2);
}

KTEST(harness_skipped)
{
    others_ran++;
    ktest_skip("does not apply to this build");
}

KTEST(harness_runs)
{
    others_ran++;
    KEXPECT(1);
}
