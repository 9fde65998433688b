//! Replication, seen from whichever side the server is on: on a primary,
//! each connected standby (pg_stat_replication: WAL sender state, lag in
//! bytes and time) and each replication slot (pg_replication_slots); on a
//! standby, its own replay (received but unreplayed WAL, replay lag, the
//! WAL receiver).

use prometheus_client::registry::Unit;
use tokio_postgres::{Client, Row, Statement};

use super::{failed, Failed};
use crate::checks::{MetricDesc, Sample};

/// Always 1 per standby connected to this primary, with its WAL sender state, in the last scheduled run.
pub(super) static REPL_STATE: MetricDesc = MetricDesc::gauge("postgres_replication_state", None, "Always 1 per standby connected to this primary, with its WAL sender state, in the last scheduled run.");
/// WAL bytes between the primary's current position and each standby's sent, write, flush and replay position in the last scheduled run.
pub(super) static REPL_LAG_BYTES: MetricDesc = MetricDesc::gauge("postgres_replication_lag", Some(Unit::Bytes), "WAL bytes between the primary's current position and each standby's sent, write, flush and replay position in the last scheduled run.");
/// write_lag, flush_lag and replay_lag of each standby (pg_stat_replication) in the last scheduled run; 0 when caught up.
pub(super) static REPL_LAG_SECONDS: MetricDesc = MetricDesc::gauge("postgres_replication_lag_time", Some(Unit::Seconds), "write_lag, flush_lag and replay_lag of each standby (pg_stat_replication) in the last scheduled run; 0 when caught up.");
/// WAL bytes each replication slot retains on this primary in the last scheduled run.
pub(super) static SLOT_RETAINED: MetricDesc = MetricDesc::gauge(
    "postgres_replication_slot_retained",
    Some(Unit::Bytes),
    "WAL bytes each replication slot retains on this primary in the last scheduled run.",
);
/// 1 if the replication slot was in use in the last scheduled run, else 0.
pub(super) static SLOT_ACTIVE: MetricDesc = MetricDesc::gauge(
    "postgres_replication_slot_active",
    None,
    "1 if the replication slot was in use in the last scheduled run, else 0.",
);
/// On a standby: age of the last replayed transaction while received WAL waits to be replayed, 0 when everything received is replayed, in the last scheduled run.
pub(super) static STANDBY_REPLAY_LAG: MetricDesc = MetricDesc::gauge("postgres_standby_replay_lag", Some(Unit::Seconds), "On a standby: age of the last replayed transaction while received WAL waits to be replayed, 0 when everything received is replayed, in the last scheduled run.");
/// On a standby: WAL bytes received but not yet replayed in the last scheduled run.
pub(super) static STANDBY_UNREPLAYED: MetricDesc = MetricDesc::gauge(
    "postgres_standby_unreplayed",
    Some(Unit::Bytes),
    "On a standby: WAL bytes received but not yet replayed in the last scheduled run.",
);
/// On a standby: 1 if the WAL receiver was streaming from the primary in the last scheduled run, else 0.
pub(super) static STANDBY_STREAMING: MetricDesc = MetricDesc::gauge("postgres_standby_wal_receiver_streaming", None, "On a standby: 1 if the WAL receiver was streaming from the primary in the last scheduled run, else 0.");

const SQL_REPLICATION: &str = "SELECT coalesce(application_name, ''), \
     coalesce(host(client_addr), 'local'), coalesce(state, 'unknown'), \
     pg_wal_lsn_diff(pg_current_wal_lsn(), sent_lsn)::float8, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), write_lsn)::float8, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::float8, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8, \
     extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8, \
     extract(epoch FROM replay_lag)::float8 \
     FROM pg_stat_replication ORDER BY application_name, client_addr LIMIT $1";

const SQL_SLOTS: &str = "SELECT slot_name::text, active, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 \
     FROM pg_replication_slots ORDER BY slot_name LIMIT $1";

const SQL_STANDBY: &str =
    "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8, \
     CASE WHEN pg_last_wal_receive_lsn() IS NULL THEN NULL \
          WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0 \
          ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8, \
     (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming')::float8";

/// The prepared statements of this collector.
pub(super) struct Statements {
    replication: Statement,
    slots: Statement,
    standby: Statement,
}

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            replication: client.prepare(SQL_REPLICATION).await?,
            slots: client.prepare(SQL_SLOTS).await?,
            standby: client.prepare(SQL_STANDBY).await?,
        })
    }
}

/// On a standby: how far its replay is behind what it received.
pub(super) async fn standby(
    c: &Client,
    s: &Statements,
    samples: &mut Vec<Sample>,
) -> Result<(), Failed> {
    let row = c
        .query_one(&s.standby, &[])
        .await
        .map_err(failed("reading the standby's replay position"))?;
    if let Some(v) = row.get::<_, Option<f64>>(0) {
        samples.push(Sample::new(&STANDBY_UNREPLAYED, v.max(0.0)));
    }
    if let Some(v) = row.get::<_, Option<f64>>(1) {
        samples.push(Sample::new(&STANDBY_REPLAY_LAG, v.max(0.0)));
    }
    samples.push(Sample::new(
        &STANDBY_STREAMING,
        row.get::<_, f64>(2).min(1.0),
    ));
    Ok(())
}

/// On a primary: its standbys and its replication slots, at most
/// `max_standbys` of each.
pub(super) async fn primary(
    c: &Client,
    s: &Statements,
    max_standbys: i64,
    samples: &mut Vec<Sample>,
) -> Result<(), Failed> {
    for row in c
        .query(&s.replication, &[&max_standbys])
        .await
        .map_err(failed("reading pg_stat_replication"))?
    {
        push_standby(&row, samples);
    }
    for row in c
        .query(&s.slots, &[&max_standbys])
        .await
        .map_err(failed("reading pg_replication_slots"))?
    {
        let slot: String = row.get(0);
        let active: bool = row.get(1);
        samples.push(
            Sample::new(&SLOT_ACTIVE, f64::from(u8::from(active))).with_label("slot", slot.clone()),
        );
        if let Some(v) = row.get::<_, Option<f64>>(2) {
            samples.push(Sample::new(&SLOT_RETAINED, v.max(0.0)).with_label("slot", slot));
        }
    }
    Ok(())
}

/// The samples of one row of pg_stat_replication.
fn push_standby(row: &Row, samples: &mut Vec<Sample>) {
    let app: String = row.get(0);
    let addr: String = row.get(1);
    let state: String = row.get(2);
    let standby = |sample: Sample| {
        sample
            .with_label("application_name", app.clone())
            .with_label("client_addr", addr.clone())
    };
    samples.push(standby(Sample::new(&REPL_STATE, 1.0)).with_label("state", state));
    let mut bytes = [None; 4];
    for (i, position) in ["sent", "write", "flush", "replay"].iter().enumerate() {
        bytes[i] = row.get::<_, Option<f64>>(3 + i).map(|v| v.max(0.0));
        if let Some(v) = bytes[i] {
            samples
                .push(standby(Sample::new(&REPL_LAG_BYTES, v)).with_label("position", *position));
        }
    }
    for (i, position) in ["write", "flush", "replay"].iter().enumerate() {
        // NULL once the standby is caught up and idle: that is 0.
        let v = row
            .get::<_, Option<f64>>(7 + i)
            .or_else(|| (bytes[1 + i] == Some(0.0)).then_some(0.0));
        if let Some(v) = v {
            samples
                .push(standby(Sample::new(&REPL_LAG_SECONDS, v)).with_label("position", *position));
        }
    }
}
