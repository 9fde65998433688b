# ClickHouse for the `clickhouse` kind's tests: one server with the HTTP
# interface on 127.0.0.1:58123 and the native protocol on 127.0.0.1:59000,
# and a user `runbook` that needs a password. Sourced by scripts/services.sh.

clickhouse_dir() { printf '%s/clickhouse' "$RUNBOOK_TEST_STATE"; }

# The test user's password; fixed, the server listens on loopback only.
CLICKHOUSE_TEST_PASSWORD="runbook-test-clickhouse"

clickhouse_write_config() {
  local dir="$1"
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
  cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$RUNBOOK_TEST_STATE/logs/clickhouse.log</log>
        <errorlog>$RUNBOOK_TEST_STATE/logs/clickhouse.err.log</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>58123</http_port>
    <tcp_port>59000</tcp_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
</yandex>
XML
  cat >"$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>1000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <runbook>
            <password>$CLICKHOUSE_TEST_PASSWORD</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </runbook>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML
}

clickhouse_up() {
  local dir
  dir="$(clickhouse_dir)"
  [ -x /usr/sbin/clickhouse-server ] || apt_install clickhouse-server
  command -v curl >/dev/null || apt_install curl
  if port_open 58123; then
    log "clickhouse already listens on 127.0.0.1:58123"
  else
    clickhouse_write_config "$dir"
    # --pid-file writes nothing with this version: keep the PID ourselves.
    /usr/sbin/clickhouse-server --config-file="$dir/config.xml" \
      >>"$RUNBOOK_TEST_STATE/logs/clickhouse.out" 2>&1 </dev/null &
    echo $! >"$dir/clickhouse.pid"
    wait_tcp 58123 60
  fi
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(curl -fsS http://127.0.0.1:58123/ping 2>/dev/null)" = "Ok." ] && break
    sleep 0.1
  done
  cat >"$RUNBOOK_TEST_STATE/env/clickhouse.env" <<ENV
export RUNBOOK_TEST_CLICKHOUSE_URL=http://127.0.0.1:58123
export RUNBOOK_TEST_CLICKHOUSE_NATIVE_ADDR=127.0.0.1:59000
export RUNBOOK_TEST_CLICKHOUSE_USER=runbook
export RUNBOOK_TEST_CLICKHOUSE_PASSWORD=$CLICKHOUSE_TEST_PASSWORD
ENV
}

clickhouse_down() {
  local pidfile
  pidfile="$(clickhouse_dir)/clickhouse.pid"
  if [ -s "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  rm -f "$RUNBOOK_TEST_STATE/env/clickhouse.env"
}
