//! The HTTP client: sign, send, classify.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Serialize;
use zeroize::Zeroizing;

use super::config::{ApiVersion, Bank131Config};
use super::error::{Bank131Error, Call};
use super::models::{Envelope, Session, Wallet};
use super::request::{CreateSession, PayoutRequest, SessionIdBody, WalletBalanceBody};
use super::signing::{RequestSigner, SigningError};

/// Header names (API.md §1). HTTP header names are case-insensitive; these are what the SDK
/// sends.
const PROJECT: &str = "x-partner-project";
const SIGN: &str = "x-partner-sign";
const SUBMERCHANT: &str = "x-partner-submerchant";
const IDEMPOTENCY_KEY: &str = "x-partner-idempotency-key";

/// A Bank 131 client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bank131Client {
    http: reqwest::Client,
    base_url: String,
    project: HeaderValue,
    submerchant: Option<HeaderValue>,
    version: ApiVersion,
    signer: Arc<RequestSigner>,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientBuildError {
    /// A key did not load.
    #[error(transparent)]
    Key(#[from] SigningError),
    /// The project or submerchant id is not a valid header value.
    #[error("bank131.project and bank131.submerchant must be visible ASCII")]
    HeaderValue,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// `base_url` or `allowed_networks` is not acceptable.
    #[error("{0}")]
    Egress(&'static str),
    /// `ca_file` did not load.
    #[error(transparent)]
    Tls(#[from] crate::upstream_tls::UpstreamTlsError),
}

impl Bank131Client {
    /// A client from settings; loads the partner private key.
    ///
    /// # Errors
    ///
    /// Unreadable or invalid key, bad header values.
    pub fn new(config: &Bank131Config) -> Result<Self, ClientBuildError> {
        let signer = RequestSigner::from_files(
            &config.private_key_file,
            config.private_key_passphrase_file.as_deref(),
        )?;
        Self::with_signer(config, signer)
    }

    /// A client with an already loaded signer.
    ///
    /// # Errors
    ///
    /// Bad header values.
    pub fn with_signer(
        config: &Bank131Config,
        signer: RequestSigner,
    ) -> Result<Self, ClientBuildError> {
        let header = |v: &str| HeaderValue::from_str(v).map_err(|_| ClientBuildError::HeaderValue);
        let base = config
            .checked_base_url()
            .map_err(ClientBuildError::Egress)?;
        let networks = config.networks().map_err(ClientBuildError::Egress)?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            .timeout(config.request_timeout())
            // Only the configured host, and only to allowed addresses (DNS rebinding).
            .dns_resolver(Arc::new(crate::egress::PublicOnly::pinned(&base, networks)))
            // A redirect would re-send the signed body, card number included, wherever it points
            // (docs/ARCHITECTURE.md §9.3): never followed; a 3xx is a permanent error for the call.
            .redirect(reqwest::redirect::Policy::none())
            // Never through a proxy named by the environment (HTTPS_PROXY): the card number
            // would leave by a path the configuration does not show.
            .no_proxy();
        let http = crate::upstream_tls::trust(http, config.ca_file.as_deref(), "bank131.ca_file")?
            .build()
            .map_err(ClientBuildError::Http)?;
        Ok(Self {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            project: header(&config.project)?,
            submerchant: config
                .submerchant
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(header)
                .transpose()?,
            version: config.api_version,
            signer: Arc::new(signer),
        })
    }

    /// `session/create`.
    ///
    /// # Errors
    ///
    /// See [`Bank131Error`].
    pub async fn create_session(
        &self,
        request: &CreateSession,
        idempotency_key: Option<&str>,
    ) -> Result<Session, Bank131Error> {
        let body = json(Call::CreateSession, request)?;
        self.session_call(Call::CreateSession, body, idempotency_key)
            .await
    }

    /// `session/start/payout`: the card number goes to the bank here.
    ///
    /// # Errors
    ///
    /// See [`Bank131Error`]. After a timeout or transport error the payout may have started:
    /// the error is [`super::ErrorClass::OutcomeUnknown`]; read `session/status`, never resend.
    pub async fn start_payout(
        &self,
        session_id: &str,
        request: &PayoutRequest<'_>,
        idempotency_key: Option<&str>,
    ) -> Result<Session, Bank131Error> {
        let body = payout_body(Call::StartPayout, request, self.version, Some(session_id))?;
        self.session_call(Call::StartPayout, body, idempotency_key)
            .await
    }

    /// `session/init/payout`: create and start in one call. Prefer create + start: after a lost
    /// answer here there is no session id to reconcile with (API.md §7.3).
    ///
    /// # Errors
    ///
    /// See [`Bank131Error`].
    pub async fn init_payout(
        &self,
        request: &PayoutRequest<'_>,
        idempotency_key: Option<&str>,
    ) -> Result<Session, Bank131Error> {
        let body = payout_body(Call::InitPayout, request, self.version, None)?;
        self.session_call(Call::InitPayout, body, idempotency_key)
            .await
    }

    /// `session/confirm`.
    ///
    /// # Errors
    ///
    /// See [`Bank131Error`].
    pub async fn confirm(
        &self,
        session_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Session, Bank131Error> {
        self.on_session(Call::Confirm, session_id, idempotency_key)
            .await
    }

    /// `session/cancel`.
    ///
    /// # Errors
    ///
    /// See [`Bank131Error`].
    pub async fn cancel(
        &self,
        session_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Session, Bank131Error> {
        self.on_session(Call::Cancel, session_id, idempotency_key)
            .await
    }

    /// `session/status`.
    ///
    /// # Errors
    ///
    /// See [`Bank131Error`].
    pub async fn status(&self, session_id: &str) -> Result<Session, Bank131Error> {
        self.on_session(Call::Status, session_id, None).await
    }

    /// `wallet/balance` (always `/api/v1`).
    ///
    /// # Errors
    ///
    /// See [`Bank131Error`].
    pub async fn wallet_balance(&self) -> Result<Vec<Wallet>, Bank131Error> {
        let body = json(Call::WalletBalance, &WalletBalanceBody::now())?;
        let url = format!("{}/api/v1/{}", self.base_url, Call::WalletBalance.method());
        let envelope = self.send(Call::WalletBalance, url, body, None).await?;
        envelope.wallets.ok_or(Bank131Error::BadResponse {
            call: Call::WalletBalance,
            reason: "no wallets in the response",
        })
    }

    /// A session call whose body is the session id alone (`confirm`, `cancel`, `status`).
    async fn on_session(
        &self,
        call: Call,
        session_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Session, Bank131Error> {
        let body = json(call, &SessionIdBody { session_id })?;
        self.session_call(call, body, idempotency_key).await
    }

    async fn session_call(
        &self,
        call: Call,
        body: Zeroizing<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<Session, Bank131Error> {
        let url = format!(
            "{}/api/{}/{}",
            self.base_url,
            self.version.as_str(),
            call.method()
        );
        let envelope = self.send(call, url, body, idempotency_key).await?;
        envelope.session.ok_or(Bank131Error::BadResponse {
            call,
            reason: "no session in the response",
        })
    }

    /// Signs the body bytes and sends exactly those bytes.
    #[tracing::instrument(name = "bank131", skip_all, fields(call = %call))]
    async fn send(
        &self,
        call: Call,
        url: String,
        body: Zeroizing<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<Envelope, Bank131Error> {
        let signature = self.signer.sign(&body)?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(PROJECT, self.project.clone());
        headers.insert(
            SIGN,
            HeaderValue::from_str(&signature)
                .map_err(|_| Bank131Error::Signing(SigningError::Sign))?,
        );
        if let Some(sub) = &self.submerchant {
            headers.insert(SUBMERCHANT, sub.clone());
        }
        if let Some(key) = idempotency_key {
            let value = HeaderValue::from_str(key).map_err(|_| Bank131Error::InvalidRequest {
                call,
                reason: "the idempotency key must be visible ASCII",
            })?;
            headers.insert(IDEMPOTENCY_KEY, value);
        }

        let started = Instant::now();
        // The buffer is wiped when the last reference to these bytes is dropped.
        let result = self
            .http
            .post(url)
            .headers(headers)
            .body(Bytes::from_owner(body))
            .send()
            .await;
        let response = result.map_err(|e| {
            if e.is_connect() {
                Bank131Error::Connect { call, source: e }
            } else if e.is_timeout() {
                Bank131Error::Timeout { call }
            } else {
                Bank131Error::Transport { call, source: e }
            }
        })?;
        let status = response.status();
        if status.is_redirection() {
            // Only the status: the Location is the redirect's target, chosen by whoever answered.
            tracing::error!(
                call = %call,
                status = status.as_u16(),
                "the bank answered with a redirect; not followed (card data goes only to bank131.base_url)"
            );
            return Err(Bank131Error::Redirect {
                call,
                status: status.as_u16(),
            });
        }
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                Bank131Error::Timeout { call }
            } else {
                Bank131Error::Transport { call, source: e }
            }
        })?;
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "bank answered"
        );
        interpret(call, status, &bytes)
    }
}

fn json(call: Call, body: &impl Serialize) -> Result<Zeroizing<Vec<u8>>, Bank131Error> {
    serde_json::to_vec(body)
        .map(Zeroizing::new)
        .map_err(|_| Bank131Error::InvalidRequest {
            call,
            reason: "the request could not be serialized",
        })
}

fn payout_body(
    call: Call,
    request: &PayoutRequest<'_>,
    version: ApiVersion,
    session_id: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, Bank131Error> {
    request
        .validate()
        .map_err(|reason| Bank131Error::InvalidRequest { call, reason })?;
    request
        .body(version, session_id)
        .map_err(|_| Bank131Error::InvalidRequest {
            call,
            reason: "the request could not be serialized",
        })
}

/// Turns an answer into the envelope or an error: a non-2xx, and a 2xx with `"status":"error"`,
/// are both errors (API.md §7.1).
fn interpret(call: Call, status: StatusCode, bytes: &[u8]) -> Result<Envelope, Bank131Error> {
    let envelope = serde_json::from_slice::<Envelope>(bytes).ok();
    let is_error = |e: &Envelope| e.error.is_some() || e.status.as_deref() == Some("error");
    match envelope {
        Some(e) if status.is_success() && !is_error(&e) => Ok(e),
        Some(e) if is_error(&e) || !status.is_success() => {
            let error = e.error.unwrap_or_default();
            Err(Bank131Error::Bank {
                call,
                status: status.as_u16(),
                code: if error.code.is_empty() {
                    "api_exception".to_owned()
                } else {
                    error.code
                },
                description: shared::scan::redact_digit_runs(
                    error.description.as_deref().unwrap_or_default(),
                ),
            })
        }
        _ if status.is_success() => Err(Bank131Error::BadResponse {
            call,
            reason: "the body is not the bank's JSON envelope",
        }),
        _ => Err(Bank131Error::Http {
            call,
            status: status.as_u16(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_in_2xx_and_non_2xx_are_errors() {
        let err = interpret(
            Call::Confirm,
            StatusCode::OK,
            br#"{"status":"error","error":{"code":"session_wrong_state","description":"no"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some("session_wrong_state"));
        let err = interpret(
            Call::Confirm,
            StatusCode::BAD_REQUEST,
            br#"{"status":"error","error":{"code":"invalid_request"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some("invalid_request"));
        let err = interpret(
            Call::Confirm,
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
        )
        .unwrap_err();
        assert!(matches!(err, Bank131Error::Http { status: 502, .. }));
        let err = interpret(Call::Confirm, StatusCode::OK, b"<html>").unwrap_err();
        assert!(matches!(err, Bank131Error::BadResponse { .. }));
        let err = interpret(
            Call::Confirm,
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"status":"error"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some("api_exception"));
        let ok = interpret(
            Call::Status,
            StatusCode::OK,
            br#"{"status":"ok","session":{"id":"ps_1","status":"created","new_field":1}}"#,
        )
        .unwrap();
        assert_eq!(ok.session.unwrap().id, "ps_1");
    }

    #[test]
    fn bank_descriptions_never_carry_card_numbers() {
        let err = interpret(
            Call::StartPayout,
            StatusCode::BAD_REQUEST,
            br#"{"status":"error","error":{"code":"card_number_does_not_exist","description":"Invalid card number 4242424242424242"}}"#,
        )
        .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("4242424242424242"), "{text}");
        assert!(text.contains("[redacted]"));
    }
}
