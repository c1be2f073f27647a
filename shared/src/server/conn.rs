//! One HTTP/1 connection: hyper serves it; this adds the idle timeout and graceful shutdown.
//!
//! hyper has a header-read timer but nothing for a connection stuck mid-response (a client that
//! never reads what it asked for fills its TCP window and holds the connection and its task for
//! ever). [`IdleWatch`] counts the reads and writes that moved bytes; every idle period the
//! connection's task looks at the count, and a connection that moved nothing over a whole
//! period is dropped (so one idle for the timeout goes within twice it). Counting instead of
//! reading the clock keeps the cost per read or write at one relaxed atomic add.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, watch};

/// Serves one connection until it ends, the shutdown signal (or, when given, a TLS reload) has
/// let it finish its request, or it has moved no byte for a whole `idle` period (as counted by
/// the [`IdleWatch`] under `io`, which shares `moved`). `_slot` is held for the connection's
/// life.
#[allow(
    clippy::too_many_arguments,
    reason = "one connection's parts, passed once"
)]
pub(super) async fn serve_connection<I, S>(
    builder: Arc<hyper::server::conn::http1::Builder>,
    io: I,
    moved: Arc<AtomicU64>,
    service: S,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
    mut reloads: Option<watch::Receiver<u64>>,
    _slot: OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<axum::body::Body>,
        > + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    let mut periods = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    let mut seen = 0;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Timeouts, resets and malformed requests: the peer's problem, not ours.
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = reloaded(&mut reloads), if !stopping => {
                tracing::debug!("closing a connection with a client certificate: TLS files reloaded");
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = periods.tick() => {
                let now = moved.load(Ordering::Relaxed);
                if now == seen {
                    tracing::debug!("closing a connection idle past server.idle_timeout_ms");
                    return;
                }
                seen = now;
            }
        }
    }
}

/// Completes at the next reload, never without a receiver (or once its sender is gone).
async fn reloaded(reloads: &mut Option<watch::Receiver<u64>>) {
    let changed = match reloads {
        Some(r) => r.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// A stream that counts the reads and writes that moved bytes (under TLS, the TCP stream's, so
/// a handshake counts too).
pub(super) struct IdleWatch<T> {
    inner: T,
    moved: Arc<AtomicU64>,
}

impl<T> IdleWatch<T> {
    /// `inner`, counting into `moved`.
    pub(super) fn new(inner: T, moved: Arc<AtomicU64>) -> Self {
        Self { inner, moved }
    }

    fn touch(&self) {
        self.moved.fetch_add(1, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleWatch<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleWatch<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
