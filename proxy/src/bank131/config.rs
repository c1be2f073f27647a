//! Client settings (the `[bank131]` section of the proxy's configuration).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which spelling of the session API to speak (API.md §0.2).
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// `/api/v1/session/…`, `payment_method`, `payments`.
    V1,
    /// `/api/v2/session/…`, `payout_details`, `payout_list` (the SDK's default).
    #[default]
    V2,
}

impl ApiVersion {
    /// `v1` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }

    /// The request field that carries the payout destination.
    pub fn destination_field(self) -> &'static str {
        match self {
            Self::V1 => "payment_method",
            Self::V2 => "payout_details",
        }
    }
}

/// How to reach and authenticate to Bank 131.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bank131Config {
    /// `https://demo.bank131.ru` (demo) or `https://proxy.bank131.ru` (live), or the sandbox.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `X-PARTNER-PROJECT`.
    pub project: String,
    /// The partner's RSA private key, PEM (PKCS#1 or PKCS#8).
    pub private_key_file: PathBuf,
    /// The bank's RSA public key, PEM (SubjectPublicKeyInfo), for webhooks.
    pub bank_public_key_file: PathBuf,
    /// `v1` or `v2`.
    #[serde(default)]
    pub api_version: ApiVersion,
    /// `X-PARTNER-SUBMERCHANT`, sent when set and not blank.
    #[serde(default)]
    pub submerchant: Option<String>,
    /// Connect timeout.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

fn default_base_url() -> String {
    "https://demo.bank131.ru".to_owned()
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}

fn default_request_timeout_ms() -> u64 {
    30_000
}

impl Bank131Config {
    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The whole-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
