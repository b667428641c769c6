#!/usr/bin/env bash
# fuzz_kheap_smoke -- the bounded fuzz run of `make test` (build/host/tests/fuzz_kheap_smoke, a
# wrapper the Makefile writes, runs it from the source tree with FUZZ_BUILD = the build
# directory): replays the checked-in seed corpus tests/host/fuzz_corpus/ through the libFuzzer
# targets $FUZZ_BUILD/fuzz/fuzz_kheap (the build's library) and fuzz_kheap_debug (the
# KHEAP_DEBUG=1 library), each then fuzzing a copy of it for at most FUZZ_SMOKE_SECONDS
# (default 20) / FUZZ_SMOKE_RUNS (default 60000) runs with a fixed seed. The replay also counts
# what the seeds reach (FUZZ_KHEAP_STATS): slab objects, the TLSF fallback of small requests,
# cross-CPU frees and, in the release build, the per-CPU stacks' LIFO and drain requests must
# all be reached, or the corpus no longer exercises the slab tier.
# TAP version 13 (tools/tap.sh); exit 0 iff all passed. Fails (does not skip) when the target
# is missing.
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tools/tap.sh
. "$src/tools/tap.sh"
build=${FUZZ_BUILD:-$src/build}
corpus=${FUZZ_CORPUS:-$src/tests/host/fuzz_corpus}
seconds=${FUZZ_SMOKE_SECONDS:-20}
runs=${FUZZ_SMOKE_RUNS:-60000}
work=$build/fuzz/smoke
# Lines of libFuzzer's output worth showing after a failure.
FINDINGS='mismatch|fuzz_kheap:|ERROR|SUMMARY|Test unit written|==[0-9]+=='

tap_start
tap_plan 8
# The release build's target, then the one linked with the KHEAP_DEBUG=1 library (canary,
# exact ksize): each replays the corpus and fuzzes a copy of it.
for bin in "$build/fuzz/fuzz_kheap" "$build/fuzz/fuzz_kheap_debug"; do
    name=$(basename "$bin")
    if [ ! -x "$bin" ]; then
        tap_not_ok "libFuzzer target built ($name)"
        tap_note "$bin is missing: clang with the libFuzzer runtime (libclang-rt-dev) was not found"
        tap_note "when the tree was built. Run tools/deps (or: apt-get install clang libclang-rt-dev),"
        tap_note "then make test again."
        tap_not_ok "$name: seed corpus replays cleanly # not run"
        tap_not_ok "$name: the seeds reach both tiers and cross-CPU frees # not run"
        tap_not_ok "$name: bounded fuzz run finds nothing # not run"
        continue
    fi
    tap_ok "libFuzzer target built ($bin)"

    rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
    nseeds=$(find "$corpus" -type f | wc -l)
    out=""
    if [ "$nseeds" -eq 0 ]; then
        tap_not_ok "$name: seed corpus replays cleanly"
        tap_note "no seed inputs in $corpus"
    else
        cp "$corpus"/* "$work/corpus/"
        out=$(FUZZ_KHEAP_STATS=1 "$bin" -runs=0 -artifact_prefix="$work/artifacts/" "$work/corpus" 2>&1)
        if [ $? -eq 0 ]; then
            tap_ok "$name: seed corpus replays cleanly ($nseeds inputs)"
            grep -m1 'INITED' <<<"$out" | tap_diag
        else
            tap_not_ok "$name: seed corpus replays cleanly ($nseeds inputs)"
            grep -E "$FINDINGS" <<<"$out" | head -20 | tap_diag
        fi
    fi
    # the event counts the replay printed at exit ("fuzz_kheap:  <count> <event>")
    events=$(grep -E '^fuzz_kheap: +[0-9]+ ' <<<"${out:-}")
    count() { awk -v e="$1" 'index($0, e) { print $2; exit }' <<<"$events"; }
    need=("slab objects handed out" "small requests served by the TLSF fallback"
          "cross-CPU frees of slab objects")
    [ "$name" = fuzz_kheap ] && need+=("LIFO reuse checked" "drain requests checked")
    missing=""
    for e in "${need[@]}"; do
        [ "$(count "$e")" -gt 0 ] 2>/dev/null || missing="$missing, $e"
    done
    if [ -z "$events" ]; then
        tap_not_ok "$name: the seeds reach both tiers and cross-CPU frees"
        tap_note "the replay printed no event counts (FUZZ_KHEAP_STATS)"
    elif [ -n "$missing" ]; then
        tap_not_ok "$name: the seeds reach both tiers and cross-CPU frees"
        tap_note "never reached: ${missing#, }"
    else
        tap_ok "$name: the seeds reach both tiers and cross-CPU frees"
    fi
    [ -n "$events" ] && tap_diag <<<"$events"

    out=$("$bin" -seed=1 -runs="$runs" -max_total_time="$seconds" -max_len=512 \
          -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" 2>&1)
    status=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' <<<"$out" | tail -1)
    if [ $status -eq 0 ]; then
        tap_ok "$name: bounded fuzz run finds nothing (seed 1, <= $runs runs, <= $seconds s)"
    else
        tap_not_ok "$name: bounded fuzz run finds nothing (seed 1, <= $runs runs, <= $seconds s)"
        grep -E "$FINDINGS" <<<"$out" | head -20 | tap_diag
    fi
    [ -n "$done_line" ] && tap_note "$done_line"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' <<<"$out" | tap_diag
done
tap_done fuzz_kheap_smoke
