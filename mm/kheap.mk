# mm/kheap.mk -- build kheap from source inside another kernel's Makefile: set the KHEAP_*
# variables you want, `include path/to/kheap/mm/kheap.mk`, then link $(KHEAP_OBJS) or
# $(KHEAP_LIB) and compile your own files with $(KHEAP_CPPFLAGS). kheap's own `make lib` uses
# this file too (the Makefile's "lib" section); docs/EMBEDDING.md explains the choices.
# GNU make 3.82 or later; NASM 2.15+. It leaves .DEFAULT_GOAL as it found it.
# SPDX-License-Identifier: MIT

# ---- knobs: set them before the include (the flags stamp below reads them at once) --------------
# KHEAP_SRC: the kheap tree (default: the directory above this file, as make was told it).
KHEAP_MK_DIR      := $(dir $(lastword $(MAKEFILE_LIST)))
KHEAP_SRC         ?= $(or $(patsubst %/mm/,%,$(filter %/mm/,$(KHEAP_MK_DIR))),.)
# KHEAP_BUILD: where objects and generated includes go (nothing is written anywhere else, except
# KHEAP_LIB and KHEAP_INCLUDE when you move them).
KHEAP_BUILD       ?= build/kheap
KHEAP_LIB         ?= $(KHEAP_BUILD)/libkheap.a
KHEAP_INCLUDE     ?= $(KHEAP_BUILD)/include
# Build options (mm/kheap.h "build options"): compile your own files with the same values, which
# $(KHEAP_CPPFLAGS) carries; a mismatch fails your link (kheap_build_debug<D>_quick<N>).
KHEAP_DEBUG       ?= 0
KHEAP_QUICK_DEPTH ?=
# KHEAP_MEMFUNCS=1: asm/string.asm also exports memcpy/memset/memmove/memcmp (for a kernel that
# has none of its own; gcc emits calls to them even with -ffreestanding).
KHEAP_MEMFUNCS    ?= 0
# Tools and flags. KHEAP_CFLAGS may be your kernel's own CFLAGS (-mcmodel=kernel -fno-pic is
# fine); the default is what build/lib/libkheap.a uses: position-independent, freestanding, no
# SSE/x87, no red zone. -std=gnu11, the build options and the include paths are added here.
KHEAP_CC          ?= $(CC)
KHEAP_NASM        ?= nasm
KHEAP_LD          ?= $(LD)
KHEAP_AR          ?= $(AR)
KHEAP_OBJCOPY     ?= objcopy
KHEAP_NM          ?= nm
KHEAP_CFLAGS      ?= -ffreestanding -fPIE -fno-plt -mno-red-zone -mgeneral-regs-only \
                     -fno-stack-protector -fno-asynchronous-unwind-tables -O2 -g -Wall -Wextra
KHEAP_NASMFLAGS   ?= -g -F dwarf -w+all -w-unknown-warning -w+error

# ---- what the including Makefile gets -----------------------------------------------------------
KHEAP_DEFS     := $(if $(filter 1,$(KHEAP_DEBUG)),-DKHEAP_DEBUG=1) \
                  $(if $(KHEAP_QUICK_DEPTH),-DKHEAP_QUICK_DEPTH=$(KHEAP_QUICK_DEPTH))
# For your files that include kheap.h / kheap_diag.h.
KHEAP_CPPFLAGS := -I$(KHEAP_SRC)/mm $(KHEAP_DEFS)
# The objects: the allocator, its checker and diagnostics, the k* mem routines it calls.
KHEAP_OBJS     := $(addprefix $(KHEAP_BUILD)/,mm/kheap.o mm/kheap_check.o mm/kheap_diag.o \
                    asm/string.o)
# The public headers, copied into KHEAP_INCLUDE by `kheap-lib` (kheap.h, kheap_diag.h).
KHEAP_PUBLIC_HEADERS := $(KHEAP_INCLUDE)/kheap.h $(KHEAP_INCLUDE)/kheap_diag.h

# ---- internals (KHEAP_MK_*) ---------------------------------------------------------------------
KHEAP_MK_GOAL    := $(.DEFAULT_GOAL)
KHEAP_MK_GEN     := $(KHEAP_BUILD)/gen
KHEAP_MK_INCS    := $(KHEAP_MK_GEN)/kheap_layout.inc $(KHEAP_MK_GEN)/kheap_offsets.inc
KHEAP_MK_HEADERS := $(addprefix $(KHEAP_SRC)/mm/,kheap.h kheap_diag.h kheap_layout.h)
KHEAP_MK_ASM_INC := $(addprefix $(KHEAP_SRC)/mm/,kheap_block.inc kheap_debug.inc kheap_quick.inc kheap_slab.inc)
KHEAP_MK_SYMS    := $(KHEAP_BUILD)/kheap.syms
KHEAP_MK_MEMFUNCS := $(filter 1,$(KHEAP_MEMFUNCS))

# Everything is rebuilt when a knob changes: the stamp's content is the knobs. Make your own
# objects that include kheap.h depend on $(KHEAP_STAMP) too (KHEAP_DEBUG, KHEAP_QUICK_DEPTH).
KHEAP_STAMP := $(KHEAP_BUILD)/.flags
KHEAP_MK_FLAGS := $(KHEAP_CC) $(KHEAP_CFLAGS) | $(KHEAP_NASM) $(KHEAP_NASMFLAGS) | $(KHEAP_DEFS) | \
                  memfuncs=$(KHEAP_MK_MEMFUNCS)
$(shell mkdir -p $(KHEAP_BUILD) && (echo '$(KHEAP_MK_FLAGS)' | cmp -s - $(KHEAP_STAMP) || \
        echo '$(KHEAP_MK_FLAGS)' > $(KHEAP_STAMP)))

# The layout NASM shares with C, one source of truth (as the Makefile's heap section does):
# every `#define KH... value` of the headers becomes a NASM %define, and the offsets and sizes
# of the C structures come from compiling mm/kheap_offsets.c to assembly (the asm-offsets
# method: each KH_OFFSET leaves "->NAME value" there).
$(KHEAP_MK_GEN)/kheap_layout.inc: $(KHEAP_MK_HEADERS)
	@mkdir -p $(@D)
	sed -n -e '/^#define[[:space:]]\+KH[A-Z0-9_]*[[:space:]]\+[^[:space:]]/{' \
	  -e 's@[[:space:]]*/\*.*$$@@' \
	  -e 's@^#define[[:space:]]\+\([A-Z0-9_]*\)[[:space:]]\+@%define \1 @p' \
	  -e '}' $^ > $@.tmp && mv $@.tmp $@

$(KHEAP_MK_GEN)/kheap_offsets.inc: $(KHEAP_SRC)/mm/kheap_offsets.c $(KHEAP_MK_HEADERS) \
  $(KHEAP_STAMP)
	@mkdir -p $(@D)
	$(KHEAP_CC) -std=gnu11 -ffreestanding -Wall -Wextra -I$(KHEAP_SRC)/mm -S -o $@.s $<
	sed -n 's/.*->\([A-Z0-9_]*\) \([0-9]*\).*/%define \1 \2/p' $@.s > $@.tmp && mv $@.tmp $@

$(KHEAP_BUILD)/mm/kheap.o: $(KHEAP_SRC)/mm/kheap.asm $(KHEAP_MK_INCS) $(KHEAP_MK_ASM_INC) \
  $(KHEAP_STAMP)
	@mkdir -p $(@D)
	$(KHEAP_NASM) -f elf64 $(KHEAP_NASMFLAGS) $(KHEAP_DEFS) -I$(KHEAP_MK_GEN)/ \
	  -I$(KHEAP_SRC)/mm/ -MD $(@:.o=.d) -MP -o $@ $<

# -DKERNEL is what makes asm/string.asm export the standard names too.
$(KHEAP_BUILD)/asm/string.o: $(KHEAP_SRC)/asm/string.asm $(KHEAP_STAMP)
	@mkdir -p $(@D)
	$(KHEAP_NASM) -f elf64 $(KHEAP_NASMFLAGS) $(if $(KHEAP_MK_MEMFUNCS),-DKERNEL) \
	  -MD $(@:.o=.d) -MP -o $@ $<

$(KHEAP_BUILD)/mm/kheap_check.o $(KHEAP_BUILD)/mm/kheap_diag.o: $(KHEAP_BUILD)/mm/%.o: \
  $(KHEAP_SRC)/mm/%.c $(KHEAP_STAMP)
	@mkdir -p $(@D)
	$(KHEAP_CC) $(KHEAP_CFLAGS) -std=gnu11 $(KHEAP_DEFS) -I$(KHEAP_SRC)/mm -MMD -MP -c -o $@ $<

# The symbols libkheap.a keeps global: every function kheap.h and kheap_diag.h declare (a
# declaration starts in column 0 and names the function right before its first '('), the build
# check symbol kheap.o defines, the k* mem routines, and with KHEAP_MEMFUNCS=1 the mem* names.
$(KHEAP_MK_SYMS): $(KHEAP_SRC)/mm/kheap.h $(KHEAP_SRC)/mm/kheap_diag.h $(KHEAP_BUILD)/mm/kheap.o
	sed -n -e '/^\(typedef\|static\|extern\)[^A-Za-z0-9_]/d' \
	  -e 's/^[A-Za-z_][^(]*[^A-Za-z0-9_(]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' \
	  $(KHEAP_SRC)/mm/kheap.h $(KHEAP_SRC)/mm/kheap_diag.h > $@.tmp
	$(KHEAP_NM) --defined-only $(KHEAP_BUILD)/mm/kheap.o | \
	  sed -n 's/.* \(kheap_build_debug[0-9]*_quick[0-9]*\)$$/\1/p' >> $@.tmp
	printf '%s\n' kmemcpy kmemset kmemmove kmemcmp \
	  $(if $(KHEAP_MK_MEMFUNCS),memcpy memset memmove memcmp) >> $@.tmp
	mv $@.tmp $@

# One relocatable object (ld -r resolves nothing, it only merges: kheap.o's calls into the C
# files and the string routines stay PC-relative relocations), every global outside the list
# made local, then the archive.
$(KHEAP_LIB): $(KHEAP_OBJS) $(KHEAP_MK_SYMS)
	@mkdir -p $(@D)
	$(KHEAP_LD) -r -o $(KHEAP_BUILD)/libkheap-all.o $(KHEAP_OBJS)
	$(KHEAP_OBJCOPY) --keep-global-symbols=$(KHEAP_MK_SYMS) $(KHEAP_BUILD)/libkheap-all.o \
	  $(KHEAP_BUILD)/libkheap.o
	@rm -f $@
	$(KHEAP_AR) rcs $@ $(KHEAP_BUILD)/libkheap.o

$(KHEAP_PUBLIC_HEADERS): $(KHEAP_INCLUDE)/%.h: $(KHEAP_SRC)/mm/%.h
	@mkdir -p $(@D)
	cp $< $@

.PHONY: kheap-lib kheap-clean
kheap-lib: $(KHEAP_LIB) $(KHEAP_PUBLIC_HEADERS)
kheap-clean:
	rm -rf $(KHEAP_BUILD)/mm $(KHEAP_BUILD)/asm $(KHEAP_MK_GEN) $(KHEAP_STAMP) $(KHEAP_MK_SYMS) \
	  $(KHEAP_BUILD)/libkheap-all.o $(KHEAP_BUILD)/libkheap.o $(KHEAP_LIB) $(KHEAP_PUBLIC_HEADERS)

-include $(KHEAP_OBJS:.o=.d)
.DEFAULT_GOAL := $(KHEAP_MK_GOAL)
