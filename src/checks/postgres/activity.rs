//! pg_stat_activity: client backends by state, and the summary row read
//! with it: recovery state, the connection settings, queries running
//! longer than `long_query_threshold`, the oldest transaction and the
//! oldest idle-in-transaction session (plus the lock columns of
//! [`super::locks`]). The summary reads pg_stat_activity once: every
//! figure is an aggregate over the same rows.

use std::time::Duration;

use prometheus_client::registry::Unit;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::query::Query;
use super::{failed, locks, Failed};
use crate::checks::{MetricDesc, Sample};

/// 1 if the server was a standby (pg_is_in_recovery()) in the last scheduled run, else 0.
pub(super) static IN_RECOVERY: MetricDesc = MetricDesc::gauge(
    "postgres_in_recovery",
    None,
    "1 if the server was a standby (pg_is_in_recovery()) in the last scheduled run, else 0.",
);
/// Client backends by state (pg_stat_activity) in the last scheduled run.
pub(super) static CONNECTIONS: MetricDesc = MetricDesc::gauge(
    "postgres_connections",
    None,
    "Client backends by state (pg_stat_activity) in the last scheduled run.",
);
/// The max_connections setting in the last scheduled run.
pub(super) static MAX_CONNECTIONS: MetricDesc = MetricDesc::gauge(
    "postgres_max_connections",
    None,
    "The max_connections setting in the last scheduled run.",
);
/// The superuser_reserved_connections setting in the last scheduled run.
pub(super) static RESERVED_CONNECTIONS: MetricDesc = MetricDesc::gauge(
    "postgres_superuser_reserved_connections",
    None,
    "The superuser_reserved_connections setting in the last scheduled run.",
);
/// Active queries running longer than long_query_threshold (from query_start) in the last scheduled run.
pub(super) static LONG_QUERIES: MetricDesc = MetricDesc::gauge("postgres_long_running_queries", None, "Active queries running longer than long_query_threshold (from query_start) in the last scheduled run.");
/// Age of the oldest active query (from query_start) in the last scheduled run; 0 if none.
pub(super) static LONGEST_QUERY: MetricDesc = MetricDesc::gauge(
    "postgres_longest_query_duration",
    Some(Unit::Seconds),
    "Age of the oldest active query (from query_start) in the last scheduled run; 0 if none.",
);
/// Age of the oldest open transaction of another client session (from xact_start) in the last scheduled run; 0 if none.
pub(super) static OLDEST_TRANSACTION: MetricDesc = MetricDesc::gauge("postgres_oldest_transaction_age", Some(Unit::Seconds), "Age of the oldest open transaction of another client session (from xact_start) in the last scheduled run; 0 if none.");
/// How long the longest idle-in-transaction session has been idle (from state_change) in the last scheduled run; 0 if none.
pub(super) static OLDEST_IDLE_IN_TRANSACTION: MetricDesc = MetricDesc::gauge("postgres_oldest_idle_in_transaction", Some(Unit::Seconds), "How long the longest idle-in-transaction session has been idle (from state_change) in the last scheduled run; 0 if none.");

const SQL_STATES: &str = "SELECT coalesce(state, 'unknown'), count(*)::float8 \
     FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1";

/// One row: recovery, settings, long queries, oldest transaction, oldest
/// idle-in-transaction session, lock waits. `$1` is the long-query
/// threshold in seconds. `{locks}` is [`locks::columns`].
const SQL_SUMMARY: &str = "SELECT pg_is_in_recovery(), \
     current_setting('max_connections')::float8, \
     current_setting('superuser_reserved_connections')::float8, \
     count(*) FILTER (WHERE a.state = 'active' \
       AND a.query_start < now() - make_interval(secs => $1))::float8, \
     coalesce(extract(epoch FROM now() - min(a.query_start) FILTER (WHERE a.state = 'active')), 0)::float8, \
     coalesce(extract(epoch FROM now() - min(a.xact_start)), 0)::float8, \
     coalesce(extract(epoch FROM now() - min(a.state_change) \
       FILTER (WHERE a.state IN ('idle in transaction', 'idle in transaction (aborted)'))), 0)::float8, \
     {locks} \
     FROM pg_stat_activity a \
     WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()";

/// The column of the summary row where the lock columns start.
const LOCK_COLUMNS: usize = 7;

/// Every known state, reported even at 0, so that alerts see explicit zeros.
const STATES: [&str; 6] = [
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
];

/// The prepared statements of this collector.
pub(super) struct Statements {
    summary: Query,
    states: Query,
}

impl Statements {
    pub(super) async fn prepare(
        client: &Client,
        version_num: i32,
        named: bool,
    ) -> Result<Self, tokio_postgres::Error> {
        let summary_sql = SQL_SUMMARY.replace("{locks}", &locks::columns(version_num));
        Ok(Self {
            summary: Query::new(client, summary_sql, &[Type::FLOAT8], named).await?,
            states: Query::new(client, SQL_STATES, &[], named).await?,
        })
    }
}

/// Read the summary row and the backends by state; returns whether the
/// server is in recovery (a standby).
pub(super) async fn collect(
    c: &Client,
    s: &Statements,
    long_query: Duration,
    samples: &mut Vec<Sample>,
) -> Result<bool, Failed> {
    let threshold = long_query.as_secs_f64();
    let mut in_recovery = false;
    if let Some(row) = s
        .summary
        .first(c, &[&threshold])
        .await
        .map_err(failed("reading pg_stat_activity"))?
    {
        in_recovery = row.get(0);
        samples.push(Sample::new(&IN_RECOVERY, f64::from(u8::from(in_recovery))));
        for (i, desc) in [
            (1, &MAX_CONNECTIONS),
            (2, &RESERVED_CONNECTIONS),
            (3, &LONG_QUERIES),
            (4, &LONGEST_QUERY),
            (5, &OLDEST_TRANSACTION),
            (6, &OLDEST_IDLE_IN_TRANSACTION),
        ] {
            if let Some(v) = row.get::<_, Option<f64>>(i) {
                samples.push(Sample::new(desc, v.max(0.0)));
            }
        }
        locks::push_samples(&row, LOCK_COLUMNS, samples);
    }

    let mut states: Vec<(String, f64)> = STATES.iter().map(|s| (s.to_string(), 0.0)).collect();
    for row in s
        .states
        .rows(c, &[])
        .await
        .map_err(failed("reading pg_stat_activity"))?
    {
        let state: String = row.get(0);
        let n: f64 = row.get(1);
        match states.iter_mut().find(|(s, _)| *s == state) {
            Some(entry) => entry.1 = n,
            None => states.push(("other".to_string(), n)),
        }
    }
    for (state, n) in states {
        samples.push(Sample::new(&CONNECTIONS, n).with_label("state", state));
    }
    Ok(in_recovery)
}
