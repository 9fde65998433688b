//! Runs checks on their schedules; knows nothing about what a check does.
//!
//! Each check gets one task that loops: wait for its tick, take a permit
//! from the global concurrency cap, run once under a hard timeout, record
//! the result. Because the loop awaits each run before the next tick, two
//! runs of one check never overlap; ticks missed while a run was waiting or
//! running are skipped, not bunched. Each check starts at a fixed offset
//! within its interval derived from its name, so checks spread out over the
//! interval and keep their phase across restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::checks::{redact, Check, Failure, Reason, RunContext};
use crate::clock::unix_now;
use crate::config::{CheckConfig, Config};
use crate::metrics::{CheckState, RunRecord, Store};
use crate::shard::stable_hash;

/// Longest failure message kept; longer ones are cut.
const MAX_MESSAGE_CHARS: usize = 512;

/// Time a run that ignores its own timeout (a blocked thread) gets before
/// the caller gives up on it and aborts its task.
const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// Run `check` once under `timeout`. The run happens in its own task, so a
/// panicking check is reported as an internal failure; the timeout is
/// enforced inside that task, so a timed-out run is dropped (its
/// connections closed) before the result is reported. The message is
/// scrubbed of the check's secrets.
pub async fn run_once(check: Arc<dyn Check>, timeout: Duration) -> RunRecord {
    run_holding(check, timeout, ()).await
}

/// [`run_once`], keeping `held` (a concurrency permit, an in-flight guard)
/// alive exactly as long as the run's task. The run belongs to whoever
/// awaits this future: when it is dropped (a `/probe` client hung up, a
/// reload replaced the check) the run is aborted, not left behind.
pub async fn run_holding<H: Send + 'static>(
    check: Arc<dyn Check>,
    timeout: Duration,
    held: H,
) -> RunRecord {
    let start = tokio::time::Instant::now();
    let task_check = check.clone();
    let mut task = AbortOnDrop(tokio::spawn(async move {
        let _held = held;
        let ctx = RunContext { timeout };
        tokio::time::timeout(timeout, task_check.run(&ctx)).await
    }));
    let timed_out = || {
        Err(Failure::new(
            Reason::Timeout,
            format!(
                "no result within the {} timeout",
                humantime::format_duration(timeout)
            ),
        ))
    };
    let result = match tokio::time::timeout(timeout + TIMEOUT_GRACE, &mut task.0).await {
        Ok(Ok(Ok(result))) => result,
        Ok(Ok(Err(_))) | Err(_) => timed_out(),
        Ok(Err(join)) => Err(Failure::new(
            Reason::Internal,
            if join.is_panic() {
                "the check panicked; this is a bug, please report it"
            } else {
                "the check was cancelled"
            },
        )),
    };
    drop(task);
    let duration = start.elapsed();
    let result = result.map_err(|mut f| {
        f.message = truncate(&redact(&f.message, &check.secrets()), MAX_MESSAGE_CHARS);
        f
    });
    let notes = match &result {
        Ok(_) => check
            .notes()
            .iter()
            .map(|n| truncate(&redact(n, &check.secrets()), MAX_MESSAGE_CHARS))
            .collect(),
        Err(_) => Vec::new(),
    };
    RunRecord {
        finished_at: unix_now(),
        duration,
        result,
        notes,
    }
}

/// A spawned run that is aborted when its owner lets go of it.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Where in its interval a check starts: a stable hash of its name (the
/// one sharding uses, fixed by its specification, so offsets stay the same
/// across restarts, replicas and releases).
pub fn start_offset(name: &str, interval: Duration) -> Duration {
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(stable_hash(name)) % nanos) as u64)
}

struct Task {
    config: Arc<CheckConfig>,
    state: Arc<CheckState>,
    handle: JoinHandle<()>,
}

/// The set of running check loops.
pub struct Scheduler {
    store: Arc<Store>,
    permits: Arc<ArcSwap<Semaphore>>,
    max_concurrent_runs: usize,
    tasks: HashMap<String, Task>,
}

impl Scheduler {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            permits: Arc::new(ArcSwap::from_pointee(Semaphore::new(0))),
            max_concurrent_runs: 0,
            tasks: HashMap::new(),
        }
    }

    /// Make the running checks match `config`: checks whose definition and
    /// files did not change keep running untouched; changed checks (a file
    /// they read rewritten included) restart and keep their counters;
    /// removed checks stop. Must be called inside a Tokio runtime.
    pub fn apply(&mut self, config: &Config) {
        if config.max_concurrent_runs != self.max_concurrent_runs {
            self.max_concurrent_runs = config.max_concurrent_runs;
            self.permits
                .store(Arc::new(Semaphore::new(config.max_concurrent_runs)));
        }
        let mut old = std::mem::take(&mut self.tasks);
        let mut states = Vec::with_capacity(config.checks.len());
        for check in &config.checks {
            let task = match old.remove(&check.name) {
                Some(task) if task.config.same_definition(check) => task,
                previous => {
                    let state = match previous {
                        Some(prev) => {
                            prev.handle.abort();
                            let files = prev.config.files.changed(&check.files);
                            if !files.is_empty() {
                                tracing::info!(
                                    check = %check.name,
                                    ?files,
                                    "rebuilding the check: files it reads changed"
                                );
                            }
                            if prev
                                .state
                                .same_series(&check.name, check.kind(), &check.labels)
                            {
                                prev.state.forget_last_run();
                                prev.state
                            } else {
                                new_state(check)
                            }
                        }
                        None => new_state(check),
                    };
                    self.spawn(check.clone(), state)
                }
            };
            states.push(task.state.clone());
            self.tasks.insert(check.name.clone(), task);
        }
        for (_, task) in old {
            task.handle.abort();
        }
        self.store.set_checks(states);
    }

    fn spawn(&self, config: Arc<CheckConfig>, state: Arc<CheckState>) -> Task {
        state.set_interval(config.interval);
        let handle = tokio::spawn(run_loop(
            config.clone(),
            state.clone(),
            self.permits.clone(),
            self.store.clone(),
        ));
        Task {
            config,
            state,
            handle,
        }
    }

    /// Stop every check loop.
    pub fn shutdown(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.handle.abort();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn new_state(check: &CheckConfig) -> Arc<CheckState> {
    CheckState::new(check.name.clone(), check.kind(), check.labels.clone())
}

async fn run_loop(
    config: Arc<CheckConfig>,
    state: Arc<CheckState>,
    permits: Arc<ArcSwap<Semaphore>>,
    store: Arc<Store>,
) {
    let first = tokio::time::Instant::now() + start_offset(&config.name, config.interval);
    let mut ticker = tokio::time::interval_at(first, config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let due = ticker.tick().await;
        let semaphore = permits.load_full();
        let Ok(permit) = semaphore.acquire_owned().await else {
            // Closed semaphores are never used; nothing to run with.
            return;
        };
        store.observe_schedule_lag(due.elapsed());
        // The permit and the in-flight count go with the run's task, so an
        // aborted loop (reload, removed check) releases them only once the
        // run itself has stopped.
        let held = (permit, store.run_in_flight());
        // Boxed: the run's state lives on the heap only while it runs, so
        // the thousands of idle check tasks stay small.
        let record = Box::pin(run_holding(config.check.clone(), config.timeout, held)).await;
        log_transition(
            &config.name,
            config.kind(),
            state.last().as_deref(),
            &record,
        );
        state.record(record);
    }
}

/// Log when a check changes between up and down, and every failure at
/// debug level, so logs say what changed without repeating every run.
fn log_transition(name: &str, kind: &str, previous: Option<&RunRecord>, now: &RunRecord) {
    let was_up = previous.map(|r| r.result.is_ok());
    match (&now.result, was_up) {
        (Err(f), Some(true) | None) => tracing::warn!(
            check = name,
            kind,
            reason = %f.reason,
            error = %f.message,
            "check failed"
        ),
        (Err(f), Some(false)) => tracing::debug!(
            check = name,
            kind,
            reason = %f.reason,
            error = %f.message,
            "check still failing"
        ),
        (Ok(_), Some(false)) => tracing::info!(check = name, kind, "check recovered"),
        (Ok(_), _) => tracing::debug!(check = name, kind, "check succeeded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_within_the_interval() {
        let interval = Duration::from_secs(15);
        let a = start_offset("api_health", interval);
        assert_eq!(a, start_offset("api_health", interval));
        assert!(a < interval);
        assert_ne!(a, start_offset("postgres_port", interval));
    }

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
