/* multiboot.c -- copies the boot information out of the Multiboot1 (qemu -kernel) or
 * Multiboot2 (GRUB) structures into struct boot_info: memory map, command line, boot loader
 * name and where the structures lie, and derives the free RAM ranges the heap may add. */
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

/* Multiboot2 info: total_size, reserved, then 8-aligned tags up to an end tag. */
struct mb2_tag {
    uint32_t type, size;
};
#define MB2_TAG_END        0
#define MB2_TAG_CMDLINE    1
#define MB2_TAG_LOADER     2
#define MB2_TAG_MEMINFO    4
#define MB2_TAG_MMAP       6
#define MB2_TAG_ALIGN      8

struct mb2_tag_mmap {
    uint32_t type, size, entry_size, entry_version;
};
struct mb2_mmap_entry {
    uint64_t base, length;
    uint32_t type, reserved;
};

struct boot_info boot_info;

static void copy_string(char *dst, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < BOOT_STRING_MAX; i++)
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

static void parse_mb1(const struct mb1_info *mb)
{
    boot_info.multiboot_version = 1;
    cover((uint64_t)mb, sizeof *mb);
    if (mb->flags & MB1_INFO_MEM) {
        boot_info.mem_lower_kb = mb->mem_lower;
        boot_info.mem_upper_kb = mb->mem_upper;
    }
    if (mb->flags & MB1_INFO_CMDLINE) {
        const char *s = (const char *)(uint64_t)mb->cmdline;
        copy_string(boot_info.cmdline, s);
        cover((uint64_t)s, string_size(s));
    }
    if (mb->flags & MB1_INFO_LOADER) {
        const char *s = (const char *)(uint64_t)mb->boot_loader_name;
        copy_string(boot_info.loader_name, s);
        cover((uint64_t)s, string_size(s));
    }
    if (mb->flags & MB1_INFO_MMAP) {
        uint64_t p = mb->mmap_addr, end = p + mb->mmap_length;
        cover(p, mb->mmap_length);
        while (p < end) {
            const struct mb1_mmap_entry *e = (const void *)p;
            add_range(e->base, e->length, e->type);
            p += e->size + sizeof e->size;
        }
    }
}

static void parse_mb2(const uint8_t *info)
{
    uint32_t total = *(const uint32_t *)info;
    boot_info.multiboot_version = 2;
    cover((uint64_t)info, total);
    for (const uint8_t *p = info + 8; p < info + total; ) {
        const struct mb2_tag *tag = (const void *)p;
        if (tag->type == MB2_TAG_END)
            break;
        if (tag->type == MB2_TAG_CMDLINE)
            copy_string(boot_info.cmdline, (const char *)(tag + 1));
        else if (tag->type == MB2_TAG_LOADER)
            copy_string(boot_info.loader_name, (const char *)(tag + 1));
        else if (tag->type == MB2_TAG_MEMINFO) {
            boot_info.mem_lower_kb = ((const uint32_t *)(tag + 1))[0];
            boot_info.mem_upper_kb = ((const uint32_t *)(tag + 1))[1];
        } else if (tag->type == MB2_TAG_MMAP) {
            const struct mb2_tag_mmap *m = (const void *)tag;
            for (uint32_t off = sizeof *m; off + sizeof(struct mb2_mmap_entry) <= m->size;
                 off += m->entry_size) {
                const struct mb2_mmap_entry *e = (const void *)(p + off);
                add_range(e->base, e->length, e->type);
            }
        }
        p += (tag->size + MB2_TAG_ALIGN - 1) & ~(uint32_t)(MB2_TAG_ALIGN - 1);
    }
}

int boot_info_parse(uint32_t magic, uint64_t info_addr)
{
    if (magic == MULTIBOOT1_BOOT_MAGIC)
        parse_mb1((const struct mb1_info *)info_addr);
    else if (magic == MULTIBOOT2_BOOT_MAGIC)
        parse_mb2((const uint8_t *)info_addr);
    else
        return -1;
    return 0;
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

size_t boot_free_ranges(struct boot_mem_range *out, size_t max)
{
    uint64_t exclude[2 + BOOT_INFO_PIECES][2] = {  /* [start, end) nobody may hand out */
        { 0, MiB },
        { (uint64_t)_kernel_start, (uint64_t)_kernel_end },
    };
    size_t nexclude = 2;
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
