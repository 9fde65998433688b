//! Table health of a `clickhouse` check: replication depth from
//! `system.replicas` (queue size and absolute delay per replicated table,
//! read-only replicas) with `replicas: true`, and stuck mutations from
//! `system.mutations` (unfinished and older than `mutation_stuck_after`)
//! with `mutations: true`. Per-table series are the `max_tables` worst;
//! totals count every table, and `runbook_clickhouse_dropped_rows{part}`
//! says how many tables the cap left out. Two short queries per part, all
//! readable by a `readonly = 1` user.

use std::time::Duration;

use prometheus_client::registry::Unit;

use super::ClickhouseCheck;
use crate::checks::{Failure, MetricDesc, Reason, Sample};

/// Replication queue length of each replicated table (system.replicas.queue_size; the max_tables most delayed) in the last scheduled run.
pub static REPLICA_QUEUE: MetricDesc = MetricDesc::gauge("clickhouse_replica_queue_size", None, "Replication queue length of each replicated table (system.replicas.queue_size; the max_tables most delayed) in the last scheduled run.");
/// How far each replicated table is behind (system.replicas.absolute_delay; the max_tables most delayed) in the last scheduled run.
pub static REPLICA_DELAY: MetricDesc = MetricDesc::gauge("clickhouse_replica_absolute_delay", Some(Unit::Seconds), "How far each replicated table is behind (system.replicas.absolute_delay; the max_tables most delayed) in the last scheduled run.");
/// Replicated tables on the server (rows of system.replicas) in the last scheduled run.
pub static REPLICAS: MetricDesc = MetricDesc::gauge(
    "clickhouse_replicas",
    None,
    "Replicated tables on the server (rows of system.replicas) in the last scheduled run.",
);
/// Replicated tables in read-only mode (system.replicas.is_readonly; lost their Keeper session or metadata) in the last scheduled run.
pub static REPLICAS_READONLY: MetricDesc = MetricDesc::gauge("clickhouse_replicas_readonly", None, "Replicated tables in read-only mode (system.replicas.is_readonly; lost their Keeper session or metadata) in the last scheduled run.");
/// Unfinished mutations older than mutation_stuck_after, per table (the max_tables with most), in the last scheduled run.
pub static TABLE_STUCK_MUTATIONS: MetricDesc = MetricDesc::gauge("clickhouse_table_stuck_mutations", None, "Unfinished mutations older than mutation_stuck_after, per table (the max_tables with most), in the last scheduled run.");
/// Unfinished mutations older than mutation_stuck_after on the whole server in the last scheduled run.
pub static STUCK_MUTATIONS: MetricDesc = MetricDesc::gauge(
    "clickhouse_stuck_mutations",
    None,
    "Unfinished mutations older than mutation_stuck_after on the whole server in the last scheduled run.",
);
/// Age of the oldest unfinished mutation older than mutation_stuck_after in the last scheduled run; 0 if none.
pub static OLDEST_STUCK_MUTATION: MetricDesc = MetricDesc::gauge("clickhouse_oldest_stuck_mutation_age", Some(Unit::Seconds), "Age of the oldest unfinished mutation older than mutation_stuck_after in the last scheduled run; 0 if none.");
/// Tables the max_tables cap left out of a per-table part (part: replicas, mutations) in the last scheduled run.
pub static DROPPED: MetricDesc = MetricDesc::gauge("clickhouse_dropped_rows", None, "Tables the max_tables cap left out of a per-table part (part: replicas, mutations) in the last scheduled run.");

/// What to read, from the check's config.
pub(super) struct Tables {
    pub(super) replicas: bool,
    pub(super) mutations: bool,
    pub(super) max_tables: u32,
    pub(super) stuck_after: Duration,
}

impl Tables {
    /// Add the samples of the parts turned on; the first query that fails
    /// fails the run.
    pub(super) async fn collect(
        &self,
        check: &ClickhouseCheck,
        timeout: Duration,
        samples: &mut Vec<Sample>,
    ) -> Result<(), Failure> {
        let n = self.max_tables;
        if self.replicas {
            let rows = tsv(
                check,
                &format!(
                    "SELECT database, table, queue_size, absolute_delay FROM system.replicas \
                 ORDER BY absolute_delay DESC, queue_size DESC, database, table LIMIT {n}"
                ),
                timeout,
            )
            .await?;
            let totals = tsv(
                check,
                "SELECT count(), countIf(is_readonly) FROM system.replicas",
                timeout,
            )
            .await?;
            let (all, readonly) = (number(&totals, 0, 0)?, number(&totals, 0, 1)?);
            samples.push(Sample::new(&REPLICAS, all));
            samples.push(Sample::new(&REPLICAS_READONLY, readonly));
            dropped(samples, "replicas", all, rows.len());
            for (i, row) in rows.iter().enumerate() {
                for (col, desc) in [(2, &REPLICA_QUEUE), (3, &REPLICA_DELAY)] {
                    samples.push(table(Sample::new(desc, number(&rows, i, col)?), row));
                }
            }
        }
        if self.mutations {
            let stuck = format!(
                "system.mutations WHERE is_done = 0 AND create_time < now() - {}",
                self.stuck_after.as_secs()
            );
            let rows = tsv(
                check,
                &format!(
                    "SELECT database, table, count() AS n FROM {stuck} \
                 GROUP BY database, table ORDER BY n DESC, database, table LIMIT {n}"
                ),
                timeout,
            )
            .await?;
            let totals = tsv(
                check,
                &format!(
                    "SELECT count(), uniqExact(database, table), \
                 if(count() = 0, 0, toUInt64(now() - min(create_time))) FROM {stuck}"
                ),
                timeout,
            )
            .await?;
            samples.push(Sample::new(&STUCK_MUTATIONS, number(&totals, 0, 0)?));
            samples.push(Sample::new(&OLDEST_STUCK_MUTATION, number(&totals, 0, 2)?));
            dropped(samples, "mutations", number(&totals, 0, 1)?, rows.len());
            for (i, row) in rows.iter().enumerate() {
                samples.push(table(
                    Sample::new(&TABLE_STUCK_MUTATIONS, number(&rows, i, 2)?),
                    row,
                ));
            }
        }
        Ok(())
    }
}

/// The rows of `sql` in TabSeparated format, split into fields.
async fn tsv(
    check: &ClickhouseCheck,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<Vec<String>>, Failure> {
    let body = check
        .query(&format!("{sql} FORMAT TabSeparated"), timeout)
        .await?;
    Ok(body
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// Field `col` of row `row` as a number, or a protocol failure.
fn number(rows: &[Vec<String>], row: usize, col: usize) -> Result<f64, Failure> {
    rows.get(row)
        .and_then(|r| r.get(col))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            Failure::new(
                Reason::Protocol,
                format!("a system table query returned no number in row {row}, column {col}"),
            )
        })
}

/// `sample` labelled with the table of `row` (database, table).
fn table(sample: Sample, row: &[String]) -> Sample {
    let field = |i: usize| row.get(i).cloned().unwrap_or_default();
    sample
        .with_label("database", field(0))
        .with_label("table", field(1))
}

fn dropped(samples: &mut Vec<Sample>, part: &'static str, all: f64, kept: usize) {
    samples.push(Sample::new(&DROPPED, (all - kept as f64).max(0.0)).with_label("part", part));
}
