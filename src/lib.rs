//! runbook-exporter: a Prometheus exporter and synthetic prober.
pub mod checks;
pub mod config;
