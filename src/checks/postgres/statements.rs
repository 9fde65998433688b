//! pg_stat_statements: calls, time and rows of the `statements_top`
//! statements by total time, summed over users and databases. Optional: the
//! extension may be missing, or turned off with `statements_top: 0`; the
//! check then reports the part unavailable rather than failing. It reads
//! `pg_stat_statements(false)`: without the query texts, which the view
//! would load from the extension's file on every call (a file that grows to
//! megabytes on a busy server) only for this check to drop them.

use prometheus_client::registry::Unit;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::describe;
use super::query::Query;
use crate::checks::{MetricDesc, Sample};

/// Calls of each of the top statements by total time (pg_stat_statements, summed over users and databases) as of the last scheduled run.
pub(super) static STMT_CALLS: MetricDesc = MetricDesc::counter("postgres_statement_calls", None, "Calls of each of the top statements by total time (pg_stat_statements, summed over users and databases) as of the last scheduled run.");
/// Total execution time of each of the top statements by total time (pg_stat_statements) as of the last scheduled run.
pub(super) static STMT_TIME: MetricDesc = MetricDesc::counter("postgres_statement_time", Some(Unit::Seconds), "Total execution time of each of the top statements by total time (pg_stat_statements) as of the last scheduled run.");
/// Rows returned or affected by each of the top statements by total time (pg_stat_statements) as of the last scheduled run.
pub(super) static STMT_ROWS: MetricDesc = MetricDesc::counter("postgres_statement_rows", None, "Rows returned or affected by each of the top statements by total time (pg_stat_statements) as of the last scheduled run.");

fn sql_statements(schema: &str, version: i32) -> String {
    let time = if version >= 130_000 {
        "total_exec_time"
    } else {
        "total_time"
    };
    format!(
        "SELECT queryid::text, sum(calls)::float8, (sum({time}) / 1000)::float8, sum(rows)::float8 \
         FROM {}.pg_stat_statements(false) WHERE queryid IS NOT NULL \
         GROUP BY queryid ORDER BY sum({time}) DESC LIMIT $1",
        quote_ident(schema)
    )
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Prepare the query in the extension's schema (`None`: not installed), or
/// say why the part is unavailable. A library missing from
/// shared_preload_libraries shows when the query runs, with the server's
/// own clear message.
pub(super) async fn prepare(
    client: &Client,
    schema: Option<String>,
    version_num: i32,
    top: i64,
    dbname: &str,
    named: bool,
) -> Result<Query, String> {
    match schema {
        _ if top == 0 => Err("turned off (statements_top: 0)".to_string()),
        None => Err(format!(
            "the extension is not installed in database {dbname:?}: run CREATE EXTENSION pg_stat_statements"
        )),
        Some(schema) => Query::new(
            client,
            sql_statements(&schema, version_num),
            &[Type::INT8],
            named,
        )
        .await
        .map_err(|e| describe(&e)),
    }
}

/// The samples of the top `top` statements, or why the part is unavailable.
pub(super) async fn collect(
    c: &Client,
    statement: &Result<Query, String>,
    top: i64,
) -> Result<Vec<Sample>, String> {
    let rows = match statement {
        Ok(query) => query.rows(c, &[&top]).await.map_err(|e| describe(&e))?,
        Err(why) => return Err(why.clone()),
    };
    let mut samples = Vec::new();
    for row in rows {
        let id: String = row.get(0);
        for (i, desc) in [(1, &STMT_CALLS), (2, &STMT_TIME), (3, &STMT_ROWS)] {
            if let Some(v) = row.get::<_, Option<f64>>(i) {
                samples.push(Sample::new(desc, v).with_label("queryid", id.clone()));
            }
        }
    }
    Ok(samples)
}
