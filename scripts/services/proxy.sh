# tinyproxy, the forward proxy Debian ships, on 127.0.0.1:58888, for the
# `proxy_url` tests in tests/http.rs and tests/tcp.rs. It requires Basic
# proxy authentication (so a wrong password really fails with 407), allows
# CONNECT to any port, adds a `Via` header to the requests it forwards,
# and logs every request to a file the tests read to prove it carried
# theirs. Sourced by scripts/services.sh.

proxy_port=58888
proxy_dir="$RUNBOOK_TEST_STATE/proxy"
proxy_user=runbook-probe
proxy_password=runbook-proxy-secret

proxy_up() {
  command -v tinyproxy >/dev/null || apt_install tinyproxy
  mkdir -p "$proxy_dir"
  # tinyproxy drops root for nobody, who must be able to write its log.
  chown nobody "$proxy_dir"
  if port_open "$proxy_port"; then
    log "proxy: tinyproxy already listens on 127.0.0.1:$proxy_port"
  else
    cat >"$proxy_dir/tinyproxy.conf" <<CONF
User nobody
Group nogroup
Port $proxy_port
Listen 127.0.0.1
Timeout 30
MaxClients 64
LogFile "$proxy_dir/tinyproxy.log"
LogLevel Info
Allow 127.0.0.1
BasicAuth $proxy_user $proxy_password
ViaProxyName "runbook-test-proxy"
CONF
    log "proxy: starting tinyproxy on 127.0.0.1:$proxy_port"
    nohup tinyproxy -d -c "$proxy_dir/tinyproxy.conf" >>"$RUNBOOK_TEST_STATE/logs/proxy.log" 2>&1 &
    echo $! >"$proxy_dir/tinyproxy.pid"
    wait_tcp "$proxy_port" 30
  fi
  cat >"$RUNBOOK_TEST_STATE/env/proxy.env" <<ENV
export RUNBOOK_TEST_PROXY_URL=http://$proxy_user:$proxy_password@127.0.0.1:$proxy_port
export RUNBOOK_TEST_PROXY_LOG=$proxy_dir/tinyproxy.log
ENV
}

proxy_down() {
  stop_pidfile "$proxy_dir/tinyproxy.pid" 5
  rm -f "$RUNBOOK_TEST_STATE/env/proxy.env"
}
