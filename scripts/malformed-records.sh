#!/usr/bin/env bash
# Throughput with malformed records: the same TUMBLE job over a clean JSON-lines file of
# Nexmark bids and over two copies where every tenth line is bad — cut short (broken JSON), or
# with a wrong-typed value ("price": "x123"). Each run is one whole `weir run` process.
#
#   scripts/malformed-records.sh [--rows N] [--runs N] [--bin PATH]
#
# Defaults: 2,000,000 bids, 3 runs of each file in turn, a release build. Prints the median
# wall time of each file, records per second (every line counted), its ratio to the clean
# file, and the malformed records the job reported skipping (a tenth of the lines).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bids-file.sh
ROWS=2000000
RUNS=3
BIN=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rows) ROWS="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        *) echo "malformed-records: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ -z "$BIN" ]]; then
    cargo build --release --bin weir >&2
    BIN=target/release/weir
fi
WORK="$(mktemp -d /tmp/weir-malformed.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

bids_file "$BIN" "$ROWS" json "$WORK" "$WORK/clean.json"
python3 - "$WORK" <<'PY'
import re, sys
work = sys.argv[1]
with open(f"{work}/clean.json") as src, open(f"{work}/cut.json", "w") as cut, \
        open(f"{work}/typed.json", "w") as typed:
    for i, line in enumerate(src):
        if i % 10 == 9:
            cut.write(line[: len(line) // 2] + "\n")
            typed.write(re.sub(r'"price":(\d+)', r'"price":"x\1"', line, count=1))
        else:
            cut.write(line)
            typed.write(line)
PY
for f in clean cut typed; do
    cat > "$WORK/$f.sql" <<SQL
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$WORK/$f.json', 'format' = 'json');
CREATE TABLE result (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, total BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO result
SELECT window_start, auction, COUNT(*), SUM(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
SQL
done
declare -A WALLS SKIPPED
for i in $(seq "$RUNS"); do
    for f in clean cut typed; do
        /usr/bin/time -f '%e' -o "$WORK/time" "$BIN" run "$WORK/$f.sql" >/dev/null 2>"$WORK/$f.err" || {
            cat "$WORK/$f.err" >&2
            exit 1
        }
        WALLS[$f]+="$(cat "$WORK/time") "
        SKIPPED[$f]=$(grep -oE '[0-9]+ malformed records skipped' "$WORK/$f.err" | tail -1 | cut -d' ' -f1)
    done
    echo "malformed-records: run $i of $RUNS done" >&2
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
CLEAN=$(echo "${WALLS[clean]}" | median)
echo "$ROWS JSON-lines bids, TUMBLE count and sum per auction; medians of $RUNS runs"
printf '%-36s %8s %14s %10s %10s\n' file "wall s" "records/s" "vs clean" skipped
for f in clean cut typed; do
    w=$(echo "${WALLS[$f]}" | median)
    case $f in
        clean) name="clean" ;;
        cut) name="10% of lines cut short" ;;
        typed) name="10% with a wrong-typed price" ;;
    esac
    awk -v n="$name" -v w="$w" -v r="$ROWS" -v c="$CLEAN" -v s="${SKIPPED[$f]:-?}" \
        'BEGIN { printf "%-36s %8.3f %13.2fM %9.2fx %10s\n", n, w, r / w / 1e6, w / c, s }'
done
