# Makefile -- builds kheap: the bootable test kernel (build/kernel.elf, build/kheap.iso), the
# host library and host tests, and runs them. `make run` boots the ISO, `make test` runs it all.
# Sections are marked by `# ==== name ====` banners; each has one owner (see README.md).

# ==== platform ====
# Knobs a person may set on the command line.
HEAP_SIZE   ?= 16M
DMA_HEAP_SIZE ?= 1M
KHEAP_DEBUG ?= 0
ACCEL       ?= tcg
CMDLINE     ?=
KTIMEOUT    ?= 60
# UEFI=1: `make run`/`make debug` boot build/kheap-uefi.iso under OVMF instead of the BIOS ISO.
UEFI        ?= 0
OVMF_CODE   ?= /usr/share/OVMF/OVMF_CODE.fd
OVMF_VARS   ?= /usr/share/OVMF/OVMF_VARS.fd

BUILD   := build
KERNEL  := $(BUILD)/kernel.elf
ISO     := $(BUILD)/kheap.iso
UEFI_ISO := $(BUILD)/kheap-uefi.iso

CC      ?= cc
NASM    := nasm
LD      := ld
QEMU    := qemu-system-x86_64

# Kernel objects: NASM and freestanding C, built with -DKERNEL.
# -w-unknown-warning: NASM 2.16.01 alignb trips its own unknown-warning check under -w+all.
NASMFLAGS  := -f elf64 -g -F dwarf -w+all -w-unknown-warning -w+error -DKERNEL
KCFLAGS    := -std=gnu11 -ffreestanding -fno-pic -fno-pie -mno-red-zone -mgeneral-regs-only \
              -fno-stack-protector -fno-asynchronous-unwind-tables -mcmodel=small -O2 -g \
              -Wall -Wextra -Werror -MMD -MP -DKERNEL -I. -Ikernel -Itests
# Host objects (build/host/...): the same sources for an ordinary Linux program.
HOST_NASMFLAGS := -f elf64 -g -F dwarf -w+all -w-unknown-warning -w+error
HOST_CFLAGS    := -std=gnu11 -O2 -g -Wall -Wextra -Werror -MMD -MP -I. -Itests
ifeq ($(KHEAP_DEBUG),1)
NASMFLAGS      += -DKHEAP_DEBUG=1
KCFLAGS        += -DKHEAP_DEBUG=1
HOST_NASMFLAGS += -DKHEAP_DEBUG=1
HOST_CFLAGS    += -DKHEAP_DEBUG=1
endif
# HIGHER_HALF=1: the kernel linked at KERNEL_VMA + its load address (-mcmodel=kernel); boot.asm
# jumps there and removes the identity map. make test builds it in $(BUILD)/hh.
HIGHER_HALF ?= 0
ifeq ($(HIGHER_HALF),1)
KHEAP_LIB_MEMFUNCS := 1                  # it links the library as an embedder: memcpy & co. too
KERNEL_VMA := 0xffffffff80000000
KCFLAGS    := $(subst -mcmodel=small,-mcmodel=kernel,$(KCFLAGS)) -DKERNEL_HIGHER_HALF=1
NASMFLAGS  += -DKERNEL_VMA=$(KERNEL_VMA)
else
KERNEL_VMA := 0
endif
LDFLAGS := -n -z max-page-size=0x1000 -z noexecstack --no-warn-rwx-segments --fatal-warnings \
           -T linker.ld --defsym=__heap_size=$(HEAP_SIZE) --defsym=__dma_heap_size=$(DMA_HEAP_SIZE) \
           --defsym=KERNEL_VMA=$(KERNEL_VMA)

ifeq ($(ACCEL),kvm)
QEMU_ACCEL := -accel kvm -cpu max
else
QEMU_ACCEL := -accel tcg,thread=multi -cpu max
endif
QEMU_FLAGS := $(QEMU_ACCEL) -m 256M -display none -no-reboot -monitor none -serial stdio \
              -device isa-debug-exit,iobase=0xf4,iosize=0x04
# UEFI firmware (Debian's ovmf): the code read-only, the variable store a snapshot QEMU throws
# away at exit (nothing written, the same start every boot). A missing file: QEMU says which.
QEMU_OVMF  := -drive if=pflash,format=raw,readonly=on,file=$(OVMF_CODE) \
              -drive if=pflash,format=raw,snapshot=on,file=$(OVMF_VARS)
ifeq ($(UEFI),1)
RUN_ISO    := $(UEFI_ISO)
RUN_FW     := $(QEMU_OVMF)
else
RUN_ISO    := $(ISO)
RUN_FW     :=
endif
# CPUs for `make run` / `make debug` (`make run SMP=4`); make test boots -smp 1 and -smp 4.
SMP ?= 1
# SMP_STRESS_NOLOCK=1: the SMP stress runs without the heaps' locks (it must then fail).
ifeq ($(SMP_STRESS_NOLOCK),1)
KCFLAGS += -DSMP_STRESS_NOLOCK=1
endif

# Explicit object lists. ASM_OBJS grows in the string section, MM_OBJS in the heap section.
BOOT_OBJS   := $(BUILD)/boot/boot.o $(BUILD)/boot/isr.o $(BUILD)/boot/ap_start.o
KERNEL_OBJS := $(addprefix $(BUILD)/kernel/,kmain.o serial.o kprintf.o panic.o idt.o multiboot.o \
                 acpi.o smp.o)
ASM_OBJS    := $(BUILD)/asm/cpu.o
# The test framework's runner (tests/ktest.c, tests/ktest.h) plus every tests/kernel/*.c, each a
# test file: no list to edit.
KTEST_OBJS   = $(BUILD)/tests/ktest.o $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/kernel/*.c))
LINK_OBJS    = $(BOOT_OBJS) $(KERNEL_OBJS) $(ASM_OBJS) $(MM_OBJS) $(KTEST_OBJS)
# Host test programs build/host/tests/<name> (exit 0 = passed): each section adds its own with
# `HOST_TESTS += name` and a rule that builds the program. A C one is its KTEST file(s) linked
# with KTEST_HOST_OBJS: the same runner as the kernel's, and main (tests/host/ktest_main.c).
HOST_TESTS :=
KTEST_HOST_RUNNER := $(BUILD)/host/tests/ktest.o
KTEST_HOST_OBJS   := $(KTEST_HOST_RUNNER) $(BUILD)/host/tests/host/ktest_main.o
# Deliberately broken kernels for tools/test-harness: build/harness/<name>.elf = kernel plus
# tests/harness/<name>.c.
HARNESS_KERNELS = $(patsubst tests/harness/%.c,$(BUILD)/harness/%.elf,$(wildcard tests/harness/*.c))

# Rebuild everything when a knob that changes the objects changes (KHEAP_DEBUG, HEAP_SIZE, ...).
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(KCFLAGS) | $(NASMFLAGS) | $(HOST_CFLAGS) | $(LDFLAGS) | $(CMDLINE) | \
               $(KHEAP_QUICK_DEPTH)
$(shell mkdir -p $(BUILD) && (echo '$(FLAGS_NOW)' | cmp -s - $(FLAGS_STAMP) || \
        echo '$(FLAGS_NOW)' > $(FLAGS_STAMP)))

# $(call h2inc,PREFIX): the recipe that turns every `#define PREFIX... value` of its
# prerequisites (C headers; trailing /* comments */ dropped) into a NASM `%define`, so a layout
# shared by C and NASM has one source of truth.
h2inc = sed -n '/^\#define[[:space:]]\+$(1)[A-Z0-9_]*[[:space:]]\+[^[:space:]]/{s@[[:space:]]*/\*.*$$@@;s@^\#define[[:space:]]\+\([A-Z0-9_]*\)[[:space:]]\+@%define \1 @;p}' \
        $^ > $@.tmp && mv $@.tmp $@

.PHONY: all iso run test debug clean deps kernel listing test-build harness-kernels host-tests
all: $(KERNEL) $(ISO) $(UEFI_ISO)
kernel: $(KERNEL)
iso: $(ISO) $(UEFI_ISO)

$(BUILD)/%.o: %.asm $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(NASM) $(NASMFLAGS) -MD $(@:.o=.d) -MP -o $@ $<

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(KCFLAGS) -c -o $@ $<

$(BUILD)/host/%.o: %.asm $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(NASM) $(HOST_NASMFLAGS) -MD $(@:.o=.d) -MP -o $@ $<

$(BUILD)/host/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(HOST_CFLAGS) -c -o $@ $<

# $$(LINK_OBJS): expanded after the whole Makefile is read, so the later sections' additions to
# ASM_OBJS and MM_OBJS are prerequisites too.
.SECONDEXPANSION:
$(KERNEL): $$(LINK_OBJS) linker.ld
	$(LD) $(LDFLAGS) -o $@ $(LINK_OBJS)

$(BUILD)/harness/%.elf: $(BUILD)/harness/%.o $$(LINK_OBJS) linker.ld
	$(LD) $(LDFLAGS) -o $@ $(LINK_OBJS) $<

$(BUILD)/harness/%.o: tests/harness/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(KCFLAGS) -c -o $@ $<

harness-kernels: $(HARNESS_KERNELS)
.PRECIOUS: $(BUILD)/harness/%.o

# A BIOS-only GRUB ISO with just the modules the boot needs (about 0.8 MiB). The kernel in it
# keeps its symbols but not its DWARF (gdb reads build/kernel.elf), so the ISO stays < 1 MiB.
GRUB_MODULES := normal configfile multiboot2 serial terminal iso9660 biosdisk
GRUB_CFG     := 'serial --unit=0 --speed=115200' 'terminal_input serial' \
  'terminal_output serial' 'set timeout=0' 'menuentry "kheap" {' \
  '  multiboot2 /boot/kernel.elf $(CMDLINE)' '  boot' '}'
$(ISO): $(KERNEL) $(FLAGS_STAMP)
	@mkdir -p $(BUILD)/iso/boot/grub
	objcopy --strip-debug $(KERNEL) $(BUILD)/iso/boot/kernel.elf
	printf '%s\n' $(GRUB_CFG) > $(BUILD)/iso/boot/grub/grub.cfg
	grub-mkrescue -d /usr/lib/grub/i386-pc --install-modules="$(GRUB_MODULES)" \
	  --locales= --fonts= --themes= --compress=xz -o $@ $(BUILD)/iso 2>$(BUILD)/grub-mkrescue.log \
	  || { cat $(BUILD)/grub-mkrescue.log; exit 1; }
	@size=$$(stat -c %s $@); [ $$size -lt 1048576 ] || \
	  { echo "$@ is $$size bytes: over the 1 MiB budget"; rm -f $@; exit 1; }

# The UEFI ISO: EFI-only (GRUB for x86_64-efi; BIOS machines boot build/kheap.iso), the same
# kernel and grub.cfg (GRUB's `serial` drives COM1 on EFI too). About 3.8 MiB, most of it the
# 2.88 MB FAT image grub-mkrescue makes for the EFI boot (mtools). The part_* modules: the EFI
# core image's built-in config insmods every partition map; without them GRUB prints an error each.
UEFI_GRUB_MODULES := normal configfile multiboot2 serial terminal iso9660 part_acorn part_amiga \
                     part_bsd part_dfly part_dvh part_plan part_sun part_sunpc
$(UEFI_ISO): $(KERNEL) $(FLAGS_STAMP)
	@mkdir -p $(BUILD)/iso-uefi/boot/grub
	objcopy --strip-debug $(KERNEL) $(BUILD)/iso-uefi/boot/kernel.elf
	printf '%s\n' $(GRUB_CFG) > $(BUILD)/iso-uefi/boot/grub/grub.cfg
	grub-mkrescue -d /usr/lib/grub/x86_64-efi --install-modules="$(UEFI_GRUB_MODULES)" \
	  --locales= --fonts= --themes= --compress=xz -o $@ $(BUILD)/iso-uefi \
	  2>$(BUILD)/grub-mkrescue-uefi.log || { cat $(BUILD)/grub-mkrescue-uefi.log; exit 1; }
	@size=$$(stat -c %s $@); [ $$size -lt 5242880 ] || \
	  { echo "$@ is $$size bytes: over the 5 MiB budget"; rm -f $@; exit 1; }

deps:
	@tools/deps

# Boot the ISO with serial on this terminal; the kernel exits QEMU itself (status 33 = passed).
# UEFI=1: the UEFI ISO under OVMF (3-4 s of firmware before GRUB under TCG).
run: deps
	@$(MAKE) --no-print-directory all
	@$(QEMU) $(QEMU_FLAGS) -smp $(SMP) $(RUN_FW) -cdrom $(RUN_ISO); st=$$?; \
	  if [ $$st -eq 33 ]; then echo "kernel: all tests passed (QEMU status 33)"; \
	  else echo "kernel: FAILED (QEMU status $$st)"; exit 1; fi

# QEMU halted at the first instruction, gdb attached with the ELF64 symbols, stopped at kmain.
# Extra gdb options: make debug GDB_ARGS='-batch -ex bt'.
debug: $(RUN_ISO)
	@command -v gdb >/dev/null || { echo "make debug needs gdb: sudo apt-get install gdb"; exit 1; }
	@$(QEMU) $(QEMU_FLAGS) -smp $(SMP) -s -S $(RUN_FW) -cdrom $(RUN_ISO) </dev/null & qpid=$$!; \
	  gdb -q $(KERNEL) -ex 'target remote localhost:1234' -ex 'hbreak kmain' -ex 'continue' \
	    $(GDB_ARGS); \
	  kill $$qpid 2>/dev/null; wait $$qpid 2>/dev/null; true

# Disassembly interleaved with source, for reading what gcc and NASM produced.
listing: $(KERNEL)
	objdump -d -S -M intel $(KERNEL) > $(BUILD)/kernel.lst
	@echo "wrote $(BUILD)/kernel.lst"

clean:
	rm -rf $(BUILD)

# ==== string ====
# asm/string.asm (mem* routines) and asm/spinlock.asm (IRQ-safe spinlock), built by the platform's
# pattern rules: kernel objects with NASMFLAGS (-DKERNEL); host objects build/host/asm/*.o without
# -DKERNEL, so they add only the k* names and never replace the C library's mem*. Host tests:
# test_string (mem* against libc) and test_spinlock (mutual exclusion with pthreads).
ASM_OBJS         += $(BUILD)/asm/string.o $(BUILD)/asm/spinlock.o
STRING_HOST_OBJS := $(BUILD)/host/asm/string.o $(BUILD)/host/asm/spinlock.o
HOST_TESTS       += test_string test_spinlock

# struct kspinlock layout, one source of truth: asm/spinlock.h's `#define KSPIN_* value` lines
# become NASM %defines, which asm/spinlock.asm checks against its struc.
SPINLOCK_INC := $(BUILD)/gen/spinlock.inc
$(SPINLOCK_INC): asm/spinlock.h
	@mkdir -p $(@D)
	$(call h2inc,KSPIN_)
$(BUILD)/asm/spinlock.o $(BUILD)/host/asm/spinlock.o: $(SPINLOCK_INC)
$(BUILD)/asm/spinlock.o: NASMFLAGS += -I$(BUILD)/gen/
$(BUILD)/host/asm/spinlock.o: HOST_NASMFLAGS += -I$(BUILD)/gen/
$(BUILD)/host/tests/host/test_spinlock.o: HOST_CFLAGS += -pthread

$(BUILD)/host/tests/test_string: $(BUILD)/host/tests/host/test_string.o $(BUILD)/host/asm/string.o \
  $(KTEST_HOST_OBJS)
	$(CC) -o $@ $^

$(BUILD)/host/tests/test_spinlock: $(BUILD)/host/tests/host/test_spinlock.o \
  $(BUILD)/host/asm/spinlock.o $(KTEST_HOST_OBJS)
	$(CC) -pthread -o $@ $^

# ==== heap ====
# The allocator (mm/): NASM hot paths plus the C checker and diagnostics, for the kernel and,
# unchanged, for build/host/libkheap.a. One source of truth for the layout NASM and C share:
# build/mm/kheap_layout.inc holds every `#define KH*` of mm/kheap.h, kheap_diag.h and
# kheap_layout.h as a NASM %define; build/mm/kheap_offsets.inc the offsets and sizes of the C
# structures, generated by compiling mm/kheap_offsets.c (the asm-offsets method).
MM_OBJS          := $(BUILD)/mm/kheap.o $(BUILD)/mm/kheap_check.o $(BUILD)/mm/kheap_diag.o
HOST_MM_OBJS     := $(BUILD)/host/mm/kheap.o $(BUILD)/host/mm/kheap_check.o \
                    $(BUILD)/host/mm/kheap_diag.o
HOST_LIB         := $(BUILD)/host/libkheap.a
KHEAP_LAYOUT_INC := $(BUILD)/mm/kheap_layout.inc
KHEAP_OFFSETS_INC := $(BUILD)/mm/kheap_offsets.inc
KHEAP_HEADERS    := mm/kheap.h mm/kheap_diag.h mm/kheap_layout.h
KHEAP_GEN        := $(KHEAP_LAYOUT_INC) $(KHEAP_OFFSETS_INC)
KHEAP_HOST_TESTS := test_kheap test_kheap_random test_kheap_harden demo_my_malloc test_kheap_instances \
                    soak_kheap
HOST_TESTS       += $(KHEAP_HOST_TESTS)

# KHEAP_QUICK_DEPTH=N: the front cache's depth per size (mm/kheap.h; 0 = no cache), for the
# kernel, the host libraries and everything that includes mm/kheap.h. Changing it rebuilds
# everything (it is part of FLAGS_NOW, the flags stamp).
ifneq ($(KHEAP_QUICK_DEPTH),)
KHEAP_QUICK_DEF := -DKHEAP_QUICK_DEPTH=$(KHEAP_QUICK_DEPTH)
NASMFLAGS       += $(KHEAP_QUICK_DEF)
KCFLAGS         += $(KHEAP_QUICK_DEF)
HOST_NASMFLAGS  += $(KHEAP_QUICK_DEF)
HOST_CFLAGS     += $(KHEAP_QUICK_DEF)
endif

$(KHEAP_LAYOUT_INC): $(KHEAP_HEADERS)
	@mkdir -p $(@D)
	$(call h2inc,KH)

# Each KH_OFFSET line of mm/kheap_offsets.c leaves "->NAME value" in the assembly listing.
$(KHEAP_OFFSETS_INC): mm/kheap_offsets.c $(KHEAP_HEADERS)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -Wall -Wextra -Werror -I. -S -o $@.s $<
	sed -n 's/.*->\([A-Z0-9_]*\) \([0-9]*\).*/%define \1 \2/p' $@.s > $@.tmp && mv $@.tmp $@

# NASM 2.16's -MD lists only the source file, never its %includes: they are named here.
$(BUILD)/mm/kheap.o $(BUILD)/host/mm/kheap.o: $(KHEAP_GEN) mm/kheap_block.inc \
  mm/kheap_debug.inc mm/kheap_quick.inc mm/kheap_slab.inc
$(BUILD)/boot/boot.o $(BUILD)/boot/ap_start.o: boot/long_mode.inc
$(BUILD)/mm/kheap.o: NASMFLAGS += -I$(BUILD)/mm/ -Imm/
$(BUILD)/host/mm/kheap.o: HOST_NASMFLAGS += -I$(BUILD)/mm/ -Imm/

.PHONY: host-lib
host-lib: $(HOST_LIB)
$(HOST_LIB): $(HOST_MM_OBJS) $(BUILD)/host/asm/string.o
	@rm -f $@
	ar rcs $@ $^

$(addprefix $(BUILD)/host/tests/,$(KHEAP_HOST_TESTS)): $(BUILD)/host/tests/%: \
  $(BUILD)/host/tests/host/%.o $(KTEST_HOST_OBJS) $(HOST_LIB)
	$(CC) -o $@ $< $(KTEST_HOST_OBJS) $(HOST_LIB)

# The KHEAP_DEBUG=1 build of the host library, always built so that `make test` covers both:
# build/host-debug/libkheap.a, and test programs <name>_debug built from tests/host/<name>.c
# with -DKHEAP_DEBUG=1 against it (whatever KHEAP_DEBUG the rest of the build uses).
HOST_DEBUG       := $(BUILD)/host-debug
HOST_DEBUG_LIB   := $(HOST_DEBUG)/libkheap.a
HOST_DEBUG_OBJS  := $(patsubst $(BUILD)/host/%,$(HOST_DEBUG)/%,$(HOST_MM_OBJS))
KHEAP_DEBUG_SRCS := test_kheap test_kheap_harden test_kheap_random test_kheap_instances soak_kheap
HOST_TESTS       += $(KHEAP_DEBUG_SRCS:%=%_debug)

$(HOST_DEBUG)/mm/%.o: mm/%.asm $(KHEAP_GEN) mm/kheap_block.inc mm/kheap_debug.inc \
  mm/kheap_quick.inc mm/kheap_slab.inc $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(NASM) $(HOST_NASMFLAGS) -DKHEAP_DEBUG=1 -I$(BUILD)/mm/ -Imm/ -MD $(@:.o=.d) -MP -o $@ $<

$(HOST_DEBUG)/mm/%.o $(HOST_DEBUG)/tests/%.o: CFLAGS_DEBUG := $(HOST_CFLAGS) -DKHEAP_DEBUG=1
$(HOST_DEBUG)/mm/%.o: mm/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_DEBUG) -c -o $@ $<

$(HOST_DEBUG)/tests/%.o: tests/host/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_DEBUG) -c -o $@ $<

$(HOST_DEBUG_LIB): $(HOST_DEBUG_OBJS) $(BUILD)/host/asm/string.o
	@rm -f $@
	ar rcs $@ $^

.PHONY: host-lib-debug
host-lib-debug: $(HOST_DEBUG_LIB)

$(KHEAP_DEBUG_SRCS:%=$(BUILD)/host/tests/%_debug): $(BUILD)/host/tests/%_debug: \
  $(HOST_DEBUG)/tests/%.o $(KTEST_HOST_OBJS) $(HOST_DEBUG_LIB)
	@mkdir -p $(@D)
	$(CC) -o $@ $< $(KTEST_HOST_OBJS) $(HOST_DEBUG_LIB)

# The slab tier and the per-CPU caches (tests/host/test_kheap_slab.c), release and debug
# (test_kheap_slab_debug): like the programs above, with -pthread (its cpu-hook test runs threads).
HOST_TESTS += test_kheap_slab test_kheap_slab_debug
$(BUILD)/host/tests/host/test_kheap_slab.o: HOST_CFLAGS += -pthread
$(HOST_DEBUG)/tests/test_kheap_slab.o: CFLAGS_DEBUG += -pthread
$(BUILD)/host/tests/test_kheap_slab: $(BUILD)/host/tests/host/test_kheap_slab.o $(KTEST_HOST_OBJS) \
  $(HOST_LIB)
	$(CC) -pthread -o $@ $< $(KTEST_HOST_OBJS) $(HOST_LIB)
$(BUILD)/host/tests/test_kheap_slab_debug: $(HOST_DEBUG)/tests/test_kheap_slab.o $(KTEST_HOST_OBJS) \
  $(HOST_DEBUG_LIB)
	@mkdir -p $(@D)
	$(CC) -pthread -o $@ $< $(KTEST_HOST_OBJS) $(HOST_DEBUG_LIB)

# link_check (tests/host/link_check.sh): a program built with other KHEAP_DEBUG or
# KHEAP_QUICK_DEPTH values than the library must fail to link; the same values link and run.
HOST_TESTS += link_check
KHEAP_QUICK_DEPTH_DEFAULT := $(shell sed -n 's/^\#define KHEAP_QUICK_DEPTH_DEFAULT *//p' mm/kheap.h)
$(BUILD)/host/tests/link_check: tests/host/link_check.sh tools/tap.sh $(HOST_LIB) $(HOST_DEBUG_LIB)
	@mkdir -p $(@D)
	printf '#!/bin/sh\ncd "%s" && CC="%s" CXX="%s" LIB="%s" DEBUG_LIB="%s" DEPTH="%s" WORK="%s" exec tests/host/link_check.sh\n' \
	  "$(CURDIR)" "$(CC)" "$(CXX)" "$(abspath $(HOST_LIB))" "$(abspath $(HOST_DEBUG_LIB))" \
	  "$(or $(KHEAP_QUICK_DEPTH),$(KHEAP_QUICK_DEPTH_DEFAULT))" "$(abspath $(BUILD)/link_check)" > $@
	chmod +x $@

# The soak (tests/host/soak_kheap.c): several heaps at once, one thread and one model each.
# `make test` runs a short slice (soak_kheap and soak_kheap_debug without arguments); `make
# soak` runs SOAK_OPS operations (10^8) on SOAK_HEAPS heaps, kheap_verify every SOAK_CHECK, in
# the release and then the debug build, and notes ops/s.
SOAK_OPS   ?= 100000000
SOAK_HEAPS ?= 4
SOAK_CHECK ?= 100000
.PHONY: soak
soak: $(BUILD)/host/tests/soak_kheap $(BUILD)/host/tests/soak_kheap_debug
	$(BUILD)/host/tests/soak_kheap $(SOAK_OPS) $(SOAK_HEAPS) $(SOAK_CHECK)
	$(BUILD)/host/tests/soak_kheap_debug $(SOAK_OPS) $(SOAK_HEAPS) $(SOAK_CHECK)

# ==== harden ====
# Hardening and diagnostics (tests/host/test_kheap_threads.c, tests/host/fuzz_kheap.c, kernel/
# heapdump.c, tools/heapmap). test_kheap_threads: 4 threads on one heap, pthread mutex and
# kspinlock as the lock hooks.
KERNEL_OBJS += $(BUILD)/kernel/heapdump.o
HOST_TESTS += test_kheap_threads
$(BUILD)/host/tests/host/test_kheap_threads.o: HOST_CFLAGS += -pthread
$(BUILD)/host/tests/test_kheap_threads: $(BUILD)/host/tests/host/test_kheap_threads.o \
  $(KTEST_HOST_OBJS) $(HOST_LIB) $(BUILD)/host/asm/spinlock.o
	$(CC) -pthread -o $@ $< $(KTEST_HOST_OBJS) $(HOST_LIB) $(BUILD)/host/asm/spinlock.o

# libFuzzer target: the model (C) built by clang with -fsanitize=fuzzer,address, linked with the
# (uninstrumented) host library. Built only where clang has the libFuzzer runtime; the smoke
# suite (build/host/tests/fuzz_kheap_smoke, from tests/host/fuzz_kheap_smoke.sh) fails loudly
# without it. The model is compiled with the library's KHEAP_DEBUG (it models the canary and
# the exact ksize of the debug build; it traps at once on a mismatch): `make fuzz` fuzzes the
# build's library, `make fuzz KHEAP_DEBUG=1` the debug one, and the smoke suite runs both
# ($(FUZZ_DEBUG_BIN) is linked with the always-built debug library). `make fuzz` fuzzes a copy
# of the corpus for FUZZ_SECONDS and minimises it into build/fuzz/merged; the inputs there that
# are not in tests/host/fuzz_corpus/ (by content) are copied to build/fuzz/new for review.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BIN     := $(BUILD)/fuzz/fuzz_kheap
FUZZ_DEBUG_BIN := $(BUILD)/fuzz/fuzz_kheap_debug
FUZZ_CFLAGS  := -std=gnu11 -O1 -g -fsanitize=fuzzer,address -fno-omit-frame-pointer \
                -Wall -Wextra -Werror -I. $(KHEAP_QUICK_DEF)
FUZZ_RUNTIME := $(firstword $(wildcard $(shell $(FUZZ_CC) -print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer*.a))
HOST_TESTS   += fuzz_kheap_smoke

$(FUZZ_BIN): tests/host/fuzz_kheap.c mm/kheap.h mm/kheap_layout.h $(HOST_LIB) $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(if $(filter 1,$(KHEAP_DEBUG)),-DKHEAP_DEBUG=1) -o $@ $< $(HOST_LIB)

$(FUZZ_DEBUG_BIN): tests/host/fuzz_kheap.c mm/kheap.h mm/kheap_layout.h $(HOST_DEBUG_LIB) \
  $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DKHEAP_DEBUG=1 -o $@ $< $(HOST_DEBUG_LIB)

$(BUILD)/host/tests/fuzz_kheap_smoke: tests/host/fuzz_kheap_smoke.sh tools/tap.sh \
  $(if $(FUZZ_RUNTIME),$(FUZZ_BIN) $(FUZZ_DEBUG_BIN))
	@mkdir -p $(@D)
	printf '#!/bin/sh\ncd "%s" && FUZZ_BUILD="%s" exec tests/host/fuzz_kheap_smoke.sh\n' \
	  "$(CURDIR)" "$(abspath $(BUILD))" > $@
	chmod +x $@

.PHONY: fuzz
fuzz: $(FUZZ_BIN)
	@mkdir -p $(BUILD)/fuzz/corpus
	cp -n tests/host/fuzz_corpus/* $(BUILD)/fuzz/corpus/
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -max_len=512 \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus
	rm -rf $(BUILD)/fuzz/merged $(BUILD)/fuzz/new
	@mkdir -p $(BUILD)/fuzz/merged $(BUILD)/fuzz/new
	$(FUZZ_BIN) -merge=1 -use_counters=0 $(BUILD)/fuzz/merged tests/host/fuzz_corpus \
	  $(BUILD)/fuzz/corpus
	@seeds=$$(sha1sum tests/host/fuzz_corpus/* | cut -d' ' -f1); \
	  for f in $(BUILD)/fuzz/merged/*; do \
	    echo "$$seeds" | grep -qx "$$(sha1sum < "$$f" | cut -d' ' -f1)" || cp "$$f" $(BUILD)/fuzz/new/; \
	  done
	@echo "fuzz: corpus in $(BUILD)/fuzz/corpus; minimised union (seeds included) in" \
	  "$(BUILD)/fuzz/merged; $$(ls $(BUILD)/fuzz/new | wc -l) of its inputs are not in" \
	  "tests/host/fuzz_corpus/: $(BUILD)/fuzz/new (review, then copy the ones worth keeping)"

# Heap map: a KHEAP_DEBUG=1 kernel (own build dir: the normal build stays valid) runs the
# heapmap_demo KTEST with heapdump=1, kheap_dump() goes to the serial log, tools/heapmap draws
# build/heapmap.svg (and build/heapmap.png when rsvg-convert is installed).
HEAPMAP_BUILD := $(BUILD)/heapmap
.PHONY: heapmap
heapmap:
	@$(MAKE) --no-print-directory BUILD=$(HEAPMAP_BUILD) KHEAP_DEBUG=1 kernel
	@timeout $(KTIMEOUT) $(QEMU) $(QEMU_FLAGS) -kernel $(HEAPMAP_BUILD)/kernel.elf \
	  -append 'ktest=heapmap_demo heapdump=1' > $(BUILD)/heapmap.log 2>&1; st=$$?; \
	  [ $$st -eq 33 ] || { echo "heapmap: demo kernel failed (status $$st): $(BUILD)/heapmap.log"; \
	  exit 1; }
	tools/heapmap $(BUILD)/heapmap.log -o $(BUILD)/heapmap.svg --elf $(HEAPMAP_BUILD)/kernel.elf
	@if command -v rsvg-convert >/dev/null; then \
	  rsvg-convert $(BUILD)/heapmap.svg -o $(BUILD)/heapmap.png && echo "wrote $(BUILD)/heapmap.png"; fi

# ==== bench ====
# Benchmarks. jemalloc and mimalloc replace malloc process-wide, so every allocator
# gets its own runner, build/bench/bin/bench-<name> (tests/host/bench/runner.c + its adapter);
# the driver build/bench/bin/bench runs them in interleaved rounds and writes build/bench/
# results.csv, results.md and *.svg. Each round it also runs, for every allocator but firstfit
# (no lock; first-fit placement of 10^6 objects takes minutes), the threads runner
# build/bench/bin/threads-<name> (tests/host/bench/threads.c: small_churn on 1 and 2 threads,
# producer/consumer; kheap with a mutex and the thread-slot cpu hook) and the placement
# benchmark build/bench/bin/locality-<name> (tests/host/bench/locality.c). bench_smoke is the
# same driver in a seconds-long check mode printing TAP for `make test`. jemalloc/mimalloc
# runners are built only when installed. `make bench BENCH_ARGS='--rounds 3 --allocs
# kheap,glibc --no-locality'` passes options to the driver (--no-threads, --no-locality).
BENCH_SRC    := tests/host/bench
BENCH_BIN    := $(BUILD)/bench/bin
BENCH_OBJ    := $(BUILD)/bench/obj
BENCH_CFLAGS := $(HOST_CFLAGS) -I$(BENCH_SRC) -pthread
BENCH_LDFLAGS := -pthread
BENCH_ARGS   ?=
BENCH_ALLOCS := kheap glibc firstfit
ifneq ($(wildcard /usr/include/jemalloc/jemalloc.h),)
ifneq ($(shell $(CC) -print-file-name=libjemalloc.so),libjemalloc.so)
BENCH_ALLOCS += jemalloc
endif
endif
ifneq ($(wildcard /usr/include/mimalloc.h),)
ifneq ($(shell $(CC) -print-file-name=libmimalloc.so),libmimalloc.so)
BENCH_ALLOCS += mimalloc
endif
endif
BENCH_RUNNERS := $(addprefix $(BENCH_BIN)/bench-,$(BENCH_ALLOCS))
BENCH_THREADS := $(addprefix $(BENCH_BIN)/threads-,$(filter-out firstfit,$(BENCH_ALLOCS)))
LOCALITY_BINS := $(addprefix $(BENCH_BIN)/locality-,$(filter-out firstfit,$(BENCH_ALLOCS)))
BENCH_OBJS    := $(addprefix $(BENCH_OBJ)/,runner.o harness.o workloads.o firstfit.o driver.o \
                   driver_smoke.o threads.o locality.o $(BENCH_ALLOCS:%=adapter_%.o))
HOST_TESTS    += bench_smoke
.SECONDARY: $(BENCH_OBJS)

$(BENCH_OBJ)/%.o: $(BENCH_SRC)/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -c -o $@ $<

$(BENCH_OBJ)/driver_smoke.o: $(BENCH_SRC)/driver.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -DBENCH_SMOKE=1 -DBENCH_BINDIR_REL='"../../bench/bin"' -c -o $@ $<

# Per-allocator extras: kheap links the host library, firstfit its own source, the others -l.
$(BENCH_BIN)/bench-kheap: $(HOST_LIB)
$(BENCH_BIN)/bench-firstfit: $(BENCH_OBJ)/firstfit.o
BENCH_LDLIBS_jemalloc := -ljemalloc
BENCH_LDLIBS_mimalloc := -lmimalloc
$(BENCH_BIN)/bench-%: $(BENCH_OBJ)/runner.o $(BENCH_OBJ)/harness.o $(BENCH_OBJ)/workloads.o \
  $(BENCH_OBJ)/adapter_%.o
	@mkdir -p $(@D)
	$(CC) $(BENCH_LDFLAGS) -o $@ $^ $(BENCH_LDLIBS_$*)

# The threads runners: threads.c, small_churn from workloads.c, the allocator's adapter.
$(BENCH_BIN)/threads-kheap: $(HOST_LIB)
$(BENCH_BIN)/threads-%: $(BENCH_OBJ)/threads.o $(BENCH_OBJ)/workloads.o $(BENCH_OBJ)/adapter_%.o
	@mkdir -p $(@D)
	$(CC) $(BENCH_LDFLAGS) -o $@ $^ $(BENCH_LDLIBS_$*)

# The driver prints its TAP (smoke mode, --tap) through the test framework's writer.
$(BENCH_BIN)/bench: $(BENCH_OBJ)/driver.o $(BENCH_OBJ)/workloads.o $(KTEST_HOST_RUNNER)
	@mkdir -p $(@D)
	$(CC) -o $@ $^

$(BUILD)/host/tests/bench_smoke: $(BENCH_OBJ)/driver_smoke.o $(BENCH_OBJ)/workloads.o \
  $(KTEST_HOST_RUNNER) $(BENCH_RUNNERS) $(BENCH_THREADS) $(LOCALITY_BINS)
	@mkdir -p $(@D)
	$(CC) -o $@ $(BENCH_OBJ)/driver_smoke.o $(BENCH_OBJ)/workloads.o $(KTEST_HOST_RUNNER)

# The bench kernel: the test kernel's objects plus the freestanding bench sources (harness,
# workloads, first-fit, adapters renamed bench_alloc_<name>, kbench.c's KTEST bench_kernel)
# built with KCFLAGS, and a BENCH_KHEAP_SIZE static heap (the host runner's 256 MiB arena; the
# later --defsym wins). tools/bench-kernel boots it with ktest=bench_kernel (op budgets /
# BENCH_KDIV: 20 under TCG, 1 with ACCEL=kvm; BENCH_KROUNDS 3; BENCH_KTIMEOUT 150 s) and reports
# with `bench --from-log` into build/bench/kernel/; `make bench-kernel` runs only this half.
# bench_kernel_smoke (make test) boots it with smoke budgets and prints TAP checks.
BENCH_KOBJ       := $(BUILD)/bench/kobj
BENCH_KERNEL     := $(BUILD)/bench/kernel.elf
BENCH_KHEAP_SIZE := 256M
BENCH_KOBJS      := $(addprefix $(BENCH_KOBJ)/,kbench.o harness.o workloads.o firstfit.o \
                      adapter_kheap.o adapter_firstfit.o)
BENCH_KENV        = BUILD="$(BUILD)" QEMU="$(QEMU)" QEMU_FLAGS="$(QEMU_FLAGS)" ACCEL="$(ACCEL)"
HOST_TESTS       += bench_kernel_smoke

$(BENCH_KOBJ)/adapter_kheap.o: BENCH_KDEFS := -DBENCH_ALLOC_SYMBOL=bench_alloc_kheap
$(BENCH_KOBJ)/adapter_firstfit.o: BENCH_KDEFS := -DBENCH_ALLOC_SYMBOL=bench_alloc_firstfit
$(BENCH_KOBJ)/%.o: $(BENCH_SRC)/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(KCFLAGS) -I$(BENCH_SRC) $(BENCH_KDEFS) -c -o $@ $<

$(BENCH_KERNEL): $(BENCH_KOBJS) $$(LINK_OBJS) linker.ld
	$(LD) $(LDFLAGS) --defsym=__heap_size=$(BENCH_KHEAP_SIZE) -o $@ $(LINK_OBJS) $(BENCH_KOBJS)

$(BUILD)/host/tests/bench_kernel_smoke: $(BENCH_KERNEL) $(BENCH_BIN)/bench tools/bench-kernel \
  tools/tap.sh
	@mkdir -p $(@D)
	printf '#!/bin/sh\ncd "%s" && exec tools/bench-kernel --smoke\n' "$(CURDIR)" > $@
	chmod +x $@

# The placement benchmark (tests/host/bench/locality.c): one binary per allocator (LOCALITY_BINS,
# above), run by make bench's driver each round and by bench_smoke (--smoke: 1/50 the objects);
# `make locality` runs only it, through tools/locality.
$(BENCH_BIN)/locality-%: $(BENCH_OBJ)/locality.o $(BENCH_OBJ)/adapter_%.o
	@mkdir -p $(@D)
	$(CC) $(BENCH_LDFLAGS) -o $@ $^ $(BENCH_LDLIBS_$*)
$(BENCH_BIN)/locality-kheap: $(HOST_LIB)
.PHONY: locality
locality: $(LOCALITY_BINS)
	@BUILD=$(BUILD) tools/locality

# Cycles per kmalloc+kfree pair, release vs KHEAP_DEBUG=1 (the cost of the debug options).
PAIRCOST := $(BENCH_BIN)/paircost
$(PAIRCOST): $(BENCH_SRC)/paircost.c $(HOST_LIB) mm/kheap.h
	@mkdir -p $(@D)
	$(CC) $(HOST_CFLAGS) -DKHEAP_DEBUG_NAME='"release"' -o $@ $< $(HOST_LIB)
$(PAIRCOST)-debug: $(BENCH_SRC)/paircost.c $(HOST_DEBUG_LIB) mm/kheap.h
	@mkdir -p $(@D)
	$(CC) $(HOST_CFLAGS) -DKHEAP_DEBUG=1 -DKHEAP_DEBUG_NAME='"debug"' -o $@ $< $(HOST_DEBUG_LIB)
.PHONY: paircost
paircost: $(PAIRCOST) $(PAIRCOST)-debug
	$(PAIRCOST)
	$(PAIRCOST)-debug

.PHONY: bench bench-build bench-kernel
bench-build: $(BENCH_RUNNERS) $(BENCH_THREADS) $(LOCALITY_BINS) $(BENCH_BIN)/bench $(BENCH_KERNEL)
bench: bench-build
	$(BENCH_BIN)/bench $(BENCH_ARGS)
	@$(BENCH_KENV) tools/bench-kernel
bench-kernel: $(BENCH_KERNEL) $(BENCH_BIN)/bench
	@$(BENCH_KENV) tools/bench-kernel

# ==== lib ====
# kheap for other kernels (docs/EMBEDDING.md). `make lib`: build/lib/libkheap.a -- freestanding,
# position-independent (links at any address), no SSE/x87, no red zone, only the documented API
# global, nothing undefined -- and build/lib/include/ (kheap.h, kheap_diag.h). KHEAP_DEBUG and
# KHEAP_QUICK_DEPTH as everywhere; KHEAP_LIB_MEMFUNCS=1 also exports memcpy/memset/memmove/
# memcmp. The rules are mm/kheap.mk's, the fragment a kernel's own Makefile includes.
KHEAP_SRC      := .
KHEAP_BUILD    := $(BUILD)/lib/obj
KHEAP_LIB      := $(BUILD)/lib/libkheap.a
KHEAP_INCLUDE  := $(BUILD)/lib/include
KHEAP_MEMFUNCS := $(if $(filter 1,$(KHEAP_LIB_MEMFUNCS)),1,0)
KHEAP_CC       := $(CC)
KHEAP_NASM     := $(NASM)
KHEAP_LD       := $(LD)
KHEAP_CFLAGS   := -ffreestanding -fPIE -fno-plt -mno-red-zone -mgeneral-regs-only \
                  -fno-stack-protector -fno-asynchronous-unwind-tables -O2 -g -Wall -Wextra -Werror
include mm/kheap.mk
.PHONY: lib
lib: kheap-lib

# lib_check (tests/host/lib_check.sh): a -mcmodel=kernel object (examples/minimal/kernel.c)
# links against the library at 0xffffffff80100000; no SSE/x87 code, no absolute relocation in
# code, nothing undefined, exactly the headers' API exported; and examples/minimal/Makefile
# (include mm/kheap.mk, KHEAP_MEMFUNCS=1, the kernel's own flags), built into
# build/examples/minimal, exports memcpy & co. too and links.
HOST_TESTS    += lib_check
EXAMPLE_BUILD := $(BUILD)/examples/minimal
.PHONY: example-minimal
example-minimal:
	@$(MAKE) --no-print-directory -C examples/minimal BUILD=$(abspath $(EXAMPLE_BUILD))

$(BUILD)/host/tests/lib_check: tests/host/lib_check.sh tools/tap.sh $(KHEAP_LIB) \
  $(KHEAP_PUBLIC_HEADERS) example-minimal
	@mkdir -p $(@D)
	printf '#!/bin/sh\ncd "%s" && CC="%s" LD="%s" LIB="%s" LIB_MEMFUNCS="%s" INCLUDE="%s" MEMFUNCS_LIB="%s" EXAMPLE_ELF="%s" DEBUG="%s" DEPTH="%s" WORK="%s" exec tests/host/lib_check.sh\n' \
	  "$(CURDIR)" "$(CC)" "$(LD)" "$(abspath $(KHEAP_LIB))" "$(KHEAP_MEMFUNCS)" \
	  "$(abspath $(KHEAP_INCLUDE))" "$(abspath $(EXAMPLE_BUILD)/kheap/libkheap.a)" \
	  "$(abspath $(EXAMPLE_BUILD)/kernel.elf)" "$(if $(filter 1,$(KHEAP_DEBUG)),1,0)" \
	  "$(or $(KHEAP_QUICK_DEPTH),$(KHEAP_QUICK_DEPTH_DEFAULT))" "$(abspath $(BUILD)/lib_check)" > $@
	chmod +x $@

# The higher-half kernel links the heap exactly as an embedder would: build/hh/lib/libkheap.a
# (with memcpy & co.), not the heap's and the string routines' own objects.
ifeq ($(HIGHER_HALF),1)
LINK_OBJS = $(BOOT_OBJS) $(KERNEL_OBJS) $(filter-out $(BUILD)/asm/string.o,$(ASM_OBJS)) \
            $(KTEST_OBJS) $(KHEAP_LIB)
endif

# ==== tests ====
HOST_TEST_BINS = $(addprefix $(BUILD)/host/tests/,$(HOST_TESTS))

host-tests: $(HOST_TEST_BINS)
# The higher-half kernel (HIGHER_HALF=1, suite kernel-higher-half): its own build directory.
KERNEL_HH := $(BUILD)/hh/kernel.elf
.PHONY: kernel-hh
kernel-hh:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/hh HIGHER_HALF=1 kernel

test-build: all harness-kernels host-tests kernel-hh

test: deps
	@$(MAKE) --no-print-directory test-build
	@HOST_TESTS="$(HOST_TESTS)" KERNEL="$(KERNEL)" KERNEL_HH="$(KERNEL_HH)" ISO="$(ISO)" \
	  KTIMEOUT="$(KTIMEOUT)" \
	  QEMU="$(QEMU)" QEMU_FLAGS="$(QEMU_FLAGS)" BUILD="$(BUILD)" \
	  UEFI_ISO="$(UEFI_ISO)" QEMU_OVMF="$(QEMU_OVMF)" tools/test-all

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
