/* multiboot.c -- copies the boot information out of the Multiboot1 (qemu -kernel) or
 * Multiboot2 (GRUB) structures into struct boot_info: memory map, command line, boot loader
 * name, the ACPI RSDP copy (Multiboot2) and where the structures lie, and derives the free RAM
 * ranges the heap may add.
 * Malformed info (a size too small to step over, data past the info's end) stops the parse
 * with a "boot: malformed ..." line; what was read before it is kept. */
#include "kernel.h"

#define MiB (1ull << 20)
#define PAGE_SIZE 4096ull

/* Multiboot1 info: flags say which fields are valid (offsets from the specification). */
struct mb1_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr, drives_length, drives_addr, config_table;
    uint32_t boot_loader_name, apm_table;
    uint8_t  vbe_and_framebuffer[36];
} __attribute__((packed));
_Static_assert(__builtin_offsetof(struct mb1_info, boot_loader_name) == 64, "Multiboot1 layout");

#define MB1_INFO_MEM       (1u << 0)
#define MB1_INFO_CMDLINE   (1u << 2)
#define MB1_INFO_MMAP      (1u << 6)
#define MB1_INFO_LOADER    (1u << 9)

struct mb1_mmap_entry {
    uint32_t size;              /* of the rest of the entry: the next one is size + 4 on */
    uint64_t base, length;
    uint32_t type;
} __attribute__((packed));
/* Smallest valid mb1_mmap_entry.size: base, length and type. */
#define MB1_MMAP_ENTRY_MIN (sizeof(struct mb1_mmap_entry) - sizeof(uint32_t))

/* Multiboot2 info: total_size, reserved, then 8-aligned tags up to an end tag. Every tag's
 * size counts its 8-byte header, so it is at least 8. */
#define MB2_INFO_HEADER    8
struct mb2_tag {
    uint32_t type, size;
};
#define MB2_TAG_END        0
#define MB2_TAG_CMDLINE    1
#define MB2_TAG_LOADER     2
#define MB2_TAG_MEMINFO    4
#define MB2_TAG_MMAP       6
#define MB2_TAG_ACPI_OLD   14       /* payload: a copy of the ACPI 1.0 RSDP (20 bytes) */
#define MB2_TAG_ACPI_NEW   15       /* payload: a copy of the ACPI 2.0+ RSDP (36 bytes) */
#define MB2_TAG_ALIGN      8

struct mb2_tag_mmap {
    uint32_t type, size, entry_size, entry_version;
};
struct mb2_mmap_entry {
    uint64_t base, length;
    uint32_t type, reserved;
};
struct mb2_tag_meminfo {
    uint32_t type, size, mem_lower, mem_upper;
};

struct boot_info boot_info;

/* Copy at most max bytes of src (up to its NUL), truncated to BOOT_STRING_MAX - 1. */
static void copy_string(char *dst, const char *src, size_t max)
{
    size_t i = 0;
    for (; src && i < max && src[i] && i + 1 < BOOT_STRING_MAX; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

static void add_range(uint64_t base, uint64_t length, uint32_t type)
{
    if (boot_info.mmap_count < BOOT_MMAP_MAX)
        boot_info.mmap[boot_info.mmap_count++] = (struct boot_mem_range){ base, length, type };
}

/* Remember that the loader's info occupies [addr, addr + len). */
static void cover(uint64_t addr, uint64_t len)
{
    if (boot_info.info_count < BOOT_INFO_PIECES) {
        boot_info.info[boot_info.info_count].start = addr;
        boot_info.info[boot_info.info_count++].end = addr + len;
    }
}

static uint64_t string_size(const char *s)
{
    uint64_t n = 0;
    while (s[n])
        n++;
    return n + 1;
}

/* Report malformed boot info and stop parsing it: returns 1 for boot_info_parse. offset is
 * from the start of the Multiboot2 info, or of the Multiboot1 memory map. */
static int malformed(uint64_t offset, const char *what, uint64_t value)
{
    kprintf("boot: malformed Multiboot%d info at offset %lu: %s %lu; ignoring the rest\n",
            boot_info.multiboot_version, offset, what, value);
    return 1;
}

static int parse_mb1(const struct mb1_info *mb)
{
    boot_info.multiboot_version = 1;
    cover(virt_to_phys(mb), sizeof *mb);
    if (mb->flags & MB1_INFO_MEM) {
        boot_info.mem_lower_kb = mb->mem_lower;
        boot_info.mem_upper_kb = mb->mem_upper;
    }
    if (mb->flags & MB1_INFO_CMDLINE) {
        const char *s = phys_to_virt(mb->cmdline);
        copy_string(boot_info.cmdline, s, SIZE_MAX);
        cover(mb->cmdline, string_size(s));
    }
    if (mb->flags & MB1_INFO_LOADER) {
        const char *s = phys_to_virt(mb->boot_loader_name);
        copy_string(boot_info.loader_name, s, SIZE_MAX);
        cover(mb->boot_loader_name, string_size(s));
    }
    if (mb->flags & MB1_INFO_MMAP) {
        uint64_t start = mb->mmap_addr, end = start + mb->mmap_length;
        cover(start, mb->mmap_length);
        for (uint64_t p = start; p < end; ) {
            const struct mb1_mmap_entry *e = phys_to_virt(p);
            if (end - p < sizeof *e)
                return malformed(p - start, "memory map entry cut off by mmap_length, bytes left",
                                 end - p);
            if (e->size < MB1_MMAP_ENTRY_MIN)
                return malformed(p - start, "memory map entry size", e->size);
            add_range(e->base, e->length, e->type);
            p += e->size + sizeof e->size;
        }
    }
    return 0;
}

/* Keep the RSDP copy of an ACPI tag (payload bytes, at most BOOT_RSDP_MAX): a "new" tag
 * replaces an earlier copy, an "old" one is taken only if there is none yet. acpi.c checks it. */
static void copy_rsdp(const struct mb2_tag *tag)
{
    if (tag->type == MB2_TAG_ACPI_OLD && boot_info.rsdp_size != 0)
        return;
    uint64_t n = tag->size - sizeof *tag;
    if (n > BOOT_RSDP_MAX)
        n = BOOT_RSDP_MAX;
    const uint8_t *src = (const uint8_t *)(tag + 1);
    for (uint64_t i = 0; i < n; i++)
        boot_info.rsdp[i] = src[i];
    boot_info.rsdp_size = (unsigned)n;
}

/* One tag, known to lie inside the info: [tag, tag + tag->size). 0, or 1 if malformed. */
static int parse_mb2_tag(const struct mb2_tag *tag, uint64_t offset)
{
    const uint8_t *p = (const uint8_t *)tag;
    if (tag->type == MB2_TAG_CMDLINE) {
        copy_string(boot_info.cmdline, (const char *)(tag + 1), tag->size - sizeof *tag);
    } else if (tag->type == MB2_TAG_LOADER) {
        copy_string(boot_info.loader_name, (const char *)(tag + 1), tag->size - sizeof *tag);
    } else if (tag->type == MB2_TAG_MEMINFO) {
        const struct mb2_tag_meminfo *m = (const void *)tag;
        if (tag->size < sizeof *m)
            return malformed(offset, "basic memory tag size", tag->size);
        boot_info.mem_lower_kb = m->mem_lower;
        boot_info.mem_upper_kb = m->mem_upper;
    } else if (tag->type == MB2_TAG_ACPI_OLD || tag->type == MB2_TAG_ACPI_NEW) {
        copy_rsdp(tag);
    } else if (tag->type == MB2_TAG_MMAP) {
        const struct mb2_tag_mmap *m = (const void *)tag;
        if (tag->size < sizeof *m)
            return malformed(offset, "memory map tag size", tag->size);
        if (m->entry_size < sizeof(struct mb2_mmap_entry))
            return malformed(offset, "memory map entry_size", m->entry_size);
        for (uint64_t off = sizeof *m; off + m->entry_size <= m->size; off += m->entry_size) {
            const struct mb2_mmap_entry *e = (const void *)(p + off);
            add_range(e->base, e->length, e->type);
        }
    }
    return 0;
}

/* Tags from offset 8 up to the end tag or total_size; each must fit inside total_size. */
static int parse_mb2(const uint8_t *info)
{
    uint32_t total = *(const uint32_t *)info;
    boot_info.multiboot_version = 2;
    cover(virt_to_phys(info), total);
    if (total < MB2_INFO_HEADER)
        return malformed(0, "total_size", total);
    for (uint64_t off = MB2_INFO_HEADER; off < total; ) {
        const struct mb2_tag *tag = (const void *)(info + off);
        if (total - off < sizeof *tag)
            return malformed(off, "tag header cut off by total_size, bytes left", total - off);
        if (tag->size < sizeof *tag)
            return malformed(off, "tag size", tag->size);
        if (tag->size > total - off)
            return malformed(off, "tag reaches past total_size, size", tag->size);
        if (tag->type == MB2_TAG_END)
            break;
        if (parse_mb2_tag(tag, off) != 0)
            return 1;
        off += (tag->size + MB2_TAG_ALIGN - 1) & ~(uint64_t)(MB2_TAG_ALIGN - 1);
    }
    return 0;
}

int boot_info_parse(uint32_t magic, uint64_t info_addr)
{
    boot_info = (struct boot_info){ 0 };
    if (magic == MULTIBOOT1_BOOT_MAGIC)
        return parse_mb1(phys_to_virt(info_addr));
    if (magic == MULTIBOOT2_BOOT_MAGIC)
        return parse_mb2(phys_to_virt(info_addr));
    return -1;
}

void boot_info_print(void)
{
    kprintf("boot: Multiboot%d, loader \"%s\", command line \"%s\"\n",
            boot_info.multiboot_version, boot_info.loader_name, boot_info.cmdline);
    kprintf("boot: kernel image 0x%lx-0x%lx, static heap 0x%lx-0x%lx (%lu KiB)\n",
            (uint64_t)_kernel_start, (uint64_t)_kernel_end, (uint64_t)__heap_start,
            (uint64_t)__heap_end, (uint64_t)(__heap_end - __heap_start) >> 10);
    kprintf("boot: boot info");
    for (unsigned i = 0; i < boot_info.info_count; i++)
        kprintf(" 0x%lx-0x%lx", boot_info.info[i].start, boot_info.info[i].end);
    kprintf("\n");
    kprintf("boot: memory map (%u entries):\n", boot_info.mmap_count);
    for (unsigned i = 0; i < boot_info.mmap_count; i++) {
        const struct boot_mem_range *r = &boot_info.mmap[i];
        kprintf("boot:   0x%016lx-0x%016lx %s (type %u, %lu KiB)\n", r->base,
                r->base + r->length, r->type == BOOT_MEM_USABLE ? "usable  " : "reserved",
                r->type, r->length >> 10);
    }
}

int boot_cmdline_get(const char *key, char *out, size_t size)
{
    size_t klen = 0;
    while (key[klen])
        klen++;
    for (const char *p = boot_info.cmdline; *p; ) {
        while (*p == ' ')
            p++;
        size_t i = 0;
        while (i < klen && p[i] == key[i])
            i++;
        if (i == klen && p[i] == '=') {
            const char *v = p + klen + 1;
            size_t n = 0;
            while (v[n] && v[n] != ' ' && n + 1 < size) {
                out[n] = v[n];
                n++;
            }
            out[n] = '\0';
            return 1;
        }
        while (*p && *p != ' ')
            p++;
    }
    return 0;
}

int boot_range_usable(uint64_t start, uint64_t end)
{
    for (unsigned i = 0; i < boot_info.mmap_count; i++) {
        const struct boot_mem_range *r = &boot_info.mmap[i];
        if (r->type == BOOT_MEM_USABLE && start >= r->base && end <= r->base + r->length)
            return 1;
    }
    return 0;
}

size_t boot_free_ranges(struct boot_mem_range *out, size_t max)
{
    uint64_t exclude[3 + BOOT_INFO_PIECES][2] = {  /* [start, end) nobody may hand out */
        { 0, MiB },
        { virt_to_phys(_kernel_start), virt_to_phys(_image_end) },
        { virt_to_phys(__heap_start), virt_to_phys(__heap_end) },
    };
    size_t nexclude = 3;
    for (unsigned i = 0; i < boot_info.info_count; i++, nexclude++) {
        exclude[nexclude][0] = boot_info.info[i].start;
        exclude[nexclude][1] = boot_info.info[i].end;
    }
    size_t found = 0;
    for (unsigned i = 0; i < boot_info.mmap_count; i++) {
        const struct boot_mem_range *r = &boot_info.mmap[i];
        if (r->type != BOOT_MEM_USABLE || r->base >= IDENTITY_MAP_END)
            continue;
        uint64_t cur = r->base, end = r->base + r->length;
        if (end > IDENTITY_MAP_END)
            end = IDENTITY_MAP_END;
        while (cur < end) {
            /* The exclusion overlapping [cur, end) that starts first, if any. */
            uint64_t ex_start = end, ex_end = end;
            for (size_t x = 0; x < nexclude; x++)
                if (exclude[x][0] < end && exclude[x][1] > cur && exclude[x][0] < ex_start) {
                    ex_start = exclude[x][0] > cur ? exclude[x][0] : cur;
                    ex_end = exclude[x][1];
                }
            uint64_t a = (cur + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
            uint64_t b = ex_start & ~(PAGE_SIZE - 1);
            if (a < b) {
                if (found < max)
                    out[found] = (struct boot_mem_range){ a, b - a, BOOT_MEM_USABLE };
                found++;
            }
            cur = ex_end > cur ? ex_end : end;
        }
    }
    return found < max ? found : max;
}
