#!/usr/bin/env bash
# Run every property-based fuzz target in tests/fuzz.rs for SECONDS_PER_TARGET each (default
# 60), one after the other, and print each target's executions and findings.
#
# Usage: ./scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# The seed is printed; replay a run with PORTCULLIS_FUZZ_SEED=<seed> ./scripts/fuzz.sh, or one
# finding with the PORTCULLIS_FUZZ_SEED=… PORTCULLIS_FUZZ_ITERATION=… command it prints.
# `cargo test` (and ./scripts/test.sh) runs the same targets for 2 s each.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

echo "==> fuzzing each target for ${seconds} s (cargo test --release --test fuzz)"
status=0
PORTCULLIS_FUZZ_SECONDS="$seconds" cargo test --release --test fuzz -- --nocapture --test-threads=1 2>&1 \
    | tee "$log" || status=$?

echo
echo "==> fuzz summary (${seconds} s per target)"
grep -oE 'fuzz [a-z]+: [0-9]+ executions, [0-9]+ findings.*' "$log" || true
grep -oE 'fuzz [a-z]+: (outcomes: |[0-9]+ inputs skipped).*' "$log" || true
seed="$(grep -oE 'fuzz [a-z]+: seed [0-9]+' "$log" | head -n 1 | grep -oE '[0-9]+$' || true)"
if [ -n "$seed" ]; then
    echo "seed: $seed (replay: PORTCULLIS_FUZZ_SEED=$seed $0 $seconds)"
fi
if grep -q 'FINDING' "$log"; then
    echo "==> findings:"
    grep -E -A4 'FINDING' "$log" || true
fi
if [ "$status" -eq 0 ]; then
    echo "==> no findings"
else
    echo "==> fuzzing FAILED (cargo exit status $status)"
fi
exit "$status"
