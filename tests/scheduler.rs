//! Scheduler behaviour with in-process fake checks and paused time:
//! timeouts, no overlapping runs, the global concurrency cap, spreading,
//! panics and secret redaction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use runbook_exporter::checks::{Check, Failure, Reason, RunContext, RunResult};
use runbook_exporter::config::{CheckConfig, Config};
use runbook_exporter::metrics::Store;
use runbook_exporter::scheduler::{run_once, start_offset, Scheduler};

/// A check that sleeps for `work`, counting how many of its runs (and of
/// all fakes sharing `global`) are in flight at once.
struct Sleeper {
    work: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    global: Arc<Gauge>,
    starts: Mutex<Vec<tokio::time::Instant>>,
}

#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Sleeper {
    fn new(work: Duration, global: Arc<Gauge>) -> Arc<Self> {
        Arc::new(Self {
            work,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            global,
            starts: Mutex::new(Vec::new()),
        })
    }
}

/// Leaves the counters when dropped, so that runs cancelled by the
/// scheduler's timeout are counted out too.
struct Leave<'a>(&'a Sleeper);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.global.leave();
    }
}

impl Check for Sleeper {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(async move {
            self.starts
                .lock()
                .unwrap()
                .push(tokio::time::Instant::now());
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(n, Ordering::SeqCst);
            self.global.enter();
            let _leave = Leave(self);
            tokio::time::sleep(self.work).await;
            Ok(Vec::new())
        })
    }
}

fn check_config(
    name: &str,
    interval: Duration,
    timeout: Duration,
    check: Arc<dyn Check>,
) -> Arc<CheckConfig> {
    Arc::new(CheckConfig {
        name: name.to_string(),
        interval,
        timeout,
        labels: Vec::new(),
        kind: "tcp",
        spec: None,
        settings: Default::default(),
        check,
        module: None,
        files: Default::default(),
    })
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_run_that_exceeds_its_timeout_fails_with_reason_timeout() {
    let slow = Sleeper::new(Duration::from_secs(3600), Arc::default());
    let record = run_once(slow.clone(), ms(200)).await;
    let failure = record.result.unwrap_err();
    assert_eq!(failure.reason, Reason::Timeout);
    assert_eq!(failure.message, "no result within the 200ms timeout");
    assert_eq!(record.duration, ms(200));
    // The cancelled run is really gone.
    tokio::task::yield_now().await;
    assert_eq!(slow.in_flight.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn runs_of_one_check_never_overlap_even_when_slower_than_the_interval() {
    // Each run takes 250ms against a 100ms interval (a timeout above the
    // interval is refused by the config loader, but the scheduler must
    // still hold the line).
    let check = Sleeper::new(ms(250), Arc::default());
    let store = Arc::new(Store::default());
    let mut scheduler = Scheduler::new(store.clone());
    scheduler.apply(&Config {
        max_concurrent_runs: 10,
        other_shards_checks: Vec::new(),
        modules: Vec::new(),
        probe_allowed_targets: Vec::new(),
        checks: vec![check_config("slow", ms(100), ms(1000), check.clone())],
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    scheduler.shutdown();
    assert_eq!(check.max_in_flight.load(Ordering::SeqCst), 1);
    let starts = check.starts.lock().unwrap().clone();
    assert!(starts.len() >= 5, "only {} runs", starts.len());
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= ms(250),
            "runs started {:?} apart",
            pair[1] - pair[0]
        );
    }
}

/// A check whose first run takes 550 ms and every later one 10 ms.
#[derive(Default)]
struct SlowFirst {
    starts: Mutex<Vec<tokio::time::Instant>>,
}

impl Check for SlowFirst {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(async move {
            let first = {
                let mut starts = self.starts.lock().unwrap();
                starts.push(tokio::time::Instant::now());
                starts.len() == 1
            };
            tokio::time::sleep(if first { ms(550) } else { ms(10) }).await;
            Ok(Vec::new())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn ticks_missed_during_a_slow_run_are_skipped_not_bunched() {
    let check = Arc::new(SlowFirst::default());
    let store = Arc::new(Store::default());
    let mut scheduler = Scheduler::new(store.clone());
    scheduler.apply(&Config {
        max_concurrent_runs: 10,
        other_shards_checks: Vec::new(),
        modules: Vec::new(),
        probe_allowed_targets: Vec::new(),
        checks: vec![check_config("stall", ms(100), ms(1000), check.clone())],
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    scheduler.shutdown();
    let starts = check.starts.lock().unwrap().clone();
    let offsets: Vec<Duration> = starts.iter().map(|s| *s - starts[0]).collect();
    // The slow run ends at 550 ms, over the ticks due at 100 ... 500: one
    // run at once for them, then back on the 100 ms grid. A burst would
    // start five runs in a row at 550 ms and after.
    assert_eq!(&offsets[1..3], [ms(550), ms(600)], "{offsets:?}");
    assert!(
        offsets[2..]
            .iter()
            .all(|o| o.as_nanos() % ms(100).as_nanos() == 0),
        "{offsets:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_global_cap_bounds_concurrent_runs() {
    let global = Arc::new(Gauge::default());
    let checks: Vec<Arc<Sleeper>> = (0..10)
        .map(|_| Sleeper::new(ms(50), global.clone()))
        .collect();
    let store = Arc::new(Store::default());
    let mut scheduler = Scheduler::new(store.clone());
    scheduler.apply(&Config {
        max_concurrent_runs: 2,
        other_shards_checks: Vec::new(),
        modules: Vec::new(),
        probe_allowed_targets: Vec::new(),
        checks: checks
            .iter()
            .enumerate()
            .map(|(i, c)| check_config(&format!("c{i}"), ms(100), ms(90), c.clone()))
            .collect(),
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    scheduler.shutdown();
    assert_eq!(global.max.load(Ordering::SeqCst), 2);
    assert!(checks.iter().all(|c| !c.starts.lock().unwrap().is_empty()));
}

#[tokio::test(start_paused = true)]
async fn checks_spread_over_their_interval() {
    let interval = Duration::from_secs(10);
    let checks: Vec<Arc<Sleeper>> = (0..50)
        .map(|_| Sleeper::new(ms(1), Arc::default()))
        .collect();
    let store = Arc::new(Store::default());
    let mut scheduler = Scheduler::new(store.clone());
    let t0 = tokio::time::Instant::now();
    scheduler.apply(&Config {
        max_concurrent_runs: 100,
        other_shards_checks: Vec::new(),
        modules: Vec::new(),
        probe_allowed_targets: Vec::new(),
        checks: checks
            .iter()
            .enumerate()
            .map(|(i, c)| check_config(&format!("check_{i}"), interval, ms(500), c.clone()))
            .collect(),
    });
    tokio::time::sleep(interval).await;
    scheduler.shutdown();
    // Each check ran once in its first interval, at its own offset.
    let mut seconds = [0usize; 10];
    for (i, c) in checks.iter().enumerate() {
        let starts = c.starts.lock().unwrap();
        assert_eq!(starts.len(), 1, "check_{i} ran {} times", starts.len());
        let offset = starts[0] - t0;
        // The timer's resolution is a millisecond.
        let expected = start_offset(&format!("check_{i}"), interval);
        assert!(
            offset.abs_diff(expected) <= ms(1),
            "{offset:?} vs {expected:?}"
        );
        seconds[offset.as_secs() as usize] += 1;
    }
    // 50 checks over 10 one-second buckets: no bucket is empty and none
    // holds more than a third of them.
    assert!(seconds.iter().all(|&n| n > 0 && n < 17), "{seconds:?}");
}

struct Panics;

impl Check for Panics {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(async { panic!("boom") })
    }
}

#[tokio::test]
async fn a_panicking_check_is_an_internal_failure() {
    let failure = run_once(Arc::new(Panics), ms(1000))
        .await
        .result
        .unwrap_err();
    assert_eq!(failure.reason, Reason::Internal);
}

struct Leaky;

impl Check for Leaky {
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(async {
            Err(Failure::new(
                Reason::Auth,
                "login as admin with hunter22 refused",
            ))
        })
    }
    fn secrets(&self) -> Vec<String> {
        vec!["hunter22".into()]
    }
}

#[tokio::test]
async fn failure_messages_are_scrubbed_of_the_checks_secrets() {
    let failure = run_once(Arc::new(Leaky), ms(1000))
        .await
        .result
        .unwrap_err();
    assert_eq!(failure.message, "login as admin with <redacted> refused");
}

#[tokio::test(start_paused = true)]
async fn results_reach_the_store() {
    let check = Sleeper::new(ms(1), Arc::default());
    let store = Arc::new(Store::default());
    let mut scheduler = Scheduler::new(store.clone());
    scheduler.apply(&Config {
        max_concurrent_runs: 1,
        other_shards_checks: Vec::new(),
        modules: Vec::new(),
        probe_allowed_targets: Vec::new(),
        checks: vec![check_config("one", ms(100), ms(50), check)],
    });
    tokio::time::sleep(ms(350)).await;
    scheduler.shutdown();
    let states = store.checks();
    assert_eq!(states.len(), 1);
    assert!(states[0].runs_total() >= 3);
    assert!(states[0].last().unwrap().result.is_ok());
    assert!(states[0].last_success().is_some());
}
