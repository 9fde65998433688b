//! What the `kafka` check remembers between runs: each partition's
//! committed offset and lag over the last runs of each group, for the
//! Burrow-style status per partition (the group's status is its worst
//! partition's). Bounded by the partitions of the last run's groups.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A partition's (or a group's) status over the last runs, from best to
/// worst; `Unknown` is a group without committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// No lag, or lag the consumer keeps up with.
    Ok,
    /// The committed offset moves but the lag grew at every run of the window.
    Lagging,
    /// The committed offset went back within the window.
    Rewinding,
    /// Lag at every run of the window and the committed offset did not move.
    Stalled,
    /// Lag, and the committed offset did not move for `stopped_after`.
    Stopped,
    /// The group has no committed offsets (it does not exist, or they expired).
    Unknown,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Ok,
        Status::Lagging,
        Status::Rewinding,
        Status::Stalled,
        Status::Stopped,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Lagging => "lagging",
            Status::Rewinding => "rewinding",
            Status::Stalled => "stalled",
            Status::Stopped => "stopped",
            Status::Unknown => "unknown",
        }
    }
}

#[derive(Debug)]
struct PartitionRuns {
    /// `(committed offset, lag)` of the last runs, oldest first.
    runs: VecDeque<(i64, i64)>,
    /// When the committed offset last changed (or was first seen).
    last_move: Instant,
}

/// `(group, topic, partition)`.
type Key = (String, String, i32);

/// Per-check memory of earlier runs.
#[derive(Debug)]
pub struct History {
    window: usize,
    stopped_after: Duration,
    partitions: HashMap<Key, PartitionRuns>,
}

impl History {
    /// `window` is the number of runs the status looks at (at least 2).
    pub fn new(window: usize, stopped_after: Duration) -> Self {
        Self {
            window: window.max(2),
            stopped_after,
            partitions: HashMap::new(),
        }
    }

    /// Record a partition's committed offset and lag at `now`, and return
    /// its status by Burrow's rules over the window.
    pub fn partition_status(
        &mut self,
        key: (&str, &str, i32),
        now: Instant,
        committed: i64,
        lag: i64,
    ) -> Status {
        let entry = self
            .partitions
            .entry((key.0.to_string(), key.1.to_string(), key.2))
            .or_insert_with(|| PartitionRuns {
                runs: VecDeque::new(),
                last_move: now,
            });
        if entry.runs.back().is_some_and(|(c, _)| *c != committed) {
            entry.last_move = now;
        }
        entry.runs.push_back((committed, lag));
        while entry.runs.len() > self.window {
            entry.runs.pop_front();
        }
        let runs: Vec<(i64, i64)> = entry.runs.iter().copied().collect();
        if runs.windows(2).any(|w| w[1].0 < w[0].0) {
            return Status::Rewinding;
        }
        if lag == 0 {
            return Status::Ok;
        }
        if now.saturating_duration_since(entry.last_move) >= self.stopped_after {
            return Status::Stopped;
        }
        if runs.len() < self.window {
            return Status::Ok;
        }
        if runs.iter().all(|(c, l)| *l > 0 && *c == committed) {
            return Status::Stalled;
        }
        if runs.windows(2).all(|w| w[1].1 > w[0].1) {
            return Status::Lagging;
        }
        Status::Ok
    }

    /// Forget partitions of groups the last run did not see.
    pub fn retain(&mut self, seen: &HashSet<Key>) {
        self.partitions.retain(|k, _| seen.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_lag_and_commits_per_partition() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut h = History::new(3, Duration::from_secs(100));
        let k = ("g", "t", 0);
        assert_eq!(h.partition_status(k, s(0), 10, 0), Status::Ok);
        // Lag grows while commits move: lagging once the window is full.
        assert_eq!(h.partition_status(k, s(10), 20, 5), Status::Ok);
        assert_eq!(h.partition_status(k, s(20), 30, 8), Status::Lagging);
        // Commits stop with lag: stalled once the window saw no move.
        assert_eq!(h.partition_status(k, s(30), 30, 9), Status::Lagging);
        assert_eq!(h.partition_status(k, s(40), 30, 9), Status::Stalled);
        // No move for stopped_after (since s(20)).
        assert_eq!(h.partition_status(k, s(120), 30, 9), Status::Stopped);
        // Caught up.
        assert_eq!(h.partition_status(k, s(130), 39, 0), Status::Ok);
        // Reset to an earlier offset.
        assert_eq!(h.partition_status(k, s(140), 5, 34), Status::Rewinding);
    }

    #[test]
    fn the_worst_status_orders_last() {
        assert!(Status::Ok < Status::Lagging);
        assert!(Status::Lagging < Status::Rewinding);
        assert!(Status::Rewinding < Status::Stalled);
        assert!(Status::Stalled < Status::Stopped);
    }

    #[test]
    fn retain_forgets_what_was_not_seen() {
        let mut h = History::new(3, Duration::from_secs(100));
        let now = Instant::now();
        h.partition_status(("a", "t", 0), now, 1, 1);
        h.partition_status(("b", "t", 0), now, 1, 1);
        h.retain(&HashSet::from([("a".to_string(), "t".to_string(), 0)]));
        assert_eq!(h.partitions.len(), 1);
    }
}
