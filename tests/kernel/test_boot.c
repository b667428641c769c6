/* test_boot.c -- platform self-tests: the boot path (Multiboot info, long mode, stack
 * alignment), kprintf/ksnprintf formatting, the serial port and the ktest=PATTERN glob.
 * They run under both loaders (Multiboot1 via qemu -kernel, Multiboot2 via GRUB). */
#include "ktest.h"
#include "kernel.h"
#include "cpu.h"

#define MiB (1ull << 20)

static int overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

/* Index of the usable memory map entry holding [start, end), or -1. */
static int usable_entry_holding(uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < boot_info.mmap_count; i++) {
        const struct boot_mem_range *r = &boot_info.mmap[i];
        if (r->type == BOOT_MEM_USABLE && r->base <= start && end <= r->base + r->length)
            return (int)i;
    }
    return -1;
}

KTEST(boot_multiboot_info)
{
    KEXPECT(boot_info.multiboot_version == 1 || boot_info.multiboot_version == 2);
    KEXPECT(boot_info.loader_name[0] != '\0');
    KEXPECT(boot_info.info_count >= 1);
    KEXPECT_NE(boot_info.mem_upper_kb, 0);
    ktest_note("Multiboot%d from \"%s\"", boot_info.multiboot_version, boot_info.loader_name);
}

KTEST(boot_memory_map_sane)
{
    KEXPECT(boot_info.mmap_count >= 2);
    KEXPECT(boot_info.mmap_count < BOOT_MMAP_MAX);
    uint64_t usable = 0;
    for (unsigned i = 0; i < boot_info.mmap_count; i++) {
        const struct boot_mem_range *r = &boot_info.mmap[i];
        KEXPECT_NE(r->length, 0);
        KEXPECT(r->base + r->length > r->base);          /* no wrap */
        if (r->type != BOOT_MEM_USABLE)
            continue;
        usable += r->length;
        for (unsigned j = i + 1; j < boot_info.mmap_count; j++) {
            const struct boot_mem_range *o = &boot_info.mmap[j];
            if (o->type == BOOT_MEM_USABLE)
                KEXPECT(!overlaps(r->base, r->base + r->length, o->base, o->base + o->length));
        }
    }
    /* QEMU runs us with -m 256M: most of it must be reported usable. */
    KEXPECT(usable >= 200 * MiB);
    KEXPECT(usable <= 256 * MiB);
}

KTEST(boot_static_heap_in_usable_ram)
{
    uint64_t hs = (uint64_t)__heap_start, he = (uint64_t)__heap_end;
    KEXPECT_EQ(hs % 4096, 0);
    KEXPECT_EQ(he % 4096, 0);
    KEXPECT(he > hs);
    KEXPECT(he <= (uint64_t)_kernel_end);
    KEXPECT(usable_entry_holding(hs, he) >= 0);
    KEXPECT(usable_entry_holding((uint64_t)_kernel_start, (uint64_t)_image_end) >= 0);
}

/* Never written: the loader must have zeroed it with the rest of .bss (Multiboot1's
 * bss_end_addr, Multiboot2's ELF segment memsz). */
static volatile uint64_t bss_probe[512];

KTEST(boot_bss_zeroed)
{
    uint64_t nonzero = 0;
    for (size_t i = 0; i < sizeof bss_probe / sizeof bss_probe[0]; i++)
        nonzero += bss_probe[i] != 0;
    KEXPECT_EQ(nonzero, 0);
}

KTEST(boot_info_outside_kernel_image)
{
    for (unsigned i = 0; i < boot_info.info_count; i++) {
        KEXPECT(boot_info.info[i].end > boot_info.info[i].start);
        KEXPECT(!overlaps(boot_info.info[i].start, boot_info.info[i].end,
                          (uint64_t)_kernel_start, (uint64_t)_image_end));
        KEXPECT(!overlaps(boot_info.info[i].start, boot_info.info[i].end,
                          (uint64_t)__heap_start, (uint64_t)__heap_end));
    }
}

KTEST(boot_free_ranges_exclude_kernel_and_info)
{
    struct boot_mem_range fr[16];
    size_t n = boot_free_ranges(fr, 16);
    KEXPECT(n >= 1);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = fr[i].base, b = fr[i].base + fr[i].length;
        total += fr[i].length;
        KEXPECT(b > a);
        KEXPECT_EQ(a % 4096, 0);
        KEXPECT_EQ(b % 4096, 0);
        KEXPECT(a >= MiB);
        KEXPECT(b <= IDENTITY_MAP_END);
        KEXPECT(usable_entry_holding(a, b) >= 0);
        KEXPECT(!overlaps(a, b, (uint64_t)_kernel_start, (uint64_t)_image_end));
        KEXPECT(!overlaps(a, b, (uint64_t)__heap_start, (uint64_t)__heap_end));
        for (unsigned j = 0; j < boot_info.info_count; j++)
            KEXPECT(!overlaps(a, b, boot_info.info[j].start, boot_info.info[j].end));
        for (size_t j = 0; j < i; j++)
            KEXPECT(!overlaps(a, b, fr[j].base, fr[j].base + fr[j].length));
    }
    KEXPECT(total >= 100 * MiB);   /* 256 MiB guest minus a ~17 MiB kernel */
}

KTEST(cpu_long_mode_active)
{
    uint64_t efer = read_efer();
    KEXPECT(efer & EFER_LMA);
    KEXPECT(efer & EFER_LME);
    KEXPECT(read_cr0() & CR0_PG);
    KEXPECT(read_cr4() & CR4_PAE);
    KEXPECT_EQ(read_cs() & 3, 0);                        /* ring 0 */
}

KTEST(cpu_stack_aligned_at_kmain)
{
    KEXPECT_NE(boot_kmain_rsp, 0);
    KEXPECT_EQ(boot_kmain_rsp % 16, 0);
    KEXPECT_EQ(kmain_frame_rsp, boot_kmain_rsp);
    /* And the runner keeps it so: our own frame is aligned the same way. */
    KEXPECT_EQ(((uint64_t)__builtin_frame_address(0) + 16) % 16, 0);
}

#define EXPECT_FORMAT(want, ...)                                                          \
    do {                                                                                  \
        char buf_[128];                                                                   \
        int n_ = ksnprintf(buf_, sizeof buf_, __VA_ARGS__);                               \
        ktest_check(ktest_streq(buf_, want), __FILE__, __LINE__,                                \
                    "ksnprintf(%s) = \"%s\", want \"%s\"", #__VA_ARGS__, buf_, want);     \
        KEXPECT_EQ(n_, sizeof(want) - 1);                                                 \
    } while (0)

KTEST(kprintf_formats)
{
    EXPECT_FORMAT("plain", "plain");
    EXPECT_FORMAT("s=abc c=x %", "s=%s c=%c %%", "abc", 'x');
    EXPECT_FORMAT("-42 42 7", "%d %i %u", -42, 42, 7u);
    EXPECT_FORMAT("-2147483648 4294967295", "%d %u", (int)0x80000000u, 0xFFFFFFFFu);
    EXPECT_FORMAT("ff DEAD", "%x %X", 255u, 0xDEADu);
    EXPECT_FORMAT("0x1000", "%p", (void *)0x1000);
    EXPECT_FORMAT("18446744073709551615 ffffffffffffffff", "%zu %zx", (size_t)-1, (size_t)-1);
    EXPECT_FORMAT("-9000000000 9000000000 218711a00", "%ld %lu %lx", -9000000000l,
                  9000000000ul, 9000000000ul);
    EXPECT_FORMAT("[   42][42   ][00042][-0042]", "[%5d][%-5d][%05d][%05d]", 42, 42, 42, -42);
    EXPECT_FORMAT("[0000beef][  ab]", "[%08x][%4s]", 0xBEEFu, "ab");
    EXPECT_FORMAT("0 0", "%d %x", 0, 0u);
    const char *volatile null_string = NULL;             /* hidden from -Wformat */
    EXPECT_FORMAT("(null)", "%s", null_string);
}

KTEST(ksnprintf_truncates)
{
    char buf[8] = "XXXXXXX";
    KEXPECT_EQ(ksnprintf(buf, 4, "%s", "abcdef"), 6);
    KEXPECT(ktest_streq(buf, "abc"));
    KEXPECT_EQ(ksnprintf(buf, 0, "%d", 12345), 5);
    KEXPECT(ktest_streq(buf, "abc"));                          /* size 0: nothing written */
    KEXPECT_EQ(ksnprintf(buf, 1, "x"), 1);
    KEXPECT(ktest_streq(buf, ""));
}

KTEST(serial_loopback)
{
    KEXPECT(serial_loopback_test(0x5A));
    KEXPECT(serial_loopback_test(0xA5));
    KEXPECT_EQ(kprintf("%s", ""), 0);                   /* console still works afterwards */
}

KTEST(ktest_pattern_glob)
{
    KEXPECT(ktest_match("boot_*", "boot_memory_map_sane"));
    KEXPECT(ktest_match("*map*", "boot_memory_map_sane"));
    KEXPECT(ktest_match("serial_loopbac?", "serial_loopback"));
    KEXPECT(ktest_match("exact", "exact"));
    KEXPECT(ktest_match("a,b", "a"));                     /* first of a list */
    KEXPECT(!ktest_match("boot_*", "cpu_long_mode_active"));
    KEXPECT(!ktest_match("exact", "exactly"));
    KEXPECT(!ktest_match("", "x"));
}
