//! Rendering one check's series: the shared `runbook_check_*` families and
//! the kind-specific samples of its last run, as OpenMetrics text. The
//! output is a function of a plain [`CheckView`] only; it runs on the
//! check's own task when its state changes, never on a scrape.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::state::RunRecord;
use crate::checks::{MetricKind, Reason, Sample};

/// Everything the series of one check are made of, read once.
#[derive(Debug)]
pub(super) struct CheckView<'a> {
    pub(super) name: &'a str,
    pub(super) kind: &'static str,
    /// User labels, sorted by name.
    pub(super) labels: &'a [(String, String)],
    /// The last run; its samples are handed to [`render`] apart.
    pub(super) last: Option<Arc<RunRecord>>,
    pub(super) last_success: Option<f64>,
    /// The scheduled interval, seconds; `None` for a `/probe` run.
    pub(super) interval: Option<f64>,
    pub(super) runs: u64,
    /// Failed runs, indexed like [`Reason::ALL`].
    pub(super) failures: [u64; Reason::ALL.len()],
}

/// A check that can show a [`CheckView`] of itself.
pub(super) trait Viewed: fmt::Debug + Send + Sync + 'static {
    fn view(&self) -> CheckView<'_>;
}

/// One `/probe` run, shown as the series of a check that ran once: one
/// run, counted as a success or as a failure of its reason.
#[derive(Debug)]
pub(super) struct OneRun {
    pub(super) name: String,
    pub(super) kind: &'static str,
    pub(super) labels: Vec<(String, String)>,
    pub(super) record: Arc<RunRecord>,
}

impl Viewed for OneRun {
    fn view(&self) -> CheckView<'_> {
        let reason = self.record.failure().map(|f| f.reason);
        CheckView {
            name: &self.name,
            kind: self.kind,
            labels: &self.labels,
            last: Some(self.record.clone()),
            last_success: reason.is_none().then_some(self.record.finished_at),
            interval: None,
            runs: 1,
            failures: Reason::ALL.map(|r| u64::from(reason == Some(r))),
        }
    }
}

/// The check's series in OpenMetrics text, without `# EOF`: every family's
/// metadata, even of a family without samples.
/// `samples` are the last run's kind-specific samples.
/// Handed to `with` in a buffer the thread reuses, so that rendering
/// allocates no text of its own beyond what the caller keeps.
pub(super) fn render<C: Viewed, T>(
    check: Arc<C>,
    samples: Vec<Sample>,
    with: impl FnOnce(&str) -> T,
) -> T {
    thread_local! {
        static BUFFER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(CheckCollector(check, samples)));
    BUFFER.with(|buffer| {
        // A reentrant render (never done) would get a buffer of its own.
        let mut own = String::new();
        let mut borrowed = buffer.try_borrow_mut();
        let om = match borrowed.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut own,
        };
        om.clear();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(om, &registry);
        let out = with(om);
        // A check with very many series leaves no large buffer behind.
        if om.capacity() > 64 * 1024 {
            *om = String::new();
        }
        out
    })
}

/// Lends one check and its last run's samples to prometheus-client's
/// encoder, which wants an owned collector.
#[derive(Debug)]
struct CheckCollector<C>(Arc<C>, Vec<Sample>);

impl<C: Viewed> Collector for CheckCollector<C> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let view = self.0.view();
        encode_state(&view, &mut encoder)?;
        encode_counters(&view, &mut encoder)?;
        encode_samples(&view, &self.1, &mut encoder)
    }
}

const HELP_UP: &str = "1 if the last scheduled run of the check succeeded, else 0.";
const HELP_DURATION: &str = "Duration of the last scheduled run of the check.";
const HELP_LAST_RUN: &str = "When the last scheduled run of the check ended, as a Unix timestamp.";
const HELP_LAST_SUCCESS: &str =
    "When the check last succeeded in a scheduled run, as a Unix timestamp.";
const HELP_INTERVAL: &str =
    "Interval between the scheduled runs of the check, from the running config (not a result of the last scheduled run).";
const HELP_RUNS: &str = "Scheduled runs of the check since the exporter started.";
const HELP_FAILURES: &str =
    "Failed scheduled runs of the check since the exporter started, by reason.";

/// The gauges of the check's last run and last success; a family whose
/// value is unknown keeps its metadata and has no sample.
fn encode_state(view: &CheckView, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let last = view.last.as_deref();
    let gauges: [(&str, &str, Option<&Unit>, Option<f64>); 5] = [
        (
            "runbook_check_up",
            HELP_UP,
            None,
            last.map(|r| if r.result.is_ok() { 1.0 } else { 0.0 }),
        ),
        (
            "runbook_check_duration",
            HELP_DURATION,
            Some(&Unit::Seconds),
            last.map(|r| r.duration.as_secs_f64()),
        ),
        (
            "runbook_check_last_run_timestamp",
            HELP_LAST_RUN,
            Some(&Unit::Seconds),
            last.map(|r| r.finished_at),
        ),
        (
            "runbook_check_last_success_timestamp",
            HELP_LAST_SUCCESS,
            Some(&Unit::Seconds),
            view.last_success,
        ),
        (
            "runbook_check_interval",
            HELP_INTERVAL,
            Some(&Unit::Seconds),
            view.interval,
        ),
    ];
    let mut labels = Vec::new();
    for (name, help, unit, value) in gauges {
        let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
        if let Some(v) = value {
            fill_labels(&mut labels, &check_and_kind(view), view.labels, &[]);
            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The run and failure counters, which exist from the check's start.
fn encode_counters(view: &CheckView, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let mut labels = Vec::new();
    let mut runs =
        encoder.encode_descriptor("runbook_check_runs", HELP_RUNS, None, MetricType::Counter)?;
    fill_labels(&mut labels, &check_and_kind(view), view.labels, &[]);
    ConstCounter::new(view.runs).encode(runs.encode_family(&labels)?)?;
    let mut failures = encoder.encode_descriptor(
        "runbook_check_failures",
        HELP_FAILURES,
        None,
        MetricType::Counter,
    )?;
    for reason in Reason::ALL {
        fill_labels(
            &mut labels,
            &check_and_kind(view),
            view.labels,
            &[("reason", reason.as_str())],
        );
        ConstCounter::new(view.failures[reason.index()])
            .encode(failures.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The kind-specific samples of the last run, grouped into families by
/// metric name.
fn encode_samples(
    view: &CheckView,
    samples: &[Sample],
    encoder: &mut DescriptorEncoder,
) -> Result<(), fmt::Error> {
    let mut families: BTreeMap<&'static str, Vec<&Sample>> = BTreeMap::new();
    for sample in samples {
        families.entry(sample.desc.name).or_default().push(sample);
    }
    let mut name = String::new();
    let mut labels = Vec::new();
    let mut extra = Vec::new();
    for (metric, samples) in families {
        let desc = samples[0].desc;
        name.clear();
        name.push_str("runbook_");
        name.push_str(metric);
        let ty = match desc.kind {
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Counter => MetricType::Counter,
        };
        let mut family = encoder.encode_descriptor(&name, desc.help, desc.unit.as_ref(), ty)?;
        for sample in samples {
            extra.clear();
            extra.extend(sample.labels.iter().map(|(k, v)| (*k, v.as_str())));
            fill_labels(&mut labels, &[("check", view.name)], view.labels, &extra);
            let series = family.encode_family(&labels)?;
            match desc.kind {
                MetricKind::Gauge => ConstGauge::new(sample.value).encode(series)?,
                MetricKind::Counter => ConstCounter::new(sample.value).encode(series)?,
            }
        }
    }
    Ok(())
}

fn check_and_kind<'a>(view: &CheckView<'a>) -> [(&'a str, &'a str); 2] {
    [("check", view.name), ("kind", view.kind)]
}

/// Fill `buf` with the label set of one series: the check's labels, then
/// `extra`. A user label that collides with an `extra` key is dropped, so
/// the exposition stays valid whatever the config says. The buffer is
/// reused across series to keep rendering allocation-light.
fn fill_labels<'a>(
    buf: &mut Vec<(&'a str, &'a str)>,
    base: &[(&'a str, &'a str)],
    user: &'a [(String, String)],
    extra: &[(&'a str, &'a str)],
) {
    buf.clear();
    buf.extend_from_slice(base);
    for (k, v) in user {
        if !extra.iter().any(|(e, _)| e == k) {
            buf.push((k.as_str(), v.as_str()));
        }
    }
    buf.extend_from_slice(extra);
}
