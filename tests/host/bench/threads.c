/*
 * threads.c -- the multi-threaded figures for one allocator: the main() of
 * build/bench/bin/threads-<name>, linked with that allocator's adapter like runner.c (one
 * process per allocator: jemalloc and mimalloc replace malloc process-wide). The driver
 * (driver.c) starts it once per round after the single-threaded runners and reads its records.
 * Every figure is one heap shared by the threads; an allocator with a threads hook (kheap: a
 * lock and a thread-slot cpu hook, adapter_kheap.c) gets it after every init.
 *
 *   small_churn, 1 and 2 threads: each thread runs workloads.c's small_churn (its own 4096 live
 *     slots, 8..512 B, its own seed and op budget) at the same time; throughput = all threads'
 *     ops / wall time (2T/1T = 2.0: perfect scaling).
 *   compute, 1 and 2 threads (just before small_churn): no allocator calls, each thread its own
 *     PRNG loop: the scaling this machine gives at that moment (a shared VM's 2 vCPUs often
 *     give well under 2x, and it moves from minute to minute).
 *   prodcons: thread 0 allocates blocks of 8..512 B, writes their first and last byte and passes
 *     them through a single-producer single-consumer ring (PC_RING entries) to thread 1, which
 *     checks those bytes and frees them: every free is a remote free.
 *
 * The worker threads are made once and reused (a thread's cpu slot lives as long as it does).
 * Each figure: [check pass,] warm-up pass (ops / 8), timed pass, each on a fresh init.
 * Run by hand: `build/bench/bin/threads-glibc --only prodcons`.
 *
 * Records (runner.c's format; the driver parses them):
 *   M,alloc,workload,round,threads,seed,ops,ns     ops made by all threads together in ns
 *   C,alloc,name,ok(1|0),message                   check mode results
 *   # text                                         notes ("failed" in one marks a failure)
 * Seeds: thread t of small_churn bench_seed(200 + t, round); prodcons bench_seed(210, round);
 * warm-up passes the seed ^ 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "bench.h"
#include "host_util.h"

#define ARENA_BYTES   (64ul << 20)    /* arena allocators: 2 x 4096 x 512 B live at most */
#define NTHREADS      2
#define CHURN_OPS     4000000         /* per thread */
#define CHURN_SMOKE   6000
#define PC_BLOCKS     500000          /* prodcons: blocks passed (2 ops each) */
#define PC_SMOKE      5000
#define PC_RING       1024            /* entries; a power of two */
#define PC_BATCH      32              /* entries per index update; divides PC_RING */
#define PC_SPIN_TICKS 1000000         /* TSC ticks (~0.4 ms) a waiting side spins, then sleeps */
#define PC_MIN        8u
#define PC_MAX        512u
#define WARMUP_DIV    8
#define COMPUTE_ITERS 50000000        /* per thread */
#define COMPUTE_SMOKE 100000
#define SEED_CHURN    200u
#define SEED_PC       210u

static const struct bench_alloc *A;
static uint8_t *ARENA;
static int SMOKE, CHECK;
static unsigned ROUND;


static inline void cpu_relax(void) { __builtin_ia32_pause(); }

/* ---------------------------------------------------------------------------------------------
 * Worker pool: NTHREADS threads made once; run() hands every one of them the same job and
 * returns when all are done (threads >= the job's count just pass the barriers).
 * ------------------------------------------------------------------------------------------- */
typedef void (*job_fn)(unsigned t, void *arg);
static struct {
    pthread_t tid[NTHREADS];
    pthread_barrier_t start, end;
    job_fn fn;
    void *arg;
    unsigned n;
    int quit;
} POOL;

static void *worker(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    for (;;) {
        pthread_barrier_wait(&POOL.start);
        if (POOL.quit)
            return NULL;
        if (t < POOL.n)
            POOL.fn(t, POOL.arg);
        pthread_barrier_wait(&POOL.end);
    }
}

static void pool_start(void)
{
    pthread_barrier_init(&POOL.start, NULL, NTHREADS + 1);
    pthread_barrier_init(&POOL.end, NULL, NTHREADS + 1);
    for (unsigned t = 0; t < NTHREADS; t++)
        if (pthread_create(&POOL.tid[t], NULL, worker, (void *)(uintptr_t)t)) {
            printf("# pthread_create failed\n");
            exit(2);
        }
}

static void pool_stop(void)
{
    POOL.quit = 1;
    pthread_barrier_wait(&POOL.start);
    for (unsigned t = 0; t < NTHREADS; t++)
        pthread_join(POOL.tid[t], NULL);
}

/* Run fn on threads 0..n-1 at once; the wall time in ns. */
static uint64_t run(job_fn fn, void *arg, unsigned n)
{
    POOL.fn = fn;
    POOL.arg = arg;
    POOL.n = n;
    uint64_t t0 = now_ns();
    pthread_barrier_wait(&POOL.start);
    pthread_barrier_wait(&POOL.end);
    return now_ns() - t0;
}

/* ---------------------------------------------------------------------------------------------
 * Check mode: every block filled with its pattern when handed out and verified when freed, per
 * thread (no shared state): a block handed to two threads at once, or overlapping another live
 * one, shows as changed bytes. Plus alignment and, for arena allocators, the arena's bounds.
 * ------------------------------------------------------------------------------------------- */
struct mt_check {                  /* one thread's (own cache lines: no false sharing) */
    _Alignas(64) int failed;
    char msg[160];
};

static void mt_fail(struct mt_check *k, const char *fmt, ...)
{
    if (k->failed++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->msg, sizeof k->msg, fmt, ap);
    va_end(ap);
}


static void mt_block_in(struct mt_check *k, void *p, size_t n, size_t align, uint32_t tag)
{
    uintptr_t a = (uintptr_t)p;
    while (align > 1 && align > n)                /* malloc owes min(16, n rounded down) */
        align >>= 1;
    if (a % (align ? align : 1))
        mt_fail(k, "%p (%zu bytes) not aligned to %zu", p, n, align);
    if (A->takes_arena && (a < (uintptr_t)ARENA || a + n > (uintptr_t)ARENA + ARENA_BYTES))
        mt_fail(k, "%p (%zu bytes) outside the arena", p, n);
    pat_fill(p, n, tag);
}

static void mt_block_out(struct mt_check *k, const void *p, size_t n, uint32_t tag)
{
    size_t bad = pat_bad(p, n, tag);
    if (bad)
        mt_fail(k, "%p (%zu bytes) byte %zu changed while live", p, n, bad - 1);
}

static int hk_alloc(struct bench_ctx *c, void *p, size_t n, size_t align, uint32_t tag)
{
    struct mt_check *k = c->hook_state;
    mt_block_in(k, p, n, align < 16 ? 16 : align, tag);
    return k->failed;
}

static int hk_free(struct bench_ctx *c, void *p, size_t n, uint32_t tag)
{
    struct mt_check *k = c->hook_state;
    mt_block_out(k, p, n, tag);
    return k->failed;
}

static int hk_realloc(struct bench_ctx *c, void *old, size_t old_n, void *p, size_t n,
                      uint32_t old_tag, uint32_t tag)
{
    struct mt_check *k = c->hook_state;
    (void)old;
    mt_block_out(k, p, old_n < n ? old_n : n, old_tag);
    mt_block_in(k, p, n, 16, tag);
    return k->failed;
}

static const struct bench_hooks HOOKS = { hk_alloc, hk_free, hk_realloc };

/* ---------------------------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------------------------- */
static void fresh_heap(void)
{
    if (A->init(ARENA, ARENA_BYTES) || (A->threads && A->threads())) {
        printf("# %s init or threads hook failed\n", A->name);
        exit(1);
    }
}

static void rec_m(const char *wl, unsigned threads, uint64_t seed, uint64_t ops, uint64_t ns)
{
    printf("M,%s,%s,%u,%u,%#llx,%llu,%llu\n", A->name, wl, ROUND, threads,
           (unsigned long long)seed, (unsigned long long)ops, (unsigned long long)ns);
}

/* C record for a checked pass: the threads' findings, then the allocator's own check. */
static int rec_c(const char *name, int rc, struct mt_check *k, unsigned nk)
{
    const char *why = NULL;
    for (unsigned i = 0; i < nk && !why; i++)
        if (k[i].failed)
            why = k[i].msg;
    if (!why && rc)
        why = rc == BENCH_E_NOMEM ? "allocation failed" : "the workload failed";
    if (!why && A->check && A->check())
        why = "the allocator's own consistency check failed";
    printf("C,%s,%s,%d,%s\n", A->name, name, !why, why ? why : "usable, aligned, non-overlapping");
    return !why;
}

/* ---------------------------------------------------------------------------------------------
 * compute: the machine's own scaling
 * ------------------------------------------------------------------------------------------- */
static struct {
    uint64_t iters;
    _Alignas(64) uint64_t sink[NTHREADS][8];
} CJ;

static void compute_thread(unsigned t, void *arg)
{
    struct bench_rng r;
    uint64_t x = 0;
    (void)arg;
    bench_rng_seed(&r, t + 1);
    for (uint64_t i = 0; i < CJ.iters; i++)
        x += bench_rand(&r);
    CJ.sink[t][0] = x;
}

static void bench_compute(void)
{
    CJ.iters = (SMOKE ? COMPUTE_SMOKE : COMPUTE_ITERS) / WARMUP_DIV;
    run(compute_thread, NULL, NTHREADS);                            /* warm-up */
    CJ.iters *= WARMUP_DIV;
    for (unsigned n = 1; n <= NTHREADS; n++)
        rec_m("compute", n, 0, CJ.iters * n, run(compute_thread, NULL, n));
}

/* ---------------------------------------------------------------------------------------------
 * small_churn on NTHREADS threads
 * ------------------------------------------------------------------------------------------- */
struct churn_job {
    const struct bench_workload *w;
    uint64_t ops;
    int checked, warm;
    struct { _Alignas(64) struct bench_ctx c; } ctx[NTHREADS];   /* own lines: done++ per op */
    struct mt_check chk[NTHREADS];
    int rc[NTHREADS];
};
static struct bench_slot *CHURN_SLOTS[NTHREADS];

static void churn_thread(unsigned t, void *arg)
{
    struct churn_job *j = arg;
    struct bench_ctx *c = &j->ctx[t].c;
    memset(c, 0, sizeof *c);
    memset(&j->chk[t], 0, sizeof j->chk[t]);
    c->a = A;
    c->seed = bench_seed(SEED_CHURN + t, ROUND) ^ (uint64_t)j->warm;   /* warm-up: seed ^ 1 */
    c->ops = j->ops;
    c->slots = CHURN_SLOTS[t];
    c->slots_cap = j->w->slots;
    if (j->checked) {
        c->hooks = &HOOKS;
        c->hook_state = &j->chk[t];
    }
    j->rc[t] = j->w->run(c);
}

/* One pass of n threads (checked, a warm-up, or timed); the ops made (0 and a record or a note
 * if one failed). */
enum { PASS_CHECK, PASS_WARM, PASS_TIMED };
static uint64_t churn_pass(struct churn_job *j, unsigned n, uint64_t ops, int pass, uint64_t *ns)
{
    int checked = pass == PASS_CHECK;
    j->ops = ops;
    j->checked = checked;
    j->warm = pass == PASS_WARM;
    fresh_heap();
    *ns = run(churn_thread, j, n);
    uint64_t done = 0;
    int rc = 0;
    for (unsigned t = 0; t < n; t++) {
        done += j->ctx[t].c.done;
        rc = rc ? rc : j->rc[t];
    }
    if (checked) {
        char name[48];
        snprintf(name, sizeof name, "threads_%s_%uT", j->w->name, n);
        return rec_c(name, rc, j->chk, n) ? done : 0;
    }
    if (rc) {
        printf("# %s %s on %u threads failed: %s\n", A->name, j->w->name, n,
               rc == BENCH_E_NOMEM ? "allocation failed" : "workload error");
        return 0;
    }
    return done;
}

static int bench_churn(void)
{
    static struct churn_job j;
    const struct bench_workload *w = NULL;
    for (unsigned i = 0; i < BENCH_NWORKLOADS; i++)
        if (!strcmp(bench_workloads[i].name, "small_churn"))
            w = &bench_workloads[i];
    if (!w)
        return 0;
    j.w = w;
    for (unsigned t = 0; t < NTHREADS; t++)
        if (!CHURN_SLOTS[t])
            CHURN_SLOTS[t] = map(sizeof **CHURN_SLOTS * w->slots);
    uint64_t ops = SMOKE ? CHURN_SMOKE : CHURN_OPS, ns;
    int ok = 1;
    for (unsigned n = 1; n <= NTHREADS; n++) {
        if (CHECK && !churn_pass(&j, n, ops, PASS_CHECK, &ns))
            ok = 0;
        if (!churn_pass(&j, n, ops / WARMUP_DIV + 1, PASS_WARM, &ns)) {
            ok = 0;
            continue;
        }
        uint64_t done = churn_pass(&j, n, ops, PASS_TIMED, &ns);
        if (!done) {
            ok = 0;
            continue;
        }
        rec_m(w->name, n, bench_seed(SEED_CHURN, ROUND), done, ns);
    }
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * prodcons: thread 0 allocates, thread 1 frees, through an SPSC ring
 * ------------------------------------------------------------------------------------------- */
struct pc_job {
    _Alignas(64) atomic_uint_fast64_t head;    /* entries the producer has published */
    _Alignas(64) atomic_uint_fast64_t tail;    /* entries the consumer has taken */
    _Alignas(64) atomic_int asleep[2];         /* producer, consumer: 1 while in futex_wait */
    _Alignas(64) struct bench_slot ring[PC_RING];
    _Alignas(64) uint64_t blocks, seed;
    int checked;
    int nomem;                                 /* the producer got NULL (it then ends early) */
    uint64_t made, freed, bad;
    struct mt_check chk[2];
};

/* Both sides keep their own copy of the other's index and publish theirs every PC_BATCH
 * entries (and before they wait), so the ring's lines change hands once per batch, not once per
 * block: the figure is the allocator's remote frees, not the ring. A side that finds nothing to
 * do spins (PC_SPIN_TICKS: far longer than a batch takes, so both threads normally stay on
 * their CPUs), then sleeps on a futex until the other side publishes: spinning on a vCPU whose
 * peer the hypervisor has descheduled would otherwise cost whole time slices (seconds a run).
 * No lost wake-up: the sleeper sets its flag then re-reads the index, the publisher stores the
 * index then reads the flag (both sequentially consistent). */
static uint64_t pc_wait(struct pc_job *j, int me, atomic_uint_fast64_t *index, uint64_t busy)
{
    uint64_t v, t0 = __builtin_ia32_rdtsc();
    while ((v = atomic_load_explicit(index, memory_order_acquire)) == busy) {
        if (__builtin_ia32_rdtsc() - t0 < PC_SPIN_TICKS) {
            cpu_relax();
            continue;
        }
        atomic_store(&j->asleep[me], 1);
        if ((v = atomic_load(index)) != busy) {
            atomic_store(&j->asleep[me], 0);
            return v;
        }
        syscall(SYS_futex, &j->asleep[me], FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
        t0 = __builtin_ia32_rdtsc();
    }
    return v;
}

static void pc_publish(struct pc_job *j, int peer, atomic_uint_fast64_t *index, uint64_t v)
{
    atomic_store(index, v);
    if (atomic_load(&j->asleep[peer])) {
        atomic_store(&j->asleep[peer], 0);
        syscall(SYS_futex, &j->asleep[peer], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
}

static void pc_producer(struct pc_job *j)
{
    struct bench_rng r;
    uint64_t head = 0, tail = 0, made = 0;
    bench_rng_seed(&r, j->seed);
    for (uint64_t i = 0; i <= j->blocks; i++) {
        struct bench_slot s = { NULL, 0, 0 };     /* the last one: the end mark */
        if (i < j->blocks) {
            s.n = (uint32_t)bench_range(&r, PC_MIN, PC_MAX);
            s.tag = (uint32_t)i + 1;
            s.p = A->malloc(s.n);
            if (!s.p) {
                j->nomem = 1;
                i = j->blocks;                    /* send the end mark now */
            }
        }
        if (s.p) {
            if (j->checked)
                mt_block_in(&j->chk[0], s.p, s.n, 16, s.tag);
            s.p[0] = bench_pat(s.tag, 0);
            s.p[s.n - 1] = bench_pat(s.tag, s.n - 1);
            made++;
        }
        if (head - tail == PC_RING) {             /* full: publish, wait for the consumer */
            pc_publish(j, 1, &j->head, head);
            tail = pc_wait(j, 0, &j->tail, tail);
        }
        j->ring[head++ % PC_RING] = s;
        if (head % PC_BATCH == 0 || !s.p)
            pc_publish(j, 1, &j->head, head);
    }
    j->made = made;
}

static void pc_consumer(struct pc_job *j)
{
    uint64_t head = 0, tail = 0, freed = 0, bad = 0;
    for (;;) {
        if (tail == head) {                       /* empty: publish, wait for the producer */
            pc_publish(j, 0, &j->tail, tail);
            head = pc_wait(j, 1, &j->head, head);
        }
        struct bench_slot s = j->ring[tail++ % PC_RING];
        if (tail % PC_BATCH == 0)
            pc_publish(j, 0, &j->tail, tail);
        if (!s.p)
            break;
        bad += s.p[0] != bench_pat(s.tag, 0) || s.p[s.n - 1] != bench_pat(s.tag, s.n - 1);
        if (j->checked)
            mt_block_out(&j->chk[1], s.p, s.n, s.tag);
        A->free(s.p);
        freed++;
    }
    j->freed = freed;
    j->bad = bad;
}

static void pc_thread(unsigned t, void *arg)
{
    if (t == 0)
        pc_producer(arg);
    else
        pc_consumer(arg);
}

static int pc_pass(struct pc_job *j, uint64_t blocks, uint64_t seed, int checked, uint64_t *ns)
{
    atomic_store(&j->head, 0);
    atomic_store(&j->tail, 0);
    atomic_store(&j->asleep[0], 0);
    atomic_store(&j->asleep[1], 0);
    memset(j->chk, 0, sizeof j->chk);
    j->blocks = blocks;
    j->seed = seed;
    j->checked = checked;
    j->nomem = 0;
    j->made = j->freed = j->bad = 0;
    fresh_heap();
    *ns = run(pc_thread, j, 2);
    int rc = j->nomem ? BENCH_E_NOMEM : 0;
    if (j->bad)
        mt_fail(&j->chk[1], "%llu blocks changed in the ring", (unsigned long long)j->bad);
    if (checked)
        return rec_c("threads_prodcons", rc, j->chk, 2);
    if (rc || j->bad || j->freed != blocks) {
        printf("# %s prodcons failed: %s\n", A->name, rc ? "allocation failed" :
               j->bad ? "blocks changed in the ring" : "blocks lost");
        return 0;
    }
    return 1;
}

static int bench_prodcons(void)
{
    static struct pc_job j;
    uint64_t blocks = SMOKE ? PC_SMOKE : PC_BLOCKS, seed = bench_seed(SEED_PC, ROUND), ns;
    int ok = 1;
    if (CHECK)
        ok &= pc_pass(&j, blocks, seed, 1, &ns);
    if (!pc_pass(&j, blocks / WARMUP_DIV + 1, seed ^ 1, 0, &ns) ||
        !pc_pass(&j, blocks, seed, 0, &ns))
        return 0;
    rec_m("prodcons", 2, seed, 2 * blocks, ns);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */
static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--smoke] [--check] [--round R] [--only compute,small_churn,prodcons]\n"
            "Multi-threaded figures of allocator '%s' (1 and %d threads on one heap);\n"
            "records on stdout (see threads.c).\n", argv0, bench_alloc_impl.name, NTHREADS);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--smoke")) SMOKE = 1;
        else if (!strcmp(a, "--check")) CHECK = 1;
        else if (!strcmp(a, "--round") && more) ROUND = (unsigned)atoi(argv[++i]);
        else if (!strcmp(a, "--only") && more) only = argv[++i];
        else usage(argv[0]);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    A = &bench_alloc_impl;
    if (A->takes_arena && !A->threads) {
        printf("# %s has no threads hook: not thread-safe, nothing to measure\n", A->name);
        return 2;
    }
    if (A->takes_arena)
        ARENA = map(ARENA_BYTES);
    pool_start();
    int ok = 1;
    if (!only || strstr(only, "compute"))
        bench_compute();
    if (!only || strstr(only, "small_churn"))
        ok &= bench_churn();
    if (!only || strstr(only, "prodcons"))
        ok &= bench_prodcons();
    pool_stop();
    return ok ? 0 : 1;
}
