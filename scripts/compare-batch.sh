#!/usr/bin/env bash
# Side by side: weir's streaming TUMBLE job against DataFusion's batch query over the same
# file, both writing Parquet. DataFusion is its Python package (pinned below), installed from
# PyPI into a venv under $WEIR_CACHE_DIR.
#
#   scripts/compare-batch.sh [--rows N] [--runs N] [--format json|csv|parquet] [--bin PATH]
#
# Defaults: 5,000,000 bids (Nexmark's, written once by weir into one file), 3 runs of each in
# turn, JSON lines, a release build of weir at its default parallelism.
#
# The query, in both engines: per auction and 10-second window, the number of bids and the
# sum of their prices. weir reads the file as a source with a watermark (TUMBLE, event time);
# DataFusion groups by `date_bin`. Each run is one whole process (start-up included), timed
# with /usr/bin/time: wall seconds, CPU seconds (user + system) and peak RSS. After the runs,
# DataFusion reads both outputs back and checks they hold the same rows.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bids-file.sh
ROWS=5000000
RUNS=3
FORMAT=json
BIN=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rows) ROWS="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --format) FORMAT="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        *) echo "compare-batch: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$FORMAT" in json | csv | parquet) ;; *) echo "compare-batch: --format json|csv|parquet" >&2; exit 2 ;; esac
log() { echo "compare-batch: $*" >&2; }
DF_VERSION=55.0.0
CACHE="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
mkdir -p "$CACHE"
if [[ -z "$BIN" ]]; then
    cargo build --release --bin weir >&2
    BIN=target/release/weir
fi
VENV="$CACHE/datafusion-$DF_VERSION"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import datafusion' 2>/dev/null; then
    log "installing datafusion $DF_VERSION (Python) into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "datafusion==$DF_VERSION" >&2
fi
WORK="$(mktemp -d /tmp/weir-compare.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

# The input: the first ROWS bids of the Nexmark sequence, one file.
INPUT="$WORK/bids.$FORMAT"
bids_file "$BIN" "$ROWS" "$FORMAT" "$WORK" "$INPUT"
log "input: $ROWS bids, $(du -m "$INPUT" | cut -f1) MB of $FORMAT"

cat > "$WORK/weir.sql" <<SQL
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '$INPUT', 'format' = '$FORMAT');
CREATE TABLE result (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = '$WORK/weir-out', 'format' = 'parquet');
INSERT INTO result
SELECT window_start, auction, COUNT(*), SUM(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
SQL

cat > "$WORK/df.py" <<'PY'
import sys
import pyarrow as pa
from datafusion import SessionContext
path, fmt, out = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = SessionContext()
schema = pa.schema([("auction", pa.int64()), ("bidder", pa.int64()), ("price", pa.int64()),
                    ("channel", pa.string()), ("url", pa.string()),
                    ("date_time", pa.timestamp("ms")), ("extra", pa.string())])
if fmt == "json":
    ctx.register_json("bid", path, schema=schema, file_extension=".json")
elif fmt == "csv":
    ctx.register_csv("bid", path, schema=schema, has_header=True, file_extension=".csv")
else:
    ctx.register_parquet("bid", path)
ctx.sql("""
    SELECT date_bin(INTERVAL '10 seconds', date_time, TIMESTAMP '1970-01-01 00:00:00') AS window_start,
           auction, COUNT(*) AS bids, SUM(price) AS total
    FROM bid GROUP BY 1, 2
""").write_parquet(out, compression="snappy")
PY

cat > "$WORK/check.py" <<'PY'
import sys
from datafusion import SessionContext
ctx = SessionContext()
ctx.register_parquet("w", sys.argv[1])
ctx.register_parquet("d", sys.argv[2])
q = """SELECT CAST(window_start AS BIGINT) AS ws, auction, bids, total FROM {}"""
diff = ctx.sql(f"""
    SELECT count(*) AS n FROM (
      (SELECT * FROM ({q.format('w')}) EXCEPT ALL SELECT * FROM ({q.format('d')}))
      UNION ALL
      (SELECT * FROM ({q.format('d')}) EXCEPT ALL SELECT * FROM ({q.format('w')})))
""").to_pylist()[0]["n"]
rows = ctx.sql("SELECT count(*) AS n, sum(bids) AS b FROM d").to_pylist()[0]
print(f"{rows['n']} windows and auctions, {rows['b']} bids; rows that differ: {diff}")
sys.exit(1 if diff else 0)
PY

# Runs in turn, each a whole process. Prints "wall cpu peak_kib".
timed() {
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || {
        cat "$WORK/stderr" >&2
        return 1
    }
    awk '{ printf "%s %.2f %d\n", $1, $2 + $3, $4 }' "$WORK/time"
}
WEIR_RUNS=()
DF_RUNS=()
for i in $(seq "$RUNS"); do
    rm -rf "$WORK/weir-out" "$WORK/df-out"
    WEIR_RUNS+=("$(timed "$BIN" run --quiet "$WORK/weir.sql")")
    DF_RUNS+=("$(timed "$VENV/bin/python" "$WORK/df.py" "$INPUT" "$FORMAT" "$WORK/df-out")")
    log "run $i: weir ${WEIR_RUNS[-1]}; datafusion ${DF_RUNS[-1]} (wall s, cpu s, peak KiB)"
done
"$VENV/bin/python" "$WORK/check.py" "$WORK/weir-out" "$WORK/df-out" >&2

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
col() { local n=$1; shift; printf '%s\n' "$@" | awk -v n="$n" '{ print $n }' | median; }
W_WALL=$(col 1 "${WEIR_RUNS[@]}"); W_CPU=$(col 2 "${WEIR_RUNS[@]}"); W_MEM=$(col 3 "${WEIR_RUNS[@]}")
D_WALL=$(col 1 "${DF_RUNS[@]}"); D_CPU=$(col 2 "${DF_RUNS[@]}"); D_MEM=$(col 3 "${DF_RUNS[@]}")
echo "format $FORMAT, $ROWS rows, medians of $RUNS runs each (whole process, start-up included)"
printf '%-22s %8s %8s %10s\n' engine "wall s" "cpu s" "peak MiB"
printf '%-22s %8s %8s %10d\n' "weir (stream)" "$W_WALL" "$W_CPU" $((W_MEM / 1024))
printf '%-22s %8s %8s %10d\n' "datafusion $DF_VERSION" "$D_WALL" "$D_CPU" $((D_MEM / 1024))
awk -v w="$W_WALL" -v d="$D_WALL" 'BEGIN { printf "weir is %.2fx faster (DataFusion wall / weir wall)\n", d / w }'
