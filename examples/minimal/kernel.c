/*
 * examples/minimal/kernel.c -- the smallest kernel that uses kheap as docs/EMBEDDING.md tells an
 * embedder to: the default heap from a memory map, an IRQ-safe lock, misuse reports to the
 * kernel log, growth from (and give-back to) a page allocator, a second heap of its own. Plain
 * freestanding C for a higher-half x86-64 kernel, no libc; the lib_check test compiles it with
 * -mcmodel=kernel and links it at 0xffffffff80100000 against build/lib/libkheap.a, and
 * examples/minimal/Makefile builds it from source through mm/kheap.mk. It is never booted here.
 * SPDX-License-Identifier: MIT
 */
#include <stddef.h>
#include <stdint.h>

#include "kheap.h"
#include "kheap_diag.h"

/* ---- the kernel log: COM1, polled (a real kernel has its own) -------------------------------- */
#define COM1        0x3F8
#define COM1_LSR    (COM1 + 5)
#define LSR_THRE    0x20            /* transmit holding register empty */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void log_char(char c)
{
    while (!(inb(COM1_LSR) & LSR_THRE))
        ;
    outb(COM1, (uint8_t)c);
}

static void log_str(const char *s)
{
    while (*s)
        log_char(*s++);
}

static void log_hex(uint64_t v)
{
    log_str("0x");
    for (int shift = 60; shift >= 0; shift -= 4)
        log_char("0123456789abcdef"[(v >> shift) & 0xF]);
}

static __attribute__((noreturn)) void halt(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

static __attribute__((noreturn)) void panic(const char *why)
{
    log_str("panic: ");
    log_str(why);
    log_str("\n");
    halt();
}

/* ---- an IRQ-safe spinlock shaped for the lock hooks ------------------------------------------
 * lock: interrupts off first (an interrupt handler that allocates must never spin on a lock its
 * own CPU holds), then spin; the caller's RFLAGS are kept in the lock. unlock: release, then
 * restore the interrupt flag as it was. Not recursive. */
#define RFLAGS_IF   0x200

struct irq_lock {
    volatile uint32_t locked;
    uint64_t          saved_flags;
};

static void irq_lock(void *ctx)
{
    struct irq_lock *l = ctx;
    uint64_t flags;
    __asm__ volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    while (__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&l->locked, __ATOMIC_RELAXED))
            __asm__ volatile("pause");
    l->saved_flags = flags;
}

static void irq_unlock(void *ctx)
{
    struct irq_lock *l = ctx;
    uint64_t flags = l->saved_flags;
    __atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
    if (flags & RFLAGS_IF)
        __asm__ volatile("sti" : : : "memory");
}

/* ---- a page allocator: 64 pages of its own, a bitmap, contiguous runs ------------------------
 * Stands in for the kernel's physical memory manager (whose pages it would reach through the
 * direct map). Has its own lock: the heap's grow and trim hooks call it with the heap's lock
 * held (order: heap lock, then page lock; the page allocator never calls the heap). */
#define PAGE_SIZE   4096
#define POOL_PAGES  64

static uint8_t pool[POOL_PAGES * PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
static uint64_t pool_used;          /* bit i: page i is allocated */
static struct irq_lock pool_lock;

/* n contiguous pages, or NULL. */
static void *pages_alloc(size_t n)
{
    void *p = NULL;
    irq_lock(&pool_lock);
    for (size_t first = 0; n && n <= POOL_PAGES && first + n <= POOL_PAGES && !p; first++) {
        uint64_t run = (n == 64 ? ~0ull : ((1ull << n) - 1)) << first;
        if (!(pool_used & run)) {
            pool_used |= run;
            p = pool + first * PAGE_SIZE;
        }
    }
    irq_unlock(&pool_lock);
    return p;
}

/* Give back the pages of [p, p + bytes) (page aligned); 0 if they are not the pool's. */
static int pages_free(void *p, size_t bytes)
{
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)pool;
    if (a < base || a % PAGE_SIZE || bytes % PAGE_SIZE || bytes > sizeof pool - (a - base))
        return 0;
    irq_lock(&pool_lock);
    for (size_t i = (a - base) / PAGE_SIZE; bytes; i++, bytes -= PAGE_SIZE)
        pool_used &= ~(1ull << i);
    irq_unlock(&pool_lock);
    return 1;
}

/* ---- the heap's hooks ---------------------------------------------------------------------- */

/* Misuse (double free, bad pointer, overwritten header, ...): to the kernel log. Runs with the
 * heap's lock held: it may read the block (kheap_inspect takes no lock), never allocate or free.
 * The heap has already refused the call, so returning is safe; a kernel may panic instead. */
static void heap_error(int code, void *ptr, void *caller)
{
    struct kheap_block_info b;
    log_str("kheap: ");
    log_str(kheap_strerror(code));
    log_str(" at ");
    log_hex((uintptr_t)ptr);
    log_str(" called from ");
    log_hex((uintptr_t)caller);
    if (ptr && kheap_inspect(ptr, &b)) {
        log_str(b.used ? " (used block of " : " (free block of ");
        log_hex(b.size);
        log_str(" bytes)");
    }
    log_str("\n");
}

/* Growth: at least `need` bytes of fresh pages, in 16-page steps. Runs with the lock held. */
#define GROW_PAGES  16

static size_t heap_grow(size_t need, void **start)
{
    size_t pages = (need + PAGE_SIZE - 1) / PAGE_SIZE;
    pages = (pages + GROW_PAGES - 1) / GROW_PAGES * GROW_PAGES;
    *start = pages_alloc(pages);
    return *start ? pages * PAGE_SIZE : 0;
}

/* Give-back: whole free pages at the end of a region. Take them only if they are the page
 * allocator's (the boot memory stays in the heap). Runs with the lock held. */
static int heap_trim(void *start, size_t size)
{
    return pages_free(start, size);
}

/* ---- the memory map ------------------------------------------------------------------------
 * What the boot protocol glue leaves: Limine's memmap response (entries of type
 * LIMINE_MEMMAP_USABLE, base + the HHDM offset), or the Multiboot2 memory map tag (type 1,
 * through the kernel's own direct map), minus the kernel image, modules and boot information.
 * This example has no boot glue: its two "usable" ranges are arrays of its own .bss. */
struct mem_range {
    void  *start;       /* virtual address */
    size_t size;
};

static uint8_t ram_low[64 * 1024] __attribute__((aligned(PAGE_SIZE)));
static uint8_t ram_high[128 * 1024] __attribute__((aligned(PAGE_SIZE)));
static const struct mem_range usable[] = {
    { ram_low, sizeof ram_low },
    { ram_high, sizeof ram_high },
};
#define USABLE_COUNT (sizeof usable / sizeof usable[0])

static struct irq_lock heap_lock;

/* The default heap (kmalloc & co.): hooks first (kheap_init keeps them), the first usable range
 * big enough for a heap, every other range as a region. */
static void heap_setup(void)
{
    size_t first = 0;
    kheap_set_error_handler(heap_error);
    if (kheap_set_lock(irq_lock, irq_unlock, &heap_lock) != KHEAP_OK)
        panic("kheap_set_lock");
    kheap_set_grow(heap_grow);
    while (first < USABLE_COUNT && usable[first].size < KHEAP_CREATE_MIN)
        first++;
    if (first == USABLE_COUNT || kheap_init(usable[first].start, usable[first].size) != KHEAP_OK)
        panic("no memory for the heap");
    for (size_t i = first + 1; i < USABLE_COUNT; i++) {
        int rc = kheap_add_region(usable[i].start, usable[i].size);
        if (rc != KHEAP_OK) {
            log_str("heap: range skipped: ");
            log_str(kheap_strerror(rc));
            log_str("\n");
        }
    }

    /* The give-back hook has no one-at-a-time setter: read the hooks, add it, write them back
     * (no other CPU is running yet). */
    struct kheap_hooks hooks;
    if (kheap_get_hooks(kheap_default(), &hooks) != KHEAP_OK)
        panic("kheap_get_hooks");
    hooks.trim = heap_trim;
    if (kheap_set_hooks(kheap_default(), &hooks) != KHEAP_OK)
        panic("kheap_set_hooks");
}

/* ---- a heap of its own: e.g. for one subsystem, with its own lock ---------------------------- */
static uint8_t net_memory[64 * 1024] __attribute__((aligned(64)));
static struct irq_lock net_lock;
static const struct kheap_hooks net_hooks = {
    .error = heap_error, .lock = irq_lock, .unlock = irq_unlock, .lock_ctx = &net_lock,
};

static kheap_t *net_heap_setup(void)
{
    kheap_t *h = kheap_create(net_memory, sizeof net_memory);     /* 8 KiB of it: control */
    if (!h || kheap_set_hooks(h, &net_hooks) != KHEAP_OK)
        panic("net heap");
    return h;
}

/* ---- entry ------------------------------------------------------------------------------- */
void kentry(void);

void kentry(void)
{
    heap_setup();
    kheap_t *net = net_heap_setup();

    char *name = kmalloc(32);
    uint64_t *table = kcalloc(128, sizeof *table);
    void *page = kmalloc_aligned(PAGE_SIZE, PAGE_SIZE);
    void *big = kmalloc(160 * 1024);                /* fits no range: grown from pages */
    void *packet = kheap_alloc(net, 1500);
    void *ring = kheap_alloc_aligned(net, 64, 4096);
    if (!name || !table || !page || !big || !packet || !ring)
        panic("out of memory");
    uint64_t *bigger = krealloc(table, 256 * sizeof *table);
    if (bigger)                                     /* NULL: table is still valid */
        table = bigger;
    kfree(big);                                     /* its pages go back (trim hook) */
    kfree(page);
    kfree(table);
    kfree(name);
    kheap_free(net, ring);
    kheap_free(net, packet);

    struct kheap_stats st;
    kheap_get_stats(&st);
    log_str("heap: ");
    log_hex(st.total_bytes);
    log_str(" bytes in ");
    log_hex(st.regions);
    log_str(" regions, check ");
    log_str(kheap_strerror(kheap_check()));
    log_str(", net heap ");
    log_str(kheap_strerror(kheap_verify(net)));
    log_str("\n");
    halt();
}
