# PgBouncer (Debian's `pgbouncer`) in front of the test primary on 55432, for
# the `postgres` kind's pooler tests: one pooler in transaction mode on
# 127.0.0.1:55442 and one in session mode on 127.0.0.1:55443. Both accept
# any database name (`*`) and two roles: the monitoring role of postgres.sh
# and `runbook_pooler`, a role of the pooler tests' own (no pg_monitor, so a
# check logged in as it sees only its own role's sessions).
# Sourced by scripts/services.sh after postgres.sh's functions.
#
# Exports (in $RUNBOOK_TEST_STATE/env/pgbouncer.env):
#   RUNBOOK_TEST_PGBOUNCER_TRANSACTION_DSN  runbook_pooler through the transaction pooler
#   RUNBOOK_TEST_PGBOUNCER_SESSION_DSN      runbook_pooler through the session pooler
#   RUNBOOK_TEST_PGBOUNCER_ROLE             runbook_pooler (tests give it databases of their own)

pgb_transaction_port=55442
pgb_session_port=55443
pgb_user=runbook_pooler
pgb_password=runbook-pooler-pw

pgb_dir() { printf '%s/pgbouncer' "$RUNBOOK_TEST_STATE"; }

# pgb_write MODE PORT: the ini file of the pooler in MODE.
pgb_write() {
  local mode="$1" port="$2" dir
  dir="$(pgb_dir)"
  cat >"$dir/$mode.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$pg_primary_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/users.txt
pool_mode = $mode
max_client_conn = 100
default_pool_size = 5
server_idle_timeout = 30
logfile = $dir/$mode.log
pidfile = $dir/$mode.pid
EOF
}

pgbouncer_up() {
  apt_install pgbouncer
  port_open "$pg_primary_port" || postgres_up
  pg_sql "$pg_primary_port" "
SET client_min_messages = warning;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$pgb_user') THEN
    CREATE ROLE $pgb_user LOGIN CREATEDB;
  END IF;
END \$\$;
ALTER ROLE $pgb_user LOGIN CREATEDB PASSWORD '$pgb_password';
"
  local dir mode port
  dir="$(pgb_dir)"
  mkdir -p "$dir"
  printf '"%s" "%s"\n"%s" "%s"\n' "$pgb_user" "$pgb_password" \
    "$pg_monitor_user" "$pg_monitor_password" >"$dir/users.txt"
  chmod 600 "$dir/users.txt"
  for mode in transaction session; do
    port="$pgb_transaction_port"
    [ "$mode" = session ] && port="$pgb_session_port"
    pgb_write "$mode" "$port"
  done
  chown -R postgres:postgres "$dir"
  for mode in transaction session; do
    port="$pgb_transaction_port"
    [ "$mode" = session ] && port="$pgb_session_port"
    if port_open "$port"; then
      log "pgbouncer ($mode) already listens on 127.0.0.1:$port"
      continue
    fi
    log "starting pgbouncer ($mode pooling) on 127.0.0.1:$port"
    su postgres -s /bin/sh -c "pgbouncer -d '$dir/$mode.ini'"
    wait_tcp "$port" 30
  done
  cat >"$RUNBOOK_TEST_STATE/env/pgbouncer.env" <<EOF
export RUNBOOK_TEST_PGBOUNCER_TRANSACTION_DSN='postgres://$pgb_user:$pgb_password@127.0.0.1:$pgb_transaction_port/postgres?sslmode=disable'
export RUNBOOK_TEST_PGBOUNCER_SESSION_DSN='postgres://$pgb_user:$pgb_password@127.0.0.1:$pgb_session_port/postgres?sslmode=disable'
export RUNBOOK_TEST_PGBOUNCER_ROLE='$pgb_user'
EOF
}

pgbouncer_down() {
  local mode
  for mode in transaction session; do
    stop_pidfile "$(pgb_dir)/$mode.pid"
  done
  rm -f "$RUNBOOK_TEST_STATE/env/pgbouncer.env"
}
