#!/usr/bin/env bash
# The first five minutes: start the local services the tests use
# (scripts/services.sh up), a demo Prometheus with the shipped alert rules
# scraping the exporter, a demo Alertmanager with the shipped routing
# (alerts/alertmanager.yaml) sending to a local webhook receiver, then build
# and run the exporter in the foreground on config/demo.yaml.
#
# Idempotent: services already up are left alone; the demo's own
# Prometheus, Alertmanager and receiver are restarted fresh. Ctrl-C (or
# SIGTERM) stops the exporter and the demo's own processes; the test
# services keep running (`scripts/services.sh down` stops them).
#
#   DEMO_PORT        exporter port (9745)
#   DEMO_PROM_PORT   demo Prometheus port (59790)
#   DEMO_AM_PORT     demo Alertmanager port (59794)
#   DEMO_HOOK_PORT   webhook receiver port (59795)
#   DEMO_INTERVAL    check interval (15s)
#   DEMO_STATE       state directory (/var/tmp/runbook-exporter-demo)
#   DEMO_BINARY      a built exporter to run instead of `cargo build`
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
export DEMO_PORT="${DEMO_PORT:-9745}"
prom_port="${DEMO_PROM_PORT:-59790}"
am_port="${DEMO_AM_PORT:-59794}"
hook_port="${DEMO_HOOK_PORT:-59795}"
export DEMO_STATE="${DEMO_STATE:-/var/tmp/runbook-exporter-demo}"
export DEMO_INTERVAL="${DEMO_INTERVAL:-15s}"
mkdir -p "$DEMO_STATE/prometheus" "$DEMO_STATE/alertmanager"

log() { printf '[demo] %s\n' "$*" >&2; }

"$here/services.sh" up

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_tcp() {
  local i
  for ((i = 0; i < 300; i++)); do port_open "$1" && return 0; sleep 0.1; done
  log "nothing listens on 127.0.0.1:$1 after 30s (see $DEMO_STATE/*.log)"
  return 1
}

# stop_pidfile FILE: stop the demo process recorded in FILE (a previous run's).
stop_pidfile() {
  [ -f "$1" ] || return 0
  local pid
  pid="$(cat "$1")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$1"
}
for p in exporter prometheus alertmanager receiver; do stop_pidfile "$DEMO_STATE/$p.pid"; done
for port in "$DEMO_PORT" "$prom_port" "$am_port" "$hook_port"; do
  if port_open "$port"; then log "127.0.0.1:$port is in use by something else"; exit 1; fi
done

pids=()
cleanup() {
  trap - INT TERM EXIT
  log "stopping the demo's exporter, Prometheus, Alertmanager and receiver"
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$DEMO_STATE"/*.pid
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: run CMD in the background, logging to $DEMO_STATE/NAME.log.
start() {
  local name="$1"
  shift
  "$@" >"$DEMO_STATE/$name.log" 2>&1 &
  pids+=("$!")
  echo "$!" >"$DEMO_STATE/$name.pid"
}

# The bucket the s3 check lists (MinIO answers 409 when it already exists).
# shellcheck disable=SC1091
. "${RUNBOOK_TEST_STATE:-/var/tmp/runbook-exporter-test}/env/s3.env"
curl -s -o /dev/null --max-time 10 -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
  --user "$RUNBOOK_TEST_S3_ACCESS_KEY:$RUNBOOK_TEST_S3_SECRET_KEY" \
  "$RUNBOOK_TEST_S3_ENDPOINT/${DEMO_S3_BUCKET:-runbook-demo}"

# The jwt check's token (HS256, iss runbook-demo, aud demo, valid one day).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
[ -s "$DEMO_STATE/jwt-secret" ] || openssl rand -hex 32 >"$DEMO_STATE/jwt-secret"
chmod 600 "$DEMO_STATE/jwt-secret"
now="$(date +%s)"
header="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)"
claims="$(printf '{"iss":"runbook-demo","aud":"demo","sub":"demo","iat":%d,"exp":%d}' "$now" "$((now + 86400))" | b64url)"
sig="$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -binary -hmac "$(tr -d '\n' <"$DEMO_STATE/jwt-secret")" | b64url)"
printf '%s.%s.%s\n' "$header" "$claims" "$sig" >"$DEMO_STATE/token"

# Webhook receiver, Alertmanager with the shipped routing, Prometheus with
# the shipped rules.
hook_log="$DEMO_STATE/notifications.log"
touch "$hook_log"
start receiver python3 "$here/demo-receiver.py" "$hook_port" "$hook_log"
sed "s#https://alerts.example.invalid/hook/#http://127.0.0.1:$hook_port/hook/#g" \
  "$root/alerts/alertmanager.yaml" >"$DEMO_STATE/alertmanager.yml"
start alertmanager prometheus-alertmanager --config.file="$DEMO_STATE/alertmanager.yml" \
  --storage.path="$DEMO_STATE/alertmanager" --cluster.listen-address= \
  --web.listen-address="127.0.0.1:$am_port"
cat >"$DEMO_STATE/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $root/alerts/runbook-exporter.rules.yaml
  - $root/alerts/application.rules.yaml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:$am_port']
scrape_configs:
  - job_name: runbook-exporter
    static_configs:
      - targets: ['127.0.0.1:$DEMO_PORT']
YAML
start prometheus prometheus --config.file="$DEMO_STATE/prometheus.yml" \
  --storage.tsdb.path="$DEMO_STATE/prometheus" --storage.tsdb.retention.time=1d \
  --web.listen-address="127.0.0.1:$prom_port"
wait_tcp "$hook_port"
wait_tcp "$am_port"
wait_tcp "$prom_port"

bin="${DEMO_BINARY:-}"
if [ -z "$bin" ]; then
  log "building the exporter (cargo build --release)"
  (cd "$root" && cargo build --release --locked --bin runbook-exporter)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/runbook-exporter"
fi

cat >&2 <<MSG

  Status page:        http://127.0.0.1:$DEMO_PORT/
  Metrics:            http://127.0.0.1:$DEMO_PORT/metrics
  Prometheus alerts:  http://127.0.0.1:$prom_port/alerts
  Alertmanager:       http://127.0.0.1:$am_port/
  Notifications log:  $hook_log   (tail -f it)

  Try: scripts/services.sh down redis   ...   scripts/services.sh up redis
  Ctrl-C stops the exporter and the demo's Prometheus, Alertmanager and receiver.

MSG
start exporter "$bin" serve --config "$root/config/demo.yaml" \
  --web.listen-address "127.0.0.1:$DEMO_PORT"
# Show the exporter's log here; `wait` returns when it exits or a signal arrives.
tail -n +1 -f "$DEMO_STATE/exporter.log" --pid "${pids[-1]}" &
exporter_pid="${pids[-1]}"
pids+=("$!")
wait "$exporter_pid" || true
