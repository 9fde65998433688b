# ClickHouse for the `clickhouse` kind's tests: one server with the HTTP
# interface on 127.0.0.1:58123, HTTPS on 127.0.0.1:58443 (a certificate for
# 127.0.0.1 from a CA of the script's own) and the native protocol on
# 127.0.0.1:59000; a user `runbook` that needs a password, and `runbook_ro`,
# a monitoring user with readonly = 1. Sourced by scripts/services.sh.

clickhouse_dir() { printf '%s/clickhouse' "$RUNBOOK_TEST_STATE"; }

# The test user's password; fixed, the server listens on loopback only.
CLICKHOUSE_TEST_PASSWORD="runbook-test-clickhouse"
CLICKHOUSE_RO_PASSWORD="runbook-test-clickhouse-ro"
clickhouse_https_port=58443

# clickhouse_certs DIR: a CA and a server certificate for 127.0.0.1 signed
# by it (a leaf: CA:FALSE, which rustls requires), made once.
clickhouse_certs() {
  local tls="$1/tls"
  [ -s "$tls/server.pem" ] && return 0
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=runbook-test-clickhouse-ca" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext.cnf"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/ext.cnf" -out "$tls/server.pem" 2>/dev/null
}

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
    <https_port>$clickhouse_https_port</https_port>
    <openSSL>
        <server>
            <certificateFile>$dir/tls/server.pem</certificateFile>
            <privateKeyFile>$dir/tls/server.key</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
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
        <readonly>
            <max_memory_usage>1000000000</max_memory_usage>
            <max_execution_time>30</max_execution_time>
            <readonly>1</readonly>
        </readonly>
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
        <runbook_ro>
            <password>$CLICKHOUSE_RO_PASSWORD</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>readonly</profile>
            <quota>default</quota>
        </runbook_ro>
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
  clickhouse_certs "$dir"
  # users.xml is re-read by a running server; the HTTPS port needs a
  # restart of a server started by an older version of this script.
  clickhouse_write_config "$dir"
  if port_open 58123 && ! port_open "$clickhouse_https_port" && [ -s "$dir/clickhouse.pid" ]; then
    log "restarting clickhouse to open its https port"
    kill "$(cat "$dir/clickhouse.pid")" 2>/dev/null || true
    local j
    for ((j = 0; j < 100; j++)); do port_open 58123 || break; sleep 0.1; done
  fi
  if port_open 58123; then
    log "clickhouse already listens on 127.0.0.1:58123"
  else
    # --pid-file writes nothing with this version: keep the PID ourselves.
    /usr/sbin/clickhouse-server --config-file="$dir/config.xml" \
      >>"$RUNBOOK_TEST_STATE/logs/clickhouse.out" 2>&1 </dev/null &
    echo $! >"$dir/clickhouse.pid"
    wait_tcp 58123 60
    wait_tcp "$clickhouse_https_port" 30
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
export RUNBOOK_TEST_CLICKHOUSE_RO_USER=runbook_ro
export RUNBOOK_TEST_CLICKHOUSE_RO_PASSWORD=$CLICKHOUSE_RO_PASSWORD
export RUNBOOK_TEST_CLICKHOUSE_HTTPS_URL=https://127.0.0.1:$clickhouse_https_port
export RUNBOOK_TEST_CLICKHOUSE_CA_FILE=$dir/tls/ca.pem
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
