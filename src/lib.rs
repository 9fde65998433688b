//! runbook-exporter: a Prometheus exporter and synthetic prober that runs
//! the health checks of an operations team's troubleshooting guides on
//! schedules and serves the results as metrics.
pub mod app;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod diagnose;
pub mod metrics;
pub mod mixin;
pub mod scheduler;
pub mod server;
pub mod shard;
pub mod status;
pub mod web;
