#!/usr/bin/env bash
# Crash test: a bounded file job (unique ids; a raw projection and a TUMBLE aggregate, both
# to Parquet with a small rollover) checkpointing every 500 ms, killed with `kill -9` at random
# moments N times and restarted (parallelism 1, 2, 3 in turn) until it finishes. Then a batch
# engine (DuckDB, installed from PyPI into a venv under $WEIR_CACHE_DIR) checks the published
# output: every id exactly once, the windows equal to the batch answer over the input, no
# hidden files left, and that the last run did not read everything again.
#
#   scripts/crash-test.sh [--kills N] [--rows N] [--files N] [--bin PATH]
#
# Defaults: 20 kills, 2,000,000 rows in 8 files, a release build of weir.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=20
ROWS=2000000
FILES=8
BIN=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --kills) KILLS="$2"; shift 2 ;;
        --rows) ROWS="$2"; shift 2 ;;
        --files) FILES="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        *) echo "crash-test: unknown argument $1" >&2; exit 2 ;;
    esac
done
log() { echo "crash-test: $*" >&2; }
CACHE="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
mkdir -p "$CACHE"
if [[ -z "$BIN" ]]; then
    cargo build --release --bin weir >&2
    BIN=target/release/weir
fi
VENV="$CACHE/duckdb-venv"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import duckdb' 2>/dev/null; then
    log "installing duckdb 1.4.1 into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet duckdb==1.4.1 >&2
fi
WORK="$(mktemp -d /tmp/weir-crash.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
log "writing $ROWS rows in $FILES files to $WORK/in"
python3 - "$WORK/in" "$ROWS" "$FILES" <<'PY'
import os, sys, datetime
out, rows, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
base = datetime.datetime(2026, 1, 1)
per = rows // files
for f in range(files):
    with open(os.path.join(out, f"part-{f}.json"), "w") as w:
        for i in range(per):
            i_d = f * per + i
            ts = base + datetime.timedelta(milliseconds=i * 5 + (i_d * 7919) % 400)
            w.write('{"id": %d, "k": %d, "ts": "%s"}\n' % (i_d, i_d % 7, ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]))
PY
TOTAL=$(( ROWS / FILES * FILES ))
cat > "$WORK/job.sql" <<SQL
SET 'state.checkpoints.dir' = '$WORK/chk';
SET 'execution.checkpointing.interval' = '500 ms';
CREATE TABLE events (id BIGINT, k BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'filesystem', 'path' = '$WORK/in', 'format' = 'json');
CREATE TABLE raw_out (id BIGINT, k BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem',
  'path' = '$WORK/out/raw', 'format' = 'parquet', 'sink.rolling-policy.file-size' = '1MB',
  'sink.rolling-policy.rollover-interval' = '1 s', 'sink.rolling-policy.check-interval' = '1 s');
CREATE TABLE win_out (window_start TIMESTAMP(3), k BIGINT, n BIGINT, s BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '$WORK/out/win', 'format' = 'parquet',
  'sink.rolling-policy.rollover-interval' = '1 s', 'sink.rolling-policy.check-interval' = '1 s');
INSERT INTO raw_out SELECT id, k, ts FROM events;
INSERT INTO win_out SELECT window_start, k, COUNT(*) AS n, SUM(id) AS s
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end, k;
SQL
killed=0
runs=0
started=$(date +%s)
while :; do
    p=$(( runs % 3 + 1 ))
    runs=$(( runs + 1 ))
    "$BIN" run --parallelism "$p" "$WORK/job.sql" >/dev/null 2>"$WORK/run.log" &
    pid=$!
    if (( killed < KILLS )); then
        # A random moment: 0.1 to 2.0 s in.
        sleep "$(python3 -c 'import random; print(round(random.uniform(0.1, 2.0), 2))')"
        if kill -9 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true
            killed=$(( killed + 1 ))
            continue
        fi
    fi
    if wait "$pid"; then break; fi
    if (( killed >= KILLS )); then
        log "the last run failed:"; cat "$WORK/run.log" >&2; exit 1
    fi
done
log "$killed kills, $runs runs, $(( $(date +%s) - started )) s; last run:"
cat "$WORK/run.log" >&2
hidden=$(find "$WORK/out" -name '.*' -type f | wc -l)
if (( hidden > 0 )); then log "FAIL: $hidden hidden files left"; exit 1; fi
# The last run resumed from a checkpoint unless it was the first: events this run plus those
# read before its checkpoint are exactly the input, so nothing was read twice.
if (( runs > 1 )) && grep -q "restored raw_out" "$WORK/run.log"; then
    line=$(grep -A1 "^job INSERT INTO raw_out" "$WORK/run.log" | tail -1)
    now=$(sed -E 's/.*finished: ([0-9]+) events.*/\1/' <<<"$line")
    before=$(sed -nE 's/.*\(([0-9]+) more were read before.*/\1/p' <<<"$line")
    if [[ -n "$before" && $(( now + before )) -ne $TOTAL ]]; then
        log "FAIL: the last run read $now events after $before checkpointed, not $TOTAL in all"
        exit 1
    fi
    log "the last run read $now events; ${before:-0} were read before its checkpoint"
fi
"$VENV/bin/python" - "$WORK" "$TOTAL" <<'PY'
import sys, duckdb
work, total = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
n, d = con.execute(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{work}/out/raw/**/*.parquet')").fetchone()
print(f"crash-test: raw: {n} rows, {d} distinct ids, {total} in the input", file=sys.stderr)
assert n == total and d == total, "ids lost or duplicated"
want = f"""SELECT (epoch_ms(ts) // 10000) * 10000 AS ws, k, count(*) AS n, sum(id) AS s
           FROM read_json('{work}/in/*.json', columns = {{'id': 'BIGINT', 'k': 'BIGINT', 'ts': 'TIMESTAMP'}})
           GROUP BY ALL"""
got = f"SELECT epoch_ms(window_start) AS ws, k, n, s FROM read_parquet('{work}/out/win/**/*.parquet')"
w = con.execute(f"SELECT count(*) FROM ({want})").fetchone()[0]
g = con.execute(f"SELECT count(*) FROM ({got})").fetchone()[0]
diff = con.execute(f"SELECT count(*) FROM (({want}) EXCEPT ({got})) UNION ALL SELECT count(*) FROM (({got}) EXCEPT ({want}))").fetchall()
print(f"crash-test: windows: {g} rows written, {w} in the batch answer, differences {diff}", file=sys.stderr)
assert w == g and all(x[0] == 0 for x in diff), "windows differ from the batch answer"
print("crash-test: OK", file=sys.stderr)
PY
