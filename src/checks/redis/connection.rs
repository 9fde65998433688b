//! The connection of a `redis` check: resolve, connect, TLS (with the
//! certificate expiry), AUTH and SELECT; one connection kept between runs
//! and replaced when it breaks, with backoff after failed connects; and the
//! classification of Redis errors.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};
use tokio::task::JoinHandle;

use super::RedisCheck;
use crate::checks::shared::backoff::Reconnect;
use crate::checks::shared::{dial, errors};
use crate::checks::{Failure, Reason, RunResult, Sample};

/// An open connection and the task that drives it; dropping it closes both.
struct Conn {
    conn: MultiplexedConnection,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What survives between runs.
#[derive(Default)]
pub(super) struct State {
    conn: Option<Conn>,
    /// Backoff after failed connects.
    reconnect: Reconnect,
}

impl RedisCheck {
    /// One run: on the kept connection if it still works, else on a new one
    /// once the reconnect backoff allows.
    pub(super) async fn probe(&self) -> RunResult {
        let mut state = self.state.lock().await;
        // The connection is taken out for the run and put back only when the
        // run ends cleanly: a run cancelled by its timeout drops it.
        if let Some(mut conn) = state.conn.take() {
            match self.measure(&mut conn.conn).await {
                Ok(samples) => {
                    state.conn = Some(conn);
                    return Ok(samples);
                }
                Err((failure, broken)) if !broken => {
                    state.conn = Some(conn);
                    return Err(failure);
                }
                // The server closed an idle connection or restarted: try a
                // fresh one right away.
                Err(_) => drop(conn),
            }
        }
        state.reconnect.ready()?;
        let (mut conn, mut samples) = match self.connect().await {
            Ok(connected) => {
                state.reconnect.succeeded();
                connected
            }
            Err(failure) => {
                state.reconnect.failed(failure.reason, &failure.message);
                return Err(failure);
            }
        };
        match self.measure(&mut conn.conn).await {
            Ok(more) => {
                samples.extend(more);
                state.conn = Some(conn);
                Ok(samples)
            }
            Err((mut failure, broken)) => {
                if !broken {
                    state.conn = Some(conn);
                }
                samples.append(&mut failure.samples);
                Err(failure.with_samples(samples))
            }
        }
    }

    /// Open a connection (TCP, TLS, AUTH, SELECT). On success, the samples
    /// that come with it (the certificate expiry with TLS).
    async fn connect(&self) -> Result<(Conn, Vec<Sample>), Failure> {
        let addrs = dial::resolve(&self.host, self.port).await?;
        let stream = dial::connect(&self.display, &addrs).await?;
        // The scheduler bounds every run; the client adds no timeouts.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let mut samples = Vec::new();
        let result = match &self.tls {
            None => MultiplexedConnection::new_with_config(&self.info, stream, config)
                .await
                .map(|(conn, driver)| (conn, tokio::spawn(driver))),
            Some(tls) => {
                let (stream, expiry) =
                    dial::handshake(&tls.connector, tls.server_name.clone(), stream).await?;
                samples.extend(expiry);
                MultiplexedConnection::new_with_config(&self.info, stream, config)
                    .await
                    .map(|(conn, driver)| (conn, tokio::spawn(driver)))
            }
        };
        match result {
            Ok((conn, driver)) => Ok((Conn { conn, driver }, samples)),
            Err(e) => Err(self
                .failure("connection setup (AUTH, SELECT)", &e)
                .with_samples(samples)),
        }
    }

    /// A failure of `what`, classified, naming the server (never the URL).
    pub(super) fn failure(&self, what: &str, e: &RedisError) -> Failure {
        let reason = classify(e);
        let message = if let Some(io) = io_error(e) {
            format!("{what} on {} failed: {io}", self.display)
        } else {
            format!("{what} on {} failed: {e}", self.display)
        };
        Failure::new(reason, message)
    }
}

/// The I/O error inside a Redis error, if there is one. The redis crate
/// keeps it as an `Arc<dyn Error>` (its errors are `Clone`), which a plain
/// downcast of the error's source to `io::Error` does not see through.
fn io_error(e: &RedisError) -> Option<&std::io::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    errors::first_io(e).or_else(|| {
        errors::chain(e).find_map(|c| {
            c.downcast_ref::<Shared>()
                .and_then(|inner| inner.downcast_ref::<std::io::Error>())
        })
    })
}

/// Whether the connection that produced `e` can no longer be used.
pub(super) fn is_broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

fn classify(e: &RedisError) -> Reason {
    if e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
    {
        return Reason::Auth;
    }
    if let Some(io) = io_error(e) {
        // A TLS alert after the handshake (a server refusing the client's
        // certificate) arrives as an I/O error wrapping the rustls error.
        return errors::io_reason(io);
    }
    if e.is_connection_refusal() {
        return Reason::ConnectionRefused;
    }
    if e.is_timeout() {
        return Reason::Timeout;
    }
    match e.kind() {
        ErrorKind::Io => Reason::Network,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => Reason::Protocol,
        _ => Reason::UnexpectedResponse,
    }
}
