/* kernel.h -- what the test kernel offers the rest of the code: console output (kprintf,
 * ksnprintf), panic, the serial port, and the boot information copied out of the Multiboot1/2
 * structures at boot (memory map, command line, loader name, where the kernel and info lie). */
#ifndef KERNEL_KERNEL_H
#define KERNEL_KERNEL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/kheap.h"
#include "mm/kheap_diag.h"

/* ---- Console ---------------------------------------------------------------------------- */

/* Formats: %s %c %d %i %u %x %X %p %%, length modifiers l, ll, z; flags '0' and '-' and a
 * field width (also '*'). Unknown conversions are printed as is. Output goes to COM1 with
 * "\n" sent as "\r\n". Returns the number of characters formatted. */
int kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int kvprintf(const char *fmt, va_list ap);
/* As snprintf: writes at most size bytes including the NUL (none if size is 0) and returns
 * the length the full result would have. */
int ksnprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

/* Print "# PANIC: <message>" (and fail the running test, if any), then exit QEMU with the
 * fail code; halts on real hardware. */
void panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* ---- COM1, 16550 UART at 115200 8N1 (kernel/serial.c) --------------------------------------- */
#define COM1_PORT 0x3F8
void serial_init(void);
void serial_putc(char c);          /* raw byte, waits for the transmitter */
void serial_write(const char *s, size_t n);   /* "\n" becomes "\r\n" */
/* Loopback self-test: 1 if a byte sent with the UART in loopback mode comes back. */
int  serial_loopback_test(uint8_t byte);

/* ---- Exceptions (kernel/idt.c, boot/isr.asm) ------------------------------------------------- */
/* The frame boot/isr.asm builds: general registers (pushed last, so first), then the vector,
 * the error code (0 when the CPU pushes none) and what the CPU pushed. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;
};
void idt_init(void);

/* ---- Boot information (kernel/multiboot.c) ------------------------------------------------- */
#define MULTIBOOT1_BOOT_MAGIC  0x2BADB002u
#define MULTIBOOT2_BOOT_MAGIC  0x36D76289u
#define BOOT_MEM_USABLE        1        /* memory map type of RAM free for use */
#define BOOT_MMAP_MAX          64
#define BOOT_STRING_MAX        256
#define BOOT_INFO_PIECES       4
#define BOOT_RSDP_MAX          36       /* an ACPI 2.0+ RSDP; ACPI 1.0's is the first 20 bytes */

struct boot_mem_range {
    uint64_t base;
    uint64_t length;
    uint32_t type;                     /* 1 usable, 2 reserved, 3 ACPI, 4 NVS, 5 bad */
};

struct boot_info {
    int      multiboot_version;        /* 1 (qemu -kernel) or 2 (GRUB multiboot2) */
    /* [start, end) of each piece of the loader's info (Multiboot1 scatters it: structure,
     * memory map, strings; Multiboot2 is one block). */
    unsigned info_count;
    struct { uint64_t start, end; } info[BOOT_INFO_PIECES];
    uint64_t mem_lower_kb, mem_upper_kb;
    char     cmdline[BOOT_STRING_MAX];
    char     loader_name[BOOT_STRING_MAX];
    unsigned mmap_count;               /* entries of the loader's memory map, in its order */
    struct boot_mem_range mmap[BOOT_MMAP_MAX];
    /* The RSDP copy of the Multiboot2 ACPI tag (type 15 "new" preferred over 14 "old"), at
     * most BOOT_RSDP_MAX bytes of it; rsdp_size 0: none (Multiboot1, or no tag). Unchecked:
     * acpi_find_cpus validates it. */
    uint8_t  rsdp[BOOT_RSDP_MAX];
    unsigned rsdp_size;
};

/* Filled by boot_info_parse(); read-only afterwards. */
extern struct boot_info boot_info;

/* Copy what we need out of the loader's structures into boot_info (cleared first). 0; 1 if
 * the info is malformed (a tag, memory map entry or entry_size too small to step over, or
 * reaching past the info's total_size / mmap_length): a "boot: malformed ..." line is
 * printed and what was parsed before that point is kept; -1 if magic is not Multiboot. */
int boot_info_parse(uint32_t magic, uint64_t info_addr);
void boot_info_print(void);
/* The value of "key=" on the command line (up to the next space) copied into out; 1 if
 * found, else 0. */
int boot_cmdline_get(const char *key, char *out, size_t size);
/* Usable RAM nobody else owns: usable map entries inside the identity map (below 4 GiB),
 * above 1 MiB, minus the kernel image (static heap included) and the boot info. Writes at most
 * max ranges to out (type BOOT_MEM_USABLE, page aligned), returns how many it wrote. */
size_t boot_free_ranges(struct boot_mem_range *out, size_t max);
/* Is the physical range [start, end) inside one usable entry of the memory map? */
int boot_range_usable(uint64_t start, uint64_t end);

/* ---- ACPI (kernel/acpi.c) ------------------------------------------------------------------ */
#define ACPI_MAX_CPUS          64
struct acpi_cpus {
    unsigned count;                   /* enabled local APICs found (0 if none/malformed) */
    uint32_t apic_id[ACPI_MAX_CPUS];  /* their APIC ids, in MADT order */
    uint64_t lapic_base;              /* local APIC MMIO base from the MADT (override entry type 5 if present) */
    const char *source;               /* "XSDT" or "RSDT", for the boot line */
};
/* Find the RSDP (boot_info's copy from the Multiboot2 ACPI tags; else the BIOS areas: the EBDA's
 * first KiB (segment at 0x40E) and 0xE0000-0xFFFFF on 16-byte boundaries), then the XSDT (rev >= 2)
 * or RSDT, then the MADT ("APIC"), and list every enabled processor: type 0 (Processor Local APIC,
 * flags bit 0 enabled, or bit 1 online-capable) and type 9 (Processor Local x2APIC, same flags).
 * Every table is checksummed and every length bounded (table length within sane limits, each
 * entry's length >= 2 and inside the table; never loop forever, never read past a table). 0 on
 * success; -1 if there is no RSDP or MADT, or anything is malformed: then a line
 * "acpi: <what is wrong>; going on with one CPU" is printed with kprintf, out->count = 0.
 * Details: an APIC id already listed is not listed again (firmware may give a CPU both a type
 * 0 and a type 9 entry), nor is the type 0 broadcast id 0xFF; past ACPI_MAX_CPUS the rest are
 * left out (a line says so; still 0). lapic_base is reported as found: it may lie above
 * IDENTITY_MAP_END (the caller maps it). On failure *out is all zero (source NULL). Time:
 * O(table bytes), at most ACPI_TABLE_MAX per table. Not thread-safe (acpi_last_error). */
int acpi_find_cpus(struct acpi_cpus *out);
/* The same parser on tables the caller provides (for tests): rsdp points at an RSDP structure. */
int acpi_parse_rsdp(const void *rsdp, struct acpi_cpus *out);
#define ACPI_TABLE_MAX         (1u << 20)     /* longest RSDT/XSDT/MADT accepted, in bytes */
/* The last failure's "<what is wrong>" text (without "; going on with one CPU"), "" after a
 * success: for tests, which check that a bad table is rejected for the right reason. */
extern char acpi_last_error[128];

/* ---- SMP (kernel/smp.c) ----------------------------------------------------------------------
 * smp_init (kmain) starts every enabled CPU of the ACPI MADT: each AP runs ap_main on its own
 * stack with GS base = its struct cpu, then waits for work posted by smp_run_all. */
#define SMP_MAX_CPUS           16
#define IRQ_VECTOR_TIMER       0x40     /* the local APIC timer (boot/isr.asm) */
#define IRQ_VECTOR_SPURIOUS    0xFF     /* the local APIC's spurious vector */

struct cpu {
    struct cpu *self;                   /* GS:0, so this_cpu() is one load */
    unsigned    id;                     /* 0 = the BSP, 1.. in start-up order */
    uint32_t    apic_id;
    volatile uint32_t online;
    volatile uint64_t ticks;            /* LAPIC timer interrupts taken */
    void      (*work_fn)(void *);       /* smp_run_all's mailbox */
    void       *work_arg;
    uint64_t    work_gen, work_done;
};

struct smp_barrier {
    unsigned count, phase, n;
};

extern struct cpu cpus[SMP_MAX_CPUS];
extern unsigned smp_cpu_count;          /* CPUs online, the BSP included */
extern unsigned smp_missing;            /* CPUs the MADT lists that did not start */
extern uint64_t tsc_per_ms;             /* TSC ticks per millisecond (PIT-calibrated) */

/* The running CPU's data (only after smp_init). */
static inline struct cpu *this_cpu(void)
{
    struct cpu *c;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(c));
    return c;
}
/* Has smp_init set up per-CPU data (this_cpu() usable)? */
static inline int smp_ready(void) { return cpus[0].self != 0; }

/* Start the APs; print "smp: N CPUs online (...)"; a CPU that does not report in within the
 * timeout is printed with its APIC id and counted in smp_missing. Returns smp_cpu_count. The
 * kernel command line smp_skip=APICID withholds one AP's SIPI (a test of that report). */
unsigned smp_init(void);
/* Run fn(arg) on every online CPU, the BSP (CPU 0) included; 0 when all finished within
 * timeout_ms, -1 (each late CPU printed) if not. */
int smp_run_all(void (*fn)(void *), void *arg, unsigned timeout_ms);
/* A barrier for n CPUs; wait returns 0, or -1 after timeout_ms (the barrier then still counts
 * that CPU: smp_barrier_init it again before the next use). */
void smp_barrier_init(struct smp_barrier *b, unsigned n);
int smp_barrier_wait(struct smp_barrier *b, unsigned timeout_ms);
uint64_t time_ms(void);                 /* milliseconds of TSC time */
void delay_us(uint64_t us);
uint32_t lapic_id(void);
void lapic_eoi(void);
/* The LAPIC timer of this CPU: periodic, IRQ_VECTOR_TIMER, initial count `count` at divide 16;
 * each tick counts in this_cpu()->ticks and calls smp_timer_hook (if set) with interrupts off. */
void lapic_timer_start(uint32_t count);
void lapic_timer_stop(void);
extern void (*volatile smp_timer_hook)(void);
void smp_timer_tick(void);              /* (kernel/idt.c's interrupt handler) */
void idt_load(void);                    /* this CPU loads the kernel's IDT (APs, kernel/idt.c) */

/* ---- Interrupt controller (kernel/kmain.c) ------------------------------------------------- */
#define PIC1_DATA              0x21     /* 8259 master: interrupt mask register */
#define PIC2_DATA              0xA1     /* 8259 slave */
/* Mask every line of both 8259 PICs (kmain does this at boot): with no IRQ handlers in the
 * IDT, this is what makes `sti` safe. Returns the old masks, slave << 8 | master. */
uint16_t pic_mask_all(void);

/* ---- The heap as the kernel runs it (kernel/kmain.c, kernel/heapdump.c) ---------------------- */
struct kspinlock;
/* The IRQ-safe spinlock kmain installs with kheap_set_lock (kspin_lock_irqsave /
 * kspin_unlock_irqrestore): every kheap call that takes it runs with it held and interrupts
 * off, and puts the caller's interrupt state back on return. The small calls the calling CPU's
 * slab stacks serve (the cpu hook kmain installs on both heaps) take no lock. */
extern struct kspinlock kernel_heap_lock;
/* The misuse handler kmain installs with kheap_set_error_handler: prints
 * "kheap: double free of 0x... (block 48 bytes) called from 0x... [block already free]" on
 * serial, counts the report and keeps the line in kernel_heap_last_report. */
void kernel_heap_error(int code, void *ptr, void *caller);
extern unsigned long kernel_heap_reports;
extern char kernel_heap_last_report[160];
/* (Re)build the kernel's heap: kheap_init over the static region, then every free RAM range
 * from the memory map (boot_free_ranges) with kheap_add_region; verbose: print each region.
 * Panics on failure. Returns the number of regions. Tests call it to restore the heap. */
unsigned kernel_heap_setup(int verbose);
/* The second heap, over the DMA region below 16 MiB (linker.ld), made by kmain with the same
 * misuse handler and its own IRQ-safe lock (kernel_dma_lock). */
extern kheap_t *kernel_dma_heap;
extern struct kspinlock kernel_dma_lock;
#define DMA_LIMIT              (16ull << 20)   /* ISA DMA reaches only below 16 MiB */

/* The heap as its map shows it (kernel/heapdump.c): kheap_walk's entries, with the objects of
 * each slab folded into one piece for the slab's block (a slab is one used block of
 * KHEAP_DUMP_SLAB_BYTES whose payload S is aligned to that size; the walk shows its objects one
 * by one, each with slab = S, and neither its header nor its tail), plus the block the walk does
 * not show at all (the heap's own per-CPU slots), found from the stats: the pieces of a region
 * tile it, in address order, and all pieces add up to total_bytes. Used bytes (the stats'
 * used_bytes) are the used blocks and the live objects; everything else (free blocks, a slab's
 * other bytes, own blocks) is free_bytes. */
#define KHEAP_DUMP_SLAB_BYTES  16384
enum kheap_piece_kind {
    KHEAP_PIECE_BLOCK,                 /* a block of the walk (used, or free: cached too) */
    KHEAP_PIECE_SLAB,                  /* a slab: its objects folded */
    KHEAP_PIECE_OWN,                   /* a used block the walk does not show: the heap's own */
};
struct kheap_piece {
    enum kheap_piece_kind kind;
    uintptr_t start;                   /* the block's first byte (its header, payload - 8) */
    size_t    size;                    /* block bytes, header included */
    unsigned  region;
    uintptr_t region_start, region_end;  /* the span of its region's pieces */
    struct kheap_block_info block;     /* BLOCK: the walk's entry */
    size_t    obj_size;                /* SLAB: object bytes (its class), */
    unsigned  live, free;              /* objects live and not (free in it, or cached), */
    void     *site;                    /* the site all live ones share (KHEAP_DEBUG), or NULL */
};
/* Call fn for every piece of heap h (kheap_default() for kmalloc's), regions and pieces in
 * address order; fn runs under h's lock (no call of h but kheap_inspect). 0, fn's non-zero
 * value, or kheap_walk's error (KHEAP_E_CORRUPT, ...). The bytes the walk does not show are
 * placed where a gap between two pieces has room for them, or at a region's edge where
 * kheap_inspect finds one used block of that size; if neither, they are in no piece (*unplaced
 * says how many; NULL: not asked). Two walks and a stats call (which flushes the front cache);
 * another CPU's calls in between make the result inconsistent, never unsafe. */
int kheap_pieces_in(kheap_t *h, int (*fn)(const struct kheap_piece *p, void *ctx), void *ctx,
                    size_t *unplaced);

/* Print a compact text map of the heap on serial, for tools/heapmap:
 *   kheap-dump begin regions=N used=BYTES free=BYTES
 *   region I 0xSTART 0xEND                 (span of the region's pieces)
 *   B 0xPAYLOAD SIZE used|free [site 0xADDR] [req N]
 *   R COUNT 0xPAYLOAD SIZE used|free [site 0xADDR] [req N]   (COUNT identical neighbours)
 *   S 0xPAYLOAD SIZE slab OBJSIZE live N free N [site 0xADDR]   (a slab, its objects folded)
 *   H 0xPAYLOAD SIZE own                   (the heap's own block: its per-CPU slots)
 *   kheap-dump end lines=N blocks=N slabs=N objects=N [unplaced=BYTES] [error=CODE]
 * SIZE is the block size, header included (a slab's whole block); site and req only where
 * recorded (KHEAP_DEBUG; a slab's site only when all its live objects share one). blocks counts
 * B/R blocks, objects the slabs' objects (kheap_walk visits blocks + objects entries). In the
 * stats, a B/R block's SIZE is used or free, a slab's live objects (live * OBJSIZE) are used and
 * the rest of its SIZE free, an own block free; the lines' SIZEs add up to total_bytes (minus
 * the unplaced bytes, see kheap_pieces_in). Returns 0, or the negative KHEAP_E_* of kheap_walk
 * (then the map stops at the bad block and the end line says error=CODE). */
int kheap_dump(void);
/* The same text, one line at a time (without "\n") to out(line, ctx). */
int kheap_dump_to(void (*out)(const char *line, void *ctx), void *ctx);

/* ---- Linker symbols (linker.ld) and boot stub (boot/boot.asm) -------------------------------- */
extern char _kernel_start[], _kernel_end[];    /* the whole image, .bss and the heap included */
extern char _image_end[];                      /* end of code, data and .bss (the heap is above) */
extern char __heap_start[], __heap_end[];      /* static heap region, 4 KiB aligned */
extern char __dma_heap_start[], __dma_heap_end[];  /* the DMA heap's region, below 16 MiB */
extern uint64_t boot_kmain_rsp;                /* RSP just before boot.asm called kmain */
extern uint64_t kmain_frame_rsp;               /* the same, as kmain itself saw it (kmain.c) */

#define IDENTITY_MAP_END       (4ull << 30)    /* boot.asm maps [0, 4 GiB) */

/* Where physical memory is: boot.asm maps [0, IDENTITY_MAP_END) at KERNEL_PHYS_MAP (the direct
 * map), and the identity-mapped kernel also at 0. The higher-half kernel (make HIGHER_HALF=1,
 * -DKERNEL_HIGHER_HALF) runs at KERNEL_VMA + its load address with the identity map removed,
 * so every physical address the kernel reads (boot info, ACPI tables, the local APIC, RAM it
 * gives the heap) goes through phys_to_virt. */
#define KERNEL_PHYS_MAP        0xFFFF800000000000ull
#ifdef KERNEL_HIGHER_HALF
#define KERNEL_VMA             0xFFFFFFFF80000000ull
#else
#define KERNEL_VMA             0ull
#endif
static inline void *phys_to_virt(uint64_t p)
{
    return (void *)(KERNEL_VMA ? p + KERNEL_PHYS_MAP : p);
}
/* The physical address of a kernel-image or direct-map address (identity: itself). */
static inline uint64_t virt_to_phys(const void *v)
{
    uint64_t a = (uint64_t)v;
#ifdef KERNEL_HIGHER_HALF
    if (a >= KERNEL_VMA)
        return a - KERNEL_VMA;
#endif
    if (a >= KERNEL_PHYS_MAP && a < KERNEL_PHYS_MAP + IDENTITY_MAP_END)
        return a - KERNEL_PHYS_MAP;
    return a;
}

#endif
