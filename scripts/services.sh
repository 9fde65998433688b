#!/usr/bin/env bash
# Start (or stop) the real services the integration tests talk to, on
# 127.0.0.1 only, installing what is missing. Idempotent: a service that is
# already up is left alone, so this can run on a fresh machine or on one
# where everything is already running.
#
#   scripts/services.sh up   [NAME...]   install if needed, start, wait until ready
#   scripts/services.sh down [NAME...]   stop what this script started
#   scripts/services.sh env              print the variables the tests read
#
# Each service lives in scripts/services/NAME.sh and defines NAME_up and
# NAME_down; NAME_up appends `export VAR=value` lines for the tests to
# "$RUNBOOK_TEST_STATE/env/NAME.env". Ports are fixed and non-default (see
# the table below) so that other copies of these servers do not collide.
#
#   service        ports
#   postgres       55432 (primary), 55433 (standby)
#   pgbouncer      55442 (transaction pooling), 55443 (session pooling)
#   redis          56379 (primary), 56380 (replica), 56381 (primary, TLS)
#   clickhouse     58123 (http), 58443 (https), 59000 (native), 59009 (interserver), 59181 (zookeeper)
#   s3             59100
#   kafka          59092 (broker), 59093 (SASL/PLAIN), 59095 (controller)
#   kafka_cluster  59291-59293 (brokers), 59301-59303 (SCRAM-SHA-512), 59311-59313 (controllers), 59321-59323 (TLS)
#   prometheus     59090, alertmanager 59094
#   proxy          58888 (tinyproxy, Basic auth)
set -euo pipefail

# `up` runs in a session of its own, so the servers it starts are in no
# caller's process group: Ctrl-C on scripts/demo.sh, or a test runner
# ending a test's process group, does not take them down with it.
if [ "${1:-up}" = up ] && [ -z "${RUNBOOK_SERVICES_SESSION:-}" ] && command -v setsid >/dev/null; then
  RUNBOOK_SERVICES_SESSION=1 exec setsid --wait "$0" "$@"
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export RUNBOOK_TEST_STATE="${RUNBOOK_TEST_STATE:-/var/tmp/runbook-exporter-test}"
mkdir -p "$RUNBOOK_TEST_STATE/env" "$RUNBOOK_TEST_STATE/logs"

log() { printf '[services] %s\n' "$*" >&2; }

# apt_install PKG...: install the Debian packages that are missing; runs
# `apt-get update` at most once per invocation.
apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# wait_tcp PORT [SECONDS]: wait until 127.0.0.1:PORT accepts connections.
wait_tcp() {
  local port="$1" secs="${2:-60}" i
  for ((i = 0; i < secs * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on 127.0.0.1:$port after ${secs}s"
  return 1
}

# port_open PORT: true if something accepts on 127.0.0.1:PORT now.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pidfile FILE [SECS]: stop the process whose PID is in FILE and wait
# until it has exited, so that an `up` right after a `down` finds its ports
# free instead of a server about to go away. SIGTERM first; after SECS
# (default 30) SIGKILL (the last broker of a KRaft cluster whose quorum is
# already gone never finishes its controlled shutdown).
stop_pidfile() {
  local file="$1" secs="${2:-30}" pid i
  [ -s "$file" ] || { rm -f "$file"; return 0; }
  pid="$(cat "$file")"
  if kill "$pid" 2>/dev/null; then
    for ((i = 0; i < secs * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "process $pid ($file) still runs after ${secs}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$file"
}

# reserve_ports: the fixed ports above lie inside Linux's ephemeral range
# (32768-60999). While a server is down (a `down`, a restart), an outgoing
# connection can get its port as its local port, and the server then fails
# to bind ("Address already in use"). Reserving them keeps the kernel from
# handing them out; done when this runs as root with a writable /proc/sys.
reserve_ports() {
  local f=/proc/sys/net/ipv4/ip_local_reserved_ports ours current
  [ -w "$f" ] || return 0
  ours="$(sed -n '/^#   service /,/^[^#]/p' "$here/services.sh" |
    grep -o '[0-9]\{4,5\}\(-[0-9]\{4,5\}\)\?' | paste -sd, -)"
  current="$(cat "$f")"
  [ -n "$ours" ] || return 0
  echo "${current:+$current,}$ours" >"$f" 2>/dev/null ||
    log "could not reserve the service ports in $f (an outgoing connection may take one)"
}

for f in "$here"/services/*.sh; do
  [ -e "$f" ] || continue
  # shellcheck source=/dev/null
  . "$f"
done

all_services() {
  local f
  for f in "$here"/services/*.sh; do
    [ -e "$f" ] && basename "$f" .sh
  done
}

cmd="${1:-up}"
shift || true
names=("$@")
[ "${#names[@]}" -gt 0 ] || mapfile -t names < <(all_services)

case "$cmd" in
  up)
    reserve_ports
    for n in "${names[@]}"; do
      log "starting $n"
      "${n}_up"
    done
    ;;
  down)
    for n in "${names[@]}"; do
      log "stopping $n"
      "${n}_down" || true
    done
    ;;
  env)
    cat "$RUNBOOK_TEST_STATE"/env/*.env 2>/dev/null || true
    ;;
  *)
    echo "usage: $0 up|down|env [NAME...]" >&2
    exit 2
    ;;
esac
