# Sourced by scripts/connector-tests.sh and scripts/crash-test.sh: installs (once, into
# $CACHE, reused across clones and runs) and starts the test servers on free loopback ports.
#   install_moto / start_moto      S3: moto 5.2.5 server (PyPI, in a venv)   -> S3_PORT
#   install_tansu / start_tansu    Kafka: tansu 0.6.0 (cargo install)         -> KAFKA_PORT
#   start_weir_serve                `weir serve` on a free port      -> SERVE_PID, SERVE_URL
# Started servers' pids go to PIDS (the caller kills them); their logs to $RUN.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Wait until something accepts connections on 127.0.0.1:$1 (while process $2 lives).
wait_port() {
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        if [[ -n "${2:-}" ]] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

MOTO_VENV="${CACHE:=${WEIR_CACHE_DIR:-$HOME/.cache/weir}}/moto-5.2.5"
install_moto() {
    if [[ ! -x "$MOTO_VENV/bin/moto_server" ]]; then
        echo "installing moto 5.2.5" >&2
        rm -rf "$MOTO_VENV"
        python3 -m venv "$MOTO_VENV"
        "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' >&2
    fi
}

start_moto() {
    S3_PORT=$(free_port)
    "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$RUN/moto.log" 2>&1 &
    PIDS+=($!)
    wait_port "$S3_PORT" $! || { cat "$RUN/moto.log" >&2; echo "moto did not start" >&2; return 1; }
}

TANSU="$CACHE/tansu-0.6.0/bin/tansu"
install_tansu() {
    if [[ ! -x "$TANSU" ]]; then
        echo "building tansu 0.6.0 (once; about 13 minutes on 2 cores)" >&2
        cargo install tansu --version 0.6.0 --locked --features dynostore \
            --root "$CACHE/tansu-0.6.0" --target-dir "$CACHE/tansu-build" >&2
        rm -rf "$CACHE/tansu-build"
    fi
}

# tansu panics if its port was taken in the meantime: try a few ports.
start_tansu() {
    KAFKA_PORT=""
    local p pid
    for _ in 1 2 3 4 5; do
        p=$(free_port)
        "$TANSU" broker --listener-url "tcp://127.0.0.1:$p" --advertised-listener-url "tcp://127.0.0.1:$p" \
            --storage-engine memory://tansu/ >"$RUN/tansu.log" 2>&1 &
        pid=$!
        if wait_port "$p" "$pid"; then PIDS+=("$pid"); KAFKA_PORT=$p; return 0; fi
        kill "$pid" 2>/dev/null || true
    done
    cat "$RUN/tansu.log" >&2
    echo "tansu did not start" >&2
    return 1
}

# Start `weir serve` (binary $1) with config $2 and job file $3, logging to $RUN/serve.log; once
# it is ready, SERVE_PID and SERVE_URL (from its first stderr line) are set. The caller stops it.
start_weir_serve() {
    "$1" serve --listen 127.0.0.1:0 --config "$2" "$3" 2> "$RUN/serve.log" &
    SERVE_PID=$!
    SERVE_URL=""
    for _ in $(seq 1 600); do
        SERVE_URL="$(head -n 1 "$RUN/serve.log" 2>/dev/null | sed -n 's/^listening on //p')"
        if [[ -n "$SERVE_URL" ]] && curl -sf "$SERVE_URL/readyz" >/dev/null; then return 0; fi
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$RUN/serve.log" >&2
    return 1
}
