# ClickHouse for the `clickhouse` kind's tests: one server with the HTTP
# interface on 127.0.0.1:58123, HTTPS on 127.0.0.1:58443 (a certificate for
# 127.0.0.1 from a CA of the script's own) and the native protocol on
# 127.0.0.1:59000; a user `runbook` that needs a password, and `runbook_ro`,
# a monitoring user with readonly = 1. Sourced by scripts/services.sh.
#
# ReplicatedMergeTree tables need a coordination service. Debian's
# ClickHouse (18.16) predates the built-in Keeper, so a standalone Apache
# ZooKeeper (jars from Maven Central, scripts/services/clickhouse/pom.xml)
# listens on 127.0.0.1:59181, and the server's <zookeeper> points at it with
# <macros> shard=01, replica=r1; replicas fetch parts from each other on the
# interserver port 127.0.0.1:59009.

clickhouse_dir() { printf '%s/clickhouse' "$RUNBOOK_TEST_STATE"; }

# The test user's password; fixed, the server listens on loopback only.
CLICKHOUSE_TEST_PASSWORD="runbook-test-clickhouse"
CLICKHOUSE_RO_PASSWORD="runbook-test-clickhouse-ro"
clickhouse_https_port=58443
clickhouse_zk_port=59181
# Replicas fetch parts from each other over the interserver HTTP port.
clickhouse_interserver_port=59009
clickhouse_zk_libs="${HOME}/.cache/runbook-exporter/zookeeper/libs-3.8.4"

# clickhouse_zookeeper DIR: fetch ZooKeeper's jars once, and start a
# standalone server on 127.0.0.1:$clickhouse_zk_port unless one listens.
clickhouse_zookeeper() {
  local dir="$1/zookeeper"
  if port_open "$clickhouse_zk_port"; then
    log "zookeeper already listens on 127.0.0.1:$clickhouse_zk_port"
    return 0
  fi
  apt_install openjdk-17-jre-headless maven
  if [ ! -f "$clickhouse_zk_libs/.complete" ]; then
    log "clickhouse: fetching Apache ZooKeeper jars from Maven Central"
    mkdir -p "$clickhouse_zk_libs"
    mvn -q -B -Dmaven.repo.local="${HOME}/.cache/runbook-exporter/kafka/m2" \
      -f "$here/services/clickhouse/pom.xml" \
      dependency:copy-dependencies -DoutputDirectory="$clickhouse_zk_libs"
    touch "$clickhouse_zk_libs/.complete"
  fi
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
clientPort=$clickhouse_zk_port
clientPortAddress=127.0.0.1
maxClientCnxns=100
admin.enableServer=false
4lw.commands.whitelist=ruok
CFG
  cat >"$dir/logback.xml" <<'LOG'
<configuration>
  <appender name="out" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d %-5level %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="out"/></root>
</configuration>
LOG
  nohup java -Xms32m -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlogback.configurationFile="$dir/logback.xml" -cp "$clickhouse_zk_libs/*" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" \
    >>"$RUNBOOK_TEST_STATE/logs/zookeeper.out" 2>&1 </dev/null &
  echo $! >"$dir/zookeeper.pid"
  wait_tcp "$clickhouse_zk_port" 60
}

# clickhouse_zk_configured: the running server has a <zookeeper> section
# (it may not reach ZooKeeper yet, e.g. right after ZooKeeper restarted).
clickhouse_zk_configured() {
  ! curl -sS --max-time 10 --data-binary "SELECT 1 FROM system.zookeeper WHERE path = '/' LIMIT 1" \
    http://127.0.0.1:58123/ 2>&1 | grep -q "system.zookeeper doesn't exist"
}

# clickhouse_zk_ok: the running server reaches ZooKeeper.
clickhouse_zk_ok() {
  curl -fsS --max-time 10 --data-binary "SELECT count() FROM system.zookeeper WHERE path = '/'" \
    http://127.0.0.1:58123/ >/dev/null 2>&1
}

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
  # Replication lives in a file of its own, merged into config.xml by the
  # server, so that a config.xml written without it leaves it in place.
  mkdir -p "$dir/config.d"
  cat >"$dir/config.d/replication.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <interserver_http_port>$clickhouse_interserver_port</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <zookeeper>
        <node>
            <host>127.0.0.1</host>
            <port>$clickhouse_zk_port</port>
        </node>
        <session_timeout_ms>30000</session_timeout_ms>
    </zookeeper>
    <macros>
        <shard>01</shard>
        <replica>r1</replica>
    </macros>
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
  clickhouse_zookeeper "$dir"
  # users.xml is re-read by a running server; the HTTPS port and ZooKeeper
  # need one restart of a server started by an older version of this script.
  clickhouse_write_config "$dir"
  if port_open 58123 && [ -s "$dir/clickhouse.pid" ] &&
    { ! port_open "$clickhouse_https_port" || ! port_open "$clickhouse_interserver_port" ||
      ! clickhouse_zk_configured; }; then
    log "restarting clickhouse to open its https and interserver ports and reach zookeeper"
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
  for ((i = 0; i < 100; i++)); do clickhouse_zk_ok && break; sleep 0.2; done
  clickhouse_zk_ok || { log "clickhouse does not reach zookeeper on 127.0.0.1:$clickhouse_zk_port"; return 1; }
  cat >"$RUNBOOK_TEST_STATE/env/clickhouse.env" <<ENV
export RUNBOOK_TEST_CLICKHOUSE_URL=http://127.0.0.1:58123
export RUNBOOK_TEST_CLICKHOUSE_NATIVE_ADDR=127.0.0.1:59000
export RUNBOOK_TEST_CLICKHOUSE_USER=runbook
export RUNBOOK_TEST_CLICKHOUSE_PASSWORD=$CLICKHOUSE_TEST_PASSWORD
export RUNBOOK_TEST_CLICKHOUSE_RO_USER=runbook_ro
export RUNBOOK_TEST_CLICKHOUSE_RO_PASSWORD=$CLICKHOUSE_RO_PASSWORD
export RUNBOOK_TEST_CLICKHOUSE_HTTPS_URL=https://127.0.0.1:$clickhouse_https_port
export RUNBOOK_TEST_CLICKHOUSE_CA_FILE=$dir/tls/ca.pem
export RUNBOOK_TEST_CLICKHOUSE_ZOOKEEPER_PID_FILE=$dir/zookeeper/zookeeper.pid
ENV
}

clickhouse_down() {
  stop_pidfile "$(clickhouse_dir)/clickhouse.pid" 60
  stop_pidfile "$(clickhouse_dir)/zookeeper/zookeeper.pid"
  rm -f "$RUNBOOK_TEST_STATE/env/clickhouse.env"
}
