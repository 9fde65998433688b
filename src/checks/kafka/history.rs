//! What the `kafka` check remembers between runs: each topic's end offsets
//! (to estimate how fast it is produced to, for lag in seconds) and each
//! group's lag and committed offsets over the last runs (for the
//! Burrow-style status).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A consumer group's status over the last runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No lag, or lag that is not growing while commits move.
    Ok,
    /// Lag grew at every run of the window.
    Lagging,
    /// Lag above zero at every run of the window, and the committed offsets
    /// did not move.
    Stalled,
    /// Lag above zero and no committed offset moved for `stopped_after`.
    Stopped,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Ok,
        Status::Lagging,
        Status::Stalled,
        Status::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Lagging => "lagging",
            Status::Stalled => "stalled",
            Status::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
struct GroupRuns {
    /// `(total lag, sum of committed offsets)` of the last runs, oldest first.
    runs: VecDeque<(i64, i64)>,
    /// When the sum of committed offsets last changed (or was first seen).
    last_commit_move: Instant,
}

/// Per-check memory of earlier runs; bounded by the groups and topics of
/// the last run.
#[derive(Debug)]
pub struct History {
    window: usize,
    stopped_after: Duration,
    groups: HashMap<String, GroupRuns>,
    /// Sum of a topic's end offsets at each of the last runs, oldest first.
    topics: HashMap<String, VecDeque<(Instant, i64)>>,
}

impl History {
    /// `window` is the number of runs the status looks at (at least 2).
    pub fn new(window: usize, stopped_after: Duration) -> Self {
        Self {
            window: window.max(2),
            stopped_after,
            groups: HashMap::new(),
            topics: HashMap::new(),
        }
    }

    /// Record the sum of `topic`'s end offsets at `now`, and return the rate
    /// at which it grew over the window, in messages per second, once two
    /// runs are known. A shrinking sum (the topic was recreated) restarts
    /// the window.
    pub fn topic_rate(&mut self, topic: &str, now: Instant, end_sum: i64) -> Option<f64> {
        let runs = self.topics.entry(topic.to_string()).or_default();
        if runs.back().is_some_and(|(_, last)| *last > end_sum) {
            runs.clear();
        }
        runs.push_back((now, end_sum));
        while runs.len() > self.window {
            runs.pop_front();
        }
        let (first_at, first) = *runs.front()?;
        let seconds = now.saturating_duration_since(first_at).as_secs_f64();
        (runs.len() >= 2 && seconds > 0.0).then(|| (end_sum - first) as f64 / seconds)
    }

    /// Record a group's total lag and sum of committed offsets at `now`, and
    /// return its status.
    pub fn group_status(&mut self, group: &str, now: Instant, lag: i64, committed: i64) -> Status {
        let entry = self
            .groups
            .entry(group.to_string())
            .or_insert_with(|| GroupRuns {
                runs: VecDeque::new(),
                last_commit_move: now,
            });
        if entry.runs.back().is_some_and(|(_, c)| *c != committed) {
            entry.last_commit_move = now;
        }
        entry.runs.push_back((lag, committed));
        while entry.runs.len() > self.window {
            entry.runs.pop_front();
        }
        if lag == 0 {
            return Status::Ok;
        }
        if now.saturating_duration_since(entry.last_commit_move) >= self.stopped_after {
            return Status::Stopped;
        }
        if entry.runs.len() < self.window {
            return Status::Ok;
        }
        let lags: Vec<i64> = entry.runs.iter().map(|(l, _)| *l).collect();
        if lags.iter().all(|l| *l > 0) && entry.runs.iter().all(|(_, c)| *c == committed) {
            return Status::Stalled;
        }
        if lags.windows(2).all(|w| w[1] > w[0]) {
            return Status::Lagging;
        }
        Status::Ok
    }

    /// Forget groups and topics the last run did not see.
    pub fn retain(&mut self, groups: &HashSet<&str>, topics: &HashSet<&str>) {
        self.groups.retain(|g, _| groups.contains(g.as_str()));
        self.topics.retain(|t, _| topics.contains(t.as_str()));
    }
}

/// How many seconds of production a group is behind on a topic: its lag
/// divided by the rate at which the topic's end offsets advanced. Zero lag is
/// zero seconds; with lag but no measurable production the value is unknown.
pub fn lag_seconds(lag: i64, rate: Option<f64>) -> Option<f64> {
    if lag <= 0 {
        return Some(0.0);
    }
    rate.filter(|r| *r > 0.0).map(|r| lag as f64 / r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_needs_two_runs_and_restarts_when_offsets_shrink() {
        let mut h = History::new(3, Duration::from_secs(600));
        let t0 = Instant::now();
        assert_eq!(h.topic_rate("t", t0, 100), None);
        assert_eq!(
            h.topic_rate("t", t0 + Duration::from_secs(10), 200),
            Some(10.0)
        );
        // Window of 3: the oldest run drops out.
        assert_eq!(
            h.topic_rate("t", t0 + Duration::from_secs(20), 200),
            Some(5.0)
        );
        assert_eq!(
            h.topic_rate("t", t0 + Duration::from_secs(30), 200),
            Some(0.0)
        );
        assert_eq!(h.topic_rate("t", t0 + Duration::from_secs(40), 5), None);
    }

    #[test]
    fn lag_seconds_is_lag_over_rate() {
        assert_eq!(lag_seconds(0, None), Some(0.0));
        assert_eq!(lag_seconds(50, Some(10.0)), Some(5.0));
        assert_eq!(lag_seconds(50, Some(0.0)), None);
        assert_eq!(lag_seconds(50, None), None);
    }

    #[test]
    fn status_follows_lag_and_commits() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut h = History::new(3, Duration::from_secs(100));
        // Consuming and keeping up.
        assert_eq!(h.group_status("g", s(0), 0, 10), Status::Ok);
        // Lag grows while commits move: lagging once the window is full.
        assert_eq!(h.group_status("g", s(10), 5, 20), Status::Ok);
        assert_eq!(h.group_status("g", s(20), 8, 30), Status::Lagging);
        // Commits stop with lag: stalled once the window saw no commit.
        assert_eq!(h.group_status("g", s(30), 9, 30), Status::Lagging);
        assert_eq!(h.group_status("g", s(40), 9, 30), Status::Stalled);
        // No commit for stopped_after (since s(20)).
        assert_eq!(h.group_status("g", s(120), 9, 30), Status::Stopped);
        // Caught up.
        assert_eq!(h.group_status("g", s(130), 0, 39), Status::Ok);
    }

    #[test]
    fn retain_forgets_what_was_not_seen() {
        let mut h = History::new(3, Duration::from_secs(100));
        let now = Instant::now();
        h.group_status("a", now, 1, 1);
        h.group_status("b", now, 1, 1);
        h.topic_rate("t", now, 1);
        h.retain(&HashSet::from(["a"]), &HashSet::new());
        assert_eq!(h.groups.len(), 1);
        assert!(h.topics.is_empty());
    }
}
