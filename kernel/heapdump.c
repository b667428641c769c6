/* heapdump.c -- kheap_dump(): a compact text map of the kernel heap on serial, between
 * "kheap-dump begin" and "kheap-dump end" lines, one line per block or per run of identical
 * neighbouring blocks (format in kernel.h). tools/heapmap turns a captured dump into an SVG.
 * Built on kheap_walk; the walk callback runs with the heap lock held and only formats text. */
#include "kernel.h"
#include "mm/kheap.h"
#include "mm/kheap_diag.h"

#define DUMP_REGIONS_MAX 64
#define DUMP_LINE_MAX    160

struct dump {
    void   (*out)(const char *line, void *ctx);
    void    *ctx;
    unsigned lines;
    /* pass 1: the span of each region's blocks */
    unsigned nregions;
    uintptr_t start[DUMP_REGIONS_MAX], end[DUMP_REGIONS_MAX];
    /* pass 2: the run being collected (count 0: none) and the region last announced */
    struct kheap_block_info run;
    uintptr_t run_end;
    unsigned count;
    int      announced;
    unsigned long blocks;
};

static void emit(struct dump *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct dump *d, const char *fmt, ...)
{
    char line[DUMP_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    d->out(line, d->ctx);
    d->lines++;
}

static uintptr_t block_start(const struct kheap_block_info *b)
{
    return (uintptr_t)b->ptr - KHEAP_HEADER_SIZE;
}

/* Pass 1: grow region b->region's span to cover b. */
static int span_block(const struct kheap_block_info *b, void *ctx)
{
    struct dump *d = ctx;
    if (b->region >= DUMP_REGIONS_MAX)
        return 0;
    uintptr_t s = block_start(b), e = s + b->size;
    if (b->region >= d->nregions) {
        for (unsigned i = d->nregions; i <= b->region; i++)
            d->start[i] = d->end[i] = 0;
        d->nregions = b->region + 1;
    }
    if (!d->start[b->region] || s < d->start[b->region])
        d->start[b->region] = s;
    if (e > d->end[b->region])
        d->end[b->region] = e;
    return 0;
}

/* The collected run as one line: "B ..." for a single block, "R COUNT ..." for several. */
static void flush_run(struct dump *d)
{
    if (!d->count)
        return;
    const struct kheap_block_info *b = &d->run;
    char extra[64] = "";
    int n = 0;
    if (b->used && b->site)
        n += ksnprintf(extra + n, sizeof extra - n, " site %p", b->site);
    if (b->used && b->requested != b->usable)
        ksnprintf(extra + n, sizeof extra - n, " req %zu", b->requested);
    if (d->count == 1)
        emit(d, "B %p %zu %s%s", b->ptr, b->size, b->used ? "used" : "free", extra);
    else
        emit(d, "R %u %p %zu %s%s", d->count, b->ptr, b->size, b->used ? "used" : "free", extra);
    d->count = 0;
}

static int same_kind(const struct kheap_block_info *a, const struct kheap_block_info *b)
{
    return a->size == b->size && a->used == b->used && a->site == b->site &&
           a->requested == b->requested && a->region == b->region;
}

/* Pass 2: announce regions, collect runs of identical adjacent blocks. */
static int dump_block(const struct kheap_block_info *b, void *ctx)
{
    struct dump *d = ctx;
    d->blocks++;
    if (d->count && same_kind(&d->run, b) && block_start(b) == d->run_end) {
        d->count++;
        d->run_end += b->size;
        return 0;
    }
    flush_run(d);
    if (!d->announced || b->region != d->run.region) {
        uintptr_t s = b->region < d->nregions ? d->start[b->region] : block_start(b);
        uintptr_t e = b->region < d->nregions ? d->end[b->region] : 0;
        emit(d, "region %u %p %p", b->region, (void *)s, (void *)e);
        d->announced = 1;
    }
    d->run = *b;
    d->run_end = block_start(b) + b->size;
    d->count = 1;
    return 0;
}

int kheap_dump_to(void (*out)(const char *line, void *ctx), void *ctx)
{
    static struct dump d;            /* one dump at a time; keeps ~1 KiB off the stack */
    d = (struct dump){ .out = out, .ctx = ctx };
    struct kheap_stats s = { 0 };
    kheap_get_stats(&s);
    int rc = kheap_walk(span_block, &d);
    unsigned long blocks = 0;
    emit(&d, "kheap-dump begin regions=%u used=%zu free=%zu", s.regions, s.used_bytes,
         s.free_bytes);
    if (rc == 0) {
        rc = kheap_walk(dump_block, &d);
        flush_run(&d);
        blocks = d.blocks;
    }
    if (rc)
        emit(&d, "kheap-dump end lines=%u blocks=%lu error=%d", d.lines + 1, blocks, rc);
    else
        emit(&d, "kheap-dump end lines=%u blocks=%lu", d.lines + 1, blocks);
    return rc;
}

static void serial_line(const char *line, void *ctx)
{
    (void)ctx;
    kprintf("%s\n", line);
}

int kheap_dump(void)
{
    return kheap_dump_to(serial_line, NULL);
}
