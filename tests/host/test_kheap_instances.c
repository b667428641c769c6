/*
 * tests/host/test_kheap_instances.c -- heap instances (kheap_create & co.) on the host: creation
 * limits, three heaps with interleaved regions under a randomized workload (each block inside
 * its own heap's regions, foreign pointers reported to the right heap as KHEAP_E_BAD_PTR and
 * changing nothing, one heap exhausted while the others serve), two threads with one unlocked
 * heap each, the hooks (a half lock pair refused), and the reliability holes a review found:
 * a corrupt neighbour of a list head, largest_free after frees, stats reading only sound heads.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kheap_test.h"

#define MiB (1u << 20)

/* ---- per-heap recording handlers: a report must reach the handler of the heap it concerns -- */
enum { NHEAPS = 3 };
static struct { int n, code; void *ptr, *caller; } got[NHEAPS];
#define HANDLER(i)                                                                          \
    static void handler_##i(int code, void *ptr, void *caller)                              \
    {                                                                                       \
        got[i].n++;                                                                         \
        got[i].code = code;                                                                 \
        got[i].ptr = ptr;                                                                   \
        got[i].caller = caller;                                                             \
    }
HANDLER(0)
HANDLER(1)
HANDLER(2)
static const kheap_error_fn handlers[NHEAPS] = { handler_0, handler_1, handler_2 };

static int reports(void) { return got[0].n + got[1].n + got[2].n; }

static void set_handler(kheap_t *h, kheap_error_fn fn)
{
    struct kheap_hooks hooks;
    KEXPECT_EQ(kheap_get_hooks(h, &hooks), 0);
    hooks.error = fn;
    KEXPECT_EQ(kheap_set_hooks(h, &hooks), 0);
}

/* ---- creation ------------------------------------------------------------------------------- */

static unsigned char small[KHEAP_CREATE_MIN + 128] __attribute__((aligned(64)));

KTEST(test_create_limits)
{
    KEXPECT(kheap_create(NULL, 1 * MiB) == NULL);
    KEXPECT(kheap_create((void *)(UINTPTR_MAX - 4096), 8192) == NULL);       /* wraps */
    KEXPECT(kheap_create(small, KHEAP_CREATE_MIN - 1) == NULL);
    KEXPECT(kheap_create(small + 1, KHEAP_CREATE_MIN) == NULL);   /* aligned up: too small */
    kheap_t *h = kheap_create(small + 1, KHEAP_CREATE_MIN + 63);
    KEXPECT(h == (kheap_t *)(small + 64));                       /* the control block */
    struct kheap_stats s;
    kheap_stats(h, &s);
    KEXPECT_EQ(s.total_bytes, KHEAP_MIN_BLOCK);
    KEXPECT_EQ(s.regions, 1);
    void *p = kheap_alloc(h, KHEAP_MIN_BLOCK - META);
    KEXPECT(p != NULL && (unsigned char *)p > small + KHEAP_CTL_SIZE);
    KEXPECT(kheap_alloc(h, 0) == NULL);                          /* full */
    KEXPECT_EQ(kheap_verify(h), 0);
    kheap_free(h, p);
    KEXPECT_EQ(kheap_verify(h), 0);
    /* its own control block is no region for kheap_extend, and no block for kheap_free */
    set_handler(h, handler_0);
    memset(got, 0, sizeof got);
    KEXPECT_EQ(kheap_extend(h, small, 4096), KHEAP_E_OVERLAP);
    kheap_free(h, small + 256);
    KEXPECT_EQ(got[0].n, 1);
    KEXPECT_EQ(got[0].code, KHEAP_E_BAD_PTR);
    KEXPECT_EQ(got[0].ptr, small + 256);
    KEXPECT_EQ(kheap_verify(h), 0);
}

/* ---- three heaps, interleaved regions, randomized ------------------------------------------- */

/* Six slices of one arena, A0 B0 C0 A1 B1 C1: every heap's [lowest, highest) address range
 * holds the other heaps' regions, so foreign pointers pass the cheap range check and must be
 * told apart by the region lookup of the misuse path. */
enum { SLICE = 2 * MiB };
static unsigned char arena3[6 * SLICE] __attribute__((aligned(4096)));

static int in_heap_regions(int i, const unsigned char *p, size_t n)
{
    for (int k = 0; k < 2; k++) {
        const unsigned char *lo = arena3 + (size_t)(3 * k + i) * SLICE;
        if (p >= lo && p + n <= lo + SLICE)
            return 1;
    }
    return 0;
}

struct live3 {
    unsigned char *p;
    size_t n;
    int heap;
    uint8_t seed;
};

static void fill3(const struct live3 *b)
{
    for (size_t i = 0; i < b->n; i++)
        b->p[i] = (uint8_t)(b->seed + i * 7);
}

static int intact3(const struct live3 *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] != (uint8_t)(b->seed + i * 7))
            return 0;
    return 1;
}

static uint64_t rng3 = 0x9E3779B97F4A7C15ull;
static uint64_t next3(void) { return ktest_rand(&rng3); }

KTEST(test_three_heaps_random)
{
    enum { SLOTS = 192, OPS = 60000 };
    static struct live3 live[SLOTS];
    kheap_t *h[NHEAPS];
    memset(got, 0, sizeof got);
    memset(live, 0, sizeof live);
    for (int i = 0; i < NHEAPS; i++) {
        h[i] = kheap_create(arena3 + (size_t)i * SLICE, SLICE);
        KEXPECT(h[i] != NULL);
        KEXPECT_EQ(kheap_extend(h[i], arena3 + (size_t)(3 + i) * SLICE, SLICE), 0);
        set_handler(h[i], handlers[i]);
    }
    unsigned foreign = 0, fails = 0;
    for (int op = 0; op < OPS && !ktest_failures(); op++) {
        uint64_t r = next3();
        struct live3 *b = &live[r % SLOTS];
        int i = (int)((r >> 8) % NHEAPS);
        size_t n = 1 + (next3() >> 40) % ((r >> 12) & 1 ? 256 : 24000);
        unsigned kind = (unsigned)(r >> 20) % 16;
        if (!b->p) {                                    /* a new block in heap i */
            b->p = kind < 8 ? kheap_alloc(h[i], n)
                 : kind < 11 ? kheap_calloc(h[i], 1, n)
                 : kheap_alloc_aligned(h[i], (size_t)32 << (kind % 6), n);
            if (!b->p) {
                fails++;
                continue;
            }
            if (kind >= 8 && kind < 11)
                for (size_t k = 0; k < n; k++)
                    KEXPECT_EQ(b->p[k], 0);
            b->n = n;
            b->heap = i;
            b->seed = (uint8_t)r;
            KEXPECT(in_heap_regions(i, b->p, n));
            KEXPECT(kheap_usable(h[i], b->p) >= n);
            fill3(b);
        } else if (kind < 3 && b->heap != i) {          /* given to another heap: refused */
            int before = got[i].n, all = reports();
            if (kind == 0)
                kheap_free(h[i], b->p);
            else if (kind == 1)
                KEXPECT(kheap_realloc(h[i], b->p, n) == NULL);
            else
                KEXPECT_EQ(kheap_usable(h[i], b->p), 0);
            KEXPECT_EQ(got[i].n, before + 1);          /* to heap i's handler, no other */
            KEXPECT_EQ(reports(), all + 1);
            KEXPECT_EQ(got[i].code, KHEAP_E_BAD_PTR);
            KEXPECT_EQ(got[i].ptr, b->p);
            KEXPECT(intact3(b));
            foreign++;
        } else if (kind < 9) {                          /* freed by its own heap */
            KEXPECT(intact3(b));
            kheap_free(h[b->heap], b->p);
            b->p = NULL;
        } else {                                        /* resized by its own heap */
            KEXPECT(intact3(b));
            unsigned char *q = kheap_realloc(h[b->heap], b->p, n);
            if (!q) {
                fails++;
                KEXPECT(intact3(b));
                continue;
            }
            size_t keep = n < b->n ? n : b->n;
            for (size_t k = 0; k < keep; k++)
                KEXPECT_EQ(q[k], (uint8_t)(b->seed + k * 7));
            b->p = q;
            b->n = n;
            KEXPECT(in_heap_regions(b->heap, q, n));
            fill3(b);
        }
        if (op % 2000 == 0)
            for (int k = 0; k < NHEAPS; k++)
                KEXPECT_EQ(kheap_verify(h[k]), 0);
    }
    KEXPECT(foreign > 1000);
    ktest_note("%u foreign calls reported, %u allocation failures", foreign, fails);
    for (int k = 0; k < NHEAPS; k++)
        KEXPECT_EQ(kheap_verify(h[k]), 0);
    /* exhausting heap 0 leaves the others serving */
    static void *fill_up[8192];
    int nf = 0;
    while (nf < 8192 && (fill_up[nf] = kheap_alloc(h[0], 4000)) != NULL)
        nf++;
    KEXPECT(nf > 100 && nf < 8192);
    KEXPECT(kheap_alloc(h[0], 4000) == NULL);
    for (int k = 1; k < NHEAPS; k++) {
        void *p = kheap_alloc(h[k], 4000);
        KEXPECT(p != NULL);
        kheap_free(h[k], p);
    }
    for (int f = 0; f < nf; f++)
        kheap_free(h[0], fill_up[f]);
    for (int s = 0; s < SLOTS; s++)
        if (live[s].p) {
            KEXPECT(intact3(&live[s]));
            kheap_free(h[live[s].heap], live[s].p);
        }
    for (int k = 0; k < NHEAPS; k++) {
        struct kheap_stats st;
        kheap_stats(h[k], &st);
        KEXPECT_EQ(st.used_bytes, 0);
        KEXPECT_EQ(st.allocs, st.frees);
        KEXPECT_EQ(st.regions, 2);
        KEXPECT_EQ(kheap_verify(h[k]), 0);
    }
}

/* ---- two threads, one unlocked heap each ------------------------------------------------------ */

enum { THREAD_ARENA = 8 * MiB };
static unsigned char tarena[2][THREAD_ARENA] __attribute__((aligned(4096)));

struct worker {
    kheap_t *h;
    int id, bad, verify;
    unsigned long ops;
};

static void *worker_run(void *arg)
{
    enum { N = 256, OPS = 400000 };
    struct worker *w = arg;
    static __thread unsigned char *p[N];
    static __thread size_t len[N];
    uint64_t r = 0x1234567ull * (unsigned)(w->id + 1);
    for (unsigned long op = 0; op < OPS; op++) {
        unsigned i = (unsigned)(ktest_rand(&r) % N);
        if (p[i]) {
            for (size_t k = 0; k < len[i]; k += 16)
                w->bad += p[i][k] != (uint8_t)(w->id * 64 + i);
            kheap_free(w->h, p[i]);
            p[i] = NULL;
        } else {
            len[i] = 1 + (r >> 32) % 2048;
            p[i] = (r >> 20) & 1 ? kheap_alloc(w->h, len[i])
                                 : kheap_alloc_aligned(w->h, 64, len[i]);
            if (p[i])
                memset(p[i], w->id * 64 + i, len[i]);
        }
        w->ops++;
    }
    for (unsigned i = 0; i < N; i++)
        kheap_free(w->h, p[i]);
    w->verify = kheap_verify(w->h);
    return NULL;
}

KTEST(test_two_threads_two_heaps)
{
    struct worker w[2] = { { .id = 0 }, { .id = 1 } };
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        w[i].h = kheap_create(tarena[i], THREAD_ARENA);
        KEXPECT(w[i].h != NULL);
        set_handler(w[i].h, handlers[i]);
    }
    memset(got, 0, sizeof got);
    for (int i = 0; i < 2; i++)
        KEXPECT_EQ(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        struct kheap_stats s;
        kheap_stats(w[i].h, &s);
        KEXPECT_EQ(w[i].bad, 0);
        KEXPECT_EQ(w[i].verify, 0);
        KEXPECT_EQ(s.used_bytes, 0);
        KEXPECT_EQ(s.allocs, s.frees);
        KEXPECT_EQ(s.errors, 0);
    }
    KEXPECT_EQ(reports(), 0);
}

/* ---- hooks ------------------------------------------------------------------------------------ */

static int lock_calls;
static void lock_hook(void *ctx) { (void)ctx; lock_calls++; }
static void unlock_hook(void *ctx) { (void)ctx; lock_calls--; }

static unsigned char harena[1 * MiB] __attribute__((aligned(4096)));

KTEST(test_hooks_half_pair_refused)
{
    kheap_t *h = kheap_create(harena, sizeof harena);
    struct kheap_hooks full = { .error = handler_0, .lock = lock_hook, .unlock = unlock_hook,
                                .lock_ctx = &lock_calls };
    struct kheap_hooks half = full, got_hooks;
    KEXPECT_EQ(kheap_set_hooks(h, &full), 0);
    half.unlock = NULL;
    KEXPECT_EQ(kheap_set_hooks(h, &half), KHEAP_E_INVAL);
    half = full;
    half.lock = NULL;
    KEXPECT_EQ(kheap_set_hooks(h, &half), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_get_hooks(h, &got_hooks), 0);       /* unchanged */
    KEXPECT(memcmp(&got_hooks, &full, sizeof full) == 0);
    void *p = kheap_alloc(h, 10);
    kheap_free(h, p);
    KEXPECT_EQ(lock_calls, 0);                           /* balanced */
    KEXPECT_EQ(kheap_set_hooks(h, NULL), 0);             /* none at all */
    KEXPECT_EQ(kheap_get_hooks(h, &got_hooks), 0);
    KEXPECT(got_hooks.error == NULL && got_hooks.lock == NULL && got_hooks.grow == NULL);
    /* the default heap's setter refuses half a pair too, and nothing deadlocks afterwards */
    KEXPECT_EQ(kheap_init(harena, sizeof harena), 0);
    KEXPECT_EQ(kheap_set_lock(lock_hook, NULL, NULL), KHEAP_E_INVAL);
    KEXPECT_EQ(kheap_set_lock(NULL, unlock_hook, NULL), KHEAP_E_INVAL);
    p = kmalloc(10);
    KEXPECT(p != NULL);
    kfree(p);
    KEXPECT_EQ(lock_calls, 0);
    KEXPECT_EQ(kheap_get_hooks(kheap_default(), &got_hooks), 0);
    KEXPECT(got_hooks.lock == NULL && got_hooks.unlock == NULL);
    /* hooks set through kheap_set_hooks on the default heap survive kheap_init */
    KEXPECT_EQ(kheap_set_hooks(kheap_default(), &full), 0);
    KEXPECT_EQ(kheap_init(harena, sizeof harena), 0);
    KEXPECT_EQ(kheap_get_hooks(kheap_default(), &got_hooks), 0);
    KEXPECT(memcmp(&got_hooks, &full, sizeof full) == 0);
    KEXPECT_EQ(kheap_set_hooks(kheap_default(), NULL), 0);
}

/* ---- every heap owns its state: secret, counters, fault injection, cache, leak scratch ---- */

TRAMPOLINE(t_kheap_free, kheap_free)
TRAMPOLINE(t_kheap_realloc, kheap_realloc)
TRAMPOLINE(t_kheap_usable, kheap_usable)
void   t_kheap_free(kheap_t *h, void *p);
void  *t_kheap_realloc(kheap_t *h, void *p, size_t n);
size_t t_kheap_usable(kheap_t *h, const void *p);

static void count_site(void *site, size_t blocks, size_t bytes, void *ctx)
{
    (void)site, (void)bytes;
    *(size_t *)ctx += blocks;
}

KTEST(test_state_is_per_heap)
{
    static unsigned char a_mem[1 * MiB] __attribute__((aligned(4096)));
    static unsigned char b_mem[1 * MiB] __attribute__((aligned(4096)));
    kheap_t *a = kheap_create(a_mem, sizeof a_mem), *b = kheap_create(b_mem, sizeof b_mem);
    set_handler(a, handler_0);
    set_handler(b, handler_1);
    memset(got, 0, sizeof got);
    /* fault injection in a: b allocates on */
    kheap_fail_after_in(a, 0);
    KEXPECT(kheap_alloc(a, 10) == NULL);
    void *pb = kheap_alloc(b, 10);
    KEXPECT(pb != NULL);
    kheap_fail_after_in(a, -1);
    void *pa = kheap_alloc(a, 10);
    KEXPECT(pa != NULL);
    struct kheap_stats sa, sb;
    kheap_stats(a, &sa);
    kheap_stats(b, &sb);
    KEXPECT_EQ(sa.failed_allocs, 1);
    KEXPECT_EQ(sb.failed_allocs, 0);
    KEXPECT_EQ(sa.allocs, 1);
    KEXPECT_EQ(sb.allocs, 1);
    /* a new secret for a: b's headers are untouched and still valid */
    KEXPECT_EQ(kheap_set_secret_in(a, 0x0123456789ABCDEFull), 0);
    KEXPECT_EQ(((struct kh_ctl *)a)->secret, 0x0123456789ABCDEFull);
    KEXPECT_NE(((struct kh_ctl *)b)->secret, 0x0123456789ABCDEFull);
    KEXPECT_EQ(kheap_verify(a), 0);
    KEXPECT_EQ(kheap_verify(b), 0);
    /* leak reports count each heap's own live blocks */
    void *more = kheap_alloc(b, 100);
    size_t na = 0, nb = 0;
    KEXPECT_EQ(kheap_leak_report_in(a, count_site, &na), 1);
    KEXPECT_EQ(kheap_leak_report_in(b, count_site, &nb), DEBUG_BUILD ? 2 : 1);   /* 2 sites */
    KEXPECT_EQ(na, 1);
    KEXPECT_EQ(nb, 2);
    /* caches (the slab tier's per-CPU stacks): a freed small object of a is reused by a,
     * never by b */
    kheap_free(a, pa);
    void *pa2 = kheap_alloc(a, 10), *pb2 = kheap_alloc(b, 10);
    KEXPECT(pa2 == pa);
    KEXPECT(pb2 != pa);
    /* misuse reports name the real caller, per heap */
    t_kheap_free(b, pa2);
    KEXPECT_EQ(got[1].n, 1);
    KEXPECT_EQ(got[1].caller, t_kheap_free_ret);
    KEXPECT(t_kheap_realloc(b, pa2, 50) == NULL);
    KEXPECT_EQ(got[1].caller, t_kheap_realloc_ret);
    KEXPECT_EQ(t_kheap_usable(b, pa2), 0);
    KEXPECT_EQ(got[1].caller, t_kheap_usable_ret);
    KEXPECT_EQ(got[1].n, 3);
    KEXPECT_EQ(got[0].n, 0);
    kheap_free(a, pa2);
    kheap_free(b, pb);
    kheap_free(b, pb2);
    kheap_free(b, more);
    kheap_stats(a, &sa);
    kheap_stats(b, &sb);
    KEXPECT_EQ(sa.used_bytes + sb.used_bytes, 0);
    KEXPECT_EQ(kheap_verify(a), 0);
    KEXPECT_EQ(kheap_verify(b), 0);
}

/* ---- give-back: the trim hook, with a toy page allocator ------------------------------------ */

/* A toy page allocator over one mapping: memory is handed out upwards from `top` (the grow
 * hook) and taken back at the top (the trim hook), which makes it inaccessible (PROT_NONE): a
 * heap that touched it again would fault. */
static struct {
    unsigned char *base, *top, *limit;
    int grows, trims, refuse;
    size_t last_size;
} pages;

static size_t toy_grow(size_t need, void **start)
{
    size_t n = (need + 64 * 1024 - 1) & ~(size_t)(64 * 1024 - 1);
    pages.grows++;
    if (pages.top + n > pages.limit)
        return 0;
    mprotect(pages.top, n, PROT_READ | PROT_WRITE);
    *start = pages.top;
    pages.top += n;
    return n;
}

static int toy_trim(void *start, size_t size)
{
    pages.trims++;
    pages.last_size = size;
    if (pages.refuse || (unsigned char *)start + size != pages.top ||
        (uintptr_t)start % KHEAP_PAGE_SIZE || size % KHEAP_PAGE_SIZE)
        return 0;
    mprotect(start, size, PROT_NONE);
    pages.top = start;
    return 1;
}

/* A heap on the toy page allocator: TOY_MAP bytes reserved, the first TOY_FIRST accessible and
 * the heap's first region, the toy hooks set (into *hooks too). NULL if the mapping fails. */
#define TOY_MAP   (16 * MiB)
#define TOY_FIRST (KHEAP_CTL_SIZE + 64 * 1024)
static kheap_t *toy_heap(struct kheap_hooks *hooks)
{
    unsigned char *m = mmap(NULL, TOY_MAP, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    mprotect(m, TOY_FIRST, PROT_READ | PROT_WRITE);
    memset(&pages, 0, sizeof pages);
    pages.base = m;
    pages.top = m + TOY_FIRST;
    pages.limit = m + TOY_MAP;
    *hooks = (struct kheap_hooks){ .error = handler_0, .grow = toy_grow, .trim = toy_trim };
    kheap_t *h = kheap_create(m, TOY_FIRST);
    if (kheap_set_hooks(h, hooks) != 0)
        return NULL;
    memset(got, 0, sizeof got);
    return h;
}

KTEST(test_trim_gives_pages_back)
{
    struct kheap_hooks hooks;
    kheap_t *h = toy_heap(&hooks);
    KEXPECT(h != NULL);
    if (!h)
        return;
    unsigned char *m = pages.base;
    struct kheap_stats s0, s;
    kheap_stats(h, &s0);
    /* grow: 40 blocks of 60 KiB need new pages (the region is extended upwards) */
    static void *p[40];
    for (int i = 0; i < 40; i++) {
        p[i] = kheap_alloc(h, 60 * 1024);
        KEXPECT(p[i] != NULL);
        if (p[i])
            memset(p[i], i, 60 * 1024);
    }
    kheap_stats(h, &s);
    KEXPECT(pages.grows > 0 && s.total_bytes > s0.total_bytes + 2 * MiB);
    KEXPECT_EQ(s.regions, 1);
    /* a refused offer changes nothing */
    pages.refuse = 1;
    kheap_free(h, p[39]);
    p[39] = NULL;
    KEXPECT(pages.trims > 0);
    struct kheap_stats s1;
    kheap_stats(h, &s1);
    KEXPECT_EQ(s1.total_bytes, s.total_bytes);
    KEXPECT_EQ(s1.trimmed_bytes, 0);
    pages.refuse = 0;
    /* free everything: the region's end goes back, page by page, and is never touched again */
    for (int i = 0; i < 39; i++)
        kheap_free(h, p[i]);
    kheap_stats(h, &s);
    KEXPECT(s.trimmed_bytes >= 2 * MiB);
    KEXPECT_EQ(s.total_bytes + s.trimmed_bytes, s1.total_bytes);
    KEXPECT(s.total_bytes <= s0.total_bytes + 64 * 1024);     /* back to about the first size */
    KEXPECT(pages.top <= m + TOY_FIRST + 64 * 1024);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(kheap_verify(h), 0);                            /* reads no given-back page */
    KEXPECT_EQ(got[0].n, 0);
    /* a span below trim_min is not offered */
    hooks.trim_min = 8 * MiB;
    KEXPECT_EQ(kheap_set_hooks(h, &hooks), 0);
    int trims = pages.trims;
    void *q = kheap_alloc(h, 1 * MiB);
    KEXPECT(q != NULL);
    kheap_free(h, q);
    KEXPECT_EQ(pages.trims, trims);
    /* and the grow hook may hand the pages back: they are used again */
    for (int i = 0; i < 20; i++) {
        p[i] = kheap_alloc(h, 60 * 1024);
        KEXPECT(p[i] != NULL);
        if (p[i])
            memset(p[i], 0x5A, 60 * 1024);
    }
    for (int i = 0; i < 20; i++)
        kheap_free(h, p[i]);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(got[0].n, 0);
    munmap(m, TOY_MAP);
}

/* A cached block between a free span and the heap's end: its free offers nothing (it is only
 * cached), so kheap_flush_in, which merges it, offers the end; exactly the pages beyond the
 * free block's first KHEAP_MIN_BLOCK bytes (and the sentinel) go. The cached block is a small
 * TLSF block in the front cache (small_slab 0: kheap_alloc_aligned with align 128 makes one:
 * up to 64 a small one is a slab object), or a slab object
 * in this CPU's stack, whose slab is then empty: kept as its class's spare until the flush. */
static void trim_behind_a_cached(int small_slab)
{
    if (!small_slab && KHEAP_QUICK_DEPTH == 0) {
        ktest_skip("no front cache (KHEAP_QUICK_DEPTH=0)");
        return;
    }
    struct kheap_hooks hooks;
    kheap_t *h = toy_heap(&hooks);
    KEXPECT(h != NULL);
    if (!h)
        return;
    unsigned char *m = pages.base;
    static void *p[10];
    for (int i = 0; i < 10; i++)
        KEXPECT((p[i] = kheap_alloc(h, 60 * 1024)) != NULL);
    void *x = small_slab ? kheap_alloc(h, 100) : kheap_alloc_aligned(h, 128, 100);
    void *y = kheap_alloc(h, 60 * 1024);
    KEXPECT(x && y && (uintptr_t)p[0] < (uintptr_t)x && (uintptr_t)x < (uintptr_t)y);
    kheap_free(h, y);                                   /* the end: given back at once */
    for (int i = 0; i < 10; i++)
        kheap_free(h, p[i]);                            /* a free span below x */
    kheap_free(h, x);                                   /* cached: still between span and end */
    struct kheap_stats s1, s2;
    kheap_stats(h, &s1);
    KEXPECT_EQ(s1.used_bytes, 0);
    KEXPECT_EQ(s1.slab_bytes, small_slab ? KH_SLAB_BLOCK : 0);
    kheap_flush_in(h);
    kheap_stats(h, &s2);
    KEXPECT(s2.trimmed_bytes >= s1.trimmed_bytes + 10 * 60 * 1024);
    KEXPECT_EQ(s2.total_bytes + s2.trimmed_bytes, s1.total_bytes + s1.trimmed_bytes);
    uintptr_t f = (uintptr_t)p[0] - KHEAP_HEADER_SIZE;  /* the heap's first block */
    uintptr_t t = (f + KHEAP_MIN_BLOCK + 8 + KHEAP_PAGE_SIZE - 1) & ~(uintptr_t)(KHEAP_PAGE_SIZE - 1);
    KEXPECT_EQ((uintptr_t)pages.top, t);
    KEXPECT_EQ(kheap_verify(h), 0);                     /* reads no given-back page */
    KEXPECT((p[0] = kheap_alloc(h, 200 * 1024)) != NULL);  /* and grows again */
    kheap_free(h, p[0]);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(got[0].n, 0);
    munmap(m, TOY_MAP);
}

KTEST(test_trim_behind_a_cached_block) { trim_behind_a_cached(0); }
KTEST(test_trim_behind_a_cached_object) { trim_behind_a_cached(1); }

/* krealloc shrinking the heap's last block in place frees its tail: that end is offered like a
 * free's; growing in place offers nothing. */
KTEST(test_trim_after_krealloc_shrink)
{
    struct kheap_hooks hooks;
    kheap_t *h = toy_heap(&hooks);
    KEXPECT(h != NULL);
    if (!h)
        return;
    unsigned char *m = pages.base;
    unsigned char *p = kheap_alloc(h, 2 * MiB);
    KEXPECT(p != NULL);
    if (p)
        memset(p, 0x33, 2 * MiB);
    struct kheap_stats s1, s2;
    kheap_stats(h, &s1);
    int trims = pages.trims;
    unsigned char *q = kheap_realloc(h, p, 100 * 1024);        /* shrinks in place */
    KEXPECT(q == p);
    kheap_stats(h, &s2);
    KEXPECT(pages.trims > trims);
    KEXPECT(s2.trimmed_bytes >= s1.trimmed_bytes + MiB);
    KEXPECT_EQ(s2.total_bytes + s2.trimmed_bytes, s1.total_bytes + s1.trimmed_bytes);
    KEXPECT(q && q[100 * 1024 - 1] == 0x33);
    KEXPECT_EQ(kheap_verify(h), 0);                            /* reads no given-back page */
    trims = pages.trims;
    q = kheap_realloc(h, q, 1 * MiB);                          /* grows: nothing offered */
    KEXPECT(q != NULL);
    KEXPECT_EQ(pages.trims, trims);
    KEXPECT(q && q[0] == 0x33);
    kheap_free(h, q);
    KEXPECT_EQ(kheap_verify(h), 0);
    KEXPECT_EQ(got[0].n, 0);
    munmap(m, TOY_MAP);
}

/* Only the heap's highest end is offered (a hole below max would be read by kfree's first
 * test), and only after a sound sentinel: a zeroed header right of a free block is no end. */
static int trims_seen;
static int count_trim(void *start, size_t size) { (void)start, (void)size; return ++trims_seen, 1; }

KTEST(test_trim_only_at_the_heaps_end)
{
    size_t map = 4 * MiB;
    unsigned char *m = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    KEXPECT(m != MAP_FAILED);
    if (m == MAP_FAILED)
        return;
    kheap_t *h = kheap_create(m, KHEAP_CTL_SIZE + 512 * 1024);      /* region 1, page-aligned end */
    KEXPECT_EQ(kheap_extend(h, m + 2 * MiB, 128 * 1024), 0);       /* region 2: the highest */
    struct kheap_hooks hooks = { .error = handler_0, .trim = count_trim };
    KEXPECT_EQ(kheap_set_hooks(h, &hooks), 0);
    memset(got, 0, sizeof got);
    trims_seen = 0;
    void *low = kheap_alloc(h, 400 * 1024);                         /* only region 1 holds it */
    KEXPECT(low != NULL && (unsigned char *)low < m + MiB);
    kheap_free(h, low);                                             /* region 1's end: not offered */
    KEXPECT_EQ(trims_seen, 0);
    /* a zeroed used header right of a free block is not taken for the end sentinel (a and x:
     * TLSF blocks at the start of region 2, x right of a) */
    unsigned char *a = kheap_alloc(h, 100 * 1024), *n = kheap_alloc(h, 100 * 1024),
                  *x = kheap_alloc(h, TLSF_MIN);
    KEXPECT(a && n && x);
    KEXPECT(a >= m + 2 * MiB && x == a + block_of(100 * 1024));
    kheap_free(h, n);                                               /* free (too big to cache) */
    uint64_t *hx = (uint64_t *)(x - KHEAP_HEADER_SIZE), saved = *hx;
    *hx = 0;
    kheap_free(h, a);                                               /* merges with n, next is x */
    KEXPECT_EQ(trims_seen, 0);
    KEXPECT_EQ(kheap_verify(h), KHEAP_E_CORRUPT);
    *hx = saved;
    kheap_free(h, x);
    KEXPECT_EQ(kheap_verify(h), 0);
    struct kheap_stats s;
    kheap_stats(h, &s);
    KEXPECT_EQ(s.trimmed_bytes, 0);
    KEXPECT_EQ(s.regions, 2);
    munmap(m, map);
}

/* The guards of an offer: at least KHEAP_TRIM_MIN of pages when trim_min is 0; a region end on
 * a page boundary; never from the front cache's flush inside an allocation (the retry needs the
 * room it merged). count_trim takes whatever it is offered. */
KTEST(test_trim_guards)
{
    size_t map = 4 * MiB;
    unsigned char *m = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    KEXPECT(m != MAP_FAILED);
    if (m == MAP_FAILED)
        return;
    struct kheap_hooks hooks = { .error = handler_0, .trim = count_trim };
    memset(got, 0, sizeof got);
    /* trim_min 0 means KHEAP_TRIM_MIN: a 60 KiB span at the end is kept, a larger one offered */
    kheap_t *h = kheap_create(m, KHEAP_CTL_SIZE + 1 * MiB);
    KEXPECT_EQ(kheap_set_hooks(h, &hooks), 0);
    trims_seen = 0;
    struct kheap_stats s;
    kheap_stats(h, &s);
    void *b = kheap_alloc(h, s.largest_free - 64 * 1024), *c = kheap_alloc(h, 20 * 1024);
    KEXPECT(b && c);
    kheap_free(h, c);                                   /* c + the tail: < 64 KiB of pages */
    KEXPECT_EQ(trims_seen, 0);
    kheap_free(h, b);                                   /* the whole heap: offered */
    KEXPECT_EQ(trims_seen, 1);
    KEXPECT_EQ(kheap_verify(h), 0);
    /* a region that does not end on a page boundary is never offered */
    h = kheap_create(m + 2 * MiB, KHEAP_CTL_SIZE + 512 * 1024 + 37 * 16);
    KEXPECT_EQ(kheap_set_hooks(h, &hooks), 0);
    trims_seen = 0;
    void *x = kheap_alloc(h, 300 * 1024);
    KEXPECT(x != NULL);
    kheap_free(h, x);
    KEXPECT_EQ(trims_seen, 0);
    KEXPECT_EQ(kheap_verify(h), 0);
    /* [ A free ][ x cached ][ tail, never freed ][end]: an allocation that needs all three
     * flushes x and gets the merged block; nothing is offered on the way. x: a small TLSF
     * block in the front cache (kheap_alloc_aligned with align 128 makes one), then a slab
     * object in this CPU's stack (the allocation gives its slab back, without an offer, too) */
    for (int small_slab = KHEAP_QUICK_DEPTH > 0 ? 0 : 1; small_slab < 2; small_slab++) {
        h = kheap_create(m, KHEAP_CTL_SIZE + 1 * MiB);
        KEXPECT_EQ(kheap_set_hooks(h, &hooks), 0);
        trims_seen = 0;
        kheap_stats(h, &s);
        size_t all = s.largest_free;
        void *a = kheap_alloc(h, all - 100 * 1024);
        x = small_slab ? kheap_alloc(h, 100) : kheap_alloc_aligned(h, 128, 100);
        KEXPECT(a && x);
        kheap_free(h, a);                               /* x (or its gap) is right of a */
        kheap_free(h, x);                               /* cached */
        KEXPECT_EQ(trims_seen, 0);
        void *big = kheap_alloc(h, all - 4096);
        KEXPECT(big != NULL);
        KEXPECT_EQ(trims_seen, 0);
        kheap_free(h, big);                             /* a user's free: offered */
        KEXPECT_EQ(trims_seen, 1);
        KEXPECT_EQ(kheap_verify(h), 0);
    }
    KEXPECT_EQ(got[0].n, 0);
    munmap(m, map);
}

/* ---- reliability holes ---------------------------------------------------------------------- */

/* One overwritten used header right of a free list's head: the first allocation that reaches
 * that head reports it once and sets the head aside; every allocation is still served from the
 * rest of the heap. Once the header is repaired, kheap_verify gives the block back. */
KTEST(test_corrupt_neighbour_of_list_head)
{
    kheap_t *h = kheap_create(harena, 128 * 1024 + KHEAP_CTL_SIZE);
    set_handler(h, handler_0);
    memset(got, 0, sizeof got);
    /* TLSF blocks side by side, of a size whose allocation takes the head of its own list
     * (kheap_test.h, TLSF_FIT) */
    const size_t m = TLSF_FIT;
    unsigned char *a = kheap_alloc(h, m), *b = kheap_alloc(h, m), *c = kheap_alloc(h, m);
    KEXPECT(b == a + block_of(m) && c == b + block_of(m));
    kheap_free(h, b);
    kheap_flush_in(h);                                 /* b heads the list of its size */
    uint64_t *hdr = (uint64_t *)(c - KHEAP_HEADER_SIZE), saved = *hdr;
    *hdr ^= 1ull << 60;                                /* c's header: check bits broken */
    static void *p[100];
    int ok = 0;
    for (int i = 0; i < 100; i++)
        ok += (p[i] = kheap_alloc(h, m)) != NULL;
    KEXPECT_EQ(ok, 100);
    KEXPECT_EQ(got[0].n, 1);                         /* reported once */
    KEXPECT_EQ(got[0].code, KHEAP_E_BAD_HEADER);
    KEXPECT_EQ(got[0].ptr, c);
    for (int i = 0; i < 100; i++)
        KEXPECT(p[i] != b);                          /* never handed out */
    KEXPECT_EQ(kheap_verify(h), KHEAP_E_CORRUPT);    /* c is still corrupt */
    *hdr = saved;
    KEXPECT_EQ(kheap_verify(h), 0);                  /* sound again: b re-adopted */
    for (int i = 0; i < 100; i++)
        kheap_free(h, p[i]);
    kheap_free(h, a);
    kheap_free(h, c);
    struct kheap_stats s;
    kheap_stats(h, &s);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.largest_free, s.total_bytes);
    KEXPECT_EQ(got[0].n, 1);
}

/* A flush that finds a cached block's neighbour corrupt reports it and keeps the block cached
 * on no list: not a used block nobody owns (a stale free of it is still a double free), and
 * kheap_verify gives it back once the neighbour is repaired. */
KTEST(test_flush_refused_block_stays_free)
{
    if (KHEAP_QUICK_DEPTH == 0) {
        ktest_skip("no front cache (KHEAP_QUICK_DEPTH=0)");
        return;
    }
    /* no room for a slab (kheap_test.h, NOSLAB_REGION): small requests are TLSF blocks */
    kheap_t *h = kheap_create(harena, NOSLAB_REGION + KHEAP_CTL_SIZE);
    set_handler(h, handler_0);
    memset(got, 0, sizeof got);
    unsigned char *a = kheap_alloc(h, 40), *b = kheap_alloc(h, 40);
    KEXPECT(b == a + block_of(40));
    struct kheap_stats s0, s;
    kheap_stats(h, &s0);
    kheap_free(h, a);                                  /* cached */
    uint64_t *hdr = (uint64_t *)(b - KHEAP_HEADER_SIZE), saved = *hdr;
    *hdr ^= 1ull << 41;                                /* b's header broken */
    kheap_flush_in(h);
    KEXPECT_EQ(got[0].n, 1);                           /* reported once */
    KEXPECT_EQ(got[0].code, KHEAP_E_BAD_HEADER);
    *hdr = saved;
    kheap_stats(h, &s);
    KEXPECT_EQ(s.used_bytes, s0.used_bytes - block_of(40));  /* a is not used */
    KEXPECT_EQ(kheap_verify(h), 0);                    /* a given back */
    kheap_free(h, a);                                  /* stale: a double free */
    KEXPECT_EQ(got[0].n, 2);
    KEXPECT_EQ(got[0].code, KHEAP_E_DOUBLE_FREE);
    kheap_free(h, b);
    kheap_stats(h, &s);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.largest_free, s.total_bytes);
    KEXPECT_EQ(kheap_verify(h), 0);
}

/* After every block is freed, largest_free is the whole region, front cache or not (no flush
 * by the caller): it is what one allocation can get. Small TLSF blocks (kheap_alloc_aligned
 * with align 128 and up: the front cache's) first; then with slab objects too, whose slabs
 * the heap may still hold (spares, this CPU's stacks: largest_free counts them out until
 * kheap_flush_in), but one allocation that needs the whole heap still gets it (it gives them
 * back first). */
KTEST(test_largest_free_after_frees)
{
    enum { N = 6000 };
    static unsigned char big[64 * MiB] __attribute__((aligned(4096)));
    static void *p[N];
    kheap_t *h = kheap_create(big, sizeof big);
    struct kheap_stats s;
    kheap_stats(h, &s);
    const size_t total = s.total_bytes;
    uint64_t r = 7;
    for (int slabs = 0; slabs < 2; slabs++) {
        for (int i = 0; i < N; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            size_t n = 16 + (r >> 33) % 480;
            p[i] = !slabs || (r >> 20) % 3 == 0
                       ? kheap_alloc_aligned(h, (size_t)128 << ((r >> 24) % 6), n)
                       : kheap_alloc(h, n);
            KEXPECT(p[i] != NULL);
        }
        for (int i = 0; i < N; i += 2)
            kheap_free(h, p[i]);
        for (int i = 1; i < N; i += 2)
            kheap_free(h, p[i]);
        kheap_stats(h, &s);
        KEXPECT_EQ(s.used_bytes, 0);
        KEXPECT_EQ(s.free_bytes, total);
        if (!slabs) {
            KEXPECT_EQ(s.slab_bytes, 0);
            KEXPECT_EQ(s.largest_free, total);
            KEXPECT_EQ(s.fragmentation_ppm, 0);
        } else {
            KEXPECT(s.slab_bytes > 0);
        }
        void *all = kheap_alloc(h, total - META);       /* and one allocation gets it */
        KEXPECT(all != NULL);
        kheap_free(h, all);
        kheap_flush_in(h);
        kheap_stats(h, &s);
        KEXPECT_EQ(s.slab_bytes, 0);
        KEXPECT_EQ(s.largest_free, total);
        KEXPECT_EQ(s.fragmentation_ppm, 0);
        KEXPECT_EQ(kheap_verify(h), 0);
    }
}

/* kheap_stats reads only list heads, each checked before use: a link of the highest list that
 * was overwritten to point into a gap between two regions (unmapped here) is never followed. */
KTEST(test_stats_reads_only_checked_heads)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t rlen = 64 * 1024;
    unsigned char *m = mmap(NULL, 2 * rlen + (size_t)page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    KEXPECT(m != MAP_FAILED);
    if (m == MAP_FAILED)
        return;
    unsigned char *gap = m + rlen, *r2 = gap + page;
    KEXPECT_EQ(mprotect(gap, (size_t)page, PROT_NONE), 0);   /* any read there faults */
    kheap_t *h = kheap_create(m, rlen);
    KEXPECT_EQ(kheap_extend(h, r2, rlen), 0);
    struct kh_ctl *c = (struct kh_ctl *)h;
    /* two free blocks of one top class: the head's next link is made to decode into the gap */
    unsigned char *x = kheap_alloc(h, 20000), *y = kheap_alloc(h, 20000);
    KEXPECT(x != NULL && y != NULL);
    struct kheap_stats s;
    kheap_stats(h, &s);
    uintptr_t head = 0;
    for (int fl = KH_FL_COUNT - 1; fl >= 0 && !head; fl--)
        for (int sl = KH_SL_COUNT - 1; sl >= 0 && !head; sl--)
            head = c->heads[fl][sl];
    KEXPECT(head != 0);
    uint64_t *next = (uint64_t *)(head + KH_FREE_NEXT), saved = *next;
    *next = ((uintptr_t)gap + 8) ^ c->link_key ^ head;        /* decodes to a header address */
    kheap_stats(h, &s);                                        /* must not read the gap */
    KEXPECT_EQ(s.largest_free, *(uint64_t *)head & KH_SIZE_MASK);
    *next = saved;
    kheap_free(h, x);
    kheap_free(h, y);
    KEXPECT_EQ(kheap_verify(h), 0);
    munmap(m, 2 * rlen + (size_t)page);
}
