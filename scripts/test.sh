#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the real test services
# (installing them on a fresh machine), then formatting, lints and every test.
#
# cargo-nextest runs the tests (settings in .config/nextest.toml): each test
# in its own process with a time limit, the tests that restart shared
# services one at a time, a JUnit report, and a closing summary counted by
# the runner itself, in which a crashed or hung test is a failure, never a
# missing number.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Keep the build cache outside the clone, so fresh clones build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/runbook-exporter/target}"

NEXTEST_VERSION=0.9.151
if ! cargo nextest --version 2>/dev/null | grep -q "cargo-nextest $NEXTEST_VERSION"; then
  echo "[test] installing cargo-nextest $NEXTEST_VERSION" >&2
  cargo install --locked --quiet cargo-nextest --version "$NEXTEST_VERSION"
fi

scripts/services.sh up
# shellcheck source=/dev/null
eval "$(scripts/services.sh env)"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo nextest run --locked --profile ci --lib --bins --tests --no-run
# Every test has its own limit (5 minutes); the whole run has one too, well
# inside CI's 90 minutes.
timeout --kill-after=30s 40m \
  cargo nextest run --locked --profile ci --no-tests=fail --lib --bins --tests
