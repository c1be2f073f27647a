//! Configuration of the sandbox and of the partner projects it knows.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sandbox::faults::FaultSpec;

/// Which spelling of the session API a request used, or a project receives webhooks in
/// (API.md §0.2).
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// `/api/v1/...`: `payment_method`, `payments`.
    V1,
    /// `/api/v2/...`: `payout_details`, `payout_list`. The SDK's default, so ours too.
    #[default]
    V2,
}

impl ApiVersion {
    /// The key of the payout destination, in requests and inside payout objects.
    pub fn destination_key(self) -> &'static str {
        match self {
            Self::V1 => "payment_method",
            Self::V2 => "payout_details",
        }
    }

    /// The key of a session's list of payouts.
    pub fn payouts_key(self) -> &'static str {
        match self {
            Self::V1 => "payments",
            Self::V2 => "payout_list",
        }
    }

    /// `v1` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" => Ok(Self::V1),
            "v2" => Ok(Self::V2),
            _ => Err(format!("expected v1 or v2, got {s:?}")),
        }
    }
}

/// One partner project, as the bank's manager would have set it up. Once the sandbox runs it is
/// also what the control API shows and the state file keeps ([`ProjectView`]), its wallet
/// balance the live one.
///
/// [`ProjectView`]: crate::sandbox::ProjectView
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ProjectConfig {
    /// The `X-PARTNER-PROJECT` value.
    pub id: String,
    /// The partner's RSA public key (SPKI PEM, `BEGIN PUBLIC KEY`) that request signatures are
    /// checked with.
    pub partner_public_key_pem: String,
    /// Where webhooks go; `None` sends none (they are still journaled as skipped).
    pub webhook_url: Option<String>,
    /// Automatic confirmation: no `ready_to_confirm`, straight to `payment_finished`.
    pub auto_confirm: bool,
    /// Single-request payouts: `session/init/payout` runs with no `ready_to_confirm`.
    pub single_request_payouts: bool,
    /// The spelling of webhook payloads.
    pub webhook_api_version: ApiVersion,
    /// Collateral balance in minor units; successful payouts reduce it, refunds restore it.
    pub wallet_balance: i64,
    /// How long a session waits for `session/confirm` after `ready_to_confirm` before it is
    /// cancelled with `confirm_timeout`. In JSON: `confirm_timeout_ms`.
    #[serde(rename = "confirm_timeout_ms", with = "millis")]
    pub confirm_timeout: Duration,
    /// The live bank's latitude this project shows (SANDBOX.md "Quirks").
    pub quirks: crate::sandbox::Quirks,
}

impl ProjectConfig {
    /// Default wallet balance: 1,000,000.00 in minor units, enough for any test that does not
    /// set its own.
    pub const DEFAULT_WALLET_BALANCE: i64 = 100_000_000;
    /// Default confirm timeout: 240 minutes, the only published figure (Smart Glocal, SG11).
    pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(240 * 60);

    /// A project with the defaults: no webhook URL, manual confirmation, v2 webhooks.
    pub fn new(id: impl Into<String>, partner_public_key_pem: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            partner_public_key_pem: partner_public_key_pem.into(),
            webhook_url: None,
            auto_confirm: false,
            single_request_payouts: false,
            webhook_api_version: ApiVersion::V2,
            wallet_balance: Self::DEFAULT_WALLET_BALANCE,
            confirm_timeout: Self::DEFAULT_CONFIRM_TIMEOUT,
            quirks: crate::sandbox::Quirks::default(),
        }
    }
}

/// A `Duration` in JSON as whole milliseconds (saturating at `u64::MAX`).
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Everything [`spawn`](crate::sandbox::spawn) needs.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Address to listen on; port 0 picks a free one (see `SandboxHandle::base_url`).
    pub listen: SocketAddr,
    /// The bank's RSA private key (PKCS#1 or PKCS#8 PEM) that webhooks are signed with; `None`
    /// generates a 2048-bit key at start.
    pub bank_private_key_pem: Option<String>,
    /// Delays between webhook attempts: the n-th retry waits `webhook_retry[n-1]`, and the last
    /// entry repeats (it is the cap). Empty means no retries.
    pub webhook_retry: Vec<Duration>,
    /// Attempts per webhook, the first included.
    pub webhook_max_attempts: u32,
    /// Timeout of one webhook attempt.
    pub webhook_timeout: Duration,
    /// From start/init to `ready_to_confirm`.
    pub ready_delay: Duration,
    /// From confirm (or cancel, or an automatic start) to `payment_finished`.
    pub finish_delay: Duration,
    /// How late responses about a `SLOW_BANK` session come.
    pub slow_delay: Duration,
    /// How long a `hang` fault holds a request before it finally answers `internal_error`.
    pub hang_limit: Duration,
    /// The longest a webhook held by a `reorder` fault waits for the next webhook.
    pub reorder_max_hold: Duration,
    /// Journal entries kept; the oldest go first.
    pub journal_limit: usize,
    /// Projects known at start; more can be added through the control API.
    pub projects: Vec<ProjectConfig>,
    /// Faults active at start.
    pub faults: Vec<FaultSpec>,
    /// HTTP status overrides by error code (e.g. `"authentication_error" => 403`).
    pub error_status: BTreeMap<String, u16>,
    /// Put after `ps_`/`po_`/`rf_` in every id; empty gives `ps_1`, `ps_2`, … (the binary uses a
    /// random run tag, so ids stay unique when it restarts).
    pub id_prefix: String,
    /// The file the state (projects, sessions, counters, idempotency keys) is kept in: read at
    /// start when it exists, written through on every change. `None` keeps it in memory only.
    pub state_file: Option<std::path::PathBuf>,
    /// TLS on the sandbox's listener (the bank over https), as the services' `[server.tls]`.
    pub tls: shared::config::TlsConfig,
    /// PEM CA certificates a webhook endpoint's certificate must chain to, instead of the
    /// system's (a proxy served by a test CA).
    pub webhook_ca_file: Option<std::path::PathBuf>,
}

impl SandboxConfig {
    /// The default retry schedule: doubling from 100 ms, capped at 5 s.
    pub fn default_webhook_retry() -> Vec<Duration> {
        [100, 200, 400, 800, 1600, 3200, 5000]
            .into_iter()
            .map(Duration::from_millis)
            .collect()
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            bank_private_key_pem: None,
            webhook_retry: Self::default_webhook_retry(),
            webhook_max_attempts: 10,
            webhook_timeout: Duration::from_secs(5),
            ready_delay: Duration::from_millis(50),
            finish_delay: Duration::from_millis(50),
            slow_delay: Duration::from_secs(3),
            hang_limit: Duration::from_secs(60),
            reorder_max_hold: Duration::from_secs(5),
            journal_limit: 10_000,
            projects: Vec::new(),
            faults: Vec::new(),
            error_status: BTreeMap::new(),
            id_prefix: String::new(),
            state_file: None,
            tls: shared::config::TlsConfig::default(),
            webhook_ca_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The control API and the state file show a project with its timeout in milliseconds.
    #[test]
    fn a_project_round_trips_through_json_with_the_timeout_in_ms() {
        let mut project = ProjectConfig::new("p", "pem");
        project.confirm_timeout = Duration::from_millis(1500);
        let json = serde_json::to_value(&project).unwrap();
        assert_eq!(json["confirm_timeout_ms"], 1500);
        assert!(json.get("confirm_timeout").is_none());
        assert_eq!(
            serde_json::from_value::<ProjectConfig>(json).unwrap(),
            project
        );
    }
}
