//! The Bank 131 sandbox: a stateful emulator of the bank's card-payout API (API.md §11, §5) for
//! end-to-end tests over real HTTP and for developers without bank access. `tests/SANDBOX.md`
//! is the user's manual; this is the map of the code.
//!
//! - [`config`]: [`SandboxConfig`], [`ProjectConfig`], [`ApiVersion`]; `handle`: starting it
//!   ([`spawn`]) and the in-process [`SandboxHandle`].
//! - [`keys`]: the bank's RSA key (signs webhooks) and partner keys (check requests), plus
//!   [`generate_rsa_keypair_pem`] and [`Signer`]/[`Verifier`] for tests that play the partner.
//! - `api` and `request`: the bank API (`/api/v1`, `/api/v2`): route, method, faults, project,
//!   signature, idempotency, then the JSON body and the method (the order SANDBOX.md lists).
//! - `engine`, `lifecycle`, `model`, `state`, `error`: the methods, the session/payout state
//!   machine, what a session holds, the one state lock, and the bank's errors.
//! - `webhook`: signed deliveries with retries and faults; [`quirks`]: the live bank's latitude.
//! - [`faults`], [`journal`], [`magic`]: fault switches, the journal, the magic inputs.
//! - `keep`: the state file that carries sessions across a restart (`--state-dir`).
//! - `control`: the unsigned control API under `/__sandbox/`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tests::sandbox::{ProjectConfig, SandboxConfig, generate_rsa_keypair_pem, spawn};
//!
//! let (partner_private_pem, partner_public_pem) = generate_rsa_keypair_pem()?;
//! let mut config = SandboxConfig::default();
//! config.projects.push(ProjectConfig::new("my-project", partner_public_pem));
//! let sandbox = spawn(config).await?;
//! println!("bank at {}, its key:\n{}", sandbox.base_url(), sandbox.bank_public_key_pem());
//! # Ok(()) }
//! ```

mod api;
pub mod config;
mod control;
mod engine;
mod error;
pub mod faults;
mod handle;
pub mod journal;
mod keep;
pub mod keys;
mod lifecycle;
pub mod magic;
mod model;
pub mod quirks;
mod request;
mod state;
mod webhook;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

pub use config::{ApiVersion, ProjectConfig, SandboxConfig};
pub use faults::{ActiveFault, FaultAction, FaultSpec};
pub use handle::{AdvanceStep, ControlError, SandboxError, SandboxHandle, spawn};
pub use journal::{JournalEntry, RequestRecord, WebhookRecord};
pub use keep::StateFileError;
pub use keys::{KeyError, Signer, Verifier, generate_rsa_keypair_pem};
pub use quirks::{AmountForm, Quirks};
pub use state::{ProjectUpdate, ProjectView};

use crate::sandbox::faults::Faults;
use crate::sandbox::journal::Journal;
use crate::sandbox::keep::StateCell;
use crate::sandbox::lifecycle::{Delays, Effects};
use crate::sandbox::webhook::Held;

/// Everything the handlers, timers and webhook tasks share.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) config: SandboxConfig,
    pub(crate) state: StateCell,
    pub(crate) journal: Journal,
    pub(crate) faults: Faults,
    pub(crate) bank: Signer,
    pub(crate) http: reqwest::Client,
    pub(crate) held: Mutex<Option<Held>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Timers and webhooks are spawned here, so the handle's methods work from any thread.
    pub(crate) runtime: tokio::runtime::Handle,
}

/// A cheap, cloneable reference to the shared core (the axum state).
#[derive(Clone, Debug)]
pub(crate) struct Sandbox(Arc<Core>);

impl Deref for Sandbox {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.0
    }
}

impl Sandbox {
    pub(crate) fn delays(&self) -> Delays {
        Delays {
            ready: self.config.ready_delay,
            finish: self.config.finish_delay,
        }
    }

    /// Sleeps for `d`; false if the sandbox shut down first.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            _ = rx.wait_for(|stop| *stop) => false,
        }
    }

    /// Arms the timers and sends the webhooks that a transition produced. Call it after the
    /// state lock is released.
    pub(crate) fn run(&self, effects: Effects) {
        for event in effects.events {
            self.emit(event);
        }
        for timer in effects.timers {
            let sandbox = self.clone();
            self.runtime.spawn(async move {
                if sandbox.sleep(timer.after).await {
                    let result = lifecycle::apply(
                        &mut sandbox.state.lock(),
                        &timer.session,
                        Some(timer.epoch),
                        timer.step,
                    );
                    match result {
                        Ok(fx) => sandbox.run(fx),
                        Err(why) => tracing::debug!(why, "timer found nothing to do"),
                    }
                }
            });
        }
    }
}
