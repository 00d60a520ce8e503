#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a short time (default 60 s
# each, FUZZ_SECONDS), two at a time, starting from its committed corpus
# (fuzz/corpus/<target>, read only: what the run adds goes to a scratch
# directory). A crash fails the script, and cargo-fuzz prints the input
# that caused it (fuzz/artifacts/<target>/); make it a regression test
# (docs/reliability.md, "Fuzzing").
#
# Installs what it needs when missing: the nightly toolchain (rustup) and
# cargo-fuzz (crates.io). Builds go to FUZZ_TARGET_DIR (default
# ~/.cache/huddle-fuzz-target) so that repeated runs are fast.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${FUZZ_SECONDS:-60}"
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/huddle-fuzz-target}"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
# Optimized, with debug assertions and overflow checks.
cargo +nightly fuzz build -O -a --target-dir "$target_dir"
targets=$(cargo +nightly fuzz list)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

run() {
    local t=$1
    mkdir -p "$scratch/$t"
    if cargo +nightly fuzz run -O -a --target-dir "$target_dir" "$t" "$scratch/$t" "corpus/$t" \
        -- -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        echo "$t: $(grep -E '^stat::number_of_executed_units' "$scratch/$t.log" | awk '{print $2}') executions, no crash"
    else
        echo "$t: FAILED"
        tail -60 "$scratch/$t.log"
        return 1
    fi
}

failed=0
set -- $targets
while (($# > 0)); do
    run "$1" &
    first=$!
    second=
    if (($# > 1)); then
        run "$2" &
        second=$!
    fi
    wait "$first" || failed=1
    if [[ -n "$second" ]]; then wait "$second" || failed=1; fi
    shift $(($# > 1 ? 2 : 1))
done
exit "$failed"
