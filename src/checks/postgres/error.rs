//! The errors of the driver: their [`Reason`], their one-line text, and
//! [`Failed`], a statement that failed with what the run was doing.

use tokio_postgres::error::SqlState;

use crate::checks::shared::errors;
use crate::checks::Reason;

/// A statement that failed: what the run was doing, and the driver's error.
pub(super) struct Failed {
    pub(super) doing: &'static str,
    pub(super) error: tokio_postgres::Error,
}

/// For `map_err`: the failure of a statement run while `doing`.
pub(super) fn failed(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> Failed {
    move |error| Failed { doing, error }
}

/// The failure reason of a tokio-postgres error.
pub(super) fn classify(e: &tokio_postgres::Error) -> Reason {
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
    if let Some(reason) = errors::transport_reason(e) {
        return reason;
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

/// Whether `e` (from `c`) means the server closed the session: the
/// connection is gone, or the server said it is ending it (an
/// administrator, `idle_session_timeout`, a shutdown for failover).
pub(super) fn lost(e: &tokio_postgres::Error, c: &tokio_postgres::Client) -> bool {
    let ended_by_server = e.as_db_error().is_some_and(|db| {
        let code = db.code();
        code == &SqlState::ADMIN_SHUTDOWN
            || code == &SqlState::IDLE_SESSION_TIMEOUT
            || code == &SqlState::CRASH_SHUTDOWN
    });
    ended_by_server || e.is_closed() || c.is_closed()
}

/// A one-line description of a tokio-postgres error with its causes; the
/// server's message for database errors.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    errors::describe(e)
}
