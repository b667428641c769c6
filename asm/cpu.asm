; cpu.asm -- port I/O and CPU helpers for the kernel (kernel/, tests/kernel/): the C side
; declares them in kernel/cpu.h. System V AMD64 calling convention; none uses the stack
; beyond its return address unless stated.
default rel

QEMU_EXIT_PORT  equ 0xF4                ; -device isa-debug-exit,iobase=0xf4: exits with (v<<1)|1
MSR_EFER        equ 0xC0000080

section .text
bits 64

; outb -- write a byte to an I/O port.
; void outb(uint16_t port, uint8_t value);
; IN: di = port, sil = value. OUT: none. Clobbers: rax, rdx.
global outb
outb:
    mov edx, edi
    mov eax, esi
    out dx, al
    ret

; inb -- read a byte from an I/O port.
; uint8_t inb(uint16_t port);
; IN: di = port. OUT: al = value (rax zero-extended). Clobbers: rdx.
global inb
inb:
    mov edx, edi
    xor eax, eax
    in al, dx
    ret

; outl -- write a dword to an I/O port.
; void outl(uint16_t port, uint32_t value);
; IN: di = port, esi = value. OUT: none. Clobbers: rax, rdx.
global outl
outl:
    mov edx, edi
    mov eax, esi
    out dx, eax
    ret

; qemu_exit -- ask QEMU's isa-debug-exit device to exit with status (code << 1) | 1.
; Falls through to a halt loop when the device is absent (real hardware).
; void qemu_exit(uint32_t code) __attribute__((noreturn));
; IN: edi = code. Does not return.
global qemu_exit
qemu_exit:
    mov eax, edi
    mov edx, QEMU_EXIT_PORT
    out dx, eax
    ; fall through

; cpu_halt_forever -- disable interrupts and halt for good.
; void cpu_halt_forever(void) __attribute__((noreturn));
global cpu_halt_forever
cpu_halt_forever:
    cli
.again:
    hlt
    jmp .again

; read_cr0, read_cr2, read_cr3, read_cr4 -- the control registers.
; uint64_t read_crN(void);  OUT: rax.
global read_cr0, read_cr2, read_cr3, read_cr4
read_cr0:
    mov rax, cr0
    ret
read_cr2:
    mov rax, cr2
    ret
read_cr3:
    mov rax, cr3
    ret
read_cr4:
    mov rax, cr4
    ret

; rdmsr64 -- read a model-specific register.
; uint64_t rdmsr64(uint32_t msr);
; IN: edi = MSR number. OUT: rax = value. Clobbers: rcx, rdx.
global rdmsr64
rdmsr64:
    mov ecx, edi
    rdmsr
    shl rdx, 32
    or rax, rdx
    ret

; wrmsr64 -- write a model-specific register.
; void wrmsr64(uint32_t msr, uint64_t value);
; IN: edi = msr, rsi = value. OUT: none. Clobbers: rax, rcx, rdx.
global wrmsr64
wrmsr64:
    mov ecx, edi
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    wrmsr
    ret

; read_efer -- the EFER MSR (LME bit 8, LMA bit 10).
; uint64_t read_efer(void);  OUT: rax. Clobbers: rcx, rdx.
global read_efer
read_efer:
    mov edi, MSR_EFER
    jmp rdmsr64

; read_cs -- the current code segment selector.
; uint16_t read_cs(void);  OUT: ax (rax zero-extended).
global read_cs
read_cs:
    xor eax, eax
    mov ax, cs
    ret

; read_rflags -- the flags register.
; uint64_t read_rflags(void);  OUT: rax. Stack: one push.
global read_rflags
read_rflags:
    pushfq
    pop rax
    ret

; load_idt -- load the IDT register.
; void load_idt(const void *idtr);  (idtr: 2-byte limit then 8-byte base)
; IN: rdi = address of the 10-byte IDTR image.
global load_idt
load_idt:
    lidt [rdi]
    ret

; rdtsc64 -- the time-stamp counter (not serialising).
; uint64_t rdtsc64(void);  OUT: rax. Clobbers: rdx.
global rdtsc64
rdtsc64:
    rdtsc
    shl rdx, 32
    or rax, rdx
    ret

; cpu_pause -- spin-wait hint.
; void cpu_pause(void);
global cpu_pause
cpu_pause:
    pause
    ret

; irq_enable -- set RFLAGS.IF: maskable interrupts on (after the next instruction).
; void irq_enable(void);  Only safe once every interrupt source that can fire has a handler,
; or is masked (the test kernel's IDT covers the 32 exceptions only: see pic_mask_all).
global irq_enable
irq_enable:
    sti
    ret

; irq_disable -- clear RFLAGS.IF: maskable interrupts off.
; void irq_disable(void);
global irq_disable
irq_disable:
    cli
    ret

section .note.GNU-stack noalloc noexec nowrite progbits
