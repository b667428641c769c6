/* test_kernel_heapmap.c -- kheap_dump() (kernel/heapdump.c): heapmap_demo runs a small, varied
 * workload on a two-region demo heap (strings, list nodes, a growing table, page-aligned
 * buffers, a large block; some freed again to leave holes) and checks the dump's structure
 * against kheap_walk and the stats. With `heapdump=1` on the command line it also prints the
 * dump on serial: `make heapmap` boots `ktest=heapmap_demo heapdump=1` and feeds the log to
 * tools/heapmap. Every test here leaves kmain's heap as it was (kernel_heap_setup). */
#include "ktest.h"
#include "kernel.h"
#include "mm/kheap.h"
#include "mm/kheap_diag.h"

#define KiB 1024u
#define DEMO_REGION0 (160 * KiB)
#define DEMO_REGION1 (64 * KiB)

static unsigned char demo_arena[DEMO_REGION0 + 16 * KiB + DEMO_REGION1]
    __attribute__((aligned(4096)));

/* ---- the workload: one function per allocation site (tools/heapmap names them) ----------- */

#define NSTRINGS 48
#define NNODES   64
#define NBUFFERS 6

struct node {
    struct node *next;
    uint64_t     value[4];
};

static char        *strings[NSTRINGS];
static struct node *nodes[NNODES];
static uint32_t    *table;
static void        *buffers[NBUFFERS];
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
    demo_big_block();
    demo_free_some();
}

/* ---- a dump parser: checks what tools/heapmap relies on -------------------------------------- */

struct parsed {
    unsigned lines, begins, ends, regions, bad;
    unsigned long blocks;
    uint64_t used, free, last_end;
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

static void parse_line(const char *line, void *ctx)
{
    struct parsed *p = ctx;
    p->lines++;
    if (p->printing)
        kprintf("%s\n", line);
    if (starts(line, "kheap-dump begin")) {
        p->begins++;
    } else if (starts(line, "kheap-dump end")) {
        p->ends++;
    } else if (starts(line, "region ")) {
        p->regions++;
        p->last_end = 0;
    } else if (starts(line, "B ") || starts(line, "R ")) {
        const char *s = skip_word(line);
        uint64_t count = 1;
        if (line[0] == 'R') {
            count = number(s);
            s = skip_word(s);
        }
        uint64_t addr = number(s);
        s = skip_word(s);
        uint64_t size = number(s);
        s = skip_word(s);
        /* blocks are contiguous within a region, and runs have count >= 2 */
        if ((p->last_end && addr - KHEAP_HEADER_SIZE != p->last_end) || size < KHEAP_MIN_BLOCK ||
            (line[0] == 'R' && count < 2))
            p->bad++;
        p->last_end = addr - KHEAP_HEADER_SIZE + count * size;
        p->blocks += count;
        if (starts(s, "used"))
            p->used += count * size;
        else if (starts(s, "free"))
            p->free += count * size;
        else
            p->bad++;
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

/* compact: the map must be shorter than one line per block (the demo has runs). */
static void check_dump(int printing, int compact)
{
    struct kheap_stats s;
    kheap_get_stats(&s);
    static struct parsed p;
    p = (struct parsed){ .printing = printing };
    KEXPECT_EQ(kheap_dump_to(parse_line, &p), 0);
    unsigned long walked = 0;
    KEXPECT_EQ(kheap_walk(count_block, &walked), 0);
    KEXPECT_EQ(p.begins, 1);
    KEXPECT_EQ(p.ends, 1);
    KEXPECT_EQ(p.bad, 0);
    KEXPECT_EQ(p.regions, s.regions);
    KEXPECT_EQ(p.blocks, walked);
    KEXPECT_EQ(p.used, s.used_bytes);
    KEXPECT_EQ(p.free, s.free_bytes);
    KEXPECT(p.lines <= walked + p.regions + 2);
    if (compact)
        KEXPECT(p.lines < walked + p.regions + 2);  /* runs folded identical neighbours */
    ktest_note("dump: %u lines for %lu blocks in %u regions, %lu bytes used, %lu free",
               p.lines, walked, p.regions, (unsigned long)p.used, (unsigned long)p.free);
}

KTEST(heapmap_demo)
{
    char flag[8];
    int printing = boot_cmdline_get("heapdump", flag, sizeof flag) && flag[0] == '1';
    demo_workload();
    KEXPECT_EQ(kheap_check(), 0);
    check_dump(printing, 1);
    demo_free_all();
    struct kheap_stats s;
    kheap_get_stats(&s);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.errors, 0);
    KEXPECT_EQ(kheap_check(), 0);
    kernel_heap_setup(0);
}

KTEST(heapmap_dump_of_kernel_heap)
{
    kernel_heap_setup(0);
    void *a = kmalloc(100), *b = kmalloc(100), *c = kmalloc(100);
    kfree(b);
    check_dump(0, 0);
    kfree(a);
    kfree(c);
    KEXPECT_EQ(kheap_check(), 0);
}
