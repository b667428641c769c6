/* kmain.c -- the test kernel's C entry, called by boot/boot.asm in long mode: serial console,
 * exception handlers, PIC masked, boot information, the default heap with its IRQ-safe lock and
 * misuse handler, a second heap for DMA below 16 MiB, then every selected KTEST, and finally
 * isa-debug-exit with the pass or fail code. */
#include "kernel.h"
#include "cpu.h"
#include "ktest.h"
#include "mm/kheap.h"
#include "mm/kheap_diag.h"
#include "asm/spinlock.h"

#define FREE_RANGES_MAX 16
#define PIC_ALL_MASKED  0xFF

uint64_t kmain_frame_rsp;

struct kspinlock kernel_heap_lock = KSPINLOCK_INIT;
struct kspinlock kernel_dma_lock = KSPINLOCK_INIT;
kheap_t *kernel_dma_heap;
unsigned long kernel_heap_reports;
char kernel_heap_last_report[160];

uint16_t pic_mask_all(void)
{
    uint16_t old = (uint16_t)(inb(PIC2_DATA) << 8 | inb(PIC1_DATA));
    outb(PIC1_DATA, PIC_ALL_MASKED);
    outb(PIC2_DATA, PIC_ALL_MASKED);
    return old;
}

/* What a misuse report means, as "kheap: <what> 0x..." wants it. */
static const char *report_verb(int code)
{
    switch (code) {
    case KHEAP_E_DOUBLE_FREE: return "double free of";
    case KHEAP_E_BAD_PTR:     return "bad pointer";
    case KHEAP_E_BAD_HEADER:  return "bad header or interior pointer";
    case KHEAP_E_FREELIST:    return "corrupt free list at";
#ifdef KHEAP_E_USE_AFTER_FREE
    case KHEAP_E_USE_AFTER_FREE: return "write after free in";
#endif
#ifdef KHEAP_E_OVERFLOW
    case KHEAP_E_OVERFLOW:    return "overflow past the end of";
#endif
#ifdef KHEAP_E_SIZE
    case KHEAP_E_SIZE:        return "absurd size, pointer";
#endif
    case KHEAP_E_INVAL:       return "invalid argument, pointer";
    default:                  return "error at";
    }
}

/* Runs with the heap lock held (interrupts off): no kheap call but kheap_inspect. */
void kernel_heap_error(int code, void *ptr, void *caller)
{
    char *out = kernel_heap_last_report;
    size_t room = sizeof kernel_heap_last_report;
    int n = ksnprintf(out, room, "kheap: %s %p", report_verb(code), ptr);
    struct kheap_block_info b;
    if (n > 0 && (size_t)n < room && kheap_inspect(ptr, &b))
        n += ksnprintf(out + n, room - n, " (block %zu bytes)", b.size);
    if (n > 0 && (size_t)n < room)
        ksnprintf(out + n, room - n, " called from %p [%s]", caller, kheap_strerror(code));
    kernel_heap_reports++;
    kprintf("%s\n", out);
}

/* Static region first, then the usable RAM the boot loader reported (the first MiB, the kernel
 * image with the static heap, and the boot info excluded by boot_free_ranges). */
unsigned kernel_heap_setup(int verbose)
{
    size_t size = (size_t)(__heap_end - __heap_start);
    uint64_t ps = virt_to_phys(__heap_start), pe = virt_to_phys(__heap_end);
    if (!boot_range_usable(ps, pe))         /* not loaded, not zeroed: it must be RAM */
        panic("the static heap 0x%lx-0x%lx is not usable RAM in the memory map: the machine "
              "needs at least %lu MiB (qemu -m)", ps, pe, (pe >> 20) + 8);
    int rc = kheap_init(__heap_start, size);
    if (rc != 0)
        panic("kheap_init(%p, %zu) = %d", (void *)__heap_start, size, rc);
    if (verbose)
        kprintf("heap: region 0x%lx-0x%lx (%zu KiB, static, in the kernel image)\n",
                (uint64_t)__heap_start, (uint64_t)__heap_end, size >> 10);
    struct boot_mem_range free[FREE_RANGES_MAX];
    size_t n = boot_free_ranges(free, FREE_RANGES_MAX);
    uint64_t added = 0;
    for (size_t i = 0; i < n; i++) {
        rc = kheap_add_region(phys_to_virt(free[i].base), free[i].length);
        if (rc != 0)
            panic("kheap_add_region(0x%lx, 0x%lx) = %d", free[i].base, free[i].length, rc);
        if (verbose)
            kprintf("heap: region 0x%lx-0x%lx (%lu KiB, RAM)\n", free[i].base,
                    free[i].base + free[i].length, free[i].length >> 10);
        added += free[i].length;
    }
    if (verbose)
        kprintf("heap: %zu KiB static + %zu RAM regions (%lu KiB), IRQ-safe spinlock\n",
                size >> 10, n, added >> 10);
    return (unsigned)n + 1;
}

/* The DMA heap: an instance over its own region below 16 MiB, its own lock. */
static void dma_heap_setup(void)
{
    size_t size = (size_t)(__dma_heap_end - __dma_heap_start);
    kernel_dma_heap = kheap_create(__dma_heap_start, size);
    if (!kernel_dma_heap || virt_to_phys(__dma_heap_end) > DMA_LIMIT)
        panic("kheap_create(%p, %zu) for DMA failed", (void *)__dma_heap_start, size);
    const struct kheap_hooks hooks = {
        .error = kernel_heap_error,
        .lock = kspin_lock_irqsave,
        .unlock = kspin_unlock_irqrestore,
        .lock_ctx = &kernel_dma_lock,
    };
    if (kheap_set_hooks(kernel_dma_heap, &hooks) != 0)
        panic("kheap_set_hooks for DMA failed");
    kprintf("heap: DMA heap 0x%lx-0x%lx (%zu KiB, below 16 MiB), own IRQ-safe spinlock\n",
            (uint64_t)__dma_heap_start, (uint64_t)__dma_heap_end, size >> 10);
}

/* The heaps' cpu hook: this CPU's index (GS-based per-CPU data once smp_init has set it up;
 * the BSP is 0 before). Nothing preempts kernel code here (interrupt handlers return to what
 * they interrupted), so the index stays the caller's for the whole kheap call. */
static unsigned kernel_heap_cpu(void)
{
    return smp_ready() ? this_cpu()->id : 0;
}

/* h's hooks plus the cpu hook: a per-CPU cache slot for each of SMP_MAX_CPUS CPUs. */
static void heap_cpu_hook(kheap_t *h, const char *name)
{
    struct kheap_hooks hooks;
    if (kheap_get_hooks(h, &hooks) != 0)
        panic("kheap_get_hooks(%s) failed", name);
    hooks.cpu = kernel_heap_cpu;
    hooks.ncpu = SMP_MAX_CPUS;
    int rc = kheap_set_hooks(h, &hooks);
    if (rc != 0)
        panic("kheap_set_hooks(%s) with the cpu hook: %s", name, kheap_strerror(rc));
}

/* Lock and error handler first: kheap_init keeps both (and the cpu hook, set after). */
static void heap_setup(void)
{
    if (kheap_set_lock(kspin_lock_irqsave, kspin_unlock_irqrestore, &kernel_heap_lock) != 0)
        panic("kheap_set_lock refused the kernel's lock pair");
    kheap_set_error_handler(kernel_heap_error);
    kernel_heap_setup(1);
    dma_heap_setup();
    heap_cpu_hook(kheap_default(), "default heap");
    heap_cpu_hook(kernel_dma_heap, "DMA heap");
    kprintf("heap: per-CPU caches for up to %u CPUs on both heaps (cpu hook: GS per-CPU data)\n",
            SMP_MAX_CPUS);
}

void kmain(uint32_t magic, uint64_t info);
void kmain(uint32_t magic, uint64_t info)
{
    /* RSP before the call, as the ABI frame sees it: return address + saved RBP above. */
    kmain_frame_rsp = (uint64_t)__builtin_frame_address(0) + 16;
    serial_init();
    idt_init();
    pic_mask_all();                 /* no IRQ handlers: keep every line masked */
    kprintf("\nkheap test kernel\n");
    if (boot_info_parse(magic, info) < 0)
        panic("unknown boot magic 0x%x", magic);
    boot_info_print();
    heap_setup();
    smp_init();

    char pattern[BOOT_STRING_MAX];
    if (!boot_cmdline_get("ktest", pattern, sizeof pattern))
        pattern[0] = '\0';
    int failed = ktest_run(pattern);
    qemu_exit(failed ? QEMU_EXIT_FAIL : QEMU_EXIT_PASS);
}
