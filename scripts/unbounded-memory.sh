#!/usr/bin/env bash
# Memory of unbounded Nexmark queries over time: each query of sql/nexmark/ runs with its
# generator unbounded and paced ('nexmark.max-rate'), all at the same time, and the resident
# memory of each process is read at the given minutes.
#
#   scripts/unbounded-memory.sh [--bin PATH] [--rate EVENTS_PER_S] [--at "1 10"] q4 q9 q20
#
# Defaults: a release build, 300,000 events/s per query, readings after 1 and 10 minutes.
# Prints one line per query and reading (minutes, RSS MiB), then stops the jobs (SIGINT) and
# prints each one's summary: its events and events/s show whether it kept the pace.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=""
RATE=300000
AT="1 10"
QUERIES=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) BIN="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --at) AT="$2"; shift 2 ;;
        q*) QUERIES+=("$1"); shift ;;
        *) echo "unbounded-memory: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ ${#QUERIES[@]} -gt 0 ]] || QUERIES=(q4 q9 q20)
if [[ -z "$BIN" ]]; then
    cargo build --release --bin weir >&2
    BIN=target/release/weir
fi
WORK="$(mktemp -d /tmp/weir-unbounded.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
for q in "${QUERIES[@]}"; do
    sed -E "s/'nexmark\.events' = '[0-9]+'/'nexmark.max-rate' = '$RATE'/" "sql/nexmark/$q.sql" >"$WORK/$q.sql"
    if grep -q "'nexmark.events'" "$WORK/$q.sql"; then
        echo "unbounded-memory: $q still bounds its generator" >&2
        exit 1
    fi
    "$BIN" run "$WORK/$q.sql" >/dev/null 2>"$WORK/$q.err" &
    PIDS+=("$!")
done
START=$(date +%s)
printf '%-6s %8s %10s\n' query minutes "RSS MiB"
for m in $AT; do
    while (( $(date +%s) - START < m * 60 )); do sleep 1; done
    for i in "${!QUERIES[@]}"; do
        pid=${PIDS[$i]}
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "unbounded-memory: ${QUERIES[$i]} stopped:" >&2
            cat "$WORK/${QUERIES[$i]}.err" >&2
            exit 1
        fi
        rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
        printf '%-6s %8s %10s\n' "${QUERIES[$i]}" "$m" "$rss"
    done
done
for i in "${!QUERIES[@]}"; do
    kill -INT "${PIDS[$i]}"
    wait "${PIDS[$i]}" || true
    echo "${QUERIES[$i]}: $(grep -E 'stopped|finished|failed' "$WORK/${QUERIES[$i]}.err" | tail -1 | sed 's/^ *//')"
done
PIDS=()
