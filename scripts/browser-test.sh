#!/usr/bin/env bash
# The live page of `weir serve` in a real browser: Debian's headless Chromium (installed here
# when missing), driven by playwright-core (npm, cached in $WEIR_CACHE_DIR, default
# ~/.cache/weir). It starts `weir serve` with a windowed job over an http table, keeps posting
# records while the page is open, and checks that the page shows the job, the served table's
# rows and its chart, and that the SQL box submits a job. Screenshot: target/live-page.png.
# Usage: scripts/browser-test.sh [path/to/weir]   (default target/debug/weir)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/weir}"
CACHE="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
log() { echo "browser-test: $*" >&2; }

if ! command -v chromium >/dev/null; then
    log "installing Debian's chromium"
    if [[ $(id -u) -ne 0 ]]; then
        log "chromium is missing and this is not root: install Debian's chromium"; exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2; }
fi
PW_DIR="$CACHE/playwright-core-1.64"
if [[ ! -f "$PW_DIR/node_modules/playwright-core/package.json" ]]; then
    log "installing playwright-core"
    command -v npm >/dev/null || { log "npm is needed (Node.js)"; exit 1; }
    npm install --prefix "$PW_DIR" --no-audit --no-fund --loglevel=error playwright-core@1.64 >&2
fi

RUN="$(mktemp -d /tmp/weir-browser.XXXXXX)"
SERVER=""
PRODUCER=""
cleanup() {
    [[ -n "$PRODUCER" ]] && kill "$PRODUCER" 2>/dev/null || true
    [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT

cat > "$RUN/job.sql" <<'SQL'
CREATE TABLE readings (device STRING, temp DOUBLE, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'http', 'format' = 'json');
CREATE TABLE per_second (window_start TIMESTAMP(3), readings BIGINT, avg_temp DOUBLE)
  WITH ('connector' = 'http');
INSERT INTO per_second SELECT window_start, COUNT(*), AVG(temp)
  FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' SECOND))
  GROUP BY window_start, window_end;
SQL
printf '[server]\njournal_dir = "%s/data/journal"\n' "$RUN" > "$RUN/serve.toml"
# shellcheck source=scripts/servers.sh
source "$(dirname "$0")/servers.sh"
start_weir_serve "$BIN" "$RUN/serve.toml" "$RUN/job.sql" || { log "weir serve did not start"; exit 1; }
SERVER=$SERVE_PID
URL=$SERVE_URL

# A producer: ten readings every 200 ms, in event-time order, until stopped.
python3 - "$URL" <<'PY' &
import json, sys, time, urllib.request
url = sys.argv[1] + "/v1/tables/readings/records"
t = 1767225600000
i = 0
while True:
    lines = []
    for _ in range(10):
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t / 1000)) + ".%03d" % (t % 1000)
        lines.append(json.dumps({"device": "d%d" % (i % 3), "temp": 20 + (i * 7) % 15, "ts": ts}))
        t += 50
        i += 1
    req = urllib.request.Request(url, data="\n".join(lines).encode(),
                                 headers={"Content-Type": "application/x-ndjson"})
    urllib.request.urlopen(req).read()
    time.sleep(0.2)
PY
PRODUCER=$!

mkdir -p target
NODE_PATH="$PW_DIR/node_modules" node scripts/browser-test.js "$URL" target/live-page.png
log "ok: rows and chart live in Chromium; screenshot target/live-page.png"
