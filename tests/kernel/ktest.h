/* ktest.h -- in-kernel test framework. A test file in tests/kernel/ defines tests with
 * KTEST(name) { ... } (registered through the "ktests" linker section: no list to edit) and
 * checks with the KEXPECT* macros: a failed check records file:line and the values, and the
 * test goes on. tests/kernel/ktest.c runs them and prints TAP version 13 on COM1. */
#ifndef KTEST_H
#define KTEST_H

#include <stddef.h>
#include <stdint.h>

struct ktest {
    const char *name;
    void      (*fn)(void);
    const char *file;
    int         line;
};

#define KTEST(name_)                                                                       \
    static void ktest_fn_##name_(void);                                                    \
    static const struct ktest ktest_rec_##name_                                            \
        __attribute__((used, section("ktests"), aligned(8))) =                             \
        { #name_, ktest_fn_##name_, __FILE__, __LINE__ };                                  \
    static void ktest_fn_##name_(void)

/* Record the result of one check; 'cond' false means failure. The message is printf-style
 * and describes the check and its values. Returns cond. */
int ktest_check(int cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Add a "# ..." diagnostic line to the running test's report (shown after its result). */
void ktest_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define KEXPECT(cond)                                                                      \
    ktest_check(!!(cond), __FILE__, __LINE__, "KEXPECT(%s)", #cond)

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

/* Runner interface (kmain, panic and the exception handler). */
/* Run every test whose name matches pattern (NULL or "": all): glob with '*' and '?',
 * several patterns separated by ','. Prints TAP; returns the number of failed tests
 * (a pattern matching nothing counts as one failure). */
int ktest_run(const char *pattern);
/* If a test is running: print its "not ok" line and recorded diagnostics now (the test
 * will not finish: panic or exception). Returns 1 if a test was running. */
int ktest_abort_current(void);
/* Glob match used for ktest=PATTERN (exposed for its own test). */
int ktest_match(const char *pattern, const char *name);

#endif
