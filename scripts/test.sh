#!/usr/bin/env bash
# The project's test command (README.md; CI runs it through .ci/run):
#   1. cargo fmt --check and cargo clippy --all-targets -- -D warnings;
#   2. cargo test (with the `failpoints` feature, so the crash tests can abort the job at each
#      step of a checkpoint): unit, end-to-end, differential and fault-tolerance tests;
#   3. the examples/custom_functions binary (a weir with a UDF) on its job file;
#   4. scripts/browser-test.sh: the live page of `weir serve` in headless Chromium (Debian's,
#      installed when missing);
#   5. scripts/crash-test.sh, short: a file job killed with kill -9 at random moments and
#      checked against DuckDB;
#   6. scripts/connector-tests.sh: the Kinesis, S3, Kafka and PostgreSQL connectors against
#      real servers on loopback, which it installs (once, cached) and starts;
#   7. the crash test again, short, with a Kafka source (tansu) and with an S3 sink (moto).
# WEIR_SKIP_CONNECTOR_TESTS=1 skips the last two parts. Each stage prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
stage() {
    local name="$1"
    shift
    local t0=$SECONDS
    "$@"
    echo "test.sh: $name took $(( SECONDS - t0 )) s" >&2
}
stage "cargo fmt --check" cargo fmt --check
stage "cargo clippy" cargo clippy --all-targets --features failpoints -- -D warnings
stage "cargo test" cargo test --features failpoints
# A weir binary with a user-defined function (weir::cli::main_with), run on its job file.
custom_functions_example() {
    local out="${CARGO_TARGET_DIR:-target}/custom_functions.out"
    mkdir -p "$(dirname "$out")"
    cargo run -q --features failpoints --example custom_functions -- \
        run --quiet examples/custom_functions.sql > "$out"
    grep -q "press-01" "$out"
}
stage "custom function example" custom_functions_example
stage "browser test" scripts/browser-test.sh target/debug/weir
stage "crash test (short)" scripts/crash-test.sh --kills 4 --rows 6000000 --files 4 --require-progress --bin target/debug/weir
if [[ "${WEIR_SKIP_CONNECTOR_TESTS:-}" == "1" ]]; then
    echo "test.sh: connector tests skipped (WEIR_SKIP_CONNECTOR_TESTS=1)" >&2
    exit 0
fi
# The same features as above, so nothing is compiled again.
stage "connector tests" env WEIR_CARGO_FLAGS="--features failpoints ${WEIR_CARGO_FLAGS:-}" scripts/connector-tests.sh
stage "crash test, kafka source (short)" scripts/crash-test.sh --kills 3 --rows 300000 --source kafka --bin target/debug/weir
stage "crash test, s3 sink (short)" scripts/crash-test.sh --kills 3 --rows 6000000 --sink s3 --bin target/debug/weir
