//! A minimal partner (its own signing code, on purpose independent of the sandbox's and the
//! proxy's), a webhook receiver that verifies the bank's signature, and sandbox set-up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde_json::{Value, json};
use tests::sandbox::{self, JournalEntry, ProjectConfig, SandboxConfig, SandboxHandle};
use tokio::sync::mpsc;

pub(crate) const PROJECT: &str = "test-project";
pub(crate) const VISA: &str = "4242424242424242";

/// One partner key pair for the whole test binary: RSA generation is slow in debug builds.
pub(crate) fn partner_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| sandbox::generate_rsa_keypair_pem().unwrap())
}

/// One bank key for every sandbox in this binary, for the same reason.
fn bank_private_pem() -> String {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| sandbox::generate_rsa_keypair_pem().unwrap().0)
        .clone()
}

/// A sandbox config with short delays, and one project with the partner key.
pub(crate) fn fast_config() -> SandboxConfig {
    SandboxConfig {
        bank_private_key_pem: Some(bank_private_pem()),
        webhook_retry: vec![Duration::from_millis(20)],
        webhook_max_attempts: 3,
        ready_delay: Duration::from_millis(30),
        finish_delay: Duration::from_millis(30),
        slow_delay: Duration::from_millis(400),
        hang_limit: Duration::from_secs(2),
        projects: vec![ProjectConfig::new(PROJECT, partner_keys().1.clone())],
        ..SandboxConfig::default()
    }
}

/// A sandbox, a partner talking to it, and a receiver its project's webhooks go to.
pub(crate) struct Env {
    pub(crate) sandbox: SandboxHandle,
    pub(crate) partner: Partner,
    pub(crate) hooks: Receiver,
}

/// Starts everything; `tweak` adjusts the project before the sandbox starts.
pub(crate) async fn env_with(tweak: impl FnOnce(&mut SandboxConfig)) -> Env {
    let hooks = Receiver::start().await;
    let mut config = fast_config();
    config.projects[0].webhook_url = Some(hooks.url());
    tweak(&mut config);
    let sandbox = sandbox::spawn(config).await.unwrap();
    hooks.trust(sandbox.bank_public_key_pem());
    let partner = Partner::new(&sandbox.base_url(), PROJECT, &partner_keys().0);
    Env {
        sandbox,
        partner,
        hooks,
    }
}

pub(crate) async fn env() -> Env {
    env_with(|_| {}).await
}

/// A partner: signs exact body bytes with RSA PKCS#1 v1.5 SHA-256, standard base64.
pub(crate) struct Partner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) project: String,
    key: RsaKeyPair,
}

impl Partner {
    pub(crate) fn new(base: &str, project: &str, private_pem: &str) -> Self {
        let key = match PrivateKeyDer::from_pem_slice(private_pem.as_bytes()).unwrap() {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).unwrap(),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()).unwrap(),
            _ => panic!("not RSA"),
        };
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: base.to_owned(),
            project: project.to_owned(),
            key,
        }
    }

    pub(crate) fn sign(&self, body: &[u8]) -> String {
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), body, &mut sig)
            .unwrap();
        STANDARD.encode(sig)
    }

    /// POSTs `body` signed, with extra headers; returns (HTTP status, parsed envelope).
    pub(crate) async fn send(
        &self,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("x-partner-project", &self.project)
            .header("x-partner-sign", self.sign(body));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body.to_vec()).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(path, body.to_string().as_bytes(), &[]).await
    }

    /// `session/create` then returns the session id.
    pub(crate) async fn create(&self, v: &str) -> String {
        let (status, body) = self
            .post(&format!("/api/{v}/session/create"), json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        session_id(&body)
    }

    /// `session/init/payout` under the `v` prefix (the body may use either spelling).
    pub(crate) async fn init(&self, v: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/api/{v}/session/init/payout"), body)
            .await
    }

    /// A method whose body is only the session id (`status`, `confirm`, `cancel`).
    pub(crate) async fn on_session(&self, v: &str, method: &str, id: &str) -> (u16, Value) {
        self.post(
            &format!("/api/{v}/session/{method}"),
            json!({"session_id": id}),
        )
        .await
    }

    /// The HTTP status of an unsigned, bodiless `method` request to `path`: for what is refused
    /// or answered before any signature check, and for the control API.
    pub(crate) async fn status_of(&self, method: reqwest::Method, path: &str) -> u16 {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }
}

/// The session id in an answer's envelope.
pub(crate) fn session_id(body: &Value) -> String {
    body["session"]["id"].as_str().unwrap().to_owned()
}

/// A start/init body in the given spelling.
pub(crate) fn payout_body(dest_key: &str, number: &str, amount: i64, name: &str) -> Value {
    json!({
        "amount_details": {"amount": amount, "currency": "rub"},
        dest_key: {"type": "card", "card": {"type": "bank_card", "bank_card": {"number": number}}},
        "participant_details": {"recipient": {"full_name": name}},
    })
}

/// One webhook as received.
#[derive(Debug)]
pub(crate) struct Hook {
    pub(crate) verified: bool,
    pub(crate) kind: String,
    pub(crate) session: Value,
    pub(crate) raw: String,
}

#[derive(Default)]
struct ReceiverState {
    bank_key: Option<Vec<u8>>,
    /// Statuses to answer with, in order; 200 once they run out.
    answers: VecDeque<u16>,
    tx: Option<mpsc::UnboundedSender<Hook>>,
}

/// A webhook endpoint that verifies the bank's signature on the raw body before parsing.
pub(crate) struct Receiver {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    rx: mpsc::UnboundedReceiver<Hook>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(ReceiverState {
            tx: Some(tx),
            ..ReceiverState::default()
        }));
        let app = axum::Router::new()
            .route("/webhooks/bank131", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state, rx }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/webhooks/bank131", self.addr)
    }

    pub(crate) fn trust(&self, bank_public_pem: &str) {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(bank_public_pem.as_bytes()).unwrap();
        self.state.lock().unwrap().bank_key = Some(der.as_ref().to_vec());
    }

    /// Answer the next webhooks with these statuses.
    pub(crate) fn answer_with(&self, statuses: &[u16]) {
        self.state.lock().unwrap().answers.extend(statuses);
    }

    /// The next verified webhook (the test fails after 60 s).
    pub(crate) async fn next(&mut self) -> Hook {
        let hook = tokio::time::timeout(Duration::from_secs(60), self.rx.recv())
            .await
            .expect("no webhook within 60 s")
            .unwrap();
        assert!(
            hook.verified,
            "bad webhook signature or content type: {}",
            hook.raw
        );
        hook
    }

    /// The next webhook, which must be of `kind`.
    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        let hook = self.next().await;
        assert_eq!(hook.kind, kind, "{}", hook.raw);
        hook.session
    }

    /// Asserts no webhook arrives within `d`.
    pub(crate) async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(hook)) = tokio::time::timeout(d, self.rx.recv()).await {
            panic!("unexpected webhook {}", hook.raw);
        }
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut s = state.lock().unwrap();
    // Checked on the raw bytes before parsing; a failure is reported to the test, not panicked
    // here (a panic would only look like a network error to the sandbox).
    let sig = headers
        .get("x-partner-sign")
        .and_then(|h| STANDARD.decode(h.as_bytes()).ok())
        .unwrap_or_default();
    let verified = headers
        .get("content-type")
        .is_some_and(|c| c == "application/json")
        && s.bank_key.as_ref().is_some_and(|key| {
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
                .verify(&body, &sig)
                .is_ok()
        });
    let status = s.answers.pop_front().unwrap_or(200);
    if status == 200 {
        let v: Value = serde_json::from_slice(&body).unwrap();
        let hook = Hook {
            verified,
            kind: v["type"].as_str().unwrap().to_owned(),
            session: v["session"].clone(),
            raw: String::from_utf8(body.to_vec()).unwrap(),
        };
        if let Some(tx) = &s.tx {
            let _ = tx.send(hook);
        }
    }
    StatusCode::from_u16(status).unwrap()
}

/// The only payout of a session, in either spelling.
pub(crate) fn payout(session: &Value) -> &Value {
    session
        .get("payout_list")
        .or_else(|| session.get("payments"))
        .and_then(|l| l.get(0))
        .unwrap_or_else(|| panic!("no payout in {session}"))
}

/// Polls the control API view until the session's phase is `phase` (2 s at most).
pub(crate) async fn wait_phase(sandbox: &SandboxHandle, id: &str, phase: &str) -> Value {
    for _ in 0..200 {
        let view = sandbox.session(id).unwrap();
        if view["phase"] == phase {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "session {id} never reached {phase}: {:?}",
        sandbox.session(id)
    );
}

/// The journal once `done` holds for it (webhook attempts are journaled just after the
/// receiver answers, so a test that has seen a webhook may be a moment early); 2 s at most.
pub(crate) async fn journal_when(
    sandbox: &SandboxHandle,
    done: impl Fn(&[JournalEntry]) -> bool,
) -> Vec<JournalEntry> {
    for _ in 0..200 {
        let entries = sandbox.journal();
        if done(&entries) {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("journal never settled: {:#?}", sandbox.journal());
}

/// Counts webhook entries.
pub(crate) fn webhook_count(entries: &[JournalEntry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e, JournalEntry::Webhook(_)))
        .count()
}
