/* ktest.h -- the one test framework of the kernel tests (tests/kernel/, tests/harness/, the bench
 * kernel) and the host test programs (tests/host/): freestanding, no libc. A test file defines
 * tests with KTEST(name) { ... } (registered through the "ktests" linker section: no list to
 * edit) and checks with the KEXPECT* macros: a failed check records file:line and the values,
 * and the test goes on. tests/ktest.c runs them and prints TAP version 13: on COM1 in the kernel
 * (kmain calls ktest_run), on stdout in a host program (main in tests/host/ktest_main.c). */
#ifndef KTEST_H
#define KTEST_H

#include <stddef.h>
#include <stdint.h>

/* ---- registration ------------------------------------------------------------------------- */

/* Run order: setups first, then the tests by file name and line, then the KTEST_LAST ones (by
 * file name and line too). Setups are not tests: they have no TAP line and no number. */
enum {
    KTEST_ORDER_SETUP = -1,
    KTEST_ORDER_NORMAL = 0,
    KTEST_ORDER_LAST = 1,
};

struct ktest {
    const char *name;
    void      (*fn)(void);
    const char *file;
    int         line;
    int         order;          /* KTEST_ORDER_* */
};

#define KTEST_RECORD_(name_, order_)                                                        \
    static void ktest_fn_##name_(void);                                                    \
    static const struct ktest ktest_rec_##name_                                            \
        __attribute__((used, section("ktests"), aligned(8))) =                             \
        { #name_, ktest_fn_##name_, __FILE__, __LINE__, order_ };                          \
    static void ktest_fn_##name_(void)

/* A test. */
#define KTEST(name_)       KTEST_RECORD_(name_, KTEST_ORDER_NORMAL)
/* A test that runs after every other test (e.g. one checking what the others left behind). */
#define KTEST_LAST(name_)  KTEST_RECORD_(name_, KTEST_ORDER_LAST)
/* Code run once before the first test (only if some test is selected), whatever the pattern:
 * arguments, arenas, seeds. Its ktest_note lines are printed after it; a failed check in it
 * stops the run ("Bail out!"). */
#define KTEST_SETUP(name_) KTEST_RECORD_(name_, KTEST_ORDER_SETUP)

/* ---- checks (call them from the test's own thread) ---------------------------------------- */

/* Record the result of one check; 'cond' false means failure. The message is printf-style
 * and describes the check and its values. Returns cond. */
int ktest_check(int cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define KEXPECT(cond)                                                                      \
    ktest_check(!!(cond), __FILE__, __LINE__, "KEXPECT(%s)", #cond)
/* KEXPECT with a printf-style description of the case instead of the condition's text. */
#define KEXPECT_MSG(cond, ...)                                                             \
    ktest_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define KTEST_CMP_(a, b, op, opname)                                                       \
    ({                                                                                     \
        uint64_t ka_ = (uint64_t)(a), kb_ = (uint64_t)(b);                                 \
        ktest_check(ka_ op kb_, __FILE__, __LINE__,                                        \
                    opname "(%s, %s): left 0x%lx (%ld), right 0x%lx (%ld)",                 \
                    #a, #b, ka_, (long)ka_, kb_, (long)kb_);                               \
    })
#define KEXPECT_EQ(a, b)      KTEST_CMP_(a, b, ==, "KEXPECT_EQ")
#define KEXPECT_NE(a, b)      KTEST_CMP_(a, b, !=, "KEXPECT_NE")
#define KEXPECT_NULL(p)                                                                    \
    ({ const void *kp_ = (p);                                                              \
       ktest_check(kp_ == NULL, __FILE__, __LINE__, "KEXPECT_NULL(%s): got %p", #p, kp_); })
#define KEXPECT_NOT_NULL(p)                                                                \
    ktest_check((p) != NULL, __FILE__, __LINE__, "KEXPECT_NOT_NULL(%s): got NULL", #p)

/* Failed checks so far in the running test (to stop a loop early). */
unsigned ktest_failures(void);

/* Add a "# ..." diagnostic line to the running test's report (shown after its result line);
 * outside a test it is printed at once. */
void ktest_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The running test does not apply to this build (e.g. a front-cache test without a front
 * cache): it is reported as `ok N - name # SKIP reason`, unless a check failed before. The
 * test should return right after. */
void ktest_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- runner (kmain, panic, the exception handler; the host main) --------------------------- */

/* Run every test whose name matches pattern (NULL or "": all): glob with '*' and '?',
 * several patterns separated by ','. Prints TAP; returns the number of failed tests
 * (a pattern matching nothing counts as one failure). */
int ktest_run(const char *pattern);
/* If a test is running: print its "not ok" line and recorded diagnostics now (the test
 * will not finish: panic or exception). Returns 1 if a test was running. */
int ktest_abort_current(void);
/* Glob match used for ktest=PATTERN (exposed for its own test). */
int ktest_match(const char *pattern, const char *name);

/* ---- the TAP writer, for programs whose checks are known only at run time ------------------
 * (the bench smoke driver); ktest_run prints through it too. Results are numbered in order. */
void ktest_tap_start(void);                     /* "TAP version 13" */
void ktest_tap_plan(unsigned tests);            /* "1..N" */
/* `ok N - name`, `not ok N - name`, or with skip != NULL `ok N - name # SKIP skip`. */
void ktest_tap_result(int ok, const char *name, const char *skip);

/* Are a and b the same string? (NULL equals nothing: a missing string fails the check.) */
static inline int ktest_streq(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* Deterministic random numbers for the tests: xorshift64 (13, 7, 17); *s must not be 0. */
static inline uint64_t ktest_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#ifndef KERNEL
/* Host programs: the arguments other than ktest=PATTERN (argv[0] included), for a
 * KTEST_SETUP that takes options (tests/host/ktest_main.c). */
extern int    ktest_argc;
extern char **ktest_argv;
#endif

#endif
