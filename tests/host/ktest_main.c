/* tests/host/ktest_main.c -- main() of every host test program built on tests/ktest.h: runs the
 * program's KTESTs (tests/ktest.c prints TAP on stdout) and exits 0 iff none failed.
 * Usage: PROGRAM [ktest=PATTERN] [ARGS...]: PATTERN selects tests as the kernel's command line
 * does (globs with '*' and '?', several separated by ','); the other arguments are the
 * program's own, read by its KTEST_SETUP from ktest_argc/ktest_argv. */
#include <stdio.h>
#include <string.h>

#include "ktest.h"

#define PATTERN_ARG "ktest="

int    ktest_argc;
char **ktest_argv;

int main(int argc, char **argv)
{
    const char *pattern = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);   /* a crash loses no finished line */
    ktest_argv = argv;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strncmp(argv[i], PATTERN_ARG, strlen(PATTERN_ARG)) == 0)
            pattern = argv[i] + strlen(PATTERN_ARG);
        else
            argv[ktest_argc++] = argv[i];
    }
    argv[ktest_argc] = NULL;
    return ktest_run(pattern) ? 1 : 0;
}
