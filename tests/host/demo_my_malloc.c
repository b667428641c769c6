/*
 * tests/host/demo_my_malloc.c -- the seed project's main.c demo, kept alive: allocate with
 * my_malloc and my_calloc, grow with my_realloc, free with my_free, reuse freed memory, and
 * print each step's result. The heap is a static buffer handed to kheap_init. TAP version 13,
 * one test per step (the kernel runs the same steps in tests/kernel/test_kheap_demo.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mm/kheap.h"
#include "ktest.h"

static unsigned char heap[256 * 1024] __attribute__((aligned(16)));
static char *str;
static int *numbers;
static char *freed_str;         /* where the string was when step_free freed it */

KTEST(step_init)
{
    int rc = kheap_init(heap, sizeof heap);
    printf("# kheap_init(%p, %zu) = %d\n", (void *)heap, sizeof heap, rc);
    KEXPECT_EQ(rc, 0);
}

KTEST(step_malloc)
{
    str = my_malloc(100);
    printf("# my_malloc(100) = %p\n", (void *)str);
    KEXPECT(str != NULL);
    if (!str)
        return;
    strcpy(str, "Hello, custom allocator!");
    printf("# wrote: \"%s\"\n", str);
}

KTEST(step_calloc)
{
    numbers = my_calloc(10, sizeof(int));
    printf("# my_calloc(10, %zu) = %p\n", sizeof(int), (void *)numbers);
    KEXPECT(numbers != NULL);
    if (!numbers)
        return;
    printf("# values:");
    for (int i = 0; i < 10; i++) {
        printf(" %d", numbers[i]);
        KEXPECT_EQ(numbers[i], 0);
        numbers[i] = i * i;
    }
    printf("\n");
}

KTEST(step_realloc)
{
    char *bigger = my_realloc(str, 200);
    printf("# my_realloc(%p, 200) = %p\n", (void *)str, (void *)bigger);
    KEXPECT(bigger != NULL);
    if (!bigger)
        return;
    str = bigger;
    printf("# still: \"%s\"\n", str);
    KEXPECT(strcmp(str, "Hello, custom allocator!") == 0);
    strcat(str, " Now with more room.");
    printf("# now: \"%s\"\n", str);
    int *more = my_realloc(numbers, 20 * sizeof(int));
    printf("# my_realloc(%p, %zu) = %p\n", (void *)numbers, 20 * sizeof(int), (void *)more);
    KEXPECT(more != NULL);
    if (!more)
        return;
    numbers = more;
    for (int i = 0; i < 10; i++)
        KEXPECT_EQ(numbers[i], i * i);
}

KTEST(step_free)
{
    printf("# my_free(%p), my_free(%p)\n", (void *)str, (void *)numbers);
    freed_str = str;
    my_free(str);
    my_free(numbers);
    struct kheap_stats s;
    kheap_get_stats(&s);
    printf("# used %zu of %zu bytes, %llu allocations, %llu frees\n", s.used_bytes,
           s.total_bytes, (unsigned long long)s.allocs, (unsigned long long)s.frees);
    KEXPECT_EQ(s.used_bytes, 0);
    KEXPECT_EQ(s.errors, 0);
}

/* Freed memory is used again. Blocks this small come from the slab tier (mm/kheap.h: requests
 * up to 512 bytes, in size classes): a request of a freed block's class gets a freed block of
 * that class back, the one freed last first, so my_malloc(200) gets the 200-byte string's
 * block (a request of another class gets one of its own class instead). */
KTEST(step_reuse)
{
    char *again = my_malloc(200);
    printf("# my_malloc(200) = %p (%s the memory my_free(%p) gave back)\n", (void *)again,
           again && again == freed_str ? "reuses" : "does not reuse", (void *)freed_str);
    KEXPECT(again != NULL && again == freed_str);
    my_free(again);
    my_free(NULL);
    printf("# my_free(%p), my_free(NULL); kheap_check() = %d\n", (void *)again, kheap_check());
    KEXPECT_EQ(kheap_check(), 0);
}
