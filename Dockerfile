# syntax=docker/dockerfile:1
# Multi-stage build: a full Rust toolchain to build, a distroless runtime
# (glibc, CA certificates, no shell) that runs as a non-root user and works
# with a read-only root filesystem.

FROM rust:1.95-bookworm AS build
# aws-lc-sys (the crypto of the S3 client and of JWT verification) builds
# with cmake and perl; nothing links OpenSSL or zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake perl \
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
