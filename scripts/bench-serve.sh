#!/usr/bin/env bash
# Figures for `weir serve` (a benchmark, not a test): ingest throughput and acknowledgement
# latency with wrk (Debian's package, installed when missing) posting 1,000-record NDJSON
# bodies over keep-alive connections, with ?wait=accepted and durable (fsynced); then SSE
# fan-out: N subscribers (default 1000) on one served table, and the time until every one
# has every row of a posted burst.
# Usage: scripts/bench-serve.sh [path/to/weir (default target/release/weir)] [subscribers]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/weir}"
SUBS="${2:-1000}"
DURATION="${WEIR_BENCH_SECONDS:-15}"
log() { echo "bench-serve: $*" >&2; }
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2; }
fi
ulimit -n "$(ulimit -Hn)" || true

RUN="$(mktemp -d /tmp/weir-bench-serve.XXXXXX)"
SERVER=""
cleanup() {
    [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT

cat > "$RUN/job.sql" <<'SQL'
CREATE TABLE events (device STRING, temp DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ('connector' = 'http', 'format' = 'json');
CREATE TABLE per_minute (device STRING, window_start TIMESTAMP(3), n BIGINT, avg_temp DOUBLE)
  WITH ('connector' = 'blackhole');
INSERT INTO per_minute SELECT device, window_start, COUNT(*), AVG(temp)
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY device, window_start, window_end;
CREATE TABLE fan_in (device STRING, payload STRING) WITH ('connector' = 'http', 'format' = 'json');
CREATE TABLE fan_out (device STRING, payload STRING) WITH ('connector' = 'http');
INSERT INTO fan_out SELECT device, payload FROM fan_in;
SQL
printf '[server]\njournal_dir = "%s/data/journal"\nmax_body = "16MB"\n' "$RUN" > "$RUN/serve.toml"
# shellcheck source=scripts/servers.sh
source "$(dirname "$0")/servers.sh"
start_weir_serve "$BIN" "$RUN/serve.toml" "$RUN/job.sql" || { log "weir serve did not start"; exit 1; }
SERVER=$SERVE_PID
URL=$SERVE_URL

# One 1,000-record body, in event-time order.
python3 - "$RUN/body.ndjson" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(1000):
        ms = i * 60
        f.write(json.dumps({"device": "d%d" % (i % 50), "temp": (i * 37 % 100) / 4,
                            "ts": "2026-01-01 00:%02d:%02d.%03d" % (ms // 60000, ms // 1000 % 60, ms % 1000)}) + "\n")
PY
cat > "$RUN/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
local f = io.open("$RUN/body.ndjson", "rb")
wrk.body = f:read("*a")
f:close()
LUA
for mode in accepted durable; do
    q=""; [[ $mode == accepted ]] && q="?wait=accepted"
    out="$(wrk -t1 -c16 -d"${DURATION}s" --latency -s "$RUN/post.lua" "$URL/v1/tables/events/records$q")"
    rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    p50="$(echo "$out" | awk '$1 == "50%" {print $2}')"
    p99="$(echo "$out" | awk '$1 == "99%" {print $2}')"
    non2xx="$(echo "$out" | awk '/Non-2xx/ {print $NF}')"
    printf 'ingest (%s): %.0f records/s (%s requests/s of 1,000 records, 16 connections), ack latency p50 %s p99 %s%s\n' \
        "$mode" "$(echo "$rps * 1000" | bc -l)" "$rps" "$p50" "$p99" "${non2xx:+, non-2xx: $non2xx}"
done
curl -s "$URL/v1/jobs/per_minute" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("job read %d events" % (j["events_in"] + j["events_before"]))'

# SSE fan-out.
python3 - "$URL" "$SUBS" <<'PY'
import asyncio, json, sys, time, urllib.parse, urllib.request
url, subs = sys.argv[1], int(sys.argv[2])
host, port = urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port
ROWS, POSTS = 100, 20
total = ROWS * POSTS
done = []
async def subscriber(ready):
    r, w = await asyncio.open_connection(host, port)
    w.write(b"GET /v1/tables/fan_out/subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    seen, buf = 0, b""
    ready.release()
    while seen < total:
        chunk = await r.read(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            if b"event: rows" in block:
                seen += block.count(b'"device"')
    done.append(time.monotonic())
    w.close()
async def main():
    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(subscriber(ready)) for _ in range(subs)]
    for _ in range(subs):
        await ready.acquire()
    await asyncio.sleep(1)
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    def post(p):
        body = "\n".join(json.dumps({"device": "d%d-%d" % (p, i), "payload": "x" * 100}) for i in range(ROWS))
        req = urllib.request.Request(url + "/v1/tables/fan_in/records", data=body.encode(),
                                     headers={"Content-Type": "application/x-ndjson"})
        urllib.request.urlopen(req).read()
    for p in range(POSTS):
        await loop.run_in_executor(None, post, p)
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    times = sorted(t - t0 for t in done)
    print("SSE fan-out: %d subscribers each got all %d rows (%d posts); last subscriber done %.2f s after the first post, median %.2f s; %.0f row deliveries/s"
          % (len(times), total, POSTS, times[-1], times[len(times) // 2], subs * total / times[-1]))
asyncio.run(main())
PY
