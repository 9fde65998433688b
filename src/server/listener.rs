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
//!
//! A third clock bounds a response that does not move: the stall clock,
//! `Options::write_stall_timeout`, runs while a write waits for the client
//! to read (the socket's send buffer is full) and restarts whenever bytes
//! go out. A client that asks for a large `/metrics` and never reads it
//! would otherwise hold its connection, and the cap's slot, for ever.

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
            limits: Limits {
                head: options.header_read_timeout,
                stall: options.write_stall_timeout,
            },
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
    limits: Limits,
}

/// The limits of the clocks this module runs on a connection.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// `Options::header_read_timeout`.
    head: Duration,
    /// `Options::write_stall_timeout`.
    stall: Duration,
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

    /// Serve HTTP/1 on `stream` until either side closes it, the head or
    /// stall clock runs out, or shutdown drains it.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let phase = Arc::new(Clock(Mutex::new(Marks {
            phase: Phase::Head(Instant::now()),
            stalled: None,
        })));
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
            ran_out = deadline(&phase, self.limits) => match ran_out {
                RanOut::Head => tracing::debug!(peer = %self.peer, "request head not complete in time; closing"),
                RanOut::Stall => tracing::debug!(peer = %self.peer, "client stopped reading the response; closing"),
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

/// What the clocks look at, shared by a connection's stream, its requests
/// and its deadline.
#[derive(Debug, Clone, Copy)]
struct Marks {
    phase: Phase,
    /// Since when a write has been waiting for the client to read, with no
    /// byte written since; `None` while writes go through.
    stalled: Option<Instant>,
}

/// A connection's [`Marks`]. Changing them wakes nothing: the deadline
/// looks at them when its own timer fires, so a request costs no timer and
/// no task wake-up.
struct Clock(Mutex<Marks>);

impl Clock {
    fn get(&self) -> Marks {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).phase = phase;
    }

    /// A head starts now if the connection was idle.
    fn head_started(&self) {
        let mut marks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if marks.phase == Phase::Idle {
            marks.phase = Phase::Head(Instant::now());
        }
    }

    /// Note how a write went: waiting on the client (starting the stall
    /// clock unless it runs), or through (stopping it).
    fn wrote(&self, waiting: bool) {
        let mut marks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        marks.stalled = match (waiting, marks.stalled) {
            (true, None) => Some(Instant::now()),
            (true, since) => since,
            (false, _) => None,
        };
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

/// Which clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RanOut {
    /// A request head took longer than `Limits::head` since its first byte.
    Head,
    /// A write waited longer than `Limits::stall` for the client to read.
    Stall,
}

/// Completes when a clock runs out; pending for as long as heads arrive and
/// responses drain in time.
///
/// One timer, re-armed when it fires: at the earliest running clock's
/// deadline, else the shorter limit from now. A clock that starts after a
/// look starts no earlier than that look, so the next look (at most the
/// limit later) comes no later than the clock's deadline, and then waits
/// for exactly that deadline: a connection is closed on time, never late.
async fn deadline(clock: &Clock, limits: Limits) -> RanOut {
    loop {
        let now = Instant::now();
        let marks = clock.get();
        let head = match marks.phase {
            Phase::Head(since) => since + limits.head,
            Phase::Idle | Phase::Busy => now + limits.head,
        };
        let stall = marks
            .stalled
            .map_or(now + limits.stall, |since| since + limits.stall);
        if matches!(marks.phase, Phase::Head(_)) && head <= now {
            return RanOut::Head;
        }
        if marks.stalled.is_some() && stall <= now {
            return RanOut::Stall;
        }
        tokio::time::sleep_until(head.min(stall)).await;
    }
}

/// The connection's stream, noting when the first byte of a request head
/// arrives on an idle connection, and when writes wait on the client.
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
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.phase.wrote(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.phase.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.phase.wrote(polled.is_pending());
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
