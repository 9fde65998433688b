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

/// Cheap process figures from `/proc` (Linux), read with safe calls only:
/// CPU time from `/proc/self/stat`, resident pages from `/proc/self/statm`,
/// open descriptors from `/proc/self/fd`; clock ticks and the page size
/// from the auxiliary vector (rustix).
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    open_fds: f64,
}

fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (utime, stime) = cpu_ticks(&stat)?;
    let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page_size = rustix::param::page_size() as f64;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: pages * page_size,
        open_fds,
    })
}

/// User and system CPU time in clock ticks: fields 14 and 15 of
/// `/proc/self/stat`, counted after the command name, which is in
/// parentheses and may itself hold spaces or parentheses.
fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (run (book) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 37 12 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some((37, 12)));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_stats() {
        let p = process_stats().expect("/proc is readable on Linux");
        assert!(p.resident_bytes > 1e6, "{}", p.resident_bytes);
        assert!(p.open_fds >= 3.0, "stdin, stdout, stderr: {}", p.open_fds);
    }
}
