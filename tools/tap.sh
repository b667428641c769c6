# tap.sh -- the TAP writer of the shell test programs, sourced by tools/test-harness,
# tools/bench-kernel --smoke and tests/host/fuzz_kheap_smoke.sh; the shell twin of tests/ktest.c's
# (same lines: `TAP version 13`, `ok N - name`, `not ok N - name`, `ok N - name # SKIP reason`,
# `# ...` diagnostics, the plan, a `# LABEL: P passed, F failed` summary). Results are numbered
# in order; tap_done prints the plan at the end unless tap_plan printed it first.
# shellcheck shell=bash

tap_number=0 tap_failed=0 tap_skipped=0 tap_planned=0

tap_start() { tap_number=0 tap_failed=0 tap_skipped=0 tap_planned=0; echo "TAP version 13"; }
tap_plan()  { tap_planned=1; echo "1..$1"; }

tap_ok()     { tap_number=$((tap_number + 1)); echo "ok $tap_number - $1"; }
tap_not_ok() { tap_number=$((tap_number + 1)) tap_failed=$((tap_failed + 1)); echo "not ok $tap_number - $1"; }
# tap_skip NAME REASON: a test that does not apply here.
tap_skip()   { tap_number=$((tap_number + 1)) tap_skipped=$((tap_skipped + 1)); echo "ok $tap_number - $1 # SKIP $2"; }
# tap_result OK NAME [DIAGNOSTIC]: OK is 1 for a pass; the diagnostic is shown after a failure.
tap_result() {
    if [ "$1" = 1 ]; then tap_ok "$2"; else tap_not_ok "$2"; [ -n "${3:-}" ] && tap_note "$3"; fi
    return 0
}
# tap_check NAME COMMAND...: passes iff the command succeeds.
tap_check()  { if "${@:2}"; then tap_ok "$1"; else tap_not_ok "$1"; fi; }

# tap_note TEXT: one `# TEXT` line. tap_diag: every line of stdin as a diagnostic.
tap_note()   { printf '# %s\n' "$*"; }
tap_diag()   { sed 's/^/# /'; }

# tap_done LABEL: the plan (if not printed yet) and the summary; status 0 iff nothing failed.
tap_done() {
    [ "$tap_planned" = 1 ] || tap_plan "$tap_number"
    local skipped=""
    [ "$tap_skipped" -gt 0 ] && skipped=" ($tap_skipped skipped)"
    echo "# $1: $((tap_number - tap_failed)) passed, $tap_failed failed$skipped"
    [ "$tap_failed" -eq 0 ]
}
