//! The `postgres` kind: the guides' `psql $DATABASE_URL -c "SELECT 1"` and
//! the PostgreSQL diagnostics that follow it (pg_stat_activity, long-running
//! queries, lock waits, pg_stat_database, replication on the primary and on
//! a standby, pg_stat_statements, and the team's own queries).
//!
//! Each check keeps ONE long-lived monitoring session to its target, with
//! `application_name` set at connect time and `statement_timeout` and
//! `lock_timeout` by `SET` after it (or per transaction behind a
//! transaction pooler, see `session.rs`), and reconnects with a backoff
//! when the session breaks. A session the server closed while it sat idle
//! between runs (`idle_session_timeout`, a pooler's idle timeout, a
//! failover) is replaced within the run that finds it closed: one
//! reconnect, so `up` does not flap. A run the scheduler cancelled half-way
//! leaves the session in an unknown state, so the next run drops it and
//! reconnects.
//!
//! The parts: `spec.rs` (the config, its validation, the DSN), `target.rs`
//! (where the session connects), `session.rs` (opening the session),
//! `query.rs` (a statement, prepared or sent unnamed), `error.rs` (the
//! driver's errors as a `Reason` and a message), and one collector per
//! PostgreSQL view, each holding its SQL, its metric descriptors and how
//! its rows become samples: `activity.rs`, `locks.rs`, `who.rs`,
//! `database.rs`, `replication.rs` (required: the first failure fails the
//! run) and `statements.rs`, `custom.rs` (optional: each reports its own
//! success as `postgres_feature_available`). This file keeps the session's
//! lifecycle (connect, reconnect with backoff, drop after a cancelled run)
//! and runs the collectors in order.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::registry::Unit;
use tokio::sync::Mutex;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::shared::backoff::Reconnect;
use super::{BuildError, Check, Failure, MetricDesc, Reason, RunContext, RunResult, Sample};
use crate::checks::shared::secret;

mod activity;
mod custom;
mod database;
mod error;
mod locks;
mod query;
mod replication;
mod session;
mod spec;
mod statements;
mod target;
mod who;

use custom::CustomQuery;
use error::{classify, describe, failed, lost, Failed};
use session::Session;
use spec::parse_dsn;
pub use spec::{Pooler, PostgresSpec, QuerySpec, TlsMode};

/// Time to open the monitoring session (TCP, TLS, authentication), in the last scheduled run that had to connect.
pub(super) static CONNECT_DURATION: MetricDesc = MetricDesc::gauge("postgres_connect_duration", Some(Unit::Seconds), "Time to open the monitoring session (TCP, TLS, authentication), in the last scheduled run that had to connect.");
/// Round trip of SELECT 1 on the monitoring session in the last scheduled run.
pub(super) static SELECT1_DURATION: MetricDesc = MetricDesc::gauge(
    "postgres_select1_duration",
    Some(Unit::Seconds),
    "Round trip of SELECT 1 on the monitoring session in the last scheduled run.",
);
/// Always 1; the server version (server_version) as seen in the last scheduled run.
pub(super) static INFO: MetricDesc = MetricDesc::gauge(
    "postgres_info",
    None,
    "Always 1; the server version (server_version) as seen in the last scheduled run.",
);
/// 1 if an optional part of the check (pg_stat_statements, a custom query) worked in the last scheduled run, 0 if it is unavailable (see the log).
pub(super) static FEATURE_AVAILABLE: MetricDesc = MetricDesc::gauge("postgres_feature_available", None, "1 if an optional part of the check (pg_stat_statements, a custom query) worked in the last scheduled run, 0 if it is unavailable (see the log).");

/// Rows a cap left out of a top-N part (part: clients, wait_events, slots) in the last scheduled run.
pub(super) static DROPPED: MetricDesc = MetricDesc::gauge("postgres_dropped_rows", None, "Rows a cap left out of a top-N part (part: clients, wait_events, slots) in the last scheduled run.");

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 38] = [
    &CONNECT_DURATION,
    &SELECT1_DURATION,
    &INFO,
    &activity::IN_RECOVERY,
    &activity::CONNECTIONS,
    &activity::MAX_CONNECTIONS,
    &activity::RESERVED_CONNECTIONS,
    &activity::LONG_QUERIES,
    &activity::LONGEST_QUERY,
    &activity::OLDEST_TRANSACTION,
    &activity::OLDEST_IDLE_IN_TRANSACTION,
    &who::CLIENT_CONNECTIONS,
    &who::ACTIVE_WAIT_EVENTS,
    &DROPPED,
    &locks::LOCK_WAITING,
    &locks::LONGEST_LOCK_WAIT,
    &database::DB_BACKENDS,
    &database::DB_COMMITS,
    &database::DB_ROLLBACKS,
    &database::DB_BLOCKS_READ,
    &database::DB_BLOCKS_HIT,
    &database::DB_TEMP_FILES,
    &database::DB_TEMP_BYTES,
    &database::DB_DEADLOCKS,
    &replication::REPL_STATE,
    &replication::REPL_LAG_BYTES,
    &replication::REPL_LAG_SECONDS,
    &replication::SLOT_RETAINED,
    &replication::SLOT_ACTIVE,
    &replication::SLOT_WAL_STATUS,
    &replication::STANDBY_REPLAY_LAG,
    &replication::STANDBY_UNREPLAYED,
    &replication::STANDBY_STREAMING,
    &FEATURE_AVAILABLE,
    &statements::STMT_CALLS,
    &statements::STMT_TIME,
    &statements::STMT_ROWS,
    &custom::QUERY_VALUE,
];

/// Mutable state across runs.
#[derive(Default)]
struct State {
    session: Option<Session>,
    /// True while a run is in progress; still true at the next run when the
    /// scheduler cancelled the previous one mid-way.
    busy: bool,
    /// Backoff after failed connects.
    reconnect: Reconnect,
    /// Optional parts last seen unavailable, to log only on change.
    unavailable: HashSet<String>,
}

/// A built `postgres` check.
pub struct PostgresCheck {
    config: Config,
    target: String,
    tls: Option<MakeRustlsConnect>,
    secrets: Vec<String>,
    pooler: Pooler,
    long_query: Duration,
    statements_top: i64,
    max_databases: i64,
    max_standbys: i64,
    max_clients: i64,
    max_wait_events: i64,
    queries: Vec<CustomQuery>,
    state: Mutex<State>,
}

impl PostgresCheck {
    pub fn new(spec: &PostgresSpec) -> Result<Self, BuildError> {
        let (parsed, dsn_mode) = match &spec.dsn {
            Some(dsn) => parse_dsn(dsn.expose()).map_err(|e| BuildError::new("dsn", e))?,
            None => (Config::new(), None),
        };
        let mut config = target::with_target(&parsed, spec.host.as_deref(), spec.port)?;
        if let Some(user) = &spec.user {
            config.user(user);
        }
        if let Some(db) = &spec.database {
            config.dbname(db);
        }
        if let Some(pw) = secret::resolve("password", &spec.password, &spec.password_file)? {
            config.password(pw.expose());
        }
        if config.get_user().is_none() {
            return Err(BuildError::new(
                "user",
                "no user: set user, or put it in the dsn",
            ));
        }
        config.application_name(&spec.application_name);

        let mode = spec.sslmode.or(dsn_mode).unwrap_or(TlsMode::Prefer);
        let tls = match mode {
            TlsMode::Disable => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            mode => {
                config.ssl_mode(if mode == TlsMode::Prefer {
                    SslMode::Prefer
                } else {
                    SslMode::Require
                });
                let mut tls = spec.tls.clone().unwrap_or_default();
                tls.insecure_skip_verify = mode != TlsMode::VerifyFull && tls.ca_file.is_none();
                let client = tls.client_config("tls", &[])?;
                Some(MakeRustlsConnect::new((*client).clone()))
            }
        };

        let target = target::describe(&config);
        let mut secrets = Vec::new();
        if let Some(pw) = config.get_password() {
            secrets.push(String::from_utf8_lossy(pw).into_owned());
        }
        secrets.retain(|s| !s.is_empty());

        Ok(Self {
            config,
            target,
            tls,
            secrets,
            pooler: spec.pooler,
            long_query: spec.long_query_threshold,
            statements_top: i64::from(spec.statements_top),
            max_databases: i64::from(spec.max_databases),
            max_standbys: i64::from(spec.max_standbys),
            max_clients: i64::from(spec.max_clients),
            max_wait_events: i64::from(spec.max_wait_events),
            queries: spec.queries.iter().map(CustomQuery::new).collect(),
            state: Mutex::new(State::default()),
        })
    }

    async fn probe(&self, ctx: &RunContext) -> RunResult {
        let mut state = self.state.lock().await;
        let abandoned = if state.busy {
            state.session.take()
        } else {
            None
        };
        if let Some(session) = abandoned {
            // The previous run was cancelled mid-way: the session may be
            // waiting for an answer nobody reads. Drop it, and ask the server
            // to cancel what it still runs, so that its backend ends now
            // rather than at the statement timeout.
            tracing::debug!(server = %self.target, "dropping the session of a cancelled run");
            let token = session.client.cancel_token();
            drop(session);
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _ = match tls {
                    Some(tls) => token.cancel_query(tls).await,
                    None => token.cancel_query(tokio_postgres::NoTls).await,
                };
            });
        }
        state.busy = true;
        let result = self.probe_locked(&mut state, ctx).await;
        state.busy = false;
        result
    }

    async fn probe_locked(&self, state: &mut State, ctx: &RunContext) -> RunResult {
        let mut samples = Vec::new();
        if state.session.as_ref().is_some_and(|s| s.client.is_closed()) {
            // The server closed the session while it was idle.
            tracing::debug!(server = %self.target, "the idle monitoring session was closed; reconnecting");
            state.session = None;
        }
        let mut retried = false;
        let select1 = loop {
            let reused = state.session.is_some();
            if !reused {
                let start = Instant::now();
                let session = self.connect(state, ctx).await?;
                samples.push(Sample::new(
                    &CONNECT_DURATION,
                    start.elapsed().as_secs_f64(),
                ));
                state.session = Some(session);
            }
            let session = state.session.as_ref().expect("connected above");
            let start = Instant::now();
            match session.client.simple_query("SELECT 1").await {
                Ok(_) => break start.elapsed().as_secs_f64(),
                // Closed by the server since the last run, and only now
                // noticed: reconnect once, within this run.
                Err(error) if reused && !retried && lost(&error, &session.client) => {
                    tracing::debug!(server = %self.target, error = %describe(&error), "the monitoring session was closed while idle; reconnecting");
                    state.session = None;
                    retried = true;
                }
                Err(error) => {
                    let (reason, message) = self.failure(Failed {
                        doing: "SELECT 1",
                        error,
                    });
                    if session.client.is_closed() {
                        state.session = None;
                    }
                    return Err(Failure::new(reason, message).with_samples(samples));
                }
            }
        };
        samples.push(Sample::new(&SELECT1_DURATION, select1));
        let session = state.session.as_ref().expect("connected above");
        let result = self
            .collect(session, &mut state.unavailable, &mut samples)
            .await;
        if let Err(e) = result {
            let (reason, phase_message) = e;
            // A broken session is replaced at the next run; a query error
            // (say, a statement timeout) leaves a usable one.
            if session.client.is_closed() {
                state.session = None;
            }
            return Err(Failure::new(reason, phase_message).with_samples(samples));
        }
        Ok(samples)
    }

    /// Open the session, with backoff after failures.
    async fn connect(&self, state: &mut State, ctx: &RunContext) -> Result<Session, Failure> {
        state.reconnect.ready()?;
        match Session::open(self, ctx).await {
            Ok(session) => {
                let failed = state.reconnect.succeeded();
                if failed > 0 {
                    tracing::info!(server = %self.target, attempts = failed + 1, "monitoring session reconnected");
                }
                Ok(session)
            }
            Err((reason, message)) => {
                state.reconnect.failed(reason, &message);
                Err(Failure::new(reason, message))
            }
        }
    }

    /// The reason and message of a statement that failed.
    fn failure(&self, f: Failed) -> (Reason, String) {
        (
            classify(&f.error),
            format!(
                "{} on {} failed: {}",
                f.doing,
                self.target,
                describe(&f.error)
            ),
        )
    }

    /// Log when an optional part becomes unavailable or available again.
    fn note_availability(
        &self,
        unavailable: &mut HashSet<String>,
        part: &str,
        error: Option<&String>,
    ) {
        match error {
            Some(why) => {
                if unavailable.insert(part.to_string()) {
                    tracing::warn!(server = %self.target, part, reason = %why, "postgres: part of the check is unavailable and turned off");
                }
            }
            None => {
                if unavailable.remove(part) {
                    tracing::info!(server = %self.target, part, "postgres: part of the check is available again");
                }
            }
        }
    }

    /// Run the collectors in order: the required ones, then the optional.
    async fn collect(
        &self,
        s: &Session,
        unavailable: &mut HashSet<String>,
        samples: &mut Vec<Sample>,
    ) -> Result<(), (Reason, String)> {
        self.collect_required(s, samples)
            .await
            .map_err(|f| self.failure(f))?;
        self.collect_optional(s, unavailable, samples).await
    }

    /// The views every run reads, in one transaction behind a transaction
    /// pooler: the first that fails ends the run, keeping the samples
    /// before it.
    async fn collect_required(&self, s: &Session, samples: &mut Vec<Sample>) -> Result<(), Failed> {
        s.begin()
            .await
            .map_err(failed("opening the monitoring transaction"))?;
        let result = self.read_required(s, samples).await;
        let ended = s.end(result.is_ok()).await;
        result?;
        ended.map_err(failed("committing the monitoring transaction"))
    }

    async fn read_required(&self, s: &Session, samples: &mut Vec<Sample>) -> Result<(), Failed> {
        let c = &s.client;
        samples.push(Sample::new(&INFO, 1.0).with_label("version", s.version.clone()));
        let in_recovery = activity::collect(c, &s.activity, self.long_query, samples).await?;
        who::collect(c, &s.who, self.max_clients, self.max_wait_events, samples).await?;
        database::collect(c, &s.databases, self.max_databases, samples).await?;
        if in_recovery {
            replication::standby(c, &s.replication, samples).await
        } else {
            replication::primary(c, &s.replication, self.max_standbys, samples).await
        }
    }

    /// The optional parts, each reporting its own success: a failure makes
    /// the part unavailable, not the run, unless the session was lost.
    async fn collect_optional(
        &self,
        s: &Session,
        unavailable: &mut HashSet<String>,
        samples: &mut Vec<Sample>,
    ) -> Result<(), (Reason, String)> {
        let c = &s.client;
        if self.statements_top > 0 {
            let outcome = in_transaction(
                s,
                statements::collect(c, &s.statements, self.statements_top),
            )
            .await;
            let part = "pg_stat_statements";
            self.optional(c, unavailable, part, part.to_string(), outcome, samples)?;
        }
        for q in &self.queries {
            let outcome = in_transaction(s, custom::collect(c, q)).await;
            let part = format!("query {}", q.name);
            let feature = format!("query:{}", q.name);
            self.optional(c, unavailable, &part, feature, outcome, samples)?;
        }
        Ok(())
    }

    /// Record the outcome of optional `part`: its `feature_available`
    /// sample, then its samples; a log line when its availability changes.
    /// A failure on a closed session fails the run instead.
    fn optional(
        &self,
        c: &Client,
        unavailable: &mut HashSet<String>,
        part: &str,
        feature: String,
        outcome: Result<Vec<Sample>, String>,
        samples: &mut Vec<Sample>,
    ) -> Result<(), (Reason, String)> {
        if outcome.is_err() && c.is_closed() {
            return Err((
                Reason::Network,
                format!("connection to {} lost", self.target),
            ));
        }
        self.note_availability(unavailable, part, outcome.as_ref().err());
        samples.push(
            Sample::new(&FEATURE_AVAILABLE, f64::from(u8::from(outcome.is_ok())))
                .with_label("feature", feature),
        );
        samples.extend(outcome.unwrap_or_default());
        Ok(())
    }
}

/// Run an optional part in a transaction of its own behind a transaction
/// pooler (so that its failure aborts no other part); as it is otherwise.
async fn in_transaction(
    s: &Session,
    part: impl std::future::Future<Output = Result<Vec<Sample>, String>>,
) -> Result<Vec<Sample>, String> {
    s.begin().await.map_err(|e| describe(&e))?;
    let outcome = part.await;
    let ended = s.end(outcome.is_ok()).await.map_err(|e| describe(&e));
    let samples = outcome?;
    ended?;
    Ok(samples)
}

impl Check for PostgresCheck {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe(ctx))
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

crate::checks::kind!(PostgresSpec => PostgresCheck, "postgres", probe "host");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_unique() {
        let names: HashSet<&str> = METRICS.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), METRICS.len());
    }
}
