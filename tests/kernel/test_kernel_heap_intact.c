/* test_kernel_heap_intact.c -- a KTEST_LAST, run after every other kernel test: the tests
 * before it must have left the heap as kmain set it up, with the kernel's misuse handler
 * (kernel_heap_error) still installed and its regions (static + free RAM) in place, so that
 * later misuse is still reported on serial. */
#include "ktest.h"
#include "kernel.h"
#include "mm/kheap.h"

#define RANGES_MAX 16

KTEST_LAST(kernel_heap_intact_after_tests)
{
    /* kheap_set_error_handler returns the previous handler: it must be the kernel's */
    kheap_error_fn cur = kheap_set_error_handler(kernel_heap_error);
    KEXPECT(cur == kernel_heap_error);
    if (cur != kernel_heap_error)
        ktest_note("handler left installed: %p (kernel_heap_error is %p)", (void *)cur,
                   (void *)kernel_heap_error);

    /* kmain's regions, nothing left allocated by the tests */
    struct boot_mem_range ranges[RANGES_MAX];
    size_t nranges = boot_free_ranges(ranges, RANGES_MAX);
    struct kheap_stats s;
    kheap_get_stats(&s);
    KEXPECT_EQ(s.regions, nranges + 1);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(kheap_check(), 0);

    /* and misuse still reaches it */
    unsigned long before = kernel_heap_reports;
    int local;
    kfree(&local);                                  /* not heap memory: reported */
    KEXPECT_EQ(kernel_heap_reports, before + 1);
}
