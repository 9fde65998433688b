#!/usr/bin/env bash
# Load each exporter puts on PostgreSQL: sessions opened per 100 runs (or
# scrapes) and statements per run, for runbook-exporter's `postgres` check
# and Debian's prometheus-postgres-exporter, against the same primary
# (scripts/services.sh up postgres). Prints figures; asserts nothing.
#
#   benches/postgres-load.sh [RUNS]      (default 100)
#
# How it counts: each exporter monitors its own otherwise idle database
# (runbook_bench, with pg_stat_statements installed), alone, one after the
# other. The figures are deltas of that database's pg_stat_database row:
# `sessions` (PostgreSQL 14+: sessions established) and
# `xact_commit + xact_rollback` (every statement outside an explicit
# transaction is one transaction, so this counts the statements run). The
# script's own readings connect to the `postgres` database and are not
# counted. runbook-exporter runs its check every 500 ms and the figure is per
# completed run (from runbook_check_runs_total); postgres_exporter is scraped
# RUNS times in a row, which is when it queries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs="${1:-100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/runbook-exporter/target}"
scripts/services.sh up postgres >/dev/null
# shellcheck source=/dev/null
eval "$(scripts/services.sh env)"
if ! command -v prometheus-postgres-exporter >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-postgres-exporter >/dev/null
fi
cargo build -q --bin runbook-exporter
bin="$CARGO_TARGET_DIR/debug/runbook-exporter"

su_dsn="$RUNBOOK_TEST_PG_SUPERUSER_DSN"
bench_dsn="${RUNBOOK_TEST_PG_PRIMARY_DSN/\/postgres\?//runbook_bench?}"
sql() { psql -X -q -t -A "$su_dsn" -c "$1"; }
sql "SELECT 1 FROM pg_database WHERE datname = 'runbook_bench'" | grep -q 1 ||
  sql "CREATE DATABASE runbook_bench"
psql -X -q "${su_dsn/\/postgres\?//runbook_bench?}" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" 2>/dev/null

# counters: "sessions transactions" of runbook_bench, after stats settle.
counters() {
  sleep 1.5
  sql "SELECT pg_stat_clear_snapshot(); SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'runbook_bench'" |
    tail -n 1 | tr '|' ' '
}
# metric ADDRESS NAME: the first sample of NAME (reads the whole body, so
# that curl never sees a closed pipe).
metric() { curl -sf "http://$1/metrics" | awk -v m="$2" '!found && $1 ~ "^"m"(\\{|$)" {print $2; found = 1}'; }

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

report() { # name runs sessions0 xacts0 sessions1 xacts1
  awk -v n="$1" -v r="$2" -v s0="$3" -v x0="$4" -v s1="$5" -v x1="$6" 'BEGIN {
    printf "%-30s %6d %22.1f %18.1f\n", n, r, (s1 - s0) * 100 / r, (x1 - x0) / r }'
}

printf '%-30s %6s %22s %18s\n' exporter runs "sessions per 100 runs" "statements per run"

# --- runbook-exporter ---------------------------------------------------------
cat >"$tmp/config.yaml" <<EOF
checks:
  - name: bench
    kind: postgres
    dsn: '$bench_dsn'
    interval: 500ms
    timeout: 400ms
EOF
read -r s0 x0 < <(counters)
"$bin" serve --config "$tmp/config.yaml" --web.listen-address 127.0.0.1:59745 --log.level warn &
pids+=($!)
done_runs=0
for ((i = 0; i < runs * 4 + 100; i++)); do
  done_runs="$(metric 127.0.0.1:59745 runbook_check_runs_total || true)"
  [ "${done_runs%.*}" -ge "$runs" ] 2>/dev/null && break
  sleep 0.25
done
kill "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true
read -r s1 x1 < <(counters)
report "runbook-exporter (postgres)" "${done_runs%.*}" "$s0" "$x0" "$s1" "$x1"

# --- prometheus-postgres-exporter ----------------------------------------------
read -r s0 x0 < <(counters)
DATA_SOURCE_NAME="$bench_dsn" prometheus-postgres-exporter \
  --web.listen-address=127.0.0.1:59187 >"$tmp/pge.log" 2>&1 &
pids+=($!)
for ((i = 0; i < 100; i++)); do curl -sf -o /dev/null http://127.0.0.1:59187/ && break; sleep 0.1; done
for ((i = 0; i < runs; i++)); do curl -sf -o /dev/null http://127.0.0.1:59187/metrics; done
kill "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true
read -r s1 x1 < <(counters)
report "prometheus-postgres-exporter" "$runs" "$s0" "$x0" "$s1" "$x1"
echo "(postgres_exporter: one run = one scrape of /metrics; $(prometheus-postgres-exporter --version 2>&1 | head -n 1))"
