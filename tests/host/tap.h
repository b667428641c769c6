/*
 * tap.h -- a tiny TAP version 13 helper for the host test programs (header only; any test may
 * include it). Tests are functions run by TAP_RUN(fn); inside them TAP_CHECK(cond) and
 * TAP_CHECK_EQ(a, b) record failures, printed as `# ...` diagnostics after the test's
 * `not ok N - name` line (where tools/tap-suite shows them). tap_done() prints the plan and
 * returns the exit status: 0 iff every test passed.
 */
#ifndef TESTS_HOST_TAP_H
#define TESTS_HOST_TAP_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum { TAP_MAX_DIAG = 8, TAP_DIAG_LEN = 240 };

static int  tap_tests, tap_failed_tests, tap_cur_failures;
static char tap_diag[TAP_MAX_DIAG][TAP_DIAG_LEN];

/* Print a `# ...` diagnostic line now (informational: timings, seeds). */
static inline __attribute__((format(printf, 1, 2), unused)) void tap_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static inline __attribute__((format(printf, 4, 5), unused)) int
tap_check_(int ok, const char *file, int line, const char *fmt, ...)
{
    if (ok)
        return 1;
    if (tap_cur_failures < TAP_MAX_DIAG) {
        char *d = tap_diag[tap_cur_failures];
        int n = snprintf(d, TAP_DIAG_LEN, "%s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && n < TAP_DIAG_LEN)
            vsnprintf(d + n, TAP_DIAG_LEN - n, fmt, ap);
        va_end(ap);
    }
    tap_cur_failures++;
    return 0;
}

#define TAP_CHECK(cond) tap_check_(!!(cond), __FILE__, __LINE__, "TAP_CHECK(%s)", #cond)
#define TAP_CHECK_EQ(a, b)                                                                  \
    ({                                                                                      \
        uint64_t ta_ = (uint64_t)(a), tb_ = (uint64_t)(b);                                  \
        tap_check_(ta_ == tb_, __FILE__, __LINE__,                                          \
                   "TAP_CHECK_EQ(%s, %s): left 0x%llx (%lld), right 0x%llx (%lld)", #a, #b, \
                   (unsigned long long)ta_, (long long)ta_, (unsigned long long)tb_,        \
                   (long long)tb_);                                                         \
    })
/* Failures so far in the running test (to stop a loop early). */
#define TAP_FAILURES() (tap_cur_failures)

static inline __attribute__((unused)) void tap_start(void)
{
    printf("TAP version 13\n");
    fflush(stdout);
}

static inline __attribute__((unused)) void tap_run(const char *name, void (*fn)(void))
{
    tap_cur_failures = 0;
    fn();
    tap_tests++;
    printf("%s %d - %s\n", tap_cur_failures ? "not ok" : "ok", tap_tests, name);
    if (tap_cur_failures) {
        tap_failed_tests++;
        int shown = tap_cur_failures < TAP_MAX_DIAG ? tap_cur_failures : TAP_MAX_DIAG;
        for (int i = 0; i < shown; i++)
            printf("# %s\n", tap_diag[i]);
        if (tap_cur_failures > shown)
            printf("# ... and %d more failed checks\n", tap_cur_failures - shown);
    }
    fflush(stdout);
}
#define TAP_RUN(fn) tap_run(#fn, fn)

/* Print the plan; the exit status for main: 0 iff every test passed. */
static inline __attribute__((unused)) int tap_done(void)
{
    printf("1..%d\n", tap_tests);
    if (tap_failed_tests)
        printf("# %d of %d tests failed\n", tap_failed_tests, tap_tests);
    fflush(stdout);
    return tap_failed_tests ? 1 : 0;
}

#endif /* TESTS_HOST_TAP_H */
