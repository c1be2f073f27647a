//! Serving an axum router the way both services do: graceful shutdown on SIGTERM or SIGINT, with
//! a bound on how long in-flight requests get.

use std::time::Duration;

use tokio::net::TcpListener;

/// Serves `router` until `shutdown` completes, then gives in-flight requests `grace` before
/// dropping them.
///
/// # Errors
///
/// The server failed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, mut stopped) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    tokio::select! {
        result = server => result,
        () = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("shutdown grace period over; dropping remaining connections");
            Ok(())
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Exit code for bad configuration or usage (sysexits EX_USAGE).
pub const EX_USAGE: u8 = 64;

/// Runs a service's command: loads its configuration with `load`, starts logging (and the
/// panic hook that withholds payloads), builds the runtime and runs `command`. Every failure is
/// printed once as `<name>: <error>`; bad configuration exits 64.
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
    crate::telemetry::install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command(config)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Disables core dumps: one would hold keys and any card number in flight.
pub fn disable_core_dumps() {
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0) {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
}
