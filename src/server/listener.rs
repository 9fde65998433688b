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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
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
        let (phase, watch_phase) = watch::channel(Phase::Head(Instant::now()));
        let phase = Arc::new(phase);
        let io = TokioIo::new(Watched {
            inner: stream,
            phase: phase.clone(),
        });
        let router = self.router;
        let service = hyper::service::service_fn(move |req| {
            let busy = Busy::start(phase.clone());
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
            () = head_deadline(watch_phase, self.header_read_timeout) => {
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

/// Marks a request as being handled for as long as it lives.
struct Busy(Arc<watch::Sender<Phase>>);

impl Busy {
    fn start(phase: Arc<watch::Sender<Phase>>) -> Self {
        phase.send_replace(Phase::Busy);
        Self(phase)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_replace(Phase::Idle);
    }
}

/// Completes when a request head has taken longer than `limit` since its
/// first byte; pending for as long as heads arrive in time.
async fn head_deadline(mut phase: watch::Receiver<Phase>, limit: Duration) {
    loop {
        let current = *phase.borrow_and_update();
        let expired = async {
            match current {
                Phase::Head(since) => tokio::time::sleep_until(since + limit).await,
                Phase::Idle | Phase::Busy => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    // The connection is gone; its task ends with it.
                    std::future::pending::<()>().await;
                }
            }
            () = expired => {
                // The head may have completed at the same instant.
                if *phase.borrow() == current {
                    return;
                }
            }
        }
    }
}

/// The connection's stream, noting when the first byte of a request head
/// arrives on an idle connection.
struct Watched<S> {
    inner: S,
    phase: Arc<watch::Sender<Phase>>,
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
            this.phase.send_if_modified(|phase| {
                let idle = *phase == Phase::Idle;
                if idle {
                    *phase = Phase::Head(Instant::now());
                }
                idle
            });
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
