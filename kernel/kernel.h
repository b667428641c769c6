/* kernel.h -- what the test kernel offers the rest of the code: console output (kprintf,
 * ksnprintf), panic, the serial port, and the boot information copied out of the Multiboot1/2
 * structures at boot (memory map, command line, loader name, where the kernel and info lie). */
#ifndef KERNEL_KERNEL_H
#define KERNEL_KERNEL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/kheap.h"

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

/* ---- Interrupt controller (kernel/kmain.c) ------------------------------------------------- */
#define PIC1_DATA              0x21     /* 8259 master: interrupt mask register */
#define PIC2_DATA              0xA1     /* 8259 slave */
/* Mask every line of both 8259 PICs (kmain does this at boot): with no IRQ handlers in the
 * IDT, this is what makes `sti` safe. Returns the old masks, slave << 8 | master. */
uint16_t pic_mask_all(void);

/* ---- The heap as the kernel runs it (kernel/kmain.c, kernel/heapdump.c) ---------------------- */
struct kspinlock;
/* The IRQ-safe spinlock kmain installs with kheap_set_lock (kspin_lock_irqsave /
 * kspin_unlock_irqrestore): every kheap call runs with it held and interrupts off, and puts
 * the caller's interrupt state back on return. */
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

/* Print a compact text map of the heap on serial, for tools/heapmap:
 *   kheap-dump begin regions=N used=BYTES free=BYTES
 *   region I 0xSTART 0xEND                 (span of the region's blocks)
 *   B 0xPAYLOAD SIZE used|free [site 0xADDR] [req N]
 *   R COUNT 0xPAYLOAD SIZE used|free [site 0xADDR] [req N]   (COUNT identical neighbours)
 *   kheap-dump end lines=N blocks=N [error=CODE]
 * SIZE is the block size, header included; site and req only where recorded (KHEAP_DEBUG).
 * Returns 0, or the negative KHEAP_E_* of kheap_walk (then the map stops at the bad block and
 * the end line says error=CODE). */
int kheap_dump(void);
/* The same text, one line at a time (without "\n") to out(line, ctx). */
int kheap_dump_to(void (*out)(const char *line, void *ctx), void *ctx);

/* ---- Linker symbols (linker.ld) and boot stub (boot/boot.asm) -------------------------------- */
extern char _kernel_start[], _kernel_end[];    /* the whole image, .bss and the heap included */
extern char __heap_start[], __heap_end[];      /* static heap region, 4 KiB aligned */
extern char __dma_heap_start[], __dma_heap_end[];  /* the DMA heap's region, below 16 MiB */
extern uint64_t boot_kmain_rsp;                /* RSP just before boot.asm called kmain */
extern uint64_t kmain_frame_rsp;               /* the same, as kmain itself saw it (kmain.c) */

#define IDENTITY_MAP_END       (4ull << 30)    /* boot.asm maps [0, 4 GiB) */

#endif
