#!/usr/bin/env bash
# Interleaved rounds: one scenario, two proxies, ROUNDS runs of `run.sh` with one measured run
# each (REPS=1), the proxies' order swapped every round; then each round's ratio and the
# medians. On a shared VM whose speed drifts over minutes, `run.sh`'s back-to-back runs of one
# proxy can all land in a slow stretch (BENCHMARKS.md, "How far one run moves"); swapping the
# order each round gives both proxies the same stretches.
#
# benches/load/rounds.sh SCENARIO PROXY PROXY [ROUNDS]   e.g. rounds.sh A portcullis minimal 6
# Other knobs pass through to run.sh (PROFILE, DURATION, WARMUP, CONNS, BASE_PORT); OUT (default
# target/bench-rounds) keeps each round's directory and `rounds.tsv`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ $# -lt 3 ]; then
    echo "usage: $0 SCENARIO PROXY PROXY [ROUNDS]" >&2
    exit 2
fi
scenario=$1 first=$2 second=$3 rounds=${4:-6}
OUT=${OUT:-$ROOT/target/bench-rounds}
mkdir -p "$OUT"
table=$OUT/rounds.tsv
: >"$table"

for ((r = 1; r <= rounds; r++)); do
    order="$first $second"
    [ $((r % 2)) = 0 ] && order="$second $first"
    dir=$OUT/round-$r
    rm -rf "$dir"
    echo "==> round $r of $rounds: $order" >&2
    SCENARIOS=$scenario PROXIES=$order THREADS_LIST=1 REPS=1 OPEN_LOOP=0 OUT=$dir \
        "$ROOT/benches/load/run.sh" >"$dir.log" 2>&1
    # results.tsv: scenario, threads, proxy, req/s, p50, p99, p99.9, errors, non-2xx, CPU s/100k, RSS.
    awk -v r="$r" 'BEGIN { OFS = "\t" } { print r, $3, $4, $10 }' "$dir/results.tsv" >>"$table"
done

# The run's proxy labels (run.sh names the minimal proxy `minimal-pingora`), in first-round order.
mapfile -t labels < <(awk -F'\t' '$1 == 1 { print $2 }' "$table")
if [ "${#labels[@]}" -ne 2 ]; then
    echo "expected two proxies in $table" >&2
    exit 1
fi
a=${labels[0]} b=${labels[1]}

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit; m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }'
}
col() { awk -F'\t' -v p="$1" -v c="$2" '$2 == p { print $c }' "$table"; }

echo "Scenario $scenario, $rounds interleaved rounds (wrk -t1, one measured run per round):"
echo "| round | $a req/s | $b req/s | ratio | $a CPU s/100k | $b CPU s/100k |"
echo "|---|---|---|---|---|---|"
awk -F'\t' -v a="$a" -v b="$b" '
    $2 == a { ra[$1] = $3; ca[$1] = $4 } $2 == b { rb[$1] = $3; cb[$1] = $4 }
    END { for (r = 1; r in ra; r++) printf "| %d | %d | %d | %.2f | %s | %s |\n", r, ra[r], rb[r], rb[r] ? ra[r] / rb[r] : 0, ca[r], cb[r] }' "$table"
ma=$(col "$a" 3 | median) mb=$(col "$b" 3 | median)
printf '| median | %.0f | %.0f | %.2f | %s | %s |\n' "$ma" "$mb" "$(awk -v x="$ma" -v y="$mb" 'BEGIN { print (y > 0) ? x / y : 0 }')" \
    "$(col "$a" 4 | median)" "$(col "$b" 4 | median)"
