//! The monitoring session: opening it (connect with server-side limits,
//! read the server's version, prepare every collector's statements) and the
//! task that drives its connection. When to open, drop or reopen it is
//! decided in [`super`].

use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket, Statement};

use super::error::{classify, describe, Failed};
use super::{activity, database, replication, statements, PostgresCheck};
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
    pub(super) activity: activity::Statements,
    pub(super) databases: Statement,
    pub(super) replication: replication::Statements,
    /// The pg_stat_statements query, or why it is unavailable.
    pub(super) statements: Result<Statement, String>,
}

impl Session {
    /// Connect with server-side limits derived from the run's timeout,
    /// check the server's version and prepare every collector's statements.
    pub(super) async fn open(
        check: &PostgresCheck,
        ctx: &RunContext,
    ) -> Result<Self, (Reason, String)> {
        let mut config = check.config.clone();
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
        let row = client
            .query_one(SQL_SERVER, &[])
            .await
            .map_err(fail("reading the server version"))?;
        let version: String = row.get(0);
        let version_num: i32 = row.get(1);
        if version_num < MIN_SERVER_VERSION {
            return Err((
                Reason::UnexpectedResponse,
                format!(
                    "{} runs PostgreSQL {version}; this check needs 10 or later",
                    check.target
                ),
            ));
        }
        let schema: Option<String> = row.get(2);
        let prepare = fail("preparing the monitoring queries");
        let activity = activity::Statements::prepare(&client, version_num)
            .await
            .map_err(prepare)?;
        let databases = database::prepare(&client).await.map_err(prepare)?;
        let replication = replication::Statements::prepare(&client)
            .await
            .map_err(prepare)?;
        let statements = statements::prepare(
            &client,
            schema,
            version_num,
            check.statements_top,
            check.config.get_dbname().unwrap_or_default(),
        )
        .await;
        Ok(Self {
            client,
            _driver: driver,
            version,
            activity,
            databases,
            replication,
            statements,
        })
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
