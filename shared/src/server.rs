//! Serving an axum router the way both services do, and running their commands.
//!
//! The accept loop is ours rather than `axum::serve` because axum's gives no timers: with it, a
//! connection that never finishes its request head, or never reads its response, stays open
//! forever, and the number of connections is unbounded (docs/ARCHITECTURE.md §9.5: every anonymous request is
//! cheap). Here each connection has:
//!
//! - a **header-read timeout** (hyper's own): a request head must be complete this long after
//!   the connection opens or the previous response was sent, so it also closes idle keep-alive
//!   connections;
//! - an **idle timeout** (`conn`): a connection that moves no byte either way for this long is
//!   dropped (within twice the timeout), which catches a client that stops reading its
//!   responses;
//! - a place under **max connections**: at the limit the loop stops accepting, so further
//!   clients wait in the kernel's backlog instead of costing memory.
//!
//! Each request also carries the peer address as axum's `ConnectInfo<SocketAddr>`, for per-address
//! rate limits. Shutdown is graceful: stop accepting, let in-flight requests finish within the
//! grace period, then drop what is left. [`Bound`] is a service's listener with its options,
//! bound at build and served at run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use hyper_util::rt::TokioTimer;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

mod conn;
pub mod tls;

pub use tls::{PeerCertificate, ServerTls, TlsError};

/// Connection limits and timers, from `[server]`.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// After the shutdown signal, how long in-flight requests get.
    pub grace: Duration,
    /// A request head must arrive within this long (also bounds idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// A connection moving no byte for this long is dropped.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl ServeOptions {
    /// The options `[server]` describes.
    pub fn from_config(config: &crate::config::ServerConfig) -> Self {
        Self {
            grace: Duration::from_millis(config.shutdown_timeout_ms),
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            max_connections: config.max_connections,
        }
    }
}

/// Why a service could not listen, or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// The TLS files (`[server.tls]`) did not load.
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// A service's bound listener and the `[server]` options it is served with: what each
/// service's `Application::build` binds and its `run_until` serves on.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    options: ServeOptions,
    tls: Option<Arc<ServerTls>>,
}

impl Bound {
    /// Binds `addr` (port 0 picks a free port) for serving as `config` says.
    ///
    /// # Errors
    ///
    /// [`ServeError::Bind`], or [`ServeError::Tls`] when `[server.tls]` names files that do
    /// not load.
    pub async fn bind(
        addr: SocketAddr,
        config: &crate::config::ServerConfig,
    ) -> Result<Self, ServeError> {
        let tls = ServerTls::load(&config.tls)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        // Watched from now, before the service says it listens: a SIGHUP that came before the
        // handler would meet the default action and end the process.
        if let Some(tls) = &tls {
            tls::reload_on_sighup(Arc::clone(tls));
        }
        Ok(Self {
            listener,
            options: ServeOptions::from_config(config),
            tls,
        })
    }

    /// Whether this listener serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// The socket has no local address (not expected after a successful bind).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A second handle on the same listening socket, for a server that serves it in phases (a
    /// sealed vault, then the unsealed one): connections wait in the backlog between phases
    /// instead of being refused by a port that was closed and bound again.
    ///
    /// # Errors
    ///
    /// The socket cannot be duplicated.
    pub fn duplicate(&self) -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let fd = self.listener.as_fd().try_clone_to_owned()?;
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener: TcpListener::from_std(listener)?,
            options: self.options,
            tls: self.tls.clone(),
        })
    }

    /// Serves `router` through [`serve`] until `shutdown` completes and the grace period ends
    /// (over TLS, the files are re-read on every SIGHUP since [`Bound::bind`]).
    ///
    /// # Errors
    ///
    /// [`ServeError::Serve`].
    pub async fn serve(
        self,
        router: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        serve(self.listener, router, shutdown, self.options, self.tls)
            .await
            .map_err(ServeError::Serve)
    }
}

/// Serves two listeners, each its router, until `shutdown` completes (one signal for both);
/// either failing stops the other.
///
/// # Errors
///
/// [`ServeError::Serve`] from either.
pub async fn serve_pair(
    (first, first_router): (Bound, axum::Router),
    (second, second_router): (Bound, axum::Router),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop, stopped) = watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let a = first.serve(first_router, wait(stopped.clone()));
    let b = second.serve(second_router, wait(stopped));
    let result = tokio::try_join!(a, b).map(|_| ());
    signal.abort();
    result
}

/// Serves `router` until `shutdown` completes, then gives in-flight requests `options.grace`
/// before dropping them. With `tls`, each connection's handshake must finish within
/// `options.header_read_timeout`, and its requests carry the client's [`PeerCertificate`].
///
/// # Errors
///
/// The listener failed in a way that retrying cannot fix.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
    tls: Option<Arc<ServerTls>>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);

    loop {
        // A slot first, then a connection: at the limit, clients wait in the backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Per-connection failures (the peer reset before we accepted, or the process
                    // is out of descriptors for a moment) must not stop the server.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            Arc::clone(&builder),
            stream,
            peer,
            router.clone(),
            tls.clone(),
            options,
            stop_rx.clone(),
            permit,
        ));
    }

    tracing::info!("shutting down: finishing in-flight requests");
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(options.grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown grace period over; dropping remaining connections");
        connections.abort_all();
    }
    Ok(())
}

/// One accepted connection: its TLS handshake (when the listener has TLS), then its requests,
/// each carrying the peer's address and certificate.
#[allow(
    clippy::too_many_arguments,
    reason = "one connection's parts, passed once"
)]
async fn connection(
    builder: Arc<hyper::server::conn::http1::Builder>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    tls: Option<Arc<ServerTls>>,
    options: ServeOptions,
    stop: watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let moved = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let io = conn::IdleWatch::new(stream, Arc::clone(&moved));
    let service = |certificate: Option<PeerCertificate>| {
        TowerToHyperService::new(router.map_request(
            move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                if let Some(c) = &certificate {
                    req.extensions_mut().insert(c.clone());
                }
                req
            },
        ))
    };
    let Some(tls) = tls else {
        let service = service(None);
        conn::serve_connection(
            builder,
            io,
            moved,
            service,
            options.idle_timeout,
            stop,
            None,
            permit,
        )
        .await;
        return;
    };
    // Subscribed before the handshake, so a reload during it still ends the connection.
    let reloads = tls.reloads();
    // The handshake is bounded like a request head: a client that opens connections and never
    // finishes one holds a slot for this long at most.
    let handshake = tokio::time::timeout(options.header_read_timeout, tls.acceptor().accept(io));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let certificate_refused = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|inner| matches!(inner, rustls::Error::InvalidCertificate(_)));
            if certificate_refused {
                tls.refused_certificate(peer, &e);
            } else {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not finished within server.header_read_timeout_ms");
            return;
        }
    };
    let certificate = tls::peer_certificate(stream.get_ref().1);
    // A connection that proved a client certificate ends at the next reload (a new CRL may
    // revoke it); one without needs no new check.
    let reloads = certificate.is_some().then_some(reloads);
    let service = service(certificate);
    conn::serve_connection(
        builder,
        stream,
        moved,
        service,
        options.idle_timeout,
        stop,
        reloads,
        permit,
    )
    .await;
}

/// The client certificate of a request's connection: verified against
/// `server.tls.client_ca_file` in the handshake (absent over plain HTTP, or when the client gave
/// none).
pub fn peer_certificate(req: &axum::http::request::Parts) -> Option<&PeerCertificate> {
    req.extensions.get::<PeerCertificate>()
}

/// The peer of a request served by [`serve`] (absent only for requests made in-process).
pub fn peer_addr(req: &axum::http::request::Parts) -> Option<SocketAddr> {
    req.extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled: a server prints its "listening" line before it polls its shutdown
/// future, and a SIGTERM in between would otherwise meet the default action and kill the process
/// (no graceful drain, no final seal-count flush, exit by signal).
///
/// Called outside a runtime (as an argument to `block_on`), it installs them when first polled
/// instead: there is no reactor to register with before.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let install = || {
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    let installed = tokio::runtime::Handle::try_current().is_ok().then(install);
    async move {
        let (terminate, interrupt) = installed.unwrap_or_else(install);
        let wait = |installed: std::io::Result<tokio::signal::unix::Signal>| async move {
            match installed {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(terminate) => {}
            () = wait(interrupt) => {}
        }
    }
}

/// Exit code for bad configuration or usage (sysexits EX_USAGE).
pub const EX_USAGE: u8 = 64;

/// `sysexits.h` `EX_CONFIG`: the configuration is refused (production mode's checks).
pub const EX_CONFIG: u8 = 78;

/// Runs a service's command: hardens the process ([`harden_process`]), loads its configuration
/// with `load`, starts logging (and the panic hook that withholds payloads), builds the runtime
/// and runs `command`. Every failure is printed once as `<name>: <error>`; bad configuration
/// exits 64.
pub fn run_command<C, F, Fut>(
    name: &str,
    load: impl FnOnce() -> Result<C, crate::config::ConfigError>,
    log: impl FnOnce(&C) -> crate::config::LogConfig,
    command: F,
) -> std::process::ExitCode
where
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = anyhow::Result<std::process::ExitCode>>,
{
    use std::process::ExitCode;

    // Before anything can hold a key or a card number: every command of both services may
    // (serving, unwrapping the master key to manage clients or verify the audit log).
    if let Err(e) = harden_process() {
        eprintln!("{name}: {e}");
        return ExitCode::FAILURE;
    }
    crate::telemetry::install_panic_hook();
    let config = match load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let log = log(&config);
    if let Err(e) = crate::telemetry::init(log.format, &log.filter, std::io::stderr) {
        eprintln!("{name}: {e}");
        return ExitCode::from(EX_USAGE);
    }
    block_on(name, async move {
        match command(config).await {
            Ok(code) => code,
            // One line saying what failed (and, in the errors' own words, how to fix it): not a
            // log event as well, which would say it twice.
            Err(e) => {
                eprintln!("{name}: {}", one_line(&e));
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs `main` to its end on a multi-threaded runtime; when no runtime can be made, says so
/// (as `name`) and fails.
pub fn block_on(
    name: &str,
    main: impl Future<Output = std::process::ExitCode>,
) -> std::process::ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: an error that already quotes its
/// source (`"wrapping secrets: {0}"`) would otherwise print it twice.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The process could not be hardened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HardeningError {
    /// `setrlimit(RLIMIT_CORE, 0)` failed.
    #[error("cannot disable core dumps: {0}")]
    CoreDumps(#[source] std::io::Error),
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("cannot make the process non-dumpable: {0}")]
    Dumpable(#[source] std::io::Error),
}

/// Keeps keys and card numbers in memory from leaking out of the process: core dumps off
/// (`RLIMIT_CORE` 0, soft and hard, so no child can raise it) and the process non-dumpable
/// (`PR_SET_DUMPABLE` 0: no core even if the limit were raised, `/proc/<pid>/mem` and friends
/// readable by root only, no `ptrace` attach from other processes of the same user).
///
/// # Errors
///
/// Either step failed; the caller should refuse to run.
pub fn harden_process() -> Result<(), HardeningError> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| HardeningError::CoreDumps(e.into()))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| HardeningError::Dumpable(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardening_turns_core_dumps_off_and_the_process_non_dumpable() {
        harden_process().unwrap();
        let core = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading the key: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn a_failure_is_one_line_with_each_cause_once() {
        let quoting = anyhow::Error::new(Quoting(std::io::Error::other("no such file")));
        assert_eq!(one_line(&quoting), "reading the key: no such file");
        let chained = anyhow::Error::new(std::io::Error::other("no such file")).context("opening");
        assert_eq!(one_line(&chained), "opening: no such file");
    }
}

/// The connection timers and the connection limit, against a real listener and raw sockets.
#[cfg(test)]
mod connection_tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::*;

    /// Serves a trivial router with `options` and runs `client` against it on a blocking thread
    /// (the raw sockets block); the server stops once the client is done.
    async fn with_server<T: Send + 'static>(
        options: ServeOptions,
        client: impl FnOnce(SocketAddr) -> T + Send + 'static,
    ) -> T {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            router,
            async {
                let _ = stopped.await;
            },
            options,
            None,
        ));
        tokio::task::spawn_blocking(move || client(addr))
            .await
            .unwrap()
    }

    /// A new connection to `addr` that has sent `request`.
    fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        s
    }

    fn options() -> ServeOptions {
        ServeOptions {
            grace: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
        }
    }

    /// Reads until the server closes the connection; returns what it sent and how long it took.
    /// The socket's own timeout only bounds a hang.
    fn read_until_closed(mut stream: TcpStream) -> (String, Duration) {
        let started = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_head_that_never_ends_is_cut_off() {
        let options = ServeOptions {
            header_read_timeout: Duration::from_millis(300),
            ..options()
        };
        let ((sent, took), body) = with_server(options, |addr| {
            let cut = read_until_closed(send(addr, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "));
            // A complete request on a fresh connection is still served, with the peer address.
            let whole = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            (cut, read_until_closed(send(addr, whole)).0)
        })
        .await;
        assert!(took < Duration::from_secs(60), "held for {took:?}");
        assert!(!sent.contains("200 OK"), "{sent}");
        assert!(
            body.starts_with("HTTP/1.1 200 OK") && body.ends_with("127.0.0.1"),
            "{body}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_that_moves_no_bytes_is_dropped_at_the_idle_timeout() {
        // The header timer is far away: only the idle timer can close this connection.
        let options = ServeOptions {
            idle_timeout: Duration::from_millis(300),
            ..options()
        };
        let took = with_server(options, |addr| {
            read_until_closed(TcpStream::connect(addr).unwrap()).1
        })
        .await;
        assert!(took < Duration::from_secs(60), "held for {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_past_the_limit_wait_for_a_free_slot() {
        let options = ServeOptions {
            max_connections: 2,
            ..options()
        };
        with_server(options, two_slots).await;
    }

    fn two_slots(addr: SocketAddr) {
        let get = |addr| send(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        // Two kept-alive connections hold both slots.
        let mut held: Vec<TcpStream> = (0..2).map(|_| get(addr)).collect();
        for s in &mut held {
            let mut buf = [0u8; 17];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200 OK\r\n");
        }
        let mut third = get(addr);
        third
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 17];
        assert!(
            third.read_exact(&mut buf).is_err(),
            "a third connection was served past max_connections"
        );
        drop(held.pop());
        third
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        third.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200 OK\r\n");
    }
}
