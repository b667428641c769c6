/* asm/spinlock.h -- IRQ-safe spinlock implemented in asm/spinlock.asm, shaped for the
 * kheap_set_lock hooks:  kheap_set_lock(kspin_lock_irqsave, kspin_unlock_irqrestore, &lock).
 * The KSPIN_* #defines are the one source of truth for the layout: the Makefile turns them into
 * NASM %defines (build/gen/spinlock.inc), the NASM struc is checked against them with %error,
 * and the C struct below with _Static_assert. */
#ifndef KHEAP_ASM_SPINLOCK_H
#define KHEAP_ASM_SPINLOCK_H

/* struct kspinlock layout (bytes). */
#define KSPIN_OFF_LOCKED      0
#define KSPIN_OFF_SAVED_FLAGS 8
#define KSPIN_SIZE            16
/* Value of `locked` while held; 0 while free. */
#define KSPIN_HELD            1
/* RFLAGS.IF: interrupts enabled. */
#define KSPIN_RFLAGS_IF       0x200

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>

/* Zero-initialised = unlocked (KSPINLOCK_INIT or static storage). */
struct kspinlock {
    volatile uint32_t locked;  /* KSPIN_HELD while held, else 0 */
    uint32_t pad;
    uint64_t saved_flags;      /* the holder's RFLAGS from before it took the lock */
};
#define KSPINLOCK_INIT { 0, 0, 0 }

_Static_assert(offsetof(struct kspinlock, locked) == KSPIN_OFF_LOCKED, "kspinlock.locked");
_Static_assert(offsetof(struct kspinlock, saved_flags) == KSPIN_OFF_SAVED_FLAGS,
               "kspinlock.saved_flags");
_Static_assert(sizeof(struct kspinlock) == KSPIN_SIZE, "kspinlock size");

/* Take the lock at `lock` (a struct kspinlock *), spinning while another CPU holds it.
 * Kernel build: disables interrupts first and keeps them off until the matching unlock, so an
 * interrupt handler on this CPU can never spin on a lock its own CPU holds. The caller's
 * interrupt state is remembered in the lock. Not recursive: taking a held lock on the same CPU
 * deadlocks. Two different locks nest in LIFO order (unlock the inner one first).
 * Host build (no -DKERNEL, ring 3): the same spinning mutual exclusion, interrupts untouched
 * (cli/sti would fault), saved_flags still records RFLAGS. Full memory barrier (lock xchg). */
void kspin_lock_irqsave(void *lock);

/* Release the lock taken by kspin_lock_irqsave on this CPU, then restore the interrupt state
 * saved at lock time (re-enable only if they were enabled before). Release ordering: every
 * load and store before the call is visible before the lock is seen free. */
void kspin_unlock_irqrestore(void *lock);
#endif /* __ASSEMBLER__ */

#endif /* KHEAP_ASM_SPINLOCK_H */
