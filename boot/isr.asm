; isr.asm -- entry stubs for the 32 CPU exception vectors. Each pushes a uniform frame
; (vector, error code, general registers) and calls exception_handler(struct trap_frame *)
; from kernel/idt.c. kernel/kernel.h declares the frame; keep the two in step.
default rel

extern exception_handler
global isr_stub_table

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

; isr_common -- save the general registers and call exception_handler(frame).
; IN: stack = [vector][error code][RIP][CS][RFLAGS][RSP][SS] (CPU aligned RSP to 16 first).
; 7 + 15 qwords = 176 bytes: RSP stays 16-byte aligned at the call. Restores all and iretq.
isr_common:
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
    cld
    mov rdi, rsp
    call exception_handler
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
