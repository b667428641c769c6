; isr.asm -- entry stubs for the 32 CPU exception vectors and the interrupt vectors the kernel
; uses (SMP: the local APIC timer and the APIC's spurious vector). Each pushes a uniform frame
; (vector, error code, general registers) and calls exception_handler(struct trap_frame *) or,
; for interrupts, irq_handler(struct trap_frame *), both in kernel/idt.c, which returns here.
; kernel/kernel.h declares the frame; keep the two in step.
default rel

extern exception_handler
extern irq_handler
global isr_stub_table, irq_stub_timer, irq_stub_spurious

IRQ_VECTOR_TIMER    equ 0x40            ; kernel/kernel.h: IRQ_VECTOR_TIMER
IRQ_VECTOR_SPURIOUS equ 0xFF            ; kernel/kernel.h: IRQ_VECTOR_SPURIOUS

; Vectors for which the CPU pushes an error code itself: #DF 8, #TS 10, #NP 11, #SS 12,
; #GP 13, #PF 14, #AC 17, #CP 21, #VC 29, #SX 30.
%define HAS_ERROR_CODE(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

section .text
bits 64

%assign vec 0
%rep 32
isr_stub_ %+ vec:
%if HAS_ERROR_CODE(vec) == 0
    push 0                              ; dummy error code keeps the frame uniform
%endif
    push vec
    jmp isr_common
%assign vec vec + 1
%endrep

; irq_stub_timer, irq_stub_spurious -- interrupt entries: no error code from the CPU.
irq_stub_timer:
    push 0
    push IRQ_VECTOR_TIMER
    jmp irq_common
irq_stub_spurious:
    push 0
    push IRQ_VECTOR_SPURIOUS
    jmp irq_common

; SAVE_REGS / RESTORE_REGS -- the general registers of struct trap_frame, r15 lowest
%macro SAVE_REGS 0
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
%endmacro
%macro RESTORE_REGS 0
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
%endmacro

; irq_common -- save the registers, call irq_handler(frame), restore them and iretq.
; IN: stack = [vector][0][RIP][CS][RFLAGS][RSP][SS]; the interrupted code may have had any RSP
; alignment, so RSP is aligned here before the call (and restored from rbp after it).
irq_common:
    SAVE_REGS
    cld
    mov rdi, rsp
    mov rbp, rsp
    and rsp, -16
    call irq_handler
    mov rsp, rbp
    RESTORE_REGS
    add rsp, 16                         ; vector and error code
    iretq

; isr_common -- save the general registers and call exception_handler(frame).
; IN: stack = [vector][error code][RIP][CS][RFLAGS][RSP][SS] (CPU aligned RSP to 16 first).
; 7 + 15 qwords = 176 bytes: RSP stays 16-byte aligned at the call. Restores all and iretq.
isr_common:
    SAVE_REGS
    cld
    mov rdi, rsp
    call exception_handler
    RESTORE_REGS
    add rsp, 16                         ; vector and error code
    iretq

section .rodata
align 8
isr_stub_table:                         ; isr_stub_table[v] = address of the stub for vector v
%assign vec 0
%rep 32
    dq isr_stub_ %+ vec
%assign vec vec + 1
%endrep

section .note.GNU-stack noalloc noexec nowrite progbits
