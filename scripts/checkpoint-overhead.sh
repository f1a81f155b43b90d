#!/usr/bin/env bash
# Checkpoint overhead: runs an unbounded job file for SECONDS, stops it with SIGINT, and reads
# events/s from its summary; then the same with checkpoints every INTERVAL into a fresh local
# directory. Runs are paired (without, with, without, with, ...) so drift on a shared machine
# hits both alike; prints each pair and the median ratio.
#
#   scripts/checkpoint-overhead.sh [--seconds 60] [--runs 3] [--interval '10 s'] [--bin PATH] JOB.sql
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=60
RUNS=3
INTERVAL="10 s"
BIN=target/release/weir
while [[ $# -gt 1 ]]; do
    case "$1" in
        --seconds) SECONDS_RUN="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --interval) INTERVAL="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        *) echo "checkpoint-overhead: unknown argument $1" >&2; exit 2 ;;
    esac
done
JOB="$1"
[[ -x "$BIN" ]] || cargo build --release --bin weir >&2
WORK="$(mktemp -d /tmp/weir-overhead.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
rate() {
    # events/s of the job summary: "finished|stopped: N events in T s".
    sed -nE 's/.*(finished|stopped): ([0-9]+) events in ([0-9.]+) s.*/\2 \3/p' "$1" | head -1 |
        awk '{ if ($2 > 0) printf "%.0f", $1 / $2; else print 0 }'
}
ratios=()
for i in $(seq 1 "$RUNS"); do
    timeout -s INT "$SECONDS_RUN" "$BIN" run "$JOB" >/dev/null 2>"$WORK/plain.log" || true
    rm -rf "$WORK/chk"
    { echo "SET 'state.checkpoints.dir' = '$WORK/chk';"
      echo "SET 'execution.checkpointing.interval' = '$INTERVAL';"
      cat "$JOB"; } > "$WORK/job.sql"
    timeout -s INT "$SECONDS_RUN" "$BIN" run "$WORK/job.sql" >/dev/null 2>"$WORK/chk.log" || true
    a=$(rate "$WORK/plain.log"); b=$(rate "$WORK/chk.log")
    last=$(grep -o "last checkpoint [0-9]*: [0-9]* ms, [0-9]* KiB, alignment [0-9]* ms" "$WORK/chk.log" | tail -1)
    echo "run $i: without $a events/s, with checkpoints $b events/s (${last:-no checkpoint})"
    ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.4f", b / a; else print 0 }')")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END { printf "median with/without: %.3f\n", r[int((NR + 1) / 2)] }'
