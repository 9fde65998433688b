//! pg_stat_database: sessions, transactions, block reads and hits, temporary
//! files and deadlocks of each database (the busiest `max_databases` by
//! commits).

use prometheus_client::registry::Unit;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::query::Query;
use super::{failed, Failed};
use crate::checks::{MetricDesc, Sample};

/// Sessions connected to each database (pg_stat_database.numbackends) in the last scheduled run.
pub(super) static DB_BACKENDS: MetricDesc = MetricDesc::gauge(
    "postgres_database_backends",
    None,
    "Sessions connected to each database (pg_stat_database.numbackends) in the last scheduled run.",
);
/// Committed transactions per database (pg_stat_database.xact_commit) as of the last scheduled run.
pub(super) static DB_COMMITS: MetricDesc = MetricDesc::counter("postgres_database_commits", None, "Committed transactions per database (pg_stat_database.xact_commit) as of the last scheduled run.");
/// Rolled back transactions per database (pg_stat_database.xact_rollback) as of the last scheduled run.
pub(super) static DB_ROLLBACKS: MetricDesc = MetricDesc::counter("postgres_database_rollbacks", None, "Rolled back transactions per database (pg_stat_database.xact_rollback) as of the last scheduled run.");
/// Disk blocks read per database (pg_stat_database.blks_read) as of the last scheduled run.
pub(super) static DB_BLOCKS_READ: MetricDesc = MetricDesc::counter(
    "postgres_database_blocks_read",
    None,
    "Disk blocks read per database (pg_stat_database.blks_read) as of the last scheduled run.",
);
/// Buffer cache hits per database (pg_stat_database.blks_hit) as of the last scheduled run.
pub(super) static DB_BLOCKS_HIT: MetricDesc = MetricDesc::counter(
    "postgres_database_blocks_hit",
    None,
    "Buffer cache hits per database (pg_stat_database.blks_hit) as of the last scheduled run.",
);
/// Temporary files created per database (pg_stat_database.temp_files) as of the last scheduled run.
pub(super) static DB_TEMP_FILES: MetricDesc = MetricDesc::counter("postgres_database_temp_files", None, "Temporary files created per database (pg_stat_database.temp_files) as of the last scheduled run.");
/// Bytes written to temporary files per database (pg_stat_database.temp_bytes) as of the last scheduled run.
pub(super) static DB_TEMP_BYTES: MetricDesc = MetricDesc::counter("postgres_database_temp", Some(Unit::Bytes), "Bytes written to temporary files per database (pg_stat_database.temp_bytes) as of the last scheduled run.");
/// Deadlocks detected per database (pg_stat_database.deadlocks) as of the last scheduled run.
pub(super) static DB_DEADLOCKS: MetricDesc = MetricDesc::counter(
    "postgres_database_deadlocks",
    None,
    "Deadlocks detected per database (pg_stat_database.deadlocks) as of the last scheduled run.",
);

/// `$1` is `max_databases`.
const SQL_DATABASES: &str = "SELECT datname::text, numbackends::float8, xact_commit::float8, \
     xact_rollback::float8, blks_read::float8, blks_hit::float8, temp_files::float8, \
     temp_bytes::float8, deadlocks::float8 \
     FROM pg_stat_database WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1') \
     ORDER BY xact_commit DESC, datname LIMIT $1";

/// The prepared statement of this collector.
pub(super) async fn prepare(client: &Client, named: bool) -> Result<Query, tokio_postgres::Error> {
    Query::new(client, SQL_DATABASES, &[Type::INT8], named).await
}

/// One sample per column and database.
pub(super) async fn collect(
    c: &Client,
    databases: &Query,
    max_databases: i64,
    samples: &mut Vec<Sample>,
) -> Result<(), Failed> {
    for row in databases
        .rows(c, &[&max_databases])
        .await
        .map_err(failed("reading pg_stat_database"))?
    {
        let db: String = row.get(0);
        for (i, desc) in [
            (1, &DB_BACKENDS),
            (2, &DB_COMMITS),
            (3, &DB_ROLLBACKS),
            (4, &DB_BLOCKS_READ),
            (5, &DB_BLOCKS_HIT),
            (6, &DB_TEMP_FILES),
            (7, &DB_TEMP_BYTES),
            (8, &DB_DEADLOCKS),
        ] {
            if let Some(v) = row.get::<_, Option<f64>>(i) {
                samples.push(Sample::new(desc, v).with_label("database", db.clone()));
            }
        }
    }
    Ok(())
}
