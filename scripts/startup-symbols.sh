#!/usr/bin/env bash
# Writes link/startup-symbols.txt: the functions of the release binary that a
# server runs from its start through a few rounds of a tcp and an http check
# and a few scrapes, in the order callgrind first meets them. build.rs hands
# the list to the linker, which puts those functions together (see build.rs).
#
# Usage: scripts/startup-symbols.sh [--check] [path/to/release/runbook-exporter]
# --check only prints how many of the listed functions that binary defines.
# Needs valgrind and binutils' nm. Every wait is bounded.
#
# Function names carry a hash of the crate that compiled them, so rerun it
# after a dependency or toolchain update; a stale list only costs idle
# memory. Only the binary of `cargo build --release` (and so `cargo install`
# and the Dockerfile) matches the list: `cargo bench` builds the dependencies
# with the dev-dependencies' features, so its functions carry other hashes.
set -euo pipefail
check=false
[ "${1:-}" = --check ] && { check=true; shift; }
bin=$(realpath "${1:-$(dirname "${BASH_SOURCE[0]}")/../target/release/runbook-exporter}")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x "$bin" ] || { echo "no release binary at $bin (cargo build --release)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u >"$work/code"
if $check; then
  found=$(sort -u link/startup-symbols.txt | comm -12 - "$work/code" | wc -l)
  echo "$found of $(wc -l <link/startup-symbols.txt) listed functions are in $bin"
  exit 0
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# Both checks probe the exporter itself, so nothing else needs to run.
cat >"$work/config.yaml" <<EOF
defaults: {interval: 5s, timeout: 3s}
checks:
  - {name: self_tcp, kind: tcp, address: "127.0.0.1:$port"}
  - {name: self_http, kind: http, url: "http://127.0.0.1:$port/-/healthy"}
EOF

valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/callgrind.out" \
  "$bin" serve --config "$work/config.yaml" --web.listen-address "127.0.0.1:$port" \
  --log.level error >"$work/valgrind.log" 2>&1 &
pid=$!
for _ in $(seq 120); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" 2>/dev/null && break
  sleep 0.5
done
for _ in 1 2 3; do
  sleep 6
  curl -fsS --compressed -o /dev/null "http://127.0.0.1:$port/metrics"
  curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics"
done
kill -TERM "$pid"
wait "$pid" || { cat "$work/valgrind.log" >&2; exit 1; }

# Function names in order of first appearance, kept if the binary defines
# them as code.
grep -oE '^c?fn=\([0-9]+\) .+' "$work/callgrind.out" | sed -E 's/^c?fn=\([0-9]+\) //' |
  awk '!seen[$0]++' | awk 'NR==FNR {code[$0]=1; next} ($0 in code)' "$work/code" - \
  >link/startup-symbols.txt
echo "link/startup-symbols.txt: $(wc -l <link/startup-symbols.txt) functions"
