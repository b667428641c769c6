/* ktest.c -- the test runner of tests/ktest.h, one source for both builds: walks the struct ktest
 * records that KTEST() put in the "ktests" section, runs the setups and then the tests that the
 * pattern selects, and prints TAP version 13 through its TAP writer. Built with -DKERNEL it is
 * the kernel's (kprintf on COM1, records between __ktests_start and __ktests_end from linker.ld);
 * without, a host program's (stdio; GNU ld's __start_ktests/__stop_ktests). */
#include "ktest.h"

#include <stdarg.h>

#ifdef KERNEL
#include "kernel.h"

#define out_printf    kprintf
#define out_vprintf   kvprintf
#define out_vsnprintf kvsnprintf
#define out_flush()   ((void)0)
#define PLATFORM      "kernel"

extern const struct ktest __ktests_start[], __ktests_end[];
#define RECORDS_START __ktests_start
#define RECORDS_END   __ktests_end
#else
#include <stdio.h>

#define out_printf    printf
#define out_vprintf   vprintf
#define out_vsnprintf vsnprintf
#define out_flush()   fflush(stdout)
#define PLATFORM      "host"

/* Defined by GNU ld for the "ktests" section; weak: a program that uses only the TAP writer
 * (the bench driver) has no records, and then both are NULL. */
extern const struct ktest __start_ktests[] __attribute__((weak));
extern const struct ktest __stop_ktests[] __attribute__((weak));
#define RECORDS_START __start_ktests
#define RECORDS_END   __stop_ktests
#endif

#define DIAG_BUF_SIZE 4096
#define CHECKS_SHOWN  20        /* failed checks per test with a diagnostic; the rest counted */
#define CHECK_MSG_MAX 512
#define SKIP_MAX      160
#define KTEST_MAX     1024      /* tests beyond this many are reported as a failure */

/* ---- the TAP writer ----------------------------------------------------------------------- */

static unsigned tap_number;           /* results printed so far */

void ktest_tap_start(void)
{
    tap_number = 0;
    out_printf("TAP version 13\n");
    out_flush();
}

void ktest_tap_plan(unsigned tests)
{
    out_printf("1..%u\n", tests);
    out_flush();
}

void ktest_tap_result(int ok, const char *name, const char *skip)
{
    tap_number++;
    if (ok && skip)
        out_printf("ok %u - %s # SKIP %s\n", tap_number, name, skip);
    else
        out_printf("%s %u - %s\n", ok ? "ok" : "not ok", tap_number, name);
    out_flush();
}

/* ---- the running test's state ------------------------------------------------------------- */

static const struct ktest *current;   /* test or setup being run, NULL between them */
static unsigned current_failures;     /* failed checks in it */
static unsigned current_dropped;      /* diagnostic lines not kept (CHECKS_SHOWN, diag[] full) */
static int diag_full;
static int current_skipped;
static char skip_reason[SKIP_MAX];
static char diag[DIAG_BUF_SIZE];      /* its "# ..." lines, printed after the result */
static size_t diag_len;

static void diag_vadd(const char *fmt, va_list ap)
{
    size_t room = sizeof diag - diag_len;
    if (diag_full || room < 4) {
        diag_full = 1;
        current_dropped++;
        return;
    }
    int n = 2 + out_vsnprintf(diag + diag_len + 2, room - 2, fmt, ap);
    if ((size_t)n + 1 >= room) {       /* line plus its newline did not fit */
        diag[diag_len] = '\0';
        diag_full = 1;
        current_dropped++;
        return;
    }
    diag[diag_len] = '#';
    diag[diag_len + 1] = ' ';
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
        out_printf("# ");
        out_vprintf(fmt, ap);
        out_printf("\n");
        out_flush();
    }
    va_end(ap);
}

int ktest_check(int cond, const char *file, int line, const char *fmt, ...)
{
    if (cond)
        return 1;
    if (++current_failures > CHECKS_SHOWN || diag_full) {   /* count only, format nothing */
        current_dropped++;
        return 0;
    }
    char what[CHECK_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    out_vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    ktest_note("%s:%d: failed: %s", file, line, what);
    return 0;
}

unsigned ktest_failures(void)
{
    return current_failures;
}

void ktest_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    out_vsnprintf(skip_reason, sizeof skip_reason, fmt, ap);
    va_end(ap);
    current_skipped = 1;
}

static void begin(const struct ktest *t)
{
    current = t;
    current_failures = 0;
    current_dropped = 0;
    diag_full = 0;
    current_skipped = 0;
    diag_len = 0;
    diag[0] = '\0';
}

static void print_diag(void)
{
    out_printf("%s", diag);
    if (current_dropped)
        out_printf("# (%u further diagnostic lines dropped)\n", current_dropped);
    out_flush();
}

/* Print the result line of the current test and its diagnostics. */
static void report(void)
{
    int ok = current_failures == 0;
    ktest_tap_result(ok, current->name, ok && current_skipped ? skip_reason : NULL);
    if (!ok)
        out_printf("#   test %s defined at %s:%d\n", current->name, current->file, current->line);
    print_diag();
}

int ktest_abort_current(void)
{
    if (!current)
        return 0;
    current_failures += current_failures == 0;
    report();
    current = NULL;
    return 1;
}

/* ---- selection ---------------------------------------------------------------------------- */

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

/* The linker keeps records in no useful order: run them by order class, file name, line. */
static int before(const struct ktest *a, const struct ktest *b)
{
    if (a->order != b->order)
        return a->order < b->order;
    int c = compare_str(a->file, b->file);
    return c < 0 || (c == 0 && a->line < b->line);
}

static const struct ktest *order[KTEST_MAX];

/* Fill order[] with the setups and the selected tests, sorted; returns how many. */
static unsigned select_records(const char *pattern)
{
    unsigned n = 0;
    for (const struct ktest *t = RECORDS_START; t < RECORDS_END && n < KTEST_MAX; t++) {
        if (t->order != KTEST_ORDER_SETUP && !selected(pattern, t->name))
            continue;
        unsigned i = n++;
        for (; i > 0 && before(t, order[i - 1]); i--)     /* insertion sort */
            order[i] = order[i - 1];
        order[i] = t;
    }
    return n;
}

/* ---- the run ------------------------------------------------------------------------------ */

/* Run a setup; returns 0 if a check in it failed ("Bail out!" printed). */
static int run_setup(const struct ktest *t)
{
    begin(t);
    t->fn();
    current = NULL;
    if (current_failures)
        out_printf("Bail out! setup %s (%s:%d) failed\n", t->name, t->file, t->line);
    print_diag();
    return current_failures == 0;
}

static int run_test(const struct ktest *t)
{
    begin(t);
    /* "# run NAME" then "\r": on a terminal the (longer) result line overwrites it; if the
     * test hangs or crashes it is the last thing in the log, and tools/tap-suite names it. */
    out_printf("# run %s\r", t->name);
    out_flush();
    t->fn();
    report();
    current = NULL;
    return current_failures == 0;
}

int ktest_run(const char *pattern)
{
    unsigned n = select_records(pattern), planned = 0, tests = 0, failed = 0, skipped = 0;
    for (const struct ktest *t = RECORDS_START; t < RECORDS_END; t++)
        tests += t->order != KTEST_ORDER_SETUP;
    for (unsigned i = 0; i < n; i++)
        planned += order[i]->order != KTEST_ORDER_SETUP;
    int too_many = RECORDS_END - RECORDS_START > KTEST_MAX;
    ktest_tap_start();
    if (pattern && *pattern)
        out_printf("# ktest=%s selects %u of %u tests\n", pattern, planned, tests);
    ktest_tap_plan(planned);
    if (planned == 0) {
        out_printf("# no test matches ktest=%s\n", pattern ? pattern : "");
        return 1;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct ktest *t = order[i];
        if (t->order == KTEST_ORDER_SETUP) {
            if (!run_setup(t))
                return (int)planned;
            continue;
        }
        failed += !run_test(t);
        skipped += current_skipped && current_failures == 0;
    }
    out_printf("# " PLATFORM " tests: %u passed, %u failed", planned - failed, failed);
    if (skipped)
        out_printf(" (%u skipped)", skipped);
    out_printf("\n");
    if (too_many)
        out_printf("# more than %d tests: raise KTEST_MAX in tests/ktest.c\n", KTEST_MAX);
    out_flush();
    return (int)failed + too_many;
}
