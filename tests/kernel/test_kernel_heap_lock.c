/* test_kernel_heap_lock.c -- the heap as kmain wires it: the IRQ-safe spinlock installed with
 * kheap_set_lock (held, with interrupts off, inside every kheap call that takes it; released and
 * the caller's interrupt state restored after it, with IF set and with IF clear; the small calls
 * this CPU's slab stacks serve take no lock at all), the kernel's misuse handler (installed,
 * survives kheap_init, prints the "kheap: double free of ..." line), and
 * the heap's regions (the static one plus free RAM, never the kernel image or boot info).
 * Interrupts: the IDT has exception vectors only, so IF is set only with every 8259 line masked
 * (kmain masks them at boot; re-checked here): no interrupt can actually arrive. */
#include "ktest.h"
#include "kernel.h"
#include "cpu.h"
#include "asm/spinlock.h"
#include "mm/kheap.h"
#include "mm/kheap_diag.h"

#define MiB (1ull << 20)

/* What the lock and CPU looked like from inside the heap (the error handler runs there). */
static struct {
    unsigned n;
    int code;
    void *ptr, *caller;
    uint32_t locked;
    uint64_t rflags;
} inside;

static void record_inside(int code, void *ptr, void *caller)
{
    inside.n++;
    inside.code = code;
    inside.ptr = ptr;
    inside.caller = caller;
    inside.locked = kernel_heap_lock.locked;
    inside.rflags = read_rflags();
}

/* kfree through a trampoline with a known return address (the caller the report names). */
__asm__(".text\n.p2align 4\n.globl klk_kfree\nklk_kfree:\n\tsub $8, %rsp\n\tcall kfree\n"
        ".globl klk_kfree_ret\nklk_kfree_ret:\n\tadd $8, %rsp\n\tret\n");
void klk_kfree(void *p);
extern const char klk_kfree_ret[];

/* With interrupts in state `irq_on`: a kmalloc/kfree pair and a misuse report; the lock must
 * be held with IF clear inside, free afterwards, and IF back as it was. The block is past the
 * slab tier (> 512 bytes): its calls take the lock (small ones need not, see below). */
static void lock_round(int irq_on)
{
    int stack_var = 0;
    if (irq_on)
        irq_enable();
    else
        irq_disable();
    uint64_t want = irq_on ? RFLAGS_IF : 0;
    KEXPECT_EQ(read_rflags() & RFLAGS_IF, want);

    void *p = kmalloc(1024);
    uint64_t after_malloc = read_rflags();
    uint64_t saved = kernel_heap_lock.saved_flags;   /* what our lock saw on that call */
    KEXPECT_NOT_NULL(p);
    KEXPECT_EQ(after_malloc & RFLAGS_IF, want);
    KEXPECT_EQ(saved & RFLAGS_IF, want);
    KEXPECT_EQ(kernel_heap_lock.locked, 0);

    kheap_error_fn old = kheap_set_error_handler(record_inside);
    inside.n = 0;
    klk_kfree(&stack_var);                            /* outside the heap: reported */
    uint64_t after_report = read_rflags();
    kheap_set_error_handler(old);
    KEXPECT_EQ(inside.n, 1);
    KEXPECT_EQ(inside.code, KHEAP_E_BAD_PTR);
    KEXPECT_EQ(inside.ptr, &stack_var);
    KEXPECT_EQ(inside.caller, klk_kfree_ret);
    KEXPECT_EQ(inside.locked, KSPIN_HELD);            /* the heap ran under our lock ... */
    KEXPECT_EQ(inside.rflags & RFLAGS_IF, 0);         /* ... with interrupts off */
    KEXPECT_EQ(after_report & RFLAGS_IF, want);
    KEXPECT_EQ(kernel_heap_lock.locked, 0);

    kfree(p);
    KEXPECT_EQ(read_rflags() & RFLAGS_IF, want);
    KEXPECT_EQ(kernel_heap_lock.locked, 0);
    irq_disable();
}

KTEST(kernel_heap_lock_irq_off)
{
    lock_round(0);
}

KTEST(kernel_heap_lock_irq_on)
{
    /* every PIC line masked: IF = 1 is observable but no interrupt can be delivered */
    uint16_t masks = pic_mask_all();
    KEXPECT_EQ(masks, 0xFFFF);                        /* kmain masked them at boot */
    lock_round(1);
    KEXPECT_EQ(read_rflags() & RFLAGS_IF, 0);
}

/* Lock hooks that count how often kmain's lock is taken (and then take it). */
static unsigned long lock_count;
static void counting_lock(void *ctx)
{
    kspin_lock_irqsave(ctx);
    lock_count++;
}
static void counting_unlock(void *ctx)
{
    kspin_unlock_irqrestore(ctx);
}

/* RFLAGS bit 1 is always set: no lock acquisition can leave this in saved_flags. */
#define NEVER_RFLAGS 0x5AFE0000DEAD0000ull

/* A small kmalloc/kfree pair goes through this CPU's stack of its size class (kheap.h: the cpu
 * hook kmain installs) without the lock: the lock is neither taken (the counter) nor written
 * (saved_flags keeps a value no RFLAGS can have). Only refilling an empty stack or draining a
 * full one takes it (the warm-up pair may); a block (> 512 bytes) always does. One pair at a
 * time: the stack, not empty after the warm-up, never runs empty nor full. */
KTEST(kernel_heap_lock_not_taken_by_small_calls)
{
#if defined(KHEAP_DEBUG) && KHEAP_DEBUG
    ktest_skip("the debug build has no per-CPU stacks: every call takes the lock");
    return;
#endif
    KEXPECT_EQ(kheap_set_lock(counting_lock, counting_unlock, &kernel_heap_lock), 0);
    lock_count = 0;
    void *warm = kmalloc(64);
    kfree(warm);
    unsigned long warm_locks = lock_count;
    lock_count = 0;
    kernel_heap_lock.saved_flags = NEVER_RFLAGS;
    unsigned got = 0;
    for (int i = 0; i < 100; i++) {
        unsigned char *p = kmalloc(49 + (size_t)i % 16);   /* 49..64 bytes: one class */
        got += p != NULL;
        if (p)
            p[0] = (unsigned char)i;
        kfree(p);
    }
    unsigned long small_locks = lock_count;
    uint64_t small_saved = kernel_heap_lock.saved_flags;
    void *big = kmalloc(1024);
    kfree(big);
    unsigned long big_locks = lock_count - small_locks;
    uint64_t big_saved = kernel_heap_lock.saved_flags;
    KEXPECT_EQ(kheap_set_lock(kspin_lock_irqsave, kspin_unlock_irqrestore, &kernel_heap_lock), 0);
    KEXPECT(warm_locks <= 2);
    KEXPECT_EQ(got, 100);
    KEXPECT_EQ(small_locks, 0);
    KEXPECT_EQ(small_saved, NEVER_RFLAGS);
    KEXPECT_EQ(big_locks, 2);
    KEXPECT_NE(big_saved, NEVER_RFLAGS);
    KEXPECT_EQ(kernel_heap_lock.locked, 0);
    KEXPECT_EQ(kheap_check(), 0);
}

/* kheap_walk's callback also runs under the lock. */
static int walk_probe(const struct kheap_block_info *b, void *ctx)
{
    (void)b;
    uint32_t *seen = ctx;
    seen[0] = kernel_heap_lock.locked;
    seen[1] = (read_rflags() & RFLAGS_IF) != 0;
    return 1;
}

KTEST(kernel_heap_lock_held_in_walk)
{
    uint32_t seen[2] = { 0, 1 };
    irq_enable();
    int rc = kheap_walk(walk_probe, seen);
    uint64_t after = read_rflags();
    irq_disable();
    KEXPECT_EQ(rc, 1);
    KEXPECT_EQ(seen[0], KSPIN_HELD);
    KEXPECT_EQ(seen[1], 0);
    KEXPECT_EQ(after & RFLAGS_IF, RFLAGS_IF);
    KEXPECT_EQ(kernel_heap_lock.locked, 0);
}

static int has_prefix(const char *s, const char *prefix)
{
    while (*prefix && *s == *prefix)
        s++, prefix++;
    return *prefix == '\0';
}

static int contains(const char *s, const char *needle)
{
    for (; *s; s++)
        if (has_prefix(s, needle))
            return 1;
    return 0;
}

KTEST(kernel_heap_error_handler_reports)
{
    /* kmain's handler is the one installed (kheap_set_error_handler returns it) */
    kheap_error_fn cur = kheap_set_error_handler(kernel_heap_error);
    KEXPECT(cur == kernel_heap_error);
    unsigned long before = kernel_heap_reports;
    struct kheap_stats s0;
    kheap_get_stats(&s0);

    void *p = kmalloc(40), *guard = kmalloc(40);      /* guard: p cannot merge rightwards */
    KEXPECT(p && guard);
    kfree(p);
    klk_kfree(p);                                      /* double free: printed on serial */
    KEXPECT_EQ(kernel_heap_reports, before + 1);
    char want[96];
    ksnprintf(want, sizeof want, "kheap: double free of %p", p);
    KEXPECT(has_prefix(kernel_heap_last_report, want));
    ksnprintf(want, sizeof want, " called from %p ", (void *)klk_kfree_ret);
    KEXPECT(contains(kernel_heap_last_report, want));
    KEXPECT(contains(kernel_heap_last_report, kheap_strerror(KHEAP_E_DOUBLE_FREE)));
    struct kheap_block_info b;
    KEXPECT(kheap_inspect(p, &b));
    ksnprintf(want, sizeof want, "(block %zu bytes)", b.size);
    KEXPECT(contains(kernel_heap_last_report, want));
    ktest_note("handler printed: %s", kernel_heap_last_report);
    kfree(guard);
    struct kheap_stats s1;
    kheap_get_stats(&s1);
    KEXPECT_EQ(s1.errors, s0.errors + 1);
    KEXPECT_EQ(s1.used_bytes, s0.used_bytes);
    KEXPECT_EQ(kheap_check(), 0);
}

KTEST(kernel_heap_hooks_survive_init)
{
    /* kheap_init keeps the lock and the handler: re-run kmain's setup and look again */
    unsigned regions = kernel_heap_setup(0);
    struct kheap_stats s;
    kheap_get_stats(&s);
    KEXPECT_EQ(s.regions, regions);
    kheap_error_fn cur = kheap_set_error_handler(kernel_heap_error);
    KEXPECT(cur == kernel_heap_error);
    kheap_set_error_handler(record_inside);
    inside.n = 0;
    kfree((void *)8);                                  /* below every region */
    kheap_set_error_handler(kernel_heap_error);
    KEXPECT_EQ(inside.n, 1);
    KEXPECT_EQ(inside.locked, KSPIN_HELD);
    KEXPECT_EQ(kheap_check(), 0);
}

/* ---- regions: static heap + free RAM, nothing of the image or boot info ------------------- */

static int overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

struct spans {
    unsigned n;
    uint64_t start[32], end[32];
};

static int span_of(const struct kheap_block_info *b, void *ctx)
{
    struct spans *sp = ctx;
    if (b->region >= 32)
        return -1000;
    uint64_t s = (uint64_t)b->ptr - KHEAP_HEADER_SIZE, e = s + b->size;
    while (sp->n <= b->region) {
        sp->start[sp->n] = UINT64_MAX;
        sp->end[sp->n++] = 0;
    }
    if (s < sp->start[b->region])
        sp->start[b->region] = s;
    if (e > sp->end[b->region])
        sp->end[b->region] = e;
    return 0;
}

KTEST(kernel_heap_regions_exclude_image_and_info)
{
    kernel_heap_setup(0);                              /* the heap exactly as kmain built it */
    struct boot_mem_range fr[16];
    size_t nfree = boot_free_ranges(fr, 16);
    struct kheap_stats s;
    kheap_get_stats(&s);
    KEXPECT_EQ(s.regions, nfree + 1);
    KEXPECT(s.total_bytes >= 100 * MiB);
    static struct spans sp;
    sp.n = 0;
    KEXPECT_EQ(kheap_walk(span_of, &sp), 0);
    KEXPECT_EQ(sp.n, s.regions);
    uint64_t hs = (uint64_t)__heap_start, he = (uint64_t)__heap_end;
    unsigned in_static = 0;
    for (unsigned r = 0; r < sp.n; r++) {
        uint64_t a = sp.start[r], b = sp.end[r];
        KEXPECT(a < b);
        if (a >= hs && b <= he) {                      /* the static region, in .bss */
            in_static++;
            continue;
        }
        uint64_t pa = virt_to_phys((void *)a), pb = pa + (b - a);  /* RAM: physical addresses */
        KEXPECT(pa >= MiB);
        KEXPECT(!overlaps(pa, pb, virt_to_phys(_kernel_start), virt_to_phys(_image_end)));
        KEXPECT(!overlaps(pa, pb, virt_to_phys(__heap_start), virt_to_phys(__heap_end)));
        for (unsigned j = 0; j < boot_info.info_count; j++)
            KEXPECT(!overlaps(pa, pb, boot_info.info[j].start, boot_info.info[j].end));
        int inside_free = 0;                            /* and inside a free RAM range */
        for (size_t j = 0; j < nfree; j++)
            inside_free |= pa >= fr[j].base && pb <= fr[j].base + fr[j].length;
        KEXPECT(inside_free);
        ktest_note("region %u: 0x%lx-0x%lx (%lu KiB)", r, a, b, (b - a) >> 10);
    }
    KEXPECT_EQ(in_static, 1);
}
