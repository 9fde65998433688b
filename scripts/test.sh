#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the real test services
# (installing them on a fresh machine) while formatting, lints and the build
# run, then every test.
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

# The services start (on a fresh machine: install, download, build) while
# the tools and the tests build: the two take about as long as each other,
# and much of the first waits on the network. Its log lines are marked
# [services]; a failure of either fails the run.
scripts/services.sh up &
services=$!

NEXTEST_VERSION=0.9.151
if ! cargo nextest --version 2>/dev/null | grep -q "cargo-nextest $NEXTEST_VERSION"; then
  echo "[test] installing cargo-nextest $NEXTEST_VERSION" >&2
  cargo install --locked --quiet cargo-nextest --version "$NEXTEST_VERSION"
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo nextest run --locked --profile ci --lib --bins --tests --no-run

echo "[test] waiting for the services" >&2
wait "$services"
# shellcheck source=/dev/null
eval "$(scripts/services.sh env)"

# Every test has its own limit (5 minutes); the whole run has one too, well
# inside CI's 90 minutes.
timeout --kill-after=30s 40m \
  cargo nextest run --locked --profile ci --no-tests=fail --lib --bins --tests
