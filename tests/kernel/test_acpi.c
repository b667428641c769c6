/* test_acpi.c -- kernel/acpi.c: CPU discovery from the MADT. Synthetic RSDP/RSDT/XSDT/MADT in
 * static buffers (checksums fixed by seal()) check the listing (LAPIC, x2APIC, flags, override,
 * RSDT and XSDT paths) and that every malformed table is rejected, for the right reason, with
 * count 0 and no hang; the Multiboot2 ACPI tags' RSDP capture; and the firmware's own tables
 * (Multiboot1: BIOS area search; Multiboot2: GRUB's tag), which must list the BSP. */
#include "ktest.h"
#include "kernel.h"
#include "cpu.h"

/* Layouts (ACPI 6.5, 5.2.5.3 RSDP, 5.2.6 table header, 5.2.12 MADT). */
#define RSDP_V1_SIZE        20
#define RSDP_V2_SIZE        36
#define RSDP_OFF_CHECKSUM   8
#define RSDP_OFF_REVISION   15
#define RSDP_OFF_RSDT       16
#define RSDP_OFF_LENGTH     20
#define RSDP_OFF_XSDT       24
#define RSDP_OFF_XCHECKSUM  32
#define SDT_HEADER_SIZE     36
#define SDT_OFF_LENGTH      4
#define SDT_OFF_CHECKSUM    9
#define MADT_HEADER_SIZE    44
#define MADT_OFF_LAPIC_ADDR 36
#define MADT_OFF_FLAGS      40
#define MADT_LAPIC          0
#define MADT_IOAPIC         1
#define MADT_LAPIC_NMI      4
#define MADT_LAPIC_ADDR     5
#define MADT_X2APIC         9
#define CPU_ENABLED         1u
#define CPU_ONLINE_CAPABLE  2u
#define LAPIC_DEFAULT       0xFEE00000u
#define MSR_APIC_BASE       0x1B
#define APIC_BASE_MASK      0x000FFFFFFFFFF000ull   /* IA32_APIC_BASE bits 12..51 */
#define MB2_TAG_END         0
#define MB2_TAG_ACPI_OLD    14
#define MB2_TAG_ACPI_NEW    15
#define ROOT_ENTRIES        2          /* every synthetic root table: FACP, then the MADT */
#define MADT_BUF            1024

/* The synthetic firmware. Kernel image addresses: below 4 GiB, inside the identity map. */
static uint8_t rsdp[RSDP_V2_SIZE] __attribute__((aligned(16)));
static uint8_t rsdt[SDT_HEADER_SIZE + 4 * ROOT_ENTRIES];
static uint8_t xsdt[SDT_HEADER_SIZE + 8 * ROOT_ENTRIES];
static uint8_t facp[SDT_HEADER_SIZE];
static uint8_t madt[MADT_BUF];
static uint32_t madt_len;

static void put8(uint8_t *t, uint32_t off, uint8_t v)   { t[off] = v; }
static void put16(uint8_t *t, uint32_t off, uint16_t v) { put8(t, off, (uint8_t)v); put8(t, off + 1, (uint8_t)(v >> 8)); }
static void put32(uint8_t *t, uint32_t off, uint32_t v) { put16(t, off, (uint16_t)v); put16(t, off + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *t, uint32_t off, uint64_t v) { put32(t, off, (uint32_t)v); put32(t, off + 4, (uint32_t)(v >> 32)); }

static uint32_t addr32(const void *p) { return (uint32_t)(uintptr_t)p; }

/* Set the checksum byte at off so that the n bytes at t sum to 0. */
static void seal_n(uint8_t *t, uint32_t n, uint32_t off)
{
    uint8_t sum = 0;
    t[off] = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += t[i];
    t[off] = (uint8_t)-sum;
}

/* Seal a table over the length in its header (at most size bytes: the buffer). */
static void seal(uint8_t *t, uint32_t size)
{
    uint32_t len = t[SDT_OFF_LENGTH] | t[SDT_OFF_LENGTH + 1] << 8 | t[SDT_OFF_LENGTH + 2] << 16 |
                   (uint32_t)t[SDT_OFF_LENGTH + 3] << 24;
    seal_n(t, len < size ? len : size, SDT_OFF_CHECKSUM);
}

/* A table header: signature, length, revision 1, OEM fields. */
static void sdt_header(uint8_t *t, const char *sig, uint32_t len)
{
    for (uint32_t i = 0; i < SDT_HEADER_SIZE; i++)
        t[i] = 0;
    for (int i = 0; i < 4; i++)
        t[i] = (uint8_t)sig[i];
    put32(t, SDT_OFF_LENGTH, len);
    put8(t, 8, 1);
    for (int i = 0; i < 6; i++)
        t[10 + i] = (uint8_t)"KTEST "[i];
}

/* ---- MADT builder: begin, entries, end (sets the length, seals) ---------------------------- */

static void madt_begin(uint32_t lapic_addr)
{
    for (uint32_t i = 0; i < MADT_BUF; i++)
        madt[i] = 0;
    sdt_header(madt, "APIC", MADT_HEADER_SIZE);
    put32(madt, MADT_OFF_LAPIC_ADDR, lapic_addr);
    put32(madt, MADT_OFF_FLAGS, 1);           /* PCAT_COMPAT */
    madt_len = MADT_HEADER_SIZE;
}

/* Append an entry of type and length len (zero filled); returns its offset. */
static uint32_t madt_raw(uint8_t type, uint8_t len)
{
    uint32_t off = madt_len;
    put8(madt, off, type);
    put8(madt, off + 1, len);
    madt_len += len < 2 ? 2 : len;
    return off;
}

static void madt_lapic(uint8_t uid, uint8_t id, uint32_t flags)
{
    uint32_t off = madt_raw(MADT_LAPIC, 8);
    put8(madt, off + 2, uid);
    put8(madt, off + 3, id);
    put32(madt, off + 4, flags);
}

static void madt_x2apic(uint32_t id, uint32_t flags, uint32_t uid)
{
    uint32_t off = madt_raw(MADT_X2APIC, 16);
    put32(madt, off + 4, id);
    put32(madt, off + 8, flags);
    put32(madt, off + 12, uid);
}

static void madt_override(uint64_t addr)
{
    put64(madt, madt_raw(MADT_LAPIC_ADDR, 12) + 4, addr);
}

static void madt_end(void)
{
    put32(madt, SDT_OFF_LENGTH, madt_len);
    seal(madt, MADT_BUF);
}

/* ---- the rest: FACP, RSDT and XSDT (both listing FACP, MADT), RSDP of revision rev --------- */

static void rsdp_seal(void)
{
    seal_n(rsdp, RSDP_V1_SIZE, RSDP_OFF_CHECKSUM);
    seal_n(rsdp, RSDP_V2_SIZE, RSDP_OFF_XCHECKSUM);
}

/* RSDT entry i (the MADT is entry 1) := addr; reseal. */
static void rsdt_entry(unsigned i, uint32_t addr)
{
    put32(rsdt, SDT_HEADER_SIZE + 4 * i, addr);
    seal(rsdt, sizeof rsdt);
}

static void xsdt_entry(unsigned i, uint64_t addr)
{
    put64(xsdt, SDT_HEADER_SIZE + 8 * i, addr);
    seal(xsdt, sizeof xsdt);
}

/* Revision 0: RSDP -> RSDT; revision 2: RSDP -> XSDT (and RSDT). Call after madt_end. */
static void fw_build(uint8_t rev)
{
    sdt_header(facp, "FACP", SDT_HEADER_SIZE);
    seal(facp, sizeof facp);
    sdt_header(rsdt, "RSDT", sizeof rsdt);
    rsdt_entry(0, addr32(facp));
    rsdt_entry(1, addr32(madt));
    sdt_header(xsdt, "XSDT", sizeof xsdt);
    xsdt_entry(0, addr32(facp));
    xsdt_entry(1, addr32(madt));
    for (uint32_t i = 0; i < RSDP_V2_SIZE; i++)
        rsdp[i] = 0;
    for (int i = 0; i < 8; i++)
        rsdp[i] = (uint8_t)"RSD PTR "[i];
    for (int i = 0; i < 6; i++)
        rsdp[9 + i] = (uint8_t)"KTEST "[i];
    put8(rsdp, RSDP_OFF_REVISION, rev);
    put32(rsdp, RSDP_OFF_RSDT, addr32(rsdt));
    if (rev >= 2) {
        put32(rsdp, RSDP_OFF_LENGTH, RSDP_V2_SIZE);
        put64(rsdp, RSDP_OFF_XSDT, addr32(xsdt));
    }
    rsdp_seal();
}

/* The MADT of the well-formed tests' base case: ids 0, 2, 4, 6 enabled, 1 disabled. */
static void madt_four_cpus(void)
{
    madt_begin(LAPIC_DEFAULT);
    madt_lapic(0, 0, CPU_ENABLED);
    madt_lapic(1, 2, CPU_ENABLED);
    madt_lapic(2, 1, 0);
    madt_lapic(3, 4, CPU_ENABLED);
    madt_lapic(4, 6, CPU_ENABLED);
    madt_end();
}

static int contains(const char *s, const char *sub)
{
    for (; *s; s++) {
        size_t i = 0;
        while (sub[i] && s[i] == sub[i])
            i++;
        if (!sub[i])
            return 1;
    }
    return !*sub;
}

/* acpi_parse_rsdp on the synthetic tables must fail with count 0 (out pre-filled with junk)
 * and an acpi_last_error naming `why`. */
#define EXPECT_REJECTED(why)                                                               \
    do {                                                                                   \
        struct acpi_cpus c_ = { .count = 99, .lapic_base = 1 };                            \
        KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c_), -1);                                        \
        KEXPECT_EQ(c_.count, 0);                                                           \
        KEXPECT_EQ(c_.lapic_base, 0);                                                      \
        KEXPECT_MSG(contains(acpi_last_error, why), "error \"%s\" should name \"%s\"",      \
                    acpi_last_error, why);                                                 \
    } while (0)

/* ---- well-formed tables ------------------------------------------------------------------- */

KTEST(acpi_madt_lists_enabled_lapics)
{
    madt_four_cpus();
    fw_build(0);
    struct acpi_cpus c;
    KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c), 0);
    KEXPECT_EQ(c.count, 4);
    static const uint32_t want[] = { 0, 2, 4, 6 };
    for (unsigned i = 0; i < 4; i++)
        KEXPECT_EQ(c.apic_id[i], want[i]);
    KEXPECT_EQ(c.lapic_base, LAPIC_DEFAULT);
    KEXPECT(ktest_streq(c.source, "RSDT"));
    KEXPECT_EQ(acpi_last_error[0], '\0');
}

KTEST(acpi_madt_x2apic_entries)
{
    madt_begin(LAPIC_DEFAULT);
    madt_lapic(0, 0, CPU_ENABLED);
    madt_x2apic(0x100, CPU_ENABLED, 1);
    madt_x2apic(0x101, CPU_ENABLED, 2);
    madt_x2apic(0x102, 0, 3);                          /* disabled */
    madt_x2apic(0xFFFF, CPU_ENABLED, 4);
    madt_end();
    fw_build(2);
    struct acpi_cpus c;
    KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c), 0);
    KEXPECT_EQ(c.count, 4);
    KEXPECT_EQ(c.apic_id[0], 0);
    KEXPECT_EQ(c.apic_id[1], 0x100);
    KEXPECT_EQ(c.apic_id[2], 0x101);
    KEXPECT_EQ(c.apic_id[3], 0xFFFF);
}

/* Flags bit 1 (online capable) counts, other bits do not; ids are listed once; the xAPIC
 * broadcast id and entry types that are not processors are skipped. */
KTEST(acpi_madt_flags_duplicates_other_entries)
{
    madt_begin(LAPIC_DEFAULT);
    madt_raw(MADT_IOAPIC, 12);
    madt_lapic(0, 3, CPU_ENABLED);
    madt_lapic(1, 5, CPU_ONLINE_CAPABLE);
    madt_lapic(2, 7, 1u << 2);                         /* neither bit: not listed */
    madt_lapic(3, 0xFF, CPU_ENABLED);                  /* broadcast id: not a CPU */
    madt_x2apic(3, CPU_ENABLED, 0);                    /* the same CPU as LAPIC id 3 */
    madt_x2apic(9, CPU_ONLINE_CAPABLE, 1);
    madt_raw(MADT_LAPIC_NMI, 6);
    madt_raw(0x7F, 3);                                 /* unknown type: stepped over */
    madt_end();
    fw_build(0);
    struct acpi_cpus c;
    KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c), 0);
    KEXPECT_EQ(c.count, 3);
    KEXPECT_EQ(c.apic_id[0], 3);
    KEXPECT_EQ(c.apic_id[1], 5);
    KEXPECT_EQ(c.apic_id[2], 9);
}

/* Revision 0 uses the RSDT; revision 2 the XSDT (a broken RSDT beside it does not matter);
 * revision 2 with no XSDT address falls back to the RSDT. */
KTEST(acpi_rsdt_and_xsdt_paths)
{
    struct acpi_cpus c;
    madt_four_cpus();
    fw_build(0);
    KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c), 0);
    KEXPECT(ktest_streq(c.source, "RSDT"));
    KEXPECT_EQ(c.count, 4);

    fw_build(2);
    rsdt[SDT_OFF_CHECKSUM] ^= 1;
    KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c), 0);
    KEXPECT(ktest_streq(c.source, "XSDT"));
    KEXPECT_EQ(c.count, 4);

    fw_build(2);
    put64(rsdp, RSDP_OFF_XSDT, 0);
    rsdp_seal();
    xsdt[SDT_OFF_CHECKSUM] ^= 1;
    KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c), 0);
    KEXPECT(ktest_streq(c.source, "RSDT"));
    KEXPECT_EQ(c.count, 4);
}

KTEST(acpi_madt_lapic_address_override)
{
    madt_begin(LAPIC_DEFAULT);
    madt_lapic(0, 0, CPU_ENABLED);
    madt_override(0x12345678000ull);
    madt_lapic(1, 1, CPU_ENABLED);
    madt_end();
    fw_build(2);
    struct acpi_cpus c;
    KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c), 0);
    KEXPECT_EQ(c.lapic_base, 0x12345678000ull);
    KEXPECT_EQ(c.count, 2);
}

/* More enabled CPUs than ACPI_MAX_CPUS: the first ACPI_MAX_CPUS are listed, still success. */
KTEST(acpi_madt_more_cpus_than_max)
{
    madt_begin(LAPIC_DEFAULT);
    for (unsigned i = 0; i < ACPI_MAX_CPUS + 6; i++)
        madt_lapic((uint8_t)i, (uint8_t)i, CPU_ENABLED);
    madt_end();
    fw_build(0);
    struct acpi_cpus c;
    KEXPECT_EQ(acpi_parse_rsdp(rsdp, &c), 0);
    KEXPECT_EQ(c.count, ACPI_MAX_CPUS);
    KEXPECT_EQ(c.apic_id[ACPI_MAX_CPUS - 1], ACPI_MAX_CPUS - 1);
}

/* ---- malformed tables: -1, count 0, the right reason, no hang ------------------------------ */

KTEST(acpi_rejects_bad_rsdp)
{
    madt_four_cpus();
    fw_build(0);
    rsdp[RSDP_OFF_CHECKSUM] ^= 0x40;
    EXPECT_REJECTED("RSDP checksum");

    fw_build(0);
    rsdp[0] = 'X';
    rsdp_seal();
    EXPECT_REJECTED("RSDP signature");

    fw_build(2);
    rsdp[RSDP_OFF_XCHECKSUM] ^= 1;                     /* first 20 bytes still fine */
    EXPECT_REJECTED("RSDP extended checksum");

    fw_build(2);
    put32(rsdp, RSDP_OFF_LENGTH, RSDP_V1_SIZE);
    rsdp_seal();
    EXPECT_REJECTED("RSDP length");
}

KTEST(acpi_rejects_bad_madt_checksum)
{
    madt_four_cpus();
    fw_build(0);
    madt[MADT_HEADER_SIZE + 3] ^= 0x10;                /* an APIC id: checksum now wrong */
    EXPECT_REJECTED("MADT checksum");
}

KTEST(acpi_rejects_bad_madt_length)
{
    static const uint32_t bad[] = { 0, SDT_HEADER_SIZE, MADT_HEADER_SIZE - 1,
                                    ACPI_TABLE_MAX + 1, 0x7FFFFFFF, 0xFFFFFFFF };
    static const char *const why[] = { "shorter", "shorter", "shorter", "limit", "limit",
                                       "limit" };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        madt_four_cpus();
        put32(madt, SDT_OFF_LENGTH, bad[i]);
        seal(madt, MADT_BUF);                          /* a right checksum where it can be */
        fw_build(i % 2 ? 2 : 0);
        EXPECT_REJECTED(why[i]);
    }
    /* the root tables too */
    madt_four_cpus();
    fw_build(0);
    put32(rsdt, SDT_OFF_LENGTH, SDT_HEADER_SIZE - 1);
    seal(rsdt, sizeof rsdt);
    EXPECT_REJECTED("RSDT length");
    fw_build(2);
    put32(xsdt, SDT_OFF_LENGTH, 0xFFFFFFF0);
    EXPECT_REJECTED("XSDT length");
}

KTEST(acpi_rejects_madt_entry_length_0_or_1)
{
    for (uint8_t len = 0; len <= 1; len++) {
        madt_begin(LAPIC_DEFAULT);
        madt_lapic(0, 0, CPU_ENABLED);
        madt_raw(MADT_LAPIC_NMI, len);                 /* takes 2 bytes, says 0 or 1 */
        madt_lapic(1, 1, CPU_ENABLED);
        madt_end();
        fw_build(0);
        EXPECT_REJECTED("has length");
    }
}

KTEST(acpi_rejects_madt_entry_past_table_end)
{
    /* the last entry says 8 bytes, the table ends 6 bytes after its start */
    madt_four_cpus();
    put32(madt, SDT_OFF_LENGTH, madt_len - 2);
    seal(madt, MADT_BUF);
    fw_build(0);
    EXPECT_REJECTED("runs past the table end");

    /* one byte left after the last entry: not even a type and length */
    madt_four_cpus();
    put32(madt, SDT_OFF_LENGTH, madt_len + 1);
    seal(madt, MADT_BUF);
    fw_build(0);
    EXPECT_REJECTED("cut off");

    /* a processor entry shorter than its type's layout */
    madt_begin(LAPIC_DEFAULT);
    madt_lapic(0, 0, CPU_ENABLED);
    madt_raw(MADT_X2APIC, 8);
    madt_end();
    fw_build(2);
    EXPECT_REJECTED("below its 16");
}

KTEST(acpi_rejects_addresses_outside_identity_map)
{
    madt_four_cpus();
    fw_build(2);
    xsdt_entry(1, IDENTITY_MAP_END + addr32(madt));    /* the MADT above 4 GiB */
    EXPECT_REJECTED("XSDT entry 1");

    fw_build(2);
    xsdt_entry(1, IDENTITY_MAP_END - 16);              /* header would cross 4 GiB */
    EXPECT_REJECTED("outside the identity map");

    fw_build(0);
    rsdt_entry(0, 0);                                  /* a null table address */
    EXPECT_REJECTED("RSDT entry 0");

    fw_build(2);
    put64(rsdp, RSDP_OFF_XSDT, 1ull << 40);            /* the XSDT itself */
    rsdp_seal();
    EXPECT_REJECTED("XSDT address");

    fw_build(0);
    put32(rsdp, RSDP_OFF_RSDT, addr32(facp));          /* not an RSDT */
    rsdp_seal();
    EXPECT_REJECTED("signature \"FACP\"");
}

KTEST(acpi_rejects_no_madt_or_no_cpu)
{
    madt_four_cpus();
    fw_build(0);
    rsdt_entry(1, addr32(facp));                       /* FACP twice, no APIC */
    EXPECT_REJECTED("no MADT");

    fw_build(2);
    put32(xsdt, SDT_OFF_LENGTH, SDT_HEADER_SIZE);      /* no entries at all */
    seal(xsdt, sizeof xsdt);
    EXPECT_REJECTED("no MADT");

    madt_begin(LAPIC_DEFAULT);
    madt_lapic(0, 0, 0);
    madt_x2apic(0x100, 0, 1);
    madt_end();
    fw_build(0);
    EXPECT_REJECTED("no enabled processor");
}

/* ---- the boot paths ------------------------------------------------------------------------ */

static uint64_t mb2_buf[16];

/* Append a Multiboot2 ACPI tag with payload the first n bytes of rsdp; returns the new length. */
static uint32_t mb2_acpi_tag(uint32_t off, uint32_t type, uint32_t n)
{
    uint8_t *b = (uint8_t *)mb2_buf;
    put32(b, off, type);
    put32(b, off + 4, 8 + n);
    for (uint32_t i = 0; i < n; i++)
        b[off + 8 + i] = i < RSDP_V2_SIZE ? rsdp[i] : 0xEE;
    return off + ((8 + n + 7) & ~7u);
}

/* Parse an MB2 info of an "old" tag (20 bytes), a "new" one (new_bytes) and an end tag, in
 * the order old_first says. */
static int mb2_parse_acpi(int old_first, uint32_t new_bytes)
{
    uint8_t *b = (uint8_t *)mb2_buf;
    uint32_t off = 8;
    if (old_first)
        off = mb2_acpi_tag(off, MB2_TAG_ACPI_OLD, RSDP_V1_SIZE);
    off = mb2_acpi_tag(off, MB2_TAG_ACPI_NEW, new_bytes);
    if (!old_first)
        off = mb2_acpi_tag(off, MB2_TAG_ACPI_OLD, RSDP_V1_SIZE);
    put32(b, off, MB2_TAG_END);
    put32(b, off + 4, 8);
    put32(b, 0, off + 8);
    put32(b, 4, 0);
    return boot_info_parse(MULTIBOOT2_BOOT_MAGIC, (uint64_t)(uintptr_t)b);
}

/* boot_info keeps the "new" tag's RSDP whichever order the tags come in, bounded by 36 bytes. */
KTEST(acpi_multiboot2_tags_copy_rsdp)
{
    static struct boot_info saved;
    saved = boot_info;
    madt_four_cpus();
    fw_build(2);
    for (int old_first = 0; old_first <= 1; old_first++) {
        KEXPECT_EQ(mb2_parse_acpi(old_first, RSDP_V2_SIZE + 8), 0);
        KEXPECT_EQ(boot_info.rsdp_size, RSDP_V2_SIZE);
        KEXPECT_EQ(boot_info.rsdp[RSDP_OFF_REVISION], 2);
        KEXPECT_EQ(boot_info.rsdp[RSDP_OFF_XCHECKSUM], rsdp[RSDP_OFF_XCHECKSUM]);
        struct acpi_cpus c;
        KEXPECT_EQ(acpi_find_cpus(&c), 0);             /* the copy leads to the fake tables */
        KEXPECT_EQ(c.count, 4);
        KEXPECT(ktest_streq(c.source, "XSDT"));
    }
    /* a "new" tag too short for a revision 2 RSDP: copied as is, rejected by acpi */
    KEXPECT_EQ(mb2_parse_acpi(0, RSDP_V1_SIZE), 0);
    KEXPECT_EQ(boot_info.rsdp_size, RSDP_V1_SIZE);
    struct acpi_cpus c = { .count = 7 };
    KEXPECT_EQ(acpi_find_cpus(&c), -1);
    KEXPECT_EQ(c.count, 0);
    KEXPECT(contains(acpi_last_error, "shorter than 36"));
    boot_info = saved;
}

static uint32_t bsp_apic_id(void)
{
    uint32_t eax = 1, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    return ebx >> 24;
}

/* The firmware's tables (Multiboot2: GRUB's tag copy; Multiboot1: the BIOS area search). */
KTEST(acpi_firmware_tables_list_bsp)
{
    struct acpi_cpus c;
    KEXPECT_EQ(acpi_find_cpus(&c), 0);
    KEXPECT(c.count >= 1);
    KEXPECT(ktest_streq(c.source, "RSDT") || ktest_streq(c.source, "XSDT"));
    uint32_t bsp = bsp_apic_id();
    int found = 0;
    for (unsigned i = 0; i < c.count; i++)
        found |= c.apic_id[i] == bsp;
    KEXPECT_MSG(found, "BSP APIC id %u not among the %u listed", bsp, c.count);
    KEXPECT_EQ(c.lapic_base, rdmsr64(MSR_APIC_BASE) & APIC_BASE_MASK);
    char ids[8 * ACPI_MAX_CPUS] = "";
    int n = 0;
    for (unsigned i = 0; i < c.count && n < (int)sizeof ids; i++)
        n += ksnprintf(ids + n, sizeof ids - n, "%s%u", i ? "," : "", c.apic_id[i]);
    ktest_note("%u CPUs (APIC ids %s) via %s from %s, local APIC at 0x%lx, BSP %u", c.count,
               ids, c.source ? c.source : "?",
               boot_info.rsdp_size ? "the Multiboot2 tag" : "the BIOS area search",
               c.lapic_base, bsp);
}
