/*
 * driver.c -- `make bench`: runs every allocator's runner (build/bench/bin/bench-<name>) for
 * several rounds, interleaved with the allocator order rotated each round, then reports median
 * and spread: a table on the terminal, results.csv, results.md (for the README), gnuplot SVGs.
 * Each round then runs the multi-threaded runners (threads-<name>, threads.c: small_churn on 1
 * and 2 threads, producer/consumer) and the placement benchmark (locality-<name>, locality.c)
 * of every allocator that has them, interleaved the same way.
 * Built twice: build/bench/bin/bench (full run) and build/host/tests/bench_smoke (BENCH_SMOKE:
 * a seconds-long run in check mode that prints TAP for `make test`, through the test
 * framework's TAP writer, tests/ktest.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "bench.h"
#include "ktest.h"

/* Every snprintf here fills a display or path buffer where cutting a too-long text is the
 * intended outcome, so gcc's may-truncate warning says nothing useful. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#ifndef BENCH_SMOKE
#define BENCH_SMOKE 0
#endif
/* Where the runners are, relative to this program's own directory. */
#ifndef BENCH_BINDIR_REL
#define BENCH_BINDIR_REL "."
#endif

#define MAX_ALLOCS  8
#define MAX_ROUNDS  32
#define MAX_FRAGS   8
#define MAX_SEEDS   32
#define MAX_CHECKS  1024
#define NPCT        3
#define REF         "glibc"          /* the targets compare kheap with the system malloc */
#define TARGET_SPEEDUP   1.2
#define TARGET_UTIL      0.95
#define TARGET_FRAG_GROWTH 1.2

static const char *const ALLOC_NAMES[] = { "kheap", "glibc", "jemalloc", "mimalloc", "firstfit" };
/* Only a bench kernel reports these (kbench.c): kheap with the kernel's IRQ-safe lock. */
static const char *const KERNEL_ONLY_NAMES[] = { "kheap_locked" };
static const double PCT[NPCT] = { 0.50, 0.99, 0.999 };
static const char *const PCT_NAME[NPCT] = { "p50", "p99", "p99.9" };
static const char *const UTIL_NAME[2] = { "grow", "churn" };
/* The threads runner's figures (M records). */
enum { MT_CHURN1, MT_CHURN2, MT_PRODCONS, MT_COMPUTE1, MT_COMPUTE2, MT_N };
/* The placement benchmark's phases (P records). */
#define NPHASE 4
static const char *const PHASE_NAME[NPHASE] = { "build", "walk", "free_seq", "free_rnd" };

/* ---------------------------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------------------------- */
struct wl_res {
    int n;                                /* throughput rounds */
    double mops[MAX_ROUNDS];
    uint64_t ops;                         /* ops of the last round */
    int nl;                               /* latency rounds */
    uint64_t hist[HIST_BUCKETS];          /* pooled over rounds */
    uint64_t samples;
    uint32_t max;
    double pct[NPCT][MAX_ROUNDS];         /* per-round percentiles */
    double rmax[MAX_ROUNDS];
};

struct frag_res {
    uint64_t frags, reps;
    int n;
    double ticks[MAX_ROUNDS];
};

struct mt_res {                           /* one multi-threaded figure */
    int n;                                /* rounds */
    double mops[MAX_ROUNDS];              /* all threads' ops per wall-clock microsecond */
    double ms[MAX_ROUNDS];                /* wall time */
    uint64_t ops;                         /* ops of the last round */
};

struct alloc_res {
    const char *name;
    char path[PATH_MAX];
    int present;
    int failures;                         /* runner exits != 0, failed passes */
    char version[64];
    unsigned long overhead, step, arena;
    double mhz;
    struct wl_res w[BENCH_NWORKLOADS];
    int nutil[2];
    double util[2][MAX_SEEDS];
    int nf;
    struct frag_res f[MAX_FRAGS];
    char tpath[PATH_MAX], lpath[PATH_MAX];   /* threads-<name>, locality-<name> */
    int tpresent, lpresent;
    struct mt_res mt[MT_N];
    int nloc;                             /* placement rounds */
    uint64_t loc_objects;
    double loc[NPHASE][MAX_ROUNDS];       /* ms per phase */
};

struct check { char name[96]; int ok; char msg[200]; char skip[64]; };

static struct alloc_res R[MAX_ALLOCS];
static int NA;
static struct check CHECKS[MAX_CHECKS];
static int NCHECKS;
static int rounds_done;

static struct {
    int smoke, tap, rounds, plots, threads, locality;
    char bindir[PATH_MAX], out[PATH_MAX];
    const char *only_allocs;
    const char *from_log;                  /* aggregate records from a log instead of running */
    const char *title;                     /* a line for the report's header */
} opt;

static FILE *raw;                          /* every runner line, as read */
static int tsc_clock;                      /* K records seen: throughput from TSC ticks */

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (opt.tap)
        fputs("# ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

static struct check *add_check_v(int ok, const char *msg, const char *fmt, va_list ap)
{
    if (NCHECKS == MAX_CHECKS)
        return NULL;
    struct check *c = &CHECKS[NCHECKS++];
    vsnprintf(c->name, sizeof c->name, fmt, ap);
    c->ok = ok;
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "");
    c->skip[0] = 0;
    return c;
}

/* A TAP check (--tap): passed iff ok; msg (may be NULL) is shown after a failure. */
static __attribute__((format(printf, 3, 4))) void add_check(int ok, const char *msg,
                                                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_check_v(ok, msg, fmt, ap);
    va_end(ap);
}

/* A check that does not apply here: `ok N - name # SKIP reason`. */
static __attribute__((format(printf, 2, 3))) void add_skip(const char *reason,
                                                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct check *c = add_check_v(1, NULL, fmt, ap);
    va_end(ap);
    if (c)
        snprintf(c->skip, sizeof c->skip, "%s", reason);
}

/* Print the checks as TAP results and the plan; returns how many failed. */
static int tap_report(void)
{
    int failed = 0;
    for (int i = 0; i < NCHECKS; i++) {
        ktest_tap_result(CHECKS[i].ok, CHECKS[i].name, CHECKS[i].skip[0] ? CHECKS[i].skip : NULL);
        if (!CHECKS[i].ok && CHECKS[i].msg[0])
            ktest_note("%s", CHECKS[i].msg);
        failed += !CHECKS[i].ok;
    }
    ktest_tap_plan((unsigned)NCHECKS);
    return failed;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min and max of v[0..n). */
static void stats(const double *v, int n, double *med, double *lo, double *hi)
{
    double s[MAX_ROUNDS > MAX_SEEDS ? MAX_ROUNDS : MAX_SEEDS];
    if (n <= 0) {
        *med = *lo = *hi = 0;
        return;
    }
    memcpy(s, v, sizeof *v * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    *med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    *lo = s[0];
    *hi = s[n - 1];
}

static double median(const double *v, int n)
{
    double m, lo, hi;
    stats(v, n, &m, &lo, &hi);
    return m;
}

/* Nearest-rank percentile q of a histogram of n samples (never above max). */
static uint32_t hist_pct(const uint64_t *h, uint64_t n, double q, uint32_t max)
{
    if (!n)
        return 0;
    double t = q * (double)n;
    uint64_t target = (uint64_t)t;
    if ((double)target < t)
        target++;
    if (!target)
        target = 1;
    uint64_t cum = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        cum += h[b];
        if (cum >= target) {
            uint32_t v = hist_value(b);
            return v > max ? max : v;
        }
    }
    return max;
}

/* 3 significant digits, no exponent. */
static const char *num(double v, char *buf)
{
    const char *f = v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : v >= 1 ? "%.2f" : "%.3f";
    sprintf(buf, f, v);
    return buf;
}

static struct alloc_res *find_alloc(const char *name)
{
    for (int i = 0; i < NA; i++)
        if (!strcmp(R[i].name, name))
            return &R[i];
    return NULL;
}

static int workload_id(const char *name)
{
    for (int i = 0; i < BENCH_NWORKLOADS; i++)
        if (!strcmp(bench_workloads[i].name, name))
            return i;
    return -1;
}

static int present(const struct alloc_res *a) { return a && a->present; }

/* ---------------------------------------------------------------------------------------------
 * Parsing the runner's records (see runner.c)
 * ------------------------------------------------------------------------------------------- */

/* Split s at the first max-1 commas into f[]; the last field keeps the rest. */
static int split(char *s, char **f, int max)
{
    int n = 0;
    f[n++] = s;
    while (n < max && (s = strchr(s, ','))) {
        *s++ = 0;
        f[n++] = s;
    }
    return n;
}

static void parse_line(struct alloc_res *a, char *line)
{
    char *f[8];
    int n;
    line[strcspn(line, "\n")] = 0;
    switch (line[0]) {
    case 'I':
        if ((n = split(line, f, 7)) == 7) {
            a->arena = strtoul(f[2], NULL, 10);
            a->overhead = strtoul(f[3], NULL, 10);
            a->step = strtoul(f[4], NULL, 10);
            a->mhz = atof(f[5]);
            char *g = strstr(f[6], "-0-g");    /* jemalloc: 5.3.0-0-g<hash> */
            if (g)
                *g = 0;
            snprintf(a->version, sizeof a->version, "%s", f[6]);
        }
        break;
    case 'T':
    case 'K':                                 /* kernel: TSC ticks; ns if the MHz is known */
        if ((n = split(line, f, 7)) == 7) {
            int id = workload_id(f[2]);
            double ns = atof(f[6]);
            if (line[0] == 'K' && a->mhz > 0)
                ns = ns * 1000.0 / a->mhz;
            tsc_clock |= line[0] == 'K';
            if (id < 0 || ns <= 0)
                break;
            struct wl_res *w = &a->w[id];
            w->ops = strtoull(f[5], NULL, 10);
            if (w->n < MAX_ROUNDS)
                w->mops[w->n++] = (double)w->ops / ns * 1e3;
        }
        break;
    case 'L':
        if ((n = split(line, f, 7)) == 7) {
            int id = workload_id(f[2]);
            if (id < 0)
                break;
            struct wl_res *w = &a->w[id];
            static uint64_t h[HIST_BUCKETS];
            uint64_t cnt = 0;
            uint32_t max = (uint32_t)strtoul(f[5], NULL, 10);
            memset(h, 0, sizeof h);
            for (char *s = f[6], *end; *s; s = end) {
                while (*s == ' ')
                    s++;
                if (!*s)
                    break;
                unsigned long b = strtoul(s, &end, 10);
                if (*end != ':' || b >= HIST_BUCKETS)
                    break;
                uint64_t c = strtoull(end + 1, &end, 10);
                h[b] += c;
                cnt += c;
            }
            if (w->nl >= MAX_ROUNDS)
                break;
            for (int p = 0; p < NPCT; p++)
                w->pct[p][w->nl] = hist_pct(h, cnt, PCT[p], max);
            w->rmax[w->nl++] = max;
            for (unsigned b = 0; b < HIST_BUCKETS; b++)
                w->hist[b] += h[b];
            w->samples += cnt;
            if (max > w->max)
                w->max = max;
        }
        break;
    case 'U':
        if ((n = split(line, f, 6)) == 6) {
            int v = !strcmp(f[2], "churn");
            double arena = atof(f[5]);
            if (arena > 0 && a->nutil[v] < MAX_SEEDS)
                a->util[v][a->nutil[v]++] = atof(f[4]) / arena;
        }
        break;
    case 'F':
        if ((n = split(line, f, 6)) == 6) {
            uint64_t frags = strtoull(f[2], NULL, 10);
            int i;
            for (i = 0; i < a->nf && a->f[i].frags != frags; i++)
                ;
            if (i == a->nf) {
                if (a->nf == MAX_FRAGS)
                    break;
                a->f[a->nf++].frags = frags;
            }
            a->f[i].reps = strtoull(f[4], NULL, 10);
            if (a->f[i].n < MAX_ROUNDS)
                a->f[i].ticks[a->f[i].n++] = atof(f[5]);
        }
        break;
    case 'M':                                 /* M,alloc,workload,round,threads,seed,ops,ns */
        if ((n = split(line, f, 8)) == 8) {
            int threads = atoi(f[4]), id = -1;
            double ns = atof(f[7]);
            if (!strcmp(f[2], "small_churn") && (threads == 1 || threads == 2))
                id = threads == 1 ? MT_CHURN1 : MT_CHURN2;
            else if (!strcmp(f[2], "prodcons") && threads == 2)
                id = MT_PRODCONS;
            else if (!strcmp(f[2], "compute") && (threads == 1 || threads == 2))
                id = threads == 1 ? MT_COMPUTE1 : MT_COMPUTE2;
            if (id < 0 || ns <= 0)
                break;
            struct mt_res *m = &a->mt[id];
            m->ops = strtoull(f[6], NULL, 10);
            if (m->n < MAX_ROUNDS) {
                m->mops[m->n] = (double)m->ops / ns * 1e3;
                m->ms[m->n++] = ns / 1e6;
            }
        }
        break;
    case 'P':                   /* P,alloc,round,objects,build_ns,walk_ns,free_seq_ns,free_rnd_ns */
        if ((n = split(line, f, 8)) == 8 && a->nloc < MAX_ROUNDS) {
            a->loc_objects = strtoull(f[3], NULL, 10);
            for (int p = 0; p < NPHASE; p++)
                a->loc[p][a->nloc] = atof(f[4 + p]) / 1e6;
            a->nloc++;
        }
        break;
    case 'C':
        if ((n = split(line, f, 5)) == 5)
            add_check(atoi(f[3]) == 1, f[4], "%s %s: blocks usable, aligned, non-overlapping",
                      a->name, f[2]);
        break;
    case '#':
        note("%s: %s", a->name, line + 2);
        if (strstr(line, "failed"))
            a->failures++;
        break;
    default:
        break;
    }
}

/* The programs run per allocator and round: the runner, the threads runner, the placement
 * benchmark. */
enum { RUN_BENCH, RUN_THREADS, RUN_LOCALITY };
static const char *const RUN_WHAT[] = { "runner", "threads runner", "locality" };

/* Run one round of one of an allocator's programs, reading its records as they come. */
static int run_runner(struct alloc_res *a, int kind, int round)
{
    char rbuf[16], *argv[12];
    char *path = kind == RUN_THREADS ? a->tpath : kind == RUN_LOCALITY ? a->lpath : a->path;
    int argc = 0, fd[2];
    snprintf(rbuf, sizeof rbuf, "%d", round);
    argv[argc++] = path;
    if (kind == RUN_LOCALITY)
        argv[argc++] = "--record";
    argv[argc++] = "--round";
    argv[argc++] = rbuf;
    if (opt.smoke)
        argv[argc++] = "--smoke";
    if (opt.smoke && round == 0 && kind != RUN_LOCALITY)
        argv[argc++] = "--check";
    if (round != 0 && kind == RUN_BENCH)
        argv[argc++] = "--no-util";        /* deterministic: its seeds are its spread */
    argv[argc] = NULL;

    if (pipe(fd)) {
        note("pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        note("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv(path, argv);
        printf("# exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    FILE *in = fdopen(fd[0], "r");
    static char line[1 << 16];
    while (fgets(line, sizeof line, in)) {
        if (raw)
            fprintf(raw, "%s", line);
        parse_line(a, line);
    }
    fclose(in);
    int st;
    waitpid(pid, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok) {
        a->failures++;
        note("%s: %s round %d ended with %s %d", a->name, RUN_WHAT[kind], round,
             WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
    if (opt.smoke)
        add_check(ok, NULL, "%s %s round %d exits 0", a->name, RUN_WHAT[kind], round);
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Machine description
 * ------------------------------------------------------------------------------------------- */
static char MACHINE[512], DATE[64];

static void describe_machine(void)
{
    char model[200] = "unknown CPU", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
    double load = 0;
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = 0;
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    snprintf(MACHINE, sizeof MACHINE, "%s, %ld CPUs, Linux %s, gcc %s, load average %.2f at start",
             model, sysconf(_SC_NPROCESSORS_ONLN), u.release, __VERSION__, load);
    time_t t = time(NULL);
    strftime(DATE, sizeof DATE, "%Y-%m-%d %H:%M UTC", gmtime(&t));
}

/* ---------------------------------------------------------------------------------------------
 * Derived figures
 * ------------------------------------------------------------------------------------------- */
static double tput(const struct alloc_res *a, int w) { return median(a->w[w].mops, a->w[w].n); }

/* Pooled percentile p (NPCT = max) of workload w. */
static double pooled(const struct alloc_res *a, int w, int p)
{
    const struct wl_res *r = &a->w[w];
    return p == NPCT ? r->max : hist_pct(r->hist, r->samples, PCT[p], r->max);
}

static void pct_range(const struct alloc_res *a, int w, int p, double *lo, double *hi)
{
    double m;
    const struct wl_res *r = &a->w[w];
    stats(p == NPCT ? r->rmax : r->pct[p], r->nl, &m, lo, hi);
}

static const struct frag_res *frag_of(const struct alloc_res *a, uint64_t frags)
{
    for (int i = 0; i < a->nf; i++)
        if (a->f[i].frags == frags)
            return &a->f[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Targets (the figures the benchmark was built to check); evaluated when kheap and glibc both ran
 * ------------------------------------------------------------------------------------------- */
struct target { char what[120]; char figure[120]; int met; };
static struct target T[32];
static int NT;

static void eval_targets(void)
{
    const struct alloc_res *k = find_alloc("kheap"), *g = find_alloc(REF);
    char b1[32], b2[32];
    NT = 0;
    if (!present(k) || !present(g))
        return;
    static const char *const churns[] = { "small_churn", "mixed_churn", "large_churn" };
    for (int i = 0; i < 3; i++) {
        int w = workload_id(churns[i]);
        double r = tput(g, w) > 0 ? tput(k, w) / tput(g, w) : 0;
        struct target *t = &T[NT++];
        snprintf(t->what, sizeof t->what, "throughput %s >= %.1fx glibc", churns[i],
                 TARGET_SPEEDUP);
        snprintf(t->figure, sizeof t->figure, "%sx (%s vs %s Mops/s)", num(r, b1),
                 num(tput(k, w), b2), num(tput(g, w), (char[32]){ 0 }));
        t->met = r >= TARGET_SPEEDUP;
    }
    for (int w = 0; w < BENCH_NWORKLOADS; w++) {
        if (!k->w[w].samples || !g->w[w].samples)
            continue;
        struct target *t = &T[NT++];
        double kv = pooled(k, w, 2), gv = pooled(g, w, 2);
        snprintf(t->what, sizeof t->what, "p99.9 %s <= glibc", bench_workloads[w].name);
        snprintf(t->figure, sizeof t->figure, "%.0f vs %.0f cycles", kv, gv);
        t->met = kv <= gv;
    }
    if (k->nutil[0]) {
        struct target *t = &T[NT++];
        double m = median(k->util[0], k->nutil[0]);
        snprintf(t->what, sizeof t->what, "utilisation at first failure >= %.2f", TARGET_UTIL);
        snprintf(t->figure, sizeof t->figure, "%.4f (median of %d seeds)", m, k->nutil[0]);
        t->met = m >= TARGET_UTIL;
    }
    if (k->nf >= 2) {
        const struct frag_res *lo = &k->f[0], *hi = &k->f[k->nf - 1];
        double a = median(lo->ticks, lo->n), b = median(hi->ticks, hi->n);
        struct target *t = &T[NT++];
        snprintf(t->what, sizeof t->what, "cost at %lu fragments <= %.1fx cost at %lu",
                 (unsigned long)hi->frags, TARGET_FRAG_GROWTH, (unsigned long)lo->frags);
        /* TSC resolution: a difference below one tick step is not a difference */
        double slack = (double)k->step;
        snprintf(t->figure, sizeof t->figure, "%.0f vs %.0f cycles (%.2fx)", b, a,
                 a > 0 ? b / a : 0.0);
        t->met = b <= TARGET_FRAG_GROWTH * a || b <= a + slack;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Terminal table and results.md share these row builders
 * ------------------------------------------------------------------------------------------- */
static void cell_tput(const struct alloc_res *a, int w, char *out, size_t sz)
{
    double m, lo, hi;
    char b1[32], b2[32], b3[32];
    if (!a->w[w].n) {
        snprintf(out, sz, "-");
        return;
    }
    stats(a->w[w].mops, a->w[w].n, &m, &lo, &hi);
    snprintf(out, sz, "%s [%s-%s]", num(m, b1), num(lo, b2), num(hi, b3));
}

static void cell_lat(const struct alloc_res *a, int w, char *out, size_t sz)
{
    if (!a->w[w].samples) {
        snprintf(out, sz, "-");
        return;
    }
    snprintf(out, sz, "%.0f/%.0f/%.0f/%.0f", pooled(a, w, 0), pooled(a, w, 1), pooled(a, w, 2),
             pooled(a, w, 3));
}

static void cell_util(const struct alloc_res *a, int v, char *out, size_t sz)
{
    double m, lo, hi;
    if (!a->nutil[v]) {
        snprintf(out, sz, "n/a");
        return;
    }
    stats(a->util[v], a->nutil[v], &m, &lo, &hi);
    snprintf(out, sz, "%.4f [%.4f-%.4f]", m, lo, hi);
}

static void cell_frag(const struct alloc_res *a, uint64_t frags, char *out, size_t sz)
{
    const struct frag_res *f = frag_of(a, frags);
    double m, lo, hi;
    if (!f || !f->n) {
        snprintf(out, sz, "-");
        return;
    }
    stats(f->ticks, f->n, &m, &lo, &hi);
    snprintf(out, sz, "%.0f [%.0f-%.0f]", m, lo, hi);
}

/* The fragment counts measured, from the first allocator that has them. */
static int frag_counts(uint64_t *v)
{
    for (int i = 0; i < NA; i++)
        if (R[i].present && R[i].nf) {
            for (int j = 0; j < R[i].nf; j++)
                v[j] = R[i].f[j].frags;
            return R[i].nf;
        }
    return 0;
}

/* One table: md != 0 prints markdown, else aligned text. */
static void table_row(FILE *o, int md, const char *first, char cells[][64], int n)
{
    if (md) {
        fprintf(o, "| %s |", first);
        for (int i = 0; i < n; i++)
            fprintf(o, " %s |", cells[i]);
    } else {
        fprintf(o, "%-14s", first);
        for (int i = 0; i < n; i++)
            fprintf(o, " %-22s", cells[i]);
    }
    fputc('\n', o);
}

/* Column heads: every allocator that ran, except `skip` (NULL: none), prefixed by `pre`. */
static void table_head(FILE *o, int md, const char *first, const char *skip, const char *pre)
{
    char cells[MAX_ALLOCS][64];
    int n = 0;
    for (int i = 0; i < NA; i++)
        if (R[i].present && !(skip && !strcmp(skip, R[i].name)))
            snprintf(cells[n++], 64, "%s%s", pre, R[i].name);
    table_row(o, md, first, cells, n);
    if (md) {
        fprintf(o, "|---|");
        for (int i = 0; i < n; i++)
            fprintf(o, "---|");
        fputc('\n', o);
    }
}

/* The multi-threaded and placement tables: columns are the allocators that ran those. */
static int has_mt(const struct alloc_res *a) { return a && a->present && a->tpresent; }
static int has_loc(const struct alloc_res *a) { return a && a->present && a->lpresent && a->nloc; }

static int columns(int (*want)(const struct alloc_res *), int *idx)
{
    int n = 0;
    for (int i = 0; i < NA; i++)
        if (want(&R[i]))
            idx[n++] = i;
    return n;
}

static void table_head_of(FILE *o, int md, const char *first, const int *idx, int n,
                          const char *pre)
{
    char cells[MAX_ALLOCS][64];
    for (int j = 0; j < n; j++)
        snprintf(cells[j], 64, "%s%s", pre, R[idx[j]].name);
    table_row(o, md, first, cells, n);
    if (md) {
        fprintf(o, "|---|");
        for (int j = 0; j < n; j++)
            fprintf(o, "---|");
        fputc('\n', o);
    }
}

/* "median [min-max]" of v[0..n), 3 significant digits; "-" if empty. */
static void cell_med(const double *v, int n, char *out, size_t sz)
{
    double m, lo, hi;
    char b1[32], b2[32], b3[32];
    if (n <= 0) {
        snprintf(out, sz, "-");
        return;
    }
    stats(v, n, &m, &lo, &hi);
    snprintf(out, sz, "%s [%s-%s]", num(m, b1), num(lo, b2), num(hi, b3));
}

static void cell_ratio(double x, double y, char *out, size_t sz)
{
    if (x > 0 && y > 0)
        snprintf(out, sz, "%.2fx", x / y);
    else
        snprintf(out, sz, "-");
}

static double mt_mops(const struct alloc_res *a, int m)
{
    return median(a->mt[m].mops, a->mt[m].n);
}
static double mt_ms(const struct alloc_res *a, int m) { return median(a->mt[m].ms, a->mt[m].n); }
static double loc_ms(const struct alloc_res *a, int p) { return median(a->loc[p], a->nloc); }

static void report_threads(FILE *o, int md, const char *h)
{
    char cells[MAX_ALLOCS][64];
    int idx[MAX_ALLOCS], n = columns(has_mt, idx), any = 0;
    for (int j = 0; j < n; j++)
        for (int m = 0; m < MT_N; m++)
            any |= R[idx[j]].mt[m].n > 0;
    if (!any)
        return;
    const struct alloc_res *k = find_alloc("kheap");
    uint64_t per_thread = 0, blocks = 0;
    for (int j = 0; j < n; j++) {
        per_thread = R[idx[j]].mt[MT_CHURN1].ops ? R[idx[j]].mt[MT_CHURN1].ops : per_thread;
        blocks = R[idx[j]].mt[MT_PRODCONS].ops ? R[idx[j]].mt[MT_PRODCONS].ops / 2 : blocks;
    }
    fprintf(o, "%sThreads: small_churn on one heap shared by 1 and 2 threads, Mops/s (each "
               "thread its own 4096 live blocks of 8..512 B and %lu ops; all threads' ops / wall "
               "time; 2T/1T = 2.00x is perfect scaling). Seeds: the formula above with workload "
               "200 + t for thread t, 210 for the producer.\n\n", h, (unsigned long)per_thread);
    if (has_mt(k))
        fprintf(o, "kheap: a pthread mutex as the lock, a thread-slot cpu hook (each thread its "
                   "own per-CPU cache slot, ncpu 8); the others: plain malloc/free.\n\n");
    table_head_of(o, md, "threads", idx, n, "");
    for (int m = MT_CHURN1; m <= MT_CHURN2; m++) {
        for (int j = 0; j < n; j++)
            cell_med(R[idx[j]].mt[m].mops, R[idx[j]].mt[m].n, cells[j], 64);
        table_row(o, md, m == MT_CHURN1 ? "1 thread" : "2 threads", cells, n);
    }
    for (int j = 0; j < n; j++)
        cell_ratio(mt_mops(&R[idx[j]], MT_CHURN2), mt_mops(&R[idx[j]], MT_CHURN1), cells[j], 64);
    table_row(o, md, "2T/1T", cells, n);
    for (int j = 0; j < n; j++)
        cell_ratio(mt_mops(&R[idx[j]], MT_COMPUTE2), mt_mops(&R[idx[j]], MT_COMPUTE1), cells[j],
                   64);
    table_row(o, md, "machine 2T/1T", cells, n);
    fputc('\n', o);
    fprintf(o, "machine 2T/1T: the same runner's threads making no allocator calls (a PRNG loop "
               "each, just before small_churn): what this machine gave then (2.00x on two idle "
               "CPUs; a shared VM's vCPUs often give less, and it moves from round to round).\n\n");

    fprintf(o, "%sProducer/consumer: thread A allocates %lu blocks of 8..512 B and passes them "
               "through a ring (1024 entries) to thread B, which frees them; ms (lower is "
               "better)\n\n", h, (unsigned long)blocks);
    table_head_of(o, md, "", idx, n, "");
    for (int j = 0; j < n; j++)
        cell_med(R[idx[j]].mt[MT_PRODCONS].ms, R[idx[j]].mt[MT_PRODCONS].n, cells[j], 64);
    table_row(o, md, "time, ms", cells, n);
    for (int j = 0; j < n; j++) {
        double ms = mt_ms(&R[idx[j]], MT_PRODCONS);
        if (ms > 0 && blocks)
            snprintf(cells[j], 64, "%.1f", ms * 1e6 / (double)blocks);
        else
            snprintf(cells[j], 64, "-");
    }
    table_row(o, md, "ns per block", cells, n);
    if (has_mt(k)) {
        for (int j = 0; j < n; j++)
            cell_ratio(mt_ms(k, MT_PRODCONS), mt_ms(&R[idx[j]], MT_PRODCONS), cells[j], 64);
        table_row(o, md, "kheap / this", cells, n);
    }
    fputc('\n', o);
}

static void report_locality(FILE *o, int md, const char *h)
{
    char cells[MAX_ALLOCS][64];
    int idx[MAX_ALLOCS], n = columns(has_loc, idx);
    if (!n)
        return;
    const struct alloc_res *k = find_alloc("kheap");
    fprintf(o, "%sPlacement (locality.c): a heap churned into holes, then %lu linked objects of "
               "16..256 B built, walked 5 times, freed in allocation order (free_seq) and, "
               "built again, in random order (free_rnd); ms per phase, lower is better\n\n", h,
            (unsigned long)R[idx[0]].loc_objects);
    table_head_of(o, md, "phase", idx, n, "");
    for (int p = 0; p < NPHASE; p++) {
        for (int j = 0; j < n; j++)
            cell_med(R[idx[j]].loc[p], R[idx[j]].nloc, cells[j], 64);
        table_row(o, md, PHASE_NAME[p], cells, n);
    }
    fputc('\n', o);
    if (!has_loc(k) || n < 2)
        return;
    int pidx[MAX_ALLOCS], np = 0;
    for (int j = 0; j < n; j++)
        if (&R[idx[j]] != k)
            pidx[np++] = idx[j];
    fprintf(o, "%sPlacement: kheap time / peer time (medians; below 1.00x kheap is faster)\n\n", h);
    table_head_of(o, md, "phase", pidx, np, "vs ");
    for (int p = 0; p < NPHASE; p++) {
        for (int j = 0; j < np; j++)
            cell_ratio(loc_ms(k, p), loc_ms(&R[pidx[j]], p), cells[j], 64);
        table_row(o, md, PHASE_NAME[p], cells, np);
    }
    fputc('\n', o);
}

static void report(FILE *o, int md)
{
    char cells[MAX_ALLOCS][64];
    int n;
    const char *h = md ? "### " : "== ";
    const struct alloc_res *k = find_alloc("kheap");
    unsigned long overhead = 0, step = 0;
    for (int i = 0; i < NA; i++)
        if (R[i].present) {
            overhead = R[i].overhead;
            step = R[i].step;
        }

    fprintf(o, "%skheap benchmark, %s\n\n", md ? "## " : "== ", DATE);
    fprintf(o, "Machine: %s.\n", MACHINE);
    if (opt.title)
        fprintf(o, "%s\n", opt.title);
    fprintf(o, "Allocators:");
    for (int i = 0; i < NA; i++)
        if (R[i].present)
            fprintf(o, " %s %s%s", R[i].name, R[i].version, i + 1 < NA ? "," : "");
    fprintf(o, ".\n%d rounds, allocators interleaved (order rotated each round); each cell is "
               "the median [min-max] over rounds.%s\n", rounds_done,
            opt.smoke ? " SMOKE RUN: tiny op counts, figures meaningless." : "");
    fprintf(o, "Seeds: workload w in round r uses splitmix64(%#llx + 1000003*w + r); round 0:",
            (unsigned long long)BENCH_SEED_BASE);
    for (int w = 0; w < BENCH_NWORKLOADS; w++)
        fprintf(o, " %s %#llx%s", bench_workloads[w].name, (unsigned long long)bench_seed(w, 0),
                w + 1 < BENCH_NWORKLOADS ? "," : ".\n\n");

    fprintf(o, "%sThroughput, Mops/s (allocator calls per second, %s)\n\n", h, tsc_clock ?
            "TSC ticks at the TSC rate the kernel measured against the PIT" : "wall time");
    table_head(o, md, "workload", NULL, "");
    for (int w = 0; w < BENCH_NWORKLOADS; w++) {
        n = 0;
        for (int i = 0; i < NA; i++)
            if (R[i].present)
                cell_tput(&R[i], w, cells[n++], 64);
        table_row(o, md, bench_workloads[w].name, cells, n);
    }
    fputc('\n', o);

    if (present(k)) {
        fprintf(o, "%skheap throughput / peer throughput (medians)\n\n", h);
        table_head(o, md, "workload", "kheap", "vs ");
        for (int w = 0; w < BENCH_NWORKLOADS; w++) {
            n = 0;
            for (int i = 0; i < NA; i++)
                if (R[i].present && &R[i] != k) {
                    double p = tput(&R[i], w);
                    snprintf(cells[n++], 64, "%.2fx", p > 0 ? tput(k, w) / p : 0.0);
                }
            table_row(o, md, bench_workloads[w].name, cells, n);
        }
        fputc('\n', o);
    }

    fprintf(o, "%sLatency, cycles per call: p50/p99/p99.9/max pooled over all rounds\n\n", h);
    fprintf(o, "TSC ticks with the timer's own overhead (%lu) subtracted; the TSC here counts "
               "in steps of %lu.\n\n", overhead, step);
    table_head(o, md, "workload", NULL, "");
    for (int w = 0; w < BENCH_NWORKLOADS; w++) {
        n = 0;
        for (int i = 0; i < NA; i++)
            if (R[i].present)
                cell_lat(&R[i], w, cells[n++], 64);
        table_row(o, md, bench_workloads[w].name, cells, n);
    }
    fputc('\n', o);

    fprintf(o, "%sUtilisation at first failure (8 MiB arena, requested live bytes / arena, "
               "median [min-max] over seeds; fixed-arena allocators only)\n\n", h);
    fprintf(o, "Seed s uses splitmix64(%#llx + 1000003*100 + s) (grows) or *101 (grows+frees); "
               "sizes log-uniform 8 B..16 KiB; grows+frees frees a random live block every "
               "4th step.\n\n", (unsigned long long)BENCH_SEED_BASE);
    table_head(o, md, "live set", NULL, "");
    for (int v = 0; v < 2; v++) {
        n = 0;
        for (int i = 0; i < NA; i++)
            if (R[i].present)
                cell_util(&R[i], v, cells[n++], 64);
        table_row(o, md, v ? "grows+frees" : "grows", cells, n);
    }
    fputc('\n', o);

    uint64_t fc[MAX_FRAGS];
    int nfc = frag_counts(fc);
    fprintf(o, "%sCost vs free fragments: cycles per malloc+free pair that fits no fragment\n\n",
            h);
    table_head(o, md, "fragments", NULL, "");
    for (int j = 0; j < nfc; j++) {
        char first[32];
        n = 0;
        for (int i = 0; i < NA; i++)
            if (R[i].present)
                cell_frag(&R[i], fc[j], cells[n++], 64);
        snprintf(first, sizeof first, "%lu", (unsigned long)fc[j]);
        table_row(o, md, first, cells, n);
    }
    if (nfc >= 2) {
        n = 0;
        for (int i = 0; i < NA; i++)
            if (R[i].present) {
                const struct frag_res *a = frag_of(&R[i], fc[0]), *b = frag_of(&R[i], fc[nfc - 1]);
                double x = a ? median(a->ticks, a->n) : 0, y = b ? median(b->ticks, b->n) : 0;
                snprintf(cells[n++], 64, x > 0 ? "%.2fx" : "-", x > 0 ? y / x : 0.0);
            }
        table_row(o, md, "growth", cells, n);
    }
    fputc('\n', o);

    report_threads(o, md, h);
    report_locality(o, md, h);

    if (NT) {
        fprintf(o, "%sTargets\n\n", h);
        if (md)
            fprintf(o, "| target | measured | |\n|---|---|---|\n");
        for (int i = 0; i < NT; i++) {
            if (md)
                fprintf(o, "| %s | %s | %s |\n", T[i].what, T[i].figure,
                        T[i].met ? "met" : "MISSED");
            else
                fprintf(o, "%-46s %-40s %s\n", T[i].what, T[i].figure, T[i].met ? "met" : "MISSED");
        }
        fputc('\n', o);
    } else if (!present(k)) {
        fprintf(o, "Targets not evaluated: kheap did not run (build/host/libkheap.a absent?).\n\n");
    }
}

/* ---------------------------------------------------------------------------------------------
 * results.csv: one measurement per row
 *   metric,allocator,workload,param,runs,samples,value,min,max,unit
 * value: the median over runs (throughput, ratios, utilisation, fragment cost) or the percentile
 * pooled over every run's samples (latency); min/max: the spread over runs (or seeds).
 * ------------------------------------------------------------------------------------------- */
#define CSV_HEADER "metric,allocator,workload,param,runs,samples,value,min,max,unit"
#define CSV_COLUMNS 10

static void csv_row(FILE *o, const char *metric, const char *alloc, const char *wl,
                    const char *param, int runs, uint64_t samples, double v, double lo, double hi,
                    const char *unit)
{
    fprintf(o, "%s,%s,%s,%s,%d,%lu,%.6g,%.6g,%.6g,%s\n", metric, alloc, wl, param, runs,
            (unsigned long)samples, v, lo, hi, unit);
}

/* The threads runner's and the placement benchmark's rows of allocator a (k: kheap, or NULL):
 *   mt_throughput  small_churn 1T|2T  Mops/s      mt_scaling  small_churn|compute 2T/1T  x
 *   prodcons_time  prodcons 2T  ms                kheap_prodcons_ratio  kheap time / peer's, x
 *   locality_time  <phase> <objects>  ms          kheap_locality_ratio  kheap time / peer's, x
 * Ratios: the ratio of medians; min/max the extreme ratios of the per-round spreads. */
static void write_csv_mt(FILE *o, const struct alloc_res *a, const struct alloc_res *k)
{
    double m = 0, lo = 0, hi = 0, m1 = 0, lo1 = 0, hi1 = 0;
    const struct mt_res *c1 = &a->mt[MT_CHURN1], *c2 = &a->mt[MT_CHURN2], *pc = &a->mt[MT_PRODCONS];
    if (c1->n) {
        stats(c1->mops, c1->n, &m1, &lo1, &hi1);
        csv_row(o, "mt_throughput", a->name, "small_churn", "1T", c1->n, c1->ops, m1, lo1, hi1,
                "Mops/s");
    }
    if (c2->n) {
        stats(c2->mops, c2->n, &m, &lo, &hi);
        csv_row(o, "mt_throughput", a->name, "small_churn", "2T", c2->n, c2->ops, m, lo, hi,
                "Mops/s");
        if (c1->n && m1 > 0 && lo1 > 0)
            csv_row(o, "mt_scaling", a->name, "small_churn", "2T/1T", c2->n, c2->ops, m / m1,
                    lo / hi1, hi / lo1, "x");
    }
    const struct mt_res *k1 = &a->mt[MT_COMPUTE1], *k2 = &a->mt[MT_COMPUTE2];
    if (k1->n && k2->n) {
        stats(k1->mops, k1->n, &m1, &lo1, &hi1);
        stats(k2->mops, k2->n, &m, &lo, &hi);
        if (m1 > 0 && lo1 > 0)
            csv_row(o, "mt_scaling", a->name, "compute", "2T/1T", k2->n, k2->ops, m / m1,
                    lo / hi1, hi / lo1, "x");
    }
    if (pc->n) {
        stats(pc->ms, pc->n, &m, &lo, &hi);
        csv_row(o, "prodcons_time", a->name, "prodcons", "2T", pc->n, pc->ops, m, lo, hi, "ms");
        const struct mt_res *kp = k ? &k->mt[MT_PRODCONS] : NULL;
        if (kp && a != k && kp->n && lo > 0) {
            stats(kp->ms, kp->n, &m1, &lo1, &hi1);
            csv_row(o, "kheap_prodcons_ratio", "kheap", "prodcons", a->name, pc->n, pc->ops,
                    m1 / m, lo1 / hi, hi1 / lo, "x");
        }
    }
    for (int p = 0; a->nloc && p < NPHASE; p++) {
        char param[32];
        snprintf(param, sizeof param, "%lu", (unsigned long)a->loc_objects);
        stats(a->loc[p], a->nloc, &m, &lo, &hi);
        csv_row(o, "locality_time", a->name, PHASE_NAME[p], param, a->nloc, a->loc_objects, m,
                lo, hi, "ms");
        if (k && a != k && k->nloc && lo > 0) {
            stats(k->loc[p], k->nloc, &m1, &lo1, &hi1);
            csv_row(o, "kheap_locality_ratio", "kheap", PHASE_NAME[p], a->name, a->nloc,
                    a->loc_objects, m1 / m, lo1 / hi, hi1 / lo, "x");
        }
    }
}

static int write_csv(const char *path)
{
    FILE *o = fopen(path, "w");
    if (!o)
        return -1;
    fprintf(o, CSV_HEADER "\n");
    const struct alloc_res *k = find_alloc("kheap");
    for (int i = 0; i < NA; i++) {
        const struct alloc_res *a = &R[i];
        if (!a->present)
            continue;
        for (int w = 0; w < BENCH_NWORKLOADS; w++) {
            const struct wl_res *r = &a->w[w];
            const char *wn = bench_workloads[w].name;
            double m, lo, hi;
            if (r->n) {
                stats(r->mops, r->n, &m, &lo, &hi);
                csv_row(o, "throughput", a->name, wn, "-", r->n, r->ops, m, lo, hi, "Mops/s");
            }
            if (r->samples) {
                for (int p = 0; p <= NPCT; p++) {
                    char metric[32];
                    snprintf(metric, sizeof metric, "latency_%s", p < NPCT ? PCT_NAME[p] : "max");
                    pct_range(a, w, p, &lo, &hi);
                    csv_row(o, metric, a->name, wn, "-", r->nl, r->samples, pooled(a, w, p), lo,
                            hi, "cycles");
                }
            }
            if (present(k) && a != k && r->n && k->w[w].n) {
                double km, klo, khi;
                stats(k->w[w].mops, k->w[w].n, &km, &klo, &khi);
                stats(r->mops, r->n, &m, &lo, &hi);
                csv_row(o, "kheap_speedup", "kheap", wn, a->name, r->n, r->ops, km / m,
                        klo / hi, khi / lo, "x");
            }
        }
        for (int v = 0; v < 2; v++)
            if (a->nutil[v]) {
                double m, lo, hi;
                stats(a->util[v], a->nutil[v], &m, &lo, &hi);
                csv_row(o, "util_first_failure", a->name, UTIL_NAME[v], "8MiB", a->nutil[v],
                        (uint64_t)a->nutil[v], m, lo, hi, "ratio");
            }
        for (int j = 0; j < a->nf; j++) {
            const struct frag_res *f = &a->f[j];
            char param[32];
            double m, lo, hi;
            stats(f->ticks, f->n, &m, &lo, &hi);
            snprintf(param, sizeof param, "%lu", (unsigned long)f->frags);
            csv_row(o, "frag_cost", a->name, "frag", param, f->n, f->reps, m, lo, hi,
                    "cycles/pair");
        }
        csv_row(o, "timer_overhead", a->name, "-", "-", 1, 1, (double)a->overhead,
                (double)a->overhead, (double)a->overhead, "cycles");
        write_csv_mt(o, a, k);
    }
    return fclose(o);
}

/* Re-read the CSV: the header, CSV_COLUMNS non-empty fields a row, latency percentiles in
 * order for every allocator and workload. Returns the number of problems (details in msg). */
static int verify_csv(const char *path, int *rows, int *order_bad, char *msg, size_t msz)
{
    FILE *f = fopen(path, "r");
    char line[512];
    int bad = 0;
    *rows = 0;
    *order_bad = 0;
    msg[0] = 0;
    if (!f) {
        snprintf(msg, msz, "cannot open %s", path);
        return 1;
    }
    if (!fgets(line, sizeof line, f) || strncmp(line, CSV_HEADER, strlen(CSV_HEADER))) {
        snprintf(msg, msz, "bad header");
        bad++;
    }
    /* latency values per (allocator, workload) in file order p50, p99, p99.9, max */
    char key[96] = "";
    double last = -1;
    while (fgets(line, sizeof line, f)) {
        char copy[512], *fld[CSV_COLUMNS + 1];
        int n = 0;
        line[strcspn(line, "\n")] = 0;
        snprintf(copy, sizeof copy, "%s", line);
        for (char *s = copy, *e; n <= CSV_COLUMNS; s = e + 1) {
            fld[n++] = s;
            if (!(e = strchr(s, ',')))
                break;
            *e = 0;
        }
        (*rows)++;
        int empty = 0;
        for (int i = 0; i < n; i++)
            empty |= !*fld[i];
        if (n != CSV_COLUMNS || empty) {
            if (!bad++)
                snprintf(msg, msz, "row %d has %d fields: %s", *rows, n, line);
            continue;
        }
        if (!strncmp(fld[0], "latency_", 8)) {
            char k2[96];
            snprintf(k2, sizeof k2, "%s/%s", fld[1], fld[2]);
            double v = atof(fld[6]);
            if (strcmp(k2, key)) {
                snprintf(key, sizeof key, "%s", k2);
                last = -1;
            }
            if (v < last) {
                (*order_bad)++;
                if (!bad++)
                    snprintf(msg, msz, "%s: %s %g below the previous percentile %g", key,
                             fld[0], v, last);
            }
            last = v;
        }
    }
    fclose(f);
    return bad;
}

/* ---------------------------------------------------------------------------------------------
 * Plots: data files and a gnuplot script in the output directory
 * ------------------------------------------------------------------------------------------- */
static const char *const COLORS[] = { "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f",
                                      "#ff7f0e", "#8c564b", "#e377c2" };

/* One colour per allocator, the same in every plot. */
static const char *color_of(const char *name)
{
    for (size_t i = 0; i < sizeof ALLOC_NAMES / sizeof *ALLOC_NAMES; i++)
        if (!strcmp(ALLOC_NAMES[i], name))
            return COLORS[i % 8];
    if (!strcmp(name, KERNEL_ONLY_NAMES[0]))
        return COLORS[5];
    return COLORS[7];
}

/* Clamp for log axes: a 0-cycle (below timer resolution) figure is drawn as 1. */
static double lg(double v) { return v < 1 ? 1 : v; }

static int write_plots(void)
{
    char path[PATH_MAX + 32];
    FILE *o;
    int np = 0, idx[MAX_ALLOCS];
    for (int i = 0; i < NA; i++)
        if (R[i].present)
            idx[np++] = i;
    if (!np)
        return -1;

    snprintf(path, sizeof path, "%s/throughput.dat", opt.out);
    if (!(o = fopen(path, "w")))
        return -1;
    fprintf(o, "# workload then median min max per allocator:");
    for (int j = 0; j < np; j++)
        fprintf(o, " %s", R[idx[j]].name);
    fputc('\n', o);
    for (int w = 0; w < BENCH_NWORKLOADS; w++) {
        fprintf(o, "%s", bench_workloads[w].name);
        for (int j = 0; j < np; j++) {
            double m, lo, hi;
            stats(R[idx[j]].w[w].mops, R[idx[j]].w[w].n, &m, &lo, &hi);
            fprintf(o, " %g %g %g", lg(m * 1000) / 1000, lg(lo * 1000) / 1000,
                    lg(hi * 1000) / 1000);
        }
        fputc('\n', o);
    }
    fclose(o);

    snprintf(path, sizeof path, "%s/latency.dat", opt.out);
    if (!(o = fopen(path, "w")))
        return -1;
    fprintf(o, "# workload then, per allocator, p50 p99 p99.9 max (pooled cycles)\n");
    for (int w = 0; w < BENCH_NWORKLOADS; w++) {
        fprintf(o, "%s", bench_workloads[w].name);
        for (int j = 0; j < np; j++)
            for (int p = 0; p <= NPCT; p++)
                fprintf(o, " %g", lg(pooled(&R[idx[j]], w, p)));
        fputc('\n', o);
    }
    fclose(o);

    uint64_t fc[MAX_FRAGS];
    int nfc = frag_counts(fc);
    snprintf(path, sizeof path, "%s/frag.dat", opt.out);
    if (!(o = fopen(path, "w")))
        return -1;
    fprintf(o, "# fragments then, per allocator, median min max cycles per malloc+free pair\n");
    for (int f = 0; f < nfc; f++) {
        fprintf(o, "%lu", (unsigned long)fc[f]);
        for (int j = 0; j < np; j++) {
            const struct frag_res *fr = frag_of(&R[idx[j]], fc[f]);
            double m = 0, lo = 0, hi = 0;
            if (fr)
                stats(fr->ticks, fr->n, &m, &lo, &hi);
            fprintf(o, " %g %g %g", lg(m), lg(lo), lg(hi));
        }
        fputc('\n', o);
    }
    fclose(o);

    snprintf(path, sizeof path, "%s/plots.gp", opt.out);
    if (!(o = fopen(path, "w")))
        return -1;
    fprintf(o, "# Generated by build/bench/bin/bench (tests/host/bench/driver.c).\n"
               "set terminal svg size 1100,560 dynamic noenhanced font 'sans,12' "
               "background '#ffffff'\n"
               "set grid ytics\nset key outside right top\nset style fill solid 0.85 border -1\n"
               "set xtics norotate nomirror\nset logscale y\nset format y '%%g'\n");
    fprintf(o, "set output 'throughput.svg'\n"
               "set title 'Throughput per workload (median of %d rounds; bars: min-max), %s'\n"
               "set ylabel 'Mops/s (log scale, higher is better)'\n"
               "set style data histograms\nset style histogram errorbars gap 2 lw 1\n"
               "plot ", rounds_done, DATE);
    for (int j = 0; j < np; j++)
        fprintf(o, "%s'throughput.dat' using %d:%d:%d%s title '%s' lc rgb '%s'",
                j ? ", " : "", 2 + 3 * j, 3 + 3 * j, 4 + 3 * j, j ? "" : ":xtic(1)",
                R[idx[j]].name, color_of(R[idx[j]].name));
    fprintf(o, "\n\nset output 'latency.svg'\nset terminal svg size 1100,1100 dynamic noenhanced "
               "font 'sans,11' background '#ffffff'\n"
               "set xtics norotate font ',8'\nset yrange [1:*]\n"
               "set style histogram clustered gap 2\nset multiplot layout 2,2 title "
               "'Latency per call, cycles (pooled over %d rounds, log scale, lower is better)'\n",
            rounds_done);
    for (int p = 0; p <= NPCT; p++) {
        fprintf(o, "set title '%s'\nset ylabel 'cycles'\n%s\nplot ", p < NPCT ? PCT_NAME[p] : "max",
                p ? "unset key" : "set key inside left top");
        for (int j = 0; j < np; j++)
            fprintf(o, "%s'latency.dat' using %d%s title '%s' lc rgb '%s'", j ? ", " : "",
                    2 + (NPCT + 1) * j + p, j ? "" : ":xtic(1)", R[idx[j]].name,
                    color_of(R[idx[j]].name));
        fputc('\n', o);
    }
    fprintf(o, "unset multiplot\n\nset output 'frag.svg'\nset terminal svg size 900,560 dynamic "
               "noenhanced font 'sans,12' background '#ffffff'\nset logscale xy\nset autoscale y\n"
               "set xtics norotate font ',12'\n"
               "set grid xtics ytics\nset title 'Cost of a malloc+free that fits no free fragment "
               "(median, bars: min-max)'\nset xlabel 'free fragments'\n"
               "set ylabel 'cycles per malloc+free (log scale)'\nset key inside left top\nplot ");
    for (int j = 0; j < np; j++)
        fprintf(o, "%s'frag.dat' using 1:%d:%d:%d title '%s' with yerrorlines lw 2 pt 7 "
                   "lc rgb '%s'", j ? ", " : "", 2 + 3 * j, 3 + 3 * j, 4 + 3 * j,
                R[idx[j]].name, color_of(R[idx[j]].name));
    fputc('\n', o);
    fclose(o);

    char cmd[PATH_MAX * 2 + 64];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp 2>gnuplot.log", opt.out);
    int st = system(cmd);
    return st == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------------
 * Self-tests of the harness's arithmetic (smoke only)
 * ------------------------------------------------------------------------------------------- */
static void self_tests(void)
{
    int ok = 1;
    for (uint64_t v = 0; v < (1ull << 32); v = v < 4096 ? v + 1 : v * 17 / 16) {
        uint32_t x = (uint32_t)v, lo = hist_value(hist_bucket(x));
        unsigned b = hist_bucket(x);
        if (lo > x || b >= HIST_BUCKETS || (x >= HIST_EXACT && x - lo > x / 32) ||
            (x < HIST_EXACT && lo != x))
            ok = 0;
    }
    add_check(ok, NULL, "histogram buckets: lower bound within 1/32 of every value");

    uint64_t h[HIST_BUCKETS] = { 0 };
    for (uint32_t v = 1; v <= 1000; v++)
        h[hist_bucket(v)]++;
    uint32_t p50 = hist_pct(h, 1000, 0.5, 1000), p99 = hist_pct(h, 1000, 0.99, 1000);
    add_check(p50 <= 500 && p50 >= 500 - 500 / 32 && p99 <= 990 && p99 >= 990 - 990 / 32, NULL,
              "percentiles of 1..1000: p50 %u, p99 %u", p50, p99);

    struct bench_rng a, b;
    bench_rng_seed(&a, 42);
    bench_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 1000; i++)
        same &= bench_rand(&a) == bench_rand(&b);
    bench_rng_seed(&b, 43);
    add_check(same && bench_rand(&a) != bench_rand(&b), NULL,
              "PRNG deterministic per seed, different across seeds");

    struct bench_rng r;
    uint32_t lo = ~0u, hi = 0;
    bench_rng_seed(&r, 7);
    for (int i = 0; i < 100000; i++) {
        uint32_t s = bench_size_mixed(&r);
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    add_check(lo >= 8 && lo < 16 && hi < 16384 && hi > 16000, NULL,
              "mixed sizes span 8 B..16 KiB (saw %u..%u)", lo, hi);
}

/* Everything after the measurements: self-tests (smoke), targets, reports, CSV, plots. */
static void finish(time_t t0)
{
    char path[PATH_MAX + 32];
    if (opt.smoke)
        self_tests();

    eval_targets();
    FILE *out = opt.tap ? NULL : stdout;
    if (out) {
        putchar('\n');
        report(out, 0);
    }
    snprintf(path, sizeof path, "%s/results.md", opt.out);
    FILE *md = fopen(path, "w");
    if (md) {
        report(md, 1);
        fclose(md);
    }
    snprintf(path, sizeof path, "%s/results.csv", opt.out);
    int csv_ok = write_csv(path) == 0;
    if (opt.smoke) {
        int rows = 0, order_bad = 0;
        char msg[200];
        int bad = csv_ok ? verify_csv(path, &rows, &order_bad, msg, sizeof msg) : 1;
        add_check(!bad && rows > 0, msg, "results.csv written: %d rows, %d columns each, "
                  "no empty field", rows, CSV_COLUMNS);
        add_check(!order_bad && rows > 0, NULL, "latency percentiles ordered "
                  "p50 <= p99 <= p99.9 <= max in every row group");
        for (int i = 0; i < NA; i++) {
            if (!R[i].present)
                continue;
            int all = 1;
            for (int w = 0; w < BENCH_NWORKLOADS; w++)
                all &= R[i].w[w].n == rounds_done && R[i].w[w].nl == rounds_done &&
                       R[i].w[w].samples > 0 && tput(&R[i], w) > 0;
            add_check(all, NULL, "%s: throughput and latency recorded for every workload "
                      "and round", R[i].name);
            if (R[i].tpresent) {
                int mt = 1;
                for (int m = 0; m < MT_N; m++)
                    mt &= R[i].mt[m].n == rounds_done && mt_ms(&R[i], m) > 0;
                add_check(mt, NULL, "%s: small_churn and compute on 1 and 2 threads and "
                          "prodcons recorded every round", R[i].name);
            }
            if (R[i].lpresent)
                add_check(R[i].nloc == rounds_done && loc_ms(&R[i], 1) > 0, NULL,
                          "%s: placement phases recorded every round", R[i].name);
        }
    }
    if (opt.plots) {
        int st = write_plots();
        if (st)
            note("plots: gnuplot failed or is not installed (see %s/gnuplot.log)", opt.out);
        else
            note("plots: %s/{throughput,latency,frag}.svg", opt.out);
        if (opt.smoke) {
            int have = system("command -v gnuplot >/dev/null 2>&1") == 0;
            if (have)
                add_check(st == 0, NULL, "gnuplot drew throughput.svg, latency.svg, frag.svg");
            else
                add_skip("gnuplot not installed", "plots drawn");
        }
    }
    note("results: %s/results.csv, %s/results.md (%lds)", opt.out, opt.out,
         (long)(time(NULL) - t0));

}

/* --from-log: read records from a file (a bench kernel's serial output), then report. */
static int from_log(void)
{
    FILE *in = fopen(opt.from_log, "r");
    static char line[1 << 16];
    if (!in) {
        fprintf(stderr, "cannot open %s: %s\n", opt.from_log, strerror(errno));
        return 2;
    }
    for (size_t i = 0; i < sizeof ALLOC_NAMES / sizeof *ALLOC_NAMES; i++)
        R[NA++].name = ALLOC_NAMES[i];
    for (size_t i = 0; i < sizeof KERNEL_ONLY_NAMES / sizeof *KERNEL_ONLY_NAMES; i++)
        R[NA++].name = KERNEL_ONLY_NAMES[i];
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = 0;
        char kind = line[0], *comma = strchr(line, ',');
        if (!kind || line[1] != ',' || !strchr("ITKLUFC", kind) || !comma)
            continue;
        char name[32];
        size_t len = strcspn(comma + 1, ",");
        snprintf(name, sizeof name, "%.*s", (int)len, comma + 1);
        struct alloc_res *a = find_alloc(name);
        if (!a)
            continue;
        a->present = 1;
        strcat(line, "\n");
        parse_line(a, line);
    }
    fclose(in);
    for (int i = 0; i < NA; i++)
        for (int w = 0; w < BENCH_NWORKLOADS; w++)
            rounds_done = R[i].w[w].n > rounds_done ? R[i].w[w].n : rounds_done;
    finish(time(NULL));
    int failed = opt.tap ? tap_report() : 0;
    for (int i = 0; i < NA; i++)
        failed += R[i].failures;
    return failed ? 1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */
static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--smoke] [--tap] [--rounds N] [--allocs a,b,...] [--no-plots]\n"
            "          [--no-threads] [--no-locality]\n"
            "          [--bindir DIR] [--out DIR] [--from-log FILE] [--title TEXT]\n"
            "Runs build/bench/bin/bench-<allocator> N rounds (default 5; smoke 2), interleaved,\n"
            "then in each round threads-<allocator> and locality-<allocator> where built,\n"
            "and writes OUT/results.csv, OUT/results.md, OUT/*.svg (default OUT: build/bench,\n"
            "build/bench/smoke with --smoke). --from-log aggregates the records found in FILE\n"
            "(e.g. a bench kernel's serial log) instead of running anything.\n", argv0);
    exit(2);
}

static void exe_dir(char *out, size_t sz)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, sz, ".");
        return;
    }
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(out, sz, "%s", self);
}

static int mkdir_p(const char *dir)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

int main(int argc, char **argv)
{
    char here[PATH_MAX];
    opt.smoke = BENCH_SMOKE;
    opt.tap = BENCH_SMOKE;
    opt.rounds = -1;
    opt.plots = 1;
    opt.threads = opt.locality = 1;
    exe_dir(here, sizeof here);
    snprintf(opt.bindir, sizeof opt.bindir, "%s/%s", here, BENCH_BINDIR_REL);
    opt.out[0] = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--smoke")) opt.smoke = 1;
        else if (!strcmp(a, "--tap")) opt.tap = 1;
        else if (!strcmp(a, "--no-threads")) opt.threads = 0;
        else if (!strcmp(a, "--no-locality")) opt.locality = 0;
        else if (!strcmp(a, "--no-plots")) opt.plots = 0;
        else if (!strcmp(a, "--rounds") && more) opt.rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--allocs") && more) opt.only_allocs = argv[++i];
        else if (!strcmp(a, "--from-log") && more) opt.from_log = argv[++i];
        else if (!strcmp(a, "--title") && more) opt.title = argv[++i];
        else if (!strcmp(a, "--bindir") && more)
            snprintf(opt.bindir, sizeof opt.bindir, "%s", argv[++i]);
        else if (!strcmp(a, "--out") && more) snprintf(opt.out, sizeof opt.out, "%s", argv[++i]);
        else usage(argv[0]);
    }
    if (opt.rounds < 0)
        opt.rounds = opt.smoke ? 2 : 5;
    if (opt.rounds < 1 || opt.rounds > MAX_ROUNDS)
        usage(argv[0]);
    if (!opt.out[0])
        snprintf(opt.out, sizeof opt.out, "%s/..%s", opt.bindir, opt.smoke ? "/smoke" : "");
    if (mkdir_p(opt.out)) {
        fprintf(stderr, "cannot create %s: %s\n", opt.out, strerror(errno));
        return 2;
    }
    char real[PATH_MAX];
    if (realpath(opt.out, real))
        snprintf(opt.out, sizeof opt.out, "%s", real);
    if (realpath(opt.bindir, real))
        snprintf(opt.bindir, sizeof opt.bindir, "%s", real);
    if (opt.tap)
        ktest_tap_start();
    describe_machine();
    note("kheap bench%s: %s", opt.smoke ? " (smoke)" : "", MACHINE);
    note("runners from %s, results into %s", opt.bindir, opt.out);

    if (opt.from_log)
        return from_log();

    /* Which allocators can run: a runner binary exists (the Makefile builds one only when
     * its library is installed; kheap's only when build/host/libkheap.a exists). */
    for (size_t i = 0; i < sizeof ALLOC_NAMES / sizeof *ALLOC_NAMES; i++) {
        struct alloc_res *a = &R[NA++];
        a->name = ALLOC_NAMES[i];
        snprintf(a->path, sizeof a->path, "%s/bench-%s", opt.bindir, a->name);
        if (opt.only_allocs && !strstr(opt.only_allocs, a->name)) {
            NA--;
            continue;
        }
        a->present = access(a->path, X_OK) == 0;
        if (!a->present) {
            note("skipping %s: %s not built (%s)", a->name, a->path,
                 !strcmp(a->name, "kheap") ? "build/host/libkheap.a absent" : "library absent");
            if (opt.tap)
                add_skip("not built (library absent)", "%s runs", a->name);
        }
        /* firstfit has neither: it has no lock, and placing 10^6 objects first-fit takes
         * minutes */
        snprintf(a->tpath, sizeof a->tpath, "%s/threads-%s", opt.bindir, a->name);
        snprintf(a->lpath, sizeof a->lpath, "%s/locality-%s", opt.bindir, a->name);
        a->tpresent = opt.threads && a->present && access(a->tpath, X_OK) == 0;
        a->lpresent = opt.locality && a->present && access(a->lpath, X_OK) == 0;
        if (a->present && strcmp(a->name, "firstfit") &&
            ((opt.threads && !a->tpresent) || (opt.locality && !a->lpresent)))
            note("%s: %s not built, skipped", a->name, opt.threads && !a->tpresent ?
                 a->tpath : a->lpath);
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/raw.txt", opt.out);
    raw = fopen(path, "w");

    int nrun = 0, order[MAX_ALLOCS];
    for (int i = 0; i < NA; i++)
        if (R[i].present)
            order[nrun++] = i;
    time_t t0 = time(NULL);
    for (int r = 0; r < opt.rounds; r++) {
        if (!opt.tap) {
            printf("round %d/%d:", r + 1, opt.rounds);
            fflush(stdout);
        }
        for (int j = 0; j < nrun; j++) {
            struct alloc_res *a = &R[order[(j + r) % nrun]];
            if (!opt.tap) {
                printf(" %s", a->name);
                fflush(stdout);
            }
            if (raw)
                fprintf(raw, "## round %d %s\n", r, a->name);
            run_runner(a, RUN_BENCH, r);
        }
        /* then the threads runners, then the placement benchmark, in the same order */
        for (int kind = RUN_THREADS; kind <= RUN_LOCALITY; kind++) {
            int shown = 0;
            for (int j = 0; j < nrun; j++) {
                struct alloc_res *a = &R[order[(j + r) % nrun]];
                if (!(kind == RUN_THREADS ? a->tpresent : a->lpresent))
                    continue;
                if (!opt.tap) {
                    printf("%s %s", shown++ ? "" : kind == RUN_THREADS ? " | threads:" :
                           " | locality:", a->name);
                    fflush(stdout);
                }
                if (raw)
                    fprintf(raw, "## round %d %s %s\n", r, a->name, RUN_WHAT[kind]);
                run_runner(a, kind, r);
            }
        }
        if (!opt.tap)
            printf(" (%lds)\n", (long)(time(NULL) - t0));
        rounds_done = r + 1;
    }
    if (raw)
        fclose(raw);
    finish(t0);
    int failed = 0;
    if (opt.tap) {
        failed = tap_report();
    } else {
        for (int i = 0; i < NA; i++)
            failed += R[i].failures;
    }
    return failed ? 1 : 0;
}
