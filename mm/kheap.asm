; kheap.asm -- kheap, a constant-time (TLSF) kernel heap: the API of mm/kheap.h and kheap_diag.h.
; Internal routines heap_* do the work for the heap in rbp, under its lock; public entries find
; the heap (the default one, or a checked kheap_t *), take the lock, note the caller's return
; address for error reports and call them. Block and list helpers live in kheap_block.inc, the
; front cache in kheap_quick.inc, the layout in kheap_layout.h (via the generated
; kheap_layout.inc and kheap_offsets.inc). Used by the test kernel and, assembled without
; -DKERNEL, by build/host/libkheap.a.

default rel
bits 64

%include "kheap_layout.inc"
%include "kheap_offsets.inc"

; KHEAP_DEBUG=1 (make KHEAP_DEBUG=1): poison, canary, trailer; see kheap_debug.inc.
%ifndef KHEAP_DEBUG
  %define KHEAP_DEBUG 0
%endif
; KHEAP_QUICK_DEPTH (make KHEAP_QUICK_DEPTH=N): the front cache's depth; 0 assembles it out.
; kheap.h gives the default (its indented #define is not copied into kheap_layout.inc, so a -D
; on the command line wins on both sides).
%ifndef KHEAP_QUICK_DEPTH
  %define KHEAP_QUICK_DEPTH KHEAP_QUICK_DEPTH_DEFAULT
%endif
%if KHEAP_QUICK_DEPTH > 0
  %define KH_QUICK 1
%else
  %define KH_QUICK 0
%endif
; kfree's inline fast path into the cache (release build; the debug build poisons, so it always
; goes through block_free and quick_push).
%if KH_QUICK && !KHEAP_DEBUG
  %define KH_QUICK_FAST 1
%else
  %define KH_QUICK_FAST 0
%endif

; Metadata bytes of a used block beyond its requested size: the header (and, in the debug
; build, the trailer and at least one canary byte).
%if KHEAP_DEBUG
  %define KH_META (KHEAP_HEADER_SIZE + KHEAP_DEBUG_EXTRA)
%else
  %define KH_META KHEAP_HEADER_SIZE
%endif

; Design constraints the code below relies on (the offsets themselves are generated from the C
; structures in kheap_layout.h, which checks the rest with _Static_assert).
%if KH_QUICK_ENTRY != KHEAP_ALIGN
  %error a front-cache entry per 16-byte size: the block size indexes the entries
%endif
%if KH_FREE_PREV != KH_FREE_NEXT + 8 || KH_QUICK_LINK != KHEAP_HEADER_SIZE
  %error free-block links: next, then prev; a cached block's link is its first payload word
%endif

; ---- the empty default heap ------------------------------------------------------------------
; kmalloc & co. use the heap kheap_default_heap points at: before kheap_init (and after a failed
; one) kheap_none, an empty control block with no region, so that they fail cleanly (NULL,
; KHEAP_E_BAD_PTR, KHEAP_E_NOT_INIT). Its hooks are always the default heap's: kheap_init gives
; them to each new default heap, whatever became of the old one's memory.
section .bss
alignb 64
kheap_none:     resb KH_CTL_BYTES
section .data
align 8
kheap_default_heap: dq kheap_none

section .text

; Every internal routine runs with rbp = the heap's control block (struct kh_ctl), set by the
; public entry and never changed below it (C callees and hooks preserve it: it is callee-saved).
; The macros of the .inc files name it KHB, so that the inline fast paths of kmalloc and kfree
; (MALLOC_FAST, FREE_FAST) can use them with the heap in r11 instead.
%define KHB rbp
%define CTL(f) [KHB + (f)]

%include "kheap_block.inc"
%if KHEAP_DEBUG
  %include "kheap_debug.inc"
%endif
%if KH_QUICK
  %include "kheap_quick.inc"
%endif
%include "kheap_slab.inc"

extern kmemcpy
extern kmemset
extern kheap_check_walk
extern kheap_walk_locked
extern kheap_leak_locked
extern kheap_restamp_locked

; =============================================================================================
; Internal routines: run under the lock, report misuse through heap_report.
; =============================================================================================

; heap_report -- count a misuse and hand it to the error handler with the public caller
; C: void heap_report(int code, void *ptr)
; IN edi = KHEAP_E_* code, rsi = offending pointer   OUT none
; clobbers caller-saved registers (the handler may); stack: the handler's (tail call)
static heap_report:function (heap_report.end - heap_report)
heap_report:
        inc     qword CTL(KH_CTL_ERRORS)
        mov     rax, CTL(KH_CTL_ERR_FN)
        test    rax, rax
        jz      .default                ; the default handler only counts
        mov     rdx, CTL(KH_CTL_CALLER)
        jmp     rax                     ; handler(code, ptr, caller) returns to our caller
.default:
        ret
.end:

; heap_report_user -- heap_report for a pointer that came from the caller (kfree, krealloc,
; ksize): if its header address p - 8 lies in no region of this heap (another heap's block,
; the control block, a gap) the report is KHEAP_E_BAD_PTR, whatever check failed.
; O(regions): only misuse gets here.
; C: void heap_report_user(int code, const void *p)
; IN edi = KHEAP_E_* code, rsi = p   OUT none; clobbers caller-saved; stack: the handler's
static heap_report_user:function (heap_report_user.end - heap_report_user)
heap_report_user:
        mov     rdx, CTL(KH_CTL_REGIONS)
        mov     rcx, CTL(KH_CTL_NREGIONS)       ; (a bound, should the list be corrupt)
.next:
        test    rdx, rdx
        jz      .foreign
        sub     rcx, 1
        jc      .foreign
        lea     rax, [rsi - KHEAP_HEADER_SIZE]  ; p's header address
        cmp     rax, rdx
        jb      .skip
        cmp     rax, [rdx + KH_RGN_END]
        jb      heap_report                     ; inside one of ours: report as found
.skip:
        mov     rdx, [rdx + KH_RGN_NEXT]
        jmp     .next
.foreign:
        mov     edi, KHEAP_E_BAD_PTR
        jmp     heap_report
.end:

; heap_lock / heap_unlock -- run the acquire / release hook, if any, with its context
; C: void heap_lock(void), void heap_unlock(void)
; IN none   OUT none; clobbers caller-saved registers (the hooks may); stack: the hook's
static heap_lock:function (heap_lock.end - heap_lock)
heap_lock:
        mov     rax, CTL(KH_CTL_LOCK_ACQ)
        jmp     heap_hook
.end:
static heap_unlock:function (heap_unlock.end - heap_unlock)
heap_unlock:
        mov     rax, CTL(KH_CTL_LOCK_REL)
.end:
static heap_hook:function (heap_hook.end - heap_hook)
heap_hook:
        test    rax, rax
        jz      .none
        mov     rdi, CTL(KH_CTL_LOCK_CTX)
        jmp     rax                     ; tail call: the hook returns to our caller
.none:
        ret
.end:

; BLOCK_REQUEST n, tmp, absurd -- turn n (in place) into the block size for an n-byte
; request, or jump to `absurd` if n > KH_MAX_REQUEST. tmp clobbered.
%macro BLOCK_REQUEST 3
        mov     %2, KH_MAX_REQUEST
        cmp     %1, %2
        ja      %3
        add     %1, KH_META + KHEAP_ALIGN - 1
        and     %1, -KHEAP_ALIGN
        mov     %2, KHEAP_MIN_BLOCK
        cmp     %1, %2
        cmovb   %1, %2
%endmacro

; block_request -- the block size for an n-byte request, or 0 if n is absurd
; C: uint64_t block_request(size_t n)   (max(KHEAP_MIN_BLOCK, round_up(n + KH_META, 16)))
; IN rdi = n   OUT rax = S or 0 (n > KH_MAX_REQUEST); clobbers rcx; stack: none
static block_request:function (block_request.end - block_request)
block_request:
        mov     rax, rdi
        BLOCK_REQUEST rax, rcx, .absurd
        ret
.absurd:
        xor     eax, eax
        ret
.end:

; block_from_user -- the used block behind a pointer from outside, or 0 after reporting why not
; C: uintptr_t block_from_user(const void *p)   (p != NULL)
; Rejects, reading no memory: p misaligned or outside [min, max) of the heap (KHEAP_E_BAD_PTR).
; Then reads the 8 bytes at p - 8 (which may lie in a gap between two regions) and rejects a
; header with bad check bits or a size running past the heap (KHEAP_E_BAD_HEADER) and a free
; or cached block (KHEAP_E_DOUBLE_FREE; in the debug build also poison where the header should
; be).
; IN rdi = p   OUT rax = H = p - 8 and rdx = its header word without check bits, or rax = 0
; clobbers rcx, rdx, rsi, r8 (and, on a report, caller-saved); rdi kept unless reported
; stack: 8 (+ the handler's)
static block_from_user:function (block_from_user.end - block_from_user)
block_from_user:
        test    dil, KHEAP_ALIGN - 1
        jnz     .bad_ptr
        lea     rsi, [rdi - KHEAP_HEADER_SIZE]
        cmp     rsi, CTL(KH_CTL_MIN)
        jb      .bad_ptr
        cmp     rdi, CTL(KH_CTL_MAX)
        jae     .bad_ptr
        cmp     rdi, CTL(KH_CTL_CPU_BLOCK)
        je      .bad_header             ; the heap's own block of per-CPU slots
        mov     r8, [rsi]
        BLOCK_CHECK r8, rsi, rdx, rcx, .bad_header
        test    dl, KH_F_FREE | KH_F_QUICK
        jnz     .double_free
        mov     rcx, rdx
        and     rcx, -KHEAP_ALIGN       ; S
        cmp     rcx, KHEAP_MIN_BLOCK
        jb      .bad_header             ; a sentinel or garbage
        mov     rax, CTL(KH_CTL_MAX)
        sub     rax, rsi
        cmp     rcx, rax
        jae     .bad_header             ; the next header would lie at or past the heap's end
        mov     rax, rsi
        ret
.bad_ptr:
        mov     eax, KHEAP_E_BAD_PTR
        jmp     .report
.bad_header:
        mov     eax, KHEAP_E_BAD_HEADER
%if KHEAP_DEBUG
        mov     rcx, KH_POISON_WORD     ; poison before p: p lies in freed memory (a stale
        cmp     [rdi - KHEAP_HEADER_SIZE], rcx  ; header of a merged block, or inside one)
        jne     .report
%else
        jmp     .report
%endif
.double_free:
        mov     eax, KHEAP_E_DOUBLE_FREE
.report:
        sub     rsp, 8
        mov     rsi, rdi
        mov     edi, eax
        call    heap_report_user
        add     rsp, 8
        xor     eax, eax
        ret
.end:

; heap_grow -- no block fits S bytes: ask the growth hook for memory and add it to the heap
; (not the empty default heap: kheap_init comes first)
; C: int heap_grow(uint64_t s)   (1 memory was added; 0 no hook, no memory, or it was refused)
; IN rdi = S   OUT eax; clobbers caller-saved (the hook may); stack: 32 + the hook's
static heap_grow:function (heap_grow.end - heap_grow)
heap_grow:
        mov     rax, CTL(KH_CTL_GROW)
        test    rax, rax
        jz      .none
        cmp     qword CTL(KH_CTL_NREGIONS), 0
        je      .none                   ; the empty default heap does not grow
        sub     rsp, 24                 ; [rsp] = start, filled by the hook
        mov     qword [rsp], 0
        mov     rsi, rsp
        call    rax                     ; size = grow(S, &start)
        mov     rdi, [rsp]
        mov     rsi, rax
        add     rsp, 24
        test    rsi, rsi
        jz      .none
        sub     rsp, 8
        call    region_grow
        add     rsp, 8
        test    eax, eax
        jnz     .none
        mov     eax, 1
        ret
.none:
        xor     eax, eax
        ret
.end:

; heap_alloc's [rsp]: which fallbacks of the search were tried (each at most once), and how
; many bad list heads were set aside (at most KH_ALLOC_RETRIES per call)
SEARCH_FLUSHED  equ 1                   ; the front cache went back to the lists
SEARCH_GROWN    equ 2                   ; the growth hook was asked
SEARCH_RECLAIMED equ 8                  ; the slab tier's spares and this CPU's stacks came back
SEARCH_RETRY    equ 16                  ; one more bad head detached or set aside

; heap_alloc -- take a block of at least S bytes off the free lists, split off the surplus
; C: uintptr_t heap_alloc(uint64_t s)   (S from block_request; 0 if nothing fits)
; The list head is not trusted: its header, size and links are checked first. A head that fails
; is reported once (KHEAP_E_FREELIST; in the debug build KHEAP_E_USE_AFTER_FREE when the head is
; a valid free block whose own links were overwritten) and its list is detached (bin_detach:
; never followed again, its blocks left on no list). A sound head whose right neighbour's
; header is bad (it would be rewritten) is reported (KHEAP_E_BAD_HEADER, the neighbour) and set
; aside: off its list, still free, on no list (its class marked detached), never handed out.
; Either way the search goes on with the other blocks, at most KH_ALLOC_RETRIES times per call
; (a constant), and kheap_verify gives such blocks back once the heap is sound again. Each
; header is hashed once to check it and once to write it. When no list has a block that fits,
; the front cache is flushed into the lists and the search retried, then the growth hook is
; asked (heap_grow) and the search retried: each once, so the call stays O(1).
; heap_alloc_try is the same search without any fallback (no flush, no reclaim, no growth):
; for a slab, which is only worth carving if the room is there (a small request that finds
; none is served as a block instead, with every fallback).
; IN rdi = S   OUT rax = H of a used block of S .. S + KHEAP_MIN_BLOCK - 16 bytes, or 0
; clobbers caller-saved; callee-saved: rbx, r12-r15; stack: 64
static heap_alloc_try:function (heap_alloc_try.end - heap_alloc_try)
heap_alloc_try:
        mov     esi, SEARCH_FLUSHED | SEARCH_GROWN | SEARCH_RECLAIMED
        jmp     heap_alloc.flags
.end:
static heap_alloc:function (heap_alloc.end - heap_alloc)
heap_alloc:
        xor     esi, esi
.flags:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        sub     rsp, 16
        mov     rbx, rdi
        mov     qword [rsp], rsi        ; what was tried: SEARCH_*
        ; 1. a list head that should fit (good fit, see bin_search); else flush the front
        ; cache, retry once; else grow, retry once
.search:
        mov     rdi, rbx
        call    bin_search
        test    rax, rax
        jnz     .found
%if KH_QUICK
        test    byte [rsp], SEARCH_FLUSHED
        jnz     .grow
        or      byte [rsp], SEARCH_FLUSHED
        call    quick_flush
        test    rax, rax
        jnz     .search
.grow:
%endif
        test    byte [rsp], SEARCH_RECLAIMED    ; spare slabs and this CPU's stacks back, once
        jnz     .grow_hook
        or      byte [rsp], SEARCH_RECLAIMED
        xor     edi, edi                ; (no trim: this allocation needs the room)
        call    slab_reclaim
        jmp     .search
.grow_hook:
        test    byte [rsp], SEARCH_GROWN
        jnz     .fail
        or      byte [rsp], SEARCH_GROWN
        mov     rdi, rbx
        call    heap_grow
        test    eax, eax
        jz      .fail
        jmp     .search
.found:
        mov     r12, rax                ; H
        mov     r10, rdx                ; the list it heads
        mov     r14d, edx               ; (kept across a report, should it be detached)
        ; 2. the head must be a valid free header, big enough, with links pointing back
        mov     rsi, [r12]
        BLOCK_CHECK rsi, r12, r13, rcx, .freelist
        test    r13b, KH_F_FREE
        jz      .freelist
        and     r13, -KHEAP_ALIGN       ; its size (a free block never has PREV_FREE)
        cmp     r13, rbx
        jb      .freelist
        HEAD_LINKS_OK r12, .freelist
        ; 3. the right neighbour's header must be valid: it is rewritten below
        lea     r14, [r12 + r13]        ; N
        mov     rsi, [r14]
        BLOCK_CHECK rsi, r14, r15, rcx, .bad_next
        ; 4. off the list; split when the surplus can be a block of its own
        BIN_POP r12, r10
%if KHEAP_DEBUG
        mov     rdi, r12                ; the part handed out must still be poison
        lea     rsi, [r12 + rbx]
        mov     rdx, r14
        call    dbg_take
%endif
        mov     rsi, r13
        sub     rsi, rbx
        cmp     rsi, KHEAP_MIN_BLOCK
        jb      .whole
        ; [ ------- free ------- ][N] => [ used S ][ free ][N]   (N keeps PREV_FREE)
        lea     rdi, [r12 + rbx]
        BLOCK_MAKE_FREE rdi, rsi
        mov     r13, rbx
        jmp     .mark_used
.whole:
        ; [ ------- free ------- ][N] => [ ------- used ------- ][N]   (N loses PREV_FREE)
        and     r15, ~KH_F_PREV_FREE
        BLOCK_STAMP r14, r15, rax
.mark_used:
        ; 5. used header; PREV_FREE clear: a free block's left neighbour is never free
        BLOCK_STAMP r12, r13, rax
        STATS_USED_ADD r13, rax
        mov     rax, r12
        jmp     .out
.freelist:
        ; a bad head: report it, detach its list, search the others
%if KHEAP_DEBUG
        mov     rdi, r12
        call    dbg_link_blame
        mov     edi, eax
%else
        mov     edi, KHEAP_E_FREELIST
%endif
        lea     rsi, [r12 + KHEAP_HEADER_SIZE]
        call    heap_report
        mov     edi, r14d
        call    bin_detach
        jmp     .retry
.bad_next:
        ; a sound head with a bad neighbour: off its list, set aside (free, on no list)
        BIN_POP r12, r10
        mov     edi, r10d
        call    bin_mark_detached
        mov     edi, KHEAP_E_BAD_HEADER
        lea     rsi, [r14 + KHEAP_HEADER_SIZE]
        call    heap_report
.retry:
        add     qword [rsp], SEARCH_RETRY
        cmp     qword [rsp], SEARCH_RETRY * KH_ALLOC_RETRIES
        jb      .search
.fail:
        xor     eax, eax
.out:
        add     rsp, 16
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; block_trim -- shrink used block H to `want` bytes, returning the tail to the free lists
; C: void block_trim(uintptr_t h, uint64_t want)   (nothing happens if the tail is < 32 bytes)
; The tail merges with a free right neighbour; a bad neighbour is reported and H stays whole.
; IN rdi = H (valid used header), rsi = want (multiple of 16, >= 32)   OUT none
; clobbers caller-saved; callee-saved: rbx, r12-r15; stack: 48
static block_trim:function (block_trim.end - block_trim)
block_trim:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        mov     rbx, rdi
        mov     rax, [rbx]
        mov     r14, KH_SIZE_MASK
        and     r14, rax                ; S
        lea     r15, [rbx + r14]        ; N, the right neighbour
        sub     r14, rsi                ; tail bytes
        cmp     r14, KHEAP_MIN_BLOCK
        jb      .out
        and     eax, KH_F_PREV_FREE
        or      rax, rsi
        mov     r13, rax                ; H's new header word
        ; 1. N must be valid, and if free, properly linked
        mov     rdi, r15
        call    block_read_next
        cmp     rax, -1
        je      .report
        mov     r12, rax
        ; 2. H shrinks; the tail's bytes move from used to free
        mov     rdi, rbx
        mov     rsi, r13
        call    block_set
        mov     rdi, r14
        neg     rdi
        call    stats_used_add
        test    r12b, KH_F_FREE
        jz      .next_used
        ; [ H ....... tail ][ N free ] => [ H ][ tail + N free ]
        mov     rdi, r15
        mov     rsi, r12
        and     rsi, -KHEAP_ALIGN
        call    bin_remove
%if KHEAP_DEBUG
        mov     rdi, r15                ; N's header and links are free memory now
        mov     esi, KH_FREE_BODY
        call    dbg_poison
%endif
        mov     rax, KH_SIZE_MASK
        and     rax, r12
        add     r14, rax
        jmp     .file_tail
.next_used:
        ; [ H ....... tail ][ N used ] => [ H ][ tail free ][ N used, PREV_FREE ]
        mov     rdi, r15
        mov     rsi, r12
        or      rsi, KH_F_PREV_FREE
        call    block_set
.file_tail:
        mov     rax, KH_SIZE_MASK
        and     rax, r13
        lea     rdi, [rbx + rax]
        mov     rsi, r14
        call    block_make_free
        jmp     .out
.report:
        mov     edi, edx
        lea     rsi, [rbx + KHEAP_HEADER_SIZE]
        call    heap_report_user
.out:
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; block_neighbours -- may used block H be freed? Checks its physical neighbours, writes nothing:
; the right neighbour N's header must be valid and, if N is free, N's list links must point
; back at it; if H's PREV_FREE is set, its left neighbour P must be a valid free block of its
; footer's size, properly linked (block_read_prev)
; C: intptr_t block_neighbours(uintptr_t h, uint64_t word)
;    (P if H's left neighbour is free, 0 if not, -1 with the KHEAP_E_* code in edx if corrupt)
; IN rdi = H, rsi = H's header word without check bits   OUT rax (, edx); rdi kept
; clobbers rcx, rdx, rsi, r8, r9, r10, r11; stack: none
static block_neighbours:function (block_neighbours.end - block_neighbours)
block_neighbours:
        mov     r11, rsi
        mov     rcx, rsi
        and     rcx, -KHEAP_ALIGN
        lea     r10, [rdi + rcx]        ; N
        mov     rsi, [r10]
        BLOCK_CHECK rsi, r10, r9, rcx, .bad_header
        test    r9b, KH_F_FREE
        jz      .left
        and     r9, -KHEAP_ALIGN
        BIN_LINKS_OK r10, r9, .bad_links
.left:
        mov     rsi, r11
        jmp     block_read_prev         ; P, 0, or -1 and edx (a tail call)
.bad_header:
        mov     rax, -1
        mov     edx, KHEAP_E_BAD_HEADER
        ret
.bad_links:
        mov     rax, -1
        mov     edx, KHEAP_E_FREELIST
        ret
.end:

; block_merge -- return used block H to the free lists, merged with its free physical
; neighbours; block_neighbours has checked them (and found P). Every header left inside the
; merged block (H's, N's) is a valid free header, so a later kfree of a stale pointer is a
; reported double free rather than a trusted stale used header.
;
;   [ P free ][ H ][ N free ][ X ]  =>  [ ------------ P ------------ ][ X, PREV_FREE ]
;   [ P used ][ H ][ N free ][ X ]  =>  [ P ][ -------- H -------- ][ X, PREV_FREE ]
;   [ P free ][ H ][ N used ]       =>  [ ------ P ------ ][ N, PREV_FREE ]
;   [ P used ][ H ][ N used ]       =>  [ P ][ H free ][ N, PREV_FREE ]
;
; (A cached N is used here; it keeps its QUICK flag and gets PREV_FREE like any used block.)
; C: uintptr_t block_merge(uintptr_t h, uint64_t word, uintptr_t p)   (p: 0 if P is used)
; IN rdi = H, rsi = H's header word without check bits, rdx = P or 0
; OUT rax = the free block filed (P, or H), rdx = its size
; clobbers caller-saved; callee-saved: rbx, r12-r15; stack: 48
static block_merge:function (block_merge.end - block_merge)
block_merge:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        mov     rbx, rdi                ; H
        mov     r12, rdx                ; P or 0
        mov     r13, rsi
        and     r13, -KHEAP_ALIGN       ; S
        lea     r14, [rbx + r13]        ; N
        HDR_LOW r15, [r14]              ; N's word (checked by block_neighbours)
        ; 1. if P will absorb H, H's header is marked free first, so that a later kfree(H + 8)
        ; is a reported double free, not a stale used header (if H is not absorbed, step 4
        ; writes its free header anyway)
        test    r12, r12
        jz      .stats
        or      rsi, KH_F_FREE
        BLOCK_STAMP rbx, rsi, rcx
.stats:
        ; H's bytes move from used to free
        sub     CTL(KH_CTL_USED), r13
%if KHEAP_DEBUG
        lea     rdi, [rbx + KHEAP_HEADER_SIZE]  ; poison H's payload
        lea     rsi, [r13 - KHEAP_HEADER_SIZE]
        call    dbg_poison
%endif
        ; 2. merge right, or tell N its left neighbour is free now
        test    r15b, KH_F_FREE
        jnz     .merge_right
        or      r15, KH_F_PREV_FREE
        BLOCK_STAMP r14, r15, rax
        jmp     .merge_left
.merge_right:
        and     r15, -KHEAP_ALIGN       ; N's size
        BIN_REMOVE r14, r15             ; X already has PREV_FREE
%if KHEAP_DEBUG
        mov     rdi, r14                ; N's header and links are free memory now
        mov     esi, KH_FREE_BODY
        call    dbg_poison
%endif
        add     r13, r15
.merge_left:
        ; 3. merge left: the block starts at P
        test    r12, r12
        jz      .file
        mov     rsi, rbx
        sub     rsi, r12                ; P's size
        add     r13, rsi
        BIN_REMOVE r12, rsi
%if KHEAP_DEBUG
        lea     rdi, [rbx - KH_FOOTER_SIZE]     ; P's footer and H's header: free memory now
        mov     esi, KH_FOOTER_SIZE + KHEAP_HEADER_SIZE
        call    dbg_poison
%endif
        mov     rbx, r12
.file:
        ; 4. header, footer, list
        BLOCK_MAKE_FREE rbx, r13
        mov     rax, rbx
        mov     rdx, r13
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; heap_trim_right -- with a trim hook, the free block right of used block H (krealloc's freed
; tail, merged) offered to heap_trim_tail if it ends the heap: a shrink is a user's free too
; C: void heap_trim_right(uintptr_t h)
; IN rdi = H (valid used header)   OUT none; clobbers caller-saved; stack: heap_trim_tail's
static heap_trim_right:function (heap_trim_right.end - heap_trim_right)
heap_trim_right:
        cmp     qword CTL(KH_CTL_TRIM), 0
        je      .out
        HDR_LOW rsi, [rdi]
        and     rsi, -KHEAP_ALIGN
        add     rdi, rsi                ; F, H's right neighbour (H is valid: F is in the heap)
        call    block_read_next         ; F's size | flags, checked and its links too; rdi kept
        cmp     rax, -1
        je      .out                    ; (corrupt: left to the next free or kheap_verify)
        test    al, KH_F_FREE
        jz      .out
        and     rax, -KHEAP_ALIGN
        mov     rsi, rax                ; F's size
        jmp     heap_trim_tail          ; (checks that F ends at the heap's sound end)
.out:
        ret
.end:

; heap_trim_tail -- free block F (just filed by a user's free) may end the heap's highest
; region: offer the whole pages beyond its first KHEAP_MIN_BLOCK bytes to the trim hook; if
; taken, the region (and the heap) ends there
;   [ ... F free ............................... ][S]   =>   [ ... F' ][S']  | given back
;                                                             F + 32 + 8 <= T (page aligned)
; C: void heap_trim_tail(uintptr_t f, uint64_t s)   (the hook is set)
; Nothing is offered unless F's right neighbour is a sound end sentinel (check bits, size 0,
; used) at E - 8 where E is the heap's highest end (max_addr: given-back pages then lie above
; every region, so a stale pointer into them is rejected without a read), E is page aligned,
; the region ending at E is found, and the span is at least trim_min (KHEAP_TRIM_MIN if 0).
; Only memory below the new end T is written, and only after the hook took [T, E).
; O(regions) (finding the region) + the hook.
; IN rdi = F, rsi = S   OUT none; clobbers caller-saved; callee-saved: rbx, r12-r15
; stack: 64 + the hook's
static heap_trim_tail:function (heap_trim_tail.end - heap_trim_tail)
heap_trim_tail:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        sub     rsp, 16                 ; [rsp] = the region descriptor
        mov     rbx, rdi                ; F
        mov     r12, rsi                ; S
        ; 1. a sound sentinel right of F, at the heap's page-aligned highest end
        lea     r14, [rbx + r12]        ; the sentinel
        mov     rsi, [r14]
        BLOCK_CHECK rsi, r14, rax, rcx, .out
        mov     rcx, KH_SIZE_MASK | KH_F_FREE
        test    rax, rcx
        jnz     .out                    ; a block, not a sentinel
        add     r14, KH_SENTINEL_SIZE   ; E
        cmp     r14, CTL(KH_CTL_MAX)
        jne     .out
        test    r14d, KHEAP_PAGE_SIZE - 1
        jnz     .out
        ; 2. the span [T, E), big enough
        lea     r13, [rbx + KHEAP_MIN_BLOCK + KH_SENTINEL_SIZE + KHEAP_PAGE_SIZE - 1]
        and     r13, -KHEAP_PAGE_SIZE   ; T
        mov     r15, r14
        sub     r15, r13                ; E - T
        jbe     .out
        mov     rax, CTL(KH_CTL_TRIM_MIN)
        mov     ecx, KHEAP_TRIM_MIN
        test    rax, rax
        cmovz   rax, rcx
        cmp     r15, rax
        jb      .out
        ; 3. the region that ends at E (bounded by nregions, should the list be corrupt)
        mov     rdx, CTL(KH_CTL_REGIONS)
        mov     rcx, CTL(KH_CTL_NREGIONS)
.find:
        test    rdx, rdx
        jz      .out
        sub     rcx, 1
        jc      .out
        cmp     [rdx + KH_RGN_END], r14
        je      .found
        mov     rdx, [rdx + KH_RGN_NEXT]
        jmp     .find
.found:
        mov     [rsp], rdx
        ; 4. offer [T, E); nothing was changed yet
        mov     rdi, r13
        mov     rsi, r15
        call    CTL(KH_CTL_TRIM)
        test    eax, eax
        jz      .out
        ; 5. taken: F shrinks to end at T - 8, the sentinel moves there, the region and the heap
        ; end at T (no other region ends above: they are all below F's)
        BIN_REMOVE rbx, r12
        lea     r12, [r13 - KH_SENTINEL_SIZE]
        sub     r12, rbx                ; F's new size (>= KHEAP_MIN_BLOCK)
        BLOCK_MAKE_FREE rbx, r12
        lea     rdi, [r13 - KH_SENTINEL_SIZE]
        mov     esi, KH_F_PREV_FREE
        call    block_set
        sub     CTL(KH_CTL_TOTAL), r15
        add     CTL(KH_CTL_TRIMMED), r15
        mov     rdx, [rsp]
        mov     [rdx + KH_RGN_END], r13
        mov     CTL(KH_CTL_MAX), r13
        SPAN_UPDATE rax
.out:
        add     rsp, 16
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; block_free -- free used block H: its neighbours are checked before anything is written
; (block_neighbours); then, if allowed and H is small enough and its front-cache list has room,
; H is cached (quick_push), else merged into the free lists (block_merge) and, for a user's free
; (may_cache), the heap's end maybe given back (heap_trim_tail). The caller counts the free
; (frees): the front-cache flush frees blocks their user had freed already.
; C: int block_free(uintptr_t h, uint64_t word, int may_cache)
;    (1 freed or cached; 0 a neighbour was corrupt: reported, H leaked, still used)
; IN rdi = H (from block_from_user), rsi = H's header word without check bits, edx = may_cache
; OUT eax; clobbers caller-saved; callee-saved: rbx, r12, r13; stack: 32 + callees'
static block_free:function (block_free.end - block_free)
block_free:
        push    rbx
        push    r12
        push    r13
        mov     rbx, rdi
        mov     r12, rsi
        mov     r13d, edx
        call    block_neighbours
        cmp     rax, -1
        je      .report
%if KH_QUICK
        test    r13d, r13d
        jz      .merge
        mov     rcx, r12
        and     rcx, -KHEAP_ALIGN
        cmp     rcx, KHEAP_QUICK_MAX
        ja      .merge
        cmp     qword QUICK_ENTRY(rcx, KH_QUICK_COUNT), KHEAP_QUICK_DEPTH
        jae     .merge
        mov     rdi, rbx
        mov     rsi, r12
        call    quick_push
        jmp     .done
.merge:
%endif
        mov     rdi, rbx
        mov     rsi, r12
        mov     rdx, rax
        call    block_merge
        ; a user's free (not the cache's flush, whose allocation needs the room) may give the
        ; heap's end back
        test    r13d, r13d
        jz      .done
        cmp     qword CTL(KH_CTL_TRIM), 0
        je      .done
        mov     rdi, rax
        mov     rsi, rdx
        call    heap_trim_tail
.done:
        mov     eax, 1
        jmp     .out
.report:
        mov     edi, edx
        lea     rsi, [rbx + KHEAP_HEADER_SIZE]
        call    heap_report_user
        xor     eax, eax
.out:
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; block_grow -- grow used block H in place to at least `want` bytes by absorbing a free N
; C: int block_grow(uintptr_t h, uint64_t want)
;    (1 grown, maybe by more than asked: block_trim it; 0 N is not free or too small;
;     -1 a corrupt neighbour was reported)
;   [ H ][ N free ][ X ]  =>  [ ------- H ------- ][ X, PREV_FREE clear ]
; IN rdi = H (valid used header), rsi = want   OUT eax
; clobbers caller-saved; callee-saved: rbx, r12-r15; stack: 48
static block_grow:function (block_grow.end - block_grow)
block_grow:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        mov     rbx, rdi
        mov     r12, rsi
        mov     r13, KH_SIZE_MASK
        and     r13, [rbx]              ; S
        lea     r14, [rbx + r13]        ; N
        ; 1. N: valid (and linked if free), then free and big enough together with H
        mov     rdi, r14
        call    block_read_next
        cmp     rax, -1
        je      .report
        mov     r15, rax
        xor     eax, eax
        test    r15b, KH_F_FREE
        jz      .out
        mov     rcx, KH_SIZE_MASK
        and     r15, rcx                ; N's size
        lea     rcx, [r13 + r15]
        cmp     rcx, r12
        jb      .out
        ; 2. X, the block after N, must be valid: it loses PREV_FREE
%if KHEAP_DEBUG
        mov     rdi, r14                ; the part of N taken must still be poison
        lea     rsi, [rbx + r12]
        lea     rdx, [r14 + r15]
        call    dbg_take
%endif
        lea     rdi, [r14 + r15]
        call    block_read
        mov     edx, KHEAP_E_BAD_HEADER
        cmp     rax, -1
        je      .report
        mov     r12, rax
        ; 3. commit: N off its list, X's PREV_FREE cleared, H takes N's bytes
        mov     rdi, r14
        mov     rsi, r15
        call    bin_remove
        lea     rdi, [r14 + r15]
        mov     rsi, r12
        and     rsi, ~KH_F_PREV_FREE
        call    block_set
        mov     rsi, [rbx]
        and     esi, KH_F_PREV_FREE
        add     rsi, r13
        add     rsi, r15
        mov     rdi, rbx
        call    block_set
        mov     rdi, r15
        call    stats_used_add
        mov     eax, 1
        jmp     .out
.report:
        mov     edi, edx
        lea     rsi, [rbx + KHEAP_HEADER_SIZE]
        call    heap_report_user
        mov     eax, -1
.out:
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; heap_gate -- recompute heap h's gate (kh_ctl.gate, kheap_layout.h) from its regions, hooks
; and fault injection: KH_GATE_OFF without a region, with fault injection on, or with a lock
; hook but no cpu hook; else KH_GATE_CPU with a cpu hook, KH_GATE_SLOT0 without.
; C: void heap_gate(struct kh_ctl *h)
; IN rdi = h   OUT none; clobbers rax; stack: none
static heap_gate:function (heap_gate.end - heap_gate)
heap_gate:
        xor     eax, eax                        ; KH_GATE_OFF
        cmp     qword [rdi + KH_CTL_NREGIONS], 0
        je      .store
        cmp     qword [rdi + KH_CTL_FAIL_AFTER], 0
        jne     .store
        cmp     qword [rdi + KH_CTL_FAIL_PPM], 0
        jne     .store
        mov     eax, KH_GATE_CPU
        cmp     qword [rdi + KH_CTL_CPU_FN], 0
        jne     .store
        xor     eax, eax
        cmp     qword [rdi + KH_CTL_LOCK_ACQ], 0
        jne     .store
        mov     eax, KH_GATE_SLOT0
.store:
        mov     [rdi + KH_CTL_GATE], rax
        ret
.end:

; heap_fault -- fault injection: must this allocation call fail? (kheap_fail_after/_rate)
; C: int heap_fault(void)   (1: fail it; advances the countdown and the PRNG)
; IN none   OUT eax; clobbers rcx, rdx; stack: none
static heap_fault:function (heap_fault.end - heap_fault)
heap_fault:
        mov     rax, CTL(KH_CTL_FAIL_AFTER)
        test    rax, rax
        jz      .rate                   ; 0: off
        cmp     rax, 1
        je      .fail                   ; 1: the countdown has run out, for good
        dec     rax
        mov     CTL(KH_CTL_FAIL_AFTER), rax
.rate:
        mov     rcx, CTL(KH_CTL_FAIL_PPM)
        test    rcx, rcx
        jz      .pass
        mov     rax, KH_HASH_K1         ; splitmix64: state += K1, then mix the state
        add     rax, CTL(KH_CTL_FAIL_RNG)
        mov     CTL(KH_CTL_FAIL_RNG), rax
        mov     rdx, rax
        shr     rdx, KH_MIX_SHIFT1
        xor     rax, rdx
        mov     rdx, KH_HASH_K2
        imul    rax, rdx
        mov     rdx, rax
        shr     rdx, KH_MIX_SHIFT2
        xor     rax, rdx
        mov     rdx, KH_MIX_K3
        imul    rax, rdx
        mov     rdx, rax
        shr     rdx, KH_MIX_SHIFT3
        xor     rax, rdx
        shr     rax, 32                 ; uniform in [0, 10^6): (top 32 bits * 10^6) >> 32
        imul    rax, rax, KH_PPM
        shr     rax, 32
        cmp     rax, rcx
        jb      .fail
.pass:
        xor     eax, eax
        ret
.fail:
        mov     eax, 1
        ret
.end:

; heap_malloc_inject -- heap_malloc with fault injection on: fail the call, or go on
; C: void *heap_malloc_inject(size_t n)
; IN rdi = n   OUT rax = payload or NULL; clobbers caller-saved; stack: 16 + heap_malloc_nf
static heap_malloc_inject:function (heap_malloc_inject.end - heap_malloc_inject)
heap_malloc_inject:
        mov     rax, KH_MAX_REQUEST
        cmp     rdi, rax
        ja      heap_malloc_nf          ; absurd: reported there, injection or not
        push    rdi
        call    heap_fault
        pop     rdi
        test    eax, eax
        jz      heap_malloc_nf
        inc     qword CTL(KH_CTL_FAILED)
        xor     eax, eax
        ret
.end:

; heap_malloc -- kmalloc without the lock: an allocation call (fault injection applies)
; C: void *heap_malloc(size_t n)
; Falls through into heap_malloc_nf, which must follow it directly.
; IN rdi = n   OUT rax = payload or NULL; clobbers caller-saved; stack: 16 + heap_malloc_nf
static heap_malloc:function (heap_malloc.end - heap_malloc)
heap_malloc:
        mov     rax, CTL(KH_CTL_FAIL_AFTER)
        or      rax, CTL(KH_CTL_FAIL_PPM)
        jnz     heap_malloc_inject      ; injection on (else one predictable branch)
.end:

; heap_malloc_nf -- a block for n bytes, counted in the stats; no fault injection (for calls
; that already had their injection check). An absurd n is reported (KHEAP_E_SIZE, NULL).
; Up to KH_SLAB_REQ_MAX bytes the slab tier serves it (slab_malloc); else, or when that has no
; room, a small block comes from its front-cache list if that has one (QUICK_POP), else from
; the free lists (heap_alloc).
; C: void *heap_malloc_nf(size_t n)
; IN rdi = n   OUT rax = payload or NULL; clobbers caller-saved; callee-saved: rbx
; stack: 16 + callees'
static heap_malloc_nf:function (heap_malloc_nf.end - heap_malloc_nf)
heap_malloc_nf:
        cmp     rdi, KH_SLAB_REQ_MAX
        ja      .tlsf
        push    rdi
        call    slab_malloc             ; the slab tier first
        pop     rdi
        test    rax, rax
        jz      .tlsf                   ; no room for a slab: a block will do
        inc     qword CTL(KH_CTL_ALLOCS)
        ret
.tlsf:
        push    rbx
        mov     rbx, rdi                ; n
%if KH_QUICK
        cmp     rdi, KHEAP_QUICK_MAX - KH_META
        ja      .request
        add     rdi, KH_META + KHEAP_ALIGN - 1  ; its block size S <= KHEAP_QUICK_MAX
        and     rdi, -KHEAP_ALIGN               ; (BLOCK_REQUEST without the absurd case)
        mov     eax, KHEAP_MIN_BLOCK
        cmp     rdi, rax
        cmovb   rdi, rax
        QUICK_POP .lists
  %if KHEAP_DEBUG
        mov     rdi, rax                ; its poison must be intact
        call    dbg_quick_check
  %endif
%else
        BLOCK_REQUEST rdi, rcx, .absurd
        call    heap_alloc
        test    rax, rax
        jz      .fail
%endif
.got:
        inc     qword CTL(KH_CTL_ALLOCS)
        STATS_PEAK rcx
%if KHEAP_DEBUG
        mov     rdi, rax                ; canary and trailer for n bytes
        mov     rsi, rbx
        mov     rbx, rax
        call    dbg_stamp
        mov     rax, rbx
%endif
        add     rax, KHEAP_HEADER_SIZE
        pop     rbx
        ret
%if KH_QUICK
.request:
        BLOCK_REQUEST rdi, rcx, .absurd
.lists:
        call    heap_alloc
        test    rax, rax
        jnz     .got
        jmp     .fail
%endif
.absurd:
        mov     edi, KHEAP_E_SIZE
        xor     esi, esi
        call    heap_report
.fail:
        inc     qword CTL(KH_CTL_FAILED)
        xor     eax, eax
        pop     rbx
        ret
.end:

; FREE_FAST slow, validated, prev_free -- kfree's fast path (release build with the front
; cache), for heap_free and, with KHB = r11, inline in the kfree entries. p = rdi (not NULL)
; passes block_from_user's checks (made inline; any doubt jumps to `slow`, where block_from_user
; decides and reports), its block is at most KHEAP_QUICK_MAX bytes, its list has room and its
; right neighbour passes block_neighbours' checks (N's header valid and, if N is free, its list
; links): then the block goes on its list (frees counted) and the macro falls through. A valid
; block that is not for the cache, or whose neighbour fails a check, jumps to `validated`; one
; whose left neighbour is free jumps to `prev_free` (block_read_prev must check P); both with
; rsi = its header word without check bits. rdi is kept on every path.
; clobbers rax, rcx, rdx, rsi, r8, r9, r10
%macro FREE_FAST 3
        lea     rdx, [rdi - KHEAP_HEADER_SIZE]  ; H
        HDR_ADDR_OK rdx, rcx, %1
        cmp     rdi, [KHB + KH_CTL_CPU_BLOCK]
        je      %1                      ; the per-CPU slots' block: block_from_user reports it
        mov     r8, [rdx]
        BLOCK_CHECK r8, rdx, rsi, rcx, %1
        test    sil, KH_F_FREE | KH_F_QUICK
        jnz     %1
        mov     rcx, rsi
        and     rcx, -KHEAP_ALIGN       ; S
        cmp     rcx, KHEAP_MIN_BLOCK
        jb      %1                      ; a sentinel or garbage
        mov     rax, [KHB + KH_CTL_MAX]
        sub     rax, rdx
        cmp     rcx, rax
        jae     %1                      ; the next header would lie at or past the heap's end
        cmp     rcx, KHEAP_QUICK_MAX
        ja      %2
        cmp     qword QUICK_ENTRY(rcx, KH_QUICK_COUNT), KHEAP_QUICK_DEPTH
        jae     %2
        lea     r9, [rdx + rcx]         ; N
        mov     r10, [r9]
        BLOCK_CHECK r10, r9, r8, rax, %2
        test    r8b, KH_F_FREE
        jz      %%next_ok
        and     r8, -KHEAP_ALIGN
        BIN_LINKS_OK r9, r8, %2         ; (clobbers rax, rcx, rdx)
        lea     rdx, [rdi - KHEAP_HEADER_SIZE]
        mov     rcx, rsi
        and     rcx, -KHEAP_ALIGN
%%next_ok:
        test    sil, KH_F_PREV_FREE
        jnz     %3
        QUICK_PUSH rdx, rsi, rcx
        inc     qword [KHB + KH_CTL_FREES]
%endmacro

; heap_free -- kfree under the lock
; C: void heap_free(void *p)
; A slab object (slab_user: checked exactly, misuse reported) goes to slab_free_obj. Blocks, in
; the release build: FREE_FAST first (the common case of a churning kernel). Everything else, and
; the debug build, goes through block_from_user and block_free (checks, then cache or merge).
; IN rdi = p   OUT none; clobbers caller-saved; stack: 16 + callees'
static heap_free:function (heap_free.end - heap_free)
heap_free:
        test    rdi, rdi
        jz      .done                   ; kfree(NULL) is a no-op
        test    dil, KHEAP_ALIGN - 1
        jnz     .from_user              ; (block_from_user reports it)
        sub     rsp, 8
        call    slab_user
        add     rsp, 8
        test    rax, rax
        jz      .block
        cmp     rax, -1                 ; (S may be negative: a higher-half heap)
        je      .done                   ; reported
        mov     rsi, rax                ; a live slab object
        mov     edx, r9d
        xor     r8d, r8d                ; (the debug build checks its canary)
        sub     rsp, 8
        call    slab_free_obj
        add     rsp, 8
        inc     qword CTL(KH_CTL_FREES)
        ret
.block:
%if KH_QUICK_FAST
        FREE_FAST .from_user, heap_free_valid, heap_free_prev
        ret
%endif
.from_user:
        sub     rsp, 8
        call    block_from_user
        add     rsp, 8
        test    rax, rax
        jz      .done
        mov     rdi, rax
        mov     rsi, rdx
%if KHEAP_DEBUG
        push    rsi                     ; an overflow into the canary is reported, then the
        push    rdi                     ; block is freed all the same (its headers are fine)
        sub     rsp, 8
        call    dbg_check_used
        add     rsp, 8
        pop     rdi
        pop     rsi
%endif
        jmp     heap_free_block
.done:
        ret
.end:

%if KH_QUICK_FAST
; heap_free_prev -- FREE_FAST found p's block fit for the cache but its left neighbour free:
; block_read_prev checks P (as block_neighbours would), then the block is cached, or, if P is
; corrupt, block_free checks again and reports
; C: void heap_free_prev(void *p, uint64_t word)
; IN rdi = p, rsi = its header word without check bits   OUT none; clobbers caller-saved
; stack: 16 + callees'
static heap_free_prev:function (heap_free_prev.end - heap_free_prev)
heap_free_prev:
        sub     rdi, KHEAP_HEADER_SIZE  ; H
        push    rsi
        call    block_read_prev         ; P, 0, or -1: rdi kept
        pop     rsi
        cmp     rax, -1
        je      heap_free_block
        mov     rcx, rsi
        and     rcx, -KHEAP_ALIGN
        QUICK_PUSH rdi, rsi, rcx
        inc     qword CTL(KH_CTL_FREES)
        ret
.end:

; heap_free_valid -- FREE_FAST found p's block valid but not for the fast path (too large, its
; list full, a neighbour to check again): block_free decides
; C: void heap_free_valid(void *p, uint64_t word)
; IN rdi = p, rsi = its header word without check bits   OUT none; falls into heap_free_block
static heap_free_valid:function (heap_free_valid.end - heap_free_valid)
heap_free_valid:
        sub     rdi, KHEAP_HEADER_SIZE  ; H, as block_from_user leaves it
.end:
%endif

; heap_free_block -- free used block H (checked by block_from_user or FREE_FAST), counted
; C: void heap_free_block(uintptr_t h, uint64_t word)
; IN rdi = H, rsi = its header word without check bits   OUT none; clobbers caller-saved
; stack: 8 + block_free's
static heap_free_block:function (heap_free_block.end - heap_free_block)
heap_free_block:
        mov     edx, 1                  ; may cache
        sub     rsp, 8
        call    block_free
        add     rsp, 8
        add     CTL(KH_CTL_FREES), rax  ; 1 freed, 0 refused
        ret
.end:

; heap_calloc -- kcalloc without the lock: n * size zeroed bytes, NULL on overflow
; C: void *heap_calloc(size_t n, size_t size)
; IN rdi = n, rsi = size   OUT rax; clobbers caller-saved; callee-saved: rbx, r12; stack: 32
static heap_calloc:function (heap_calloc.end - heap_calloc)
heap_calloc:
        push    rbx
        push    r12
        sub     rsp, 8
        mov     rax, rdi
        mul     rsi                     ; rdx:rax = n * size
        jc      .overflow
        mov     rbx, rax
        mov     rdi, rax
        call    heap_malloc
        test    rax, rax
        jz      .out
        mov     r12, rax
        mov     rdi, rax
        xor     esi, esi
        mov     rdx, rbx
        call    kmemset wrt ..plt
        mov     rax, r12
        jmp     .out
.overflow:
        mov     edi, KHEAP_E_SIZE       ; n * size does not fit in 64 bits
        xor     esi, esi
        call    heap_report
        inc     qword CTL(KH_CTL_FAILED)
        xor     eax, eax
.out:
        add     rsp, 8
        pop     r12
        pop     rbx
        ret
.end:

; heap_realloc -- krealloc without the lock
; C: void *heap_realloc(void *p, size_t n)
; In place when it shrinks (block_trim) or the right neighbour is free and big enough
; (block_grow + block_trim), O(1); else kmalloc + copy + free. If that kmalloc finds nothing
; (it has flushed the front cache then), growing in place is tried once more: a cached right
; neighbour is free now. Failure leaves p as it was.
; IN rdi = p, rsi = n   OUT rax; clobbers caller-saved
; callee-saved: rbx, r12-r15; stack: 48
static heap_realloc:function (heap_realloc.end - heap_realloc)
heap_realloc:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        mov     rbx, rdi
        mov     r12, rsi
        ; 1. krealloc(NULL, n) is kmalloc(n); krealloc(p, 0) is kfree(p)
        test    rbx, rbx
        jnz     .have_p
        mov     rdi, r12
        call    heap_malloc
        jmp     .out
.have_p:
        test    r12, r12
        jnz     .resize
        mov     rdi, rbx
        call    heap_free
        jmp     .null
.resize:
        ; 2. a slab object: kept if n maps to its class, else moved
        test    bl, KHEAP_ALIGN - 1
        jnz     .block
        mov     rdi, rbx
        call    slab_user
        test    rax, rax
        jz      .block
        cmp     rax, -1                 ; (S may be negative: a higher-half heap)
        je      .null
        mov     r15d, ecx               ; its class
        mov     r14d, [r10 + KH_CLS_SIZE]
%if KHEAP_DEBUG
        mov     rdi, rbx                ; an overflow is reported once, whatever follows
        mov     esi, r14d
        call    dbg_slab_check
        mov     rdi, rbx
        mov     esi, r14d
        call    dbg_slab_usable
        mov     r13, rax                ; what it holds
%else
        mov     r13, r14
%endif
        cmp     r12, KH_SLAB_REQ_MAX
        ja      .slab_move
        lea     rax, [r12 + 15]
%if KHEAP_DEBUG
        add     rax, KHEAP_DEBUG_EXTRA
%endif
        shr     rax, 4
        lea     rcx, [rel kh_size_class]
        movzx   eax, byte [rcx + rax]
        cmp     eax, r15d
        jne     .slab_move
.slab_keep:
%if KHEAP_DEBUG
        mov     rdi, rbx                ; canary and trailer for the new size
        mov     esi, r14d
        mov     rdx, r12
        call    dbg_slab_stamp
%endif
        mov     rax, rbx
        jmp     .out
.slab_move:
        mov     rax, KH_MAX_REQUEST
        cmp     r12, rax
        ja      .absurd                 ; (reported with p, as for a block)
        cmp     r12, r13
        jbe     .slab_alloc             ; shrinking: no fault injection (it can stay put)
        call    heap_fault
        test    eax, eax
        jnz     .failed
.slab_alloc:
        cmp     r13, r12
        cmova   r13, r12                ; the bytes to keep: min(held, n)
        mov     rdi, r12
        call    heap_malloc_nf
        test    rax, rax
        jz      .slab_failed
        mov     r14, rax
        mov     rdi, rax
        mov     rsi, rbx
        mov     rdx, r13
        call    kmemcpy wrt ..plt
        mov     rdi, rbx                ; the old object (still live: found as before)
        call    slab_user
        mov     rsi, rax
        mov     edx, r9d
        mov     r8d, 1                  ; (its canary was checked above)
        call    slab_free_obj
        inc     qword CTL(KH_CTL_FREES)
        mov     rax, r14
        jmp     .out
.slab_failed:
        cmp     r13, r12
        jb      .null                   ; it needed more room (failure counted)
        dec     qword CTL(KH_CTL_FAILED) ; it fits where it is: not a failure
        jmp     .slab_keep
.block:
        ; 3. p must be a live block; n must be sane
        mov     rdi, rbx
        call    block_from_user
        test    rax, rax
        jz      .null
        mov     r13, rax                ; H
%if KHEAP_DEBUG
        mov     rdi, rax                ; an overflow is reported; the resize goes on
        call    dbg_check_used
%endif
        mov     rdi, r12
        call    block_request
        test    rax, rax
        jz      .absurd
        mov     r14, rax                ; new block size
        mov     r15, KH_SIZE_MASK
        and     r15, [r13]              ; old block size
        ; 4. in place: shrink (or keep), or grow into the right neighbour; shrinking or
        ; keeping checks the right neighbour's header too (an overflow of p into it)
        cmp     r14, r15
        ja      .grow
        mov     rdi, r13
        call    block_next_ok
        test    eax, eax
        jz      .bad_next
%if KHEAP_DEBUG
        lea     rdi, [r13 + r14]        ; the bytes beyond the new size are freed (or slack)
        mov     rsi, r15
        sub     rsi, r14
        call    dbg_poison
%endif
        jmp     .trim
.grow:
        call    heap_fault              ; growing is an allocation call
        test    eax, eax
        jnz     .failed
        mov     rdi, r13
        mov     rsi, r14
        call    block_grow
        test    eax, eax
        js      .failed
        jz      .move
.trim:
        mov     rdi, r13
        mov     rsi, r14
        call    block_trim
        STATS_PEAK rax                  ; after the trim: the absorbed surplus never counts
        cmp     r14, r15
        jae     .trimmed                ; kept or grown in place: no give-back (no churn)
        mov     rdi, r13
        call    heap_trim_right         ; shrunk: the freed tail may end the heap
.trimmed:
%if KHEAP_DEBUG
        mov     rdi, r13                ; canary and trailer for the new size
        mov     rsi, r12
        call    dbg_stamp
%endif
        mov     rax, rbx
        jmp     .out
.move:
        ; 5. move: the neighbours the free of the old block will merge with are checked first
        ; (a corrupt one is reported and p stays as it was), then new block, copy the old
        ; payload (all of it is < n), free the old block
        mov     rdi, r13
        HDR_LOW rsi, [r13]
        call    block_neighbours
        mov     ecx, edx
        cmp     rax, -1
        je      .bad_neighbour
        mov     rdi, r12
        call    heap_malloc_nf
        test    rax, rax
        jz      .move_failed
        mov     r12, rax
        mov     rdi, r13
        call    block_keep
        mov     rdx, rax
        mov     rdi, r12
        mov     rsi, rbx
        call    kmemcpy wrt ..plt
        mov     rdi, r13
        HDR_LOW rsi, [r13]
        mov     edx, 1                  ; may cache
        call    block_free
        add     CTL(KH_CTL_FREES), rax
        mov     rax, r12
        jmp     .out
.move_failed:
%if KH_QUICK
        ; no block fitted, so the front cache was flushed: a right neighbour that was cached
        ; may be free now and large enough; if so, the call does not fail after all
        mov     rdi, r13
        mov     rsi, r14
        call    block_grow
        test    eax, eax
        jle     .null
        dec     qword CTL(KH_CTL_FAILED)        ; heap_malloc_nf counted it
        jmp     .trim
%else
        jmp     .null
%endif
.bad_next:
        mov     ecx, KHEAP_E_BAD_HEADER
.bad_neighbour:                         ; ecx = the code
        mov     edi, ecx
        mov     rsi, rbx
        call    heap_report_user
        jmp     .null
.absurd:
        mov     edi, KHEAP_E_SIZE
        mov     rsi, rbx
        call    heap_report
.failed:
        inc     qword CTL(KH_CTL_FAILED)
.null:
        xor     eax, eax
.out:
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; block_aligned -- a used block of S bytes whose payload is a multiple of align (> 16): takes
; S + align + 16 bytes, splits the leading gap off as a free block (it is at least
; KHEAP_MIN_BLOCK, and its left neighbour is used: no merge), then trims the tail. O(1).
;   [ ------------ block ------------ ]  =>  [ gap free ][ aligned used ][ tail free ]
; C: uintptr_t block_aligned(size_t align, uint64_t s, int try_only)   (H, or 0 if nothing fits;
;    try_only: heap_alloc_try, no fallback)
; IN rdi = align, rsi = S, edx = try_only   OUT rax; clobbers caller-saved
; callee-saved: rbx, r12-r15; stack: 48
static block_aligned:function (block_aligned.end - block_aligned)
block_aligned:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        mov     rbx, rdi
        mov     r13, rsi
        ; 1. a block with room for any leading gap
        lea     rdi, [r13 + rbx + KHEAP_ALIGN]
        test    edx, edx
        jnz     .try
        call    heap_alloc
        jmp     .got
.try:
        call    heap_alloc_try
.got:
        test    rax, rax
        jz      .out
        mov     r14, rax                ; H
        lea     rax, [r14 + KHEAP_HEADER_SIZE]
        lea     rcx, [rbx - 1]
        test    rax, rcx
        jz      .trim                   ; already aligned
        ; 2. aligned payload at least KHEAP_MIN_BLOCK past H's payload; the gap becomes free
        lea     rax, [r14 + KHEAP_HEADER_SIZE + KHEAP_MIN_BLOCK + rcx]
        not     rcx
        and     rax, rcx
        lea     r15, [rax - KHEAP_HEADER_SIZE]  ; H'
        mov     rsi, KH_SIZE_MASK
        and     rsi, [r14]
        add     rsi, r14
        sub     rsi, r15
        or      rsi, KH_F_PREV_FREE
        mov     rdi, r15
        call    block_set               ; H' used, its left neighbour (the gap) free
        mov     rdi, r14
        sub     rdi, r15
        call    stats_used_add          ; the gap's bytes (negative delta) go back to free
        mov     rdi, r14
        mov     rsi, r15
        sub     rsi, r14
        call    block_make_free
        mov     r14, r15
.trim:
        mov     rdi, r14
        mov     rsi, r13
        call    block_trim
        mov     rax, r14
.out:
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; heap_aligned -- kmalloc_aligned without the lock: checks and fault injection, then align <= 16
; is heap_malloc_nf, align <= KH_SLAB_ALIGN_MAX with a small n a slab object (release build),
; anything else block_aligned. O(1).
; C: void *heap_aligned(size_t align, size_t n)
; IN rdi = align, rsi = n   OUT rax; clobbers caller-saved
; callee-saved: rbx, r12-r15; stack: 48
static heap_aligned:function (heap_aligned.end - heap_aligned)
heap_aligned:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        mov     rbx, rdi
        mov     r12, rsi
        ; 1. align: a power of two, not absurd; n not absurd (both reported); then the fault
        ; injection; align <= KHEAP_ALIGN is plain kmalloc
        lea     rax, [rbx - 1]
        test    rax, rbx
        jnz     .bad_align
        test    rbx, rbx
        jz      .bad_align
        mov     rax, KH_MAX_REQUEST
        cmp     rbx, rax
        ja      .bad_align
        mov     rdi, r12
        call    block_request
        test    rax, rax
        jz      .bad_size
        mov     r13, rax                ; S
        call    heap_fault
        test    eax, eax
        jnz     .failed
        cmp     rbx, KHEAP_ALIGN
        ja      .big
        mov     rdi, r12
        call    heap_malloc_nf
        jmp     .out
.big:
%if !KHEAP_DEBUG
        ; 2. align <= KH_SLAB_ALIGN_MAX, n <= KH_SLAB_MAX rounded up to it (at least align): a
        ; slab object. Objects start at S + KH_SLAB_FIRST + i * size, S 16 KiB-aligned and
        ; KH_SLAB_FIRST a multiple of 64, and every class at or above a multiple of 32 (or 64)
        ; is one itself, so the object is aligned. (The debug build's canary comes after n,
        ; which would change the class: it takes the blocks.)
        cmp     rbx, KH_SLAB_ALIGN_MAX
        ja      .blocks
        lea     rdi, [r12 + rbx - 1]
        mov     rax, rbx
        neg     rax
        and     rdi, rax
        cmp     rdi, rbx
        cmovb   rdi, rbx                ; (n = 0)
        cmp     rdi, KH_SLAB_MAX
        ja      .blocks
        call    slab_malloc
        test    rax, rax
        jz      .blocks                 ; no room for a slab: a block will do
        inc     qword CTL(KH_CTL_ALLOCS)
        jmp     .out
.blocks:
%endif
        ; 3. a block of S bytes at an aligned payload
        mov     rdi, rbx
        mov     rsi, r13
        xor     edx, edx
        call    block_aligned
        test    rax, rax
        jz      .failed
        mov     r14, rax
        STATS_PEAK rax                  ; the final block only, not the over-allocation
%if KHEAP_DEBUG
        mov     rdi, r14                ; canary and trailer for n bytes
        mov     rsi, r12
        call    dbg_stamp
%endif
        inc     qword CTL(KH_CTL_ALLOCS)
        lea     rax, [r14 + KHEAP_HEADER_SIZE]
        jmp     .out
.bad_align:
        mov     edi, KHEAP_E_INVAL
        jmp     .report
.bad_size:
        mov     edi, KHEAP_E_SIZE
.report:
        xor     esi, esi
        call    heap_report
.failed:
        inc     qword CTL(KH_CTL_FAILED)
        xor     eax, eax
.out:
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; block_usable -- the usable bytes of used block H: S - 8, or in the debug build the requested
; size from the trailer (clipped to what the block holds, should the trailer be smashed)
; C: size_t block_usable(uintptr_t h)
; IN rdi = H (valid used header)   OUT rax; clobbers rcx; stack: none
static block_usable:function (block_usable.end - block_usable)
block_usable:
        mov     rax, KH_SIZE_MASK
        and     rax, [rdi]
%if KHEAP_DEBUG
        mov     rcx, [rdi + rax - KH_TRAILER_SIZE + KH_TRAILER_REQ]
        sub     rax, KH_META
        cmp     rcx, rax
        cmovb   rax, rcx
%else
        sub     rax, KHEAP_HEADER_SIZE
%endif
        ret
.end:

; block_keep -- the bytes a moving krealloc copies out of used block H: block_usable, except in
; the debug build when H's canary or trailer was overwritten (an overflow, reported by the
; caller): the recorded size cannot be trusted then, so everything the block can hold before
; its trailer is kept (S - header - trailer), which is never more than the new block's n.
; C: size_t block_keep(uintptr_t h)
; IN rdi = H (valid used header)   OUT rax; clobbers rcx, rdx, rsi, rdi, r8; stack: 8
static block_keep:function (block_keep.end - block_keep)
block_keep:
%if KHEAP_DEBUG
        push    rdi
        call    dbg_canary_ok
        pop     rdi
        test    eax, eax
        jnz     block_usable
        mov     rax, KH_SIZE_MASK
        and     rax, [rdi]
        sub     rax, KHEAP_HEADER_SIZE + KH_TRAILER_SIZE
        ret
%else
        jmp     block_usable
%endif
.end:

; heap_ksize -- ksize without the lock
; C: size_t heap_ksize(const void *p)
; IN rdi = p   OUT rax = usable bytes, 0 for NULL or a bad p (reported); stack: 16
static heap_ksize:function (heap_ksize.end - heap_ksize)
heap_ksize:
        test    rdi, rdi
        jz      .zero
        test    dil, KHEAP_ALIGN - 1
        jnz     .block
        sub     rsp, 8
        call    slab_user
        add     rsp, 8
        test    rax, rax
        jz      .block
        cmp     rax, -1                 ; (S may be negative: a higher-half heap)
        je      .zero
%if KHEAP_DEBUG
        mov     esi, [r10 + KH_CLS_SIZE]
        jmp     dbg_slab_usable
%else
        mov     eax, [r10 + KH_CLS_SIZE]
        ret
%endif
.block:
        sub     rsp, 8
        call    block_from_user
        add     rsp, 8
        test    rax, rax
        jz      .zero
        mov     r8, rdi                 ; p
        mov     rdi, rax
        call    block_next_ok           ; an overflow of p into its neighbour's header
        test    eax, eax
        jz      .bad_next
        jmp     block_usable
.bad_next:
        mov     edi, KHEAP_E_BAD_HEADER
        mov     rsi, r8
        sub     rsp, 8
        call    heap_report_user
        add     rsp, 8
.zero:
        xor     eax, eax
        ret
.end:

; block_next_ok -- is the header right of used block H valid? (ksize and a krealloc that keeps
; or shrinks H would not look at it otherwise; this is how an overflow of H's payload into its
; neighbour is caught at the next ksize/krealloc of H, as kfree and growing krealloc do)
; C: int block_next_ok(uintptr_t h)
; IN rdi = H (valid used header)   OUT eax = 1 valid, 0 not; rdi kept; clobbers rcx, rdx, rsi
; stack: none
static block_next_ok:function (block_next_ok.end - block_next_ok)
block_next_ok:
        HDR_LOW rsi, [rdi]
        and     rsi, -KHEAP_ALIGN
        add     rsi, rdi                ; N
        mov     rdx, [rsi]
        BLOCK_CHECK rdx, rsi, rax, rcx, .bad
        mov     eax, 1
        ret
.bad:
        xor     eax, eax
        ret
.end:

; region_overlaps -- does [A, E) overlap a known region or the control block? (O(regions), as
; is region_grow's search)
; C: int region_overlaps(uintptr_t a, uintptr_t e)   (KHEAP_E_OVERLAP or 0)
; IN rdi = A, rsi = E   OUT eax; clobbers rdx; stack: none
static region_overlaps:function (region_overlaps.end - region_overlaps)
region_overlaps:
        mov     eax, KHEAP_E_OVERLAP
        lea     rdx, [KHB + KHEAP_CTL_SIZE] ; the control block is not free memory either:
        cmp     rdi, rdx                ; A < its end and E > its start overlap it
        jae     .walk
        cmp     rsi, rbp
        ja      .done
.walk:
        mov     rdx, CTL(KH_CTL_REGIONS)
.next:
        test    rdx, rdx
        jz      .none
        cmp     rdi, [rdx + KH_RGN_END]
        jae     .skip
        cmp     rsi, [rdx + KH_RGN_START]
        ja      .done
.skip:
        mov     rdx, [rdx + KH_RGN_NEXT]
        jmp     .next
.none:
        xor     eax, eax
.done:
        ret
.end:

; region_grow -- add memory from the growth hook: extend the region that ends where it starts,
; or else add it as a new region (region_add)
; C: int region_grow(void *start, size_t size)   (0 or a KHEAP_E_* code; nothing reported)
; The old end sentinel becomes the header of a new free block reaching the new end (merged
; with the region's last block if that is free); a new sentinel closes the region:
;   [ ... last ][S]  +  [ new memory ]  =>  [ ... last ][ ------ free ------ ][S']
;   [ ... last free ][S] + [ new memory ]  =>  [ ... ---------- last free ---------- ][S']
; IN rdi = start, rsi = size   OUT eax; clobbers caller-saved
; callee-saved: rbx, r12-r15; stack: 48
static region_grow:function (region_grow.end - region_grow)
region_grow:
        push    rbx
        push    r12
        push    r13
        push    r14
        push    r15
        ; 1. [A, E) aligned inward; a region R whose end is A, or a new region
        mov     rbx, rdi
        add     rbx, KHEAP_ALIGN - 1
        jc      .new
        and     rbx, -KHEAP_ALIGN       ; A
        mov     r12, rdi
        add     r12, rsi
        jc      .new                    ; wraps: region_add says so
        and     r12, -KHEAP_ALIGN       ; E
        mov     r13, CTL(KH_CTL_REGIONS)
.find:
        test    r13, r13
        jz      .new
        cmp     [r13 + KH_RGN_END], rbx
        je      .extend
        mov     r13, [r13 + KH_RGN_NEXT]
        jmp     .find
.new:
        call    region_add
        jmp     .out
.extend:
        ; 2. below the longest region, room for one block, no overlap
        mov     rcx, KH_RGN_MAX
        add     rcx, [r13 + KH_RGN_START]
        jc      .length_ok
        cmp     r12, rcx
        cmova   r12, rcx                ; longer than a block can be: use the first part
.length_ok:
        mov     eax, KHEAP_E_TOO_SMALL
        cmp     r12, rbx
        jbe     .out
        mov     rcx, r12
        sub     rcx, rbx
        cmp     rcx, KHEAP_MIN_BLOCK
        jb      .out
        mov     rdi, rbx
        mov     rsi, r12
        call    region_overlaps
        test    eax, eax
        jnz     .out
        ; 3. the old sentinel T becomes a free block header, or the free block L before it does
        lea     r14, [rbx - KH_SENTINEL_SIZE]           ; T
        mov     rdi, r14
        call    block_read
        mov     rsi, rax
        mov     eax, KHEAP_E_CORRUPT
        cmp     rsi, -1
        je      .out
        mov     rdi, r14
        call    block_read_prev
        mov     r15, rax                                ; L, 0, or -1 (edx = code)
        mov     eax, edx
        cmp     r15, -1
        je      .out
        test    r15, r15
        jz      .new_sentinel
        mov     rdi, r15
        mov     rsi, r14
        sub     rsi, r15                                ; L's size
        call    bin_remove
        mov     r14, r15
.new_sentinel:
        ; 4. new sentinel, region bounds, counters, then the free block
        lea     rdi, [r12 - KH_SENTINEL_SIZE]
        mov     esi, KH_F_PREV_FREE
        call    block_set
        mov     [r13 + KH_RGN_END], r12
        cmp     r12, CTL(KH_CTL_MAX)
        jbe     .max_ok
        mov     CTL(KH_CTL_MAX), r12
        SPAN_UPDATE rax
.max_ok:
        mov     rax, r12
        sub     rax, rbx
        add     CTL(KH_CTL_TOTAL), rax
%if KHEAP_DEBUG
        ; poison the new body: from the old sentinel's link area, or (merged with L) from
        ; L's old footer, up to the new footer
        lea     rdi, [rbx - KH_SENTINEL_SIZE + KH_FREE_BODY]
        lea     rax, [rbx - KH_SENTINEL_SIZE - KH_FOOTER_SIZE]
        test    r15, r15
        cmovnz  rdi, rax
        lea     rsi, [r12 - KH_SENTINEL_SIZE - KH_FOOTER_SIZE]
        sub     rsi, rdi
        call    dbg_poison
%endif
        mov     rdi, r14
        lea     rsi, [r12 - KH_SENTINEL_SIZE]
        sub     rsi, r14
        call    block_make_free
        xor     eax, eax
.out:
        pop     r15
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; region_add -- carve [start, start + size) into descriptor, one free block and a sentinel
; C: int region_add(void *start, size_t size)
; Aligns start up and the end down to 16; rejects NULL, wrap-around, too small, and overlap
; with any known region (region_overlaps: kheap_add_region is O(regions)).
; IN rdi = start, rsi = size   OUT eax = 0 or KHEAP_E_*; clobbers caller-saved
; callee-saved: rbx, r12; stack: 32
static region_add:function (region_add.end - region_add)
region_add:
        push    rbx
        push    r12
        sub     rsp, 8
        ; 1. [A, E): aligned inward, sane
        mov     eax, KHEAP_E_INVAL
        test    rdi, rdi
        jz      .out
        mov     rcx, rdi
        add     rcx, rsi
        jc      .out                    ; wraps, or ends exactly at 2^64 (see below)
        ; A region ending exactly at 2^64 does not wrap, but its end E would read 0: every
        ; bound here is an exclusive end kept in 64 bits (region ends, max, the [min, max)
        ; pointer checks of kfree and of list links), so E = 0 would make the region look
        ; empty and every pointer in it out of bounds. It is rejected with the wrap-arounds
        ; (KHEAP_E_INVAL); pass a size 16 bytes shorter to use the rest of it.
        mov     eax, KHEAP_E_TOO_SMALL
        lea     rbx, [rdi + KHEAP_ALIGN - 1]
        cmp     rbx, rdi
        jb      .out
        and     rbx, -KHEAP_ALIGN       ; A
        and     rcx, -KHEAP_ALIGN       ; E
        cmp     rcx, rbx
        jbe     .out
        mov     rdx, rcx
        sub     rdx, rbx
        cmp     rdx, KH_RGN_MIN
        jb      .out
        mov     r8, KH_RGN_MAX
        cmp     rdx, r8
        jbe     .length_ok
        lea     rcx, [rbx + r8]         ; longer than a block can be: use the first part
.length_ok:
        mov     r12, rcx
        ; 2. no overlap with a known region
        mov     rdi, rbx
        mov     rsi, r12
        call    region_overlaps
        test    eax, eax
        jnz     .out
.carve:
        ; 3. descriptor, bounds, counters
        mov     rax, CTL(KH_CTL_REGIONS)
        mov     [rbx + KH_RGN_NEXT], rax
        mov     [rbx + KH_RGN_START], rbx
        mov     [rbx + KH_RGN_END], r12
        mov     CTL(KH_CTL_REGIONS), rbx
        inc     qword CTL(KH_CTL_NREGIONS)
        cmp     rbx, CTL(KH_CTL_MIN)
        jae     .min_ok
        mov     CTL(KH_CTL_MIN), rbx
.min_ok:
        cmp     r12, CTL(KH_CTL_MAX)
        jbe     .max_ok
        mov     CTL(KH_CTL_MAX), r12
.max_ok:
        SPAN_UPDATE rax
        mov     rax, r12
        sub     rax, rbx
        sub     rax, KH_RGN_SIZE + KH_SENTINEL_SIZE
        add     CTL(KH_CTL_TOTAL), rax
        ; 4. [desc][ one free block ][sentinel: used, size 0, PREV_FREE]
        lea     rdi, [r12 - KH_SENTINEL_SIZE]
        mov     esi, KH_F_PREV_FREE
        call    block_set
        lea     rdi, [rbx + KH_RGN_SIZE]
        mov     rsi, r12
        sub     rsi, rdi
        sub     rsi, KH_SENTINEL_SIZE
        call    block_make_free
%if KHEAP_DEBUG
        lea     rdi, [rbx + KH_RGN_SIZE + KH_FREE_BODY]  ; the free block's body: poison
        lea     rsi, [r12 - KH_SENTINEL_SIZE - KH_FOOTER_SIZE]
        sub     rsi, rdi
        call    dbg_poison
%endif
        xor     eax, eax
.out:
        add     rsp, 8
        pop     r12
        pop     rbx
        ret
.end:

; heap_create_at -- make a heap over [mem, mem + size): control block at mem aligned up to 64,
; its first region after KHEAP_CTL_SIZE bytes. No hooks, counters zero, a fresh secret.
; C: kheap_t *heap_create_at(void *mem, size_t size)
; Runs with rbp = the new control block while it builds it; rbp is restored.
; IN rdi = mem, rsi = size   OUT rax = the heap, or 0 and edx = KHEAP_E_INVAL (NULL, wraps) or
; KHEAP_E_TOO_SMALL; clobbers caller-saved; callee-saved: rbx, r12, rbp; stack: 32
static heap_create_at:function (heap_create_at.end - heap_create_at)
heap_create_at:
        push    rbp
        push    rbx
        push    r12
        ; 1. [C, E): C = mem aligned up to 64; room for the control block and one region
        mov     edx, KHEAP_E_INVAL
        test    rdi, rdi
        jz      .fail
        mov     r12, rdi
        add     r12, rsi
        jc      .fail                   ; wraps (region_add rejects an end at 2^64 the same way)
        mov     edx, KHEAP_E_TOO_SMALL
        lea     rbx, [rdi + 63]
        cmp     rbx, rdi
        jb      .fail
        and     rbx, -64                ; C
        cmp     r12, rbx
        jb      .fail
        mov     rax, r12
        sub     rax, rbx
        cmp     rax, KHEAP_CREATE_MIN
        jb      .fail
        ; 2. a clean control block: no region, no hooks, a fresh secret
        mov     rdi, rbx
        mov     ecx, KH_CTL_BYTES / 8
        xor     eax, eax
        rep stosq
        mov     rbp, rbx
        mov     qword CTL(KH_CTL_MIN), -1
        rdtsc                           ; the secret: time stamp and address, mixed
        shl     rdx, 32
        or      rax, rdx
        xor     rax, rbx
        mov     rcx, KH_HASH_K2
        imul    rax, rcx
        mov     CTL(KH_CTL_SECRET), rax
        ; the link key derived from it (kh_link_key in kheap_internal.h): (secret ^ K) * K1,
        ; the 128-bit product folded (low ^ high half)
        mov     rcx, KH_QUICK_KEY_K
        xor     rax, rcx
        mov     rcx, KH_HASH_K1
        mul     rcx
        xor     rax, rdx
        mov     CTL(KH_CTL_LINK_KEY), rax
        mov     rax, CTL(KH_CTL_SECRET) ; the slab key the same way (kh_slab_key)
        mov     rcx, KH_SLAB_KEY_K
        xor     rax, rcx
        mov     rcx, KH_HASH_K1
        mul     rcx
        xor     rax, rdx
        mov     CTL(KH_CTL_SLAB_KEY), rax
        lea     rax, CTL(KH_CTL_CPU0)   ; one per-CPU slot until a cpu hook asks for more
        mov     CTL(KH_CTL_CPUS), rax
        mov     qword CTL(KH_CTL_NCPU), 1
        ; 3. the first region; then the heap is a heap (magic)
        lea     rdi, [rbx + KHEAP_CTL_SIZE]
        mov     rsi, r12
        sub     rsi, rdi
        call    region_add
        mov     edx, eax
        test    eax, eax
        jnz     .fail
        mov     rax, KH_HEAP_MAGIC
        xor     rax, rbx
        mov     CTL(KH_CTL_MAGIC), rax
        mov     rdi, rbx
        call    heap_gate
        mov     rax, rbx
        jmp     .out
.fail:
        xor     eax, eax
.out:
        pop     r12
        pop     rbx
        pop     rbp
        ret
.end:

; heap_init -- kheap_init under the default heap's lock: make a new default heap over [start,
; start + size) with the default heap's hooks, kept in kheap_none (rbp) so that they survive
; whatever happened to the old heap's memory. On failure the default heap is the empty one
; (kheap_none, cleared but for its hooks).
; C: int heap_init(void *start, size_t size)
; IN rdi = start, rsi = size   OUT eax = 0 or KHEAP_E_*; clobbers caller-saved
; callee-saved: rbx; stack: 16 + KH_HOOKS_BYTES rounded + heap_create_at's
HOOKS_FRAME equ (KH_HOOKS_BYTES + 15) / 16 * 16
static heap_init:function (heap_init.end - heap_init)
heap_init:
        push    rbx
        sub     rsp, HOOKS_FRAME
        call    heap_create_at
        mov     ebx, edx
        test    rax, rax
        jz      .empty
        ; 1. made: it gets the hooks and the caller, and is the default heap
        mov     [rel kheap_default_heap], rax
        mov     rcx, CTL(KH_CTL_CALLER)
        mov     [rax + KH_CTL_CALLER], rcx
        lea     rdi, [rax + KH_CTL_HOOKS]
        lea     rsi, CTL(KH_CTL_HOOKS)
        mov     ecx, KH_HOOKS_BYTES / 8
        rep movsq
        push    rbp                     ; 2. the per-CPU slots the hooks ask for
        sub     rsp, 8                  ; (the hooks run on a 16-byte aligned stack)
        mov     rbp, rax
        lea     rdi, CTL(KH_CTL_HOOKS)
        call    heap_setup_cpus         ; (too small for them: one slot, no error)
        mov     rdi, rbp
        call    heap_gate
        add     rsp, 8
        pop     rbp
        xor     eax, eax
        jmp     .out
.empty:
        ; 3. failed: the empty heap again, counters cleared, hooks kept
        mov     rdi, rsp
        lea     rsi, CTL(KH_CTL_HOOKS)
        mov     ecx, KH_HOOKS_BYTES / 8
        rep movsq
        mov     rdi, rbp
        mov     ecx, KH_CTL_BYTES / 8
        xor     eax, eax
        rep stosq
        lea     rdi, CTL(KH_CTL_HOOKS)
        mov     rsi, rsp
        mov     ecx, KH_HOOKS_BYTES / 8
        rep movsq
        mov     [rel kheap_default_heap], rbp
        mov     eax, ebx
.out:
        add     rsp, HOOKS_FRAME
        pop     rbx
        ret
.end:

; heap_add_region -- kheap_extend / kheap_add_region under the lock (KHEAP_E_NOT_INIT for the
; empty default heap)
; C: int heap_add_region(void *start, size_t size)
; IN rdi, rsi   OUT eax; clobbers caller-saved; stack: see region_add
static heap_add_region:function (heap_add_region.end - heap_add_region)
heap_add_region:
        cmp     qword CTL(KH_CTL_NREGIONS), 0
        jne     region_add
        mov     eax, KHEAP_E_NOT_INIT
        ret
.end:

; heap_stats -- kheap_stats under the lock
; C: void heap_stats(struct kheap_stats *s)
; First the front cache goes back to the free lists (quick_flush, bounded), so that
; largest_free is what one allocation can get now: the head of the highest non-empty list (good
; fit takes only heads, and every block of a higher list is larger than any of a lower one). A
; head whose header fails its checks is passed over for the next list down (at most every list:
; a constant) and not reported here (an allocation will; the flush reports what it finds, as
; kheap_flush does). free_bytes is total - used.
; fragmentation_ppm is (1 - largest / free) in parts per million.
; IN rdi = s   OUT none; clobbers caller-saved; callee-saved: rbx; stack: 16 + quick_flush
static heap_stats:function (heap_stats.end - heap_stats)
heap_stats:
        push    rbx
        mov     rbx, rdi
%if KH_QUICK
        call    quick_flush
%endif
        mov     rdi, rbx
        mov     rax, CTL(KH_CTL_TOTAL)
        mov     [rdi + KH_ST_TOTAL], rax
        mov     rcx, CTL(KH_CTL_USED)
        mov     [rdi + KH_ST_USED], rcx
        sub     rax, rcx                ; free bytes: total - used
        mov     [rdi + KH_ST_FREE], rax
        mov     rax, CTL(KH_CTL_PEAK)
        mov     [rdi + KH_ST_PEAK], rax
        mov     rax, CTL(KH_CTL_ALLOCS)
        mov     [rdi + KH_ST_ALLOCS], rax
        mov     rax, CTL(KH_CTL_FREES)
        mov     [rdi + KH_ST_FREES], rax
        mov     rax, CTL(KH_CTL_FAILED)
        mov     [rdi + KH_ST_FAILED], rax
        mov     rax, CTL(KH_CTL_ERRORS)
        mov     [rdi + KH_ST_ERRORS], rax
        mov     rax, CTL(KH_CTL_NREGIONS)
        mov     [rdi + KH_ST_REGIONS], eax
        mov     rax, CTL(KH_CTL_TRIMMED)
        mov     [rdi + KH_ST_TRIMMED], rax
        ; the slab tier: its slabs, their free objects, and the per-CPU stacks (read as they
        ; are: another CPU's may change meanwhile), whose calls are counted in their slots
        mov     rax, CTL(KH_CTL_SLAB_BYTES)
        mov     [rdi + KH_ST_SLAB], rax
        mov     rax, CTL(KH_CTL_SLAB_FREE)
        mov     [rdi + KH_ST_SLAB_FREE], rax
        xor     r10d, r10d              ; cached bytes
        mov     r9, CTL(KH_CTL_CPUS)
        mov     r11, CTL(KH_CTL_NCPU)
        lea     r8, [rel kh_slab_class]
.slot:
        sub     r11, 1
        jc      .slots_done
        mov     rax, [r9 + KH_CPU_ALLOCS]
        add     [rdi + KH_ST_ALLOCS], rax
        mov     rax, [r9 + KH_CPU_FREES]
        add     [rdi + KH_ST_FREES], rax
        xor     ecx, ecx
.class:
        movzx   eax, byte [r9 + KH_CPU_COUNT + rcx]
        mov     edx, ecx
        shl     edx, 4
        imul    eax, [r8 + rdx + KH_CLS_SIZE]
        add     r10, rax
        inc     ecx
        cmp     ecx, KH_SLAB_CLASSES
        jb      .class
        add     r9, KH_CPU_BYTES
        jmp     .slot
.slots_done:
        mov     r9, CTL(KH_CTL_DEPOT)   ; the depot's half stacks
        test    r9, r9
        jz      .depot_done
        xor     ecx, ecx
.depot_class:
        mov     rax, [r9 + KH_DEPOT_NFULL]
        mov     edx, ecx
        shl     edx, 4
        imul    eax, [r8 + rdx + KH_CLS_SIZE]
        shl     rax, KH_MAG_LOG2 - 1              ; * KH_MAG_BATCH objects each
        add     r10, rax
        add     r9, KH_DEPOT_BYTES
        inc     ecx
        cmp     ecx, KH_SLAB_CLASSES
        jb      .depot_class
.depot_done:
        mov     [rdi + KH_ST_CACHED], r10
        ; used_bytes is what users hold: blocks (not slabs, not the slots' block) and live slab
        ; objects (all objects - free ones - cached ones); free_bytes the rest
        mov     rax, CTL(KH_CTL_USED)
        sub     rax, CTL(KH_CTL_SLAB_BYTES)
        add     rax, CTL(KH_CTL_SLAB_CAP)
        sub     rax, CTL(KH_CTL_SLAB_FREE)
        sub     rax, r10
        mov     rcx, CTL(KH_CTL_CPU_BLOCK)
        test    rcx, rcx
        jz      .used
        mov     rdx, KH_SIZE_MASK
        and     rdx, [rcx - KHEAP_HEADER_SIZE]
        sub     rax, rdx
.used:
        mov     [rdi + KH_ST_USED], rax
        mov     rcx, [rdi + KH_ST_TOTAL]
        sub     rcx, rax
        mov     [rdi + KH_ST_FREE], rcx
        ; largest free block: the first valid head from the highest non-empty list down
        xor     eax, eax
        mov     rdx, CTL(KH_CTL_FL_MAP)
        test    rdx, rdx
        jz      .largest_done
        bsr     rdx, rdx
        bsr     r8d, dword CTL(KH_CTL_SL_MAP + rdx*4)
        jz      .largest_done           ; (a bitmap out of step: nothing to trust)
        shl     edx, KHEAP_SL_LOG2
        add     edx, r8d                ; flat index of the highest non-empty list
.largest_loop:
        mov     rsi, CTL(KH_CTL_HEADS + rdx*8)
        test    rsi, rsi
        jz      .largest_next
        HDR_ADDR_OK rsi, rcx, .largest_next
        mov     r8, [rsi]
        BLOCK_CHECK r8, rsi, r9, rcx, .largest_next
        test    r9b, KH_F_FREE
        jz      .largest_next
        and     r9, -KHEAP_ALIGN
        mov     rax, r9
        jmp     .largest_done
.largest_next:
        sub     edx, 1
        jnc     .largest_loop
.largest_done:
        mov     [rdi + KH_ST_LARGEST], rax
        ; fragmentation = (free - largest) * 10^6 / free, in 128 bits (free may be ~2^48)
        mov     rcx, [rdi + KH_ST_FREE]
        xor     esi, esi
        cmp     rax, rcx
        jae     .frag_done              ; nothing free, or one block: no fragmentation
        neg     rax
        add     rax, rcx                ; free - largest
        mov     edx, KH_PPM
        mul     rdx
        div     rcx
        mov     esi, eax
.frag_done:
        mov     [rdi + KH_ST_FRAG], esi
        pop     rbx
        ret
.end:

; heap_flush -- kheap_flush under the lock: the slab tier's spare slabs and this CPU's stacks
; back (slab_reclaim; every other CPU empties its stacks at its next call), every front-cache
; block back to the free lists,
; then, with a trim hook, the free block that ends the heap (if any) offered to it: a cached
; block can sit between a free span and the end, and its merge in the flush is not a user's
; free (so block_free does not offer it). O(1) + heap_trim_tail's O(regions) + the hook.
; C: void heap_flush(void)
; IN none   OUT none; clobbers caller-saved; callee-saved: rbx; stack: 16 + quick_flush's or
; heap_trim_tail's
static heap_flush:function (heap_flush.end - heap_flush)
heap_flush:
        push    rbx                     ; (the callees' stack alignment)
        mov     edi, 1                  ; a user's call: the heap's end may be given back
        call    slab_reclaim
%if KH_QUICK
        call    quick_flush             ; (its count is not part of the API)
%endif
        cmp     qword CTL(KH_CTL_TRIM), 0
        je      .out
        ; the end sentinel at max - 8 and its free left neighbour, checked as a free checks it
        mov     rdi, CTL(KH_CTL_MAX)
        sub     rdi, KH_SENTINEL_SIZE
        HDR_ADDR_OK rdi, rcx, .out
        mov     rsi, [rdi]
        BLOCK_CHECK rsi, rdi, rbx, rcx, .out
        mov     rsi, rbx
        call    block_read_prev         ; P, 0, or -1 (a corrupt P: left to kheap_verify)
        test    rax, rax
        jle     .out
        mov     rdi, rax
        mov     rsi, r8                 ; P's size (its footer's, equal to its header's)
        call    heap_trim_tail          ; (re-checks that P ends at a sound sentinel)
.out:
        pop     rbx
        ret
.end:

; heap_fail_after / heap_fail_rate -- the fault-injection setters, under the lock
; C: void heap_fail_after(long n)  (stores n + 1, 0 = off for any n < 0)
;    void heap_fail_rate(uint32_t ppm, uint64_t seed)
; IN rdi (, rsi)   OUT none; clobbers rax, rdi (heap_gate); stack: none
static heap_fail_after:function (heap_fail_after.end - heap_fail_after)
heap_fail_after:
        lea     rax, [rdi + 1]
        test    rdi, rdi
        jns     .store
        xor     eax, eax
.store:
        mov     CTL(KH_CTL_FAIL_AFTER), rax
        mov     rdi, rbp
        jmp     heap_gate
.end:
static heap_fail_rate:function (heap_fail_rate.end - heap_fail_rate)
heap_fail_rate:
        mov     eax, edi                ; zero-extends the 32-bit ppm
        mov     CTL(KH_CTL_FAIL_PPM), rax
        mov     CTL(KH_CTL_FAIL_RNG), rsi
        mov     rdi, rbp
        jmp     heap_gate
.end:

; heap_verify, heap_walk, heap_leaks, heap_restamp -- the C diagnostics of mm/kheap_check.c and
; mm/kheap_diag.c, under the lock: the heap (rbp) becomes their first argument
; C: int heap_verify(void), heap_walk(fn, ctx), heap_leaks(fn, ctx), heap_restamp(secret)
; IN rdi (, rsi)   OUT eax; clobbers caller-saved; stack: the callee's (tail calls)
static heap_verify:function (heap_verify.end - heap_verify)
heap_verify:
        mov     rdi, rbp
        jmp     kheap_check_walk wrt ..plt
.end:
static heap_walk:function (heap_walk.end - heap_walk)
heap_walk:
        mov     rdx, rsi
        mov     rsi, rdi
        mov     rdi, rbp
        jmp     kheap_walk_locked wrt ..plt
.end:
static heap_leaks:function (heap_leaks.end - heap_leaks)
heap_leaks:
        mov     rdx, rsi
        mov     rsi, rdi
        mov     rdi, rbp
        jmp     kheap_leak_locked wrt ..plt
.end:
static heap_restamp:function (heap_restamp.end - heap_restamp)
heap_restamp:
        mov     rsi, rdi
        mov     rdi, rbp
        jmp     kheap_restamp_locked wrt ..plt
.end:

; heap_set_hooks -- replace every hook of the heap (no lock: nobody may be inside the heap)
; C: int heap_set_hooks(const struct kheap_hooks *hooks)   (NULL: none)
; A lock without unlock, or the reverse, or a cpu hook with ncpu outside 1..KHEAP_MAX_CPUS is
; KHEAP_E_INVAL and changes nothing; so is KHEAP_E_TOO_SMALL, when the heap has no room for the
; ncpu slots the cpu hook asks for. The empty default heap only keeps the hooks.
; IN rdi = hooks   OUT eax = 0 or KHEAP_E_*; clobbers caller-saved; callee-saved: rbx
; stack: 16 + heap_setup_cpus'
static heap_set_hooks:function (heap_set_hooks.end - heap_set_hooks)
heap_set_hooks:
        push    rbx
        mov     rbx, rdi
        test    rdi, rdi
        jz      .set
        xor     eax, eax
        cmp     qword [rdi + KH_HOOKS_LOCK], 0
        sete    al
        xor     ecx, ecx
        cmp     qword [rdi + KH_HOOKS_UNLOCK], 0
        sete    cl
        cmp     eax, ecx
        jne     .inval
        cmp     qword [rdi + KH_HOOKS_CPU], 0
        je      .set
        mov     eax, [rdi + KH_HOOKS_NCPU]
        sub     eax, 1
        cmp     eax, KHEAP_MAX_CPUS
        jae     .inval
.set:
        cmp     qword CTL(KH_CTL_NREGIONS), 0
        je      .copy                   ; the empty default heap: no slots to make
        mov     rdi, rbx
        call    heap_setup_cpus
        test    eax, eax
        jnz     .out
.copy:
        lea     rdi, CTL(KH_CTL_HOOKS)
        mov     ecx, KH_HOOKS_BYTES / 8
        test    rbx, rbx
        jz      .clear
        mov     rsi, rbx
        rep movsq
        xor     eax, eax
        jmp     .out
.clear:
        xor     eax, eax
        rep stosq
        jmp     .out
.inval:
        mov     eax, KHEAP_E_INVAL
.out:
        mov     rdi, rbp                ; (whatever happened: the gate says what is)
        mov     rbx, rax
        call    heap_gate
        mov     rax, rbx
        pop     rbx
        ret
.end:

; heap_setup_cpus -- make the per-CPU slots the hooks `hooks` ask for (nobody may be inside the
; heap): ncpu slots in a block of their own when there is a cpu hook and ncpu > 1, else the one
; slot in the control block. The new block is made first (no room: KHEAP_E_TOO_SMALL, nothing
; changed); then every old slot's stacks go back to the slabs, their counters to the heap's,
; the old block is freed and the new slots are used. O(slots * KH_SLAB_CLASSES * KH_MAG_DEPTH).
; C: int heap_setup_cpus(const struct kheap_hooks *hooks)   (hooks may be NULL)
; IN rdi = hooks   OUT eax = 0 or KHEAP_E_TOO_SMALL; clobbers caller-saved
; callee-saved: rbx, r12-r14; stack: 40 + callees'
static heap_setup_cpus:function (heap_setup_cpus.end - heap_setup_cpus)
heap_setup_cpus:
        push    rbx
        push    r12
        push    r13
        push    r14
        sub     rsp, 8
        lea     r12, CTL(KH_CTL_CPU0)   ; new slots
        mov     r13d, 1                 ; how many
        xor     r14d, r14d              ; their block
        test    rdi, rdi
        jz      .drain
        cmp     qword [rdi + KH_HOOKS_CPU], 0
        je      .drain
        mov     r13d, [rdi + KH_HOOKS_NCPU]
        cmp     r13d, 1
        jbe     .drain
        ; 1. the new block (the slots, then the depot), zeroed
        imul    edi, r13d, KH_CPU_BYTES
        add     edi, KH_SLAB_CLASSES * KH_DEPOT_BYTES
        call    block_request
        mov     rsi, rax
        mov     edi, 64
        xor     edx, edx
        call    block_aligned
        test    rax, rax
        jz      .too_small
        STATS_PEAK rcx
        lea     r12, [rax + KHEAP_HEADER_SIZE]
        mov     r14, r12
        mov     rdi, r12
        imul    ecx, r13d, KH_CPU_BYTES
        add     ecx, KH_SLAB_CLASSES * KH_DEPOT_BYTES
        xor     eax, eax
        rep stosb
.drain:
%if KH_SLAB_FAST
        ; 2. the old depot emptied (its stacks back to the slabs)
        xor     edi, edi
        call    depot_drain
%endif
        ; 2. the old slots emptied, their counters kept
%if KH_SLAB_FAST
        xor     ebx, ebx
.slot:
        cmp     rbx, CTL(KH_CTL_NCPU)
        jae     .counted
        imul    rdi, rbx, KH_CPU_BYTES
        add     rdi, CTL(KH_CTL_CPUS)
        mov     rax, [rdi + KH_CPU_ALLOCS]
        add     CTL(KH_CTL_ALLOCS), rax
        mov     rax, [rdi + KH_CPU_FREES]
        add     CTL(KH_CTL_FREES), rax
        mov     qword [rdi + KH_CPU_ALLOCS], 0
        mov     qword [rdi + KH_CPU_FREES], 0
        xor     esi, esi
        call    mag_drain_all
        inc     ebx
        jmp     .slot
.counted:
%endif
        xor     ebx, ebx                ; then (no more frees into them) every slot's partial
.rehome:                                ; slabs onto the heap's lists
        cmp     rbx, CTL(KH_CTL_NCPU)
        jae     .rehomed
        lea     edi, [ebx + 1]
        call    slab_rehome
        inc     ebx
        jmp     .rehome
.rehomed:
        ; 3. the old block freed, the new slots in place
        mov     rdi, CTL(KH_CTL_CPU_BLOCK)
        test    rdi, rdi
        jz      .install
        sub     rdi, KHEAP_HEADER_SIZE
        HDR_LOW rsi, [rdi]
        xor     edx, edx
        call    block_free              ; (a corrupt neighbour: reported, the block kept)
.install:
        mov     CTL(KH_CTL_CPUS), r12
        mov     CTL(KH_CTL_NCPU), r13
        mov     CTL(KH_CTL_CPU_BLOCK), r14
        xor     eax, eax
        test    r14, r14
        jz      .no_depot
        imul    eax, r13d, KH_CPU_BYTES
        add     rax, r14
.no_depot:
        mov     CTL(KH_CTL_DEPOT), rax
        xor     eax, eax
        jmp     .out
.too_small:
        mov     eax, KHEAP_E_TOO_SMALL
.out:
        add     rsp, 8
        pop     r14
        pop     r13
        pop     r12
        pop     rbx
        ret
.end:

; =============================================================================================
; Public entries: find the heap (the default one, or a checked h), lock, note the caller's
; return address for error reports, call the internal routine with rbp = the heap, unlock.
; =============================================================================================

; ENTRY_BODY internal -- the common body of a public entry: rax = the heap, rdi and rsi its
; internal routine's arguments. At entry [rsp] is the caller's return address (also when
; entered through a my_* alias). OUT rax = the internal routine's result.
; callee-saved: rbp, rbx, r12 (saved); stack: 32 plus the internal routine's and the hooks'
%macro ENTRY_BODY 1
        cmp     qword [rax + KH_CTL_LOCK_ACQ], 0
        jne     %%locked                ; no lock: one predictable branch
        mov     r11, rax
        UNLOCKED_CALL %1
%%locked:
        push    rbp
        mov     rbp, rax
        push    rbx
        push    r12                     ; three pushes: the stack is 16-aligned for calls
        mov     rbx, rdi
        mov     r12, rsi
        call    heap_lock
        mov     rax, [rsp + 3 * 8]      ; our caller's return address
        mov     CTL(KH_CTL_CALLER), rax
        mov     rdi, rbx
        mov     rsi, r12
        call    %1
        mov     rbx, rax
        call    heap_unlock
        mov     rax, rbx
        pop     r12
        pop     rbx
        pop     rbp
        ret
%endmacro

; UNLOCKED_CALL internal -- the body of a public entry for a heap without lock hooks: r11 = the
; heap, rdi and rsi the internal routine's arguments, [rsp] the caller's return address.
; OUT rax = the internal routine's result; callee-saved: rbp (saved); stack: 16 + the routine's
%macro UNLOCKED_CALL 1
        push    rbp
        mov     rbp, r11
        mov     rax, [rsp + 8]          ; our caller's return address
        mov     CTL(KH_CTL_CALLER), rax
        call    %1
        pop     rbp
        ret
%endmacro

; DEFAULT_ENTRY internal -- a k* call of the default heap: arguments as the internal routine's.
; Its .body is where the instance form of the call goes on with its heap in rax.
%macro DEFAULT_ENTRY 1
        mov     rax, [rel kheap_default_heap]
.body:
        ENTRY_BODY %1
%endmacro

; HEAP_CHECK bad -- jump to `bad` unless rdi is a heap of kheap_create (its magic); rax clobbered
%macro HEAP_CHECK 1
        test    rdi, rdi
        jz      %1
        mov     rax, KH_HEAP_MAGIC
        xor     rax, rdi
        cmp     rax, [rdi + KH_CTL_MAGIC]
        jne     %1
%endmacro

; HEAP_ENTRY body, bad -- a call of heap h = rdi with up to two more arguments (rsi, rdx): on
; to the default entry's `body` with the heap in rax and the arguments shifted down; a bad h
; jumps to `bad` (the result a bad heap gives)
%macro HEAP_ENTRY 2
        HEAP_CHECK %2
        mov     rax, rdi
        mov     rdi, rsi
        mov     rsi, rdx
        jmp     %1
%endmacro

; SLOT_ENTRY slow [, recheck] -- the calling CPU's slot for an entry fast path (heap in r11, the
; argument in rdi, both kept), as the heap's gate says: KH_GATE_SLOT0 slot 0, KH_GATE_CPU the
; cpu hook's index, which must be below ncpu; KH_GATE_OFF (a lock without a cpu hook, fault
; injection, no heap) jumps to `slow`. The slot must be neither busy (an interrupted call of
; this CPU is in it) nor asked to drain; it is marked busy, rax = the slot. Anything else jumps
; to `slow`. `recheck`, a macro taking `slow`, runs right after the hook returns (what the
; caller checked before may have changed meanwhile). Without a hook only rax is clobbered; with
; one the caller-saved registers.
%macro SLOT_ENTRY 1-2
        mov     rax, [r11 + KH_CTL_GATE]
        cmp     rax, KH_GATE_SLOT0
        je      %%slot0
        cmp     rax, KH_GATE_CPU
        jne     %1
        push    rdi
        push    r11
        sub     rsp, 8
        call    [r11 + KH_CTL_CPU_FN]
        add     rsp, 8
        pop     r11
        pop     rdi
        mov     eax, eax
  %if %0 > 1
        %2      %1
  %endif
        cmp     rax, [r11 + KH_CTL_NCPU]
        jae     %1
        imul    rax, rax, KH_CPU_BYTES
        add     rax, [r11 + KH_CTL_CPUS]
        jmp     %%slot
%%slot0:
        lea     rax, [r11 + KH_CTL_CPU0]        ; (no cpu hook: cpus = &cpu0, ncpu = 1)
%%slot:
        cmp     byte [rax + KH_CPU_BUSY], 0     ; (bytes: a word load would not be
        jne     %1                              ; forwarded from the last call's byte store)
        cmp     byte [rax + KH_CPU_DRAIN], 0
        jne     %1
        mov     byte [rax + KH_CPU_BUSY], 1
%endmacro

; MALLOC_ENTRY slow -- kmalloc's common case inline in the entry (release build), heap in r11,
; n in rdi: n <= KH_SLAB_MAX, no fault injection, this CPU's slot usable (SLOT_ENTRY) and its
; stack of n's class not empty: its top object, checked as an entry that heap memory holds
; must be (in the heap, its slab's check word for this class, exactly an object, CACHED),
; becomes LIVE and is returned from the entry. No lock, nothing shared written but the object's
; state byte. Anything else (or an entry that fails a check: the full path reports it) jumps to
; `slow` with r11 and rdi as they were.
; clobbers rax, rcx, rdx, rsi, r8, r9, r10
%macro MALLOC_ENTRY 1
%if KH_SLAB_FAST
        cmp     rdi, KH_SLAB_MAX
        ja      %1
        SLOT_ENTRY %1                           ; (not with fault injection: the gate)
        lea     rcx, [rdi + 15]
        shr     rcx, 4
        lea     rdx, [rel kh_size_class]
        movzx   ecx, byte [rdx + rcx]           ; c
        movzx   edx, byte [rax + KH_CPU_COUNT + rcx]
        sub     edx, 1
        jc      %%miss                          ; empty: the full path refills it
        cmp     edx, KH_MAG_DEPTH
        jae     %%miss                          ; (a count past the depth: it reports)
        mov     r8, rcx
        shl     r8, KH_MAG_LOG2 + 3
        add     r8, rax
        mov     r8, [r8 + KH_CPU_OBJ + rdx*8]   ; p
        mov     r9, r8
        and     r9, -KH_SLAB_SIZE               ; S
        cmp     r9, [r11 + KH_CTL_MIN]
        jb      %%miss
        cmp     r8, [r11 + KH_CTL_MAX]
        jae     %%miss
        mov     r10, r9                         ; (S ^ c) * K1 is one-to-one in c: a match
        xor     r10, rcx                        ; also says the slab is of class c
        imul    r10, [rel kh_k1]
        xor     r10, [r11 + KH_CTL_SLAB_KEY]
        cmp     r10, [r9 + KH_SL_CHECK]
        jne     %%miss
        test    r8b, KHEAP_ALIGN - 1
        jnz     %%miss
        SLAB_GRANULE r10, r8
        SLAB_START_OK r10, rcx, rsi, %%miss
        cmp     byte [r9 + KH_SL_STATE + r10], KH_OBJ_CACHED
        jne     %%miss
        mov     byte [r9 + KH_SL_STATE + r10], KH_OBJ_LIVE
        mov     [rax + KH_CPU_COUNT + rcx], dl  ; popped
        inc     qword [rax + KH_CPU_ALLOCS]
        mov     byte [rax + KH_CPU_BUSY], 0
        mov     rax, r8
        ret
%%miss:
        mov     byte [rax + KH_CPU_BUSY], 0
        jmp     %1
%endif
%endmacro

; SLAB_RECHECK slow -- r9 = p's slab S and ecx = its class again, checked again (the class
; below KH_SLAB_CLASSES, the check word): after the cpu hook ran, a stale pointer's slab may
; have been given back by another CPU; if so, jump to `slow`. p in rdi, the heap in r11.
; clobbers rcx, r9, r10
%macro SLAB_RECHECK 1
        mov     r9, rdi
        and     r9, -KH_SLAB_SIZE
        movzx   ecx, byte [r9 + KH_SL_CLS]
        cmp     ecx, KH_SLAB_CLASSES            ; (a check word only the heap computes says
        jae     %1                              ; so too, but the key may be known: not a bound)
        mov     r10, r9
        xor     r10, rcx
        imul    r10, [rel kh_k1]
        xor     r10, [r11 + KH_CTL_SLAB_KEY]
        cmp     r10, [r9 + KH_SL_CHECK]
        jne     %1
%endmacro

; FREE_ENTRY slow -- kfree inline in the entry (release build), heap in r11, p in rdi: NULL; a
; slab object (16-aligned, inside the heap, its slab's check word right) that is exactly a
; LIVE object goes onto this CPU's stack of its class if the slot is usable and the stack not
; full (no lock, only the object's state byte shared). Else, for a heap without lock hooks,
; FREE_FAST for a block (a block FREE_FAST has checked goes on to heap_free_valid or
; heap_free_prev without being checked again). It returns from the entry; whatever is in doubt
; jumps to `slow` (which checks again and reports) with r11 and rdi as they were.
; clobbers rax, rcx, rdx, rsi, r8, r9, r10
%macro FREE_ENTRY 1
%if KH_SLAB_FAST
        test    rdi, rdi
        jz      %%out
        test    dil, KHEAP_ALIGN - 1
        jnz     %1
        mov     r9, rdi
        and     r9, -KH_SLAB_SIZE               ; S, if p is a slab object
        cmp     r9, [r11 + KH_CTL_MIN]
        jb      %%block
        cmp     rdi, [r11 + KH_CTL_MAX]
        jae     %1
        movzx   ecx, byte [r9 + KH_SL_CLS]
        cmp     ecx, KH_SLAB_CLASSES            ; (it indexes the slot: bounded here, whatever
        jae     %%block                         ; the check word says)
        mov     r10, r9
        xor     r10, rcx
        imul    r10, [rel kh_k1]
        xor     r10, [r11 + KH_CTL_SLAB_KEY]
        cmp     r10, [r9 + KH_SL_CHECK]
        jne     %%block
        SLOT_ENTRY %1, SLAB_RECHECK             ; (r9 = S, ecx = its class, still)
        movzx   edx, byte [rax + KH_CPU_COUNT + rcx]
        cmp     edx, KH_MAG_DEPTH
        jae     %%miss                          ; full: the full path drains it
        SLAB_GRANULE r8, rdi
        SLAB_START_OK r8, rcx, r10, %%miss ; (an object starts there, says rodata)
        cmp     byte [r9 + KH_SL_STATE + r8], KH_OBJ_LIVE
        jne     %%miss
        mov     byte [r9 + KH_SL_STATE + r8], KH_OBJ_CACHED
        mov     r8, rcx
        shl     r8, KH_MAG_LOG2 + 3
        add     r8, rax
        mov     [r8 + KH_CPU_OBJ + rdx*8], rdi
        inc     byte [rax + KH_CPU_COUNT + rcx]
        inc     qword [rax + KH_CPU_FREES]
        mov     byte [rax + KH_CPU_BUSY], 0
%%out:
        ret
%%miss:
        mov     byte [rax + KH_CPU_BUSY], 0
        jmp     %1
%%block:
  %if KH_QUICK_FAST
        cmp     qword [r11 + KH_CTL_LOCK_ACQ], 0
        jne     %1
    %define KHB r11
        FREE_FAST %1, %%valid, %%prev
    %define KHB rbp
        ret
%%valid:
        UNLOCKED_CALL heap_free_valid
%%prev:
        UNLOCKED_CALL heap_free_prev
  %else
        jmp     %1
  %endif
%endif
%endmacro

; What a call with a bad heap returns.
static bad_heap_null:function (bad_heap_null.end - bad_heap_null)
bad_heap_null:
        xor     eax, eax
        ret
.end:
static bad_heap_inval:function (bad_heap_inval.end - bad_heap_inval)
bad_heap_inval:
        mov     eax, KHEAP_E_INVAL
        ret
.end:

global kheap_init:function (kheap_init.end - kheap_init)
global kheap_add_region:function (kheap_add_region.end - kheap_add_region)
global kmalloc:function (my_malloc.end - kmalloc)
global kcalloc:function (my_calloc.end - kcalloc)
global krealloc:function (my_realloc.end - krealloc)
global kfree:function (my_free.end - kfree)
global kmalloc_aligned:function (kmalloc_aligned.end - kmalloc_aligned)
global ksize:function (ksize.end - ksize)
global kheap_check:function (kheap_check.end - kheap_check)
global kheap_get_stats:function (kheap_get_stats.end - kheap_get_stats)
global kheap_flush:function (kheap_flush.end - kheap_flush)
global kheap_set_error_handler:function (kheap_set_error_handler.end - kheap_set_error_handler)
global kheap_set_lock:function (kheap_set_lock.end - kheap_set_lock)
global kheap_set_grow:function (kheap_set_grow.end - kheap_set_grow)
global kheap_walk:function (kheap_walk.end - kheap_walk)
global kheap_leak_report:function (kheap_leak_report.end - kheap_leak_report)
global kheap_set_secret:function (kheap_set_secret.end - kheap_set_secret)
global kheap_fail_after:function (kheap_fail_after.end - kheap_fail_after)
global kheap_fail_rate:function (kheap_fail_rate.end - kheap_fail_rate)
global my_malloc:function (my_malloc.end - my_malloc)
global my_calloc:function (my_calloc.end - my_calloc)
global my_realloc:function (my_realloc.end - my_realloc)
global my_free:function (my_free.end - my_free)
global kheap_create:function (kheap_create.end - kheap_create)
global kheap_default:function (kheap_default.end - kheap_default)
global kheap_extend:function (kheap_extend.end - kheap_extend)
global kheap_alloc:function (kheap_alloc.end - kheap_alloc)
global kheap_calloc:function (kheap_calloc.end - kheap_calloc)
global kheap_realloc:function (kheap_realloc.end - kheap_realloc)
global kheap_alloc_aligned:function (kheap_alloc_aligned.end - kheap_alloc_aligned)
global kheap_free:function (kheap_free.end - kheap_free)
global kheap_usable:function (kheap_usable.end - kheap_usable)
global kheap_verify:function (kheap_verify.end - kheap_verify)
global kheap_stats:function (kheap_stats.end - kheap_stats)
global kheap_flush_in:function (kheap_flush_in.end - kheap_flush_in)
global kheap_set_hooks:function (kheap_set_hooks.end - kheap_set_hooks)
global kheap_get_hooks:function (kheap_get_hooks.end - kheap_get_hooks)
global kheap_walk_in:function (kheap_walk_in.end - kheap_walk_in)
global kheap_leak_report_in:function (kheap_leak_report_in.end - kheap_leak_report_in)
global kheap_set_secret_in:function (kheap_set_secret_in.end - kheap_set_secret_in)
global kheap_fail_after_in:function (kheap_fail_after_in.end - kheap_fail_after_in)
global kheap_fail_rate_in:function (kheap_fail_rate_in.end - kheap_fail_rate_in)
global kheap_default_heap:data hidden

; ---- the default heap ------------------------------------------------------------------------

align 16
; kheap_init -- (re)make the default heap over one region, with the default heap's hooks. The
; lock taken is theirs (kept in kheap_none, which the new heap never overwrites).
; C: int kheap_init(void *start, size_t size)   IN rdi, rsi   OUT eax
kheap_init:
        lea     rax, [rel kheap_none]
        ENTRY_BODY heap_init
.end:

align 16
; kheap_add_region -- another disjoint region for the default heap
; C: int kheap_add_region(void *start, size_t size)   IN rdi, rsi   OUT eax
kheap_add_region:
        DEFAULT_ENTRY heap_add_region
.end:

align 16
; kmalloc / my_malloc -- at least n usable bytes, 16-aligned, or NULL. O(1)
; C: void *kmalloc(size_t n)   IN rdi   OUT rax
kmalloc:
my_malloc:
        mov     r11, [rel kheap_default_heap]
.with_heap:                             ; r11 = the heap (kheap_alloc goes on here)
        MALLOC_ENTRY .full
.full:
        mov     rax, r11
        ENTRY_BODY heap_malloc
.end:

align 16
; kcalloc / my_calloc -- n * size zeroed bytes, NULL on overflow. O(1) + zeroing
; C: void *kcalloc(size_t n, size_t size)   IN rdi, rsi   OUT rax
kcalloc:
my_calloc:
        DEFAULT_ENTRY heap_calloc
.end:

align 16
; krealloc / my_realloc -- resize in place when possible, else move. O(1) in place
; C: void *krealloc(void *p, size_t n)   IN rdi, rsi   OUT rax
krealloc:
my_realloc:
        DEFAULT_ENTRY heap_realloc
.end:

align 16
; kfree / my_free -- free a block; misuse is reported and ignored. O(1)
; C: void kfree(void *p)   IN rdi   OUT none
kfree:
my_free:
        mov     r11, [rel kheap_default_heap]
.with_heap:                             ; r11 = the heap (kheap_free goes on here)
        FREE_ENTRY .full
.full:
        mov     rax, r11
        ENTRY_BODY heap_free
.end:

align 16
; kmalloc_aligned -- n bytes at a multiple of align (a power of two). O(1)
; C: void *kmalloc_aligned(size_t align, size_t n)   IN rdi, rsi   OUT rax
kmalloc_aligned:
        DEFAULT_ENTRY heap_aligned
.end:

align 16
; ksize -- usable bytes of a live block. O(1)
; C: size_t ksize(const void *p)   IN rdi   OUT rax
ksize:
        DEFAULT_ENTRY heap_ksize
.end:

align 16
; kheap_check -- verify every invariant of the default heap. O(heap)
; C: int kheap_check(void)   OUT eax
kheap_check:
        DEFAULT_ENTRY heap_verify
.end:

align 16
; kheap_get_stats -- fill *s for the default heap
; C: void kheap_get_stats(struct kheap_stats *s)   IN rdi
kheap_get_stats:
        DEFAULT_ENTRY heap_stats
.end:

align 16
; kheap_flush -- the default heap's front cache back to the free lists. O(1), bounded
; C: void kheap_flush(void)
kheap_flush:
        DEFAULT_ENTRY heap_flush
.end:

align 16
; kheap_walk -- visit every block of the default heap in address order. O(heap)
; C: int kheap_walk(kheap_walk_fn fn, void *ctx)   IN rdi, rsi   OUT eax
kheap_walk:
        DEFAULT_ENTRY heap_walk
.end:

align 16
; kheap_leak_report -- the default heap's live blocks grouped by allocation site. O(heap)
; C: int kheap_leak_report(kheap_leak_fn fn, void *ctx)   IN rdi, rsi   OUT eax
kheap_leak_report:
        DEFAULT_ENTRY heap_leaks
.end:

align 16
; kheap_set_secret -- new check-bit secret for the default heap, every header re-stamped
; C: int kheap_set_secret(uint64_t secret)   IN rdi   OUT eax
kheap_set_secret:
        DEFAULT_ENTRY heap_restamp
.end:

align 16
; kheap_fail_after / kheap_fail_rate -- fault injection in the default heap
; C: void kheap_fail_after(long n)   IN rdi
;    void kheap_fail_rate(uint32_t per_million, uint64_t seed)   IN edi, rsi
kheap_fail_after:
        DEFAULT_ENTRY heap_fail_after
.end:
align 16
kheap_fail_rate:
        DEFAULT_ENTRY heap_fail_rate
.end:

; The default heap's hooks one at a time (no lock taken: nobody may be inside the heap). Each
; is written to the default heap and to kheap_none, where kheap_init finds them.
; kheap_set_error_handler -- C: kheap_error_fn kheap_set_error_handler(kheap_error_fn fn)
;   IN rdi   OUT rax = the previous handler (NULL: the default)
; kheap_set_lock -- C: int kheap_set_lock(void (*)(void *), void (*)(void *), void *ctx)
;   IN rdi, rsi, rdx   OUT eax = 0, or KHEAP_E_INVAL for half a pair (nothing changes);
;   both heaps' gates recomputed (heap_gate), so it also clobbers rdi; stack: 8
; kheap_set_grow -- C: void kheap_set_grow(kheap_grow_fn fn)   IN rdi
; clobbers rax, rcx, r8; stack: none
align 16
kheap_set_error_handler:
        mov     rcx, [rel kheap_default_heap]
        lea     r8, [rel kheap_none]
        mov     rax, [r8 + KH_CTL_ERR_FN]
        mov     [rcx + KH_CTL_ERR_FN], rdi
        mov     [r8 + KH_CTL_ERR_FN], rdi
        ret
.end:
align 16
kheap_set_lock:
        xor     eax, eax
        test    rdi, rdi
        setz    al
        xor     ecx, ecx
        test    rsi, rsi
        setz    cl
        cmp     eax, ecx
        jne     .half
        mov     rcx, [rel kheap_default_heap]
        lea     r8, [rel kheap_none]
        mov     [rcx + KH_CTL_LOCK_ACQ], rdi
        mov     [rcx + KH_CTL_LOCK_REL], rsi
        mov     [rcx + KH_CTL_LOCK_CTX], rdx
        mov     [r8 + KH_CTL_LOCK_ACQ], rdi
        mov     [r8 + KH_CTL_LOCK_REL], rsi
        mov     [r8 + KH_CTL_LOCK_CTX], rdx
        mov     rdi, rcx
        call    heap_gate
        mov     rdi, r8
        call    heap_gate
        xor     eax, eax
        ret
.half:
        mov     eax, KHEAP_E_INVAL
        ret
.end:
align 16
kheap_set_grow:
        mov     rcx, [rel kheap_default_heap]
        lea     r8, [rel kheap_none]
        mov     [rcx + KH_CTL_GROW], rdi
        mov     [r8 + KH_CTL_GROW], rdi
        ret
.end:

align 16
; kheap_default -- the default heap, or NULL while it is the empty one
; C: kheap_t *kheap_default(void)   OUT rax; clobbers rcx; stack: none
kheap_default:
        mov     rax, [rel kheap_default_heap]
        lea     rcx, [rel kheap_none]
        cmp     rax, rcx
        jne     .out
        xor     eax, eax
.out:
        ret
.end:

; ---- heap instances --------------------------------------------------------------------------

align 16
; kheap_create -- a heap over [mem, mem + size), control block first. O(1)
; C: kheap_t *kheap_create(void *mem, size_t size)   IN rdi, rsi   OUT rax (NULL on failure)
; clobbers caller-saved; stack: see heap_create_at
kheap_create:
        jmp     heap_create_at
.end:

align 16
; kheap_extend -- C: int kheap_extend(kheap_t *h, void *mem, size_t size)
kheap_extend:
        HEAP_ENTRY kheap_add_region.body, bad_heap_inval
.end:

align 16
; kheap_alloc -- C: void *kheap_alloc(kheap_t *h, size_t n)
kheap_alloc:
        HEAP_CHECK bad_heap_null
        mov     r11, rdi
        mov     rdi, rsi
        jmp     my_malloc.with_heap
.end:

align 16
; kheap_calloc -- C: void *kheap_calloc(kheap_t *h, size_t n, size_t size)
kheap_calloc:
        HEAP_ENTRY my_calloc.body, bad_heap_null
.end:

align 16
; kheap_realloc -- C: void *kheap_realloc(kheap_t *h, void *p, size_t n)
kheap_realloc:
        HEAP_ENTRY my_realloc.body, bad_heap_null
.end:

align 16
; kheap_alloc_aligned -- C: void *kheap_alloc_aligned(kheap_t *h, size_t align, size_t n)
kheap_alloc_aligned:
        HEAP_ENTRY kmalloc_aligned.body, bad_heap_null
.end:

align 16
; kheap_free -- C: void kheap_free(kheap_t *h, void *p)
kheap_free:
        HEAP_CHECK bad_heap_null
        mov     r11, rdi
        mov     rdi, rsi
        jmp     my_free.with_heap
.end:

align 16
; kheap_usable -- C: size_t kheap_usable(kheap_t *h, const void *p)
kheap_usable:
        HEAP_ENTRY ksize.body, bad_heap_null
.end:

align 16
; kheap_verify -- C: int kheap_verify(kheap_t *h)
kheap_verify:
        HEAP_ENTRY kheap_check.body, bad_heap_inval
.end:

align 16
; kheap_stats -- C: void kheap_stats(kheap_t *h, struct kheap_stats *s); a bad h: *s zeroed
kheap_stats:
        HEAP_ENTRY kheap_get_stats.body, .bad
.bad:
        test    rsi, rsi
        jz      .out
        mov     rdi, rsi
        mov     ecx, KH_ST_BYTES / 8
        xor     eax, eax
        rep stosq
.out:
        ret
.end:

align 16
; kheap_flush_in -- C: void kheap_flush_in(kheap_t *h)
kheap_flush_in:
        HEAP_ENTRY kheap_flush.body, bad_heap_null
.end:

align 16
; kheap_walk_in -- C: int kheap_walk_in(kheap_t *h, kheap_walk_fn fn, void *ctx)
kheap_walk_in:
        HEAP_ENTRY kheap_walk.body, bad_heap_inval
.end:

align 16
; kheap_leak_report_in -- C: int kheap_leak_report_in(kheap_t *h, kheap_leak_fn fn, void *ctx)
kheap_leak_report_in:
        HEAP_ENTRY kheap_leak_report.body, bad_heap_inval
.end:

align 16
; kheap_set_secret_in -- C: int kheap_set_secret_in(kheap_t *h, uint64_t secret)
kheap_set_secret_in:
        HEAP_ENTRY kheap_set_secret.body, bad_heap_inval
.end:

align 16
; kheap_fail_after_in -- C: void kheap_fail_after_in(kheap_t *h, long n)
kheap_fail_after_in:
        HEAP_ENTRY kheap_fail_after.body, bad_heap_null
.end:

align 16
; kheap_fail_rate_in -- C: void kheap_fail_rate_in(kheap_t *h, uint32_t per_million, uint64_t seed)
kheap_fail_rate_in:
        HEAP_ENTRY kheap_fail_rate.body, bad_heap_null
.end:

align 16
; kheap_set_hooks -- C: int kheap_set_hooks(kheap_t *h, const struct kheap_hooks *hooks)
; No lock taken (see kheap.h). For the default heap the hooks go to kheap_none too, so that
; kheap_init keeps them. IN rdi, rsi   OUT eax; clobbers rcx, rdx, rsi, rdi; stack: 24
kheap_set_hooks:
        HEAP_CHECK bad_heap_inval
        push    rbp
        push    rbx
        sub     rsp, 8
        mov     rbp, rdi
        mov     rbx, rsi
        mov     rdi, rsi
        call    heap_set_hooks
        test    eax, eax
        jnz     .out
        cmp     rbp, [rel kheap_default_heap]
        jne     .out
        lea     rbp, [rel kheap_none]   ; the default heap's: kheap_init keeps them
        mov     rdi, rbx
        call    heap_set_hooks
.out:
        add     rsp, 8
        pop     rbx
        pop     rbp
        ret
.end:

align 16
; kheap_get_hooks -- C: int kheap_get_hooks(kheap_t *h, struct kheap_hooks *hooks)
; IN rdi, rsi   OUT eax = 0 or KHEAP_E_INVAL; clobbers rcx, rsi, rdi; stack: none
kheap_get_hooks:
        HEAP_CHECK bad_heap_inval
        test    rsi, rsi
        jz      bad_heap_inval
        lea     rax, [rdi + KH_CTL_HOOKS]
        mov     rdi, rsi
        mov     rsi, rax
        mov     ecx, KH_HOOKS_BYTES / 8
        rep movsq
        xor     eax, eax
        ret
.end:

; ---- build check: the symbol kheap.h refers to for this build's KHEAP_DEBUG and depth --------
section .rodata
%defstr KH_DEPTH_STR KHEAP_QUICK_DEPTH
%strcat KH_BUILD_NAME "kheap_build_debug", %str(KHEAP_DEBUG), "_quick", KH_DEPTH_STR
%deftok KH_BUILD_SYM KH_BUILD_NAME
global KH_BUILD_SYM:data
KH_BUILD_SYM: db 1

section .note.GNU-stack noalloc noexec nowrite progbits
