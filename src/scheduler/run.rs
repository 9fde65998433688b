//! One run of one check, as every caller needs it (the scheduler,
//! `/probe`, `check` and `diagnose`): in its own task, under a hard
//! timeout, a panic turned into reason `internal`, the message scrubbed of
//! the check's secrets, and aborted when its owner lets go of it.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::checks::{redact, Check, Failure, Reason, RunContext};
use crate::clock::unix_now;
use crate::metrics::RunRecord;

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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;

    use crate::checks::RunResult;

    /// A check that panics, or never finishes, on every run.
    enum Broken {
        Panics,
        Hangs,
    }

    impl Check for Broken {
        fn run<'a>(&'a self, _ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
            Box::pin(async move {
                match self {
                    Broken::Panics => panic!("a bug in a check"),
                    Broken::Hangs => std::future::pending().await,
                }
            })
        }
    }

    /// One run of `check` holding a guard: its failure, once the guard is
    /// asserted released.
    async fn failure_of(check: Broken, timeout: Duration) -> Failure {
        let held = Arc::new(());
        let record = run_holding(Arc::new(check), timeout, held.clone()).await;
        assert_eq!(Arc::strong_count(&held), 1, "the run still holds its guard");
        record.result.expect_err("a broken check fails")
    }

    #[tokio::test]
    async fn a_panicking_check_fails_as_internal_and_releases_what_it_held() {
        let failure = failure_of(Broken::Panics, Duration::from_secs(5)).await;
        assert_eq!(failure.reason, Reason::Internal);
        assert!(failure.message.contains("panicked"), "{}", failure.message);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_times_out_and_releases_what_it_held() {
        let failure = failure_of(Broken::Hangs, Duration::from_secs(3)).await;
        assert_eq!(failure.reason, Reason::Timeout);
        assert_eq!(failure.message, "no result within the 3s timeout");
    }

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
