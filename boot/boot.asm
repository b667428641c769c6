; boot.asm -- Multiboot1 + Multiboot2 headers and the 32-bit entry of build/kernel.elf.
; `qemu -kernel` (Multiboot1, a.out kludge) and GRUB `multiboot2` enter _start in 32-bit
; protected mode; we check the CPU, build page tables for the first 4 GiB (2 MiB pages: an
; identity map, the same memory at KERNEL_PHYS_MAP (the direct map) and the first 2 GiB at
; 0xffffffff80000000), switch to long mode and call kmain(magic, info). Failures are reported
; on COM1. Linked at KERNEL_VMA + load address (0, or 0xffffffff80000000 for the higher-half
; kernel: then the 32-bit code uses PHYS() addresses, and the 64-bit entry moves to the higher
; half and removes the identity map before kmain).
default rel

%ifndef KERNEL_VMA
  %define KERNEL_VMA 0
%endif
%define PHYS(x) ((x) - KERNEL_VMA)
KERNEL_PHYS_MAP     equ 0xFFFF800000000000  ; kernel/kernel.h: the direct map of physical memory
PML4_DIRECT         equ 256             ; PML4 slot of KERNEL_PHYS_MAP
PML4_HIGH           equ 511             ; PML4 slot of 0xffffffff80000000 (the last 2 GiB)
PDPT_HIGH_FIRST     equ 510             ; its PDPT slots 510, 511: physical 0..2 GiB

; ---- Multiboot constants -------------------------------------------------------------------
MB1_HEADER_MAGIC    equ 0x1BADB002
MB1_BOOT_MAGIC      equ 0x2BADB002      ; EAX from a Multiboot1 loader
MB1_FLAG_MEMINFO    equ 1 << 1          ; ask for mem_* and the memory map
MB1_FLAG_AOUT_KLUDGE equ 1 << 16        ; load addresses are in the header (QEMU needs it)
MB1_FLAGS           equ MB1_FLAG_MEMINFO | MB1_FLAG_AOUT_KLUDGE

MB2_HEADER_MAGIC    equ 0xE85250D6
MB2_BOOT_MAGIC      equ 0x36D76289      ; EAX from a Multiboot2 loader
MB2_ARCH_I386       equ 0

; ---- CPU constants -------------------------------------------------------------------------
%include "boot/long_mode.inc"
EFLAGS_ID           equ 1 << 21
CPUID_EXT_BASE      equ 0x80000000
CPUID_EXT_FEATURES  equ 0x80000001
CPUID_EXT_LM        equ 1 << 29         ; EDX of 0x80000001: long mode
PTE_PRESENT         equ 1 << 0
PTE_WRITE           equ 1 << 1
PTE_HUGE            equ 1 << 7          ; in a page directory entry: a 2 MiB page
PAGE_2M             equ 0x200000
IDENTITY_GIB        equ 4               ; page directories, one per GiB identity mapped
STACK_SIZE          equ 64 * 1024

; ---- 16550 on COM1, used only for boot errors before kmain ----------------------------------
COM1                equ 0x3F8
UART_LSR_THRE       equ 1 << 5          ; line status: transmit holding register empty

extern kmain
extern _kernel_start, _data_end, _bss_end
global _start, boot_stack_top, boot_kmain_rsp, boot_gdt_pointer, boot_pdpt

; ---- Headers -------------------------------------------------------------------------------
section .multiboot
align 4
mb1_header:
    dd MB1_HEADER_MAGIC
    dd MB1_FLAGS
    dd 0x100000000 - (MB1_HEADER_MAGIC + MB1_FLAGS)   ; checksum: the three sum to 0
    dd PHYS(mb1_header)                 ; header_addr (physical addresses, all five)
    dd PHYS(_kernel_start)              ; load_addr: the file is contiguous from here ...
    dd PHYS(_data_end)                  ; load_end_addr: ... to here
    dd PHYS(_bss_end)                   ; bss_end_addr: zeroed by the loader (heap included)
    dd PHYS(_start)                     ; entry_addr

align 8
mb2_header:
    dd MB2_HEADER_MAGIC
    dd MB2_ARCH_I386
    dd mb2_header_end - mb2_header
    dd 0x100000000 - (MB2_HEADER_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    dw 0, 0                             ; end tag: type 0, flags 0, size 8
    dd 8
mb2_header_end:

; ---- 32-bit entry --------------------------------------------------------------------------
section .text
bits 32

; _start -- loader entry: check, set up long mode, call kmain. Never returns.
; IN: eax = Multiboot magic, ebx = physical address of the boot information.
; Stack: boot_stack (the loader's stack is not trusted).
_start:
    cli
    cld
    mov esp, PHYS(boot_stack_top)
    mov [PHYS(boot_magic)], eax         ; cpuid clobbers ebx: save both first
    mov [PHYS(boot_info)], ebx
    call serial_init32
    call check_multiboot
    call check_cpuid
    call check_long_mode
    call set_up_page_tables
    call enable_paging
    lgdt [PHYS(gdt64.pointer32)]
    jmp gdt64.code:PHYS(long_mode_start)

; check_multiboot -- halt with a message unless a Multiboot1/2 loader started us.
; IN: [boot_magic]. Clobbers: eax, esi.
check_multiboot:
    mov eax, [PHYS(boot_magic)]
    cmp eax, MB2_BOOT_MAGIC
    je .ok
    cmp eax, MB1_BOOT_MAGIC
    je .ok
    mov esi, PHYS(msg_no_multiboot)
    jmp boot_fail
.ok:
    ret

; check_cpuid -- halt with a message unless EFLAGS.ID can be flipped (CPUID exists).
; Clobbers: eax, ecx, esi.
check_cpuid:
    pushfd
    pop eax
    mov ecx, eax
    xor eax, EFLAGS_ID
    push eax
    popfd
    pushfd
    pop eax
    push ecx                            ; restore the original EFLAGS
    popfd
    cmp eax, ecx
    je .no_cpuid
    ret
.no_cpuid:
    mov esi, PHYS(msg_no_cpuid)
    jmp boot_fail

; check_long_mode -- halt with a message unless extended CPUID exists and reports long mode.
; Clobbers: eax, ebx, ecx, edx, esi.
check_long_mode:
    mov eax, CPUID_EXT_BASE
    cpuid
    cmp eax, CPUID_EXT_FEATURES
    jb .no_ext
    mov eax, CPUID_EXT_FEATURES
    cpuid
    test edx, CPUID_EXT_LM
    jz .no_lm
    ret
.no_ext:
    mov esi, PHYS(msg_no_ext_cpuid)
    jmp boot_fail
.no_lm:
    mov esi, PHYS(msg_no_long_mode)
    jmp boot_fail

; set_up_page_tables -- map [0, 4 GiB) with 2 MiB pages: PML4[0] (identity) and
; PML4[PML4_DIRECT] (the direct map) -> PDPT, PDPT[0..3] -> 4 page directories of 512 huge
; pages; PML4[PML4_HIGH] -> pdpt_high, whose slots 510 and 511 map physical [0, 2 GiB) at
; 0xffffffff80000000 (the higher-half kernel). The tables are in .bss (zeroed).
; Clobbers: eax, ecx, edi.
set_up_page_tables:
    mov eax, PHYS(pdpt)
    or eax, PTE_PRESENT | PTE_WRITE
    mov [PHYS(pml4)], eax
    mov [PHYS(pml4) + PML4_DIRECT * 8], eax
    mov eax, PHYS(pdpt_high)
    or eax, PTE_PRESENT | PTE_WRITE
    mov [PHYS(pml4) + PML4_HIGH * 8], eax
    mov eax, PHYS(page_dirs)
    or eax, PTE_PRESENT | PTE_WRITE
    mov [PHYS(pdpt_high) + PDPT_HIGH_FIRST * 8], eax
    add eax, 4096
    mov [PHYS(pdpt_high) + (PDPT_HIGH_FIRST + 1) * 8], eax
    xor ecx, ecx
.pdpt_entry:                            ; PDPT[ecx] -> page_dirs + ecx * 4 KiB
    mov eax, ecx
    shl eax, 12
    add eax, PHYS(page_dirs)
    or eax, PTE_PRESENT | PTE_WRITE
    mov [PHYS(pdpt) + ecx * 8], eax
    inc ecx
    cmp ecx, IDENTITY_GIB
    jb .pdpt_entry
    xor ecx, ecx
    mov edi, PHYS(page_dirs)
.pd_entry:                              ; entry ecx maps ecx * 2 MiB (64-bit: high half in edx)
    mov eax, ecx
    and eax, 0x7FF                      ; low 11 bits of the page number fit in the low dword
    shl eax, 21
    or eax, PTE_PRESENT | PTE_WRITE | PTE_HUGE
    mov [edi + ecx * 8], eax
    mov eax, ecx
    shr eax, 11                         ; page number bits 11+ -> address bits 32+
    mov [edi + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, IDENTITY_GIB * 512
    jb .pd_entry
    ret

; enable_paging -- CR3 = pml4, CR4.PAE, EFER.LME, then CR0.PG (enters compatibility mode).
; Clobbers: eax, ecx, edx.
enable_paging:
    LONG_MODE_ON PHYS(pml4)
    ret

; serial_init32 -- COM1 at 115200 8N1, FIFOs on (same set-up as kernel/serial.c).
; Clobbers: eax, edx.
serial_init32:
    mov dx, COM1 + 1                    ; IER: no interrupts
    xor al, al
    out dx, al
    mov dx, COM1 + 3                    ; LCR: DLAB on to set the divisor
    mov al, 0x80
    out dx, al
    mov dx, COM1 + 0                    ; divisor 1 = 115200 baud
    mov al, 1
    out dx, al
    mov dx, COM1 + 1
    xor al, al
    out dx, al
    mov dx, COM1 + 3                    ; LCR: 8 data bits, no parity, 1 stop bit
    mov al, 0x03
    out dx, al
    mov dx, COM1 + 2                    ; FCR: enable and clear FIFOs, 14-byte threshold
    mov al, 0xC7
    out dx, al
    mov dx, COM1 + 4                    ; MCR: DTR, RTS, OUT2
    mov al, 0x0B
    out dx, al
    ret

; boot_fail -- print the NUL-terminated message at esi on COM1, then halt forever.
; IN: esi = message. Does not return.
boot_fail:
    lodsb
    test al, al
    jz .halt
    mov ah, al
    mov dx, COM1 + 5
.wait:                                  ; wait until the transmitter can take a byte
    in al, dx
    test al, UART_LSR_THRE
    jz .wait
    mov dx, COM1
    mov al, ah
    out dx, al
    jmp boot_fail
.halt:
    cli
    hlt
    jmp .halt

; ---- 64-bit entry --------------------------------------------------------------------------
bits 64

; long_mode_start -- first 64-bit code: data segments, 16-byte aligned stack, kmain(magic, info).
; boot_kmain_rsp records RSP just before the call (the ABI wants it 16-byte aligned).
long_mode_start:
    DATA_SEGMENTS gdt64.data
%if KERNEL_VMA
    mov rax, .high                      ; to the higher half (still running identity mapped)
    jmp rax
.high:
    lgdt [gdt64.pointer]                ; the GDT at its higher-half address
    mov qword [pml4], 0                 ; the identity map goes: a low address faults now
    mov rax, cr3
    mov cr3, rax
%endif
    mov rsp, boot_stack_top
    xor ebp, ebp
    mov edi, [boot_magic]
    mov esi, [boot_info]
    mov [boot_kmain_rsp], rsp
    call kmain
.halt:                                  ; kmain exits QEMU; on real hardware we stop here
    cli
    hlt
    jmp .halt

; ---- Data ----------------------------------------------------------------------------------
section .rodata
align 8
gdt64:
    dq 0                                                ; null descriptor
.code: equ $ - gdt64
    dq (1 << 43) | (1 << 44) | (1 << 47) | (1 << 53)    ; exec, code/data, present, 64-bit
.data: equ $ - gdt64
    dq (1 << 41) | (1 << 44) | (1 << 47)                ; writable, code/data, present
.pointer:
    dw .pointer - gdt64 - 1
    dq gdt64
.pointer32:                             ; for lgdt in 32-bit mode: the physical address
    dw .pointer - gdt64 - 1
    dd PHYS(gdt64)
boot_gdt_pointer equ gdt64.pointer      ; for the APs (boot/ap_start.asm loads it)

msg_no_multiboot: db "kheap boot error: not started by a Multiboot loader (bad magic in EAX)", 13, 10, 0
msg_no_cpuid:     db "kheap boot error: this CPU has no CPUID instruction", 13, 10, 0
msg_no_ext_cpuid: db "kheap boot error: this CPU has no extended CPUID (leaf 0x80000001)", 13, 10, 0
msg_no_long_mode: db "kheap boot error: this CPU does not support 64-bit long mode", 13, 10, 0

section .data
align 8
boot_magic:     dd 0
boot_info:      dd 0
boot_kmain_rsp: dq 0

section .bss
alignb 4096
boot_pdpt equ pdpt                      ; the identity/direct PDPT (the higher-half APs need it)
pml4:       resb 4096
pdpt:       resb 4096
pdpt_high:  resb 4096
page_dirs:  resb 4096 * IDENTITY_GIB
alignb 16
boot_stack: resb STACK_SIZE
boot_stack_top:

section .note.GNU-stack noalloc noexec nowrite progbits
