#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time: SECONDS per target (first
# argument, else FUZZ_SECONDS, else 10). `make test` runs it short; `make fuzz` long.
#
# The targets are built once, together, in one profile (no sanitizer: Rust code is
# memory-safe and the harnesses look for panics, overflows and broken invariants; 16
# codegen units keep the instrumented build short). Each run starts from the seed corpus
# kept in the repository (fuzz/corpus/TARGET, read only) and writes what it finds to a
# scratch directory (FUZZ_WORK, else a temporary one), so the repository stays clean.
# A crash fails the script and leaves its input in fuzz/artifacts/TARGET/ to reproduce
# with `cd fuzz && cargo fuzz run -s none TARGET artifacts/TARGET/crash-...`.
# Prints one line per target: executions, executions per second, corpus size, crashes.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-${FUZZ_SECONDS:-10}}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 1
fi
# The instrumented build lives outside the work tree, in a cache kept between runs (and
# shared by clones: CI's fresh clone rebuilds only Conclave's own crates, not the ~470
# dependencies). FUZZ_TARGET_DIR overrides it.
target_dir=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/conclave-fuzz/target}
mkdir -p "$target_dir"
flags=(--sanitizer none --codegen-units 16 --target-dir "$target_dir")

started=$(date +%s)
(cd fuzz && cargo fuzz build "${flags[@]}")
built=$(date +%s)
echo "fuzz-smoke: built every target in $((built - started)) s"

work=${FUZZ_WORK:-$(mktemp -d)}
[ -n "${FUZZ_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
failed=0
total=0
printf '%-14s %12s %10s %8s %8s\n' target executions "exec/s" corpus crashes
for target in $(cd fuzz && cargo fuzz list); do
    mkdir -p "$work/$target"
    log="$work/$target.log"
    status=0
    (cd fuzz && cargo fuzz run "${flags[@]}" "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048) \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "$work/$target" -type f | wc -l)
    crashes=0
    if [ "$status" -ne 0 ]; then
        crashes=1
        failed=1
    fi
    total=$((total + ${execs:-0}))
    printf '%-14s %12s %10s %8s %8s\n' "$target" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes"
    if [ "$status" -ne 0 ]; then
        echo "fuzz-smoke: $target failed (exit $status); the end of its log:" >&2
        tail -40 "$log" >&2
        ls fuzz/artifacts/"$target"/ 2>/dev/null >&2 || true
    fi
done
echo "fuzz-smoke: $total executions in $(( $(date +%s) - built )) s of fuzzing"
exit "$failed"
