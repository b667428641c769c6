/* smp_nolock.c -- for tools/test-harness: the kernel whose SMP stress (tests/kernel/test_smp.c,
 * smp_heap_stress) runs with the heaps' lock hooks removed. Booted with -smp 4 it must fail,
 * naming what it found (two owners of a block, a bad kheap_check, misuse reports, a fault). */
const int smp_stress_nolock = 1;
