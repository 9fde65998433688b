//! The exporter's own metrics, encoded at scrape time: build info, the
//! config reload outcome, the number of checks and of runs in flight, and
//! the process figures (`process_*`) Prometheus exporters conventionally
//! serve.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::state::Store;
use crate::shard::Shard;

/// Build the registry of the exporter's own metrics. It is read-only after
/// this; the checks' series are pre-rendered (see
/// [`exposition`](super::exposition())).
pub fn registry(store: Arc<Store>, shard: Shard) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ExporterCollector(store, shard)));
    registry
}

#[derive(Debug)]
struct ExporterCollector(Arc<Store>, Shard);

impl Collector for ExporterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = &self.0;
        encode_exporter(store, &mut encoder)?;
        let (index, total) = (self.1.index.to_string(), self.1.total.to_string());
        gauge(
            &mut encoder,
            "runbook_exporter_shard_info",
            "Which shard this replica is (--shard, --total-shards): it runs the checks whose name hashes to it; the value is always 1.",
            None,
            &[("shard", &index), ("total_shards", &total)],
            1.0,
        )?;
        gauge(
            &mut encoder,
            "process_start_time",
            "Start time of the process since the Unix epoch.",
            Some(&Unit::Seconds),
            &[],
            store.start_time(),
        )?;
        if let Some(p) = process_stats() {
            encode_process(&p, &mut encoder)?;
        }
        Ok(())
    }
}

/// One gauge family with one series.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    labels: &[(&str, &str)],
    value: f64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    ConstGauge::new(value).encode(family.encode_family(&labels.to_vec())?)
}

/// Build info, the config reload outcome, the checks and runs in flight.
fn encode_exporter(store: &Store, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    gauge(
        encoder,
        "runbook_exporter_build_info",
        "Build information of the running exporter; the value is always 1.",
        None,
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    )?;
    gauge(
        encoder,
        "runbook_exporter_config_last_reload_successful",
        "1 if the last load or reload of the config file succeeded, else 0 (the previous config keeps running).",
        None,
        &[],
        if store.last_reload_ok() { 1.0 } else { 0.0 },
    )?;
    gauge(
        encoder,
        "runbook_exporter_config_last_reload_success_timestamp",
        "When the config file was last loaded successfully, as a Unix timestamp.",
        Some(&Unit::Seconds),
        &[],
        store.last_reload_success(),
    )?;
    gauge(
        encoder,
        "runbook_exporter_checks",
        "Number of checks in the running config.",
        None,
        &[],
        store.checks().len() as f64,
    )?;
    gauge(
        encoder,
        "runbook_exporter_check_runs_in_flight",
        "Check runs executing right now (bounded by max_concurrent_runs).",
        None,
        &[],
        store.runs_in_flight() as f64,
    )?;
    gauge(
        encoder,
        "runbook_exporter_probe_runs_in_flight",
        "/probe runs executing right now (at most 64); a run ends when its caller hangs up.",
        None,
        &[],
        store.probes_in_flight() as f64,
    )?;
    let lag = encoder.encode_descriptor(
        "runbook_exporter_schedule_lag",
        "How late scheduled runs started: from the moment a run was due until it began (after waiting for a max_concurrent_runs permit).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    store.schedule_lag().encode(lag)
}

/// CPU time, resident memory and open file descriptors.
fn encode_process(
    p: &ProcessStats,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let mut cpu = encoder.encode_descriptor(
        "process_cpu",
        "Total user and system CPU time spent by the process.",
        Some(&Unit::Seconds),
        MetricType::Counter,
    )?;
    ConstCounter::new(p.cpu_seconds).encode(cpu.encode_family(&Vec::<(&str, &str)>::new())?)?;
    gauge(
        encoder,
        "process_resident_memory",
        "Resident memory size of the process.",
        Some(&Unit::Bytes),
        &[],
        p.resident_bytes,
    )?;
    gauge(
        encoder,
        "process_open_fds",
        "Number of open file descriptors.",
        None,
        &[],
        p.open_fds,
    )
}

/// Cheap process figures from `getrusage` and `/proc` (Linux).
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    open_fds: f64,
}

fn process_stats() -> Option<ProcessStats> {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads
    // nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return None;
        }
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    Some(ProcessStats {
        cpu_seconds: tv(usage.ru_utime) + tv(usage.ru_stime),
        resident_bytes: pages * page_size,
        open_fds,
    })
}
