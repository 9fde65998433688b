//! The `postgres` kind: the guides' `psql $DATABASE_URL -c "SELECT 1"` and
//! the PostgreSQL diagnostics that follow it (pg_stat_activity, long-running
//! queries, lock waits, pg_stat_database, replication on the primary and on
//! a standby, pg_stat_statements, and the team's own queries).
//!
//! Each check keeps ONE long-lived monitoring session to its target, with
//! `application_name`, `statement_timeout` and `lock_timeout` set at connect
//! time, its statements prepared once, and reconnects with a backoff when
//! the session breaks. A run the scheduler cancelled half-way leaves the
//! session in an unknown state, so the next run drops it and reconnects.

use std::collections::HashSet;
use std::error::Error as _;
use std::sync::{Mutex as StdMutex, OnceLock};
use std::time::{Duration, Instant};

use super::backoff::Reconnect;

mod spec;
mod target;

use spec::parse_dsn;
pub use spec::{PostgresSpec, QuerySpec, TlsMode};

use futures::future::BoxFuture;
use prometheus_client::registry::Unit;
use tokio::sync::Mutex;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, SimpleQueryMessage, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    BuildError, Check, Failure, MetricDesc, MetricKind, Reason, RunContext, RunResult, Sample,
};
use crate::config::secret;

/// Oldest server this kind supports (pg_stat_replication lag columns,
/// `pg_wal_*` function names, `backend_type`).
const MIN_SERVER_VERSION: i32 = 100_000;

// --- Metrics ---------------------------------------------------------------

macro_rules! desc {
    ($id:ident, $name:literal, $unit:expr, $kind:ident, $help:literal) => {
        #[doc = $help]
        pub static $id: MetricDesc = MetricDesc {
            name: $name,
            help: $help,
            unit: $unit,
            kind: MetricKind::$kind,
        };
    };
}

desc!(CONNECT_DURATION, "postgres_connect_duration", Some(Unit::Seconds), Gauge,
    "Time to open the monitoring session (TCP, TLS, authentication), in the last scheduled run that had to connect.");
desc!(
    SELECT1_DURATION,
    "postgres_select1_duration",
    Some(Unit::Seconds),
    Gauge,
    "Round trip of SELECT 1 on the monitoring session in the last scheduled run."
);
desc!(
    INFO,
    "postgres_info",
    None,
    Gauge,
    "Always 1; the server version (server_version) as seen in the last scheduled run."
);
desc!(
    IN_RECOVERY,
    "postgres_in_recovery",
    None,
    Gauge,
    "1 if the server was a standby (pg_is_in_recovery()) in the last scheduled run, else 0."
);
desc!(
    CONNECTIONS,
    "postgres_connections",
    None,
    Gauge,
    "Client backends by state (pg_stat_activity) in the last scheduled run."
);
desc!(
    MAX_CONNECTIONS,
    "postgres_max_connections",
    None,
    Gauge,
    "The max_connections setting in the last scheduled run."
);
desc!(
    RESERVED_CONNECTIONS,
    "postgres_superuser_reserved_connections",
    None,
    Gauge,
    "The superuser_reserved_connections setting in the last scheduled run."
);
desc!(LONG_QUERIES, "postgres_long_running_queries", None, Gauge,
    "Active queries running longer than long_query_threshold (from query_start) in the last scheduled run.");
desc!(
    LONGEST_QUERY,
    "postgres_longest_query_duration",
    Some(Unit::Seconds),
    Gauge,
    "Age of the oldest active query (from query_start) in the last scheduled run; 0 if none."
);
desc!(
    LOCK_WAITING,
    "postgres_lock_waiting_sessions",
    None,
    Gauge,
    "Sessions blocked by another session's lock (pg_blocking_pids) in the last scheduled run."
);
desc!(LONGEST_LOCK_WAIT, "postgres_longest_lock_wait", Some(Unit::Seconds), Gauge,
    "Longest current wait for a lock (pg_locks.waitstart, PostgreSQL 14+) in the last scheduled run; 0 if none.");
desc!(
    DB_BACKENDS,
    "postgres_database_backends",
    None,
    Gauge,
    "Sessions connected to each database (pg_stat_database.numbackends) in the last scheduled run."
);
desc!(DB_COMMITS, "postgres_database_commits", None, Counter,
    "Committed transactions per database (pg_stat_database.xact_commit) as of the last scheduled run.");
desc!(DB_ROLLBACKS, "postgres_database_rollbacks", None, Counter,
    "Rolled back transactions per database (pg_stat_database.xact_rollback) as of the last scheduled run.");
desc!(
    DB_BLOCKS_READ,
    "postgres_database_blocks_read",
    None,
    Counter,
    "Disk blocks read per database (pg_stat_database.blks_read) as of the last scheduled run."
);
desc!(
    DB_BLOCKS_HIT,
    "postgres_database_blocks_hit",
    None,
    Counter,
    "Buffer cache hits per database (pg_stat_database.blks_hit) as of the last scheduled run."
);
desc!(DB_TEMP_FILES, "postgres_database_temp_files", None, Counter,
    "Temporary files created per database (pg_stat_database.temp_files) as of the last scheduled run.");
desc!(DB_TEMP_BYTES, "postgres_database_temp", Some(Unit::Bytes), Counter,
    "Bytes written to temporary files per database (pg_stat_database.temp_bytes) as of the last scheduled run.");
desc!(
    DB_DEADLOCKS,
    "postgres_database_deadlocks",
    None,
    Counter,
    "Deadlocks detected per database (pg_stat_database.deadlocks) as of the last scheduled run."
);
desc!(REPL_STATE, "postgres_replication_state", None, Gauge,
    "Always 1 per standby connected to this primary, with its WAL sender state, in the last scheduled run.");
desc!(REPL_LAG_BYTES, "postgres_replication_lag", Some(Unit::Bytes), Gauge,
    "WAL bytes between the primary's current position and each standby's sent, write, flush and replay position in the last scheduled run.");
desc!(REPL_LAG_SECONDS, "postgres_replication_lag_time", Some(Unit::Seconds), Gauge,
    "write_lag, flush_lag and replay_lag of each standby (pg_stat_replication) in the last scheduled run; 0 when caught up.");
desc!(
    SLOT_RETAINED,
    "postgres_replication_slot_retained",
    Some(Unit::Bytes),
    Gauge,
    "WAL bytes each replication slot retains on this primary in the last scheduled run."
);
desc!(
    SLOT_ACTIVE,
    "postgres_replication_slot_active",
    None,
    Gauge,
    "1 if the replication slot was in use in the last scheduled run, else 0."
);
desc!(STANDBY_REPLAY_LAG, "postgres_standby_replay_lag", Some(Unit::Seconds), Gauge,
    "On a standby: age of the last replayed transaction while received WAL waits to be replayed, 0 when everything received is replayed, in the last scheduled run.");
desc!(
    STANDBY_UNREPLAYED,
    "postgres_standby_unreplayed",
    Some(Unit::Bytes),
    Gauge,
    "On a standby: WAL bytes received but not yet replayed in the last scheduled run."
);
desc!(STANDBY_STREAMING, "postgres_standby_wal_receiver_streaming", None, Gauge,
    "On a standby: 1 if the WAL receiver was streaming from the primary in the last scheduled run, else 0.");
desc!(FEATURE_AVAILABLE, "postgres_feature_available", None, Gauge,
    "1 if an optional part of the check (pg_stat_statements, a custom query) worked in the last scheduled run, 0 if it is unavailable (see the log).");
desc!(STMT_CALLS, "postgres_statement_calls", None, Counter,
    "Calls of each of the top statements by total time (pg_stat_statements, summed over users and databases) as of the last scheduled run.");
desc!(STMT_TIME, "postgres_statement_time", Some(Unit::Seconds), Counter,
    "Total execution time of each of the top statements by total time (pg_stat_statements) as of the last scheduled run.");
desc!(STMT_ROWS, "postgres_statement_rows", None, Counter,
    "Rows returned or affected by each of the top statements by total time (pg_stat_statements) as of the last scheduled run.");
desc!(
    QUERY_VALUE,
    "postgres_query_value",
    None,
    Gauge,
    "A value column of a custom query, per row, in the last scheduled run."
);

/// Every metric this kind can report.
pub static METRICS: [&MetricDesc; 32] = [
    &CONNECT_DURATION,
    &SELECT1_DURATION,
    &INFO,
    &IN_RECOVERY,
    &CONNECTIONS,
    &MAX_CONNECTIONS,
    &RESERVED_CONNECTIONS,
    &LONG_QUERIES,
    &LONGEST_QUERY,
    &LOCK_WAITING,
    &LONGEST_LOCK_WAIT,
    &DB_BACKENDS,
    &DB_COMMITS,
    &DB_ROLLBACKS,
    &DB_BLOCKS_READ,
    &DB_BLOCKS_HIT,
    &DB_TEMP_FILES,
    &DB_TEMP_BYTES,
    &DB_DEADLOCKS,
    &REPL_STATE,
    &REPL_LAG_BYTES,
    &REPL_LAG_SECONDS,
    &SLOT_RETAINED,
    &SLOT_ACTIVE,
    &STANDBY_REPLAY_LAG,
    &STANDBY_UNREPLAYED,
    &STANDBY_STREAMING,
    &FEATURE_AVAILABLE,
    &STMT_CALLS,
    &STMT_TIME,
    &STMT_ROWS,
    &QUERY_VALUE,
];

// --- SQL ---------------------------------------------------------------------

const SQL_SERVER: &str = "SELECT current_setting('server_version'), \
     current_setting('server_version_num')::int4, \
     (SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
       WHERE e.extname = 'pg_stat_statements')";

const SQL_STATES: &str = "SELECT coalesce(state, 'unknown'), count(*)::float8 \
     FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1";

/// One row: recovery, settings, long queries, lock waits. `$1` is the
/// long-query threshold in seconds. `{lock_wait}` depends on the version.
const SQL_SUMMARY: &str = "SELECT pg_is_in_recovery(), \
     current_setting('max_connections')::float8, \
     current_setting('superuser_reserved_connections')::float8, \
     count(*) FILTER (WHERE a.query_start < now() - make_interval(secs => $1))::float8, \
     coalesce(extract(epoch FROM now() - min(a.query_start)), 0)::float8, \
     (SELECT count(*) FROM pg_stat_activity w WHERE w.wait_event_type = 'Lock' \
        AND cardinality(pg_blocking_pids(w.pid)) > 0)::float8, \
     {lock_wait} \
     FROM pg_stat_activity a \
     WHERE a.state = 'active' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()";

const SQL_LOCK_WAIT_14: &str = "(SELECT coalesce(extract(epoch FROM now() - min(waitstart)), 0) \
     FROM pg_locks WHERE NOT granted)::float8";

const SQL_DATABASES: &str = "SELECT datname::text, numbackends::float8, xact_commit::float8, \
     xact_rollback::float8, blks_read::float8, blks_hit::float8, temp_files::float8, \
     temp_bytes::float8, deadlocks::float8 \
     FROM pg_stat_database WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1') \
     ORDER BY xact_commit DESC, datname LIMIT $1";

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

fn sql_statements(schema: &str, version: i32) -> String {
    let time = if version >= 130_000 {
        "total_exec_time"
    } else {
        "total_time"
    };
    format!(
        "SELECT queryid::text, sum(calls)::float8, (sum({time}) / 1000)::float8, sum(rows)::float8 \
         FROM {}.pg_stat_statements WHERE queryid IS NOT NULL \
         GROUP BY queryid ORDER BY sum({time}) DESC LIMIT $1",
        quote_ident(schema)
    )
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// --- The check ---------------------------------------------------------------

/// One custom query, ready to run.
struct CustomQuery {
    name: String,
    sql: String,
    values: Vec<String>,
    /// Label names interned as `&'static str` (see [`intern`]).
    labels: Vec<&'static str>,
    max_rows: usize,
}

/// Label names of custom queries must be `&'static str`; each distinct name
/// is leaked once per process, so reloads do not grow memory.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<StdMutex<HashSet<&'static str>>> = OnceLock::new();
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

/// The open monitoring session and what was learnt when it opened.
struct Session {
    client: Client,
    /// The task driving the connection; aborted with the session.
    _driver: Driver,
    version: String,
    summary: Statement,
    states: Statement,
    databases: Statement,
    replication: Statement,
    slots: Statement,
    standby: Statement,
    /// The pg_stat_statements query, or why it is unavailable.
    statements: Result<Statement, String>,
}

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
    long_query: Duration,
    statements_top: i64,
    max_databases: i64,
    max_standbys: i64,
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
            long_query: spec.long_query_threshold,
            statements_top: i64::from(spec.statements_top),
            max_databases: i64::from(spec.max_databases),
            max_standbys: i64::from(spec.max_standbys),
            queries: spec
                .queries
                .iter()
                .map(|q| CustomQuery {
                    name: q.name.clone(),
                    sql: q.sql.clone(),
                    values: q.values.clone(),
                    labels: q.labels.iter().map(|l| intern(l)).collect(),
                    max_rows: q.max_rows,
                })
                .collect(),
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
        if state.session.is_none() {
            let start = Instant::now();
            let session = self.connect(state, ctx).await?;
            samples.push(Sample::new(
                &CONNECT_DURATION,
                start.elapsed().as_secs_f64(),
            ));
            state.session = Some(session);
        }
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
        match self.open(ctx).await {
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

    async fn open(&self, ctx: &RunContext) -> Result<Session, (Reason, String)> {
        let mut config = self.config.clone();
        // Server-side limits below the run's timeout, so that the server
        // gives up on our statements before the scheduler gives up on us.
        let limit_ms = (ctx.timeout.as_millis() as u64 * 8 / 10).max(1);
        let lock_ms = (ctx.timeout.as_millis() as u64 / 2).max(1);
        config.options(format!(
            "-c statement_timeout={limit_ms} -c lock_timeout={lock_ms} -c default_transaction_read_only=on"
        ));
        config.connect_timeout(ctx.timeout);
        let connect_err = |e: tokio_postgres::Error| {
            (
                classify(&e),
                format!("connect to {} failed: {}", self.target, describe(&e)),
            )
        };
        let (client, driver) = match &self.tls {
            None => start(&config, tokio_postgres::NoTls).await,
            Some(tls) => start(&config, tls.clone()).await,
        }
        .map_err(connect_err)?;
        let fail = |what: &str, e: tokio_postgres::Error| {
            (
                classify(&e),
                format!("{what} on {} failed: {}", self.target, describe(&e)),
            )
        };
        let row = client
            .query_one(SQL_SERVER, &[])
            .await
            .map_err(|e| fail("reading the server version", e))?;
        let version: String = row.get(0);
        let version_num: i32 = row.get(1);
        if version_num < MIN_SERVER_VERSION {
            return Err((
                Reason::UnexpectedResponse,
                format!(
                    "{} runs PostgreSQL {version}; this check needs 10 or later",
                    self.target
                ),
            ));
        }
        let schema: Option<String> = row.get(2);
        let lock_wait = if version_num >= 140_000 {
            SQL_LOCK_WAIT_14
        } else {
            "NULL::float8"
        };
        let summary_sql = SQL_SUMMARY.replace("{lock_wait}", lock_wait);
        let prepare = |sql: String| {
            let client = &client;
            async move {
                client
                    .prepare(&sql)
                    .await
                    .map_err(|e| fail("preparing the monitoring queries", e))
            }
        };
        let summary = prepare(summary_sql).await?;
        let states = prepare(SQL_STATES.to_string()).await?;
        let databases = prepare(SQL_DATABASES.to_string()).await?;
        let replication = prepare(SQL_REPLICATION.to_string()).await?;
        let slots = prepare(SQL_SLOTS.to_string()).await?;
        let standby = prepare(SQL_STANDBY.to_string()).await?;
        // A library missing from shared_preload_libraries shows when the
        // query runs, with the server's own clear message.
        let statements = match schema {
            _ if self.statements_top == 0 => Err("turned off (statements_top: 0)".to_string()),
            None => Err(format!(
                "the extension is not installed in database {:?}: run CREATE EXTENSION pg_stat_statements",
                self.config.get_dbname().unwrap_or_default()
            )),
            Some(schema) => client
                .prepare(&sql_statements(&schema, version_num))
                .await
                .map_err(|e| describe(&e)),
        };
        Ok(Session {
            client,
            _driver: driver,
            version,
            summary,
            states,
            databases,
            replication,
            slots,
            standby,
            statements,
        })
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

    async fn collect(
        &self,
        s: &Session,
        unavailable: &mut HashSet<String>,
        samples: &mut Vec<Sample>,
    ) -> Result<(), (Reason, String)> {
        let fail = |what: &str, e: tokio_postgres::Error| {
            (
                classify(&e),
                format!("{what} on {} failed: {}", self.target, describe(&e)),
            )
        };
        let c = &s.client;

        let start = Instant::now();
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| fail("SELECT 1", e))?;
        samples.push(Sample::new(
            &SELECT1_DURATION,
            start.elapsed().as_secs_f64(),
        ));
        samples.push(Sample::new(&INFO, 1.0).with_label("version", s.version.clone()));

        let threshold = self.long_query.as_secs_f64();
        let row = c
            .query_one(&s.summary, &[&threshold])
            .await
            .map_err(|e| fail("reading pg_stat_activity", e))?;
        let in_recovery: bool = row.get(0);
        samples.push(Sample::new(&IN_RECOVERY, f64::from(u8::from(in_recovery))));
        for (i, desc) in [
            (1, &MAX_CONNECTIONS),
            (2, &RESERVED_CONNECTIONS),
            (3, &LONG_QUERIES),
            (4, &LONGEST_QUERY),
            (5, &LOCK_WAITING),
            (6, &LONGEST_LOCK_WAIT),
        ] {
            if let Some(v) = row.get::<_, Option<f64>>(i) {
                samples.push(Sample::new(desc, v));
            }
        }

        // Every known state starts at 0, so that alerts see explicit zeros.
        let mut states: Vec<(String, f64)> = [
            "active",
            "idle",
            "idle in transaction",
            "idle in transaction (aborted)",
            "fastpath function call",
            "disabled",
        ]
        .iter()
        .map(|s| (s.to_string(), 0.0))
        .collect();
        for row in c
            .query(&s.states, &[])
            .await
            .map_err(|e| fail("reading pg_stat_activity", e))?
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

        for row in c
            .query(&s.databases, &[&self.max_databases])
            .await
            .map_err(|e| fail("reading pg_stat_database", e))?
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

        if in_recovery {
            let row = c
                .query_one(&s.standby, &[])
                .await
                .map_err(|e| fail("reading the standby's replay position", e))?;
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
        } else {
            for row in c
                .query(&s.replication, &[&self.max_standbys])
                .await
                .map_err(|e| fail("reading pg_stat_replication", e))?
            {
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
                        samples.push(
                            standby(Sample::new(&REPL_LAG_BYTES, v))
                                .with_label("position", *position),
                        );
                    }
                }
                for (i, position) in ["write", "flush", "replay"].iter().enumerate() {
                    // NULL once the standby is caught up and idle: that is 0.
                    let v = row
                        .get::<_, Option<f64>>(7 + i)
                        .or_else(|| (bytes[1 + i] == Some(0.0)).then_some(0.0));
                    if let Some(v) = v {
                        samples.push(
                            standby(Sample::new(&REPL_LAG_SECONDS, v))
                                .with_label("position", *position),
                        );
                    }
                }
            }
            for row in c
                .query(&s.slots, &[&self.max_standbys])
                .await
                .map_err(|e| fail("reading pg_replication_slots", e))?
            {
                let slot: String = row.get(0);
                let active: bool = row.get(1);
                samples.push(
                    Sample::new(&SLOT_ACTIVE, f64::from(u8::from(active)))
                        .with_label("slot", slot.clone()),
                );
                if let Some(v) = row.get::<_, Option<f64>>(2) {
                    samples.push(Sample::new(&SLOT_RETAINED, v.max(0.0)).with_label("slot", slot));
                }
            }
        }

        if self.statements_top > 0 {
            let outcome = match &s.statements {
                Ok(stmt) => c
                    .query(stmt, &[&self.statements_top])
                    .await
                    .map_err(|e| describe(&e)),
                Err(why) => Err(why.clone()),
            };
            if outcome.is_err() && c.is_closed() {
                return Err((
                    Reason::Network,
                    format!("connection to {} lost", self.target),
                ));
            }
            self.note_availability(unavailable, "pg_stat_statements", outcome.as_ref().err());
            samples.push(
                Sample::new(&FEATURE_AVAILABLE, f64::from(u8::from(outcome.is_ok())))
                    .with_label("feature", "pg_stat_statements"),
            );
            for row in outcome.unwrap_or_default() {
                let id: String = row.get(0);
                for (i, desc) in [(1, &STMT_CALLS), (2, &STMT_TIME), (3, &STMT_ROWS)] {
                    if let Some(v) = row.get::<_, Option<f64>>(i) {
                        samples.push(Sample::new(desc, v).with_label("queryid", id.clone()));
                    }
                }
            }
        }

        for q in &self.queries {
            let outcome = run_custom(c, q).await;
            if outcome.is_err() && c.is_closed() {
                return Err((
                    Reason::Network,
                    format!("connection to {} lost", self.target),
                ));
            }
            let part = format!("query {}", q.name);
            self.note_availability(unavailable, &part, outcome.as_ref().err());
            samples.push(
                Sample::new(&FEATURE_AVAILABLE, f64::from(u8::from(outcome.is_ok())))
                    .with_label("feature", format!("query:{}", q.name)),
            );
            samples.extend(outcome.unwrap_or_default());
        }
        Ok(())
    }
}

/// The task that drives a session's connection. Dropping it closes the
/// socket at once: a client dropped mid-query (an aborted run) would
/// otherwise leave the driver waiting on a server that never answers.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Open a session and drive its connection in a task of its own, which ends
/// when the client is dropped or the returned [`Driver`] is.
async fn start<T>(config: &Config, tls: T) -> Result<(Client, Driver), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = config.connect(tls).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, Driver(driver)))
}

/// Run one custom query with the simple protocol (text results, one round
/// trip) and turn its rows into samples.
async fn run_custom(c: &Client, q: &CustomQuery) -> Result<Vec<Sample>, String> {
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

impl Check for PostgresCheck {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunResult> {
        Box::pin(self.probe(ctx))
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

/// The failure reason of a tokio-postgres error.
fn classify(e: &tokio_postgres::Error) -> Reason {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return if code == &SqlState::INVALID_PASSWORD
            || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            Reason::Auth
        } else if code == &SqlState::QUERY_CANCELED || code == &SqlState::LOCK_NOT_AVAILABLE {
            Reason::Timeout
        } else if code == &SqlState::TOO_MANY_CONNECTIONS || code == &SqlState::CANNOT_CONNECT_NOW {
            Reason::ConnectionRefused
        } else if code == &SqlState::ADMIN_SHUTDOWN || code == &SqlState::CRASH_SHUTDOWN {
            Reason::Network
        } else {
            Reason::UnexpectedResponse
        };
    }
    let mut source = e.source();
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return Reason::Tls;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return Reason::Tls;
            }
            return Reason::from_io(io);
        }
        source = err.source();
    }
    let text = e.to_string();
    if text.contains("TLS") {
        Reason::Tls
    } else if text.contains("authentication") {
        Reason::Auth
    } else if text.contains("timeout") {
        Reason::Timeout
    } else if e.is_closed() {
        Reason::Network
    } else {
        Reason::Protocol
    }
}

/// A one-line description of a tokio-postgres error with its causes; the
/// server's message for database errors.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_unique() {
        let names: HashSet<&str> = METRICS.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), METRICS.len());
    }

    #[test]
    fn label_names_are_interned_once() {
        assert!(std::ptr::eq(intern("abc"), intern("abc")));
    }
}
