//! Reconnect backoff for kinds that keep a long-lived connection: after a
//! failed connect the next attempt waits 1 s, 2 s, 4 s … up to 30 s, and runs
//! in between repeat the last failure without touching the target, so a
//! sick server is not hammered with connection attempts.

use std::time::Duration;

use tokio::time::Instant;

use crate::checks::{Failure, Reason};

const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Backoff state of one connection.
#[derive(Debug, Default)]
pub struct Reconnect {
    failures: u32,
    retry_at: Option<Instant>,
    last: Option<(Reason, String)>,
}

impl Reconnect {
    /// `Err` with the last failure while a new attempt must wait.
    pub fn ready(&self) -> Result<(), Failure> {
        match (self.retry_at, &self.last) {
            (Some(at), Some((reason, message))) if Instant::now() < at => Err(Failure::new(
                *reason,
                format!(
                    "{message} (next reconnect attempt in {:.1}s)",
                    (at - Instant::now()).as_secs_f64()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Record a successful connect; returns how many attempts had failed
    /// before it.
    pub fn succeeded(&mut self) -> u32 {
        self.retry_at = None;
        self.last = None;
        std::mem::take(&mut self.failures)
    }

    /// Record a failed connect and schedule the next attempt.
    pub fn failed(&mut self, reason: Reason, message: &str) {
        self.failures = self.failures.saturating_add(1);
        let exp = (self.failures - 1).min(16);
        let delay = FIRST_DELAY.saturating_mul(1 << exp).min(MAX_DELAY);
        self.retry_at = Some(Instant::now() + delay);
        self.last = Some((reason, message.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_double_each_time_up_to_the_cap() {
        let mut r = Reconnect::default();
        assert!(r.ready().is_ok());
        for expected in [1, 2, 4, 8, 16, 30, 30] {
            r.failed(Reason::ConnectionRefused, "refused");
            let err = r.ready().unwrap_err();
            assert_eq!(err.reason, Reason::ConnectionRefused);
            assert!(err
                .message
                .starts_with("refused (next reconnect attempt in"));
            tokio::time::advance(Duration::from_secs(expected) - Duration::from_millis(1)).await;
            assert!(r.ready().is_err(), "still waiting before {expected}s");
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(r.ready().is_ok(), "ready after {expected}s");
        }
        assert_eq!(r.succeeded(), 7);
        assert!(r.ready().is_ok());
    }
}
