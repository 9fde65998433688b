//! Runs checks on their schedules; knows nothing about what a check does.
//!
//! One dispatcher task owns a queue of due times (a binary heap of
//! `(when, slot)`), and an idle check is nothing more than its entry in that
//! queue and its slot in the table: no task, no timer of its own. When the
//! earliest entry is due, the dispatcher takes a permit from the global
//! concurrency cap and starts the run in its own task, which records the
//! result and puts the check back in the queue at its next tick. So at most
//! `max_concurrent_runs` runs exist at once, and the exporter's memory per
//! idle check stays small at 100,000 checks.
//!
//! A check is queued again only when its run has ended, so two runs of one
//! check never overlap; ticks missed while a run waited or ran are
//! skipped, not bunched: the overdue check runs once right away, then
//! again on its grid (`first tick + k × interval`). Each check's first tick is a fixed offset within its
//! interval derived from its name, so checks spread over the interval and
//! keep their phase across restarts.

mod run;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

pub use run::{run_holding, run_once};

use crate::config::{CheckConfig, Config};
use crate::metrics::{CheckState, RunRecord, Store};
use crate::shard::stable_hash;

/// Where in its interval a check starts: a stable hash of its name (the
/// one sharding uses, fixed by its specification, so offsets stay the same
/// across restarts, replicas and releases).
pub fn start_offset(name: &str, interval: Duration) -> Duration {
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(stable_hash(name)) % nanos) as u64)
}

/// The first tick of a check's grid (`origin + k * interval`) after `now`.
fn next_tick(origin: Instant, interval: Duration, now: Instant) -> Instant {
    let interval_nanos = interval.as_nanos().max(1);
    let behind = now.saturating_duration_since(origin).as_nanos();
    let ticks = behind / interval_nanos + 1;
    let offset = interval_nanos.saturating_mul(ticks);
    origin + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
}

/// One scheduled check. Its id changes whenever it is (re)started, so a
/// queue entry or a finishing run of a replaced check finds no slot.
struct Slot {
    config: Arc<CheckConfig>,
    state: Arc<CheckState>,
    /// The check's first tick; later ticks are on its grid.
    origin: Instant,
    /// The run in flight, aborted when the check is replaced or removed.
    running: Option<AbortHandle>,
}

/// The checks and their queue, behind one lock that is never held across
/// an await.
#[derive(Default)]
struct Table {
    slots: HashMap<u64, Slot>,
    /// Due times; an entry whose slot is gone is skipped when it surfaces.
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
}

impl Table {
    /// Drop entries of removed checks from the top; the earliest live one.
    fn peek(&mut self) -> Option<(Instant, u64)> {
        while let Some(Reverse((at, id))) = self.queue.peek().copied() {
            if self.slots.contains_key(&id) {
                return Some((at, id));
            }
            self.queue.pop();
        }
        None
    }

    fn insert(&mut self, config: Arc<CheckConfig>, state: Arc<CheckState>) {
        let origin = Instant::now() + start_offset(&config.name, config.interval);
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse((origin, id)));
        self.slots.insert(
            id,
            Slot {
                config,
                state,
                origin,
                running: None,
            },
        );
    }

    fn remove(&mut self, id: u64) -> Option<Slot> {
        let slot = self.slots.remove(&id)?;
        if let Some(run) = &slot.running {
            run.abort();
        }
        Some(slot)
    }
}

/// What the dispatcher and the runs share with [`Scheduler`].
struct Shared {
    table: Mutex<Table>,
    /// Wakes the dispatcher: the queue's head may have changed.
    wake: Notify,
    permits: ArcSwap<Semaphore>,
    store: Arc<Store>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic never happens while the lock is held (no user code runs
        // under it); recover the table rather than stop scheduling.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The set of scheduled checks and the task that runs them.
pub struct Scheduler {
    shared: Arc<Shared>,
    max_concurrent_runs: usize,
    dispatcher: Option<JoinHandle<()>>,
}

impl Scheduler {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                wake: Notify::new(),
                permits: ArcSwap::from_pointee(Semaphore::new(0)),
                store,
            }),
            max_concurrent_runs: 0,
            dispatcher: None,
        }
    }

    /// Make the scheduled checks match `config`: checks whose definition and
    /// files did not change keep running untouched; changed checks (a file
    /// they read rewritten included) restart and keep their counters;
    /// removed checks stop. Must be called inside a Tokio runtime.
    pub fn apply(&mut self, config: &Config) {
        if config.max_concurrent_runs != self.max_concurrent_runs {
            self.max_concurrent_runs = config.max_concurrent_runs;
            self.shared
                .permits
                .store(Arc::new(Semaphore::new(config.max_concurrent_runs)));
        }
        let mut table = self.shared.table();
        let mut old: HashMap<String, u64> = table
            .slots
            .iter()
            .map(|(id, slot)| (slot.config.name.clone(), *id))
            .collect();
        let mut states = Vec::with_capacity(config.checks.len());
        for check in &config.checks {
            let previous = old.remove(&check.name);
            if let Some(id) = previous {
                if table.slots[&id].config.same_definition(check) {
                    states.push(table.slots[&id].state.clone());
                    continue;
                }
            }
            let state = match previous.and_then(|id| table.remove(id)) {
                Some(prev) => carried_over(prev, check),
                None => new_state(check),
            };
            states.push(state.clone());
            table.insert(check.clone(), state);
        }
        for (_, id) in old {
            table.remove(id);
        }
        drop(table);
        self.shared.store.set_checks(states);
        if self.dispatcher.is_none() {
            self.dispatcher = Some(tokio::spawn(dispatch(self.shared.clone())));
        }
        self.shared.wake.notify_one();
    }

    /// Stop every check and the dispatcher.
    pub fn shutdown(&mut self) {
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.abort();
        }
        let mut table = self.shared.table();
        let ids: Vec<u64> = table.slots.keys().copied().collect();
        for id in ids {
            table.remove(id);
        }
        table.queue.clear();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn new_state(check: &CheckConfig) -> Arc<CheckState> {
    CheckState::scheduled(
        check.name.clone(),
        check.kind(),
        check.labels.clone(),
        check.interval,
    )
}

/// The state a changed check continues with: its counters when its series
/// are the same, a fresh state otherwise.
fn carried_over(prev: Slot, check: &CheckConfig) -> Arc<CheckState> {
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
        prev.state.restart(check.interval);
        prev.state
    } else {
        new_state(check)
    }
}

/// The dispatcher: sleep until the earliest entry is due (or the queue
/// changes), then start it under a permit of the concurrency cap.
async fn dispatch(shared: Arc<Shared>) {
    loop {
        let head = shared.table().peek();
        match head {
            None => shared.wake.notified().await,
            Some((at, _)) if at > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            Some(_) => {
                let semaphore = shared.permits.load_full();
                let Ok(permit) = semaphore.acquire_owned().await else {
                    // Closed semaphores are never used; nothing to run with.
                    return;
                };
                start_due(&shared, permit);
            }
        }
    }
}

/// Start the earliest entry if it is still due now that a permit is held
/// (a reload may have removed it while the dispatcher waited).
fn start_due(shared: &Arc<Shared>, permit: OwnedSemaphorePermit) {
    let now = Instant::now();
    let mut table = shared.table();
    let Some((at, id)) = table.peek().filter(|(at, _)| *at <= now) else {
        return;
    };
    table.queue.pop();
    shared.store.observe_schedule_lag(now - at);
    let Some(slot) = table.slots.get_mut(&id) else {
        return;
    };
    // The permit and the in-flight count go with the run's own task, so an
    // aborted run (reload, removed check) releases them only once the run
    // itself has stopped.
    let held = (permit, shared.store.run_in_flight());
    let run = tokio::spawn(run_and_requeue(
        shared.clone(),
        id,
        at,
        slot.config.clone(),
        slot.state.clone(),
        held,
    ));
    slot.running = Some(run.abort_handle());
}

/// One scheduled run of the tick due `at`: run, record, and queue the
/// check at its next tick, or right away when the run outlasted that tick.
async fn run_and_requeue(
    shared: Arc<Shared>,
    id: u64,
    at: Instant,
    config: Arc<CheckConfig>,
    state: Arc<CheckState>,
    held: (OwnedSemaphorePermit, crate::metrics::InFlight),
) {
    let record = run_holding(config.check.clone(), config.timeout, held).await;
    log_transition(
        &config.name,
        config.kind(),
        state.last().as_deref(),
        &record,
    );
    state.record(record);
    let mut table = shared.table();
    let Some(slot) = table.slots.get_mut(&id) else {
        return;
    };
    slot.running = None;
    let now = Instant::now();
    let next = next_tick(slot.origin, config.interval, at).max(now);
    table.queue.push(Reverse((next, id)));
    // The dispatcher sleeps until the head it saw; wake it only when this
    // check is now earlier than everything else.
    let is_head = table.queue.peek().map(|Reverse((_, head))| *head) == Some(id);
    drop(table);
    if is_head {
        shared.wake.notify_one();
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
    fn the_next_tick_skips_missed_ones_and_stays_on_the_grid() {
        let origin = Instant::now();
        let s = Duration::from_secs;
        // Just after a tick: the following one.
        assert_eq!(next_tick(origin, s(10), origin + s(1)), origin + s(10));
        // Exactly on a tick: the one after it (that tick just ran).
        assert_eq!(next_tick(origin, s(10), origin + s(10)), origin + s(20));
        // Three ticks missed by a long run: skipped, not bunched.
        assert_eq!(next_tick(origin, s(10), origin + s(35)), origin + s(40));
    }
}
