/* test_kernel_multiboot.c -- boot_info_parse on crafted Multiboot2 and Multiboot1 info: a
 * well-formed one is read completely; malformed ones (a tag or memory-map entry size of 0 or too
 * small, a tag reaching past total_size, a truncated header) stop the parse with return value 1,
 * keep what came before and never read past the info. Each test puts the real boot_info back. */
#include "ktest.h"
#include "kernel.h"

#define MB2_TAG_END      0
#define MB2_TAG_CMDLINE  1
#define MB2_TAG_LOADER   2
#define MB2_TAG_MEMINFO  4
#define MB2_TAG_MMAP     6
#define MB2_ENTRY_SIZE   24         /* base, length, type, reserved */
#define MB1_INFO_MMAP    (1u << 6)
#define MB1_OFF_MMAP_LEN 44         /* struct mb1_info: mmap_length, mmap_addr */
#define MB1_OFF_MMAP_ADR 48
#define POISON           0xEE       /* bytes past the crafted info: must never be parsed */

static struct boot_info saved;
/* The crafted info (8-aligned, below 4 GiB: Multiboot1 addresses are 32-bit). */
static uint64_t buf_words[64];
static uint8_t *const buf = (uint8_t *)buf_words;
static uint32_t len;

static void put32(uint32_t off, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        buf[off + i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint32_t off, uint64_t v)
{
    put32(off, (uint32_t)v);
    put32(off + 4, (uint32_t)(v >> 32));
}

/* ---- a Multiboot2 info builder: header, then tags appended at 8-aligned offsets --------- */

static void mb2_begin(void)
{
    for (size_t i = 0; i < sizeof buf_words; i++)
        buf[i] = POISON;
    put64(0, 0);
    len = 8;
}

/* Append a tag header (the next tag goes after size bytes, after the header if size < 8). */
static uint32_t mb2_tag(uint32_t type, uint32_t size)   /* returns the tag's offset */
{
    uint32_t off = len;
    put32(off, type);
    put32(off + 4, size);
    len = off + (size < 8 ? 8 : (size + 7) & ~7u);
    return off;
}

static void mb2_string(uint32_t type, const char *s, uint32_t n)  /* n bytes, no NUL added */
{
    uint32_t off = mb2_tag(type, 8 + n);
    for (uint32_t i = 0; i < n; i++)
        buf[off + 8 + i] = (uint8_t)s[i];
}

static void mb2_mmap(uint32_t entry_size, unsigned entries)
{
    uint32_t off = mb2_tag(MB2_TAG_MMAP, 16 + entry_size * entries);
    put32(off + 8, entry_size);
    put32(off + 12, 0);
    for (unsigned i = 0; i < entries; i++) {
        uint32_t e = off + 16 + i * entry_size;
        put64(e, 0x100000ull * (i + 1));
        put64(e + 8, 0x1000);
        put32(e + 16, 1);
        put32(e + 20, 0);
    }
}

/* Parse buf as Multiboot2 with total_size = total (the bytes after it are poison). */
static int mb2_parse(uint32_t total)
{
    put32(0, total);
    return boot_info_parse(MULTIBOOT2_BOOT_MAGIC, (uint64_t)buf);
}

KTEST(kernel_multiboot2_parse_wellformed)
{
    saved = boot_info;
    mb2_begin();
    mb2_string(MB2_TAG_CMDLINE, "ktest=x", 8);
    mb2_string(MB2_TAG_LOADER, "crafted", 8);
    uint32_t mi = mb2_tag(MB2_TAG_MEMINFO, 16);
    put32(mi + 8, 639);
    put32(mi + 12, 261120);
    mb2_mmap(MB2_ENTRY_SIZE, 2);
    mb2_tag(99, 12);                                  /* unknown tag: skipped */
    mb2_tag(MB2_TAG_END, 8);
    uint32_t total = len;
    KEXPECT_EQ(mb2_parse(total), 0);
    KEXPECT_EQ(boot_info.multiboot_version, 2);
    KEXPECT(ktest_streq(boot_info.cmdline, "ktest=x"));
    KEXPECT(ktest_streq(boot_info.loader_name, "crafted"));
    KEXPECT_EQ(boot_info.mem_lower_kb, 639);
    KEXPECT_EQ(boot_info.mem_upper_kb, 261120);
    KEXPECT_EQ(boot_info.mmap_count, 2);
    KEXPECT_EQ(boot_info.mmap[1].base, 0x200000);
    KEXPECT_EQ(boot_info.info_count, 1);
    KEXPECT_EQ(boot_info.info[0].end - boot_info.info[0].start, total);
    boot_info = saved;
}

KTEST(kernel_multiboot2_parse_malformed)
{
    saved = boot_info;
    /* a tag of size 0 after a good one: stops there (the old parser looped forever) */
    mb2_begin();
    mb2_string(MB2_TAG_CMDLINE, "a=1", 4);
    mb2_tag(MB2_TAG_LOADER, 0);
    mb2_tag(MB2_TAG_END, 8);
    KEXPECT_EQ(mb2_parse(len), 1);
    KEXPECT(ktest_streq(boot_info.cmdline, "a=1"));
    KEXPECT_EQ(boot_info.loader_name[0], '\0');
    /* a tag size below its own header */
    mb2_begin();
    mb2_tag(MB2_TAG_CMDLINE, 4);
    KEXPECT_EQ(mb2_parse(len + 8), 1);
    /* memory map entry_size 0 and 8 (smaller than an entry): no entry, no endless loop */
    for (uint32_t es = 0; es <= 8; es += 8) {
        mb2_begin();
        mb2_mmap(MB2_ENTRY_SIZE, 2);
        put32(8 + 8, es);
        mb2_tag(MB2_TAG_END, 8);
        KEXPECT_EQ(mb2_parse(len), 1);
        KEXPECT_EQ(boot_info.mmap_count, 0);
    }
    /* a memory map tag reaching past total_size: not one of its entries is read */
    mb2_begin();
    mb2_string(MB2_TAG_CMDLINE, "b=2", 4);
    mb2_mmap(MB2_ENTRY_SIZE, 2);
    KEXPECT_EQ(mb2_parse(8 + 16 + 16 + MB2_ENTRY_SIZE), 1);
    KEXPECT(ktest_streq(boot_info.cmdline, "b=2"));
    KEXPECT_EQ(boot_info.mmap_count, 0);
    /* total_size ends inside a tag header, or before the info header itself */
    mb2_begin();
    mb2_tag(MB2_TAG_END, 8);
    KEXPECT_EQ(mb2_parse(12), 1);
    KEXPECT_EQ(mb2_parse(4), 1);
    /* a command line with no NUL inside its tag: copied up to the tag's end only */
    mb2_begin();
    mb2_string(MB2_TAG_CMDLINE, "abcd", 4);           /* then 4 bytes of padding: poison */
    KEXPECT_EQ(mb2_parse(len), 0);
    KEXPECT(ktest_streq(boot_info.cmdline, "abcd"));
    boot_info = saved;
}

KTEST(kernel_multiboot1_mmap_malformed)
{
    saved = boot_info;
    /* info at buf, memory map at buf + 128: one good entry, then one of size 0 */
    static uint8_t mb1_info[128] __attribute__((aligned(8)));
    uint32_t map = 128;
    for (size_t i = 0; i < sizeof mb1_info; i++)
        mb1_info[i] = 0;
    mb2_begin();                                      /* poison buf; mmap entries go in it */
    put32(map, 20);
    put64(map + 4, 0x100000);
    put64(map + 12, 0x2000);
    put32(map + 20, 1);
    put32(map + 24, 0);                               /* size 0: the old parser looped forever */
    put64(map + 28, 0x300000);
    uint32_t *w = (uint32_t *)mb1_info;
    w[0] = MB1_INFO_MMAP;
    w[MB1_OFF_MMAP_LEN / 4] = 48;
    w[MB1_OFF_MMAP_ADR / 4] = (uint32_t)(uint64_t)(buf + map);
    KEXPECT_EQ((uint64_t)(buf + map) >> 32, 0);
    KEXPECT_EQ(boot_info_parse(MULTIBOOT1_BOOT_MAGIC, (uint64_t)mb1_info), 1);
    KEXPECT_EQ(boot_info.multiboot_version, 1);
    KEXPECT_EQ(boot_info.mmap_count, 1);
    KEXPECT_EQ(boot_info.mmap[0].length, 0x2000);
    /* an entry cut short by mmap_length */
    w[MB1_OFF_MMAP_LEN / 4] = 24 + 10;
    put32(map + 24, 20);
    KEXPECT_EQ(boot_info_parse(MULTIBOOT1_BOOT_MAGIC, (uint64_t)mb1_info), 1);
    KEXPECT_EQ(boot_info.mmap_count, 1);
    /* both entries whole: fine */
    w[MB1_OFF_MMAP_LEN / 4] = 48;
    KEXPECT_EQ(boot_info_parse(MULTIBOOT1_BOOT_MAGIC, (uint64_t)mb1_info), 0);
    KEXPECT_EQ(boot_info.mmap_count, 2);
    boot_info = saved;
}
