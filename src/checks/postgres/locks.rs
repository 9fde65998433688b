//! Lock waits: how many client sessions wait for a heavyweight lock
//! (`wait_event_type = 'Lock'`) and the longest current wait
//! (`pg_locks.waitstart`, PostgreSQL 14+). They are two columns of the
//! activity summary row ([`super::activity`]), so they cost no round trip
//! of their own, and they are computed in one pass over pg_stat_activity
//! and one over pg_locks: no `pg_blocking_pids()` per waiting session,
//! which takes every lock-manager partition lock on each call and gets
//! expensive exactly when many sessions wait. A session waits for a lock
//! only while another holds it or queues before it, which is what
//! `pg_blocking_pids()` would have listed.
//! Deadlocks are counted per database by pg_stat_database ([`super::database`]).

use prometheus_client::registry::Unit;
use tokio_postgres::Row;

use crate::checks::{MetricDesc, Sample};

/// Client sessions waiting for a lock another session holds or queues for (wait_event_type Lock) in the last scheduled run.
pub(super) static LOCK_WAITING: MetricDesc = MetricDesc::gauge(
    "postgres_lock_waiting_sessions",
    None,
    "Client sessions waiting for a lock another session holds or queues for (wait_event_type Lock) in the last scheduled run.",
);
/// Longest current wait for a lock (pg_locks.waitstart, PostgreSQL 14+) in the last scheduled run; 0 if none.
pub(super) static LONGEST_LOCK_WAIT: MetricDesc = MetricDesc::gauge("postgres_longest_lock_wait", Some(Unit::Seconds), "Longest current wait for a lock (pg_locks.waitstart, PostgreSQL 14+) in the last scheduled run; 0 if none.");

/// The client sessions (of the summary's rows `a`) waiting for a lock.
const SQL_WAITING: &str = "count(*) FILTER (WHERE a.wait_event_type = 'Lock')::float8";

/// The longest current lock wait of a session the monitoring role can see
/// waiting (as [`SQL_WAITING`] counts them); `waitstart` exists from
/// PostgreSQL 14.
const SQL_LOCK_WAIT_14: &str = "(SELECT coalesce(extract(epoch FROM now() - min(l.waitstart)), 0) \
     FROM pg_locks l WHERE NOT l.granted AND l.pid IN \
       (SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'))::float8";

/// The two columns this collector adds to the summary row, for a server of
/// `version_num`.
pub(super) fn columns(version_num: i32) -> String {
    let lock_wait = if version_num >= 140_000 {
        SQL_LOCK_WAIT_14
    } else {
        "NULL::float8"
    };
    format!("{SQL_WAITING}, {lock_wait}")
}

/// The samples of the summary row's lock columns, which start at `first`.
pub(super) fn push_samples(row: &Row, first: usize, samples: &mut Vec<Sample>) {
    for (i, desc) in [(first, &LOCK_WAITING), (first + 1, &LONGEST_LOCK_WAIT)] {
        if let Some(v) = row.get::<_, Option<f64>>(i) {
            samples.push(Sample::new(desc, v));
        }
    }
}
