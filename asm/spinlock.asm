; asm/spinlock.asm -- IRQ-safe test-and-test-and-set spinlock (struct kspinlock, asm/spinlock.h),
; used by the kernel as the kheap_set_lock hooks. Assembled with -DKERNEL it disables interrupts
; while the lock is held; the host build (ring 3, where cli/sti fault) only spins, so that
; tests/host/test_spinlock.c can check mutual exclusion with threads.
; The layout constants come from asm/spinlock.h via the generated spinlock.inc (see Makefile).

default rel

%include "spinlock.inc"

; The NASM view of struct kspinlock, checked against the C header's offsets.
struc kspinlock
.locked:        resd 1
.pad:           resd 1
.saved_flags:   resq 1
endstruc
%if kspinlock.locked != KSPIN_OFF_LOCKED || kspinlock.saved_flags != KSPIN_OFF_SAVED_FLAGS
%error "struc kspinlock disagrees with asm/spinlock.h"
%endif
%if kspinlock_size != KSPIN_SIZE
%error "kspinlock size disagrees with asm/spinlock.h"
%endif

section .text

; ---------------------------------------------------------------------------------------------
; kspin_lock_irqsave -- disable interrupts (kernel), then take the lock.
;   void kspin_lock_irqsave(void *lock);          lock: struct kspinlock *
;   IN:  rdi = lock
;   OUT: none. On return this CPU holds the lock; kernel: IF = 0, the caller's RFLAGS are in
;        lock->saved_flags.
;   Clobbers: rax, rcx, flags.  Callee-saved used: none.
;   Stack: 8 bytes (pushfq/pop, above RSP only).
; Interrupts go off before the first attempt and stay off while spinning: an interrupt handler
; that wants the same lock must never run on a CPU that holds it or is about to.
; ---------------------------------------------------------------------------------------------
global kspin_lock_irqsave:function (kspin_lock_irqsave.end - kspin_lock_irqsave)
kspin_lock_irqsave:
        pushfq
        pop     rax                     ; the caller's RFLAGS (IF says if interrupts were on)
%ifdef KERNEL
        cli                             ; no interrupt on this CPU from here to the unlock
%endif
.try:   mov     ecx, KSPIN_HELD
        xchg    [rdi + kspinlock.locked], ecx   ; atomic swap (xchg with memory is locked):
        test    ecx, ecx                        ; old value 0 means we took it
        jnz     .wait
        ; Only the holder writes saved_flags, and only after acquiring: the previous holder
        ; read its own value before releasing.
        mov     [rdi + kspinlock.saved_flags], rax
        ret
.wait:  pause                           ; spin on plain reads (no bus locking, cache line stays
        cmp     dword [rdi + kspinlock.locked], 0  ; shared) until the lock looks free
        jne     .wait
        jmp     .try
.end:

; ---------------------------------------------------------------------------------------------
; kspin_unlock_irqrestore -- release the lock, then restore the interrupt state saved at lock.
;   void kspin_unlock_irqrestore(void *lock);     lock: struct kspinlock *
;   IN:  rdi = lock, held by this CPU
;   OUT: none. Kernel: IF = 1 iff it was 1 when kspin_lock_irqsave was called.
;   Clobbers: rax, flags.  Callee-saved used: none.  Stack: none.
; Locks must be released in LIFO order: the inner lock saved IF = 0, so releasing it leaves
; interrupts off and only the outermost release turns them back on.
; ---------------------------------------------------------------------------------------------
global kspin_unlock_irqrestore:function (kspin_unlock_irqrestore.end - kspin_unlock_irqrestore)
kspin_unlock_irqrestore:
        ; Read saved_flags while still holding the lock: once it is released the next
        ; holder overwrites it.
        mov     rax, [rdi + kspinlock.saved_flags]
        ; Release: a plain store. x86 (TSO) keeps earlier loads and stores before it, so the
        ; critical section is complete when another CPU sees the lock free.
        mov     dword [rdi + kspinlock.locked], 0
%ifdef KERNEL
        test    eax, KSPIN_RFLAGS_IF
        jz      .ret                    ; interrupts were off before the lock: keep them off
        sti                             ; were on: back on (after the next instruction)
.ret:
%endif
        ret
.end:

section .note.GNU-stack noalloc noexec nowrite progbits
