# PostgreSQL 15 on loopback for the `postgres` kind: a primary on 55432 and a
# streaming standby on 55433 (physical slot `runbook_standby`), a
# non-superuser monitoring role granted pg_monitor, and pg_stat_statements.
# Sourced by scripts/services.sh, which provides apt_install, wait_tcp,
# port_open, log and $RUNBOOK_TEST_STATE.
#
# Exports for the tests (in $RUNBOOK_TEST_STATE/env/postgres.env):
#   RUNBOOK_TEST_PG_PRIMARY_DSN    monitoring role on the primary
#   RUNBOOK_TEST_PG_STANDBY_DSN    monitoring role on the standby
#   RUNBOOK_TEST_PG_SUPERUSER_DSN  superuser on the primary (to provoke locks)
#   RUNBOOK_TEST_PG_STANDBY_SUPERUSER_DSN  superuser on the standby (replay pause)
#   RUNBOOK_TEST_PG_PRIMARY_CLUSTER  "15 NAME", for pg_ctlcluster in tests
#   RUNBOOK_TEST_PG_CERT_USER      a role that logs in with a client certificate only
#                                  (`hostssl ... cert` on the primary, CA in ssl_ca_file)
#   RUNBOOK_TEST_PG_CLIENT_CERT / _KEY                 its certificate, from that CA
#   RUNBOOK_TEST_PG_FOREIGN_CLIENT_CERT / _KEY         the same name, from another CA

pg_version=15
pg_primary=runbook_primary
pg_standby=runbook_standby
pg_primary_port=55432
pg_standby_port=55433
pg_super_password=runbook-super-pw
pg_monitor_user=runbook_monitor
pg_monitor_password=runbook-monitor-pw
pg_repl_password=runbook-repl-pw

pg_dir() { echo "$RUNBOOK_TEST_STATE/postgres/$1"; }

# pg_sql PORT SQL: run SQL as the postgres superuser over the Unix socket.
pg_sql() {
  su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p $1 -d postgres" <<<"$2"
}

# pg_cluster_exists NAME DIR: the cluster is configured and its data is there.
pg_cluster_exists() {
  [ -f "/etc/postgresql/$pg_version/$1/postgresql.conf" ] && [ -f "$(pg_dir "$2")/PG_VERSION" ]
}

# pg_drop_stale NAME: remove a cluster whose data directory is gone (a
# wiped state directory), so that it can be created again.
pg_drop_stale() {
  if [ -d "/etc/postgresql/$pg_version/$1" ]; then
    pg_dropcluster --stop "$pg_version" "$1" || rm -rf "/etc/postgresql/$pg_version/$1"
  fi
}

# pg_start NAME PORT: start the cluster unless it already listens; remember
# that this script started it.
pg_start() {
  local name="$1" port="$2"
  if port_open "$port"; then
    return 0
  fi
  log "starting postgres cluster $name on 127.0.0.1:$port"
  pg_ctlcluster "$pg_version" "$name" start
  echo "$name" >"$RUNBOOK_TEST_STATE/postgres/started-$name"
  wait_tcp "$port" 60
}

pg_create_primary() {
  local dir
  dir="$(pg_dir primary)"
  log "creating postgres cluster $pg_primary in $dir"
  pg_drop_stale "$pg_primary"
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  pg_createcluster "$pg_version" "$pg_primary" -p "$pg_primary_port" -d "$dir" \
    -- --auth-host=scram-sha-256 --auth-local=peer >/dev/null
  cat >"/etc/postgresql/$pg_version/$pg_primary/conf.d/runbook.conf" <<EOF
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
wal_keep_size = 64MB
hot_standby = on
shared_preload_libraries = 'pg_stat_statements'
track_io_timing = on
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

pg_setup_roles() {
  pg_sql "$pg_primary_port" "
SET client_min_messages = warning;
ALTER ROLE postgres PASSWORD '$pg_super_password';
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'repl') THEN
    CREATE ROLE repl LOGIN REPLICATION;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$pg_monitor_user') THEN
    CREATE ROLE $pg_monitor_user LOGIN;
  END IF;
END \$\$;
ALTER ROLE repl PASSWORD '$pg_repl_password';
ALTER ROLE $pg_monitor_user PASSWORD '$pg_monitor_password';
GRANT pg_monitor TO $pg_monitor_user;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SELECT 'CREATE DATABASE runbook_plain' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'runbook_plain')
\\gexec
"
}

pg_create_standby() {
  local dir
  dir="$(pg_dir standby)"
  log "creating streaming standby $pg_standby in $dir"
  pg_drop_stale "$pg_standby"
  pg_sql "$pg_primary_port" "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'runbook_standby' AND NOT active;" >/dev/null
  rm -rf "$dir"
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  pg_createcluster "$pg_version" "$pg_standby" -p "$pg_standby_port" -d "$dir" >/dev/null
  cp "/etc/postgresql/$pg_version/$pg_primary/conf.d/runbook.conf" \
    "/etc/postgresql/$pg_version/$pg_standby/conf.d/runbook.conf"
  find "$dir" -mindepth 1 -delete
  su postgres -c "PGPASSWORD='$pg_repl_password' pg_basebackup -h 127.0.0.1 -p $pg_primary_port -U repl -D '$dir' -R -X stream -C -S runbook_standby"
  # The standby accepts the same roles (they came with the base backup).
  sed -i "s/^port = .*/port = $pg_standby_port/" "/etc/postgresql/$pg_version/$pg_standby/postgresql.conf"
}

pg_cert_user=runbook_cert

# pg_client_certs: a client CA the primary trusts (ssl_ca_file), a client
# certificate from it for $pg_cert_user, and one with the same name from a
# CA nobody trusts; made once.
pg_client_certs() {
  local tls="$RUNBOOK_TEST_STATE/postgres/tls" ca
  [ -s "$tls/foreign-client.pem" ] && return 0
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$tls"
  printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$tls/ext.cnf"
  for ca in client foreign; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=runbook-test-pg-$ca-ca" \
      -keyout "$tls/$ca-ca.key" -out "$tls/$ca-ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$pg_cert_user" \
      -keyout "$tls/$ca-client.key" -out "$tls/$ca-client.csr" 2>/dev/null
    openssl x509 -req -in "$tls/$ca-client.csr" -CA "$tls/$ca-ca.pem" -CAkey "$tls/$ca-ca.key" \
      -CAcreateserial -days 3650 -extfile "$tls/ext.cnf" -out "$tls/$ca-client.pem" 2>/dev/null
  done
  chown -R postgres:postgres "$tls"
}

# pg_setup_client_certs: the primary verifies client certificates against
# the client CA, and $pg_cert_user logs in over TLS with one (its own hba
# line, before the password lines); other roles are unaffected.
pg_setup_client_certs() {
  local tls="$RUNBOOK_TEST_STATE/postgres/tls"
  local conf="/etc/postgresql/$pg_version/$pg_primary"
  pg_client_certs
  echo "ssl_ca_file = '$tls/client-ca.pem'" >"$conf/conf.d/runbook-clientcert.conf"
  if ! grep -q "^hostssl all $pg_cert_user " "$conf/pg_hba.conf"; then
    sed -i "0,/^host /s//hostssl all $pg_cert_user 127.0.0.1\/32 cert\n&/" "$conf/pg_hba.conf"
  fi
  pg_sql "$pg_primary_port" "
SET client_min_messages = warning;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$pg_cert_user') THEN
    CREATE ROLE $pg_cert_user LOGIN;
  END IF;
END \$\$;
GRANT pg_monitor TO $pg_cert_user;
SELECT pg_reload_conf();
" >/dev/null
}

postgres_up() {
  apt_install postgresql postgresql-contrib
  mkdir -p "$RUNBOOK_TEST_STATE/postgres"
  pg_cluster_exists "$pg_primary" primary || pg_create_primary
  pg_start "$pg_primary" "$pg_primary_port"
  pg_setup_roles
  pg_setup_client_certs
  if ! pg_cluster_exists "$pg_standby" standby || [ ! -f "$(pg_dir standby)/standby.signal" ]; then
    pg_create_standby
  fi
  pg_start "$pg_standby" "$pg_standby_port"
  # Ready means: the standby answers queries and streams from the primary.
  local i
  for ((i = 0; i < 600; i++)); do
    if [ "$(pg_sql "$pg_primary_port" "\\pset tuples_only on
SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming';" 2>/dev/null | tr -d '[:space:]')" = 1 ]; then
      break
    fi
    sleep 0.1
  done
  [ "$i" -lt 600 ] || { log "the standby does not stream after 60s"; return 1; }
  cat >"$RUNBOOK_TEST_STATE/env/postgres.env" <<EOF
export RUNBOOK_TEST_PG_PRIMARY_DSN='postgres://$pg_monitor_user:$pg_monitor_password@127.0.0.1:$pg_primary_port/postgres?sslmode=disable'
export RUNBOOK_TEST_PG_STANDBY_DSN='postgres://$pg_monitor_user:$pg_monitor_password@127.0.0.1:$pg_standby_port/postgres?sslmode=disable'
export RUNBOOK_TEST_PG_SUPERUSER_DSN='postgres://postgres:$pg_super_password@127.0.0.1:$pg_primary_port/postgres?sslmode=disable'
export RUNBOOK_TEST_PG_STANDBY_SUPERUSER_DSN='postgres://postgres:$pg_super_password@127.0.0.1:$pg_standby_port/postgres?sslmode=disable'
export RUNBOOK_TEST_PG_PRIMARY_CLUSTER='$pg_version $pg_primary'
export RUNBOOK_TEST_PG_CERT_USER='$pg_cert_user'
export RUNBOOK_TEST_PG_CLIENT_CERT='$RUNBOOK_TEST_STATE/postgres/tls/client-client.pem'
export RUNBOOK_TEST_PG_CLIENT_KEY='$RUNBOOK_TEST_STATE/postgres/tls/client-client.key'
export RUNBOOK_TEST_PG_FOREIGN_CLIENT_CERT='$RUNBOOK_TEST_STATE/postgres/tls/foreign-client.pem'
export RUNBOOK_TEST_PG_FOREIGN_CLIENT_KEY='$RUNBOOK_TEST_STATE/postgres/tls/foreign-client.key'
EOF
  log "postgres ready: primary 127.0.0.1:$pg_primary_port, standby 127.0.0.1:$pg_standby_port"
}

postgres_down() {
  local name
  for name in "$pg_standby" "$pg_primary"; do
    if [ -f "$RUNBOOK_TEST_STATE/postgres/started-$name" ]; then
      pg_ctlcluster "$pg_version" "$name" stop -m fast || true
      rm -f "$RUNBOOK_TEST_STATE/postgres/started-$name"
    fi
  done
  rm -f "$RUNBOOK_TEST_STATE/env/postgres.env"
}
