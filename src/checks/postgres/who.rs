//! "Who": the guides' connection-exhaustion diagnosis from pg_stat_activity.
//! Client connections grouped by user, application and client address (the
//! `max_clients` largest groups), and the wait events of active sessions
//! (the `max_wait_events` most common). Each group set is read in one
//! statement that also counts every group, so a cap that cuts reports how
//! many it left out in `runbook_postgres_dropped_rows{part}`.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::query::Query;
use super::{failed, Failed, DROPPED};
use crate::checks::{MetricDesc, Sample};

/// Client connections per user, application_name and client address (pg_stat_activity; the largest max_clients groups) in the last scheduled run.
pub(super) static CLIENT_CONNECTIONS: MetricDesc = MetricDesc::gauge("postgres_client_connections", None, "Client connections per user, application_name and client address (pg_stat_activity; the largest max_clients groups) in the last scheduled run.");
/// Active client sessions per wait event (wait_event_type and wait_event, none when not waiting; the max_wait_events most common) in the last scheduled run.
pub(super) static ACTIVE_WAIT_EVENTS: MetricDesc = MetricDesc::gauge("postgres_active_wait_events", None, "Active client sessions per wait event (wait_event_type and wait_event, none when not waiting; the max_wait_events most common) in the last scheduled run.");

/// Largest groups first; the last column counts every group. A client
/// address is `local` for a Unix socket and `unknown` where the monitoring
/// role may not see it (another role's session, without pg_read_all_stats).
/// `$1` is `max_clients`.
const SQL_CLIENTS: &str = "SELECT coalesce(usename::text, ''), coalesce(application_name, ''), \
     CASE WHEN client_addr IS NOT NULL THEN host(client_addr) \
          WHEN client_port = -1 THEN 'local' ELSE 'unknown' END, \
     count(*)::float8, count(*) OVER ()::float8 \
     FROM pg_stat_activity WHERE backend_type = 'client backend' \
     GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT $1";

/// Most common first; the last column counts every group. The monitoring
/// session itself is active while it asks, and left out. `$1` is
/// `max_wait_events`.
const SQL_WAIT_EVENTS: &str = "SELECT coalesce(wait_event_type, 'none'), \
     coalesce(wait_event, 'none'), count(*)::float8, count(*) OVER ()::float8 \
     FROM pg_stat_activity \
     WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid() \
     GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT $1";

/// The statements of this collector.
pub(super) struct Statements {
    clients: Query,
    wait_events: Query,
}

impl Statements {
    pub(super) async fn prepare(
        client: &Client,
        named: bool,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            clients: Query::new(client, SQL_CLIENTS, &[Type::INT8], named).await?,
            wait_events: Query::new(client, SQL_WAIT_EVENTS, &[Type::INT8], named).await?,
        })
    }
}

/// The connections per client and the wait events, at most `max_clients`
/// and `max_wait_events` series.
pub(super) async fn collect(
    c: &Client,
    s: &Statements,
    max_clients: i64,
    max_wait_events: i64,
    samples: &mut Vec<Sample>,
) -> Result<(), Failed> {
    let rows = s
        .clients
        .rows(c, &[&max_clients])
        .await
        .map_err(failed("reading pg_stat_activity by client"))?;
    push_dropped(samples, "clients", &rows, 4);
    for row in rows {
        let user: String = row.get(0);
        let app: String = row.get(1);
        let addr: String = row.get(2);
        samples.push(
            Sample::new(&CLIENT_CONNECTIONS, row.get::<_, f64>(3))
                .with_label("user", user)
                .with_label("application_name", app)
                .with_label("client_addr", addr),
        );
    }
    let rows = s
        .wait_events
        .rows(c, &[&max_wait_events])
        .await
        .map_err(failed("reading pg_stat_activity by wait event"))?;
    push_dropped(samples, "wait_events", &rows, 3);
    for row in rows {
        let kind: String = row.get(0);
        let event: String = row.get(1);
        samples.push(
            Sample::new(&ACTIVE_WAIT_EVENTS, row.get::<_, f64>(2))
                .with_label("wait_event_type", kind)
                .with_label("wait_event", event),
        );
    }
    Ok(())
}

/// How many groups of `part` the cap left out: the count of every group
/// (column `total` of any row) minus the rows read.
fn push_dropped(
    samples: &mut Vec<Sample>,
    part: &'static str,
    rows: &[tokio_postgres::Row],
    total: usize,
) {
    let all = rows.first().map_or(0.0, |r| r.get::<_, f64>(total));
    samples
        .push(Sample::new(&DROPPED, (all - rows.len() as f64).max(0.0)).with_label("part", part));
}
