; asm/string.asm -- memset/memcpy/memmove/memcmp for kheap, the kernel and the host library.
; Always exports kmemset/kmemcpy/kmemmove/kmemcmp (what mm/ calls). Assembled with -DKERNEL it
; also exports memset/memcpy/memmove/memcmp at the same addresses, because gcc emits calls to
; those even with -ffreestanding. Host builds (no KERNEL) must not replace the C library's.
; General registers only: the kernel runs with OSFXSR off and its C is -mgeneral-regs-only.

default rel

; Sizes below SMALL_MAX are copied by loading every byte into registers before the first
; store (overlap-safe in both directions, used by memmove too). At REP_MIN and above the
; ERMSB `rep movsb`/`rep stosb` microcode is faster than a qword loop; in between: qword loop.
SMALL_MAX       equ 32
REP_MIN         equ 256
BYTE_BROADCAST  equ 0x0101010101010101  ; multiplying a byte by this repeats it in all 8 lanes

; EXPORT kname, name: after a routine's .end label, make kname a global function symbol with its
; size (for debuggers and perf), and under KERNEL the standard C name on the same address too.
%macro EXPORT 2
        global  %1:function (%1.end - %1)
%ifdef KERNEL
        global  %2:function (%1.end - %2)
%endif
%endmacro

section .text

; ---------------------------------------------------------------------------------------------
; kmemset -- fill n bytes at dst with the byte value c.
;   void *kmemset(void *dst, int c, size_t n);
;   IN:  rdi = dst, esi = c (only the low byte counts), rdx = n (0 allowed)
;   OUT: rax = dst
;   Clobbers: rcx, rdi, r8, r9, flags (DF stays clear).  Callee-saved used: none.
;   Stack: none.
; ---------------------------------------------------------------------------------------------
%ifdef KERNEL
memset:
%endif
kmemset:
        mov     r9, rdi                 ; keep dst for the return value
        movzx   eax, sil                ; the fill byte, zero-extended
        cmp     rdx, REP_MIN
        jae     .rep
        mov     r8, BYTE_BROADCAST
        imul    rax, r8                 ; fill byte in all 8 lanes of rax
        cmp     rdx, 8
        jb      .below8
        ; 8..REP_MIN-1: qwords from the start, then one qword ending exactly at dst+n (it may
        ; overlap the last loop store; writing the same value twice is harmless).
        lea     rcx, [rdi + rdx - 8]    ; address of the final qword
.qloop: mov     [rdi], rax
        add     rdi, 8
        cmp     rdi, rcx
        jb      .qloop
        mov     [rcx], rax
        mov     rax, r9
        ret
.below8:                                ; 0..7: two overlapping stores cover the range
        cmp     edx, 4
        jb      .below4
        mov     [rdi], eax              ; 4..7: first and last dword
        mov     [rdi + rdx - 4], eax
        mov     rax, r9
        ret
.below4:
        test    edx, edx
        jz      .done                   ; n == 0: touch nothing
        mov     [rdi], al               ; 1..3: first byte, then the last word if n >= 2
        cmp     edx, 2
        jb      .done
        mov     [rdi + rdx - 2], ax
.done:  mov     rax, r9
        ret
.rep:   mov     rcx, rdx                ; large: microcoded fill, al = byte, rcx = count
        rep stosb
        mov     rax, r9
        ret
.end:
        EXPORT  kmemset, memset

; ---------------------------------------------------------------------------------------------
; kmemcpy -- copy n bytes from src to dst; the ranges must not overlap (kmemmove if they may).
;   void *kmemcpy(void *restrict dst, const void *restrict src, size_t n);
;   IN:  rdi = dst, rsi = src, rdx = n (0 allowed)
;   OUT: rax = dst
;   Clobbers: rcx, rsi, rdi, r8, r9, r10, r11, flags (DF stays clear).
;   Callee-saved used: none.  Stack: none.
;   Entry points .small and .forward are also used by kmemmove: both are correct for
;   overlapping ranges with dst <= src (and .small for any overlap).
; ---------------------------------------------------------------------------------------------
%ifdef KERNEL
memcpy:
%endif
kmemcpy:
        cmp     rdx, SMALL_MAX
        ja      .forward
.small:                                 ; n <= SMALL_MAX: all loads happen before any store
        mov     rax, rdi                ; return value
        cmp     edx, 16
        ja      .from17
        cmp     edx, 8
        jae     .from8
        cmp     edx, 4
        jae     .from4
        test    edx, edx
        jz      .ret
        movzx   ecx, byte [rsi]         ; 1..3: first byte and last word (n >= 2)
        cmp     edx, 2
        jb      .one
        movzx   r8d, word [rsi + rdx - 2]
        mov     [rdi + rdx - 2], r8w
.one:   mov     [rdi], cl
.ret:   ret
.from4: mov     ecx, [rsi]              ; 4..7: first and last dword
        mov     r8d, [rsi + rdx - 4]
        mov     [rdi], ecx
        mov     [rdi + rdx - 4], r8d
        ret
.from8: mov     rcx, [rsi]              ; 8..16: first and last qword
        mov     r8, [rsi + rdx - 8]
        mov     [rdi], rcx
        mov     [rdi + rdx - 8], r8
        ret
.from17:                                ; 17..32: first two and last two qwords
        mov     rcx, [rsi]
        mov     r8, [rsi + 8]
        mov     r9, [rsi + rdx - 16]
        mov     r10, [rsi + rdx - 8]
        mov     [rdi], rcx
        mov     [rdi + 8], r8
        mov     [rdi + rdx - 16], r9
        mov     [rdi + rdx - 8], r10
        ret

.forward:                               ; n > SMALL_MAX, copying from low to high addresses
        mov     rax, rdi                ; return value
        cmp     rdx, REP_MIN
        jae     .rep
        ; Qword loop. The last qword is loaded first and stored last, so it may overlap the
        ; loop's final store. With dst < src overlapping, every load still precedes the
        ; stores that could reach it, because stores trail loads by src - dst bytes.
        mov     r11, [rsi + rdx - 8]    ; tail qword (original bytes)
        lea     r10, [rdi + rdx - 8]    ; where the tail goes
        sub     rsi, rdi                ; rsi = src - dst: one index walks both buffers
.qloop: mov     rcx, [rdi + rsi]
        mov     [rdi], rcx
        add     rdi, 8
        cmp     rdi, r10
        jb      .qloop
        mov     [r10], r11
        ret
.rep:   mov     rcx, rdx                ; large: byte-exact microcoded copy. Architecturally
        rep movsb                       ; sequential, so also right for dst < src overlap.
        ret
.end:
        EXPORT  kmemcpy, memcpy

; ---------------------------------------------------------------------------------------------
; kmemmove -- copy n bytes from src to dst; the ranges may overlap in either direction.
;   void *kmemmove(void *dst, const void *src, size_t n);
;   IN:  rdi = dst, rsi = src, rdx = n (0 allowed)
;   OUT: rax = dst
;   Clobbers: rcx, rsi, rdi, r8, r9, r10, r11, flags. DF is never set (the backward copy
;   is a qword loop, not std/rep movsb, which has no fast-string path anyway).
;   Callee-saved used: none.  Stack: none.
; ---------------------------------------------------------------------------------------------
%ifdef KERNEL
memmove:
%endif
kmemmove:
        cmp     rdx, SMALL_MAX
        jbe     kmemcpy.small           ; loads everything before storing: any overlap is fine
        mov     rax, rdi
        sub     rax, rsi                ; dst - src, unsigned
        cmp     rax, rdx
        jae     kmemcpy.forward         ; dst < src (wraps high) or dst >= src + n: forward ok
        ; dst overlaps src from above (src < dst < src + n; dst == src lands here too, harmless):
        ; copy qwords from the end down. The head qword is loaded before any store and
        ; written last; loads run ahead of stores (downwards) by dst - src bytes.
        mov     rax, rdi                ; return value
        mov     r8, [rsi]               ; head qword (original bytes)
        lea     rcx, [rdx - 8]          ; offset of the next qword, from the top down
.back:  mov     r9, [rsi + rcx]
        mov     [rdi + rcx], r9
        sub     rcx, 8
        jg      .back                   ; until the offset reaches 0 or below: head covers it
        mov     [rdi], r8
        ret
.end:
        EXPORT  kmemmove, memmove

; ---------------------------------------------------------------------------------------------
; kmemcmp -- compare n bytes as unsigned chars.
;   int kmemcmp(const void *a, const void *b, size_t n);
;   IN:  rdi = a, rsi = b, rdx = n (0 allowed)
;   OUT: eax < 0, 0 or > 0 as the first differing byte of a is below, (none) or above b's.
;   Clobbers: rcx, rdx, rsi, rdi, r8, flags.  Callee-saved used: none.  Stack: none.
;   Reads only bytes inside [a, a+n) and [b, b+n).
; ---------------------------------------------------------------------------------------------
%ifdef KERNEL
memcmp:
%endif
kmemcmp:
        cmp     rdx, 8
        jb      .bytes
.qloop: mov     rcx, [rdi]              ; 8 bytes of each side at a time
        mov     r8, [rsi]
        cmp     rcx, r8
        jne     .qdiff
        add     rdi, 8
        add     rsi, 8
        sub     rdx, 8
        cmp     rdx, 8
        jae     .qloop
.bytes: test    rdx, rdx                ; 0..7 bytes left
        jz      .equal
.bloop: movzx   eax, byte [rdi]
        movzx   ecx, byte [rsi]
        sub     eax, ecx                ; byte difference; both zero-extended, so signed-correct
        jnz     .ret
        inc     rdi
        inc     rsi
        dec     rdx
        jnz     .bloop
.equal: xor     eax, eax
.ret:   ret
.qdiff: ; Byte-swapping makes the lowest-addressed byte the most significant, so an unsigned
        ; qword comparison orders the pair by its first differing byte.
        bswap   rcx
        bswap   r8
        cmp     rcx, r8
        sbb     eax, eax                ; -1 if a's qword is below, else 0
        or      eax, 1                  ; -> -1 or +1
        ret
.end:
        EXPORT  kmemcmp, memcmp

section .note.GNU-stack noalloc noexec nowrite progbits
