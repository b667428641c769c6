#!/usr/bin/env bash
# lib_check -- build/lib/libkheap.a (`make lib`) is a drop-in for a real kernel: a freestanding
# higher-half kernel object (examples/minimal/kernel.c, -mcmodel=kernel) links against it at
# 0xffffffff80100000; no SSE/x87 instruction; no absolute relocation in code; nothing
# undefined; exactly the documented API global; with KHEAP_MEMFUNCS=1 (examples/minimal/Makefile,
# from source through mm/kheap.mk) memcpy & co. too, and that kernel links. The wrapper the
# Makefile writes (build/host/tests/lib_check) runs it from the source tree with CC, LD, LIB,
# LIB_MEMFUNCS (1: built with KHEAP_LIB_MEMFUNCS=1), INCLUDE (its headers), MEMFUNCS_LIB and
# EXAMPLE_ELF (the example's build), DEBUG and DEPTH (the build options) and WORK set.
# TAP version 13 (tools/tap.sh); exit 0 iff all passed.
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tools/tap.sh
. "$src/tools/tap.sh"
cd "$src" || exit 1
mkdir -p "$WORK"
log=$WORK/log
defs="-DKHEAP_QUICK_DEPTH=$DEPTH"
[ "$DEBUG" = 1 ] && defs="$defs -DKHEAP_DEBUG=1"
# The flags of a kernel that has no SSE/x87 state and is linked in the top 2 GiB.
kflags="-std=gnu11 -ffreestanding -mcmodel=kernel -mno-red-zone -mno-sse -mno-mmx -mno-80387
        -fno-pic -fno-pie -fno-stack-protector -O2 -Wall -Wextra -Werror"
ktext=0xffffffff80100000

# fail TEXT...: keep why a check failed (TEXT, then the diagnostics in $log) for check().
fail() { { printf '%s\n' "$@"; cat "$log" 2>/dev/null; } > "$log.why"; return 1; }

# 1: compile the example as a kernel would, link it high; the entry and the heap up there.
links_high() {
    # shellcheck disable=SC2086
    $CC $kflags $defs -I"$INCLUDE" -c -o "$WORK/kernel.o" examples/minimal/kernel.c 2>"$log" ||
        fail "compiling examples/minimal/kernel.c failed" || return 1
    ${LD:-ld} -nostdlib -static -e kentry -Ttext=$ktext -o "$WORK/kernel.elf" "$WORK/kernel.o" \
        "$LIB" >"$log" 2>&1 || fail "ld failed" || return 1
    ! grep -q relocation "$log" || fail "ld complained about relocations" || return 1
    local entry kmalloc
    entry=$(nm "$WORK/kernel.elf" | sed -n 's/^\([0-9a-f]*\) T kentry$/\1/p')
    kmalloc=$(nm "$WORK/kernel.elf" | sed -n 's/^\([0-9a-f]*\) T kmalloc$/\1/p')
    [[ $entry == ffffffff801* && $kmalloc == ffffffff801* ]] ||
        fail "kentry at '$entry', kmalloc at '$kmalloc': not in the higher half" || return 1
}

# 2: objdump lines of the library's code that use SSE/AVX/MMX/x87 state. Registers: %xmm/%ymm/
# %zmm/%mm, %st, AVX-512 masks %k0-7. Mnemonics (after prefixes): every x87 mnemonic starts with
# f (fld, fstp, fild, fistp, fxsave, fnstcw, fwait, ...) and no other x86-64 one does, except
# the segment prefix fs; plus the ones that touch that state without naming a register:
# (v)ldmxcsr, (v)stmxcsr, xsave*, xrstor*, emms, vzeroupper, vzeroall.
fp_insns() {
    local prefixes='rep|repz|repe|repnz|repne|lock|data16|data32|addr32|cs|ds|es|fs|gs|ss|bnd'
    prefixes+='|notrack|xacquire|xrelease|rex(\..*)?'
    objdump -d --no-show-raw-insn "$1" | awk -F'\t' -v prefixes="^($prefixes)$" '
        /^ *[0-9a-f]+:\t/ {
            insn = $2
            sub(/^[ \t]+/, "", insn)
            if (insn ~ /%([xyz]?mm[0-9]|st([^a-z]|$)|k[0-7]([^0-9]|$))/) { print; next }
            n = split(insn, w, /[ \t]+/)
            for (i = 1; i <= n; i++)
                if (w[i] !~ prefixes)
                    break
            m = w[i]
            if (m ~ /^f/ || m ~ /^(v?ldmxcsr|v?stmxcsr|xsave.*|xrstor.*|emms|vzeroupper|vzeroall)$/)
                print
        }'
}
no_fp() {
    fp_insns "$LIB" > "$log"
    [ ! -s "$log" ] || fail "SSE/x87 instructions:"
}

# 3: absolute relocations (R_X86_64_64, _32, _32S) in a code section's relocation table.
abs_relocs() {
    readelf -rW "$1" | awk '
        /^Relocation section/ { sec = $3; gsub(/\047/, "", sec); next }
        sec ~ /^\.rela\.text/ && $3 ~ /^R_X86_64_(64|32|32S)$/ { print sec ": " $0 }'
}
no_abs_relocs() {
    abs_relocs "$LIB" > "$log"
    [ ! -s "$log" ] || fail "absolute relocations in code:"
}

# 4: nothing undefined (nm prints the member name and blank lines even then).
no_undefined() {
    nm -u "$1" > "$log.nm" 2>&1 || { mv "$log.nm" "$log"; fail "nm -u $1 failed"; return 1; }
    grep -v -e ':$' -e '^$' "$log.nm" > "$log"
    [ ! -s "$log" ] || fail "undefined symbols:"
}

# 5: the API as the compiler reads the headers: every file-scope function declaration and
# extern object (the build check symbol) of kheap.h / kheap_diag.h, preprocessed with the build's
# options, bodies {...} dropped, split at ';'; then the k* mem routines (asm/string.asm).
documented_api() {
    # shellcheck disable=SC2086
    printf '#include "kheap.h"\n#include "kheap_diag.h"\n' |
        $CC -E $defs -ffreestanding -I"$INCLUDE" -x c - |
        awk '/^# [0-9]+ "/ { ours = ($3 ~ /\/kheap(_diag)?\.h"$/); next } ours' |
        tr '\n' ' ' | sed -e ':a' -e 's/{[^{}]*}//g' -e 'ta' | tr ';' '\n' |
        sed -n -e '/^ *\(typedef\|static\)[^A-Za-z0-9_]/d' \
               -e 's/^ *extern [^(]*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\) *$/\1/p' \
               -e 's/^ *[A-Za-z_][^(]*[^A-Za-z0-9_(]\([A-Za-z_][A-Za-z0-9_]*\) *(.*/\1/p'
    printf '%s\n' kmemcpy kmemset kmemmove kmemcmp
}
exported() { nm -g --defined-only "$1" | awk 'NF == 3 { print $3 }' | sort; }
# exports_api LIB [EXTRA...]: LIB's global symbols are exactly the documented API plus EXTRA.
exports_api() {
    local lib=$1; shift
    { documented_api; [ $# -eq 0 ] || printf '%s\n' "$@"; } | sort -u > "$WORK/expected"
    grep -qx "kheap_build_debug${DEBUG}_quick$DEPTH" "$WORK/expected" ||
        fail "the headers' build check symbol is not kheap_build_debug${DEBUG}_quick$DEPTH" ||
        return 1
    exported "$lib" > "$WORK/exported"
    diff "$WORK/expected" "$WORK/exported" > "$log" ||
        fail "exported globals differ from the headers' API ('<' missing, '>' extra):"
}

# 6: the example's KHEAP_MEMFUNCS=1 build: the mem* names too, on the k* ones' addresses.
memfuncs_exported() {
    exports_api "$MEMFUNCS_LIB" memcpy memset memmove memcmp || return 1
    local name addr kaddr
    for name in memcpy memset memmove memcmp; do
        addr=$(nm "$MEMFUNCS_LIB" | awk -v s="$name" '$3 == s { print $1 }')
        kaddr=$(nm "$MEMFUNCS_LIB" | awk -v s="k$name" '$3 == s { print $1 }')
        [ -n "$addr" ] && [ "$addr" = "$kaddr" ] ||
            fail "$name at '$addr', k$name at '$kaddr'" || return 1
    done
}

# 7: the example's own build (include mm/kheap.mk, the kernel's flags) linked high.
example_linked() {
    no_undefined "$EXAMPLE_ELF" || return 1
    local entry
    entry=$(nm "$EXAMPLE_ELF" | sed -n 's/^\([0-9a-f]*\) T kentry$/\1/p')
    [[ $entry == ffffffff801* ]] || fail "kentry at '$entry'"
}

# check NAME FUNCTION ARGS...: one TAP line; a failure shows why.
check() {
    rm -f "$log.why"
    if "${@:2}"; then
        tap_ok "$1"
    else
        tap_not_ok "$1"
        [ -f "$log.why" ] && tap_diag < "$log.why"
    fi
}

tap_start
check "a -mcmodel=kernel object links against libkheap.a at $ktext" links_high
check "no SSE/AVX/MMX/x87 instruction in the library" no_fp
check "no absolute relocation (R_X86_64_64/32/32S) in code sections" no_abs_relocs
check "nothing undefined in the library (nm -u)" no_undefined "$LIB"
lib_extra=()    # the library of `make lib KHEAP_LIB_MEMFUNCS=1` has the mem* names too
[ "$LIB_MEMFUNCS" = 1 ] && lib_extra=(memcpy memset memmove memcmp)
check "exported globals are exactly the API of kheap.h and kheap_diag.h" exports_api "$LIB" \
  "${lib_extra[@]}"
check "KHEAP_MEMFUNCS=1: memcpy/memset/memmove/memcmp exported too" memfuncs_exported
check "examples/minimal built through mm/kheap.mk links at $ktext" example_linked
tap_done lib_check
