#!/usr/bin/env bash
# The project's test command (README.md; CI runs it through .ci/run):
#   1. cargo test: unit, end-to-end and differential tests;
#   2. scripts/connector-tests.sh: the Kinesis, S3, Kafka and PostgreSQL connectors against
#      real servers on loopback, which it installs (once, cached) and starts.
# WEIR_SKIP_CONNECTOR_TESTS=1 runs only the first part.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test
if [[ "${WEIR_SKIP_CONNECTOR_TESTS:-}" == "1" ]]; then
    echo "test.sh: connector tests skipped (WEIR_SKIP_CONNECTOR_TESTS=1)" >&2
    exit 0
fi
scripts/connector-tests.sh
