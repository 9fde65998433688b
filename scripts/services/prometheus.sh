# Prometheus (127.0.0.1:59090, lifecycle API on) and Alertmanager
# (127.0.0.1:59094, no gossip) from Debian's packages, plus promtool and
# amtool. The mixin tests start their own Prometheus
# and Alertmanager from the same binaries on free ports; the shared pair is
# for poking at by hand.

prometheus_dir="$RUNBOOK_TEST_STATE/prometheus"
prometheus_port=59090
alertmanager_port=59094

prometheus_up() {
  # prometheus-alertmanager ships amtool, which tests/mixin.rs needs.
  apt_install prometheus prometheus-alertmanager
  command -v amtool >/dev/null || { log "amtool missing after installing prometheus-alertmanager"; return 1; }
  mkdir -p "$prometheus_dir/data" "$prometheus_dir/am-data"
  if ! port_open "$prometheus_port"; then
    cat >"$prometheus_dir/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  evaluation_interval: 5s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:$alertmanager_port']
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:$prometheus_port']
EOF
    prometheus --config.file="$prometheus_dir/prometheus.yml" \
      --storage.tsdb.path="$prometheus_dir/data" \
      --web.listen-address="127.0.0.1:$prometheus_port" --web.enable-lifecycle \
      >"$RUNBOOK_TEST_STATE/logs/prometheus.log" 2>&1 &
    echo $! >"$prometheus_dir/prometheus.pid"
  fi
  if ! port_open "$alertmanager_port"; then
    cat >"$prometheus_dir/alertmanager.yml" <<EOF
route:
  receiver: 'null'
receivers:
  - name: 'null'
EOF
    prometheus-alertmanager --config.file="$prometheus_dir/alertmanager.yml" \
      --storage.path="$prometheus_dir/am-data" \
      --web.listen-address="127.0.0.1:$alertmanager_port" --cluster.listen-address= \
      >"$RUNBOOK_TEST_STATE/logs/alertmanager.log" 2>&1 &
    echo $! >"$prometheus_dir/alertmanager.pid"
  fi
  wait_tcp "$prometheus_port" 30
  wait_tcp "$alertmanager_port" 30
  {
    echo "export RUNBOOK_TEST_PROMETHEUS_URL=http://127.0.0.1:$prometheus_port"
    echo "export RUNBOOK_TEST_ALERTMANAGER_URL=http://127.0.0.1:$alertmanager_port"
    echo "export RUNBOOK_TEST_PROMETHEUS=$(command -v prometheus)"
    echo "export RUNBOOK_TEST_ALERTMANAGER=$(command -v prometheus-alertmanager)"
    echo "export RUNBOOK_TEST_PROMTOOL=$(command -v promtool)"
    echo "export RUNBOOK_TEST_AMTOOL=$(command -v amtool)"
  } >"$RUNBOOK_TEST_STATE/env/prometheus.env"
}

prometheus_down() {
  stop_pidfile "$prometheus_dir/prometheus.pid"
  stop_pidfile "$prometheus_dir/alertmanager.pid"
}
