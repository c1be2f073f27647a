//! A sandbox, a proxy client configured for it, and a webhook receiver that verifies with the
//! proxy's own `verify_and_parse`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use proxy::bank131::{
    Amount, ApiVersion, Bank131Client, Bank131Config, CreateSession, Participant,
    ParticipantDetails, PayoutRequest, RequestSigner, Session, SignatureVerifier, Webhook,
    verify_and_parse,
};
use shared::Pan;
use tests::sandbox::{self, FaultSpec, ProjectConfig, SandboxConfig, SandboxHandle};
use tokio::sync::mpsc;

pub(crate) const PROJECT: &str = "proxy-e2e";
/// Every test runs in both API versions.
pub(crate) const VERSIONS: [ApiVersion; 2] = [ApiVersion::V1, ApiVersion::V2];

pub(crate) use testkit::logs::logs;

/// RSA key generation is slow in debug builds: one partner and one bank key per binary.
fn keys() -> &'static ((String, String), (String, String)) {
    static KEYS: OnceLock<((String, String), (String, String))> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            sandbox::generate_rsa_keypair_pem().unwrap(),
            sandbox::generate_rsa_keypair_pem().unwrap(),
        )
    })
}

pub(crate) fn partner_private_pem() -> &'static str {
    &keys().0.0
}

pub(crate) fn partner_public_pem() -> &'static str {
    &keys().0.1
}

pub(crate) struct Env {
    pub(crate) sandbox: SandboxHandle,
    pub(crate) client: Bank131Client,
    pub(crate) hooks: mpsc::UnboundedReceiver<Webhook>,
    pub(crate) version: ApiVersion,
}

pub(crate) fn client_config(
    base_url: String,
    version: ApiVersion,
    request_timeout_ms: u64,
) -> Bank131Config {
    Bank131Config {
        base_url,
        project: PROJECT.to_owned(),
        // Unused: the signer is passed in already loaded.
        private_key_file: "/nonexistent".into(),
        private_key_passphrase_file: None,
        bank_public_key_file: "/nonexistent".into(),
        api_version: version,
        submerchant: None,
        connect_timeout_ms: 2_000,
        request_timeout_ms,
        allow_insecure_http: false,
        allowed_networks: Vec::new(),
        ca_file: None,
    }
}

impl Env {
    pub(crate) async fn start(version: ApiVersion) -> Self {
        Self::start_with(version, |_| {}).await
    }

    pub(crate) async fn start_with(
        version: ApiVersion,
        tweak: impl FnOnce(&mut ProjectConfig),
    ) -> Self {
        testkit::logs::capture();
        let ((_, partner_public), (bank_private, _)) = keys();

        // The webhook receiver: verifies with the proxy's code, answers 200, forwards the hook.
        let (tx, hooks) = mpsc::unbounded_channel();
        let verifier: Arc<OnceLock<SignatureVerifier>> = Arc::default();
        let app = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state((Arc::clone(&verifier), tx));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook_url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut project = ProjectConfig::new(PROJECT, partner_public.clone());
        project.webhook_url = Some(hook_url);
        project.webhook_api_version = match version {
            ApiVersion::V1 => sandbox::ApiVersion::V1,
            _ => sandbox::ApiVersion::V2,
        };
        project.wallet_balance = 10_000_000;
        tweak(&mut project);
        let sandbox = sandbox::spawn(SandboxConfig {
            bank_private_key_pem: Some(bank_private.clone()),
            webhook_retry: vec![Duration::from_millis(20)],
            webhook_max_attempts: 3,
            ready_delay: Duration::from_millis(30),
            finish_delay: Duration::from_millis(30),
            slow_delay: Duration::from_millis(1500),
            hang_limit: Duration::from_secs(3),
            projects: vec![project],
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let _ = verifier
            .set(SignatureVerifier::from_pem(sandbox.bank_public_key_pem().as_bytes()).unwrap());

        let client = partner_client(&client_config(sandbox.base_url(), version, 1_000));
        Self {
            sandbox,
            client,
            hooks,
            version,
        }
    }

    /// The next webhook, or a panic after a few seconds.
    pub(crate) async fn next_hook(&mut self) -> Webhook {
        tokio::time::timeout(Duration::from_secs(60), self.hooks.recv())
            .await
            .expect("no webhook within 60 s")
            .expect("receiver closed")
    }

    /// The next webhook, which must be `ready_to_confirm`: its session.
    pub(crate) async fn ready_to_confirm(&mut self) -> Session {
        match self.next_hook().await {
            Webhook::ReadyToConfirm { session, .. } => session,
            other => panic!("expected ready_to_confirm, got {other:?}"),
        }
    }

    /// The next webhook, which must be `payment_finished` (`after` says what it follows): its
    /// session.
    pub(crate) async fn payment_finished(&mut self, after: &str) -> Session {
        match self.next_hook().await {
            Webhook::PaymentFinished { session } => session,
            other => panic!("expected payment_finished {after}, got {other:?}"),
        }
    }

    /// A new session, with no idempotency key of the test's.
    pub(crate) async fn create(&self) -> Session {
        self.client
            .create_session(&CreateSession::default(), None)
            .await
            .unwrap()
    }

    /// A new session with a payout of `amount` to `card` started in it: the created session.
    pub(crate) async fn started(&self, card: &Pan, amount: i64, name: &str) -> Session {
        let created = self.create().await;
        self.client
            .start_payout(&created.id, &payout(card, amount, name), None)
            .await
            .unwrap();
        created
    }

    /// Arms a sandbox fault, written as the sandbox's `--fault` flag takes it.
    pub(crate) fn fault(&self, spec: &str) {
        self.sandbox
            .set_fault(spec.parse::<FaultSpec>().unwrap())
            .unwrap();
    }
}

/// A client that signs as the partner the sandbox knows.
pub(crate) fn partner_client(config: &Bank131Config) -> Bank131Client {
    Bank131Client::with_signer(
        config,
        RequestSigner::from_pem(partner_private_pem().as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn receive(
    State((verifier, tx)): State<(
        Arc<OnceLock<SignatureVerifier>>,
        mpsc::UnboundedSender<Webhook>,
    )>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(verifier) = verifier.get() else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let signature = headers.get("x-partner-sign").and_then(|v| v.to_str().ok());
    match verify_and_parse(verifier, &body, signature) {
        Ok(hook) => {
            let _ = tx.send(hook);
            StatusCode::OK
        }
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

pub(crate) fn payout<'a>(pan: &'a Pan, amount: i64, full_name: &str) -> PayoutRequest<'a> {
    PayoutRequest {
        card: pan,
        amount: Amount {
            amount,
            currency: "RUB".to_owned(),
        },
        participant_details: ParticipantDetails {
            sender: None,
            recipient: Some(Participant::full_name(full_name)),
        },
        customer: None,
        metadata: Some(serde_json::json!({"payout": "po-test"})),
    }
}

pub(crate) fn pan(digits: &str) -> Pan {
    Pan::parse(digits).unwrap()
}

/// A Luhn-valid card with a sandbox magic ending.
pub(crate) fn magic_card(ending: &str) -> Pan {
    pan(&sandbox::magic::luhn_card("4000", ending).unwrap())
}
