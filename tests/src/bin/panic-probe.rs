//! A test probe (PCI DSS §5 case 40): a process set up exactly as the vault and the proxy are,
//! through `shared::server::run_command` (process hardening, the panic hook that withholds
//! payloads, logging), that holds a card number and then fails the ways a service can:
//!
//! - `task`: a panic inside a spawned task, as in a request handler, with the PAN in its message;
//! - `main`: a panic on the command's own path, unwinding out of the runtime;
//! - `abort`: `abort()` with the PAN in memory (a core dump would hold it).
//!
//! The PAN comes from `PROBE_PAN`. `tests/tests/hardening.rs` runs it.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use shared::Pan;
use shared::config::LogConfig;
use shared::telemetry::LogFormat;

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    shared::server::run_command(
        "panic-probe",
        || Ok(()),
        |()| LogConfig {
            format: LogFormat::Json,
            filter: "debug".to_owned(),
        },
        |()| async move {
            let pan = Pan::parse(&std::env::var("PROBE_PAN")?)
                .map_err(|_| anyhow::anyhow!("PROBE_PAN is not a card number"))?;
            tracing::info!(card = ?pan, "probe holds a card");
            match mode.as_str() {
                "task" => {
                    let handler = tokio::spawn(async move {
                        let in_flight = pan;
                        probe_panic(&in_flight)
                    });
                    let joined = handler.await;
                    tracing::info!(panicked = joined.is_err(), "request task ended");
                    Ok(ExitCode::from(3))
                }
                "main" => probe_panic(&pan),
                "abort" => std::process::abort(),
                _ => anyhow::bail!("usage: panic-probe task|main|abort"),
            }
        },
    )
}

#[allow(
    clippy::panic,
    reason = "the probe's purpose is to panic with a card number"
)]
fn probe_panic(pan: &Pan) -> ! {
    panic!("payout failed for card {} ({pan:?})", pan.expose())
}
