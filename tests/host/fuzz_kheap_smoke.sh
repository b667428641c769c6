#!/usr/bin/env bash
# fuzz_kheap_smoke -- the bounded fuzz run of `make test` (installed by the Makefile as
# build/host/tests/fuzz_kheap_smoke): replays the checked-in seed corpus tests/host/fuzz_corpus/
# through the libFuzzer targets build/fuzz/fuzz_kheap (the build's library) and fuzz_kheap_debug
# (the KHEAP_DEBUG=1 library), each then fuzzing a copy of it for at most FUZZ_SMOKE_SECONDS
# (default 20) / FUZZ_SMOKE_RUNS (default 60000) runs with a fixed seed.
# TAP version 13; exit 0 iff all passed. Fails (does not skip) when the target is missing.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$here/../.." && pwd)
corpus=${FUZZ_CORPUS:-tests/host/fuzz_corpus}
[ -d "$corpus" ] || corpus=$build/../tests/host/fuzz_corpus
seconds=${FUZZ_SMOKE_SECONDS:-20}
runs=${FUZZ_SMOKE_RUNS:-60000}
work=$build/fuzz/smoke
failed=0 n=0

ok()     { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }

echo "TAP version 13"
echo "1..6"
# The release build's target, then the one linked with the KHEAP_DEBUG=1 library (canary,
# exact ksize): each replays the corpus and fuzzes a copy of it.
for bin in "$build/fuzz/fuzz_kheap" "$build/fuzz/fuzz_kheap_debug"; do
    name=$(basename "$bin")
    if [ ! -x "$bin" ]; then
        not_ok "libFuzzer target built ($name)"
        echo "# $bin is missing: clang with the libFuzzer runtime (libclang-rt-dev) was not found"
        echo "# when the tree was built. Run tools/deps (or: apt-get install clang libclang-rt-dev),"
        echo "# then make test again."
        not_ok "$name: seed corpus replays cleanly # not run"
        not_ok "$name: bounded fuzz run finds nothing # not run"
        continue
    fi
    ok "libFuzzer target built ($bin)"

    rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
    nseeds=$(find "$corpus" -type f | wc -l)
    if [ "$nseeds" -eq 0 ]; then
        not_ok "$name: seed corpus replays cleanly"
        echo "# no seed inputs in $corpus"
    else
        cp "$corpus"/* "$work/corpus/"
        out=$("$bin" -runs=0 -artifact_prefix="$work/artifacts/" "$work/corpus" 2>&1)
        if [ $? -eq 0 ]; then
            ok "$name: seed corpus replays cleanly ($nseeds inputs)"
            grep -m1 'INITED' <<<"$out" | sed 's/^/# /'
        else
            not_ok "$name: seed corpus replays cleanly ($nseeds inputs)"
            grep -E 'mismatch|fuzz_kheap:|ERROR|SUMMARY|Test unit written|==[0-9]+==' <<<"$out" | head -20 | sed 's/^/# /'
        fi
    fi

    out=$("$bin" -seed=1 -runs="$runs" -max_total_time="$seconds" -max_len=512 \
          -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" 2>&1)
    status=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' <<<"$out" | tail -1)
    if [ $status -eq 0 ]; then
        ok "$name: bounded fuzz run finds nothing (seed 1, <= $runs runs, <= $seconds s)"
    else
        not_ok "$name: bounded fuzz run finds nothing (seed 1, <= $runs runs, <= $seconds s)"
        grep -E 'mismatch|fuzz_kheap:|ERROR|SUMMARY|Test unit written|==[0-9]+==' <<<"$out" | head -20 | sed 's/^/# /'
    fi
    [ -n "$done_line" ] && echo "# $done_line"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' <<<"$out" | sed 's/^/# /'
done
[ "$failed" -eq 0 ]
