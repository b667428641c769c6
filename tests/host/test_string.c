/* tests/host/test_string.c -- host test of asm/string.asm (kmemset, kmemcpy, kmemmove, kmemcmp).
 * Links build/host/string.o (assembled without -DKERNEL, so glibc keeps its own mem*), checks
 * every routine against the C library for all lengths 0..MAX_LEN and all misalignments, with
 * guard bytes and guard pages to catch stray writes and reads, then a few large sizes.
 * One KTEST per routine-and-case group (tests/ktest.h, TAP version 13); exits 0 iff all pass. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ktest.h"

void *kmemset(void *dst, int c, size_t n);
void *kmemcpy(void *restrict dst, const void *restrict src, size_t n);
void *kmemmove(void *dst, const void *src, size_t n);
int kmemcmp(const void *a, const void *b, size_t n);

enum {
    MAX_LEN    = 300,   /* every length 0..MAX_LEN is tried */
    MAX_ALIGN  = 16,    /* every misalignment 0..MAX_ALIGN-1 of each pointer is tried */
    GUARD      = 64,    /* guard bytes on each side of the area a routine may write */
    MAX_DELTA  = 40,    /* memmove overlaps: dst - src in -MAX_DELTA..MAX_DELTA */
    RFLAGS_DF  = 1 << 10,
};
#define BUF_SIZE  (GUARD + MAX_ALIGN + MAX_LEN + MAX_DELTA + MAX_ALIGN + GUARD)
#define LARGE_64K ((size_t)64 * 1024)
#define LARGE_1M  ((size_t)1024 * 1024 + 13)

/* A case of a group: on failure its parameters are the message. */
#define CHECK(cond, ...) KEXPECT_MSG(cond, __VA_ARGS__)

/* ---- deterministic test data ---- */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint8_t rnd8(void)
{
    return (uint8_t)(ktest_rand(&rng_state) >> 24);
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = rnd8();
}

/* Index of the first differing byte of two buffers, or -1. */
static long first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (memcmp(a, b, n) == 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return (long)i;
    return -1;
}

static int sign(int x) { return (x > 0) - (x < 0); }

static uint64_t read_rflags(void) { return __builtin_ia32_readeflags_u64(); }

/* Work buffers: `got` is handed to the routine under test, `want` to the C library; both start
 * as the same random image (the bytes outside the written range act as guard bytes). */
static uint8_t got[BUF_SIZE], want[BUF_SIZE], src_buf[BUF_SIZE];

/* ---- kmemset ---- */
KTEST(kmemset_lengths_alignments_values)
{
    static const int values[] = { 0, 0xff, 0x5a, 0x180, -1, 0x12345678 };
    for (size_t v = 0; v < sizeof values / sizeof values[0]; v++)
        for (size_t len = 0; len <= MAX_LEN; len++)
            for (size_t al = 0; al < MAX_ALIGN; al++) {
                fill_random(want, BUF_SIZE);
                memcpy(got, want, BUF_SIZE);
                uint8_t *d = got + GUARD + al;
                void *ret = kmemset(d, values[v], len);
                memset(want + GUARD + al, values[v], len);
                long at = first_diff(got, want, BUF_SIZE);
                CHECK(ret == d, "c=%#x len=%zu align=%zu: returned %p, want %p", values[v], len,
                      al, ret, (void *)d);
                CHECK(at < 0, "c=%#x len=%zu align=%zu: wrong byte at offset %ld from dst",
                      values[v], len, al, at - (long)(GUARD + al));
            }
    ktest_note("kmemset: lengths 0..300 x dst alignments 0..15 x 6 fill values, guards intact");
}

/* ---- kmemcpy / kmemmove on disjoint buffers ---- */
typedef void *(*copy_fn)(void *, const void *, size_t);

static void copy_disjoint(copy_fn fn, const char *name)
{
    for (size_t len = 0; len <= MAX_LEN; len++)
        for (size_t da = 0; da < MAX_ALIGN; da++)
            for (size_t sa = 0; sa < MAX_ALIGN; sa++) {
                fill_random(src_buf, BUF_SIZE);
                fill_random(want, BUF_SIZE);
                memcpy(got, want, BUF_SIZE);
                uint8_t *d = got + GUARD + da;
                const uint8_t *s = src_buf + GUARD + sa;
                void *ret = fn(d, s, len);
                memcpy(want + GUARD + da, s, len);
                long at = first_diff(got, want, BUF_SIZE);
                CHECK(ret == d, "len=%zu dalign=%zu salign=%zu: bad return", len, da, sa);
                CHECK(at < 0, "len=%zu dalign=%zu salign=%zu: wrong byte at offset %ld from dst",
                      len, da, sa, at - (long)(GUARD + da));
                CHECK(!(read_rflags() & RFLAGS_DF), "len=%zu: DF set on return", len);
            }
    ktest_note("%s: disjoint, lengths 0..300 x dst and src alignments 0..15, guards intact", name);
}

KTEST(kmemcpy_disjoint)  { copy_disjoint(kmemcpy, "kmemcpy"); }
KTEST(kmemmove_disjoint) { copy_disjoint(kmemmove, "kmemmove"); }

/* ---- kmemmove with overlap: dst = src + delta, src misaligned by 0..15 ---- */
static void memmove_overlap(int backward)
{
    for (size_t len = 0; len <= MAX_LEN; len++)
        for (int delta = -MAX_DELTA; delta <= MAX_DELTA; delta++) {
            if (backward ? delta < 0 : delta > 0)
                continue;
            for (size_t sa = 0; sa < MAX_ALIGN; sa++) {
                fill_random(want, BUF_SIZE);
                memcpy(got, want, BUF_SIZE);
                size_t s_off = GUARD + MAX_DELTA + sa, d_off = s_off + delta;
                void *ret = kmemmove(got + d_off, got + s_off, len);
                memmove(want + d_off, want + s_off, len);
                long at = first_diff(got, want, BUF_SIZE);
                CHECK(ret == got + d_off, "len=%zu delta=%d salign=%zu: bad return", len, delta,
                      sa);
                CHECK(at < 0, "len=%zu delta=%d salign=%zu: wrong byte at offset %ld from dst",
                      len, delta, sa, at - (long)d_off);
                CHECK(!(read_rflags() & RFLAGS_DF), "len=%zu delta=%d: DF set on return", len,
                      delta);
            }
        }
    ktest_note(backward
        ? "kmemmove: dst above src, overlapping (delta 0..40) x lengths 0..300 x alignments 0..15"
        : "kmemmove: dst below src, overlapping (delta -40..0) x lengths 0..300 x alignments 0..15");
}

KTEST(kmemmove_overlap_dst_below) { memmove_overlap(0); }
KTEST(kmemmove_overlap_dst_above) { memmove_overlap(1); }

/* ---- kmemcmp ---- */
KTEST(kmemcmp_equal)
{
    for (size_t len = 0; len <= MAX_LEN; len++)
        for (size_t aa = 0; aa < MAX_ALIGN; aa++)
            for (size_t ba = 0; ba < MAX_ALIGN; ba++) {
                fill_random(got + aa, len);
                memcpy(want + ba, got + aa, len);
                int r = kmemcmp(got + aa, want + ba, len);
                CHECK(r == 0, "len=%zu aalign=%zu balign=%zu: equal buffers gave %d", len, aa, ba,
                      r);
            }
    ktest_note("kmemcmp: equal buffers, lengths 0..300 x both alignments 0..15 -> 0");
}

/* Buffers that differ first at `pos` (a byte pair chosen so a signed-char compare would get
 * the sign wrong in some cases), and also differ later in the opposite direction. */
KTEST(kmemcmp_first_difference)
{
    static const uint8_t pairs[][2] = {
        { 0x00, 0x01 }, { 0x7f, 0x80 }, { 0x00, 0xff }, { 0x80, 0xff }, { 0x41, 0x42 },
    };
    for (size_t len = 1; len <= MAX_LEN; len++)
        for (size_t pos = 0; pos < len; pos++) {
            if (len > 64 && pos > 20 && pos < len - 20 && pos % 7 != 0)
                continue;  /* long buffers: ends fully, the middle sampled */
            for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++)
                for (int swap = 0; swap < 2; swap++) {
                    size_t aa = (len + pos + p) % MAX_ALIGN, ba = (len * 3 + pos + swap) % MAX_ALIGN;
                    uint8_t *a = got + aa, *b = want + ba;
                    fill_random(a, len);
                    memcpy(b, a, len);
                    a[pos] = pairs[p][swap];
                    b[pos] = pairs[p][!swap];
                    if (pos + 1 < len) {  /* a later difference the other way must not count */
                        a[len - 1] = pairs[p][!swap];
                        b[len - 1] = pairs[p][swap];
                    }
                    int r = kmemcmp(a, b, len), w = memcmp(a, b, len);
                    CHECK(sign(r) == sign(w) && r != 0,
                          "len=%zu pos=%zu a=%#x b=%#x: got %d, libc %d", len, pos, a[pos], b[pos],
                          r, w);
                }
        }
    ktest_note("kmemcmp: first difference at each position (sampled past 64), unsigned bytes, "
               "later differences ignored");
}

/* ---- guard pages: nothing is read or written outside [p, p+n) ---- */
static uint8_t *guarded_area(size_t size)
{
    /* [PROT_NONE page][size rounded to pages][PROT_NONE page]; returns the usable start, or
     * NULL (a failed check) if mmap failed. */
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), body = (size + pg - 1) / pg * pg;
    uint8_t *m = mmap(NULL, body + 2 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!CHECK(m != MAP_FAILED && mprotect(m + pg, body, PROT_READ | PROT_WRITE) == 0,
               "mmap of %zu bytes with guard pages failed", body + 2 * pg))
        return NULL;
    return m + pg;
}

KTEST(guard_pages_never_fault)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *a = guarded_area(pg), *b = guarded_area(pg);
    if (!a || !b)
        return;
    memset(a, 0x33, pg);
    memset(b, 0x33, pg);
    /* Ranges touching the guard page below (start of page) and above (end of page): a fault
     * here kills the program, which tap-suite reports as a failure. */
    for (size_t len = 0; len <= MAX_LEN; len++) {
        uint8_t *a_lo = a, *b_lo = b, *a_hi = a + pg - len, *b_hi = b + pg - len;
        kmemset(a_lo, 0x33, len);
        kmemset(a_hi, 0x33, len);
        kmemcpy(a_lo, b_hi, len);
        kmemcpy(a_hi, b_lo, len);
        kmemmove(a_lo, a_lo + (len > 0), len - (len > 0));
        kmemmove(a_hi + (len > 0), a_hi, len - (len > 0));
        kmemmove(a_lo + (len > 0), a_lo, len - (len > 0));
        kmemmove(a_hi, a_hi + (len > 0), len - (len > 0));
        CHECK(kmemcmp(a_lo, b_hi, len) == 0, "len=%zu: low/high compare", len);
        CHECK(kmemcmp(a_hi, b_lo, len) == 0, "len=%zu: high/low compare", len);
    }
    ktest_note("all four: ranges ending at a guard page or starting right after one never fault");
}

/* ---- large sizes ---- */
KTEST(large_sizes)
{
    static const size_t sizes[] = { LARGE_64K, LARGE_1M };
    static const long deltas[] = { 1, 7, 8, 4096, -1, -7, -8, -4096 };
    for (size_t si = 0; si < 2; si++) {
        size_t n = sizes[si], total = n + 2 * 8192;
        uint8_t *g = malloc(total), *w = malloc(total), *s = malloc(total);
        if (!CHECK(g && w && s, "malloc of 3 x %zu bytes failed", total)) {
            free(g);
            free(w);
            free(s);
            return;
        }
        fill_random(s, total);
        for (size_t al = 0; al < 3; al++) {  /* dst/src misalignments 0, 1, 2 bytes */
            size_t off = 8192 + al * 5;
            fill_random(w, total);
            memcpy(g, w, total);
            CHECK(kmemset(g + off, 0xc3, n) == g + off, "n=%zu: memset return", n);
            memset(w + off, 0xc3, n);
            CHECK(memcmp(g, w, total) == 0, "n=%zu align=%zu: memset", n, al);
            CHECK(kmemcpy(g + off, s + 8192 + al, n) == g + off, "n=%zu: memcpy return", n);
            memcpy(w + off, s + 8192 + al, n);
            CHECK(memcmp(g, w, total) == 0, "n=%zu align=%zu: memcpy", n, al);
            CHECK(kmemcmp(g, w, total) == 0, "n=%zu: memcmp of equal buffers", n);
            w[total - 1] ^= 0x80;
            CHECK(sign(kmemcmp(g, w, total)) == sign(memcmp(g, w, total)),
                  "n=%zu: memcmp with the last byte differing", n);
            w[total - 1] ^= 0x80;
            for (size_t di = 0; di < sizeof deltas / sizeof deltas[0]; di++) {
                CHECK(kmemmove(g + off + deltas[di], g + off, n) == g + off + deltas[di],
                      "n=%zu: memmove return", n);
                memmove(w + off + deltas[di], w + off, n);
                CHECK(memcmp(g, w, total) == 0, "n=%zu align=%zu delta=%ld: memmove", n, al,
                      deltas[di]);
            }
            CHECK(!(read_rflags() & RFLAGS_DF), "n=%zu: DF set", n);
        }
        free(g);
        free(w);
        free(s);
    }
    ktest_note("all four: 64 KiB and 1 MiB+13, misaligned, memmove overlapping both ways");
}
