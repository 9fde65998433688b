//! The live state of each check, written by its runs and read by scrapes
//! and the status page: counters, the last run, recent history, and the
//! check's pre-rendered series; plus the [`Store`] that holds every check
//! and the exporter-wide figures.
//!
//! A scrape only reads: each check's last result is an immutable snapshot
//! behind an `ArcSwap`, replaced whole when a run ends, so a scrape never
//! waits on a check and never sees half a result.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::metrics::histogram::Histogram;

use super::compact::LabelBlocks;
use super::exposition::Rendered;
use super::render::{self, CheckView, Viewed};
use crate::checks::{Failure, Reason, RunResult, Sample};
use crate::clock::unix_now;

/// The result of one run, as stored and served.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// When the run ended, Unix seconds.
    pub finished_at: f64,
    pub duration: Duration,
    pub result: RunResult,
    /// What a passing run could not measure ([`crate::checks::Check::notes`]).
    pub notes: Vec<String>,
}

impl RunRecord {
    pub fn failure(&self) -> Option<&Failure> {
        self.result.as_ref().err()
    }

    /// The kind-specific samples that are valid for this run (none in a
    /// record a [`CheckState`] keeps: they are in its rendered series).
    pub fn samples(&self) -> &[Sample] {
        match &self.result {
            Ok(samples) => samples,
            Err(f) => &f.samples,
        }
    }

    /// Take the samples out, leaving the rest of the record.
    pub(super) fn take_samples(&mut self) -> Vec<Sample> {
        match &mut self.result {
            Ok(samples) => std::mem::take(samples),
            Err(f) => std::mem::take(&mut f.samples),
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
    /// The scheduled interval in seconds, as f64 bits; 0 until the check is
    /// scheduled.
    interval_bits: AtomicU64,
    /// The last run, without its samples: once rendered, they live only in
    /// `rendered`, so that a check keeps one copy of them, as text.
    last: ArcSwapOption<RunRecord>,
    history: Mutex<History>,
    /// This check's series, encoded when its state last changed, so that a
    /// scrape only concatenates text.
    rendered: ArcSwap<Rendered>,
    /// This check's label text, shared by each of its renders.
    blocks: Arc<LabelBlocks>,
    /// Bumped each time `rendered` is replaced, so a cache of the scrape
    /// body can tell whether this check changed.
    generation: AtomicU64,
}

/// How many recent runs each check remembers for the status page.
pub const HISTORY_LEN: usize = 20;

/// One past run, as the status page shows it: 8 bytes, since thousands of
/// checks keep [`HISTORY_LEN`] of these. The message of the last run is in
/// [`CheckState::last`]; older failures keep their reason.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    /// When the run ended, whole Unix seconds (the page shows ages).
    finished_at: u32,
    /// The run's duration in tenths of a millisecond (saturating at about
    /// seven hours) above four bits of outcome: 0 for a success, else the
    /// reason's index in [`Reason::ALL`] plus one.
    packed: u32,
}

// Every outcome fits in the four bits.
const _: () = assert!(Reason::ALL.len() < 16);

/// The last [`HISTORY_LEN`] runs of a check, in place in its state: a ring
/// that costs no allocation of its own.
#[derive(Debug, Clone, Copy)]
struct History {
    runs: [RunSummary; HISTORY_LEN],
    /// How many of `runs` hold a run (all of them once the ring is full).
    len: u8,
    /// Where the next run goes; the oldest run once the ring is full.
    next: u8,
}

// The indexes fit in a byte.
const _: () = assert!(HISTORY_LEN <= u8::MAX as usize);

impl History {
    const EMPTY: Self = Self {
        runs: [RunSummary {
            finished_at: 0,
            packed: 0,
        }; HISTORY_LEN],
        len: 0,
        next: 0,
    };

    fn push(&mut self, run: RunSummary) {
        self.runs[usize::from(self.next)] = run;
        self.next = ((usize::from(self.next) + 1) % HISTORY_LEN) as u8;
        self.len = (usize::from(self.len) + 1).min(HISTORY_LEN) as u8;
    }

    fn oldest_first(&self) -> Vec<RunSummary> {
        let len = usize::from(self.len);
        let start = usize::from(self.next) + HISTORY_LEN - len;
        (start..start + len)
            .map(|i| self.runs[i % HISTORY_LEN])
            .collect()
    }
}

impl RunSummary {
    const OUTCOME_BITS: u32 = 4;

    fn new(record: &RunRecord) -> Self {
        let outcome = record.failure().map_or(0, |f| f.reason.index() as u32 + 1);
        let tenths = (record.duration.as_secs_f64() * 10_000.0).min(f64::from(u32::MAX)) as u32;
        let tenths = tenths.min(u32::MAX >> Self::OUTCOME_BITS);
        Self {
            finished_at: record.finished_at.clamp(0.0, f64::from(u32::MAX)) as u32,
            packed: (tenths << Self::OUTCOME_BITS) | outcome,
        }
    }

    /// When the run ended, Unix seconds.
    pub fn finished_at(&self) -> f64 {
        f64::from(self.finished_at)
    }

    /// How long the run took, milliseconds.
    pub fn duration_ms(&self) -> f64 {
        f64::from(self.packed >> Self::OUTCOME_BITS) / 10.0
    }

    /// Why the run failed; `None` for a success.
    pub fn failure(&self) -> Option<Reason> {
        let outcome = (self.packed & ((1 << Self::OUTCOME_BITS) - 1)) as usize;
        outcome
            .checked_sub(1)
            .and_then(|i| Reason::ALL.get(i).copied())
    }
}

impl CheckState {
    pub fn new(name: String, kind: &'static str, labels: Vec<(String, String)>) -> Arc<Self> {
        let state = Self::unrendered(name, kind, labels);
        state.render(Vec::new());
        state
    }

    /// The state of a check scheduled at `interval`, before its first run.
    pub fn scheduled(
        name: String,
        kind: &'static str,
        labels: Vec<(String, String)>,
        interval: Duration,
    ) -> Arc<Self> {
        let state = Self::unrendered(name, kind, labels);
        state.restart(interval);
        state
    }

    fn unrendered(name: String, kind: &'static str, labels: Vec<(String, String)>) -> Arc<Self> {
        let blocks = Arc::new(LabelBlocks::new(&name, kind, &labels));
        Arc::new(Self {
            blocks,
            name,
            kind,
            labels,
            runs: AtomicU64::new(0),
            failures: Default::default(),
            last_success_bits: AtomicU64::new(0),
            interval_bits: AtomicU64::new(0),
            last: ArcSwapOption::empty(),
            history: Mutex::new(History::EMPTY),
            rendered: ArcSwap::from_pointee(Rendered::default()),
            generation: AtomicU64::new(0),
        })
    }

    /// Re-encode this check's series after its state changed, with
    /// `samples` as the last run's. Runs on the check's own task, off the
    /// scrape path.
    fn render(self: &Arc<Self>, samples: Vec<Sample>) {
        let rendered = render::render(self.clone(), samples, |om| {
            Rendered::parse(om, &self.blocks)
        });
        self.rendered.store(Arc::new(rendered));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times this check's series were rendered: read before
    /// [`Self::rendered`], an unchanged value means unchanged series.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// This check's series as last rendered, for a scrape to concatenate.
    pub(super) fn rendered(&self) -> Arc<Rendered> {
        self.rendered.load_full()
    }

    /// Whether `self` and a check with these attributes are the same series
    /// (same label set), so that counters may carry over a reload.
    pub fn same_series(&self, name: &str, kind: &str, labels: &[(String, String)]) -> bool {
        self.name == name && self.kind == kind && self.labels == labels
    }

    /// Start the check's schedule over at `interval` (exported as
    /// `runbook_check_interval_seconds`, so that staleness alerts can be
    /// relative to it): the last run's result is dropped, since the check
    /// that produced it changed, and the counters are kept.
    pub fn restart(self: &Arc<Self>, interval: Duration) {
        self.interval_bits
            .store(interval.as_secs_f64().to_bits(), Ordering::Relaxed);
        self.last.store(None);
        self.render(Vec::new());
    }

    /// Record a finished run.
    pub fn record(self: &Arc<Self>, mut record: RunRecord) {
        let samples = record.take_samples();
        self.apply(record);
        self.render(samples);
    }

    /// Count `record` and make it the last run, without rendering.
    fn apply(&self, record: RunRecord) {
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
            history.push(RunSummary::new(&record));
        }
        self.last.store(Some(Arc::new(record)));
    }

    /// The most recent runs, oldest first (at most [`HISTORY_LEN`]).
    pub fn history(&self) -> Vec<RunSummary> {
        self.history
            .lock()
            .map(|h| h.oldest_first())
            .unwrap_or_default()
    }

    /// The last run, if any, without its samples.
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

impl Viewed for CheckState {
    fn view(&self) -> CheckView<'_> {
        CheckView {
            name: &self.name,
            kind: self.kind,
            labels: &self.labels,
            last: self.last(),
            last_success: self.last_success(),
            interval: Some(f64::from_bits(self.interval_bits.load(Ordering::Relaxed)))
                .filter(|s| *s > 0.0),
            runs: self.runs_total(),
            failures: Reason::ALL.map(|r| self.failures_total(r)),
        }
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
    schedule_lag: Histogram,
}

/// Buckets of `runbook_exporter_schedule_lag_seconds`: from a millisecond
/// (a healthy scheduler) to half a minute (runs starved of permits or CPU).
const SCHEDULE_LAG_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for Store {
    fn default() -> Self {
        Self {
            checks: ArcSwap::from_pointee(Vec::new()),
            reload_ok: AtomicBool::new(false),
            reload_success_bits: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            probes_in_flight: AtomicI64::new(0),
            start_time: unix_now(),
            schedule_lag: Histogram::new(SCHEDULE_LAG_BUCKETS),
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

    /// Scheduled runs executing right now.
    pub(super) fn runs_in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When the config was last loaded successfully, Unix seconds (0 if
    /// never).
    pub(super) fn last_reload_success(&self) -> f64 {
        f64::from_bits(self.reload_success_bits.load(Ordering::Relaxed))
    }

    /// Record how late a scheduled run started: from the moment its tick
    /// was due until it held a concurrency permit and began.
    pub fn observe_schedule_lag(&self, lag: Duration) {
        self.schedule_lag.observe(lag.as_secs_f64());
    }

    pub(super) fn schedule_lag(&self) -> &Histogram {
        &self.schedule_lag
    }

    /// When the exporter started, Unix seconds.
    pub(super) fn start_time(&self) -> f64 {
        self.start_time
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Failure;

    fn summary(duration: Duration, result: RunResult) -> RunSummary {
        RunSummary::new(&RunRecord {
            finished_at: 1_764_770_000.75,
            duration,
            result,
            notes: Vec::new(),
        })
    }

    #[test]
    fn a_summary_keeps_the_outcome_seconds_and_tenths_of_a_millisecond() {
        assert_eq!(std::mem::size_of::<RunSummary>(), 8);
        let ok = summary(Duration::from_micros(12_345), Ok(Vec::new()));
        assert_eq!(ok.failure(), None);
        assert_eq!(ok.finished_at(), 1_764_770_000.0);
        assert_eq!(ok.duration_ms(), 12.3);
        for reason in Reason::ALL {
            let failed = summary(Duration::from_secs(5), Err(Failure::new(reason, "x")));
            assert_eq!(failed.failure(), Some(reason));
            assert_eq!(failed.duration_ms(), 5000.0);
        }
        let long = summary(
            Duration::from_secs(86_400),
            Err(Failure::new(Reason::Timeout, "")),
        );
        assert_eq!(long.failure(), Some(Reason::Timeout));
        assert!(long.duration_ms() > 26_000_000.0, "saturates, about 7.4 h");
    }

    #[test]
    fn the_history_keeps_the_last_runs_oldest_first() {
        let state = CheckState::new("c".into(), "tcp", Vec::new());
        assert!(state.history().is_empty());
        // Run i lasts i ms, so each summary says which run it was.
        let run = |i: u64| RunRecord {
            finished_at: 1_764_770_000.0 + i as f64,
            duration: Duration::from_millis(i),
            result: Ok(Vec::new()),
            notes: Vec::new(),
        };
        let ms = |state: &CheckState| -> Vec<f64> {
            state.history().iter().map(|r| r.duration_ms()).collect()
        };
        for i in 1..=3 {
            state.record(run(i));
        }
        assert_eq!(ms(&state), [1.0, 2.0, 3.0]);
        for i in 4..=HISTORY_LEN as u64 + 5 {
            state.record(run(i));
        }
        let expected: Vec<f64> = (6..=HISTORY_LEN as u64 + 5).map(|i| i as f64).collect();
        assert_eq!(ms(&state), expected, "the last {HISTORY_LEN}, oldest first");
    }
}
