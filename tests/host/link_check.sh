#!/usr/bin/env bash
# link_check -- the headers' link-time build check (mm/kheap.h, "build options"): a program
# compiled with other KHEAP_DEBUG or KHEAP_QUICK_DEPTH values than the library it links must
# fail to link (undefined kheap_build_debug<D>_quick<N>), one compiled with the same values must
# link and run; the headers also compile as C++. build/host/tests/link_check, a wrapper the
# Makefile writes, runs it from the source tree with CC, CXX, LIB (the release library),
# DEBUG_LIB (the KHEAP_DEBUG=1 one), DEPTH (the build's front-cache depth) and WORK set.
# TAP version 13 (tools/tap.sh); exit 0 iff all passed.
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tools/tap.sh
. "$src/tools/tap.sh"
cd "$src" || exit 1
mkdir -p "$WORK"
prog=$WORK/prog.c
printf '%s\n' '#include "mm/kheap.h"' 'static unsigned char arena[1 << 16] __attribute__((aligned(64)));' \
  'int main(void) { kheap_t *h = kheap_create(arena, sizeof arena); void *p = kheap_alloc(h, 10);' \
  '  kheap_free(h, p); return kheap_verify(h) != 0; }' > "$prog"

# links DEFINES LIB: compile prog.c with DEFINES, link with LIB, run it
links() { $CC -I. $1 -o "$WORK/prog" "$prog" "$2" 2>"$WORK/link.log" && "$WORK/prog"; }
# refused DEFINES LIB SYMBOL: the link fails, naming the build symbol
refused() {
    ! $CC -I. $1 -o "$WORK/prog" "$prog" "$2" 2>"$WORK/link.log" &&
        grep -q "undefined reference to \`$3'" "$WORK/link.log"
}

other=$((DEPTH == 16 ? 8 : 16))
tap_start
tap_check "same flags as the library: links and runs" links "-DKHEAP_QUICK_DEPTH=$DEPTH" "$LIB"
tap_check "KHEAP_DEBUG=1 against the release library: link refused" \
  refused "-DKHEAP_DEBUG=1 -DKHEAP_QUICK_DEPTH=$DEPTH" "$LIB" "kheap_build_debug1_quick$DEPTH"
tap_check "KHEAP_QUICK_DEPTH=$other against a depth-$DEPTH library: link refused" \
  refused "-DKHEAP_QUICK_DEPTH=$other" "$LIB" "kheap_build_debug0_quick$other"
tap_check "KHEAP_DEBUG=1 against the debug library: links and runs" \
  links "-DKHEAP_DEBUG=1 -DKHEAP_QUICK_DEPTH=$DEPTH" "$DEBUG_LIB"
tap_check "no KHEAP_DEBUG against the debug library: link refused" \
  refused "-DKHEAP_QUICK_DEPTH=$DEPTH" "$DEBUG_LIB" "kheap_build_debug0_quick$DEPTH"
if command -v "$CXX" >/dev/null; then
    cp "$prog" "$WORK/prog.cc"
    tap_check "the headers compile and link as C++ (extern \"C\")" \
      "$CXX" -I. -Wall -Wextra -Werror -DKHEAP_QUICK_DEPTH="$DEPTH" -o "$WORK/progxx" \
      "$WORK/prog.cc" "$LIB"
else
    tap_skip "the headers compile and link as C++ (extern \"C\")" "no $CXX here"
fi
[ "$tap_failed" -eq 0 ] || tap_diag < "$WORK/link.log"
tap_done link_check
