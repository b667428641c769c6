/*
 * kheap_offsets.c -- the NASM view of kheap's C structures (the asm-offsets method): compiled
 * with -S only, never linked. Each KH_OFFSET/KH_SIZE line leaves "->NAME value" in the
 * assembly, which the Makefile turns into build/mm/kheap_offsets.inc (`%define NAME value`).
 * One file serves every build (release, debug, any front-cache depth): the structures must not
 * depend on KHEAP_DEBUG or KHEAP_QUICK_DEPTH (kheap_layout.h keeps them independent).
 */
#include "kheap_layout.h"

#define KH_DEFINE(sym, val) __asm__ volatile("\n.ascii \"->" #sym " %c0\"" : : "i"(val))
#define KH_OFFSET(sym, type, member) KH_DEFINE(sym, offsetof(struct type, member))
#define KH_SIZE(sym, type) KH_DEFINE(sym, sizeof(struct type))

void kheap_offsets(void);
void kheap_offsets(void)
{
    KH_OFFSET(KH_CTL_MAGIC, kh_ctl, magic);
    KH_OFFSET(KH_CTL_SECRET, kh_ctl, secret);
    KH_OFFSET(KH_CTL_LINK_KEY, kh_ctl, link_key);
    KH_OFFSET(KH_CTL_MIN, kh_ctl, min_addr);
    KH_OFFSET(KH_CTL_MAX, kh_ctl, max_addr);
    KH_OFFSET(KH_CTL_SPAN16, kh_ctl, span16);
    KH_OFFSET(KH_CTL_GATE, kh_ctl, gate);
    KH_OFFSET(KH_CTL_CALLER, kh_ctl, caller);
    KH_OFFSET(KH_CTL_HOOKS, kh_ctl, hooks);
    KH_OFFSET(KH_CTL_ERR_FN, kh_ctl, hooks.error);
    KH_OFFSET(KH_CTL_LOCK_ACQ, kh_ctl, hooks.lock);
    KH_OFFSET(KH_CTL_LOCK_REL, kh_ctl, hooks.unlock);
    KH_OFFSET(KH_CTL_LOCK_CTX, kh_ctl, hooks.lock_ctx);
    KH_OFFSET(KH_CTL_GROW, kh_ctl, hooks.grow);
    KH_OFFSET(KH_CTL_TRIM, kh_ctl, hooks.trim);
    KH_OFFSET(KH_CTL_TRIM_MIN, kh_ctl, hooks.trim_min);
    KH_OFFSET(KH_CTL_TRIMMED, kh_ctl, trimmed);
    KH_OFFSET(KH_CTL_USED, kh_ctl, used);
    KH_OFFSET(KH_CTL_PEAK, kh_ctl, peak);
    KH_OFFSET(KH_CTL_ALLOCS, kh_ctl, allocs);
    KH_OFFSET(KH_CTL_FREES, kh_ctl, frees);
    KH_OFFSET(KH_CTL_FAIL_AFTER, kh_ctl, fail_after);
    KH_OFFSET(KH_CTL_FAIL_PPM, kh_ctl, fail_ppm);
    KH_OFFSET(KH_CTL_FAIL_RNG, kh_ctl, fail_rng);
    KH_OFFSET(KH_CTL_TOTAL, kh_ctl, total);
    KH_OFFSET(KH_CTL_FAILED, kh_ctl, failed);
    KH_OFFSET(KH_CTL_ERRORS, kh_ctl, errors);
    KH_OFFSET(KH_CTL_REGIONS, kh_ctl, regions);
    KH_OFFSET(KH_CTL_NREGIONS, kh_ctl, nregions);
    KH_OFFSET(KH_CTL_QUICK, kh_ctl, quick);
    KH_OFFSET(KH_CTL_FL_MAP, kh_ctl, fl_map);
    KH_OFFSET(KH_CTL_SL_MAP, kh_ctl, sl_map);
    KH_OFFSET(KH_CTL_HEADS, kh_ctl, heads);
    KH_OFFSET(KH_CTL_DETACHED, kh_ctl, detached);
    KH_OFFSET(KH_CTL_QUICK_LOST, kh_ctl, quick_lost);
    KH_OFFSET(KH_CTL_QUICK_LOST_BYTES, kh_ctl, quick_lost_bytes);
    KH_OFFSET(KH_CTL_SLAB_KEY, kh_ctl, slab_key);
    KH_OFFSET(KH_CTL_CPUS, kh_ctl, cpus);
    KH_OFFSET(KH_CTL_NCPU, kh_ctl, ncpu);
    KH_OFFSET(KH_CTL_CPU_BLOCK, kh_ctl, cpu_block);
    KH_OFFSET(KH_CTL_DEPOT, kh_ctl, depot);
    KH_OFFSET(KH_DEPOT_NFULL, kh_depot, nfull);
    KH_OFFSET(KH_DEPOT_HOME, kh_depot, home);
    KH_OFFSET(KH_DEPOT_MAG, kh_depot, mag);
    KH_SIZE(KH_DEPOT_BYTES, kh_depot);
    KH_OFFSET(KH_CTL_SLAB_BYTES, kh_ctl, slab_bytes);
    KH_OFFSET(KH_CTL_SLAB_FREE, kh_ctl, slab_free);
    KH_OFFSET(KH_CTL_SLAB_COUNT, kh_ctl, slab_count);
    KH_OFFSET(KH_CTL_SLAB_CAP, kh_ctl, slab_cap);
    KH_OFFSET(KH_CTL_SLAB_LOST, kh_ctl, slab_lost);
    KH_OFFSET(KH_CTL_PARTIAL, kh_ctl, partial);
    KH_OFFSET(KH_CTL_SPARE, kh_ctl, spare);
    KH_OFFSET(KH_CTL_GEN, kh_ctl, gen);
    KH_OFFSET(KH_CTL_CPU0, kh_ctl, cpu0);
    KH_OFFSET(KH_CTL_CPU_FN, kh_ctl, hooks.cpu);
    KH_OFFSET(KH_CTL_NCPU_HOOK, kh_ctl, hooks.ncpu);
    KH_OFFSET(KH_HOOKS_CPU, kheap_hooks, cpu);
    KH_OFFSET(KH_HOOKS_NCPU, kheap_hooks, ncpu);
    KH_OFFSET(KH_CLS_SIZE, kh_class, size);
    KH_OFFSET(KH_CLS_FIRST, kh_class, first);
    KH_OFFSET(KH_CLS_CAP, kh_class, cap);
    KH_SIZE(KH_CLS_BYTES, kh_class);
    KH_OFFSET(KH_SL_CHECK, kh_slab, check);
    KH_OFFSET(KH_SL_CLS, kh_slab, cls);
    KH_OFFSET(KH_SL_HOME, kh_slab, home);
    KH_OFFSET(KH_SL_NFREE, kh_slab, nfree);
    KH_OFFSET(KH_SL_HINT, kh_slab, hint);
    KH_OFFSET(KH_SL_GEN, kh_slab, gen);
    KH_OFFSET(KH_SL_NEXT, kh_slab, next);
    KH_OFFSET(KH_SL_PREV, kh_slab, prev);
    KH_OFFSET(KH_SL_STATE, kh_slab, state);
    KH_OFFSET(KH_CPU_BUSY, kh_cpu, busy);
    KH_OFFSET(KH_CPU_DRAIN, kh_cpu, drain);
    KH_OFFSET(KH_CPU_ALLOCS, kh_cpu, allocs);
    KH_OFFSET(KH_CPU_FREES, kh_cpu, frees);
    KH_OFFSET(KH_CPU_COUNT, kh_cpu, count);
    KH_OFFSET(KH_CPU_OBJ, kh_cpu, obj);
    KH_OFFSET(KH_CPU_PARTIAL, kh_cpu, partial);
    KH_SIZE(KH_CPU_BYTES, kh_cpu);
    KH_OFFSET(KH_ST_SLAB, kheap_stats, slab_bytes);
    KH_OFFSET(KH_ST_SLAB_FREE, kheap_stats, slab_free_bytes);
    KH_OFFSET(KH_ST_CACHED, kheap_stats, cached_bytes);
    KH_SIZE(KH_CTL_BYTES, kh_ctl);
    KH_OFFSET(KH_QUICK_HEAD, kh_quick, head);
    KH_OFFSET(KH_QUICK_COUNT, kh_quick, count);
    KH_SIZE(KH_QUICK_ENTRY, kh_quick);
    KH_OFFSET(KH_RGN_NEXT, kh_region, next);
    KH_OFFSET(KH_RGN_START, kh_region, start);
    KH_OFFSET(KH_RGN_END, kh_region, end);
    KH_OFFSET(KH_HOOKS_ERROR, kheap_hooks, error);
    KH_OFFSET(KH_HOOKS_LOCK, kheap_hooks, lock);
    KH_OFFSET(KH_HOOKS_UNLOCK, kheap_hooks, unlock);
    KH_OFFSET(KH_HOOKS_LOCK_CTX, kheap_hooks, lock_ctx);
    KH_OFFSET(KH_HOOKS_GROW, kheap_hooks, grow);
    KH_SIZE(KH_HOOKS_BYTES, kheap_hooks);
    KH_OFFSET(KH_ST_TOTAL, kheap_stats, total_bytes);
    KH_OFFSET(KH_ST_USED, kheap_stats, used_bytes);
    KH_OFFSET(KH_ST_FREE, kheap_stats, free_bytes);
    KH_OFFSET(KH_ST_LARGEST, kheap_stats, largest_free);
    KH_OFFSET(KH_ST_PEAK, kheap_stats, peak_used);
    KH_OFFSET(KH_ST_ALLOCS, kheap_stats, allocs);
    KH_OFFSET(KH_ST_FREES, kheap_stats, frees);
    KH_OFFSET(KH_ST_FAILED, kheap_stats, failed_allocs);
    KH_OFFSET(KH_ST_ERRORS, kheap_stats, errors);
    KH_OFFSET(KH_ST_REGIONS, kheap_stats, regions);
    KH_OFFSET(KH_ST_FRAG, kheap_stats, fragmentation_ppm);
    KH_OFFSET(KH_ST_TRIMMED, kheap_stats, trimmed_bytes);
    KH_SIZE(KH_ST_BYTES, kheap_stats);
    KH_OFFSET(KH_BI_PTR, kheap_block_info, ptr);
    KH_OFFSET(KH_BI_SIZE, kheap_block_info, size);
    KH_OFFSET(KH_BI_USABLE, kheap_block_info, usable);
    KH_OFFSET(KH_BI_REQUESTED, kheap_block_info, requested);
    KH_OFFSET(KH_BI_SITE, kheap_block_info, site);
    KH_OFFSET(KH_BI_REGION, kheap_block_info, region);
    KH_OFFSET(KH_BI_USED, kheap_block_info, used);
    KH_OFFSET(KH_BI_SLAB, kheap_block_info, slab);
    KH_SIZE(KH_BI_BYTES, kheap_block_info);
}
