/* heapdump.c -- the heap as its map shows it: kheap_pieces_in() folds kheap_walk's entries into
 * pieces (blocks, slabs, the heap's own block), and kheap_dump() prints them on serial between
 * "kheap-dump begin" and "kheap-dump end" lines, one line per block, per run of identical
 * neighbouring blocks, per slab or own block (format in kernel.h). tools/heapmap turns a
 * captured dump into an SVG. The walk callbacks run with the heap lock held and only sort
 * entries and format text.
 *
 * The walk visits the blocks of a region in address order and they tile it (each starts where
 * the one before ends); a slab shows up as its objects, each naming its slab (b->slab), which
 * fold into one piece for the slab's block, [slab - 8, slab - 8 + KHEAP_DUMP_SLAB_BYTES). A gap
 * left before a piece is the block the walk does not show (the heap's per-CPU slots). */
#include "kernel.h"
#include "mm/kheap.h"
#include "mm/kheap_diag.h"

#define PIECES_REGIONS_MAX 64
#define DUMP_LINE_MAX      160

/* ---- kheap_pieces_in --------------------------------------------------------------------- */

enum { EDGE_NONE, EDGE_BEFORE, EDGE_AFTER };

struct pieces {
    kheap_t  *h;
    int     (*fn)(const struct kheap_piece *p, void *ctx);
    void     *ctx;
    int       pass;                 /* 1: spans and bytes only; 2: to fn */
    int       rc;                   /* fn's non-zero result */
    /* where the walk is */
    int       started;
    unsigned  region;
    uintptr_t prev_end;             /* end of the region's last piece; 0: none yet */
    int       slab_open;
    struct kheap_piece slab;
    int       site_mixed;
    /* pass 1's findings */
    unsigned  nregions;
    uintptr_t first[PIECES_REGIONS_MAX], end[PIECES_REGIONS_MAX];
    size_t    bytes;                /* in pieces */
    /* the unshown block at a region's edge, if the gaps did not hold it */
    int       edge;
    unsigned  edge_region;
    uintptr_t edge_start;
    size_t    edge_size;
};

static int piece_out(struct pieces *w, struct kheap_piece *p)
{
    unsigned r = p->region;
    if (w->pass == 1) {
        if (r < PIECES_REGIONS_MAX) {
            for (; w->nregions <= r; w->nregions++)
                w->first[w->nregions] = w->end[w->nregions] = 0;
            if (!w->first[r] || p->start < w->first[r])
                w->first[r] = p->start;
            if (p->start + p->size > w->end[r])
                w->end[r] = p->start + p->size;
        }
        w->bytes += p->size;
        return 0;
    }
    p->region_start = r < w->nregions ? w->first[r] : p->start;
    p->region_end = r < w->nregions ? w->end[r] : p->start + p->size;
    if (w->edge == EDGE_BEFORE && r == w->edge_region)
        p->region_start = w->edge_start;
    if (w->edge == EDGE_AFTER && r == w->edge_region)
        p->region_end = w->edge_start + w->edge_size;
    int rc = w->fn(p, w->ctx);
    if (rc)
        w->rc = rc;
    return rc;
}

static int own_out(struct pieces *w, uintptr_t start, size_t size)
{
    struct kheap_piece p = { .kind = KHEAP_PIECE_OWN, .start = start, .size = size,
                             .region = w->region };
    w->prev_end = start + size;
    return piece_out(w, &p);
}

static int slab_close(struct pieces *w)
{
    if (!w->slab_open)
        return 0;
    w->slab_open = 0;
    if (w->site_mixed)
        w->slab.site = NULL;
    w->prev_end = w->slab.start + w->slab.size;
    return piece_out(w, &w->slab);
}

/* The region's last pieces: its open slab, the unshown block if it ends the region. */
static int region_close(struct pieces *w)
{
    if (!w->started)
        return 0;
    int rc = slab_close(w);
    if (!rc && w->pass == 2 && w->edge == EDGE_AFTER && w->edge_region == w->region)
        rc = own_out(w, w->edge_start, w->edge_size);
    return rc;
}

static int piece_entry(const struct kheap_block_info *b, void *arg)
{
    struct pieces *w = arg;
    uintptr_t p = (uintptr_t)b->ptr;
    int rc;
    if (!w->started || b->region != w->region) {
        if ((rc = region_close(w)) != 0)
            return rc;
        w->started = 1;
        w->region = b->region;
        w->prev_end = 0;
        if (w->pass == 2 && w->edge == EDGE_BEFORE && w->edge_region == b->region &&
            (rc = own_out(w, w->edge_start, w->edge_size)) != 0)
            return rc;
    }
    if (w->slab_open) {
        if ((uintptr_t)b->slab == w->slab.start + KHEAP_HEADER_SIZE) {
            if (b->used) {
                if (w->slab.live && b->site != w->slab.site)
                    w->site_mixed = 1;
                w->slab.site = b->site;
                w->slab.live++;
            } else {
                w->slab.free++;
            }
            return 0;
        }
        if ((rc = slab_close(w)) != 0)
            return rc;
    }
    if (b->slab) {
        uintptr_t start = (uintptr_t)b->slab - KHEAP_HEADER_SIZE;
        if (w->prev_end && start > w->prev_end &&
            (rc = own_out(w, w->prev_end, start - w->prev_end)) != 0)
            return rc;
        w->slab = (struct kheap_piece){ .kind = KHEAP_PIECE_SLAB, .start = start,
                                        .size = KHEAP_DUMP_SLAB_BYTES, .region = b->region,
                                        .obj_size = b->size, .live = b->used ? 1 : 0,
                                        .free = b->used ? 0 : 1, .site = b->used ? b->site : NULL };
        w->slab_open = 1;
        w->site_mixed = 0;
        return 0;
    }
    uintptr_t start = p - KHEAP_HEADER_SIZE;
    if (w->prev_end && start > w->prev_end && (rc = own_out(w, w->prev_end, start - w->prev_end)))
        return rc;
    struct kheap_piece piece = { .kind = KHEAP_PIECE_BLOCK, .start = start, .size = b->size,
                                 .region = b->region, .block = *b };
    w->prev_end = start + b->size;
    return piece_out(w, &piece);
}

/* A walk that stops at its first entry, to run `job` under the heap's lock. */
struct locked_job {
    struct pieces *w;
    int          (*job)(struct pieces *w);
    int            rc;
};

static int locked_job_entry(const struct kheap_block_info *b, void *arg)
{
    (void)b;
    struct locked_job *j = arg;
    j->rc = j->job(j->w);
    return 1;
}

static int run_locked(struct pieces *w, int (*job)(struct pieces *w))
{
    struct locked_job j = { w, job, 0 };
    int rc = kheap_walk_in(w->h, locked_job_entry, &j);
    return rc == 1 ? j.rc : rc;
}

/* The unshown bytes (edge_size) at a region's edge: one used block of that size right before
 * a region's first piece or right after its last. */
static int find_edge(struct pieces *w)
{
    size_t n = w->edge_size;
    for (unsigned r = 0; r < w->nregions && w->edge == EDGE_NONE; r++) {
        struct kheap_block_info b;
        uintptr_t before = w->first[r] - n, after = w->end[r];
        if (w->first[r] > n && kheap_inspect_in(w->h, (void *)(before + KHEAP_HEADER_SIZE), &b) &&
            b.used && b.size == n) {
            w->edge = EDGE_BEFORE;
            w->edge_start = before;
        } else if (after && kheap_inspect_in(w->h, (void *)(after + KHEAP_HEADER_SIZE), &b) &&
                   b.used && b.size == n) {
            w->edge = EDGE_AFTER;
            w->edge_start = after;
        }
        w->edge_region = r;
    }
    return 0;
}

static int finish(struct pieces *w)
{
    return region_close(w);
}

int kheap_pieces_in(kheap_t *h, int (*fn)(const struct kheap_piece *p, void *ctx), void *ctx,
                    size_t *unplaced)
{
    static struct pieces w;         /* one at a time (the dump's); keeps ~1 KiB off the stack */
    struct kheap_stats s = { 0 };
    kheap_stats(h, &s);
    w = (struct pieces){ .h = h, .fn = fn, .ctx = ctx, .pass = 1 };
    int rc = kheap_walk_in(h, piece_entry, &w);
    if (rc == 0)
        rc = run_locked(&w, finish);
    if (rc)
        return rc;
    size_t rem = s.total_bytes > w.bytes ? s.total_bytes - w.bytes : 0;
    if (rem) {
        w.edge_size = rem;
        run_locked(&w, find_edge);
        if (w.edge != EDGE_NONE)
            rem = 0;
    }
    if (unplaced)
        *unplaced = rem;
    w.pass = 2;
    w.started = 0;
    w.slab_open = 0;
    rc = kheap_walk_in(h, piece_entry, &w);
    if (rc == 0)
        rc = run_locked(&w, finish);
    return w.rc ? w.rc : rc;
}

/* ---- kheap_dump ------------------------------------------------------------------------------ */

struct dump {
    void   (*out)(const char *line, void *ctx);
    void    *ctx;
    unsigned lines;
    /* the run of blocks being collected (count 0: none) and the region last announced */
    struct kheap_block_info run;
    uintptr_t run_end;
    unsigned count;
    int      announced;
    unsigned region;
    unsigned long blocks, slabs, objects;
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

/* Each piece: announce its region, collect runs of identical adjacent blocks. */
static int dump_piece(const struct kheap_piece *p, void *ctx)
{
    struct dump *d = ctx;
    if (p->kind == KHEAP_PIECE_BLOCK) {
        const struct kheap_block_info *b = &p->block;
        d->blocks++;
        if (d->count && same_kind(&d->run, b) && p->start == d->run_end) {
            d->count++;
            d->run_end += b->size;
            return 0;
        }
    }
    flush_run(d);
    if (!d->announced || p->region != d->region) {
        emit(d, "region %u %p %p", p->region, (void *)p->region_start, (void *)p->region_end);
        d->announced = 1;
        d->region = p->region;
    }
    void *payload = (void *)(p->start + KHEAP_HEADER_SIZE);
    switch (p->kind) {
    case KHEAP_PIECE_BLOCK:
        d->run = p->block;
        d->run_end = p->start + p->size;
        d->count = 1;
        break;
    case KHEAP_PIECE_SLAB: {
        char site[32] = "";
        if (p->live && p->site)
            ksnprintf(site, sizeof site, " site %p", p->site);
        emit(d, "S %p %zu slab %zu live %u free %u%s", payload, p->size, p->obj_size, p->live,
             p->free, site);
        d->slabs++;
        d->objects += p->live + p->free;
        break;
    }
    case KHEAP_PIECE_OWN:
        emit(d, "H %p %zu own", payload, p->size);
        break;
    }
    return 0;
}

int kheap_dump_to(void (*out)(const char *line, void *ctx), void *ctx)
{
    static struct dump d;
    d = (struct dump){ .out = out, .ctx = ctx };
    struct kheap_stats s = { 0 };
    kheap_get_stats(&s);
    emit(&d, "kheap-dump begin regions=%u used=%zu free=%zu", s.regions, s.used_bytes,
         s.free_bytes);
    size_t unplaced = 0;
    int rc = kheap_pieces_in(kheap_default(), dump_piece, &d, &unplaced);
    flush_run(&d);
    char extra[48] = "";
    int n = 0;
    if (unplaced)
        n += ksnprintf(extra + n, sizeof extra - n, " unplaced=%zu", unplaced);
    if (rc)
        ksnprintf(extra + n, sizeof extra - n, " error=%d", rc);
    emit(&d, "kheap-dump end lines=%u blocks=%lu slabs=%lu objects=%lu%s", d.lines + 1, d.blocks,
         d.slabs, d.objects, extra);
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
