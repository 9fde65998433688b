//! Replication, seen from whichever side the server is on: on a primary,
//! each connected standby (pg_stat_replication: WAL sender state, lag in
//! bytes and time) and each replication slot (pg_replication_slots); on a
//! standby, its own replay (received but unreplayed WAL, replay lag, the
//! WAL receiver).
//!
//! Slots are read largest retained WAL first, so the slot that fills the
//! disk is never the one `max_standbys` cuts off (slots the server already
//! invalidated, `wal_status = 'lost'`, come before all of them). While the
//! standby's WAL receiver is not streaming, its replay lag is the age of
//! its last replayed transaction: it keeps growing, rather than reading 0
//! because nothing new arrives to be replayed.

use prometheus_client::registry::Unit;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};

use super::query::Query;
use super::{failed, Failed, DROPPED};
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
/// 1 for the wal_status of each replication slot (reserved, extended, unreserved, lost; PostgreSQL 13+), 0 for the others, in the last scheduled run.
pub(super) static SLOT_WAL_STATUS: MetricDesc = MetricDesc::gauge("postgres_replication_slot_wal_status", None, "1 for the wal_status of each replication slot (reserved, extended, unreserved, lost; PostgreSQL 13+), 0 for the others, in the last scheduled run.");
/// On a standby: age of the last replayed transaction while received WAL waits to be replayed or while the WAL receiver is not streaming, 0 when everything received is replayed, in the last scheduled run.
pub(super) static STANDBY_REPLAY_LAG: MetricDesc = MetricDesc::gauge("postgres_standby_replay_lag", Some(Unit::Seconds), "On a standby: age of the last replayed transaction while received WAL waits to be replayed or while the WAL receiver is not streaming, 0 when everything received is replayed, in the last scheduled run.");
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

/// Largest retained WAL first (invalidated slots before all); the last
/// column counts every slot. `{wal_status}` is the column, or NULL before
/// PostgreSQL 13.
const SQL_SLOTS: &str = "SELECT slot_name::text, active, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS retained, \
     {wal_status}::text AS wal_status, count(*) OVER ()::float8 \
     FROM pg_replication_slots \
     ORDER BY ({wal_status} = 'lost') DESC NULLS LAST, retained DESC NULLS LAST, slot_name LIMIT $1";

/// The values of pg_replication_slots.wal_status, each reported per slot.
const WAL_STATUSES: [&str; 4] = ["reserved", "extended", "unreserved", "lost"];

/// Unreplayed WAL, replay lag (see the module docs) and whether the WAL
/// receiver streams.
const SQL_STANDBY: &str = "WITH w AS (SELECT pg_last_wal_receive_lsn() AS received, \
       pg_last_wal_replay_lsn() AS replayed, \
       EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming) \
     SELECT pg_wal_lsn_diff(received, replayed)::float8, \
     CASE WHEN NOT streaming THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) \
          WHEN received IS NULL THEN NULL \
          WHEN received <= replayed THEN 0 \
          ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8, \
     streaming::int::float8 FROM w";

/// The prepared statements of this collector.
pub(super) struct Statements {
    replication: Query,
    slots: Query,
    standby: Query,
}

impl Statements {
    pub(super) async fn prepare(
        client: &Client,
        version_num: i32,
        named: bool,
    ) -> Result<Self, tokio_postgres::Error> {
        let wal_status = if version_num >= 130_000 {
            "wal_status"
        } else {
            "NULL"
        };
        let slots = SQL_SLOTS.replace("{wal_status}", wal_status);
        Ok(Self {
            replication: Query::new(client, SQL_REPLICATION, &[Type::INT8], named).await?,
            slots: Query::new(client, slots, &[Type::INT8], named).await?,
            standby: Query::new(client, SQL_STANDBY, &[], named).await?,
        })
    }
}

/// On a standby: how far its replay is behind what it received.
pub(super) async fn standby(
    c: &Client,
    s: &Statements,
    samples: &mut Vec<Sample>,
) -> Result<(), Failed> {
    let Some(row) = s
        .standby
        .first(c, &[])
        .await
        .map_err(failed("reading the standby's replay position"))?
    else {
        return Ok(());
    };
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
    for row in s
        .replication
        .rows(c, &[&max_standbys])
        .await
        .map_err(failed("reading pg_stat_replication"))?
    {
        push_standby(&row, samples);
    }
    let slots = s
        .slots
        .rows(c, &[&max_standbys])
        .await
        .map_err(failed("reading pg_replication_slots"))?;
    let total = slots.first().map_or(0.0, |r| r.get::<_, f64>(4));
    samples.push(
        Sample::new(&DROPPED, (total - slots.len() as f64).max(0.0)).with_label("part", "slots"),
    );
    for row in slots {
        push_slot(&row, samples);
    }
    Ok(())
}

/// The samples of one row of pg_replication_slots.
fn push_slot(row: &Row, samples: &mut Vec<Sample>) {
    let slot: String = row.get(0);
    let active: bool = row.get(1);
    samples.push(
        Sample::new(&SLOT_ACTIVE, f64::from(u8::from(active))).with_label("slot", slot.clone()),
    );
    if let Some(v) = row.get::<_, Option<f64>>(2) {
        samples.push(Sample::new(&SLOT_RETAINED, v.max(0.0)).with_label("slot", slot.clone()));
    }
    if let Some(status) = row.get::<_, Option<String>>(3) {
        for known in WAL_STATUSES {
            samples.push(
                Sample::new(&SLOT_WAL_STATUS, f64::from(u8::from(status == known)))
                    .with_label("slot", slot.clone())
                    .with_label("wal_status", known),
            );
        }
    }
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
