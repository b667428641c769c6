/* acpi.c -- CPU discovery for SMP bring-up: finds the ACPI RSDP (boot_info's Multiboot2 copy,
 * else the BIOS areas), follows the XSDT or RSDT to the MADT and lists the enabled local APICs
 * and x2APICs. Every table is checksummed, every address and length bounded; anything malformed
 * is reported ("acpi: ...; going on with one CPU") and the caller goes on with one CPU.
 * Interface: kernel.h, section ACPI; tests: tests/kernel/test_acpi.c. */
#include "kernel.h"

/* RSDP (ACPI 6.5, 5.2.5.3): offsets of its fields. */
#define RSDP_SIGNATURE         "RSD PTR "
#define RSDP_SIGNATURE_LEN     8
#define RSDP_OFF_REVISION      15
#define RSDP_OFF_RSDT          16       /* uint32_t physical address */
#define RSDP_OFF_LENGTH        20       /* uint32_t, revision >= 2 only */
#define RSDP_OFF_XSDT          24       /* uint64_t physical address, revision >= 2 only */
#define RSDP_V1_SIZE           20       /* what the (first) checksum covers */
#define RSDP_V2_SIZE           36       /* what the extended checksum covers */
#define RSDP_REV_XSDT          2        /* first revision with length, XSDT, extended checksum */
#define RSDP_ALIGN             16       /* the RSDP lies on a 16-byte boundary in BIOS memory */

/* BIOS areas searched for the RSDP (ACPI 6.5, 5.2.5.1). */
#define BDA_EBDA_SEGMENT       0x40Eu   /* uint16_t real-mode segment of the EBDA */
#define EBDA_SEARCH_SIZE       1024u    /* its first KiB */
#define BIOS_AREA_START        0xE0000u
#define BIOS_AREA_END          0x100000u
#define REAL_MODE_END          0x100000u

/* Header of every system description table (ACPI 6.5, 5.2.6). */
#define SDT_SIGNATURE_LEN      4
#define SDT_OFF_LENGTH         4        /* uint32_t, header included */
#define SDT_HEADER_SIZE        36
#define RSDT_ENTRY_SIZE        4        /* RSDT: 32-bit table addresses after the header */
#define XSDT_ENTRY_SIZE        8        /* XSDT: 64-bit ones */

/* MADT (ACPI 6.5, 5.2.12): header, then entries of (type, length, ...). */
#define MADT_SIGNATURE         "APIC"
#define MADT_OFF_LAPIC_ADDR    36       /* uint32_t local APIC address */
#define MADT_HEADER_SIZE       44       /* + local APIC address, flags */
#define MADT_ENTRY_HEADER      2        /* type, length */
#define MADT_TYPE_LAPIC        0        /* uid, apic_id, flags (uint32_t) */
#define MADT_LAPIC_SIZE        8
#define MADT_LAPIC_OFF_ID      3
#define MADT_LAPIC_OFF_FLAGS   4
#define MADT_TYPE_LAPIC_ADDR   5        /* reserved (2), address (uint64_t) */
#define MADT_LAPIC_ADDR_SIZE   12
#define MADT_LAPIC_ADDR_OFF    4
#define MADT_TYPE_X2APIC       9        /* reserved (2), x2apic_id, flags, uid (uint32_t each) */
#define MADT_X2APIC_SIZE       16
#define MADT_X2APIC_OFF_ID     4
#define MADT_X2APIC_OFF_FLAGS  8
#define MADT_CPU_ENABLED       (1u << 0)
#define MADT_CPU_ONLINE_CAPABLE (1u << 1)
#define XAPIC_BROADCAST_ID     0xFFu    /* not a CPU's id */

char acpi_last_error[128];

/* Little-endian loads at any alignment (tables and their fields need not be aligned). */
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* 1 if the n bytes at p equal the n characters of s. */
static int bytes_eq(const uint8_t *p, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)s[i])
            return 0;
    return 1;
}

/* The 8-bit sum of n bytes: 0 for a valid ACPI structure. */
static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

/* Record what is wrong in acpi_last_error; returns -1 (the caller's result). */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvsnprintf(acpi_last_error, sizeof acpi_last_error, fmt, ap);
    va_end(ap);
    return -1;
}

/* The header of the table at physical address addr, if the whole header lies inside the
 * identity map and addr is not 0; else NULL (the caller reports it). */
static const uint8_t *header_at(uint64_t addr)
{
    if (addr == 0 || addr >= IDENTITY_MAP_END || IDENTITY_MAP_END - addr < SDT_HEADER_SIZE)
        return NULL;
    return (const uint8_t *)(uintptr_t)addr;
}

/* Check the table t (its header known to be mapped): length in [min_len, ACPI_TABLE_MAX], the
 * whole table inside the identity map, bytes summing to 0. 0 with *len set, or -1 after
 * fail(); what names the table in the message. */
static int check_table(const uint8_t *t, const char *what, uint32_t min_len, uint32_t *len)
{
    uint32_t n = rd32(t + SDT_OFF_LENGTH);
    uint64_t addr = (uint64_t)(uintptr_t)t;
    if (n < min_len)
        return fail("%s length %u is shorter than its header (%u)", what, n, min_len);
    if (n > ACPI_TABLE_MAX)
        return fail("%s length %u is over the limit of %u bytes", what, n, ACPI_TABLE_MAX);
    if (IDENTITY_MAP_END - addr < n)
        return fail("%s at 0x%lx (length %u) reaches past the identity map", what, addr, n);
    if (checksum(t, n) != 0)
        return fail("%s checksum is wrong (bytes sum to 0x%x)", what, checksum(t, n));
    *len = n;
    return 0;
}

/* Add APIC id to out unless it is listed already; past ACPI_MAX_CPUS count it in *dropped. */
static void add_cpu(struct acpi_cpus *out, uint32_t id, unsigned *dropped)
{
    for (unsigned i = 0; i < out->count; i++)
        if (out->apic_id[i] == id)
            return;
    if (out->count < ACPI_MAX_CPUS)
        out->apic_id[out->count++] = id;
    else
        (*dropped)++;
}

/* One MADT entry e of length elen (>= 2, inside the table) at offset off: a processor it
 * lists enabled goes to out, an address override to out->lapic_base. 0, or -1 after fail()
 * if it is too short for its type. */
static int madt_entry(const uint8_t *e, uint32_t elen, uint32_t off, struct acpi_cpus *out,
                      unsigned *dropped)
{
    static const uint8_t min_size[] = {
        [MADT_TYPE_LAPIC] = MADT_LAPIC_SIZE,
        [MADT_TYPE_LAPIC_ADDR] = MADT_LAPIC_ADDR_SIZE,
        [MADT_TYPE_X2APIC] = MADT_X2APIC_SIZE,
    };
    uint8_t type = e[0];
    if (type < sizeof min_size && elen < min_size[type])
        return fail("MADT entry at offset %u (type %u) has length %u, below its %u", off, type,
                    elen, min_size[type]);
    const uint32_t online = MADT_CPU_ENABLED | MADT_CPU_ONLINE_CAPABLE;
    if (type == MADT_TYPE_LAPIC && (rd32(e + MADT_LAPIC_OFF_FLAGS) & online) &&
        e[MADT_LAPIC_OFF_ID] != XAPIC_BROADCAST_ID)
        add_cpu(out, e[MADT_LAPIC_OFF_ID], dropped);
    else if (type == MADT_TYPE_X2APIC && (rd32(e + MADT_X2APIC_OFF_FLAGS) & online))
        add_cpu(out, rd32(e + MADT_X2APIC_OFF_ID), dropped);
    else if (type == MADT_TYPE_LAPIC_ADDR)
        out->lapic_base = rd64(e + MADT_LAPIC_ADDR_OFF);
    return 0;
}

/* The MADT t, already checked (length len >= MADT_HEADER_SIZE, checksum): the local APIC
 * address, then every entry, each of length >= 2 and inside [t, t + len). 0, or -1 after
 * fail() (a bad entry, or no enabled processor). */
static int parse_madt(const uint8_t *t, uint32_t len, struct acpi_cpus *out)
{
    unsigned dropped = 0;
    out->lapic_base = rd32(t + MADT_OFF_LAPIC_ADDR);
    for (uint32_t off = MADT_HEADER_SIZE; off < len; ) {
        if (len - off < MADT_ENTRY_HEADER)
            return fail("MADT entry at offset %u is cut off by the table end (%u)", off, len);
        uint32_t elen = t[off + 1];
        if (elen < MADT_ENTRY_HEADER)
            return fail("MADT entry at offset %u has length %u", off, elen);
        if (elen > len - off)
            return fail("MADT entry at offset %u (length %u) runs past the table end (%u)", off,
                        elen, len);
        if (madt_entry(t + off, elen, off, out, &dropped) != 0)
            return -1;
        off += elen;                   /* elen >= 2: the loop ends within len / 2 steps */
    }
    if (out->count == 0)
        return fail("MADT lists no enabled processor");
    if (dropped)
        kprintf("acpi: %u more enabled CPUs in the MADT past the first %u; left out\n", dropped,
                ACPI_MAX_CPUS);
    return 0;
}

/* Follow the RSDT (entry_size 4) or XSDT (8) at addr to the first MADT and parse it. 0, or -1
 * after fail(). Only the root table and the MADT are checksummed: of the other tables only the
 * signature is read, each header checked to lie inside the identity map first. */
static int parse_root(uint64_t addr, const char *sig, unsigned entry_size,
                      struct acpi_cpus *out)
{
    const uint8_t *root = header_at(addr);
    if (!root)
        return fail("%s address 0x%lx is null or outside the identity map (0-0x%llx)", sig, addr,
                    IDENTITY_MAP_END - 1);
    if (!bytes_eq(root, sig, SDT_SIGNATURE_LEN)) {
        char found[SDT_SIGNATURE_LEN + 1] = { root[0], root[1], root[2], root[3], '\0' };
        return fail("%s at 0x%lx has signature \"%s\"", sig, addr, found);
    }
    uint32_t len;
    if (check_table(root, sig, SDT_HEADER_SIZE, &len) != 0)
        return -1;
    out->source = sig;
    uint32_t entries = (len - SDT_HEADER_SIZE) / entry_size;
    for (uint32_t i = 0; i < entries; i++) {
        const uint8_t *e = root + SDT_HEADER_SIZE + i * entry_size;
        uint64_t taddr = entry_size == XSDT_ENTRY_SIZE ? rd64(e) : rd32(e);
        const uint8_t *t = header_at(taddr);
        if (!t)
            return fail("%s entry %u: table address 0x%lx is null or outside the identity map "
                        "(0-0x%llx)", sig, i, taddr, IDENTITY_MAP_END - 1);
        if (!bytes_eq(t, MADT_SIGNATURE, SDT_SIGNATURE_LEN))
            continue;
        uint32_t mlen;
        if (check_table(t, "MADT", MADT_HEADER_SIZE, &mlen) != 0)
            return -1;
        return parse_madt(t, mlen, out);
    }
    return fail("no MADT (\"APIC\") among the %u %s entries", entries, sig);
}

/* The RSDP at rsdp, of which size bytes may be read (at most RSDP_V2_SIZE are): signature,
 * checksum, and for revision >= 2 the length and extended checksum; then the XSDT if
 * revision >= 2 and it has one, else the RSDT. 0, or -1 after fail(). */
static int parse_rsdp(const uint8_t *rsdp, size_t size, struct acpi_cpus *out)
{
    if (size < RSDP_V1_SIZE)
        return fail("RSDP of %zu bytes is shorter than %u", size, RSDP_V1_SIZE);
    if (!bytes_eq(rsdp, RSDP_SIGNATURE, RSDP_SIGNATURE_LEN))
        return fail("RSDP signature is not \"" RSDP_SIGNATURE "\"");
    if (checksum(rsdp, RSDP_V1_SIZE) != 0)
        return fail("RSDP checksum is wrong (bytes sum to 0x%x)", checksum(rsdp, RSDP_V1_SIZE));
    uint8_t rev = rsdp[RSDP_OFF_REVISION];
    if (rev < RSDP_REV_XSDT)
        return parse_root(rd32(rsdp + RSDP_OFF_RSDT), "RSDT", RSDT_ENTRY_SIZE, out);
    if (size < RSDP_V2_SIZE)
        return fail("RSDP revision %u in %zu bytes, shorter than %u", rev, size, RSDP_V2_SIZE);
    if (rd32(rsdp + RSDP_OFF_LENGTH) < RSDP_V2_SIZE)
        return fail("RSDP length %u is shorter than %u", rd32(rsdp + RSDP_OFF_LENGTH),
                    RSDP_V2_SIZE);
    if (checksum(rsdp, RSDP_V2_SIZE) != 0)
        return fail("RSDP extended checksum is wrong (bytes sum to 0x%x)",
                    checksum(rsdp, RSDP_V2_SIZE));
    uint64_t xsdt = rd64(rsdp + RSDP_OFF_XSDT);
    if (xsdt != 0)
        return parse_root(xsdt, "XSDT", XSDT_ENTRY_SIZE, out);
    return parse_root(rd32(rsdp + RSDP_OFF_RSDT), "RSDT", RSDT_ENTRY_SIZE, out);
}

/* The first 16-byte aligned RSDP candidate in [start, end) (signature and 20-byte checksum
 * right), with *size = the bytes of it inside [start, end) (at most RSDP_V2_SIZE); or NULL. */
static const uint8_t *scan_rsdp(uint64_t start, uint64_t end, size_t *size)
{
    for (uint64_t a = start; a + RSDP_V1_SIZE <= end; a += RSDP_ALIGN) {
        const uint8_t *p = (const uint8_t *)(uintptr_t)a;
        if (bytes_eq(p, RSDP_SIGNATURE, RSDP_SIGNATURE_LEN) && checksum(p, RSDP_V1_SIZE) == 0) {
            *size = end - a < RSDP_V2_SIZE ? end - a : RSDP_V2_SIZE;
            return p;
        }
    }
    return NULL;
}

/* The RSDP in the BIOS areas: the EBDA's first KiB (if the BDA's segment points inside real
 * mode memory), then 0xE0000-0xFFFFF; *size as scan_rsdp. NULL if neither has one. */
static const uint8_t *find_bios_rsdp(size_t *size)
{
    uintptr_t bda = BDA_EBDA_SEGMENT;
    __asm__("" : "+r"(bda));           /* a run-time address: no compile-time null-page warning */
    uint64_t ebda = (uint64_t)*(const volatile uint16_t *)bda << 4;
    const uint8_t *p = NULL;
    if (ebda > BDA_EBDA_SEGMENT && ebda + EBDA_SEARCH_SIZE <= REAL_MODE_END)
        p = scan_rsdp(ebda, ebda + EBDA_SEARCH_SIZE, size);
    return p ? p : scan_rsdp(BIOS_AREA_START, BIOS_AREA_END, size);
}

/* Common end of both entry points: on failure print the line and clear *out. */
static int finish(int result, struct acpi_cpus *out)
{
    if (result == 0) {
        acpi_last_error[0] = '\0';
        return 0;
    }
    kprintf("acpi: %s; going on with one CPU\n", acpi_last_error);
    *out = (struct acpi_cpus){ 0 };
    return -1;
}

int acpi_parse_rsdp(const void *rsdp, struct acpi_cpus *out)
{
    *out = (struct acpi_cpus){ 0 };
    return finish(parse_rsdp(rsdp, RSDP_V2_SIZE, out), out);
}

int acpi_find_cpus(struct acpi_cpus *out)
{
    *out = (struct acpi_cpus){ 0 };
    if (boot_info.rsdp_size != 0)
        return finish(parse_rsdp(boot_info.rsdp, boot_info.rsdp_size, out), out);
    size_t size = 0;
    const uint8_t *rsdp = find_bios_rsdp(&size);
    if (!rsdp)
        return finish(fail("no RSDP (no Multiboot2 ACPI tag, none in the EBDA or at "
                           "0x%x-0x%x)", BIOS_AREA_START, BIOS_AREA_END - 1), out);
    return finish(parse_rsdp(rsdp, size, out), out);
}
