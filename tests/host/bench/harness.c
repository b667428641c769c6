/*
 * harness.c -- one benchmark round of one allocator: passes, timing, histograms and the record
 * lines (format in runner.c's header). Freestanding like workloads.c: memory, the clock, the
 * output and the check hooks all come through struct bench_env, so the host runner (runner.c)
 * and a bench kernel run exactly the same code.
 */
#include "bench.h"

#define UTIL_ARENA   (8ul << 20)        /* utilisation at first failure: an 8 MiB arena */
#define CALIB_N      20001              /* empty timed windows for the overhead */
#define WARMUP_DIV   8                  /* warm-up pass: ops / WARMUP_DIV + 1 */
#define LINE_CAP     (HIST_BUCKETS * 24 + 256)

/* ---------------------------------------------------------------------------------------------
 * Record lines, built without libc
 * ------------------------------------------------------------------------------------------- */
static char line[LINE_CAP];
static size_t line_n;

static void put_c(char c)
{
    if (line_n + 1 < LINE_CAP)
        line[line_n++] = c;
}

static void put_s(const char *s)
{
    while (*s)
        put_c(*s++);
}

static void put_u(uint64_t v)
{
    char d[24];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put_c(d[--n]);
}

static void put_x(uint64_t v)
{
    put_s("0x");
    int shift = 60;
    while (shift > 0 && !(v >> shift))
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        put_c("0123456789abcdef"[(v >> shift) & 15]);
}

/* Start a record: "<kind>,<allocator>" */
static void rec(const struct bench_env *e, char kind)
{
    line_n = 0;
    put_c(kind);
    put_c(',');
    put_s(e->a->name);
}

static void field_s(const char *s) { put_c(','); put_s(s); }
static void field_u(uint64_t v) { put_c(','); put_u(v); }

static void done(const struct bench_env *e)
{
    line[line_n] = 0;
    e->emit(line);
}

static const char *rc_text(int rc)
{
    return rc == BENCH_E_NOMEM ? "allocation failed" : rc == BENCH_E_CHECK ? "check failed" :
           rc == BENCH_E_SCRATCH ? "scratch too small" : rc == BENCH_E_ARENA ?
           "the allocator refused the arena" : "ok";
}

/* "# <allocator> <what> failed: <why>" */
static void failed(const struct bench_env *e, const char *what, int rc)
{
    line_n = 0;
    put_s("# ");
    put_s(e->a->name);
    put_c(' ');
    put_s(what);
    put_s(" failed: ");
    put_s(rc_text(rc));
    done(e);
}

/* ---------------------------------------------------------------------------------------------
 * Set-up helpers
 * ------------------------------------------------------------------------------------------- */
static int restart(struct bench_env *e, size_t size)
{
    e->arena_used = size;
    return e->a->init(e->arena, size) ? BENCH_E_ARENA : 0;
}

static void ctx_init(const struct bench_env *e, struct bench_ctx *c, uint64_t seed, uint64_t ops)
{
    char *p = (char *)c;
    for (size_t i = 0; i < sizeof *c; i++)
        p[i] = 0;
    c->a = e->a;
    c->seed = seed;
    c->ops = ops;
    c->tsc_overhead = e->tsc_overhead;
    c->slots = e->slots;
    c->slots_cap = e->slots_cap;
    c->lat_cap = e->lat_cap;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

uint64_t bench_calibrate(struct bench_env *e, uint64_t *step)
{
    uint64_t n = e->lat_cap < CALIB_N ? e->lat_cap : CALIB_N, lo = ~0ull, g = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t0 = bench_tsc_begin();
        e->lat[i] = (uint32_t)(bench_tsc_end() - t0);
        lo = e->lat[i] < lo ? e->lat[i] : lo;
    }
    for (uint64_t i = 0; i < n; i++)
        g = gcd(g, e->lat[i] - lo);
    *step = e->tsc_step = g ? g : 1;
    e->tsc_overhead = bench_select(e->lat, n, n / 2);
    return e->tsc_overhead;
}

void bench_info(const struct bench_env *e, uint64_t tsc_mhz)
{
    rec(e, 'I');
    field_u(e->a->takes_arena ? e->arena_size : 0);
    field_u(e->tsc_overhead);
    field_u(e->tsc_step);
    field_u(tsc_mhz);
    field_s(e->a->version ? e->a->version() : "unknown");
    done(e);
}

/* Check mode: run before a checked pass and after it (C record). Returns 1 if it passed. */
static void check_begin(const struct bench_env *e, struct bench_ctx *c)
{
    e->check->begin(e);
    c->hooks = e->check->hooks;
}

static int check_end(const struct bench_env *e, const char *name, int rc)
{
    const char *why = e->check->end(e, rc);
    int ok = !rc && !why;
    rec(e, 'C');
    field_s(name);
    field_u((uint64_t)ok);
    field_s(why ? why : rc ? rc_text(rc) : "usable, aligned, non-overlapping");
    done(e);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * The passes
 * ------------------------------------------------------------------------------------------- */
static uint64_t hist[HIST_BUCKETS];

static void emit_latency(const struct bench_env *e, const char *name, unsigned round,
                         const struct bench_ctx *c)
{
    uint32_t max = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++)
        hist[b] = 0;
    for (uint64_t i = 0; i < c->nlat; i++) {
        hist[hist_bucket(e->lat[i])]++;
        max = e->lat[i] > max ? e->lat[i] : max;
    }
    rec(e, 'L');
    field_s(name);
    field_u(round);
    field_u(c->nlat);
    field_u(max);
    put_c(',');
    for (unsigned b = 0; b < HIST_BUCKETS; b++)
        if (hist[b]) {
            put_c(' ');
            put_u(b);
            put_c(':');
            put_u(hist[b]);
        }
    done(e);
}

int bench_workload(struct bench_env *e, unsigned id, unsigned round, uint64_t ops)
{
    const struct bench_workload *w = &bench_workloads[id];
    uint64_t seed = bench_seed(id, round);
    struct bench_ctx c;
    int rc, ok = 1;

    if (e->check) {                             /* every block verified; untimed */
        rc = restart(e, e->arena_size);
        ctx_init(e, &c, seed, ops);
        check_begin(e, &c);
        rc = rc ? rc : w->run(&c);
        ok = check_end(e, w->name, rc);
    }
    rc = restart(e, e->arena_size);             /* warm-up: fault in, fill caches */
    ctx_init(e, &c, seed ^ 1, ops / WARMUP_DIV + 1);
    rc = rc ? rc : w->run(&c);

    int rc2 = restart(e, e->arena_size);        /* throughput: untimed calls, wall clock */
    rc = rc ? rc : rc2;
    ctx_init(e, &c, seed, ops);
    uint64_t t0 = e->now_ns ? e->now_ns() : bench_tsc_begin();
    rc = rc ? rc : w->run(&c);
    uint64_t t1 = e->now_ns ? e->now_ns() : bench_tsc_end();
    if (rc) {
        failed(e, w->name, rc);
        return 0;
    }
    rec(e, e->now_ns ? 'T' : 'K');              /* K: the last field is TSC ticks, not ns */
    field_s(w->name);
    field_u(round);
    put_c(',');
    put_x(seed);
    field_u(c.done);
    field_u(t1 - t0);
    done(e);

    rc = restart(e, e->arena_size);             /* latency: every call timed */
    ctx_init(e, &c, seed, ops);
    c.lat = e->lat;
    rc = rc ? rc : w->run(&c);
    if (rc) {
        failed(e, w->name, rc);
        return 0;
    }
    emit_latency(e, w->name, round, &c);
    return ok;
}

int bench_util(struct bench_env *e, unsigned nseeds)
{
    static const char *const variant[2] = { "grow", "churn" };
    int ok = 1;
    if (!e->a->takes_arena)
        return 1;
    if (e->arena_size < UTIL_ARENA) {
        failed(e, "util (arena below 8 MiB)", BENCH_E_ARENA);
        return 0;
    }
    for (int churn = 0; churn <= 1; churn++) {
        for (unsigned s = 0; s < nseeds; s++) {
            struct bench_ctx c;
            uint64_t seed = bench_seed(100 + (unsigned)churn, s);
            int rc = restart(e, UTIL_ARENA);
            ctx_init(e, &c, seed, 0);
            if (e->check)
                check_begin(e, &c);
            rc = rc ? rc : wl_util(&c, churn);
            if (e->check) {
                char name[32];
                line_n = 0;                    /* borrow the line builder for the name */
                put_s("util_");
                put_s(variant[churn]);
                put_s("_seed");
                put_u(s);
                line[line_n] = 0;
                for (size_t i = 0; i <= line_n && i < sizeof name; i++)
                    name[i] = line[i];
                name[sizeof name - 1] = 0;
                ok &= check_end(e, name, rc);
            }
            if (rc) {
                failed(e, "util", rc);
                ok = 0;
                continue;
            }
            rec(e, 'U');
            field_s(variant[churn]);
            put_c(',');
            put_x(seed);
            field_u(c.live_bytes);
            field_u(UTIL_ARENA);
            done(e);
        }
    }
    restart(e, e->arena_size);
    return ok;
}

int bench_frag(struct bench_env *e, const uint64_t *frags, unsigned nfrags, unsigned round)
{
    int ok = 1;
    for (unsigned i = 0; i < nfrags; i++) {
        uint64_t f = frags[i];
        uint64_t reps = e->check ? 20 : f >= 100000 ? 200 : f >= 10000 ? 500 : 2000;
        struct bench_ctx c;
        int rc = restart(e, e->arena_size);
        ctx_init(e, &c, 0, 0);
        c.lat = e->lat;
        if (e->check)
            check_begin(e, &c);
        rc = rc ? rc : wl_frag(&c, f, reps);
        if (e->check) {
            char name[32] = "frag_";
            line_n = 0;
            put_u(f);
            line[line_n] = 0;
            for (size_t j = 0; j <= line_n && j + 5 < sizeof name; j++)
                name[5 + j] = line[j];
            name[sizeof name - 1] = 0;
            ok &= check_end(e, name, rc);
        }
        if (rc) {
            failed(e, "frag", rc);
            ok = 0;
            continue;
        }
        rec(e, 'F');
        field_u(f);
        field_u(round);
        field_u(reps);
        field_u(c.frag_ticks);
        done(e);
    }
    return ok;
}
