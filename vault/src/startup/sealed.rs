//! A vault whose master key is split into Shamir shares (`keys.provider = "shamir"`): it starts
//! **sealed**, serving only `/healthz`, `/readyz` (503, sealed) and a 503 for everything else,
//! until operators have typed in enough shares through `vault operator unseal`. Those go over a
//! local Unix socket (`keys.unseal_socket`, mode 0600, the vault's own user only), never over
//! the API port. `vault operator seal` drops the keys from memory and goes back to sealed.
//!
//! The socket speaks one request line and one JSON answer line per connection (`unseal SHARE`,
//! `seal`, `status`): a local, two-party exchange that needs no HTTP. The listening sockets are
//! bound once and served in phases (sealed, unsealed, sealed again), so clients wait in the
//! backlog between phases rather than finding the port closed.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use zeroize::Zeroizing;

use shared::server::Bound;

use super::{Application, StartupError, open_serving, open_store};
use crate::audit::Action;
use crate::config::VaultConfig;
use crate::crypto::shamir::{self, Progress, Unsealer};
use crate::crypto::{CryptoError, GivenKeyProvider, KeyProvider, MasterKey};
use crate::service::{Vault, VaultError};
use crate::store::Store;

/// The longest request line the unseal socket reads (a share is about 100 characters).
const MAX_REQUEST: usize = 1024;

/// For commands that run once on a Shamir vault: the operators type their shares on standard
/// input, one per line, until the threshold is reached.
#[derive(Debug)]
pub struct StdinShares;

impl KeyProvider for StdinShares {
    fn may_make_keys(&self) -> bool {
        false
    }

    fn master_key(&self) -> Result<MasterKey, CryptoError> {
        let mut unsealer = Unsealer::new();
        let stdin = std::io::stdin();
        let mut lines = stdin.lock();
        loop {
            let wanted = unsealer.threshold().map_or_else(
                || "a share".to_owned(),
                |k| format!("share {} of {k}", unsealer.held() + 1),
            );
            eprint!("vault: the master key is split into Shamir shares: enter {wanted}: ");
            let _ = std::io::stderr().flush();
            let mut line = Zeroizing::new(String::new());
            if lines.read_line(&mut line).map_err(CryptoError::Io)? == 0 {
                return Err(CryptoError::Shares(
                    "standard input ended before enough shares were entered".to_owned(),
                ));
            }
            let share =
                shamir::parse_share(&line).map_err(|e| CryptoError::Shares(e.to_string()))?;
            match unsealer.add(share) {
                Ok(Progress::Complete(key)) => return Ok(MasterKey::from_bytes(&key)),
                Ok(Progress::Need { .. }) => {}
                Err(e) => eprintln!("vault: {e}"),
            }
        }
    }
}

/// What the socket tells the serving loop.
enum Request {
    /// The shares made a master key that opens this database: serve with this vault.
    Unsealed(Vault),
    /// Drop the keys and go back to sealed; answered once sealed.
    Seal(tokio::sync::oneshot::Sender<()>),
}

/// Serves a Shamir vault: sealed until unsealed, then the full API until sealed again or
/// `shutdown`.
///
/// # Errors
///
/// The database cannot be opened or has no keys, a listener or the socket cannot be bound,
/// or serving failed.
pub async fn serve(
    config: &VaultConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let store = open_store(config).await.map_err(VaultError::from)?;
    if store
        .wrapped_keys()
        .await
        .map_err(VaultError::from)?
        .is_empty()
    {
        return Err(VaultError::NoKeys.into());
    }
    let server = Bound::bind(config.listen(), &config.server).await?;
    let form = match config.collect.listen {
        Some(addr) => Some(Bound::bind(addr, &config.form_server()).await?),
        None => None,
    };
    let socket = bind_socket(&config.keys.unseal_socket)?;
    if let Ok(addr) = server.local_addr() {
        tracing::info!(addr = %addr, tls = server.is_tls(), "vault listening");
    }
    let (requests, mut incoming) = mpsc::channel(1);
    let (phase, _) = watch::channel(Phase::Sealed);
    let phase = Arc::new(phase);
    let gate = Arc::new(Gate {
        config: config.clone(),
        store: Arc::clone(&store),
        unsealer: tokio::sync::Mutex::new((Unsealer::new(), None)),
        phase: Arc::clone(&phase),
        requests,
    });
    let socket_task = tokio::spawn(answer_socket(socket, gate));
    let (stopping, stopped) = watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let result = loop {
        phase.send_replace(Phase::Sealed);
        tracing::warn!(
            socket = %config.keys.unseal_socket.display(),
            "vault sealed: it answers 503 until operators enter enough Shamir shares with `vault operator unseal`"
        );
        let (stop_sealed, sealed_stopped) = watch::channel(false);
        let mut sealed_servers = vec![tokio::spawn(
            dup(&server)?.serve(sealed_router(), wait(sealed_stopped.clone())),
        )];
        if let Some(form) = &form {
            sealed_servers.push(tokio::spawn(
                dup(form)?.serve(sealed_router(), wait(sealed_stopped.clone())),
            ));
        }
        let mut shutting = stopped.clone();
        let vault = tokio::select! {
            request = incoming.recv() => match request {
                Some(Request::Unsealed(vault)) => Some(vault),
                Some(Request::Seal(done)) => { let _ = done.send(()); None }
                None => None,
            },
            _ = shutting.wait_for(|s| *s) => None,
        };
        let _ = stop_sealed.send(true);
        for task in sealed_servers {
            if let Ok(Err(e)) = task.await {
                tracing::error!(error = %e, "the sealed listener failed");
            }
        }
        if *stopped.borrow() {
            break Ok(());
        }
        let Some(vault) = vault else { continue };
        record(&vault, Action::VaultUnseal).await;
        let app = Application::assemble(
            config,
            vault.clone(),
            dup(&server)?,
            form.as_ref().map(dup).transpose()?,
        );
        phase.send_replace(Phase::Unsealed);
        tracing::info!("vault unsealed: serving");
        // Serve until shutdown or a seal request; the seal is answered once the keys are gone.
        let (seal_tx, seal_rx) =
            tokio::sync::oneshot::channel::<tokio::sync::oneshot::Sender<()>>();
        let mut shutting = stopped.clone();
        let watcher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    request = incoming.recv() => match request {
                        Some(Request::Seal(done)) => {
                            let _ = seal_tx.send(done);
                            return incoming;
                        }
                        // The socket refuses a second unseal; nothing else can send one.
                        Some(Request::Unsealed(_)) => {}
                        None => return incoming,
                    },
                    _ = shutting.wait_for(|s| *s) => return incoming,
                }
            }
        });
        let pending = Arc::new(parking_lot::Mutex::new(None));
        let until = {
            let pending = Arc::clone(&pending);
            let mut shutting = stopped.clone();
            async move {
                tokio::select! {
                    done = seal_rx => *pending.lock() = done.ok(),
                    _ = shutting.wait_for(|s| *s) => {}
                }
            }
        };
        let served = app.run_until(until).await;
        incoming = match watcher.await {
            Ok(incoming) => incoming,
            Err(_) => break served,
        };
        if served.is_err() || *stopped.borrow() {
            break served;
        }
        record(&vault, Action::VaultSeal).await;
        drop(vault);
        phase.send_replace(Phase::Sealed);
        if let Some(done) = pending.lock().take() {
            let _ = done.send(());
        }
    };
    socket_task.abort();
    signal.abort();
    let _ = std::fs::remove_file(&config.keys.unseal_socket);
    result
}

/// Another handle on a bound listener, for the next phase.
fn dup(bound: &Bound) -> Result<Bound, StartupError> {
    bound
        .duplicate()
        .map_err(|e| StartupError::Server(shared::server::ServeError::Serve(e)))
}

/// Whether the vault holds its keys, as the socket reports it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Phase {
    Sealed,
    Unsealed,
}

/// Writes an unseal or seal event to the audit log (a failure is logged: the vault's state
/// changes either way).
async fn record(vault: &Vault, action: Action) {
    if let Err(e) = vault.record_operator(action, None).await {
        tracing::error!(error = %e, action = action.as_str(), "could not audit the operator action");
    }
}

/// The router a sealed vault serves: alive, not ready, nothing else.
fn sealed_router() -> Router {
    let sealed = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("cache-control", "no-store")],
            axum::Json(json!({
                "error": "sealed",
                "message": "the vault is sealed: operators unseal it with `vault operator unseal` on its host",
            })),
        )
            .into_response()
    };
    Router::new()
        .route("/healthz", axum::routing::get(shared::http::live))
        .route(
            "/readyz",
            axum::routing::get(move || async move { sealed() }),
        )
        .fallback(move || async move { sealed() })
}

/// Binds the unseal socket, mode 0600. A socket file left by a vault that died is replaced; one
/// a running vault answers on is not.
fn bind_socket(path: &Path) -> Result<UnixListener, StartupError> {
    let bind_error = |e: std::io::Error| {
        StartupError::Server(shared::server::ServeError::Serve(std::io::Error::new(
            e.kind(),
            format!("keys.unseal_socket {}: {e}", path.display()),
        )))
    };
    check_socket_dir(path).map_err(bind_error)?;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(bind_error(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another vault is answering on it",
            )));
        }
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// What every connection to the unseal socket shares.
struct Gate {
    config: VaultConfig,
    store: Arc<dyn Store>,
    /// The shares held, and when the last was entered.
    unsealer: tokio::sync::Mutex<(Unsealer, Option<std::time::Instant>)>,
    phase: Arc<watch::Sender<Phase>>,
    requests: mpsc::Sender<Request>,
}

/// Shares entered longer ago than this are forgotten before the next one counts: an unseal left
/// half done (or blocked by a share of another set) does not stay so.
const SHARES_FORGOTTEN_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// How long one connection may take to send its line.
const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers the unseal socket until aborted: each connection in its own task, so one that never
/// sends its line holds nobody else up.
async fn answer_socket(socket: UnixListener, gate: Arc<Gate>) {
    loop {
        let Ok((stream, _)) = socket.accept().await else {
            continue;
        };
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            let mut stream = stream;
            let answer = answer(&mut stream, &gate).await;
            let _ = write_answer(stream, answer).await;
        });
    }
}

async fn write_answer(mut stream: UnixStream, answer: serde_json::Value) -> std::io::Result<()> {
    let mut line = answer.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).await?;
    stream.shutdown().await
}

/// This process's user id (the owner of `/proc/self`), without `libc`.
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Refuses a socket directory others may write to: they could put their own socket there and
/// collect the shares operators type.
fn check_socket_dir(path: &Path) -> Result<(), std::io::Error> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "its directory {} is writable by group or others, so another user could answer in the vault's place; put it in a directory only the vault's user may write (chmod 700)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

async fn answer(stream: &mut UnixStream, gate: &Gate) -> serde_json::Value {
    let refuse = |message: &str| json!({"ok": false, "message": message});
    // The socket file is 0600 already; the peer's user is checked too, so only this user
    // (and root) is ever answered.
    match (stream.peer_cred(), own_uid()) {
        (Ok(peer), Some(me)) if peer.uid() == me || peer.uid() == 0 => {}
        _ => return refuse("only the vault's own user may use the unseal socket"),
    }
    let mut line = Zeroizing::new(String::new());
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(
        &mut *stream,
        MAX_REQUEST as u64,
    ));
    let read = tokio::time::timeout(REQUEST_DEADLINE, reader.read_line(&mut line)).await;
    if !matches!(read, Ok(Ok(n)) if n > 0) {
        return refuse("expected one line: unseal SHARE, seal, or status");
    }
    let request = line.trim();
    let (verb, rest) = request.split_once(' ').unwrap_or((request, ""));
    // One request at a time past this point: the shares held are one state.
    let mut held = gate.unsealer.lock().await;
    if held
        .1
        .is_some_and(|at| at.elapsed() > SHARES_FORGOTTEN_AFTER)
    {
        held.0.reset();
        held.1 = None;
    }
    let state = *gate.phase.borrow();
    let status = |held: &Unsealer, sealed: bool| {
        json!({
            "ok": true,
            "sealed": sealed,
            "held": held.held(),
            "threshold": held.threshold(),
        })
    };
    match verb {
        "status" => status(&held.0, state == Phase::Sealed),
        "seal" => {
            held.0.reset();
            held.1 = None;
            // Always through the serving loop, which also answers it when it is sealed: an
            // unseal it has not yet acted on comes first, and is sealed again.
            let (done, sealed) = tokio::sync::oneshot::channel();
            if gate.requests.send(Request::Seal(done)).await.is_err() || sealed.await.is_err() {
                return refuse("the vault is stopping");
            }
            json!({"ok": true, "sealed": true, "message": "sealed: the keys are gone from memory"})
        }
        "unseal" => {
            if state == Phase::Unsealed {
                return json!({"ok": true, "sealed": false, "message": "already unsealed"});
            }
            let share = match shamir::parse_share(rest) {
                Ok(share) => share,
                Err(e) => return refuse(&e.to_string()),
            };
            held.1 = Some(std::time::Instant::now());
            match held.0.add(share) {
                Err(e) => refuse(&e.to_string()),
                Ok(Progress::Need { held: n, threshold }) => json!({
                    "ok": true,
                    "sealed": true,
                    "held": n,
                    "threshold": threshold,
                    "message": format!("share accepted: {n} of {threshold}"),
                }),
                Ok(Progress::Complete(key)) => {
                    held.1 = None;
                    let provider = GivenKeyProvider::new(key);
                    match open_serving(&gate.config, Arc::clone(&gate.store), &provider).await {
                        Ok(vault) => {
                            // Unsealed from here on, as far as the socket says: a seal that
                            // follows is sent after this unseal and so undoes it.
                            gate.phase.send_replace(Phase::Unsealed);
                            if gate.requests.send(Request::Unsealed(vault)).await.is_err() {
                                return refuse("the vault is stopping");
                            }
                            json!({"ok": true, "sealed": false, "message": "unsealed"})
                        }
                        Err(StartupError::Vault(VaultError::Crypto(
                            CryptoError::WrongMasterKey,
                        ))) => {
                            tracing::warn!(
                                "unseal refused: the shares entered do not make this vault's master key"
                            );
                            refuse(
                                "the shares entered do not make this vault's master key (one or more is wrong, or from another vault); all were forgotten: enter them again",
                            )
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "unseal: the vault could not be opened");
                            refuse(&format!("the vault could not be opened: {e}"))
                        }
                    }
                }
            }
        }
        _ => refuse("expected one line: unseal SHARE, seal, or status"),
    }
}

/// `vault operator …`: sends one request line to the unseal socket and returns the answer.
///
/// # Errors
///
/// The socket cannot be reached (no Shamir vault running there), is another user's, or
/// answered nonsense.
pub async fn ask(socket: &Path, request: &str) -> Result<serde_json::Value, std::io::Error> {
    use tokio::io::AsyncReadExt;
    let said = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("keys.unseal_socket {}: {e}", socket.display()),
        )
    };
    check_socket_dir(socket).map_err(said)?;
    let mut stream = UnixStream::connect(socket).await.map_err(|e| {
        said(std::io::Error::new(
            e.kind(),
            format!("{e} (is a vault with keys.provider = \"shamir\" running?)"),
        ))
    })?;
    // A share goes only to a process of this user (or root): not to whoever bound the path.
    let peer = stream.peer_cred().map_err(said)?.uid();
    if own_uid().is_none_or(|me| peer != me && peer != 0) {
        return Err(said(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the process answering on it is another user's, not a vault of yours; nothing was sent",
        )));
    }
    let mut line = Zeroizing::new(request.to_owned());
    line.push('\n');
    stream.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    stream.take(64 * 1024).read_to_string(&mut answer).await?;
    serde_json::from_str(answer.trim())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The socket path a command uses (so a test can pass its own).
pub fn socket_path(config: &VaultConfig) -> PathBuf {
    config.keys.unseal_socket.clone()
}
