/* test_kernel_heapmap.c -- kheap_dump() (kernel/heapdump.c): heapmap_demo runs a small, varied
 * workload on a two-region demo heap (strings and list nodes, which the slab tier serves, a
 * growing table, page-aligned buffers, records, a large block; some freed again to leave holes)
 * and checks the dump's structure against kheap_walk and the stats (heapmap_dump_of_kernel_heap
 * does on kmain's heap). With `heapdump=1` on the command line it also prints the
 * dump on serial: `make heapmap` boots `ktest=heapmap_demo heapdump=1` and feeds the log to
 * tools/heapmap. Every test here leaves kmain's heap as it was (kernel_heap_setup). */
#include "ktest.h"
#include "kernel.h"
#include "mm/kheap.h"
#include "mm/kheap_diag.h"
#include "heap_sum.h"

#define KiB 1024u
#define DEMO_REGION0 (512 * KiB)   /* room for the per-CPU slots and a slab per class */
#define DEMO_REGION1 (128 * KiB)

static unsigned char demo_arena[DEMO_REGION0 + 16 * KiB + DEMO_REGION1]
    __attribute__((aligned(4096)));

/* ---- the workload: one function per allocation site (tools/heapmap names them) ----------- */

#define NSTRINGS 48
#define NNODES   64
#define NBUFFERS 6
#define NRECORDS 8

struct node {
    struct node *next;
    uint64_t     value[4];
};

static char        *strings[NSTRINGS];
static struct node *nodes[NNODES];
static uint32_t    *table;
static void        *buffers[NBUFFERS];
static void        *records[NRECORDS];
static void        *big_block;

static __attribute__((noinline)) void demo_make_strings(void)
{
    for (int i = 0; i < NSTRINGS; i++) {
        size_t n = 16 + (size_t)(i * 37) % 120;
        strings[i] = kmalloc(n);
        for (size_t j = 0; strings[i] && j + 1 < n; j++)
            strings[i][j] = (char)('a' + (i + j) % 26);
    }
}

static __attribute__((noinline)) void demo_make_list(void)
{
    struct node *head = NULL;
    for (int i = 0; i < NNODES; i++) {
        nodes[i] = kmalloc(sizeof(struct node));
        if (!nodes[i])
            continue;
        nodes[i]->next = head;
        nodes[i]->value[0] = (uint64_t)i;
        head = nodes[i];
    }
}

static __attribute__((noinline)) void demo_grow_table(void)
{
    table = kcalloc(512, sizeof *table);
    for (unsigned n = 1024; table && n <= 4096; n *= 2) {
        uint32_t *t = krealloc(table, n * sizeof *table);
        if (t)
            table = t;
    }
}

static __attribute__((noinline)) void demo_map_buffers(void)
{
    for (int i = 0; i < NBUFFERS; i++)
        buffers[i] = kmalloc_aligned(4096, 2048 + 512 * (size_t)i);
}

/* Records too large for the slab tier: identical neighbouring blocks (a run in the map). */
static __attribute__((noinline)) void demo_make_records(void)
{
    for (int i = 0; i < NRECORDS; i++)
        records[i] = kmalloc(1000);
}

static __attribute__((noinline)) void demo_big_block(void)
{
    big_block = kmalloc(40 * KiB);
}

/* Holes: every third string, every other list node in the second half, one buffer. */
static void demo_free_some(void)
{
    for (int i = 0; i < NSTRINGS; i += 3) {
        kfree(strings[i]);
        strings[i] = NULL;
    }
    for (int i = NNODES / 2; i < NNODES; i += 2) {
        kfree(nodes[i]);
        nodes[i] = NULL;
    }
    kfree(buffers[2]);
    buffers[2] = NULL;
}

static void demo_free_all(void)
{
    for (int i = 0; i < NSTRINGS; i++)
        kfree(strings[i]);
    for (int i = 0; i < NNODES; i++)
        kfree(nodes[i]);
    for (int i = 0; i < NBUFFERS; i++)
        kfree(buffers[i]);
    for (int i = 0; i < NRECORDS; i++)
        kfree(records[i]);
    kfree(table);
    kfree(big_block);
}

static void demo_workload(void)
{
    KEXPECT_EQ(kheap_init(demo_arena, DEMO_REGION0), 0);
    KEXPECT_EQ(kheap_add_region(demo_arena + DEMO_REGION0 + 16 * KiB, DEMO_REGION1), 0);
    demo_make_strings();
    demo_make_list();
    demo_grow_table();
    demo_map_buffers();
    demo_make_records();
    demo_big_block();
    demo_free_some();
}

/* ---- a dump parser: checks what tools/heapmap relies on -------------------------------------- */

struct parsed {
    unsigned lines, begins, ends, regions, bad, slabs, owns;
    unsigned long blocks, objects, live_objects;
    uint64_t used, free, bytes, slab_bytes, object_free_bytes, last_end;
    /* the end line's counts */
    unsigned long end_lines, end_blocks, end_slabs, end_objects;
    /* the piece holding `probe`: its line's letter; for a slab, its object size, live count */
    uintptr_t probe;
    char probe_kind;
    uint64_t probe_obj, probe_live;
    int printing;
};

static int starts(const char *s, const char *p)
{
    while (*p && *s == *p)
        s++, p++;
    return *p == '\0';
}

static const char *skip_word(const char *s)
{
    while (*s && *s != ' ')
        s++;
    while (*s == ' ')
        s++;
    return s;
}

static uint64_t number(const char *s)       /* decimal, or hex after 0x */
{
    uint64_t v = 0;
    if (s[0] == '0' && s[1] == 'x') {
        for (s += 2;; s++) {
            unsigned d = *s >= '0' && *s <= '9' ? (unsigned)(*s - '0')
                       : *s >= 'a' && *s <= 'f' ? (unsigned)(*s - 'a' + 10) : 16;
            if (d == 16)
                return v;
            v = v * 16 + d;
        }
    }
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (uint64_t)(*s++ - '0');
    return v;
}

static size_t length(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* The value after "key=" in s, or 0. */
static uint64_t field(const char *s, const char *key)
{
    for (; *s; s++)
        if (*s == ' ' && starts(s + 1, key))
            return number(s + 1 + length(key));
    return 0;
}

/* The value after the word "key " in s (a line's "live N"), or ~0. */
static uint64_t word_value(const char *s, const char *key)
{
    for (; *s; s = skip_word(s))
        if (starts(s, key) && s[length(key)] == ' ')
            return number(skip_word(s));
    return ~0ull;
}

/* One piece line (after its letter, and a run's count): "0xPAYLOAD SIZE ...": the pieces of
 * a region tile it, so each starts where the last one ended. */
static const char *piece(struct parsed *p, const char *s, char kind, uint64_t count,
                         uint64_t *size_out)
{
    uint64_t addr = number(s);
    s = skip_word(s);
    uint64_t size = number(s);
    s = skip_word(s);
    uint64_t start = addr - KHEAP_HEADER_SIZE, end = start + count * size;
    if ((p->last_end && start != p->last_end) || size < KHEAP_MIN_BLOCK)
        p->bad++;
    if (p->probe && p->probe >= start && p->probe < end)
        p->probe_kind = kind;
    p->last_end = end;
    p->bytes += count * size;
    *size_out = size;
    return s;
}

static void parse_line(const char *line, void *ctx)
{
    struct parsed *p = ctx;
    p->lines++;
    if (p->printing)
        kprintf("%s\n", line);
    uint64_t size;
    if (starts(line, "kheap-dump begin")) {
        p->begins++;
    } else if (starts(line, "kheap-dump end")) {
        p->ends++;
        p->end_lines = field(line, "lines=");
        p->end_blocks = field(line, "blocks=");
        p->end_slabs = field(line, "slabs=");
        p->end_objects = field(line, "objects=");
        if (field(line, "unplaced=") || field(line, "error="))
            p->bad++;
    } else if (starts(line, "region ")) {
        p->regions++;
        p->last_end = 0;
    } else if (starts(line, "B ") || starts(line, "R ")) {
        const char *s = skip_word(line);
        uint64_t count = 1;
        if (line[0] == 'R') {
            count = number(s);
            s = skip_word(s);
            if (count < 2)                  /* runs have two blocks or more */
                p->bad++;
        }
        s = piece(p, s, line[0], count, &size);
        p->blocks += count;
        if (starts(s, "used"))
            p->used += count * size;
        else if (starts(s, "free"))
            p->free += count * size;
        else
            p->bad++;
    } else if (starts(line, "S ")) {
        /* a slab: one aligned block, live objects used, the rest of it free */
        uint64_t addr = number(skip_word(line));
        const char *s = piece(p, skip_word(line), 'S', 1, &size);
        uint64_t obj = number(skip_word(s)), live = word_value(s, "live"),
                 free = word_value(s, "free");
        if (!starts(s, "slab ") || size != KHEAP_DUMP_SLAB_BYTES ||
            addr % KHEAP_DUMP_SLAB_BYTES || !slab_class_size(obj) || live == ~0ull ||
            free == ~0ull || live + free == 0 ||
            (live + free) * obj > KHEAP_DUMP_SLAB_BYTES - KHEAP_HEADER_SIZE)
            p->bad++;
        else if (p->probe_kind == 'S' && p->probe >= addr && p->probe < addr + size &&
                 !p->probe_obj) {
            p->probe_obj = obj;
            p->probe_live = live;
        }
        p->slabs++;
        p->objects += live + free;
        p->live_objects += live;
        p->used += live * obj;
        p->free += size - live * obj;
        p->slab_bytes += size;
        p->object_free_bytes += free * obj;
    } else if (starts(line, "H ")) {
        const char *s = piece(p, skip_word(line), 'H', 1, &size);
        if (!starts(s, "own"))
            p->bad++;
        p->owns++;
        p->free += size;                    /* the stats count the heap's own block free */
    } else {
        p->bad++;
    }
}

static int count_block(const struct kheap_block_info *b, void *ctx)
{
    (void)b;
    ++*(unsigned long *)ctx;
    return 0;
}

/* Dump the default heap and check it against kheap_walk and the stats: every byte of
 * total_bytes on one line, used and free as the stats count them, the slabs' bytes and their
 * free (or cached) objects as the stats have them, every walk entry a block or a slab's
 * object. probe: an address whose piece the caller wants described in the result. */
static struct parsed *check_dump(int printing, uintptr_t probe)
{
    struct kheap_stats s;
    kheap_get_stats(&s);
    static struct parsed p;
    p = (struct parsed){ .printing = printing, .probe = probe };
    KEXPECT_EQ(kheap_dump_to(parse_line, &p), 0);
    unsigned long walked = 0;
    KEXPECT_EQ(kheap_walk(count_block, &walked), 0);
    KEXPECT_EQ(p.begins, 1);
    KEXPECT_EQ(p.ends, 1);
    KEXPECT_EQ(p.bad, 0);
    KEXPECT_EQ(p.regions, s.regions);
    KEXPECT_EQ(p.blocks + p.objects, walked);
    KEXPECT_EQ(p.bytes, s.total_bytes);
    KEXPECT_EQ(p.used, s.used_bytes);
    KEXPECT_EQ(p.free, s.free_bytes);
    KEXPECT_EQ(p.slab_bytes, s.slab_bytes);
    KEXPECT_EQ(p.object_free_bytes, s.slab_free_bytes + s.cached_bytes);
    KEXPECT(p.owns <= 1);                       /* the per-CPU slots, if the walk hid them */
    KEXPECT_EQ(p.end_lines, p.lines);
    KEXPECT_EQ(p.end_blocks, p.blocks);
    KEXPECT_EQ(p.end_slabs, p.slabs);
    KEXPECT_EQ(p.end_objects, p.objects);
    KEXPECT(p.lines <= p.blocks + p.slabs + p.owns + p.regions + 2);
    ktest_note("dump: %u lines for %lu blocks, %u slabs (%lu objects, %lu live) and %u own "
               "block in %u regions, %lu bytes used, %lu free", p.lines, p.blocks, p.slabs,
               p.objects, p.live_objects, p.owns, p.regions, (unsigned long)p.used,
               (unsigned long)p.free);
    return &p;
}

KTEST(heapmap_demo)
{
    char flag[8];
    int printing = boot_cmdline_get("heapdump", flag, sizeof flag) && flag[0] == '1';
    demo_workload();
    KEXPECT_EQ(kheap_check(), 0);
    struct parsed *p = check_dump(printing, (uintptr_t)nodes[0]);
    /* the demo shows every kind of line: slabs (strings, list nodes), blocks, a run of them
     * (the records), the per-CPU slots' block */
    KEXPECT(p->slabs >= 2);
    KEXPECT(p->objects > p->slabs);
    KEXPECT(p->live_objects > 0 && p->live_objects < p->objects);
    KEXPECT(p->lines < p->blocks + p->slabs + p->owns + p->regions + 2);  /* runs folded */
    KEXPECT_EQ(p->owns, 1);
    KEXPECT_EQ(p->probe_kind, 'S');                 /* a list node is a slab object */
    KEXPECT_EQ(p->probe_obj, slab_class_of(sizeof(struct node)));
    demo_free_all();
    struct kheap_stats s;
    kheap_get_stats(&s);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.errors, 0);
    KEXPECT_EQ(kheap_check(), 0);
    /* empty: after the flush (spare slabs and this CPU's caches back) blocks and the slots */
    kheap_flush();
    p = check_dump(0, 0);
    KEXPECT_EQ(p->slabs, 0);
    KEXPECT_EQ(p->used, 0);
    kernel_heap_setup(0);
}

KTEST(heapmap_dump_of_kernel_heap)
{
    kernel_heap_setup(0);
    void *a = kmalloc(100), *b = kmalloc(100), *c = kmalloc(100), *big = kmalloc(3000);
    kfree(b);
    struct parsed *p = check_dump(0, (uintptr_t)a);
    KEXPECT_EQ(p->probe_kind, 'S');                 /* a small block lies in a slab ... */
    KEXPECT_EQ(p->probe_obj, slab_class_of(100));
    KEXPECT(p->probe_live >= 2);                    /* ... with c */
    p = check_dump(0, (uintptr_t)big);
    KEXPECT_EQ(p->probe_kind, 'B');                 /* a large one is a block */
    kfree(a);
    kfree(c);
    kfree(big);
    KEXPECT_EQ(kheap_check(), 0);
}
