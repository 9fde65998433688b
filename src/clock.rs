//! The wall clock as the exporter writes it: one function shared by the
//! checks, the metrics and the status page, so none of them depends on
//! another for the time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as Prometheus timestamps are written.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
