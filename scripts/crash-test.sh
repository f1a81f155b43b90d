#!/usr/bin/env bash
# Crash test: a bounded file job (unique ids; a raw projection and a TUMBLE aggregate, both
# to Parquet with a small rollover) checkpointing every 500 ms, killed with `kill -9` at random
# moments N times and restarted (parallelism 1, 2, 3 in turn) until it finishes. Then a batch
# engine (DuckDB, installed from PyPI into a venv under $WEIR_CACHE_DIR) checks the published
# output: every id exactly once, the windows equal to the batch answer over the input, no
# hidden files left, and that the last run did not read everything again.
#
#   scripts/crash-test.sh [--kills N] [--rows N] [--files N] [--bin PATH]
#                         [--source files|kafka] [--sink local|s3] [--require-progress]
#
# Defaults: 20 kills, 2,000,000 rows in 8 files, a release build of weir, a file source and
# local Parquet output.
# --source kafka: the rows are first written (by weir, once, without kills) to a 4-partition
#   topic of a tansu broker keyed by `k`, from one file so that each partition is in time
#   order; the crashed job reads the topic (bounded at its latest offsets). They are written
#   one message per record batch: tansu 0.6.0 answers a fetch from an offset inside a record
#   batch with the batches after it (a Kafka broker returns the batch that contains it), so
#   resuming mid-batch would skip the rest of that batch on tansu.
# --sink s3: both outputs go to a moto S3 server; the check downloads the objects first.
# --require-progress: fail when no run was killed, or no killed run checkpointed any rows (the
#   last run then read everything again, so resuming mid-stream was not tested); without it,
#   that is only said.
#   tansu 0.6.0 lists every record batch of a partition on each fetch, so a topic of one
#   message per batch reads slowly once it holds more than a few hundred thousand: keep
#   --rows small with --source kafka.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=20
ROWS=2000000
FILES=8
BIN=""
SOURCE=files
SINK=local
REQUIRE_PROGRESS=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --kills) KILLS="$2"; shift 2 ;;
        --rows) ROWS="$2"; shift 2 ;;
        --files) FILES="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        --source) SOURCE="$2"; shift 2 ;;
        --sink) SINK="$2"; shift 2 ;;
        --require-progress) REQUIRE_PROGRESS=1; shift ;;
        *) echo "crash-test: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$SOURCE/$SINK" in
    files/local | files/s3 | kafka/local | kafka/s3) ;;
    *) echo "crash-test: --source files|kafka, --sink local|s3" >&2; exit 2 ;;
esac
KILL_WINDOW="0.1, 2.0"
if [[ "$SOURCE" == kafka ]]; then
    FILES=1
    KILL_WINDOW="0.5, 3.0"
fi
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
RUN="$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
if [[ "$SOURCE" == kafka || "$SINK" == s3 ]]; then
    # shellcheck source=scripts/servers.sh
    source scripts/servers.sh
fi
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
SOURCE_WITH="'connector' = 'filesystem', 'path' = '$WORK/in', 'format' = 'json'"
if [[ "$SOURCE" == kafka ]]; then
    install_tansu
    start_tansu
    "$TANSU" topic create events --partitions 4 --broker "tcp://127.0.0.1:$KAFKA_PORT" >/dev/null
    KAFKA_WITH="'connector' = 'kafka', 'topic' = 'events', 'properties.bootstrap.servers' = '127.0.0.1:$KAFKA_PORT'"
    cat > "$WORK/produce.sql" <<SQL
CREATE TABLE input (id BIGINT, k BIGINT, ts TIMESTAMP(3)) WITH ($SOURCE_WITH);
CREATE TABLE topic (id BIGINT, k BIGINT, ts TIMESTAMP(3))
  WITH ($KAFKA_WITH, 'format' = 'json', 'key.fields' = 'k', 'key.format' = 'raw',
        'properties.batch.num.messages' = '1');
INSERT INTO topic SELECT * FROM input;
SQL
    log "writing the rows to a kafka topic (tansu on port $KAFKA_PORT)"
    "$BIN" run --parallelism 1 "$WORK/produce.sql" >/dev/null 2>"$WORK/produce.log" \
        || { cat "$WORK/produce.log" >&2; exit 1; }
    SOURCE_WITH="$KAFKA_WITH, 'format' = 'json', 'properties.group.id' = 'crash-test',
  'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
fi
OUT="$WORK/out"
SINK_WITH=""
if [[ "$SINK" == s3 ]]; then
    install_moto
    start_moto
    "$MOTO_VENV/bin/python" -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$S3_PORT', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket='crash')"
    OUT="s3://crash/out"
    SINK_WITH=", 'aws.region' = 'us-east-1', 'aws.endpoint' = 'http://127.0.0.1:$S3_PORT',
  'aws.credentials.basic.accesskeyid' = 'test', 'aws.credentials.basic.secretkey' = 'test'"
    log "writing to $OUT (moto on port $S3_PORT)"
fi
cat > "$WORK/job.sql" <<SQL
SET 'state.checkpoints.dir' = '$WORK/chk';
SET 'execution.checkpointing.interval' = '500 ms';
CREATE TABLE events (id BIGINT, k BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ($SOURCE_WITH);
CREATE TABLE raw_out (id BIGINT, k BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'filesystem',
  'path' = '$OUT/raw', 'format' = 'parquet', 'sink.rolling-policy.file-size' = '1MB',
  'sink.rolling-policy.rollover-interval' = '1 s', 'sink.rolling-policy.check-interval' = '1 s'$SINK_WITH);
CREATE TABLE win_out (window_start TIMESTAMP(3), k BIGINT, n BIGINT, s BIGINT)
  WITH ('connector' = 'filesystem', 'path' = '$OUT/win', 'format' = 'parquet',
  'sink.rolling-policy.rollover-interval' = '1 s', 'sink.rolling-policy.check-interval' = '1 s'$SINK_WITH);
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
        # A random moment: 0.1 to 2.0 s in (Kafka: 0.5 to 3 s, as a consumer takes a moment to
        # start fetching).
        sleep "$(python3 -c "import random; print(round(random.uniform($KILL_WINDOW), 2))")"
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
if [[ "$SINK" == s3 ]]; then
    # Download the published objects; count the uploads no checkpoint covered (invisible).
    mkdir -p "$WORK/out"
    "$MOTO_VENV/bin/python" - "$S3_PORT" "$WORK/out" <<'PY'
import os, sys, boto3
s3 = boto3.client('s3', endpoint_url=f'http://127.0.0.1:{sys.argv[1]}', region_name='us-east-1',
                  aws_access_key_id='test', aws_secret_access_key='test')
n = 0
for page in s3.get_paginator('list_objects_v2').paginate(Bucket='crash', Prefix='out/'):
    for o in page.get('Contents', []):
        path = os.path.join(sys.argv[2], o['Key'][len('out/'):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file('crash', o['Key'], path)
        n += 1
pending = len(s3.list_multipart_uploads(Bucket='crash').get('Uploads', []))
print(f"crash-test: {n} objects published; {pending} incomplete uploads of killed runs (invisible)", file=sys.stderr)
PY
fi
hidden=$(find "$WORK/out" -name '.*' -type f | wc -l)
if (( hidden > 0 )); then log "FAIL: $hidden hidden files left"; exit 1; fi
if (( killed == 0 )); then
    log "no run was killed: the job finished before the first kill (try more --rows)"
    if (( REQUIRE_PROGRESS )); then log "FAIL (--require-progress)"; exit 1; fi
fi
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
    if (( killed > 0 )) && [[ -z "$before" ]]; then
        # No killed run got as far as a checkpoint with rows: resuming was not tested.
        log "no run before the last checkpointed any rows: resuming mid-stream was not tested"
        if (( REQUIRE_PROGRESS )); then log "FAIL (--require-progress)"; exit 1; fi
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
