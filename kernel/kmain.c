/* kmain.c -- the test kernel's C entry, called by boot/boot.asm in long mode: serial console,
 * exception handlers, boot information, the heap (when mm/ is linked in), then every selected
 * KTEST, and finally isa-debug-exit with the pass or fail code. */
#include "kernel.h"
#include "cpu.h"
#include "ktest.h"
#include "mm/kheap.h"

/* The heap is optional while mm/ is being written: without it these are NULL. */
#pragma weak kheap_init
#pragma weak kheap_add_region

#define FREE_RANGES_MAX 16

uint64_t kmain_frame_rsp;

/* Static region first, then the usable RAM the boot loader reported (kernel, boot info and the
 * first MiB excluded). */
static void heap_setup(void)
{
    if (!kheap_init) {
        kprintf("heap: mm/ not linked in, no heap\n");
        return;
    }
    size_t size = (size_t)(__heap_end - __heap_start);
    int rc = kheap_init(__heap_start, size);
    if (rc != 0)
        panic("kheap_init(%p, %zu) = %d", (void *)__heap_start, size, rc);
    struct boot_mem_range free[FREE_RANGES_MAX];
    size_t n = boot_free_ranges(free, FREE_RANGES_MAX);
    uint64_t added = 0;
    for (size_t i = 0; i < n; i++) {
        rc = kheap_add_region((void *)free[i].base, free[i].length);
        if (rc != 0)
            panic("kheap_add_region(0x%lx, 0x%lx) = %d", free[i].base, free[i].length, rc);
        added += free[i].length;
    }
    kprintf("heap: static %zu KiB at %p, plus %zu RAM regions (%lu KiB)\n", size >> 10,
            (void *)__heap_start, n, added >> 10);
}

void kmain(uint32_t magic, uint64_t info);
void kmain(uint32_t magic, uint64_t info)
{
    /* RSP before the call, as the ABI frame sees it: return address + saved RBP above. */
    kmain_frame_rsp = (uint64_t)__builtin_frame_address(0) + 16;
    serial_init();
    idt_init();
    kprintf("\nkheap test kernel\n");
    if (boot_info_parse(magic, info) != 0)
        panic("unknown boot magic 0x%x", magic);
    boot_info_print();
    heap_setup();

    char pattern[BOOT_STRING_MAX];
    if (!boot_cmdline_get("ktest", pattern, sizeof pattern))
        pattern[0] = '\0';
    int failed = ktest_run(pattern);
    qemu_exit(failed ? QEMU_EXIT_FAIL : QEMU_EXIT_PASS);
}
