//! The monitoring session: opening it (connect, apply the server-side
//! limits, read the server's version, prepare every collector's
//! statements), the transactions a transaction pooler needs, and the task
//! that drives its connection. When to open, drop or reopen it is decided
//! in [`super`].
//!
//! The limits are applied with `SET` after connecting, never in the
//! `options` startup parameter: PgBouncer and managed poolers refuse that
//! parameter (`unsupported startup parameter: options`), and it would
//! replace the DSN's own `options`. Behind a transaction pooler a session
//! `SET` would stick to whichever server connection ran it (and leak to
//! other clients of the pool), so there every group of statements runs in
//! a `BEGIN READ ONLY` transaction that sets them with `SET LOCAL`.

use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};

use super::error::{classify, describe, Failed};
use super::query::Query;
use super::{activity, database, replication, statements, who, Pooler, PostgresCheck};
use crate::checks::{Reason, RunContext};

/// Oldest server this kind supports (pg_stat_replication lag columns,
/// `pg_wal_*` function names, `backend_type`).
const MIN_SERVER_VERSION: i32 = 100_000;

/// Read once per session: the version, and where pg_stat_statements lives.
const SQL_SERVER: &str = "SELECT current_setting('server_version'), \
     current_setting('server_version_num')::int4, \
     (SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
       WHERE e.extname = 'pg_stat_statements')";

/// The open monitoring session and what was learnt when it opened.
pub(super) struct Session {
    pub(super) client: Client,
    /// The task driving the connection; aborted with the session.
    _driver: Driver,
    pub(super) version: String,
    /// Behind a transaction pooler: what opens each transaction (with the
    /// limits as `SET LOCAL`). `None`: the limits were `SET` for the session.
    begin: Option<String>,
    pub(super) activity: activity::Statements,
    pub(super) who: who::Statements,
    pub(super) databases: Query,
    pub(super) replication: replication::Statements,
    /// The pg_stat_statements query, or why it is unavailable.
    pub(super) statements: Result<Query, String>,
}

/// The server-side limits of a check whose runs time out after `ctx`'s
/// timeout: statement_timeout and lock_timeout in milliseconds, below the
/// run's timeout, so that the server gives up on our statements before
/// the scheduler gives up on us.
fn limits(ctx: &RunContext) -> (u64, u64) {
    let ms = ctx.timeout.as_millis() as u64;
    ((ms * 8 / 10).max(1), (ms / 2).max(1))
}

impl Session {
    /// Connect, apply the server-side limits, check the server's version
    /// and prepare every collector's statements.
    pub(super) async fn open(
        check: &PostgresCheck,
        ctx: &RunContext,
    ) -> Result<Self, (Reason, String)> {
        let mut config = check.config.clone();
        config.connect_timeout(ctx.timeout);
        let connect_err = |e: tokio_postgres::Error| {
            (
                classify(&e),
                format!("connect to {} failed: {}", check.target, describe(&e)),
            )
        };
        let (client, driver) = match &check.tls {
            None => start(&config, tokio_postgres::NoTls).await,
            Some(tls) => start(&config, tls.clone()).await,
        }
        .map_err(connect_err)?;
        let fail = |doing: &'static str| {
            move |error: tokio_postgres::Error| check.failure(Failed { doing, error })
        };
        let (statement_ms, lock_ms) = limits(ctx);
        let transactions = check.pooler == Pooler::Transaction;
        let begin = if transactions {
            Some(format!(
                "BEGIN READ ONLY; SET LOCAL statement_timeout = {statement_ms}; \
                 SET LOCAL lock_timeout = {lock_ms}"
            ))
        } else {
            client
                .batch_execute(&format!(
                    "SET statement_timeout = {statement_ms}; SET lock_timeout = {lock_ms}; \
                     SET default_transaction_read_only = on"
                ))
                .await
                .map_err(fail("applying the session settings"))?;
            None
        };
        let (session, version_num) = Self::prepare(check, client, driver, begin)
            .await
            .map_err(|f| check.failure(f))?;
        if version_num < MIN_SERVER_VERSION {
            let _ = session.end(false).await;
            return Err((
                Reason::UnexpectedResponse,
                format!(
                    "{} runs PostgreSQL {}; this check needs 10 or later",
                    check.target, session.version
                ),
            ));
        }
        session
            .end(true)
            .await
            .map_err(fail("preparing the monitoring queries"))?;
        Ok(session)
    }

    /// Read the server and prepare the statements (in one transaction
    /// behind a transaction pooler, left open for [`Self::end`]).
    async fn prepare(
        check: &PostgresCheck,
        client: Client,
        driver: Driver,
        begin: Option<String>,
    ) -> Result<(Self, i32), Failed> {
        if let Some(sql) = &begin {
            client
                .batch_execute(sql)
                .await
                .map_err(super::failed("applying the session settings"))?;
        }
        let row = client
            .query_typed_one(SQL_SERVER, &[])
            .await
            .map_err(super::failed("reading the server version"))?;
        let version: String = row.get(0);
        let version_num: i32 = row.get(1);
        let schema: Option<String> = row.get(2);
        let named = begin.is_none();
        let prepare = || super::failed("preparing the monitoring queries");
        let activity = activity::Statements::prepare(&client, version_num, named)
            .await
            .map_err(prepare())?;
        let who = who::Statements::prepare(&client, named)
            .await
            .map_err(prepare())?;
        let databases = database::prepare(&client, named).await.map_err(prepare())?;
        let replication = replication::Statements::prepare(&client, version_num, named)
            .await
            .map_err(prepare())?;
        let statements = statements::prepare(
            &client,
            schema,
            version_num,
            check.statements_top,
            check.config.get_dbname().unwrap_or_default(),
            named,
        )
        .await;
        let session = Self {
            client,
            _driver: driver,
            version,
            begin,
            activity,
            who,
            databases,
            replication,
            statements,
        };
        Ok((session, version_num))
    }

    /// Behind a transaction pooler, open the transaction a group of
    /// statements runs in (read-only, with the limits); else nothing.
    pub(super) async fn begin(&self) -> Result<(), tokio_postgres::Error> {
        match &self.begin {
            Some(sql) => self.client.batch_execute(sql).await,
            None => Ok(()),
        }
    }

    /// Close the transaction of [`Self::begin`]: commit it after `ok`,
    /// else roll it back (ignoring errors: the session may be gone).
    pub(super) async fn end(&self, ok: bool) -> Result<(), tokio_postgres::Error> {
        if self.begin.is_none() {
            return Ok(());
        }
        if ok {
            self.client.batch_execute("COMMIT").await
        } else {
            let _ = self.client.batch_execute("ROLLBACK").await;
            Ok(())
        }
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
