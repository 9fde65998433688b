#!/usr/bin/env bash
# runbook-exporter side by side with Debian's blackbox_exporter,
# postgres_exporter and redis_exporter, in one run, against the same
# loopback targets. Prints figures and ratios; never fails on a figure.
#
#   benches/compare.sh
#
# Knobs (environment): COMPARE_ROUNDS (5), COMPARE_PROBES per round and
# exporter (10000), COMPARE_CONCURRENCY (4), COMPARE_SCRAPES per round (200),
# COMPARE_CHECKS for the memory figure (1000). COMPARE_BASELINE_BIN: another
# runbook-exporter binary (an older build) to put beside ours in the /probe
# rounds, for before/after figures from one run. COMPARE_OURS_BIN and
# COMPARE_LOAD_BIN: a built runbook-exporter and benches/compare_load, to skip
# the builds.
#
# What it measures:
# 1. CPU per probe: the same client (benches/compare_load.rs: keep-alive,
#    COMPARE_CONCURRENCY connections, COMPARE_PROBES requests, the Accept
#    header of Prometheus 2.42 on each, as on every scrape below) sends
#    /probe?module=tcp_connect (and http_2xx) to each exporter in turn,
#    round after round; CPU is the user + system time of the exporter
#    process over the requests, from /proc/PID/stat. Medians over rounds.
#    In the same rounds, the floors under a probe: GET /-/healthy (the HTTP
#    exchange alone) on each exporter, and plain connects and closes from
#    the client (compare_load connect).
# 2. /metrics scrape p50/p99: ours with one postgres and one redis check,
#    against postgres_exporter and redis_exporter watching the same servers.
# 3. Connections opened on the monitored servers while each exporter is
#    scraped: PostgreSQL `pg_stat_database.sessions` of a database each
#    exporter has to itself on the shared test server; Redis
#    `total_connections_received` of a private redis-server per exporter
#    (the shared test Redis serves other tests at the same time).
# 4. Resident memory per check: ours with 1 and with COMPARE_CHECKS tcp
#    checks; the peers' whole process (see the notes printed with it).
#
# Everything listens on free 127.0.0.1 ports; every child it starts is
# stopped on exit. The test services come from `scripts/services.sh up`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds="${COMPARE_ROUNDS:-5}"
probes="${COMPARE_PROBES:-10000}"
concurrency="${COMPARE_CONCURRENCY:-4}"
scrapes="${COMPARE_SCRAPES:-200}"
checks="${COMPARE_CHECKS:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/runbook-exporter/target}"

die() { echo "compare.sh: $*" >&2; exit 1; }
scripts/services.sh up postgres redis >/dev/null || die "scripts/services.sh up postgres redis failed"
# shellcheck source=/dev/null
eval "$(scripts/services.sh env)"
for pkg in prometheus-blackbox-exporter prometheus-postgres-exporter prometheus-redis-exporter; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
      die "apt-get install $pkg failed"
  fi
done
ours_bin="${COMPARE_OURS_BIN:-}"
if [ -z "$ours_bin" ]; then
  cargo build -q --release --bin runbook-exporter || die "cargo build failed"
  ours_bin="$CARGO_TARGET_DIR/release/runbook-exporter"
fi
load_bin="${COMPARE_LOAD_BIN:-$(cargo bench -q --no-run --bench compare_load --message-format=json 2>/dev/null |
  grep -o '"executable":"[^"]*compare_load[^"]*"' | tail -n 1 | cut -d'"' -f4)}"
baseline_bin="${COMPARE_BASELINE_BIN:-}"
[ -z "$baseline_bin" ] || [ -x "$baseline_bin" ] || die "COMPARE_BASELINE_BIN=$baseline_bin is not an executable"
[ -x "$load_bin" ] || die "could not build benches/compare_load.rs"

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_up URL: poll until URL answers, for at most 20 s.
wait_up() {
  for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "compare.sh: $1 did not answer within 20 s" >&2
  return 1
}
rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo nan; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.1f", a / b; else print "n/a"}'; }
# metric_sum ADDRESS NAME: the sum of NAME's samples on ADDRESS/metrics.
metric_sum() { curl -sf "http://$1/metrics" | awk -v m="$2" '$1 ~ "^"m"(\\{|$)" {s += $2} END {print s + 0}'; }

# --- targets ------------------------------------------------------------------
"$load_bin" targets 8 3600 >"$tmp/targets" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q http_port "$tmp/targets" && break; sleep 0.1; done
tcp_ports="$(field tcp_ports <"$tmp/targets")"
http_port="$(field http_port <"$tmp/targets")"
[ -n "$http_port" ] || die "the loopback targets did not start: $(cat "$tmp/targets")"
first_tcp="${tcp_ports%%,*}"

# --- the exporters under /probe load --------------------------------------------
ours_port="$(free_port)"
cat >"$tmp/ours-probe.yaml" <<EOF
checks: []
modules:
  - name: tcp_connect
    kind: tcp
    address: 127.0.0.1:$first_tcp
    timeout: 5s
  - name: http_2xx
    kind: http
    url: http://127.0.0.1:$http_port/
    timeout: 5s
EOF
"$ours_bin" serve --config "$tmp/ours-probe.yaml" --web.listen-address "127.0.0.1:$ours_port" --log.level warn &
pids+=($!)
ours_pid=$!
bb_port="$(free_port)"
cat >"$tmp/blackbox.yaml" <<EOF
modules:
  tcp_connect:
    prober: tcp
    timeout: 5s
  http_2xx:
    prober: http
    timeout: 5s
EOF
prometheus-blackbox-exporter --config.file="$tmp/blackbox.yaml" --web.listen-address="127.0.0.1:$bb_port" --log.level=warn 2>"$tmp/blackbox.log" &
pids+=($!)
bb_pid=$!
wait_up "http://127.0.0.1:$ours_port/-/ready" || die "runbook-exporter did not start"
if [ -n "$baseline_bin" ]; then
  base_port="$(free_port)"
  "$baseline_bin" serve --config "$tmp/ours-probe.yaml" --web.listen-address "127.0.0.1:$base_port" --log.level warn &
  pids+=($!)
  base_pid=$!
  wait_up "http://127.0.0.1:$base_port/-/ready" || die "$baseline_bin did not start"
fi
wait_up "http://127.0.0.1:$bb_port/metrics" || die "blackbox_exporter did not start: $(cat "$tmp/blackbox.log")"

echo "runbook-exporter $(git describe --always --dirty 2>/dev/null) ($ours_bin) vs Debian's exporters, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
echo "blackbox_exporter $(prometheus-blackbox-exporter --version 2>&1 | awk 'NR == 1 {print $3}'), postgres_exporter $(prometheus-postgres-exporter --version 2>&1 | awk 'NR == 1 {print $3}'), redis_exporter $(dpkg-query -W -f='${Version}' prometheus-redis-exporter)"
echo
echo "1. CPU per /probe ($rounds rounds x $probes probes, $concurrency keep-alive connections, same client)"
# probe_round NAME PORT PID MODULE TARGET: one round, appends "µs/probe failed" to $tmp/NAME-MODULE.
probe_round() {
  local out
  out="$(COMPARE_PORTS="$tcp_ports" "$load_bin" load "http://127.0.0.1:$2/probe?module=$4&target=$5" "$probes" "$concurrency" "$3")"
  awk -v o="$(field ok <<<"$out")" -v c="$(field cpu_s <<<"$out")" -v f="$(field failed <<<"$out")" \
    'BEGIN {if (o > 0) printf "%.1f %d\n", c * 1e6 / o, f; else printf "nan %d\n", f}' >>"$tmp/$1-$4"
}
# floor_round NAME PORT PID: one round of GET /-/healthy, the HTTP exchange
# with no probe, appended to $tmp/NAME-healthy (µs of NAME's CPU a request).
floor_round() {
  local out
  out="$("$load_bin" load "http://127.0.0.1:$2/-/healthy" "$probes" "$concurrency" "$3")"
  awk -v o="$(field ok <<<"$out")" -v c="$(field cpu_s <<<"$out")" \
    'BEGIN {if (o > 0) printf "%.1f\n", c * 1e6 / o; else print "nan"}' >>"$tmp/$1-healthy"
}
# connect_round: one round of plain blocking connects and closes to the tcp
# listeners, appended to $tmp/connect (µs of the client's own CPU each).
connect_round() {
  local out
  out="$(COMPARE_PORTS="$tcp_ports" "$load_bin" connect "$probes")"
  awk -v o="$(field ok <<<"$out")" -v c="$(field cpu_s <<<"$out")" \
    'BEGIN {if (o > 0) printf "%.1f\n", c * 1e6 / o; else print "nan"}' >>"$tmp/connect"
}
for ((r = 0; r < rounds; r++)); do
  for module in tcp_connect http_2xx; do
    if [ "$module" = tcp_connect ]; then target='127.0.0.1:{port}'; else target="http://127.0.0.1:$http_port/"; fi
    probe_round ours "$ours_port" "$ours_pid" "$module" "$target"
    probe_round blackbox "$bb_port" "$bb_pid" "$module" "$target"
    [ -z "$baseline_bin" ] || probe_round baseline "$base_port" "$base_pid" "$module" "$target"
  done
  floor_round ours "$ours_port" "$ours_pid"
  floor_round blackbox "$bb_port" "$bb_pid"
  connect_round
done
printf '   %-12s %24s %24s %8s %s\n' module "runbook-exporter µs/probe" "blackbox_exporter µs/probe" ratio "failed probes (ours, blackbox)"
for module in tcp_connect http_2xx; do
  o="$(cut -d' ' -f1 "$tmp/ours-$module" | median)"
  b="$(cut -d' ' -f1 "$tmp/blackbox-$module" | median)"
  fo="$(awk '{s += $2} END {print s + 0}' "$tmp/ours-$module")"
  fb="$(awk '{s += $2} END {print s + 0}' "$tmp/blackbox-$module")"
  printf '   %-12s %24s %24s %7sx %s, %s\n' "$module" "$o" "$b" "$(ratio "$b" "$o")" "$fo" "$fb"
  echo "     rounds: ours $(cut -d' ' -f1 "$tmp/ours-$module" | tr '\n' ' ')| blackbox $(cut -d' ' -f1 "$tmp/blackbox-$module" | tr '\n' ' ')"
  if [ -n "$baseline_bin" ]; then
    a="$(cut -d' ' -f1 "$tmp/baseline-$module" | median)"
    echo "     baseline $baseline_bin: $a µs/probe (blackbox/baseline $(ratio "$b" "$a")x; baseline/ours $(ratio "$a" "$o")x);" \
      "rounds: $(cut -d' ' -f1 "$tmp/baseline-$module" | tr '\n' ' ')"
  fi
done
oh="$(median <"$tmp/ours-healthy")"
bh="$(median <"$tmp/blackbox-healthy")"
cf="$(median <"$tmp/connect")"
bt="$(cut -d' ' -f1 "$tmp/blackbox-tcp_connect" | median)"
echo "   floors, same rounds: GET /-/healthy (the HTTP exchange, no probe) ours $oh µs, blackbox $bh µs;" \
  "a plain loopback connect and close $cf µs (the client's own CPU)"
awk -v b="$bt" -v h="$oh" -v c="$cf" 'BEGIN {printf "   10x blackbox'"'"'s tcp probe is %.1f µs; our HTTP exchange and a connect alone take %.1f µs\n", b / 10, h + c}'
# The loopback handshake and close cost both exporters the same; what each
# spends beyond it is the work an exporter can cut.
ot="$(cut -d' ' -f1 "$tmp/ours-tcp_connect" | median)"
awk -v b="$bt" -v o="$ot" -v c="$cf" 'BEGIN {if (o > c && b > c) printf "   beyond one connect and close: ours %.1f µs, blackbox %.1f µs (%.1fx)\n", o - c, b - c, (b - c) / (o - c)}'
[ -z "$baseline_bin" ] || { kill "$base_pid" 2>/dev/null; wait "$base_pid" 2>/dev/null; }
ours_probe_rss="$(rss_mb "$ours_pid")"
bb_rss="$(rss_mb "$bb_pid")"
kill "$ours_pid" "$bb_pid" 2>/dev/null
wait "$ours_pid" "$bb_pid" 2>/dev/null

# --- /metrics against PostgreSQL and Redis --------------------------------------
su_dsn="$RUNBOOK_TEST_PG_SUPERUSER_DSN"
sql() { psql -X -q -t -A "$su_dsn" -c "$1"; }
for db in runbook_compare_ours runbook_compare_peer; do
  sql "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 || sql "CREATE DATABASE $db" >/dev/null
  psql -X -q "${su_dsn/\/postgres\?//$db?}" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null 2>&1
done
dsn_of() { echo "${RUNBOOK_TEST_PG_PRIMARY_DSN/\/postgres\?//$1?}"; }
# sessions DB: sessions established on DB so far.
sessions() { sql "SELECT pg_stat_clear_snapshot(); SELECT sessions FROM pg_stat_database WHERE datname = '$1'" | tail -n 1; }
redis_ours_port="$(free_port)"
redis_peer_port="$(free_port)"
for p in "$redis_ours_port" "$redis_peer_port"; do
  redis-server --bind 127.0.0.1 --port "$p" --save '' --appendonly no --daemonize no >"$tmp/redis-$p.log" 2>&1 &
  pids+=($!)
done
for p in "$redis_ours_port" "$redis_peer_port"; do
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
# received PORT: connections the redis-server on PORT accepted (this reading's
# own included; a delta of two readings is one too high).
received() { redis-cli -p "$1" info stats | tr -d '\r' | awk -F: '$1 == "total_connections_received" {print $2}'; }

ours_port="$(free_port)"
cat >"$tmp/ours-db.yaml" <<EOF
checks:
  - name: postgres
    kind: postgres
    dsn: '$(dsn_of runbook_compare_ours)'
    interval: 1s
    timeout: 900ms
  - name: redis
    kind: redis
    url: redis://127.0.0.1:$redis_ours_port
    interval: 1s
    timeout: 900ms
EOF
"$ours_bin" serve --config "$tmp/ours-db.yaml" --web.listen-address "127.0.0.1:$ours_port" --log.level warn &
pids+=($!)
ours_pid=$!
pg_port="$(free_port)"
DATA_SOURCE_NAME="$(dsn_of runbook_compare_peer)" prometheus-postgres-exporter --web.listen-address="127.0.0.1:$pg_port" --log.level=warn 2>"$tmp/pg.log" &
pids+=($!)
pg_pid=$!
rx_port="$(free_port)"
prometheus-redis-exporter --redis.addr="redis://127.0.0.1:$redis_peer_port" --web.listen-address="127.0.0.1:$rx_port" 2>"$tmp/rx.log" &
pids+=($!)
rx_pid=$!
wait_up "http://127.0.0.1:$ours_port/-/ready"
wait_up "http://127.0.0.1:$pg_port/metrics"
wait_up "http://127.0.0.1:$rx_port/metrics"
# Until ours has run both checks once.
for _ in $(seq 100); do
  [ "$(metric_sum "127.0.0.1:$ours_port" runbook_check_runs_total)" -ge 2 ] 2>/dev/null && break
  sleep 0.1
done

echo
echo "2. /metrics scrape latency ($rounds rounds x $scrapes scrapes, one connection; ours has one postgres and one redis check, run every 1 s)"
# scrape_round NAME PORT: appends "p50 p99" to $tmp/scrape-NAME.
scrape_round() {
  local out
  out="$("$load_bin" load "http://127.0.0.1:$2/metrics" "$scrapes" 1)"
  echo "$(field p50_ms <<<"$out") $(field p99_ms <<<"$out") $(field failed <<<"$out")" >>"$tmp/scrape-$1"
}
pg_s0="$(sessions runbook_compare_peer)"
ours_s0="$(sessions runbook_compare_ours)"
rx_r0="$(received "$redis_peer_port")"
ours_r0="$(received "$redis_ours_port")"
runs0="$(metric_sum "127.0.0.1:$ours_port" runbook_check_runs_total)"
t0="$(date +%s.%N)"
for ((r = 0; r < rounds; r++)); do
  scrape_round ours "$ours_port"
  scrape_round postgres_exporter "$pg_port"
  scrape_round redis_exporter "$rx_port"
done
t1="$(date +%s.%N)"
runs1="$(metric_sum "127.0.0.1:$ours_port" runbook_check_runs_total)"
pg_s1="$(sessions runbook_compare_peer)"
ours_s1="$(sessions runbook_compare_ours)"
rx_r1="$(received "$redis_peer_port")"
ours_r1="$(received "$redis_ours_port")"
printf '   %-18s %9s %9s %s\n' exporter "p50 ms" "p99 ms" "failed"
for e in ours postgres_exporter redis_exporter; do
  printf '   %-18s %9s %9s %s\n' "$e" "$(cut -d' ' -f1 "$tmp/scrape-$e" | median)" "$(cut -d' ' -f2 "$tmp/scrape-$e" | median)" \
    "$(awk '{s += $3} END {print s + 0}' "$tmp/scrape-$e")"
done
op50="$(cut -d' ' -f1 "$tmp/scrape-ours" | median)"
op99="$(cut -d' ' -f2 "$tmp/scrape-ours" | median)"
echo "   ratio p50/p99: postgres_exporter $(ratio "$(cut -d' ' -f1 "$tmp/scrape-postgres_exporter" | median)" "$op50")x/$(ratio "$(cut -d' ' -f2 "$tmp/scrape-postgres_exporter" | median)" "$op99")x," \
  "redis_exporter $(ratio "$(cut -d' ' -f1 "$tmp/scrape-redis_exporter" | median)" "$op50")x/$(ratio "$(cut -d' ' -f2 "$tmp/scrape-redis_exporter" | median)" "$op99")x slower than ours"
echo "   (ours answers from the results of its last runs; the peers query the server on every scrape)"

total=$((rounds * scrapes))
secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", b - a}')"
echo
echo "3. Connections opened on the monitored servers during those ${secs} s ($total scrapes of each exporter; ours ran its checks $(awk -v a="$runs0" -v b="$runs1" 'BEGIN {print b - a}') times meanwhile)"
printf '   %-12s %18s %18s\n' server runbook-exporter peer
printf '   %-12s %18s %18s\n' PostgreSQL "$((ours_s1 - ours_s0))" "$((pg_s1 - pg_s0))"
printf '   %-12s %18s %18s\n' Redis "$((ours_r1 - ours_r0 - 1))" "$((rx_r1 - rx_r0 - 1))"
echo "   (counted after each exporter's first scrape, so a long-lived session opened at start is not in it)"
ours_db_rss="$(rss_mb "$ours_pid")"
pg_rss="$(rss_mb "$pg_pid")"
rx_rss="$(rss_mb "$rx_pid")"
kill "$ours_pid" "$pg_pid" "$rx_pid" 2>/dev/null
wait "$ours_pid" "$pg_pid" "$rx_pid" 2>/dev/null

# --- resident memory per check ----------------------------------------------------
# rss_with N: RSS (MB) of ours with N tcp checks, after each has run once.
rss_with() {
  local port pid
  port="$(free_port)"
  {
    echo "checks:"
    for ((i = 0; i < $1; i++)); do
      printf '  - {name: tcp_%d, kind: tcp, address: "127.0.0.1:%s", interval: 15s, timeout: 2s}\n' "$i" "$first_tcp"
    done
  } >"$tmp/ours-$1.yaml"
  "$ours_bin" serve --config "$tmp/ours-$1.yaml" --web.listen-address "127.0.0.1:$port" --log.level warn &
  pid=$!
  pids+=($pid)
  wait_up "http://127.0.0.1:$port/-/ready" >/dev/null
  for _ in $(seq 300); do
    [ "$(metric_sum "127.0.0.1:$port" runbook_check_runs_total)" -ge "$1" ] 2>/dev/null && break
    sleep 0.1
  done
  rss_mb "$pid"
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
# Redirected, not in $(...), so that the children are in this shell's list.
rss_with 1 >"$tmp/rss-one"
rss_with "$checks" >"$tmp/rss-many"
one="$(cat "$tmp/rss-one")"
many="$(cat "$tmp/rss-many")"
per="$(awk -v a="$one" -v b="$many" -v n="$checks" 'BEGIN {printf "%.1f", (b - a) * 1024 / (n - 1)}')"
echo
echo "4. Resident memory"
echo "   runbook-exporter: $one MB with 1 tcp check, $many MB with $checks: $per KB per tcp check"
echo "     (and $ours_probe_rss MB after serving the /probe rounds; $ours_db_rss MB with the postgres and redis checks)"
echo "   blackbox_exporter: $bb_rss MB after the /probe rounds. It keeps nothing per target: each target is a"
echo "     Prometheus scrape job instead, whose memory lives in Prometheus and is not measured here."
echo "   postgres_exporter: $pg_rss MB, redis_exporter: $rx_rss MB: one process per monitored server in their usual"
echo "     deployment, so that is their cost per server; a runbook-exporter check of either adds the per-check figure above"
echo "     to one shared process (a postgres or redis check holds a little more than a tcp check: one open session)."
