//! Owns every metric the exporter serves: the per-check state that runs
//! write into, the collector that turns that state into samples at scrape
//! time, the exporter's self-metrics, and the exposition formats.
//!
//! A scrape only reads: each check's last result is an immutable snapshot
//! behind an `ArcSwap`, replaced whole when a run ends, so a scrape never
//! waits on a check and never sees half a result. Kind-specific values come
//! only from the last run's snapshot, so when a check fails, values it could
//! not measure disappear instead of going stale.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::checks::{Failure, MetricKind, Reason, RunResult, Sample};

/// Seconds since the Unix epoch, as Prometheus timestamps are written.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The result of one run, as stored and served.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// When the run ended, Unix seconds.
    pub finished_at: f64,
    pub duration: Duration,
    pub result: RunResult,
}

impl RunRecord {
    pub fn failure(&self) -> Option<&Failure> {
        self.result.as_ref().err()
    }

    /// The kind-specific samples that are valid for this run.
    pub fn samples(&self) -> &[Sample] {
        match &self.result {
            Ok(samples) => samples,
            Err(f) => &f.samples,
        }
    }
}

/// The live state of one configured check: counters and the last run.
#[derive(Debug)]
pub struct CheckState {
    pub name: String,
    pub kind: &'static str,
    /// User labels, sorted by name.
    pub labels: Vec<(String, String)>,
    runs: AtomicU64,
    failures: [AtomicU64; Reason::ALL.len()],
    last_success_bits: AtomicU64,
    last: ArcSwapOption<RunRecord>,
    history: Mutex<VecDeque<RunSummary>>,
    /// This check's series, encoded when its state last changed, so that a
    /// scrape only concatenates text.
    rendered: ArcSwap<Rendered>,
}

/// One check's series, split by metric family.
#[derive(Debug, Default)]
struct Rendered {
    families: Vec<RenderedFamily>,
}

#[derive(Debug)]
struct RenderedFamily {
    meta: Arc<FamilyMeta>,
    /// Sample lines, identical in both formats.
    samples: String,
}

/// A family's name and metadata lines, shared by every check that has the
/// family (interned: thousands of checks share a handful of families).
#[derive(Debug)]
struct FamilyMeta {
    name: String,
    /// `# HELP`, `# TYPE` (and `# UNIT`) lines in OpenMetrics.
    header: String,
    /// The same metadata in the classic text format.
    text_header: String,
}

impl FamilyMeta {
    fn interned(name: &str, header: &str) -> Arc<FamilyMeta> {
        static TABLE: Mutex<BTreeMap<String, Arc<FamilyMeta>>> = Mutex::new(BTreeMap::new());
        let make = || {
            Arc::new(FamilyMeta {
                name: name.to_string(),
                header: header.to_string(),
                text_header: openmetrics_to_text(header),
            })
        };
        let Ok(mut table) = TABLE.lock() else {
            return make();
        };
        match table.get(name) {
            Some(meta) if meta.header == header => meta.clone(),
            _ => {
                let meta = make();
                table.insert(name.to_string(), meta.clone());
                meta
            }
        }
    }
}

impl Rendered {
    /// Split prometheus-client's OpenMetrics output (without `# EOF`) into
    /// families.
    fn parse(om: &str) -> Self {
        // (name, metadata lines, sample lines) per family, in order.
        let mut parts: Vec<(&str, String, String)> = Vec::new();
        for line in om.split_inclusive('\n') {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                parts.push((name, String::new(), String::new()));
            }
            let Some((_, header, samples)) = parts.last_mut() else {
                continue;
            };
            if line.starts_with('#') {
                header.push_str(line);
            } else {
                samples.push_str(line);
            }
        }
        let families = parts
            .into_iter()
            .map(|(name, header, samples)| RenderedFamily {
                meta: FamilyMeta::interned(name, &header),
                samples,
            })
            .collect();
        Self { families }
    }
}

/// How many recent runs each check remembers for the status page.
pub const HISTORY_LEN: usize = 20;

/// One past run, as the status page shows it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub finished_at: f64,
    pub duration: Duration,
    /// The reason and message of a failed run; `None` for a success.
    /// Boxed: most runs succeed, and thousands of checks keep 20 of these.
    pub failure: Option<Box<(Reason, String)>>,
}

impl CheckState {
    pub fn new(name: String, kind: &'static str, labels: Vec<(String, String)>) -> Arc<Self> {
        let state = Arc::new(Self {
            name,
            kind,
            labels,
            runs: AtomicU64::new(0),
            failures: Default::default(),
            last_success_bits: AtomicU64::new(0),
            last: ArcSwapOption::empty(),
            history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
            rendered: ArcSwap::from_pointee(Rendered::default()),
        });
        state.render();
        state
    }

    /// Re-encode this check's series after its state changed. Runs on the
    /// check's own task, off the scrape path.
    fn render(self: &Arc<Self>) {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ChecksCollector(vec![self.clone()])));
        let mut om = String::with_capacity(2048);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut om, &registry);
        self.rendered.store(Arc::new(Rendered::parse(&om)));
    }

    /// Whether `self` and a check with these attributes are the same series
    /// (same label set), so that counters may carry over a reload.
    pub fn same_series(&self, name: &str, kind: &str, labels: &[(String, String)]) -> bool {
        self.name == name && self.kind == kind && self.labels == labels
    }

    /// Drop the last run's result (its check changed), keeping counters.
    pub fn forget_last_run(self: &Arc<Self>) {
        self.last.store(None);
        self.render();
    }

    /// Record a finished run.
    pub fn record(self: &Arc<Self>, record: RunRecord) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        match &record.result {
            Ok(_) => self
                .last_success_bits
                .store(record.finished_at.to_bits(), Ordering::Relaxed),
            Err(f) => {
                self.failures[f.reason.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Ok(mut history) = self.history.lock() {
            if history.len() == HISTORY_LEN {
                history.pop_front();
            }
            history.push_back(RunSummary {
                finished_at: record.finished_at,
                duration: record.duration,
                failure: record
                    .failure()
                    .map(|f| Box::new((f.reason, f.message.clone()))),
            });
        }
        self.last.store(Some(Arc::new(record)));
        self.render();
    }

    /// The most recent runs, oldest first (at most [`HISTORY_LEN`]).
    pub fn history(&self) -> Vec<RunSummary> {
        self.history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The last run, if any.
    pub fn last(&self) -> Option<Arc<RunRecord>> {
        self.last.load_full()
    }

    pub fn runs_total(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    pub fn failures_total(&self, reason: Reason) -> u64 {
        self.failures[reason.index()].load(Ordering::Relaxed)
    }

    /// Unix time of the last successful run, if any.
    pub fn last_success(&self) -> Option<f64> {
        let t = f64::from_bits(self.last_success_bits.load(Ordering::Relaxed));
        (t > 0.0).then_some(t)
    }
}

/// State shared by the scheduler (writer), the HTTP server and the
/// collector (readers).
#[derive(Debug)]
pub struct Store {
    checks: ArcSwap<Vec<Arc<CheckState>>>,
    reload_ok: AtomicBool,
    reload_success_bits: AtomicU64,
    in_flight: AtomicI64,
    probes_in_flight: AtomicI64,
    start_time: f64,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            checks: ArcSwap::from_pointee(Vec::new()),
            reload_ok: AtomicBool::new(false),
            reload_success_bits: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            probes_in_flight: AtomicI64::new(0),
            start_time: unix_now(),
        }
    }
}

impl Store {
    /// The current set of checks.
    pub fn checks(&self) -> Arc<Vec<Arc<CheckState>>> {
        self.checks.load_full()
    }

    /// Replace the set of checks (after a load or reload).
    pub fn set_checks(&self, checks: Vec<Arc<CheckState>>) {
        self.checks.store(Arc::new(checks));
    }

    /// Record the outcome of a config (re)load.
    pub fn config_loaded(&self, ok: bool) {
        self.reload_ok.store(ok, Ordering::Relaxed);
        if ok {
            self.reload_success_bits
                .store(unix_now().to_bits(), Ordering::Relaxed);
        }
    }

    /// Whether the last config (re)load succeeded.
    pub fn last_reload_ok(&self) -> bool {
        self.reload_ok.load(Ordering::Relaxed)
    }

    /// A guard that counts one scheduled run in flight while it lives.
    pub fn run_in_flight(self: &Arc<Self>) -> InFlight {
        InFlight::new(self.clone(), false)
    }

    /// A guard that counts one `/probe` run in flight while it lives.
    pub fn probe_in_flight(self: &Arc<Self>) -> InFlight {
        InFlight::new(self.clone(), true)
    }

    /// `/probe` runs executing right now.
    pub fn probes_in_flight(&self) -> i64 {
        self.probes_in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a scheduled or a `/probe` run in flight until dropped.
pub struct InFlight {
    store: Arc<Store>,
    probe: bool,
}

impl InFlight {
    fn new(store: Arc<Store>, probe: bool) -> Self {
        let me = Self { store, probe };
        me.counter().fetch_add(1, Ordering::Relaxed);
        me
    }

    fn counter(&self) -> &AtomicI64 {
        if self.probe {
            &self.store.probes_in_flight
        } else {
            &self.store.in_flight
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter().fetch_sub(1, Ordering::Relaxed);
    }
}

/// Build the registry of the exporter's own metrics. It is read-only after
/// this; the checks' series are pre-rendered (see [`exposition`]).
pub fn registry(store: Arc<Store>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ExporterCollector(store)));
    registry
}

/// The `/metrics` body: every check's pre-rendered series, merged by
/// family, then the exporter's own metrics from `registry`.
pub fn exposition(
    checks: &[Arc<CheckState>],
    registry: Option<&Registry>,
    format: Format,
) -> String {
    // Size the buffer from the previous scrape, so a large exposition is
    // written without repeated regrowth.
    static LAST_LEN: AtomicUsize = AtomicUsize::new(64 * 1024);
    let mut out = String::with_capacity(LAST_LEN.load(Ordering::Relaxed) + 4096);
    write_checks(checks, format, &mut out);
    if let Some(registry) = registry {
        let mut om = String::new();
        // Writing to a String cannot fail; a collector that fails would
        // leave a partial body, which is still served rather than nothing.
        let _ = prometheus_client::encoding::text::encode_registry(&mut om, registry);
        match format {
            Format::OpenMetrics => out.push_str(&om),
            Format::Text => out.push_str(&openmetrics_to_text(&om)),
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    LAST_LEN.store(out.len(), Ordering::Relaxed);
    out
}

/// Concatenate the checks' rendered families: each family's metadata once,
/// then every check's samples of it, families in order of first appearance.
fn write_checks(checks: &[Arc<CheckState>], format: Format, out: &mut String) {
    let rendered: Vec<Arc<Rendered>> = checks.iter().map(|c| c.rendered.load_full()).collect();
    let mut order: Vec<&FamilyMeta> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut samples: Vec<Vec<&str>> = Vec::new();
    for r in &rendered {
        for (i, family) in r.families.iter().enumerate() {
            // Checks of one kind list their families in the same order, so
            // the position usually finds the family without hashing.
            let meta: &FamilyMeta = &family.meta;
            let slot = match order.get(i) {
                Some(f) if std::ptr::eq(*f, meta) => i,
                _ => *index.entry(&meta.name).or_insert_with(|| {
                    order.push(meta);
                    samples.push(Vec::new());
                    order.len() - 1
                }),
            };
            samples[slot].push(&family.samples);
        }
    }
    for (family, lines) in order.iter().zip(&samples) {
        out.push_str(match format {
            Format::OpenMetrics => &family.header,
            Format::Text => &family.text_header,
        });
        for l in lines {
            out.push_str(l);
        }
    }
}

/// The exposition formats we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The classic Prometheus text format, version 0.0.4.
    Text,
}

impl Format {
    /// Pick the format from an `Accept` header: the supported media type
    /// with the highest q-value; OpenMetrics wins ties; the classic text
    /// format when nothing we serve is named.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let format = match media.as_str() {
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" => Format::Text,
                _ => continue,
            };
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let better = match best {
                None => true,
                Some((bq, bf)) => {
                    q > bq || (q == bq && format == Format::OpenMetrics && bf != format)
                }
            };
            if q > 0.0 && better {
                best = Some((q, format));
            }
        }
        best.map(|(_, f)| f).unwrap_or(Format::Text)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Convert OpenMetrics text (as produced by prometheus-client, without
/// exemplars or `_created`) to the classic 0.0.4 text format: no `# EOF`, no
/// `# UNIT`, counters' metadata named with their `_total` suffix, and
/// `unknown` spelled `untyped`.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut pending_help: Option<&str> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            pending_help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, ty) = match ty {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                "info" | "stateset" => (name.to_string(), "gauge"),
                other => (name.to_string(), other),
            };
            if let Some(help) = pending_help.take() {
                let text = help.split_once(' ').map(|(_, t)| t).unwrap_or("");
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {ty}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Fill `buf` with the label set of one series: the check's labels, then
/// `extra`. A user label that collides with an `extra` key is dropped, so
/// the exposition stays valid whatever the config says. The buffer is
/// reused across series to keep scrapes allocation-light.
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

/// Encodes the series of the checks it holds (one, in practice: see
/// [`CheckState::render`]).
#[derive(Debug)]
struct ChecksCollector(Vec<Arc<CheckState>>);

const HELP_UP: &str = "1 if the last scheduled run of the check succeeded, else 0.";
const HELP_DURATION: &str = "Duration of the last scheduled run of the check.";
const HELP_LAST_RUN: &str = "When the last scheduled run of the check ended, as a Unix timestamp.";
const HELP_LAST_SUCCESS: &str =
    "When the check last succeeded in a scheduled run, as a Unix timestamp.";
const HELP_RUNS: &str = "Scheduled runs of the check since the exporter started.";
const HELP_FAILURES: &str =
    "Failed scheduled runs of the check since the exporter started, by reason.";

impl Collector for ChecksCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let checks = &self.0;
        let lasts: Vec<Option<Arc<RunRecord>>> = checks.iter().map(|c| c.last()).collect();
        let gauge_family = |encoder: &mut DescriptorEncoder,
                            name: &str,
                            help: &str,
                            unit: Option<&Unit>,
                            value: &dyn Fn(&CheckState, Option<&RunRecord>) -> Option<f64>|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
            let mut labels = Vec::new();
            for (state, last) in checks.iter().zip(&lasts) {
                if let Some(v) = value(state, last.as_deref()) {
                    fill_labels(
                        &mut labels,
                        &[("check", &state.name), ("kind", state.kind)],
                        &state.labels,
                        &[],
                    );
                    ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
            Ok(())
        };
        gauge_family(
            &mut encoder,
            "runbook_check_up",
            HELP_UP,
            None,
            &|_, last| last.map(|r| if r.result.is_ok() { 1.0 } else { 0.0 }),
        )?;
        gauge_family(
            &mut encoder,
            "runbook_check_duration",
            HELP_DURATION,
            Some(&Unit::Seconds),
            &|_, last| last.map(|r| r.duration.as_secs_f64()),
        )?;
        gauge_family(
            &mut encoder,
            "runbook_check_last_run_timestamp",
            HELP_LAST_RUN,
            Some(&Unit::Seconds),
            &|_, last| last.map(|r| r.finished_at),
        )?;
        gauge_family(
            &mut encoder,
            "runbook_check_last_success_timestamp",
            HELP_LAST_SUCCESS,
            Some(&Unit::Seconds),
            &|state, _| state.last_success(),
        )?;

        let mut runs = encoder.encode_descriptor(
            "runbook_check_runs",
            HELP_RUNS,
            None,
            MetricType::Counter,
        )?;
        let mut labels = Vec::new();
        for state in checks.iter() {
            fill_labels(
                &mut labels,
                &[("check", &state.name), ("kind", state.kind)],
                &state.labels,
                &[],
            );
            ConstCounter::new(state.runs_total()).encode(runs.encode_family(&labels)?)?;
        }
        let mut failures = encoder.encode_descriptor(
            "runbook_check_failures",
            HELP_FAILURES,
            None,
            MetricType::Counter,
        )?;
        for state in checks.iter() {
            for reason in Reason::ALL {
                fill_labels(
                    &mut labels,
                    &[("check", &state.name), ("kind", state.kind)],
                    &state.labels,
                    &[("reason", reason.as_str())],
                );
                ConstCounter::new(state.failures_total(reason))
                    .encode(failures.encode_family(&labels)?)?;
            }
        }

        // Kind-specific samples, grouped into families by metric name.
        let mut families: BTreeMap<&'static str, Vec<(&CheckState, &Sample)>> = BTreeMap::new();
        for (state, last) in checks.iter().zip(&lasts) {
            if let Some(record) = last {
                for sample in record.samples() {
                    families
                        .entry(sample.desc.name)
                        .or_default()
                        .push((state, sample));
                }
            }
        }
        let mut name = String::new();
        let mut extra = Vec::new();
        for (metric, samples) in families {
            let desc = samples[0].1.desc;
            name.clear();
            name.push_str("runbook_");
            name.push_str(metric);
            let ty = match desc.kind {
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Counter => MetricType::Counter,
            };
            let mut family = encoder.encode_descriptor(&name, desc.help, desc.unit.as_ref(), ty)?;
            for (state, sample) in samples {
                extra.clear();
                extra.extend(sample.labels.iter().map(|(k, v)| (*k, v.as_str())));
                fill_labels(
                    &mut labels,
                    &[("check", &state.name)],
                    &state.labels,
                    &extra,
                );
                let series = family.encode_family(&labels)?;
                match desc.kind {
                    MetricKind::Gauge => ConstGauge::new(sample.value).encode(series)?,
                    MetricKind::Counter => ConstCounter::new(sample.value).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct ExporterCollector(Arc<Store>);

impl Collector for ExporterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = &self.0;
        let gauge = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     unit: Option<&Unit>,
                     labels: &[(&str, &str)],
                     value: f64|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
            ConstGauge::new(value).encode(family.encode_family(&labels.to_vec())?)
        };
        gauge(
            &mut encoder,
            "runbook_exporter_build_info",
            "Build information of the running exporter; the value is always 1.",
            None,
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        )?;
        gauge(
            &mut encoder,
            "runbook_exporter_config_last_reload_successful",
            "1 if the last load or reload of the config file succeeded, else 0 (the previous config keeps running).",
            None,
            &[],
            if store.last_reload_ok() { 1.0 } else { 0.0 },
        )?;
        let last_ok = f64::from_bits(store.reload_success_bits.load(Ordering::Relaxed));
        gauge(
            &mut encoder,
            "runbook_exporter_config_last_reload_success_timestamp",
            "When the config file was last loaded successfully, as a Unix timestamp.",
            Some(&Unit::Seconds),
            &[],
            last_ok,
        )?;
        gauge(
            &mut encoder,
            "runbook_exporter_checks",
            "Number of checks in the running config.",
            None,
            &[],
            store.checks().len() as f64,
        )?;
        gauge(
            &mut encoder,
            "runbook_exporter_check_runs_in_flight",
            "Check runs executing right now (bounded by max_concurrent_runs).",
            None,
            &[],
            store.in_flight.load(Ordering::Relaxed) as f64,
        )?;
        gauge(
            &mut encoder,
            "runbook_exporter_probe_runs_in_flight",
            "/probe runs executing right now (at most 64); a run ends when its caller hangs up.",
            None,
            &[],
            store.probes_in_flight() as f64,
        )?;
        gauge(
            &mut encoder,
            "process_start_time",
            "Start time of the process since the Unix epoch.",
            Some(&Unit::Seconds),
            &[],
            store.start_time,
        )?;
        if let Some(p) = process_stats() {
            let mut cpu = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent by the process.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new(p.cpu_seconds)
                .encode(cpu.encode_family(&Vec::<(&str, &str)>::new())?)?;
            gauge(
                &mut encoder,
                "process_resident_memory",
                "Resident memory size of the process.",
                Some(&Unit::Bytes),
                &[],
                p.resident_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                &[],
                p.open_fds,
            )?;
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::MetricDesc;

    static PHASE: MetricDesc = MetricDesc {
        name: "test_phase_duration",
        help: "Phase duration in the last scheduled run.",
        unit: Some(Unit::Seconds),
        kind: MetricKind::Gauge,
    };
    static READS: MetricDesc = MetricDesc {
        name: "other_reads",
        help: "Reads as of the last scheduled run.",
        unit: None,
        kind: MetricKind::Counter,
    };

    fn run(samples: Vec<Sample>) -> RunRecord {
        RunRecord {
            finished_at: 1_700_000_000.0,
            duration: Duration::from_millis(5),
            result: Ok(samples),
        }
    }

    #[test]
    fn pre_rendered_checks_merge_into_one_block_per_family() {
        let a = CheckState::new("a".into(), "test", vec![("team".into(), "x".into())]);
        a.record(run(vec![
            Sample::new(&PHASE, 0.5).with_label("phase", "connect")
        ]));
        let b = CheckState::new("b".into(), "other", vec![]);
        b.record(run(vec![Sample::new(&READS, 7.0)]));
        let c = CheckState::new("c".into(), "test", vec![]);
        c.record(run(vec![
            Sample::new(&PHASE, 0.25).with_label("phase", "connect")
        ]));
        let om = exposition(
            &[a.clone(), b.clone(), c.clone()],
            None,
            Format::OpenMetrics,
        );
        assert!(om.ends_with("# EOF\n"));
        let types: Vec<&str> = om.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types, unique, "each family once");
        // Samples of a family are contiguous, after its metadata.
        let phase: Vec<&str> = om
            .lines()
            .skip_while(|l| !l.starts_with("# TYPE runbook_test_phase_duration_seconds"))
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            phase,
            [
                "runbook_test_phase_duration_seconds{check=\"a\",team=\"x\",phase=\"connect\"} 0.5",
                "runbook_test_phase_duration_seconds{check=\"c\",phase=\"connect\"} 0.25",
            ]
        );
        assert!(om.contains(
            "# TYPE runbook_other_reads counter\nrunbook_other_reads_total{check=\"b\"} 7.0\n"
        ));
        let text = exposition(&[a, b, c], None, Format::Text);
        assert!(text.contains("# TYPE runbook_other_reads_total counter\nrunbook_other_reads_total{check=\"b\"} 7.0\n"));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    }

    #[test]
    fn families_without_samples_keep_their_own_metadata() {
        let r = Rendered::parse("# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\nb 1\n");
        let got: Vec<(&str, &str, &str)> = r
            .families
            .iter()
            .map(|f| {
                (
                    f.meta.name.as_str(),
                    f.meta.header.as_str(),
                    f.samples.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", "# HELP a A.\n# TYPE a gauge\n", ""),
                ("b", "# HELP b B.\n# TYPE b gauge\n", "b 1\n")
            ]
        );
    }

    #[test]
    fn a_forgotten_run_drops_its_samples() {
        let a = CheckState::new("a".into(), "test", vec![]);
        a.record(run(vec![
            Sample::new(&PHASE, 0.5).with_label("phase", "connect")
        ]));
        a.forget_last_run();
        let om = exposition(&[a], None, Format::OpenMetrics);
        assert!(!om.contains("runbook_test_phase_duration_seconds{"));
        assert!(!om.contains("runbook_check_up{"));
        assert!(om.contains("runbook_check_runs_total{check=\"a\",kind=\"test\"} 1\n"));
    }

    #[test]
    fn negotiation_follows_q_values() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2,text/plain;q=0.9")),
            Format::Text
        );
    }

    #[test]
    fn classic_text_names_counters_with_total_and_drops_eof() {
        let om = "# HELP a_runs Runs.\n# TYPE a_runs counter\na_runs_total{x=\"1\"} 3\n# HELP b_seconds B.\n# TYPE b_seconds gauge\n# UNIT b_seconds seconds\nb_seconds 1.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_runs_total Runs.\n# TYPE a_runs_total counter\na_runs_total{x=\"1\"} 3\n# HELP b_seconds B.\n# TYPE b_seconds gauge\nb_seconds 1.5\n"
        );
    }
}
