# MinIO, the S3-compatible server users run, on 127.0.0.1:59100, for
# tests/s3.rs. It checks SigV4 signatures, so a wrong secret really fails.
# Built once with `go install` (through the Go module proxy; needs a recent
# Go, such as the one in /usr/local/go) into ~/.cache/runbook-exporter/bin;
# the first build took 28 minutes on a busy 2-core machine, later starts
# take about 1 s. The version is pinned so every machine tests the same
# server. Sourced by scripts/services.sh.

s3_port=59100
s3_dir="$RUNBOOK_TEST_STATE/s3"
s3_bin="${HOME}/.cache/runbook-exporter/bin/minio"
s3_user=runbook-test
s3_password=runbook-test-secret-key
s3_minio_version=v0.0.0-20260212201848-7aac2a2c5b7c

s3_up() {
  if [ ! -x "$s3_bin" ]; then
    local go=go
    command -v go >/dev/null || go=/usr/local/go/bin/go
    log "s3: building MinIO $s3_minio_version with go install (slow the first time)"
    GOBIN="$(dirname "$s3_bin")" "$go" install "github.com/minio/minio@$s3_minio_version"
  fi
  mkdir -p "$s3_dir/data"
  if ! port_open "$s3_port"; then
    log "s3: starting MinIO on 127.0.0.1:$s3_port"
    MINIO_ROOT_USER="$s3_user" MINIO_ROOT_PASSWORD="$s3_password" \
      MINIO_BROWSER=off MINIO_UPDATE=off \
      nohup "$s3_bin" server "$s3_dir/data" --address "127.0.0.1:$s3_port" \
      >>"$RUNBOOK_TEST_STATE/logs/s3.log" 2>&1 &
    echo $! >"$s3_dir/minio.pid"
    wait_tcp "$s3_port" 60
    # Ready once the health endpoint answers (it needs a Host header).
    local i
    for ((i = 0; i < 300; i++)); do
      (exec 3<>"/dev/tcp/127.0.0.1/$s3_port" && printf 'GET /minio/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
        head -c 12 <&3 | grep -q ' 200') 2>/dev/null && break
      sleep 0.1
    done
  fi
  cat >"$RUNBOOK_TEST_STATE/env/s3.env" <<ENV
export RUNBOOK_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export RUNBOOK_TEST_S3_ACCESS_KEY=$s3_user
export RUNBOOK_TEST_S3_SECRET_KEY=$s3_password
ENV
}

s3_down() {
  stop_pidfile "$s3_dir/minio.pid" 10
}
