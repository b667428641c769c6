/* ktest.c -- the in-kernel test runner: walks the struct ktest records that KTEST() put in the
 * "ktests" section (between __ktests_start and __ktests_end from linker.ld), runs those the
 * ktest=PATTERN filter selects, and prints TAP version 13 on COM1. */
#include "ktest.h"
#include "kernel.h"

#include <stdarg.h>

#define DIAG_BUF_SIZE 4096
#define KTEST_MAX     1024      /* tests beyond this many are reported as a failure */

extern const struct ktest __ktests_start[], __ktests_end[];

static const struct ktest *current;   /* test being run, NULL between tests */
static unsigned current_number;       /* its TAP number */
static unsigned current_failures;     /* failed checks in it */
static char diag[DIAG_BUF_SIZE];      /* its "# ..." lines, printed after the result */
static size_t diag_len;
static int diag_truncated;

static void diag_vadd(const char *fmt, va_list ap)
{
    size_t room = sizeof diag - diag_len;
    int n = ksnprintf(diag + diag_len, room, "# ");
    n += kvsnprintf(diag + diag_len + 2, room - 2, fmt, ap);
    if ((size_t)n + 1 >= room) {       /* line plus its newline did not fit */
        diag[diag_len] = '\0';
        diag_truncated = 1;
        return;
    }
    diag_len += n;
    diag[diag_len++] = '\n';
    diag[diag_len] = '\0';
}

void ktest_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (current)
        diag_vadd(fmt, ap);
    else {
        kprintf("# ");
        kvprintf(fmt, ap);
        kprintf("\n");
    }
    va_end(ap);
}

int ktest_check(int cond, const char *file, int line, const char *fmt, ...)
{
    if (cond)
        return 1;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    current_failures++;
    ktest_note("%s:%d: failed: %s", file, line, what);
    return 0;
}

/* Print the result line of the current test and its diagnostics. */
static void report(int ok)
{
    kprintf("%s %u - %s\n", ok ? "ok" : "not ok", current_number, current->name);
    if (!ok)
        kprintf("#   test %s defined at %s:%d\n", current->name, current->file, current->line);
    kprintf("%s", diag);
    if (diag_truncated)
        kprintf("# (further diagnostics dropped)\n");
}

int ktest_abort_current(void)
{
    if (!current)
        return 0;
    report(0);
    current = NULL;
    return 1;
}

int ktest_match(const char *pattern, const char *name)
{
    for (;; pattern++, name++) {
        if (*pattern == '*') {
            for (const char *n = name;; n++) {
                if (ktest_match(pattern + 1, n))
                    return 1;
                if (!*n)
                    return 0;
            }
        }
        if (*pattern == '\0' || *pattern == ',')
            return *name == '\0';
        if (*name == '\0' || (*pattern != '?' && *pattern != *name))
            return 0;
    }
}

/* Does name match any of the ','-separated globs of pattern? */
static int selected(const char *pattern, const char *name)
{
    if (!pattern || !*pattern)
        return 1;
    for (const char *p = pattern; p; ) {
        if (ktest_match(p, name))
            return 1;
        while (*p && *p != ',')
            p++;
        p = *p ? p + 1 : NULL;
    }
    return 0;
}

static int compare_str(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (unsigned char)*a - (unsigned char)*b;
}

/* The linker keeps records in no useful order: run them by file name, then line. */
static int before(const struct ktest *a, const struct ktest *b)
{
    int c = compare_str(a->file, b->file);
    return c < 0 || (c == 0 && a->line < b->line);
}

static const struct ktest *order[KTEST_MAX];

/* Fill order[] with the selected tests, sorted; returns how many. */
static unsigned select_tests(const char *pattern)
{
    unsigned n = 0;
    for (const struct ktest *t = __ktests_start; t < __ktests_end && n < KTEST_MAX; t++) {
        if (!selected(pattern, t->name))
            continue;
        unsigned i = n++;
        for (; i > 0 && before(t, order[i - 1]); i--)     /* insertion sort */
            order[i] = order[i - 1];
        order[i] = t;
    }
    return n;
}

int ktest_run(const char *pattern)
{
    unsigned failed = 0;
    unsigned planned = select_tests(pattern);
    int too_many = __ktests_end - __ktests_start > KTEST_MAX;
    kprintf("TAP version 13\n");
    if (pattern && *pattern)
        kprintf("# ktest=%s selects %u of %u tests\n", pattern, planned,
                (unsigned)(__ktests_end - __ktests_start));
    kprintf("1..%u\n", planned);
    if (planned == 0) {
        kprintf("# no test matches ktest=%s\n", pattern);
        return 1;
    }
    for (unsigned i = 0; i < planned; i++) {
        const struct ktest *t = order[i];
        current = t;
        current_number++;
        current_failures = 0;
        diag_len = 0;
        diag[0] = '\0';
        diag_truncated = 0;
        /* "# run NAME" then "\r": on a terminal the (longer) result line overwrites it; if the
         * test hangs it is the last thing in the log, and tools/tap-suite names the test. */
        kprintf("# run %s\r", t->name);
        t->fn();
        report(current_failures == 0);
        failed += current_failures != 0;
        current = NULL;
    }
    kprintf("# kernel tests: %u passed, %u failed\n", planned - failed, failed);
    if (too_many)
        kprintf("# more than %d tests: raise KTEST_MAX in tests/kernel/ktest.c\n", KTEST_MAX);
    return (int)failed + too_many;
}
