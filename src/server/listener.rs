//! Accepting and serving HTTP/1 connections, plain or over TLS, for the
//! server's router: one accept loop with a cap on open connections, a TLS
//! handshake timeout, a bound on reading each request head and on idle
//! keep-alive connections, and a graceful shutdown that lets in-flight
//! requests finish.
//!
//! Two clocks bound a connection that has no request in flight:
//! - hyper's `header_read_timeout`, set to `Options::idle_timeout`. In
//!   hyper 1.x its clock starts whenever the connection begins waiting for a
//!   request head (when it opens, and after every response) and stops when
//!   the head is complete, so it closes keep-alive connections left idle.
//! - the head clock here, `Options::header_read_timeout`: from the first
//!   byte of a request head (or from the start of the connection, for the
//!   first request) to the complete head, however slowly the bytes trickle
//!   in. It disconnects slowloris clients long before the idle timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

use super::Options;

/// Time a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight requests get to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `router` on `listener` (over TLS with `tls`) until `shutdown`
/// completes, then give open connections `DRAIN_TIMEOUT` to finish.
///
/// At most `options.max_connections` connections are open at once. At the
/// cap the loop stops accepting: new connections wait in the kernel's listen
/// backlog (their TCP handshake completes, no request is read) until an open
/// connection closes. Waiting rather than accepting and closing keeps a
/// burst of scrapes from failing outright; the clocks above make sure open
/// connections do close.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.idle_timeout);
    tokio::pin!(shutdown);
    loop {
        // The permit is taken before accepting and moves into the
        // connection's task, so it is held for the connection's whole life.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_closed) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = Conn {
            peer,
            http: http.clone(),
            router: router.clone(),
            watcher: graceful.watcher(),
            header_read_timeout: options.header_read_timeout,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            conn.run(tcp, acceptor).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish before shutdown");
    }
    Ok(())
}

/// One accepted connection and what serving it needs.
struct Conn {
    peer: SocketAddr,
    http: http1::Builder,
    router: Router,
    watcher: Watcher,
    header_read_timeout: Duration,
}

impl Conn {
    async fn run(self, tcp: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.serve(tcp).await;
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    /// Serve HTTP/1 on `stream` until either side closes it, the head clock
    /// runs out, or shutdown drains it.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let phase = Arc::new(Clock(Mutex::new(Phase::Head(Instant::now()))));
        let io = TokioIo::new(Watched {
            inner: stream,
            phase: phase.clone(),
        });
        let router = self.router;
        let clock = phase.clone();
        let service = hyper::service::service_fn(move |req| {
            let busy = Busy::start(clock.clone());
            let call = router.clone().oneshot(req);
            async move {
                let response = call.await;
                drop(busy);
                response
            }
        });
        let conn = self.http.serve_connection(io, service);
        tokio::select! {
            served = self.watcher.watch(conn) => {
                if let Err(e) = served {
                    tracing::debug!(peer = %self.peer, error = %e, "connection error");
                }
            }
            () = head_deadline(&phase, self.header_read_timeout) => {
                tracing::debug!(peer = %self.peer, "request head not complete in time; closing");
            }
        }
    }
}

/// Where a connection is between requests, for the head clock. Bytes read
/// while a request is busy (a pipelined next head) do not start the clock;
/// such a head is bounded by hyper's idle clock alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next request (hyper's idle clock).
    Idle,
    /// Reading a request head whose first byte came at this instant.
    Head(Instant),
    /// A request reached the router and its handler has not finished.
    Busy,
}

/// A connection's [`Phase`], shared by its stream, its requests and its
/// head clock. Changing it wakes nothing: the head clock looks at it when its
/// own timer fires, so a request costs no timer and no task wake-up.
struct Clock(Mutex<Phase>);

impl Clock {
    fn get(&self) -> Phase {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// A head starts now if the connection was idle.
    fn head_started(&self) {
        let mut phase = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *phase == Phase::Idle {
            *phase = Phase::Head(Instant::now());
        }
    }
}

/// Marks a request as being handled for as long as it lives.
struct Busy(Arc<Clock>);

impl Busy {
    fn start(clock: Arc<Clock>) -> Self {
        clock.set(Phase::Busy);
        Self(clock)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(Phase::Idle);
    }
}

/// Completes when a request head has taken longer than `limit` since its
/// first byte; pending for as long as heads arrive in time.
///
/// One timer, re-armed when it fires: at a head's deadline while a head is
/// being read, else `limit` from now. A head that starts after a look
/// begins no earlier than that look, so the next look (at most `limit`
/// later) comes no later than the head's deadline, and then waits for
/// exactly that deadline: a slow head is closed on time, never late.
async fn head_deadline(clock: &Clock, limit: Duration) {
    loop {
        let now = Instant::now();
        let next = match clock.get() {
            Phase::Head(since) if since + limit <= now => return,
            Phase::Head(since) => since + limit,
            Phase::Idle | Phase::Busy => now + limit,
        };
        tokio::time::sleep_until(next).await;
    }
}

/// The connection's stream, noting when the first byte of a request head
/// arrives on an idle connection.
struct Watched<S> {
    inner: S,
    phase: Arc<Clock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.phase.head_started();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
