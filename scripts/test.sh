#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the real test services
# (installing them on a fresh machine), then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Keep the build cache outside the clone, so fresh clones build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/runbook-exporter/target}"

scripts/services.sh up
# shellcheck source=/dev/null
eval "$(scripts/services.sh env)"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast
