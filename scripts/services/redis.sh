# Redis for the `redis` kind's tests: a primary on 127.0.0.1:56379 (and
# TLS on 127.0.0.1:56381, with a test CA) and a replica of it on
# 127.0.0.1:56380, both requiring a password (the default user's), no
# persistence. Sourced by scripts/services.sh.

redis_dir() { printf '%s/redis' "$RUNBOOK_TEST_STATE"; }

# The password the tests use; fixed, these servers listen on loopback only.
REDIS_TEST_PASSWORD="runbook-test-redis"

# redis_start NAME PORT [EXTRA ARGS...]: start one server unless PORT is open.
redis_start() {
  local name="$1" port="$2" dir
  shift 2
  dir="$(redis_dir)/$name"
  if port_open "$port"; then
    log "redis $name already listens on 127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --requirepass "$REDIS_TEST_PASSWORD" --masterauth "$REDIS_TEST_PASSWORD" \
    --daemonize yes --pidfile "$dir/redis.pid" \
    --logfile "$RUNBOOK_TEST_STATE/logs/redis-$name.log" --dir "$dir" "$@"
  wait_tcp "$port" 30
}

# redis_tls_files DIR: a test CA and a server certificate for localhost and
# 127.0.0.1 signed by it, made once.
redis_tls_files() {
  local dir="$1"
  [ -s "$dir/server.crt" ] && return 0
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=runbook-test-ca \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/server.ext"
  openssl x509 -req -days 3650 -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
}

redis_up() {
  command -v redis-server >/dev/null || apt_install redis-server
  # Debian's exporter is the benchmark peer (benches/redis.rs).
  command -v prometheus-redis-exporter >/dev/null || apt_install prometheus-redis-exporter
  local tls
  tls="$(redis_dir)/tls"
  redis_tls_files "$tls"
  redis_start primary 56379 --tls-port 56381 --tls-cert-file "$tls/server.crt" \
    --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.crt" --tls-auth-clients no
  wait_tcp 56381 30
  redis_start replica 56380 --replicaof 127.0.0.1 56379
  # Wait until the replica has synced, so replication metrics exist.
  local i
  for ((i = 0; i < 100; i++)); do
    redis-cli -p 56380 --no-auth-warning -a "$REDIS_TEST_PASSWORD" INFO replication 2>/dev/null |
      grep -q '^master_link_status:up' && break
    sleep 0.1
  done
  cat >"$RUNBOOK_TEST_STATE/env/redis.env" <<ENV
export RUNBOOK_TEST_REDIS_URL=redis://127.0.0.1:56379
export RUNBOOK_TEST_REDIS_REPLICA_URL=redis://127.0.0.1:56380
export RUNBOOK_TEST_REDIS_TLS_URL=rediss://127.0.0.1:56381
export RUNBOOK_TEST_REDIS_CA_FILE=$tls/ca.crt
export RUNBOOK_TEST_REDIS_PASSWORD=$REDIS_TEST_PASSWORD
ENV
}

redis_down() {
  local name
  for name in replica primary; do
    stop_pidfile "$(redis_dir)/$name/redis.pid"
  done
  rm -f "$RUNBOOK_TEST_STATE/env/redis.env"
}
