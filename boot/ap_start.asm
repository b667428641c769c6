; ap_start.asm -- the start-up code of the other CPUs (APs). kernel/smp.c copies the bytes
; between ap_tramp_start and ap_tramp_end to AP_TRAMP_BASE (below 1 MiB, page aligned: the
; SIPI vector is its page number), fills in the parameter block at its end, and sends
; INIT-SIPI-SIPI. The AP starts in real mode at AP_TRAMP_BASE, enters protected mode on the
; trampoline's own GDT, then long mode on the boot page tables (CR3 from the parameters), loads
; the kernel's GDT and calls entry(arg) on the stack it was given. Position-dependent on
; AP_TRAMP_BASE only: every address is T(label), an assemble-time constant.
default rel

AP_TRAMP_BASE   equ 0x8000              ; kernel/smp.c: SMP_TRAMP_BASE must match
%include "boot/long_mode.inc"

; The trampoline's GDT: the kernel's code and data selectors (boot.asm's gdt64) at the same
; offsets, so they stay valid after the switch to the kernel's GDT, plus 32-bit code.
SEL_CODE64      equ 0x08
SEL_DATA        equ 0x10
SEL_CODE32      equ 0x18

%define T(x) (AP_TRAMP_BASE + (x) - ap_tramp_start)

global ap_tramp_start, ap_tramp_end, ap_tramp_params

section .rodata
align 16
ap_tramp_start:

bits 16
; ap_real -- the SIPI lands here (CS = AP_TRAMP_BASE >> 4, IP = 0), interrupts off.
ap_real:
    cli
    cld
    xor ax, ax
    mov ds, ax
    lgdt [T(tramp_gdt_ptr)]
    mov eax, cr0
    or eax, CR0_PE
    mov cr0, eax
    jmp dword SEL_CODE32:T(ap_protected)

bits 32
; ap_protected -- PAE, the boot page tables, EFER.LME, paging: compatibility mode.
ap_protected:
    mov ax, SEL_DATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    LONG_MODE_ON [T(ap_tramp_params.cr3)]
    jmp SEL_CODE64:T(ap_long)

bits 64
; ap_long -- the kernel's GDT, the AP's stack, entry(arg). entry never returns.
ap_long:
    DATA_SEGMENTS SEL_DATA
    mov rax, [abs T(ap_tramp_params.gdtr)]
    lgdt [rax]
    mov rsp, [abs T(ap_tramp_params.stack)]
    mov rdi, [abs T(ap_tramp_params.arg)]
    mov rax, [abs T(ap_tramp_params.entry)]
    xor ebp, ebp
    call rax
.halt:
    cli
    hlt
    jmp .halt

align 8
tramp_gdt:
    dq 0
    dq 0x00AF9A000000FFFF               ; 0x08: 64-bit code
    dq 0x00CF92000000FFFF               ; 0x10: flat data (4 GiB, for protected mode)
    dq 0x00CF9A000000FFFF               ; 0x18: flat 32-bit code
tramp_gdt_ptr:
    dw $ - tramp_gdt - 1
    dd T(tramp_gdt)

; Filled in by kernel/smp.c (struct smp_tramp_params) before each SIPI.
align 8
ap_tramp_params:
.cr3:   dq 0                            ; the BSP's CR3 (below 4 GiB)
.gdtr:  dq 0                            ; address of the kernel's GDT pointer (gdt64.pointer)
.stack: dq 0                            ; top of this AP's stack, 16-byte aligned
.entry: dq 0                            ; void entry(uint64_t arg)
.arg:   dq 0
ap_tramp_end:

%if T(ap_tramp_end) > AP_TRAMP_BASE + 4096
  %error the AP trampoline must fit its page
%endif

section .note.GNU-stack noalloc noexec nowrite progbits
