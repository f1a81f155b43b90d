#!/usr/bin/env bash
# Connector tests against real servers of each protocol, on loopback only:
#   Kinesis: kinesalite 3.3.3 (npm)      S3: moto 5.2.5 server (PyPI, in a venv)
#   Kafka:   tansu 0.6.0 (cargo install)  PostgreSQL: Debian's postgresql
# Installs what is missing (into $WEIR_CACHE_DIR, default ~/.cache/weir, reused across
# clones and runs), starts the four servers on free loopback ports, runs
# `cargo test --test connectors -- --ignored` against them, and stops them.
# Extra arguments go to the test binary (e.g. a test name); WEIR_CARGO_FLAGS to cargo
# (e.g. --release), WEIR_CONNECTOR_RECORDS sets how many records each test sends.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
mkdir -p "$CACHE"
RUN="$(mktemp -d /tmp/weir-connectors.XXXXXX)"
chmod 755 "$RUN"
PIDS=()
PGDATA=""
PGBIN=""

log() { echo "connector-tests: $*" >&2; }

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -n "$PGDATA" && -f "$PGDATA/postmaster.pid" ]]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
    fi
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT

# shellcheck source=scripts/servers.sh
source "$(dirname "$0")/servers.sh"

as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

# ---- install what is missing -------------------------------------------------------------
KINESALITE_DIR="$CACHE/kinesalite-3.3.3"
if [[ ! -f "$KINESALITE_DIR/node_modules/kinesalite/package.json" ]]; then
    log "installing kinesalite 3.3.3"
    command -v npm >/dev/null || { log "npm is needed (Node.js)"; exit 1; }
    npm install --prefix "$KINESALITE_DIR" --no-audit --no-fund --loglevel=error kinesalite@3.3.3 >&2
fi

install_moto
install_tansu

find_pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PGBIN="$(find_pgbin)"
if [[ -z "$PGBIN" || ! -x "$PGBIN/initdb" ]]; then
    log "installing postgresql"
    if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    else
        log "postgresql is missing and this is not root: install Debian's postgresql"; exit 1
    fi
    PGBIN="$(find_pgbin)"
fi

# ---- start the servers -------------------------------------------------------------------
KINESIS_PORT=$(free_port)
NODE_PATH="$KINESALITE_DIR/node_modules" node -e "
  require('kinesalite')({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000})
    .listen($KINESIS_PORT, '127.0.0.1')" >"$RUN/kinesalite.log" 2>&1 &
PIDS+=($!)
wait_port "$KINESIS_PORT" $! || { cat "$RUN/kinesalite.log" >&2; log "kinesalite did not start"; exit 1; }

start_moto
start_tansu

PG_PORT=$(free_port)
PGDATA="$RUN/pgdata"
mkdir -p "$PGDATA"
[[ $(id -u) -eq 0 ]] && chown postgres "$PGDATA"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >"$RUN/initdb.log" 2>&1 \
    || { cat "$RUN/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA -c fsync=off" start >/dev/null \
    || { cat "$PGDATA/server.log" >&2; exit 1; }

export WEIR_TEST_KINESIS="http://127.0.0.1:$KINESIS_PORT"
export WEIR_TEST_S3="http://127.0.0.1:$S3_PORT"
export WEIR_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
export WEIR_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
log "kinesis $WEIR_TEST_KINESIS, s3 $WEIR_TEST_S3, kafka $WEIR_TEST_KAFKA, postgres $WEIR_TEST_POSTGRES"

# ---- the tests ---------------------------------------------------------------------------
cargo test ${WEIR_CARGO_FLAGS:-} --test connectors -- --ignored "$@"
