/*
 * kheap_layout.h -- kheap's internal layout: block header bits, free-block links, region
 * descriptor, size classes and the control block. Not for users (kheap.h is their contract);
 * the one source of truth for mm/kheap.asm and the C files of mm/. The Makefile turns every
 * `#define KH... value` line here and in kheap.h into build/mm/kheap_layout.inc (values stay
 * plain integer expressions NASM understands) and the structures at the end, through
 * mm/kheap_offsets.c, into build/mm/kheap_offsets.inc. docs/heap.md explains the design.
 */
#ifndef KHEAP_LAYOUT_H
#define KHEAP_LAYOUT_H

#include "kheap.h"
#include "kheap_diag.h"

/* Segregated-fit classes: 2^KHEAP_SL_LOG2 second-level lists per power of two (TLSF). */
#define KHEAP_SL_LOG2          4
/* Blocks below 2^KHEAP_FL_SHIFT bytes are classed linearly in steps of KHEAP_ALIGN. */
#define KHEAP_FL_SHIFT         8
/* Largest block: below 2^KHEAP_MAX_LOG2 bytes (256 TiB); a longer region is used up to that. */
#define KHEAP_MAX_LOG2         48

/* ---------------------------------------------------------------------------------------------
 * Blocks. A block starts with its header word at H, H = 8 (mod 16), payload at H + 8, and ends
 * where the next block's header starts: its size S is a multiple of 16, >= KHEAP_MIN_BLOCK.
 *
 *   header word:  63 ........ 48 47 ................ 4  3  2  1  0
 *                [  check bits  |     size / 16       | Q  0  PF F ]
 *
 * check = top 16 bits of hash(H, bits 0..47, per-heap secret); every header, used or free,
 * carries valid check bits, so a pointer that does not point just past a header is caught.
 *
 *   used block:  [hdr][payload .................................. S - 8 bytes]
 *   free block:  [hdr][next free][prev free][ ....... unused ....... ][footer = S]
 *   cached:      [hdr][  link   ][ ............. unused .......................... ]
 *
 * The footer (last 8 bytes of a free block) is read only by the next block, and only when
 * the next block's PREV_FREE flag says its left neighbour is free: a used block's last 8 bytes
 * belong to its payload. Two free blocks are never adjacent.
 *
 * A cached block (QUICK, front cache, S <= KHEAP_QUICK_MAX) is free to its user and used to its
 * neighbours: no footer, the next block's PREV_FREE stays clear, it keeps its own PREV_FREE, it
 * is never merged while cached. Its first payload word links it to the next cached block of the
 * same size, encoded so that a stray write of a plausible pointer does not decode to one:
 *   link = next H (0 at the end) ^ quick_key ^ H
 * quick_key is derived from the secret (a folded multiply, so it does not give the secret away).
 * ------------------------------------------------------------------------------------------- */
#define KH_F_FREE            1     /* this block is free and on the list its size maps to */
#define KH_F_PREV_FREE       2     /* the physical predecessor is free: footer at H - 8 */
#define KH_F_RESERVED        4     /* flag bit that must be 0 in a valid header */
#define KH_F_QUICK           8     /* this block is cached on the front-cache list of its size */
#define KH_FLAG_MASK         15
#define KH_SIZE_MASK         0x0000FFFFFFFFFFF0
#define KH_LOW_MASK          0x0000FFFFFFFFFFFF   /* size and flags: what the check bits cover */
#define KH_CHECK_SHIFT       48
/* Check-bit hash: check = (((H * KA) ^ low48 ^ secret) * K2) >> 48. H gets its own multiply so
 * that (H, low48) pairs that xor alike do not share check bits (KA: odd, below 2^31, so that it is
 * an imul immediate); K2 is chosen so that every one-bit change of low48 (a flag, a size bit)
 * changes the top 16 bits of the product for sure (no 16-bit window of K2 reaching them is all
 * zeros or all ones). Two multiplies: cheap. K1 mixes elsewhere (fault injection, cache key). */
#define KH_HASH_KA           0x7F4A7C15
#define KH_HASH_K1           0x9E3779B97F4A7C15
#define KH_HASH_K2           0xBF58476D1CE4E5B9

/* Cached-block fields, as offsets from H. The front-cache list of block size S is
 * quick[(S - KHEAP_MIN_BLOCK) / 16] of the control block, i.e. at byte KH_CTL_QUICK + S -
 * KHEAP_MIN_BLOCK (entries are KHEAP_ALIGN bytes: the size indexes them directly). */
#define KH_QUICK_LINK        8     /* encoded link to the next cached block of this size */
#define KH_QUICK_BODY        16    /* KHEAP_DEBUG: the poison of a cached block starts here */
#define KH_QUICK_CLASSES     ((KHEAP_QUICK_MAX - KHEAP_MIN_BLOCK) / KHEAP_ALIGN + 1)
#define KH_QUICK_KEY_K       0xD6E8FEB86659FD93   /* quick_key = fold((secret ^ K) * K1) */

/* Free-block fields, as offsets from H. Both links are stored encoded ("safe-linking"), like
 * a cached block's link and with the same key:
 *
 *   stored = target ^ quick_key ^ H        (target: a block's H, or 0 for "none")
 *
 * So "none" is not 0 in memory: a zeroed or otherwise overwritten link decodes to a stray
 * address, which fails the checks every link gets before it is followed (a header address
 * inside the heap whose own link points back), for zero with certainty and for other values all
 * but surely. kheap_set_secret re-encodes every link with the new key. */
#define KH_FREE_NEXT         8     /* next block on the same free list (encoded), or none */
#define KH_FREE_PREV         16    /* previous block on the list (encoded), none for the head */
#define KH_FOOTER_SIZE       8     /* the footer is the last 8 bytes: at H + S - 8 */

/* ---------------------------------------------------------------------------------------------
 * KHEAP_DEBUG builds only (the constants exist in both; see kheap.h for the user's view).
 * A used block of S bytes for a request of n bytes:
 *
 *   [hdr][ payload: n bytes ][ canary: >= 1 byte ][ trailer: requested n | alloc site ]
 *   H    H+8                 H+8+n                H+S-16                                H+S
 *
 * S = max(KHEAP_MIN_BLOCK, round_up(n + 8 + KH_TRAILER_SIZE + KH_CANARY_MIN, 16)); ksize() is n.
 * A free block's body, everything between its links and its footer, holds KH_POISON_BYTE, and
 * so does a cached block's, everything after its link:
 *
 *   [hdr][next][prev][ poison ............................................. ][footer]
 *   H    H+8   H+16  H+KH_FREE_BODY                                          H+S-8
 *   [hdr][link][ poison ........................................................... ]
 *   H    H+8   H+KH_QUICK_BODY                                                       H+S
 *
 * Stale headers of merged blocks are poisoned too (so, in the debug build, a pointer whose
 * header word is poison is reported as a double free). The poison of the part of a free block
 * that is handed out is verified then; kheap_check verifies every free block and canary.
 * ------------------------------------------------------------------------------------------- */
#define KH_POISON_BYTE       0x6B                 /* freed memory (as Linux's POISON_FREE) */
#define KH_POISON_WORD       0x6B6B6B6B6B6B6B6B
#define KH_CANARY_BYTE       0xA5                 /* slack after the requested size */
#define KH_CANARY_MIN        1                    /* at least one canary byte per block */
#define KH_FREE_BODY         24                   /* header + two links: the body starts here */
#define KH_TRAILER_SIZE      16                   /* at H + S - KH_TRAILER_SIZE: */
#define KH_TRAILER_REQ       0                    /*   bytes requested */
#define KH_TRAILER_SITE      8                    /*   return address of the allocating call */

/* ---------------------------------------------------------------------------------------------
 * Regions. [A, E) aligned to 16; descriptor at A, first block header right after it (A + 24 is
 * 8 mod 16), end sentinel header (size 0, used, valid check bits) at E - 8. The first block's
 * PREV_FREE is always clear, so nothing left of it is ever read; the sentinel is never free, so
 * nothing right of it is ever merged.
 *
 *   [next|start|end][ first block ... blocks ... last block ][sentinel]
 *   A               A+24                                      E-8      E
 * ------------------------------------------------------------------------------------------- */
#define KH_RGN_SIZE          24    /* descriptor bytes (struct kh_region); first header at A + 24 */
#define KH_SENTINEL_SIZE     8     /* the end sentinel header */
/* log2(KHEAP_ALIGN), for the header-address check (HDR_ADDR_OK in kheap_block.inc). */
#define KH_ALIGN_LOG2        4
/* log2(KHEAP_MIN_BLOCK): a heap of T bytes holds at most T >> KH_MIN_BLOCK_LOG2 blocks. */
#define KH_MIN_BLOCK_LOG2    5
/* Smallest aligned region: descriptor + one minimum block + sentinel. */
#define KH_RGN_MIN           (KH_RGN_SIZE + KHEAP_MIN_BLOCK + KH_SENTINEL_SIZE)
/* Longest region used: its one block stays below 2^KHEAP_MAX_LOG2 (the rest is ignored). */
#define KH_RGN_MAX           0x0000FFFFFFFFFFF0

/* ---------------------------------------------------------------------------------------------
 * Size classes (TLSF). S < KH_SMALL_LIMIT: fl 0, sl = S / 16 (one exact size per list).
 * Otherwise fl = msb(S) - KHEAP_FL_SHIFT + 1, sl = the KHEAP_SL_LOG2 bits below the msb.
 * Requests are rounded up to the next class boundary first (good fit): every block on the first
 * non-empty list at or above that class fits.
 * ------------------------------------------------------------------------------------------- */
#define KH_SL_COUNT          (1 << KHEAP_SL_LOG2)
#define KH_FL_COUNT          (KHEAP_MAX_LOG2 - KHEAP_FL_SHIFT + 1)
#define KH_SMALL_LIMIT       (1 << KHEAP_FL_SHIFT)
/* Bad list heads one allocation detaches or sets aside before it gives up (a constant bound). */
#define KH_ALLOC_RETRIES     16
/* Largest n (and align) kmalloc/kmalloc_aligned consider: 2^(KHEAP_MAX_LOG2 - 2). Keeps
 * n + align + slack and its class rounding below 2^KHEAP_MAX_LOG2 without overflow checks. */
#define KH_MAX_REQUEST       KHEAP_MAX_ALLOC

/* Fault injection (kheap_fail_rate): splitmix64 (K1, K2 above and K3), scaled to parts per 10^6. */
#define KH_MIX_K3            0x94D049BB133111EB
#define KH_MIX_SHIFT1        30
#define KH_MIX_SHIFT2        27
#define KH_MIX_SHIFT3        31
#define KH_PPM               1000000

/* ---------------------------------------------------------------------------------------------
 * The slab tier. Requests of at most KH_SLAB_MAX bytes (in the debug build: n + the debug
 * extra) are served from slabs of one size class each: a slab is a used block of the TLSF tier
 * (KH_SLAB_BLOCK bytes) whose payload S is aligned to KH_SLAB_SIZE, so the slab of an object p
 * is p & -KH_SLAB_SIZE. Its block's header is at S - 8 and the next block's at S + size - 8:
 * slabs carved one after another tile memory with no gap, and objects end by S + size - 8.
 * Objects carry no header: their state is a byte in the slab header.
 *
 *   S: [check][cls nfree hint gen][next][prev][pad][ state[1024] ][obj 0][obj 1] ... [obj cap-1]
 *      0      8                   16    24    32   KH_SLAB_HDR     KH_SLAB_FIRST
 *
 * check = ((S ^ cls) * KH_HASH_K1) ^ slab_key: a 64-bit keyed value (slab_key is derived from
 * the secret like the link key), so a pointer is a slab object only if its slab's first word
 * holds what only the heap can compute; a stray write into it is caught (the object is then
 * reported, never followed). A slab given back to the TLSF tier has its check cleared.
 * state[g], one byte per 16-byte granule g of the slab (g = (p - S) / 16): for a granule where
 * an object starts KH_OBJ_FREE (in the slab), KH_OBJ_LIVE (the user's) or KH_OBJ_CACHED (in a
 * per-CPU cache); for every other granule (the header, inside an object, the tail)
 * KH_OBJ_NONE. So a pointer's state is one shift away, no division: double and interior frees
 * are exact (a free needs state LIVE at a granule where an object starts: which those are is
 * the read-only table kh_slab_starts, a 16-bit mask of classes per granule, so not even a stray
 * write into a state byte makes an interior pointer acceptable).
 * Objects start at KH_SLAB_FIRST in every class: object i at S + KH_SLAB_FIRST + i * size.
 * Slabs with FREE objects are on their class's partial list (next/prev, plain
 * addresses, each checked before use); a list is on only while gen == the class's generation
 * (dropping a corrupt list is gen++: every list of the class at once). Each CPU slot has its
 * own partial lists beside the heap's (`home` says which a slab is on): a CPU refills from its
 * own slabs first, so the objects of one slab stay on one CPU and two CPUs do not write the same
 * state lines; it takes a slab from the heap's list, the spare or a new one next, and only when
 * no new slab fits one of another CPU's. All lists change under the lock only. Empty slabs: one
 * kept per class (spare), the rest given back at once.
 * ------------------------------------------------------------------------------------------- */
#define KH_SLAB_LOG2         14
#define KH_SLAB_SIZE         (1 << KH_SLAB_LOG2)  /* bytes of a slab, its alignment */
#define KH_SLAB_BLOCK        KH_SLAB_SIZE         /* its TLSF block: [S - 8, S + size - 8) */
#define KH_SLAB_CLASSES      16
#define KH_SLAB_MAX          KHEAP_SLAB_MAX       /* the largest object size */
#define KH_SLAB_HDR          40                   /* state[] starts here */
#define KH_SLAB_GRANULES     (KH_SLAB_SIZE / KHEAP_ALIGN)   /* state bytes */
#define KH_SLAB_FIRST        1088                 /* object 0: after the states, 64-aligned */
#define KH_SLAB_ALIGN_MAX    64                   /* kmalloc_aligned up to this: slab objects */
#define KH_SLAB_KEY_K        0x2545F4914F6CDD1D   /* slab_key = fold((secret ^ K) * K1) */
#define KH_OBJ_FREE          0
#define KH_OBJ_LIVE          1
#define KH_OBJ_CACHED        2
#define KH_OBJ_NONE          0xFF                 /* no object starts in this granule */
/* Per-CPU caches: per CPU and class a stack of up to KH_MAG_DEPTH objects; a refill takes
 * KH_MAG_BATCH from the slabs, a full stack gives KH_MAG_BATCH back (both under the lock). */
#define KH_MAG_LOG2          6
#define KH_MAG_DEPTH         (1 << KH_MAG_LOG2)
#define KH_MAG_BATCH         (KH_MAG_DEPTH / 2)
/* The depot (heaps with ncpu > 1): per class up to KH_DEPOT_MAX half stacks (KH_MAG_BATCH
 * objects each, Bonwick's magazine depot): a CPU whose stack is full leaves its oldest half
 * there, a CPU whose stack is empty takes one: objects freed on one CPU and allocated on
 * another pass without touching a slab. Half, so that after an exchange the stack is half
 * full and the next exchange is as far away as a refill's (a whole stack would leave it at the
 * edge it came from: the next free or allocation of that class would take the lock again). A
 * CPU takes back a half it left itself first, then refills from its own slabs, and only then
 * takes another CPU's: its objects stay on its own slabs' lines where it can. */
#define KH_DEPOT_MAX         8
/* kh_ctl.gate, what the entry fast paths (release build) may do, one load for all of it:
 * KH_GATE_OFF a heap without regions, a lock without a cpu hook, or fault injection on: every
 * call takes the full path; KH_GATE_SLOT0 no hooks of either kind: the slot in the control
 * block; KH_GATE_CPU the cpu hook's slot. Recomputed whenever hooks or fault injection change. */
#define KH_GATE_OFF          0
#define KH_GATE_SLOT0        1
#define KH_GATE_CPU          2

/* ---------------------------------------------------------------------------------------------
 * The control block of a heap: the first KHEAP_CTL_SIZE bytes of kheap_create's memory (64-byte
 * aligned); kheap_t * points at it. Hot fields first (every call touches them), then the
 * front cache, then the TLSF bitmaps and list heads. NASM reads these structures through
 * build/mm/kheap_offsets.inc, generated from them by mm/kheap_offsets.c (KH_CTL_*, KH_RGN_*,
 * KH_ST_*, ...): no offset is written twice.
 * ------------------------------------------------------------------------------------------- */
/* magic = (uintptr_t)h ^ KH_HEAP_MAGIC: what tells a heap from any other pointer. */
#define KH_HEAP_MAGIC        0x6B686561705F6374   /* "kheap_ct" */
#define KH_LEAK_SLOTS        (KHEAP_LEAK_SITES + 1)  /* the leak report's sites, "other" last */

#ifndef __ASSEMBLER__
struct kh_region {
    struct kh_region *next;          /* next region descriptor, or NULL */
    uintptr_t         start, end;    /* A (the descriptor's own address) and E */
};

struct kh_quick {
    uintptr_t         head;          /* first cached block (H), 0 if none */
    uint64_t          count;         /* blocks on the list, <= KHEAP_QUICK_DEPTH */
};

struct kh_site {                     /* one line of the leak report (scratch, under the lock) */
    void             *site;
    size_t            blocks, bytes;
};

struct kh_class {                    /* one slab size class (kh_slab_class[], mm/kheap_slab.inc) */
    uint32_t          size;          /* object bytes */
    uint32_t          spare_;        /* (0) */
    uint32_t          first;         /* offset of object 0 from S: KH_SLAB_FIRST */
    uint32_t          cap;           /* objects per slab */
};

struct kh_slab {                     /* at S, the first bytes of a slab */
    uint64_t          check;         /* ((S ^ cls) * KH_HASH_K1) ^ slab_key */
    uint8_t           cls;
    uint8_t           pad;
    uint16_t          nfree;         /* objects in state KH_OBJ_FREE */
    uint16_t          hint;          /* no FREE object starts below this granule */
    uint16_t          gen;           /* on its partial list iff == the class's gen */
    uintptr_t         next, prev;    /* partial list (S of a slab, or 0) */
    uint16_t          home;          /* its partial list: 0 the heap's, k slot k - 1's */
    uint16_t          pad2[3];
    uint8_t           state[];       /* at KH_SLAB_HDR */
};

struct kh_cpu {                      /* one CPU's caches (kheap.h: the cpu hook) */
    uint8_t           busy;          /* a kheap call of this CPU is using it */
    uint8_t           drain;         /* kheap_flush asked: give everything back first */
    uint8_t           pad[6];
    uint64_t          allocs, frees; /* calls served here (the heap's counters have the rest) */
    uint8_t           count[KH_SLAB_CLASSES];    /* objects in each stack */
    uint8_t           pad2[24];
    uintptr_t         obj[KH_SLAB_CLASSES][KH_MAG_DEPTH];
    uintptr_t         partial[KH_SLAB_CLASSES];  /* this CPU's partial lists (under the lock) */
};

struct kh_depot {                    /* one class's half stacks (after the slots, in cpu_block) */
    uint64_t          nfull;
    uint16_t          home[KH_DEPOT_MAX];        /* the slot (index + 1) that left mag[i] */
    uintptr_t         mag[KH_DEPOT_MAX][KH_MAG_BATCH];
};

struct kh_ctl {
    uint64_t          magic;         /* this ^ KH_HEAP_MAGIC (0 in the empty default heap) */
    uint64_t          secret;        /* mixed into every header's check bits */
    uint64_t          link_key;      /* key of every encoded link (from the secret) */
    uintptr_t         min_addr;      /* lowest region start (all ones, or 0, while none) */
    uintptr_t         max_addr;      /* highest region end (0 while there is none) */
    uint64_t          span16;        /* (max - min) >> 4: the header-address check */
    uint64_t          gate;          /* the entry fast paths: KH_GATE_* (heap_gate keeps it) */
    void             *caller;        /* return address of the public call in progress */
    struct kheap_hooks hooks;
    uint64_t          used;          /* bytes in used blocks; free bytes are total - used */
    uint64_t          peak, allocs, frees;
    uint64_t          fail_after;    /* kheap_fail_after(n) stores n + 1; 0 = off */
    uint64_t          fail_ppm;      /* kheap_fail_rate: failures per 10^6; 0 = off */
    uint64_t          fail_rng;      /* its PRNG state (splitmix64) */
    uint64_t          total;         /* bytes in blocks (used + free) */
    uint64_t          trimmed;       /* bytes given back through hooks.trim */
    uint64_t          failed, errors;
    struct kh_region *regions;       /* region descriptors, newest first */
    uint64_t          nregions;      /* 0: not initialised (the empty default heap) */
    struct kh_quick   quick[KH_QUICK_CLASSES];   /* the front cache, by block size */
    uint64_t          fl_map;        /* bit fl set iff sl_map[fl] != 0 */
    uint32_t          sl_map[KH_FL_COUNT];       /* bit sl set iff heads[fl][sl] != 0 */
    uintptr_t         heads[KH_FL_COUNT][KH_SL_COUNT];
    /* bit sl of word fl: class (fl, sl) may hold free blocks on no list (its list detached
     * for a bad link, or a head set aside for a bad neighbour; docs/heap.md "Corrupt lists");
     * cleared when kheap_verify re-adopts them */
    uint32_t          detached[KH_FL_COUNT];
    uint64_t          quick_lost;    /* cached blocks of dropped cache lists: how many, */
    uint64_t          quick_lost_bytes;          /* how many bytes (kheap_verify counts them) */
    struct kh_site    sites[KH_LEAK_SLOTS];      /* leak report scratch */
    unsigned          nsites;
    /* the slab tier */
    uint64_t          slab_key;      /* key of every slab check (from the secret) */
    struct kh_cpu    *cpus;          /* the per-CPU caches: &cpu0, or a block of ncpu (cpu_block) */
    uint64_t          ncpu;          /* slots at cpus (1 without a cpu hook) */
    uintptr_t         cpu_block;     /* payload of the block holding the slots, or 0 */
    struct kh_depot  *depot;         /* KH_SLAB_CLASSES of them after the slots, or NULL */
    uint64_t          slab_bytes;    /* bytes of blocks that are slabs */
    uint64_t          slab_free;     /* bytes of FREE objects in slabs */
    uint64_t          slab_count;    /* slabs */
    uint64_t          slab_cap;      /* bytes of all objects of all slabs (cap * size each) */
    uint64_t          slab_lost;     /* CACHED objects of dropped stacks (never handed out) */
    uintptr_t         partial[KH_SLAB_CLASSES];  /* partial list heads */
    uintptr_t         spare[KH_SLAB_CLASSES];    /* one empty slab kept per class, or 0 */
    uint64_t          gen[KH_SLAB_CLASSES];      /* partial list generations */
    struct kh_cpu     cpu0;          /* the slot of a heap without a cpu hook */
};

_Static_assert(sizeof(struct kh_region) == KH_RGN_SIZE, "region descriptor size");
_Static_assert(sizeof(struct kh_slab) == KH_SLAB_HDR, "slab header");
_Static_assert(KH_SLAB_FIRST >= KH_SLAB_HDR + KH_SLAB_GRANULES &&
               KH_SLAB_FIRST % KH_SLAB_ALIGN_MAX == 0 && KH_SLAB_FIRST % 64 == 0,
               "objects start after the state bytes, on a cache line");
_Static_assert(sizeof(struct kh_class) == 16, "class entry");
_Static_assert(sizeof(struct kh_cpu) % 64 == 0, "per-CPU slots on their own lines");
_Static_assert(KH_MAG_DEPTH < 256 && KH_MAG_BATCH <= KH_MAG_DEPTH / 2, "stack counts are bytes");
_Static_assert(KH_MAG_BATCH == KH_MAG_DEPTH / 2, "a depot entry is half a stack (depot_put)");
_Static_assert((KH_RGN_SIZE + KHEAP_HEADER_SIZE) % KHEAP_ALIGN == 0, "first payload aligned");
_Static_assert(sizeof(struct kh_ctl) <= KHEAP_CTL_SIZE, "the control block fits KHEAP_CTL_SIZE");
_Static_assert(KHEAP_CTL_SIZE % 64 == 0, "regions after the control block stay aligned");
_Static_assert(sizeof(struct kh_quick) == KHEAP_ALIGN,
               "a cache entry per 16-byte size: the block size indexes the entries");
_Static_assert(KHEAP_QUICK_MAX % KHEAP_ALIGN == 0 && KHEAP_QUICK_MAX >= KHEAP_MIN_BLOCK,
               "KHEAP_QUICK_MAX: a block size");
_Static_assert(KHEAP_QUICK_DEPTH >= 0 && KHEAP_QUICK_DEPTH < 0x7FFFFFFF,
               "KHEAP_QUICK_DEPTH: 0 (no cache) or more, an imm32");
_Static_assert(KH_QUICK_LINK == KHEAP_HEADER_SIZE && KH_QUICK_BODY == KH_QUICK_LINK + 8,
               "the link is the first payload word, the debug poison follows it");
_Static_assert(1 << KH_ALIGN_LOG2 == KHEAP_ALIGN, "align log2");
_Static_assert(KH_SIZE_MASK == (((1ull << KHEAP_MAX_LOG2) - 1) & ~(uint64_t)KH_FLAG_MASK),
               "size mask covers bits 4..KHEAP_MAX_LOG2-1");
_Static_assert(KH_LOW_MASK == (1ull << KH_CHECK_SHIFT) - 1, "check bits above the size");
_Static_assert(KH_CHECK_SHIFT == KHEAP_MAX_LOG2, "size bits end where check bits start");
_Static_assert(KH_MAX_REQUEST == 1ull << (KHEAP_MAX_LOG2 - 2), "max request");
_Static_assert(KH_FL_COUNT <= 64 && KH_SL_COUNT <= 32, "bitmaps fit their words");
_Static_assert(KHEAP_MIN_BLOCK == KHEAP_HEADER_SIZE + 2 * 8 + KH_FOOTER_SIZE, "min block");
_Static_assert(KH_RGN_MIN == KHEAP_REGION_MIN, "public region minimum");
_Static_assert(1 << KH_MIN_BLOCK_LOG2 == KHEAP_MIN_BLOCK, "min block log2");
_Static_assert(KH_FLAG_MASK == (KH_F_FREE | KH_F_PREV_FREE | KH_F_RESERVED | KH_F_QUICK),
               "flag bits");
_Static_assert(KHEAP_ALIGN == KH_FLAG_MASK + 1, "flags live in the alignment bits");
_Static_assert(KH_FREE_BODY == KH_FREE_PREV + 8, "free body follows the links");
_Static_assert(KH_POISON_WORD == KH_POISON_BYTE * 0x0101010101010101ull, "poison word");
_Static_assert(KH_TRAILER_SITE + 8 == KH_TRAILER_SIZE, "trailer fields");
_Static_assert(KHEAP_DEBUG_EXTRA == KH_TRAILER_SIZE + KH_CANARY_MIN, "public debug overhead");
#endif

#endif /* KHEAP_LAYOUT_H */
