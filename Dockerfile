# syntax=docker/dockerfile:1
# Multi-stage build: a full Rust toolchain to build, a distroless runtime
# (glibc, CA certificates, no shell) that runs as a non-root user and works
# with a read-only root filesystem.

FROM rust:1.95-bookworm AS build
# cmake and perl build the bundled librdkafka; libssl-dev and libsasl2-dev
# give it TLS and SASL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake perl libssl-dev libsasl2-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked \
 && install -m 0755 target/release/runbook-exporter /runbook-exporter

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /runbook-exporter /usr/local/bin/runbook-exporter
COPY config/example.yaml /etc/runbook-exporter/config.yaml
# 65532 is distroless's "nonroot" user.
USER 65532:65532
EXPOSE 9745
ENTRYPOINT ["/usr/local/bin/runbook-exporter"]
CMD ["serve", "--config", "/etc/runbook-exporter/config.yaml"]
