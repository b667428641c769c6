/* test_kheap_demo.c -- the seed project's main.c demo inside the kernel: my_malloc, my_calloc,
 * my_realloc and my_free on the live heap (kmain's), printing each step's result as a note.
 * The host twin is tests/host/demo_my_malloc.c. */
#include "ktest.h"
#include "kernel.h"
#include "mm/kheap.h"

static int kstreq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static void kstrcpy(char *d, const char *s)
{
    while ((*d++ = *s++) != '\0')
        ;
}

KTEST(kheap_demo_my_malloc)
{
    struct kheap_stats before;
    kheap_get_stats(&before);
    char *str = my_malloc(100);
    ktest_note("my_malloc(100) = %p", (void *)str);
    KEXPECT_NOT_NULL(str);
    if (!str)
        return;
    kstrcpy(str, "Hello, custom allocator!");
    ktest_note("wrote \"%s\"", str);

    int *numbers = my_calloc(10, sizeof(int));
    ktest_note("my_calloc(10, %zu) = %p", sizeof(int), (void *)numbers);
    KEXPECT_NOT_NULL(numbers);
    for (int i = 0; numbers && i < 10; i++) {
        KEXPECT_EQ(numbers[i], 0);
        numbers[i] = i * i;
    }

    char *bigger = my_realloc(str, 200);
    ktest_note("my_realloc(%p, 200) = %p, still \"%s\"", (void *)str, (void *)bigger,
               bigger ? bigger : "");
    KEXPECT_NOT_NULL(bigger);
    if (bigger) {
        KEXPECT(kstreq(bigger, "Hello, custom allocator!"));
        str = bigger;
    }

    my_free(str);
    my_free(numbers);
    ktest_note("my_free(%p), my_free(%p)", (void *)str, (void *)numbers);
    char *again = my_malloc(50);
    ktest_note("my_malloc(50) = %p", (void *)again);
    KEXPECT_NOT_NULL(again);
    my_free(again);
    my_free(NULL);

    struct kheap_stats after;
    kheap_get_stats(&after);
    KEXPECT_EQ(after.used_bytes, before.used_bytes);
    KEXPECT_EQ(after.errors, before.errors);
    KEXPECT_EQ(kheap_check(), 0);
}
