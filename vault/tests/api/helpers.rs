//! An in-process vault on a real socket and a real SQLite file, with its logs captured.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared::Pan;
use tempfile::TempDir;
use tokio::sync::oneshot;
use vault::auth::Scopes;
use vault::config::VaultConfig;
use vault::crypto::FileKeyProvider;
use vault::service::Vault;
use vault::startup::{Application, open_vault};

pub(crate) use testkit::logs::logs;

/// Raises every rate limit out of the way, for tests that load the vault on purpose.
pub(crate) fn unlimited(config: &mut VaultConfig) {
    let l = &mut config.limits;
    for (rate, burst) in [
        (&mut l.tokenize_per_second, &mut l.tokenize_burst),
        (&mut l.read_per_second, &mut l.read_burst),
        (&mut l.detokenize_per_second, &mut l.detokenize_burst),
        (
            &mut l.unauthenticated_per_second,
            &mut l.unauthenticated_burst,
        ),
    ] {
        *rate = 1_000_000;
        *burst = 1_000_000;
    }
}

/// Every scope, comma-separated.
pub(crate) const ALL_SCOPES: &str = "tokens:create,tokens:read,tokens:detokenize,tokens:delete";

/// A running vault.
pub(crate) struct TestVault {
    pub(crate) base: String,
    pub(crate) config: VaultConfig,
    pub(crate) http: reqwest::Client,
    /// A second handle on the same database, for operator actions (clients).
    pub(crate) admin: Vault,
    pub(crate) dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), vault::startup::StartupError>>>,
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestVault {
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub(crate) async fn spawn_with(adjust: impl FnOnce(&mut VaultConfig)) -> Self {
        testkit::logs::capture();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("master.key");
        FileKeyProvider::create(&key_file).unwrap();
        let mut config = VaultConfig::default();
        config.server.listen = Some("127.0.0.1:0".parse().unwrap());
        config.database.path = Some(dir.path().join("vault.db"));
        config.keys.master_key_file = key_file;
        adjust(&mut config);

        let app = Application::build(&config).await.unwrap();
        let addr = app.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let admin = open_vault(&config).await.unwrap();
        Self {
            base: format!("http://{addr}"),
            config,
            http: reqwest::Client::new(),
            admin,
            dir,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Shuts the server down as SIGTERM would and waits until it has finished (the last
    /// refusal reports and checkpoint are written by then).
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Audit events with this action, oldest first: (outcome, actor, detail).
    pub(crate) fn events(&self, action: &str) -> Vec<(String, String, Option<String>)> {
        let db = self.raw_db();
        let mut stmt = db
            .prepare(
                "SELECT outcome, actor, detail FROM audit_events WHERE action = ?1 ORDER BY seq",
            )
            .unwrap();
        stmt.query_map([action], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.config.sqlite().path
    }

    /// Creates a client and returns its API key.
    pub(crate) async fn client(&self, tenant: &str, scopes: &str) -> String {
        let (_, key) = self
            .admin
            .create_client("test-client", tenant, Scopes::parse(scopes).unwrap())
            .await
            .unwrap();
        key.expose().to_owned()
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let resp = req.send().await.unwrap();
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    pub(crate) async fn tokenize(&self, key: &str, pan: &str) -> Reply {
        self.call(
            Method::POST,
            "/v1/tokens",
            Some(key),
            Some(&format!(r#"{{"pan":"{pan}"}}"#)),
        )
        .await
    }

    /// Tokenizes and returns the token, asserting success.
    pub(crate) async fn token_for(&self, key: &str, pan: &str) -> String {
        let reply = self.tokenize(key, pan).await;
        assert!(
            reply.status.is_success(),
            "{}: {}",
            reply.status,
            reply.text()
        );
        reply.json()["token"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn detokenize(&self, key: &str, token: &str) -> Reply {
        self.call(
            Method::POST,
            &format!("/v1/tokens/{token}/detokenize"),
            Some(key),
            Some(r#"{"purpose":"test payout"}"#),
        )
        .await
    }

    /// Polls `/readyz` until it answers `want`. A verdict is reused for up to a second, so a
    /// change shows within about that; the deadline only bounds a hang.
    pub(crate) async fn wait_readyz(&self, want: StatusCode) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let status = self.call(Method::GET, "/readyz", None, None).await.status;
            if status == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz stayed {status}, not {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Opens the database directly, as an attacker or a disk fault would.
    pub(crate) fn raw_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).unwrap()
    }
}

impl Drop for TestVault {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts none of `pans` appears in `haystack` (in any encoding the scanner knows).
pub(crate) fn assert_no_pan(haystack: &[u8], pans: &[&str], what: &str) {
    for pan in pans {
        let pan = Pan::parse(pan).unwrap();
        assert!(
            !shared::scan::contains_pan_any_encoding(haystack, &pan),
            "{what} contains {pan:?}"
        );
    }
}
