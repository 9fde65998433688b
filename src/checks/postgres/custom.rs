//! The team's own queries (`queries:`), exported as
//! `runbook_postgres_query_value`: each row gives one sample per value
//! column, labelled by the label columns. Each query is optional: one that
//! fails is reported unavailable and the others still run.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{describe, QuerySpec};
use crate::checks::{MetricDesc, Sample};

/// A value column of a custom query, per row, in the last scheduled run.
pub(super) static QUERY_VALUE: MetricDesc = MetricDesc::gauge(
    "postgres_query_value",
    None,
    "A value column of a custom query, per row, in the last scheduled run.",
);

/// One custom query, ready to run.
pub(super) struct CustomQuery {
    pub(super) name: String,
    sql: String,
    values: Vec<String>,
    /// Label names interned as `&'static str` (see [`intern`]).
    labels: Vec<&'static str>,
    max_rows: usize,
}

impl CustomQuery {
    pub(super) fn new(spec: &QuerySpec) -> Self {
        Self {
            name: spec.name.clone(),
            sql: spec.sql.clone(),
            values: spec.values.clone(),
            labels: spec.labels.iter().map(|l| intern(l)).collect(),
            max_rows: spec.max_rows,
        }
    }
}

/// Label names of custom queries must be `&'static str`; each distinct name
/// is leaked once per process, so reloads do not grow memory.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(found) = names.get(name) {
        return found;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Run one custom query with the simple protocol (text results, one round
/// trip) and turn its rows into samples.
pub(super) async fn collect(c: &Client, q: &CustomQuery) -> Result<Vec<Sample>, String> {
    let messages = c.simple_query(&q.sql).await.map_err(|e| describe(&e))?;
    let mut samples = Vec::new();
    for row in messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .take(q.max_rows)
    {
        let text = |col: &str| -> Result<Option<&str>, String> {
            row.try_get(col)
                .map_err(|_| format!("the result has no column {col:?}"))
        };
        let mut labels = Vec::with_capacity(q.labels.len() + 2);
        labels.push(("query", q.name.clone()));
        for label in &q.labels {
            labels.push((*label, text(label)?.unwrap_or_default().to_string()));
        }
        for col in &q.values {
            let Some(raw) = text(col)? else { continue };
            let value = match raw {
                "t" => 1.0,
                "f" => 0.0,
                other => other
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("column {col:?} holds {other:?}, not a number"))?,
            };
            let mut sample = Sample::new(&QUERY_VALUE, value);
            sample.labels = labels.clone();
            sample.labels.push(("column", col.clone()));
            samples.push(sample);
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_label_name_is_interned_once() {
        assert!(std::ptr::eq(intern("abc"), intern("abc")));
    }
}
