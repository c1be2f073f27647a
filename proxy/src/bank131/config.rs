//! Client settings (the `[bank131]` section of the proxy's configuration).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which spelling of the session API to speak (API.md §0.2).
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, Eq, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bank131Config {
    /// `https://demo.bank131.ru` (demo) or `https://proxy.bank131.ru` (live), or the sandbox.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `X-PARTNER-PROJECT`.
    pub project: String,
    /// The partner's RSA private key, PEM (PKCS#1, PKCS#8, or encrypted PKCS#8 with
    /// `private_key_passphrase_file`).
    pub private_key_file: PathBuf,
    /// A file whose first line is the passphrase of an encrypted `private_key_file`.
    #[serde(default)]
    pub private_key_passphrase_file: Option<PathBuf>,
    /// The bank's RSA public key, PEM (SubjectPublicKeyInfo, PKCS#1 or an X.509 certificate),
    /// for webhooks.
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
    /// Allow `http://` to a non-loopback `base_url` (development only; logged loudly).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// CIDR networks the bank's host may resolve to (e.g. the bank's published ranges). Empty:
    /// any public address, never an internal one.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// PEM CA certificates the bank's certificate must chain to, instead of the system's (a
    /// test CA for the sandbox over TLS).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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

    /// `base_url`, checked: https, or http to loopback or with `allow_insecure_http`.
    ///
    /// # Errors
    ///
    /// A fixed message naming the setting.
    pub fn checked_base_url(&self) -> Result<reqwest::Url, &'static str> {
        crate::egress::check_upstream(&self.base_url, self.allow_insecure_http).map_err(|e| match e {
            crate::egress::EgressError::Insecure => {
                "bank131.base_url must be https (http only to loopback, or with bank131.allow_insecure_http = true)"
            }
            _ => "bank131.base_url must be an http:// or https:// URL with a host",
        })
    }

    /// `allowed_networks`, parsed.
    ///
    /// # Errors
    ///
    /// A fixed message naming the setting.
    pub fn networks(&self) -> Result<Vec<ipnet::IpNet>, &'static str> {
        let networks = self
            .allowed_networks
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| "bank131.allowed_networks must hold CIDR networks such as 185.71.76.0/24")
            })
            .collect::<Result<Vec<_>, _>>()?;
        // An address literal is connected to without resolving: check it here, once.
        let literal = match self.checked_base_url()?.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !networks.is_empty()
            && !networks.iter().any(|n| n.contains(&ip))
        {
            return Err("bank131.base_url is an address outside bank131.allowed_networks");
        }
        Ok(networks)
    }
}
